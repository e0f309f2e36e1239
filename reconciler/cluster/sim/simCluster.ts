/** The embedded KubeVirt simulator as a {@link ClusterBackend}: an object store plus the virt-controller stand-in. */
import { existsSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { INSTANCETYPE_KINDS, type Obj } from '../../rollout/index.ts';
import { type ClusterBackend, ClusterError, type ObjectRef, type WatchEvent } from '../backend.ts';
import { metaOf } from '../object.ts';
import { ObjectStore, type StoreSnapshot } from './store.ts';
import { VirtController } from './virtController.ts';

/** Kinds a watch reports: what the reconcile loop caches. */
const WATCHED_KINDS = new Set([
  'VirtualMachine',
  'VirtualMachineInstance',
  'ControllerRevision',
  'KubeVirt',
  ...INSTANCETYPE_KINDS,
]);

/** Options of the simulator. */
export interface SimClusterOptions {
  /** The KubeVirt CR to install (default: one with no version, i.e. the seed model). */
  kubevirt?: Obj;
  /** A file the state is loaded from and saved to, so separate runs share one cluster. */
  stateFile?: string;
  /** Clock for timestamps. */
  now?: () => Date;
  /** How many recent events the store keeps for watches resuming from a resourceVersion (default 100,000). */
  watchHistory?: number;
}

/** The default KubeVirt CR: no version known, so the engine follows the seed model. */
export function defaultKubeVirt(): Obj {
  return {
    apiVersion: 'kubevirt.io/v1',
    kind: 'KubeVirt',
    metadata: { name: 'kubevirt', namespace: VirtController.kubevirtNamespace },
    spec: { configuration: { developerConfiguration: { featureGates: [] } } },
    status: { phase: 'Deployed' },
  };
}

function ref(o: Obj): ObjectRef {
  const m = metaOf(o);
  return { namespace: String(m['namespace'] ?? 'default'), name: String(m['name'] ?? '') };
}

/** The simulator. */
export class SimCluster implements ClusterBackend {
  readonly store: ObjectStore;
  readonly controller: VirtController;

  constructor(private readonly options: SimClusterOptions = {}) {
    this.store = new ObjectStore(options.now, options.watchHistory !== undefined ? { historySize: options.watchHistory } : {});
    this.controller = new VirtController(this.store, options.now);
    if (options.stateFile !== undefined && existsSync(options.stateFile)) {
      this.store.restore(JSON.parse(readFileSync(options.stateFile, 'utf8')) as StoreSnapshot);
    }
    if (options.kubevirt !== undefined) this.setKubeVirt(options.kubevirt);
    else if (this.store.list('KubeVirt').length === 0) this.setKubeVirt(defaultKubeVirt());
  }

  /** Installs or replaces the KubeVirt CR (running VMIs keep their ceilings, as in KubeVirt). */
  setKubeVirt(cr: Obj): void {
    for (const old of this.store.list('KubeVirt')) {
      const r = ref(old);
      this.store.delete('KubeVirt', r.namespace, r.name);
    }
    const copy = structuredClone(cr);
    const m = (copy['metadata'] ??= {}) as Obj;
    m['namespace'] ??= VirtController.kubevirtNamespace;
    m['name'] ??= 'kubevirt';
    delete m['resourceVersion'];
    this.store.create(copy);
  }

  /** The state file, if one was given. */
  get stateFile(): string | undefined {
    return this.options.stateFile;
  }

  /** Creates a namespace unless it exists; true when it was created. */
  ensureNamespace(name: string): boolean {
    if (this.store.has('Namespace', undefined, name)) return false;
    this.store.create({ apiVersion: 'v1', kind: 'Namespace', metadata: { name }, spec: { finalizers: ['kubernetes'] }, status: { phase: 'Active' } });
    return true;
  }

  /** Writes the state file, if one was given (atomically). */
  save(): void {
    if (this.options.stateFile === undefined) return;
    const tmp = `${this.options.stateFile}.tmp`;
    writeFileSync(tmp, JSON.stringify(this.store.snapshot()));
    renameSync(tmp, this.options.stateFile);
  }

  async listVirtualMachines(): Promise<Obj[]> {
    return this.store.list('VirtualMachine');
  }

  async listVirtualMachineInstances(): Promise<Obj[]> {
    return this.store.list('VirtualMachineInstance');
  }

  async listBaselines(): Promise<Map<string, Obj>> {
    const out = new Map<string, Obj>();
    for (const vm of this.store.list('VirtualMachine')) {
      const b = this.controller.baseline(vm);
      if (b !== null) out.set(String(metaOf(vm)['uid']), b);
    }
    return out;
  }

  async listInstancetypes(): Promise<Obj[]> {
    return INSTANCETYPE_KINDS.flatMap((k) => this.store.list(k));
  }

  async getKubeVirt(): Promise<Obj | null> {
    return this.controller.kubevirt();
  }

  /** Creates other objects (instancetypes, namespaces) directly, for tests and demos. */
  createObject(obj: Obj): Obj {
    return this.store.create(obj);
  }

  async applyVirtualMachine(vm: Obj): Promise<Obj> {
    const r = ref(vm);
    // The simulator creates a VM's namespace on first use, as a cluster bootstrap would have.
    this.ensureNamespace(r.namespace);
    const existing = this.store.peek('VirtualMachine', r.namespace, r.name);
    const desiredMeta = metaOf(vm);
    // One copy of what the caller sent; the stored VM, its start revision and its VMI share it from here on.
    const sent = structuredClone({ labels: desiredMeta['labels'] ?? {}, annotations: desiredMeta['annotations'] ?? {}, spec: vm['spec'] ?? {} });
    if (existing === undefined) {
      this.store.adopt({
        apiVersion: vm['apiVersion'] ?? 'kubevirt.io/v1',
        kind: 'VirtualMachine',
        metadata: { ...desiredMeta, namespace: r.namespace, labels: sent.labels, annotations: sent.annotations },
        spec: sent.spec,
      });
    } else {
      const meta = { ...metaOf(existing), labels: sent.labels, annotations: sent.annotations };
      this.store.replace({ ...existing, metadata: meta, spec: sent.spec });
    }
    this.controller.reconcile(r.namespace, r.name);
    return this.store.get('VirtualMachine', r.namespace, r.name) ?? {};
  }

  async deleteVirtualMachine(r: ObjectRef): Promise<void> {
    this.store.delete('VirtualMachine', r.namespace, r.name);
    this.controller.reconcile(r.namespace, r.name);
  }

  async restartVirtualMachine(r: ObjectRef): Promise<void> {
    this.requireVm(r);
    this.controller.restart(r.namespace, r.name);
  }

  async stopVirtualMachine(r: ObjectRef): Promise<void> {
    this.requireVm(r);
    this.controller.stopVm(r.namespace, r.name);
  }

  async startVirtualMachine(r: ObjectRef): Promise<void> {
    this.requireVm(r);
    this.controller.startVm(r.namespace, r.name);
  }

  watch(onEvent: (event: WatchEvent) => void): () => void {
    return this.store.watch((e) => {
      if (WATCHED_KINDS.has(e.kind)) onEvent(e);
    });
  }

  private requireVm(r: ObjectRef): void {
    if (this.store.get('VirtualMachine', r.namespace, r.name) === undefined) {
      throw new ClusterError('NotFound', `virtualmachines.kubevirt.io "${r.name}" not found in namespace ${r.namespace}`);
    }
  }
}
