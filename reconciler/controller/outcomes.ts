/**
 * The sync's report step: what the cluster made of the sync, per VM. The engine plans each VM as
 * the cluster now holds it (KubeVirt's own RestartRequired is the truth after a write), the
 * entry of a VM it wrote says what this sync changed, and every VM the commit defines gets one
 * state (plan/summary.ts) for the counts. Errors and warnings are listed when they first appear,
 * then only counted; a VM awaiting restart likewise. A VM whose write put a live change on the
 * VMI is followed (observeGuest) from sync to sync until its guest runs the change: migrating,
 * queued, blocked or evicted until then, and listed once more when it gets there.
 */
import type { Logger } from 'pino';
import type { RepositoryIdentity } from '../apply/identity.ts';
import { SOURCE_COMMIT_ANNOTATION, SOURCE_PATH_ANNOTATION, ownedBy } from '../apply/ownership.ts';
import type { CacheMark, ClusterCache } from '../cluster/cache.ts';
import { annotationsOf, conditionsOf, metaOf } from '../cluster/object.ts';
import { deleteEntry } from '../plan/planCommit.ts';
import { loadedVmKey, vmKey } from '../plan/pairing.ts';
import { type Summary, SyncState, countState, emptySummary, observedState, stateOf } from '../plan/summary.ts';
import { type FieldRevert, MigrationTrigger, type Obj, type ObservedGuest, ObservedOutcome, Rollout, type VmPlanEntry, changeOutcome, observeGuest, pendingTriggers, planRollout, vmMetadataChanges } from '../rollout/index.ts';
import type { ManifestError } from '../rollout/plan.ts';
import type { ManifestSet, ManifestWarning } from '../source/manifests.ts';
import type { ApplyResult } from './apply.ts';

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
  /** Where the guest stands, for a VM this sync wrote or follows (see {@link SyncOutcomes.follow}). */
  guest?: ObservedGuest;
  /** Set when the guest got there in this sync after an earlier one wrote it, or when a new instance replaced the one this sync wrote to: what carried the change (`migration`, `eviction`, `restart`). */
  arrived?: 'migration' | 'eviction' | 'restart';
}

/** A VM whose guest does not run its last write yet, as the report follows it from sync to sync. */
interface Followed {
  /** The state its write had before the guest was considered (live-updated, staged, …). */
  base: SyncState;
  /** The outcome last reported. */
  outcome: ObservedOutcome;
  /** What was to carry the change, when queued or migrating. */
  via: ObservedGuest['via'];
  /** The uid of the VMI it was last seen with: a new one means the guest was restarted (evicted), not migrated. */
  vmiUid: unknown;
}

/** Outcomes a later sync must look at again: they change by themselves. */
const MOVING: ReadonlySet<ObservedOutcome> = new Set([ObservedOutcome.migrating, ObservedOutcome.queued, ObservedOutcome.restarting]);

/** What {@link SyncOutcomes.assess} reads. */
export interface AssessInput {
  manifests: ManifestSet;
  /** VMs the repository may not write (plan/pairing.ts): neither planned nor counted. */
  refused: ReadonlySet<string>;
  identity: RepositoryIdentity;
  apply: ApplyResult;
  /** Every error of the sync: manifest errors, refusals, prune and apply errors. */
  errors: ManifestError[];
  /** Of {@link errors}, those to log as manifest errors when new (apply and prune failures were logged where they happened). */
  manifestErrors: ReadonlySet<ManifestError>;
  orphans: number;
  /** Where the guests of the written and followed VMs stand after the settle step ({@link SyncOutcomes.follow}). */
  guests: ReadonlyMap<string, ObservedGuest>;
  log: Logger;
  /** Plan every VM with the engine and reuse nothing remembered (the reference the memoised report is checked against); default false. */
  full?: boolean;
}

