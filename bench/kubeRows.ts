/**
 * The fleet-scale rows of `npm run bench:kube` (issue 15): `vmroll run` as operators run it, a whole
 * process of the compiled build (bin/vmroll.js → dist/), against `vmroll sim` as its own process,
 * the repository served by Debian git's `git http-backend`, both on 127.0.0.1.
 *
 * Rows, for the "before" tree (a revision, extracted and compiled apart) and the "after" tree (the
 * checkout the bench runs in), side by side in one run:
 *
 * - cold N: an empty cluster and an empty clone cache; time from the process's spawn to its first
 *   sync line on stdout (`sync <commit>: … (… ms, N writes)`), which it prints once the first sync
 *   is done (and /readyz turns 200 at the same moment; checked);
 * - restart: SIGTERM, then a new process with the same clone cache against the in-sync cluster;
 *   its writes must be 0;
 * - push→applied: a commit pushed to the Git server, then GitHub's push webhook, signed with
 *   HMAC-SHA256 as GitHub signs it, POSTed to `/webhook/github`; time from the POST to the VM's
 *   change arriving on a watch the bench holds on that VM; median of several;
 * - new leader: SIGTERM, then a process with `--leader-elect` (the Lease is free: the old process held
 *   none, or released it), time to its first sync line;
 * - new leader, warm standby (after tree only): a second `--leader-elect` process (its own clone
 *   cache, as a second pod has) started while the new leader holds the Lease; once it logs its
 *   `standby:` line the leader gets SIGTERM (which releases the Lease); time from the leader's exit
 *   to the standby's first sync line.
 *
 * Each row: time, CPU seconds of the vmroll process (utime + stime from /proc/<pid>/stat), its peak
 * RSS (VmHWM), the simulator's CPU seconds in the same window, the requests the API server counted
 * by verb (GET /admin/stats, reset at the row's start), and the 1-minute load average at the row's
 * start and end. Explain rows (`--explain-size`) add, on the same repository and the after tree:
 * the Reconciler alone in a child through tsx (how bench/README.md's earlier figures were made, with
 * the CPU of reconcile() alone and of the whole process) and `vmroll run` from the sources through tsx.
 *
 * A bench, not a test: every figure is what it saw; failures are printed in the table, never thrown.
 */
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { createHmac, randomBytes, randomUUID } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, realpathSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import os, { tmpdir } from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { type GeneratedVm, planRepository, renderManifest } from './manifests.ts';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const KUBE_BENCH = path.join(ROOT, 'bench', 'kube.bench.ts');
const VMROLL_TSX = path.join(ROOT, 'bench', 'vmrollTsx.ts');
const KUBEVIRT = path.join(ROOT, 'fixtures', 'example-cluster', 'kubevirt.yaml');
/** The revision before issue 15's fixes (main before the fast YAML path was merged). */
export const DEFAULT_BEFORE = 'e9db9aa';
/** Namespace of the leader-election Lease in the simulator. */
const LEASE_NAMESPACE = 'vmroll';

// ---------------------------------------------------------------------------------------------
// Pure helpers (test/benchKubeRows.test.ts checks them)
// ---------------------------------------------------------------------------------------------

/** The first line `vmroll run` prints for a sync (controller/render.ts). */
export interface SyncLine {
  /** The commit, as printed (12 hex digits). */
  commit: string;
  /** The counts, e.g. `10000 created`. */
  summary: string;
  /** The sync's own duration, as printed. */
  ms: number;
  writes: number;
}

/** Parses a `sync <commit>: <counts> (<ms> ms, <n> writes)` line; null for any other line. */
export function parseSyncLine(line: string): SyncLine | null {
  const m = /^sync ([0-9a-f]{7,40}): (.*) \((\d+) ms, (\d+) writes?\)$/.exec(line.trimEnd());
  if (m === null) return null;
  return { commit: m[1] as string, summary: m[2] as string, ms: Number(m[3]), writes: Number(m[4]) };
}

/** CPU time (user + system, ms) from the text of /proc/<pid>/stat; NaN when it does not parse. */
export function cpuMsFromStat(stat: string, ticksPerSecond: number): number {
  // The command name (field 2) may hold spaces and parentheses: count fields after the last ')'.
  const close = stat.lastIndexOf(')');
  if (close < 0) return NaN;
  const fields = stat.slice(close + 2).trim().split(/\s+/);
  // After the name: state is field 3; utime and stime are fields 14 and 15, so indexes 11 and 12 here.
  const utime = Number(fields[11]);
  const stime = Number(fields[12]);
  if (!Number.isFinite(utime) || !Number.isFinite(stime) || fields.length < 13) return NaN;
  return ((utime + stime) * 1000) / ticksPerSecond;
}

/** A `Vm…:  <n> kB` field (VmHWM, VmRSS) of /proc/<pid>/status, in KiB; NaN when absent. */
export function statusKiB(status: string, field: string): number {
  const m = new RegExp(`^${field}:\\s+(\\d+)\\s+kB$`, 'm').exec(status);
  return m?.[1] !== undefined ? Number(m[1]) : NaN;
}

/** GitHub's `X-Hub-Signature-256` value for a delivery body: `sha256=` + hex HMAC-SHA256 with the webhook secret. */
export function githubSignature(secret: string, body: string | Buffer): string {
  return `sha256=${createHmac('sha256', secret).update(body).digest('hex')}`;
}

/** `1000,5k,10k` → [1000, 5000, 10000]; throws on anything else. */
export function parseSizes(text: string): number[] {
  return text.split(',').map((part) => {
    const m = /^\s*(\d+)(k?)\s*$/i.exec(part);
    if (m === null) throw new Error(`--sizes: "${part}" is not a count (1000 or 1k)`);
    const n = Number(m[1]) * (m[2] !== '' ? 1000 : 1);
    if (!Number.isInteger(n) || n < 1) throw new Error(`--sizes: "${part}" must be at least 1`);
    return n;
  });
}

/** The median, NaN for none. */
export function median(xs: readonly number[]): number {
  const s = xs.filter((x) => !Number.isNaN(x)).sort((a, b) => a - b);
  if (s.length === 0) return NaN;
  const mid = Math.floor(s.length / 2);
  return s.length % 2 === 1 ? (s[mid] as number) : ((s[mid - 1] as number) + (s[mid] as number)) / 2;
}

/** Requests by verb as one cell: `apply 1000, list 8, watch 8`, verbs sorted; `none` when empty. */
export function verbsCell(byVerb: Readonly<Record<string, number>>): string {
  const parts = Object.entries(byVerb)
    .filter(([, n]) => n > 0)
    .sort(([a], [b]) => a.localeCompare(b))
    .map(([v, n]) => `${v} ${Number.isInteger(n) ? n : n.toFixed(1)}`);
  return parts.length > 0 ? parts.join(', ') : 'none';
}

/** A markdown table; `|` in cells is escaped. */
export function markdownTable(header: readonly string[], rows: readonly (readonly string[])[]): string {
  const cell = (s: string): string => s.replace(/\|/g, '\\|');
  return [`| ${header.map(cell).join(' | ')} |`, `|${header.map((_, i) => (i === 0 ? '---' : '---:')).join('|')}|`, ...rows.map((r) => `| ${r.map(cell).join(' | ')} |`)].join('\n');
}

/** `after ÷ before` as `1.23×`; `n/a` when either is missing. */
export function ratioCell(after: number, before: number): string {
  return Number.isFinite(after) && Number.isFinite(before) && before > 0 ? `${(after / before).toFixed(2)}×` : 'n/a';
}

