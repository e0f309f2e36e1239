/**
 * The controller as `vmroll run` starts it (see {@link startController}): one process that
 * follows repositories, syncs them into a cluster and reports to their Git hosts.
 */
import type { Logger } from 'pino';
import type { ClusterBackend } from '../cluster/backend.ts';
import { KubeCluster } from '../cluster/kube.ts';
import { type LeaderElection, LeaderElector, SoleLeader } from '../cluster/leaderElection.ts';
import { describeTarget } from '../cluster/target.ts';
import { type GitHostConfig, type RepositoryRunConfig, type RunConfig, type RunConfigSource, RunOutput } from '../config.ts';
import { ConfigReloadError, ConfigWatcher, type ReloadPlan, planReload, repositoriesOfRun } from '../configReload.ts';
import { GiteaReporter } from '../report/gitea.ts';
import { GitHubReporter } from '../report/github.ts';
import { ReportQueue } from '../report/queue.ts';
import type { GitHostReporter } from '../report/reporter.ts';
import { startWebhookServer } from './server.ts';
import { failedPlan } from '../plan/failedPlan.ts';
import { UsageError } from '../usage.ts';
import { VmrollMetrics } from './metrics.ts';
import type { ReconcileReport, Reconciler } from './reconcile.ts';
import { renderReport } from './render.ts';
import { type RepositoryUnit, startRepository } from './repository.ts';

/** One followed repository inside a running `vmroll run`. */
export interface RepositoryHandle {
  name: string;
  config: RepositoryRunConfig;
  reconciler: Reconciler;
  /** Runs one sync of this repository now (or joins the one under way); null when it failed or this replica does not lead. */
  trigger(reason: string): Promise<ReconcileReport | null>;
  /** Why the last sync failed as a whole (credentials redacted), or null after a sync that ran. */
  failure(): string | null;
  /** When the timer starts the next sync (epoch ms): the interval after a success or a stalled failure, sooner after a transient or waiting one; null when none is armed. */
  nextSyncAt(): number | null;
}

/** Everything a running controller holds, so `vmroll run`, the demo and tests can drive and stop it. */
export interface ControllerHandle {
  /** The first repository's reconciler. */
  readonly reconciler: Reconciler;
  /** Every followed repository (as the configuration now running lists them). */
  readonly repositories: RepositoryHandle[];
  cluster: ClusterBackend;
  /** The configuration running now (the start's, then each reload's). */
  readonly config: RunConfig;
  /**
   * Puts a new configuration in place: repositories added start, removed ones stop (nothing of
   * theirs is deleted), changed ones are rebuilt once their sync under way is done; settings
   * that need a restart keep their running value. What `--config` reloads call.
   */
  reconfigure(next: RunConfig): Promise<ReloadPlan>;
  metrics: VmrollMetrics;
  /** The leader election (a sole leader without --leader-elect). */
  election: LeaderElection;
  /** Starts the interval timers and the leader election (after the first sync, without election). */
  start(): void;
  /** Runs one sync of every repository now (or joins the ones under way); the first repository's report. */
  trigger(reason: string): Promise<ReconcileReport | null>;
  /**
   * Shuts down: no new syncs, the ones under way finish (their applies included), queued
   * reports get a bounded chance to reach the Git host, the lease is released.
   */
  stop(): Promise<void>;
  /** `host:port` of the webhook server, when listening. */
  address: string | null;
  /** Waits (bounded) until queued Git host reports are delivered; true when none is left. */
  flushReports(timeoutMs: number): Promise<boolean>;
}

/** How long a shutdown waits for queued reports. */
const SHUTDOWN_FLUSH_MS = 10_000;

/** Options of `startRun` (commands/run.ts) that reach the controller. */
export interface StartRunOptions {
  /** Reload the configuration when this file changes (from {@link start} on). */
  reload?: RunConfigSource;
  /** The logger's list of strings to redact: the secrets a reload brings (new tokens) are added to it. */
  secrets?: string[];
  /** Epoch ms for restart windows, health timeouts and PR restart plans (default Date.now; tests inject a clock). */
  now?: () => number;
}

/** Options of {@link startController}. */
export interface ControllerOptions extends StartRunOptions {
  /** The cluster to sync into when it is not the Kubernetes API of `config.kubeconfig` (the command composes the embedded simulator). */
  cluster?: ClusterBackend;
  /** Called after each sync that ran, and last on stop (the embedded simulator saves its state file). */
  save?: () => void;
  /** Where the sync lines people read go (stdout), with `--output text`. */
  out: (text: string) => void;
}

