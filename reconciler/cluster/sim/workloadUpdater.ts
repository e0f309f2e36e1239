/**
 * A stand-in for KubeVirt's workload updater
 * (pkg/virt-controller/watch/workload-updater/workload-updater.go): the only thing that moves a
 * hot-plugged change from the VMI spec into the guest without anyone asking.
 *
 * While the KubeVirt CR is `status.phase: Deployed` (and not mid-upgrade), for every running VMI
 * with `HotVCPUChange`, `HotMemoryChange=True`, `MigrationRequired=True` or `VolumesChange=True`
 * that is not already migrating: with `LiveMigrate` in
 * `spec.workloadUpdateStrategy.workloadUpdateMethods` and a migratable VMI (or one whose
 * `status.migratedVolumes` pass `ValidateVolumesUpdateMigration`) it creates a VirtualMachineInstanceMigration (generateName
 * `kubevirt-workload-update-`), at most `parallelMigrationsPerCluster` minus those running;
 * otherwise with `Evict` it evicts the VMI, `batchEvictionSize` (default 10) every
 * `batchEvictionInterval` (default 60 s); otherwise nothing happens (the default: an empty list).
 *
 * Differences from KubeVirt, all about timing or order: it runs right after a relevant change
 * instead of after its 5 s throttle (and every 5 s while work remains, as KubeVirt's re-enqueue
 * does); candidates are taken in creation order, where KubeVirt shuffles them.
 *
 * An eviction goes through KubeVirt's pod eviction webhook
 * (pkg/virt-api/webhooks/validating-webhook/admitters/pod-eviction-admitter.go), which follows
 * the VMI's `evictionStrategy` (its own, else the CR's `spec.configuration.evictionStrategy`;
 * KubeVirt's default is `None`): `LiveMigrate` or `LiveMigrateIfPossible` on a migratable VMI
 * refuse the eviction and mark the VMI for evacuation, and the evacuation controller
 * (pkg/virt-controller/watch/drain/evacuation) migrates it (generateName `kubevirt-evacuation-`);
 * `LiveMigrate` on a VMI that is not migratable refuses it; `External` leaves it to an external
 * controller; otherwise the VMI is stopped. `status.evacuationNodeName` is not written.
 */
import type { Obj } from '../../rollout/index.ts';
import { parseDuration } from '../../config.ts';
import { isObj, metaOf, specOf, statusOf } from '../object.ts';
import type { SimClock, SimTimer } from './clock.ts';
import { hasValidVolumeMigration } from './migratable.ts';
import { WORKLOAD_UPDATE_ANNOTATION, migrationSetting } from './migrationController.ts';
import type { ObjectStore } from './store.ts';
import { VmiCondition, isFinal, isMigrating, isRunning, nameOf, nsOf, vmiCondition, vmiNameOf } from './vmiState.ts';

/** `spec.workloadUpdateStrategy.workloadUpdateMethods` values. */
export const WorkloadUpdateMethod = {
  /** Live-migrate VMIs that can be. */
  LiveMigrate: 'LiveMigrate',
  /** Evict (stop) the others, or all of them when LiveMigrate is not listed. */
  Evict: 'Evict',
} as const;
/** One of {@link WorkloadUpdateMethod}. */
export type WorkloadUpdateMethod = (typeof WorkloadUpdateMethod)[keyof typeof WorkloadUpdateMethod];

/** `evictionStrategy` values (on a VMI, or the cluster's in `spec.configuration`). */
export const EvictionStrategy = {
  /** The VMI is stopped (KubeVirt's default). */
  None: 'None',
  /** The VMI is migrated; an eviction of a VMI that cannot be is refused. */
  LiveMigrate: 'LiveMigrate',
  /** The VMI is migrated when it can be, else stopped. */
  LiveMigrateIfPossible: 'LiveMigrateIfPossible',
  /** The eviction is refused and left to an external controller. */
  External: 'External',
} as const;
/** One of {@link EvictionStrategy}. */
export type EvictionStrategy = (typeof EvictionStrategy)[keyof typeof EvictionStrategy];

/** KubeVirt's annotation on migrations the evacuation controller creates (its value: the node evacuated). */
export const EVACUATION_ANNOTATION = 'kubevirt.io/evacuationMigration';

/** KubeVirt's defaults for the eviction batches. */
export const EVICTION_DEFAULTS = { batchEvictionSize: 10, batchEvictionIntervalMs: 60_000 } as const;