const fmtS = (ms: number): string => (Number.isFinite(ms) ? (ms >= 100_000 ? `${(ms / 1000).toFixed(0)} s` : ms >= 1000 ? `${(ms / 1000).toFixed(1)} s` : `${Math.round(ms)} ms`) : 'n/a');
const fmtCpu = (ms: number): string => (Number.isFinite(ms) ? `${(ms / 1000).toFixed(ms >= 10_000 ? 1 : 2)}` : 'n/a');
const fmtMiB = (kib: number): string => (Number.isFinite(kib) ? `${Math.round(kib / 1024)} MiB` : 'n/a');
const fmtLoad = (a: number, b: number): string => `${a.toFixed(2)} → ${b.toFixed(2)}`;
const fmtCount = (n: number): string => n.toLocaleString('en-US');

// ---------------------------------------------------------------------------------------------
// Processes
// ---------------------------------------------------------------------------------------------

const TICKS = await clockTicks();

async function clockTicks(): Promise<number> {
  const out = await new Promise<string>((resolve) => execFile('getconf', ['CLK_TCK'], (err, stdout) => resolve(err ? '100' : stdout)));
  const n = Number(out.trim());
  return Number.isFinite(n) && n > 0 ? n : 100;
}

/** CPU ms of a process so far (NaN once it is gone). */
function cpuMs(pid: number): number {
  try {
    return cpuMsFromStat(readFileSync(`/proc/${pid}/stat`, 'utf8'), TICKS);
  } catch {
    return NaN;
  }
}

/** VmHWM (peak RSS) of a process, KiB. */
function peakKiB(pid: number): number {
  try {
    return statusKiB(readFileSync(`/proc/${pid}/status`, 'utf8'), 'VmHWM');
  } catch {
    return NaN;
  }
}

/** Resets a process's VmHWM to its current RSS (the kernel's clear_refs 5); false when refused. */
function resetPeak(pid: number): boolean {
  try {
    writeFileSync(`/proc/${pid}/clear_refs`, '5');
    return true;
  } catch {
    return false;
  }
}

const load1 = (): number => os.loadavg()[0] ?? NaN;

/** A process the bench started, its stdout and stderr kept as lines. */
class Proc {
  readonly child: ChildProcess;
  readonly pid: number;
  readonly stdout: string[] = [];
  /** The last stderr lines (the log), for error messages. */
  readonly stderrTail: string[] = [];
  stderrLines = 0;
  exit: { code: number | null; signal: string | null } | null = null;
  /** `host:port` of vmroll's HTTP server, once logged. */
  address: string | null = null;
  /** The first `standby:` log line (a `--leader-elect` follower is warm) and when it came (performance.now()). */
  standby: { line: string; at: number } | null = null;
  private readonly wake = new Set<() => void>();
  readonly exited: Promise<void>;

  constructor(
    readonly label: string,
    command: string,
    args: string[],
    options: { cwd: string; env: NodeJS.ProcessEnv },
    private readonly onStderr?: (line: string) => void,
  ) {
    this.child = spawn(command, args, { cwd: options.cwd, env: options.env, stdio: ['ignore', 'pipe', 'pipe'] });
    if (this.child.pid === undefined) throw new Error(`${label}: could not start ${command}`);
    this.pid = this.child.pid;
    const out = createInterface({ input: this.child.stdout as NodeJS.ReadableStream, crlfDelay: Infinity });
    out.on('line', (line) => {
      this.stdout.push(line);
      this.notify();
    });
    const err = createInterface({ input: this.child.stderr as NodeJS.ReadableStream, crlfDelay: Infinity });
    err.on('line', (line) => {
      this.stderrLines++;
      this.stderrTail.push(line);
      if (this.stderrTail.length > 40) this.stderrTail.shift();
      this.onStderr?.(line);
      this.notify();
    });
    this.exited = new Promise((resolve) => {
      this.child.once('exit', (code, signal) => {
        this.exit = { code, signal };
        this.notify();
        resolve();
      });
    });
  }

  private notify(): void {
    for (const w of [...this.wake]) w();
  }

  /** Resolves to find()'s first defined value, checked after every line and at exit; rejects on exit or timeout. */
  async waitFor<T>(what: string, find: () => T | undefined, timeoutMs: number): Promise<T> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const found = find();
      if (found !== undefined) return found;
      if (this.exit !== null) throw new Error(`${this.label} exited (${this.exit.signal ?? `code ${this.exit.code}`}) before ${what}: ${this.tail()}`);
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`${this.label}: no ${what} within ${Math.round(timeoutMs / 1000)} s: ${this.tail()}`);
      await new Promise<void>((resolve) => {
        const done = (): void => {
          clearTimeout(timer);
          this.wake.delete(done);
          resolve();
        };
        const timer = setTimeout(done, left);
        this.wake.add(done);
      });
    }
  }

  tail(): string {
    return this.stderrTail.slice(-5).join(' / ').slice(-1500) || '(no stderr)';
  }

  /** Sends `signal`, waits up to `graceMs` for the exit, then SIGKILL. */
  async stop(signal: NodeJS.Signals = 'SIGTERM', graceMs = 60_000): Promise<void> {
    if (this.exit !== null) return;
    this.child.kill(signal);
    const timer = new Promise<'late'>((resolve) => setTimeout(() => resolve('late'), graceMs).unref());
    if ((await Promise.race([this.exited.then(() => 'exited' as const), timer])) === 'late') {
      this.child.kill('SIGKILL');
      await this.exited;
    }
  }
}

/** Every process still running, stopped if the bench is interrupted. */
const running = new Set<Proc>();

function track(p: Proc): Proc {
  running.add(p);
  void p.exited.then(() => running.delete(p));
  return p;
}

/** Kills (SIGKILL) every process the bench started that still runs. */
export function killStarted(): void {
  for (const p of running) if (p.exit === null) p.child.kill('SIGKILL');
}

// ---------------------------------------------------------------------------------------------
// Trees: the "after" checkout and the "before" revision, each compiled
// ---------------------------------------------------------------------------------------------

/** Why `root`'s dist/ would not be run by its bin/vmroll.js (the same rule as the bin), or null when it would. */
export function distStaleness(root: string): string | null {
  const mtime = (file: string): number | undefined => statSync(file, { throwIfNoEntry: false })?.mtimeMs;
  for (const dir of ['reconciler', path.join('schemas', 'generated')]) {
    let files: string[];
    try {
      files = readdirSync(path.join(root, dir), { recursive: true }) as string[];
    } catch {
      continue;
    }
    for (const f of files) {
      if (!f.endsWith('.ts')) continue;
      const source = path.join(dir, f);
      const built = mtime(path.join(root, 'dist', source.replace(/\.ts$/, '.js')));
      if (built === undefined) return `dist/ has no build of ${source}`;
      if ((mtime(path.join(root, source)) ?? 0) > built) return `${source} changed after the last build`;
    }
  }
  return mtime(path.join(root, 'dist', 'reconciler', 'cli.js')) === undefined ? 'dist/ has not been built' : null;
}

/** A tree whose bin/vmroll.js the bench runs. */
export interface Tree {
  /** `before` or `after`. */
  name: 'before' | 'after';
  root: string;
  /** What it is: `e9db9aa (…)`, `working tree at <sha>`. */
  describe: string;
}

function run(command: string, args: string[], cwd: string, timeoutMs = 900_000): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(command, args, { cwd, timeout: timeoutMs, maxBuffer: 64 * 1024 * 1024, killSignal: 'SIGKILL' }, (err, stdout, stderr) => {
      if (err) reject(new Error(`${path.basename(command)} ${args.join(' ')}: ${err.message.split('\n')[0]} ${stderr.slice(-2000)} ${stdout.slice(-2000)}`));
      else resolve(stdout.trim());
    });
  });
}

