/**
 * vmroll.yaml, the configuration file of `vmroll run --config`: parsed as YAML, checked against
 * schemas/vmroll-config.schema.json and a few rules a schema cannot say, with every problem
 * reported at once as `file:line: field: what is wrong`. Flags and environment variables are
 * laid over it by config.ts; this file only reads the file.
 */
import { createHash } from 'node:crypto';
import { readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { Ajv, type ErrorObject, type ValidateFunction } from 'ajv';
import ajvFormats from 'ajv-formats';
import { LineCounter, isMap, isScalar, parseDocument } from 'yaml';
import type { RepositoryConfig, VmrollConfig } from '../schemas/generated/vmroll-config.ts';
import { UsageError } from './usage.ts';
import { ManifestParseError, parseYamlDocuments } from './source/yamlDocs.ts';
import { redactUrl } from './source/errors.ts';
import { type RestartPolicySpec, restartConfigProblems, restartPolicyOf } from './restart/policy.ts';
import { projectPath } from './projectRoot.ts';

export type { RepositoryConfig, VmrollConfig } from '../schemas/generated/vmroll-config.ts';

/** A configuration file larger than this is refused unread: it is a mistake, not a configuration. */
export const MAX_CONFIG_BYTES = 1024 * 1024;

/** One problem in a configuration file. */
export interface ConfigIssue {
  file: string;
  /** 1-based line, when the problem has a place in the file. */
  line: number | null;
  /** Dotted path of the field, e.g. `repositories[1].interval`; empty for the file itself. */
  path: string;
  message: string;
}

/** Everything wrong with a configuration file; a usage error, so the CLI prints it and exits 2. */
export class ConfigFileError extends UsageError {
  override readonly name = 'ConfigFileError';
  constructor(readonly issues: readonly ConfigIssue[]) {
    super(issues.map(formatIssue).join('\n'));
  }
}

/** `file:line: field: message`, the way every vmroll error names a place. */
export function formatIssue(issue: ConfigIssue): string {
  const where = `${issue.file}${issue.line !== null ? `:${issue.line}` : ''}`;
  return `${where}: ${issue.path !== '' ? `${issue.path}: ` : ''}${issue.message}`;
}

/** One repository with every default filled in: what a reconciler is built from. */
export interface ResolvedRepository {
  name: string;
  /** http(s) URL, or an absolute local path. */
  url: string;
  branch: string;
  /** Folder holding the manifests; `''` for the whole repository. */
  path: string;
  /** Namespaces the repository may write; undefined for any. */
  namespaces: string[] | undefined;
  /** Time between syncs, when the file says. */
  intervalMs: number | undefined;
  prune: boolean;
  gitTokenFile: string | undefined;
  /** `owner/name` on the Git host that gets this repository's reports, when a reporter is configured. */
  reportTo: string | undefined;
  /** Ownership identity, when set; default: the normalised URL plus the path (apply/identity.ts). */
  identity?: string;
  /** The restart policy, when the file declares one (its own, or the top-level default); absent means manual (restart/policy.ts MANUAL_POLICY). */
  restart?: RestartPolicySpec;
}

const SCHEMA_FILE = projectPath('schemas', 'vmroll-config.schema.json');

let validator: ValidateFunction | undefined;

function compiled(): ValidateFunction {
  if (validator !== undefined) return validator;
  const ajv = new Ajv({ allErrors: true, strict: true, verbose: true });
  // ajv-formats is CommonJS; under nodenext its default import is the module object.
  ajvFormats.default(ajv, ['uri']);
  validator = ajv.compile(JSON.parse(readFileSync(SCHEMA_FILE, 'utf8')) as Record<string, unknown>);
  return validator;
}

const URL_LIKE = /^[a-z][a-z0-9+.-]*:\/\//i;

/**
 * Why a repository location is refused because it is SSH (`ssh://…`, `git+ssh://…` or Git's
 * scp-like `[user@]host:path`), or null. Git reads `host:path` as SSH whenever the colon comes
 * before any slash, so vmroll must not read it as a local folder.
 */
export function sshRefusal(url: string): string | null {
  const ssh = /^(?:ssh|git\+ssh|ssh\+git):\/\//i.test(url) || (!URL_LIKE.test(url) && /^(?:[^@/\\:\s]+@)?[^@/\\:\s]{2,}:/.test(url));
  if (!ssh) return null;
  return `${redactUrl(url)}: SSH repositories are not supported yet; use https:// with a token (--git-token-file)`;
}

/** Parses `500ms`, `30s`, `5m`, `1h30m` (already checked against the schema's pattern). */
export function durationMs(text: string): number {
  let total = 0;
  for (const m of text.matchAll(/(\d+(?:\.\d+)?)(ms|s|m|h)/g)) total += Number(m[1]) * { ms: 1, s: 1000, m: 60_000, h: 3_600_000 }[m[2] as 'ms' | 's' | 'm' | 'h'];
  return total;
}

/** Whether a repository may write to `namespace`: any, when it names none; else a listed name, a listed `prefix*`, or `*`. */
export function namespaceAllowed(repo: { namespaces?: readonly string[] | undefined }, namespace: string): boolean {
  if (repo.namespaces === undefined) return true;
  return repo.namespaces.some((p) => (p.endsWith('*') ? namespace.startsWith(p.slice(0, -1)) : p === namespace));
}

/** Why a manifest for `namespace` is refused for this repository, or null when it is allowed. */
export function namespaceRefusal(repo: { name: string; namespaces?: readonly string[] | undefined }, namespace: string): string | null {
  if (namespaceAllowed(repo, namespace)) return null;
  const allowed = repo.namespaces ?? [];
  return `namespace "${namespace}" is not one repository ${repo.name} may write (allowed: ${allowed.length > 0 ? allowed.join(', ') : 'none'}); the VM is not applied`;
}

/** Reads, parses and checks a configuration file; relative paths in it become relative to its folder. */
export function loadConfigFile(file: string): VmrollConfig {
  return parseConfig(readConfigText(file), file);
}

/** The text of a configuration file, unparsed (a reload hashes it before parsing); a ConfigFileError when unreadable or too large. */
export function readConfigText(file: string): string {
  try {
    if (statSync(file).size > MAX_CONFIG_BYTES) throw new ConfigFileError([{ file, line: null, path: '', message: `larger than ${MAX_CONFIG_BYTES} bytes` }]);
    return readFileSync(file, 'utf8');
  } catch (e) {
    if (e instanceof ConfigFileError) throw e;
    throw new ConfigFileError([{ file, line: null, path: '', message: 'cannot be read' }]);
  }
}

/** SHA-256 (hex) of a configuration file's text: what tells one version of the file from another. */
export function configHash(text: string): string {
  return createHash('sha256').update(text).digest('hex');
}

/** Parses and checks configuration text as if read from `file` (whose folder anchors relative paths). */
export function parseConfig(text: string, file: string): VmrollConfig {
  let value: unknown;
  try {
    const docs = parseYamlDocuments(text, file);
    if (docs.length > 1) throw new ConfigFileError([{ file, line: docs[1]?.line ?? null, path: '', message: 'holds several YAML documents; a configuration file is one' }]);
    value = docs[0]?.value ?? {};
  } catch (e) {
    if (e instanceof ManifestParseError) throw new ConfigFileError([{ file, line: e.line, path: '', message: e.reason }]);
    throw e;
  }
  const where = locator(text);
  const issue = (keys: ReadonlyArray<string | number>, message: string): ConfigIssue => ({ file, line: where(keys), path: dotted(keys), message });
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new ConfigFileError([{ file, line: 1, path: '', message: 'must be a mapping of settings (repositories:, cluster:, ...)' }]);
  }
  const validate = compiled();
  if (!validate(value)) {
    const issues = (validate.errors ?? []).map((e) => toIssue(e, issue));
    throw new ConfigFileError(dedupe(issues));
  }
  const config = value as VmrollConfig;
  const problems = semanticIssues(config, issue);
  if (problems.length > 0) throw new ConfigFileError(problems.sort((a, b) => (a.line ?? 0) - (b.line ?? 0)));
  return resolvePaths(config, path.dirname(path.resolve(file)));
}

