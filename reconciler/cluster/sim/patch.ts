/**
 * Patch and field-ownership arithmetic for the simulator's API server: JSON patch, JSON merge
 * patch, server-side apply and the managedFields bookkeeping of ordinary writes. Pure functions:
 * every result is a fresh deep copy that shares nothing with the inputs, so the server may
 * mutate it (resourceVersion, generation) without touching what it has stored.
 *
 * Lists are atomic throughout (a custom resource without x-kubernetes-list-type), so a list is
 * one owned leaf and fieldsV1 only ever uses `f:` keys and `.`.
 */
import { SYSTEM_METADATA } from '../ssa.ts';
import type { Obj } from '../../rollout/index.ts';
import { clone, isObj } from '../../rollout/json.ts';

/** Why a patch was refused; the server maps these to the Status reasons of the same name. */
export const PatchErrorReason = {
  /** The body is not a patch at all (400). */
  BadRequest: 'BadRequest',
  /** The patch is well-formed but cannot be applied to this object (422). */
  Invalid: 'Invalid',
} as const;
/** One of {@link PatchErrorReason}. */
export type PatchErrorReason = (typeof PatchErrorReason)[keyof typeof PatchErrorReason];

/** A patch that cannot be applied; the server turns it into a 422 Invalid (or 400 for a malformed body) Status. */
export class PatchError extends Error {
  constructor(
    readonly reason: PatchErrorReason,
    message: string,
  ) {
    super(message);
    this.name = 'PatchError';
  }
}

/** The write kinds Kubernetes records in managedFields. */
export const ManagedFieldsOperation = {
  /** A server-side apply: the entry is exactly the manager's declared intent. */
  Apply: 'Apply',
  /** Any other write (create, update, non-apply patch): the entry collects what the manager changed. */
  Update: 'Update',
} as const;
/** One of {@link ManagedFieldsOperation}. */
export type ManagedFieldsOperation = (typeof ManagedFieldsOperation)[keyof typeof ManagedFieldsOperation];

/** One metadata.managedFields entry, as Kubernetes writes it. */
export interface ManagedFieldsEntry {
  manager: string;
  operation: ManagedFieldsOperation;
  apiVersion: string;
  time: string;
  fieldsType: 'FieldsV1';
  fieldsV1: Obj;
  subresource?: string;
}

/** A field another manager owns that an apply would change without force. */
export interface ApplyConflict {
  manager: string;
  path: string;
}

// ---------------------------------------------------------------------------------------------
// Shared helpers

/** Assigns an own property even for the key `__proto__`, which plain assignment would turn into a prototype change. */
function setOwn(o: Obj, key: string, value: unknown): void {
  if (key === '__proto__') Object.defineProperty(o, key, { value, enumerable: true, writable: true, configurable: true });
  else o[key] = value;
}

function hasOwn(o: Obj, key: string): boolean {
  return Object.prototype.hasOwnProperty.call(o, key);
}

/** Structural equality of JSON values; key order does not matter, list order does. */
function deepEqual(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  if (Array.isArray(a)) {
    if (!Array.isArray(b) || a.length !== b.length) return false;
    return a.every((v, i) => deepEqual(v, b[i]));
  }
  if (isObj(a)) {
    if (!isObj(b)) return false;
    const ka = Object.keys(a);
    if (ka.length !== Object.keys(b).length) return false;
    return ka.every((k) => hasOwn(b, k) && deepEqual(a[k], b[k]));
  }
  return false;
}

// ---------------------------------------------------------------------------------------------
// RFC 6902 JSON patch

const JsonPatchOp = { add: 'add', remove: 'remove', replace: 'replace', move: 'move', copy: 'copy', test: 'test' } as const;
type JsonPatchOp = (typeof JsonPatchOp)[keyof typeof JsonPatchOp];

interface ParsedOp {
  op: JsonPatchOp;
  path: string[];
  pointer: string;
  from: string[];
  value: unknown;
}

