/**
 * The Kubernetes-backend benchmark, two tables:
 *
 * - by default, the fleet-scale rows of issue 15 (bench/kubeRows.ts): `vmroll run` as operators run it
 *   (bin/vmroll.js, compiled) against `vmroll sim` as its own process: cold 1k/5k/10k/20k, restart
 *   against the in-sync cluster, push → signed webhook → VM changed, and a new leader, each for the
 *   revision before issue 15 and for this checkout, side by side in one run;
 * - with `--one-changed-vm`: 10,000 VM manifests served by git-http-backend, applied by vmroll's
 *   Reconciler through KubeCluster to `vmroll sim` running as its own process; then the same one-file
 *   change applied the way a team would script it without vmroll (`git pull` + `kubectl apply -f <dir> -R`,
 *   client-side and server-side), on the same server and repository, in the same run.
 *
 *   npm run bench:kube                                         # the rows: 1k, 5k, 10k, 20k; restart, push and leader at 10k
 *   npm run bench:kube -- --sizes 1000,2000 --steady-size 2000 # smaller
 *   npm run bench:kube -- --skip-before --skip-explain         # this checkout only
 *   npm run bench:kube -- --before <rev> --pushes 9            # another "before"; more pushes
 *   npm run bench:kube -- --one-changed-vm                     # the one-changed-VM table
 *   npm run bench:kube -- --one-changed-vm --count 2000 --changes 3
 *
 * One-changed-VM table: requests are counted by the API server (GET /admin/stats, reset before each
 * sync), so vmroll and kubectl are counted alike. The Reconciler runs in a child process (`--child`) so
 * its peak RSS is its own; the parent makes the repository, serves it, runs the simulator process,
 * pushes the changes, runs git and kubectl and prints the table. A bench, not a test: it exits 0
 * whatever it measures and prints MISS loudly.
 */
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import os, { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { rowsOptions, runRows } from './kubeRows.ts';
import { type GeneratedVm, planRepository, renderManifest } from './manifests.ts';

const SELF = fileURLToPath(import.meta.url);
const ROOT = path.resolve(path.dirname(SELF), '..');
const VMROLL = path.join(ROOT, 'bin', 'vmroll.js');
const KUBEVIRT = path.join(ROOT, 'fixtures', 'example-cluster', 'kubevirt.yaml');

/** Timings of one reconcile, as ReconcileReport.timings (ms). */
interface Timings {
  fetch: number;
  diff: number;
  load: number;
  observe: number;
  plan: number;
  apply: number;
  settle: number;
  report: number;
  total: number;
}

/** The part of the simulator's GET /admin/stats the bench reads. */
interface Stats {
  requests: number;
  reads: number;
  writes: number;
  discovery: number;
  byVerb: Record<string, number>;
  openWatches: number;
  watchEvents: number;
}

/** What the child prints, one JSON object a line. */
type ChildRecord =
  | {
      type: 'cold';
      wallMs: number;
      timings: Timings;
      read: number;
      writes: number;
      vms: number;
      errors: number;
      summary: string;
      stats: Stats;
      maxRssKiB: number;
      /** CPU time of the vmroll process during the cold sync (user + system). */
      cpuMs: number;
      rssAfterKiB: number;
      heapUsedAfterKiB: number;
    }
  | {
      type: 'incremental';
      i: number;
      wallMs: number;
      timings: Timings;
      read: string[];
      writes: number;
      summary: string;
      commitMatches: boolean;
      stats: Stats;
      /** Requests KubeCluster itself counted during the sync, by `verb resource`. */
      client: Record<string, number>;
      /** VmHWM after resetting it just before the reconcile (null when /proc/self/clear_refs is refused). */
      peakRssKiB: number | null;
      changes: string[];
    }
  | {
      type: 'end';
      maxRssKiB: number;
      client: Record<string, number>;
      /** After a full GC at the end (null without --expose-gc): what the process really keeps. */
      afterGc: { rssKiB: number; heapUsedKiB: number; externalKiB: number } | null;
      /** The informers' stores: objects and their size as JSON, by kind. */
      stores: Array<{ kind: string; objects: number; jsonKiB: number }>;
    }
  | { type: 'error'; message: string };

/** Parent → child messages over IPC. */
type ParentMessage = { type: 'pushed'; i: number; commit: string } | { type: 'push-failed'; i: number; message: string };
/** Child → parent messages over IPC. */
type ChildMessage = { type: 'push'; i: number };

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function numbers(v: unknown): Record<string, number> {
  const out: Record<string, number> = {};
  if (isRecord(v)) for (const [k, n] of Object.entries(v)) if (typeof n === 'number') out[k] = n;
  return out;
}

/** Reads the simulator's request counts. */
async function readStats(simUrl: string): Promise<Stats> {
  const res = await fetch(`${simUrl}/admin/stats`, { signal: AbortSignal.timeout(10_000) });
  const body: unknown = await res.json();
  if (!res.ok || !isRecord(body)) throw new Error(`GET /admin/stats: HTTP ${res.status}`);
  const n = (k: string): number => (typeof body[k] === 'number' ? body[k] : NaN);
  return {
    requests: n('requests'),
    reads: n('reads'),
    writes: n('writes'),
    discovery: n('discovery'),
    byVerb: numbers(body['byVerb']),
    openWatches: n('openWatches'),
    watchEvents: n('watchEvents'),
  };
}

async function resetStats(simUrl: string): Promise<void> {
  const res = await fetch(`${simUrl}/admin/stats/reset`, { method: 'POST', signal: AbortSignal.timeout(10_000) });
  await res.arrayBuffer();
  if (!res.ok) throw new Error(`POST /admin/stats/reset: HTTP ${res.status}`);
}

const verb = (s: Stats, v: string): number => s.byVerb[v] ?? 0;

function peakRss(): number | null {
  try {
    const m = /^VmHWM:\s+(\d+)\s+kB$/m.exec(readFileSync('/proc/self/status', 'utf8'));
    return m?.[1] !== undefined ? Number(m[1]) : null;
  } catch {
    return null;
  }
}

/** Resets the kernel's peak-RSS mark (VmHWM) to the current RSS; false when not allowed. */
function resetPeakRss(): boolean {
  try {
    writeFileSync('/proc/self/clear_refs', '5');
    return true;
  } catch {
    return false;
  }
}

/** VmHWM and VmRSS of another process (KiB), or null. */
function processMemory(pid: number | undefined): { hwm: number; rss: number } | null {
  if (pid === undefined) return null;
  try {
    const text = readFileSync(`/proc/${pid}/status`, 'utf8');
    const hwm = /^VmHWM:\s+(\d+)\s+kB$/m.exec(text)?.[1];
    const rss = /^VmRSS:\s+(\d+)\s+kB$/m.exec(text)?.[1];
    return hwm !== undefined && rss !== undefined ? { hwm: Number(hwm), rss: Number(rss) } : null;
  } catch {
    return null;
  }
}

/** CPU time (user + system, ms) another process has used so far, or NaN. */
function processCpuMs(pid: number | undefined): number {
  if (pid === undefined) return NaN;
  try {
    // Fields after the command name (which may hold spaces): utime and stime are the 12th and 13th.
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return ((Number(fields[11]) + Number(fields[12])) * 1000) / 100;
  } catch {
    return NaN;
  }
}

// ---------------------------------------------------------------------------------------------
// Child: the Reconciler on the kube backend.
// ---------------------------------------------------------------------------------------------

async function runChild(args: { url: string; kubeconfig: string; simUrl: string; cacheDir: string; changes: number }): Promise<void> {
  const emit = (r: ChildRecord): void => {
    process.stdout.write(`${JSON.stringify(r)}\n`);
  };
  const { GitSource } = await import('../reconciler/source/gitSource.ts');
  const { KubeCluster } = await import('../reconciler/cluster/kube.ts');
  const { Reconciler } = await import('../reconciler/controller/reconcile.ts');
  const { makeLogger } = await import('../reconciler/logging.ts');
  const { redactUrl } = await import('../reconciler/source/errors.ts');

  const pending = new Map<number, (m: ParentMessage) => void>();
  process.on('message', (m: ParentMessage) => pending.get(m.i)?.(m));
  const requestPush = (i: number): Promise<ParentMessage> =>
    new Promise((resolve) => {
      pending.set(i, resolve);
      process.send?.({ type: 'push', i } satisfies ChildMessage);
    });

  const logger = makeLogger('silent', []);
  const source = new GitSource({ repo: args.url, cacheDir: args.cacheDir });
  const cluster = new KubeCluster({ kubeconfig: { file: args.kubeconfig }, logger });
  const reconciler = new Reconciler({ source, repoLabel: redactUrl(args.url), ref: 'main', path: '', cluster, prune: false, logger });
  const clientCounts = (): Map<string, number> => new Map(cluster.requests);
  const clientDiff = (before: Map<string, number>): Record<string, number> => {
    const out: Record<string, number> = {};
    for (const [k, n] of cluster.requests) if (n - (before.get(k) ?? 0) > 0) out[k] = n - (before.get(k) ?? 0);
    return out;
  };

  try {
    // Cold sync: every informer lists an empty cluster, then 10,000 server-side applies.
    await resetStats(args.simUrl);
    const cpu0 = process.cpuUsage();
    let t0 = performance.now();
    const cold = await reconciler.reconcile();
    const coldWall = performance.now() - t0;
    const cpu = process.cpuUsage(cpu0);
    const mem = process.memoryUsage();
    emit({
      type: 'cold',
      wallMs: coldWall,
      timings: cold.timings,
      read: cold.read.length,
      writes: cold.writes,
      vms: cold.summary.vms,
      errors: cold.plan.errors.length,
      summary: `${cold.summary.created} created, ${cold.summary.inSync} in sync, ${cold.summary.errors} errors${cold.plan.errors[0] !== undefined ? ` (first: ${cold.plan.errors[0].file}: ${cold.plan.errors[0].message})` : ''}`,
      stats: await readStats(args.simUrl),
      maxRssKiB: process.resourceUsage().maxRSS,
      cpuMs: (cpu.user + cpu.system) / 1000,
      rssAfterKiB: Math.round(mem.rss / 1024),
      heapUsedAfterKiB: Math.round(mem.heapUsed / 1024),
    });

    // Incremental syncs: one pushed one-file change each; the server counts what the sync asked of it.
    for (let i = 0; i < args.changes; i++) {
      const pushed = await requestPush(i);
      if (pushed.type !== 'pushed') {
        emit({ type: 'error', message: `push ${i} failed: ${pushed.type === 'push-failed' ? pushed.message : ''}` });
        break;
      }
      const canReset = resetPeakRss();
      const before = clientCounts();
      await resetStats(args.simUrl);
      t0 = performance.now();
      const r = await reconciler.reconcile();
      const wall = performance.now() - t0;
      const stats = await readStats(args.simUrl);
      const changed = r.plan.vms.filter((v) => v.action !== 'none');
      emit({
        type: 'incremental',
        i,
        wallMs: wall,
        timings: r.timings,
        read: r.read,
        writes: r.writes,
        summary: `${r.summary.liveUpdated} live-updated, ${r.summary.awaitingRestart} awaiting restart, ${r.summary.inSync} in sync, ${r.summary.errors} errors`,
        commitMatches: r.commit === pushed.commit,
        stats,
        client: clientDiff(before),
        peakRssKiB: canReset ? peakRss() : null,
        changes: changed.flatMap((v) => v.changes.map((c) => `${v.namespace}/${v.name} ${c.path} ${JSON.stringify(c.from)}→${JSON.stringify(c.to)} (${c.rollout})`)),
      });
    }
  } finally {
    reconciler.close();
    cluster.close();
  }
  const stores: Array<{ kind: string; objects: number; jsonKiB: number }> = [];
  for (const kind of ['VirtualMachine', 'VirtualMachineInstance', 'ControllerRevision']) {
    const store = cluster.informer(kind)?.store;
    if (store === undefined) continue;
    let bytes = 0;
    for (const o of store.values()) bytes += JSON.stringify(o).length;
    stores.push({ kind, objects: store.size, jsonKiB: Math.round(bytes / 1024) });
  }
  let afterGc: Extract<ChildRecord, { type: 'end' }>['afterGc'] = null;
  const gc: unknown = (globalThis as { gc?: unknown }).gc;
  if (typeof gc === 'function') {
    gc();
    const m = process.memoryUsage();
    afterGc = { rssKiB: Math.round(m.rss / 1024), heapUsedKiB: Math.round(m.heapUsed / 1024), externalKiB: Math.round(m.external / 1024) };
  }
  emit({ type: 'end', maxRssKiB: process.resourceUsage().maxRSS, client: Object.fromEntries(cluster.requests), afterGc, stores });
  // Used after the GC, so the figure includes the Reconciler's state, as a running vmroll keeps it.
  void reconciler;
}

// ---------------------------------------------------------------------------------------------
// Parent: repository, servers, git CLI, kubectl, table.
// ---------------------------------------------------------------------------------------------

function gitEnv(home: string): NodeJS.ProcessEnv {
  return { ...process.env, HOME: home, GIT_CONFIG_NOSYSTEM: '1', GIT_TERMINAL_PROMPT: '0', LC_ALL: 'C' };
}

const IDENTITY = ['-c', 'user.name=vmroll bench', '-c', 'user.email=bench@vmroll.invalid', '-c', 'commit.gpgsign=false', '-c', 'gc.auto=0', '-c', 'maintenance.auto=false'];

function git(cwd: string, home: string, args: string[], timeoutMs = 120_000): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile('git', [...IDENTITY, ...args], { cwd, env: gitEnv(home), timeout: timeoutMs, maxBuffer: 64 * 1024 * 1024 }, (err, stdout, stderr) => {
      if (err) reject(new Error(`git ${args.join(' ')}: ${err.message} ${stderr}`));
      else resolve(stdout.trim());
    });
  });
}

