/**
 * An informer over one Kubernetes resource: list once, then watch from the list's
 * resourceVersion with bookmarks; a 410 Gone (history compacted) relists and turns the
 * difference into events, so listeners never miss a change and never see one twice.
 */
import type { Logger } from 'pino';
import type { Obj } from '../rollout/index.ts';
import type { WatchEvent } from './backend.ts';
import { metaOf, objectKey } from './object.ts';

/** One page of a list. */
export interface ListResult {
  items: Obj[];
  resourceVersion: string;
}

/** A running watch request. */
export interface WatchHandle {
  abort(): void;
}

/** What an informer needs from the API client. */
export interface InformerSource {
  /** The kind of the resource (events are tagged with it). */
  kind: string;
  /** Lists every object (all pages); NotFound when the resource is not served. */
  list(): Promise<ListResult>;
  /** Watches from a resourceVersion with bookmarks; `done` is called once, with the error if any. */
  watch(resourceVersion: string, onEvent: (type: string, object: Obj) => void, done: (error: unknown) => void): Promise<WatchHandle>;
}

/** Tunables, mainly for tests. */
export interface InformerOptions {
  logger?: Logger;
  /** Delay before re-watching after a failed watch (doubles up to 30 s). */
  retryMs?: number;
  /** Delay before listing again a resource the server does not serve. */
  absentRetryMs?: number;
}

/** Status code carried by a failed watch or list, if any. */
function statusCode(error: unknown): number | undefined {
  if (typeof error !== 'object' || error === null) return undefined;
  const e = error as { statusCode?: unknown; code?: unknown; data?: { code?: unknown } };
  for (const c of [e.statusCode, e.data?.code, e.code]) if (typeof c === 'number') return c;
  return undefined;
}

/** The informer. */
export class Informer {
  /** Objects by `namespace/name`. */
  readonly store = new Map<string, Obj>();
  /** Newest resourceVersion seen (from a list, an event or a bookmark). */
  resourceVersion = '';
  /** Lists made (the first included): a relist after 410 adds one. */
  lists = 0;
  private readonly listeners = new Set<(e: WatchEvent) => void>();
  private handle: WatchHandle | null = null;
  private stopped = false;
  private synced = false;
  private failures = 0;
  private timer: NodeJS.Timeout | null = null;
  private firstSync: Promise<void> | null = null;

  constructor(
    private readonly source: InformerSource,
    private readonly options: InformerOptions = {},
  ) {}

  /** The kind this informer follows. */
  get kind(): string {
    return this.source.kind;
  }

  /** True once the first list is in. */
  get hasSynced(): boolean {
    return this.synced;
  }