/** Compiles `root` with its tsconfig.build.json (this checkout's TypeScript). */
async function compile(root: string): Promise<void> {
  await run(process.execPath, [path.join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', 'tsconfig.build.json'], root);
}

/** The after tree: this checkout, compiled now (unless `build` is false); throws when dist/ would not run. */
export async function afterTree(build: boolean, log: (m: string) => void): Promise<Tree> {
  if (build) {
    log('compiling this checkout (tsc -p tsconfig.build.json)');
    await compile(ROOT);
  }
  const stale = distStaleness(ROOT);
  if (stale !== null) throw new Error(`the after tree's dist/ is stale (${stale}): run \`npm run build\` or drop --no-build`);
  const head = await run('git', ['rev-parse', '--short=12', 'HEAD'], ROOT).catch(() => '?');
  const dirty = (await run('git', ['status', '--porcelain', '--untracked-files=no'], ROOT).catch(() => '')) !== '';
  return { name: 'after', root: ROOT, describe: `this checkout (${head}${dirty ? ' + uncommitted changes' : ''}), compiled dist/` };
}

/**
 * The before tree: `rev` extracted with `git archive` (no worktree entry in the shared repository,
 * nothing to prune if the bench is killed) into a temporary folder named after the commit, beside a
 * symlink to this checkout's node_modules, compiled with its own tsconfig.build.json. Reused by later
 * runs while its dist/ is fresh.
 */
export async function beforeTree(rev: string, log: (m: string) => void): Promise<Tree> {
  const sha = await run('git', ['rev-parse', '--verify', `${rev}^{commit}`], ROOT);
  const subject = await run('git', ['log', '-1', '--format=%s', sha], ROOT);
  const dir = path.join(tmpdir(), `vmroll-bench-tree-${sha.slice(0, 12)}`);
  const marker = path.join(dir, '.bench-compiled');
  if (existsSync(marker) && distStaleness(dir) === null) {
    log(`before tree: reusing ${dir}`);
  } else {
    log(`before tree: extracting ${sha.slice(0, 12)} into ${dir} and compiling it`);
    rmSync(dir, { recursive: true, force: true });
    mkdirSync(dir, { recursive: true });
    await run('sh', ['-c', `git -C "$1" archive --format=tar "$2" | tar -x -C "$3"`, 'sh', ROOT, sha, dir], ROOT);
    symlinkSync(realpathSync(path.join(ROOT, 'node_modules')), path.join(dir, 'node_modules'));
    await compile(dir);
    const stale = distStaleness(dir);
    if (stale !== null) throw new Error(`before tree ${dir}: dist/ is stale after compiling (${stale})`);
    writeFileSync(marker, `${sha}\n`);
  }
  return { name: 'before', root: dir, describe: `${sha.slice(0, 7)} ("${subject.slice(0, 70)}${subject.length > 70 ? '…' : ''}"), compiled dist/` };
}

// ---------------------------------------------------------------------------------------------
// The simulator, the repository, webhooks, watches
// ---------------------------------------------------------------------------------------------

/** The part of GET /admin/stats the rows read. */
interface Stats {
  requests: number;
  writes: number;
  byVerb: Record<string, number>;
  /** Writes to leader-election Leases (counted apart: they are the election's, not the sync's). */
  leaseWrites: number;
}

/** Writes of a GET /admin/stats `byResource` to `leases.coordination.k8s.io` (any verb but get, list, watch). */
export function leaseWritesOf(byResource: Readonly<Record<string, Readonly<Record<string, number>>>>): number {
  let n = 0;
  for (const [resource, verbs] of Object.entries(byResource)) {
    if (!/^leases(\.|$)/.test(resource)) continue;
    for (const [verb, count] of Object.entries(verbs)) if (verb !== 'get' && verb !== 'list' && verb !== 'watch') n += count;
  }
  return n;
}

interface Sim {
  proc: Proc;
  url: string;
  kubeconfig: string;
}

async function startSim(dir: string, timeoutMs: number): Promise<Sim> {
  mkdirSync(dir, { recursive: true });
  const kubeconfig = path.join(dir, 'kubeconfig');
  // The simulator of this checkout, compiled: the same cluster side for both trees.
  const proc = track(
    new Proc('vmroll sim', process.execPath, [path.join(ROOT, 'bin', 'vmroll.js'), 'sim', '--listen', '127.0.0.1:0', '--kubevirt', KUBEVIRT, '--kubeconfig-out', kubeconfig, '--log-level', 'warn'], {
      cwd: ROOT,
      env: cleanEnv({}),
    }),
  );
  await proc.waitFor('"kubeconfig written"', () => (proc.stdout.some((l) => l.includes('kubeconfig written')) ? true : undefined), timeoutMs);
  const url = proc.stdout.map((l) => /Kubernetes API at (\S+)/.exec(l)?.[1]).find((u) => u !== undefined);
  if (url === undefined) throw new Error(`vmroll sim printed no API address: ${proc.stdout.join(' / ')}`);
  return { proc, url, kubeconfig };
}

async function api(url: string, init: RequestInit = {}): Promise<unknown> {
  const res = await fetch(url, { ...init, signal: AbortSignal.timeout(30_000) });
  const text = await res.text();
  if (!res.ok) throw new Error(`${init.method ?? 'GET'} ${url}: HTTP ${res.status} ${text.slice(0, 200)}`);
  return text === '' ? null : (JSON.parse(text) as unknown);
}

async function readStats(simUrl: string): Promise<Stats> {
  const body = (await api(`${simUrl}/admin/stats`)) as { requests?: number; writes?: number; byVerb?: Record<string, number>; byResource?: Record<string, Record<string, number>> };
  const leaseWrites = leaseWritesOf(body.byResource ?? {});
  return { requests: body.requests ?? NaN, writes: (body.writes ?? NaN) - leaseWrites, byVerb: { ...(body.byVerb ?? {}) }, leaseWrites };
}

async function resetStats(simUrl: string): Promise<void> {
  await api(`${simUrl}/admin/stats/reset`, { method: 'POST' });
}

async function createNamespace(simUrl: string, name: string): Promise<void> {
  const res = await fetch(`${simUrl}/api/v1/namespaces`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ apiVersion: 'v1', kind: 'Namespace', metadata: { name } }),
    signal: AbortSignal.timeout(30_000),
  });
  const text = await res.text();
  if (res.status !== 201 && res.status !== 409) throw new Error(`creating namespace ${name}: HTTP ${res.status} ${text.slice(0, 200)}`);
}

/** The environment of a started process: this one's without settings that would change what vmroll does. */
function cleanEnv(extra: Record<string, string>): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) {
    if (k.startsWith('VMROLL_') || k === 'KUBECONFIG' || k === 'GIT_TOKEN' || k === 'POD_NAME' || k === 'NODE_OPTIONS') continue;
    env[k] = v;
  }
  return { ...env, ...extra };
}

const IDENTITY = ['-c', 'user.name=vmroll bench', '-c', 'user.email=bench@vmroll.invalid', '-c', 'commit.gpgsign=false', '-c', 'gc.auto=0', '-c', 'maintenance.auto=false'];

/** One generated repository on the Git server, and a working clone to push changes from. */
interface Fleet {
  count: number;
  url: string;
  /** `owner/name` the webhook payload names. */
  fullName: string;
  vms: GeneratedVm[];
  namespaces: string[];
  clone: string;
  info: string;
  git(args: string[]): Promise<string>;
}

