/**
 * The sync's apply step: the planned writes as server-side applies (a few in flight at once),
 * then the prune deletes. A failed write concerns its VM only: it is an error of its file, the VM
 * is held, and the other writes go on.
 */
import type { Logger } from 'pino';
import type { ClusterBackend } from '../cluster/backend.ts';
import type { ClusterCache } from '../cluster/cache.ts';
import { ErrorKind, errorKind } from '../errors.ts';
import { vmKey } from '../plan/pairing.ts';
import type { Obj } from '../rollout/index.ts';
import type { ManifestError } from '../rollout/plan.ts';
import type { PendingWrite } from './writes.ts';

/** What {@link applyChanges} needs. */
export interface ApplyInput {
  cluster: ClusterBackend;
  /** The cluster as the sync sees it: what each VM was before its write is read here. */
  cache: ClusterCache;
  writes: readonly PendingWrite[];
  deletes: ReadonlyArray<{ namespace: string; name: string }>;
  /** Writes in flight at once. */
  concurrency: number;
  /** Called after each successful apply (the sync remembers what it applied). */
  onApplied: (write: PendingWrite) => void;
  /** Called after each successful delete. */
  onDeleted: (key: string) => void;
  log: Logger;
}

/** What the apply step did. */
export interface ApplyResult {
  /** What the sync did per VM it wrote: created, updated or deleted. */
  actions: Map<string, 'create' | 'update' | 'delete'>;
  /** Every VM written, as the server answered (null for a delete), for the settle step to wait on. */
  written: Array<{ key: string; written: Obj | null; write?: PendingWrite }>;
  /** Each written VM as the cache held it before the write (undefined: it did not exist). */
  before: Map<string, Obj | undefined>;
  /** Each written VM's running instance before the write (null: none). */
  vmisBefore: Map<string, Obj | null>;
  /** VMs whose apply failed: held as the cluster holds them. */
  failed: Set<string>;
  /** One error per failed apply or delete. */
  errors: ManifestError[];
  /** Requests written to the cluster. */
  requests: number;
  /** Failed writes that clear by themselves (a conflicting writer, 409): the sync is re-checked soon, not at the interval. */
  waiting: string[];
}

/** Applies the writes, then the deletes. Never throws for one VM's failure. */
export async function applyChanges(input: ApplyInput): Promise<ApplyResult> {
  const { cluster, cache, log } = input;
  const result: ApplyResult = { actions: new Map(), written: [], before: new Map(), vmisBefore: new Map(), failed: new Set(), errors: [], requests: 0, waiting: [] };
  const applyOne = async (w: PendingWrite): Promise<void> => {
    result.before.set(w.key, cache.vms.get(w.key));
    result.vmisBefore.set(w.key, cache.vmis.get(w.key) ?? null);
    const vmLog = log.child({ vm: w.key });
    try {
      result.requests++;
      const stored = await cluster.applyVirtualMachine(w.desired);
      input.onApplied(w);
      result.written.push({ key: w.key, written: stored, write: w });
      result.actions.set(w.key, w.action);
      vmLog.info({ action: w.action, file: w.file }, `${w.action === 'create' ? 'created' : 'updated'} VirtualMachine`);
    } catch (e) {
      const message = e instanceof Error ? e.message : String(e);
      result.errors.push({ file: w.file, line: w.line, message: `apply failed: ${message}` });
      result.failed.add(w.key);
      if (errorKind(e) === ErrorKind.waiting) result.waiting.push(w.key);
      vmLog.error({ action: w.action, file: w.file, err: message }, 'apply failed');
    }
  };
  // A few writes in flight at once: a cold sync of thousands of VMs is bound by round trips.
  const queue = [...input.writes];
  await Promise.all(
    Array.from({ length: Math.min(input.concurrency, queue.length) }, async () => {
      for (let w = queue.shift(); w !== undefined; w = queue.shift()) await applyOne(w);
    }),
  );
  for (const ref of input.deletes) {
    const key = vmKey(ref.namespace, ref.name);
    try {
      result.requests++;
      result.before.set(key, cache.vms.get(key));
      await cluster.deleteVirtualMachine(ref);
      result.actions.set(key, 'delete');
      result.written.push({ key, written: null });
      input.onDeleted(key);
      log.child({ vm: key }).info({ action: 'delete' }, 'pruned VirtualMachine');
    } catch (e) {
      result.errors.push({ file: key, line: null, message: `prune failed: ${e instanceof Error ? e.message : String(e)}` });
      if (errorKind(e) === ErrorKind.waiting) result.waiting.push(key);
    }
  }
  return result;
}
