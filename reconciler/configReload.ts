/**
 * Reloading `vmroll run --config` without a restart. A ConfigMap update arrives as a symlink
 * swap (`vmroll.yaml -> ..data/vmroll.yaml`, and the kubelet renames a new `..data` over the
 * old one), which a watch on the file itself never sees; so the file's folder is watched, and
 * the file's text is also hashed every few seconds, because fs.watch is not reliable
 * everywhere. A changed text is parsed and resolved with the same flags and environment as at
 * start; a bad one is reported and the last good configuration keeps running.
 */
import { type FSWatcher, watch } from 'node:fs';
import path from 'node:path';
import { isDeepStrictEqual } from 'node:util';
import type { Logger } from 'pino';
import type { RepositoryRunConfig, RunConfig, RunConfigSource } from './config.ts';
import { ConfigFileError, configHash, formatIssue, readConfigText } from './configFile.ts';
import type { VmrollMetrics } from './controller/metrics.ts';

/**
 * Settings a running process cannot take over: the cluster connection, the listening server,
 * leader election, where repositories are cached and the logger are all built once at start.
 * A change of one is logged as needing a restart and the running value stays.
 */
export const RESTART_SETTINGS = ['cluster', 'kubeconfig', 'simState', 'simKubevirt', 'listen', 'leaderElection', 'webhookSecret', 'cacheDir', 'logLevel'] as const;
/** One of {@link RESTART_SETTINGS}. */
export type RestartSetting = (typeof RESTART_SETTINGS)[number];

/** The names vmroll.yaml gives the fields of a repository, for log lines. */
const REPOSITORY_FIELDS: Record<Exclude<keyof RepositoryRunConfig, 'name'>, string> = {
  repo: 'url',
  ref: 'branch',
  path: 'path',
  namespaces: 'namespaces',
  intervalMs: 'interval',
  prune: 'prune',
  gitToken: 'git token',
  gitHost: 'reporter',
  identity: 'identity',
  restart: 'restart',
};

/** What a new configuration changes in a running one. */
export interface ReloadPlan {
  /** Repositories to start following. */
  added: RepositoryRunConfig[];
  /** Names of repositories to stop following (nothing of theirs is deleted). */
  removed: string[];
  /** Repositories whose unit is rebuilt, with the names of the fields that changed. */
  changed: Array<{ config: RepositoryRunConfig; fields: string[] }>;
  /** Settings that changed but keep their running value until a restart. */
  needsRestart: RestartSetting[];
  /** The configuration that runs from now on: the new one, with the running values of {@link needsRestart}. */
  running: RunConfig;
}

/** A new configuration that cannot replace the running one. */
export class ConfigReloadError extends Error {
  override readonly name = 'ConfigReloadError';
}

/** The repositories of a configuration: the list, or the one its single-repository fields describe. */
export function repositoriesOfRun(config: RunConfig): RepositoryRunConfig[] {
  return (
    config.repositories ?? [
      { name: 'default', repo: config.repo, ref: config.ref, path: config.path, namespaces: undefined, intervalMs: config.intervalMs, prune: config.prune, gitToken: config.gitToken, gitHost: config.gitHost },
    ]
  );
}

/** Compares the running configuration with a new one; pure. */
export function planReload(current: RunConfig, next: RunConfig): ReloadPlan {
  // A file that names no repository would make vmroll follow its bundled example: never by surprise.
  if (next.example && !current.example) throw new ConfigReloadError('names no repository to follow (repo or repositories)');
  const before = new Map(repositoriesOfRun(current).map((r) => [r.name, r]));
  const after = repositoriesOfRun(next);
  const added: RepositoryRunConfig[] = [];
  const changed: ReloadPlan['changed'] = [];
  for (const r of after) {
    const old = before.get(r.name);
    if (old === undefined) {
      added.push(r);
      continue;
    }
    const fields = (Object.keys(REPOSITORY_FIELDS) as Array<keyof typeof REPOSITORY_FIELDS>).filter((k) => !isDeepStrictEqual(old[k], r[k])).map((k) => REPOSITORY_FIELDS[k]);
    if (fields.length > 0) changed.push({ config: r, fields });
  }
  const names = new Set(after.map((r) => r.name));
  const removed = [...before.keys()].filter((n) => !names.has(n));
  const needsRestart = RESTART_SETTINGS.filter((k) => !isDeepStrictEqual(current[k], next[k]));
  const kept: Partial<RunConfig> = {};
  for (const k of RESTART_SETTINGS) Object.assign(kept, { [k]: current[k] });
  // Flag-only settings (--once, --output) cannot come from the file and stay as started.
  const running: RunConfig = { ...next, ...kept, once: current.once, output: current.output, example: current.example };
  if (current.leaderElection === undefined) delete running.leaderElection;
  return { added, removed, changed, needsRestart, running };
}

/** How one look at the configuration file ended. */
export const ReloadOutcome = {
  /** The text is the one already running (or already refused). */
  unchanged: 'unchanged',
  /** A new text, now running. */
  applied: 'applied',
  /** A new text that is unreadable or invalid; the last good configuration keeps running. */
  refused: 'refused',
} as const;
/** One of {@link ReloadOutcome}. */
export type ReloadOutcome = (typeof ReloadOutcome)[keyof typeof ReloadOutcome];

