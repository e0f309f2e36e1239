/**
 * `vmroll run --config` reloads: a config folder laid out as the kubelet mounts a ConfigMap
 * (`vmroll.yaml -> ..data/vmroll.yaml`, `..data -> ..2026_…`), updated by the kubelet's atomic
 * symlink swap; repositories added, changed and removed on the embedded simulator with real
 * Git over HTTP; a broken file refused with file:line while both repositories keep syncing; a
 * removed repository stops and keeps its VMs.
 */
import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, readlinkSync, renameSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Writable } from 'node:stream';
import { type ApiServer, startApiServer } from '../reconciler/cluster/sim/apiServer.ts';
import { SimCluster } from '../reconciler/cluster/sim/simCluster.ts';
import { type RunHandle, makeLogger, startRun } from '../reconciler/commands/run.ts';
import { simKubeconfig } from '../reconciler/commands/sim.ts';
import { type RunConfig, type RunConfigSource, resolveRunConfig, runConfig, runConfigSource } from '../reconciler/config.ts';
import { ConfigReloadError, ConfigWatcher, type ReloadPlan, planReload } from '../reconciler/configReload.ts';
import { VmrollMetrics } from '../reconciler/controller/metrics.ts';
import { normaliseRepoUrl } from '../reconciler/apply/identity.ts';
import type { Obj } from '../reconciler/rollout/index.ts';
import { ROOT } from './helpers/cases.ts';
import { type GitServer, type WorkingClone, startGitServer } from './helpers/gitServer.ts';

const VMROLL = path.join(ROOT, 'bin', 'vmroll.js');
const EXAMPLE = path.join(ROOT, 'fixtures', 'example-repo', 'vms');
const KUBEVIRT = path.join(ROOT, 'fixtures', 'example-cluster', 'kubevirt.yaml');
const example = (f: string): string => readFileSync(path.join(EXAMPLE, f), 'utf8');