function parsePointer(pointer: string, where: string): string[] {
  if (pointer === '') return [];
  if (!pointer.startsWith('/')) throw new PatchError('BadRequest', `${where}: JSON pointer "${pointer}" must start with "/"`);
  return pointer
    .slice(1)
    .split('/')
    .map((token) => {
      if (/~(?![01])/.test(token)) throw new PatchError('BadRequest', `${where}: JSON pointer "${pointer}" has an invalid "~" escape`);
      // RFC 6901 order: ~1 first, so "~01" decodes to "~1" and not "/".
      return token.replace(/~1/g, '/').replace(/~0/g, '~');
    });
}

/** Validates the whole body before touching the document, so a malformed op late in the list is still a 400. */
function parseOps(ops: unknown): ParsedOp[] {
  if (!Array.isArray(ops)) throw new PatchError('BadRequest', 'a JSON patch must be an array of operations');
  return ops.map((raw, i): ParsedOp => {
    const where = `operation ${i}`;
    if (!isObj(raw)) throw new PatchError('BadRequest', `${where} is not an object`);
    const op = raw['op'];
    if (typeof op !== 'string' || !hasOwn(JsonPatchOp, op)) throw new PatchError('BadRequest', `${where}: unknown op ${JSON.stringify(op)}`);
    const kind = op as JsonPatchOp;
    const pointer = raw['path'];
    if (typeof pointer !== 'string') throw new PatchError('BadRequest', `${where}: "path" must be a string`);
    const parsed: ParsedOp = { op: kind, path: parsePointer(pointer, where), pointer, from: [], value: undefined };
    if (kind === 'add' || kind === 'replace' || kind === 'test') {
      if (!hasOwn(raw, 'value')) throw new PatchError('BadRequest', `${where}: "${kind}" needs a "value"`);
      parsed.value = raw['value'];
    }
    if (kind === 'move' || kind === 'copy') {
      const from = raw['from'];
      if (typeof from !== 'string') throw new PatchError('BadRequest', `${where}: "${kind}" needs a string "from"`);
      parsed.from = parsePointer(from, where);
    }
    return parsed;
  });
}

/** An array index token: "0" or digits without a leading zero. */
function arrayIndex(token: string, length: number, allowEnd: boolean, where: string): number {
  if (allowEnd && token === '-') return length;
  if (!/^(0|[1-9][0-9]*)$/.test(token)) throw new PatchError('Invalid', `${where}: "${token}" is not an array index`);
  const i = Number(token);
  if (i > length || (!allowEnd && i === length)) throw new PatchError('Invalid', `${where}: index ${i} is out of bounds`);
  return i;
}

function resolve(doc: unknown, path: string[], where: string): unknown {
  let cur = doc;
  for (const token of path) {
    if (Array.isArray(cur)) cur = cur[arrayIndex(token, cur.length, false, where)];
    else if (isObj(cur) && hasOwn(cur, token)) cur = cur[token];
    else throw new PatchError('Invalid', `${where}: path not found`);
  }
  return cur;
}

function parentOf(doc: unknown, path: string[], where: string): { parent: unknown; token: string } {
  const token = path[path.length - 1];
  if (token === undefined) throw new PatchError('Invalid', `${where}: the document root has no parent`);
  return { parent: resolve(doc, path.slice(0, -1), where), token };
}

/** Returns the new document (only different from `doc` when the root itself is replaced). */
function addAt(doc: unknown, path: string[], value: unknown, where: string): unknown {
  if (path.length === 0) return value;
  const { parent, token } = parentOf(doc, path, where);
  if (Array.isArray(parent)) parent.splice(arrayIndex(token, parent.length, true, where), 0, value);
  else if (isObj(parent)) setOwn(parent, token, value);
  else throw new PatchError('Invalid', `${where}: parent is not an object or array`);
  return doc;
}

function removeAt(doc: unknown, path: string[], where: string): void {
  const { parent, token } = parentOf(doc, path, where);
  if (Array.isArray(parent)) parent.splice(arrayIndex(token, parent.length, false, where), 1);
  else if (isObj(parent) && hasOwn(parent, token)) delete parent[token];
  else throw new PatchError('Invalid', `${where}: path not found`);
}

