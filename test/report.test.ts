// Git host reporting over real sockets: the GitHub reporter against an emulator that validates every
// request and response against GitHub's OpenAPI description, the Gitea reporter against a Gitea
// emulator, and the report queue's retries, rate-limit waits and idempotence.
import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { inspect } from 'node:util';
import { pino, type Logger } from 'pino';
import { GiteaReporter } from '../reconciler/report/gitea.ts';
import { GitHubReporter, MAX_STATUS_DESCRIPTION } from '../reconciler/report/github.ts';
import { ReportQueue, type Sleep } from '../reconciler/report/queue.ts';
import {
  GitHostError,
  PLAN_MARKER,
  StatusContext,
  StatusState,
  gitHostErrorFrom,
  type CommitStatus,
} from '../reconciler/report/reporter.ts';
import { startGiteaEmulator, type GiteaEmulator } from './helpers/giteaEmulator.ts';
import { startGitHubEmulator, type GitHubEmulator } from './helpers/githubEmulator.ts';
import { WAIT_MS, until } from './helpers/waitFor.ts';

const TOKEN = 'ghp_vmrollTestToken0123456789abcdefABCDEF';
/** 2026-01-01T00:00:00Z: a whole second, so rate-limit arithmetic in tests is exact. */
const START = Date.UTC(2026, 0, 1);

/** A clock shared by the emulators and the code under test; only test sleeps move it. */
const clock = { now: START };
const now = (): number => clock.now;

function sha(n: number): string {
  return n.toString(16).padStart(40, 'a');
}

/** A pino logger whose JSON lines end up in `lines`, every level included. */
function captureLogger(): { logger: Logger; lines: string[] } {
  const lines: string[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _encoding, done) {
      lines.push(...chunk.toString('utf8').split('\n').filter((l) => l.length > 0));
      done();
    },
  });
  return { logger: pino({ level: 'trace' }, stream), lines };
}

/** A sleep that returns at once, after moving the shared clock; records what was asked. */
function instantSleep(): { sleep: Sleep; waits: number[] } {
  const waits: number[] = [];
  return {
    waits,
    sleep: async (ms) => {
      waits.push(ms);
      clock.now += ms;
      await new Promise((resolve) => setImmediate(resolve));
    },
  };
}

/** A sleep that holds until the test releases it, to act while the queue waits. */
function gatedSleep(): { sleep: Sleep; waits: number[]; sleeping: () => Promise<void>; release: () => void } {
  const waits: number[] = [];
  let entered: (() => void) | undefined;
  let leave: (() => void) | undefined;
  let enteredPromise = new Promise<void>((resolve) => (entered = resolve));
  return {
    waits,
    sleep: (ms) =>
      new Promise<void>((resolve) => {
        waits.push(ms);
        clock.now += ms;
        leave = resolve;
        entered?.();
      }),
    sleeping: () => enteredPromise,
    release: () => {
      enteredPromise = new Promise<void>((resolve) => (entered = resolve));
      leave?.();
    },
  };
}

function status(overrides: Partial<CommitStatus> = {}): CommitStatus {
  return { sha: sha(1), context: StatusContext.sync, state: StatusState.success, description: '3 in sync', ...overrides };
}

async function rejection(promise: Promise<unknown>): Promise<GitHostError> {
  try {
    await promise;
  } catch (error) {
    assert.ok(error instanceof GitHostError, `expected a GitHostError, got ${inspect(error)}`);
    return error;
  }
  assert.fail('expected a rejection');
}