/** Polls until `check` holds (every 25 ms, at most `ms`). */
async function until(what: string, check: () => boolean | Promise<boolean>, ms = 30_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

/**
 * A folder as the kubelet mounts a ConfigMap: each version in its own timestamped folder,
 * `..data` a symlink to the current one, `vmroll.yaml` a symlink through `..data`. An update
 * writes a new folder, points `..data_tmp` at it and renames that over `..data` (atomic),
 * then removes the old folder.
 */
class ConfigMapMount {
  /** The path vmroll is given (`--config`). */
  readonly file: string;
  private version = 0;

  constructor(readonly dir: string) {
    mkdirSync(dir, { recursive: true });
    this.file = path.join(dir, 'vmroll.yaml');
  }

  /** Publishes a new version of vmroll.yaml the way the kubelet does. */
  publish(text: string): void {
    this.version++;
    const stamp = `..2026_11_30_06_00_00.${String(this.version).padStart(9, '0')}`;
    mkdirSync(path.join(this.dir, stamp));
    writeFileSync(path.join(this.dir, stamp, 'vmroll.yaml'), text);
    const data = path.join(this.dir, '..data');
    if (this.version === 1) {
      symlinkSync(stamp, data);
      symlinkSync(path.join('..data', 'vmroll.yaml'), this.file);
      return;
    }
    const old = readlinkSync(data);
    symlinkSync(stamp, path.join(this.dir, '..data_tmp'));
    renameSync(path.join(this.dir, '..data_tmp'), data);
    rmSync(path.join(this.dir, old), { recursive: true, force: true });
  }
}

/** A pino destination that keeps the JSON lines it gets. */
function logSink(): { stream: Writable; lines: Obj[]; said(msg: string): Obj[] } {
  const lines: Obj[] = [];
  let rest = '';
  const stream = new Writable({
    write(chunk: Buffer, _enc, done) {
      rest += chunk.toString();
      const parts = rest.split('\n');
      rest = parts.pop() ?? '';
      for (const p of parts) if (p !== '') lines.push(JSON.parse(p) as Obj);
      done();
    },
  });
  return { stream, lines, said: (msg) => lines.filter((l) => l['msg'] === msg) };
}

const socketsOf = (vm: Obj | undefined): unknown => {
  const spec = (((vm?.['spec'] as Obj | undefined)?.['template'] as Obj | undefined)?.['spec'] ?? {}) as Obj;
  return ((((spec['domain'] ?? {}) as Obj)['cpu'] ?? {}) as Obj)['sockets'];
};

function metric(text: string, series: string): number | undefined {
  const line = text.split('\n').find((l) => l.startsWith(`${series} `));
  return line === undefined ? undefined : Number(line.split(' ').pop());
}

/** The run configuration a vmroll.yaml text gives with no flags but --config and an empty environment. */
function resolved(file: string, text: string, flags: Record<string, string> = {}, env: NodeJS.ProcessEnv = {}): RunConfig {
  return resolveRunConfig({ config: file, ...flags }, env, { path: file, text });
}

describe('config reload: what a new vmroll.yaml changes (planReload)', () => {
  const file = '/etc/vmroll/vmroll.yaml';
  const base = ['cluster: {kind: sim}', 'interval: 1m', 'repositories:', '  - {name: shop, url: https://git.example/shop.git, path: vms, namespaces: [shop]}', '  - {name: lab, url: https://git.example/lab.git}'];

  it('adds, removes and rebuilds repositories by name, naming the fields that changed', () => {
    const current = resolved(file, base.join('\n'));
    const next = resolved(file, ['cluster: {kind: sim}', 'interval: 1m', 'repositories:', '  - {name: shop, url: https://git.example/shop.git, path: vms, branch: next, prune: true, namespaces: [shop, web]}', '  - {name: ops, url: https://git.example/ops.git}'].join('\n'));
    const plan = planReload(current, next);
    assert.deepEqual(plan.added.map((r) => r.name), ['ops']);
    assert.deepEqual(plan.removed, ['lab']);
    assert.deepEqual(plan.changed.map((c) => [c.config.name, c.fields]), [['shop', ['branch', 'namespaces', 'prune']]]);
    assert.deepEqual(plan.needsRestart, []);
    assert.deepEqual(plan.running.repositories?.map((r) => r.name), ['shop', 'ops']);
  });

  it('an unchanged file changes nothing; a file-wide interval change rebuilds every repository it reaches', () => {
    const current = resolved(file, base.join('\n'));
    const same = planReload(current, resolved(file, base.join('\n')));
    assert.deepEqual([same.added, same.removed, same.changed, same.needsRestart], [[], [], [], []]);
    const slower = planReload(current, resolved(file, base.join('\n').replace('interval: 1m', 'interval: 5m')));
    assert.deepEqual(slower.changed.map((c) => [c.config.name, c.fields, c.config.intervalMs]), [['shop', ['interval'], 300_000], ['lab', ['interval'], 300_000]]);
  });

  it('a new reporter target rebuilds that repository only; the token never shows in what is logged', () => {
    const env = { VMROLL_GITHUB_TOKEN: 'ghp_secret-token' };
    const text = (target: string): string => [...base.slice(0, 3), `  - {name: shop, url: https://git.example/shop.git, reportTo: ${target}}`, '  - {name: lab, url: https://git.example/lab.git}', 'reporters: {github: {repo: acme/all}}'].join('\n');
    const plan = planReload(resolved(file, text('acme/shop'), {}, env), resolved(file, text('acme/shop-vms'), {}, env));
    assert.deepEqual(plan.changed.map((c) => [c.config.name, c.fields, c.config.gitHost?.repo]), [['shop', ['reporter'], 'acme/shop-vms']]);
    assert.doesNotMatch(JSON.stringify(plan.changed.map((c) => ({ repository: c.config.name, fields: c.fields }))), /ghp_/);
  });

  it('flags still win over the new file: --interval pins the interval whatever the file says', () => {
    const current = resolved(file, base.join('\n'), { interval: '30s' });
    const plan = planReload(current, resolved(file, base.join('\n').replace('interval: 1m', 'interval: 5m'), { interval: '30s' }));
    assert.deepEqual(plan.changed, []);
    assert.equal(plan.running.repositories?.[0]?.intervalMs, 30_000);
  });

  it('cluster, listen, cache and log level need a restart: named, and their running values kept', () => {
    const current = resolved(file, [...base, 'listen: 127.0.0.1:8080', 'logLevel: info'].join('\n'));
    const next = resolved(file, [...base, 'listen: 127.0.0.1:9090', 'logLevel: debug', 'cacheDir: /var/cache/vmroll'].join('\n').replace('cluster: {kind: sim}', `cluster: {kind: sim, simKubevirt: ${KUBEVIRT}}`));
    const plan = planReload(current, next);
    assert.deepEqual(plan.needsRestart, ['simKubevirt', 'listen', 'cacheDir', 'logLevel']);
    assert.deepEqual([plan.running.listen, plan.running.logLevel, plan.running.simKubevirt, plan.running.cacheDir], ['127.0.0.1:8080', 'info', undefined, '.vmroll/cache']);
    assert.deepEqual(plan.changed, []);
  });

  it('the file is looked at every 5s unless VMROLL_CONFIG_POLL_INTERVAL says otherwise; no file, nothing to reload', () => {
    assert.equal(runConfigSource({ config: file }, {})?.pollMs, 5000);
    assert.equal(runConfigSource({}, { VMROLL_CONFIG: file, VMROLL_CONFIG_POLL_INTERVAL: '2s' })?.file, file);
    assert.equal(runConfigSource({}, { VMROLL_CONFIG: file, VMROLL_CONFIG_POLL_INTERVAL: '2s' })?.pollMs, 2000);
    assert.equal(runConfigSource({}, {}), undefined);
    assert.throws(() => runConfigSource({ config: file }, { VMROLL_CONFIG_POLL_INTERVAL: 'often' }), /VMROLL_CONFIG_POLL_INTERVAL: "often" is not a duration/);
    assert.throws(() => runConfigSource({ config: file }, { VMROLL_CONFIG_POLL_INTERVAL: '10ms' }), /at least 100ms/);
  });

  it('a file that names no repository is refused rather than following the bundled example', () => {
    const current = resolved(file, base.join('\n'));
    assert.throws(() => planReload(current, resolved(file, 'cluster: {kind: sim}\n')), (e: unknown) => e instanceof ConfigReloadError && /names no repository/.test(e.message));
  });
});

describe('config reload: the watcher on a ConfigMap-style folder', function () {
  this.timeout(60_000);
  let dir: string;
  beforeEach(() => {
    dir = mkdtempSync(path.join(tmpdir(), 'vmroll-reload-'));
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  const v1 = 'cluster: {kind: sim}\nrepositories:\n  - {name: shop, url: https://git.example/shop.git}\n';
  const v2 = 'cluster: {kind: sim}\nrepositories:\n  - {name: shop, url: https://git.example/shop.git}\n  - {name: lab, url: https://git.example/lab.git}\n';

  /** A watcher on `mount` whose apply keeps every configuration it is given. */
  function watcherOn(mount: ConfigMapMount, pollMs: number, watchDirectory: boolean): { watcher: ConfigWatcher; applied: RunConfig[]; log: ReturnType<typeof logSink>; metrics: VmrollMetrics } {
    const source = runConfigSource({ config: mount.file }, { VMROLL_CONFIG_POLL_INTERVAL: `${pollMs}ms` }) as RunConfigSource;
    assert.equal(source.pollMs, pollMs);
    let current = runConfig({ config: mount.file }, {});
    const applied: RunConfig[] = [];
    const log = logSink();
    const metrics = new VmrollMetrics({ defaultMetrics: false });
    const watcher = new ConfigWatcher({
      source,
      loadedSha256: current.configFile?.sha256,
      apply: (next): Promise<ReloadPlan> => {
        const plan = planReload(current, next);
        current = plan.running;
        applied.push(next);
        return Promise.resolve(plan);
      },
      logger: makeLogger('info', [], log.stream),
      metrics,
      watchDirectory,
    });
    return { watcher, applied, log, metrics };
  }

  it('the folder watch alone sees the kubelet\'s ..data swap (poll 1h)', async () => {
    const mount = new ConfigMapMount(path.join(dir, 'config'));
    mount.publish(v1);
    const { watcher, applied, log } = watcherOn(mount, 3_600_000, true);
    watcher.start();
    try {
      assert.equal(await watcher.check('test'), 'unchanged', 'the file as loaded');
      mount.publish(v2);
      await until('the swap is applied', () => applied.length === 1);
      assert.deepEqual(applied[0]?.repositories?.map((r) => r.name), ['shop', 'lab']);
      assert.deepEqual(log.said('configuration reloaded')[0]?.['added'], ['lab']);
      assert.equal(log.said('configuration reloaded')[0]?.['reason'], 'watch');
    } finally {
      await watcher.close();
    }
  });

  it('polling alone sees it too (folder watch off), and a file changed back is applied again', async () => {
    const mount = new ConfigMapMount(path.join(dir, 'config'));
    mount.publish(v1);
    const { watcher, applied, log } = watcherOn(mount, 100, false);
    watcher.start();
    try {
      assert.equal(await watcher.check('test'), 'unchanged', 'the file as loaded');
      mount.publish(v2);
      await until('the swap is applied', () => applied.length === 1);
      assert.equal(log.said('configuration reloaded')[0]?.['reason'], 'poll');
      mount.publish(v1);
      await until('the second swap is applied', () => applied.length === 2);
      assert.deepEqual(log.said('configuration reloaded')[1]?.['removed'], ['lab']);
    } finally {
      await watcher.close();
    }
  });

  it('a broken file is refused once with file:line, counted, and the last good one stays; an unreadable one too', async () => {
    const mount = new ConfigMapMount(path.join(dir, 'config'));
    mount.publish(v1);
    const { watcher, applied, log, metrics } = watcherOn(mount, 100, true);
    metrics.recordConfigLoaded(runConfig({ config: mount.file }, {}).configFile?.sha256 ?? '', false);
    watcher.start();
    try {
      mount.publish('cluster: {kind: sim}\nrepositories:\n  - name: shop\n    url: https://git.example/shop.git\n    interval: soon\n');
      await until('the refusal', () => log.said('configuration change refused: the last good configuration keeps running').length === 1);
      const refusal = log.said('configuration change refused: the last good configuration keeps running')[0];
      assert.deepEqual(refusal?.['problems'], [`${mount.file}:5: repositories[0].interval: must be a duration such as 30s, 5m or 1h30m`]);
      assert.equal(refusal?.['level'], 50, 'logged as an error');
      // Several more looks at the same bad text report nothing new.
      for (let i = 0; i < 3; i++) assert.equal(await watcher.check('test'), 'unchanged');
      assert.equal(log.said('configuration change refused: the last good configuration keeps running').length, 1);
      let text = await metrics.metricsText();
      assert.equal(metric(text, 'vmroll_config_reload_total{result="failure"}'), 1);
      assert.equal(metric(text, 'vmroll_config_last_reload_successful'), 0);

      mount.publish('cluster: {kind: sim}\nrepositories:\n  - name: shop\n    url: https://git.example/shop.git\n   bad: [indent\n');
      await until('the YAML error', () => log.said('configuration change refused: the last good configuration keeps running').length === 2);
      assert.match(String((log.said('configuration change refused: the last good configuration keeps running')[1]?.['problems'] as string[])[0]), new RegExp(`^${mount.file.replace(/[.]/g, '\\.')}:\\d+: `));

      // The ConfigMap's key gone: the symlink dangles.
      rmSync(path.join(mount.dir, readlinkSync(path.join(mount.dir, '..data')), 'vmroll.yaml'));
      assert.equal(await watcher.check('test'), 'refused');
      assert.deepEqual(log.said('configuration change refused: the last good configuration keeps running')[2]?.['problems'], [`${mount.file}: cannot be read`]);
      assert.equal(applied.length, 0, 'nothing was applied');

      mount.publish(v2);
      await until('the good file is applied', () => applied.length === 1);
      text = await metrics.metricsText();
      assert.equal(metric(text, 'vmroll_config_reload_total{result="failure"}'), 3);
      assert.equal(metric(text, 'vmroll_config_reload_total{result="success"}'), 1);
      assert.equal(metric(text, 'vmroll_config_last_reload_successful'), 1);
      assert.equal(metric(text, 'vmroll_config_hash'), Number.parseInt(String(applied[0]?.configFile?.sha256).slice(0, 12), 16));
    } finally {
      await watcher.close();
    }
  });
});

describe('config reload: vmroll run on the embedded simulator, config from a ConfigMap-style folder', function () {
  this.timeout(180_000);
  let git: GitServer;
  let dir: string;
  let shop: WorkingClone;
  let lab: WorkingClone;
  let shopUrl: string;
  let labUrl: string;

  before(async () => {
    git = await startGitServer();
    dir = mkdtempSync(path.join(tmpdir(), 'vmroll-reload-run-'));
    shopUrl = await git.createBareRepo('shop');
    shop = await git.createWorkingClone('shop');
    for (const f of ['web.yaml', 'db.yaml']) await shop.write(`vms/${f}`, example(f));
    await shop.commit('shop VMs');
    await shop.push();
    // Branch next: the database with six sockets.
    await shop.git('checkout', '-b', 'next');
    await shop.write('vms/db.yaml', example('db.yaml').replace('sockets: 4', 'sockets: 6'));
    await shop.commit('db: 6 sockets');
    await shop.push();
    labUrl = await git.createBareRepo('lab');
    lab = await git.createWorkingClone('lab');
    await lab.write('batch.yaml', example('batch.yaml'));
    await lab.commit('the batch VM');
    await lab.push();
  });
  after(async () => {
    await git?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it('adds a repository, refuses a broken file while both keep syncing, rebuilds a changed one, and stops a removed one without deleting its VMs', async () => {
    const mount = new ConfigMapMount(path.join(dir, 'config'));
    const common = ['interval: 1s', 'cluster:', '  kind: sim', `  simKubevirt: ${KUBEVIRT}`, 'listen: 127.0.0.1:0', `cacheDir: ${path.join(dir, 'cache')}`];
    const shopEntry = (extra: string[] = []): string[] => ['  - name: shop', `    url: ${shopUrl}`, '    path: vms', '    namespaces: [shop]', ...extra];
    // lab prunes: were removing it from the file taken as "lab defines nothing now", its VM would go.
    const labEntry = ['  - name: lab', `    url: ${labUrl}`, '    namespaces: [jobs]', '    prune: true'];
    mount.publish([...common, 'repositories:', ...shopEntry()].join('\n'));

    const log = logSink();
    const source = runConfigSource({ config: mount.file }, { VMROLL_CONFIG_POLL_INTERVAL: '250ms' });
    assert.ok(source !== undefined);
    const handle: RunHandle = await startRun(runConfig({ config: mount.file }, {}), { out: () => {}, err: () => {} }, makeLogger('info', [], log.stream), { reload: source });
    const vm = (ns: string, name: string): Obj | undefined => handle.sim?.store.get('VirtualMachine', ns, name);
    const metrics = async (): Promise<string> => (await fetch(`http://${handle.address}/metrics`, { signal: AbortSignal.timeout(5000) })).text();
    const reloads = (): Obj[] => log.said('configuration reloaded');
    const refusals = (): Obj[] => log.said('configuration change refused: the last good configuration keeps running');
    /** Commits a change and waits until the simulator shows it. */
    const pushAndSee = async (clone: WorkingClone, file: string, from: string, to: string, ns: string, name: string, sockets: number): Promise<void> => {
      await clone.write(file, readFileSync(path.join(clone.dir, file), 'utf8').replace(from, to));
      await clone.commit(`${name}: ${sockets} sockets`);
      await clone.push();
      await until(`${ns}/${name} with ${sockets} sockets`, () => socketsOf(vm(ns, name)) === sockets);
    };
    try {
      assert.equal(await handle.trigger('start').then((r) => r?.writes), 2);
      handle.start();
      assert.equal(socketsOf(vm('shop', 'db')), 4);
      assert.equal(vm('jobs', 'batch'), undefined);

      // 1. lab added, shop moved to branch next.
      mount.publish([...common, 'repositories:', ...shopEntry(['    branch: next']), ...labEntry].join('\n'));
      await until('lab applied its VM', () => vm('jobs', 'batch') !== undefined);
      await until('shop follows next', () => socketsOf(vm('shop', 'db')) === 6);
      assert.deepEqual(reloads().map((l) => [l['added'], l['removed'], l['changed']]), [[['lab'], [], [{ repository: 'shop', fields: ['branch'] }]]]);
      assert.deepEqual(handle.repositories.map((r) => [r.name, r.config.ref]), [['shop', 'next'], ['lab', 'main']]);
      assert.equal((((vm('jobs', 'batch')?.['metadata'] as Obj)['annotations'] as Obj)['vmroll.dev/source-repo']), normaliseRepoUrl(labUrl), 'the ownership identity: the normalised URL');

      // 2. A broken file: refused with file:line, and both repositories keep syncing.
      const broken = [...common, 'repositories:', ...shopEntry(['    branch: next']), ...labEntry, '    interval: soon'];
      mount.publish(broken.join('\n'));
      await until('the refusal is logged', () => refusals().length === 1);
      assert.deepEqual(refusals()[0]?.['problems'], [`${mount.file}:${broken.length}: repositories[1].interval: must be a duration such as 30s, 5m or 1h30m`]);
      await pushAndSee(shop, 'vms/web.yaml', 'sockets: 2', 'sockets: 3', 'shop', 'web', 3);
      await pushAndSee(lab, 'batch.yaml', 'sockets: 1', 'sockets: 2', 'jobs', 'batch', 2);
      assert.deepEqual(handle.repositories.map((r) => [r.name, r.config.ref]), [['shop', 'next'], ['lab', 'main']], 'the last good configuration runs');
      let text = await metrics();
      assert.equal(metric(text, 'vmroll_config_reload_total{result="failure"}'), 1);
      assert.equal(metric(text, 'vmroll_config_reload_total{result="success"}'), 1);
      assert.equal(metric(text, 'vmroll_config_last_reload_successful'), 0);

      // 3. lab removed, shop pruning, and a new listen address that needs a restart.
      const address = handle.address;
      mount.publish([...common.map((l) => (l.startsWith('listen:') ? 'listen: 127.0.0.1:1' : l)), 'repositories:', ...shopEntry(['    branch: next', '    prune: true'])].join('\n'));
      await until('the removal is applied', () => reloads().length === 2);
      assert.deepEqual([reloads()[1]?.['added'], reloads()[1]?.['removed'], reloads()[1]?.['changed']], [[], ['lab'], [{ repository: 'shop', fields: ['prune'] }]]);
      assert.deepEqual(log.said('configuration changes that need a restart: they keep their running values until then').map((l) => l['settings']), [['listen']]);
      assert.deepEqual(handle.repositories.map((r) => r.name), ['shop']);
      assert.equal(handle.config.listen, '127.0.0.1:0', 'the running listen address is kept');
      text = await metrics();
      assert.equal(metric(text, 'vmroll_config_reload_total{result="success"}'), 2);
      assert.equal(metric(text, 'vmroll_config_last_reload_successful'), 1);
      assert.doesNotMatch(text, /vmroll_vms\{repository="lab"/, 'no stale VM counts for lab');

      // lab's next commit is not applied, and the pruning shop leaves lab's VM alone: shop
      // syncs twice more (each over a second apart) while lab, if it still ran, would have
      // synced at least once.
      await lab.write('batch.yaml', readFileSync(path.join(lab.dir, 'batch.yaml'), 'utf8').replace('sockets: 2', 'sockets: 4'));
      await lab.commit('batch: 4 sockets');
      await lab.push();
      const shopSyncs = (): number => log.lines.filter((l) => l['msg'] === 'reconciled' && l['repository'] !== 'lab').length;
      await pushAndSee(shop, 'vms/web.yaml', 'sockets: 3', 'sockets: 2', 'shop', 'web', 2);
      const after = shopSyncs();
      await until('two more syncs of shop', () => shopSyncs() >= after + 2);
      assert.equal(socketsOf(vm('jobs', 'batch')), 2, 'lab is no longer followed');
      assert.ok(vm('jobs', 'batch') !== undefined, "lab's VM is not deleted");
      assert.equal(log.lines.filter((l) => l['msg'] === 'pruned VirtualMachine').length, 0, 'nothing deleted');
      assert.equal((await fetch(`http://${address}/readyz`, { signal: AbortSignal.timeout(5000) })).status, 200, 'still serving on the first address');
    } finally {
      await handle.stop();
    }
  });
});

describe('config reload: a repository is replaced only after its sync under way', function () {
  this.timeout(60_000);
  let git: GitServer;
  let dir: string;
  let url: string;

  before(async () => {
    git = await startGitServer();
    dir = mkdtempSync(path.join(tmpdir(), 'vmroll-reload-idle-'));
    url = await git.createBareRepo('shop');
    const shop = await git.createWorkingClone('shop');
    for (const f of ['web.yaml', 'db.yaml']) await shop.write(`vms/${f}`, example(f));
    await shop.commit('shop VMs');
    await shop.push();
  });
  after(async () => {
    await git?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it('reconfigure waits for the sync under way (its applies done), then the old unit takes no sync and the new one syncs', async () => {
    const file = path.join(dir, 'vmroll.yaml');
    const text = (extra: string): string => ['interval: 1h', 'cluster: {kind: sim}', `cacheDir: ${path.join(dir, 'cache')}`, 'repositories:', '  - name: shop', `    url: ${url}`, extra].join('\n');
    const handle = await startRun(resolved(file, text('    path: vms')), { out: () => {}, err: () => {} }, makeLogger('silent', []));
    try {
      handle.start();
      const [old] = handle.repositories;
      assert.ok(old !== undefined);
      let finished = false;
      const sync = old.trigger('test').then((report) => {
        finished = true;
        return report;
      });
      const plan = await handle.reconfigure(resolved(file, text('    path: vms\n    prune: true')));
      assert.ok(finished, 'the sync under way had finished when the unit was replaced');
      assert.equal((await sync)?.writes, 2, 'and it applied what it set out to');
      assert.deepEqual(plan.changed.map((c) => [c.config.name, c.fields]), [['shop', ['prune']]]);
      const [fresh] = handle.repositories;
      assert.ok(fresh !== undefined && fresh.reconciler !== old.reconciler, 'a new unit');
      assert.equal(fresh.config.prune, true);
      assert.equal(await old.trigger('after'), null, 'the replaced unit takes no new sync');
      const report = await fresh.trigger('after');
      assert.ok(report !== null);
      assert.deepEqual(report.plan.vms.map((v) => `${v.namespace}/${v.name}:${v.action}`), ['shop/db:none', 'shop/web:none'], 'the new unit finds what the old one applied');

      // A repository that cannot be built refuses the whole reload before anything stops.
      const bad = resolved(file, `${text('    path: vms')}\n  - name: broken\n    url: https://[broken`);
      await assert.rejects(handle.reconfigure(bad), (e: unknown) => e instanceof ConfigReloadError && e.message === 'repository broken: Invalid URL');
      assert.deepEqual(handle.repositories.map((r) => [r.name, r.config.prune]), [['shop', true]], 'shop not rebuilt');
      assert.equal(handle.repositories[0]?.reconciler, fresh.reconciler, 'the same unit runs');
      assert.ok((await fresh.trigger('still')) !== null, 'and still syncs');
    } finally {
      await handle.stop();
    }
  });
});

describe('config reload: `vmroll run --config` as a process against the simulator API server', function () {
  this.timeout(120_000);
  let git: GitServer;
  let dir: string;
  let sim: SimCluster;
  let server: ApiServer;
  let child: ChildProcess | undefined;

  before(async () => {
    git = await startGitServer();
    dir = mkdtempSync(path.join(tmpdir(), 'vmroll-reload-cli-'));
    sim = new SimCluster();
    for (const ns of ['shop', 'jobs']) sim.createObject({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: ns } });
    server = await startApiServer({ cluster: sim, listen: '127.0.0.1:0', bookmarkIntervalMs: 200 });
  });
  after(async () => {
    if (child !== undefined && child.exitCode === null) child.kill('SIGKILL');
    await server?.close();
    await git?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it('picks up a ConfigMap swap that adds a repository, refuses a broken one naming file:line, and exits 0 on SIGTERM', async () => {
    const shopUrl = await git.createBareRepo('shop');
    const shop = await git.createWorkingClone('shop');
    await shop.write('vms/web.yaml', example('web.yaml'));
    await shop.commit('web');
    await shop.push();
    const labUrl = await git.createBareRepo('lab');
    const lab = await git.createWorkingClone('lab');
    await lab.write('batch.yaml', example('batch.yaml'));
    await lab.commit('batch');
    await lab.push();
    const kubeconfig = path.join(dir, 'kubeconfig');
    writeFileSync(kubeconfig, simKubeconfig(server.url));
    const mount = new ConfigMapMount(path.join(dir, 'config'));
    const common = ['interval: 1h', 'cluster:', '  kind: kube', `  kubeconfig: ${kubeconfig}`, `cacheDir: ${path.join(dir, 'cache')}`, 'repositories:', '  - name: shop', `    url: ${shopUrl}`];
    mount.publish(common.join('\n'));

    child = spawn(process.execPath, [VMROLL, 'run', '--config', mount.file], {
      cwd: dir,
      env: { PATH: process.env['PATH'] ?? '/usr/bin:/bin', HOME: dir, VMROLL_CONFIG_POLL_INTERVAL: '300ms' },
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    const lines: Obj[] = [];
    let rest = '';
    child.stderr?.on('data', (d: Buffer) => {
      rest += d.toString();
      const parts = rest.split('\n');
      rest = parts.pop() ?? '';
      for (const p of parts) {
        try {
          lines.push(JSON.parse(p) as Obj);
        } catch {
          lines.push({ msg: p });
        }
      }
    });
    const exit = new Promise<number | null>((resolve) => child?.once('exit', (code) => resolve(code)));
    const said = (msg: string): Obj[] => lines.filter((l) => l['msg'] === msg);

    await until('web applied', () => sim.store.get('VirtualMachine', 'shop', 'web') !== undefined);
    mount.publish([...common, '  - name: lab', `    url: ${labUrl}`].join('\n'));
    await until('lab applied its VM', () => sim.store.get('VirtualMachine', 'jobs', 'batch') !== undefined);
    await until('the reload is logged', () => said('configuration reloaded').length === 1);
    assert.deepEqual(said('configuration reloaded')[0]?.['added'], ['lab']);

    mount.publish([...common, '  - name: lab', `    url: ${labUrl}`, '    prune: maybe'].join('\n'));
    await until('the refusal is logged', () => said('configuration change refused: the last good configuration keeps running').length === 1);
    assert.deepEqual(said('configuration change refused: the last good configuration keeps running')[0]?.['problems'], [`${mount.file}:11: repositories[1].prune: must be a boolean`]);

    child.kill('SIGTERM');
    assert.equal(await exit, 0);
    assert.equal(said('stopped').length, 1);
  });
});
