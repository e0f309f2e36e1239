/**
 * The kube backend (client-node) against `vmroll sim`'s Kubernetes-API server on 127.0.0.1:
 * informers, server-side apply, subresources, 410 relists, and faults (500s, conflicts,
 * latency, dropped watches) under which a reconcile still converges and loses nothing.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parse } from 'yaml';
import type { WatchEvent } from '../reconciler/cluster/backend.ts';
import { ApiStatusError, KubeCluster, toClusterError } from '../reconciler/cluster/kube.ts';
import { type ApiServer, startApiServer } from '../reconciler/cluster/sim/apiServer.ts';
import { SimCluster } from '../reconciler/cluster/sim/simCluster.ts';
import { simKubeconfig } from '../reconciler/commands/sim.ts';
import type { Obj } from '../reconciler/rollout/index.ts';
import { ROOT } from './helpers/cases.ts';
import { until } from './helpers/waitFor.ts';

const KUBEVIRT = parse(readFileSync(path.join(ROOT, 'fixtures', 'example-cluster', 'kubevirt.yaml'), 'utf8')) as Obj;
const WEB = parse(readFileSync(path.join(ROOT, 'fixtures', 'example-repo', 'vms', 'web.yaml'), 'utf8')) as Obj;

function vm(name: string, patch: (spec: Obj) => void = () => {}, namespace = 'shop'): Obj {
  const copy = structuredClone(WEB);
  (copy['metadata'] as Obj)['name'] = name;
  (copy['metadata'] as Obj)['namespace'] = namespace;
  patch(copy['spec'] as Obj);
  return copy;
}

function domain(spec: Obj): Obj {
  return ((spec['template'] as Obj)['spec'] as Obj)['domain'] as Obj;
}

describe('kube backend against vmroll sim over HTTP', function () {
  this.timeout(60_000);
  let dir: string;
  let sim: SimCluster;
  let server: ApiServer;
  let kubeconfig: string;
  const backends: KubeCluster[] = [];
  const kube = (): KubeCluster => {
    const k = new KubeCluster({ kubeconfig: { file: kubeconfig }, retry: { attempts: 6, baseMs: 5, capMs: 50 }, requestTimeoutMs: 30_000, informer: { retryMs: 20 } });
    backends.push(k);
    return k;
  };

  beforeEach(async () => {
    dir = mkdtempSync(path.join(os.tmpdir(), 'vmroll-kube-'));
    sim = new SimCluster({ kubevirt: KUBEVIRT, watchHistory: 50 });
    // Kubernetes refuses objects in a namespace that does not exist; vmroll does not create namespaces.
    sim.createObject({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'shop' } });
    server = await startApiServer({ cluster: sim, listen: '127.0.0.1:0', bookmarkIntervalMs: 100 });
    kubeconfig = path.join(dir, 'kubeconfig');
    writeFileSync(kubeconfig, simKubeconfig(server.url));
  });

  afterEach(async () => {
    for (const k of backends.splice(0)) k.close();
    await server.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('reads the cluster through one list per resource, then follows watches', async () => {
    await sim.applyVirtualMachine(vm('web'));
    const k = kube();
    const [vms, vmis, baselines, kv] = await Promise.all([k.listVirtualMachines(), k.listVirtualMachineInstances(), k.listBaselines(), k.getKubeVirt()]);
    assert.deepEqual(vms.map((v) => (v['metadata'] as Obj)['name']), ['web']);
    assert.equal(vms[0]?.['kind'], 'VirtualMachine');
    assert.equal(vmis.length, 1, 'runStrategy Always started a VMI');
    const uid = String((vms[0]?.['metadata'] as Obj)['uid']);
    assert.equal(domain((baselines.get(uid)?.['spec'] ?? {}) as Obj)['cpu'] !== undefined, true, 'the start revision is the baseline');
    assert.equal(((kv?.['status'] ?? {}) as Obj)['observedKubeVirtVersion'], 'v1.9.0');
    assert.equal(k.requests.get('list virtualmachines'), 1);
    assert.equal(server.stats().byResource['virtualmachines.kubevirt.io']?.['list'], 1);

    const events: WatchEvent[] = [];
    k.watch((e) => events.push(e));
    const reads = (): number => (server.stats().byVerb['get'] ?? 0) + (server.stats().byVerb['list'] ?? 0);
    const before = reads();
    await sim.applyVirtualMachine(vm('db'));
    const about = (kind: string): WatchEvent[] => events.filter((e) => e.kind === kind && (e.object['metadata'] as Obj)['name'] === 'db');
    // Each kind has its own watch stream: the VMI's event may come in before the VM's.
    await until('the new VM and its VMI', () => about('VirtualMachineInstance').length > 0 && about('VirtualMachine').length > 0);
    assert.equal(about('VirtualMachine')[0]?.type, 'ADDED');
    assert.equal((await k.listVirtualMachines()).length, 2);
    assert.equal(reads() - before, 0, 'changes arrive on the open watches, not by get or list');
  });

  it('applies server-side as field manager vmroll: drives the controller, drops fields it stops applying', async () => {
    const k = kube();
    await k.listVirtualMachines();
    const withLabel = vm('web');
    ((withLabel['metadata'] as Obj)['labels'] as Obj)['tier'] = 'front';
    const stored = await k.applyVirtualMachine(withLabel);
    assert.equal((stored['metadata'] as Obj)['name'], 'web');
    const managers = ((sim.store.get('VirtualMachine', 'shop', 'web')?.['metadata'] as Obj)['managedFields'] as Obj[]).map((m) => `${String(m['manager'])}/${String(m['operation'])}`);
    assert.ok(managers.includes('vmroll/Apply'), `managers: ${managers.join(', ')}`);
    assert.ok(sim.store.get('VirtualMachineInstance', 'shop', 'web'), 'the simulated virt-controller started the VM');

    await k.applyVirtualMachine(vm('web'));
    const labels = ((sim.store.get('VirtualMachine', 'shop', 'web')?.['metadata'] as Obj)['labels'] ?? {}) as Obj;
    assert.equal(labels['tier'], undefined, 'a label vmroll stopped applying is removed');
    assert.equal(labels['app'], 'web');

    // A staged change: the controller sets RestartRequired, and the watch brings it back.
    await k.applyVirtualMachine(vm('web', (s) => void (domain(s)['firmware'] = { serial: 'changed' })));
    await until('RestartRequired on the cached VM', () =>
      [...(k.informer('VirtualMachine')?.store.values() ?? [])].some((v) => JSON.stringify(v['status'] ?? {}).includes('RestartRequired')),
    );
  });

  it('restarts, stops and starts through subresources.kubevirt.io', async () => {
    const k = kube();
    await k.applyVirtualMachine(vm('web'));
    const uid = (): unknown => (sim.store.get('VirtualMachineInstance', 'shop', 'web')?.['metadata'] as Obj | undefined)?.['uid'];
    const first = uid();
    await k.restartVirtualMachine({ namespace: 'shop', name: 'web' });
    assert.notEqual(uid(), first, 'a new VMI');
    await k.stopVirtualMachine({ namespace: 'shop', name: 'web' });
    assert.equal(uid(), undefined);
    await k.startVirtualMachine({ namespace: 'shop', name: 'web' });
    assert.ok(uid());
    await assert.rejects(k.restartVirtualMachine({ namespace: 'shop', name: 'nope' }), (e: unknown) => (e as { code?: string }).code === 'NotFound');
    assert.deepEqual([k.requests.get('restart virtualmachines/restart'), k.requests.get('stop virtualmachines/stop'), k.requests.get('start virtualmachines/start')], [2, 1, 1]);
  });

  it('deletes for prune; deleting what is already gone is fine', async () => {
    const k = kube();
    await k.applyVirtualMachine(vm('web'));
    await k.deleteVirtualMachine({ namespace: 'shop', name: 'web' });
    assert.equal(sim.store.get('VirtualMachine', 'shop', 'web'), undefined);
    assert.equal(sim.store.get('VirtualMachineInstance', 'shop', 'web'), undefined, 'the controller removed the VMI');
    await k.deleteVirtualMachine({ namespace: 'shop', name: 'web' });
  });

  it('relists after 410 Gone and turns the difference into events', async () => {
    await sim.applyVirtualMachine(vm('keep'));
    await sim.applyVirtualMachine(vm('gone'));
    const k = kube();
    await k.listVirtualMachines();
    const informer = k.informer('VirtualMachine');
    assert.ok(informer);
    const events: WatchEvent[] = [];
    k.watch((e) => events.push(e));
    // Cut every watch and refuse new ones while more changes happen than the server's history keeps.
    server.setFaults({ dropWatchesAfterMs: 1, errorRate: 1 });
    await until('watches closed', () => server.stats().openWatches === 0);
    await sim.deleteVirtualMachine({ namespace: 'shop', name: 'gone' });
    for (let i = 0; i < 30; i++) await sim.applyVirtualMachine(vm(`new-${i}`));
    server.setFaults({});
    await until('a relist', () => informer.lists >= 2);
    await until('the cache caught up', () => informer.store.size === 31);
    assert.ok(!informer.store.has('shop/gone'));
    assert.ok(events.some((e) => e.type === 'DELETED' && (e.object['metadata'] as Obj)['name'] === 'gone'), 'the deletion missed while away is an event');
    assert.equal(events.filter((e) => e.kind === 'VirtualMachine' && e.type === 'ADDED').length, 30);
  });

  it('rides out 500s, conflicts and latency on writes', async () => {
    const k = kube();
    server.setFaults({ failNext: 3 });
    await k.applyVirtualMachine(vm('web'));
    assert.ok(sim.store.get('VirtualMachine', 'shop', 'web'));
    server.setFaults({ conflictRate: 1, seed: 7 });
    await assert.rejects(
      k.applyVirtualMachine(vm('web', (s) => void (domain(s)['cpu'] = { sockets: 3, cores: 1, threads: 1 }))),
      (e: unknown) => (e as { code?: string }).code === 'Conflict',
      'a conflict that never clears gives up within the retry bound',
    );
    assert.ok((k.requests.get('get virtualmachines') ?? 0) >= 1, 'a conflict is followed by a fresh read');
    server.setFaults({ conflictRate: 0.5, latencyMs: 20, seed: 3 });
    await k.applyVirtualMachine(vm('web', (s) => void (domain(s)['cpu'] = { sockets: 3, cores: 1, threads: 1 })));
    assert.equal(((domain((sim.store.get('VirtualMachine', 'shop', 'web')?.['spec'] ?? {}) as Obj)['cpu'] as Obj)['sockets']), 3);
  });

  it('shares one connection pool across requests (client-node would make one per request)', async () => {
    const k = kube();
    const [a, b] = [await k.kubeConfig.credentials(), await k.kubeConfig.credentials()];
    assert.ok(a.dispatcher !== undefined, 'a pool for the skip-verify cluster');
    assert.equal(a.dispatcher, b.dispatcher);
  });

  it('names the file of an unreadable kubeconfig', () => {
    assert.throws(() => new KubeCluster({ kubeconfig: { file: path.join(dir, 'missing') } }), /kubeconfig .*missing/);
  });
});

describe('toClusterError: what an API server answer asks for', () => {
  const answer = (code: number, message: string): ApiStatusError =>
    new ApiStatusError(code, JSON.stringify({ kind: 'Status', status: 'Failure', message, reason: code === 500 ? 'InternalError' : 'Invalid', code }));

  it('a 500 that refuses an apply patch against the schema is the VM\'s own error (Invalid), not a server fault to retry', () => {
    // The answers Kubernetes' kube-apiserver gave in test/conformance/kube.real.spec.ts.
    for (const message of [
      'failed to create typed patch object (ns/web; kubevirt.io/v1, Kind=VirtualMachine): .spec.template.spec.domain.cpu.socket: field not declared in schema',
      'failed to create typed patch object (ns/web; kubevirt.io/v1, Kind=VirtualMachine): .spec.template.spec.domain.cpu.sockets: expected numeric (int or float), got string',
    ]) {
      const err = toClusterError(answer(500, message), 'apply virtualmachines');
      assert.equal(err.code, 'Invalid', message);
      assert.equal(err.data['status'], 500);
      assert.match(err.message, /^apply virtualmachines: failed to create typed patch object/);
    }
  });

  it('any other 500 stays a server fault (Unavailable, retried)', () => {
    assert.equal(toClusterError(answer(500, 'etcdserver: request timed out'), 'apply virtualmachines').code, 'Unavailable');
    assert.equal(toClusterError(answer(503, 'the server is shutting down'), 'list virtualmachines').code, 'Unavailable');
    assert.equal(toClusterError(answer(422, 'VirtualMachine.kubevirt.io "web" is invalid'), 'apply virtualmachines').code, 'Invalid');
  });
});
