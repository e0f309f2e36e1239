/**
 * The restart step's wiring: the policy in the run config (a file's repositories, a top-level
 * `restart:` with --repo) and in reloads; the simulator's boot model (phases on its clock,
 * never-ready, AgentConnected for a guest agent, `vmroll sim --boot-time`); the metrics; and the
 * step over vmroll's simulator API server through the Kubernetes backend (informers, server-side
 * apply, the merge patch with a resourceVersion precondition, the restart subresource).
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { ClusterError } from '../reconciler/cluster/backend.ts';
import { KubeCluster } from '../reconciler/cluster/kube.ts';
import { conditionsOf, metaOf, statusOf } from '../reconciler/cluster/object.ts';
import { type ApiServer, startApiServer } from '../reconciler/cluster/sim/apiServer.ts';
import { ManualClock } from '../reconciler/cluster/sim/clock.ts';
import { SimCluster } from '../reconciler/cluster/sim/simCluster.ts';
import { NEVER_READY_ANNOTATION } from '../reconciler/cluster/sim/virtController.ts';
import { SIM_HELP } from '../reconciler/commands/help.ts';
import { makeLogger } from '../reconciler/commands/run.ts';
import { simKubeconfig } from '../reconciler/commands/sim.ts';
import { resolveRunConfig } from '../reconciler/config.ts';
import { planReload } from '../reconciler/configReload.ts';
import { VmrollMetrics } from '../reconciler/controller/metrics.ts';
import { Reconciler } from '../reconciler/controller/reconcile.ts';
import { startRepository } from '../reconciler/controller/repository.ts';
import { RestartStep } from '../reconciler/controller/restarts.ts';
import { restartPolicyOf } from '../reconciler/restart/index.ts';
import type { Obj } from '../reconciler/rollout/index.ts';
import { GitSource } from '../reconciler/source/gitSource.ts';
import { type GitServer, startGitServer } from './helpers/gitServer.ts';
import { until } from './helpers/waitFor.ts';

const WINDOW_FILE = ['restart:', '  policy: window', '  windows:', '    - {schedule: "0 2 * * SAT", duration: 2h, timeZone: Europe/Berlin}', '  budget: {concurrent: 2, perWindow: 5}', ''].join('\n');

describe('restart policy in the run config', () => {
  it('a top-level restart: is the policy of the repository --repo names', () => {
    const c = resolveRunConfig({ repo: 'https://git.example.com/shop/vms.git', config: 'vmroll.yaml', cluster: 'sim' }, {}, { path: 'vmroll.yaml', text: WINDOW_FILE });
    const spec = c.repositories?.[0]?.restart;
    assert.equal(spec?.policy, 'window');
    assert.deepEqual(spec?.budget, { concurrent: 2, perWindow: 5 });
    assert.equal(spec?.windows[0]?.timeZone, 'Europe/Berlin');
    // Without a file there is no policy (manual).
    assert.equal(resolveRunConfig({ repo: 'https://git.example.com/shop/vms.git', cluster: 'sim' }, {}, undefined).repositories?.[0]?.restart, undefined);
  });

  it("each repository of the file: its own block, else the top-level one; a reload that changes it rebuilds the repository's unit", () => {
    const text = (budget: number): string =>
      [
        'restart: {policy: onChange}',
        'repositories:',
        '  - {name: a, url: "https://git.example.com/a.git"}',
        '  - name: b',
        '    url: "https://git.example.com/b.git"',
        '    restart:',
        '      policy: window',
        '      windows: [{schedule: "0 2 * * SAT", duration: 2h}]',
        `      budget: {concurrent: ${budget}}`,
        '',
      ].join('\n');
    const c = resolveRunConfig({ config: 'vmroll.yaml', cluster: 'sim' }, {}, { path: 'vmroll.yaml', text: text(1) });
    assert.deepEqual(c.repositories?.map((r) => [r.name, r.restart?.policy, r.restart?.budget.concurrent]), [
      ['a', 'onChange', 1],
      ['b', 'window', 1],
    ]);
    const next = resolveRunConfig({ config: 'vmroll.yaml', cluster: 'sim' }, {}, { path: 'vmroll.yaml', text: text(3) });
    const plan = planReload(c, next);
    assert.deepEqual(plan.changed.map((ch) => [ch.config.name, ch.fields]), [['b', ['restart']]]);
  });
});

describe('simulator boot model', () => {
  const vm = (name: string, extra: { annotations?: Record<string, string>; userData?: string } = {}): Obj => ({
    apiVersion: 'kubevirt.io/v1',
    kind: 'VirtualMachine',
    metadata: { name, namespace: 'boot', ...(extra.annotations !== undefined && { annotations: extra.annotations }) },
    spec: {
      runStrategy: 'Always',
      template: {
        spec: {
          domain: { cpu: { sockets: 1 }, memory: { guest: '1Gi' }, devices: {} },
          volumes: [{ name: 'root', containerDisk: { image: 'img' } }, ...(extra.userData !== undefined ? [{ name: 'ci', cloudInitNoCloud: { userData: extra.userData } }] : [])],
        },
      },
    },
  });
  const state = (sim: SimCluster, name: string): string => {
    const vmi = sim.store.peek('VirtualMachineInstance', 'boot', name) as Obj | undefined;
    if (vmi === undefined) return 'none';
    const c = (type: string): string => String(conditionsOf(vmi).find((x) => x['type'] === type)?.['status'] ?? '-');
    return `${String(statusOf(vmi)['phase'])} Ready=${c('Ready')} Agent=${c('AgentConnected')}`;
  };

  it('a VMI is Scheduling, Scheduled, Running, then Ready after the boot time on the simulator clock; AgentConnected with a guest agent; never-ready stays unready', async () => {
    const clock = new ManualClock();
    const sim = new SimCluster({ clock, bootTimeMs: 40_000 });
    try {
      await sim.applyVirtualMachine(vm('plain'));
      await sim.applyVirtualMachine(vm('agent', { userData: '#cloud-config\npackages: [qemu-guest-agent]\nruncmd: [[systemctl, start, qemu-guest-agent]]\n' }));
      await sim.applyVirtualMachine(vm('stuck', { annotations: { [NEVER_READY_ANNOTATION]: 'true' } }));
      assert.equal(state(sim, 'plain'), 'Scheduling Ready=False Agent=-');
      clock.advance(10_000);
      assert.equal(state(sim, 'plain'), 'Scheduled Ready=False Agent=-');
      clock.advance(10_000);
      assert.equal(state(sim, 'plain'), 'Running Ready=False Agent=-');
      clock.advance(19_999);
      assert.equal(state(sim, 'plain'), 'Running Ready=False Agent=-');
      clock.advance(1);
      assert.equal(state(sim, 'plain'), 'Running Ready=True Agent=-');
      assert.equal(state(sim, 'agent'), 'Running Ready=True Agent=True');
      assert.equal(state(sim, 'stuck'), 'Running Ready=False Agent=-');
      // A restart boots again; a boot step of the replaced VMI does not touch the new one.
      const before = String(metaOf(sim.store.peek('VirtualMachineInstance', 'boot', 'plain') ?? {})['uid']);
      await sim.restartVirtualMachine({ namespace: 'boot', name: 'plain' });
      assert.notEqual(String(metaOf(sim.store.peek('VirtualMachineInstance', 'boot', 'plain') ?? {})['uid']), before);
      assert.equal(state(sim, 'plain'), 'Scheduling Ready=False Agent=-');
      clock.advance(40_000);
      assert.equal(state(sim, 'plain'), 'Running Ready=True Agent=-');
      clock.advance(600_000);
      assert.equal(state(sim, 'stuck'), 'Running Ready=False Agent=-');
    } finally {
      sim.close();
    }
  });

  it('without a boot time a VMI is Running and Ready at once, as before', async () => {
    const sim = new SimCluster({ clock: new ManualClock() });
    try {
      await sim.applyVirtualMachine(vm('plain'));
      assert.equal(state(sim, 'plain'), 'Running Ready=True Agent=-');
    } finally {
      sim.close();
    }
  });

  it('vmroll sim documents --boot-time', () => {
    assert.match(SIM_HELP, /--boot-time <dur> +how long a started VMI takes to become Running and Ready \(default 0s\)/);
  });
});

describe('restart metrics', () => {
  it('counts restarts by result and gauges what is pending', async () => {
    const m = new VmrollMetrics({ defaultMetrics: false });
    const report = {
      plan: { commit: 'c', vms: [], errors: [] },
      summary: { inSync: 0, created: 0, liveUpdated: 0, staged: 0, errors: 0 },
      timings: { total: 1, fetch: 1 },
      restarts: {
        policy: 'window',
        vms: [{ namespace: 'a', name: 'x', kind: 'failed', event: 'failed', text: 't' }],
        restarted: ['a/y', 'a/z'],
        succeeded: ['a/w'],
        failed: [{ vm: 'a/x', message: 'm' }],
        pending: 7,
        inProgress: 2,
        nextWindowAt: null,
        waiting: null,
      },
    } as unknown as Parameters<VmrollMetrics['recordReconcile']>[1];
    m.recordReconcile('shop', report);
    const text = await m.registry.metrics();
    assert.match(text, /vmroll_restarts_total\{repository="shop",result="issued"\} 2/);
    assert.match(text, /vmroll_restarts_total\{repository="shop",result="succeeded"\} 1/);
    assert.match(text, /vmroll_restarts_total\{repository="shop",result="failed"\} 1/);
    assert.match(text, /vmroll_restarts_pending\{repository="shop",state="waiting"\} 7/);
    assert.match(text, /vmroll_restarts_pending\{repository="shop",state="in_progress"\} 2/);
  });
});

describe('restarts over the simulator API server (kube backend)', function () {
  this.timeout(240_000);
  let git: GitServer;
  let sim: SimCluster;
  let api: ApiServer;
  let dir: string;
  let clock: ManualClock;
  const kubes: KubeCluster[] = [];
  const kube = (kubeconfig: string): KubeCluster => {
    const k = new KubeCluster({ kubeconfig: { file: kubeconfig }, retry: { attempts: 6, baseMs: 5, capMs: 50 }, requestTimeoutMs: 30_000, informer: { retryMs: 20 } });
    kubes.push(k);
    return k;
  };

  before(async () => {
    git = await startGitServer();
    dir = mkdtempSync(path.join(tmpdir(), 'vmroll-restart-kube-'));
    clock = new ManualClock('2026-01-05T08:00:00Z');
    sim = new SimCluster({ clock, bootTimeMs: 30_000 });
    sim.createObject({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'web' } });
    api = await startApiServer({ cluster: sim, listen: '127.0.0.1:0', bookmarkIntervalMs: 100 });
    writeFileSync(path.join(dir, 'kubeconfig'), simKubeconfig(api.url));
  });
  after(async () => {
    for (const k of kubes.splice(0)) k.close();
    await api?.close();
    sim?.close();
    await git?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it('the merge patch of annotations is guarded by resourceVersion: a stale one is a Conflict, null removes', async () => {
    const k = kube(path.join(dir, 'kubeconfig'));
    await sim.applyVirtualMachine({ apiVersion: 'kubevirt.io/v1', kind: 'VirtualMachine', metadata: { name: 'p', namespace: 'web', annotations: { keep: 'me' } }, spec: { runStrategy: 'Halted', template: { spec: { domain: { devices: {} } } } } });
    const rv = String(metaOf(sim.store.peek('VirtualMachine', 'web', 'p') ?? {})['resourceVersion']);
    const stored = await k.patchVirtualMachineAnnotations({ namespace: 'web', name: 'p' }, { 'vmroll.dev/restart-status': 'InProgress' }, rv);
    assert.equal((metaOf(stored)['annotations'] as Obj)['vmroll.dev/restart-status'], 'InProgress');
    assert.equal((metaOf(stored)['annotations'] as Obj)['keep'], 'me');
    await assert.rejects(k.patchVirtualMachineAnnotations({ namespace: 'web', name: 'p' }, { 'vmroll.dev/restart-status': 'Failed' }, rv), (e: unknown) => e instanceof ClusterError && e.code === 'Conflict');
    const after = await k.patchVirtualMachineAnnotations({ namespace: 'web', name: 'p' }, { 'vmroll.dev/restart-status': null }, String(metaOf(stored)['resourceVersion']));
    assert.equal((metaOf(after)['annotations'] as Obj)['vmroll.dev/restart-status'], undefined);
  });

  it('onChange, one at a time: three staged VMs restart each once, each after the previous came back Ready; the records survive the next apply', async () => {
    const url = await git.createBareRepo('web');
    const work = await git.createWorkingClone('web');
    const names = ['a', 'b', 'c'];
    const write = async (image: string): Promise<void> => {
      for (const n of names) {
        await work.write(
          `vms/${n}.yaml`,
          `apiVersion: kubevirt.io/v1\nkind: VirtualMachine\nmetadata: {name: ${n}, namespace: web}\nspec:\n  runStrategy: Always\n  template:\n    spec:\n      domain: {cpu: {sockets: 1}, memory: {guest: 1Gi}, devices: {disks: [{name: root, disk: {bus: virtio}}]}}\n      volumes: [{name: root, containerDisk: {image: "${image}"}}]\n`,
        );
      }
      await work.commit(image);
      await work.push();
    };
    const starts = new Map<string, number>();
    sim.store.watch((e) => {
      if (e.kind === 'VirtualMachineInstance' && e.type === 'ADDED' && metaOf(e.object)['namespace'] === 'web') starts.set(String(metaOf(e.object)['name']), (starts.get(String(metaOf(e.object)['name'])) ?? 0) + 1);
    });
    const k = kube(path.join(dir, 'kubeconfig'));
    const r = new Reconciler({
      source: new GitSource({ repo: url, cacheDir: path.join(dir, 'cache') }),
      repoLabel: url,
      ref: 'main',
      path: 'vms',
      cluster: k,
      prune: false,
      logger: makeLogger('silent', []),
      restarts: new RestartStep({ cluster: k, policy: restartPolicyOf({ policy: 'onChange' }), now: () => clock.now().getTime() }),
    });
    const cacheShows = (what: string, check: (vmis: Map<string, Obj>, vms: Map<string, Obj>) => boolean): Promise<void> => until(what, () => check(r.clusterCache.vmis, r.clusterCache.vms));
    const ready = (vmi: Obj | undefined): boolean => conditionsOf(vmi).some((c) => c['type'] === 'Ready' && c['status'] === 'True');
    try {
      await write('img:1');
      await r.reconcile();
      clock.advance(30_000);
      await cacheShows('three VMIs Ready', (vmis) => names.every((n) => ready(vmis.get(`web/${n}`))));
      await write('img:2');
      const order: string[] = [];
      for (let i = 0; i < 12 && order.length < 3; i++) {
        const report = await r.reconcile();
        const rr = report.restarts;
        assert.ok(rr !== undefined);
        assert.ok(rr.inProgress <= 1, 'one at a time');
        order.push(...rr.restarted);
        for (const key of rr.restarted) {
          const name = key.split('/')[1] ?? '';
          await cacheShows(`${key}'s claim and its new VMI in the cache`, (vmis, vms) => (metaOf(vms.get(key) ?? {})['annotations'] as Obj | undefined)?.['vmroll.dev/restart-status'] === 'InProgress' && (starts.get(name) ?? 0) === 2 && vmis.has(key));
        }
        clock.advance(30_000);
        await cacheShows('the restarted VMIs Ready', (vmis) => order.every((key) => ready(vmis.get(key))));
      }
      assert.deepEqual(order, ['web/a', 'web/b', 'web/c']);
      const last = await r.reconcile();
      assert.deepEqual(last.restarts?.succeeded, ['web/c']);
      assert.equal(last.restarts?.inProgress, 0);
      assert.deepEqual(Object.fromEntries(starts), { a: 2, b: 2, c: 2 });
      // A later commit applies the VMs again: server-side apply keeps the records another manager wrote.
      await write('img:3');
      const next = await r.reconcile();
      assert.ok(next.writes > 0);
      await cacheShows('the apply reached the cache', (_v, vms) => names.every((n) => String(metaOf(vms.get(`web/${n}`) ?? {})['generation']) === '3'));
      const record = (n: string): string => {
        const a = metaOf(sim.store.peek('VirtualMachine', 'web', n) ?? {})['annotations'] as Obj;
        return `${String(a['vmroll.dev/restarted-generation'])} ${String(a['vmroll.dev/restart-status'])}`;
      };
      assert.deepEqual(next.restarts?.restarted, ['web/a'], 'the new staged change (generation 3) is served by a new restart');
      assert.deepEqual(names.map(record), ['3 InProgress', '2 Succeeded', '2 Succeeded']);
    } finally {
      r.close();
    }
  });
});

describe('the repository timer and restart windows', function () {
  this.timeout(120_000);
  let git: GitServer;
  let dir: string;
  before(async () => {
    git = await startGitServer();
    dir = mkdtempSync(path.join(tmpdir(), 'vmroll-restart-timer-'));
  });
  after(async () => {
    await git?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it('with restarts waiting for a window, the next sync is set to its opening, not the interval', async () => {
    const url = await git.createBareRepo('timer');
    const work = await git.createWorkingClone('timer');
    const vm = (image: string): string =>
      `apiVersion: kubevirt.io/v1\nkind: VirtualMachine\nmetadata: {name: t, namespace: tm}\nspec:\n  runStrategy: Always\n  template:\n    spec:\n      domain: {cpu: {sockets: 1}, memory: {guest: 1Gi}, devices: {}}\n      volumes: [{name: root, containerDisk: {image: "${image}"}}]\n`;
    await work.write('vms/t.yaml', vm('img:1'));
    await work.commit('one VM');
    await work.push();
    const sim = new SimCluster({ clock: new ManualClock() });
    // vmroll's clock, 20 s before Saturday 02:00 UTC: the window opens in 20 s of real time.
    const offset = Date.parse('2026-01-03T02:00:00Z') - 20_000 - Date.now();
    const now = (): number => Date.now() + offset;
    const base = resolveRunConfig({ repo: url, cluster: 'sim', 'cache-dir': path.join(dir, 'cache'), interval: '1h' }, {}, undefined);
    const rc = { ...(base.repositories?.[0] as NonNullable<typeof base.repositories>[number]), restart: restartPolicyOf({ policy: 'window', windows: [{ schedule: '0 2 * * SAT', duration: '2h' }] }) };
    const unit = startRepository({ rc, config: base, logger: makeLogger('silent', []), cluster: sim, metrics: new VmrollMetrics({ defaultMetrics: false }), host: null, leading: () => true, isStopped: () => false, several: false, now });
    try {
      await unit.trigger('first');
      await work.write('vms/t.yaml', vm('img:2'));
      await work.commit('staged');
      await work.push();
      unit.schedule();
      const report = await unit.trigger('push');
      assert.equal(report?.restarts?.vms[0]?.kind, 'waitWindow');
      const due = (unit.nextSyncAt() ?? 0) - Date.now();
      assert.ok(due > 0 && due <= 20_000, `the next sync is due in ${due} ms, at the window's opening (interval 1h)`);
    } finally {
      unit.cancelTimer();
      await unit.retire();
      unit.reconciler.close();
      sim.close();
    }
  });
});
