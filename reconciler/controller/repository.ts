/**
 * One followed repository inside `vmroll run`: its reconciler, the serial chain of its syncs
 * (never two at once; a trigger during a sync queues one more), the timer of its next sync,
 * and what each sync leaves behind: the `vmroll/sync` status, the metrics, the review of open
 * pull requests. When the next sync comes is decided from how the last one ended
 * ({@link nextSyncDelay}, by {@link errorKind}).
 */
import path from 'node:path';
import type { Logger } from 'pino';
import type { ClusterBackend } from '../cluster/backend.ts';
import type { RepositoryRunConfig, RunConfig } from '../config.ts';
import { namespaceRefusal } from '../configFile.ts';
import { ErrorKind, errorCause, errorKind } from '../errors.ts';
import type { VmrollMetrics } from './metrics.ts';
import { ReviewState, reportMergedOutcome, reviewPullRequests } from '../report/prReview.ts';
import type { ReportQueue } from '../report/queue.ts';
import { type GitHostReporter, StatusContext } from '../report/reporter.ts';
import { redactSecrets, redactUrl } from '../source/errors.ts';
import { GitSource } from '../source/gitSource.ts';
import { nextSyncDelay } from './backoff.ts';
import { RestartStep } from './restarts.ts';
import { MANUAL_POLICY } from '../restart/index.ts';
import { type ReconcileOutcome, type ReconcileReport, Reconciler } from './reconcile.ts';
import { SUMMARY_MAX_CHARS, formatSummary } from '../plan/summary.ts';

/** What {@link startRepository} needs. */
export interface RepositoryUnitOptions {
  rc: RepositoryRunConfig;
  config: RunConfig;
  logger: Logger;
  cluster: ClusterBackend;
  /** Called after each sync that ran (the embedded simulator saves its state file). */
  afterSync?: () => void;
  metrics: VmrollMetrics;
  host: { host: GitHostReporter; queue: ReportQueue } | null;
  leading: () => boolean;
  isStopped: () => boolean;
  /** Several repositories: log lines name the repository. */
  several: boolean;
  /** Where the sync lines people read go (stdout); absent: nowhere (`--output json`). */
  out?: (text: string) => void;
  /** Renders a sync for {@link out}. */
  render?: (report: ReconcileReport) => string;
  /** The cluster as PR comments name it (what the plans were made against). */
  clusterTarget?: string;
  /** Epoch ms for restart windows and health timeouts (default Date.now; tests inject a clock). */
  now?: () => number;
}

/** One repository's reconciler, its serial chain of syncs, its timer and its reports. */
export interface RepositoryUnit {
  config: RepositoryRunConfig;
  reconciler: Reconciler;
  /** Runs one sync now (or joins the one under way and queues one more); null when it failed or this replica does not lead. */
  trigger(reason: string): Promise<ReconcileReport | null>;
  /** Why the last sync failed as a whole (credentials redacted), or null. */
  failure(): string | null;
  /** Whether it has synced at least once. */
  synced(): boolean;
  /** When the timer will start the next sync (epoch ms), or null when none is armed. */
  nextSyncAt(): number | null;
  /** Whether a push to `owner/name` concerns it. */
  matchesPush(repository: string | null): boolean;
  /**
   * Notes the commit a push webhook names for a ref. When it is this repository's ref, a sync that
   * fails before it resolves a commit (the Git host down, the token refused) posts its failure on
   * that commit: the one the operator pushed and is waiting to see applied.
   */
  notePush(ref: string, after: string): void;
  /** Whether it reviews pull requests. */
  reviews: boolean;
  /** Starts the timer: from now on every sync arms it for the next one. */
  schedule(): void;
  cancelTimer(): void;
  /** Resolves when no sync of it is under way. */
  idle(): Promise<void>;
  /** Takes no new sync (timer cancelled) and resolves when the one under way has finished. */
  retire(): Promise<void>;
}

/** How the commit status and the log say what a failure asks for. */
const KIND_WORDS: Record<ErrorKind, string> = {
  stalled: 'needs a person',
  waiting: 're-checking soon',
  transient: 'retrying with backoff',
};

/** The `vmroll/sync` description of a sync that failed as a whole: what it asks for, then why, within {@link SUMMARY_MAX_CHARS}. */
export function failureDescription(kind: ErrorKind, error: unknown, secrets: readonly string[]): string {
  const prefix = `sync failed (${KIND_WORDS[kind]}): `;
  return prefix + errorCause(error, secrets, SUMMARY_MAX_CHARS - prefix.length);
}

