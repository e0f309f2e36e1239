/**
 * The GitHub reporter: commit statuses, open pull requests and vmroll's sticky plan comment over
 * GitHub's REST API (github.com or Enterprise Server). Octokit exceptions become {@link GitHostError}s
 * here; none of them, nor any log line, carries the token.
 */
import { Octokit } from '@octokit/rest';
import type { Logger } from 'pino';
import {
  GitHostError,
  MAX_STATUS_DESCRIPTION,
  PLAN_MARKER,
  cutDescription,
  gitHostErrorFrom,
  type CommitStatus,
  type HostStatus,
  type StatusContext,
  type GitHostReporter,
  type MergedPullRequestInfo,
  type PullRequestInfo,
} from './reporter.ts';

/** How to reach one GitHub repository. */
export interface GitHubReporterOptions {
  /** `owner/name`. */
  repo: string;
  /** REST root; default `https://api.github.com`. Enterprise Server: `https://<host>/api/v3`. */
  apiUrl?: string;
  /** A token allowed to write commit statuses and issue comments; the caller reads it from env or file. */
  token: string;
  /** Default `vmroll`. */
  userAgent?: string;
  /** Octokit's own messages go here at debug level; default: dropped. */
  logger?: Logger;
  /** A request without a full answer after this long fails as `Unavailable`; default 30 s. */
  requestTimeoutMs?: number;
  /** Clock for rate-limit arithmetic; default `Date.now`. */
  now?: () => number;
}

/** The rate-limit budget GitHub reported on its last answer. */
export interface RateLimitState {
  /** Requests allowed per window, when GitHub said. */
  limit?: number;
  /** Requests left in the window. */
  remaining: number;
  /** When the window resets, epoch ms. */
  resetAt: number;
}

// Kept importable from here, where they lived first.
export { MAX_STATUS_DESCRIPTION, cutDescription };

/** Contexts per page of the combined status (GitHub's maximum). */
const STATUS_PAGE = 100;
/** A commit with more contexts than this many pages is not read further: the status is written. */
const MAX_STATUS_PAGES = 10;

/** Splits `owner/name`; anything else is a configuration mistake. */
export function parseRepo(repo: string): { owner: string; name: string } {
  const match = /^([A-Za-z0-9_.-]+)\/([A-Za-z0-9_.-]+)$/.exec(repo.trim());
  if (!match?.[1] || !match[2]) throw new GitHostError('Invalid', `repository must be owner/name, got ${JSON.stringify(repo)}`);
  return { owner: match[1], name: match[2] };
}

interface RawPull {
  number: number;
  title: string;
  head: { sha: string; ref: string };
  base: { sha: string; ref: string };
  merged_at?: string | null;
  merge_commit_sha?: string | null;
  updated_at?: string;
}

function pullInfo(pull: RawPull): PullRequestInfo {
  return { number: pull.number, headSha: pull.head.sha, headRef: pull.head.ref, baseRef: pull.base.ref, baseSha: pull.base.sha, title: pull.title };
}

function headerRecord(value: unknown): Record<string, string | undefined> {
  const out: Record<string, string | undefined> = {};
  if (typeof value !== 'object' || value === null) return out;
  for (const [name, v] of Object.entries(value)) {
    if (typeof v === 'string' || typeof v === 'number') out[name.toLowerCase()] = String(v);
  }
  return out;
}

