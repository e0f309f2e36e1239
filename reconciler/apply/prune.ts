/**
 * What happens to the VMs a repository applied and a commit no longer defines: deleted (with
 * `--prune`), or kept and reported as orphans with the reason. One rule for the sync, PR review
 * and `vmroll plan`. A commit that defines no VM at all under the path (the path is gone, holds no
 * manifest, or none of its manifests is a VirtualMachine) never deletes anything: like Argo CD's
 * `allowEmpty: false`, an empty desired state is taken for a mistake, not an order.
 */
import type { VmOrphan } from '../../schemas/generated/vmplan.ts';
import { annotation } from '../cluster/object.ts';
import type { Obj } from '../rollout/index.ts';
import type { ManifestError } from '../rollout/plan.ts';
import type { TreeFile } from '../source/gitSource.ts';
import type { ManifestSet } from '../source/manifests.ts';
import type { RepositoryIdentity } from './identity.ts';
import { PRUNE_ANNOTATION, PRUNE_DISABLED, SOURCE_COMMIT_ANNOTATION, SOURCE_PATH_ANNOTATION, ownedBy, pruneDisabled } from './ownership.ts';

export type { VmOrphan } from '../../schemas/generated/vmplan.ts';

/** Why an orphan is kept (the `reason` of a {@link VmOrphan}). */
export const OrphanReason = {
  /** Pruning is off for this repository. */
  pruneOff: 'pruneOff',
  /** The live VM is annotated `vmroll.dev/prune: disabled`. */
  pruneDisabled: 'pruneDisabled',
  /** The configured path does not exist at the commit. */
  pathMissing: 'pathMissing',
  /** The path holds no manifest file (`*.yaml`, `*.yml`). */
  noManifests: 'noManifests',
  /** The path holds manifests, none of them a usable VirtualMachine. */
  noVirtualMachines: 'noVirtualMachines',
} as const satisfies Record<string, VmOrphan['reason']>;
/** One of {@link OrphanReason}. */
export type OrphanReason = (typeof OrphanReason)[keyof typeof OrphanReason];

/** A VM to delete. */
export interface PruneTarget {
  namespace: string;
  name: string;
  /** The file that defined it (its source-path annotation), or null. */
  file: string | null;
  live: Obj;
}

/** Input of {@link decidePrune}. */
export interface DecidePruneOptions {
  /** Live VMs by `namespace/name`. */
  live: Iterable<[string, Obj]>;
  manifests: ManifestSet;
  identity: RepositoryIdentity;
  prune: boolean;
  /** Lists files at the commit, to tell a missing path from one without manifests; called only when the load found no manifest file. */
  listFiles: (args: { commit: string; path?: string }) => Promise<TreeFile[]>;
  /** Only VMs whose file is in scope (a pull request's changed files); default all. */
  inScope?: (file: string) => boolean;
}

/** Output of {@link decidePrune}. */
export interface PruneDecision {
  /** VMs to delete. */
  deletes: PruneTarget[];
  /** VMs kept, with the reason; sorted by namespace then name. */
  orphans: VmOrphan[];
  /** Why pruning held back as a whole (an empty desired state), when it did and there was something to hold back. */
  errors: ManifestError[];
}

