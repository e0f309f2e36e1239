/**
 * The HTTP endpoint of `vmroll run --listen ADDR`: liveness and readiness probes, and GitHub's
 * webhook. A delivery only triggers anything after its HMAC-SHA256 signature checked out against
 * the configured secret; without a secret every delivery is refused. The secret never leaves this
 * file: not in logs, responses or errors.
 */
import { createHmac, timingSafeEqual } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Logger } from 'pino';
import { BodyRefusal, ListenAddressError, parseListenAddress, readBody } from '../http.ts';
import { isObj } from '../rollout/json.ts';
import { redactSecrets } from '../source/errors.ts';

/** A push to the repository, as much of it as the reconcile loop needs. */
export interface WebhookPush {
  /** The full ref that moved, e.g. `refs/heads/main`. */
  ref: string;
  /** The commit the ref points at now (all zeros when the ref was deleted). */
  after: string;
  /** `owner/name` of the repository the push went to, when GitHub said. */
  repository: string | null;
  /** GitHub's `X-GitHub-Delivery` id, for matching our log lines with GitHub's delivery log. */
  deliveryId: string | null;
}

/** A pull-request event, as much of it as PR review needs. */
export interface WebhookPullRequest {
  /** GitHub's action, e.g. `opened`, `synchronize`, `closed`. */
  action: string;
  /** The pull request's number. */
  number: number;
  /** The commit at the head of the pull request. */
  headSha: string;
  /** GitHub's `X-GitHub-Delivery` id. */
  deliveryId: string | null;
}

/** What {@link startWebhookServer} needs. */
export interface WebhookServerOptions {
  /** Where to listen: `HOST:PORT`, `:PORT` or `PORT` (all interfaces), `[IPV6]:PORT`; port 0 picks a free one. */
  listen: string;
  /** The secret configured on the GitHub webhook; without it every webhook delivery gets 401. */
  webhookSecret?: string;
  /** Whether the first sync is done; answers `/readyz`. */
  isReady: () => boolean;
  /** Called for every verified push delivery; should only schedule work, not do it. */
  onPush: (push: WebhookPush) => void;
  /** Called for every verified pull_request delivery; without it those are acknowledged and ignored. */
  onPullRequest?: (pr: WebhookPullRequest) => void;
  /** Where to log; one line per webhook delivery. */
  logger: Logger;
  /** Largest request body accepted; default 1 MiB (GitHub caps payloads at 25 MB, pushes are far smaller). */
  maxBodyBytes?: number;
  /** Serves `GET /metrics` (Prometheus text) when set. */
  metrics?: () => Promise<{ contentType: string; body: string }>;
}

/** A listening webhook server. */
export interface WebhookServer {
  /** `host:port` actually bound, IPv6 hosts in brackets. */
  address: string;
  /** The port actually bound. */
  port: number;
  /** Stops listening and drops open connections. */
  close(): Promise<void>;
}

/** Why the webhook server could not start. */
export const WebhookServerErrorCode = {
  /** The `--listen` value is not `HOST:PORT`, `:PORT`, `PORT` or `[IPV6]:PORT`. */
  InvalidListenAddress: 'InvalidListenAddress',
  /** The operating system refused to bind (address in use, permission denied, unknown host). */
  ListenFailed: 'ListenFailed',
} as const;
/** One of {@link WebhookServerErrorCode}. */
export type WebhookServerErrorCode = (typeof WebhookServerErrorCode)[keyof typeof WebhookServerErrorCode];

/** An error starting the webhook server; both kinds need a person to fix the configuration. */
export class WebhookServerError extends Error {
  override readonly name = 'WebhookServerError';
  constructor(
    readonly code: WebhookServerErrorCode,
    message: string,
    readonly data: { listen: string; systemCode?: string } = { listen: '' },
  ) {
    super(message);
  }
}

/** Default for {@link WebhookServerOptions.maxBodyBytes}. */
export const DEFAULT_MAX_BODY_BYTES = 1024 * 1024;

/** The webhook route; GitHub is configured to POST here. */
export const GITHUB_WEBHOOK_PATH = '/webhook/github';

