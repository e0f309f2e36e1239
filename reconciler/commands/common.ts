/** Shared pieces of the command implementations. */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { type KubeConfigSource, loadKubeConfig } from '../cluster/kube.ts';
import type { Obj, VmPlan } from '../rollout/index.ts';
import { redactUrl } from '../source/errors.ts';
import { parseYamlDocuments } from '../source/yamlDocs.ts';

/** Where a command writes; tests pass their own. */
export interface CommandIO {
  out(text: string): void;
  err(text: string): void;
}

/** Bad input from the user: printed as one line, exit status 2. */
export class UsageError extends Error {
  readonly code = 'Usage';
}

/** Short one-line rendering of a JSON value for tables. */
export function formatValue(v: unknown, max = 60): string {
  if (v === null || v === undefined) return '∅';
  const s = typeof v === 'string' ? v : JSON.stringify(v);
  return s.length > max ? `${s.slice(0, max - 1)}…` : s;
}

/** Reads a KubeVirt CR from a YAML file for the simulator; `flag` names the option in errors. */
export function loadKubeVirt(file: string, flag: string): Obj {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch {
    throw new UsageError(`${flag}: ${file} cannot be read`);
  }
  const doc = parseYamlDocuments(text, file)[0];
  const v: unknown = doc?.value;
  if (typeof v !== 'object' || v === null || Array.isArray(v) || (v as Obj)['kind'] !== 'KubeVirt') {
    throw new UsageError(`${file}:${doc?.line ?? 1}: expected a KubeVirt object (${flag})`);
  }
  return v as Obj;
}

/** What a command runs against: the cluster it reads and writes. */
export interface TargetOptions {
  cluster: 'sim' | 'kube';
  /** Where the kubeconfig comes from (kube). */
  kubeconfig?: KubeConfigSource | undefined;
  /** The simulator's state file (sim); none: the simulated cluster lives in memory only. */
  simState?: string | undefined;
}

/**
 * One phrase naming the target, for the first line `run` and `plan` print: the API server URL
 * with its context and kubeconfig, or the embedded simulator with where its state is. Loads the
 * kubeconfig to learn the server, so a broken one is a usage error before anything else.
 */
export function describeTarget(options: TargetOptions): string {
  if (options.cluster === 'sim') {
    return `embedded KubeVirt simulator, ${options.simState !== undefined ? `state in ${options.simState}` : 'state in memory only'}`;
  }
  const source = options.kubeconfig;
  if (source === undefined) throw new UsageError('--cluster kube needs a kubeconfig');
  let kc;
  try {
    kc = loadKubeConfig(source);
  } catch (e) {
    throw new UsageError(e instanceof Error ? e.message : String(e));
  }
  const server = redactUrl(kc.getCurrentCluster()?.server ?? '(no server)');
  if ('inCluster' in source) return `${server} (in-cluster service account)`;
  return `${server} (context ${kc.getCurrentContext()}, kubeconfig ${path.resolve(source.file)})`;
}

/** The VmPlan of a sync or plan that failed as a whole: no VMs, the failure as an error of the repository. */
export function failedPlan(repo: string, message: string): VmPlan {
  const file = /^[a-z][a-z0-9+.-]*:\/\//i.test(repo) ? redactUrl(repo) : path.resolve(repo);
  return { commit: null, vms: [], errors: [{ file, line: null, message }] };
}