/** The guest outcomes of a sync's counts, to tell a sync whose guests moved from one that only restates the commit. */
function guestCounts(report: ReconcileReport): string {
  const s = report.summary;
  return `${s.migrating ?? 0} ${s.queued ?? 0} ${s.blocked ?? 0} ${s.evicted ?? 0} ${(s.blockedWhy ?? []).join(',')}`;
}

/** Starts following one repository (no sync runs until triggered or scheduled). */
export function startRepository(options: RepositoryUnitOptions): RepositoryUnit {
  const { rc, config, metrics, leading } = options;
  /** Replaced or removed by a configuration reload. */
  let retired = false;
  const isStopped = (): boolean => retired || options.isStopped();
  const logger = options.several ? options.logger.child({ repository: rc.name }) : options.logger;
  const isUrl = /^https?:\/\//.test(rc.repo);
  const repoLabel = isUrl ? redactUrl(rc.repo) : path.resolve(rc.repo);
  const secrets = [rc.gitToken, rc.gitHost?.token, config.gitToken].filter((s): s is string => s !== undefined && s !== '');
  const source = new GitSource({ repo: isUrl ? rc.repo : path.resolve(rc.repo), cacheDir: config.cacheDir, ...(rc.gitToken !== undefined ? { token: rc.gitToken } : {}) });
  const host = options.host?.host ?? null;
  const queue = options.host?.queue ?? null;
  const target = rc.gitHost?.targetUrl !== undefined ? { targetUrl: rc.gitHost.targetUrl } : {};
  const review = new ReviewState();

  /** The commit whose `vmroll/sync` outcome was posted last, while that outcome stands (a failure posted since clears it). */
  let reportedCommit: string | null = null;
  /** The commit a push webhook named for this repository's ref that no sync has resolved yet. */
  let pushedCommit: string | null = null;
  /** When that push was noted (performance.now()): a sync that started before it cannot have fetched it. */
  let pushedAt = 0;
  /** The failed restarts the last posted status named (comma-joined). */
  let reportedRestartFailures = '';
  /** Where the guests stood in it ({@link guestCounts}). */
  let reportedGuests: string | null = null;
  /**
   * The reconcile's single exit: every sync, however it ended, is counted, and its outcome posted
   * on the commit when there is one. A sync that failed before it resolved a commit (the Git host
   * down, the token refused) posts on the commit a push webhook named, when one did; without one
   * (polling, or the branch deleted) there is no commit to carry a status: the failure is counted
   * here and logged by the chain, and the status of the last synced commit is left as it was.
   */
  const recordOutcome = (outcome: ReconcileOutcome): void => {
    const { report } = outcome;
    // A sync that resolved the pushed commit, or any commit after the push, answers for it; one
    // that started before the push did not reach it, so the push stays the one to answer for.
    if (outcome.commit !== null && (outcome.commit === pushedCommit || performance.now() - outcome.durationMs >= pushedAt)) pushedCommit = null;
    const commit = outcome.commit ?? pushedCommit;
    const posting = host !== null && queue !== null && leading();
    if (report !== null) {
      metrics.recordReconcile(rc.name, report);
      // A replica that lost the lease during the sync leaves reporting to the new leader; a sync
      // of an already reported commit that changed nothing posts nothing.
      // Failed restarts (their groups stopped) fail the commit too, and a change in them is news.
      const failedRestarts = (report.restarts?.failed ?? []).map((f) => f.vm);
      const restartNews = failedRestarts.join(',') !== reportedRestartFailures;
      const guests = guestCounts(report);
      // A later sync of the same commit that writes nothing posts only when a guest moved (migrated,
      // was evicted) or the failed restarts changed.
      const followUp = report.commit === reportedCommit;
      if (!posting || (followUp && report.writes === 0 && guests === reportedGuests && !restartNews)) return;
      const failed = report.plan.errors.length > 0 || failedRestarts.length > 0;
      const restartText = failedRestarts.length > 0 ? `restart failed: ${failedRestarts.slice(0, 2).join(', ')}${failedRestarts.length > 2 ? ` and ${failedRestarts.length - 2} more` : ''}; ` : '';
      const description = `${restartText}${formatSummary(report.summary)}`;
      // Nothing written: a commit that already shows this outcome (a restart, a new leader) is left as it is.
      queue.status(
        { sha: report.commit, context: StatusContext.sync, state: failed ? 'failure' : 'success', description: description.length > SUMMARY_MAX_CHARS ? `${description.slice(0, SUMMARY_MAX_CHARS - 1)}…` : description, ...target },
        { match: report.writes === 0 && !followUp && !restartNews ? 'outcome' : 'exact' },
      );
      reportedCommit = report.commit;
      reportedGuests = guests;
      reportedRestartFailures = failedRestarts.join(',');
      return;
    }
    const kind = errorKind(outcome.error);
    metrics.recordFailure(rc.name, outcome.durationMs, kind);
    if (!posting || commit === null) return;
    queue.status({ sha: commit, context: StatusContext.sync, state: 'failure', description: failureDescription(kind, outcome.error, secrets), ...target });
    // The next sync that runs on this commit posts its outcome even if it writes nothing.
    reportedCommit = null;
  };

  // One namespace rule for the sync and the review of pull requests: a PR cannot promise what the sync refuses.
  const refuseNamespace = rc.namespaces !== undefined ? (namespace: string): string | null => namespaceRefusal({ name: rc.name, namespaces: rc.namespaces }, namespace) : undefined;
  const reconciler = new Reconciler({
    source,
    repoLabel,
    ref: rc.ref,
    path: rc.path,
    cluster: options.cluster,
    prune: rc.prune,
    strict: config.strict ?? false,
    ...(rc.identity !== undefined && { identity: rc.identity }),
    logger,
    // `pending` only when the sync has something to write.
    onWork: (commit) => {
      if (leading()) queue?.status({ sha: commit, context: StatusContext.sync, state: 'pending', description: 'vmroll is applying this commit', ...target });
    },
    onOutcome: recordOutcome,
    restarts: new RestartStep({ cluster: options.cluster, policy: rc.restart ?? MANUAL_POLICY, now: options.now ?? Date.now }),
    ...(refuseNamespace !== undefined && { refuseNamespace }),
  });

  /** After a sync: merged-PR outcomes and the review of open PRs, in the sync's serial chain. */
  const reviewAfterSync = async (report: ReconcileReport): Promise<void> => {
    if (host === null || queue === null || !leading()) return;
    try {
      await reportMergedOutcome({ reporter: host, queue, source, report, repoLabel, logger, state: review });
      const identity = reconciler.ownerIdentity;
      await reviewPullRequests({
        reporter: host,
        queue,
        source,
        cache: reconciler.clusterCache,
        repoLabel,
        path: rc.path,
        prune: rc.prune,
        strict: config.strict ?? false,
        ...(refuseNamespace !== undefined && { refuseNamespace }),
        logger,
        state: review,
        ...(options.clusterTarget !== undefined && { cluster: options.clusterTarget }),
        ...target,
        ...(identity !== null && { identity }),
        restart: { policy: rc.restart ?? MANUAL_POLICY, now: options.now ?? Date.now },
      });
    } catch (e) {
      // The Git host being down delays reviews; the next interval tries again.
      logger.warn({ err: e instanceof Error ? e.message : String(e) }, 'pull request review failed');
    }
  };

  let running: Promise<ReconcileReport | null> | null = null;
  let again = false;
  let synced = false;
  let lastFailure: string | null = null;
  /** Failures in a row, and the kind of the last one (null after a success). */
  let failures = 0;
  let lastKind: ErrorKind | null = null;
  /** The stalled cause last said to need a person, so it is said once, not every interval. */
  let stalledCause: string | null = null;
  let nextDelayMs = nextSyncDelay({ kind: null, failures: 0, intervalMs: rc.intervalMs });
  let timer: NodeJS.Timeout | null = null;
  let timerDue: number | null = null;
  /** Set by {@link schedule}: from then on every sync arms the timer. */
  let scheduling = false;

  const syncOnce = async (reason: string): Promise<ReconcileReport | null> => {
    try {
      logger.debug({ reason }, 'sync starting');
      const report = await reconciler.reconcile();
      options.afterSync?.();
      synced = true;
      lastFailure = null;
      if (failures > 0) logger.info({ after: failures, kind: lastKind }, 'sync succeeded again');
      failures = 0;
      lastKind = null;
      stalledCause = null;
      // A sync that ran but left writes in flux (a conflicting writer, writes the cluster has not
      // shown yet) is re-checked soon, as a waiting failure would be.
      nextDelayMs = nextSyncDelay({ kind: report.waiting !== null ? ErrorKind.waiting : null, failures, intervalMs: rc.intervalMs });
      // A maintenance window that opens before the next sync releases waiting restarts: sync when it opens.
      const windowAt = report.restarts?.nextWindowAt ?? null;
      if (windowAt !== null) nextDelayMs = Math.min(nextDelayMs, Math.max(1000, windowAt - (options.now ?? Date.now)()));
      if (report.waiting !== null) logger.info({ kind: ErrorKind.waiting, nextSyncInMs: Math.round(nextDelayMs) }, `re-checking soon: ${report.waiting}`);
      await reviewAfterSync(report);
      if (options.out !== undefined && options.render !== undefined) options.out(options.render(report));
      return report;
    } catch (e) {
      const kind = errorKind(e);
      failures++;
      lastKind = kind;
      lastFailure = redactSecrets(e instanceof Error ? e.message : String(e), secrets);
      nextDelayMs = nextSyncDelay({ kind, failures, intervalMs: rc.intervalMs });
      const cause = errorCause(e, secrets);
      logger.error({ err: lastFailure, kind, attempt: failures, nextSyncInMs: Math.round(nextDelayMs) }, 'sync failed');
      if (kind === ErrorKind.stalled && cause !== stalledCause) {
        // Said once per cause: the interval repeats the failure, not the call for a person.
        logger.warn({ kind, nextSyncInMs: Math.round(nextDelayMs) }, `needs a person: ${cause}`);
        stalledCause = cause;
      }
      // With the sync lines on stdout: people read the text there, logs stay JSON on stderr.
      options.out?.(`sync failed: ${lastFailure}`);
      return null;
    }
  };

  const cancelTimer = (): void => {
    if (timer !== null) clearTimeout(timer);
    timer = null;
    timerDue = null;
  };
  /** Arms the timer for the next sync, as the last sync decided; a follower keeps the interval. */
  const arm = (): void => {
    if (!scheduling || isStopped() || config.once) return;
    cancelTimer();
    const delay = leading() ? nextDelayMs : nextSyncDelay({ kind: null, failures: 0, intervalMs: rc.intervalMs });
    timerDue = Date.now() + delay;
    timer = setTimeout(() => {
      timer = null;
      timerDue = null;
      // A trigger that ran a sync armed the timer at its end; one that did not (a follower) re-arms here.
      void trigger(failures > 0 ? 'retry' : 'interval').then(() => {
        if (timer === null) arm();
      });
    }, delay);
  };

  /** The commit the standby line was last logged for. */
  let preparedCommit: string | null = null;
  /**
   * A follower's turn in the chain (controller-runtime's manager is the model: caches start on
   * every replica, only the leader's work waits for the lease): fetch, load and the cluster cache,
   * nothing written, reported or counted as a sync, so that winning the lease leaves only plan,
   * settle and report to do. A failure is only logged: the sync after winning the lease retries it.
   */
  const prepareOnce = async (reason: string): Promise<null> => {
    try {
      const p = await reconciler.prepare();
      const line = { commit: p.commit.slice(0, 12), vms: p.vms, read: p.read, cached: p.cached, ms: Math.round(p.ms), reason };
      if (p.commit !== preparedCommit) logger.info(line, `standby: ${p.commit.slice(0, 12)} loaded, ${p.vms} VMs, informers synced`);
      else logger.debug(line, 'standby: current');
      preparedCommit = p.commit;
    } catch (e) {
      logger.warn({ err: redactSecrets(e instanceof Error ? e.message : String(e), secrets), reason }, 'standby: preparing failed');
    }
    return null;
  };

  const trigger = (reason: string): Promise<ReconcileReport | null> => {
    if (isStopped()) return Promise.resolve(null);
    if (running !== null) {
      again = true;
      return running;
    }
    // Without leader election every replica leads; with it, a follower prepares instead of syncing.
    const turn = (why: string): Promise<ReconcileReport | null> => (leading() ? syncOnce(why) : prepareOnce(why));
    running = (async () => {
      let report = await turn(reason);
      while (again && !isStopped()) {
        again = false;
        report = await turn('queued');
      }
      again = false;
      running = null;
      // The last sync of the chain decides when the next one comes, whatever triggered it.
      arm();
      return report;
    })();
    return running;
  };

  const pushNames = new Set<string>();
  const m = /^https?:\/\/[^/]+\/(.+?)(?:\.git)?\/?$/.exec(rc.repo);
  if (m?.[1] !== undefined) pushNames.add(m[1].toLowerCase());
  if (rc.gitHost !== undefined) pushNames.add(rc.gitHost.repo.toLowerCase());
  const idle = async (): Promise<void> => {
    while (running !== null) await running;
  };
  return {
    config: rc,
    reconciler,
    trigger,
    failure: () => lastFailure,
    synced: () => synced,
    nextSyncAt: () => timerDue,
    matchesPush: (repository) => repository !== null && pushNames.has(repository.toLowerCase()),
    notePush: (ref, after) => {
      // A deleted branch names the zero commit: nothing to post on.
      if ((ref === rc.ref || ref === `refs/heads/${rc.ref}`) && /^[0-9a-f]{40}$/.test(after) && !/^0+$/.test(after)) {
        pushedCommit = after;
        pushedAt = performance.now();
      }
    },
    reviews: host !== null,
    schedule: () => {
      scheduling = true;
      arm();
    },
    cancelTimer,
    idle,
    retire: async () => {
      retired = true;
      cancelTimer();
      await idle();
    },
  };
}
