/**
 * The simulator's path from a VMI spec to the guest, on a stepped clock: the VMI conditions
 * KubeVirt sets after a hotplug, LiveMigratable with KubeVirt's reasons, the workload updater
 * under each workloadUpdateMethods setting, the migration controller's phases and limits, a
 * failing migration with KubeVirt's backoff, and an eviction that restarts the VM.
 */
import assert from 'node:assert/strict';
import { ManualClock } from '../reconciler/cluster/sim/clock.ts';
import { volumeStatusOf } from '../reconciler/cluster/sim/migratable.ts';
import { FAIL_MIGRATIONS_ANNOTATION, SIMULATED_FAILURE_REASON, WORKLOAD_UPDATE_ANNOTATION } from '../reconciler/cluster/sim/migrationController.ts';
import { SimCluster } from '../reconciler/cluster/sim/simCluster.ts';
import { EVACUATION_ANNOTATION } from '../reconciler/cluster/sim/workloadUpdater.ts';
import { type Obj, planRollout, resolveWorkloadUpdate, workloadUpdatePath } from '../reconciler/rollout/index.ts';
import { base, mergePatch } from './helpers/cases.ts';

const DURATION_MS = 3_000;

function kubevirt(methods: string[] | null, migrations: Obj = {}, extra: { phase?: string; batchEvictionSize?: number; batchEvictionInterval?: string } = {}): Obj {
  const spec: Obj = { configuration: { developerConfiguration: { featureGates: [] }, migrations } };
  const strategy: Obj = {};
  if (methods !== null) strategy['workloadUpdateMethods'] = methods;
  if (extra.batchEvictionSize !== undefined) strategy['batchEvictionSize'] = extra.batchEvictionSize;
  if (extra.batchEvictionInterval !== undefined) strategy['batchEvictionInterval'] = extra.batchEvictionInterval;
  spec['workloadUpdateStrategy'] = strategy;
  return { apiVersion: 'kubevirt.io/v1', kind: 'KubeVirt', metadata: { name: 'kubevirt', namespace: 'kubevirt' }, spec, status: { phase: extra.phase ?? 'Deployed', observedKubeVirtVersion: 'v1.8.0' } };
}

/** The engine's base VM under another name; `patch` merges into it. */
const vm = (name: string, patch: unknown = {}): Obj => mergePatch(mergePatch(base('vm'), { metadata: { name } }), patch) as Obj;
const sockets = (n: number): Obj => ({ spec: { template: { spec: { domain: { cpu: { sockets: n } } } } } });
/** A host device makes a VMI non-migratable (HostDeviceNotLiveMigratable). */
const withGpu = { spec: { template: { spec: { domain: { devices: { hostDevices: [{ name: 'gpu0', deviceName: 'nvidia.com/GP102GL' }] } } } } } };

function sim(kv: Obj, options: { nodes?: string[] } = {}): { cluster: SimCluster; clock: ManualClock } {
  const clock = new ManualClock('2026-11-30T09:00:00Z');
  const cluster = new SimCluster({ kubevirt: kv, clock, migrationDurationMs: DURATION_MS, ...(options.nodes !== undefined ? { nodes: options.nodes } : {}) });
  return { cluster, clock };
}

const vmiOf = (c: SimCluster, name: string): Obj => {
  const v = c.store.get('VirtualMachineInstance', 'default', name);
  assert.ok(v, `VMI ${name} runs`);
  return v;
};
const status = (o: Obj): Obj => (o['status'] ?? {}) as Obj;
const cond = (o: Obj, type: string): Obj | undefined => ((status(o)['conditions'] ?? []) as Obj[]).find((c) => c['type'] === type);
const uid = (o: Obj): string => String((o['metadata'] as Obj)['uid']);
const specSockets = (vmi: Obj): unknown => ((((vmi['spec'] as Obj)['domain'] as Obj)['cpu']) as Obj)['sockets'];
const guestSockets = (vmi: Obj): unknown => (status(vmi)['currentCPUTopology'] as Obj)['sockets'];
const phases = (c: SimCluster, name?: string): string[] => c.listMigrations('default', name).map((m) => String(status(m)['phase']));
const restartRequired = (c: SimCluster, name: string): Obj | undefined => cond(c.store.get('VirtualMachine', 'default', name) ?? {}, 'RestartRequired');

/**
 * Starts `name` (migratable, or with a GPU), lets it settle, then raises its sockets from 2 to 3
 * (and, before the controllers run, applies `staged` on top); returns the first VMI's uid.
 */
async function startAndRaise(c: SimCluster, clock: ManualClock, name: string, migratable: boolean, options: { initial?: unknown; staged?: unknown } = {}): Promise<string> {
  const initial = migratable ? (options.initial ?? {}) : mergePatch(withGpu, options.initial ?? {});
  await c.applyVirtualMachine(vm(name, initial));
  clock.advance(0);
  const before = uid(vmiOf(c, name));
  await c.applyVirtualMachine(vm(name, mergePatch(initial, sockets(3))));
  if (options.staged !== undefined) await c.applyVirtualMachine(vm(name, mergePatch(mergePatch(initial, sockets(3)), options.staged)));
  clock.advance(0);
  return before;
}

