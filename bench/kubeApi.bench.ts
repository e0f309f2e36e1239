/**
 * The API path of a cold sync and of a new leader, before and after, side by side in one run: for each
 * variant (a checkout of vmroll, this one or an older revision extracted beside it), a fresh `vmroll sim`
 * process, the same repository over git-http-backend, then two Reconciler processes one after the other
 * (bench/kube.bench.ts `--child --changes 0` of that checkout): the **cold** one syncs the empty
 * cluster; the **restart** one is a new process (as after a restart or a leader change) against the
 * cluster the first left in sync, with the clone cache of the first. Rounds alternate the variants.
 *
 *   npx tsx bench/kubeApi.bench.ts --count 10000 --variant before=/tmp/vmroll-before --variant after=.
 *   npx tsx bench/kubeApi.bench.ts --count 2000 --cpu-prof bench/profiles/api   # V8 CPU profiles of both children
 *
 * Each row: wall time of the sync, CPU of the vmroll process during it, its peak RSS (VmHWM), heap
 * after, and the API server's count of requests by verb. The 1-minute load average is printed before
 * and after. A bench, not a test: it exits 0 whatever it measures.
 */
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os, { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { planRepository, renderManifest } from './manifests.ts';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const KUBEVIRT = path.join(ROOT, 'fixtures', 'example-cluster', 'kubevirt.yaml');

/** The part of kube.bench.ts's child `cold` and `end` records read here. */
interface ColdRecord {
  type: 'cold';
  wallMs: number;
  timings: Record<string, number>;
  summary: string;
  writes: number;
  stats: { byVerb: Record<string, number> };
  maxRssKiB: number;
  cpuMs: number;
  heapUsedAfterKiB: number;
}
interface EndRecord {
  type: 'end';
  afterGc: { rssKiB: number; heapUsedKiB: number } | null;
  stores: Array<{ kind: string; objects: number; jsonKiB: number }>;
}

const IDENTITY = ['-c', 'user.name=vmroll bench', '-c', 'user.email=bench@vmroll.invalid', '-c', 'commit.gpgsign=false', '-c', 'gc.auto=0'];

function git(cwd: string, home: string, args: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    const env = { ...process.env, HOME: home, GIT_CONFIG_NOSYSTEM: '1', GIT_TERMINAL_PROMPT: '0', LC_ALL: 'C' };
    execFile('git', [...IDENTITY, ...args], { cwd, env, timeout: 300_000, maxBuffer: 64 * 1024 * 1024 }, (err, stdout, stderr) => {
      if (err) reject(new Error(`git ${args.join(' ')}: ${err.message} ${stderr}`));
      else resolve(stdout.trim());
    });
  });
}