/** Reads status, headers and the host's message out of whatever Octokit threw, and nothing else. */
function describeFailure(error: unknown): { status?: number; headers: Record<string, string | undefined>; detail: string } {
  if (typeof error !== 'object' || error === null) return { headers: {}, detail: String(error) };
  const e = error as { status?: unknown; response?: { status?: unknown; headers?: unknown; data?: unknown }; message?: unknown; name?: unknown };
  const response = e.response;
  // Octokit reports a network failure or timeout as status 500 without a response: that is no answer.
  const status = typeof response?.status === 'number' ? response.status : undefined;
  const data = response?.data;
  let detail = '';
  if (typeof data === 'object' && data !== null && typeof (data as { message?: unknown }).message === 'string') {
    detail = (data as { message: string }).message;
    // A 422 names what was wrong only in `errors`.
    const errors = (data as { errors?: unknown }).errors;
    if (Array.isArray(errors)) {
      const said = errors.map((x: unknown) => (typeof x === 'object' && x !== null && typeof (x as { message?: unknown }).message === 'string' ? (x as { message: string }).message : '')).filter((m) => m.length > 0);
      if (said.length > 0) detail += ` (${said.join('; ')})`;
    }
  } else if (status === undefined && typeof e.message === 'string') {
    detail = e.message;
  } else if (typeof data === 'string') {
    detail = data.slice(0, 200);
  }
  return status === undefined ? { headers: {}, detail } : { status, headers: headerRecord(response?.headers), detail };
}

/** Writes vmroll's reports to one GitHub repository. */
export class GitHubReporter implements GitHostReporter {
  readonly kind = 'github' as const;
  readonly owner: string;
  readonly repoName: string;
  private readonly octokit: Octokit;
  private readonly token: string;
  private readonly now: () => number;
  private lastRateLimit: RateLimitState | undefined;

  constructor(options: GitHubReporterOptions) {
    const { owner, name } = parseRepo(options.repo);
    this.owner = owner;
    this.repoName = name;
    this.token = options.token;
    this.now = options.now ?? Date.now;
    const timeoutMs = options.requestTimeoutMs ?? 30_000;
    const logger = options.logger?.child({ component: 'octokit' });
    const quiet = (message: string): void => void logger?.debug({ detail: this.redact(message) }, 'octokit');
    const fetchWithTimeout = async (url: string | URL | Request, init?: RequestInit): Promise<Response> => {
      const timeout = AbortSignal.timeout(timeoutMs);
      const signal = init?.signal ? AbortSignal.any([init.signal, timeout]) : timeout;
      const response = await fetch(url, { ...init, signal });
      this.observeRateLimit(response.headers);
      return response;
    };
    // @octokit/rest carries no retry or throttling plugin: the report queue owns retries.
    this.octokit = new Octokit({
      auth: options.token,
      baseUrl: (options.apiUrl ?? 'https://api.github.com').replace(/\/+$/, ''),
      userAgent: options.userAgent ?? 'vmroll',
      log: { debug: quiet, info: quiet, warn: (m: string) => void logger?.warn({ detail: this.redact(m) }, 'octokit warning'), error: quiet },
      request: { fetch: fetchWithTimeout },
      headers: { 'x-github-api-version': '2022-11-28' },
    });
  }

  /** The rate-limit budget seen on the last answer, for metrics. */
  rateLimit(): RateLimitState | undefined {
    return this.lastRateLimit === undefined ? undefined : { ...this.lastRateLimit };
  }

  async postStatus(status: CommitStatus): Promise<void> {
    await this.call(`create status ${status.context} on ${status.sha.slice(0, 12)}`, () =>
      this.octokit.rest.repos.createCommitStatus({
        owner: this.owner,
        repo: this.repoName,
        sha: status.sha,
        state: status.state,
        context: status.context,
        description: cutDescription(status.description),
        ...(status.targetUrl !== undefined && { target_url: status.targetUrl }),
      }),
    );
  }

  async latestStatus(sha: string, context: StatusContext): Promise<HostStatus | null> {
    // The combined status holds the newest status of each context, so one page usually answers.
    for (let page = 1; page <= MAX_STATUS_PAGES; page++) {
      const answer = await this.call(`read statuses of ${sha.slice(0, 12)}`, () =>
        this.octokit.rest.repos.getCombinedStatusForRef({ owner: this.owner, repo: this.repoName, ref: sha, per_page: STATUS_PAGE, page }),
      );
      const found = answer.data.statuses.find((s) => s.context === context);
      if (found !== undefined) return { state: found.state, description: found.description ?? '', targetUrl: found.target_url || null };
      if (answer.data.statuses.length < STATUS_PAGE) return null;
    }
    return null;
  }