/** One command run under GNU time. */
interface Measured {
  ms: number;
  /** Peak RSS of the largest process, KiB (GNU time %M). */
  rssKiB: number;
  stdout: string;
  stderr: string;
}

/** Runs a program under GNU time: wall time (ms, measured here) and peak RSS; rejects on failure or timeout. */
function timed(cwd: string, env: NodeJS.ProcessEnv, program: string, args: string[], timeoutMs: number): Promise<Measured> {
  const out = path.join(tmpdir(), `vmroll-kube-bench-time-${process.pid}-${process.hrtime.bigint()}.txt`);
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    execFile('/usr/bin/time', ['-o', out, '-f', '%M', program, ...args], { cwd, env, timeout: timeoutMs, killSignal: 'SIGKILL', maxBuffer: 256 * 1024 * 1024 }, (err, stdout, stderr) => {
      const ms = performance.now() - t0;
      let rssKiB = NaN;
      try {
        rssKiB = Number(readFileSync(out, 'utf8').trim().split('\n').pop());
      } catch {
        // Killed before GNU time wrote its line.
      }
      rmSync(out, { force: true });
      if (err) {
        const killed = (err as { killed?: boolean }).killed === true ? ` (killed after ${timeoutMs / 1000} s)` : '';
        reject(new Error(`${path.basename(program)} ${args.join(' ')}${killed}: ${err.message.split('\n')[0]} ${stderr.trim().split('\n').slice(-3).join(' / ')}`));
        return;
      }
      resolve({ ms, rssKiB, stdout, stderr });
    });
  });
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length === 0 ? NaN : s.length % 2 === 1 ? (s[mid] as number) : ((s[mid - 1] as number) + (s[mid] as number)) / 2;
}

