/**
 * Pull-request review: every open pull request's head is planned against the live cluster (no
 * apply) and reported as a `vmroll/plan` commit status and one sticky comment. After merge and
 * sync, the comment is edited once more with what actually happened to each VM.
 */
import type { RepositoryIdentity } from '../apply/identity.ts';
import type { Logger } from 'pino';
import type { ClusterCache } from '../cluster/cache.ts';
import { ObservedOutcome, type VmPlan } from '../rollout/index.ts';
import { SourceError } from '../source/errors.ts';
import type { ResolvedRef } from '../source/gitSource.ts';
import type { ManifestSet } from '../source/manifests.ts';
import { gateDescription, renderPlanComment, statusDescription } from './markdown.ts';
import { type RestartPolicySpec, RestartDecisionKind, currentWindow, nextWindow } from '../restart/index.ts';
import { type PlanSource, type PowerChange, clusterStateKey, planCommit } from '../plan/planCommit.ts';
import type { Summary } from '../plan/summary.ts';
import type { ReportQueue } from './queue.ts';
import { GitHostError, type GitHostReporter, type PullRequestInfo, StatusContext, StatusState } from './reporter.ts';

/** What review needs from Git (GitSource implements it). */
export interface ReviewSource extends PlanSource {
  fetchPullRequest(args: { number: number }): Promise<ResolvedRef>;
  resolve(args: { ref: string }): Promise<ResolvedRef>;
  mergeBase(args: { a: string; b: string }): Promise<string | null>;
  isAncestor(args: { ancestor: string; commit: string; depth?: number }): Promise<boolean>;
}

/** A pull request as last reviewed. */
export interface ReviewedPullRequest {
  number: number;
  headRef: string;
  /** The commit planned (the head as fetched). */
  headSha: string;
  /** Head, base and cluster state the plan was made from: the same key means the same plan. */
  key: string;
  plan: VmPlan;
  summary: Summary;
  power: Record<string, PowerChange>;
  sources: Record<string, { file: string; line: number | null }>;
  /** The comment body and status last written, to skip identical writes when only unrelated cluster state moved. */
  written: { body: string; status: string };
  /** False once the pull request is no longer listed as open. */
  open: boolean;
  /** Outcome checks made since it closed; a closed pull request that never shows up merged is forgotten after a while. */
  checksSinceClosed: number;
  /**
   * Set once the sync that applied it was reported while a guest was still on the way to a change
   * (migrating, queued, evicted): that sync, whose plan later syncs update with where each guest
   * stands, until none moves.
   */
  merged?: { commit: string; plan: VmPlan };
}

/** What review remembers between rounds, so that an unchanged pull request is not posted again. One per repository. */
export class ReviewState {
  /** By pull request number. */
  readonly reviewed = new Map<number, ReviewedPullRequest>();
  /** The last manifest load: the next plan reads only files that differ from it. */
  manifests: ManifestSet | undefined;
  /** When merged pull requests were last listed. */
  mergedCheckedAt: Date | undefined;
}

/** Where reports go: the host itself, or a queue in front of it (retries, deduplication). */
export interface ReportTarget {
  /** Lists pull requests, and receives the writes when there is no queue. */
  reporter: GitHostReporter;
  /** When given, statuses and comments are queued here instead of written directly. */
  queue?: ReportQueue;
}

/** Input of {@link reviewPullRequests}. */
export interface ReviewOptions extends ReportTarget {
  source: ReviewSource;
  cache: ClusterCache;
  /** The repository as vmroll's ownership annotation names it (no credentials). */
  repoLabel: string;
  /** Folder (or file) of the repository holding the manifests. */
  path: string;
  prune: boolean;
  /** `--strict`: a file's warnings are errors of that file. */
  strict?: boolean;
  /** Why this repository may not write to a namespace, or null when it may (vmroll.yaml `namespaces`); absent: any namespace. */
  refuseNamespace?: (namespace: string) => string | null;
  logger: Logger;
  /** Link on the commit status (e.g. vmroll's dashboard). */
  targetUrl?: string;
  /** What the plans are made against, named in the comment (see describeTarget). */
  cluster?: string;
  state: ReviewState;
  /** The ownership identity the sync resolved (default: derived from `repoLabel` and `path`). */
  identity?: RepositoryIdentity;
  /** The repository's restart policy and clock (epoch ms): the comment says per VM whether and when it restarts, and `mergeGate` may fail `vmroll/plan`. */
  restart?: { policy: RestartPolicySpec; now: () => number };
}

