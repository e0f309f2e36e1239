/**
 * Leader election over a coordination.k8s.io/v1 Lease, so that of several `vmroll run` replicas
 * exactly one reconciles and posts reports, and another takes over when it dies.
 *
 * The lease is only ever written with the resourceVersion it was read at (optimistic
 * concurrency), so two replicas can never both win the same round. Expiry is judged on the
 * local clock from the moment a replica first saw the lease's current version, never from
 * the timestamps in it: replicas' clocks need not agree, only tick at the same rate.
 *
 * Why two replicas never lead at once: a leader steps down on its own once `renewDeadlineMs`
 * has passed since the start of its last successful renewal, and a follower only takes over
 * `leaseDurationMs` after it saw that renewal, which happened after it started. With
 * `renewDeadlineMs < leaseDurationMs`, the leader has stopped before anyone else may start.
 * `isLeader()` checks that deadline on the clock too: a starved process runs its step-down
 * timer late, and must not act as leader in between.
 */
import { readFileSync } from 'node:fs';
import { hostname } from 'node:os';
import type { Logger } from 'pino';
import { ClusterError } from './backend.ts';
import { kubeRequest, toClusterError } from './kube.ts';
import { KubeClusterConfig, type KubeConfigSource, loadKubeConfig } from './kubeconfig.ts';

/** Where a pod finds the namespace it runs in. */
export const POD_NAMESPACE_FILE = '/var/run/secrets/kubernetes.io/serviceaccount/namespace';

/** The lease name used when none is configured. */
export const DEFAULT_LEASE_NAME = 'vmroll';

/** The namespace of the pod vmroll runs in, or undefined outside a pod. */
export function podNamespace(file: string = POD_NAMESPACE_FILE): string | undefined {
  try {
    const ns = readFileSync(file, 'utf8').trim();
    return ns === '' ? undefined : ns;
  } catch {
    return undefined;
  }
}

/** This process's default identity in an election: `<hostname>-<pid>` (in a pod, the hostname is the pod name). */
export function defaultIdentity(): string {
  return `${hostname()}-${process.pid}`;
}

/** A replica's part in choosing the one replica that reconciles. */
export interface LeaderElection {
  /** The name this replica writes into the lease. */
  readonly identity: string;
  /** Whether this replica may reconcile right now. */
  isLeader(): boolean;
  /** Starts competing for the lease (returns at once; callbacks report the outcome). */
  start(): void;
  /** Stops competing without giving the lease back: leadership ends here, and the lease runs out for the others. */
  stop(): Promise<void>;
  /** Stops competing and hands the lease over at once; call after the current sync has finished. */
  release(): Promise<void>;
}

/** Callbacks and identity shared by every kind of election. */
export interface ElectionCallbacks {
  /** Called when this replica becomes leader: start reconciling. */
  onStartedLeading?: () => void;
  /** Called when this replica stops being leader: stop reconciling at once. */
  onStoppedLeading?: (reason: string) => void;
}

/** What a {@link LeaderElector} needs. */
export interface LeaderElectorOptions extends ElectionCallbacks {
  /** The cluster holding the lease (a kubeconfig source, or one already loaded, e.g. `KubeCluster.kubeConfig`). */
  kubeconfig: KubeConfigSource | KubeClusterConfig;
  /** Namespace of the lease; it must exist. */
  namespace: string;
  /** Name of the lease (default {@link DEFAULT_LEASE_NAME}). */
  name?: string;
  /** This replica's name in the lease (default {@link defaultIdentity}). */
  identity?: string;
  /** How long a lease holds without renewal (default 15 s). */
  leaseDurationMs?: number;
  /** A leader that could not renew for this long steps down (default 10 s; must be below the lease duration). */
  renewDeadlineMs?: number;
  /** Time between attempts to acquire or renew (default 2 s). */
  retryPeriodMs?: number;
  /** Time limit of one API request (default: the renew deadline). */
  requestTimeoutMs?: number;
  logger?: Logger;
}

/** A coordination.k8s.io/v1 Lease, as far as the election reads and writes it (other fields are sent back as read). */
export interface Lease {
  apiVersion?: string;
  kind?: string;
  metadata?: { name?: string; namespace?: string; resourceVersion?: string; [field: string]: unknown };
  spec?: {
    holderIdentity?: string;
    leaseDurationSeconds?: number;
    acquireTime?: string;
    renewTime?: string;
    leaseTransitions?: number;
    [field: string]: unknown;
  };
}

