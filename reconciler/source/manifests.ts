/**
 * Loads the VirtualMachine manifests under a path prefix at one commit, file by file, so that a bad
 * file (invalid YAML, schema errors, alias bombs, oversized, symlinks, refused names, duplicate VM
 * names, a typo in kind or apiVersion, invalid names) becomes errors with file and line and never
 * blocks the other files, and nothing is dropped silently: other kinds and fields KubeVirt does not
 * define are warnings. Files are read as `kubectl apply -f dir/` reads them (YAML and JSON, `kind:
 * List` flattened). Given the previous load, only the files that changed since its commit are read again.
 */
import type { VirtualMachine } from '../../schemas/generated/virtualmachine.ts';
import { editDistance, isDns1123Label, isDns1123Subdomain, unknownVirtualMachineFields, validateVirtualMachine } from '../validate.ts';
import { isUnderPath, normalizeRepoPath, SYMLINK_MODE, type ChangedPath, type TreeFile } from './gitSource.ts';
import { parseYamlDocumentsFast } from './fastYaml.ts';
import { MAX_ALIAS_COUNT, ManifestParseError, parseYamlDocuments, type YamlDoc } from './yamlDocs.ts';

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

/**
 * Something a manifest file holds that vmroll does not apply, located by file and line: a document of
 * another kind, a field KubeVirt does not define. The file still loads; under `strict` it is an error.
 */
export interface ManifestWarning {
  /** Repository-relative path of the file. */
  file: string;
  /** 1-based line of the document or field. */
  line: number;
  message: string;
  /** Dotted field path for an unknown field, e.g. `spec.template.spec.domain.cpu.socket`. */
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
  /** Git file mode of the entry read (a symlink and a regular file can share a blob oid). */
  mode: number;
  /** Why the path is refused, as the tree listed it (see {@link TreeFile.refused}). */
  refused?: string;
  /** True when nothing in the file could be used (unreadable, oversized, symlink, refused name, invalid YAML, or warnings under strict). */
  failed: boolean;
  errors: ManifestError[];
  warnings: ManifestWarning[];
  skipped: SkippedObject[];
  /** Every VirtualMachine in the file whose namespace/name is known (valid or not). */
  occurrences: VmOccurrence[];
  /** VM keys a previous version of this file defined that it no longer defines cleanly while it has errors or defines no VM: never pruned. */
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
  /** Every warning (other kinds skipped, unknown fields), sorted by file and line; empty under `strict`, where they are errors. */
  warnings: ManifestWarning[];
  /** Documents of other kinds (each also a warning). */
  skipped: SkippedObject[];
  /** `namespace/name` of VMs that exist in Git but cannot be used (invalid, duplicated, or in a file that stopped parsing): never apply, never prune. */
  heldVms: string[];
  /** Files that failed as a whole; VMs they may define are unknown, so pruning must hold off for them. */
  failedFiles: string[];
  /**
   * Files whose VMs pruning must leave alone (matched against a VM's `vmroll.dev/source-path`): every
   * file with an error, and every file that defines no VirtualMachine now (empty, only other kinds),
   * so that a VM is released only when its file is deleted or cleanly defines something else.
   */
  holdingFiles: string[];
  /** Files whose blobs this load read, in the order read (tests assert incremental loads read only changed files). */
  read: string[];
  /** Files taken as they were from {@link LoadManifestsOptions.cached} (a new process's parse cache) instead of being read, in path order. */
  cached: string[];
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
  /** Warnings are errors of their file. */
  strict: boolean;
}

/** What {@link loadManifests} needs from the Git source (GitSource implements it). */
export interface ManifestReader {
  listFiles(args: { commit: string; path?: string }): Promise<TreeFile[]>;
  changedPaths(args: { from: string; to: string; path?: string }): Promise<ChangedPath[]>;
  readBlob(args: { oid: string }): Promise<Uint8Array>;
  /** Many blobs in one call (GitSource reads them from the packfile in bulk); without it, readBlob is used per file. */
  readBlobs?(args: { oids: string[] }): Promise<Map<string, Uint8Array>>;
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
  /**
   * Treat a file's warnings (other kinds, unknown fields) as errors of that file: the file counts as
   * failed, its VMs are held (neither applied nor pruned). Default false.
   */
  strict?: boolean;
  /** Which YAML parse to use; default `fast` (same results; `full` is there for the bench and the tests that prove it). */
  yamlParser?: YamlParser;
  /**
   * Outcomes kept from an earlier process (source/manifestCache.ts), used by a load without `previous`:
   * a listed file whose path, blob oid, mode and refusal match an entry is taken as is, not read. Ignored
   * unless its path and limits are this load's.
   */
  cached?: CachedFileLoads;
}