/** The secrets of a configuration (Git tokens, the webhook secret, Git host tokens), for the logger to redact. */
export function secretsOf(config: RunConfig): string[] {
  const all = [config.gitToken, config.webhookSecret, config.gitHost?.token, ...(config.repositories ?? []).flatMap((r) => [r.gitToken, r.gitHost?.token])];
  return all.filter((x): x is string => x !== undefined && x !== '');
}

/**
 * The composition root of `vmroll run`: the cluster backend, leader election, one reporter and
 * queue per Git host repository, one unit per followed repository (controller/repository.ts),
 * configuration reloads, the HTTP server, and the shutdown order. Nothing syncs until
 * {@link ControllerHandle.trigger} or {@link ControllerHandle.start}.
 */
export async function startController(config: RunConfig, logger: Logger, options: ControllerOptions): Promise<ControllerHandle> {
  const metrics = new VmrollMetrics();
  let kube: KubeCluster | null = null;
  try {
    if (config.kubeconfig !== undefined) kube = new KubeCluster({ kubeconfig: config.kubeconfig, logger: logger.child({ cluster: 'kube' }), onRequest: metrics.kubeRequest });
  } catch (e) {
    // An unreadable or empty kubeconfig is a usage problem: say which file and stop.
    throw new UsageError(e instanceof Error ? e.message : String(e));
  }
  const cluster: ClusterBackend | null = options.cluster ?? kube;
  if (cluster === null) throw new UsageError('no cluster: give --kubeconfig or --cluster sim');
  if (kube !== null && cluster === kube) logger.info({ server: kube.server }, 'using the Kubernetes API');

  let stopped = false;
  const elected = config.leaderElection !== undefined;
  const repositories: RepositoryUnit[] = [];
  const callbacks = {
    onStartedLeading: () => {
      metrics.setLeader(true);
      // A new leader syncs at once: the old one may have left work half done.
      if (elected && !stopped) for (const r of repositories) void r.trigger('leader');
    },
    onStoppedLeading: () => metrics.setLeader(false),
  };
  const le = config.leaderElection;
  let election: LeaderElection;
  if (le !== undefined) {
    if (kube === null) throw new UsageError('--leader-elect needs --cluster kube');
    election = new LeaderElector({
      kubeconfig: kube.kubeConfig,
      namespace: le.namespace,
      name: le.leaseName,
      identity: le.identity,
      leaseDurationMs: le.leaseDurationMs,
      renewDeadlineMs: le.renewDeadlineMs,
      retryPeriodMs: le.retryPeriodMs,
      logger,
      ...callbacks,
    });
  } else {
    election = new SoleLeader(callbacks);
  }
  /** Only the leader reconciles and reports; without election this process is the only replica. */
  const leading = (): boolean => !elected || election.isLeader();

  // One reporter and queue per Git host repository, shared by the repositories that report there.
  const queues = new Map<string, { host: GitHostReporter; queue: ReportQueue }>();
  const hostFor = (gitHost: GitHostConfig | undefined): { host: GitHostReporter; queue: ReportQueue } | null => {
    if (gitHost === undefined) return null;
    // The token is part of the key: a reload with a new token gets a reporter that uses it.
    const key = `${gitHost.kind} ${gitHost.apiUrl ?? ''} ${gitHost.repo} ${gitHost.token}`;
    let entry = queues.get(key);
    if (entry === undefined) {
      const host = metrics.instrumentReporter(gitHostReporter(gitHost, logger));
      entry = { host, queue: new ReportQueue({ reporter: host, logger: logger.child({ reporter: host.kind, hostRepo: gitHost.repo }) }) };
      metrics.watchReportQueue(gitHost.repo, entry.queue);
      queues.set(key, entry);
    }
    return entry;
  };

  let clusterTarget: string | undefined;
  const unit = (rc: RepositoryRunConfig, several: boolean): RepositoryUnit => {
    const host = hostFor(rc.gitHost);
    // Named in PR comments: what the plans were made against (the kubeconfig was loaded once already).
    if (host !== null) clusterTarget ??= describeTarget(config);
    return startRepository({
      rc,
      config,
      logger,
      cluster,
      ...(options.save !== undefined && { afterSync: options.save }),
      metrics,
      host,
      leading,
      isStopped: () => stopped,
      several,
      ...(config.output === 'text' && { out: options.out, render: renderReport }),
      ...(host !== null && clusterTarget !== undefined && { clusterTarget }),
      ...(options.now !== undefined && { now: options.now }),
    });
  };
  for (const rc of repositoriesOfRun(config)) repositories.push(unit(rc, config.repositories !== undefined && config.repositories.length > 1));
  if (repositories[0] === undefined) throw new UsageError('no repository to follow');

  /** The configuration running now: the start's, then each reload's. */
  let current = config;
  let started = false;
  let reconfiguring: Promise<unknown> = Promise.resolve();
  /** Puts a new configuration in place, one at a time; a replaced repository finishes its sync under way first. */
  const reconfigure = (next: RunConfig): Promise<ReloadPlan> => {
    const run = reconfiguring.then(async () => {
      const plan = planReload(current, next);
      if (stopped) return plan;
      // Before anything of the new configuration runs, its secrets are on the logger's redaction list.
      if (options.secrets !== undefined) for (const s of secretsOf(next)) if (!options.secrets.includes(s)) options.secrets.push(s);
      const several = repositoriesOfRun(plan.running).length > 1;
      // Built (nothing starts yet) before anything stops: one that cannot be built refuses the whole reload.
      const fresh: RepositoryUnit[] = [];
      try {
        for (const rc of [...plan.changed.map((c) => c.config), ...plan.added]) {
          try {
            fresh.push(unit(rc, several));
          } catch (e) {
            throw new ConfigReloadError(`repository ${rc.name}: ${e instanceof Error ? e.message : String(e)}`);
          }
        }
      } catch (e) {
        for (const u of fresh) u.reconciler.close();
        throw e;
      }
      const leaving = new Set([...plan.removed, ...plan.changed.map((c) => c.config.name)]);
      const retired = repositories.filter((r) => leaving.has(r.config.name));
      // No new sync starts on these, and the one under way (applies included) ends before a
      // successor is in place, so no repository is ever synced by two units at once.
      await Promise.all(retired.map((r) => r.retire()));
      for (const r of retired) r.reconciler.close();
      for (const name of plan.removed) {
        repositories.splice(repositories.findIndex((r) => r.config.name === name), 1);
        metrics.forgetRepository(name);
      }
      current = plan.running;
      if (stopped) {
        for (const u of fresh) u.reconciler.close();
        return plan;
      }
      for (const u of fresh) {
        const at = repositories.findIndex((r) => r.config.name === u.config.name);
        if (at >= 0) repositories.splice(at, 1, u);
        else repositories.push(u);
      }
      if (started) {
        for (const u of fresh) {
          void u.trigger('config');
          u.schedule();
        }
      }
      return plan;
    });
    reconfiguring = run.catch(() => undefined);
    return run;
  };
  const watcher =
    options.reload !== undefined
      ? new ConfigWatcher({
          source: options.reload,
          loadedSha256: config.configFile?.sha256,
          apply: reconfigure,
          logger,
          metrics,
        })
      : null;
  if (config.configFile !== undefined) metrics.recordConfigLoaded(config.configFile.sha256, false);

  let ready = false;
  const triggerAll = async (reason: string): Promise<ReconcileReport | null> => {
    const reports = await Promise.all(repositories.map((r) => r.trigger(reason)));
    return reports[0] ?? null;
  };
  const server =
    config.listen !== undefined
      ? await startWebhookServer({
          listen: config.listen,
          ...(config.webhookSecret !== undefined ? { webhookSecret: config.webhookSecret } : {}),
          // A follower is ready: it is up and waiting to take over; a leader once it has synced
          // (a repository added by a reload later does not make it unready again).
          isReady: () => {
            ready ||= repositories.every((r) => r.synced());
            return !leading() || ready;
          },
          onPush: (push) => {
            const matching = repositories.filter((r) => r.matchesPush(push.repository));
            // A follower does not sync: its standby fetches and loads the push (repository.ts).
            logger.info({ ref: push.ref, after: push.after.slice(0, 12) }, leading() ? 'push webhook: syncing now' : 'push webhook: standby loading it now');
            for (const r of matching.length > 0 ? matching : repositories) {
              r.notePush(push.ref, push.after);
              void r.trigger('webhook');
            }
          },
          onPullRequest: () => {
            // A sync is followed by the pull request review, so one trigger does both.
            for (const r of repositories) if (r.reviews) void r.trigger('pull_request');
          },
          metrics: async () => ({ contentType: metrics.contentType, body: await metrics.metricsText() }),
          logger,
        })
      : null;
  let stopping: Promise<void> | null = null;
  return {
    get reconciler() {
      return (repositories[0] as RepositoryUnit).reconciler;
    },
    get repositories() {
      return repositories.map((r) => ({ name: r.config.name, config: r.config, reconciler: r.reconciler, trigger: r.trigger, failure: r.failure, nextSyncAt: r.nextSyncAt }));
    },
    cluster,
    get config() {
      return current;
    },
    reconfigure,
    metrics,
    election,
    trigger: triggerAll,
    address: server?.address ?? null,
    flushReports: async (timeoutMs) => (await Promise.all([...queues.values()].map((q) => q.queue.flush(timeoutMs)))).every(Boolean),
    start() {
      started = true;
      for (const r of repositories) r.schedule();
      election.start();
      // A replica waiting for the lease keeps itself ready to take over (repository.ts: the standby).
      if (elected) for (const r of repositories) void r.trigger('standby');
      watcher?.start();
    },
    stop() {
      stopping ??= (async () => {
        stopped = true;
        // A reload under way completes (or gives up) before the repositories are stopped.
        await watcher?.close();
        await reconfiguring;
        for (const r of repositories) r.cancelTimer();
        // The syncs under way finish, applies included: a half-applied commit is worse than a late exit.
        await Promise.all(repositories.map((r) => r.idle()));
        await server?.close();
        // Reports still queued get a bounded chance to reach the Git host before exit.
        await Promise.all(
          [...queues.values()].map(async ({ queue }) => {
            if (!(await queue.flush(SHUTDOWN_FLUSH_MS))) logger.warn({ pending: queue.pending() }, 'reports not delivered before shutdown');
            await queue.close();
          }),
        );
        // Last: hand the lease over, so another replica starts only after this one is done.
        await election.release();
        for (const r of repositories) r.reconciler.close();
        options.save?.();
        kube?.close();
      })();
      return stopping;
    },
  };
}

