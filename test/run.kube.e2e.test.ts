/**
 * `vmroll run --kubeconfig` against `vmroll sim` over HTTP: the same pushes give the same
 * plans and the same cluster as with the embedded simulator; and under faults (500s,
 * conflicts, latency, dropped watches) the loop converges, writes nothing wrong, loses nothing.
 */
import assert from 'node:assert/strict';
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { parse } from 'yaml';
import { KubeCluster } from '../reconciler/cluster/kube.ts';
import { type ApiServer, startApiServer } from '../reconciler/cluster/sim/apiServer.ts';
import { SimCluster } from '../reconciler/cluster/sim/simCluster.ts';
import { makeLogger } from '../reconciler/commands/run.ts';
import { simKubeconfig } from '../reconciler/commands/sim.ts';
import { Reconciler } from '../reconciler/controller/reconcile.ts';
import type { Obj, VmPlan } from '../reconciler/rollout/index.ts';
import { GitSource } from '../reconciler/source/gitSource.ts';
import { ROOT } from './helpers/cases.ts';
import { type GitServer, type WorkingClone, startGitServer } from './helpers/gitServer.ts';
import { until } from './helpers/waitFor.ts';

const run = promisify(execFile);
const VMROLL = path.join(ROOT, 'bin', 'vmroll.js');
const EXAMPLE = path.join(ROOT, 'fixtures', 'example-repo', 'vms');
const KUBEVIRT = path.join(ROOT, 'fixtures', 'example-cluster', 'kubevirt.yaml');

async function vmrollOnce(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await run(process.execPath, [VMROLL, 'run', '--once', ...args], { cwd: ROOT, timeout: 60_000 });
    return { code: 0, stdout, stderr };
  } catch (e) {
    const err = e as { code?: number; stdout?: string; stderr?: string };
    return { code: typeof err.code === 'number' ? err.code : -1, stdout: err.stdout ?? '', stderr: err.stderr ?? '' };
  }
}

