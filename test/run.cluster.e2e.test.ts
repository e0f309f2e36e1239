/**
 * vmroll run in a cluster: a vmroll.yaml with several repositories, each held to its
 * namespaces; /metrics on the --listen server; and two `vmroll run --leader-elect` processes
 * against the simulator's API server, of which only the leader applies, the other taking over
 * (and syncing a new push) when the leader is killed, and releasing the lease on SIGTERM.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { type ApiServer, startApiServer } from '../reconciler/cluster/sim/apiServer.ts';
import { SimCluster } from '../reconciler/cluster/sim/simCluster.ts';
import { makeLogger, startRun } from '../reconciler/commands/run.ts';
import { simKubeconfig } from '../reconciler/commands/sim.ts';
import { runConfig } from '../reconciler/config.ts';
import { ConfigFileError } from '../reconciler/configFile.ts';
import type { Obj } from '../reconciler/rollout/index.ts';
import { ROOT } from './helpers/cases.ts';
import { type GitServer, type WorkingClone, startGitServer } from './helpers/gitServer.ts';
import { until } from './helpers/waitFor.ts';
import { type Replica, spawnReplica } from './helpers/replica.ts';

const EXAMPLE = path.join(ROOT, 'fixtures', 'example-repo', 'vms');
const KUBEVIRT = path.join(ROOT, 'fixtures', 'example-cluster', 'kubevirt.yaml');
const example = (f: string): string => readFileSync(path.join(EXAMPLE, f), 'utf8');

const socketsOf = (vm: Obj | undefined): unknown =>
  ((((((vm?.['spec'] ?? {}) as Obj)['template'] ?? {}) as Obj)['spec'] ?? {}) as Obj)['domain'] !== undefined
    ? ((((((vm?.['spec'] as Obj)['template'] as Obj)['spec'] as Obj)['domain'] as Obj)['cpu'] ?? {}) as Obj)['sockets']
    : undefined;

/** Wait options that give up when a replica exits, and show what it logged. */
function watching(...replicas: Replica[]): { failIf: () => string | undefined; detail: () => string } {
  return {
    failIf: () => replicas.map((r) => (r.child.exitCode !== null || r.child.signalCode !== null ? `${r.name} exited` : '')).find((m) => m !== ''),
    detail: () => replicas.map((r) => `${r.name} logged:\n${r.lines.map((l) => JSON.stringify(l)).join('\n')}`).join('\n'),
  };
}

async function get(url: string): Promise<{ status: number; text: string }> {
  const res = await fetch(url, { signal: AbortSignal.timeout(5000) });
  return { status: res.status, text: await res.text() };
}

function metric(text: string, name: string): number | undefined {
  const line = text.split('\n').find((l) => l.startsWith(`${name} `) || l.startsWith(`${name}{`));
  return line === undefined ? undefined : Number(line.split(' ').pop());
}