/** Per-file outcomes of an earlier load, as a parse cache hands them back; see {@link LoadManifestsOptions.cached}. */
export interface CachedFileLoads {
  /** The normalized path prefix they were loaded under. */
  path: string;
  limits: ManifestLimits;
  /** Outcomes by file path; none may depend on an earlier version of its file (empty `carriedKeys`). */
  files: ReadonlyMap<string, FileLoad>;
}

/** The YAML parses {@link loadManifests} can use: js-yaml with fallback (fast), or `yaml` alone (full). */
export const YAML_PARSERS = ['fast', 'full'] as const;
/** One of {@link YAML_PARSERS}. */
export type YamlParser = (typeof YAML_PARSERS)[number];

/** Default size cap for one manifest file: 1 MiB. */
export const MAX_MANIFEST_BYTES = 1024 * 1024;

const READ_CONCURRENCY = 8;
/** Blobs asked of {@link ManifestReader.readBlobs} at once: few enough that a chunk's bytes stay small. */
const BULK_READ_CHUNK = 256;

// Serves readBlob from bulk reads: the oids expected next are read a chunk at a time, when the first
// of a chunk is asked for, and each blob is dropped once the files that use it have taken it. A
// failed bulk read falls back to readBlob per file, so a file's error is what it was without bulk reads.
class BulkBlobs {
  private readonly chunkOf = new Map<string, { oids: string[]; read?: Promise<Map<string, Uint8Array> | null> }>();
  private readonly uses = new Map<string, number>();

  constructor(private readonly source: ManifestReader) {}

  /** The files about to be read, in the order they will be asked for. */
  expect(files: TreeFile[]): void {
    if (this.source.readBlobs === undefined) return;
    const oids = [...new Set(files.map((f) => f.oid))].filter((oid) => !this.chunkOf.has(oid));
    for (const f of files) this.uses.set(f.oid, (this.uses.get(f.oid) ?? 0) + 1);
    for (let i = 0; i < oids.length; i += BULK_READ_CHUNK) {
      const chunk = { oids: oids.slice(i, i + BULK_READ_CHUNK) };
      for (const oid of chunk.oids) this.chunkOf.set(oid, chunk);
    }
  }

  async readBlob(args: { oid: string }): Promise<Uint8Array> {
    const chunk = this.chunkOf.get(args.oid);
    const readBlobs = this.source.readBlobs?.bind(this.source);
    if (chunk === undefined || readBlobs === undefined) return this.source.readBlob(args);
    chunk.read ??= readBlobs({ oids: chunk.oids }).catch(() => null);
    const blobs = await chunk.read;
    const blob = blobs?.get(args.oid);
    const left = (this.uses.get(args.oid) ?? 1) - 1;
    if (left > 0) this.uses.set(args.oid, left);
    else {
      this.uses.delete(args.oid);
      this.chunkOf.delete(args.oid);
      blobs?.delete(args.oid);
    }
    return blob ?? this.source.readBlob(args);
  }
}

/** Loads every `*.yaml`/`*.yml`/`*.json` file under `path` at `commit`, or only the changed ones when `previous` is given. */
export async function loadManifests(options: LoadManifestsOptions): Promise<ManifestSet> {
  const prefix = normalizeRepoPath(options.path);
  const limits = manifestLimits(options);
  const read: string[] = [];
  const cached: string[] = [];
  const blobs = new BulkBlobs(options.source);
  const readFile = (file: TreeFile, before: FileLoad | undefined): Promise<FileLoad> => loadFile(blobs, file, before, limits, read, options.yamlParser === 'full' ? parseYamlDocuments : parseYamlDocumentsFast);
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
      toRead.push({ path: change.path, oid: change.oid, mode: change.mode, ...(change.refused !== undefined ? { refused: change.refused } : {}) });
    }
    blobs.expect(toRead);
    for (const load of await mapLimited(toRead, (f) => readFile(f, previous.files.get(f.path)))) files.set(load.file, load);
  } else {
    const listed = (await options.source.listFiles({ commit: options.commit, path: prefix })).filter((f) => isCandidate(f.path, f.mode));
    const kept = options.cached !== undefined && options.cached.path === prefix && sameLimits(options.cached.limits, limits) ? options.cached.files : undefined;
    const hit = (f: TreeFile): FileLoad | undefined => {
      const load = kept?.get(f.path);
      return load !== undefined && load.oid === f.oid && load.mode === f.mode && load.refused === f.refused && load.carriedKeys.length === 0 ? load : undefined;
    };
    const toRead = listed.filter((f) => hit(f) === undefined);
    blobs.expect(toRead);
    const loaded = new Map((await mapLimited(toRead, (f) => readFile(f, undefined))).map((l) => [l.file, l]));
    // In listing order, as a load without the cache builds the map.
    for (const f of listed) {
      const fromCache = hit(f);
      if (fromCache !== undefined) cached.push(f.path);
      files.set(f.path, fromCache ?? (loaded.get(f.path) as FileLoad));
    }
  }
  return assemble(options.commit, prefix, files, read, cached, incremental, limits, incremental ? previous : undefined);
}

