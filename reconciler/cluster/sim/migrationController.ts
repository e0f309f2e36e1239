/**
 * A stand-in for KubeVirt's migration controller and the virt-handlers it hands off to
 * (pkg/virt-controller/watch/migration/migration.go, pkg/virt-handler/migration-target.go):
 * every VirtualMachineInstanceMigration, whoever created it, goes Pending → Scheduling →
 * TargetReady (Scheduled and PreparingTarget recorded on the way) → Running → Succeeded or
 * Failed over {@link MigrationControllerOptions.durationMs}, within the KubeVirt CR's
 * `parallelMigrationsPerCluster` and `parallelOutboundMigrationsPerNode`, with KubeVirt's
 * backoff (20 s, doubling) for workload-update migrations that follow a failed one.
 *
 * A successful migration is when the change reaches the guest: the VMI moves to the target
 * node, `HotVCPUChange`, `HotMemoryChange`, `MigrationRequired` and `VolumesChange` go (with
 * `status.migratedVolumes`), and
 * `status.currentCPUTopology` and `status.memory.guestCurrent` take the VMI spec's values.
 *
 * Simulator-only: a VM or VMI annotated `sim.vmroll.dev/fail-migrations: "true"` fails every
 * migration at the end of its Running phase (see {@link FAIL_MIGRATIONS_ANNOTATION}).
 */
import { randomBytes } from 'node:crypto';
import type { Obj } from '../../rollout/index.ts';
import { annotationsOf, isObj, labelsOf, metaOf, specOf, statusOf } from '../object.ts';
import type { SimClock, SimTimer } from './clock.ts';
import { hasValidVolumeMigration } from './migratable.ts';
import type { ObjectStore } from './store.ts';
import { MigrationPhase, VmiCondition, isFinal, isRunning, nameOf, nsOf, phaseOf, stamp, vmiConditions, vmiNameOf, withoutConditions } from './vmiState.ts';

/** Annotation (on the VM or its VMI) that makes every migration of the VMI fail; simulator-only. */
export const FAIL_MIGRATIONS_ANNOTATION = 'sim.vmroll.dev/fail-migrations';

/** The `failureReason` a failed simulated migration reports (on the VMI's and the VMIM's migrationState). */
export const SIMULATED_FAILURE_REASON = `Live migration failed: simulated by the ${FAIL_MIGRATIONS_ANNOTATION} annotation`;

/** KubeVirt's annotation on migrations the workload updater creates. */
export const WORKLOAD_UPDATE_ANNOTATION = 'kubevirt.io/workloadUpdateMigration';

/** KubeVirt's label naming the VMI on a migration (`MigrationSelectorLabel`). */
export const MIGRATION_VMI_LABEL = 'kubevirt.io/vmi-name';

/** KubeVirt's node label on a VMI. */
export const NODE_NAME_LABEL = 'kubevirt.io/nodeName';

/** KubeVirt's defaults for `spec.configuration.migrations`. */
export const MIGRATION_DEFAULTS = { parallelMigrationsPerCluster: 5, parallelOutboundMigrationsPerNode: 2 } as const;

/** Finalized migrations kept per VMI before the oldest are deleted (`defaultFinalizedMigrationGarbageCollectionBuffer`). */
const FINALIZED_KEPT = 5;

/** The first backoff after a failed workload-update migration; it doubles per further failure. */
const BACKOFF_MS = 20_000;

/** What the migration controller needs. */
export interface MigrationControllerOptions {
  store: ObjectStore;
  clock: SimClock;
  /** Time from the target pod's creation to the end of the migration. */
  durationMs: number;
  /** The KubeVirt CR. */
  kubevirt: () => Readonly<Obj> | null;
  /** A node for the target pod, other than the source. */
  targetNode: (sourceNode: string) => string;
  /** Called when a migration ends (either way), after the VMI was updated. */
  onFinished: (namespace: string, vmiName: string) => void;
}