/**
 * The repositories a configuration follows, defaults filled in: the `repositories` list, or the
 * single-repository keys at the top level as one repository, or none (the repository then comes
 * from `--repo` or `VMROLL_REPO`).
 */
export function repositoriesOf(config: VmrollConfig): ResolvedRepository[] {
  const reporterRepo = config.reporters?.github?.repo ?? config.reporters?.gitea?.repo;
  const resolve = (r: RepositoryConfig): ResolvedRepository => {
    const interval = r.interval ?? config.interval;
    return {
      name: r.name,
      url: r.url,
      branch: r.branch ?? config.branch ?? 'main',
      path: r.path ?? '',
      namespaces: r.namespaces,
      intervalMs: interval !== undefined ? durationMs(interval) : undefined,
      prune: r.prune ?? config.prune ?? false,
      gitTokenFile: r.gitTokenFile ?? config.gitTokenFile,
      reportTo: r.reportTo ?? reporterRepo,
      ...(r.identity !== undefined && { identity: r.identity }),
      ...((r.restart ?? config.restart) !== undefined && { restart: restartPolicyOf(r.restart ?? config.restart) }),
    };
  };
  if (config.repositories !== undefined) return config.repositories.map(resolve);
  if (config.repo === undefined) return [];
  const single: RepositoryConfig = {
    name: repositoryName(config.repo),
    url: config.repo,
    ...(config.path !== undefined && { path: config.path }),
    ...(config.namespaces !== undefined && { namespaces: config.namespaces }),
    ...(config.identity !== undefined && { identity: config.identity }),
  };
  return [resolve(single)];
}

