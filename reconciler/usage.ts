/** The error of bad input from the user, and the `--output` reader, shared by configuration loading and every command (light: no dependencies). */

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
