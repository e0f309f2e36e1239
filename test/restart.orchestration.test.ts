/**
 * Restart orchestration end to end in one process: Debian git's http-backend on 127.0.0.1 serves
 * the repository, the embedded simulator (boot time 60 s, a ManualClock: no test waits for a real
 * window or a real boot) is the cluster, and the Reconciler runs its restart step after report.
 * Restarts are counted from the simulator's store (a new VMI uid per start), not from vmroll's
 * own report.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { type ClusterBackend, ClusterError } from '../reconciler/cluster/backend.ts';
import { metaOf } from '../reconciler/cluster/object.ts';
import { ManualClock } from '../reconciler/cluster/sim/clock.ts';
import { SimCluster } from '../reconciler/cluster/sim/simCluster.ts';
import { NEVER_READY_ANNOTATION } from '../reconciler/cluster/sim/virtController.ts';
import { makeLogger } from '../reconciler/commands/run.ts';
import { type ReconcileReport, Reconciler } from '../reconciler/controller/reconcile.ts';
import { renderReport } from '../reconciler/controller/render.ts';
import { RestartStep } from '../reconciler/controller/restarts.ts';
import { type RestartConfigBlock, restartPolicyOf } from '../reconciler/restart/index.ts';
import type { Obj } from '../reconciler/rollout/index.ts';
import { validateVmPlan } from '../reconciler/validate.ts';
import { GitSource } from '../reconciler/source/gitSource.ts';
import { type GitServer, type WorkingClone, startGitServer } from './helpers/gitServer.ts';

const silent = makeLogger('silent', []);
const BOOT_MS = 60_000;
/** Friday 2026-01-02 23:00 UTC: the window `0 2 * * SAT` opens three hours later. */
const FRIDAY_NIGHT = '2026-01-02T23:00:00Z';
const WINDOW_OPENS = Date.parse('2026-01-03T02:00:00Z');
const WINDOW_CLOSES = Date.parse('2026-01-03T04:00:00Z');

/** A small VM; `image` is the staged change (a container disk is not hot-pluggable: RestartRequired). */
function vmYaml(namespace: string, name: string, image: string, annotations: Record<string, string> = {}): string {
  const ann = Object.entries(annotations);
  return [
    'apiVersion: kubevirt.io/v1',
    'kind: VirtualMachine',
    'metadata:',
    `  name: ${name}`,
    `  namespace: ${namespace}`,
    ...(ann.length > 0 ? ['  annotations:', ...ann.map(([k, v]) => `    ${k}: "${v}"`)] : []),
    'spec:',
    '  runStrategy: Always',
    '  template:',
    '    spec:',
    '      domain:',
    '        cpu: {sockets: 1, cores: 1, threads: 1}',
    '        memory: {guest: 1Gi}',
    '        devices:',
    '          disks: [{name: root, disk: {bus: virtio}}]',
    '      volumes:',
    `        - {name: root, containerDisk: {image: "${image}"}}`,
    '',
  ].join('\n');
}

