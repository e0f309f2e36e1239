/**
 * The Git adapter: clones (without checkout) and fetches an http(s) repository into a cache folder,
 * or reads a local repository in place; resolves refs to commits, lists changed paths between two
 * commits, and reads files by blob oid. isomorphic-git exceptions become {@link SourceError}s here.
 */
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import { mkdir, rename, rm, stat } from 'node:fs/promises';
import path from 'node:path';
import git, { type AuthCallback, type HttpClient } from 'isomorphic-git';
import http from 'isomorphic-git/http/node';
import { SourceError, SourceErrorCode, redactSecrets, redactUrl, type SourceErrorData } from './errors.ts';
import { PackReader } from './packReader.ts';

/** How to reach one repository. */
export interface GitSourceOptions {
  /** An http(s) URL, or a local directory holding a working tree (with `.git`) or a bare repository. */
  repo: string;
  /** Folder under which http(s) repositories are cloned, one subfolder per URL; required for URLs. */
  cacheDir?: string;
  /** Token sent as HTTP basic-auth password (GitHub, Gitea, GitLab accept this); the caller reads it from env or file. */
  token?: string;
  /** User name sent with the token; default `x-access-token`. */
  username?: string;
  /** A single request that stays silent this long fails as `Unreachable`; default 30 s. */
  requestTimeoutMs?: number;
  /** A whole clone or fetch that takes longer than this fails as `Unreachable`; default 5 min. */
  operationTimeoutMs?: number;
  /** isomorphic-git's object cache; share one per process. Default: one per GitSource. */
  cache?: object;
}

/** What a ref name turned out to be. */
export type RefKind = 'branch' | 'tag' | 'commit' | 'head' | 'pull';

/** A ref resolved to a commit. */
export interface ResolvedRef {
  /** The ref as asked for. */
  ref: string;
  /** Full commit sha. */
  commit: string;
  kind: RefKind;
  /** The full ref name that matched (`refs/heads/main`, `refs/tags/v1`), or the sha itself. */
  fullName: string;
}

/** What one sync did. */
export interface SyncResult extends ResolvedRef {
  /** `clone` on first use of a URL, `fetch` later, `none` for a local repository. */
  transfer: 'clone' | 'fetch' | 'none';
  /** Wall time of the transfer (clone or fetch), ms. */
  transferMs: number;
}

/** How a path differs between two commits. */
export type ChangeStatus = 'added' | 'modified' | 'deleted';

/** One file (blob, including symlinks) that differs between two commits. */
export interface ChangedPath {
  /** Repository-relative path with `/` separators. */
  path: string;
  status: ChangeStatus;
  /** Blob oid at the newer commit; null when deleted. */
  oid: string | null;
  /** Git file mode at the newer commit (0o100644, 0o100755, 0o120000 for symlinks); null when deleted. */
  mode: number | null;
  /** Why vmroll refuses the path (its name or a folder's on the way); absent when the path is fine. */
  refused?: string;
}

/** One file (blob) in a commit's tree. */
export interface TreeFile {
  /** Repository-relative path with `/` separators. */
  path: string;
  oid: string;
  /** Git file mode: 0o100644, 0o100755, or 0o120000 for a symlink. */
  mode: number;
  /** Why vmroll refuses the path (its name or a folder's on the way); absent when the path is fine. */
  refused?: string;
}

/** Git file mode of a symbolic link. */
export const SYMLINK_MODE = 0o120000;

const DEFAULT_USERNAME = 'x-access-token';
/** The remote, in the clone's config, that pull-request heads are fetched through. */
const PULLS_REMOTE = 'vmroll-pulls';
const PULLS_REFSPEC = `+refs/pull/*:refs/remotes/${PULLS_REMOTE}/pull/*`;
const SHA = /^[0-9a-f]{40}$/i;
const SHORT_SHA = /^[0-9a-f]{4,39}$/i;

/**
 * Normalizes a `--path` prefix: `''` means the whole repository. Refuses absolute paths and `..`,
 * so nothing outside the repository can be named.
 */