/** Replaces an existing member in place, keeping its position among its siblings. */
function replaceAt(doc: unknown, path: string[], value: unknown, where: string): unknown {
  if (path.length === 0) return value;
  const { parent, token } = parentOf(doc, path, where);
  if (Array.isArray(parent)) parent[arrayIndex(token, parent.length, false, where)] = value;
  else if (isObj(parent) && hasOwn(parent, token)) setOwn(parent, token, value);
  else throw new PatchError('Invalid', `${where}: path not found`);
  return doc;
}

/** RFC 6902 JSON patch (add, remove, replace, move, copy, test; JSON-pointer ~0 ~1 escapes; '-' array index). Returns a new object, input untouched. A failing `test` or a missing path → PatchError('Invalid'); a body that is not an array of ops → PatchError('BadRequest'). */
export function applyJsonPatch(target: Obj, ops: unknown): Obj {
  const parsed = parseOps(ops);
  let doc: unknown = clone(target);
  for (const [i, op] of parsed.entries()) {
    const where = `operation ${i} (${op.op} ${op.pointer})`;
    switch (op.op) {
      case 'add':
        doc = addAt(doc, op.path, clone(op.value), where);
        break;
      case 'remove':
        removeAt(doc, op.path, where);
        break;
      case 'replace':
        doc = replaceAt(doc, op.path, clone(op.value), where);
        break;
      case 'move': {
        const isSame = op.from.length === op.path.length && op.from.every((t, j) => t === op.path[j]);
        if (isSame) {
          resolve(doc, op.from, where);
          break;
        }
        if (op.from.length < op.path.length && op.from.every((t, j) => t === op.path[j])) {
          throw new PatchError('Invalid', `${where}: cannot move a value into one of its own children`);
        }
        const value = resolve(doc, op.from, where);
        removeAt(doc, op.from, where);
        doc = addAt(doc, op.path, value, where);
        break;
      }
      case 'copy':
        doc = addAt(doc, op.path, clone(resolve(doc, op.from, where)), where);
        break;
      case 'test':
        if (!deepEqual(resolve(doc, op.path, where), op.value)) throw new PatchError('Invalid', `${where}: test failed`);
        break;
    }
  }
  if (!isObj(doc)) throw new PatchError('Invalid', 'the patched document is not an object');
  return doc;
}

// ---------------------------------------------------------------------------------------------
// RFC 7386 JSON merge patch

/** Merges `patch` into `target` in place; `target` must be a private copy. */
function mergeInto(target: Obj, patch: Obj): void {
  for (const [key, value] of Object.entries(patch)) {
    if (value === null) {
      delete target[key];
    } else if (isObj(value)) {
      const existing = target[key];
      const child: Obj = isObj(existing) ? existing : {};
      mergeInto(child, value);
      setOwn(target, key, child);
    } else {
      setOwn(target, key, clone(value));
    }
  }
}

/** RFC 7386 JSON merge patch (null deletes, objects merge recursively, arrays and scalars replace). */
export function applyMergePatch(target: Obj, patch: unknown): Obj {
  // A non-object patch would replace the whole document with a non-object.
  if (!isObj(patch)) throw new PatchError('BadRequest', 'a merge patch must be a JSON object');
  const out = clone(target);
  mergeInto(out, patch);
  return out;
}

// ---------------------------------------------------------------------------------------------
// Field paths and field sets

/** A field path is encoded as the JSON of its keys, so sets of paths are plain string sets. */
type FieldSet = Set<string>;

const keyOf = (path: readonly string[]): string => JSON.stringify(path);
const pathOf = (key: string): string[] => JSON.parse(key) as string[];
const display = (key: string): string => `.${pathOf(key).join('.')}`;

/** Every proper and improper prefix of every path in `set`: "is r an ancestor of (or equal to) an owned path". */
function prefixesOf(sets: Iterable<FieldSet>): Set<string> {
  const out = new Set<string>();
  for (const set of sets) {
    for (const key of set) {
      const path = pathOf(key);
      for (let n = 1; n <= path.length; n++) out.add(keyOf(path.slice(0, n)));
    }
  }
  return out;
}

function hasAncestorIn(path: readonly string[], set: FieldSet): boolean {
  for (let n = 1; n < path.length; n++) if (set.has(keyOf(path.slice(0, n)))) return true;
  return false;
}

