/**
 * ClusterCache.settle against KubeVirt's generation bookkeeping (syncGenerationInfo): while a VMI
 * exists, desiredGeneration follows the VM's generation on every controller sync, while
 * observedGeneration stays at the generation the VMI started from after a template change
 * (checked with KubeVirt v1.9.0's controller in the oracle). A write is seen once desiredGeneration
 * reaches it; a VM without a VMI gets no generations from KubeVirt at all.
 */
import assert from 'node:assert/strict';
import type { ClusterBackend, WatchEvent } from '../reconciler/cluster/backend.ts';
import { ClusterCache } from '../reconciler/cluster/cache.ts';
import type { Obj } from '../reconciler/rollout/index.ts';

function vm(name: string, rv: string, generation: number, status: Obj): Obj {
  return { apiVersion: 'kubevirt.io/v1', kind: 'VirtualMachine', metadata: { name, namespace: 'lab', uid: `uid-${name}`, resourceVersion: rv, generation }, spec: {}, status };
}

function vmi(name: string): Obj {
  return { apiVersion: 'kubevirt.io/v1', kind: 'VirtualMachineInstance', metadata: { name, namespace: 'lab', uid: `vmi-${name}`, resourceVersion: '1' }, spec: {}, status: { phase: 'Running' } };
}

function backend(vms: Obj[], vmis: Obj[]): { backend: ClusterBackend; emit: (e: WatchEvent) => void } {
  let listener: ((e: WatchEvent) => void) | null = null;
  const fail = (): never => {
    throw new Error('not used');
  };
  const b: ClusterBackend = {
    listVirtualMachines: async () => vms,
    listVirtualMachineInstances: async () => vmis,
    listBaselines: async () => new Map(),
    listInstancetypes: async () => [],
    getKubeVirt: async () => ({ apiVersion: 'kubevirt.io/v1', kind: 'KubeVirt', metadata: { name: 'kubevirt', namespace: 'kubevirt' }, status: { phase: 'Deployed' } }),
    listVirtualMachineInstanceMigrations: async () => [],
    applyVirtualMachine: fail,
    deleteVirtualMachine: fail,
    restartVirtualMachine: fail,
    stopVirtualMachine: fail,
    startVirtualMachine: fail,
    patchVirtualMachineAnnotations: fail,
    watch: (on) => {
      listener = on;
      return () => {
        listener = null;
      };
    },
  };
  return { backend: b, emit: (e) => listener?.(e) };
}

describe('ClusterCache.settle and KubeVirt generations', () => {
  it('a live-updated running VM is seen when desiredGeneration reaches the write, though observedGeneration stays at the start', async () => {
    const { backend: b, emit } = backend([vm('web', '10', 1, { created: true, ready: true, observedGeneration: 1, desiredGeneration: 1 })], [vmi('web')]);
    const cache = new ClusterCache(b);
    await cache.start();
    const written = vm('web', '11', 2, { created: true, ready: true, observedGeneration: 1, desiredGeneration: 1 });
    const pending = cache.settle([{ key: 'lab/web', written }], 60_000);
    // The server's answer arrives first: KubeVirt has not synced generation 2 yet.
    let done = false;
    void pending.then(() => {
      done = true;
    });
    emit({ type: 'MODIFIED', kind: 'VirtualMachine', object: written });
    await new Promise((r) => setImmediate(r));
    assert.equal(done, false, 'settled before KubeVirt synced the generation');
    // KubeVirt's status update after its sync: desiredGeneration 2, observedGeneration still 1.
    emit({ type: 'MODIFIED', kind: 'VirtualMachine', object: vm('web', '12', 2, { created: true, ready: true, observedGeneration: 1, desiredGeneration: 2 }) });
    assert.deepEqual(await pending, []);
    cache.stop();
  });

  it('a write KubeVirt has not synced stays unsettled until the timeout', async () => {
    const { backend: b } = backend([vm('web', '11', 2, { created: true, ready: true, observedGeneration: 1, desiredGeneration: 1 })], [vmi('web')]);
    const cache = new ClusterCache(b);
    await cache.start();
    assert.deepEqual(await cache.settle([{ key: 'lab/web', written: vm('web', '11', 2, {}) }], 50), ['lab/web']);
    cache.stop();
  });

  it('a VM without a VMI settles on its resourceVersion: KubeVirt writes no generations for it', async () => {
    const { backend: b } = backend([vm('db', '20', 3, { printableStatus: 'Stopped' })], []);
    const cache = new ClusterCache(b);
    await cache.start();
    assert.deepEqual(await cache.settle([{ key: 'lab/db', written: vm('db', '20', 3, {}) }], 60_000), []);
    cache.stop();
  });

  it('a VM that should run waits for its VMI; one that should not settles without', async () => {
    const runs = (name: string, rv: string, runStrategy: string): Obj => ({ ...vm(name, rv, 1, {}), spec: { runStrategy } });
    const { backend: b, emit } = backend([runs('web', '40', 'Always'), runs('lab', '41', 'Manual')], []);
    const cache = new ClusterCache(b);
    await cache.start();
    assert.deepEqual(await cache.settle([{ key: 'lab/lab', written: runs('lab', '41', 'Manual') }], 60_000), []);
    const pending = cache.settle([{ key: 'lab/web', written: runs('web', '40', 'Always') }], 60_000);
    let done = false;
    void pending.then(() => {
      done = true;
    });
    await new Promise((r) => setImmediate(r));
    assert.equal(done, false, 'settled before KubeVirt started the VMI');
    emit({ type: 'ADDED', kind: 'VirtualMachineInstance', object: vmi('web') });
    emit({ type: 'MODIFIED', kind: 'VirtualMachine', object: { ...vm('web', '42', 1, { created: true, observedGeneration: 1, desiredGeneration: 1 }), spec: { runStrategy: 'Always' } } });
    assert.deepEqual(await pending, []);
    cache.stop();
  });

  it('a status without desiredGeneration falls back to observedGeneration', async () => {
    const { backend: b } = backend([vm('old', '30', 2, { created: true, ready: true, observedGeneration: 1 })], [vmi('old')]);
    const cache = new ClusterCache(b);
    await cache.start();
    assert.deepEqual(await cache.settle([{ key: 'lab/old', written: vm('old', '30', 2, {}) }], 50), ['lab/old']);
    const { backend: b2 } = backend([vm('old', '31', 2, { created: true, ready: true, observedGeneration: 2 })], [vmi('old')]);
    const cache2 = new ClusterCache(b2);
    await cache2.start();
    assert.deepEqual(await cache2.settle([{ key: 'lab/old', written: vm('old', '31', 2, {}) }], 60_000), []);
    cache2.stop();
  });
});