/** What one round did with one pull request. */
export interface PullRequestReview {
  number: number;
  headSha: string;
  /** `posted`: status or comment written (or queued); `unchanged`: nothing to write, the plan is the one posted; `failed`: see error. */
  result: 'posted' | 'unchanged' | 'failed';
  summary?: Summary;
  error?: string;
}

/** Most commits between a synced commit and a merged head that the outcome check walks. */
const OUTCOME_DEPTH = 50;
/** Outcome checks after which a closed pull request that never appeared merged is forgotten. */
const FORGET_CLOSED_AFTER = 20;
/** First look back for merged pull requests. */
const MERGED_LOOKBACK_MS = 24 * 3600_000;

async function writeStatus(target: ReportTarget, status: Parameters<GitHostReporter['postStatus']>[0]): Promise<void> {
  if (target.queue !== undefined) target.queue.status(status);
  else await target.reporter.postStatus(status);
}

async function writeComment(target: ReportTarget, pr: number, body: string): Promise<void> {
  if (target.queue !== undefined) target.queue.comment(pr, body);
  else await target.reporter.upsertPlanComment(pr, body);
}

function reviewKey(headSha: string, pr: PullRequestInfo, clusterKey: string, restartKey: string): string {
  return `${headSha} ${pr.baseSha} ${clusterKey} ${restartKey}`;
}

/** The window a restart plan is measured against (the open one, the next one): when either changes, the plan's lines may. */
function windowKey(restart: ReviewOptions['restart'], now: number): string {
  if (restart === undefined || restart.policy.windows.length === 0) return '-';
  return `${currentWindow(restart.policy.windows, now)?.start ?? '-'}/${nextWindow(restart.policy.windows, now)?.start ?? '-'}`;
}

/** The commit the pull request's changes are measured from: the merge base with its base branch. */
async function baseOf(source: ReviewSource, pr: PullRequestInfo, head: string): Promise<string | null> {
  const fromListed = await source.mergeBase({ a: pr.baseSha, b: head });
  if (fromListed !== null) return fromListed;
  // The base branch moved past what was last fetched: use the base branch as synced.
  try {
    const base = await source.resolve({ ref: pr.baseRef });
    return await source.mergeBase({ a: base.commit, b: head });
  } catch (e) {
    if (e instanceof SourceError) return null;
    throw e;
  }
}

/**
 * One review round: lists open pull requests, and for each whose head, base or the cluster changed
 * since the last round, fetches the head, plans the VMs of the files it changes (against its merge
 * base) and posts `vmroll/plan` on the head plus the sticky comment. Throws GitHostError only when
 * the pull requests cannot be listed; a failure with one pull request is logged and retried next round.
 */
