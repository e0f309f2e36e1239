/**
 * A sync reuses what did not change since the last one (controller/outcomes.ts, writes.ts, the
 * manifest set's assembly): it must say exactly what a sync computing everything again would say.
 * A Reconciler with `checkIncremental` computes each sync's manifest set, writes, lagging guests
 * and report both ways and fails the sync on any difference; this drives one through a random
 * sequence of pushes (over git-http-backend) and cluster-side changes (the KubeVirt CR's version,
 * feature gates and workload update methods, instancetypes created and changed in place, restarts,
 * stops, migrations) on the embedded simulator, and requires every sync to pass.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { pino } from 'pino';
import { type ClusterBackend, ClusterError } from '../reconciler/cluster/backend.ts';
import { SimCluster } from '../reconciler/cluster/sim/simCluster.ts';
import { renderReport } from '../reconciler/controller/render.ts';
import { type ReconcileReport, Reconciler } from '../reconciler/controller/reconcile.ts';
import { type Obj, parseStartRevisionName, startRevisionName } from '../reconciler/rollout/index.ts';
import { GitSource } from '../reconciler/source/gitSource.ts';
import { startGitServer, type GitServer, type WorkingClone } from './helpers/gitServer.ts';

const silent = pino({ level: 'silent' });

function kubevirt(version: string, gates: string[], methods: string[]): Obj {
  return {
    apiVersion: 'kubevirt.io/v1',
    kind: 'KubeVirt',
    metadata: { name: 'kubevirt', namespace: 'kubevirt' },
    // One migration at a time: a second one waits, and every plan with a live change says how many are ahead.
    spec: { configuration: { developerConfiguration: { featureGates: gates }, migrations: { parallelMigrationsPerCluster: 1 } }, workloadUpdateStrategy: { workloadUpdateMethods: methods } },
    status: { observedKubeVirtVersion: version, phase: 'Deployed' },
  };
}

function instancetype(name: string, cpus: number): Obj {
  return { apiVersion: 'instancetype.kubevirt.io/v1beta1', kind: 'VirtualMachineClusterInstancetype', metadata: { name }, spec: { cpu: { guest: cpus }, memory: { guest: '1Gi' } } };
}

/** What the test varies per VM file. */
interface VmFile {
  name: string;
  namespace: string;
  sockets: number;
  cores: number;
  memory: string;
  runStrategy: 'Always' | 'Halted';
  /** Use this cluster instancetype instead of CPU and memory in the VM. */
  instancetype?: string;
  note?: string;
  broken?: boolean;
}

function vmYaml(v: VmFile): string {
  const domain = v.instancetype !== undefined
    ? '        devices: {}\n'
    : `        cpu:\n          sockets: ${v.sockets}\n          cores: ${v.cores}\n          threads: 1\n          maxSockets: 8\n        memory:\n          guest: ${v.memory}\n          maxGuest: 8Gi\n        devices: {}\n`;
  return `apiVersion: kubevirt.io/v1
kind: VirtualMachine
metadata:
  name: ${v.name}
  namespace: ${v.namespace}
${v.note !== undefined ? `  annotations:\n    note: "${v.note}"\n` : ''}spec:
  runStrategy: ${v.runStrategy}
${v.instancetype !== undefined ? `  instancetype:\n    kind: VirtualMachineClusterInstancetype\n    name: ${v.instancetype}\n` : ''}  template:
    spec:
      domain:
${domain}${v.broken === true ? '  oops: [\n' : ''}`;
}