/** How soon the updater looks again while work remains (KubeVirt's throttle interval). */
export const UPDATER_RESYNC_MS = 5_000;

/** The workload update strategy of a KubeVirt CR, with KubeVirt's defaults filled in. */
export interface WorkloadUpdateStrategy {
  methods: ReadonlySet<string>;
  batchEvictionSize: number;
  batchEvictionIntervalMs: number;
}

/** Reads `spec.workloadUpdateStrategy`. An interval that is not a duration counts as the default. */
export function workloadUpdateStrategy(kubevirt: Readonly<Obj> | null): WorkloadUpdateStrategy {
  const s = specOf(kubevirt ?? {})['workloadUpdateStrategy'];
  const strategy = isObj(s) ? s : {};
  const methods = Array.isArray(strategy['workloadUpdateMethods']) ? (strategy['workloadUpdateMethods'] as unknown[]).map(String) : [];
  const size = strategy['batchEvictionSize'];
  let intervalMs: number = EVICTION_DEFAULTS.batchEvictionIntervalMs;
  if (typeof strategy['batchEvictionInterval'] === 'string') {
    try {
      intervalMs = parseDuration(strategy['batchEvictionInterval']);
    } catch {
      // KubeVirt's API would have refused it; the simulator keeps the default.
    }
  }
  return {
    methods: new Set(methods),
    batchEvictionSize: typeof size === 'number' && Number.isInteger(size) && size >= 0 ? size : EVICTION_DEFAULTS.batchEvictionSize,
    batchEvictionIntervalMs: intervalMs,
  };
}

/** KubeVirt's `isHotplugInProgress` (with the network migration evaluator's condition) or `isVolumesUpdateInProgress`. */
export function needsMigration(vmi: Readonly<Obj>): boolean {
  return (
    vmiCondition(vmi, VmiCondition.HotVCPUChange) !== undefined ||
    vmiCondition(vmi, VmiCondition.HotMemoryChange)?.['status'] === 'True' ||
    vmiCondition(vmi, VmiCondition.MigrationRequired)?.['status'] === 'True' ||
    vmiCondition(vmi, VmiCondition.VolumesChange)?.['status'] === 'True'
  );
}

/** What the workload updater needs. */
export interface WorkloadUpdaterOptions {
  store: ObjectStore;
  clock: SimClock;
  kubevirt: () => Readonly<Obj> | null;
  /** Creates a VirtualMachineInstanceMigration (as a client would: admission, then the migration controller). */
  createMigration: (vmim: Obj) => void;
  /** Evicts a VMI: it stops, and its VM restarts it per runStrategy. */
  evict: (namespace: string, name: string) => void;
}

/** The simulated workload updater. */
export class WorkloadUpdater {
  private timer: SimTimer | null = null;
  private timerAt = Infinity;
  private lastDeletionBatch = -Infinity;

  constructor(private readonly o: WorkloadUpdaterOptions) {}

  /** Runs the updater soon (after the write that asked for it has finished). */
  kick(ms = 0): void {
    const at = this.o.clock.now().getTime() + ms;
    if (this.timer !== null && this.timerAt <= at) return;
    if (this.timer !== null) this.o.clock.clearTimeout(this.timer);
    this.timerAt = at;
    this.timer = this.o.clock.setTimeout(() => {
      this.timer = null;
      this.timerAt = Infinity;
      this.sync();
    }, ms);
  }

  /** Stops the timer (the simulator is closing). */
  stop(): void {
    if (this.timer !== null) this.o.clock.clearTimeout(this.timer);
    this.timer = null;
    this.timerAt = Infinity;
  }

