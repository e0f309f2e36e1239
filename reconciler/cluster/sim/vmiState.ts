/** Small shared readers and writers of VMI and migration status for the simulated controllers. */
import type { Obj } from '../../rollout/index.ts';
import { isObj, metaOf, specOf, statusOf } from '../object.ts';

/** The VMI condition types the simulated controllers set, as KubeVirt spells them. */
export const VmiCondition = {
  /** virt-handler's verdict on whether the VMI can be live-migrated. */
  LiveMigratable: 'LiveMigratable',
  /** The VMI spec has more (or fewer) vCPUs than the guest runs: a migration applies them. */
  HotVCPUChange: 'HotVCPUChange',
  /** The VMI spec has other guest memory than the guest was given: a migration applies it. */
  HotMemoryChange: 'HotMemoryChange',
  /** A network change (e.g. a NAD reference) that only a migration applies. */
  MigrationRequired: 'MigrationRequired',
  /** A storage migration (`updateVolumesStrategy: Migration`) waits for a migration to copy the volumes. */
  VolumesChange: 'VolumesChange',
  /** virt-handler's verdict leaving the volumes out: could the VMI migrate if its storage moved with it. */
  StorageLiveMigratable: 'StorageLiveMigratable',
} as const;
/** One of {@link VmiCondition}. */
export type VmiCondition = (typeof VmiCondition)[keyof typeof VmiCondition];

/** VirtualMachineInstanceMigration phases, as KubeVirt reports them in `status.phase`. */
export const MigrationPhase = {
  /** Accepted, waiting for the cluster's limits (or a backoff) to let it start. */
  Pending: 'Pending',
  /** The target pod was created. */
  Scheduling: 'Scheduling',
  /** The target pod runs on its node. */
  Scheduled: 'Scheduled',
  /** virt-handler on the target prepares the domain. */
  PreparingTarget: 'PreparingTarget',
  /** The target domain is ready to receive. */
  TargetReady: 'TargetReady',
  /** Memory is being copied. */
  Running: 'Running',
  /** The guest runs on the target. */
  Succeeded: 'Succeeded',
  /** The migration ended without moving the guest. */
  Failed: 'Failed',
} as const;
/** One of {@link MigrationPhase}. */
export type MigrationPhase = (typeof MigrationPhase)[keyof typeof MigrationPhase];

/** Kubernetes timestamp (seconds). */
export function stamp(d: Date): string {
  return d.toISOString().replace(/\.\d{3}Z$/, 'Z');
}

/** The VMI's conditions (a copy of the list). */
export function vmiConditions(vmi: Readonly<Obj>): Obj[] {
  const c = statusOf(vmi)['conditions'];
  return Array.isArray(c) ? (c as Obj[]).filter(isObj) : [];
}

/** The condition of `type`, if present. */
export function vmiCondition(vmi: Readonly<Obj>, type: string): Obj | undefined {
  return vmiConditions(vmi).find((c) => c['type'] === type);
}

/** Conditions with `cond` replacing one of its type (keeping lastTransitionTime when the status did not change). */
export function withCondition(conditions: readonly Obj[], cond: Obj, now: Date): Obj[] {
  const old = conditions.find((c) => c['type'] === cond['type']);
  const next: Obj = { ...cond, lastProbeTime: null, lastTransitionTime: old !== undefined && old['status'] === cond['status'] ? (old['lastTransitionTime'] ?? null) : stamp(now) };
  return old === undefined ? [...conditions, next] : conditions.map((c) => (c === old ? next : c));
}

/** Conditions without any of `types`. */
export function withoutConditions(conditions: readonly Obj[], ...types: string[]): Obj[] {
  return conditions.filter((c) => !types.includes(String(c['type'])));
}

/** KubeVirt's `IsMigrating`: a migration has started (startTimestamp) and not ended. */
export function isMigrating(vmi: Readonly<Obj>): boolean {
  const state = statusOf(vmi)['migrationState'];
  return isObj(state) && state['startTimestamp'] !== undefined && state['endTimestamp'] === undefined;
}

/** A migration's phase ('' when the controller has not seen it yet). */
export function phaseOf(vmim: Readonly<Obj>): string {
  return String(statusOf(vmim)['phase'] ?? '');
}

/** KubeVirt's `IsFinal` for a migration. */
export function isFinal(vmim: Readonly<Obj>): boolean {
  const p = phaseOf(vmim);
  return p === MigrationPhase.Succeeded || p === MigrationPhase.Failed;
}

/** KubeVirt's `IsRunning` for a migration: past Pending and not final; these count towards the limits. */
export function isRunning(vmim: Readonly<Obj>): boolean {
  const p = phaseOf(vmim);
  return p !== '' && p !== MigrationPhase.Pending && !isFinal(vmim);
}

/** The VMI a migration moves. */
export function vmiNameOf(vmim: Readonly<Obj>): string {
  return String(specOf(vmim)['vmiName'] ?? '');
}

/** Namespace of an object ('default' when unset). */
export function nsOf(o: Readonly<Obj>): string {
  return String(metaOf(o)['namespace'] ?? 'default');
}

/** Name of an object. */
export function nameOf(o: Readonly<Obj>): string {
  return String(metaOf(o)['name'] ?? '');
}

/** The total vCPUs of a CPU topology (sockets × cores × threads, each defaulting to 1). */
export function vcpus(cpu: unknown): number {
  const n = (k: string): number => (isObj(cpu) && typeof cpu[k] === 'number' && (cpu[k] as number) > 0 ? (cpu[k] as number) : 1);
  return n('sockets') * n('cores') * n('threads');
}
