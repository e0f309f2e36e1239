/**
 * The layering rules of reconciler/ (DESIGN.md, "Boundaries") as a check over import statements:
 * static imports, `export … from`, `import type` and `import('literal')`, read with TypeScript's
 * own pre-processor so comments and strings never count as imports.
 */
import path from 'node:path';
import ts from 'typescript';

/** A rule an import can break. */
export const LayerRule = {
  /** rollout/ is pure: it imports only itself and the generated schema types. */
  rolloutIsolated: 'rolloutIsolated',
  /** restart/ is pure too: it imports only itself, rollout/ and the generated schema types. */
  restartPure: 'restartPure',
  /** Product paths never reach the simulator; only the commands that build one for `--cluster sim` do. */
  noSimInProduct: 'noSimInProduct',
  /** Nothing below commands/ (and cli.ts, the entry) imports a command. */
  noUpwardIntoCommands: 'noUpwardIntoCommands',
} as const;
/** One of {@link LayerRule}. */
export type LayerRule = (typeof LayerRule)[keyof typeof LayerRule];

/**
 * The files outside reconciler/cluster/sim/ that may import it, and why: they compose the simulator.
 * `sim` serves it, `demo` runs on it, and `run` and `plan` build a SimCluster for `--cluster sim`.
 */
export const SIM_COMPOSERS: ReadonlySet<string> = new Set([
  'reconciler/commands/sim.ts',
  'reconciler/commands/demo.ts',
  'reconciler/commands/run.ts',
  'reconciler/commands/plan.ts',
]);

/** One import that breaks a rule. */
export interface LayerViolation {
  /** The importing file, relative to the repository root with `/` separators. */
  file: string;
  /** The module specifier as written. */
  specifier: string;
  rule: LayerRule;
}

/** Every module specifier a TypeScript source imports or re-exports, dynamic `import('…')` with a literal included. */
export function importsOf(source: string): string[] {
  return ts.preProcessFile(source, true, true).importedFiles.map((f) => f.fileName);
}

const under = (file: string, dir: string): boolean => file.startsWith(`${dir}/`);

/** Where a relative specifier points, relative to the repository root; null for a package (`node:fs`, `pino`). */
function resolveSpecifier(file: string, specifier: string): string | null {
  if (!specifier.startsWith('.')) return null;
  return path.posix.normalize(path.posix.join(path.posix.dirname(file), specifier));
}

/** The rules `file` breaks by importing `specifier`. */
function rulesBroken(file: string, specifier: string): LayerRule[] {
  const target = resolveSpecifier(file, specifier);
  const out: LayerRule[] = [];
  if (under(file, 'reconciler/rollout') && (target === null || !(under(target, 'reconciler/rollout') || under(target, 'schemas/generated')))) {
    out.push(LayerRule.rolloutIsolated);
  }
  if (under(file, 'reconciler/restart') && (target === null || !(under(target, 'reconciler/restart') || under(target, 'reconciler/rollout') || under(target, 'schemas/generated')))) {
    out.push(LayerRule.restartPure);
  }
  if (target === null) return out;
  if (under(target, 'reconciler/cluster/sim') && !under(file, 'reconciler/cluster/sim') && !SIM_COMPOSERS.has(file)) out.push(LayerRule.noSimInProduct);
  if (under(target, 'reconciler/commands') && !under(file, 'reconciler/commands') && file !== 'reconciler/cli.ts') out.push(LayerRule.noUpwardIntoCommands);
  return out;
}

/** Every import in `files` (repository-relative path → source) that breaks a layering rule; files outside reconciler/ are not checked. */
export function layeringViolations(files: ReadonlyMap<string, string>): LayerViolation[] {
  const out: LayerViolation[] = [];
  for (const [file, source] of files) {
    if (!under(file, 'reconciler')) continue;
    for (const specifier of importsOf(source)) {
      for (const rule of rulesBroken(file, specifier)) out.push({ file, specifier, rule });
    }
  }
  return out;
}
