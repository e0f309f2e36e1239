/**
 * What vmroll runs against, and the CLI's conventions, as users meet them through bin/vmroll.js:
 * nothing reaches a cluster nobody named, the first line names the target, `--output json`
 * is one VmPlan document even when the sync fails, and the flags read the same everywhere.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { type ApiServer, startApiServer } from '../reconciler/cluster/sim/apiServer.ts';
import { SimCluster } from '../reconciler/cluster/sim/simCluster.ts';
import { simKubeconfig } from '../reconciler/commands/sim.ts';
import { main } from '../reconciler/cli.ts';
import { NO_CLUSTER, NO_REPO } from '../reconciler/config.ts';
import { formatLogLine, makeLogger } from '../reconciler/logging.ts';
import { validateVmPlan } from '../reconciler/validate.ts';
import { ROOT } from './helpers/cases.ts';
import { type GitServer, startGitServer } from './helpers/gitServer.ts';

const exec = promisify(execFile);
const BIN = path.join(ROOT, 'bin', 'vmroll.js');
const EXAMPLE = path.join(ROOT, 'fixtures', 'example-repo', 'vms');
const KUBEVIRT = path.join(ROOT, 'fixtures', 'example-cluster', 'kubevirt.yaml');
const VERSION = (JSON.parse(readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as { version: string }).version;

interface Result {
  code: number;
  stdout: string;
  stderr: string;
}

/**
 * Runs bin/vmroll.js in `cwd` with only PATH and HOME (= cwd) from the outside, plus `env`:
 * no KUBECONFIG, KUBERNETES_SERVICE_HOST or token of the machine running the tests leaks in.
 */
async function vmroll(cwd: string, args: string[], env: Record<string, string> = {}): Promise<Result> {
  try {
    const { stdout, stderr } = await exec(process.execPath, [BIN, ...args], { cwd, timeout: 90_000, env: { PATH: process.env['PATH'] ?? '/usr/bin:/bin', HOME: cwd, ...env } });
    return { code: 0, stdout, stderr };
  } catch (e) {
    const err = e as { code?: number; stdout?: string; stderr?: string };
    return { code: typeof err.code === 'number' ? err.code : -1, stdout: err.stdout ?? '', stderr: err.stderr ?? '' };
  }
}

/** Runs main() in this process (for what reads no environment), capturing what it writes. */
async function inProcess(args: string[]): Promise<Result> {
  let stdout = '';
  let stderr = '';
  const code = await main(args, { out: (t) => (stdout += `${t}\n`), err: (t) => (stderr += `${t}\n`) });
  return { code, stdout, stderr };
}

/** Exit 2, nothing on stdout, exactly one line on stderr: `line`. */
function assertUsage(r: Result, line: string): void {
  assert.equal(r.stdout, '', r.stdout);
  assert.equal(r.stderr, `${line}\n`);
  assert.equal(r.code, 2);
}

