/** reconciler/http.ts: the listen-address forms both servers accept, and the body reader both use, over real sockets. */
import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { BodyRefusal, ListenAddressError, parseListenAddress, readBody } from '../reconciler/http.ts';
import { startApiServer } from '../reconciler/cluster/sim/apiServer.ts';
import { SimCluster } from '../reconciler/cluster/sim/simCluster.ts';
import { WAIT_MS } from './helpers/waitFor.ts';

/** Resolves with the value, or rejects naming `what` once WAIT_MS passed. */
function within<T>(what: string, p: Promise<T>): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${WAIT_MS} ms waiting for ${what}`)), WAIT_MS);
  });
  return Promise.race([p, late]).finally(() => clearTimeout(timer));
}

describe('http: listen addresses', () => {
  const good: Array<[string, string | undefined, number]> = [
    ['127.0.0.1:8080', '127.0.0.1', 8080],
    [':8080', undefined, 8080],
    ['8080', undefined, 8080],
    ['[::1]:0', '::1', 0],
    ['localhost:9000', 'localhost', 9000],
    [' 0.0.0.0:65535 ', '0.0.0.0', 65535],
  ];
  for (const [listen, host, port] of good) {
    it(`parses ${JSON.stringify(listen)}`, () => {
      assert.deepEqual(parseListenAddress(listen), { host, port });
    });
  }
  const bad: Array<[string, RegExp]> = [
    ['', /expected HOST:PORT, :PORT, PORT or \[IPV6\]:PORT$/],
    ['abc', /expected HOST:PORT/],
    ['127.0.0.1:', /expected HOST:PORT/],
    ['127.0.0.1:70000', /port 70000 is out of range 0-65535$/],
    ['::1:8080', /put IPv6 addresses in brackets, e\.g\. \[::1\]:8080$/],
    ['[nothost]:80', /"nothost" in brackets is not an IPv6 address$/],
    ['[]:80', /"" in brackets is not an IPv6 address$/],
    ['[::1]:abc', /expected HOST:PORT/],
    ['http://x:80', /give HOST:PORT without a scheme, e\.g\. 127\.0\.0\.1:8080$/],
    ['a_b:80', /"a_b" is not a host name or IPv4 address$/],
  ];
  for (const [listen, why] of bad) {
    it(`refuses ${JSON.stringify(listen)}, saying why`, () => {
      assert.throws(
        () => parseListenAddress(listen),
        (e: unknown) => e instanceof ListenAddressError && e.code === 'InvalidListenAddress' && e.listen === listen && e.message.startsWith(`invalid listen address "${listen}": `) && why.test(e.message),
      );
    });
  }

  it("the simulator's API server answers a body over its limit with Kubernetes' 413 status, and takes one within it", async () => {
    const api = await startApiServer({ cluster: new SimCluster(), listen: '127.0.0.1:0', maxBodyBytes: 200 });
    try {
      const create = async (name: string, padding: number): Promise<{ status: number; body: Record<string, unknown> }> => {
        const body = JSON.stringify({ apiVersion: 'v1', kind: 'Namespace', metadata: { name, annotations: { pad: 'x'.repeat(padding) } } });
        const r = await fetch(`${api.url}/api/v1/namespaces`, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body });
        return { status: r.status, body: (await r.json()) as Record<string, unknown> };
      };
      const big = await within('the 413', create('too-big', 300));
      assert.equal(big.status, 413);
      assert.equal(big.body['reason'], 'RequestEntityTooLarge');
      assert.equal(big.body['message'], 'the request body exceeds the limit of 200 bytes');
      const small = await within('the 201', create('small', 10));
      assert.equal(small.status, 201, JSON.stringify(small.body));
    } finally {
      await api.close();
    }
  });

  it("the simulator's API server refuses the same forms before binding", async () => {
    await assert.rejects(startApiServer({ cluster: new SimCluster(), listen: '::1:8080' }), (e: unknown) => e instanceof ListenAddressError && /in brackets/.test(e.message));
  });
});

describe('http: readBody', () => {
  const LIMIT = 1024;
  let server: http.Server;
  let port: number;
  /** What the server's readBody gave for each request, in order. */
  let results: Array<Buffer | BodyRefusal>;
  let waiters: Array<(r: Buffer | BodyRefusal) => void>;

  before(async () => {
    server = http.createServer((req, res) => {
      void readBody(req, LIMIT).then((body) => {
        results.push(body);
        waiters.shift()?.(body);
        if (body === BodyRefusal.aborted) return;
        const text = body === BodyRefusal.tooLarge ? 'too large' : `${body.length} bytes`;
        res.writeHead(body === BodyRefusal.tooLarge ? 413 : 200, { 'Content-Type': 'text/plain', Connection: 'close' });
        res.end(text);
      });
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    port = (server.address() as AddressInfo).port;
  });
  beforeEach(() => {
    results = [];
    waiters = [];
  });
  after(async () => {
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
  });

  /** The next body the server reads. */
  const nextBody = (): Promise<Buffer | BodyRefusal> => new Promise((resolve) => waiters.push(resolve));

  /** Sends `chunks` as a chunked POST; resolves with the status and text (or the client error when the server hung up). */
  function post(chunks: Buffer[]): Promise<{ status: number; text: string } | Error> {
    return new Promise((resolve) => {
      const req = http.request({ host: '127.0.0.1', port, method: 'POST', path: '/', agent: false }, (res) => {
        const parts: Buffer[] = [];
        res.on('data', (c: Buffer) => parts.push(c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, text: Buffer.concat(parts).toString('utf8') }));
      });
      req.on('error', resolve);
      for (const c of chunks) req.write(c);
      req.end();
    });
  }

  it('gives the whole body, byte for byte, when it fits the limit', async () => {
    const body = Buffer.from(Array.from({ length: LIMIT }, (_, i) => i % 251));
    const read = nextBody();
    const reply = await within('the reply', post([body.subarray(0, 300), body.subarray(300)]));
    const got = await within('the body', read);
    assert.ok(Buffer.isBuffer(got), `read ${String(got)}`);
    assert.ok(got.equals(body));
    assert.deepEqual(reply, { status: 200, text: `${LIMIT} bytes` });
  });

  it('gives an empty buffer for a request without a body', async () => {
    const read = nextBody();
    await within('the reply', post([]));
    const got = await within('the body', read);
    assert.ok(Buffer.isBuffer(got) && got.length === 0);
  });

  it('refuses a body one byte over the limit as too-large', async () => {
    const read = nextBody();
    const reply = await within('the reply', post([Buffer.alloc(LIMIT), Buffer.alloc(1)]));
    assert.equal(await within('the body', read), BodyRefusal.tooLarge);
    if (!(reply instanceof Error)) assert.deepEqual(reply, { status: 413, text: 'too large' });
  });

  it('gives aborted when the client goes away before the body ends', async () => {
    const read = nextBody();
    // Hang up only once the server's handler runs, so the reader is there to see it.
    const seen = new Promise<void>((resolve) => server.once('request', () => resolve()));
    const req = http.request({ host: '127.0.0.1', port, method: 'POST', path: '/', agent: false, headers: { 'Content-Length': '100' } });
    req.on('error', () => {});
    req.write(Buffer.alloc(10));
    await within('the server to see the request', seen);
    req.destroy();
    assert.equal(await within('the body', read), BodyRefusal.aborted);
    assert.deepEqual(results, [BodyRefusal.aborted]);
  });
});
