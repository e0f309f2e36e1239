// The bulk pack reader against Debian's git: every blob of real repositories (OFS_DELTA chains from
// `git gc --aggressive`, REF_DELTA from a repack without offsets, loose objects, a clone made by
// isomorphic-git through git-http-backend on 127.0.0.1) must come back byte-identical to `git cat-file`;
// crafted packs and indexes cover 64-bit offsets, a REF_DELTA base in another place, and lies.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { cp, mkdir, mkdtemp, readdir, readFile, readlink, rm, symlink, unlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { inspect, isDeepStrictEqual } from 'node:util';
import { deflateSync } from 'node:zlib';
import { SourceError } from '../reconciler/source/errors.ts';
import { GitSource } from '../reconciler/source/gitSource.ts';
import { loadManifests, type ManifestReader } from '../reconciler/source/manifests.ts';
import { PackIndexError, PackReader, parsePackIndex } from '../reconciler/source/packReader.ts';
import { startGitServer, type GitServer } from './helpers/gitServer.ts';

const IDENTITY = ['-c', 'user.name=vmroll test', '-c', 'user.email=test@vmroll.invalid', '-c', 'commit.gpgsign=false', '-c', 'init.defaultBranch=main'];

function gitRaw(cwd: string, args: string[]): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    execFile('git', [...IDENTITY, ...args], { cwd, encoding: 'buffer', maxBuffer: 256 * 1024 * 1024, timeout: 120_000, env: { ...process.env, GIT_CONFIG_NOSYSTEM: '1', HOME: cwd } }, (err, stdout, stderr) => {
      if (err) reject(new Error(`git ${args.join(' ')}: ${err.message} ${stderr.toString()}`));
      else resolve(stdout);
    });
  });
}

async function git(cwd: string, ...args: string[]): Promise<string> {
  return (await gitRaw(cwd, args)).toString('utf8').trim();
}

/** Every blob in the repository's object store, as `git cat-file` prints it. */
async function catAllBlobs(cwd: string): Promise<Map<string, Buffer>> {
  const out = await gitRaw(cwd, ['cat-file', '--batch-all-objects', '--batch']);
  const blobs = new Map<string, Buffer>();
  let i = 0;
  while (i < out.length) {
    const nl = out.indexOf(10, i);
    const [oid, type, size] = out.toString('latin1', i, nl).split(' ');
    const start = nl + 1;
    const end = start + Number(size);
    if (type === 'blob') blobs.set(oid as string, out.subarray(start, end));
    i = end + 1;
  }
  return blobs;
}

/** A VM manifest; the fleet's files differ in a few values only, so git stores most as deltas. */
function manifest(i: number, version = 0): string {
  const lines = [
    'apiVersion: kubevirt.io/v1',
    'kind: VirtualMachine',
    'metadata:',
    `  name: vm-${i}`,
    `  namespace: team-${i % 7}`,
    '  labels:',
    `    app: role-${i % 5}`,
    `    version: "${version}"`,
    'spec:',
    `  runStrategy: ${i % 10 === 0 ? 'Halted' : 'Always'}`,
    '  template:',
    '    spec:',
    '      domain:',
    '        cpu:',
    `          sockets: ${1 + (i % 4) + version}`,
    '        memory:',
    `          guest: ${1 + (i % 3)}Gi`,
    '        devices:',
    '          disks:',
    ...Array.from({ length: 1 + (i % 3) }, (_, d) => `            - name: disk-${d}\n              disk:\n                bus: virtio`),
    '      volumes:',
    '        - name: disk-0',
    '          containerDisk:',
    `            image: quay.io/containerdisks/fedora:${40 + (i % 2)}`,
  ];
  return `${lines.join('\n')}\n`;
}