/** Starts listening; resolves once bound, rejects with {@link WebhookServerError} if it cannot bind. */
export async function startWebhookServer(options: WebhookServerOptions): Promise<WebhookServer> {
  let host: string | undefined;
  let port: number;
  try {
    ({ host, port } = parseListenAddress(options.listen));
  } catch (e) {
    if (e instanceof ListenAddressError) throw new WebhookServerError(WebhookServerErrorCode.InvalidListenAddress, e.message, { listen: options.listen });
    throw e;
  }
  const maxBodyBytes = options.maxBodyBytes ?? DEFAULT_MAX_BODY_BYTES;
  if (!Number.isInteger(maxBodyBytes) || maxBodyBytes <= 0) {
    throw new RangeError(`maxBodyBytes must be a positive integer, got ${maxBodyBytes}`);
  }
  const logger = options.logger.child({ component: 'webhook' });
  const handler = new RequestHandler({ ...options, maxBodyBytes, logger });

  const server = createServer((req, res) => handler.handle(req, res));
  // A probe or webhook is tiny; nobody legitimate holds a connection open for long.
  server.headersTimeout = 10_000;
  server.requestTimeout = 30_000;

  await new Promise<void>((resolve, reject) => {
    const onError = (err: NodeJS.ErrnoException): void => {
      reject(
        new WebhookServerError(
          WebhookServerErrorCode.ListenFailed,
          `cannot listen on ${options.listen}: ${err.code ?? err.message}`,
          err.code === undefined ? { listen: options.listen } : { listen: options.listen, systemCode: err.code },
        ),
      );
    };
    server.once('error', onError);
    server.listen({ port, ...(host === undefined ? {} : { host }) }, () => {
      server.off('error', onError);
      resolve();
    });
  });
  server.on('error', (err) => logger.error({ err: { message: err.message } }, 'webhook server error'));

  const bound = server.address() as AddressInfo;
  const address = `${bound.family === 'IPv6' ? `[${bound.address}]` : bound.address}:${bound.port}`;
  logger.info({ address }, 'webhook server listening');
  return { address, port: bound.port, close: () => closeServer(server) };
}

function closeServer(server: Server): Promise<void> {
  return new Promise((resolve, reject) => {
    server.close((err) => (err ? reject(err) : resolve()));
    // close() alone waits for keep-alive connections to go idle and time out.
    server.closeAllConnections();
  });
}

/** How one webhook delivery ended; logged as `result`. */
type WebhookResult =
  | 'accepted'
  | 'ignored'
  | 'pong'
  | 'no-secret'
  | 'bad-signature'
  | 'too-large'
  | 'bad-request'
  | 'aborted'
  | 'handler-failed';

/** Outcomes that mean someone sent something we refuse to trust; logged at warn. */
const WARN_RESULTS: ReadonlySet<WebhookResult> = new Set(['no-secret', 'bad-signature']);

type HandlerOptions = Omit<WebhookServerOptions, 'maxBodyBytes'> & { maxBodyBytes: number };

class RequestHandler {
  private readonly secret: string | undefined;
  constructor(private readonly options: HandlerOptions) {
    this.secret = options.webhookSecret === '' ? undefined : options.webhookSecret;
  }

  handle(req: IncomingMessage, res: ServerResponse): void {
    const path = requestPath(req.url);
    switch (path) {
      case '/healthz':
        if (!allowMethods(req, res, ['GET', 'HEAD'])) return;
        reply(res, 200, 'ok');
        return;
      case '/readyz':
        if (!allowMethods(req, res, ['GET', 'HEAD'])) return;
        if (this.ready()) reply(res, 200, 'ready');
        else reply(res, 503, 'not ready');
        return;
      case GITHUB_WEBHOOK_PATH:
        if (!allowMethods(req, res, ['POST'])) return;
        void this.webhook(req, res);
        return;
      case '/metrics':
        if (this.options.metrics === undefined) break;
        if (!allowMethods(req, res, ['GET'])) return;
        void this.serveMetrics(this.options.metrics, res);
        return;
    }
    refuseUnread(req, res, 404, 'not found');
  }

