/** The `vmroll run --listen` endpoint over real sockets: probes, GitHub webhook signatures, limits, and no secret in logs. */
import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import http from 'node:http';
import { pino, type Logger } from 'pino';
import {
  WebhookServerError,
  startWebhookServer,
  type WebhookPullRequest,
  type WebhookPush,
  type WebhookServer,
} from '../reconciler/controller/server.ts';

const SECRET = 'wh-secret-5f3a9c1e-do-not-log';
const REQUEST_TIMEOUT_MS = 30_000;

interface Reply {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: string;
}

interface Send {
  method?: string;
  path: string;
  headers?: Record<string, string>;
  body?: string | Buffer;
}

/** One request on a fresh connection; fails the test instead of hanging. */
function send(port: number, { method = 'GET', path, headers = {}, body }: Send): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, method, path, headers, agent: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () =>
        resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks).toString('utf8') }),
      );
      res.on('error', reject);
    });
    req.setTimeout(REQUEST_TIMEOUT_MS, () => req.destroy(new Error(`no answer to ${method} ${path}`)));
    req.on('error', reject);
    req.end(body);
  });
}

/**
 * Starts a body larger than the limit and reports the answer as soon as it arrives, without ever
 * finishing the body: a server that waited for all of it would never answer. With a declared
 * length only 32 KiB are ever sent, so the answer must come from the Content-Length header alone.
 */
function sendOversized(port: number, headers: Record<string, string>, declaredLength: number | null): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const all = { ...headers, ...(declaredLength === null ? {} : { 'content-length': String(declaredLength) }) };
    const req = http.request({ host: '127.0.0.1', port, method: 'POST', path: '/webhook/github', headers: all, agent: false });
    let answered = false;
    req.on('response', (res) => {
      answered = true;
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks).toString('utf8') });
        req.destroy();
      });
      res.on('error', reject);
    });
    // Once the server closes the connection our unfinished upload may fail; only the answer counts.
    req.on('error', (err) => {
      if (!answered) reject(err);
    });
    // Not an idle timeout: this client is never idle while it keeps uploading.
    const deadline = setTimeout(() => req.destroy(new Error('no answer to oversized body')), REQUEST_TIMEOUT_MS);
    req.on('close', () => clearTimeout(deadline));
    const chunk = Buffer.alloc(16 * 1024, 'x');
    let written = 0;
    // With a declared length, send less than the server's limit: only the header can tell it is too large.
    const limit = declaredLength === null ? 64 * 1024 * 1024 : 2 * chunk.length;
    // Keep writing a little at a time (never the declared total) until the answer comes.
    const pump = (): void => {
      if (answered || req.destroyed || written + chunk.length > limit) return;
      written += chunk.length;
      req.write(chunk);
      setTimeout(pump, 5);
    };
    pump();
  });
}

function sign(body: string | Buffer, secret = SECRET): string {
  return `sha256=${createHmac('sha256', secret).update(body).digest('hex')}`;
}

const PUSH = JSON.stringify({
  ref: 'refs/heads/main',
  before: '0'.repeat(40),
  after: 'a1b2c3d4e5f60718293a4b5c6d7e8f9012345678',
  repository: { full_name: 'acme/vms' },
});

function webhookHeaders(event: string, delivery: string, signature: string | null): Record<string, string> {
  return {
    'content-type': 'application/json',
    'x-github-event': event,
    'x-github-delivery': delivery,
    ...(signature === null ? {} : { 'x-hub-signature-256': signature }),
  };
}

/** A logger whose JSON lines land in `lines`. */
function capturingLogger(): { logger: Logger; lines: string[] } {
  const lines: string[] = [];
  const logger = pino({ level: 'trace' }, { write: (line: string) => void lines.push(line) });
  return { logger, lines };
}

function parsed(lines: readonly string[]): Record<string, unknown>[] {
  return lines.map((l) => JSON.parse(l) as Record<string, unknown>);
}

