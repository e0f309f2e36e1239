/**
 * Configuration of `vmroll run`: flags over environment over the configuration file
 * (`--config vmroll.yaml`), read once here (the only reader of process.env) and passed down.
 * Secrets are read from files or variables and never logged.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import type { KubeConfigSource } from './cluster/kubeconfig.ts';
import { DEFAULT_LEASE_NAME, defaultIdentity, podNamespace } from './cluster/leaderElection.ts';
import { type RestartPolicySpec, restartPolicyOf } from './restart/policy.ts';
import { type ResolvedRepository, type VmrollConfig, configHash, durationMs, parseConfig, readConfigText, repositoriesOf, repositoryName, sshRefusal } from './configFile.ts';
import { type LogFormat, parseLogFormat } from './logging.ts';
import type { Obj } from './rollout/index.ts';
import { parseYamlDocuments } from './source/yamlDocs.ts';
import { projectPath } from './projectRoot.ts';
import { UsageError, parseOutput } from './usage.ts';

/** The example repository's sources, copied into {@link EXAMPLE_REPO_DIR} on first use. */
export const EXAMPLE_FIXTURES = projectPath('fixtures', 'example-repo');
/** Where the embedded default keeps its Git repository. */
export const EXAMPLE_REPO_DIR = path.join('.vmroll', 'example-repo');
/** Where the embedded default keeps the simulated cluster. */
export const EXAMPLE_SIM_STATE = path.join('.vmroll', 'sim-state.json');
const EXAMPLE_KUBEVIRT = projectPath('fixtures', 'example-cluster', 'kubevirt.yaml');

/** Everything `vmroll run` needs. */
export interface RunConfig {
  repo: string;
  ref: string;
  path: string;
  /** True when running the embedded default (example repository + simulator; only with `--cluster sim`). */
  example: boolean;
  intervalMs: number;
  once: boolean;
  /** `sim`: the embedded simulator; `kube`: the Kubernetes API through {@link kubeconfig}. */
  cluster: 'sim' | 'kube';
  /** Where the kube backend's kubeconfig comes from (undefined with `sim`). */
  kubeconfig: KubeConfigSource | undefined;
  simState: string | undefined;
  simKubevirt: string | undefined;
  output: RunOutput;
  prune: boolean;
  /** `--strict`: a manifest file's warnings (other kinds, unknown fields) are errors of that file. */
  strict?: boolean;
  listen: string | undefined;
  cacheDir: string;
  logLevel: string;
  /** How the logs on stderr are written (default json). */
  logFormat?: LogFormat;
  /** Git token (HTTP basic-auth password), from VMROLL_GIT_TOKEN / GIT_TOKEN or --git-token-file. */
  gitToken: string | undefined;
  /** Webhook HMAC secret, from VMROLL_WEBHOOK_SECRET or --webhook-secret-file. */
  webhookSecret: string | undefined;
  /** Where commit statuses and PR comments go, if anywhere. */
  gitHost: GitHostConfig | undefined;
  /**
   * Every repository followed, each with its own reconciler. Absent: the one repository the
   * fields above describe (repo, ref, path, prune, intervalMs, gitToken, gitHost).
   */
  repositories?: RepositoryRunConfig[];
  /** Take part in leader election (kube only); absent: this process is the only replica. */
  leaderElection?: LeaderElectionRunConfig;
  /** The configuration file this was read from, and the hash of the text read (a reload compares against it). */
  configFile?: { path: string; sha256: string };
}

/** One followed repository, with every setting resolved. */
export interface RepositoryRunConfig {
  /** Short name for logs and metrics. */
  name: string;
  repo: string;
  ref: string;
  path: string;
  /** Namespaces the repository may write; undefined for any. */
  namespaces: string[] | undefined;
  intervalMs: number;
  prune: boolean;
  gitToken: string | undefined;
  gitHost: GitHostConfig | undefined;
  /** Ownership identity set in vmroll.yaml (default: derived from the URL and path). */
  identity?: string;
  /** The repository's restart policy from vmroll.yaml (its own `restart:`, else the top-level one); absent: manual. */
  restart?: RestartPolicySpec;
}

