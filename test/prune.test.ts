/**
 * Deletions are visible and guarded, over Debian git's http-backend on 127.0.0.1 and the
 * embedded simulator: VMs Git no longer defines are orphans (JSON, text, summary) without
 * --prune; with --prune, `vmroll.dev/prune: disabled` keeps a VM, and a missing path, a path
 * without manifests, a path without VirtualMachines or a vanished branch deletes nothing and
 * says why. Ownership: another repository's VM is left alone with an error naming both; VMs an
 * older release annotated with the URL are still this repository's.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { SimCluster } from '../reconciler/cluster/sim/simCluster.ts';
import { ClusterCache } from '../reconciler/cluster/cache.ts';
import { runPlan } from '../reconciler/commands/plan.ts';
import { makeLogger } from '../reconciler/commands/run.ts';
import { Reconciler } from '../reconciler/controller/reconcile.ts';
import { planCommit } from '../reconciler/plan/planCommit.ts';
import type { Obj, VmPlan } from '../reconciler/rollout/index.ts';
import { GitSource } from '../reconciler/source/gitSource.ts';
import { ROOT } from './helpers/cases.ts';
import { type GitServer, type WorkingClone, startGitServer } from './helpers/gitServer.ts';
import { vmrollProcess, vmsInState } from './helpers/vmrollProcess.ts';

/** `vmroll <command> …` as a process. */
const vmroll = (command: string, args: string[]): ReturnType<typeof vmrollProcess> => vmrollProcess([command, ...args]);

const EXAMPLE = path.join(ROOT, 'fixtures', 'example-repo', 'vms');
const silent = makeLogger('silent', []);
const example = (f: string): string => readFileSync(path.join(EXAMPLE, f), 'utf8');


/** `vmroll plan` in this process (its CLI start-up costs seconds on a busy machine; `vmroll run` is spawned as a binary above). */
async function vmrollPlan(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  const out: string[] = [];
  const err: string[] = [];
  const code = await runPlan(args, { out: (t) => out.push(t), err: (t) => err.push(t) }, {});
  return { code, stdout: out.join('\n'), stderr: err.join('\n') };
}


function vmNames(cluster: SimCluster): string[] {
  return cluster.store
    .list('VirtualMachine')
    .map((o) => `${String((o['metadata'] as Obj)['namespace'])}/${String((o['metadata'] as Obj)['name'])}`)
    .sort();
}

function annotate(cluster: SimCluster, namespace: string, name: string, annotations: Obj): void {
  const vm = cluster.store.get('VirtualMachine', namespace, name);
  assert.ok(vm, `${namespace}/${name} exists`);
  const meta = vm['metadata'] as Obj;
  meta['annotations'] = { ...((meta['annotations'] ?? {}) as Obj), ...annotations };
  cluster.store.update(vm);
}

const ALL = ['jobs/batch', 'shop/db', 'shop/web'];