async function makeFleet(server: { createBareRepo(n: string): Promise<string>; projectRoot: string }, work: string, count: number, log: (m: string) => void): Promise<Fleet> {
  const home = path.join(work, 'home');
  mkdirSync(home, { recursive: true });
  const env = { ...cleanEnv({}), HOME: home, GIT_CONFIG_NOSYSTEM: '1', GIT_TERMINAL_PROMPT: '0', LC_ALL: 'C' };
  const name = `fleet-${count}`;
  const git = (cwd: string, args: string[]): Promise<string> =>
    new Promise((resolve, reject) => {
      execFile('git', [...IDENTITY, ...args], { cwd, env, timeout: 600_000, maxBuffer: 64 * 1024 * 1024 }, (err, stdout, stderr) => {
        if (err) reject(new Error(`git ${args.join(' ')}: ${err.message.split('\n')[0]} ${stderr}`));
        else resolve(stdout.trim());
      });
    });
  log(`repository: generating ${fmtCount(count)} manifests`);
  const url = await server.createBareRepo(name);
  const clone = path.join(work, `clone-${count}`);
  await git(work, ['clone', '--quiet', url, clone]);
  const vms = planRepository(count);
  let bytes = 0;
  const dirs = new Set<string>();
  for (const vm of vms) {
    const target = path.join(clone, vm.file);
    const dir = path.dirname(target);
    if (!dirs.has(dir)) {
      mkdirSync(dir, { recursive: true });
      dirs.add(dir);
    }
    const text = renderManifest(vm);
    bytes += Buffer.byteLength(text);
    writeFileSync(target, text);
  }
  writeFileSync(path.join(clone, 'README.md'), '# Fleet\n\nVirtualMachines of every team, one file each.\n');
  await git(clone, ['add', '--all']);
  await git(clone, ['commit', '--quiet', '-m', `fleet: ${count} VirtualMachines`]);
  await git(clone, ['push', '--quiet', 'origin', 'HEAD:refs/heads/main']);
  const bare = path.join(server.projectRoot, `${name}.git`);
  await git(bare, ['gc', '--quiet']);
  const packDir = path.join(bare, 'objects', 'pack');
  const packBytes = readdirSync(packDir)
    .filter((f) => f.endsWith('.pack'))
    .reduce((n, f) => n + statSync(path.join(packDir, f)).size, 0);
  const namespaces = [...new Set(vms.map((v) => v.namespace))];
  const info = `${fmtCount(count)} manifests in ${dirs.size} folders (${(bytes / 2 ** 20).toFixed(1)} MiB), ${namespaces.length} namespaces, served pack ${(packBytes / 2 ** 20).toFixed(1)} MiB`;
  log(`repository: ${info}`);
  return { count, url, fullName: `bench/${name}`, vms, namespaces, clone, info, git: (args) => git(clone, args) };
}

/** The VM's `spec.template.spec.domain.cpu.sockets`, or undefined. */
function socketsOf(o: unknown): unknown {
  let v: unknown = o;
  for (const k of ['spec', 'template', 'spec', 'domain', 'cpu', 'sockets']) v = typeof v === 'object' && v !== null ? (v as Record<string, unknown>)[k] : undefined;
  return v;
}

/**
 * Opens a watch on one VM from its current resourceVersion; `changed` resolves with the time
 * (performance.now()) of the first event whose sockets equal `sockets`.
 */
async function watchVm(simUrl: string, vm: GeneratedVm, sockets: number, timeoutMs: number): Promise<{ changed: Promise<number>; close(): void }> {
  const base = `${simUrl}/apis/kubevirt.io/v1/namespaces/${vm.namespace}/virtualmachines`;
  const current = (await api(`${base}/${vm.name}`)) as { metadata?: { resourceVersion?: string } };
  const rv = current.metadata?.resourceVersion ?? '';
  const abort = new AbortController();
  const res = await fetch(`${base}?watch=1&fieldSelector=${encodeURIComponent(`metadata.name=${vm.name}`)}&resourceVersion=${rv}`, { signal: abort.signal });
  if (!res.ok || res.body === null) throw new Error(`watch ${vm.namespace}/${vm.name}: HTTP ${res.status}`);
  const body = res.body;
  const changed = (async (): Promise<number> => {
    const timer = setTimeout(() => abort.abort(), timeoutMs);
    const reader = body.getReader();
    const decoder = new TextDecoder();
    let buffered = '';
    try {
      for (;;) {
        const { done, value } = await reader.read();
        if (done) throw new Error(`watch on ${vm.namespace}/${vm.name} ended before sockets became ${sockets}`);
        const now = performance.now();
        buffered += decoder.decode(value, { stream: true });
        let nl: number;
        while ((nl = buffered.indexOf('\n')) >= 0) {
          const line = buffered.slice(0, nl);
          buffered = buffered.slice(nl + 1);
          const event = JSON.parse(line) as { type?: string; object?: unknown };
          if ((event.type === 'MODIFIED' || event.type === 'ADDED') && socketsOf(event.object) === sockets) return now;
        }
      }
    } catch (e) {
      if (abort.signal.aborted) throw new Error(`no watch event with sockets ${sockets} on ${vm.namespace}/${vm.name} within ${Math.round(timeoutMs / 1000)} s`);
      throw e;
    } finally {
      clearTimeout(timer);
    }
  })();
  changed.catch(() => undefined);
  return { changed, close: () => abort.abort() };
}

/** POSTs GitHub's push event for `after` on main, signed with `secret`; resolves to the HTTP status. */
async function postPushWebhook(address: string, secret: string, fleet: Fleet, before: string, after: string): Promise<number> {
  const body = JSON.stringify({
    ref: 'refs/heads/main',
    before,
    after,
    created: false,
    deleted: false,
    forced: false,
    repository: { full_name: fleet.fullName, name: fleet.fullName.split('/')[1], clone_url: fleet.url, default_branch: 'main' },
    pusher: { name: 'vmroll bench', email: 'bench@vmroll.invalid' },
    head_commit: { id: after },
  });
  const res = await fetch(`http://${address}/webhook/github`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', 'x-github-event': 'push', 'x-github-delivery': randomUUID(), 'x-hub-signature-256': githubSignature(secret, body), 'user-agent': 'GitHub-Hookshot/bench' },
    body,
    signal: AbortSignal.timeout(30_000),
  });
  await res.arrayBuffer();
  return res.status;
}

// ---------------------------------------------------------------------------------------------
// Rows
// ---------------------------------------------------------------------------------------------

/** What a row is. */
export const RowKind = {
  cold: 'cold',
  restart: 'restart',
  push: 'push',
  leader: 'leader',
  standby: 'standby',
  explainChild: 'explain-child',
  explainTsx: 'explain-tsx',
  explainQuiet: 'explain-quiet',
} as const;
/** One of {@link RowKind}. */
export type RowKind = (typeof RowKind)[keyof typeof RowKind];

/** One measured row. */
export interface Row {
  kind: RowKind;
  tree: string;
  vms: number;
  /** ms: to current (cold, restart, leader), POST → VM changed (push, median). */
  timeMs: number;
  cpuMs: number;
  peakKiB: number;
  simCpuMs: number;
  byVerb: Record<string, number>;
  writes: number;
  loadStart: number;
  loadEnd: number;
  /** The sync line's counts, or why the row failed. */
  result: string;
  ok: boolean;
  /** Anything else worth a line under the table. */
  notes: string[];
}

interface RowsOptions {
  sizes: number[];
  steadySize: number;
  explainSize: number | null;
  pushes: number;
  before: string | null;
  build: boolean;
  rowTimeoutMs: number;
  logLevel: string;
  keep: boolean;
}

/** Everything one vmroll-run row needs to start the process. */
interface RunContext {
  tree: Tree;
  fleet: Fleet;
  sim: Sim;
  cacheDir: string;
  secretFile: string;
  logLevel: string;
  /** Start through tsx from the sources instead of bin/vmroll.js. */
  tsx?: boolean;
  leaderElect?: boolean;
  /** POD_NAME, the Lease identity (default: one per tree). */
  podName?: string;
}

