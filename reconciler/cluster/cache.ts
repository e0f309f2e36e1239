/**
 * An informer-style cache over a {@link ClusterBackend}: list once, then follow watch events,
 * so a sync reads the cluster from memory and never per VM.
 */
import { INSTANCETYPE_KINDS, type Obj, parseStartRevisionName } from '../rollout/index.ts';
import type { ClusterBackend, WatchEvent } from './backend.ts';
import { metaOf, objectKey, statusOf } from './object.ts';

const INSTANCETYPE_KIND_SET = new Set(INSTANCETYPE_KINDS);

/** True when resourceVersion `have` is the same as or later than `want` (numeric when both are; Kubernetes' are etcd revisions). */
function notOlder(have: unknown, want: unknown): boolean {
  if (have === want) return true;
  const h = Number(have);
  const w = Number(want);
  return Number.isFinite(h) && Number.isFinite(w) && String(have) !== '' && h >= w;
}

/** Where the cache's VM changes stood at one moment ({@link ClusterCache.vmMark}). */
export interface VmMark {
  epoch: number;
  seq: number;
}

/** Where the cache's VMs, VMIs and start revisions stood at one moment ({@link ClusterCache.mark}). */
export interface CacheMark extends VmMark {
  vmiSeq: number;
  revisions: number;
}

/** Changes kept for {@link ClusterCache.vmChangesSince}; a sync asks for the ones since the previous sync. */
const VM_CHANGE_LOG_LIMIT = 200_000;

/** Keys in the order events changed them, numbered from 0; bounded: past the limit it starts over. */
class KeyLog {
  private keys: string[] = [];
  /** The number of the first kept entry. */
  private base = 0;

  /** The number the next change gets. */
  get seq(): number {
    return this.base + this.keys.length;
  }

  /** Records a change of `key`; true when the log was cut first (changes before it are no longer known). */
  push(key: string): boolean {
    const cut = this.keys.length >= VM_CHANGE_LOG_LIMIT;
    if (cut) {
      this.base += this.keys.length;
      this.keys = [];
    }
    this.keys.push(key);
    return cut;
  }

  /** Adds the keys changed from change number `seq` on to `into`; false when those are no longer kept. */
  addSince(seq: number, into: Set<string>): boolean {
    if (seq < this.base) return false;
    for (let i = seq - this.base; i < this.keys.length; i++) into.add(this.keys[i] as string);
    return true;
  }
}

/** The cached cluster state. */
export class ClusterCache {
  readonly vms = new Map<string, Obj>();
  readonly vmis = new Map<string, Obj>();
  /** Start revisions per VM uid, by generation. */
  private readonly revisions = new Map<string, Map<number, Obj>>();
  readonly instancetypes = new Map<string, Obj>();
  /** VirtualMachineInstanceMigrations by `namespace/name`: the migrations carrying live changes to guests, and those queued. */
  readonly migrations = new Map<string, Obj>();
  kubevirt: Obj | null = null;
  private unsubscribe: (() => void) | null = null;
  private starting: Promise<void> | null = null;
  /** Checks run after every event (pending {@link settle} calls). */
  private readonly waiters = new Set<() => void>();

  /** VM keys in the order events changed them (see {@link vmChangesSince}). */
  private readonly vmLog = new KeyLog();
  /** Bumped by every list (a relist may change any VM without an event) and when the log is cut. */
  private vmEpoch = 0;

  constructor(private readonly backend: ClusterBackend) {}

  /** VMI keys in the order events changed them (the epoch is shared with the VMs'). */
  private readonly vmiLog = new KeyLog();
  /** Start revision events (and lists) so far: a VM's baseline may have moved when this did. */
  private revisionChanges = 0;

  /** A mark of the VMs, their instances and start revisions as the cache holds them now, for {@link changedSince}. */
  mark(): CacheMark {
    return { epoch: this.vmEpoch, seq: this.vmLog.seq, vmiSeq: this.vmiLog.seq, revisions: this.revisionChanges };
  }

  /**
   * The keys whose VM or VMI changed since `mark`, or null when that is not known (a relist or a
   * cut log since) or when any start revision changed (any VM's baseline may have): then any may have.
   */
  changedSince(mark: CacheMark): Set<string> | null {
    if (mark.revisions !== this.revisionChanges) return null;
    const keys = this.vmChangesSince(mark);
    return keys !== null && this.vmiLog.addSince(mark.vmiSeq, keys) ? keys : null;
  }

