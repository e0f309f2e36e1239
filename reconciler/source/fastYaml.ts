/**
 * A faster parse for the common manifest: js-yaml builds the value, and the `yaml` Document (for lines)
 * is built only when a line is asked for. Falls back to {@link parseYamlDocuments} whenever the result
 * could differ: several documents, directives, anchors, aliases, tags, merge keys, tabs, a scalar the
 * YAML 1.2 core schema would read other than js-yaml's JSON schema, or any js-yaml error.
 */
import { JSON_SCHEMA, load } from 'js-yaml';
import { MAX_ALIAS_COUNT, parseYamlDocuments, type YamlDoc } from './yamlDocs.ts';

// Text the fast path does not take: document markers and directives at a line start (several documents
// or a %YAML header), anchors/aliases (alias limits), tags, merge keys, tabs and CR (indentation rules the
// two libraries might read differently).
const UNSAFE_TEXT = /^(---|\.\.\.|%)|[&*!\t\r]|<</m;

// Plain scalars the YAML 1.2 core schema (what `yaml` uses) resolves to null, bool, int or float and
// js-yaml's JSON schema would leave a string or read differently; also empty keys.
const CORE_NON_STRING =
  /^(?:~|null|Null|NULL|true|True|TRUE|false|False|FALSE|[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+|[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?|[-+]?\.(?:inf|Inf|INF)|\.nan|\.NaN|\.NAN|)$/;

/** Whether every string (value or key) in `v` is one the core schema reads as a string too. */
function coreSafe(v: unknown): boolean {
  if (typeof v === 'string') return !CORE_NON_STRING.test(v);
  if (v === null || typeof v === 'boolean') return true;
  // JSON-schema numbers are the decimal forms the core schema reads as the same number.
  if (typeof v === 'number') return Number.isFinite(v);
  if (Array.isArray(v)) return v.every(coreSafe);
  if (typeof v === 'object') {
    if (Object.getPrototypeOf(v) !== Object.prototype) return false;
    for (const [k, item] of Object.entries(v as Record<string, unknown>)) {
      if (CORE_NON_STRING.test(k) || k === '__proto__' || !coreSafe(item)) return false;
    }
    return true;
  }
  return false;
}

/** Counts of which path parsed the files (for the bench). */
export const fastYamlStats = { fast: 0, fallback: 0 };

/** The same documents as {@link parseYamlDocuments}, faster for plain single-document files. */
export function parseYamlDocumentsFast(text: string, file: string, maxAliasCount = MAX_ALIAS_COUNT, format: 'YAML' | 'JSON' = 'YAML'): YamlDoc[] {
  const slow = (): YamlDoc[] => {
    fastYamlStats.fallback++;
    return parseYamlDocuments(text, file, maxAliasCount, format);
  };
  if (UNSAFE_TEXT.test(text)) return slow();
  // The document's line: the first line holding content (not blank, not a comment).
  const first = /^[ ]*[^\s#]/m.exec(text);
  if (first === null) return slow();
  let value: unknown;
  try {
    value = load(text, { schema: JSON_SCHEMA, filename: file });
  } catch {
    return slow();
  }
  if (value === null || typeof value !== 'object' || !coreSafe(value)) return slow();
  fastYamlStats.fast++;
  let line = 1;
  for (let i = text.indexOf('\n'); i >= 0 && i < first.index; i = text.indexOf('\n', i + 1)) line++;
  let full: YamlDoc | undefined;
  // Lines other than the document's own are asked for only for errors and warnings: parse fully then.
  const doc = (): YamlDoc => (full ??= parseYamlDocuments(text, file, maxAliasCount, format)[0] as YamlDoc);
  return [
    {
      line,
      value,
      lineOf: (keys) => (keys.length === 0 ? line : doc().lineOf(keys)),
      fieldLine: (keys) => (keys.length === 0 ? line : doc().fieldLine(keys)),
    },
  ];
}
