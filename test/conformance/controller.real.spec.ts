/**
 * The simulator's virt-controller stand-in as an external controller
 * (reconciler/cluster/sim/externalController.ts) against Kubernetes' own API server serving
 * KubeVirt's CRDs: VMIs appear, start revisions are recorded, VM and VMI status and conditions
 * change through the real status subresource; and `vmroll run --once --kubeconfig` against it
 * gives the same plans as the embedded simulator on the same repository (the case of
 * test/run.kube.e2e.test.ts, there against `vmroll sim`). Not part of `npm test`:
 * `npm run test:conformance`.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { AppsV1Api, CoreV1Api, CustomObjectsApi, KubeConfig, PatchStrategy, setHeaderOptions } from '@kubernetes/client-node';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { parse } from 'yaml';
import { KubeCluster } from '../../reconciler/cluster/kube.ts';
import { ExternalVirtController } from '../../reconciler/cluster/sim/externalController.ts';
import { type Obj, type VmPlan, startRevisionName } from '../../reconciler/rollout/index.ts';
import { ROOT } from '../helpers/cases.ts';
import { startGitServer } from '../helpers/gitServer.ts';
import { BUILD_TIMEOUT_MS, type RealApiServer, START_TIMEOUT_MS, startRealApiServer } from '../helpers/realApiServer.ts';
import { until } from '../helpers/waitFor.ts';

const EXAMPLE = path.join(ROOT, 'fixtures', 'example-repo', 'vms');
const KUBEVIRT_FILE = path.join(ROOT, 'fixtures', 'example-cluster', 'kubevirt.yaml');
const KUBEVIRT = parse(readFileSync(KUBEVIRT_FILE, 'utf8')) as Obj;
const WEB = parse(readFileSync(path.join(EXAMPLE, 'web.yaml'), 'utf8')) as Obj;
const VM = { group: 'kubevirt.io', version: 'v1', plural: 'virtualmachines' } as const;
const VMI = { group: 'kubevirt.io', version: 'v1', plural: 'virtualmachineinstances' } as const;
const run = promisify(execFile);

/** `vmroll run --once` as its own process, bounded at 120 s. */
async function vmrollOnce(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await run(process.execPath, [path.join(ROOT, 'bin', 'vmroll.js'), 'run', '--once', ...args], { cwd: ROOT, timeout: 120_000 });
    return { code: 0, stdout, stderr };
  } catch (e) {
    const err = e as { code?: number; stdout?: string; stderr?: string };
    return { code: typeof err.code === 'number' ? err.code : -1, stdout: err.stdout ?? '', stderr: err.stderr ?? '' };
  }
}

/**
 * A plan with what differs between two clusters by nature (times) left out, as run.kube.e2e
 * compares them. Changes and reasons keep their order: the engine lists them in path order,
 * whatever key order the server returns objects in (a real one sorts them).
 */
function comparable(plan: VmPlan): unknown {
  return JSON.parse(JSON.stringify(plan, (k, v: unknown) => (k === 'lastTransitionTime' ? undefined : v)));
}

const meta = (o: Obj | undefined): Obj => (o?.['metadata'] ?? {}) as Obj;
const status = (o: Obj | undefined): Obj => (o?.['status'] ?? {}) as Obj;
const conditions = (o: Obj | undefined): Obj[] => (Array.isArray(status(o)['conditions']) ? (status(o)['conditions'] as Obj[]) : []);
const condition = (o: Obj | undefined, type: string): Obj | undefined => conditions(o).find((c) => c['type'] === type);
const cpuOf = (spec: Obj | undefined): Obj => ((((spec ?? {})['domain'] ?? {}) as Obj)['cpu'] ?? {}) as Obj;

