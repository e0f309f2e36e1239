/**
 * The simulator's virt-controller stand-in run as an external controller against a
 * Kubernetes API server that serves KubeVirt's CRDs and runs no KubeVirt (the conformance
 * tier's kube-apiserver; not `vmroll sim`, whose own controller already does this): it follows VirtualMachines and VMIs with the kube backend's informers, and for each VM that
 * changed runs the simulator's own VM controller (virtController.ts `reconcile`) on a private
 * copy of what it needs (the VM, its start revisions, the VMIs, the KubeVirt CR, the
 * instancetypes), then writes the difference back over the API: start revisions
 * (ControllerRevisions), the VMI created, replaced (live updates, conditions) or deleted, and the
 * VM's status through its status subresource. The decisions are the simulator's; only the I/O
 * is new. Not run here: the migration controller, the workload updater, boot steps, and the
 * `restart`/`stop`/`start` subresources (served by virt-api, which a plain API server lacks).
 */
import { AppsV1Api, CustomObjectsApi, KubeConfig } from '@kubernetes/client-node';
import type { Logger } from 'pino';
import { createHash } from 'node:crypto';
import type { Dispatcher } from 'undici';
import { INSTANCETYPE_KINDS, type Obj, parseStartRevisionName } from '../../rollout/index.ts';
import type { WatchEvent } from '../backend.ts';
import { KubeCluster, toClusterError } from '../kube.ts';
import type { KubeConfigSource } from '../kubeconfig.ts';
import { metaOf, objectKey, statusOf } from '../object.ts';
import { ObjectStore, type StoredEvent } from './store.ts';
import { VirtController } from './virtController.ts';

const KUBEVIRT_GROUP = { group: 'kubevirt.io', version: 'v1' } as const;

/** What client-node's `createDispatcher` takes and gives (not in its published types). */
type CreateDispatcher = (cluster: unknown, agentOptions: object) => Dispatcher | undefined;

/**
 * client-node builds a new undici connection pool for every request whenever the kubeconfig
 * sets a TLS option (a cluster CA, skip-verify): one pool per distinct set of options keeps
 * connections alive and reused. Returns the closer.
 */
function sharePools(kc: KubeConfig): () => Promise<void> {
  const target = kc as unknown as { createDispatcher: CreateDispatcher };
  const create = target.createDispatcher.bind(kc);
  const pools = new Map<string, Dispatcher | undefined>();
  target.createDispatcher = (cluster, agentOptions) => {
    const key = createHash('sha256').update(JSON.stringify([cluster, agentOptions])).digest('hex');
    if (!pools.has(key)) pools.set(key, create(cluster, agentOptions));
    return pools.get(key);
  };
  return async () => {
    const open = [...pools.values()];
    pools.clear();
    await Promise.all(open.map((d) => d?.close().catch(() => undefined)));
  };
}

/** Options of {@link ExternalVirtController}. */
export interface ExternalVirtControllerOptions {
  kubeconfig: KubeConfigSource;
  /** Simulated node names VMIs are placed on (default the simulator's). */
  nodes?: readonly string[];
  logger?: Logger;
  /** First delay before a VM whose writes failed (a conflict, a stale read) is reconciled again; doubles up to 2 s. Default 50 ms. */
  retryMs?: number;
  /** Clock for condition timestamps. */
  now?: () => Date;
}

/** What the controller did, for tests and logs. */
export interface ExternalControllerStats {
  /** VM reconciles run. */
  reconciles: number;
  /** Writes sent (creates, replaces, status updates, deletes). */
  writes: number;
  /** Reconciles whose writes failed and were queued again. */
  retries: number;
  /** The last failure, for a test's failure message. */
  lastError: string | null;
}

/** True when resourceVersion `a` is newer than `b` (both as etcd writes them: decimal integers). */
function newer(a: unknown, b: unknown): boolean {
  const x = String(a ?? '');
  const y = String(b ?? '');
  if (!/^\d+$/.test(x) || !/^\d+$/.test(y)) return x !== y;
  return BigInt(x) > BigInt(y);
}

/** An object as written by this controller, or a deletion, until the informer has caught up with it. */
type Written = { object: Obj } | { deleted: true; resourceVersion: string };

/** Metadata the API server owns: dropped before a create. */
const SERVER_FIELDS = ['uid', 'resourceVersion', 'generation', 'creationTimestamp', 'managedFields'] as const;

