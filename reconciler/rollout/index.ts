/** The rollout engine's public surface. */
export { planRollout, type RolloutInput, type RolloutResult } from './engine.ts';
export type { ClusterDefault, FieldChange, GuestDisruption, GuestMigration, ManifestError, RestartReason, VmPlan, VmPlanEntry } from './plan.ts';
export { type ClusterSettings, InvalidVersionError, type WorkloadUpdateSettings, parseDurationSeconds, resolveCluster, resolveWorkloadUpdate } from './cluster.ts';
export type { AdmissionError } from './admission.ts';
export { BEHAVIOUR_TABLE, type Behaviours, KNOWN_BUGS, behavioursFor, compareVersions, knownBugNote, parseVersion } from './versions.ts';
export {
  ConditionAction,
  Disruption,
  FeatureGate,
  Message,
  MigrationBlock,
  MigrationTrigger,
  ObservedBlock,
  ObservedOutcome,
  PlanAction,
  ReachesGuest,
  RestartRequired,
  Rollout,
  Strategy,
  TakesEffect,
  WorkloadUpdateMethod,
} from './vocabulary.ts';
export { type DisruptionSummary, type ObserveInput, type ObservedGuest, type WorkloadPath, migrationsAhead, narrowDisruption, observeGuest, pendingTriggers, workloadUpdatePath } from './guest.ts';
export { parseQuantity, quantitiesEqual } from './quantity.ts';
export { INSTANCETYPE_KINDS, expandVm } from './instancetype.ts';
export { CLUSTER_DEFAULT_PATHS, type ClusterDefaultsResult, PCI_TOPOLOGY_ANNOTATION, fillClusterDefaults } from './clusterDefaults.ts';
export { topologyCount } from './cpu.ts';
export { type CeilingSettings, type HotplugCeilings, MAX_HOTPLUG_VCPUS, hotplugCeilings, maxGuestCeiling, maxSocketsCeiling } from './ceilings.ts';
export { parseStartRevisionName, startRevisionName } from './startRevision.ts';
export { validateLiveUpdateMemory } from './memory.ts';
export type { Obj } from './json.ts';
export { type ChangeOutcome, type FieldRevert, RELEASED_WHY, VM_LEVEL_WHY, changeOutcome, fieldChanged, introducedBy, vmMetadataChanges } from './introduced.ts';
