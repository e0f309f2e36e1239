/**
 * The sync and PR review go through one pairing and one summary (reconciler/plan/): the same
 * commit, planned by PR review against a cluster and then synced into that cluster, gives the
 * same VM per action, the same refusals and the same counts. Over the real git server, the
 * embedded simulator and the GitHub emulator.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { pino } from 'pino';
import { SimCluster } from '../reconciler/cluster/sim/simCluster.ts';
import { Reconciler } from '../reconciler/controller/reconcile.ts';
import { type Summary, countPlan } from '../reconciler/plan/summary.ts';
import { statusDescription } from '../reconciler/report/markdown.ts';
import { GitHubReporter } from '../reconciler/report/github.ts';
import { ReviewState, reviewPullRequests } from '../reconciler/report/prReview.ts';
import type { Obj, VmPlan } from '../reconciler/rollout/index.ts';
import { GitSource } from '../reconciler/source/gitSource.ts';
import { startGitServer, type GitServer, type WorkingClone } from './helpers/gitServer.ts';
import { GitHubEmulator } from './helpers/githubEmulator.ts';

const KUBEVIRT: Obj = {
  apiVersion: 'kubevirt.io/v1',
  kind: 'KubeVirt',
  metadata: { name: 'kubevirt', namespace: 'kubevirt' },
  spec: { configuration: { developerConfiguration: { featureGates: [] } } },
  status: { observedKubeVirtVersion: 'v1.9.0' },
};
const TOKEN = 'ghp_pathsTestToken0123456789abcdef';
const silent = pino({ level: 'silent' });

function vmYaml(v: { name: string; namespace?: string; sockets?: number; cores?: number; memory?: string; comment?: string }): string {
  return `${v.comment !== undefined ? `# ${v.comment}\n` : ''}apiVersion: kubevirt.io/v1
kind: VirtualMachine
metadata:
  name: ${v.name}
  namespace: ${v.namespace ?? 'shop'}
spec:
  runStrategy: Always
  template:
    spec:
      domain:
        cpu:
          sockets: ${v.sockets ?? 2}
          cores: ${v.cores ?? 1}
          threads: 1
        memory:
          guest: ${v.memory ?? '2Gi'}
        devices: {}
`;
}

/** `namespace/name action` per VM, sorted: the pairing as a plan shows it. */
function actions(plan: VmPlan): string[] {
  return plan.vms.map((v) => `${v.namespace}/${v.name} ${v.action}`).sort();
}

/** The counts both paths know (a sync knows nothing of runStrategy power changes; a plan nothing of reverts). */
function states(s: Summary): Record<string, number | string> {
  return {
    vms: s.vms,
    inSync: s.inSync,
    created: s.created,
    liveUpdated: s.liveUpdated + (s.reverted ?? 0),
    // A plan predicts a migration; the sync sees it queued or running, whichever it caught.
    migrating: (s.migrating ?? 0) + (s.queued ?? 0),
    blocked: s.blocked ?? 0,
    blockedWhy: (s.blockedWhy ?? []).join(', '),
    evicted: s.evicted ?? 0,
    staged: s.staged,
    awaitingRestart: s.awaitingRestart ?? 0,
    held: s.held ?? 0,
    deleted: s.deleted,
    orphans: s.orphans ?? 0,
    warnings: s.warnings ?? 0,
    errors: s.errors,
  };
}

