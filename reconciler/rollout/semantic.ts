/**
 * Semantic comparison as KubeVirt does it (`equality.Semantic.DeepEqual`): quantities by
 * value, nil equal to empty lists and maps.
 */
import { isObj } from './json.ts';
import { parseQuantity } from './quantity.ts';

const QUANTITY_KEYS = new Set(['guest', 'maxGuest', 'capacity', 'guestAtBoot', 'guestCurrent', 'guestRequested']);
const QUANTITY_PARENTS = new Set(['requests', 'limits']);

/** True when the value under this key (inside this parent key) is a Kubernetes Quantity. */
export function isQuantityField(key: string | undefined, parentKey: string | undefined): boolean {
  return (key !== undefined && QUANTITY_KEYS.has(key)) || (parentKey !== undefined && QUANTITY_PARENTS.has(parentKey));
}

/**
 * Keys whose value is a Go map or a non-pointer struct in KubeVirt's types: for these `{}`
 * equals absent. Everything else that holds an object is a pointer to a struct (`bridge: {}`,
 * `masquerade: {}`, `cdrom: {}`), where `{}` is a value of its own.
 */
const EMPTY_OBJECT_IS_ABSENT = new Set([
  'labels',
  'annotations',
  'nodeSelector',
  'requests',
  'limits',
  'resources',
  'devices',
  'domain',
  'metadata',
]);

/** True for the values Go's semantic equality treats as empty: nil, empty slices, and `{}` for maps and value structs. */
export function isEmpty(v: unknown, key?: string): boolean {
  if (v === undefined || v === null) return true;
  if (Array.isArray(v)) return v.length === 0;
  if (isObj(v)) return Object.keys(v).length === 0 && (key === undefined || EMPTY_OBJECT_IS_ABSENT.has(key));
  return false;
}

/** Semantic deep equality of two JSON values. */
export function semanticEqual(a: unknown, b: unknown, key?: string, parentKey?: string): boolean {
  if (isEmpty(a, key ?? '') && isEmpty(b, key ?? '')) return true;
  if (a === undefined || b === undefined) return false;
  if (isQuantityField(key, parentKey)) {
    const qa = parseQuantity(a);
    const qb = parseQuantity(b);
    if (qa !== null && qb !== null) return qa === qb;
  }
  if (Array.isArray(a) && Array.isArray(b)) {
    if (a.length !== b.length) return false;
    return a.every((item, i) => semanticEqual(item, b[i], undefined, key));
  }
  if (isObj(a) && isObj(b)) {
    const keys = new Set([...Object.keys(a), ...Object.keys(b)]);
    for (const k of keys) {
      if (!semanticEqual(a[k], b[k], k, key)) return false;
    }
    return true;
  }
  return a === b;
}
