/**
 * A stand-in for KubeVirt's virt-controller: starts and stops VMIs per runStrategy, records
 * the start baseline as a ControllerRevision, and on every VM change runs the rollout engine
 * exactly as KubeVirt's reconcile would, writing live updates to the VMI and the
 * RestartRequired condition to the VM. Hotplug migrations complete at once.
 */
import { INSTANCETYPE_KINDS, expandVm, type Obj, planRollout, resolveCluster, topologyCount, validateLiveUpdateMemory } from '../../rollout/index.ts';
import { formatBytes, quantityUnits } from '../../rollout/quantity.ts';
import type { ObjectStore } from './store.ts';

const KUBEVIRT_NS = 'kubevirt';
const RUNS = new Set(['Always', 'RerunOnFailure', 'Once']);

function m(o: Obj): Obj {
  return (o['metadata'] ?? {}) as Obj;
}

function nsOf(o: Obj): string {
  return String(m(o)['namespace'] ?? 'default');
}

function nameOf(o: Obj): string {
  return String(m(o)['name'] ?? '');
}

/** Annotation (on the VM template) that makes the simulated VMI non-migratable, for tests and demos. */
export const NON_MIGRATABLE_ANNOTATION = 'sim.vmroll.dev/non-migratable';

/** The simulated controller. */
export class VirtController {
  constructor(
    private readonly store: ObjectStore,
    private readonly now: () => Date = () => new Date(),
  ) {}

  /** The KubeVirt CR, if installed. */
  kubevirt(): Obj | null {
    return this.store.list('KubeVirt')[0] ?? null;
  }

  /** Reconciles one VM (after any write to it). */
  reconcile(namespace: string, name: string): void {
    const vm = this.store.get('VirtualMachine', namespace, name);
    const vmi = this.store.get('VirtualMachineInstance', namespace, name);
    if (vm === undefined) {
      if (vmi !== undefined) this.store.delete('VirtualMachineInstance', namespace, name);
      return;
    }
    const spec = (vm['spec'] ?? {}) as Obj;
    const runStrategy = typeof spec['runStrategy'] === 'string' ? spec['runStrategy'] : spec['running'] === true ? 'Always' : 'Halted';
    if (vmi === undefined) {
      if (RUNS.has(runStrategy)) this.start(vm);
      else this.writeStatus((this.store.peek('VirtualMachine', namespace, name) ?? vm) as Obj, false, null);
      return;
    }
    if (runStrategy === 'Halted') {
      this.stop(vm);
      return;
    }
    const baseline = this.baseline(vm);
    const result = planRollout({
      desired: vm,
      baseline,
      vmi,
      kubevirt: this.kubevirt(),
      conditions: (((vm['status'] ?? {}) as Obj)['conditions'] as Obj[] | undefined) ?? [],
      instancetypes: this.instancetypes(),
    });
    if (result.admissionErrors.length > 0) return;
    if (result.vmi !== null && JSON.stringify(result.vmi['spec']) !== JSON.stringify(vmi['spec'])) {
      const next = structuredClone(result.vmi);
      // The simulated migration finishes at once: the guest runs with what was hot-plugged.
      const status = (next['status'] ?? {}) as Obj;
      const memory = (status['memory'] ?? {}) as Obj;
      const guest = ((((next['spec'] ?? {}) as Obj)['domain'] ?? {}) as Obj)['memory'] as Obj | undefined;
      if (guest?.['guest'] !== undefined && status['memory'] !== undefined) {
        memory['guestCurrent'] = guest['guest'];
        memory['guestRequested'] = guest['guest'];
      }
      this.store.update(next);
    }
    this.writeConditions(vm, result.conditions);
  }

  /** Stops and starts the VM's instance; the new instance runs the current template. */
  restart(namespace: string, name: string): void {
    const vm = this.store.get('VirtualMachine', namespace, name);
    if (vm === undefined) return;
    if (this.store.has('VirtualMachineInstance', namespace, name)) this.stop(vm);
    this.start(this.store.get('VirtualMachine', namespace, name) ?? vm);
  }

  /** Stops the VM's instance (the `stop` subresource). */
  stopVm(namespace: string, name: string): void {
    const vm = this.store.get('VirtualMachine', namespace, name);
    if (vm !== undefined && this.store.get('VirtualMachineInstance', namespace, name) !== undefined) this.stop(vm);
  }

