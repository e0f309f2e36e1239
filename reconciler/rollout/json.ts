/** Small helpers for reading and copying untyped Kubernetes JSON without `any`. */

/** A JSON object. */
export type Obj = { [key: string]: unknown };

/** True for a plain JSON object (not an array, not null). */
export function isObj(v: unknown): v is Obj {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** Reads a nested value by keys; undefined when any step is missing. */
export function get(root: unknown, ...keys: string[]): unknown {
  let cur: unknown = root;
  for (const k of keys) {
    if (!isObj(cur)) return undefined;
    cur = cur[k];
  }
  return cur;
}

/** Reads a nested object; undefined when missing or not an object. */
export function getObj(root: unknown, ...keys: string[]): Obj | undefined {
  const v = get(root, ...keys);
  return isObj(v) ? v : undefined;
}

/** Reads a nested array of objects; empty when missing. */
export function getList(root: unknown, ...keys: string[]): Obj[] {
  const v = get(root, ...keys);
  return Array.isArray(v) ? v.filter(isObj) : [];
}

/** Reads a nested string; undefined otherwise. */
export function getStr(root: unknown, ...keys: string[]): string | undefined {
  const v = get(root, ...keys);
  return typeof v === 'string' ? v : undefined;
}

/** Reads a nested number; undefined otherwise. */
export function getNum(root: unknown, ...keys: string[]): number | undefined {
  const v = get(root, ...keys);
  return typeof v === 'number' ? v : undefined;
}

/** Deep copy of a JSON value. */
export function clone<T>(v: T): T {
  return v === undefined ? v : (JSON.parse(JSON.stringify(v)) as T);
}

/** Returns the object at `keys` under root, creating empty objects on the way. */
export function ensureObj(root: Obj, ...keys: string[]): Obj {
  let cur = root;
  for (const k of keys) {
    const next = cur[k];
    if (isObj(next)) {
      cur = next;
    } else {
      const created: Obj = {};
      cur[k] = created;
      cur = created;
    }
  }
  return cur;
}

/** Sets (or, with undefined, deletes) a nested value, creating parents. */
export function setPath(root: Obj, keys: string[], value: unknown): void {
  const parentKeys = keys.slice(0, -1);
  const last = keys[keys.length - 1];
  if (last === undefined) return;
  const parent = ensureObj(root, ...parentKeys);
  if (value === undefined) delete parent[last];
  else parent[last] = value;
}

/** Indexes a list of objects by their `name`. */
export function byName(list: Obj[]): Map<string, Obj> {
  const m = new Map<string, Obj>();
  for (const item of list) {
    const name = item['name'];
    if (typeof name === 'string') m.set(name, item);
  }
  return m;
}
