/**
 * Restarts do not re-post: `vmroll run --once` run again on the same commits (the cluster kept in a
 * sim state file, as a real cluster keeps it) posts no `vmroll/sync`, no `vmroll/plan` and edits no
 * plan comment, because each new process reads what the commit shows before writing. Real
 * processes, a real git http-backend, and the GitHub (spec-validated) and Gitea emulators.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { PLAN_MARKER } from '../reconciler/report/reporter.ts';
import { ROOT } from './helpers/cases.ts';
import { type GitServer, startGitServer } from './helpers/gitServer.ts';
import { type GiteaEmulator, startGiteaEmulator } from './helpers/giteaEmulator.ts';
import { type GitHubEmulator, startGitHubEmulator } from './helpers/githubEmulator.ts';

const run = promisify(execFile);
const EXAMPLE = path.join(ROOT, 'fixtures', 'example-repo', 'vms');
const KUBEVIRT = path.join(ROOT, 'fixtures', 'example-cluster', 'kubevirt.yaml');
const TOKEN = 'ghp_restartE2eTokenThatMustNeverBeLogged1';
/** The reads of a commit's statuses, on either host. */
const READS = { method: 'GET', path: /\/commits\/[0-9a-f]{40}\/status$/ };

async function vmrollOnce(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await run(process.execPath, [path.join(ROOT, 'bin', 'vmroll.js'), 'run', '--once', ...args], { cwd: ROOT, timeout: 90_000 });
    return { code: 0, stdout, stderr };
  } catch (e) {
    const err = e as { code?: number; stdout?: string; stderr?: string };
    return { code: typeof err.code === 'number' ? err.code : -1, stdout: err.stdout ?? '', stderr: err.stderr ?? '' };
  }
}

