/**
 * The Gitea reporter: the same reports as the GitHub one over Gitea's REST API (`/api/v1`), with
 * plain fetch. Failures become {@link GitHostError}s here; none of them carries the token.
 */
import type { Logger } from 'pino';
import { parseRepo } from './github.ts';
import {
  GitHostError,
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

/** How to reach one Gitea repository. */
export interface GiteaReporterOptions {
  /** `owner/name`. */
  repo: string;
  /** The server's root URL, e.g. `https://gitea.example.com`; `/api/v1` is added unless already there. */
  apiUrl: string;
  /** An access token with repository write scope. */
  token: string;
  /** Default `vmroll`. */
  userAgent?: string;
  /** Request-level debug lines go here; default: dropped. */
  logger?: Logger;
  /** A request without a full answer after this long fails as `Unavailable`; default 30 s. */
  requestTimeoutMs?: number;
  /** Clock for rate-limit arithmetic; default `Date.now`. */
  now?: () => number;
}

/** Gitea's default upper bound on page size (`MAX_RESPONSE_ITEMS`). */
const PAGE_SIZE = 50;
/** A runaway pagination (a server ignoring `page`) stops here. */
const MAX_PAGES = 200;

interface RawPull {
  number: number;
  title: string;
  head: { sha: string; ref: string };
  base: { sha: string; ref: string };
  merged?: boolean;
  merged_at?: string | null;
  merge_commit_sha?: string | null;
  updated_at?: string;
}

interface RawComment {
  id: number;
  body: string;
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function isRawPull(value: unknown): value is RawPull {
  if (!isObject(value) || typeof value['number'] !== 'number' || typeof value['title'] !== 'string') return false;
  const branch = (b: unknown): boolean => isObject(b) && typeof b['sha'] === 'string' && typeof b['ref'] === 'string';
  return branch(value['head']) && branch(value['base']);
}

function isRawComment(value: unknown): value is RawComment {
  return isObject(value) && typeof value['id'] === 'number' && typeof value['body'] === 'string';
}

function pullInfo(pull: RawPull): PullRequestInfo {
  return { number: pull.number, headSha: pull.head.sha, headRef: pull.head.ref, baseRef: pull.base.ref, baseSha: pull.base.sha, title: pull.title };
}

/** Writes vmroll's reports to one Gitea repository. */
export class GiteaReporter implements GitHostReporter {
  readonly kind = 'gitea' as const;
  readonly owner: string;
  readonly repoName: string;
  private readonly root: string;
  private readonly token: string;
  private readonly userAgent: string;
  private readonly timeoutMs: number;
  private readonly logger: Logger | undefined;
  private readonly now: () => number;

  constructor(options: GiteaReporterOptions) {
    const { owner, name } = parseRepo(options.repo);
    this.owner = owner;
    this.repoName = name;
    const base = options.apiUrl.replace(/\/+$/, '');
    this.root = /\/api\/v1$/.test(base) ? base : `${base}/api/v1`;
    this.token = options.token;
    this.userAgent = options.userAgent ?? 'vmroll';
    this.timeoutMs = options.requestTimeoutMs ?? 30_000;
    this.logger = options.logger?.child({ component: 'gitea' });
    this.now = options.now ?? Date.now;
  }

  async postStatus(status: CommitStatus): Promise<void> {
    await this.request('POST', `statuses/${encodeURIComponent(status.sha)}`, `create status ${status.context} on ${status.sha.slice(0, 12)}`, {
      state: status.state,
      context: status.context,
      description: cutDescription(status.description),
      ...(status.targetUrl !== undefined && { target_url: status.targetUrl }),
    });
  }

  async latestStatus(sha: string, context: StatusContext): Promise<HostStatus | null> {
    const what = `read statuses of ${sha.slice(0, 12)}`;
    // The combined status holds the newest status of each context.
    for (let page = 1; page <= MAX_PAGES; page++) {
      const answer = await this.request('GET', `commits/${encodeURIComponent(sha)}/status?limit=${PAGE_SIZE}&page=${page}`, what);
      if (!isObject(answer) || !Array.isArray(answer['statuses'])) throw this.badAnswer(what);
      const statuses = answer['statuses'].filter(isObject);
      const found = statuses.find((s) => s['context'] === context);
      if (found !== undefined) {
        // Gitea names a status' state `status`.
        const state = typeof found['status'] === 'string' ? found['status'] : found['state'];
        if (typeof state !== 'string') throw this.badAnswer(what);
        const description = typeof found['description'] === 'string' ? found['description'] : '';
        const targetUrl = typeof found['target_url'] === 'string' && found['target_url'] !== '' ? found['target_url'] : null;
        return { state, description, targetUrl };
      }
      // A short page ends the list. A server that caps `limit` lower could hide a later page: the
      // cost is then one status written again, not a lost one, so no extra request is spent on it.
      if (answer['statuses'].length < PAGE_SIZE) return null;
    }
    return null;
  }

  async listOpenPullRequests(): Promise<PullRequestInfo[]> {
    const pulls = await this.listPulls('open', 'list open pull requests', () => false);
    return pulls.map(pullInfo);
  }

  async listRecentlyMergedPullRequests(since: Date): Promise<MergedPullRequestInfo[]> {
    const sinceMs = since.getTime();
    // Newest update first: once a page ends before `since`, later pages are older still.
    const pulls = await this.listPulls('closed', 'list merged pull requests', (page) => {
      const last = page.at(-1)?.updated_at;
      return last !== undefined && Date.parse(last) < sinceMs;
    });
    const merged: MergedPullRequestInfo[] = [];
    for (const pull of pulls) {
      if (pull.merged === false || typeof pull.merged_at !== 'string' || Date.parse(pull.merged_at) < sinceMs) continue;
      merged.push({ ...pullInfo(pull), mergedAt: pull.merged_at, mergeCommitSha: pull.merge_commit_sha ?? null });
    }
    return merged.sort((a, b) => Date.parse(b.mergedAt) - Date.parse(a.mergedAt));
  }

  async upsertPlanComment(pr: number, body: string): Promise<{ id: number; created: boolean; changed: boolean }> {
    if (!body.includes(PLAN_MARKER)) throw new GitHostError('Invalid', `plan comment for #${pr} lacks the marker; it could never be found again`);
    // Gitea answers this list whole, without pages.
    const list = await this.request('GET', `issues/${pr}/comments`, `list comments of #${pr}`);
    if (!Array.isArray(list)) throw this.badAnswer(`list comments of #${pr}`);
    const ours = list
      .filter(isRawComment)
      .filter((c) => c.body.includes(PLAN_MARKER))
      .sort((a, b) => a.id - b.id)[0];
    if (ours === undefined) {
      const created = await this.request('POST', `issues/${pr}/comments`, `comment on #${pr}`, { body });
      if (!isRawComment(created)) throw this.badAnswer(`comment on #${pr}`);
      return { id: created.id, created: true, changed: true };
    }
    if (ours.body === body) return { id: ours.id, created: false, changed: false };
    await this.request('PATCH', `issues/comments/${ours.id}`, `edit comment ${ours.id} on #${pr}`, { body });
    return { id: ours.id, created: false, changed: true };
  }

  private async listPulls(state: 'open' | 'closed', what: string, enough: (page: RawPull[]) => boolean): Promise<RawPull[]> {
    const all: RawPull[] = [];
    const sort = state === 'closed' ? '&sort=recentupdate' : '';
    for (let page = 1; page <= MAX_PAGES; page++) {
      const answer = await this.request('GET', `pulls?state=${state}${sort}&limit=${PAGE_SIZE}&page=${page}`, what);
      if (!Array.isArray(answer)) throw this.badAnswer(what);
      const pulls = answer.filter(isRawPull);
      all.push(...pulls);
      // Gitea may cap `limit` below what was asked, so only an empty page proves the end.
      if (answer.length === 0 || enough(pulls)) break;
    }
    return all;
  }

  private async request(method: string, path: string, what: string, body?: unknown): Promise<unknown> {
    const url = `${this.root}/repos/${encodeURIComponent(this.owner)}/${encodeURIComponent(this.repoName)}/${path}`;
    const where = `Gitea ${this.owner}/${this.repoName}: ${what}`;
    let response: Response;
    try {
      response = await fetch(url, {
        method,
        headers: {
          authorization: `token ${this.token}`,
          accept: 'application/json',
          'user-agent': this.userAgent,
          ...(body !== undefined && { 'content-type': 'application/json' }),
        },
        ...(body !== undefined && { body: JSON.stringify(body) }),
        signal: AbortSignal.timeout(this.timeoutMs),
      });
    } catch (error) {
      const cause = error instanceof Error && error.cause instanceof Error ? error.cause.message : error instanceof Error ? error.message : String(error);
      throw gitHostErrorFrom({ detail: cause }, where, [this.token], this.now());
    }
    let text: string;
    try {
      text = await response.text();
    } catch (error) {
      throw gitHostErrorFrom({ detail: error instanceof Error ? error.message : String(error) }, where, [this.token], this.now());
    }
    this.logger?.debug({ method, path: path.split('?')[0], status: response.status }, 'gitea request');
    let data: unknown = text;
    if (text.length > 0 && (response.headers.get('content-type') ?? '').includes('json')) {
      try {
        data = JSON.parse(text);
      } catch {
        data = text;
      }
    }
    if (!response.ok) {
      const headers: Record<string, string> = {};
      response.headers.forEach((value, name) => (headers[name] = value));
      const detail = isObject(data) && typeof data['message'] === 'string' ? data['message'] : typeof data === 'string' ? data.slice(0, 200) : '';
      throw gitHostErrorFrom({ status: response.status, headers, detail }, where, [this.token], this.now());
    }
    return data;
  }

  private badAnswer(what: string): GitHostError {
    return new GitHostError('Unavailable', `Gitea ${this.owner}/${this.repoName}: ${what}: unexpected answer shape`);
  }
}