function max(xs: number[]): number {
  return xs.length === 0 ? NaN : Math.max(...xs);
}

const fmtMs = (ms: number): string => (Number.isNaN(ms) ? 'n/a' : ms >= 10_000 ? `${(ms / 1000).toFixed(1)} s` : ms >= 1000 ? `${(ms / 1000).toFixed(2)} s` : `${ms.toFixed(ms < 10 ? 1 : 0)} ms`);
const fmtMiB = (kib: number | null | undefined): string => (kib === null || kib === undefined || Number.isNaN(kib) ? 'n/a' : `${(kib / 1024).toFixed(0)} MiB`);
const ratio = (a: number, b: number): string => (Number.isNaN(a) || Number.isNaN(b) || b <= 0 ? 'n/a' : `${(a / b).toFixed(a / b >= 100 ? 0 : 1)}×`);

function pad(cells: string[], widths: number[]): string {
  return `| ${cells.map((c, i) => c.padEnd(widths[i] ?? 0)).join(' | ')} |`;
}

function table(header: string[], rows: string[][]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  return [pad(header, widths), `|${widths.map((w) => '-'.repeat(w + 2)).join('|')}|`, ...rows.map((r) => pad(r, widths))].join('\n');
}

const fmtVerbs = (s: Stats): string =>
  Object.entries(s.byVerb)
    .filter(([, n]) => n > 0)
    .map(([v, n]) => `${v} ${n}`)
    .join(', ') || 'none';

