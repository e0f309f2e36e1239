/**
 * Where vmroll's own files are (package.json, schemas/*.json, fixtures/), the same whether this
 * module runs as reconciler/projectRoot.ts (tsx, tests) or as dist/reconciler/projectRoot.js (the
 * compiled build, one folder deeper): paths relative to import.meta.url would differ between the two.
 */
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));

/** The project's root folder: the one holding package.json. */
export const PROJECT_ROOT = import.meta.url.endsWith('.js') ? path.resolve(here, '..', '..') : path.resolve(here, '..');

/** A file or folder of the project, by its path from the root (e.g. `projectPath('schemas', 'vmplan.schema.json')`). */
export function projectPath(...parts: string[]): string {
  return path.join(PROJECT_ROOT, ...parts);
}
