/**
 * The warm standby, as processes: two `vmroll run --leader-elect` replicas against vmroll's
 * simulator, each through its own API server on the same simulated cluster (so each server's
 * request counts are one replica's) and each reporting to its own GitHub emulator. The follower
 * fetches and loads while it waits for the lease (at start, and on a signed push webhook), and
 * writes nothing and calls its Git host not at all; when the leader is killed, its first sync
 * finds the manifests loaded: no manifest file read again, no write to the in-sync cluster, and
 * a field Git removed while the old leader had not fetched it is still found and removed.
 */
import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import { mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { type ApiServer, type ApiStats, startApiServer } from '../reconciler/cluster/sim/apiServer.ts';
import { SimCluster } from '../reconciler/cluster/sim/simCluster.ts';
import { simKubeconfig } from '../reconciler/commands/sim.ts';
import type { Obj } from '../reconciler/rollout/index.ts';
import { type GitServer, startGitServer } from './helpers/gitServer.ts';
import { type GitHubEmulator, startGitHubEmulator } from './helpers/githubEmulator.ts';
import { until } from './helpers/waitFor.ts';
import { type Replica, spawnReplica } from './helpers/replica.ts';

const TOKEN = 'ghp_standbyTestTokenThatMustNeverBeLogged';
const SECRET = 'standby-webhook-secret';
const COUNT = 12;
const NAMES = Array.from({ length: COUNT }, (_, i) => `vm-${i}`);

function vmYaml(name: string, image: string, namespace = 'shop', labels = ''): string {
  return `apiVersion: kubevirt.io/v1\nkind: VirtualMachine\nmetadata: {name: ${name}, namespace: ${namespace}${labels}}\nspec:\n  runStrategy: Always\n  template:\n    spec:\n      domain: {cpu: {sockets: 1}, memory: {guest: 1Gi}, devices: {disks: [{name: root, disk: {bus: virtio}}]}}\n      volumes: [{name: root, containerDisk: {image: "${image}"}}]\n`;
}

/** Write requests (not get, list, watch) by resource, the Lease left out: what a replica changed in the cluster. */
function clusterWrites(stats: ApiStats): Record<string, Record<string, number>> {
  const out: Record<string, Record<string, number>> = {};
  for (const [resource, verbs] of Object.entries(stats.byResource)) {
    if (resource.startsWith('leases')) continue;
    for (const [verb, n] of Object.entries(verbs)) if (!['get', 'list', 'watch'].includes(verb)) (out[resource] ??= {})[verb] = n;
  }
  return out;
}

describe('a warm standby: the follower fetches and loads while it waits for the lease', function () {
  this.timeout(240_000);
  let git: GitServer;
  let ghA: GitHubEmulator;
  let ghB: GitHubEmulator;
  let dir: string;
  let sim: SimCluster;
  let serverA: ApiServer;
  let serverB: ApiServer;
  const replicas: Replica[] = [];

  before(async () => {
    git = await startGitServer();
    ghA = await startGitHubEmulator({ token: TOKEN, repos: ['acme/shop'] });
    ghB = await startGitHubEmulator({ token: TOKEN, repos: ['acme/shop'] });
    dir = mkdtempSync(path.join(tmpdir(), 'vmroll-standby-'));
    sim = new SimCluster({ bootTimeMs: 200 });
    for (const name of ['shop', 'lab']) sim.createObject({ apiVersion: 'v1', kind: 'Namespace', metadata: { name } });
    serverA = await startApiServer({ cluster: sim, listen: '127.0.0.1:0', bookmarkIntervalMs: 200 });
    serverB = await startApiServer({ cluster: sim, listen: '127.0.0.1:0', bookmarkIntervalMs: 200 });
  });
  after(async () => {
    for (const r of replicas) if (r.child.exitCode === null && r.child.signalCode === null) r.child.kill('SIGKILL');
    await Promise.all(replicas.map((r) => r.exit));
    await serverA?.close();
    await serverB?.close();
    sim?.close();
    await ghA?.stop();
    await ghB?.stop();
    await git?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it('prepares without writing or reporting; after kill -9 of the leader its first sync reads nothing again and writes nothing', async () => {
    const url = await git.createBareRepo('shop');
    const work = await git.createWorkingClone('shop');
    for (const n of NAMES) await work.write(`vms/${n}.yaml`, vmYaml(n, 'img:1'));
    const c1 = await work.commit(`${COUNT} VMs`);
    await work.push();
    const tokenFile = path.join(dir, 'token');
    writeFileSync(tokenFile, `${TOKEN}\n`);
    const secretFile = path.join(dir, 'secret');
    writeFileSync(secretFile, `${SECRET}\n`);
    const config = path.join(dir, 'vmroll.yaml');
    writeFileSync(
      config,
      [
        `repo: ${url}`,
        'path: vms',
        'leaderElection:',
        '  enabled: true',
        '  namespace: default',
        // Long enough that a replica starved of CPU (a busy machine) still renews in time: only kill -9 hands over.
        '  leaseDuration: 6s',
        '  renewDeadline: 4s',
        '  retryPeriod: 200ms',
      ].join('\n'),
    );
    const args = (n: string, server: ApiServer, gh: GitHubEmulator, interval: string): string[] => {
      const kubeconfig = path.join(dir, `kubeconfig-${n}`);
      writeFileSync(kubeconfig, simKubeconfig(server.url));
      return ['--config', config, '--cluster', 'kube', '--kubeconfig', kubeconfig, '--interval', interval, '--listen', '127.0.0.1:0', '--webhook-secret-file', secretFile, '--cache-dir', path.join(dir, `cache-${n}`), '--github-repo', 'acme/shop', '--github-api-url', gh.baseUrl, '--github-token-file', tokenFile];
    };
    const detail = (): string => replicas.map((r) => `${r.name}:\n${r.lines.map((l) => JSON.stringify(l)).join('\n')}`).join('\n');
    const failIf = (...rs: Replica[]) => (): string | undefined => rs.map((r) => (r.child.exitCode !== null || r.child.signalCode !== null ? `${r.name} exited` : '')).find((m) => m !== '');

    const a = spawnReplica('replica-a', args('a', serverA, ghA, '1s'), dir);
    replicas.push(a);
    await until('replica-a leads and creates the VMs', () => a.said('reconciled').some((l) => l['commit'] === c1.slice(0, 12) && l['writes'] === COUNT), { detail, failIf: failIf(a), timeoutMs: 90_000 });
    // The follower's interval is long: what it prepares after its start comes from the webhook.
    const b = spawnReplica('replica-b', args('b', serverB, ghB, '1h'), dir);
    replicas.push(b);
    const standby = (commit: string): Obj[] => b.saidStart('standby: ').filter((l) => l['commit'] === commit.slice(0, 12));
    await until('replica-b is warm at the first commit', () => standby(c1).length > 0, { detail, failIf: failIf(a, b), timeoutMs: 90_000 });
    const warm = standby(c1)[0] as Obj;
    assert.equal(warm['msg'], `standby: ${c1.slice(0, 12)} loaded, ${COUNT} VMs, informers synced`);
    assert.equal(warm['level'], 30, 'logged at info');
    assert.equal(warm['read'], COUNT, 'a new process reads every manifest once');
    assert.ok(readdirSync(path.join(dir, 'cache-b')).length > 0, 'the follower has a clone');
    assert.equal(b.said('became leader').length, 0);

    // A push: the leader applies it; the follower, told by the webhook, loads only what changed.
    await work.write('vms/vm-3.yaml', vmYaml('vm-3', 'img:2'));
    const c2 = await work.commit('vm-3: img:2');
    await work.push();
    await until('replica-a applies the push', () => a.said('reconciled').some((l) => l['commit'] === c2.slice(0, 12)), { detail, failIf: failIf(a, b), timeoutMs: 60_000 });
    const address = String(b.said('listening')[0]?.['address']);
    const body = JSON.stringify({ ref: 'refs/heads/main', after: c2, repository: { full_name: 'acme/shop' } });
    const res = await fetch(`http://${address}/webhook/github`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-github-event': 'push', 'x-github-delivery': 'd-standby', 'x-hub-signature-256': `sha256=${createHmac('sha256', SECRET).update(body).digest('hex')}` },
      body,
      signal: AbortSignal.timeout(10_000),
    });
    await res.text();
    assert.ok(res.status < 300, `webhook answered ${res.status}`);
    await until('replica-b is warm at the pushed commit', () => standby(c2).length > 0, { detail, failIf: failIf(a, b), timeoutMs: 60_000 });
    assert.equal(b.said('push webhook: standby loading it now').length, 1, 'a follower says it loads the push, not that it syncs');
    assert.equal(standby(c2)[0]?.['read'], 1, 'only the changed file is read');
    assert.equal((await fetch(`http://${address}/readyz`)).status, 200, 'a follower is ready');

    // While it waited, the follower wrote nothing but its Lease attempts and never called its Git host.
    assert.deepEqual(clusterWrites(serverB.stats()), {});
    assert.deepEqual(ghB.requests.map((r) => `${r.method} ${r.url}`), []);
    assert.equal(b.said('reconciled').length, 0, 'the follower does not sync');
    assert.ok(ghA.statuses(c2, 'acme/shop').some((s) => s.context === 'vmroll/sync' && s.state === 'success'), 'the leader reported');

    serverB.resetStats();
    a.child.kill('SIGKILL');
    assert.equal(await a.exit, null, 'killed, not exited');
    await until('replica-b takes over and syncs', () => b.said('reconciled').length > 0, { detail, failIf: failIf(b), timeoutMs: 90_000 });
    const first = b.said('reconciled')[0] as Obj;
    assert.equal(b.said('became leader').length, 1);
    assert.equal(first['commit'], c2.slice(0, 12));
    assert.equal(first['writes'], 0, 'the cluster is in sync: nothing to write');
    assert.equal(first['read'], 0, 'no manifest file is read again');
    assert.equal(first['cached'], 0, 'nor taken from the parse cache: the standby had them loaded');
    assert.deepEqual(clusterWrites(serverB.stats()), {});
    // Only plan, settle and report were left: the new leader reports as a leader does.
    await until('replica-b reports the commit', () => ghB.statuses(c2, 'acme/shop').some((s) => s.context === 'vmroll/sync' && s.state === 'success'), { detail, failIf: failIf(b), timeoutMs: 60_000 });
    assert.ok(!b.lines.some((l) => JSON.stringify(l).includes(TOKEN)), 'the token never reaches the log');
    assert.deepEqual(ghB.violations.splice(0), []);
  });
  it('a field removed in Git while the leader never fetched it: the standby loaded it, and its first sync as leader removes it', async () => {
    const url = await git.createBareRepo('lab');
    const work = await git.createWorkingClone('lab');
    for (const n of NAMES) await work.write(`vms/${n}.yaml`, vmYaml(n, 'img:1', 'lab', n === 'vm-5' ? ', labels: {tier: web}' : ''));
    const c1 = await work.commit(`${COUNT} VMs, vm-5 labelled`);
    await work.push();
    const secretFile = path.join(dir, 'secret-lab');
    writeFileSync(secretFile, `${SECRET}\n`);
    const config = path.join(dir, 'vmroll-lab.yaml');
    writeFileSync(config, [`repo: ${url}`, 'path: vms', 'leaderElection:', '  enabled: true', '  namespace: default', '  leaseName: vmroll-lab', '  leaseDuration: 6s', '  renewDeadline: 4s', '  retryPeriod: 200ms'].join('\n'));
    const args = (n: string, server: ApiServer): string[] => {
      const kubeconfig = path.join(dir, `kubeconfig-lab-${n}`);
      writeFileSync(kubeconfig, simKubeconfig(server.url));
      // A long interval for both: the leader syncs at start only; the follower loads what the webhook names.
      return ['--config', config, '--cluster', 'kube', '--kubeconfig', kubeconfig, '--interval', '1h', '--listen', '127.0.0.1:0', '--webhook-secret-file', secretFile, '--cache-dir', path.join(dir, `cache-lab-${n}`)];
    };
    const label = (): unknown => ((((sim.store.peek('VirtualMachine', 'lab', 'vm-5') ?? {}) as Obj)['metadata'] as Obj | undefined)?.['labels'] as Obj | undefined)?.['tier'];
    const detail = (): string => replicas.slice(-2).map((r) => `${r.name}:\n${r.lines.map((l) => JSON.stringify(l)).join('\n')}`).join('\n');
    const a = spawnReplica('lab-a', args('a', serverA), dir);
    replicas.push(a);
    await until('lab-a leads and creates the VMs', () => a.said('reconciled').some((l) => l['commit'] === c1.slice(0, 12) && l['writes'] === COUNT), { detail, timeoutMs: 90_000 });
    assert.equal(label(), 'web');
    const b = spawnReplica('lab-b', args('b', serverB), dir);
    replicas.push(b);
    await until('lab-b is warm at the first commit', () => b.saidStart('standby: ').some((l) => l['commit'] === c1.slice(0, 12)), { detail, timeoutMs: 90_000 });

    await work.write('vms/vm-5.yaml', vmYaml('vm-5', 'img:1', 'lab'));
    const c2 = await work.commit('vm-5: no tier label');
    await work.push();
    const body = JSON.stringify({ ref: 'refs/heads/main', after: c2, repository: { full_name: 'acme/lab' } });
    const res = await fetch(`http://${String(b.said('listening')[0]?.['address'])}/webhook/github`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-github-event': 'push', 'x-github-delivery': 'd-lab', 'x-hub-signature-256': `sha256=${createHmac('sha256', SECRET).update(body).digest('hex')}` },
      body,
      signal: AbortSignal.timeout(10_000),
    });
    await res.text();
    await until('lab-b is warm at the pushed commit', () => b.saidStart('standby: ').some((l) => l['commit'] === c2.slice(0, 12)), { detail, timeoutMs: 60_000 });
    assert.equal(label(), 'web', 'nobody applied the push yet: the leader has not fetched it, the follower writes nothing');
    assert.equal(b.said('reconciled').length, 0);

    a.child.kill('SIGKILL');
    assert.equal(await a.exit, null, 'killed, not exited');
    await until('lab-b takes over and syncs', () => b.said('reconciled').length > 0, { detail, timeoutMs: 90_000 });
    const first = b.said('reconciled')[0] as Obj;
    assert.equal(first['commit'], c2.slice(0, 12));
    assert.equal(first['read'], 0, 'the standby had loaded the push: nothing read again');
    assert.equal(first['writes'], 1, 'the VM whose label Git removed, and only it');
    await until('the label is gone from the cluster', () => label() === undefined, { detail, timeoutMs: 30_000 });
  });
});
