/** Shared pieces of the command implementations. */
import { readFileSync } from 'node:fs';
import type { Obj } from '../rollout/index.ts';
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
