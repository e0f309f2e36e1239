/** Closed vocabularies of the rollout engine: KubeVirt's own names where KubeVirt has one. */

/** KubeVirt's VM rollout strategies (`KubeVirt.spec.configuration.vmRolloutStrategy`). */
export const Strategy = {
  /** Propagate live-updatable changes (CPU sockets, memory, placement, hotplug) to the running VMI. */
  LiveUpdate: 'LiveUpdate',
  /** Hold every change until the next restart. */
  Stage: 'Stage',
} as const;
export type Strategy = (typeof Strategy)[keyof typeof Strategy];

/** How one changed field reaches the running guest. */
export const Rollout = {
  /** Applied to the running VMI now (hotplug, placement patch, link state, …); for a VM-level field, to the VM object at once. */
  live: 'live',
  /** Not on a running guest now: held until the next restart, or with no instance running, until the next start. */
  staged: 'staged',
} as const;
export type Rollout = (typeof Rollout)[keyof typeof Rollout];

/** When one changed field takes effect: the honest answer also when no instance is running. */
export const TakesEffect = {
  /** The running VMI holds it after this pass (or once a listed retryable wait is over). */
  running: 'running',
  /** A VM-level field (VM metadata, runStrategy, …): the VirtualMachine object changes when applied; no instance is involved. */
  vmObject: 'vmObject',
  /** Waits until the running instance restarts. */
  nextRestart: 'nextRestart',
  /** No instance is running (or it is being stopped): the VM's next start uses it; no restart is needed. */
  nextStart: 'nextStart',
} as const;
export type TakesEffect = (typeof TakesEffect)[keyof typeof TakesEffect];

/** What one reconcile pass does to the VM's RestartRequired condition. */
export const ConditionAction = {
  /** The condition is added (or replaced by one with another message). */
  set: 'set',
  /** The condition was there and stays, message unchanged. */
  kept: 'kept',
  /** The condition was there and is removed. */
  cleared: 'cleared',
  /** There was none and there is none. */
  absent: 'absent',
} as const;
export type ConditionAction = (typeof ConditionAction)[keyof typeof ConditionAction];

/** What vmroll does with a VM object in the cluster. */
export const PlanAction = {
  /** The VM does not exist yet. */
  create: 'create',
  /** The VM exists and its desired state differs. */
  update: 'update',
  /** The VM is pruned. */
  delete: 'delete',
  /** Nothing to write. */
  none: 'none',
} as const;
export type PlanAction = (typeof PlanAction)[keyof typeof PlanAction];

/** KubeVirt's condition type on the VM (`VirtualMachineRestartRequired`). */
export const RestartRequired = 'RestartRequired';

/** Feature gates the engine reads, spelled as KubeVirt spells them. */
export const FeatureGate = {
  /** Alpha v1.0, GA v1.5: without it (before GA) the strategy is ignored and Stage applies. */
  VMLiveUpdateFeatures: 'VMLiveUpdateFeatures',
  /** v1.3.x: NIC hotplug only with this gate listed. */
  HotplugNICs: 'HotplugNICs',
  /** Deprecated legacy volume hotplug gate; when listed, declarative volume hotplug is off. */
  HotplugVolumes: 'HotplugVolumes',
  /** Declarative (template-driven) volume hotplug: alpha v1.6, beta and on by default from v1.9. */
  DeclarativeHotplugVolumes: 'DeclarativeHotplugVolumes',
  /** v1.8.x: NAD reference changes go live only with this gate listed. */
  LiveUpdateNADRef: 'LiveUpdateNADRef',
  /** `updateVolumesStrategy` (alpha v1.3, GA v1.5). */
  VolumesUpdateStrategy: 'VolumesUpdateStrategy',
  /** `updateVolumesStrategy: Migration` (alpha v1.3, GA v1.5). */
  VolumeMigration: 'VolumeMigration',
} as const;

