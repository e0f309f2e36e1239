/**
 * errorKind maps every adapter's error to what it asks for (real failures over real sockets
 * where one can be made on 127.0.0.1, each adapter's codes as a table); errorCause is one line
 * without secrets; nextSyncDelay is the chain's retry rule.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { ClusterError } from '../reconciler/cluster/backend.ts';
import { KubeCluster } from '../reconciler/cluster/kube.ts';
import { simKubeconfig } from '../reconciler/commands/sim.ts';
import { SYNC_RETRY, nextSyncDelay } from '../reconciler/controller/backoff.ts';
import { failureDescription } from '../reconciler/controller/repository.ts';
import { CAUSE_MAX_CHARS, ErrorKind, errorCause, errorKind } from '../reconciler/errors.ts';
import { SUMMARY_MAX_CHARS } from '../reconciler/plan/summary.ts';
import { GitHostError } from '../reconciler/report/reporter.ts';
import { SourceError, SourceErrorCode } from '../reconciler/source/errors.ts';
import { GitSource } from '../reconciler/source/gitSource.ts';
import { startGitServer } from './helpers/gitServer.ts';

/** A port nothing listens on: bound once, then closed. */
async function closedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

async function rejection(p: Promise<unknown>): Promise<unknown> {
  try {
    await p;
  } catch (e) {
    return e;
  }
  return assert.fail('expected a rejection');
}