/** Leader election among replicas over a Lease. */
export interface LeaderElectionRunConfig {
  namespace: string;
  leaseName: string;
  /** This replica's name in the lease: POD_NAME, else hostname-pid. */
  identity: string;
  leaseDurationMs: number;
  renewDeadlineMs: number;
  retryPeriodMs: number;
}

/** A Git host to report to. The token never leaves the reporter. */
export interface GitHostConfig {
  kind: GitHostKind;
  /** `owner/name`. */
  repo: string;
  /** API root: GitHub's by default (Enterprise: `https://host/api/v3`); Gitea's server URL. */
  apiUrl: string | undefined;
  token: string;
  /** Link shown on commit statuses. */
  targetUrl: string | undefined;
}

/** What `--output` prints: sync lines for people, or the VmPlan document. */
export const RunOutput = {
  /** One line per sync, and per changed VM and field (default). */
  text: 'text',
  /** With --once: the VmPlan of the sync, also when the sync failed. */
  json: 'json',
} as const;
/** A value of {@link RunOutput}. */
export type RunOutput = (typeof RunOutput)[keyof typeof RunOutput];

/** `--output` parsing lives in usage.ts, which `vmroll diff` loads without this module (and its Kubernetes client). */
export { parseOutput };

/** Refuses an SSH repository location (`ssh://…`, `git@host:path`) with one line naming `flag`. */
export function refuseSsh(repo: string, flag: string): void {
  const refusal = sshRefusal(repo);
  if (refusal !== null) throw new UsageError(`${flag} ${refusal}`);
}

/** Flag values as parsed by the command. */
export interface RunFlags {
  repo?: string | undefined;
  /** Branch, tag or commit; `branch` is its older name, kept as an alias. */
  ref?: string | undefined;
  branch?: string | undefined;
  path?: string | undefined;
  interval?: string | undefined;
  once?: boolean | undefined;
  cluster?: string | undefined;
  kubeconfig?: string | undefined;
  context?: string | undefined;
  'sim-state'?: string | undefined;
  'sim-kubevirt'?: string | undefined;
  output?: string | undefined;
  prune?: boolean | undefined;
  strict?: boolean | undefined;
  listen?: string | undefined;
  'cache-dir'?: string | undefined;
  'log-level'?: string | undefined;
  'log-format'?: string | undefined;
  'git-token-file'?: string | undefined;
  'webhook-secret-file'?: string | undefined;
  'github-repo'?: string | undefined;
  'github-api-url'?: string | undefined;
  'github-token-file'?: string | undefined;
  'gitea-url'?: string | undefined;
  'gitea-repo'?: string | undefined;
  'gitea-token-file'?: string | undefined;
  'status-target-url'?: string | undefined;
  config?: string | undefined;
  'leader-elect'?: boolean | undefined;
  'leader-election-namespace'?: string | undefined;
}

/** Parses `30s`, `1m`, `1h30m`, `500ms` into milliseconds. */
export function parseDuration(text: string): number {
  const re = /(\d+(?:\.\d+)?)(ms|s|m|h)/g;
  let total = 0;
  let consumed = 0;
  for (const m of text.matchAll(re)) {
    const n = Number(m[1]);
    total += n * { ms: 1, s: 1000, m: 60_000, h: 3_600_000 }[m[2] as 'ms' | 's' | 'm' | 'h'];
    consumed += m[0].length;
  }
  if (consumed !== text.length || consumed === 0) throw new UsageError(`--interval: "${text}" is not a duration (e.g. 30s, 1m, 1h)`);
  return total;
}

function readSecretFile(file: string, flag: string): string {
  try {
    return readFileSync(file, 'utf8').trim();
  } catch {
    throw new UsageError(`${flag}: ${file} cannot be read`);
  }
}

/** The first of `names` set (to something other than the empty string) in `env`. */
function fromEnv(env: NodeJS.ProcessEnv, names: readonly string[]): string | undefined {
  for (const name of names) {
    const value = env[name];
    if (value !== undefined && value !== '') return value;
  }
  return undefined;
}

