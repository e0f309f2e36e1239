/**
 * One sync of one repository, as named steps with one exit:
 *
 *   fetch    the commit the ref names (source/gitSource.ts)
 *   load     the manifests of the paths changed since the last synced commit (source/manifests.ts)
 *   observe  the live cluster, as the cache follows it (cluster/cache.ts)
 *   plan     pair desired with live (plan/pairing.ts: namespace and ownership refusals, prune),
 *            and pick the VMs whose desired state differs (controller/writes.ts)
 *   apply    server-side apply of those writes, then the prune deletes (controller/apply.ts)
 *   settle   wait (bounded) until the cluster shows the writes: the place where what KubeVirt
 *            does with a live change (migrating, queued, blocked) is followed
 *   report   the engine per VM on what the cluster made of the writes, one state per VM and the
 *            summary (controller/outcomes.ts, plan/summary.ts)
 *
 * The runner stops at the first step that fails the sync as a whole; a bad manifest or a failed
 * apply concerns one VM only and is reported without stopping the others. However the sync ends,
 * its one `finally` hands the outcome to `onOutcome`, which posts the commit status and records
 * the metrics (controller/repository.ts).
 */
import { isDeepStrictEqual } from 'node:util';
import type { Logger } from 'pino';
import { type RepositoryIdentity, repositoryIdentity } from '../apply/identity.ts';
import type { ClusterBackend } from '../cluster/backend.ts';
import { ClusterCache } from '../cluster/cache.ts';
import { type Pairing, pairDesiredLive } from '../plan/pairing.ts';
import { PairingMemo } from '../plan/pairingMemo.ts';
import { type Summary, formatSummary } from '../plan/summary.ts';
import type { ObservedGuest, VmPlan } from '../rollout/index.ts';
import type { ManifestError } from '../rollout/plan.ts';
import { SourceError, SourceErrorCode } from '../source/errors.ts';
import { type ChangedPath, type GitSource, type TreeFile, normalizeRepoPath } from '../source/gitSource.ts';
import { ManifestCache } from '../source/manifestCache.ts';
import { type ManifestSet, type ManifestWarning, loadManifests, manifestLimits, reassemble } from '../source/manifests.ts';
import { type ApplyResult, applyChanges } from './apply.ts';
import { type Assessment, type OutcomeHistory, type VmOutcome, SyncOutcomes } from './outcomes.ts';
import type { RestartReport, RestartStep } from './restarts.ts';
import { type PendingWrite, WriteMemory } from './writes.ts';

export type { VmOutcome } from './outcomes.ts';

/** What a reconciler is pointed at. */
export interface ReconcilerOptions {
  source: GitSource;
  /** The repository as it may be shown (no credentials). */
  repoLabel: string;
  /** Branch, tag or commit to follow. */
  ref: string;
  /** Folder (or file) in the repository holding the manifests. */
  path: string;
  cluster: ClusterBackend;
  /** Delete VMs this repository applied earlier and no longer defines. */
  prune: boolean;
  /** Ownership identity set in vmroll.yaml; default: the normalised repository URL plus the path (apply/identity.ts). */
  identity?: string;
  logger: Logger;
  /** Writes in flight at once (default 8). */
  applyConcurrency?: number;
  /** How long to wait for the cluster to report writes back before reporting (default 10 s). */
  settleTimeoutMs?: number;
  /** Called once the plan is made, when there is something to write (for a `pending` commit status). */
  onWork?: (commit: string, writes: number) => void;
  /** Why this repository may not write to a namespace, or null when it may; absent: any namespace. */
  refuseNamespace?: (namespace: string) => string | null;
  /** `--strict`: a file's warnings (other kinds, unknown fields) are errors of that file, which then holds its VMs. */
  strict?: boolean;
  /** Called from the reconcile's single exit, however it ended, before `reconcile()` returns or throws: statuses and metrics are recorded here. */
  onOutcome?: (outcome: ReconcileOutcome) => void;
  /** The restart step (controller/restarts.ts), run after report; absent: no restarts. */
  restarts?: RestartStep;
  /**
   * Also compute what each sync reuses from the last one (the manifest set, the writes, the lagging
   * guests, the report) from scratch, and fail the sync when the two differ: for the tests of the
   * incremental sync and the bench, never in production (it costs a full sync every time).
   */
  checkIncremental?: boolean;
}

