/**
 * The cluster through the Kubernetes API: informers (list once, watch with bookmarks, relist on
 * 410) serve every read, server-side apply with field manager `vmroll` writes, and KubeVirt's
 * `subresources.kubevirt.io` API restarts, stops and starts. Writes retry conflicts after a fresh
 * read and server errors with backoff. Requests go over undici with the credentials and the
 * connection pool of vmroll's own kubeconfig loader (kubeconfig.ts; no Kubernetes client
 * library is loaded); objects are kept as trim.ts trims them.
 */
import type { Logger } from 'pino';
import { request } from 'undici';
import { INSTANCETYPE_KINDS, type Obj, parseStartRevisionName } from '../rollout/index.ts';
import { type ClusterBackend, ClusterError, type ObjectRef, type WatchEvent } from './backend.ts';
import { Informer, type InformerOptions, type ListResult, type WatchHandle } from './informer.ts';
import { KubeClusterConfig, type KubeConfigSource, loadKubeConfig } from './kubeconfig.ts';
import { metaOf } from './object.ts';
import { DEFAULT_RETRY, type RetryPolicy, withRetry } from './retry.ts';
import { FIELD_MANAGER } from './ssa.ts';
import { trimLive } from './trim.ts';

export { type KubeConfigSource, KubeClusterConfig, loadKubeConfig } from './kubeconfig.ts';

/** The field manager vmroll applies with (defined beside the field-set arithmetic that reads it back). */
export { FIELD_MANAGER } from './ssa.ts';

/** One API resource the backend follows. */
interface Resource {
  kind: string;
  group: string;
  version: string;
  plural: string;
}

const VM: Resource = { kind: 'VirtualMachine', group: 'kubevirt.io', version: 'v1', plural: 'virtualmachines' };
const VMI: Resource = { kind: 'VirtualMachineInstance', group: 'kubevirt.io', version: 'v1', plural: 'virtualmachineinstances' };
const REVISION: Resource = { kind: 'ControllerRevision', group: 'apps', version: 'v1', plural: 'controllerrevisions' };
const VMIM: Resource = { kind: 'VirtualMachineInstanceMigration', group: 'kubevirt.io', version: 'v1', plural: 'virtualmachineinstancemigrations' };
const KUBEVIRT: Resource = { kind: 'KubeVirt', group: 'kubevirt.io', version: 'v1', plural: 'kubevirts' };
const INSTANCETYPES: Resource[] = INSTANCETYPE_KINDS.map((kind) => ({
  kind,
  group: 'instancetype.kubevirt.io',
  version: 'v1beta1',
  plural: `${kind.toLowerCase()}s`,
}));

/** Options of {@link KubeCluster}. */
export interface KubeClusterOptions {
  /** Where the kubeconfig comes from, or one already loaded (its pools are then the caller's to close). */
  kubeconfig: KubeConfigSource | KubeClusterConfig;
  logger?: Logger;
  /** Retry bounds for writes and lists. */
  retry?: RetryPolicy;
  /** Time limit of one request (watches excluded). Default 15 s. */
  requestTimeoutMs?: number;
  /** Informer tunables (tests shorten the retry delays). */
  informer?: InformerOptions;
  /** Called after every API request, for metrics. */
  onRequest?: (verb: string, resource: string, status: number) => void;
  /** Objects per list page (`limit`). Default {@link LIST_PAGE_SIZE}. */
  listPageSize?: number;
}

/**
 * Objects per list page (client-go's default). Measured at 10,000 VMs (bench/README.md, "Fix 4"):
 * 5,000 a page makes 12 lists instead of 62 but holds a 12 MB page as text and parsed at once
 * (peak RSS 70-110 MiB higher), for no less CPU in vmroll (about 1 s for all lists either way); what the
 * extra pages cost is the server's.
 */
export const LIST_PAGE_SIZE = 500;

/** A watch silent for longer than this is dead (servers send a bookmark about once a minute). */
const WATCH_SILENCE_MS = 120_000;