/** What {@link ConfigWatcher} needs. */
export interface ConfigWatcherOptions {
  /** The file, how often to look at it, and how to resolve its text with the start's flags and environment. */
  source: RunConfigSource;
  /** SHA-256 of the text the running configuration came from. */
  loadedSha256: string | undefined;
  /** Puts a new configuration in place; resolves with what it changed, throws (changing nothing) to refuse it. */
  apply(next: RunConfig): Promise<ReloadPlan>;
  logger: Logger;
  metrics: VmrollMetrics;
  /** Watch the file's folder as well as polling (default true). */
  watchDirectory?: boolean;
  /** After a folder event, wait this long for the writer to finish before reading (default 200 ms). */
  settleMs?: number;
}

/** Watches the configuration file and hands each new good configuration to `apply`. */
export class ConfigWatcher {
  /** Hash of the last text looked at, good or bad (or a marker for an unreadable file): each is reported once. */
  private seen: string | undefined;
  private chain: Promise<unknown> = Promise.resolve();
  private queued: Promise<ReloadOutcome> | null = null;
  private watcher: FSWatcher | null = null;
  private pollTimer: NodeJS.Timeout | null = null;
  private settleTimer: NodeJS.Timeout | null = null;
  private closed = false;

  constructor(private readonly options: ConfigWatcherOptions) {
    this.seen = options.loadedSha256;
  }

  /** Starts watching the folder and polling; a change made since the start-up read is picked up at once. */
  start(): void {
    const { source, logger } = this.options;
    if (this.options.watchDirectory ?? true) {
      const dir = path.dirname(path.resolve(source.file));
      try {
        // Not persistent: the watch alone must not keep a stopping process alive.
        this.watcher = watch(dir, { persistent: false }, () => this.soon());
        this.watcher.on('error', (e) => {
          logger.warn({ dir, err: e.message }, 'cannot watch the configuration folder; polling the file');
          this.watcher?.close();
          this.watcher = null;
        });
      } catch (e) {
        logger.warn({ dir, err: e instanceof Error ? e.message : String(e) }, 'cannot watch the configuration folder; polling the file');
      }
    }
    this.poll();
    void this.check('start');
  }

  /** Looks at the file now (after any look under way); resolves once a change it found is applied or refused. */
  check(reason: string): Promise<ReloadOutcome> {
    if (this.closed) return Promise.resolve(ReloadOutcome.unchanged);
    // Looks that pile up while one runs collapse into one: they would all read the same file.
    this.queued ??= this.chain.then(async () => {
      this.queued = null;
      try {
        return await this.look(reason);
      } catch (e) {
        // A bug here must not stop the watching (nor end the process as an unhandled rejection).
        this.options.logger.error({ file: this.options.source.file, err: e instanceof Error ? e.message : String(e) }, 'configuration reload failed');
        return ReloadOutcome.refused;
      }
    });
    const run = this.queued;
    this.chain = run.catch(() => undefined);
    return run;
  }

  /** Stops watching; resolves when a reload under way has finished. */
  async close(): Promise<void> {
    this.closed = true;
    this.watcher?.close();
    this.watcher = null;
    if (this.pollTimer !== null) clearTimeout(this.pollTimer);
    if (this.settleTimer !== null) clearTimeout(this.settleTimer);
    await this.chain;
  }

  private soon(): void {
    if (this.closed || this.settleTimer !== null) return;
    // The kubelet writes a new folder and swaps a symlink; several events arrive together.
    this.settleTimer = setTimeout(() => {
      this.settleTimer = null;
      void this.check('watch');
    }, this.options.settleMs ?? 200);
    this.settleTimer.unref();
  }

  private poll(): void {
    if (this.closed) return;
    this.pollTimer = setTimeout(() => {
      void this.check('poll').finally(() => this.poll());
    }, this.options.source.pollMs);
    this.pollTimer.unref();
  }

  private async look(reason: string): Promise<ReloadOutcome> {
    if (this.closed) return ReloadOutcome.unchanged;
    const { source, logger, metrics } = this.options;
    const file = source.file;
    let text: string;
    try {
      text = readConfigText(file);
    } catch (e) {
      return this.refuse('unreadable', file, e);
    }
    const sha256 = configHash(text);
    if (sha256 === this.seen) return ReloadOutcome.unchanged;
    let plan: ReloadPlan;
    try {
      plan = await this.options.apply(source.resolve(text));
    } catch (e) {
      return this.refuse(sha256, file, e);
    }
    this.seen = sha256;
    metrics.recordConfigLoaded(sha256, true);
    logger.info(
      {
        file,
        reason,
        sha256: sha256.slice(0, 12),
        added: plan.added.map((r) => r.name),
        removed: plan.removed,
        changed: plan.changed.map((c) => ({ repository: c.config.name, fields: c.fields })),
      },
      'configuration reloaded',
    );
    if (plan.needsRestart.length > 0) logger.warn({ file, settings: plan.needsRestart }, 'configuration changes that need a restart: they keep their running values until then');
    return ReloadOutcome.applied;
  }

  private refuse(key: string, file: string, e: unknown): ReloadOutcome {
    // The same bad text (or the same unreadable file) is reported once, not at every poll.
    if (key === this.seen) return ReloadOutcome.unchanged;
    this.seen = key;
    const problems = e instanceof ConfigFileError ? e.issues.map(formatIssue) : [e instanceof ConfigReloadError ? `${file}: ${e.message}` : e instanceof Error ? e.message : String(e)];
    this.options.metrics.recordConfigRefused();
    this.options.logger.error({ file, problems }, 'configuration change refused: the last good configuration keeps running');
    return ReloadOutcome.refused;
  }
}
