/** What marks a VM as vmroll's: the managed-by label and the source annotations; and the part of a VM that apply owns. */
import { createHash } from 'node:crypto';
import { FIELD_MANAGER, type OwnedFieldsComparison, compareOwnedFields } from '../cluster/ssa.ts';
import { annotationsOf, labelsOf, metaOf } from '../cluster/object.ts';
import type { Obj } from '../rollout/index.ts';
import { isUnderPath } from '../source/gitSource.ts';
import { type RepositoryIdentity, normaliseRepoUrl } from './identity.ts';

/** Label on every object vmroll applies. */
export const MANAGED_BY_LABEL = 'app.kubernetes.io/managed-by';
/** Its value. */
export const MANAGED_BY = 'vmroll';
/** Annotation: the ownership identity of the source repository (apply/identity.ts: normalised URL plus path, or set in vmroll.yaml). */
export const SOURCE_REPO_ANNOTATION = 'vmroll.dev/source-repo';
/** Annotation: the file in the repository that defines the VM. */
export const SOURCE_PATH_ANNOTATION = 'vmroll.dev/source-path';
/** Annotation: the commit that last changed the VM. */
export const SOURCE_COMMIT_ANNOTATION = 'vmroll.dev/source-commit';
/** Annotation on a live VM: `disabled` keeps it from ever being pruned. */
export const PRUNE_ANNOTATION = 'vmroll.dev/prune';
/** The {@link PRUNE_ANNOTATION} value that keeps a VM. */
export const PRUNE_DISABLED = 'disabled';

/** Where a desired VM comes from. */
export interface VmSource {
  repo: string;
  file: string;
  commit: string;
}

/** The desired VM as vmroll applies it: the manifest plus ownership metadata, without status. */
export function withOwnership(manifest: Obj, namespace: string, source: VmSource): Obj {
  const meta = { ...metaOf(manifest) };
  meta['namespace'] = namespace;
  meta['labels'] = { ...labelsOf(manifest), [MANAGED_BY_LABEL]: MANAGED_BY };
  meta['annotations'] = {
    ...annotationsOf(manifest),
    [SOURCE_REPO_ANNOTATION]: source.repo,
    [SOURCE_PATH_ANNOTATION]: source.file,
    [SOURCE_COMMIT_ANNOTATION]: source.commit,
  };
  const out: Obj = { apiVersion: manifest['apiVersion'] ?? 'kubevirt.io/v1', kind: 'VirtualMachine', metadata: meta, spec: manifest['spec'] ?? {} };
  return out;
}

/** Whose a live VM is, as seen from one repository. */
export const Owner = {
  /** Applied by this repository: its identity is on the VM. */
  this: 'this',
  /** Applied by this repository under an older vmroll, which wrote the URL (without credentials) or the local path; the next apply rewrites it. */
  legacy: 'legacy',
  /** Applied by vmroll from another repository (or another path of this one). */
  other: 'other',
  /** Not applied by vmroll (no managed-by label, or no source annotation). */
  none: 'none',
} as const;
/** One of {@link Owner}. */
export type Owner = (typeof Owner)[keyof typeof Owner];

