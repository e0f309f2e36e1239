/**
 * `vmroll run` (not --once) stops in order on SIGTERM at any moment, including during its first
 * sync: the signal handlers are in place before that sync starts, so a busy machine that delays
 * the sync cannot turn a SIGTERM into Node's default kill.
 */
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { cpSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { ROOT } from './helpers/cases.ts';
import { WAIT_MS, until } from './helpers/waitFor.ts';

describe('vmroll run: SIGTERM during the first sync', function () {
  this.timeout(4 * WAIT_MS);
  let dir: string;

  before(() => {
    dir = mkdtempSync(path.join(tmpdir(), 'vmroll-signal-'));
    const repo = path.join(dir, 'repo');
    cpSync(path.join(ROOT, 'fixtures', 'example-repo'), repo, { recursive: true });
    for (const args of [['init', '-q'], ['add', '-A'], ['commit', '-q', '-m', 'the example VMs']]) {
      execFileSync('git', ['-c', 'user.name=t', '-c', 'user.email=t@vmroll.invalid', '-c', 'commit.gpgsign=false', '-c', 'init.defaultBranch=main', ...args], { cwd: repo, stdio: 'ignore' });
    }
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('a SIGTERM sent as soon as vmroll listens (the first sync under way) ends it with exit 0 after "stopped"', async () => {
    const args = ['run', '--repo', path.join(dir, 'repo'), '--ref', 'main', '--path', 'vms', '--interval', '1h', '--cluster', 'sim', '--sim-kubevirt', path.join(ROOT, 'fixtures', 'example-cluster', 'kubevirt.yaml'), '--listen', '127.0.0.1:0'];
    const child = spawn(process.execPath, [path.join(ROOT, 'bin', 'vmroll.js'), ...args], { cwd: dir, env: { PATH: process.env['PATH'] ?? '/usr/bin:/bin', HOME: dir }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.stdout.resume();
    const exit = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
    try {
      await until('the "listening" line', () => /"msg":"listening"/.test(stderr) || child.exitCode !== null);
      child.kill('SIGTERM');
      const { code, signal } = await exit;
      assert.equal(signal, null, `vmroll died of ${signal} instead of stopping in order:\n${stderr}`);
      assert.equal(code, 0, stderr);
      assert.match(stderr, /"msg":"stopped"/);
    } finally {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    }
  });
});
