/**
 * What the informers keep of each live object (client-go's transform functions are the model):
 * everything vmroll reads, less what nothing reads, with the bulk that is the same on thousands of
 * VMs held once. At 10,000 VMs the stores are the largest part of the live heap.
 *
 * - `metadata.managedFields`: read on VirtualMachines only (cluster/ssa.ts: the "in sync" decision
 *   and `projectApply`). There vmroll's own entries stay whole; other managers' entries keep
 *   their fields outside `status` (projectApply asks whether another manager holds a field vmroll
 *   stops applying; status is never applied); `time` goes. The resulting list is interned: VMs
 *   applied from manifests of one shape share one frozen copy. Other kinds drop managedFields.
 * - `kubectl.kubernetes.io/last-applied-configuration`: kubectl's copy of its last apply, read by
 *   nothing in vmroll; dropped unless vmroll's own apply owns it (then it is part of what vmroll
 *   compares).
 * - ControllerRevisions: only `revision-start-vm-<uid>-<generation>` ones are read (the start
 *   baselines), and of them only the name and `data`; any other revision (a StatefulSet's, an
 *   instancetype's) is not kept at all.
 */
import { type Obj, isObj } from './object.ts';
import { parseStartRevisionName } from '../rollout/index.ts';
import { FIELD_MANAGER } from './ssa.ts';

/** kubectl's client-side apply record (a full copy of the object as JSON). */
export const LAST_APPLIED = 'kubectl.kubernetes.io/last-applied-configuration';

/** Interned managedFields lists, by their JSON. Bounded: a fleet has few manifest shapes; past the bound nothing more is interned. */
const interned = new Map<string, unknown[]>();
const INTERN_LIMIT = 10_000;

function deepFreeze<T>(v: T): T {
  if (typeof v === 'object' && v !== null && !Object.isFrozen(v)) {
    for (const child of Object.values(v)) deepFreeze(child);
    Object.freeze(v);
  }
  return v;
}

/** Another manager's entry as projectApply reads it: its fields outside status; null when nothing is left. */
function othersEntry(entry: Obj): Obj | null {
  const fields = entry['fieldsV1'];
  if (!isObj(fields)) return null;
  const kept: Obj = {};
  for (const [k, v] of Object.entries(fields)) if (k !== 'f:status') kept[k] = v;
  if (Object.keys(kept).length === 0) return null;
  return { ...entryHead(entry), fieldsV1: kept };
}

/** manager, operation, subresource, apiVersion and fieldsType of an entry (not `time`, which makes every entry unique). */
function entryHead(entry: Obj): Obj {
  const out: Obj = {};
  for (const k of ['manager', 'operation', 'apiVersion', 'fieldsType', 'subresource']) if (entry[k] !== undefined) out[k] = entry[k];
  return out;
}

/** A VM's managedFields as ssa.ts reads them, interned. */
function trimManagedFields(list: unknown[]): { list: unknown[]; ownsLastApplied: boolean } {
  const out: Obj[] = [];
  let ownsLastApplied = false;
  for (const entry of list) {
    if (!isObj(entry)) continue;
    if (entry['manager'] === FIELD_MANAGER) {
      out.push({ ...entryHead(entry), fieldsV1: entry['fieldsV1'] });
      const fields = entry['fieldsV1'];
      const meta = isObj(fields) ? fields['f:metadata'] : undefined;
      const annotations = isObj(meta) ? meta['f:annotations'] : undefined;
      if (isObj(annotations) && `f:${LAST_APPLIED}` in annotations) ownsLastApplied = true;
    } else {
      const kept = othersEntry(entry);
      if (kept !== null) out.push(kept);
    }
  }
  const key = JSON.stringify(out);
  const have = interned.get(key);
  if (have !== undefined) return { list: have, ownsLastApplied };
  if (interned.size < INTERN_LIMIT) interned.set(key, deepFreeze(out));
  return { list: out, ownsLastApplied };
}

/** metadata without managedFields (all kinds but VMs) and without kubectl's last-applied copy unless `keepLastApplied`. */
function trimMetadata(meta: Obj, managedFields: unknown[] | undefined, keepLastApplied: boolean): Obj {
  const out: Obj = {};
  for (const [k, v] of Object.entries(meta)) {
    if (k === 'managedFields') {
      if (managedFields !== undefined) out[k] = managedFields;
    } else if (k === 'annotations' && isObj(v) && !keepLastApplied && LAST_APPLIED in v) {
      const annotations: Obj = {};
      for (const [ak, av] of Object.entries(v)) if (ak !== LAST_APPLIED) annotations[ak] = av;
      out[k] = annotations;
    } else {
      out[k] = v;
    }
  }
  return out;
}

/**
 * The object as the informer of `kind` keeps it, with `apiVersion` and `kind` set (lists leave
 * them out of their items); null when vmroll reads nothing of it (a revision other than a start
 * baseline). Returns a new top-level object and metadata; the rest is shared with `o`.
 */
export function trimLive(kind: string, apiVersion: string, o: Obj): Obj | null {
  const meta = isObj(o['metadata']) ? o['metadata'] : {};
  if (kind === 'ControllerRevision') {
    if (parseStartRevisionName(String(meta['name'] ?? '')) === null) return null;
    const keptMeta: Obj = {};
    for (const k of ['name', 'namespace', 'uid', 'resourceVersion']) if (meta[k] !== undefined) keptMeta[k] = meta[k];
    return { apiVersion, kind, metadata: keptMeta, data: o['data'] };
  }
  let managedFields: unknown[] | undefined;
  let keepLastApplied = false;
  if (kind === 'VirtualMachine' && Array.isArray(meta['managedFields'])) {
    const t = trimManagedFields(meta['managedFields']);
    managedFields = t.list;
    keepLastApplied = t.ownsLastApplied;
  }
  return { ...o, apiVersion, kind, metadata: trimMetadata(meta, managedFields, keepLastApplied) };
}