/** The exact RestartRequired messages KubeVirt writes. */
export const Message = {
  /** `syncRestartRequired`: any non-live-updatable difference from the baseline. */
  nonLiveUpdatable: 'a non-live-updatable field was changed in the template spec',
  /** CPU handler: sockets above the VMI's maxSockets. */
  socketsAboveMax: "CPU sockets updated in template spec to a value higher than what's available",
  /** CPU handler: fewer sockets than the VMI runs with. */
  socketsReduced: 'Reduction of CPU socket count requires a restart',
  /** CPU handler (v1.6+): arm64 has no CPU hotplug. */
  armNoCpuHotplug: "ARM doesn't support CPU hotplug",
  /** CPU handler v1.2–v1.5 with multi-queue NICs. */
  socketsMultiQueue: 'Changes to CPU sockets require a restart when NetworkInterfaceMultiQueue is enabled',
  /** Memory handler: an earlier hotplug failed on this VMI. */
  memoryHotplugFailed: 'memory updated in template spec. Memory-hotplug failed and is not available for this VM configuration',
  /** Memory handler: the VMI is not live-migratable. */
  memoryNotMigratable: 'memory updated in template spec. Memory-hotplug is only available for migratable VMs',
  /** Memory handler: the VMI started without a maxGuest ceiling. */
  memoryNoMaxGuest: 'memory updated in template spec. Memory-hotplug is not available for this VM configuration',
  /** Memory handler: prefix of the validator's error. */
  memoryNotSupportedPrefix: 'memory hotplug not supported, ',
  /** Memory handler: guest below what the VMI booted with. */
  memoryBelowBoot: 'memory updated in template spec to a value lower than what the VM started with',
  /** Memory handler: guest above maxGuest (unreachable behind the validator, kept for completeness). */
  memoryAboveMax: "memory updated in template spec to a value higher than what's available",
  /** `handleVolumeUpdateRequest` v1.6.0–v1.6.2: any other volume difference under the default (Replacement) strategy. */
  volumesReplacement: 'the volumes replacement is effective only after restart',
} as const;

/** Retryable handler errors: the change waits, no condition is written. */
export const WaitMessage = {
  cpuInProgress: 'another CPU hotplug is in progress',
  cpuMigrating: 'CPU hotplug is not allowed while VMI is migrating',
  memoryInProgress: 'another memory hotplug is in progress',
  memoryMigrating: 'memory hotplug is not allowed while VMI is migrating',
  affinityMigrating: 'Node affinity should not be changed during VMI migration',
  tolerationsMigrating: 'tolerations should not be changed during VMI migration',
} as const;

/** Admission webhook messages for VMs the API server refuses. */
export const AdmissionMessage = {
  socketsAboveMaxSockets: 'Number of sockets in CPU topology is greater than the maximum sockets allowed',
  /** `validateLiveUpdateFeatures` before v1.5, LiveUpdate only: the gate the field needs is not listed. */
  gateNotEnabled: (gate: string): string => `${gate} feature gate is not enabled in kubevirt-config`,
  /** `validateInterfaceStateValue` before v1.5: only `absent` is a valid interface state. */
  interfaceStateUnsupported: (name: string, state: string): string => `logical ${name} interface state value is unsupported: ${state}`,
} as const;

/** How a live change (one the running VMI holds after the pass) reaches the guest (semantics §8). */
export const ReachesGuest = {
  /** At once, without a migration: virt-handler applies it to the running domain (volume/disk/CD-ROM hotplug, interface hotplug/unplug/link state), KubeVirt syncs it (dynamic template annotations), or it is a VM-level field. */
  immediately: 'immediately',
  /** Carried by the VMI but the VM is not moved: it applies when the VM is next scheduled (a migration or a restart). */
  nextScheduling: 'nextScheduling',
  /** The workload updater will start a live migration that carries it to the guest. */
  liveMigration: 'liveMigration',
  /** It needs a migration that will not start (see `blockedBy`): patched into the VMI, it reaches the guest only at the next restart. */
  awaitingRestart: 'awaitingRestart',
  /** It needs a migration, and the workload updater evicts the VMI instead: the guest is stopped (and restarted by its runStrategy). */
  eviction: 'eviction',
} as const;
export type ReachesGuest = (typeof ReachesGuest)[keyof typeof ReachesGuest];

