/**
 * The restart planner: for every VM that needs a restart (staged changes with RestartRequired, or an
 * explicit request), what vmroll does now and why, from the policies, the protection marker, the
 * restart records in the cluster and `now`. Pure: the caller reads the cluster, this decides, the
 * caller restarts the VMs decided `restartNow` (claim first, record.ts) and reports every line.
 */
import { RestartAnnotation, PROTECTED_VALUE, type StringMap } from './annotations.ts';
import { RestartPolicy, type RestartPolicySpec, vmRestartPolicy } from './policy.ts';
import { type RestartRecord, NO_RECORD, RestartStatus, generationServed, requestServed, rfc3339 } from './record.ts';
import { type WindowOccurrence, currentWindow, formatOccurrence, nextWindow } from './window.ts';

/** What the planner decides for one VM. */
export const RestartDecisionKind = {
  /** Restart it now (a free slot, and a window open when its policy needs one). */
  restartNow: 'restartNow',
  /** Waits for a maintenance window (`window` says which opening). */
  waitWindow: 'waitWindow',
  /** Its turn has come but the budget is used: waits for a free slot (`position` in line). */
  waitBudget: 'waitBudget',
  /** Policy manual and no explicit request: reported, a person restarts it. */
  manual: 'manual',
  /** `vmroll.dev/restart: never`: vmroll never restarts it. */
  protected: 'protected',
  /** A live migration brings its staged changes up to date: no restart for them. */
  notNeeded: 'notNeeded',
  /** runStrategy Halted or Manual: vmroll never starts or restarts it. */
  never: 'never',
  /** A restart by vmroll is in progress (waiting for the VM to come back). */
  restarting: 'restarting',
  /** vmroll already restarted it for this generation and request. */
  done: 'done',
  /** Its last restart failed: it and its group wait for a person. */
  failed: 'failed',
  /** Another VM of its group failed to come back: the group's restarts are stopped. */
  held: 'held',
} as const;
/** One of {@link RestartDecisionKind}. */
export type RestartDecisionKind = (typeof RestartDecisionKind)[keyof typeof RestartDecisionKind];

/** runStrategies under which vmroll never starts a VM, so never restarts it either. */
export const NEVER_STARTED_RUN_STRATEGIES: readonly string[] = ['Halted', 'Manual'];

/** A VM that needs a restart, as the sync sees it. */
export interface RestartCandidate {
  namespace: string;
  name: string;
  /** The VM's metadata.generation when it has staged changes that need a restart (RestartRequired); null when none. */
  stagedGeneration: number | null;
  /** The pending explicit request (record.ts `pendingRequest`), or null. */
  request: string | null;
  /** A live migration can bring its staged changes up to date. */
  migratable: boolean;
  /** spec.runStrategy (null for the older `running` field, or none). */
  runStrategy: string | null;
  /** The desired VM's labels and annotations: policy override, protection, group. */
  labels?: StringMap | undefined;
  annotations?: StringMap | undefined;
}

/** The restart record of one VM of the repository (every VM that has one), from its live annotations. */
export interface RecordedVm {
  namespace: string;
  name: string;
  /** Its restart group (policy.ts `vmRestartPolicy(...).group`); default its namespace. */
  group?: string;
  record: RestartRecord;
}

/** Everything the planner decides from. */
export interface RestartPlanInput {
  /** The repository's restart policy. */
  policy: RestartPolicySpec;
  candidates: readonly RestartCandidate[];
  /** Restart records of the repository's VMs (candidates or not): restarts in progress, done in this window, failed groups. */
  records: readonly RecordedVm[];
  /** Epoch ms. */
  now: number;
}

/** The decision for one VM. */
export interface RestartDecision {
  namespace: string;
  name: string;
  kind: RestartDecisionKind;
  /** The policy that applies to it. */
  policy: RestartPolicy;
  group: string;
  /** What the restart serves: the generation (staged changes) and/or the request token. */
  serves: { generation: number | null; request: string | null };
  /** For waitWindow and window restarts: the opening it restarts in. */
  window?: { start: number; end: number; text: string; index: number };
  /** 1-based place among the restarts of that window opening, and how many it holds. */
  inWindow?: { position: number; of: number };
  /** For waitBudget: 1-based place in line for a free slot. */
  position?: number;
  /** A protected VM the policy or a request would otherwise restart (the merge gate's concern). */
  wouldRestart?: boolean;
  /** Pushed past its first possible window opening by the per-window budget. */
  overBudget?: boolean;
  /** Problems with the VM's restart annotations (policy.ts), already decided the safe way. */
  problems: string[];
  /** One line for reports and PR comments. */
  text: string;
}

/** The planner's answer. */
export interface RestartPlan {
  decisions: RestartDecision[];
  /** The window opening `now` is in, if any. */
  current: WindowOccurrence | null;
  /** Restarts in progress (counted against `budget.concurrent`), before this plan's. */
  inProgress: number;
}

