// The Git source end to end over a real socket: Debian git's git-http-backend on 127.0.0.1, pushes
// with the git CLI, clones and fetches with isomorphic-git, manifests loaded file by file.
import assert from 'node:assert/strict';
import { mkdtemp, readdir, rm, symlink } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { inspect } from 'node:util';
import { SourceError } from '../reconciler/source/errors.ts';
import { GitSource } from '../reconciler/source/gitSource.ts';
import { loadManifests, type ManifestSet } from '../reconciler/source/manifests.ts';
import { startGitServer, type GitServer, type WorkingClone } from './helpers/gitServer.ts';

/** A small valid VirtualMachine manifest; `sockets` lets a test change it. */
function vmYaml(name: string, namespace: string, sockets = 2, runStrategy = 'Always'): string {
  return `apiVersion: kubevirt.io/v1
kind: VirtualMachine
metadata:
  name: ${name}
  namespace: ${namespace}
spec:
  runStrategy: ${runStrategy}
  template:
    spec:
      domain:
        cpu:
          sockets: ${sockets}
        memory:
          guest: 1Gi
        devices: {}
`;
}

const CONFIGMAP = `apiVersion: v1
kind: ConfigMap
metadata:
  name: settings
data:
  a: b
`;

const timings: Record<string, number> = {};
async function timed<T>(label: string, fn: () => Promise<T>): Promise<T> {
  const started = performance.now();
  try {
    return await fn();
  } finally {
    timings[label] = Math.round(performance.now() - started);
  }
}

async function expectSourceError(promise: Promise<unknown>, code: string): Promise<SourceError> {
  try {
    await promise;
  } catch (e) {
    assert.ok(e instanceof SourceError, `expected a SourceError, got ${inspect(e)}`);
    assert.equal(e.code, code, e.message);
    return e;
  }
  assert.fail(`expected SourceError ${code}`);
}

function vmKeys(set: ManifestSet): string[] {
  return set.vms.map((vm) => `${vm.namespace}/${vm.name}`);
}