describe('one pairing and one summary for the sync and PR review', function () {
  this.timeout(120_000);
  let server: GitServer;
  let work: WorkingClone;
  let gh: GitHubEmulator;
  let dir: string;
  let reconciler: Reconciler | undefined;

  before(async function () {
    server = await startGitServer();
    gh = await GitHubEmulator.start({ token: TOKEN, repos: ['acme/fleet'] });
    dir = await mkdtemp(path.join(tmpdir(), 'vmroll-paths-'));
  });
  after(async function () {
    reconciler?.close();
    assert.deepEqual(gh?.violations ?? [], []);
    await gh?.stop();
    await server?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('PR review plans a commit as the sync then applies it: same VMs per action, same refusals, same counts', async function () {
    const url = await server.createBareRepo('fleet');
    work = await server.createWorkingClone('fleet');
    await work.write('vms/web.yaml', vmYaml({ name: 'web' }));
    await work.write('vms/db.yaml', vmYaml({ name: 'db', memory: '4Gi' }));
    await work.write('vms/steady.yaml', vmYaml({ name: 'steady' }));
    await work.write('vms/old.yaml', vmYaml({ name: 'old' }));
    const base = await work.commit('fleet');
    await work.push();

    // One namespace rule for both paths, as controller/repository.ts hands it to each.
    const refuseNamespace = (namespace: string): string | null => (namespace === 'vault' ? `namespace ${namespace} is not allowed for this repository` : null);
    const source = new GitSource({ repo: url, cacheDir: path.join(dir, 'cache') });
    const cluster = new SimCluster({ kubevirt: KUBEVIRT });
    reconciler = new Reconciler({ source, repoLabel: url, ref: 'main', path: 'vms', cluster, prune: true, refuseNamespace, logger: silent });
    const first = await reconciler.reconcile();
    assert.equal(first.summary.created, 4);

    // Every file the pull request touches is in its review's scope: web goes live (sockets), db
    // waits for a restart (cores), steady changes only a comment, cache is new, old is removed,
    // and spy sits in a namespace the repository may not write.
    await work.git('checkout', '--quiet', '-b', 'feature');
    await work.write('vms/web.yaml', vmYaml({ name: 'web', sockets: 4 }));
    await work.write('vms/db.yaml', vmYaml({ name: 'db', memory: '4Gi', cores: 2 }));
    await work.write('vms/steady.yaml', vmYaml({ name: 'steady', comment: 'reviewed' }));
    await work.write('vms/cache.yaml', vmYaml({ name: 'cache' }));
    await work.write('vms/spy.yaml', vmYaml({ name: 'spy', namespace: 'vault' }));
    await work.remove('vms/old.yaml');
    const head = await work.commit('feature');
    await work.git('push', '--quiet', '--force', 'origin', 'HEAD:refs/heads/feature', 'HEAD:refs/pull/1/head');
    gh.addPullRequest({ number: 1, headRef: 'feature', headSha: head, baseRef: 'main', baseSha: base, title: 'Change the shop' });

    // The PR-review path, against the cluster the sync keeps.
    const reporter = new GitHubReporter({ repo: 'acme/fleet', apiUrl: gh.baseUrl, token: TOKEN });
    const state = new ReviewState();
    const identity = reconciler.ownerIdentity;
    assert.ok(identity !== null);
    const [review] = await reviewPullRequests({ reporter, source, cache: reconciler.clusterCache, repoLabel: url, path: 'vms', prune: true, refuseNamespace, logger: silent, state, identity });
    assert.equal(review?.result, 'posted', review?.error);
    const reviewed = state.reviewed.get(1);
    assert.ok(reviewed !== undefined);

    // The sync path: the pull request merges (fast-forward) and the sync applies it.
    await work.git('push', '--quiet', 'origin', 'HEAD:refs/heads/main');
    const synced = await reconciler.reconcile();
    assert.equal(synced.commit, head);

    // The same pairing: every VM in the same action, the same VM refused with the same words.
    assert.deepEqual(actions(synced.plan), actions(reviewed.plan));
    assert.deepEqual(actions(synced.plan), ['shop/cache create', 'shop/db update', 'shop/old delete', 'shop/steady none', 'shop/web update']);
    const refusal = (p: VmPlan): string[] => p.errors.filter((e) => e.file === 'vms/spy.yaml').map((e) => `${e.file}:${e.line ?? ''} ${e.message}`);
    assert.deepEqual(refusal(synced.plan), refusal(reviewed.plan));
    assert.equal(refusal(synced.plan).length, 1);

    // The same counts: what the review predicted is what the sync found, state by state.
    const predicted = countPlan(reviewed.plan, reviewed.power);
    assert.deepEqual(states(synced.summary), states(predicted));
    assert.deepEqual(states(synced.summary), {
      vms: 5,
      inSync: 1,
      created: 1,
      // web's sockets are patched into its VMI, but the cluster lists no LiveMigrate method: they wait for a restart.
      liveUpdated: 0,
      migrating: 0,
      blocked: 1,
      blockedWhy: 'no LiveMigrate method',
      evicted: 0,
      staged: 0,
      awaitingRestart: 1,
      held: 0,
      deleted: 1,
      orphans: 0,
      warnings: 0,
      errors: 1,
    });
    // And the status the pull request shows is the sync's summary read the pull request's way.
    assert.deepEqual(states(synced.summary), states(reviewed.summary));
    const status = gh.statuses(head).find((s) => s.context === 'vmroll/plan');
    assert.equal(status?.description, statusDescription(synced.summary));
  });
});
