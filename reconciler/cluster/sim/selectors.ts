/**
 * Label and field selectors as the Kubernetes API accepts them in `labelSelector` and
 * `fieldSelector`, compiled to predicates over stored objects.
 */
import type { Obj } from '../../rollout/index.ts';
import { labelsOf, metaOf } from '../object.ts';

/** Whether a stored object matches. */
export type Selector = (o: Readonly<Obj>) => boolean;

/** A selector that does not parse; the API answers 400 BadRequest with this message. */
export class SelectorError extends Error {
  override readonly name = 'SelectorError';
  readonly code = 'BadRequest';
}

const LABEL_KEY = /^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*\/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$/;
const LABEL_VALUE = /^([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?$/;

/** Splits on commas outside parentheses: `a in (x,y),b` is two requirements. */
function splitRequirements(text: string): string[] {
  const out: string[] = [];
  let depth = 0;
  let start = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (c === '(') depth++;
    else if (c === ')') depth--;
    else if (c === ',' && depth === 0) {
      out.push(text.slice(start, i));
      start = i + 1;
    }
  }
  out.push(text.slice(start));
  return out.map((s) => s.trim());
}

function checkKey(key: string, requirement: string): void {
  if (!LABEL_KEY.test(key) || key.length > 317) throw new SelectorError(`unable to parse requirement: invalid label key "${key}" in "${requirement}"`);
}

function checkValue(value: string, requirement: string): void {
  if (!LABEL_VALUE.test(value) || value.length > 63) throw new SelectorError(`unable to parse requirement: invalid label value "${value}" in "${requirement}"`);
}

function requirement(text: string): Selector {
  if (text === '') throw new SelectorError('found \'\', expected: !, identifier, or \'end of string\'');
  const set = /^(\S+)\s+(in|notin)\s*\(([^)]*)\)$/.exec(text);
  if (set !== null) {
    const [, key = '', op, list = ''] = set;
    checkKey(key, text);
    const values = new Set(list.split(',').map((v) => v.trim()));
    for (const v of values) checkValue(v, text);
    return op === 'in'
      ? (o) => {
          const v = labelsOf(o)[key];
          return typeof v === 'string' && values.has(v);
        }
      : (o) => {
          const v = labelsOf(o)[key];
          return typeof v !== 'string' || !values.has(v);
        };
  }
  if (text.startsWith('!')) {
    const key = text.slice(1).trim();
    checkKey(key, text);
    return (o) => !(key in labelsOf(o));
  }
  const cmp = /^([^=!<>\s]+)\s*(==|=|!=|<|>)\s*(.*)$/.exec(text);
  if (cmp !== null) {
    const [, key = '', op, value = ''] = cmp;
    checkKey(key, text);
    if (op === '<' || op === '>') {
      if (!/^-?\d+$/.test(value)) throw new SelectorError(`unable to parse requirement: for 'gt', 'lt' operators, the value must be an integer in "${text}"`);
      const bound = Number(value);
      return (o) => {
        const v = labelsOf(o)[key];
        if (typeof v !== 'string' || !/^-?\d+$/.test(v)) return false;
        return op === '<' ? Number(v) < bound : Number(v) > bound;
      };
    }
    checkValue(value, text);
    return op === '!=' ? (o) => labelsOf(o)[key] !== value : (o) => labelsOf(o)[key] === value;
  }
  checkKey(text, text);
  return (o) => text in labelsOf(o);
}

function all(parts: Selector[]): Selector {
  if (parts.length === 0) return () => true;
  if (parts.length === 1) return parts[0] as Selector;
  return (o) => parts.every((p) => p(o));
}

/** Compiles a `labelSelector`: `=`, `==`, `!=`, `in (…)`, `notin (…)`, `key`, `!key`, `>`, `<`; every requirement must hold. */
export function parseLabelSelector(text: string): Selector {
  if (text.trim() === '') return () => true;
  return all(splitRequirements(text).map(requirement));
}

/** The fields every resource can be selected by. */
export const SELECTABLE_FIELDS = ['metadata.name', 'metadata.namespace'] as const;

/** Compiles a `fieldSelector` over `metadata.name` and `metadata.namespace` (`=`, `==`, `!=`). */
export function parseFieldSelector(text: string): Selector {
  if (text.trim() === '') return () => true;
  return all(
    splitRequirements(text).map((part) => {
      const match = /^([^=!\s]+)\s*(==|=|!=)\s*(.*)$/.exec(part);
      if (match === null) throw new SelectorError(`invalid selector: '${part}'; can't understand '${part}'`);
      const [, field = '', op, value = ''] = match;
      if (!(SELECTABLE_FIELDS as readonly string[]).includes(field)) {
        throw new SelectorError(`field label not supported: ${field}`);
      }
      const key = field.slice('metadata.'.length);
      const get = (o: Readonly<Obj>): unknown => metaOf(o)[key] ?? '';
      return op === '!=' ? (o: Readonly<Obj>) => get(o) !== value : (o: Readonly<Obj>) => get(o) === value;
    }),
  );
}