/** VMI starts per VM, from the simulator's store: every start is a new VMI uid. */
function countStarts(cluster: SimCluster): { starts: Map<string, string[]>; restarts: (key: string) => number } {
  const starts = new Map<string, string[]>();
  cluster.store.watch((e) => {
    if (e.kind !== 'VirtualMachineInstance' || e.type !== 'ADDED') return;
    const m = metaOf(e.object);
    const key = `${String(m['namespace'])}/${String(m['name'])}`;
    starts.set(key, [...(starts.get(key) ?? []), String(m['uid'])]);
  });
  return { starts, restarts: (key) => Math.max(0, (starts.get(key)?.length ?? 0) - 1) };
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

describe('restart orchestration over the embedded simulator with a manual clock', function () {
  this.timeout(240_000);
  let server: GitServer;
  let dir: string;
  let n = 0;

  before(async () => {
    server = await startGitServer();
    dir = mkdtempSync(path.join(tmpdir(), 'vmroll-restart-'));
  });
  after(async () => {
    await server?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  /** A fresh repository, simulator, clock and reconciler with `policy`. */
  async function setup(policy: RestartConfigBlock, vms: Array<{ ns: string; name: string; annotations?: Record<string, string> }>, cluster?: ClusterBackend) {
    const repoName = `fleet${++n}`;
    const url = await server.createBareRepo(repoName);
    const work: WorkingClone = await server.createWorkingClone(repoName);
    const clock = new ManualClock(FRIDAY_NIGHT);
    const sim = new SimCluster({ clock, bootTimeMs: BOOT_MS });
    const counted = countStarts(sim);
    const write = async (image: string, extra: Record<string, Record<string, string>> = {}): Promise<void> => {
      for (const v of vms) await work.write(`vms/${v.ns}-${v.name}.yaml`, vmYaml(v.ns, v.name, image, { ...v.annotations, ...extra[`${v.ns}/${v.name}`] }));
      await work.commit(`image ${image}`);
      await work.push();
    };
    const spec = restartPolicyOf(policy);
    const now = (): number => clock.now().getTime();
    const reconciler = (backend: ClusterBackend = cluster ?? sim): Reconciler =>
      new Reconciler({ source: new GitSource({ repo: url, cacheDir: path.join(dir, `cache-${repoName}-${Math.random().toString(36).slice(2, 6)}`) }), repoLabel: url, ref: 'main', path: 'vms', cluster: backend, prune: false, logger: silent, restarts: new RestartStep({ cluster: backend, policy: spec, now }) });
    return { sim, clock, counted, write, reconciler, work };
  }

  it('releases 10 staged restarts in the window, two at a time, each after the previous came back Ready', async () => {
    const names = Array.from({ length: 10 }, (_, i) => ({ ns: 'fleet', name: `vm-${String(i).padStart(2, '0')}` }));
    const { sim, clock, counted, write, reconciler } = await setup({ policy: 'window', windows: [{ schedule: '0 2 * * SAT', duration: '2h' }], budget: { concurrent: 2 } }, names);
    const keys = names.map((v) => `${v.ns}/${v.name}`);
    await write('quay.io/containerdisks/fedora:40');
    const r = reconciler();
    try {
      await r.reconcile();
      clock.advance(BOOT_MS);
      assert.ok(keys.every((k) => vmiReady(sim, k)), 'every VM booted');
      await write('quay.io/containerdisks/fedora:41');
      let report = await r.reconcile();
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
      report = await r.reconcile();
      assert.equal(report.restarts?.restarted.length, 0, 'a minute before the window: still nothing');

      clock.advance(60_000 + 30_000);
      const order: string[] = [];
      for (let round = 0; round < 40 && order.length < 10; round++) {
        const readyBefore = new Set(keys.filter((k) => vmiReady(sim, k)));
        report = await r.reconcile();
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
      report = await r.reconcile();
      report = await r.reconcile();
      assert.equal(report.restarts?.inProgress, 0);
      assert.equal(report.restarts?.pending, 0);
      assert.equal(report.waiting, null);
      assert.ok(keys.every((k) => counted.restarts(k) === 1), `each restarted exactly once: ${keys.map((k) => `${k}=${counted.restarts(k)}`).join(' ')}`);
      assert.ok(keys.every((k) => annotations(sim, k)['vmroll.dev/restart-status'] === 'Succeeded'));
      assert.ok(keys.every((k) => Number(annotations(sim, k)['vmroll.dev/restarted-generation']) >= 2));
    } finally {
      r.close();
      sim.close();
    }
  });

  it('a VM that never becomes Ready stops its group, is reported failed, and the other group continues', async () => {
    const vms = [
      { ns: 'blue', name: 'a' },
      { ns: 'blue', name: 'b' },
      { ns: 'blue', name: 'c' },
      { ns: 'green', name: 'x' },
      { ns: 'green', name: 'y' },
    ];
    const { sim, clock, counted, write, reconciler } = await setup({ policy: 'onChange', budget: { concurrent: 1 }, healthTimeout: '5m' }, vms);
    await write('img:1');
    const r = reconciler();
    try {
      await r.reconcile();
      clock.advance(BOOT_MS);
      // blue/b will not come back from its restart (simulator-only annotation on the live VM).
      const b = sim.store.get('VirtualMachine', 'blue', 'b') as Obj;
      await sim.patchVirtualMachineAnnotations({ namespace: 'blue', name: 'b' }, { [NEVER_READY_ANNOTATION]: 'true' }, String(metaOf(b)['resourceVersion']));
      await write('img:2');
      let report: ReconcileReport | undefined;
      const restartOrder: string[] = [];
      for (let i = 0; i < 40; i++) {
        report = await r.reconcile();
        restartOrder.push(...(report.restarts?.restarted ?? []));
        if ((report.restarts?.failed.length ?? 0) > 0 && report.restarts?.inProgress === 0 && restartOrder.includes('green/y')) break;
        clock.advance(30_000);
      }
      assert.deepEqual(restartOrder, ['blue/a', 'blue/b', 'green/x', 'green/y']);
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
      report = await r.reconcile();
      assert.deepEqual(report.restarts?.failed.map((f) => f.vm), ['blue/b']);
      assert.equal(counted.restarts('blue/c'), 0);
      // A person releases the group by removing the failed VM's status: blue/c goes, blue/b is not restarted again.
      const failedVm = sim.store.get('VirtualMachine', 'blue', 'b') as Obj;
      await sim.patchVirtualMachineAnnotations({ namespace: 'blue', name: 'b' }, { 'vmroll.dev/restart-status': null }, String(metaOf(failedVm)['resourceVersion']));
      report = await r.reconcile();
      assert.deepEqual(report.restarts?.restarted, ['blue/c']);
      assert.deepEqual(report.restarts?.failed, []);
      clock.advance(BOOT_MS);
      report = await r.reconcile();
      assert.deepEqual(report.restarts?.succeeded, ['blue/c']);
      assert.equal(counted.restarts('blue/b'), 1);
    } finally {
      r.close();
      sim.close();
    }
  });

  it('never restarts a protected VM, whatever the policy or a request', async () => {
    const vms = [
      { ns: 'p', name: 'guarded', annotations: { 'vmroll.dev/restart': 'never' } },
      { ns: 'p', name: 'open' },
    ];
    const { sim, clock, counted, write, reconciler } = await setup({ policy: 'onChange' }, vms);
    await write('img:1');
    const r = reconciler();
    try {
      await r.reconcile();
      clock.advance(BOOT_MS);
      await write('img:2', { 'p/guarded': { 'vmroll.dev/restart-requested': 'please' } });
      for (let i = 0; i < 6; i++) {
        const report = await r.reconcile();
        const g = report.restarts?.vms.find((v) => v.name === 'guarded');
        assert.equal(g?.kind, 'protected');
        assert.match(g?.text ?? '', /^never restarted by vmroll: protected \(vmroll\.dev\/restart: never\)/);
        clock.advance(BOOT_MS);
      }
      assert.equal(counted.restarts('p/guarded'), 0);
      assert.equal(counted.restarts('p/open'), 1);
      assert.match(renderReport(await r.reconcile()), /manual +restarts left to a person: 1 protected \(vmroll\.dev\/restart: never\)/);
    } finally {
      r.close();
      sim.close();
    }
  });

  it('an explicit request restarts exactly once (policy manual), and a new token once more', async () => {
    const { sim, clock, counted, write, reconciler } = await setup({}, [{ ns: 'q', name: 'vm' }]);
    await write('img:1', { 'q/vm': { 'vmroll.dev/restart-requested': 'first-seen' } });
    const r = reconciler();
    try {
      let report = await r.reconcile();
      clock.advance(BOOT_MS);
      report = await r.reconcile();
      assert.equal(counted.restarts('q/vm'), 0, 'a token present when the VM is created asks for nothing');
      await write('img:1', { 'q/vm': { 'vmroll.dev/restart-requested': '2026-01-02' } });
      report = await r.reconcile();
      assert.deepEqual(report.restarts?.restarted, ['q/vm']);
      assert.match(report.restarts?.vms[0]?.text ?? '', /^restarts now: requested \(vmroll\.dev\/restart-requested: 2026-01-02\) \(policy manual\)$/);
      assert.equal(annotations(sim, 'q/vm')['vmroll.dev/restarted-request'], '2026-01-02');
      clock.advance(BOOT_MS);
      report = await r.reconcile();
      assert.deepEqual(report.restarts?.succeeded, ['q/vm']);
      for (let i = 0; i < 2; i++) {
        clock.advance(BOOT_MS);
        report = await r.reconcile();
        assert.deepEqual(report.restarts?.restarted, []);
      }
      assert.equal(counted.restarts('q/vm'), 1);
      assert.equal(annotations(sim, 'q/vm')['vmroll.dev/restart-pending'], undefined, 'the pending mark is gone once served');
      await write('img:1', { 'q/vm': { 'vmroll.dev/restart-requested': '2026-01-03' } });
      report = await r.reconcile();
      clock.advance(BOOT_MS);
      report = await r.reconcile();
      report = await r.reconcile();
      assert.equal(counted.restarts('q/vm'), 2);
    } finally {
      r.close();
      sim.close();
    }
  });

  it('a leader that dies between the claim and the restart: the next one issues it, once', async () => {
    const vms = [{ ns: 'k', name: 'vm' }];
    let dying = true;
    /** The simulator, except that `restart` fails like a leader that died before sending it. */
    let inner: SimCluster | undefined;
    const proxy = new Proxy({} as ClusterBackend, {
      get(_t, prop: string) {
        const sim = inner as SimCluster;
        if (prop === 'restartVirtualMachine' && dying) return async () => Promise.reject(new ClusterError('Unavailable', 'the leader died here'));
        const v = (sim as unknown as Record<string, unknown>)[prop];
        return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(sim) : v;
      },
    });
    const { sim, clock, counted, write, reconciler } = await setup({ policy: 'onChange' }, vms, proxy);
    inner = sim;
    await write('img:1');
    const first = reconciler(proxy);
    try {
      await first.reconcile();
      clock.advance(BOOT_MS);
      await write('img:2');
      await assert.rejects(first.reconcile(), /the leader died here/);
      assert.equal(annotations(sim, 'k/vm')['vmroll.dev/restart-status'], 'InProgress', 'the claim was written');
      assert.equal(counted.restarts('k/vm'), 0, 'the restart was not sent');
    } finally {
      first.close();
    }
    dying = false;
    const second = reconciler(sim);
    try {
      let report = await second.reconcile();
      assert.deepEqual(report.restarts?.restarted, ['k/vm']);
      assert.match(report.restarts?.vms[0]?.text ?? '', /^restart issued: its claim was recorded earlier, but the restart had not reached KubeVirt/);
      assert.equal(counted.restarts('k/vm'), 1);
      clock.advance(BOOT_MS);
      report = await second.reconcile();
      assert.deepEqual(report.restarts?.succeeded, ['k/vm']);
      for (let i = 0; i < 2; i++) {
        clock.advance(BOOT_MS);
        report = await second.reconcile();
        assert.deepEqual(report.restarts?.restarted, []);
      }
      // A third leader, fresh from the cluster, repeats nothing either.
      const third = reconciler(sim);
      try {
        report = await third.reconcile();
        assert.deepEqual(report.restarts?.restarted, []);
      } finally {
        third.close();
      }
      assert.equal(counted.restarts('k/vm'), 1);
    } finally {
      second.close();
      sim.close();
    }
  });
});
