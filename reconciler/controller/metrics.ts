/**
 * vmroll's Prometheus metrics, on a registry of its own (never prom-client's global one, so
 * that several runs in one process, tests above all, do not share counters). The loop, the
 * cluster backend and the Git host reporters feed it through the small helpers below; the
 * `/metrics` endpoint serves {@link VmrollMetrics.metricsText}.
 */
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import { ErrorKind } from '../errors.ts';
import type { ReconcileReport } from './reconcile.ts';
import { GitHostError, type GitHostReporter } from '../report/reporter.ts';

/** The states `vmroll_vms` counts VMs in: the sync's own counts (`SyncState` in plan/summary.ts), so metrics, text and status agree. */
export const VmState = {
  /** The cluster holds what Git says (created or unchanged), nothing waits for a restart. */
  inSync: 'in_sync',
  /** Updated by the last sync and all of it went live. */
  liveUpdated: 'live_updated',
  /** A live change on the VMI is being carried to the guest by a live migration. */
  migrating: 'migrating',
  /** A live change on the VMI waits for a migration (or an eviction) KubeVirt will start. */
  queued: 'queued',
  /** A live change on the VMI will not reach the guest until a restart (no LiveMigrate method, not migratable). */
  blocked: 'blocked',
  /** KubeVirt's workload updater evicted the VMI to carry a change (a restart). */
  evicted: 'evicted',
  /** Updated by the last sync; some of it waits for the next start, without RestartRequired (a stopped VM, template metadata). */
  staged: 'staged',
  /** Updated by the last sync, which set fields back to what the running instance runs. */
  reverted: 'reverted',
  /** KubeVirt set RestartRequired: some of the change waits for the next restart. */
  awaitingRestart: 'awaiting_restart',
  /** Left as the cluster holds it because its file has errors (or its apply failed). */
  held: 'held',
  /** Manifests that failed to load or apply (one per error: a broken file may hold several VMs). */
  error: 'error',
} as const;
/** One of {@link VmState}. */
export type VmState = (typeof VmState)[keyof typeof VmState];

/** How a reconcile ended, the `result` label of `vmroll_reconcile_duration_seconds`. */
export const ReconcileResult = {
  /** Synced without any manifest or apply error. */
  ok: 'ok',
  /** Synced, but some manifests failed to load or apply. */
  errors: 'errors',
  /** The sync as a whole failed (fetch, cluster unreachable). */
  failed: 'failed',
} as const;
/** One of {@link ReconcileResult}. */
export type ReconcileResult = (typeof ReconcileResult)[keyof typeof ReconcileResult];

/** How a Git host API call ended, the `result` label of `vmroll_githost_api_calls_total`. */
export const GitHostCallResult = {
  ok: 'ok',
  rate_limited: 'rate_limited',
  unavailable: 'unavailable',
  unauthorized: 'unauthorized',
  not_found: 'not_found',
  invalid: 'invalid',
  /** Anything that is not a GitHostError (a bug, not the host). */
  error: 'error',
} as const;
/** One of {@link GitHostCallResult}. */
export type GitHostCallResult = (typeof GitHostCallResult)[keyof typeof GitHostCallResult];

const HOST_RESULT: Record<GitHostError['code'], GitHostCallResult> = {
  RateLimited: 'rate_limited',
  Unavailable: 'unavailable',
  Unauthorized: 'unauthorized',
  NotFound: 'not_found',
  Invalid: 'invalid',
};

/** A reporter that says how much of its rate limit is left (GitHub does; Gitea does not). */
interface RateLimited {
  rateLimit(): { remaining: number } | undefined;
}

function hasRateLimit(r: object): r is RateLimited {
  return typeof (r as { rateLimit?: unknown }).rateLimit === 'function';
}

function isPromise(v: unknown): v is Promise<unknown> {
  return typeof v === 'object' && v !== null && typeof (v as { then?: unknown }).then === 'function';
}

/** Options of {@link VmrollMetrics}. */
export interface VmrollMetricsOptions {
  /** Add prom-client's process and Node.js metrics (default true). */
  defaultMetrics?: boolean;
}

/** Every metric vmroll exports, and the helpers that feed them. */
export class VmrollMetrics {
  /** The registry `/metrics` serves. */
  readonly registry = new Registry();
  private readonly reconcileDuration: Histogram<'repository' | 'result'>;
  private readonly syncFailures: Counter<'repository' | 'kind'>;
  private readonly vms: Gauge<'repository' | 'state'>;
  private readonly gitFetchDuration: Histogram<'repository'>;
  private readonly kubeRequests: Counter<'verb' | 'resource' | 'code'>;
  private readonly hostCalls: Counter<'host' | 'result'>;
  private readonly hostRateLimit: Gauge<'host'>;
  private readonly leader: Gauge;
  private readonly configReloads: Counter<'result'>;
  private readonly configReloadOk: Gauge;
  private readonly configSuccessTime: Gauge;
  private readonly configHash: Gauge;
  private readonly queues = new Map<string, () => number>();
  private readonly restarts: Counter<'repository' | 'result'>;
  private readonly restartsPending: Gauge<'repository' | 'state'>;

