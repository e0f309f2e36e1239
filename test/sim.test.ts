/** The embedded KubeVirt simulator: VMI lifecycle, baselines and the rollout engine driving the VMI and the condition. */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { SimCluster } from '../reconciler/cluster/sim/simCluster.ts';
import type { Obj } from '../reconciler/rollout/index.ts';
import { base, mergePatch } from './helpers/cases.ts';

function kubevirt(version: string | null, strategy?: string): Obj {
  const configuration: Obj = { developerConfiguration: { featureGates: ['VMLiveUpdateFeatures'] } };
  if (strategy) configuration['vmRolloutStrategy'] = strategy;
  return { apiVersion: 'kubevirt.io/v1', kind: 'KubeVirt', metadata: { name: 'kubevirt', namespace: 'kubevirt' }, spec: { configuration }, status: version ? { observedKubeVirtVersion: version } : {} };
}

const vm = (patch: unknown = {}): Obj => mergePatch(base('vm'), patch) as Obj;
const sockets = (n: number) => ({ spec: { template: { spec: { domain: { cpu: { sockets: n } } } } } });

async function vmiOf(sim: SimCluster): Promise<Obj> {
  const vmi = (await sim.listVirtualMachineInstances())[0];
  assert.ok(vmi, 'a VMI runs');
  return vmi;
}

async function condition(sim: SimCluster): Promise<Obj | undefined> {
  const v = (await sim.listVirtualMachines())[0] as Obj;
  return ((((v['status'] ?? {}) as Obj)['conditions'] ?? []) as Obj[]).find((c) => c['type'] === 'RestartRequired');
}

const cpuOf = (vmi: Obj): Obj => ((((vmi['spec'] as Obj)['domain'] as Obj)['cpu']) as Obj);

describe('embedded KubeVirt simulator', () => {
  it('starts a VMI per runStrategy with hotplug ceilings and a start baseline', async () => {
    const sim = new SimCluster({ kubevirt: kubevirt('v1.8.0') });
    const stored = await sim.applyVirtualMachine(vm());
    const vmi = await vmiOf(sim);
    assert.equal(cpuOf(vmi)['maxSockets'], 8, 'sockets × maxHotplugRatio 4');
    assert.equal((((vmi['spec'] as Obj)['domain'] as Obj)['memory'] as Obj)['maxGuest'], '8Gi');
    assert.equal(((vmi['status'] as Obj)['memory'] as Obj)['guestAtBoot'], '2Gi');
    const uid = String((stored['metadata'] as Obj)['uid']);
    const baselines = await sim.listBaselines();
    assert.ok(baselines.get(uid), 'revision-start-vm baseline recorded');
    assert.ok(sim.store.get('ControllerRevision', 'default', `revision-start-vm-${uid}-1`));
    assert.ok(sim.store.get('Namespace', undefined, 'default'), 'the namespace exists');
    const owner = ((sim.store.get('VirtualMachineInstance', 'default', 'testvm')?.['metadata'] as Obj)['ownerReferences'] as Obj[])[0];
    assert.equal(owner?.['uid'], uid, 'the VMI is owned by its VM');
  });

  it('keeps resourceVersions increasing and reports watch events', async () => {
    const sim = new SimCluster({ kubevirt: kubevirt('v1.8.0') });
    const events: string[] = [];
    const stop = sim.watch((e) => events.push(`${e.type} ${e.kind}`));
    const a = await sim.applyVirtualMachine(vm());
    const b = await sim.applyVirtualMachine(vm(sockets(4)));
    stop();
    assert.ok(Number((b['metadata'] as Obj)['resourceVersion']) > Number((a['metadata'] as Obj)['resourceVersion']));
    assert.equal((b['metadata'] as Obj)['generation'], 2, 'a spec change bumps the generation');
    assert.ok(events.includes('ADDED VirtualMachine'));
    assert.ok(events.includes('ADDED VirtualMachineInstance'));
    assert.ok(events.includes('ADDED ControllerRevision'));
    assert.ok(events.includes('MODIFIED VirtualMachineInstance'), 'the hotplug modified the VMI');
  });

  it('hot-plugs sockets under LiveUpdate and sets RestartRequired for a non-live change', async () => {
    const sim = new SimCluster({ kubevirt: kubevirt('v1.8.0') });
    await sim.applyVirtualMachine(vm());
    await sim.applyVirtualMachine(vm(sockets(4)));
    assert.equal(cpuOf(await vmiOf(sim))['sockets'], 4);
    assert.equal(await condition(sim), undefined);
    await sim.applyVirtualMachine(vm({ spec: { template: { spec: { domain: { cpu: { sockets: 4, cores: 2 } } } } } }));
    assert.equal((await condition(sim))?.['message'], 'a non-live-updatable field was changed in the template spec');
    assert.equal(cpuOf(await vmiOf(sim))['cores'], 1, 'cores wait for the restart');
  });

  it('a restart clears the condition and starts from the current spec with a new baseline', async () => {
    const sim = new SimCluster({ kubevirt: kubevirt('v1.8.0') });
    await sim.applyVirtualMachine(vm());
    const changed = await sim.applyVirtualMachine(vm({ spec: { template: { spec: { domain: { cpu: { cores: 2 } } } } } }));
    assert.ok(await condition(sim));
    await sim.restartVirtualMachine({ namespace: 'default', name: 'testvm' });
    assert.equal(await condition(sim), undefined);
    assert.equal(cpuOf(await vmiOf(sim))['cores'], 2);
    const uid = String((changed['metadata'] as Obj)['uid']);
    assert.equal(sim.store.list('ControllerRevision').length, 1, 'older start revisions are deleted');
    assert.ok(sim.store.get('ControllerRevision', 'default', `revision-start-vm-${uid}-2`));
  });

  it('reverting to the baseline clears the condition on v1.8, not in the seed model', async () => {
    for (const [version, cleared] of [['v1.8.0', true], [null, false]] as const) {
      const sim = new SimCluster({ kubevirt: kubevirt(version, 'LiveUpdate') });
      await sim.applyVirtualMachine(vm());
      await sim.applyVirtualMachine(vm({ spec: { template: { spec: { hostname: 'renamed' } } } }));
      assert.ok(await condition(sim), `${version}: set`);
      await sim.applyVirtualMachine(vm());
      assert.equal((await condition(sim)) === undefined, cleared, `${version ?? 'seed'}: cleared on revert`);
    }
  });

  it('runStrategy Halted stops the VMI and clears the condition', async () => {
    const sim = new SimCluster({ kubevirt: kubevirt('v1.8.0') });
    await sim.applyVirtualMachine(vm());
    await sim.applyVirtualMachine(vm({ spec: { template: { spec: { hostname: 'renamed' } } } }));
    await sim.applyVirtualMachine(vm({ spec: { runStrategy: 'Halted', template: { spec: { hostname: 'renamed' } } } }));
    assert.equal((await sim.listVirtualMachineInstances()).length, 0);
    assert.equal(await condition(sim), undefined);
  });

  it('persists its state to a file so separate runs share one cluster', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'vmroll-sim-'));
    try {
      const stateFile = path.join(dir, 'state.json');
      const first = new SimCluster({ kubevirt: kubevirt('v1.8.0'), stateFile });
      await first.applyVirtualMachine(vm(sockets(3)));
      first.save();
      const second = new SimCluster({ stateFile });
      assert.equal(cpuOf(await vmiOf(second))['sockets'], 3);
      assert.equal(((await second.getKubeVirt())?.['status'] as Obj)['observedKubeVirtVersion'], 'v1.8.0');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
