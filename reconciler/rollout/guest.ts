/**
 * From the VMI to the guest (semantics §8): a change the VM controller wrote to the VMI spec is
 * not yet in the guest when it needs a live migration (CPU sockets, guest memory, an SR-IOV
 * interface plugged, a NAD reference, a storage migration). KubeVirt's workload updater
 * (`pkg/virt-controller/watch/workload-updater/workload-updater.go`) starts that migration only
 * when the KubeVirt CR lists `LiveMigrate` and the VMI is `LiveMigratable=True`; with `Evict` it
 * evicts instead (a restart); with neither nothing happens. This file predicts that path for a plan
 * and observes it on a VMI after the fact. Pure: no I/O, no clock.
 */
import { type WorkloadUpdateSettings, resolveWorkloadUpdate } from './cluster.ts';
import { type Obj, get, getList, getNum, getStr, isObj } from './json.ts';
import { isWithin, parsePath, type Segment, TEMPLATE_SPEC } from './paths.ts';
import type { FieldChange } from './plan.ts';
import { quantitiesEqual } from './quantity.ts';
import { isDeleting, isLiveMigratable, isMigrating, vmiPhase } from './vmi.ts';
import {
  Disruption,
  MigrationBlock,
  MigrationTrigger,
  ObservedBlock,
  ObservedOutcome,
  ReachesGuest,
  Rollout,
  TakesEffect,
  WorkloadUpdateMethod,
} from './vocabulary.ts';

/** What the workload updater does with a VMI that needs a migration. */
export type WorkloadPath =
  /**
   * A migration runs; `queuedAhead` migrations must finish before it can start. `evacuation` names
   * the VMI's eviction strategy when the migration comes from an eviction the updater asked for.
   */
  | { via: 'liveMigration'; queuedAhead: number; inFlight: number; evacuation?: string }
  /** It evicts the VMI; `restarts` is false when the VM's runStrategy does not start it again. */
  | { via: 'eviction'; blockedBy: MigrationBlock; restarts: boolean }
  /** It does nothing (or its eviction is refused or handed to an external controller, `evictionHeld`): the change waits for a restart. */
  | { via: 'none'; blockedBy: MigrationBlock; evictionHeld?: string };

const FINAL_PHASES = new Set(['Succeeded', 'Failed']);
/** `IsRunning` of a migration: not unset, Pending or final. */
const NOT_RUNNING_PHASES = new Set(['', 'Pending', 'Succeeded', 'Failed']);

function migrationPhase(m: Obj): string {
  return getStr(m, 'status', 'phase') ?? '';
}

function isOwnMigration(m: Obj, vmi: Obj): boolean {
  return getStr(m, 'spec', 'vmiName') === getStr(vmi, 'metadata', 'name') && (getStr(m, 'metadata', 'namespace') ?? 'default') === (getStr(vmi, 'metadata', 'namespace') ?? 'default');
}

/** Unfinished migrations (not Succeeded or Failed), KubeVirt's `ListUnfinishedMigrations`. */
function unfinished(migrations: readonly Obj[]): Obj[] {
  return migrations.filter((m) => !FINAL_PHASES.has(migrationPhase(m)));
}

/**
 * How many migrations must finish before one for `vmi` can start, assuming first come, first
 * served: the cluster runs at most `parallelMigrationsPerCluster`, and at most
 * `parallelOutboundMigrationsPerNode` leave the VMI's node (`status.nodeName`, matched against a
 * migration's `status.migrationState.sourceNode`). The VMI's own migrations are not counted.
 */