  private async serveMetrics(metrics: () => Promise<{ contentType: string; body: string }>, res: ServerResponse): Promise<void> {
    try {
      const { contentType, body } = await metrics();
      res.writeHead(200, { 'Content-Type': contentType, 'Content-Length': Buffer.byteLength(body), 'Cache-Control': 'no-store' });
      res.end(body);
    } catch (e) {
      this.options.logger.error({ err: e instanceof Error ? e.message : String(e) }, 'metrics failed');
      reply(res, 500, 'metrics failed');
    }
  }

  private ready(): boolean {
    try {
      return this.options.isReady();
    } catch {
      return false;
    }
  }

  private async webhook(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const event = singleHeader(req, 'x-github-event');
    const deliveryId = singleHeader(req, 'x-github-delivery');
    const log = (status: number, result: WebhookResult, extra: Record<string, unknown> = {}): void => {
      const line = { event, deliveryId, status, result, ...extra };
      if (WARN_RESULTS.has(result)) this.options.logger.warn(line, 'webhook refused');
      else this.options.logger.info(line, 'webhook');
    };

    if (this.secret === undefined) {
      refuseUnread(req, res, 401, 'webhook secret is not configured; refusing unsigned deliveries');
      log(401, 'no-secret');
      return;
    }
    const signature = parseSignature(singleHeader(req, 'x-hub-signature-256'));
    if (signature === 'missing' || signature === 'malformed') {
      refuseUnread(req, res, 401, `${signature} X-Hub-Signature-256 header`);
      log(401, 'bad-signature', { reason: `${signature} signature header` });
      return;
    }
    const declaredLength = Number(req.headers['content-length'] ?? NaN);
    if (declaredLength > this.options.maxBodyBytes) {
      refuseUnread(req, res, 413, `body exceeds ${this.options.maxBodyBytes} bytes`);
      log(413, 'too-large', { declaredLength });
      return;
    }

    const body = await readBody(req, this.options.maxBodyBytes);
    if (body === BodyRefusal.aborted) {
      log(0, 'aborted');
      return;
    }
    if (body === BodyRefusal.tooLarge) {
      refuseUnread(req, res, 413, `body exceeds ${this.options.maxBodyBytes} bytes`);
      log(413, 'too-large');
      return;
    }
    const expected = createHmac('sha256', this.secret).update(body).digest();
    if (!timingSafeEqual(expected, signature)) {
      reply(res, 401, 'signature does not match');
      log(401, 'bad-signature', { reason: 'signature does not match body' });
      return;
    }

    if (event === null) {
      reply(res, 400, 'missing X-GitHub-Event header');
      log(400, 'bad-request', { reason: 'missing event header' });
      return;
    }
    if (event === 'ping') {
      reply(res, 200, 'pong');
      log(200, 'pong');
      return;
    }
    if (event !== 'push' && event !== 'pull_request') {
      reply(res, 202, 'ignored');
      log(202, 'ignored');
      return;
    }
    if (event === 'pull_request' && this.options.onPullRequest === undefined) {
      reply(res, 202, 'ignored');
      log(202, 'ignored');
      return;
    }

    const payload = parsePayload(body, req.headers['content-type']);
    if (payload === undefined) {
      reply(res, 400, 'body is not valid JSON');
      log(400, 'bad-request', { reason: 'invalid JSON' });
      return;
    }
    let trigger: () => void;
    let facts: Record<string, unknown>;
    if (event === 'push') {
      const push = pushFrom(payload, deliveryId);
      if (push === undefined) {
        reply(res, 400, 'push payload needs string "ref" and "after"');
        log(400, 'bad-request', { reason: 'push payload lacks ref or after' });
        return;
      }
      trigger = () => this.options.onPush(push);
      facts = { ref: push.ref, after: push.after, repository: push.repository };
    } else {
      const onPullRequest = this.options.onPullRequest;
      const pr = pullRequestFrom(payload, deliveryId);
      if (pr === undefined || onPullRequest === undefined) {
        reply(res, 400, 'pull_request payload needs "action", "number" and "pull_request.head.sha"');
        log(400, 'bad-request', { reason: 'pull_request payload lacks action, number or head sha' });
        return;
      }
      trigger = () => onPullRequest(pr);
      facts = { action: pr.action, number: pr.number, headSha: pr.headSha };
    }

    try {
      trigger();
    } catch (err) {
      reply(res, 500, 'internal error');
      const message = err instanceof Error ? err.message : String(err);
      log(500, 'handler-failed', { ...facts, error: redactSecrets(message, [this.secret]) });
      return;
    }
    reply(res, 202, 'accepted');
    log(202, 'accepted', facts);
  }
}

