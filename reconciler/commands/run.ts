/** `vmroll run`: the reconcile loop (fetch → plan → apply → report), once or every interval and on webhooks. */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { pino, type Logger } from 'pino';
import type { ClusterBackend } from '../cluster/backend.ts';
import { KubeCluster } from '../cluster/kube.ts';
import { SimCluster } from '../cluster/sim/simCluster.ts';
import { EXAMPLE_FIXTURES, type GitHostConfig, type RunConfig, runConfig } from '../config.ts';
import { GiteaReporter } from '../report/gitea.ts';
import { GitHubReporter } from '../report/github.ts';
import { ReviewState, reportMergedOutcome, reviewPullRequests } from '../report/prReview.ts';
import { ReportQueue } from '../report/queue.ts';
import { StatusContext, type GitHostReporter } from '../report/reporter.ts';
import { ensureExampleRepo } from '../source/exampleRepo.ts';
import { type ReconcileReport, Reconciler, formatSummary } from '../loop.ts';
import type { Obj } from '../rollout/index.ts';
import { redactUrl } from '../source/errors.ts';
import { GitSource } from '../source/gitSource.ts';
import { startWebhookServer } from '../source/webhookServer.ts';
import { parseYamlDocuments } from '../source/yamlDocs.ts';
import { type CommandIO, UsageError, formatValue } from './common.ts';

/** Help text of `vmroll run`. */
export const RUN_HELP = `Usage: vmroll run --repo <url|path> [options]

Follows a Git repository of VirtualMachine manifests and applies them to the cluster:
fetch, plan every changed VM with the rollout engine, apply only what changed, and report
what went live and what waits for a restart.

Options:
  --repo <url|path>          Git repository over http(s), or a local repository path;
                             without it: the embedded default (fixtures/example-repo as a
                             Git repository in .vmroll/example-repo, on the simulator)
  --branch <ref>             branch, tag or commit to follow (default main)
  --path <dir>               folder of the repository holding the manifests (default: all)
  --interval <duration>      time between syncs, with ±10% jitter (default 1m)
  --once                     sync once and exit
  --cluster sim|kube         sim: the embedded KubeVirt simulator; kube: the Kubernetes API
                             (default: kube with --kubeconfig or inside a pod, else sim)
  --kubeconfig <file>        kubeconfig of the cluster (with --cluster kube and no flag:
                             KUBECONFIG, the pod's service account, or ~/.kube/config)
  --context <name>           kubeconfig context (default: its current context)
  --sim-state <file>         keep the simulated cluster in this file, shared between runs
  --sim-kubevirt <file>      the KubeVirt CR the simulator emulates (version, strategy, gates)
  --prune                    delete VMs this repository applied and no longer defines
                             (never one whose file failed to parse)
  --listen <addr>            serve /healthz, /readyz and POST /webhook/github (e.g. 127.0.0.1:8080)
  --output json|text         json: with --once, the VmPlan of the sync (default text)
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
                             the same reports on Gitea (token else GITEA_TOKEN)
  --status-target-url <url>  link shown on commit statuses
  --log-level <level>        pino level on stderr (default info)
  -h, --help                 this text

Exit status with --once: 0 synced, 1 synced with manifest or apply errors, or the sync
failed; 2 bad usage.`;

/** Builds the pino logger: JSON lines on stderr, secrets redacted. */
export function makeLogger(level: string, secrets: readonly string[], destination: NodeJS.WritableStream = process.stderr): Logger {
  const hide = secrets.filter((s) => s.length > 0);
  return pino(
    {
      level,
      base: null,
      redact: { paths: ['token', 'secret', '*.token', '*.secret', 'headers.authorization'], censor: '[redacted]' },
      hooks: {
        streamWrite: (line) => hide.reduce((acc, s) => acc.split(s).join('[redacted]'), line),
      },
    },
    destination,
  );
}

function loadKubeVirt(file: string): Obj {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch {
    throw new UsageError(`--sim-kubevirt: ${file} cannot be read`);
  }
  const doc = parseYamlDocuments(text, file)[0];
  const v = doc?.value as Obj | undefined;
  if (v === undefined || v['kind'] !== 'KubeVirt') throw new UsageError(`${file}:${doc?.line ?? 1}: expected a KubeVirt object (--sim-kubevirt)`);
  return v;
}