/** How a request body is sent. */
const CONTENT_TYPE = { apply: 'application/apply-patch+yaml', merge: 'application/merge-patch+json', json: 'application/json' } as const;

/** An API server's answer with a status of 300 or more: the status and the body (a Status object, usually). */
export class ApiStatusError extends Error {
  constructor(
    readonly statusCode: number,
    readonly body: string,
  ) {
    super(`HTTP ${statusCode}`);
    this.name = 'ApiStatusError';
  }
}

/** The path of one VirtualMachine. */
function vmPath(namespace: string, name: string): string {
  return `/apis/${VM.group}/${VM.version}/namespaces/${encodeURIComponent(namespace)}/${VM.plural}/${encodeURIComponent(name)}`;
}

/**
 * Splits a watch body into lines and parses each as one event. Chunks are kept as Buffers until a
 * newline ends the line (one decode and one parse per event; no string concatenation per chunk).
 */
export function lineSplitter(onLine: (line: string) => void): { push(chunk: Buffer): void } {
  let parts: Buffer[] = [];
  return {
    push(chunk: Buffer): void {
      let start = 0;
      for (let nl = chunk.indexOf(10); nl !== -1; nl = chunk.indexOf(10, start)) {
        const line = parts.length === 0 ? chunk.toString('utf8', start, nl) : Buffer.concat([...parts, chunk.subarray(start, nl)]).toString('utf8');
        parts = [];
        start = nl + 1;
        if (line.trim() !== '') onLine(line);
      }
      if (start < chunk.length) parts.push(start === 0 ? chunk : chunk.subarray(start));
    },
  };
}

/** How a 500 answer to a server-side apply says the patch does not fit the object's schema. */
const TYPED_PATCH_REFUSAL = /failed to create typed patch object|field not declared in schema|: expected (?:numeric|string|map|list|boolean)/;

/** Turns whatever an API request or the network threw into a {@link ClusterError}. */
export function toClusterError(e: unknown, what: string): ClusterError {
  if (e instanceof ClusterError) return e;
  if (e instanceof ApiStatusError) {
    let status: Obj = {};
    try {
      const parsed: unknown = JSON.parse(e.body);
      if (typeof parsed === 'object' && parsed !== null) status = parsed as Obj;
    } catch {
      // Not a Status body (a proxy's error page): the code alone decides.
    }
    const code = e.statusCode;
    const message = `${what}: ${typeof status['message'] === 'string' ? status['message'] : `HTTP ${code}`}`;
    const data = { reason: status['reason'] ?? null, status: code, details: status['details'] ?? null };
    if (code === 404) return new ClusterError('NotFound', message, data);
    if (code === 409) return new ClusterError('Conflict', message, data);
    if (code === 400 || code === 422) return new ClusterError('Invalid', message, data);
    // The API server types a server-side apply patch against the CRD's schema before anything is
    // stored, and answers a field the schema lacks (`cpu.socket`) or a wrong type with 500
    // InternalError: no fault of the server, and the same answer on every retry.
    if (code === 500 && TYPED_PATCH_REFUSAL.test(message)) return new ClusterError('Invalid', message, data);
    if (code === 401 || code === 403) return new ClusterError('Forbidden', message, data);
    return new ClusterError('Unavailable', message, data);
  }
  // Network errors (refused, reset, timed out) and anything unexpected: worth retrying.
  const cause = e instanceof Error && e.cause instanceof Error ? ` (${e.cause.message})` : '';
  return new ClusterError('Unavailable', `${what}: ${e instanceof Error ? e.message : String(e)}${cause}`, { status: 0 });
}

/** The Kubernetes backend. */
export class KubeCluster implements ClusterBackend {
  /** Requests made, by `verb resource` (e.g. `list virtualmachines`, `apply virtualmachines`). */
  readonly requests = new Map<string, number>();
  private readonly kc: KubeClusterConfig;
  private readonly informers: Map<string, Informer>;
  private starting: Promise<void> | null = null;
  /** Whether this backend loaded the kubeconfig (and so closes its pools). */
  private readonly ownsConfig: boolean;