/** A non-negative integer setting of `spec.configuration.migrations`, or its default. */
export function migrationSetting(kubevirt: Readonly<Obj> | null, key: keyof typeof MIGRATION_DEFAULTS): number {
  const migrations = ((specOf(kubevirt ?? {})['configuration'] ?? {}) as Obj)['migrations'];
  const v = isObj(migrations) ? migrations[key] : undefined;
  return typeof v === 'number' && Number.isInteger(v) && v >= 0 ? v : MIGRATION_DEFAULTS[key];
}

function key(namespace: string, name: string): string {
  return `${namespace}/${name}`;
}

/** The simulated migration controller. */
export class MigrationController {
  /** The next step of each started migration, by migration key. */
  private readonly timers = new Map<string, SimTimer>();
  private syncTimer: SimTimer | null = null;

  constructor(private readonly o: MigrationControllerOptions) {}

  private get store(): ObjectStore {
    return this.o.store;
  }

  private now(): Date {
    return this.o.clock.now();
  }

  /** Processes every migration soon (after the write that asked for it has finished). */
  kick(): void {
    if (this.syncTimer !== null) return;
    this.syncTimer = this.o.clock.setTimeout(() => {
      this.syncTimer = null;
      this.sync();
    }, 0);
  }

  /** Stops every timer (the simulator is closing). */
  stop(): void {
    for (const t of this.timers.values()) this.o.clock.clearTimeout(t);
    this.timers.clear();
    if (this.syncTimer !== null) this.o.clock.clearTimeout(this.syncTimer);
    this.syncTimer = null;
  }

  /**
   * One pass over the migrations, oldest first: new ones become Pending, Pending ones start
   * while the limits allow, started ones whose timer was lost (a restored state file) resume.
   */
  sync(): void {
    const kv = this.o.kubevirt();
    const perCluster = migrationSetting(kv, 'parallelMigrationsPerCluster');
    const perNode = migrationSetting(kv, 'parallelOutboundMigrationsPerNode');
    for (const m of [...this.store.scan('VirtualMachineInstanceMigration')]) {
      const ns = nsOf(m);
      const name = nameOf(m);
      const current = this.store.peek('VirtualMachineInstanceMigration', ns, name);
      if (current === undefined || isFinal(current)) continue;
      const vmi = this.store.peek('VirtualMachineInstance', ns, vmiNameOf(current));
      if (vmi === undefined) {
        // execute(): a migration of a VMI that is gone is deleted.
        this.forget(ns, name);
        this.store.delete('VirtualMachineInstanceMigration', ns, name);
        continue;
      }
      let pending = current;
      if (phaseOf(current) === '') {
        pending = this.setPhase(current, MigrationPhase.Pending, { labels: { ...labelsOf(current), [MIGRATION_VMI_LABEL]: vmiNameOf(current) } });
      } else if (phaseOf(current) !== MigrationPhase.Pending) {
        if (!this.timers.has(key(ns, name))) this.step(ns, name);
        continue;
      }
      if (this.inBackoff(pending)) continue;
      const running = [...this.store.scan('VirtualMachineInstanceMigration')].filter(isRunning);
      if (running.length >= perCluster) continue;
      const source = String(statusOf(vmi)['nodeName'] ?? '');
      const outbound = running.filter((r) => String(((statusOf(r)['migrationState'] ?? {}) as Obj)['sourceNode'] ?? '') === source).length;
      if (outbound >= perNode) continue;
      this.start(pending, vmi);
    }
    this.scheduleBackoffWakeup();
  }

  /** A migration was deleted: a started one is aborted on its VMI. */
  deleted(gone: Readonly<Obj>): void {
    const ns = nsOf(gone);
    this.forget(ns, nameOf(gone));
    if (!isFinal(gone)) {
      const vmi = this.store.peek('VirtualMachineInstance', ns, vmiNameOf(gone));
      const state = isObj(statusOf(vmi ?? {})['migrationState']) ? (statusOf(vmi ?? {})['migrationState'] as Obj) : undefined;
      if (vmi !== undefined && state !== undefined && state['migrationUid'] === metaOf(gone)['uid'] && state['completed'] !== true) {
        const t = stamp(this.now());
        this.writeVmiStatus(vmi, { ...statusOf(vmi), migrationState: { ...state, abortRequested: true, abortStatus: 'Succeeded', startTimestamp: state['startTimestamp'] ?? t, endTimestamp: t, completed: true, failed: true } });
      }
    }
    this.kick();
  }