/** The simulator's VM controller against a Kubernetes API server. */
export class ExternalVirtController {
  readonly stats: ExternalControllerStats = { reconciles: 0, writes: 0, retries: 0, lastError: null };
  private readonly kube: KubeCluster;
  private readonly custom: CustomObjectsApi;
  private readonly apps: AppsV1Api;
  private readonly closePools: () => Promise<void>;
  /**
   * Own writes the informers may not show yet (by `kind/namespace/name`): a reconcile that ran
   * on the informer alone could miss the start revision it has just created and patch the VMI
   * as if the VM had never started.
   */
  private readonly written = new Map<string, Written>();
  private readonly queue = new Set<string>();
  private readonly delays = new Map<string, number>();
  private readonly timers = new Set<NodeJS.Timeout>();
  private running = false;
  private closed = false;
  private unwatch: (() => void) | null = null;
  private wake: (() => void) | null = null;
  private loop: Promise<void> | null = null;

  constructor(private readonly options: ExternalVirtControllerOptions) {
    this.kube = new KubeCluster({ kubeconfig: options.kubeconfig, ...(options.logger !== undefined ? { logger: options.logger } : {}) });
    // A test tool (never loaded by `vmroll run`): its status and revision writes go through client-node.
    const kc = new KubeConfig();
    if ('inCluster' in options.kubeconfig) kc.loadFromCluster();
    else kc.loadFromFile(options.kubeconfig.file);
    if ('file' in options.kubeconfig && options.kubeconfig.context !== undefined) kc.setCurrentContext(options.kubeconfig.context);
    this.closePools = sharePools(kc);
    this.custom = kc.makeApiClient(CustomObjectsApi);
    this.apps = kc.makeApiClient(AppsV1Api);
  }

  /** Lists everything, queues every VM, and starts reconciling; resolves once the first lists are in. */
  async start(): Promise<void> {
    this.unwatch = this.kube.watch((e) => this.onEvent(e));
    const vms = await this.kube.listVirtualMachines();
    await this.kube.getKubeVirt();
    for (const vm of vms) this.enqueue(objectKey(vm));
    this.loop = this.work();
  }

  /** Queues every VM the informer holds, as a periodic resync would; returns how many. */
  resync(): number {
    const keys = [...(this.kube.informer('VirtualMachine')?.store.keys() ?? [])];
    for (const key of keys) this.enqueue(key);
    return keys.length;
  }

  /** True when nothing is queued, waiting for a retry, or being reconciled. */
  get idle(): boolean {
    return this.queue.size === 0 && this.timers.size === 0 && !this.running;
  }

  /** Stops following the server and waits for the reconcile in progress. */
  async close(): Promise<void> {
    this.closed = true;
    this.unwatch?.();
    for (const t of this.timers) clearTimeout(t);
    this.timers.clear();
    this.wake?.();
    await this.loop;
    this.kube.close();
    await this.closePools();
  }

  private onEvent(e: WatchEvent): void {
    switch (e.kind) {
      case 'VirtualMachine':
      case 'VirtualMachineInstance':
        // A VMI has its VM's name.
        this.enqueue(objectKey(e.object));
        return;
      case 'KubeVirt':
        if (e.type !== 'DELETED' && statusOf(e.object)['phase'] === undefined) this.enqueue(`kubevirt:${objectKey(e.object)}`);
        return;
      default:
        return;
    }
  }

  private enqueue(key: string): void {
    if (this.closed) return;
    this.queue.add(key);
    this.wake?.();
  }

  private async work(): Promise<void> {
    while (!this.closed) {
      const key = this.queue.values().next().value;
      if (key === undefined) {
        await new Promise<void>((resolve) => (this.wake = resolve));
        this.wake = null;
        continue;
      }
      this.queue.delete(key);
      this.running = true;
      try {
        if (key.startsWith('kubevirt:')) await this.deployKubeVirt(key.slice('kubevirt:'.length));
        else await this.reconcile(key);
        this.delays.delete(key);
      } catch (e) {
        // A conflict or a read the informers had not caught up with: the same VM again, a little later.
        this.stats.retries++;
        this.stats.lastError = `${key}: ${e instanceof Error ? e.message : String(e)}`;
        this.options.logger?.debug({ key, err: this.stats.lastError }, 'external virt-controller: retrying');
        const delay = this.delays.get(key) ?? this.options.retryMs ?? 50;
        this.delays.set(key, Math.min(delay * 2, 2_000));
        const timer = setTimeout(() => {
          this.timers.delete(timer);
          this.enqueue(key);
        }, delay);
        this.timers.add(timer);
      } finally {
        this.running = false;
      }
    }
  }