/** How one reconcile ended, as its single exit hands it to {@link ReconcilerOptions.onOutcome}. */
export interface ReconcileOutcome {
  /** The commit the sync resolved; null when it failed before (the branch gone, the Git host unreachable). */
  commit: string | null;
  /** The report of a sync that ran; null when it failed as a whole. */
  report: ReconcileReport | null;
  /** Why it failed as a whole (undefined when it ran). */
  error: unknown;
  /** Time from the start of the reconcile to its exit. */
  durationMs: number;
}

/** The named steps of a sync, as {@link ReconcileReport.timings} times them. */
export const SyncStep = {
  /** Resolve the ref to a commit (and fetch it). */
  fetch: 'fetch',
  /** The paths changed since the last synced commit. */
  diff: 'diff',
  /** Read the manifests of those paths. */
  load: 'load',
  /** The live cluster, as the cache follows it (a first list, then watch events). */
  observe: 'observe',
  /** Pair desired with live, decide the writes and deletes. */
  plan: 'plan',
  /** Write to the cluster. */
  apply: 'apply',
  /** Wait until the cluster shows the writes. */
  settle: 'settle',
  /** Plan each VM as the cluster holds it, count and list. */
  report: 'report',
} as const;
/** One of {@link SyncStep}. */
export type SyncStep = (typeof SyncStep)[keyof typeof SyncStep];

/** The outcome of one reconcile. */
export interface ReconcileReport {
  plan: VmPlan;
  summary: Summary;
  commit: string;
  /** Milliseconds per step, and in all. */
  timings: Record<SyncStep | 'total', number>;
  /** Manifest files read in this sync. */
  read: string[];
  /** Manifest files taken from the parse cache instead (the first sync of a process; source/manifestCache.ts). */
  cached?: string[];
  /** Requests the sync wrote to the cluster. */
  writes: number;
  /** Per VM, sorted by namespace/name: its state for the counts and what the text shows of it. */
  outcomes: VmOutcome[];
  /** The errors of `plan.errors` that the previous sync of this process did not have (the text lists only these). */
  newErrors: ManifestError[];
  /** The warnings of `plan.warnings` that the previous sync of this process did not have (the text lists only these). */
  newWarnings: ManifestWarning[];
  /**
   * Why the sync should be looked at again soon rather than at the interval, or null: writes the
   * cluster refused for a conflicting writer (409), writes it had not shown by the settle timeout,
   * guests a migration or an eviction is still carrying a change to (migrating, queued, evicted).
   * The repository chain treats it as a `waiting` outcome (controller/backoff.ts).
   */
  waiting: string | null;
  /** The restart step's report (controller/restarts.ts), when the sync runs one. */
  restarts?: RestartReport;
}

/** What {@link Reconciler.prepare} made ready. */
export interface PreparedSync {
  commit: string;
  /** Usable VMs in the repository at that commit. */
  vms: number;
  /** Manifest files read, and taken from the parse cache. */
  read: number;
  cached: number;
  ms: number;
}

/** A sync's pairing: refusals and prune (the pairs themselves go to the write decision only). */
type SyncPairing = Omit<Pairing, 'pairs'>;

/** What the steps of a sync found, as the report step reads it. */
interface SyncFindings {
  commit: string;
  log: Logger;
  identity: RepositoryIdentity;
  manifests: ManifestSet;
  pairing: SyncPairing;
  writes: PendingWrite[];
  applied: ApplyResult;
  /** Writes the cluster had not shown by the settle timeout. */
  late: string[];
  /** Where the guests of the VMs written (or followed since an earlier sync) stand. */
  guests: Map<string, ObservedGuest>;
}

