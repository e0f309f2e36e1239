// Shared types of Git host reporting: the contract between the reporters, the queue,
// the PR comment rendering and the PR review (see reconciler/report/README.md).

/** Commit status states, as GitHub and Gitea spell them. */
export const StatusState = { pending: 'pending', success: 'success', failure: 'failure', error: 'error' } as const;
export type StatusState = (typeof StatusState)[keyof typeof StatusState];

/** The commit status contexts vmroll writes. */
export const StatusContext = { sync: 'vmroll/sync', plan: 'vmroll/plan' } as const;
export type StatusContext = (typeof StatusContext)[keyof typeof StatusContext];

/** One commit status to post. description ≤ 140 chars (cut by the reporter if longer). */
export interface CommitStatus { sha: string; context: StatusContext; state: StatusState; description: string; targetUrl?: string }

/** The newest status of one context on a commit, as the host shows it (Gitea adds the state `warning`). */
export interface HostStatus { state: string; description: string; targetUrl: string | null }

/** GitHub caps a commit status description at this many characters. */
export const MAX_STATUS_DESCRIPTION = 140;

/** Cuts a commit status description to GitHub's limit, marking the cut. */
export function cutDescription(description: string): string {
  const chars = Array.from(description);
  return chars.length <= MAX_STATUS_DESCRIPTION ? description : `${chars.slice(0, MAX_STATUS_DESCRIPTION - 1).join('')}…`;
}

/** An open pull request as vmroll needs it. */
export interface PullRequestInfo { number: number; headSha: string; headRef: string; baseRef: string; baseSha: string; title: string }

/** A pull request merged into its base, for reporting what the merge does to running VMs. */
export interface MergedPullRequestInfo extends PullRequestInfo { mergedAt: string; mergeCommitSha: string | null }

/** The hidden marker that identifies vmroll's sticky comment. */
export const PLAN_MARKER = '<!-- vmroll:plan -->';

/** Whether the host's status says what `status` would: the same state, description (as the host keeps it, cut) and target URL. */
export function sameStatus(found: HostStatus, status: CommitStatus): boolean {
  return found.state === status.state && found.description === cutDescription(status.description) && (found.targetUrl || null) === (status.targetUrl || null);
}

/** A Git host (GitHub, Gitea) as vmroll writes to it. */
export interface GitHostReporter {
  readonly kind: 'github' | 'gitea';
  postStatus(status: CommitStatus): Promise<void>;
  /** The newest status of `context` on the commit, or null when it has none. Optional: without it the queue writes without checking. */
  latestStatus?(sha: string, context: StatusContext): Promise<HostStatus | null>;
  listOpenPullRequests(): Promise<PullRequestInfo[]>;
  /** Finds the comment containing PLAN_MARKER on the PR and edits it, or creates one. body must contain the marker. */
  upsertPlanComment(pr: number, body: string): Promise<{ id: number; created: boolean; changed: boolean }>;
  /** Pull requests merged at or after `since`, newest merge first. Optional: not every host lists them cheaply. */
  listRecentlyMergedPullRequests?(since: Date): Promise<MergedPullRequestInfo[]>;
}

/** Typed error of a Git host call, never carrying the token. retryAfterMs set for rate limits. */
export class GitHostError extends Error {
  constructor(readonly code: 'RateLimited' | 'Unavailable' | 'Unauthorized' | 'NotFound' | 'Invalid', message: string, readonly retryAfterMs?: number) {
    super(message);
    this.name = 'GitHostError';
  }
}

/** How a failed exchange with a Git host looked, before it becomes a {@link GitHostError}. */
export interface HostFailure {
  /** HTTP status; absent when no answer came (network error, timeout). */
  status?: number;
  /** Response headers, lower-case names. */
  headers?: Readonly<Record<string, string | undefined>>;
  /** The host's own `message`, or the network error's text. */
  detail?: string;
}

/** Without a hint from the host, a rate-limited client waits this long (GitHub's advice for secondary limits). */
export const DEFAULT_RATE_LIMIT_WAIT_MS = 60_000;

function secondsHeader(value: string | undefined): number | undefined {
  if (value === undefined || !/^\s*\d+\s*$/.test(value)) return undefined;
  return Number(value);
}

/** How long a rate-limited host asks us to wait, from `retry-after` or `x-ratelimit-*`; undefined when not a rate limit. */
export function rateLimitWaitMs(status: number, headers: Readonly<Record<string, string | undefined>>, detail: string, now: number): number | undefined {
  if (status !== 403 && status !== 429) return undefined;
  const retryAfter = headers['retry-after'];
  if (retryAfter !== undefined) {
    const seconds = secondsHeader(retryAfter);
    if (seconds !== undefined) return seconds * 1000;
    const date = Date.parse(retryAfter);
    if (!Number.isNaN(date)) return Math.max(0, date - now);
  }
  const reset = secondsHeader(headers['x-ratelimit-reset']);
  if (headers['x-ratelimit-remaining']?.trim() === '0' && reset !== undefined) return Math.max(0, reset * 1000 - now);
  // A 403 without rate-limit headers is a permission problem unless the host says otherwise.
  if (status === 429 || /rate limit/i.test(detail)) return DEFAULT_RATE_LIMIT_WAIT_MS;
  return undefined;
}

/**
 * Turns a failed Git host call into a {@link GitHostError}: the one place that decides what is retried.
 * Every secret is removed from the message, which never includes request headers.
 */
export function gitHostErrorFrom(failure: HostFailure, where: string, secrets: readonly string[], now: number): GitHostError {
  const detail = failure.detail ?? '';
  const status = failure.status;
  const text = (what: string): string => {
    let message = `${where}: ${what}${detail ? `: ${detail}` : ''}`;
    for (const secret of secrets) if (secret.length > 0) message = message.split(secret).join('[redacted]');
    return message.length > 500 ? `${message.slice(0, 499)}…` : message;
  };
  if (status === undefined) return new GitHostError('Unavailable', text('no answer'));
  const http = `HTTP ${status}`;
  const wait = rateLimitWaitMs(status, failure.headers ?? {}, detail, now);
  if (wait !== undefined) return new GitHostError('RateLimited', text(`${http}, rate limited for ${Math.ceil(wait / 1000)} s`), wait);
  if (status === 401 || status === 403) return new GitHostError('Unauthorized', text(http));
  if (status === 404 || status === 410) return new GitHostError('NotFound', text(http));
  if (status === 408 || status >= 500) return new GitHostError('Unavailable', text(http));
  return new GitHostError('Invalid', text(http));
}
