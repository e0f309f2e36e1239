/**
 * Migrations through the simulator's API server, over real HTTP on 127.0.0.1: the KubeVirt CR's
 * workloadUpdateStrategy and migrations set by a patch, VirtualMachineInstanceMigration in
 * discovery, list, watch, create (with virt-api's admission) and delete, and the VMI's
 * conditions and guest status changing as a hot-plug travels to the guest.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { type ApiServer, startApiServer } from '../reconciler/cluster/sim/apiServer.ts';
import { migrationSetting } from '../reconciler/cluster/sim/migrationController.ts';
import { DEFAULT_MIGRATION_DURATION_MS, SimCluster } from '../reconciler/cluster/sim/simCluster.ts';
import { workloadUpdateStrategy } from '../reconciler/cluster/sim/workloadUpdater.ts';
import { SIM_HELP, runSim } from '../reconciler/commands/sim.ts';
import { loadKubeVirt } from '../reconciler/config.ts';
import type { Obj } from '../reconciler/rollout/index.ts';
import { WAIT_MS, until } from './helpers/waitFor.ts';

interface Reply {
  status: number;
  body: Obj;
}

async function call(server: ApiServer, method: string, urlPath: string, body?: unknown, contentType = 'application/json', headers: Record<string, string> = {}): Promise<Reply> {
  const res = await fetch(`${server.url}${urlPath}`, {
    method,
    headers: { 'content-type': contentType, ...headers },
    ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
  });
  const text = await res.text();
  return { status: res.status, body: text === '' ? {} : (JSON.parse(text) as Obj) };
}

/** Collects a watch stream's events as they arrive. */
class Watch {
  /** Events other than bookmarks. */
  readonly events: Obj[] = [];
  /** True once the server sent its first bookmark: the watch is established. */
  open = false;
  private readonly controller = new AbortController();
  ended = false;

  constructor(server: ApiServer, urlPath: string) {
    void (async () => {
      const res = await fetch(`${server.url}${urlPath}`, { signal: this.controller.signal });
      assert.ok(res.body);
      const reader = res.body.getReader();
      const decoder = new TextDecoder();
      let buffer = '';
      for (;;) {
        const chunk = await reader.read();
        if (chunk.done) break;
        buffer += decoder.decode(chunk.value, { stream: true });
        for (let nl = buffer.indexOf('\n'); nl >= 0; nl = buffer.indexOf('\n')) {
          const e = JSON.parse(buffer.slice(0, nl)) as Obj;
          if (e['type'] === 'BOOKMARK') this.open = true;
          else this.events.push(e);
          buffer = buffer.slice(nl + 1);
        }
      }
    })()
      .catch(() => undefined)
      .finally(() => {
        this.ended = true;
      });
  }

  close(): void {
    this.controller.abort();
  }
}

const KV = '/apis/kubevirt.io/v1/namespaces/kubevirt/kubevirts/kubevirt';
const VMS = '/apis/kubevirt.io/v1/namespaces/default/virtualmachines';
const VMIS = '/apis/kubevirt.io/v1/namespaces/default/virtualmachineinstances';
const VMIMS = '/apis/kubevirt.io/v1/namespaces/default/virtualmachineinstancemigrations';

function vm(name: string, sockets: number, devices: Obj = {}): Obj {
  return {
    apiVersion: 'kubevirt.io/v1',
    kind: 'VirtualMachine',
    metadata: { name },
    spec: { runStrategy: 'Always', template: { spec: { domain: { cpu: { sockets, cores: 1, threads: 1 }, memory: { guest: '2Gi' }, devices } } } },
  };
}

const status = (o: Obj): Obj => (o['status'] ?? {}) as Obj;
const cond = (o: Obj, type: string): Obj | undefined => ((status(o)['conditions'] ?? []) as Obj[]).find((c) => c['type'] === type);
const name = (o: Obj): string => String(((o['metadata'] ?? {}) as Obj)['name']);

