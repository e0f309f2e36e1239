/**
 * Server-side apply field sets, as the product reads them: which fields a field manager owns on
 * a live object (its `metadata.managedFields` FieldsV1 set of the `Apply` operation) and which
 * fields an applied configuration declares. With both, a process that never applied the object
 * itself can tell whether applying the desired object again would change anything, including
 * removing a field that Git no longer sets; and what applying it would leave ({@link projectApply}),
 * which `vmroll plan` measures its changes against.
 *
 * Lists are one leaf: a custom resource's lists are atomic unless its schema says otherwise, and
 * where a server tracks list items one by one (`k:`, `v:`, `i:` keys) the whole list is still
 * compared by value, so the decision errs towards applying.
 */
import { type Obj, isObj } from './object.ts';

/** The field manager vmroll applies with. */
export const FIELD_MANAGER = 'vmroll';

/** A set of field paths; a path is the JSON of its keys, so sets are plain string sets. */
export type FieldSet = Set<string>;

/** Why a live object is not what applying the desired object would leave. */
export const FieldDrift = {
  /** The manager owns a field the desired object no longer sets: applying removes it. */
  removed: 'removed',
  /** The desired object sets a field the manager does not own (yet, or any more). */
  notOwned: 'notOwned',
  /** The manager owns the field, but the live value differs from the desired one. */
  differs: 'differs',
} as const;
/** One of {@link FieldDrift}. */
export type FieldDrift = (typeof FieldDrift)[keyof typeof FieldDrift];

/** The outcome of {@link compareOwnedFields}. */
export interface OwnedFieldsComparison {
  /** True when applying the desired object would change neither the fields nor their owner. */
  inSync: boolean;
  /** What differs, as dotted paths (`metadata.labels.tier`), each with its kind; empty when in sync. */
  drift: Array<{ path: string; drift: FieldDrift }>;
}

/** metadata fields the API server owns; no managedFields entry names them. */
export const SYSTEM_METADATA: ReadonlySet<string> = new Set([
  'name',
  'namespace',
  'uid',
  'resourceVersion',
  'generation',
  'creationTimestamp',
  'managedFields',
  'selfLink',
  'deletionTimestamp',
  'deletionGracePeriodSeconds',
]);

const keyOf = (path: readonly string[]): string => JSON.stringify(path);
const pathOf = (key: string): string[] => JSON.parse(key) as string[];

/** `metadata.labels["app.kubernetes.io/name"]`: readable in logs, unambiguous for keys with dots. */
export function displayPath(key: string): string {
  return pathOf(key)
    .map((seg, i) => (/^[A-Za-z_$][\w$-]*$/.test(seg) ? `${i === 0 ? '' : '.'}${seg}` : `[${JSON.stringify(seg)}]`))
    .join('');
}

/**
 * The fields `manager`'s `Apply` entry owns on `live`; null when the object carries no
 * managedFields at all (a store that does not track them, such as the embedded simulator), so
 * the caller can fall back to another rule. An object with managedFields but no entry of the
 * manager gives an empty set.
 */
export function ownedFields(live: Obj, manager: string): FieldSet | null {
  const list = isObj(live['metadata']) ? live['metadata']['managedFields'] : undefined;
  if (!Array.isArray(list)) return null;
  const out: FieldSet = new Set();
  for (const entry of list) {
    if (!isObj(entry) || entry['manager'] !== manager || entry['operation'] !== 'Apply') continue;
    // Status and other subresources are not what vmroll applies.
    if (typeof entry['subresource'] === 'string' && entry['subresource'] !== '') continue;
    decodeInto(entry['fieldsV1'], out);
  }
  return out;
}

/** Reads a FieldsV1 object into leaf paths: `f:` keys descend, a node with list-item keys is its list, `.` alone is an empty map. */
function decodeInto(fieldsV1: unknown, out: FieldSet): void {
  const walk = (node: Obj, path: string[]): void => {
    const keys = Object.keys(node);
    const fields = keys.filter((k) => k.startsWith('f:'));
    const items = keys.some((k) => k.startsWith('k:') || k.startsWith('v:') || k.startsWith('i:'));
    if (path.length > 0 && (items || fields.length === 0)) {
      out.add(keyOf(path));
      return;
    }
    for (const k of fields) {
      const child = node[k];
      walk(isObj(child) ? child : {}, [...path, k.slice(2)]);
    }
  };
  if (isObj(fieldsV1)) walk(fieldsV1, []);
}

/** Nulls in an applied configuration mean "no opinion" to server-side apply; a map emptied only by dropping them goes too. */
function withoutNulls(v: Obj): Obj {
  const out: Obj = {};
  for (const [key, value] of Object.entries(v)) {
    if (value === null) continue;
    if (isObj(value) && Object.keys(value).length > 0) {
      const inner = withoutNulls(value);
      if (Object.keys(inner).length > 0) out[key] = inner;
    } else {
      out[key] = value;
    }
  }
  return out;
}

/** The part of an applied object that server-side apply records as owned: no apiVersion, kind, status or server metadata. */
function appliedView(obj: Obj): Obj {
  const view: Obj = {};
  for (const [key, value] of Object.entries(obj)) {
    if (key === 'apiVersion' || key === 'kind' || key === 'status') continue;
    if (key === 'metadata' && isObj(value)) {
      const meta: Obj = {};
      for (const [mk, mv] of Object.entries(value)) if (!SYSTEM_METADATA.has(mk)) meta[mk] = mv;
      view['metadata'] = meta;
    } else {
      view[key] = value;
    }
  }
  return withoutNulls(view);
}

