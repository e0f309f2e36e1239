/**
 * A repository's ownership identity: what vmroll writes to `vmroll.dev/source-repo` on every VM
 * it applies and matches before it updates or prunes one. It must come out the same however the
 * repository is reached (a URL with or without credentials, `.git` or a trailing slash, or a CI
 * checkout by path whose `origin` is that URL), so it is the normalised URL plus the manifest
 * path, or an identity set explicitly in vmroll.yaml.
 */
import fs from 'node:fs';
import { stat } from 'node:fs/promises';
import path from 'node:path';
import git from 'isomorphic-git';
import { normalizeRepoPath } from '../source/gitSource.ts';

/** Who this repository is, for ownership. */
export interface RepositoryIdentity {
  /** The value of `vmroll.dev/source-repo` on VMs this repository applies. */
  id: string;
  /** The repository without the path: its normalised URL (`git.example.com/acme/vms`), or an absolute local path without an origin. */
  repository: string;
  /** The manifest folder, normalised (`''` for the whole repository). */
  path: string;
  /** The local directory, for a repository read in place: the value older vmroll versions wrote for it. */
  localPath: string | null;
}

const URL_SCHEME = /^[a-z][a-z0-9+.-]*:\/\//i;
/** `git@host:owner/name.git`, the scp-like form ssh remotes use. */
const SCP_LIKE = /^(?:[^@/\s]+@)?([^:/\s]+):(?!\/\/)(.+)$/;
const DEFAULT_PORTS: Record<string, string> = { 'http:': '80', 'https:': '443' };

/**
 * The repository part of an identity: scheme, credentials, query, `.git` and trailing slashes
 * dropped, host lowercased (`https://user:tok@Git.Example.com/acme/vms.git/` →
 * `git.example.com/acme/vms`). An http(s) port other than the default stays; an ssh port goes,
 * so the ssh and the https remote of one repository agree. Null for something that is not a
 * remote location (a local path).
 */
export function normaliseRepoUrl(location: string): string | null {
  const text = location.trim();
  let host: string;
  let pathname: string;
  if (URL_SCHEME.test(text)) {
    let url: URL;
    try {
      url = new URL(text);
    } catch {
      return null;
    }
    if (url.protocol === 'file:' || url.hostname === '') return null;
    host = url.hostname.toLowerCase();
    const keepPort = url.port !== '' && (url.protocol === 'http:' || url.protocol === 'https:') && DEFAULT_PORTS[url.protocol] !== url.port;
    if (keepPort) host += `:${url.port}`;
    pathname = decodeURIComponent(url.pathname);
  } else {
    const m = SCP_LIKE.exec(text);
    // A Windows drive (`C:\repo`) is a path, not a host.
    if (m === null || m[1] === undefined || m[2] === undefined || /^[A-Za-z]$/.test(m[1])) return null;
    host = m[1].toLowerCase();
    pathname = m[2];
  }
  const segments = pathname.split('/').filter((s) => s !== '');
  const last = segments.length - 1;
  if (last >= 0) segments[last] = (segments[last] as string).replace(/\.git$/, '');
  const repo = segments.filter((s) => s !== '').join('/');
  return repo === '' ? host : `${host}/${repo}`;
}

/** Joins a repository and a manifest path the way identities show them: `git.example.com/acme/vms//clusters/prod`. */
export function identityOf(repository: string, repoPath: string): string {
  return repoPath === '' ? repository : `${repository}//${repoPath}`;
}

/** The `origin` remote URL of a local repository (a working tree or a bare repository), or null. */
async function originOf(dir: string): Promise<string | null> {
  const candidates = [path.join(dir, '.git'), dir];
  for (const gitdir of candidates) {
    try {
      if (!(await stat(path.join(gitdir, 'config'))).isFile()) continue;
    } catch {
      continue;
    }
    try {
      const url: unknown = await git.getConfig({ fs, gitdir, path: 'remote.origin.url' });
      return typeof url === 'string' && url !== '' ? url : null;
    } catch {
      return null;
    }
  }
  return null;
}

/**
 * The identity of a repository given as vmroll is given it (`--repo`, a `url:` in vmroll.yaml):
 * an explicit identity when set; else the normalised URL, or for a local path the normalised URL
 * of its `origin` remote (so a CI checkout matches the deployment that follows the URL), else
 * the absolute path; plus the manifest path.
 */
export async function repositoryIdentity(args: { repo: string; path?: string; identity?: string }): Promise<RepositoryIdentity> {
  const repoPath = normalizeRepoPath(args.path);
  const remote = normaliseRepoUrl(args.repo);
  let repository: string;
  let localPath: string | null = null;
  if (remote !== null) {
    repository = remote;
  } else {
    localPath = path.resolve(args.repo);
    const origin = await originOf(localPath);
    repository = (origin !== null ? normaliseRepoUrl(origin) : null) ?? localPath;
  }
  const explicit = args.identity?.trim();
  return { id: explicit !== undefined && explicit !== '' ? explicit : identityOf(repository, repoPath), repository, path: repoPath, localPath };
}