describe('git source over smart HTTP (git-http-backend on 127.0.0.1)', function () {
  let server: GitServer;
  let work: WorkingClone;
  let cacheDir: string;
  let url: string;
  const cache = {};
  let c1 = '';
  let c2 = '';

  before(async function () {
    server = await startGitServer();
    cacheDir = await mkdtemp(path.join(tmpdir(), 'vmroll-cache-'));
    url = await server.createBareRepo('fleet');
    work = await server.createWorkingClone('fleet');
    await work.write('README.md', '# fleet\n');
    await work.write('vms/web.yaml', vmYaml('web', 'shop'));
    await work.write('vms/db.yaml', vmYaml('db', 'shop') + '---\n' + CONFIGMAP);
    await work.write('vms/team-a/cache.yml', vmYaml('cache', 'team-a'));
    await work.write('vms/notes.txt', 'not a manifest\n');
    await work.write('elsewhere/other.yaml', vmYaml('other', 'shop'));
    c1 = await work.commit('first');
    await work.git('tag', '-a', 'v1', '-m', 'release 1');
    await work.git('tag', 'light', c1);
    await work.push();
    // Packed like a real server's repository.
    await work.git('--git-dir', path.join(server.projectRoot, 'fleet.git'), 'gc', '--quiet');
  });

  after(async function () {
    await server?.stop();
    if (cacheDir) await rm(cacheDir, { recursive: true, force: true });
    console.log(`      timings (ms): ${JSON.stringify(timings)}`);
  });

  it('clones without checkout and resolves a branch, an annotated and a light tag, a sha and a short sha', async function () {
    const source = new GitSource({ repo: url, cacheDir, cache });
    const synced = await timed('clone', () => source.sync({ ref: 'main' }));
    assert.deepEqual({ ...synced, transferMs: 0 }, { ref: 'main', commit: c1, kind: 'branch', fullName: 'refs/remotes/origin/main', transfer: 'clone', transferMs: 0 });

    assert.deepEqual(await source.resolve({ ref: 'v1' }), { ref: 'v1', commit: c1, kind: 'tag', fullName: 'refs/tags/v1' });
    assert.equal((await source.resolve({ ref: 'light' })).commit, c1);
    assert.deepEqual(await source.resolve({ ref: c1 }), { ref: c1, commit: c1, kind: 'commit', fullName: c1 });
    assert.equal((await source.resolve({ ref: c1.slice(0, 10) })).commit, c1);
    assert.equal((await source.resolve({ ref: 'HEAD' })).commit, c1);
    const missing = await expectSourceError(source.resolve({ ref: 'no-such-branch' }), 'RefNotFound');
    assert.equal(missing.kind, 'stalled');

    // No checkout: the clone folder holds nothing but .git.
    const [cloneDir = ''] = await readdir(cacheDir);
    assert.match(cloneDir, /^fleet-[0-9a-f]{16}$/);
    assert.deepEqual(await readdir(path.join(cacheDir, cloneDir)), ['.git']);
  });

  it('fetches a pushed commit and lists exactly the changed files under the path', async function () {
    await work.write('vms/web.yaml', vmYaml('web', 'shop', 4));
    await work.write('vms/new.yaml', vmYaml('new', 'shop'));
    await work.remove('vms/db.yaml');
    await work.write('README.md', '# fleet, edited\n');
    await work.write('elsewhere/other.yaml', vmYaml('other', 'shop', 8));
    c2 = await work.commit('second');
    await work.push();

    const source = new GitSource({ repo: url, cacheDir, cache });
    const synced = await timed('fetch', () => source.sync({ ref: 'main' }));
    assert.equal(synced.transfer, 'fetch');
    assert.equal(synced.commit, c2);

    const changed = await timed('changedPaths', () => source.changedPaths({ from: c1, to: c2, path: 'vms' }));
    assert.deepEqual(
      changed.map(({ path: p, status }) => ({ path: p, status })),
      [
        { path: 'vms/db.yaml', status: 'deleted' },
        { path: 'vms/new.yaml', status: 'added' },
        { path: 'vms/web.yaml', status: 'modified' },
      ],
    );
    const web = changed.find((c) => c.path === 'vms/web.yaml');
    assert.equal(web?.mode, 0o100644);
    assert.match(web?.oid ?? '', /^[0-9a-f]{40}$/);

    const everywhere = await source.changedPaths({ from: c1, to: c2 });
    assert.deepEqual(
      everywhere.map((c) => c.path),
      ['README.md', 'elsewhere/other.yaml', 'vms/db.yaml', 'vms/new.yaml', 'vms/web.yaml'],
    );
    assert.deepEqual(await source.changedPaths({ from: c2, to: c2, path: 'vms' }), []);
    // A prefix that is a sibling's prefix ("vms" vs "vms-old") must not match it.
    assert.deepEqual(await source.changedPaths({ from: c1, to: c2, path: 'vm' }), []);
    await expectSourceError(source.changedPaths({ from: c1, to: c2, path: '../etc' }), 'InvalidLocation');
  });

  it('loads incrementally: only the changed files are read', async function () {
    const source = new GitSource({ repo: url, cacheDir, cache });
    const first = await timed('load-cold', () => loadManifests({ source, commit: c1, path: 'vms' }));
    assert.deepEqual(first.read, ['vms/db.yaml', 'vms/team-a/cache.yml', 'vms/web.yaml']);
    assert.deepEqual(vmKeys(first), ['shop/db', 'shop/web', 'team-a/cache']);
    assert.deepEqual(first.errors, []);
    assert.deepEqual(first.skipped, [{ file: 'vms/db.yaml', line: 17, apiVersion: 'v1', kind: 'ConfigMap', name: 'settings' }]);
    assert.equal(first.incremental, false);

    const second = await timed('load-incremental', () => loadManifests({ source, commit: c2, path: 'vms', previous: first }));
    assert.equal(second.incremental, true);
    assert.deepEqual([...second.read].sort(), ['vms/new.yaml', 'vms/web.yaml']);
    assert.deepEqual(vmKeys(second), ['shop/new', 'shop/web', 'team-a/cache']);
    assert.deepEqual(second.skipped, []);
    const web = second.vms.find((vm) => vm.name === 'web');
    assert.equal(web?.manifest.spec?.template?.spec?.domain?.cpu?.sockets, 4);

    // Same answer as a cold load of the new commit.
    const cold = await loadManifests({ source, commit: c2, path: 'vms' });
    assert.deepEqual(vmKeys(cold), vmKeys(second));
    assert.deepEqual(cold.vms, second.vms);

    // Nothing changed, nothing read.
    const again = await loadManifests({ source, commit: c2, path: 'vms', previous: second });
    assert.deepEqual(again.read, []);
    assert.deepEqual(vmKeys(again), vmKeys(second));
  });

  it('reads a local repository in place, working tree or bare', async function () {
    const local = new GitSource({ repo: work.dir });
    const synced = await local.sync({ ref: 'main' });
    assert.deepEqual({ ...synced, transferMs: 0 }, { ref: 'main', commit: c2, kind: 'branch', fullName: 'refs/heads/main', transfer: 'none', transferMs: 0 });
    assert.equal((await local.resolve({ ref: 'v1' })).commit, c1);
    const set = await loadManifests({ source: local, commit: synced.commit, path: 'vms/' });
    assert.deepEqual(vmKeys(set), ['shop/new', 'shop/web', 'team-a/cache']);

    const bare = new GitSource({ repo: path.join(server.projectRoot, 'fleet.git') });
    assert.equal((await bare.sync({ ref: 'main' })).commit, c2);
    assert.deepEqual(
      (await bare.changedPaths({ from: c1, to: c2, path: 'vms/team-a' })),
      [],
    );

    await expectSourceError(new GitSource({ repo: path.join(server.projectRoot, 'nope') }).sync({ ref: 'main' }), 'RepoNotFound');
    assert.throws(() => new GitSource({ repo: 'git@github.com:o/r.git' }), (e: unknown) => e instanceof SourceError && e.code === 'InvalidLocation');
  });

  it('reports a missing repository and an unreachable host as typed errors', async function () {
    const gone = new GitSource({ repo: `${server.baseUrl}/missing.git`, cacheDir, cache });
    await expectSourceError(gone.sync({ ref: 'main' }), 'RepoNotFound');
    // Port 9 (discard) is closed on 127.0.0.1.
    const down = new GitSource({ repo: 'http://127.0.0.1:9/fleet.git', cacheDir, cache, requestTimeoutMs: 2_000 });
    const err = await expectSourceError(down.sync({ ref: 'main' }), 'Unreachable');
    assert.equal(err.kind, 'transient');
  });

  it('follows a force-pushed branch and picks up new tags (runs last: rewrites history)', async function () {
    await work.git('reset', '--quiet', '--hard', c1);
    await work.write('vms/web.yaml', vmYaml('web', 'shop', 6));
    const rewritten = await work.commit('rewritten');
    await work.git('tag', 'v2');
    await work.git('push', '--quiet', '--force', '--tags', 'origin', 'HEAD');
    const source = new GitSource({ repo: url, cacheDir, cache });
    assert.equal((await source.sync({ ref: 'main' })).commit, rewritten);
    assert.equal((await source.resolve({ ref: 'v2' })).commit, rewritten);
    assert.deepEqual(
      (await source.changedPaths({ from: c2, to: rewritten, path: 'vms' })).map((c) => `${c.status} ${c.path}`),
      ['added vms/db.yaml', 'deleted vms/new.yaml', 'modified vms/web.yaml'],
    );
  });
});

