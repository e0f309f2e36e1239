/**
 * Nothing dropped silently, end to end: a Service beside the VMs and a typo'd field (`socket:`
 * beside `sockets:`) reach the operator as warnings with file and line in `vmroll run`'s JSON and
 * text, the summary line that becomes the commit status, and `vmroll plan`'s JSON and PR comment;
 * `--strict` makes them errors of their file, whose VM is then neither applied nor pruned.
 * Debian git's http-backend on 127.0.0.1, `vmroll run` spawned as the binary, the embedded simulator.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Ajv } from 'ajv';
import { runPlan } from '../reconciler/commands/plan.ts';
import type { Obj, VmPlan } from '../reconciler/rollout/index.ts';
import { ROOT } from './helpers/cases.ts';
import { type GitServer, startGitServer } from './helpers/gitServer.ts';
import { vmrollProcess as vmroll, vmsInState } from './helpers/vmrollProcess.ts';

const EXAMPLE = path.join(ROOT, 'fixtures', 'example-repo', 'vms');
const example = (f: string): string => readFileSync(path.join(EXAMPLE, f), 'utf8');
const validPlan = new Ajv({ allErrors: true, strict: false }).compile(JSON.parse(readFileSync(path.join(ROOT, 'schemas', 'vmplan.schema.json'), 'utf8')) as object);



const SERVICE = ['apiVersion: v1', 'kind: Service', 'metadata:', '  name: web-svc', '  namespace: shop', 'spec:', '  ports:', '    - port: 80', ''].join('\n');

describe('manifest warnings reach every output; --strict makes them errors', function () {
  this.timeout(300_000);
  let server: GitServer;
  let url: string;
  let dir: string;
  /** Line of `socket: 2` in vms/web.yaml. */
  let typoLine: number;

  before(async () => {
    server = await startGitServer();
    dir = mkdtempSync(path.join(tmpdir(), 'vmroll-warnings-'));
    url = await server.createBareRepo('fleet');
    const work = await server.createWorkingClone('fleet');
    const web = example('web.yaml').replace('          sockets: 2\n', '          sockets: 2\n          socket: 4\n');
    assert.notEqual(web, example('web.yaml'), 'the fixture has the sockets line the typo goes beside');
    typoLine = web.split('\n').findIndex((l) => l.includes('socket: 4')) + 1;
    await work.write('vms/web.yaml', web);
    await work.write('vms/db.yaml', example('db.yaml'));
    await work.write('vms/service.yaml', SERVICE);
    await work.commit('two VMs, a Service, a typo');
    await work.push();
  });
  after(async () => {
    await server?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  const common = (name: string): string[] => ['--repo', url, '--path', 'vms', '--cluster', 'sim', '--sim-state', path.join(dir, `${name}.json`), '--cache-dir', path.join(dir, `cache-${name}`), '--log-level', 'silent'];

  it('vmroll run -o json: both warnings with file and line; every VM applied; exit 0', async () => {
    const r = await vmroll(['run', '--once', '-o', 'json', ...common('json')]);
    assert.equal(r.code, 0, r.stderr);
    const plan = JSON.parse(r.stdout) as VmPlan;
    assert.ok(validPlan(plan), JSON.stringify(validPlan.errors));
    assert.deepEqual(plan.errors, []);
    const warnings = plan.warnings ?? [];
    assert.deepEqual(
      warnings.map((w) => [w.file, w.line]),
      [
        ['vms/service.yaml', 1],
        ['vms/web.yaml', typoLine],
      ],
    );
    assert.match(warnings[0]?.message ?? '', /^Service web-svc skipped/);
    assert.match(warnings[1]?.message ?? '', /spec\.template\.spec\.domain\.cpu\.socket is not a field KubeVirt defines .*did you mean "sockets"\?/);
    assert.deepEqual(vmsInState(path.join(dir, 'json.json')), ['shop/db', 'shop/web'], 'a warning blocks nothing');
  });

  it('vmroll run (text): the summary counts them, each is listed once with file:line', async () => {
    const r = await vmroll(['run', '--once', ...common('text')]);
    assert.equal(r.code, 0, r.stderr);
    const lines = r.stdout.trimEnd().split('\n');
    assert.match(lines[0] ?? '', /^target: embedded KubeVirt simulator/);
    const sync = lines.find((l) => l.startsWith('sync ')) ?? '';
    assert.match(sync, /2 created · 2 warnings \(/, 'the summary (also the vmroll/sync status) counts the warnings');
    assert.equal(lines.filter((l) => /^ {2}warning +vms\/service\.yaml:1: Service web-svc skipped/.test(l)).length, 1);
    assert.equal(lines.filter((l) => l.trim().startsWith(`warning vms/web.yaml:${typoLine}: `)).length, 1);
  });

  it('vmroll plan -o json and the PR comment list them', async () => {
    const out: string[] = [];
    const code = await runPlan(['--repo', url, '--path', 'vms', '--cluster', 'sim', '--cache-dir', path.join(dir, 'cache-plan'), '-o', 'json'], { out: (t) => out.push(t), err: () => {} }, {});
    assert.equal(code, 0);
    const plan = JSON.parse(out.join('\n')) as VmPlan;
    assert.deepEqual((plan.warnings ?? []).map((w) => `${w.file}:${w.line}`), ['vms/service.yaml:1', `vms/web.yaml:${typoLine}`]);
    const md: string[] = [];
    assert.equal(await runPlan(['--repo', url, '--path', 'vms', '--cluster', 'sim', '--cache-dir', path.join(dir, 'cache-plan'), '-o', 'markdown'], { out: (t) => md.push(t), err: () => {} }, {}), 0);
    const comment = md.join('\n');
    assert.match(comment, /#### 2 manifest warnings/);
    assert.match(comment, /<code>vms\/service\.yaml:1<\/code>: Service web-svc skipped/);
    assert.match(comment, /2 warnings/, 'the summary line counts them');
  });

  it('--strict: the warnings are errors of their files; web is held (not created), db applies; exit 1', async () => {
    const state = path.join(dir, 'strict.json');
    const r = await vmroll(['run', '--once', '-o', 'json', '--strict', ...common('strict')]);
    assert.equal(r.code, 1, r.stderr);
    const plan = JSON.parse(r.stdout) as VmPlan;
    assert.ok(validPlan(plan), JSON.stringify(validPlan.errors));
    assert.deepEqual(plan.warnings ?? [], []);
    assert.deepEqual(
      plan.errors.map((e) => [e.file, e.line]),
      [
        ['vms/service.yaml', 1],
        ['vms/web.yaml', typoLine],
      ],
    );
    for (const e of plan.errors) assert.match(e.message, /\(an error under --strict\)$/);
    assert.deepEqual(vmsInState(state), ['shop/db'], 'the file with the typo holds its VM back');
  });

  it('--strict with --prune never deletes the VM whose file now has a warning', async () => {
    const state = path.join(dir, 'strict.json');
    // The previous test created db only; a plain sync creates web, then --strict --prune must keep it.
    assert.equal((await vmroll(['run', '--once', ...common('strict')])).code, 0);
    assert.deepEqual(vmsInState(state), ['shop/db', 'shop/web']);
    const r = await vmroll(['run', '--once', '--strict', '--prune', ...common('strict')]);
    assert.equal(r.code, 1);
    assert.deepEqual(vmsInState(state), ['shop/db', 'shop/web'], 'nothing is pruned on account of a strict error');
  });
});