/** Keeps the state between syncs of one repository and runs them. */
export class Reconciler {
  private manifests: ManifestSet | null = null;
  /** What a standby's {@link prepare} loaded since the last sync: the next load starts from it. */
  private prepared: ManifestSet | null = null;
  /** The parse cache in the clone folder, so a new process parses only what changed (undefined until the first load; null for a local repository). */
  private parseCache: ManifestCache | null | undefined;
  private readonly cache: ClusterCache;
  private readonly memory = new WriteMemory();
  /** The last sync's pairing, so the next pairs only what changed (plan/pairingMemo.ts). */
  private readonly pairing = new PairingMemo();
  private readonly outcomes: SyncOutcomes;
  /** This repository's ownership identity, resolved on the first sync (a local repository's origin is read from disk). */
  private identity: RepositoryIdentity | null = null;

  constructor(private readonly options: ReconcilerOptions) {
    this.cache = new ClusterCache(options.cluster);
    this.outcomes = new SyncOutcomes(this.cache);
  }

  /** The commit of the last successful sync. */
  get lastCommit(): string | null {
    return this.manifests?.commit ?? null;
  }

  /** The cluster as this reconciler caches it (PR review plans against the same cache). */
  get clusterCache(): ClusterCache {
    return this.cache;
  }

  /** How many syncs paired every VM, and how many only the changed ones (plan/pairingMemo.ts; tests and benches). */
  get pairingStats(): { full: number; incremental: number } {
    return { ...this.pairing.stats };
  }

  /** The ownership identity written to `vmroll.dev/source-repo`, once the first sync resolved it. */
  get ownerIdentity(): RepositoryIdentity | null {
    return this.identity;
  }

  /** Stops following the cluster. */
  close(): void {
    this.cache.stop();
  }

  /**
   * A standby's share of a sync (a replica waiting for the lease): fetch and load, and the cluster
   * cache started, so that a sync after winning the lease finds the clone current, the manifests
   * loaded and the informers synced. Nothing is planned, written or reported; no outcome is recorded.
   */
  async prepare(): Promise<PreparedSync> {
    const started = performance.now();
    const noStep = <T>(_name: SyncStep, fn: () => Promise<T>): Promise<T> => fn();
    const commit = await this.fetch();
    await this.resolveIdentity();
    const manifests = await this.load(commit, noStep);
    this.prepared = manifests;
    await this.parseCache?.save(manifests);
    await this.cache.start();
    return { commit, vms: manifests.vms.length, read: manifests.read.length, cached: manifests.cached.length, ms: performance.now() - started };
  }

