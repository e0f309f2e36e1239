/**
 * The report queue: commit statuses and plan comments wait here until the Git host takes them.
 * An outage or a rate limit delays reports, it never loses them; only the newest report per
 * (commit, context) and per pull request is kept, and one identical to what the host already
 * has is not sent again. The retry decision for Git host writes is made here and nowhere else.
 */
import type { Logger } from 'pino';
import { GitHostError, type CommitStatus, type GitHostReporter } from './reporter.ts';

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
}

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
  /** The last failure, token-free. */
  lastError?: { code: string; message: string };
}

type Report = { kind: 'status'; status: CommitStatus } | { kind: 'comment'; pr: number; body: string };

interface Entry {
  key: string;
  /** What makes two reports for the same key the same write. */
  fingerprint: string;
  report: Report;
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
  /** Fingerprint of the last report the host accepted, per key, oldest first. */
  private readonly delivered = new Map<string, string>();
  private inFlight: Entry | undefined;
  private failures = 0;
  private closed = false;
  private wake: (() => void) | undefined;
  private wait: { reason: WaitReason; controller: AbortController } | undefined;
  private idleWaiters: Array<() => void> = [];
  private readonly counts = { delivered: 0, skipped: 0, superseded: 0, dropped: 0, retries: 0 };
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
    this.worker = this.work().catch((error: unknown) => {
      this.logger.error({ err: error instanceof Error ? error.name : typeof error }, 'report queue stopped unexpectedly');
    });
  }

  /** Queues a commit status; a newer one for the same commit and context replaces it while it waits. */
  status(status: CommitStatus): void {
    this.enqueue({
      key: statusKey(status),
      fingerprint: JSON.stringify([status.state, status.description, status.targetUrl ?? null]),
      report: { kind: 'status', status: { ...status } },
    });
  }

  /** Queues vmroll's plan comment for a pull request; a newer body replaces it while it waits. */
  comment(pr: number, body: string): void {
    this.enqueue({ key: `comment ${pr}`, fingerprint: body, report: { kind: 'comment', pr, body } });
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
    if (waiting === undefined && this.delivered.get(entry.key) === entry.fingerprint) {
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
      if (this.delivered.get(entry.key) === entry.fingerprint) {
        this.entries.delete(entry.key);
        this.counts.skipped++;
        continue;
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
        this.remembered(entry);
        this.settle(entry);
        continue;
      }
      await this.failed(entry, error);
    }
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
    if (this.entries.get(entry.key) === entry) this.entries.delete(entry.key);
  }

  private remembered(entry: Entry): void {
    this.delivered.delete(entry.key);
    this.delivered.set(entry.key, entry.fingerprint);
    if (this.delivered.size > this.remember) {
      const oldest = this.delivered.keys().next().value;
      if (oldest !== undefined) this.delivered.delete(oldest);
    }
  }
}