describe('vmroll run --once, run again on the same commits', function () {
  this.timeout(300_000);
  let git: GitServer;
  let repo: string;
  let dir: string;
  let main: string;
  let head: string;
  let tokenFile: string;

  before(async () => {
    git = await startGitServer();
    dir = mkdtempSync(path.join(tmpdir(), 'vmroll-restart-'));
    repo = await git.createBareRepo('fleet');
    const work = await git.createWorkingClone('fleet');
    for (const f of ['web.yaml', 'db.yaml', 'batch.yaml']) await work.write(`vms/${f}`, readFileSync(path.join(EXAMPLE, f), 'utf8'));
    main = await work.commit('three VMs');
    await work.push();
    // A pull request that changes web's cores: staged until restart.
    await work.git('checkout', '--quiet', '-b', 'resize');
    await work.write('vms/web.yaml', readFileSync(path.join(EXAMPLE, 'web.yaml'), 'utf8').replace('cores: 1', 'cores: 2'));
    head = await work.commit('resize web');
    await work.git('push', '--quiet', 'origin', 'HEAD:refs/heads/resize', 'HEAD:refs/pull/1/head');
    tokenFile = path.join(dir, 'token');
    writeFileSync(tokenFile, `${TOKEN}\n`);
  });
  after(async () => {
    await git?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  function common(name: string): string[] {
    return ['--repo', repo, '--path', 'vms', '--cluster', 'sim', '--sim-state', path.join(dir, `${name}.json`), '--sim-kubevirt', KUBEVIRT, '--cache-dir', path.join(dir, `cache-${name}`), '--log-level', 'warn'];
  }

  function assertQuiet(result: { code: number; stdout: string; stderr: string }): void {
    assert.equal(result.code, 0, result.stderr);
    assert.ok(!`${result.stdout}${result.stderr}`.includes(TOKEN), 'the token never reaches the output');
  }

  describe('on GitHub', () => {
    let gh: GitHubEmulator;
    before(async () => {
      gh = await startGitHubEmulator({ token: TOKEN, repos: ['acme/fleet'] });
      gh.addPullRequest({ number: 1, headRef: 'resize', headSha: head, baseRef: 'main', baseSha: main, title: 'Resize' });
    });
    after(async () => {
      await gh?.stop();
    });
    afterEach(() => assert.deepEqual(gh.violations.splice(0), [], 'requests or responses outside GitHub\'s description'));

    const args = (targetUrl: string): string[] => [...common('github'), '--github-repo', 'acme/fleet', '--github-api-url', gh.baseUrl, '--github-token-file', tokenFile, '--status-target-url', targetUrl];
    const writes = (start: number): string[] => gh.requests.slice(start).filter((r) => r.method !== 'GET').map((r) => `${r.method} ${r.url}`);

    it('the first run posts, the second (one failed read included) posts and edits nothing, a changed link is posted', async () => {
      assertQuiet(await vmrollOnce(args('https://vmroll.example/a')));
      assert.deepEqual(gh.statuses(main).map((s) => [s.context, s.state, s.description]), [
        ['vmroll/sync', 'pending', 'vmroll is applying this commit'],
        ['vmroll/sync', 'success', '0 in sync · 3 created'],
      ]);
      assert.deepEqual(gh.statuses(head).map((s) => [s.context, s.state, s.description]), [['vmroll/plan', 'success', '1 staged until restart']]);
      assert.equal(gh.comments(1).length, 1);
      const comment = gh.comments(1)[0];
      assert.ok(comment?.body.startsWith(PLAN_MARKER));

      // The second process: nothing to apply, the same plan. Its first read of a commit's statuses fails.
      gh.failNext(1, 500, READS);
      let start = gh.requests.length;
      assertQuiet(await vmrollOnce(args('https://vmroll.example/a')));
      assert.deepEqual(writes(start), [], 'no status posted, no comment edited');
      const reads = gh.requests.slice(start).filter((r) => READS.path.test(r.url.split('?')[0] ?? ''));
      assert.deepEqual(reads.map((r) => r.status), [500, 200, 200], 'the failed read was made again; one read per commit and context');
      assert.equal(gh.statuses(main).length, 2);
      assert.equal(gh.statuses(head).length, 1);
      assert.deepEqual(gh.comments(1).map((c) => [c.id, c.body, c.updatedAt]), [[comment?.id, comment?.body, comment?.updatedAt]]);

      // The third: another status link. Both statuses are posted again with it; the comment does not name it.
      start = gh.requests.length;
      assertQuiet(await vmrollOnce(args('https://vmroll.example/b')));
      assert.deepEqual(writes(start).sort(), [`POST /repos/acme/fleet/statuses/${head}`, `POST /repos/acme/fleet/statuses/${main}`].sort());
      const newest = gh.statuses(main).at(-1);
      assert.deepEqual([newest?.state, newest?.description, newest?.targetUrl], ['success', '3 in sync', 'https://vmroll.example/b']);
      assert.deepEqual(gh.statuses(head).map((s) => [s.description, s.targetUrl]), [
        ['1 staged until restart', 'https://vmroll.example/a'],
        ['1 staged until restart', 'https://vmroll.example/b'],
      ]);
      assert.equal(gh.comments(1).length, 1);
    });
  });

  describe('on Gitea', () => {
    let gitea: GiteaEmulator;
    before(async () => {
      gitea = await startGiteaEmulator({ token: TOKEN, repos: ['acme/fleet'] });
      gitea.addPullRequest({ number: 1, headRef: 'resize', headSha: head, baseRef: 'main', baseSha: main, title: 'Resize' });
    });
    after(async () => {
      await gitea?.stop();
    });
    afterEach(() => assert.deepEqual(gitea.violations.splice(0), [], 'requests Gitea would not accept'));

    it('the second run posts no status and edits no comment', async () => {
      const args = [...common('gitea'), '--gitea-url', gitea.baseUrl, '--gitea-repo', 'acme/fleet', '--gitea-token-file', tokenFile];
      assertQuiet(await vmrollOnce(args));
      assert.deepEqual(gitea.statuses(main).map((s) => [s.context, s.state]), [
        ['vmroll/sync', 'pending'],
        ['vmroll/sync', 'success'],
      ]);
      assert.deepEqual(gitea.statuses(head).map((s) => [s.context, s.description]), [['vmroll/plan', '1 staged until restart']]);
      assert.equal(gitea.comments(1).length, 1);
      const start = gitea.requests.length;
      assertQuiet(await vmrollOnce(args));
      assert.deepEqual(gitea.requests.slice(start).filter((r) => r.method !== 'GET').map((r) => `${r.method} ${r.url}`), []);
      assert.equal(gitea.requests.slice(start).filter((r) => READS.path.test(r.url.split('?')[0] ?? '')).length, 2, 'one read per commit and context');
      assert.equal(gitea.comments(1).length, 1);
    });
  });
});
