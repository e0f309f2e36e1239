/**
 * What applying one commit would do to the cluster, without applying it: every VM the commit
 * defines planned against the live cluster as the cache holds it. Used by PR review and
 * `vmroll plan`; it reads the cache and Git only and never writes to the cluster.
 */
import { FIELD_MANAGER, projectApply } from '../cluster/ssa.ts';
import { createHash } from 'node:crypto';
import { type RepositoryIdentity, repositoryIdentity } from '../apply/identity.ts';
import { inSync } from '../apply/ownership.ts';
import type { ClusterCache } from '../cluster/cache.ts';
import { conditionsOf, metaOf, specOf } from '../cluster/object.ts';
import { type Obj, PlanAction, Rollout, type VmPlan, type VmPlanEntry, introducedBy, planRollout, TakesEffect, resolveCluster } from '../rollout/index.ts';
import type { ManifestError } from '../rollout/plan.ts';
import type { ChangedPath, TreeFile } from '../source/gitSource.ts';
import { type ManifestSet, loadManifests } from '../source/manifests.ts';
import { pairDesiredLive } from './pairing.ts';
import { type Summary, countPlan } from './summary.ts';
import type { RestartPolicySpec } from '../restart/index.ts';
import { type RestartPreview, previewRestarts } from './restartPreview.ts';

/** What planning needs from Git (GitSource implements it). */
export interface PlanSource {
  listFiles(args: { commit: string; path?: string }): Promise<TreeFile[]>;
  changedPaths(args: { from: string; to: string; path?: string }): Promise<ChangedPath[]>;
  readBlob(args: { oid: string }): Promise<Uint8Array>;
}

/** How a plan changes whether a VM's guest runs: the effect of runStrategy (or `running`). */
export const PowerChange = {
  /** A running instance is stopped: the desired runStrategy is Halted (or `running: false`). */
  stop: 'stop',
  /** An existing VM without an instance is started: its runStrategy moves to Always, RerunOnFailure or Once. */
  start: 'start',
} as const;
export type PowerChange = (typeof PowerChange)[keyof typeof PowerChange];

/** Input of {@link planCommit}. */
export interface PlanCommitOptions {
  source: PlanSource;
  commit: string;
  /** Folder (or file) of the repository holding the manifests; default the whole repository. */
  path?: string;
  cache: ClusterCache;
  /** The repository as given to vmroll (URL without credentials, or local path): its ownership identity is derived from it. */
  repoLabel: string;
  /** The ownership identity, when the caller resolved it (or set it in vmroll.yaml); default: derived from `repoLabel` and `path`. */
  identity?: RepositoryIdentity;
  /** Plan deletes for VMs this repository applied that the commit no longer defines. */
  prune: boolean;
  /** Only VMs (and errors) of files that changed between this commit and `commit`; deletes only for VMs whose file changed. */
  base?: string;
  /** An earlier load (of any commit, same path): only the files that differ from it are read again. */
  previous?: ManifestSet;
  /** `--strict`: warnings of a file are errors of that file (see loadManifests). */
  strict?: boolean;
  /** Why this repository may not write to a namespace, or null when it may (vmroll.yaml `namespaces`); absent: any namespace. */
  refuseNamespace?: (namespace: string) => string | null;
  /** The repository's restart policy and `now` (epoch ms): the plan then says per VM whether and when it restarts (`plan.restarts`). */
  restart?: { policy: RestartPolicySpec; now: number };
}

/** Output of {@link planCommit}. */
export interface PlanCommitResult {
  /** Schema-valid VmPlan of the commit. */
  plan: VmPlan;
  /** The plan's counts by the states a sync counts (plan/summary.ts): the same type and rule as a sync's summary. */
  summary: Summary;
  /** Power changes by `namespace/name`. */
  power: Record<string, PowerChange>;
  /** Defining file and line by `namespace/name`, for VMs the commit defines (deletes: the file named by the live VM's annotation). */
  sources: Record<string, { file: string; line: number | null }>;
  /** The load, to pass as `previous` to the next plan. */
  manifests: ManifestSet;
  /** With the `restart` option: the restarts the commit leads to (also in `plan.restarts`) and the merge gate's reasons. */
  restarts?: RestartPreview;
}