/**
 * Runs a started controller to its end and returns the exit status. With `--once`: one sync of
 * every repository, then a stop; the first repository's VmPlan goes to `out` with `--output json`
 * (a sync that failed as a whole is still one document, the failure in its errors); 1 when it
 * failed or has errors. Otherwise: the first sync, the timers and the lease, until SIGINT or
 * SIGTERM, then the shutdown in order; 0.
 */
export async function runController(handle: ControllerHandle, config: RunConfig, logger: Logger, out: (text: string) => void): Promise<number> {
  if (config.once) {
    const report = await handle.trigger('once');
    await handle.stop();
    if (report === null) {
      // The whole sync failed (Git host down, ref missing, API server unreachable): still one document.
      const first = handle.repositories[0];
      if (config.output === RunOutput.json) out(JSON.stringify(failedPlan(first?.config.repo ?? config.repo, `sync failed: ${first?.failure() ?? 'see the log on stderr'}`), null, 2));
      return 1;
    }
    if (config.output === RunOutput.json) out(JSON.stringify(report.plan, null, 2));
    return report.plan.errors.length > 0 ? 1 : 0;
  }
  if (handle.address !== null) logger.info({ address: handle.address }, 'listening');
  // Listen before the first sync: a signal that arrives during or just after it (its lines are
  // already out) must stop vmroll in order, not kill it with Node's default action.
  const stopSignal = new Promise<string>((resolve) => {
    process.once('SIGINT', () => resolve('SIGINT'));
    process.once('SIGTERM', () => resolve('SIGTERM'));
  });
  // With leader election, the first sync waits for the lease (and starts when it is won).
  if (config.leaderElection === undefined) await handle.trigger('start');
  else logger.info({ identity: handle.election.identity, lease: `${config.leaderElection.namespace}/${config.leaderElection.leaseName}` }, 'waiting for the lease');
  handle.start();
  const signal = await stopSignal;
  logger.info({ signal }, 'shutting down: finishing the sync under way');
  await handle.stop();
  logger.info('stopped');
  return 0;
}

/** The reporter for the configured Git host. */
function gitHostReporter(config: GitHostConfig, logger: Logger): GitHostReporter {
  if (config.kind === 'gitea') return new GiteaReporter({ repo: config.repo, apiUrl: config.apiUrl ?? '', token: config.token, logger });
  return new GitHubReporter({ repo: config.repo, token: config.token, ...(config.apiUrl !== undefined ? { apiUrl: config.apiUrl } : {}), logger });
}