  /** Subscribes to changes; returns the unsubscribe function. */
  on(listener: (e: WatchEvent) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** Lists and starts watching; resolves after the first list (rejects if it fails). */
  start(): Promise<void> {
    this.stopped = false;
    this.firstSync ??= this.relist().then(
      () => this.watch(),
      (e: unknown) => {
        // A failed first list is retried by the next start().
        this.firstSync = null;
        throw e;
      },
    );
    return this.firstSync;
  }

  /** Stops watching. */
  stop(): void {
    this.stopped = true;
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = null;
    this.handle?.abort();
    this.handle = null;
  }

  private emit(type: WatchEvent['type'], object: Obj): void {
    for (const l of this.listeners) l({ type, kind: this.source.kind, object });
  }

  /** Lists and replaces the store, emitting the difference. */
  private async relist(): Promise<void> {
    let result: ListResult;
    this.lists++;
    try {
      result = await this.source.list();
    } catch (e) {
      if (statusCode(e) !== 404) throw e;
      // The resource is not served (e.g. no instancetype API): empty, and look again later.
      result = { items: [], resourceVersion: '' };
    }
    const seen = new Set<string>();
    for (const item of result.items) {
      const key = objectKey(item);
      seen.add(key);
      const old = this.store.get(key);
      this.store.set(key, item);
      if (old === undefined) this.emit('ADDED', item);
      else if (metaOf(old)['resourceVersion'] !== metaOf(item)['resourceVersion']) this.emit('MODIFIED', item);
    }
    for (const [key, old] of this.store) {
      if (seen.has(key)) continue;
      this.store.delete(key);
      this.emit('DELETED', old);
    }
    this.resourceVersion = result.resourceVersion;
    this.synced = true;
  }

  private schedule(fn: () => void, ms: number): void {
    if (this.stopped) return;
    this.timer = setTimeout(() => {
      this.timer = null;
      fn();
    }, ms);
    this.timer.unref?.();
  }

  private watch(): void {
    if (this.stopped) return;
    if (this.resourceVersion === '') {
      this.schedule(() => void this.recover(true), this.options.absentRetryMs ?? 60_000);
      return;
    }
    let gone = false;
    let finished = false;
    const onEvent = (type: string, object: Obj): void => {
      if (finished || this.stopped) return;
      if (type === 'BOOKMARK') {
        const rv = metaOf(object)['resourceVersion'];
        if (typeof rv === 'string' && rv !== '') this.resourceVersion = rv;
        this.failures = 0;
        return;
      }
      if (type === 'ERROR') {
        // A watch ERROR carries a Status; 410 means our resourceVersion is older than the server keeps.
        if (statusCode(object) === 410 || object['reason'] === 'Expired' || object['reason'] === 'Gone') gone = true;
        return;
      }
      if (type !== 'ADDED' && type !== 'MODIFIED' && type !== 'DELETED') return;
      this.failures = 0;
      const key = objectKey(object);
      const rv = metaOf(object)['resourceVersion'];
      if (typeof rv === 'string' && rv !== '') this.resourceVersion = rv;
      if (type === 'DELETED') {
        if (!this.store.delete(key)) return;
      } else {
        const old = this.store.get(key);
        if (old !== undefined && metaOf(old)['resourceVersion'] === rv) return;
        this.store.set(key, object);
      }
      this.emit(type, object);
    };
    const done = (error: unknown): void => {
      if (finished) return;
      finished = true;
      this.handle = null;
      if (this.stopped) return;
      if (gone || statusCode(error) === 410) {
        this.options.logger?.info({ kind: this.kind, resourceVersion: this.resourceVersion }, 'watch history expired (410 Gone): listing again');
        void this.recover(true);
        return;
      }
      if (error === null || error === undefined || (error as { name?: unknown }).name === 'TimeoutError') {
        // The server ended the watch, or it went quiet for too long: pick up where it left off.
        this.schedule(() => this.watch(), 0);
        return;
      }
      this.failures++;
      const delay = Math.min(30_000, (this.options.retryMs ?? 250) * 2 ** Math.min(this.failures - 1, 7));
      this.options.logger?.warn({ kind: this.kind, err: error instanceof Error ? error.message : String(error), retryInMs: delay }, 'watch failed');
      this.schedule(() => void this.recover(this.failures >= 5), delay);
    };
    this.source.watch(this.resourceVersion, onEvent, done).then(
      (h) => {
        if (finished || this.stopped) h.abort();
        else this.handle = h;
      },
      (e: unknown) => done(e),
    );
  }

  /** Relists (when asked) and watches again; a failed list retries with backoff. */
  private async recover(relist: boolean): Promise<void> {
    if (this.stopped) return;
    if (relist) {
      try {
        await this.relist();
      } catch (e) {
        this.failures++;
        const delay = Math.min(30_000, (this.options.retryMs ?? 250) * 2 ** Math.min(this.failures - 1, 7));
        this.options.logger?.warn({ kind: this.kind, err: e instanceof Error ? e.message : String(e), retryInMs: delay }, 'list failed');
        this.schedule(() => void this.recover(true), delay);
        return;
      }
    }
    this.watch();
  }
}
