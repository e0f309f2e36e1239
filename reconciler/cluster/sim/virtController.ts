/**
 * A stand-in for KubeVirt's virt-controller: starts and stops VMIs per runStrategy, records
 * the start baseline as a ControllerRevision, and on every VM change runs the rollout engine
 * exactly as KubeVirt's reconcile would, writing live updates to the VMI and the
 * RestartRequired condition to the VM. Hotplug migrations complete at once.
 */
import { INSTANCETYPE_KINDS, expandVm, hotplugCeilings, type Obj, parseStartRevisionName, planRollout, resolveCluster, startRevisionName, topologyCount } from '../../rollout/index.ts';
import { annotationsOf, conditionsOf, labelsOf, metaOf, specOf, statusOf } from '../object.ts';
import type { ObjectStore } from './store.ts';

const KUBEVIRT_NS = 'kubevirt';
const RUNS = new Set(['Always', 'RerunOnFailure', 'Once']);

function nsOf(o: Obj): string {
  return String(metaOf(o)['namespace'] ?? 'default');
}

function nameOf(o: Obj): string {
  return String(metaOf(o)['name'] ?? '');
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
    const spec = specOf(vm);
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
      conditions: conditionsOf(vm),
      instancetypes: this.instancetypes(),
    });
    if (result.admissionErrors.length > 0) return;
    if (result.vmi !== null && JSON.stringify(result.vmi['spec']) !== JSON.stringify(vmi['spec'])) {
      const next = structuredClone(result.vmi);
      // The simulated migration finishes at once: the guest runs with what was hot-plugged.
      const status = statusOf(next);
      const memory = (status['memory'] ?? {}) as Obj;
      const guest = ((specOf(next)['domain'] ?? {}) as Obj)['memory'] as Obj | undefined;
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
    const name = this.revisionIndex().get(String(metaOf(vm)['uid']));
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
        const start = parseStartRevisionName(n);
        if (start === null) continue;
        const best = index.get(start.uid);
        if (best === undefined || start.generation > best.gen) index.set(start.uid, { gen: start.generation, name: n });
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
    const uid = String(metaOf(vm)['uid']);
    const generation = Number(metaOf(vm)['generation'] ?? 1);
    const expanded = expandVm(vm, this.instancetypes());
    const source = expanded.ok ? expanded.vm : vm;
    const template = (specOf(source)['template'] ?? {}) as Obj;
    // The VMI shares the template's unchanged parts (devices, volumes, networks); only what start sets is copied.
    const templateSpec = specOf(template);
    const templateDomain = (templateSpec['domain'] ?? {}) as Obj;
    const domain: Obj = { ...templateDomain, cpu: { ...((templateDomain['cpu'] ?? {}) as Obj) } };
    if (templateDomain['memory'] !== undefined) domain['memory'] = { ...(templateDomain['memory'] as Obj) };
    const vmiSpec: Obj = { ...templateSpec, domain };
    const cluster = resolveCluster(this.kubevirt(), undefined, vm);
    const cpu = domain['cpu'] as Obj;
    for (const k of ['sockets', 'cores', 'threads'] as const) cpu[k] = topologyCount(cpu, k);
    // The ceilings are fixed when the VMI is created, by KubeVirt's rule in rollout/.
    const ceilings = hotplugCeilings(vmiSpec, cluster);
    if (ceilings.maxSockets !== undefined) cpu['maxSockets'] = ceilings.maxSockets;
    if (ceilings.maxGuest !== undefined) (domain['memory'] as Obj)['maxGuest'] = ceilings.maxGuest;
    const guest = ((domain['memory'] ?? {}) as Obj)['guest'];
    const annotations = annotationsOf(template);
    const status: Obj = {
      phase: 'Running',
      conditions: [{ type: 'LiveMigratable', status: annotations[NON_MIGRATABLE_ANNOTATION] === 'true' ? 'False' : 'True' }],
      virtualMachineRevisionName: startRevisionName(uid, generation),
    };
    if (guest !== undefined) status['memory'] = { guestAtBoot: guest, guestCurrent: guest, guestRequested: guest };
    const revisionName = startRevisionName(uid, generation);
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
        labels: structuredClone(labelsOf(template)),
        annotations: { 'kubevirt.io/vm-generation': String(generation) },
        ownerReferences: [{ apiVersion: 'kubevirt.io/v1', kind: 'VirtualMachine', name, uid, controller: true }],
      },
      spec: vmiSpec,
      status,
    });
    // startVMI removes any RestartRequired condition.
    const fresh = this.store.peek('VirtualMachine', ns, name) ?? vm;
    this.writeConditions(fresh, conditionsOf(fresh).filter((c) => c['type'] !== 'RestartRequired'), true);
  }

  private stop(vm: Obj): void {
    this.store.delete('VirtualMachineInstance', nsOf(vm), nameOf(vm));
    const fresh = this.store.get('VirtualMachine', nsOf(vm), nameOf(vm)) ?? vm;
    this.writeConditions(fresh, conditionsOf(fresh).filter((c) => c['type'] !== 'RestartRequired'), false);
  }

  private writeConditions(vm: Obj, conditions: Obj[], running?: boolean): void {
    const fresh = this.store.peek('VirtualMachine', nsOf(vm), nameOf(vm)) as Obj | undefined;
    if (fresh === undefined) return;
    const isRunning = running ?? this.store.has('VirtualMachineInstance', nsOf(vm), nameOf(vm));
    const stamped = conditions.map((c) => (c['lastTransitionTime'] === undefined ? { ...c, lastTransitionTime: this.now().toISOString().replace(/\.\d{3}Z$/, 'Z') } : c));
    this.writeStatus(fresh, isRunning, stamped);
  }

  private writeStatus(vm: Obj, running: boolean, conditions: Obj[] | null): void {
    const status = { ...statusOf(vm) };
    status['printableStatus'] = running ? 'Running' : 'Stopped';
    status['ready'] = running;
    if (conditions !== null) status['conditions'] = conditions;
    const meta = metaOf(vm);
    status['observedGeneration'] = meta['generation'];
    // A status write replaces the stored VM with one that shares everything but its status.
    const next = { ...vm, status: structuredClone(status) };
    if (JSON.stringify(next['status']) !== JSON.stringify(vm['status'])) this.store.replace(next);
  }

  /** Namespace the KubeVirt CR lives in. */
  static readonly kubevirtNamespace = KUBEVIRT_NS;
}
