/**
 * A Kubernetes-API-compatible HTTP server over the embedded KubeVirt simulator, so kubectl,
 * @kubernetes/client-node and `vmroll run --cluster kube` can talk to a cluster that needs
 * no cluster: discovery, get/list/watch, create/update/patch (JSON, merge, server-side
 * apply)/delete, the status subresource, KubeVirt's start/stop/restart, and errors as the
 * `Status` objects Kubernetes answers with. Every VirtualMachine write drives the simulated
 * virt-controller, as a real cluster's controller would react to it.
 *
 * Write responses carry the object as stored by the write itself, before the controller acted
 * on it (as Kubernetes answers before any controller runs); what the controller did next
 * (a VMI, a RestartRequired condition) reaches clients through watches and later reads.
 *
 * Fault injection (latency, errors, conflicts, dropped watches) makes clients' retry and
 * relist paths testable; `/admin/*` sets faults and reads request counts, and is never
 * slowed or failed itself.
 */
import { randomBytes, randomUUID } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Logger } from 'pino';
import { parse as parseYaml } from 'yaml';
import { type Obj, parseStartRevisionName } from '../../rollout/index.ts';
import { BodyRefusal, parseListenAddress, readBody } from '../../http.ts';
import { isObj, metaOf } from '../object.ts';
import { type SchemaIssue, validateKubeVirt, validateVirtualMachine, validateVirtualMachineInstance } from '../../validate.ts';
import { admitMigration } from './migrationController.ts';
import { type ApplyConflict, PatchError, applyJsonPatch, applyMergePatch, recordUpdate, serverSideApply } from './patch.ts';
import {
  type ActionInfo,
  type ResourceInfo,
  RESOURCES,
  SERVER_VERSION,
  type VmAction,
  apiGroupDocument,
  apiGroupListDocument,
  apiResourceListDocument,
  apiVersionOf,
  apiVersionsDocument,
  lookupAction,
  lookupResource,
  qualifiedKind,
  qualifiedResource,
  servesGroupVersion,
} from './resources.ts';
import { type Selector, SelectorError, parseFieldSelector, parseLabelSelector } from './selectors.ts';
import type { SimCluster } from './simCluster.ts';
import type { StoredEvent } from './store.ts';

/** Faults the server injects into API requests (never into `/admin/*`). */
export interface ApiFaults {
  /** Delay before every API request is handled, discovery included. */
  latencyMs?: number;
  /** Share (0..1) of resource requests answered with {@link errorStatus}. */
  errorRate?: number;
  /** The status injected errors carry: 500 InternalError (default) or 503 ServiceUnavailable. */
  errorStatus?: 500 | 503;
  /** Share (0..1) of writes to existing objects (update, patch, apply, delete) answered 409 Conflict. */
  conflictRate?: number;
  /** Watch streams end this long after they started. */
  dropWatchesAfterMs?: number;
  /** The next n resource requests fail with {@link errorStatus}, whatever the rates. */
  failNext?: number;
  /** Seed of the generator that decides which requests fail (default 1); fixed, so runs repeat. */
  seed?: number;
}

/** What {@link startApiServer} needs. */
export interface ApiServerOptions {
  /** The simulator served. */
  cluster: SimCluster;
  /** `HOST:PORT`, `:PORT`, `PORT` or `[IPV6]:PORT`; port 0 picks a free one. */
  listen: string;
  /** Faults to start with. */
  faults?: ApiFaults;
  /** One debug line per request, warnings for controller failures. */
  logger?: Logger;
  /** Time between watch bookmarks (default 5 s; client-node gives up on a watch silent for 30 s). */
  bookmarkIntervalMs?: number;
  /** A state file is written this long after the first unsaved write (default 500 ms), and on close. */
  saveDelayMs?: number;
  /** Largest request body accepted (default 3 MiB, Kubernetes' own limit). */
  maxBodyBytes?: number;
  /** Called once per API request when it is answered (a watch: when it ends); tests check RBAC rules with it. */
  onRequest?: (info: ApiRequestInfo) => void;
}

/** One API request as an authorizer sees it (admin endpoints excluded). */
export interface ApiRequestInfo {
  /** False for discovery, version and OpenAPI documents (RBAC's non-resource URLs). */
  resourceRequest: boolean;
  /** get, list, watch, create, update, patch, delete, deletecollection, or `apply` (server-side apply, which RBAC checks as patch). */
  verb: string;
  /** The URL path. */
  path: string;
  /** API group ('' for the core group and for non-resource requests). */
  group: string;
  version: string;
  /** Plural resource name ('' for non-resource requests). */
  resource: string;
  /** `status`, or a KubeVirt action (`restart`, `start`, `stop`). */
  subresource: string | undefined;
  namespace: string | undefined;
  name: string | undefined;
  /** The HTTP status answered. */
  code: number;
}

/** Request counts since the start or the last reset; the benchmark counts reads and writes here. */
export interface ApiStats {
  /** Every API request (admin endpoints excluded). */
  requests: number;
  /** get, list and watch of resources. */
  reads: number;
  /** create, update, patch, apply, delete, deletecollection and KubeVirt actions. */
  writes: number;
  /** Version, discovery and OpenAPI documents. */
  discovery: number;
  /** Per verb: get, list, watch, create, update, patch, apply, delete, deletecollection. */
  byVerb: Record<string, number>;
  /** Per resource (`virtualmachines.kubevirt.io`, `virtualmachines/status.kubevirt.io`, …), then per verb. */
  byResource: Record<string, Record<string, number>>;
  /** Per HTTP status code answered. */
  byCode: Record<string, number>;
  /** Requests failed on purpose by the fault settings. */
  faultsInjected: number;
  /** Watch events sent (bookmarks included). */
  watchEvents: number;
  /** Watches open right now. */
  openWatches: number;
}

/** A listening API server. */
export interface ApiServer {
  /** `http://host:port`. */
  url: string;
  /** `host:port` actually bound. */
  address: string;
  /** The port actually bound. */
  port: number;
  /** Ends every watch, stops listening and writes the state file (if any). */
  close(): Promise<void>;
  /** Replaces the fault settings (and restarts the fault generator from its seed). */
  setFaults(faults: ApiFaults): void;
  /** The fault settings in force (failNext counts down). */
  faults(): ApiFaults;
  /** A copy of the request counts. */
  stats(): ApiStats;
  /** Zeroes the request counts. */
  resetStats(): void;
}

/** Status reasons the server answers with, as Kubernetes spells them. */
export const StatusReason = {
  /** 400: the request itself is malformed. */
  BadRequest: 'BadRequest',
  /** 404: no such object or path. */
  NotFound: 'NotFound',
  /** 405: the verb is not served here. */
  MethodNotAllowed: 'MethodNotAllowed',
  /** 409: create of an existing name. */
  AlreadyExists: 'AlreadyExists',
  /** 409: stale resourceVersion, failed precondition, apply conflict, or an action that does not fit the VM's state. */
  Conflict: 'Conflict',
  /** 410: a watch or list resumed from a version the server no longer has. */
  Expired: 'Expired',
  /** 410: the resource is gone. */
  Gone: 'Gone',
  /** 413: the body is too large. */
  RequestEntityTooLarge: 'RequestEntityTooLarge',
  /** 415: a body in a format the server does not read. */
  UnsupportedMediaType: 'UnsupportedMediaType',
  /** 422: the object fails validation. */
  Invalid: 'Invalid',
  /** 500. */
  InternalError: 'InternalError',
  /** 503. */
  ServiceUnavailable: 'ServiceUnavailable',
} as const;
/** One of {@link StatusReason}. */
export type StatusReason = (typeof StatusReason)[keyof typeof StatusReason];

/** One entry of a Status' `details.causes`. */
interface StatusCause {
  reason: string;
  message: string;
  field: string;
}

/** An error answered as a Kubernetes `Status` object. */
class ApiError extends Error {
  constructor(
    readonly code: number,
    readonly reason: StatusReason,
    message: string,
    readonly details: Obj | undefined = undefined,
  ) {
    super(message);
  }

