/**
 * The embedded KubeVirt simulator as a {@link ClusterBackend}: an object store plus stand-ins for
 * virt-controller (VM controller, migration controller, workload updater) and virt-handler.
 * The controllers react to stored changes on the next tick of the simulator's clock, so every
 * watch sees events in resourceVersion order.
 */
import { existsSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { INSTANCETYPE_KINDS, type Obj } from '../../rollout/index.ts';
import { type ClusterBackend, ClusterError, type ObjectRef, type WatchEvent } from '../backend.ts';
import { metaOf, statusOf } from '../object.ts';
import { type SimClock, systemClock } from './clock.ts';
import { admitMigration, MigrationController } from './migrationController.ts';
import { ObjectStore, type StoredEvent, type StoreSnapshot } from './store.ts';
import { VirtController } from './virtController.ts';
import { isFinal, nsOf, nameOf, vmiNameOf } from './vmiState.ts';
import { WorkloadUpdater, needsMigration } from './workloadUpdater.ts';

/** Kinds a watch reports: what the reconcile loop caches. */
const WATCHED_KINDS = new Set([
  'VirtualMachine',
  'VirtualMachineInstance',
  'VirtualMachineInstanceMigration',
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
  /** Clock for timestamps (ignored when {@link clock} is given). */
  now?: () => Date;
  /** Clock and timers of the simulated controllers (default: the wall clock); tests step a ManualClock. */
  clock?: SimClock;
  /** How long a live migration takes from its target pod to its end (default {@link DEFAULT_MIGRATION_DURATION_MS}). */
  migrationDurationMs?: number;
  /** How long a started VMI takes to become Running and Ready (default 0: at once); runs on {@link clock}. */
  bootTimeMs?: number;
  /** Simulated node names (default node01, node02, node03). */
  nodes?: readonly string[];
  /** How many recent events the store keeps for watches resuming from a resourceVersion (default 100,000). */
  watchHistory?: number;
}

/** Default of {@link SimClusterOptions.migrationDurationMs}: a few seconds, like a small idle VM. */
export const DEFAULT_MIGRATION_DURATION_MS = 3_000;

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
  /** The simulated migration controller (VirtualMachineInstanceMigration phases, limits, outcome). */
  readonly migrations: MigrationController;
  /** The simulated workload updater (migrates or evicts VMIs whose guest lags their spec). */
  readonly updater: WorkloadUpdater;
  /** The clock the controllers run on. */
  readonly clock: SimClock;
  private readonly unwatch: () => void;
  /** Per VM uid: annotation keys written by {@link patchVirtualMachineAnnotations}, which the embedded apply keeps (not saved in the state file). */
  private readonly patchedKeys = new Map<string, Set<string>>();

  constructor(private readonly options: SimClusterOptions = {}) {
    const clock = options.clock ?? systemClock(options.now);
    this.clock = clock;
    const now = (): Date => clock.now();
    this.store = new ObjectStore(now, options.watchHistory !== undefined ? { historySize: options.watchHistory } : {});
    this.controller = new VirtController(this.store, now, { ...(options.nodes !== undefined && { nodes: options.nodes }), bootTimeMs: options.bootTimeMs ?? 0, timers: clock });
    this.migrations = new MigrationController({
      store: this.store,
      clock,
      durationMs: options.migrationDurationMs ?? DEFAULT_MIGRATION_DURATION_MS,
      kubevirt: () => this.controller.kubevirt(),
      targetNode: (source) => this.controller.pickNode(source),
      onFinished: (namespace, name) => {
        // The VM controller may have changes waiting for the hotplug to finish.
        this.controller.reconcile(namespace, name);
        this.updater.kick();
      },
    });
    this.updater = new WorkloadUpdater({
      store: this.store,
      clock,
      kubevirt: () => this.controller.kubevirt(),
      createMigration: (vmim) => {
        this.createMigration(vmim);
      },
      evict: (namespace, name) => this.controller.evict(namespace, name),
    });
    if (options.stateFile !== undefined && existsSync(options.stateFile)) {
      this.store.restore(JSON.parse(readFileSync(options.stateFile, 'utf8')) as StoreSnapshot);
    }
    if (options.kubevirt !== undefined) this.setKubeVirt(options.kubevirt);
    else if (this.store.list('KubeVirt').length === 0) this.setKubeVirt(defaultKubeVirt());
    this.unwatch = this.store.watch((e) => this.react(e));
    // Work a restored state left unfinished resumes.
    this.migrations.kick();
    this.updater.kick();
  }

  /** What the simulated controllers do after a stored change; always on a later tick, never inside the store's event. */
  private react(e: StoredEvent): void {
    switch (e.kind) {
      case 'KubeVirt':
        if (e.type === 'ADDED' && statusOf(e.object)['phase'] === undefined) {
          // virt-operator's part: an installed KubeVirt reports itself Deployed.
          this.clock.setTimeout(() => {
            const kv = this.store.peek('KubeVirt', nsOf(e.object), nameOf(e.object));
            if (kv !== undefined && statusOf(kv)['phase'] === undefined) this.store.replace({ ...kv, status: { ...statusOf(kv), phase: 'Deployed' } });
          }, 0);
        }
        this.migrations.kick();
        this.updater.kick();
        return;
      case 'VirtualMachineInstance':
        if (e.type === 'DELETED') this.migrations.kick();
        if (e.type === 'DELETED' || needsMigration(e.object)) this.updater.kick();
        return;
      case 'VirtualMachineInstanceMigration':
        if (e.type === 'DELETED') {
          const gone = e.previous ?? e.object;
          this.clock.setTimeout(() => this.migrations.deleted(gone), 0);
        } else if (e.type === 'ADDED') this.migrations.kick();
        if (e.type === 'DELETED' || isFinal(e.object)) this.updater.kick();
        return;
      case 'PersistentVolumeClaim': {
        const ns = nsOf(e.object);
        const claim = nameOf(e.object);
        this.clock.setTimeout(() => {
          for (const vmi of [...this.store.scan('VirtualMachineInstance', ns)]) {
            const vols = ((vmi['spec'] ?? {}) as Obj)['volumes'];
            const uses = Array.isArray(vols) && (vols as Obj[]).some((v) => ((v['persistentVolumeClaim'] ?? {}) as Obj)['claimName'] === claim || ((v['dataVolume'] ?? {}) as Obj)['name'] === claim);
            if (uses) this.controller.refreshMigratable(ns, nameOf(vmi));
          }
        }, 0);
        return;
      }
      default:
        return;
    }
  }

  /** Stops the simulated controllers' timers. */
  close(): void {
    this.unwatch();
    this.migrations.stop();
    this.updater.stop();
  }

  /**
   * Creates a VirtualMachineInstanceMigration as virt-api admits it (the VMI exists, is not
   * final, is migratable, has no migration in flight); returns the stored object, or throws a
   * ClusterError('Invalid') with the webhook's message.
   */
  createMigration(vmim: Obj): Obj {
    const copy = structuredClone(vmim);
    const m = (copy['metadata'] ??= {}) as Obj;
    m['namespace'] ??= 'default';
    if ((m['name'] === undefined || m['name'] === '') && typeof m['generateName'] === 'string') {
      m['name'] = `${m['generateName']}${Math.random().toString(36).slice(2, 7)}`;
    }
    const denied = admitMigration(this.store, copy);
    if (denied !== null) throw new ClusterError('Invalid', `admission webhook "migration-create-validator.kubevirt.io" denied the request: ${denied}`);
    return this.store.create(copy);
  }

  /** Every VirtualMachineInstanceMigration, optionally of one VMI. */
  listMigrations(namespace?: string, vmiName?: string): Obj[] {
    return this.store.list('VirtualMachineInstanceMigration', namespace).filter((m) => vmiName === undefined || vmiNameOf(m) === vmiName);
  }

  /**
   * Installs or replaces the KubeVirt CR (running VMIs keep their ceilings, as in KubeVirt). A CR
   * without `status.phase` is taken as installed: it gets `Deployed`, as virt-operator would set.
   */
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
    const status = (copy['status'] ??= {}) as Obj;
    status['phase'] ??= 'Deployed';
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

  async listVirtualMachineInstanceMigrations(): Promise<Obj[]> {
    return this.listMigrations();
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
      // Annotations another writer merge-patched (restart records) stay unless the apply sets them, as
      // server-side apply keeps fields another manager owns; the rest follow what was sent.
      const kept = this.patchedKeys.get(String(metaOf(existing)['uid'])) ?? new Set<string>();
      const before = (metaOf(existing)['annotations'] ?? {}) as Record<string, unknown>;
      const annotations = { ...Object.fromEntries([...kept].filter((k) => before[k] !== undefined).map((k) => [k, before[k]])), ...(sent.annotations as Obj) };
      const meta = { ...metaOf(existing), labels: sent.labels, annotations };
      this.store.replace({ ...existing, metadata: meta, spec: sent.spec });
    }
    this.controller.reconcile(r.namespace, r.name);
    return this.store.get('VirtualMachine', r.namespace, r.name) ?? {};
  }

  async deleteVirtualMachine(r: ObjectRef): Promise<void> {
    this.store.delete('VirtualMachine', r.namespace, r.name);
    this.controller.reconcile(r.namespace, r.name);
  }

  async patchVirtualMachineAnnotations(r: ObjectRef, annotations: Readonly<Record<string, string | null>>, resourceVersion: string): Promise<Obj> {
    const vm = this.store.get('VirtualMachine', r.namespace, r.name);
    if (vm === undefined) throw new ClusterError('NotFound', `virtualmachines.kubevirt.io "${r.name}" not found in namespace ${r.namespace}`);
    if (String(metaOf(vm)['resourceVersion'] ?? '') !== resourceVersion) {
      throw new ClusterError('Conflict', `Operation cannot be fulfilled on virtualmachines.kubevirt.io "${r.name}": the object has been modified; please apply your changes to the latest version and try again`, { reason: 'Conflict', status: 409 });
    }
    const uid = String(metaOf(vm)['uid']);
    const keys = this.patchedKeys.get(uid) ?? new Set<string>();
    this.patchedKeys.set(uid, keys);
    for (const k of Object.keys(annotations)) keys.add(k);
    const next: Record<string, string> = { ...((metaOf(vm)['annotations'] ?? {}) as Record<string, string>) };
    for (const [k, v] of Object.entries(annotations)) {
      if (v === null) delete next[k];
      else next[k] = v;
    }
    // Metadata only: the generation stays, the VM controller has nothing to reconcile.
    this.store.replace({ ...vm, metadata: { ...metaOf(vm), annotations: next } });
    return this.store.get('VirtualMachine', r.namespace, r.name) ?? {};
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