/** Who owns `live` from `identity`'s point of view, and the identity and file the VM names. */
export function ownerOf(live: Obj, identity: RepositoryIdentity): { owner: Owner; repo: string | null; file: string | null } {
  const labels = labelsOf(live);
  const annotations = annotationsOf(live);
  const repo = typeof annotations[SOURCE_REPO_ANNOTATION] === 'string' ? (annotations[SOURCE_REPO_ANNOTATION] as string) : null;
  const file = typeof annotations[SOURCE_PATH_ANNOTATION] === 'string' ? (annotations[SOURCE_PATH_ANNOTATION] as string) : null;
  if (labels[MANAGED_BY_LABEL] !== MANAGED_BY || repo === null || repo === '') return { owner: Owner.none, repo, file };
  if (repo === identity.id) return { owner: Owner.this, repo, file };
  // Older releases wrote the URL as given (credentials removed) or the absolute local path, and
  // no manifest path: a VM they applied is this repository's when its file lies under our path.
  const sameRepository = repo === identity.localPath || (/^[a-z][a-z0-9+.-]*:\/\//i.test(repo) && normaliseRepoUrl(repo) === identity.repository);
  if (sameRepository && file !== null && isUnderPath(file, identity.path)) return { owner: Owner.legacy, repo, file };
  return { owner: Owner.other, repo, file };
}

/** True when the live VM is this repository's (its identity, or the value an older release wrote for it). */
export function ownedBy(live: Obj, identity: RepositoryIdentity): boolean {
  const { owner } = ownerOf(live, identity);
  return owner === Owner.this || owner === Owner.legacy;
}

/** True when the live VM says it must never be pruned. */
export function pruneDisabled(live: Obj): boolean {
  return annotationsOf(live)[PRUNE_ANNOTATION] === PRUNE_DISABLED;
}

function canonical(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(canonical).join(',')}]`;
  if (typeof v === 'object' && v !== null) {
    return `{${Object.keys(v)
      .sort()
      .map((k) => `${JSON.stringify(k)}:${canonical((v as Obj)[k])}`)
      .join(',')}}`;
  }
  return JSON.stringify(v) ?? 'null';
}

/**
 * The fields apply owns, in a canonical string: labels, annotations (less the commit, which
 * changes on every sync and alone is no reason to write) and spec.
 */
export function ownedFingerprint(vm: Obj): string {
  const meta = metaOf(vm);
  const annotations = { ...annotationsOf(vm) };
  delete annotations[SOURCE_COMMIT_ANNOTATION];
  // A digest, not the text: one is kept per VM between syncs.
  return createHash('sha256').update(canonical({ labels: meta['labels'] ?? {}, annotations, spec: vm['spec'] ?? {} })).digest('base64');
}

const isCommitAnnotation = (p: readonly string[]): boolean => p.length === 3 && p[0] === 'metadata' && p[1] === 'annotations' && p[2] === SOURCE_COMMIT_ANNOTATION;

/**
 * Whether applying `desired` would change `live`, decided from the fields vmroll's field manager
 * owns on the live object (its managedFields): a field vmroll owns that the desired VM no longer
 * sets, or a desired field vmroll does not own or whose value differs, needs an apply. This holds
 * for any process, a fresh one included. Null when the live VM carries no managedFields (the
 * embedded simulator): the caller then uses {@link appliedIn}.
 */
export function ownedFieldsInSync(desired: Obj, live: Obj): OwnedFieldsComparison | null {
  return compareOwnedFields(desired, live, FIELD_MANAGER, isCommitAnnotation);
}

/** Whether `live` already holds what applying `desired` would write: by managedFields where the cluster keeps them, else {@link appliedIn}. */
export function inSync(desired: Obj, live: Obj): boolean {
  return ownedFieldsInSync(desired, live)?.inSync ?? appliedIn(desired, live);
}

/** True when every field the desired VM sets has the same value on the live VM (lists compared whole); blind to fields removed since. */
export function appliedIn(desired: Obj, live: Obj): boolean {
  const meta = metaOf(desired);
  const liveMeta = metaOf(live);
  const annotations = { ...annotationsOf(desired) };
  delete annotations[SOURCE_COMMIT_ANNOTATION];
  return (
    contains(liveMeta['labels'], meta['labels'] ?? {}) &&
    contains(liveMeta['annotations'], annotations) &&
    contains(live['spec'], desired['spec'] ?? {})
  );
}

function contains(actual: unknown, wanted: unknown): boolean {
  if (typeof wanted === 'object' && wanted !== null && !Array.isArray(wanted)) {
    if (typeof actual !== 'object' || actual === null || Array.isArray(actual)) return Object.keys(wanted).length === 0 && (actual === undefined || actual === null);
    return Object.entries(wanted as Obj).every(([k, v]) => contains((actual as Obj)[k], v));
  }
  return canonical(actual) === canonical(wanted);
}
