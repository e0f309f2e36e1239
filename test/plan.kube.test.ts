/**
 * Planning against a cluster that tracks managedFields (vmroll sim over HTTP, as a real API
 * server does): fields other managers own are not vmroll's to remove, so they are not changes.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parse } from 'yaml';
import { ClusterCache } from '../reconciler/cluster/cache.ts';
import { KubeCluster } from '../reconciler/cluster/kube.ts';
import { type ApiServer, startApiServer } from '../reconciler/cluster/sim/apiServer.ts';
import { SimCluster } from '../reconciler/cluster/sim/simCluster.ts';
import { simKubeconfig } from '../reconciler/commands/sim.ts';
import { makeLogger } from '../reconciler/commands/run.ts';
import { Reconciler } from '../reconciler/controller/reconcile.ts';
import { planCommit } from '../reconciler/plan/planCommit.ts';
import type { Obj } from '../reconciler/rollout/index.ts';
import { GitSource } from '../reconciler/source/gitSource.ts';
import { ROOT } from './helpers/cases.ts';
import { WAIT_MS } from './helpers/waitFor.ts';

const EXAMPLE = path.join(ROOT, 'fixtures', 'example-repo', 'vms', 'web.yaml');
const KUBEVIRT = parse(readFileSync(path.join(ROOT, 'fixtures', 'example-cluster', 'kubevirt.yaml'), 'utf8')) as Obj;

describe('planCommit against a server that tracks managedFields', function () {
  this.timeout(60_000);
  let dir: string;
  let server: ApiServer;
  let kube: KubeCluster;

  before(async () => {
    dir = mkdtempSync(path.join(os.tmpdir(), 'vmroll-plan-kube-'));
    const sim = new SimCluster({ kubevirt: KUBEVIRT });
    sim.createObject({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'shop' } });
    server = await startApiServer({ cluster: sim, listen: '127.0.0.1:0' });
    writeFileSync(path.join(dir, 'kubeconfig'), simKubeconfig(server.url));
    kube = new KubeCluster({ kubeconfig: { file: path.join(dir, 'kubeconfig') } });
  });
  after(async () => {
    kube?.close();
    await server?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('keeps a field another manager added, and still sees vmroll’s own changes', async () => {
    const repo = path.join(dir, 'repo');
    mkdirSync(path.join(repo, 'vms'), { recursive: true });
    const git = (...args: string[]): string => execFileSync('git', ['-c', 'user.name=t', '-c', 'user.email=t@t', '-c', 'init.defaultBranch=main', ...args], { cwd: repo }).toString().trim();
    git('init', '--quiet');
    writeFileSync(path.join(repo, 'vms', 'web.yaml'), readFileSync(EXAMPLE, 'utf8'));
    git('add', '-A');
    git('commit', '--quiet', '-m', 'web');
    const source = new GitSource({ repo });
    // The VM exists before vmroll applies it, with a field another manager set at creation (as
    // KubeVirt's defaulting sets firmware.uuid): it is in the start baseline, and vmroll's manifest lacks it.
    const created = parse(readFileSync(EXAMPLE, 'utf8')) as Obj;
    (((created['spec'] as Obj)['template'] as Obj)['spec'] as Obj)['domain'] = {
      ...((((created['spec'] as Obj)['template'] as Obj)['spec'] as Obj)['domain'] as Obj),
      firmware: { uuid: '5d307ca9-b3ef-428c-8861-06e72d69f223' },
    };
    const res = await fetch(`${server.url}/apis/kubevirt.io/v1/namespaces/shop/virtualmachines?fieldManager=virt-api`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(created),
    });
    assert.equal(res.status, 201);
    const reconciler = new Reconciler({ source, repoLabel: repo, ref: 'main', path: 'vms', cluster: kube, prune: false, logger: makeLogger('silent', []), settleTimeoutMs: WAIT_MS });
    const synced = await reconciler.reconcile();
    assert.equal(synced.writes, 1, 'vmroll applies its ownership labels');
    assert.equal(synced.summary.awaitingRestart, 0, 'server-side apply kept the uuid vmroll does not manage');
    const cache: ClusterCache = reconciler.clusterCache;

    const same = await planCommit({ source, commit: synced.commit, path: 'vms', cache, repoLabel: repo, prune: false });
    const web = same.plan.vms.find((v) => v.name === 'web');
    assert.equal(web?.action, 'none', JSON.stringify(web?.changes));
    assert.deepEqual(web?.changes, [], 'what another manager owns is not a removal');

    writeFileSync(path.join(repo, 'vms', 'web.yaml'), readFileSync(EXAMPLE, 'utf8').replace('sockets: 2', 'sockets: 3'));
    git('commit', '--quiet', '-am', 'web: 3 sockets');
    const next = await planCommit({ source, commit: git('rev-parse', 'HEAD'), path: 'vms', cache, repoLabel: repo, prune: false });
    const changed = next.plan.vms.find((v) => v.name === 'web');
    assert.deepEqual(changed?.changes.map((c) => `${c.path}:${c.rollout}`), ['spec.template.spec.domain.cpu.sockets:live']);
    assert.equal(changed?.restartRequired, false);
    reconciler.close();
  });
});
