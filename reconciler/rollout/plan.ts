/** The VmPlan contract, as generated from schemas/vmplan.schema.json (the single source of its shape). */
export type { ClusterDefault, FieldChange, GuestDisruption, GuestMigration, ManifestError, RestartReason, VmPlan, VmPlanEntry } from '../../schemas/generated/vmplan.ts';
