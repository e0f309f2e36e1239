/**
 * Reads many blobs at once straight from a repository's object store: pack index v2 files (with
 * 64-bit offsets), their packs (whole objects, OFS_DELTA and REF_DELTA chains), and loose objects,
 * inflated with Node's zlib. Every blob it returns has matched its SHA-1; what it cannot read (not
 * found, not a blob, corrupt, an unknown format) is listed with the reason, never guessed, so the
 * caller can read it some other way. Packs are picked up again whenever the set of `.idx` files changes.
 */
import { createHash } from 'node:crypto';
import { open, readdir, readFile, type FileHandle } from 'node:fs/promises';
import path from 'node:path';
import { inflateSync } from 'node:zlib';

/** How {@link PackReader} is set up. */
export interface PackReaderOptions {
  /** The repository's git directory (`.git`, or the bare repository itself). */
  gitdir: string;
  /** Bytes of inflated delta bases kept between objects (many blobs share bases); default 8 MiB. */
  baseCacheBytes?: number;
  /** Largest single read from a pack: neighbouring objects are read together up to this; default 8 MiB. */
  windowBytes?: number;
  /** Check each returned blob against its oid (SHA-1); default true. */
  verify?: boolean;
}

/** What one {@link PackReader.readBlobs} call found. */
export interface PackReadResult {
  /** Blobs read (and verified, unless turned off), by oid. */
  blobs: Map<string, Uint8Array>;
  /** Oids not read, with why: the caller must read them another way (or report them missing). */
  unread: Map<string, string>;
}

/** Counters since the reader was made, for the bench and the tests. */
export interface PackReaderStats {
  /** Blobs returned from packs. */
  packed: number;
  /** Blobs returned from loose objects. */
  loose: number;
  /** Oids handed back as unread. */
  unread: number;
  /** Delta bases found in the base cache / inflated again. */
  baseHits: number;
  baseMisses: number;
  /** Pack index files parsed (again after the pack set changed). */
  indexLoads: number;
}

// Object type numbers of the pack format.
const OBJ_COMMIT = 1;
const OBJ_TAG = 4;
const OBJ_BLOB = 3;
const OBJ_OFS_DELTA = 6;
const OBJ_REF_DELTA = 7;
const TYPE_NAMES: Record<number, string> = { 1: 'commit', 2: 'tree', 3: 'blob', 4: 'tag' };
/** Longer chains than this are taken as a cycle in a corrupt pack (git's own default depth is 50). */
const MAX_DELTA_DEPTH = 10_000;
const OID = /^[0-9a-f]{40}$/;
const IDX_MAGIC = 0xff744f63;
/** Objects further apart than this are not read in the same window. */
const WINDOW_GAP_BYTES = 64 * 1024;

/** A parsed `.idx` (version 2) and where its pack lies. */
export interface PackIndex {
  /** `pack-<checksum>`, without extension. */
  name: string;
  /** Full path of the `.pack` file. */
  packPath: string;
  /** Number of objects. */
  count: number;
  /** The pack's checksum as the index records it (the pack's last 20 bytes). */
  packChecksum: Buffer;
  /** Offset of object `oid` in the pack, or null when the index does not hold it. */
  find(oid: Buffer): number | null;
  /** Every object offset, ascending: an object ends where the next begins. */
  sortedOffsets: Float64Array;
  /** Object oids (hex) with their offsets, in index order; for tests and tools. */
  entries(): { oid: string; offset: number }[];
}

/** Thrown for an `.idx` that is not a well-formed version 2 index. */
export class PackIndexError extends Error {}

/**
 * Parses a version 2 pack index: fanout, sorted oids, CRCs, 31-bit offsets and the 64-bit
 * large-offset table their top bit points into, and the trailer (whose own SHA-1 is checked).
 */
