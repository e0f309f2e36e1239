/**
 * `vmroll run --github-repo`: after each sync a `vmroll/sync` status on the synced commit
 * (`pending` only when there is work, nothing when nothing changed), then the review of open
 * pull requests (status `vmroll/plan` on the head and one sticky comment), against the GitHub
 * emulator that checks every request and response with GitHub's own description.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { startApiServer } from '../reconciler/cluster/sim/apiServer.ts';
import { SimCluster } from '../reconciler/cluster/sim/simCluster.ts';
import { makeLogger, startRun } from '../reconciler/commands/run.ts';
import { simKubeconfig } from '../reconciler/commands/sim.ts';
import type { RunConfig } from '../reconciler/config.ts';
import { SUMMARY_MAX_CHARS } from '../reconciler/plan/summary.ts';
import { PLAN_MARKER } from '../reconciler/report/reporter.ts';
import { ROOT } from './helpers/cases.ts';
import { type GitServer, type WorkingClone, startGitServer } from './helpers/gitServer.ts';
import { GitHubEmulator } from './helpers/githubEmulator.ts';
import { WAIT_MS, until } from './helpers/waitFor.ts';

const EXAMPLE = path.join(ROOT, 'fixtures', 'example-repo', 'vms');
const KUBEVIRT = path.join(ROOT, 'fixtures', 'example-cluster', 'kubevirt.yaml');
const TOKEN = 'ghp_runE2eTokenThatMustNeverBeLogged0001';

describe('vmroll run --github-repo', function () {
  this.timeout(60_000);
  let git: GitServer;
  let work: WorkingClone;
  let repo: string;
  let dir: string;
  let gh: GitHubEmulator;

  before(async () => {
    git = await startGitServer();
    dir = mkdtempSync(path.join(tmpdir(), 'vmroll-run-gh-'));
    repo = await git.createBareRepo('fleet');
    work = await git.createWorkingClone('fleet');
    for (const f of ['web.yaml', 'db.yaml', 'batch.yaml']) await work.write(`vms/${f}`, readFileSync(path.join(EXAMPLE, f), 'utf8'));
    await work.commit('three VMs');
    await work.push();
    gh = await GitHubEmulator.start({ token: TOKEN, repos: ['acme/fleet'] });
  });
  after(async () => {
    await gh?.stop();
    await git?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it('posts statuses on synced commits, reviews open pull requests, and stays quiet when nothing changed', async () => {
    const lines: string[] = [];
    const logger = makeLogger('debug', [TOKEN], { write: (l: string) => (lines.push(l), true) } as unknown as NodeJS.WritableStream);
    const config: RunConfig = {
      repo, ref: 'main', path: 'vms', intervalMs: 3_600_000, once: false, cluster: 'sim', kubeconfig: undefined, simState: undefined, simKubevirt: KUBEVIRT,
      example: false, output: 'json', prune: false, listen: undefined, cacheDir: path.join(dir, 'cache'), logLevel: 'debug', gitToken: undefined, webhookSecret: undefined,
      gitHost: { kind: 'github', repo: 'acme/fleet', apiUrl: gh.baseUrl, token: TOKEN, targetUrl: 'https://vmroll.example/fleet' },
    };
    const handle = await startRun(config, { out: () => {}, err: () => {} }, logger);
    try {
      const main1 = await work.git('rev-parse', 'HEAD');
      await handle.trigger('test');
      assert.equal(await handle.flushReports(WAIT_MS), true);
      const first = gh.statuses(main1).filter((s) => s.context === 'vmroll/sync');
      assert.deepEqual(first.map((s) => s.state), ['pending', 'success'], 'pending while applying, then the outcome');
      assert.equal(first[1]?.description, '0 in sync · 3 created');
      assert.equal(first[1]?.targetUrl, 'https://vmroll.example/fleet');

      // A pull request that changes web's firmware (staged until restart) and db's sockets (live).
      await work.git('checkout', '--quiet', '-b', 'resize');
      await work.write('vms/web.yaml', readFileSync(path.join(EXAMPLE, 'web.yaml'), 'utf8').replace('cores: 1', 'cores: 2'));
      await work.write('vms/db.yaml', readFileSync(path.join(EXAMPLE, 'db.yaml'), 'utf8').replace('sockets: 4', 'sockets: 6'));
      const head = await work.commit('resize web and db');
      await work.git('push', '--quiet', 'origin', 'HEAD:refs/heads/resize', 'HEAD:refs/pull/1/head');
      await work.git('checkout', '--quiet', 'main');
      gh.addPullRequest({ number: 1, headRef: 'resize', headSha: head, baseRef: 'main', baseSha: main1, title: 'Resize' });

      await handle.trigger('test');
      assert.equal(await handle.flushReports(WAIT_MS), true);
      assert.equal(gh.statuses(main1).filter((s) => s.context === 'vmroll/sync').length, 2, 'nothing changed: no new status on main');
      const plan = gh.statuses(head).filter((s) => s.context === 'vmroll/plan');
      assert.equal(plan.length, 1);
      assert.match(plan[0]?.description ?? '', /staged until restart/);
      const comments = gh.comments(1);
      assert.equal(comments.length, 1);
      assert.ok(comments[0]?.body.startsWith(PLAN_MARKER));
      assert.match(comments[0]?.body ?? '', /shop\/web/);
      assert.match(comments[0]?.body ?? '', /shop\/db/);

      // Again with nothing new anywhere: no request writes anything.
      const writesBefore = gh.requests.filter((r) => r.method !== 'GET').length;
      await handle.trigger('test');
      assert.equal(await handle.flushReports(WAIT_MS), true);
      assert.equal(gh.requests.filter((r) => r.method !== 'GET').length, writesBefore, 'an idle sync and review post nothing');

      // A new commit on main: statuses on the new commit only.
      await work.write('vms/batch.yaml', readFileSync(path.join(EXAMPLE, 'batch.yaml'), 'utf8') + '\n# touched\n');
      const main2 = await work.commit('touch batch');
      await work.push();
      await handle.trigger('test');
      assert.equal(await handle.flushReports(WAIT_MS), true);
      assert.deepEqual(gh.statuses(main2).filter((s) => s.context === 'vmroll/sync').map((s) => s.state), ['success'], 'no write to do: no pending, just the result');
    } finally {
      await handle.stop();
    }
    assert.deepEqual(gh.violations, []);
    assert.ok(!lines.join('\n').includes(TOKEN), 'the token never reaches the log');
  });

  it('an API server that fails after the commit is resolved gets a failure status with the cause, then success once the retry syncs', async () => {
    const lines: string[] = [];
    const logger = makeLogger('debug', [TOKEN], { write: (l: string) => (lines.push(l), true) } as unknown as NodeJS.WritableStream);
    const sim = new SimCluster();
    for (const ns of ['shop', 'jobs']) sim.createObject({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: ns } });
    const api = await startApiServer({ cluster: sim, listen: '127.0.0.1:0', bookmarkIntervalMs: 200 });
    const kubeconfig = path.join(dir, 'sim-kubeconfig');
    writeFileSync(kubeconfig, simKubeconfig(api.url));
    await work.write('vms/web.yaml', readFileSync(path.join(EXAMPLE, 'web.yaml'), 'utf8') + '\n# api outage\n');
    const commit = await work.commit('touch web');
    await work.push();
    // Every resource request answers 503: the cluster cannot be listed, though the commit resolves.
    api.setFaults({ errorRate: 1, errorStatus: 503 });
    const config: RunConfig = {
      repo, ref: 'main', path: 'vms', intervalMs: 3_600_000, once: false, cluster: 'kube', kubeconfig: { file: kubeconfig }, simState: undefined, simKubevirt: undefined,
      example: false, output: 'json', prune: false, listen: undefined, cacheDir: path.join(dir, 'cache-api'), logLevel: 'debug', gitToken: undefined, webhookSecret: undefined,
      gitHost: { kind: 'github', repo: 'acme/fleet', apiUrl: gh.baseUrl, token: TOKEN, targetUrl: undefined },
    };
    const handle = await startRun(config, { out: () => {}, err: () => {} }, logger);
    try {
      handle.start();
      assert.equal(await handle.trigger('test'), null, 'the sync fails as a whole');
      assert.equal(await handle.flushReports(WAIT_MS), true);
      const failed = gh.statuses(commit).filter((s) => s.context === 'vmroll/sync');
      assert.deepEqual(failed.map((s) => s.state), ['failure'], 'the failure is posted on the resolved commit');
      const description = failed[0]?.description ?? '';
      // What was asked of the API server, and its own answer (a 503 Status).
      assert.match(description, /^sync failed \(retrying with backoff\): (listing the cluster|list \w+): .*unable to handle the request/);
      assert.ok(description.length <= SUMMARY_MAX_CHARS, description);
      assert.ok(!description.includes('\n'));
      assert.equal(await handle.metrics.syncFailureCount('default', 'transient'), 1);
      assert.match(await handle.metrics.metricsText(), /vmroll_sync_failures_total\{repository="default",kind="transient"\} 1/);

      // The API server recovers; the backoff retry (seconds, not the hour) syncs and posts success.
      api.setFaults({});
      await until('the retry to post success on the commit', async () => {
        await handle.flushReports(1_000);
        return gh.statuses(commit).some((s) => s.context === 'vmroll/sync' && s.state === 'success');
      }, { timeoutMs: WAIT_MS * 2, detail: () => JSON.stringify(gh.statuses(commit)) });
      const after = gh.statuses(commit).filter((s) => s.context === 'vmroll/sync').map((s) => s.state);
      assert.equal(after[0], 'failure');
      assert.equal(after.at(-1), 'success');
      assert.ok(sim.store.get('VirtualMachine', 'shop', 'web') !== undefined, 'the retry applied the commit');
    } finally {
      await handle.stop();
      await api.close();
    }
    assert.deepEqual(gh.violations, []);
    assert.ok(!lines.join('\n').includes(TOKEN), 'the token never reaches the log');
  });

  it('a missing branch has no commit to carry a status: nothing is posted, the failure is logged and counted', async () => {
    const lines: string[] = [];
    const logger = makeLogger('debug', [TOKEN], { write: (l: string) => (lines.push(l), true) } as unknown as NodeJS.WritableStream);
    const config: RunConfig = {
      repo, ref: 'gone', path: 'vms', intervalMs: 3_600_000, once: false, cluster: 'sim', kubeconfig: undefined, simState: undefined, simKubevirt: KUBEVIRT,
      example: false, output: 'json', prune: false, listen: undefined, cacheDir: path.join(dir, 'cache-gone'), logLevel: 'debug', gitToken: undefined, webhookSecret: undefined,
      gitHost: { kind: 'github', repo: 'acme/fleet', apiUrl: gh.baseUrl, token: TOKEN, targetUrl: undefined },
    };
    const handle = await startRun(config, { out: () => {}, err: () => {} }, logger);
    try {
      const writesBefore = gh.requests.filter((r) => r.method !== 'GET').length;
      assert.equal(await handle.trigger('test'), null);
      assert.equal(await handle.flushReports(WAIT_MS), true);
      assert.equal(gh.requests.filter((r) => r.method !== 'GET').length, writesBefore, 'no status: there is no commit to post it on');
      assert.equal(await handle.metrics.syncFailureCount('default', 'stalled'), 1);
      const events = lines.map((l) => JSON.parse(l) as Record<string, unknown>);
      assert.equal(events.filter((e) => e['msg'] === 'sync failed' && e['kind'] === 'stalled').length, 1);
      assert.equal(events.filter((e) => /^needs a person: .*"gone"/.test(String(e['msg']))).length, 1);
    } finally {
      await handle.stop();
    }
  });

  it('a pull request adding a VM in a namespace the repository may not write is refused in its plan, as the sync refuses it', async () => {
    const gated = await git.createBareRepo('gated');
    const clone = await git.createWorkingClone('gated');
    for (const f of ['web.yaml', 'db.yaml']) await clone.write(`vms/${f}`, readFileSync(path.join(EXAMPLE, f), 'utf8'));
    const base = await clone.commit('shop VMs');
    await clone.push();
    const emulator = await GitHubEmulator.start({ token: TOKEN, repos: ['acme/gated'] });
    const gitHost = { kind: 'github' as const, repo: 'acme/gated', apiUrl: emulator.baseUrl, token: TOKEN, targetUrl: undefined };
    const config: RunConfig = {
      repo: gated, ref: 'main', path: 'vms', intervalMs: 3_600_000, once: false, cluster: 'sim', kubeconfig: undefined, simState: undefined, simKubevirt: KUBEVIRT,
      example: false, output: 'json', prune: true, listen: undefined, cacheDir: path.join(dir, 'cache-gated'), logLevel: 'silent', gitToken: undefined, webhookSecret: undefined, gitHost,
      repositories: [{ name: 'gated', repo: gated, ref: 'main', path: 'vms', namespaces: ['shop'], intervalMs: 3_600_000, prune: true, gitToken: undefined, gitHost }],
    };
    const handle = await startRun(config, { out: () => {}, err: () => {} }, makeLogger('silent', []));
    try {
      await handle.trigger('test');
      // A pull request that adds batch, a VM of namespace jobs, beside a live change to db.
      await clone.git('checkout', '--quiet', '-b', 'rogue');
      await clone.write('vms/batch.yaml', readFileSync(path.join(EXAMPLE, 'batch.yaml'), 'utf8'));
      await clone.write('vms/db.yaml', readFileSync(path.join(EXAMPLE, 'db.yaml'), 'utf8').replace('sockets: 4', 'sockets: 6'));
      const head = await clone.commit('add batch in jobs');
      await clone.git('push', '--quiet', 'origin', 'HEAD:refs/heads/rogue', 'HEAD:refs/pull/7/head');
      await clone.git('checkout', '--quiet', 'main');
      emulator.addPullRequest({ number: 7, headRef: 'rogue', headSha: head, baseRef: 'main', baseSha: base, title: 'Add batch' });
      await handle.trigger('test');
      assert.equal(await handle.flushReports(WAIT_MS), true);

      const plan = emulator.statuses(head).filter((s) => s.context === 'vmroll/plan');
      assert.deepEqual(plan.map((s) => s.state), ['failure'], 'the merge would fail to apply batch: the plan says so');
      // db's 6 sockets go onto its VMI, but the cluster lists no LiveMigrate method: they reach the guest only at a restart.
      assert.match(plan[0]?.description ?? '', /^1 error · 1 blocked until restart: no LiveMigrate method/);
      assert.doesNotMatch(plan[0]?.description ?? '', /created/, 'batch is not promised as created');
      const body = emulator.comments(7)[0]?.body ?? '';
      assert.match(body, /vms\/batch\.yaml:2<\/code>: namespace &quot;jobs&quot; is not one repository gated may write \(allowed: shop\); the VM is not applied|vms\/batch\.yaml:2<\/code>: namespace "jobs" is not one repository gated may write \(allowed: shop\); the VM is not applied/);
      assert.doesNotMatch(body, /#### jobs\/batch/, 'no section plans batch');
      assert.match(body, /#### shop\/db/, 'the allowed VM is still planned');
      assert.deepEqual(emulator.violations, []);
    } finally {
      await handle.stop();
      await emulator.stop();
    }
  });
});
