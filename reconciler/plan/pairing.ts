/**
 * The one desired↔live pairing: each VM a commit defines next to the cluster's copy, the VMs the
 * repository may not write (a forbidden namespace, another repository's VM), and what happens to
 * the VMs it applied and no longer defines (apply/prune.ts). The sync (controller/reconcile.ts),
 * PR review and `vmroll plan` (plan/planCommit.ts) all start from it, so they cannot disagree on
 * which VM is whose.
 */
import type { RepositoryIdentity } from '../apply/identity.ts';
import { Owner, ownerOf, withOwnership } from '../apply/ownership.ts';
import { type PruneDecision, decidePrune } from '../apply/prune.ts';
import type { Obj } from '../rollout/index.ts';
import type { ManifestError } from '../rollout/plan.ts';
import type { TreeFile } from '../source/gitSource.ts';
import type { LoadedVm, ManifestSet } from '../source/manifests.ts';

/** `namespace/name`, the key of a VM in the cache and in every map of a plan. */
export function vmKey(namespace: string, name: string): string {
  return `${namespace}/${name}`;
}

/** Keys made once per loaded VM: the same string every sync, so maps keyed by it hash it once, not once per lookup. */
const loadedKeys = new WeakMap<LoadedVm, string>();

/** {@link vmKey} of a loaded VM, made once per LoadedVm (an unchanged file keeps its LoadedVm objects from sync to sync). */
export function loadedVmKey(vm: LoadedVm): string {
  let key = loadedKeys.get(vm);
  if (key === undefined) {
    key = vmKey(vm.namespace, vm.name);
    loadedKeys.set(vm, key);
  }
  return key;
}

/** A {@link VmPair} whose desired object is made on first use (a class: no closure per VM). */
export class LazyPair implements VmPair {
  private made: Obj | undefined;

  constructor(
    readonly key: string,
    readonly vm: LoadedVm,
    readonly live: Obj | undefined,
    private readonly owner: { repo: string; commit: string },
  ) {}

  desired(): Obj {
    this.made ??= withOwnership(this.vm.manifest as unknown as Obj, this.vm.namespace, { repo: this.owner.repo, file: this.vm.file, commit: this.owner.commit });
    return this.made;
  }
}

/** One VM the commit defines, beside the cluster's copy of it. */
export interface VmPair {
  /** `namespace/name`. */
  key: string;
  /** The VM as loaded from Git. */
  vm: LoadedVm;
  /** The cluster's copy, or undefined when the commit creates it. */
  live: Obj | undefined;
  /** The manifest as vmroll writes it: ownership label and source annotations added (made on first use: a sync skips most VMs; a method, called on the pair). */
  desired(): Obj;
}

/** What {@link pairDesiredLive} pairs. */
export interface PairingInput {
  manifests: ManifestSet;
  /** The cluster's VMs by `namespace/name`. */
  live: ReadonlyMap<string, Obj>;
  identity: RepositoryIdentity;
  /** Whether VMs this repository applied and the commit no longer defines are deleted (else they are orphans). */
  prune: boolean;
  /** Why this repository may not write to a namespace, or null when it may; absent: any namespace. */
  refuseNamespace?: (namespace: string) => string | null;
  /** Only VMs whose file is in scope (a pull request's changed files); default all. */
  inScope?: (file: string) => boolean;
  /** Lists files at the commit (prune tells a missing path from one without manifests). */
  listFiles: (args: { commit: string; path?: string }) => Promise<TreeFile[]>;
}

/** Output of {@link pairDesiredLive}. */
export interface Pairing {
  /** The VMs the repository may write, in the order of `manifests.vms` (namespace/name). */
  pairs: VmPair[];
  /** `namespace/name` of the VMs it may not write: never applied, never planned, never pruned (still defined). */
  refused: ReadonlySet<string>;
  /** Why, one error per refused VM: the namespace refusals first, then VMs another repository applied. */
  refusals: ManifestError[];
  /** VMs applied by this repository that the commit no longer defines: deletes, orphans, and why pruning held back. */
  prune: PruneDecision;
}

/** The message of a VM another repository applied: left alone, whatever this one says. */
export function ownedElsewhere(key: string, who: { repo: string | null; file: string | null }): string {
  return `VirtualMachine ${key} is owned by ${who.repo ?? '?'}${who.file !== null ? ` (${who.file})` : ''}; not applied: remove it there first`;
}

/**
 * Pairs the commit's VMs with the cluster's. A VM in a namespace the repository may not write is
 * an error, as is a VM another repository applied; neither is planned, written or pruned (both
 * are still defined), and the other VMs go on.
 */
export async function pairDesiredLive(input: PairingInput): Promise<Pairing> {
  const { manifests, live, identity } = input;
  const commit = manifests.commit;
  const inScope = input.inScope;
  const refused = new Set<string>();
  const namespaceRefusals: ManifestError[] = [];
  const ownerRefusals: ManifestError[] = [];
  const pairs: VmPair[] = [];
  const owner = { repo: identity.id, commit };
  // One refusal check per namespace, not per VM: a fleet has few namespaces and many VMs.
  const refuseNamespace = input.refuseNamespace;
  const byNamespace = new Map<string, string | null>();
  const namespaceRefusal = (namespace: string): string | null => {
    if (refuseNamespace === undefined) return null;
    let why = byNamespace.get(namespace);
    if (why === undefined) {
      why = refuseNamespace(namespace);
      byNamespace.set(namespace, why);
    }
    return why;
  };
  for (const vm of manifests.vms) {
    if (inScope !== undefined && !inScope(vm.file)) continue;
    const key = loadedVmKey(vm);
    const why = namespaceRefusal(vm.namespace);
    if (why !== null) {
      refused.add(key);
      namespaceRefusals.push({ file: vm.file, line: vm.line, message: why });
      continue;
    }
    const copy = live.get(key);
    if (copy !== undefined) {
      const who = ownerOfCached(copy, identity);
      if (who.owner === Owner.other) {
        refused.add(key);
        ownerRefusals.push({ file: vm.file, line: vm.line, message: ownedElsewhere(key, who) });
        continue;
      }
    }
    pairs.push(new LazyPair(key, vm, copy, owner));
  }
  const prune = await decidePrune({ live, manifests, identity, prune: input.prune, listFiles: input.listFiles, ...(input.inScope !== undefined && { inScope: input.inScope }) });
  return { pairs, refused, refusals: [...namespaceRefusals, ...ownerRefusals], prune };
}

/** {@link ownerOf} per live object and identity: a cached object is replaced, never changed, so its owner is read once. */
const owners = new WeakMap<Obj, { identity: RepositoryIdentity; who: ReturnType<typeof ownerOf> }>();

/** {@link ownerOf}, read once per live object and identity (the pairing memo shares it). */
export function ownerOfCached(copy: Obj, identity: RepositoryIdentity): ReturnType<typeof ownerOf> {
  const known = owners.get(copy);
  if (known !== undefined && known.identity === identity) return known.who;
  const who = ownerOf(copy, identity);
  owners.set(copy, { identity, who });
  return who;
}
