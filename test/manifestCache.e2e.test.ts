// A restart takes unchanged manifests from the parse cache, over real git: git-http-backend on
// 127.0.0.1, clones into a temp cacheDir, the Reconciler syncing into the embedded simulator. A
// second GitSource + Reconciler on the same cacheDir (what a new process builds) after a push that
// changes one file parses exactly that file and gives the plan a process without the cache gives; a
// truncated cache costs one warning and a full parse, never the sync.
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { type GeneratedVm, planRepository, renderManifest } from '../bench/manifests.ts';
import { makeLogger } from '../reconciler/commands/run.ts';
import { SimCluster } from '../reconciler/cluster/sim/simCluster.ts';
import { type ReconcileReport, Reconciler } from '../reconciler/controller/reconcile.ts';
import { GitSource } from '../reconciler/source/gitSource.ts';
import { ManifestCache } from '../reconciler/source/manifestCache.ts';
import { type GitServer, type WorkingClone, startGitServer } from './helpers/gitServer.ts';

const KUBEVIRT = { apiVersion: 'kubevirt.io/v1', kind: 'KubeVirt', metadata: { name: 'kubevirt' }, spec: {}, status: { observedKubeVirtVersion: 'v1.9.0' } };

describe('parse cache across processes, over real git', function () {
  this.timeout(180_000);
  let server: GitServer;
  let work: WorkingClone;
  let url: string;
  let dir: string;
  const vms = planRepository(30);
  const files: string[] = [];
  const logLines: Record<string, unknown>[] = [];
  const logger = makeLogger('debug', [], { write: (l: string) => (logLines.push(JSON.parse(l) as Record<string, unknown>), true) } as unknown as NodeJS.WritableStream);

  before(async () => {
    server = await startGitServer();
    dir = mkdtempSync(path.join(tmpdir(), 'vmroll-cache-e2e-'));
    url = await server.createBareRepo('fleet');
    work = await server.createWorkingClone('fleet');
    for (const vm of vms) {
      await work.write(vm.file, renderManifest(vm));
      files.push(vm.file);
    }
    // A warning (unknown field), an error that holds its VM, and another kind: all must come back from the cache as they were.
    const [w, e] = [vms[0], vms[1]] as GeneratedVm[] as [GeneratedVm, GeneratedVm];
    await work.write(w.file, renderManifest(w).replace('          cores: 1\n', '          cores: 1\n          socket: 2\n'));
    await work.write(e.file, renderManifest(e).replace(/sockets: \d+/, 'sockets: two'));
    await work.write('vms/config.yaml', 'apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\n');
    files.push('vms/config.yaml');
    await work.commit('fleet');
    await work.push();
  });
  after(async () => {
    await server?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  /** One process's worth: a new GitSource and Reconciler on `cacheDir`, one sync. */
  async function syncOnce(cacheDir: string, cluster: SimCluster): Promise<{ report: ReconcileReport; cacheFile: string | undefined }> {
    const source = new GitSource({ repo: url, cacheDir: path.join(dir, cacheDir) });
    const r = new Reconciler({ source, repoLabel: url, ref: 'main', path: 'vms', cluster, prune: true, logger });
    try {
      const report = await r.reconcile();
      return { report, cacheFile: ManifestCache.forClone(source.cloneFolder, 'vms')?.file };
    } finally {
      r.close();
    }
  }

  const reconciledLines = (from: number): Record<string, unknown>[] => logLines.slice(from).filter((l) => l['msg'] === 'reconciled');

  it('a new process parses only the file a push changed, and plans what a process without the cache plans', async () => {
    const withCache = new SimCluster({ kubevirt: KUBEVIRT });
    const without = new SimCluster({ kubevirt: KUBEVIRT });

    const first = await syncOnce('cache', withCache);
    assert.equal(first.report.read.length, files.length, 'the first process parses every file');
    assert.deepEqual(first.report.cached, []);
    assert.ok(first.cacheFile !== undefined && existsSync(first.cacheFile), 'the parse cache is written in the clone folder');
    assert.ok(first.cacheFile.startsWith(path.join(dir, 'cache')), first.cacheFile);
    // The first fleet's results, so the comparison below is about something.
    assert.equal(first.report.plan.warnings?.length, 2, JSON.stringify(first.report.plan.warnings));
    assert.ok(first.report.plan.errors.some((e) => e.file === vms[1]?.file && (e.line ?? 0) > 1), JSON.stringify(first.report.plan.errors));
    const twin = await syncOnce('reference-1', without);
    assert.deepStrictEqual(twin.report.plan, first.report.plan);

    const changed = vms[5]?.file as string;
    await work.write(changed, renderManifest(vms[5] as (typeof vms)[number], 3).replace('cores: 1', 'cores: 2'));
    const sha = await work.commit('one VM: cores 2');
    await work.push();

    const logged = logLines.length;
    const second = await syncOnce('cache', withCache);
    const line = reconciledLines(logged)[0];
    assert.equal(second.report.commit, sha);
    assert.deepEqual(second.report.read, [changed], 'exactly the changed file is parsed');
    assert.equal(second.report.cached?.length, files.length - 1);
    const reference = await syncOnce('reference-2', without);
    assert.deepEqual(reference.report.cached, []);
    assert.equal(reference.report.read.length, files.length);
    assert.deepStrictEqual(second.report.plan, reference.report.plan, 'the same plan as a process without the cache');
    assert.deepStrictEqual(second.report.summary, reference.report.summary);
    assert.equal(second.report.writes, reference.report.writes);
    assert.equal(second.report.plan.vms.find((v) => v.name === vms[5]?.name)?.action, 'update');
    assert.deepEqual(second.report.plan.errors, first.report.plan.errors, 'the held VM stays held, its error at its line');
    assert.equal(line?.['read'], 1, JSON.stringify(line));
    assert.equal(line?.['cached'], files.length - 1, JSON.stringify(line));

    // The second process rewrote the cache for the new commit: a third one parses nothing.
    const third = await syncOnce('cache', withCache);
    assert.deepEqual(third.report.read, []);
    assert.equal(third.report.cached?.length, files.length);
    assert.equal(third.report.writes, 0);
  });

  it('a first sync that fails after its load (API server down) still writes the cache: the retry parses nothing', async () => {
    const sim = new SimCluster({ kubevirt: KUBEVIRT });
    let down = true;
    const flaky = new Proxy(sim, {
      get(target, prop) {
        if (prop === 'listVirtualMachines' && down) return () => Promise.reject(new Error('connect ECONNREFUSED 127.0.0.1:6443'));
        const value: unknown = Reflect.get(target, prop);
        return typeof value === 'function' ? (value as (...a: unknown[]) => unknown).bind(target) : value;
      },
    });
    const source = new GitSource({ repo: url, cacheDir: path.join(dir, 'cache-down') });
    const r = new Reconciler({ source, repoLabel: url, ref: 'main', path: 'vms', cluster: flaky, prune: false, logger });
    try {
      await assert.rejects(r.reconcile(), /ECONNREFUSED/);
      const file = ManifestCache.forClone(source.cloneFolder, 'vms')?.file as string;
      assert.ok(existsSync(file), 'written although the sync failed');
      down = false;
      const retry = await r.reconcile();
      assert.deepEqual(retry.read, [], 'the retry takes every file from the cache');
      assert.equal(retry.cached?.length, files.length);
    } finally {
      r.close();
    }
  });

  it('a truncated cache is one warning and a full parse; the sync goes through and writes a good cache again', async () => {
    const cluster = new SimCluster({ kubevirt: KUBEVIRT });
    const first = await syncOnce('cache-t', cluster);
    const file = first.cacheFile as string;
    const bytes = readFileSync(file);
    writeFileSync(file, bytes.subarray(0, bytes.length - 40));
    const before = logLines.length;
    const second = await syncOnce('cache-t', cluster);
    assert.equal(second.report.read.length, files.length);
    const warnings = logLines.slice(before).filter((l) => Number(l['level']) >= 40 && String(l['msg']).includes('parse cache'));
    assert.deepEqual(warnings.map((l) => l['msg']), ['parse cache ignored; every manifest is parsed']);
    assert.deepStrictEqual([second.report.plan.errors, second.report.plan.warnings], [first.report.plan.errors, first.report.plan.warnings]);
    assert.equal(second.report.writes, 0, 'in sync: nothing written');
    const third = await syncOnce('cache-t', cluster);
    assert.deepEqual(third.report.read, []);
  });
});
