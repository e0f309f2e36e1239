/**
 * The one place that decides whether a cluster request is tried again: conflicts after a
 * fresh read, server errors and timeouts with exponential backoff, everything else never.
 */
import { ClusterError } from './backend.ts';

/** How a failed request is handled. */
export const RetryDecision = {
  /** Give up: the error needs a person (invalid object, forbidden, not found). */
  stop: 'stop',
  /** Read the object again, then retry (409 Conflict). */
  refresh: 'refresh',
  /** Wait and retry (5xx, 429, timeouts, dropped connections). */
  backoff: 'backoff',
} as const;
/** One of {@link RetryDecision}. */
export type RetryDecision = (typeof RetryDecision)[keyof typeof RetryDecision];

/** Decides what to do with a failed request. */
export function retryDecision(error: unknown): RetryDecision {
  if (!(error instanceof ClusterError)) return RetryDecision.backoff;
  if (error.code === 'Conflict') return error.data['reason'] === 'AlreadyExists' ? RetryDecision.stop : RetryDecision.refresh;
  if (error.code === 'Unavailable') return RetryDecision.backoff;
  return RetryDecision.stop;
}

/** Bounds of the retry loop. */
export interface RetryPolicy {
  /** Attempts in all, the first included. */
  attempts: number;
  /** First backoff delay. */
  baseMs: number;
  /** Longest single delay. */
  capMs: number;
}

/** Defaults: 6 attempts, 100 ms doubling to 2 s (about 4 s of waiting at most). */
export const DEFAULT_RETRY: RetryPolicy = { attempts: 6, baseMs: 100, capMs: 2000 };

/** Options of {@link withRetry}. */
export interface WithRetryOptions {
  policy?: RetryPolicy;
  /** Called before retrying after a conflict (a fresh read of the object). */
  refresh?: () => Promise<void>;
  /** Called before each retry, for logs and metrics. */
  onRetry?: (attempt: number, error: unknown, delayMs: number) => void;
  /** Sleeps; injectable for tests. */
  sleep?: (ms: number) => Promise<void>;
}

const realSleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Runs `fn`, retrying per {@link retryDecision} within the policy's bounds; rethrows the last error. */
export async function withRetry<T>(fn: () => Promise<T>, options: WithRetryOptions = {}): Promise<T> {
  const policy = options.policy ?? DEFAULT_RETRY;
  const sleep = options.sleep ?? realSleep;
  for (let attempt = 1; ; attempt++) {
    try {
      return await fn();
    } catch (e) {
      const decision = retryDecision(e);
      if (decision === RetryDecision.stop || attempt >= policy.attempts) throw e;
      // Full jitter keeps many reconcilers from retrying in step.
      const ceiling = Math.min(policy.capMs, policy.baseMs * 2 ** (attempt - 1));
      const delay = decision === RetryDecision.refresh ? 0 : Math.round(ceiling / 2 + (Math.random() * ceiling) / 2);
      options.onRetry?.(attempt, e, delay);
      if (delay > 0) await sleep(delay);
      if (decision === RetryDecision.refresh) await options.refresh?.();
    }
  }
}
