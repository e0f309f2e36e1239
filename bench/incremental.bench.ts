/**
 * One-VM incremental syncs at several repository sizes, before and after (issue 15, "Fix 5: flat
 * incremental syncs"), side by side in one run:
 *
 *   npx tsx bench/incremental.bench.ts                                  # 1,000, 10,000 and 20,000 VMs, 7 syncs of each kind
 *   npx tsx bench/incremental.bench.ts --count 1000 --syncs 5 --before <rev>
 *   npx tsx bench/incremental.bench.ts --count 10000 --after-only --profile-dir /tmp/p   # CPU profiles of this tree's incremental syncs
 *
 * The repository (bench/manifests.ts) is served over smart HTTP by git-http-backend
 * (test/helpers/gitServer.ts). For each size, a child process per tree (the sources at `--before`,
 * default the merge-base with main, unpacked with `git archive`; then this checkout) runs one
 * Reconciler (GitSource over HTTP + the embedded simulator, KubeVirt v1.9.0): a cold sync, then
 * one uncounted sync, then one-file changes pushed from its own working clone (untimed) and synced, alternating two kinds:
 * `sockets` (2 ↔ 3 on a running VM: a live change that KubeVirt's workload updater carries by a live
 * migration) and `annotation` (the VM's own metadata: no migration). Each sync is timed whole and per
 * step (ReconcileReport.timings), with the process's CPU time. A bench, not a test: it exits 0.
 */
import { execFile, spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { planRepository, renderManifest } from './manifests.ts';

const SELF = fileURLToPath(import.meta.url);
const ROOT = path.resolve(path.dirname(SELF), '..');
const STEPS = ['fetch', 'diff', 'load', 'observe', 'plan', 'apply', 'settle', 'report', 'total'] as const;
type Step = (typeof STEPS)[number];
const KINDS = ['sockets', 'annotation'] as const;
type Kind = (typeof KINDS)[number];

/** One incremental sync as the child reports it. */
interface SyncRecord {
  kind: Kind;
  timings: Record<Step, number>;
  cpuMs: number;
  writes: number;
  read: number;
  vms: number;
  summary: string;
}

/** What a child prints on its last line. */
interface ChildResult {
  cold: { ms: number; vms: number; created: number };
  syncs: SyncRecord[];
}

const IDENTITY = ['-c', 'user.name=vmroll bench', '-c', 'user.email=bench@vmroll.invalid', '-c', 'commit.gpgsign=false', '-c', 'gc.auto=0', '-c', 'maintenance.auto=false'];

function git(cwd: string, args: string[], timeoutMs = 600_000): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile('git', [...IDENTITY, ...args], { cwd, timeout: timeoutMs, maxBuffer: 256 * 1024 * 1024, env: { ...process.env, GIT_TERMINAL_PROMPT: '0', LC_ALL: 'C' } }, (err, stdout, stderr) => {
      if (err) reject(new Error(`git ${args.join(' ')}: ${err.message} ${stderr}`));
      else resolve(stdout.trim());
    });
  });
}

// ---------------------------------------------------------------------------------------------
// Child: one Reconciler of one tree.
// ---------------------------------------------------------------------------------------------

