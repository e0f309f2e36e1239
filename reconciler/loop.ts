/**
 * One reconcile, as a fixed sequence of steps: fetch → load → observe → apply → report.
 * The runner stops at the first error of a step that concerns the whole sync; a bad manifest or
 * a failed apply concerns one VM only and is reported without stopping the others.
 */
import type { Logger } from 'pino';
import { type RepositoryIdentity, repositoryIdentity } from './apply/identity.ts';
import { Owner, SOURCE_COMMIT_ANNOTATION, SOURCE_PATH_ANNOTATION, appliedIn, ownedBy, ownedFieldsInSync, ownedFingerprint, ownerOf, withOwnership } from './apply/ownership.ts';
import { type VmOrphan, decidePrune } from './apply/prune.ts';
import type { ClusterBackend } from './cluster/backend.ts';
import { ClusterCache } from './cluster/cache.ts';
import { annotationsOf, conditionsOf, metaOf } from './cluster/object.ts';
import { type FieldRevert, type Obj, RELEASED_WHY, type VmPlan, type VmPlanEntry, changeOutcome, planRollout, vmMetadataChanges } from './rollout/index.ts';
import type { ManifestError } from './rollout/plan.ts';
import { SourceError, SourceErrorCode } from './source/errors.ts';
import type { ChangedPath, GitSource } from './source/gitSource.ts';
import { type ManifestSet, type ManifestWarning, loadManifests } from './source/manifests.ts';

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

/**
 * Where a sync leaves each VM of the repository, for the counts: every VM the commit defines (or
 * would define, but for a broken file) is in exactly one state.
 */
export const SyncState = {
  /** Created by this sync. */
  created: 'created',
  /** Updated by this sync; every field it changed reached the running guest, or is not part of it (VM metadata, runStrategy). */
  liveUpdated: 'live-updated',
  /** Updated by this sync; some field waits for the next start, and KubeVirt set no RestartRequired (a stopped VM, template metadata). */
  staged: 'staged',
  /** Updated by this sync, and every field it changed is a revert (see `changeOutcome` in rollout/introduced.ts); no restart pending. */
  reverted: 'reverted',
  /** RestartRequired is on the VM after this sync, set by this sync or earlier. */
  awaitingRestart: 'awaiting restart',
  /** Left alone by this sync, nothing waits for a restart. */
  inSync: 'in sync',
  /** Left as the cluster holds it because its file has errors at this commit (or the apply failed): the errors say why. */
  held: 'held',
  /** Pruned by this sync. */
  deleted: 'deleted',
} as const;
/** One of {@link SyncState}. */
export type SyncState = (typeof SyncState)[keyof typeof SyncState];

/** Counts for a status line such as `12 in sync · 3 live-updated · 1 awaiting restart`: one per {@link SyncState}. */
export interface SyncSummary {
  /** VMs counted (the sum of the states). */
  vms: number;
  inSync: number;
  created: number;
  liveUpdated: number;
  staged: number;
  reverted: number;
  awaitingRestart: number;
  held: number;
  deleted: number;
  /** VMs this repository applied that Git no longer defines and that were kept (see `plan.orphans`). */
  orphans?: number;
  /** Manifest warnings: documents skipped (other kinds) and fields KubeVirt does not define (see `plan.warnings`). */
  warnings?: number;
  /** Manifest and apply errors (one broken file may hold several VMs, and one VM several errors). */
  errors: number;
}

/** What one sync did to one VM, as the text report shows it. */
export interface VmOutcome {
  namespace: string;
  name: string;
  state: SyncState;
  /**
   * Whether the text lists the VM this sync: it was created, updated or deleted, it entered
   * `awaiting restart` without a write (first seen by this process), or RestartRequired went away
   * without a write. A VM that stays awaiting restart is listed once and then only counted.
   */
  listed: boolean;
  /** Fields this sync set back to what the running instance runs. */
  reverts: FieldRevert[];
}