  toStatus(): Obj {
    const status: Obj = { kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Failure', message: this.message, reason: this.reason };
    if (this.details !== undefined) status['details'] = this.details;
    status['code'] = this.code;
    return status;
  }
}

function details(r: { group: string }, kind: string, name: string | undefined, causes?: StatusCause[]): Obj {
  const d: Obj = {};
  if (name !== undefined && name !== '') d['name'] = name;
  if (r.group !== '') d['group'] = r.group;
  d['kind'] = kind;
  if (causes !== undefined) d['causes'] = causes;
  return d;
}

const notFound = (r: ResourceInfo | { group: string; resource: string }, name: string): ApiError =>
  new ApiError(404, 'NotFound', `${qualifiedResource(r)} "${name}" not found`, details(r, r.resource, name));
const alreadyExists = (r: ResourceInfo, name: string): ApiError =>
  new ApiError(409, 'AlreadyExists', `${qualifiedResource(r)} "${name}" already exists`, details(r, r.resource, name));
const conflict = (r: { group: string; resource: string }, name: string, why = 'the object has been modified; please apply your changes to the latest version and try again'): ApiError =>
  new ApiError(409, 'Conflict', `Operation cannot be fulfilled on ${qualifiedResource(r)} "${name}": ${why}`, details(r, r.resource, name));
const badRequest = (message: string): ApiError => new ApiError(400, 'BadRequest', message);
const pathNotFound = (): ApiError => new ApiError(404, 'NotFound', 'the server could not find the requested resource', {});
const methodNotAllowed = (): ApiError => new ApiError(405, 'MethodNotAllowed', 'the server does not allow this method on the requested resource', {});
const namespaceNotFound = (ns: string): ApiError => new ApiError(404, 'NotFound', `namespaces "${ns}" not found`, { name: ns, kind: 'namespaces' });

function invalid(r: ResourceInfo, name: string, causes: StatusCause[]): ApiError {
  const parts = causes.map((c) => (c.field === '' ? c.message : `${c.field}: ${c.message}`));
  const list = parts.length === 1 ? (parts[0] ?? '') : `[${parts.join(', ')}]`;
  return new ApiError(422, 'Invalid', `${qualifiedKind(r)} "${name}" is invalid: ${list}`, details(r, r.kind, name, causes));
}

function applyConflict(conflicts: readonly ApplyConflict[], live: Readonly<Obj> | undefined): ApiError {
  // An Update entry is named with its apiVersion, an Apply entry by name alone, as Kubernetes prints managers.
  const entries = (((live?.['metadata'] ?? {}) as Obj)['managedFields'] ?? []) as Obj[];
  const describe = (manager: string): string => {
    const e = entries.find((x) => x['manager'] === manager && x['operation'] === 'Update');
    return e !== undefined ? `"${manager}" using ${String(e['apiVersion'])}` : `"${manager}"`;
  };
  const causes = conflicts.map((c) => ({ reason: 'FieldManagerConflict', message: `conflict with ${describe(c.manager)}`, field: c.path }));
  let message: string;
  if (conflicts.length === 1) {
    const c = conflicts[0] as ApplyConflict;
    message = `Apply failed with 1 conflict: conflict with ${describe(c.manager)}: ${c.path}`;
  } else {
    const lines: string[] = [];
    for (const manager of [...new Set(conflicts.map((c) => c.manager))].sort()) {
      lines.push(`conflicts with ${describe(manager)}:`);
      for (const c of conflicts) if (c.manager === manager) lines.push(`- ${c.path}`);
    }
    message = `Apply failed with ${conflicts.length} conflicts: ${lines.join('\n')}`;
  }
  return new ApiError(409, 'Conflict', message, { causes });
}

// ---------------------------------------------------------------------------------------------
// Small helpers

function timestamp(): string {
  return new Date().toISOString().replace(/\.\d{3}Z$/, 'Z');
}

/** mulberry32: a tiny seeded generator, so which requests fail repeats from run to run. */
function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

const DNS1123_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
const DNS1123_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
const GENERATED_SUFFIX_ALPHABET = 'bcdfghjklmnpqrstvwxz2456789';

/** `kubectl/v1.20.2 (linux/amd64) kubernetes/faecb19` → `kubectl`: the manager Kubernetes records when none is named. */
function managerFromUserAgent(ua: string | undefined): string {
  const program = (ua ?? '').split('/')[0]?.trim() ?? '';
  return program === '' ? 'unknown' : program.slice(0, 128);
}

/** Checks fault settings from a flag or the admin endpoint; returns the message of the first problem. */
export function checkFaults(f: unknown): string | null {
  if (!isObj(f)) return 'faults must be a JSON object';
  const known = new Set(['latencyMs', 'errorRate', 'errorStatus', 'conflictRate', 'dropWatchesAfterMs', 'failNext', 'seed']);
  for (const [k, v] of Object.entries(f)) {
    if (!known.has(k)) return `unknown fault setting "${k}" (known: ${[...known].join(', ')})`;
    if (v === undefined) continue;
    if (typeof v !== 'number' || !Number.isFinite(v)) return `${k} must be a number`;
    if ((k === 'errorRate' || k === 'conflictRate') && (v < 0 || v > 1)) return `${k} must be between 0 and 1`;
    if (k === 'errorStatus' && v !== 500 && v !== 503) return 'errorStatus must be 500 or 503';
    if ((k === 'latencyMs' || k === 'dropWatchesAfterMs' || k === 'failNext') && v < 0) return `${k} must not be negative`;
  }
  return null;
}

// ---------------------------------------------------------------------------------------------
// Routing

/** A request for stored objects, after the URL was taken apart. */
interface Target {
  info: ResourceInfo;
  /** The URL's namespace; undefined for cluster-scoped resources and all-namespace lists. */
  namespace: string | undefined;
  name: string | undefined;
  subresource: 'status' | undefined;
}

type Route =
  | { type: 'document'; body: Obj | (() => Obj) }
  | { type: 'resource'; target: Target }
  | { type: 'action'; action: ActionInfo; namespace: string; name: string }
  | { type: 'openapi'; version: string };

function route(segments: readonly string[], serverAddress: string): Route {
  let group: string;
  let rest: readonly string[];
  if (segments[0] === 'api') {
    if (segments.length === 1) return { type: 'document', body: apiVersionsDocument(serverAddress) };
    group = '';
    rest = segments.slice(1);
  } else if (segments[0] === 'apis') {
    if (segments.length === 1) return { type: 'document', body: apiGroupListDocument() };
    group = segments[1] ?? '';
    if (segments.length === 2) {
      const doc = apiGroupDocument(group);
      if (doc === undefined) throw pathNotFound();
      return { type: 'document', body: doc };
    }
    rest = segments.slice(2);
  } else if (segments[0] === 'version' && segments.length === 1) {
    return { type: 'document', body: () => versionDocument() };
  } else if (segments[0] === 'openapi' && segments.length === 2) {
    return { type: 'openapi', version: segments[1] ?? '' };
  } else {
    throw pathNotFound();
  }
  const version = rest[0] ?? '';
  if (!servesGroupVersion(group, version)) throw pathNotFound();
  if (rest.length === 1) {
    const doc = apiResourceListDocument(group, version);
    if (doc === undefined) throw pathNotFound();
    return { type: 'document', body: doc };
  }
  const parts = rest.slice(1);
  let namespace: string | undefined;
  let i = 0;
  if (parts[0] === 'namespaces' && parts.length >= 3) {
    const candidate = parts[2] ?? '';
    const action = parts.length === 5 ? lookupAction(group, version, candidate, parts[4] ?? '') : undefined;
    if (action !== undefined) return { type: 'action', action, namespace: parts[1] ?? '', name: parts[3] ?? '' };
    if (lookupResource(group, version, candidate)?.namespaced === true) {
      namespace = parts[1];
      i = 2;
    }
  }
  const info = lookupResource(group, version, parts[i] ?? '');
  const name = parts[i + 1];
  const sub = parts[i + 2];
  if (info === undefined || parts.length > i + 3) throw pathNotFound();
  if (!info.namespaced && namespace !== undefined) throw pathNotFound();
  if (info.namespaced && namespace === undefined && name !== undefined) throw pathNotFound();
  if (sub !== undefined && (sub !== 'status' || !info.hasStatus)) throw pathNotFound();
  if (name === '' || namespace === '') throw pathNotFound();
  return { type: 'resource', target: { info, namespace, name, subresource: sub === 'status' ? 'status' : undefined } };
}

function versionDocument(): Obj {
  return {
    ...SERVER_VERSION,
    gitCommit: '0000000000000000000000000000000000000000',
    gitTreeState: 'clean',
    buildDate: '2024-04-17T00:00:00Z',
    goVersion: 'go1.22.2',
    compiler: 'gc',
    platform: `${process.platform}/${process.arch === 'x64' ? 'amd64' : process.arch}`,
  };
}

/** Protocol-buffer field `n` holding `payload` (wire type 2, length-delimited). */
function protoField(n: number, payload: Buffer): Buffer {
  const varint = (v: number): number[] => {
    const out: number[] = [];
    while (v > 0x7f) {
      out.push((v & 0x7f) | 0x80);
      v >>>= 7;
    }
    out.push(v);
    return out;
  };
  return Buffer.concat([Buffer.from([...varint((n << 3) | 2), ...varint(payload.length)]), payload]);
}

/** `{swagger: "2.0", info: {title, version}, paths: {}}` as an openapi.v2.Document message (swagger = 1, info = 2, paths = 8; Info: title = 1, version = 2). */
function emptyOpenApiV2Protobuf(): Buffer {
  const info = Buffer.concat([protoField(1, Buffer.from('Kubernetes')), protoField(2, Buffer.from(SERVER_VERSION.gitVersion))]);
  return Buffer.concat([protoField(1, Buffer.from('2.0')), protoField(2, info), protoField(8, Buffer.alloc(0))]);
}

// ---------------------------------------------------------------------------------------------
// The server

/** Kubernetes' bootstrap namespaces, which a fresh cluster always has. */
const BOOTSTRAP_NAMESPACES = ['default', 'kube-system', 'kube-public', 'kube-node-lease'];

/** A watch slower than this many unsent bytes is ended; its client relists, as with Kubernetes. */
const MAX_WATCH_BACKLOG = 64 * 1024 * 1024;

interface OpenWatch {
  startedAt: number;
  /** Restarts the drop timer from the current fault settings. */
  rearm(): void;
  end(): void;
}

function emptyStats(): ApiStats {
  return { requests: 0, reads: 0, writes: 0, discovery: 0, byVerb: {}, byResource: {}, byCode: {}, faultsInjected: 0, watchEvents: 0, openWatches: 0 };
}

const READ_VERBS = new Set(['get', 'list', 'watch']);

class ApiHandler {
  private faultSettings: ApiFaults = {};
  private random: () => number = seededRandom(1);
  private counters: ApiStats = emptyStats();
  readonly watches = new Set<OpenWatch>();
  private saveTimer: NodeJS.Timeout | null = null;
  private readonly bookmarkIntervalMs: number;
  private readonly saveDelayMs: number;
  private readonly maxBodyBytes: number;
  private readonly onRequest: ApiServerOptions['onRequest'];
  serverAddress = '';