/** The path of a request target, without query; `null` for targets that are not a path. */
function requestPath(url: string | undefined): string | null {
  if (url === undefined || !url.startsWith('/')) return null;
  const q = url.indexOf('?');
  return q < 0 ? url : url.slice(0, q);
}

function allowMethods(req: IncomingMessage, res: ServerResponse, allowed: readonly string[]): boolean {
  if (req.method !== undefined && allowed.includes(req.method)) return true;
  res.setHeader('Allow', allowed.join(', '));
  refuseUnread(req, res, 405, 'method not allowed');
  return false;
}

function reply(res: ServerResponse, status: number, text: string): void {
  res.writeHead(status, {
    'Content-Type': 'text/plain; charset=utf-8',
    'Content-Length': Buffer.byteLength(text),
    'Cache-Control': 'no-store',
  });
  res.end(text);
}

/**
 * Answers before (or instead of) reading the request body, and closes the connection so the
 * unread rest is never read. Node would otherwise drain it to keep the connection alive.
 * Reading stops at once; the socket is torn down only after the client had a moment to read
 * the answer, because closing a socket with unread input sends a reset that can make the
 * client lose the response.
 */
function refuseUnread(req: IncomingMessage, res: ServerResponse, status: number, text: string): void {
  if (req.complete || !hasBody(req)) {
    reply(res, status, text);
    return;
  }
  res.shouldKeepAlive = false;
  res.setHeader('Connection', 'close');
  const socket = req.socket;
  req.pause();
  // Node's own clean-up after the response would resume the request and discard the rest.
  req.removeAllListeners('data');
  socket.pause();
  reply(res, status, text);
  const timer = setTimeout(() => socket.destroy(), 1_000);
  timer.unref();
  socket.once('close', () => clearTimeout(timer));
}

function hasBody(req: IncomingMessage): boolean {
  return req.headers['transfer-encoding'] !== undefined || Number(req.headers['content-length'] ?? 0) > 0;
}

function singleHeader(req: IncomingMessage, name: string): string | null {
  const value = req.headers[name];
  if (typeof value === 'string') return value;
  return null;
}

/** The 32 signature bytes of `sha256=<64 hex>`, or why there are none. */
function parseSignature(header: string | null): Buffer | 'missing' | 'malformed' {
  if (header === null || header === '') return 'missing';
  const match = /^sha256=([0-9a-fA-F]{64})$/.exec(header.trim());
  if (!match?.[1]) return 'malformed';
  return Buffer.from(match[1], 'hex');
}

/**
 * The delivery's JSON payload; GitHub sends it either as the body (`application/json`) or as the
 * `payload` field of a form (`application/x-www-form-urlencoded`), depending on the hook's setting.
 */
function parsePayload(body: Buffer, contentType: string | undefined): unknown {
  let json = body.toString('utf8');
  if (contentType?.toLowerCase().startsWith('application/x-www-form-urlencoded')) {
    const field = new URLSearchParams(json).get('payload');
    if (field === null) return undefined;
    json = field;
  }
  try {
    return JSON.parse(json) as unknown;
  } catch {
    return undefined;
  }
}

function pushFrom(payload: unknown, deliveryId: string | null): WebhookPush | undefined {
  if (!isObj(payload)) return undefined;
  const { ref, after, repository } = payload;
  if (typeof ref !== 'string' || typeof after !== 'string') return undefined;
  const fullName = isObj(repository) && typeof repository['full_name'] === 'string' ? repository['full_name'] : null;
  return { ref, after, repository: fullName, deliveryId };
}

function pullRequestFrom(payload: unknown, deliveryId: string | null): WebhookPullRequest | undefined {
  if (!isObj(payload)) return undefined;
  const { action, number, pull_request: pullRequest } = payload;
  if (typeof action !== 'string' || typeof number !== 'number' || !isObj(pullRequest)) return undefined;
  const head = pullRequest['head'];
  if (!isObj(head) || typeof head['sha'] !== 'string') return undefined;
  return { action, number, headSha: head['sha'], deliveryId };
}
