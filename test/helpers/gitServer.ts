// A real smart-HTTP Git server for tests: Debian git's own git-http-backend run as CGI, one
// process per request, behind a Node http server on 127.0.0.1. Tests push to it with the git CLI.
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';

const execFileAsync = promisify(execFile);

/** Where Debian installs the CGI program. */
export const GIT_HTTP_BACKEND = '/usr/lib/git-core/git-http-backend';

/** How the test server is started. */
export interface GitServerOptions {
  /** When set, every request must carry HTTP basic auth whose password is this token (any user name). */
  token?: string;
  /** A request (CGI run included) that takes longer than this is killed and answered 504. Default 10 s. */
  requestTimeoutMs?: number;
}

/** A working clone that tests write, commit and push in with the git CLI. */
export interface WorkingClone {
  /** The clone's directory. */
  dir: string;
  /** Runs `git <args>` in the clone (identity set with -c); resolves to trimmed stdout. */
  git(...args: string[]): Promise<string>;
  /** Writes (creating folders) a file relative to the clone. */
  write(file: string, content: string | Uint8Array): Promise<void>;
  /** Removes a file or folder relative to the clone. */
  remove(file: string): Promise<void>;
  /** Stages everything, commits and returns the new commit's sha. */
  commit(message: string): Promise<string>;
  /** Pushes the current branch (and tags) to the server. */
  push(): Promise<void>;
}

/** A running server. */
export interface GitServer {
  /** `http://127.0.0.1:<port>`, without credentials. */
  baseUrl: string;
  /** The directory served as GIT_PROJECT_ROOT. */
  projectRoot: string;
  /** How many HTTP requests the server answered so far. */
  readonly requestCount: number;
  /** The repository URL for `name` (without credentials). */
  repoUrl(name: string): string;
  /** Creates an empty bare repository `<name>.git` (default branch `main`) and returns its URL. */
  createBareRepo(name: string): Promise<string>;
  /** Makes a working clone of `<name>.git` whose `origin` points at the server (with the token, if any). */
  createWorkingClone(name: string): Promise<WorkingClone>;
  /** Stops listening (connections refused, open ones cut) but keeps every repository: an outage. */
  suspend(): Promise<void>;
  /** Listens again on the same port after {@link suspend}. */
  resume(): Promise<void>;
  /** Closes the server, kills running CGI processes and deletes every directory it made. */
  stop(): Promise<void>;
}

const IDENTITY = ['-c', 'user.name=vmroll test', '-c', 'user.email=test@vmroll.invalid', '-c', 'commit.gpgsign=false', '-c', 'init.defaultBranch=main'];

async function runGit(cwd: string, args: string[]): Promise<string> {
  const { stdout } = await execFileAsync('git', [...IDENTITY, ...args], {
    cwd,
    // Generous: git on a busy machine is slow, and a timeout here fails the test that called it.
    timeout: 60_000,
    env: { ...process.env, GIT_TERMINAL_PROMPT: '0', GIT_CONFIG_NOSYSTEM: '1', HOME: cwd },
  });
  return stdout.trim();
}

function authorized(req: IncomingMessage, token: string): boolean {
  const header = req.headers.authorization ?? '';
  const match = /^Basic\s+(\S+)$/i.exec(header);
  if (!match?.[1]) return false;
  const decoded = Buffer.from(match[1], 'base64').toString('utf8');
  const colon = decoded.indexOf(':');
  return colon >= 0 && decoded.slice(colon + 1) === token;
}

function cgiEnvironment(req: IncomingMessage, projectRoot: string): NodeJS.ProcessEnv {
  const url = new URL(req.url ?? '/', 'http://127.0.0.1');
  const env: NodeJS.ProcessEnv = {
    PATH: process.env['PATH'] ?? '/usr/bin:/bin',
    GIT_PROJECT_ROOT: projectRoot,
    GIT_HTTP_EXPORT_ALL: '1',
    // Any authenticated-looking user turns on receive-pack, so tests can push.
    REMOTE_USER: 'vmroll-test',
    REMOTE_ADDR: req.socket.remoteAddress ?? '127.0.0.1',
    GATEWAY_INTERFACE: 'CGI/1.1',
    SERVER_PROTOCOL: `HTTP/${req.httpVersion}`,
    REQUEST_METHOD: req.method ?? 'GET',
    PATH_INFO: decodeURIComponent(url.pathname),
    QUERY_STRING: url.search.replace(/^\?/, ''),
    CONTENT_TYPE: req.headers['content-type'] ?? '',
    CONTENT_LENGTH: req.headers['content-length'] ?? '',
  };
  for (const [name, value] of Object.entries(req.headers)) {
    if (value === undefined) continue;
    env[`HTTP_${name.toUpperCase().replaceAll('-', '_')}`] = Array.isArray(value) ? value.join(', ') : value;
  }
  return env;
}

/** Splits CGI output at the first blank line; null until the whole header block has arrived. */
function splitCgiHeaders(buffer: Buffer): { headers: [string, string][]; status: number; rest: Buffer } | null {
  let end = buffer.indexOf('\r\n\r\n');
  let sep = 4;
  const lf = buffer.indexOf('\n\n');
  if (lf >= 0 && (end < 0 || lf < end)) {
    end = lf;
    sep = 2;
  }
  if (end < 0) return null;
  const headers: [string, string][] = [];
  let status = 200;
  for (const line of buffer.subarray(0, end).toString('latin1').split(/\r?\n/)) {
    const colon = line.indexOf(':');
    if (colon <= 0) continue;
    const name = line.slice(0, colon).trim();
    const value = line.slice(colon + 1).trim();
    if (name.toLowerCase() === 'status') status = Number.parseInt(value, 10) || 500;
    else headers.push([name, value]);
  }
  return { headers, status, rest: buffer.subarray(end + sep) };
}