export function parsePackIndex(idx: Buffer, name: string, packPath: string): PackIndex {
  const bad = (why: string): PackIndexError => new PackIndexError(`${name}.idx: ${why}`);
  if (idx.length < 8 + 1024 + 40) throw bad(`${idx.length} bytes is too short for an index`);
  if (idx.readUInt32BE(0) !== IDX_MAGIC) throw bad('not a version 2 pack index (no \\377tOc magic)');
  const version = idx.readUInt32BE(4);
  if (version !== 2) throw bad(`index version ${version} is not supported`);
  let previous = 0;
  for (let i = 0; i < 256; i++) {
    const n = idx.readUInt32BE(8 + 4 * i);
    if (n < previous) throw bad('fanout table is not monotonic');
    previous = n;
  }
  const count = previous;
  const oidStart = 8 + 1024;
  const offStart = oidStart + 24 * count;
  const largeStart = offStart + 4 * count;
  const rest = idx.length - largeStart - 40;
  if (rest < 0 || rest % 8 !== 0) throw bad(`length ${idx.length} does not fit ${count} objects`);
  const largeCount = rest / 8;
  const trailer = createHash('sha1').update(idx.subarray(0, idx.length - 20)).digest();
  if (!trailer.equals(idx.subarray(idx.length - 20))) throw bad('checksum does not match its content');

  const offsetAt = (i: number): number => {
    const v = idx.readUInt32BE(offStart + 4 * i);
    if ((v & 0x80000000) === 0) return v;
    const j = v & 0x7fffffff;
    if (j >= largeCount) throw bad(`object ${i} points past the large-offset table`);
    const hi = idx.readUInt32BE(largeStart + 8 * j);
    const lo = idx.readUInt32BE(largeStart + 8 * j + 4);
    if (hi >= 0x200000) throw bad(`object ${i} has an offset beyond 2^53`);
    return hi * 0x100000000 + lo;
  };
  const offsets = new Float64Array(count);
  for (let i = 0; i < count; i++) offsets[i] = offsetAt(i);
  const sortedOffsets = Float64Array.from(offsets).sort();

  return {
    name,
    packPath,
    count,
    packChecksum: Buffer.from(idx.subarray(idx.length - 40, idx.length - 20)),
    sortedOffsets,
    find(oid: Buffer): number | null {
      const first = oid[0] as number;
      let lo = first === 0 ? 0 : idx.readUInt32BE(8 + 4 * (first - 1));
      let hi = idx.readUInt32BE(8 + 4 * first);
      while (lo < hi) {
        const mid = (lo + hi) >>> 1;
        const at = oidStart + 20 * mid;
        const c = idx.compare(oid, 0, 20, at, at + 20);
        if (c === 0) return offsets[mid] as number;
        if (c < 0) lo = mid + 1;
        else hi = mid;
      }
      return null;
    },
    entries() {
      return Array.from({ length: count }, (_, i) => ({ oid: idx.toString('hex', oidStart + 20 * i, oidStart + 20 * i + 20), offset: offsets[i] as number }));
    },
  };
}

/** Thrown (and caught per object) when a pack entry or loose object cannot be decoded. */
class CorruptObject extends Error {}

interface Resolved {
  type: number;
  data: Buffer;
}

// A small LRU of inflated delta bases, bounded by bytes: a Map keeps insertion order, so the first key is the oldest.
class BaseCache {
  private readonly map = new Map<string, Resolved>();
  private bytes = 0;
  constructor(private readonly maxBytes: number) {}

  get(key: string): Resolved | undefined {
    const hit = this.map.get(key);
    if (hit !== undefined) {
      this.map.delete(key);
      this.map.set(key, hit);
    }
    return hit;
  }

  set(key: string, value: Resolved): void {
    if (value.data.length > this.maxBytes / 4 || this.map.has(key)) return;
    this.map.set(key, value);
    this.bytes += value.data.length;
    for (const [oldKey, old] of this.map) {
      if (this.bytes <= this.maxBytes) break;
      this.map.delete(oldKey);
      this.bytes -= old.data.length;
    }
  }

  clear(): void {
    this.map.clear();
    this.bytes = 0;
  }
}

// Inflates one zlib stream whose inflated size the header gave; anything else is corruption.
function inflateExact(data: Buffer, size: number, what: string): Buffer {
  let out: Buffer;
  try {
    out = inflateSync(data, { maxOutputLength: Math.max(size, 1), chunkSize: Math.max(64, Math.min(size + 64, 1 << 20)) });
  } catch (e) {
    throw new CorruptObject(`${what}: zlib: ${e instanceof Error ? e.message : String(e)}`);
  }
  if (out.length !== size) throw new CorruptObject(`${what}: inflated to ${out.length} bytes, header says ${size}`);
  return out;
}

