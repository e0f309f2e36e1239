/**
 * A stand-in for KubeVirt's virt-controller: starts and stops VMIs per runStrategy, records
 * the start baseline as a ControllerRevision, and on every VM change runs the rollout engine
 * exactly as KubeVirt's reconcile would, writing live updates to the VMI and the
 * RestartRequired condition to the VM. Like KubeVirt's VMI controller it then marks a VMI
 * whose spec the guest does not run yet (`HotVCPUChange`, `HotMemoryChange`,
 * `MigrationRequired`); only a migration (migrationController.ts) or a restart clears them.
 * It also places VMIs on simulated nodes and reports `LiveMigratable` as virt-handler would.
 */
import { isDeepStrictEqual } from 'node:util';
import { INSTANCETYPE_KINDS, expandVm, hotplugCeilings, type Obj, parseStartRevisionName, planRollout, resolveCluster, startRevisionName, topologyCount } from '../../rollout/index.ts';
import { annotationsOf, conditionsOf, labelsOf, metaOf, specOf, statusOf } from '../object.ts';
import { ALLOW_POD_BRIDGE_MIGRATION_ANNOTATION, type ClaimLookup, NON_MIGRATABLE_ANNOTATION, claimNameOf, liveMigratableCondition, storageLiveMigratableCondition, volumeStatusOf } from './migratable.ts';
import { NODE_NAME_LABEL } from './migrationController.ts';
import type { SimClock } from './clock.ts';
import type { ObjectStore } from './store.ts';
import { VmiCondition, isMigrating, vcpus, vmiConditions, withCondition, withoutConditions } from './vmiState.ts';

const KUBEVIRT_NS = 'kubevirt';
const RUNS = new Set(['Always', 'RerunOnFailure', 'Once']);

function nsOf(o: Obj): string {
  return String(metaOf(o)['namespace'] ?? 'default');
}

function nameOf(o: Obj): string {
  return String(metaOf(o)['name'] ?? '');
}

export { ALLOW_POD_BRIDGE_MIGRATION_ANNOTATION, NON_MIGRATABLE_ANNOTATION };

/** The simulated nodes when none are given: VMIs are spread over them, migrations move between them. */
export const DEFAULT_NODES: readonly string[] = ['node01', 'node02', 'node03'];

/** Options of the simulated controller besides its store and clock. */
export interface VirtControllerOptions {
  /** Node names (default {@link DEFAULT_NODES}); at least two for migrations to have a target. */
  nodes?: readonly string[];
  /**
   * How long a started VMI takes to boot (default 0: Running and Ready at once). Above 0 a new VMI
   * is `Scheduling`, `Scheduled` at a quarter, `Running` (Ready False) at half, and Ready (and
   * AgentConnected with a guest agent) at the full time; needs {@link timers}.
   */
  bootTimeMs?: number;
  /** Timers of the boot steps (the simulator's clock). */
  timers?: SimClock;
}

/** Simulator-only: on a VM (or its template), `"true"` keeps every VMI of it from becoming Ready (Running, Ready False). */
export const NEVER_READY_ANNOTATION = 'sim.vmroll.dev/never-ready';

/**
 * Whether the simulated guest runs a QEMU guest agent, so its VMI gets `AgentConnected`: a
 * cloud-init volume (`cloudInitNoCloud` or `cloudInitConfigDrive`) whose `userData` names
 * `qemu-guest-agent`, the usual way a guest gets one installed and started.
 */
export function hasGuestAgent(vmiSpec: Obj): boolean {
  const volumes = vmiSpec['volumes'];
  if (!Array.isArray(volumes)) return false;
  return (volumes as Obj[]).some((v) =>
    ['cloudInitNoCloud', 'cloudInitConfigDrive'].some((k) => {
      const src = v[k] as Obj | undefined;
      return typeof src?.['userData'] === 'string' && src['userData'].includes('qemu-guest-agent');
    }),
  );
}

