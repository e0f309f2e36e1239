/** Reading the running VirtualMachineInstance the way KubeVirt's handlers do. */
import { type Obj, get, getList, getStr } from './json.ts';

/** True when the VMI carries condition `type` with `status` (default "True"). */
export function hasVmiCondition(vmi: Obj, type: string, status = 'True'): boolean {
  return getList(vmi, 'status', 'conditions').some((c) => c['type'] === type && c['status'] === status);
}

/** KubeVirt's `IsMigrating`: a migration has started and not ended. */
export function isMigrating(vmi: Obj): boolean {
  const state = get(vmi, 'status', 'migrationState');
  return get(state, 'startTimestamp') !== undefined && get(state, 'endTimestamp') === undefined && get(state, 'completed') !== true;
}

/** True when the VMI is being deleted. */
export function isDeleting(vmi: Obj): boolean {
  return getStr(vmi, 'metadata', 'deletionTimestamp') !== undefined;
}

/** `LiveMigratable=True` on the VMI. */
export function isLiveMigratable(vmi: Obj): boolean {
  return hasVmiCondition(vmi, 'LiveMigratable');
}

/** The VMI's phase, `Running` when unset (a VMI given to the engine is a running one). */
export function vmiPhase(vmi: Obj): string {
  return getStr(vmi, 'status', 'phase') ?? 'Running';
}
