/**
 * Blob reads, side by side in one run: isomorphic-git's readBlob one file at a time (8 in flight, as
 * loadManifests did) against GitSource.readBlobs (reconciler/source/packReader.ts, chunks of 256), on a
 * clone that GitSource itself made (isomorphic-git over git-http-backend on 127.0.0.1) of the generated
 * fleet of bench/manifests.ts, packed on the server with `git gc --aggressive`. Then loadManifests end to
 * end, per-file reads against bulk reads, whose ManifestSets are compared. Rounds alternate; each round
 * uses a fresh GitSource (fresh isomorphic-git cache), as a new process would; CPU = user + sys of this process.
 *
 *   npx tsx bench/reads.bench.ts --count 1000 --count 10000
 */
import { execFile } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import path from 'node:path';
import { isDeepStrictEqual, parseArgs } from 'node:util';
import { GitSource } from '../reconciler/source/gitSource.ts';
import { loadManifests, type ManifestReader, type ManifestSet } from '../reconciler/source/manifests.ts';
import { PackReader } from '../reconciler/source/packReader.ts';
import { startGitServer } from '../test/helpers/gitServer.ts';
import { planRepository, renderManifest } from './manifests.ts';

const { values } = parseArgs({ options: { count: { type: 'string', multiple: true }, rounds: { type: 'string' } }, strict: true });
const counts = (values.count ?? ['1000', '10000']).map(Number);
const rounds = Number(values.rounds ?? '3');
const load = (): string => loadavg().map((l) => l.toFixed(2)).join(' ');
const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] as number;
const IDENTITY = ['-c', 'user.name=vmroll bench', '-c', 'user.email=bench@vmroll.invalid', '-c', 'commit.gpgsign=false', '-c', 'gc.auto=0'];

function sh(cwd: string, cmd: string, args: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(cmd, args, { cwd, maxBuffer: 512 * 1024 * 1024, timeout: 600_000, env: { ...process.env, HOME: cwd, GIT_CONFIG_NOSYSTEM: '1' } }, (err, stdout, stderr) => {
      if (err) reject(new Error(`${cmd} ${args.join(' ')}: ${err.message} ${stderr}`));
      else resolve(stdout.trim());
    });
  });
}

async function measure<T>(fn: () => Promise<T>): Promise<{ wallMs: number; cpuMs: number; value: T }> {
  const t0 = performance.now();
  const c0 = process.cpuUsage();
  const value = await fn();
  const c = process.cpuUsage(c0);
  return { wallMs: performance.now() - t0, cpuMs: (c.user + c.system) / 1000, value };
}

async function oneAtATime(source: GitSource, oids: string[]): Promise<number> {
  let bytes = 0;
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < oids.length) {
      const blob = await source.readBlob({ oid: oids[next++] as string });
      bytes += blob.byteLength;
    }
  };
  await Promise.all(Array.from({ length: 8 }, worker));
  return bytes;
}

async function inBulk(read: (oids: string[]) => Promise<Map<string, Uint8Array>>, oids: string[]): Promise<number> {
  let bytes = 0;
  for (let i = 0; i < oids.length; i += 256) for (const b of (await read(oids.slice(i, i + 256))).values()) bytes += b.byteLength;
  return bytes;
}

const fmt = (r: { wallMs: number; cpuMs: number }[]): string => `${median(r.map((x) => x.wallMs)).toFixed(0)} ms / ${median(r.map((x) => x.cpuMs)).toFixed(0)} ms`;
const ratio = (a: { cpuMs: number }[], b: { cpuMs: number }[]): string => `${(median(a.map((x) => x.cpuMs)) / median(b.map((x) => x.cpuMs))).toFixed(1)}×`;