async function makeRepo(dir: string, count: number, edits: number): Promise<void> {
  await git(dir, 'init', '--quiet');
  for (let i = 0; i < count; i++) {
    await mkdir(path.join(dir, `vms/team-${i % 7}`), { recursive: true });
    await writeFile(path.join(dir, `vms/team-${i % 7}/vm-${i}.yaml`), manifest(i));
  }
  // An empty blob, and one large enough for a long size header and more than one zlib output chunk.
  await writeFile(path.join(dir, 'empty.yaml'), '');
  await writeFile(path.join(dir, 'large.txt'), Array.from({ length: 20_000 }, (_, k) => `${k} ${(k * 2654435761) % 1000003}`).join('\n'));
  await git(dir, 'add', '--all');
  await git(dir, 'commit', '--quiet', '-m', 'fleet');
  // Several versions of some files, so chains of deltas form between them.
  for (let v = 1; v <= edits; v++) {
    for (let i = 0; i < count; i += 3) await writeFile(path.join(dir, `vms/team-${i % 7}/vm-${i}.yaml`), manifest(i, v));
    await git(dir, 'commit', '--quiet', '-am', `edit ${v}`);
  }
}

async function packFiles(gitdir: string): Promise<string[]> {
  return (await readdir(path.join(gitdir, 'objects/pack'))).filter((n) => n.endsWith('.pack')).map((n) => path.join(gitdir, 'objects/pack', n));
}

/** How many entries of each pack type number the repository's packs hold. */
async function packTypes(gitdir: string): Promise<Record<number, number>> {
  const counts: Record<number, number> = {};
  for (const packPath of await packFiles(gitdir)) {
    const pack = await readFile(packPath);
    const idx = parsePackIndex(await readFile(packPath.replace(/\.pack$/, '.idx')), 'x', packPath);
    for (const { offset } of idx.entries()) {
      const type = ((pack[offset] as number) >> 4) & 7;
      counts[type] = (counts[type] ?? 0) + 1;
    }
  }
  return counts;
}

/** The longest delta chain `git verify-pack -v` reports over the repository's packs. */
async function longestChain(gitdir: string): Promise<number> {
  let longest = 0;
  for (const packPath of await packFiles(gitdir)) {
    const out = await git(gitdir, 'verify-pack', '-v', packPath.replace(/\.pack$/, '.idx'));
    for (const m of out.matchAll(/chain length = (\d+):/g)) longest = Math.max(longest, Number(m[1]));
  }
  return longest;
}

/** Open file descriptors of this process that point at a .pack file. */
async function openPackFds(): Promise<string[]> {
  const fds = await readdir('/proc/self/fd');
  const targets = await Promise.all(fds.map((fd) => readlink(`/proc/self/fd/${fd}`).catch(() => '')));
  return targets.filter((t) => t.endsWith('.pack'));
}

function assertSameBlobs(got: Map<string, Uint8Array>, expected: Map<string, Buffer>): void {
  assert.equal(got.size, expected.size);
  for (const [oid, bytes] of expected) {
    const mine = got.get(oid);
    assert.ok(mine !== undefined, `blob ${oid} not read`);
    assert.ok(Buffer.from(mine.buffer, mine.byteOffset, mine.byteLength).equals(bytes), `blob ${oid} differs from git cat-file`);
  }
}

// Crafting packs and indexes by hand, for what Debian git does not write.
function packHeader(type: number, size: number): Buffer {
  const bytes = [(type << 4) | (size & 15) | (size > 15 ? 0x80 : 0)];
  let rest = Math.floor(size / 16);
  while (rest > 0) {
    bytes.push((rest & 127) | (rest > 127 ? 0x80 : 0));
    rest = Math.floor(rest / 128);
  }
  return Buffer.from(bytes);
}

function blobId(content: Buffer): string {
  return createHash('sha1').update(`blob ${content.length}\0`).update(content).digest('hex');
}

/** A pack of the given entries (already encoded), with its trailer. */
function buildPack(entries: Buffer[]): { pack: Buffer; offsets: number[] } {
  const head = Buffer.alloc(12);
  head.write('PACK', 0, 'latin1');
  head.writeUInt32BE(2, 4);
  head.writeUInt32BE(entries.length, 8);
  const offsets: number[] = [];
  let at = 12;
  for (const e of entries) {
    offsets.push(at);
    at += e.length;
  }
  const body = Buffer.concat([head, ...entries]);
  return { pack: Buffer.concat([body, createHash('sha1').update(body).digest()]), offsets };
}

