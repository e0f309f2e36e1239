/**
 * The restart step of a sync (issue 11), after report: the VMs of the repository whose staged
 * changes need a restart or that carry an explicit request, decided by the pure planner
 * (restart/planner.ts) at `now`, restarted through KubeVirt's `restart` subresource. Each
 * restart is claimed first, by a merge patch of the record annotations guarded by the VM's
 * resourceVersion, then issued; a claim found without its restart (a leader died between the
 * two) is issued by whoever leads next, still once. Restarts in progress pass the health gate
 * (`restartHealth`) before their slot frees; one that does not come back is closed as Failed,
 * which stops its group. Everything the step knows lives in those annotations: no memory.
 */
import type { Logger } from 'pino';
import { type ClusterBackend, ClusterError } from '../cluster/backend.ts';
import type { ClusterCache } from '../cluster/cache.ts';
import { annotationsOf, conditionsOf, labelsOf, metaOf, specOf, statusOf } from '../cluster/object.ts';
import {
  type RecordedVm,
  type RestartCandidate,
  type RestartDecision,
  type RestartPolicy,
  type RestartPolicySpec,
  type RestartRecord,
  type StringMap,
  type VmiState,
  RestartAnnotation,
  RestartDecisionKind,
  RestartStatus,
  claimAnnotations,
  finishAnnotations,
  patchedAnnotations,
  pendingRequest,
  planRestarts,
  readRestartRecord,
  restartHealth,
  restartIssued,
  vmRestartPolicy,
} from '../restart/index.ts';
import type { Obj, VmPlan } from '../rollout/index.ts';

/** What happened to one VM's restart in this sync, besides the planner's decision. */
export const RestartEvent = {
  /** Claimed and issued in this sync. */
  restarted: 'restarted',
  /** A claim a previous leader left without its restart: issued now (once, for the recorded keys). */
  resumed: 'resumed',
  /** Came back Running and Ready (and AgentConnected when expected): recorded Succeeded. */
  succeeded: 'succeeded',
  /** Did not come back within the health timeout, or KubeVirt refused the restart: recorded Failed. */
  failed: 'failed',
  /** Another writer changed the VM between reading and claiming: left to the next sync. */
  conflict: 'conflict',
} as const;
/** One of {@link RestartEvent}. */
export type RestartEvent = (typeof RestartEvent)[keyof typeof RestartEvent];

/** One VM in the restart report. */
export interface RestartLine {
  namespace: string;
  name: string;
  /** The planner's decision after this sync's events (e.g. restarting after `restarted`). */
  kind: RestartDecisionKind;
  /** What happened in this sync, if anything. */
  event: RestartEvent | null;
  /** One line for people: the planner's, or the event's. */
  text: string;
  /** When the event happened (RFC 3339, UTC); present with an event. */
  at?: string;
}

/** The restart part of a sync's report. */
export interface RestartReport {
  /** The repository's policy, as configured. */
  policy: RestartPolicy;
  /** Per VM that needs or had a restart, sorted by namespace/name. */
  vms: RestartLine[];
  /** VMs restarted (claimed and issued, or resumed) in this sync. */
  restarted: string[];
  /** VMs whose restart came back healthy in this sync. */
  succeeded: string[];
  /** VMs whose restart failed: declared in this sync or standing (their group is stopped). */
  failed: Array<{ vm: string; message: string }>;
  /** VMs still to restart by vmroll: waiting for a window, a slot, or a group held. */
  pending: number;
  /** Restarts in progress after this sync. */
  inProgress: number;
  /** When a maintenance window opens that releases waiting restarts (epoch ms), or null. */
  nextWindowAt: number | null;
  /** Why the sync should be re-checked soon (restarts in progress or blocked by a conflict), or null. */
  waiting: string | null;
}

/** What the restart step needs besides the sync's report. */
export interface RestartStepOptions {
  cluster: ClusterBackend;
  policy: RestartPolicySpec;
  /** Epoch ms; the injectable clock of windows and health timeouts. */
  now: () => number;
}

const keyOf = (v: { namespace: string; name: string }): string => `${v.namespace}/${v.name}`;

/** The VMI of a VM as the health gate reads it. */
function vmiState(vmi: Obj | undefined): VmiState | null {
  if (vmi === undefined) return null;
  const cond = (type: string): boolean => conditionsOf(vmi).some((c) => c['type'] === type && c['status'] === 'True');
  const phase = statusOf(vmi)['phase'];
  return { uid: String(metaOf(vmi)['uid'] ?? ''), terminating: metaOf(vmi)['deletionTimestamp'] != null, phase: typeof phase === 'string' ? phase : null, ready: cond('Ready'), agentConnected: cond('AgentConnected') };
}

