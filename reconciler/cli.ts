/** The `vmroll` entry point: parses the command name and hands over to commands/. */
import { readFileSync } from 'node:fs';
import type { CommandIO } from './commands/common.ts';
import { DEMO_HELP, DIFF_HELP, PLAN_HELP, RUN_HELP, SIM_HELP } from './commands/help.ts';
import { projectPath } from './projectRoot.ts';

/** A command's implementation: argv → exit status. */
type CommandRun = (argv: string[], io: CommandIO) => Promise<number>;

interface Command {
  summary: string;
  help: string;
  /** Imports the command's module when the command runs, so that one command never pays for another's dependencies. */
  load(): Promise<CommandRun>;
}

const COMMANDS: Record<string, Command> = {
  run: { summary: 'follow a Git repository of VM manifests and apply it (the reconcile loop)', help: RUN_HELP, load: async () => (await import('./commands/run.ts')).runRun },
  demo: { summary: 'a scripted tour: live CPU change, staged change, revert, restart', help: DEMO_HELP, load: async () => (await import('./commands/demo.ts')).runDemo },
  diff: { summary: 'predict live vs staged rollout of one VM change, offline, from files', help: DIFF_HELP, load: async () => (await import('./commands/diff.ts')).runDiff },
  plan: {
    summary: 'plan a commit or pull request against a cluster, and post it to the pull request',
    help: PLAN_HELP,
    load: async () => {
      const { runPlan } = await import('./commands/plan.ts');
      return (argv, io) => runPlan(argv, io);
    },
  },
  sim: {
    summary: 'serve the embedded KubeVirt simulator as a Kubernetes API (kubectl, client-node)',
    help: SIM_HELP,
    load: async () => {
      const { runSim } = await import('./commands/sim.ts');
      return (argv, io) => runSim(argv, io);
    },
  },
};

/** Top-level help. */
export function usage(): string {
  const width = Math.max(...Object.keys(COMMANDS).map((k) => k.length));
  return [
    'Usage: vmroll <command> [options]',
    '',
    'GitOps for KubeVirt virtual machines: what a change will hot-plug and what waits for a restart.',
    '',
    'Commands:',
    ...Object.entries(COMMANDS).map(([name, c]) => `  ${name.padEnd(width)}  ${c.summary}`),
    '',
    "Run 'vmroll help <command>' (or 'vmroll <command> --help') for a command's options; 'vmroll --version' for the version.",
  ].join('\n');
}

/** `vmroll <version>`, the version being package.json's. */
export function versionLine(): string {
  const pkg = JSON.parse(readFileSync(projectPath('package.json'), 'utf8')) as { version?: unknown };
  return `vmroll ${String(pkg.version)}`;
}

const stdio: CommandIO = {
  out: (t) => process.stdout.write(`${t}\n`),
  err: (t) => process.stderr.write(`${t}\n`),
};

/** Runs the CLI and returns the exit status. */
export async function main(argv: string[], io: CommandIO = stdio): Promise<number> {
  const [name, ...rest] = argv;
  if (name === '--version') {
    io.out(versionLine());
    return 0;
  }
  if (name === 'help' && rest.length > 0) {
    const topic = Object.hasOwn(COMMANDS, rest[0] ?? '') ? COMMANDS[rest[0] ?? ''] : undefined;
    if (topic === undefined || rest.length > 1) {
      io.err(`vmroll help: no command "${rest.join(' ')}"; the commands are ${Object.keys(COMMANDS).join(', ')}`);
      return 2;
    }
    io.out(topic.help);
    return 0;
  }
  if (name === undefined || name === '--help' || name === '-h' || name === 'help') {
    io.out(usage());
    return name === undefined ? 2 : 0;
  }
  const command = Object.hasOwn(COMMANDS, name) ? COMMANDS[name] : undefined;
  if (command === undefined) {
    io.err(`vmroll: unknown command "${name}"\n${usage()}`);
    return 2;
  }
  if (rest.length === 1 && (rest[0] === '--help' || rest[0] === '-h')) {
    // What the command itself prints for --help, without importing it.
    io.out(command.help);
    return 0;
  }
  try {
    return await (await command.load())(rest, io);
  } catch (e) {
    // Imported as the command was, dynamically: where this module itself was loaded through
    // require (mocha loads the tests so, through tsx), a static import would be another copy of
    // usage.ts than the one the command's modules threw from, and instanceof would miss.
    const { UsageError } = await import('./usage.ts');
    if (e instanceof UsageError) {
      io.err(`vmroll ${name}: ${e.message}`);
      return 2;
    }
    if (e instanceof TypeError && 'code' in e && String((e as { code: unknown }).code).startsWith('ERR_PARSE_ARGS')) {
      io.err(`vmroll ${name}: ${e.message} (see vmroll ${name} --help)`);
      return 2;
    }
    throw e;
  }
}