  async listOpenPullRequests(): Promise<PullRequestInfo[]> {
    const pulls = await this.call('list open pull requests', () =>
      this.octokit.paginate(this.octokit.rest.pulls.list, { owner: this.owner, repo: this.repoName, state: 'open', per_page: 100 }),
    );
    return pulls.map(pullInfo);
  }

  async listRecentlyMergedPullRequests(since: Date): Promise<MergedPullRequestInfo[]> {
    const sinceMs = since.getTime();
    const pulls = await this.call('list merged pull requests', () =>
      this.octokit.paginate(
        this.octokit.rest.pulls.list,
        { owner: this.owner, repo: this.repoName, state: 'closed', sort: 'updated', direction: 'desc', per_page: 100 },
        (response, done) => {
          // Sorted by last update, newest first: once a page ends before `since`, later pages are older still.
          const last = response.data.at(-1);
          if (last !== undefined && Date.parse(last.updated_at) < sinceMs) done();
          return response.data;
        },
      ),
    );
    const merged: MergedPullRequestInfo[] = [];
    for (const pull of pulls as RawPull[]) {
      if (typeof pull.merged_at !== 'string' || Date.parse(pull.merged_at) < sinceMs) continue;
      merged.push({ ...pullInfo(pull), mergedAt: pull.merged_at, mergeCommitSha: pull.merge_commit_sha ?? null });
    }
    return merged.sort((a, b) => Date.parse(b.mergedAt) - Date.parse(a.mergedAt));
  }

  async upsertPlanComment(pr: number, body: string): Promise<{ id: number; created: boolean; changed: boolean }> {
    if (!body.includes(PLAN_MARKER)) throw new GitHostError('Invalid', `plan comment for #${pr} lacks the marker; it could never be found again`);
    const comments = await this.call(`list comments of #${pr}`, () =>
      this.octokit.paginate(this.octokit.rest.issues.listComments, { owner: this.owner, repo: this.repoName, issue_number: pr, per_page: 100 }),
    );
    // Should two ever exist (a race with a second vmroll), keep editing the oldest so the thread stays stable.
    const ours = comments.filter((c) => typeof c.body === 'string' && c.body.includes(PLAN_MARKER)).sort((a, b) => a.id - b.id)[0];
    if (ours === undefined) {
      const created = await this.call(`comment on #${pr}`, () =>
        this.octokit.rest.issues.createComment({ owner: this.owner, repo: this.repoName, issue_number: pr, body }),
      );
      return { id: created.data.id, created: true, changed: true };
    }
    if (ours.body === body) return { id: ours.id, created: false, changed: false };
    await this.call(`edit comment ${ours.id} on #${pr}`, () =>
      this.octokit.rest.issues.updateComment({ owner: this.owner, repo: this.repoName, comment_id: ours.id, body }),
    );
    return { id: ours.id, created: false, changed: true };
  }

  private async call<T>(what: string, run: () => Promise<T>): Promise<T> {
    try {
      return await run();
    } catch (error) {
      // Build our own error: Octokit's carries the request options, headers included.
      throw gitHostErrorFrom(describeFailure(error), `GitHub ${this.owner}/${this.repoName}: ${what}`, [this.token], this.now());
    }
  }

  private observeRateLimit(headers: Headers): void {
    const remaining = headers.get('x-ratelimit-remaining');
    const reset = headers.get('x-ratelimit-reset');
    if (remaining === null || reset === null || !/^\d+$/.test(remaining) || !/^\d+$/.test(reset)) return;
    const limit = headers.get('x-ratelimit-limit');
    this.lastRateLimit = { remaining: Number(remaining), resetAt: Number(reset) * 1000, ...(limit !== null && /^\d+$/.test(limit) && { limit: Number(limit) }) };
  }

  private redact(text: string): string {
    return this.token.length > 0 ? text.split(this.token).join('[redacted]') : text;
  }
}