const key = (v: { namespace: string; name: string }): string => `${v.namespace}/${v.name}`;
/** Code-unit order: the same on every machine, whatever its locale. */
const byKey = (a: { namespace: string; name: string }, b: { namespace: string; name: string }): number => (key(a) < key(b) ? -1 : key(a) > key(b) ? 1 : 0);

function when(at: number | null): string {
  return at === null ? 'at an unknown time' : `${rfc3339(at).slice(0, 16).replace('T', ' ')} UTC`;
}

function ordinal(n: number): string {
  const s = n % 100 >= 11 && n % 100 <= 13 ? 'th' : (['th', 'st', 'nd', 'rd'][n % 10] ?? 'th');
  return `${n}${s}`;
}

function windowName(index: number): string {
  return index === 0 ? 'the current window' : index === 1 ? 'the next window' : index === 2 ? 'the window after next' : `the ${ordinal(index)} window from now`;
}

/** Plans the restarts of one repository's VMs at `now`; candidates are decided in namespace/name order. */
export function planRestarts(input: RestartPlanInput): RestartPlan {
  const { policy, now } = input;
  const records = new Map(input.records.map((r) => [key(r), r]));
  const inProgress = input.records.filter((r) => r.record.status === RestartStatus.InProgress).length;
  const failedByGroup = new Map<string, string>();
  for (const r of [...input.records].sort(byKey)) {
    const group = r.group ?? r.namespace;
    if (r.record.status === RestartStatus.Failed && !failedByGroup.has(group)) failedByGroup.set(group, key(r));
  }
  const current = currentWindow(policy.windows, now);
  const usedThisWindow = current === null ? 0 : input.records.filter((r) => r.record.startedAt !== null && r.record.startedAt >= current.start && r.record.startedAt <= now).length;

  const decisions: RestartDecision[] = [];
  /** VMs that passed every filter, in order, waiting for a slot or a window. */
  const queue: Array<{ d: RestartDecision; viaWindow: boolean; request: string | null }> = [];
  const candidates = [...input.candidates].sort(byKey);
  for (const c of candidates) {
    const vp = vmRestartPolicy(policy, { namespace: c.namespace, labels: c.labels, annotations: c.annotations });
    const record = records.get(key(c))?.record ?? NO_RECORD;
    const d = (kind: RestartDecisionKind, text: string, extra: Partial<RestartDecision> = {}): RestartDecision => ({
      namespace: c.namespace,
      name: c.name,
      kind,
      policy: vp.policy,
      group: vp.group,
      serves: { generation: null, request: null },
      problems: vp.problems,
      text,
      ...extra,
    });
    const stagedNeeds = c.stagedGeneration !== null && !generationServed(record, c.stagedGeneration);
    const requestNeeds = c.request !== null && !requestServed(record, c.request);
    const serves = { generation: stagedNeeds && !c.migratable ? c.stagedGeneration : null, request: requestNeeds ? c.request : null };
    if (vp.protected) {
      const would = serves.request !== null || (serves.generation !== null && vp.policy !== RestartPolicy.manual);
      decisions.push(d(RestartDecisionKind.protected, `never restarted by vmroll: protected (${RestartAnnotation.protect}: ${PROTECTED_VALUE})${serves.generation !== null ? '; its staged changes wait for a manual restart' : ''}`, { wouldRestart: would, serves }));
      continue;
    }
    if (c.runStrategy !== null && NEVER_STARTED_RUN_STRATEGIES.includes(c.runStrategy)) {
      decisions.push(d(RestartDecisionKind.never, `never restarted by vmroll: runStrategy ${c.runStrategy}; its changes take effect when it is next started`, { serves }));
      continue;
    }
    if (record.status === RestartStatus.InProgress) {
      decisions.push(d(RestartDecisionKind.restarting, `restarting (started ${when(record.startedAt)})`, { serves: { generation: record.generation, request: record.request } }));
      continue;
    }
    if (serves.generation === null && serves.request === null) {
      if (stagedNeeds && c.migratable) decisions.push(d(RestartDecisionKind.notNeeded, 'not restarted: a live migration brings it up to date'));
      else if (record.status === RestartStatus.Failed) decisions.push(d(RestartDecisionKind.failed, `restart failed (started ${when(record.startedAt)}): ${record.message ?? 'did not come back Ready'}; group ${vp.group} is stopped`, { serves: { generation: record.generation, request: record.request } }));
      else decisions.push(d(RestartDecisionKind.done, `already restarted for it (${when(record.startedAt)})`, { serves: { generation: record.generation, request: record.request } }));
      continue;
    }
    const failed = failedByGroup.get(vp.group);
    if (failed !== undefined) {
      decisions.push(d(RestartDecisionKind.held, `held: group ${vp.group} is stopped since ${failed === key(c) ? 'its last restart' : `the restart of ${failed}`} failed`, { serves }));
      continue;
    }
    if (vp.policy === RestartPolicy.manual && serves.request === null) {
      decisions.push(d(RestartDecisionKind.manual, `awaits a manual restart (policy manual${vp.source === 'annotation' ? `, from ${RestartAnnotation.policy}` : ''})`, { serves }));
      continue;
    }
    // Placeholder text: set once the queue below has placed it.
    const entry = d(RestartDecisionKind.waitBudget, '', { serves });
    decisions.push(entry);
    queue.push({ d: entry, viaWindow: vp.policy === RestartPolicy.window, request: serves.request });
  }

  let slots = Math.max(0, policy.budget.concurrent - inProgress);
  const perWindow = policy.budget.perWindow ?? Number.POSITIVE_INFINITY;
  let currentLeft = current === null ? 0 : Math.max(0, perWindow - usedThisWindow);
  const inCurrent: RestartDecision[] = [];
  const later: RestartDecision[] = [];
  let line = 0;
  const why = (request: string | null): string => (request !== null ? `requested (${RestartAnnotation.requested}: ${request})` : 'staged changes need it');
  for (const q of queue) {
    if (q.viaWindow) {
      if (current !== null && currentLeft > 0) {
        currentLeft--;
        inCurrent.push(q.d);
        if (slots > 0) {
          slots--;
          q.d.kind = RestartDecisionKind.restartNow;
        } else {
          q.d.position = ++line;
        }
      } else {
        // A window is open but its budget is spent: this VM could have gone in it.
        if (current !== null) q.d.overBudget = true;
        later.push(q.d);
      }
      continue;
    }
    if (slots > 0) {
      slots--;
      q.d.kind = RestartDecisionKind.restartNow;
      q.d.text = `restarts now: ${why(q.request)} (policy ${q.d.policy})`;
    } else {
      q.d.position = ++line;
      q.d.text = `waits for a free restart slot, ${ordinal(q.d.position)} in line (${policy.budget.concurrent} at once): ${why(q.request)}`;
    }
  }
  if (current !== null) {
    const text = formatOccurrence(current, now);
    inCurrent.forEach((d, i) => {
      const place = { position: usedThisWindow + i + 1, of: usedThisWindow + inCurrent.length };
      d.window = { start: current.start, end: current.end, text, index: 0 };
      d.inWindow = place;
      d.text =
        d.kind === RestartDecisionKind.restartNow
          ? `restarts now, in the current window (${text}), ${place.position} of ${place.of} this window`
          : `waits for a free restart slot, ${ordinal(d.position ?? 0)} in line (${policy.budget.concurrent} at once), in the current window (${text}), ${place.position} of ${place.of} this window`;
    });
  }
  // The rest go to the coming openings, `perWindow` each, in order.
  let after = now;
  let index = 0;
  let rest = later;
  while (rest.length > 0) {
    const occ = nextWindow(policy.windows, after);
    if (occ === null) {
      for (const d of rest) {
        d.kind = RestartDecisionKind.waitWindow;
        d.text = 'waits for a maintenance window, but none of the policy’s windows opens again';
      }
      break;
    }
    index++;
    const take = rest.slice(0, Math.min(rest.length, perWindow));
    rest = rest.slice(take.length);
    const text = formatOccurrence(occ, now);
    take.forEach((d, i) => {
      d.kind = RestartDecisionKind.waitWindow;
      d.window = { start: occ.start, end: occ.end, text, index };
      d.inWindow = { position: i + 1, of: take.length };
      if (index > 1) d.overBudget = true;
      d.text = `restarts in ${windowName(index)} (${text}), ${i + 1} of ${take.length} this window${d.overBudget === true ? ` (budget ${policy.budget.perWindow ?? ''} per window)` : ''}`;
    });
    after = occ.start;
  }
  return { decisions, current, inProgress };
}