/** The variables a Git token for cloning is read from, in order, when `--git-token-file` is not given. */
const GIT_TOKEN_VARIABLES = ['VMROLL_GIT_TOKEN', 'GIT_TOKEN'] as const;

/** A Git host vmroll reports to. */
export const GitHostKind = {
  /** GitHub or GitHub Enterprise (`--github-repo`). */
  github: 'github',
  /** Gitea (`--gitea-url` and `--gitea-repo`). */
  gitea: 'gitea',
} as const;
/** One of {@link GitHostKind}. */
export type GitHostKind = (typeof GitHostKind)[keyof typeof GitHostKind];

/** Where each Git host's token comes from: its flag's file, else the first of its variables that is set. */
const HOST_TOKEN_SOURCES = {
  github: { flag: 'github-token-file', variables: ['VMROLL_GITHUB_TOKEN', 'GITHUB_TOKEN'] },
  gitea: { flag: 'gitea-token-file', variables: ['VMROLL_GITEA_TOKEN', 'GITEA_TOKEN'] },
} as const satisfies Record<GitHostKind, { flag: keyof RunFlags; variables: readonly string[] }>;

/** The flags the token readers look at; `run` and `plan` both have them. */
export type TokenFlags = Pick<RunFlags, 'git-token-file' | 'github-token-file' | 'gitea-token-file'>;

/** The token for Git over HTTP(S): `--git-token-file`, else VMROLL_GIT_TOKEN or GIT_TOKEN; undefined when there is none. */
export function readGitToken(flags: TokenFlags, env: NodeJS.ProcessEnv): string | undefined {
  const file = flags['git-token-file'];
  const token = file !== undefined ? readSecretFile(file, '--git-token-file') : fromEnv(env, GIT_TOKEN_VARIABLES);
  return token === '' ? undefined : token;
}

/**
 * The Git host's token, the same for `run` and `plan`: `--github-token-file`, else
 * VMROLL_GITHUB_TOKEN or GITHUB_TOKEN (Gitea: `--gitea-token-file`, else VMROLL_GITEA_TOKEN or
 * GITEA_TOKEN). With none, a usage error that starts with `use` (what needs it) and names every way.
 */
export function readGitHostToken(kind: GitHostKind, flags: TokenFlags, env: NodeJS.ProcessEnv, use: string): string {
  const { flag, variables } = HOST_TOKEN_SOURCES[kind];
  const file = flags[flag];
  const token = file !== undefined ? readSecretFile(file, `--${flag}`) : (fromEnv(env, variables) ?? '');
  if (token === '') throw new UsageError(`${use} needs a token: --${flag}, ${variables.join(' or ')}`);
  return token;
}

/** How logs are written: `--log-format`, else VMROLL_LOG_FORMAT, else JSON lines. */
export function logFormatOf(flag: string | undefined, env: NodeJS.ProcessEnv): LogFormat {
  return parseLogFormat(flag ?? fromEnv(env, ['VMROLL_LOG_FORMAT']));
}

/** Where http(s) repositories are cloned: `--cache-dir`, else VMROLL_CACHE_DIR, else `.vmroll/cache`. */
export function cacheDirOf(flag: string | undefined, env: NodeJS.ProcessEnv): string {
  return flag ?? env['VMROLL_CACHE_DIR'] ?? '.vmroll/cache';
}

/** Reads a KubeVirt CR from a YAML file for the simulator; `flag` names the option in errors. */
export function loadKubeVirt(file: string, flag: string): Obj {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch {
    throw new UsageError(`${flag}: ${file} cannot be read`);
  }
  const doc = parseYamlDocuments(text, file)[0];
  const v: unknown = doc?.value;
  if (typeof v !== 'object' || v === null || Array.isArray(v) || (v as Obj)['kind'] !== 'KubeVirt') {
    throw new UsageError(`${file}:${doc?.line ?? 1}: expected a KubeVirt object (${flag})`);
  }
  return v as Obj;
}

/** The one line printed when `run` has no repository and the simulator was not chosen. */
export const NO_REPO =
  'no --repo: name the repository to sync (--repo URL|PATH, VMROLL_REPO or --config); the bundled example repository only runs on the embedded simulator (--cluster sim)';

