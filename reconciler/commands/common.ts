/** Shared pieces of the command implementations; light on purpose (`vmroll diff` loads it: no cluster client here). */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import type { Obj, VmPlan } from '../rollout/index.ts';
import { redactUrl } from '../source/errors.ts';
import { parseYamlDocuments } from '../source/yamlDocs.ts';

/** Where a command writes; tests pass their own. */
export interface CommandIO {
  out(text: string): void;
  err(text: string): void;
}

/** Bad input from the user: printed as one line, exit status 2. */
export class UsageError extends Error {
  readonly code = 'Usage';
}

/**
 * Reads `--output` against the values a command offers; `table`, the old name of `text` in
 * plan and diff, is still accepted for scripts written before the names were unified.
 */
export function parseOutput<T extends string>(text: string | undefined, allowed: readonly T[], fallback: T): T {
  const value = text === 'table' && (allowed as readonly string[]).includes('text') ? 'text' : (text ?? fallback);
  if (!(allowed as readonly string[]).includes(value)) throw new UsageError(`--output must be ${allowed.slice(0, -1).join(', ')}${allowed.length > 1 ? ' or ' : ''}${allowed[allowed.length - 1] ?? ''}, not "${value}"`);
  return value as T;
}

/** Short one-line rendering of a JSON value for tables. */
export function formatValue(v: unknown, max = 60): string {
  if (v === null || v === undefined) return '∅';
  const s = typeof v === 'string' ? v : JSON.stringify(v);
  return s.length > max ? `${s.slice(0, max - 1)}…` : s;
}

/** Reads a KubeVirt CR from a YAML file for the simulator; `flag` names the option in errors. */
export function loadKubeVirt(file: string, flag: string): Obj {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch {
    throw new UsageError(`${flag}: ${file} cannot be read`);
  }
  const doc = parseYamlDocuments(text, file)[0];
  const v: unknown = doc?.value;
  if (typeof v !== 'object' || v === null || Array.isArray(v) || (v as Obj)['kind'] !== 'KubeVirt') {
    throw new UsageError(`${file}:${doc?.line ?? 1}: expected a KubeVirt object (${flag})`);
  }
  return v as Obj;
}

/** The VmPlan of a sync or plan that failed as a whole: no VMs, the failure as an error of the repository. */
export function failedPlan(repo: string, message: string): VmPlan {
  const file = /^[a-z][a-z0-9+.-]*:\/\//i.test(repo) ? redactUrl(repo) : path.resolve(repo);
  return { commit: null, vms: [], errors: [{ file, line: null, message }] };
}
