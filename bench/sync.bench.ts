/**
 * The sync benchmark: a repository of 10,000 VM manifests served over smart HTTP by git-http-backend;
 * a cold sync and five one-file incremental syncs by a fresh Reconciler (GitSource + SimCluster), each
 * timed as a whole and per step with peak RSS, next to the git CLI doing the equivalent in the same run.
 *
 *   npm run bench                      # the table
 *   npm run bench -- --cpu-prof        # also V8 CPU profiles of the cold and the incremental syncs
 *   npm run bench -- --count 2000      # a smaller repository
 *
 * The Reconciler runs in a child process (`--child`), so its peak RSS is its own; the parent makes the
 * repository, serves it, pushes the changes on the child's request and prints the table. A bench, not a
 * test: it exits 0 whatever it measures, and prints MISS loudly.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { formatProfileSummary, summarizeProfiles } from './profile.ts';
import { type GeneratedVm, planRepository, renderManifest } from './manifests.ts';

const SELF = fileURLToPath(import.meta.url);
const ROOT = path.resolve(path.dirname(SELF), '..');

const TARGETS = {
  incrementalMs: 500,
  coldMs: 20_000,
  coldRssMiB: 400,
};

/** Timings of one reconcile, as ReconcileReport.timings (ms). */
interface Timings {
  fetch: number;
  diff: number;
  load: number;
  plan: number;
  apply: number;
  report: number;
  total: number;
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
      maxRssKiB: number;
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
      /** VmHWM after resetting it just before the reconcile (null when /proc/self/clear_refs is refused). */
      peakRssKiB: number | null;
      changes: string[];
    }
  | { type: 'end'; maxRssKiB: number; profiles: string[] }
  | { type: 'error'; message: string };

/** Parent → child messages over IPC. */
type ParentMessage = { type: 'pushed'; i: number; commit: string; file: string } | { type: 'push-failed'; i: number; message: string };
/** Child → parent messages over IPC. */
type ChildMessage = { type: 'push'; i: number };

// ---------------------------------------------------------------------------------------------
// Child: the Reconciler.
// ---------------------------------------------------------------------------------------------

const KUBEVIRT_V190 = {
  apiVersion: 'kubevirt.io/v1',
  kind: 'KubeVirt',
  metadata: { name: 'kubevirt', namespace: 'kubevirt' },
  spec: { configuration: { developerConfiguration: { featureGates: [] } } },
  status: { observedKubeVirtVersion: 'v1.9.0', phase: 'Deployed' },
};

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

