// A small Gitea REST emulator for tests, on 127.0.0.1: commit statuses, pull requests and issue
// comments under /api/v1, with state. Gitea publishes no OpenAPI 3 subset here, so request shapes
// are checked by hand against Gitea's API documentation; anything else is recorded as a violation.
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';

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

/** How the emulator starts. */
export interface GiteaEmulatorOptions {
  /** Requests must carry `Authorization: token <t>` (or `Bearer <t>`). */
  token: string;
  /** Repositories that exist from the start, `owner/name`. */
  repos?: string[];
  /** The token's user; default `vmroll-bot`. */
  login?: string;
  /** Clock for timestamps; default `Date.now`. */
  now?: () => number;
}

/** One answered request. */
export interface GiteaRequestRecord {
  method: string;
  url: string;
  status: number;
  body?: string;
  /** Every request header except authorization. */
  headers: Record<string, string>;
}

/** A request the emulated Gitea would not accept as vmroll sent it. */
export interface GiteaViolation {
  method: string;
  url: string;
  errors: string[];
}

/** A pull request to seed. */
export interface GiteaSeedPullRequest {
  repo?: string;
  number?: number;
  title?: string;
  headRef: string;
  headSha: string;
  baseRef?: string;
  baseSha: string;
  state?: 'open' | 'closed';
  mergedAt?: string;
  mergeCommitSha?: string;
  updatedAt?: string;
}

/** A commit status as stored. */
export interface GiteaStoredStatus {
  id: number;
  sha: string;
  state: string;
  context: string;
  description: string;
  targetUrl: string;
  createdAt: string;
}

/** An issue comment as stored. */
export interface GiteaStoredComment {
  id: number;
  issue: number;
  body: string;
  login: string;
  createdAt: string;
  updatedAt: string;
}

interface StoredPull extends Required<Omit<GiteaSeedPullRequest, 'repo' | 'mergedAt' | 'mergeCommitSha'>> {
  id: number;
  mergedAt: string | null;
  mergeCommitSha: string | null;
  createdAt: string;
}

interface RepoState {
  id: number;
  owner: string;
  name: string;
  pulls: Map<number, StoredPull>;
  statuses: GiteaStoredStatus[];
  comments: GiteaStoredComment[];
}

interface Answer {
  status: number;
  body?: unknown;
  headers?: Record<string, string>;
}

/** Gitea's commit status states (it has `warning` beside GitHub's four). */
const STATES = ['pending', 'success', 'error', 'failure', 'warning'];
/** Gitea's default MAX_RESPONSE_ITEMS. */
const MAX_LIMIT = 50;

