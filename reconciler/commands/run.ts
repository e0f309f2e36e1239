/** `vmroll run`: argv → configuration → the controller (controller/main.ts), once or until a signal. */
import { parseArgs } from 'node:util';
import type { Logger } from 'pino';
import { SimCluster } from '../cluster/sim/simCluster.ts';
import { describeTarget } from '../cluster/target.ts';
import { EXAMPLE_FIXTURES, type RunConfig, RunOutput, loadKubeVirt, runConfig, runConfigSource } from '../config.ts';
import { type ControllerHandle, type StartRunOptions, runController, secretsOf, startController } from '../controller/main.ts';
import { makeLogger } from '../logging.ts';
import { ensureExampleRepo } from '../source/exampleRepo.ts';
import type { CommandIO } from './common.ts';
import { RUN_HELP } from './help.ts';

/** The logger factory, re-exported for the callers that imported it from here. */
export { makeLogger } from '../logging.ts';

/** Help text of `vmroll run`, kept in help.ts so that `vmroll help run` loads none of this module's imports. */
export { RUN_HELP } from './help.ts';


/** The running controller, with the embedded simulator when that is the cluster. */
export type RunHandle = ControllerHandle & {
  /** The embedded simulator, when that is the backend. */
  sim: SimCluster | null;
};

/**
 * Starts the controller (without --once semantics); used by `vmroll run` and the demo. The
 * simulator is composed here: product paths under controller/ never reach cluster/sim/.
 */
export async function startRun(config: RunConfig, io: CommandIO, logger: Logger, options: StartRunOptions = {}): Promise<RunHandle> {
  const sim =
    config.cluster === 'sim'
      ? new SimCluster({
          ...(config.simState !== undefined ? { stateFile: config.simState } : {}),
          ...(config.simKubevirt !== undefined ? { kubevirt: loadKubeVirt(config.simKubevirt, '--sim-kubevirt') } : {}),
        })
      : null;
  // Neither the simulator nor a kubeconfig: an empty simulator, as before (run refuses this case earlier).
  const cluster = sim ?? (config.kubeconfig === undefined ? new SimCluster() : undefined);
  const handle = await startController(config, logger, {
    ...options,
    out: io.out,
    ...(cluster !== undefined && { cluster }),
    ...(sim !== null && { save: () => sim.save() }),
  });
  return Object.assign(handle, { sim });
}

/** Runs `vmroll run`. */
export async function runRun(argv: string[], io: CommandIO): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: {
      repo: { type: 'string' },
      ref: { type: 'string' },
      branch: { type: 'string' },
      path: { type: 'string' },
      interval: { type: 'string' },
      once: { type: 'boolean' },
      cluster: { type: 'string' },
      kubeconfig: { type: 'string' },
      context: { type: 'string' },
      'sim-state': { type: 'string' },
      'sim-kubevirt': { type: 'string' },
      prune: { type: 'boolean' },
      strict: { type: 'boolean' },
      listen: { type: 'string' },
      output: { type: 'string', short: 'o' },
      'cache-dir': { type: 'string' },
      'git-token-file': { type: 'string' },
      'webhook-secret-file': { type: 'string' },
      'github-repo': { type: 'string' },
      'github-api-url': { type: 'string' },
      'github-token-file': { type: 'string' },
      'gitea-url': { type: 'string' },
      'gitea-repo': { type: 'string' },
      'gitea-token-file': { type: 'string' },
      'status-target-url': { type: 'string' },
      config: { type: 'string' },
      'leader-elect': { type: 'boolean' },
      'leader-election-namespace': { type: 'string' },
      'log-level': { type: 'string' },
      'log-format': { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
    strict: true,
    allowPositionals: false,
  });
  if (values.help) {
    io.out(RUN_HELP);
    return 0;
  }
  const config = runConfig(values);
  // The header (target, example) goes where people read; with --output json stdout holds only the document.
  const header = config.output === RunOutput.json ? io.err : io.out;
  header(`target: ${describeTarget(config)}`);
  const secrets = secretsOf(config);
  const logger = makeLogger(config.logLevel, secrets, process.stderr, config.logFormat);
  if (config.example) {
    const { created } = await ensureExampleRepo(config.repo, EXAMPLE_FIXTURES);
    header(
      `${created ? 'Created' : 'Using'} the example repository ${config.repo} (bundled with vmroll, for the simulator only).\n` +
        `Edit a VM there and commit (git -C ${config.repo} commit -am "…"); ${config.once ? 'the next vmroll run syncs it' : `vmroll syncs every ${Math.round(config.intervalMs / 1000)}s`}.`,
    );
  }
  // A --config file is reloaded when it changes (not with --once: that run ends first).
  const reload = config.once ? undefined : runConfigSource(values);
  const handle = await startRun(config, io, logger, { secrets, ...(reload !== undefined && { reload }) });
  return runController(handle, config, logger, io.out);
}