describe('webhook server', function () {
  this.timeout(60_000);

  describe('with a webhook secret', () => {
    let server: WebhookServer;
    let ready = false;
    const pushes: WebhookPush[] = [];
    const pullRequests: WebhookPullRequest[] = [];
    const { logger, lines } = capturingLogger();
    const post = (event: string, delivery: string, body: string, signature: string | null): Promise<Reply> =>
      send(server.port, { method: 'POST', path: '/webhook/github', headers: webhookHeaders(event, delivery, signature), body });
    const webhookLine = (delivery: string): Record<string, unknown> => {
      const found = parsed(lines).filter((l) => l['deliveryId'] === delivery);
      assert.equal(found.length, 1, `exactly one log line for delivery ${delivery}`);
      return found[0] ?? {};
    };

    before(async () => {
      server = await startWebhookServer({
        listen: '127.0.0.1:0',
        webhookSecret: SECRET,
        isReady: () => ready,
        onPush: (p) => pushes.push(p),
        onPullRequest: (pr) => pullRequests.push(pr),
        logger,
        maxBodyBytes: 64 * 1024,
      });
    });
    after(async () => {
      await server?.close();
    });
    beforeEach(() => {
      pushes.length = 0;
      pullRequests.length = 0;
    });

    it('reports the address it bound', () => {
      assert.ok(server.port > 0);
      assert.equal(server.address, `127.0.0.1:${server.port}`);
    });

    it('answers /healthz while alive', async () => {
      const r = await send(server.port, { path: '/healthz' });
      assert.equal(r.status, 200);
      assert.equal(r.body, 'ok');
    });

    it('answers /readyz with 503 until the first sync, then 200', async () => {
      ready = false;
      const notYet = await send(server.port, { path: '/readyz' });
      assert.equal(notYet.status, 503);
      assert.equal(notYet.body, 'not ready');
      ready = true;
      const synced = await send(server.port, { path: '/readyz' });
      assert.equal(synced.status, 200);
      assert.equal(synced.body, 'ready');
    });

    it('accepts a correctly signed push and hands ref, commit, repository and delivery id on', async () => {
      const r = await post('push', 'd-valid', PUSH, sign(PUSH));
      assert.equal(r.status, 202);
      assert.equal(r.body, 'accepted');
      assert.deepEqual(pushes, [
        {
          ref: 'refs/heads/main',
          after: 'a1b2c3d4e5f60718293a4b5c6d7e8f9012345678',
          repository: 'acme/vms',
          deliveryId: 'd-valid',
        },
      ]);
      const line = webhookLine('d-valid');
      assert.equal(line['level'], 30);
      assert.equal(line['event'], 'push');
      assert.equal(line['result'], 'accepted');
    });

    it('passes repository null when the payload has no full_name', async () => {
      const body = JSON.stringify({ ref: 'refs/heads/dev', after: 'f'.repeat(40) });
      const r = await post('push', 'd-norepo', body, sign(body));
      assert.equal(r.status, 202);
      assert.equal(pushes[0]?.repository, null);
    });

    const refused: Array<[string, () => string | null]> = [
      ['signed with another secret', () => sign(PUSH, 'not-the-secret')],
      ['without a signature', () => null],
      ['with a signature over another body', () => sign(PUSH.replace('main', 'evil'))],
      ['with a malformed signature', () => 'sha256=xyz'],
      ['with a truncated signature', () => sign(PUSH).slice(0, 40)],
      ['with only the legacy sha1 scheme', () => `sha1=${createHmac('sha1', SECRET).update(PUSH).digest('hex')}`],
    ];
    for (const [name, signature] of refused) {
      it(`refuses a push ${name} with 401 and triggers nothing`, async () => {
        const delivery = `d-${name.replace(/\W+/g, '-')}`;
        const r = await post('push', delivery, PUSH, signature());
        assert.equal(r.status, 401);
        assert.deepEqual(pushes, []);
        const line = webhookLine(delivery);
        assert.equal(line['level'], 40, 'signature failures are logged at warn');
        assert.equal(line['result'], 'bad-signature');
      });
    }

    it('answers a signed ping with pong', async () => {
      const body = JSON.stringify({ zen: 'Keep it logically awesome.', hook_id: 1 });
      const r = await post('ping', 'd-ping', body, sign(body));
      assert.equal(r.status, 200);
      assert.equal(r.body, 'pong');
      assert.deepEqual(pushes, []);
    });

    it('rejects a signed push whose body is not JSON with 400', async () => {
      const body = '{"ref": "refs/heads/main", ';
      const r = await post('push', 'd-badjson', body, sign(body));
      assert.equal(r.status, 400);
      assert.deepEqual(pushes, []);
    });

    it('rejects a signed push without ref/after with 400', async () => {
      const body = JSON.stringify({ ref: 'refs/heads/main' });
      const r = await post('push', 'd-noafter', body, sign(body));
      assert.equal(r.status, 400);
      assert.deepEqual(pushes, []);
    });

    it('hands a signed pull_request to onPullRequest', async () => {
      const body = JSON.stringify({ action: 'synchronize', number: 7, pull_request: { head: { sha: 'c'.repeat(40) } } });
      const r = await post('pull_request', 'd-pr', body, sign(body));
      assert.equal(r.status, 202);
      assert.deepEqual(pullRequests, [{ action: 'synchronize', number: 7, headSha: 'c'.repeat(40), deliveryId: 'd-pr' }]);
      assert.deepEqual(pushes, []);
    });

    it('acknowledges other signed events as ignored', async () => {
      const body = JSON.stringify({ action: 'opened' });
      const r = await post('issues', 'd-issues', body, sign(body));
      assert.equal(r.status, 202);
      assert.equal(r.body, 'ignored');
      assert.deepEqual(pushes, []);
    });

    it('answers 413 to a declared-too-large body without waiting for the rest', async () => {
      const headers = webhookHeaders('push', 'd-big-declared', sign(PUSH));
      const r = await sendOversized(server.port, headers, 10 * 1024 * 1024);
      assert.equal(r.status, 413);
      assert.deepEqual(pushes, []);
    });

    it('answers 413 to a chunked body once it passes the limit', async () => {
      const headers = webhookHeaders('push', 'd-big-chunked', sign(PUSH));
      const r = await sendOversized(server.port, headers, null);
      assert.equal(r.status, 413);
      assert.deepEqual(pushes, []);
      // The server still works afterwards.
      assert.equal((await send(server.port, { path: '/healthz' })).status, 200);
    });

    it('answers 404 on unknown paths', async () => {
      assert.equal((await send(server.port, { path: '/nope' })).status, 404);
      assert.equal((await send(server.port, { method: 'POST', path: '/webhook/gitlab', body: '{}' })).status, 404);
    });

    it('answers 405 with an Allow header on wrong methods', async () => {
      const get = await send(server.port, { path: '/webhook/github' });
      assert.equal(get.status, 405);
      assert.equal(get.headers['allow'], 'POST');
      const postHealth = await send(server.port, { method: 'POST', path: '/healthz', body: 'x' });
      assert.equal(postHealth.status, 405);
      assert.equal(postHealth.headers['allow'], 'GET, HEAD');
    });

    it('never writes the secret or a signature into the log', () => {
      assert.ok(lines.length > 0);
      const all = lines.join('');
      assert.ok(!all.includes(SECRET), 'secret found in log output');
      assert.ok(!all.includes(sign(PUSH).slice('sha256='.length)), 'signature found in log output');
      assert.ok(!all.includes(sign(PUSH, 'not-the-secret').slice('sha256='.length)), 'signature found in log output');
    });
  });

  describe('without a webhook secret', () => {
    let server: WebhookServer;
    const pushes: WebhookPush[] = [];
    const { logger, lines } = capturingLogger();

    before(async () => {
      server = await startWebhookServer({ listen: '127.0.0.1:0', isReady: () => true, onPush: (p) => pushes.push(p), logger });
    });
    after(async () => {
      await server?.close();
    });

    it('refuses every delivery, signed or not, with 401 saying the secret is not configured', async () => {
      for (const signature of [sign(PUSH), null]) {
        const r = await send(server.port, {
          method: 'POST',
          path: '/webhook/github',
          headers: webhookHeaders('push', 'd-nosecret', signature),
          body: PUSH,
        });
        assert.equal(r.status, 401);
        assert.match(r.body, /webhook secret is not configured/);
      }
      assert.deepEqual(pushes, []);
      const refusals = parsed(lines).filter((l) => l['deliveryId'] === 'd-nosecret');
      assert.equal(refusals.length, 2);
      assert.ok(refusals.every((l) => l['level'] === 40 && l['result'] === 'no-secret'));
    });

    it('still answers the probes', async () => {
      assert.equal((await send(server.port, { path: '/healthz' })).status, 200);
      assert.equal((await send(server.port, { path: '/readyz' })).status, 200);
    });

    it('treats an empty secret as no secret', async () => {
      const other = await startWebhookServer({
        listen: '127.0.0.1:0',
        webhookSecret: '',
        isReady: () => true,
        onPush: (p) => pushes.push(p),
        logger,
      });
      try {
        const r = await send(other.port, {
          method: 'POST',
          path: '/webhook/github',
          headers: webhookHeaders('push', 'd-empty', sign(PUSH, '')),
          body: PUSH,
        });
        assert.equal(r.status, 401);
        assert.deepEqual(pushes, []);
      } finally {
        await other.close();
      }
    });
  });

  describe('listen addresses', () => {
    // The forms themselves are parsed by reconciler/http.ts (test/http.test.ts); the server turns a refusal into its own error.
    for (const listen of ['::1:8080', '127.0.0.1:70000']) {
      it(`refuses to start on ${JSON.stringify(listen)} with InvalidListenAddress`, async () => {
        const { logger } = capturingLogger();
        await assert.rejects(
          startWebhookServer({ listen, isReady: () => true, onPush: () => {}, logger }),
          (e: unknown) => e instanceof WebhookServerError && e.code === 'InvalidListenAddress' && e.data.listen === listen && e.message.startsWith(`invalid listen address "${listen}": `),
        );
      });
    }

    it('binds [::1]:0 and reports the address in brackets', async function () {
      const { logger } = capturingLogger();
      let v6: WebhookServer;
      try {
        v6 = await startWebhookServer({ listen: '[::1]:0', isReady: () => true, onPush: () => {}, logger });
      } catch (e) {
        // Hosts without IPv6 loopback cannot run this one.
        if (e instanceof WebhookServerError && e.code === 'ListenFailed') {
          console.log('    skipped: this host has no IPv6 loopback to bind [::1]');
          this.skip();
        }
        throw e;
      }
      try {
        assert.equal(v6.address, `[::1]:${v6.port}`);
      } finally {
        await v6.close();
      }
    });

    it('rejects with ListenFailed when the port is taken', async () => {
      const { logger } = capturingLogger();
      const first = await startWebhookServer({ listen: '127.0.0.1:0', isReady: () => true, onPush: () => {}, logger });
      try {
        await assert.rejects(
          startWebhookServer({ listen: `127.0.0.1:${first.port}`, isReady: () => true, onPush: () => {}, logger }),
          (e: unknown) => e instanceof WebhookServerError && e.code === 'ListenFailed',
        );
      } finally {
        await first.close();
      }
    });
  });
});