/** Renders one sync for people. */
export function renderReport(r: ReconcileReport): string {
  const lines = [`sync ${r.commit.slice(0, 12)}: ${formatSummary(r.summary)} (${Math.round(r.timings.total)} ms, ${r.writes} write${r.writes === 1 ? '' : 's'})`];
  for (const e of r.plan.errors) lines.push(`  error ${e.file}${e.line !== null ? `:${e.line}` : ''}: ${e.message}`);
  for (const vm of r.plan.vms) {
    if (vm.action === 'none' && !vm.restartRequired) continue;
    lines.push(`  ${vm.action.padEnd(6)} ${vm.namespace}/${vm.name}${vm.restartRequired ? ` · RestartRequired: "${vm.conditionMessage ?? ''}"` : ''}`);
    for (const c of vm.changes) lines.push(`         ${c.rollout.padEnd(6)} ${c.path}: ${formatValue(c.from, 40)} → ${formatValue(c.to, 40)}`);
  }
  return lines.join('\n');
}

/** Everything a running `vmroll run` holds, so tests and `npm start` can drive and stop it. */
export interface RunHandle {
  reconciler: Reconciler;
  cluster: ClusterBackend;
  /** The embedded simulator, when that is the backend. */
  sim: SimCluster | null;
  config: RunConfig;
  /** Starts the interval timer (after the first sync). */
  start(): void;
  /** Runs one sync now (or joins the one under way). */
  trigger(reason: string): Promise<ReconcileReport | null>;
  stop(): Promise<void>;
  /** `host:port` of the webhook server, when listening. */
  address: string | null;
  /** Waits (bounded) until queued Git host reports are delivered; true when none is left. */
  flushReports(timeoutMs: number): Promise<boolean>;
}

/** Starts the loop (without --once semantics); used by `vmroll run` and the demo. */
export async function startRun(config: RunConfig, io: CommandIO, logger: Logger): Promise<RunHandle> {
  const isUrl = /^https?:\/\//.test(config.repo);
  const repoLabel = isUrl ? redactUrl(config.repo) : path.resolve(config.repo);
  const source = new GitSource({ repo: isUrl ? config.repo : path.resolve(config.repo), cacheDir: config.cacheDir, ...(config.gitToken !== undefined ? { token: config.gitToken } : {}) });
  const sim =
    config.cluster === 'sim'
      ? new SimCluster({
          ...(config.simState !== undefined ? { stateFile: config.simState } : {}),
          ...(config.simKubevirt !== undefined ? { kubevirt: loadKubeVirt(config.simKubevirt) } : {}),
        })
      : null;
  let kube: KubeCluster | null = null;
  try {
    if (config.kubeconfig !== undefined) kube = new KubeCluster({ kubeconfig: config.kubeconfig, logger: logger.child({ cluster: 'kube' }) });
  } catch (e) {
    // An unreadable or empty kubeconfig is a usage problem: say which file and stop.
    throw new UsageError(e instanceof Error ? e.message : String(e));
  }
  const cluster: ClusterBackend = sim ?? kube ?? new SimCluster();
  if (kube !== null) logger.info({ server: kube.server }, 'using the Kubernetes API');
  const host = config.gitHost !== undefined ? gitHostReporter(config.gitHost, logger) : null;
  const queue = host !== null ? new ReportQueue({ reporter: host, logger: logger.child({ reporter: host.kind }) }) : null;
  const target = config.gitHost?.targetUrl !== undefined ? { targetUrl: config.gitHost.targetUrl } : {};
  const review = new ReviewState();
  const reconciler = new Reconciler({
    source,
    repoLabel,
    ref: config.ref,
    path: config.path,
    cluster,
    prune: config.prune,
    logger,
    // `pending` only when the sync has something to write.
    onWork: (commit) => queue?.status({ sha: commit, context: StatusContext.sync, state: 'pending', description: 'vmroll is applying this commit', ...target }),
  });
  let reportedCommit: string | null = null;
  /** Statuses after a sync, then merged-PR outcomes and the review of open PRs, all in the sync's serial chain. */
  const reportSync = async (report: ReconcileReport): Promise<void> => {
    if (host === null || queue === null) return;
    // A sync of an already reported commit that changed nothing posts nothing.
    if (report.commit !== reportedCommit || report.writes > 0) {
      const failed = report.plan.errors.length > 0;
      queue.status({ sha: report.commit, context: StatusContext.sync, state: failed ? 'failure' : 'success', description: formatSummary(report.summary), ...target });
      reportedCommit = report.commit;
    }
    try {
      await reportMergedOutcome({ reporter: host, queue, source, report, repoLabel, logger, state: review });
      await reviewPullRequests({ reporter: host, queue, source, cache: reconciler.clusterCache, repoLabel, path: config.path, prune: config.prune, logger, state: review, ...target });
    } catch (e) {
      // The Git host being down delays reviews; the next interval tries again.
      logger.warn({ err: e instanceof Error ? e.message : String(e) }, 'pull request review failed');
    }
  };
  let running: Promise<ReconcileReport | null> | null = null;
  let again = false;
  let ready = false;
  let stopped = false;
  let timer: NodeJS.Timeout | null = null;

  const syncOnce = async (reason: string): Promise<ReconcileReport | null> => {
    try {
      logger.debug({ reason }, 'sync starting');
      const report = await reconciler.reconcile();
      sim?.save();
      ready = true;
      await reportSync(report);
      if (config.output === 'text') io.out(renderReport(report));
      return report;
    } catch (e) {
      logger.error({ err: e instanceof Error ? e.message : String(e) }, 'sync failed');
      if (config.output === 'text') io.err(`sync failed: ${e instanceof Error ? e.message : String(e)}`);
      return null;
    }
  };
  const trigger = (reason: string): Promise<ReconcileReport | null> => {
    if (running !== null) {
      again = true;
      return running;
    }
    running = (async () => {
      let report = await syncOnce(reason);
      while (again && !stopped) {
        again = false;
        report = await syncOnce('queued');
      }
      running = null;
      return report;
    })();
    return running;
  };
  const schedule = (): void => {
    if (stopped || config.once) return;
    const jitter = config.intervalMs * (0.9 + Math.random() * 0.2);
    timer = setTimeout(() => {
      void trigger('interval').then(schedule);
    }, jitter);
  };
  const server =
    config.listen !== undefined
      ? await startWebhookServer({
          listen: config.listen,
          ...(config.webhookSecret !== undefined ? { webhookSecret: config.webhookSecret } : {}),
          isReady: () => ready,
          onPush: (push) => {
            logger.info({ ref: push.ref, after: push.after.slice(0, 12) }, 'push webhook: syncing now');
            void trigger('webhook');
          },
          onPullRequest: () => {
            // A sync is followed by the pull request review, so one trigger does both.
            if (host !== null) void trigger('pull_request');
          },
          logger,
        })
      : null;
  return {
    reconciler,
    cluster,
    sim,
    config,
    trigger,
    address: server?.address ?? null,
    flushReports: (timeoutMs) => queue?.flush(timeoutMs) ?? Promise.resolve(true),
    start() {
      schedule();
    },
    async stop() {
      stopped = true;
      if (timer !== null) clearTimeout(timer);
      if (running !== null) await running;
      await server?.close();
      // Reports still queued get a bounded chance to reach the Git host before exit.
      if (queue !== null && !(await queue.flush(10_000))) logger.warn({ pending: queue.pending() }, 'reports not delivered before shutdown');
      await queue?.close();
      reconciler.close();
      sim?.save();
      kube?.close();
    },
  };
}