// Git's delta format: source size, target size (little-endian base-128), then copy and insert instructions.
function applyDelta(base: Buffer, delta: Buffer, what: string): Buffer {
  let i = 0;
  const varint = (): number => {
    let value = 0;
    let shift = 0;
    let c: number;
    do {
      if (i >= delta.length) throw new CorruptObject(`${what}: delta header truncated`);
      c = delta[i++] as number;
      value += (c & 0x7f) * 2 ** shift;
      shift += 7;
    } while (c & 0x80);
    return value;
  };
  const sourceSize = varint();
  const targetSize = varint();
  if (sourceSize !== base.length) throw new CorruptObject(`${what}: delta expects a ${sourceSize}-byte base, base has ${base.length}`);
  const out = Buffer.allocUnsafe(targetSize);
  let o = 0;
  while (i < delta.length) {
    const cmd = delta[i++] as number;
    if (cmd & 0x80) {
      let offset = 0;
      let size = 0;
      if (cmd & 0x01) offset |= delta[i++] as number;
      if (cmd & 0x02) offset |= (delta[i++] as number) << 8;
      if (cmd & 0x04) offset |= (delta[i++] as number) << 16;
      if (cmd & 0x08) offset += (delta[i++] as number) * 0x1000000;
      if (cmd & 0x10) size |= delta[i++] as number;
      if (cmd & 0x20) size |= (delta[i++] as number) << 8;
      if (cmd & 0x40) size |= (delta[i++] as number) << 16;
      if (size === 0) size = 0x10000;
      if (i > delta.length || offset + size > base.length || o + size > targetSize) throw new CorruptObject(`${what}: delta copy out of bounds`);
      base.copy(out, o, offset, offset + size);
      o += size;
    } else if (cmd !== 0) {
      if (i + cmd > delta.length || o + cmd > targetSize) throw new CorruptObject(`${what}: delta insert out of bounds`);
      delta.copy(out, o, i, i + cmd);
      o += cmd;
      i += cmd;
    } else {
      throw new CorruptObject(`${what}: delta has the reserved instruction 0`);
    }
  }
  if (o !== targetSize) throw new CorruptObject(`${what}: delta produced ${o} bytes, expected ${targetSize}`);
  return out;
}

interface OpenPack {
  fh: FileHandle;
  /** Where the trailer starts: no object reaches past it. */
  dataEnd: number;
}

interface Wanted {
  oid: string;
  pack: PackIndex;
  offset: number;
  end: number;
}

/** Reads blobs from one repository's object store, many per call; reuse it across syncs. */
export class PackReader {
  /** Counters since construction. */
  readonly stats: PackReaderStats = { packed: 0, loose: 0, unread: 0, baseHits: 0, baseMisses: 0, indexLoads: 0 };
  private readonly gitdir: string;
  private readonly windowBytes: number;
  private readonly verify: boolean;
  private readonly bases: BaseCache;
  /** Parsed indexes by `.idx` file name; replaced when the set of names on disk changes. */
  private indexes = new Map<string, PackIndex>();
  private packIds = new Map<PackIndex, number>();
  private nextPackId = 0;

  constructor(options: PackReaderOptions) {
    this.gitdir = options.gitdir;
    this.windowBytes = options.windowBytes ?? 8 * 1024 * 1024;
    this.verify = options.verify ?? true;
    this.bases = new BaseCache(options.baseCacheBytes ?? 8 * 1024 * 1024);
  }

  /** The packs currently known (after the last refresh); for tests. */
  get packNames(): string[] {
    return [...this.indexes.values()].map((p) => p.name).sort();
  }