/** The one line printed when no cluster was chosen: every way to choose one. */
export const NO_CLUSTER =
  'no cluster chosen: pass --kubeconfig FILE, set KUBECONFIG, or run in a pod (service account); --cluster kube uses ~/.kube/config; --cluster sim runs the embedded KubeVirt simulator';

/**
 * Which backend, as kubectl would pick it and never the simulator by default: `--cluster`
 * (VMROLL_CLUSTER, the file's cluster.kind); else `sim` when a simulator flag is given
 * (`--sim-state`, `--sim-kubevirt`); else `kube` when `--kubeconfig` is given, KUBECONFIG is
 * set, or vmroll runs in a pod. Nothing chosen is a usage error ({@link NO_CLUSTER}): a
 * sync never goes to a cluster the operator did not name.
 */
export function clusterKind(flags: RunFlags, env: NodeJS.ProcessEnv): 'sim' | 'kube' {
  const fromEnv = env['VMROLL_CLUSTER'];
  const chosen = flags.cluster ?? (fromEnv !== undefined && fromEnv !== '' ? fromEnv : undefined);
  if (chosen !== undefined && chosen !== 'sim' && chosen !== 'kube') throw new UsageError(`--cluster must be sim or kube, not "${chosen}"`);
  const simFlag = flags['sim-state'] !== undefined || flags['sim-kubevirt'] !== undefined;
  let kind: 'sim' | 'kube' | undefined = chosen;
  if (kind === undefined && simFlag) kind = 'sim';
  if (kind === undefined && (flags.kubeconfig !== undefined || (env['KUBECONFIG'] ?? '') !== '' || (env['KUBERNETES_SERVICE_HOST'] ?? '') !== '')) kind = 'kube';
  if (kind === undefined) throw new UsageError(NO_CLUSTER);
  if (kind === 'kube' && simFlag) {
    throw new UsageError('--sim-state and --sim-kubevirt apply to the simulator, not to --cluster kube');
  }
  if (kind === 'sim' && (flags.kubeconfig !== undefined || flags.context !== undefined)) throw new UsageError('--kubeconfig and --context apply to --cluster kube, not to the simulator');
  return kind;
}

/**
 * The kubeconfig, in kubectl's order: `--kubeconfig`, else the first file of KUBECONFIG, else
 * the pod's service account, else ~/.kube/config (reached only with an explicit `--cluster
 * kube`, and named on the target line like any other).
 */
export function kubeConfigSource(flags: RunFlags, env: NodeJS.ProcessEnv): KubeConfigSource {
  const context = flags.context !== undefined ? { context: flags.context } : {};
  if (flags.kubeconfig !== undefined) return { file: flags.kubeconfig, ...context };
  const first = (env['KUBECONFIG'] ?? '').split(path.delimiter).find((f) => f !== '');
  if (first !== undefined) return { file: first, ...context };
  if ((env['KUBERNETES_SERVICE_HOST'] ?? '') !== '') return { inCluster: true };
  const home = env['HOME'] ?? '';
  if (home === '') throw new UsageError('--cluster kube needs --kubeconfig, KUBECONFIG, or to run in a pod');
  return { file: path.join(home, '.kube', 'config'), ...context };
}