  private forget(ns: string, name: string): void {
    const t = this.timers.get(key(ns, name));
    if (t !== undefined) this.o.clock.clearTimeout(t);
    this.timers.delete(key(ns, name));
  }

  private schedule(ns: string, name: string, ms: number): void {
    this.forget(ns, name);
    this.timers.set(
      key(ns, name),
      this.o.clock.setTimeout(() => {
        this.timers.delete(key(ns, name));
        this.step(ns, name);
      }, ms),
    );
  }

  /** handleMigrationBackoff: only workload-update (and evacuation) migrations, counted from the newest failure. */
  private backoffUntil(m: Readonly<Obj>): number | null {
    if (annotationsOf(m)[WORKLOAD_UPDATE_ANNOTATION] === undefined) return null;
    const ns = nsOf(m);
    const mine = [...this.store.scan('VirtualMachineInstanceMigration', ns)].filter((x) => vmiNameOf(x) === vmiNameOf(m));
    const older = mine.slice(0, mine.indexOf(m)).reverse();
    let backoff = 0;
    let lastFailure: number | null = null;
    for (const x of older) {
      if (phaseOf(x) === MigrationPhase.Succeeded) break;
      if (phaseOf(x) === MigrationPhase.Failed) {
        backoff = backoff === 0 ? BACKOFF_MS : backoff * 2;
        lastFailure ??= this.transitionTime(x, MigrationPhase.Failed);
      }
    }
    return backoff === 0 || lastFailure === null ? null : lastFailure + backoff;
  }

  private inBackoff(m: Readonly<Obj>): boolean {
    const until = this.backoffUntil(m);
    return until !== null && until > this.now().getTime();
  }

  private backoffTimer: SimTimer | null = null;

  /** Re-runs {@link sync} when the earliest backoff ends, as KubeVirt re-enqueues the migration. */
  private scheduleBackoffWakeup(): void {
    let earliest: number | null = null;
    for (const m of this.store.scan('VirtualMachineInstanceMigration')) {
      if (phaseOf(m) !== MigrationPhase.Pending) continue;
      const until = this.backoffUntil(m);
      if (until !== null && until > this.now().getTime() && (earliest === null || until < earliest)) earliest = until;
    }
    if (this.backoffTimer !== null) this.o.clock.clearTimeout(this.backoffTimer);
    this.backoffTimer = null;
    if (earliest !== null) {
      this.backoffTimer = this.o.clock.setTimeout(() => {
        this.backoffTimer = null;
        this.sync();
      }, earliest - this.now().getTime());
    }
  }

  private transitionTime(m: Readonly<Obj>, phase: string): number | null {
    const list = statusOf(m)['phaseTransitionTimestamps'];
    const hit = Array.isArray(list) ? (list as Obj[]).find((t) => t['phase'] === phase) : undefined;
    const ms = hit === undefined ? NaN : Date.parse(String(hit['phaseTransitionTimestamp']));
    return Number.isNaN(ms) ? null : ms;
  }

  private setPhase(m: Readonly<Obj>, phase: MigrationPhase, extra: { labels?: Obj; migrationState?: Obj } = {}): Readonly<Obj> {
    return this.setPhases(m, [phase], extra);
  }

  private setPhases(m: Readonly<Obj>, phases: MigrationPhase[], extra: { labels?: Obj; migrationState?: Obj }): Readonly<Obj> {
    const t = stamp(this.now());
    const status = { ...statusOf(m) };
    const transitions = Array.isArray(status['phaseTransitionTimestamps']) ? [...(status['phaseTransitionTimestamps'] as Obj[])] : [];
    for (const p of phases) transitions.push({ phase: p, phaseTransitionTimestamp: t });
    status['phase'] = phases[phases.length - 1];
    status['phaseTransitionTimestamps'] = transitions;
    if (extra.migrationState !== undefined) status['migrationState'] = extra.migrationState;
    const meta = extra.labels !== undefined ? { ...metaOf(m), labels: extra.labels } : metaOf(m);
    return this.store.replace({ ...m, metadata: meta, status });
  }