async function runChild(args: { url: string; cacheDir: string; changes: number; profileDir: string | null }): Promise<void> {
  const emit = (r: ChildRecord): void => {
    process.stdout.write(`${JSON.stringify(r)}\n`);
  };
  const { GitSource } = await import('../reconciler/source/gitSource.ts');
  const { SimCluster } = await import('../reconciler/cluster/sim/simCluster.ts');
  const { Reconciler } = await import('../reconciler/controller/reconcile.ts');
  const { makeLogger } = await import('../reconciler/logging.ts');
  const { redactUrl } = await import('../reconciler/source/errors.ts');

  type Inspector = typeof import('node:inspector/promises');
  let session: InstanceType<Inspector['Session']> | null = null;
  const profiles: string[] = [];
  if (args.profileDir !== null) {
    const inspector: Inspector = await import('node:inspector/promises');
    session = new inspector.Session();
    session.connect();
    await session.post('Profiler.enable');
    await session.post('Profiler.setSamplingInterval', { interval: 500 });
  }
  const profiled = async <T>(name: string, fn: () => Promise<T>): Promise<T> => {
    if (session === null || args.profileDir === null) return fn();
    await session.post('Profiler.start');
    try {
      return await fn();
    } finally {
      const { profile } = await session.post('Profiler.stop');
      const file = path.join(args.profileDir, `${name}.cpuprofile`);
      writeFileSync(file, JSON.stringify(profile));
      profiles.push(file);
    }
  };

  const pending = new Map<number, (m: ParentMessage) => void>();
  process.on('message', (m: ParentMessage) => pending.get(m.i)?.(m));
  const requestPush = (i: number): Promise<ParentMessage> =>
    new Promise((resolve) => {
      pending.set(i, resolve);
      process.send?.({ type: 'push', i } satisfies ChildMessage);
    });

  const source = new GitSource({ repo: args.url, cacheDir: args.cacheDir });
  const cluster = new SimCluster({ kubevirt: structuredClone(KUBEVIRT_V190) });
  const reconciler = new Reconciler({
    source,
    repoLabel: redactUrl(args.url),
    ref: 'main',
    path: '',
    cluster,
    prune: false,
    logger: makeLogger('silent', []),
  });

  // Cold sync.
  let t0 = performance.now();
  const cold = await profiled('cold', () => reconciler.reconcile());
  const coldWall = performance.now() - t0;
  const mem = process.memoryUsage();
  emit({
    type: 'cold',
    wallMs: coldWall,
    timings: cold.timings,
    read: cold.read.length,
    writes: cold.writes,
    vms: cold.summary.vms,
    errors: cold.plan.errors.length,
    summary: `${cold.summary.created} created, ${cold.summary.inSync} in sync, ${cold.summary.errors} errors`,
    maxRssKiB: process.resourceUsage().maxRSS,
    rssAfterKiB: Math.round(mem.rss / 1024),
    heapUsedAfterKiB: Math.round(mem.heapUsed / 1024),
  });

  // Incremental syncs: one pushed one-file change each.
  for (let i = 0; i < args.changes; i++) {
    const pushed = await requestPush(i);
    if (pushed.type !== 'pushed') {
      emit({ type: 'error', message: `push ${i} failed: ${pushed.type === 'push-failed' ? pushed.message : ''}` });
      break;
    }
    const canReset = resetPeakRss();
    t0 = performance.now();
    const r = await profiled(`incremental-${i}`, () => reconciler.reconcile());
    const wall = performance.now() - t0;
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
      peakRssKiB: canReset ? peakRss() : null,
      changes: changed.flatMap((v) => v.changes.map((c) => `${v.namespace}/${v.name} ${c.path} ${JSON.stringify(c.from)}→${JSON.stringify(c.to)} (${c.rollout})`)),
    });
  }
  reconciler.close();
  if (session !== null) session.disconnect();
  emit({ type: 'end', maxRssKiB: process.resourceUsage().maxRSS, profiles });
}

// ---------------------------------------------------------------------------------------------
// Parent: repository, server, git CLI, table.
// ---------------------------------------------------------------------------------------------

interface Measured {
  ms: number;
  /** Peak RSS of the largest process, KiB (GNU time %M). */
  rssKiB: number;
  stdout: string;
}

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