function startVmroll(ctx: RunContext, label: string): Proc {
  const args = [
    'run',
    '--repo', ctx.fleet.url,
    '--ref', 'main',
    '--kubeconfig', ctx.sim.kubeconfig,
    '--cache-dir', ctx.cacheDir,
    '--listen', '127.0.0.1:0',
    '--webhook-secret-file', ctx.secretFile,
    // Only the first sync and webhooks sync: a timer sync would mix into the push rows.
    '--interval', '1h',
    '--log-level', ctx.logLevel,
    ...(ctx.leaderElect === true ? ['--leader-elect', '--leader-election-namespace', LEASE_NAMESPACE] : []),
  ];
  const entry = ctx.tsx === true ? ['--import', 'tsx', VMROLL_TSX] : [path.join(ctx.tree.root, 'bin', 'vmroll.js')];
  // V8 flags for the vmroll process only (e.g. a heap cap, as a Deployment would set it); the simulator and the bench run without.
  const nodeFlags = (process.env['VMROLL_BENCH_NODE_FLAGS'] ?? '').split(/\s+/).filter((f) => f !== '');
  const proc = new Proc(label, process.execPath, [...nodeFlags, ...entry, ...args], { cwd: ctx.tree.root, env: cleanEnv(ctx.leaderElect === true ? { POD_NAME: ctx.podName ?? `bench-${ctx.tree.name}-leader` } : {}) }, (line) => {
    if (proc.standby === null && line.includes('"msg":"standby: ')) proc.standby = { line, at: performance.now() };
    if (proc.address !== null || !line.includes('listening')) return;
    try {
      const o = JSON.parse(line) as { address?: unknown };
      if (typeof o.address === 'string') proc.address = o.address;
    } catch {
      // a line that is not JSON: not the one we want
    }
  });
  return track(proc);
}

/** The first sync line at or after stdout line `from`. */
function syncLineAfter(proc: Proc, from: number, commitPrefix?: string): SyncLine | undefined {
  for (let i = from; i < proc.stdout.length; i++) {
    const s = parseSyncLine(proc.stdout[i] as string);
    if (s !== null && (commitPrefix === undefined || commitPrefix.startsWith(s.commit))) return s;
  }
  return undefined;
}

/** Starts a vmroll process and measures it until its first sync line: one row (the process keeps running). */
async function timeToCurrent(kind: RowKind, ctx: RunContext, label: string, expectWrites: number | null, log: (m: string) => void, timeoutMs: number): Promise<{ row: Row; proc: Proc | null }> {
  const loadStart = load1();
  // bin/vmroll.js runs the sources through tsx when dist/ is stale: say so rather than measure it unawares.
  const stale = ctx.tsx === true ? null : distStaleness(ctx.tree.root);
  const simCpu0 = cpuMs(ctx.sim.proc.pid);
  await resetStats(ctx.sim.url);
  const t0 = performance.now();
  const proc = startVmroll(ctx, label);
  const row: Row = { kind, tree: ctx.tree.name, vms: ctx.fleet.count, timeMs: NaN, cpuMs: NaN, peakKiB: NaN, simCpuMs: NaN, byVerb: {}, writes: NaN, loadStart, loadEnd: NaN, result: '', ok: false, notes: [] };
  if (stale !== null) row.notes.push(`dist/ was STALE at the start (${stale}): bin/vmroll.js ran the sources through tsx`);
  try {
    const sync = await proc.waitFor('first sync line', () => syncLineAfter(proc, 0), timeoutMs);
    row.timeMs = performance.now() - t0;
    row.cpuMs = cpuMs(proc.pid);
    row.peakKiB = peakKiB(proc.pid);
    row.simCpuMs = cpuMs(ctx.sim.proc.pid) - simCpu0;
    const stats = await readStats(ctx.sim.url);
    row.byVerb = stats.byVerb;
    row.writes = stats.writes;
    if (stats.leaseWrites > 0) row.notes.push(`${stats.leaseWrites} of the requests are Lease writes (the election's; not in "writes")`);
    row.result = `${sync.summary} (its own: ${fmtS(sync.ms)}, ${sync.writes} writes)`;
    row.ok = stale === null && (expectWrites === null || (stats.writes === expectWrites && sync.writes === expectWrites));
    if (!row.ok) row.notes.push(`expected ${expectWrites} writes; the API server counted ${stats.writes}, the sync line says ${sync.writes}`);
    if (proc.address !== null) {
      const ready = await fetch(`http://${proc.address}/readyz`, { signal: AbortSignal.timeout(10_000) }).then((r) => r.status).catch(() => 0);
      if (ready !== 200) row.notes.push(`/readyz answered ${ready} after the first sync line`);
    } else if (ctx.logLevel === 'info' || ctx.logLevel === 'debug' || ctx.logLevel === 'trace') {
      row.notes.push('no listening address in the log');
    }
    row.notes.push(`log: ${proc.stderrLines} stderr lines, ${proc.stdout.length} stdout lines by then`);
    row.loadEnd = load1();
    log(`${kind} ${ctx.tree.name} ${fmtCount(ctx.fleet.count)}: ${fmtS(row.timeMs)}, CPU ${fmtCpu(row.cpuMs)} s, peak ${fmtMiB(row.peakKiB)}, ${verbsCell(row.byVerb)}; ${row.result}`);
    return { row, proc };
  } catch (e) {
    row.loadEnd = load1();
    row.result = `FAILED: ${e instanceof Error ? e.message : String(e)}`.slice(0, 600);
    log(`${kind} ${ctx.tree.name} ${fmtCount(ctx.fleet.count)}: ${row.result}`);
    await proc.stop('SIGKILL', 10_000);
    return { row, proc: null };
  }
}

/**
 * The warm standby: a second `--leader-elect` process beside `leader` (which holds the Lease), with
 * its own clone cache; once it says it is warm, SIGTERM to the leader (its shutdown releases the
 * Lease); time, CPU and requests from the leader's exit to the standby's first sync line (peak RSS:
 * the standby's whole life, warm-up included).
 */
async function standbyRow(ctx: RunContext, leader: Proc, log: (m: string) => void, timeoutMs: number): Promise<{ row: Row; proc: Proc | null }> {
  const loadStart = load1();
  const row: Row = { kind: RowKind.standby, tree: ctx.tree.name, vms: ctx.fleet.count, timeMs: NaN, cpuMs: NaN, peakKiB: NaN, simCpuMs: NaN, byVerb: {}, writes: NaN, loadStart, loadEnd: NaN, result: '', ok: false, notes: [] };
  const t0 = performance.now();
  const proc = startVmroll({ ...ctx, leaderElect: true, podName: `bench-${ctx.tree.name}-standby`, cacheDir: `${ctx.cacheDir}-standby` }, `vmroll run --leader-elect (${ctx.tree.name}, standby ${ctx.fleet.count})`);
  try {
    const warm = await proc.waitFor('standby line', () => proc.standby ?? undefined, timeoutMs);
    const warmCpu = cpuMs(proc.pid);
    const warmPeak = peakKiB(proc.pid);
    if (syncLineAfter(proc, 0) !== undefined) throw new Error('the standby synced before the leader stopped');
    const fields = JSON.parse(warm.line) as { read?: number; cached?: number; ms?: number };
    row.notes.push(`warm ${fmtS(warm.at - t0)} after its spawn (CPU ${fmtCpu(warmCpu)} s, peak ${fmtMiB(warmPeak)} by then; its load read ${fields.read} files, ${fields.cached} from the parse cache), while the leader held the Lease`);
    await resetStats(ctx.sim.url);
    const simCpu0 = cpuMs(ctx.sim.proc.pid);
    const cpu0 = cpuMs(proc.pid);
    const stopAt = performance.now();
    await leader.stop('SIGTERM');
    const free = performance.now();
    row.notes.push(`the leader's SIGTERM → exit (Lease released): ${fmtS(free - stopAt)}; time and CPU are counted from its exit`);
    const sync = await proc.waitFor('first sync line', () => syncLineAfter(proc, 0), timeoutMs);
    row.timeMs = performance.now() - free;
    row.cpuMs = cpuMs(proc.pid) - cpu0;
    row.peakKiB = peakKiB(proc.pid);
    row.simCpuMs = cpuMs(ctx.sim.proc.pid) - simCpu0;
    const stats = await readStats(ctx.sim.url);
    row.byVerb = stats.byVerb;
    row.writes = stats.writes;
    if (stats.leaseWrites > 0) row.notes.push(`${stats.leaseWrites} of the requests are Lease writes (the election's; not in "writes")`);
    row.result = `${sync.summary} (its own: ${fmtS(sync.ms)}, ${sync.writes} writes)`;
    row.ok = stats.writes === 0 && sync.writes === 0;
    if (!row.ok) row.notes.push(`expected 0 writes; the API server counted ${stats.writes}, the sync line says ${sync.writes}`);
    row.loadEnd = load1();
    log(`standby ${ctx.tree.name} ${fmtCount(ctx.fleet.count)}: ${fmtS(row.timeMs)} from the Lease's release, CPU ${fmtCpu(row.cpuMs)} s, peak ${fmtMiB(row.peakKiB)}, ${verbsCell(row.byVerb)}; ${row.result}`);
    return { row, proc };
  } catch (e) {
    row.loadEnd = load1();
    row.result = `FAILED: ${e instanceof Error ? e.message : String(e)}`.slice(0, 600);
    log(`standby ${ctx.tree.name} ${fmtCount(ctx.fleet.count)}: ${row.result}`);
    await proc.stop('SIGKILL', 10_000);
    return { row, proc: null };
  }
}