export function normalizeRepoPath(prefix: string | undefined): string {
  if (prefix === undefined) return '';
  const trimmed = prefix.replaceAll('\\', '/').trim();
  if (trimmed.startsWith('/')) {
    throw new SourceError(SourceErrorCode.InvalidLocation, `path ${JSON.stringify(prefix)} must be relative to the repository root`, { operation: 'open' });
  }
  const segments = trimmed.split('/').filter((s) => s !== '' && s !== '.');
  if (segments.includes('..')) {
    throw new SourceError(SourceErrorCode.InvalidLocation, `path ${JSON.stringify(prefix)} must not contain '..'`, { operation: 'open' });
  }
  return segments.join('/');
}

/** True when `file` is `prefix` itself or lies below it. */
export function isUnderPath(file: string, prefix: string): boolean {
  return prefix === '' || file === prefix || file.startsWith(`${prefix}/`);
}

// True for the folders on the way down to the prefix: the walk must enter them but record nothing.
function isAncestorOf(dir: string, prefix: string): boolean {
  return prefix.startsWith(`${dir}/`);
}

interface Location {
  dir: string;
  gitdir: string;
}

/** One repository, remote or local. Safe to reuse across syncs; not meant for concurrent syncs. */
export class GitSource {
  /** `http` for a URL (cloned into the cache), `local` for a directory read in place. */
  readonly transport: 'http' | 'local';
  /** The repository as it may be logged: URL without credentials, or the local path. */
  readonly repo: string;
  private readonly url: string | null;
  private readonly username: string;
  private readonly token: string | undefined;
  private readonly cache: object;
  private readonly requestTimeoutMs: number;
  private readonly operationTimeoutMs: number;
  private readonly cloneDir: string | null;
  private location: Location | null = null;
  private packReader: PackReader | null = null;

  constructor(options: GitSourceOptions) {
    this.cache = options.cache ?? {};
    this.requestTimeoutMs = options.requestTimeoutMs ?? 30_000;
    this.operationTimeoutMs = options.operationTimeoutMs ?? 300_000;
    let token = options.token;
    let username = options.username ?? DEFAULT_USERNAME;
    if (/^https?:\/\//i.test(options.repo)) {
      const url = new URL(options.repo);
      // Credentials written into the URL are moved to onAuth so they never reach .git/config or a message.
      if (url.password !== '' && token === undefined) {
        token = decodeURIComponent(url.password);
        if (url.username !== '') username = decodeURIComponent(url.username);
      }
      url.username = '';
      url.password = '';
      this.transport = 'http';
      this.url = url.toString();
      this.repo = this.url;
      if (options.cacheDir === undefined) {
        throw new SourceError(SourceErrorCode.InvalidLocation, `cacheDir is required to clone ${this.repo}`, { repo: this.repo, operation: 'open' });
      }
      const key = createHash('sha256').update(this.url).digest('hex').slice(0, 16);
      const name = (url.pathname.split('/').filter(Boolean).pop() ?? 'repo').replace(/\.git$/, '').replace(/[^A-Za-z0-9._-]/g, '_');
      this.cloneDir = path.resolve(options.cacheDir, `${name}-${key}`);
    } else if (/^[a-z][a-z0-9+.-]*:\/\//i.test(options.repo) || /^[^/]+@[^/]+:/.test(options.repo)) {
      throw new SourceError(SourceErrorCode.InvalidLocation, `unsupported repository location ${redactUrl(options.repo)}: use an http(s) URL or a local directory`, {
        repo: redactUrl(options.repo),
        operation: 'open',
      });
    } else {
      this.transport = 'local';
      this.url = null;
      this.repo = path.resolve(options.repo);
      this.cloneDir = null;
    }
    this.token = token;
    this.username = username;
  }

  /** The folder an http(s) repository is cloned into (under `cacheDir`), where caches about it live too; null for a local repository. */
  get cloneFolder(): string | null {
    return this.cloneDir;
  }