function compare(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/** Why the commit's desired state is empty, or null when it defines at least one VM. */
async function emptyState(options: Omit<DecidePruneOptions, 'live'>): Promise<{ reason: OrphanReason; why: string } | null> {
  const m = options.manifests;
  if (m.vms.length > 0) return null;
  const where = m.path === '' ? 'the repository' : `path "${m.path}"`;
  const at = `at commit ${m.commit.slice(0, 12)}`;
  if (m.files.size > 0) return { reason: OrphanReason.noVirtualMachines, why: `${where} holds manifests ${at} but no VirtualMachine in them loads` };
  const files = await options.listFiles({ commit: m.commit, path: m.path });
  if (files.length === 0) return { reason: OrphanReason.pathMissing, why: m.path === '' ? `the repository has no files ${at}` : `path "${m.path}" does not exist ${at}` };
  return { reason: OrphanReason.noManifests, why: `${where} holds no manifest file (*.yaml, *.yml) ${at}` };
}

/**
 * The VMs this repository applied (by its identity) that the commit no longer defines, less any
 * a broken or unusable file may still define: deleted when `prune` is on, unless the VM says
 * `vmroll.dev/prune: disabled` or the commit defines no VM at all; every other one is an orphan.
 */
export async function decidePrune(options: DecidePruneOptions): Promise<PruneDecision> {
  const { manifests } = options;
  const defined = new Set(manifests.vms.map((v) => `${v.namespace}/${v.name}`));
  const held = new Set(manifests.heldVms);
  const scope: CandidateScope = { identity: options.identity, failedFiles: new Set(manifests.holdingFiles), inScope: options.inScope ?? (() => true) };
  const candidates: PruneTarget[] = [];
  for (const [key, live] of options.live) {
    if (defined.has(key) || held.has(key)) continue;
    const c = pruneCandidate(key, live, scope);
    if (c !== null) candidates.push(c);
  }
  return decideCandidates(candidates, options);
}

/** What, besides the commit defining or holding it, makes a live VM a prune candidate (see {@link pruneCandidate}). */
export interface CandidateScope {
  identity: RepositoryIdentity;
  /** The manifest set's holding files: a file that failed may still define the VM. */
  failedFiles: ReadonlySet<string>;
  inScope: (file: string) => boolean;
}

/** The live VM `key` as a prune candidate, or null when it is not one; the caller has checked that the commit neither defines nor holds `key`. */
export function pruneCandidate(key: string, live: Obj, scope: CandidateScope): PruneTarget | null {
  if (!ownedBy(live, scope.identity)) return null;
  const file = annotation(live, SOURCE_PATH_ANNOTATION);
  // A file that failed may still define the VM: never delete or call orphan on its account.
  if (scope.failedFiles.has(file ?? '') || !scope.inScope(file ?? '')) return null;
  const [namespace = '', name = ''] = key.split('/');
  return { namespace, name, file, live };
}

/** The decision on `candidates` (in any order; {@link pruneCandidate}'s): deletes, orphans with the reason, and why pruning held back. */
export async function decideCandidates(candidates: PruneTarget[], options: Omit<DecidePruneOptions, 'live'>): Promise<PruneDecision> {
  const { manifests } = options;
  candidates.sort((a, b) => compare(a.namespace, b.namespace) || compare(a.name, b.name));
  const decision: PruneDecision = { deletes: [], orphans: [], errors: [] };
  if (candidates.length === 0) return decision;

  const empty = options.prune ? await emptyState(options) : null;
  const orphan = (c: PruneTarget, reason: OrphanReason, why: string): VmOrphan => {
    const commit = annotation(c.live, SOURCE_COMMIT_ANNOTATION);
    const from = c.file !== null ? `defined in ${c.file}${commit !== null ? ` (last applied from ${commit.slice(0, 12)})` : ''}` : 'applied by this repository';
    return { namespace: c.namespace, name: c.name, file: c.file, commit, reason, message: `${from}, no longer in Git; not deleted (${why})` };
  };
  for (const c of candidates) {
    if (!options.prune) decision.orphans.push(orphan(c, OrphanReason.pruneOff, 'run with --prune to delete'));
    else if (empty !== null) decision.orphans.push(orphan(c, empty.reason, `${empty.why}; an empty desired state never prunes`));
    else if (pruneDisabled(c.live)) decision.orphans.push(orphan(c, OrphanReason.pruneDisabled, `annotated ${PRUNE_ANNOTATION}: ${PRUNE_DISABLED}`));
    else decision.deletes.push(c);
  }
  if (empty !== null) {
    const n = candidates.length;
    decision.errors.push({
      file: manifests.path === '' ? '.' : manifests.path,
      line: null,
      message: `${empty.why}: nothing is pruned, the ${n} VM${n === 1 ? '' : 's'} this repository applied ${n === 1 ? 'is' : 'are'} kept (fix the path or the branch; to retire them all, delete them by hand)`,
    });
  }
  return decision;
}