  constructor(private readonly options: KubeClusterOptions) {
    this.ownsConfig = !(options.kubeconfig instanceof KubeClusterConfig);
    this.kc = options.kubeconfig instanceof KubeClusterConfig ? options.kubeconfig : loadKubeConfig(options.kubeconfig);
    this.informers = new Map(
      [VM, VMI, VMIM, REVISION, KUBEVIRT, ...INSTANCETYPES].map((r) => [
        r.kind,
        new Informer(
          { kind: r.kind, list: () => this.listAll(r), watch: (rv, onEvent, done) => this.watchFrom(r, rv, onEvent, done) },
          { ...(options.logger !== undefined ? { logger: options.logger } : {}), ...options.informer },
        ),
      ]),
    );
  }

  /** The API server's URL (for logs; it carries no credentials). */
  get server(): string {
    return this.kc.server;
  }

  /** The loaded kubeconfig, so other API clients (leader election) reach the same server as the same user, on the same pool. */
  get kubeConfig(): KubeClusterConfig {
    return this.kc;
  }

  /** Informers, by kind (read-only use: tests and metrics). */
  informer(kind: string): Informer | undefined {
    return this.informers.get(kind);
  }

  /**
   * Starts every informer and waits for all first lists. All list methods await this one
   * promise and then read their store synchronously, so they see one consistent moment.
   */
  private ready(): Promise<void> {
    this.starting ??= Promise.all([...this.informers.values()].map((i) => i.start())).then(
      () => undefined,
      (e: unknown) => {
        this.starting = null;
        throw toClusterError(e, 'listing the cluster');
      },
    );
    return this.starting;
  }

  private items(kind: string): Obj[] {
    return [...(this.informers.get(kind)?.store.values() ?? [])];
  }

  async listVirtualMachines(): Promise<Obj[]> {
    await this.ready();
    return this.items(VM.kind);
  }

  async listVirtualMachineInstances(): Promise<Obj[]> {
    await this.ready();
    return this.items(VMI.kind);
  }

  async listBaselines(): Promise<Map<string, Obj>> {
    await this.ready();
    const best = new Map<string, { gen: number; data: Obj }>();
    for (const rev of this.items(REVISION.kind)) {
      const start = parseStartRevisionName(String(metaOf(rev)['name'] ?? ''));
      if (start === null) continue;
      const have = best.get(start.uid);
      if (have === undefined || start.generation > have.gen) best.set(start.uid, { gen: start.generation, data: (rev['data'] ?? {}) as Obj });
    }
    return new Map([...best].map(([uid, b]) => [uid, b.data]));
  }

  async listInstancetypes(): Promise<Obj[]> {
    await this.ready();
    return INSTANCETYPE_KINDS.flatMap((k) => this.items(k));
  }

  async getKubeVirt(): Promise<Obj | null> {
    await this.ready();
    return this.items(KUBEVIRT.kind)[0] ?? null;
  }

  async listVirtualMachineInstanceMigrations(): Promise<Obj[]> {
    await this.ready();
    return this.items(VMIM.kind);
  }

  watch(onEvent: (event: WatchEvent) => void): () => void {
    const offs = [...this.informers.values()].map((i) => i.on(onEvent));
    return () => {
      for (const off of offs) off();
    };
  }

  async applyVirtualMachine(vm: Obj): Promise<Obj> {
    const m = metaOf(vm);
    const namespace = String(m['namespace'] ?? 'default');
    const name = String(m['name'] ?? '');
    // Status belongs to KubeVirt; vmroll applies only what the repository says.
    const body: Obj = { apiVersion: 'kubevirt.io/v1', kind: 'VirtualMachine', ...vm, metadata: { ...m, namespace } };
    delete body['status'];
    const what = `applying virtualmachines.kubevirt.io "${name}" in namespace ${namespace}`;
    const path = vmPath(namespace, name);
    const text = JSON.stringify(body);
    const stored = await this.retrying(
      what,
      () => this.call('apply', VM.plural, () => this.send('PATCH', `${path}?fieldManager=${FIELD_MANAGER}&force=true`, { text, type: CONTENT_TYPE.apply })),
      // After a conflict, read the object again so the retry (and the cache) start from the server's state.
      async () => {
        await this.call('get', VM.plural, () => this.send('GET', path)).catch(() => undefined);
      },
    );
    // The caller keeps it until the writes settle: held as the informer holds VMs.
    return this.kept(VM, JSON.parse(stored) as Obj) as Obj;
  }

