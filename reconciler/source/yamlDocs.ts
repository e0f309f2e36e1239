/** Parses YAML text into documents that remember the line they start on, with errors that name file and line. */
import { LineCounter, isAlias, isMap, isNode, isScalar, isSeq, parseAllDocuments, type Document } from 'yaml';

/** One parsed YAML document. */
export interface YamlDoc {
  /** 1-based line where the document's content starts. */
  line: number;
  value: unknown;
  /** 1-based line of the node at `keys` (object keys and list indexes); the document's line when absent. */
  lineOf(keys: ReadonlyArray<string | number>): number;
  /**
   * 1-based line of the field at `keys`: of its key for a mapping entry, of the item for a list index.
   * When the path leaves the document, the line of the deepest part that exists.
   */
  fieldLine(keys: ReadonlyArray<string | number>): number;
}

/** A YAML problem located in a file. */
export class ManifestParseError extends Error {
  readonly code = 'ManifestParse';
  constructor(
    readonly file: string,
    readonly line: number | null,
    readonly reason: string,
  ) {
    super(`${file}${line !== null ? `:${line}` : ''}: ${reason}`);
  }
}

/** Default cap on YAML alias expansion, against alias bombs. */
export const MAX_ALIAS_COUNT = 100;

/** Parses every document of `text`; throws {@link ManifestParseError} on the first syntax error. */
export function parseYamlDocuments(text: string, file: string, maxAliasCount = MAX_ALIAS_COUNT, format: 'YAML' | 'JSON' = 'YAML'): YamlDoc[] {
  const lineCounter = new LineCounter();
  const docs = parseAllDocuments(text, { lineCounter, prettyErrors: false, uniqueKeys: true });
  const list = Array.isArray(docs) ? docs : [docs];
  const out: YamlDoc[] = [];
  for (const doc of list) {
    const err = doc.errors[0];
    if (err !== undefined) {
      const line = err.pos[0] >= 0 ? lineCounter.linePos(err.pos[0]).line : null;
      throw new ManifestParseError(file, line, `invalid ${format}: ${firstLine(err.message)}`);
    }
    if (doc.contents === null) continue;
    const start = doc.contents.range?.[0] ?? 0;
    let value: unknown;
    try {
      value = doc.toJS({ maxAliasCount });
    } catch (e) {
      throw new ManifestParseError(file, lineCounter.linePos(start).line, `invalid ${format}: ${firstLine(e instanceof Error ? e.message : String(e))}`);
    }
    const line = lineCounter.linePos(start).line;
    const lineOf = (keys: ReadonlyArray<string | number>): number => {
      const node: unknown = doc.getIn(keys, true);
      const offset = isNode(node) ? node.range?.[0] : undefined;
      return offset === undefined ? line : lineCounter.linePos(offset).line;
    };
    out.push({ line, value, lineOf, fieldLine: (keys) => fieldLine(doc, lineCounter, line, keys) });
  }
  return out;
}

function fieldLine(doc: Document, lineCounter: LineCounter, docLine: number, keys: ReadonlyArray<string | number>): number {
  let node: unknown = doc.contents;
  let line = docLine;
  for (const key of keys) {
    if (isAlias(node)) node = node.resolve(doc);
    if (isMap(node)) {
      const pair = node.items.find((p) => (isScalar(p.key) ? String(p.key.value) : String(p.key)) === String(key));
      if (!pair) break;
      const start = isScalar(pair.key) ? pair.key.range?.[0] : undefined;
      if (start !== undefined) line = lineCounter.linePos(start).line;
      node = pair.value;
    } else if (isSeq(node) && typeof key === 'number') {
      const item: unknown = node.items[key];
      const start = isNode(item) ? item.range?.[0] : undefined;
      if (start === undefined) break;
      line = lineCounter.linePos(start).line;
      node = item;
    } else {
      break;
    }
  }
  return line;
}

function firstLine(s: string): string {
  return s.split('\n')[0] ?? s;
}