/** Starts `vmroll sim` as its own process; resolves once its kubeconfig is written. */
async function startSim(dir: string, log: (m: string) => void): Promise<{ proc: ChildProcess; url: string; kubeconfig: string; stderr: () => string }> {
  const kubeconfig = path.join(dir, 'sim-kubeconfig');
  const proc = spawn(process.execPath, [VMROLL, 'sim', '--listen', '127.0.0.1:0', '--kubevirt', KUBEVIRT, '--kubeconfig-out', kubeconfig, '--log-level', 'warn'], {
    cwd: ROOT,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  let err = '';
  proc.stdout?.on('data', (d: Buffer) => (out += d.toString()));
  proc.stderr?.on('data', (d: Buffer) => {
    err += d.toString();
    if (err.length > 200_000) err = err.slice(-100_000);
  });
  const deadline = Date.now() + 30_000;
  while (!out.includes('kubeconfig written')) {
    if (Date.now() > deadline || proc.exitCode !== null) {
      proc.kill('SIGKILL');
      throw new Error(`vmroll sim did not start: ${out} ${err}`);
    }
    await new Promise((r) => setTimeout(r, 20));
  }
  const url = /Kubernetes API at (\S+)/.exec(out)?.[1] ?? '';
  log(`vmroll sim (pid ${proc.pid}) at ${url}`);
  return { proc, url, kubeconfig, stderr: () => err };
}

async function createNamespace(simUrl: string, name: string): Promise<void> {
  const res = await fetch(`${simUrl}/api/v1/namespaces`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ apiVersion: 'v1', kind: 'Namespace', metadata: { name } }),
    signal: AbortSignal.timeout(10_000),
  });
  const text = await res.text();
  if (res.status !== 201 && res.status !== 409) throw new Error(`creating namespace ${name}: HTTP ${res.status} ${text.slice(0, 200)}`);
}

/** One `git pull` + `kubectl apply` run of the baseline. */
interface BaselineRun {
  pull: Measured;
  apply: Measured;
  stats: Stats;
  gitRequests: number;
  /** kubectl's output lines by their last word (configured, unchanged, serverside-applied, created). */
  outcome: Record<string, number>;
}

/** One way of applying the repository without vmroll. */
interface Baseline {
  label: string;
  args: string[];
  warmup: BaselineRun | null;
  runs: BaselineRun[];
  error: string | null;
}

function outcomes(stdout: string): Record<string, number> {
  const out: Record<string, number> = {};
  for (const line of stdout.split('\n')) {
    const word = line.trim().split(/\s+/).pop();
    if (word !== undefined && word !== '') out[word] = (out[word] ?? 0) + 1;
  }
  return out;
}

const fmtOutcome = (o: Record<string, number>): string =>
  Object.entries(o)
    .map(([w, n]) => `${n} ${w}`)
    .join(', ');