  private writeVmiStatus(vmi: Readonly<Obj>, status: Obj, labels?: Obj): void {
    const meta = labels !== undefined ? { ...metaOf(vmi), labels } : metaOf(vmi);
    this.store.replace({ ...vmi, metadata: meta, status });
  }

  /** handleTargetPodCreation + handleTargetPodHandoff: the target pod exists, the VMI knows its migration. */
  private start(m: Readonly<Obj>, vmi: Readonly<Obj>): void {
    const source = String(statusOf(vmi)['nodeName'] ?? '');
    const target = this.o.targetNode(source);
    const suffix = [...randomBytes(5)].map((b) => 'bcdfghjklmnpqrstvwxz2456789'[b % 27]).join('');
    const state: Obj = {
      migrationUid: metaOf(m)['uid'],
      sourceNode: source,
      targetNode: target,
      targetPod: `virt-launcher-${nameOf(vmi)}-${suffix}`,
      mode: 'PreCopy',
    };
    this.writeVmiStatus(vmi, { ...statusOf(vmi), migrationState: state });
    this.setPhase(m, MigrationPhase.Scheduling, { migrationState: state });
    this.schedule(nsOf(m), nameOf(m), this.o.durationMs / 3);
  }

  /** The next timed step of a started migration. */
  private step(ns: string, name: string): void {
    const m = this.store.peek('VirtualMachineInstanceMigration', ns, name);
    if (m === undefined || isFinal(m)) return;
    const vmi = this.store.peek('VirtualMachineInstance', ns, vmiNameOf(m));
    if (vmi === undefined) {
      this.store.delete('VirtualMachineInstanceMigration', ns, name);
      this.kick();
      return;
    }
    const t = stamp(this.now());
    const state = { ...((statusOf(vmi)['migrationState'] ?? {}) as Obj) };
    if (state['migrationUid'] !== metaOf(m)['uid']) {
      // The VMI this migration started on is gone (stopped, evicted, restarted): KubeVirt deletes the migration.
      this.store.delete('VirtualMachineInstanceMigration', ns, name);
      this.kick();
      return;
    }
    switch (phaseOf(m)) {
      case MigrationPhase.Scheduling:
      case MigrationPhase.Scheduled:
      case MigrationPhase.PreparingTarget: {
        state['targetNodeDomainDetected'] = true;
        state['targetNodeDomainReadyTimestamp'] = t;
        state['targetNodeAddress'] = '10.244.0.1';
        this.writeVmiStatus(vmi, { ...statusOf(vmi), migrationState: state });
        const done = new Set((Array.isArray(statusOf(m)['phaseTransitionTimestamps']) ? (statusOf(m)['phaseTransitionTimestamps'] as Obj[]) : []).map((x) => x['phase']));
        const phases = [MigrationPhase.Scheduled, MigrationPhase.PreparingTarget, MigrationPhase.TargetReady].filter((p) => !done.has(p));
        this.setPhases(m, phases, { migrationState: state });
        this.schedule(ns, name, this.o.durationMs / 3);
        return;
      }
      case MigrationPhase.TargetReady: {
        state['startTimestamp'] = t;
        this.writeVmiStatus(vmi, { ...statusOf(vmi), migrationState: state, migrationMethod: 'LiveMigration' });
        this.setPhase(m, MigrationPhase.Running, { migrationState: state });
        this.schedule(ns, name, this.o.durationMs / 3);
        return;
      }
      case MigrationPhase.Running:
        this.finish(m, vmi, state, t);
        return;
      default:
        return;
    }
  }

  private fails(vmi: Readonly<Obj>): boolean {
    const vm = this.store.peek('VirtualMachine', nsOf(vmi), nameOf(vmi));
    return annotationsOf(vmi)[FAIL_MIGRATIONS_ANNOTATION] === 'true' || (vm !== undefined && annotationsOf(vm)[FAIL_MIGRATIONS_ANNOTATION] === 'true');
  }