/** The reporter for the configured Git host. */
function gitHostReporter(config: GitHostConfig, logger: Logger): GitHostReporter {
  if (config.kind === 'gitea') return new GiteaReporter({ repo: config.repo, apiUrl: config.apiUrl ?? '', token: config.token, logger });
  return new GitHubReporter({ repo: config.repo, token: config.token, ...(config.apiUrl !== undefined ? { apiUrl: config.apiUrl } : {}), logger });
}

/** Runs `vmroll run`. */
export async function runRun(argv: string[], io: CommandIO): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: {
      repo: { type: 'string' },
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
      listen: { type: 'string' },
      output: { type: 'string' },
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
      'log-level': { type: 'string' },
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
  const logger = makeLogger(config.logLevel, [config.gitToken ?? '', config.webhookSecret ?? '', config.gitHost?.token ?? '']);
  if (config.example) {
    const { created } = await ensureExampleRepo(config.repo, EXAMPLE_FIXTURES);
    // On stderr, so `--output json` stays one JSON document on stdout.
    io.err(
      `${created ? 'Created' : 'Using'} the example repository ${config.repo} (embedded default) against the embedded KubeVirt simulator.\n` +
        `Edit a VM there and commit (git -C ${config.repo} commit -am "…"); vmroll syncs every ${Math.round(config.intervalMs / 1000)}s.`,
    );
  }
  const handle = await startRun(config, io, logger);
  if (config.once) {
    const report = await handle.trigger('once');
    await handle.stop();
    if (report === null) return 1;
    if (config.output === 'json') io.out(JSON.stringify(report.plan, null, 2));
    return report.plan.errors.length > 0 ? 1 : 0;
  }
  if (handle.address !== null) logger.info({ address: handle.address }, 'listening');
  await handle.trigger('start');
  handle.start();
  await new Promise<void>((resolve) => {
    const done = (): void => resolve();
    process.once('SIGINT', done);
    process.once('SIGTERM', done);
  });
  await handle.stop();
  return 0;
}