/** The Git host reporter's settings: GitHub (`--github-repo`) or Gitea (`--gitea-url` + `--gitea-repo`), or none. */
export function gitHostConfig(flags: RunFlags, env: NodeJS.ProcessEnv): GitHostConfig | undefined {
  const targetUrl = flags['status-target-url'] ?? env['VMROLL_STATUS_TARGET_URL'];
  const github = flags['github-repo'] ?? env['VMROLL_GITHUB_REPO'];
  const gitea = flags['gitea-repo'] ?? env['VMROLL_GITEA_REPO'];
  if (github !== undefined && gitea !== undefined) throw new UsageError('choose one Git host: --github-repo or --gitea-repo');
  if (github !== undefined) {
    if (!/^[\w.-]+\/[\w.-]+$/.test(github)) throw new UsageError(`--github-repo must be owner/name, not "${github}"`);
    const token = readGitHostToken(GitHostKind.github, flags, env, '--github-repo');
    return { kind: 'github', repo: github, apiUrl: flags['github-api-url'] ?? env['VMROLL_GITHUB_API_URL'], token, targetUrl };
  }
  if (gitea !== undefined) {
    if (!/^[\w.-]+\/[\w.-]+$/.test(gitea)) throw new UsageError(`--gitea-repo must be owner/name, not "${gitea}"`);
    const apiUrl = flags['gitea-url'] ?? env['VMROLL_GITEA_URL'];
    if (apiUrl === undefined) throw new UsageError('--gitea-repo needs --gitea-url (the Gitea server, e.g. https://gitea.example.com)');
    const token = readGitHostToken(GitHostKind.gitea, flags, env, '--gitea-repo');
    return { kind: 'gitea', repo: gitea, apiUrl, token, targetUrl };
  }
  return undefined;
}

/** Environment variables that stand for a flag: when set, the file's value for that flag does not apply. */
const ENV_OF: Partial<Record<keyof RunFlags, readonly string[]>> = {
  repo: ['VMROLL_REPO'],
  ref: ['VMROLL_REF', 'VMROLL_BRANCH'],
  branch: ['VMROLL_REF', 'VMROLL_BRANCH'],
  path: ['VMROLL_PATH'],
  interval: ['VMROLL_INTERVAL'],
  cluster: ['VMROLL_CLUSTER'],
  kubeconfig: ['KUBECONFIG'],
  'cache-dir': ['VMROLL_CACHE_DIR'],
  'log-level': ['VMROLL_LOG_LEVEL'],
  'log-format': ['VMROLL_LOG_FORMAT'],
  'git-token-file': GIT_TOKEN_VARIABLES,
  'webhook-secret-file': ['VMROLL_WEBHOOK_SECRET'],
  'github-repo': ['VMROLL_GITHUB_REPO'],
  'github-api-url': ['VMROLL_GITHUB_API_URL'],
  'github-token-file': HOST_TOKEN_SOURCES.github.variables,
  'gitea-repo': ['VMROLL_GITEA_REPO'],
  'gitea-url': ['VMROLL_GITEA_URL'],
  'gitea-token-file': HOST_TOKEN_SOURCES.gitea.variables,
  'status-target-url': ['VMROLL_STATUS_TARGET_URL'],
};

/** Flags that describe one repository: with several repositories in the file they are ambiguous. */
const REPOSITORY_FLAGS = ['ref', 'path', 'prune', 'git-token-file'] as const;

/**
 * The flags with the configuration file's settings filled in where neither a flag nor its
 * environment variable says anything (flags > environment > file).
 */