export async function reviewPullRequests(options: ReviewOptions): Promise<PullRequestReview[]> {
  const { state, logger } = options;
  const prs = await options.reporter.listOpenPullRequests();
  await options.cache.start();
  const clusterKey = clusterStateKey(options.cache);
  const now = options.restart?.now() ?? 0;
  const restartKey = windowKey(options.restart, now);
  const open = new Set(prs.map((p) => p.number));
  for (const r of state.reviewed.values()) if (!open.has(r.number)) r.open = false;

  const out: PullRequestReview[] = [];
  for (const pr of [...prs].sort((a, b) => a.number - b.number)) {
    const log = logger.child({ pr: pr.number, head: pr.headSha.slice(0, 12) });
    const last = state.reviewed.get(pr.number);
    if (last !== undefined && last.key === reviewKey(pr.headSha, pr, clusterKey, restartKey)) {
      last.open = true;
      out.push({ number: pr.number, headSha: pr.headSha, result: 'unchanged', summary: last.summary });
      continue;
    }
    let head = pr.headSha;
    try {
      head = (await options.source.fetchPullRequest({ number: pr.number })).commit;
      if (head !== pr.headSha) log.info({ fetched: head.slice(0, 12) }, 'pull request head moved since it was listed; planning the fetched head');
      const base = await baseOf(options.source, pr, head);
      const result = await planCommit({
        source: options.source,
        commit: head,
        path: options.path,
        cache: options.cache,
        repoLabel: options.repoLabel,
        ...(options.identity !== undefined ? { identity: options.identity } : {}),
        prune: options.prune,
        strict: options.strict ?? false,
        ...(options.refuseNamespace !== undefined && { refuseNamespace: options.refuseNamespace }),
        ...(base !== null ? { base } : {}),
        ...(state.manifests !== undefined ? { previous: state.manifests } : {}),
        ...(options.restart !== undefined && { restart: { policy: options.restart.policy, now } }),
      });
      state.manifests = result.manifests;
      // The merge gate is opt-in (`restart.mergeGate`): off, its reasons change nothing.
      const gate = result.restarts?.mergeGate === true ? result.restarts.gateReasons : [];
      const body = renderPlanComment({
        plan: result.plan,
        summary: result.summary,
        power: result.power,
        sources: result.sources,
        repo: options.repoLabel,
        ref: pr.headRef,
        sha: head,
        prNumber: pr.number,
        ...(options.cluster !== undefined && { target: options.cluster }),
        ...(result.restarts?.mergeGate === true && { restartGate: gate }),
      });
      const status = {
        sha: head,
        context: StatusContext.plan,
        state: result.plan.errors.length > 0 || gate.length > 0 ? StatusState.failure : StatusState.success,
        description: result.plan.errors.length === 0 && gate.length > 0 ? gateDescription(gate) : statusDescription(result.summary),
        ...(options.targetUrl !== undefined ? { targetUrl: options.targetUrl } : {}),
      };
      const written = { body, status: JSON.stringify(status) };
      // A VMI's status moving (as it does all day) changes the key, seldom the plan: write only what differs.
      const same = last !== undefined && last.headSha === head;
      if (!same || last.written.status !== written.status) await writeStatus(options, status);
      if (!same || last.written.body !== written.body) await writeComment(options, pr.number, body);
      state.reviewed.set(pr.number, {
        number: pr.number,
        headRef: pr.headRef,
        headSha: head,
        key: reviewKey(head, pr, clusterKey, restartKey),
        plan: result.plan,
        summary: result.summary,
        power: result.power,
        sources: result.sources,
        written,
        open: true,
        checksSinceClosed: 0,
      });
      const unchanged = same && last.written.status === written.status && last.written.body === written.body;
      log.info({ summary: status.description, base: base?.slice(0, 12) ?? null, unchanged }, 'reviewed pull request');
      out.push({ number: pr.number, headSha: head, result: unchanged ? 'unchanged' : 'posted', summary: result.summary });
    } catch (e) {
      const message = e instanceof Error ? e.message : String(e);
      out.push({ number: pr.number, headSha: head, result: 'failed', error: message });
      if (e instanceof GitHostError) {
        log.warn({ code: e.code, err: message }, 'could not report the plan; retrying next round');
        continue;
      }
      log.error({ err: message }, 'could not plan pull request');
      if (e instanceof SourceError) {
        // Say so on the head, so the pull request does not look reviewed; the error message stays in the log.
        await writeStatus(options, {
          sha: pr.headSha,
          context: StatusContext.plan,
          state: StatusState.error,
          description: `vmroll could not plan this commit (${e.code}); retrying`,
          ...(options.targetUrl !== undefined ? { targetUrl: options.targetUrl } : {}),
        }).catch((err: unknown) => log.warn({ err: err instanceof Error ? err.message : String(err) }, 'could not report the planning error'));
        continue;
      }
      throw e;
    }
  }
  return out;
}