const isStatusWrite = (subresource: string | undefined): boolean => subresource === 'status';

/**
 * The part of an object a write through `subresource` may own: status for the status
 * subresource, everything but apiVersion, kind, status and server metadata otherwise.
 * Shares subtrees with `obj`; callers only read it.
 */
function scopedView(obj: Obj | undefined, subresource: string | undefined): Obj {
  const view: Obj = {};
  if (obj === undefined) return view;
  if (isStatusWrite(subresource)) {
    if (hasOwn(obj, 'status')) view['status'] = obj['status'];
    return view;
  }
  for (const [key, value] of Object.entries(obj)) {
    if (key === 'apiVersion' || key === 'kind' || key === 'status') continue;
    if (key === 'metadata' && isObj(value)) {
      const meta: Obj = {};
      for (const [mk, mv] of Object.entries(value)) if (!SYSTEM_METADATA.has(mk)) setOwn(meta, mk, mv);
      view['metadata'] = meta;
    } else {
      setOwn(view, key, value);
    }
  }
  return view;
}

/** metadata always exists (it carries the name), so it is never owned as a whole. */
const isMetadataRoot = (path: readonly string[]): boolean => path.length === 1 && path[0] === 'metadata';

/** Nulls in an applied configuration mean "no opinion"; a map left empty only by dropping them goes too. */
function stripNulls(v: Obj): Obj {
  const out: Obj = {};
  for (const [key, value] of Object.entries(v)) {
    if (value === null) continue;
    if (isObj(value) && Object.keys(value).length > 0) {
      const inner = stripNulls(value);
      if (Object.keys(inner).length > 0) setOwn(out, key, inner);
    } else {
      setOwn(out, key, value);
    }
  }
  return out;
}

/** The leaves of an applied configuration: scalars, lists and empty maps; non-empty maps are implied by their children. */
function leavesOf(value: Obj, prefix: string[], out: FieldSet): FieldSet {
  for (const [key, child] of Object.entries(value)) {
    const path = [...prefix, key];
    if (isObj(child) && Object.keys(child).length > 0) leavesOf(child, path, out);
    else if (!isMetadataRoot(path)) out.add(keyOf(path));
  }
  return out;
}

interface FieldDiff {
  added: FieldSet;
  modified: FieldSet;
  removed: FieldSet;
}

/** Records `path` and, for a map, everything under it (a map that appears is owned as a whole: "."). */
function markAll(value: unknown, path: string[], into: FieldSet): void {
  if (!isMetadataRoot(path)) into.add(keyOf(path));
  if (isObj(value)) for (const [key, child] of Object.entries(value)) markAll(child, [...path, key], into);
}

function markChildren(value: Obj, path: string[], into: FieldSet): void {
  for (const [key, child] of Object.entries(value)) markAll(child, [...path, key], into);
}

function compareAt(before: unknown, after: unknown, path: string[], d: FieldDiff): void {
  if (before === undefined && after === undefined) return;
  if (before === undefined) return markAll(after, path, d.added);
  if (after === undefined) return markAll(before, path, d.removed);
  if (isObj(before) && isObj(after)) {
    for (const key of new Set([...Object.keys(before), ...Object.keys(after)])) {
      compareAt(hasOwn(before, key) ? before[key] : undefined, hasOwn(after, key) ? after[key] : undefined, [...path, key], d);
    }
    return;
  }
  if (deepEqual(before, after)) return;
  d.modified.add(keyOf(path));
  if (isObj(before)) markChildren(before, path, d.removed);
  if (isObj(after)) markChildren(after, path, d.added);
}

function diffFields(before: Obj, after: Obj): FieldDiff {
  const d: FieldDiff = { added: new Set(), modified: new Set(), removed: new Set() };
  compareAt(before, after, [], d);
  return d;
}

// ---------------------------------------------------------------------------------------------
// fieldsV1 encoding

interface FieldNode {
  self: boolean;
  kids: Map<string, FieldNode>;
}