/** The multus NAD reference of each network, by network name. */
function nadRefs(vmiSpec: unknown): Map<string, unknown> {
  const out = new Map<string, unknown>();
  const nets = (vmiSpec as Obj | undefined)?.['networks'];
  if (Array.isArray(nets)) for (const n of nets as Obj[]) out.set(String(n['name']), ((n['multus'] ?? {}) as Obj)['networkName']);
  return out;
}

/**
 * Names of the SR-IOV interfaces (not `absent`) on secondary Multus networks of a VMI spec: the
 * network migration evaluator (pkg/network/migration/evaluator.go) asks for a migration at once
 * for one that has no interface status yet, i.e. one just hot-plugged.
 */
function sriovSecondaries(vmiSpec: unknown): Set<string> {
  const spec = (vmiSpec ?? {}) as Obj;
  const nets = Array.isArray(spec['networks']) ? (spec['networks'] as Obj[]) : [];
  const secondary = new Set(nets.filter((n) => typeof n['multus'] === 'object' && n['multus'] !== null && ((n['multus'] as Obj)['default'] !== true)).map((n) => String(n['name'])));
  const ifaces = (((spec['domain'] ?? {}) as Obj)['devices'] ?? {}) as Obj;
  const list = Array.isArray(ifaces['interfaces']) ? (ifaces['interfaces'] as Obj[]) : [];
  return new Set(list.filter((i) => secondary.has(String(i['name'])) && typeof i['sriov'] === 'object' && i['sriov'] !== null && i['state'] !== 'absent').map((i) => String(i['name'])));
}

/** The simulated controller. */
export class VirtController {
  private readonly nodes: readonly string[];
  private readonly bootTimeMs: number;
  private readonly timers: SimClock | undefined;

  constructor(
    private readonly store: ObjectStore,
    private readonly now: () => Date = () => new Date(),
    options: VirtControllerOptions = {},
  ) {
    this.nodes = options.nodes !== undefined && options.nodes.length > 0 ? options.nodes : DEFAULT_NODES;
    this.timers = options.timers;
    this.bootTimeMs = this.timers !== undefined ? Math.max(0, options.bootTimeMs ?? 0) : 0;
  }

  /**
   * One boot step of the VMI with `uid`: its phase, and once booted its Ready (and AgentConnected)
   * conditions. A VMI replaced or deleted since (another uid) is left alone.
   */
  private bootStep(namespace: string, name: string, uid: string, phase: string, booted: boolean): void {
    const vmi = this.store.peek('VirtualMachineInstance', namespace, name);
    if (vmi === undefined || String(metaOf(vmi)['uid']) !== uid) return;
    const status: Obj = { ...statusOf(vmi), phase };
    if (booted) status['conditions'] = this.bootConditions(vmiConditions(vmi), vmi);
    this.store.replace({ ...vmi, status });
  }

  /** Ready True unless the VM says never-ready; AgentConnected when the guest runs an agent. */
  private bootConditions(conditions: Obj[], vmi: Obj): Obj[] {
    const now = this.now();
    const vm = this.store.peek('VirtualMachine', nsOf(vmi), nameOf(vmi));
    const never = [vm !== undefined ? annotationsOf(vm) : {}, annotationsOf(vmi)].some((a) => a[NEVER_READY_ANNOTATION] === 'true');
    let out = withCondition(conditions, never ? { type: 'Ready', status: 'False', reason: 'GuestNotReady', message: `${NEVER_READY_ANNOTATION} is "true"` } : { type: 'Ready', status: 'True' }, now);
    if (!never && hasGuestAgent(specOf(vmi))) out = withCondition(out, { type: 'AgentConnected', status: 'True' }, now);
    return out;
  }

  /** Access modes of a claim the simulator stores a PersistentVolumeClaim for. */
  readonly claims: ClaimLookup = (namespace, claimName) => {
    const pvc = this.store.peek('PersistentVolumeClaim', namespace, claimName);
    const modes = ((pvc?.['spec'] ?? {}) as Obj)['accessModes'];
    return pvc === undefined ? undefined : Array.isArray(modes) ? modes.map(String) : [];
  };