describe('vmroll run in a cluster: config file, namespaces, /metrics, leader election, shutdown', function () {
  // Two vmroll processes start, sync and hand over a lease: slow on a busy machine.
  this.timeout(180_000);
  let git: GitServer;
  let dir: string;
  let shop: WorkingClone;
  let lab: WorkingClone;
  let shopUrl: string;
  let labUrl: string;

  before(async () => {
    git = await startGitServer();
    dir = mkdtempSync(path.join(tmpdir(), 'vmroll-cluster-'));
    shopUrl = await git.createBareRepo('shop');
    shop = await git.createWorkingClone('shop');
    // batch.yaml is for namespace jobs, which the shop repository may not write.
    for (const f of ['web.yaml', 'db.yaml', 'batch.yaml']) await shop.write(`vms/${f}`, example(f));
    await shop.commit('shop VMs, and one for jobs');
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

  it('follows every repository of vmroll.yaml; a manifest outside its namespaces is an error naming file:line, the rest applies; /metrics tells', async () => {
    const file = path.join(dir, 'vmroll.yaml');
    writeFileSync(
      file,
      [
        'repositories:',
        `  - name: shop`,
        `    url: ${shopUrl}`,
        '    path: vms',
        '    namespaces: [shop]',
        `  - name: lab`,
        `    url: ${labUrl}`,
        '    namespaces: ["jo*"]',
        'interval: 1h',
        'cluster:',
        '  kind: sim',
        `  simKubevirt: ${KUBEVIRT}`,
        'listen: 127.0.0.1:0',
        `cacheDir: ${path.join(dir, 'cache-multi')}`,
        'logLevel: warn',
      ].join('\n'),
    );
    const config = runConfig({ config: file, output: 'json' }, {});
    assert.deepEqual(config.repositories?.map((r) => [r.name, r.path, r.namespaces, r.intervalMs]), [['shop', 'vms', ['shop'], 3_600_000], ['lab', '', ['jo*'], 3_600_000]]);
    const handle = await startRun(config, { out: () => {}, err: () => {} }, makeLogger('silent', []));
    try {
      handle.start();
      const [shopRepo, labRepo] = handle.repositories;
      assert.ok(shopRepo !== undefined && labRepo !== undefined);
      const shopReport = await shopRepo.trigger('test');
      const labReport = await labRepo.trigger('test');
      assert.ok(shopReport !== null && labReport !== null);
      assert.deepEqual(shopReport.plan.errors, [
        { file: 'vms/batch.yaml', line: 2, message: 'namespace "jobs" is not one repository shop may write (allowed: shop); the VM is not applied' },
      ]);
      assert.deepEqual(shopReport.plan.vms.map((v) => `${v.namespace}/${v.name}:${v.action}`), ['shop/db:create', 'shop/web:create']);
      assert.deepEqual(labReport.plan.errors, []);
      assert.deepEqual(labReport.plan.vms.map((v) => `${v.namespace}/${v.name}:${v.action}`), ['jobs/batch:create']);
      const batch = handle.sim?.store.get('VirtualMachine', 'jobs', 'batch');
      assert.equal(((batch?.['metadata'] as Obj)['annotations'] as Obj)['vmroll.dev/source-repo'], labUrl.replace(/^http:\/\//, '').replace(/\.git$/, ''), 'applied by the repository allowed to (its identity: URL without scheme and .git)');

      const text = (await get(`http://${handle.address}/metrics`)).text;
      assert.equal(metric(text, 'vmroll_leader'), 1, 'the only replica leads');
      assert.match(text, /vmroll_vms\{repository="shop",state="in_sync"\} 2/);
      assert.match(text, /vmroll_vms\{repository="shop",state="error"\} 1/);
      assert.match(text, /vmroll_vms\{repository="lab",state="in_sync"\} 1/);
      assert.match(text, /vmroll_reconcile_duration_seconds_count\{repository="shop",result="errors"\} 1/);
      assert.match(text, /vmroll_git_fetch_duration_seconds_count\{repository="lab"\} 1/);
      assert.equal((await get(`http://${handle.address}/readyz`)).status, 200);
    } finally {
      await handle.stop();
    }
  });

  it('stop during a sync lets it finish its applies, then refuses new syncs', async () => {
    const config = runConfig({ repo: shopUrl, path: 'vms', cluster: 'sim', 'sim-kubevirt': KUBEVIRT, 'cache-dir': path.join(dir, 'cache-stop'), output: 'json' }, {});
    const handle = await startRun(config, { out: () => {}, err: () => {} }, makeLogger('silent', []));
    const sync = handle.trigger('test');
    await handle.stop();
    const report = await sync;
    assert.ok(report !== null, 'the sync under way completed');
    assert.equal(report.writes, 3);
    for (const [ns, name] of [['shop', 'web'], ['shop', 'db'], ['jobs', 'batch']] as const) assert.ok(handle.sim?.store.get('VirtualMachine', ns, name) !== undefined, `${ns}/${name} applied`);
    assert.equal(await handle.trigger('after stop'), null);
  });

  it('flags win over the environment, which wins over the file; a broken file names file:line', () => {
    const file = path.join(dir, 'single.yaml');
    writeFileSync(file, `repo: ${shopUrl}\nbranch: from-file\npath: vms\ninterval: 5m\nlogLevel: debug\nleaderElection:\n  enabled: true\n  namespace: from-file\n`);
    const fromFile = runConfig({ config: file, cluster: 'kube', kubeconfig: path.join(dir, 'kc') }, {});
    assert.equal(fromFile.ref, 'from-file');
    assert.equal(fromFile.intervalMs, 300_000);
    assert.equal(fromFile.logLevel, 'debug');
    assert.equal(fromFile.leaderElection?.namespace, 'from-file');
    const fromEnv = runConfig({ config: file, cluster: 'kube', kubeconfig: path.join(dir, 'kc') }, { VMROLL_BRANCH: 'from-env', VMROLL_INTERVAL: '2m', VMROLL_LEADER_ELECTION_NAMESPACE: 'from-env' });
    assert.equal(fromEnv.ref, 'from-env');
    assert.equal(fromEnv.intervalMs, 120_000);
    assert.equal(fromEnv.leaderElection?.namespace, 'from-env');
    const fromFlags = runConfig({ config: file, cluster: 'kube', kubeconfig: path.join(dir, 'kc'), branch: 'from-flag', interval: '30s', 'leader-election-namespace': 'from-flag' }, { VMROLL_BRANCH: 'from-env' });
    assert.equal(fromFlags.ref, 'from-flag');
    assert.equal(fromFlags.intervalMs, 30_000);
    assert.equal(fromFlags.leaderElection?.namespace, 'from-flag');
    assert.throws(() => runConfig({ config: file, cluster: 'sim' }, {}), /--leader-elect needs --cluster kube/);
    writeFileSync(file, 'repositories:\n  - name: a\n    url: x\n    interval: soon\n');
    assert.throws(() => runConfig({ config: file }, {}), (e: unknown) => e instanceof ConfigFileError && e.message === `${file}:4: repositories[0].interval: must be a duration such as 30s, 5m or 1h30m`);
  });

  describe('two replicas with --leader-elect against the simulator API server', () => {
    let sim: SimCluster;
    let server: ApiServer;
    const replicas: Replica[] = [];

    before(async () => {
      sim = new SimCluster();
      for (const ns of ['shop', 'jobs']) sim.createObject({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: ns } });
      server = await startApiServer({ cluster: sim, listen: '127.0.0.1:0', bookmarkIntervalMs: 200 });
    });
    after(async () => {
      for (const r of replicas) if (r.child.exitCode === null) r.child.kill('SIGKILL');
      await server?.close();
    });

    it('only the leader applies; kill -9 the leader and the other takes over and syncs a new push; SIGTERM releases the lease', async () => {
      const kubeconfig = path.join(dir, 'kubeconfig');
      writeFileSync(kubeconfig, simKubeconfig(server.url));
      const config = path.join(dir, 'replicas.yaml');
      writeFileSync(
        config,
        [
          `repo: ${shopUrl}`,
          'path: vms',
          'namespaces: [shop]',
          'leaderElection:',
          '  enabled: true',
          '  namespace: default',
          // Long enough that a replica starved of CPU (a busy machine) still renews in time: only kill -9 may hand over.
          '  leaseDuration: 8s',
          '  renewDeadline: 6s',
          '  retryPeriod: 200ms',
        ].join('\n'),
      );
      const args = (n: string): string[] => ['--config', config, '--cluster', 'kube', '--kubeconfig', kubeconfig, '--interval', '1s', '--listen', '127.0.0.1:0', '--cache-dir', path.join(dir, `cache-${n}`)];
      const a = spawnReplica('replica-a', args('a'), dir);
      replicas.push(a);
      await until('replica-a leads and syncs', () => a.said('reconciled').length > 0, watching(a));
      const b = spawnReplica('replica-b', args('b'), dir);
      replicas.push(b);
      await until('replica-b listens', () => b.said('listening').length > 0 && b.said('waiting for the lease').length > 0, watching(a, b));
      const addressOf = (r: Replica): string => String(r.said('listening')[0]?.['address']);
      // Long enough for several of b's attempts and a's interval syncs.
      await until('a few more syncs by replica-a', () => a.said('reconciled').length >= 3, watching(a, b));

      assert.equal(a.said('became leader').length, 1);
      assert.equal(b.said('became leader').length, 0, 'a valid lease is not taken');
      assert.equal(b.said('reconciled').length, 0, 'the follower does not reconcile');
      assert.equal(a.said('created VirtualMachine').length, 2, 'the leader created web and db');
      assert.equal(a.said('apply failed').length, 0);
      assert.ok(sim.store.get('VirtualMachine', 'shop', 'db') !== undefined);
      assert.equal(sim.store.get('VirtualMachine', 'jobs', 'batch'), undefined, 'jobs is not a namespace this repository may write');
      assert.equal((await get(`http://${addressOf(b)}/readyz`)).status, 200, 'a follower is ready');
      assert.equal(metric((await get(`http://${addressOf(b)}/metrics`)).text, 'vmroll_leader'), 0);
      const leaderMetrics = (await get(`http://${addressOf(a)}/metrics`)).text;
      assert.equal(metric(leaderMetrics, 'vmroll_leader'), 1);
      assert.match(leaderMetrics, /vmroll_kube_api_requests_total\{verb="apply",resource="virtualmachines",code="200"\} 2/);

      a.child.kill('SIGKILL');
      assert.equal(await a.exit, null, 'killed, not exited');
      await shop.write('vms/db.yaml', example('db.yaml').replace('sockets: 4', 'sockets: 6'));
      await shop.commit('db: 6 sockets');
      await shop.push();
      await until('replica-b applies the new push', () => socketsOf(sim.store.get('VirtualMachine', 'shop', 'db')) === 6, watching(b));
      // Its log line follows the write (and the pipe) by a moment.
      await until('replica-b logs the update', () => b.said('updated VirtualMachine').length >= 1, watching(b));
      assert.equal(b.said('became leader').length, 1);
      const lease = (await (await fetch(`${server.url}/apis/coordination.k8s.io/v1/namespaces/default/leases/vmroll`)).json()) as Obj;
      assert.equal((lease['spec'] as Obj)['holderIdentity'], 'replica-b');
      assert.equal((lease['spec'] as Obj)['leaseTransitions'], 1);

      b.child.kill('SIGTERM');
      assert.equal(await b.exit, 0, 'SIGTERM: a clean exit');
      assert.equal(b.said('released the lease').length, 1);
      assert.equal(b.said('stopped').length, 1);
      const released = (await (await fetch(`${server.url}/apis/coordination.k8s.io/v1/namespaces/default/leases/vmroll`)).json()) as Obj;
      assert.equal((released['spec'] as Obj)['holderIdentity'], undefined, 'the next replica need not wait for the lease to run out');
    });
  });
});