  /**
   * Brings the repository up to date (clone on first use, fetch afterwards; nothing for a local
   * repository) and resolves `ref` (branch, tag, full or short sha, or `HEAD`) to a commit.
   */
  async sync(args: { ref: string }): Promise<SyncResult> {
    const started = performance.now();
    let transfer: SyncResult['transfer'] = 'none';
    if (this.transport === 'http') transfer = await this.transferFromRemote();
    else await this.openLocal();
    const transferMs = Math.round(performance.now() - started);
    const resolved = await this.resolve(args);
    return { ...resolved, transfer, transferMs };
  }

  /** Resolves `ref` against what is already on disk (no network). */
  async resolve(args: { ref: string }): Promise<ResolvedRef> {
    const { ref } = args;
    const loc = await this.open();
    return this.guard('resolve', { ref }, async () => {
      if (SHA.test(ref)) {
        const commit = await this.peelToCommit(ref.toLowerCase(), ref);
        return { ref, commit, kind: 'commit', fullName: commit };
      }
      for (const [fullName, kind] of this.candidates(ref)) {
        let oid: string;
        try {
          oid = await git.resolveRef({ fs, ...loc, ref: fullName });
        } catch (e) {
          if (libraryCode(e) === 'NotFoundError') continue;
          throw e;
        }
        return { ref, commit: await this.peelToCommit(oid, ref), kind, fullName };
      }
      if (SHORT_SHA.test(ref)) {
        let oid: string | null = null;
        try {
          oid = await git.expandOid({ fs, ...loc, oid: ref.toLowerCase(), cache: this.cache });
        } catch (e) {
          if (libraryCode(e) !== 'NotFoundError') throw e;
        }
        if (oid !== null) {
          const commit = await this.peelToCommit(oid, ref);
          return { ref, commit, kind: 'commit', fullName: commit };
        }
      }
      throw new SourceError(SourceErrorCode.RefNotFound, `${this.repo}: no branch, tag or commit named ${JSON.stringify(ref)}`, {
        repo: this.repo,
        ref,
        operation: 'resolve',
      });
    });
  }

  /**
   * Files that differ between two commits, restricted to `path` (a folder or file prefix; default the
   * whole repository). Subtrees whose oids are equal are skipped, so the cost follows the size of the change.
   * An entry whose name Git allows but vmroll refuses (see {@link TreeFile.refused}) is listed with the reason.
   */
  async changedPaths(args: { from: string; to: string; path?: string }): Promise<ChangedPath[]> {
    const prefix = normalizeRepoPath(args.path);
    const loc = await this.open();
    return this.guard('diff', {}, async () => {
      const changes: ChangedPath[] = [];
      const [from, to] = await Promise.all([this.rootTree(loc, args.from), this.rootTree(loc, args.to)]);
      const visit = async (dir: string, a: string | null, b: string | null, refusedDir: string | undefined): Promise<void> => {
        if (a === b) return;
        const [before, after] = await Promise.all([a === null ? [] : this.readTree(loc, a), b === null ? [] : this.readTree(loc, b)]);
        const xs = new Map(before.map((e) => [e.name, e]));
        const ys = new Map(after.map((e) => [e.name, e]));
        const subtrees: Promise<void>[] = [];
        for (const name of new Set([...xs.keys(), ...ys.keys()])) {
          const x = xs.get(name);
          const y = ys.get(name);
          const filepath = dir === '' ? name : `${dir}/${name}`;
          const inside = isUnderPath(filepath, prefix);
          if (!inside && !isAncestorOf(filepath, prefix)) continue;
          if (x?.oid === y?.oid && x?.mode === y?.mode) continue;
          const refused = refusedDir ?? y?.refused;
          if (inside) {
            const xBlob = x?.type === 'blob';
            const yBlob = y?.type === 'blob';
            if (xBlob && yBlob) changes.push({ path: filepath, status: 'modified', oid: y.oid, mode: y.mode, ...(refused !== undefined ? { refused } : {}) });
            else if (xBlob) changes.push({ path: filepath, status: 'deleted', oid: null, mode: null });
            else if (yBlob) changes.push({ path: filepath, status: 'added', oid: y.oid, mode: y.mode, ...(refused !== undefined ? { refused } : {}) });
          }
          const xTree = x?.type === 'tree' ? x.oid : null;
          const yTree = y?.type === 'tree' ? y.oid : null;
          if (xTree !== null || yTree !== null) subtrees.push(visit(filepath, xTree, yTree, refusedDir ?? y?.refused));
        }
        await Promise.all(subtrees);
      };
      await visit('', from, to, undefined);
      return changes.sort((x, y) => (x.path < y.path ? -1 : x.path > y.path ? 1 : 0));
    });
  }