const RUNNING = new Set(['Always', 'RerunOnFailure', 'Once']);

function wantsRunning(vm: Obj): boolean {
  const rs = specOf(vm)['runStrategy'];
  return typeof rs === 'string' ? RUNNING.has(rs) : specOf(vm)['running'] === true;
}

function wantsStopped(vm: Obj): boolean {
  const rs = specOf(vm)['runStrategy'];
  return typeof rs === 'string' ? rs === 'Halted' : specOf(vm)['running'] === false;
}

function compare(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/**
 * The stored VM as it will be once applied. Where the server tracks managedFields (a real API
 * server, `vmroll sim`), it is server-side apply's own result: fields other managers own
 * (defaults, KubeVirt's additions) stay, fields vmroll stops applying go. The embedded
 * simulator keeps no managedFields and replaces labels, annotations and spec.
 */
function projected(live: Obj, desired: Obj): Obj {
  const applied = projectApply(live, desired, FIELD_MANAGER);
  if (applied !== null) return applied;
  const d = metaOf(desired);
  return { ...live, metadata: { ...metaOf(live), labels: d['labels'], annotations: d['annotations'] }, spec: desired['spec'] ?? {} };
}

/** The plan entry of a VM vmroll prunes (or would): the strategy and KubeVirt version the cluster runs. */
export function deleteEntry(namespace: string, name: string, live: Obj, kubevirt: Obj | null): VmPlanEntry {
  const cluster = resolveCluster(kubevirt, undefined, live);
  return {
    namespace,
    name,
    action: PlanAction.delete,
    strategy: cluster.strategy,
    restartRequired: false,
    condition: 'absent',
    conditionMessage: null,
    reasons: [],
    changes: [],
    waiting: [],
    kubevirt: { version: cluster.version, model: cluster.behaviours.model },
  };
}

/**
 * Digest of the cluster state a plan depends on (every VM, VMI, start baseline, instancetype and
 * the KubeVirt CR, by resourceVersion; the migrations by phase): equal digests give equal plans for the same commit.
 */
export function clusterStateKey(cache: ClusterCache): string {
  const h = createHash('sha256');
  const rv = (o: Obj | null | undefined): string => String(o ? (metaOf(o)['resourceVersion'] ?? '?') : '-');
  for (const key of [...cache.vms.keys()].sort(compare)) {
    const vm = cache.vms.get(key) as Obj;
    h.update(`vm ${key} ${rv(vm)} ${cache.baselineGeneration(vm)}\n`);
  }
  for (const key of [...cache.vmis.keys()].sort(compare)) h.update(`vmi ${key} ${rv(cache.vmis.get(key))}\n`);
  for (const key of [...cache.instancetypes.keys()].sort(compare)) h.update(`it ${key} ${rv(cache.instancetypes.get(key))}\n`);
  h.update(`kv ${rv(cache.kubevirt)}\n`);
  h.update(`vmim ${cache.migrationsKey()}\n`);
  return h.digest('hex').slice(0, 32);
}

/** Plans one commit against the cluster as the cache holds it. */
export async function planCommit(options: PlanCommitOptions): Promise<PlanCommitResult> {
  const { cache, commit, repoLabel } = options;
  const identity = options.identity ?? (await repositoryIdentity({ repo: repoLabel, ...(options.path !== undefined ? { path: options.path } : {}) }));
  await cache.start();
  const manifests = await loadManifests({
    source: options.source,
    commit,
    ...(options.path !== undefined ? { path: options.path } : {}),
    ...(options.previous !== undefined ? { previous: options.previous } : {}),
    strict: options.strict ?? false,
  });
  let changedFiles: Set<string> | null = null;
  if (options.base !== undefined) {
    const changes = await options.source.changedPaths({ from: options.base, to: commit, path: manifests.path });
    changedFiles = new Set(changes.map((c) => c.path));
  }
  const inScope = (file: string): boolean => changedFiles === null || changedFiles.has(file);

  const vms: VmPlanEntry[] = [];
  const errors: ManifestError[] = manifests.errors.filter((e) => inScope(e.file));
  const power: Record<string, PowerChange> = {};
  const sources: Record<string, { file: string; line: number | null }> = {};
  const desiredByKey = new Map<string, Obj>();
  const instancetypes = [...cache.instancetypes.values()];
  // Migrations in flight decide how many are ahead of a hot-plug's own.
  const migrations = cache.migrationList();

  // The same pairing as the sync: a VM the sync refuses (namespace, another repository's) is an error here, never planned.
  const pairing = await pairDesiredLive({
    manifests,
    live: cache.vms,
    identity,
    prune: options.prune,
    listFiles: (args) => options.source.listFiles(args),
    inScope,
    ...(options.refuseNamespace !== undefined && { refuseNamespace: options.refuseNamespace }),
  });
  errors.push(...pairing.refusals);
  for (const pair of pairing.pairs) {
    const { key, vm, live } = pair;
    sources[key] = { file: vm.file, line: vm.line };
    const desired = pair.desired();
    desiredByKey.set(key, desired);
    const vmi = live !== undefined ? (cache.vmis.get(key) ?? null) : null;
    const result =
      live === undefined
        ? planRollout({ desired, baseline: null, vmi: null, kubevirt: cache.kubevirt, conditions: [], instancetypes, migrations })
        : planRollout({
            desired: projected(live, desired),
            // Without a running instance the stored VM is what the change is measured against.
            baseline: vmi !== null ? (cache.baseline(live) ?? { spec: specOf(live) }) : { spec: specOf(live) },
            vmi,
            kubevirt: cache.kubevirt,
            conditions: conditionsOf(live),
            instancetypes,
            migrations,
          });
    if (result.admissionErrors.length > 0) {
      const verb = live === undefined ? 'creation' : 'update';
      for (const a of result.admissionErrors) {
        errors.push({ file: vm.file, line: vm.line, path: a.path, message: `VirtualMachine ${key}: admission webhook would deny the ${verb}: ${a.message}` });
      }
      continue;
    }
    let action: VmPlanEntry['action'];
    if (live === undefined) action = PlanAction.create;
    else action = inSync(desired, live) ? PlanAction.none : PlanAction.update;
    // The engine measures against the running instance; a reviewer wants what this commit does to the stored VM.
    vms.push(live === undefined ? { ...result.plan, action } : { ...introducedBy(result.plan, live, projected(live, desired)), action });
    if (live !== undefined && action === PlanAction.update) {
      if (vmi !== null && wantsStopped(desired) && !wantsStopped(live)) power[key] = PowerChange.stop;
      else if (vmi === null && wantsRunning(desired) && !wantsRunning(live)) power[key] = PowerChange.start;
    }
  }

  const decision = pairing.prune;
  for (const d of decision.deletes) {
    const key = `${d.namespace}/${d.name}`;
    sources[key] = { file: d.file ?? '', line: null };
    vms.push(deleteEntry(d.namespace, d.name, d.live, cache.kubevirt));
  }
  errors.push(...decision.errors);

  vms.sort((a, b) => compare(a.namespace, b.namespace) || compare(a.name, b.name));
  errors.sort((a, b) => compare(a.file, b.file) || (a.line ?? 0) - (b.line ?? 0));
  const plan: VmPlan = { commit, vms, errors, orphans: decision.orphans, warnings: manifests.warnings.filter((w) => inScope(w.file)) };
  let restarts: RestartPreview | undefined;
  if (options.restart !== undefined) {
    restarts = previewRestarts({ plan, desired: desiredByKey, cache, identity: identity.id, policy: options.restart.policy, now: options.restart.now });
    plan.restarts = restarts.restarts;
  }
  return { plan, summary: countPlan(plan, power), power, sources, manifests, ...(restarts !== undefined && { restarts }) };
}