describe('simulator API server: migrations', function () {
  this.timeout(120_000);
  let cluster: SimCluster;
  let server: ApiServer;

  before(async () => {
    cluster = new SimCluster({ migrationDurationMs: 300, kubevirt: { apiVersion: 'kubevirt.io/v1', kind: 'KubeVirt', metadata: { name: 'kubevirt', namespace: 'kubevirt' }, spec: { configuration: { developerConfiguration: { featureGates: [] } } }, status: { phase: 'Deployed', observedKubeVirtVersion: 'v1.8.0' } } });
    server = await startApiServer({ cluster, listen: '127.0.0.1:0', bookmarkIntervalMs: 100 });
  });
  after(async () => {
    await server.close();
    cluster.close();
  });

  it('serves virtualmachineinstancemigrations (vmim) and persistentvolumeclaims in discovery', async () => {
    const kubevirt = (await call(server, 'GET', '/apis/kubevirt.io/v1')).body['resources'] as Obj[];
    const vmim = kubevirt.find((r) => r['name'] === 'virtualmachineinstancemigrations');
    assert.deepEqual([vmim?.['kind'], vmim?.['namespaced'], vmim?.['shortNames']], ['VirtualMachineInstanceMigration', true, ['vmim', 'vmims']]);
    assert.ok(kubevirt.some((r) => r['name'] === 'virtualmachineinstancemigrations/status'));
    const core = (await call(server, 'GET', '/api/v1')).body['resources'] as Obj[];
    assert.deepEqual(core.find((r) => r['name'] === 'persistentvolumeclaims')?.['shortNames'], ['pvc']);
  });

  it('with the default (empty) workloadUpdateMethods a hot-plug stays in the VMI spec', async () => {
    assert.equal((await call(server, 'POST', VMS, vm('web', 2))).status, 201);
    await until('the VMI of web', async () => (await call(server, 'GET', `${VMIS}/web`)).status === 200);
    assert.equal((await call(server, 'PATCH', `${VMS}/web`, { spec: { template: { spec: { domain: { cpu: { sockets: 3 } } } } } }, 'application/merge-patch+json')).status, 200);
    await until('HotVCPUChange on web', async () => cond((await call(server, 'GET', `${VMIS}/web`)).body, 'HotVCPUChange')?.['status'] === 'True');
    const vmi = (await call(server, 'GET', `${VMIS}/web`)).body;
    assert.equal((status(vmi)['currentCPUTopology'] as Obj)['sockets'], 2);
    // The updater has looked (it counts the VMI as outdated) and created nothing.
    await until('the outdated count on the KubeVirt CR', async () => status((await call(server, 'GET', KV)).body)['outdatedVirtualMachineInstanceWorkloads'] === 1);
    assert.deepEqual((await call(server, 'GET', VMIMS)).body['items'], []);
  });

  it('LiveMigrate set by a patch: a vmim appears, is watched through its phases, and the guest gets the sockets', async () => {
    const watch = new Watch(server, `${VMIMS}?watch=true&allowWatchBookmarks=true`);
    const vmiWatch = new Watch(server, `${VMIS}?watch=true&allowWatchBookmarks=true&fieldSelector=metadata.name%3Dweb`);
    try {
      await until('both watches to be established', () => watch.open && vmiWatch.open);
      const patched = await call(server, 'PATCH', KV, { spec: { workloadUpdateStrategy: { workloadUpdateMethods: ['LiveMigrate'] }, configuration: { migrations: { parallelMigrationsPerCluster: 2 } } } }, 'application/merge-patch+json');
      assert.equal(patched.status, 200, JSON.stringify(patched.body));
      await until('the migration of web to succeed', () => watch.events.some((e) => status((e['object'] ?? {}) as Obj)['phase'] === 'Succeeded'), { detail: () => JSON.stringify(watch.events.map((e) => [e['type'], status(e['object'] as Obj)['phase']])) });
      const first = watch.events[0] as Obj;
      assert.equal(first['type'], 'ADDED');
      assert.match(name(first['object'] as Obj), /^kubevirt-workload-update-/);
      const seen = [...new Set(watch.events.map((e) => String(status(e['object'] as Obj)['phase'] ?? '')))];
      assert.deepEqual(seen, ['', 'Pending', 'Scheduling', 'TargetReady', 'Running', 'Succeeded'], 'each phase change is a watch event');
      await until('web without HotVCPUChange', async () => cond((await call(server, 'GET', `${VMIS}/web`)).body, 'HotVCPUChange') === undefined);
      const vmi = (await call(server, 'GET', `${VMIS}/web`)).body;
      assert.equal((status(vmi)['currentCPUTopology'] as Obj)['sockets'], 3);
      const state = status(vmi)['migrationState'] as Obj;
      assert.equal(state['completed'], true);
      assert.equal(status(vmi)['nodeName'], state['targetNode']);
      // The VMI watch saw the condition come and go without the VMI being replaced.
      await until('the VMI watch to catch up', () => vmiWatch.events.some((e) => e['type'] === 'MODIFIED' && cond(e['object'] as Obj, 'HotVCPUChange') === undefined && (status(e['object'] as Obj)['migrationState'] as Obj | undefined)?.['completed'] === true));
      assert.ok(vmiWatch.events.some((e) => cond(e['object'] as Obj, 'HotVCPUChange') !== undefined));
      assert.ok(!vmiWatch.events.some((e) => e['type'] === 'DELETED'), 'a live migration keeps the VMI');

      const list = (await call(server, 'GET', VMIMS)).body;
      assert.equal(list['kind'], 'VirtualMachineInstanceMigrationList');
      assert.deepEqual((list['items'] as Obj[]).map((m) => [status(m)['phase'], (m['spec'] as Obj)['vmiName']]), [['Succeeded', 'web']]);
      const table = (await call(server, 'GET', VMIMS, undefined, 'application/json', { accept: 'application/json;as=Table;v=v1;g=meta.k8s.io' })).body;
      assert.deepEqual((table['columnDefinitions'] as Obj[]).map((c) => c['name']), ['Name', 'Phase', 'VMI']);
      assert.deepEqual(((table['rows'] as Obj[])[0]?.['cells'] as unknown[]).slice(1), ['Succeeded', 'web']);
    } finally {
      watch.close();
      vmiWatch.close();
    }
  });

  it('refuses a migration of a non-migratable VMI with virt-api\'s message; deletes a migration', async () => {
    assert.equal((await call(server, 'POST', VMS, vm('gpu', 2, { gpus: [{ name: 'gpu0', deviceName: 'nvidia.com/GP102GL' }] }))).status, 201);
    await until('the VMI of gpu', async () => (await call(server, 'GET', `${VMIS}/gpu`)).status === 200);
    const vmi = (await call(server, 'GET', `${VMIS}/gpu`)).body;
    assert.deepEqual([cond(vmi, 'LiveMigratable')?.['status'], cond(vmi, 'LiveMigratable')?.['reason']], ['False', 'HostDeviceNotLiveMigratable']);
    const refused = await call(server, 'POST', VMIMS, { apiVersion: 'kubevirt.io/v1', kind: 'VirtualMachineInstanceMigration', metadata: { generateName: 'manual-' }, spec: { vmiName: 'gpu' } });
    assert.equal(refused.status, 422);
    assert.equal(refused.body['message'], 'admission webhook "migration-create-validator.kubevirt.io" denied the request: Cannot migrate VMI, Reason: HostDeviceNotLiveMigratable, Message: VMI uses a PCI host devices');

    const created = await call(server, 'POST', VMIMS, { apiVersion: 'kubevirt.io/v1', kind: 'VirtualMachineInstanceMigration', metadata: { name: 'manual-web' }, spec: { vmiName: 'web' } });
    assert.equal(created.status, 201, JSON.stringify(created.body));
    await until('the manual migration to succeed', async () => status((await call(server, 'GET', `${VMIMS}/manual-web`)).body)['phase'] === 'Succeeded', WAIT_MS);
    assert.equal((await call(server, 'DELETE', `${VMIMS}/manual-web`)).status, 200);
    assert.equal((await call(server, 'GET', `${VMIMS}/manual-web`)).status, 404);
  });
});

