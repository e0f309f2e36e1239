/**
 * KubeVirt's rollout behaviour, version by version, as one declarative table.
 *
 * Each row is one behaviour: its value in the seed model (no KubeVirt version known), its
 * value before the first release listed, and the releases where it changed. Nothing else in
 * the engine branches on a version number; it reads the resolved {@link Behaviours}.
 */
import { Strategy } from './vocabulary.ts';

/** How interface/network changes enter the restart check. */
export type InterfaceRule =
  /** never neutralised: any difference from the baseline needs a restart */
  | 'restart'
  /** neutralised under LiveUpdate when hot-pluggable (the seed's documented model) */
  | 'liveUpdate'
  /** neutralised under both strategies when `IsRestartRequired(vm, vmi)` is false (v1.6+) */
  | 'always';

/** Whether bridge/SR-IOV interfaces added to the template are hot-plugged into the VMI. */
export type NicHotplug = 'none' | 'gated' | 'liveUpdate' | 'always';

/** How a change of a network's NAD reference (`multus.networkName`) is treated. */
export type NadRefRule = 'restart' | 'gated' | 'live' | 'liveIfMigratable';

/** Whether template-declared hotpluggable volumes are attached to the VMI. */
export type VolumeHotplug = 'none' | 'liveUpdate' | 'gated' | 'defaultOn';

/** Where hotpluggable volume/disk changes are exempt from RestartRequired. */
export type HotplugVolumeRule = 'liveUpdate' | 'always';

/** Every version-dependent behaviour the engine reads. */
export interface Behaviours {
  /** Label of the model in use: `seed` or the version it was resolved for. */
  model: string;
  /** `VMLiveUpdateFeatures` is GA (always on); before, the gate must be listed or the strategy is ignored. */
  liveUpdateGateGA: boolean;
  /** The cluster-wide `vmRolloutStrategy` exists (v1.2+); before, VMs opted in with `spec.liveUpdateFeatures`. */
  clusterStrategy: boolean;
  /** Strategy used when `vmRolloutStrategy` is unset. */
  defaultStrategy: Strategy;
  /** How interface/network changes enter the restart check. */
  interfaces: InterfaceRule;
  /** Whether added bridge/SR-IOV interfaces are hot-plugged. */
  nicHotplug: NicHotplug;
  /** NAD reference changes. */
  nadRef: NadRefRule;
  /** Where hotpluggable volume changes skip RestartRequired. */
  hotplugVolumes: HotplugVolumeRule;
  /** v1.2.x: every volume and disk change is neutralised under LiveUpdate (no hotplug validation). */
  allVolumesNeutralisedUnderLiveUpdate: boolean;
  /** Whether declared hotpluggable volumes reach the running VMI. */
  volumeHotplug: VolumeHotplug;
  /** Removing a CD-ROM disk needs a restart (v1.7+). */
  cdromRemovalRestart: boolean;
  /** A firmware UUID equal to the VMI's is neutralised (v1.8+). */
  firmwareUuidBackfill: boolean;
  /** The VM webhook fills in firmware.uuid, firmware.serial and the PCI topology template annotation when a manifest leaves them out (v1.8+). */
  firmwarePciDefaults: boolean;
  /** RestartRequired stays until restart and blocks further propagation (before v1.8). */
  conditionSticky: boolean;
  /** Tolerations are live-updatable under LiveUpdate (v1.4+). */
  tolerationsLive: boolean;
  /** Socket changes need a restart while multi-queue NICs are on (v1.2–v1.5). */
  multiQueueSocketsRestart: boolean;
  /** The CPU handler refuses socket hotplug on arm64 (v1.6+). */
  armCpuHotplugCheck: boolean;
  /** Network, volume and metadata synchronisers run even while RestartRequired is set (KubeVirt; not the seed's model). */
  syncersIgnoreCondition: boolean;
  /** Reordering interfaces/networks is a difference (the lists are compared in order, nothing neutralises them) (before v1.6). */
  interfaceOrderSensitive: boolean;
  /** Known bug v1.4.0–v1.5.x: removing a hot-plugged volume's disk (or a CD-ROM with its volume) sets RestartRequired under LiveUpdate. */
  removedHotplugDiskBug: boolean;
  /** `updateVolumesStrategy` needs the `VolumesUpdateStrategy` and `VolumeMigration` gates listed (before they went GA in v1.5). */
  volumeMigrationGated: boolean;
  /** The descheduler annotations (and configured keys) of the template are synced to a running VMI (v1.6+). */
  dynamicMetadataSync: boolean;
  /** Admission accepts interface `state: up`/`down` (v1.5+); before, only `absent`. */
  interfaceLinkState: boolean;
  /** Known bug v1.6.0–v1.6.2: adding (or changing) a hotplug volume under LiveUpdate sets RestartRequired "the volumes replacement is effective only after restart". */
  volumeReplacementRestartBug: boolean;
  /** Adding the pod network to a VM running without one needs a restart (`IsRestartRequired`); v1.6.x–v1.7.x lack the rule. */
  podNetworkAddedRestart: boolean;
  /** Known bug v1.6.0–v1.6.5 and v1.7.0–v1.7.3: the firmware UUID KubeVirt writes into a VM started without one sets RestartRequired. */
  firmwareUuidRestartBug: boolean;
}