/** Input of {@link reportMergedOutcome}. */
export interface OutcomeOptions extends ReportTarget {
  source: Pick<ReviewSource, 'isAncestor'>;
  /** The sync that just ran (controller/reconcile.ts's ReconcileReport fits). */
  report: { commit: string; plan: VmPlan };
  /** The repository as it may be shown. */
  repoLabel?: string;
  logger: Logger;
  state: ReviewState;
  /** Clock for the merged-pull-request window; default `() => new Date()`. */
  now?: () => Date;
}

/**
 * After a sync: for every reviewed pull request whose head (or merge commit, when the host lists
 * merges) the synced commit contains, edits its comment once more with what happened to each VM,
 * then forgets it. Squash and rebase merges are found only through the host's merged list.
 * Returns the pull request numbers reported.
 */
export async function reportMergedOutcome(options: OutcomeOptions): Promise<number[]> {
  const { state, report, logger } = options;
  const now = options.now ?? (() => new Date());
  const mergeCommits = new Map<number, string>();
  let hostListsMerges = false;
  if (options.reporter.listRecentlyMergedPullRequests !== undefined && state.reviewed.size > 0) {
    const startedAt = now();
    const since = state.mergedCheckedAt ?? new Date(startedAt.getTime() - MERGED_LOOKBACK_MS);
    try {
      for (const m of await options.reporter.listRecentlyMergedPullRequests(since)) {
        if (m.mergeCommitSha !== null) mergeCommits.set(m.number, m.mergeCommitSha);
      }
      // A minute of overlap: a merge recorded while the list was read is seen on the next call.
      state.mergedCheckedAt = new Date(startedAt.getTime() - 60_000);
      hostListsMerges = true;
    } catch (e) {
      if (!(e instanceof GitHostError)) throw e;
      logger.warn({ code: e.code, err: e.message }, 'could not list merged pull requests; checking heads only');
    }
  }

  const reported: number[] = [];
  for (const pr of [...state.reviewed.values()]) {
    if (pr.merged !== undefined) {
      // Already reported merged, with guests on the way: the comment follows them until they get there.
      const plan = withObserved(pr.merged.plan, report.plan);
      if (await editOutcome(options, pr, { commit: pr.merged.commit, plan })) reported.push(pr.number);
      continue;
    }
    const mergeCommit = mergeCommits.get(pr.number);
    const inSynced = (sha: string): Promise<boolean> => options.source.isAncestor({ ancestor: sha, commit: report.commit, depth: OUTCOME_DEPTH });
    let contained: boolean;
    if (mergeCommit !== undefined) contained = (await inSynced(mergeCommit)) || (await inSynced(pr.headSha));
    // Open and not in the host's merged list: a head already in the branch is no merge (e.g. a branch merged before).
    else if (hostListsMerges && pr.open) contained = false;
    else contained = await inSynced(pr.headSha);
    if (!contained) {
      if (!pr.open && ++pr.checksSinceClosed >= FORGET_CLOSED_AFTER) state.reviewed.delete(pr.number);
      continue;
    }
    if (await editOutcome(options, pr, { commit: report.commit, plan: report.plan })) reported.push(pr.number);
  }
  return reported;
}