export function migrationsAhead(vmi: Obj, migrations: readonly Obj[], settings: WorkloadUpdateSettings): { queuedAhead: number; inFlight: number } {
  const others = unfinished(migrations).filter((m) => !isOwnMigration(m, vmi));
  const clusterAhead = Math.max(0, others.length - Math.max(1, settings.parallelMigrationsPerCluster) + 1);
  const node = getStr(vmi, 'status', 'nodeName');
  let nodeAhead = 0;
  if (node !== undefined) {
    const fromNode = others.filter((m) => getStr(m, 'status', 'migrationState', 'sourceNode') === node).length;
    nodeAhead = Math.max(0, fromNode - Math.max(1, settings.parallelOutboundMigrationsPerNode) + 1);
  }
  return { queuedAhead: Math.max(clusterAhead, nodeAhead), inFlight: others.length };
}

const RESTARTING_STRATEGIES = new Set(['Always', 'RerunOnFailure']);

/** Whether the VM's runStrategy starts a new VMI after its VMI is evicted (unknown VM: assumed so). */
function restartsAfterEviction(vm: Obj | null): boolean {
  if (vm === null) return true;
  const rs = getStr(vm, 'spec', 'runStrategy');
  return rs !== undefined ? RESTARTING_STRATEGIES.has(rs) : get(vm, 'spec', 'running') === true;
}

/**
 * KubeVirt's workload updater (`getUpdateData`, `execute`): nothing unless the KubeVirt CR is
 * Deployed and not itself updating; a migration when `LiveMigrate` is listed and the VMI is
 * migratable (or carries a valid storage migration, `volumeMigration`); otherwise an eviction when
 * `Evict` is listed; otherwise nothing.
 */
export function workloadUpdatePath(vmi: Obj, vm: Obj | null, settings: WorkloadUpdateSettings, migrations: readonly Obj[], volumeMigration = false): WorkloadPath {
  if (settings.phase !== null && settings.phase !== 'Deployed') return { via: 'none', blockedBy: MigrationBlock.kubevirtNotDeployed };
  if (!settings.deploymentSettled) return { via: 'none', blockedBy: MigrationBlock.kubevirtUpdating };
  const liveMigrate = settings.methods.includes(WorkloadUpdateMethod.LiveMigrate);
  if (liveMigrate && (isLiveMigratable(vmi) || volumeMigration)) return { via: 'liveMigration', ...migrationsAhead(vmi, migrations, settings) };
  const blockedBy = liveMigrate ? MigrationBlock.notMigratable : MigrationBlock.noLiveMigrateMethod;
  if (!settings.methods.includes(WorkloadUpdateMethod.Evict)) return { via: 'none', blockedBy };
  // The eviction goes through KubeVirt's pod eviction webhook (pod-eviction-admitter.go), which
  // follows the VMI's evictionStrategy (its own, else the cluster's).
  const strategy = getStr(vmi, 'spec', 'evictionStrategy') ?? settings.evictionStrategy;
  const migratable = isLiveMigratable(vmi);
  if ((strategy === 'LiveMigrate' || strategy === 'LiveMigrateIfPossible') && migratable) {
    return { via: 'liveMigration', ...migrationsAhead(vmi, migrations, settings), evacuation: strategy };
  }
  if (strategy === 'LiveMigrate') return { via: 'none', blockedBy, evictionHeld: 'refused: evictionStrategy LiveMigrate on a VMI that is not live-migratable' };
  if (strategy === 'External') return { via: 'none', blockedBy, evictionHeld: 'handed to an external controller (evictionStrategy External)' };
  return { via: 'eviction', blockedBy, restarts: restartsAfterEviction(vm) };
}

