/**
 * Reports say what happened, not what was written (issue 13, item 4): `vmroll run` against the
 * simulator's API server (kube backend, over HTTP), a Git server and the GitHub emulator, with the
 * KubeVirt CR's workloadUpdateMethods `[]`, `[LiveMigrate]` and `[Evict]`, and a CPU socket increase
 * on a migratable VM (web) and on a non-migratable one (db, `sim.vmroll.dev/non-migratable`). The PR
 * comment and `vmroll/plan` say the path before the merge; after it, the sync text, the
 * `vmroll/sync` status, the edited comment and the cluster (VMI conditions, VMIMs) say what KubeVirt
 * did; with LiveMigrate a later sync turns "migrating" into "live-updated" without writing.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { type ApiServer, startApiServer } from '../reconciler/cluster/sim/apiServer.ts';
import { SimCluster } from '../reconciler/cluster/sim/simCluster.ts';
import { makeLogger, startRun } from '../reconciler/commands/run.ts';
import { simKubeconfig } from '../reconciler/commands/sim.ts';
import type { RunConfig } from '../reconciler/config.ts';
import type { ReconcileReport } from '../reconciler/controller/reconcile.ts';
import { main } from '../reconciler/cli.ts';
import { formatSummary } from '../reconciler/plan/summary.ts';
import { validateVmPlan } from '../reconciler/validate.ts';
import type { Obj } from '../reconciler/rollout/index.ts';
import { type GitServer, type WorkingClone, startGitServer } from './helpers/gitServer.ts';
import { GitHubEmulator } from './helpers/githubEmulator.ts';
import { WAIT_MS, until } from './helpers/waitFor.ts';

const TOKEN = 'ghp_guestE2eTokenThatMustNeverBeLogged01';

function vmYaml(name: string, sockets: number, nonMigratable: boolean): string {
  const annotations = nonMigratable ? '\n      annotations:\n        sim.vmroll.dev/non-migratable: "true"' : '';
  return `apiVersion: kubevirt.io/v1
kind: VirtualMachine
metadata:
  name: ${name}
  namespace: shop
spec:
  runStrategy: Always
  template:
    metadata:
      labels:
        kubevirt.io/domain: ${name}${annotations}
    spec:
      domain:
        cpu:
          sockets: ${sockets}
          cores: 1
          threads: 1
        memory:
          guest: 1Gi
        devices:
          disks:
            - name: rootdisk
              disk:
                bus: virtio
      volumes:
        - name: rootdisk
          containerDisk:
            image: quay.io/containerdisks/fedora:40
`;
}

function kubevirt(methods: string[]): Obj {
  return {
    apiVersion: 'kubevirt.io/v1',
    kind: 'KubeVirt',
    metadata: { name: 'kubevirt', namespace: 'kubevirt' },
    spec: { configuration: { developerConfiguration: { featureGates: [] } }, workloadUpdateStrategy: { workloadUpdateMethods: methods } },
    status: { observedKubeVirtVersion: 'v1.9.0', phase: 'Deployed' },
  };
}

const obj = (v: unknown): Obj => (typeof v === 'object' && v !== null ? (v as Obj) : {});
const conditionOf = (o: Obj | undefined, type: string): Obj | undefined => ((obj(o?.['status'])['conditions'] ?? []) as Obj[]).find((c) => c['type'] === type);
const guestSockets = (vmi: Obj | undefined): unknown => obj(obj(vmi?.['status'])['currentCPUTopology'])['sockets'];
const specSockets = (vmi: Obj | undefined): unknown => obj(obj(obj(vmi?.['spec'])['domain'])['cpu'])['sockets'];

/** One cluster, repository and GitHub repository, with `vmroll run` following them. */
interface Scenario {
  sim: SimCluster;
  out: string[];
  gh: GitHubEmulator;
  work: WorkingClone;
  handle: Awaited<ReturnType<typeof startRun>>;
  /** The commit that merged the pull request (web and db at 2 sockets). */
  head: string;
  /** The first sync after the merge. */
  merged: ReconcileReport;
  repo: string;
  kubeconfig: string;
  stop(): Promise<void>;
}