  constructor(options: VmrollMetricsOptions = {}) {
    const registers = [this.registry];
    this.reconcileDuration = new Histogram({
      name: 'vmroll_reconcile_duration_seconds',
      help: 'Time one reconcile of a repository took, fetch to report.',
      labelNames: ['repository', 'result'],
      buckets: [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300],
      registers,
    });
    this.syncFailures = new Counter({
      name: 'vmroll_sync_failures_total',
      help: 'Syncs of a repository that failed as a whole, by what the failure asks for (stalled: needs a person; waiting: re-checked soon; transient: retried with backoff).',
      labelNames: ['repository', 'kind'],
      registers,
    });
    this.vms = new Gauge({
      name: 'vmroll_vms',
      help: 'VirtualMachines of a repository by state after its last sync.',
      labelNames: ['repository', 'state'],
      registers,
    });
    this.gitFetchDuration = new Histogram({
      name: 'vmroll_git_fetch_duration_seconds',
      help: 'Time fetching the tracked ref from the Git server took.',
      labelNames: ['repository'],
      buckets: [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60],
      registers,
    });
    this.kubeRequests = new Counter({
      name: 'vmroll_kube_api_requests_total',
      help: 'Requests to the Kubernetes API by verb, resource and HTTP status (0: no answer).',
      labelNames: ['verb', 'resource', 'code'],
      registers,
    });
    this.hostCalls = new Counter({
      name: 'vmroll_githost_api_calls_total',
      help: 'Calls to the Git host API (commit statuses, pull requests, comments) by host and result.',
      labelNames: ['host', 'result'],
      registers,
    });
    this.hostRateLimit = new Gauge({
      name: 'vmroll_githost_rate_limit_remaining',
      help: 'Requests left in the Git host rate-limit window, as the host last reported.',
      labelNames: ['host'],
      registers,
    });
    this.leader = new Gauge({ name: 'vmroll_leader', help: '1 while this replica is the leader and reconciles, else 0.', registers });
    this.leader.set(0);
    this.configReloads = new Counter({ name: 'vmroll_config_reload_total', help: 'Reloads of the --config file after a change, by result (failure: the last good configuration kept running).', labelNames: ['result'], registers });
    this.configReloadOk = new Gauge({ name: 'vmroll_config_last_reload_successful', help: '1 when the --config file as it now reads is the running configuration, 0 when its last change was refused.', registers });
    this.configSuccessTime = new Gauge({ name: 'vmroll_config_last_reload_success_timestamp_seconds', help: 'When the running configuration was read from the --config file (Unix time).', registers });
    this.configHash = new Gauge({ name: 'vmroll_config_hash', help: 'The first 48 bits of the SHA-256 of the --config file text now running, as a number.', registers });
    this.restarts = new Counter({
      name: 'vmroll_restarts_total',
      help: 'VM restarts by vmroll (restart orchestration) by result: issued (claimed and sent to KubeVirt), succeeded (back Running and Ready), failed.',
      labelNames: ['repository', 'result'],
      registers,
    });
    this.restartsPending = new Gauge({
      name: 'vmroll_restarts_pending',
      help: 'VM restarts of a repository after its last sync by state: waiting (for a window, a slot or a stopped group), in_progress, failed.',
      labelNames: ['repository', 'state'],
      registers,
    });
    const queues = this.queues;
    new Gauge({
      name: 'vmroll_reports_pending',
      help: 'Commit statuses and comments waiting for the Git host.',
      labelNames: ['repository'],
      registers,
      collect() {
        for (const [repository, pending] of queues) this.set({ repository }, pending());
      },
    });
    if (options.defaultMetrics ?? true) collectDefaultMetrics({ register: this.registry });
  }