/** Why no migration starts, in one clause a PR comment can print. */
export function blockText(blockedBy: MigrationBlock, vmi: Obj | null, settings: WorkloadUpdateSettings): string {
  switch (blockedBy) {
    case MigrationBlock.noLiveMigrateMethod:
      return settings.known
        ? 'the cluster has no LiveMigrate workload update method'
        : "no KubeVirt CR was given, and by KubeVirt's default the cluster has no LiveMigrate workload update method";
    case MigrationBlock.notMigratable: {
      const cond = getList(vmi, 'status', 'conditions').find((c) => c['type'] === 'LiveMigratable');
      if (cond === undefined) return 'the VMI is not live-migratable (it has no LiveMigratable condition)';
      const reason = typeof cond['reason'] === 'string' && cond['reason'] !== '' ? `, ${cond['reason']}` : '';
      const message = typeof cond['message'] === 'string' && cond['message'] !== '' ? `: ${cond['message']}` : '';
      return `the VMI is not live-migratable (LiveMigratable=${String(cond['status'] ?? 'Unknown')}${reason}${message})`;
    }
    case MigrationBlock.kubevirtNotDeployed:
      return `KubeVirt is not Deployed (status.phase ${settings.phase ?? 'unset'}), and its workload updater starts nothing until it is`;
    case MigrationBlock.kubevirtUpdating:
      return 'KubeVirt is itself being updated (observedDeploymentID differs from targetDeploymentID), and its workload updater starts nothing until that ends';
  }
}

/** A block that lasts (no method, not migratable) holds the change until a restart; KubeVirt's own state only for a while. */
function untilText(blockedBy: MigrationBlock): string {
  return blockedBy === MigrationBlock.kubevirtNotDeployed || blockedBy === MigrationBlock.kubevirtUpdating
    ? 'will not reach the guest for now (no migration starts)'
    : 'will not reach the guest until a restart';
}

function aheadText(n: number): string {
  return n === 0 ? 'no migrations ahead' : n === 1 ? '1 migration ahead' : `${n} migrations ahead`;
}

const PLACEMENT: readonly Segment[][] = [
  [...TEMPLATE_SPEC, 'nodeSelector'],
  [...TEMPLATE_SPEC, 'affinity'],
  [...TEMPLATE_SPEC, 'tolerations'],
];

/** What KubeVirt wrote, per trigger, for the `why` of a change that needs a migration. */
const TRIGGER_WHAT: Record<MigrationTrigger, string> = {
  HotVCPUChange: 'CPU sockets patched into the VMI (condition HotVCPUChange)',
  HotMemoryChange: 'guest memory patched into the VMI (condition HotMemoryChange)',
  MigrationRequired: 'written to the VMI; the network needs a migration to take it (condition MigrationRequired)',
  VolumesChange: 'new volume written to the VMI for a storage migration (condition VolumesChange)',
};

/** What the predictor needs besides the changes. */
export interface GuestContext {
  /** The desired VM (its runStrategy decides what an eviction does; its template decides which interfaces are SR-IOV). */
  desired: Obj;
  /** The VMI before the pass (its conditions, node and migratability); null when none runs (or it is being stopped). */
  vmi: Obj | null;
  settings: WorkloadUpdateSettings;
  migrations: readonly Obj[];
}

/** The migration trigger a live template change sets on the VMI, or null when it needs none. */
export function migrationTrigger(change: FieldChange, desired: Obj): MigrationTrigger | null {
  const segments = parsePath(change.path);
  if (isWithin(segments, [...TEMPLATE_SPEC, 'domain', 'cpu', 'sockets'])) return MigrationTrigger.HotVCPUChange;
  if (isWithin(segments, [...TEMPLATE_SPEC, 'domain', 'memory', 'guest'])) return MigrationTrigger.HotMemoryChange;
  if (isWithin(segments, [...TEMPLATE_SPEC, 'volumes']) && getStr(desired, 'spec', 'updateVolumesStrategy') === 'Migration') return MigrationTrigger.VolumesChange;
  const element = segments.find((seg): seg is { readonly name: string } => typeof seg === 'object');
  if (element === undefined) return null;
  const name = element.name;
  // The network migration evaluator (pkg/network/migration/evaluator.go): an SR-IOV interface
  // plugged into the VMI needs a migration at once; so does a NAD reference change.
  const iface = getList(desired, 'spec', 'template', 'spec', 'domain', 'devices', 'interfaces').find((i) => i['name'] === name);
  const plugged = change.from === undefined || change.from === null;
  const ifacePath = isWithin(segments, [...TEMPLATE_SPEC, 'domain', 'devices', 'interfaces', { name }]);
  const netPath = isWithin(segments, [...TEMPLATE_SPEC, 'networks', { name }]);
  if ((ifacePath || netPath) && plugged && iface !== undefined && isObj(iface['sriov']) && getStr(iface, 'state') !== 'absent') return MigrationTrigger.MigrationRequired;
  if (netPath && !plugged && (segments.some((s) => s === 'networkName') || nadDiffers(change))) return MigrationTrigger.MigrationRequired;
  return null;
}

