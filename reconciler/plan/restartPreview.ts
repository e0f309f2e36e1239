/**
 * Restarts before the merge (issue 11): for the VMs a commit's plan would leave needing a restart
 * (staged changes with RestartRequired, live changes no migration carries, a new
 * `vmroll.dev/restart-requested` token), what the repository's restart policy would do once it is
 * applied, decided by the same planner the sync uses (restart/planner.ts) at `now`, with the
 * restart records on the live VMs (in progress, done this window, failed groups) counting as they
 * will. Read only: the cache and the desired VMs, nothing is written.
 */
import { SOURCE_REPO_ANNOTATION } from '../apply/ownership.ts';
import type { ClusterCache } from '../cluster/cache.ts';
import { annotationsOf, conditionsOf, labelsOf, metaOf, specOf } from '../cluster/object.ts';
import {
  type RecordedVm,
  type RestartCandidate,
  type RestartDecision,
  type RestartPolicySpec,
  type StringMap,
  RestartDecisionKind,
  RestartStatus,
  mergeGateReasons,
  pendingRequest,
  planRestarts,
  readRestartRecord,
  vmRestartPolicy,
} from '../restart/index.ts';
import { type Obj, PlanAction, ReachesGuest, type VmPlan, type VmPlanEntry } from '../rollout/index.ts';

/** The restart part of a plan, in the VmPlan schema's shape (`VmPlan.restarts`). */
export type PlannedRestarts = NonNullable<VmPlan['restarts']>;

/** What {@link previewRestarts} answers. */
export interface RestartPreview {
  /** Per VM the commit would leave needing a restart, with the line a reviewer reads. */
  restarts: PlannedRestarts;
  /** Why the optional merge gate fails (`mergeGateReasons`), whether or not the policy turns the gate on. */
  gateReasons: string[];
  /** The policy's `mergeGate`: only then do {@link gateReasons} fail `vmroll/plan`. */
  mergeGate: boolean;
}

/** Input of {@link previewRestarts}. */
export interface RestartPreviewInput {
  plan: VmPlan;
  /** The desired VM of each planned VM by `namespace/name`, as it would be applied. */
  desired: ReadonlyMap<string, Obj>;
  cache: ClusterCache;
  /** The value of `vmroll.dev/source-repo` on this repository's VMs: their records count toward the budget. */
  identity: string;
  policy: RestartPolicySpec;
  /** Epoch ms, from the caller's (injectable) clock. */
  now: number;
}

const keyOf = (v: { namespace: string; name: string }): string => `${v.namespace}/${v.name}`;

/**
 * The planner's line as it reads before the merge: nothing restarts "now" while the change is a
 * pull request; it restarts once the sync after the merge applies it.
 */
function beforeMergeText(d: RestartDecision): string {
  if (d.kind !== RestartDecisionKind.restartNow) return d.text;
  if (d.window !== undefined && d.inWindow !== undefined) return `restarts as soon as it is merged, in the current window (${d.window.text}), ${d.inWindow.position} of ${d.inWindow.of} this window`;
  return `restarts as soon as it is merged (policy ${d.policy}${d.serves.request !== null ? `, requested: ${d.serves.request}` : ''})`;
}

function runStrategyOf(vm: Obj): string | null {
  const rs = specOf(vm)['runStrategy'];
  return typeof rs === 'string' ? rs : null;
}

/** Whether the entry leaves the VM needing a restart that vmroll would serve, as the sync's restart step counts it. */
function stagedByPlan(entry: VmPlanEntry): boolean {
  if (entry.action !== PlanAction.update) return false;
  // The workload updater's eviction restarts the VM itself.
  if (entry.disruption?.kind === 'restart') return false;
  return entry.restartRequired || entry.changes.some((c) => c.reachesGuest === ReachesGuest.awaitingRestart);
}

/** Plans the restarts a commit's plan would lead to under `policy` at `now`. */
export function previewRestarts(input: RestartPreviewInput): RestartPreview {
  const { plan, cache, policy, now } = input;
  const records: RecordedVm[] = [];
  for (const [key, vm] of cache.vms) {
    const annotations = annotationsOf(vm) as StringMap;
    if (annotations[SOURCE_REPO_ANNOTATION] !== input.identity) continue;
    const record = readRestartRecord(annotations);
    if (record.status === null) continue;
    const [namespace = '', name = ''] = key.split('/');
    records.push({ namespace, name, group: vmRestartPolicy(policy, { namespace, labels: labelsOf(vm) as StringMap, annotations }).group, record });
  }
  const candidates: RestartCandidate[] = [];
  for (const entry of plan.vms) {
    const key = keyOf(entry);
    const live = cache.vms.get(key);
    const desired = input.desired.get(key);
    if (live === undefined || desired === undefined || entry.action === PlanAction.delete) continue;
    const liveAnnotations = annotationsOf(live) as StringMap;
    const desiredAnnotations = annotationsOf(desired) as StringMap;
    // The live VM holds what vmroll last applied: a token the commit changes is a new request.
    const request = pendingRequest({ previous: liveAnnotations, desired: desiredAnnotations, live: liveAnnotations });
    const staged = stagedByPlan(entry);
    if (!staged && request === null) continue;
    const liveGeneration = Number(metaOf(live)['generation'] ?? 0);
    const restartRequired = conditionsOf(live).some((c) => c['type'] === 'RestartRequired' && c['status'] === 'True') || entry.restartRequired;
    candidates.push({
      namespace: entry.namespace,
      name: entry.name,
      // The applied update is a new generation: no restart recorded so far has served it.
      stagedGeneration: staged ? liveGeneration + 1 : null,
      request,
      migratable: entry.disruption?.kind === 'migration' && !restartRequired,
      runStrategy: runStrategyOf(desired),
      labels: labelsOf(desired) as StringMap,
      annotations: desiredAnnotations,
    });
  }
  const restartPlan = planRestarts({ policy, candidates, records, now });
  const mine = new Set(candidates.map(keyOf));
  // Only the VMs this commit touches: other VMs' records shaped the plan, their lines belong to the sync.
  const decisions = restartPlan.decisions.filter((d) => mine.has(keyOf(d)));
  const waitingKinds: RestartDecisionKind[] = [RestartDecisionKind.waitWindow, RestartDecisionKind.waitBudget, RestartDecisionKind.restartNow, RestartDecisionKind.held];
  const windows = decisions.filter((d) => d.kind === RestartDecisionKind.waitWindow && d.window !== undefined).map((d) => d.window?.start ?? Infinity);
  const restarts: PlannedRestarts = {
    policy: policy.policy,
    vms: decisions.map((d) => ({ namespace: d.namespace, name: d.name, kind: d.kind, event: null, text: beforeMergeText(d) })),
    restarted: [],
    succeeded: [],
    failed: records.filter((r) => r.record.status === RestartStatus.Failed && mine.has(keyOf(r))).map((r) => ({ vm: keyOf(r), message: r.record.message ?? 'did not come back Ready' })),
    pending: decisions.filter((d) => waitingKinds.includes(d.kind)).length,
    inProgress: decisions.filter((d) => d.kind === RestartDecisionKind.restarting).length,
    nextWindowAt: windows.length > 0 ? new Date(Math.min(...windows)).toISOString().replace('.000Z', 'Z') : null,
  };
  return { restarts, gateReasons: mergeGateReasons({ ...restartPlan, decisions }, policy), mergeGate: policy.mergeGate };
}
