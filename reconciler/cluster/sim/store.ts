/**
 * The simulator's object store: namespaced objects per kind with uids, resourceVersions,
 * generations and watch events, the way a Kubernetes API server keeps them.
 */
import { randomUUID } from 'node:crypto';
import type { Obj } from '../../rollout/index.ts';
import { ClusterError, type WatchEvent } from '../backend.ts';

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

/** An in-memory API object store. */
export class ObjectStore {
  private readonly objects = new Map<string, Obj>();
  private rv = 0;
  private readonly listeners = new Set<(e: WatchEvent) => void>();

  constructor(private readonly now: () => Date = () => new Date()) {}

  /** The store's current resourceVersion. */
  get resourceVersion(): string {
    return String(this.rv);
  }

  /** Reads one object (a copy), or undefined. */
  get(kind: string, namespace: string | undefined, name: string): Obj | undefined {
    const o = this.objects.get(keyOf(kind, namespace, name));
    return o === undefined ? undefined : structuredClone(o);
  }

  /** Every object of a kind (copies), optionally in one namespace. */
  list(kind: string, namespace?: string): Obj[] {
    const out: Obj[] = [];
    for (const o of this.objects.values()) {
      if (o['kind'] !== kind) continue;
      if (namespace !== undefined && meta(o)['namespace'] !== namespace) continue;
      out.push(structuredClone(o));
    }
    return out;
  }

  /** Creates an object; AlreadyExists is a Conflict. */
  create(obj: Obj): Obj {
    const o = structuredClone(obj);
    const m = meta(o);
    const key = keyOf(String(o['kind']), m['namespace'] as string | undefined, String(m['name']));
    if (this.objects.has(key)) throw new ClusterError('Conflict', `${String(o['kind'])} "${String(m['name'])}" already exists`, { reason: 'AlreadyExists' });
    m['uid'] = randomUUID();
    m['generation'] = 1;
    m['creationTimestamp'] = this.now().toISOString().replace(/\.\d{3}Z$/, 'Z');
    m['resourceVersion'] = String(++this.rv);
    this.objects.set(key, o);
    this.emit({ type: 'ADDED', kind: String(o['kind']), object: structuredClone(o) });
    return structuredClone(o);
  }

  /**
   * Replaces an object. A resourceVersion in the new object must match the stored one
   * (optimistic concurrency); a spec change bumps the generation.
   */
  update(obj: Obj): Obj {
    const o = structuredClone(obj);
    const m = meta(o);
    const key = keyOf(String(o['kind']), m['namespace'] as string | undefined, String(m['name']));
    const old = this.objects.get(key);
    if (old === undefined) throw new ClusterError('NotFound', `${String(o['kind'])} "${String(m['name'])}" not found`);
    const oldMeta = meta(old);
    if (m['resourceVersion'] !== undefined && m['resourceVersion'] !== oldMeta['resourceVersion']) {
      throw new ClusterError('Conflict', `the object has been modified; please apply your changes to the latest version and try again`);
    }
    m['uid'] = oldMeta['uid'];
    m['creationTimestamp'] = oldMeta['creationTimestamp'];
    const specChanged = JSON.stringify(old['spec']) !== JSON.stringify(o['spec']);
    m['generation'] = Number(oldMeta['generation'] ?? 1) + (specChanged ? 1 : 0);
    if (JSON.stringify({ ...old, metadata: { ...oldMeta, resourceVersion: '' } }) === JSON.stringify({ ...o, metadata: { ...m, resourceVersion: '' } })) {
      return structuredClone(old);
    }
    m['resourceVersion'] = String(++this.rv);
    this.objects.set(key, o);
    this.emit({ type: 'MODIFIED', kind: String(o['kind']), object: structuredClone(o) });
    return structuredClone(o);
  }

  /** Deletes an object; NotFound when absent. */
  delete(kind: string, namespace: string | undefined, name: string): Obj {
    const key = keyOf(kind, namespace, name);
    const old = this.objects.get(key);
    if (old === undefined) throw new ClusterError('NotFound', `${kind} "${name}" not found`);
    this.objects.delete(key);
    meta(old)['resourceVersion'] = String(++this.rv);
    this.emit({ type: 'DELETED', kind, object: structuredClone(old) });
    return old;
  }

  /** Subscribes to every change. */
  watch(listener: (e: WatchEvent) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** A copy of everything, for persisting. */
  snapshot(): StoreSnapshot {
    return { resourceVersion: this.rv, objects: [...this.objects.values()].map((o) => structuredClone(o)) };
  }

  /** Replaces the contents with a snapshot (no events). */
  restore(s: StoreSnapshot): void {
    this.objects.clear();
    for (const o of s.objects) {
      const m = meta(o);
      this.objects.set(keyOf(String(o['kind']), m['namespace'] as string | undefined, String(m['name'])), structuredClone(o));
    }
    this.rv = s.resourceVersion;
  }

  private emit(e: WatchEvent): void {
    for (const l of this.listeners) l(e);
  }
}