function nadDiffers(change: FieldChange): boolean {
  const a = get(change.from, 'multus', 'networkName');
  const b = get(change.to, 'multus', 'networkName');
  return a !== undefined && b !== undefined && a !== b;
}

/**
 * Annotates every live change with how it reaches the guest (`reachesGuest`, and `migration` for
 * the ones that need a migration), rewriting the `why` of those so it says what really happens.
 * Changes are edited in place.
 */
export function annotateGuestPaths(changes: FieldChange[], ctx: GuestContext): void {
  let path: WorkloadPath | undefined;
  const pathFor = (vmi: Obj, volumeMigration: boolean): WorkloadPath => (path ??= workloadUpdatePath(vmi, ctx.desired, ctx.settings, ctx.migrations, volumeMigration));
  for (const change of changes) {
    if (change.rollout !== Rollout.live) continue;
    if (change.takesEffect === TakesEffect.vmObject) {
      change.reachesGuest = ReachesGuest.immediately;
      continue;
    }
    const vmi = ctx.vmi;
    if (vmi === null) {
      change.reachesGuest = ReachesGuest.immediately;
      continue;
    }
    const segments = parsePath(change.path);
    if (PLACEMENT.some((p) => isWithin(segments, p))) {
      change.reachesGuest = ReachesGuest.nextScheduling;
      continue;
    }
    const trigger = migrationTrigger(change, ctx.desired);
    if (trigger === null) {
      change.reachesGuest = ReachesGuest.immediately;
      continue;
    }
    const p = pathFor(vmi, trigger === MigrationTrigger.VolumesChange);
    const waiting = change.why?.startsWith('goes live once') === true ? `${change.why}; then ` : '';
    const what = waiting === '' ? `${TRIGGER_WHAT[trigger]}: ` : '';
    if (p.via === 'liveMigration') {
      change.reachesGuest = ReachesGuest.liveMigration;
      change.migration = { trigger, queuedAhead: p.queuedAhead };
      change.why =
        p.evacuation === undefined
          ? `${waiting}${what}KubeVirt's workload updater live-migrates the VMI to carry it to the guest (${aheadText(p.queuedAhead)})`
          : `${waiting}${what}the workload updater evicts the VMI (Evict method), and its evictionStrategy ${p.evacuation} turns the eviction into a live migration that carries it to the guest (${aheadText(p.queuedAhead)})`;
    } else if (p.via === 'eviction') {
      change.reachesGuest = ReachesGuest.eviction;
      change.migration = { trigger, blockedBy: p.blockedBy, blockedWhy: blockText(p.blockedBy, vmi, ctx.settings) };
      const after = p.restarts ? 'the guest restarts with it' : 'the guest stops, and its runStrategy does not start it again';
      change.why = `${waiting}${what}no live migration will carry it (${blockText(p.blockedBy, vmi, ctx.settings)}), so the workload updater evicts the VMI (Evict method): ${after}`;
    } else {
      change.reachesGuest = ReachesGuest.awaitingRestart;
      change.migration = { trigger, blockedBy: p.blockedBy, blockedWhy: blockText(p.blockedBy, vmi, ctx.settings) };
      const held = p.evictionHeld !== undefined ? `; the workload updater's eviction is ${p.evictionHeld}` : '';
      const reason = `${blockText(p.blockedBy, vmi, ctx.settings)}${held}`;
      change.migration = { trigger, blockedBy: p.blockedBy, blockedWhy: reason };
      change.why = `${waiting}${what}${untilText(p.blockedBy)}: ${reason}`;
    }
  }
}