function withFile(flags: RunFlags, env: NodeJS.ProcessEnv, file: VmrollConfig, repositories: ResolvedRepository[], configPath: string): RunFlags {
  const out: RunFlags = { ...flags };
  const fill = <K extends keyof RunFlags>(key: K, value: RunFlags[K] | undefined): void => {
    if (value === undefined || out[key] !== undefined) return;
    if ((ENV_OF[key] ?? []).some((name) => (env[name] ?? '') !== '')) return;
    out[key] = value;
  };
  const single = repositories.length === 1 ? repositories[0] : undefined;
  const flagRepo = flags.repo !== undefined || (env['VMROLL_REPO'] ?? '') !== '';
  if (single !== undefined && !flagRepo) {
    fill('repo', single.url);
    fill('ref', single.branch);
    fill('path', single.path);
    fill('prune', single.prune);
    fill('git-token-file', single.gitTokenFile);
  } else if (flagRepo) {
    // The flag's repository replaces the file's; the file's defaults still apply to it.
    fill('ref', file.branch);
    fill('prune', file.prune);
    fill('git-token-file', file.gitTokenFile);
  } else if (repositories.length > 1) {
    for (const key of REPOSITORY_FLAGS) {
      if (flags[key] !== undefined) throw new UsageError(`--${key} describes one repository, and ${configPath} lists ${repositories.length}: set it per repository there`);
      // A token in the environment is for every repository; a branch or path is not.
      const variable = key === 'git-token-file' ? undefined : (ENV_OF[key] ?? []).find((name) => (env[name] ?? '') !== '');
      if (variable !== undefined) throw new UsageError(`${variable} describes one repository, and ${configPath} lists ${repositories.length}: set it per repository there`);
    }
    // The single-repository fields of RunConfig then describe the first repository.
    const first = repositories[0];
    if (first !== undefined) {
      out.repo = first.url;
      out.ref = first.branch;
      out.path = first.path;
      out.prune = first.prune;
    }
  }
  fill('interval', file.interval);
  fill('cluster', file.cluster?.kind);
  fill('kubeconfig', file.cluster?.kubeconfig);
  fill('context', file.cluster?.context);
  fill('sim-state', file.cluster?.simState);
  fill('sim-kubevirt', file.cluster?.simKubevirt);
  fill('listen', file.listen);
  fill('cache-dir', file.cacheDir);
  fill('log-level', file.logLevel);
  fill('webhook-secret-file', file.webhookSecretFile);
  const github = file.reporters?.github;
  const gitea = file.reporters?.gitea;
  // With several repositories, each names its own target; the first one stands for the host settings.
  const firstTarget = repositories.find((r) => r.reportTo !== undefined)?.reportTo;
  if (github !== undefined) {
    fill('github-repo', github.repo ?? firstTarget);
    fill('github-api-url', github.apiUrl);
    fill('github-token-file', github.tokenFile);
    fill('status-target-url', github.targetUrl);
  }
  if (gitea !== undefined) {
    fill('gitea-repo', gitea.repo ?? firstTarget);
    fill('gitea-url', gitea.apiUrl);
    fill('gitea-token-file', gitea.tokenFile);
    fill('status-target-url', gitea.targetUrl);
  }
  return out;
}

/** Leader election settings: `--leader-elect` (VMROLL_LEADER_ELECT, file), namespace from flag, env, file, the pod, else `vmroll`. */
function leaderElectionConfig(flags: RunFlags, env: NodeJS.ProcessEnv, file: VmrollConfig | undefined): LeaderElectionRunConfig | undefined {
  const envEnabled = env['VMROLL_LEADER_ELECT'];
  const enabled = flags['leader-elect'] ?? (envEnabled !== undefined && envEnabled !== '' ? ['1', 'true', 'yes'].includes(envEnabled.toLowerCase()) : (file?.leaderElection?.enabled ?? false));
  if (!enabled) return undefined;
  const le = file?.leaderElection;
  const config: LeaderElectionRunConfig = {
    namespace: flags['leader-election-namespace'] ?? env['VMROLL_LEADER_ELECTION_NAMESPACE'] ?? le?.namespace ?? podNamespace() ?? 'vmroll',
    leaseName: le?.leaseName ?? DEFAULT_LEASE_NAME,
    identity: env['POD_NAME'] ?? defaultIdentity(),
    leaseDurationMs: durationMs(le?.leaseDuration ?? '15s'),
    renewDeadlineMs: durationMs(le?.renewDeadline ?? '10s'),
    retryPeriodMs: durationMs(le?.retryPeriod ?? '2s'),
  };
  return config;
}

/** The configuration file: `--config`, else VMROLL_CONFIG, else none. */
function configPathOf(flags: RunFlags, env: NodeJS.ProcessEnv): string | undefined {
  return flags.config ?? (env['VMROLL_CONFIG'] !== '' ? env['VMROLL_CONFIG'] : undefined);
}

/** Builds the run configuration from flags, the environment and the configuration file (`--config`, VMROLL_CONFIG). */
export function runConfig(rawFlags: RunFlags, env: NodeJS.ProcessEnv = process.env): RunConfig {
  const configPath = configPathOf(rawFlags, env);
  return resolveRunConfig(rawFlags, env, configPath !== undefined ? { path: configPath, text: readConfigText(configPath) } : undefined);
}

/** How long a running `vmroll run` waits between two looks at its configuration file (besides watching its folder). */
export const DEFAULT_CONFIG_POLL_MS = 5000;

