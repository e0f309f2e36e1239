/**
 * The parse cache (reconciler/source/manifestCache.ts) on a restart, side by side in one run: a
 * repository of 10,000 VM manifests served by git-http-backend, cloned once into a cache folder; a
 * push changes one file; then fresh processes (what a restart or a new leader is) alternate between
 * the load step without the cache (every blob read and parsed) and with it (the cache read, one file
 * parsed), exactly as the Reconciler's first load runs them. Per process: wall and CPU of the load
 * step, peak RSS during it (VmHWM reset just before) and of the whole process; both must give the same
 * ManifestSet (a digest is compared; MISS when not). Also the cache's size, the cost of writing it, and
 * JSON against v8.serialize for the same outcomes.
 *
 *   npx tsx bench/parseCache.bench.ts                 # 10,000 manifests, 3 rounds
 *   npx tsx bench/parseCache.bench.ts --count 2000 --rounds 2
 *
 * A bench, not a test: it exits 0 whatever it measures.
 */
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import v8 from 'node:v8';
import { gzipSync } from 'node:zlib';
import { GitSource } from '../reconciler/source/gitSource.ts';
import { ManifestCache } from '../reconciler/source/manifestCache.ts';
import { loadManifests, manifestLimits } from '../reconciler/source/manifests.ts';
import { validateVirtualMachine } from '../reconciler/validate.ts';
import { planRepository, renderManifest } from './manifests.ts';

const SELF = fileURLToPath(import.meta.url);
const ROOT = path.resolve(path.dirname(SELF), '..');

const { values: opts } = parseArgs({
  options: {
    count: { type: 'string', default: '10000' },
    rounds: { type: 'string', default: '3' },
    child: { type: 'string' },
    url: { type: 'string' },
    'cache-dir': { type: 'string' },
  },
  strict: true,
});

/** What a child prints (one JSON line). */
interface ChildResult {
  mode: 'prime' | 'none' | 'cache';
  commit: string;
  /** The load step: the cache read (when used) and loadManifests. */
  loadWallMs: number;
  loadCpuMs: number;
  /** Of that, reading the cache file. */
  cacheReadMs: number;
  /** VmHWM after resetting it just before the load step, KiB (null when /proc refuses). */
  loadPeakRssKiB: number | null;
  /** RSS just before the load step, KiB. */
  rssBeforeKiB: number;
  processMaxRssKiB: number;
  parsed: number;
  fromCache: number;
  vms: number;
  /** sha256 of the ManifestSet without read/cached: equal in both modes or the cache is wrong. */
  digest: string;
  /** Writing the cache of this load (to a scratch file, so the next round starts from the same cache). */
  write?: { wallMs: number; cpuMs: number; bytes: number; entries: number };
  /** JSON (as the cache stores it) against v8.serialize for the same outcomes: prime only. */
  formats?: { json: { bytes: number; gzBytes: number; serializeMs: number; parseMs: number }; v8: { bytes: number; gzBytes: number; serializeMs: number; parseMs: number } };
}

function peakRss(): number | null {
  try {
    const m = /^VmHWM:\s+(\d+)\s+kB$/m.exec(readFileSync('/proc/self/status', 'utf8'));
    return m?.[1] !== undefined ? Number(m[1]) : null;
  } catch {
    return null;
  }
}

function resetPeakRss(): boolean {
  try {
    writeFileSync('/proc/self/clear_refs', '5');
    return true;
  } catch {
    return false;
  }
}

const cpuMs = (c: NodeJS.CpuUsage): number => (c.user + c.system) / 1000;

