/**
 * The one summary of a sync or a plan: every VM in exactly one {@link SyncState}, counted the same
 * way whether the sync did it (controller/reconcile.ts, from what the cluster made of the writes)
 * or a plan predicts it (PR review, `vmroll plan`, from the engine's plan of the commit), plus the
 * errors, warnings and orphans. The sync's status line is {@link formatSummary}; the pull-request
 * texts (report/markdown.ts) read the same counts through {@link planView}.
 */
import { PlanAction, RELEASED_WHY, Rollout, TakesEffect, type FieldRevert, type VmPlan, type VmPlanEntry } from '../rollout/index.ts';

/**
 * Where a sync leaves each VM of the repository (or where a plan says it will): every VM the
 * commit defines (or would define, but for a broken file) is in exactly one state.
 */
export const SyncState = {
  /** Created by this sync. */
  created: 'created',
  /** Updated by this sync; every field it changed reached the running guest, or is not part of it (VM metadata, runStrategy). */
  liveUpdated: 'live-updated',
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

/** The {@link Summary} count of each state. */
export const SUMMARY_FIELD: Record<SyncState, 'inSync' | 'created' | 'liveUpdated' | 'staged' | 'reverted' | 'awaitingRestart' | 'held' | 'deleted'> = {
  created: 'created',
  'live-updated': 'liveUpdated',
  staged: 'staged',
  reverted: 'reverted',
  'awaiting restart': 'awaitingRestart',
  'in sync': 'inSync',
  held: 'held',
  deleted: 'deleted',
};

/** An empty summary: every state at 0. */
export function emptySummary(): Summary {
  return { vms: 0, inSync: 0, created: 0, liveUpdated: 0, staged: 0, reverted: 0, awaitingRestart: 0, held: 0, deleted: 0, errors: 0 };
}

/** Adds one VM in `state` to `summary`. */
export function countState(summary: Summary, state: SyncState): void {
  summary.vms++;
  const field = SUMMARY_FIELD[state];
  summary[field] = (summary[field] ?? 0) + 1;
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
    const state = stateOf(vm);
    countState(s, state);
    if (state === SyncState.awaitingRestart && vm.action === PlanAction.none) s.pendingRestart = (s.pendingRestart ?? 0) + 1;
    if (state === SyncState.staged) {
      const staged = vm.changes.filter((c) => c.rollout === Rollout.staged);
      // A stopped VM has nothing to restart: its staged changes wait for the next start.
      if (staged.length > 0 && staged.every((c) => c.takesEffect === TakesEffect.nextStart)) s.atNextStart = (s.atNextStart ?? 0) + 1;
    }
  }
  return s;
}

/**
 * The counts as a pull request reads them (the comment, the `vmroll/plan` status, `vmroll plan`),
 * all derived from a {@link Summary} by {@link planView}. Every VM of the plan falls in exactly
 * one of created, deleted, inSync, liveUpdated, staged; `restarting` overlaps them.
 */
export interface PlanSummary {
  /** Entries in the plan. */
  vms: number;
  /** Updates whose every change reaches the running guest (or the VM object) at once. */
  liveUpdated: number;
  /** Updates with at least one change that waits for the next restart (RestartRequired or not). */
  staged: number;
  /**
   * VMs whose guest this plan takes down or brings up because the desired runStrategy (or `running`)
   * stops a running instance or starts one for an existing VM that has none. KubeVirt's RestartRequired
   * never restarts a VM by itself, so a staged change alone is counted under `staged`, not here.
   */
  restarting: number;
  created: number;
  deleted: number;
  /** VMs whose owned fields already match (action none). */
  inSync: number;
  /** Of the in-sync VMs, those that already carry RestartRequired from an earlier change. */
  pendingRestart: number;
  /** Manifest errors and admission refusals. */
  errors: number;
  /** VMs this repository applied that the commit no longer defines and that stay (`plan.orphans`); absent when none. */
  orphans?: number;
  /** Updates of VMs that are not running: every change waits for the VM's next start, nothing needs a restart; absent when none. */
  atNextStart?: number;
  /** Manifest warnings (`plan.warnings`: other kinds skipped, unknown fields); absent when none. */
  warnings?: number;
}

/**
 * A summary as a pull request reads it: an update that leaves RestartRequired and one staged on a
 * running VM are both "staged until restart", and a VM the plan leaves alone is "in sync" even
 * when an earlier change still awaits a restart.
 */
export function planView(s: Summary): PlanSummary {
  const pending = s.pendingRestart ?? 0;
  const atNextStart = s.atNextStart ?? 0;
  const view: PlanSummary = {
    vms: s.vms,
    liveUpdated: s.liveUpdated + (s.reverted ?? 0),
    staged: (s.awaitingRestart ?? 0) - pending + s.staged - atNextStart,
    restarting: s.restarting ?? 0,
    created: s.created,
    deleted: s.deleted,
    inSync: s.inSync + pending,
    pendingRestart: pending,
    errors: s.errors,
  };
  if ((s.orphans ?? 0) > 0) view.orphans = s.orphans ?? 0;
  if (atNextStart > 0) view.atNextStart = atNextStart;
  if ((s.warnings ?? 0) > 0) view.warnings = s.warnings ?? 0;
  return view;
}

/** The pull-request counts of a plan: {@link planView} of {@link countPlan}. */
export function summarizePlan(plan: VmPlan, power: Record<string, unknown> = {}): PlanSummary {
  return planView(countPlan(plan, power));
}

/** GitHub's cap on a commit status description; the summary is made to fit rather than be cut. */
export const SUMMARY_MAX_CHARS = 140;

/**
 * Formats a summary the way statuses, logs and the text report show it, e.g.
 * `12 in sync · 3 live-updated · 1 reverted · 1 awaiting restart · 1 held · 2 errors`. States with
 * no VM are left out, but `in sync` always shows. Longer than {@link SUMMARY_MAX_CHARS} (counts in
 * the hundred thousands), the labels shorten and the separators tighten, so no count is cut off.
 */
export function formatSummary(s: Summary): string {
  const parts: Array<[number, string, string]> = [
    [s.inSync, 'in sync', 'in sync'],
    [s.created, 'created', 'new'],
    [s.liveUpdated, 'live-updated', 'live'],
    [s.staged, 'staged', 'staged'],
    [s.reverted ?? 0, 'reverted', 'reverted'],
    [s.awaitingRestart ?? 0, 'awaiting restart', 'restart'],
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
