/**
 * A sync that fails before it resolves a commit still answers on the Git host when a push webhook
 * named the commit: the Git server (git http-backend) is down when the push arrives, so the fetch
 * fails, and the pushed commit gets a `failure` vmroll/sync status saying why and what vmroll does
 * about it (GitHub emulator); once the Git server is back, the retry posts the outcome on it.
 * A push to another branch, or a branch deletion (the zero commit), is never posted on.
 */
import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { type RunHandle, makeLogger, startRun } from '../reconciler/commands/run.ts';
import type { RunConfig } from '../reconciler/config.ts';
import { ROOT } from './helpers/cases.ts';
import { type GitServer, type WorkingClone, startGitServer } from './helpers/gitServer.ts';
import { GitHubEmulator } from './helpers/githubEmulator.ts';
import { WAIT_MS, until } from './helpers/waitFor.ts';

const EXAMPLE = path.join(ROOT, 'fixtures', 'example-repo', 'vms');
const KUBEVIRT = path.join(ROOT, 'fixtures', 'example-cluster', 'kubevirt.yaml');
const TOKEN = 'ghp_pushFailureTokenThatMustNeverBeLogged01';
const SECRET = 'push-failure-webhook-secret';

describe('a sync that fails before it has a commit posts on the pushed commit', function () {
  this.timeout(180_000);
  let git: GitServer;
  let work: WorkingClone;
  let repo: string;
  let dir: string;
  let gh: GitHubEmulator;
  let handle: RunHandle | null = null;
  const lines: string[] = [];

  before(async () => {
    git = await startGitServer();
    dir = mkdtempSync(path.join(tmpdir(), 'vmroll-push-failure-'));
    repo = await git.createBareRepo('fleet');
    work = await git.createWorkingClone('fleet');
    await work.write('vms/web.yaml', readFileSync(path.join(EXAMPLE, 'web.yaml'), 'utf8'));
    await work.commit('one VM');
    await work.push();
    gh = await GitHubEmulator.start({ token: TOKEN, repos: ['acme/fleet'] });
  });
  after(async () => {
    await handle?.stop();
    await git?.resume().catch(() => undefined);
    await gh?.stop();
    await git?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  const push = async (ref: string, after: string): Promise<number> => {
    const body = JSON.stringify({ ref, after, repository: { full_name: 'acme/fleet' } });
    const res = await fetch(`http://${handle?.address}/webhook/github`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-github-event': 'push', 'x-github-delivery': `d-${after.slice(0, 8)}`, 'x-hub-signature-256': `sha256=${createHmac('sha256', SECRET).update(body).digest('hex')}` },
      body,
      signal: AbortSignal.timeout(10_000),
    });
    await res.text();
    return res.status;
  };
  const syncStatuses = (sha: string) => gh.statuses(sha).filter((s) => s.context === 'vmroll/sync');

  it('posts failure with the cause on the commit the push named, then the outcome once the retry syncs it', async () => {
    const logger = makeLogger('debug', [TOKEN, SECRET], { write: (l: string) => (lines.push(l), true) } as unknown as NodeJS.WritableStream);
    const config: RunConfig = {
      repo, ref: 'main', path: 'vms', intervalMs: 3_600_000, once: false, cluster: 'sim', kubeconfig: undefined, simState: undefined, simKubevirt: KUBEVIRT,
      example: false, output: 'json', prune: false, listen: '127.0.0.1:0', cacheDir: path.join(dir, 'cache'), logLevel: 'debug', gitToken: undefined, webhookSecret: SECRET,
      gitHost: { kind: 'github', repo: 'acme/fleet', apiUrl: gh.baseUrl, token: TOKEN, targetUrl: undefined },
    };
    handle = await startRun(config, { out: () => {}, err: () => {} }, logger);
    const first = await work.git('rev-parse', 'HEAD');
    assert.notEqual(await handle.trigger('first'), null);
    handle.start();
    await until('the first commit to carry its sync status', () => syncStatuses(first).some((s) => s.state === 'success'));

    // A new commit reaches the Git server, then the server goes down before vmroll fetches it.
    await work.write('vms/web.yaml', readFileSync(path.join(EXAMPLE, 'web.yaml'), 'utf8').replace(/sockets: \d+/, 'sockets: 3'));
    await work.commit('web: 3 sockets');
    await work.push();
    const pushed = await work.git('rev-parse', 'HEAD');
    await git.suspend();

    // Pushes that are not this repository's branch name no commit vmroll answers for.
    assert.equal(await push('refs/heads/other', 'b'.repeat(40)), 202);
    assert.equal(await push('refs/heads/main', '0'.repeat(40)), 202);
    assert.equal(await push('refs/heads/main', pushed), 202);
    await until('the failure on the pushed commit', () => syncStatuses(pushed).some((s) => s.state === 'failure'), {
      timeoutMs: WAIT_MS * 2,
      detail: () => JSON.stringify(gh.requests.map((r) => `${r.method} ${r.url} ${r.status}`)),
    });
    const failure = syncStatuses(pushed).find((s) => s.state === 'failure');
    assert.match(String(failure?.description), /^sync failed \(retrying with backoff\): /);
    assert.match(String(failure?.description), /ECONNREFUSED|connect|refused/i);
    assert.ok(String(failure?.description).length <= 140);
    assert.deepEqual(gh.statuses('b'.repeat(40)), [], 'another branch is not answered for');
    assert.deepEqual(gh.statuses('0'.repeat(40)), [], 'a deleted branch has no commit');
    assert.ok(!syncStatuses(first).some((s) => s.state === 'failure'), 'the synced commit keeps its status');
    assert.equal(syncStatuses(first).at(-1)?.state, 'success');

    // The Git server is back: the backoff's retry syncs the pushed commit and posts its outcome on it.
    await git.resume();
    await until('the retry to post success on the pushed commit', () => syncStatuses(pushed).some((s) => s.state === 'success'), {
      timeoutMs: WAIT_MS * 3,
      detail: () => JSON.stringify(syncStatuses(pushed)),
    });
    assert.deepEqual(gh.violations, []);
    const log = lines.join('\n');
    assert.ok(!log.includes(TOKEN) && !log.includes(SECRET), 'no secret reaches the log');
  });
});
