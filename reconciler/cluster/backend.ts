/** The cluster as the reconcile loop sees it: one interface, the embedded simulator and the Kubernetes API (kube.ts) behind it. */
import type { Obj } from '../rollout/index.ts';

/** Identifies a namespaced object. */
export interface ObjectRef {
  namespace: string;
  name: string;
}

/** One change seen by a watch. */
export interface WatchEvent {
  type: 'ADDED' | 'MODIFIED' | 'DELETED';
  kind: string;
  object: Obj;
}

/** What a reconcile reads and writes. */
export interface ClusterBackend {
  /** Every VirtualMachine. */
  listVirtualMachines(): Promise<Obj[]>;
  /** Every VirtualMachineInstance. */
  listVirtualMachineInstances(): Promise<Obj[]>;
  /** The newest `revision-start-vm-<uid>-<generation>` ControllerRevision per VM uid, as `{spec}`. */
  listBaselines(): Promise<Map<string, Obj>>;
  /** Instancetypes and preferences, namespaced and cluster-wide. */
  listInstancetypes(): Promise<Obj[]>;
  /** The KubeVirt CR, or null when KubeVirt is not installed. */
  getKubeVirt(): Promise<Obj | null>;
  /** Every VirtualMachineInstanceMigration (the workload updater's and anyone's): how a live change reaches the guest. */
  listVirtualMachineInstanceMigrations(): Promise<Obj[]>;
  /** Server-side apply of a VirtualMachine with field manager `vmroll`; returns the stored object. */
  applyVirtualMachine(vm: Obj): Promise<Obj>;
  /** Deletes a VirtualMachine (prune). */
  deleteVirtualMachine(ref: ObjectRef): Promise<void>;
  /** The `restart` subresource. */
  restartVirtualMachine(ref: ObjectRef): Promise<void>;
  /** The `stop` subresource. */
  stopVirtualMachine(ref: ObjectRef): Promise<void>;
  /** The `start` subresource. */
  startVirtualMachine(ref: ObjectRef): Promise<void>;
  /**
   * JSON merge patch of a VM's annotations (`null` removes one) guarded by `resourceVersion`: a VM
   * changed since fails with ClusterError('Conflict'), never retried here. Returns the stored VM.
   * The restart records (restart/record.ts) go this way, not through the sync's server-side apply.
   */
  patchVirtualMachineAnnotations(ref: ObjectRef, annotations: Readonly<Record<string, string | null>>, resourceVersion: string): Promise<Obj>;
  /** Subscribes to changes of VMs, VMIs, ControllerRevisions, instancetypes, VirtualMachineInstanceMigrations and the KubeVirt CR; returns the unsubscribe function. */
  watch(onEvent: (event: WatchEvent) => void): () => void;
}

/** Typed cluster errors, tagged with what to do about them. */
export class ClusterError extends Error {
  constructor(
    /** NotFound, Conflict (data.reason AlreadyExists or Conflict), Invalid (400/422), Forbidden (401/403), Unavailable (5xx, 429, timeouts, connection errors). */
    readonly code: 'NotFound' | 'Conflict' | 'Invalid' | 'Forbidden' | 'Unavailable',
    message: string,
    readonly data: Obj = {},
  ) {
    super(message);
  }
}