  private finish(m: Readonly<Obj>, vmi: Readonly<Obj>, state: Obj, t: string): void {
    const ns = nsOf(m);
    if (this.fails(vmi)) {
      const failed = { ...state, startTimestamp: state['startTimestamp'] ?? t, endTimestamp: t, completed: true, failed: true, failureReason: SIMULATED_FAILURE_REASON };
      this.writeVmiStatus(vmi, { ...statusOf(vmi), migrationState: failed });
      this.setPhase(m, MigrationPhase.Failed, { migrationState: failed });
    } else {
      const done = { ...state, endTimestamp: t, completed: true };
      // virt-handler on the target: the guest now runs the VMI spec's topology and memory.
      const spec = specOf(vmi);
      const domain = (spec['domain'] ?? {}) as Obj;
      const cpu = (domain['cpu'] ?? {}) as Obj;
      const status: Obj = { ...statusOf(vmi), migrationState: done, nodeName: state['targetNode'] };
      // removeMigratedVolumes: the guest now writes to the destination claims.
      status['conditions'] = withoutConditions(vmiConditions(vmi), VmiCondition.HotVCPUChange, VmiCondition.HotMemoryChange, VmiCondition.MigrationRequired, VmiCondition.VolumesChange);
      delete status['migratedVolumes'];
      status['currentCPUTopology'] = { sockets: cpu['sockets'] ?? 1, cores: cpu['cores'] ?? 1, threads: cpu['threads'] ?? 1 };
      const guest = ((domain['memory'] ?? {}) as Obj)['guest'];
      if (guest !== undefined && isObj(status['memory'])) status['memory'] = { ...(status['memory'] as Obj), guestCurrent: guest, guestRequested: guest };
      this.writeVmiStatus(vmi, status, { ...labelsOf(vmi), [NODE_NAME_LABEL]: String(state['targetNode']) });
      this.setPhase(m, MigrationPhase.Succeeded, { migrationState: done });
    }
    this.collectGarbage(ns, vmiNameOf(m));
    this.o.onFinished(ns, vmiNameOf(m));
    this.kick();
  }

  /** garbageCollectFinalizedMigrations: only the newest finalized migrations of a VMI are kept. */
  private collectGarbage(ns: string, vmiName: string): void {
    const finalized = [...this.store.scan('VirtualMachineInstanceMigration', ns)].filter((x) => vmiNameOf(x) === vmiName && isFinal(x));
    for (const old of finalized.slice(0, Math.max(0, finalized.length - FINALIZED_KEPT))) this.store.delete('VirtualMachineInstanceMigration', ns, nameOf(old));
  }
}

/**
 * virt-api's migration-create admission (migration-create-admitter.go): the reason a new
 * migration is refused, in KubeVirt's words, or null when it is admitted.
 */
export function admitMigration(store: ObjectStore, vmim: Readonly<Obj>): string | null {
  const vmiName = vmiNameOf(vmim);
  if (vmiName === '') return 'spec.vmiName: Required value';
  const vmi = store.peek('VirtualMachineInstance', nsOf(vmim), vmiName);
  if (vmi === undefined) return `the VMI ${vmiName} does not exist under the cache`;
  const phase = String(statusOf(vmi)['phase'] ?? '');
  if (phase === 'Succeeded' || phase === 'Failed') return 'Cannot migrated VMI in finalized state.';
  const cond = vmiConditions(vmi).find((c) => c['type'] === VmiCondition.LiveMigratable);
  // A storage migration moves the claims that make the VMI non-migratable (see hasValidVolumeMigration).
  if (cond !== undefined && cond['status'] === 'False' && !hasValidVolumeMigration(vmi)) return `Cannot migrate VMI, Reason: ${String(cond['reason'] ?? '')}, Message: ${String(cond['message'] ?? '')}`;
  for (const m of store.scan('VirtualMachineInstanceMigration', nsOf(vmim))) {
    if (vmiNameOf(m) === vmiName && !isFinal(m)) return `in-flight migration detected. Active migration job (${String(metaOf(m)['uid'])}) is currently already in progress for VMI ${vmiName}.`;
  }
  return null;
}