/** An index v2; offsets from `largeFrom` up go in the 64-bit table (as git does past 2 GiB). */
function buildIdx(objects: { oid: string; offset: number; crc?: number }[], packChecksum: Buffer, largeFrom = 0x80000000): Buffer {
  const sorted = [...objects].sort((a, b) => (a.oid < b.oid ? -1 : a.oid > b.oid ? 1 : 0));
  const head = Buffer.alloc(8 + 1024);
  head.writeUInt32BE(0xff744f63, 0);
  head.writeUInt32BE(2, 4);
  for (let b = 0; b < 256; b++) head.writeUInt32BE(sorted.filter((o) => parseInt(o.oid.slice(0, 2), 16) <= b).length, 8 + 4 * b);
  const oids = Buffer.concat(sorted.map((o) => Buffer.from(o.oid, 'hex')));
  const crcs = Buffer.alloc(4 * sorted.length);
  const small = Buffer.alloc(4 * sorted.length);
  const big = Buffer.alloc(8 * sorted.filter((o) => o.offset >= largeFrom).length);
  let j = 0;
  sorted.forEach((o, i) => {
    crcs.writeUInt32BE(o.crc ?? 0, 4 * i);
    if (o.offset >= largeFrom) {
      small.writeUInt32BE((0x80000000 | j) >>> 0, 4 * i);
      big.writeUInt32BE(Math.floor(o.offset / 0x100000000), 8 * j);
      big.writeUInt32BE(o.offset % 0x100000000, 8 * j + 4);
      j++;
    } else {
      small.writeUInt32BE(o.offset, 4 * i);
    }
  });
  const body = Buffer.concat([head, oids, crcs, small, big, packChecksum]);
  return Buffer.concat([body, createHash('sha1').update(body).digest()]);
}

async function installPack(gitdir: string, pack: Buffer, idx: Buffer): Promise<string> {
  const name = `pack-${pack.subarray(pack.length - 20).toString('hex')}`;
  await writeFile(path.join(gitdir, 'objects/pack', `${name}.pack`), pack);
  await writeFile(path.join(gitdir, 'objects/pack', `${name}.idx`), idx);
  return name;
}

