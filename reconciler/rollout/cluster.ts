/** What the engine reads from the KubeVirt CR: version, strategy, feature gates, live-update configuration. */
import { type Obj, get, getNum, getObj, getStr } from './json.ts';
import { type Behaviours, behavioursFor, parseVersion } from './versions.ts';
import { FeatureGate, Strategy } from './vocabulary.ts';

/** The KubeVirt settings one plan is computed under. */
export interface ClusterSettings {
  /** The KubeVirt version the behaviours were resolved for (null: seed model). */
  version: string | null;
  behaviours: Behaviours;
  /** The strategy in effect after the gate and the default are applied. */
  strategy: Strategy;
  featureGates: ReadonlySet<string>;
  /** `developerConfiguration.cpuAllocationRatio`, default 10. */
  cpuAllocationRatio: number;
  /** `liveUpdateConfiguration`: the hotplug ceilings of a new VMI (ceilings.ts). */
  maxHotplugRatio: number;
  maxCpuSockets: number | undefined;
  maxGuest: unknown;
  /** What KubeVirt's workload updater may do with VMIs that need a migration (semantics §8). */
  workloadUpdate: WorkloadUpdateSettings;
}

/** `spec.workloadUpdateStrategy`, `spec.configuration.migrations` and the CR status the workload updater reads. */
export interface WorkloadUpdateSettings {
  /** Whether a KubeVirt CR was given; without one KubeVirt's defaults are assumed (no methods). */
  known: boolean;
  /** `workloadUpdateMethods` as listed (KubeVirt's default: empty, no automated workload updates). */
  methods: string[];
  /** `batchEvictionSize`, default 10. */
  batchEvictionSize: number;
  /** `batchEvictionInterval` in seconds, default 60. */
  batchEvictionIntervalSeconds: number;
  /** `migrations.parallelMigrationsPerCluster`, default 5. */
  parallelMigrationsPerCluster: number;
  /** `migrations.parallelOutboundMigrationsPerNode`, default 2. */
  parallelOutboundMigrationsPerNode: number;
  /** `status.phase`; null when the CR carries no status (then it is taken as Deployed). */
  phase: string | null;
  /** False while `status.observedDeploymentID` ≠ `status.targetDeploymentID` (KubeVirt itself updating). */
  deploymentSettled: boolean;
  /** `spec.configuration.evictionStrategy`: the cluster default a VMI without its own uses when evicted. */
  evictionStrategy: string | undefined;
}

/** KubeVirt's defaults (`pkg/virt-config`, `workload-updater.go`). */
const WORKLOAD_DEFAULTS = { batchEvictionSize: 10, batchEvictionIntervalSeconds: 60, parallelMigrationsPerCluster: 5, parallelOutboundMigrationsPerNode: 2 } as const;

/** Parses a Go duration (`1m30s`, `90s`, `2h`) into seconds; undefined when it is not one. */
export function parseDurationSeconds(text: unknown): number | undefined {
  if (typeof text !== 'string' || text.trim() === '') return undefined;
  const re = /(\d+(?:\.\d+)?)(ms|h|m|s)/gy;
  let total = 0;
  let consumed = 0;
  for (const m of text.trim().matchAll(re)) {
    const n = Number(m[1]);
    total += m[2] === 'h' ? n * 3600 : m[2] === 'm' ? n * 60 : m[2] === 's' ? n : n / 1000;
    consumed += m[0].length;
  }
  return consumed === text.trim().length && consumed > 0 ? total : undefined;
}