  constructor(
    private readonly cluster: SimCluster,
    private readonly logger: Logger | undefined,
    options: ApiServerOptions,
  ) {
    this.bookmarkIntervalMs = options.bookmarkIntervalMs ?? 5_000;
    this.saveDelayMs = options.saveDelayMs ?? 500;
    this.maxBodyBytes = options.maxBodyBytes ?? 3 * 1024 * 1024;
    this.onRequest = options.onRequest;
    this.setFaults(options.faults ?? {});
  }

  private get store(): SimCluster['store'] {
    return this.cluster.store;
  }

  setFaults(f: ApiFaults): void {
    const problem = checkFaults(f);
    if (problem !== null) throw new RangeError(problem);
    this.faultSettings = { ...f };
    this.random = seededRandom(f.seed ?? 1);
    for (const w of this.watches) w.rearm();
  }

  faults(): ApiFaults {
    return { ...this.faultSettings };
  }

  stats(): ApiStats {
    return { ...structuredClone(this.counters), openWatches: this.watches.size };
  }

  resetStats(): void {
    this.counters = emptyStats();
  }

  /** Writes the state file soon; several writes in a row cost one save. */
  scheduleSave(): void {
    if (this.cluster.stateFile === undefined || this.saveTimer !== null) return;
    this.saveTimer = setTimeout(() => this.flushSave(), this.saveDelayMs);
  }

  flushSave(): void {
    if (this.saveTimer !== null) clearTimeout(this.saveTimer);
    this.saveTimer = null;
    try {
      this.cluster.save();
    } catch (e) {
      this.logger?.error({ err: e instanceof Error ? e.message : String(e) }, 'cannot write the simulator state file');
    }
  }

  // ---- request entry -------------------------------------------------------------------------

  handle(req: IncomingMessage, res: ServerResponse): void {
    const started = Date.now();
    const url = new URL(req.url ?? '/', 'http://sim.invalid');
    const segments = url.pathname
      .split('/')
      .filter((s) => s !== '')
      .map((s) => {
        try {
          return decodeURIComponent(s);
        } catch {
          return s;
        }
      });
    if (segments[0] === 'admin') {
      void this.admin(req, res, segments.slice(1)).catch((e: unknown) => this.fail(res, e));
      return;
    }
    this.counters.requests++;
    res.once('finish', () => {
      this.counters.byCode[String(res.statusCode)] = (this.counters.byCode[String(res.statusCode)] ?? 0) + 1;
      this.logger?.debug({ method: req.method, path: url.pathname, status: res.statusCode, ms: Date.now() - started }, 'api request');
    });
    void this.serve(req, res, segments, url.searchParams).catch((e: unknown) => this.fail(res, e));
  }

  private fail(res: ServerResponse, e: unknown): void {
    let error: ApiError;
    if (e instanceof ApiError) error = e;
    else {
      this.logger?.error({ err: e instanceof Error ? (e.stack ?? e.message) : String(e) }, 'api request failed');
      error = new ApiError(500, 'InternalError', `Internal error occurred: ${e instanceof Error ? e.message : String(e)}`, {});
    }
    if (res.headersSent) {
      res.destroy();
      return;
    }
    if (error.code === 503) res.setHeader('Retry-After', '1');
    sendJson(res, error.code, error.toStatus());
  }

  /** Reports the request to {@link ApiServerOptions.onRequest} once it is answered. */
  private observe(res: ServerResponse, info: Omit<ApiRequestInfo, 'code'>): void {
    const hook = this.onRequest;
    if (hook !== undefined) res.once('close', () => hook({ ...info, code: res.statusCode }));
  }

  private count(verb: string, resourceKey: string): void {
    const c = this.counters;
    c.byVerb[verb] = (c.byVerb[verb] ?? 0) + 1;
    const perResource = (c.byResource[resourceKey] ??= {});
    perResource[verb] = (perResource[verb] ?? 0) + 1;
    if (READ_VERBS.has(verb)) c.reads++;
    else c.writes++;
  }

  /** Decides whether this request fails on purpose; null lets it through. */
  private injectedFault(isWriteToExisting: boolean, r: { group: string; resource: string }, name: string | undefined): ApiError | null {
    const f = this.faultSettings;
    const failure = (): ApiError => {
      this.counters.faultsInjected++;
      return f.errorStatus === 503
        ? new ApiError(503, 'ServiceUnavailable', 'the server is currently unable to handle the request (injected fault)', {})
        : new ApiError(500, 'InternalError', 'Internal error occurred: injected fault', {});
    };
    if ((f.failNext ?? 0) > 0) {
      f.failNext = (f.failNext ?? 1) - 1;
      return failure();
    }
    if ((f.errorRate ?? 0) > 0 && this.random() < (f.errorRate ?? 0)) return failure();
    if (isWriteToExisting && (f.conflictRate ?? 0) > 0 && this.random() < (f.conflictRate ?? 0)) {
      this.counters.faultsInjected++;
      return conflict(r, name ?? '');
    }
    return null;
  }