/** The limits a load with these options runs under (defaults filled in). */
export function manifestLimits(options: Pick<LoadManifestsOptions, 'maxFileBytes' | 'maxAliasCount' | 'defaultNamespace' | 'strict'>): ManifestLimits {
  return {
    maxFileBytes: options.maxFileBytes ?? MAX_MANIFEST_BYTES,
    maxAliasCount: options.maxAliasCount ?? MAX_ALIAS_COUNT,
    defaultNamespace: options.defaultNamespace ?? 'default',
    strict: options.strict ?? false,
  };
}

/** True when two loads under these limits give the same outcome for the same file. */
export function sameLimits(a: ManifestLimits, b: ManifestLimits): boolean {
  return a.maxFileBytes === b.maxFileBytes && a.maxAliasCount === b.maxAliasCount && a.defaultNamespace === b.defaultNamespace && a.strict === b.strict;
}

// Manifests are *.yaml, *.yml and *.json, the files `kubectl apply -f dir/` reads; every symlink is
// looked at too, so that it can be refused loudly.
function isCandidate(file: string, mode: number): boolean {
  return mode === SYMLINK_MODE || /\.(ya?ml|json)$/i.test(file);
}

async function loadFile(
  source: Pick<ManifestReader, 'readBlob'>,
  entry: TreeFile,
  before: FileLoad | undefined,
  limits: ManifestLimits,
  read: string[],
  parse: typeof parseYamlDocuments,
): Promise<FileLoad> {
  const load: FileLoad = { file: entry.path, oid: entry.oid, mode: entry.mode, ...(entry.refused !== undefined ? { refused: entry.refused } : {}), failed: false, errors: [], warnings: [], skipped: [], occurrences: [], carriedKeys: [] };
  if (entry.refused !== undefined) {
    // The content is still read below, only to learn which VMs the file defines: they are held, not pruned.
    load.failed = true;
    load.errors.push({ file: entry.path, line: 1, message: `path refused: ${entry.refused}; rename it (the rest of the repository is read as usual)` });
  }
  const failWhole = (line: number, message: string): FileLoad => {
    load.failed = true;
    load.errors.push({ file: entry.path, line, message });
    return settle(load, before, limits);
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
  let docs: YamlDoc[];
  try {
    docs = parse(text, entry.path, limits.maxAliasCount, /\.json$/i.test(entry.path) ? 'JSON' : 'YAML');
  } catch (e) {
    if (e instanceof ManifestParseError) return failWhole(e.line ?? 1, e.reason);
    throw e;
  }

  const kustomization = /(^|\/)kustomization\.ya?ml$/i.test(entry.path);
  for (const doc of docs) {
    for (const item of flatten(doc, doc.value, [], load, entry.path)) loadObject(item, load, entry.path, kustomization, limits);
  }
  return settle(load, before, limits);
}

/** One Kubernetes object of a file: a document, or an item of a `kind: List` document. */
interface ObjectAt {
  doc: YamlDoc;
  /** Keys from the document's root to the object: `[]`, or `['items', 3]` for a List's item. */
  at: (string | number)[];
  object: Record<string, unknown>;
}

// `kind: List` (what `kubectl get -o yaml` prints for several objects) and `<Kind>List` documents
// are read as their items, as kubectl does; lines point at the item.
function flatten(doc: YamlDoc, value: unknown, at: (string | number)[], load: FileLoad, file: string): ObjectAt[] {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    const what = at.length === 0 ? 'document' : 'list item';
    load.errors.push({ file, line: doc.fieldLine(at), message: `${what} is not a Kubernetes object (expected a mapping with apiVersion and kind)` });
    return [];
  }
  const object = value as Record<string, unknown>;
  const kind = object['kind'];
  const items = object['items'];
  if (typeof kind === 'string' && kind.endsWith('List') && Array.isArray(items)) {
    return items.flatMap((item, i) => flatten(doc, item, [...at, 'items', i], load, file));
  }
  return [{ doc, at, object }];
}

