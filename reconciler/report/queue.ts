/**
 * The report queue: commit statuses and plan comments wait here until the Git host takes them.
 * An outage or a rate limit delays reports, it never loses them; only the newest report per
 * (commit, context) and per pull request is kept, and one identical to what the host already
 * has is not sent again, also after a restart: before the first write for a (commit, context) the
 * queue reads what the host shows. The retry decision for Git host calls is made here and nowhere else.
 */
import type { Logger } from 'pino';
import { GitHostError, cutDescription, type CommitStatus, type GitHostReporter } from './reporter.ts';

/** Waits `ms`, or less if `signal` aborts; never rejects. Injectable so tests need not wait. */
export type Sleep = (ms: number, signal: AbortSignal) => Promise<void>;

/** How a queue is built. */
export interface ReportQueueOptions {
  reporter: GitHostReporter;
  logger: Logger;
  /** Default: a timer that does not keep the process alive. */
  sleep?: Sleep;
  /** Jitter source in [0, 1); default `Math.random`. */
  random?: () => number;
  /** First wait after a failed delivery; doubles per consecutive failure. Default 1 s. */
  initialBackoffMs?: number;
  /** Longest wait between attempts while the host is down. Default 5 min. */
  maxBackoffMs?: number;
  /** Added to the wait a rate limit asks for, so the first try lands after the reset. Default 1 s. */
  rateLimitMarginMs?: number;
  /** How many delivered (commit, context) and PR bodies are remembered to skip identical re-posts. Default 10,000. */
  rememberDelivered?: number;
  /** Failed reads of a commit's statuses, per (commit, context), after which the status is written unread. Default 3. */
  maxStatusReads?: number;
}

/**
 * When a queued status counts as already on the commit. `exact`: the host's newest status of the
 * context has the same state, description and target URL. `outcome`: the same state and target
 * URL suffice, for a sync that changed nothing and so has no new outcome to state.
 */
export const StatusMatch = { exact: 'exact', outcome: 'outcome' } as const;
/** One of {@link StatusMatch}. */
export type StatusMatch = (typeof StatusMatch)[keyof typeof StatusMatch];

/** What the queue has done so far, for logs and metrics. */
export interface ReportQueueStats {
  /** Reports waiting, the one being delivered included. */
  pending: number;
  /** Reports the host accepted. */
  delivered: number;
  /** Reports not sent because the host already had exactly that. */
  skipped: number;
  /** Reports replaced by a newer one for the same commit and context, or PR, before delivery. */
  superseded: number;
  /** Reports given up on: the host refused them for good (unauthorized, not found, invalid). */
  dropped: number;
  /** Failed attempts that were retried later. */
  retries: number;
  /** Reads of a commit's statuses that the host answered (one per commit and context at most). */
  statusReads: number;
  /** Reads of a commit's statuses that failed; the status is written all the same. */
  statusReadFailures: number;
  /** The last failure, token-free. */
  lastError?: { code: string; message: string };
}

type Report = { kind: 'status'; status: CommitStatus } | { kind: 'comment'; pr: number; body: string };

interface Entry {
  key: string;
  /** What makes two reports for the same key the same write. */
  fingerprint: string;
  /** For statuses: what makes two the same outcome (state and target URL). */
  outcome?: string;
  match: StatusMatch;
  report: Report;
}

/** What the host is known to show for a key: delivered by this queue, or read from the host. */
interface Known {
  /** null: read, and the host has no status of this context on the commit. */
  fingerprint: string | null;
  outcome: string | null;
}

/** Why the worker is waiting; a flush cuts short a backoff, never a rate-limit wait. */
type WaitReason = 'backoff' | 'rateLimit';