/** KubeVirt bugs the engine reproduces, each with what goes wrong and the releases that fix it. */
export const KNOWN_BUGS = {
  removedHotplugDiskBug: { what: 'the removed disk is looked up in the already-updated spec, where its volume is gone', fixedIn: ['v1.6.0'] },
  ejectedCdromPanic: { what: "validLiveUpdateDisks takes the name of the volume an unchanged disk no longer has, a nil pointer", fixedIn: ['v1.6.0'] },
  volumeReplacementRestartBug: { what: "handleVolumeUpdateRequest takes any new hotplug volume for a volume replacement", fixedIn: ['v1.6.3'] },
  firmwareUuidRestartBug: { what: 'the UUID is compared with the start revision, which has none', fixedIn: ['v1.6.6', 'v1.7.4'] },
} as const;

/** The clause a reason from a known KubeVirt bug ends with: says so and names the fixing releases. */
export function knownBugNote(bug: keyof typeof KNOWN_BUGS): string {
  const b = KNOWN_BUGS[bug];
  return `a known KubeVirt bug (${b.what}), fixed in ${b.fixedIn.join(' and ')}`;
}

type Row<T> = {
  /** Value in the seed model. */
  seed: T;
  /** Value before the first entry of `since`. */
  before: T;
  /** [first version, value from there on], ascending. */
  since: ReadonlyArray<readonly [string, T]>;
};

/**
 * The table. "v1.10.0" stands for development builds after v1.9 (KubeVirt's main branch). Rows
 * resolve to the patch release: each `since` entry from its version on, later entries winning, so
 * a fix in v1.6.6 and v1.7.4 that v1.7.0 lacks is written as three entries.
 */
