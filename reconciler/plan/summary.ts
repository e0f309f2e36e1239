/**
 * The one summary of a sync or a plan: every VM in exactly one {@link SyncState}, counted the same
 * way whether the sync did it (controller/reconcile.ts, from what the cluster made of the writes and
 * where each guest stands) or a plan predicts it (PR review, `vmroll plan`, from the engine's plan of
 * the commit), plus the errors, warnings and orphans. The sync's status line is {@link formatSummary};
 * the pull-request texts (report/markdown.ts) read the same {@link Summary}.
 */
import { MigrationBlock, ObservedBlock, ObservedOutcome, PlanAction, RELEASED_WHY, ReachesGuest, Rollout, TakesEffect, type FieldRevert, type VmPlan, type VmPlanEntry } from '../rollout/index.ts';

/**
 * Where a sync leaves each VM of the repository (or where a plan says it will): every VM the
 * commit defines (or would define, but for a broken file) is in exactly one state.
 */
export const SyncState = {
  /** Created by this sync. */
  created: 'created',
  /** Updated by this sync; every field it changed reached the running guest, or is not part of it (VM metadata, runStrategy). */
  liveUpdated: 'live-updated',
  /** A live change written to the VMI is on its way to the guest: a live migration carrying it runs. */
  migrating: 'migrating',
  /** A live change written to the VMI waits for a migration (or an eviction) KubeVirt will start: pending, or yet to be created by its workload updater. */
  queued: 'queued',
  /** A live change written to the VMI will not reach the guest until a restart: no migration will start (no LiveMigrate method, not migratable). */
  blocked: 'blocked',
  /** KubeVirt's workload updater evicted the VMI to carry a change: the guest is restarting (or stopped, when its runStrategy does not start it). */
  evicted: 'evicted',
  /** Updated by this sync; some field waits for the next start, and KubeVirt set no RestartRequired (a stopped VM, template metadata). */
  staged: 'staged',
  /** Updated by this sync, and every field it changed is a revert (see `changeOutcome` in rollout/introduced.ts); no restart pending. */
  reverted: 'reverted',
  /** RestartRequired is on the VM after this sync, set by this sync or earlier. */
  awaitingRestart: 'awaiting restart',
  /** Left alone by this sync, nothing waits for a restart. */
  inSync: 'in sync',
  /** Left as the cluster holds it because its file has errors at this commit (or the apply failed): the errors say why. */
  held: 'held',
  /** Pruned by this sync. */
  deleted: 'deleted',
} as const;
/** One of {@link SyncState}. */
export type SyncState = (typeof SyncState)[keyof typeof SyncState];

/**
 * Counts for a status line such as `12 in sync · 3 live-updated · 1 awaiting restart`: one per
 * {@link SyncState}, then what a plan adds. The states a plan cannot know before the cluster
 * answers (`reverted`, `held`) are 0 in a plan; the plan-only details are absent in a sync.
 */
export interface Summary {
  /** VMs counted (the sum of the states). */
  vms: number;
  inSync: number;
  created: number;
  liveUpdated: number;
  /** Sync: a migration carrying a live change runs. Plan: live changes KubeVirt's workload updater will carry by live migration. */
  migrating?: number;
  /** Sync only: the migration (or eviction) that carries a live change is pending or yet to be created. */
  queued?: number;
  /** Live changes patched into the VMI that will not reach the guest until a restart (observed, or predicted by a plan). */
  blocked?: number;
  /** Why the blocked VMs are blocked, short and distinct (e.g. `not migratable`); absent when none is. */
  blockedWhy?: string[];
  /** Sync: the workload updater evicted the VMI. Plan: it will evict it (the `Evict` method): a restart. */
  evicted?: number;
  staged: number;
  reverted?: number;
  awaitingRestart?: number;
  held?: number;
  deleted: number;
  /** VMs this repository applied that Git no longer defines and that were kept (see `plan.orphans`). */
  orphans?: number;
  /** Manifest warnings: documents skipped (other kinds) and fields KubeVirt does not define (see `plan.warnings`). */
  warnings?: number;
  /** Manifest, admission and apply errors (one broken file may hold several VMs, and one VM several errors). */
  errors: number;
  /** Plan only: of the `awaitingRestart` VMs, those the plan leaves alone (RestartRequired from an earlier change). */
  pendingRestart?: number;
  /** Plan only: of the `staged` VMs, those not running: every change waits for the next start. */
  atNextStart?: number;
  /** Plan only: VMs whose guest the desired runStrategy (or `running`) stops, or starts for an existing VM without one. */
  restarting?: number;
}