  private async serve(req: IncomingMessage, res: ServerResponse, segments: string[], query: URLSearchParams): Promise<void> {
    const latency = this.faultSettings.latencyMs ?? 0;
    if (latency > 0) await sleep(latency);
    const method = req.method ?? 'GET';
    const path = segments.join('/');
    if (path === 'healthz' || path === 'livez' || path === 'readyz') {
      sendText(res, 200, 'ok');
      return;
    }
    const r = route(segments, this.serverAddress);
    if (r.type === 'document' || r.type === 'openapi') {
      this.counters.discovery++;
      this.observe(res, { resourceRequest: false, verb: method.toLowerCase(), path: `/${path}`, group: '', version: '', resource: '', subresource: undefined, namespace: undefined, name: undefined });
      if (method !== 'GET') throw methodNotAllowed();
      if (r.type === 'openapi') {
        // v3 is absent (clients fall back to v2). v2 is a document without schemas: kubectl 1.20's
        // apply refuses to run without one, and skips validation of kinds it does not describe.
        if (r.version !== 'v2') throw pathNotFound();
        if (/protobuf/.test(req.headers['accept'] ?? '')) {
          const body = emptyOpenApiV2Protobuf();
          res.writeHead(200, { 'Content-Type': 'application/octet-stream', 'Content-Length': body.length });
          res.end(body);
        } else {
          sendJson(res, 200, { swagger: '2.0', info: { title: 'Kubernetes', version: SERVER_VERSION.gitVersion }, paths: {} });
        }
        return;
      }
      sendJson(res, 200, typeof r.body === 'function' ? r.body() : r.body);
      return;
    }
    if (r.type === 'action') {
      await this.vmAction(req, res, method, r.action, r.namespace, r.name, query);
      return;
    }
    const t = r.target;
    const verb = verbOf(method, t, query, contentTypeOf(req));
    const resourceKey = qualifiedResource({ group: t.info.group, resource: t.subresource === undefined ? t.info.resource : `${t.info.resource}/${t.subresource}` });
    this.count(verb, resourceKey);
    this.observe(res, { resourceRequest: true, verb, path: `/${path}`, group: t.info.group, version: t.info.version, resource: t.info.resource, subresource: t.subresource, namespace: t.namespace, name: t.name });
    const writeToExisting = verb === 'update' || verb === 'patch' || verb === 'apply' || verb === 'delete';
    const fault = this.injectedFault(writeToExisting, t.info, t.name);
    if (fault !== null) throw fault;
    const dryRun = parseDryRun(query);
    switch (verb) {
      case 'get':
        this.get(req, res, t);
        return;
      case 'list':
        this.list(req, res, t, query);
        return;
      case 'watch':
        this.watch(req, res, t, query);
        return;
      case 'create':
        sendJson(res, 201, this.create(t, parseJsonBody(await this.readBody(req)), this.manager(req, query), dryRun));
        return;
      case 'update':
        sendJson(res, 200, this.update(t, parseJsonBody(await this.readBody(req)), this.manager(req, query), dryRun));
        return;
      case 'patch':
        sendJson(res, 200, this.patch(t, contentTypeOf(req), await this.readBody(req), this.manager(req, query), dryRun));
        return;
      case 'apply': {
        const manager = query.get('fieldManager') ?? '';
        if (manager === '') {
          throw new ApiError(422, 'Invalid', 'PatchOptions.meta.k8s.io "" is invalid: fieldManager: Required value: is required for apply patch', {
            group: 'meta.k8s.io',
            kind: 'PatchOptions',
            causes: [{ reason: 'FieldValueRequired', message: 'Required value: is required for apply patch', field: 'fieldManager' }],
          });
        }
        const force = parseBool(query.get('force'), 'force');
        const { object, created } = this.apply(t, await this.readBody(req), manager, force, dryRun);
        sendJson(res, created ? 201 : 200, object);
        return;
      }
      case 'delete':
        sendJson(res, 200, this.delete(t, await this.readBody(req), dryRun));
        return;
      case 'deletecollection':
        sendJson(res, 200, this.deleteCollection(t, query, dryRun));
        return;
    }
  }

  private manager(req: IncomingMessage, query: URLSearchParams): string {
    const named = query.get('fieldManager');
    return named !== null && named !== '' ? named.slice(0, 128) : managerFromUserAgent(req.headers['user-agent']);
  }

  private async readBody(req: IncomingMessage): Promise<Buffer> {
    const body = await readBody(req, this.maxBodyBytes);
    if (body === BodyRefusal.tooLarge) throw new ApiError(413, 'RequestEntityTooLarge', `the request body exceeds the limit of ${this.maxBodyBytes} bytes`, {});
    if (body === BodyRefusal.aborted) throw new Error('the client went away before the request body ended');
    return body;
  }

  // ---- reads -------------------------------------------------------------------------------

  private get(req: IncomingMessage, res: ServerResponse, t: Target): void {
    const o = this.store.peek(t.info.kind, t.namespace, t.name ?? '');
    if (o === undefined) throw notFound(t.info, t.name ?? '');
    // `kubectl get <kind> <name>` asks for a Table too; a bare object would print only NAME and AGE.
    if (wantsTable(req)) sendJson(res, 200, toTable(t.info, [o], { resourceVersion: String(metaOf(o)['resourceVersion'] ?? '') }));
    else sendJson(res, 200, o);
  }

  private selector(t: Target, query: URLSearchParams): Selector {
    try {
      const labels = parseLabelSelector(query.get('labelSelector') ?? '');
      const fields = parseFieldSelector(query.get('fieldSelector') ?? '');
      return (o) => labels(o) && fields(o);
    } catch (e) {
      if (e instanceof SelectorError) throw badRequest(e.message);
      throw e;
    }
  }

  private list(req: IncomingMessage, res: ServerResponse, t: Target, query: URLSearchParams): void {
    const match = this.selector(t, query);
    const items: Readonly<Obj>[] = [];
    for (const o of this.store.scan(t.info.kind, t.namespace)) if (match(o)) items.push(o);
    const key = (o: Readonly<Obj>): string => `${String(metaOf(o)['namespace'] ?? '')}/${String(metaOf(o)['name'] ?? '')}`;
    const keyed = items.map((o) => ({ key: key(o), o })).sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
    let start = 0;
    const cont = query.get('continue');
    if (cont !== null && cont !== '') {
      const after = decodeContinue(cont);
      while (start < keyed.length && (keyed[start]?.key ?? '') <= after) start++;
    }
    const limit = Number(query.get('limit') ?? '0');
    const end = Number.isInteger(limit) && limit > 0 ? Math.min(keyed.length, start + limit) : keyed.length;
    const page = keyed.slice(start, end);
    const metadata: Obj = { resourceVersion: this.store.resourceVersion };
    if (end < keyed.length) {
      metadata['continue'] = Buffer.from(JSON.stringify({ after: page[page.length - 1]?.key ?? '' })).toString('base64url');
      metadata['remainingItemCount'] = keyed.length - end;
    }
    const body = { apiVersion: apiVersionOf(t.info), kind: `${t.info.kind}List`, metadata, items: page.map((x) => x.o) };
    if (wantsTable(req)) sendJson(res, 200, toTable(t.info, body.items, metadata));
    else sendJson(res, 200, body);
  }