  /** Records a finished reconcile: its duration, the Git fetch it made, and VMs by state. */
  recordReconcile(repository: string, report: ReconcileReport): void {
    const result: ReconcileResult = report.plan.errors.length > 0 ? 'errors' : 'ok';
    this.reconcileDuration.observe({ repository, result }, report.timings.total / 1000);
    this.gitFetchDuration.observe({ repository }, report.timings.fetch / 1000);
    const s = report.summary;
    const counts: Record<VmState, number> = {
      in_sync: s.inSync + s.created,
      live_updated: s.liveUpdated,
      migrating: s.migrating ?? 0,
      queued: s.queued ?? 0,
      blocked: s.blocked ?? 0,
      evicted: s.evicted ?? 0,
      staged: s.staged,
      reverted: s.reverted ?? 0,
      awaiting_restart: s.awaitingRestart ?? 0,
      held: s.held ?? 0,
      error: s.errors,
    };
    for (const state of Object.values(VmState)) this.vms.set({ repository, state }, counts[state]);
    const r = report.restarts;
    if (r !== undefined) {
      if (r.restarted.length > 0) this.restarts.inc({ repository, result: 'issued' }, r.restarted.length);
      if (r.succeeded.length > 0) this.restarts.inc({ repository, result: 'succeeded' }, r.succeeded.length);
      const failedNow = r.vms.filter((v) => v.event === 'failed').length;
      if (failedNow > 0) this.restarts.inc({ repository, result: 'failed' }, failedNow);
      this.restartsPending.set({ repository, state: 'waiting' }, r.pending);
      this.restartsPending.set({ repository, state: 'in_progress' }, r.inProgress);
      this.restartsPending.set({ repository, state: 'failed' }, r.failed.length);
    }
  }

  /** Records a reconcile that failed as a whole, and what its failure asks for; the VM counts keep their last values. */
  recordFailure(repository: string, durationMs: number, kind: ErrorKind): void {
    this.reconcileDuration.observe({ repository, result: 'failed' }, durationMs / 1000);
    this.syncFailures.inc({ repository, kind });
  }

  /** Failed syncs of a repository so far, of one kind or of all kinds. */
  async syncFailureCount(repository: string, kind?: ErrorKind): Promise<number> {
    const { values } = await this.syncFailures.get();
    return values.filter((v) => v.labels['repository'] === repository && (kind === undefined || v.labels['kind'] === kind)).reduce((n, v) => n + v.value, 0);
  }

  /** Records a Git fetch made outside a reconcile (pull-request review). */
  recordGitFetch(repository: string, durationMs: number): void {
    this.gitFetchDuration.observe({ repository }, durationMs / 1000);
  }

  /** Counts one Kubernetes API request; fits `KubeClusterOptions.onRequest`. */
  readonly kubeRequest = (verb: string, resource: string, status: number): void => {
    this.kubeRequests.inc({ verb, resource, code: String(status) });
  };

  /** Records the configuration file text now running: at start (`reload` false) and after each successful reload. */
  recordConfigLoaded(sha256: string, reload: boolean): void {
    if (reload) this.configReloads.inc({ result: 'success' });
    this.configReloadOk.set(1);
    this.configSuccessTime.set(Date.now() / 1000);
    this.configHash.set(Number.parseInt(sha256.slice(0, 12), 16));
  }

  /** Records a change of the configuration file that was refused (the last good configuration keeps running). */
  recordConfigRefused(): void {
    this.configReloads.inc({ result: 'failure' });
    this.configReloadOk.set(0);
  }

  /** Drops the VM counts of a repository no longer followed, so no stale numbers stay on /metrics. */
  forgetRepository(repository: string): void {
    for (const state of Object.values(VmState)) this.vms.remove({ repository, state });
    for (const kind of Object.values(ErrorKind)) this.syncFailures.remove({ repository, kind });
  }

  /** Sets whether this replica leads. */
  setLeader(leading: boolean): void {
    this.leader.set(leading ? 1 : 0);
  }

  /** Reports a report queue's backlog on every scrape. */
  watchReportQueue(repository: string, queue: { pending(): number }): void {
    this.queues.set(repository, () => queue.pending());
  }

  /**
   * Wraps a reporter so that every call to the host is counted by result and, where the host
   * says, the rate limit left is recorded. The wrapper is the reporter in every other respect.
   */
  instrumentReporter<T extends GitHostReporter>(reporter: T): T {
    const host = reporter.kind;
    const settle = (result: GitHostCallResult): void => {
      this.hostCalls.inc({ host, result });
      if (hasRateLimit(reporter)) {
        const limit = reporter.rateLimit();
        if (limit !== undefined) this.hostRateLimit.set({ host }, limit.remaining);
      }
    };
    return new Proxy(reporter, {
      get(target, property) {
        const value: unknown = Reflect.get(target, property, target);
        if (typeof value !== 'function' || property === 'rateLimit') return value;
        return (...args: unknown[]): unknown => {
          const out: unknown = (value as (...a: unknown[]) => unknown).apply(target, args);
          if (!isPromise(out)) return out;
          return out.then(
            (v) => {
              settle('ok');
              return v;
            },
            (e: unknown) => {
              settle(e instanceof GitHostError ? HOST_RESULT[e.code] : 'error');
              throw e;
            },
          );
        };
      },
    });
  }

  /** The Prometheus content type of {@link metricsText}. */
  get contentType(): string {
    return this.registry.contentType;
  }

  /** Every metric in Prometheus' text exposition format. */
  metricsText(): Promise<string> {
    return this.registry.metrics();
  }
}