async function runParent(opts: { count: number; changes: number; timeoutMs: number; kubectlTimeoutMs: number; keep: boolean }): Promise<void> {
  const started = performance.now();
  const log = (msg: string): void => {
    process.stderr.write(`[bench:kube ${((performance.now() - started) / 1000).toFixed(1).padStart(6)} s] ${msg}\n`);
  };
  const { startGitServer } = await import('../test/helpers/gitServer.ts');
  const work = mkdtempSync(path.join(tmpdir(), 'vmroll-kube-bench-'));
  const home = path.join(work, 'home');
  mkdirSync(home);
  const server = await startGitServer({ requestTimeoutMs: 300_000 });
  let sim: Awaited<ReturnType<typeof startSim>> | null = null;
  let child: ChildProcess | null = null;
  let timedOut = false;
  const deadline = Date.now() + opts.timeoutMs;
  const overall = setTimeout(() => {
    timedOut = true;
    log(`overall timeout of ${opts.timeoutMs / 1000} s reached: killing the child`);
    if (child !== null && child.exitCode === null) child.kill('SIGKILL');
  }, opts.timeoutMs);
  overall.unref();

  const records: ChildRecord[] = [];
  const gitPerSync: number[] = [];
  const baselines: Baseline[] = [];
  let kubectlNote = '';
  let repoInfo = '';
  let childExit = '';
  let simMemAfterVmroll: { hwm: number; rss: number } | null = null;
  let simMemEnd: { hwm: number; rss: number } | null = null;
  let simCpuColdMs = NaN;
  const loadAtStart = os.loadavg()[0] ?? NaN;
  const notes: string[] = [];

  try {
    // 1. The repository, a working clone for pushes and a plain clone for the baseline.
    log(`generating ${opts.count} manifests`);
    const vms = planRepository(opts.count);
    const url = await server.createBareRepo('fleet');
    const serverRepo = path.join(server.projectRoot, 'fleet.git');
    const wc = await server.createWorkingClone('fleet');
    let bytes = 0;
    const madeDirs = new Set<string>();
    for (const vm of vms) {
      const target = path.join(wc.dir, vm.file);
      const dir = path.dirname(target);
      if (!madeDirs.has(dir)) {
        mkdirSync(dir, { recursive: true });
        madeDirs.add(dir);
      }
      const text = renderManifest(vm);
      bytes += Buffer.byteLength(text);
      writeFileSync(target, text);
    }
    writeFileSync(path.join(wc.dir, 'README.md'), '# Fleet\n\nVirtualMachines of every team, one file each.\n');
    await git(wc.dir, home, ['add', '--all']);
    await git(wc.dir, home, ['commit', '--quiet', '-m', `fleet: ${opts.count} VirtualMachines`]);
    await git(wc.dir, home, ['gc', '--quiet']);
    log('pushing to the bare repository over http');
    await git(wc.dir, home, ['push', '--quiet', 'origin', 'HEAD:refs/heads/main'], 300_000);
    await git(serverRepo, home, ['gc', '--quiet', '--aggressive']);
    const packs = readdirSync(path.join(serverRepo, 'objects', 'pack')).filter((f) => f.endsWith('.pack'));
    const packBytes = packs.reduce((n, f) => n + statSync(path.join(serverRepo, 'objects', 'pack', f)).size, 0);
    const namespaces = [...new Set(vms.map((v) => v.namespace))];
    repoInfo = `${opts.count} manifests in ${madeDirs.size} folders (${(bytes / 1024 / 1024).toFixed(1)} MiB), ${namespaces.length} namespaces; served pack ${(packBytes / 1024 / 1024).toFixed(1)} MiB`;
    log(repoInfo);
    const plain = path.join(work, 'plain');
    await git(work, home, ['clone', '--quiet', '--branch', 'main', url, plain], 300_000);

    // The VMs the changes touch: sockets 2 → 4 in running VMs, spread over the repository, a different one per change.
    const candidates = vms.filter((v) => v.sockets === 2 && renderManifest(v).includes('runStrategy: Always'));
    const targetCount = opts.changes * 3;
    const targets: GeneratedVm[] = [];
    for (let i = 0; i < targetCount; i++) {
      const vm = candidates[Math.floor(((i + 0.5) * candidates.length) / targetCount)];
      if (vm !== undefined) targets.push(vm);
    }
    let nextTarget = 0;
    const pushChange = async (): Promise<{ commit: string; vm: GeneratedVm }> => {
      const vm = targets[nextTarget++];
      if (vm === undefined) throw new Error('no VM left to change');
      writeFileSync(path.join(wc.dir, vm.file), renderManifest(vm, 4));
      await git(wc.dir, home, ['commit', '--quiet', '-am', `${vm.namespace}/${vm.name}: 4 sockets`]);
      await git(wc.dir, home, ['push', '--quiet', 'origin', 'HEAD:refs/heads/main']);
      return { commit: await git(wc.dir, home, ['rev-parse', 'HEAD']), vm };
    };

    // 2. The API server, as its own process, and the namespaces the manifests use.
    sim = await startSim(work, log);
    for (const ns of namespaces) await createNamespace(sim.url, ns);
    const simUrl = sim.url;

    // 3. vmroll: cold sync, then one sync per pushed one-file change, in a child process.
    const cacheDir = path.join(work, 'vmroll-cache');
    const childArgs = ['--expose-gc', '--import', 'tsx', SELF, '--child', '--url', url, '--kubeconfig', sim.kubeconfig, '--sim-url', simUrl, '--cache-dir', cacheDir, '--changes', String(opts.changes)];
    log(`vmroll: cold sync + ${opts.changes} incremental syncs (Reconciler + KubeCluster) in a child process`);
    const proc = spawn(process.execPath, childArgs, { cwd: ROOT, stdio: ['ignore', 'pipe', 'inherit', 'ipc'] });
    child = proc;
    let gitBefore = 0;
    const simCpu0 = processCpuMs(sim.proc.pid);
    const simPid = sim.proc.pid;
    let buffered = '';
    proc.stdout?.setEncoding('utf8');
    proc.stdout?.on('data', (chunk: string) => {
      buffered += chunk;
      let nl: number;
      while ((nl = buffered.indexOf('\n')) >= 0) {
        const line = buffered.slice(0, nl);
        buffered = buffered.slice(nl + 1);
        let r: ChildRecord;
        try {
          r = JSON.parse(line) as ChildRecord;
        } catch {
          process.stderr.write(`${line}\n`);
          continue;
        }
        records.push(r);
        if (r.type === 'cold') simCpuColdMs = processCpuMs(simPid) - simCpu0;
        if (r.type === 'cold') log(`vmroll cold sync: ${fmtMs(r.wallMs)}, ${r.summary}; server: ${fmtVerbs(r.stats)}; peak RSS ${fmtMiB(r.maxRssKiB)}`);
        if (r.type === 'incremental') {
          gitPerSync.push(server.requestCount - gitBefore);
          log(`vmroll incremental ${r.i}: ${fmtMs(r.wallMs)}; server: ${fmtVerbs(r.stats)}`);
        }
        if (r.type === 'error') log(`child error: ${r.message}`);
      }
    });
    proc.on('message', (m: ChildMessage) => {
      void (async () => {
        try {
          const { commit } = await pushChange();
          gitBefore = server.requestCount;
          proc.send({ type: 'pushed', i: m.i, commit } satisfies ParentMessage);
        } catch (e) {
          proc.send({ type: 'push-failed', i: m.i, message: e instanceof Error ? e.message : String(e) } satisfies ParentMessage);
        }
      })();
    });
    childExit = await new Promise<string>((resolve) => {
      proc.on('exit', (code, signal) => resolve(signal !== null ? `killed by ${signal}` : `exit ${code}`));
    });
    child = null;
    simMemAfterVmroll = processMemory(sim.proc.pid);
    log(`vmroll child: ${childExit}; vmroll sim RSS ${fmtMiB(simMemAfterVmroll?.rss)}, peak ${fmtMiB(simMemAfterVmroll?.hwm)}`);
    if (sim.proc.exitCode !== null || sim.proc.signalCode !== null) throw new Error(`vmroll sim exited (${sim.proc.exitCode ?? sim.proc.signalCode}): ${sim.stderr().slice(-2000)}`);

    // 4. The baseline on the same server and repository: git pull + kubectl apply, client-side then server-side.
    const { debianKubectl } = await import('../test/helpers/kubectl.ts');
    const kubectl = await debianKubectl();
    if (!kubectl.ok) {
      kubectlNote = `kubectl not measured: ${kubectl.reason}`;
      log(kubectlNote);
    } else {
      kubectlNote = `kubectl ${kubectl.version.replace(/^Client Version:\s*/, '')} (Debian kubernetes-client, ${path.relative(ROOT, kubectl.path)})`;
      const env = { ...gitEnv(home), KUBECONFIG: sim.kubeconfig };
      const kubeconfigFile = sim.kubeconfig;
      const runOnce = async (args: string[]): Promise<BaselineRun> => {
        const remaining = deadline - Date.now();
        if (remaining < 10_000) throw new Error('overall timeout reached');
        const limit = Math.min(opts.kubectlTimeoutMs, remaining);
        await resetStats(simUrl);
        const g0 = server.requestCount;
        const pull = await timed(plain, env, 'git', [...IDENTITY, 'pull', '--quiet', '--ff-only', 'origin', 'main'], Math.min(120_000, limit));
        const gitRequests = server.requestCount - g0;
        const apply = await timed(plain, env, kubectl.path, ['--kubeconfig', kubeconfigFile, 'apply', ...args, '-f', 'vms', '-R'], limit);
        const stats = await readStats(simUrl);
        return { pull, apply, stats, gitRequests, outcome: outcomes(apply.stdout) };
      };
      const approaches: Array<{ label: string; args: string[] }> = [
        { label: 'git pull + kubectl apply (client-side)', args: [] },
        { label: 'git pull + kubectl apply --server-side', args: ['--server-side', '--force-conflicts'] },
      ];
      for (const a of approaches) {
        const b: Baseline = { label: a.label, args: a.args, warmup: null, runs: [], error: null };
        baselines.push(b);
        try {
          log(`${a.label}: warm-up over all ${opts.count} objects`);
          b.warmup = await runOnce(a.args);
          log(`  warm-up: pull ${fmtMs(b.warmup.pull.ms)} + apply ${fmtMs(b.warmup.apply.ms)}; server: ${fmtVerbs(b.warmup.stats)}; ${fmtOutcome(b.warmup.outcome)}`);
          for (let i = 0; i < opts.changes; i++) {
            await pushChange();
            const r = await runOnce(a.args);
            b.runs.push(r);
            log(`  change ${i}: pull ${fmtMs(r.pull.ms)} + apply ${fmtMs(r.apply.ms)}; server: ${fmtVerbs(r.stats)}; ${fmtOutcome(r.outcome)}`);
          }
        } catch (e) {
          b.error = e instanceof Error ? e.message : String(e);
          log(`  ${a.label} failed: ${b.error}`);
        }
      }
    }
    simMemEnd = processMemory(sim.proc.pid);
  } catch (e) {
    notes.push(`bench failed: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}`);
  } finally {
    clearTimeout(overall);
    if (child !== null && child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    if (sim !== null && sim.proc.exitCode === null && sim.proc.signalCode === null) {
      const exited = new Promise<void>((resolve) => sim?.proc.once('exit', () => resolve()));
      sim.proc.kill('SIGTERM');
      await Promise.race([exited, new Promise((r) => setTimeout(r, 10_000))]);
      if (sim.proc.exitCode === null && sim.proc.signalCode === null) sim.proc.kill('SIGKILL');
      const warnings = sim.stderr().trim();
      if (warnings !== '') notes.push(`vmroll sim stderr (last lines): ${warnings.split('\n').slice(-5).join(' / ')}`);
    }
    await server.stop();
    if (!opts.keep) rmSync(work, { recursive: true, force: true });
  }

  // 5. The tables.
  const cold = records.find((r): r is Extract<ChildRecord, { type: 'cold' }> => r.type === 'cold');
  const incs = records.filter((r): r is Extract<ChildRecord, { type: 'incremental' }> => r.type === 'incremental');
  const end = records.find((r): r is Extract<ChildRecord, { type: 'end' }> => r.type === 'end');
  for (const r of records) if (r.type === 'error') notes.push(`child: ${r.message}`);
  if (incs.length < opts.changes) notes.push(`only ${incs.length} of ${opts.changes} vmroll incremental syncs completed`);
  const misses: string[] = [];
  const verdict = (ok: boolean, what: string): string => {
    if (!ok) misses.push(what);
    return ok ? 'PASS' : '**MISS**';
  };

  const out: string[] = [];
  out.push('');
  out.push(`## vmroll Kubernetes-backend benchmark — ${new Date().toISOString()}`);
  out.push('');
  out.push(
    `Machine: ${os.cpus().length} CPUs (${os.cpus()[0]?.model ?? '?'}), ${(os.totalmem() / 2 ** 30).toFixed(0)} GiB, Node ${process.version}; 1-min load average ${loadAtStart.toFixed(1)} at the start, ${(os.loadavg()[0] ?? NaN).toFixed(1)} at the end`,
  );
  out.push(`Repository: ${repoInfo}`);
  out.push('Servers: git-http-backend (CGI) on 127.0.0.1; `vmroll sim` (KubeVirt v1.9.0 fixture) as its own process on 127.0.0.1');
  out.push('vmroll: Reconciler + GitSource over http + KubeCluster (informers, server-side apply), pino silent, one child process');
  out.push(`Baseline: ${kubectlNote || 'not run'}; plain clone, \`git pull --ff-only\` then \`kubectl apply -f vms -R\``);
  out.push('Requests are counted by the API server (reset before each sync); watch requests are counted apart from reads.');
  out.push('');

  out.push('### vmroll cold sync (one run)');
  out.push('');
  if (cold !== undefined) {
    const t = cold.timings;
    out.push(
      table(
        ['', 'vmroll'],
        [
          ['whole reconcile (wall)', fmtMs(cold.wallMs)],
          ['  fetch / load / plan / apply (+settle) / report', [t.fetch, t.load, t.plan, t.apply + t.settle, t.report].map(fmtMs).join(' / ')],
          ['  observe (informers list + cluster cache start)', fmtMs(t.observe)],
          ['server requests', `${cold.stats.requests} (${fmtVerbs(cold.stats)}; discovery ${cold.stats.discovery})`],
          ['files read / writes / VMs', `${cold.read} / ${cold.writes} / ${cold.vms}`],
          ['CPU time: vmroll process / vmroll sim', `${fmtMs(cold.cpuMs)} / ${fmtMs(simCpuColdMs)}`],
          ['peak RSS, vmroll process', fmtMiB(cold.maxRssKiB)],
          ['RSS / heap used right after', `${fmtMiB(cold.rssAfterKiB)} / ${fmtMiB(cold.heapUsedAfterKiB)}`],
          ['vmroll sim RSS after the vmroll syncs (peak)', `${fmtMiB(simMemAfterVmroll?.rss)} (${fmtMiB(simMemAfterVmroll?.hwm)})`],
          ['result', cold.summary],
        ],
      ),
    );
    verdict(cold.writes === opts.count && cold.errors === 0, `cold sync wrote ${cold.writes} of ${opts.count} VMs with ${cold.errors} errors`);
  } else {
    out.push('not measured');
    misses.push('vmroll cold sync not measured');
  }
  out.push('');

  out.push(`### vmroll: one changed VM (sockets 2→4), ${incs.length} runs`);
  out.push('');
  if (incs.length > 0) {
    const getList = incs.map((r) => verb(r.stats, 'get') + verb(r.stats, 'list'));
    const serverWrites = incs.map((r) => r.stats.writes);
    const watches = incs.map((r) => verb(r.stats, 'watch'));
    const wall = incs.map((r) => r.wallMs);
    const col = (f: (r: (typeof incs)[number]) => number): string => `${fmtMs(median(incs.map(f)))} / ${fmtMs(max(incs.map(f)))}`;
    out.push(
      table(
        ['', 'median / max, or per run', 'required', 'result'],
        [
          ['whole reconcile (wall)', `${fmtMs(median(wall))} / ${fmtMs(max(wall))}`, '', ''],
          ['  fetch', col((r) => r.timings.fetch), '', ''],
          ['  diff', col((r) => r.timings.diff), '', ''],
          ['  load (changed file only)', col((r) => r.timings.load), '', ''],
          ['  plan', col((r) => r.timings.plan), '', ''],
          ['  apply (+ settle: the watch brings the write back)', col((r) => r.timings.apply + r.timings.settle), '', ''],
          ['  report', col((r) => r.timings.report), '', ''],
          ['server writes (each sync)', serverWrites.join(', '), 'exactly 1', verdict(serverWrites.every((n) => n === 1), 'vmroll: server writes exactly 1 per one-file sync')],
          ['server get + list (each sync)', getList.join(', '), '0', verdict(getList.every((n) => n === 0), 'vmroll: no get/list during a one-file sync')],
          ['server discovery (each sync)', incs.map((r) => r.stats.discovery).join(', '), '', ''],
          ['watch re-connects during the sync', watches.join(', '), '(not made by the sync)', ''],
          ['server requests, all (each sync)', incs.map((r) => r.stats.requests).join(', '), '', ''],
          ['writes in the report (each sync)', incs.map((r) => r.writes).join(', '), 'exactly 1', verdict(incs.every((r) => r.writes === 1), 'vmroll: report writes exactly 1')],
          ['files read (each sync)', incs.map((r) => r.read.length).join(', '), 'exactly 1', ''],
          ['git HTTP requests (each sync)', gitPerSync.join(', '), '', ''],
          ['synced the pushed commit', incs.map((r) => (r.commitMatches ? 'yes' : 'NO')).join(', '), 'yes', verdict(incs.every((r) => r.commitMatches), 'vmroll synced the pushed commit')],
          ['peak RSS during the sync', incs.every((r) => r.peakRssKiB !== null) ? `${fmtMiB(median(incs.map((r) => r.peakRssKiB ?? NaN)))} / ${fmtMiB(max(incs.map((r) => r.peakRssKiB ?? NaN)))}` : 'n/a', '', ''],
        ],
      ),
    );
    out.push('');
    out.push(`Client-side counts (KubeCluster.requests) per sync: ${incs.map((r) => `#${r.i} ${Object.entries(r.client).map(([k, n]) => `${k} ${n}`).join(', ') || 'none'}`).join('; ')}`);
    out.push('Changes applied: ' + incs.map((r) => `${r.changes.join(', ') || '(none)'} [${r.summary}]`).join('; '));
  } else {
    out.push('not measured');
    misses.push('vmroll incremental syncs not measured');
  }
  out.push('');

  out.push(`### One changed VM: vmroll vs git pull + kubectl apply (same server, same repository, same run; median of N)`);
  out.push('');
  const vmrollMs = median(incs.map((r) => r.wallMs));
  const vmrollReqs = median(incs.map((r) => r.stats.requests));
  const rows: string[][] = [];
  if (incs.length > 0) {
    rows.push([
      'vmroll incremental sync',
      String(incs.length),
      `${fmtMs(vmrollMs)} / ${fmtMs(max(incs.map((r) => r.wallMs)))}`,
      `${median(incs.map((r) => r.stats.reads - verb(r.stats, 'watch')))} / ${median(incs.map((r) => r.stats.writes))}`,
      String(median(incs.map((r) => r.stats.discovery))),
      String(vmrollReqs),
      String(median(gitPerSync)),
      incs.every((r) => r.peakRssKiB !== null) ? fmtMiB(median(incs.map((r) => r.peakRssKiB ?? NaN))) : 'n/a',
      '1×',
      '1×',
    ]);
  }
  const warmRows: string[][] = [];
  for (const b of baselines) {
    if (b.warmup !== null) {
      const w = b.warmup;
      warmRows.push([b.label, `${fmtMs(w.pull.ms)} + ${fmtMs(w.apply.ms)}`, `${w.stats.reads} / ${w.stats.writes}`, String(w.stats.discovery), fmtMiB(w.apply.rssKiB), fmtOutcome(w.outcome)]);
    }
    if (b.runs.length === 0) {
      rows.push([b.label, '0', b.error !== null ? `failed: ${b.error.slice(0, 200)}` : 'not measured', '', '', '', '', '', '', '']);
      continue;
    }
    const total = b.runs.map((r) => r.pull.ms + r.apply.ms);
    const reqs = median(b.runs.map((r) => r.stats.requests));
    rows.push([
      b.label,
      String(b.runs.length),
      `${fmtMs(median(total))} / ${fmtMs(max(total))} (pull ${fmtMs(median(b.runs.map((r) => r.pull.ms)))} + apply ${fmtMs(median(b.runs.map((r) => r.apply.ms)))})`,
      `${median(b.runs.map((r) => r.stats.reads - verb(r.stats, 'watch')))} / ${median(b.runs.map((r) => r.stats.writes))}`,
      String(median(b.runs.map((r) => r.stats.discovery))),
      String(reqs),
      String(median(b.runs.map((r) => r.gitRequests))),
      fmtMiB(max(b.runs.map((r) => r.apply.rssKiB))),
      ratio(median(total), vmrollMs),
      ratio(reqs, vmrollReqs),
    ]);
    if (b.error !== null) notes.push(`${b.label}: stopped after ${b.runs.length} runs: ${b.error}`);
  }
  out.push(table(['approach', 'N', 'time (median / max)', 'API reads / writes', 'discovery', 'API requests', 'git requests', 'peak RSS', 'time ÷ vmroll', 'requests ÷ vmroll'], rows));
  out.push('');
  if (baselines.length > 0) {
    out.push('Per run (pull + apply; kubectl output): ' + baselines.map((b) => `${b.label}: ${b.runs.map((r, i) => `#${i} ${fmtMs(r.pull.ms)} + ${fmtMs(r.apply.ms)} (${fmtOutcome(r.outcome)})`).join('; ')}`).join(' || '));
    out.push('');
    out.push('Warm-up runs (untimed in the comparison: the first client-side apply annotates every object with last-applied-configuration, the first server-side apply makes kubectl a field manager of every object):');
    out.push('');
    out.push(table(['approach', 'time (pull + apply)', 'API reads / writes', 'discovery', 'peak RSS', 'kubectl output'], warmRows));
    out.push('');
  } else if (kubectlNote !== '') {
    out.push(kubectlNote);
    out.push('');
  }
  if (end !== undefined) {
    out.push(`vmroll process peak RSS over the whole run: ${fmtMiB(end.maxRssKiB)}; requests KubeCluster made in all: ${Object.entries(end.client).map(([k, n]) => `${k} ${n}`).join(', ')}`);
    if (end.afterGc !== null) out.push(`vmroll process after the syncs and a full GC: RSS ${fmtMiB(end.afterGc.rssKiB)}, heap used ${fmtMiB(end.afterGc.heapUsedKiB)}, external ${fmtMiB(end.afterGc.externalKiB)}`);
    out.push(`Informer stores: ${end.stores.map((st) => `${st.objects} ${st.kind} (${fmtMiB(st.jsonKiB)} as JSON)`).join(', ')}`);
  }
  out.push(`vmroll sim RSS at the end: ${fmtMiB(simMemEnd?.rss)} (peak ${fmtMiB(simMemEnd?.hwm)})`);
  out.push(`vmroll child: ${childExit}${timedOut ? ` — OVERALL TIMEOUT (${opts.timeoutMs / 1000} s) REACHED` : ''}; bench wall ${fmtMs(performance.now() - started)}`);
  for (const n of notes) out.push(`NOTE: ${n}`);
  out.push('');
  if (misses.length > 0) {
    out.push('!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!');
    out.push(`!!! MISS: ${misses.length} requirement(s) missed:`);
    for (const m of misses) out.push(`!!!   - ${m}`);
    out.push('!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!');
  } else {
    out.push('All requirements met: one changed VM cost exactly one write and no reads in every vmroll sync.');
  }
  process.stdout.write(`${out.join('\n')}\n`);
}

// ---------------------------------------------------------------------------------------------

const { values } = parseArgs({
  options: {
    child: { type: 'boolean' },
    url: { type: 'string' },
    kubeconfig: { type: 'string' },
    'sim-url': { type: 'string' },
    'cache-dir': { type: 'string' },
    changes: { type: 'string' },
    count: { type: 'string' },
    'timeout-s': { type: 'string' },
    'kubectl-timeout-s': { type: 'string' },
    keep: { type: 'boolean' },
    'one-changed-vm': { type: 'boolean' },
    sizes: { type: 'string' },
    'steady-size': { type: 'string' },
    'explain-size': { type: 'string' },
    pushes: { type: 'string' },
    before: { type: 'string' },
    'skip-before': { type: 'boolean' },
    'skip-explain': { type: 'boolean' },
    'no-build': { type: 'boolean' },
    'row-timeout-s': { type: 'string' },
    'log-level': { type: 'string' },
  },
  strict: true,
});

if (values.child) {
  try {
    await runChild({
      url: values.url ?? '',
      kubeconfig: values.kubeconfig ?? '',
      simUrl: values['sim-url'] ?? '',
      cacheDir: values['cache-dir'] ?? '',
      changes: Number(values.changes ?? '5'),
    });
    process.exit(0);
  } catch (e) {
    process.stdout.write(`${JSON.stringify({ type: 'error', message: e instanceof Error ? (e.stack ?? e.message) : String(e) } satisfies ChildRecord)}\n`);
    process.exit(1);
  }
} else if (!values['one-changed-vm']) {
  await runRows(rowsOptions(values));
  process.exit(0);
} else {
  await runParent({
    count: Number(values.count ?? '10000'),
    changes: Number(values.changes ?? '5'),
    timeoutMs: Number(values['timeout-s'] ?? '3600') * 1000,
    kubectlTimeoutMs: Number(values['kubectl-timeout-s'] ?? '900') * 1000,
    keep: values.keep === true,
  });
  process.exit(0);
}