  private watch(req: IncomingMessage, res: ServerResponse, t: Target, query: URLSearchParams): void {
    const match = this.selector(t, query);
    const inScope = (o: Readonly<Obj>): boolean => (t.namespace === undefined || metaOf(o)['namespace'] === t.namespace) && (t.name === undefined || metaOf(o)['name'] === t.name);
    const visible = (o: Readonly<Obj> | undefined): boolean => o !== undefined && inScope(o) && match(o);
    const rvText = query.get('resourceVersion') ?? '';
    if (rvText !== '' && !/^\d+$/.test(rvText)) throw badRequest(`resourceVersion: Invalid value: "${rvText}": must be a non-negative integer`);
    const bookmarks = parseBool(query.get('allowWatchBookmarks'), 'allowWatchBookmarks');
    const timeoutText = query.get('timeoutSeconds');
    const timeoutSeconds = timeoutText === null ? 0 : Number(timeoutText);
    if (!Number.isFinite(timeoutSeconds) || timeoutSeconds < 0) throw badRequest(`timeoutSeconds: Invalid value: "${timeoutText ?? ''}"`);
    // Kubernetes starts both an unversioned watch and one "at any version" (0) with the current state as ADDED events.
    const fromNow = rvText === '' || rvText === '0';
    const replay = fromNow ? [] : this.store.eventsSince(Number(rvText));

    res.writeHead(200, { 'Content-Type': 'application/json', 'Cache-Control': 'no-cache, private', 'Transfer-Encoding': 'chunked' });
    res.flushHeaders();
    if (replay === null) {
      // As Kubernetes does: the watch itself succeeds and its only event says to relist.
      const expired = new ApiError(410, 'Expired', `too old resource version: ${rvText} (${this.store.oldestResumableVersion})`).toStatus();
      this.counters.watchEvents++;
      res.end(`${JSON.stringify({ type: 'ERROR', object: expired })}\n`);
      return;
    }

    let ended = false;
    let dropTimer: NodeJS.Timeout | null = null;
    let timeoutTimer: NodeJS.Timeout | null = null;
    let bookmarkTimer: NodeJS.Timeout | null = null;
    let unsubscribe = (): void => {};
    const end = (): void => {
      if (ended) return;
      ended = true;
      unsubscribe();
      if (dropTimer !== null) clearTimeout(dropTimer);
      if (timeoutTimer !== null) clearTimeout(timeoutTimer);
      if (bookmarkTimer !== null) clearInterval(bookmarkTimer);
      this.watches.delete(open);
      if (!res.writableEnded) res.end();
    };
    const open: OpenWatch = {
      startedAt: Date.now(),
      rearm: () => {
        if (dropTimer !== null) clearTimeout(dropTimer);
        dropTimer = null;
        const after = this.faultSettings.dropWatchesAfterMs;
        if (after !== undefined && after > 0) dropTimer = setTimeout(end, Math.max(0, open.startedAt + after - Date.now()));
      },
      end,
    };
    this.watches.add(open);
    res.on('close', end);

    const table = wantsTable(req);
    const send = (type: string, object: Readonly<Obj>): void => {
      if (ended) return;
      this.counters.watchEvents++;
      const shown = table && type !== 'BOOKMARK' ? toTable(t.info, [object], { resourceVersion: String(metaOf(object)['resourceVersion'] ?? '') }) : object;
      res.write(`${JSON.stringify({ type, object: shown })}\n`);
      if (res.writableLength > MAX_WATCH_BACKLOG) end();
    };
    const translate = (e: StoredEvent): void => {
      if (e.kind !== t.info.kind) return;
      const now = visible(e.object);
      if (e.type === 'ADDED') {
        if (now) send('ADDED', e.object);
        return;
      }
      const was = visible(e.previous);
      if (e.type === 'DELETED') {
        if (now || was) send('DELETED', e.object);
        return;
      }
      // An object entering or leaving the selection is ADDED or DELETED for this watch, as with Kubernetes.
      if (now && was) send('MODIFIED', e.object);
      else if (now) send('ADDED', e.object);
      else if (was) send('DELETED', e.object);
    };
    const bookmark = (): void => send('BOOKMARK', { kind: t.info.kind, apiVersion: apiVersionOf(t.info), metadata: { resourceVersion: this.store.resourceVersion } });

    if (fromNow) {
      for (const o of this.store.scan(t.info.kind, t.namespace)) if (visible(o)) send('ADDED', o);
    } else {
      for (const e of replay) translate(e);
    }
    if (ended) return;
    unsubscribe = this.store.watch(translate);
    if (bookmarks) {
      bookmark();
      bookmarkTimer = setInterval(bookmark, this.bookmarkIntervalMs);
    }
    if (timeoutSeconds > 0) timeoutTimer = setTimeout(end, timeoutSeconds * 1000);
    open.rearm();
  }

  // ---- writes ------------------------------------------------------------------------------

  /** Fills in or checks apiVersion, kind, namespace and name against the URL. */
  private checkIdentity(t: Target, body: Obj, urlName: string | undefined): Obj {
    const apiVersion = apiVersionOf(t.info);
    if (body['apiVersion'] === undefined) body['apiVersion'] = apiVersion;
    else if (body['apiVersion'] !== apiVersion) {
      throw badRequest(`the API version in the data (${String(body['apiVersion'])}) does not match the expected API version (${apiVersion})`);
    }
    if (body['kind'] === undefined) body['kind'] = t.info.kind;
    else if (body['kind'] !== t.info.kind) throw badRequest(`the kind in the data (${String(body['kind'])}) does not match the expected kind (${t.info.kind})`);
    if (body['metadata'] === undefined) body['metadata'] = {};
    const meta = body['metadata'];
    if (!isObj(meta)) throw badRequest('metadata must be an object');
    if (t.info.namespaced) {
      if (meta['namespace'] === undefined || meta['namespace'] === '') meta['namespace'] = t.namespace;
      else if (meta['namespace'] !== t.namespace) throw badRequest('the namespace of the provided object does not match the namespace sent on the request');
    } else {
      delete meta['namespace'];
    }
    if (urlName !== undefined) {
      if (meta['name'] === undefined || meta['name'] === '') meta['name'] = urlName;
      else if (meta['name'] !== urlName) throw badRequest(`the name of the object (${String(meta['name'])}) does not match the name on the URL (${urlName})`);
    }
    return meta;
  }

  private requireNamespace(t: Target): void {
    if (t.info.namespaced && t.namespace !== undefined && !this.store.has('Namespace', undefined, t.namespace)) throw namespaceNotFound(t.namespace);
  }

  /** Field-level validation; every problem becomes one cause of a 422. */
  private validate(t: Target, o: Obj): void {
    const meta = metaOf(o);
    const name = typeof meta['name'] === 'string' ? meta['name'] : '';
    const causes: StatusCause[] = [];
    if (name === '') causes.push({ reason: 'FieldValueRequired', message: 'Required value: name or generateName is required', field: 'metadata.name' });
    else {
      const label = t.info.kind === 'Namespace';
      if (label ? !DNS1123_LABEL.test(name) || name.length > 63 : !DNS1123_SUBDOMAIN.test(name) || name.length > 253) {
        causes.push({
          reason: 'FieldValueInvalid',
          message: `Invalid value: "${name}": a lowercase RFC 1123 ${label ? 'label' : 'subdomain'} must consist of lower case alphanumeric characters, '-'${label ? '' : " or '.'"}, and must start and end with an alphanumeric character`,
          field: 'metadata.name',
        });
      }
    }
    for (const field of ['labels', 'annotations'] as const) {
      const v = meta[field];
      if (v === undefined || v === null) continue;
      if (!isObj(v)) causes.push({ reason: 'FieldValueInvalid', message: 'Invalid value: must be a map of strings', field: `metadata.${field}` });
      else for (const [k, x] of Object.entries(v)) if (typeof x !== 'string') causes.push({ reason: 'FieldValueInvalid', message: `Invalid value: ${JSON.stringify(x)}: must be a string`, field: `metadata.${field}.${k}` });
    }
    const spec = o['spec'];
    if (spec !== undefined && !isObj(spec)) causes.push({ reason: 'FieldValueInvalid', message: `Invalid value: ${JSON.stringify(spec)}: must be an object`, field: 'spec' });
    else if (causes.length === 0) {
      const { status: _status, ...withoutStatus } = o;
      const check = { VirtualMachine: validateVirtualMachine, VirtualMachineInstance: validateVirtualMachineInstance, KubeVirt: validateKubeVirt }[t.info.kind];
      const result = check?.(withoutStatus);
      if (result !== undefined && !result.ok) causes.push(...result.errors.map(issueCause));
    }
    if (causes.length > 0) throw invalid(t.info, name, causes);
  }

  /**
   * What every accepted write does next: the simulated controllers react, the state file follows.
   * Status writes leave the controller alone, so what a client wrote there stays readable.
   */
  private afterWrite(kind: string, namespace: string | undefined, name: string, subresource?: string): void {
    if ((kind === 'VirtualMachine' || kind === 'VirtualMachineInstance') && namespace !== undefined && subresource === undefined) {
      try {
        this.cluster.controller.reconcile(namespace, name);
      } catch (e) {
        this.logger?.warn({ namespace, name, err: e instanceof Error ? e.message : String(e) }, 'simulated virt-controller failed');
      }
    }
    this.scheduleSave();
  }

