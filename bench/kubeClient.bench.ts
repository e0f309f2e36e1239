/**
 * What importing `vmroll run`'s composition root (controller/main.ts, which imports the kube
 * backend and leader election) costs, before and after vmroll's own kubeconfig loader replaced
 * @kubernetes/client-node on the run path (issue 15, "Fix 6"). Side by side in one run.
 *
 *   npx tsx bench/kubeClient.bench.ts                   # 7 runs of each
 *   npx tsx bench/kubeClient.bench.ts --runs 11 --before <rev>
 *
 * before: the revision `--before` (default BEFORE_REV, main before the change), extracted with
 * `git archive` into a temporary folder sharing this checkout's node_modules; after: this checkout.
 * Each run is its own process (`node --expose-gc --import tsx`), round-robin, after one warm-up run of
 * each (tsx caches its transforms); it imports the module and reports RSS, the heap after a full GC,
 * and the process's CPU time (user + sys) since start, and whether client-node's KubeConfig module is
 * in require's cache. Medians; the 1-minute load average is printed before and after.
 */
import { execFile, execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, symlinkSync } from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { promisify } from 'node:util';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
/** main just before Fix 6: kube.ts and leaderElection.ts import client-node. */
const BEFORE_REV = 'e844977';
const exec = promisify(execFile);

const { values: opts } = parseArgs({ options: { runs: { type: 'string', default: '7' }, before: { type: 'string', default: BEFORE_REV } } });
const RUNS = Number(opts.runs);

/** A resolve hook that counts the client-node modules the child loads (client-node is ESM: not in require's cache). */
const HOOK = [
  "import { appendFileSync } from 'node:fs';",
  'let out;',
  'export function initialize(file) { out = file; }',
  'export async function resolve(s, c, next) {',
  '  const r = await next(s, c);',
  "  if (r.url.includes('/node_modules/@kubernetes/client-node/')) appendFileSync(out, 'x');",
  '  return r;',
  '}',
].join('\n');

/** The child: imports the composition root, then measures itself. */
const CHILD = [
  "import { register } from 'node:module';",
  "import { readFileSync, writeFileSync } from 'node:fs';",
  "writeFileSync(process.env.BENCH_LOADS, '');",
  `register(${JSON.stringify(`data:text/javascript,${encodeURIComponent(HOOK)}`)}, { data: process.env.BENCH_LOADS });`,
  'await import(process.env.BENCH_MODULE);',
  'globalThis.gc(); globalThis.gc();',
  'const m = process.memoryUsage(); const c = process.cpuUsage();',
  "const modules = readFileSync(process.env.BENCH_LOADS, 'utf8').length;",
  'console.log(JSON.stringify({ rss: m.rss, heap: m.heapUsed, cpuMs: (c.user + c.system) / 1000, clientNode: modules }));',
].join('\n');

interface Sample {
  rss: number;
  heap: number;
  cpuMs: number;
  /** client-node modules resolved. */
  clientNode: number;
}

async function sample(root: string): Promise<Sample> {
  const module = pathToFileURL(path.join(root, 'reconciler', 'controller', 'main.ts')).href;
  const { stdout } = await exec(process.execPath, ['--expose-gc', '--import', 'tsx', '--input-type=module', '-e', CHILD], { cwd: root, env: { ...process.env, BENCH_MODULE: module, BENCH_LOADS: path.join(before, 'loads.txt') } });
  return JSON.parse(stdout.trim().split('\n').pop() ?? '{}') as Sample;
}

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)] ?? NaN;
};
const mib = (b: number): string => `${(b / 1024 / 1024).toFixed(1)} MiB`;

const before = mkdtempSync(path.join(tmpdir(), 'vmroll-bench-kcfg-'));
try {
  execFileSync('sh', ['-c', `git archive ${opts.before} | tar -x -C ${before}`], { cwd: ROOT });
  symlinkSync(path.join(ROOT, 'node_modules'), path.join(before, 'node_modules'), 'dir');
  const variants = { [`before (${opts.before})`]: before, 'after (this checkout)': ROOT };
  console.log(`load average (1 min) at start: ${loadavg()[0]?.toFixed(2)} on ${cpus().length} CPUs; ${RUNS} runs each, round-robin`);
  for (const root of Object.values(variants)) await sample(root); // warm-up: tsx's transform cache
  const samples = new Map<string, Sample[]>(Object.keys(variants).map((k) => [k, []]));
  for (let i = 0; i < RUNS; i++) for (const [name, root] of Object.entries(variants)) samples.get(name)?.push(await sample(root));
  console.log('import of reconciler/controller/main.ts | RSS | heap after GC | CPU | client-node modules loaded');
  for (const [name, xs] of samples) {
    console.log(`${name} | ${mib(median(xs.map((x) => x.rss)))} | ${mib(median(xs.map((x) => x.heap)))} | ${median(xs.map((x) => x.cpuMs)).toFixed(0)} ms | ${median(xs.map((x) => x.clientNode))}`);
  }
  console.log(`load average (1 min) at end: ${loadavg()[0]?.toFixed(2)}`);
} finally {
  rmSync(before, { recursive: true, force: true });
}
