/** The embedded default repository: fixtures/example-repo made into a Git repository on first use. */
import { cpSync, existsSync, mkdirSync, readdirSync } from 'node:fs';
import fs from 'node:fs';
import path from 'node:path';
import git from 'isomorphic-git';

/** Author of the commits vmroll makes in its example repository. */
export const EXAMPLE_AUTHOR = { name: 'vmroll example', email: 'example@vmroll.invalid' };

/** Creates `dir` from `fixturesDir` with one commit on `main`, unless it already is a repository. */
export async function ensureExampleRepo(dir: string, fixturesDir: string): Promise<{ created: boolean }> {
  if (existsSync(path.join(dir, '.git'))) return { created: false };
  mkdirSync(dir, { recursive: true });
  cpSync(fixturesDir, dir, { recursive: true });
  await git.init({ fs, dir, defaultBranch: 'main' });
  await addAll(dir);
  await git.commit({ fs, dir, message: 'Example VMs', author: EXAMPLE_AUTHOR });
  return { created: true };
}

/** Stages every file of the working tree (additions, changes and deletions). */
export async function addAll(dir: string): Promise<void> {
  const present = new Set<string>();
  const walk = (rel: string): void => {
    for (const entry of readdirSync(path.join(dir, rel), { withFileTypes: true })) {
      if (entry.name === '.git') continue;
      const p = rel === '' ? entry.name : `${rel}/${entry.name}`;
      if (entry.isDirectory()) walk(p);
      else present.add(p);
    }
  };
  walk('');
  for (const filepath of present) await git.add({ fs, dir, filepath });
  for (const filepath of await git.listFiles({ fs, dir })) {
    if (!present.has(filepath)) await git.remove({ fs, dir, filepath });
  }
}

/** Commits the working tree; returns the new commit. */
export async function commitAll(dir: string, message: string): Promise<string> {
  await addAll(dir);
  return git.commit({ fs, dir, message, author: EXAMPLE_AUTHOR });
}