/**
 * Why a PR's restarts should fail the optional merge gate (`vmroll/plan`), or none: a protected VM
 * it would restart, and restarts beyond a window's budget. Call it on the plan of the PR's head.
 */
export function mergeGateReasons(plan: RestartPlan, policy: RestartPolicySpec): string[] {
  const out: string[] = [];
  for (const d of plan.decisions) {
    if (d.kind !== RestartDecisionKind.protected || d.wouldRestart !== true) continue;
    out.push(
      d.serves.request !== null
        ? `${d.namespace}/${d.name} is protected (${RestartAnnotation.protect}: ${PROTECTED_VALUE}) but the change requests a restart of it`
        : `${d.namespace}/${d.name} is protected (${RestartAnnotation.protect}: ${PROTECTED_VALUE}) but its staged changes need a restart under policy ${d.policy}`,
    );
  }
  const over = plan.decisions.filter((d) => d.overBudget === true);
  if (over.length > 0) {
    const first = plan.decisions.find((d) => d.window !== undefined && d.overBudget !== true && d.window.index === (plan.current !== null ? 0 : 1));
    out.push(
      `${over.length} restart${over.length === 1 ? '' : 's'} over the budget of ${policy.budget.perWindow ?? 'unlimited'} per window${first?.window !== undefined ? ` (${first.window.text})` : ''}, pushed to later windows: ${over.map((d) => `${d.namespace}/${d.name}`).join(', ')}`,
    );
  }
  return out;
}
