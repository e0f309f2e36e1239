/** Shared pieces of the command implementations. */

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
