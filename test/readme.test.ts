/**
 * Every command README.md shows in a ```sh block is run exactly as printed, by bash, in a
 * scratch copy of the project (package.json copied; bin/, reconciler/, schemas/, fixtures/ and
 * node_modules linked), in the order the README gives them, so later commands see what earlier
 * ones made. New commands added to the README are picked up without touching this file.
 *
 * How commands are run:
 * - A line ending in `&` starts in the background (as `vmroll sim … &` does); the next command
 *   waits for the file it names with `--kubeconfig-out`, else for its first line of output.
 *   Background commands are stopped with SIGTERM after the last command and must exit 0.
 * - Long-running commands (`npm start`, `vmroll run` without `--once`) run until their first
 *   sync line (`sync <commit>: …`) appears, then vmroll gets SIGTERM and the command must exit 0.
 * - Every other command must exit 0 within a generous bound.
 * - A block preceded by `<!-- readme-test: skip: <why> -->` is not run; the reason is required
 *   (npm ci would reinstall the dependencies under the test, npm test would run this suite
 *   again, and a real GitHub repository cannot be reached from a test).
 *
 * The scratch folder gets what the README's commands name: `./vms-repo`, a Git repository with
 * the example VMs under `vms/` on `main` and a `feature` branch (web: 4 sockets), and Debian's
 * kubectl on PATH (test/helpers/kubectl.ts). HOME is the scratch folder, KUBECONFIG is unset.
 */
import assert from 'node:assert/strict';
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { copyFileSync, cpSync, existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { ROOT } from './helpers/cases.ts';
import { debianKubectl } from './helpers/kubectl.ts';
import { parse as parseYaml } from 'yaml';
import { parseConfig, repositoriesOf } from '../reconciler/configFile.ts';
import { RestartAnnotation, RestartPolicy, vmRestartPolicy } from '../reconciler/restart/index.ts';

/** One command as README prints it, with the block it came from. */
export interface ReadmeCommand {
  /** The command text, continuation lines joined as bash joins them. */
  text: string;
  /** 1-based line of README.md where the command starts. */
  line: number;
  /** Started in the background (`… &`). */
  background: boolean;
}

/** A skipped block and why. */
export interface SkippedBlock {
  line: number;
  reason: string;
  commands: string[];
}

/** The commands of every ```sh block of `markdown`, and the blocks marked to skip. */
export function readmeCommands(markdown: string): { commands: ReadmeCommand[]; skipped: SkippedBlock[] } {
  const lines = markdown.split('\n');
  const commands: ReadmeCommand[] = [];
  const skipped: SkippedBlock[] = [];
  let previous = '';
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i] ?? '';
    if (!/^```(sh|bash|shell|console)\s*$/.test(line)) {
      if (line.trim() !== '') previous = line.trim();
      continue;
    }
    const start = i + 1;
    const body: Array<{ text: string; line: number }> = [];
    for (i++; i < lines.length && !/^```\s*$/.test(lines[i] ?? ''); i++) body.push({ text: lines[i] ?? '', line: i + 1 });
    const joined: Array<{ text: string; line: number }> = [];
    for (let j = 0; j < body.length; j++) {
      const first = body[j] as { text: string; line: number };
      let text = first.text;
      while (text.endsWith('\\') && j + 1 < body.length) text = `${text.slice(0, -1)}${(body[++j] as { text: string }).text}`;
      if (text.trim() !== '' && !text.trim().startsWith('#')) joined.push({ text: text.trim(), line: first.line });
    }
    const skip = /^<!--\s*readme-test:\s*skip:\s*(.+?)\s*-->$/.exec(previous);
    if (skip !== null) {
      skipped.push({ line: start, reason: skip[1] ?? '', commands: joined.map((c) => c.text) });
    } else {
      for (const c of joined) {
        // A trailing `&` (not `&&`) outside a comment sends the command to the background.
        const code = c.text.replace(/\s+#.*$/, '');
        const background = /[^&]&\s*$/.test(code);
        commands.push({ text: background ? code.replace(/&\s*$/, '').trim() : c.text, line: c.line, background });
      }
    }
    previous = '';
  }
  return { commands, skipped };
}