/** Output of {@link SyncOutcomes.assess}. */
export interface Assessment {
  /** One entry per VM the commit defines and the cluster holds, then one per VM deleted. */
  vms: VmPlanEntry[];
  /** Per VM, sorted by namespace/name. */
  outcomes: VmOutcome[];
  summary: Summary;
  /** The errors the previous sync of this process did not have. */
  newErrors: ManifestError[];
  /** The warnings the previous sync of this process did not have. */
  newWarnings: ManifestWarning[];
  /** Why the sync should be looked at again soon (guests migrating, queued or restarting), or null. */
  moving: string | null;
}

function restartCondition(vm: Obj | undefined): Obj | undefined {
  return conditionsOf(vm).find((c) => c['type'] === 'RestartRequired' && c['status'] === 'True');
}

const TRIGGER_TYPES: ReadonlySet<unknown> = new Set(Object.values(MigrationTrigger));

/**
 * A cheap first look at a VMI the sync neither wrote nor follows: a hotplug condition, or the guest's
 * CPU or memory apart from the spec (then {@link pendingTriggers} decides). Most VMIs show neither.
 */
function mayLag(vmi: Obj): boolean {
  if (conditionsOf(vmi).some((c) => TRIGGER_TYPES.has(c['type']))) return true;
  const spec = (vmi['spec'] ?? {}) as Obj;
  const status = (vmi['status'] ?? {}) as Obj;
  const domain = (spec['domain'] ?? {}) as Obj;
  const sockets = ((domain['cpu'] ?? {}) as Obj)['sockets'];
  const current = ((status['currentCPUTopology'] ?? {}) as Obj)['sockets'];
  if (sockets !== undefined && current !== undefined && sockets !== current) return true;
  const guest = ((domain['memory'] ?? {}) as Obj)['guest'];
  const guestCurrent = ((status['memory'] ?? {}) as Obj)['guestCurrent'];
  return guest !== undefined && guestCurrent !== undefined && guest !== guestCurrent && pendingTriggers(vmi).length > 0;
}

/** Identity of an error across syncs, to report it once. */
function errorKey(e: ManifestError | ManifestWarning): string {
  return `${e.file}\n${e.line ?? ''}\n${e.message}`;
}

