/**
 * Restart orchestration end to end over the simulator API server: Debian git's http-backend on
 * 127.0.0.1 serves the repository; the simulator (boot time 60 s, a ManualClock: no test waits for
 * a real window or a real boot) is served by vmroll's simulator API server on 127.0.0.1, and the
 * Reconciler talks to it through the kube backend (KubeCluster from a kubeconfig), so every list,
 * watch, apply, merge patch and restart subresource call crosses a real socket. The kube backend
 * follows the cluster through watches: before every sync the test waits until vmroll's cache holds
 * exactly what the simulator's store holds (no sleeps). Restarts are counted from the simulator's
 * store (a new VMI uid per start), not from vmroll's own report.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { type ClusterBackend, ClusterError } from '../reconciler/cluster/backend.ts';
import { KubeCluster } from '../reconciler/cluster/kube.ts';
import { metaOf, objectKey } from '../reconciler/cluster/object.ts';
import { type ApiRequestInfo, type ApiServer, startApiServer } from '../reconciler/cluster/sim/apiServer.ts';
import { ManualClock } from '../reconciler/cluster/sim/clock.ts';
import { SimCluster } from '../reconciler/cluster/sim/simCluster.ts';
import { NEVER_READY_ANNOTATION } from '../reconciler/cluster/sim/virtController.ts';
import { makeLogger } from '../reconciler/commands/run.ts';
import { simKubeconfig } from '../reconciler/commands/sim.ts';
import { type ReconcileReport, Reconciler } from '../reconciler/controller/reconcile.ts';
import { renderReport } from '../reconciler/controller/render.ts';
import { RestartStep } from '../reconciler/controller/restarts.ts';
import { type RestartConfigBlock, restartPolicyOf } from '../reconciler/restart/index.ts';
import type { Obj } from '../reconciler/rollout/index.ts';
import { validateVmPlan } from '../reconciler/validate.ts';
import { GitSource } from '../reconciler/source/gitSource.ts';
import { type GitServer, type WorkingClone, startGitServer } from './helpers/gitServer.ts';
import { until } from './helpers/waitFor.ts';
import { smallVmYaml } from './helpers/smallVm.ts';

const silent = makeLogger('silent', []);
const BOOT_MS = 60_000;
/** Friday 2026-01-02 23:00 UTC: the window `0 2 * * SAT` opens three hours later. */
const FRIDAY_NIGHT = '2026-01-02T23:00:00Z';
const WINDOW_OPENS = Date.parse('2026-01-03T02:00:00Z');
const WINDOW_CLOSES = Date.parse('2026-01-03T04:00:00Z');

/** A small VM; `image` is the staged change (a container disk is not hot-pluggable: RestartRequired). */
const vmYaml = (namespace: string, name: string, image: string, annotations: Record<string, string> = {}): string => smallVmYaml({ namespace, name, image, annotations });

/** VMI starts per VM, from the simulator's store: every start is a new VMI uid, created at the simulator's clock. */
function countStarts(cluster: SimCluster): { starts: Map<string, string[]>; createdAt: Map<string, number[]>; restarts: (key: string) => number } {
  const starts = new Map<string, string[]>();
  const createdAt = new Map<string, number[]>();
  cluster.store.watch((e) => {
    if (e.kind !== 'VirtualMachineInstance' || e.type !== 'ADDED') return;
    const m = metaOf(e.object);
    const key = `${String(m['namespace'])}/${String(m['name'])}`;
    starts.set(key, [...(starts.get(key) ?? []), String(m['uid'])]);
    createdAt.set(key, [...(createdAt.get(key) ?? []), Date.parse(String(m['creationTimestamp']))]);
  });
  return { starts, createdAt, restarts: (key) => Math.max(0, (starts.get(key)?.length ?? 0) - 1) };
}

function annotations(cluster: SimCluster, key: string): Record<string, string> {
  const [ns = '', name = ''] = key.split('/');
  return (metaOf(cluster.store.peek('VirtualMachine', ns, name) ?? {})['annotations'] ?? {}) as Record<string, string>;
}

function vmiReady(cluster: SimCluster, key: string): boolean {
  const [ns = '', name = ''] = key.split('/');
  const vmi = cluster.store.peek('VirtualMachineInstance', ns, name) as Obj | undefined;
  const conds = ((vmi?.['status'] as Obj | undefined)?.['conditions'] ?? []) as Obj[];
  return conds.some((c) => c['type'] === 'Ready' && c['status'] === 'True');
}