describe('simulator: from the VMI spec to the guest', () => {
  describe('VMI conditions', () => {
    it('reports LiveMigratable with KubeVirt\'s reasons and messages', async () => {
      const { cluster, clock } = sim(kubevirt(null));
      await cluster.applyVirtualMachine(vm('plain'));
      await cluster.applyVirtualMachine(vm('gpu', withGpu));
      await cluster.applyVirtualMachine(vm('bridged', { spec: { template: { spec: { domain: { devices: { interfaces: [{ name: 'default', bridge: {} }, { name: 'net1', bridge: {} }] } } } } } }));
      clock.advance(0);
      assert.deepEqual(cond(vmiOf(cluster, 'plain'), 'LiveMigratable')?.['status'], 'True');
      assert.deepEqual(
        [cond(vmiOf(cluster, 'gpu'), 'LiveMigratable')?.['status'], cond(vmiOf(cluster, 'gpu'), 'LiveMigratable')?.['reason'], cond(vmiOf(cluster, 'gpu'), 'LiveMigratable')?.['message']],
        ['False', 'HostDeviceNotLiveMigratable', 'VMI uses a PCI host devices'],
      );
      assert.equal(cond(vmiOf(cluster, 'bridged'), 'LiveMigratable')?.['reason'], 'InterfaceNotLiveMigratable');

      // A ReadWriteOnce claim: virt-handler's volume check fails first.
      cluster.createObject({ apiVersion: 'v1', kind: 'PersistentVolumeClaim', metadata: { name: 'iso-fedora', namespace: 'default' }, spec: { accessModes: ['ReadWriteOnce'] } });
      clock.advance(0);
      const plain = vmiOf(cluster, 'plain');
      assert.equal(cond(plain, 'LiveMigratable')?.['status'], 'False');
      assert.equal(cond(plain, 'LiveMigratable')?.['reason'], 'DisksNotLiveMigratable');
      assert.equal(cond(plain, 'LiveMigratable')?.['message'], 'cannot migrate VMI: PVC iso-fedora is not shared, live migration requires that all PVCs must be shared (using ReadWriteMany access mode)');
      assert.deepEqual(((status(plain)['volumeStatus'] as Obj[])[0] as Obj)['persistentVolumeClaimInfo'], { claimName: 'iso-fedora', accessModes: ['ReadWriteOnce'] });
      // And a VM started now gets it at once.
      await cluster.applyVirtualMachine(vm('later'));
      assert.equal(cond(vmiOf(cluster, 'later'), 'LiveMigratable')?.['reason'], 'DisksNotLiveMigratable');
      cluster.close();
    });

    it('sets HotVCPUChange and HotMemoryChange; the guest values stay until a migration', async () => {
      const { cluster, clock } = sim(kubevirt([]));
      await cluster.applyVirtualMachine(vm('web'));
      clock.advance(0);
      const started = vmiOf(cluster, 'web');
      assert.deepEqual(status(started)['currentCPUTopology'], { sockets: 2, cores: 1, threads: 1 }, 'a fresh start runs the spec');
      assert.equal(cond(started, 'HotVCPUChange'), undefined);
      await cluster.applyVirtualMachine(vm('web', { spec: { template: { spec: { domain: { cpu: { sockets: 3 }, memory: { guest: '3Gi' } } } } } }));
      clock.advance(60_000);
      const vmi = vmiOf(cluster, 'web');
      assert.equal(specSockets(vmi), 3, 'the VM controller patched the VMI spec');
      assert.equal(cond(vmi, 'HotVCPUChange')?.['status'], 'True');
      assert.equal(cond(vmi, 'HotMemoryChange')?.['status'], 'True');
      assert.equal(guestSockets(vmi), 2, 'the guest still runs 2 sockets');
      assert.equal((status(vmi)['memory'] as Obj)['guestCurrent'], '2Gi');
      assert.equal(restartRequired(cluster, 'web'), undefined);
      cluster.close();
    });

    it('sets MigrationRequired (AutoMigrationDueToLiveUpdate) after a NAD reference change', async () => {
      // v1.9 applies a NAD reference change to the VMI without a feature gate.
      const kv = kubevirt([]);
      (kv['status'] as Obj)['observedKubeVirtVersion'] = 'v1.9.0';
      const { cluster, clock } = sim(kv);
      await cluster.applyVirtualMachine(vm('web'));
      await cluster.applyVirtualMachine(vm('web', { spec: { template: { spec: { networks: [{ name: 'default', pod: {} }, { name: 'net1', multus: { networkName: 'nad-b' } }] } } } }));
      clock.advance(0);
      const vmi = vmiOf(cluster, 'web');
      const nets = ((vmi['spec'] as Obj)['networks'] as Obj[]).map((n) => ((n['multus'] ?? {}) as Obj)['networkName']);
      assert.deepEqual(nets, [undefined, 'nad-b'], 'the NAD reference reached the VMI spec');
      assert.deepEqual([cond(vmi, 'MigrationRequired')?.['status'], cond(vmi, 'MigrationRequired')?.['reason']], ['True', 'AutoMigrationDueToLiveUpdate']);
      cluster.close();
    });

    it('sets MigrationRequired when an SR-IOV interface is hot-plugged, and a migration gives it to the guest, as the engine predicts', async () => {
      const kv = kubevirt(['LiveMigrate']);
      (kv['status'] as Obj)['observedKubeVirtVersion'] = 'v1.9.0';
      const { cluster, clock } = sim(kv);
      const pod = { spec: { template: { spec: { domain: { devices: { interfaces: [{ name: 'default', masquerade: {} }] } }, networks: [{ name: 'default', pod: {} }] } } } };
      await cluster.applyVirtualMachine(vm('web', pod));
      clock.advance(0);
      const plugged = mergePatch(pod, {
        spec: { template: { spec: { domain: { devices: { interfaces: [{ name: 'default', masquerade: {} }, { name: 'sriov1', sriov: {} }] } }, networks: [{ name: 'default', pod: {} }, { name: 'sriov1', multus: { networkName: 'sriov-net' } }] } } },
      });
      const desired = vm('web', plugged);
      const stored = cluster.store.get('VirtualMachine', 'default', 'web') as Obj;
      const predicted = planRollout({ desired, baseline: cluster.controller.baseline(stored), vmi: vmiOf(cluster, 'web'), kubevirt: kv, conditions: [], instancetypes: [] }).plan;
      assert.deepEqual(
        predicted.changes.map((c) => `${c.path} ${c.rollout} ${c.reachesGuest} ${c.migration?.trigger}`),
        ['spec.template.spec.domain.devices.interfaces[name=sriov1] live liveMigration MigrationRequired', 'spec.template.spec.networks[name=sriov1] live liveMigration MigrationRequired'],
      );
      await cluster.applyVirtualMachine(desired);
      let sawCondition = false;
      const stop = cluster.store.watch((e) => {
        if (e.kind === 'VirtualMachineInstance' && cond(e.object, 'MigrationRequired')?.['status'] === 'True') sawCondition = true;
      });
      clock.advance(0);
      clock.advance(DURATION_MS);
      stop();
      assert.ok(sawCondition, 'MigrationRequired=True was set');
      assert.deepEqual(phases(cluster, 'web'), ['Succeeded'], 'the workload updater migrated the VMI');
      assert.equal(cond(vmiOf(cluster, 'web'), 'MigrationRequired'), undefined, 'the migration cleared it');
      cluster.close();
    });
  });

  describe('VMI volumeStatus', () => {
    // KubeVirt's VMI CRD requires `target` on every entry (a real API server refuses a VMI without it).
    it('names each claim\'s disk as virt-launcher does: vd/sd by bus (amd64 default SATA), first free letter in disk order, a known target kept', () => {
      const disks = [
        { name: 'root', disk: { bus: 'virtio' } },
        { name: 'iso', cdrom: {} },
        { name: 'data', disk: { bus: 'virtio' } },
        { name: 'logs', lun: { bus: 'scsi' } },
      ];
      const volumes = [
        { name: 'root', containerDisk: { image: 'x' } },
        { name: 'iso', persistentVolumeClaim: { claimName: 'iso-pvc' } },
        { name: 'data', dataVolume: { name: 'data-dv' } },
        { name: 'logs', persistentVolumeClaim: { claimName: 'logs-pvc' } },
      ];
      const vmi: Obj = { spec: { domain: { devices: { disks } }, volumes } };
      const claims = (): readonly string[] => ['ReadWriteMany'];
      const targets = (v: Obj): string[] => volumeStatusOf(v, 'default', claims).map((s) => `${String(s['name'])}=${String(s['target'])}`);
      assert.deepEqual(targets(vmi), ['iso=sda', 'data=vdb', 'logs=sdb']);
      // A target the VMI already reports stays, and no other disk takes it.
      assert.deepEqual(targets({ ...vmi, status: { volumeStatus: [{ name: 'data', target: 'vda' }] } }), ['iso=sda', 'data=vda', 'logs=sdb']);
    });
  });

  describe('the workload updater: workloadUpdateMethods × migratable × a socket increase', () => {
    for (const migratable of [true, false]) {
      const kind = migratable ? 'a migratable VMI' : 'a non-migratable VMI';

      it(`[]: nothing happens to ${kind}; the change stays in the VMI spec`, async () => {
        const { cluster, clock } = sim(kubevirt([]));
        const before = await startAndRaise(cluster, clock, 'web', migratable);
        clock.advance(10 * 60_000);
        const vmi = vmiOf(cluster, 'web');
        assert.equal(uid(vmi), before, 'the same VMI runs');
        assert.equal(specSockets(vmi), 3);
        assert.equal(guestSockets(vmi), 2);
        assert.equal(cond(vmi, 'HotVCPUChange')?.['status'], 'True');
        assert.deepEqual(cluster.listMigrations(), []);
        assert.equal(status(cluster.store.get('KubeVirt', 'kubevirt', 'kubevirt') ?? {})['outdatedVirtualMachineInstanceWorkloads'], 1);
        cluster.close();
      });

      it(`[LiveMigrate]: ${migratable ? 'a migration carries the sockets to the guest' : 'nothing happens to a non-migratable VMI'}`, async () => {
        const { cluster, clock } = sim(kubevirt(['LiveMigrate']));
        const before = await startAndRaise(cluster, clock, 'web', migratable);
        if (!migratable) {
          clock.advance(10 * 60_000);
          assert.deepEqual(cluster.listMigrations(), []);
          assert.equal(uid(vmiOf(cluster, 'web')), before);
          assert.equal(cond(vmiOf(cluster, 'web'), 'HotVCPUChange')?.['status'], 'True');
          assert.equal(guestSockets(vmiOf(cluster, 'web')), 2);
          cluster.close();
          return;
        }
        const [m] = cluster.listMigrations();
        assert.ok(m, 'the updater created a migration');
        const meta = m['metadata'] as Obj;
        assert.match(String(meta['name']), /^kubevirt-workload-update-/);
        assert.equal(meta['generateName'], 'kubevirt-workload-update-');
        assert.equal((meta['annotations'] as Obj)[WORKLOAD_UPDATE_ANNOTATION], '');
        assert.equal((meta['labels'] as Obj)['kubevirt.io/vmi-name'], 'web');
        assert.deepEqual(m['spec'], { vmiName: 'web' });
        const sourceNode = status(vmiOf(cluster, 'web'))['nodeName'];
        assert.deepEqual(phases(cluster), ['Scheduling']);
        clock.advance(DURATION_MS / 3);
        assert.deepEqual(phases(cluster), ['TargetReady']);
        clock.advance(DURATION_MS / 3);
        assert.deepEqual(phases(cluster), ['Running']);
        const migrating = status(vmiOf(cluster, 'web'))['migrationState'] as Obj;
        assert.ok(migrating['startTimestamp'] && migrating['endTimestamp'] === undefined, 'the VMI is migrating');
        assert.equal(guestSockets(vmiOf(cluster, 'web')), 2, 'not yet in the guest');
        clock.advance(DURATION_MS / 3);
        const done = cluster.listMigrations()[0] as Obj;
        assert.equal(status(done)['phase'], 'Succeeded');
        assert.deepEqual(
          (status(done)['phaseTransitionTimestamps'] as Obj[]).map((t) => t['phase']),
          ['Pending', 'Scheduling', 'Scheduled', 'PreparingTarget', 'TargetReady', 'Running', 'Succeeded'],
        );
        const vmi = vmiOf(cluster, 'web');
        assert.equal(uid(vmi), before, 'a live migration keeps the VMI');
        assert.equal(guestSockets(vmi), 3, 'the guest runs 3 sockets');
        assert.equal(cond(vmi, 'HotVCPUChange'), undefined);
        const state = status(vmi)['migrationState'] as Obj;
        assert.equal(state['completed'], true);
        assert.equal(state['failed'], undefined);
        assert.equal(state['migrationUid'], uid(done));
        assert.notEqual(status(vmi)['nodeName'], sourceNode, 'the VMI moved to another node');
        assert.equal(status(vmi)['nodeName'], state['targetNode']);
        clock.advance(10 * 60_000);
        assert.equal(cluster.listMigrations().length, 1, 'no further migration');
        cluster.close();
      });

      it(`[Evict]: ${kind} is evicted and its VM restarts from the current spec`, async () => {
        const { cluster, clock } = sim(kubevirt(['Evict']));
        // A staged change (cores) waits for the restart alongside the hot-plugged sockets.
        const before = await startAndRaise(cluster, clock, 'web', migratable, { staged: { spec: { template: { spec: { domain: { cpu: { cores: 2 } } } } } } });
        clock.advance(0);
        const vmi = vmiOf(cluster, 'web');
        assert.notEqual(uid(vmi), before, 'a new VMI');
        assert.deepEqual(status(vmi)['currentCPUTopology'], { sockets: 3, cores: 2, threads: 1 }, 'staged and hot-plugged changes both run');
        assert.equal(cond(vmi, 'HotVCPUChange'), undefined);
        assert.equal(restartRequired(cluster, 'web'), undefined, 'the restart cleared RestartRequired');
        assert.deepEqual(cluster.listMigrations(), [], 'no migration');
        cluster.close();
      });
    }

    it('[LiveMigrate, Evict]: migratable VMIs migrate, the others are evicted', async () => {
      const { cluster, clock } = sim(kubevirt(['LiveMigrate', 'Evict']));
      const a = await startAndRaise(cluster, clock, 'a', true);
      const b = await startAndRaise(cluster, clock, 'b', false);
      clock.advance(DURATION_MS);
      assert.equal(uid(vmiOf(cluster, 'a')), a);
      assert.deepEqual(phases(cluster, 'a'), ['Succeeded']);
      assert.notEqual(uid(vmiOf(cluster, 'b')), b);
      assert.deepEqual(phases(cluster, 'b'), []);
      cluster.close();
    });

    // The eviction goes through KubeVirt's pod eviction webhook, which follows the evictionStrategy;
    // each row also holds the engine's prediction (workloadUpdatePath) to what the simulator did.
    const EVICTION_ROWS: Array<{ strategy: string; where: 'vmi' | 'cluster'; migratable: boolean; outcome: 'evacuated' | 'evicted' | 'untouched' }> = [
      { strategy: 'None', where: 'cluster', migratable: true, outcome: 'evicted' },
      { strategy: 'LiveMigrate', where: 'cluster', migratable: true, outcome: 'evacuated' },
      { strategy: 'LiveMigrate', where: 'vmi', migratable: true, outcome: 'evacuated' },
      { strategy: 'LiveMigrate', where: 'vmi', migratable: false, outcome: 'untouched' },
      { strategy: 'LiveMigrateIfPossible', where: 'cluster', migratable: true, outcome: 'evacuated' },
      { strategy: 'LiveMigrateIfPossible', where: 'cluster', migratable: false, outcome: 'evicted' },
      { strategy: 'External', where: 'vmi', migratable: true, outcome: 'untouched' },
    ];
    for (const row of EVICTION_ROWS) {
      it(`[Evict] with evictionStrategy ${row.strategy} on the ${row.where}, ${row.migratable ? 'migratable' : 'not migratable'}: ${row.outcome}, as the engine predicts`, async () => {
        const kv = kubevirt(['Evict']);
        if (row.where === 'cluster') (((kv['spec'] as Obj)['configuration'] as Obj)['evictionStrategy'] = row.strategy);
        const { cluster, clock } = sim(kv);
        const initial = row.where === 'vmi' ? { spec: { template: { spec: { evictionStrategy: row.strategy } } } } : {};
        // The VMI as the engine would see it right after the patch, before the updater acts.
        let patched: Obj | undefined;
        const stop = cluster.store.watch((e) => {
          if (e.kind === 'VirtualMachineInstance' && patched === undefined && cond(e.object, 'HotVCPUChange') !== undefined) patched = structuredClone(e.object);
        });
        const before = await startAndRaise(cluster, clock, 'web', row.migratable, { initial });
        clock.advance(DURATION_MS);
        stop();
        assert.ok(patched, 'HotVCPUChange was set');
        const predicted = workloadUpdatePath(patched, cluster.store.get('VirtualMachine', 'default', 'web') ?? null, resolveWorkloadUpdate(kv), []);
        const vmi = vmiOf(cluster, 'web');
        const migrations = cluster.listMigrations('default', 'web');
        switch (row.outcome) {
          case 'evacuated': {
            assert.equal(uid(vmi), before, 'the same VMI, migrated');
            assert.deepEqual(phases(cluster, 'web'), ['Succeeded']);
            const m = migrations[0] as Obj;
            assert.match(String((m['metadata'] as Obj)['name']), /^kubevirt-evacuation-/);
            assert.equal(((m['metadata'] as Obj)['annotations'] as Obj)[EVACUATION_ANNOTATION], status(patched)['nodeName']);
            assert.equal(guestSockets(vmi), 3);
            assert.equal(predicted.via, 'liveMigration');
            break;
          }
          case 'evicted':
            assert.notEqual(uid(vmi), before, 'a new VMI');
            assert.deepEqual(migrations, []);
            assert.equal(guestSockets(vmi), 3);
            assert.equal(predicted.via, 'eviction');
            break;
          case 'untouched':
            assert.equal(uid(vmi), before);
            assert.deepEqual(migrations, []);
            assert.equal(guestSockets(vmi), 2, 'the guest keeps its sockets');
            assert.ok(cond(vmi, 'HotVCPUChange'), 'HotVCPUChange stays');
            assert.equal(predicted.via, 'none');
            break;
        }
        cluster.close();
      });
    }

    it('does nothing while the KubeVirt CR is not Deployed, and resumes when it is', async () => {
      const { cluster, clock } = sim(kubevirt(['LiveMigrate'], {}, { phase: 'Deploying' }));
      await startAndRaise(cluster, clock, 'web', true);
      clock.advance(60_000);
      assert.deepEqual(cluster.listMigrations(), []);
      cluster.setKubeVirt(kubevirt(['LiveMigrate']));
      clock.advance(0);
      assert.deepEqual(phases(cluster), ['Scheduling']);
      cluster.close();
    });

    it('evicts in batches of batchEvictionSize every batchEvictionInterval', async () => {
      const { cluster, clock } = sim(kubevirt(['Evict'], {}, { phase: 'Deploying', batchEvictionSize: 2, batchEvictionInterval: '1m0s' }));
      const uids = new Map<string, string>();
      for (const n of ['a', 'b', 'c', 'd', 'e']) uids.set(n, await startAndRaise(cluster, clock, n, true));
      // Deployed now: the first batch goes at once.
      const deployed = kubevirt(['Evict'], {}, { batchEvictionSize: 2, batchEvictionInterval: '1m0s' });
      cluster.setKubeVirt(deployed);
      const restarted = (): number => [...uids].filter(([n, u]) => uid(vmiOf(cluster, n)) !== u).length;
      clock.advance(0);
      assert.equal(restarted(), 2);
      clock.advance(59_000);
      assert.equal(restarted(), 2, 'the next batch waits for the interval');
      clock.advance(2_000);
      assert.equal(restarted(), 4);
      clock.advance(61_000);
      assert.equal(restarted(), 5);
      cluster.close();
    });
  });

  // updateVolumesStrategy: Migration (GA in v1.8.0, no gates needed): KubeVirt's VM controller
  // records the swap in status.migratedVolumes and patches the VMI's volumes, its VMI controller
  // sets VolumesChange, the workload updater migrates, virt-handler on the target drops both.
  describe('a claim swap under updateVolumesStrategy: Migration', () => {
    const DISKS = [{ name: 'rootdisk', disk: { bus: 'virtio' } }, { name: 'cloudinit', disk: { bus: 'virtio' } }, { name: 'cdrom', cdrom: { bus: 'sata' } }, { name: 'data', disk: { bus: 'virtio' } }];
    const withClaim = (claim: string): Obj => ({
      spec: {
        updateVolumesStrategy: 'Migration',
        template: {
          spec: {
            domain: { devices: { disks: DISKS } },
            volumes: [
              { name: 'rootdisk', containerDisk: { image: 'quay.io/containerdisks/fedora:40' } },
              { name: 'cloudinit', cloudInitNoCloud: { userData: '#cloud-config\n' } },
              { name: 'cdrom', persistentVolumeClaim: { claimName: 'iso-fedora', hotpluggable: true } },
              { name: 'data', persistentVolumeClaim: { claimName: claim } },
            ],
          },
        },
      },
    });
    const pvc = (name: string, mode: string): Obj => ({ apiVersion: 'v1', kind: 'PersistentVolumeClaim', metadata: { name, namespace: 'default' }, spec: { accessModes: [mode], volumeMode: 'Block' } });
    const claimStatus = (vmi: Obj, volume: string): unknown => (((status(vmi)['volumeStatus'] ?? []) as Obj[]).find((v) => v['name'] === volume)?.['persistentVolumeClaimInfo'] as Obj | undefined)?.['claimName'];
    const claimInSpec = (vmi: Obj, volume: string): unknown => ((((vmi['spec'] as Obj)['volumes'] as Obj[]).find((v) => v['name'] === volume) ?? {})['persistentVolumeClaim'] as Obj | undefined)?.['claimName'];

    /** Starts `web` on data-old (shared), swaps to data-new (ReadWriteOnce); returns the VMI before the swap and the engine's plan for it. */
    async function swap(cluster: SimCluster, clock: ManualClock, kv: Obj): Promise<{ before: Obj; plan: ReturnType<typeof planRollout>['plan'] }> {
      cluster.createObject(pvc('data-old', 'ReadWriteMany'));
      cluster.createObject(pvc('data-new', 'ReadWriteOnce'));
      await cluster.applyVirtualMachine(vm('web', withClaim('data-old')));
      clock.advance(0);
      const before = structuredClone(vmiOf(cluster, 'web'));
      assert.equal(cond(before, 'LiveMigratable')?.['status'], 'True');
      const desired = vm('web', withClaim('data-new'));
      const stored = cluster.store.get('VirtualMachine', 'default', 'web') as Obj;
      const { plan } = planRollout({ desired, baseline: cluster.controller.baseline(stored), vmi: before, kubevirt: kv, conditions: [], instancetypes: [] });
      await cluster.applyVirtualMachine(desired);
      return { before, plan };
    }

    it('[LiveMigrate]: VolumesChange and migratedVolumes, a migration although the new claim makes the VMI non-migratable, then the new claim, as the engine predicts', async () => {
      const kv = kubevirt(['LiveMigrate']);
      const { cluster, clock } = sim(kv);
      let patched: Obj | undefined;
      const stop = cluster.store.watch((e) => {
        if (e.kind === 'VirtualMachineInstance' && patched === undefined && cond(e.object, 'VolumesChange') !== undefined) patched = structuredClone(e.object);
      });
      const { before, plan } = await swap(cluster, clock, kv);
      // The engine: a live change that reaches the guest through a storage migration.
      assert.deepEqual(
        plan.changes.map((c) => `${c.path} ${c.rollout} ${c.reachesGuest} ${c.migration?.trigger}`),
        ['spec.template.spec.volumes[name=data].persistentVolumeClaim.claimName live liveMigration VolumesChange'],
      );
      assert.equal(plan.disruption?.kind, 'migration');
      assert.match(plan.disruption?.summary ?? '', /volume update \(storage migration\) via live migration/);
      clock.advance(0);
      stop();
      assert.ok(patched, 'VolumesChange was set');
      assert.equal(cond(patched, 'VolumesChange')?.['status'], 'True');
      assert.equal(cond(patched, 'VolumesChange')?.['message'], 'migrate volumes');
      assert.deepEqual(status(patched)['migratedVolumes'], [{ volumeName: 'data', destinationPVCInfo: { claimName: 'data-new', volumeMode: 'Block' }, sourcePVCInfo: { claimName: 'data-old', volumeMode: 'Block' } }]);
      assert.equal(claimInSpec(patched, 'data'), 'data-new', 'the VM controller patched the VMI volumes');
      // The sim's VMI right after the patch, as the engine's workloadUpdatePath reads it.
      const vmi = vmiOf(cluster, 'web');
      assert.equal(cond(vmi, 'LiveMigratable')?.['status'], 'False', 'a ReadWriteOnce claim: not migratable otherwise');
      assert.equal(cond(vmi, 'LiveMigratable')?.['reason'], 'DisksNotLiveMigratable');
      assert.equal(cond(vmi, 'StorageLiveMigratable')?.['status'], 'True');
      assert.equal(workloadUpdatePath(vmi, cluster.store.get('VirtualMachine', 'default', 'web') ?? null, resolveWorkloadUpdate(kv), [], true).via, 'liveMigration');
      assert.equal(restartRequired(cluster, 'web'), undefined, 'no RestartRequired');
      const [m] = cluster.listMigrations('default', 'web');
      assert.ok(m, 'the workload updater created a migration');
      assert.match(String((m['metadata'] as Obj)['name']), /^kubevirt-workload-update-/);
      clock.advance((2 * DURATION_MS) / 3);
      assert.deepEqual(phases(cluster, 'web'), ['Running']);
      assert.equal(cond(vmiOf(cluster, 'web'), 'VolumesChange')?.['status'], 'True', 'still copying');
      clock.advance(DURATION_MS / 3);
      assert.deepEqual(phases(cluster, 'web'), ['Succeeded']);
      const after = vmiOf(cluster, 'web');
      assert.equal(uid(after), uid(before), 'the same VMI, migrated');
      assert.notEqual(status(after)['nodeName'], status(before)['nodeName']);
      assert.equal(cond(after, 'VolumesChange'), undefined, 'the condition is removed');
      assert.equal(status(after)['migratedVolumes'], undefined, 'migratedVolumes are cleared');
      assert.equal(claimInSpec(after, 'data'), 'data-new');
      assert.equal(claimStatus(after, 'data'), 'data-new', 'the volume status shows the new claim');
      clock.advance(10 * 60_000);
      assert.equal(cluster.listMigrations('default', 'web').length, 1, 'no further migration');
      cluster.close();
    });

    it('[]: nothing migrates, VolumesChange stays True and migratedVolumes stay, as the engine predicts', async () => {
      const kv = kubevirt([]);
      const { cluster, clock } = sim(kv);
      const { before, plan } = await swap(cluster, clock, kv);
      assert.deepEqual(
        plan.changes.map((c) => `${c.path} ${c.reachesGuest} ${c.migration?.trigger} ${c.migration?.blockedBy}`),
        ['spec.template.spec.volumes[name=data].persistentVolumeClaim.claimName awaitingRestart VolumesChange noLiveMigrateMethod'],
      );
      clock.advance(10 * 60_000);
      const vmi = vmiOf(cluster, 'web');
      assert.equal(uid(vmi), uid(before));
      assert.deepEqual(cluster.listMigrations(), []);
      assert.equal(cond(vmi, 'VolumesChange')?.['status'], 'True');
      assert.equal(((status(vmi)['migratedVolumes'] ?? []) as Obj[]).map((v) => v['volumeName']).join(), 'data');
      assert.equal(status(cluster.store.get('KubeVirt', 'kubevirt', 'kubevirt') ?? {})['outdatedVirtualMachineInstanceWorkloads'], 1);
      cluster.close();
    });

    it('[LiveMigrate] with a failing migration: VolumesChange stays until a retry succeeds', async () => {
      const kv = kubevirt(['LiveMigrate']);
      const { cluster, clock } = sim(kv);
      await swap(cluster, clock, kv);
      clock.advance(0);
      const fresh = cluster.store.get('VirtualMachineInstance', 'default', 'web') as Obj;
      cluster.store.replace({ ...fresh, metadata: { ...(fresh['metadata'] as Obj), annotations: { ...(((fresh['metadata'] as Obj)['annotations'] ?? {}) as Obj), [FAIL_MIGRATIONS_ANNOTATION]: 'true' } } });
      clock.advance(DURATION_MS);
      assert.deepEqual(phases(cluster, 'web'), ['Failed', 'Pending'], 'the updater asks again; the retry waits out the backoff');
      const vmi = vmiOf(cluster, 'web');
      assert.equal(cond(vmi, 'VolumesChange')?.['status'], 'True', 'a failed migration leaves the storage migration pending');
      assert.equal(((status(vmi)['migratedVolumes'] ?? []) as Obj[]).length, 1);
      const again = cluster.store.get('VirtualMachineInstance', 'default', 'web') as Obj;
      const annotations = { ...(((again['metadata'] as Obj)['annotations'] ?? {}) as Obj) };
      delete annotations[FAIL_MIGRATIONS_ANNOTATION];
      cluster.store.replace({ ...again, metadata: { ...(again['metadata'] as Obj), annotations } });
      // KubeVirt's backoff after one failure is 20 s; then the retry runs.
      clock.advance(20_000);
      clock.advance(DURATION_MS);
      assert.deepEqual(phases(cluster, 'web'), ['Failed', 'Succeeded']);
      assert.equal(cond(vmiOf(cluster, 'web'), 'VolumesChange'), undefined);
      cluster.close();
    });
  });

  describe('the migration controller', () => {
    it('keeps to parallelMigrationsPerCluster', async () => {
      const { cluster, clock } = sim(kubevirt(['LiveMigrate'], { parallelMigrationsPerCluster: 1 }));
      for (const n of ['a', 'b', 'c']) await startAndRaise(cluster, clock, n, true);
      const seen: number[] = [];
      for (let t = 0; t < 12; t++) {
        const running = cluster.listMigrations().filter((m) => !['Pending', 'Succeeded', 'Failed'].includes(String(status(m)['phase']))).length;
        seen.push(running);
        clock.advance(DURATION_MS / 3);
      }
      assert.ok(Math.max(...seen) === 1, `never more than one at a time: ${seen.join(',')}`);
      assert.deepEqual(['a', 'b', 'c'].map((n) => guestSockets(vmiOf(cluster, n))), [3, 3, 3], 'all three migrated in turn');
      assert.deepEqual(cluster.listMigrations().map((m) => status(m)['phase']), ['Succeeded', 'Succeeded', 'Succeeded']);
      cluster.close();
    });

    it('keeps to parallelOutboundMigrationsPerNode: later migrations wait Pending', async () => {
      const { cluster, clock } = sim(kubevirt(['LiveMigrate'], { parallelOutboundMigrationsPerNode: 1 }), { nodes: ['node01', 'node02'] });
      for (const n of ['a', 'b', 'c', 'd']) await cluster.applyVirtualMachine(vm(n));
      clock.advance(0);
      assert.deepEqual(['a', 'b', 'c', 'd'].map((n) => status(vmiOf(cluster, n))['nodeName']), ['node01', 'node02', 'node01', 'node02'], 'spread over both nodes');
      for (const n of ['a', 'b', 'c', 'd']) await cluster.applyVirtualMachine(vm(n, sockets(3)));
      clock.advance(0);
      assert.deepEqual(['a', 'b', 'c', 'd'].map((n) => phases(cluster, n)[0]), ['Scheduling', 'Scheduling', 'Pending', 'Pending'], 'one outbound migration per node');
      clock.advance(DURATION_MS);
      assert.deepEqual(['a', 'b', 'c', 'd'].map((n) => phases(cluster, n)[0]), ['Succeeded', 'Succeeded', 'Scheduling', 'Scheduling']);
      clock.advance(DURATION_MS);
      assert.deepEqual(['a', 'b', 'c', 'd'].map((n) => guestSockets(vmiOf(cluster, n))), [3, 3, 3, 3]);
      cluster.close();
    });

    it('fails the migrations of an annotated VM, retries after KubeVirt\'s backoff, and succeeds once allowed', async () => {
      const { cluster, clock } = sim(kubevirt(['LiveMigrate']));
      await startAndRaise(cluster, clock, 'web', true, { initial: { metadata: { annotations: { [FAIL_MIGRATIONS_ANNOTATION]: 'true' } } } });
      clock.advance(DURATION_MS);
      const [failed, retry] = cluster.listMigrations();
      assert.ok(failed && retry, 'a failed migration and a new one');
      assert.equal(status(failed)['phase'], 'Failed');
      assert.equal((status(failed)['migrationState'] as Obj)['failureReason'], SIMULATED_FAILURE_REASON);
      const vmi = vmiOf(cluster, 'web');
      const state = status(vmi)['migrationState'] as Obj;
      assert.deepEqual([state['completed'], state['failed'], state['failureReason']], [true, true, SIMULATED_FAILURE_REASON]);
      assert.equal(cond(vmi, 'HotVCPUChange')?.['status'], 'True', 'the change still waits');
      assert.equal(guestSockets(vmi), 2);
      assert.equal(status(retry)['phase'], 'Pending', 'the retry waits out the backoff');
      clock.advance(19_000);
      assert.equal(status(cluster.listMigrations()[1] ?? {})['phase'], 'Pending');
      // Allowed again (the annotation is on the VM object, not its template: no restart needed).
      const current = cluster.store.get('VirtualMachine', 'default', 'web') as Obj;
      delete ((current['metadata'] as Obj)['annotations'] as Obj)[FAIL_MIGRATIONS_ANNOTATION];
      cluster.store.update(current);
      clock.advance(1_000 + DURATION_MS);
      assert.equal(status(cluster.listMigrations()[1] ?? {})['phase'], 'Succeeded');
      assert.equal(guestSockets(vmiOf(cluster, 'web')), 3);
      cluster.close();
    });

    it('a migration also carries guest memory (HotMemoryChange) and a NAD change (MigrationRequired)', async () => {
      const kv = kubevirt(['LiveMigrate']);
      (kv['status'] as Obj)['observedKubeVirtVersion'] = 'v1.9.0';
      const { cluster, clock } = sim(kv);
      await cluster.applyVirtualMachine(vm('web'));
      clock.advance(0);
      await cluster.applyVirtualMachine(vm('web', { spec: { template: { spec: { domain: { memory: { guest: '3Gi' } }, networks: [{ name: 'default', pod: {} }, { name: 'net1', multus: { networkName: 'nad-b' } }] } } } }));
      clock.advance(0);
      let vmi = vmiOf(cluster, 'web');
      assert.equal(cond(vmi, 'HotMemoryChange')?.['status'], 'True');
      assert.equal(cond(vmi, 'MigrationRequired')?.['status'], 'True');
      assert.equal((status(vmi)['memory'] as Obj)['guestCurrent'], '2Gi');
      assert.deepEqual(phases(cluster), ['Scheduling'], 'one migration for both');
      clock.advance(DURATION_MS);
      vmi = vmiOf(cluster, 'web');
      assert.deepEqual(phases(cluster), ['Succeeded']);
      assert.equal(cond(vmi, 'HotMemoryChange'), undefined);
      assert.equal(cond(vmi, 'MigrationRequired'), undefined);
      assert.deepEqual([(status(vmi)['memory'] as Obj)['guestCurrent'], (status(vmi)['memory'] as Obj)['guestRequested']], ['3Gi', '3Gi']);
      cluster.close();
    });

    it('drops a started migration whose VMI was restarted; the new VMI is left alone', async () => {
      const { cluster, clock } = sim(kubevirt(['LiveMigrate']));
      await startAndRaise(cluster, clock, 'web', true);
      clock.advance(DURATION_MS / 3);
      assert.deepEqual(phases(cluster), ['TargetReady']);
      await cluster.restartVirtualMachine({ namespace: 'default', name: 'web' });
      const fresh = vmiOf(cluster, 'web');
      assert.equal(guestSockets(fresh), 3, 'the restart ran the spec');
      clock.advance(DURATION_MS);
      assert.deepEqual(cluster.listMigrations(), [], 'the migration was deleted with its VMI');
      const after = vmiOf(cluster, 'web');
      assert.equal(uid(after), uid(fresh));
      assert.equal(status(after)['migrationState'], undefined, 'nothing of the old migration reached the new VMI');
      assert.equal(status(after)['nodeName'], status(fresh)['nodeName']);
      cluster.close();
    });

    it('admits a manual migration only for a migratable VMI without one in flight', async () => {
      const { cluster, clock } = sim(kubevirt([]));
      await cluster.applyVirtualMachine(vm('web'));
      await cluster.applyVirtualMachine(vm('gpu', withGpu));
      clock.advance(0);
      const manual = (vmi: string): Obj => ({ apiVersion: 'kubevirt.io/v1', kind: 'VirtualMachineInstanceMigration', metadata: { generateName: 'manual-', namespace: 'default' }, spec: { vmiName: vmi } });
      assert.throws(() => cluster.createMigration(manual('gpu')), /denied the request: Cannot migrate VMI, Reason: HostDeviceNotLiveMigratable, Message: VMI uses a PCI host devices/);
      assert.throws(() => cluster.createMigration(manual('nope')), /the VMI nope does not exist/);
      cluster.createMigration(manual('web'));
      assert.throws(() => cluster.createMigration(manual('web')), /in-flight migration detected/);
      // Under methods [] a manual migration still carries a waiting change to the guest.
      await cluster.applyVirtualMachine(vm('web', sockets(3)));
      clock.advance(DURATION_MS);
      assert.deepEqual(phases(cluster, 'web'), ['Succeeded']);
      assert.equal(guestSockets(vmiOf(cluster, 'web')), 3);
      cluster.close();
    });
  });
});