/** The {@link Summary} count of each state: the {@link SyncState} key that names it. */
export const SUMMARY_FIELD = Object.fromEntries(Object.entries(SyncState).map(([key, state]) => [state, key])) as Record<SyncState, keyof typeof SyncState>;

/** An empty summary: every state at 0. */
export function emptySummary(): Summary {
  return { vms: 0, inSync: 0, created: 0, liveUpdated: 0, migrating: 0, queued: 0, blocked: 0, evicted: 0, staged: 0, reverted: 0, awaitingRestart: 0, held: 0, deleted: 0, errors: 0 };
}

/** The short words of a block reason, as the status line shows them after `blocked:`. */
export const BLOCK_WORDS: Record<ObservedBlock, string> = {
  [MigrationBlock.noLiveMigrateMethod]: 'no LiveMigrate method',
  [MigrationBlock.notMigratable]: 'not migratable',
  [MigrationBlock.kubevirtNotDeployed]: 'KubeVirt not Deployed',
  [MigrationBlock.kubevirtUpdating]: 'KubeVirt updating',
  [ObservedBlock.hotplugFailed]: 'hotplug failed',
};

/** Adds one VM in `state` to `summary`; a blocked VM adds its reason (`blockedBy`) to `blockedWhy`. */
export function countState(summary: Summary, state: SyncState, blockedBy?: ObservedBlock): void {
  summary.vms++;
  const field = SUMMARY_FIELD[state];
  summary[field] = (summary[field] ?? 0) + 1;
  if (state === SyncState.blocked && blockedBy !== undefined) {
    const words = BLOCK_WORDS[blockedBy];
    const why = (summary.blockedWhy ??= []);
    if (!why.includes(words)) {
      why.push(words);
      why.sort();
    }
  }
}

/**
 * The state of a VM the sync wrote (or follows), given where its guest stands: a live change on its
 * way (`migrating`, `queued`), held (`blocked`) or carried by an eviction (`evicted`) replaces
 * `live-updated` and `staged`; RestartRequired (`awaiting restart`) stays unless the VMI is being
 * evicted, which is the restart. An effective guest leaves the state as it was.
 */
export function observedState(state: SyncState, outcome: ObservedOutcome | undefined): SyncState {
  if (outcome === undefined || outcome === ObservedOutcome.effective) return state;
  const replaceable = state === SyncState.liveUpdated || state === SyncState.staged || state === SyncState.reverted;
  switch (outcome) {
    case ObservedOutcome.migrating:
      return replaceable ? SyncState.migrating : state;
    case ObservedOutcome.queued:
      return replaceable ? SyncState.queued : state;
    case ObservedOutcome.blocked:
      return replaceable ? SyncState.blocked : state;
    case ObservedOutcome.restarting:
    case ObservedOutcome.stopped:
      return replaceable || state === SyncState.awaitingRestart ? SyncState.evicted : state;
  }
  return state;
}

/**
 * The state a plan predicts for a VM once its live changes meet KubeVirt's workload updater: an
 * eviction (`evicted`), a change that will not reach the guest (`blocked`), a live migration
 * (`migrating`); else {@link stateOf}. Only updates and creates that were `live-updated` change.
 */
export function predictedState(entry: VmPlanEntry): { state: SyncState; blockedBy?: ObservedBlock } {
  const state = stateOf(entry);
  if (state !== SyncState.liveUpdated && state !== SyncState.staged) return { state };
  const own = entry.changes.filter((c) => c.why !== RELEASED_WHY);
  if (own.some((c) => c.reachesGuest === ReachesGuest.eviction)) return { state: SyncState.evicted };
  const held = own.find((c) => c.reachesGuest === ReachesGuest.awaitingRestart);
  if (held !== undefined) return held.migration?.blockedBy !== undefined ? { state: SyncState.blocked, blockedBy: held.migration.blockedBy } : { state: SyncState.blocked };
  if (own.some((c) => c.reachesGuest === ReachesGuest.liveMigration)) return { state: SyncState.migrating };
  return { state };
}

