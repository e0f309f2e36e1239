/**
 * Restarts reported before and after the merge (issue 11, item 5): `vmroll run` against the
 * simulator's API server (kube backend, over HTTP), Debian git's http-backend and the GitHub
 * emulator, with the repository's restart policy and an injected clock (no test waits for a real
 * window). The PR comment says per VM whether and when the policy restarts it, from the planner
 * run on the PR's plan with the live restart records counting; the optional merge gate fails
 * `vmroll/plan` with its reason; the comment edited after the merge says what was restarted.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { type ApiServer, startApiServer } from '../reconciler/cluster/sim/apiServer.ts';
import { SimCluster } from '../reconciler/cluster/sim/simCluster.ts';
import { metaOf } from '../reconciler/cluster/object.ts';
import { makeLogger, startRun } from '../reconciler/commands/run.ts';
import { simKubeconfig } from '../reconciler/commands/sim.ts';
import type { RunConfig } from '../reconciler/config.ts';
import { type RestartConfigBlock, restartPolicyOf } from '../reconciler/restart/index.ts';
import type { Obj } from '../reconciler/rollout/index.ts';
import { type GitServer, type WorkingClone, startGitServer } from './helpers/gitServer.ts';
import { GitHubEmulator } from './helpers/githubEmulator.ts';
import { smallVmYaml } from './helpers/smallVm.ts';
import { WAIT_MS, until } from './helpers/waitFor.ts';

const TOKEN = 'ghp_reviewRestartTokenThatMustNeverBeLog1';
/** Saturday 2026-01-03 02:30 UTC: inside the window `0 2 * * SAT` (2h). */
const IN_WINDOW = Date.parse('2026-01-03T02:30:00Z');
/** Friday 2026-01-02 23:00 UTC: the window opens three hours later. */
const BEFORE_WINDOW = Date.parse('2026-01-02T23:00:00Z');
const WINDOW = { schedule: '0 2 * * SAT', duration: '2h' };

interface VmSpec {
  name: string;
  image: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
}

const vmYaml = (v: VmSpec): string => smallVmYaml({ namespace: 'shop', ...v });

const obj = (v: unknown): Obj => (typeof v === 'object' && v !== null ? (v as Obj) : {});

interface Scenario {
  sim: SimCluster;
  gh: GitHubEmulator;
  work: WorkingClone;
  handle: Awaited<ReturnType<typeof startRun>>;
  head: string;
  clock: { now: number };
  stop(): Promise<void>;
}