/** Runs a shell command under GNU time: wall time (ms, measured here) and peak RSS of the largest process. */
function timed(cwd: string, home: string, script: string, timeoutMs = 120_000): Promise<Measured> {
  const out = path.join(home, `time-${process.hrtime.bigint()}.txt`);
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    execFile(
      '/usr/bin/time',
      ['-o', out, '-f', '%M', 'sh', '-c', script],
      { cwd, env: gitEnv(home), timeout: timeoutMs, maxBuffer: 64 * 1024 * 1024 },
      (err, stdout, stderr) => {
        const ms = performance.now() - t0;
        if (err) {
          reject(new Error(`${script}: ${err.message} ${stderr}`));
          return;
        }
        const rssKiB = Number(readFileSync(out, 'utf8').trim().split('\n').pop());
        rmSync(out, { force: true });
        resolve({ ms, rssKiB, stdout: stdout.trim() });
      },
    );
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
const fmtMiB = (kib: number | null): string => (kib === null || Number.isNaN(kib) ? 'n/a' : `${(kib / 1024).toFixed(0)} MiB`);
const ratio = (a: number, b: number): string => (Number.isNaN(a) || Number.isNaN(b) || b <= 0 ? '' : `${(a / b).toFixed(a / b >= 100 ? 0 : 1)}×`);

function pad(cells: string[], widths: number[]): string {
  return `| ${cells.map((c, i) => c.padEnd(widths[i] ?? 0)).join(' | ')} |`;
}

function table(header: string[], rows: string[][]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  return [pad(header, widths), `|${widths.map((w) => '-'.repeat(w + 2)).join('|')}|`, ...rows.map((r) => pad(r, widths))].join('\n');
}

async function runParent(opts: { count: number; changes: number; timeoutMs: number; cpuProf: boolean; keep: boolean }): Promise<void> {
  const started = performance.now();
  const log = (msg: string): void => {
    process.stderr.write(`[bench ${((performance.now() - started) / 1000).toFixed(1).padStart(6)} s] ${msg}\n`);
  };
  const { startGitServer } = await import('../test/helpers/gitServer.ts');
  const work = mkdtempSync(path.join(tmpdir(), 'vmroll-bench-'));
  const home = path.join(work, 'home');
  mkdirSync(home);
  const server = await startGitServer({ requestTimeoutMs: 180_000 });
  let child: ChildProcess | null = null;
  let timedOut = false;
  const overall = setTimeout(() => {
    timedOut = true;
    log(`overall timeout of ${opts.timeoutMs / 1000} s reached: killing the child`);
    if (child !== null && child.exitCode === null) child.kill('SIGKILL');
  }, opts.timeoutMs);
  overall.unref();

  const records: ChildRecord[] = [];
  const cliCold: { clone: Measured; catFile: Measured }[] = [];
  const cliIncremental: { fetch: Measured; diff: Measured; files: string }[] = [];
  let repoInfo = '';
  let childExit = '';
  const notes: string[] = [];

  try {
    // 1. The repository.
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
    writeFileSync(path.join(wc.dir, 'README.md'), '# Fleet\n\nVirtualMachines of every team, one file each, applied by vmroll.\n');
    await git(wc.dir, home, ['add', '--all']);
    await git(wc.dir, home, ['commit', '--quiet', '-m', `fleet: ${opts.count} VirtualMachines`]);
    await git(wc.dir, home, ['gc', '--quiet']);
    log('pushing to the bare repository over http');
    await git(wc.dir, home, ['push', '--quiet', 'origin', 'HEAD:refs/heads/main'], 300_000);
    await git(serverRepo, home, ['gc', '--quiet', '--aggressive']);
    const packs = readdirSync(path.join(serverRepo, 'objects', 'pack')).filter((f) => f.endsWith('.pack'));
    const packBytes = packs.reduce((n, f) => n + statSync(path.join(serverRepo, 'objects', 'pack', f)).size, 0);
    // Warm the page cache so neither side pays for the first read of the pack.
    for (const f of packs) readFileSync(path.join(serverRepo, 'objects', 'pack', f));
    repoInfo = `${opts.count} manifests in ${madeDirs.size} folders, ${(bytes / opts.count / 1024).toFixed(2)} KiB each on average (${(bytes / 1024 / 1024).toFixed(1)} MiB), ${new Set(vms.map((v) => v.namespace)).size} namespaces; served pack ${(packBytes / 1024 / 1024).toFixed(1)} MiB in ${packs.length} pack(s)`;
    log(repoInfo);

    // The VMs the incremental syncs change: sockets 2 → 4 in running VMs, spread over the repository.
    const candidates = vms.filter((v) => v.sockets === 2 && renderManifest(v).includes('runStrategy: Always'));
    const targets: GeneratedVm[] = [];
    for (let i = 0; i < opts.changes; i++) {
      const vm = candidates[Math.floor(((i + 0.5) * candidates.length) / opts.changes)];
      if (vm !== undefined) targets.push(vm);
    }

    // 2. git CLI, cold: clone without checkout, then read every blob at HEAD. Three runs, median.
    log('git CLI cold: clone --no-checkout + cat-file of every blob (3 runs)');
    for (let run = 0; run < 3; run++) {
      const dir = path.join(work, `cli-cold-${run}`);
      const clone = await timed(work, home, `git clone --quiet --no-checkout '${url}' '${dir}'`);
      const catFile = await timed(dir, home, `git ls-tree -r --object-only HEAD | git cat-file --batch | wc -c`);
      cliCold.push({ clone, catFile });
      if (run > 0) rmSync(dir, { recursive: true, force: true });
    }
    const cliDir = path.join(work, 'cli-cold-0');

    // 3. The child: cold sync, then one incremental sync per pushed change.
    const cacheDir = path.join(work, 'vmroll-cache');
    const profileDir = opts.cpuProf ? path.join(ROOT, 'bench', 'profiles', new Date().toISOString().replace(/[:.]/g, '-')) : null;
    if (profileDir !== null) mkdirSync(profileDir, { recursive: true });
    const childArgs = ['--import', 'tsx', SELF, '--child', '--url', url, '--cache-dir', cacheDir, '--changes', String(targets.length)];
    if (profileDir !== null) childArgs.push('--profile-dir', profileDir);
    log(`vmroll: cold sync + ${targets.length} incremental syncs in a child process${profileDir !== null ? ' (profiling: timings include profiler overhead)' : ''}`);
    if (timedOut) throw new Error('overall timeout reached before the child started');
    const proc = spawn(process.execPath, childArgs, { cwd: ROOT, stdio: ['ignore', 'pipe', 'inherit', 'ipc'] });
    child = proc;
    let lastCommit = await git(wc.dir, home, ['rev-parse', 'HEAD']);
    let buffered = '';
    proc.stdout?.setEncoding('utf8');
    proc.stdout?.on('data', (chunk: string) => {
      buffered += chunk;
      let nl: number;
      while ((nl = buffered.indexOf('\n')) >= 0) {
        const line = buffered.slice(0, nl);
        buffered = buffered.slice(nl + 1);
        try {
          const r = JSON.parse(line) as ChildRecord;
          records.push(r);
          if (r.type === 'cold') log(`vmroll cold sync: ${fmtMs(r.wallMs)}, peak RSS ${fmtMiB(r.maxRssKiB)}`);
          if (r.type === 'incremental') log(`vmroll incremental ${r.i}: ${fmtMs(r.wallMs)}, read ${r.read.length}, writes ${r.writes}`);
          if (r.type === 'error') log(`child error: ${r.message}`);
        } catch {
          process.stderr.write(`${line}\n`);
        }
      }
    });
    // Pushes happen here, on the child's request, while it waits; then the git CLI fetches the same commit.
    proc.on('message', (m: ChildMessage) => {
      void (async () => {
        const vm = targets[m.i];
        try {
          if (vm === undefined) throw new Error(`no change ${m.i}`);
          writeFileSync(path.join(wc.dir, vm.file), renderManifest(vm, 4));
          await git(wc.dir, home, ['commit', '--quiet', '-am', `${vm.namespace}/${vm.name}: 4 sockets`]);
          await git(wc.dir, home, ['push', '--quiet', 'origin', 'HEAD:refs/heads/main']);
          const commit = await git(wc.dir, home, ['rev-parse', 'HEAD']);
          const fetch = await timed(cliDir, home, 'git fetch --quiet origin');
          const diff = await timed(cliDir, home, `git diff --name-only ${lastCommit} ${commit}`);
          cliIncremental.push({ fetch, diff, files: diff.stdout });
          lastCommit = commit;
          proc.send({ type: 'pushed', i: m.i, commit, file: vm.file } satisfies ParentMessage);
        } catch (e) {
          proc.send({ type: 'push-failed', i: m.i, message: e instanceof Error ? e.message : String(e) } satisfies ParentMessage);
        }
      })();
    });
    childExit = await new Promise<string>((resolve) => {
      proc.on('exit', (code, signal) => resolve(signal !== null ? `killed by ${signal}` : `exit ${code}`));
    });
  } catch (e) {
    notes.push(`bench failed: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}`);
  } finally {
    clearTimeout(overall);
    if (child !== null && child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    await server.stop();
    if (!opts.keep) rmSync(work, { recursive: true, force: true });
  }

  // 4. The table.
  const cold = records.find((r): r is Extract<ChildRecord, { type: 'cold' }> => r.type === 'cold');
  const incs = records.filter((r): r is Extract<ChildRecord, { type: 'incremental' }> => r.type === 'incremental');
  const end = records.find((r): r is Extract<ChildRecord, { type: 'end' }> => r.type === 'end');
  for (const r of records) if (r.type === 'error') notes.push(`child: ${r.message}`);
  const misses: string[] = [];
  const verdict = (ok: boolean | null, what: string): string => {
    if (ok === null) {
      misses.push(`${what}: not measured`);
      return 'MISS (not measured)';
    }
    if (!ok) misses.push(what);
    return ok ? 'PASS' : '**MISS**';
  };

  const cliCloneMs = median(cliCold.map((c) => c.clone.ms));
  const cliCatMs = median(cliCold.map((c) => c.catFile.ms));
  const cliColdMs = median(cliCold.map((c) => c.clone.ms + c.catFile.ms));
  const cliColdRss = max(cliCold.map((c) => Math.max(c.clone.rssKiB, c.catFile.rssKiB)));
  const cliFetch = cliIncremental.map((c) => c.fetch.ms);
  const cliDiff = cliIncremental.map((c) => c.diff.ms);
  const cliInc = cliIncremental.map((c) => c.fetch.ms + c.diff.ms);
  const cliIncRss = max(cliIncremental.map((c) => Math.max(c.fetch.rssKiB, c.diff.rssKiB)));

  const coldRows: string[][] = [];
  if (cold !== undefined) {
    const t = cold.timings;
    coldRows.push(
      ['cold sync, whole (reconcile wall)', fmtMs(cold.wallMs), fmtMs(cliColdMs), ratio(cold.wallMs, cliColdMs), `≤ ${TARGETS.coldMs / 1000} s`, verdict(cold.wallMs <= TARGETS.coldMs, 'cold sync time')],
      ['cold sync, peak RSS', fmtMiB(cold.maxRssKiB), fmtMiB(cliColdRss), ratio(cold.maxRssKiB, cliColdRss), `≤ ${TARGETS.coldRssMiB} MB`, verdict(cold.maxRssKiB * 1024 <= TARGETS.coldRssMiB * 1e6, 'cold sync peak RSS')],
      ['  fetch (clone, no checkout)', fmtMs(t.fetch), fmtMs(cliCloneMs), ratio(t.fetch, cliCloneMs), '', ''],
      ['  load (read + parse + validate all)', fmtMs(t.load), `${fmtMs(cliCatMs)} (cat-file)`, ratio(t.load, cliCatMs), '', ''],
      ['  plan', fmtMs(t.plan), '', '', '', ''],
      ['  apply (sim)', fmtMs(t.apply), '', '', '', ''],
      ['  report', fmtMs(t.report), '', '', '', ''],
      ['  untimed (cluster cache start)', fmtMs(t.total - t.fetch - t.diff - t.load - t.plan - t.apply - t.report), '', '', '', ''],
      ['  files read / writes / VMs', `${cold.read} / ${cold.writes} / ${cold.vms}`, '', '', `${opts.count} / ${opts.count}`, verdict(cold.read === opts.count && cold.writes === opts.count, 'cold read/writes count')],
    );
  } else {
    coldRows.push(['cold sync', 'not measured', fmtMs(cliColdMs), '', `≤ ${TARGETS.coldMs / 1000} s`, verdict(null, 'cold sync')]);
  }

  const incRows: string[][] = [];
  if (incs.length > 0) {
    const col = (f: (r: (typeof incs)[number]) => number): number[] => incs.map(f);
    const fetchToApplied = col((r) => r.timings.total - r.timings.report);
    const wall = col((r) => r.wallMs);
    const row = (label: string, xs: number[], cli?: number[], target?: string, ok?: boolean, what?: string): string[] => [
      label,
      `${fmtMs(median(xs))} / ${fmtMs(max(xs))}`,
      cli !== undefined ? `${fmtMs(median(cli))} / ${fmtMs(max(cli))}` : '',
      cli !== undefined ? ratio(median(xs), median(cli)) : '',
      target ?? '',
      ok === undefined ? '' : verdict(ok, what ?? label),
    ];
    const reads = incs.map((r) => r.read.length);
    const writes = incs.map((r) => r.writes);
    const peaks = incs.map((r) => r.peakRssKiB);
    incRows.push(
      row('incremental, fetch → applied', fetchToApplied, cliInc, `≤ ${TARGETS.incrementalMs / 1000} s`, max(fetchToApplied) <= TARGETS.incrementalMs, 'incremental fetch→applied (max)'),
      row('incremental, whole reconcile wall (incl. report)', wall, cliInc, `≤ ${TARGETS.incrementalMs / 1000} s`, max(wall) <= TARGETS.incrementalMs, 'incremental whole reconcile incl. report (max)'),
      row('  fetch', col((r) => r.timings.fetch), cliFetch),
      row('  diff', col((r) => r.timings.diff), cliDiff),
      row('  load (changed files only)', col((r) => r.timings.load)),
      row('  plan', col((r) => r.timings.plan)),
      row('  apply (sim)', col((r) => r.timings.apply)),
      row('  report', col((r) => r.timings.report)),
      [
        '  peak RSS during the sync',
        peaks.every((p) => p !== null) ? `${fmtMiB(median(peaks as number[]))} / ${fmtMiB(max(peaks as number[]))}` : 'n/a',
        fmtMiB(cliIncRss),
        '',
        '',
        '',
      ],
      ['  files read (each sync)', reads.join(', '), cliIncremental.map((c) => c.files.split('\n').filter(Boolean).length).join(', '), '', 'exactly 1', verdict(reads.every((n) => n === 1), 'incremental reads exactly 1 file')],
      ['  writes (each sync)', writes.join(', '), '', '', 'exactly 1', verdict(writes.every((n) => n === 1), 'incremental writes exactly 1')],
      ['  synced the pushed commit', incs.map((r) => (r.commitMatches ? 'yes' : 'NO')).join(', '), '', '', 'yes', verdict(incs.every((r) => r.commitMatches), 'incremental synced the pushed commit')],
    );
    if (incs.length < opts.changes) notes.push(`only ${incs.length} of ${opts.changes} incremental syncs completed`);
  } else {
    incRows.push(['incremental sync', 'not measured', '', '', `≤ ${TARGETS.incrementalMs / 1000} s`, verdict(null, 'incremental sync')]);
  }

  const out: string[] = [];
  out.push('');
  out.push(`## vmroll sync benchmark — ${new Date().toISOString()}`);
  out.push('');
  out.push(`Machine: ${(await import('node:os')).cpus().length} CPUs (${(await import('node:os')).cpus()[0]?.model ?? '?'}), Node ${process.version}, git ${(await git(ROOT, home, ['--version']).catch(() => '?')).replace('git version ', '')}`);
  out.push(`Repository: ${repoInfo}`);
  out.push('Server: git-http-backend (CGI) on 127.0.0.1 (test/helpers/gitServer.ts); vmroll: GitSource over http + SimCluster (KubeVirt v1.9.0), pino silent, one child process');
  out.push(`git CLI cold: git clone --no-checkout + ls-tree -r | cat-file --batch (median of ${cliCold.length}); incremental: git fetch + git diff --name-only (same commits, same run)`);
  out.push('');
  out.push('### Cold sync (one run)');
  out.push('');
  out.push(table(['', 'vmroll', 'git CLI', 'vmroll / git', 'target', 'result'], coldRows));
  out.push('');
  out.push(`### Incremental sync: one-file change (sockets 2→4), ${incs.length} runs, median / max`);
  out.push('');
  out.push(table(['', 'vmroll (median / max)', 'git CLI (median / max)', 'vmroll / git', 'target', 'result'], incRows));
  out.push('');
  if (incs.length > 0) {
    out.push('Per run (ms): ' + incs.map((r) => `#${r.i} fetch ${r.timings.fetch.toFixed(0)} diff ${r.timings.diff.toFixed(0)} load ${r.timings.load.toFixed(0)} plan ${r.timings.plan.toFixed(0)} apply ${r.timings.apply.toFixed(0)} report ${r.timings.report.toFixed(0)} = ${r.timings.total.toFixed(0)}`).join('; '));
    out.push('Changes applied: ' + incs.map((r) => `${r.changes.join(', ') || '(none)'} [${r.summary}]`).join('; '));
  }
  if (cold !== undefined) out.push(`Cold: ${cold.summary}; ${cold.errors} manifest errors; RSS after ${fmtMiB(cold.rssAfterKiB)}, heap used after ${fmtMiB(cold.heapUsedAfterKiB)}`);
  if (end !== undefined) out.push(`Child peak RSS over the whole run: ${fmtMiB(end.maxRssKiB)}`);
  out.push(`Child: ${childExit}${timedOut ? ` — OVERALL TIMEOUT (${opts.timeoutMs / 1000} s) REACHED` : ''}; bench wall ${fmtMs(performance.now() - started)}`);
  for (const n of notes) out.push(`NOTE: ${n}`);
  out.push('');
  if (misses.length > 0) {
    out.push('!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!');
    out.push(`!!! MISS: ${misses.length} target(s) missed:`);
    for (const m of misses) out.push(`!!!   - ${m}`);
    out.push('!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!');
  } else {
    out.push('All targets met.');
  }
  if (end !== undefined && end.profiles.length > 0) {
    out.push('');
    out.push('### CPU profiles (self time; profiler on, so timings above include its overhead)');
    const coldProfiles = end.profiles.filter((f) => path.basename(f).startsWith('cold'));
    const incProfiles = end.profiles.filter((f) => path.basename(f).startsWith('incremental'));
    if (coldProfiles.length > 0) out.push('', formatProfileSummary('cold sync', summarizeProfiles(coldProfiles)));
    if (incProfiles.length > 0) out.push('', formatProfileSummary(`incremental syncs (${incProfiles.length}, summed)`, summarizeProfiles(incProfiles)));
    out.push('', `Profiles: ${path.dirname(end.profiles[0] as string)}`);
  }
  process.stdout.write(`${out.join('\n')}\n`);
}

// ---------------------------------------------------------------------------------------------

const { values } = parseArgs({
  options: {
    child: { type: 'boolean' },
    url: { type: 'string' },
    'cache-dir': { type: 'string' },
    changes: { type: 'string' },
    'profile-dir': { type: 'string' },
    count: { type: 'string' },
    'timeout-s': { type: 'string' },
    'cpu-prof': { type: 'boolean' },
    keep: { type: 'boolean' },
  },
  strict: true,
});

if (values.child) {
  try {
    await runChild({
      url: values.url ?? '',
      cacheDir: values['cache-dir'] ?? '',
      changes: Number(values.changes ?? '5'),
      profileDir: values['profile-dir'] ?? null,
    });
    process.exit(0);
  } catch (e) {
    process.stdout.write(`${JSON.stringify({ type: 'error', message: e instanceof Error ? (e.stack ?? e.message) : String(e) } satisfies ChildRecord)}\n`);
    process.exit(1);
  }
} else {
  await runParent({
    count: Number(values.count ?? '10000'),
    changes: Number(values.changes ?? '5'),
    timeoutMs: Number(values['timeout-s'] ?? '600') * 1000,
    cpuProf: values['cpu-prof'] === true,
    keep: values.keep === true,
  });
  process.exit(0);
}
