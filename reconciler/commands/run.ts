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

/** The logger factory, re-exported for the callers that imported it from here. */
export { makeLogger } from '../logging.ts';

/** Help text of `vmroll run`. */
export const RUN_HELP = `Usage: vmroll run --repo <url|path> [--kubeconfig <file> | --cluster sim] [options]

Follows a Git repository of VirtualMachine manifests and applies them to the cluster:
fetch, plan every changed VM with the rollout engine, apply only what changed, and report
what went live and what waits for a restart. The first line names the target (the API
server, its context and kubeconfig, or the embedded simulator and its state file): on
stdout, or on stderr with --output json so stdout holds only the JSON document.

The cluster is chosen as kubectl chooses it: --kubeconfig, else KUBECONFIG, else the pod's
service account; --cluster kube alone uses ~/.kube/config. The embedded simulator runs only
when chosen (--cluster sim, or --sim-state / --sim-kubevirt). With nothing chosen, vmroll
refuses (exit 2) rather than guess.

Options:
  --config <file>            vmroll.yaml: several repositories, the namespaces each may write,
                             intervals, reporters, leader election (else VMROLL_CONFIG);
                             flags and environment variables override it. Reloaded when it
                             changes (a ConfigMap update too; its folder is watched and the
                             file read every 5s, VMROLL_CONFIG_POLL_INTERVAL): repositories
                             added start, removed ones stop (their VMs stay), changed ones are
                             rebuilt once their sync under way ends; the cluster, listen, the
                             webhook secret, leader election, cacheDir and logLevel need a
                             restart. A bad file is logged (file:line), the last good
                             configuration keeps running
  --repo <url|path>          Git repository over http(s), or a local repository path (SSH is
                             not supported yet); without it, and only with --cluster sim: the
                             bundled example (fixtures/example-repo as a Git repository in
                             .vmroll/example-repo, state in .vmroll/sim-state.json)
  --ref <ref>                branch, tag or commit to follow (default main; --branch is an
                             older name for it; else VMROLL_REF)
  --path <dir>               folder of the repository holding the manifests (default: all)
  --interval <duration>      time between syncs, with ±10% jitter (default 1m); a sync that
                             failed on a transient error (Git host or API server down) is
                             retried after 5s, doubling up to the interval
  --once                     sync once and exit
  --cluster sim|kube         sim: the embedded KubeVirt simulator; kube: the Kubernetes API
                             (else VMROLL_CLUSTER; see above when not given)
  --kubeconfig <file>        kubeconfig of the cluster (else KUBECONFIG, the pod's service
                             account, or with --cluster kube ~/.kube/config)
  --context <name>           kubeconfig context (default: its current context)
  --sim-state <file>         keep the simulated cluster in this file, shared between runs
  --sim-kubevirt <file>      the KubeVirt CR the simulator emulates (version, strategy, gates)
  --prune                    delete VMs this repository applied and no longer defines
                             (never one whose file failed to parse, one annotated
                             vmroll.dev/prune: disabled, nor any when the commit defines no
                             VM under --path); without it they are reported as orphans
  --strict                   a manifest file's warnings are errors of that file: documents of
                             other kinds (skipped otherwise, and listed as warnings) and fields
                             KubeVirt does not define (a typo such as socket: beside sockets);
                             the file's VMs are then held: neither applied nor pruned
  --listen <addr>            serve /healthz, /readyz, /metrics (Prometheus) and POST
                             /webhook/github (e.g. 127.0.0.1:8080)
  --leader-elect             several replicas, one reconciling: the holder of a Lease
                             (--cluster kube; else VMROLL_LEADER_ELECT=true)
  --leader-election-namespace <ns>
                             namespace of the Lease (default: the pod's, else vmroll)
  -o, --output text|json     text (default): a line per sync and per changed VM and field;
                             json: with --once, the VmPlan of the sync, also when the sync
                             fails (the failure in errors)
  --cache-dir <dir>          where http(s) repositories are cloned (default .vmroll/cache)
  --git-token-file <file>    Git token (else VMROLL_GIT_TOKEN or GIT_TOKEN)
  --webhook-secret-file <f>  GitHub webhook secret (else VMROLL_WEBHOOK_SECRET)
  --github-repo <owner/name> report to GitHub: commit status vmroll/sync on every synced
                             commit, vmroll/plan and one sticky plan comment on every open
                             pull request (reviewed every interval and on pull_request webhooks)
  --github-api-url <url>     GitHub API root (default https://api.github.com; Enterprise:
                             https://HOST/api/v3)
  --github-token-file <f>    GitHub token (else VMROLL_GITHUB_TOKEN or GITHUB_TOKEN)
  --gitea-url <url> --gitea-repo <owner/name> --gitea-token-file <f>
                             the same reports on Gitea (token else VMROLL_GITEA_TOKEN or
                             GITEA_TOKEN)
  --status-target-url <url>  link shown on commit statuses
  --log-level <level>        pino level on stderr (default info)
  --log-format json|text     logs on stderr as JSON lines (default) or as readable text
  -h, --help                 this text

Exit status with --once: 0 synced, 1 synced with manifest or apply errors, or the sync
failed; 2 bad usage. SIGTERM or SIGINT: the sync under way finishes, queued reports get up
to 10 s, the lease is released, exit 0.`;


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
