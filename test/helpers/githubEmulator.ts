// A GitHub REST emulator for tests, on 127.0.0.1: it keeps repositories, pull requests, commit
// statuses and issue comments, and checks every request and every response it gives against
// GitHub's own OpenAPI description (../shared/github/rest-subset.openapi.json, routed by
// operationId). Fault controls (5xx, rate limits, hangs) exercise the reporter's error paths.
import { existsSync } from 'node:fs';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import ajvFormats from 'ajv-formats';
import { OpenAPIBackend } from 'openapi-backend';

/** Project root. */
const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
/** GitHub's description of the operations vmroll uses; other projects' data stays in ../shared. */
export const GITHUB_OPENAPI = path.join(ROOT, '..', 'shared', 'github', 'rest-subset.openapi.json');

/** Enterprise Server serves the REST API under this prefix; the emulator answers with and without it. */
export const ENTERPRISE_PREFIX = '/api/v3';

const DOCS = 'https://docs.github.com/rest';
/** Rate-limit window, as GitHub's primary limit for a token. */
const HOURLY_LIMIT = 5000;
/** GitHub keeps at most this many statuses per commit and context. */
const MAX_STATUSES_PER_CONTEXT = 1000;
/** GitHub's limit on an issue comment body. */
const MAX_COMMENT_CHARS = 65_536;

/** Which requests a fault applies to: a method and a pattern on the path (query excluded). */
export interface FailureFilter {
  method?: string;
  path?: RegExp;
}

function failureMatches(only: FailureFilter | undefined, method: string, url: string): boolean {
  if (only === undefined) return true;
  const pathname = url.split('?')[0] ?? url;
  return (only.method === undefined || only.method.toUpperCase() === method) && (only.path === undefined || only.path.test(pathname));
}

/** How an emulator starts. */
export interface GitHubEmulatorOptions {
  /** Requests must carry `Authorization: token <t>` or `Bearer <t>`. */
  token: string;
  /** Repositories that exist from the start, `owner/name`. */
  repos?: string[];
  /** The token's user; default `vmroll-bot`. */
  login?: string;
  /** Clock for timestamps and rate-limit windows; default `Date.now`. Share it with the client under test. */
  now?: () => number;
}

/** One answered request. */
export interface RequestRecord {
  method: string;
  /** Path and query as received, prefix included. */
  url: string;
  status: number;
  operationId?: string;
  /** The raw request body, if any. */
  body?: string;
  /** Every request header except authorization, to check nothing secret travels elsewhere. */
  headers: Record<string, string>;
}

/** A request or response that does not match GitHub's description, or a route the description lacks. */
export interface Violation {
  kind: 'request' | 'response' | 'route';
  method: string;
  url: string;
  operationId?: string;
  status?: number;
  errors: string[];
}

/** A pull request to seed. */
export interface SeedPullRequest {
  /** `owner/name`; default: the repository added last. */
  repo?: string;
  /** Default: the next free number. */
  number?: number;
  title?: string;
  headRef: string;
  headSha: string;
  baseRef?: string;
  baseSha: string;
  state?: 'open' | 'closed';
  /** ISO time; a closed pull request with mergedAt was merged. */
  mergedAt?: string;
  mergeCommitSha?: string;
  /** ISO time; default now. */
  createdAt?: string;
  /** ISO time; default createdAt. */
  updatedAt?: string;
  user?: string;
}

/** A commit status as the emulator stores it. */
export interface StoredStatus {
  id: number;
  sha: string;
  state: string;
  context: string;
  description: string | null;
  targetUrl: string | null;
  createdAt: string;
  creator: string;
}

/** An issue comment as the emulator stores it. */
export interface StoredComment {
  id: number;
  issue: number;
  body: string;
  login: string;
  createdAt: string;
  updatedAt: string;
}

interface StoredPull {
  id: number;
  number: number;
  title: string;
  headRef: string;
  headSha: string;
  baseRef: string;
  baseSha: string;
  state: 'open' | 'closed';
  mergedAt: string | null;
  mergeCommitSha: string | null;
  createdAt: string;
  updatedAt: string;
  user: string;
}

interface RepoState {
  id: number;
  owner: string;
  name: string;
  pulls: Map<number, StoredPull>;
  statuses: StoredStatus[];
  comments: StoredComment[];
}

interface Answer {
  status: number;
  body?: unknown;
  headers?: Record<string, string>;
}

