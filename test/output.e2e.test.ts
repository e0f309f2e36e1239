/**
 * What an operator reads from `vmroll run`, sync after sync: the text on stdout (captured through
 * the CommandIO that `vmroll run` writes to), the JSON log on stderr, and the summary that becomes the
 * commit status. Real git http-backend on 127.0.0.1, pushes with the git CLI, the embedded simulator
 * emulating KubeVirt v1.9.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { type RunHandle, makeLogger, startRun } from '../reconciler/commands/run.ts';
import { runConfig } from '../reconciler/config.ts';
import { SUMMARY_MAX_CHARS, type Summary as SyncSummary, formatSummary } from '../reconciler/plan/summary.ts';
import type { Obj } from '../reconciler/rollout/index.ts';
import { ROOT } from './helpers/cases.ts';
import { type GitServer, type WorkingClone, startGitServer } from './helpers/gitServer.ts';
import { until } from './helpers/waitFor.ts';

const EXAMPLE = path.join(ROOT, 'fixtures', 'example-repo', 'vms');
const KUBEVIRT = path.join(ROOT, 'fixtures', 'example-cluster', 'kubevirt.yaml');
const CORES_MESSAGE = 'a non-live-updatable field was changed in the template spec';
const execFileAsync = promisify(execFile);

/** A `vmroll run` in this process whose stdout, stderr and JSON log are captured. */
interface Captured {
  handle: RunHandle;
  out: string[];
  err: string[];
  log: string[];
  /** Runs one sync and returns the text it printed on stdout. */
  sync(): Promise<string>;
}

async function startCaptured(url: string, dir: string, state: string): Promise<Captured> {
  const out: string[] = [];
  const err: string[] = [];
  const log: string[] = [];
  const logger = makeLogger('info', [], { write: (l: string) => (log.push(l), true) } as unknown as NodeJS.WritableStream);
  const config = runConfig(
    { repo: url, path: 'vms', cluster: 'sim', 'sim-state': state, 'sim-kubevirt': KUBEVIRT, 'cache-dir': path.join(dir, 'cache'), interval: '1h', output: 'text' },
    {},
  );
  const handle = await startRun(config, { out: (t) => out.push(t), err: (t) => err.push(t) }, logger);
  return {
    handle,
    out,
    err,
    log,
    async sync() {
      const before = out.length;
      const report = await handle.trigger('test');
      assert.ok(report !== null, `the sync failed: ${out.slice(before).join('\n')}`);
      assert.equal(out.length, before + 1, 'one sync prints one block');
      return out[before] ?? '';
    },
  };
}

/** The lines of a block that mention `vm` or are indented below its line. */
function linesOf(text: string, vm: string): string[] {
  const lines = text.split('\n');
  const out: string[] = [];
  let inside = false;
  for (const line of lines.slice(1)) {
    if (/^ {2}\S/.test(line)) inside = line.includes(` ${vm}`);
    if (inside) out.push(line.trim());
  }
  return out;
}

function vmiOf(handle: RunHandle, name: string): Obj {
  const vmi = handle.sim?.store.get('VirtualMachineInstance', 'shop', name);
  assert.ok(vmi !== undefined, `no VMI shop/${name}`);
  return vmi;
}

/** `spec.domain.<part>` of a VMI. */
const domainPart = (vmi: Obj, part: 'cpu' | 'memory'): Obj => ((((vmi['spec'] ?? {}) as Obj)['domain'] ?? {}) as Obj)[part] as Obj;