/** The per-VM disruption and the one line that explains it. */
export interface DisruptionSummary {
  kind: Disruption;
  summary: string;
}

/**
 * The disruption of a plan entry whose changes were narrowed to a subset (one commit's changes):
 * summed up again from those changes, unless the entry was for a VM with no instance running.
 */
export function narrowDisruption(entry: { disruption?: DisruptionSummary; changes: readonly FieldChange[]; conditionMessage: string | null }, changes: readonly FieldChange[]): DisruptionSummary | undefined {
  if (entry.disruption === undefined) return undefined;
  const running = entry.changes.some((c) => c.takesEffect === TakesEffect.running || c.takesEffect === TakesEffect.nextRestart);
  if (!running) return changes.length === 0 ? { kind: Disruption.none, summary: entry.disruption.summary.startsWith('no instance') ? entry.disruption.summary : 'no change' } : entry.disruption;
  return summariseDisruption(changes, { running: true, stopping: false, conditionMessage: entry.conditionMessage });
}

function plural(n: number, one: string, many: string): string {
  return `${n} ${n === 1 ? one : many}`;
}

/**
 * Sums up what rolling the changes out does to the running guest, from the annotated changes.
 * `running` is false when no instance runs; `stopping` when the VM's runStrategy stops it.
 */
export function summariseDisruption(changes: readonly FieldChange[], state: { running: boolean; stopping: boolean; conditionMessage?: string | null }): DisruptionSummary {
  if (changes.length === 0) return { kind: Disruption.none, summary: state.running ? 'no change' : 'no instance is running: nothing to disrupt' };
  if (state.stopping) return { kind: Disruption.none, summary: 'the VM is being stopped by its runStrategy: every change takes effect at the next start' };
  if (!state.running) return { kind: Disruption.none, summary: 'no instance is running: every change takes effect at the next start' };
  const by = (r: ReachesGuest): FieldChange[] => changes.filter((c) => c.reachesGuest === r);
  const staged = changes.filter((c) => c.rollout === Rollout.staged && c.takesEffect === TakesEffect.nextRestart).length;
  const parts: string[] = [];
  let kind: Disruption = Disruption.none;
  const evicted = by(ReachesGuest.eviction);
  const migrated = by(ReachesGuest.liveMigration);
  const blocked = by(ReachesGuest.awaitingRestart);
  const first = evicted[0];
  if (first !== undefined) {
    kind = Disruption.restart;
    const stops = first.why?.includes('does not start it again') === true;
    parts.push(`${stops ? 'will be stopped by eviction (its runStrategy does not start it again)' : 'will be restarted by eviction'}: ${first.migration?.blockedWhy ?? 'no live migration will start'}`);
  } else if (migrated.length > 0) {
    kind = Disruption.migration;
    const evacuation = migrated[0]?.why?.includes('turns the eviction into a live migration') === true ? ', started by an eviction its evictionStrategy turns into a migration' : '';
    // A claim swap under updateVolumesStrategy: Migration moves storage, it plugs nothing in.
    const what = migrated.every((c) => c.migration?.trigger === MigrationTrigger.VolumesChange) ? 'volume update (storage migration)' : 'hot-plug';
    parts.push(`${what} via live migration (${aheadText(migrated[0]?.migration?.queuedAhead ?? 0)}${evacuation})`);
  }
  const held = blocked[0]?.migration;
  if (evicted.length === 0 && held?.blockedBy !== undefined) parts.push(`patched but ${untilText(held.blockedBy)}: ${held.blockedWhy ?? 'no live migration will start'}`);
  if (parts.length === 0) {
    const now = by(ReachesGuest.immediately).filter((c) => c.takesEffect !== TakesEffect.vmObject).length;
    const later = by(ReachesGuest.nextScheduling).length;
    if (now > 0) parts.push('live: effective in the guest at once');
    if (later > 0) parts.push('placement rules apply at the next scheduling (the running VM is not moved)');
  }
  if (staged > 0) parts.push(`${plural(staged, 'change waits', 'changes wait')} for a restart${kind === Disruption.restart ? ' (the eviction applies them)' : ''}`);
  else if (state.conditionMessage) parts.push(`KubeVirt sets RestartRequired ("${state.conditionMessage}") though no change waits for a restart`);
  if (parts.length === 0) parts.push('VM-level fields only: the running guest is not involved');
  return { kind, summary: parts.join('; ') };
}

