/**
 * The startup benchmark: what a `vmroll` invocation costs before and after the compiled build, side
 * by side in one run, next to `node -e 0`.
 *
 *   npm run bench:startup                      # 10 runs of each
 *   npm run bench:startup -- --runs 20
 *   npm run bench:startup -- --before <rev>    # another "before" revision (default below)
 *
 * Variants, each run as its own process, round-robin (one run of every variant, then the next
 * round) so that the machine's load falls on all of them alike:
 * - before: bin/vmroll.js of the revision `--before` (default BEFORE_REV, the last one whose bin
 *   registered tsx and whose cli.ts imported every command), extracted with `git archive` into a
 *   temporary folder that shares this checkout's node_modules. tsx compiles the sources at start.
 * - tsx, lazy: today's sources through tsx (`node --import tsx`, main() of reconciler/cli.ts): the
 *   lazy command loading alone, without the compiled build.
 * - after: today's bin/vmroll.js running dist/ (built by `npm run build` at the start of the bench).
 *
 * Commands: `--help`; `diff` on the README example (fixtures/examples); `run --once --cluster sim`
 * on the bundled example repository, each run in a fresh folder (so each creates the example
 * repository and syncs its 3 VMs into a new simulator state). Wall time is measured around the
 * process; CPU time (user + sys) is what /usr/bin/time reports for it. Medians of `--runs`; the
 * 1-minute load average is printed before and after. A bench, not a test: it exits 0 whatever it
 * measures, but a run that exits non-zero or prints something else than its variant's first run is
 * reported as FAILED, not timed.
 */
import { execFile, execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, symlinkSync } from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
/** main just before the compiled build and the lazy command loading were merged (its bin registers tsx, its cli.ts imports every command). */
const BEFORE_REV = '9933665';
/** The goal: `--help` and `diff` within this factor of `node -e 0`. */
const GOAL = 3;

const { values: opts } = parseArgs({ options: { runs: { type: 'string', default: '10' }, before: { type: 'string', default: BEFORE_REV } } });
const RUNS = Number(opts.runs);

const example = (f: string): string => path.join(ROOT, 'fixtures', 'examples', f);
const COMMANDS: Record<string, string[] | null> = {
  'node -e 0': null,
  '--help': ['--help'],
  diff: ['diff', '--baseline', example('web-baseline.yaml'), '--desired', example('web-desired.yaml'), '--vmi', example('web-vmi.yaml'), '--kubevirt', example('kubevirt.yaml')],
  'run --once --cluster sim': ['run', '--once', '--cluster', 'sim', '--log-level', 'silent'],
};

interface Sample {
  wallMs: number;
  cpuMs: number;
}

/** One process under /usr/bin/time, in `cwd`: its wall and CPU time, or why it failed. */
function measure(argv: string[], cwd: string): Promise<{ sample: Sample; stdout: string } | { error: string }> {
  return new Promise((resolve) => {
    const started = process.hrtime.bigint();
    execFile('/usr/bin/time', ['-f', 'VMROLL_BENCH_TIME %U %S', ...argv], { cwd, timeout: 300_000, maxBuffer: 16 << 20 }, (err, stdout, stderr) => {
      const wallMs = Number(process.hrtime.bigint() - started) / 1e6;
      const m = /VMROLL_BENCH_TIME ([\d.]+) ([\d.]+)\s*$/.exec(stderr);
      if (err !== null || m === null) {
        resolve({ error: `${err?.message ?? 'no time line'}: ${stderr.trim().split('\n').slice(-3).join(' | ')}` });
        return;
      }
      resolve({ sample: { wallMs, cpuMs: (Number(m[1]) + Number(m[2])) * 1000 }, stdout });
    });
  });
}

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 === 1 ? (s[mid] ?? 0) : ((s[mid - 1] ?? 0) + (s[mid] ?? 0)) / 2;
};