/** KubeVirt's API group. */
const KUBEVIRT_GROUP = 'kubevirt.io';
/** The versions in which KubeVirt serves VirtualMachines. */
const SERVED_VERSIONS: readonly string[] = ['v1', 'v1alpha3'];
const VM_KIND = 'VirtualMachine';

// A group that someone writing a KubeVirt manifest most likely meant as kubevirt.io: KubeVirt's other
// groups (pool.kubevirt.io, ...), `kubevirt`, or a near miss such as `kubvirt.io`.
function kubevirtish(group: string): boolean {
  const g = group.toLowerCase();
  return g === KUBEVIRT_GROUP || g.endsWith(`.${KUBEVIRT_GROUP}`) || g === 'kubevirt' || editDistance(g, KUBEVIRT_GROUP) <= 2;
}

// A kind that is most likely a typo of VirtualMachine: case aside, at most 3 edits away. No other
// kind KubeVirt serves is that close (VirtualMachinePool is 4 away).
function nearVirtualMachine(kind: string): boolean {
  return kind !== VM_KIND && editDistance(kind.toLowerCase(), VM_KIND.toLowerCase()) <= 3;
}

function loadObject({ doc, at, object }: ObjectAt, load: FileLoad, file: string, kustomization: boolean, limits: ManifestLimits): void {
  const line = doc.fieldLine(at);
  const fieldLine = (...keys: (string | number)[]): number => doc.fieldLine([...at, ...keys]);
  const kind = typeof object['kind'] === 'string' && object['kind'] !== '' ? object['kind'] : null;
  const apiVersion = typeof object['apiVersion'] === 'string' && object['apiVersion'] !== '' ? object['apiVersion'] : null;
  const metadata = object['metadata'] !== null && typeof object['metadata'] === 'object' && !Array.isArray(object['metadata']) ? (object['metadata'] as Record<string, unknown>) : {};
  const name = typeof metadata['name'] === 'string' && metadata['name'] !== '' ? metadata['name'] : null;
  const slash = apiVersion?.lastIndexOf('/') ?? -1;
  const group = apiVersion === null || slash === -1 ? '' : apiVersion.slice(0, slash);
  const version = apiVersion === null ? '' : apiVersion.slice(slash + 1);
  const skip = (message: string): void => {
    load.skipped.push({ file, line, apiVersion, kind, name });
    load.warnings.push({ file, line, message });
  };

  if (kustomization && (kind === null || kind === 'Kustomization')) {
    skip(`${file.slice(file.lastIndexOf('/') + 1)} skipped: vmroll does not run kustomize; it applies only kubevirt.io VirtualMachines, as they are written`);
    return;
  }
  if (kind === null) {
    load.errors.push({ file, line, message: 'document has no kind (a KubeVirt VirtualMachine has kind: VirtualMachine, apiVersion: kubevirt.io/v1)' });
    return;
  }
  const vmish = kind === VM_KIND || nearVirtualMachine(kind);
  if (vmish && (apiVersion === null || group === '' || kubevirtish(group))) {
    // A typo here must not read as "some other kind": that would drop the VM and let --prune delete it.
    let typo = false;
    if (kind !== VM_KIND) {
      load.errors.push({ file, line: fieldLine('kind'), path: 'kind', message: `kind ${JSON.stringify(kind)} is not a kind vmroll knows; did you mean "${VM_KIND}"?` });
      typo = true;
    }
    if (apiVersion === null) {
      load.errors.push({ file, line, path: 'apiVersion', message: `apiVersion is missing; a KubeVirt VirtualMachine has apiVersion: ${KUBEVIRT_GROUP}/v1` });
      typo = true;
    } else if (group !== KUBEVIRT_GROUP || !SERVED_VERSIONS.includes(version)) {
      const meant = `${KUBEVIRT_GROUP}/${SERVED_VERSIONS.includes(version) ? version : 'v1'}`;
      const why = group === KUBEVIRT_GROUP ? ` is not a version KubeVirt serves VirtualMachines in (${SERVED_VERSIONS.map((v) => `${KUBEVIRT_GROUP}/${v}`).join(', ')})` : ' is not KubeVirt\'s API group';
      load.errors.push({ file, line: fieldLine('apiVersion'), path: 'apiVersion', message: `apiVersion ${JSON.stringify(apiVersion)}${why}; did you mean "${meant}"?` });
      typo = true;
    }
    if (typo) return;
    loadVirtualMachine(object, doc, at, load, file, limits);
    return;
  }
  if (kind === VM_KIND) {
    skip(`${kind}${name !== null ? ` ${name}` : ''} (${apiVersion ?? 'no apiVersion'}) skipped: vmroll applies only kubevirt.io VirtualMachines`);
    return;
  }
  skip(`${kind}${name !== null ? ` ${name}` : ''} skipped: vmroll applies only kubevirt.io VirtualMachines`);
}