async function startSim(dir: string): Promise<{ proc: ChildProcess; url: string; kubeconfig: string }> {
  const kubeconfig = path.join(dir, 'sim-kubeconfig');
  const proc = spawn(process.execPath, [path.join(ROOT, 'bin', 'vmroll.js'), 'sim', '--listen', '127.0.0.1:0', '--kubevirt', KUBEVIRT, '--kubeconfig-out', kubeconfig, '--log-level', 'warn'], {
    cwd: ROOT,
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const out = await new Promise<string>((resolve, reject) => {
    let text = '';
    const timer = setTimeout(() => reject(new Error(`vmroll sim did not start: ${text}`)), 60_000);
    proc.stdout?.on('data', (d: Buffer) => {
      text += d.toString();
      if (text.includes('kubeconfig written')) {
        clearTimeout(timer);
        resolve(text);
      }
    });
  });
  return { proc, url: /Kubernetes API at (\S+)/.exec(out)?.[1] ?? '', kubeconfig };
}

/** Runs one child of `root`'s kube.bench.ts; resolves with its records. */
function runChild(root: string, args: string[], nodeFlags: string[]): Promise<{ cold: ColdRecord | null; end: EndRecord | null; exit: string; errors: string[] }> {
  return new Promise((resolve) => {
    const proc = spawn(process.execPath, [...nodeFlags, '--expose-gc', '--import', 'tsx', path.join(root, 'bench', 'kube.bench.ts'), '--child', ...args, '--changes', '0'], {
      cwd: root,
      stdio: ['ignore', 'pipe', 'inherit', 'ipc'],
    });
    let text = '';
    proc.stdout?.on('data', (d: Buffer) => (text += d.toString()));
    proc.on('exit', (code, signal) => {
      let cold: ColdRecord | null = null;
      let end: EndRecord | null = null;
      const errors: string[] = [];
      for (const line of text.split('\n')) {
        if (line.trim() === '') continue;
        try {
          const r = JSON.parse(line) as { type: string; message?: string };
          if (r.type === 'cold') cold = r as ColdRecord;
          if (r.type === 'end') end = r as EndRecord;
          if (r.type === 'error') errors.push(String(r.message));
        } catch {
          errors.push(line);
        }
      }
      resolve({ cold, end, exit: signal !== null ? `killed by ${signal}` : `exit ${code}`, errors });
    });
  });
}

const mib = (kib: number | undefined): string => (kib === undefined ? 'n/a' : `${(kib / 1024).toFixed(0)} MiB`);
const sec = (ms: number | undefined): string => (ms === undefined ? 'n/a' : `${(ms / 1000).toFixed(1)} s`);
const verbs = (v: Record<string, number>): string =>
  Object.entries(v)
    .filter(([, n]) => n > 0)
    .map(([k, n]) => `${k} ${n}`)
    .join(', ');

const { values } = parseArgs({
  options: {
    count: { type: 'string', default: '2000' },
    variant: { type: 'string', multiple: true },
    rounds: { type: 'string', default: '1' },
    'cpu-prof': { type: 'string' },
  },
  strict: true,
});

const count = Number(values.count);
const variants = (values.variant ?? ['after=.']).map((v) => {
  const [label, dir] = v.includes('=') ? [v.slice(0, v.indexOf('=')), v.slice(v.indexOf('=') + 1)] : [v, v];
  return { label, root: path.resolve(dir) };
});
const started = performance.now();
const log = (m: string): void => void process.stderr.write(`[kubeApi ${((performance.now() - started) / 1000).toFixed(1).padStart(6)} s] ${m}\n`);
const loadBefore = os.loadavg();
const { startGitServer } = await import('../test/helpers/gitServer.ts');
const work = mkdtempSync(path.join(tmpdir(), 'vmroll-kubeapi-bench-'));
const home = path.join(work, 'home');
mkdirSync(home);
const server = await startGitServer({ requestTimeoutMs: 300_000 });
const rows: string[][] = [];
try {
  log(`generating ${count} manifests`);
  const vms = planRepository(count);
  const url = await server.createBareRepo('fleet');
  const wc = await server.createWorkingClone('fleet');
  const dirs = new Set<string>();
  for (const vm of vms) {
    const target = path.join(wc.dir, vm.file);
    if (!dirs.has(path.dirname(target))) mkdirSync(path.dirname(target), { recursive: true });
    dirs.add(path.dirname(target));
    writeFileSync(target, renderManifest(vm));
  }
  await git(wc.dir, home, ['add', '--all']);
  await git(wc.dir, home, ['commit', '--quiet', '-m', `fleet: ${count} VirtualMachines`]);
  await git(wc.dir, home, ['push', '--quiet', 'origin', 'HEAD:refs/heads/main']);
  const namespaces = [...new Set(vms.map((v) => v.namespace))];
  const rounds = Number(values.rounds);
  for (let round = 1; round <= rounds; round++) {
    for (const v of variants) {
      const dir = mkdtempSync(path.join(work, `${v.label}-`));
      const sim = await startSim(dir);
      try {
        for (const ns of namespaces) {
          const res = await fetch(`${sim.url}/api/v1/namespaces`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: ns } }) });
          await res.arrayBuffer();
        }
        const cacheDir = path.join(dir, 'cache');
        const args = ['--url', url, '--kubeconfig', sim.kubeconfig, '--sim-url', sim.url, '--cache-dir', cacheDir];
        for (const phase of ['cold', 'restart'] as const) {
          const profDir = values['cpu-prof'] !== undefined ? path.resolve(values['cpu-prof'], `${v.label}-${phase}-${round}`) : undefined;
          const flags = profDir !== undefined ? ['--cpu-prof', '--cpu-prof-dir', profDir] : [];
          log(`${v.label} ${phase} (round ${round}), load ${os.loadavg()[0]?.toFixed(2)}`);
          const r = await runChild(v.root, args, flags);
          const c = r.cold;
          log(`${v.label} ${phase}: ${r.exit}, ${c === null ? `no record ${r.errors.join(' / ').slice(0, 2000)}` : `${sec(c.wallMs)}, CPU ${sec(c.cpuMs)}, peak RSS ${mib(c.maxRssKiB)}; ${c.summary}; ${verbs(c.stats.byVerb)}`}`);
          if (c !== null) {
            const t = c.timings;
            rows.push([
              `${v.label}`,
              phase,
              String(round),
              sec(c.wallMs),
              sec(c.cpuMs),
              mib(c.maxRssKiB),
              mib(c.heapUsedAfterKiB),
              mib(r.end?.afterGc?.heapUsedKiB),
              `fetch ${sec(t['fetch'])}, load ${sec(t['load'])}, observe ${sec(t['observe'])}, plan ${sec(t['plan'])}, apply ${sec(t['apply'])}, settle ${sec(t['settle'])}, report ${sec(t['report'])}`,
              verbs(c.stats.byVerb),
              String(c.writes),
              (r.end?.stores ?? []).map((s) => `${s.kind} ${s.objects} / ${(s.jsonKiB / 1024).toFixed(1)} MiB`).join('; '),
            ]);
          }
        }
      } finally {
        sim.proc.kill('SIGTERM');
        rmSync(dir, { recursive: true, force: true });
      }
    }
  }
} finally {
  await server.stop();
  rmSync(work, { recursive: true, force: true });
}
const loadAfter = os.loadavg();
const header = ['variant', 'sync', 'round', 'wall', 'CPU', 'peak RSS', 'heap after', 'heap after GC', 'steps', 'requests (server)', 'writes', 'stores as JSON'];
process.stdout.write(`${count} VMs; 1-minute load average ${loadBefore[0]?.toFixed(2)} before, ${loadAfter[0]?.toFixed(2)} after (15-minute ${loadBefore[2]?.toFixed(2)} → ${loadAfter[2]?.toFixed(2)})\n`);
process.stdout.write(`| ${header.join(' | ')} |\n|${header.map(() => '---').join('|')}|\n`);
for (const r of rows) process.stdout.write(`| ${r.join(' | ')} |\n`);
process.exit(0);
