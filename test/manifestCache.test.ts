// The parse cache (reconciler/source/manifestCache.ts): what a new process takes from it gives the
// ManifestSet a load without it gives, on a fleet with errors, warnings, held VMs, other kinds, a
// symlink, a refused name and an oversized file, with and without strict; anything wrong with the
// file (corrupt, truncated, another build, other limits, unreadable) makes it ignored with one log
// line; a changed oid or mode is parsed again; writes are atomic and hold only the last load's files.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { gunzipSync, gzipSync } from 'node:zlib';
import { type GeneratedVm, planRepository, renderManifest } from '../bench/manifests.ts';
import { ManifestCache, PARSE_CACHE_FORMAT, type ParseCacheLog } from '../reconciler/source/manifestCache.ts';
import { SYMLINK_MODE } from '../reconciler/source/gitSource.ts';
import { type CachedFileLoads, type ManifestReader, type ManifestSet, loadManifests, manifestLimits } from '../reconciler/source/manifests.ts';

/** A fleet with problems mixed in: unknown fields, invalid values, typos, duplicates, bad YAML, Lists, other kinds, a symlink, a refused name, an oversized file. */
function fleet(count: number): Map<string, string> {
  const files = new Map<string, string>();
  for (const vm of planRepository(count)) {
    let text = renderManifest(vm);
    const i = vm.index;
    if (i % 50 === 1) text = text.replace('          cores: 1\n', '          cores: 1\n          socket: 2\n'); // unknown field: warning
    if (i % 70 === 2) text = text.replace(/sockets: \d+/, 'sockets: two'); // schema error at its line: held
    if (i % 110 === 4) text = text.replace('kind: VirtualMachine', 'kind: VirtualMachin'); // near miss
    if (i % 150 === 6) text = text.replace('    owner: ', '    owner: "unclosed '); // invalid YAML: failed file
    if (i % 170 === 7) text = `# leading comment\n\n${text}`;
    if (i % 190 === 8) text = `apiVersion: v1\nkind: List\nitems:\n${text.replace(/^/gm, '  ').replace(/^  /, '- ')}`;
    if (i % 210 === 9) text = `${text}---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: x${i}\n`; // another kind: warning
    if (i % 230 === 10) text = text.replace('  namespace: team-', '  namespace: Team_');
    files.set(vm.file, text);
    if (i % 97 === 11) files.set(vm.file.replace('.yaml', '-copy.yml'), text); // the same VM twice: held
  }
  files.set('vms/notes.json', '{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "n"}}');
  files.set('vms/bad.json', '{"apiVersion": "v1", "kind": ');
  files.set('vms/elsewhere.link.yaml', '../../etc/passwd');
  files.set('vms/a\\b.yaml', renderManifest(planRepository(count + 1)[count] as GeneratedVm));
  files.set('vms/huge.yaml', `# ${'x'.repeat(5000)}\n`);
  return files;
}

const oidOf = (text: string): string => createHash('sha1').update(text).digest('hex');

/** Files in memory, oids from their content (as Git's are), symlinks by name, a refused name for backslashes. */
function reader(files: Map<string, string>, modes: Map<string, number> = new Map()): ManifestReader {
  const blobs = new Map([...files.values()].map((t) => [oidOf(t), t]));
  return {
    listFiles: () =>
      Promise.resolve(
        [...files]
          .map(([file, text]) => ({
            path: file,
            oid: oidOf(text),
            mode: modes.get(file) ?? (file.endsWith('.link.yaml') ? SYMLINK_MODE : 0o100644),
            ...(file.includes('\\') ? { refused: 'the name contains a backslash' } : {}),
          }))
          .sort((a, b) => (a.path < b.path ? -1 : 1)),
      ),
    changedPaths: () => Promise.reject(new Error('not used')),
    readBlob: ({ oid }) => Promise.resolve(new TextEncoder().encode(blobs.get(oid) ?? '')),
  };
}

/** The ManifestSet without what says how it was obtained (read vs from the cache). */
const content = (s: ManifestSet): Omit<ManifestSet, 'read' | 'cached'> => {
  const { read: _read, cached: _cached, ...rest } = s;
  return rest;
};

interface Logged {
  level: 'debug' | 'info' | 'warn';
  msg: string;
  obj: Record<string, unknown>;
}

function recorder(): { log: ParseCacheLog; lines: Logged[] } {
  const lines: Logged[] = [];
  const at = (level: Logged['level']) => (obj: Record<string, unknown>, msg: string) => void lines.push({ level, msg, obj });
  return { log: { debug: at('debug'), info: at('info'), warn: at('warn') } as unknown as ParseCacheLog, lines };
}

const LIMITS = { maxFileBytes: 4000, strict: false };