function encodeFields(set: FieldSet): Obj {
  const root: FieldNode = { self: false, kids: new Map() };
  for (const key of set) {
    let node = root;
    for (const seg of pathOf(key)) {
      let next = node.kids.get(seg);
      if (!next) {
        next = { self: false, kids: new Map() };
        node.kids.set(seg, next);
      }
      node = next;
    }
    node.self = true;
  }
  const emit = (node: FieldNode): Obj => {
    const out: Obj = {};
    if (node.self && node.kids.size > 0) out['.'] = {};
    for (const seg of [...node.kids.keys()].sort()) out[`f:${seg}`] = emit(node.kids.get(seg) as FieldNode);
    return out;
  };
  return emit(root);
}

function decodeFields(fieldsV1: unknown): FieldSet {
  const out: FieldSet = new Set();
  const walk = (node: Obj, path: string[]): void => {
    const keys = Object.keys(node);
    if (keys.length === 0 && path.length > 0) out.add(keyOf(path));
    for (const key of keys) {
      const child = node[key];
      if (key.startsWith('f:') && isObj(child)) walk(child, [...path, key.slice(2)]);
      // "." is the map itself; k:/v:/i: list items only exist in granular lists, which are one atomic leaf here.
      else if (path.length > 0) out.add(keyOf(path));
    }
  };
  if (isObj(fieldsV1)) walk(fieldsV1, []);
  return out;
}

// ---------------------------------------------------------------------------------------------
// managedFields entries

interface Owner {
  manager: string;
  operation: ManagedFieldsOperation;
  subresource: string | undefined;
  apiVersion: string;
  time: string;
  fields: FieldSet;
}

const ownerKey = (manager: string, operation: string, subresource: string | undefined): string =>
  JSON.stringify([manager, operation, subresource ?? '']);

/** Reads managedFields leniently: entries without a manager, a known operation or fieldsV1 are dropped, duplicates are merged. */
function readOwners(list: unknown): Map<string, Owner> {
  const owners = new Map<string, Owner>();
  if (!Array.isArray(list)) return owners;
  for (const raw of list) {
    if (!isObj(raw)) continue;
    const { manager, operation, subresource, apiVersion, time } = raw;
    if (typeof manager !== 'string' || (operation !== 'Apply' && operation !== 'Update')) continue;
    const sub = typeof subresource === 'string' && subresource !== '' ? subresource : undefined;
    const key = ownerKey(manager, operation, sub);
    const fields = decodeFields(raw['fieldsV1']);
    const existing = owners.get(key);
    if (existing) {
      for (const f of fields) existing.fields.add(f);
      continue;
    }
    owners.set(key, {
      manager,
      operation,
      subresource: sub,
      apiVersion: typeof apiVersion === 'string' ? apiVersion : '',
      time: typeof time === 'string' ? time : '',
      fields,
    });
  }
  return owners;
}

function toEntry(o: Owner): ManagedFieldsEntry {
  const entry: ManagedFieldsEntry = {
    manager: o.manager,
    operation: o.operation,
    apiVersion: o.apiVersion,
    time: o.time,
    fieldsType: 'FieldsV1',
    fieldsV1: encodeFields(o.fields),
  };
  if (o.subresource !== undefined) entry.subresource = o.subresource;
  return entry;
}

/** Code-unit order, independent of the process locale. */
const byString = (a: string, b: string): number => (a < b ? -1 : a > b ? 1 : 0);

const OPERATION_ORDER: Record<ManagedFieldsOperation, number> = { Apply: 0, Update: 1 };

function compareOwners(a: Owner, b: Owner): number {
  return (
    OPERATION_ORDER[a.operation] - OPERATION_ORDER[b.operation] ||
    byString(a.manager, b.manager) ||
    byString(a.subresource ?? '', b.subresource ?? '')
  );
}

/** Everything but managedFields and the counters the server bumps on every write. */
function content(obj: Obj): Obj {
  const out: Obj = { ...obj };
  if (isObj(obj['metadata'])) {
    const meta: Obj = { ...obj['metadata'] };
    delete meta['managedFields'];
    delete meta['resourceVersion'];
    delete meta['generation'];
    out['metadata'] = meta;
  }
  return out;
}

/**
 * Writes `owners` into `result` (a private copy). Like Kubernetes, a write that changes nothing
 * keeps the old timestamps, so a no-op apply stays a no-op.
 */