const defaultSleep: Sleep = (ms, signal) =>
  new Promise((resolve) => {
    if (signal.aborted) return resolve();
    const done = (): void => {
      clearTimeout(timer);
      signal.removeEventListener('abort', done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    timer.unref();
    signal.addEventListener('abort', done, { once: true });
  });

function statusKey(status: CommitStatus): string {
  return `status ${status.sha} ${status.context}`;
}

// Descriptions are compared as sent (cut to 140 characters); GitHub says null and Gitea '' for no target URL.
function statusFingerprint(state: string, description: string, targetUrl: string | null | undefined): string {
  return JSON.stringify([state, cutDescription(description), targetUrl || null]);
}

function statusOutcome(state: string, targetUrl: string | null | undefined): string {
  return JSON.stringify([state, targetUrl || null]);
}

/** Delivers reports to one Git host in enqueue order, retrying until the host takes them. */
export class ReportQueue {
  private readonly reporter: GitHostReporter;
  private readonly logger: Logger;
  private readonly sleep: Sleep;
  private readonly random: () => number;
  private readonly initialBackoffMs: number;
  private readonly maxBackoffMs: number;
  private readonly rateLimitMarginMs: number;
  private readonly remember: number;
  /** Pending reports by key; a Map keeps insertion order, and replacing a value keeps its place. */
  private readonly entries = new Map<string, Entry>();
  /** What the host shows per key (the last report it accepted, or what a read found), oldest first. */
  private readonly delivered = new Map<string, Known>();
  /** Failed status reads per key not yet known; Infinity once the status is to be written unread. */
  private readonly readFailures = new Map<string, number>();
  private readonly maxStatusReads: number;
  private inFlight: Entry | undefined;
  private failures = 0;
  private closed = false;
  private wake: (() => void) | undefined;
  private wait: { reason: WaitReason; controller: AbortController } | undefined;
  private idleWaiters: Array<() => void> = [];
  private readonly counts = { delivered: 0, skipped: 0, superseded: 0, dropped: 0, retries: 0, statusReads: 0, statusReadFailures: 0 };
  private lastError: { code: string; message: string } | undefined;
  private readonly worker: Promise<void>;

  constructor(options: ReportQueueOptions) {
    this.reporter = options.reporter;
    this.logger = options.logger.child({ component: 'report-queue', host: options.reporter.kind });
    this.sleep = options.sleep ?? defaultSleep;
    this.random = options.random ?? Math.random;
    this.initialBackoffMs = options.initialBackoffMs ?? 1000;
    this.maxBackoffMs = options.maxBackoffMs ?? 300_000;
    this.rateLimitMarginMs = options.rateLimitMarginMs ?? 1000;
    this.remember = options.rememberDelivered ?? 10_000;
    this.maxStatusReads = options.maxStatusReads ?? 3;
    this.worker = this.work().catch((error: unknown) => {
      this.logger.error({ err: error instanceof Error ? error.name : typeof error }, 'report queue stopped unexpectedly');
    });
  }

  /**
   * Queues a commit status; a newer one for the same commit and context replaces it while it waits.
   * It is not written when the commit already shows it (see {@link StatusMatch}; default `exact`).
   */
  status(status: CommitStatus, options: { match?: StatusMatch } = {}): void {
    this.enqueue({
      key: statusKey(status),
      fingerprint: statusFingerprint(status.state, status.description, status.targetUrl),
      outcome: statusOutcome(status.state, status.targetUrl),
      match: options.match ?? StatusMatch.exact,
      report: { kind: 'status', status: { ...status } },
    });
  }

  /** Queues vmroll's plan comment for a pull request; a newer body replaces it while it waits. */
  comment(pr: number, body: string): void {
    this.enqueue({ key: `comment ${pr}`, fingerprint: body, match: StatusMatch.exact, report: { kind: 'comment', pr, body } });
  }

  /** Reports waiting, the one being delivered included. */
  pending(): number {
    return this.entries.size;
  }

  /** Counters since the queue was made. */
  stats(): ReportQueueStats {
    return { pending: this.entries.size, ...this.counts, ...(this.lastError !== undefined && { lastError: { ...this.lastError } }) };
  }

  /**
   * Resolves true once every report is delivered (or given up), false if `timeoutMs` passes first
   * or the queue closes. A host that is down gets one immediate retry instead of the rest of its backoff.
   */
  flush(timeoutMs: number): Promise<boolean> {
    if (this.isIdle()) return Promise.resolve(true);
    if (this.closed) return Promise.resolve(false);
    if (this.wait?.reason === 'backoff') this.wait.controller.abort();
    return new Promise((resolve) => {
      let settled = false;
      const finish = (drained: boolean): void => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        this.idleWaiters = this.idleWaiters.filter((w) => w !== onIdle);
        resolve(drained);
      };
      const onIdle = (): void => finish(this.isIdle());
      const timer = setTimeout(() => finish(false), timeoutMs);
      this.idleWaiters.push(onIdle);
    });
  }

  /** Stops delivering after the report in flight settles; what is still waiting is logged and dropped. */
  async close(): Promise<void> {
    if (!this.closed) {
      this.closed = true;
      this.wait?.controller.abort();
      this.wake?.();
    }
    await this.worker;
    if (this.entries.size > 0) this.logger.warn({ pending: this.entries.size }, 'report queue closed with undelivered reports');
    for (const waiter of this.idleWaiters.splice(0)) waiter();
  }

  private enqueue(entry: Entry): void {
    if (this.closed) {
      this.logger.warn({ key: entry.key }, 'report queued after close; ignored');
      return;
    }
    const waiting = this.entries.get(entry.key);
    if (waiting === undefined && this.hostHas(entry)) {
      this.counts.skipped++;
      return;
    }
    // The one in flight is not superseded: it is already on its way.
    if (waiting !== undefined && waiting !== this.inFlight) this.counts.superseded++;
    this.entries.set(entry.key, entry);
    this.wake?.();
  }

  private isIdle(): boolean {
    return this.entries.size === 0 && this.inFlight === undefined;
  }

  private async work(): Promise<void> {
    while (!this.closed) {
      const entry = this.entries.values().next().value;
      if (entry === undefined) {
        for (const waiter of this.idleWaiters.splice(0)) waiter();
        await new Promise<void>((resolve) => (this.wake = resolve));
        this.wake = undefined;
        continue;
      }
      if (this.hostHas(entry)) {
        this.entries.delete(entry.key);
        this.counts.skipped++;
        this.logger.debug({ key: entry.key }, 'the host already shows this report; not sent again');
        continue;
      }
      if (entry.report.kind === 'status' && this.mustRead(entry.key)) {
        // The read is part of this entry's delivery: a newer report for the key that arrives meanwhile
        // waits its turn, as it would behind a write in flight (a `pending` is still shown).
        if (!(await this.readStatus(entry, entry.report.status)) || this.closed) continue;
        if (this.hostHas(entry)) {
          this.counts.skipped++;
          this.settle(entry);
          this.logger.debug({ key: entry.key }, 'the commit already shows this status; not posted again');
          continue;
        }
      }
      this.inFlight = entry;
      let error: unknown;
      let ok = false;
      try {
        await this.deliver(entry.report);
        ok = true;
      } catch (e) {
        error = e;
      } finally {
        this.inFlight = undefined;
      }
      if (ok) {
        this.failures = 0;
        this.counts.delivered++;
        this.remembered(entry.key, { fingerprint: entry.fingerprint, outcome: entry.outcome ?? null });
        this.settle(entry);
        continue;
      }
      await this.failed(entry, error);
    }
  }

  /** Whether the host is known to show what `entry` would write. */
  private hostHas(entry: Entry): boolean {
    const known = this.delivered.get(entry.key);
    if (known === undefined || known.fingerprint === null) return false;
    if (known.fingerprint === entry.fingerprint) return true;
    return entry.match === StatusMatch.outcome && known.outcome === entry.outcome;
  }

  /** A status key is read once, before its first write, unless known already or given up on. */
  private mustRead(key: string): boolean {
    if (this.reporter.latestStatus === undefined || this.delivered.has(key)) return false;
    return (this.readFailures.get(key) ?? 0) < this.maxStatusReads;
  }

  /**
   * Reads the newest status of the entry's context on its commit, so that a new process or a new
   * leader does not post again what the commit already shows. A host that is down or rate limited
   * is waited out as for a write; after `maxStatusReads` failures, or a refusal, the status is
   * written unread: a failed read never costs the write. False when the read is to be made again.
   */
  private async readStatus(entry: Entry, status: CommitStatus): Promise<boolean> {
    const read = this.reporter.latestStatus;
    if (read === undefined) return true;
    this.inFlight = entry;
    let found: Awaited<ReturnType<typeof read>>;
    try {
      found = await read.call(this.reporter, status.sha, status.context);
    } catch (error) {
      this.inFlight = undefined;
      return this.readFailed(entry, error);
    }
    this.inFlight = undefined;
    this.failures = 0;
    this.counts.statusReads++;
    this.readFailures.delete(entry.key);
    this.remembered(
      entry.key,
      found === null
        ? { fingerprint: null, outcome: null }
        : { fingerprint: statusFingerprint(found.state, found.description, found.targetUrl), outcome: statusOutcome(found.state, found.targetUrl) },
    );
    this.logger.debug({ key: entry.key, found: found?.state ?? null }, 'read the commit status the host shows');
    return true;
  }

  /** True: write without reading; false: the read is made again after the wait. */
  private async readFailed(entry: Entry, error: unknown): Promise<boolean> {
    this.counts.statusReadFailures++;
    const code = error instanceof GitHostError ? error.code : 'Unexpected';
    const message = error instanceof Error ? error.message : String(error);
    this.lastError = { code, message };
    const attempts = (this.readFailures.get(entry.key) ?? 0) + 1;
    const transient = error instanceof GitHostError && (error.code === 'RateLimited' || error.code === 'Unavailable');
    const where = { key: entry.key, code, error: message, attempt: attempts };
    if (!transient || attempts >= this.maxStatusReads) {
      this.readFailures.set(entry.key, Infinity);
      this.logger.warn(where, 'could not read the commit statuses; writing the status without checking');
      return true;
    }
    this.readFailures.set(entry.key, attempts);
    if (error.code === 'RateLimited') {
      const ms = (error.retryAfterMs ?? this.initialBackoffMs) + this.rateLimitMarginMs;
      this.logger.warn({ ...where, waitMs: ms }, 'Git host rate limit while reading statuses; waiting for the reset');
      await this.pause(ms, 'rateLimit');
    } else {
      this.failures++;
      const ms = this.backoffMs(this.failures);
      this.logger.warn({ ...where, waitMs: ms }, 'Git host unavailable while reading statuses; trying again');
      await this.pause(ms, 'backoff');
    }
    return false;
  }

  private async deliver(report: Report): Promise<void> {
    if (report.kind === 'status') {
      const { sha, context, state } = report.status;
      await this.reporter.postStatus(report.status);
      this.logger.debug({ report: 'status', sha, context, state }, 'commit status delivered');
    } else {
      const result = await this.reporter.upsertPlanComment(report.pr, report.body);
      this.logger.debug({ report: 'comment', pr: report.pr, ...result }, 'plan comment delivered');
    }
  }

  private async failed(entry: Entry, error: unknown): Promise<void> {
    const code = error instanceof GitHostError ? error.code : 'Unexpected';
    const message = error instanceof Error ? error.message : String(error);
    this.lastError = { code, message };
    const where = { key: entry.key, code, error: message };
    if (error instanceof GitHostError && error.code === 'RateLimited') {
      this.counts.retries++;
      const ms = (error.retryAfterMs ?? this.initialBackoffMs) + this.rateLimitMarginMs;
      this.logger.warn({ ...where, waitMs: ms, pending: this.entries.size }, 'Git host rate limit; waiting for the reset');
      await this.pause(ms, 'rateLimit');
      return;
    }
    if (error instanceof GitHostError && error.code === 'Unavailable') {
      this.counts.retries++;
      this.failures++;
      const ms = this.backoffMs(this.failures);
      this.logger.warn({ ...where, waitMs: ms, attempt: this.failures, pending: this.entries.size }, 'Git host unavailable; report kept for retry');
      await this.pause(ms, 'backoff');
      return;
    }
    // Retrying cannot help: a person has to fix the token, or the commit or PR is gone.
    this.counts.dropped++;
    this.logger.error(where, 'Git host refused a report; dropped');
    this.settle(entry);
  }

  /** Exponential backoff with ±20 % jitter, so several vmroll instances do not retry in step. */
  private backoffMs(failures: number): number {
    const base = Math.min(this.maxBackoffMs, this.initialBackoffMs * 2 ** Math.min(failures - 1, 30));
    return Math.min(this.maxBackoffMs, Math.round(base * (0.8 + 0.4 * this.random())));
  }

  private async pause(ms: number, reason: WaitReason): Promise<void> {
    if (this.closed) return;
    const controller = new AbortController();
    this.wait = { reason, controller };
    try {
      await this.sleep(ms, controller.signal);
    } finally {
      this.wait = undefined;
    }
  }

  /** Removes the entry unless a newer report for its key arrived meanwhile. */
  private settle(entry: Entry): void {
    if (this.entries.get(entry.key) === entry) {
      this.entries.delete(entry.key);
      this.readFailures.delete(entry.key);
    }
  }

  private remembered(key: string, known: Known): void {
    this.delivered.delete(key);
    this.delivered.set(key, known);
    if (this.delivered.size > this.remember) {
      const oldest = this.delivered.keys().next().value;
      if (oldest !== undefined) this.delivered.delete(oldest);
    }
  }
}
