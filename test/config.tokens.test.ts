/** Git and Git host tokens are read by one pair of functions in config.ts, used by `vmroll run` and `vmroll plan` alike. */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { GitHostKind, cacheDirOf, logFormatOf, readGitHostToken, readGitToken, runConfig } from '../reconciler/config.ts';
import { UsageError } from '../reconciler/usage.ts';

describe('config: tokens', () => {
  let dir: string;
  let file: string;
  before(() => {
    dir = mkdtempSync(path.join(tmpdir(), 'vmroll-tokens-'));
    file = path.join(dir, 'token');
    writeFileSync(file, 'from-the-file\n');
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  describe('readGitHostToken', () => {
    const cases: Array<{ kind: GitHostKind; env: NodeJS.ProcessEnv; want: string }> = [
      { kind: GitHostKind.github, env: { VMROLL_GITHUB_TOKEN: 'vmroll-gh', GITHUB_TOKEN: 'plain-gh' }, want: 'vmroll-gh' },
      { kind: GitHostKind.github, env: { GITHUB_TOKEN: 'plain-gh' }, want: 'plain-gh' },
      { kind: GitHostKind.github, env: { VMROLL_GITHUB_TOKEN: '', GITHUB_TOKEN: 'plain-gh' }, want: 'plain-gh' },
      { kind: GitHostKind.gitea, env: { VMROLL_GITEA_TOKEN: 'vmroll-gt', GITEA_TOKEN: 'plain-gt' }, want: 'vmroll-gt' },
      { kind: GitHostKind.gitea, env: { GITEA_TOKEN: 'plain-gt', GITHUB_TOKEN: 'plain-gh' }, want: 'plain-gt' },
    ];
    for (const c of cases) {
      it(`${c.kind} with ${Object.keys(c.env).join(', ')} gives ${c.want}`, () => {
        assert.equal(readGitHostToken(c.kind, {}, c.env, '--x'), c.want);
      });
    }

    it('takes the flag file over every variable, trimmed', () => {
      const env = { VMROLL_GITHUB_TOKEN: 'vmroll-gh', GITHUB_TOKEN: 'plain-gh', VMROLL_GITEA_TOKEN: 'v', GITEA_TOKEN: 'g' };
      assert.equal(readGitHostToken(GitHostKind.github, { 'github-token-file': file }, env, '--x'), 'from-the-file');
      assert.equal(readGitHostToken(GitHostKind.gitea, { 'gitea-token-file': file }, env, '--x'), 'from-the-file');
    });

    it('names every way to give the token when there is none, after what needs it', () => {
      assert.throws(
        () => readGitHostToken(GitHostKind.github, {}, { GITEA_TOKEN: 'not for GitHub' }, '--post to GitHub'),
        (e: unknown) => e instanceof UsageError && e.message === '--post to GitHub needs a token: --github-token-file, VMROLL_GITHUB_TOKEN or GITHUB_TOKEN',
      );
      assert.throws(
        () => readGitHostToken(GitHostKind.gitea, {}, { GITHUB_TOKEN: 'not for Gitea' }, '--gitea-repo'),
        (e: unknown) => e instanceof UsageError && e.message === '--gitea-repo needs a token: --gitea-token-file, VMROLL_GITEA_TOKEN or GITEA_TOKEN',
      );
    });

    it('says which file cannot be read, without its content', () => {
      const missing = path.join(dir, 'missing');
      assert.throws(() => readGitHostToken(GitHostKind.github, { 'github-token-file': missing }, {}, '--x'), (e: unknown) => e instanceof UsageError && e.message === `--github-token-file: ${missing} cannot be read`);
    });
  });

  describe('readGitToken', () => {
    it('reads --git-token-file, else VMROLL_GIT_TOKEN, else GIT_TOKEN; none is undefined', () => {
      assert.equal(readGitToken({ 'git-token-file': file }, { VMROLL_GIT_TOKEN: 'v' }), 'from-the-file');
      assert.equal(readGitToken({}, { VMROLL_GIT_TOKEN: 'v', GIT_TOKEN: 'g' }), 'v');
      assert.equal(readGitToken({}, { VMROLL_GIT_TOKEN: '', GIT_TOKEN: 'g' }), 'g');
      assert.equal(readGitToken({}, { GITHUB_TOKEN: 'not a Git token' }), undefined);
    });
  });

  describe('vmroll run reads them through the same functions', () => {
    it('VMROLL_GITHUB_TOKEN, GITEA_TOKEN and VMROLL_GIT_TOKEN reach the run configuration', () => {
      const base = { repo: 'https://git.example.com/acme/vms.git', cluster: 'sim' };
      const github = runConfig({ ...base, 'github-repo': 'acme/vms' }, { VMROLL_GITHUB_TOKEN: 'vmroll-gh', GITHUB_TOKEN: 'plain-gh', VMROLL_GIT_TOKEN: 'git-t' });
      assert.equal(github.gitHost?.token, 'vmroll-gh');
      assert.equal(github.gitToken, 'git-t');
      const gitea = runConfig({ ...base, 'gitea-repo': 'acme/vms', 'gitea-url': 'https://gitea.example.com' }, { GITEA_TOKEN: 'plain-gt' });
      assert.equal(gitea.gitHost?.token, 'plain-gt');
      assert.throws(() => runConfig({ ...base, 'github-repo': 'acme/vms' }, {}), (e: unknown) => e instanceof UsageError && e.message === '--github-repo needs a token: --github-token-file, VMROLL_GITHUB_TOKEN or GITHUB_TOKEN');
    });
  });
});

describe('config: log format and cache folder for plan and run', () => {
  it('flag, else the variable (empty counts as unset), else the default', () => {
    assert.equal(logFormatOf('text', { VMROLL_LOG_FORMAT: 'json' }), 'text');
    assert.equal(logFormatOf(undefined, { VMROLL_LOG_FORMAT: 'text' }), 'text');
    assert.equal(logFormatOf(undefined, { VMROLL_LOG_FORMAT: '' }), 'json');
    assert.equal(cacheDirOf('/c', { VMROLL_CACHE_DIR: '/e' }), '/c');
    assert.equal(cacheDirOf(undefined, { VMROLL_CACHE_DIR: '/e' }), '/e');
    assert.equal(cacheDirOf(undefined, {}), '.vmroll/cache');
  });
});