function hasCondition(vmi: Obj, type: string, status?: string): boolean {
  return getList(vmi, 'status', 'conditions').some((c) => c['type'] === type && (status === undefined || c['status'] === status));
}

/** The VMI conditions and status differences that show a change not yet in the guest. */
export function pendingTriggers(vmi: Obj): MigrationTrigger[] {
  const has = (type: string, status?: string): boolean => hasCondition(vmi, type, status);
  const out: MigrationTrigger[] = [];
  const specSockets = getNum(vmi, 'spec', 'domain', 'cpu', 'sockets');
  const currentSockets = getNum(vmi, 'status', 'currentCPUTopology', 'sockets');
  // The VMI controller may not have set the condition yet right after the patch: the status shows it.
  if (has(MigrationTrigger.HotVCPUChange) || (specSockets !== undefined && currentSockets !== undefined && specSockets !== currentSockets)) out.push(MigrationTrigger.HotVCPUChange);
  const guest = get(vmi, 'spec', 'domain', 'memory', 'guest');
  const guestCurrent = get(vmi, 'status', 'memory', 'guestCurrent');
  const memoryFailed = has(MigrationTrigger.HotMemoryChange, 'False');
  if (has(MigrationTrigger.HotMemoryChange, 'True') || (!memoryFailed && guest !== undefined && guestCurrent !== undefined && !quantitiesEqual(guest, guestCurrent))) out.push(MigrationTrigger.HotMemoryChange);
  // MigrationRequired=False (AutoMigrationPending) turns True after the evaluator's grace period.
  if (has(MigrationTrigger.MigrationRequired)) out.push(MigrationTrigger.MigrationRequired);
  if (has(MigrationTrigger.VolumesChange, 'True')) out.push(MigrationTrigger.VolumesChange);
  return out;
}

/** What {@link observeGuest} reads. */
export interface ObserveInput {
  /** The VirtualMachine as stored (its runStrategy says whether a missing VMI comes back). */
  vm?: Obj | null;
  /** Its VirtualMachineInstance now; null when there is none. */
  vmi: Obj | null;
  /** The VirtualMachineInstanceMigrations in the cluster (any namespace; finished ones are ignored). */
  migrations?: readonly Obj[];
  /** The KubeVirt CR (its workloadUpdateStrategy, migrations configuration and status); null: KubeVirt's defaults. */
  kubevirt: Obj | null;
}

/** Where an applied VM stands (see {@link ObservedOutcome}). */
export interface ObservedGuest {
  outcome: ObservedOutcome;
  /** Set when `outcome` is `blocked`. */
  blockedBy?: ObservedBlock;
  /** Set when `outcome` is `queued` for a migration: migrations that must finish first. */
  queuedAhead?: number;
  /** Set when `outcome` is `queued` or `migrating`: what carries the change. */
  via?: 'liveMigration' | 'eviction';
  /** The triggers still pending on the VMI (empty when effective). */
  pending: MigrationTrigger[];
  /** One line for a report. */
  summary: string;
}

/**
 * The observed outcome of an already-applied VM, from its VMI, the migrations in flight and the
 * KubeVirt CR's workload update settings. Meant to be called again on each look until it says
 * `effective` (or `blocked`/`stopped`, which do not change by themselves).
 */