export const BEHAVIOUR_TABLE: { readonly [K in Exclude<keyof Behaviours, 'model'>]: Row<Behaviours[K]> } = {
  liveUpdateGateGA: { seed: false, before: false, since: [['v1.5.0', true]] },
  clusterStrategy: { seed: true, before: false, since: [['v1.2.0', true]] },
  defaultStrategy: { seed: Strategy.Stage, before: Strategy.Stage, since: [['v1.6.0', Strategy.LiveUpdate]] },
  interfaces: { seed: 'liveUpdate', before: 'restart', since: [['v1.6.0', 'always']] },
  nicHotplug: { seed: 'liveUpdate', before: 'none', since: [['v1.3.0', 'gated'], ['v1.4.0', 'always']] },
  nadRef: {
    seed: 'restart',
    before: 'restart',
    since: [['v1.8.0', 'gated'], ['v1.9.0', 'live'], ['v1.10.0', 'liveIfMigratable']],
  },
  hotplugVolumes: { seed: 'liveUpdate', before: 'liveUpdate', since: [['v1.7.0', 'always']] },
  allVolumesNeutralisedUnderLiveUpdate: { seed: false, before: false, since: [['v1.2.0', true], ['v1.3.0', false]] },
  volumeHotplug: { seed: 'liveUpdate', before: 'none', since: [['v1.6.0', 'gated'], ['v1.9.0', 'defaultOn']] },
  cdromRemovalRestart: { seed: false, before: false, since: [['v1.7.0', true]] },
  // Backported to v1.6.6 and v1.7.4 (the fix of firmwareUuidRestartBug); v1.7.0–v1.7.3 lack it again.
  firmwareUuidBackfill: { seed: false, before: false, since: [['v1.6.6', true], ['v1.7.0', false], ['v1.7.4', true]] },
  firmwarePciDefaults: { seed: false, before: false, since: [['v1.8.0', true]] },
  conditionSticky: { seed: true, before: true, since: [['v1.8.0', false]] },
  tolerationsLive: { seed: true, before: false, since: [['v1.4.0', true]] },
  multiQueueSocketsRestart: { seed: false, before: false, since: [['v1.2.0', true], ['v1.6.0', false]] },
  armCpuHotplugCheck: { seed: false, before: false, since: [['v1.6.0', true]] },
  syncersIgnoreCondition: { seed: false, before: true, since: [] },
  interfaceOrderSensitive: { seed: false, before: true, since: [['v1.6.0', false]] },
  removedHotplugDiskBug: { seed: false, before: false, since: [['v1.4.0', true], ['v1.6.0', false]] },
  volumeMigrationGated: { seed: false, before: true, since: [['v1.5.0', false]] },
  dynamicMetadataSync: { seed: true, before: false, since: [['v1.6.0', true]] },
  interfaceLinkState: { seed: true, before: false, since: [['v1.5.0', true]] },
  volumeReplacementRestartBug: { seed: false, before: false, since: [['v1.6.0', true], ['v1.6.3', false]] },
  podNetworkAddedRestart: { seed: true, before: true, since: [['v1.6.0', false], ['v1.8.0', true]] },
  firmwareUuidRestartBug: { seed: false, before: false, since: [['v1.6.0', true], ['v1.6.6', false], ['v1.7.0', true], ['v1.7.4', false]] },
};

/** A parsed KubeVirt version. */
export interface Version {
  major: number;
  minor: number;
  patch: number;
}

const VERSION_RE = /^v?(\d+)\.(\d+)\.(\d+)(?:-([0-9A-Za-z.]+))?(?:-(\d+)-g[0-9a-f]+)?(?:\+.*)?$/;

/**
 * Parses `v1.8.0`, `1.8.0`, `v1.9.0-rc.1` or a `git describe` development build such as
 * `v1.9.0-beta.0-1264-gd923fdb815`. A development build N commits past a tag is KubeVirt's
 * main branch, which is ahead of every release of that minor: it maps to the next minor.
 */
export function parseVersion(text: string): Version | null {
  const m = VERSION_RE.exec(text.trim());
  if (!m) return null;
  const major = Number(m[1]);
  const minor = Number(m[2]);
  const patch = Number(m[3]);
  if (m[5] !== undefined) return { major, minor: minor + 1, patch: 0 };
  return { major, minor, patch };
}

/** Orders two versions: negative when a < b. */
export function compareVersions(a: Version, b: Version): number {
  return a.major - b.major || a.minor - b.minor || a.patch - b.patch;
}

function mustParse(text: string): Version {
  const v = parseVersion(text);
  if (!v) throw new Error(`invalid version in the behaviour table: ${text}`);
  return v;
}

function resolveRow<T>(row: Row<T>, version: Version | null): T {
  if (version === null) return row.seed;
  let value = row.before;
  for (const [from, v] of row.since) {
    if (compareVersions(mustParse(from), version) <= 0) value = v;
  }
  return value;
}

/** Resolves every behaviour for a version; `null` selects the seed model. */
export function behavioursFor(version: Version | null): Behaviours {
  const out: Record<string, unknown> = {
    model: version === null ? 'seed' : `v${version.major}.${version.minor}.${version.patch}`,
  };
  for (const [key, row] of Object.entries(BEHAVIOUR_TABLE)) {
    out[key] = resolveRow(row as Row<unknown>, version);
  }
  return out as unknown as Behaviours;
}
