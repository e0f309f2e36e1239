/**
 * The sync's plan step, after the pairing: which paired VMs need a write. Only VMs whose desired
 * state differs from what the cluster holds are written; what this process applied (or found
 * applied) and found in sync is remembered per VM so an unchanged VM costs no comparison.
 */
import type { Logger } from 'pino';
import type { RepositoryIdentity } from '../apply/identity.ts';
import { Owner, appliedIn, ownedFieldsInSync, ownedFingerprint, ownerOf } from '../apply/ownership.ts';
import { metaOf } from '../cluster/object.ts';
import type { VmPair } from '../plan/pairing.ts';
import type { Obj } from '../rollout/index.ts';
import { withRestartPending } from './restarts.ts';

/** One VM to write. */
export interface PendingWrite {
  key: string;
  action: 'create' | 'update';
  desired: Obj;
  file: string;
  line: number;
  fingerprint: string;
  /** The loaded manifest object, remembered to skip the VM while its file is unchanged. */
  manifest: unknown;
}

/** What the sync remembers per VM between its runs, to write only what changed. */
export class WriteMemory {
  /** Fingerprint of the desired VM last applied (or found applied), per VM. */
  readonly applied = new Map<string, string>();
  /** Per VM: the manifest object and live resourceVersion last found in sync, to skip unchanged VMs. */
  private readonly seen = new Map<string, { manifest: unknown; liveVersion: unknown }>();

  /** True when `manifest` and the live VM as it is now were last found in sync ({@link decide} skips the VM). */
  isSeen(key: string, manifest: unknown, live: Obj | undefined): boolean {
    const seen = this.seen.get(key);
    return seen !== undefined && live !== undefined && seen.manifest === manifest && seen.liveVersion === metaOf(live)['resourceVersion'];
  }

  /** Remembers that `manifest` and the live VM as it is now are in sync. */
  markSeen(key: string, manifest: unknown, live: Obj): void {
    const liveVersion = metaOf(live)['resourceVersion'];
    const seen = this.seen.get(key);
    // Most VMs are seen again as they were: nothing to allocate.
    if (seen !== undefined && seen.manifest === manifest && seen.liveVersion === liveVersion) return;
    this.seen.set(key, { manifest, liveVersion });
  }

  /**
   * The writes the pairs need: a VM the cluster lacks is created; one whose owned fields differ is
   * updated. Where the cluster keeps managedFields, what vmroll owns on the live VM decides, so
   * any process (a fresh --once, a new leader) removes what Git removed; elsewhere, what this
   * process applied does. VMs found in sync are remembered. `full` compares every VM, remembered or not
   * (the reference the memoised decision is checked against).
   */
  decide(pairs: readonly VmPair[], identity: RepositoryIdentity, log: Logger, full = false): PendingWrite[] {
    const pending: PendingWrite[] = [];
    /** Pairs compared in this call (the others were seen as they are, and stay remembered as they were). */
    const compared: VmPair[] = [];
    for (const pair of pairs) {
      const { key, vm, live } = pair;
      const seen = full ? undefined : this.seen.get(key);
      // Same manifest object (its file did not change) and the live VM untouched since: nothing to do.
      if (seen !== undefined && live !== undefined && seen.manifest === vm.manifest && seen.liveVersion === metaOf(live)['resourceVersion']) continue;
      compared.push(pair);
      // A new restart request is applied with its pending mark, in the same write (controller/restarts.ts).
      const desired = withRestartPending(pair.desired(), live);
      const fingerprint = ownedFingerprint(desired);
      const write = (action: PendingWrite['action']): void => {
        pending.push({ key, action, desired, file: vm.file, line: vm.line, fingerprint, manifest: vm.manifest });
      };
      const adopting = (): void => {
        if (live !== undefined && ownerOf(live, identity).owner === Owner.none) log.info({ vm: key, file: vm.file }, 'adopting a VirtualMachine vmroll did not apply: applying the manifest over it');
      };
      if (live === undefined) {
        write('create');
        continue;
      }
      const byFields = ownedFieldsInSync(desired, live);
      if (byFields !== null) {
        if (byFields.inSync) {
          this.applied.set(key, fingerprint);
        } else {
          adopting();
          log.debug({ vm: key, drift: byFields.drift.slice(0, 20) }, 'owned fields differ from Git');
          write('update');
        }
      } else if (this.applied.get(key) !== fingerprint || !appliedIn(desired, live)) {
        if (this.applied.get(key) === undefined && appliedIn(desired, live)) this.applied.set(key, fingerprint);
        else {
          adopting();
          write('update');
        }
      }
    }
    if (full) return pending;
    const writing = new Set(pending.map((w) => w.key));
    for (const { key, vm, live } of compared) if (!writing.has(key) && live !== undefined) this.markSeen(key, vm.manifest, live);
    return pending;
  }
}