function loadVirtualMachine(object: Record<string, unknown>, doc: YamlDoc, at: (string | number)[], load: FileLoad, file: string, limits: ManifestLimits): void {
  const line = doc.fieldLine(at);
  const metadata = object['metadata'] !== null && typeof object['metadata'] === 'object' && !Array.isArray(object['metadata']) ? (object['metadata'] as Record<string, unknown>) : {};
  const name = typeof metadata['name'] === 'string' && metadata['name'] !== '' ? metadata['name'] : null;
  const explicit = typeof metadata['namespace'] === 'string' && metadata['namespace'] !== '' ? metadata['namespace'] : null;
  const namespace = explicit ?? limits.defaultNamespace;
  // An invalid name or namespace is no VM's identity (validation below says why): the file's errors
  // hold what it defined before.
  const key = name !== null && isDns1123Subdomain(name) && (explicit === null || isDns1123Label(explicit)) ? `${namespace}/${name}` : null;
  const label = name === null ? VM_KIND : `${VM_KIND} ${namespace}/${name}`;
  const where = (dotted: string): number => doc.fieldLine([...at, ...splitPath(dotted)]);

  for (const unknown of unknownVirtualMachineFields(object)) {
    const hint = unknown.suggestion !== null ? `; did you mean ${JSON.stringify(unknown.suggestion)}?` : '';
    load.warnings.push({ file, line: where(unknown.path), path: unknown.path, message: `${label}: ${unknown.path} is not a field KubeVirt defines for ${unknown.type}${hint}` });
  }
  const result = validateVirtualMachine(object);
  if (result.ok && key !== null) {
    load.occurrences.push({ key, line, vm: { namespace, name: name as string, file, line, manifest: result.value } });
    return;
  }
  if (key !== null) load.occurrences.push({ key, line });
  if (!result.ok) {
    for (const issue of result.errors) {
      load.errors.push({ file, line: where(issue.path), message: `${label}: ${issue.path === '' ? '' : `${issue.path} `}${issue.message}`, path: issue.path });
    }
  }
}

// What a file's outcome means for its VMs: under strict its warnings are errors and hold all of
// them; refused or failed files hold all of them; and while a file has errors or defines no VM, the
// VMs it defined before stay held (never pruned) until it is fixed or deleted.
function settle(load: FileLoad, before: FileLoad | undefined, limits: ManifestLimits): FileLoad {
  const carried = (): string[] => {
    const now = new Set(load.occurrences.map((o) => o.key));
    return [...new Set([...(before?.occurrences.map((o) => o.key) ?? []), ...(before?.carriedKeys ?? [])])].filter((k) => !now.has(k)).sort(compare);
  };
  if (load.errors.length === 0 && load.occurrences.length === 0) {
    const held = carried();
    if (held.length > 0) {
      const which = held.map((k) => `${VM_KIND} ${k}`).join(', ');
      load.warnings.push({ file: load.file, line: 1, message: `defines no VirtualMachine now; ${which}, defined here before, is held (not pruned) until this file defines it again or is deleted` });
    }
  }
  if (limits.strict && load.warnings.length > 0) {
    load.errors.push(...load.warnings.map((w) => ({ ...w, message: `${w.message} (an error under --strict)` })));
    load.warnings = [];
    load.failed = true;
  }
  if (load.failed) {
    for (const o of load.occurrences) delete o.vm;
  }
  if (load.errors.length > 0 || load.occurrences.length === 0) load.carriedKeys = carried();
  return load;
}

