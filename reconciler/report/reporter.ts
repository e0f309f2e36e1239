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

/** An open pull request as vmroll needs it. */
export interface PullRequestInfo { number: number; headSha: string; headRef: string; baseRef: string; baseSha: string; title: string }

/** The hidden marker that identifies vmroll's sticky comment. */
export const PLAN_MARKER = '<!-- vmroll:plan -->';

/** A Git host (GitHub, Gitea) as vmroll writes to it. */
export interface GitHostReporter {
  readonly kind: 'github' | 'gitea';
  postStatus(status: CommitStatus): Promise<void>;
  listOpenPullRequests(): Promise<PullRequestInfo[]>;
  /** Finds the comment containing PLAN_MARKER on the PR and edits it, or creates one. body must contain the marker. */
  upsertPlanComment(pr: number, body: string): Promise<{ id: number; created: boolean; changed: boolean }>;
}

/** Typed error of a Git host call, never carrying the token. retryAfterMs set for rate limits. */
export class GitHostError extends Error {
  constructor(readonly code: 'RateLimited' | 'Unavailable' | 'Unauthorized' | 'NotFound' | 'Invalid', message: string, readonly retryAfterMs?: number) {
    super(message);
    this.name = 'GitHostError';
  }
}