describe('errorKind and errorCause', function () {
  this.timeout(60_000);
  let dir: string;
  before(() => {
    dir = mkdtempSync(path.join(tmpdir(), 'vmroll-errors-'));
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('a Git host that refuses connections is transient; a refused token is stalled, and neither cause carries the token', async () => {
    const port = await closedPort();
    const down = await rejection(new GitSource({ repo: `http://127.0.0.1:${port}/fleet.git`, cacheDir: path.join(dir, 'down') }).sync({ ref: 'main' }));
    assert.ok(down instanceof SourceError);
    assert.equal(errorKind(down), ErrorKind.transient);
    assert.match(errorCause(down), /ECONNREFUSED|connect/i);

    const token = 'glpat-errorsTestTokenNeverShown0001';
    const git = await startGitServer({ token });
    try {
      const url = await git.createBareRepo('fleet');
      const refused = await rejection(new GitSource({ repo: url, cacheDir: path.join(dir, 'auth'), token: 'wrong-token-also-secret' }).sync({ ref: 'main' }));
      assert.ok(refused instanceof SourceError && refused.code === SourceErrorCode.AuthFailed);
      assert.equal(errorKind(refused), ErrorKind.stalled);
      const missing = await rejection(new GitSource({ repo: git.repoUrl('nope'), cacheDir: path.join(dir, 'nope'), token }).sync({ ref: 'main' }));
      assert.equal(errorKind(missing), ErrorKind.stalled, String(missing));
      for (const cause of [errorCause(refused, ['wrong-token-also-secret']), errorCause(missing, [token])]) {
        assert.ok(!cause.includes(token) && !cause.includes('wrong-token-also-secret'), cause);
        assert.ok(!cause.includes('\n'));
      }
    } finally {
      await git.stop();
    }
  });

  it('an API server that refuses connections is transient, through the kube backend', async () => {
    const port = await closedPort();
    const file = path.join(dir, 'kubeconfig');
    writeFileSync(file, simKubeconfig(`http://127.0.0.1:${port}`));
    const kube = new KubeCluster({ kubeconfig: { file }, retry: { attempts: 1, baseMs: 1, capMs: 1 } });
    try {
      const e = await rejection(kube.listVirtualMachines());
      assert.ok(e instanceof ClusterError, String(e));
      assert.equal(errorKind(e), ErrorKind.transient);
      assert.match(errorCause(e), /ECONNREFUSED|connect|fetch failed/i);
    } finally {
      kube.close();
    }
  });

  it('the cluster\'s own retry decision, read as kinds', () => {
    const table: Array<[ClusterError, ErrorKind]> = [
      [new ClusterError('NotFound', 'virtualmachines.kubevirt.io not found'), 'stalled'],
      [new ClusterError('Invalid', 'spec.running: invalid'), 'stalled'],
      [new ClusterError('Forbidden', 'virtualmachines is forbidden: User "system:serviceaccount:x" cannot list'), 'stalled'],
      [new ClusterError('Conflict', 'the object has been modified', { reason: 'Conflict' }), 'waiting'],
      [new ClusterError('Conflict', 'already exists', { reason: 'AlreadyExists' }), 'stalled'],
      [new ClusterError('Unavailable', 'HTTP 503', { status: 503 }), 'transient'],
    ];
    for (const [e, kind] of table) assert.equal(errorKind(e), kind, `${e.code} ${e.message}`);
  });

  it('Git host errors by code, bare network errors, and errors no adapter typed', async () => {
    const table: Array<[GitHostError, ErrorKind]> = [
      [new GitHostError('Unauthorized', 'HTTP 401'), 'stalled'],
      [new GitHostError('NotFound', 'HTTP 404'), 'stalled'],
      [new GitHostError('Invalid', 'HTTP 422'), 'stalled'],
      [new GitHostError('Unavailable', 'HTTP 502'), 'transient'],
      [new GitHostError('RateLimited', 'HTTP 429', 1000), 'transient'],
    ];
    for (const [e, kind] of table) assert.equal(errorKind(e), kind, e.code);

    // A real fetch to a closed port: TypeError('fetch failed') whose cause is ECONNREFUSED.
    const port = await closedPort();
    const refused = await rejection(fetch(`http://127.0.0.1:${port}/`));
    assert.equal(errorKind(refused), ErrorKind.transient);
    assert.match(errorCause(refused), /^fetch failed: .*ECONNREFUSED/);
    const timedOut = await rejection(fetch(`http://127.0.0.1:${port}/`, { signal: AbortSignal.timeout(0) }));
    assert.equal(errorKind(timedOut), ErrorKind.transient, String(timedOut));

    // A bug is not fixed by retrying sooner.
    assert.equal(errorKind(new TypeError("Cannot read properties of undefined (reading 'spec')")), ErrorKind.stalled);
    assert.equal(errorKind('a string'), ErrorKind.stalled);
  });

  it('errorCause is one line, without credentials, within its bound', () => {
    const secret = 's3cr3t-token-value';
    const e = new Error(`clone https://bot:${secret}@git.example.com/acme/fleet.git failed\n    at stack line\n    at another`);
    const cause = errorCause(e, [secret]);
    assert.equal(cause, 'clone https://git.example.com/acme/fleet.git failed');
    assert.equal(errorCause(new Error('request with Authorization: Bearer abcdefghijklmnop1234 refused')), 'request with Authorization: Bearer *** refused');
    assert.equal(errorCause(new Error('GET /x?access_token=abc123&y=1 failed')), 'GET /x?access_token=***&y=1 failed');
    const long = errorCause(new Error('x'.repeat(500)));
    assert.equal(long.length, CAUSE_MAX_CHARS);
    assert.ok(long.endsWith('…'));
    assert.equal(errorCause(new Error('')), 'Error');

    const description = failureDescription(ErrorKind.stalled, new Error(`a very long cause ${'y'.repeat(300)}`), []);
    assert.ok(description.length <= SUMMARY_MAX_CHARS, `${description.length}`);
    assert.match(description, /^sync failed \(needs a person\): a very long cause y+…$/);
  });
});

describe('nextSyncDelay: the repository chain\'s retry rule', () => {
  const hour = 3_600_000;
  const at = (r: number) => () => r;

  it('success and stalled keep the interval (with its ±10%)', () => {
    for (const kind of [null, ErrorKind.stalled] as const) {
      assert.equal(nextSyncDelay({ kind, failures: kind === null ? 0 : 3, intervalMs: hour, random: at(0.5) }), hour);
      assert.equal(nextSyncDelay({ kind, failures: 1, intervalMs: hour, random: at(0) }), hour * 0.9);
    }
  });

  it('transient: 5 s doubling per failure in a row, ±20%, capped at the interval', () => {
    const mid = (failures: number, intervalMs = hour): number => nextSyncDelay({ kind: ErrorKind.transient, failures, intervalMs, random: at(0.5) });
    assert.deepEqual([1, 2, 3, 4].map((n) => mid(n)), [5_000, 10_000, 20_000, 40_000]);
    assert.equal(mid(40), hour, 'capped at the interval');
    assert.equal(mid(3, 15_000), 15_000, 'a short interval caps early');
    assert.equal(nextSyncDelay({ kind: ErrorKind.transient, failures: 1, intervalMs: hour, random: at(0) }), SYNC_RETRY.transientFirstMs * 0.8);
    assert.ok(nextSyncDelay({ kind: ErrorKind.transient, failures: 1, intervalMs: hour, random: at(0.999999) }) < SYNC_RETRY.transientFirstMs * 1.2);
  });

  it('waiting: re-checked within 5–10 s, never after the interval', () => {
    assert.equal(nextSyncDelay({ kind: ErrorKind.waiting, failures: 7, intervalMs: hour, random: at(0) }), 5_000);
    assert.ok(nextSyncDelay({ kind: ErrorKind.waiting, failures: 1, intervalMs: hour, random: at(0.999999) }) < 10_000);
    assert.equal(nextSyncDelay({ kind: ErrorKind.waiting, failures: 1, intervalMs: 4_000, random: at(0.5) }), 4_000);
  });
});
