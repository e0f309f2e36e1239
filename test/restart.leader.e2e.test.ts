/**
 * Restart orchestration across a leader change, as processes: two `vmroll run --leader-elect`
 * replicas against vmroll's simulator API server (boot time 2.5 s on the wall clock), a window
 * policy whose window is open the whole time (`* * * * *` for 1h, so no clock is faked), budget
 * one at a time. The leader is killed with SIGKILL while a restart is in progress; the other
 * replica takes over from the records on the VMs. Every VM is restarted exactly once, counted
 * from the simulator's store (a new VMI per start), not from vmroll's logs.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { metaOf } from '../reconciler/cluster/object.ts';
import { type ApiServer, startApiServer } from '../reconciler/cluster/sim/apiServer.ts';
import { SimCluster } from '../reconciler/cluster/sim/simCluster.ts';
import { simKubeconfig } from '../reconciler/commands/sim.ts';
import type { Obj } from '../reconciler/rollout/index.ts';
import { type GitServer, startGitServer } from './helpers/gitServer.ts';
import { type GitHubEmulator, startGitHubEmulator } from './helpers/githubEmulator.ts';
import { until } from './helpers/waitFor.ts';
import { type Replica, spawnReplica } from './helpers/replica.ts';

const NAMES = ['vm-0', 'vm-1', 'vm-2', 'vm-3'];

function vmYaml(name: string, image: string, annotations = ''): string {
  return `apiVersion: kubevirt.io/v1\nkind: VirtualMachine\nmetadata: {name: ${name}, namespace: shop${annotations}}\nspec:\n  runStrategy: Always\n  template:\n    spec:\n      domain: {cpu: {sockets: 1}, memory: {guest: 1Gi}, devices: {disks: [{name: root, disk: {bus: virtio}}]}}\n      volumes: [{name: root, containerDisk: {image: "${image}"}}]\n`;
}

describe('restarts across a leader change (kill -9, the other replica takes over)', function () {
  this.timeout(240_000);
  let git: GitServer;
  let dir: string;
  let sim: SimCluster;
  let server: ApiServer;
  const replicas: Replica[] = [];

  before(async () => {
    git = await startGitServer();
    dir = mkdtempSync(path.join(tmpdir(), 'vmroll-restart-leader-'));
    sim = new SimCluster({ bootTimeMs: 2500 });
    sim.createObject({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'shop' } });
    server = await startApiServer({ cluster: sim, listen: '127.0.0.1:0', bookmarkIntervalMs: 200 });
  });
  after(async () => {
    for (const r of replicas) if (r.child.exitCode === null && r.child.signalCode === null) r.child.kill('SIGKILL');
    await Promise.all(replicas.map((r) => r.exit));
    await server?.close();
    sim?.close();
    await git?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it('loses no restart and does none twice', async () => {
    const url = await git.createBareRepo('shop');
    const work = await git.createWorkingClone('shop');
    for (const n of NAMES) await work.write(`vms/${n}.yaml`, vmYaml(n, 'img:1'));
    await work.commit('four VMs');
    await work.push();
    const starts = new Map<string, number>();
    sim.store.watch((e) => {
      if (e.kind === 'VirtualMachineInstance' && e.type === 'ADDED') starts.set(String(metaOf(e.object)['name']), (starts.get(String(metaOf(e.object)['name'])) ?? 0) + 1);
    });
    const kubeconfig = path.join(dir, 'kubeconfig');
    writeFileSync(kubeconfig, simKubeconfig(server.url));
    const config = path.join(dir, 'vmroll.yaml');
    writeFileSync(
      config,
      [
        `repo: ${url}`,
        'path: vms',
        'restart:',
        '  policy: window',
        // A window opening every minute and lasting an hour: open the whole test, on the real clock.
        '  windows: [{schedule: "* * * * *", duration: 1h}]',
        '  budget: {concurrent: 1}',
        '  healthTimeout: 2m',
        'leaderElection:',
        '  enabled: true',
        '  namespace: default',
        '  leaseDuration: 8s',
        '  renewDeadline: 6s',
        '  retryPeriod: 200ms',
      ].join('\n'),
    );
    const args = (n: string): string[] => ['--config', config, '--cluster', 'kube', '--kubeconfig', kubeconfig, '--interval', '1s', '--cache-dir', path.join(dir, `cache-${n}`)];
    const status = (n: string): string => String(((metaOf(sim.store.peek('VirtualMachine', 'shop', n) ?? {})['annotations'] ?? {}) as Obj)['vmroll.dev/restart-status'] ?? '');
    const a = spawnReplica('replica-a', args('a'), dir);
    replicas.push(a);
    const detail = (): string => replicas.map((r) => `${r.name}:\n${r.lines.map((l) => JSON.stringify(l)).join('\n')}`).join('\n');
    await until('replica-a creates the four VMs', () => NAMES.every((n) => starts.get(n) === 1), { detail, timeoutMs: 60_000 });
    const b = spawnReplica('replica-b', args('b'), dir);
    replicas.push(b);
    await until('replica-b waits for the lease', () => b.said('waiting for the lease').length > 0, { detail, timeoutMs: 60_000 });

    for (const n of NAMES) await work.write(`vms/${n}.yaml`, vmYaml(n, 'img:2'));
    await work.commit('a new image: staged, RestartRequired');
    await work.push();
    // Mid-window, mid-restart: the leader has issued one restart and not yet seen it come back.
    await until('replica-a restarts one VM', () => a.said('restart issued').length >= 1, { detail, timeoutMs: 60_000 });
    a.child.kill('SIGKILL');
    assert.equal(await a.exit, null, 'killed, not exited');
    const byA = a.said('restart issued').map((l) => String(l['vm']));
    const [first] = byA;
    assert.ok(first !== undefined);
    assert.equal(status(first.split('/')[1] ?? ''), 'InProgress', 'killed with a restart in progress');

    await until('every VM restarted and back', () => NAMES.every((n) => status(n) === 'Succeeded'), { detail, timeoutMs: 150_000 });
    assert.equal(b.said('became leader').length, 1);
    // A claim replica-a wrote but did not issue would be issued by replica-b as a resumed restart: counted too.
    const byB = [...b.said('restart issued'), ...b.said('restart resumed from a claim without its restart')].map((l) => String(l['vm']));
    // Each VM: its first start and exactly one restart, whoever issued it.
    assert.deepEqual(Object.fromEntries(NAMES.map((n) => [n, starts.get(n)])), Object.fromEntries(NAMES.map((n) => [n, 2])));
    assert.deepEqual([...byA, ...byB].sort(), NAMES.map((n) => `shop/${n}`), `a issued ${byA.join(', ')}; b issued ${byB.join(', ')}`);
    // The new leader finished the health gate of the restart the old one issued, without issuing it again.
    assert.ok(b.said('restart succeeded').some((l) => l['vm'] === first), `replica-b saw ${first} come back`);
    assert.ok(!byB.includes(first));
    // More syncs by the new leader restart nothing again.
    const syncs = b.said('reconciled').length;
    await until('three more syncs by replica-b', () => b.said('reconciled').length >= syncs + 3, { detail, timeoutMs: 60_000 });
    assert.deepEqual(Object.fromEntries(NAMES.map((n) => [n, starts.get(n)])), Object.fromEntries(NAMES.map((n) => [n, 2])));
  });
});

describe('a restart that does not come back fails the commit (vmroll run, GitHub emulator)', function () {
  this.timeout(240_000);
  const TOKEN = 'ghp_restartFailureTokenThatMustNeverBeLogged';
  let git: GitServer;
  let gh: GitHubEmulator;
  let dir: string;
  let sim: SimCluster;
  let server: ApiServer;
  let replica: Replica | undefined;

  before(async () => {
    git = await startGitServer();
    gh = await startGitHubEmulator({ token: TOKEN, repos: ['acme/shop'] });
    dir = mkdtempSync(path.join(tmpdir(), 'vmroll-restart-fail-'));
    sim = new SimCluster({ bootTimeMs: 500 });
    sim.createObject({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'shop' } });
    server = await startApiServer({ cluster: sim, listen: '127.0.0.1:0', bookmarkIntervalMs: 200 });
  });
  after(async () => {
    if (replica !== undefined && replica.child.exitCode === null && replica.child.signalCode === null) replica.child.kill('SIGKILL');
    await replica?.exit;
    await server?.close();
    sim?.close();
    await gh?.stop();
    await git?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it('posts failure on the commit naming the VM, and holds the rest of its group', async () => {
    const url = await git.createBareRepo('shop');
    const work = await git.createWorkingClone('shop');
    // Simulator-only: `bad` never becomes Ready, whatever starts it.
    const write = async (image: string): Promise<string> => {
      await work.write('vms/bad.yaml', vmYaml('bad', image, ', annotations: {sim.vmroll.dev/never-ready: "true"}'));
      await work.write('vms/good.yaml', vmYaml('good', image));
      const sha = await work.commit(image);
      await work.push();
      return sha;
    };
    const starts = new Map<string, number>();
    sim.store.watch((e) => {
      if (e.kind === 'VirtualMachineInstance' && e.type === 'ADDED') starts.set(String(metaOf(e.object)['name']), (starts.get(String(metaOf(e.object)['name'])) ?? 0) + 1);
    });
    await write('img:1');
    const kubeconfig = path.join(dir, 'kubeconfig');
    writeFileSync(kubeconfig, simKubeconfig(server.url));
    const tokenFile = path.join(dir, 'token');
    writeFileSync(tokenFile, `${TOKEN}\n`);
    const config = path.join(dir, 'vmroll.yaml');
    writeFileSync(config, [`repo: ${url}`, 'path: vms', 'restart:', '  policy: onChange', '  healthTimeout: 3s', ''].join('\n'));
    replica = spawnReplica('solo', ['--config', config, '--cluster', 'kube', '--kubeconfig', kubeconfig, '--interval', '1s', '--cache-dir', path.join(dir, 'cache'), '--github-repo', 'acme/shop', '--github-api-url', gh.baseUrl, '--github-token-file', tokenFile], dir);
    const r = replica;
    const detail = (): string => r.lines.map((l) => JSON.stringify(l)).join('\n');
    await until('both VMs created', () => starts.get('bad') === 1 && starts.get('good') === 1, { detail, timeoutMs: 60_000 });
    const sha = await write('img:2');
    await until('a failure status on the commit', () => gh.statuses(sha, 'acme/shop').some((s) => s.context === 'vmroll/sync' && s.state === 'failure'), { detail, timeoutMs: 120_000 });
    const failure = gh.statuses(sha, 'acme/shop').find((s) => s.state === 'failure');
    assert.match(failure?.description ?? '', /^restart failed: shop\/bad; /);
    assert.equal(starts.get('bad'), 2, 'bad was restarted once');
    assert.equal(starts.get('good'), 1, 'good is held: its group stopped');
    const status = (n: string): Obj => (metaOf(sim.store.peek('VirtualMachine', 'shop', n) ?? {})['annotations'] ?? {}) as Obj;
    assert.equal(status('bad')['vmroll.dev/restart-status'], 'Failed');
    assert.match(String(status('bad')['vmroll.dev/restart-message']), /did not come back within 3s: still no Ready/);
    assert.equal(status('good')['vmroll.dev/restart-status'], undefined);
    assert.ok(!r.lines.some((l) => JSON.stringify(l).includes(TOKEN)), 'the token never reaches the log');
    assert.deepEqual(gh.violations.splice(0), []);
  });
});