  async deleteVirtualMachine(ref: ObjectRef): Promise<void> {
    const what = `deleting virtualmachines.kubevirt.io "${ref.name}" in namespace ${ref.namespace}`;
    try {
      await this.retrying(what, () =>
        this.call('delete', VM.plural, () => this.send('DELETE', vmPath(ref.namespace, ref.name))),
      );
    } catch (e) {
      // Already gone is what a delete wants.
      if (!(e instanceof ClusterError && e.code === 'NotFound')) throw e;
    }
  }

  async patchVirtualMachineAnnotations(ref: ObjectRef, annotations: Readonly<Record<string, string | null>>, resourceVersion: string): Promise<Obj> {
    const what = `patching the annotations of virtualmachines.kubevirt.io "${ref.name}" in namespace ${ref.namespace}`;
    // A resourceVersion in a merge patch is a precondition: a conflict means another writer came first, so it is not retried.
    const body = { metadata: { resourceVersion, annotations } };
    try {
      const text = await this.call('patch', VM.plural, () =>
        this.send('PATCH', `${vmPath(ref.namespace, ref.name)}?fieldManager=vmroll-restart`, { text: JSON.stringify(body), type: CONTENT_TYPE.merge }),
      );
      return this.kept(VM, JSON.parse(text) as Obj) as Obj;
    } catch (e) {
      throw toClusterError(e, what);
    }
  }

  restartVirtualMachine(ref: ObjectRef): Promise<void> {
    return this.subresource(ref, 'restart');
  }

  stopVirtualMachine(ref: ObjectRef): Promise<void> {
    return this.subresource(ref, 'stop');
  }

  startVirtualMachine(ref: ObjectRef): Promise<void> {
    return this.subresource(ref, 'start');
  }

  /** Stops every informer. */
  close(): void {
    for (const i of this.informers.values()) i.stop();
    this.starting = null;
    if (this.ownsConfig) void this.kc.close();
  }

  /** `PUT /apis/subresources.kubevirt.io/v1/namespaces/<ns>/virtualmachines/<name>/<action>`. */
  private async subresource(ref: ObjectRef, action: 'restart' | 'stop' | 'start'): Promise<void> {
    const what = `${action} of virtualmachines.kubevirt.io "${ref.name}" in namespace ${ref.namespace}`;
    await this.retrying(what, () =>
      this.call(action, `virtualmachines/${action}`, () =>
        this.send('PUT', `/apis/subresources.kubevirt.io/v1/namespaces/${encodeURIComponent(ref.namespace)}/virtualmachines/${encodeURIComponent(ref.name)}/${action}`, {
          text: '{}',
          type: CONTENT_TYPE.json,
        }),
      ),
    );
  }

  private retrying<T>(what: string, fn: () => Promise<T>, refresh?: () => Promise<void>): Promise<T> {
    return withRetry(fn, {
      policy: this.options.retry ?? DEFAULT_RETRY,
      ...(refresh !== undefined ? { refresh } : {}),
      onRetry: (attempt, e, delayMs) => this.options.logger?.warn({ attempt, delayMs, err: e instanceof Error ? e.message : String(e) }, `${what}: retrying`),
    }).catch((e: unknown) => {
      throw toClusterError(e, what);
    });
  }