/** A time as a Lease's MicroTime fields take it: RFC 3339 with six fractional digits (`2026-11-30T12:00:00.000000Z`). */
export function microTime(ms: number): string {
  return new Date(ms).toISOString().replace(/\.(\d{3})Z$/, '.$1000Z');
}

/** Conflicts answered in a row before a round gives up and waits for the next one. */
const CONFLICT_RETRIES = 3;

/** What one round of acquire-or-renew found. */
type RoundResult = { ok: true } | { ok: false; holder: string | null };

/** Reads a lease time (a MicroTime string). */
function timeOf(value: unknown): number | null {
  if (typeof value === 'string') {
    const t = Date.parse(value);
    return Number.isNaN(t) ? null : t;
  }
  return null;
}

/** One replica's candidacy for a Lease. */
export class LeaderElector implements LeaderElection {
  readonly identity: string;
  /** `namespace/name` of the lease. */
  readonly lease: string;
  private readonly kc: KubeClusterConfig;
  /** Whether this elector loaded the kubeconfig (and so closes its pools when it stops). */
  private readonly ownsConfig: boolean;
  private readonly namespace: string;
  private readonly name: string;
  private readonly leaseDurationMs: number;
  private readonly renewDeadlineMs: number;
  private readonly retryPeriodMs: number;
  private readonly requestTimeoutMs: number;
  private readonly logger: Logger | undefined;
  private leading = false;
  /** Local time at which leadership ends unless renewed: the start of the last successful renewal plus the renew deadline. */
  private leadUntil = 0;
  private stopped = false;
  /** The lease version last seen, who held it, and when (local clock) it was first seen. */
  private observed: { version: string; holder: string; at: number } | null = null;
  private deadline: NodeJS.Timeout | undefined;
  private loop: Promise<void> | null = null;
  private readonly wake = new AbortController();

  constructor(private readonly options: LeaderElectorOptions) {
    this.ownsConfig = !(options.kubeconfig instanceof KubeClusterConfig);
    this.kc = options.kubeconfig instanceof KubeClusterConfig ? options.kubeconfig : loadKubeConfig(options.kubeconfig);
    this.namespace = options.namespace;
    this.name = options.name ?? DEFAULT_LEASE_NAME;
    this.lease = `${this.namespace}/${this.name}`;
    this.identity = options.identity ?? defaultIdentity();
    this.leaseDurationMs = options.leaseDurationMs ?? 15_000;
    this.renewDeadlineMs = options.renewDeadlineMs ?? 10_000;
    this.retryPeriodMs = options.retryPeriodMs ?? 2_000;
    this.requestTimeoutMs = options.requestTimeoutMs ?? this.renewDeadlineMs;
    if (!(this.renewDeadlineMs < this.leaseDurationMs)) throw new ClusterError('Invalid', 'leader election: the renew deadline must be shorter than the lease duration');
    if (!(this.retryPeriodMs < this.renewDeadlineMs)) throw new ClusterError('Invalid', 'leader election: the retry period must be shorter than the renew deadline');
    if (this.identity === '') throw new ClusterError('Invalid', 'leader election: the identity must not be empty');
    this.logger = options.logger?.child({ component: 'leader-election', lease: this.lease, identity: this.identity });
  }

  isLeader(): boolean {
    // Also by the clock: a process starved of CPU runs its step-down timer late, and must not act as leader meanwhile.
    return this.leading && Date.now() < this.leadUntil;
  }

  start(): void {
    if (this.loop !== null || this.stopped) return;
    this.logger?.info('competing for the lease');
    this.loop = this.run();
  }

  async stop(): Promise<void> {
    await this.halt();
    this.stepDown('stopping');
    if (this.ownsConfig) await this.kc.close();
  }

  async release(): Promise<void> {
    await this.halt();
    this.stepDown('releasing the lease');
    try {
      await this.handOver();
    } finally {
      if (this.ownsConfig) await this.kc.close();
    }
  }

