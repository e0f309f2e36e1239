/** Renderings of values for tables and comments, shared by the commands' text and the Git host's markdown. */

/** Short one-line rendering of a JSON value for tables. */
export function formatValue(v: unknown, max = 60): string {
  if (v === null || v === undefined) return '∅';
  const s = typeof v === 'string' ? v : JSON.stringify(v);
  return s.length > max ? `${s.slice(0, max - 1)}…` : s;
}