async function runChild(mode: ChildResult['mode'], url: string, cacheDir: string): Promise<void> {
  const source = new GitSource({ repo: url, cacheDir });
  const { commit } = await source.sync({ ref: 'main' });
  // Warm what both modes pay for before the load alike (the validators compile on first use).
  validateVirtualMachine({});
  const cache = ManifestCache.forClone(source.cloneFolder, 'vms') as ManifestCache;
  global.gc?.();
  const rssBeforeKiB = Math.round(process.memoryUsage().rss / 1024);
  const canReset = resetPeakRss();
  const c0 = process.cpuUsage();
  const t0 = performance.now();
  let cacheReadMs = 0;
  let cached = null;
  if (mode === 'cache') {
    cached = await cache.read({ path: 'vms', limits: manifestLimits({}) });
    cacheReadMs = performance.now() - t0;
  }
  const set = await loadManifests({ source, commit, path: 'vms', ...(cached ? { cached } : {}) });
  const loadWallMs = performance.now() - t0;
  const loadCpuMs = cpuMs(process.cpuUsage(c0));
  const loadPeakRssKiB = canReset ? peakRss() : null;
  const { read, cached: fromCache, ...content } = set;
  const digest = createHash('sha256')
    .update(JSON.stringify({ ...content, files: [...content.files.values()].sort((a, b) => (a.file < b.file ? -1 : 1)) }))
    .digest('hex')
    .slice(0, 16);
  const out: ChildResult = { mode, commit, loadWallMs, loadCpuMs, cacheReadMs, loadPeakRssKiB, rssBeforeKiB, processMaxRssKiB: 0, parsed: read.length, fromCache: fromCache.length, vms: set.vms.length, digest };
  if (mode === 'prime') {
    await cache.write(set);
  } else {
    const scratch = new ManifestCache(path.join(cacheDir, `scratch-${process.pid}.json.gz`));
    const w0 = process.cpuUsage();
    const t1 = performance.now();
    const written = await scratch.write(set);
    out.write = { wallMs: performance.now() - t1, cpuMs: cpuMs(process.cpuUsage(w0)), bytes: written?.bytes ?? -1, entries: written?.entries ?? -1 };
    rmSync(scratch.file, { force: true });
  }
  if (mode === 'prime') {
    const entries = [...set.files.values()];
    const time = <T>(fn: () => T): [T, number] => {
      const t = performance.now();
      const r = fn();
      return [r, performance.now() - t];
    };
    // Three rounds, alternating, medians: one process, the same outcomes.
    const rounds: number[][] = [];
    let json = Buffer.alloc(0);
    let bin = Buffer.alloc(0);
    for (let r = 0; r < 3; r++) {
      const [j, jsonSer] = time(() => Buffer.from(JSON.stringify(entries)));
      const [, jsonParse] = time(() => JSON.parse(j.toString('utf8')) as unknown);
      const [b, v8Ser] = time(() => v8.serialize(entries));
      const [, v8Parse] = time(() => v8.deserialize(b) as unknown);
      [json, bin] = [j, b];
      rounds.push([jsonSer, jsonParse, v8Ser, v8Parse]);
    }
    const med = (i: number): number => median(rounds.map((r) => r[i] as number));
    out.formats = {
      json: { bytes: json.byteLength, gzBytes: gzipSync(json, { level: 1 }).byteLength, serializeMs: med(0), parseMs: med(1) },
      v8: { bytes: bin.byteLength, gzBytes: gzipSync(bin, { level: 1 }).byteLength, serializeMs: med(2), parseMs: med(3) },
    };
  }
  out.processMaxRssKiB = process.resourceUsage().maxRSS;
  process.stdout.write(`${JSON.stringify(out)}\n`);
}

function git(cwd: string, home: string, args: string[], timeoutMs = 300_000): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(
      'git',
      ['-c', 'user.name=bench', '-c', 'user.email=bench@vmroll.invalid', '-c', 'commit.gpgsign=false', ...args],
      { cwd, timeout: timeoutMs, maxBuffer: 64 * 1024 * 1024, env: { ...process.env, HOME: home, GIT_TERMINAL_PROMPT: '0', GIT_CONFIG_NOSYSTEM: '1' } },
      (err, stdout, stderr) => (err ? reject(new Error(`git ${args.join(' ')}: ${err.message} ${stderr}`)) : resolve(stdout.trim())),
    );
  });
}