describe('pack reader: blobs in bulk from packfiles and loose objects, as git reads them', function () {
  let root: string;
  let repo: string;
  let gitdir: string;
  let expected: Map<string, Buffer>;

  before(async function () {
    root = await mkdtemp(path.join(tmpdir(), 'vmroll-pack-'));
    repo = path.join(root, 'repo');
    await mkdir(repo);
    await makeRepo(repo, 240, 4);
    await git(repo, 'gc', '--quiet', '--aggressive');
    gitdir = path.join(repo, '.git');
    expected = await catAllBlobs(repo);
  });

  after(async function () {
    if (root) await rm(root, { recursive: true, force: true });
  });

  it('reads every blob of an aggressively packed repository byte-identical to git cat-file, through OFS_DELTA chains', async function () {
    const types = await packTypes(gitdir);
    assert.ok((types[6] ?? 0) > 100, `expected many OFS_DELTA entries, got ${inspect(types)}`);
    assert.ok((await longestChain(gitdir)) >= 3, 'expected delta chains of length 3 or more');
    assert.ok(expected.size > 500, `expected many blobs, got ${expected.size}`);
    const reader = new PackReader({ gitdir });
    const { blobs, unread } = await reader.readBlobs({ oids: [...expected.keys()] });
    assert.deepEqual([...unread], []);
    assertSameBlobs(blobs, expected);
    assert.equal(reader.stats.packed, expected.size);
    assert.ok(reader.stats.baseHits > 0, 'shared delta bases come from the cache');
    assert.deepEqual(await openPackFds(), [], 'no pack stays open after the call');
  });

  it('gives the same bytes with a tiny base cache and a tiny read window (every base read again, objects read one by one)', async function () {
    const reader = new PackReader({ gitdir, baseCacheBytes: 1, windowBytes: 1 });
    const { blobs, unread } = await reader.readBlobs({ oids: [...expected.keys()].reverse() });
    assert.equal(unread.size, 0);
    assertSameBlobs(blobs, expected);
    assert.equal(reader.stats.baseHits, 0);
  });

  it('reads REF_DELTA packs (a repack without delta base offsets)', async function () {
    const copy = path.join(root, 'refdelta');
    await cp(repo, copy, { recursive: true });
    await git(copy, '-c', 'repack.useDeltaBaseOffset=false', 'repack', '-a', '-d', '-f', '--quiet', '--depth=50', '--window=250');
    const types = await packTypes(path.join(copy, '.git'));
    assert.ok((types[7] ?? 0) > 100 && (types[6] ?? 0) === 0, `expected REF_DELTA entries only, got ${inspect(types)}`);
    const { blobs, unread } = await new PackReader({ gitdir: path.join(copy, '.git') }).readBlobs({ oids: [...expected.keys()] });
    assert.equal(unread.size, 0);
    assertSameBlobs(blobs, await catAllBlobs(copy));
  });

  it('reads loose objects, and reports what is in no pack and not loose, or not a blob, as unread', async function () {
    const loose = Buffer.from(manifest(9999, 7));
    await writeFile(path.join(root, 'loose.yaml'), loose);
    const oid = await git(repo, 'hash-object', '-w', path.join(root, 'loose.yaml'));
    assert.equal(oid, blobId(loose));
    await readFile(path.join(gitdir, 'objects', oid.slice(0, 2), oid.slice(2)));
    const tree = await git(repo, 'rev-parse', 'HEAD^{tree}');
    const reader = new PackReader({ gitdir });
    const missing = 'f'.repeat(40);
    const { blobs, unread } = await reader.readBlobs({ oids: [oid, missing, tree, 'HEAD'] });
    assert.deepEqual([...blobs.keys()], [oid]);
    assert.ok(Buffer.from(blobs.get(oid) as Uint8Array).equals(loose));
    assert.equal(reader.stats.loose, 1);
    assert.match(unread.get(missing) ?? '', /not in any pack nor loose/);
    assert.match(unread.get(tree) ?? '', /is a tree, not a blob/);
    assert.match(unread.get('HEAD') ?? '', /not a full lowercase object id/);
    // Leave the repository as the other tests expect it.
    await unlink(path.join(gitdir, 'objects', oid.slice(0, 2), oid.slice(2)));
  });

  it('parses a version 2 index whose offsets are in the 64-bit table, as git does (and offsets past 4 GiB)', async function () {
    const copy = path.join(root, 'large');
    await cp(repo, copy, { recursive: true });
    const copyGitdir = path.join(copy, '.git');
    const [packPath] = await packFiles(copyGitdir);
    const idxPath = (packPath as string).replace(/\.pack$/, '.idx');
    const original = await readFile(idxPath);
    // git writes the 64-bit table for objects past the offset given (2 GiB by default).
    await unlink(idxPath);
    await git(copy, 'index-pack', '--index-version=2,1024', '-o', idxPath, packPath as string);
    const rewritten = await readFile(idxPath);
    const count = parsePackIndex(original, 'original', packPath as string).count;
    assert.ok(rewritten.length - original.length > 8 * (count - 20), `expected most offsets in the 64-bit table (${original.length} -> ${rewritten.length} bytes)`);
    assert.equal(rewritten.readUInt32BE(8 + 1024 + 24 * count + 4 * (count - 1)) >>> 31, 1, 'a table entry');
    const viaGit = await catAllBlobs(copy);
    assertSameBlobs(viaGit, expected);
    const { blobs, unread } = await new PackReader({ gitdir: copyGitdir }).readBlobs({ oids: [...expected.keys()] });
    assert.equal(unread.size, 0);
    assertSameBlobs(blobs, expected);

    const far = 5 * 0x100000000 + 12345;
    const idx = parsePackIndex(buildIdx([{ oid: 'ab'.repeat(20), offset: far }, { oid: '01'.repeat(20), offset: 12 }], Buffer.alloc(20), 0x80000000), 'crafted', '/nonexistent.pack');
    assert.equal(idx.find(Buffer.from('ab'.repeat(20), 'hex')), far);
    assert.equal(idx.find(Buffer.from('01'.repeat(20), 'hex')), 12);
    assert.equal(idx.find(Buffer.from('02'.repeat(20), 'hex')), null);
    assert.deepEqual([...idx.sortedOffsets], [12, far]);
  });

  it('refuses a malformed index with a clear error', function () {
    const good = buildIdx([{ oid: 'ab'.repeat(20), offset: 12 }], Buffer.alloc(20));
    assert.throws(() => parsePackIndex(good.subarray(0, 1000), 'short', '/x.pack'), (e: unknown) => e instanceof PackIndexError && /too short/.test(e.message));
    const flipped = Buffer.from(good);
    flipped.writeUInt8((flipped.readUInt8(8 + 1024 + 3) ^ 1) & 0xff, 8 + 1024 + 3);
    assert.throws(() => parsePackIndex(flipped, 'flipped', '/x.pack'), (e: unknown) => e instanceof PackIndexError && /checksum/.test(e.message));
    const v1 = Buffer.from(good);
    v1.writeUInt32BE(0, 0);
    assert.throws(() => parsePackIndex(v1, 'v1', '/x.pack'), (e: unknown) => e instanceof PackIndexError && /version 2/.test(e.message));
  });

  it('resolves a REF_DELTA whose base is loose or in another pack, and never returns bytes that do not hash to the asked oid', async function () {
    const copy = path.join(root, 'crafted');
    await cp(repo, copy, { recursive: true });
    const copyGitdir = path.join(copy, '.git');
    const base = Buffer.from(manifest(424242, 1));
    await writeFile(path.join(root, 'base.yaml'), base);
    const baseOid = await git(copy, 'hash-object', '-w', path.join(root, 'base.yaml'));
    const target = Buffer.concat([base.subarray(0, 200), Buffer.from('# appended by a delta\n')]);
    const targetOid = blobId(target);
    // Delta: source size, target size, copy 200 bytes from offset 0, insert the rest.
    const insert = target.subarray(200);
    const delta = Buffer.concat([Buffer.from([...varint(base.length), ...varint(target.length), 0x90, 200, insert.length]), insert]);
    const refDelta = Buffer.concat([packHeader(7, delta.length), Buffer.from(baseOid, 'hex'), deflateSync(delta)]);
    // A whole blob listed under another blob's oid: an index that lies.
    const liar = Buffer.from('the index says this is something else\n');
    const liarOid = blobId(Buffer.from('what the index claims\n'));
    const { pack, offsets } = buildPack([refDelta, Buffer.concat([packHeader(3, liar.length), deflateSync(liar)])]);
    await installPack(copyGitdir, pack, buildIdx([{ oid: targetOid, offset: offsets[0] as number }, { oid: liarOid, offset: offsets[1] as number }], pack.subarray(pack.length - 20)));

    const reader = new PackReader({ gitdir: copyGitdir });
    const first = await reader.readBlobs({ oids: [targetOid, liarOid] });
    assert.ok(Buffer.from(first.blobs.get(targetOid) as Uint8Array).equals(target), 'REF_DELTA on a loose base');
    assert.equal(first.blobs.has(liarOid), false);
    assert.match(first.unread.get(liarOid) ?? '', /does not hash to/);

    // Now the base in a pack of its own (and no longer loose).
    const { pack: basePack, offsets: baseOffsets } = buildPack([Buffer.concat([packHeader(3, base.length), deflateSync(base)])]);
    await installPack(copyGitdir, basePack, buildIdx([{ oid: baseOid, offset: baseOffsets[0] as number }], basePack.subarray(basePack.length - 20)));
    await unlink(path.join(copyGitdir, 'objects', baseOid.slice(0, 2), baseOid.slice(2)));
    const second = await reader.readBlobs({ oids: [targetOid] });
    assert.ok(Buffer.from(second.blobs.get(targetOid) as Uint8Array).equals(target), 'REF_DELTA on a base in another pack');
    assert.equal(reader.stats.loose, 0);
    assert.equal(reader.stats.indexLoads, 3, 'the first call loaded two indexes, the second only the new one');
  });

  it('picks up new packs after a change and drops removed ones, keeping no pack open', async function () {
    const copy = path.join(root, 'changing');
    await cp(repo, copy, { recursive: true });
    const copyGitdir = path.join(copy, '.git');
    const reader = new PackReader({ gitdir: copyGitdir });
    await reader.readBlobs({ oids: [[...expected.keys()][0] as string] });
    const before = reader.packNames;
    await writeFile(path.join(copy, 'vms/new.yaml'), manifest(5555, 2));
    await git(copy, 'add', '--all');
    await git(copy, 'commit', '--quiet', '-m', 'one more');
    await git(copy, 'repack', '-d', '--quiet');
    const newOid = await git(copy, 'rev-parse', 'HEAD:vms/new.yaml');
    const incremental = await reader.readBlobs({ oids: [newOid] });
    assert.equal(incremental.unread.size, 0);
    assert.equal(reader.packNames.length, before.length + 1);
    assert.equal(reader.stats.packed, 2, 'the new blob came from the new pack, not a loose object');
    await git(copy, 'repack', '-a', '-d', '--quiet');
    const all = await catAllBlobs(copy);
    const { blobs, unread } = await reader.readBlobs({ oids: [...all.keys()] });
    assert.equal(unread.size, 0);
    assertSameBlobs(blobs, all);
    assert.equal(reader.packNames.length, 1);
    assert.ok(!before.includes(reader.packNames[0] as string) || before.length === 1);
    assert.deepEqual(await openPackFds(), []);
  });

  it('a corrupt or missing pack gives an unread oid or a SourceError, never other bytes', async function () {
    const copy = path.join(root, 'corrupt');
    await cp(repo, copy, { recursive: true });
    const copyGitdir = path.join(copy, '.git');
    const [packPath] = await packFiles(copyGitdir);
    const pack = await readFile(packPath as string);
    const idx = parsePackIndex(await readFile((packPath as string).replace(/\.pack$/, '.idx')), 'p', packPath as string);
    // A whole blob (type 3) big enough that a flipped byte lands in its deflated data.
    const victim = idx.entries().find((e, _, all) => (((pack[e.offset] as number) >> 4) & 7) === 3 && all.every((o) => o.offset <= e.offset || o.offset > e.offset + 80));
    assert.ok(victim !== undefined);
    pack.writeUInt8(pack.readUInt8(victim.offset + 40) ^ 0xff, victim.offset + 40);
    await writeFile(packPath as string, pack);

    const { blobs, unread } = await new PackReader({ gitdir: copyGitdir }).readBlobs({ oids: [...expected.keys()] });
    assert.ok(unread.has(victim.oid), 'the damaged object is not returned');
    // Here the damaged blob is the base of most others (similar manifests): they are all unread.
    assert.equal(blobs.size + unread.size, expected.size);
    for (const [oid, bytes] of blobs) assert.ok(Buffer.from(bytes).equals(expected.get(oid) as Buffer), `${oid} returned with other bytes`);

    const source = new GitSource({ repo: copy });
    const outcome = await source.readBlobs({ oids: [victim.oid] }).then(
      (m) => m,
      (e: unknown) => e,
    );
    if (outcome instanceof Map) assert.ok(Buffer.from(outcome.get(victim.oid) as Uint8Array).equals(expected.get(victim.oid) as Buffer));
    else assert.ok(outcome instanceof SourceError, `expected a SourceError, got ${inspect(outcome)}`);

    await unlink(packPath as string);
    const gone = await new PackReader({ gitdir: copyGitdir }).readBlobs({ oids: [victim.oid] });
    assert.match(gone.unread.get(victim.oid) ?? '', /missing or does not match its index/);
    await assert.rejects(new GitSource({ repo: copy }).readBlobs({ oids: [victim.oid] }), (e: unknown) => e instanceof SourceError);
  });
});