/** A short name for a repository given only by URL or path: its last path segment without `.git`. */
export function repositoryName(url: string): string {
  const last = url.replace(/[/\\]+$/, '').split(/[/\\:]/).pop() ?? '';
  const name = last
    .replace(/\.git$/, '')
    .toLowerCase()
    .replace(/[^a-z0-9_.-]+/g, '-')
    .replace(/^[^a-z0-9]+|[^a-z0-9]+$/g, '');
  return name === '' ? 'default' : name.slice(0, 63);
}

// ---------------------------------------------------------------------------------------------

type IssueAt = (keys: ReadonlyArray<string | number>, message: string) => ConfigIssue;

/** Rules that need more than one field at a time. */
function semanticIssues(config: VmrollConfig, issue: IssueAt): ConfigIssue[] {
  const out: ConfigIssue[] = [];
  if (config.repo !== undefined && sshRefusal(config.repo) !== null) out.push(issue(['repo'], sshRefusal(config.repo) ?? ''));
  config.repositories?.forEach((r, i) => {
    const refusal = sshRefusal(r.url);
    if (refusal !== null) out.push(issue(['repositories', i, 'url'], refusal));
  });
  if (config.repositories !== undefined) {
    if (config.repo !== undefined) out.push(issue(['repo'], 'give one repository at the top level (repo, branch, path, ...) or several under repositories, not both'));
    for (const key of ['path', 'namespaces', 'identity'] as const) {
      if (config[key] !== undefined) out.push(issue([key], `belongs to one repository: set it in each entry of repositories`));
    }
    const seen = new Map<string, number>();
    const identities = new Map<string, number>();
    config.repositories.forEach((r, i) => {
      const first = seen.get(r.name);
      if (first !== undefined) out.push(issue(['repositories', i, 'name'], `"${r.name}" is already the name of repositories[${first}]`));
      else seen.set(r.name, i);
      const owner = r.identity !== undefined ? identities.get(r.identity) : undefined;
      if (owner !== undefined) out.push(issue(['repositories', i, 'identity'], `"${r.identity}" is already the identity of repositories[${owner}]: two repositories with one identity would prune each other's VMs`));
      else if (r.identity !== undefined) identities.set(r.identity, i);
      if (r.interval !== undefined && durationMs(r.interval) < 1000) out.push(issue(['repositories', i, 'interval'], 'must be at least 1s'));
    });
  } else if (config.repo === undefined) {
    for (const key of ['path', 'namespaces', 'identity'] as const) {
      if (config[key] !== undefined) out.push(issue([key], 'has no repository to apply to: add repo (or pass --repo)'));
    }
  }
  if (config.interval !== undefined && durationMs(config.interval) < 1000) out.push(issue(['interval'], 'must be at least 1s'));
  // Restart policies: cron schedules, time zones (the runtime's Intl), durations and budgets a schema cannot check.
  if (config.restart !== undefined) for (const p of restartConfigProblems(config.restart)) out.push(issue(['restart', ...p.keys], p.message));
  config.repositories?.forEach((r, i) => {
    if (r.restart !== undefined) for (const p of restartConfigProblems(r.restart)) out.push(issue(['repositories', i, 'restart', ...p.keys], p.message));
  });

  const reporter = config.reporters?.github !== undefined ? 'github' : config.reporters?.gitea !== undefined ? 'gitea' : undefined;
  if (reporter !== undefined && config.reporters?.[reporter]?.repo === undefined) {
    if (config.repositories !== undefined) {
      config.repositories.forEach((r, i) => {
        if (r.reportTo === undefined) out.push(issue(['repositories', i], `repository ${r.name} has nowhere to report: set its reportTo, or reporters.${reporter}.repo`));
      });
    } else {
      out.push(issue(['reporters', reporter], 'has no repo to report to (owner/name)'));
    }
  }
  if (reporter === undefined) {
    config.repositories?.forEach((r, i) => {
      if (r.reportTo !== undefined) out.push(issue(['repositories', i, 'reportTo'], 'needs a Git host under reporters (github or gitea)'));
    });
  }

  const le = config.leaderElection;
  if (le !== undefined) {
    const lease = durationMs(le.leaseDuration ?? '15s');
    const renew = durationMs(le.renewDeadline ?? '10s');
    const retry = durationMs(le.retryPeriod ?? '2s');
    if (!(renew < lease)) out.push(issue(['leaderElection', le.renewDeadline !== undefined ? 'renewDeadline' : 'leaseDuration'], `renewDeadline (${le.renewDeadline ?? '10s'}) must be shorter than leaseDuration (${le.leaseDuration ?? '15s'}), or two replicas could reconcile at once`));
    if (!(retry < renew)) out.push(issue(['leaderElection', le.retryPeriod !== undefined ? 'retryPeriod' : 'renewDeadline'], `retryPeriod (${le.retryPeriod ?? '2s'}) must be shorter than renewDeadline (${le.renewDeadline ?? '10s'})`));
  }
  const kind = config.cluster?.kind;
  if (kind === 'sim' && (config.cluster?.kubeconfig !== undefined || config.cluster?.context !== undefined)) {
    out.push(issue(['cluster', config.cluster?.kubeconfig !== undefined ? 'kubeconfig' : 'context'], 'applies to kind: kube, not sim'));
  }
  if (kind === 'kube' && (config.cluster?.simState !== undefined || config.cluster?.simKubevirt !== undefined)) {
    out.push(issue(['cluster', config.cluster?.simState !== undefined ? 'simState' : 'simKubevirt'], 'applies to kind: sim, not kube'));
  }
  return out;
}

