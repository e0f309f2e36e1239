/**
 * Loads the VirtualMachine manifests under a path prefix at one commit, file by file, so that a bad
 * file (invalid YAML, schema errors, alias bombs, oversized, symlinks, duplicate VM names) becomes
 * errors with file and line and never blocks the other files. Given the previous load, only the
 * files that changed since its commit are read again.
 */
import { isAlias, isMap, isScalar, isSeq, LineCounter, parseAllDocuments, type Document } from 'yaml';
import type { VirtualMachine } from '../../schemas/generated/virtualmachine.ts';
import { validateVirtualMachine } from '../validate.ts';
import { isUnderPath, normalizeRepoPath, SYMLINK_MODE, type ChangedPath, type TreeFile } from './gitSource.ts';
import { MAX_ALIAS_COUNT, ManifestParseError, parseYamlDocuments } from './yamlDocs.ts';

/** A problem with one manifest file, located by file and line. */
export interface ManifestError {
  /** Repository-relative path of the file. */
  file: string;
  /** 1-based line; 1 when the whole file is at fault (size, symlink, encoding). */
  line: number;
  message: string;
  /** Dotted field path for a schema error, e.g. `spec.runStrategy`. */
  path?: string;
}

/** A VirtualMachine that loaded cleanly and is defined exactly once. */
export interface LoadedVm {
  namespace: string;
  name: string;
  /** File and line of the document. */
  file: string;
  line: number;
  manifest: VirtualMachine;
}

/** A document of another kind: reported and otherwise ignored. */
export interface SkippedObject {
  file: string;
  line: number;
  apiVersion: string | null;
  kind: string | null;
  name: string | null;
}

/** A VirtualMachine document whose namespace/name could be read, valid or not. */
interface VmOccurrence {
  key: string;
  line: number;
  /** Present when the document passed the schema. */
  vm?: LoadedVm;
}

/** The outcome for one file; kept in {@link ManifestSet.files} so the next load can reuse it. */
export interface FileLoad {
  file: string;
  /** Blob oid the outcome belongs to. */
  oid: string;
  /** True when nothing in the file could be used (unreadable, oversized, symlink, invalid YAML). */
  failed: boolean;
  errors: ManifestError[];
  skipped: SkippedObject[];
  /** Every VirtualMachine in the file whose namespace/name is known (valid or not). */
  occurrences: VmOccurrence[];
  /** VM keys the last good version of a now-failed file defined: they must be neither applied nor pruned. */
  carriedKeys: string[];
}

/** Everything loaded at one commit. */
export interface ManifestSet {
  commit: string;
  /** The normalized path prefix ('' for the whole repository). */
  path: string;
  /** Usable VMs, sorted by namespace/name. */
  vms: LoadedVm[];
  /** Every error, sorted by file and line. */
  errors: ManifestError[];
  /** Documents of other kinds. */
  skipped: SkippedObject[];
  /** `namespace/name` of VMs that exist in Git but cannot be used (invalid, duplicated, or in a file that stopped parsing): never apply, never prune. */
  heldVms: string[];
  /** Files that failed as a whole; VMs they may define are unknown, so pruning must hold off for them. */
  failedFiles: string[];
  /** Files whose blobs this load read, in the order read (tests assert incremental loads read only changed files). */
  read: string[];
  /** True when this load started from a previous one and read only the changes. */
  incremental: boolean;
  /** Per-file outcomes, by path. */
  files: ReadonlyMap<string, FileLoad>;
  /** The limits in force, so an incremental load with different limits starts over. */
  limits: ManifestLimits;
}

/** Caps against hostile or accidental input. */
export interface ManifestLimits {
  /** Files bigger than this are refused without parsing. */
  maxFileBytes: number;
  /** Cap on YAML alias expansion per document. */
  maxAliasCount: number;
  /** Namespace for VMs whose manifest names none. */
  defaultNamespace: string;
}