describe('vmroll run output: what the operator reads, sync after sync', function () {
  this.timeout(180_000);
  let server: GitServer;
  let work: WorkingClone;
  let url: string;
  let dir: string;
  let web = readFileSync(path.join(EXAMPLE, 'web.yaml'), 'utf8');

  const commitWeb = async (edit: (text: string) => string, message: string): Promise<string> => {
    web = edit(web);
    await work.write('vms/web.yaml', web);
    const sha = await work.commit(message);
    await work.push();
    return sha;
  };

  before(async () => {
    server = await startGitServer();
    dir = mkdtempSync(path.join(tmpdir(), 'vmroll-output-'));
    url = await server.createBareRepo('fleet');
    work = await server.createWorkingClone('fleet');
  });
  after(async () => {
    await server?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it('lists per commit only the fields it changed, live or staged with reasons; a revert as a revert; a restart pending once; a broken file held and its error once', async () => {
    const state = path.join(dir, 'scenario.json');
    await work.write('vms/db.yaml', readFileSync(path.join(EXAMPLE, 'db.yaml'), 'utf8'));
    const c1 = await commitWeb((t) => t, 'web and db');
    const run = await startCaptured(url, dir, state);
    try {
      // 1. Both VMs are created.
      let text = await run.sync();
      assert.match(text.split('\n')[0] ?? '', new RegExp(`^sync ${c1.slice(0, 12)}: 0 in sync · 2 created \\(\\d+ ms, 2 writes\\)$`));
      assert.deepEqual(text.split('\n').slice(1), ['  create  shop/db', '  create  shop/web']);

      // 2. A live change: that one field, nothing else; db is only counted.
      const c2 = await commitWeb((t) => t.replace('sockets: 2', 'sockets: 4'), 'web: 4 sockets');
      text = await run.sync();
      // Live on the VMI, but the example cluster lists no workload update method: no migration carries it to the guest.
      assert.match(text.split('\n')[0] ?? '', new RegExp(`^sync ${c2.slice(0, 12)}: 1 in sync · 1 blocked: no LiveMigrate method \\(`));
      assert.deepEqual(linesOf(text, 'shop/web'), [
        'update  shop/web',
        'live    spec.template.spec.domain.cpu.sockets: 2 → 4 (CPU sockets patched into the VMI (condition HotVCPUChange): will not reach the guest until a restart: the cluster has no LiveMigrate workload update method)',
        'guest   blocked: HotVCPUChange will not reach the guest until a restart: the cluster has no LiveMigrate workload update method',
      ]);
      assert.deepEqual(linesOf(text, 'shop/db'), []);
      assert.equal(domainPart(vmiOf(run.handle, 'web'), 'cpu')['sockets'], 4, 'hot-plugged');
      // The fixture's KubeVirt lists no workload update method, so nothing migrates by itself: the
      // guest keeps 2 sockets (HotVCPUChange) and KubeVirt holds any further CPU change. A manual
      // migration (virtctl migrate) takes the 4 sockets to the guest.
      run.handle.sim?.createMigration({ apiVersion: 'kubevirt.io/v1', kind: 'VirtualMachineInstanceMigration', metadata: { generateName: 'manual-', namespace: 'shop' }, spec: { vmiName: 'web' } });
      await until('the migration to take the 4 sockets to the guest', () => ((vmiOf(run.handle, 'web')['status'] as Obj)['currentCPUTopology'] as Obj)['sockets'] === 4);

      // 3. A staged change: only cores (the hot-plugged sockets are not shown again), its reason, the condition.
      await commitWeb((t) => t.replace('cores: 1', 'cores: 2'), 'web: 2 cores');
      text = await run.sync();
      assert.match(text.split('\n')[0] ?? '', /: 1 in sync · 1 awaiting restart \(/);
      assert.deepEqual(linesOf(text, 'shop/web'), [
        `update  shop/web · RestartRequired set: "${CORES_MESSAGE}"`,
        'staged  spec.template.spec.domain.cpu.cores: 1 → 2',
        `because ${CORES_MESSAGE}`,
      ]);
      // The same commit again: web stays awaiting restart and is only counted.
      text = await run.sync();
      assert.deepEqual(text.split('\n').length, 1, text);
      assert.match(text, /: 1 in sync · 1 awaiting restart \(\d+ ms, 0 writes\)$/);

      // 4. An unrelated field that KubeVirt would hot-plug: only that field, not the old staged cores.
      await commitWeb((t) => t.replace('guest: 2Gi', 'guest: 3Gi'), 'web: 3Gi');
      text = await run.sync();
      assert.match(text.split('\n')[0] ?? '', /: 1 in sync · 1 awaiting restart \(/);
      const four = linesOf(text, 'shop/web');
      assert.equal(four[0], `update  shop/web · RestartRequired kept: "${CORES_MESSAGE}"`);
      assert.equal(four[1], 'staged  spec.template.spec.domain.memory.guest: 2Gi → 3Gi');
      assert.match(four[2] ?? '', /^because held: .*KubeVirt runs no live update while one is pending$/, 'the memory change waits behind the pending restart, and says so');
      assert.equal(four.length, 3);
      assert.ok(!text.includes('cores'), text);
      assert.equal(domainPart(vmiOf(run.handle, 'web'), 'memory')['guest'], '2Gi', 'held: not in the guest yet');

      // 5. The cores change reverted: a revert, RestartRequired cleared; the held memory change goes live now.
      const c5 = await commitWeb((t) => t.replace('cores: 2', 'cores: 1'), 'Revert "web: 2 cores"');
      text = await run.sync();
      // The memory goes onto the VMI, but with no LiveMigrate method no migration takes it to the guest: web counts as blocked.
      assert.match(text.split('\n')[0] ?? '', new RegExp(`^sync ${c5.slice(0, 12)}: 1 in sync · 1 blocked: no LiveMigrate method \\(`));
      assert.deepEqual(linesOf(text, 'shop/web'), [
        'revert  shop/web · RestartRequired cleared: spec.template.spec.domain.cpu.cores 2 → 1 (back to what the VM runs)',
        'live    spec.template.spec.domain.memory.guest: 2Gi → 3Gi (held by the pending restart until this change; goes live now)',
        'guest   blocked: HotMemoryChange will not reach the guest until a restart: the cluster has no LiveMigrate workload update method',
      ]);
      assert.ok(!text.includes('live-updated'), 'a revert is not counted as live-updated');
      assert.equal(domainPart(vmiOf(run.handle, 'web'), 'memory')['guest'], '3Gi', 'the memory change did reach the VMI');
      // A manual migration takes the 3Gi to the guest, as it took the sockets.
      run.handle.sim?.createMigration({ apiVersion: 'kubevirt.io/v1', kind: 'VirtualMachineInstanceMigration', metadata: { generateName: 'manual-', namespace: 'shop' }, spec: { vmiName: 'web' } });
      await until('the migration to take the 3Gi to the guest', () => ((vmiOf(run.handle, 'web')['status'] as Obj)['memory'] as Obj | undefined)?.['guestCurrent'] === '3Gi');
      const vm = run.handle.sim?.store.get('VirtualMachine', 'shop', 'web');
      const conditions = (((vm?.['status'] ?? {}) as Obj)['conditions'] ?? []) as Obj[];
      assert.equal(conditions.find((c) => c['type'] === 'RestartRequired'), undefined, 'KubeVirt (simulated) cleared the condition');

      // A label on the VirtualMachine itself: listed as a VM-level change; the source-commit annotation vmroll stamps is not.
      await commitWeb((t) => t.replace('    app: web', '    app: web\n    tier: front'), 'web: tier label');
      text = await run.sync();
      assert.match(text.split('\n')[0] ?? '', /: 1 in sync · 1 live-updated \(/);
      assert.deepEqual(linesOf(text, 'shop/web'), ['update  shop/web', 'live    metadata.labels.tier: ∅ → front (VM-level field: takes effect at once, not part of the running instance)']);

      // Sockets set back to the value web started with: no revert, since the guest runs the hot-plugged 4.
      await commitWeb((t) => t.replace('sockets: 4', 'sockets: 2'), 'web: 2 sockets');
      text = await run.sync();
      assert.match(text.split('\n')[0] ?? '', /: 1 in sync · 1 awaiting restart \(/);
      assert.deepEqual(linesOf(text, 'shop/web'), [
        'update  shop/web · RestartRequired set: "Reduction of CPU socket count requires a restart"',
        'staged  spec.template.spec.domain.cpu.sockets: 4 → 2',
        'because Reduction of CPU socket count requires a restart',
      ]);

      // 6. web's file breaks: web keeps its place in the counts (held), the error is listed once.
      const c6 = await commitWeb((t) => t.replace('kind: VirtualMachine', 'kind: VirtualMachine\nspec: [unclosed'), 'web: broken');
      text = await run.sync();
      const lines = text.split('\n');
      assert.match(lines[0] ?? '', new RegExp(`^sync ${c6.slice(0, 12)}: 1 in sync · 1 held · 1 error \\(\\d+ ms, 0 writes\\)$`));
      assert.equal(lines.length, 2, text);
      assert.match(lines[1] ?? '', /^ {2}error {3}vms\/web\.yaml:\d+: invalid YAML/);
      text = await run.sync();
      assert.match(text, /^sync [0-9a-f]{12}: 1 in sync · 1 held · 1 error \(\d+ ms, 0 writes\)$/, 'the same error is counted, not listed again');

      // Human text only on stdout, JSON only in the log; the manifest error is one structured event.
      assert.deepEqual(run.err, []);
      for (const block of run.out) for (const line of block.split('\n')) assert.ok(!line.startsWith('{'), `a log line on stdout: ${line}`);
      const events = run.log.map((l) => JSON.parse(l) as Obj);
      const manifestErrors = events.filter((e) => e['msg'] === 'manifest error');
      assert.equal(manifestErrors.length, 1, 'logged when it first appears, not every sync');
      assert.equal(manifestErrors[0]?.['level'], 40, 'warn');
      assert.equal(manifestErrors[0]?.['file'], 'vms/web.yaml');
      assert.equal(typeof manifestErrors[0]?.['line'], 'number');
      assert.match(String(manifestErrors[0]?.['message']), /invalid YAML/);
      assert.equal(manifestErrors[0]?.['commit'], c6.slice(0, 12));
    } finally {
      await run.handle.stop();
    }
  });

  it('a new process lists a VM already awaiting restart once, with its staged fields and reasons, then only counts it', async () => {
    // Its own cluster: web in the state commit 3 of the scenario leaves it (cores staged).
    const state = path.join(dir, 'restart.json');
    web = readFileSync(path.join(EXAMPLE, 'web.yaml'), 'utf8');
    await work.write('vms/db.yaml', readFileSync(path.join(EXAMPLE, 'db.yaml'), 'utf8'));
    await commitWeb((t) => t, 'web repaired');
    const first = await startCaptured(url, dir, state);
    try {
      await first.sync();
      await commitWeb((t) => t.replace('cores: 1', 'cores: 2'), 'web: 2 cores again');
      await first.sync();
    } finally {
      await first.handle.stop();
    }
    const second = await startCaptured(url, dir, state);
    try {
      let text = await second.sync();
      assert.match(text.split('\n')[0] ?? '', /: 1 in sync · 1 awaiting restart \(\d+ ms, 0 writes\)$/);
      assert.deepEqual(linesOf(text, 'shop/web'), [
        `awaiting shop/web · RestartRequired: "${CORES_MESSAGE}"`,
        'staged  spec.template.spec.domain.cpu.cores: 1 → 2',
        `because ${CORES_MESSAGE}`,
      ]);
      text = await second.sync();
      assert.equal(text.split('\n').length, 1, text);
      // A restart outside vmroll clears the condition: said once, then web counts as in sync.
      await second.handle.cluster.restartVirtualMachine({ namespace: 'shop', name: 'web' });
      const deadline = Date.now() + 30_000;
      for (;;) {
        text = await second.sync();
        if (text.includes('2 in sync') || Date.now() > deadline) break;
        await new Promise((r) => setTimeout(r, 50));
      }
      assert.match(text.split('\n')[0] ?? '', /: 2 in sync \(/);
      assert.deepEqual(linesOf(text, 'shop/web'), ['ready   shop/web · RestartRequired gone without a write from vmroll (the VM was restarted or stopped)']);
      text = await second.sync();
      assert.equal(text.split('\n').length, 1, text);
    } finally {
      await second.handle.stop();
    }
  });

  it('vmroll run --once: human text on stdout, only JSON lines on stderr, manifest errors as log events with file and line', async () => {
    await work.write('vms/web.yaml', 'apiVersion: kubevirt.io/v1\nkind: VirtualMachine\nmetadata:\n  name: web\n  namespace: shop\nspec: [unclosed\n');
    await work.commit('web broken again');
    await work.push();
    const state = path.join(dir, 'once.json');
    const args = [path.join(ROOT, 'bin', 'vmroll.js'), 'run', '--once', '--repo', url, '--path', 'vms', '--cluster', 'sim', '--sim-state', state, '--cache-dir', path.join(dir, 'cache-once')];
    let stdout = '';
    let stderr = '';
    try {
      await execFileAsync(process.execPath, args, { cwd: ROOT, timeout: 120_000 });
      assert.fail('a sync with a manifest error exits 1');
    } catch (e) {
      const r = e as { code?: number; stdout?: string; stderr?: string };
      assert.equal(r.code, 1, r.stderr);
      stdout = r.stdout ?? '';
      stderr = r.stderr ?? '';
    }
    const out = stdout.trimEnd().split('\n');
    assert.match(out[0] ?? '', /^target: embedded KubeVirt simulator, state in /, stdout);
    assert.match(out[1] ?? '', /^sync [0-9a-f]{12}: 0 in sync · 1 created · 1 error \(/, stdout);
    const errorLine = /\n {2}error {3}vms\/web\.yaml:(\d+): invalid YAML/.exec(stdout);
    assert.ok(errorLine !== null, stdout);
    assert.match(stdout, /\n {2}create {2}shop\/db/);
    for (const line of out) assert.ok(!line.startsWith('{'), `a log line on stdout: ${line}`);
    const events = stderr.trimEnd().split('\n').map((l) => {
      try {
        return JSON.parse(l) as Obj;
      } catch {
        return assert.fail(`not a JSON log line on stderr: ${l}`);
      }
    });
    const manifestError = events.find((e) => e['msg'] === 'manifest error');
    assert.deepEqual([manifestError?.['file'], manifestError?.['line'], manifestError?.['level']], ['vms/web.yaml', Number(errorLine[1]), 40]);
    assert.match(String(manifestError?.['message']), /invalid YAML/);
  });

  it('a sync that fails as a whole says so on stdout in text mode, and logs the error on the log stream', async () => {
    const run = await startCaptured(server.repoUrl('missing'), dir, path.join(dir, 'missing.json'));
    try {
      const report = await run.handle.trigger('test');
      assert.equal(report, null);
      assert.equal(run.out.length, 1);
      assert.match(run.out[0] ?? '', /^sync failed: /);
      assert.deepEqual(run.err, [], 'no human text on stderr');
      const failed = run.log.map((l) => JSON.parse(l) as Obj).filter((e) => e['msg'] === 'sync failed');
      assert.equal(failed.length, 1);
      assert.equal(failed[0]?.['level'], 50);
    } finally {
      await run.handle.stop();
    }
  });

  it('formatSummary fits a commit status description and keeps every count', () => {
    const big: SyncSummary = { vms: 0, inSync: 123456, created: 23456, liveUpdated: 34567, staged: 45678, reverted: 56789, awaitingRestart: 67890, held: 78901, deleted: 89012, orphans: 11234, warnings: 22345, errors: 90123 };
    const text = formatSummary(big);
    assert.ok(text.length <= SUMMARY_MAX_CHARS, `${text.length}: ${text}`);
    for (const n of Object.values(big).slice(1)) assert.ok(text.includes(String(n)), `${n} missing from ${text}`);
    const small: SyncSummary = { vms: 4, inSync: 1, created: 0, liveUpdated: 1, staged: 0, reverted: 1, awaitingRestart: 1, held: 0, deleted: 0, errors: 1 };
    assert.equal(formatSummary(small), '1 in sync · 1 live-updated · 1 reverted · 1 awaiting restart · 1 error');
    // Where the guests stand: the issue's own example, and every reason a VM is blocked for.
    const guests: SyncSummary = { ...small, vms: 19, inSync: 12, liveUpdated: 2, migrating: 3, blocked: 1, blockedWhy: ['not migratable'], reverted: 0, awaitingRestart: 0, errors: 0 };
    assert.equal(formatSummary(guests), '12 in sync · 2 live-updated · 3 migrating · 1 blocked: not migratable');
    const moving: SyncSummary = { ...guests, migrating: 0, queued: 2, evicted: 1, blocked: 3, blockedWhy: ['no LiveMigrate method', 'not migratable'] };
    assert.equal(formatSummary(moving), '12 in sync · 2 live-updated · 2 queued · 1 evicted · 3 blocked: no LiveMigrate method, not migratable');
    const bigGuests: SyncSummary = { ...big, migrating: 12345, queued: 2345, blocked: 3456, blockedWhy: ['KubeVirt not Deployed', 'hotplug failed', 'no LiveMigrate method', 'not migratable'], evicted: 456 };
    const shortened = formatSummary(bigGuests);
    for (const n of [12345, 2345, 3456, 456]) assert.ok(shortened.includes(`${n} `), `${n} missing from ${shortened}`);
  });
});
