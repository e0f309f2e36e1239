/**
 * What vmroll's two HTTP servers share: the `vmroll run --listen` endpoint (controller/server.ts)
 * and the simulator's API server (`vmroll sim --listen`, cluster/sim/apiServer.ts) read the same
 * listen-address forms and read request bodies under a size limit the same way.
 */
import type { IncomingMessage } from 'node:http';
import { isIP } from 'node:net';

const LISTEN_FORMS = 'expected HOST:PORT, :PORT, PORT or [IPV6]:PORT';

/** A listen address that is not `HOST:PORT`, `:PORT`, `PORT` or `[IPV6]:PORT`; the message says why. */
export class ListenAddressError extends Error {
  override readonly name = 'ListenAddressError';
  readonly code = 'InvalidListenAddress';
  constructor(
    readonly listen: string,
    why: string,
  ) {
    super(`invalid listen address "${listen}": ${why}`);
  }
}

/**
 * Splits a listen address into host (undefined: all interfaces) and port (0 picks a free one).
 * Throws {@link ListenAddressError}.
 */
export function parseListenAddress(listen: string): { host: string | undefined; port: number } {
  const text = listen.trim();
  if (/^[a-z][a-z0-9+.-]*:\/\//i.test(text)) throw new ListenAddressError(listen, 'give HOST:PORT without a scheme, e.g. 127.0.0.1:8080');
  let host: string | undefined;
  let portText: string;
  const bracketed = /^\[([^\]]*)\]:(.*)$/.exec(text);
  if (bracketed) {
    host = bracketed[1] ?? '';
    portText = bracketed[2] ?? '';
    if (isIP(host) !== 6) throw new ListenAddressError(listen, `"${host}" in brackets is not an IPv6 address`);
  } else if (/^\d+$/.test(text)) {
    portText = text;
  } else {
    const colon = text.lastIndexOf(':');
    if (colon < 0) throw new ListenAddressError(listen, LISTEN_FORMS);
    host = text.slice(0, colon);
    portText = text.slice(colon + 1);
    // A bare IPv6 address is ambiguous (`::1:8080`); insist on brackets.
    if (host.includes(':')) throw new ListenAddressError(listen, 'put IPv6 addresses in brackets, e.g. [::1]:8080');
    if (host === '') host = undefined;
    else if (!/^[A-Za-z0-9.-]+$/.test(host)) throw new ListenAddressError(listen, `"${host}" is not a host name or IPv4 address`);
  }
  if (!/^\d{1,5}$/.test(portText)) throw new ListenAddressError(listen, LISTEN_FORMS);
  const port = Number(portText);
  if (port > 65535) throw new ListenAddressError(listen, `port ${port} is out of range 0-65535`);
  return { host, port };
}

/** Why {@link readBody} gave no body. */
export const BodyRefusal = {
  /** The body passed the limit; reading stopped there and the request is paused. */
  tooLarge: 'too-large',
  /** The client went away before the body ended. */
  aborted: 'aborted',
} as const;
/** One of {@link BodyRefusal}. */
export type BodyRefusal = (typeof BodyRefusal)[keyof typeof BodyRefusal];

/**
 * Reads a request's whole body, but stops (without buffering more, the request paused) as soon
 * as it passes `maxBytes`. Never rejects: the caller decides what a refusal answers.
 */
export function readBody(req: IncomingMessage, maxBytes: number): Promise<Buffer | BodyRefusal> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const done = (result: Buffer | BodyRefusal): void => {
      req.off('data', onData);
      req.off('end', onEnd);
      req.off('error', onAbort);
      req.off('aborted', onAbort);
      resolve(result);
    };
    const onData = (chunk: Buffer): void => {
      size += chunk.length;
      if (size > maxBytes) {
        chunks.length = 0;
        req.pause();
        done(BodyRefusal.tooLarge);
        return;
      }
      chunks.push(chunk);
    };
    const onEnd = (): void => done(Buffer.concat(chunks, size));
    const onAbort = (): void => done(BodyRefusal.aborted);
    req.on('data', onData);
    req.on('end', onEnd);
    req.on('error', onAbort);
    req.on('aborted', onAbort);
  });
}