interface Call {
  operationId: string;
  params: Record<string, string>;
  query: URLSearchParams;
  body: unknown;
  /** e.g. `http://127.0.0.1:1234/api/v3`: how this client addresses the API. */
  apiBase: string;
  /** Path (with prefix) without query, for Link headers. */
  pathname: string;
}

type OperationHandler = (repo: RepoState, call: Call) => Answer;

let backend: Promise<OpenAPIBackend> | undefined;

/** GitHub's description, loaded and compiled once per process (about a second). */
function openApi(): Promise<OpenAPIBackend> {
  // Without the description every route would answer 404; say what is missing instead.
  if (!existsSync(GITHUB_OPENAPI)) return Promise.reject(new Error(`GitHub emulator: GitHub's description is read from ${GITHUB_OPENAPI}, which is missing (the project's checkout must sit beside ../shared)`));
  backend ??= new OpenAPIBackend({
    definition: GITHUB_OPENAPI,
    customizeAjv: (ajv) => {
      // ajv-formats is CommonJS; under nodenext its default import is the module object.
      ajvFormats.default(ajv);
      return ajv;
    },
  }).init();
  return backend;
}

function iso(ms: number): string {
  return new Date(ms).toISOString().replace(/\.\d{3}Z$/, 'Z');
}

function errorBody(message: string, status: number): { message: string; documentation_url: string; status: string } {
  return { message, documentation_url: DOCS, status: String(status) };
}

function validationFailed(field: string, message: string): Answer {
  return { status: 422, body: { message: 'Validation Failed', errors: [{ resource: 'Status', code: 'custom', field, message }], documentation_url: DOCS } };
}

function ajvErrors(errors: unknown): string[] {
  if (!Array.isArray(errors)) return [];
  return errors.map((e: { instancePath?: string; message?: string; params?: unknown }) => `${e.instancePath ?? ''} ${e.message ?? ''} ${JSON.stringify(e.params ?? {})}`.trim());
}

/** A running emulator. */
export class GitHubEmulator {
  /** `http://127.0.0.1:<port>`: use as apiUrl for github.com-style clients. */
  readonly baseUrl: string;
  /** `baseUrl` + `/api/v3`: use as apiUrl for Enterprise-style clients. */
  readonly enterpriseUrl: string;
  /** Every answered request, in order. */
  readonly requests: RequestRecord[] = [];
  /** Mismatches with GitHub's description; tests assert this stays empty. */
  readonly violations: Violation[] = [];
  private readonly repos = new Map<string, RepoState>();
  private readonly token: string;
  private readonly login: string;
  private readonly now: () => number;
  private nextId = 1000;
  private failures: { remaining: number; status: number; only?: FailureFilter } = { remaining: 0, status: 502 };
  private hangs = 0;
  private limited: { until: number; status: number; retryAfterSeconds?: number; reset: number } | undefined;
  private budget: { remaining: number; reset: number };
  private readonly sockets = new Set<Socket>();

  private constructor(
    private readonly server: ReturnType<typeof createServer>,
    private readonly api: OpenAPIBackend,
    options: GitHubEmulatorOptions,
  ) {
    const { port } = server.address() as AddressInfo;
    this.baseUrl = `http://127.0.0.1:${port}`;
    this.enterpriseUrl = `${this.baseUrl}${ENTERPRISE_PREFIX}`;
    this.token = options.token;
    this.login = options.login ?? 'vmroll-bot';
    this.now = options.now ?? Date.now;
    this.budget = { remaining: HOURLY_LIMIT, reset: Math.floor(this.now() / 1000) + 3600 };
    for (const repo of options.repos ?? []) this.addRepo(repo);
    server.on('connection', (socket: Socket) => {
      this.sockets.add(socket);
      socket.on('close', () => this.sockets.delete(socket));
    });
    server.on('request', (req: IncomingMessage, res: ServerResponse) => {
      this.serve(req, res).catch((error: unknown) => {
        this.violations.push({ kind: 'route', method: req.method ?? '', url: req.url ?? '', errors: [`emulator failure: ${String(error)}`] });
        if (!res.headersSent) res.writeHead(500, { 'content-type': 'application/json' });
        res.end(JSON.stringify(errorBody('emulator failure', 500)));
      });
    });
  }