describe('prune: orphans, prune: disabled and the empty-state guard', function () {
  this.timeout(180_000);
  let server: GitServer;
  let work: WorkingClone;
  let url: string;
  let dir: string;
  let base: string;

  before(async () => {
    server = await startGitServer();
    dir = mkdtempSync(path.join(tmpdir(), 'vmroll-prune-'));
    url = await server.createBareRepo('fleet');
    work = await server.createWorkingClone('fleet');
    for (const f of ['web.yaml', 'db.yaml', 'batch.yaml']) await work.write(`vms/${f}`, example(f));
    await work.write('README.md', 'VMs live in vms/.\n');
    base = await work.commit('three VMs');
    await work.push();
  });
  after(async () => {
    await server?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  /** A branch off the three-VM commit, pushed; returns to main afterwards. */
  async function branch(name: string, change: () => Promise<void>): Promise<string> {
    await work.git('checkout', '--quiet', '-B', name, base);
    await change();
    const sha = await work.commit(name);
    await work.push();
    await work.git('checkout', '--quiet', 'main');
    return sha;
  }

  /** Syncs `ref` at the three-VM commit first, then (after `change` lands on it) once more with --prune. */
  async function syncThenBreak(ref: string, change: () => Promise<void>): Promise<{ cluster: SimCluster; before: string[]; report: Awaited<ReturnType<Reconciler['reconcile']>> }> {
    await work.git('checkout', '--quiet', '-B', ref, base);
    await work.push();
    await work.git('checkout', '--quiet', 'main');
    const cluster = new SimCluster();
    const r = new Reconciler({ source: new GitSource({ repo: url, cacheDir: path.join(dir, `cache-${ref}`) }), repoLabel: url, ref, path: 'vms', cluster, prune: true, logger: silent });
    try {
      const first = await r.reconcile();
      assert.deepEqual(first.plan.errors, []);
      const before = vmNames(cluster);
      assert.deepEqual(before, ALL);
      await branch(ref, change);
      const report = await r.reconcile();
      return { cluster, before, report };
    } finally {
      r.close();
    }
  }

  it('without --prune, VMs Git no longer defines are orphans in the JSON, the text and the summary, and stay', async () => {
    const state = path.join(dir, 'orphans.json');
    await work.git('checkout', '--quiet', '-B', 'retire', base);
    await work.push();
    const common = ['--repo', url, '--branch', 'retire', '--path', 'vms', '--sim-state', state, '--cache-dir', path.join(dir, 'cache-cli'), '--log-level', 'silent'];
    const first = await vmroll('run', ['--once', ...common, '--output', 'json']);
    assert.equal(first.code, 0, first.stderr);
    const applied = (JSON.parse(first.stdout) as VmPlan).commit ?? '';
    assert.deepEqual((JSON.parse(first.stdout) as VmPlan).orphans, [], 'orphans is always printed by run');

    await work.remove('vms/db.yaml');
    await work.remove('vms/batch.yaml');
    await work.commit('retire db and batch');
    await work.push();
    await work.git('checkout', '--quiet', 'main');
    const json = await vmroll('run', ['--once', ...common, '--output', 'json']);
    assert.equal(json.code, 0, json.stderr);
    const plan = JSON.parse(json.stdout) as VmPlan;
    assert.deepEqual(plan.vms.map((v) => `${v.namespace}/${v.name}:${v.action}`), ['shop/web:none'], 'nothing deleted');
    assert.deepEqual(
      plan.orphans?.map((o) => [`${o.namespace}/${o.name}`, o.file, o.commit, o.reason]),
      [
        ['jobs/batch', 'vms/batch.yaml', applied, 'pruneOff'],
        ['shop/db', 'vms/db.yaml', applied, 'pruneOff'],
      ],
    );
    assert.equal(plan.orphans?.[1]?.message, `defined in vms/db.yaml (last applied from ${applied.slice(0, 12)}), no longer in Git; not deleted (run with --prune to delete)`);
    assert.deepEqual(vmsInState(state), ALL, 'both orphans are still in the cluster');

    // Every sync says it again, in the text output too, one line per orphan and a count.
    const text = await vmroll('run', ['--once', ...common]);
    assert.equal(text.code, 0, text.stderr);
    const lines = text.stdout.split('\n');
    assert.match(lines[0] ?? '', /^target: embedded KubeVirt simulator, state in /, 'the first line names the target');
    assert.match(lines[1] ?? '', /^sync [0-9a-f]{12}: 1 in sync · 2 orphaned /);
    assert.ok(lines.includes(`  orphan shop/db: defined in vms/db.yaml (last applied from ${applied.slice(0, 12)}), no longer in Git; not deleted (run with --prune to delete)`), text.stdout);
    assert.ok(lines.some((l) => l.startsWith('  orphan jobs/batch: defined in vms/batch.yaml')), text.stdout);
    assert.deepEqual(vmsInState(state), ALL);

    // `vmroll plan` shows the same orphans (table and JSON), and with --prune the deletes instead.
    const planned = await vmrollPlan(['--repo', url, '--ref', 'retire', '--path', 'vms', '--sim-state', state, '--cache-dir', path.join(dir, 'cache-cli'), '--output', 'json']);
    assert.equal(planned.code, 0, planned.stderr);
    assert.deepEqual((JSON.parse(planned.stdout) as VmPlan).orphans?.map((o) => `${o.namespace}/${o.name}:${o.reason}`), ['jobs/batch:pruneOff', 'shop/db:pruneOff']);
    const table = await vmrollPlan(['--repo', url, '--ref', 'retire', '--path', 'vms', '--sim-state', state, '--cache-dir', path.join(dir, 'cache-cli')]);
    assert.match(table.stdout, /^orphan shop\/db: defined in vms\/db\.yaml/m);
    const markdown = await vmrollPlan(['--repo', url, '--ref', 'retire', '--path', 'vms', '--sim-state', state, '--cache-dir', path.join(dir, 'cache-cli'), '--output', 'markdown']);
    assert.match(markdown.stdout, /#### 2 orphaned VMs/);
    assert.match(markdown.stdout, /0 deleted · 2 orphaned · 1 in sync/);
    assert.match(markdown.stdout, /<code>shop\/db<\/code>: defined in vms\/db\.yaml/);
    const pruning = await vmrollPlan(['--repo', url, '--ref', 'retire', '--path', 'vms', '--sim-state', state, '--cache-dir', path.join(dir, 'cache-cli'), '--prune', '--output', 'markdown']);
    assert.equal(pruning.code, 0, pruning.stderr);
    assert.match(pruning.stdout, /2 deleted/);
    assert.match(pruning.stdout, /Pruned: this repository applied it and the commit no longer defines it/);
    assert.doesNotMatch(pruning.stdout, /orphaned VM/);
    assert.deepEqual(vmsInState(state), ALL, 'plan never deletes');
  });

  it('--prune never deletes a VM annotated vmroll.dev/prune: disabled; it is reported as an orphan with the reason', async () => {
    await work.git('checkout', '--quiet', '-B', 'keep', base);
    await work.push();
    await work.git('checkout', '--quiet', 'main');
    const cluster = new SimCluster();
    const r = new Reconciler({ source: new GitSource({ repo: url, cacheDir: path.join(dir, 'cache-keep') }), repoLabel: url, ref: 'keep', path: 'vms', cluster, prune: true, logger: silent });
    try {
      await r.reconcile();
      annotate(cluster, 'shop', 'db', { 'vmroll.dev/prune': 'disabled' });
      await branch('keep', async () => {
        await work.remove('vms/db.yaml');
        await work.remove('vms/batch.yaml');
      });
      const report = await r.reconcile();
      assert.deepEqual(report.plan.errors, []);
      assert.deepEqual(vmNames(cluster), ['shop/db', 'shop/web'], 'batch is pruned, db is kept');
      assert.deepEqual(report.plan.vms.map((v) => `${v.namespace}/${v.name}:${v.action}`), ['shop/web:none', 'jobs/batch:delete']);
      assert.equal(report.plan.orphans?.length, 1);
      assert.equal(report.plan.orphans?.[0]?.reason, 'pruneDisabled');
      assert.match(report.plan.orphans?.[0]?.message ?? '', /^defined in vms\/db\.yaml .*; not deleted \(annotated vmroll\.dev\/prune: disabled\)$/);
      assert.equal(report.summary.deleted, 1);
      assert.equal(report.summary.orphans, 1);
      // The next sync still keeps it and still says so.
      const again = await r.reconcile();
      assert.equal(again.writes, 0);
      assert.equal(again.plan.orphans?.[0]?.reason, 'pruneDisabled');
      assert.ok(cluster.store.get('VirtualMachine', 'shop', 'db'));
    } finally {
      r.close();
    }
  });

  it('--prune with the configured path gone deletes nothing: an error says the path does not exist', async () => {
    const { cluster, report } = await syncThenBreak('moved', async () => {
      await work.git('mv', 'vms', 'machines');
    });
    assert.deepEqual(vmNames(cluster), ALL, 'nothing pruned');
    assert.equal(report.writes, 0);
    assert.equal(report.plan.errors.length, 1);
    assert.equal(report.plan.errors[0]?.file, 'vms');
    assert.equal(report.plan.errors[0]?.line, null);
    assert.match(report.plan.errors[0]?.message ?? '', /^path "vms" does not exist at commit [0-9a-f]{12}: nothing is pruned, the 3 VMs this repository applied are kept/);
    assert.deepEqual(report.plan.orphans?.map((o) => `${o.namespace}/${o.name}:${o.reason}`), ['jobs/batch:pathMissing', 'shop/db:pathMissing', 'shop/web:pathMissing']);
    assert.equal(report.summary.deleted, 0);
  });

  it('--prune with no manifest file under the path deletes nothing and says so', async () => {
    const { cluster, report } = await syncThenBreak('emptied', async () => {
      for (const f of ['web.yaml', 'db.yaml', 'batch.yaml']) await work.remove(`vms/${f}`);
      await work.write('vms/README.md', 'moved elsewhere\n');
    });
    assert.deepEqual(vmNames(cluster), ALL);
    assert.match(report.plan.errors[0]?.message ?? '', /^path "vms" holds no manifest file \(\*\.yaml, \*\.yml\) at commit [0-9a-f]{12}: nothing is pruned/);
    assert.deepEqual(new Set(report.plan.orphans?.map((o) => o.reason)), new Set(['noManifests']));
  });

  it('--prune with manifests but no VirtualMachine among them deletes nothing and says so', async () => {
    const { cluster, report } = await syncThenBreak('services', async () => {
      for (const f of ['web.yaml', 'db.yaml', 'batch.yaml']) await work.remove(`vms/${f}`);
      await work.write('vms/svc.yaml', 'apiVersion: v1\nkind: Service\nmetadata:\n  name: web\n  namespace: shop\nspec:\n  ports: [{port: 80}]\n');
    });
    assert.deepEqual(vmNames(cluster), ALL);
    assert.match(report.plan.errors.find((e) => e.file === 'vms')?.message ?? '', /^path "vms" holds manifests at commit [0-9a-f]{12} but no VirtualMachine in them loads: nothing is pruned/);
    assert.deepEqual(new Set(report.plan.orphans?.map((o) => o.reason)), new Set(['noVirtualMachines']));
  });

  it('the guard holds back deletes only: with one VM left in Git, --prune deletes the other two', async () => {
    const { cluster, report } = await syncThenBreak('one-left', async () => {
      await work.remove('vms/db.yaml');
      await work.remove('vms/batch.yaml');
    });
    assert.deepEqual(report.plan.errors, []);
    assert.deepEqual(vmNames(cluster), ['shop/web']);
    assert.deepEqual(report.plan.orphans, []);
  });

  it('--prune on a branch that vanished deletes nothing: the sync fails naming the branch', async () => {
    const state = path.join(dir, 'vanished.json');
    await work.git('checkout', '--quiet', '-B', 'doomed', base);
    await work.push();
    await work.git('checkout', '--quiet', 'main');
    const common = ['--repo', url, '--branch', 'doomed', '--path', 'vms', '--sim-state', state, '--cache-dir', path.join(dir, 'cache-vanished'), '--prune', '--log-level', 'silent'];
    const first = await vmroll('run', ['--once', ...common]);
    assert.equal(first.code, 0, first.stderr);
    assert.deepEqual(vmsInState(state), ALL);
    await work.git('push', '--quiet', 'origin', '--delete', 'doomed');
    const second = await vmroll('run', ['--once', ...common]);
    assert.equal(second.code, 1);
    assert.match(second.stdout, /no branch, tag or commit named "doomed"; nothing is applied or pruned until it resolves again/);
    assert.deepEqual(vmsInState(state), ALL, 'every VM is still there');
  });
});

describe('ownership: one identity per repository', function () {
  this.timeout(120_000);
  let server: GitServer;
  let work: WorkingClone;
  let url: string;
  let dir: string;

  before(async () => {
    server = await startGitServer();
    dir = mkdtempSync(path.join(tmpdir(), 'vmroll-owner-'));
    url = await server.createBareRepo('fleet');
    work = await server.createWorkingClone('fleet');
    for (const f of ['web.yaml', 'db.yaml']) await work.write(`vms/${f}`, example(f));
    await work.commit('two VMs');
    await work.push();
  });
  after(async () => {
    await server?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  const identity = (): string => `${url.replace(/^http:\/\//, '').replace(/\.git$/, '')}//vms`;

  it("leaves another repository's VM alone with an error naming both, and never prunes it", async () => {
    const cluster = new SimCluster();
    const foreign = (name: string): Obj => {
      const vm = JSON.parse(JSON.stringify({ apiVersion: 'kubevirt.io/v1', kind: 'VirtualMachine', metadata: { name, namespace: 'shop' }, spec: { runStrategy: 'Halted', template: { spec: { domain: { devices: {} } } } } })) as Obj;
      (vm['metadata'] as Obj)['labels'] = { 'app.kubernetes.io/managed-by': 'vmroll' };
      (vm['metadata'] as Obj)['annotations'] = { 'vmroll.dev/source-repo': 'git.example.com/acme/other', 'vmroll.dev/source-path': `vms/${name}.yaml` };
      return vm;
    };
    await cluster.applyVirtualMachine(foreign('db'));
    await cluster.applyVirtualMachine(foreign('legacy-db'));
    const r = new Reconciler({ source: new GitSource({ repo: url, cacheDir: path.join(dir, 'c1') }), repoLabel: url, ref: 'main', path: 'vms', cluster, prune: true, logger: silent });
    try {
      const report = await r.reconcile();
      const dbLine = example('db.yaml').split('\n').findIndex((l) => l.startsWith('apiVersion')) + 1;
      assert.deepEqual(report.plan.errors, [
        { file: 'vms/db.yaml', line: dbLine, message: 'VirtualMachine shop/db is owned by git.example.com/acme/other (vms/db.yaml); not applied: remove it there first' },
      ]);
      assert.deepEqual(report.plan.vms.map((v) => `${v.namespace}/${v.name}:${v.action}`), ['shop/web:create']);
      const db = cluster.store.get('VirtualMachine', 'shop', 'db') as Obj;
      assert.equal(((db['metadata'] as Obj)['annotations'] as Obj)['vmroll.dev/source-repo'], 'git.example.com/acme/other', 'not taken over');
      assert.equal((db['spec'] as Obj)['runStrategy'], 'Halted', 'not applied');
      assert.ok(cluster.store.get('VirtualMachine', 'shop', 'legacy-db'), 'not pruned: not ours');
      assert.deepEqual(report.plan.orphans, []);
      // The plan of a pull request says the same and plans nothing for it.
      const source = new GitSource({ repo: url, cacheDir: path.join(dir, 'c1') });
      const cache = new ClusterCache(cluster);
      try {
        const planned = await planCommit({ source, commit: report.commit, path: 'vms', cache, repoLabel: url, prune: true });
        assert.deepEqual(planned.plan.errors, report.plan.errors);
        assert.deepEqual(planned.plan.vms.map((v) => `${v.namespace}/${v.name}:${v.action}`), ['shop/web:none']);
      } finally {
        cache.stop();
      }
    } finally {
      r.close();
    }
  });

  it('a VM an older release annotated with the URL is still ours: an orphan, then rewritten on the next apply', async () => {
    const cluster = new SimCluster();
    const legacy = (file: string, name: string): Obj => {
      const vm = JSON.parse(JSON.stringify({ apiVersion: 'kubevirt.io/v1', kind: 'VirtualMachine', metadata: { name, namespace: 'shop' }, spec: { runStrategy: 'Halted', template: { spec: { domain: { devices: {} } } } } })) as Obj;
      (vm['metadata'] as Obj)['labels'] = { 'app.kubernetes.io/managed-by': 'vmroll' };
      (vm['metadata'] as Obj)['annotations'] = { 'vmroll.dev/source-repo': url, 'vmroll.dev/source-path': file, 'vmroll.dev/source-commit': 'f'.repeat(40) };
      return vm;
    };
    await cluster.applyVirtualMachine(legacy('vms/web.yaml', 'web'));
    await cluster.applyVirtualMachine(legacy('vms/old.yaml', 'old'));
    // Same repository, a file outside this reconciler's path: not ours to prune.
    await cluster.applyVirtualMachine(legacy('other/elsewhere.yaml', 'elsewhere'));
    const r = new Reconciler({ source: new GitSource({ repo: url, cacheDir: path.join(dir, 'c2') }), repoLabel: url, ref: 'main', path: 'vms', cluster, prune: false, logger: silent });
    try {
      const report = await r.reconcile();
      assert.deepEqual(report.plan.errors, []);
      assert.equal(report.plan.vms.find((v) => v.name === 'web')?.action, 'update');
      const web = cluster.store.get('VirtualMachine', 'shop', 'web') as Obj;
      assert.equal(((web['metadata'] as Obj)['annotations'] as Obj)['vmroll.dev/source-repo'], identity(), 'rewritten to the identity');
      assert.deepEqual(report.plan.orphans?.map((o) => `${o.namespace}/${o.name}`), ['shop/old']);
    } finally {
      r.close();
    }
  });

  it('adopts a VM vmroll did not apply, and says so in the log', async () => {
    const cluster = new SimCluster();
    const manual = JSON.parse(JSON.stringify({ apiVersion: 'kubevirt.io/v1', kind: 'VirtualMachine', metadata: { name: 'web', namespace: 'shop', labels: { app: 'web' } }, spec: { runStrategy: 'Halted', template: { spec: { domain: { devices: {} } } } } })) as Obj;
    await cluster.applyVirtualMachine(manual);
    const lines: string[] = [];
    const logger = makeLogger('info', [], { write: (l: string) => (lines.push(l), true) } as unknown as NodeJS.WritableStream);
    const r = new Reconciler({ source: new GitSource({ repo: url, cacheDir: path.join(dir, 'c4') }), repoLabel: url, ref: 'main', path: 'vms', cluster, prune: true, logger });
    try {
      const report = await r.reconcile();
      assert.deepEqual(report.plan.errors, []);
      assert.equal(report.plan.vms.find((v) => v.name === 'web')?.action, 'update');
      const adopted = lines.map((l) => JSON.parse(l) as Obj).filter((l) => l['msg'] === 'adopting a VirtualMachine vmroll did not apply: applying the manifest over it');
      assert.deepEqual(adopted.map((l) => [l['vm'], l['file']]), [['shop/web', 'vms/web.yaml']]);
      const web = cluster.store.get('VirtualMachine', 'shop', 'web') as Obj;
      assert.equal(((web['metadata'] as Obj)['annotations'] as Obj)['vmroll.dev/source-repo'], identity());
    } finally {
      r.close();
    }
  });

  it('a CI checkout planned by path sees the ownership of the deployment that follows the URL', async () => {
    const state = path.join(dir, 'ci.json');
    const synced = await vmroll('run', ['--once', '--repo', url, '--path', 'vms', '--sim-state', state, '--cache-dir', path.join(dir, 'c3'), '--prune', '--log-level', 'silent', '--output', 'json']);
    assert.equal(synced.code, 0, synced.stderr);
    // The working clone is a checkout whose origin is the URL, like actions/checkout's.
    await work.remove('vms/db.yaml');
    await work.commit('retire db (not pushed: a pull request checkout)');
    const planned = await vmrollPlan(['--repo', work.dir, '--ref', 'main', '--path', 'vms', '--sim-state', state, '--prune', '--output', 'json']);
    assert.equal(planned.code, 0, planned.stderr);
    const plan = JSON.parse(planned.stdout) as VmPlan;
    assert.deepEqual(plan.vms.map((v) => `${v.namespace}/${v.name}:${v.action}`), ['shop/db:delete', 'shop/web:none'], 'in sync, and the removed VM is recognised as ours');
    assert.deepEqual(plan.errors, []);
    await work.git('reset', '--quiet', '--hard', 'HEAD~1');
  });
});
