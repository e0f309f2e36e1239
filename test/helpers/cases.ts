/** Loads the engine's table-driven cases from fixtures/rollout, each as fresh copies. */
import { readFileSync, readdirSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parse } from 'yaml';
import type { Obj } from '../../reconciler/rollout/index.ts';

/** Project root. */
export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const DIR = path.join(ROOT, 'fixtures', 'rollout');

/** Expected outcome under one model. */
export interface Expectation {
  restartRequired: boolean;
  condition?: string;
  conditionMessage?: string | null;
  strategy?: string;
  live?: string[];
  staged?: string[];
  reasons?: Array<{ path: string; message: string }>;
  waiting?: string[];
  admission?: string[];
  vmi?: unknown;
  /** Path → expected `reachesGuest` of that change (`none`: the change has no reachesGuest). */
  reachesGuest?: Record<string, string>;
  /** Path → subset the change's `migration` must contain (`null`: it has none). */
  migration?: Record<string, Obj | null>;
  /** Expected `disruption.kind`. */
  disruption?: string;
  /** Text `disruption.summary` must contain. */
  summary?: string;
  /** Path → text the restart reason at that path must contain. */
  reasonIncludes?: Record<string, string>;
}

/** One case as written in a file. */
export interface RolloutCase {
  name: string;
  file: string;
  desired?: unknown;
  baseline?: unknown;
  vmi?: unknown;
  kubevirt?: {
    strategy?: string;
    featureGates?: string[];
    liveUpdateConfiguration?: Obj;
    cpuAllocationRatio?: number;
    /** `spec.workloadUpdateStrategy` (workloadUpdateMethods, batchEvictionSize, batchEvictionInterval). */
    workloadUpdateStrategy?: Obj;
    /** `spec.configuration.migrations`. */
    migrations?: Obj;
    /** The CR's `status` (phase, observedDeploymentID, targetDeploymentID). */
    status?: Obj;
    /** `spec.configuration.evictionStrategy`. */
    evictionStrategy?: string;
  };
  /** VirtualMachineInstanceMigrations in the cluster. */
  migrations?: Obj[];
  conditions?: Obj[];
  instancetypes?: Obj[];
  expect: Record<string, Expectation>;
}

/** RFC 7386 merge patch: objects merge, everything else (lists included) replaces, null deletes. */
export function mergePatch(target: unknown, patch: unknown): unknown {
  if (typeof patch !== 'object' || patch === null || Array.isArray(patch)) return structuredClone(patch);
  const out: Obj = typeof target === 'object' && target !== null && !Array.isArray(target) ? structuredClone(target as Obj) : {};
  for (const [k, v] of Object.entries(patch as Obj)) {
    if (v === null) delete out[k];
    else out[k] = mergePatch(out[k], v);
  }
  return out;
}

/** Reads a base document. */
export function base(name: 'vm' | 'vmi'): Obj {
  return parse(readFileSync(path.join(DIR, 'base', `${name}.yaml`), 'utf8')) as Obj;
}

/** Every case of every file, in file order. */
export function loadCases(): RolloutCase[] {
  const out: RolloutCase[] = [];
  for (const file of readdirSync(path.join(DIR, 'cases')).filter((f) => f.endsWith('.yaml')).sort()) {
    const list = parse(readFileSync(path.join(DIR, 'cases', file), 'utf8')) as RolloutCase[];
    for (const c of list) out.push({ ...c, file });
  }
  return out;
}

/** Builds a KubeVirt CR from a case's shorthand. */
export function kubevirtFor(c: RolloutCase): Obj {
  const k = c.kubevirt ?? {};
  const strategy = k.strategy ?? 'LiveUpdate';
  const gates = k.featureGates ?? ['VMLiveUpdateFeatures'];
  const configuration: Obj = { developerConfiguration: { featureGates: gates } };
  if (strategy !== 'unset') configuration['vmRolloutStrategy'] = strategy;
  if (k.liveUpdateConfiguration) configuration['liveUpdateConfiguration'] = k.liveUpdateConfiguration;
  if (k.cpuAllocationRatio !== undefined) (configuration['developerConfiguration'] as Obj)['cpuAllocationRatio'] = k.cpuAllocationRatio;
  if (k.migrations) configuration['migrations'] = k.migrations;
  if (k.evictionStrategy) configuration['evictionStrategy'] = k.evictionStrategy;
  const spec: Obj = { configuration };
  if (k.workloadUpdateStrategy) spec['workloadUpdateStrategy'] = k.workloadUpdateStrategy;
  const cr: Obj = { apiVersion: 'kubevirt.io/v1', kind: 'KubeVirt', metadata: { name: 'kubevirt', namespace: 'kubevirt' }, spec };
  if (k.status) cr['status'] = k.status;
  return cr;
}

/** The inputs of a case, fresh. */
export function inputsFor(c: RolloutCase): { baseline: Obj; desired: Obj; vmi: Obj | null; kubevirt: Obj } {
  const baseline = mergePatch(base('vm'), c.baseline ?? {}) as Obj;
  const desired = mergePatch(baseline, c.desired ?? {}) as Obj;
  const vmi = c.vmi === 'none' ? null : (mergePatch(base('vmi'), c.vmi ?? {}) as Obj);
  return { baseline, desired, vmi, kubevirt: kubevirtFor(c) };
}

/** True when `actual` contains everything in `subset` (objects by key, lists element-wise). */
export function containsSubset(actual: unknown, subset: unknown): boolean {
  if (subset === null || typeof subset !== 'object') return actual === subset;
  if (Array.isArray(subset)) {
    return Array.isArray(actual) && subset.length === actual.length && subset.every((s, i) => containsSubset(actual[i], s));
  }
  if (typeof actual !== 'object' || actual === null || Array.isArray(actual)) return false;
  return Object.entries(subset as Obj).every(([k, v]) => (v === null ? !(k in (actual as Obj)) : containsSubset((actual as Obj)[k], v)));
}