  /**
   * Every file (blob) at `commit` under `path` (default the whole repository), sorted by path. An
   * entry whose name Git allows but vmroll refuses is listed with the reason in {@link TreeFile.refused}.
   */
  async listFiles(args: { commit: string; path?: string }): Promise<TreeFile[]> {
    const prefix = normalizeRepoPath(args.path);
    const loc = await this.open();
    return this.guard('list', {}, async () => {
      const files: TreeFile[] = [];
      const visit = async (dir: string, oid: string, refusedDir: string | undefined): Promise<void> => {
        const subtrees: Promise<void>[] = [];
        for (const entry of await this.readTree(loc, oid)) {
          const filepath = dir === '' ? entry.name : `${dir}/${entry.name}`;
          const inside = isUnderPath(filepath, prefix);
          if (!inside && !isAncestorOf(filepath, prefix)) continue;
          const refused = refusedDir ?? entry.refused;
          if (entry.type === 'blob' && inside) files.push({ path: filepath, oid: entry.oid, mode: entry.mode, ...(refused !== undefined ? { refused } : {}) });
          else if (entry.type === 'tree') subtrees.push(visit(filepath, entry.oid, refused));
        }
        await Promise.all(subtrees);
      };
      await visit('', await this.rootTree(loc, args.commit), undefined);
      return files.sort((x, y) => (x.path < y.path ? -1 : x.path > y.path ? 1 : 0));
    });
  }

  // The tree of a commit (or of what a ref or tag points at).
  private async rootTree(loc: Location, ref: string): Promise<string> {
    const oid = SHA.test(ref) ? ref.toLowerCase() : await git.resolveRef({ fs, ...loc, ref });
    const commit = await this.peelToCommit(oid, ref);
    return (await git.readCommit({ fs, ...loc, oid: commit, cache: this.cache })).commit.tree;
  }

  // Tree entries parsed here rather than by isomorphic-git, which throws on the whole tree when one
  // name is unsafe for a checkout (`a\b.yaml`): vmroll never checks out, so such a name is reported
  // for its own file and the rest of the tree is read.
  private async readTree(loc: Location, oid: string): Promise<RawTreeEntry[]> {
    const { object, type } = await git.readObject({ fs, ...loc, oid, format: 'content', cache: this.cache });
    if (type !== 'tree' || !(object instanceof Uint8Array)) {
      throw new SourceError(SourceErrorCode.GitFailed, `${this.repo}: object ${oid} is a ${type}, not a tree`, { repo: this.repo, operation: 'list' });
    }
    return parseTree(object, oid);
  }

  /** The content of the blob `oid`. */
  async readBlob(args: { oid: string }): Promise<Uint8Array> {
    const loc = await this.open();
    return this.guard('read', {}, async () => {
      const { blob } = await git.readBlob({ fs, ...loc, oid: args.oid, cache: this.cache });
      return blob;
    });
  }

  /**
   * The contents of many blobs, read from the packfiles in bulk (Node's zlib, each blob checked
   * against its oid); whatever that reader cannot read is read by isomorphic-git, so the bytes and
   * the errors are those of {@link readBlob}.
   */
  async readBlobs(args: { oids: string[] }): Promise<Map<string, Uint8Array>> {
    const loc = await this.open();
    return this.guard('read', {}, async () => {
      this.packReader ??= new PackReader({ gitdir: loc.gitdir });
      let read: Awaited<ReturnType<PackReader['readBlobs']>>;
      try {
        read = await this.packReader.readBlobs({ oids: args.oids });
      } catch (e) {
        // An I/O error on the object store: isomorphic-git reads them all, and reports what it cannot.
        read = { blobs: new Map(), unread: new Map(args.oids.map((oid) => [oid, e instanceof Error ? e.message : String(e)])) };
      }
      const { blobs, unread } = read;
      for (const oid of unread.keys()) {
        const { blob } = await git.readBlob({ fs, ...loc, oid, cache: this.cache });
        blobs.set(oid, blob);
      }
      return blobs;
    });
  }