  /** VMIs per node, for placement. */
  private load(): Map<string, number> {
    const load = new Map(this.nodes.map((n) => [n, 0]));
    for (const vmi of this.store.scan('VirtualMachineInstance')) {
      const n = String(statusOf(vmi)['nodeName'] ?? '');
      if (load.has(n)) load.set(n, (load.get(n) ?? 0) + 1);
    }
    return load;
  }

  /** The least loaded node (first by name order on a tie), optionally other than one. */
  pickNode(except?: string): string {
    let best: string | undefined;
    let bestLoad = Infinity;
    for (const [n, l] of this.load()) {
      if (n === except) continue;
      if (l < bestLoad) {
        best = n;
        bestLoad = l;
      }
    }
    // A one-node cluster migrates onto the same node (KubeVirt would leave the target pod unschedulable).
    return best ?? except ?? this.nodes[0] ?? 'node01';
  }

  /** Recomputes the VMI's LiveMigratable condition and volume status (after its spec or a claim changed). */
  refreshMigratable(namespace: string, name: string): void {
    const vmi = this.store.peek('VirtualMachineInstance', namespace, name);
    if (vmi === undefined) return;
    const cond = liveMigratableCondition(vmi, namespace, this.claims, this.kubevirt());
    const status = { ...statusOf(vmi) };
    status['conditions'] = withCondition(withCondition(vmiConditions(vmi), cond, this.now()), storageLiveMigratableCondition(vmi, this.kubevirt()), this.now());
    const volumes = volumeStatusOf(vmi, namespace, this.claims);
    if (volumes.length > 0) status['volumeStatus'] = volumes;
    else delete status['volumeStatus'];
    this.store.replace({ ...vmi, status });
  }