  /**
   * Runs one sync: the steps in order, then one exit that hands how it ended to `onOutcome`, on
   * success and on every failure (a refused token, a vanished branch, an unreachable API server).
   */
  async reconcile(): Promise<ReconcileReport> {
    const o = this.options;
    const started = performance.now();
    const timings: ReconcileReport['timings'] = { fetch: 0, diff: 0, load: 0, observe: 0, plan: 0, apply: 0, settle: 0, report: 0, total: 0 };
    const step = async <T>(name: SyncStep, fn: () => Promise<T>): Promise<T> => {
      const t0 = performance.now();
      try {
        return await fn();
      } finally {
        timings[name] += performance.now() - t0;
      }
    };
    const exit: { commit: string | null; report: ReconcileReport | null; error: unknown } = { commit: null, report: null, error: undefined };
    let loaded: ManifestSet | null = null;
    try {
      const commit = await step(SyncStep.fetch, () => this.fetch());
      exit.commit = commit;
      const log = o.logger.child({ repo: o.repoLabel, commit: commit.slice(0, 12) });
      const identity = await this.resolveIdentity();
      const manifests = await this.load(commit, step);
      loaded = manifests;
      await step(SyncStep.observe, () => this.cache.start());
      const { pairing, writes } = await step(SyncStep.plan, () => this.plan(manifests, identity, log));
      if (writes.length + pairing.prune.deletes.length > 0) o.onWork?.(commit, writes.length + pairing.prune.deletes.length);
      const applied = await step(SyncStep.apply, () => this.apply(writes, pairing, log));
      const { late, guests } = await step(SyncStep.settle, () => this.settle(applied, log));
      const s: SyncFindings = { commit, log, identity, manifests, pairing, writes, applied, late, guests };
      const report = await step(SyncStep.report, () => this.report(s, timings));
      if (o.restarts !== undefined) await step(SyncStep.report, () => (o.restarts as RestartStep).afterReport(report, this.cache, log));
      this.manifests = manifests;
      this.prepared = null;
      await this.parseCache?.save(manifests);
      timings.total = performance.now() - started;
      log.info({ summary: formatSummary(report.summary), writes: report.writes, read: report.read.length, cached: manifests.cached.length, ms: Math.round(timings.total) }, 'reconciled');
      exit.report = report;
      return report;
    } catch (e) {
      exit.error = e;
      // A sync that failed after its load (the cluster unreachable) still keeps what it parsed: a new process parses none of it again.
      if (loaded !== null) await this.parseCache?.save(loaded);
      throw e;
    } finally {
      try {
        o.onOutcome?.({ commit: exit.commit, report: exit.report, error: exit.report === null ? exit.error : undefined, durationMs: performance.now() - started });
      } catch (e) {
        // Recording must not turn a sync into a failure, nor hide the failure it records.
        o.logger.error({ err: e instanceof Error ? e.message : String(e) }, 'recording the outcome of a sync failed');
      }
    }
  }

  /** fetch: the commit the ref names now. A branch that vanished is no order to delete: the sync stops before anything is decided. */
  private async fetch(): Promise<string> {
    const o = this.options;
    try {
      return (await o.source.sync({ ref: o.ref })).commit;
    } catch (e) {
      if (e instanceof SourceError && e.code === SourceErrorCode.RefNotFound) throw new SourceError(e.code, `${e.message}; nothing is applied or pruned until it resolves again`, e.data);
      throw e;
    }
  }

  private async resolveIdentity(): Promise<RepositoryIdentity> {
    const o = this.options;
    this.identity ??= await repositoryIdentity({ repo: o.source.repo, path: o.path, ...(o.identity !== undefined ? { identity: o.identity } : {}) });
    return this.identity;
  }

  /** load: the manifests at `commit`, reading only the files changed since the last synced commit. */
  private async load(commit: string, step: <T>(name: SyncStep, fn: () => Promise<T>) => Promise<T>): Promise<ManifestSet> {
    const o = this.options;
    // A standby's load is newer than the last sync's (it ran while another replica synced).
    const previous = this.prepared ?? this.manifests;
    let changes: ChangedPath[] | undefined;
    if (previous !== null) {
      changes = previous.commit === commit ? [] : await step(SyncStep.diff, () => o.source.changedPaths({ from: previous.commit, to: commit, path: o.path }));
    }
    const manifests = await step(SyncStep.load, async () => {
      // The first load of a process takes unchanged files from the parse cache; later ones start from the previous load.
      this.parseCache ??= ManifestCache.forClone(o.source.cloneFolder, normalizeRepoPath(o.path), o.logger.child({ repo: o.repoLabel }));
      const cached = previous === null ? await this.parseCache?.read({ path: normalizeRepoPath(o.path), limits: manifestLimits({ strict: o.strict ?? false }) }) : null;
      return loadManifests({ source: o.source, commit, path: o.path, strict: o.strict ?? false, ...(previous !== null ? { previous } : {}), ...(changes !== undefined ? { changes } : {}), ...(cached ? { cached } : {}) });
    });
    if (o.checkIncremental === true) {
      const { read: _read, incremental: _incremental, ...memo } = manifests;
      const { read: _read2, incremental: _incremental2, ...full } = reassemble(manifests);
      sameAsFull('load: the manifest set', memo, full);
    }
    return manifests;
  }