  /** Writes the lease free (no holder, 1 s) if it still names this replica. */
  private async handOver(): Promise<void> {
    // Hand over even after stepping down for a failed renewal: the lease may still name us.
    for (let attempt = 0; attempt < CONFLICT_RETRIES; attempt++) {
      try {
        const lease = await this.read();
        if ((lease.spec?.holderIdentity ?? '') !== this.identity) return;
        const spec = { ...lease.spec, leaseDurationSeconds: 1, renewTime: microTime(Date.now()) };
        delete spec.holderIdentity;
        await this.replace({ ...lease, spec });
        this.logger?.info('released the lease');
        return;
      } catch (e) {
        const error = toClusterError(e, `releasing lease ${this.lease}`);
        if (error.code === 'NotFound') return;
        if (error.code !== 'Conflict') {
          this.logger?.warn({ err: error.message }, 'could not release the lease; it runs out by itself');
          return;
        }
      }
    }
    this.logger?.warn('could not release the lease after repeated conflicts; it runs out by itself');
  }

  /** Ends the loop; the request in flight, if any, is waited for (it is time-limited). */
  private async halt(): Promise<void> {
    this.stopped = true;
    this.wake.abort();
    await this.loop;
  }

  private async run(): Promise<void> {
    while (!this.stopped) {
      const started = Date.now();
      let result: RoundResult;
      try {
        result = await this.round();
      } catch (e) {
        const error = toClusterError(e, `lease ${this.lease}`);
        this.logger?.[this.leading ? 'warn' : 'debug']({ err: error.message }, 'lease request failed');
        result = { ok: false, holder: null };
      }
      if (this.stopped) break;
      // A renewal that came back after the deadline may not extend leadership: the deadline is counted from its start.
      if (result.ok && Date.now() < started + this.renewDeadlineMs) {
        this.renewed(started);
      } else if (this.leading && !result.ok && result.holder !== null && result.holder !== this.identity) {
        this.stepDown(`the lease is held by ${result.holder}`);
      }
      // Candidates spread their attempts so that they do not keep colliding.
      const wait = this.leading ? this.retryPeriodMs : this.retryPeriodMs * (1 + 0.2 * Math.random());
      await this.sleep(wait);
    }
  }

  private renewed(started: number): void {
    this.leadUntil = started + this.renewDeadlineMs;
    clearTimeout(this.deadline);
    this.deadline = setTimeout(() => this.stepDown(`could not renew the lease for ${this.renewDeadlineMs} ms`), started + this.renewDeadlineMs - Date.now());
    if (this.leading) return;
    this.leading = true;
    this.logger?.info('became leader');
    try {
      this.options.onStartedLeading?.();
    } catch (e) {
      this.logger?.error({ err: e instanceof Error ? e.message : String(e) }, 'onStartedLeading failed');
    }
  }

  private stepDown(reason: string): void {
    clearTimeout(this.deadline);
    this.deadline = undefined;
    if (!this.leading) return;
    this.leading = false;
    this.logger?.warn({ reason }, 'stopped leading');
    try {
      this.options.onStoppedLeading?.(reason);
    } catch (e) {
      this.logger?.error({ err: e instanceof Error ? e.message : String(e) }, 'onStoppedLeading failed');
    }
  }

  /** One attempt to acquire or renew: read, then write with the version read; a conflict reads again. */
  private async round(): Promise<RoundResult> {
    for (let attempt = 0; attempt < CONFLICT_RETRIES && !this.stopped; attempt++) {
      let lease: Lease;
      try {
        lease = await this.read();
      } catch (e) {
        const error = toClusterError(e, `reading lease ${this.lease}`);
        if (error.code !== 'NotFound') throw error;
        try {
          const created = await this.create(this.newLease(null));
          this.observe(created, Date.now());
          return { ok: true };
        } catch (ce) {
          const cerror = toClusterError(ce, `creating lease ${this.lease}`);
          // Another replica created it first: read it next time round.
          if (cerror.code === 'Conflict') continue;
          throw cerror;
        }
      }
      const now = Date.now();
      const holder = lease.spec?.holderIdentity ?? '';
      const seen = this.observe(lease, now);
      if (holder !== '' && holder !== this.identity && seen + this.leaseDurationMs > now) return { ok: false, holder };
      try {
        const written = await this.replace(this.newLease(lease));
        this.observe(written, Date.now());
        if (holder !== this.identity) this.logger?.info({ previous: holder === '' ? null : holder, transitions: written.spec?.leaseTransitions ?? 0 }, 'acquired the lease');
        return { ok: true };
      } catch (e) {
        const error = toClusterError(e, `writing lease ${this.lease}`);
        if (error.code !== 'Conflict') throw error;
        this.logger?.debug('lease changed under us; reading it again');
      }
    }
    return { ok: false, holder: null };
  }

