/** `vmroll plan`: what applying one commit (or pull request head) would do to the chosen cluster, without applying it. */
import path from 'node:path';
import { parseArgs } from 'node:util';
import type { ClusterBackend } from '../cluster/backend.ts';
import { ClusterCache } from '../cluster/cache.ts';
import { KubeCluster } from '../cluster/kube.ts';
import { SimCluster } from '../cluster/sim/simCluster.ts';
import { repositoryIdentity } from '../apply/identity.ts';
import { GitHostKind, cacheDirOf, clusterKind, kubeConfigSource, loadKubeVirt, logFormatOf, parseOutput, readGitHostToken, readGitToken, refuseSsh } from '../config.ts';
import { GiteaReporter } from '../report/gitea.ts';
import { GitHubReporter } from '../report/github.ts';
import { gateDescription, renderPlanComment, renderPlanTable, statusDescription } from '../report/markdown.ts';
import { loadConfigFile, repositoriesOf } from '../configFile.ts';
import { normaliseRepoUrl } from '../apply/identity.ts';
import { MANUAL_POLICY, type RestartPolicySpec, restartPolicyOf } from '../restart/index.ts';
import { planCommit } from '../plan/planCommit.ts';
import { postPlan } from '../report/postPlan.ts';
import { GitHostError, type GitHostReporter, type PullRequestInfo, StatusContext, StatusState } from '../report/reporter.ts';
import type { Obj } from '../rollout/index.ts';
import { SourceError, redactSecrets, redactUrl } from '../source/errors.ts';
import { GitSource } from '../source/gitSource.ts';
import { makeLogger } from '../logging.ts';
import { describeTarget } from '../cluster/target.ts';
import { failedPlan } from '../plan/failedPlan.ts';
import { UsageError } from '../usage.ts';
import type { CommandIO } from './common.ts';
import { PLAN_HELP } from './help.ts';

/** Help text of `vmroll plan`, kept in help.ts so that `vmroll help plan` loads none of this module's imports. */
export { PLAN_HELP } from './help.ts';

const OUTPUTS = ['text', 'markdown', 'json'] as const;
type Output = (typeof OUTPUTS)[number];

/**
 * The restart policy `--config` declares for `--repo`: the entry whose url is the same repository,
 * else the file's top-level `restart:`; manual when the file declares none.
 */
function restartPolicyFromFile(file: string, repo: string): RestartPolicySpec {
  const config = loadConfigFile(file);
  const same = (url: string): boolean => {
    const a = normaliseRepoUrl(url);
    const b = normaliseRepoUrl(repo);
    return a !== null || b !== null ? a === b : path.resolve(url) === path.resolve(repo);
  };
  const repositories = repositoriesOf(config);
  const match = repositories.find((r) => same(r.url));
  if (match !== undefined) return match.restart ?? MANUAL_POLICY;
  if (config.restart !== undefined) return restartPolicyOf(config.restart);
  if (repositories.length === 0) return MANUAL_POLICY;
  throw new UsageError(`--config: no repository of ${file} has the url ${repo}`);
}

function positiveInt(text: string, flag: string): number {
  if (!/^[1-9]\d{0,9}$/.test(text)) throw new UsageError(`${flag} must be a pull request number, not "${text}"`);
  return Number(text);
}