  /** Counters of the bulk reader (blobs from packs, loose, handed to isomorphic-git); null before the first {@link readBlobs}. */
  get packReaderStats(): PackReader['stats'] | null {
    return this.packReader?.stats ?? null;
  }

  /**
   * Fetches a pull request's head (`refs/pull/<number>/head`, as GitHub and Gitea publish it) into
   * `refs/remotes/vmroll-pulls/pull/<number>/head` and resolves it. Only that one ref is fetched; the
   * clone's branches and tags are left as the last sync put them. A local repository is read in place.
   */
  async fetchPullRequest(args: { number: number }): Promise<SyncResult> {
    const { number } = args;
    if (!Number.isSafeInteger(number) || number < 1) {
      throw new SourceError(SourceErrorCode.InvalidLocation, `pull request number must be a positive integer, not ${String(number)}`, { repo: this.repo, operation: 'fetch' });
    }
    const remoteRef = `refs/pull/${number}/head`;
    const started = performance.now();
    if (this.transport === 'local') {
      await this.openLocal();
      const resolved = await this.resolvePull(remoteRef, number);
      return { ...resolved, transfer: 'none', transferMs: Math.round(performance.now() - started) };
    }
    if (!(await isDirectory(path.join(this.cloneDir as string, '.git')))) await this.transferFromRemote();
    const loc = await this.open();
    const deadline = AbortSignal.timeout(this.operationTimeoutMs);
    await this.guard('fetch', { ref: remoteRef }, async () => {
      // A remote of its own, so the origin's prune never removes these refs and its refspecs stay as cloned.
      const configured = await git.getConfigAll({ fs, ...loc, path: `remote.${PULLS_REMOTE}.fetch` });
      if (!configured.includes(PULLS_REFSPEC)) {
        await git.setConfig({ fs, ...loc, path: `remote.${PULLS_REMOTE}.url`, value: this.url as string });
        await git.setConfig({ fs, ...loc, path: `remote.${PULLS_REMOTE}.fetch`, value: PULLS_REFSPEC });
      }
      const fetching = git.fetch({
        fs,
        ...loc,
        http: this.boundedHttp(deadline),
        url: this.url as string,
        cache: this.cache,
        remote: PULLS_REMOTE,
        remoteRef,
        // The one local ref offered as common history: the remote's default branch, which a pull request usually starts from.
        ref: await this.haveRef(loc),
        singleBranch: true,
        tags: false,
        ...(this.token !== undefined ? { onAuth: this.onAuth } : {}),
      });
      try {
        await fetching;
      } catch (e) {
        // The server does not advertise the ref: no such pull request (or the host publishes none).
        if (libraryCode(e) !== 'NotFoundError') throw e;
        throw new SourceError(SourceErrorCode.RefNotFound, `${this.repo}: no pull request head ${remoteRef}`, { repo: this.repo, ref: remoteRef, operation: 'fetch' });
      }
    });
    const resolved = await this.resolvePull(`refs/remotes/${PULLS_REMOTE}/pull/${number}/head`, number);
    return { ...resolved, transfer: 'fetch', transferMs: Math.round(performance.now() - started) };
  }

  /** The best common ancestor of two commits, or null when they share no history (or one is missing). */
  async mergeBase(args: { a: string; b: string }): Promise<string | null> {
    const loc = await this.open();
    try {
      const bases = (await git.findMergeBase({ fs, ...loc, oids: [args.a, args.b], cache: this.cache })) as string[];
      return bases[0] ?? null;
    } catch (e) {
      if (libraryCode(e) === 'NotFoundError') return null;
      throw this.translate(e, 'diff', {});
    }
  }