describe('Git host reporting', function () {
  this.timeout(60_000);
  let github: GitHubEmulator;
  let gitea: GiteaEmulator;
  let repoCounter = 0;
  let repo: string;

  before(async () => {
    github = await startGitHubEmulator({ token: TOKEN, now });
    gitea = await startGiteaEmulator({ token: TOKEN, now });
  });
  after(async () => {
    await github?.stop();
    await gitea?.stop();
  });
  beforeEach(() => {
    clock.now = START;
    repo = `acme/vms-${++repoCounter}`;
    github.addRepo(repo);
    gitea.addRepo(repo);
    github.failNext(0);
    github.clearRateLimit();
    gitea.failNext(0);
  });
  afterEach(() => {
    const githubViolations = github.violations.splice(0);
    const giteaViolations = gitea.violations.splice(0);
    assert.deepEqual(githubViolations, [], 'GitHub emulator: requests or responses outside GitHub\'s description');
    assert.deepEqual(giteaViolations, [], 'Gitea emulator: requests Gitea would not accept');
  });

  function reporter(options: { token?: string; apiUrl?: string; logger?: Logger; requestTimeoutMs?: number } = {}): GitHubReporter {
    return new GitHubReporter({ repo, token: options.token ?? TOKEN, apiUrl: options.apiUrl ?? github.baseUrl, now, ...(options.logger && { logger: options.logger }), ...(options.requestTimeoutMs && { requestTimeoutMs: options.requestTimeoutMs }) });
  }

  function requestsSince(start: number): Array<{ method: string; path: string; status: number }> {
    return github.requests.slice(start).map((r) => ({ method: r.method, path: r.url.split('?')[0] ?? '', status: r.status }));
  }

  describe('GitHubReporter', () => {
    it('posts a commit status with GitHub\'s body, cutting the description to 140 characters', async () => {
      const start = github.requests.length;
      const long = `${'x'.repeat(150)} tail`;
      await reporter().postStatus(status({ state: StatusState.pending, description: long, targetUrl: 'https://vmroll.example/runs/1' }));
      await reporter().postStatus(status({ context: StatusContext.plan, description: 'no target' }));
      const sent = github.requests.slice(start).map((r) => JSON.parse(r.body ?? '{}') as Record<string, unknown>);
      assert.deepEqual(sent[0], { state: 'pending', context: 'vmroll/sync', description: `${'x'.repeat(MAX_STATUS_DESCRIPTION - 1)}…`, target_url: 'https://vmroll.example/runs/1' });
      assert.deepEqual(sent[1], { state: 'success', context: 'vmroll/plan', description: 'no target' });
      assert.deepEqual(requestsSince(start), [
        { method: 'POST', path: `/repos/${repo}/statuses/${sha(1)}`, status: 201 },
        { method: 'POST', path: `/repos/${repo}/statuses/${sha(1)}`, status: 201 },
      ]);
      const stored = github.statuses(sha(1), repo);
      assert.deepEqual(stored.map((s) => [s.context, s.state, s.targetUrl]), [
        ['vmroll/sync', 'pending', 'https://vmroll.example/runs/1'],
        ['vmroll/plan', 'success', null],
      ]);
      assert.equal([...(stored[0]?.description ?? '')].length, 140);
    });

    it('lists open pull requests across pages', async () => {
      for (let n = 1; n <= 130; n++) {
        github.addPullRequest({ repo, number: n, title: `PR ${n}`, headRef: `feature-${n}`, headSha: sha(1000 + n), baseSha: sha(1), state: n % 10 === 0 ? 'closed' : 'open' });
      }
      const start = github.requests.length;
      const pulls = await reporter().listOpenPullRequests();
      assert.equal(pulls.length, 117);
      assert.deepEqual(pulls.map((p) => p.number).sort((a, b) => a - b), Array.from({ length: 130 }, (_, i) => i + 1).filter((n) => n % 10 !== 0));
      assert.deepEqual(pulls.find((p) => p.number === 7), { number: 7, headSha: sha(1007), headRef: 'feature-7', baseRef: 'main', baseSha: sha(1), title: 'PR 7' });
      assert.deepEqual(requestsSince(start).map((r) => r.status), [200, 200], 'two pages of 100');
      assert.match(github.requests.at(-1)?.url ?? '', /[?&]page=2\b/);
      const seen = reporter();
      await seen.listOpenPullRequests();
      assert.equal(seen.rateLimit()?.limit, 5000);
      assert.ok((seen.rateLimit()?.remaining ?? 5000) < 5000);
    });

    it('lists pull requests merged since a time, newest merge first, skipping unmerged ones', async () => {
      const at = (minutes: number): string => new Date(START + minutes * 60_000).toISOString().replace(/\.\d{3}Z$/, 'Z');
      github.addPullRequest({ repo, number: 1, headRef: 'old', headSha: sha(11), baseSha: sha(1), state: 'closed', mergedAt: at(-120), mergeCommitSha: sha(21), updatedAt: at(-120) });
      github.addPullRequest({ repo, number: 2, headRef: 'a', headSha: sha(12), baseSha: sha(1), state: 'closed', mergedAt: at(-10), mergeCommitSha: sha(22), updatedAt: at(-10) });
      github.addPullRequest({ repo, number: 3, headRef: 'b', headSha: sha(13), baseSha: sha(1), state: 'closed', updatedAt: at(-5) });
      github.addPullRequest({ repo, number: 4, headRef: 'c', headSha: sha(14), baseSha: sha(1), state: 'closed', mergedAt: at(-2), mergeCommitSha: sha(24), updatedAt: at(-1) });
      github.addPullRequest({ repo, number: 5, headRef: 'd', headSha: sha(15), baseSha: sha(1) });
      const merged = await reporter().listRecentlyMergedPullRequests(new Date(START - 60 * 60_000));
      assert.deepEqual(merged.map((p) => [p.number, p.mergeCommitSha, p.mergedAt]), [
        [4, sha(24), at(-2)],
        [2, sha(22), at(-10)],
      ]);
    });

    it('creates one plan comment, leaves it alone when unchanged, edits it in place when changed', async () => {
      const pr = github.addPullRequest({ repo, headRef: 'f', headSha: sha(2), baseSha: sha(1) });
      const other = github.addComment(pr, 'Looks good to me', { login: 'alice', repo });
      const gh = reporter();
      const start = github.requests.length;
      const first = await gh.upsertPlanComment(pr, `${PLAN_MARKER}\nplan v1`);
      assert.equal(first.created, true);
      assert.equal(first.changed, true);
      const again = await gh.upsertPlanComment(pr, `${PLAN_MARKER}\nplan v1`);
      assert.deepEqual(again, { id: first.id, created: false, changed: false });
      const edited = await gh.upsertPlanComment(pr, `${PLAN_MARKER}\nplan v2`);
      assert.deepEqual(edited, { id: first.id, created: false, changed: true });
      assert.deepEqual(requestsSince(start).map((r) => `${r.method} ${r.status}`), ['GET 200', 'POST 201', 'GET 200', 'GET 200', 'PATCH 200']);
      const comments = github.comments(pr, repo);
      assert.deepEqual(comments.map((c) => [c.id, c.login, c.body]), [
        [other, 'alice', 'Looks good to me'],
        [first.id, 'vmroll-bot', `${PLAN_MARKER}\nplan v2`],
      ]);
    });

    it('edits the oldest marked comment when several exist, finding it past the first page', async () => {
      const pr = github.addPullRequest({ repo, headRef: 'f', headSha: sha(2), baseSha: sha(1) });
      for (let i = 0; i < 120; i++) github.addComment(pr, `chatter ${i}`, { repo });
      const gh = reporter();
      const created = await gh.upsertPlanComment(pr, `${PLAN_MARKER}\none`);
      github.addComment(pr, `${PLAN_MARKER}\nwritten by a second vmroll`, { login: 'vmroll-bot', repo });
      const result = await gh.upsertPlanComment(pr, `${PLAN_MARKER}\ntwo`);
      assert.deepEqual(result, { id: created.id, created: false, changed: true });
      assert.equal(github.comments(pr, repo).find((c) => c.id === created.id)?.body, `${PLAN_MARKER}\ntwo`);
    });

    it('refuses a comment body without the marker instead of duplicating comments forever', async () => {
      const pr = github.addPullRequest({ repo, headRef: 'f', headSha: sha(2), baseSha: sha(1) });
      const error = await rejection(reporter().upsertPlanComment(pr, 'no marker'));
      assert.equal(error.code, 'Invalid');
      assert.equal(github.comments(pr, repo).length, 0);
    });

    it('maps GitHub answers to typed errors', async () => {
      const gh = reporter();
      github.failNext(1, 502);
      assert.equal((await rejection(gh.postStatus(status()))).code, 'Unavailable');
      assert.equal((await rejection(reporter({ token: 'wrong' }).postStatus(status()))).code, 'Unauthorized');
      assert.equal((await rejection(gh.upsertPlanComment(999, PLAN_MARKER))).code, 'NotFound');
      assert.equal((await rejection(gh.postStatus(status({ sha: 'not-a-commit' })))).code, 'Invalid');
      github.seedStatuses(sha(3), 'vmroll/sync', 999, repo);
      await gh.postStatus(status({ sha: sha(3) }));
      const capped = await rejection(gh.postStatus(status({ sha: sha(3), state: StatusState.failure })));
      assert.equal(capped.code, 'Invalid');
      assert.match(capped.message, /maximum number of statuses/);
      github.rateLimit({ remaining: 0, resetInSeconds: 42 });
      const limited = await rejection(gh.postStatus(status()));
      assert.equal(limited.code, 'RateLimited');
      assert.equal(limited.retryAfterMs, 42_000);
      assert.deepEqual(gh.rateLimit(), { limit: 5000, remaining: 0, resetAt: START + 42_000 });
      github.rateLimit({ retryAfterSeconds: 7 });
      const secondary = await rejection(gh.postStatus(status()));
      assert.equal(secondary.code, 'RateLimited');
      assert.equal(secondary.retryAfterMs, 7000);
    });

    it('fails as Unavailable when GitHub does not answer in time', async () => {
      github.hangNext(1);
      const error = await rejection(reporter({ requestTimeoutMs: 1000 }).postStatus(status()));
      assert.equal(error.code, 'Unavailable');
    });

    it('works against an Enterprise-style API root with a path prefix, pagination included', async () => {
      for (let n = 1; n <= 105; n++) github.addPullRequest({ repo, number: n, headRef: `b${n}`, headSha: sha(n), baseSha: sha(1) });
      const start = github.requests.length;
      const gh = reporter({ apiUrl: `${github.enterpriseUrl}/` });
      await gh.postStatus(status());
      assert.equal((await gh.listOpenPullRequests()).length, 105);
      const pr = 1;
      await gh.upsertPlanComment(pr, `${PLAN_MARKER} hi`);
      const urls = github.requests.slice(start).map((r) => r.url);
      assert.equal(urls.length, 5);
      for (const url of urls) assert.ok(url.startsWith(`/api/v3/repos/${repo}/`), url);
      assert.equal(github.statuses(sha(1), repo).length, 1);
    });
  });

  describe('ReportQueue', () => {
    it('does not re-post a status identical to the last delivered one', async () => {
      const { logger } = captureLogger();
      const queue = new ReportQueue({ reporter: reporter(), logger, sleep: instantSleep().sleep });
      queue.status(status());
      assert.equal(await queue.flush(WAIT_MS), true);
      queue.status(status());
      assert.equal(await queue.flush(WAIT_MS), true);
      queue.status(status({ state: StatusState.failure, description: '1 failed' }));
      queue.status(status({ context: StatusContext.plan }));
      assert.equal(await queue.flush(WAIT_MS), true);
      queue.status(status({ state: StatusState.failure, description: '1 failed' }));
      assert.equal(await queue.flush(WAIT_MS), true);
      assert.deepEqual(github.statuses(sha(1), repo).map((s) => [s.context, s.state]), [
        ['vmroll/sync', 'success'],
        ['vmroll/sync', 'failure'],
        ['vmroll/plan', 'success'],
      ]);
      assert.equal(queue.stats().skipped, 2);
      await queue.close();
    });

    it('sends only the newest status per commit and context, and the newest comment per PR, while they wait', async () => {
      const pr = github.addPullRequest({ repo, headRef: 'f', headSha: sha(2), baseSha: sha(1) });
      const gate = gatedSleep();
      const { logger } = captureLogger();
      const queue = new ReportQueue({ reporter: reporter(), logger, sleep: gate.sleep, random: () => 0.5 });
      github.failNext(1, 502);
      const sleeping = gate.sleeping();
      queue.status(status({ state: StatusState.pending, description: 'syncing' }));
      queue.comment(pr, `${PLAN_MARKER} v1`);
      await sleeping;
      queue.status(status({ state: StatusState.success, description: 'synced' }));
      queue.comment(pr, `${PLAN_MARKER} v2`);
      queue.status(status({ state: StatusState.failure, description: '1 failed' }));
      queue.status(status({ sha: sha(9) }));
      queue.comment(pr, `${PLAN_MARKER} v3`);
      assert.equal(queue.pending(), 3);
      gate.release();
      assert.equal(await queue.flush(WAIT_MS), true);
      assert.deepEqual(github.statuses(sha(1), repo).map((s) => [s.state, s.description]), [['failure', '1 failed']]);
      assert.equal(github.statuses(sha(9), repo).length, 1);
      assert.deepEqual(github.comments(pr, repo).map((c) => c.body), [`${PLAN_MARKER} v3`]);
      assert.deepEqual(gate.waits, [1000]);
      assert.equal(queue.stats().superseded, 4);
      await queue.close();
    });

    it('keeps reports through an outage and delivers them in order once GitHub is back', async () => {
      const pr = github.addPullRequest({ repo, headRef: 'f', headSha: sha(2), baseSha: sha(1) });
      const { sleep, waits } = instantSleep();
      const { logger, lines } = captureLogger();
      const queue = new ReportQueue({ reporter: reporter(), logger, sleep, random: () => 0.5 });
      github.failNext(3, 502, { method: 'POST' });
      const start = github.requests.length;
      queue.status(status({ sha: sha(1), state: StatusState.pending }));
      queue.comment(pr, `${PLAN_MARKER} plan`);
      queue.status(status({ sha: sha(2), context: StatusContext.plan }));
      assert.equal(await queue.flush(WAIT_MS), true);
      assert.deepEqual(waits, [1000, 2000, 4000], 'exponential backoff');
      assert.deepEqual(requestsSince(start).map((r) => `${r.method} ${r.path} ${r.status}`), [
        `GET /repos/${repo}/commits/${sha(1)}/status 200`,
        `POST /repos/${repo}/statuses/${sha(1)} 502`,
        `POST /repos/${repo}/statuses/${sha(1)} 502`,
        `POST /repos/${repo}/statuses/${sha(1)} 502`,
        `POST /repos/${repo}/statuses/${sha(1)} 201`,
        `GET /repos/${repo}/issues/${pr}/comments 200`,
        `POST /repos/${repo}/issues/${pr}/comments 201`,
        `GET /repos/${repo}/commits/${sha(2)}/status 200`,
        `POST /repos/${repo}/statuses/${sha(2)} 201`,
      ]);
      assert.deepEqual(queue.stats(), { pending: 0, delivered: 3, skipped: 0, superseded: 0, dropped: 0, retries: 3, statusReads: 2, statusReadFailures: 0, lastError: queue.stats().lastError ?? { code: '', message: '' } });
      assert.equal(queue.stats().lastError?.code, 'Unavailable');
      assert.equal(lines.filter((l) => l.includes('report kept for retry')).length, 3);
      await queue.close();
    });

    it('caps the backoff and jitters it', async () => {
      const { sleep, waits } = instantSleep();
      const { logger } = captureLogger();
      const queue = new ReportQueue({ reporter: reporter(), logger, sleep, random: () => 0.75, initialBackoffMs: 1000, maxBackoffMs: 5000 });
      github.failNext(5, 503, { method: 'POST' });
      queue.status(status());
      assert.equal(await queue.flush(WAIT_MS), true);
      assert.deepEqual(waits, [1100, 2200, 4400, 5000, 5000]);
      await queue.close();
    });

    it('waits out a primary rate limit until the reset GitHub names, then delivers', async () => {
      const { sleep, waits } = instantSleep();
      const { logger } = captureLogger();
      const queue = new ReportQueue({ reporter: reporter(), logger, sleep });
      github.rateLimit({ remaining: 0, resetInSeconds: 30 });
      const start = github.requests.length;
      queue.status(status());
      assert.equal(await queue.flush(WAIT_MS), true);
      assert.deepEqual(waits, [31_000], '30 s to the reset plus a 1 s margin');
      // The read of the commit's statuses meets the limit; after the wait it is read, then written.
      assert.deepEqual(requestsSince(start).map((r) => `${r.method} ${r.status}`), ['GET 403', 'GET 200', 'POST 201']);
      assert.equal(github.statuses(sha(1), repo).length, 1);
      await queue.close();
    });

    it('waits out a secondary rate limit for its retry-after, then delivers', async () => {
      const { sleep, waits } = instantSleep();
      const { logger } = captureLogger();
      const queue = new ReportQueue({ reporter: reporter(), logger, sleep });
      github.rateLimit({ retryAfterSeconds: 7 });
      const start = github.requests.length;
      queue.status(status());
      assert.equal(await queue.flush(WAIT_MS), true);
      assert.deepEqual(waits, [8000]);
      assert.deepEqual(requestsSince(start).map((r) => `${r.method} ${r.status}`), ['GET 429', 'GET 200', 'POST 201']);
      await queue.close();
    });

    it('drops a report GitHub refuses for good (401) after one attempt, and goes on with the next', async () => {
      const { sleep, waits } = instantSleep();
      const { logger, lines } = captureLogger();
      const queue = new ReportQueue({ reporter: reporter({ token: 'expired-token-value' }), logger, sleep });
      const start = github.requests.length;
      queue.status(status());
      queue.status(status({ sha: sha(2) }));
      assert.equal(await queue.flush(WAIT_MS), true);
      // A refused read is not retried either: the status is written unread, and that write is refused.
      assert.deepEqual(requestsSince(start).map((r) => `${r.method} ${r.status}`), ['GET 401', 'POST 401', 'GET 401', 'POST 401']);
      assert.deepEqual(waits, []);
      assert.equal(queue.stats().dropped, 2);
      assert.equal(queue.stats().statusReadFailures, 2);
      assert.equal(queue.stats().lastError?.code, 'Unauthorized');
      assert.equal(lines.filter((l) => l.includes('dropped')).length, 2);
      await queue.close();
    });

    it('flush gives up at its timeout while the host stays down, and close stops the worker', async () => {
      const gate = gatedSleep();
      const { logger, lines } = captureLogger();
      const queue = new ReportQueue({ reporter: reporter(), logger, sleep: gate.sleep });
      github.failNext(100, 502);
      const sleeping = gate.sleeping();
      queue.status(status());
      await sleeping;
      // flush cuts a backoff short with one immediate retry, which fails too and waits again.
      const next = gate.sleeping();
      gate.release();
      await next;
      assert.equal(await queue.flush(50), false);
      assert.equal(queue.pending(), 1);
      const closing = queue.close();
      gate.release();
      await closing;
      assert.ok(lines.some((l) => l.includes('closed with undelivered reports')));
      github.failNext(0);
    });

    it('close does not sit out a backoff, whether it comes during the failing call or after it', async () => {
      const { logger } = captureLogger();
      // Real timers here: a backoff of ten minutes would outlast the test's timeout.
      const during = new ReportQueue({ reporter: reporter({ requestTimeoutMs: 1000 }), logger, initialBackoffMs: 600_000 });
      github.hangNext(1);
      const start = github.requests.length;
      during.status(status());
      await until('the emulator to receive the status', () => github.requests.length > start);
      await during.close();
      assert.equal(during.pending(), 1);
      const after = new ReportQueue({ reporter: reporter(), logger, initialBackoffMs: 600_000 });
      github.failNext(1, 502, { method: 'POST' });
      after.status(status({ sha: sha(2) }));
      await until('a failed delivery to be retried', () => after.stats().retries > 0);
      await after.close();
      assert.equal(after.pending(), 1);
    });

    it('never lets the token reach an error, a log line or anything GitHub receives besides the auth header', async () => {
      const pr = github.addPullRequest({ repo, headRef: 'f', headSha: sha(2), baseSha: sha(1) });
      const { logger, lines } = captureLogger();
      const errors: unknown[] = [];
      const collect = async (p: Promise<unknown>): Promise<void> => {
        await p.catch((e: unknown) => errors.push(e));
      };
      const gh = reporter({ logger });
      const wrong = reporter({ token: `${TOKEN}-revoked`, logger });
      github.failNext(1, 500);
      await collect(gh.postStatus(status()));
      await collect(wrong.postStatus(status()));
      await collect(wrong.upsertPlanComment(pr, PLAN_MARKER));
      await collect(gh.upsertPlanComment(12345, PLAN_MARKER));
      github.rateLimit({ remaining: 0, resetInSeconds: 5 });
      await collect(gh.listOpenPullRequests());
      github.clearRateLimit();
      github.hangNext(1);
      await collect(reporter({ logger, requestTimeoutMs: 1000 }).postStatus(status()));
      const { sleep } = instantSleep();
      const queue = new ReportQueue({ reporter: wrong, logger, sleep });
      queue.status(status());
      queue.comment(pr, PLAN_MARKER);
      await queue.flush(WAIT_MS);
      await queue.close();
      assert.equal(errors.length, 6);
      const everything = [
        ...errors.map((e) => `${inspect(e, { depth: 20, showHidden: true })} ${JSON.stringify(e)} ${(e as Error).stack ?? ''}`),
        ...lines,
        ...github.requests.map((r) => `${r.url} ${r.body ?? ''} ${JSON.stringify(r.headers)}`),
      ];
      assert.ok(lines.length > 0, 'the logger saw something');
      for (const text of everything) assert.ok(!text.includes(TOKEN), `token leaked into: ${text.slice(0, 300)}`);
    });
  });

  describe('GiteaReporter', () => {
    function giteaReporter(token = TOKEN): GiteaReporter {
      return new GiteaReporter({ repo, token, apiUrl: gitea.baseUrl, now });
    }

    it('posts commit statuses with Gitea\'s body shape', async () => {
      const start = gitea.requests.length;
      await giteaReporter().postStatus(status({ targetUrl: 'https://vmroll.example/r/1', description: 'y'.repeat(200) }));
      const request = gitea.requests[start];
      assert.equal(request?.url, `/api/v1/repos/${repo}/statuses/${sha(1)}`);
      assert.deepEqual(JSON.parse(request?.body ?? ''), { state: 'success', context: 'vmroll/sync', description: `${'y'.repeat(139)}…`, target_url: 'https://vmroll.example/r/1' });
      assert.deepEqual(gitea.statuses(sha(1), repo).map((s) => [s.context, s.state]), [['vmroll/sync', 'success']]);
    });

    it('keeps one sticky plan comment, edited in place', async () => {
      const pr = gitea.addPullRequest({ repo, headRef: 'f', headSha: sha(2), baseSha: sha(1) });
      gitea.addComment(pr, 'first!', { login: 'bob', repo });
      const g = giteaReporter();
      const first = await g.upsertPlanComment(pr, `${PLAN_MARKER} v1`);
      assert.equal(first.created, true);
      assert.deepEqual(await g.upsertPlanComment(pr, `${PLAN_MARKER} v1`), { id: first.id, created: false, changed: false });
      assert.deepEqual(await g.upsertPlanComment(pr, `${PLAN_MARKER} v2`), { id: first.id, created: false, changed: true });
      assert.deepEqual(gitea.comments(pr, repo).map((c) => [c.login, c.body]), [
        ['bob', 'first!'],
        ['vmroll-bot', `${PLAN_MARKER} v2`],
      ]);
    });

    it('lists open pull requests across pages and merged ones since a time', async () => {
      for (let n = 1; n <= 60; n++) gitea.addPullRequest({ repo, number: n, headRef: `b${n}`, headSha: sha(n), baseSha: sha(1), title: `t${n}` });
      gitea.addPullRequest({ repo, number: 61, headRef: 'm', headSha: sha(61), baseSha: sha(1), state: 'closed', mergedAt: '2025-12-31T23:00:00Z', mergeCommitSha: sha(99), updatedAt: '2025-12-31T23:00:00Z' });
      const g = giteaReporter();
      const open = await g.listOpenPullRequests();
      assert.equal(open.length, 60);
      assert.deepEqual(open.find((p) => p.number === 3), { number: 3, headSha: sha(3), headRef: 'b3', baseRef: 'main', baseSha: sha(1), title: 't3' });
      const merged = await g.listRecentlyMergedPullRequests(new Date(START - 2 * 3600_000));
      assert.deepEqual(merged.map((p) => [p.number, p.mergeCommitSha]), [[61, sha(99)]]);
    });

    it('maps Gitea failures to typed errors and recovers through the queue', async () => {
      assert.equal((await rejection(giteaReporter('nope').postStatus(status()))).code, 'Unauthorized');
      const { sleep, waits } = instantSleep();
      const { logger, lines } = captureLogger();
      const queue = new ReportQueue({ reporter: giteaReporter(), logger, sleep, random: () => 0.5 });
      gitea.failNext(2, 503, { method: 'POST' });
      queue.status(status());
      assert.equal(await queue.flush(WAIT_MS), true);
      assert.deepEqual(waits, [1000, 2000]);
      assert.equal(gitea.statuses(sha(1), repo).length, 1);
      await queue.close();
      for (const line of lines) assert.ok(!line.includes(TOKEN));
    });
  });

  describe('GitHub emulator', () => {
    const auth = { authorization: `token ${TOKEN}`, 'content-type': 'application/json' };

    it('answers a request outside GitHub\'s description with 422 and records it', async () => {
      const response = await fetch(`${github.baseUrl}/repos/${repo}/statuses/${sha(1)}`, { method: 'POST', headers: auth, body: JSON.stringify({ state: 'green' }) });
      assert.equal(response.status, 422);
      const recorded = github.violations.splice(0);
      assert.equal(recorded.length, 1);
      assert.equal(recorded[0]?.kind, 'request');
      assert.equal(recorded[0]?.operationId, 'repos/create-commit-status');
      assert.equal(github.statuses(sha(1), repo).length, 0);
    });

    it('requires the token', async () => {
      const response = await fetch(`${github.baseUrl}/repos/${repo}/pulls`);
      assert.equal(response.status, 401);
    });

    it('serves statuses back newest first, and the combined state per context', async () => {
      const gh = reporter();
      await gh.postStatus(status({ state: StatusState.pending }));
      await gh.postStatus(status({ state: StatusState.success }));
      await gh.postStatus(status({ context: StatusContext.plan, state: StatusState.failure }));
      const list = (await (await fetch(`${github.baseUrl}/repos/${repo}/commits/${sha(1)}/statuses`, { headers: auth })).json()) as Array<{ state: string }>;
      assert.deepEqual(list.map((s) => s.state), ['failure', 'success', 'pending']);
      const combined = (await (await fetch(`${github.enterpriseUrl}/repos/${repo}/commits/${sha(1)}/status`, { headers: auth })).json()) as { state: string; total_count: number };
      assert.equal(combined.state, 'failure');
      assert.equal(combined.total_count, 2);
    });
  });

  describe('gitHostErrorFrom', () => {
    const map = (status: number | undefined, headers: Record<string, string> = {}, detail = ''): GitHostError =>
      gitHostErrorFrom({ ...(status !== undefined && { status }), headers, detail }, 'test', [TOKEN], START);

    it('decides what is retried from the status and headers', () => {
      assert.equal(map(undefined).code, 'Unavailable');
      assert.equal(map(500).code, 'Unavailable');
      assert.equal(map(408).code, 'Unavailable');
      assert.equal(map(401).code, 'Unauthorized');
      assert.equal(map(403, {}, 'Resource not accessible by integration').code, 'Unauthorized');
      assert.equal(map(404).code, 'NotFound');
      assert.equal(map(422).code, 'Invalid');
      assert.equal(map(403, {}, 'You have exceeded a secondary rate limit').retryAfterMs, 60_000);
      assert.equal(map(429).retryAfterMs, 60_000);
      assert.equal(map(429, { 'retry-after': new Date(START + 90_000).toUTCString() }).retryAfterMs, 90_000);
      assert.equal(map(403, { 'x-ratelimit-remaining': '0', 'x-ratelimit-reset': String(START / 1000 - 5) }).retryAfterMs, 0);
    });

    it('removes secrets from the message', () => {
      const error = map(422, {}, `bad value ${TOKEN}`);
      assert.ok(!error.message.includes(TOKEN));
      assert.match(error.message, /\[redacted\]/);
    });
  });
});