  /** Runs one request with a time limit, counts it, and types its failure. */
  private async call<T>(verb: string, resource: string, fn: () => Promise<T>): Promise<T> {
    const key = `${verb} ${resource}`;
    this.requests.set(key, (this.requests.get(key) ?? 0) + 1);
    const limit = this.options.requestTimeoutMs ?? 15_000;
    let timer: NodeJS.Timeout | undefined;
    try {
      const result = await Promise.race([
        fn(),
        new Promise<never>((_, reject) => {
          timer = setTimeout(() => reject(new ClusterError('Unavailable', `${verb} ${resource}: no answer within ${limit} ms`, { status: 0 })), limit);
        }),
      ]);
      this.options.onRequest?.(verb, resource, 200);
      return result;
    } catch (e) {
      const error = toClusterError(e, `${verb} ${resource}`);
      this.options.onRequest?.(verb, resource, Number(error.data['status'] ?? 0));
      throw error;
    } finally {
      clearTimeout(timer);
    }
  }

  /**
   * One request with the kubeconfig's credentials (its token, client certificate or exec plugin,
   * and the shared connection pool): the answer's text; an {@link ApiStatusError} for a status of 300 or more.
   */
  private send(method: 'GET' | 'PATCH' | 'PUT' | 'DELETE', path: string, body?: { text: string; type: string }): Promise<string> {
    return kubeRequest(this.kc, method, path, body, this.options.requestTimeoutMs ?? 15_000);
  }

  /** An object as the informer of `r` keeps it (trim.ts); null when vmroll reads nothing of it. */
  private kept(r: Resource, o: Obj): Obj | null {
    return trimLive(r.kind, `${r.group}/${r.version}`, o);
  }

  /** Every object of a resource, page by page ({@link LIST_PAGE_SIZE} a page), as the informer keeps them. */
  private async listAll(r: Resource): Promise<ListResult> {
    const items: Obj[] = [];
    const apiVersion = `${r.group}/${r.version}`;
    const limit = this.options.listPageSize ?? LIST_PAGE_SIZE;
    let next: string | undefined;
    let resourceVersion = '';
    do {
      const query = `?limit=${limit}${next !== undefined ? `&continue=${encodeURIComponent(next)}` : ''}`;
      const text = await this.retrying(`listing ${r.plural}.${r.group}`, () => this.call('list', r.plural, () => this.send('GET', `/apis/${apiVersion}/${r.plural}${query}`)));
      const page = JSON.parse(text) as Obj;
      const meta = metaOf(page);
      // Lists drop apiVersion and kind from their items; trimLive puts them back so objects look the same as watched ones.
      for (const item of (page['items'] ?? []) as Obj[]) {
        const kept = this.kept(r, item);
        if (kept !== null) items.push(kept);
      }
      resourceVersion = String(meta['resourceVersion'] ?? '');
      next = typeof meta['continue'] === 'string' && meta['continue'] !== '' ? meta['continue'] : undefined;
    } while (next !== undefined);
    return { items, resourceVersion };
  }