  /**
   * True when `ancestor` is `commit` or in its history within `depth` commits (default 200): bounded,
   * because the question is asked about recent pull-request heads on every sync.
   */
  async isAncestor(args: { ancestor: string; commit: string; depth?: number }): Promise<boolean> {
    if (args.ancestor === args.commit) return true;
    const loc = await this.open();
    try {
      return await git.isDescendent({ fs, ...loc, oid: args.commit, ancestor: args.ancestor, depth: args.depth ?? 200, cache: this.cache });
    } catch (e) {
      const code = libraryCode(e);
      if (code === 'MaxDepthError' || code === 'NotFoundError') return false;
      throw this.translate(e, 'diff', {});
    }
  }

  private async resolvePull(fullName: string, number: number): Promise<ResolvedRef> {
    const loc = await this.open();
    const ref = `refs/pull/${number}/head`;
    return this.guard('resolve', { ref }, async () => {
      let oid: string;
      try {
        oid = await git.resolveRef({ fs, ...loc, ref: fullName });
      } catch (e) {
        if (libraryCode(e) !== 'NotFoundError') throw e;
        throw new SourceError(SourceErrorCode.RefNotFound, `${this.repo}: no pull request head ${ref}`, { repo: this.repo, ref, operation: 'resolve' });
      }
      return { ref, commit: await this.peelToCommit(oid, ref), kind: 'pull', fullName };
    });
  }

  private async haveRef(loc: Location): Promise<string> {
    for (const candidate of ['refs/remotes/origin/HEAD', 'HEAD']) {
      try {
        await git.resolveRef({ fs, ...loc, ref: candidate });
        return candidate;
      } catch {
        // try the next one
      }
    }
    return 'HEAD';
  }

  private candidates(ref: string): [string, RefKind][] {
    const remote = this.transport === 'http';
    if (ref === 'HEAD') return [[remote ? 'refs/remotes/origin/HEAD' : 'HEAD', 'head']];
    if (ref.startsWith('refs/heads/')) {
      const branch = ref.slice('refs/heads/'.length);
      return [[remote ? `refs/remotes/origin/${branch}` : ref, 'branch']];
    }
    if (ref.startsWith('refs/tags/')) return [[ref, 'tag']];
    return [
      [remote ? `refs/remotes/origin/${ref}` : `refs/heads/${ref}`, 'branch'],
      [`refs/tags/${ref}`, 'tag'],
    ];
  }

  // Annotated tags point at tag objects; follow them down to the commit.
  private async peelToCommit(oid: string, ref: string): Promise<string> {
    const loc = await this.open();
    let current = oid;
    for (let depth = 0; depth < 10; depth++) {
      let result;
      try {
        result = await git.readObject({ fs, ...loc, oid: current, format: 'parsed', cache: this.cache });
      } catch (e) {
        if (libraryCode(e) === 'NotFoundError') {
          throw new SourceError(SourceErrorCode.RefNotFound, `${this.repo}: commit ${current} of ${JSON.stringify(ref)} is not in the repository`, {
            repo: this.repo,
            ref,
            operation: 'resolve',
          });
        }
        throw e;
      }
      if (result.type === 'commit') return current;
      if (result.type === 'tag') {
        current = (result.object as { object: string }).object;
        continue;
      }
      break;
    }
    throw new SourceError(SourceErrorCode.RefNotFound, `${this.repo}: ${JSON.stringify(ref)} does not point at a commit`, { repo: this.repo, ref, operation: 'resolve' });
  }

  private async open(): Promise<Location> {
    if (this.location) return this.location;
    if (this.transport === 'local') return this.openLocal();
    const cloneDir = this.cloneDir as string;
    if (!(await isDirectory(path.join(cloneDir, '.git')))) {
      throw new SourceError(SourceErrorCode.GitFailed, `${this.repo} has not been synced yet`, { repo: this.repo, operation: 'open' });
    }
    this.location = { dir: cloneDir, gitdir: path.join(cloneDir, '.git') };
    return this.location;
  }

  private async openLocal(): Promise<Location> {
    if (this.location) return this.location;
    if (await isDirectory(path.join(this.repo, '.git'))) {
      this.location = { dir: this.repo, gitdir: path.join(this.repo, '.git') };
    } else if ((await isDirectory(path.join(this.repo, 'objects'))) && (await isFile(path.join(this.repo, 'HEAD')))) {
      this.location = { dir: this.repo, gitdir: this.repo };
    } else {
      throw new SourceError(SourceErrorCode.RepoNotFound, `${this.repo} is not a git repository`, { repo: this.repo, operation: 'open' });
    }
    return this.location;
  }

