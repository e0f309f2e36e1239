/**
 * The simulator's object store: namespaced objects per kind with uids, resourceVersions,
 * generations and watch events, the way a Kubernetes API server keeps them.
 */
import { randomUUID } from 'node:crypto';
import type { Obj } from '../../rollout/index.ts';
import { ClusterError, type WatchEvent } from '../backend.ts';

/** A change as the store recorded it: the watch event plus the resourceVersion it created. */
export interface StoredEvent extends WatchEvent {
  /** The store's resourceVersion after the change (the DELETED object carries it too). */
  resourceVersion: number;
  /** The object before a MODIFIED or DELETED change, so a filtered watch can tell an object leaving its filter. */
  previous?: Readonly<Obj>;
}

/** Options of {@link ObjectStore}. */
export interface ObjectStoreOptions {
  /** How many recent events are kept for watches that resume from a resourceVersion (default 100,000). */
  historySize?: number;
}

/** Default of {@link ObjectStoreOptions.historySize}. */
export const DEFAULT_HISTORY_SIZE = 100_000;

/** Serialisable form of the store (for `--sim-state`). */
export interface StoreSnapshot {
  resourceVersion: number;
  objects: Obj[];
}

function keyOf(kind: string, namespace: string | undefined, name: string): string {
  return `${kind}/${namespace ?? ''}/${name}`;
}

function meta(o: Obj): Obj {
  const m = o['metadata'];
  if (typeof m !== 'object' || m === null || Array.isArray(m)) throw new ClusterError('Invalid', 'object has no metadata');
  return m as Obj;
}

/**
 * Deep equality of JSON values, key order aside. Shared subtrees compare by reference first:
 * stored versions of an object share most of their structure, so this rarely walks far.
 */
function sameJson(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  if (typeof a !== 'object' || typeof b !== 'object' || a === null || b === null) return false;
  if (Array.isArray(a) !== Array.isArray(b)) return false;
  if (Array.isArray(a) && Array.isArray(b)) return a.length === b.length && a.every((x, i) => sameJson(x, b[i]));
  const ka = Object.keys(a).filter((k) => (a as Obj)[k] !== undefined);
  const kb = Object.keys(b).filter((k) => (b as Obj)[k] !== undefined);
  return ka.length === kb.length && ka.every((k) => sameJson((a as Obj)[k], (b as Obj)[k]));
}

/** An in-memory API object store. */
export class ObjectStore {
  /** Objects by kind, then by namespace/name key: listing a kind never scans the others. */
  private readonly byKind = new Map<string, Map<string, Obj>>();
  private rv = 0;
  private readonly listeners = new Set<(e: StoredEvent) => void>();
  /** Recent events, oldest first, as a ring of fixed capacity. */
  private readonly history: (StoredEvent | undefined)[];
  private historyStart = 0;
  private historyCount = 0;
  /** Every event with a resourceVersion above this one is still in {@link history}. */
  private historyFloor = 0;

  constructor(
    private readonly now: () => Date = () => new Date(),
    options: ObjectStoreOptions = {},
  ) {
    const size = options.historySize ?? DEFAULT_HISTORY_SIZE;
    if (!Number.isInteger(size) || size < 1) throw new RangeError(`historySize must be a positive integer, got ${size}`);
    this.history = new Array<StoredEvent | undefined>(size);
  }

  /** The store's current resourceVersion. */
  get resourceVersion(): string {
    return String(this.rv);
  }

  private kindMap(kind: string): Map<string, Obj> {
    let m = this.byKind.get(kind);
    if (m === undefined) {
      m = new Map();
      this.byKind.set(kind, m);
    }
    return m;
  }

  /** Reads one object (a copy), or undefined. */
  get(kind: string, namespace: string | undefined, name: string): Obj | undefined {
    const o = this.byKind.get(kind)?.get(keyOf(kind, namespace, name));
    return o === undefined ? undefined : structuredClone(o);
  }

  /** The stored object itself, read-only: callers must not change it. */
  peek(kind: string, namespace: string | undefined, name: string): Readonly<Obj> | undefined {
    return this.byKind.get(kind)?.get(keyOf(kind, namespace, name));
  }

  /** True when the object exists (no copy made). */
  has(kind: string, namespace: string | undefined, name: string): boolean {
    return this.byKind.get(kind)?.has(keyOf(kind, namespace, name)) ?? false;
  }

  /** The stored objects of a kind, optionally in one namespace, without copies: callers must not change them. */
  *scan(kind: string, namespace?: string): IterableIterator<Readonly<Obj>> {
    for (const o of this.byKind.get(kind)?.values() ?? []) {
      if (namespace === undefined || meta(o)['namespace'] === namespace) yield o;
    }
  }

  /** Every object of a kind (copies), optionally in one namespace. */
  list(kind: string, namespace?: string): Obj[] {
    const out: Obj[] = [];
    for (const o of this.byKind.get(kind)?.values() ?? []) {
      if (namespace !== undefined && meta(o)['namespace'] !== namespace) continue;
      out.push(structuredClone(o));
    }
    return out;
  }

  /** Creates an object from a copy of `obj`; AlreadyExists is a Conflict. */
  create(obj: Obj): Obj {
    return structuredClone(this.adopt(structuredClone(obj)));
  }