/** Push → webhook → VM changed, `n` times on a running process; one row with medians. */
async function pushRows(ctx: RunContext, proc: Proc, n: number, nextTarget: () => GeneratedVm | undefined, secret: string, log: (m: string) => void, timeoutMs: number): Promise<Row> {
  const loadStart = load1();
  const row: Row = { kind: RowKind.push, tree: ctx.tree.name, vms: ctx.fleet.count, timeMs: NaN, cpuMs: NaN, peakKiB: NaN, simCpuMs: NaN, byVerb: {}, writes: NaN, loadStart, loadEnd: NaN, result: '', ok: false, notes: [] };
  const applied: number[] = [];
  const reported: number[] = [];
  const cpu: number[] = [];
  const simCpu: number[] = [];
  const peaks: number[] = [];
  const writes: number[] = [];
  const pushMs: number[] = [];
  const verbs: Array<Record<string, number>> = [];
  let peakReset = true;
  const failures: string[] = [];
  if (proc.address === null) {
    row.result = 'FAILED: no webhook address';
    row.loadEnd = load1();
    return row;
  }
  for (let i = 0; i < n; i++) {
    const vm = nextTarget();
    if (vm === undefined) {
      failures.push('no VM left to change');
      break;
    }
    let watch: Awaited<ReturnType<typeof watchVm>> | null = null;
    try {
      const before = await ctx.fleet.git(['rev-parse', 'HEAD']);
      writeFileSync(path.join(ctx.fleet.clone, vm.file), renderManifest(vm, 4));
      await ctx.fleet.git(['commit', '--quiet', '-am', `${vm.namespace}/${vm.name}: 4 sockets`]);
      const p0 = performance.now();
      await ctx.fleet.git(['push', '--quiet', 'origin', 'HEAD:refs/heads/main']);
      pushMs.push(performance.now() - p0);
      const after = await ctx.fleet.git(['rev-parse', 'HEAD']);
      watch = await watchVm(ctx.sim.url, vm, 4, timeoutMs);
      await resetStats(ctx.sim.url);
      peakReset &&= resetPeak(proc.pid);
      const lines = proc.stdout.length;
      const cpu0 = cpuMs(proc.pid);
      const simCpu0 = cpuMs(ctx.sim.proc.pid);
      const t0 = performance.now();
      const status = await postPushWebhook(proc.address, secret, ctx.fleet, before, after);
      if (status !== 202) throw new Error(`webhook answered ${status}`);
      const tChanged = await watch.changed;
      const sync = await proc.waitFor(`the sync line of ${after.slice(0, 12)}`, () => syncLineAfter(proc, lines, after), timeoutMs);
      const tReported = performance.now();
      applied.push(tChanged - t0);
      reported.push(tReported - t0);
      cpu.push(cpuMs(proc.pid) - cpu0);
      simCpu.push(cpuMs(ctx.sim.proc.pid) - simCpu0);
      peaks.push(peakKiB(proc.pid));
      const stats = await readStats(ctx.sim.url);
      verbs.push(stats.byVerb);
      writes.push(stats.writes);
      if (sync.writes !== 1 || stats.writes !== 1) failures.push(`push ${i}: ${stats.writes} writes counted, sync line says ${sync.writes} (1 expected)`);
      log(`push ${ctx.tree.name} ${fmtCount(ctx.fleet.count)} #${i}: VM changed ${fmtS(tChanged - t0)} after the POST, sync line ${fmtS(tReported - t0)}; ${verbsCell(stats.byVerb)}`);
    } catch (e) {
      failures.push(`push ${i}: ${e instanceof Error ? e.message : String(e)}`.slice(0, 400));
      log(`push ${ctx.tree.name} #${i} failed: ${failures[failures.length - 1]}`);
    } finally {
      watch?.close();
    }
  }
  row.loadEnd = load1();
  row.timeMs = median(applied);
  row.cpuMs = median(cpu);
  row.simCpuMs = median(simCpu);
  row.peakKiB = peakReset ? Math.max(...peaks) : peakKiB(proc.pid);
  const allVerbs = new Set(verbs.flatMap((v) => Object.keys(v)));
  for (const v of allVerbs) row.byVerb[v] = median(verbs.map((x) => x[v] ?? 0));
  row.writes = median(writes);
  row.ok = failures.length === 0 && applied.length === n;
  row.result = `${applied.length} of ${n} pushes; POST → VM changed: ${applied.map(fmtS).join(', ')}; POST → sync line: median ${fmtS(median(reported))}`;
  row.notes.push(`git push before each webhook (not in the time): median ${fmtS(median(pushMs))}`);
  row.notes.push(peakReset ? 'peak RSS: the highest VmHWM over the pushes, each reset (clear_refs) just before its POST' : 'peak RSS: the process peak since its start (clear_refs refused)');
  row.notes.push('requests by verb and CPU: medians per push; the bench\'s own watch is opened before the counters are reset');
  row.notes.push(...failures);
  return row;
}

