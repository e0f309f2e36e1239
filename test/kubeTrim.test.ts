/**
 * What the kube backend's informers keep of live objects (cluster/trim.ts) against `vmroll sim`'s
 * API server on 127.0.0.1: the trimmed objects give the same plans as the whole ones, a field
 * removed in Git is still found through the trimmed managedFields, the VMI is kept whole but for
 * its managedFields, and watch bodies split anywhere parse to the same events.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parse } from 'yaml';
import { repositoryIdentity } from '../reconciler/apply/identity.ts';
import { ownedFieldsInSync, withOwnership } from '../reconciler/apply/ownership.ts';
import { ClusterCache } from '../reconciler/cluster/cache.ts';
import { KubeCluster, lineSplitter } from '../reconciler/cluster/kube.ts';
import { type ApiServer, startApiServer } from '../reconciler/cluster/sim/apiServer.ts';
import { SimCluster } from '../reconciler/cluster/sim/simCluster.ts';
import { FIELD_MANAGER, projectApply } from '../reconciler/cluster/ssa.ts';
import { LAST_APPLIED, trimLive } from '../reconciler/cluster/trim.ts';
import { makeLogger } from '../reconciler/commands/run.ts';
import { simKubeconfig } from '../reconciler/commands/sim.ts';
import { Reconciler } from '../reconciler/controller/reconcile.ts';
import { planCommit } from '../reconciler/plan/planCommit.ts';
import type { Obj } from '../reconciler/rollout/index.ts';
import { GitSource } from '../reconciler/source/gitSource.ts';
import { ROOT } from './helpers/cases.ts';
import { type GitServer, type WorkingClone, startGitServer } from './helpers/gitServer.ts';
import { until } from './helpers/waitFor.ts';

const KUBEVIRT = parse(readFileSync(path.join(ROOT, 'fixtures', 'example-cluster', 'kubevirt.yaml'), 'utf8')) as Obj;
const WEB = readFileSync(path.join(ROOT, 'fixtures', 'example-repo', 'vms', 'web.yaml'), 'utf8');
const DB = readFileSync(path.join(ROOT, 'fixtures', 'example-repo', 'vms', 'db.yaml'), 'utf8');
const silent = makeLogger('silent', []);
const metaOf = (o: Obj): Obj => (o['metadata'] ?? {}) as Obj;
const managed = (o: Obj): Obj[] => (metaOf(o)['managedFields'] ?? []) as Obj[];

describe('trimmed informer objects (vmroll sim over HTTP)', function () {
  this.timeout(120_000);
  let git: GitServer;
  let work: WorkingClone;
  let url: string;
  let dir: string;
  let sim: SimCluster;
  let server: ApiServer;
  let kubeconfig: string;
  const closers: Array<() => void> = [];

  const kube = (): KubeCluster => {
    const k = new KubeCluster({ kubeconfig: { file: kubeconfig }, retry: { attempts: 6, baseMs: 5, capMs: 50 }, requestTimeoutMs: 10_000, informer: { retryMs: 20 }, listPageSize: 1 });
    closers.push(() => k.close());
    return k;
  };
  const patch = async (pathname: string, manager: string, body: Obj): Promise<void> => {
    const res = await fetch(`${server.url}${pathname}?fieldManager=${manager}`, { method: 'PATCH', headers: { 'content-type': 'application/merge-patch+json' }, body: JSON.stringify(body) });
    assert.equal(res.status, 200, await res.text());
  };

  before(async () => {
    git = await startGitServer();
    dir = mkdtempSync(path.join(os.tmpdir(), 'vmroll-trim-'));
    url = await git.createBareRepo('fleet');
    work = await git.createWorkingClone('fleet');
    await work.write('vms/web.yaml', WEB.replace('    app: web\n', '    app: web\n    tier: frontend\n'));
    await work.write('vms/db.yaml', DB);
    await work.commit('web with a tier label; db');
    await work.push();
    sim = new SimCluster({ kubevirt: KUBEVIRT });
    sim.createObject({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'shop' } });
    server = await startApiServer({ cluster: sim, listen: '127.0.0.1:0', bookmarkIntervalMs: 100 });
    kubeconfig = path.join(dir, 'kubeconfig');
    writeFileSync(kubeconfig, simKubeconfig(server.url));
    const r = new Reconciler({ source: new GitSource({ repo: url, cacheDir: path.join(dir, 'cache') }), repoLabel: url, ref: 'main', path: 'vms', cluster: kube(), prune: false, logger: silent });
    closers.push(() => r.close());
    const first = await r.reconcile();
    assert.equal(first.writes, 2);
    // Other writers, as on a real cluster: KubeVirt's status updates, kubectl's client-side apply record and a
    // label; another applier co-owning vmroll's label `tier` (so applying without it keeps it: projectApply reads that entry).
    const vmPath = '/apis/kubevirt.io/v1/namespaces/shop/virtualmachines/web';
    await patch(`${vmPath}/status`, 'virt-controller', { status: { printableStatus: 'Running', volumeSnapshotStatuses: [{ name: 'rootdisk', enabled: false }] } });
    await patch(vmPath, 'kubectl-client-side-apply', { metadata: { annotations: { [LAST_APPLIED]: '{"kind":"VirtualMachine"}' }, labels: { owner: 'ops' } } });
    const res = await fetch(`${server.url}${vmPath}?fieldManager=ops-tool`, {
      method: 'PATCH',
      headers: { 'content-type': 'application/apply-patch+yaml' },
      body: JSON.stringify({ apiVersion: 'kubevirt.io/v1', kind: 'VirtualMachine', metadata: { name: 'web', namespace: 'shop', labels: { tier: 'frontend' } } }),
    });
    assert.equal(res.status, 200, await res.text());
  });
  after(async () => {
    for (const close of closers.splice(0)) close();
    await server?.close();
    await git?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it('keeps what the in-sync decision reads: a label removed in Git is found through the trimmed managedFields; plans equal the whole objects\u2019', async () => {
    await work.write('vms/web.yaml', WEB);
    const commit = await work.commit('web: no tier label');
    await work.push();

    const k = kube();
    const trimmedCache = new ClusterCache(k);
    const wholeCache = new ClusterCache(sim);
    closers.push(() => trimmedCache.stop(), () => wholeCache.stop());
    await trimmedCache.start();
    await wholeCache.start();
    // The backend lists page by page (1 object a page here) and still has every object.
    assert.equal(k.requests.get('list virtualmachines'), 2, 'two VMs listed one a page');
    await until('the informer has the VM as the server has it', () => {
      const t = trimmedCache.vms.get('shop/web');
      return t !== undefined && metaOf(t)['resourceVersion'] === metaOf(sim.store.get('VirtualMachine', 'shop', 'web') as Obj)['resourceVersion'];
    });

    const whole = sim.store.get('VirtualMachine', 'shop', 'web') as Obj;
    const trimmed = trimmedCache.vms.get('shop/web') as Obj;
    // The whole object has the status entry, the annotation and `time`; the trimmed one has none of them.
    assert.ok(managed(whole).some((e) => e['manager'] === 'virt-controller' && e['subresource'] === 'status'));
    assert.ok(typeof (metaOf(whole)['annotations'] as Obj)[LAST_APPLIED] === 'string');
    assert.equal(managed(trimmed).some((e) => e['manager'] === 'virt-controller'), false, 'a status-only entry is dropped');
    assert.ok(managed(trimmed).every((e) => e['time'] === undefined));
    assert.equal((metaOf(trimmed)['annotations'] as Obj)[LAST_APPLIED], undefined, 'kubectl\u2019s copy is dropped');
    assert.equal(((metaOf(trimmed)['labels'] as Obj) ?? {})['owner'], 'ops', 'another manager\u2019s label stays');
    const mine = (o: Obj): Obj[] => managed(o).filter((e) => e['manager'] === FIELD_MANAGER);
    assert.deepEqual(mine(trimmed).map((e) => e['fieldsV1']), mine(whole).map((e) => e['fieldsV1']), 'vmroll\u2019s entry is whole');
    assert.deepEqual(trimmed['spec'], whole['spec']);
    assert.deepEqual(trimmed['status'], whole['status']);

    // The in-sync decision and the projection of the apply are the same on both.
    const identity = await repositoryIdentity({ repo: url, path: 'vms' });
    const desired = withOwnership(parse(WEB) as Obj, 'shop', { repo: identity.id, file: 'vms/web.yaml', commit });
    assert.deepEqual(ownedFieldsInSync(desired, trimmed), ownedFieldsInSync(desired, whole));
    assert.equal(ownedFieldsInSync(desired, trimmed)?.inSync, false);
    assert.deepEqual(
      ownedFieldsInSync(desired, trimmed)
        ?.drift.filter((d) => d.drift === 'removed')
        .map((d) => d.path),
      ['metadata.labels.tier'],
    );
    const strip = (o: Obj | null): Obj | null => {
      if (o === null) return null;
      const c = structuredClone(o);
      delete metaOf(c)['managedFields'];
      delete (metaOf(c)['annotations'] as Obj)[LAST_APPLIED];
      return c;
    };
    const projected = strip(projectApply(trimmed, desired, FIELD_MANAGER));
    assert.deepEqual(projected, strip(projectApply(whole, desired, FIELD_MANAGER)));
    assert.equal((metaOf(projected as Obj)['labels'] as Obj)['tier'], 'frontend', 'the co-owned label stays');

    // `vmroll plan` over either gives the same plan: web updated (the label goes), db in sync.
    const source = new GitSource({ repo: url, cacheDir: path.join(dir, 'plan-cache') });
    await source.sync({ ref: 'main' });
    const fromTrimmed = await planCommit({ source, commit, path: 'vms', cache: trimmedCache, repoLabel: url, prune: false });
    const fromWhole = await planCommit({ source, commit, path: 'vms', cache: wholeCache, repoLabel: url, prune: false });
    assert.deepEqual(fromTrimmed.plan.vms.map((v) => `${v.name}:${v.action}`), ['db:none', 'web:update']);
    assert.deepEqual(fromTrimmed.plan, fromWhole.plan);

    // The VMIs the engine reads are whole (the simulator's carry no managedFields to drop).
    for (const [key, vmi] of trimmedCache.vmis) {
      const [ns = '', name = ''] = key.split('/');
      const w = structuredClone(sim.store.get('VirtualMachineInstance', ns, name) as Obj);
      delete metaOf(w)['managedFields'];
      assert.deepEqual(vmi, w);
    }
    assert.equal(trimmedCache.vmis.size, 2);
    assert.equal(trimmedCache.baseline(trimmed) !== null, true, 'the start baseline is kept');
    assert.deepEqual(trimmedCache.baseline(trimmed), wholeCache.baseline(whole));
  });
});

describe('trimLive', () => {
  const vm = (name: string, managedFields: Obj[], annotations: Obj = {}): Obj => ({
    metadata: { name, namespace: 'shop', annotations, managedFields },
    spec: { runStrategy: 'Always' },
  });
  const vmrollEntry = (time: string): Obj => ({ manager: 'vmroll', operation: 'Apply', apiVersion: 'kubevirt.io/v1', time, fieldsType: 'FieldsV1', fieldsV1: { 'f:spec': { 'f:runStrategy': {} } } });

  it('shares one frozen managedFields list among VMs applied alike, and keeps kubectl\u2019s copy when vmroll owns it', () => {
    const a = trimLive('VirtualMachine', 'kubevirt.io/v1', vm('a', [vmrollEntry('2026-01-01T00:00:00Z')])) as Obj;
    const b = trimLive('VirtualMachine', 'kubevirt.io/v1', vm('b', [vmrollEntry('2026-02-02T00:00:00Z')])) as Obj;
    assert.equal(metaOf(a)['managedFields'], metaOf(b)['managedFields']);
    assert.ok(Object.isFrozen(managed(a)[0]?.['fieldsV1']));
    assert.equal(a['apiVersion'], 'kubevirt.io/v1');
    assert.equal(a['kind'], 'VirtualMachine');
    const owning = { ...vmrollEntry('t'), fieldsV1: { 'f:metadata': { 'f:annotations': { [`f:${LAST_APPLIED}`]: {} } } } };
    const kept = trimLive('VirtualMachine', 'kubevirt.io/v1', vm('c', [owning], { [LAST_APPLIED]: '{}' })) as Obj;
    assert.equal((metaOf(kept)['annotations'] as Obj)[LAST_APPLIED], '{}');
    const dropped = trimLive('VirtualMachine', 'kubevirt.io/v1', vm('d', [vmrollEntry('t')], { [LAST_APPLIED]: '{}', keep: 'me' })) as Obj;
    assert.deepEqual(metaOf(dropped)['annotations'], { keep: 'me' });
  });

  it('drops managedFields of other kinds, and every revision but the start baselines', () => {
    const vmi = trimLive('VirtualMachineInstance', 'kubevirt.io/v1', vm('a', [vmrollEntry('t')])) as Obj;
    assert.equal(metaOf(vmi)['managedFields'], undefined);
    assert.deepEqual(vmi['spec'], { runStrategy: 'Always' });
    assert.equal(trimLive('ControllerRevision', 'apps/v1', { metadata: { name: 'web-5d4f8b' }, data: {} }), null);
    const start = trimLive('ControllerRevision', 'apps/v1', {
      metadata: { name: 'revision-start-vm-1234-2', namespace: 'shop', resourceVersion: '9', ownerReferences: [{ kind: 'VirtualMachine' }] },
      data: { spec: { x: 1 } },
      revision: 2,
    });
    assert.deepEqual(start, { apiVersion: 'apps/v1', kind: 'ControllerRevision', metadata: { name: 'revision-start-vm-1234-2', namespace: 'shop', resourceVersion: '9' }, data: { spec: { x: 1 } } });
  });
});

describe('lineSplitter', () => {
  it('gives the same lines however the body is cut, multi-byte characters included', () => {
    const events = [{ type: 'ADDED', object: { metadata: { name: 'wéb-😀' } } }, { type: 'BOOKMARK', object: { metadata: { resourceVersion: '7' } } }, { type: 'DELETED', object: { a: 'x'.repeat(300) } }];
    const body = Buffer.from(events.map((e) => `${JSON.stringify(e)}\n`).join(''));
    for (const size of [1, 2, 3, 7, 64, body.length]) {
      const lines: string[] = [];
      const s = lineSplitter((l) => lines.push(l));
      for (let i = 0; i < body.length; i += size) s.push(body.subarray(i, i + size));
      assert.deepEqual(lines.map((l) => JSON.parse(l) as unknown), events, `chunks of ${size} bytes`);
    }
  });
});