  private async transferFromRemote(): Promise<'clone' | 'fetch'> {
    const cloneDir = this.cloneDir as string;
    const url = this.url as string;
    const deadline = AbortSignal.timeout(this.operationTimeoutMs);
    const common = {
      fs,
      http: this.boundedHttp(deadline),
      url,
      cache: this.cache,
      ...(this.token !== undefined ? { onAuth: this.onAuth } : {}),
    };
    if (await isDirectory(path.join(cloneDir, '.git'))) {
      await this.guard('fetch', {}, () =>
        git.fetch({ ...common, dir: cloneDir, remote: 'origin', singleBranch: false, tags: true, prune: true, pruneTags: true }),
      );
      this.location = { dir: cloneDir, gitdir: path.join(cloneDir, '.git') };
      return 'fetch';
    }
    // Clone beside the final folder and rename, so a crash mid-clone never leaves a half clone that looks complete.
    const partial = `${cloneDir}.partial-${process.pid}`;
    await rm(partial, { recursive: true, force: true });
    await mkdir(path.dirname(cloneDir), { recursive: true });
    try {
      await this.guard('clone', {}, () => git.clone({ ...common, dir: partial, noCheckout: true, singleBranch: false }));
      await rename(partial, cloneDir);
    } finally {
      await rm(partial, { recursive: true, force: true });
    }
    this.location = { dir: cloneDir, gitdir: path.join(cloneDir, '.git') };
    return 'clone';
  }

  // Arrow function so it can be handed to isomorphic-git as is; it answers only with the configured token.
  private readonly onAuth: AuthCallback = () => ({ username: this.username, password: this.token ?? '' });

  private boundedHttp(deadline: AbortSignal): HttpClient {
    const idle = this.requestTimeoutMs;
    return {
      request: (request) => http.request({ ...request, signal: deadline, fetchOptions: { ...(request.fetchOptions ?? {}), timeout: idle } }),
    };
  }

  // Every library call goes through here: isomorphic-git and Node errors become SourceErrors without secrets.
  private async guard<T>(operation: string, extra: SourceErrorData, fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (e) {
      if (e instanceof SourceError) throw e;
      throw this.translate(e, operation, extra);
    }
  }

  private translate(e: unknown, operation: string, extra: SourceErrorData): SourceError {
    const secrets = this.token !== undefined ? [this.token] : [];
    const lib = libraryCode(e);
    const raw = e instanceof Error ? e.message : String(e);
    const detail = redactSecrets(raw.split('\n')[0] ?? raw, secrets);
    const data: SourceErrorData = { repo: this.repo, operation, ...extra, ...(lib !== undefined ? { libraryCode: lib } : {}) };
    const statusCode = httpStatus(e);
    if (statusCode !== undefined) data.statusCode = statusCode;
    const where = `${operation} ${this.repo}`;
    if (statusCode === 401 || statusCode === 403) {
      const why = this.token === undefined ? 'the Git host wants credentials and no token is configured' : 'the Git host refused the token';
      return new SourceError(SourceErrorCode.AuthFailed, `${where}: ${why} (HTTP ${statusCode})`, data);
    }
    if (statusCode === 404) return new SourceError(SourceErrorCode.RepoNotFound, `${where}: repository not found (HTTP 404)`, data);
    if (statusCode !== undefined && (statusCode >= 500 || statusCode === 429 || statusCode === 408)) {
      return new SourceError(SourceErrorCode.Unreachable, `${where}: the Git host answered HTTP ${statusCode}`, data);
    }
    const sysCode = (e as { code?: unknown } | null)?.code;
    const name = (e as { name?: unknown } | null)?.name;
    if (
      name === 'AbortError' ||
      name === 'TimeoutError' ||
      /timed out/i.test(raw) ||
      (typeof sysCode === 'string' && /^E(CONNREFUSED|CONNRESET|NOTFOUND|AI_AGAIN|HOSTUNREACH|NETUNREACH|PIPE|TIMEDOUT)$/.test(sysCode))
    ) {
      return new SourceError(SourceErrorCode.Unreachable, `${where}: ${detail}`, data);
    }
    if (lib === 'NotFoundError' && operation !== 'clone' && operation !== 'fetch') {
      return new SourceError(SourceErrorCode.RefNotFound, `${where}: ${detail}`, data);
    }
    return new SourceError(SourceErrorCode.GitFailed, `${where}: ${detail}`, data);
  }
}