/** Whether a guest of the plan is still on its way to a change: a later sync will say where it got. */
function moving(plan: VmPlan, reviewed: VmPlan): boolean {
  if (plan.vms.some((vm) => vm.observed !== undefined && (vm.observed.outcome === ObservedOutcome.migrating || vm.observed.outcome === ObservedOutcome.queued || vm.observed.outcome === ObservedOutcome.restarting))) return true;
  // A restart of a reviewed VM that is under way or due now (not one waiting for a window, which may be days away).
  const mine = new Set(reviewed.vms.map((vm) => `${vm.namespace}/${vm.name}`));
  const soon: string[] = [RestartDecisionKind.restarting, RestartDecisionKind.restartNow, RestartDecisionKind.waitBudget];
  return (plan.restarts?.vms ?? []).some((l) => mine.has(`${l.namespace}/${l.name}`) && soon.includes(l.kind));
}

/** The restart lines of the sync that applied a pull request, each replaced by a later sync's line for the same VM. */
function laterRestarts(applied: VmPlan['restarts'], later: VmPlan['restarts']): VmPlan['restarts'] {
  if (later === undefined) return applied;
  if (applied === undefined) return later;
  const byVm = new Map(applied.vms.map((l) => [`${l.namespace}/${l.name}`, l]));
  for (const l of later.vms) byVm.set(`${l.namespace}/${l.name}`, l);
  return { ...later, vms: [...byVm.values()].sort((a, b) => (`${a.namespace}/${a.name}` < `${b.namespace}/${b.name}` ? -1 : 1)) };
}

/** The plan of the sync that applied a pull request, with where each guest it follows stands now (from a later sync's plan). */
function withObserved(applied: VmPlan, later: VmPlan): VmPlan {
  const now = new Map(later.vms.map((vm) => [`${vm.namespace}/${vm.name}`, vm.observed]));
  const restarts = laterRestarts(applied.restarts, later.restarts);
  return {
    ...applied,
    ...(restarts !== undefined && { restarts }),
    vms: applied.vms.map((vm) => {
      if (vm.observed === undefined) return vm;
      const observed = now.get(`${vm.namespace}/${vm.name}`);
      if (observed === undefined) return vm;
      // A guest that was restarting and now runs the change got it through the restart, not live.
      const restarted = vm.observed.restarted === true || vm.observed.via === 'eviction' || vm.observed.outcome === ObservedOutcome.restarting || vm.observed.outcome === ObservedOutcome.stopped;
      return { ...vm, observed: restarted && observed.outcome === ObservedOutcome.effective ? { ...observed, restarted: true } : observed };
    }),
  };
}

/**
 * Edits a merged pull request's comment with what the sync did (`outcome`); true when written. While a
 * guest is still migrating, queued or restarting the pull request is kept (`merged`) so the following
 * syncs edit it again; then it is forgotten.
 */
async function editOutcome(options: OutcomeOptions, pr: ReviewedPullRequest, outcome: { commit: string; plan: VmPlan }): Promise<boolean> {
  const { state, logger } = options;
  const body = renderPlanComment({
    plan: pr.plan,
    summary: pr.summary,
    power: pr.power,
    sources: pr.sources,
    ref: pr.headRef,
    sha: pr.headSha,
    prNumber: pr.number,
    ...(options.repoLabel !== undefined ? { repo: options.repoLabel } : {}),
    outcome,
  });
  const unchanged = pr.merged !== undefined && pr.written.body === body;
  if (!unchanged) {
    try {
      await writeComment(options, pr.number, body);
    } catch (e) {
      if (!(e instanceof GitHostError)) throw e;
      logger.warn({ pr: pr.number, code: e.code, err: e.message }, 'could not report the merge outcome; retrying after the next sync');
      return false;
    }
    pr.written = { ...pr.written, body };
    logger.info({ pr: pr.number, commit: outcome.commit.slice(0, 12) }, 'reported merge outcome');
  }
  // Followed for a bounded number of syncs: a migration that keeps failing does not keep the pull request forever.
  if (pr.merged === undefined) pr.checksSinceClosed = 0;
  if (moving(outcome.plan, pr.plan) && (pr.merged === undefined || ++pr.checksSinceClosed < FORGET_CLOSED_AFTER)) pr.merged = outcome;
  else state.reviewed.delete(pr.number);
  return !unchanged;
}