function runStrategyOf(vm: Obj): string | null {
  const spec = specOf(vm);
  return typeof spec['runStrategy'] === 'string' ? spec['runStrategy'] : null;
}

function hasStateChangeRequests(vm: Obj): boolean {
  const r = statusOf(vm)['stateChangeRequests'];
  return Array.isArray(r) && r.length > 0;
}

/**
 * The desired VM with `vmroll.dev/restart-pending` set when its `restart-requested` token is new
 * (against the live VM, which holds what vmroll last applied) or still pending: the sync's apply
 * writes the request and its pending mark in one write, so a crash between apply and restart
 * loses no request. Once served, the mark is left out and the apply removes it.
 */
export function withRestartPending(desired: Obj, live: Obj | undefined): Obj {
  const liveAnnotations = live !== undefined ? (annotationsOf(live) as StringMap) : undefined;
  const desiredAnnotations = annotationsOf(desired) as StringMap;
  const token = pendingRequest({ previous: liveAnnotations, desired: desiredAnnotations, live: liveAnnotations });
  if (token === null) {
    if (desiredAnnotations[RestartAnnotation.pending] === undefined) return desired;
    const { [RestartAnnotation.pending]: _gone, ...rest } = desiredAnnotations;
    return { ...desired, metadata: { ...metaOf(desired), annotations: rest } };
  }
  return { ...desired, metadata: { ...metaOf(desired), annotations: { ...desiredAnnotations, [RestartAnnotation.pending]: token } } };
}

/** Runs the restart step of one repository. */
export class RestartStep {
  /**
   * Restarts this process issued, by VM, with the claim's start: a claim of these is not issued
   * again while the cache has not yet shown the old VMI go (the VM and VMI watches are separate
   * streams). A new leader starts without them and reads both from fresh lists.
   */
  private readonly issued = new Map<string, number | null>();

  constructor(private readonly options: RestartStepOptions) {}

  /** Runs the step after a sync's report step and folds it into the report (its `restarts`, its `waiting`). */
  async afterReport(report: { plan: VmPlan; waiting: string | null; restarts?: RestartReport }, cache: ClusterCache, log: Logger): Promise<void> {
    const r = await this.run({ plan: report.plan, cache, log });
    report.restarts = r;
    // The VmPlan document (`--output json`) carries it too, in its schema's shape.
    report.plan.restarts = {
      policy: r.policy,
      vms: r.vms,
      restarted: r.restarted,
      succeeded: r.succeeded,
      failed: r.failed,
      pending: r.pending,
      inProgress: r.inProgress,
      nextWindowAt: r.nextWindowAt === null ? null : new Date(r.nextWindowAt).toISOString().replace('.000Z', 'Z'),
    };
    if (r.waiting !== null) report.waiting = report.waiting === null ? r.waiting : `${report.waiting}; ${r.waiting}`;
  }