/** The outcome of one reconcile. */
export interface ReconcileReport {
  plan: VmPlan;
  summary: SyncSummary;
  commit: string;
  /** Milliseconds per step. */
  timings: { fetch: number; diff: number; load: number; plan: number; apply: number; report: number; total: number };
  /** Manifest files read in this sync. */
  read: string[];
  /** Requests the sync wrote to the cluster. */
  writes: number;
  /** Per VM, sorted by namespace/name: its state for the counts and what the text shows of it. */
  outcomes: VmOutcome[];
  /** The errors of `plan.errors` that the previous sync of this process did not have (the text lists only these). */
  newErrors: ManifestError[];
  /** The warnings of `plan.warnings` that the previous sync of this process did not have (the text lists only these). */
  newWarnings: ManifestWarning[];
}

type Step = 'fetch' | 'diff' | 'load' | 'plan' | 'apply' | 'report';

interface PendingWrite {
  key: string;
  action: 'create' | 'update';
  desired: Obj;
  file: string;
  line: number;
  fingerprint: string;
  /** The loaded manifest object, remembered to skip the VM while its file is unchanged. */
  manifest: unknown;
}

function vmKey(namespace: string, name: string): string {
  return `${namespace}/${name}`;
}

function restartCondition(vm: Obj | undefined): Obj | undefined {
  return conditionsOf(vm).find((c) => c['type'] === 'RestartRequired' && c['status'] === 'True');
}

/** The {@link SyncSummary} count of each state. */
const SUMMARY_FIELD: Record<SyncState, Exclude<keyof SyncSummary, 'vms' | 'errors'>> = {
  created: 'created',
  'live-updated': 'liveUpdated',
  staged: 'staged',
  reverted: 'reverted',
  'awaiting restart': 'awaitingRestart',
  'in sync': 'inSync',
  held: 'held',
  deleted: 'deleted',
};

/** The state of a VM this sync planned (created, updated or left alone), given the fields it reverted. */
function stateOf(entry: VmPlanEntry, reverts: readonly FieldRevert[]): SyncState {
  if (entry.action === 'create') return SyncState.created;
  if (entry.restartRequired) return SyncState.awaitingRestart;
  if (entry.action !== 'update') return SyncState.inSync;
  // Released live updates are a consequence of the commit's change, not a change of their own.
  const own = entry.changes.filter((c) => c.why !== RELEASED_WHY);
  if (reverts.length > 0 && own.length === 0) return SyncState.reverted;
  return own.some((c) => c.rollout === 'staged') ? SyncState.staged : SyncState.liveUpdated;
}

/** Identity of an error across syncs, to report it once. */
function errorKey(e: ManifestError | ManifestWarning): string {
  return `${e.file}\n${e.line ?? ''}\n${e.message}`;
}

