#!/usr/bin/env node
// The installed `vmroll` command: runs the compiled CLI, dist/reconciler/cli.js (`npm ci` builds it
// through the `prepare` script; `npm run build` rebuilds it).
//
// It never runs stale code. In a source checkout (reconciler/ is present), a dist/ that is missing
// or older than any source file is not used: the sources run through tsx instead (a dev dependency,
// so present wherever the sources were installed for development), and the switch is said on stderr
// when that is a terminal. Without tsx it stops with one line: run `npm run build`. The image holds
// dist/ and no sources, so there the check costs one failed stat.
import { readdirSync, statSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const compiled = path.join(root, 'dist', 'reconciler', 'cli.js');

/** Modification time in ms, or undefined when `file` does not exist. */
function mtime(file) {
  return statSync(file, { throwIfNoEntry: false })?.mtimeMs;
}

/** Why dist/ cannot be trusted (a source newer than its output, or no output), or null when it can. */
function staleness() {
  for (const dir of ['reconciler', path.join('schemas', 'generated')]) {
    let files;
    try {
      files = readdirSync(path.join(root, dir), { recursive: true });
    } catch {
      continue; // no sources here (the image): dist/ is all there is
    }
    for (const f of files) {
      if (!f.endsWith('.ts')) continue;
      const source = path.join(dir, f);
      const built = mtime(path.join(root, 'dist', source.replace(/\.ts$/, '.js')));
      if (built === undefined) return `dist/ has no build of ${source}`;
      if ((mtime(path.join(root, source)) ?? 0) > built) return `${source} changed after the last build`;
    }
  }
  return mtime(compiled) === undefined ? 'dist/ has not been built' : null;
}

const stale = staleness();
let cli = compiled;
if (stale !== null) {
  let register;
  try {
    ({ register } = await import('tsx/esm/api'));
  } catch {
    process.stderr.write(`vmroll: ${stale}; run \`npm run build\` (in ${root})\n`);
    process.exit(1);
  }
  if (process.stderr.isTTY) process.stderr.write(`vmroll: ${stale}; running the sources through tsx (\`npm run build\` compiles them)\n`);
  register();
  cli = path.join(root, 'reconciler', 'cli.ts');
}
const { main } = await import(pathToFileURL(cli).href);
process.exitCode = await main(process.argv.slice(2));
