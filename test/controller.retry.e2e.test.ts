/**
 * The repository chain retries by error kind, against the real Git server (git http-backend):
 * an outage of the Git host is transient, retried with a backoff well before the interval and
 * synced as soon as the host is back; a missing branch is stalled: the interval is kept, a
 * person is asked once, and no fast retries hit the server.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { type RunHandle, makeLogger, startRun } from '../reconciler/commands/run.ts';
import type { RunConfig } from '../reconciler/config.ts';
import { SYNC_RETRY } from '../reconciler/controller/backoff.ts';
import { ROOT } from './helpers/cases.ts';
import { type GitServer, type WorkingClone, startGitServer } from './helpers/gitServer.ts';
import { WAIT_MS, until } from './helpers/waitFor.ts';

const EXAMPLE = path.join(ROOT, 'fixtures', 'example-repo', 'vms');
const KUBEVIRT = path.join(ROOT, 'fixtures', 'example-cluster', 'kubevirt.yaml');
const HOUR = 3_600_000;

type LogLine = Record<string, unknown>;

describe('the repository chain retries by error kind (real Git server)', function () {
  this.timeout(180_000);
  let git: GitServer;
  let work: WorkingClone;
  let repo: string;
  let dir: string;

  before(async () => {
    git = await startGitServer();
    dir = mkdtempSync(path.join(tmpdir(), 'vmroll-retry-'));
    repo = await git.createBareRepo('fleet');
    work = await git.createWorkingClone('fleet');
    for (const f of ['web.yaml', 'db.yaml']) await work.write(`vms/${f}`, readFileSync(path.join(EXAMPLE, f), 'utf8'));
    await work.commit('two VMs');
    await work.push();
  });
  after(async () => {
    await git?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  /** A `vmroll run` with a one-hour interval on the embedded simulator, its log kept as parsed lines. */
  async function start(ref: string, name: string): Promise<{ handle: RunHandle; log: LogLine[]; said: (msg: string | RegExp) => LogLine[] }> {
    const log: LogLine[] = [];
    const stream = { write: (l: string) => (log.push(JSON.parse(l) as LogLine), true) } as unknown as NodeJS.WritableStream;
    const config: RunConfig = {
      repo, ref, path: 'vms', intervalMs: HOUR, once: false, cluster: 'sim', kubeconfig: undefined, simState: undefined, simKubevirt: KUBEVIRT,
      example: false, output: 'json', prune: false, listen: undefined, cacheDir: path.join(dir, `cache-${name}`), logLevel: 'debug', gitToken: undefined, webhookSecret: undefined, gitHost: undefined,
    };
    const handle = await startRun(config, { out: () => {}, err: () => {} }, makeLogger('debug', [], stream));
    const said = (msg: string | RegExp): LogLine[] => log.filter((l) => (typeof msg === 'string' ? l['msg'] === msg : msg.test(String(l['msg']))));
    return { handle, log, said };
  }

  const dueIn = (handle: RunHandle): number => {
    const at = handle.repositories[0]?.nextSyncAt() ?? null;
    assert.ok(at !== null, 'a timer is armed');
    return at - Date.now();
  };

  it('a Git host outage is retried with a growing backoff, long before the 1h interval, and the sync succeeds once the host is back', async () => {
    const { handle, said } = await start('main', 'outage');
    try {
      assert.notEqual(await handle.trigger('first'), null, 'the first sync runs');
      handle.start();
      assert.ok(dueIn(handle) > HOUR * 0.85, 'after a success the next sync is an interval away');

      await git.suspend();
      assert.equal(await handle.trigger('outage'), null, 'the fetch fails while the Git server is down');
      assert.equal(await handle.metrics.syncFailureCount('default', 'transient'), 1, said('sync failed').map((l) => l['err']).join('\n'));
      const first = said('sync failed')[0];
      assert.equal(first?.['kind'], 'transient');
      assert.match(String(first?.['err']), /ECONNREFUSED|connect/i);
      const firstDelay = Number(first?.['nextSyncInMs']);
      assert.ok(firstDelay >= SYNC_RETRY.transientFirstMs * 0.8 - 1 && firstDelay <= SYNC_RETRY.transientFirstMs * 1.2 + 1, `first retry in ${firstDelay} ms`);
      assert.ok(dueIn(handle) <= SYNC_RETRY.transientFirstMs * 1.2, 'the timer is armed for the retry, not the interval');

      // The retry comes from the timer, not from the test: wait for it (bounded) on the metric.
      await until('the timer to retry the failed sync', async () => (await handle.metrics.syncFailureCount('default')) >= 2, {
        detail: () => JSON.stringify(said(/sync/)),
      });
      const second = said('sync failed')[1];
      assert.equal(second?.['attempt'], 2);
      const secondDelay = Number(second?.['nextSyncInMs']);
      assert.ok(secondDelay >= SYNC_RETRY.transientFirstMs * 2 * 0.8 - 1 && secondDelay <= SYNC_RETRY.transientFirstMs * 2 * 1.2 + 1, `the backoff doubles: ${secondDelay} ms`);
      assert.equal(said(/^needs a person/).length, 0, 'an outage does not call for a person');

      await git.resume();
      await until('a retry to sync once the Git server is back', () => said('sync succeeded again').length > 0, { timeoutMs: WAIT_MS + SYNC_RETRY.transientFirstMs * 4, detail: () => JSON.stringify(said(/sync/)) });
      assert.equal(handle.repositories[0]?.failure(), null);
      assert.ok(dueIn(handle) > HOUR * 0.85, 'a success resets the backoff: the next sync is an interval away');
      assert.equal(said('reconciled').length >= 2, true);
    } finally {
      await git.resume().catch(() => undefined);
      await handle.stop();
    }
  });

  it('a missing branch is stalled: a person is asked once, the interval is kept, and no fast retry reaches the Git server', async () => {
    const { handle, said } = await start('no-such-branch', 'stalled');
    try {
      handle.start();
      assert.equal(await handle.trigger('first'), null);
      assert.equal(await handle.metrics.syncFailureCount('default', 'stalled'), 1);
      const asked = said(/^needs a person: /);
      assert.equal(asked.length, 1);
      assert.match(String(asked[0]?.['msg']), /no-such-branch/);
      assert.ok(String(asked[0]?.['msg']).length < 200, 'one line');
      assert.ok(dueIn(handle) > HOUR * 0.85, 'a stalled failure keeps the interval');

      // The absence of a retry is no event to wait for, so it is checked over a bounded quiet
      // window anchored at the failure: longer than the slowest fast retry the chain could pick
      // (a waiting re-check, 10 s; a first transient retry is at most 6 s), so a wrongly chosen
      // fast retry falls inside it. A starved machine can only make such a retry later, which
      // the armed-timer check above (an hour away) catches without any window.
      const requestsAtFailure = git.requestCount;
      const quietMs = SYNC_RETRY.waitingMaxMs + 2_000;
      const anchored = performance.now();
      await new Promise((r) => setTimeout(r, quietMs));
      // Timers run on the event loop's millisecond clock: allow its rounding, nothing more.
      assert.ok(performance.now() - anchored >= quietMs - 2);
      assert.equal(await handle.metrics.syncFailureCount('default'), 1, 'no retry within the window');
      assert.equal(git.requestCount, requestsAtFailure, 'no request reached the Git server within the window');
      assert.equal(said('sync starting').length, 1, 'one attempt in all');

      // A sync triggered by hand fails the same way: counted and logged, but the person is not asked again.
      assert.equal(await handle.trigger('again'), null);
      assert.equal(await handle.metrics.syncFailureCount('default', 'stalled'), 2);
      assert.equal(said('sync failed').length, 2);
      assert.equal(said(/^needs a person: /).length, 1, 'said once');
      assert.ok(dueIn(handle) > HOUR * 0.85);
    } finally {
      await handle.stop();
    }
  });
});