  /**
   * Creates an object from `obj` itself, without copying: the caller hands it over and never
   * changes it (or anything it shares) again. Returns the stored object.
   */
  adopt(obj: Obj): Obj {
    const o: Obj = { ...obj, metadata: { ...meta(obj) } };
    const m = meta(o);
    const key = keyOf(String(o['kind']), m['namespace'] as string | undefined, String(m['name']));
    const objects = this.kindMap(String(o['kind']));
    if (objects.has(key)) throw new ClusterError('Conflict', `${String(o['kind'])} "${String(m['name'])}" already exists`, { reason: 'AlreadyExists' });
    m['uid'] = randomUUID();
    m['generation'] = 1;
    m['creationTimestamp'] = this.now().toISOString().replace(/\.\d{3}Z$/, 'Z');
    m['resourceVersion'] = String(++this.rv);
    objects.set(key, o);
    this.emit({ type: 'ADDED', kind: String(o['kind']), object: o, resourceVersion: this.rv });
    return o;
  }

  /**
   * Replaces an object. A resourceVersion in the new object must match the stored one
   * (optimistic concurrency); a spec change bumps the generation.
   */
  update(obj: Obj): Obj {
    return structuredClone(this.replace(structuredClone(obj)));
  }

  /** {@link update} without copying `obj`: the caller hands it over (see {@link adopt}). Returns the stored object. */
  replace(obj: Obj): Obj {
    const o: Obj = { ...obj, metadata: { ...meta(obj) } };
    const m = meta(o);
    const key = keyOf(String(o['kind']), m['namespace'] as string | undefined, String(m['name']));
    const objects = this.kindMap(String(o['kind']));
    const old = objects.get(key);
    if (old === undefined) throw new ClusterError('NotFound', `${String(o['kind'])} "${String(m['name'])}" not found`);
    const oldMeta = meta(old);
    if (m['resourceVersion'] !== undefined && m['resourceVersion'] !== oldMeta['resourceVersion']) {
      throw new ClusterError('Conflict', `the object has been modified; please apply your changes to the latest version and try again`);
    }
    m['uid'] = oldMeta['uid'];
    m['creationTimestamp'] = oldMeta['creationTimestamp'];
    const specChanged = !sameJson(old['spec'], o['spec']);
    m['generation'] = Number(oldMeta['generation'] ?? 1) + (specChanged ? 1 : 0);
    if (sameJson({ ...old, metadata: { ...oldMeta, resourceVersion: '' } }, { ...o, metadata: { ...m, resourceVersion: '' } })) {
      return old;
    }
    m['resourceVersion'] = String(++this.rv);
    objects.set(key, o);
    this.emit({ type: 'MODIFIED', kind: String(o['kind']), object: o, resourceVersion: this.rv, previous: old });
    return o;
  }

  /** Deletes an object; NotFound when absent. */
  delete(kind: string, namespace: string | undefined, name: string): Obj {
    const key = keyOf(kind, namespace, name);
    const objects = this.kindMap(kind);
    const old = objects.get(key);
    if (old === undefined) throw new ClusterError('NotFound', `${kind} "${name}" not found`);
    objects.delete(key);
    const gone = { ...old, metadata: { ...meta(old), resourceVersion: String(++this.rv) } };
    this.emit({ type: 'DELETED', kind, object: gone, resourceVersion: this.rv, previous: old });
    return gone;
  }

  /**
   * Subscribes to every change. Events carry the stored object itself, never a copy: the store
   * replaces objects and never changes one in place, and listeners must not change them either.
   */
  watch(listener: (e: StoredEvent) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** A copy of everything, for persisting. */
  snapshot(): StoreSnapshot {
    return { resourceVersion: this.rv, objects: [...this.byKind.values()].flatMap((m) => [...m.values()]).map((o) => structuredClone(o)) };
  }

  /** Replaces the contents with a snapshot (no events). */
  restore(s: StoreSnapshot): void {
    this.byKind.clear();
    for (const o of s.objects) {
      const m = meta(o);
      this.kindMap(String(o['kind'])).set(keyOf(String(o['kind']), m['namespace'] as string | undefined, String(m['name'])), structuredClone(o));
    }
    this.rv = s.resourceVersion;
    // Events from before the snapshot are gone: a watch resuming from an older version gets 410.
    this.history.fill(undefined);
    this.historyStart = 0;
    this.historyCount = 0;
    this.historyFloor = this.rv;
  }

  /**
   * The recorded events after resourceVersion `rv`, oldest first, or null when some of them
   * have already left the history (the watch must relist: 410 Gone).
   */
  eventsSince(rv: number): StoredEvent[] | null {
    if (rv < this.historyFloor) return null;
    // Versions are increasing along the ring: binary search for the first event after rv.
    const size = this.history.length;
    let lo = 0;
    let hi = this.historyCount;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      const e = this.history[(this.historyStart + mid) % size];
      if (e !== undefined && e.resourceVersion <= rv) lo = mid + 1;
      else hi = mid;
    }
    const out: StoredEvent[] = [];
    for (let i = lo; i < this.historyCount; i++) {
      const e = this.history[(this.historyStart + i) % size];
      if (e !== undefined) out.push(e);
    }
    return out;
  }

  /** The oldest resourceVersion a watch can still resume from. */
  get oldestResumableVersion(): number {
    return this.historyFloor;
  }

  private emit(e: StoredEvent): void {
    const size = this.history.length;
    if (this.historyCount === size) {
      const dropped = this.history[this.historyStart];
      if (dropped !== undefined) this.historyFloor = dropped.resourceVersion;
      this.history[this.historyStart] = e;
      this.historyStart = (this.historyStart + 1) % size;
    } else {
      this.history[(this.historyStart + this.historyCount) % size] = e;
      this.historyCount++;
    }
    for (const l of this.listeners) l(e);
  }
}
