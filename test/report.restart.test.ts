// Status writes that hold across restarts: a new report queue (a new process, a new leader) reads
// what the commit shows before its first write for a (commit, context) and posts nothing the host
// already has. Over real sockets: the GitHub emulator (every request checked against GitHub's
// description) and the Gitea emulator, first with report queues, then with `vmroll run --once`.
import assert from 'node:assert/strict';
import { pino } from 'pino';
import { VmrollMetrics } from '../reconciler/controller/metrics.ts';
import { GiteaReporter } from '../reconciler/report/gitea.ts';
import { GitHubReporter } from '../reconciler/report/github.ts';
import { ReportQueue, type Sleep } from '../reconciler/report/queue.ts';
import { PLAN_MARKER, StatusContext, StatusState, type CommitStatus, type GitHostReporter } from '../reconciler/report/reporter.ts';
import { startGiteaEmulator, type GiteaEmulator } from './helpers/giteaEmulator.ts';
import { startGitHubEmulator, type GitHubEmulator } from './helpers/githubEmulator.ts';
import { WAIT_MS } from './helpers/waitFor.ts';

const TOKEN = 'ghp_restartTestToken0123456789abcdefABCD';
const silent = pino({ level: 'silent' });
/** Backoffs are recorded, not waited for. */
const waits: number[] = [];
const instant: Sleep = async (ms) => {
  waits.push(ms);
  await new Promise((resolve) => setImmediate(resolve));
};

function sha(n: number): string {
  return n.toString(16).padStart(40, 'b');
}

function status(overrides: Partial<CommitStatus> = {}): CommitStatus {
  return { sha: sha(1), context: StatusContext.sync, state: StatusState.success, description: '0 in sync · 3 created', targetUrl: 'https://vmroll.example/fleet', ...overrides };
}

/** What both emulators offer to these tests. */
interface Host {
  name: 'github' | 'gitea';
  /** A reporter as a new process would build it. */
  reporter(repo: string): GitHostReporter;
  addRepo(repo: string): void;
  addPullRequest(repo: string, headSha: string): number;
  statuses(repo: string, sha: string): Array<{ context: string; state: string; description: string | null; targetUrl: string | null }>;
  comments(repo: string, pr: number): Array<{ body: string }>;
  /** Method and path of every request since `start`. */
  requests(start: number): string[];
  mark(): number;
  failNext(count: number, status: number, only: { method: string; path: RegExp }): void;
}

/** The reads of a commit's statuses, on either host. */
const READS = { method: 'GET', path: /\/commits\/[0-9a-f]{40}\/status$/ };