  /**
   * Reads the blobs `oids` (full lowercase hex). Pack files are opened for this call only and closed
   * before it returns, so a later fetch's new packs (or a repack) are seen by the next call.
   */
  async readBlobs(args: { oids: string[] }): Promise<PackReadResult> {
    const blobs = new Map<string, Uint8Array>();
    const unread = new Map<string, string>();
    const packs = await this.refresh();
    const session = new Session(this, packs);
    try {
      const wanted: Wanted[] = [];
      const looseOids: string[] = [];
      for (const oid of new Set(args.oids)) {
        if (!OID.test(oid)) {
          unread.set(oid, 'not a full lowercase object id');
          continue;
        }
        const key = Buffer.from(oid, 'hex');
        let found: Wanted | null = null;
        for (const pack of packs) {
          const offset = pack.find(key);
          if (offset !== null) {
            found = { oid, pack, offset, end: objectEnd(pack, offset) };
            break;
          }
        }
        if (found !== null) wanted.push(found);
        else looseOids.push(oid);
      }
      // Pack order, so neighbours share one read and bases come before the deltas that use them.
      wanted.sort((a, b) => (a.pack === b.pack ? a.offset - b.offset : this.packId(a.pack) - this.packId(b.pack)));
      let i = 0;
      while (i < wanted.length) {
        const first = wanted[i] as Wanted;
        let j = i + 1;
        let end = first.end;
        while (j < wanted.length) {
          const next = wanted[j] as Wanted;
          // A wide gap is read around, so the bytes read follow the objects asked for, not the pack's size.
          if (next.pack !== first.pack || next.end - first.offset > this.windowBytes || next.offset - end > WINDOW_GAP_BYTES) break;
          end = Math.max(end, next.end);
          j++;
        }
        await session.loadWindow(first.pack, first.offset, end);
        for (const w of wanted.slice(i, j)) {
          try {
            const object = await session.resolveAt(w.pack, w.offset);
            this.accept(w.oid, object, `${w.pack.name} at ${w.offset}`, blobs, unread);
            if (blobs.has(w.oid)) this.stats.packed++;
          } catch (e) {
            if (!(e instanceof CorruptObject)) throw e;
            unread.set(w.oid, e.message);
          }
        }
        i = j;
      }
      session.dropWindow();
      for (const oid of looseOids) {
        try {
          const object = await this.readLoose(oid);
          if (object === null) {
            unread.set(oid, 'not in any pack nor loose');
            continue;
          }
          this.accept(oid, object, `loose object ${oid}`, blobs, unread);
          if (blobs.has(oid)) this.stats.loose++;
        } catch (e) {
          if (!(e instanceof CorruptObject)) throw e;
          unread.set(oid, e.message);
        }
      }
    } finally {
      await session.close();
    }
    this.stats.unread += unread.size;
    return { blobs, unread };
  }

  private accept(oid: string, object: Resolved, where: string, blobs: Map<string, Uint8Array>, unread: Map<string, string>): void {
    if (object.type !== OBJ_BLOB) {
      unread.set(oid, `${where} is a ${TYPE_NAMES[object.type] ?? `type-${object.type}`}, not a blob`);
      return;
    }
    if (this.verify && objectId(object) !== oid) {
      unread.set(oid, `${where}: content does not hash to ${oid}`);
      return;
    }
    blobs.set(oid, object.data);
  }

  /** Stable small number per loaded index, for cache keys and ordering. */
  packId(pack: PackIndex): number {
    let id = this.packIds.get(pack);
    if (id === undefined) {
      id = this.nextPackId++;
      this.packIds.set(pack, id);
    }
    return id;
  }

  /** Base cache, shared by sessions. */
  get baseCache(): BaseCache {
    return this.bases;
  }