async function runChild(args: { url: string; clone: string; cacheDir: string; count: number; syncs: number; profileDir: string | null }): Promise<void> {
  const { GitSource } = await import('../reconciler/source/gitSource.ts');
  const { SimCluster } = await import('../reconciler/cluster/sim/simCluster.ts');
  const { Reconciler } = await import('../reconciler/controller/reconcile.ts');
  const { makeLogger } = await import('../reconciler/logging.ts');
  const cluster = new SimCluster({
    kubevirt: {
      apiVersion: 'kubevirt.io/v1',
      kind: 'KubeVirt',
      metadata: { name: 'kubevirt', namespace: 'kubevirt' },
      spec: { configuration: { developerConfiguration: { featureGates: [] } } },
      status: { observedKubeVirtVersion: 'v1.9.0', phase: 'Deployed' },
    },
  });
  const reconciler = new Reconciler({ source: new GitSource({ repo: args.url, cacheDir: args.cacheDir }), repoLabel: args.url, ref: 'main', path: '', cluster, prune: false, logger: makeLogger('silent', []) });
  // --profile-dir: V8 CPU profiles of the incremental syncs (not the cold one), for bench/profile.ts.
  let session: import('node:inspector/promises').Session | null = null;
  if (args.profileDir !== null) {
    const inspector = await import('node:inspector/promises');
    session = new inspector.Session();
    session.connect();
    await session.post('Profiler.enable');
    await session.post('Profiler.setSamplingInterval', { interval: 200 });
  }
  let t0 = performance.now();
  const cold = await reconciler.reconcile();
  const result: ChildResult = { cold: { ms: performance.now() - t0, vms: cold.summary.vms, created: cold.summary.created }, syncs: [] };
  // Running VMs only (a halted VM's socket change waits for its start), spread over the repository.
  const vms = planRepository(args.count);
  const running = vms.filter((vm) => !/runStrategy: Halted/.test(renderManifest(vm)));
  // i = -1: one sync not counted. The first sync after the cold one lists every VM it created there
  // and so re-plans them all (before and after alike); the syncs measured are the steady ones.
  for (let i = -1; i < args.syncs * KINDS.length; i++) {
    const kind = i < 0 ? 'annotation' : (KINDS[i % KINDS.length] as Kind);
    const vm = i < 0 ? running.at(-1) : (running[Math.floor(((i + 0.5) / (args.syncs * KINDS.length)) * running.length)] ?? running[0]);
    if (vm === undefined) break;
    // From what the clone holds now (an earlier child may have pushed to the same file).
    const file = path.join(args.clone, vm.file);
    const now = readFileSync(file, 'utf8');
    const text =
      kind === 'sockets'
        ? now.replace(/^( {10}sockets: )(\d+)$/m, (_m, head: string, n: string) => `${head}${n === '2' ? 3 : 2}`)
        : now.replace(/^ {4}owner: (.*)$/m, `    owner: oncall-${i}-${process.pid}@example.com`);
    writeFileSync(file, text);
    await git(args.clone, ['commit', '--quiet', '-am', `${vm.namespace}/${vm.name}: ${kind}`]);
    await git(args.clone, ['push', '--quiet', 'origin', 'HEAD:refs/heads/main']);
    if (session !== null) await session.post('Profiler.start');
    const cpu0 = process.cpuUsage();
    t0 = performance.now();
    const r = await reconciler.reconcile();
    const cpu = process.cpuUsage(cpu0);
    if (session !== null && args.profileDir !== null) {
      const { profile } = await session.post('Profiler.stop');
      writeFileSync(path.join(args.profileDir, `incremental-${i}-${kind}.cpuprofile`), JSON.stringify(profile));
    }
    const timings = { ...(r.timings as Record<Step, number>) };
    timings.total = performance.now() - t0;
    if (i < 0) continue;
    result.syncs.push({
      kind,
      timings,
      cpuMs: (cpu.user + cpu.system) / 1000,
      writes: r.writes,
      read: r.read.length,
      vms: r.summary.vms,
      summary: `${r.summary.inSync} in sync, ${r.summary.liveUpdated} live-updated, ${(r.summary.migrating ?? 0) + (r.summary.queued ?? 0)} migrating/queued, ${r.summary.errors} errors`,
    });
  }
  reconciler.close();
  cluster.close();
  process.stdout.write(`${JSON.stringify(result)}\n`);
}

// ---------------------------------------------------------------------------------------------
// Parent: the repository, the trees, the table.
// ---------------------------------------------------------------------------------------------

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length === 0 ? NaN : s.length % 2 === 1 ? (s[mid] as number) : ((s[mid - 1] as number) + (s[mid] as number)) / 2;
}

