/** The error of bad input from the user, shared by configuration loading and every command. */

/** Bad input from the user: printed as one line, exit status 2. */
export class UsageError extends Error {
  readonly code = 'Usage';
}