function compareKeys(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/** The report step of one repository's syncs, with what it remembers between them. */
/** The cluster-wide inputs of one {@link SyncOutcomes.assess}, read once rather than per VM. */
interface ClusterInputs {
  kubevirt: Obj | null;
  /** What the engine reads of the KubeVirt CR ({@link kubevirtKey}): a status counter the workload updater patches is not a reason to re-plan every VM. */
  kubevirtKey: string;
  /** The cache's migrations digest (entries with a live change depend on the migrations ahead). */
  migrationsKey: string;
  migrations: Obj[];
  instancetypes: Obj[];
  /** Per instancetype or preference name, a digest of every object of that name (kind, place, resourceVersion). */
  instancetypeDigest: Map<string, string>;
}

/** What a plan entry was computed from: the same objects (or resourceVersions) give the same entry. */
interface EntryInputs {
  live: Obj;
  vmi: Obj | null;
  /** {@link kubevirtKey} of the CR the entry was planned with. */
  kubevirt: string;
  baselineGeneration: number;
  /** The migrations digest when the entry has a live change (only then does the engine read the migrations), else null. */
  migrations: string | null;
  /** The instancetype and preference names the VM and its baseline reference (null: none, so instancetypes do not matter), and their digest. */
  instancetypeNames: string[] | null;
  instancetypes: string;
}

/** A plan entry remembered with what it was computed from. */
interface EntryRecord {
  inputs: EntryInputs;
  entry: VmPlanEntry;
}

/** A VM's line of the last report, reused while the VM is untouched: no write, no guest followed, not listed, same entry inputs. */
interface Row {
  record: EntryRecord;
  entry: VmPlanEntry;
  state: SyncState;
  outcome: VmOutcome;
}

/** The history a report depends on besides the cluster: what was announced, followed and reported (see {@link SyncOutcomes.history}). */
export interface OutcomeHistory {
  announced: Set<string>;
  following: Map<string, Followed>;
  reportedErrors: Set<string>;
  reportedWarnings: Set<string>;
}

/** The same object, or the same resourceVersion of it (an API object's content is fixed by its resourceVersion). */
function sameObject(a: Obj | null, b: Obj | null): boolean {
  if (a === b) return true;
  if (a === null || b === null) return false;
  const rv = metaOf(a)['resourceVersion'];
  return rv !== undefined && rv === metaOf(b)['resourceVersion'];
}

/** The instancetype and preference names a VM (or a baseline `{spec}`) references; the engine expands only these. */
function instancetypeNames(vm: Obj | null, into: Set<string>): void {
  if (vm === null) return;
  const spec = (vm['spec'] ?? {}) as Obj;
  for (const field of ['instancetype', 'preference']) {
    const matcher = spec[field];
    if (matcher !== null && typeof matcher === 'object') {
      const name = (matcher as Obj)['name'];
      into.add(typeof name === 'string' ? name : '');
    }
  }
}

/** The report step of one repository's syncs, with what it remembers between them. */
export class SyncOutcomes {
  /** Plan entries from earlier syncs, reused while their inputs are unchanged. */
  private readonly entries = new Map<string, EntryRecord>();
  /** Per VM, its line of the last report, reused while nothing it depends on changed (a one-VM sync does not re-plan the rest). */
  private readonly rows = new Map<string, Row>();
  /** Per VMI, whether {@link mayLag} held for that object (most VMIs do not change between syncs). */
  private readonly lag = new Map<string, { vmi: Obj; lags: boolean }>();
  /** VMs awaiting restart that the text has listed: they are only counted until they leave that state. */
  private announced = new Set<string>();
  /** The errors of the previous sync, by {@link errorKey}: one already reported is only counted. */
  private reportedErrors = new Set<string>();
  /** The warnings of the previous sync, by {@link errorKey}: one already reported is only counted. */
  private reportedWarnings = new Set<string>();
  /** VMs whose guest does not run their last write yet, by `namespace/name`. */
  private following = new Map<string, Followed>();

  /** The cache mark and cluster-wide inputs of the last (non-full) report: its rows were all fresh then. */
  private lastReport: { mark: CacheMark; ctx: ClusterInputs } | null = null;

  constructor(private readonly cache: ClusterCache) {}

  /** A copy of what the report remembers between syncs besides its caches (the check of the memoised report restores it to run the full one). */
  get history(): OutcomeHistory {
    return {
      announced: new Set(this.announced),
      following: new Map([...this.following].map(([k, f]) => [k, { ...f }])),
      reportedErrors: new Set(this.reportedErrors),
      reportedWarnings: new Set(this.reportedWarnings),
    };
  }

  set history(h: OutcomeHistory) {
    this.announced = new Set(h.announced);
    this.following = new Map([...h.following].map(([k, f]) => [k, { ...f }]));
    this.reportedErrors = new Set(h.reportedErrors);
    this.reportedWarnings = new Set(h.reportedWarnings);
  }

  /**
   * The running VMs, other than those already looked at, whose guest may lag their VM (a hotplug
   * condition, CPU or memory apart from the spec): {@link mayLag} per VMI, remembered per VMI object
   * unless `full`.
   */
  lagging(skip: ReadonlySet<string>, full = false): string[] {
    const out: string[] = [];
    for (const [key, vmi] of this.cache.vmis) {
      if (skip.has(key) || !this.cache.vms.has(key)) continue;
      let lags: boolean;
      if (full) lags = mayLag(vmi);
      else {
        const known = this.lag.get(key);
        if (known !== undefined && known.vmi === vmi) lags = known.lags;
        else {
          lags = mayLag(vmi);
          this.lag.set(key, { vmi, lags });
        }
      }
      if (lags) out.push(key);
    }
    if (!full && this.lag.size > this.cache.vmis.size) for (const key of [...this.lag.keys()]) if (!this.cache.vmis.has(key)) this.lag.delete(key);
    return out;
  }

  /**
   * The settle step's second half: where the guest of every running VM stands (those this sync
   * updated while they ran, those followed since an earlier sync, and any other whose guest lags). A write whose plan puts a migration-bound
   * change on the VMI (CPU sockets, guest memory, …) is first waited for (bounded) until the cache
   * shows the VMI changed, so the look is not taken at the instance as it was before the write.
   */
  async follow(apply: ApplyResult, timeoutMs: number): Promise<Map<string, ObservedGuest>> {
    const keys = new Set(this.following.keys());
    // Every running VM is looked at (cheap: its VMI's conditions and a few fields): one written by an earlier process, in a
    // sync that failed as a whole, or by hand may be on its way too, or blocked.
    for (const key of this.lagging(keys)) keys.add(key);
    const expect: Array<{ key: string; rv: unknown }> = [];
    for (const [key, action] of apply.actions) {
      const vmi = apply.vmisBefore.get(key) ?? null;
      const after = this.cache.vms.get(key);
      if (action !== 'update' || vmi === null || after === undefined || apply.failed.has(key)) continue;
      keys.add(key);
      // Only a migration-bound change this write brings changes the VMI; one already on it (blocked from before) does not.
      const stored = apply.before.get(key);
      const had = stored !== undefined ? this.planOf(stored, vmi).changes.filter((c) => c.migration !== undefined) : [];
      const brings = this.planOf(after, vmi).changes.filter((c) => c.migration !== undefined && !had.some((h) => h.path === c.path && JSON.stringify(h.to) === JSON.stringify(c.to)));
      if (brings.length > 0) expect.push({ key, rv: metaOf(vmi)['resourceVersion'] });
    }
    if (expect.length > 0) {
      const changed = (): boolean => expect.every(({ key, rv }) => {
        const now = this.cache.vmis.get(key);
        return now === undefined || metaOf(now)['resourceVersion'] !== rv;
      });
      await this.cache.until(changed, timeoutMs);
    }
    const migrations = this.cache.migrationList();
    const out = new Map<string, ObservedGuest>();
    for (const key of keys) {
      const vm = this.cache.vms.get(key);
      if (vm === undefined) continue;
      out.set(key, observeGuest({ vm, vmi: this.cache.vmis.get(key) ?? null, migrations, kubevirt: this.cache.kubevirt }));
    }
    return out;
  }

  /** The cluster-wide inputs of the engine, read once per report. */
  private clusterInputs(): ClusterInputs {
    const instancetypeDigest = new Map<string, string>();
    for (const [k, it] of this.cache.instancetypes) {
      const name = metaOf(it)['name'];
      const n = typeof name === 'string' ? name : '';
      instancetypeDigest.set(n, `${instancetypeDigest.get(n) ?? ''}${k}@${String(metaOf(it)['resourceVersion'] ?? '')};`);
    }
    return {
      kubevirt: this.cache.kubevirt,
      kubevirtKey: kubevirtKey(this.cache.kubevirt),
      migrationsKey: this.cache.migrationsKey(),
      migrations: this.cache.migrationList(),
      instancetypes: [...this.cache.instancetypes.values()],
      instancetypeDigest,
    };
  }

  /**
   * Plans every VM as the cluster holds it after the sync's writes, and counts it. A VM the sync
   * neither wrote, nor follows, nor listed last time, whose entry inputs are unchanged, keeps its
   * line of the last report (unless `full`): the result is the same as planning it again.
   */
  assess(input: AssessInput): Assessment {
    const { manifests, refused, apply, errors, log } = input;
    const full = input.full === true;
    const ctx = this.clusterInputs();
    const vms: VmPlanEntry[] = [];
    const outcomes: VmOutcome[] = [];
    const summary: Summary = { ...emptySummary(), orphans: input.orphans, warnings: manifests.warnings.length, errors: errors.length };
    /** Followed VMs that were counted (the others are not followed any more). */
    const countedFollowed = new Set<string>();
    const count = (key: string, outcome: VmOutcome): void => {
      outcomes.push(outcome);
      countState(summary, outcome.state, outcome.state === SyncState.blocked ? outcome.guest?.blockedBy : undefined);
      if (this.following.size > 0 && this.following.has(key)) countedFollowed.add(key);
    };
    const outcomeOf = (namespace: string, name: string, state: SyncState, listed: boolean, reverts: FieldRevert[] = [], guest?: ObservedGuest, arrived?: VmOutcome['arrived']): VmOutcome => ({
      namespace,
      name,
      state,
      listed,
      reverts,
      ...(guest !== undefined && { guest }),
      ...(arrived !== undefined && { arrived }),
    });
    /** Rows reused or made in this pass: more rows than that means some are of VMs gone from the report. */
    let rowsKept = 0;
    // Most syncs write, follow and refuse nothing: the per-VM lookups below are skipped then.
    const anyAction = apply.actions.size > 0;
    const anyGuest = input.guests.size > 0;
    const anyRefused = refused.size > 0;
    const anyFailed = apply.failed.size > 0;
    // Every row kept or made by the last report was fresh then. While no cluster-wide input moved
    // (the KubeVirt CR as read, instancetypes, start revisions, a relist), a row whose VM and VMI saw
    // no event since is fresh still, without looking (the migrations only matter to rows with a live change).
    const last = this.lastReport;
    const unchanged = !full && last !== null && last.ctx.kubevirtKey === ctx.kubevirtKey && sameDigest(last.ctx.instancetypeDigest, ctx.instancetypeDigest) ? this.cache.changedSince(last.mark) : null;
    const migrationsSame = last !== null && last.ctx.migrationsKey === ctx.migrationsKey;
    // Taken before any VM is read (assess does not wait): an event after it is a change for the next report.
    const mark = full ? null : this.cache.mark();
    for (const vm of manifests.vms) {
      const key = loadedVmKey(vm);
      if (anyRefused && refused.has(key)) continue;
      const action = (anyAction ? apply.actions.get(key) : undefined) ?? 'none';
      const guest = anyGuest ? input.guests.get(key) : undefined;
      if (!full && action === 'none' && guest === undefined && !(anyFailed && apply.failed.has(key))) {
        // Untouched by this sync: its last line stands while the entry it came from would be reused as is.
        const row = this.rows.get(key);
        const live = this.cache.vms.get(key);
        if (row !== undefined && live !== undefined && this.entries.get(key) === row.record && ((unchanged !== null && !unchanged.has(key) && (migrationsSame || row.record.inputs.migrations === null)) || this.fresh(key, row.record.inputs, live, ctx))) {
          vms.push(row.entry);
          count(key, row.outcome);
          rowsKept++;
          continue;
        }
      }
      const stored = apply.before.has(key) ? apply.before.get(key) : this.cache.vms.get(key);
      const found = this.entryFor(key, action, stored, ctx, full);
      if (found === null) {
        if (!full) this.rows.delete(key);
        continue;
      }
      let entry = found.entry;
      let reverts: FieldRevert[] = [];
      const after = this.cache.vms.get(key);
      if (action === 'update' && stored !== undefined && after !== undefined) {
        // What this sync changed in the stored VM, not everything since the VM last started. The
        // stored VM before is the previous synced commit's; on a process's first sync it is
        // whatever the cluster held (an earlier process's commit, a hand edit), and the list says
        // what this sync changed in that.
        const vmi = apply.vmisBefore.get(key) ?? null;
        const planBefore = vmi === null ? { ...entry, changes: [] } : this.planOf(stored, vmi);
        const delta = changeOutcome(planBefore, entry, stored, after);
        // The VM's own labels and annotations, less the source commit vmroll stamps on every apply.
        const metadata = vmMetadataChanges(stored, after, (kind, k) => kind === 'annotations' && k === SOURCE_COMMIT_ANNOTATION);
        entry = { ...delta.entry, changes: [...metadata.filter((m) => !delta.entry.changes.some((c) => c.path === m.path)), ...delta.entry.changes] };
        reverts = delta.reverts;
      }
      let state = apply.failed.has(key) ? SyncState.held : stateOf(entry, reverts);
      let listed = action !== 'none';
      let arrived: VmOutcome['arrived'];
      let replaced = false;
      if (guest !== undefined && state !== SyncState.held) {
        const followed = this.following.get(key);
        const written = action === 'update';
        // The state the write gave the VM: this sync's, or the one remembered from the sync that wrote it.
        const base = written || followed === undefined ? (state === SyncState.inSync ? SyncState.liveUpdated : state) : followed.base;
        const vmiBefore = written ? (apply.vmisBefore.get(key) ?? null) : null;
        const vmiNow = this.cache.vmis.get(key);
        if (guest.outcome === ObservedOutcome.effective && vmiBefore !== null && vmiNow !== undefined && metaOf(vmiNow)['uid'] !== metaOf(vmiBefore)['uid']) {
          // A new instance already runs the change: the one the write met was evicted (a restart) while the sync looked.
          this.following.delete(key);
          state = observedState(state, ObservedOutcome.restarting);
          replaced = true;
        } else if (guest.outcome === ObservedOutcome.effective) {
          this.following.delete(key);
          if (!written && followed !== undefined) {
            // It got there without a write from vmroll: said once, with what carried it.
            listed = true;
            const newInstance = vmiNow !== undefined && metaOf(vmiNow)['uid'] !== followed.vmiUid;
            if (followed.outcome === ObservedOutcome.restarting || followed.outcome === ObservedOutcome.stopped || (newInstance && followed.via === 'eviction')) arrived = 'eviction';
            else if (newInstance || followed.outcome === ObservedOutcome.blocked) arrived = 'restart';
            else arrived = 'migration';
            if (arrived === 'migration' && state === SyncState.inSync) state = SyncState.liveUpdated;
          }
        } else {
          // Listed when its outcome moves (queued → migrating) or this process first sees it, otherwise only counted.
          if (!written && followed?.outcome !== guest.outcome) listed = true;
          // Untouched by this sync: its last write (this process's, or whoever made it) is what is on its way.
          state = observedState(written || state !== SyncState.inSync ? state : base, guest.outcome);
          this.following.set(key, { base, outcome: guest.outcome, via: guest.via, vmiUid: vmiNow !== undefined ? metaOf(vmiNow)['uid'] : undefined });
        }
        const { pending: _pending, ...observed } = guest;
        // A VM only looked at carries what was seen only when its guest lags.
        if (written || followed !== undefined || guest.outcome !== ObservedOutcome.effective) entry = { ...entry, observed: replaced ? { ...observed, restarted: true, summary: `restarted: the instance this sync wrote to was evicted, and the new one runs the change (${guest.summary})` } : observed };
      }
      vms.push(entry);
      if (state === SyncState.awaitingRestart) {
        // Listed when it enters the state (or this process first sees it), then only counted.
        if (!this.announced.has(key)) listed = true;
        this.announced.add(key);
      } else if (this.announced.delete(key) && action === 'none' && state === SyncState.inSync) {
        listed = true; // RestartRequired went away without a write from vmroll: say so once.
      }
      const outcome = outcomeOf(vm.namespace, vm.name, state, listed, reverts, guest, replaced ? 'eviction' : arrived);
      count(key, outcome);
      if (full) continue;
      // Only a line that the next sync would make again the same way is kept for reuse.
      if (found.record !== null && action === 'none' && guest === undefined && !listed && state !== SyncState.held) {
        this.rows.set(key, { record: found.record, entry, state, outcome });
        rowsKept++;
      } else this.rows.delete(key);
    }
    if (!full && this.rows.size > rowsKept) {
      const reported = new Set(manifests.vms.map(loadedVmKey).filter((key) => !refused.has(key)));
      for (const key of [...this.rows.keys()]) if (!reported.has(key)) this.rows.delete(key);
    }
    // A VM whose file broke (or that is defined twice) keeps its place in the counts.
    let appended = false;
    for (const key of this.heldKeys(manifests, refused, input.identity)) {
      this.announced.delete(key);
      this.following.delete(key);
      const [namespace = '', name = ''] = key.split('/');
      count(key, outcomeOf(namespace, name, SyncState.held, false));
      appended = true;
    }
    for (const [key, action] of apply.actions) {
      if (action !== 'delete') continue;
      const [namespace = '', name = ''] = key.split('/');
      this.announced.delete(key);
      this.following.delete(key);
      count(key, outcomeOf(namespace, name, SyncState.deleted, true));
      appended = true;
      const live = apply.before.get(key);
      // The same entry a plan shows for a delete: the cluster's strategy and KubeVirt version.
      vms.push(live !== undefined ? deleteEntry(namespace, name, live, this.cache.kubevirt) : deleteEntry(namespace, name, { metadata: { namespace, name } }, this.cache.kubevirt));
    }
    // manifests.vms is sorted by namespace/name already: only held and deleted VMs can put the list out of order.
    if (appended) outcomes.sort((a, b) => compareKeys(vmKey(a.namespace, a.name), vmKey(b.namespace, b.name)));
    // Each error is reported (text and log) when it first appears, then only counted.
    const newErrors = errors.filter((e) => !this.reportedErrors.has(errorKey(e)));
    this.reportedErrors = new Set(errors.map(errorKey));
    for (const e of newErrors) {
      if (!input.manifestErrors.has(e)) continue;
      log.warn({ file: e.file, line: e.line, ...(e.path !== undefined ? { path: e.path } : {}), message: e.message }, 'manifest error');
    }
    // Warnings the same way: nothing in the path is dropped without a word, and nothing is repeated every interval.
    const newWarnings = manifests.warnings.filter((w) => !this.reportedWarnings.has(errorKey(w)));
    this.reportedWarnings = new Set(manifests.warnings.map(errorKey));
    for (const w of newWarnings) log.warn({ file: w.file, line: w.line, ...(w.path !== undefined ? { path: w.path } : {}), message: w.message }, 'manifest warning');
    // A VM the commit no longer defines (or that is gone) is not followed any more.
    for (const key of [...this.following.keys()]) if (!countedFollowed.has(key) || !this.cache.vms.has(key)) this.following.delete(key);
    const moving = outcomes.filter((o) => o.guest !== undefined && MOVING.has(o.guest.outcome));
    const movingText =
      moving.length === 0
        ? null
        : `${moving.length} guest${moving.length === 1 ? '' : 's'} on the way to the change (${moving
            .slice(0, 3)
            .map((o) => `${vmKey(o.namespace, o.name)} ${o.guest?.outcome ?? ''}`)
            .join(', ')}${moving.length > 3 ? ', …' : ''})`;
    if (mark !== null) this.lastReport = { mark, ctx };
    return { vms, outcomes, summary, newErrors, newWarnings, moving: movingText };
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
      migrations: this.cache.migrationList(),
    }).plan;
  }

  /**
   * VMs in the cluster that this commit would define but for an error in their file: Git defines
   * them but none is usable (invalid, duplicated, carried over from a file that stopped parsing),
   * or the cluster's copy names a failed file as its source (a first sync knows no earlier load).
   */
  private heldKeys(manifests: ManifestSet, refused: ReadonlySet<string>, identity: RepositoryIdentity): string[] {
    const out = new Set<string>();
    for (const key of manifests.heldVms) if (this.cache.vms.has(key)) out.add(key);
    const failedFiles = new Set(manifests.holdingFiles);
    // No failed file: no live VM can name one (the walk below is the cost of a sync of a clean repository).
    if (failedFiles.size > 0) {
      for (const [key, live] of this.cache.vms) {
        if (failedFiles.has(String(annotationsOf(live)[SOURCE_PATH_ANNOTATION] ?? '')) && ownedBy(live, identity)) out.add(key);
      }
    }
    if (out.size === 0) return [];
    const defined = new Set(manifests.vms.map((v) => vmKey(v.namespace, v.name)));
    return [...out].filter((key) => !defined.has(key) && !refused.has(key)).sort(compareKeys);
  }

  /** True when an entry computed from `inputs` would be computed the same for `live` now. */
  private fresh(key: string, inputs: EntryInputs, live: Obj, ctx: ClusterInputs): boolean {
    if (!sameObject(inputs.live, live) || !sameObject(inputs.vmi, this.cache.vmis.get(key) ?? null) || inputs.kubevirt !== ctx.kubevirtKey) return false;
    if (inputs.baselineGeneration !== this.cache.baselineGeneration(live)) return false;
    if (inputs.migrations !== null && inputs.migrations !== ctx.migrationsKey) return false;
    return inputs.instancetypeNames === null || inputs.instancetypes === instancetypeKey(inputs.instancetypeNames, ctx);
  }

  /** The VM's plan entry as the cluster now holds it, reusing the last one while nothing it depends on changed (never under `full`). */
  private entryFor(key: string, action: VmPlanEntry['action'], before: Obj | undefined, ctx: ClusterInputs, full: boolean): { entry: VmPlanEntry; record: EntryRecord | null } | null {
    const live = this.cache.vms.get(key);
    if (live === undefined) return null;
    const vmi = this.cache.vmis.get(key) ?? null;
    const cached = full ? undefined : this.entries.get(key);
    const condBefore = restartCondition(before);
    const condAfter = restartCondition(live);
    const condition: VmPlanEntry['condition'] =
      condBefore === undefined ? (condAfter === undefined ? 'absent' : 'set') : condAfter === undefined ? 'cleared' : condAfter['message'] === condBefore['message'] ? 'kept' : 'set';
    if (cached !== undefined && this.fresh(key, cached.inputs, live, ctx)) return { entry: { ...cached.entry, action, condition }, record: cached };
    const baseline = this.cache.baseline(live);
    const result = planRollout({
      desired: live,
      baseline,
      vmi,
      kubevirt: ctx.kubevirt,
      conditions: conditionsOf(live),
      instancetypes: ctx.instancetypes,
      migrations: ctx.migrations,
    });
    const entry: VmPlanEntry = {
      ...result.plan,
      action,
      condition,
      // The cluster's own condition is the truth after the sync.
      restartRequired: condAfter !== undefined,
      conditionMessage: condAfter !== undefined ? String(condAfter['message'] ?? '') : null,
    };
    if (full) return { entry, record: null };
    const names = new Set<string>();
    instancetypeNames(live, names);
    instancetypeNames(baseline, names);
    const instancetypeNamesList = names.size === 0 ? null : [...names].sort();
    const record: EntryRecord = {
      inputs: {
        live,
        vmi,
        kubevirt: ctx.kubevirtKey,
        baselineGeneration: this.cache.baselineGeneration(live),
        // The engine reads the migrations only to say how a live change reaches the guest (annotateGuestPaths).
        migrations: result.plan.changes.some((c) => c.rollout === Rollout.live) ? ctx.migrationsKey : null,
        instancetypeNames: instancetypeNamesList,
        instancetypes: instancetypeNamesList === null ? '' : instancetypeKey(instancetypeNamesList, ctx),
      },
      entry,
    };
    this.entries.set(key, record);
    return { entry, record };
  }
}

/**
 * The KubeVirt CR as the engine reads it (rollout/cluster.ts, resolveCluster and resolveWorkloadUpdate:
 * the whole spec, and of the status the version, the phase and the deployment IDs), as a string.
 */
function kubevirtKey(kubevirt: Obj | null): string {
  if (kubevirt === null) return 'none';
  const status = (kubevirt['status'] ?? {}) as Obj;
  return JSON.stringify([kubevirt['spec'] ?? null, status['observedKubeVirtVersion'] ?? null, status['phase'] ?? null, status['observedDeploymentID'] ?? null, status['targetDeploymentID'] ?? null]);
}

/** True when two instancetype digests ({@link ClusterInputs.instancetypeDigest}) are the same. */
function sameDigest(a: ReadonlyMap<string, string>, b: ReadonlyMap<string, string>): boolean {
  if (a.size !== b.size) return false;
  for (const [k, v] of a) if (b.get(k) !== v) return false;
  return true;
}

/** The digest of the instancetypes and preferences of the given names, as the cluster holds them now. */
function instancetypeKey(names: readonly string[], ctx: ClusterInputs): string {
  return names.map((n) => `${n}=${ctx.instancetypeDigest.get(n) ?? ''}`).join('|');
}