function iso(ms: number): string {
  return new Date(ms).toISOString().replace(/\.\d{3}Z$/, 'Z');
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** Checks a JSON body: only the listed fields, each of the given type; `required` must be present. */
function checkBody(body: unknown, fields: Record<string, 'string'>, required: string[]): string[] {
  if (!isObject(body)) return ['body must be a JSON object'];
  const errors: string[] = [];
  for (const [name, value] of Object.entries(body)) {
    if (!(name in fields)) errors.push(`unknown field ${name}`);
    else if (typeof value !== fields[name]) errors.push(`${name} must be a ${fields[name]}`);
  }
  for (const name of required) if (!(name in body)) errors.push(`${name} is required`);
  return errors;
}

/** A running Gitea emulator. */
export class GiteaEmulator {
  /** `http://127.0.0.1:<port>`: the server root; the API is under `/api/v1`. */
  readonly baseUrl: string;
  readonly requests: GiteaRequestRecord[] = [];
  /** Requests that a real Gitea would reject or that vmroll should not send; tests assert it stays empty. */
  readonly violations: GiteaViolation[] = [];
  private readonly repos = new Map<string, RepoState>();
  private readonly token: string;
  private readonly login: string;
  private readonly now: () => number;
  private nextId = 500;
  private failures: { remaining: number; status: number; only?: FailureFilter } = { remaining: 0, status: 502 };
  private readonly sockets = new Set<Socket>();

  private constructor(
    private readonly server: ReturnType<typeof createServer>,
    options: GiteaEmulatorOptions,
  ) {
    this.baseUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    this.token = options.token;
    this.login = options.login ?? 'vmroll-bot';
    this.now = options.now ?? Date.now;
    for (const repo of options.repos ?? []) this.addRepo(repo);
    server.on('connection', (socket: Socket) => {
      this.sockets.add(socket);
      socket.on('close', () => this.sockets.delete(socket));
    });
    server.on('request', (req: IncomingMessage, res: ServerResponse) => {
      this.serve(req, res).catch((error: unknown) => {
        this.violations.push({ method: req.method ?? '', url: req.url ?? '', errors: [`emulator failure: ${String(error)}`] });
        if (!res.headersSent) res.writeHead(500);
        res.end();
      });
    });
  }

  /** Starts an emulator on 127.0.0.1 with a free port. */
  static async start(options: GiteaEmulatorOptions): Promise<GiteaEmulator> {
    const server = createServer();
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(0, '127.0.0.1', () => resolve());
    });
    return new GiteaEmulator(server, options);
  }

  /** Creates a repository `owner/name` (idempotent). */
  addRepo(fullName: string): void {
    const [owner, name] = fullName.split('/');
    if (!owner || !name) throw new Error(`repository must be owner/name: ${fullName}`);
    const key = fullName.toLowerCase();
    if (!this.repos.has(key)) this.repos.set(key, { id: ++this.nextId, owner, name, pulls: new Map(), statuses: [], comments: [] });
  }

  /** Seeds a pull request; returns its number (Gitea's `index`). */
  addPullRequest(seed: GiteaSeedPullRequest): number {
    const repo = this.repoOf(seed.repo);
    const number = seed.number ?? Math.max(0, ...repo.pulls.keys(), ...repo.comments.map((c) => c.issue)) + 1;
    const at = iso(this.now());
    repo.pulls.set(number, {
      id: ++this.nextId,
      number,
      title: seed.title ?? `Change ${number}`,
      headRef: seed.headRef,
      headSha: seed.headSha,
      baseRef: seed.baseRef ?? 'main',
      baseSha: seed.baseSha,
      state: seed.state ?? 'open',
      mergedAt: seed.mergedAt ?? null,
      mergeCommitSha: seed.mergeCommitSha ?? null,
      createdAt: at,
      updatedAt: seed.updatedAt ?? at,
    });
    return number;
  }

  /** Adds a comment by someone else (default `octo-dev`); returns its id. */
  addComment(issue: number, body: string, options: { login?: string; repo?: string } = {}): number {
    const at = iso(this.now());
    const comment = { id: ++this.nextId, issue, body, login: options.login ?? 'octo-dev', createdAt: at, updatedAt: at };
    this.repoOf(options.repo).comments.push(comment);
    return comment.id;
  }

  /** Statuses posted for a commit, oldest first. */
  statuses(sha: string, repoName?: string): GiteaStoredStatus[] {
    return this.repoOf(repoName).statuses.filter((s) => s.sha === sha);
  }

  /** Comments on an issue or pull request, oldest first. */
  comments(issue: number, repoName?: string): GiteaStoredComment[] {
    return this.repoOf(repoName).comments.filter((c) => c.issue === issue);
  }

  /**
   * The next `count` requests are answered with `status` (default 502), before any authentication;
   * with `only`, just the next `count` requests it matches (e.g. the reads of commit statuses).
   */
  failNext(count: number, status = 502, only?: FailureFilter): void {
    this.failures = { remaining: count, status, ...(only !== undefined && { only }) };
  }

  /** Stops the server and drops open connections. */
  async stop(): Promise<void> {
    for (const socket of this.sockets) socket.destroy();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  private repoOf(fullName: string | undefined): RepoState {
    const repo = fullName === undefined ? [...this.repos.values()].at(-1) : this.repos.get(fullName.toLowerCase());
    if (!repo) throw new Error(`no repository ${fullName ?? '(none created)'}`);
    return repo;
  }

  private user(login: string): Record<string, unknown> {
    return { id: login === this.login ? 7 : 8, login, login_name: '', full_name: '', email: `${login}@noreply.invalid`, avatar_url: `${this.baseUrl}/avatars/${login}`, username: login };
  }

  private commentJson(repo: RepoState, c: GiteaStoredComment): Record<string, unknown> {
    const web = `${this.baseUrl}/${repo.owner}/${repo.name}`;
    return {
      id: c.id,
      html_url: `${web}/pulls/${c.issue}#issuecomment-${c.id}`,
      pull_request_url: `${web}/pulls/${c.issue}`,
      issue_url: '',
      user: this.user(c.login),
      original_author: '',
      original_author_id: 0,
      body: c.body,
      assets: [],
      created_at: c.createdAt,
      updated_at: c.updatedAt,
    };
  }

  private pullJson(repo: RepoState, p: StoredPull): Record<string, unknown> {
    const web = `${this.baseUrl}/${repo.owner}/${repo.name}`;
    const branch = (ref: string, sha: string): Record<string, unknown> => ({ label: ref, ref, sha, repo_id: repo.id });
    return {
      id: p.id,
      url: `${web}/pulls/${p.number}`,
      number: p.number,
      user: this.user('octo-dev'),
      title: p.title,
      body: '',
      labels: [],
      state: p.state,
      html_url: `${web}/pulls/${p.number}`,
      diff_url: `${web}/pulls/${p.number}.diff`,
      mergeable: true,
      merged: p.mergedAt !== null,
      merged_at: p.mergedAt,
      merge_commit_sha: p.mergeCommitSha,
      base: branch(p.baseRef, p.baseSha),
      head: branch(p.headRef, p.headSha),
      created_at: p.createdAt,
      updated_at: p.updatedAt,
      closed_at: p.state === 'closed' ? p.updatedAt : null,
    };
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
    const record: GiteaRequestRecord = { method, url, status: 0, headers, ...(raw.length > 0 && { body: raw }) };
    this.requests.push(record);
    const answer = this.answer(method, url, req.headers.authorization, raw, headers);
    record.status = answer.status;
    res.writeHead(answer.status, { 'content-type': 'application/json;charset=utf-8', ...answer.headers });
    res.end(answer.body === undefined ? '' : JSON.stringify(answer.body));
  }

  private answer(method: string, url: string, authorization: string | undefined, raw: string, headers: Record<string, string>): Answer {
    const violation = (errors: string[], status = 422): Answer => {
      this.violations.push({ method, url, errors });
      return { status, body: { message: errors.join('; '), url: `${this.baseUrl}/api/swagger` } };
    };
    if (this.failures.remaining > 0 && failureMatches(this.failures.only, method, url)) {
      this.failures.remaining--;
      return { status: this.failures.status, body: { message: 'Bad Gateway' } };
    }
    const match = /^(?:token|bearer)\s+(.+)$/i.exec(authorization ?? '');
    if (!match || match[1] !== this.token) return { status: 401, body: { message: 'user does not exist [uid: 0, name: ]', url: `${this.baseUrl}/api/swagger` } };

    const parsed = new URL(url, this.baseUrl);
    const route = /^\/api\/v1\/repos\/([^/]+)\/([^/]+)\/(.+)$/.exec(parsed.pathname);
    if (!route?.[1] || !route[2] || !route[3]) return violation([`no such endpoint ${parsed.pathname}`], 404);
    const repo = this.repos.get(`${decodeURIComponent(route[1])}/${decodeURIComponent(route[2])}`.toLowerCase());
    if (!repo) return { status: 404, body: { message: 'The target couldn\'t be found.', errors: [] } };
    const rest = route[3];

    let body: unknown;
    if (method === 'POST' || method === 'PATCH') {
      if (!(headers['content-type'] ?? '').startsWith('application/json')) return violation(['content-type must be application/json']);
      try {
        body = JSON.parse(raw);
      } catch {
        return violation(['body is not JSON']);
      }
    }

    let m: RegExpExecArray | null;
    if (method === 'POST' && (m = /^statuses\/([^/]+)$/.exec(rest))) {
      const errors = checkBody(body, { state: 'string', target_url: 'string', description: 'string', context: 'string' }, ['state']);
      const b = body as Record<string, string>;
      if (errors.length === 0 && !STATES.includes(b['state'] ?? '')) errors.push(`state must be one of ${STATES.join(', ')}`);
      if (errors.length > 0) return violation(errors);
      const sha = decodeURIComponent(m[1] ?? '');
      if (!/^[0-9a-f]{40}$/i.test(sha)) return { status: 404, body: { message: 'commit does not exist' } };
      const at = iso(this.now());
      const status: GiteaStoredStatus = { id: ++this.nextId, sha: sha.toLowerCase(), state: b['state'] ?? '', context: b['context'] ?? 'default', description: b['description'] ?? '', targetUrl: b['target_url'] ?? '', createdAt: at };
      repo.statuses.push(status);
      return {
        status: 201,
        body: {
          id: status.id,
          status: status.state,
          target_url: status.targetUrl,
          description: status.description,
          url: `${this.baseUrl}/api/v1/repos/${repo.owner}/${repo.name}/statuses/${status.sha}`,
          context: status.context,
          creator: this.user(this.login),
          created_at: at,
          updated_at: at,
        },
      };
    }
    if (method === 'GET' && (m = /^commits\/([^/]+)\/status$/.exec(rest))) {
      // Gitea's combined status: the newest status of each context, in pages of `limit`.
      const q = parsed.searchParams;
      for (const name of q.keys()) if (name !== 'page' && name !== 'limit') return violation([`query parameter ${name} unknown`]);
      const sha = decodeURIComponent(m[1] ?? '').toLowerCase();
      const latest = new Map<string, GiteaStoredStatus>();
      for (const st of repo.statuses) if (st.sha === sha) latest.set(st.context, st);
      const all = [...latest.values()].sort((x, y) => x.id - y.id);
      const limit = Math.min(MAX_LIMIT, Math.max(1, Number(q.get('limit') ?? MAX_LIMIT) || MAX_LIMIT));
      const page = Math.max(1, Number(q.get('page') ?? 1) || 1);
      const slice = all.slice((page - 1) * limit, page * limit);
      const states = new Set(all.map((st) => st.state));
      const state = ['error', 'failure', 'warning', 'pending', 'success'].find((x) => states.has(x)) ?? '';
      const web = `${this.baseUrl}/api/v1/repos/${repo.owner}/${repo.name}`;
      return {
        status: 200,
        body: {
          state,
          sha,
          total_count: slice.length,
          statuses: slice.map((st) => ({
            id: st.id,
            status: st.state,
            target_url: st.targetUrl,
            description: st.description,
            url: `${web}/statuses/${st.sha}`,
            context: st.context,
            creator: this.user(this.login),
            created_at: st.createdAt,
            updated_at: st.createdAt,
          })),
          repository: { id: repo.id, name: repo.name, full_name: `${repo.owner}/${repo.name}` },
          commit_url: `${web}/commits/${sha}`,
          url: `${web}/commits/${sha}/status`,
        },
      };
    }
    if (method === 'GET' && rest === 'pulls') {
      const q = parsed.searchParams;
      const state = q.get('state') ?? 'open';
      if (!['open', 'closed', 'all'].includes(state)) return violation([`state ${state} unknown`]);
      const sort = q.get('sort');
      if (sort !== null && !['oldest', 'recentupdate', 'recentclose', 'leastupdate', 'mostcomment', 'leastcomment', 'priority'].includes(sort)) return violation([`sort ${sort} unknown`]);
      const limit = Math.min(MAX_LIMIT, Math.max(1, Number(q.get('limit') ?? MAX_LIMIT) || MAX_LIMIT));
      const page = Math.max(1, Number(q.get('page') ?? 1) || 1);
      let list = [...repo.pulls.values()].filter((p) => state === 'all' || p.state === state);
      list =
        sort === 'recentupdate'
          ? list.sort((a, b) => Date.parse(b.updatedAt) - Date.parse(a.updatedAt) || b.number - a.number)
          : list.sort((a, b) => b.number - a.number);
      const slice = list.slice((page - 1) * limit, page * limit);
      return { status: 200, body: slice.map((p) => this.pullJson(repo, p)), headers: { 'x-total-count': String(list.length) } };
    }
    if ((m = /^issues\/(\d+)\/comments$/.exec(rest))) {
      const issue = Number(m[1]);
      if (!repo.pulls.has(issue)) return { status: 404, body: { message: 'issue does not exist' } };
      if (method === 'GET') return { status: 200, body: this.comments(issue, `${repo.owner}/${repo.name}`).map((c) => this.commentJson(repo, c)), headers: { 'x-total-count': String(this.comments(issue, `${repo.owner}/${repo.name}`).length) } };
      if (method === 'POST') {
        const errors = checkBody(body, { body: 'string' }, ['body']);
        if (errors.length > 0) return violation(errors);
        const at = iso(this.now());
        const comment: GiteaStoredComment = { id: ++this.nextId, issue, body: (body as { body: string }).body, login: this.login, createdAt: at, updatedAt: at };
        repo.comments.push(comment);
        return { status: 201, body: this.commentJson(repo, comment) };
      }
    }
    if (method === 'PATCH' && (m = /^issues\/comments\/(\d+)$/.exec(rest))) {
      const errors = checkBody(body, { body: 'string' }, ['body']);
      if (errors.length > 0) return violation(errors);
      const comment = repo.comments.find((c) => c.id === Number(m?.[1]));
      if (!comment) return { status: 404, body: { message: 'comment does not exist' } };
      if (comment.login !== this.login) return { status: 403, body: { message: 'forbidden' } };
      comment.body = (body as { body: string }).body;
      comment.updatedAt = iso(this.now());
      return { status: 200, body: this.commentJson(repo, comment) };
    }
    return violation([`${method} ${parsed.pathname} is not an endpoint vmroll should use`], 404);
  }
}

/** Starts a Gitea emulator on 127.0.0.1 with a free port. */
export function startGiteaEmulator(options: GiteaEmulatorOptions): Promise<GiteaEmulator> {
  return GiteaEmulator.start(options);
}
