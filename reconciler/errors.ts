/**
 * What a failure asks of whoever sees it: a person, a short wait, or a backoff. Every adapter
 * (Git source, cluster, Git host, the network below them) keeps its own typed error; this is the
 * one place that turns any of them into an {@link ErrorKind}, so the retry decision of the
 * repository chain (controller/backoff.ts) reads one word instead of every error class.
 */
import { ClusterError } from './cluster/backend.ts';
import { RetryDecision, retryDecision } from './cluster/retry.ts';
import { GitHostError } from './report/reporter.ts';
import { SourceError, redactSecrets } from './source/errors.ts';

/** What a failure asks for. */
export const ErrorKind = {
  /** Needs a person: a refused token (401/403), a repository or branch not found, forbidden, an invalid configuration. Retrying sooner cannot help. */
  stalled: 'stalled',
  /** Retry soon: the world is moving and will settle by itself (the cluster has not observed a write yet, a conflicting writer, a VM migrating). */
  waiting: 'waiting',
  /** Back off and retry: the other side is down or overloaded (5xx, 429, timeouts, connection refused or reset). */
  transient: 'transient',
} as const;
/** One of {@link ErrorKind}. */
export type ErrorKind = (typeof ErrorKind)[keyof typeof ErrorKind];

/** Node and undici error codes of a connection that failed or broke: the other side may be back soon. */
const NETWORK_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ECONNABORTED',
  'ETIMEDOUT',
  'EPIPE',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'ENETDOWN',
  'EAI_AGAIN',
  // A name that does not resolve is as often a DNS blip as a typo; the backoff is capped at the interval either way.
  'ENOTFOUND',
  'UND_ERR_CONNECT_TIMEOUT',
  'UND_ERR_HEADERS_TIMEOUT',
  'UND_ERR_BODY_TIMEOUT',
  'UND_ERR_SOCKET',
  'UND_ERR_CLOSED',
]);

/** The error and its `cause` chain (bounded: a cyclic chain must not hang the classifier). */
function chain(e: unknown): unknown[] {
  const out: unknown[] = [];
  for (let x: unknown = e; x !== undefined && x !== null && out.length < 8; x = (x as { cause?: unknown }).cause) {
    out.push(x);
    if (typeof x !== 'object') break;
  }
  return out;
}

/** Whether `e` (or what caused it) is a network failure, a timeout or an abort. */
function isNetworkFailure(e: unknown): boolean {
  return chain(e).some((x) => {
    if (typeof x !== 'object' || x === null) return false;
    const { code, name } = x as { code?: unknown; name?: unknown };
    return (typeof code === 'string' && NETWORK_CODES.has(code)) || name === 'TimeoutError' || name === 'AbortError';
  });
}

/**
 * Maps any error an adapter throws to what it asks for. The Git source and the cluster decide
 * for themselves (SourceError's `kind` from its code; the cluster's {@link retryDecision}), and
 * this function only translates their answer; a Git host error by its code; a bare network error
 * (refused, reset, timed out, aborted) is transient. Anything else is an error no adapter typed:
 * a bug or an unexpected library exception, which retrying sooner does not fix, so stalled.
 */
export function errorKind(e: unknown): ErrorKind {
  if (e instanceof SourceError) return e.kind;
  if (e instanceof ClusterError) {
    // The cluster's own retry rules, read as kinds: what it would never retry needs a person,
    // a conflict clears once the other writer is done, and what it backs off from stays so.
    const decision = retryDecision(e);
    return decision === RetryDecision.stop ? ErrorKind.stalled : decision === RetryDecision.refresh ? ErrorKind.waiting : ErrorKind.transient;
  }
  if (e instanceof GitHostError) return e.code === 'Unavailable' || e.code === 'RateLimited' ? ErrorKind.transient : ErrorKind.stalled;
  if (isNetworkFailure(e)) return ErrorKind.transient;
  return ErrorKind.stalled;
}

/** Longest cause {@link errorCause} returns; a commit status description holds 140 characters in all. */
export const CAUSE_MAX_CHARS = 120;

/**
 * One line that says why `e` happened, safe to log and to post: the first line of its message,
 * credentials in URLs and `secrets` replaced, a `Bearer`/`Basic` credential or a `token=` value
 * masked, whitespace collapsed, cut to `maxChars` with an ellipsis. A network error wrapped by
 * fetch (`fetch failed`) names its cause, which is what a person needs.
 */
export function errorCause(e: unknown, secrets: readonly string[] = [], maxChars = CAUSE_MAX_CHARS): string {
  let text = e instanceof Error ? e.message : String(e);
  if (e instanceof Error && e.cause instanceof Error && !text.includes(e.cause.message)) text = `${text}: ${e.cause.message}`;
  const first = (text.split('\n').find((l) => l.trim() !== '') ?? '').trim();
  const clean = redactSecrets(first, secrets)
    .replace(/\b(Bearer|Basic|token)\s+[A-Za-z0-9._~+/=-]{8,}/gi, '$1 ***')
    .replace(/\b(access_token|token|password)=[^&\s]+/gi, '$1=***')
    .replace(/\s+/g, ' ');
  const line = clean === '' ? (e instanceof Error ? e.name : 'unknown error') : clean;
  return line.length <= maxChars ? line : `${line.slice(0, maxChars - 1)}…`;
}