/**
 * The ManifestSet of the file outcomes `files`. Given the previous set (an incremental load), only the
 * files whose outcome changed, and the files sharing a VM key with them (duplicates), are assembled
 * again: a one-file change costs the same at 1,000 files and at 20,000. The result is the same as
 * {@link assembleAll}'s (test/manifests.incremental.test.ts checks both on random edits).
 */
function assemble(commit: string, prefix: string, files: Map<string, FileLoad>, read: string[], cached: string[], incremental: boolean, limits: ManifestLimits, previous?: ManifestSet): ManifestSet {
  const index = previous !== undefined ? indexes.get(previous) : undefined;
  if (previous !== undefined && index !== undefined) {
    // The index moves to the new set: a second load from the same previous set assembles everything.
    indexes.delete(previous);
    const set = assembleChanges(commit, prefix, files, read, cached, incremental, limits, previous, index);
    if (set !== null) {
      indexes.set(set, index);
      return set;
    }
  }
  const set = assembleAll(commit, prefix, files, read, cached, incremental, limits);
  const built = buildIndex(files);
  if (built !== null) indexes.set(set, built);
  return set;
}

/** The ManifestSet of `set.files` assembled from scratch (nothing reused): the reference the incremental assembly is checked against. */
export function reassemble(set: ManifestSet): ManifestSet {
  return assembleAll(set.commit, set.path, new Map(set.files), set.read, set.cached, set.incremental, set.limits);
}

function assembleAll(commit: string, prefix: string, files: Map<string, FileLoad>, read: string[], cached: string[], incremental: boolean, limits: ManifestLimits): ManifestSet {
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
  const warnings: ManifestWarning[] = [];
  const skipped: SkippedObject[] = [];
  const held = new Set<string>();
  const failedFiles: string[] = [];
  const holding = new Set<string>();
  for (const load of ordered) {
    errors.push(...load.errors);
    warnings.push(...load.warnings);
    skipped.push(...load.skipped);
    if (load.errors.length > 0 || load.occurrences.length === 0) holding.add(load.file);
    for (const key of load.carriedKeys) held.add(key);
    if (load.failed) failedFiles.push(load.file);
    for (const o of load.occurrences) {
      const places = where.get(o.key) ?? [];
      if (places.length > 1) {
        errors.push(duplicateError(load.file, o, places));
        held.add(o.key);
        holding.add(load.file);
      } else if (o.vm) {
        vms.push(o.vm);
      } else {
        held.add(o.key);
      }
    }
  }
  vms.sort((a, b) => compare(`${a.namespace}/${a.name}`, `${b.namespace}/${b.name}`));
  errors.sort((a, b) => compare(a.file, b.file) || a.line - b.line);
  warnings.sort((a, b) => compare(a.file, b.file) || a.line - b.line);
  for (const vm of vms) held.delete(`${vm.namespace}/${vm.name}`);
  return {
    commit,
    path: prefix,
    vms,
    errors,
    warnings,
    skipped,
    heldVms: [...held].sort(compare),
    failedFiles,
    holdingFiles: [...holding].sort(compare),
    read,
    cached,
    incremental,
    files,
    limits,
  };
}

function duplicateError(file: string, o: VmOccurrence, places: readonly { file: string; line: number }[]): ManifestError {
  const others = places.filter((p) => p.file !== file || p.line !== o.line).map((p) => `${p.file}:${p.line}`);
  return { file, line: o.line, message: `VirtualMachine ${o.key} is also defined at ${others.join(', ')}; no copy is used until only one remains` };
}

/** What one file adds to a ManifestSet, given where every VM key is defined. */
interface Contribution {
  /** The outcome it was made from (a file whose outcome is the same object is unchanged). */
  load: FileLoad;
  /** Its errors (its own, then one per duplicated VM), by line; likewise its warnings. */
  errors: ManifestError[];
  warnings: ManifestWarning[];
  /** VMs it holds: carried over, duplicated, or invalid. */
  held: string[];
  /** VMs it defines usably (defined once in the whole set). */
  vms: LoadedVm[];
  holding: boolean;
}

