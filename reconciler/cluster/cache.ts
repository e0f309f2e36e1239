/**
 * An informer-style cache over a {@link ClusterBackend}: list once, then follow watch events,
 * so a sync reads the cluster from memory and never per VM.
 */
import type { Obj } from '../rollout/index.ts';
import type { ClusterBackend, WatchEvent } from './backend.ts';

const INSTANCETYPE_KINDS = new Set(['VirtualMachineInstancetype', 'VirtualMachineClusterInstancetype', 'VirtualMachinePreference', 'VirtualMachineClusterPreference']);
const REVISION_PREFIX = 'revision-start-vm-';

function key(o: Obj): string {
  const m = (o['metadata'] ?? {}) as Obj;
  return `${String(m['namespace'] ?? '')}/${String(m['name'] ?? '')}`;
}

/** The cached cluster state. */
export class ClusterCache {
  readonly vms = new Map<string, Obj>();
  readonly vmis = new Map<string, Obj>();
  /** Start revisions by name. */
  private readonly revisions = new Map<string, Obj>();
  readonly instancetypes = new Map<string, Obj>();
  kubevirt: Obj | null = null;
  private unsubscribe: (() => void) | null = null;

  constructor(private readonly backend: ClusterBackend) {}

  /** Lists everything once and starts following events. */
  async start(): Promise<void> {
    if (this.unsubscribe !== null) return;
    this.unsubscribe = this.backend.watch((e) => this.onEvent(e));
    const [vms, vmis, baselines, its, kv] = await Promise.all([
      this.backend.listVirtualMachines(),
      this.backend.listVirtualMachineInstances(),
      this.backend.listBaselines(),
      this.backend.listInstancetypes(),
      this.backend.getKubeVirt(),
    ]);
    for (const vm of vms) this.vms.set(key(vm), vm);
    for (const vmi of vmis) this.vmis.set(key(vmi), vmi);
    for (const [uid, data] of baselines) this.revisions.set(`${REVISION_PREFIX}${uid}-listed`, { metadata: { name: `${REVISION_PREFIX}${uid}-0` }, data, uid });
    for (const it of its) this.instancetypes.set(`${String(it['kind'])}/${key(it)}`, it);
    this.kubevirt = kv;
  }

  /** Stops following events. */
  stop(): void {
    this.unsubscribe?.();
    this.unsubscribe = null;
  }

  /** The newest start baseline of a VM, as `{spec}`, or null. */
  baseline(vm: Obj): Obj | null {
    const uid = String(((vm['metadata'] ?? {}) as Obj)['uid'] ?? '');
    let best: { gen: number; data: Obj } | null = null;
    for (const [name, rev] of this.revisions) {
      if (!name.startsWith(`${REVISION_PREFIX}${uid}-`)) continue;
      const suffix = name.slice(REVISION_PREFIX.length + uid.length + 1);
      const gen = suffix === 'listed' ? -1 : Number(suffix);
      if (best === null || gen > best.gen) best = { gen, data: (rev['data'] ?? {}) as Obj };
    }
    return best?.data ?? null;
  }

  private onEvent(e: WatchEvent): void {
    const o = e.object;
    const remove = e.type === 'DELETED';
    switch (e.kind) {
      case 'VirtualMachine':
        if (remove) this.vms.delete(key(o));
        else this.vms.set(key(o), o);
        return;
      case 'VirtualMachineInstance':
        if (remove) this.vmis.delete(key(o));
        else this.vmis.set(key(o), o);
        return;
      case 'ControllerRevision': {
        const name = String(((o['metadata'] ?? {}) as Obj)['name'] ?? '');
        if (!name.startsWith(REVISION_PREFIX)) return;
        if (remove) this.revisions.delete(name);
        else {
          // A new start revision replaces whatever the initial list gave for this VM.
          for (const k of [...this.revisions.keys()]) if (k.endsWith('-listed') && name.startsWith(k.slice(0, -'listed'.length))) this.revisions.delete(k);
          this.revisions.set(name, o);
        }
        return;
      }
      case 'KubeVirt':
        this.kubevirt = remove ? null : o;
        return;
      default:
        if (INSTANCETYPE_KINDS.has(e.kind)) {
          if (remove) this.instancetypes.delete(`${e.kind}/${key(o)}`);
          else this.instancetypes.set(`${e.kind}/${key(o)}`, o);
        }
    }
  }
}