describe('git source with token auth', function () {
  const TOKEN = 'tok-3f9a1c7e5b2d48a6';
  let server: GitServer;
  let cacheDir: string;
  let url: string;
  let head = '';

  before(async function () {
    server = await startGitServer({ token: TOKEN });
    cacheDir = await mkdtemp(path.join(tmpdir(), 'vmroll-cache-'));
    url = await server.createBareRepo('private');
    const work = await server.createWorkingClone('private');
    await work.write('vms/web.yaml', vmYaml('web', 'shop'));
    head = await work.commit('first');
    await work.push();
  });

  after(async function () {
    await server?.stop();
    if (cacheDir) await rm(cacheDir, { recursive: true, force: true });
  });

  it('clones and fetches with the right token', async function () {
    const source = new GitSource({ repo: url, cacheDir, token: TOKEN });
    const first = await source.sync({ ref: 'main' });
    assert.equal(first.transfer, 'clone');
    assert.equal(first.commit, head);
    const second = await source.sync({ ref: 'main' });
    assert.equal(second.transfer, 'fetch');
  });

  it('fails with AuthFailed and never shows the token, wrong or missing', async function () {
    const wrongToken = 'wrong-9d8c7b6a5f4e3d2c';
    const wrongCache = await mkdtemp(path.join(tmpdir(), 'vmroll-cache-'));
    try {
      for (const [options, secret] of [
        [{ token: wrongToken }, wrongToken],
        [{}, TOKEN],
      ] as const) {
        const source = new GitSource({ repo: url, cacheDir: wrongCache, ...options });
        const err = await expectSourceError(source.sync({ ref: 'main' }), 'AuthFailed');
        assert.equal(err.data.statusCode, 401);
        assert.equal(err.kind, 'stalled');
        for (const text of [err.message, String(err.stack), inspect(err, { depth: 5 }), JSON.stringify(err.data)]) {
          assert.ok(!text.includes(secret), `token leaked: ${text}`);
        }
      }
      // A token written into the URL is used for auth and never shown either.
      const inUrl = url.replace('http://', `http://someone:${wrongToken}@`);
      const source = new GitSource({ repo: inUrl, cacheDir: wrongCache });
      assert.ok(!source.repo.includes(wrongToken));
      const err = await expectSourceError(source.sync({ ref: 'main' }), 'AuthFailed');
      assert.ok(!inspect(err, { depth: 5 }).includes(wrongToken));
      // And a failed clone leaves nothing behind.
      assert.deepEqual(await readdir(wrongCache), []);
    } finally {
      await rm(wrongCache, { recursive: true, force: true });
    }
  });
});

