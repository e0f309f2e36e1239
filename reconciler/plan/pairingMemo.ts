/**
 * The sync's pairing, kept from sync to sync so a one-VM change costs the same at 1,000 VMs and at
 * 20,000: only the VM keys whose manifest changed (source/manifests.ts `vmKeysChangedSince`), whose
 * live VM changed (cluster/cache.ts `vmChangesSince`), or that the last sync handed to the write
 * decision and were not found in sync since, are paired, refused or prune-checked again. Anything it
 * cannot follow key by key (the first sync, a full manifest assembly, a relist, another identity,
 * prune flag or namespace rule, a changed set of holding files) pairs every VM (plan/pairing.ts).
 * The result equals {@link pairDesiredLive}'s but for `pairs`, which holds only the VMs that may need
 * a write; the Reconciler's `checkIncremental` compares both.
 */
import type { RepositoryIdentity } from '../apply/identity.ts';
import { Owner } from '../apply/ownership.ts';
import { type CandidateScope, type PruneTarget, decideCandidates, pruneCandidate } from '../apply/prune.ts';
import type { ClusterCache, VmMark } from '../cluster/cache.ts';
import type { Obj } from '../rollout/index.ts';
import type { ManifestError } from '../rollout/plan.ts';
import type { TreeFile } from '../source/gitSource.ts';
import { type LoadedVm, type ManifestSet, lowerBound, vmKeysChangedSince } from '../source/manifests.ts';
import { LazyPair, type Pairing, type VmPair, loadedVmKey, ownedElsewhere, ownerOfCached, pairDesiredLive } from './pairing.ts';

/** What {@link PairingMemo.pair} pairs (the sync's {@link PairingInput}, without `inScope`: a sync pairs every file). */
export interface MemoPairingInput {
  manifests: ManifestSet;
  cache: ClusterCache;
  identity: RepositoryIdentity;
  prune: boolean;
  refuseNamespace?: (namespace: string) => string | null;
  listFiles: (args: { commit: string; path?: string }) => Promise<TreeFile[]>;
  /** True when the write decision would skip the VM (controller/writes.ts `isSeen`). */
  isSeen: (key: string, manifest: unknown, live: Obj | undefined) => boolean;
}

/** Output of {@link PairingMemo.pair}. */
export interface MemoPairing {
  /** Refused VMs, refusals and the prune decision, as {@link pairDesiredLive} gives them. */
  pairing: Omit<Pairing, 'pairs'>;
  /** The pairs that may need a write, in `manifests.vms` order: every pair when `full`. */
  pairs: VmPair[];
  /** True when every VM was paired again. */
  full: boolean;
}

/** One refused VM: the error, and whether a namespace rule (listed first) or another repository's ownership refused it. */
interface Refusal {
  namespace: boolean;
  error: ManifestError;
}

/** What the last pairing left for the next. */
interface MemoState {
  manifests: ManifestSet;
  mark: VmMark;
  identity: RepositoryIdentity;
  prune: boolean;
  refuseNamespace: ((namespace: string) => string | null) | undefined;
  holdingFiles: readonly string[];
  refusals: Map<string, Refusal>;
  refused: ReadonlySet<string>;
  refusalList: ManifestError[];
  candidates: Map<string, PruneTarget>;
  /** The pairs handed to the write decision (key and loaded VM): looked at again while not found in sync. */
  handed: Array<{ key: string; vm: LoadedVm }>;
}