/** What {@link loadManifests} needs from the Git source (GitSource implements it). */
export interface ManifestReader {
  listFiles(args: { commit: string; path?: string }): Promise<TreeFile[]>;
  changedPaths(args: { from: string; to: string; path?: string }): Promise<ChangedPath[]>;
  readBlob(args: { oid: string }): Promise<Uint8Array>;
}

/** Input of {@link loadManifests}. */
export interface LoadManifestsOptions {
  source: ManifestReader;
  commit: string;
  /** Path prefix (folder or file) to load from; default the whole repository. Nothing outside it is read. */
  path?: string;
  /** The previous load: when its path and limits match, only files changed since its commit are read. */
  previous?: ManifestSet;
  /** Changes from `previous.commit` to `commit` under `path`, if the caller already listed them. */
  changes?: ChangedPath[];
  /** Default 1 MiB. */
  maxFileBytes?: number;
  /** Default {@link MAX_ALIAS_COUNT}. */
  maxAliasCount?: number;
  /** Default `default`. */
  defaultNamespace?: string;
}

/** Default size cap for one manifest file: 1 MiB. */
export const MAX_MANIFEST_BYTES = 1024 * 1024;

const READ_CONCURRENCY = 8;

/** Loads every `*.yaml`/`*.yml` file under `path` at `commit`, or only the changed ones when `previous` is given. */
export async function loadManifests(options: LoadManifestsOptions): Promise<ManifestSet> {
  const prefix = normalizeRepoPath(options.path);
  const limits: ManifestLimits = {
    maxFileBytes: options.maxFileBytes ?? MAX_MANIFEST_BYTES,
    maxAliasCount: options.maxAliasCount ?? MAX_ALIAS_COUNT,
    defaultNamespace: options.defaultNamespace ?? 'default',
  };
  const read: string[] = [];
  const readFile = (file: TreeFile, before: FileLoad | undefined): Promise<FileLoad> => loadFile(options.source, file, before, limits, read);
  const previous = options.previous;
  const incremental = previous !== undefined && previous.path === prefix && sameLimits(previous.limits, limits);

  const files = new Map<string, FileLoad>();
  if (incremental) {
    for (const [file, load] of previous.files) files.set(file, load);
    const changes = previous.commit === options.commit ? [] : (options.changes ?? (await options.source.changedPaths({ from: previous.commit, to: options.commit, path: prefix })));
    const toRead: TreeFile[] = [];
    for (const change of changes) {
      if (!isUnderPath(change.path, prefix)) continue;
      if (change.status === 'deleted' || change.oid === null || change.mode === null || !isCandidate(change.path, change.mode)) {
        files.delete(change.path);
        continue;
      }
      toRead.push({ path: change.path, oid: change.oid, mode: change.mode });
    }
    for (const load of await mapLimited(toRead, (f) => readFile(f, previous.files.get(f.path)))) files.set(load.file, load);
  } else {
    const listed = (await options.source.listFiles({ commit: options.commit, path: prefix })).filter((f) => isCandidate(f.path, f.mode));
    for (const load of await mapLimited(listed, (f) => readFile(f, undefined))) files.set(load.file, load);
  }
  return assemble(options.commit, prefix, files, read, incremental, limits);
}

function sameLimits(a: ManifestLimits, b: ManifestLimits): boolean {
  return a.maxFileBytes === b.maxFileBytes && a.maxAliasCount === b.maxAliasCount && a.defaultNamespace === b.defaultNamespace;
}

// Manifests are *.yaml / *.yml; every symlink is looked at too, so that it can be refused loudly.
function isCandidate(file: string, mode: number): boolean {
  return mode === SYMLINK_MODE || /\.ya?ml$/i.test(file);
}

