/**
 * When a repository syncs next, from how its last sync ended: the one retry decision of the
 * repository chain. Pure (the random source is passed in), so the rule is tested as a table.
 */
import { ErrorKind } from '../errors.ts';

/** The delays of {@link nextSyncDelay}. */
export const SYNC_RETRY = {
  /** First retry after a transient failure; doubles per consecutive one, up to the interval. */
  transientFirstMs: 5_000,
  /** A waiting failure is re-checked after a delay between these two. */
  waitingMinMs: 5_000,
  waitingMaxMs: 10_000,
  /** Spread of a transient retry around its nominal delay (±20%), so replicas and repositories do not retry in step. */
  transientJitter: 0.2,
  /** Spread of the interval (±10%), as `--interval` documents. */
  intervalJitter: 0.1,
} as const;

/** What {@link nextSyncDelay} decides from. */
export interface SyncRetryInput {
  /** How the last sync failed, or null when it succeeded. */
  kind: ErrorKind | null;
  /** Failures in a row, the last one included (0 after a success). */
  failures: number;
  /** The repository's interval. */
  intervalMs: number;
  /** Uniform in [0, 1); default Math.random. */
  random?: () => number;
}

/**
 * Milliseconds until the next sync: after a success or a stalled failure the interval (a person
 * must act; syncing sooner only repeats the failure); after a transient one 5 s doubling per
 * failure in a row, capped at the interval; after a waiting one 5–10 s. Never above the interval.
 */
export function nextSyncDelay(input: SyncRetryInput): number {
  const random = input.random ?? Math.random;
  const interval = input.intervalMs * (1 - SYNC_RETRY.intervalJitter + 2 * SYNC_RETRY.intervalJitter * random());
  if (input.kind === ErrorKind.waiting) return Math.min(interval, SYNC_RETRY.waitingMinMs + (SYNC_RETRY.waitingMaxMs - SYNC_RETRY.waitingMinMs) * random());
  if (input.kind !== ErrorKind.transient) return interval;
  const nominal = SYNC_RETRY.transientFirstMs * 2 ** Math.min(Math.max(input.failures, 1) - 1, 30);
  if (nominal >= input.intervalMs) return interval;
  return Math.min(interval, nominal * (1 - SYNC_RETRY.transientJitter + 2 * SYNC_RETRY.transientJitter * random()));
}