function varint(n: number): number[] {
  const out: number[] = [];
  do {
    let b = n & 127;
    n = Math.floor(n / 128);
    if (n > 0) b |= 0x80;
    out.push(b);
  } while (n > 0);
  return out;
}

describe('GitSource.readBlobs on a clone made by isomorphic-git over git-http-backend', function () {
  let server: GitServer;
  let cacheDir: string;
  let url: string;
  let source: GitSource;
  let serverRepo: string;
  let work: Awaited<ReturnType<GitServer['createWorkingClone']>>;

  before(async function () {
    server = await startGitServer();
    cacheDir = await mkdtemp(path.join(tmpdir(), 'vmroll-pack-cache-'));
    url = await server.createBareRepo('fleet');
    serverRepo = path.join(server.projectRoot, 'fleet.git');
    work = await server.createWorkingClone('fleet');
    for (let i = 0; i < 150; i++) await work.write(`vms/team-${i % 7}/vm-${i}.yaml`, manifest(i));
    await work.write('vms/twin-a.yaml', manifest(1));
    await work.write('vms/twin-b.yaml', manifest(1));
    await work.write('vms/latin1.yaml', Buffer.from('apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: caf\xe9\n', 'latin1'));
    await work.write('vms/big.yaml', `${manifest(3)}# ${'x'.repeat(5000)}\n`);
    await symlink('team-0/vm-0.yaml', path.join(work.dir, 'vms/link.yaml'));
    await work.commit('fleet');
    for (let i = 0; i < 150; i += 4) await work.write(`vms/team-${i % 7}/vm-${i}.yaml`, manifest(i, 1));
    await work.commit('edit');
    await work.push();
    await git(serverRepo, 'gc', '--quiet', '--aggressive');
    source = new GitSource({ repo: url, cacheDir });
    await source.sync({ ref: 'main' });
  });

  after(async function () {
    await server?.stop();
    if (cacheDir) await rm(cacheDir, { recursive: true, force: true });
  });

  it('reads every blob of the clone from its pack (OFS_DELTA as isomorphic-git stored it), as git cat-file on the server', async function () {
    const clones = (await readdir(cacheDir)).filter((n) => !n.includes('.partial'));
    const cloneGitdir = path.join(cacheDir, clones[0] as string, '.git');
    const types = await packTypes(cloneGitdir);
    assert.ok((types[6] ?? 0) > 50, `expected OFS_DELTA entries in the clone's pack, got ${inspect(types)}`);
    const expected = await catAllBlobs(serverRepo);
    const blobs = await source.readBlobs({ oids: [...expected.keys()] });
    assertSameBlobs(blobs, expected);
    assert.equal(source.packReaderStats?.packed, expected.size);
    assert.equal(source.packReaderStats?.unread, 0);
  });

  it('loads the same ManifestSet with bulk reads as with one readBlob per file (symlink, size limit, UTF-8, twins), cold and incremental', async function () {
    const oneByOne: ManifestReader = {
      listFiles: (a) => source.listFiles(a),
      changedPaths: (a) => source.changedPaths(a),
      readBlob: (a) => source.readBlob(a),
    };
    const head = (await source.resolve({ ref: 'main' })).commit;
    const packedBefore = source.packReaderStats?.packed ?? 0;
    const bulk = await loadManifests({ source, commit: head, maxFileBytes: 4000 });
    const single = await loadManifests({ source: oneByOne, commit: head, maxFileBytes: 4000 });
    assert.ok(isDeepStrictEqual(bulk, single), 'bulk and per-file loads differ');
    assert.equal((source.packReaderStats?.packed ?? 0) - packedBefore, new Set([...bulk.files.values()].map((f) => f.oid)).size, 'every file came through the bulk reader');
    const messages = bulk.errors.map((e) => `${e.file}: ${e.message}`).join('\n');
    assert.match(messages, /vms\/link\.yaml: symbolic link to "team-0\/vm-0\.yaml" refused/);
    assert.match(messages, /vms\/big\.yaml: file is \d+ bytes, over the 4000-byte limit/);
    assert.match(messages, /vms\/latin1\.yaml: file is not valid UTF-8/);
    assert.match(messages, /vms\/twin-b\.yaml: VirtualMachine team-1\/vm-1 is also defined at/);

    await work.write('vms/team-2/vm-2.yaml', manifest(2, 5));
    await work.write('vms/twin-c.yaml', manifest(1));
    const next = await work.commit('incremental');
    await work.push();
    await source.sync({ ref: 'main' });
    const bulkInc = await loadManifests({ source, commit: next, previous: bulk, maxFileBytes: 4000 });
    const singleInc = await loadManifests({ source: oneByOne, commit: next, previous: single, maxFileBytes: 4000 });
    assert.ok(bulkInc.incremental);
    assert.ok(isDeepStrictEqual(bulkInc, singleInc), 'bulk and per-file incremental loads differ');
    assert.deepEqual(bulkInc.read.sort(), ['vms/team-2/vm-2.yaml', 'vms/twin-c.yaml']);
    assert.ok((source.packReaderStats?.indexLoads ?? 0) >= 2, 'the fetched pack was indexed');
    assert.deepEqual(await openPackFds(), []);
  });
});