  /** Starts the VM's instance (the `start` subresource). */
  startVm(namespace: string, name: string): void {
    const vm = this.store.get('VirtualMachine', namespace, name);
    if (vm !== undefined && this.store.get('VirtualMachineInstance', namespace, name) === undefined) this.start(vm);
  }

  /** The newest start revision of a VM, as `{spec}`. */
  baseline(vm: Obj): Obj | null {
    const name = this.revisionIndex().get(String(m(vm)['uid']));
    if (name === undefined) return null;
    const rev = this.store.get('ControllerRevision', nsOf(vm), name);
    return rev === undefined ? null : ((rev['data'] ?? {}) as Obj);
  }

  /** Start revision name per VM uid; built once from the store, then kept by {@link start}. */
  private revisions: Map<string, string> | null = null;

  private revisionIndex(): Map<string, string> {
    if (this.revisions === null) {
      const index = new Map<string, { gen: number; name: string }>();
      for (const rev of this.store.list('ControllerRevision')) {
        const n = nameOf(rev);
        const match = /^revision-start-vm-(.+)-(\d+)$/.exec(n);
        if (match === null) continue;
        const [, uid = '', gen = '0'] = match;
        const best = index.get(uid);
        if (best === undefined || Number(gen) > best.gen) index.set(uid, { gen: Number(gen), name: n });
      }
      this.revisions = new Map([...index].map(([uid, v]) => [uid, v.name]));
    }
    return this.revisions;
  }

  private instancetypes(): Obj[] {
    return INSTANCETYPE_KINDS.flatMap((k) => this.store.list(k));
  }

  private start(requested: Obj): void {
    const vm = (this.store.peek('VirtualMachine', nsOf(requested), nameOf(requested)) ?? requested) as Obj;
    const ns = nsOf(vm);
    const name = nameOf(vm);
    const uid = String(m(vm)['uid']);
    const generation = Number(m(vm)['generation'] ?? 1);
    const expanded = expandVm(vm, this.instancetypes());
    const source = expanded.ok ? expanded.vm : vm;
    const template = (((source['spec'] ?? {}) as Obj)['template'] ?? {}) as Obj;
    // The VMI shares the template's unchanged parts (devices, volumes, networks); only what start sets is copied.
    const templateSpec = (template['spec'] ?? {}) as Obj;
    const templateDomain = (templateSpec['domain'] ?? {}) as Obj;
    const domain: Obj = { ...templateDomain, cpu: { ...((templateDomain['cpu'] ?? {}) as Obj) } };
    if (templateDomain['memory'] !== undefined) domain['memory'] = { ...(templateDomain['memory'] as Obj) };
    const vmiSpec: Obj = { ...templateSpec, domain };
    const cluster = resolveCluster(this.kubevirt(), undefined, vm);
    const cpu = domain['cpu'] as Obj;
    for (const k of ['sockets', 'cores', 'threads'] as const) cpu[k] = topologyCount(cpu, k);
    const arch = typeof vmiSpec['architecture'] === 'string' ? vmiSpec['architecture'] : 'amd64';
    if (cluster.strategy === 'LiveUpdate' && arch !== 'arm64') {
      // setupCPUHotplug / setupMemoryHotplug: ceilings are fixed when the VMI is created.
      if (!cpu['maxSockets']) {
        const sockets = Number(cpu['sockets']);
        let max = cluster.maxCpuSockets !== undefined ? Math.max(cluster.maxCpuSockets, sockets) : sockets * cluster.maxHotplugRatio;
        const perSocket = Number(cpu['cores']) * Number(cpu['threads']);
        if (cluster.maxCpuSockets === undefined && max * perSocket > 512) max = Math.max(Math.floor(512 / perSocket), sockets);
        cpu['maxSockets'] = max;
      }
      const memory = domain['memory'] as Obj | undefined;
      if (memory?.['guest'] !== undefined && memory['maxGuest'] === undefined) {
        const guestBytes = quantityUnits(memory['guest']);
        const candidate = cluster.maxGuest ?? (guestBytes !== null ? formatBytes(guestBytes * BigInt(cluster.maxHotplugRatio)) : undefined);
        if (candidate !== undefined && validateLiveUpdateMemory(vmiSpec, candidate) === null) memory['maxGuest'] = candidate;
      }
    }
    const guest = ((domain['memory'] ?? {}) as Obj)['guest'];
    const annotations = (((template['metadata'] ?? {}) as Obj)['annotations'] ?? {}) as Obj;
    const status: Obj = {
      phase: 'Running',
      conditions: [{ type: 'LiveMigratable', status: annotations[NON_MIGRATABLE_ANNOTATION] === 'true' ? 'False' : 'True' }],
      virtualMachineRevisionName: `revision-start-vm-${uid}-${generation}`,
    };
    if (guest !== undefined) status['memory'] = { guestAtBoot: guest, guestCurrent: guest, guestRequested: guest };
    const revisionName = `revision-start-vm-${uid}-${generation}`;
    const index = this.revisionIndex();
    const older = index.get(uid);
    // deleteOlderVMRevision: only the newest start revision is kept.
    if (older !== undefined && older !== revisionName && this.store.has('ControllerRevision', ns, older)) this.store.delete('ControllerRevision', ns, older);
    index.set(uid, revisionName);
    if (!this.store.has('ControllerRevision', ns, revisionName)) {
      // The revision shares the VM's stored spec: stored objects are replaced, never changed in place.
      this.store.adopt({
        apiVersion: 'apps/v1',
        kind: 'ControllerRevision',
        metadata: { name: revisionName, namespace: ns, ownerReferences: [{ apiVersion: 'kubevirt.io/v1', kind: 'VirtualMachine', name, uid, controller: true }] },
        revision: generation,
        data: { spec: vm['spec'] ?? {} },
      });
    }
    this.store.adopt({
      apiVersion: 'kubevirt.io/v1',
      kind: 'VirtualMachineInstance',
      metadata: {
        name,
        namespace: ns,
        labels: structuredClone((((template['metadata'] ?? {}) as Obj)['labels'] ?? {}) as Obj),
        annotations: { 'kubevirt.io/vm-generation': String(generation) },
        ownerReferences: [{ apiVersion: 'kubevirt.io/v1', kind: 'VirtualMachine', name, uid, controller: true }],
      },
      spec: vmiSpec,
      status,
    });
    // startVMI removes any RestartRequired condition.
    const fresh = this.store.peek('VirtualMachine', ns, name) ?? vm;
    this.writeConditions(fresh, this.conditionsOf(fresh).filter((c) => c['type'] !== 'RestartRequired'), true);
  }