describe("the simulator's virt-controller as an external controller against a real kube-apiserver", function () {
  this.timeout(180_000);
  let server: RealApiServer;
  let kc: KubeConfig;
  let controller: ExternalVirtController;
  let dir: string;
  const custom = (): CustomObjectsApi => kc.makeApiClient(CustomObjectsApi);
  const get = async (r: typeof VM | typeof VMI, namespace: string, name: string): Promise<Obj | undefined> => {
    try {
      return (await custom().getNamespacedCustomObject({ ...r, namespace, name })) as Obj;
    } catch (e) {
      if ((e as { code?: number }).code === 404) return undefined;
      throw e;
    }
  };
  /** Waits until `check` holds on what the server returns (VM and VMI read fresh each time). */
  const waitFor = async (what: string, namespace: string, name: string, check: (vm: Obj | undefined, vmi: Obj | undefined) => boolean): Promise<{ vm: Obj | undefined; vmi: Obj | undefined }> => {
    let last: { vm: Obj | undefined; vmi: Obj | undefined } = { vm: undefined, vmi: undefined };
    await until(
      what,
      async () => {
        last = { vm: await get(VM, namespace, name), vmi: await get(VMI, namespace, name) };
        return check(last.vm, last.vmi);
      },
      { everyMs: 100, detail: () => `VM status ${JSON.stringify(status(last.vm))}; VMI ${last.vmi === undefined ? 'absent' : JSON.stringify(status(last.vmi))}; controller ${JSON.stringify(controller.stats)}` },
    );
    return last;
  };

  before(async function () {
    this.timeout(BUILD_TIMEOUT_MS + START_TIMEOUT_MS + 60_000);
    server = await startRealApiServer();
    kc = new KubeConfig();
    kc.loadFromFile(server.kubeconfig);
    dir = mkdtempSync(path.join(tmpdir(), 'vmroll-controller-real-'));
    const core = kc.makeApiClient(CoreV1Api);
    for (const name of ['kubevirt', 'shop', 'jobs', 'lab']) await core.createNamespace({ body: { metadata: { name } } });
    // The KubeVirt CR as an operator installs it: the create drops the status (a status subresource),
    // virt-operator reports the version; the controller under test gives it its phase, as the simulator does.
    await custom().createNamespacedCustomObject({ group: 'kubevirt.io', version: 'v1', plural: 'kubevirts', namespace: 'kubevirt', body: { ...KUBEVIRT, status: undefined } });
    await custom().patchNamespacedCustomObjectStatus(
      { group: 'kubevirt.io', version: 'v1', plural: 'kubevirts', namespace: 'kubevirt', name: 'kubevirt', body: { status: KUBEVIRT['status'] } },
      setHeaderOptions('Content-Type', PatchStrategy.MergePatch),
    );
    controller = new ExternalVirtController({ kubeconfig: { file: server.kubeconfig }, retryMs: 20 });
    await controller.start();
  });

  after(async () => {
    await controller?.close();
    await server?.stop();
    if (dir !== undefined) rmSync(dir, { recursive: true, force: true });
  });

  it('gives the KubeVirt CR its phase, as virt-operator would', async () => {
    let kv: Obj | undefined;
    await until('the KubeVirt CR to be Deployed', async () => {
      kv = (await custom().getNamespacedCustomObject({ group: 'kubevirt.io', version: 'v1', plural: 'kubevirts', namespace: 'kubevirt', name: 'kubevirt' })) as Obj;
      return status(kv)['phase'] === 'Deployed';
    });
    assert.equal(status(kv)['observedKubeVirtVersion'], 'v1.9.0', 'the version the test wrote is kept');
  });

  it('starts a running VM (VMI, start revision, status), hot-plugs a live change, marks a non-live one RestartRequired, stops and deletes', async () => {
    const kube = new KubeCluster({ kubeconfig: { file: server.kubeconfig } });
    try {
      const vm = structuredClone(WEB);
      (vm['metadata'] as Obj)['namespace'] = 'lab';
      const applied = await kube.applyVirtualMachine(vm);
      const uid = String(meta(applied)['uid']);

      const started = await waitFor('the VM to run', 'lab', 'web', (v, i) => i !== undefined && status(v)['printableStatus'] === 'Running' && status(v)['observedGeneration'] === meta(v)['generation']);
      assert.equal(status(started.vm)['ready'], true);
      assert.equal(status(started.vm)['created'], true);
      assert.equal(status(started.vm)['desiredGeneration'], 1);
      assert.equal(condition(started.vm, 'RestartRequired'), undefined);
      const owner = (meta(started.vmi)['ownerReferences'] as Obj[])[0];
      assert.deepEqual({ kind: owner?.['kind'], name: owner?.['name'], uid: owner?.['uid'], controller: owner?.['controller'] }, { kind: 'VirtualMachine', name: 'web', uid, controller: true });
      // The VMI has no status subresource: the status went in with the create.
      assert.equal(status(started.vmi)['phase'], 'Running');
      assert.equal(condition(started.vmi, 'Ready')?.['status'], 'True');
      assert.equal(condition(started.vmi, 'LiveMigratable')?.['status'], 'True');
      assert.equal(status(started.vmi)['virtualMachineRevisionName'], startRevisionName(uid, 1));
      assert.deepEqual(status(started.vmi)['currentCPUTopology'], { sockets: 2, cores: 1, threads: 1 });
      // KubeVirt's CPU hotplug ceiling: four times the sockets (default maxHotplugRatio).
      assert.equal(cpuOf(started.vmi?.['spec'] as Obj)['maxSockets'], 8);
      const revision = await kc.makeApiClient(AppsV1Api).readNamespacedControllerRevision({ namespace: 'lab', name: startRevisionName(uid, 1) });
      assert.equal(revision.revision, 1);
      assert.equal(cpuOf((((revision.data as Obj)['spec'] as Obj)['template'] as Obj)['spec'] as Obj)['sockets'], 2, 'the start revision holds the spec the VMI started from');

      // A live change: more sockets go to the running VMI; the guest has them after a migration.
      const live = structuredClone(vm);
      cpuOf(((live['spec'] as Obj)['template'] as Obj)['spec'] as Obj)['sockets'] = 4;
      await kube.applyVirtualMachine(live);
      const hot = await waitFor('the sockets to be hot-plugged', 'lab', 'web', (v, i) => status(v)['desiredGeneration'] === 2 && cpuOf(i?.['spec'] as Obj)['sockets'] === 4);
      // KubeVirt's syncGenerationInfo: observedGeneration stays at the generation the VMI started from.
      assert.equal(status(hot.vm)['observedGeneration'], 1);
      assert.equal(condition(hot.vm, 'RestartRequired'), undefined);
      assert.equal(condition(hot.vmi, 'HotVCPUChange')?.['status'], 'True');
      assert.equal(meta(hot.vmi)['uid'], meta(started.vmi)['uid'], 'the same VMI, patched');

      // A non-live change (cores): staged, RestartRequired on the VM through the status subresource.
      const staged = structuredClone(live);
      cpuOf(((staged['spec'] as Obj)['template'] as Obj)['spec'] as Obj)['cores'] = 2;
      await kube.applyVirtualMachine(staged);
      const restart = await waitFor('RestartRequired', 'lab', 'web', (v) => status(v)['desiredGeneration'] === 3 && condition(v, 'RestartRequired') !== undefined);
      assert.equal(status(restart.vm)['observedGeneration'], 1);
      assert.equal(condition(restart.vm, 'RestartRequired')?.['message'], 'a non-live-updatable field was changed in the template spec');
      assert.equal(cpuOf(restart.vmi?.['spec'] as Obj)['cores'], 1, 'staged until a restart');
      const managers = (meta(restart.vm)['managedFields'] as Obj[]).map((m) => `${String(m['manager'])}/${String(m['operation'])}/${String(m['subresource'] ?? '')}`);
      assert.ok(managers.includes('vmroll/Apply/'), managers.join(', '));
      assert.ok(managers.some((m) => m.endsWith('/Update/status')), `the status was written through the status subresource: ${managers.join(', ')}`);

      // Halted: the VMI goes, the condition with it.
      const halted = structuredClone(staged);
      (halted['spec'] as Obj)['runStrategy'] = 'Halted';
      await kube.applyVirtualMachine(halted);
      const stopped = await waitFor('the VM to stop', 'lab', 'web', (v, i) => i === undefined && status(v)['printableStatus'] === 'Stopped');
      assert.equal(status(stopped.vm)['ready'], false);
      assert.equal(status(stopped.vm)['created'], false);
      assert.equal(condition(stopped.vm, 'RestartRequired'), undefined);

      // Started again: a new VMI from the current spec, a new start revision, the old one deleted.
      await kube.applyVirtualMachine(staged);
      const again = await waitFor('the VM to run again', 'lab', 'web', (v, i) => i !== undefined && status(v)['observedGeneration'] === 5);
      assert.deepEqual(status(again.vmi)['currentCPUTopology'], { sockets: 4, cores: 2, threads: 1 });
      const revisions = (await kc.makeApiClient(AppsV1Api).listNamespacedControllerRevision({ namespace: 'lab' })).items.map((r) => r.metadata?.name);
      assert.deepEqual(revisions, [startRevisionName(uid, 5)]);

      // No garbage collector runs here: the controller deletes the VMI of a deleted VM.
      await kube.deleteVirtualMachine({ namespace: 'lab', name: 'web' });
      await waitFor('the VMI to go with its VM', 'lab', 'web', (v, i) => v === undefined && i === undefined);
    } finally {
      kube.close();
    }
  });

  it('leaves a VMI that no VM owns alone', async () => {
    const vmi = { apiVersion: 'kubevirt.io/v1', kind: 'VirtualMachineInstance', metadata: { name: 'standalone', namespace: 'lab' }, spec: (((WEB['spec'] as Obj)['template'] as Obj)['spec']) as Obj };
    // Read before the create: the controller may reconcile before the create's answer is back.
    const reconciles = controller.stats.reconciles;
    await custom().createNamespacedCustomObject({ ...VMI, namespace: 'lab', body: vmi });
    await until('the controller to see the VMI', () => controller.stats.reconciles > reconciles && controller.idle);
    assert.ok(await get(VMI, 'lab', 'standalone'), 'still there');
  });

  it('vmroll run --once --kubeconfig gives the same plans as the embedded simulator, RestartRequired where expected', async () => {
    const git = await startGitServer();
    try {
      const repo = await git.createBareRepo('fleet');
      const work = await git.createWorkingClone('fleet');
      for (const f of ['web.yaml', 'db.yaml', 'batch.yaml']) await work.write(`vms/${f}`, readFileSync(path.join(EXAMPLE, f), 'utf8'));
      await work.commit('three VMs');
      await work.push();
      const state = path.join(dir, 'embedded.json');
      const common = ['--repo', repo, '--path', 'vms', '--output', 'json', '--log-level', 'silent'];
      const real = (): Promise<{ code: number; stdout: string; stderr: string }> => vmrollOnce([...common, '--kubeconfig', server.kubeconfig, '--cache-dir', path.join(dir, 'c1')]);
      const embedded = (): Promise<{ code: number; stdout: string; stderr: string }> =>
        vmrollOnce([...common, '--sim-state', state, '--sim-kubevirt', KUBEVIRT_FILE, '--cache-dir', path.join(dir, 'c2')]);

      const r1 = await real();
      const e1 = await embedded();
      assert.equal(r1.code, 0, r1.stderr);
      assert.equal(e1.code, 0, e1.stderr);
      const plan1 = JSON.parse(r1.stdout) as VmPlan;
      assert.deepEqual(plan1.vms.map((v) => `${v.namespace}/${v.name}:${v.action}`), ['jobs/batch:create', 'shop/db:create', 'shop/web:create']);
      assert.deepEqual(comparable(plan1), comparable(JSON.parse(e1.stdout) as VmPlan));
      for (const name of ['web', 'db']) assert.ok(await get(VMI, 'shop', name), `the external controller started shop/${name}`);
      assert.equal(await get(VMI, 'jobs', 'batch'), undefined, 'Halted: no VMI');
      assert.equal(status(await get(VM, 'jobs', 'batch'))['printableStatus'], 'Stopped');
      await until('the controller to be idle', () => controller.idle);

      // One live change (db: more sockets) and one staged (web: sockets and cores, cores is not live).
      await work.write('vms/db.yaml', readFileSync(path.join(EXAMPLE, 'db.yaml'), 'utf8').replace('sockets: 4', 'sockets: 6'));
      await work.write('vms/web.yaml', readFileSync(path.join(EXAMPLE, 'web.yaml'), 'utf8').replace('sockets: 2', 'sockets: 4').replace('cores: 1', 'cores: 2'));
      await work.commit('db: 6 sockets; web: 4 sockets, 2 cores');
      await work.push();
      const r2 = await real();
      const e2 = await embedded();
      assert.equal(r2.code, 0, r2.stderr);
      assert.equal(e2.code, 0, e2.stderr);
      const plan2 = JSON.parse(r2.stdout) as VmPlan;
      const embedded2 = JSON.parse(e2.stdout) as VmPlan;
      assert.deepEqual(comparable(plan2), comparable(embedded2));
      // One order on both, though the real server returns objects with their keys sorted and the
      // simulator as they were sent (the manifest lists sockets before cores).
      const paths = (p: VmPlan): string[] => p.vms.find((v) => v.name === 'web')?.changes.map((c) => c.path.replace('spec.template.spec.domain.cpu.', '')) ?? [];
      assert.deepEqual(paths(plan2), ['cores', 'sockets']);
      assert.deepEqual(paths(embedded2), ['cores', 'sockets']);
      const web = plan2.vms.find((v) => v.name === 'web');
      const db = plan2.vms.find((v) => v.name === 'db');
      assert.equal(web?.restartRequired, true);
      assert.equal(web?.conditionMessage, 'a non-live-updatable field was changed in the template spec');
      assert.equal(db?.restartRequired, false);
      assert.equal(db?.changes.find((c) => c.path === 'spec.template.spec.domain.cpu.sockets')?.rollout, 'live');
      // What the plan says is what the real server holds.
      const webVm = await get(VM, 'shop', 'web');
      assert.equal(condition(webVm, 'RestartRequired')?.['message'], 'a non-live-updatable field was changed in the template spec');
      assert.equal(condition(await get(VM, 'shop', 'db'), 'RestartRequired'), undefined);
      assert.equal(cpuOf((await get(VMI, 'shop', 'db'))?.['spec'] as Obj)['sockets'], 6, 'hot-plugged');
      assert.equal(cpuOf((await get(VMI, 'shop', 'web'))?.['spec'] as Obj)['sockets'], 2, 'staged until a restart');

      // A third run with nothing new: nothing written, the same plans on both.
      const r3 = await real();
      const e3 = await embedded();
      assert.equal(r3.code, 0, r3.stderr);
      assert.deepEqual(comparable(JSON.parse(r3.stdout) as VmPlan), comparable(JSON.parse(e3.stdout) as VmPlan));

      // Settled: reconciling every VM again writes nothing (what the real server stores is what the controller computes).
      await until('the controller to be idle', () => controller.idle);
      const { reconciles, writes } = controller.stats;
      const queued = controller.resync();
      assert.ok(queued >= 3);
      await until('the resync to be done', () => controller.stats.reconciles >= reconciles + queued && controller.idle);
      assert.equal(controller.stats.writes, writes, `no write on a resync (last error: ${controller.stats.lastError ?? 'none'})`);
    } finally {
      await git.stop();
    }
  });
});