describe('loadManifests with a reader that has readBlobs', function () {
  const files = Array.from({ length: 600 }, (_, i) => ({ path: `vms/vm-${String(i).padStart(3, '0')}.yaml`, oid: String(i % 550).padStart(40, '0'), mode: 0o100644 }));
  const text = (oid: string): Uint8Array => new TextEncoder().encode(manifest(Number(oid)));
  const base = (): ManifestReader & { single: string[]; bulk: string[][] } => {
    const single: string[] = [];
    const bulk: string[][] = [];
    return {
      single,
      bulk,
      listFiles: () => Promise.resolve(files),
      changedPaths: () => Promise.resolve([]),
      readBlob: ({ oid }) => {
        single.push(oid);
        return Promise.resolve(text(oid));
      },
    };
  };

  it('asks for each blob once, in chunks of at most 256, and loads what per-file reads load', async function () {
    const plain = base();
    const expected = await loadManifests({ source: plain, commit: 'c' });
    const reader = base();
    const withBulk: ManifestReader = { ...reader, readBlobs: ({ oids }) => (reader.bulk.push(oids), Promise.resolve(new Map(oids.map((o) => [o, text(o)])))) };
    const got = await loadManifests({ source: withBulk, commit: 'c' });
    assert.ok(isDeepStrictEqual(got, expected));
    assert.equal(plain.single.length, 600);
    assert.deepEqual(reader.single, []);
    assert.ok(reader.bulk.every((c) => c.length <= 256));
    assert.deepEqual(reader.bulk.flat().sort(), [...new Set(files.map((f) => f.oid))].sort());
  });

  it('falls back to readBlob per file for what a bulk read misses or when it fails, with the same result', async function () {
    const expected = await loadManifests({ source: base(), commit: 'c' });
    const reader = base();
    let calls = 0;
    const flaky: ManifestReader = {
      ...reader,
      readBlobs: ({ oids }) => {
        calls++;
        if (calls === 2) return Promise.reject(new Error('bulk read failed'));
        return Promise.resolve(new Map(oids.filter((o) => Number(o) % 10 !== 0).map((o) => [o, text(o)])));
      },
    };
    const got = await loadManifests({ source: flaky, commit: 'c' });
    assert.ok(isDeepStrictEqual(got, expected));
    assert.ok(calls >= 3);
    // Per file: the 256 files of the failed chunk (oids 256-511), and the files of the blobs left out
    // (oids divisible by 10: 26 below 256, five of them used twice, and 520, 530, 540).
    assert.equal(reader.single.length, 256 + 31 + 3);
  });
});
