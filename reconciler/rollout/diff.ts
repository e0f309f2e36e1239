/**
 * Structural diff of two JSON values into leaf-level changes. Lists whose elements all carry
 * a unique `name` (volumes, disks, interfaces, networks, …) are matched by name, so an
 * element's own fields are reported and a pure reordering is one change on the list itself.
 */
import { isObj } from './json.ts';
import type { Segment } from './paths.ts';
import { isEmpty, isQuantityField, semanticEqual } from './semantic.ts';

/** One difference between two JSON documents. */
export interface RawChange {
  /** Where, as segments. */
  segments: Segment[];
  /** The old value (undefined when added). */
  from: unknown;
  /** The new value (undefined when removed). */
  to: unknown;
  /** Set when only the order of a named list changed. */
  reorder?: true;
}

function namedKeys(list: unknown[]): string[] | null {
  const names: string[] = [];
  for (const item of list) {
    if (!isObj(item) || typeof item['name'] !== 'string') return null;
    names.push(item['name']);
  }
  return new Set(names).size === names.length ? names : null;
}

/** Lists every difference between `a` and `b`, rooted at `prefix`. */
export function diffValues(a: unknown, b: unknown, prefix: Segment[] = []): RawChange[] {
  const out: RawChange[] = [];
  walk(a, b, prefix, out);
  return out;
}

function lastKey(segments: Segment[], back: number): string | undefined {
  const seg = segments[segments.length - 1 - back];
  return typeof seg === 'string' ? seg : undefined;
}

function walk(a: unknown, b: unknown, at: Segment[], out: RawChange[]): void {
  if (semanticEqual(a, b, lastKey(at, 0), lastKey(at, 1))) return;
  const key = lastKey(at, 0) ?? '';
  if (isQuantityField(key, lastKey(at, 1)) || isEmpty(a, key) || isEmpty(b, key) || a === undefined || b === undefined) {
    out.push({ segments: at, from: a, to: b });
    return;
  }
  if (isObj(a) && isObj(b)) {
    const keys = [...new Set([...Object.keys(a), ...Object.keys(b)])].sort();
    for (const k of keys) walk(a[k], b[k], [...at, k], out);
    return;
  }
  if (Array.isArray(a) && Array.isArray(b)) {
    const na = namedKeys(a);
    const nb = namedKeys(b);
    if (na && nb) {
      diffNamedLists(a, b, na, nb, at, out);
      return;
    }
  }
  out.push({ segments: at, from: a, to: b });
}

function diffNamedLists(a: unknown[], b: unknown[], na: string[], nb: string[], at: Segment[], out: RawChange[]): void {
  const inB = new Set(nb);
  const inA = new Set(na);
  na.forEach((name, i) => {
    const seg = [...at, { name }];
    if (!inB.has(name)) out.push({ segments: seg, from: a[i], to: undefined });
    else walk(a[i], b[nb.indexOf(name)], seg, out);
  });
  nb.forEach((name, i) => {
    if (!inA.has(name)) out.push({ segments: [...at, { name }], from: undefined, to: b[i] });
  });
  const commonA = na.filter((n) => inB.has(n));
  const commonB = nb.filter((n) => inA.has(n));
  if (commonA.join('\u0000') !== commonB.join('\u0000')) {
    out.push({ segments: at, from: commonA, to: commonB, reorder: true });
  }
}