  /** One pass of KubeVirt's `execute` + `sync`. */
  sync(): void {
    const kv = this.o.kubevirt();
    if (kv === null) return;
    const status = statusOf(kv);
    if (status['phase'] !== 'Deployed' || status['observedDeploymentID'] !== status['targetDeploymentID']) return;
    const strategy = workloadUpdateStrategy(kv);
    const migrations = [...this.o.store.scan('VirtualMachineInstanceMigration')].filter((m) => !isFinal(m));
    const inFlight = new Set(migrations.map((m) => `${nsOf(m)}/${vmiNameOf(m)}`));
    const active = migrations.filter(isRunning).length;
    const outdated: Readonly<Obj>[] = [];
    const migratable: Readonly<Obj>[] = [];
    const evictable: Readonly<Obj>[] = [];
    for (const vmi of this.o.store.scan('VirtualMachineInstance')) {
      if (statusOf(vmi)['phase'] !== 'Running' || metaOf(vmi)['deletionTimestamp'] !== undefined) continue;
      if (isMigrating(vmi) || !needsMigration(vmi)) continue;
      outdated.push(vmi);
      if (inFlight.has(`${nsOf(vmi)}/${nameOf(vmi)}`)) continue;
      // getUpdateData: a valid storage migration (volMig) may migrate a VMI that is otherwise not migratable.
      const canMigrate = vmiCondition(vmi, VmiCondition.LiveMigratable)?.['status'] === 'True' || hasValidVolumeMigration(vmi);
      if (strategy.methods.has(WorkloadUpdateMethod.LiveMigrate) && canMigrate) migratable.push(vmi);
      else if (strategy.methods.has(WorkloadUpdateMethod.Evict)) evictable.push(vmi);
    }
    this.writeOutdatedCount(kv, outdated.length);

    const now = this.o.clock.now().getTime();
    let evictCount = 0;
    if (evictable.length > 0 && now > this.lastDeletionBatch + strategy.batchEvictionIntervalMs) {
      evictCount = Math.min(strategy.batchEvictionSize, evictable.length);
      this.lastDeletionBatch = now;
    }
    const migrateCount = Math.min(Math.max(0, migrationSetting(kv, 'parallelMigrationsPerCluster') - active), migratable.length);
    for (const vmi of migratable.slice(0, migrateCount)) {
      this.o.createMigration({
        apiVersion: 'kubevirt.io/v1',
        kind: 'VirtualMachineInstanceMigration',
        metadata: { generateName: 'kubevirt-workload-update-', namespace: nsOf(vmi), annotations: { [WORKLOAD_UPDATE_ANNOTATION]: '' } },
        spec: { vmiName: nameOf(vmi) },
      });
    }
    for (const vmi of evictable.slice(0, evictCount)) this.evict(kv, vmi);

    if (evictable.length > evictCount) {
      // The next batch is due when the interval has passed; the updater looks again then.
      this.kick(Math.max(UPDATER_RESYNC_MS, this.lastDeletionBatch + strategy.batchEvictionIntervalMs - now + 1));
    } else if (migratable.length > migrateCount) {
      this.kick(UPDATER_RESYNC_MS);
    }
  }

  /** One eviction as KubeVirt's pod eviction webhook and evacuation controller carry it out (see the file's comment). */
  private evict(kv: Readonly<Obj>, vmi: Readonly<Obj>): void {
    const own = specOf(vmi)['evictionStrategy'];
    const cluster = ((specOf(kv)['configuration'] ?? {}) as Obj)['evictionStrategy'];
    const strategy = typeof own === 'string' ? own : typeof cluster === 'string' ? cluster : EvictionStrategy.None;
    const migratable = vmiCondition(vmi, VmiCondition.LiveMigratable)?.['status'] === 'True';
    if ((strategy === EvictionStrategy.LiveMigrate || strategy === EvictionStrategy.LiveMigrateIfPossible) && migratable) {
      const node = String(statusOf(vmi)['nodeName'] ?? '');
      this.o.createMigration({
        apiVersion: 'kubevirt.io/v1',
        kind: 'VirtualMachineInstanceMigration',
        metadata: { generateName: 'kubevirt-evacuation-', namespace: nsOf(vmi), annotations: { [EVACUATION_ANNOTATION]: node } },
        spec: { vmiName: nameOf(vmi) },
      });
      return;
    }
    // Refused (LiveMigrate on a VMI that cannot migrate), or an external controller's to handle.
    if (strategy === EvictionStrategy.LiveMigrate || strategy === EvictionStrategy.External) return;
    this.o.evict(nsOf(vmi), nameOf(vmi));
  }

  /** status.outdatedVirtualMachineInstanceWorkloads, as the updater patches it on the KubeVirt CR. */
  private writeOutdatedCount(kv: Readonly<Obj>, n: number): void {
    if (statusOf(kv)['outdatedVirtualMachineInstanceWorkloads'] === n) return;
    this.o.store.replace({ ...kv, status: { ...statusOf(kv), outdatedVirtualMachineInstanceWorkloads: n } });
  }
}