async function loadFile(source: ManifestReader, entry: TreeFile, before: FileLoad | undefined, limits: ManifestLimits, read: string[]): Promise<FileLoad> {
  const load: FileLoad = { file: entry.path, oid: entry.oid, failed: false, errors: [], skipped: [], occurrences: [], carriedKeys: [] };
  const failWhole = (line: number, message: string): FileLoad => {
    load.failed = true;
    load.errors.push({ file: entry.path, line, message });
    // Whatever the file defined when it last loaded stays protected until it loads again.
    if (before) load.carriedKeys = [...new Set([...before.occurrences.map((o) => o.key), ...before.carriedKeys])];
    return load;
  };

  read.push(entry.path);
  const blob = await source.readBlob({ oid: entry.oid });
  if (entry.mode === SYMLINK_MODE) {
    const target = new TextDecoder().decode(blob.subarray(0, 200));
    return failWhole(1, `symbolic link to ${JSON.stringify(target)} refused: vmroll reads only regular files under the configured path`);
  }
  if (blob.byteLength > limits.maxFileBytes) {
    return failWhole(1, `file is ${blob.byteLength} bytes, over the ${limits.maxFileBytes}-byte limit; not parsed`);
  }
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true, ignoreBOM: false }).decode(blob);
  } catch {
    return failWhole(1, 'file is not valid UTF-8');
  }
  let docs;
  try {
    docs = parseYamlDocuments(text, entry.path, limits.maxAliasCount);
  } catch (e) {
    if (e instanceof ManifestParseError) return failWhole(e.line ?? 1, e.reason);
    throw e;
  }

  let locator: FieldLocator | undefined;
  for (const doc of docs) {
    const value = doc.value;
    if (value === null || typeof value !== 'object' || Array.isArray(value)) {
      load.errors.push({ file: entry.path, line: doc.line, message: 'document is not a Kubernetes object (expected a mapping with apiVersion and kind)' });
      continue;
    }
    const object = value as Record<string, unknown>;
    const kind = typeof object['kind'] === 'string' ? object['kind'] : null;
    const apiVersion = typeof object['apiVersion'] === 'string' ? object['apiVersion'] : null;
    const metadata = object['metadata'] !== null && typeof object['metadata'] === 'object' ? (object['metadata'] as Record<string, unknown>) : {};
    const name = typeof metadata['name'] === 'string' && metadata['name'] !== '' ? metadata['name'] : null;
    if (kind === null) {
      load.errors.push({ file: entry.path, line: doc.line, message: 'document has no kind' });
      continue;
    }
    if (kind !== 'VirtualMachine' || !(apiVersion ?? '').startsWith('kubevirt.io/')) {
      load.skipped.push({ file: entry.path, line: doc.line, apiVersion, kind, name });
      continue;
    }
    const namespace = typeof metadata['namespace'] === 'string' && metadata['namespace'] !== '' ? metadata['namespace'] : limits.defaultNamespace;
    const key = name === null ? null : `${namespace}/${name}`;
    const result = validateVirtualMachine(object);
    if (result.ok) {
      if (key === null) continue; // unreachable while the schema requires metadata.name
      load.occurrences.push({ key, line: doc.line, vm: { namespace, name: name as string, file: entry.path, line: doc.line, manifest: result.value } });
      continue;
    }
    if (key !== null) load.occurrences.push({ key, line: doc.line });
    locator ??= new FieldLocator(text);
    const label = key === null ? 'VirtualMachine' : `VirtualMachine ${key}`;
    for (const issue of result.errors) {
      const line = locator.lineOf(doc.line, issue.path) ?? doc.line;
      load.errors.push({ file: entry.path, line, message: `${label}: ${issue.path === '' ? '' : `${issue.path} `}${issue.message}`, path: issue.path });
    }
  }
  return load;
}