describe('status writes across restarts', function () {
  this.timeout(120_000);
  let github: GitHubEmulator;
  let gitea: GiteaEmulator;
  let counter = 0;

  before(async () => {
    github = await startGitHubEmulator({ token: TOKEN });
    gitea = await startGiteaEmulator({ token: TOKEN });
  });
  after(async () => {
    await github?.stop();
    await gitea?.stop();
  });
  afterEach(() => {
    github.failNext(0);
    gitea.failNext(0);
    assert.deepEqual(github.violations.splice(0), [], 'GitHub emulator: requests or responses outside GitHub\'s description');
    assert.deepEqual(gitea.violations.splice(0), [], 'Gitea emulator: requests Gitea would not accept');
  });

  const hosts: Array<() => Host> = [
    () => ({
      name: 'github',
      reporter: (repo) => new GitHubReporter({ repo, token: TOKEN, apiUrl: github.baseUrl }),
      addRepo: (repo) => github.addRepo(repo),
      addPullRequest: (repo, headSha) => github.addPullRequest({ repo, headRef: 'f', headSha, baseSha: sha(99) }),
      statuses: (repo, commit) => github.statuses(commit, repo),
      comments: (repo, pr) => github.comments(pr, repo),
      requests: (start) => github.requests.slice(start).map((r) => `${r.method} ${r.url.split('?')[0] ?? ''} ${r.status}`),
      mark: () => github.requests.length,
      failNext: (count, code, only) => github.failNext(count, code, only),
    }),
    () => ({
      name: 'gitea',
      reporter: (repo) => new GiteaReporter({ repo, token: TOKEN, apiUrl: gitea.baseUrl }),
      addRepo: (repo) => gitea.addRepo(repo),
      addPullRequest: (repo, headSha) => gitea.addPullRequest({ repo, headRef: 'f', headSha, baseSha: sha(99) }),
      statuses: (repo, commit) => gitea.statuses(commit, repo),
      comments: (repo, pr) => gitea.comments(pr, repo),
      requests: (start) => gitea.requests.slice(start).map((r) => `${r.method} ${r.url.split('?')[0]?.replace(/^\/api\/v1/, '') ?? ''} ${r.status}`),
      mark: () => gitea.requests.length,
      failNext: (count, code, only) => gitea.failNext(count, code, only),
    }),
  ];

  for (const makeHost of hosts) {
    describe(`report queues one after the other (${makeHost().name === 'github' ? 'GitHub' : 'Gitea'} emulator)`, () => {
      let host: Host;
      let repo: string;
      beforeEach(() => {
        host = makeHost();
        repo = `acme/restart-${++counter}`;
        host.addRepo(repo);
        waits.length = 0;
      });

      /** One process' worth of reporting: a new reporter and queue, flushed and closed. */
      async function oneProcess(report: (queue: ReportQueue) => void): Promise<ReportQueue> {
        const queue = new ReportQueue({ reporter: host.reporter(repo), logger: silent, sleep: instant, random: () => 0.5 });
        try {
          report(queue);
          assert.equal(await queue.flush(WAIT_MS), true);
        } finally {
          await queue.close();
        }
        return queue;
      }

      it('posts nothing the commit already shows, and what changed after the restart', async () => {
        const pr = host.addPullRequest(repo, sha(2));
        const plan = status({ sha: sha(2), context: StatusContext.plan, description: '1 staged until restart' });
        const all = (queue: ReportQueue): void => {
          queue.status(status());
          queue.status(plan);
          queue.comment(pr, `${PLAN_MARKER} plan v1`);
        };
        await oneProcess(all);
        assert.equal(host.statuses(repo, sha(1)).length, 1);
        assert.equal(host.statuses(repo, sha(2)).length, 1);

        // The second process: the same reports. It reads, and writes nothing.
        const start = host.mark();
        const second = await oneProcess(all);
        assert.deepEqual(host.requests(start), [
          `GET /repos/${repo}/commits/${sha(1)}/status 200`,
          `GET /repos/${repo}/commits/${sha(2)}/status 200`,
          `GET /repos/${repo}/issues/${pr}/comments 200`,
        ]);
        assert.equal(second.stats().skipped, 2);
        assert.equal(second.stats().statusReads, 2);
        assert.equal(host.statuses(repo, sha(1)).length, 1);
        assert.deepEqual(host.comments(repo, pr).map((c) => c.body), [`${PLAN_MARKER} plan v1`]);

        // The third: the sync's description and the comment changed, the plan status did not.
        const third = host.mark();
        await oneProcess((queue) => {
          queue.status(status({ description: '3 in sync' }));
          queue.status(plan);
          queue.comment(pr, `${PLAN_MARKER} plan v2`);
        });
        const writes = host.requests(third).filter((r) => !r.startsWith('GET'));
        assert.equal(writes.length, 2, writes.join('\n'));
        assert.equal(writes[0], `POST /repos/${repo}/statuses/${sha(1)} 201`);
        assert.match(writes[1] ?? '', new RegExp(`^PATCH /repos/${repo}/issues/comments/\\d+ 200$`));
        assert.deepEqual(host.statuses(repo, sha(1)).map((s) => s.description), ['0 in sync · 3 created', '3 in sync']);
        assert.equal(host.statuses(repo, sha(2)).length, 1);
        assert.deepEqual(host.comments(repo, pr).map((c) => c.body), [`${PLAN_MARKER} plan v2`]);
      });

      it('compares with the newest status of the context only, and with the target URL too', async () => {
        await oneProcess((queue) => {
          queue.status(status({ state: StatusState.pending, description: 'vmroll is applying this commit' }));
          assert.equal(queue.pending(), 1);
        });
        await oneProcess((queue) => queue.status(status()));
        // Newest is now the success: an earlier pending with the same text does not count.
        await oneProcess((queue) => queue.status(status({ state: StatusState.pending, description: 'vmroll is applying this commit' })));
        await oneProcess((queue) => queue.status(status({ state: StatusState.pending, description: 'vmroll is applying this commit', targetUrl: 'https://vmroll.example/other' })));
        assert.deepEqual(host.statuses(repo, sha(1)).map((s) => [s.state, s.targetUrl]), [
          ['pending', 'https://vmroll.example/fleet'],
          ['success', 'https://vmroll.example/fleet'],
          ['pending', 'https://vmroll.example/fleet'],
          ['pending', 'https://vmroll.example/other'],
        ]);
      });

      it('with match "outcome", a sync that changed nothing leaves the outcome the commit shows', async () => {
        await oneProcess((queue) => queue.status(status()));
        await oneProcess((queue) => queue.status(status({ description: '3 in sync' }), { match: 'outcome' }));
        assert.equal(host.statuses(repo, sha(1)).length, 1, 'same state and link: not restated');
        await oneProcess((queue) => queue.status(status({ state: StatusState.failure, description: '1 failed' }), { match: 'outcome' }));
        await oneProcess((queue) => queue.status(status({ description: '3 in sync' }), { match: 'outcome' }));
        assert.deepEqual(host.statuses(repo, sha(1)).map((s) => [s.state, s.description]), [
          ['success', '0 in sync · 3 created'],
          ['failure', '1 failed'],
          ['success', '3 in sync'],
        ]);
      });

      it('reads once per commit and context in a process, whatever it posts after', async () => {
        const start = host.mark();
        const queue = await oneProcess((q) => {
          q.status(status({ description: 'a' }));
          q.status(status({ context: StatusContext.plan }));
        });
        assert.equal(queue.stats().statusReads, 2);
        const again = new ReportQueue({ reporter: host.reporter(repo), logger: silent, sleep: instant });
        try {
          again.status(status({ description: 'b' }));
          assert.equal(await again.flush(WAIT_MS), true);
          again.status(status({ description: 'c' }));
          assert.equal(await again.flush(WAIT_MS), true);
          again.status(status({ description: 'c' }));
          assert.equal(await again.flush(WAIT_MS), true);
        } finally {
          await again.close();
        }
        assert.equal(again.stats().statusReads, 1);
        assert.equal(again.stats().skipped, 1);
        assert.equal(host.requests(start).filter((r) => r.startsWith('GET')).length, 3, 'two reads by the first queue, one by the second');
        assert.deepEqual(host.statuses(repo, sha(1)).filter((s) => s.context === StatusContext.sync).map((s) => s.description), ['a', 'b', 'c']);
      });

      it('a failed read still ends in exactly one correct status', async () => {
        // A fresh commit, the read failing once: read again after the backoff, then written.
        host.failNext(1, 500, READS);
        let start = host.mark();
        const first = await oneProcess((queue) => queue.status(status()));
        assert.deepEqual(host.requests(start), [
          `GET /repos/${repo}/commits/${sha(1)}/status 500`,
          `GET /repos/${repo}/commits/${sha(1)}/status 200`,
          `POST /repos/${repo}/statuses/${sha(1)} 201`,
        ]);
        assert.deepEqual(waits, [1000]);
        assert.deepEqual({ reads: first.stats().statusReads, failed: first.stats().statusReadFailures }, { reads: 1, failed: 1 });

        // A restart on the same commit, the read failing once: read again, nothing written.
        host.failNext(1, 503, READS);
        start = host.mark();
        await oneProcess((queue) => queue.status(status()));
        assert.deepEqual(host.requests(start).map((r) => r.split(' ')[0]), ['GET', 'GET']);
        assert.deepEqual(host.statuses(repo, sha(1)).map((s) => [s.state, s.description, s.targetUrl]), [['success', '0 in sync · 3 created', 'https://vmroll.example/fleet']]);

        // Reads that keep failing never cost the write: after three, it is written unread.
        host.failNext(3, 502, READS);
        start = host.mark();
        const unread = await oneProcess((queue) => queue.status(status({ sha: sha(3), state: StatusState.failure, description: '1 failed' })));
        assert.deepEqual(host.requests(start).map((r) => r.split(' ').filter((_, i) => i !== 1).join(' ')), ['GET 502', 'GET 502', 'GET 502', 'POST 201']);
        assert.equal(unread.stats().statusReadFailures, 3);
        assert.deepEqual(host.statuses(repo, sha(3)).map((s) => [s.state, s.description]), [['failure', '1 failed']]);

        // A read refused for good (404 here) is not retried: the status is written at once.
        host.failNext(1, 404, READS);
        start = host.mark();
        await oneProcess((queue) => queue.status(status({ sha: sha(4) })));
        assert.deepEqual(host.requests(start).map((r) => r.split(' ').filter((_, i) => i !== 1).join(' ')), ['GET 404', 'POST 201']);
        assert.equal(host.statuses(repo, sha(4)).length, 1);
      });
    });
  }

  it('counts the reads in vmroll_githost_api_calls_total', async () => {
    const repo = `acme/restart-${++counter}`;
    github.addRepo(repo);
    const m = new VmrollMetrics({ defaultMetrics: false });
    const reporter = m.instrumentReporter(new GitHubReporter({ repo, token: TOKEN, apiUrl: github.baseUrl }));
    github.failNext(1, 502, READS);
    const queue = new ReportQueue({ reporter, logger: silent, sleep: instant });
    queue.status(status());
    assert.equal(await queue.flush(WAIT_MS), true);
    await queue.close();
    const text = await m.metricsText();
    const count = (result: string): number => Number(new RegExp(`^vmroll_githost_api_calls_total\\{host="github",result="${result}"\\} (\\d+)$`, 'm').exec(text)?.[1] ?? 0);
    // One failed read, one answered read, one write.
    assert.equal(count('unavailable'), 1);
    assert.equal(count('ok'), 2);
  });
});