/**
 * The state of a VM given its plan entry (after a sync: the entry of what the cluster holds, with
 * the fields the sync reverted; before: the engine's prediction). Created, deleted, then
 * RestartRequired decides; an update's own staged changes make it staged, else live-updated.
 */
export function stateOf(entry: VmPlanEntry, reverts: readonly FieldRevert[] = []): SyncState {
  if (entry.action === PlanAction.create) return SyncState.created;
  if (entry.action === PlanAction.delete) return SyncState.deleted;
  if (entry.restartRequired) return SyncState.awaitingRestart;
  if (entry.action !== PlanAction.update) return SyncState.inSync;
  // Released live updates are a consequence of the commit's change, not a change of their own.
  const own = entry.changes.filter((c) => c.why !== RELEASED_WHY);
  if (reverts.length > 0 && own.length === 0) return SyncState.reverted;
  return own.some((c) => c.rollout === Rollout.staged) ? SyncState.staged : SyncState.liveUpdated;
}

/** Counts a plan's entries by {@link stateOf}, as a sync would count them; `power` (by `namespace/name`) adds the runStrategy stops and starts. */
export function countPlan(plan: VmPlan, power: Record<string, unknown> = {}): Summary {
  const s: Summary = { ...emptySummary(), errors: plan.errors.length, restarting: Object.keys(power).length, pendingRestart: 0, atNextStart: 0 };
  if ((plan.orphans?.length ?? 0) > 0) s.orphans = plan.orphans?.length ?? 0;
  if ((plan.warnings?.length ?? 0) > 0) s.warnings = plan.warnings?.length ?? 0;
  for (const vm of plan.vms) {
    const { state, blockedBy } = predictedState(vm);
    countState(s, state, blockedBy);
    if (state === SyncState.awaitingRestart && vm.action === PlanAction.none) s.pendingRestart = (s.pendingRestart ?? 0) + 1;
    if (state === SyncState.staged) {
      const staged = vm.changes.filter((c) => c.rollout === Rollout.staged);
      // A stopped VM has nothing to restart: its staged changes wait for the next start.
      if (staged.length > 0 && staged.every((c) => c.takesEffect === TakesEffect.nextStart)) s.atNextStart = (s.atNextStart ?? 0) + 1;
    }
  }
  return s;
}

/** GitHub's cap on a commit status description; the summary is made to fit rather than be cut. */
export const SUMMARY_MAX_CHARS = 140;

/**
 * Formats a summary the way statuses, logs and the text report show it, e.g.
 * `12 in sync · 3 live-updated · 2 migrating · 1 awaiting restart · 1 blocked: not migratable · 2 errors`. States with
 * no VM are left out, but `in sync` always shows. Longer than {@link SUMMARY_MAX_CHARS} (counts in
 * the hundred thousands), the labels shorten and the separators tighten, so no count is cut off.
 */
export function formatSummary(s: Summary): string {
  const parts: Array<[number, string, string]> = [
    [s.inSync, 'in sync', 'in sync'],
    [s.created, 'created', 'new'],
    [s.liveUpdated, 'live-updated', 'live'],
    [s.migrating ?? 0, 'migrating', 'migr'],
    [s.queued ?? 0, 'queued', 'queued'],
    [s.staged, 'staged', 'staged'],
    [s.reverted ?? 0, 'reverted', 'reverted'],
    [s.awaitingRestart ?? 0, 'awaiting restart', 'restart'],
    [s.evicted ?? 0, 'evicted', 'evict'],
    [s.blocked ?? 0, (s.blockedWhy ?? []).length > 0 ? `blocked: ${(s.blockedWhy ?? []).join(', ')}` : 'blocked', 'blocked'],
    [s.held ?? 0, 'held', 'held'],
    [s.deleted, 'deleted', 'deleted'],
    [s.orphans ?? 0, 'orphaned', 'orphan'],
    [s.warnings ?? 0, s.warnings === 1 ? 'warning' : 'warnings', 'warn'],
    [s.errors, s.errors === 1 ? 'error' : 'errors', 'err'],
  ];
  const shown = parts.filter(([n], i) => i === 0 || n > 0);
  const long = shown.map(([n, label]) => `${n} ${label}`).join(' · ');
  if (long.length <= SUMMARY_MAX_CHARS) return long;
  return shown.map(([n, , short]) => `${n} ${short}`).join(',');
}