const vmiOf = (s: Scenario, name: string): Obj | undefined => s.sim.store.get('VirtualMachineInstance', 'shop', name);
const syncStatuses = (s: Scenario): string[] => s.gh.statuses(s.head).filter((x) => x.context === 'vmroll/sync' && x.state !== 'pending').map((x) => x.description ?? '');
const comment = (s: Scenario): string => s.gh.comments(1)[0]?.body ?? '';
/** The stdout block of the last sync, first line first. */
const lastText = (s: Scenario): string[] => (s.out.at(-1) ?? '').split('\n');
const lineOf = (lines: string[], prefix: string): string | undefined => lines.map((l) => l.trim()).find((l) => l.startsWith(prefix));

describe('vmroll run: what reaches the guest, per workload update method (sim API server, Git server, GitHub emulator)', function () {
  this.timeout(180_000);
  let git: GitServer;
  let dir: string;
  const running: Scenario[] = [];

  before(async () => {
    git = await startGitServer();
    dir = mkdtempSync(path.join(tmpdir(), 'vmroll-guest-'));
  });
  afterEach(async () => {
    for (const s of running.splice(0)) await s.stop();
  });
  after(async () => {
    await git?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  /**
   * Creates web (migratable) and db (not) at 1 socket, waits for both to run, opens pull request #1
   * raising both to 2 sockets, lets vmroll review it, checks the review with `review`, then merges it
   * (fast-forward) and runs the sync that applies it.
   */
  async function scenario(name: string, methods: string[], migrationDurationMs: number, review: (s: Omit<Scenario, 'merged' | 'head' | 'repo' | 'kubeconfig'>, head: string) => void): Promise<Scenario> {
    const sim = new SimCluster({ kubevirt: kubevirt(methods), migrationDurationMs });
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
      await work.write('vms/web.yaml', vmYaml('web', 1, false));
      await work.write('vms/db.yaml', vmYaml('db', 1, true));
      const base = await work.commit('web and db at 1 socket');
      await work.push();

      const out: string[] = [];
      const logs: string[] = [];
      const logger = makeLogger('info', [TOKEN], { write: (l: string) => (logs.push(l), true) } as unknown as NodeJS.WritableStream);
      const config: RunConfig = {
        repo, ref: 'main', path: 'vms', intervalMs: 3_600_000, once: false, cluster: 'kube', kubeconfig: { file: kubeconfig }, simState: undefined, simKubevirt: undefined,
        example: false, output: 'text', prune: false, listen: undefined, cacheDir: path.join(dir, `${name}-cache`), logLevel: 'info', gitToken: undefined, webhookSecret: undefined,
        gitHost: { kind: 'github', repo: 'acme/fleet', apiUrl: gh.baseUrl, token: TOKEN, targetUrl: undefined },
      };
      handle = await startRun(config, { out: (t) => out.push(t), err: () => {} }, logger);
      const created = await handle.trigger('test');
      assert.equal(created?.summary.created, 2, out.join('\n'));
      await until('web and db to run', () => ['web', 'db'].every((n) => obj(vmiOf({ sim } as Scenario, n)?.['status'])['phase'] === 'Running'));
      await until("db's VMI to be LiveMigratable=False", () => conditionOf(vmiOf({ sim } as Scenario, 'db'), 'LiveMigratable')?.['status'] === 'False');
      assert.equal(conditionOf(vmiOf({ sim } as Scenario, 'web'), 'LiveMigratable')?.['status'], 'True');

      await work.git('checkout', '--quiet', '-b', 'cpu');
      await work.write('vms/web.yaml', vmYaml('web', 2, false));
      await work.write('vms/db.yaml', vmYaml('db', 2, true));
      const head = await work.commit('web and db: 2 sockets');
      await work.git('push', '--quiet', 'origin', 'HEAD:refs/heads/cpu', 'HEAD:refs/pull/1/head');
      gh.addPullRequest({ number: 1, headRef: 'cpu', headSha: head, baseRef: 'main', baseSha: base, title: 'More CPU' });
      await handle.trigger('test');
      assert.equal(await handle.flushReports(WAIT_MS), true);
      const partial = { sim, out, gh, work, handle, stop };
      review(partial, head);

      // Merge: main moves to the head (fast-forward), and GitHub lists the pull request merged.
      await work.git('push', '--quiet', 'origin', 'HEAD:refs/heads/main');
      gh.updatePullRequest(1, { state: 'closed', mergedAt: new Date().toISOString(), mergeCommitSha: head });
      const merged = await handle.trigger('test');
      assert.ok(merged !== null, out.join('\n'));
      assert.equal(merged.commit, head);
      assert.equal(merged.writes, 2, 'both VMs written once');
      assert.equal(await handle.flushReports(WAIT_MS), true);
      for (const line of [...out, ...logs]) assert.ok(!line.includes(TOKEN), 'the token never reaches a log or the text');
      return { ...partial, head, merged, repo, kubeconfig };
    } catch (e) {
      await stop();
      throw e;
    }
  }

  it('workloadUpdateMethods []: both hot-plugs are patched into the VMI and blocked until a restart; no migration, no write later', async () => {
    const s = await scenario('none', [], 500, (r, head) => {
      const body = r.gh.comments(1)[0]?.body ?? '';
      assert.match(body, /shop\/web · update · 1 live · not in the guest until a restart/);
      assert.match(body, /shop\/db · update · 1 live · not in the guest until a restart/);
      assert.equal(body.match(/\*\*Guest\*\*: patched but will not reach the guest until a restart: the cluster has no LiveMigrate workload update method/g)?.length, 2, body);
      assert.equal(r.gh.statuses(head).find((x) => x.context === 'vmroll/plan')?.description, '2 blocked until restart: no LiveMigrate method');
    });
    running.push(s);
    const text = lastText(s);
    assert.match(text[0] ?? '', new RegExp(`^sync ${s.head.slice(0, 12)}: 0 in sync · 2 blocked: no LiveMigrate method \\(\\d+ ms, 2 writes\\)$`));
    assert.equal(lineOf(text, 'guest'), 'guest   blocked: HotVCPUChange will not reach the guest until a restart: the cluster has no LiveMigrate workload update method');
    assert.deepEqual(syncStatuses(s), ['0 in sync · 2 blocked: no LiveMigrate method']);
    assert.equal(s.merged.waiting, null, 'nothing moves by itself: no quick re-check');
    for (const vm of s.merged.plan.vms) assert.deepEqual([vm.name, vm.observed?.outcome, vm.observed?.blockedBy], [vm.name, 'blocked', 'noLiveMigrateMethod']);
    const body = comment(s);
    assert.match(body, /: 0 live-applied · 2 patched, not in the guest until a restart · 0 staged awaiting restart/);
    assert.match(body, /\| <code>shop\/web<\/code> \| patched, not in the guest until a restart \| blocked: HotVCPUChange will not reach the guest until a restart: the cluster has no LiveMigrate workload update method \|/);
    // The cluster: the VMI spec holds 2 sockets, the guest 1, HotVCPUChange stays, and nothing migrates.
    for (const name of ['web', 'db']) {
      const vmi = vmiOf(s, name);
      assert.deepEqual([name, specSockets(vmi), guestSockets(vmi), conditionOf(vmi, 'HotVCPUChange') !== undefined], [name, 2, 1, true]);
    }
    assert.deepEqual(s.sim.listMigrations(), []);
    // A new process (`vmroll run --once`, text and JSON) looks at the running VMs and says the same, without writing.
    const once = async (output: string): Promise<string> => {
      const stdout: string[] = [];
      const args = ['run', '--once', '--repo', s.repo, '--ref', 'main', '--path', 'vms', '--kubeconfig', s.kubeconfig, '-o', output, '--cache-dir', path.join(dir, `once-${output}`), '--log-level', 'silent'];
      const code = await main(args, { out: (t) => stdout.push(t), err: () => {} });
      assert.equal(code, 0, stdout.join('\n'));
      return stdout.join('\n');
    };
    const json = JSON.parse(await once('json')) as unknown;
    const valid = validateVmPlan(json);
    assert.ok(valid.ok, JSON.stringify(valid));
    if (!valid.ok) return;
    assert.deepEqual(valid.value.vms.map((v) => [v.name, v.action, v.observed?.outcome, v.observed?.blockedBy]), [['db', 'none', 'blocked', 'noLiveMigrateMethod'], ['web', 'none', 'blocked', 'noLiveMigrateMethod']]);
    const onceText = (await once('text')).split('\n');
    assert.match(onceText.find((l) => l.startsWith('sync ')) ?? '', /: 0 in sync · 2 blocked: no LiveMigrate method \(\d+ ms, 0 writes\)$/, onceText.join('\n'));
    assert.ok(onceText.some((l) => l.trim() === 'blocked shop/web · blocked: HotVCPUChange will not reach the guest until a restart: the cluster has no LiveMigrate workload update method'), onceText.join('\n'));
    // A later sync writes nothing and still says blocked; the status already says so and is not posted again.
    const again = await s.handle.trigger('test');
    assert.equal(again?.writes, 0);
    assert.equal(formatSummary(again?.summary ?? ({} as never)), '0 in sync · 2 blocked: no LiveMigrate method');
    assert.equal(await s.handle.flushReports(WAIT_MS), true);
    assert.deepEqual(syncStatuses(s), ['0 in sync · 2 blocked: no LiveMigrate method']);
  });

  it('workloadUpdateMethods [LiveMigrate]: web migrates and a later sync reports it live with 0 writes; db is blocked: not migratable', async () => {
    // Long enough that the sync that applies the change finds web's migration queued or running.
    const s = await scenario('livemigrate', ['LiveMigrate'], 4_000, (r, head) => {
      const body = r.gh.comments(1)[0]?.body ?? '';
      assert.match(body, /shop\/web · update · 1 live · hot-plug via live migration/);
      assert.match(body, /\*\*Guest\*\*: hot-plug via live migration \(no migrations ahead\)/);
      assert.match(body, /shop\/db · update · 1 live · not in the guest until a restart/);
      assert.match(body, /\*\*Guest\*\*: patched but will not reach the guest until a restart: the VMI is not live-migratable \(LiveMigratable=False, NotMigratable/);
      assert.equal(r.gh.statuses(head).find((x) => x.context === 'vmroll/plan')?.description, '1 live via migration · 1 blocked until restart: not migratable');
    });
    running.push(s);
    const web = s.merged.plan.vms.find((v) => v.name === 'web');
    const db = s.merged.plan.vms.find((v) => v.name === 'db');
    assert.ok(web?.observed?.outcome === 'migrating' || web?.observed?.outcome === 'queued', JSON.stringify(web?.observed));
    assert.deepEqual([db?.observed?.outcome, db?.observed?.blockedBy], ['blocked', 'notMigratable']);
    const moving = web?.observed?.outcome ?? '';
    const first = `0 in sync · 1 ${moving} · 1 blocked: not migratable`;
    const text = lastText(s);
    assert.match(text[0] ?? '', new RegExp(`^sync ${s.head.slice(0, 12)}: ${first} \\(\\d+ ms, 2 writes\\)$`));
    assert.ok(text.some((l) => l.trim().startsWith(`guest   ${moving}`)), text.join('\n'));
    assert.ok(text.some((l) => /^\s+guest\s+blocked: HotVCPUChange will not reach the guest until a restart: the VMI is not live-migratable/.test(l)), text.join('\n'));
    assert.match(s.merged.waiting ?? '', /shop\/web/, 'a guest on its way asks for a quick re-check');
    assert.deepEqual(syncStatuses(s), [first]);
    assert.match(comment(s), new RegExp(`\\| <code>shop/web</code> \\| applied, ${moving === 'queued' ? 'queued' : 'migrating to the guest'} \\|`));
    assert.match(comment(s), /\| <code>shop\/db<\/code> \| patched, not in the guest until a restart \| blocked: .*not live-migratable/);

    // The cluster: one migration, for web; its guest gets the 2 sockets when it succeeds. db: no migration.
    await until("web's migration to succeed and its guest to run 2 sockets", () => guestSockets(vmiOf(s, 'web')) === 2 && s.sim.listMigrations('shop', 'web').every((m) => obj(m['status'])['phase'] === 'Succeeded'));
    assert.equal(s.sim.listMigrations('shop', 'web').length, 1);
    assert.deepEqual(s.sim.listMigrations('shop', 'db'), []);
    assert.equal(conditionOf(vmiOf(s, 'web'), 'HotVCPUChange'), undefined, 'the condition goes with the migration');
    assert.ok(conditionOf(vmiOf(s, 'db'), 'HotVCPUChange') !== undefined);
    assert.equal(guestSockets(vmiOf(s, 'db')), 1);

    // The re-check: no write, web moves from migrating to live-updated (said once), db stays blocked.
    const later = await s.handle.trigger('test');
    assert.equal(later?.writes, 0, 'nothing re-applied');
    const after = lastText(s);
    assert.match(after[0] ?? '', /: 0 in sync · 1 live-updated · 1 blocked: not migratable \(\d+ ms, 0 writes\)$/);
    assert.equal(lineOf(after, 'live'), 'live    shop/web · effective: a live migration carried the change to the guest');
    assert.equal(later?.waiting, null);
    assert.equal(later?.plan.vms.find((v) => v.name === 'web')?.observed?.outcome, 'effective');
    assert.equal(await s.handle.flushReports(WAIT_MS), true);
    assert.deepEqual(syncStatuses(s), [first, '0 in sync · 1 live-updated · 1 blocked: not migratable'], 'the status follows the guest');
    assert.match(comment(s), /\| <code>shop\/web<\/code> \| live-applied \| effective: the guest runs every change the VMI carries \|/, 'the merged comment is edited once more');
    assert.match(comment(s), /: 1 live-applied · 1 patched, not in the guest until a restart · 0 staged awaiting restart/);

    // And then web is simply in sync.
    const third = await s.handle.trigger('test');
    assert.equal(third?.writes, 0);
    assert.match(lastText(s)[0] ?? '', /: 1 in sync · 1 blocked: not migratable \(\d+ ms, 0 writes\)$/);
  });

  it('workloadUpdateMethods [Evict]: both VMIs are evicted and restarted with 2 sockets; no migration', async () => {
    const s = await scenario('evict', ['Evict'], 500, (r, head) => {
      const body = r.gh.comments(1)[0]?.body ?? '';
      assert.match(body, /shop\/web · update · 1 live · restarted by eviction/);
      assert.equal(body.match(/\*\*Guest\*\*: will be restarted by eviction: the cluster has no LiveMigrate workload update method/g)?.length, 2, body);
      assert.equal(r.gh.statuses(head).find((x) => x.context === 'vmroll/plan')?.description, '2 restarted by eviction');
    });
    running.push(s);
    // The sync that applies it finds each VMI queued for eviction, going, or already replaced: never live.
    const sum = s.merged.summary;
    assert.equal((sum.queued ?? 0) + (sum.evicted ?? 0), 2, formatSummary(sum));
    assert.equal(sum.liveUpdated, 0);
    assert.deepEqual(syncStatuses(s), [formatSummary(sum)]);
    for (const vm of s.merged.plan.vms) assert.ok(vm.observed?.restarted === true || vm.observed?.via === 'eviction' || vm.observed?.outcome === 'restarting', JSON.stringify(vm.observed));
    assert.match(comment(s), /\| <code>shop\/web<\/code> \| applied, (restarted by eviction|queued) \|/);

    // The cluster: new VMIs (new uids) run 2 sockets in the guest; nothing migrated.
    await until('both VMIs to be replaced and run 2 sockets', () => ['web', 'db'].every((n) => guestSockets(vmiOf(s, n)) === 2 && obj(vmiOf(s, n)?.['status'])['phase'] === 'Running'));
    assert.deepEqual(s.sim.listMigrations(), []);
    for (const n of ['web', 'db']) assert.equal(conditionOf(vmiOf(s, n), 'HotVCPUChange'), undefined, n);

    // A later sync: no write, both in sync; the merged comment ends on the eviction.
    const later = await s.handle.trigger('test');
    assert.equal(later?.writes, 0);
    assert.equal(formatSummary(later?.summary ?? ({} as never)), '2 in sync');
    assert.equal(later?.waiting, null);
    assert.equal(await s.handle.flushReports(WAIT_MS), true);
    assert.equal(syncStatuses(s).at(-1), '2 in sync');
    assert.match(comment(s), /\| <code>shop\/web<\/code> \| applied, restarted by eviction \|/);
    assert.match(comment(s), /\| <code>shop\/db<\/code> \| applied, restarted by eviction \|/);
  });
});