/** The VMI conditions that make the workload updater act, spelled as KubeVirt spells them. */
export const MigrationTrigger = {
  /** CPU sockets hot-plugged into the VMI spec (`requireCPUHotplug`; any status counts). */
  HotVCPUChange: 'HotVCPUChange',
  /** Guest memory hot-plugged into the VMI spec (`syncMemoryHotplug`; True counts). */
  HotMemoryChange: 'HotMemoryChange',
  /** The network migration evaluator: an SR-IOV interface hot-plugged, or a NAD reference changed (True counts). */
  MigrationRequired: 'MigrationRequired',
  /** A storage migration for `updateVolumesStrategy: Migration` (True counts). */
  VolumesChange: 'VolumesChange',
} as const;
export type MigrationTrigger = (typeof MigrationTrigger)[keyof typeof MigrationTrigger];

/** Why the workload updater starts no live migration for a VMI that needs one. */
export const MigrationBlock = {
  /** `spec.workloadUpdateStrategy.workloadUpdateMethods` does not list `LiveMigrate` (the default list is empty). */
  noLiveMigrateMethod: 'noLiveMigrateMethod',
  /** The VMI is not `LiveMigratable=True` (e.g. a RWO volume, a host device). */
  notMigratable: 'notMigratable',
  /** The KubeVirt CR's `status.phase` is not `Deployed`: the workload updater does nothing. */
  kubevirtNotDeployed: 'kubevirtNotDeployed',
  /** KubeVirt is itself being updated (`observedDeploymentID` ≠ `targetDeploymentID`): the workload updater does nothing. */
  kubevirtUpdating: 'kubevirtUpdating',
} as const;
export type MigrationBlock = (typeof MigrationBlock)[keyof typeof MigrationBlock];

/** Why an applied change is observed stuck: a {@link MigrationBlock}, or a hotplug that failed. */
export const ObservedBlock = {
  ...MigrationBlock,
  /** The memory hotplug failed on this VMI (`HotMemoryChange=False`); KubeVirt does not retry it. */
  hotplugFailed: 'hotplugFailed',
} as const;
export type ObservedBlock = (typeof ObservedBlock)[keyof typeof ObservedBlock];

/** `spec.workloadUpdateStrategy.workloadUpdateMethods` values. */
export const WorkloadUpdateMethod = {
  /** Live-migrate VMIs that need it (and are migratable). */
  LiveMigrate: 'LiveMigrate',
  /** Evict the VMIs that need an update and cannot (or may not) be migrated. */
  Evict: 'Evict',
} as const;
export type WorkloadUpdateMethod = (typeof WorkloadUpdateMethod)[keyof typeof WorkloadUpdateMethod];

/** What the planned change does to the running guest, as a whole, without anyone acting. */
export const Disruption = {
  /** Nothing interrupts the guest: changes are effective at once, at the next scheduling, or wait for a restart someone else does. */
  none: 'none',
  /** KubeVirt live-migrates the VM (a short pause of the guest). */
  migration: 'migration',
  /** KubeVirt evicts the VM: the guest stops, and its runStrategy starts it again with every staged change. */
  restart: 'restart',
} as const;
export type Disruption = (typeof Disruption)[keyof typeof Disruption];

/** Where a VM whose change was already applied stands, read from its VMI, its migrations and the KubeVirt CR. */
export const ObservedOutcome = {
  /** Every change the VMI carries is in the guest: no hotplug condition, status matches spec. */
  effective: 'effective',
  /** A live migration that carries the change is running. */
  migrating: 'migrating',
  /** A migration (or an eviction) will carry it: created and pending, or the workload updater has yet to create it. */
  queued: 'queued',
  /** No migration will carry it (see the block reason): it waits for a restart. */
  blocked: 'blocked',
  /** The VMI is gone or going (evicted, stopped, failed) and the VM's runStrategy starts it again. */
  restarting: 'restarting',
  /** No VMI runs and the VM's runStrategy does not start one. */
  stopped: 'stopped',
} as const;
export type ObservedOutcome = (typeof ObservedOutcome)[keyof typeof ObservedOutcome];