/** The same configuration with every relative file path anchored at `dir`. */
function resolvePaths(config: VmrollConfig, dir: string): VmrollConfig {
  const file = (p: string): string => path.resolve(dir, p);
  const repo = (u: string): string => (URL_LIKE.test(u) ? u : file(u));
  const out: VmrollConfig = structuredClone(config);
  if (out.repo !== undefined) out.repo = repo(out.repo);
  if (out.gitTokenFile !== undefined) out.gitTokenFile = file(out.gitTokenFile);
  if (out.webhookSecretFile !== undefined) out.webhookSecretFile = file(out.webhookSecretFile);
  if (out.cacheDir !== undefined) out.cacheDir = file(out.cacheDir);
  for (const r of out.repositories ?? []) {
    r.url = repo(r.url);
    if (r.gitTokenFile !== undefined) r.gitTokenFile = file(r.gitTokenFile);
  }
  const c = out.cluster;
  if (c?.kubeconfig !== undefined) c.kubeconfig = file(c.kubeconfig);
  if (c?.simState !== undefined) c.simState = file(c.simState);
  if (c?.simKubevirt !== undefined) c.simKubevirt = file(c.simKubevirt);
  for (const host of [out.reporters?.github, out.reporters?.gitea]) {
    if (host?.tokenFile !== undefined) host.tokenFile = file(host.tokenFile);
  }
  return out;
}

/** Finds lines in the YAML text: of a key where the path ends in one, else of the value. */
function locator(text: string): (keys: ReadonlyArray<string | number>) => number | null {
  const lineCounter = new LineCounter();
  const doc = parseDocument(text, { lineCounter, uniqueKeys: false });
  const lineAt = (offset: number | undefined): number | null => (offset === undefined ? null : lineCounter.linePos(offset).line);
  return (keys) => {
    // The deepest node that exists on the way: a missing field is reported where its parent is.
    for (let n = keys.length; n >= 0; n--) {
      const prefix = keys.slice(0, n);
      const last = prefix[prefix.length - 1];
      if (typeof last === 'string') {
        const parent: unknown = prefix.length === 1 ? doc.contents : doc.getIn(prefix.slice(0, -1), true);
        if (isMap(parent)) {
          const pair = parent.items.find((p) => isScalar(p.key) && p.key.value === last);
          if (pair !== undefined && isScalar(pair.key)) return lineAt(pair.key.range?.[0]);
        }
        continue;
      }
      const node: unknown = n === 0 ? doc.contents : doc.getIn(prefix, true);
      const range = (node as { range?: [number, number, number] } | null)?.range;
      if (range !== undefined) return lineAt(range[0]);
    }
    return 1;
  };
}