function compare(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/** The item of `list` (sorted by key) with `key`, or undefined. */
function findSorted<T>(list: readonly T[], key: string, keyOf: (item: T) => string): T | undefined {
  const at = list[lowerBound(list, key, keyOf)];
  return at !== undefined && keyOf(at) === key ? at : undefined;
}

const self = (s: string): string => s;

function sameList(a: readonly string[], b: readonly string[]): boolean {
  if (a === b) return true;
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/** Pairs a sync's VMs, reusing the last sync's pairing for the keys nothing changed (see the module comment). */
export class PairingMemo {
  private state: MemoState | null = null;
  /** How many pairings looked at every VM, and how many at the changed ones only. */
  readonly stats = { full: 0, incremental: 0 };

  /** Forgets the last pairing: the next one pairs every VM. */
  reset(): void {
    this.state = null;
  }

  /** The pairing of `input.manifests` with the cache's VMs as they are now. */
  async pair(input: MemoPairingInput): Promise<MemoPairing> {
    const { manifests, cache, identity } = input;
    const last = this.state;
    // The mark is taken before any live VM is read: an event after it is a change for the next sync.
    const mark = cache.vmMark();
    const changedVms = last !== null ? vmKeysChangedSince(manifests, last.manifests) : null;
    const changedLive = last !== null ? cache.vmChangesSince(last.mark) : null;
    if (
      last === null ||
      changedVms === null ||
      changedLive === null ||
      last.identity !== identity ||
      last.prune !== input.prune ||
      last.refuseNamespace !== input.refuseNamespace ||
      !sameList(last.holdingFiles, manifests.holdingFiles)
    ) {
      return this.full(input, mark);
    }
    const owner = { repo: identity.id, commit: manifests.commit };
    const keys = new Set<string>(changedVms);
    for (const key of changedLive) keys.add(key);
    for (const { key, vm } of last.handed) {
      // Handed last time and still not found in sync (a failed write, a create not yet seen): looked at again.
      // A key not in the changed sets keeps its LoadedVm (vmKeysChangedSince) and its refusal state: no lookup needed.
      if (!keys.has(key) && !input.isSeen(key, vm.manifest, cache.vms.get(key))) keys.add(key);
    }
    const refusals = new Map(last.refusals);
    let refusalsChanged = false;
    const candidates = last.candidates;
    const scope: CandidateScope = { identity, failedFiles: new Set(manifests.holdingFiles), inScope: () => true };
    const pairs: VmPair[] = [];
    for (const key of keys) {
      const vm = findSorted(manifests.vms, key, loadedVmKey);
      const live = cache.vms.get(key);
      if (refusals.delete(key)) refusalsChanged = true;
      candidates.delete(key);
      if (vm !== undefined) {
        const refusal = refusalOf(key, vm, live, identity, input.refuseNamespace);
        if (refusal !== null) {
          refusals.set(key, refusal);
          refusalsChanged = true;
        } else pairs.push(new LazyPair(key, vm, live, owner));
      } else if (live !== undefined && findSorted(manifests.heldVms, key, self) === undefined) {
        const c = pruneCandidate(key, live, scope);
        if (c !== null) candidates.set(key, c);
      }
    }
    pairs.sort((a, b) => compare(a.key, b.key));
    let refused = last.refused;
    let refusalList = last.refusalList;
    if (refusalsChanged) ({ refused, refusalList } = orderRefusals(refusals));
    const prune = await decideCandidates([...candidates.values()], { manifests, identity, prune: input.prune, listFiles: input.listFiles });
    this.state = { manifests, mark, identity, prune: input.prune, refuseNamespace: input.refuseNamespace, holdingFiles: manifests.holdingFiles, refusals, refused, refusalList, candidates, handed: pairs.map(({ key, vm }) => ({ key, vm })) };
    this.stats.incremental++;
    return { pairing: { refused, refusals: refusalList, prune }, pairs, full: false };
  }

  /** Every VM paired (plan/pairing.ts), and the memo rebuilt from it. */
  private async full(input: MemoPairingInput, mark: VmMark): Promise<MemoPairing> {
    const { manifests, cache, identity } = input;
    const p = await pairDesiredLive({ manifests, live: cache.vms, identity, prune: input.prune, listFiles: input.listFiles, ...(input.refuseNamespace !== undefined && { refuseNamespace: input.refuseNamespace }) });
    const refusals = new Map<string, Refusal>();
    if (p.refused.size > 0) {
      for (const vm of manifests.vms) {
        const key = loadedVmKey(vm);
        if (!p.refused.has(key)) continue;
        const refusal = refusalOf(key, vm, cache.vms.get(key), identity, input.refuseNamespace);
        if (refusal !== null) refusals.set(key, refusal);
      }
    }
    const candidates = new Map<string, PruneTarget>();
    for (const c of p.prune.deletes) candidates.set(`${c.namespace}/${c.name}`, c);
    for (const o of p.prune.orphans) {
      const key = `${o.namespace}/${o.name}`;
      const live = cache.vms.get(key);
      // Gone since (an event after the mark): its key is a change of the next sync, which drops it.
      if (live !== undefined) candidates.set(key, { namespace: o.namespace, name: o.name, file: o.file, live });
    }
    // Kept as derived from the map (read after the prune step's await, so a VM may have moved since: its key is then a change of the next sync).
    const { refused, refusalList } = orderRefusals(refusals);
    this.state = { manifests, mark, identity, prune: input.prune, refuseNamespace: input.refuseNamespace, holdingFiles: manifests.holdingFiles, refusals, refused, refusalList, candidates, handed: p.pairs.map(({ key, vm }) => ({ key, vm })) };
    this.stats.full++;
    const { pairs, ...pairing } = p;
    return { pairing, pairs, full: true };
  }
}

/** Why `key` may not be written (as {@link pairDesiredLive} decides it), or null. */
function refusalOf(key: string, vm: LoadedVm, live: Obj | undefined, identity: RepositoryIdentity, refuseNamespace: ((namespace: string) => string | null) | undefined): Refusal | null {
  const why = refuseNamespace?.(vm.namespace) ?? null;
  if (why !== null) return { namespace: true, error: { file: vm.file, line: vm.line, message: why } };
  if (live === undefined) return null;
  const who = ownerOfCached(live, identity);
  if (who.owner !== Owner.other) return null;
  return { namespace: false, error: { file: vm.file, line: vm.line, message: ownedElsewhere(key, who) } };
}

/** The refused set and the refusals in {@link pairDesiredLive}'s order: namespace refusals by key, then ownership refusals by key. */
function orderRefusals(refusals: ReadonlyMap<string, Refusal>): { refused: ReadonlySet<string>; refusalList: ManifestError[] } {
  const keys = [...refusals.keys()].sort(compare);
  const byNamespace: ManifestError[] = [];
  const byOwner: ManifestError[] = [];
  for (const key of keys) {
    const r = refusals.get(key) as Refusal;
    (r.namespace ? byNamespace : byOwner).push(r.error);
  }
  return { refused: new Set(keys), refusalList: [...byNamespace, ...byOwner] };
}