describe('vmroll sim --migration-duration', () => {
  it('is documented, defaults to a few seconds, and refuses what is not a duration', async () => {
    assert.match(SIM_HELP, /--migration-duration <dur> +how long a simulated live migration takes \(default 3s\)/);
    assert.equal(DEFAULT_MIGRATION_DURATION_MS, 3_000);
    const io = { out: (): void => undefined, err: (): void => undefined };
    await assert.rejects(runSim(['--migration-duration', 'soon'], io), /--migration-duration: "soon" is not a duration/);
  });
});

describe('vmroll sim --kubevirt: the workload update strategy and migration limits from a file', () => {
  it('are read as written, with KubeVirt\'s defaults for what is left out', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'vmroll-simkv-'));
    try {
      const file = path.join(dir, 'kubevirt.yaml');
      writeFileSync(
        file,
        [
          'apiVersion: kubevirt.io/v1',
          'kind: KubeVirt',
          'metadata: {name: kubevirt, namespace: kubevirt}',
          'spec:',
          '  workloadUpdateStrategy: {workloadUpdateMethods: [Evict], batchEvictionSize: 1}',
          '  configuration: {migrations: {parallelMigrationsPerCluster: 2}}',
          'status: {observedKubeVirtVersion: v1.8.0}',
          '',
        ].join('\n'),
      );
      const cluster = new SimCluster({ kubevirt: loadKubeVirt(file, '--kubevirt') });
      const kv = await cluster.getKubeVirt();
      assert.equal(status(kv ?? {})['phase'], 'Deployed', 'taken as installed');
      assert.deepEqual([...workloadUpdateStrategy(kv).methods], ['Evict']);
      assert.deepEqual([workloadUpdateStrategy(kv).batchEvictionSize, workloadUpdateStrategy(kv).batchEvictionIntervalMs], [1, 60_000]);
      assert.deepEqual([migrationSetting(kv, 'parallelMigrationsPerCluster'), migrationSetting(kv, 'parallelOutboundMigrationsPerNode')], [2, 2]);
      cluster.close();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