export function observeGuest(input: ObserveInput): ObservedGuest {
  const settings = resolveWorkloadUpdate(input.kubevirt);
  const vm = input.vm ?? null;
  const vmi = input.vmi;
  const comesBack = restartsAfterEviction(vm);
  const gone = (why: string): ObservedGuest =>
    comesBack
      ? { outcome: ObservedOutcome.restarting, pending: [], summary: `${why}: KubeVirt starts it again` }
      : { outcome: ObservedOutcome.stopped, pending: [], summary: `${why}, and its runStrategy does not start it again` };
  if (vmi === null) return gone('no instance is running');
  if (isDeleting(vmi) || FINAL_PHASES.has(vmiPhase(vmi))) return gone(isDeleting(vmi) ? 'the instance is being deleted (evicted or stopped)' : `the instance has ended (phase ${vmiPhase(vmi)})`);
  const pending = pendingTriggers(vmi);
  if (hasCondition(vmi, MigrationTrigger.HotMemoryChange, 'False') && !quantitiesEqual(get(vmi, 'spec', 'domain', 'memory', 'guest'), get(vmi, 'status', 'memory', 'guestCurrent'))) {
    // virt-handler marks a failed memory hotplug False; nothing retries it, and the VM carries RestartRequired.
    return {
      outcome: ObservedOutcome.blocked,
      blockedBy: ObservedBlock.hotplugFailed,
      pending: [...pending, MigrationTrigger.HotMemoryChange],
      summary: 'blocked: the memory hotplug failed on this VMI (HotMemoryChange=False), and KubeVirt does not retry it: it waits for a restart',
    };
  }
  if (pending.length === 0) return { outcome: ObservedOutcome.effective, pending, summary: 'effective: the guest runs every change the VMI carries' };
  const migrations = input.migrations ?? [];
  const own = unfinished(migrations).filter((m) => isOwnMigration(m, vmi));
  const what = pending.join(', ');
  if (isMigrating(vmi) || own.some((m) => !NOT_RUNNING_PHASES.has(migrationPhase(m)))) {
    return { outcome: ObservedOutcome.migrating, via: 'liveMigration', pending, summary: `migrating: a live migration carries ${what} to the guest` };
  }
  if (own.length > 0) {
    const { queuedAhead } = migrationsAhead(vmi, migrations, settings);
    return { outcome: ObservedOutcome.queued, via: 'liveMigration', queuedAhead, pending, summary: `queued: a migration is pending for ${what} (${aheadText(queuedAhead)})` };
  }
  const path = workloadUpdatePath(vmi, vm, settings, migrations, pending.includes(MigrationTrigger.VolumesChange));
  if (path.via === 'liveMigration') {
    const how = path.evacuation === undefined ? 'the workload updater will migrate it' : `the workload updater's eviction becomes a migration (evictionStrategy ${path.evacuation})`;
    return { outcome: ObservedOutcome.queued, via: 'liveMigration', queuedAhead: path.queuedAhead, pending, summary: `queued: ${how} for ${what} (${aheadText(path.queuedAhead)})` };
  }
  if (path.via === 'eviction') {
    const interval = settings.batchEvictionIntervalSeconds;
    return {
      outcome: ObservedOutcome.queued,
      via: 'eviction',
      pending,
      summary: `queued for eviction: ${blockText(path.blockedBy, vmi, settings)}; the workload updater evicts up to ${settings.batchEvictionSize} VMIs every ${interval} s`,
    };
  }
  const held = path.evictionHeld !== undefined ? `; the workload updater's eviction is ${path.evictionHeld}` : '';
  return { outcome: ObservedOutcome.blocked, blockedBy: path.blockedBy, pending, summary: `blocked: ${what} will not reach the guest until a restart: ${blockText(path.blockedBy, vmi, settings)}${held}` };
}