function writeOwners(result: Obj, owners: Map<string, Owner>, previous: Obj | undefined): Obj {
  const live = [...owners.values()].filter((o) => o.fields.size > 0).sort(compareOwners);
  const entries = live.map(toEntry);
  if (previous !== undefined && deepEqual(content(previous), content(result))) {
    const before = readOwners(isObj(previous['metadata']) ? previous['metadata']['managedFields'] : undefined);
    for (const [i, o] of live.entries()) {
      const old = before.get(ownerKey(o.manager, o.operation, o.subresource));
      const entry = entries[i];
      if (old && entry && old.apiVersion === o.apiVersion && old.fields.size === o.fields.size && [...o.fields].every((f) => old.fields.has(f))) {
        entry.time = old.time;
      }
    }
  }
  const meta = isObj(result['metadata']) ? result['metadata'] : {};
  result['metadata'] = meta;
  if (entries.length > 0) meta['managedFields'] = entries;
  else delete meta['managedFields'];
  return result;
}

function apiVersionOf(obj: Obj | undefined): string | undefined {
  const v = obj?.['apiVersion'];
  return typeof v === 'string' ? v : undefined;
}

function touch(owners: Map<string, Owner>, manager: string, operation: ManagedFieldsOperation, subresource: string | undefined): Owner {
  const key = ownerKey(manager, operation, subresource);
  let owner = owners.get(key);
  if (!owner) {
    owner = { manager, operation, subresource, apiVersion: '', time: '', fields: new Set() };
    owners.set(key, owner);
  }
  return owner;
}

// ---------------------------------------------------------------------------------------------
// Server-side apply

function deletePath(root: Obj, path: readonly string[]): void {
  let cur: unknown = root;
  for (const seg of path.slice(0, -1)) cur = isObj(cur) && hasOwn(cur, seg) ? cur[seg] : undefined;
  const last = path[path.length - 1];
  if (isObj(cur) && last !== undefined) delete cur[last];
}

function valueAt(root: Obj, path: readonly string[]): unknown {
  let cur: unknown = root;
  for (const seg of path) cur = isObj(cur) && hasOwn(cur, seg) ? cur[seg] : undefined;
  return cur;
}

/** Applied maps merge key by key into the live ones; anything else (lists included) replaces. */
function applyInto(target: Obj, applied: Obj): void {
  for (const [key, value] of Object.entries(applied)) {
    const existing = target[key];
    if (isObj(value) && isObj(existing)) applyInto(existing, value);
    else setOwn(target, key, clone(value));
  }
}

/** Server-side apply of `applied` (a partial object: apiVersion, kind, metadata.name/namespace + fields the manager wants) by `manager` onto `live` (undefined = create). */
export function serverSideApply(
  live: Obj | undefined,
  applied: Obj,
  opts: { manager: string; force: boolean; now: string; subresource?: string },
): { ok: true; object: Obj } | { ok: false; conflicts: ApplyConflict[] } {
  const { manager, force, now, subresource } = opts;
  const intent = stripNulls(scopedView(applied, subresource));
  const declared = leavesOf(intent, [], new Set());

  const result: Obj = live ? clone(live) : skeleton(applied);
  if (!isStatusWrite(subresource)) {
    for (const key of ['apiVersion', 'kind'] as const) if (typeof applied[key] === 'string') result[key] = applied[key];
  }
  applyInto(result, intent);
  const change = diffFields(scopedView(live, subresource), scopedView(result, subresource));
  const changed = new Set([...change.added, ...change.modified, ...change.removed]);

  const owners = readOwners(isObj(live?.['metadata']) ? live['metadata']['managedFields'] : undefined);
  const self = touch(owners, manager, 'Apply', subresource);
  const previous = self.fields;
  const others = [...owners.values()].filter((o) => o !== self);

  // A manager may hold the same field through both an Apply and an Update entry: report it once.
  const conflicts = new Map<string, ApplyConflict>();
  for (const other of others) {
    for (const key of other.fields) {
      if (changed.has(key)) conflicts.set(JSON.stringify([other.manager, key]), { manager: other.manager, path: display(key) });
    }
  }
  if (conflicts.size > 0 && !force) {
    const list = [...conflicts.values()].sort((a, b) => byString(a.path, b.path) || byString(a.manager, b.manager));
    return { ok: false, conflicts: list };
  }
  // Whatever this apply changed now belongs to the applier alone (force already granted where that took it from someone).
  for (const other of others) for (const key of changed) other.fields.delete(key);

  // Fields this manager declared last time and dropped now go, unless someone else still holds them.
  const declaredPrefixes = prefixesOf([declared]);
  const heldByOthers = prefixesOf(others.map((o) => o.fields));
  const ownedExactly = new Set<string>(declared);
  for (const other of others) for (const key of other.fields) ownedExactly.add(key);
  for (const key of previous) {
    if (declaredPrefixes.has(key)) continue;
    const path = pathOf(key);
    if (hasAncestorIn(path, declared) || heldByOthers.has(key)) continue;
    if (isStatusWrite(subresource) ? path[0] !== 'status' : path[0] === 'status') continue;
    deletePath(result, path);
    // A map that only existed to hold the dropped field goes with it.
    for (let n = path.length - 1; n >= 1; n--) {
      const parent = path.slice(0, n);
      const value = valueAt(result, parent);
      if (!isObj(value) || Object.keys(value).length > 0 || isMetadataRoot(parent) || ownedExactly.has(keyOf(parent))) break;
      deletePath(result, parent);
    }
  }

  self.fields = declared;
  self.time = now;
  self.apiVersion = apiVersionOf(applied) ?? apiVersionOf(result) ?? '';
  return { ok: true, object: writeOwners(result, owners, live) };
}

