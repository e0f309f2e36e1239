/** What marks a VM as vmroll's: the managed-by label and the source annotations; and the part of a VM that apply owns. */
import { createHash } from 'node:crypto';
import type { Obj } from '../rollout/index.ts';

/** Label on every object vmroll applies. */
export const MANAGED_BY_LABEL = 'app.kubernetes.io/managed-by';
/** Its value. */
export const MANAGED_BY = 'vmroll';
/** Annotation: the source repository (URL without credentials, or path). */
export const SOURCE_REPO_ANNOTATION = 'vmroll.dev/source-repo';
/** Annotation: the file in the repository that defines the VM. */
export const SOURCE_PATH_ANNOTATION = 'vmroll.dev/source-path';
/** Annotation: the commit that last changed the VM. */
export const SOURCE_COMMIT_ANNOTATION = 'vmroll.dev/source-commit';

/** Where a desired VM comes from. */
export interface VmSource {
  repo: string;
  file: string;
  commit: string;
}

/** The desired VM as vmroll applies it: the manifest plus ownership metadata, without status. */
export function withOwnership(manifest: Obj, namespace: string, source: VmSource): Obj {
  const meta = { ...((manifest['metadata'] ?? {}) as Obj) };
  meta['namespace'] = namespace;
  meta['labels'] = { ...((meta['labels'] ?? {}) as Obj), [MANAGED_BY_LABEL]: MANAGED_BY };
  meta['annotations'] = {
    ...((meta['annotations'] ?? {}) as Obj),
    [SOURCE_REPO_ANNOTATION]: source.repo,
    [SOURCE_PATH_ANNOTATION]: source.file,
    [SOURCE_COMMIT_ANNOTATION]: source.commit,
  };
  const out: Obj = { apiVersion: manifest['apiVersion'] ?? 'kubevirt.io/v1', kind: 'VirtualMachine', metadata: meta, spec: manifest['spec'] ?? {} };
  return out;
}

/** True when the live VM carries vmroll's label and names this repository. */
export function ownedBy(live: Obj, repo: string): boolean {
  const meta = (live['metadata'] ?? {}) as Obj;
  const labels = (meta['labels'] ?? {}) as Obj;
  const annotations = (meta['annotations'] ?? {}) as Obj;
  return labels[MANAGED_BY_LABEL] === MANAGED_BY && annotations[SOURCE_REPO_ANNOTATION] === repo;
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
  const meta = (vm['metadata'] ?? {}) as Obj;
  const annotations = { ...((meta['annotations'] ?? {}) as Obj) };
  delete annotations[SOURCE_COMMIT_ANNOTATION];
  // A digest, not the text: one is kept per VM between syncs.
  return createHash('sha256').update(canonical({ labels: meta['labels'] ?? {}, annotations, spec: vm['spec'] ?? {} })).digest('base64');
}

/** True when every field the desired VM sets has the same value on the live VM (lists compared whole). */
export function appliedIn(desired: Obj, live: Obj): boolean {
  const meta = (desired['metadata'] ?? {}) as Obj;
  const liveMeta = (live['metadata'] ?? {}) as Obj;
  const annotations = { ...((meta['annotations'] ?? {}) as Obj) };
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
