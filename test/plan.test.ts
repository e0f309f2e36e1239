// Planning commits and pull requests against a live (simulated) cluster, end to end over real
// sockets: git-http-backend for Git, the embedded simulator for KubeVirt, and the GitHub and
// Gitea emulators for the Git host.
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Writable } from 'node:stream';
import { pino, type Logger } from 'pino';
import { ClusterCache } from '../reconciler/cluster/cache.ts';
import { startApiServer } from '../reconciler/cluster/sim/apiServer.ts';
import { SimCluster } from '../reconciler/cluster/sim/simCluster.ts';
import { main } from '../reconciler/cli.ts';
import { runPlan } from '../reconciler/commands/plan.ts';
import { simKubeconfig } from '../reconciler/commands/sim.ts';
import type { CommandIO } from '../reconciler/commands/common.ts';
import { Reconciler } from '../reconciler/controller/reconcile.ts';
import { GiteaReporter } from '../reconciler/report/gitea.ts';
import { GitHubReporter } from '../reconciler/report/github.ts';
import { planCommit, type PlanCommitResult } from '../reconciler/plan/planCommit.ts';
import { ReviewState, reportMergedOutcome, reviewPullRequests } from '../reconciler/report/prReview.ts';
import { ReportQueue } from '../reconciler/report/queue.ts';
import { PLAN_MARKER } from '../reconciler/report/reporter.ts';
import { statusDescription } from '../reconciler/report/markdown.ts';
import type { Obj, VmPlanEntry } from '../reconciler/rollout/index.ts';
import { SourceError } from '../reconciler/source/errors.ts';
import { GitSource } from '../reconciler/source/gitSource.ts';
import { UsageError } from '../reconciler/usage.ts';
import { validateVmPlan } from '../reconciler/validate.ts';
import { MANUAL_POLICY } from '../reconciler/restart/index.ts';
import { startGitServer, type GitServer, type WorkingClone } from './helpers/gitServer.ts';
import { GitHubEmulator } from './helpers/githubEmulator.ts';
import { startGiteaEmulator } from './helpers/giteaEmulator.ts';
import { WAIT_MS } from './helpers/waitFor.ts';

const KUBEVIRT: Obj = {
  apiVersion: 'kubevirt.io/v1',
  kind: 'KubeVirt',
  metadata: { name: 'kubevirt', namespace: 'kubevirt' },
  spec: { configuration: { developerConfiguration: { featureGates: [] } } },
  status: { observedKubeVirtVersion: 'v1.9.0' },
};
const KUBEVIRT_YAML = `apiVersion: kubevirt.io/v1
kind: KubeVirt
metadata:
  name: kubevirt
  namespace: kubevirt
spec:
  configuration:
    developerConfiguration:
      featureGates: []
status:
  observedKubeVirtVersion: v1.9.0
`;
const NON_LIVE = 'a non-live-updatable field was changed in the template spec';
const TOKEN = 'ghp_planTestTokenThatMustNeverLeak0123';

interface VmSpec {
  name: string;
  namespace?: string;
  runStrategy?: string;
  sockets?: number;
  cores?: number;
  threads?: number;
  maxSockets?: number;
  memory?: string;
  note?: string;
}

function vmYaml(v: VmSpec): string {
  return `apiVersion: kubevirt.io/v1
kind: VirtualMachine
metadata:
  name: ${v.name}
  namespace: ${v.namespace ?? 'shop'}
${v.note !== undefined ? `  annotations:\n    note: ${JSON.stringify(v.note)}\n` : ''}spec:
  runStrategy: ${v.runStrategy ?? 'Always'}
  template:
    spec:
      domain:
        cpu:
          sockets: ${v.sockets ?? 2}
          cores: ${v.cores ?? 1}
          threads: ${v.threads ?? 1}
${v.maxSockets !== undefined ? `          maxSockets: ${v.maxSockets}\n` : ''}        memory:
          guest: ${v.memory ?? '2Gi'}
        devices: {}
`;
}

const BROKEN = `apiVersion: kubevirt.io/v1
kind: VirtualMachine
metadata:
  name: broken
  namespace: shop
spec:
  runStrategy: Sometimes
  template:
    spec:
      domain:
        devices: {}
`;

function byName(r: PlanCommitResult, name: string): VmPlanEntry {
  const vm = r.plan.vms.find((v) => v.name === name);
  assert.ok(vm, `${name} in the plan: ${r.plan.vms.map((v) => v.name).join(', ')}`);
  return vm;
}

function captureLogger(): { logger: Logger; text: () => string } {
  const chunks: string[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _enc, done) {
      chunks.push(chunk.toString('utf8'));
      done();
    },
  });
  return { logger: pino({ level: 'debug', base: null }, stream), text: () => chunks.join('') };
}

function captureIO(): CommandIO & { stdout: string[]; stderr: string[] } {
  const stdout: string[] = [];
  const stderr: string[] = [];
  return { stdout, stderr, out: (t) => stdout.push(t), err: (t) => stderr.push(t) };
}