/** Starts `vmroll sim` as its own process and waits for its kubeconfig. */
async function startSimProcess(dir: string): Promise<{ child: ChildProcess; kubeconfig: string; url: string }> {
  const kubeconfig = path.join(dir, 'sim-kubeconfig');
  const child = spawn(process.execPath, [VMROLL, 'sim', '--listen', '127.0.0.1:0', '--kubevirt', KUBEVIRT, '--kubeconfig-out', kubeconfig, '--log-level', 'silent'], {
    cwd: ROOT,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  child.stdout?.on('data', (d: Buffer) => (out += d.toString()));
  // Starting a node process takes seconds on a busy machine.
  await until('vmroll sim to write its kubeconfig', () => out.includes('kubeconfig written'), {
    timeoutMs: 60_000,
    failIf: () => (child.exitCode !== null ? `vmroll sim exited ${child.exitCode}` : undefined),
    detail: () => out,
  });
  const url = /Kubernetes API at (\S+)/.exec(out)?.[1] ?? '';
  return { child, kubeconfig, url };
}

async function api(url: string, method: string, p: string, body?: Obj): Promise<{ status: number; body: Obj }> {
  const res = await fetch(`${url}${p}`, { method, headers: { 'content-type': 'application/json' }, ...(body !== undefined ? { body: JSON.stringify(body) } : {}) });
  return { status: res.status, body: (await res.json()) as Obj };
}

/** A plan with what differs between two clusters by nature (uids, times) left out. */
function comparable(plan: VmPlan): unknown {
  return JSON.parse(JSON.stringify(plan, (k, v: unknown) => (k === 'lastTransitionTime' ? undefined : v)));
}

const socketsOf = (o: Obj | undefined, template: boolean): unknown => {
  const spec = (o?.['spec'] ?? {}) as Obj;
  const s = template ? (((spec['template'] ?? {}) as Obj)['spec'] ?? {}) as Obj : spec;
  return (((s['domain'] ?? {}) as Obj)['cpu'] as Obj | undefined)?.['sockets'];
};

describe('vmroll run --kubeconfig against vmroll sim over HTTP', function () {
  this.timeout(180_000);
  let git: GitServer;
  let work: WorkingClone;
  let repo: string;
  let dir: string;

  before(async () => {
    git = await startGitServer();
    dir = mkdtempSync(path.join(tmpdir(), 'vmroll-kube-run-'));
    repo = await git.createBareRepo('fleet');
    work = await git.createWorkingClone('fleet');
    for (const f of ['web.yaml', 'db.yaml', 'batch.yaml']) await work.write(`vms/${f}`, readFileSync(path.join(EXAMPLE, f), 'utf8'));
    await work.commit('three VMs');
    await work.push();
  });
  after(async () => {
    await git?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it('gives the same plans and the same cluster as the embedded simulator', async () => {
    const sim = await startSimProcess(dir);
    try {
      for (const ns of ['shop', 'jobs']) assert.equal((await api(sim.url, 'POST', '/api/v1/namespaces', { apiVersion: 'v1', kind: 'Namespace', metadata: { name: ns } })).status, 201);
      const state = path.join(dir, 'embedded.json');
      const common = ['--repo', repo, '--path', 'vms', '--output', 'json', '--log-level', 'silent'];
      const kube = (): Promise<{ code: number; stdout: string; stderr: string }> => vmrollOnce([...common, '--kubeconfig', sim.kubeconfig, '--cache-dir', path.join(dir, 'c1')]);
      const embedded = (): Promise<{ code: number; stdout: string; stderr: string }> =>
        vmrollOnce([...common, '--sim-state', state, '--sim-kubevirt', KUBEVIRT, '--cache-dir', path.join(dir, 'c2')]);

      const k1 = await kube();
      const e1 = await embedded();
      assert.equal(k1.code, 0, k1.stderr);
      assert.equal(e1.code, 0, e1.stderr);
      const plan1 = JSON.parse(k1.stdout) as VmPlan;
      assert.deepEqual(plan1.vms.map((v) => `${v.namespace}/${v.name}:${v.action}`), ['jobs/batch:create', 'shop/db:create', 'shop/web:create']);
      assert.deepEqual(comparable(plan1), comparable(JSON.parse(e1.stdout) as VmPlan));
      const vmi = await api(sim.url, 'GET', '/apis/kubevirt.io/v1/namespaces/shop/virtualmachineinstances/web');
      assert.equal(vmi.status, 200, 'the simulated virt-controller behind the HTTP server started the VM');

      // One live change (db: more sockets) and one staged (web: sockets and cores, cores is not live).
      await work.write('vms/db.yaml', readFileSync(path.join(EXAMPLE, 'db.yaml'), 'utf8').replace('sockets: 4', 'sockets: 6'));
      await work.write('vms/web.yaml', readFileSync(path.join(EXAMPLE, 'web.yaml'), 'utf8').replace('sockets: 2', 'sockets: 4').replace('cores: 1', 'cores: 2'));
      await work.commit('db: 6 sockets; web: 4 sockets, 2 cores');
      await work.push();
      const [k2, e2] = [await kube(), await embedded()];
      assert.equal(k2.code, 0, k2.stderr);
      const plan2 = JSON.parse(k2.stdout) as VmPlan;
      assert.deepEqual(comparable(plan2), comparable(JSON.parse(e2.stdout) as VmPlan));
      const web = plan2.vms.find((v) => v.name === 'web');
      const db = plan2.vms.find((v) => v.name === 'db');
      assert.equal(web?.restartRequired, true);
      assert.equal(web?.conditionMessage, 'a non-live-updatable field was changed in the template spec');
      assert.equal(db?.restartRequired, false);
      assert.equal(db?.changes.find((c) => c.path === 'spec.template.spec.domain.cpu.sockets')?.rollout, 'live');
      const dbVmi = (await api(sim.url, 'GET', '/apis/kubevirt.io/v1/namespaces/shop/virtualmachineinstances/db')).body;
      const webVmi = (await api(sim.url, 'GET', '/apis/kubevirt.io/v1/namespaces/shop/virtualmachineinstances/web')).body;
      assert.equal(socketsOf(dbVmi, false), 6, 'hot-plugged');
      assert.equal(socketsOf(webVmi, false), 2, 'staged until a restart');
      const managers = (((await api(sim.url, 'GET', '/apis/kubevirt.io/v1/namespaces/shop/virtualmachines/web')).body['metadata'] as Obj)['managedFields'] as Obj[]).map((m) => m['manager']);
      assert.ok(managers.includes('vmroll'), 'applied server-side as field manager vmroll');
    } finally {
      sim.child.kill('SIGTERM');
      await new Promise((r) => sim.child.once('exit', r));
    }
  });

  it('refuses a kubeconfig it cannot read, naming it', async () => {
    const missing = path.join(dir, 'nope.yaml');
    const r = await vmrollOnce(['--repo', repo, '--kubeconfig', missing, '--log-level', 'silent']);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /nope\.yaml/);
    assert.ok(!existsSync(missing));
  });

  describe('under faults', () => {
    let sim: SimCluster;
    let server: ApiServer;
    let kubeconfig: string;
    let faultRepo: string;
    const count = 12;
    const manifests = (sockets: (i: number) => number): string[] =>
      Array.from({ length: count }, (_, i) =>
        readFileSync(path.join(EXAMPLE, 'web.yaml'), 'utf8')
          .replace('name: web', `name: vm-${i}`)
          .replace('sockets: 2', `sockets: ${sockets(i)}`),
      );

    before(async () => {
      sim = new SimCluster({ kubevirt: parse(readFileSync(KUBEVIRT, 'utf8')) as Obj, watchHistory: 40 });
      sim.createObject({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'shop' } });
      server = await startApiServer({ cluster: sim, listen: '127.0.0.1:0', bookmarkIntervalMs: 50 });
      kubeconfig = path.join(dir, 'faulty-kubeconfig');
      writeFileSync(kubeconfig, simKubeconfig(server.url));
      faultRepo = await git.createBareRepo('fleet-faults');
      const many = await git.createWorkingClone('fleet-faults');
      const files = manifests(() => 2);
      for (let i = 0; i < count; i++) await many.write(`fleet/vm-${i}.yaml`, files[i] ?? '');
      await many.commit('a fleet');
      await many.push();
      work = many;
    });
    after(async () => {
      await server?.close();
    });

    it('converges through 500s, conflicts, slow answers and dropped watches; writes nothing wrong', async () => {
      const kube = new KubeCluster({ kubeconfig: { file: kubeconfig }, retry: { attempts: 3, baseMs: 5, capMs: 20 }, requestTimeoutMs: 30_000, informer: { retryMs: 10 } });
      const reconciler = new Reconciler({
        source: new GitSource({ repo: faultRepo, cacheDir: path.join(dir, 'c3') }),
        repoLabel: faultRepo,
        ref: 'main',
        path: 'fleet',
        cluster: kube,
        prune: true,
        logger: makeLogger('silent', []),
        // An upper bound only (the product's default): a sync reports once the watch shows its writes.
        settleTimeoutMs: 10_000,
      });
      const converge = async (): Promise<number> => {
        for (let round = 1; round <= 15; round++) {
          const report = await reconciler.reconcile().catch(() => null);
          if (report !== null && report.plan.errors.length === 0 && report.writes === 0) return round;
        }
        throw new Error('did not converge in 15 rounds');
      };
      const check = (sockets: (i: number) => number): void => {
        const vms = sim.store.list('VirtualMachine');
        assert.equal(vms.length, count, 'no VM lost, none extra');
        for (let i = 0; i < count; i++) {
          const live = sim.store.get('VirtualMachine', 'shop', `vm-${i}`);
          assert.equal(socketsOf(live, true), sockets(i), `vm-${i} holds exactly the manifest`);
          assert.ok(sim.store.get('VirtualMachineInstance', 'shop', `vm-${i}`), `vm-${i} runs`);
        }
      };
      try {
        server.setFaults({ errorRate: 0.25, conflictRate: 0.3, latencyMs: 3, dropWatchesAfterMs: 150, seed: 11 });
        const rounds = await converge();
        assert.ok(rounds >= 2, 'the faults did bite (some round failed)');
        check(() => 2);

        const next = manifests((i) => (i % 3 === 0 ? 4 : 2));
        for (let i = 0; i < count; i++) await work.write(`fleet/vm-${i}.yaml`, next[i] ?? '');
        await work.commit('every third VM: 4 sockets');
        await work.push();
        await converge();
        check((i) => (i % 3 === 0 ? 4 : 2));
        for (let i = 0; i < count; i += 3) assert.equal(socketsOf(sim.store.get('VirtualMachineInstance', 'shop', `vm-${i}`), false), 4, 'hot-plugged');

        server.setFaults({});
        const calm = await reconciler.reconcile();
        assert.equal(calm.writes, 0);
        assert.deepEqual(calm.plan.errors, []);
        // Every third VM's 4 sockets are on its VMI, and with no LiveMigrate method they wait there for a restart.
        assert.equal(calm.summary.inSync, count - Math.ceil(count / 3));
        assert.equal(calm.summary.blocked, Math.ceil(count / 3));
        assert.deepEqual(calm.summary.blockedWhy, ['no LiveMigrate method']);
      } finally {
        server.setFaults({});
        reconciler.close();
        kube.close();
      }
    });
  });
});
