/** Typed errors of the Git source: each carries a `code`, plain `data`, and whether a retry can help; none ever carries a credential. */
import type { ErrorKind } from '../errors.ts';

/** Why a Git source operation failed. */
export const SourceErrorCode = {
  /** The Git host refused the credentials (401/403), or asked for some and none were configured. */
  AuthFailed: 'AuthFailed',
  /** The branch, tag or commit does not exist in the repository. */
  RefNotFound: 'RefNotFound',
  /** The repository does not exist at that URL or path. */
  RepoNotFound: 'RepoNotFound',
  /** The Git host could not be reached or answered with a server error, or the request timed out. */
  Unreachable: 'Unreachable',
  /** A `--path` or repository location that vmroll refuses (absolute, `..`, unsupported URL scheme). */
  InvalidLocation: 'InvalidLocation',
  /** Anything else the git library reported. */
  GitFailed: 'GitFailed',
} as const;
/** One of {@link SourceErrorCode}. */
export type SourceErrorCode = (typeof SourceErrorCode)[keyof typeof SourceErrorCode];

/** Whether a person must act (`stalled`) or a later retry may succeed (`transient`): the {@link ErrorKind}s a Git source failure can be. */
export type SourceErrorKind = Exclude<ErrorKind, 'waiting'>;

const KIND: Record<SourceErrorCode, SourceErrorKind> = {
  AuthFailed: 'stalled',
  RefNotFound: 'stalled',
  RepoNotFound: 'stalled',
  Unreachable: 'transient',
  InvalidLocation: 'stalled',
  GitFailed: 'transient',
};

/** Facts about a failure, safe to log and report. */
export interface SourceErrorData {
  /** The repository URL (credentials removed) or local path. */
  repo?: string;
  /** The ref being resolved, when relevant. */
  ref?: string;
  /** HTTP status from the Git host, when there was one. */
  statusCode?: number;
  /** The git library's own error code, e.g. `NotFoundError`. */
  libraryCode?: string;
  /** What the Git source was doing: `clone`, `fetch`, `resolve`, `diff`, `read`, `open`. */
  operation?: string;
}

/** An error from the Git source. Its message and data have had every secret removed. */
export class SourceError extends Error {
  override readonly name = 'SourceError';
  /** Stalled or transient; `errorKind` (reconciler/errors.ts) reads it for the repository chain's retry decision. */
  readonly kind: SourceErrorKind;
  constructor(
    readonly code: SourceErrorCode,
    message: string,
    readonly data: SourceErrorData = {},
  ) {
    super(message);
    this.kind = KIND[code];
  }
}

/** Removes user info (`user:token@`) from a URL-looking string; leaves anything else as is. */
export function redactUrl(url: string): string {
  return url.replace(/(\b[a-z][a-z0-9+.-]*:\/\/)[^/@\s]*@/gi, '$1');
}

/** Replaces every occurrence of each secret (and URL user info) in `text` with `***`. */
export function redactSecrets(text: string, secrets: readonly string[]): string {
  let out = redactUrl(text);
  for (const secret of secrets) {
    if (secret.length === 0) continue;
    out = out.split(secret).join('***');
    const encoded = encodeURIComponent(secret);
    if (encoded !== secret) out = out.split(encoded).join('***');
  }
  return out;
}