const fmt = (ms: number): string => (Number.isNaN(ms) ? 'n/a' : ms >= 10_000 ? `${(ms / 1000).toFixed(1)} s` : ms >= 1000 ? `${(ms / 1000).toFixed(2)} s` : `${ms.toFixed(ms < 10 ? 1 : 0)} ms`);

function runTree(tree: string, args: string[]): Promise<ChildResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', path.join(tree, 'bench', 'incremental.bench.ts'), '--child', ...args], { cwd: tree, stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    child.stdout.on('data', (d: Buffer) => {
      out += d.toString();
    });
    child.on('error', reject);
    child.on('exit', (code) => {
      const last = out.trim().split('\n').pop() ?? '';
      try {
        if (code !== 0) throw new Error(`exit ${code}`);
        resolve(JSON.parse(last) as ChildResult);
      } catch (e) {
        reject(new Error(`child in ${tree}: ${e instanceof Error ? e.message : String(e)}: ${out.slice(-2000)}`));
      }
    });
  });
}

async function runParent(opts: { counts: number[]; syncs: number; before: string | null; profileDir: string | null; only: 'after' | null }): Promise<void> {
  const started = performance.now();
  const log = (msg: string): void => {
    process.stderr.write(`[bench ${((performance.now() - started) / 1000).toFixed(1).padStart(6)} s] ${msg}\n`);
  };
  const loadBefore = loadavg();
  const before = opts.before ?? (await git(ROOT, ['merge-base', 'HEAD', 'main']));
  const after = await git(ROOT, ['rev-parse', 'HEAD']);
  const dirty = (await git(ROOT, ['status', '--porcelain', '--', 'reconciler', 'bench/incremental.bench.ts'])) !== '';
  const work = mkdtempSync(path.join(tmpdir(), 'vmroll-incr-bench-'));
  const { startGitServer } = await import('../test/helpers/gitServer.ts');
  const server = await startGitServer({ requestTimeoutMs: 300_000 });
  try {
    // The tree before: its sources as committed, this bench beside them, the same node_modules.
    const beforeTree = path.join(work, 'before');
    mkdirSync(beforeTree);
    await new Promise<void>((resolve, reject) => {
      const archive = spawn('sh', ['-c', `git archive ${before} | tar -x -C '${beforeTree}'`], { cwd: ROOT, stdio: 'inherit' });
      archive.on('exit', (code) => (code === 0 ? resolve() : reject(new Error(`git archive ${before}: exit ${code}`))));
    });
    symlinkSync(path.join(ROOT, 'node_modules'), path.join(beforeTree, 'node_modules'));
    writeFileSync(path.join(beforeTree, 'bench', 'incremental.bench.ts'), readFileSync(SELF));
    const trees: Array<{ label: string; dir: string }> = [
      { label: `before (${before.slice(0, 7)})`, dir: beforeTree },
      { label: `after (${after.slice(0, 7)}${dirty ? ' + working tree' : ''})`, dir: ROOT },
    ];
    const rows: string[] = [];
    const details: string[] = [];
    if (opts.only === 'after') trees.shift();
    for (const count of opts.counts) {
      log(`generating and pushing ${count} manifests`);
      const name = `fleet-${count}`;
      const url = await server.createBareRepo(name);
      const wc = await server.createWorkingClone(name);
      for (const vm of planRepository(count)) {
        mkdirSync(path.dirname(path.join(wc.dir, vm.file)), { recursive: true });
        writeFileSync(path.join(wc.dir, vm.file), renderManifest(vm));
      }
      await git(wc.dir, ['add', '--all']);
      await git(wc.dir, ['commit', '--quiet', '-m', `fleet: ${count} VirtualMachines`]);
      await git(wc.dir, ['push', '--quiet', 'origin', 'HEAD:refs/heads/main']);
      for (const tree of trees) {
        // A fresh working clone per child: it pushes its own one-file changes on top of main.
        const clone = path.join(work, `clone-${count}-${trees.indexOf(tree)}`);
        await git(work, ['clone', '--quiet', url, clone]);
        log(`${count} VMs, ${tree.label}: cold sync, then ${opts.syncs} syncs of each kind`);
        const profile = opts.profileDir !== null && tree.dir === ROOT ? ['--profile-dir', opts.profileDir] : [];
        const r = await runTree(tree.dir, [...profile, '--url', url, '--clone', clone, '--cache-dir', path.join(work, `cache-${count}-${trees.indexOf(tree)}`), '--count', String(count), '--syncs', String(opts.syncs)]);
        rmSync(clone, { recursive: true, force: true });
        for (const kind of KINDS) {
          const syncs = r.syncs.filter((s) => s.kind === kind);
          const med = (step: Step): number => median(syncs.map((s) => s.timings[step]));
          const max = (step: Step): number => Math.max(...syncs.map((s) => s.timings[step]));
          rows.push(
            `| ${count.toLocaleString('en')} | ${kind} | ${tree.label} | **${fmt(med('total'))}** / ${fmt(max('total'))} | ${fmt(median(syncs.map((s) => s.cpuMs)))} | ${(['fetch', 'diff', 'load', 'plan', 'apply', 'settle', 'report'] as const).map((st) => `${fmt(med(st))} / ${fmt(max(st))}`).join(' | ')} | ${syncs.map((s) => `${s.read}/${s.writes}`).join(' ')} |`,
          );
          details.push(`${count} ${kind} ${tree.label}: cold ${fmt(r.cold.ms)} (${r.cold.created} created); per sync total ms ${syncs.map((s) => s.timings.total.toFixed(0)).join(', ')}; last: ${syncs.at(-1)?.summary ?? ''}`);
        }
      }
    }
    const loadAfter = loadavg();
    const out: string[] = [];
    out.push(`## One-VM incremental syncs, before and after — ${new Date().toISOString()}`);
    out.push('');
    out.push(`Machine: ${cpus().length} CPUs (${cpus()[0]?.model ?? '?'}), Node ${process.version}; load average (1/5/15 min) ${loadBefore.map((l) => l.toFixed(2)).join(' / ')} before, ${loadAfter.map((l) => l.toFixed(2)).join(' / ')} after`);
    out.push(`GitSource over git-http-backend on 127.0.0.1 + SimCluster (KubeVirt v1.9.0), one child process per tree and size; ${opts.syncs} syncs of each kind, median / max (ms); CPU = user + sys of the child during the sync`);
    out.push('');
    out.push('| VMs | change | tree | sync, median / max | CPU (median) | fetch | diff | load | plan | apply | settle | report | read/writes per sync |');
    out.push('|---:|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|');
    out.push(...rows);
    out.push('');
    out.push(...details.map((d) => `- ${d}`));
    process.stdout.write(`${out.join('\n')}\n`);
  } finally {
    await server.stop();
    rmSync(work, { recursive: true, force: true });
  }
}

const { values } = parseArgs({
  options: {
    child: { type: 'boolean' },
    url: { type: 'string' },
    clone: { type: 'string' },
    'cache-dir': { type: 'string' },
    count: { type: 'string', multiple: true },
    syncs: { type: 'string' },
    before: { type: 'string' },
    'profile-dir': { type: 'string' },
    'after-only': { type: 'boolean' },
  },
  strict: true,
});

if (values.child) {
  await runChild({ url: values.url ?? '', clone: values.clone ?? '', cacheDir: values['cache-dir'] ?? '', count: Number(values.count?.[0] ?? '1000'), syncs: Number(values.syncs ?? '7'), profileDir: values['profile-dir'] ?? null });
  process.exit(0);
} else {
  await runParent({ counts: (values.count ?? ['1000', '10000', '20000']).map(Number), syncs: Number(values.syncs ?? '7'), before: values.before ?? null, profileDir: values['profile-dir'] ?? null, only: values['after-only'] === true ? 'after' : null });
  process.exit(0);
}