  /** Remembers the lease's version; returns when (local clock) this version was first seen. */
  private observe(lease: Lease, now: number): number {
    const version = lease.metadata?.resourceVersion ?? '';
    const holder = lease.spec?.holderIdentity ?? '';
    if (this.observed === null || this.observed.version !== version || this.observed.holder !== holder) this.observed = { version, holder, at: now };
    return this.observed.at;
  }

  /** The lease this replica writes: renewed if it held it, else acquired with one more transition. */
  private newLease(current: Lease | null): Lease {
    const now = microTime(Date.now());
    const spec = current?.spec ?? {};
    const mine = (spec.holderIdentity ?? '') === this.identity;
    const acquireTime = mine ? timeOf(spec.acquireTime) : null;
    const transitions = spec.leaseTransitions ?? 0;
    return {
      apiVersion: 'coordination.k8s.io/v1',
      kind: 'Lease',
      metadata: current?.metadata ?? { name: this.name, namespace: this.namespace },
      spec: {
        holderIdentity: this.identity,
        // The API takes whole seconds; expiry itself is judged on this replica's own duration.
        leaseDurationSeconds: Math.max(1, Math.ceil(this.leaseDurationMs / 1000)),
        acquireTime: acquireTime !== null ? microTime(acquireTime) : now,
        renewTime: now,
        leaseTransitions: current === null ? 0 : mine ? transitions : transitions + 1,
      },
    };
  }

  /** The lease's URL path (`name` given) or its collection's. */
  private path(name?: string): string {
    const base = `/apis/coordination.k8s.io/v1/namespaces/${encodeURIComponent(this.namespace)}/leases`;
    return name === undefined ? base : `${base}/${encodeURIComponent(name)}`;
  }

  /** `GET` the lease. */
  private async read(): Promise<Lease> {
    return JSON.parse(await this.call(() => kubeRequest(this.kc, 'GET', this.path(this.name), undefined, this.requestTimeoutMs))) as Lease;
  }

  /** `POST` a new lease; 409 when another replica created it first. */
  private async create(lease: Lease): Promise<Lease> {
    const text = JSON.stringify(lease);
    return JSON.parse(await this.call(() => kubeRequest(this.kc, 'POST', this.path(), { text, type: 'application/json' }, this.requestTimeoutMs))) as Lease;
  }

  /** `PUT` the lease with the resourceVersion it carries: 409 when it changed since. */
  private async replace(lease: Lease): Promise<Lease> {
    const text = JSON.stringify(lease);
    return JSON.parse(await this.call(() => kubeRequest(this.kc, 'PUT', this.path(this.name), { text, type: 'application/json' }, this.requestTimeoutMs))) as Lease;
  }

  /** Runs one request with a time limit, so a hung connection cannot outlast the renew deadline. */
  private async call<T>(fn: () => Promise<T>): Promise<T> {
    let timer: NodeJS.Timeout | undefined;
    try {
      return await Promise.race([
        fn(),
        new Promise<never>((_, reject) => {
          timer = setTimeout(() => reject(new ClusterError('Unavailable', `lease ${this.lease}: no answer within ${this.requestTimeoutMs} ms`, { status: 0 })), this.requestTimeoutMs);
        }),
      ]);
    } finally {
      clearTimeout(timer);
    }
  }

  private sleep(ms: number): Promise<void> {
    const signal = this.wake.signal;
    return new Promise((resolve) => {
      if (signal.aborted) return resolve();
      const done = (): void => {
        clearTimeout(timer);
        signal.removeEventListener('abort', done);
        resolve();
      };
      const timer = setTimeout(done, ms);
      signal.addEventListener('abort', done, { once: true });
    });
  }
}

/**
 * The election of a process that is alone by construction (the embedded simulator lives in
 * this process, so no other replica can write to it): always the leader once started.
 */
export class SoleLeader implements LeaderElection {
  readonly identity: string;
  private leading = false;

  constructor(private readonly options: ElectionCallbacks & { identity?: string } = {}) {
    this.identity = options.identity ?? defaultIdentity();
  }

  isLeader(): boolean {
    return this.leading;
  }

  start(): void {
    if (this.leading) return;
    this.leading = true;
    this.options.onStartedLeading?.();
  }

  stop(): Promise<void> {
    if (this.leading) {
      this.leading = false;
      this.options.onStoppedLeading?.('stopping');
    }
    return Promise.resolve();
  }

  release(): Promise<void> {
    return this.stop();
  }
}