  /** plan: pair desired with live (the same pairing as PR review and `vmroll plan`), then the writes only the changed VMs need. */
  private async plan(manifests: ManifestSet, identity: RepositoryIdentity, log: Logger): Promise<{ pairing: SyncPairing; writes: PendingWrite[] }> {
    const o = this.options;
    const listFiles = (args: { commit: string; path?: string }): Promise<TreeFile[]> => o.source.listFiles(args);
    // The reference first: the memo's pairing reads the cache as it is when it starts, and so does this.
    const reference = o.checkIncremental === true ? await pairDesiredLive({ manifests, live: this.cache.vms, identity, prune: o.prune, listFiles, ...(o.refuseNamespace !== undefined && { refuseNamespace: o.refuseNamespace }) }) : null;
    const { pairing, pairs } = await this.pairing.pair({
      manifests,
      cache: this.cache,
      identity,
      prune: o.prune,
      listFiles,
      isSeen: (key, manifest, live) => this.memory.isSeen(key, manifest, live),
      ...(o.refuseNamespace !== undefined && { refuseNamespace: o.refuseNamespace }),
    });
    const full = reference !== null ? this.memory.decide(reference.pairs, identity, log, true) : null;
    const writes = this.memory.decide(pairs, identity, log);
    if (reference !== null && full !== null) {
      const { pairs: _pairs, ...whole } = reference;
      sameAsFull('plan: the pairing', pairing, whole);
      sameAsFull('plan: the writes', writes.map(writeKey), full.map(writeKey));
    }
    for (const orphan of pairing.prune.orphans) log.child({ vm: `${orphan.namespace}/${orphan.name}` }).warn({ reason: orphan.reason, file: orphan.file }, `orphaned VirtualMachine: ${orphan.message}`);
    return { pairing, writes };
  }

  /** apply: the writes, then the prune deletes; one VM's failure is an error of its file. */
  private apply(writes: PendingWrite[], pairing: SyncPairing, log: Logger): Promise<ApplyResult> {
    const o = this.options;
    return applyChanges({
      cluster: o.cluster,
      cache: this.cache,
      writes,
      deletes: pairing.prune.deletes,
      concurrency: o.applyConcurrency ?? 8,
      onApplied: (w) => this.memory.applied.set(w.key, w.fingerprint),
      onDeleted: (key) => this.memory.applied.delete(key),
      log,
    });
  }

  /**
   * settle: wait (bounded) until the watch brings the writes back, so the report says what the
   * cluster made of them; then where each written (or still followed) VM's guest stands: a live
   * change effective, or migrating, queued, blocked, evicted (controller/outcomes.ts). It does not
   * wait for migrations: the report says where they are, and the sync asks to be re-checked soon.
   */
  private async settle(applied: ApplyResult, log: Logger): Promise<{ late: string[]; guests: Map<string, ObservedGuest> }> {
    const started = performance.now();
    const timeoutMs = this.options.settleTimeoutMs ?? 10_000;
    const late = await this.cache.settle(applied.written, timeoutMs);
    if (late.length > 0) log.warn({ vms: late.slice(0, 10), count: late.length }, 'the cluster had not reported these writes back yet; reporting what it showed');
    for (const { key, write } of applied.written) {
      const after = this.cache.vms.get(key);
      if (write !== undefined && after !== undefined) this.memory.markSeen(key, write.manifest, after);
    }
    if (this.options.checkIncremental === true) sameAsFull('settle: the guests that may lag', this.outcomes.lagging(new Set()), this.outcomes.lagging(new Set(), true));
    const guests = await this.outcomes.follow(applied, Math.max(0, timeoutMs - (performance.now() - started)));
    return { late, guests };
  }