/** Runs `vmroll plan`. `env` is read (through config.ts) for tokens, cluster defaults, the log format and the cache folder only. */
export async function runPlan(argv: string[], io: CommandIO, env: NodeJS.ProcessEnv = process.env): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: {
      repo: { type: 'string' },
      ref: { type: 'string' },
      pr: { type: 'string' },
      base: { type: 'string' },
      path: { type: 'string' },
      prune: { type: 'boolean' },
      strict: { type: 'boolean' },
      identity: { type: 'string' },
      config: { type: 'string' },
      cluster: { type: 'string' },
      'sim-state': { type: 'string' },
      'sim-kubevirt': { type: 'string' },
      kubeconfig: { type: 'string' },
      context: { type: 'string' },
      output: { type: 'string', short: 'o' },
      post: { type: 'boolean' },
      'github-repo': { type: 'string' },
      'github-api-url': { type: 'string' },
      'github-token-file': { type: 'string' },
      'gitea-url': { type: 'string' },
      'gitea-repo': { type: 'string' },
      'gitea-token-file': { type: 'string' },
      'target-url': { type: 'string' },
      'cache-dir': { type: 'string' },
      'git-token-file': { type: 'string' },
      'log-level': { type: 'string' },
      'log-format': { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
    strict: true,
    allowPositionals: false,
  });
  if (values.help) {
    io.out(PLAN_HELP);
    return 0;
  }
  const output: Output = parseOutput(values.output, OUTPUTS, 'text');
  const logFormat = logFormatOf(values['log-format'], env);
  if (values.repo === undefined || values.repo === '') throw new UsageError('--repo <url|path> is required');
  refuseSsh(values.repo, '--repo');
  if (values.pr !== undefined && values.ref !== undefined) throw new UsageError('--ref and --pr exclude each other');
  const pr = values.pr !== undefined ? positiveInt(values.pr, '--pr') : undefined;
  if (values.post && pr === undefined) throw new UsageError('--post needs --pr <n>: the plan is posted to a pull request');
  const github = values['github-repo'] !== undefined;
  const gitea = values['gitea-url'] !== undefined || values['gitea-repo'] !== undefined;
  if (values.post && github === gitea) throw new UsageError('--post needs either --github-repo or --gitea-url with --gitea-repo');
  if (!values.post && (github || gitea)) throw new UsageError('--github-repo and --gitea-* are used with --post');
  if (gitea && (values['gitea-url'] === undefined || values['gitea-repo'] === undefined)) throw new UsageError('--gitea-url and --gitea-repo go together');
  // Read before anything is fetched: a broken file is a usage error (exit 2) with file:line.
  const restartPolicy = values.config !== undefined ? restartPolicyFromFile(values.config, values.repo) : MANUAL_POLICY;
  const clusterFlags = { cluster: values.cluster, kubeconfig: values.kubeconfig, context: values.context, 'sim-state': values['sim-state'], 'sim-kubevirt': values['sim-kubevirt'] };
  const kind = clusterKind(clusterFlags, env);
  const kubeconfig = kind === 'kube' ? kubeConfigSource(clusterFlags, env) : undefined;
  const target = describeTarget({ cluster: kind, kubeconfig, simState: values['sim-state'] });
  // A plan on the simulator without a state file plans against an empty cluster: say so.
  const targetText = kind === 'sim' && values['sim-state'] === undefined ? 'embedded KubeVirt simulator, empty (no --sim-state)' : target;

  const gitToken = readGitToken(values, env);
  let hostToken = '';
  if (values.post && github) hostToken = readGitHostToken(GitHostKind.github, values, env, '--post to GitHub');
  else if (values.post) hostToken = readGitHostToken(GitHostKind.gitea, values, env, '--post to Gitea');
  const secrets = [gitToken ?? '', hostToken].filter((t) => t !== '');
  const logger = makeLogger(values['log-level'] ?? 'warn', secrets, process.stderr, logFormat);
  let reporter: GitHostReporter | null = null;
  try {
    if (values.post && github) {
      reporter = new GitHubReporter({ repo: values['github-repo'] as string, token: hostToken, ...(values['github-api-url'] !== undefined ? { apiUrl: values['github-api-url'] } : {}), logger });
    } else if (values.post) {
      reporter = new GiteaReporter({ repo: values['gitea-repo'] as string, apiUrl: values['gitea-url'] as string, token: hostToken, logger });
    }
  } catch (e) {
    // A repository that is not owner/name.
    if (e instanceof GitHostError) throw new UsageError(`${github ? '--github-repo' : '--gitea-repo'}: ${e.message}`);
    throw e;
  }
  // Printed once every usage check passed, before anything is fetched.
  (output === 'text' ? io.out : io.err)(`target: ${targetText}`);
  let printed = false;
  const fail = (what: string, e: unknown): number => {
    const message = `${what}: ${redactSecrets(e instanceof Error ? e.message : String(e), secrets)}`;
    io.err(`vmroll plan: ${message}`);
    // With --output json a failed plan is still one document, the failure in its errors.
    if (output === 'json' && !printed) io.out(JSON.stringify(failedPlan(values.repo ?? '', message), null, 2));
    return 1;
  };

  const isUrl = /^https?:\/\//i.test(values.repo);
  const repoLabel = isUrl ? redactUrl(values.repo) : path.resolve(values.repo);
  let source: GitSource;
  try {
    source = new GitSource({
      repo: isUrl ? values.repo : path.resolve(values.repo),
      cacheDir: cacheDirOf(values['cache-dir'], env),
      ...(gitToken ? { token: gitToken } : {}),
    });
  } catch (e) {
    if (e instanceof SourceError) throw new UsageError(e.message);
    throw e;
  }

  let backend: ClusterBackend;
  let kube: KubeCluster | null = null;
  if (kind === 'kube') {
    try {
      kube = new KubeCluster({ kubeconfig: kubeconfig ?? kubeConfigSource(clusterFlags, env), logger: logger.child({ cluster: 'kube' }) });
    } catch (e) {
      throw new UsageError(e instanceof Error ? e.message : String(e));
    }
    backend = kube;
  } else {
    // Read only: the state file is loaded and never saved.
    backend = new SimCluster({
      ...(values['sim-state'] !== undefined ? { stateFile: values['sim-state'] } : {}),
      ...(values['sim-kubevirt'] !== undefined ? { kubevirt: loadKubeVirt(values['sim-kubevirt'], '--sim-kubevirt') } : {}),
    });
  }
  const cache = new ClusterCache(backend);
  try {
    let commit: string;
    let headRef = values.ref ?? 'main';
    let info: PullRequestInfo | undefined;
    try {
      if (pr !== undefined) {
        await source.sync({ ref: 'HEAD' }).catch(async (e: unknown) => {
          // A repository without HEAD (an empty default branch) still has its pull requests.
          if (!(e instanceof SourceError) || e.code !== 'RefNotFound') throw e;
        });
        commit = (await source.fetchPullRequest({ number: pr })).commit;
        headRef = `refs/pull/${pr}/head`;
      } else {
        commit = (await source.sync({ ref: headRef })).commit;
      }
    } catch (e) {
      return fail('could not fetch', e);
    }
    if (reporter !== null && pr !== undefined) {
      try {
        info = (await reporter.listOpenPullRequests()).find((p) => p.number === pr);
      } catch (e) {
        return fail(`could not read pull request #${pr}`, e);
      }
      if (info === undefined) return fail('cannot post', `pull request #${pr} is not open on the Git host`);
      headRef = info.headRef;
    }
    let base: string | undefined;
    try {
      const baseCommit = values.base !== undefined ? (await source.resolve({ ref: values.base })).commit : info?.baseSha;
      if (baseCommit !== undefined) base = (await source.mergeBase({ a: baseCommit, b: commit })) ?? baseCommit;
    } catch (e) {
      if (e instanceof SourceError && values.base !== undefined) throw new UsageError(`--base: ${e.message}`);
      if (!(e instanceof SourceError)) throw e;
      logger.warn({ err: e.message }, 'the pull request base is not in the clone; planning every VM of the head');
    }

    let result;
    try {
      const identity = await repositoryIdentity({ repo: repoLabel, path: values.path ?? '', ...(values.identity !== undefined ? { identity: values.identity } : {}) });
      result = await planCommit({ source, commit, path: values.path ?? '', cache, repoLabel, identity, prune: values.prune ?? false, strict: values.strict ?? false, ...(base !== undefined ? { base } : {}), restart: { policy: restartPolicy, now: Date.now() } });
    } catch (e) {
      if (e instanceof SourceError) {
        if (e.code === 'InvalidLocation') throw new UsageError(e.message);
        return fail('could not load manifests', e);
      }
      return fail('could not plan', e);
    }
    // The merge gate is opt-in (`restart.mergeGate` in --config): off, its reasons change nothing.
    const gate = restartPolicy.mergeGate ? (result.restarts?.gateReasons ?? []) : [];
    const comment = (): string =>
      renderPlanComment({
        plan: result.plan,
        summary: result.summary,
        power: result.power,
        sources: result.sources,
        repo: repoLabel,
        ref: headRef,
        sha: commit,
        target: targetText,
        ...(pr !== undefined ? { prNumber: pr } : {}),
        ...(restartPolicy.mergeGate && { restartGate: gate }),
      });
    printed = true;
    if (output === 'json') io.out(JSON.stringify(result.plan, null, 2));
    else if (output === 'markdown') io.out(comment());
    else io.out(renderPlanTable(result.plan, { ...result, ...(restartPolicy.mergeGate && { restartGate: gate }) }));

    if (reporter !== null && pr !== undefined) {
      try {
        const status = {
          sha: commit,
          context: StatusContext.plan,
          state: result.plan.errors.length > 0 || gate.length > 0 ? StatusState.failure : StatusState.success,
          description: result.plan.errors.length === 0 && gate.length > 0 ? gateDescription(gate) : statusDescription(result.summary),
          ...(values['target-url'] !== undefined ? { targetUrl: values['target-url'] } : {}),
        };
        const posted = await postPlan({ reporter, pr, status, body: comment(), logger });
        if (posted.status === 'unchanged') io.err(`vmroll plan: status unchanged on ${commit.slice(0, 12)}`);
        const written = posted.comment;
        io.err(`vmroll plan: ${written.created ? 'commented on' : written.changed ? 'updated the comment on' : 'comment unchanged on'} pull request #${pr}`);
      } catch (e) {
        if (e instanceof GitHostError) return fail(`could not post to pull request #${pr}`, e);
        throw e;
      }
    }
    return result.plan.errors.length > 0 ? 1 : 0;
  } finally {
    cache.stop();
    kube?.close();
  }
}