  // Re-lists objects/pack: parses new indexes, forgets removed ones (and the bases read from them).
  private async refresh(): Promise<PackIndex[]> {
    const dir = path.join(this.gitdir, 'objects', 'pack');
    let names: string[];
    try {
      names = (await readdir(dir)).filter((n) => n.endsWith('.idx')).sort();
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
      names = [];
    }
    const same = names.length === this.indexes.size && names.every((n) => this.indexes.has(n));
    if (!same) {
      const next = new Map<string, PackIndex>();
      for (const name of names) {
        const known = this.indexes.get(name);
        if (known !== undefined) {
          next.set(name, known);
          continue;
        }
        const base = name.slice(0, -'.idx'.length);
        try {
          const idx = await readFile(path.join(dir, name));
          next.set(name, parsePackIndex(idx, base, path.join(dir, `${base}.pack`)));
          this.stats.indexLoads++;
        } catch (e) {
          // A half-written or foreign index: its objects are read another way (the caller's fallback).
          if (!(e instanceof PackIndexError) && (e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
        }
      }
      for (const [name, pack] of this.indexes) {
        if (!next.has(name)) this.packIds.delete(pack);
      }
      this.indexes = next;
      this.bases.clear();
    }
    return [...this.indexes.values()];
  }

  /** A loose object, or null when there is no such file. */
  async readLoose(oid: string): Promise<Resolved | null> {
    let raw: Buffer;
    try {
      raw = await readFile(path.join(this.gitdir, 'objects', oid.slice(0, 2), oid.slice(2)));
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return null;
      throw e;
    }
    let all: Buffer;
    try {
      all = inflateSync(raw);
    } catch (e) {
      throw new CorruptObject(`loose object ${oid}: zlib: ${e instanceof Error ? e.message : String(e)}`);
    }
    const nul = all.indexOf(0);
    const header = nul > 0 && nul < 32 ? all.toString('latin1', 0, nul) : '';
    const m = /^(commit|tree|blob|tag) (0|[1-9]\d*)$/.exec(header);
    if (m === null) throw new CorruptObject(`loose object ${oid}: bad header`);
    const data = all.subarray(nul + 1);
    if (data.length !== Number(m[2])) throw new CorruptObject(`loose object ${oid}: ${data.length} bytes, header says ${m[2]}`);
    const type = Number(Object.entries(TYPE_NAMES).find(([, n]) => n === m[1])?.[0]);
    return { type, data };
  }

  /** Looks `oid` up in every pack, for a REF_DELTA base. */
  locate(oid: Buffer, packs: PackIndex[], prefer: PackIndex): { pack: PackIndex; offset: number } | null {
    const own = prefer.find(oid);
    if (own !== null) return { pack: prefer, offset: own };
    for (const pack of packs) {
      if (pack === prefer) continue;
      const offset = pack.find(oid);
      if (offset !== null) return { pack, offset };
    }
    return null;
  }
}

// Where an object's bytes end: at the next object's offset, or at the pack's trailer.
function objectEnd(pack: PackIndex, offset: number): number {
  const sorted = pack.sortedOffsets;
  let lo = 0;
  let hi = sorted.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if ((sorted[mid] as number) <= offset) lo = mid + 1;
    else hi = mid;
  }
  return lo < sorted.length ? (sorted[lo] as number) : Number.POSITIVE_INFINITY;
}

// The SHA-1 git names an object by: `<type> <size>\0<content>`.
function objectId(object: Resolved): string {
  return createHash('sha1')
    .update(`${TYPE_NAMES[object.type] ?? ''} ${object.data.length}\0`)
    .update(object.data)
    .digest('hex');
}

// The file handles and the current read window of one readBlobs call.
class Session {
  private readonly open = new Map<PackIndex, Promise<OpenPack | null>>();
  private window: { pack: PackIndex; start: number; buf: Buffer } | null = null;

  constructor(
    private readonly reader: PackReader,
    private readonly packs: PackIndex[],
  ) {}

  async close(): Promise<void> {
    this.window = null;
    for (const p of this.open.values()) {
      const handle = await p.catch(() => null);
      await handle?.fh.close().catch(() => undefined);
    }
    this.open.clear();
  }

  dropWindow(): void {
    this.window = null;
  }

  // Opens a pack once per call and checks it belongs to its index (header and trailer checksum).
  private handle(pack: PackIndex): Promise<OpenPack | null> {
    let p = this.open.get(pack);
    if (p === undefined) {
      p = (async (): Promise<OpenPack | null> => {
        let fh: FileHandle;
        try {
          fh = await open(pack.packPath, 'r');
        } catch (e) {
          if ((e as NodeJS.ErrnoException).code === 'ENOENT') return null;
          throw e;
        }
        const { size } = await fh.stat();
        const head = Buffer.alloc(12);
        const tail = Buffer.alloc(20);
        if (size < 32) return withClose(fh);
        await fh.read(head, 0, 12, 0);
        await fh.read(tail, 0, 20, size - 20);
        const version = head.readUInt32BE(4);
        if (head.toString('latin1', 0, 4) !== 'PACK' || (version !== 2 && version !== 3) || !tail.equals(pack.packChecksum)) return withClose(fh);
        return { fh, dataEnd: size - 20 };
      })();
      this.open.set(pack, p);
    }
    return p;
  }

  async loadWindow(pack: PackIndex, start: number, end: number): Promise<void> {
    this.window = null;
    const h = await this.handle(pack);
    if (h === null) return;
    const stop = Math.min(end, h.dataEnd);
    if (stop <= start) return;
    const buf = Buffer.allocUnsafe(stop - start);
    const { bytesRead } = await h.fh.read(buf, 0, buf.length, start);
    this.window = { pack, start, buf: buf.subarray(0, bytesRead) };
  }