async function main(): Promise<void> {
  const work = mkdtempSync(path.join(tmpdir(), 'vmroll-startup-'));
  try {
    console.log(`vmroll startup bench: ${RUNS} runs of each, Node ${process.version}, ${cpus().length} CPUs, load average before ${loadavg().map((x) => x.toFixed(2)).join(' ')}`);
    console.log('building dist/ (npm run build) …');
    execFileSync(process.execPath, [path.join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', path.join(ROOT, 'tsconfig.build.json')], { cwd: ROOT, stdio: 'inherit' });

    // The "before" tree: the old revision's files, this checkout's node_modules.
    const before = path.join(work, 'before');
    execFileSync('sh', ['-c', `mkdir -p "${before}" && git -C "${ROOT}" archive "${opts.before}" | tar -x -C "${before}"`]);
    symlinkSync(path.join(ROOT, 'node_modules'), path.join(before, 'node_modules'), 'dir');
    const beforeRev = execFileSync('git', ['-C', ROOT, 'rev-parse', '--short', opts.before], { encoding: 'utf8' }).trim();

    const tsxMain = `const { main } = await import(${JSON.stringify(path.join(ROOT, 'reconciler', 'cli.ts'))}); process.exitCode = await main(process.argv.slice(1));`;
    const variants: Record<string, (args: string[]) => string[]> = {
      [`before (${beforeRev}, tsx, eager)`]: (args) => [process.execPath, path.join(before, 'bin', 'vmroll.js'), ...args],
      'tsx, lazy (sources)': (args) => [process.execPath, '--import', import.meta.resolve('tsx'), '--input-type=module', '-e', tsxMain, '--', ...args],
      'after (dist/, lazy)': (args) => [process.execPath, path.join(ROOT, 'bin', 'vmroll.js'), ...args],
    };

    const rows: Array<{ command: string; variant: string; argv: string[] }> = [];
    for (const [command, args] of Object.entries(COMMANDS)) {
      if (args === null) rows.push({ command, variant: 'node', argv: [process.execPath, '-e', '0'] });
      else for (const [variant, argv] of Object.entries(variants)) rows.push({ command, variant, argv: argv(args) });
    }
    const samples = new Map<number, Sample[]>(rows.map((_, i) => [i, []]));
    const failures = new Map<number, string>();
    const firstOutput = new Map<number, string>();

    // One warm-up round, not counted (tsx fills its compile cache, the OS its file cache).
    for (let round = 0; round <= RUNS; round += 1) {
      for (const [i, row] of rows.entries()) {
        if (failures.has(i)) continue;
        const cwd = mkdtempSync(path.join(work, 'cwd-'));
        const r = await measure(row.argv, cwd);
        rmSync(cwd, { recursive: true, force: true });
        if ('error' in r) {
          failures.set(i, r.error);
          continue;
        }
        // Outputs must agree run to run (the sync's commit hash and duration vary: masked).
        const output = r.stdout.replace(/\b[0-9a-f]{12}\b/g, '<commit>').replace(/\(\d+ ms, /g, '(… ms, ');
        if (!firstOutput.has(i)) firstOutput.set(i, output);
        else if (firstOutput.get(i) !== output) failures.set(i, 'output differs from its first run');
        if (round > 0) samples.get(i)?.push(r.sample);
      }
    }

    const base = samples.get(0) ?? [];
    const baseWall = median(base.map((s) => s.wallMs));
    const baseCpu = median(base.map((s) => s.cpuMs));
    console.log(`\nload average after ${loadavg().map((x) => x.toFixed(2)).join(' ')}\n`);
    console.log('| command | variant | wall, median | CPU (user+sys), median | wall ÷ node -e 0 | CPU ÷ node -e 0 |');
    console.log('|---|---|---:|---:|---:|---:|');
    for (const [i, row] of rows.entries()) {
      const failed = failures.get(i);
      if (failed !== undefined) {
        console.log(`| ${row.command} | ${row.variant} | FAILED: ${failed} | | | |`);
        continue;
      }
      const s = samples.get(i) ?? [];
      const wall = median(s.map((x) => x.wallMs));
      const cpu = median(s.map((x) => x.cpuMs));
      const goal = row.variant.startsWith('after') && row.command !== 'run --once --cluster sim' ? (wall / baseWall <= GOAL && cpu / baseCpu <= GOAL ? ` (goal ≤${GOAL}×: met)` : ` (goal ≤${GOAL}×: MISSED)`) : '';
      console.log(`| ${row.command} | ${row.variant} | ${wall.toFixed(0)} ms | ${cpu.toFixed(0)} ms | ${(wall / baseWall).toFixed(1)}× | ${(cpu / baseCpu).toFixed(1)}×${goal} |`);
    }
    // The outputs of the three variants of one command should say the same thing.
    for (const command of Object.keys(COMMANDS)) {
      const outs = rows.map((r, i) => ({ r, i })).filter(({ r }) => r.command === command && r.variant !== 'node').map(({ i }) => firstOutput.get(i));
      if (new Set(outs).size > 1) console.log(`note: the variants of \`${command}\` print different outputs (the revisions differ)`);
    }
    const pkg = JSON.parse(readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as { version?: string };
    console.log(`\nvmroll ${pkg.version ?? '?'}; CPU time from /usr/bin/time (10 ms resolution).`);
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

await main();