  /** Progress of restarts in progress, then the plan, then the restarts it decides; returns what to report. */
  async run(input: { plan: VmPlan; cache: ClusterCache; log: Logger }): Promise<RestartReport> {
    const { cluster, policy } = this.options;
    const { cache, log } = input;
    const events = new Map<string, { event: RestartEvent; text: string; at?: number }>();
    /** The repository's live VMs, with the annotations this step has written since reading them. */
    const vms = new Map<string, Obj>();
    for (const e of input.plan.vms) {
      const live = cache.vms.get(keyOf(e));
      if (live !== undefined) vms.set(keyOf(e), live);
    }
    const patch = async (key: string, annotations: Record<string, string | null>): Promise<boolean> => {
      const vm = vms.get(key);
      if (vm === undefined) return false;
      const m = metaOf(vm);
      try {
        const stored = await cluster.patchVirtualMachineAnnotations({ namespace: String(m['namespace']), name: String(m['name']) }, annotations, String(m['resourceVersion'] ?? ''));
        vms.set(key, Object.keys(stored).length > 0 ? stored : { ...vm, metadata: { ...m, annotations: patchedAnnotations(annotationsOf(vm) as StringMap, annotations) } });
        return true;
      } catch (e) {
        if (e instanceof ClusterError && (e.code === 'Conflict' || e.code === 'NotFound')) {
          events.set(key, { event: RestartEvent.conflict, text: `not restarted now: the VM changed while vmroll read it (${e.code}); re-checked at the next sync` });
          return false;
        }
        throw e;
      }
    };
    const issue = async (key: string): Promise<string | null> => {
      const [namespace = '', name = ''] = key.split('/');
      try {
        await cluster.restartVirtualMachine({ namespace, name });
        return null;
      } catch (e) {
        // Transient failures are retried next sync (restartIssued stays false); a refusal is the restart's failure.
        if (e instanceof ClusterError && (e.code === 'Unavailable' || e.code === 'Forbidden')) throw e;
        return e instanceof Error ? e.message : String(e);
      }
    };

    // 1. Restarts in progress: issue a claim left without its restart, then the health gate.
    for (const [key, vm] of [...vms].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))) {
      const record = readRestartRecord(annotationsOf(vm) as StringMap);
      if (record.status !== RestartStatus.InProgress) continue;
      const vmi = vmiState(cache.vmis.get(key));
      const mine = this.issued.has(key) && this.issued.get(key) === record.startedAt;
      if (!mine && !restartIssued(record, vmi, hasStateChangeRequests(vm))) {
        const refused = await issue(key);
        if (refused === null) {
          this.issued.set(key, record.startedAt);
          events.set(key, { event: RestartEvent.resumed, text: 'restart issued: its claim was recorded earlier, but the restart had not reached KubeVirt (a leader stopped, or the call failed, in between)' });
          log.info({ vm: key }, 'restart resumed from a claim without its restart');
        } else if (await patch(key, finishAnnotations({ status: RestartStatus.Failed, now: this.options.now(), message: `KubeVirt refused the restart: ${refused}` }))) {
          events.set(key, { event: RestartEvent.failed, text: `restart failed: KubeVirt refused it: ${refused}` });
        }
        continue;
      }
      const health = restartHealth({ record, vmi, expectAgent: annotationsOf(vm)[RestartAnnotation.agent] === 'true', now: this.options.now(), timeoutMs: policy.healthTimeoutMs });
      if (health.state === 'waiting') continue;
      const status = health.state === 'healthy' ? RestartStatus.Succeeded : RestartStatus.Failed;
      if (await patch(key, finishAnnotations({ status, now: this.options.now(), message: health.message }))) {
        events.set(key, { event: status === RestartStatus.Succeeded ? RestartEvent.succeeded : RestartEvent.failed, text: status === RestartStatus.Succeeded ? `restarted: ${health.message}` : `restart failed: ${health.message}` });
        if (status === RestartStatus.Failed) log.warn({ vm: key, message: health.message }, 'restart failed: its group is stopped');
        else log.info({ vm: key }, 'restart succeeded');
      }
    }

    // 2. The plan, from the records as they are now.
    const plan = this.plan(input.plan, vms);

    // 3. The restarts it decides: claim (guarded by resourceVersion), then restart.
    for (const d of plan.decisions) {
      if (d.kind !== RestartDecisionKind.restartNow) continue;
      const key = keyOf(d);
      const vm = vms.get(key);
      if (vm === undefined) continue;
      const vmi = vmiState(cache.vmis.get(key));
      const claim = {
        ...claimAnnotations({ generation: Number(metaOf(vm)['generation'] ?? 0), request: d.serves.request, vmiUid: vmi?.uid ?? null, now: this.options.now() }),
        [RestartAnnotation.agent]: vmi?.agentConnected === true ? 'true' : null,
      };
      if (!(await patch(key, claim))) continue;
      const refused = await issue(key);
      if (refused !== null) {
        await patch(key, finishAnnotations({ status: RestartStatus.Failed, now: this.options.now(), message: `KubeVirt refused the restart: ${refused}` }));
        events.set(key, { event: RestartEvent.failed, text: `restart failed: KubeVirt refused it: ${refused}` });
        continue;
      }
      this.issued.set(key, readRestartRecord(annotationsOf(vms.get(key) ?? {}) as StringMap).startedAt);
      events.set(key, { event: RestartEvent.restarted, text: d.text, at: this.options.now() });
      log.info({ vm: key, serves: d.serves, why: d.text }, 'restart issued');
    }

    // 4. The report: the plan again after this sync's writes, with what happened.
    const after = this.plan(input.plan, vms);
    // A VM restarted in an earlier sync with nothing left to serve is not worth a line.
    const lines: RestartLine[] = after.decisions.filter((d) => d.kind !== RestartDecisionKind.done || events.has(keyOf(d))).map((d) => {
      const ev = events.get(keyOf(d));
      // Stamped here, once per sync: the events of one sync happen within its few seconds.
      return { namespace: d.namespace, name: d.name, kind: d.kind, event: ev?.event ?? null, text: ev?.text ?? d.text, ...(ev !== undefined && { at: new Date(ev.at ?? this.options.now()).toISOString().replace(/\.\d{3}Z$/, 'Z') }) };
    });
    const byEvent = (e: RestartEvent): string[] => lines.filter((l) => l.event === e).map(keyOf);
    const failed = after.decisions.filter((d) => d.kind === RestartDecisionKind.failed).map((d) => ({ vm: keyOf(d), message: readRestartRecord(annotationsOf(vms.get(keyOf(d)) ?? {}) as StringMap).message ?? 'did not come back Ready' }));
    const inProgress = after.decisions.filter((d) => d.kind === RestartDecisionKind.restarting).length;
    const waitingKinds: RestartDecisionKind[] = [RestartDecisionKind.waitWindow, RestartDecisionKind.waitBudget, RestartDecisionKind.restartNow, RestartDecisionKind.held];
    const pending = after.decisions.filter((d) => waitingKinds.includes(d.kind)).length;
    const windows = after.decisions.filter((d) => d.kind === RestartDecisionKind.waitWindow && d.window !== undefined).map((d) => d.window?.start ?? Infinity);
    const conflicts = byEvent(RestartEvent.conflict);
    const waiting: string[] = [];
    if (inProgress > 0) waiting.push(`${inProgress} restart${inProgress === 1 ? '' : 's'} in progress`);
    if (conflicts.length > 0) waiting.push(`${conflicts.length} restart${conflicts.length === 1 ? '' : 's'} not claimed for a conflicting writer`);
    return {
      policy: policy.policy,
      vms: lines,
      restarted: [...byEvent(RestartEvent.restarted), ...byEvent(RestartEvent.resumed)],
      succeeded: byEvent(RestartEvent.succeeded),
      failed,
      pending,
      inProgress,
      nextWindowAt: windows.length > 0 ? Math.min(...windows) : null,
      waiting: waiting.length > 0 ? waiting.join('; ') : null,
    };
  }

  /** The planner over the repository's VMs as `vms` holds them. */
  private plan(vmPlan: VmPlan, vms: ReadonlyMap<string, Obj>): { decisions: RestartDecision[] } {
    const { policy } = this.options;
    const candidates: RestartCandidate[] = [];
    const records: RecordedVm[] = [];
    for (const entry of vmPlan.vms) {
      const key = keyOf(entry);
      const vm = vms.get(key);
      if (vm === undefined) continue;
      const annotations = annotationsOf(vm) as StringMap;
      const labels = labelsOf(vm) as StringMap;
      const record: RestartRecord = readRestartRecord(annotations);
      if (record.status !== null) records.push({ namespace: entry.namespace, name: entry.name, group: vmRestartPolicy(policy, { namespace: entry.namespace, labels, annotations }).group, record });
      const restartRequired = conditionsOf(vm).some((c) => c['type'] === 'RestartRequired' && c['status'] === 'True');
      // Live changes no migration carries (blocked: they wait for a restart) need one as much as staged ones.
      const blocked = entry.changes.some((c) => c.reachesGuest === 'awaitingRestart');
      // The workload updater's eviction restarts the VM itself: vmroll does not add a second restart for the same changes.
      const evicted = entry.disruption?.kind === 'restart';
      const stagedGeneration = (restartRequired || blocked) && !evicted ? Number(metaOf(vm)['generation'] ?? 0) : null;
      const request = pendingRequest({ previous: annotations, desired: annotations, live: annotations });
      if (stagedGeneration === null && request === null && record.status === null) continue;
      candidates.push({
        namespace: entry.namespace,
        name: entry.name,
        stagedGeneration,
        request,
        // A migration carries the live changes; staged ones (RestartRequired) still need a restart.
        migratable: entry.disruption?.kind === 'migration' && !restartRequired,
        runStrategy: runStrategyOf(vm),
        labels,
        annotations,
      });
    }
    return planRestarts({ policy, candidates, records, now: this.options.now() });
  }
}