interface RawTreeEntry {
  name: string;
  oid: string;
  mode: number;
  type: 'blob' | 'tree' | 'commit';
  /** Why the name is refused, if it is. */
  refused?: string;
}

const TREE_MODE = 0o40000;
const SUBMODULE_MODE = 0o160000;

/** Parses a raw Git tree object: entries of `<octal mode> <name>\0<20-byte oid>`. */
function parseTree(buffer: Uint8Array, oid: string): RawTreeEntry[] {
  const entries: RawTreeEntry[] = [];
  const utf8 = new TextDecoder('utf-8', { fatal: true });
  let cursor = 0;
  while (cursor < buffer.length) {
    const space = buffer.indexOf(0x20, cursor);
    const nul = space === -1 ? -1 : buffer.indexOf(0, space + 1);
    if (space === -1 || nul === -1 || nul + 21 > buffer.length) throw new Error(`tree ${oid} is malformed at byte ${cursor}`);
    const mode = Number.parseInt(new TextDecoder().decode(buffer.subarray(cursor, space)), 8);
    const rawName = buffer.subarray(space + 1, nul);
    const entryOid = Buffer.from(buffer.subarray(nul + 1, nul + 21)).toString('hex');
    cursor = nul + 21;
    let name: string;
    let refused: string | undefined;
    try {
      name = utf8.decode(rawName);
    } catch {
      name = new TextDecoder().decode(rawName);
      refused = `the name ${JSON.stringify(name)} is not valid UTF-8`;
    }
    refused ??= refusedName(name);
    const type = mode === TREE_MODE ? 'tree' : mode === SUBMODULE_MODE ? 'commit' : 'blob';
    entries.push({ name, oid: entryOid, mode, type, ...(refused !== undefined ? { refused } : {}) });
  }
  return entries;
}

/**
 * Why a tree entry's name is refused, or undefined when it is fine. Git stores any name without `/`
 * or NUL, but a backslash reads as a folder separator on Windows (and `a\b.yaml` would look like
 * `a/b.yaml` in a path prefix), and `.`, `..` and `.git` are what Git's own checkout refuses.
 */
export function refusedName(name: string): string | undefined {
  if (/[\u0000-\u001f\u007f]/.test(name)) return `the name ${JSON.stringify(name)} contains a control character`;
  // Quoted as is: JSON quoting would double the very backslash being pointed at.
  if (name.includes('\\')) return `the name "${name}" contains a backslash, which is a folder separator on Windows`;
  if (name === '' || name === '.' || name === '..') return `the name ${JSON.stringify(name)} is not a file name`;
  if (name.toLowerCase().replace(/[. ]+$/, '') === '.git') return `the name ${JSON.stringify(name)} is reserved for Git's own folder`;
  return undefined;
}

function libraryCode(e: unknown): string | undefined {
  const code = (e as { code?: unknown } | null)?.code;
  return typeof code === 'string' && /Error$/.test(code) ? code : undefined;
}

function httpStatus(e: unknown): number | undefined {
  const err = e as { code?: unknown; data?: { statusCode?: unknown } } | null;
  if (err?.code !== 'HttpError') return undefined;
  const status = err.data?.statusCode;
  return typeof status === 'number' ? status : undefined;
}

async function isDirectory(p: string): Promise<boolean> {
  try {
    return (await stat(p)).isDirectory();
  } catch {
    return false;
  }
}

async function isFile(p: string): Promise<boolean> {
  try {
    return (await stat(p)).isFile();
  } catch {
    return false;
  }
}