function skeleton(applied: Obj): Obj {
  const out: Obj = {};
  if (typeof applied['apiVersion'] === 'string') out['apiVersion'] = applied['apiVersion'];
  if (typeof applied['kind'] === 'string') out['kind'] = applied['kind'];
  const meta: Obj = {};
  const appliedMeta = applied['metadata'];
  if (isObj(appliedMeta)) {
    for (const key of ['name', 'namespace', 'generateName']) if (typeof appliedMeta[key] === 'string') meta[key] = appliedMeta[key];
  }
  out['metadata'] = meta;
  return out;
}

// ---------------------------------------------------------------------------------------------
// Non-apply writes

/**
 * The managedFields a write starts from. A client may send its own list (honoured, as Kubernetes
 * does); an empty list is ignored so that clients unaware of the field never wipe it; a list
 * holding one empty entry clears ownership before this write is recorded.
 */
function startingOwners(before: Obj | undefined, after: Obj): Map<string, Owner> {
  const sent = isObj(after['metadata']) ? after['metadata']['managedFields'] : undefined;
  if (Array.isArray(sent) && sent.length === 1 && isObj(sent[0]) && Object.keys(sent[0]).length === 0) return new Map();
  const stored = isObj(before?.['metadata']) ? before['metadata']['managedFields'] : undefined;
  if (Array.isArray(sent) && sent.length > 0 && !deepEqual(sent, stored)) {
    const owners = readOwners(sent);
    if (owners.size > 0) return owners;
  }
  return readOwners(stored);
}

/** Records a non-apply write (create / update / patch) in managedFields: the manager (operation Update) comes to own every field whose value it set or changed, and those fields leave other managers' sets. */
export function recordUpdate(before: Obj | undefined, after: Obj, opts: { manager: string; now: string; subresource?: string }): Obj {
  const { manager, now, subresource } = opts;
  const change = diffFields(scopedView(before, subresource), scopedView(after, subresource));
  const taken = new Set([...change.added, ...change.modified]);

  const owners = startingOwners(before, after);
  for (const owner of owners.values()) {
    for (const key of [...owner.fields]) {
      const path = pathOf(key);
      if (taken.has(key) || change.removed.has(key) || hasAncestorIn(path, change.removed)) owner.fields.delete(key);
    }
  }
  const writer = touch(owners, manager, 'Update', subresource);
  for (const key of taken) writer.fields.add(key);
  writer.time = now;
  writer.apiVersion = apiVersionOf(after) ?? writer.apiVersion;
  return writeOwners(clone(after), owners, before);
}