  /** A mark of the VMs as the cache holds them now, for {@link vmChangesSince}. */
  vmMark(): VmMark {
    return { epoch: this.vmEpoch, seq: this.vmLog.seq };
  }

  /** The keys of the VMs changed (added, updated, deleted) since `mark`, or null when that is not known (a relist since, or too long ago): then any may have. */
  vmChangesSince(mark: VmMark): Set<string> | null {
    if (mark.epoch !== this.vmEpoch) return null;
    const keys = new Set<string>();
    return this.vmLog.addSince(mark.seq, keys) ? keys : null;
  }

  // A cut log bumps the epoch: older marks answer null (the next sync looks at every VM).
  private vmChanged(key: string): void {
    if (this.vmLog.push(key)) this.vmEpoch++;
  }

  private vmiChanged(key: string): void {
    if (this.vmiLog.push(key)) this.vmEpoch++;
  }

  /** Lists everything once and starts following events. */
  start(): Promise<void> {
    this.starting ??= this.load().catch((e: unknown) => {
      // A failed first list leaves nothing behind: the next sync starts over.
      this.stop();
      throw e;
    });
    return this.starting;
  }

  private async load(): Promise<void> {
    this.vmEpoch++;
    this.unsubscribe = this.backend.watch((e) => {
      this.onEvent(e);
      for (const check of this.waiters) check();
    });
    const [vms, vmis, baselines, its, kv, vmims] = await Promise.all([
      this.backend.listVirtualMachines(),
      this.backend.listVirtualMachineInstances(),
      this.backend.listBaselines(),
      this.backend.listInstancetypes(),
      this.backend.getKubeVirt(),
      this.backend.listVirtualMachineInstanceMigrations(),
    ]);
    for (const m of vmims) this.migrations.set(objectKey(m), m);
    for (const vm of vms) this.vms.set(objectKey(vm), vm);
    // Events may have come while listing: the list replaced their objects, so marks from before it answer null.
    this.vmEpoch++;
    this.revisionChanges++;
    for (const vmi of vmis) this.vmis.set(objectKey(vmi), vmi);
    for (const [uid, data] of baselines) {
      // A listed baseline stands at generation -1 until a watch event brings the revision itself.
      if (!this.revisions.has(uid)) this.revisions.set(uid, new Map([[-1, { data }]]));
    }
    for (const it of its) this.instancetypes.set(`${String(it['kind'])}/${objectKey(it)}`, it);
    this.kubevirt = kv;
  }

  /** Stops following events. */
  stop(): void {
    this.unsubscribe?.();
    this.unsubscribe = null;
    this.starting = null;
  }

  /**
   * Waits until the cache shows every write: a written VM at least as new as the server's
   * answer and observed by KubeVirt (status.observedGeneration), with its VMI once KubeVirt
   * reports it running; a deleted VM gone. Bounded by `timeoutMs`; returns the keys that
   * did not settle in time. Against the embedded simulator this returns at once.
   */
  settle(writes: ReadonlyArray<{ key: string; written: Obj | null }>, timeoutMs: number): Promise<string[]> {
    const open = new Map(writes.map((w) => [w.key, w.written]));
    const check = (): void => {
      for (const [key, written] of open) if (this.settled(key, written)) open.delete(key);
    };
    check();
    if (open.size === 0) return Promise.resolve([]);
    return new Promise((resolve) => {
      const finish = (): void => {
        clearTimeout(timer);
        this.waiters.delete(waiter);
        resolve([...open.keys()]);
      };
      const waiter = (): void => {
        check();
        if (open.size === 0) finish();
      };
      const timer = setTimeout(finish, timeoutMs);
      this.waiters.add(waiter);
    });
  }

  /** Resolves true once `check` holds (tried now and after every event), false after `timeoutMs`. */
  until(check: () => boolean, timeoutMs: number): Promise<boolean> {
    if (check()) return Promise.resolve(true);
    return new Promise((resolve) => {
      const finish = (ok: boolean): void => {
        clearTimeout(timer);
        this.waiters.delete(waiter);
        resolve(ok);
      };
      const waiter = (): void => {
        if (check()) finish(true);
      };
      const timer = setTimeout(() => finish(false), timeoutMs);
      this.waiters.add(waiter);
    });
  }