describe('manifest loading: bad files are reported with file and line and block nothing else', function () {
  let server: GitServer;
  let cacheDir: string;
  let set: ManifestSet;
  let source: GitSource;
  let head = '';
  let work: WorkingClone;

  before(async function () {
    server = await startGitServer();
    cacheDir = await mkdtemp(path.join(tmpdir(), 'vmroll-cache-'));
    const url = await server.createBareRepo('bad');
    work = await server.createWorkingClone('bad');
    await work.write('vms/good-a.yaml', vmYaml('a', 'prod'));
    await work.write('vms/good-b.yml', CONFIGMAP + '---\n' + vmYaml('b', 'prod'));
    // Line 5 has an unclosed flow sequence.
    await work.write('vms/broken.yaml', 'apiVersion: kubevirt.io/v1\nkind: VirtualMachine\nmetadata:\n  name: broken\n  labels: [a, b\nspec: {}\n');
    await work.write('vms/schema.yaml', vmYaml('c', 'prod', 2, 'Sometimes'));
    await work.write('vms/dup-1.yaml', vmYaml('twin', 'prod'));
    await work.write('vms/dup-2.yaml', CONFIGMAP + '---\n' + vmYaml('twin', 'prod', 4));
    const bomb = ['apiVersion: kubevirt.io/v1', 'kind: VirtualMachine', 'metadata: {name: bomb}', 'a0: &a0 [x, x, x, x, x, x, x, x, x, x]'];
    for (let i = 1; i < 9; i++) bomb.push(`a${i}: &a${i} [${Array.from({ length: 10 }, () => `*a${i - 1}`).join(', ')}]`);
    await work.write('vms/bomb.yaml', bomb.join('\n') + '\n');
    await work.write('vms/huge.yaml', vmYaml('huge', 'prod') + `# ${'x'.repeat(1024 * 1024)}\n`);
    await work.write('secrets/stolen.yaml', vmYaml('stolen', 'prod'));
    await symlink('../secrets/stolen.yaml', path.join(work.dir, 'vms', 'escape.yaml'));
    head = await work.commit('bad things');
    await work.push();
    source = new GitSource({ repo: url, cacheDir });
    await source.sync({ ref: 'main' });
    set = await loadManifests({ source, commit: head, path: 'vms' });
  });

  after(async function () {
    await server?.stop();
    if (cacheDir) await rm(cacheDir, { recursive: true, force: true });
  });

  it('still loads the good VMs', function () {
    assert.deepEqual(vmKeys(set), ['prod/a', 'prod/b']);
    assert.deepEqual(
      set.skipped.map((s) => `${s.file}:${s.line} ${s.kind}`),
      ['vms/dup-2.yaml:1 ConfigMap', 'vms/good-b.yml:1 ConfigMap'],
    );
    assert.deepEqual(set.failedFiles, ['vms/bomb.yaml', 'vms/broken.yaml', 'vms/escape.yaml', 'vms/huge.yaml']);
    assert.deepEqual(set.heldVms, ['prod/c', 'prod/twin']);
  });

  it('names file and line for every bad file', function () {
    const byFile = new Map<string, { line: number; message: string; path?: string }[]>();
    for (const e of set.errors) byFile.set(e.file, [...(byFile.get(e.file) ?? []), { line: e.line, message: e.message, ...(e.path !== undefined ? { path: e.path } : {}) }]);
    assert.deepEqual([...byFile.keys()].sort(), ['vms/bomb.yaml', 'vms/broken.yaml', 'vms/dup-1.yaml', 'vms/dup-2.yaml', 'vms/escape.yaml', 'vms/huge.yaml', 'vms/schema.yaml']);

    const broken = byFile.get('vms/broken.yaml') ?? [];
    assert.equal(broken.length, 1);
    assert.ok((broken[0]?.line ?? 0) >= 5, `line ${broken[0]?.line}`);
    assert.match(broken[0]?.message ?? '', /invalid YAML/);

    // runStrategy is on line 7 of vmYaml's output.
    assert.deepEqual(byFile.get('vms/schema.yaml'), [
      { line: 7, path: 'spec.runStrategy', message: 'VirtualMachine prod/c: spec.runStrategy must be one of "Always", "RerunOnFailure", "Manual", "Halted", "Once", "WaitAsReceiver"' },
    ]);

    assert.deepEqual(byFile.get('vms/dup-1.yaml'), [{ line: 1, message: 'VirtualMachine prod/twin is also defined at vms/dup-2.yaml:8; no copy is used until only one remains' }]);
    assert.deepEqual(byFile.get('vms/dup-2.yaml'), [{ line: 8, message: 'VirtualMachine prod/twin is also defined at vms/dup-1.yaml:1; no copy is used until only one remains' }]);

    assert.match(byFile.get('vms/bomb.yaml')?.[0]?.message ?? '', /alias/i);
    assert.deepEqual(byFile.get('vms/huge.yaml')?.map((e) => e.line), [1]);
    assert.match(byFile.get('vms/huge.yaml')?.[0]?.message ?? '', /over the 1048576-byte limit; not parsed/);
    assert.match(byFile.get('vms/escape.yaml')?.[0]?.message ?? '', /^symbolic link to "\.\.\/secrets\/stolen\.yaml" refused/);
  });

  it('reads nothing outside the path', function () {
    assert.ok(set.read.every((f) => f.startsWith('vms/')), set.read.join(', '));
    assert.ok(!set.vms.some((vm) => vm.name === 'stolen'));
  });

  it('fixing one file on a later commit re-reads only that file and frees its VM', async function () {
    await work.write('vms/schema.yaml', vmYaml('c', 'prod', 2, 'Halted'));
    await work.remove('vms/dup-2.yaml');
    await work.write('vms/broken.yaml', 'this: [is, still, broken\n');
    const next = await work.commit('fix c, drop a twin');
    await work.push();
    const synced = await source.sync({ ref: 'main' });
    assert.equal(synced.commit, next);
    const after = await loadManifests({ source, commit: next, path: 'vms', previous: set });
    assert.deepEqual([...after.read].sort(), ['vms/broken.yaml', 'vms/schema.yaml']);
    assert.deepEqual(vmKeys(after), ['prod/a', 'prod/b', 'prod/c', 'prod/twin']);
    assert.deepEqual(after.heldVms, []);
    assert.deepEqual(after.failedFiles, ['vms/bomb.yaml', 'vms/broken.yaml', 'vms/escape.yaml', 'vms/huge.yaml']);
  });
});