describe('vmroll plan: commits and pull requests against a cluster', function () {
  this.timeout(60_000);
  let server: GitServer;
  let work: WorkingClone;
  let url: string;
  let dir: string;
  let simState: string;
  let kubevirtFile: string;
  let source: GitSource;
  let cluster: SimCluster;
  let reconciler: Reconciler;
  let cache: ClusterCache;
  let mainSha = '';
  let featureSha = '';
  const silent = pino({ level: 'silent' });

  async function pushTo(...refs: string[]): Promise<void> {
    for (const ref of refs) await work.git('push', '--quiet', '--force', 'origin', `HEAD:${ref}`);
  }

  before(async function () {
    server = await startGitServer();
    dir = await mkdtemp(path.join(tmpdir(), 'vmroll-plan-'));
    simState = path.join(dir, 'sim-state.json');
    kubevirtFile = path.join(dir, 'kubevirt.yaml');
    await writeFile(kubevirtFile, KUBEVIRT_YAML);
    url = await server.createBareRepo('fleet');
    work = await server.createWorkingClone('fleet');
    await work.write('README.md', '# fleet\n');
    await work.write('vms/web.yaml', vmYaml({ name: 'web' }));
    await work.write('vms/db.yaml', vmYaml({ name: 'db', memory: '4Gi' }));
    await work.write('vms/batch.yaml', vmYaml({ name: 'batch', namespace: 'jobs', runStrategy: 'Halted' }));
    await work.write('vms/old.yaml', vmYaml({ name: 'old' }));
    mainSha = await work.commit('fleet');
    await work.push();

    source = new GitSource({ repo: url, cacheDir: path.join(dir, 'cache') });
    cluster = new SimCluster({ kubevirt: KUBEVIRT, stateFile: simState });
    reconciler = new Reconciler({ source, repoLabel: url, ref: 'main', path: 'vms', cluster, prune: true, logger: silent });
    const first = await reconciler.reconcile();
    assert.equal(first.summary.created, 4);
    cluster.save();
    cache = new ClusterCache(cluster);

    // Pull request 1: a live change, a staged change, a create, a broken file, a prune, a start.
    await work.git('checkout', '--quiet', '-b', 'feature');
    await work.write('vms/web.yaml', vmYaml({ name: 'web', sockets: 4 }));
    await work.write('vms/db.yaml', vmYaml({ name: 'db', memory: '4Gi', cores: 2, threads: 2 }));
    await work.write('vms/cache.yaml', vmYaml({ name: 'cache' }));
    await work.write('vms/broken.yaml', BROKEN);
    await work.write('vms/batch.yaml', vmYaml({ name: 'batch', namespace: 'jobs', runStrategy: 'Always' }));
    await work.remove('vms/old.yaml');
    featureSha = await work.commit('feature');
    await pushTo('refs/heads/feature', 'refs/pull/1/head');
    await work.git('checkout', '--quiet', 'main');
  });

  after(async function () {
    cache?.stop();
    reconciler?.close();
    await server?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  describe('pull request heads from the Git server', function () {
    it('fetches refs/pull/<n>/head into its own ref and resolves it, leaving the branches alone', async function () {
      const fetched = await source.fetchPullRequest({ number: 1 });
      assert.equal(fetched.commit, featureSha);
      assert.equal(fetched.kind, 'pull');
      assert.equal(fetched.fullName, 'refs/remotes/vmroll-pulls/pull/1/head');
      assert.equal((await source.resolve({ ref: 'main' })).commit, mainSha);
      await assert.rejects(source.resolve({ ref: 'feature' }), (e: unknown) => e instanceof SourceError && e.code === 'RefNotFound', 'no branch fetched on the side');
    });

    it('follows a force-push to the pull request head', async function () {
      await work.git('checkout', '--quiet', 'feature');
      await work.write('vms/web.yaml', vmYaml({ name: 'web', sockets: 3 }));
      const second = await work.commit('web: 3 sockets instead');
      await pushTo('refs/pull/2/head');
      assert.equal((await source.fetchPullRequest({ number: 2 })).commit, second);
      await work.git('reset', '--quiet', '--hard', featureSha);
      await pushTo('refs/pull/2/head');
      assert.equal((await source.fetchPullRequest({ number: 2 })).commit, featureSha);
      await work.git('checkout', '--quiet', 'main');
    });

    it('says RefNotFound for a pull request the server does not have', async function () {
      await assert.rejects(source.fetchPullRequest({ number: 99 }), (e: unknown) => e instanceof SourceError && e.code === 'RefNotFound' && /refs\/pull\/99\/head/.test(e.message));
      await assert.rejects(source.fetchPullRequest({ number: 0 }), (e: unknown) => e instanceof SourceError && e.code === 'InvalidLocation');
    });

    it('finds merge bases and ancestry', async function () {
      assert.equal(await source.mergeBase({ a: mainSha, b: featureSha }), mainSha);
      assert.equal(await source.isAncestor({ ancestor: mainSha, commit: featureSha }), true);
      assert.equal(await source.isAncestor({ ancestor: featureSha, commit: mainSha }), false);
      assert.equal(await source.isAncestor({ ancestor: featureSha, commit: featureSha }), true);
    });

    it('reads pull request heads of a local repository in place', async function () {
      const local = new GitSource({ repo: path.join(server.projectRoot, 'fleet.git') });
      const r = await local.fetchPullRequest({ number: 1 });
      assert.equal(r.commit, featureSha);
      assert.equal(r.transfer, 'none');
    });
  });

  describe('planCommit', function () {
    let r: PlanCommitResult;
    before(async function () {
      await source.fetchPullRequest({ number: 1 });
      r = await planCommit({ source, commit: featureSha, path: 'vms', cache, repoLabel: url, prune: true });
    });

    it('is schema-valid and sorted', function () {
      const valid = validateVmPlan(r.plan);
      assert.ok(valid.ok, JSON.stringify(valid));
      assert.equal(r.plan.commit, featureSha);
      assert.deepEqual(
        r.plan.vms.map((v) => `${v.namespace}/${v.name}`),
        ['jobs/batch', 'shop/cache', 'shop/db', 'shop/old', 'shop/web'],
      );
    });

    it('plans a live change: sockets hot-plugged, no restart', function () {
      const web = byName(r, 'web');
      assert.equal(web.action, 'update');
      assert.equal(web.restartRequired, false);
      assert.deepEqual(web.changes.map((c) => [c.path, c.from, c.to, c.rollout]), [['spec.template.spec.domain.cpu.sockets', 2, 4, 'live']]);
      assert.deepEqual(web.reasons, []);
    });

    it('plans a staged change with every reason and the condition KubeVirt would set', function () {
      const db = byName(r, 'db');
      assert.equal(db.action, 'update');
      assert.equal(db.restartRequired, true);
      assert.equal(db.condition, 'set');
      assert.equal(db.conditionMessage, NON_LIVE);
      assert.deepEqual(db.reasons.map((x) => x.path).sort(), ['spec.template.spec.domain.cpu.cores', 'spec.template.spec.domain.cpu.threads']);
      assert.ok(db.changes.every((c) => c.rollout === 'staged'));
    });

    it('plans a create, a prune and a start by runStrategy', function () {
      assert.equal(byName(r, 'cache').action, 'create');
      assert.equal(byName(r, 'old').action, 'delete');
      assert.equal(r.sources['shop/old']?.file, 'vms/old.yaml');
      assert.deepEqual(r.power, { 'jobs/batch': 'start' });
      assert.deepEqual(
        { ...r.summary },
        // web's memory goes onto the VMI, and with no LiveMigrate method it waits there for a restart: blocked, not live.
        { vms: 5, inSync: 0, created: 1, liveUpdated: 1, migrating: 0, queued: 0, blocked: 1, blockedWhy: ['no LiveMigrate method'], evicted: 0, staged: 0, reverted: 0, awaitingRestart: 1, held: 0, deleted: 1, errors: 1, restarting: 1, pendingRestart: 0, atNextStart: 0 },
      );
    });

    it('passes manifest errors through with file and line', function () {
      assert.deepEqual(
        r.plan.errors.map((e) => `${e.file}:${e.line}`),
        ['vms/broken.yaml:7'],
      );
      assert.match(r.plan.errors[0]?.message ?? '', /VirtualMachine shop\/broken: spec\.runStrategy must be one of/);
    });

    it('writes nothing to the cluster', async function () {
      const before = cluster.store.resourceVersion;
      await planCommit({ source, commit: featureSha, path: 'vms', cache, repoLabel: url, prune: true });
      assert.equal(cluster.store.resourceVersion, before);
    });

    it('plans nothing to do for the synced commit, and no deletes without prune', async function () {
      const same = await planCommit({ source, commit: mainSha, path: 'vms', cache, repoLabel: url, prune: true });
      assert.ok(same.plan.vms.every((v) => v.action === 'none'));
      assert.equal(same.summary.inSync, 4);
      const noPrune = await planCommit({ source, commit: featureSha, path: 'vms', cache, repoLabel: url, prune: false });
      assert.equal(noPrune.plan.vms.find((v) => v.name === 'old'), undefined);
    });

    it('limits the plan to the files changed since a base', async function () {
      await work.git('checkout', '--quiet', '-b', 'only-web', 'main');
      await work.write('vms/web.yaml', vmYaml({ name: 'web', memory: '3Gi' }));
      const sha = await work.commit('web: 3Gi');
      await pushTo('refs/pull/3/head');
      await work.git('checkout', '--quiet', 'main');
      await source.fetchPullRequest({ number: 3 });
      const limited = await planCommit({ source, commit: sha, path: 'vms', cache, repoLabel: url, prune: true, base: mainSha });
      assert.deepEqual(limited.plan.vms.map((v) => [v.name, v.action]), [['web', 'update']]);
      assert.equal(limited.plan.vms[0]?.changes[0]?.path, 'spec.template.spec.domain.memory.guest');
    });

    it('turns admission refusals into errors at the VM document', async function () {
      await work.git('checkout', '--quiet', '-b', 'refused', 'main');
      await work.write('vms/web.yaml', `# web, now with a ceiling\n${vmYaml({ name: 'web', sockets: 6, maxSockets: 4 })}`);
      const sha = await work.commit('web: over its own ceiling');
      await pushTo('refs/pull/4/head');
      await work.git('checkout', '--quiet', 'main');
      await source.fetchPullRequest({ number: 4 });
      const refused = await planCommit({ source, commit: sha, path: 'vms', cache, repoLabel: url, prune: true, base: mainSha });
      assert.deepEqual(refused.plan.vms, []);
      assert.equal(refused.plan.errors.length, 1);
      assert.equal(refused.plan.errors[0]?.file, 'vms/web.yaml');
      assert.equal(refused.plan.errors[0]?.line, 2);
      assert.equal(refused.plan.errors[0]?.path, 'spec.template.spec.domain.cpu.sockets');
      assert.match(refused.plan.errors[0]?.message ?? '', /^VirtualMachine shop\/web: admission webhook would deny the update: /);
    });
  });

  describe('vmroll plan (CLI)', function () {
    it('--output json prints a schema-valid plan and exits 1 for manifest errors', async function () {
      const io = captureIO();
      const code = await main(
        ['plan', '--repo', url, '--pr', '1', '--path', 'vms', '--prune', '--cluster', 'sim', '--sim-state', simState, '--sim-kubevirt', kubevirtFile, '--cache-dir', path.join(dir, 'cli-cache'), '--output', 'json'],
        io,
      );
      assert.equal(code, 1, io.stderr.join('\n'));
      const plan: unknown = JSON.parse(io.stdout.join('\n'));
      const valid = validateVmPlan(plan);
      assert.ok(valid.ok, JSON.stringify(valid));
      if (!valid.ok) return;
      assert.equal(valid.value.commit, featureSha);
      assert.equal(valid.value.vms.find((v) => v.name === 'db')?.conditionMessage, NON_LIVE);
      // No --config: the default policy, manual; db's staged change and web's blocked hot-plug (no LiveMigrate method) wait for a person.
      assert.equal(valid.value.restarts?.policy, 'manual');
      assert.deepEqual(valid.value.restarts?.vms.map((l) => [l.namespace, l.name, l.kind, l.event, l.text]), [
        ['shop', 'db', 'manual', null, 'awaits a manual restart (policy manual)'],
        ['shop', 'web', 'manual', null, 'awaits a manual restart (policy manual)'],
      ]);
    });

    it('--config gives the repository its restart policy: the restart lines and the merge gate in text, markdown and JSON', async function () {
      const config = path.join(dir, 'vmroll.yaml');
      await writeFile(config, ['repositories:', '  - name: fleet', `    url: ${url}`, '    path: vms', '    restart:', '      policy: window', '      windows:', '        - {schedule: "0 2 * * SAT", duration: 2h}', '      mergeGate: true', ''].join('\n'));
      const args = ['plan', '--repo', url, '--pr', '1', '--path', 'vms', '--prune', '--config', config, '--sim-state', simState, '--sim-kubevirt', kubevirtFile, '--cache-dir', path.join(dir, 'cli-cache')];
      // Real time: the window is either open now or the next one; both say Saturday 02:00–04:00 UTC.
      const line = /restarts (in the next window|as soon as it is merged, in the current window) \(Sat 02:00–04:00 UTC\), 1 of 2 this window/;
      const text = captureIO();
      assert.equal(await main(args, text), 1, text.stderr.join('\n'));
      const restartLine = text.stdout.join('\n').split('\n').find((l) => l.startsWith('restart shop/db: ')) ?? '';
      assert.match(restartLine, new RegExp(`^restart shop/db: ${line.source}$`), text.stdout.join('\n'));
      assert.ok(text.stdout.join('\n').split('\n').includes('restart merge gate: passes'));
      const md = captureIO();
      assert.equal(await main([...args, '--output', 'markdown'], md), 1);
      assert.match(md.stdout.join('\n'), new RegExp(`#### Restarts \\(policy window\\)\n\n- <code>shop/db</code>: ${line.source}\n`));
      assert.match(md.stdout.join('\n'), /\*\*Merge gate\*\* \(<code>restart.mergeGate<\/code>\): passes\./);
      const json = captureIO();
      assert.equal(await main([...args, '--output', 'json'], json), 1);
      const valid = validateVmPlan(JSON.parse(json.stdout.join('\n')));
      assert.ok(valid.ok, JSON.stringify(valid));
      if (!valid.ok) return;
      assert.equal(valid.value.restarts?.policy, 'window');
      assert.match(valid.value.restarts?.vms[0]?.text ?? '', line);
      // web's hot-plug reaches the guest only at a restart too: second in the window.
      assert.match(valid.value.restarts?.vms[1]?.text ?? '', /\(Sat 02:00–04:00 UTC\), 2 of 2 this window/);
      assert.equal(valid.value.restarts?.pending, 2);
      // A file that does not name the repository is a usage error.
      await writeFile(config, ['repositories:', '  - name: other', '    url: https://git.example.com/other.git', ''].join('\n'));
      const bad = captureIO();
      assert.equal(await main(args, bad), 2);
      assert.match(bad.stderr[0] ?? '', /^vmroll plan: --config: no repository of .*vmroll\.yaml has the url /);
    });

    it('exits 0 for a clean plan, limited by --base, and prints the table', async function () {
      const io = captureIO();
      const code = await main(['plan', '--repo', url, '--pr', '3', '--base', 'main', '--path', 'vms', '--sim-state', simState, '--sim-kubevirt', kubevirtFile, '--cache-dir', path.join(dir, 'cli-cache')], io);
      assert.equal(code, 0, io.stderr.join('\n'));
      const text = io.stdout.join('\n');
      assert.equal(io.stdout[0], `target: embedded KubeVirt simulator, state in ${simState}`, 'the first line names what the plan was made against');
      assert.match(io.stdout[1] ?? '', /^vmroll plan for [0-9a-f]{7}: 0 live-updated · 1 patched, not in the guest until a restart: no LiveMigrate method · 0 staged until restart · 0 created · 0 deleted/);
      assert.match(text, /VM shop\/web: update · 1 live · not in the guest until a restart/);
      assert.ok(!text.includes('shop/db'));
    });

    it('--output markdown prints the comment', async function () {
      const io = captureIO();
      const code = await main(['plan', '--repo', url, '--ref', 'feature', '--path', 'vms', '--sim-state', simState, '--sim-kubevirt', kubevirtFile, '--cache-dir', path.join(dir, 'cli-cache'), '--output', 'markdown'], io);
      assert.equal(code, 1);
      const text = io.stdout.join('\n');
      assert.ok(text.startsWith(PLAN_MARKER));
      assert.ok(!text.includes('live cluster'), 'a plan made on the simulator does not claim a live cluster');
      assert.ok(text.includes(`Planned by vmroll against embedded KubeVirt simulator, state in ${simState}; nothing is applied before the merge.`), text.slice(-400));
      assert.deepEqual(io.stderr, [`target: embedded KubeVirt simulator, state in ${simState}`], 'with markdown the target line goes to stderr');
      assert.ok(text.includes(`**vmroll plan** for <code>${featureSha.slice(0, 7)}</code>: 1 live-updated · 1 patched, not in the guest until a restart: no LiveMigrate method · 1 staged until restart · 1 stopped or started by runStrategy · 1 created · 0 deleted · 1 orphaned · 1 error\n`), text.split("\n")[3]);
    });

    it('exits 2 on bad usage, with one line', async function () {
      for (const args of [
        ['plan'],
        ['plan', '--repo', url, '--output', 'yaml'],
        ['plan', '--repo', url, '--post'],
        ['plan', '--repo', url, '--pr', 'x'],
        ['plan', '--repo', url, '--pr', '1', '--post', '--github-repo', 'a/b', '--gitea-url', 'http://x', '--gitea-repo', 'a/b'],
        ['plan', '--repo', url, '--sim-state', simState, '--kubeconfig', '/nonexistent'],
        ['plan', '--repo', url, '--kubeconfig', path.join(dir, 'no-such-kubeconfig')],
        ['plan', '--repo', url, '--pr', '1', '--post', '--github-repo', 'not-a-repo'],
      ]) {
        const io = captureIO();
        assert.equal(await main(args, io), 2, args.join(' '));
        assert.equal(io.stderr.length, 1, io.stderr.join('\n'));
        assert.match(io.stderr[0] ?? '', /^vmroll plan: /);
      }
    });

    it('--kubeconfig plans against a Kubernetes API (the simulator served over HTTP) and writes nothing', async function () {
      const api = await startApiServer({ cluster, listen: '127.0.0.1:0', bookmarkIntervalMs: 50 });
      try {
        const kubeconfig = path.join(dir, 'kubeconfig');
        await writeFile(kubeconfig, simKubeconfig(api.url));
        api.resetStats();
        const io = captureIO();
        const code = await main(['plan', '--repo', url, '--pr', '1', '--path', 'vms', '--prune', '--kubeconfig', kubeconfig, '--cache-dir', path.join(dir, 'cli-cache'), '--output', 'json'], io);
        assert.equal(code, 1, io.stderr.join('\n'));
        const viaKube = JSON.parse(io.stdout.join('\n')) as { vms: VmPlanEntry[] };
        // The CLI plans restarts under the default policy (manual: no window, so `now` does not matter).
        const viaCache = await planCommit({ source, commit: featureSha, path: 'vms', cache, repoLabel: url, prune: true, restart: { policy: MANUAL_POLICY, now: Date.now() } });
        assert.deepEqual(viaKube, JSON.parse(JSON.stringify(viaCache.plan)));
        const stats = api.stats();
        assert.ok(stats.reads > 0);
        assert.equal(stats.writes, 0);
      } finally {
        await api.close();
      }
    });

    it('--help documents the flags', async function () {
      const io = captureIO();
      assert.equal(await main(['plan', '--help'], io), 0);
      for (const flag of ['--repo', '--ref', '--pr', '--base', '--prune', '--sim-state', '--kubeconfig', '--output text|markdown|json', '--post', '--github-repo', '--github-token-file', '--gitea-url']) {
        assert.ok(io.stdout[0]?.includes(flag), flag);
      }
    });
  });

  describe('pull request review with the GitHub emulator', function () {
    let gh: GitHubEmulator;
    let reporter: GitHubReporter;
    const state = new ReviewState();
    const log = captureLogger();
    const writes = (): number => gh.requests.filter((q) => q.method !== 'GET').length;

    before(async function () {
      gh = await GitHubEmulator.start({ token: TOKEN, repos: ['acme/fleet'] });
      reporter = new GitHubReporter({ repo: 'acme/fleet', apiUrl: gh.baseUrl, token: TOKEN });
      gh.addPullRequest({ number: 1, headRef: 'feature', headSha: featureSha, baseRef: 'main', baseSha: mainSha, title: 'Resize the shop' });
    });
    after(async function () {
      assert.deepEqual(gh?.violations ?? [], []);
      assert.ok(!log.text().includes(TOKEN));
      await gh?.stop();
    });

    const review = (): ReturnType<typeof reviewPullRequests> =>
      reviewPullRequests({ reporter, source, cache, repoLabel: url, path: 'vms', prune: true, logger: log.logger, state, targetUrl: 'https://vmroll.example/plans' });

    it('posts the vmroll/plan status on the head and one sticky comment', async function () {
      const [pr1] = await review();
      assert.equal(pr1?.result, 'posted');
      const statuses = gh.statuses(featureSha).filter((s) => s.context === 'vmroll/plan');
      assert.equal(statuses.length, 1);
      assert.equal(statuses[0]?.state, 'failure', 'manifest errors fail the plan');
      assert.equal(statuses[0]?.description, '1 error · 1 live · 1 blocked until restart: no LiveMigrate method · 1 staged until restart · 1 stopped/started · 1 created · 1 deleted');
      assert.equal(statuses[0]?.targetUrl, 'https://vmroll.example/plans');
      const comments = gh.comments(1);
      assert.equal(comments.length, 1);
      const body = comments[0]?.body ?? '';
      assert.ok(body.startsWith(PLAN_MARKER));
      assert.ok(body.includes('pull request #1 <code>feature</code>'));
      assert.ok(body.includes(`"${NON_LIVE}"`));
      assert.ok(body.includes('<code>vms/broken.yaml:7</code>'));
    });

    it('posts nothing again while head, base and cluster are unchanged', async function () {
      const before = writes();
      const [pr1] = await review();
      assert.equal(pr1?.result, 'unchanged');
      assert.equal(writes(), before);
    });

    it('edits the same comment after a new push to the head, and marks the new head', async function () {
      await work.git('checkout', '--quiet', 'feature');
      await work.remove('vms/broken.yaml');
      const fixed = await work.commit('drop the broken VM');
      await pushTo('refs/heads/feature', 'refs/pull/1/head');
      await work.git('checkout', '--quiet', 'main');
      gh.updatePullRequest(1, { headSha: fixed });
      const [pr1] = await review();
      assert.equal(pr1?.result, 'posted');
      assert.equal(pr1?.headSha, fixed);
      const comments = gh.comments(1);
      assert.equal(comments.length, 1, 'still one comment');
      assert.ok(comments[0]?.body.includes(`at <code>${fixed.slice(0, 7)}</code>`));
      assert.ok(!comments[0]?.body.includes('broken.yaml'));
      const status = gh.statuses(fixed).find((s) => s.context === 'vmroll/plan');
      assert.equal(status?.state, 'success');
      assert.equal(status?.description, '1 live · 1 blocked until restart: no LiveMigrate method · 1 staged until restart · 1 stopped/started · 1 created · 1 deleted');
      featureSha = fixed;
    });

    it('plans again when the cluster changes, writing only when the plan does, never a second comment', async function () {
      const before = writes();
      cluster.createObject({ apiVersion: 'instancetype.kubevirt.io/v1beta1', kind: 'VirtualMachineClusterInstancetype', metadata: { name: 'u1.small' }, spec: { cpu: { guest: 1 }, memory: { guest: '1Gi' } } });
      assert.equal((await review())[0]?.result, 'unchanged', 'an unrelated object: same plan');
      assert.equal(writes(), before);
      // Under Stage, the hot-pluggable sockets change waits for a restart too.
      cluster.setKubeVirt({ ...KUBEVIRT, spec: { configuration: { vmRolloutStrategy: 'Stage', developerConfiguration: { featureGates: [] } } } });
      assert.equal((await review())[0]?.result, 'posted');
      assert.equal(gh.comments(1).length, 1);
      assert.match(gh.comments(1)[0]?.body ?? '', /#### shop\/web · update · 1 staged/);
      cluster.setKubeVirt(KUBEVIRT);
      assert.equal((await review())[0]?.result, 'posted');
      assert.match(gh.comments(1)[0]?.body ?? '', /#### shop\/web · update · 1 live/);
      assert.equal(gh.comments(1).length, 1);
    });

    it('after merge and sync, edits the comment once more with what happened', async function () {
      // Merge with a merge commit, as GitHub's merge button does.
      await work.git('merge', '--quiet', '--no-ff', '-m', 'Merge pull request #1', 'feature');
      const merge = await work.git('rev-parse', 'HEAD');
      await work.push();
      gh.updatePullRequest(1, { state: 'closed', mergedAt: new Date().toISOString(), mergeCommitSha: merge });
      const reviewed = state.reviewed.get(1);
      assert.ok(reviewed);
      const report = await reconciler.reconcile();
      assert.equal(report.commit, merge);
      // The review predicted what the sync did.
      for (const name of ['web', 'db']) {
        const planned: VmPlanEntry | undefined = reviewed.plan.vms.find((v) => v.name === name);
        const synced = report.plan.vms.find((v) => v.name === name);
        assert.equal(synced?.restartRequired, planned?.restartRequired, name);
        assert.equal(synced?.conditionMessage, planned?.conditionMessage, name);
      }
      const reported = await reportMergedOutcome({ reporter, source, report, repoLabel: url, logger: log.logger, state });
      assert.deepEqual(reported, [1]);
      const comments = gh.comments(1);
      assert.equal(comments.length, 1);
      const body = comments[0]?.body ?? '';
      assert.ok(body.startsWith(PLAN_MARKER));
      assert.ok(body.includes(`**vmroll sync** of <code>${merge.slice(0, 7)}</code> (contains <code>${featureSha.slice(0, 7)}</code>): 1 live-applied · 1 patched, not in the guest until a restart · 1 staged awaiting restart · 0 failed · 1 created · 1 deleted`), body.slice(0, 600));
      // The observed outcome, not only what was written: web's memory is on the VMI and waits there for a restart.
      assert.match(body, /\| <code>shop\/web<\/code> \| patched, not in the guest until a restart \| blocked: HotVCPUChange will not reach the guest until a restart: the cluster has no LiveMigrate workload update method \|/);
      assert.match(body, /\| <code>shop\/db<\/code> \| staged, awaiting restart \| RestartRequired: a non-live-updatable field/);
      assert.deepEqual(await reportMergedOutcome({ reporter, source, report, logger: log.logger, state }), [], 'only once');
      // The merged pull request is not listed any more: the next review round has nothing to do.
      assert.deepEqual(await review(), []);
    });

    it('a commit on top of a pending restart lists only its own changes, held by the condition', async function () {
      // db's cores and threads were merged and wait for a restart; now its memory changes.
      await work.git('checkout', '--quiet', '-b', 'db-memory', 'main');
      await work.write('vms/db.yaml', vmYaml({ name: 'db', memory: '6Gi', cores: 2, threads: 2 }));
      const head = await work.commit('db: 6Gi');
      await pushTo('refs/pull/7/head');
      await work.git('checkout', '--quiet', 'main');
      await source.fetchPullRequest({ number: 7 });
      const r = await planCommit({ source, commit: head, path: 'vms', cache, repoLabel: url, prune: true });
      const db = byName(r, 'db');
      assert.equal(db.action, 'update');
      assert.deepEqual(db.changes.map((c) => [c.path, c.from, c.to, c.rollout]), [['spec.template.spec.domain.memory.guest', '4Gi', '6Gi', 'staged']]);
      assert.equal(db.restartRequired, true);
      assert.equal(db.condition, 'kept');
      assert.equal(db.reasons.length, 1);
      assert.match(db.reasons[0]?.message ?? '', /^held: /);
      // web, cache and batch are in sync; db is the one update.
      // db's update keeps RestartRequired (awaiting restart, not one pending from before); nothing else moves.
      assert.deepEqual(
        { ...r.summary },
        { vms: 4, inSync: 3, created: 0, liveUpdated: 0, migrating: 0, queued: 0, blocked: 0, evicted: 0, staged: 0, reverted: 0, awaitingRestart: 1, held: 0, deleted: 0, errors: 0, restarting: 0, pendingRestart: 0, atNextStart: 0 },
      );
      assert.equal(statusDescription(r.summary), '1 staged until restart');
    });

    it('goes through a report queue when given one', async function () {
      await work.git('checkout', '--quiet', '-b', 'queued', 'main');
      await work.write('vms/web.yaml', vmYaml({ name: 'web', sockets: 4, memory: '3Gi' }));
      const head = await work.commit('web: 3Gi');
      await pushTo('refs/pull/5/head');
      await work.git('checkout', '--quiet', 'main');
      const base = await work.git('rev-parse', 'HEAD');
      gh.addPullRequest({ number: 5, headRef: 'queued', headSha: head, baseRef: 'main', baseSha: base });
      const queue = new ReportQueue({ reporter, logger: log.logger });
      try {
        const results = await reviewPullRequests({ reporter, queue, source, cache, repoLabel: url, path: 'vms', prune: true, logger: log.logger, state });
        assert.deepEqual(results.map((x) => [x.number, x.result]), [[5, 'posted']]);
        assert.equal(await queue.flush(WAIT_MS), true);
      } finally {
        await queue.close();
      }
      assert.equal(gh.comments(5).length, 1);
      assert.match(gh.comments(5)[0]?.body ?? '', /shop\/web · update · 1 live/);
      // web's 3Gi: live on the VMI, but the cluster lists no LiveMigrate method, so it reaches the guest only at a restart.
      assert.equal(gh.statuses(head).find((s) => s.context === 'vmroll/plan')?.description, '1 blocked until restart: no LiveMigrate method');
      assert.match(gh.comments(5)[0]?.body ?? '', /\*\*Guest\*\*: patched but will not reach the guest until a restart: the cluster has no LiveMigrate workload update method/);
    });

    it('vmroll plan --pr N --post writes the status and the comment, never the token', async function () {
      const tokenFile = path.join(dir, 'gh-token');
      await writeFile(tokenFile, `${TOKEN}\n`);
      const args = ['plan', '--repo', url, '--pr', '5', '--path', 'vms', '--sim-state', simState, '--sim-kubevirt', kubevirtFile, '--cache-dir', path.join(dir, 'cli-cache')];
      const post = ['--post', '--github-repo', 'acme/fleet', '--github-api-url', gh.baseUrl, '--github-token-file', tokenFile];
      // The state file still holds the cluster before the merge: the plan is made against it.
      const io = captureIO();
      const code = await main([...args, ...post, '--output', 'markdown'], io);
      assert.equal(code, 0, io.stderr.join('\n'));
      assert.equal(gh.comments(5).length, 1, 'the queued review comment is edited, not duplicated');
      assert.equal(gh.comments(5)[0]?.body, io.stdout.join('\n'));
      assert.match(io.stderr.join('\n'), /updated the comment on pull request #5/);
      for (const line of [...io.stdout, ...io.stderr]) assert.ok(!line.includes(TOKEN));

      const bad = captureIO();
      const wrong = path.join(dir, 'wrong-token');
      await writeFile(wrong, 'ghp_wrong');
      assert.equal(await main([...args, ...post.slice(0, -1), wrong], bad), 1);
      assert.match(bad.stderr.join('\n'), /could not read pull request #5/);
      assert.ok(!bad.stderr.join('\n').includes('ghp_wrong'));
    });

    it('vmroll plan --post reads the GitHub token as vmroll run does: VMROLL_GITHUB_TOKEN before GITHUB_TOKEN', async function () {
      const args = ['--repo', url, '--pr', '5', '--path', 'vms', '--sim-state', simState, '--sim-kubevirt', kubevirtFile, '--cache-dir', path.join(dir, 'cli-cache')];
      const post = [...args, '--post', '--github-repo', 'acme/fleet', '--github-api-url', gh.baseUrl, '--output', 'markdown'];
      // The emulator takes only TOKEN: a post that goes through was made with VMROLL_GITHUB_TOKEN.
      const io = captureIO();
      assert.equal(await runPlan(post, io, { VMROLL_GITHUB_TOKEN: TOKEN, GITHUB_TOKEN: 'ghp_not-this-one' }), 0, io.stderr.join('\n'));
      assert.match(io.stderr.join('\n'), /(comment unchanged on|updated the comment on) pull request #5/);
      assert.equal(gh.comments(5).length, 1);
      // GITHUB_TOKEN alone still works, and an empty VMROLL_GITHUB_TOKEN counts as unset.
      const plain = captureIO();
      assert.equal(await runPlan(post, plain, { VMROLL_GITHUB_TOKEN: '', GITHUB_TOKEN: TOKEN }), 0, plain.stderr.join('\n'));
      for (const line of [...io.stdout, ...io.stderr, ...plain.stdout, ...plain.stderr]) assert.ok(!line.includes(TOKEN));
      await assert.rejects(
        runPlan(post, captureIO(), {}),
        (e: unknown) => e instanceof UsageError && e.message === '--post to GitHub needs a token: --github-token-file, VMROLL_GITHUB_TOKEN or GITHUB_TOKEN',
      );
    });

    it('vmroll plan --pr N --post reads the commit status first and posts no identical one', async function () {
      const head = (await reporter.listOpenPullRequests()).find((p) => p.number === 5)?.headSha ?? '';
      assert.match(head, /^[0-9a-f]{40}$/);
      const args = ['--repo', url, '--pr', '5', '--path', 'vms', '--sim-state', simState, '--sim-kubevirt', kubevirtFile, '--cache-dir', path.join(dir, 'cli-cache')];
      const post = [...args, '--post', '--github-repo', 'acme/fleet', '--github-api-url', gh.baseUrl, '--output', 'json'];
      const env = { VMROLL_GITHUB_TOKEN: TOKEN };
      const planStatuses = (): number => gh.statuses(head).filter((s) => s.context === 'vmroll/plan').length;
      const first = captureIO();
      assert.equal(await runPlan(post, first, env), 0, first.stderr.join('\n'));
      const before = planStatuses();
      assert.ok(before >= 1, 'the head carries a vmroll/plan status');
      const again = captureIO();
      assert.equal(await runPlan(post, again, env), 0, again.stderr.join('\n'));
      assert.equal(planStatuses(), before, 'the same plan on the same commit posts no second status');
      assert.match(again.stderr.join('\n'), new RegExp(`status unchanged on ${head.slice(0, 12)}`));
      // The read decides, not a blanket skip: a status that differs (here its link) is posted.
      const linked = captureIO();
      assert.equal(await runPlan([...post, '--target-url', 'https://vmroll.example/other'], linked, env), 0, linked.stderr.join('\n'));
      assert.equal(planStatuses(), before + 1);
      assert.equal(gh.statuses(head).filter((s) => s.context === 'vmroll/plan').at(-1)?.targetUrl, 'https://vmroll.example/other');
    });
  });

  describe('pull request review with the Gitea emulator', function () {
    it('posts the status and one comment, and edits it on the next head', async function () {
      const token = 'gitea-token-0123456789';
      const gitea = await startGiteaEmulator({ token, repos: ['acme/fleet'] });
      try {
        const reporter = new GiteaReporter({ repo: 'acme/fleet', apiUrl: gitea.baseUrl, token });
        await work.git('checkout', '--quiet', '-b', 'gitea', 'main');
        await work.write('vms/db.yaml', vmYaml({ name: 'db', memory: '4Gi', cores: 4, threads: 2 }));
        const head = await work.commit('db: 4 cores');
        await pushTo('refs/pull/6/head');
        const base = await work.git('rev-parse', 'main');
        gitea.addPullRequest({ number: 6, headRef: 'gitea', headSha: head, baseSha: base });
        const state = new ReviewState();
        const review = (): ReturnType<typeof reviewPullRequests> =>
          reviewPullRequests({ reporter, source, cache, repoLabel: url, path: 'vms', prune: true, logger: silent, state });
        assert.deepEqual((await review()).map((x) => x.result), ['posted']);
        assert.equal(gitea.statuses(head).find((s) => s.context === 'vmroll/plan')?.description, '1 staged until restart');
        await work.write('vms/db.yaml', vmYaml({ name: 'db', memory: '4Gi', cores: 2, threads: 2 }));
        const next = await work.commit('db: 2 cores after all');
        await pushTo('refs/pull/6/head');
        await work.git('checkout', '--quiet', 'main');
        gitea.addPullRequest({ number: 6, headRef: 'gitea', headSha: next, baseSha: base });
        assert.deepEqual((await review()).map((x) => x.result), ['posted']);
        assert.equal(gitea.comments(6).length, 1);
        assert.ok(gitea.comments(6)[0]?.body.includes(`at <code>${next.slice(0, 7)}</code>`));
        assert.deepEqual(gitea.violations, []);
      } finally {
        await gitea.stop();
      }
    });
  });
});
