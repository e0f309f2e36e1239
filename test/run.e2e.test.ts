/**
 * `vmroll run` end to end: a real git http-backend on 127.0.0.1, pushes with the git CLI, the
 * loop syncing into the embedded simulator, webhooks over a real socket.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createHmac } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import type { RunConfig } from '../reconciler/config.ts';
import { makeLogger, startRun } from '../reconciler/commands/run.ts';
import { SimCluster } from '../reconciler/cluster/sim/simCluster.ts';
import { Reconciler } from '../reconciler/controller/reconcile.ts';
import type { Obj, VmPlan } from '../reconciler/rollout/index.ts';
import { GitSource } from '../reconciler/source/gitSource.ts';
import { ROOT } from './helpers/cases.ts';
import { type GitServer, type WorkingClone, startGitServer } from './helpers/gitServer.ts';
import { until } from './helpers/waitFor.ts';

const run = promisify(execFile);
const EXAMPLE = path.join(ROOT, 'fixtures', 'example-repo', 'vms');
const KUBEVIRT = path.join(ROOT, 'fixtures', 'example-cluster', 'kubevirt.yaml');
const silent = makeLogger('silent', []);

async function vmrollOnce(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await run(process.execPath, [path.join(ROOT, 'bin', 'vmroll.js'), 'run', '--once', ...args], { cwd: ROOT, timeout: 60_000 });
    return { code: 0, stdout, stderr };
  } catch (e) {
    const err = e as { code?: number; stdout?: string; stderr?: string };
    return { code: typeof err.code === 'number' ? err.code : -1, stdout: err.stdout ?? '', stderr: err.stderr ?? '' };
  }
}

function vmis(state: string): Map<string, Obj> {
  const snap = JSON.parse(readFileSync(state, 'utf8')) as { objects: Obj[] };
  const out = new Map<string, Obj>();
  for (const o of snap.objects) {
    const m = o['metadata'] as Obj;
    out.set(`${String(o['kind'])}/${String(m['namespace'])}/${String(m['name'])}`, o);
  }
  return out;
}

const cpuOf = (o: Obj | undefined): Obj => (((((o?.['spec'] ?? {}) as Obj)['domain'] ?? {}) as Obj)['cpu'] ?? {}) as Obj;
const vmCpuOf = (o: Obj | undefined): Obj => cpuOf({ spec: ((((o?.['spec'] ?? {}) as Obj)['template'] ?? {}) as Obj)['spec'] } as Obj);

describe('vmroll run end to end', function () {
  this.timeout(120_000);
  let server: GitServer;
  let work: WorkingClone;
  let url: string;
  let dir: string;

  before(async () => {
    server = await startGitServer();
    dir = mkdtempSync(path.join(tmpdir(), 'vmroll-run-'));
    url = await server.createBareRepo('fleet');
    work = await server.createWorkingClone('fleet');
    for (const f of ['web.yaml', 'db.yaml', 'batch.yaml']) await work.write(`vms/${f}`, readFileSync(path.join(EXAMPLE, f), 'utf8'));
    await work.commit('three VMs');
    await work.push();
  });
  after(async () => {
    await server?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it('push → vmroll run --once → the simulated VM and VMI show what the plan predicted', async () => {
    const state = path.join(dir, 'cluster.json');
    const common = ['--repo', url, '--path', 'vms', '--cluster', 'sim', '--sim-state', state, '--cache-dir', path.join(dir, 'cache'), '--output', 'json', '--log-level', 'silent'];
    const first = await vmrollOnce([...common, '--sim-kubevirt', KUBEVIRT]);
    assert.equal(first.code, 0, first.stderr);
    const plan1 = JSON.parse(first.stdout) as VmPlan;
    assert.deepEqual(plan1.vms.map((v) => `${v.namespace}/${v.name}:${v.action}`), ['jobs/batch:create', 'shop/db:create', 'shop/web:create']);
    assert.deepEqual(plan1.errors, []);

    await work.write('vms/web.yaml', readFileSync(path.join(EXAMPLE, 'web.yaml'), 'utf8').replace('sockets: 2', 'sockets: 4').replace('cores: 1', 'cores: 2'));
    const sha = await work.commit('web: 4 sockets, 2 cores');
    await work.push();
    const second = await vmrollOnce(common);
    assert.equal(second.code, 0, second.stderr);
    const plan2 = JSON.parse(second.stdout) as VmPlan;
    assert.equal(plan2.commit, sha);
    const web = plan2.vms.find((v) => v.name === 'web');
    assert.ok(web);
    assert.equal(web.action, 'update');
    assert.deepEqual(plan2.vms.filter((v) => v.name !== 'web').map((v) => v.action), ['none', 'none'], 'only the changed VM is written');
    const rollout = Object.fromEntries(web.changes.map((c) => [c.path, c.rollout]));
    // On v1.9 a non-live change in the same edit holds every live update: both wait for the restart.
    assert.equal(rollout['spec.template.spec.domain.cpu.cores'], 'staged');
    assert.equal(rollout['spec.template.spec.domain.cpu.sockets'], 'staged');
    assert.equal(web.restartRequired, true);
    assert.equal(web.conditionMessage, 'a non-live-updatable field was changed in the template spec');
    const objects = vmis(state);
    assert.deepEqual([cpuOf(objects.get('VirtualMachineInstance/shop/web'))['sockets'], cpuOf(objects.get('VirtualMachineInstance/shop/web'))['cores']], [2, 1], 'the VMI kept what the plan staged');
    assert.equal(vmCpuOf(objects.get('VirtualMachine/shop/web'))['cores'], 2, 'the VM holds the desired spec');
    const vm = objects.get('VirtualMachine/shop/web') as Obj;
    const annotations = (vm['metadata'] as Obj)['annotations'] as Obj;
    assert.equal(((vm['metadata'] as Obj)['labels'] as Obj)['app.kubernetes.io/managed-by'], 'vmroll');
    assert.equal(annotations['vmroll.dev/source-path'], 'vms/web.yaml');
    assert.equal(annotations['vmroll.dev/source-commit'], sha);
    // The ownership identity: the URL without scheme and .git, plus the manifest path.
    assert.equal(annotations['vmroll.dev/source-repo'], `${url.replace(/^http:\/\//, '').replace(/\.git$/, '')}//vms`);
  });

  it('an incremental sync reads only the changed file and writes only the changed VM', async () => {
    const cluster = new SimCluster({ kubevirt: { apiVersion: 'kubevirt.io/v1', kind: 'KubeVirt', metadata: { name: 'kubevirt' }, spec: {}, status: { observedKubeVirtVersion: 'v1.9.0' } } });
    const r = new Reconciler({ source: new GitSource({ repo: url, cacheDir: path.join(dir, 'cache2') }), repoLabel: url, ref: 'main', path: 'vms', cluster, prune: false, logger: silent });
    try {
      const cold = await r.reconcile();
      assert.deepEqual([...cold.read].sort(), ['vms/batch.yaml', 'vms/db.yaml', 'vms/web.yaml']);
      assert.equal(cold.writes, 3);
      await work.write('vms/db.yaml', readFileSync(path.join(EXAMPLE, 'db.yaml'), 'utf8').replace('sockets: 4', 'sockets: 6'));
      await work.commit('db: 6 sockets');
      await work.push();
      const inc = await r.reconcile();
      assert.deepEqual(inc.read, ['vms/db.yaml']);
      assert.equal(inc.writes, 1);
      const db = inc.plan.vms.find((v) => v.name === 'db');
      assert.equal(db?.changes.find((c) => c.path === 'spec.template.spec.domain.cpu.sockets')?.rollout, 'live');
      assert.equal(cpuOf(cluster.store.get('VirtualMachineInstance', 'shop', 'db'))['sockets'], 6, 'hot-plugged into the running VMI');
      const idle = await r.reconcile();
      assert.deepEqual(idle.read, []);
      assert.equal(idle.writes, 0);
    } finally {
      r.close();
    }
  });

  it('bad manifests give file:line errors while the other VMs sync, and --prune deletes nothing they may define', async () => {
    const cluster = new SimCluster();
    const r = new Reconciler({ source: new GitSource({ repo: url, cacheDir: path.join(dir, 'cache3') }), repoLabel: url, ref: 'main', path: 'vms', cluster, prune: true, logger: silent });
    try {
      await r.reconcile();
      assert.equal((await cluster.listVirtualMachines()).length, 3);
      await work.write('vms/db.yaml', 'apiVersion: kubevirt.io/v1\nkind: VirtualMachine\nmetadata:\n  name: db\n  namespace: shop\nspec: [unclosed\n');
      await work.write('vms/bad-schema.yaml', readFileSync(path.join(EXAMPLE, 'batch.yaml'), 'utf8').replace('name: batch', 'name: odd').replace('runStrategy: Halted', 'runStrategy: Sometimes'));
      await work.write('vms/dup.yaml', readFileSync(path.join(EXAMPLE, 'batch.yaml'), 'utf8'));
      await work.write('vms/bomb.yaml', `a: &a [x, x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]\nc: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]\nd: [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c]\n`);
      await work.write('vms/huge.yaml', `# ${'x'.repeat(1024 * 1024 + 10)}\n`);
      writeFileSync(path.join(dir, 'outside.yaml'), 'kind: VirtualMachine\n');
      symlinkSync(path.join(dir, 'outside.yaml'), path.join(work.dir, 'vms', 'escape.yaml'));
      await work.commit('bad things');
      await work.push();
      const report = await r.reconcile();
      const byFile = (f: string) => report.plan.errors.filter((e) => e.file === f);
      assert.match(byFile('vms/db.yaml')[0]?.message ?? '', /invalid YAML/);
      assert.ok((byFile('vms/db.yaml')[0]?.line ?? 0) >= 1);
      assert.match(byFile('vms/bad-schema.yaml')[0]?.message ?? '', /runStrategy/);
      assert.equal(byFile('vms/dup.yaml').length > 0 && byFile('vms/batch.yaml').length > 0, true, 'a duplicate is an error on both files');
      assert.ok(byFile('vms/bomb.yaml').length > 0);
      assert.ok(byFile('vms/huge.yaml').length > 0);
      assert.ok(byFile('vms/escape.yaml').length > 0);
      for (const e of report.plan.errors) assert.ok(e.line === null || e.line >= 1, JSON.stringify(e));
      const names = (await cluster.listVirtualMachines()).map((v) => String((v['metadata'] as Obj)['name'])).sort();
      assert.deepEqual(names, ['batch', 'db', 'web'], 'nothing is pruned: db and batch sit in failed or duplicated files');
      assert.equal(report.plan.vms.find((v) => v.name === 'web')?.action, 'none', 'web still syncs');
      // Repair everything: the broken files go, db comes back as it was.
      for (const f of ['bad-schema.yaml', 'dup.yaml', 'bomb.yaml', 'huge.yaml', 'escape.yaml']) await work.remove(`vms/${f}`);
      await work.write('vms/db.yaml', readFileSync(path.join(EXAMPLE, 'db.yaml'), 'utf8'));
      await work.commit('repair');
      await work.push();
      const repaired = await r.reconcile();
      assert.deepEqual(repaired.plan.errors, []);
    } finally {
      r.close();
    }
  });

  it('--prune deletes a VM whose file was removed from the repository', async () => {
    const cluster = new SimCluster();
    const r = new Reconciler({ source: new GitSource({ repo: url, cacheDir: path.join(dir, 'cache4') }), repoLabel: url, ref: 'main', path: 'vms', cluster, prune: true, logger: silent });
    try {
      await r.reconcile();
      await work.remove('vms/batch.yaml');
      await work.commit('retire batch');
      await work.push();
      const report = await r.reconcile();
      assert.equal(report.plan.vms.find((v) => v.name === 'batch')?.action, 'delete');
      assert.equal(cluster.store.get('VirtualMachine', 'jobs', 'batch'), undefined);
    } finally {
      r.close();
    }
  });

  it('a signed push webhook starts a sync at once; a wrong signature triggers nothing', async () => {
    const secret = 'webhook-secret-for-tests';
    const lines: string[] = [];
    const logger = makeLogger('info', [secret], { write: (l: string) => (lines.push(l), true) } as unknown as NodeJS.WritableStream);
    const config: RunConfig = {
      repo: url, ref: 'main', path: 'vms', intervalMs: 3_600_000, once: false, cluster: 'sim', kubeconfig: undefined, simState: undefined, simKubevirt: undefined, example: false,
      output: 'json', prune: false, listen: '127.0.0.1:0', cacheDir: path.join(dir, 'cache5'), logLevel: 'info', gitToken: undefined, webhookSecret: secret, gitHost: undefined,
    };
    const handle = await startRun(config, { out: () => {}, err: () => {} }, logger);
    try {
      const synced = (): number => lines.filter((l) => l.includes('"msg":"reconciled"')).length;
      // Logged by the push handler before it triggers a sync and before it answers: once the answer is in, so would this be.
      const pushed = (): number => lines.filter((l) => l.includes('"msg":"push webhook: syncing now"')).length;
      const post = async (signature: string | null, body: string): Promise<number> => {
        const headers: Record<string, string> = { 'content-type': 'application/json', 'x-github-event': 'push', 'x-github-delivery': 'd1' };
        if (signature !== null) headers['x-hub-signature-256'] = signature;
        const res = await fetch(`http://${handle.address}/webhook/github`, { method: 'POST', headers, body, signal: AbortSignal.timeout(10_000) });
        await res.text();
        return res.status;
      };
      const body = JSON.stringify({ ref: 'refs/heads/main', after: 'a'.repeat(40), repository: { full_name: 'org/fleet' } });
      assert.equal(await post('sha256=' + createHmac('sha256', 'not-the-secret').update(body).digest('hex'), body), 401);
      assert.equal(await post(null, body), 401);
      assert.equal(pushed(), 0, 'rejected webhooks trigger nothing');
      assert.equal(synced(), 0, 'rejected webhooks trigger nothing');
      assert.equal(await post('sha256=' + createHmac('sha256', secret).update(body).digest('hex'), body), 202);
      assert.equal(pushed(), 1, 'the signed webhook was handed to the loop before the answer');
      await until('the sync the signed webhook started', () => synced() > 0);
      assert.equal(synced(), 1, 'the signed webhook ran a sync');
      assert.ok(lines.every((l) => !l.includes(secret)), 'the secret never reaches the log');
    } finally {
      await handle.stop();
    }
  });
});
