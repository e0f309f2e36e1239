/**
 * Fields removed in Git are removed in the cluster, whichever process applies: against the
 * simulator's Kubernetes API server over HTTP (which keeps managedFields as Kubernetes does), a
 * fresh Reconciler decides "in sync" from what field manager vmroll owns on the live VM, not
 * from what it remembers applying.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parse } from 'yaml';
import { repositoryIdentity } from '../reconciler/apply/identity.ts';
import { appliedIn, ownedFieldsInSync, withOwnership } from '../reconciler/apply/ownership.ts';
import { ClusterCache } from '../reconciler/cluster/cache.ts';
import { KubeCluster } from '../reconciler/cluster/kube.ts';
import { type ApiServer, startApiServer } from '../reconciler/cluster/sim/apiServer.ts';
import { SimCluster } from '../reconciler/cluster/sim/simCluster.ts';
import { makeLogger } from '../reconciler/commands/run.ts';
import { simKubeconfig } from '../reconciler/commands/sim.ts';
import { Reconciler } from '../reconciler/controller/reconcile.ts';
import { planCommit } from '../reconciler/plan/planCommit.ts';
import type { Obj } from '../reconciler/rollout/index.ts';
import { GitSource } from '../reconciler/source/gitSource.ts';
import { ROOT } from './helpers/cases.ts';
import { type GitServer, type WorkingClone, startGitServer } from './helpers/gitServer.ts';

const KUBEVIRT = parse(readFileSync(path.join(ROOT, 'fixtures', 'example-cluster', 'kubevirt.yaml'), 'utf8')) as Obj;
const WEB = readFileSync(path.join(ROOT, 'fixtures', 'example-repo', 'vms', 'web.yaml'), 'utf8');
const DB = readFileSync(path.join(ROOT, 'fixtures', 'example-repo', 'vms', 'db.yaml'), 'utf8');
const silent = makeLogger('silent', []);

const metaOf = (o: Obj): Obj => (o['metadata'] ?? {}) as Obj;
const templateSpec = (o: Obj): Obj => ((((o['spec'] ?? {}) as Obj)['template'] ?? {}) as Obj)['spec'] as Obj;

describe("in sync is what vmroll's field manager owns on the live VM (vmroll sim over HTTP)", function () {
  this.timeout(120_000);
  let git: GitServer;
  let work: WorkingClone;
  let url: string;
  let dir: string;
  let sim: SimCluster;
  let server: ApiServer;
  let kubeconfig: string;
  const closers: Array<() => void> = [];

  /** A new process's view: a new API client, its own informers, a new Reconciler with no memory. */
  const freshReconciler = (): Reconciler => {
    const kube = new KubeCluster({ kubeconfig: { file: kubeconfig }, retry: { attempts: 6, baseMs: 5, capMs: 50 }, requestTimeoutMs: 10_000, informer: { retryMs: 20 } });
    const r = new Reconciler({ source: new GitSource({ repo: url, cacheDir: path.join(dir, 'cache') }), repoLabel: url, ref: 'main', path: 'vms', cluster: kube, prune: false, logger: silent });
    closers.push(() => r.close(), () => kube.close());
    return r;
  };
  const liveWeb = (): Obj => sim.store.get('VirtualMachine', 'shop', 'web') as Obj;

  before(async () => {
    git = await startGitServer();
    dir = mkdtempSync(path.join(os.tmpdir(), 'vmroll-owned-'));
    url = await git.createBareRepo('fleet');
    work = await git.createWorkingClone('fleet');
    await work.write('vms/web.yaml', WEB.replace('    app: web\n', '    app: web\n    tier: frontend\n'));
    await work.write('vms/db.yaml', DB);
    await work.commit('web with a tier label and a nodeSelector; db');
    await work.push();
    sim = new SimCluster({ kubevirt: KUBEVIRT });
    sim.createObject({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'shop' } });
    server = await startApiServer({ cluster: sim, listen: '127.0.0.1:0', bookmarkIntervalMs: 100 });
    kubeconfig = path.join(dir, 'kubeconfig');
    writeFileSync(kubeconfig, simKubeconfig(server.url));
  });
  after(async () => {
    for (const close of closers.splice(0)) close();
    await server?.close();
    await git?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it('a new Reconciler removes the label and the spec field Git removed; with nothing changed, another writes nothing', async () => {
    const first = await freshReconciler().reconcile();
    assert.deepEqual(first.plan.errors, []);
    assert.equal(first.writes, 2);
    assert.equal((metaOf(liveWeb())['labels'] as Obj)['tier'], 'frontend');
    assert.deepEqual(templateSpec(liveWeb())['nodeSelector'], { 'kubernetes.io/arch': 'amd64' });

    await work.write('vms/web.yaml', WEB.replace(/      nodeSelector:\n        kubernetes\.io\/arch: amd64\n/, ''));
    const commit = await work.commit('web: no tier label, no nodeSelector');
    await work.push();

    // What the old rule saw: every field the new manifest sets is on the live VM, so "in sync".
    const identity = await repositoryIdentity({ repo: url, path: 'vms' });
    const manifest = parse(WEB.replace(/      nodeSelector:\n        kubernetes\.io\/arch: amd64\n/, '')) as Obj;
    const desired = withOwnership(manifest, 'shop', { repo: identity.id, file: 'vms/web.yaml', commit });
    assert.equal(appliedIn(desired, liveWeb()), true, 'a subset test cannot see a removal');
    const byFields = ownedFieldsInSync(desired, liveWeb());
    assert.ok(byFields !== null);
    assert.equal(byFields.inSync, false);
    assert.deepEqual(
      byFields.drift.filter((d) => d.drift === 'removed').map((d) => d.path),
      ['metadata.labels.tier', 'spec.template.spec.nodeSelector["kubernetes.io/arch"]'],
    );

    // `vmroll plan` from a fresh cache says update too, before anything is applied.
    const kube = new KubeCluster({ kubeconfig: { file: kubeconfig }, informer: { retryMs: 20 } });
    const cache = new ClusterCache(kube);
    closers.push(() => cache.stop(), () => kube.close());
    const source = new GitSource({ repo: url, cacheDir: path.join(dir, 'plan-cache') });
    await source.sync({ ref: 'main' });
    const planned = await planCommit({ source, commit, path: 'vms', cache, repoLabel: url, prune: false });
    assert.deepEqual(planned.plan.vms.map((v) => `${v.name}:${v.action}`), ['db:none', 'web:update']);

    const second = await freshReconciler().reconcile();
    assert.deepEqual(second.plan.errors, []);
    assert.equal(second.writes, 1, 'only web is written');
    assert.equal(second.plan.vms.find((v) => v.name === 'web')?.action, 'update');
    assert.equal(second.plan.vms.find((v) => v.name === 'db')?.action, 'none');
    const web = liveWeb();
    assert.equal((metaOf(web)['labels'] as Obj)['tier'], undefined, 'the label is gone from the cluster');
    assert.equal((metaOf(web)['labels'] as Obj)['app'], 'web');
    assert.equal(templateSpec(web)['nodeSelector'], undefined, 'the spec field is gone from the cluster');

    const third = await freshReconciler().reconcile();
    assert.deepEqual(third.plan.errors, []);
    assert.equal(third.writes, 0, 'nothing changed: nothing written');
    assert.deepEqual(third.plan.vms.map((v) => `${v.name}:${v.action}`), ['db:none', 'web:none']);
    const after = await planCommit({ source, commit, path: 'vms', cache, repoLabel: url, prune: false });
    assert.deepEqual(after.plan.vms.map((v) => `${v.name}:${v.action}`), ['db:none', 'web:none']);
  });

  it("a field another manager changed is vmroll's no more: a new Reconciler applies it back", async () => {
    // kubectl edit (an Update by another manager) takes runStrategy from vmroll.
    const res = await fetch(`${server.url}/apis/kubevirt.io/v1/namespaces/shop/virtualmachines/db?fieldManager=kubectl-edit`, {
      method: 'PATCH',
      headers: { 'content-type': 'application/merge-patch+json' },
      body: JSON.stringify({ spec: { runStrategy: 'Halted' } }),
    });
    assert.equal(res.status, 200, await res.text());
    const report = await freshReconciler().reconcile();
    assert.equal(report.writes, 1);
    assert.equal(report.plan.vms.find((v) => v.name === 'db')?.action, 'update');
    assert.equal(((sim.store.get('VirtualMachine', 'shop', 'db') as Obj)['spec'] as Obj)['runStrategy'], 'Always');
  });
});