function compareKeys(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/** GitHub's cap on a commit status description; the summary is made to fit rather than be cut. */
export const SUMMARY_MAX_CHARS = 140;

/**
 * Formats a summary the way statuses, logs and the text report show it, e.g.
 * `12 in sync · 3 live-updated · 1 reverted · 1 awaiting restart · 1 held · 2 errors`. States with
 * no VM are left out, but `in sync` always shows. Longer than {@link SUMMARY_MAX_CHARS} (counts in
 * the hundred thousands), the labels shorten and the separators tighten, so no count is cut off.
 */
export function formatSummary(s: SyncSummary): string {
  const parts: Array<[number, string, string]> = [
    [s.inSync, 'in sync', 'in sync'],
    [s.created, 'created', 'new'],
    [s.liveUpdated, 'live-updated', 'live'],
    [s.staged, 'staged', 'staged'],
    [s.reverted, 'reverted', 'reverted'],
    [s.awaitingRestart, 'awaiting restart', 'restart'],
    [s.held, 'held', 'held'],
    [s.deleted, 'deleted', 'deleted'],
    [s.orphans ?? 0, 'orphaned', 'orphan'],
    [s.warnings ?? 0, s.warnings === 1 ? 'warning' : 'warnings', 'warn'],
    [s.errors, s.errors === 1 ? 'error' : 'errors', 'err'],
  ];
  const shown = parts.filter(([n], i) => i === 0 || n > 0);
  const long = shown.map(([n, label]) => `${n} ${label}`).join(' · ');
  if (long.length <= SUMMARY_MAX_CHARS) return long;
  return shown.map(([n, , short]) => `${n} ${short}`).join(',');
}

/** Keeps the state between syncs of one repository and runs them. */
export class Reconciler {
  private manifests: ManifestSet | null = null;
  private readonly cache: ClusterCache;
  /** Fingerprint of the desired VM last applied (or found applied), per VM. */
  private readonly applied = new Map<string, string>();
  /** Per VM: the manifest object and live resourceVersion last found in sync, to skip unchanged VMs. */
  private readonly seen = new Map<string, { manifest: unknown; liveVersion: unknown }>();
  /** Plan entries from earlier syncs, reused while their inputs are unchanged. */
  private readonly entries = new Map<string, { inputs: string; entry: VmPlanEntry }>();
  /** VMs awaiting restart that the text has listed: they are only counted until they leave that state. */
  private readonly announced = new Set<string>();
  /** The errors of the previous sync, by {@link errorKey}: one already reported is only counted. */
  private reportedErrors = new Set<string>();
  /** The warnings of the previous sync, by {@link errorKey}: one already reported is only counted. */
  private reportedWarnings = new Set<string>();
  /** This repository's ownership identity, resolved on the first sync (a local repository's origin is read from disk). */
  private identity: RepositoryIdentity | null = null;

  constructor(private readonly options: ReconcilerOptions) {
    this.cache = new ClusterCache(options.cluster);
  }

  /** The commit of the last successful sync. */
  get lastCommit(): string | null {
    return this.manifests?.commit ?? null;
  }

  /** The cluster as this reconciler caches it (PR review plans against the same cache). */
  get clusterCache(): ClusterCache {
    return this.cache;
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
   * Runs one reconcile: the steps, then one exit that hands how it ended to `onOutcome`, on
   * success and on every failure (a refused token, a vanished branch, an unreachable API server).
   */
  async reconcile(): Promise<ReconcileReport> {
    const started = performance.now();
    const exit: { commit: string | null; report: ReconcileReport | null; error: unknown } = { commit: null, report: null, error: undefined };
    try {
      exit.report = await this.steps(exit);
      return exit.report;
    } catch (e) {
      exit.error = e;
      throw e;
    } finally {
      try {
        this.options.onOutcome?.({ commit: exit.commit, report: exit.report, error: exit.report === null ? exit.error : undefined, durationMs: performance.now() - started });
      } catch (e) {
        // Recording must not turn a sync into a failure, nor hide the failure it records.
        this.options.logger.error({ err: e instanceof Error ? e.message : String(e) }, 'recording the outcome of a sync failed');
      }
    }
  }

  /** The steps of one reconcile; `exit.commit` is set as soon as the commit is resolved. */
  private async steps(exit: { commit: string | null }): Promise<ReconcileReport> {
    const o = this.options;
    const started = performance.now();
    const timings = { fetch: 0, diff: 0, load: 0, plan: 0, apply: 0, report: 0, total: 0 };
    const time = async <T>(step: Step, fn: () => Promise<T>): Promise<T> => {
      const t0 = performance.now();
      try {
        return await fn();
      } finally {
        timings[step] += performance.now() - t0;
      }
    };

    const synced = await time('fetch', () =>
      o.source.sync({ ref: o.ref }).catch((e: unknown) => {
        // A branch that vanished is no order to delete: the sync stops before anything is decided.
        if (e instanceof SourceError && e.code === SourceErrorCode.RefNotFound) throw new SourceError(e.code, `${e.message}; nothing is applied or pruned until it resolves again`, e.data);
        throw e;
      }),
    );
    this.identity ??= await repositoryIdentity({ repo: o.source.repo, path: o.path, ...(o.identity !== undefined ? { identity: o.identity } : {}) });
    const identity = this.identity;
    const commit = synced.commit;
    exit.commit = commit;
    const log = o.logger.child({ repo: o.repoLabel, commit: commit.slice(0, 12) });
    const previous = this.manifests;
    let changes: ChangedPath[] | undefined;
    if (previous !== null) {
      changes = previous.commit === commit ? [] : await time('diff', () => o.source.changedPaths({ from: previous.commit, to: commit, path: o.path }));
    }
    const manifests = await time('load', () =>
      loadManifests({ source: o.source, commit, path: o.path, strict: o.strict ?? false, ...(previous !== null ? { previous } : {}), ...(changes !== undefined ? { changes } : {}) }),
    );
    await this.cache.start();

    // Decide what to write: only VMs whose desired state differs from what was applied.
    const pending: PendingWrite[] = [];
    const prune: Array<{ namespace: string; name: string }> = [];
    // A VM in a namespace the repository may not write is a manifest error: not applied, not
    // reported as the cluster's, and (still defined) never pruned; the other VMs go on.
    const refused = new Set<string>();
    const refusals: ManifestError[] = [];
    for (const vm of manifests.vms) {
      const why = o.refuseNamespace?.(vm.namespace) ?? null;
      if (why === null) continue;
      refused.add(vmKey(vm.namespace, vm.name));
      refusals.push({ file: vm.file, line: vm.line, message: why });
    }
    // A VM another repository applied is left alone, whatever this one says: an error here, and
    // (being defined here) never pruned by this repository.
    for (const vm of manifests.vms) {
      const key = vmKey(vm.namespace, vm.name);
      const live = this.cache.vms.get(key);
      if (refused.has(key) || live === undefined) continue;
      const who = ownerOf(live, identity);
      if (who.owner !== Owner.other) continue;
      refused.add(key);
      refusals.push({ file: vm.file, line: vm.line, message: `VirtualMachine ${key} is owned by ${who.repo ?? '?'}${who.file !== null ? ` (${who.file})` : ''}; not applied: remove it there first` });
    }
    let orphans: VmOrphan[] = [];
    const pruneErrors: ManifestError[] = [];
    await time('plan', async () => {
      for (const vm of manifests.vms) {
        const key = vmKey(vm.namespace, vm.name);
        if (refused.has(key)) continue;
        const live = this.cache.vms.get(key);
        const seen = this.seen.get(key);
        // Same manifest object (its file did not change) and the live VM untouched since: nothing to do.
        if (seen !== undefined && live !== undefined && seen.manifest === vm.manifest && seen.liveVersion === metaOf(live)['resourceVersion']) continue;
        const desired = withOwnership(vm.manifest as unknown as Obj, vm.namespace, { repo: identity.id, file: vm.file, commit });
        const fingerprint = ownedFingerprint(desired);
        // Where the cluster keeps managedFields, what vmroll owns on the live VM decides, so any
        // process (a fresh --once, a new leader) removes what Git removed.
        const byFields = live === undefined ? null : ownedFieldsInSync(desired, live);
        if (live === undefined) {
          pending.push({ key, action: 'create', desired, file: vm.file, line: vm.line, fingerprint, manifest: vm.manifest });
        } else if (byFields !== null) {
          if (byFields.inSync) {
            this.applied.set(key, fingerprint);
          } else {
            if (ownerOf(live, identity).owner === Owner.none) log.info({ vm: key, file: vm.file }, 'adopting a VirtualMachine vmroll did not apply: applying the manifest over it');
            log.debug({ vm: key, drift: byFields.drift.slice(0, 20) }, 'owned fields differ from Git');
            pending.push({ key, action: 'update', desired, file: vm.file, line: vm.line, fingerprint, manifest: vm.manifest });
          }
        } else if (this.applied.get(key) !== fingerprint || !appliedIn(desired, live)) {
          if (this.applied.get(key) === undefined && appliedIn(desired, live)) this.applied.set(key, fingerprint);
          else {
            if (ownerOf(live, identity).owner === Owner.none) log.info({ vm: key, file: vm.file }, 'adopting a VirtualMachine vmroll did not apply: applying the manifest over it');
            pending.push({ key, action: 'update', desired, file: vm.file, line: vm.line, fingerprint, manifest: vm.manifest });
          }
        }
      }
      const writing = new Set(pending.map((w) => w.key));
      for (const vm of manifests.vms) {
        const key = vmKey(vm.namespace, vm.name);
        const live = this.cache.vms.get(key);
        if (!writing.has(key) && !refused.has(key) && live !== undefined) this.seen.set(key, { manifest: vm.manifest, liveVersion: metaOf(live)['resourceVersion'] });
      }
      const decision = await decidePrune({ live: this.cache.vms, manifests, identity, prune: o.prune, listFiles: (args) => o.source.listFiles(args) });
      prune.push(...decision.deletes.map((d) => ({ namespace: d.namespace, name: d.name })));
      orphans = decision.orphans;
      pruneErrors.push(...decision.errors);
      for (const orphan of orphans) log.child({ vm: vmKey(orphan.namespace, orphan.name) }).warn({ reason: orphan.reason, file: orphan.file }, `orphaned VirtualMachine: ${orphan.message}`);
    });

    if (pending.length + prune.length > 0) o.onWork?.(commit, pending.length + prune.length);
    const errors: ManifestError[] = [...manifests.errors, ...refusals, ...pruneErrors];
    const manifestErrors = new Set(errors);
    const actions = new Map<string, 'create' | 'update' | 'delete'>();
    const before = new Map<string, Obj | undefined>();
    const vmisBefore = new Map<string, Obj | null>();
    const failedApplies = new Set<string>();
    let writes = 0;
    await time('apply', async () => {
      const applyOne = async (w: PendingWrite): Promise<void> => {
        before.set(w.key, this.cache.vms.get(w.key));
        vmisBefore.set(w.key, this.cache.vmis.get(w.key) ?? null);
        const vmLog = log.child({ vm: w.key });
        try {
          writes++;
          const stored = await o.cluster.applyVirtualMachine(w.desired);
          this.applied.set(w.key, w.fingerprint);
          written.push({ key: w.key, written: stored, write: w });
          actions.set(w.key, w.action);
          vmLog.info({ action: w.action, file: w.file }, `${w.action === 'create' ? 'created' : 'updated'} VirtualMachine`);
        } catch (e) {
          const message = e instanceof Error ? e.message : String(e);
          errors.push({ file: w.file, line: w.line, message: `apply failed: ${message}` });
          failedApplies.add(w.key);
          vmLog.error({ action: w.action, file: w.file, err: message }, 'apply failed');
        }
      };
      const written: Array<{ key: string; written: Obj | null; write?: PendingWrite }> = [];
      // A few writes in flight at once: a cold sync of thousands of VMs is bound by round trips.
      const queue = [...pending];
      await Promise.all(
        Array.from({ length: Math.min(o.applyConcurrency ?? 8, queue.length) }, async () => {
          for (let w = queue.shift(); w !== undefined; w = queue.shift()) await applyOne(w);
        }),
      );
      for (const ref of prune) {
        const key = vmKey(ref.namespace, ref.name);
        try {
          writes++;
          before.set(key, this.cache.vms.get(key));
          await o.cluster.deleteVirtualMachine(ref);
          actions.set(key, 'delete');
          written.push({ key, written: null });
          this.applied.delete(key);
          log.child({ vm: key }).info({ action: 'delete' }, 'pruned VirtualMachine');
        } catch (e) {
          errors.push({ file: key, line: null, message: `prune failed: ${e instanceof Error ? e.message : String(e)}` });
        }
      }
      // Report what the cluster made of the writes: wait (bounded) until the watch brings them back.
      const late = await this.cache.settle(written, o.settleTimeoutMs ?? 10_000);
      if (late.length > 0) log.warn({ vms: late.slice(0, 10), count: late.length }, 'the cluster had not reported these writes back yet; reporting what it showed');
      for (const { key, write } of written) {
        const after = this.cache.vms.get(key);
        if (write !== undefined && after !== undefined) this.seen.set(key, { manifest: write.manifest, liveVersion: metaOf(after)['resourceVersion'] });
      }
    });

    const vms: VmPlanEntry[] = [];
    const outcomes: VmOutcome[] = [];
    const summary: SyncSummary = { vms: 0, inSync: 0, created: 0, liveUpdated: 0, staged: 0, reverted: 0, awaitingRestart: 0, held: 0, deleted: 0, orphans: orphans.length, warnings: manifests.warnings.length, errors: errors.length };
    const count = (namespace: string, name: string, state: SyncState, listed: boolean, reverts: FieldRevert[] = []): void => {
      outcomes.push({ namespace, name, state, listed, reverts });
      summary.vms++;
      summary[SUMMARY_FIELD[state]]++;
    };
    let newErrors: ManifestError[] = [];
    let newWarnings: ManifestWarning[] = [];
    await time('report', async () => {
      for (const vm of manifests.vms) {
        const key = vmKey(vm.namespace, vm.name);
        if (refused.has(key)) continue;
        const action = actions.get(key) ?? 'none';
        const stored = before.has(key) ? before.get(key) : this.cache.vms.get(key);
        let entry = this.entryFor(key, action, stored);
        if (entry === null) continue;
        let reverts: FieldRevert[] = [];
        const after = this.cache.vms.get(key);
        if (action === 'update' && stored !== undefined && after !== undefined) {
          // What this sync changed in the stored VM, not everything since the VM last started. The
          // stored VM before is the previous synced commit's; on a process's first sync it is
          // whatever the cluster held (an earlier process's commit, a hand edit), and the list says
          // what this sync changed in that.
          const vmi = vmisBefore.get(key) ?? null;
          const planBefore = vmi === null ? { ...entry, changes: [] } : this.planOf(stored, vmi);
          const delta = changeOutcome(planBefore, entry, stored, after);
          // The VM's own labels and annotations, less the source commit vmroll stamps on every apply.
          const metadata = vmMetadataChanges(stored, after, (kind, k) => kind === 'annotations' && k === SOURCE_COMMIT_ANNOTATION);
          entry = { ...delta.entry, changes: [...metadata.filter((m) => !delta.entry.changes.some((c) => c.path === m.path)), ...delta.entry.changes] };
          reverts = delta.reverts;
        }
        vms.push(entry);
        const state = failedApplies.has(key) ? SyncState.held : stateOf(entry, reverts);
        let listed = action !== 'none';
        if (state === SyncState.awaitingRestart) {
          // Listed when it enters the state (or this process first sees it), then only counted.
          if (!this.announced.has(key)) listed = true;
          this.announced.add(key);
        } else if (this.announced.delete(key) && action === 'none' && state === SyncState.inSync) {
          listed = true; // RestartRequired went away without a write from vmroll: say so once.
        }
        count(vm.namespace, vm.name, state, listed, reverts);
      }
      // A VM whose file broke (or that is defined twice) keeps its place in the counts.
      for (const key of this.heldKeys(manifests, refused, identity)) {
        this.announced.delete(key);
        const [namespace = '', name = ''] = key.split('/');
        count(namespace, name, SyncState.held, false);
      }
      for (const [key, action] of actions) {
        if (action !== 'delete') continue;
        const [namespace = '', name = ''] = key.split('/');
        this.announced.delete(key);
        count(namespace, name, SyncState.deleted, true);
        vms.push({
          namespace,
          name,
          action: 'delete',
          strategy: 'Stage',
          restartRequired: false,
          condition: 'absent',
          conditionMessage: null,
          reasons: [],
          changes: [],
          waiting: [],
          kubevirt: { version: null, model: 'seed' },
        });
      }
      outcomes.sort((a, b) => compareKeys(vmKey(a.namespace, a.name), vmKey(b.namespace, b.name)));
      // Each error is reported (text and log) when it first appears, then only counted.
      newErrors = errors.filter((e) => !this.reportedErrors.has(errorKey(e)));
      this.reportedErrors = new Set(errors.map(errorKey));
      for (const e of newErrors) {
        if (!manifestErrors.has(e)) continue; // apply and prune failures were logged where they happened
        log.warn({ file: e.file, line: e.line, ...(e.path !== undefined ? { path: e.path } : {}), message: e.message }, 'manifest error');
      }
      // Warnings the same way: nothing in the path is dropped without a word, and nothing is repeated every interval.
      newWarnings = manifests.warnings.filter((w) => !this.reportedWarnings.has(errorKey(w)));
      this.reportedWarnings = new Set(manifests.warnings.map(errorKey));
      for (const w of newWarnings) log.warn({ file: w.file, line: w.line, ...(w.path !== undefined ? { path: w.path } : {}), message: w.message }, 'manifest warning');
    });
    this.manifests = manifests;
    timings.total = performance.now() - started;
    const report: ReconcileReport = { plan: { commit, vms, errors, orphans, warnings: manifests.warnings }, summary, commit, timings, read: manifests.read, writes, outcomes, newErrors, newWarnings };
    log.info({ summary: formatSummary(summary), writes, read: manifests.read.length, ms: Math.round(timings.total) }, 'reconciled');
    return report;
  }

  /** The engine's plan of a stored VM against the running instance `vmi` (uncached: for the few VMs a sync writes). */
  private planOf(stored: Obj, vmi: Obj | null): VmPlanEntry {
    return planRollout({
      desired: stored,
      baseline: this.cache.baseline(stored),
      vmi,
      kubevirt: this.cache.kubevirt,
      conditions: conditionsOf(stored),
      instancetypes: [...this.cache.instancetypes.values()],
    }).plan;
  }

  /**
   * VMs in the cluster that this commit would define but for an error in their file: Git defines
   * them but none is usable (invalid, duplicated, carried over from a file that stopped parsing),
   * or the cluster's copy names a failed file as its source (a first sync knows no earlier load).
   */
  private heldKeys(manifests: ManifestSet, refused: ReadonlySet<string>, identity: RepositoryIdentity): string[] {
    const defined = new Set(manifests.vms.map((v) => vmKey(v.namespace, v.name)));
    const out = new Set<string>();
    for (const key of manifests.heldVms) if (this.cache.vms.has(key)) out.add(key);
    const failedFiles = new Set(manifests.holdingFiles);
    for (const [key, live] of this.cache.vms) {
      if (!ownedBy(live, identity)) continue;
      const file = String(annotationsOf(live)[SOURCE_PATH_ANNOTATION] ?? '');
      if (failedFiles.has(file)) out.add(key);
    }
    return [...out].filter((key) => !defined.has(key) && !refused.has(key)).sort(compareKeys);
  }

  /** The VM's plan entry as the cluster now holds it, reusing the last one while nothing it depends on changed. */
  private entryFor(key: string, action: VmPlanEntry['action'], before: Obj | undefined): VmPlanEntry | null {
    const live = this.cache.vms.get(key);
    if (live === undefined) return null;
    const vmi = this.cache.vmis.get(key) ?? null;
    const kubevirt = this.cache.kubevirt;
    const inputs = [
      metaOf(live)['resourceVersion'],
      vmi ? metaOf(vmi)['resourceVersion'] : '-',
      kubevirt ? metaOf(kubevirt)['resourceVersion'] : '-',
      this.cache.baselineGeneration(live),
      this.cache.instancetypes.size,
    ].join('|');
    const cached = this.entries.get(key);
    const condBefore = restartCondition(before);
    const condAfter = restartCondition(live);
    const condition: VmPlanEntry['condition'] =
      condBefore === undefined ? (condAfter === undefined ? 'absent' : 'set') : condAfter === undefined ? 'cleared' : condAfter['message'] === condBefore['message'] ? 'kept' : 'set';
    if (cached !== undefined && cached.inputs === inputs) return { ...cached.entry, action, condition };
    const baseline = this.cache.baseline(live);
    const result = planRollout({
      desired: live,
      baseline,
      vmi,
      kubevirt,
      conditions: conditionsOf(live),
      instancetypes: [...this.cache.instancetypes.values()],
    });
    const entry: VmPlanEntry = {
      ...result.plan,
      action,
      condition,
      // The cluster's own condition is the truth after the sync.
      restartRequired: condAfter !== undefined,
      conditionMessage: condAfter !== undefined ? String(condAfter['message'] ?? '') : null,
    };
    this.entries.set(key, { inputs, entry });
    return entry;
  }
}