function assemble(commit: string, prefix: string, files: Map<string, FileLoad>, read: string[], incremental: boolean, limits: ManifestLimits): ManifestSet {
  const ordered = [...files.values()].sort((a, b) => compare(a.file, b.file));
  const where = new Map<string, { file: string; line: number }[]>();
  for (const load of ordered) {
    for (const o of load.occurrences) {
      const list = where.get(o.key) ?? [];
      list.push({ file: load.file, line: o.line });
      where.set(o.key, list);
    }
  }
  const vms: LoadedVm[] = [];
  const errors: ManifestError[] = [];
  const skipped: SkippedObject[] = [];
  const held = new Set<string>();
  const failedFiles: string[] = [];
  for (const load of ordered) {
    errors.push(...load.errors);
    skipped.push(...load.skipped);
    for (const key of load.carriedKeys) held.add(key);
    if (load.failed) failedFiles.push(load.file);
    for (const o of load.occurrences) {
      const places = where.get(o.key) ?? [];
      if (places.length > 1) {
        const others = places.filter((p) => p.file !== load.file || p.line !== o.line).map((p) => `${p.file}:${p.line}`);
        errors.push({ file: load.file, line: o.line, message: `VirtualMachine ${o.key} is also defined at ${others.join(', ')}; no copy is used until only one remains` });
        held.add(o.key);
      } else if (o.vm) {
        vms.push(o.vm);
      } else {
        held.add(o.key);
      }
    }
  }
  vms.sort((a, b) => compare(`${a.namespace}/${a.name}`, `${b.namespace}/${b.name}`));
  errors.sort((a, b) => compare(a.file, b.file) || a.line - b.line);
  for (const vm of vms) held.delete(`${vm.namespace}/${vm.name}`);
  return { commit, path: prefix, vms, errors, skipped, heldVms: [...held].sort(compare), failedFiles, read, incremental, files, limits };
}

function compare(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

async function mapLimited<T, R>(items: T[], fn: (item: T) => Promise<R>): Promise<R[]> {
  const out = new Array<R>(items.length);
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < items.length) {
      const i = next++;
      out[i] = await fn(items[i] as T);
    }
  };
  await Promise.all(Array.from({ length: Math.min(READ_CONCURRENCY, items.length) }, worker));
  return out;
}

/**
 * Finds the line of a field named by a schema issue's dotted path. Only built for files with schema
 * errors, so valid files are parsed once.
 */
class FieldLocator {
  private readonly lineCounter = new LineCounter();
  private readonly docs: Document[];
  constructor(text: string) {
    const parsed = parseAllDocuments(text, { lineCounter: this.lineCounter, prettyErrors: false });
    this.docs = Array.isArray(parsed) ? parsed : [];
  }

  /** Line of the deepest existing node along `dotted`, in the document whose content starts on `docLine`. */
  lineOf(docLine: number, dotted: string): number | null {
    const doc = this.docs.find((d) => d.contents?.range && this.lineCounter.linePos(d.contents.range[0]).line === docLine);
    if (!doc) return null;
    let node: unknown = doc.contents;
    let line = docLine;
    for (const segment of splitPath(dotted)) {
      if (isAlias(node)) node = node.resolve(doc);
      if (isMap(node)) {
        const pair = node.items.find((p) => (isScalar(p.key) ? String(p.key.value) : String(p.key)) === String(segment));
        if (!pair) break;
        const start = isScalar(pair.key) ? pair.key.range?.[0] : undefined;
        if (start !== undefined) line = this.lineCounter.linePos(start).line;
        node = pair.value;
      } else if (isSeq(node) && typeof segment === 'number') {
        const item: unknown = node.items[segment];
        const start = (item as { range?: [number, number, number] } | undefined)?.range?.[0];
        if (start === undefined) break;
        line = this.lineCounter.linePos(start).line;
        node = item;
      } else {
        break;
      }
    }
    return line;
  }
}

// Inverse of validate.ts's dotted paths: `a.b[0]["x.y"]` -> ['a', 'b', 0, 'x.y'].
function splitPath(dotted: string): (string | number)[] {
  const out: (string | number)[] = [];
  const re = /\.?([A-Za-z_$][\w$-]*)|\[(\d+)\]|\[("(?:[^"\\]|\\.)*")\]/gy;
  let m: RegExpExecArray | null;
  while ((m = re.exec(dotted)) !== null) {
    if (m[1] !== undefined) out.push(m[1]);
    else if (m[2] !== undefined) out.push(Number(m[2]));
    else if (m[3] !== undefined) out.push(JSON.parse(m[3]) as string);
    if (re.lastIndex >= dotted.length) break;
  }
  return out;
}