/** What the last assembly knew, kept beside its ManifestSet (see {@link indexes}). */
interface AssembleIndex {
  /** Where each VM key is defined, in file order, then in the file's order. */
  where: Map<string, { file: string; line: number }[]>;
  contributions: Map<string, Contribution>;
  /** Per VM key, how many files hold it. */
  heldBy: Map<string, number>;
  /** The usable VMs, by key. */
  vms: Map<string, LoadedVm>;
}

/** The index of each ManifestSet assembled here, for the next incremental load (one use: it moves to the next set). */
const indexes = new WeakMap<ManifestSet, AssembleIndex>();

function byLine<T extends { line: number }>(list: T[]): T[] {
  return list.slice().sort((a, b) => a.line - b.line);
}

function contribution(load: FileLoad, where: ReadonlyMap<string, { file: string; line: number }[]>): Contribution {
  const errors = [...load.errors];
  const held = [...load.carriedKeys];
  const vms: LoadedVm[] = [];
  let holding = load.errors.length > 0 || load.occurrences.length === 0;
  for (const o of load.occurrences) {
    const places = where.get(o.key) ?? [];
    if (places.length > 1) {
      errors.push(duplicateError(load.file, o, places));
      held.push(o.key);
      holding = true;
    } else if (o.vm) vms.push(o.vm);
    else held.push(o.key);
  }
  return { load, errors: byLine(errors), warnings: byLine(load.warnings), held, vms, holding };
}

/** True when every error, warning and skipped object of the file names the file itself (the assembly by file relies on it). */
function ownFile(load: FileLoad): boolean {
  return load.errors.every((e) => e.file === load.file) && load.warnings.every((w) => w.file === load.file) && load.skipped.every((k) => k.file === load.file);
}

function buildIndex(files: ReadonlyMap<string, FileLoad>): AssembleIndex | null {
  const where = new Map<string, { file: string; line: number }[]>();
  for (const load of [...files.values()].sort((a, b) => compare(a.file, b.file))) {
    if (!ownFile(load)) return null;
    for (const o of load.occurrences) {
      const list = where.get(o.key) ?? [];
      list.push({ file: load.file, line: o.line });
      where.set(o.key, list);
    }
  }
  const index: AssembleIndex = { where, contributions: new Map(), heldBy: new Map(), vms: new Map() };
  for (const [file, load] of files) {
    const c = contribution(load, where);
    index.contributions.set(file, c);
    for (const key of c.held) index.heldBy.set(key, (index.heldBy.get(key) ?? 0) + 1);
    for (const vm of c.vms) index.vms.set(vmKeyOf(vm), vm);
  }
  return index;
}

function vmKeyOf(vm: LoadedVm): string {
  return `${vm.namespace}/${vm.name}`;
}