  // The bytes of the object at `offset`, from the window when it holds them.
  private async bytes(pack: PackIndex, offset: number): Promise<Buffer> {
    const h = await this.handle(pack);
    if (h === null) throw new CorruptObject(`${pack.name}.pack is missing or does not match its index`);
    const end = Math.min(objectEnd(pack, offset), h.dataEnd);
    if (offset < 12 || end <= offset) throw new CorruptObject(`${pack.name}.pack: object offset ${offset} is outside the pack`);
    const w = this.window;
    if (w !== null && w.pack === pack && offset >= w.start && end <= w.start + w.buf.length) return w.buf.subarray(offset - w.start, end - w.start);
    const buf = Buffer.allocUnsafe(end - offset);
    const { bytesRead } = await h.fh.read(buf, 0, buf.length, offset);
    if (bytesRead !== buf.length) throw new CorruptObject(`${pack.name}.pack: short read at ${offset}`);
    return buf;
  }

  /** The object at `offset` of `pack`, its delta chain applied (bases cached). */
  async resolveAt(pack: PackIndex, offset: number): Promise<Resolved> {
    const cache = this.reader.baseCache;
    const chain: { key: string; delta: Buffer; what: string }[] = [];
    let cur = { pack, offset };
    let base: Resolved | null = null;
    while (base === null) {
      const key = `${this.reader.packId(cur.pack)}:${cur.offset}`;
      const what = `${cur.pack.name} at ${cur.offset}`;
      if (chain.length > 0) {
        const hit = cache.get(key);
        if (hit !== undefined) {
          this.reader.stats.baseHits++;
          base = hit;
          break;
        }
        this.reader.stats.baseMisses++;
      }
      if (chain.length > MAX_DELTA_DEPTH) throw new CorruptObject(`${what}: delta chain longer than ${MAX_DELTA_DEPTH}`);
      const raw = await this.bytes(cur.pack, cur.offset);
      let c = raw[0] as number;
      const type = (c >> 4) & 7;
      let size = c & 0x0f;
      let shift = 4;
      let i = 1;
      while (c & 0x80) {
        if (i >= raw.length) throw new CorruptObject(`${what}: header truncated`);
        c = raw[i++] as number;
        size += (c & 0x7f) * 2 ** shift;
        shift += 7;
      }
      if (type >= OBJ_COMMIT && type <= OBJ_TAG) {
        base = { type, data: inflateExact(raw.subarray(i), size, what) };
        if (chain.length > 0) cache.set(key, base);
      } else if (type === OBJ_OFS_DELTA) {
        c = raw[i++] as number;
        let back = c & 0x7f;
        while (c & 0x80) {
          if (i >= raw.length) throw new CorruptObject(`${what}: base offset truncated`);
          c = raw[i++] as number;
          back = (back + 1) * 128 + (c & 0x7f);
        }
        const baseOffset = cur.offset - back;
        if (back <= 0 || baseOffset < 12) throw new CorruptObject(`${what}: base offset ${baseOffset} is outside the pack`);
        chain.push({ key, delta: inflateExact(raw.subarray(i), size, what), what });
        cur = { pack: cur.pack, offset: baseOffset };
      } else if (type === OBJ_REF_DELTA) {
        if (i + 20 > raw.length) throw new CorruptObject(`${what}: base id truncated`);
        const baseOid = raw.subarray(i, i + 20);
        chain.push({ key, delta: inflateExact(raw.subarray(i + 20), size, what), what });
        const at = this.reader.locate(baseOid, this.packs, cur.pack);
        if (at !== null) {
          cur = at;
          continue;
        }
        const loose = await this.reader.readLoose(baseOid.toString('hex'));
        if (loose === null) throw new CorruptObject(`${what}: delta base ${baseOid.toString('hex')} is not in the repository`);
        base = loose;
      } else {
        throw new CorruptObject(`${what}: unknown object type ${type}`);
      }
    }
    for (let k = chain.length - 1; k >= 0; k--) {
      const link = chain[k] as (typeof chain)[number];
      base = { type: base.type, data: applyDelta(base.data, link.delta, link.what) };
      if (k > 0) cache.set(link.key, base);
    }
    return base;
  }
}

async function withClose(fh: FileHandle): Promise<null> {
  await fh.close();
  return null;
}