  /**
   * The workload updater's eviction: the VMI stops; with runStrategy Always or RerunOnFailure the
   * VM starts a new one from its current spec (staged changes applied, RestartRequired cleared).
   */
  evict(namespace: string, name: string): void {
    const vm = this.store.peek('VirtualMachine', namespace, name);
    if (!this.store.has('VirtualMachineInstance', namespace, name)) return;
    if (vm === undefined) {
      this.store.delete('VirtualMachineInstance', namespace, name);
      return;
    }
    this.stop(vm as Obj);
    const spec = specOf(vm);
    const runStrategy = typeof spec['runStrategy'] === 'string' ? spec['runStrategy'] : spec['running'] === true ? 'Always' : 'Halted';
    if (runStrategy === 'Always' || runStrategy === 'RerunOnFailure') this.start(this.store.get('VirtualMachine', namespace, name) ?? (vm as Obj));
  }

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
      next['status'] = this.hotplugStatus(vmi, next);
      this.store.update(next);
      this.refreshMigratable(namespace, name);
    }
    this.writeConditions(vm, result.conditions);
  }

  /**
   * The VMI controller's view of a patched VMI (pkg/virt-controller/watch/vmi/lifecycle.go):
   * `HotVCPUChange` while the spec's vCPUs differ from `status.currentCPUTopology`,
   * `HotMemoryChange` while the spec's guest memory differs from `status.memory.guestRequested`,
   * and the network evaluator's `MigrationRequired` after a NAD reference change or an SR-IOV
   * interface hot-plug. The guest's
   * values themselves change only when a migration completes.
   */
  private hotplugStatus(before: Obj, next: Obj): Obj {
    const status = { ...statusOf(next) };
    let conditions = vmiConditions(next);
    const now = this.now();
    const domain = (specOf(next)['domain'] ?? {}) as Obj;
    const cpu = (domain['cpu'] ?? {}) as Obj;
    const current = status['currentCPUTopology'];
    if (current !== undefined && cpu['maxSockets'] !== undefined && vcpus(cpu) !== vcpus(current)) {
      conditions = withCondition(conditions, { type: VmiCondition.HotVCPUChange, status: 'True' }, now);
    } else if (!isMigrating(next)) {
      conditions = withoutConditions(conditions, VmiCondition.HotVCPUChange);
    }
    const memory = (domain['memory'] ?? {}) as Obj;
    const requested = ((status['memory'] ?? {}) as Obj)['guestRequested'];
    if (memory['guest'] !== undefined && memory['maxGuest'] !== undefined && requested !== undefined && String(memory['guest']) !== String(requested)) {
      conditions = withCondition(conditions, { type: VmiCondition.HotMemoryChange, status: 'True' }, now);
    } else if (!isMigrating(next)) {
      conditions = withoutConditions(conditions, VmiCondition.HotMemoryChange);
    }
    const oldRefs = nadRefs(before['spec']);
    const migrationRequired = { type: VmiCondition.MigrationRequired, status: 'True', reason: 'AutoMigrationDueToLiveUpdate', message: '' };
    for (const [net, ref] of nadRefs(next['spec'])) {
      if (oldRefs.has(net) && oldRefs.get(net) !== ref) conditions = withCondition(conditions, migrationRequired, now);
    }
    // An SR-IOV interface plugged into the VMI: only a migration gives the guest its device.
    const oldSriov = sriovSecondaries(before['spec']);
    for (const name of sriovSecondaries(next['spec'])) {
      if (!oldSriov.has(name)) conditions = withCondition(conditions, migrationRequired, now);
    }
    // A storage migration (updateVolumesStrategy: Migration): the VM controller records the swapped
    // volumes (PatchVMIStatusWithMigratedVolumes, kept while one is recorded), then the VMI
    // controller's requireVolumesUpdate/syncVolumesUpdate asks for a migration with VolumesChange.
    const migrated = this.migratedVolumes(before, next);
    if (migrated.length > 0) {
      status['migratedVolumes'] = migrated;
      if (conditions.every((c) => c['type'] !== VmiCondition.VolumesChange)) {
        conditions = withCondition(conditions, { type: VmiCondition.VolumesChange, status: 'True', message: 'migrate volumes' }, now);
      }
    } else {
      delete status['migratedVolumes'];
    }
    status['conditions'] = conditions;
    return status;
  }

  /**
   * `status.migratedVolumes` after a patch: the VMI's own while it has some (KubeVirt does not
   * replace them), else one entry per volume the engine marked swapped, with the source and
   * destination claims (`GenerateMigratedVolumes`).
   */
  private migratedVolumes(before: Obj, next: Obj): Obj[] {
    const kept = statusOf(before)['migratedVolumes'];
    if (Array.isArray(kept) && kept.length > 0) return kept as Obj[];
    const marked = statusOf(next)['migratedVolumes'];
    if (!Array.isArray(marked) || marked.length === 0) return [];
    const volumes = (spec: unknown): Map<string, Obj> => new Map((Array.isArray((spec as Obj | undefined)?.['volumes']) ? ((spec as Obj)['volumes'] as Obj[]) : []).map((v) => [String(v['name']), v]));
    const oldVolumes = volumes(before['spec']);
    const newVolumes = volumes(next['spec']);
    const ns = nsOf(next);
    const info = (claim: string | undefined): Obj | undefined => {
      if (claim === undefined) return undefined;
      const pvc = this.store.peek('PersistentVolumeClaim', ns, claim);
      const mode = ((pvc?.['spec'] ?? {}) as Obj)['volumeMode'];
      return mode === undefined ? { claimName: claim } : { claimName: claim, volumeMode: mode };
    };
    return (marked as Obj[]).map((m) => {
      const name = String(m['volumeName'] ?? '');
      const source = info(claimNameOf(oldVolumes.get(name) ?? {}));
      const destination = info(claimNameOf(newVolumes.get(name) ?? {}));
      return { volumeName: name, ...(destination !== undefined && { destinationPVCInfo: destination }), ...(source !== undefined && { sourcePVCInfo: source }) };
    });
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
    const node = this.pickNode();
    const vmiMeta: Obj = {
      name,
      namespace: ns,
      labels: { ...structuredClone(labelsOf(template)), [NODE_NAME_LABEL]: node },
      // The VMI carries the template's annotations, as KubeVirt copies them.
      annotations: { ...structuredClone(annotations), 'kubevirt.io/vm-generation': String(generation) },
      ownerReferences: [{ apiVersion: 'kubevirt.io/v1', kind: 'VirtualMachine', name, uid, controller: true }],
    };
    const now = this.now();
    const migratable = liveMigratableCondition({ metadata: vmiMeta, spec: vmiSpec }, ns, this.claims, this.kubevirt());
    const booting = this.bootTimeMs > 0;
    const neverReady = [annotationsOf(vm), annotations].some((a) => a[NEVER_READY_ANNOTATION] === 'true');
    const ready: Obj =
      booting || neverReady
        ? { type: 'Ready', status: 'False', reason: booting ? 'PodNotReady' : 'GuestNotReady', message: booting ? 'the guest is booting' : `${NEVER_READY_ANNOTATION} is "true"`, lastProbeTime: null, lastTransitionTime: now.toISOString().replace(/\.\d{3}Z$/, 'Z') }
        : { type: 'Ready', status: 'True', lastProbeTime: null, lastTransitionTime: now.toISOString().replace(/\.\d{3}Z$/, 'Z') };
    let conditions = withCondition(withCondition([ready], migratable, now), storageLiveMigratableCondition({ metadata: vmiMeta, spec: vmiSpec }, this.kubevirt()), now);
    if (!booting && !neverReady && hasGuestAgent(vmiSpec)) conditions = withCondition(conditions, { type: 'AgentConnected', status: 'True' }, now);
    const status: Obj = {
      phase: booting ? 'Scheduling' : 'Running',
      nodeName: node,
      conditions,
      // A fresh start runs the spec as it is: the guest's topology is the spec's.
      currentCPUTopology: { sockets: cpu['sockets'], cores: cpu['cores'], threads: cpu['threads'] },
      virtualMachineRevisionName: startRevisionName(uid, generation),
    };
    const volumes = volumeStatusOf({ spec: vmiSpec }, ns, this.claims);
    if (volumes.length > 0) status['volumeStatus'] = volumes;
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
    const created = this.store.adopt({
      apiVersion: 'kubevirt.io/v1',
      kind: 'VirtualMachineInstance',
      metadata: vmiMeta,
      spec: vmiSpec,
      status,
    });
    if (booting && this.timers !== undefined) {
      const vmiUid = String(metaOf(created)['uid']);
      const t = this.timers;
      t.setTimeout(() => this.bootStep(ns, name, vmiUid, 'Scheduled', false), this.bootTimeMs / 4);
      t.setTimeout(() => this.bootStep(ns, name, vmiUid, 'Running', false), this.bootTimeMs / 2);
      t.setTimeout(() => this.bootStep(ns, name, vmiUid, 'Running', true), this.bootTimeMs);
    }
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
    // KubeVirt's updateStatus: created while a VMI exists.
    status['created'] = running;
    status['ready'] = running;
    if (conditions !== null) status['conditions'] = conditions;
    // KubeVirt's syncGenerationInfo, only while a VMI exists: desiredGeneration is the VM's
    // generation; observedGeneration the one the VMI started from, moved up to the VM's generation
    // while the template still equals the start revision's (conditionallyBumpGenerationAnnotationOnVmi).
    const vmi = running ? this.store.peek('VirtualMachineInstance', nsOf(vm), nameOf(vm)) : undefined;
    if (vmi !== undefined) {
      const generation = Number(metaOf(vm)['generation'] ?? 0);
      const started = Number(annotationsOf(vmi)['kubevirt.io/vm-generation'] ?? generation);
      const startTemplate = (((this.baseline(vm) ?? {})['spec'] ?? {}) as Obj)['template'];
      status['observedGeneration'] = isDeepStrictEqual(startTemplate, specOf(vm)['template']) ? generation : Math.min(started, generation);
      status['desiredGeneration'] = generation;
    }
    // A status write replaces the stored VM with one that shares everything but its status.
    const next = { ...vm, status: structuredClone(status) };
    if (JSON.stringify(next['status']) !== JSON.stringify(vm['status'])) this.store.replace(next);
  }

  /** Namespace the KubeVirt CR lives in. */
  static readonly kubevirtNamespace = KUBEVIRT_NS;
}