  /** Starts an emulator on 127.0.0.1 with a free port. */
  static async start(options: GitHubEmulatorOptions): Promise<GitHubEmulator> {
    const api = await openApi();
    const server = createServer();
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(0, '127.0.0.1', () => resolve());
    });
    return new GitHubEmulator(server, api, options);
  }

  /** Creates a repository `owner/name` (idempotent). */
  addRepo(fullName: string): void {
    const [owner, name] = fullName.split('/');
    if (!owner || !name) throw new Error(`repository must be owner/name: ${fullName}`);
    const key = fullName.toLowerCase();
    if (!this.repos.has(key)) this.repos.set(key, { id: this.id(), owner, name, pulls: new Map(), statuses: [], comments: [] });
  }

  /** Seeds a pull request; returns its number. */
  addPullRequest(seed: SeedPullRequest): number {
    const repo = this.repoOf(seed.repo);
    const number = seed.number ?? this.nextIssueNumber(repo);
    const createdAt = seed.createdAt ?? iso(this.now());
    repo.pulls.set(number, {
      id: this.id(),
      number,
      title: seed.title ?? `Change ${number}`,
      headRef: seed.headRef,
      headSha: seed.headSha,
      baseRef: seed.baseRef ?? 'main',
      baseSha: seed.baseSha,
      state: seed.state ?? 'open',
      mergedAt: seed.mergedAt ?? null,
      mergeCommitSha: seed.mergeCommitSha ?? null,
      createdAt,
      updatedAt: seed.updatedAt ?? createdAt,
      user: seed.user ?? 'octo-dev',
    });
    return number;
  }

  /** Changes a seeded pull request (new head commit, closed, merged). */
  updatePullRequest(number: number, change: Partial<Omit<SeedPullRequest, 'number' | 'repo'>>, repoName?: string): void {
    const pull = this.repoOf(repoName).pulls.get(number);
    if (!pull) throw new Error(`no pull request #${number}`);
    for (const [field, value] of Object.entries(change)) if (value !== undefined) Object.assign(pull, { [field]: value });
    if (change.updatedAt === undefined) pull.updatedAt = iso(this.now());
  }

  /** Adds a comment written by someone else (default user `octo-dev`); returns its id. */
  addComment(issue: number, body: string, options: { login?: string; repo?: string } = {}): number {
    const repo = this.repoOf(options.repo);
    const at = iso(this.now());
    const comment: StoredComment = { id: this.id(), issue, body, login: options.login ?? 'octo-dev', createdAt: at, updatedAt: at };
    repo.comments.push(comment);
    return comment.id;
  }

  /** Stores `count` statuses for a commit and context as if posted earlier, e.g. to reach GitHub's cap quickly. */
  seedStatuses(sha: string, context: string, count: number, repoName?: string): void {
    const repo = this.repoOf(repoName);
    const at = iso(this.now());
    for (let i = 0; i < count; i++) {
      repo.statuses.push({ id: this.id(), sha: sha.toLowerCase(), state: 'pending', context, description: null, targetUrl: null, createdAt: at, creator: this.login });
    }
  }

  /** Statuses posted for a commit, oldest first. */
  statuses(sha: string, repoName?: string): StoredStatus[] {
    return this.repoOf(repoName).statuses.filter((s) => s.sha === sha);
  }

  /** Comments on an issue or pull request, oldest first. */
  comments(issue: number, repoName?: string): StoredComment[] {
    return this.repoOf(repoName).comments.filter((c) => c.issue === issue);
  }

  /**
   * The next `count` requests are answered with `status` (default 502), before any authentication;
   * with `only`, just the next `count` requests it matches (e.g. the reads of commit statuses).
   */
  failNext(count: number, status = 502, only?: FailureFilter): void {
    this.failures = { remaining: count, status, ...(only !== undefined && { only }) };
  }

  /** The next `count` requests get no answer until the client gives up or the emulator stops. */
  hangNext(count: number): void {
    this.hangs = count;
  }

  /**
   * Exhausts the rate limit. Primary (default): 403 (or `status`) with `x-ratelimit-remaining: 0`
   * and `x-ratelimit-reset` until the reset time passes on the emulator's clock. With
   * `retryAfterSeconds`: a secondary limit, 429 with `retry-after` for that long.
   */
  rateLimit(limit: { remaining?: 0; resetInSeconds?: number; resetAt?: number; retryAfterSeconds?: number; status?: 403 | 429 }): void {
    const nowMs = this.now();
    if (limit.retryAfterSeconds !== undefined) {
      this.limited = { until: nowMs + limit.retryAfterSeconds * 1000, status: limit.status ?? 429, retryAfterSeconds: limit.retryAfterSeconds, reset: this.budget.reset };
      return;
    }
    const reset = limit.resetAt ?? Math.floor(nowMs / 1000) + (limit.resetInSeconds ?? 60);
    this.budget = { remaining: 0, reset };
    this.limited = { until: reset * 1000, status: limit.status ?? 403, reset };
  }

  /** Lifts any rate limit at once. */
  clearRateLimit(): void {
    this.limited = undefined;
    this.budget = { remaining: HOURLY_LIMIT, reset: Math.floor(this.now() / 1000) + 3600 };
  }

  /** Stops the server and drops open connections (hanging requests included). */
  async stop(): Promise<void> {
    for (const socket of this.sockets) socket.destroy();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  private id(): number {
    return ++this.nextId;
  }

  private repoOf(fullName: string | undefined): RepoState {
    const repo = fullName === undefined ? [...this.repos.values()].at(-1) : this.repos.get(fullName.toLowerCase());
    if (!repo) throw new Error(`no repository ${fullName ?? '(none created)'}`);
    return repo;
  }

  private nextIssueNumber(repo: RepoState): number {
    return Math.max(0, ...repo.pulls.keys(), ...repo.comments.map((c) => c.issue)) + 1;
  }

  private async serve(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const chunks: Buffer[] = [];
    for await (const chunk of req) chunks.push(chunk as Buffer);
    const raw = Buffer.concat(chunks).toString('utf8');
    const method = (req.method ?? 'GET').toUpperCase();
    const url = req.url ?? '/';
    const headers: Record<string, string> = {};
    for (const [name, value] of Object.entries(req.headers)) {
      if (value !== undefined && name !== 'authorization') headers[name] = Array.isArray(value) ? value.join(', ') : value;
    }
    const record: RequestRecord = { method, url, status: 0, headers, ...(raw.length > 0 && { body: raw }) };
    this.requests.push(record);
    const send = (answer: Answer): void => {
      record.status = answer.status;
      res.writeHead(answer.status, { 'content-type': 'application/json; charset=utf-8', ...this.rateHeaders(), ...answer.headers });
      res.end(answer.body === undefined ? '' : JSON.stringify(answer.body));
    };

    if (this.hangs > 0) {
      this.hangs--;
      record.status = -1;
      return;
    }
    if (this.failures.remaining > 0 && failureMatches(this.failures.only, method, url)) {
      this.failures.remaining--;
      send({ status: this.failures.status, body: errorBody('Server Error', this.failures.status) });
      return;
    }
    const auth = req.headers.authorization ?? '';
    const match = /^(?:token|bearer)\s+(.+)$/i.exec(auth);
    if (!match || match[1] !== this.token) {
      send({ status: 401, body: errorBody('Bad credentials', 401) });
      return;
    }
    const nowMs = this.now();
    if (this.limited && nowMs >= this.limited.until) this.clearRateLimit();
    if (nowMs >= this.budget.reset * 1000) this.budget = { remaining: HOURLY_LIMIT, reset: Math.floor(nowMs / 1000) + 3600 };
    if (this.limited) {
      const limited = this.limited;
      if (limited.retryAfterSeconds !== undefined) {
        const left = Math.max(1, Math.ceil((limited.until - nowMs) / 1000));
        send({ status: limited.status, headers: { 'retry-after': String(left) }, body: errorBody('You have exceeded a secondary rate limit. Please wait a few minutes before you try again.', limited.status) });
      } else {
        send({ status: limited.status, body: errorBody('API rate limit exceeded for user ID 1001.', limited.status) });
      }
      return;
    }
    this.budget.remaining = Math.max(0, this.budget.remaining - 1);

    const parsedUrl = new URL(url, this.baseUrl);
    const prefixed = parsedUrl.pathname === ENTERPRISE_PREFIX || parsedUrl.pathname.startsWith(`${ENTERPRISE_PREFIX}/`);
    const apiPath = prefixed ? parsedUrl.pathname.slice(ENTERPRISE_PREFIX.length) || '/' : parsedUrl.pathname;
    const apiBase = prefixed ? this.enterpriseUrl : this.baseUrl;

    let body: unknown;
    if (raw.length > 0) {
      try {
        body = JSON.parse(raw);
      } catch {
        this.violations.push({ kind: 'request', method, url, errors: ['body is not JSON'] });
        send({ status: 400, body: errorBody('Problems parsing JSON', 400) });
        return;
      }
    }
    const query: Record<string, string> = {};
    for (const [k, v] of parsedUrl.searchParams) query[k] = v;
    const request = { method, path: apiPath, headers: { ...headers }, query, ...(body !== undefined && { body }) };
    const operation = this.api.matchOperation(request);
    if (!operation?.operationId) {
      this.violations.push({ kind: 'route', method, url, errors: ['no operation in the description matches'] });
      send({ status: 404, body: errorBody('Not Found', 404) });
      return;
    }
    const operationId = operation.operationId;
    record.operationId = operationId;
    const validation = this.api.validateRequest(request, operation);
    if (!validation.valid) {
      const errors = ajvErrors(validation.errors);
      this.violations.push({ kind: 'request', method, url, operationId, errors });
      send({ status: 422, body: { message: 'Invalid request.', errors: errors.map((message) => ({ code: 'invalid', message })), documentation_url: DOCS } });
      return;
    }
    const params: Record<string, string> = {};
    for (const [k, v] of Object.entries(this.api.router.parseRequest(request, operation).params as Record<string, unknown>)) params[k] = String(v);
    const handler = this.handlers[operationId];
    let answer: Answer;
    const repo = this.repos.get(`${params['owner'] ?? ''}/${params['repo'] ?? ''}`.toLowerCase());
    if (!handler) {
      this.violations.push({ kind: 'route', method, url, operationId, errors: ['operation not emulated'] });
      answer = { status: 501, body: errorBody('Not emulated', 501) };
    } else if (!repo) {
      answer = { status: 404, body: errorBody('Not Found', 404) };
    } else {
      answer = handler(repo, { operationId, params, query: parsedUrl.searchParams, body, apiBase, pathname: parsedUrl.pathname });
    }
    const checked = this.api.validateResponse(answer.body, operation, answer.status);
    if (!checked.valid) this.violations.push({ kind: 'response', method, url, operationId, status: answer.status, errors: ajvErrors(checked.errors) });
    send(answer);
  }

  private rateHeaders(): Record<string, string> {
    return {
      'x-ratelimit-limit': String(HOURLY_LIMIT),
      'x-ratelimit-remaining': String(this.budget.remaining),
      'x-ratelimit-reset': String(this.budget.reset),
      'x-ratelimit-used': String(HOURLY_LIMIT - this.budget.remaining),
      'x-ratelimit-resource': 'core',
      'x-github-api-version-selected': '2022-11-28',
    };
  }

  private paginate<T>(items: T[], call: Call): { page: T[]; headers: Record<string, string> } {
    const perPage = Math.min(100, Math.max(1, Number(call.query.get('per_page') ?? 30) || 30));
    const pageNo = Math.max(1, Number(call.query.get('page') ?? 1) || 1);
    const last = Math.max(1, Math.ceil(items.length / perPage));
    const link = (page: number, rel: string): string => {
      const q = new URLSearchParams(call.query);
      q.set('page', String(page));
      const origin = new URL(call.apiBase).origin;
      return `<${origin}${call.pathname}?${q.toString()}>; rel="${rel}"`;
    };
    const links: string[] = [];
    if (pageNo > 1) links.push(link(pageNo - 1, 'prev'));
    if (pageNo < last) links.push(link(pageNo + 1, 'next'), link(last, 'last'));
    if (pageNo > 1) links.push(link(1, 'first'));
    return { page: items.slice((pageNo - 1) * perPage, pageNo * perPage), headers: links.length > 0 ? { link: links.join(', ') } : {} };
  }

  private user(login: string, apiBase: string): Record<string, unknown> {
    const id = login === this.login ? 1001 : 2000 + [...login].reduce((n, c) => n + c.charCodeAt(0), 0);
    const u = `${apiBase}/users/${login}`;
    const web = new URL(apiBase).origin;
    return {
      login,
      id,
      node_id: `U_${id}`,
      avatar_url: `${web}/avatars/${login}`,
      gravatar_id: '',
      url: u,
      html_url: `${web}/${login}`,
      followers_url: `${u}/followers`,
      following_url: `${u}/following{/other_user}`,
      gists_url: `${u}/gists{/gist_id}`,
      starred_url: `${u}/starred{/owner}{/repo}`,
      subscriptions_url: `${u}/subscriptions`,
      organizations_url: `${u}/orgs`,
      repos_url: `${u}/repos`,
      events_url: `${u}/events{/privacy}`,
      received_events_url: `${u}/received_events`,
      type: login.endsWith('[bot]') ? 'Bot' : 'User',
      site_admin: false,
    };
  }

  private repository(repo: RepoState, apiBase: string): Record<string, unknown> {
    const full = `${repo.owner}/${repo.name}`;
    const a = `${apiBase}/repos/${full}`;
    const web = `${new URL(apiBase).origin}/${full}`;
    const at = iso(this.now());
    return {
      id: repo.id,
      node_id: `R_${repo.id}`,
      name: repo.name,
      full_name: full,
      owner: this.user(repo.owner, apiBase),
      private: true,
      html_url: web,
      description: null,
      fork: false,
      url: a,
      archive_url: `${a}/{archive_format}{/ref}`,
      assignees_url: `${a}/assignees{/user}`,
      blobs_url: `${a}/git/blobs{/sha}`,
      branches_url: `${a}/branches{/branch}`,
      collaborators_url: `${a}/collaborators{/collaborator}`,
      comments_url: `${a}/comments{/number}`,
      commits_url: `${a}/commits{/sha}`,
      compare_url: `${a}/compare/{base}...{head}`,
      contents_url: `${a}/contents/{+path}`,
      contributors_url: `${a}/contributors`,
      deployments_url: `${a}/deployments`,
      downloads_url: `${a}/downloads`,
      events_url: `${a}/events`,
      forks_url: `${a}/forks`,
      git_commits_url: `${a}/git/commits{/sha}`,
      git_refs_url: `${a}/git/refs{/sha}`,
      git_tags_url: `${a}/git/tags{/sha}`,
      git_url: `git://${new URL(apiBase).host}/${full}.git`,
      issue_comment_url: `${a}/issues/comments{/number}`,
      issue_events_url: `${a}/issues/events{/number}`,
      issues_url: `${a}/issues{/number}`,
      keys_url: `${a}/keys{/key_id}`,
      labels_url: `${a}/labels{/name}`,
      languages_url: `${a}/languages`,
      merges_url: `${a}/merges`,
      milestones_url: `${a}/milestones{/number}`,
      notifications_url: `${a}/notifications{?since,all,participating}`,
      pulls_url: `${a}/pulls{/number}`,
      releases_url: `${a}/releases{/id}`,
      ssh_url: `git@${new URL(apiBase).hostname}:${full}.git`,
      stargazers_url: `${a}/stargazers`,
      statuses_url: `${a}/statuses/{sha}`,
      subscribers_url: `${a}/subscribers`,
      subscription_url: `${a}/subscription`,
      tags_url: `${a}/tags`,
      teams_url: `${a}/teams`,
      trees_url: `${a}/git/trees{/sha}`,
      clone_url: `${web}.git`,
      mirror_url: null,
      hooks_url: `${a}/hooks`,
      svn_url: web,
      homepage: null,
      language: null,
      forks_count: 0,
      stargazers_count: 0,
      watchers_count: 0,
      size: 0,
      default_branch: 'main',
      open_issues_count: [...repo.pulls.values()].filter((p) => p.state === 'open').length,
      has_issues: true,
      has_projects: false,
      has_wiki: false,
      has_pages: false,
      has_downloads: false,
      archived: false,
      disabled: false,
      pushed_at: at,
      created_at: at,
      updated_at: at,
      license: null,
      forks: 0,
      open_issues: [...repo.pulls.values()].filter((p) => p.state === 'open').length,
      watchers: 0,
    };
  }

  private pullJson(repo: RepoState, pull: StoredPull, apiBase: string): Record<string, unknown> {
    const full = `${repo.owner}/${repo.name}`;
    const a = `${apiBase}/repos/${full}`;
    const web = `${new URL(apiBase).origin}/${full}`;
    const repoJson = this.repository(repo, apiBase);
    const owner = this.user(repo.owner, apiBase);
    const n = pull.number;
    return {
      url: `${a}/pulls/${n}`,
      id: pull.id,
      node_id: `PR_${pull.id}`,
      html_url: `${web}/pull/${n}`,
      diff_url: `${web}/pull/${n}.diff`,
      patch_url: `${web}/pull/${n}.patch`,
      issue_url: `${a}/issues/${n}`,
      commits_url: `${a}/pulls/${n}/commits`,
      review_comments_url: `${a}/pulls/${n}/comments`,
      review_comment_url: `${a}/pulls/comments{/number}`,
      comments_url: `${a}/issues/${n}/comments`,
      statuses_url: `${a}/statuses/${pull.headSha}`,
      number: n,
      state: pull.state,
      locked: false,
      title: pull.title,
      user: this.user(pull.user, apiBase),
      body: null,
      labels: [],
      milestone: null,
      active_lock_reason: null,
      created_at: pull.createdAt,
      updated_at: pull.updatedAt,
      closed_at: pull.state === 'closed' ? pull.updatedAt : null,
      merged_at: pull.mergedAt,
      merge_commit_sha: pull.mergeCommitSha,
      assignee: null,
      assignees: [],
      requested_reviewers: [],
      requested_teams: [],
      head: { label: `${repo.owner}:${pull.headRef}`, ref: pull.headRef, repo: repoJson, sha: pull.headSha, user: owner },
      base: { label: `${repo.owner}:${pull.baseRef}`, ref: pull.baseRef, repo: repoJson, sha: pull.baseSha, user: owner },
      _links: {
        self: { href: `${a}/pulls/${n}` },
        html: { href: `${web}/pull/${n}` },
        issue: { href: `${a}/issues/${n}` },
        comments: { href: `${a}/issues/${n}/comments` },
        review_comments: { href: `${a}/pulls/${n}/comments` },
        review_comment: { href: `${a}/pulls/comments{/number}` },
        commits: { href: `${a}/pulls/${n}/commits` },
        statuses: { href: `${a}/statuses/${pull.headSha}` },
      },
      author_association: 'MEMBER',
      auto_merge: null,
      draft: false,
    };
  }

  private commentJson(repo: RepoState, comment: StoredComment, apiBase: string): Record<string, unknown> {
    const full = `${repo.owner}/${repo.name}`;
    const a = `${apiBase}/repos/${full}`;
    return {
      id: comment.id,
      node_id: `IC_${comment.id}`,
      url: `${a}/issues/comments/${comment.id}`,
      html_url: `${new URL(apiBase).origin}/${full}/pull/${comment.issue}#issuecomment-${comment.id}`,
      body: comment.body,
      user: this.user(comment.login, apiBase),
      created_at: comment.createdAt,
      updated_at: comment.updatedAt,
      issue_url: `${a}/issues/${comment.issue}`,
      author_association: comment.login === this.login ? 'MEMBER' : 'CONTRIBUTOR',
    };
  }

  private statusJson(repo: RepoState, status: StoredStatus, apiBase: string): Record<string, unknown> {
    return {
      url: `${apiBase}/repos/${repo.owner}/${repo.name}/statuses/${status.sha}`,
      avatar_url: null,
      id: status.id,
      node_id: `SC_${status.id}`,
      state: status.state,
      description: status.description,
      target_url: status.targetUrl,
      context: status.context,
      created_at: status.createdAt,
      updated_at: status.createdAt,
      creator: this.user(status.creator, apiBase),
    };
  }

  private readonly handlers: Record<string, OperationHandler> = {
    'repos/create-commit-status': (repo, call) => {
      const sha = call.params['sha'] ?? '';
      const body = call.body as { state: string; target_url?: string | null; description?: string | null; context?: string };
      // GitHub only takes statuses for commits it has; any full-length sha stands in for one here.
      if (!/^[0-9a-f]{40}$/i.test(sha)) return { status: 422, body: { message: `No commit found for SHA: ${sha}`, documentation_url: DOCS } };
      const context = body.context ?? 'default';
      if (typeof body.description === 'string' && [...body.description].length > 140) {
        return validationFailed('description', 'description is too long (maximum is 140 characters)');
      }
      const sameContext = repo.statuses.filter((s) => s.sha === sha.toLowerCase() && s.context.toLowerCase() === context.toLowerCase()).length;
      if (sameContext >= MAX_STATUSES_PER_CONTEXT) return validationFailed('context', 'This SHA and context has reached the maximum number of statuses.');
      const status: StoredStatus = {
        id: this.id(),
        sha: sha.toLowerCase(),
        state: body.state,
        context,
        description: body.description ?? null,
        targetUrl: body.target_url ?? null,
        createdAt: iso(this.now()),
        creator: this.login,
      };
      repo.statuses.push(status);
      return {
        status: 201,
        body: this.statusJson(repo, status, call.apiBase),
        headers: { location: `${call.apiBase}/repos/${repo.owner}/${repo.name}/statuses/${status.sha}` },
      };
    },

    'repos/list-commit-statuses-for-ref': (repo, call) => {
      const ref = (call.params['ref'] ?? '').toLowerCase();
      const list = repo.statuses.filter((s) => s.sha === ref).reverse();
      const { page, headers } = this.paginate(list, call);
      return { status: 200, body: page.map((s) => this.statusJson(repo, s, call.apiBase)), headers };
    },

    'repos/get-combined-status-for-ref': (repo, call) => {
      const ref = (call.params['ref'] ?? '').toLowerCase();
      const latest = new Map<string, StoredStatus>();
      for (const s of repo.statuses) if (s.sha === ref) latest.set(s.context.toLowerCase(), s);
      const statuses = [...latest.values()];
      const states = new Set(statuses.map((s) => s.state));
      const state = states.has('error') || states.has('failure') ? 'failure' : states.has('pending') || statuses.length === 0 ? 'pending' : 'success';
      const a = `${call.apiBase}/repos/${repo.owner}/${repo.name}`;
      const { owner, name, id } = repo;
      const full = this.repository(repo, call.apiBase);
      const minimal: Record<string, unknown> = {};
      for (const k of Object.keys(full)) if (!['clone_url', 'default_branch', 'license', 'pushed_at', 'created_at', 'updated_at'].includes(k)) minimal[k] = full[k];
      return {
        status: 200,
        body: {
          state,
          statuses: statuses.map((s) => {
            const { creator: _creator, ...simple } = this.statusJson(repo, s, call.apiBase);
            return simple;
          }),
          sha: ref,
          total_count: statuses.length,
          repository: { ...minimal, id, name, full_name: `${owner}/${name}` },
          commit_url: `${a}/commits/${ref}`,
          url: `${a}/commits/${ref}/status`,
        },
      };
    },

    'pulls/list': (repo, call) => {
      const state = call.query.get('state') ?? 'open';
      const base = call.query.get('base');
      const head = call.query.get('head');
      const sort = call.query.get('sort') ?? 'created';
      const direction = call.query.get('direction') ?? (sort === 'created' ? 'desc' : 'asc');
      let list = [...repo.pulls.values()].filter((p) => state === 'all' || p.state === state);
      if (base) list = list.filter((p) => p.baseRef === base);
      if (head) list = list.filter((p) => `${repo.owner}:${p.headRef}` === head);
      const key = (p: StoredPull): number => Date.parse(sort === 'updated' ? p.updatedAt : p.createdAt) * 1e6 + p.number;
      list.sort((x, y) => (direction === 'asc' ? key(x) - key(y) : key(y) - key(x)));
      const { page, headers } = this.paginate(list, call);
      return { status: 200, body: page.map((p) => this.pullJson(repo, p, call.apiBase)), headers };
    },

    'issues/list-comments': (repo, call) => {
      const issue = Number(call.params['issue_number']);
      if (!repo.pulls.has(issue)) return { status: 404, body: errorBody('Not Found', 404) };
      const since = call.query.get('since');
      let list = repo.comments.filter((c) => c.issue === issue);
      if (since) list = list.filter((c) => Date.parse(c.updatedAt) >= Date.parse(since));
      const { page, headers } = this.paginate(list, call);
      return { status: 200, body: page.map((c) => this.commentJson(repo, c, call.apiBase)), headers };
    },

    'issues/create-comment': (repo, call) => {
      const issue = Number(call.params['issue_number']);
      if (!repo.pulls.has(issue)) return { status: 404, body: errorBody('Not Found', 404) };
      const { body } = call.body as { body: string };
      if (body.length > MAX_COMMENT_CHARS) {
        return { status: 422, body: { message: 'Validation Failed', errors: [{ resource: 'IssueComment', code: 'custom', field: 'body', message: 'body is too long (maximum is 65536 characters)' }], documentation_url: DOCS } };
      }
      const at = iso(this.now());
      const comment: StoredComment = { id: this.id(), issue, body, login: this.login, createdAt: at, updatedAt: at };
      repo.comments.push(comment);
      const json = this.commentJson(repo, comment, call.apiBase);
      return { status: 201, body: json, headers: { location: String(json['url']) } };
    },

    'issues/update-comment': (repo, call) => {
      const comment = repo.comments.find((c) => c.id === Number(call.params['comment_id']));
      if (!comment) return { status: 404, body: errorBody('Not Found', 404) };
      if (comment.login !== this.login) return { status: 403, body: errorBody('Must have admin rights to Repository.', 403) };
      const { body } = call.body as { body: string };
      if (body.length > MAX_COMMENT_CHARS) {
        return { status: 422, body: { message: 'Validation Failed', errors: [{ resource: 'IssueComment', code: 'custom', field: 'body', message: 'body is too long (maximum is 65536 characters)' }], documentation_url: DOCS } };
      }
      comment.body = body;
      comment.updatedAt = iso(this.now());
      return { status: 200, body: this.commentJson(repo, comment, call.apiBase) };
    },
  };
}

/** Starts a GitHub emulator on 127.0.0.1 with a free port. */
export function startGitHubEmulator(options: GitHubEmulatorOptions): Promise<GitHubEmulator> {
  return GitHubEmulator.start(options);
}