/** First index in `list` (sorted by `keyOf`) whose key is not below `key`. */
export function lowerBound<T>(list: readonly T[], key: string, keyOf: (item: T) => string): number {
  let lo = 0;
  let hi = list.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (compare(keyOf(list[mid] as T), key) < 0) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/** Replaces the items of `file` in `list` (sorted by file, each file's items together) with `items`. */
function replaceSegment<T extends { file: string }>(list: T[], file: string, items: readonly T[]): void {
  const from = lowerBound(list, file, (x) => x.file);
  let to = from;
  while (to < list.length && (list[to] as T).file === file) to++;
  list.splice(from, to - from, ...items);
}

/** Adds `key` to (or, with `present` false, removes it from) the sorted `list`. */
function setMember(list: string[], key: string, present: boolean): void {
  const at = lowerBound(list, key, (x) => x);
  const there = list[at] === key;
  if (present && !there) list.splice(at, 0, key);
  else if (!present && there) list.splice(at, 1);
}

/** The incremental assembly (see {@link assemble}); null when it cannot be done (the caller assembles everything). */
function assembleChanges(commit: string, prefix: string, files: Map<string, FileLoad>, read: string[], cached: string[], incremental: boolean, limits: ManifestLimits, previous: ManifestSet, index: AssembleIndex): ManifestSet | null {
  // The files whose outcome is not the one the index was made from: changed, added, deleted.
  const changed: string[] = [];
  let kept = 0;
  for (const [file, load] of files) {
    const c = index.contributions.get(file);
    if (c !== undefined && c.load === load) kept++;
    else changed.push(file);
  }
  if (kept < index.contributions.size) for (const file of index.contributions.keys()) if (!files.has(file)) changed.push(file);
  for (const file of changed) {
    const load = files.get(file);
    if (load !== undefined && !ownFile(load)) return null;
  }
  // Where each key is defined, for the keys the changed files define (or defined).
  const keys = new Set<string>();
  for (const file of changed) {
    const before = index.contributions.get(file)?.load;
    for (const o of before?.occurrences ?? []) {
      keys.add(o.key);
      const list = (index.where.get(o.key) ?? []).filter((p) => p.file !== file);
      if (list.length === 0) index.where.delete(o.key);
      else index.where.set(o.key, list);
    }
  }
  for (const file of changed) {
    const load = files.get(file);
    for (const o of load?.occurrences ?? []) {
      keys.add(o.key);
      const list = index.where.get(o.key) ?? [];
      // After the other files' places that sort before this file, and after this file's own earlier ones.
      let at = 0;
      while (at < list.length && compare((list[at] as { file: string }).file, file) <= 0) at++;
      list.splice(at, 0, { file, line: o.line });
      index.where.set(o.key, list);
    }
  }
  // Every file that defines one of those keys is assembled again: a duplicate's error names the other places.
  const affected = new Set(changed);
  for (const key of keys) for (const p of index.where.get(key) ?? []) affected.add(p.file);

  const vms = previous.vms.slice();
  const errors = previous.errors.slice();
  const warnings = previous.warnings.slice();
  const skipped = previous.skipped.slice();
  const heldVms = previous.heldVms.slice();
  const failedFiles = previous.failedFiles.slice();
  const holdingFiles = previous.holdingFiles.slice();
  const touched = new Set<string>(keys);
  for (const file of [...affected].sort(compare)) {
    const before = index.contributions.get(file);
    const load = files.get(file);
    const after = load !== undefined ? contribution(load, index.where) : undefined;
    for (const key of before?.held ?? []) {
      const n = (index.heldBy.get(key) ?? 0) - 1;
      if (n > 0) index.heldBy.set(key, n);
      else index.heldBy.delete(key);
      touched.add(key);
    }
    for (const key of after?.held ?? []) {
      index.heldBy.set(key, (index.heldBy.get(key) ?? 0) + 1);
      touched.add(key);
    }
    for (const vm of before?.vms ?? []) {
      const key = vmKeyOf(vm);
      if (index.vms.get(key) === vm) index.vms.delete(key);
      touched.add(key);
    }
    for (const vm of after?.vms ?? []) {
      index.vms.set(vmKeyOf(vm), vm);
      touched.add(vmKeyOf(vm));
    }
    replaceSegment(errors, file, after?.errors ?? []);
    replaceSegment(warnings, file, after?.warnings ?? []);
    replaceSegment(skipped, file, load?.skipped ?? []);
    setMember(failedFiles, file, load?.failed === true);
    setMember(holdingFiles, file, after?.holding === true);
    if (after !== undefined) index.contributions.set(file, after);
    else index.contributions.delete(file);
  }
  for (const key of touched) {
    const vm = index.vms.get(key);
    const at = lowerBound(vms, key, vmKeyOf);
    const there = at < vms.length && vmKeyOf(vms[at] as LoadedVm) === key;
    if (vm !== undefined) vms.splice(at, there ? 1 : 0, vm);
    else if (there) vms.splice(at, 1);
    setMember(heldVms, key, vm === undefined && (index.heldBy.get(key) ?? 0) > 0);
  }
  const set: ManifestSet = { commit, path: prefix, vms, errors, warnings, skipped, heldVms, failedFiles, holdingFiles, read, cached, incremental, files, limits };
  keyChanges.set(set, { previous, keys: touched });
  return set;
}

/** Per set assembled from a previous one: that set, and every VM key whose definition may differ (see {@link vmKeysChangedSince}). */
const keyChanges = new WeakMap<ManifestSet, { previous: ManifestSet; keys: ReadonlySet<string> }>();

/**
 * The VM keys whose usable VM (its LoadedVm object, or whether there is one) or held mark may differ
 * between `previous` and `set`, or null when `set` was not assembled incrementally from `previous`
 * (the caller then looks at every VM). A key not listed has the same LoadedVm object in both.
 */
export function vmKeysChangedSince(set: ManifestSet, previous: ManifestSet): ReadonlySet<string> | null {
  const c = keyChanges.get(set);
  return c !== undefined && c.previous === previous ? c.keys : null;
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