/** Starts the server on 127.0.0.1 with a free port and a fresh project root. */
export async function startGitServer(options: GitServerOptions = {}): Promise<GitServer> {
  const workDir = await mkdtemp(path.join(tmpdir(), 'vmroll-git-'));
  const projectRoot = path.join(workDir, 'srv');
  const clonesDir = path.join(workDir, 'clones');
  await mkdir(projectRoot);
  await mkdir(clonesDir);
  const timeoutMs = options.requestTimeoutMs ?? 60_000;
  const children = new Set<ChildProcess>();
  let requestCount = 0;

  const handle = (req: IncomingMessage, res: ServerResponse): void => {
    requestCount++;
    if (options.token !== undefined && !authorized(req, options.token)) {
      req.resume();
      res.writeHead(401, { 'WWW-Authenticate': 'Basic realm="vmroll-test"', 'Content-Type': 'text/plain' });
      res.end('authentication required\n');
      return;
    }
    const child = spawn(GIT_HTTP_BACKEND, [], { env: cgiEnvironment(req, projectRoot), stdio: ['pipe', 'pipe', 'pipe'] });
    children.add(child);
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      if (!res.headersSent) res.writeHead(504, { 'Content-Type': 'text/plain' }).end('git-http-backend timed out\n');
      else res.destroy();
    }, timeoutMs);
    let stderr = '';
    child.stderr.on('data', (chunk: Buffer) => {
      stderr += chunk.toString('utf8');
    });
    child.stdin.on('error', () => {}); // the CGI may exit before reading all of the body
    req.pipe(child.stdin);

    let pending: Buffer | null = Buffer.alloc(0);
    child.stdout.on('data', (chunk: Buffer) => {
      if (pending === null) {
        res.write(chunk);
        return;
      }
      pending = Buffer.concat([pending, chunk]);
      const parsed = splitCgiHeaders(pending);
      if (parsed === null) return;
      pending = null;
      res.statusCode = parsed.status;
      for (const [name, value] of parsed.headers) res.appendHeader(name, value);
      if (parsed.rest.length > 0) res.write(parsed.rest);
    });
    child.on('close', (code) => {
      clearTimeout(timer);
      children.delete(child);
      if (res.writableEnded) return;
      if (pending !== null && !res.headersSent) {
        res.writeHead(502, { 'Content-Type': 'text/plain' }).end(`git-http-backend exited ${code}: ${stderr}\n`);
        return;
      }
      res.end();
    });
    child.on('error', (err) => {
      clearTimeout(timer);
      children.delete(child);
      if (!res.headersSent) res.writeHead(500, { 'Content-Type': 'text/plain' }).end(`${err.message}\n`);
    });
  };

  const server = createServer(handle);
  server.requestTimeout = timeoutMs;
  server.headersTimeout = Math.min(timeoutMs, 30_000);
  server.keepAliveTimeout = 1_000;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const { port } = server.address() as AddressInfo;
  const baseUrl = `http://127.0.0.1:${port}`;
  const repoUrl = (name: string): string => `${baseUrl}/${name}.git`;
  const pushUrl = (name: string): string =>
    options.token === undefined ? repoUrl(name) : `http://vmroll:${encodeURIComponent(options.token)}@127.0.0.1:${port}/${name}.git`;

  return {
    baseUrl,
    projectRoot,
    get requestCount() {
      return requestCount;
    },
    repoUrl,
    async createBareRepo(name) {
      const gitdir = path.join(projectRoot, `${name}.git`);
      await runGit(projectRoot, ['init', '--quiet', '--bare', '-b', 'main', gitdir]);
      return repoUrl(name);
    },
    async createWorkingClone(name) {
      const dir = await mkdtemp(path.join(clonesDir, `${name}-`));
      await runGit(dir, ['init', '--quiet', '-b', 'main']);
      await runGit(dir, ['remote', 'add', 'origin', pushUrl(name)]);
      const git = (...args: string[]): Promise<string> => runGit(dir, args);
      return {
        dir,
        git,
        async write(file, content) {
          const target = path.join(dir, file);
          await mkdir(path.dirname(target), { recursive: true });
          await writeFile(target, content);
        },
        async remove(file) {
          await rm(path.join(dir, file), { recursive: true, force: true });
        },
        async commit(message) {
          await git('add', '--all');
          await git('commit', '--quiet', '--allow-empty', '-m', message);
          return git('rev-parse', 'HEAD');
        },
        async push() {
          await git('push', '--quiet', '--tags', 'origin', 'HEAD');
        },
      };
    },
    async suspend() {
      for (const child of children) child.kill('SIGKILL');
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
    async resume() {
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen(port, '127.0.0.1', () => {
          server.off('error', reject);
          resolve();
        });
      });
    },
    async stop() {
      for (const child of children) child.kill('SIGKILL');
      server.closeAllConnections();
      if (server.listening) await new Promise<void>((resolve) => server.close(() => resolve()));
      await rm(workDir, { recursive: true, force: true });
    },
  };
}