  /** virt-operator's part, as the simulator plays it: an installed KubeVirt CR without a phase reports `Deployed`. */
  private async deployKubeVirt(key: string): Promise<void> {
    const kv = this.fresh('KubeVirt', key);
    if (kv === undefined || statusOf(kv)['phase'] !== undefined) return;
    const m = metaOf(kv);
    const body = { ...kv, status: { ...statusOf(kv), phase: 'Deployed' } };
    await this.send('updating the status of the KubeVirt CR', () =>
      this.custom.replaceNamespacedCustomObjectStatus({ ...KUBEVIRT_GROUP, plural: 'kubevirts', namespace: String(m['namespace']), name: String(m['name']), body }),
    );
  }

  /** The informer's object of `kind` at `key`, or this controller's newer write of it. */
  private fresh(kind: string, key: string): Obj | undefined {
    const seen = this.kube.informer(kind)?.store.get(key);
    const mine = this.written.get(`${kind}/${key}`);
    if (mine === undefined) return seen;
    if ('deleted' in mine) {
      if (seen === undefined || newer(metaOf(seen)['resourceVersion'], mine.resourceVersion)) {
        this.written.delete(`${kind}/${key}`);
        return seen;
      }
      return undefined;
    }
    if (seen !== undefined && !newer(metaOf(mine.object)['resourceVersion'], metaOf(seen)['resourceVersion'])) {
      this.written.delete(`${kind}/${key}`);
      return seen;
    }
    return mine.object;
  }

  /** Every object of `kind` as {@link fresh} sees it. */
  private all(kind: string): Obj[] {
    const keys = new Set(this.kube.informer(kind)?.store.keys() ?? []);
    for (const k of this.written.keys()) if (k.startsWith(`${kind}/`)) keys.add(k.slice(kind.length + 1));
    return [...keys].map((k) => this.fresh(kind, k)).filter((o): o is Obj => o !== undefined);
  }

  /**
   * One VM: the simulator's VM controller on a private store holding what it reads, then its
   * writes sent to the server in dependency order (revision, VMI, VM status). A failed write
   * throws, and the VM is reconciled again from what the server shows then.
   */
  private async reconcile(key: string): Promise<void> {
    this.stats.reconciles++;
    const [namespace = '', name = ''] = key.split('/');
    const vm = this.fresh('VirtualMachine', key);
    const uid = vm !== undefined ? String(metaOf(vm)['uid'] ?? '') : '';
    if (vm === undefined) {
      // A VMI without a VM is deleted only when a VM owned it: a VMI created on its own is not the VM controller's.
      const vmi = this.fresh('VirtualMachineInstance', key);
      const owners = (vmi !== undefined ? metaOf(vmi)['ownerReferences'] : undefined) as Obj[] | undefined;
      if (vmi === undefined || !(owners ?? []).some((o) => o['kind'] === 'VirtualMachine' && o['controller'] === true)) return;
    }
    const objects: Obj[] = [
      ...(vm !== undefined ? [vm] : []),
      // Every VMI: placement picks the least loaded node.
      ...this.all('VirtualMachineInstance'),
      ...this.all('ControllerRevision').filter((r) => parseStartRevisionName(String(metaOf(r)['name'] ?? ''))?.uid === uid && uid !== ''),
      ...this.all('KubeVirt'),
      ...INSTANCETYPE_KINDS.flatMap((k) => this.all(k)),
    ];
    const store = new ObjectStore(this.options.now ?? (() => new Date()), { historySize: 1_000 });
    store.restore({ resourceVersion: 0, objects: objects.map((o) => ({ ...o, kind: String(o['kind']) })) });
    const before = new Map(objects.map((o) => [`${String(o['kind'])}/${objectKey(o)}`, o]));
    const touched = new Map<string, StoredEvent>();
    store.watch((e) => touched.set(`${e.kind}/${objectKey(e.object)}`, e));
    new VirtController(store, this.options.now ?? (() => new Date()), this.options.nodes !== undefined ? { nodes: this.options.nodes } : {}).reconcile(namespace, name);

    const order = ['ControllerRevision', 'VirtualMachineInstance', 'VirtualMachine'];
    const changes = [...touched.entries()].sort(([a], [b]) => order.indexOf(a.split('/')[0] ?? '') - order.indexOf(b.split('/')[0] ?? ''));
    for (const [k, e] of changes) {
      const kind = e.kind;
      const [ns = '', n = ''] = k.slice(kind.length + 1).split('/');
      const old = before.get(k);
      const now = store.peek(kind, ns, n);
      if (now === undefined) {
        if (old !== undefined) await this.remove(kind, ns, n, old);
      } else if (old === undefined) {
        await this.create(kind, ns, now);
      } else {
        await this.replace(kind, ns, n, old, now);
      }
    }
  }