/** The old kube.bench child (Reconciler + KubeCluster through tsx) for one cold sync. */
async function explainChildRow(fleet: Fleet, sim: Sim, cacheDir: string, log: (m: string) => void, timeoutMs: number): Promise<Row> {
  const loadStart = load1();
  const simCpu0 = cpuMs(sim.proc.pid);
  const row: Row = { kind: RowKind.explainChild, tree: 'after', vms: fleet.count, timeMs: NaN, cpuMs: NaN, peakKiB: NaN, simCpuMs: NaN, byVerb: {}, writes: NaN, loadStart, loadEnd: NaN, result: '', ok: false, notes: [] };
  const t0 = performance.now();
  const proc = track(
    new Proc('bench child', process.execPath, ['--expose-gc', '--import', 'tsx', KUBE_BENCH, '--child', '--url', fleet.url, '--kubeconfig', sim.kubeconfig, '--sim-url', sim.url, '--cache-dir', cacheDir, '--changes', '0'], { cwd: ROOT, env: cleanEnv({}) }),
  );
  try {
    const cold = await proc.waitFor(
      'its cold record',
      () => {
        for (const l of proc.stdout) {
          if (!l.startsWith('{')) continue;
          const r = JSON.parse(l) as { type?: string; wallMs?: number; cpuMs?: number; maxRssKiB?: number; writes?: number; summary?: string; stats?: Stats; message?: string };
          if (r.type === 'error') throw new Error(r.message ?? 'child error');
          if (r.type === 'cold') return r;
        }
        return undefined;
      },
      timeoutMs,
    );
    const wholeMs = performance.now() - t0;
    const wholeCpu = cpuMs(proc.pid);
    row.simCpuMs = cpuMs(sim.proc.pid) - simCpu0;
    row.timeMs = wholeMs;
    row.cpuMs = wholeCpu;
    row.peakKiB = peakKiB(proc.pid);
    row.byVerb = cold.stats?.byVerb ?? {};
    row.writes = cold.stats?.writes ?? NaN;
    row.ok = row.writes === fleet.count;
    row.result = `${cold.summary ?? ''}; reconcile() alone: ${fmtS(cold.wallMs ?? NaN)} wall, ${fmtCpu(cold.cpuMs ?? NaN)} CPU s (bench/README.md's figures are this window)`;
    row.loadEnd = load1();
    log(`explain child ${fmtCount(fleet.count)}: whole ${fmtS(wholeMs)} / ${fmtCpu(wholeCpu)} CPU s; reconcile() ${fmtS(cold.wallMs ?? NaN)} / ${fmtCpu(cold.cpuMs ?? NaN)} CPU s`);
  } catch (e) {
    row.loadEnd = load1();
    row.result = `FAILED: ${e instanceof Error ? e.message : String(e)}`.slice(0, 600);
  }
  await proc.stop('SIGKILL', 10_000);
  return row;
}

const ROW_LABEL: Record<RowKind, string> = {
  [RowKind.cold]: 'cold, empty cluster and clone cache',
  [RowKind.restart]: 'restart against the in-sync cluster (same clone cache)',
  [RowKind.push]: 'push → webhook → VM changed (median)',
  [RowKind.leader]: 'new leader (`--leader-elect`) against the in-sync cluster',
  [RowKind.standby]: 'new leader, warm standby (from the Lease\'s release)',
  [RowKind.explainChild]: 'explain: Reconciler alone in a child, tsx (bench/README.md\'s earlier method)',
  [RowKind.explainTsx]: 'explain: `vmroll run` from the sources through tsx',
  [RowKind.explainQuiet]: 'explain: `vmroll run` compiled, `--log-level warn` (no log line per VM)',
};

/** Runs every row and prints the markdown. */
export async function runRows(opts: RowsOptions): Promise<void> {
  const started = performance.now();
  const log = (m: string): void => {
    process.stderr.write(`[bench:kube ${((performance.now() - started) / 1000).toFixed(1).padStart(7)} s] ${m}\n`);
  };
  const loadAtStart = os.loadavg();
  const work = mkdtempSync(path.join(tmpdir(), 'vmroll-kube-rows-'));
  const rows: Row[] = [];
  const notes: string[] = [];
  const { startGitServer } = await import('../test/helpers/gitServer.ts');
  const server = await startGitServer({ requestTimeoutMs: 600_000 });
  const interrupted = (): void => {
    killStarted();
    if (!opts.keep) rmSync(work, { recursive: true, force: true });
    // The Git server's own folder goes with it (bounded: an interrupt must not hang).
    setTimeout(() => process.exit(130), 5_000).unref();
    void server.stop().finally(() => process.exit(130));
  };
  process.once('SIGINT', interrupted);
  process.once('SIGTERM', interrupted);
  const trees: Tree[] = [];
  try {
    const secret = randomBytes(24).toString('hex');
    const secretFile = path.join(work, 'webhook-secret');
    writeFileSync(secretFile, secret, { mode: 0o600 });
    if (opts.before !== null) {
      try {
        trees.push(await beforeTree(opts.before, log));
      } catch (e) {
        notes.push(`before tree not measured: ${e instanceof Error ? e.message : String(e)}`);
        log(notes[notes.length - 1] as string);
      }
    }
    trees.push(await afterTree(opts.build, log));
    for (const t of trees) log(`${t.name}: ${t.describe} (${t.root})`);

    let simCount = 0;
    const freshSim = async (): Promise<Sim> => {
      const sim = await startSim(path.join(work, `sim-${simCount++}`), 60_000);
      return sim;
    };
    const prepare = async (sim: Sim, fleet: Fleet): Promise<void> => {
      for (const ns of [...fleet.namespaces, LEASE_NAMESPACE]) await createNamespace(sim.url, ns);
    };
    const stopSim = async (sim: Sim): Promise<void> => {
      await sim.proc.stop('SIGTERM', 30_000);
      const err = sim.proc.stderrTail.filter((l) => l.trim() !== '');
      if (err.length > 0) notes.push(`vmroll sim stderr: ${err.slice(-3).join(' / ').slice(0, 500)}`);
    };

    for (const [sizeIndex, size] of opts.sizes.entries()) {
      const fleet = await makeFleet(server, work, size, log);
      notes.push(`repository ${fmtCount(size)}: ${fleet.info}`);
      // VMs the pushes change (sockets 2 → 4 in running VMs), spread over the repository, each used once.
      const candidates = fleet.vms.filter((v) => v.sockets === 2 && renderManifest(v).includes('runStrategy: Always'));
      const wanted = opts.pushes * trees.length;
      const targets = Array.from({ length: wanted }, (_, i) => candidates[Math.floor(((i + 0.5) * candidates.length) / Math.max(1, wanted))]).filter((v): v is GeneratedVm => v !== undefined);
      let next = 0;
      // Alternate which tree goes first from size to size, so neither always meets the same load.
      const order = sizeIndex % 2 === 0 ? trees : [...trees].reverse();
      for (const tree of order) {
        const sim = await freshSim();
        try {
          await prepare(sim, fleet);
          const ctx: RunContext = { tree, fleet, sim, cacheDir: path.join(work, `cache-${tree.name}-${size}`), secretFile, logLevel: opts.logLevel };
          const cold = await timeToCurrent(RowKind.cold, ctx, `vmroll run (${tree.name}, cold ${size})`, size, log, opts.rowTimeoutMs);
          rows.push(cold.row);
          let proc = cold.proc;
          if (size === opts.steadySize && proc !== null) {
            await proc.stop('SIGTERM');
            const restart = await timeToCurrent(RowKind.restart, ctx, `vmroll run (${tree.name}, restart ${size})`, 0, log, opts.rowTimeoutMs);
            rows.push(restart.row);
            proc = restart.proc;
            if (proc !== null && opts.pushes > 0) rows.push(await pushRows(ctx, proc, opts.pushes, () => targets[next++], secret, log, opts.rowTimeoutMs));
            await proc?.stop('SIGTERM');
            const leader = await timeToCurrent(RowKind.leader, { ...ctx, leaderElect: true }, `vmroll run --leader-elect (${tree.name}, ${size})`, 0, log, opts.rowTimeoutMs);
            rows.push(leader.row);
            proc = leader.proc;
            // The standby line is the after tree's; the before tree has no standby to wait for.
            if (proc !== null && tree.name === 'after') {
              const standby = await standbyRow(ctx, proc, log, opts.rowTimeoutMs);
              rows.push(standby.row);
              if (standby.proc !== null) proc = standby.proc;
            }
          }
          await proc?.stop('SIGTERM');
        } finally {
          await stopSim(sim);
        }
      }
      if (size === opts.explainSize) {
        const after = trees.find((t) => t.name === 'after') as Tree;
        let sim = await freshSim();
        try {
          await prepare(sim, fleet);
          rows.push(await explainChildRow(fleet, sim, path.join(work, `cache-child-${size}`), log, opts.rowTimeoutMs));
        } finally {
          await stopSim(sim);
        }
        const variants: Array<{ kind: RowKind; label: string; tsx?: boolean; logLevel?: string }> = [
          { kind: RowKind.explainTsx, label: `vmroll run via tsx (${size})`, tsx: true },
          { kind: RowKind.explainQuiet, label: `vmroll run --log-level warn (${size})`, logLevel: 'warn' },
        ];
        for (const v of variants) {
          sim = await freshSim();
          try {
            await prepare(sim, fleet);
            const ctx: RunContext = { tree: after, fleet, sim, cacheDir: path.join(work, `cache-${v.kind}-${size}`), secretFile, logLevel: v.logLevel ?? opts.logLevel, ...(v.tsx === true && { tsx: true }) };
            const r = await timeToCurrent(v.kind, ctx, v.label, size, log, opts.rowTimeoutMs);
            rows.push(r.row);
            await r.proc?.stop('SIGTERM');
          } finally {
            await stopSim(sim);
          }
        }
      }
      // The table so far, in case a later (larger) size does not finish.
      log(`rows so far:\n${report(rows, trees, notes, opts, loadAtStart, performance.now() - started)}`);
    }
  } catch (e) {
    notes.push(`bench stopped: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}`);
    log(notes[notes.length - 1] as string);
  } finally {
    process.off('SIGINT', interrupted);
    process.off('SIGTERM', interrupted);
    killStarted();
    await server.stop();
    if (!opts.keep) rmSync(work, { recursive: true, force: true });
    else notes.push(`work folder kept: ${work}`);
  }
  process.stdout.write(`${report(rows, trees, notes, opts, loadAtStart, performance.now() - started)}\n`);
}