  private commitCreate(t: Target, obj: Obj, dryRun: boolean): Readonly<Obj> {
    const meta = metaOf(obj);
    const name = String(meta['name']);
    if (this.store.has(t.info.kind, t.namespace, name)) throw alreadyExists(t.info, name);
    if (dryRun) {
      return { ...obj, metadata: { ...meta, uid: randomUUID(), generation: 1, creationTimestamp: timestamp() } };
    }
    if (t.info.kind === 'Namespace') obj['status'] = { phase: 'Active' };
    const stored = this.store.adopt(obj);
    this.afterWrite(t.info.kind, t.namespace, name);
    return stored;
  }

  private commitReplace(t: Target, next: Obj, dryRun: boolean): Readonly<Obj> {
    const name = String(metaOf(next)['name']);
    const current = this.store.peek(t.info.kind, t.namespace, name);
    if (current === undefined) throw notFound(t.info, name);
    const rv = metaOf(next)['resourceVersion'];
    if (rv !== undefined && rv !== '' && rv !== metaOf(current)['resourceVersion']) throw conflict(t.info, name);
    if (dryRun) return next;
    const stored = this.store.replace(next);
    if (stored !== current) this.afterWrite(t.info.kind, t.namespace, name, t.subresource);
    return stored;
  }

  private create(t: Target, body: Obj, manager: string, dryRun: boolean): Readonly<Obj> {
    if (t.subresource !== undefined || (t.info.namespaced && t.namespace === undefined)) throw methodNotAllowed();
    const meta = this.checkIdentity(t, body, undefined);
    if ((meta['name'] === undefined || meta['name'] === '') && typeof meta['generateName'] === 'string' && meta['generateName'] !== '') {
      const bytes = randomBytes(5);
      meta['name'] = meta['generateName'] + [...bytes].map((b) => GENERATED_SUFFIX_ALPHABET[b % GENERATED_SUFFIX_ALPHABET.length]).join('');
    }
    if (meta['resourceVersion'] !== undefined && meta['resourceVersion'] !== '') throw badRequest('resourceVersion should not be set on objects to be created');
    for (const k of ['uid', 'creationTimestamp', 'generation', 'deletionTimestamp', 'deletionGracePeriodSeconds', 'selfLink']) delete meta[k];
    // Status belongs to the controllers: a create through the main resource drops it, as Kubernetes does.
    if (t.info.hasStatus) delete body['status'];
    this.requireNamespace(t);
    this.validate(t, body);
    if (t.info.kind === 'VirtualMachineInstanceMigration') {
      // virt-api's validating webhook for new migrations.
      const denied = admitMigration(this.store, body);
      if (denied !== null) throw new ApiError(422, 'Invalid', `admission webhook "migration-create-validator.kubevirt.io" denied the request: ${denied}`, {});
    }
    return this.commitCreate(t, recordUpdate(undefined, body, { manager, now: timestamp() }), dryRun);
  }

  private update(t: Target, body: Obj, manager: string, dryRun: boolean): Readonly<Obj> {
    const name = t.name ?? '';
    this.checkIdentity(t, body, name);
    const before = this.store.peek(t.info.kind, t.namespace, name);
    if (before === undefined) throw notFound(t.info, name);
    const sentRv = metaOf(body)['resourceVersion'];
    if (sentRv !== undefined && sentRv !== '' && sentRv !== metaOf(before)['resourceVersion']) throw conflict(t.info, name);
    const next = this.mergeScope(t, before, body);
    this.validate(t, next);
    return this.commitReplace(t, recordUpdate(before as Obj, next, { manager, now: timestamp(), ...(t.subresource !== undefined ? { subresource: t.subresource } : {}) }), dryRun);
  }

  /**
   * The object a write leaves: through `/status` only the status changes; through the main
   * resource everything but the status does. Server-owned metadata always stays. The result
   * shares parts with `before` and `written`; recordUpdate copies it before anything is stored.
   */
  private mergeScope(t: Target, before: Readonly<Obj>, written: Obj): Obj {
    const oldMeta = metaOf(before);
    if (t.subresource === 'status') {
      const next: Obj = { ...before, metadata: { ...oldMeta } };
      if (written['status'] === undefined) delete next['status'];
      else next['status'] = written['status'];
      return next;
    }
    const next: Obj = { ...written };
    if (t.info.hasStatus) {
      if (before['status'] === undefined) delete next['status'];
      else next['status'] = before['status'];
    }
    const meta: Obj = { ...metaOf(written) };
    for (const k of ['uid', 'creationTimestamp', 'generation', 'deletionTimestamp', 'deletionGracePeriodSeconds']) {
      if (oldMeta[k] === undefined) delete meta[k];
      else meta[k] = oldMeta[k];
    }
    meta['resourceVersion'] = oldMeta['resourceVersion'];
    next['metadata'] = meta;
    return next;
  }

  private patch(t: Target, contentType: string, raw: Buffer, manager: string, dryRun: boolean): Readonly<Obj> {
    const name = t.name ?? '';
    if (contentType !== 'application/json-patch+json' && contentType !== 'application/merge-patch+json' && contentType !== 'application/strategic-merge-patch+json') {
      throw new ApiError(
        415,
        'UnsupportedMediaType',
        `the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml, application/strategic-merge-patch+json`,
        {},
      );
    }
    const before = this.store.peek(t.info.kind, t.namespace, name);
    if (before === undefined) throw notFound(t.info, name);
    const body = parseJson(raw);
    let patched: Obj;
    try {
      // These kinds have no patch strategies (custom resources, or fields merged wholesale), so a strategic merge patch is a merge patch.
      patched = contentType === 'application/json-patch+json' ? applyJsonPatch(before as Obj, body) : applyMergePatch(before as Obj, body);
    } catch (e) {
      if (e instanceof PatchError) {
        if (e.reason === 'BadRequest') throw badRequest(e.message);
        throw invalid(t.info, name, [{ reason: 'FieldValueInvalid', message: e.message, field: '' }]);
      }
      throw e;
    }
    this.checkIdentity(t, patched, name);
    // A resourceVersion the patch itself sets is a precondition, as with Kubernetes.
    const sentRv = metaOf(patched)['resourceVersion'];
    if (sentRv !== undefined && sentRv !== null && sentRv !== metaOf(before)['resourceVersion']) throw conflict(t.info, name);
    const next = this.mergeScope(t, before, patched);
    this.validate(t, next);
    return this.commitReplace(t, recordUpdate(before as Obj, next, { manager, now: timestamp(), ...(t.subresource !== undefined ? { subresource: t.subresource } : {}) }), dryRun);
  }