/** The leaf fields an applied configuration declares (scalars, lists, empty maps), as server-side apply would record them. */
export function declaredFields(applied: Obj): FieldSet {
  const out: FieldSet = new Set();
  const walk = (value: Obj, path: string[]): void => {
    for (const [key, child] of Object.entries(value)) {
      const p = [...path, key];
      if (isObj(child) && Object.keys(child).length > 0) walk(child, p);
      else if (!(p.length === 1 && p[0] === 'metadata')) out.add(keyOf(p));
    }
  };
  walk(appliedView(applied), []);
  return out;
}

function valueAt(root: unknown, path: readonly string[]): unknown {
  let cur = root;
  for (const seg of path) cur = isObj(cur) && Object.prototype.hasOwnProperty.call(cur, seg) ? cur[seg] : undefined;
  return cur;
}

/** Structural equality of JSON values; key order does not matter, list order does. */
function jsonEqual(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  if (Array.isArray(a)) return Array.isArray(b) && a.length === b.length && a.every((v, i) => jsonEqual(v, b[i]));
  if (isObj(a)) {
    if (!isObj(b)) return false;
    const ka = Object.keys(a);
    return ka.length === Object.keys(b).length && ka.every((k) => Object.prototype.hasOwnProperty.call(b, k) && jsonEqual(a[k], b[k]));
  }
  return false;
}

/**
 * Compares what `manager` owns on `live` with what `desired` declares: in sync when it owns
 * exactly the declared fields and every declared value is the live one. `ignoreValue` names
 * fields whose value alone is no reason to apply (vmroll's source-commit annotation). Null when
 * `live` carries no managedFields.
 */
export function compareOwnedFields(desired: Obj, live: Obj, manager: string, ignoreValue: (path: readonly string[]) => boolean = () => false): OwnedFieldsComparison | null {
  const owned = ownedFields(live, manager);
  if (owned === null) return null;
  const declared = declaredFields(desired);
  const view = appliedView(desired);
  const drift: OwnedFieldsComparison['drift'] = [];
  for (const key of owned) if (!declared.has(key)) drift.push({ path: displayPath(key), drift: FieldDrift.removed });
  for (const key of declared) {
    const path = pathOf(key);
    if (!owned.has(key)) drift.push({ path: displayPath(key), drift: FieldDrift.notOwned });
    else if (!ignoreValue(path) && !jsonEqual(valueAt(view, path), valueAt(live, path))) drift.push({ path: displayPath(key), drift: FieldDrift.differs });
  }
  drift.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
  return { inSync: drift.length === 0, drift };
}

function prefixesOf(set: Iterable<string>): Set<string> {
  const out = new Set<string>();
  for (const key of set) {
    const path = pathOf(key);
    for (let n = 1; n <= path.length; n++) out.add(keyOf(path.slice(0, n)));
  }
  return out;
}

/** Applied maps merge key by key into the live ones; anything else (lists included) replaces. */
function mergeApplied(target: Obj, applied: Obj): void {
  for (const [key, value] of Object.entries(applied)) {
    const existing = target[key];
    if (isObj(value) && isObj(existing)) mergeApplied(existing, value);
    else target[key] = structuredClone(value);
  }
}

function deleteAt(root: Obj, path: readonly string[]): void {
  const parent = valueAt(root, path.slice(0, -1));
  const last = path[path.length - 1];
  if (isObj(parent) && last !== undefined) delete parent[last];
}

/**
 * The object `live` becomes when `manager` applies `desired` with force, as server-side apply
 * computes it (lists atomic): declared fields set, maps merged, and fields the manager applied
 * before and no longer declares removed unless another manager also holds them. Null when `live`
 * carries no managedFields (then nothing says what the manager applied before).
 */
export function projectApply(live: Obj, desired: Obj, manager: string): Obj | null {
  const previous = ownedFields(live, manager);
  if (previous === null) return null;
  const declared = declaredFields(desired);
  const others: FieldSet = new Set();
  const list = (live['metadata'] as Obj)['managedFields'] as unknown[];
  for (const entry of list) {
    if (!isObj(entry)) continue;
    const mine = entry['manager'] === manager && entry['operation'] === 'Apply' && !(typeof entry['subresource'] === 'string' && entry['subresource'] !== '');
    if (!mine) decodeInto(entry['fieldsV1'], others);
  }
  const result = structuredClone(live);
  for (const key of ['apiVersion', 'kind'] as const) if (typeof desired[key] === 'string') result[key] = desired[key];
  mergeApplied(result, appliedView(desired));
  const declaredPrefixes = prefixesOf(declared);
  const heldByOthers = prefixesOf(others);
  const keep = new Set([...declared, ...others]);
  for (const key of previous) {
    if (declaredPrefixes.has(key) || heldByOthers.has(key)) continue;
    const path = pathOf(key);
    if (path[0] === 'status' || path.slice(1).some((_, i) => declared.has(keyOf(path.slice(0, i + 1))))) continue;
    deleteAt(result, path);
    // A map that only held the dropped field goes with it.
    for (let n = path.length - 1; n >= 1; n--) {
      const parent = path.slice(0, n);
      const value = valueAt(result, parent);
      if (!isObj(value) || Object.keys(value).length > 0 || (n === 1 && parent[0] === 'metadata') || keep.has(keyOf(parent))) break;
      deleteAt(result, parent);
    }
  }
  return result;
}