/** The markdown: machine, trees, the rows, the ratios, notes. */
function report(rows: Row[], trees: Tree[], notes: string[], opts: RowsOptions, loadAtStart: number[], wallMs: number): string {
  const out: string[] = [];
  const cpus = os.cpus();
  out.push(`#### bench:kube rows — ${new Date().toISOString()}`);
  out.push('');
  out.push(
    `Machine: ${cpus.length} vCPUs (${cpus[0]?.model.trim() ?? '?'}), ${(os.totalmem() / 2 ** 30).toFixed(0)} GiB, Node ${process.version}. Load average (1/5/15 min) ${loadAtStart.map((x) => x.toFixed(2)).join(' / ')} at the start, ${os
      .loadavg()
      .map((x) => x.toFixed(2))
      .join(' / ')} at the end; bench wall ${fmtS(wallMs)}.`,
  );
  for (const t of trees) out.push(`- **${t.name}**: ${t.describe}; run as \`node bin/vmroll.js run\` (dist/ checked fresh, so the bin does not fall back to tsx)`);
  out.push(`- vmroll: \`run --repo <git-http-backend URL> --kubeconfig <sim> --cache-dir <dir> --listen 127.0.0.1:0 --webhook-secret-file <file> --interval 1h --log-level ${opts.logLevel}\`, text output; \`vmroll sim\` (this checkout, compiled) as its own process; both on 127.0.0.1`);
  out.push('');
  const header = ['row', 'tree', 'VMs', 'time', 'CPU s (vmroll)', 'peak RSS', 'CPU s (sim)', 'requests by verb (API server)', 'writes (not Leases)', 'load 1 min', 'result'];
  out.push(
    markdownTable(
      header,
      rows.map((r) => [
        ROW_LABEL[r.kind],
        r.tree,
        fmtCount(r.vms),
        fmtS(r.timeMs),
        fmtCpu(r.cpuMs),
        fmtMiB(r.peakKiB),
        fmtCpu(r.simCpuMs),
        verbsCell(r.byVerb),
        Number.isFinite(r.writes) ? fmtCount(r.writes) : 'n/a',
        fmtLoad(r.loadStart, r.loadEnd),
        `${r.ok ? '' : '**MISS** '}${r.result}`,
      ]),
    ),
  );
  out.push('');
  const before = rows.filter((r) => r.tree === 'before');
  const pairs = rows
    .filter((r) => r.tree === 'after' && (r.kind === RowKind.cold || r.kind === RowKind.restart || r.kind === RowKind.push || r.kind === RowKind.leader))
    .map((a) => ({ a, b: before.find((b) => b.kind === a.kind && b.vms === a.vms) }))
    .filter((p): p is { a: Row; b: Row } => p.b !== undefined);
  if (pairs.length > 0) {
    out.push('After ÷ before (same run, same repository; below 1× is better):');
    out.push('');
    out.push(
      markdownTable(
        ['row', 'VMs', 'time before → after', 'time ratio', 'CPU s before → after', 'CPU ratio', 'peak RSS before → after', 'RSS ratio'],
        pairs.map(({ a, b }) => [ROW_LABEL[a.kind], fmtCount(a.vms), `${fmtS(b.timeMs)} → ${fmtS(a.timeMs)}`, ratioCell(a.timeMs, b.timeMs), `${fmtCpu(b.cpuMs)} → ${fmtCpu(a.cpuMs)}`, ratioCell(a.cpuMs, b.cpuMs), `${fmtMiB(b.peakKiB)} → ${fmtMiB(a.peakKiB)}`, ratioCell(a.peakKiB, b.peakKiB)]),
      ),
    );
    out.push('');
  }
  out.push('Times: cold, restart and new leader from the spawn of the process to its first sync line on stdout (warm standby: from the old leader\'s exit, CPU s and requests too) (the sync is done; /readyz turns 200 at the same moment); push from the webhook POST to the VM\'s change arriving on a watch. CPU s and peak RSS are the vmroll process\'s own (/proc/<pid>/stat utime + stime, VmHWM), from its start (push: CPU per push, POST → sync line, median; peak RSS over the pushes); requests are what the API server counted from the row\'s start (watches counted when opened). A row that failed or missed its writes (cold: one per VM; restart and leader: 0; push: 1) says **MISS**.');
  out.push('');
  for (const r of rows) for (const n of r.notes) out.push(`- ${r.kind} ${r.tree} ${fmtCount(r.vms)}: ${n}`);
  for (const n of notes) out.push(`- ${n}`);
  return out.join('\n');
}

/** Options of {@link runRows} from the command line (kube.bench.ts parses them). */
export function rowsOptions(values: { sizes?: string | undefined; 'steady-size'?: string | undefined; 'explain-size'?: string | undefined; pushes?: string | undefined; before?: string | undefined; 'skip-before'?: boolean | undefined; 'skip-explain'?: boolean | undefined; 'no-build'?: boolean | undefined; 'row-timeout-s'?: string | undefined; 'log-level'?: string | undefined; keep?: boolean | undefined }): RowsOptions {
  const sizes = parseSizes(values.sizes ?? '1000,5000,10000,20000');
  const steady = values['steady-size'] !== undefined ? (parseSizes(values['steady-size'])[0] as number) : sizes.includes(10_000) ? 10_000 : Math.max(...sizes);
  if (!sizes.includes(steady)) sizes.push(steady);
  const explain = values['skip-explain'] === true ? null : values['explain-size'] !== undefined ? (parseSizes(values['explain-size'])[0] as number) : steady;
  if (explain !== null && !sizes.includes(explain)) sizes.push(explain);
  return {
    sizes,
    steadySize: steady,
    explainSize: explain,
    pushes: Number(values.pushes ?? '5'),
    before: values['skip-before'] === true ? null : (values.before ?? DEFAULT_BEFORE),
    build: values['no-build'] !== true,
    rowTimeoutMs: Number(values['row-timeout-s'] ?? '1800') * 1000,
    logLevel: values['log-level'] ?? 'info',
    keep: values.keep === true,
  };
}