  private async create(kind: string, namespace: string, object: Readonly<Obj>): Promise<void> {
    const body = structuredClone(object) as Obj;
    const m = body['metadata'] as Obj;
    for (const f of SERVER_FIELDS) delete m[f];
    const what = `creating ${kind} ${namespace}/${String(m['name'])}`;
    let created: unknown;
    if (kind === 'ControllerRevision') {
      try {
        created = await this.send(what, () => this.apps.createNamespacedControllerRevision({ namespace, body: body as never }));
      } catch (e) {
        // The revision's name is the VM's uid and generation: one that exists is this one.
        if (toClusterError(e, what).code === 'Conflict') return;
        throw e;
      }
    } else if (kind === 'VirtualMachineInstance') {
      // The VMI has no status subresource (virt-handler writes it whole): the status goes in with the create.
      created = await this.send(what, () => this.custom.createNamespacedCustomObject({ ...KUBEVIRT_GROUP, plural: 'virtualmachineinstances', namespace, body }));
    } else {
      throw new Error(`${what}: the VM controller does not create this kind`);
    }
    this.remember(kind, created);
  }

  private async replace(kind: string, namespace: string, name: string, old: Obj, next: Readonly<Obj>): Promise<void> {
    // The server's resourceVersion of what was read: a write on a stale read is a 409, and the VM is reconciled again.
    const body = { ...structuredClone(next), metadata: { ...(structuredClone(next['metadata']) as Obj), resourceVersion: metaOf(old)['resourceVersion'] } } as Obj;
    // Left out, the server keeps the managed fields as they are.
    delete (body['metadata'] as Obj)['managedFields'];
    const what = `replacing ${kind} ${namespace}/${name}`;
    let out: unknown;
    if (kind === 'VirtualMachine') {
      // The VM controller changes only the status, through the status subresource.
      out = await this.send(what, () => this.custom.replaceNamespacedCustomObjectStatus({ ...KUBEVIRT_GROUP, plural: 'virtualmachines', namespace, name, body }));
    } else if (kind === 'VirtualMachineInstance') {
      out = await this.send(what, () => this.custom.replaceNamespacedCustomObject({ ...KUBEVIRT_GROUP, plural: 'virtualmachineinstances', namespace, name, body }));
    } else {
      throw new Error(`${what}: the VM controller does not replace this kind`);
    }
    this.remember(kind, out);
  }

  private async remove(kind: string, namespace: string, name: string, old: Obj): Promise<void> {
    const what = `deleting ${kind} ${namespace}/${name}`;
    try {
      if (kind === 'ControllerRevision') await this.send(what, () => this.apps.deleteNamespacedControllerRevision({ namespace, name }));
      else if (kind === 'VirtualMachineInstance') await this.send(what, () => this.custom.deleteNamespacedCustomObject({ ...KUBEVIRT_GROUP, plural: 'virtualmachineinstances', namespace, name }));
      else throw new Error(`${what}: the VM controller does not delete this kind`);
    } catch (e) {
      if (toClusterError(e, what).code !== 'NotFound') throw e;
    }
    this.written.set(`${kind}/${namespace}/${name}`, { deleted: true, resourceVersion: String(metaOf(old)['resourceVersion'] ?? '') });
  }

  /** Keeps what the server answered to a write until the informer shows it. */
  private remember(kind: string, answer: unknown): void {
    if (typeof answer !== 'object' || answer === null) return;
    const o = { ...(answer as Obj), kind };
    this.written.set(`${kind}/${objectKey(o)}`, { object: o });
  }

  private async send<T>(what: string, fn: () => Promise<T>): Promise<T> {
    this.stats.writes++;
    try {
      return await fn();
    } catch (e) {
      throw toClusterError(e, what);
    }
  }
}