describe('pull request review: restarts before and after the merge (sim API server, Git server, GitHub emulator)', function () {
  this.timeout(180_000);
  let git: GitServer;
  let dir: string;
  const running: Scenario[] = [];

  before(async () => {
    git = await startGitServer();
    dir = mkdtempSync(path.join(tmpdir(), 'vmroll-review-restart-'));
  });
  afterEach(async () => {
    for (const s of running.splice(0)) await s.stop();
  });
  after(async () => {
    await git?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  /**
   * Syncs `base` (the VMs at image v1), waits for them to run, lets `prepare` touch the live VMs,
   * then opens pull request #1 with `change` and lets vmroll review it under `restart` at `now`.
   */
  async function scenario(name: string, restart: RestartConfigBlock | undefined, now: number, base: VmSpec[], change: VmSpec[], prepare?: (sim: SimCluster) => Promise<void>): Promise<Scenario> {
    const sim = new SimCluster();
    sim.ensureNamespace('shop');
    let api: ApiServer | undefined;
    let gh: GitHubEmulator | undefined;
    let handle: Awaited<ReturnType<typeof startRun>> | undefined;
    const stop = async (): Promise<void> => {
      await handle?.stop();
      await gh?.stop();
      await api?.close();
      sim.close();
    };
    try {
      api = await startApiServer({ cluster: sim, listen: '127.0.0.1:0' });
      const kubeconfig = path.join(dir, `${name}.kubeconfig`);
      writeFileSync(kubeconfig, simKubeconfig(api.url));
      gh = await GitHubEmulator.start({ token: TOKEN, repos: ['acme/fleet'] });
      const repo = await git.createBareRepo(name);
      const work = await git.createWorkingClone(name);
      for (const v of base) await work.write(`vms/${v.name}.yaml`, vmYaml(v));
      const baseSha = await work.commit('the VMs');
      await work.push();
      const gitHost = { kind: 'github' as const, repo: 'acme/fleet', apiUrl: gh.baseUrl, token: TOKEN, targetUrl: undefined };
      const config: RunConfig = {
        repo, ref: 'main', path: 'vms', intervalMs: 3_600_000, once: false, cluster: 'kube', kubeconfig: { file: kubeconfig }, simState: undefined, simKubevirt: undefined,
        example: false, output: 'text', prune: false, listen: undefined, cacheDir: path.join(dir, `${name}-cache`), logLevel: 'silent', gitToken: undefined, webhookSecret: undefined, gitHost,
        repositories: [{ name, repo, ref: 'main', path: 'vms', namespaces: undefined, intervalMs: 3_600_000, prune: false, gitToken: undefined, gitHost, ...(restart !== undefined && { restart: restartPolicyOf(restart) }) }],
      };
      const clock = { now };
      const logs: string[] = [];
      const logger = makeLogger('info', [TOKEN], { write: (l: string) => (logs.push(l), true) } as unknown as NodeJS.WritableStream);
      handle = await startRun(config, { out: () => {}, err: () => {} }, logger, { now: () => clock.now });
      const created = await handle.trigger('test');
      assert.equal(created?.summary.created, base.length);
      await until('the VMs to run', () => base.every((v) => obj(sim.store.get('VirtualMachineInstance', 'shop', v.name)?.['status'])['phase'] === 'Running'));
      await prepare?.(sim);

      await work.git('checkout', '--quiet', '-b', 'change');
      for (const v of change) await work.write(`vms/${v.name}.yaml`, vmYaml(v));
      const head = await work.commit('the change');
      await work.git('push', '--quiet', 'origin', 'HEAD:refs/heads/change', 'HEAD:refs/pull/1/head');
      gh.addPullRequest({ number: 1, headRef: 'change', headSha: head, baseRef: 'main', baseSha, title: 'Change' });
      await handle.trigger('test');
      assert.equal(await handle.flushReports(WAIT_MS), true);
      for (const l of logs) assert.ok(!l.includes(TOKEN), 'the token never reaches a log');
      const s = { sim, gh, work, handle, head, clock, stop };
      running.push(s);
      return s;
    } catch (e) {
      await stop();
      throw e;
    }
  }

  const planStatus = (s: Scenario): { state: string; description?: string | null | undefined } | undefined => s.gh.statuses(s.head).filter((x) => x.context === 'vmroll/plan').at(-1);
  const comment = (s: Scenario): string => s.gh.comments(1)[0]?.body ?? '';

  it('under a window policy, says when each VM restarts with the window budget, counting a restart already done in this window', async () => {
    const base = ['a', 'b', 'c'].map((name) => ({ name, image: 'img:1' }));
    const s = await scenario('window', { policy: 'window', windows: [WINDOW], budget: { concurrent: 1, perWindow: 5 } }, IN_WINDOW, base, [{ name: 'a', image: 'img:2' }, { name: 'b', image: 'img:2' }], async (sim) => {
      // c was restarted by vmroll at 02:10 in this window: the record on the live VM counts toward its budget.
      const c = sim.store.get('VirtualMachine', 'shop', 'c') as Obj;
      await sim.patchVirtualMachineAnnotations(
        { namespace: 'shop', name: 'c' },
        { 'vmroll.dev/restart-status': 'Succeeded', 'vmroll.dev/restart-started-at': '2026-01-03T02:10:00Z', 'vmroll.dev/restart-finished-at': '2026-01-03T02:12:00Z', 'vmroll.dev/restarted-generation': String(metaOf(c)['generation'] ?? 1) },
        String(metaOf(c)['resourceVersion']),
      );
    });
    const body = comment(s);
    assert.match(body, /#### Restarts \(policy window\)/, body);
    assert.match(body, /- <code>shop\/a<\/code>: restarts as soon as it is merged, in the current window \(Sat 02:00–04:00 UTC\), 2 of 3 this window\n/, body);
    // One at a time: b waits for a's slot, still in this window.
    assert.match(body, /- <code>shop\/b<\/code>: waits for a free restart slot, 1st in line \(1 at once\), in the current window \(Sat 02:00–04:00 UTC\), 3 of 3 this window\n/, body);
    assert.doesNotMatch(body, /<code>shop\/c<\/code>:/, 'c is not part of the pull request');
    assert.doesNotMatch(body, /Merge gate/, 'the gate is off by default');
    assert.equal(planStatus(s)?.state, 'success');
    // Nothing was restarted by the review.
    assert.equal(s.sim.store.get('VirtualMachine', 'shop', 'a') !== undefined && (metaOf(s.sim.store.get('VirtualMachine', 'shop', 'a') as Obj)['annotations'] as Record<string, string> | undefined)?.['vmroll.dev/restart-status'], undefined);
  });

  it('before the window, says the next window; a pull request that goes over the per-window budget fails the merge gate when it is on', async () => {
    const base = ['a', 'b', 'c'].map((name) => ({ name, image: 'img:1' }));
    const change = base.map((v) => ({ ...v, image: 'img:2' }));
    const s = await scenario('budget', { policy: 'window', windows: [WINDOW], budget: { concurrent: 1, perWindow: 2 }, mergeGate: true }, BEFORE_WINDOW, base, change);
    const body = comment(s);
    assert.match(body, /- <code>shop\/a<\/code>: restarts in the next window \(Sat 02:00–04:00 UTC\), 1 of 2 this window\n/, body);
    assert.match(body, /- <code>shop\/b<\/code>: restarts in the next window \(Sat 02:00–04:00 UTC\), 2 of 2 this window\n/, body);
    assert.match(body, /- <code>shop\/c<\/code>: restarts in the window after next \(Sat 10 Jan 02:00–04:00 UTC\), 1 of 1 this window \(budget 2 per window\)\n/, body);
    assert.match(body, /\*\*Merge gate\*\* \(<code>restart.mergeGate<\/code>\): fails <code>vmroll\/plan<\/code>:\n\n- 1 restart over the budget of 2 per window \(Sat 02:00–04:00 UTC\), pushed to later windows: shop\/c\n/, body);
    const status = planStatus(s);
    assert.equal(status?.state, 'failure');
    assert.equal(status?.description, 'restart merge gate: 1 restart over the budget of 2 per window (Sat 02:00–04:00 UTC), pushed to later windows: shop/c');
  });

  for (const gate of [true, false]) {
    it(`a pull request that requests a restart of a protected VM: vmroll/plan ${gate ? 'fails, naming it, with mergeGate on' : 'succeeds with mergeGate off'}`, async () => {
      const guarded = { name: 'guarded', image: 'img:1', labels: { 'vmroll.dev/restart': 'never' } };
      const s = await scenario(`protected-${gate}`, { policy: 'onChange', mergeGate: gate }, BEFORE_WINDOW, [guarded], [{ ...guarded, annotations: { 'vmroll.dev/restart-requested': '2026-01-02' } }]);
      const body = comment(s);
      assert.match(body, /- <code>shop\/guarded<\/code>: never restarted by vmroll: protected \(vmroll.dev\/restart: never\)\n/, body);
      const status = planStatus(s);
      if (gate) {
        assert.equal(status?.state, 'failure');
        assert.equal(status?.description, 'restart merge gate: shop/guarded is protected (vmroll.dev/restart: never) but the change requests a restart of it');
        assert.match(body, /\*\*Merge gate\*\* \(<code>restart.mergeGate<\/code>\): fails <code>vmroll\/plan<\/code>:\n\n- shop\/guarded is protected \(vmroll.dev\/restart: never\) but the change requests a restart of it\n/, body);
      } else {
        assert.equal(status?.state, 'success');
        assert.doesNotMatch(status?.description ?? '', /gate/);
        assert.doesNotMatch(body, /Merge gate/);
      }
    });
  }

  it('under the manual policy (the default), a staged change awaits a manual restart', async () => {
    const s = await scenario('manual', undefined, BEFORE_WINDOW, [{ name: 'web', image: 'img:1' }], [{ name: 'web', image: 'img:2' }]);
    const body = comment(s);
    assert.match(body, /#### Restarts \(policy manual\)\n\n- <code>shop\/web<\/code>: awaits a manual restart \(policy manual\)\n/, body);
    assert.equal(planStatus(s)?.state, 'success');
  });

  it('under onChange, says it restarts once merged; the comment edited after the merge names the restart and when', async () => {
    const s = await scenario('onchange', { policy: 'onChange' }, BEFORE_WINDOW, [{ name: 'web', image: 'img:1' }], [{ name: 'web', image: 'img:2' }]);
    assert.match(comment(s), /- <code>shop\/web<\/code>: restarts as soon as it is merged \(policy onChange\)\n/, comment(s));
    const firstVmi = String(metaOf(s.sim.store.get('VirtualMachineInstance', 'shop', 'web') as Obj)['uid']);
    // Merge (fast-forward): main moves to the head, GitHub lists the pull request merged.
    await s.work.git('push', '--quiet', 'origin', 'HEAD:refs/heads/main');
    s.gh.updatePullRequest(1, { state: 'closed', mergedAt: new Date().toISOString(), mergeCommitSha: s.head });
    // The sync that applies it, then (if RestartRequired shows only then) the one that restarts; a minute apart on the clock.
    let restartedAt: string | undefined;
    for (let i = 0; i < 10 && restartedAt === undefined; i++) {
      const r = await s.handle.trigger('test');
      restartedAt = r?.restarts?.vms.find((l) => l.name === 'web' && l.event === 'restarted')?.at;
      s.clock.now += 60_000;
    }
    assert.ok(restartedAt !== undefined, 'vmroll restarted web');
    await until("web's new VMI to run", () => {
      const vmi = s.sim.store.get('VirtualMachineInstance', 'shop', 'web') as Obj | undefined;
      return vmi !== undefined && String(metaOf(vmi)['uid']) !== firstVmi && obj(vmi['status'])['phase'] === 'Running';
    });
    assert.equal(await s.handle.flushReports(WAIT_MS), true);
    let body = comment(s);
    const issued = `${restartedAt.slice(0, 16).replace('T', ' ')} UTC`;
    assert.match(body, /### vmroll: merged and synced/, body);
    assert.match(body, /\| <code>shop\/web<\/code> \| applied, restarted by vmroll \|/, body);
    assert.match(body, new RegExp(`Restarts \\(policy onChange\\):\\n\\n- <code>shop/web</code>: restart issued by vmroll at ${issued} \\(restarts now: staged changes need it \\(policy onChange\\)\\)\\n`), body);
    // The restart is under way: the merged comment follows it to the health gate's verdict.
    const later = await s.handle.trigger('test');
    assert.deepEqual(later?.restarts?.succeeded, ['shop/web'], JSON.stringify(later?.restarts));
    assert.equal(await s.handle.flushReports(WAIT_MS), true);
    body = comment(s);
    assert.match(body, /- <code>shop\/web<\/code>: restarted: [^\n]*Ready[^\n]* \(\d{4}-\d\d-\d\d \d\d:\d\d UTC\)\n/, body);
    assert.match(body, /\| <code>shop\/web<\/code> \| applied, restarted by vmroll \|/, body);
    assert.match(body, /: 0 live-applied · 1 applied, restarted by vmroll · 0 staged awaiting restart/, body);
  });
});