/** mulberry32: a seeded generator, so a failing sequence can be replayed. */
function random(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

describe('incremental sync: the same report as computing everything again', function () {
  this.timeout(600_000);
  let server: GitServer;
  let work: WorkingClone;
  let dir: string;
  let reconciler: Reconciler | undefined;
  let cluster: SimCluster | undefined;

  before(async function () {
    server = await startGitServer();
    dir = await mkdtemp(path.join(tmpdir(), 'vmroll-incremental-'));
  });
  after(async function () {
    reconciler?.close();
    cluster?.close();
    await server?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('60 random steps of pushes and cluster changes: every sync checked against the full computation', async function () {
    const rnd = random(1515);
    const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rnd() * xs.length)] as T;
    const url = await server.createBareRepo('fleet');
    work = await server.createWorkingClone('fleet');
    const files = new Map<string, VmFile>();
    for (let i = 0; i < 14; i++) {
      const v: VmFile = { name: `vm-${i}`, namespace: i % 3 === 0 ? 'lab' : 'shop', sockets: 2, cores: 1, memory: '2Gi', runStrategy: 'Always' };
      if (i % 5 === 4) v.instancetype = i % 2 === 0 ? 'small' : 'medium';
      files.set(`vms/vm-${i}.yaml`, v);
      await work.write(`vms/vm-${i}.yaml`, vmYaml(v));
    }
    await work.commit('fleet');
    await work.push();

    let version = 'v1.9.0';
    let gates: string[] = [];
    let methods = ['LiveMigrate'];
    cluster = new SimCluster({ kubevirt: kubevirt(version, gates, methods), migrationDurationMs: 1_500 });
    cluster.createObject(instancetype('small', 1));
    // Applies to these VMs fail (an admission webhook's refusal): nothing changes in the cluster, and
    // once the refusal ends, only the retry of a VM the last sync did not find in sync writes it.
    const rejected = new Set<string>();
    const sim = cluster;
    const rejecting = new Proxy(sim, {
      get(target, prop, receiver): unknown {
        if (prop === 'applyVirtualMachine') {
          return async (vm: Obj): Promise<Obj> => {
            const meta = vm['metadata'] as Obj;
            if (rejected.has(`${String(meta['namespace'])}/${String(meta['name'])}`)) throw new ClusterError('Invalid', `admission webhook "test.example.invalid" denied the request: ${String(meta['name'])} is frozen`);
            return target.applyVirtualMachine(vm);
          };
        }
        const value: unknown = Reflect.get(target, prop, receiver);
        return typeof value === 'function' ? (value as (...a: unknown[]) => unknown).bind(target) : value;
      },
    }) as ClusterBackend;
    const refuseNamespace = (namespace: string): string | null => (namespace === 'vault' ? 'namespace vault is not allowed for this repository' : null);
    reconciler = new Reconciler({
      source: new GitSource({ repo: url, cacheDir: path.join(dir, 'cache') }),
      repoLabel: url,
      ref: 'main',
      path: 'vms',
      cluster: rejecting,
      prune: true,
      refuseNamespace,
      logger: silent,
      settleTimeoutMs: 2_000,
      checkIncremental: true,
    });
    const first = await reconciler.reconcile();
    assert.ok(first.summary.created >= 10, renderReport(first));

    const seen = { kubevirt: 0, instancetype: 0, restart: 0, migration: 0, pushes: 0, awaiting: 0, held: 0, deleted: 0, refused: 0, liveUpdated: 0, ownership: 0, ownedElsewhere: 0, orphans: 0, keptFromPrune: 0, rejected: 0, retried: 0, baseline: 0, hand: 0 };
    const reports: ReconcileReport[] = [];
    for (let step = 0; step < 60; step++) {
      const did: string[] = [];
      let pushed = false;
      // Besides the random ones, a refused apply every 20 steps, admitted 3 steps later (without a push).
      const forced = step % 20 === 1 ? 'other' : step % 20 === 3 ? 'instancetype' : step % 20 === 7 ? 'version' : step % 20 === 5 ? 'keep' : step % 20 === 10 ? 'reject' : step % 20 === 13 ? 'admit' : step % 20 === 16 ? 'baseline' : step % 20 === 18 ? 'hand' : null;
      const edits = 1 + Math.floor(rnd() * 3);
      for (let e = 0; e < edits; e++) {
        const r = rnd();
        const file = pick([...files.keys()]);
        const v = files.get(file);
        if ((r >= 0.9 && r < 0.97) || (forced !== null && e === 0)) {
          // Ownership on the cluster side: another team's VM beside ours, ours taken over by another
          // repository, kept from pruning, or let go (the label removed): what the prune and the refusals read.
          const what = forced ?? pick(['foreign', 'other', 'keep', 'release', 'reject', 'admit']);
          if (what === 'reject' && v !== undefined) {
            // A change the cluster refuses to apply.
            rejected.add(`${v.namespace}/${v.name}`);
            v.note = `refused at step ${step}`;
            await work.write(file, vmYaml(v));
            did.push(`reject ${v.namespace}/${v.name} and change it`);
            pushed = true;
            seen.rejected++;
            continue;
          }
          if (what === 'admit') {
            // The refusal ends, with no push: the next sync writes what it could not.
            did.push(`admit ${[...rejected].join(', ')}`);
            rejected.clear();
            continue;
          }
          const live = v !== undefined ? cluster.store.get('VirtualMachine', v.namespace, v.name) : undefined;
          if (what === 'instancetype') {
            // An instancetype alone, created or changed in place.
            const name = step % 40 === 3 ? 'small' : 'medium';
            const stored = cluster.store.get('VirtualMachineClusterInstancetype', undefined, name);
            if (stored === undefined) cluster.createObject(instancetype(name, 2));
            else cluster.store.replace({ ...stored, spec: { cpu: { guest: (Number(((stored['spec'] as Obj)['cpu'] as Obj)['guest']) % 3) + 1 }, memory: { guest: '1Gi' } } });
            did.push(`instancetype ${name} alone`);
            seen.instancetype++;
            continue;
          }
          if (what === 'version') {
            // The KubeVirt version alone: every VM's plan may change with no event on any VM.
            version = version === 'v1.9.0' ? 'v1.5.3' : 'v1.9.0';
            cluster.setKubeVirt(kubevirt(version, gates, methods));
            did.push(`kubevirt version ${version}`);
            seen.kubevirt++;
            continue;
          }
          if (what === 'hand') {
            // A hand edit of a field Git does not set (kubectl edit) on one of this repository's VMs,
            // and no push: no write, but the VM's plan changes.
            const id = reconciler?.ownerIdentity?.id;
            const mine = [...files.values()]
              .map((f) => cluster?.store.get('VirtualMachine', f.namespace, f.name))
              .filter((o): o is Obj => o !== undefined && ((o['metadata'] as Obj)['annotations'] as Record<string, string> | undefined)?.['vmroll.dev/source-repo'] === id);
            const target = mine[Math.floor(rnd() * mine.length)];
            if (target === undefined) continue;
            const spec = structuredClone((target['spec'] ?? {}) as Obj);
            const domain = ((spec['template'] as Obj)['spec'] as Obj)['domain'] as Obj;
            const cpu = (domain['cpu'] ?? {}) as Obj;
            if (cpu['model'] === undefined) cpu['model'] = 'host-passthrough';
            else delete cpu['model'];
            domain['cpu'] = cpu;
            cluster.store.replace({ ...target, spec });
            did.push(`hand edit ${String((target['metadata'] as Obj)['namespace'])}/${String((target['metadata'] as Obj)['name'])}`);
            seen.hand++;
            continue;
          }
          if (what === 'baseline' && live !== undefined && v !== undefined) {
            // A newer start revision alone, with other cores than the VM (its event after the VM's, as a
            // watch may bring it): the VM's baseline moves without any event on the VM or its instance.
            const uid = String((live['metadata'] as Obj)['uid']);
            const revisions = cluster.store.list('ControllerRevision', v.namespace).map((rev) => ({ rev, parsed: parseStartRevisionName(String((rev['metadata'] as Obj)['name'])) }));
            const newest = revisions.filter((r) => r.parsed?.uid === uid).sort((a, b) => (b.parsed?.generation ?? 0) - (a.parsed?.generation ?? 0))[0];
            if (newest !== undefined && newest.parsed !== null) {
              const spec = structuredClone(((newest.rev['data'] as Obj)['spec'] ?? {}) as Obj);
              const domain = (((spec['template'] as Obj | undefined)?.['spec'] as Obj | undefined)?.['domain'] ?? null) as Obj | null;
              const cpu = (domain?.['cpu'] ?? null) as Obj | null;
              if (cpu !== null) cpu['cores'] = Number(cpu['cores'] ?? 1) === 1 ? 2 : 1;
              const generation = newest.parsed.generation + 1;
              cluster.createObject({ apiVersion: 'apps/v1', kind: 'ControllerRevision', metadata: { name: startRevisionName(uid, generation), namespace: v.namespace }, revision: generation, data: { spec } });
              did.push(`baseline ${v.namespace}/${v.name} at generation ${generation}`);
              seen.baseline++;
            }
            continue;
          }
          if (what === 'foreign') {
            cluster.createObject({ apiVersion: 'kubevirt.io/v1', kind: 'VirtualMachine', metadata: { name: `foreign-${step}`, namespace: 'shop', labels: { team: 'other' } }, spec: { runStrategy: 'Halted', template: { spec: { domain: { devices: {} } } } } });
            did.push(`foreign shop/foreign-${step}`);
            seen.ownership++;
          } else if (live !== undefined && v !== undefined) {
            const meta = live['metadata'] as Obj;
            const labels = { ...((meta['labels'] ?? {}) as Record<string, string>) };
            const annotations = { ...((meta['annotations'] ?? {}) as Record<string, string>) };
            if (what === 'other') annotations['vmroll.dev/source-repo'] = 'https://git.example.invalid/other-team/fleet.git';
            if (what === 'keep') annotations['vmroll.dev/prune'] = 'disabled';
            if (what === 'release') delete labels['app.kubernetes.io/managed-by'];
            cluster.store.replace({ ...live, metadata: { ...meta, labels, annotations } });
            did.push(`${what} ${v.namespace}/${v.name}`);
            seen.ownership++;
            if (what === 'keep' && files.size > 6 && v.namespace !== 'vault') {
              // Then gone from Git: with --prune on, kept as an orphan for its annotation.
              files.delete(file);
              await work.remove(file);
              did.push(`delete ${file}`);
              pushed = true;
            }
          }
        } else if (r < 0.45 && v !== undefined) {
          // A change in Git: live (sockets, memory), restart-bound (cores), metadata, power, broken, refused, instancetype.
          const what = pick(['sockets', 'sockets', 'memory', 'cores', 'note', 'runStrategy', 'broken', 'vault', 'instancetype']);
          if (what === 'sockets') v.sockets = v.sockets === 2 ? 3 : 2;
          if (what === 'memory') v.memory = v.memory === '2Gi' ? '3Gi' : '2Gi';
          if (what === 'cores') v.cores = v.cores === 1 ? 2 : 1;
          if (what === 'note') v.note = `step ${step}`;
          if (what === 'runStrategy') v.runStrategy = v.runStrategy === 'Always' ? 'Halted' : 'Always';
          if (what === 'broken') v.broken = v.broken !== true;
          if (what === 'vault') v.namespace = v.namespace === 'vault' ? 'shop' : 'vault';
          if (what === 'instancetype') {
            if (v.instancetype === undefined) v.instancetype = pick(['small', 'medium']);
            else delete v.instancetype;
          }
          await work.write(file, vmYaml(v));
          did.push(`${file}: ${what}`);
          pushed = true;
        } else if (r < 0.52) {
          const name = `vm-${files.size + step * 10}`;
          const v2: VmFile = { name, namespace: 'shop', sockets: 2, cores: 1, memory: '2Gi', runStrategy: 'Always' };
          files.set(`vms/${name}.yaml`, v2);
          await work.write(`vms/${name}.yaml`, vmYaml(v2));
          did.push(`add ${name}`);
          pushed = true;
        } else if (r < 0.58 && files.size > 6) {
          files.delete(file);
          await work.remove(file);
          did.push(`delete ${file}`);
          pushed = true;
        } else if (r < 0.63 && v !== undefined) {
          // The same VM defined twice, then (some steps later) the copy goes again.
          const copy = `vms/copy-of-${path.basename(file)}`;
          if (files.has(copy)) {
            files.delete(copy);
            await work.remove(copy);
          } else {
            files.set(copy, { ...v });
            await work.write(copy, vmYaml(v));
          }
          did.push(`toggle ${copy}`);
          pushed = true;
        } else if (r < 0.71) {
          // Cluster-wide: every VM's plan depends on the KubeVirt CR.
          const what = pick(['version', 'gate', 'methods']);
          if (what === 'version') version = version === 'v1.9.0' ? 'v1.5.3' : 'v1.9.0';
          if (what === 'gate') gates = gates.length === 0 ? ['VMLiveUpdateFeatures'] : [];
          if (what === 'methods') methods = methods.length === 1 ? ['LiveMigrate', 'Evict'] : ['LiveMigrate'];
          cluster.setKubeVirt(kubevirt(version, gates, methods));
          did.push(`kubevirt ${what}`);
          seen.kubevirt++;
        } else if (r < 0.79) {
          // An instancetype the VMs reference: created, or changed in place.
          const name = pick(['small', 'medium']);
          const stored = cluster.store.get('VirtualMachineClusterInstancetype', undefined, name);
          if (stored === undefined) cluster.createObject(instancetype(name, 2));
          else cluster.store.replace({ ...stored, spec: { cpu: { guest: (Number(((stored['spec'] as Obj)['cpu'] as Obj)['guest']) % 3) + 1 }, memory: { guest: '1Gi' } } });
          did.push(`instancetype ${name}`);
          seen.instancetype++;
        } else if (r < 0.9 && v !== undefined) {
          // The guest side: a restart (RestartRequired goes), a stop and start, a migration by hand.
          const ref = { namespace: v.namespace, name: v.name };
          const what = pick(['restart', 'stop', 'start', 'migrate']);
          try {
            if (what === 'restart') await cluster.restartVirtualMachine(ref);
            if (what === 'stop') await cluster.stopVirtualMachine(ref);
            if (what === 'start') await cluster.startVirtualMachine(ref);
            if (what === 'migrate') cluster.createMigration({ apiVersion: 'kubevirt.io/v1', kind: 'VirtualMachineInstanceMigration', metadata: { namespace: v.namespace, generateName: `${v.name}-` }, spec: { vmiName: v.name } });
            did.push(`${what} ${v.namespace}/${v.name}`);
            seen.restart++;
          } catch (err) {
            did.push(`${what} ${v.namespace}/${v.name} refused (${err instanceof Error ? err.message.slice(0, 60) : String(err)})`);
          }
        }
      }
      if (pushed) {
        await work.commit(`step ${step}`);
        await work.push();
        seen.pushes++;
      }
      let report: ReconcileReport;
      try {
        report = await reconciler.reconcile();
      } catch (err) {
        throw new Error(`step ${step} (${did.join('; ')}): ${err instanceof Error ? err.message : String(err)}`);
      }
      reports.push(report);
      if ((report.summary.awaitingRestart ?? 0) > 0) seen.awaiting++;
      if ((report.summary.held ?? 0) > 0) seen.held++;
      if (report.summary.deleted > 0) seen.deleted++;
      if (report.plan.errors.some((e) => e.message.includes('vault'))) seen.refused++;
      if (report.plan.errors.some((e) => e.message.includes('other-team'))) seen.ownedElsewhere++;
      if (did.some((d) => d.startsWith('admit ') && d !== 'admit ') && report.writes > 0) seen.retried++;
      if ((report.plan.orphans ?? []).length > 0) seen.orphans++;
      if ((report.plan.orphans ?? []).some((o) => o.reason === 'pruneDisabled')) seen.keptFromPrune++;
      if (report.summary.liveUpdated > 0 || (report.summary.migrating ?? 0) + (report.summary.queued ?? 0) > 0) seen.liveUpdated++;
    }
    seen.migration = cluster.listMigrations().length;
    // The sequence has to reach what the memo could get wrong: cluster-wide and instancetype changes,
    // guests that moved, live changes with migrations, VMs awaiting restart, held, deleted and refused.
    const text = JSON.stringify(seen);
    assert.ok(seen.kubevirt >= 3 && seen.instancetype >= 3 && seen.restart >= 3 && seen.pushes >= 20, text);
    assert.ok(seen.migration >= 1 && seen.liveUpdated >= 3 && seen.awaiting >= 3 && seen.held >= 3 && seen.deleted >= 1 && seen.refused >= 3, text);
    assert.ok(seen.ownership >= 3 && seen.ownedElsewhere >= 3 && seen.keptFromPrune >= 1 && seen.rejected >= 2 && seen.retried >= 1 && seen.baseline >= 1 && seen.hand >= 2, text);
    assert.equal(reports.length, 60);
    // The pairing memo (plan/pairingMemo.ts) was the one in use: most syncs paired only what changed.
    const stats = reconciler.pairingStats;
    assert.ok(stats.incremental >= 20, `${JSON.stringify(stats)} ${text}`);
  });

  it('an instancetype created after the VM that names it: that VM is planned again, the others are not asked to change', async function () {
    const url = await server.createBareRepo('typed');
    const clone = await server.createWorkingClone('typed');
    const a: VmFile = { name: 'a', namespace: 'shop', sockets: 2, cores: 1, memory: '2Gi', runStrategy: 'Always', instancetype: 'small' };
    const b: VmFile = { ...a, name: 'b', instancetype: 'medium' };
    const c: VmFile = { ...a, name: 'c' };
    delete c.instancetype;
    for (const v of [a, b, c]) await clone.write(`vms/${v.name}.yaml`, vmYaml(v));
    await clone.commit('typed');
    await clone.push();
    const sim = new SimCluster({ kubevirt: kubevirt('v1.9.0', [], ['LiveMigrate']) });
    sim.createObject(instancetype('small', 1));
    const r = new Reconciler({ source: new GitSource({ repo: url, cacheDir: path.join(dir, 'cache-typed') }), repoLabel: url, ref: 'main', path: 'vms', cluster: sim, prune: false, logger: silent, settleTimeoutMs: 2_000, checkIncremental: true });
    try {
      await r.reconcile();
      const waitingOf = (report: ReconcileReport, name: string): string[] => (report.plan.vms.find((v) => v.name === name)?.waiting ?? []).map((w) => w.message);
      const before = await r.reconcile();
      assert.deepEqual(waitingOf(before, 'b'), ['instancetype expansion failed: instancetype VirtualMachineClusterInstancetype/medium not found']);
      // No push: only the cluster changed, and only b names the new instancetype.
      sim.createObject(instancetype('medium', 2));
      const after = await r.reconcile();
      assert.deepEqual(waitingOf(after, 'b'), []);
      assert.equal(after.writes, 0);
      // Changed in place: the check compares a's entry with the full computation again.
      const small = sim.store.get('VirtualMachineClusterInstancetype', undefined, 'small');
      assert.ok(small !== undefined);
      sim.store.replace({ ...small, spec: { cpu: { guest: 2 }, memory: { guest: '1Gi' } } });
      await r.reconcile();
    } finally {
      r.close();
      sim.close();
    }
  });
});