/** Reads the workload update settings from the KubeVirt CR (null: not given). */
export function resolveWorkloadUpdate(kubevirt: Obj | null): WorkloadUpdateSettings {
  const strategy = getObj(kubevirt, 'spec', 'workloadUpdateStrategy');
  const methodsRaw = get(strategy, 'workloadUpdateMethods');
  const migrations = getObj(kubevirt, 'spec', 'configuration', 'migrations');
  const positive = (n: number | undefined, fallback: number): number => (n !== undefined && n >= 0 ? n : fallback);
  const observed = getStr(kubevirt, 'status', 'observedDeploymentID');
  const target = getStr(kubevirt, 'status', 'targetDeploymentID');
  return {
    known: kubevirt !== null,
    methods: Array.isArray(methodsRaw) ? methodsRaw.filter((m): m is string => typeof m === 'string') : [],
    batchEvictionSize: positive(getNum(strategy, 'batchEvictionSize'), WORKLOAD_DEFAULTS.batchEvictionSize),
    batchEvictionIntervalSeconds: parseDurationSeconds(get(strategy, 'batchEvictionInterval')) ?? WORKLOAD_DEFAULTS.batchEvictionIntervalSeconds,
    parallelMigrationsPerCluster: positive(getNum(migrations, 'parallelMigrationsPerCluster'), WORKLOAD_DEFAULTS.parallelMigrationsPerCluster),
    parallelOutboundMigrationsPerNode: positive(getNum(migrations, 'parallelOutboundMigrationsPerNode'), WORKLOAD_DEFAULTS.parallelOutboundMigrationsPerNode),
    phase: getStr(kubevirt, 'status', 'phase') ?? null,
    deploymentSettled: observed === target,
    evictionStrategy: getStr(kubevirt, 'spec', 'configuration', 'evictionStrategy'),
  };
}

/** Thrown for a version string that is not a KubeVirt version. */
export class InvalidVersionError extends Error {
  readonly code = 'InvalidVersion';
  constructor(readonly version: string) {
    super(`"${version}" is not a KubeVirt version (expected vX.Y.Z)`);
  }
}

/**
 * Reads the KubeVirt CR. `versionOverride` wins over `status.observedKubeVirtVersion`; with
 * neither, the seed model applies. `vm` matters only before v1.2, when VMs opted in one by one.
 */
export function resolveCluster(kubevirt: Obj | null, versionOverride?: string, vm?: Obj): ClusterSettings {
  const versionText = versionOverride ?? getStr(kubevirt, 'status', 'observedKubeVirtVersion') ?? null;
  let behaviours = behavioursFor(null);
  if (versionText !== null) {
    const parsed = parseVersion(versionText);
    if (parsed === null) throw new InvalidVersionError(versionText);
    behaviours = behavioursFor(parsed);
  }
  const config = getObj(kubevirt, 'spec', 'configuration');
  const gatesRaw = get(config, 'developerConfiguration', 'featureGates');
  const featureGates = new Set(Array.isArray(gatesRaw) ? gatesRaw.filter((g): g is string => typeof g === 'string') : []);
  const configured = getStr(config, 'vmRolloutStrategy');
  let strategy: Strategy;
  if (!behaviours.liveUpdateGateGA && !featureGates.has(FeatureGate.VMLiveUpdateFeatures)) {
    strategy = Strategy.Stage;
  } else if (!behaviours.clusterStrategy) {
    strategy = get(vm, 'spec', 'liveUpdateFeatures') !== undefined ? Strategy.LiveUpdate : Strategy.Stage;
  } else if (configured === Strategy.LiveUpdate || configured === Strategy.Stage) {
    strategy = configured;
  } else {
    strategy = behaviours.defaultStrategy;
  }
  const ratio = getNum(config, 'developerConfiguration', 'cpuAllocationRatio');
  const live = getObj(config, 'liveUpdateConfiguration');
  return {
    version: versionText,
    behaviours,
    strategy,
    featureGates,
    cpuAllocationRatio: ratio !== undefined && ratio > 0 ? ratio : 10,
    maxHotplugRatio: getNum(live, 'maxHotplugRatio') ?? 4,
    maxCpuSockets: getNum(live, 'maxCpuSockets'),
    maxGuest: get(live, 'maxGuest'),
    workloadUpdate: resolveWorkloadUpdate(kubevirt),
  };
}