  /** report: the engine per VM on the cluster's result, the counts, and the VmPlan of the sync. */
  private async report(s: SyncFindings, timings: ReconcileReport['timings']): Promise<ReconcileReport> {
    const { manifests, pairing, applied } = s;
    const errors: ManifestError[] = [...manifests.errors, ...pairing.refusals, ...pairing.prune.errors];
    const manifestErrors = new Set(errors);
    errors.push(...applied.errors);
    const input = { manifests, refused: pairing.refused, identity: s.identity, apply: applied, errors, manifestErrors, orphans: pairing.prune.orphans.length, guests: s.guests, log: s.log };
    let full: { assessment: Assessment; history: OutcomeHistory } | null = null;
    if (this.options.checkIncremental === true) {
      // The same report from scratch, from the same history; then the history is put back for the real one.
      const before = this.outcomes.history;
      full = { assessment: this.outcomes.assess({ ...input, log: s.log.child({}, { level: 'silent' }), full: true }), history: this.outcomes.history };
      this.outcomes.history = before;
    }
    const a = this.outcomes.assess(input);
    if (full !== null) {
      sameAsFull('report: the assessment', a, full.assessment);
      sameAsFull('report: the history kept for the next sync', this.outcomes.history, full.history);
    }
    return {
      plan: { commit: s.commit, vms: a.vms, errors, orphans: pairing.prune.orphans, warnings: manifests.warnings },
      summary: a.summary,
      commit: s.commit,
      timings,
      read: manifests.read,
      cached: manifests.cached,
      writes: applied.requests,
      outcomes: a.outcomes,
      newErrors: a.newErrors,
      newWarnings: a.newWarnings,
      waiting: waitingCause(applied.waiting, s.late, a.moving),
    };
  }
}

/** Why a sync that ran should be re-checked soon, or null: conflicting writers, writes not yet shown, guests on the way to a change. */
function waitingCause(conflicts: readonly string[], late: readonly string[], moving: string | null): string | null {
  const parts: string[] = [];
  if (moving !== null) parts.push(moving);
  if (conflicts.length > 0) parts.push(`${conflicts.length} write${conflicts.length === 1 ? '' : 's'} refused for a conflicting writer (${conflicts.slice(0, 3).join(', ')}${conflicts.length > 3 ? ', …' : ''})`);
  if (late.length > 0) parts.push(`${late.length} write${late.length === 1 ? '' : 's'} not yet shown by the cluster (${late.slice(0, 3).join(', ')}${late.length > 3 ? ', …' : ''})`);
  return parts.length === 0 ? null : parts.join('; ');
}

/** What the check of the incremental plan compares of a write. */
function writeKey(w: PendingWrite): string {
  return `${w.key} ${w.action} ${w.fingerprint}`;
}

/** Fails the sync (under {@link ReconcilerOptions.checkIncremental}) when what a sync reused differs from the full computation, naming the first difference. */
function sameAsFull(what: string, memo: unknown, full: unknown): void {
  if (isDeepStrictEqual(memo, full)) return;
  throw new Error(`incremental sync check: ${what} differs from the full computation at ${firstDifference(memo, full, '') ?? '(root)'}`);
}

/** The path of the first difference between two values, or null when none is found. */
function firstDifference(a: unknown, b: unknown, at: string): string | null {
  if (isDeepStrictEqual(a, b)) return null;
  if (a instanceof Map && b instanceof Map) return firstDifference(Object.fromEntries(a), Object.fromEntries(b), at);
  if (a instanceof Set && b instanceof Set) return firstDifference([...a].sort(), [...b].sort(), at);
  if (a !== null && b !== null && typeof a === 'object' && typeof b === 'object') {
    const keys = new Set([...Object.keys(a), ...Object.keys(b)]);
    for (const k of keys) {
      const d = firstDifference((a as Record<string, unknown>)[k], (b as Record<string, unknown>)[k], `${at}.${k}`);
      if (d !== null) return d;
    }
    return `${at} (${Array.isArray(a) ? 'order' : 'prototype'})`;
  }
  return `${at}: ${JSON.stringify(a)?.slice(0, 200)} vs ${JSON.stringify(b)?.slice(0, 200)}`;
}