function child(mode: ChildResult['mode'], url: string, cacheDir: string): Promise<ChildResult> {
  return new Promise((resolve, reject) => {
    execFile(process.execPath, ['--expose-gc', '--import', 'tsx', SELF, '--child', mode, '--url', url, '--cache-dir', cacheDir], { cwd: ROOT, timeout: 600_000, maxBuffer: 16 * 1024 * 1024 }, (err, stdout, stderr) => {
      if (err) reject(new Error(`child ${mode}: ${err.message} ${stderr}`));
      else resolve(JSON.parse(stdout.trim().split('\n').pop() as string) as ChildResult);
    });
  });
}

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] as number;
const load = (): string => loadavg().map((l) => l.toFixed(2)).join(' ');
const ms = (n: number): string => `${Math.round(n).toLocaleString('en-US')} ms`;
const mib = (kib: number | null): string => (kib === null ? 'n/a' : `${(kib / 1024).toFixed(0)} MiB`);

async function main(): Promise<void> {
  const count = Number(opts.count);
  const rounds = Number(opts.rounds);
  const started = performance.now();
  const say = (m: string): void => void process.stderr.write(`[bench ${((performance.now() - started) / 1000).toFixed(1).padStart(6)} s] ${m}\n`);
  const loadBefore = load();
  const { startGitServer } = await import('../test/helpers/gitServer.ts');
  const work = mkdtempSync(path.join(tmpdir(), 'vmroll-parse-cache-bench-'));
  const home = path.join(work, 'home');
  mkdirSync(home);
  const server = await startGitServer({ requestTimeoutMs: 300_000 });
  try {
    say(`generating ${count} manifests`);
    const vms = planRepository(count);
    const url = await server.createBareRepo('fleet');
    const wc = await server.createWorkingClone('fleet');
    for (const vm of vms) {
      mkdirSync(path.dirname(path.join(wc.dir, vm.file)), { recursive: true });
      writeFileSync(path.join(wc.dir, vm.file), renderManifest(vm));
    }
    await git(wc.dir, home, ['add', '--all']);
    await git(wc.dir, home, ['commit', '--quiet', '-m', 'fleet']);
    await git(wc.dir, home, ['push', '--quiet', 'origin', 'HEAD:refs/heads/main']);
    const cacheDir = path.join(work, 'cache');

    say('prime: clone, load every file, write the cache (one process)');
    const prime = await child('prime', url, cacheDir);

    // A push changes one file: the restart finds one blob the cache does not hold.
    const changed = vms[Math.floor(count / 2)] as (typeof vms)[number];
    writeFileSync(path.join(wc.dir, changed.file), renderManifest(changed, changed.sockets + 2));
    await git(wc.dir, home, ['commit', '--quiet', '-am', 'one VM']);
    await git(wc.dir, home, ['push', '--quiet', 'origin', 'HEAD:refs/heads/main']);

    const results: ChildResult[] = [];
    for (let r = 0; r < rounds; r++) {
      for (const mode of r % 2 === 0 ? (['none', 'cache'] as const) : (['cache', 'none'] as const)) {
        say(`round ${r + 1}: restart, load step ${mode === 'none' ? 'without' : 'with'} the cache`);
        results.push(await child(mode, url, cacheDir));
      }
    }
    const cacheFile = ManifestCache.forClone(path.join(cacheDir, readdirNames(cacheDir)), 'vms')?.file as string;
    const cacheBytes = statSync(cacheFile).size;
    const loadAfter = load();

    const of = (mode: 'none' | 'cache'): ChildResult[] => results.filter((x) => x.mode === mode);
    const none = of('none');
    const cached = of('cache');
    const digests = new Set(results.map((x) => x.digest));
    const row = (label: string, xs: ChildResult[]): string =>
      `| ${label} | ${ms(median(xs.map((x) => x.loadWallMs)))} | ${ms(median(xs.map((x) => x.loadCpuMs)))} | ${mib(median(xs.map((x) => x.loadPeakRssKiB ?? 0)))} (from ${mib(median(xs.map((x) => x.rssBeforeKiB)))}) | ${mib(median(xs.map((x) => x.processMaxRssKiB)))} | ${median(xs.map((x) => x.parsed)).toLocaleString('en-US')} / ${median(xs.map((x) => x.fromCache)).toLocaleString('en-US')} |`;
    const lines = [
      `Node ${process.version}; ${count.toLocaleString('en-US')} manifests (bench/manifests.ts), one changed by a push after the cache was written; ${rounds} rounds, each a fresh process per mode, order alternating, medians.`,
      `1-minute load average ${loadBefore.split(' ')[0]} before, ${loadAfter.split(' ')[0]} after (1/5/15: ${loadBefore} → ${loadAfter}).`,
      '',
      '| restart, load step | wall | CPU | peak RSS during the step | process peak RSS | files parsed / from cache |',
      '|---|---:|---:|---:|---:|---:|',
      row('without the cache (every blob read and parsed)', none),
      row('with the cache', cached),
      '',
      `- CPU ratio ${(median(none.map((x) => x.loadCpuMs)) / median(cached.map((x) => x.loadCpuMs))).toFixed(1)}×, wall ratio ${(median(none.map((x) => x.loadWallMs)) / median(cached.map((x) => x.loadWallMs))).toFixed(1)}×; of the cached step, reading the cache (gunzip + JSON.parse + checks): ${ms(median(cached.map((x) => x.cacheReadMs)))} wall.`,
      `- Same ManifestSet in every process: ${digests.size === 1 ? 'yes' : `MISS: ${digests.size} different digests`} (${[...digests].join(', ')}); VMs ${prime.vms.toLocaleString('en-US')}.`,
      `- Cache file: ${(cacheBytes / 1024 / 1024).toFixed(2)} MiB gzipped (${prime.formats ? (prime.formats.json.bytes / 1024 / 1024).toFixed(1) : '?'} MiB of JSON), ${count.toLocaleString('en-US')} outcomes.`,
      `- Writing it (after the restart's sync; serialise, gzip, fsync, rename): ${ms(median(results.filter((x) => x.write).map((x) => x.write?.wallMs ?? 0)))} wall, ${ms(median(results.filter((x) => x.write).map((x) => x.write?.cpuMs ?? 0)))} CPU (median of ${results.length}).`,
    ];
    if (prime.formats) {
      const f = prime.formats;
      lines.push(
        '',
        '| same outcomes, one process (medians of 3, alternating) | bytes | gzip -1 | serialise | parse back |',
        '|---|---:|---:|---:|---:|',
        `| JSON (what the cache stores) | ${(f.json.bytes / 1024 / 1024).toFixed(1)} MiB | ${(f.json.gzBytes / 1024 / 1024).toFixed(2)} MiB | ${ms(f.json.serializeMs)} | ${ms(f.json.parseMs)} |`,
        `| v8.serialize / deserialize | ${(f.v8.bytes / 1024 / 1024).toFixed(1)} MiB | ${(f.v8.gzBytes / 1024 / 1024).toFixed(2)} MiB | ${ms(f.v8.serializeMs)} | ${ms(f.v8.parseMs)} |`,
      );
    }
    process.stdout.write(`${lines.join('\n')}\n`);
  } finally {
    await server.stop();
    rmSync(work, { recursive: true, force: true });
  }
}

/** The one clone folder under the cache folder. */
function readdirNames(dir: string): string {
  return readdirSync(dir).find((n) => !n.startsWith('scratch-')) as string;
}

if (opts.child !== undefined) {
  await runChild(opts.child as ChildResult['mode'], opts.url as string, opts['cache-dir'] as string);
} else {
  await main();
}
