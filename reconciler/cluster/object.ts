/**
 * Reading Kubernetes objects held as untyped JSON: their metadata, spec, status, labels and
 * annotations. A missing or malformed part reads as empty, never as a throw. `isObj` and `Obj`
 * come from rollout/json.ts, which the engine needs itself and may not import from here.
 */
import { type Obj, isObj } from '../rollout/json.ts';

export { type Obj, isObj };

/** The object's `metadata` (the object itself, so writes land in it), or a fresh empty one. */
export function metaOf(o: Readonly<Obj>): Obj {
  const v = o['metadata'];
  return isObj(v) ? v : {};
}

/** The object's `spec`, or a fresh empty one. */
export function specOf(o: Readonly<Obj>): Obj {
  const v = o['spec'];
  return isObj(v) ? v : {};
}

/** The object's `status`, or a fresh empty one. */
export function statusOf(o: Readonly<Obj>): Obj {
  const v = o['status'];
  return isObj(v) ? v : {};
}

/** `metadata.labels`, or a fresh empty object. */
export function labelsOf(o: Readonly<Obj>): Obj {
  const v = metaOf(o)['labels'];
  return isObj(v) ? v : {};
}

/** `metadata.annotations`, or a fresh empty object. */
export function annotationsOf(o: Readonly<Obj>): Obj {
  const v = metaOf(o)['annotations'];
  return isObj(v) ? v : {};
}

/** One annotation's value; null when it is absent, empty or not a string. */
export function annotation(o: Readonly<Obj>, key: string): string | null {
  const v = annotationsOf(o)[key];
  return typeof v === 'string' && v !== '' ? v : null;
}

/** `status.conditions` as objects (entries that are not objects are skipped); empty when absent. */
export function conditionsOf(o: Readonly<Obj> | null | undefined): Obj[] {
  if (o === null || o === undefined) return [];
  const v = statusOf(o)['conditions'];
  return Array.isArray(v) ? v.filter(isObj) : [];
}

/** `namespace/name` of an object (empty parts for a cluster-scoped or unnamed one). */
export function objectKey(o: Readonly<Obj>): string {
  const m = metaOf(o);
  return `${String(m['namespace'] ?? '')}/${String(m['name'] ?? '')}`;
}