function dotted(keys: ReadonlyArray<string | number>): string {
  let out = '';
  for (const k of keys) out += typeof k === 'number' ? `[${k}]` : out === '' ? k : `.${k}`;
  return out;
}

/** Messages for values that fail a named definition's pattern (or type). */
const DEFINITION_MESSAGES: Record<string, string> = {
  Duration: 'must be a duration such as 30s, 5m or 1h30m',
  NamespacePattern: 'must be a namespace (lowercase letters, digits and -), a prefix followed by *, or *',
  HostRepository: 'must be owner/name',
  OwnerIdentity: 'must be one line of at most 512 characters, without spaces at either end',
};

function article(type: string): string {
  return /^[aeiou]/.test(type) ? `an ${type}` : `a ${type}`;
}

/** The closest known key within two edits, for "did you mean". */
function closest(word: string, candidates: readonly string[]): string | undefined {
  const distance = (a: string, b: string): number => {
    const row = Array.from({ length: b.length + 1 }, (_, j) => j);
    for (let i = 1; i <= a.length; i++) {
      let prev = row[0] ?? 0;
      row[0] = i;
      for (let j = 1; j <= b.length; j++) {
        const cur = row[j] ?? 0;
        row[j] = Math.min((row[j] ?? 0) + 1, (row[j - 1] ?? 0) + 1, prev + (a[i - 1]?.toLowerCase() === b[j - 1]?.toLowerCase() ? 0 : 1));
        prev = cur;
      }
    }
    return row[b.length] ?? Infinity;
  };
  let best: { key: string; d: number } | undefined;
  for (const c of candidates) {
    // `token` for `tokenFile`: a known key that starts with the word is as good as a near miss.
    const d = c.toLowerCase().startsWith(word.toLowerCase()) ? 1 : distance(word, c);
    if (d <= 2 && (best === undefined || d < best.d)) best = { key: c, d };
  }
  return best?.key;
}

function toIssue(error: ErrorObject, issue: IssueAt): ConfigIssue {
  const keys: Array<string | number> = error.instancePath
    .split('/')
    .slice(1)
    .map((s) => s.replaceAll('~1', '/').replaceAll('~0', '~'))
    .map((s) => (/^\d+$/.test(s) ? Number(s) : s));
  const params = error.params as Record<string, unknown>;
  const definition = /^#\/definitions\/([A-Za-z]+)\/(pattern|type)$/.exec(error.schemaPath)?.[1];
  if (definition !== undefined && DEFINITION_MESSAGES[definition] !== undefined) return issue(keys, DEFINITION_MESSAGES[definition]);
  switch (error.keyword) {
    case 'required':
      return issue([...keys, String(params['missingProperty'])], 'is required');
    case 'additionalProperties': {
      const key = String(params['additionalProperty']);
      const known = Object.keys(((error.parentSchema ?? {}) as { properties?: Record<string, unknown> }).properties ?? {});
      const guess = closest(key, known);
      return issue([...keys, key], `unknown setting${guess !== undefined ? ` (did you mean ${guess}?)` : ''}; known here: ${known.join(', ')}`);
    }
    case 'maxProperties':
      return issue(keys, `choose one Git host: ${Object.keys(((error.parentSchema ?? {}) as { properties?: Record<string, unknown> }).properties ?? {}).join(' or ')}`);
    case 'enum':
      return issue(keys, `must be one of ${(params['allowedValues'] as unknown[]).map((v) => String(v)).join(', ')}`);
    case 'type': {
      const types = String(params['type']).split(',');
      return issue(keys, `must be ${types.map(article).join(' or ')}`);
    }
    case 'minItems':
    case 'minLength':
      return issue(keys, 'must not be empty');
    case 'format':
      return issue(keys, params['format'] === 'uri' ? 'must be a URL (https://...)' : `must be a ${String(params['format'])}`);
    case 'pattern':
      return issue(keys, keys[keys.length - 1] === 'name' ? 'must be lowercase letters, digits, -, _ or ., starting and ending with a letter or digit' : `must match ${String(params['pattern'])}`);
    default:
      return issue(keys, error.message ?? 'is invalid');
  }
}

function dedupe(issues: ConfigIssue[]): ConfigIssue[] {
  const seen = new Set<string>();
  return issues
    .filter((i) => {
      const key = `${i.path}\n${i.message}`;
      if (seen.has(key)) return false;
      seen.add(key);
      return true;
    })
    .sort((a, b) => (a.line ?? 0) - (b.line ?? 0));
}
