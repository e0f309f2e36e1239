/**
 * A parse cache on disk: the per-file outcomes (FileLoads) of the last load, so that a new process
 * (a restart, a new leader) takes every file whose path, blob oid and mode are unchanged as it was
 * and parses only the rest. One gzipped file per clone and path prefix, in the clone's
 * `.git/vmroll/`: a header line (format, vmroll version, a fingerprint of the code and schemas that
 * make a FileLoad, the path prefix and the limits), then the outcomes as JSON. It holds only the
 * files of the last load written, is replaced atomically (temp file, fsync, rename), and anything
 * wrong with it (absent, unreadable, truncated, corrupt, written by another build or under other
 * limits) makes it ignored with one log line: the load parses those files as if there were no cache.
 */
import { createHash, randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { mkdir, open, readFile, readdir, rename, rm, stat } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { gunzip, gzip } from 'node:zlib';
import type { Logger } from 'pino';
import { projectPath } from '../projectRoot.ts';
import { type CachedFileLoads, type FileLoad, type ManifestLimits, type ManifestSet, sameLimits } from './manifests.ts';

/** Version of the file layout; bump it when the header or the stored FileLoad changes shape. */
export const PARSE_CACHE_FORMAT = 1;

/** After the first write of a process, the cache is written again at most this often (a write costs ~0.3 s of CPU at 10,000 files). */
export const PARSE_CACHE_WRITE_INTERVAL_MS = 5 * 60_000;

/** Temp files older than this, left by a write that never finished (a crash), are removed by the next write. */
const STALE_TEMP_MS = 10 * 60_000;

const gzipAsync = promisify(gzip);
const gunzipAsync = promisify(gunzip);

/** The first line of a cache file: what must match for its outcomes to be used. */
interface CacheHeader {
  format: number;
  /** package.json's version. */
  vmroll: string;
  /** {@link buildFingerprint} of the writer. */
  build: string;
  /** The normalized path prefix of the load. */
  path: string;
  limits: ManifestLimits;
  /** The commit of the load written (for the operator; not checked). */
  commit: string;
  /** How many outcomes follow (a check against truncation beyond gzip's own). */
  count: number;
}

/** What one write did, for the log and the bench. */
export interface ParseCacheWrite {
  /** Outcomes written. */
  entries: number;
  /** Outcomes left out: those that depend on an earlier version of their file, or hold values JSON would change. */
  left: number;
  /** Size of the file on disk. */
  bytes: number;
  /** Wall time of the write, serialisation included. */
  ms: number;
}

/** Where a log line goes (a pino logger). */
export type ParseCacheLog = Pick<Logger, 'debug' | 'info' | 'warn'>;

let fingerprint: string | undefined;

/**
 * A hash of what decides a FileLoad: package.json (version, pinned parsers and ajv), the VM schema,
 * KubeVirt's field list, and the loader's and validator's own code. A cache written by any other
 * build is ignored, even between two builds of the same version.
 */
export function buildFingerprint(): string {
  if (fingerprint !== undefined) return fingerprint;
  const ext = import.meta.url.endsWith('.ts') ? '.ts' : '.js';
  const files = [
    projectPath('package.json'),
    projectPath('schemas', 'virtualmachine.schema.json'),
    ...['./manifests', './manifestCache', './fastYaml', './yamlDocs', '../validate', '../../schemas/generated/kubevirt-fields'].map((f) => fileURLToPath(new URL(`${f}${ext}`, import.meta.url))),
  ];
  const hash = createHash('sha256').update(`format ${PARSE_CACHE_FORMAT}\n`);
  for (const file of files) {
    let text: string;
    try {
      text = readFileSync(file, 'utf8');
    } catch {
      text = '(unreadable)';
    }
    hash.update(`${path.basename(file)}\n${text}\n`);
  }
  fingerprint = hash.digest('hex').slice(0, 16);
  return fingerprint;
}

let version: string | undefined;

function vmrollVersion(): string {
  if (version !== undefined) return version;
  try {
    version = String((JSON.parse(readFileSync(projectPath('package.json'), 'utf8')) as { version?: unknown }).version);
  } catch {
    version = 'unknown';
  }
  return version;
}

/** The parse cache of one clone and path prefix: read once by a new process, written after its loads. */
export class ManifestCache {
  /** Outcomes in the file as last read or written, by path and oid, to tell whether a load added anything. */
  private stored: Map<string, string> | null = null;
  private lastWrite = -Infinity;

  constructor(
    /** The cache file. */
    readonly file: string,
    private readonly log?: ParseCacheLog,
    /** Minimum time between two writes after the first; default {@link PARSE_CACHE_WRITE_INTERVAL_MS}. */
    private readonly writeIntervalMs = PARSE_CACHE_WRITE_INTERVAL_MS,
  ) {}

  /** The cache for a clone folder (GitSource's `cloneFolder`) and a normalized path prefix; null without a clone (a local repository). */
  static forClone(cloneFolder: string | null | undefined, prefix: string, log?: ParseCacheLog): ManifestCache | null {
    if (typeof cloneFolder !== 'string') return null;
    const key = createHash('sha256').update(prefix).digest('hex').slice(0, 12);
    return new ManifestCache(path.join(cloneFolder, '.git', 'vmroll', `manifests-${key}.json.gz`), log);
  }

  /**
   * The outcomes kept for a load under `path` and `limits`, or null (with one log line saying why)
   * when there are none, or the file cannot be used. Never throws.
   */
  async read(expect: { path: string; limits: ManifestLimits }): Promise<CachedFileLoads | null> {
    const started = performance.now();
    let raw: Buffer;
    try {
      raw = await readFile(this.file);
    } catch (e) {
      const code = (e as { code?: unknown }).code;
      if (code === 'ENOENT') this.log?.debug({ file: this.file }, 'no parse cache yet: every manifest is parsed');
      else this.ignore(`unreadable (${String(code ?? (e instanceof Error ? e.message : e))})`);
      return null;
    }
    let text: string;
    try {
      text = (await gunzipAsync(raw)).toString('utf8');
    } catch (e) {
      this.ignore(`not a complete gzip file (${e instanceof Error ? e.message : String(e)})`);
      return null;
    }
    const newline = text.indexOf('\n');
    let header: CacheHeader;
    try {
      header = JSON.parse(newline === -1 ? text : text.slice(0, newline)) as CacheHeader;
    } catch {
      this.ignore('its header is not JSON');
      return null;
    }
    const other = mismatch(header, expect);
    if (other !== null) {
      // Expected after an upgrade or a change of limits: said once, at info.
      this.log?.info({ file: this.file, why: other }, 'parse cache ignored: written by another build or for other settings; every manifest is parsed');
      return null;
    }
    let entries: unknown;
    try {
      entries = JSON.parse(text.slice(newline + 1));
    } catch {
      this.ignore('its body is not JSON');
      return null;
    }
    if (!Array.isArray(entries) || entries.length !== header.count || !entries.every(isFileLoad)) {
      this.ignore(`its body does not hold the ${header.count} outcomes its header announces`);
      return null;
    }
    const files = new Map<string, FileLoad>();
    for (const load of entries) files.set(load.file, load);
    this.stored = new Map([...files].map(([file, load]) => [file, load.oid]));
    this.log?.info({ file: this.file, entries: files.size, commit: header.commit, ms: Math.round(performance.now() - started) }, 'parse cache read');
    return { path: header.path, limits: header.limits, files };
  }

  /**
   * Writes the outcomes of `set` when it holds any the file lacks: on the first call always, later at
   * most once per write interval (a file left a little behind costs a restart a few parses, never a
   * wrong result). Never throws: a failed write is one log line. Resolves to what was written, or null.
   */
  async save(set: ManifestSet): Promise<ParseCacheWrite | null> {
    try {
      if (!this.adds(set)) return null;
    } catch {
      return null;
    }
    if (this.stored !== null && performance.now() - this.lastWrite < this.writeIntervalMs) return null;
    return this.write(set);
  }

  /** Writes the outcomes of `set` now (atomically), replacing the file; null when the write failed. */
  async write(set: ManifestSet): Promise<ParseCacheWrite | null> {
    const started = performance.now();
    const temp = `${this.file}.tmp-${process.pid}-${randomBytes(4).toString('hex')}`;
    try {
      const kept: FileLoad[] = [];
      for (const load of set.files.values()) if (cacheable(load)) kept.push(load);
      const header: CacheHeader = { format: PARSE_CACHE_FORMAT, vmroll: vmrollVersion(), build: buildFingerprint(), path: set.path, limits: set.limits, commit: set.commit, count: kept.length };
      const data = await gzipAsync(`${JSON.stringify(header)}\n${JSON.stringify(kept)}`, { level: 1 });
      await mkdir(path.dirname(this.file), { recursive: true });
      await this.removeStaleTemps();
      const handle = await open(temp, 'w');
      try {
        await handle.writeFile(data);
        // On disk before the rename makes it the cache: a crash never leaves a half-written file under the real name.
        await handle.sync();
      } finally {
        await handle.close();
      }
      await rename(temp, this.file);
      this.stored = new Map(kept.map((l) => [l.file, l.oid]));
      this.lastWrite = performance.now();
      const written: ParseCacheWrite = { entries: kept.length, left: set.files.size - kept.length, bytes: data.byteLength, ms: Math.round(performance.now() - started) };
      this.log?.debug({ file: this.file, commit: set.commit, ...written }, 'parse cache written');
      return written;
    } catch (e) {
      await rm(temp, { force: true }).catch(() => undefined);
      this.log?.warn({ file: this.file, err: e instanceof Error ? e.message : String(e) }, 'could not write the parse cache; the next process parses every manifest');
      return null;
    }
  }

  /** True when `set` holds a cacheable outcome the file lacks, or the file holds outcomes `set` no longer has. */
  private adds(set: ManifestSet): boolean {
    const stored = this.stored;
    if (stored === null) return true;
    let same = 0;
    for (const load of set.files.values()) {
      if (stored.get(load.file) === load.oid) same++;
      else if (cacheable(load)) return true;
    }
    return same !== stored.size;
  }

  private async removeStaleTemps(): Promise<void> {
    const dir = path.dirname(this.file);
    const prefix = `${path.basename(this.file)}.tmp-`;
    for (const name of await readdir(dir).catch(() => [] as string[])) {
      if (!name.startsWith(prefix)) continue;
      const full = path.join(dir, name);
      const info = await stat(full).catch(() => null);
      if (info !== null && Date.now() - info.mtimeMs > STALE_TEMP_MS) await rm(full, { force: true }).catch(() => undefined);
    }
  }

  private ignore(why: string): void {
    this.log?.warn({ file: this.file, why }, 'parse cache ignored; every manifest is parsed');
  }
}

/** Why a header does not fit the load (or is no header), or null when it does. */
function mismatch(h: CacheHeader, expect: { path: string; limits: ManifestLimits }): string | null {
  if (h === null || typeof h !== 'object') return 'no header';
  if (h.format !== PARSE_CACHE_FORMAT) return `format ${String(h.format)}, this build reads ${PARSE_CACHE_FORMAT}`;
  if (h.vmroll !== vmrollVersion()) return `vmroll ${String(h.vmroll)}, this is ${vmrollVersion()}`;
  if (h.build !== buildFingerprint()) return 'another build of the manifest loader or schemas';
  if (h.path !== expect.path) return `path ${JSON.stringify(h.path)}, this load reads ${JSON.stringify(expect.path)}`;
  if (h.limits === null || typeof h.limits !== 'object' || !sameLimits(h.limits, expect.limits)) return 'other limits (strict, file size, aliases, default namespace)';
  if (typeof h.count !== 'number' || typeof h.commit !== 'string') return 'an incomplete header';
  return null;
}

/**
 * Whether an outcome can be kept: it must not depend on an earlier version of its file (carried keys
 * come from this process's history; a new process without the cache would not have them), and JSON
 * must give it back exactly (no -0, NaN, Infinity or undefined anywhere in a manifest).
 */
function cacheable(load: FileLoad): boolean {
  return load.carriedKeys.length === 0 && jsonExact(load);
}

function jsonExact(v: unknown): boolean {
  switch (typeof v) {
    case 'string':
    case 'boolean':
      return true;
    case 'number':
      return Number.isFinite(v) && !Object.is(v, -0);
    case 'object': {
      if (v === null) return true;
      if (Array.isArray(v)) {
        for (let i = 0; i < v.length; i++) if (!(i in v) || !jsonExact(v[i])) return false;
        return true;
      }
      if (Object.getPrototypeOf(v) !== Object.prototype) return false;
      for (const key in v) if (!jsonExact((v as Record<string, unknown>)[key])) return false;
      return true;
    }
    default:
      return false;
  }
}

// A shape check of each stored outcome: a file written by this build that still fails it is corrupt.
function isFileLoad(v: unknown): v is FileLoad {
  if (v === null || typeof v !== 'object') return false;
  const l = v as Record<string, unknown>;
  return (
    typeof l['file'] === 'string' &&
    typeof l['oid'] === 'string' &&
    typeof l['mode'] === 'number' &&
    (l['refused'] === undefined || typeof l['refused'] === 'string') &&
    typeof l['failed'] === 'boolean' &&
    Array.isArray(l['errors']) &&
    Array.isArray(l['warnings']) &&
    Array.isArray(l['skipped']) &&
    Array.isArray(l['occurrences']) &&
    Array.isArray(l['carriedKeys']) &&
    (l['carriedKeys'] as unknown[]).length === 0
  );
}
