/**
 * Issue 13's "Done when", plan and cluster-state half: over the simulator's API server on
 * 127.0.0.1, with the KubeVirt CR's workloadUpdateMethods set to [], [LiveMigrate] and [Evict],
 * a CPU socket increase on a migratable VM and on a non-migratable one (a ReadWriteOnce claim).
 * `vmroll plan` (a process, through a kubeconfig, text and JSON) predicts per VM what KubeVirt's
 * workload updater will do; `vmroll run --once` (a process) applies it; then the cluster, read
 * over HTTP, shows that KubeVirt did it: a vmim that succeeds and a new currentCPUTopology, a
 * change that stays in the VMI spec with HotVCPUChange and no migration, or a VMI replaced by
 * an eviction with the new sockets. What the cluster must show is derived from the plan's JSON,
 * and the plan's JSON is held to a table of what KubeVirt does (semantics §8).
 */
import assert from 'node:assert/strict';
import { execFile, execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { parse } from 'yaml';
import { type ApiServer, startApiServer } from '../reconciler/cluster/sim/apiServer.ts';
import { SimCluster } from '../reconciler/cluster/sim/simCluster.ts';
import { simKubeconfig } from '../reconciler/commands/sim.ts';
import type { Obj } from '../reconciler/rollout/index.ts';
import { ROOT } from './helpers/cases.ts';
import { until } from './helpers/waitFor.ts';

const run = promisify(execFile);
const VMROLL = path.join(ROOT, 'bin', 'vmroll.js');
const KUBEVIRT = parse(readFileSync(path.join(ROOT, 'fixtures', 'example-cluster', 'kubevirt.yaml'), 'utf8')) as Obj;
const NS = 'guest';
const SOCKETS = 'spec.template.spec.domain.cpu.sockets';

/** A VM with `sockets` sockets; `claim` adds a data disk on that PersistentVolumeClaim. */
function vmYaml(name: string, sockets: number, claim?: string): string {
  return `apiVersion: kubevirt.io/v1
kind: VirtualMachine
metadata:
  name: ${name}
  namespace: ${NS}
spec:
  runStrategy: Always
  template:
    spec:
      domain:
        cpu:
          sockets: ${sockets}
          cores: 1
          threads: 1
        memory:
          guest: 2Gi
        devices:
          disks:
            - name: rootdisk
              disk:
                bus: virtio
${claim !== undefined ? '            - name: data\n              disk:\n                bus: virtio\n' : ''}          interfaces:
            - name: default
              masquerade: {}
      networks:
        - name: default
          pod: {}
      volumes:
        - name: rootdisk
          containerDisk:
            image: quay.io/containerdisks/fedora:40
${claim !== undefined ? `        - name: data\n          persistentVolumeClaim:\n            claimName: ${claim}\n` : ''}`;
}

/** What KubeVirt does with the socket increase, per VM, under one workloadUpdateMethods list. */
interface Expected {
  reachesGuest: 'liveMigration' | 'awaitingRestart' | 'eviction';
  disruption: 'none' | 'migration' | 'restart';
  blockedBy?: 'noLiveMigrateMethod' | 'notMigratable';
  /** A phrase of the change's `why` in `vmroll plan`'s text. */
  why: RegExp;
}

interface Case {
  methods: string[];
  /** `migratable` has only a container disk; `pinned` a ReadWriteOnce claim (LiveMigratable=False, DisksNotLiveMigratable). */
  vms: { migratable: Expected; pinned: Expected };
}

const NO_METHOD = /will not reach the guest until a restart: the cluster has no LiveMigrate workload update method/;
const CASES: Case[] = [
  {
    methods: [],
    vms: {
      migratable: { reachesGuest: 'awaitingRestart', disruption: 'none', blockedBy: 'noLiveMigrateMethod', why: NO_METHOD },
      pinned: { reachesGuest: 'awaitingRestart', disruption: 'none', blockedBy: 'noLiveMigrateMethod', why: NO_METHOD },
    },
  },
  {
    methods: ['LiveMigrate'],
    vms: {
      migratable: { reachesGuest: 'liveMigration', disruption: 'migration', why: /KubeVirt's workload updater live-migrates the VMI to carry it to the guest \(no migrations ahead\)/ },
      pinned: {
        reachesGuest: 'awaitingRestart',
        disruption: 'none',
        blockedBy: 'notMigratable',
        why: /will not reach the guest until a restart: the VMI is not live-migratable \(LiveMigratable=False, DisksNotLiveMigratable: cannot migrate VMI: PVC pinned-data is not shared/,
      },
    },
  },
  {
    methods: ['Evict'],
    vms: {
      migratable: { reachesGuest: 'eviction', disruption: 'restart', blockedBy: 'noLiveMigrateMethod', why: /the workload updater evicts the VMI \(Evict method\): the guest restarts with it/ },
      pinned: { reachesGuest: 'eviction', disruption: 'restart', blockedBy: 'noLiveMigrateMethod', why: /the workload updater evicts the VMI \(Evict method\): the guest restarts with it/ },
    },
  },
];

interface Result {
  code: number;
  stdout: string;
  stderr: string;
}

interface PlanChange {
  path: string;
  rollout: string;
  reachesGuest?: string;
  migration?: { trigger: string; queuedAhead?: number; blockedBy?: string; blockedWhy?: string };
}
interface PlanVm {
  namespace: string;
  name: string;
  action: string;
  changes: PlanChange[];
  disruption?: { kind: string; summary: string };
}

const status = (o: Obj | undefined): Obj => (o?.['status'] ?? {}) as Obj;
const meta = (o: Obj | undefined): Obj => (o?.['metadata'] ?? {}) as Obj;
const conditions = (o: Obj | undefined): Obj[] => (status(o)['conditions'] ?? []) as Obj[];
const hasCondition = (o: Obj | undefined, type: string): boolean => conditions(o).some((c) => c['type'] === type);
const specSockets = (vmi: Obj | undefined): unknown => ((((vmi?.['spec'] ?? {}) as Obj)['domain'] ?? {}) as Obj)['cpu'] !== undefined ? ((((vmi?.['spec'] as Obj)['domain'] as Obj)['cpu'] as Obj)['sockets']) : undefined;
const guestSockets = (vmi: Obj | undefined): unknown => ((status(vmi)['currentCPUTopology'] ?? {}) as Obj)['sockets'];

describe('the path to the guest, end to end: plan predicts, the simulated cluster does it (issue 13)', function () {
  // Four vmroll processes per case, each seconds to start on a busy machine.
  this.timeout(300_000);

  for (const c of CASES) {
    describe(`workloadUpdateMethods [${c.methods.join(', ')}]`, () => {
      let dir: string;
      let repo: string;
      let kubeconfig: string;
      let cluster: SimCluster;
      let server: ApiServer;
      const git = (...args: string[]): string => execFileSync('git', ['-c', 'user.name=t', '-c', 'user.email=t@t', '-c', 'init.defaultBranch=main', ...args], { cwd: repo }).toString().trim();

      async function vmroll(...args: string[]): Promise<Result> {
        try {
          // Nothing from the test's environment (KUBECONFIG, tokens) reaches the process.
          const { stdout, stderr } = await run(process.execPath, [VMROLL, ...args], { cwd: dir, timeout: 120_000, env: { PATH: process.env['PATH'] ?? '/usr/bin:/bin', HOME: dir } });
          return { code: 0, stdout, stderr };
        } catch (e) {
          const err = e as { code?: number; stdout?: string; stderr?: string };
          return { code: typeof err.code === 'number' ? err.code : -1, stdout: err.stdout ?? '', stderr: err.stderr ?? '' };
        }
      }

      async function api(method: string, urlPath: string, body?: unknown): Promise<{ status: number; body: Obj }> {
        const res = await fetch(`${server.url}${urlPath}`, { method, headers: { 'content-type': 'application/json' }, ...(body !== undefined ? { body: JSON.stringify(body) } : {}) });
        const text = await res.text();
        return { status: res.status, body: text === '' ? {} : (JSON.parse(text) as Obj) };
      }
      const vmi = async (name: string): Promise<Obj | undefined> => {
        const r = await api('GET', `/apis/kubevirt.io/v1/namespaces/${NS}/virtualmachineinstances/${name}`);
        return r.status === 200 ? r.body : undefined;
      };
      const vm = async (name: string): Promise<Obj> => (await api('GET', `/apis/kubevirt.io/v1/namespaces/${NS}/virtualmachines/${name}`)).body;
      const vmims = async (): Promise<Obj[]> => ((await api('GET', `/apis/kubevirt.io/v1/namespaces/${NS}/virtualmachineinstancemigrations`)).body['items'] ?? []) as Obj[];
      const outdated = async (): Promise<unknown> => status((await api('GET', '/apis/kubevirt.io/v1/namespaces/kubevirt/kubevirts/kubevirt')).body)['outdatedVirtualMachineInstanceWorkloads'];

      before(async () => {
        dir = mkdtempSync(path.join(tmpdir(), 'vmroll-guest-path-'));
        repo = path.join(dir, 'repo');
        const strategy: Obj = { workloadUpdateMethods: c.methods };
        // Both VMs of the Evict case are evicted; a short batch interval keeps a second batch from waiting KubeVirt's default minute.
        if (c.methods.includes('Evict')) strategy['batchEvictionInterval'] = '1s';
        cluster = new SimCluster({ kubevirt: { ...KUBEVIRT, spec: { ...(KUBEVIRT['spec'] as Obj), workloadUpdateStrategy: strategy } }, migrationDurationMs: 600 });
        server = await startApiServer({ cluster, listen: '127.0.0.1:0' });
        kubeconfig = path.join(dir, 'kubeconfig');
        writeFileSync(kubeconfig, simKubeconfig(server.url));
        assert.equal((await api('POST', '/api/v1/namespaces', { apiVersion: 'v1', kind: 'Namespace', metadata: { name: NS } })).status, 201);
        const pvc = { apiVersion: 'v1', kind: 'PersistentVolumeClaim', metadata: { name: 'pinned-data', namespace: NS }, spec: { accessModes: ['ReadWriteOnce'], resources: { requests: { storage: '1Gi' } } } };
        assert.equal((await api('POST', `/api/v1/namespaces/${NS}/persistentvolumeclaims`, pvc)).status, 201);

        mkdirSync(path.join(repo, 'vms'), { recursive: true });
        git('init', '--quiet');
        writeFileSync(path.join(repo, 'vms', 'migratable.yaml'), vmYaml('migratable', 2));
        writeFileSync(path.join(repo, 'vms', 'pinned.yaml'), vmYaml('pinned', 2, 'pinned-data'));
        git('add', '-A');
        git('commit', '--quiet', '-m', 'two VMs');
        const created = await vmroll('run', '--repo', repo, '--ref', 'main', '--path', 'vms', '--kubeconfig', kubeconfig, '--once', '--log-level', 'silent');
        assert.equal(created.code, 0, created.stderr);
        await until('both VMIs running', async () => status(await vmi('migratable'))['phase'] === 'Running' && status(await vmi('pinned'))['phase'] === 'Running');
        const migratable = conditions(await vmi('migratable')).find((x) => x['type'] === 'LiveMigratable');
        const pinned = conditions(await vmi('pinned')).find((x) => x['type'] === 'LiveMigratable');
        assert.equal(migratable?.['status'], 'True');
        assert.deepEqual([pinned?.['status'], pinned?.['reason']], ['False', 'DisksNotLiveMigratable'], 'a ReadWriteOnce claim makes the VMI non-migratable');

        writeFileSync(path.join(repo, 'vms', 'migratable.yaml'), vmYaml('migratable', 3));
        writeFileSync(path.join(repo, 'vms', 'pinned.yaml'), vmYaml('pinned', 3, 'pinned-data'));
        git('commit', '--quiet', '-am', 'one more socket each');
      });
      after(async () => {
        await server?.close();
        cluster?.close();
        rmSync(dir, { recursive: true, force: true });
      });

      let planned: PlanVm[] = [];

      it('vmroll plan -o json predicts, per VM, how the socket increase reaches the guest', async () => {
        const r = await vmroll('plan', '--repo', repo, '--ref', 'main', '--path', 'vms', '--kubeconfig', kubeconfig, '-o', 'json', '--log-level', 'silent');
        assert.equal(r.code, 0, r.stderr);
        const plan = JSON.parse(r.stdout) as { vms: PlanVm[]; errors: unknown[] };
        assert.deepEqual(plan.errors, []);
        planned = plan.vms;
        for (const [name, want] of Object.entries(c.vms)) {
          const entry = plan.vms.find((v) => v.namespace === NS && v.name === name);
          assert.equal(entry?.action, 'update', name);
          assert.deepEqual(entry.changes.map((x) => `${x.path}:${x.rollout}`), [`${SOCKETS}:live`], `${name}: one live change`);
          const change = entry.changes[0];
          assert.equal(change?.reachesGuest, want.reachesGuest, `${name}: reachesGuest`);
          assert.equal(change.migration?.trigger, 'HotVCPUChange', `${name}: the trigger`);
          assert.equal(change.migration.blockedBy, want.blockedBy, `${name}: blockedBy`);
          if (want.reachesGuest === 'liveMigration') assert.equal(change.migration.queuedAhead, 0, `${name}: nothing ahead`);
          else assert.ok((change.migration.blockedWhy ?? '') !== '', `${name}: the block is explained`);
          assert.equal(entry.disruption?.kind, want.disruption, `${name}: disruption (${entry.disruption?.summary})`);
        }
      });

      it('vmroll plan (text) says the same, in each change’s why', async () => {
        const r = await vmroll('plan', '--repo', repo, '--ref', 'main', '--path', 'vms', '--kubeconfig', kubeconfig, '--log-level', 'silent');
        assert.equal(r.code, 0, r.stderr);
        assert.match(r.stdout, /^target: http:\/\/127\.0\.0\.1:\d+ /m);
        for (const [name, want] of Object.entries(c.vms)) {
          const block = r.stdout.split(/\n(?=VM )/).find((b) => b.startsWith(`VM ${NS}/${name}:`));
          assert.ok(block !== undefined, `${name} is listed:\n${r.stdout}`);
          const row = block.split('\n').find((l) => l.includes(SOCKETS));
          assert.match(row ?? '', /2 → 3\s+live\s/, `${name}: the row`);
          assert.match(row ?? '', want.why, `${name}: the why`);
        }
      });

      it('vmroll run --once applies it, and the cluster does what the plan predicted', async () => {
        const before = new Map<string, string>();
        for (const name of Object.keys(c.vms)) before.set(name, String(meta(await vmi(name))['uid']));
        const synced = await vmroll('run', '--repo', repo, '--ref', 'main', '--path', 'vms', '--kubeconfig', kubeconfig, '--once', '--log-level', 'silent');
        assert.equal(synced.code, 0, synced.stderr);
        const syncText = synced.stdout;
        assert.match(syncText, /^sync [0-9a-f]{12}: /m, syncText);
        // Issue 13 item 4 (sync report, another change): assertions about what this sync prints per VM
        // (migrating / queued / blocked: not migratable / evicted, and the later syncs that follow the
        // VMIs without re-applying) go here, against syncText and a second `vmroll run --once`.
        // Issue 13 item 4 (PR comment): the comment's per-VM wording ("hot-plug via live migration",
        // "patched but will not reach the guest until a restart: …", "will be restarted by eviction")
        // and its post-merge edit with the observed outcome go here, with the GitHub emulator.

        for (const name of Object.keys(c.vms)) {
          const predicted = planned.find((v) => v.name === name)?.changes.find((x) => x.path === SOCKETS)?.reachesGuest;
          const uid = before.get(name);
          const ownMigrations = async (): Promise<Obj[]> => (await vmims()).filter((m) => ((m['spec'] ?? {}) as Obj)['vmiName'] === name);
          const detail = async (): Promise<string> => JSON.stringify({ vmi: status(await vmi(name)), vmims: (await vmims()).map((m) => [meta(m)['name'], status(m)['phase']]) });
          let last = '';
          const wait = async (what: string, check: () => Promise<boolean>): Promise<void> => {
            await until(`${name}: ${what}`, async () => {
              const ok = await check();
              if (!ok) last = await detail();
              return ok;
            }, { detail: () => last });
          };
          switch (predicted) {
            case 'liveMigration': {
              await wait('a workload-update migration that succeeds', async () => (await ownMigrations()).some((m) => status(m)['phase'] === 'Succeeded'));
              const [m, ...more] = await ownMigrations();
              assert.deepEqual(more, [], 'one migration');
              assert.match(String(meta(m)['name']), /^kubevirt-workload-update-/);
              assert.ok(Object.hasOwn((meta(m)['annotations'] ?? {}) as Obj, 'kubevirt.io/workloadUpdateMigration'));
              await wait('the guest to run 3 sockets', async () => guestSockets(await vmi(name)) === 3 && !hasCondition(await vmi(name), 'HotVCPUChange'));
              const now = await vmi(name);
              assert.equal(meta(now)['uid'], uid, 'the same VMI, migrated');
              assert.equal(((status(now)['migrationState'] ?? {}) as Obj)['completed'], true);
              break;
            }
            case 'awaitingRestart': {
              // The updater writes the outdated count in the pass that would have created a migration:
              // once it counts this VM's VMI, no migration for it came.
              const outdatedNow = Object.values(c.vms).filter((v) => v.reachesGuest === 'awaitingRestart').length;
              await wait(`the workload updater to count ${outdatedNow} outdated VMI(s)`, async () => (await outdated()) === outdatedNow && hasCondition(await vmi(name), 'HotVCPUChange'));
              assert.deepEqual(await ownMigrations(), [], 'nothing migrates');
              const now = await vmi(name);
              assert.equal(meta(now)['uid'], uid, 'the same VMI');
              assert.equal(specSockets(now), 3, 'patched into the VMI spec');
              assert.equal(guestSockets(now), 2, 'the guest still runs 2 sockets');
              assert.ok(hasCondition(now, 'HotVCPUChange'), 'HotVCPUChange stays');
              break;
            }
            case 'eviction': {
              await wait('a new VMI (new uid) running 3 sockets', async () => {
                const now = await vmi(name);
                return now !== undefined && meta(now)['uid'] !== uid && status(now)['phase'] === 'Running' && specSockets(now) === 3 && guestSockets(now) === 3;
              });
              const now = await vmi(name);
              assert.ok(!hasCondition(now, 'HotVCPUChange'), 'the new VMI has nothing pending');
              assert.deepEqual(await ownMigrations(), [], 'evicted, not migrated');
              assert.ok(!conditions(await vm(name)).some((x) => x['type'] === 'RestartRequired'));
              break;
            }
            default:
              assert.fail(`${name}: unexpected prediction ${String(predicted)}`);
          }
        }
      });
    });
  }
});