/** What re-reading the configuration file of a running `vmroll run` needs: the file, and the same flags and environment laid over it. */
export interface RunConfigSource {
  /** The configuration file, as named by `--config` or VMROLL_CONFIG. */
  file: string;
  /** Time between two looks at the file (VMROLL_CONFIG_POLL_INTERVAL, default 5s). */
  pollMs: number;
  /** The run configuration the file's new text gives, flags and environment still winning; throws as {@link runConfig} does. */
  resolve(text: string): RunConfig;
}

/** The source to reload the configuration from, when there is a configuration file. */
export function runConfigSource(rawFlags: RunFlags, env: NodeJS.ProcessEnv = process.env): RunConfigSource | undefined {
  const file = configPathOf(rawFlags, env);
  if (file === undefined) return undefined;
  const poll = env['VMROLL_CONFIG_POLL_INTERVAL'] ?? '';
  let pollMs = DEFAULT_CONFIG_POLL_MS;
  if (poll !== '') {
    try {
      pollMs = parseDuration(poll);
    } catch {
      throw new UsageError(`VMROLL_CONFIG_POLL_INTERVAL: "${poll}" is not a duration (e.g. 5s, 500ms)`);
    }
    if (pollMs < 100) throw new UsageError(`VMROLL_CONFIG_POLL_INTERVAL must be at least 100ms, not "${poll}"`);
  }
  return { file, pollMs, resolve: (text) => resolveRunConfig(rawFlags, env, { path: file, text }) };
}

/** {@link runConfig} with the configuration file's text already read (at start, and again on each reload). */
export function resolveRunConfig(givenFlags: RunFlags, env: NodeJS.ProcessEnv, configFile: { path: string; text: string } | undefined): RunConfig {
  const rawFlags = withRefAlias(givenFlags);
  const configPath = configFile?.path;
  const file = configFile !== undefined ? parseConfig(configFile.text, configFile.path) : undefined;
  const fileRepositories = file !== undefined ? repositoriesOf(file) : [];
  const flags = file !== undefined && configPath !== undefined ? withFile(rawFlags, env, file, fileRepositories, configPath) : rawFlags;
  const base = singleRunConfig(flags, env);
  const leaderElection = leaderElectionConfig(flags, env, file);
  if (leaderElection !== undefined) {
    if (base.cluster !== 'kube') throw new UsageError('--leader-elect needs --cluster kube: the embedded simulator lives in this one process');
    if (base.once) throw new UsageError('--leader-elect and --once do not go together');
  }
  const flagRepo = rawFlags.repo !== undefined || (env['VMROLL_REPO'] ?? '') !== '';
  const fromFile = !flagRepo && fileRepositories.length > 0;
  const repositories: RepositoryRunConfig[] = fromFile
    ? fileRepositories.map((r) => repositoryRunConfig(r, base, rawFlags, env))
    : [
        {
          name: repositoryName(base.repo),
          repo: base.repo,
          ref: base.ref,
          path: base.path,
          namespaces: undefined,
          intervalMs: base.intervalMs,
          prune: base.prune,
          gitToken: base.gitToken,
          gitHost: base.gitHost,
          // --repo with a file: the file's top-level `restart:` is this repository's default, as its branch and prune are.
          ...(file?.restart !== undefined && { restart: restartPolicyOf(file.restart) }),
        },
      ];
  if (fromFile && fileRepositories.length > 1 && base.once && base.output === 'json') throw new UsageError(`--output json prints one plan, and ${configPath ?? 'the file'} lists ${fileRepositories.length} repositories`);
  return {
    ...base,
    repositories,
    ...(leaderElection !== undefined && { leaderElection }),
    ...(configFile !== undefined && { configFile: { path: configFile.path, sha256: configHash(configFile.text) } }),
  };
}

/** `--branch` is the older name of `--ref`: one of them, under the name `ref`. */
function withRefAlias(flags: RunFlags): RunFlags {
  const { branch, ...rest } = flags;
  if (branch === undefined) return flags;
  if (flags.ref !== undefined && flags.ref !== branch) throw new UsageError('--branch is another name for --ref: give one of them');
  return { ...rest, ref: branch };
}

