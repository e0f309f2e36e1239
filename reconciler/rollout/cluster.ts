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
  };
}