const server = await startGitServer({ requestTimeoutMs: 300_000 });
const work = mkdtempSync(path.join(tmpdir(), 'vmroll-reads-bench-'));
const rowsReads: string[] = [];
const rowsLoad: string[] = [];
const notes: string[] = [];
console.log(`Node ${process.version}; load average before: ${load()}; ${rounds} rounds each, alternating, medians`);
try {
  for (const count of counts) {
    const name = `fleet-${count}`;
    const url = await server.createBareRepo(name);
    const wc = await server.createWorkingClone(name);
    for (const vm of planRepository(count)) {
      mkdirSync(path.dirname(path.join(wc.dir, vm.file)), { recursive: true });
      writeFileSync(path.join(wc.dir, vm.file), renderManifest(vm));
    }
    await sh(wc.dir, 'git', [...IDENTITY, 'add', '--all']);
    await sh(wc.dir, 'git', [...IDENTITY, 'commit', '--quiet', '-m', `fleet: ${count}`]);
    await sh(wc.dir, 'git', [...IDENTITY, 'push', '--quiet', 'origin', 'HEAD:refs/heads/main']);
    const serverRepo = path.join(server.projectRoot, `${name}.git`);
    await sh(serverRepo, 'git', [...IDENTITY, 'gc', '--quiet', '--aggressive']);
    const cacheDir = path.join(work, `cache-${count}`);
    const first = new GitSource({ repo: url, cacheDir });
    const { commit } = await first.sync({ ref: 'main' });
    const files = await first.listFiles({ commit });
    const oids = [...new Set(files.map((f) => f.oid))];
    const packSize = (gitdir: string): number => readdirSync(path.join(gitdir, 'objects/pack')).filter((n) => n.endsWith('.pack')).reduce((s, n) => s + statSync(path.join(gitdir, 'objects/pack', n)).size, 0);
    const cloneDir = path.join(cacheDir, readdirSync(cacheDir)[0] as string);
    notes.push(`${count}: ${oids.length} blobs; server pack ${(packSize(serverRepo) / 1048576).toFixed(2)} MiB, clone's pack (written by isomorphic-git) ${(packSize(path.join(cloneDir, '.git')) / 1048576).toFixed(2)} MiB`);
    const cli = await measure(() => sh(cloneDir, 'sh', ['-c', 'git ls-tree -r --object-only HEAD | git cat-file --batch | wc -c']));

    // Warm-up (JIT), not counted.
    await oneAtATime(new GitSource({ repo: url, cacheDir }), oids.slice(0, 300));
    await inBulk((o) => new GitSource({ repo: url, cacheDir }).readBlobs({ oids: o }), oids.slice(0, 300));
    const single: Awaited<ReturnType<typeof measure<number>>>[] = [];
    const bulk: typeof single = [];
    const noVerify: typeof single = [];
    let stats = '';
    for (let r = 0; r < rounds; r++) {
      single.push(await measure(() => oneAtATime(new GitSource({ repo: url, cacheDir }), oids)));
      const source = new GitSource({ repo: url, cacheDir });
      bulk.push(await measure(() => inBulk((o) => source.readBlobs({ oids: o }), oids)));
      stats = JSON.stringify(source.packReaderStats);
      const reader = new PackReader({ gitdir: path.join(cloneDir, '.git'), verify: false });
      noVerify.push(await measure(() => inBulk(async (o) => (await reader.readBlobs({ oids: o })).blobs, oids)));
    }
    if (single.some((s, i) => s.value !== bulk[i]!.value || s.value !== noVerify[i]!.value)) notes.push(`MISS at ${count}: byte totals differ`);
    notes.push(`${count}: bulk reader counters (last round) ${stats}; git cat-file --batch of every blob at HEAD ${cli.wallMs.toFixed(0)} ms wall (two child processes)`);
    rowsReads.push(`| ${count} | ${fmt(single)} | ${fmt(bulk)} | ${ratio(single, bulk)} | ${fmt(noVerify)} | ${load()} |`);

    const perFile = (s: GitSource): ManifestReader => ({ listFiles: (a) => s.listFiles(a), changedPaths: (a) => s.changedPaths(a), readBlob: (a) => s.readBlob(a) });
    const before: Awaited<ReturnType<typeof measure<ManifestSet>>>[] = [];
    const after: typeof before = [];
    let same = true;
    for (let r = 0; r < rounds; r++) {
      before.push(await measure(() => loadManifests({ source: perFile(new GitSource({ repo: url, cacheDir })), commit })));
      after.push(await measure(() => loadManifests({ source: new GitSource({ repo: url, cacheDir }), commit })));
      if (r === 0) same = isDeepStrictEqual(before[0]!.value, after[0]!.value) && after[0]!.value.vms.length === count;
    }
    rowsLoad.push(`| ${count} | ${fmt(before)} | ${fmt(after)} | ${ratio(before, after)} | ${same ? 'yes' : 'MISS: differ'} | ${load()} |`);
  }
} finally {
  await server.stop();
  rmSync(work, { recursive: true, force: true });
}
console.log('');
console.log('| blobs | isomorphic-git readBlob, one at a time: wall / CPU | GitSource.readBlobs (bulk): wall / CPU | CPU ratio | bulk without SHA-1 check | load average after |');
console.log('|---:|---:|---:|---:|---:|---|');
for (const row of rowsReads) console.log(row);
console.log('');
console.log('| manifests | loadManifests, readBlob per file: wall / CPU | loadManifests, bulk reads | CPU ratio | same ManifestSet | load average after |');
console.log('|---:|---:|---:|---:|---|---|');
for (const row of rowsLoad) console.log(row);
console.log('');
for (const n of notes) console.log(`- ${n}`);