  private stop(vm: Obj): void {
    this.store.delete('VirtualMachineInstance', nsOf(vm), nameOf(vm));
    const fresh = this.store.get('VirtualMachine', nsOf(vm), nameOf(vm)) ?? vm;
    this.writeConditions(fresh, this.conditionsOf(fresh).filter((c) => c['type'] !== 'RestartRequired'), false);
  }

  private conditionsOf(vm: Obj): Obj[] {
    return (((vm['status'] ?? {}) as Obj)['conditions'] as Obj[] | undefined) ?? [];
  }

  private writeConditions(vm: Obj, conditions: Obj[], running?: boolean): void {
    const fresh = this.store.peek('VirtualMachine', nsOf(vm), nameOf(vm)) as Obj | undefined;
    if (fresh === undefined) return;
    const isRunning = running ?? this.store.has('VirtualMachineInstance', nsOf(vm), nameOf(vm));
    const stamped = conditions.map((c) => (c['lastTransitionTime'] === undefined ? { ...c, lastTransitionTime: this.now().toISOString().replace(/\.\d{3}Z$/, 'Z') } : c));
    this.writeStatus(fresh, isRunning, stamped);
  }

  private writeStatus(vm: Obj, running: boolean, conditions: Obj[] | null): void {
    const status = { ...((vm['status'] ?? {}) as Obj) };
    status['printableStatus'] = running ? 'Running' : 'Stopped';
    status['ready'] = running;
    if (conditions !== null) status['conditions'] = conditions;
    const meta = m(vm);
    status['observedGeneration'] = meta['generation'];
    // A status write replaces the stored VM with one that shares everything but its status.
    const next = { ...vm, status: structuredClone(status) };
    if (JSON.stringify(next['status']) !== JSON.stringify(vm['status'])) this.store.replace(next);
  }

  /** Namespace the KubeVirt CR lives in. */
  static readonly kubevirtNamespace = KUBEVIRT_NS;
}