/** `namespace/name` → resourceVersion of every object of `kind` in the simulator's store. */
function storeVersions(sim: SimCluster, kind: string): Map<string, string> {
  return new Map(sim.store.list(kind).map((o) => [objectKey(o), String(metaOf(o)['resourceVersion'])]));
}

/** How `seen` (a cache of `kind`) differs from the simulator's store, or '' when it holds the same objects at the same versions. */
function drift(sim: SimCluster, kind: string, seen: ReadonlyMap<string, Obj>): string {
  const want = storeVersions(sim, kind);
  const off: string[] = [];
  for (const [key, rv] of want) {
    const have = seen.get(key);
    if (have === undefined) off.push(`${kind} ${key} missing`);
    else if (String(metaOf(have)['resourceVersion']) !== rv) off.push(`${kind} ${key} at ${String(metaOf(have)['resourceVersion'])}, store at ${rv}`);
  }
  for (const key of seen.keys()) if (!want.has(key)) off.push(`${kind} ${key} deleted in the store`);
  return off.join('; ');
}

describe('restart orchestration over the simulator API server (kube backend, manual clock)', function () {
  this.timeout(240_000);
  let server: GitServer;
  let dir: string;
  let n = 0;
  /** Closed after each test, last opened first. */
  const open: Array<() => unknown> = [];

  before(async () => {
    server = await startGitServer();
    dir = mkdtempSync(path.join(tmpdir(), 'vmroll-restart-'));
  });
  afterEach(async () => {
    for (const close of open.splice(0).reverse()) await close();
  });
  after(async () => {
    await server?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  /** A fresh repository, simulator (served on 127.0.0.1), clock and reconciler factory with `policy`. */
  async function setup(policy: RestartConfigBlock, vms: Array<{ ns: string; name: string; annotations?: Record<string, string> }>) {
    const repoName = `fleet${++n}`;
    const url = await server.createBareRepo(repoName);
    const work: WorkingClone = await server.createWorkingClone(repoName);
    const clock = new ManualClock(FRIDAY_NIGHT);
    const sim = new SimCluster({ clock, bootTimeMs: BOOT_MS });
    open.push(() => sim.close());
    for (const ns of new Set(vms.map((v) => v.ns))) sim.createObject({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: ns } });
    const served: ApiRequestInfo[] = [];
    const api: ApiServer = await startApiServer({ cluster: sim, listen: '127.0.0.1:0', bookmarkIntervalMs: 500, onRequest: (info) => served.push(info) });
    open.push(() => api.close());
    /** Requests the API server answered with a 2xx, by `verb resource[/subresource]`, e.g. `patch virtualmachines`. */
    const answered = (what: string): number => served.filter((q) => q.code < 300 && `${q.verb} ${q.resource}${q.subresource !== undefined ? `/${q.subresource}` : ''}` === what).length;
    /** `namespace/name` of every restart subresource call the API server accepted, in order. */
    const restartsServed = (): string[] => served.filter((q) => q.code < 300 && q.resource === 'virtualmachines' && q.subresource === 'restart').map((q) => `${String(q.namespace)}/${String(q.name)}`);
    const kubeconfig = path.join(dir, `kubeconfig-${repoName}`);
    writeFileSync(kubeconfig, simKubeconfig(api.url));
    /** A kube backend of its own (its own informers), as a vmroll process would have. */
    const kube = (): KubeCluster => {
      const k = new KubeCluster({ kubeconfig: { file: kubeconfig }, retry: { attempts: 6, baseMs: 5, capMs: 50 }, requestTimeoutMs: 30_000, informer: { retryMs: 20 } });
      open.push(() => k.close());
      return k;
    };
    const counted = countStarts(sim);
    const write = async (image: string, extra: Record<string, Record<string, string>> = {}): Promise<void> => {
      for (const v of vms) await work.write(`vms/${v.ns}-${v.name}.yaml`, vmYaml(v.ns, v.name, image, { ...v.annotations, ...extra[`${v.ns}/${v.name}`] }));
      await work.commit(`image ${image}`);
      await work.push();
    };
    const spec = restartPolicyOf(policy);
    const now = (): number => clock.now().getTime();
    let caches = 0;
    /**
     * A reconciler over `k` (a fresh KubeCluster by default; `backend` wraps it when given), whose
     * `sync` first waits until both the kube backend's informers and the reconciler's cache hold
     * exactly the simulator's VMs and VMIs, at the store's resourceVersions (once they follow the
     * cluster): whatever the clock, a person or the last sync changed has come back over the watch
     * before the next sync reads it.
     */
    const reconciler = (k: KubeCluster = kube(), backend: ClusterBackend = k): { r: Reconciler; sync: () => Promise<ReconcileReport> } => {
      const r = new Reconciler({ source: new GitSource({ repo: url, cacheDir: path.join(dir, `cache-${repoName}-${++caches}`) }), repoLabel: url, ref: 'main', path: 'vms', cluster: backend, prune: false, logger: silent, restarts: new RestartStep({ cluster: backend, policy: spec, now }) });
      open.push(() => r.close());
      // Before its first sync a backend follows nothing yet: that sync lists the cluster afresh.
      const following = (): boolean => ['VirtualMachine', 'VirtualMachineInstance'].every((kind) => k.informer(kind)?.hasSynced === true);
      const off = (): string =>
        [
          drift(sim, 'VirtualMachine', k.informer('VirtualMachine')?.store ?? new Map()),
          drift(sim, 'VirtualMachineInstance', k.informer('VirtualMachineInstance')?.store ?? new Map()),
          drift(sim, 'VirtualMachine', r.clusterCache.vms),
          drift(sim, 'VirtualMachineInstance', r.clusterCache.vmis),
        ]
          .filter((d) => d !== '')
          .join('; ');
      const settled = (): Promise<void> => until('the kube backend and the reconciler cache to match the simulator', () => !following() || off() === '', { detail: off });
      return {
        r,
        sync: async () => {
          await settled();
          return r.reconcile();
        },
      };
    };
    return { sim, clock, counted, write, reconciler, work, kube, answered, restartsServed };
  }

  it('releases 10 staged restarts in the window, two at a time, each after the previous came back Ready', async () => {
    const names = Array.from({ length: 10 }, (_, i) => ({ ns: 'fleet', name: `vm-${String(i).padStart(2, '0')}` }));
    const { sim, clock, counted, write, reconciler, answered, restartsServed } = await setup({ policy: 'window', windows: [{ schedule: '0 2 * * SAT', duration: '2h' }], budget: { concurrent: 2 } }, names);
    const keys = names.map((v) => `${v.ns}/${v.name}`);
    await write('quay.io/containerdisks/fedora:40');
    const { sync } = reconciler();
    await sync();
    clock.advance(BOOT_MS);
    assert.ok(keys.every((k) => vmiReady(sim, k)), 'every VM booted');
    await write('quay.io/containerdisks/fedora:41');
    let report = await sync();
    // Before the window: nothing restarts, every VM says when it will.
    assert.equal(report.restarts?.restarted.length, 0);
    assert.equal(report.restarts?.pending, 10);
    assert.match(report.restarts?.vms[0]?.text ?? '', /^restarts in the next window \(Sat 02:00–04:00 UTC\), 1 of 10 this window$/);
    assert.equal(report.restarts?.nextWindowAt, WINDOW_OPENS);
    // The VmPlan document (`--output json`) carries the same, valid against its schema.
    assert.equal(report.plan.restarts?.nextWindowAt, '2026-01-03T02:00:00Z');
    assert.equal(report.plan.restarts?.vms.length, 10);
    const valid = validateVmPlan(JSON.parse(JSON.stringify(report.plan)));
    assert.ok(valid.ok, JSON.stringify(valid));
    assert.ok(keys.every((k) => counted.restarts(k) === 0));
    assert.match(renderReport(report), /waits +fleet\/vm-09: restarts in the next window \(Sat 02:00–04:00 UTC\), 10 of 10 this window/);
    clock.advance(WINDOW_OPENS - clock.now().getTime() - 60_000);
    report = await sync();
    assert.equal(report.restarts?.restarted.length, 0, 'a minute before the window: still nothing');

    clock.advance(60_000 + 30_000);
    const order: string[] = [];
    for (let round = 0; round < 40 && order.length < 10; round++) {
      const readyBefore = new Set(keys.filter((k) => vmiReady(sim, k)));
      report = await sync();
      const rr = report.restarts;
      assert.ok(rr !== undefined);
      for (const k of rr.restarted) {
        order.push(k);
        const started = Date.parse(annotations(sim, k)['vmroll.dev/restart-started-at'] ?? '');
        assert.ok(started >= WINDOW_OPENS && started < WINDOW_CLOSES, `${k} restarted inside the window`);
      }
      // Never more than two restarts in flight, and a slot frees only when its VM came back Ready.
      const inFlight = keys.filter((k) => annotations(sim, k)['vmroll.dev/restart-status'] === 'InProgress');
      assert.ok(inFlight.length <= 2, `at most 2 in progress, saw ${inFlight.join(', ')}`);
      assert.ok(rr.restarted.length <= rr.succeeded.length + (round === 0 ? 2 : 0), `round ${round}: ${rr.restarted.length} new restarts need as many that came back (${rr.succeeded.join(', ')})`);
      for (const k of rr.succeeded) assert.ok(readyBefore.has(k), `${k} was Ready before it counted as back`);
      if (rr.restarted.length > 0) assert.equal(report.waiting, `${rr.inProgress} restart${rr.inProgress === 1 ? '' : 's'} in progress`);
      clock.advance(BOOT_MS / 2);
    }
    assert.deepEqual(order, keys, 'in namespace/name order, each once');
    // The last two come back; afterwards nothing is left and nothing restarts again.
    clock.advance(BOOT_MS);
    report = await sync();
    report = await sync();
    assert.equal(report.restarts?.inProgress, 0);
    assert.equal(report.restarts?.pending, 0);
    assert.equal(report.waiting, null);
    assert.ok(keys.every((k) => counted.restarts(k) === 1), `each restarted exactly once: ${keys.map((k) => `${k}=${counted.restarts(k)}`).join(' ')}`);
    assert.ok(keys.every((k) => annotations(sim, k)['vmroll.dev/restart-status'] === 'Succeeded'));
    assert.ok(keys.every((k) => Number(annotations(sim, k)['vmroll.dev/restarted-generation']) >= 2));
    // The restarted VMIs themselves were created inside the window, by the simulator's clock.
    for (const k of keys) {
      const at = counted.createdAt.get(k)?.[1] ?? NaN;
      assert.ok(at >= WINDOW_OPENS && at < WINDOW_CLOSES, `${k}'s second VMI was created at ${new Date(at).toISOString()}`);
    }
    // Every call crossed the socket: the API server answered each restart subresource call, the applies and the merge patches of the records.
    assert.deepEqual(restartsServed(), keys, 'one restart subresource call per VM, answered by the API server');
    assert.ok(answered('apply virtualmachines') >= 20, `applies: ${answered('apply virtualmachines')}`);
    assert.ok(answered('patch virtualmachines') >= 20, `merge patches (a claim and an outcome per VM): ${answered('patch virtualmachines')}`);
  });

  it('a VM that never becomes Ready stops its group, is reported failed, and the other group continues', async () => {
    const vms = [
      { ns: 'blue', name: 'a' },
      { ns: 'blue', name: 'b' },
      { ns: 'blue', name: 'c' },
      { ns: 'green', name: 'x' },
      { ns: 'green', name: 'y' },
    ];
    const { sim, clock, counted, write, reconciler, kube, restartsServed } = await setup({ policy: 'onChange', budget: { concurrent: 1 }, healthTimeout: '5m' }, vms);
    await write('img:1');
    const { sync } = reconciler();
    await sync();
    clock.advance(BOOT_MS);
    // blue/b will not come back from its restart (simulator-only annotation on the live VM).
    const b = sim.store.get('VirtualMachine', 'blue', 'b') as Obj;
    await sim.patchVirtualMachineAnnotations({ namespace: 'blue', name: 'b' }, { [NEVER_READY_ANNOTATION]: 'true' }, String(metaOf(b)['resourceVersion']));
    await write('img:2');
    let report: ReconcileReport | undefined;
    const restartOrder: string[] = [];
    for (let i = 0; i < 40; i++) {
      report = await sync();
      restartOrder.push(...(report.restarts?.restarted ?? []));
      if ((report.restarts?.failed.length ?? 0) > 0 && report.restarts?.inProgress === 0 && restartOrder.includes('green/y')) break;
      clock.advance(30_000);
    }
    assert.deepEqual(restartOrder, ['blue/a', 'blue/b', 'green/x', 'green/y']);
    assert.deepEqual(restartsServed(), restartOrder, 'the API server accepted exactly these restart calls');
    const rr = report?.restarts;
    assert.ok(rr !== undefined);
    // One at a time: blue/a came back, blue/b never did, so blue/c waits for a person; green goes on.
    assert.ok(restartOrder.indexOf('blue/b') > restartOrder.indexOf('blue/a'));
    assert.deepEqual(rr.failed.map((f) => f.vm), ['blue/b']);
    assert.match(rr.failed[0]?.message ?? '', /did not come back within 5m: still no Ready/);
    assert.equal(counted.restarts('blue/a'), 1);
    assert.equal(counted.restarts('blue/b'), 1);
    assert.equal(counted.restarts('blue/c'), 0, 'its group is stopped');
    assert.equal(counted.restarts('green/x'), 1, 'the other group continues');
    assert.equal(counted.restarts('green/y'), 1);
    const c = rr.vms.find((v) => v.name === 'c');
    assert.equal(c?.kind, 'held');
    assert.match(c?.text ?? '', /^held: group blue is stopped since the restart of blue\/b failed$/);
    assert.equal(annotations(sim, 'blue/b')['vmroll.dev/restart-status'], 'Failed');
    assert.match(renderReport(report as ReconcileReport), /failed +blue\/b: restart failed/);
    assert.ok(validateVmPlan(JSON.parse(JSON.stringify(report?.plan))).ok);
    assert.deepEqual(report?.plan.restarts?.failed, rr.failed);
    // It stays failed and held: more syncs restart nothing.
    clock.advance(600_000);
    report = await sync();
    assert.deepEqual(report.restarts?.failed.map((f) => f.vm), ['blue/b']);
    assert.equal(counted.restarts('blue/c'), 0);
    // A person releases the group by removing the failed VM's status: blue/c goes, blue/b is not restarted again.
    const failedVm = sim.store.get('VirtualMachine', 'blue', 'b') as Obj;
    await kube().patchVirtualMachineAnnotations({ namespace: 'blue', name: 'b' }, { 'vmroll.dev/restart-status': null }, String(metaOf(failedVm)['resourceVersion']));
    report = await sync();
    assert.deepEqual(report.restarts?.restarted, ['blue/c']);
    assert.deepEqual(report.restarts?.failed, []);
    clock.advance(BOOT_MS);
    report = await sync();
    assert.deepEqual(report.restarts?.succeeded, ['blue/c']);
    assert.equal(counted.restarts('blue/b'), 1);
    assert.deepEqual(restartsServed(), ['blue/a', 'blue/b', 'green/x', 'green/y', 'blue/c']);
  });

  it('never restarts a protected VM, whatever the policy or a request', async () => {
    const vms = [
      { ns: 'p', name: 'guarded', annotations: { 'vmroll.dev/restart': 'never' } },
      { ns: 'p', name: 'open' },
    ];
    const { sim, clock, counted, write, reconciler, restartsServed } = await setup({ policy: 'onChange' }, vms);
    await write('img:1');
    const { sync } = reconciler();
    await sync();
    clock.advance(BOOT_MS);
    await write('img:2', { 'p/guarded': { 'vmroll.dev/restart-requested': 'please' } });
    for (let i = 0; i < 6; i++) {
      const report = await sync();
      const g = report.restarts?.vms.find((v) => v.name === 'guarded');
      assert.equal(g?.kind, 'protected');
      assert.match(g?.text ?? '', /^never restarted by vmroll: protected \(vmroll\.dev\/restart: never\)/);
      clock.advance(BOOT_MS);
    }
    assert.equal(counted.restarts('p/guarded'), 0);
    assert.equal(counted.restarts('p/open'), 1);
    assert.deepEqual(restartsServed(), ['p/open'], 'no restart call for the protected VM reached the API server');
    assert.match(renderReport(await sync()), /manual +restarts left to a person: 1 protected \(vmroll\.dev\/restart: never\)/);
  });

  it('an explicit request restarts exactly once (policy manual), and a new token once more', async () => {
    const { sim, clock, counted, write, reconciler, restartsServed } = await setup({}, [{ ns: 'q', name: 'vm' }]);
    await write('img:1', { 'q/vm': { 'vmroll.dev/restart-requested': 'first-seen' } });
    const { sync } = reconciler();
    let report = await sync();
    clock.advance(BOOT_MS);
    report = await sync();
    assert.equal(counted.restarts('q/vm'), 0, 'a token present when the VM is created asks for nothing');
    await write('img:1', { 'q/vm': { 'vmroll.dev/restart-requested': '2026-01-02' } });
    report = await sync();
    assert.deepEqual(report.restarts?.restarted, ['q/vm']);
    assert.match(report.restarts?.vms[0]?.text ?? '', /^restarts now: requested \(vmroll\.dev\/restart-requested: 2026-01-02\) \(policy manual\)$/);
    assert.equal(annotations(sim, 'q/vm')['vmroll.dev/restarted-request'], '2026-01-02');
    clock.advance(BOOT_MS);
    report = await sync();
    assert.deepEqual(report.restarts?.succeeded, ['q/vm']);
    for (let i = 0; i < 2; i++) {
      clock.advance(BOOT_MS);
      report = await sync();
      assert.deepEqual(report.restarts?.restarted, []);
    }
    assert.equal(counted.restarts('q/vm'), 1);
    assert.equal(annotations(sim, 'q/vm')['vmroll.dev/restart-pending'], undefined, 'the pending mark is gone once served');
    await write('img:1', { 'q/vm': { 'vmroll.dev/restart-requested': '2026-01-03' } });
    report = await sync();
    assert.deepEqual(report.restarts?.restarted, ['q/vm'], 'the new token restarts it once more');
    clock.advance(BOOT_MS);
    report = await sync();
    report = await sync();
    assert.deepEqual(report.restarts?.restarted, []);
    assert.equal(counted.restarts('q/vm'), 2);
    assert.deepEqual(restartsServed(), ['q/vm', 'q/vm'], 'two restart calls reached the API server, one per token');
  });

  it('a leader that dies between the claim and the restart: the next one issues it, once', async () => {
    const vms = [{ ns: 'k', name: 'vm' }];
    const { sim, clock, counted, write, reconciler, kube, restartsServed } = await setup({ policy: 'onChange' }, vms);
    const k1 = kube();
    /** The first leader's kube backend, except that `restart` fails like a leader that died before sending it. */
    const dying = new Proxy(k1, {
      get(target, prop: string) {
        if (prop === 'restartVirtualMachine') return async () => Promise.reject(new ClusterError('Unavailable', 'the leader died here'));
        const v = (target as unknown as Record<string, unknown>)[prop];
        return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
      },
    });
    await write('img:1');
    const first = reconciler(k1, dying);
    await first.sync();
    clock.advance(BOOT_MS);
    await write('img:2');
    await assert.rejects(first.sync(), /the leader died here/);
    assert.equal(annotations(sim, 'k/vm')['vmroll.dev/restart-status'], 'InProgress', 'the claim was written');
    assert.equal(counted.restarts('k/vm'), 0, 'the restart was not sent');
    first.r.close();
    k1.close();
    // The next leader starts from the cluster: its own kube backend, its own cache.
    const second = reconciler();
    let report = await second.sync();
    assert.deepEqual(report.restarts?.restarted, ['k/vm']);
    assert.match(report.restarts?.vms[0]?.text ?? '', /^restart issued: its claim was recorded earlier, but the restart had not reached KubeVirt/);
    assert.equal(counted.restarts('k/vm'), 1);
    clock.advance(BOOT_MS);
    report = await second.sync();
    assert.deepEqual(report.restarts?.succeeded, ['k/vm']);
    for (let i = 0; i < 2; i++) {
      clock.advance(BOOT_MS);
      report = await second.sync();
      assert.deepEqual(report.restarts?.restarted, []);
    }
    // A third leader, fresh from the cluster, repeats nothing either.
    const third = reconciler();
    report = await third.sync();
    assert.deepEqual(report.restarts?.restarted, []);
    assert.equal(counted.restarts('k/vm'), 1);
    assert.deepEqual(restartsServed(), ['k/vm'], 'one restart call reached the API server, from the second leader');
  });
});