describe('parse cache: a new process takes unchanged files from disk', function () {
  this.timeout(120_000);
  let dir: string;
  beforeEach(() => {
    dir = mkdtempSync(path.join(tmpdir(), 'vmroll-parse-cache-'));
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  const cacheAt = (log?: ParseCacheLog): ManifestCache => ManifestCache.forClone(dir, 'vms', log) as ManifestCache;

  for (const strict of [false, true]) {
    it(`gives a ManifestSet deep-equal to a fresh load, reading no file${strict ? ' (strict)' : ''}`, async () => {
      const files = fleet(600);
      const fresh = await loadManifests({ source: reader(files), commit: 'c1', path: 'vms', ...LIMITS, strict });
      // The fleet exercises what is compared: VMs, errors and warnings past line 1, held VMs, failed files, other kinds.
      assert.ok(fresh.vms.length > 400, `${fresh.vms.length} VMs`);
      assert.ok(fresh.errors.length > 20 && fresh.errors.some((e) => e.line > 20), `${fresh.errors.length} errors`);
      if (!strict) assert.ok(fresh.warnings.length > 5 && fresh.warnings.some((w) => w.line > 20), `${fresh.warnings.length} warnings`);
      assert.ok(fresh.heldVms.length > 10 && fresh.failedFiles.length > 3 && fresh.skipped.length > 2, `${fresh.heldVms.length} held, ${fresh.failedFiles.length} failed`);
      assert.ok(fresh.errors.some((e) => e.file === 'vms/a\\b.yaml') && fresh.errors.some((e) => e.file === 'vms/huge.yaml') && fresh.errors.some((e) => e.file === 'vms/elsewhere.link.yaml'));
      assert.equal(fresh.read.length, files.size);

      const { log, lines } = recorder();
      const written = await cacheAt(log).write(fresh);
      assert.deepEqual(written && { entries: written.entries, left: written.left }, { entries: files.size, left: 0 });
      const back = await cacheAt(log).read({ path: 'vms', limits: manifestLimits({ ...LIMITS, strict }) });
      assert.ok(back, JSON.stringify(lines));
      const again = await loadManifests({ source: reader(files), commit: 'c1', path: 'vms', ...LIMITS, strict, cached: back });
      assert.deepEqual(again.read, []);
      assert.deepEqual(again.cached, [...files.keys()].sort((a, b) => (a < b ? -1 : 1)));
      assert.deepStrictEqual(content(again), content(fresh));
      assert.equal(lines.filter((l) => l.level === 'warn').length, 0, JSON.stringify(lines));
    });
  }

  it('parses again a file whose blob oid or mode changed, and only that one', async () => {
    const files = fleet(300);
    const cache = cacheAt();
    await cache.write(await loadManifests({ source: reader(files), commit: 'c1', path: 'vms', ...LIMITS }));
    const [edited, other] = [...files.keys()].filter((f) => f.includes('/team-'));
    assert.ok(edited !== undefined && other !== undefined);
    files.set(edited, (files.get(edited) as string).replace(/sockets: \d+/, 'sockets: 3'));
    // The same content under a symlink's mode is another entry too.
    const modes = new Map([[other, SYMLINK_MODE]]);
    const back = (await cache.read({ path: 'vms', limits: manifestLimits(LIMITS) })) as CachedFileLoads;
    const again = await loadManifests({ source: reader(files, modes), commit: 'c2', path: 'vms', ...LIMITS, cached: back });
    assert.deepEqual([...again.read].sort(), [edited, other].sort());
    assert.equal(again.cached.length, files.size - 2);
    const fresh = await loadManifests({ source: reader(files, modes), commit: 'c2', path: 'vms', ...LIMITS });
    assert.deepStrictEqual(content(again), content(fresh));
    assert.equal(again.vms.find((v) => v.file === edited)?.manifest.spec.template?.spec?.domain.cpu?.sockets, 3);
  });

  it('is ignored (one info line) when written under other limits: strict, file size, namespace', async () => {
    const files = fleet(100);
    await cacheAt().write(await loadManifests({ source: reader(files), commit: 'c1', path: 'vms', ...LIMITS }));
    for (const other of [{ ...LIMITS, strict: true }, { ...LIMITS, maxFileBytes: 1 << 20 }, { ...LIMITS, defaultNamespace: 'ops' }]) {
      const { log, lines } = recorder();
      assert.equal(await cacheAt(log).read({ path: 'vms', limits: manifestLimits(other) }), null);
      assert.deepEqual(lines.map((l) => `${l.level} ${l.msg}`), ['info parse cache ignored: written by another build or for other settings; every manifest is parsed']);
      assert.match(String(lines[0]?.obj['why']), /other limits/);
    }
    // loadManifests itself refuses outcomes of other limits or another path, whoever hands them over.
    const back = (await cacheAt().read({ path: 'vms', limits: manifestLimits(LIMITS) })) as CachedFileLoads;
    const strict = await loadManifests({ source: reader(files), commit: 'c1', path: 'vms', ...LIMITS, strict: true, cached: back });
    assert.equal(strict.read.length, files.size);
    assert.deepEqual(strict.cached, []);
    const whole = await loadManifests({ source: reader(files), commit: 'c1', ...LIMITS, cached: back });
    assert.equal(whole.read.length, files.size);
  });

  it('is ignored with one log line, never an error, when corrupt, truncated, empty, unreadable or written by another build', async () => {
    const files = fleet(100);
    const fresh = await loadManifests({ source: reader(files), commit: 'c1', path: 'vms', ...LIMITS });
    const good = cacheAt();
    await good.write(fresh);
    const original = readFileSync(good.file);
    const text = gunzipSync(original).toString('utf8');
    const newline = text.indexOf('\n');
    const header = JSON.parse(text.slice(0, newline)) as Record<string, unknown>;
    const body = text.slice(newline + 1);
    const withHeader = (h: Record<string, unknown>, b = body): Buffer => gzipSync(`${JSON.stringify(h)}\n${b}`);
    const variants: [string, () => void, 'warn' | 'info', RegExp][] = [
      ['garbage', () => writeFileSync(good.file, 'not a cache at all'), 'warn', /gzip/],
      ['empty', () => writeFileSync(good.file, ''), 'warn', /gzip/],
      ['truncated', () => writeFileSync(good.file, original.subarray(0, Math.floor(original.length / 2))), 'warn', /gzip/],
      ['truncated inside, gzip intact', () => writeFileSync(good.file, gzipSync(text.slice(0, Math.floor(text.length * 0.7)))), 'warn', /body is not JSON/],
      ['an outcome missing', () => writeFileSync(good.file, withHeader(header, JSON.stringify((JSON.parse(body) as unknown[]).slice(1)))), 'warn', /outcomes its header announces/],
      ['an outcome of another shape', () => writeFileSync(good.file, withHeader(header, body.replace('"failed":false', '"failed":"no"'))), 'warn', /outcomes its header announces/],
      ['header not JSON', () => writeFileSync(good.file, gzipSync(`{format\n${body}`)), 'warn', /header is not JSON/],
      ['another vmroll version', () => writeFileSync(good.file, withHeader({ ...header, vmroll: '0.0.1' })), 'info', /vmroll 0\.0\.1/],
      ['another format', () => writeFileSync(good.file, withHeader({ ...header, format: PARSE_CACHE_FORMAT + 1 })), 'info', /format/],
      ['another build', () => writeFileSync(good.file, withHeader({ ...header, build: '0000000000000000' })), 'info', /another build/],
      [
        'a folder in its place',
        () => {
          rmSync(good.file);
          mkdirSync(good.file);
        },
        'warn',
        /unreadable \(EISDIR\)/,
      ],
    ];
    for (const [name, spoil, level, why] of variants) {
      rmSync(good.file, { recursive: true, force: true });
      writeFileSync(good.file, original);
      spoil();
      const { log, lines } = recorder();
      const back = await cacheAt(log).read({ path: 'vms', limits: manifestLimits(LIMITS) });
      assert.equal(back, null, name);
      assert.equal(lines.length, 1, `${name}: ${JSON.stringify(lines)}`);
      assert.equal(lines[0]?.level, level, name);
      assert.match(String(lines[0]?.obj['why']), why, name);
      // Nothing taken: the load parses every file and gives the fresh result.
      const again = await loadManifests({ source: reader(files), commit: 'c1', path: 'vms', ...LIMITS, ...(back ? { cached: back } : {}) });
      assert.deepStrictEqual(content(again), content(fresh), name);
    }
    // The untouched file reads back (the variants above are what broke it).
    rmSync(good.file, { recursive: true, force: true });
    writeFileSync(good.file, original);
    assert.ok(await cacheAt().read({ path: 'vms', limits: manifestLimits(LIMITS) }));
  });

  it('writes atomically and holds only the last load: no temp file left, deleted files dropped, stale temps cleaned', async () => {
    const files = fleet(100);
    const cache = cacheAt();
    const folder = path.dirname(cache.file);
    mkdirSync(folder, { recursive: true });
    const stale = `${cache.file}.tmp-1-deadbeef`;
    const live = `${cache.file}.tmp-2-cafecafe`;
    writeFileSync(stale, 'half a write');
    writeFileSync(live, 'a write in progress elsewhere');
    const old = new Date(Date.now() - 3_600_000);
    utimesSync(stale, old, old);
    await cache.write(await loadManifests({ source: reader(files), commit: 'c1', path: 'vms', ...LIMITS }));
    assert.deepEqual(readdirSync(folder).sort(), [path.basename(cache.file), path.basename(live)].sort());

    const gone = [...files.keys()].slice(0, 10);
    for (const f of gone) files.delete(f);
    const second = await loadManifests({ source: reader(files), commit: 'c2', path: 'vms', ...LIMITS });
    await cache.write(second);
    const back = (await cacheAt().read({ path: 'vms', limits: manifestLimits(LIMITS) })) as CachedFileLoads;
    assert.deepEqual([...back.files.keys()].sort(), [...second.files.keys()].sort());
    assert.ok(gone.every((f) => !back.files.has(f)));
  });

  it('a write that fails is one warning and no exception; the sync goes on', async () => {
    // A file where the cache folder must be: mkdir fails.
    const clone = path.join(dir, 'clone');
    mkdirSync(path.join(clone, '.git'), { recursive: true });
    writeFileSync(path.join(clone, '.git', 'vmroll'), 'in the way');
    const { log, lines } = recorder();
    const cache = ManifestCache.forClone(clone, 'vms', log) as ManifestCache;
    assert.equal(await cache.write(await loadManifests({ source: reader(fleet(20)), commit: 'c1', path: 'vms', ...LIMITS })), null);
    assert.deepEqual(lines.map((l) => `${l.level} ${l.msg}`), ['warn could not write the parse cache; the next process parses every manifest']);
    assert.ok(!existsSync(cache.file));
  });

  it('saves when a load adds outcomes, at most once per interval after the first', async () => {
    const files = fleet(50);
    const first = await loadManifests({ source: reader(files), commit: 'c1', path: 'vms', ...LIMITS });
    const slow = new ManifestCache(path.join(dir, 'slow.json.gz'), undefined, 3_600_000);
    assert.ok(await slow.save(first), 'the first save of a process writes');
    assert.equal(await slow.save(first), null, 'nothing new: no write');
    const [edited] = [...files.keys()];
    files.set(edited as string, `${files.get(edited as string) as string}# edited\n`);
    const second = await loadManifests({ source: reader(files), commit: 'c2', path: 'vms', ...LIMITS });
    assert.equal(await slow.save(second), null, 'within the interval: no write');
    const eager = new ManifestCache(path.join(dir, 'eager.json.gz'), undefined, 0);
    assert.ok(await eager.save(first));
    assert.ok(await eager.save(second), 'a new outcome after the interval: written');
    // A cache read back in full makes the first save of a process a no-op.
    const reread = new ManifestCache(eager.file);
    const back = (await reread.read({ path: 'vms', limits: manifestLimits(LIMITS) })) as CachedFileLoads;
    assert.equal(await reread.save(await loadManifests({ source: reader(files), commit: 'c2', path: 'vms', ...LIMITS, cached: back })), null);
  });

  it('leaves out outcomes that depend on the file’s history or that JSON would change; they are parsed again, with the fresh result', async () => {
    const files = fleet(50);
    const first = await loadManifests({ source: reader(files), commit: 'c1', path: 'vms', ...LIMITS });
    const [emptied, negative] = [...files.keys()].filter((f) => f.includes('/team-'));
    assert.ok(emptied !== undefined && negative !== undefined);
    // A file that stops defining its VM carries the key (held, with a warning) in this process only.
    files.set(emptied, '# nothing here now\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c\n');
    files.set(negative, (files.get(negative) as string).replace(/cores: 1/, 'cores: -0'));
    const changes = [emptied, negative].map((p) => ({ path: p, status: 'modified' as const, oid: oidOf(files.get(p) as string), mode: 0o100644 }));
    const second = await loadManifests({ source: reader(files), commit: 'c2', path: 'vms', ...LIMITS, previous: first, changes });
    assert.ok((second.files.get(emptied)?.carriedKeys.length ?? 0) > 0, 'the emptied file carries its VM');
    assert.ok(Object.is(second.vms.find((v) => v.file === negative)?.manifest.spec.template?.spec?.domain.cpu?.cores, -0), 'the manifest holds -0');
    const written = await cacheAt().write(second);
    assert.equal(written?.left, 2);
    const back = (await cacheAt().read({ path: 'vms', limits: manifestLimits(LIMITS) })) as CachedFileLoads;
    const restart = await loadManifests({ source: reader(files), commit: 'c2', path: 'vms', ...LIMITS, cached: back });
    assert.deepEqual([...restart.read].sort(), [emptied, negative].sort());
    const fresh = await loadManifests({ source: reader(files), commit: 'c2', path: 'vms', ...LIMITS });
    assert.deepStrictEqual(content(restart), content(fresh));
  });
});