/** Whether a command keeps running until stopped: `npm start`, or `vmroll run` without `--once`. */
function longRunning(text: string): boolean {
  const code = text.replace(/\s+#.*$/, '');
  return /\bnpm start\b/.test(code) || (/\bvmroll run\b/.test(code) && !/\s--once\b/.test(code));
}

/** Every descendant process of `pid` (Linux /proc), with its command line. */
function descendants(pid: number): Array<{ pid: number; cmdline: string }> {
  const parentOf = new Map<number, number>();
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      // The command name (field 2) may hold spaces and parentheses: the fields after the last ')' are fixed.
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      parentOf.set(Number(entry), ppid);
    } catch {
      // The process ended while we looked.
    }
  }
  const out: Array<{ pid: number; cmdline: string }> = [];
  const walk = (p: number): void => {
    for (const [child, parent] of parentOf) {
      if (parent !== p) continue;
      let cmdline = '';
      try {
        cmdline = readFileSync(`/proc/${child}/cmdline`, 'utf8').split('\0').filter((a) => a !== '').join(' ');
      } catch {
        continue;
      }
      out.push({ pid: child, cmdline });
      walk(child);
    }
  };
  walk(pid);
  return out;
}

/** A command started by bash, its output and its exit. */
interface Started {
  command: ReadmeCommand;
  child: ChildProcess;
  output: () => string;
  exit: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

describe('README.md: every command runs as printed', function () {
  this.timeout(900_000);
  let dir: string;
  let env: NodeJS.ProcessEnv;
  const background: Started[] = [];
  const started: Started[] = [];
  const { commands, skipped } = readmeCommands(readFileSync(path.join(ROOT, 'README.md'), 'utf8'));

  before(async function () {
    const kubectl = await debianKubectl();
    if (!kubectl.ok) throw new Error(`README shows kubectl commands and kubectl is not available: ${kubectl.reason}`);
    dir = mkdtempSync(path.join(tmpdir(), 'vmroll-readme-'));
    copyFileSync(path.join(ROOT, 'package.json'), path.join(dir, 'package.json'));
    // tsconfig.build.json: npx installs this package into its cache to run its bin, which runs `prepare` (npm run build).
    for (const name of ['bin', 'reconciler', 'schemas', 'fixtures', 'node_modules', 'tsconfig.json', 'tsconfig.build.json']) symlinkSync(path.join(ROOT, name), path.join(dir, name));
    // ./vms-repo: the VMs under vms/ on main, and a feature branch that hot-plugs CPUs into web.
    const repo = path.join(dir, 'vms-repo');
    cpSync(path.join(ROOT, 'fixtures', 'example-repo'), repo, { recursive: true });
    const git = (...args: string[]): void => {
      execFileSync('git', ['-c', 'user.name=readme', '-c', 'user.email=readme@vmroll.invalid', '-c', 'commit.gpgsign=false', '-c', 'init.defaultBranch=main', ...args], { cwd: repo, stdio: 'ignore' });
    };
    git('init', '-q');
    git('add', '-A');
    git('commit', '-q', '-m', 'the example VMs');
    git('checkout', '-q', '-b', 'feature');
    const web = path.join(repo, 'vms', 'web.yaml');
    writeFileSync(web, readFileSync(web, 'utf8').replace('sockets: 2', 'sockets: 4'));
    git('commit', '-q', '-am', 'web: 4 sockets');
    git('checkout', '-q', 'main');
    env = { PATH: `${path.dirname(kubectl.path)}${path.delimiter}${process.env['PATH'] ?? '/usr/bin:/bin'}`, HOME: dir, npm_config_cache: path.join(dir, '.npm'), npm_config_update_notifier: 'false' };
  });

  after(async () => {
    // Whatever a failed assertion left running: the whole process group.
    for (const b of started) {
      if (b.child.exitCode === null && b.child.signalCode === null) {
        try {
          process.kill(-(b.child.pid as number), 'SIGKILL');
        } catch {
          // Already gone.
        }
      }
    }
    if (dir !== undefined) rmSync(dir, { recursive: true, force: true });
  });

  const start = (command: ReadmeCommand): Started => {
    // detached: its own process group, so nothing it starts outlives the test.
    const child = spawn('bash', ['-c', command.text], { cwd: dir, env, detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    child.stdout?.on('data', (d: Buffer) => (output += d.toString()));
    child.stderr?.on('data', (d: Buffer) => (output += d.toString()));
    const exit = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
    const s = { command, child, output: () => output, exit };
    started.push(s);
    return s;
  };

  /** Waits (bounded) until `ready()` holds, failing early when the command ended. */
  const until = async (s: Started, what: string, ready: () => boolean, boundMs: number): Promise<void> => {
    const deadline = Date.now() + boundMs;
    while (!ready()) {
      if (s.child.exitCode !== null || s.child.signalCode !== null) throw new Error(`README.md:${s.command.line}: \`${s.command.text}\` ended before ${what}:\n${s.output()}`);
      if (Date.now() > deadline) throw new Error(`README.md:${s.command.line}: \`${s.command.text}\`: no ${what} within ${boundMs / 1000} s:\n${s.output()}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  };

  /** SIGTERM to vmroll itself (not to npm or npx, which would die of the signal rather than report vmroll's exit). */
  const stopVmroll = async (s: Started): Promise<void> => {
    // node running bin/vmroll.js, directly (npm start) or through npx's node_modules/.bin/vmroll link.
    const vmrolls = descendants(s.child.pid as number).filter((p) => /^\S*\bnode\s+\S*\bvmroll(\.js)?(\s|$)/.test(p.cmdline));
    assert.ok(vmrolls.length > 0, `README.md:${s.command.line}: no vmroll process under \`${s.command.text}\``);
    for (const p of vmrolls) process.kill(p.pid, 'SIGTERM');
    const { code, signal } = await s.exit;
    assert.equal(signal, null, `README.md:${s.command.line}: \`${s.command.text}\` died of ${signal}:\n${s.output()}`);
    assert.equal(code, 0, `README.md:${s.command.line}: \`${s.command.text}\` exited ${code} after SIGTERM:\n${s.output()}`);
  };

  it('finds the commands, and every skipped block says why', () => {
    assert.ok(commands.length >= 8, `only ${commands.length} commands found in README.md`);
    for (const s of skipped) assert.ok(s.reason.length >= 20, `README.md:${s.line}: a skipped block must say why`);
    // Only what cannot run in a test is skipped: the install, the suite itself, and GitHub.
    assert.deepEqual(
      skipped.flatMap((s) => s.commands).filter((c) => !/^npm (ci|test)\b/.test(c) && !/github\.com/.test(c)),
      [],
      'a skipped block holds only npm ci, npm test or commands that need github.com',
    );
    assert.ok(commands.some((c) => c.background), 'the vmroll sim … & line is found as a background command');
  });

  it('runs every command in order, each exiting 0', async () => {
    for (const command of commands) {
      const s = start(command);
      if (command.background) {
        background.push(s);
        const out = /--kubeconfig-out\s+(\S+)/.exec(command.text)?.[1];
        if (out !== undefined) await until(s, `kubeconfig ${out}`, () => existsSync(path.join(dir, out)) && s.output().includes('kubeconfig written'), 120_000);
        else await until(s, 'first line of output', () => s.output().includes('\n'), 120_000);
        continue;
      }
      if (longRunning(command.text)) {
        await until(s, 'first sync line', () => /^sync [0-9a-f]{12}: /m.test(s.output()), 240_000);
        await stopVmroll(s);
        continue;
      }
      const bound = setTimeout(() => process.kill(-(s.child.pid as number), 'SIGKILL'), 240_000);
      const { code, signal } = await s.exit;
      clearTimeout(bound);
      assert.equal(signal, null, `README.md:${command.line}: \`${command.text}\` was killed (${signal}) after 240 s:\n${s.output()}`);
      assert.equal(code, 0, `README.md:${command.line}: \`${command.text}\` exited ${code}:\n${s.output()}`);
    }
    for (const b of background) await stopVmroll(b);
  });
});

describe('README.md command extraction', () => {
  it('joins continuation lines, drops comment lines, sees & and the skip marker', () => {
    const md = [
      '```sh',
      '# a comment line',
      'npx vmroll run --repo x \\',
      '  --once      # trailing comment',
      'npx vmroll sim --kubeconfig-out k &',
      'a && b',
      '```',
      '',
      '<!-- readme-test: skip: because it cannot run here -->',
      '```sh',
      'npm ci',
      '```',
    ].join('\n');
    const { commands, skipped } = readmeCommands(md);
    assert.deepEqual(commands, [
      { text: 'npx vmroll run --repo x   --once      # trailing comment', line: 3, background: false },
      { text: 'npx vmroll sim --kubeconfig-out k', line: 5, background: true },
      { text: 'a && b', line: 6, background: false },
    ]);
    assert.deepEqual(skipped, [{ line: 10, reason: 'because it cannot run here', commands: ['npm ci'] }]);
    assert.equal(longRunning('npx vmroll run --repo x --once'), false);
    assert.equal(longRunning('npx vmroll run --repo x   # not --once'), true);
    assert.equal(longRunning('npm start   # vmroll run'), true);
  });
});

describe("README.md's restart section: its YAML is what vmroll reads", () => {
  const readme = readFileSync(path.join(ROOT, 'README.md'), 'utf8');
  const section = readme.slice(readme.indexOf('## Restarts'), readme.indexOf('\n## ', readme.indexOf('## Restarts') + 1));
  const blocks = [...section.matchAll(/^```yaml\n([\s\S]*?)^```$/gm)].map((m) => m[1] ?? '');

  it('the vmroll.yaml example loads, with the policy, window, budget and timeout it says', () => {
    assert.equal(blocks.length, 2, 'a vmroll.yaml block and a VM metadata block');
    const [repo] = repositoriesOf(parseConfig(blocks[0] ?? '', path.join(ROOT, 'vmroll.yaml')));
    const r = repo?.restart;
    assert.ok(r !== undefined, 'the repository has a restart policy');
    assert.equal(r.policy, RestartPolicy.window);
    assert.deepEqual(r.windows.map((w) => [w.schedule.text, w.durationMs, w.timeZone]), [['0 2 * * SAT', 2 * 3_600_000, 'Europe/Berlin']]);
    assert.deepEqual(r.budget, { concurrent: 1, perWindow: 5 });
    assert.equal(r.healthTimeoutMs, 10 * 60_000);
  });

  it("the VM metadata example protects the VM, overrides its policy and names its group and request", () => {
    const meta = (parseYaml(blocks[1] ?? '') as { metadata: { labels: Record<string, string>; annotations: Record<string, string> } }).metadata;
    const vm = vmRestartPolicy(repositoriesOf(parseConfig(blocks[0] ?? '', path.join(ROOT, 'vmroll.yaml')))[0]?.restart ?? assert.fail('no policy'), { namespace: 'shop', ...meta });
    assert.deepEqual(vm, { policy: RestartPolicy.onChange, source: 'annotation', protected: true, group: 'payments', problems: [] });
    assert.equal(meta.annotations[RestartAnnotation.requested], '2026-01-03');
  });
});