  /**
   * A watch with bookmarks from `resourceVersion`; events carry objects as the informer keeps them
   * (an object vmroll does not read, such as another controller's revision, is not passed on).
   * Resolves once the server answered (or the request failed: then `done` has been called).
   */
  private async watchFrom(r: Resource, resourceVersion: string, onEvent: (type: string, object: Obj) => void, done: (error: unknown) => void): Promise<WatchHandle> {
    this.requests.set(`watch ${r.plural}`, (this.requests.get(`watch ${r.plural}`) ?? 0) + 1);
    const apiVersion = `${r.group}/${r.version}`;
    // The server ends each watch after a few minutes (spread so they do not all reconnect at once).
    const timeoutSeconds = 240 + Math.floor(Math.random() * 60);
    const path = `/apis/${apiVersion}/${r.plural}?watch=true&allowWatchBookmarks=true&resourceVersion=${encodeURIComponent(resourceVersion)}&timeoutSeconds=${timeoutSeconds}`;
    const controller = new AbortController();
    let timedOut = false;
    let timer: NodeJS.Timeout | undefined;
    // Servers send a bookmark about once a minute; a watch silent for longer than this is dead.
    const alive = (): void => {
      clearTimeout(timer);
      timer = setTimeout(() => {
        timedOut = true;
        controller.abort();
      }, WATCH_SILENCE_MS);
      timer.unref();
    };
    let finished = false;
    const finish = (error: unknown): void => {
      if (finished) return;
      finished = true;
      clearTimeout(timer);
      controller.abort();
      done(error !== null && timedOut ? new DOMException('The watch was silent for too long', 'TimeoutError') : error);
    };
    const handle: WatchHandle = { abort: () => finish(null) };
    const lines = lineSplitter((line) => {
      let event: { type?: unknown; object?: unknown };
      try {
        event = JSON.parse(line) as { type?: unknown; object?: unknown };
      } catch {
        return; // Not an event (a proxy's noise): skipped, as client-node's Watch did.
      }
      const type = String(event.type ?? '');
      const object = (typeof event.object === 'object' && event.object !== null ? event.object : {}) as Obj;
      try {
        if (type === 'ADDED' || type === 'MODIFIED' || type === 'DELETED') {
          const kept = this.kept(r, object);
          if (kept !== null) onEvent(type, kept);
        } else {
          onEvent(type, object);
        }
      } catch (e) {
        // A listener's fault must not end the process from inside a socket callback (client-node's Watch swallowed it too).
        this.options.logger?.error({ kind: r.kind, err: e instanceof Error ? e.message : String(e) }, 'watch event handler failed');
      }
    });
    try {
      alive();
      const url = `${this.server.replace(/\/$/, '')}${path}`;
      let credentials = await this.kc.credentials();
      const open = (): ReturnType<typeof request> =>
        request(url, { method: 'GET', headers: { ...credentials.headers, accept: 'application/json' }, signal: controller.signal, dispatcher: credentials.dispatcher });
      let response = await open();
      if (response.statusCode === 401 && this.kc.unauthorized(credentials)) {
        // Rotated credentials (a new service account token, an expired plugin token): fetched again, once.
        await response.body.text().catch(() => '');
        credentials = await this.kc.credentials();
        response = await open();
      }
      if (response.statusCode !== 200) {
        const text = await response.body.text().catch(() => '');
        finish(Object.assign(new Error(`watch ${r.plural}: HTTP ${response.statusCode} ${text.slice(0, 200)}`), { statusCode: response.statusCode }));
        return handle;
      }
      alive();
      response.body.on('data', (chunk: Buffer) => {
        if (finished) return;
        alive();
        lines.push(chunk);
      });
      response.body.on('end', () => finish(null));
      response.body.on('error', (e: unknown) => finish(e));
      response.body.on('close', () => finish(null));
    } catch (e) {
      finish(e);
    }
    return handle;
  }
}

/**
 * One request to the API server of `kc` with its credentials and pool: the answer's text, or an
 * {@link ApiStatusError} for a status of 300 or more. A 401 fetches file or plugin credentials
 * again and retries once (a rotated token).
 */
export async function kubeRequest(kc: KubeClusterConfig, method: 'GET' | 'POST' | 'PATCH' | 'PUT' | 'DELETE', path: string, body: { text: string; type: string } | undefined, timeoutMs: number): Promise<string> {
  const url = `${kc.server.replace(/\/$/, '')}${path}`;
  const signal = AbortSignal.timeout(timeoutMs);
  for (let attempt = 0; ; attempt++) {
    const credentials = await kc.credentials();
    const response = await request(url, {
      method,
      headers: { ...credentials.headers, accept: 'application/json', ...(body !== undefined ? { 'content-type': body.type } : {}) },
      ...(body !== undefined ? { body: body.text } : {}),
      dispatcher: credentials.dispatcher,
      signal,
    });
    const text = await response.body.text();
    if (response.statusCode === 401 && attempt === 0 && kc.unauthorized(credentials)) continue;
    if (response.statusCode >= 300) throw new ApiStatusError(response.statusCode, text);
    return text;
  }
}