describe('vmroll CLI: the target and the conventions', function () {
  this.timeout(180_000);
  let dir: string;
  let git: GitServer;
  let url: string;
  let sim: SimCluster;
  let api: ApiServer;
  let kubeconfig: string;

  before(async () => {
    dir = mkdtempSync(path.join(tmpdir(), 'vmroll-cli-target-'));
    git = await startGitServer();
    url = await git.createBareRepo('fleet');
    const work = await git.createWorkingClone('fleet');
    for (const f of ['web.yaml', 'db.yaml', 'batch.yaml']) await work.write(`vms/${f}`, readFileSync(path.join(EXAMPLE, f), 'utf8'));
    await work.commit('three VMs');
    await work.push();
    sim = new SimCluster();
    api = await startApiServer({ cluster: sim, listen: '127.0.0.1:0' });
    kubeconfig = path.join(dir, 'sim.kubeconfig');
    writeFileSync(kubeconfig, simKubeconfig(api.url));
    for (const ns of ['shop', 'jobs']) sim.store.create({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: ns } });
  });
  after(async () => {
    await api?.close();
    await git?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  /** A fresh working folder per test, so .vmroll/ of one never serves another. */
  const work = (name: string): string => {
    const p = path.join(dir, name);
    mkdirSync(p, { recursive: true });
    return p;
  };

  describe('no surprise target', () => {
    it('run without --repo on a real cluster (--kubeconfig, --cluster kube, KUBECONFIG) refuses in one line and sends nothing', async () => {
      api.resetStats();
      const cwd = work('no-repo');
      for (const [args, env] of [
        [['run', '--once'], {}],
        [['run', '--once', '--kubeconfig', kubeconfig], {}],
        [['run', '--once', '--cluster', 'kube', '--kubeconfig', kubeconfig, '-o', 'json'], {}],
        [['run'], { KUBECONFIG: kubeconfig }],
        [['run', '--once'], { KUBERNETES_SERVICE_HOST: '127.0.0.1', KUBERNETES_SERVICE_PORT: '1' }],
      ] as const) {
        const r = await vmroll(cwd, [...args], env);
        assertUsage(r, `vmroll run: ${NO_REPO}`);
      }
      assert.equal(NO_REPO, 'no --repo: name the repository to sync (--repo URL|PATH, VMROLL_REPO or --config); the bundled example repository only runs on the embedded simulator (--cluster sim)');
      assert.equal(api.stats().requests, 0, 'the API server heard nothing');
      assert.equal(sim.store.list('VirtualMachine').length, 0, 'no example VM reached the cluster');
      assertUsage(await vmroll(cwd, ['plan', '--kubeconfig', kubeconfig]), 'vmroll plan: --repo <url|path> is required');
    });

    it('run and plan with a repository and no cluster chosen refuse, naming every way to choose one', async () => {
      const cwd = work('no-cluster');
      assertUsage(await vmroll(cwd, ['run', '--repo', url, '--once']), `vmroll run: ${NO_CLUSTER}`);
      assertUsage(await vmroll(cwd, ['plan', '--repo', url]), `vmroll plan: ${NO_CLUSTER}`);
      for (const way of ['--kubeconfig', 'KUBECONFIG', '--cluster sim', '~/.kube/config']) assert.ok(NO_CLUSTER.includes(way), way);
    });

    it('KUBECONFIG alone picks the Kubernetes API, and the first line names its server, context and file', async () => {
      const cwd = work('kubeconfig-env');
      const r = await vmroll(cwd, ['run', '--repo', url, '--path', 'vms', '--once', '--log-level', 'silent', '--cache-dir', path.join(cwd, 'cache')], { KUBECONFIG: kubeconfig });
      assert.equal(r.code, 0, r.stderr);
      const lines = r.stdout.split('\n');
      assert.equal(lines[0], `target: ${api.url} (context vmroll-sim, kubeconfig ${kubeconfig})`);
      assert.match(lines[1] ?? '', /^sync [0-9a-f]{12}: /);
      assert.ok(sim.store.get('VirtualMachine', 'shop', 'web') !== undefined, 'the VMs went to the API server KUBECONFIG names');
    });

    it('--cluster kube alone uses ~/.kube/config, and says so on the first line', async () => {
      const cwd = work('home-kubeconfig');
      mkdirSync(path.join(cwd, '.kube'));
      writeFileSync(path.join(cwd, '.kube', 'config'), simKubeconfig(api.url));
      const r = await vmroll(cwd, ['plan', '--repo', url, '--path', 'vms', '--cluster', 'kube', '--cache-dir', path.join(cwd, 'cache')]);
      assert.equal(r.code, 0, r.stderr);
      assert.equal(r.stdout.split('\n')[0], `target: ${api.url} (context vmroll-sim, kubeconfig ${path.join(cwd, '.kube', 'config')})`);
    });

    it('the embedded simulator only when chosen; the first line says where its state is; with -o json it is on stderr', async () => {
      const cwd = work('sim');
      const text = await vmroll(cwd, ['run', '--repo', url, '--path', 'vms', '--cluster', 'sim', '--once', '--log-level', 'silent', '--cache-dir', path.join(cwd, 'cache')]);
      assert.equal(text.code, 0, text.stderr);
      assert.equal(text.stdout.split('\n')[0], 'target: embedded KubeVirt simulator, state in memory only');
      assert.equal(text.stderr, '');
      const state = path.join(cwd, 'state.json');
      const json = await vmroll(cwd, ['run', '--repo', url, '--path', 'vms', '--sim-state', state, '--once', '-o', 'json', '--log-level', 'silent', '--cache-dir', path.join(cwd, 'cache')]);
      assert.equal(json.code, 0, json.stderr);
      assert.equal(json.stderr, `target: embedded KubeVirt simulator, state in ${state}\n`);
      assert.ok(validateVmPlan(JSON.parse(json.stdout)).ok, 'stdout is one VmPlan document and nothing else');
      const example = await vmroll(cwd, ['run', '--cluster', 'sim', '--once', '-o', 'json', '--log-level', 'silent']);
      assert.equal(example.code, 0, example.stderr);
      assert.equal(example.stderr.split('\n')[0], `target: embedded KubeVirt simulator, state in ${path.join('.vmroll', 'sim-state.json')}`);
      assert.match(example.stderr.split('\n')[1] ?? '', /^Created the example repository \.vmroll\/example-repo \(bundled with vmroll, for the simulator only\)\.$/);
      const plan = await vmroll(cwd, ['plan', '--repo', url, '--path', 'vms', '--cluster', 'sim', '--cache-dir', path.join(cwd, 'cache')]);
      assert.equal(plan.code, 0, plan.stderr);
      assert.equal(plan.stdout.split('\n')[0], 'target: embedded KubeVirt simulator, empty (no --sim-state)');
      const markdown = await vmroll(cwd, ['plan', '--repo', url, '--path', 'vms', '--cluster', 'sim', '-o', 'markdown', '--cache-dir', path.join(cwd, 'cache')]);
      assert.equal(markdown.code, 0, markdown.stderr);
      assert.ok(!markdown.stdout.includes('live cluster'), markdown.stdout);
      assert.match(markdown.stdout, /Planned by vmroll against embedded KubeVirt simulator, empty \(no --sim-state\); nothing is applied/);
    });

    it('npm start chooses the simulator explicitly', () => {
      const pkg = JSON.parse(readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as { scripts: Record<string, string> };
      assert.match(pkg.scripts['start'] ?? '', /\brun\b.*--cluster sim\b/);
    });
  });

  describe('--output json is always a document', () => {
    const assertFailedPlan = (r: Result, file: string, message: RegExp): void => {
      assert.equal(r.code, 1, r.stderr);
      const doc: unknown = JSON.parse(r.stdout);
      const valid = validateVmPlan(doc);
      assert.ok(valid.ok, JSON.stringify(valid));
      if (!valid.ok) return;
      assert.equal(valid.value.commit, null);
      assert.deepEqual(valid.value.vms, []);
      assert.equal(valid.value.errors.length, 1);
      assert.equal(valid.value.errors[0]?.file, file);
      assert.equal(valid.value.errors[0]?.line, null);
      assert.match(valid.value.errors[0]?.message ?? '', message);
    };

    it('run --once -o json against a stopped Git server, and a missing branch: one VmPlan with the error, exit 1', async () => {
      const cwd = work('json-failures');
      const stopped = await startGitServer();
      const gone = await stopped.createBareRepo('gone');
      await stopped.stop();
      const down = await vmroll(cwd, ['run', '--once', '-o', 'json', '--cluster', 'sim', '--repo', gone, '--cache-dir', path.join(cwd, 'cache'), '--log-level', 'silent']);
      assertFailedPlan(down, gone, /^sync failed: .*ECONNREFUSED/);
      const missing = await vmroll(cwd, ['run', '--once', '-o', 'json', '--cluster', 'sim', '--repo', url, '--ref', 'no-such-branch', '--cache-dir', path.join(cwd, 'cache'), '--log-level', 'silent']);
      assertFailedPlan(missing, url, /^sync failed: .*no-such-branch/);
      const plan = await vmroll(cwd, ['plan', '-o', 'json', '--cluster', 'sim', '--repo', url, '--ref', 'no-such-branch', '--cache-dir', path.join(cwd, 'cache')]);
      assertFailedPlan(plan, url, /^could not fetch: .*no-such-branch/);
    });

    it('run --once -o json against an API server that is gone: one VmPlan with the error, exit 1', async () => {
      const cwd = work('json-api-down');
      const gone = await startApiServer({ cluster: new SimCluster(), listen: '127.0.0.1:0' });
      const deadKubeconfig = path.join(cwd, 'gone.kubeconfig');
      writeFileSync(deadKubeconfig, simKubeconfig(gone.url));
      await gone.close();
      const r = await vmroll(cwd, ['run', '--once', '-o', 'json', '--repo', url, '--path', 'vms', '--kubeconfig', deadKubeconfig, '--cache-dir', path.join(cwd, 'cache'), '--log-level', 'silent']);
      assertFailedPlan(r, url, /^sync failed: .*ECONNREFUSED/);
      assert.equal(r.stderr, `target: ${gone.url} (context vmroll-sim, kubeconfig ${deadKubeconfig})\n`);
    });
  });

  describe('conventions', () => {
    it('--version prints vmroll and package.json version', async () => {
      const r = await vmroll(dir, ['--version']);
      assert.deepEqual(await inProcess(['--version']), r);
      assert.deepEqual(r, { code: 0, stdout: `vmroll ${VERSION}\n`, stderr: '' });
    });

    it('vmroll help <command> prints that command’s help; an unknown one exits 2', async () => {
      for (const name of ['run', 'plan', 'diff', 'sim', 'demo']) {
        const help = await inProcess(['help', name]);
        const flag = await inProcess([name, '--help']);
        assert.equal(help.code, 0, name);
        assert.match(help.stdout, new RegExp(`^Usage: vmroll ${name} `));
        assert.equal(help.stdout, flag.stdout, name);
      }
      assertUsage(await inProcess(['help', 'nonsense']), 'vmroll help: no command "nonsense"; the commands are run, demo, diff, plan, sim');
      assertUsage(await vmroll(dir, ['help', 'nonsense']), 'vmroll help: no command "nonsense"; the commands are run, demo, diff, plan, sim');
    });

    it('-o and the same --output names everywhere (table still accepted); help texts agree', async () => {
      for (const name of ['run', 'plan', 'diff']) {
        const help = (await inProcess([name, '--help'])).stdout;
        assert.match(help, /-o, --output text\|/, name);
        assert.ok(!/--output[^\n]*table/.test(help), `${name} no longer offers table`);
      }
      const ex = (f: string): string => path.join(ROOT, 'fixtures', 'examples', f);
      const diffArgs = ['diff', '--baseline', ex('web-baseline.yaml'), '--desired', ex('web-desired.yaml'), '--vmi', ex('web-vmi.yaml')];
      const text = await inProcess([...diffArgs, '-o', 'text']);
      assert.equal(text.code, 0, text.stderr);
      assert.match(text.stdout, /cpu\.sockets\s+2 → 4\s+staged/);
      assert.deepEqual(await inProcess([...diffArgs, '--output', 'table']), text, 'table is text under its old name');
      assert.ok(validateVmPlan(JSON.parse((await inProcess([...diffArgs, '-o', 'json'])).stdout)).ok);
      assertUsage(await inProcess(['plan', '--repo', url, '--cluster', 'sim', '-o', 'yaml']), 'vmroll plan: --output must be text, markdown or json, not "yaml"');
      assertUsage(await inProcess(['run', '--repo', url, '--cluster', 'sim', '-o', 'xml', '--once']), 'vmroll run: --output must be text or json, not "xml"');
      assertUsage(await inProcess(['diff', '-o', 'markdown']), 'vmroll diff: --output must be text or json, not "markdown"');
    });

    it('--ref on run and plan; --branch is its alias on run; both at odds is refused', async () => {
      const cwd = work('ref');
      const byRef = await vmroll(cwd, ['run', '--repo', url, '--cluster', 'sim', '--ref', 'main', '--once', '-o', 'json', '--log-level', 'silent', '--cache-dir', path.join(cwd, 'cache')]);
      const byBranch = await vmroll(cwd, ['run', '--repo', url, '--cluster', 'sim', '--branch', 'main', '--once', '-o', 'json', '--log-level', 'silent', '--cache-dir', path.join(cwd, 'cache')]);
      assert.equal(byRef.code, 0, byRef.stderr);
      assert.equal(byBranch.code, 0, byBranch.stderr);
      assert.equal((JSON.parse(byRef.stdout) as { commit: string }).commit, (JSON.parse(byBranch.stdout) as { commit: string }).commit);
      assertUsage(await vmroll(cwd, ['run', '--repo', url, '--cluster', 'sim', '--ref', 'main', '--branch', 'dev']), 'vmroll run: --branch is another name for --ref: give one of them');
      assert.match((await inProcess(['run', '--help'])).stdout, /--ref <ref> +branch, tag or commit to follow/);
    });

    it('SSH repositories are refused as such, never read as local paths (run, plan, vmroll.yaml)', async () => {
      const why = 'SSH repositories are not supported yet; use https:// with a token (--git-token-file)';
      assertUsage(await vmroll(dir, ['run', '--repo', 'git@github.com:acme/vms.git', '--cluster', 'sim']), `vmroll run: --repo git@github.com:acme/vms.git: ${why}`);
      assertUsage(await vmroll(dir, ['run', '--repo', 'ssh://git@github.com/acme/vms.git', '--cluster', 'sim']), `vmroll run: --repo ssh://github.com/acme/vms.git: ${why}`);
      assertUsage(await vmroll(dir, ['plan', '--repo', 'git@gitlab.example:infra/vms', '--cluster', 'sim']), `vmroll plan: --repo git@gitlab.example:infra/vms: ${why}`);
      const file = path.join(dir, 'ssh.yaml');
      writeFileSync(file, 'repositories:\n  - name: good\n    url: ./vms\n  - name: ssh\n    url: git@github.com:acme/vms.git\n');
      assertUsage(await vmroll(dir, ['run', '--config', file, '--cluster', 'sim']), `vmroll run: ${file}:5: repositories[1].url: git@github.com:acme/vms.git: ${why}`);
      // A relative path with a slash before any colon is a folder, as Git reads it.
      const local = await vmroll(dir, ['run', '--repo', './no:such', '--cluster', 'sim', '--once', '--log-level', 'silent']);
      assert.equal(local.code, 1, local.stderr);
      assert.match(local.stdout, /^sync failed: .*no:such/m, 'a folder name with a colon is read as a folder');
    });

    it('--log-format text writes readable lines on stderr; stdout keeps the sync lines; json stays the default', async () => {
      const cwd = work('log-format');
      const args = ['run', '--repo', url, '--path', 'vms', '--cluster', 'sim', '--once', '--cache-dir', path.join(cwd, 'cache')];
      const text = await vmroll(cwd, [...args, '--log-format', 'text']);
      assert.equal(text.code, 0, text.stderr);
      assert.match(text.stderr, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z INFO  reconciled repo=\S+ commit=[0-9a-f]{12} summary="[^"]*3 created" writes=3 /m);
      for (const line of text.stderr.trimEnd().split('\n')) assert.ok(!line.startsWith('{'), line);
      assert.deepEqual(text.stdout.split('\n').slice(0, 2).map((l) => l.split(':')[0]), ['target', `sync ${/commit=([0-9a-f]{12})/.exec(text.stderr)?.[1] ?? ''}`]);
      const json = await vmroll(cwd, args);
      for (const line of json.stderr.trimEnd().split('\n')) assert.doesNotThrow(() => JSON.parse(line), line);
      assertUsage(await vmroll(cwd, [...args, '--log-format', 'pretty']), 'vmroll run: --log-format must be json or text, not "pretty"');
      assertUsage(await vmroll(cwd, ['sim', '--log-format', 'yaml']), 'vmroll sim: --log-format must be json or text, not "yaml"');
      assertUsage(await vmroll(cwd, ['plan', '--repo', url, '--cluster', 'sim', '--log-format', 'x']), 'vmroll plan: --log-format must be json or text, not "x"');
    });

    it('the text log format renders fields and quotes what needs quoting', () => {
      const line = formatLogLine(JSON.stringify({ level: 40, time: Date.UTC(2026, 0, 2, 3, 4, 5, 6), msg: 'apply failed', vm: 'shop/web', err: 'a "b" c', n: 3, o: { a: 1 } }));
      assert.equal(line, '2026-01-02T03:04:05.006Z WARN  apply failed vm=shop/web err="a \\"b\\" c" n=3 o={"a":1}\n');
      assert.equal(formatLogLine('not json'), 'not json\n');
    });

    it('the text log format hides secrets as the JSON format does', () => {
      const written: string[] = [];
      const sink = { write: (l: string) => (written.push(l), true) } as unknown as NodeJS.WritableStream;
      const logger = makeLogger('info', ['s3cr3t-token'], sink, 'text');
      logger.info({ url: 'https://x:s3cr3t-token@git.example/r.git', token: 'other' }, 'fetch');
      assert.equal(written.length, 1);
      assert.match(written[0] ?? '', /^\S+Z INFO  fetch url=https:\/\/x:\[redacted\]@git\.example\/r\.git token=\[redacted\]\n$/);
    });
  });
});