  private settled(key: string, written: Obj | null): boolean {
    const cached = this.vms.get(key);
    if (written === null) return cached === undefined;
    if (cached === undefined) return false;
    const have = metaOf(cached);
    const want = metaOf(written);
    if (!notOlder(have['resourceVersion'], want['resourceVersion'])) return false;
    const status = statusOf(cached);
    // KubeVirt writes generations only while a VMI exists (syncGenerationInfo), and then
    // desiredGeneration is the VM generation its last sync saw; observedGeneration stays at the
    // generation the VMI started from after any template change, live or not, so it cannot say
    // that a write was seen. A VM that should run and has no VMI yet waits for KubeVirt to start
    // one; any other VM without a VMI gets nothing from KubeVirt to wait for. No KubeVirt installed:
    // nobody will observe the write.
    if (this.kubevirt !== null) {
      if (this.vmis.has(key) ? observedVmGeneration(status) < Number(want['generation'] ?? 0) : startsInstance(cached)) return false;
    }
    return status['ready'] !== true || this.vmis.has(key);
  }

  /** The migrations as the engine takes them (`RolloutInput.migrations`, `observeGuest`). */
  migrationList(): Obj[] {
    return [...this.migrations.values()];
  }

  /**
   * A digest of the migrations' phases, for cache keys: a plan's `queuedAhead` depends on how many
   * are unfinished, not on every status update of a running one.
   */
  migrationsKey(): string {
    let out = '';
    for (const [key, m] of this.migrations) out += `${key}=${String(statusOf(m)['phase'] ?? '')};`;
    return out;
  }

  /** The newest start baseline of a VM, as `{spec}`, or null. */
  baseline(vm: Obj): Obj | null {
    const best = this.newestRevision(String(metaOf(vm)['uid'] ?? ''));
    return best === null ? null : ((best.rev['data'] ?? {}) as Obj);
  }

  /** Generation of the newest start baseline of a VM (-2 when there is none): cheap, for cache keys. */
  baselineGeneration(vm: Obj): number {
    return this.newestRevision(String(metaOf(vm)['uid'] ?? ''))?.gen ?? -2;
  }

  private newestRevision(uid: string): { gen: number; rev: Obj } | null {
    const byGen = this.revisions.get(uid);
    if (byGen === undefined) return null;
    let best: { gen: number; rev: Obj } | null = null;
    for (const [gen, rev] of byGen) if (best === null || gen > best.gen) best = { gen, rev };
    return best;
  }

  private onEvent(e: WatchEvent): void {
    const o = e.object;
    const remove = e.type === 'DELETED';
    switch (e.kind) {
      case 'VirtualMachine': {
        const key = objectKey(o);
        if (remove) this.vms.delete(key);
        else this.vms.set(key, o);
        this.vmChanged(key);
        return;
      }
      case 'VirtualMachineInstance': {
        const key = objectKey(o);
        if (remove) this.vmis.delete(key);
        else this.vmis.set(key, o);
        this.vmiChanged(key);
        return;
      }
      case 'ControllerRevision': {
        const name = String(metaOf(o)['name'] ?? '');
        const start = parseStartRevisionName(name);
        if (start === null) return;
        const { uid, generation } = start;
        this.revisionChanges++;
        let byGen = this.revisions.get(uid);
        if (remove) {
          byGen?.delete(generation);
          if (byGen?.size === 0) this.revisions.delete(uid);
          return;
        }
        if (byGen === undefined) {
          byGen = new Map();
          this.revisions.set(uid, byGen);
        }
        byGen.delete(-1);
        byGen.set(generation, o);
        return;
      }
      case 'KubeVirt':
        this.kubevirt = remove ? null : o;
        return;
      case 'VirtualMachineInstanceMigration':
        if (remove) this.migrations.delete(objectKey(o));
        else this.migrations.set(objectKey(o), o);
        return;
      default:
        if (INSTANCETYPE_KIND_SET.has(e.kind)) {
          if (remove) this.instancetypes.delete(`${e.kind}/${objectKey(o)}`);
          else this.instancetypes.set(`${e.kind}/${objectKey(o)}`, o);
        }
    }
  }
}

/** The newest VM generation KubeVirt's controller has synced: desiredGeneration, or observedGeneration from releases without it. */
function observedVmGeneration(status: Obj): number {
  return Number(status['desiredGeneration'] ?? status['observedGeneration'] ?? -1);
}

/** True when KubeVirt's controller starts an instance for the VM as soon as it sees it (runStrategy Always or RerunOnFailure, or `running: true`). */
function startsInstance(vm: Obj): boolean {
  const spec = (vm['spec'] ?? {}) as Obj;
  const strategy = spec['runStrategy'];
  return strategy === 'Always' || strategy === 'RerunOnFailure' || (strategy === undefined && spec['running'] === true);
}