/** A file repository with the flags, environment and file-wide settings laid over it. */
function repositoryRunConfig(r: ResolvedRepository, base: RunConfig, flags: RunFlags, env: NodeJS.ProcessEnv): RepositoryRunConfig {
  // --interval (or VMROLL_INTERVAL) is for every repository; else the repository's own, else the file's.
  const intervalMs = flags.interval !== undefined || (env['VMROLL_INTERVAL'] ?? '') !== '' ? base.intervalMs : (r.intervalMs ?? base.intervalMs);
  if (intervalMs < 1000) throw new UsageError(`repository ${r.name}: the interval must be at least 1s`);
  const overridden = flags['git-token-file'] !== undefined || fromEnv(env, GIT_TOKEN_VARIABLES) !== undefined;
  const gitToken = !overridden && r.gitTokenFile !== undefined ? readSecretFile(r.gitTokenFile, `repository ${r.name}: gitTokenFile`) : base.gitToken;
  const gitHost = base.gitHost !== undefined && r.reportTo !== undefined ? { ...base.gitHost, repo: r.reportTo } : base.gitHost;
  return { name: r.name, repo: r.url, ref: r.branch, path: r.path, namespaces: r.namespaces, intervalMs, prune: r.prune, gitToken: gitToken === '' ? undefined : gitToken, gitHost, ...(r.identity !== undefined && { identity: r.identity }), ...(r.restart !== undefined && { restart: r.restart }) };
}

/** The configuration of one repository from flags and environment alone (the file already laid in as flags). */
function singleRunConfig(flags: RunFlags, env: NodeJS.ProcessEnv): RunConfig {
  const given = flags.repo !== undefined && flags.repo !== '' ? flags.repo : env['VMROLL_REPO'];
  const example = (given ?? '') === '';
  const explicitCluster = flags.cluster ?? (env['VMROLL_CLUSTER'] !== '' ? env['VMROLL_CLUSTER'] : undefined);
  // The bundled example (with its cloud-init password) only ever goes to the embedded simulator, and only when asked for.
  if (example && explicitCluster !== 'sim') throw new UsageError(NO_REPO);
  const repo = example ? EXAMPLE_REPO_DIR : (given ?? '');
  if (!example) refuseSsh(repo, '--repo');
  const cluster = clusterKind(flags, env);
  const output = parseOutput(flags.output, [RunOutput.text, RunOutput.json], RunOutput.text);
  const intervalMs = parseDuration(flags.interval ?? env['VMROLL_INTERVAL'] ?? '1m');
  if (intervalMs < 1000) throw new UsageError('--interval must be at least 1s');
  const webhookSecret =
    flags['webhook-secret-file'] !== undefined ? readSecretFile(flags['webhook-secret-file'], '--webhook-secret-file') : env['VMROLL_WEBHOOK_SECRET'];
  return {
    repo,
    ref: flags.ref ?? env['VMROLL_REF'] ?? env['VMROLL_BRANCH'] ?? 'main',
    path: flags.path ?? env['VMROLL_PATH'] ?? '',
    intervalMs,
    once: flags.once ?? false,
    cluster,
    kubeconfig: cluster === 'kube' ? kubeConfigSource(flags, env) : undefined,
    simState: cluster === 'sim' ? (flags['sim-state'] ?? (example ? EXAMPLE_SIM_STATE : undefined)) : undefined,
    simKubevirt: cluster === 'sim' ? (flags['sim-kubevirt'] ?? (example ? EXAMPLE_KUBEVIRT : undefined)) : undefined,
    example,
    output,
    prune: flags.prune ?? false,
    strict: flags.strict ?? false,
    listen: flags.listen,
    cacheDir: cacheDirOf(flags['cache-dir'], env),
    logLevel: flags['log-level'] ?? env['VMROLL_LOG_LEVEL'] ?? 'info',
    logFormat: logFormatOf(flags['log-format'], env),
    gitToken: readGitToken(flags, env),
    webhookSecret: webhookSecret === '' ? undefined : webhookSecret,
    gitHost: gitHostConfig(flags, env),
  };
}