  private apply(t: Target, raw: Buffer, manager: string, force: boolean, dryRun: boolean): { object: Readonly<Obj>; created: boolean } {
    const name = t.name ?? '';
    const text = raw.toString('utf8');
    let applied: unknown;
    try {
      // JSON is YAML, and clients (client-node, kubectl) send JSON: parse it as such, many times faster.
      applied = /^\s*\{/.test(text) ? JSON.parse(text) : parseYaml(text);
    } catch {
      try {
        applied = parseYaml(text);
      } catch (e) {
        throw badRequest(`error decoding YAML: ${e instanceof Error ? e.message : String(e)}`);
      }
    }
    if (!isObj(applied)) throw badRequest('the applied configuration must be an object');
    this.checkIdentity(t, applied, name);
    const live = this.store.peek(t.info.kind, t.namespace, name);
    const sentRv = metaOf(applied)['resourceVersion'];
    if (sentRv !== undefined && sentRv !== '' && (live === undefined || sentRv !== metaOf(live)['resourceVersion'])) throw conflict(t.info, name);
    if (live === undefined) {
      if (t.subresource !== undefined) throw notFound(t.info, name);
      this.requireNamespace(t);
    }
    const result = serverSideApply(live as Obj | undefined, applied, { manager, force, now: timestamp(), ...(t.subresource !== undefined ? { subresource: t.subresource } : {}) });
    if (!result.ok) throw applyConflict(result.conflicts, live);
    const next = result.object;
    if (live === undefined) {
      if (t.info.hasStatus) delete next['status'];
      this.validate(t, next);
      return { object: this.commitCreate(t, next, dryRun), created: true };
    }
    this.validate(t, next);
    return { object: this.commitReplace(t, next, dryRun), created: false };
  }

  private delete(t: Target, raw: Buffer, dryRun: boolean): Readonly<Obj> {
    if (t.subresource !== undefined) throw methodNotAllowed();
    const name = t.name ?? '';
    const current = this.store.peek(t.info.kind, t.namespace, name);
    if (current === undefined) throw notFound(t.info, name);
    const options = raw.length > 0 ? parseJson(raw) : {};
    if (isObj(options)) {
      const pre = options['preconditions'];
      if (isObj(pre)) {
        const meta = metaOf(current);
        if (pre['uid'] !== undefined && pre['uid'] !== null && pre['uid'] !== meta['uid']) {
          throw conflict(t.info, name, `Precondition failed: UID in precondition: ${String(pre['uid'])}, UID in object meta: ${String(meta['uid'])}`);
        }
        if (pre['resourceVersion'] !== undefined && pre['resourceVersion'] !== null && pre['resourceVersion'] !== meta['resourceVersion']) {
          throw conflict(t.info, name, `Precondition failed: ResourceVersion in precondition: ${String(pre['resourceVersion'])}, ResourceVersion in object meta: ${String(meta['resourceVersion'])}`);
        }
      }
      if (Array.isArray(options['dryRun']) && options['dryRun'].includes('All')) dryRun = true;
    }
    if (dryRun) return current;
    return this.remove(t.info, t.namespace, name);
  }

  /** Deletes one object with what follows from it: a namespace's contents, a VM's instance and start revisions. */
  private remove(info: ResourceInfo, namespace: string | undefined, name: string): Readonly<Obj> {
    if (info.kind === 'Namespace') {
      for (const r of RESOURCES) {
        if (!r.namespaced) continue;
        for (const o of [...this.store.scan(r.kind, name)]) {
          if (this.store.has(r.kind, name, String(metaOf(o)['name']))) this.remove(r, name, String(metaOf(o)['name']));
        }
      }
    }
    const gone = this.store.delete(info.kind, namespace, name);
    this.afterWrite(info.kind, namespace, name);
    if (info.kind === 'VirtualMachine' && namespace !== undefined) {
      // The garbage collector's part: start revisions are owned by the VM.
      const uid = String(metaOf(gone)['uid']);
      for (const rev of [...this.store.scan('ControllerRevision', namespace)]) {
        const revName = String(metaOf(rev)['name']);
        if (parseStartRevisionName(revName)?.uid === uid) this.store.delete('ControllerRevision', namespace, revName);
      }
    }
    return gone;
  }

  private deleteCollection(t: Target, query: URLSearchParams, dryRun: boolean): Obj {
    if (t.subresource !== undefined) throw methodNotAllowed();
    const match = this.selector(t, query);
    const doomed = [...this.store.scan(t.info.kind, t.namespace)].filter(match);
    const items = dryRun ? doomed : doomed.map((o) => this.remove(t.info, metaOf(o)['namespace'] as string | undefined, String(metaOf(o)['name'])));
    return { apiVersion: apiVersionOf(t.info), kind: `${t.info.kind}List`, metadata: { resourceVersion: this.store.resourceVersion }, items };
  }

  // ---- KubeVirt actions --------------------------------------------------------------------

  private async vmAction(req: IncomingMessage, res: ServerResponse, method: string, action: ActionInfo, namespace: string, name: string, query: URLSearchParams): Promise<void> {
    const vmResource = { group: 'kubevirt.io', resource: 'virtualmachines' };
    this.count('update', qualifiedResource({ group: action.group, resource: `${action.resource}/${action.action}` }));
    this.observe(res, { resourceRequest: true, verb: 'update', path: `/apis/${action.group}/${action.version}/namespaces/${namespace}/${action.resource}/${name}/${action.action}`, group: action.group, version: action.version, resource: action.resource, subresource: action.action, namespace, name });
    if (method !== 'PUT') throw methodNotAllowed();
    const fault = this.injectedFault(false, vmResource, name);
    if (fault !== null) throw fault;
    const raw = await this.readBody(req);
    const options = raw.length > 0 ? parseJson(raw) : {};
    const dryRun = parseDryRun(query) || (isObj(options) && Array.isArray(options['dryRun']) && options['dryRun'].includes('All'));
    const vm = this.store.peek('VirtualMachine', namespace, name);
    if (vm === undefined) throw notFound(vmResource, name);
    this.runAction(action.action, vm, namespace, name, dryRun);
    res.writeHead(202, { 'Content-Length': '0' });
    res.end();
  }

  /** KubeVirt's virt-api: start and stop change the runStrategy where it decides, restart cycles the instance. */
  private runAction(action: VmAction, vm: Readonly<Obj>, namespace: string, name: string, dryRun: boolean): void {
    const vmResource = { group: 'kubevirt.io', resource: 'virtualmachines' };
    const spec = isObj(vm['spec']) ? vm['spec'] : {};
    const strategy = typeof spec['runStrategy'] === 'string' ? spec['runStrategy'] : spec['running'] === true ? 'Always' : 'Halted';
    const running = this.store.has('VirtualMachineInstance', namespace, name);
    const controller = this.cluster.controller;
    const setStrategy = (next: 'Always' | 'Halted'): void => {
      const nextSpec: Obj = { ...spec };
      if (typeof spec['running'] === 'boolean') nextSpec['running'] = next === 'Always';
      else nextSpec['runStrategy'] = next;
      const written = recordUpdate(vm as Obj, { ...vm, spec: nextSpec }, { manager: 'virt-api', now: timestamp() });
      this.store.replace(written);
      this.afterWrite('VirtualMachine', namespace, name);
    };
    switch (action) {
      case 'start':
        if (running) throw conflict(vmResource, name, 'VM is already running');
        if (dryRun) return;
        if (strategy === 'Halted') setStrategy('Always');
        else if (strategy === 'Manual') controller.startVm(namespace, name);
        else this.afterWrite('VirtualMachine', namespace, name);
        return;
      case 'stop':
        if (!running && (strategy === 'Halted' || strategy === 'Manual')) throw conflict(vmResource, name, 'VM is not running');
        if (dryRun) return;
        if (strategy === 'Manual' || strategy === 'Halted') controller.stopVm(namespace, name);
        else setStrategy('Halted');
        this.scheduleSave();
        return;
      case 'restart':
        if (strategy === 'Halted') throw conflict(vmResource, name, 'RunStrategy Halted does not support manual restart requests');
        if (!running) throw conflict(vmResource, name, 'VM is not running');
        if (dryRun) return;
        controller.restart(namespace, name);
        this.scheduleSave();
        return;
    }
  }

  // ---- admin -------------------------------------------------------------------------------

  private async admin(req: IncomingMessage, res: ServerResponse, path: string[]): Promise<void> {
    const key = `${req.method ?? 'GET'} ${path.join('/')}`;
    switch (key) {
      case 'GET faults':
        sendJson(res, 200, this.faults());
        return;
      case 'POST faults':
      case 'PUT faults': {
        const body = parseJson(await this.readBody(req));
        const problem = checkFaults(body);
        if (problem !== null) throw badRequest(problem);
        this.setFaults(body as ApiFaults);
        sendJson(res, 200, this.faults());
        return;
      }
      case 'GET stats':
        sendJson(res, 200, this.stats());
        return;
      case 'POST stats/reset':
        this.resetStats();
        sendJson(res, 200, this.stats());
        return;
      default:
        throw path.length <= 2 && ['faults', 'stats', 'stats/reset'].includes(path.join('/')) ? methodNotAllowed() : pathNotFound();
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Request parsing

function verbOf(method: string, t: Target, query: URLSearchParams, contentType: string): string {
  const named = t.name !== undefined;
  if (t.subresource !== undefined && method !== 'GET' && method !== 'PUT' && method !== 'PATCH') throw methodNotAllowed();
  switch (method) {
    case 'GET':
      // A watch on one object's URL is the older form of a watch with a name field selector.
      if (parseBool(query.get('watch'), 'watch')) return 'watch';
      return named ? 'get' : 'list';
    case 'POST':
      if (named) throw methodNotAllowed();
      return 'create';
    case 'PUT':
      if (!named) throw methodNotAllowed();
      return 'update';
    case 'PATCH':
      if (!named) throw methodNotAllowed();
      return contentType === 'application/apply-patch+yaml' ? 'apply' : 'patch';
    case 'DELETE':
      return named ? 'delete' : 'deletecollection';
    default:
      throw methodNotAllowed();
  }
}

function parseBool(v: string | null, name: string): boolean {
  if (v === null || v === '' || v === 'false' || v === '0') return false;
  if (v === 'true' || v === '1') return true;
  throw badRequest(`${name}: Invalid value: "${v}": must be true or false`);
}

function parseDryRun(query: URLSearchParams): boolean {
  const values = query.getAll('dryRun');
  for (const v of values) if (v !== 'All') throw badRequest(`dryRun: Unsupported value: "${v}": supported values: "All"`);
  return values.length > 0;
}

function contentTypeOf(req: IncomingMessage): string {
  return (req.headers['content-type'] ?? '').split(';')[0]?.trim().toLowerCase() ?? '';
}

function parseJson(raw: Buffer): unknown {
  try {
    return JSON.parse(raw.toString('utf8')) as unknown;
  } catch (e) {
    throw badRequest(`the request body is not valid JSON: ${e instanceof Error ? e.message : String(e)}`);
  }
}

function parseJsonBody(raw: Buffer): Obj {
  const body = parseJson(raw);
  if (!isObj(body)) throw badRequest('the request body must be a JSON object');
  return body;
}

function decodeContinue(token: string): string {
  try {
    const v = JSON.parse(Buffer.from(token, 'base64url').toString('utf8')) as unknown;
    if (isObj(v) && typeof v['after'] === 'string') return v['after'];
  } catch {
    // fall through to the error below
  }
  throw badRequest('continue key is not valid: malformed token');
}

function issueCause(issue: SchemaIssue): StatusCause {
  const required = issue.message === 'is required';
  return { reason: required ? 'FieldValueRequired' : 'FieldValueInvalid', message: required ? 'Required value' : `Invalid value: ${issue.message}`, field: issue.path };
}

// ---------------------------------------------------------------------------------------------
// Responses

function sendJson(res: ServerResponse, code: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(code, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(text), 'Cache-Control': 'no-cache, private' });
  res.end(text);
}

function sendText(res: ServerResponse, code: number, text: string): void {
  res.writeHead(code, { 'Content-Type': 'text/plain; charset=utf-8', 'Content-Length': Buffer.byteLength(text) });
  res.end(text);
}

/** kubectl asks for server-side printing with `Accept: application/json;as=Table;…`. */
function wantsTable(req: IncomingMessage): boolean {
  return /as=Table/.test(req.headers['accept'] ?? '');
}

function age(o: Readonly<Obj>): string {
  const created = Date.parse(String(metaOf(o)['creationTimestamp'] ?? ''));
  if (Number.isNaN(created)) return '<unknown>';
  const s = Math.max(0, Math.floor((Date.now() - created) / 1000));
  if (s < 120) return `${s}s`;
  if (s < 7200) return `${Math.floor(s / 60)}m`;
  if (s < 172_800) return `${Math.floor(s / 3600)}h`;
  return `${Math.floor(s / 86_400)}d`;
}

/** One column of `kubectl get`: what KubeVirt's CRDs declare as additionalPrinterColumns, NAME and AGE. */
interface Column {
  name: string;
  type: string;
  cell: (o: Readonly<Obj>) => unknown;
}

function columnsOf(info: ResourceInfo): Column[] {
  const status = (o: Readonly<Obj>): Obj => (isObj(o['status']) ? o['status'] : {});
  const name: Column = { name: 'Name', type: 'string', cell: (o) => metaOf(o)['name'] ?? '' };
  const ageColumn: Column = { name: 'Age', type: 'date', cell: age };
  switch (info.kind) {
    case 'VirtualMachine':
      return [
        name,
        ageColumn,
        { name: 'Status', type: 'string', cell: (o) => status(o)['printableStatus'] ?? '' },
        { name: 'Ready', type: 'string', cell: (o) => (status(o)['ready'] === true ? 'True' : 'False') },
      ];
    case 'VirtualMachineInstance':
      return [
        name,
        ageColumn,
        { name: 'Phase', type: 'string', cell: (o) => status(o)['phase'] ?? '' },
        { name: 'Live-Migratable', type: 'string', cell: (o) => ((status(o)['conditions'] ?? []) as Obj[]).find((c) => c['type'] === 'LiveMigratable')?.['status'] ?? '' },
      ];
    case 'KubeVirt':
      return [name, ageColumn, { name: 'Phase', type: 'string', cell: (o) => status(o)['phase'] ?? '' }];
    case 'VirtualMachineInstanceMigration':
      return [
        name,
        { name: 'Phase', type: 'string', cell: (o) => status(o)['phase'] ?? '' },
        { name: 'VMI', type: 'string', cell: (o) => (isObj(o['spec']) ? (o['spec']['vmiName'] ?? '') : '') },
      ];
    case 'Namespace':
      return [name, { name: 'Status', type: 'string', cell: (o) => status(o)['phase'] ?? '' }, ageColumn];
    default:
      return [name, ageColumn];
  }
}

/** A `meta.k8s.io/v1` Table of `items`, for kubectl's server-side printing (lists and watch events). */
function toTable(info: ResourceInfo, items: readonly Readonly<Obj>[], metadata: Obj): Obj {
  const columns = columnsOf(info);
  return {
    kind: 'Table',
    apiVersion: 'meta.k8s.io/v1',
    metadata,
    columnDefinitions: columns.map((c) => ({ name: c.name, type: c.type, format: c.name === 'Name' ? 'name' : '', description: '', priority: 0 })),
    rows: items.map((o) => ({
      cells: columns.map((c) => c.cell(o)),
      object: { kind: 'PartialObjectMetadata', apiVersion: 'meta.k8s.io/v1', metadata: metaOf(o) },
    })),
  };
}

// ---------------------------------------------------------------------------------------------

/** Starts the API server over `cluster`; resolves once listening. Creates Kubernetes' bootstrap namespaces and the KubeVirt CR's. */
export async function startApiServer(options: ApiServerOptions): Promise<ApiServer> {
  const { host, port } = parseListenAddress(options.listen);
  const cluster = options.cluster;
  const handler = new ApiHandler(cluster, options.logger, options);
  const kubevirtNamespace = metaOf(cluster.controller.kubevirt() ?? {})['namespace'];
  for (const ns of [...BOOTSTRAP_NAMESPACES, ...(typeof kubevirtNamespace === 'string' ? [kubevirtNamespace] : [])]) {
    if (cluster.ensureNamespace(ns)) handler.scheduleSave();
  }
  const server: Server = createServer((req, res) => handler.handle(req, res));
  server.keepAliveTimeout = 30_000;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen({ port, ...(host === undefined ? {} : { host }) }, () => {
      server.off('error', reject);
      resolve();
    });
  });
  server.on('error', (err) => options.logger?.error({ err: err.message }, 'api server error'));
  const bound = server.address() as AddressInfo;
  const address = `${bound.family === 'IPv6' ? `[${bound.address}]` : bound.address}:${bound.port}`;
  handler.serverAddress = address;
  let closed: Promise<void> | null = null;
  return {
    url: `http://${address}`,
    address,
    port: bound.port,
    close() {
      closed ??= new Promise<void>((resolve, reject) => {
        for (const w of [...handler.watches]) w.end();
        server.close((err) => {
          handler.flushSave();
          if (err) reject(err);
          else resolve();
        });
        server.closeAllConnections();
      });
      return closed;
    },
    setFaults: (f) => handler.setFaults(f),
    faults: () => handler.faults(),
    stats: () => handler.stats(),
    resetStats: () => handler.resetStats(),
  };
}
