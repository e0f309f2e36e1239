/**
 * What one change of the stored VM does, as opposed to everything the VM still differs in from its
 * running instance. The engine plans a VM against the instance (its start baseline and the VMI), so
 * a field changed by an earlier commit (hot-plugged, or staged and still waiting) shows up in every
 * later plan. The PR plan and the sync report want what this change does: these functions keep that,
 * by comparing the stored VM before and after the change. Pure, like the rest of rollout/.
 */
import type { Obj } from './json.ts';
import { formatPath, getAt, parsePath } from './paths.ts';
import type { FieldChange, VmPlanEntry } from './plan.ts';
import { semanticEqual } from './semantic.ts';
import { narrowDisruption } from './guest.ts';
import { ReachesGuest, Rollout } from './vocabulary.ts';

/** Whether the stored value at `path` differs between `before` and `after` (Kubernetes semantic equality). */
export function fieldChanged(path: string, before: Obj, after: Obj): boolean {
  const segments = parsePath(path);
  const last = segments[segments.length - 1];
  return !semanticEqual(getAt(before, segments), getAt(after, segments), typeof last === 'string' ? last : undefined);
}

/**
 * Keeps the changes of `entry` (a plan of `after`) at fields whose value differs between `before`
 * and `after`, and the reasons of those fields. RestartRequired and its message stay as the engine
 * says: they describe the VM after the change.
 */
export function introducedBy(entry: VmPlanEntry, before: Obj, after: Obj): VmPlanEntry {
  const changes = entry.changes.filter((c) => fieldChanged(c.path, before, after));
  if (changes.length === entry.changes.length) return entry;
  const kept = new Set(changes.map((c) => c.path));
  return withDisruption({ ...entry, changes, reasons: entry.reasons.filter((r) => kept.has(r.path)) }, entry);
}

/** A field set back to what the running instance runs (see {@link changeOutcome}). */
export interface FieldRevert {
  /** Dotted path of the field in the VirtualMachine. */
  path: string;
  /** The stored value before the change. */
  from: unknown;
  /** The stored value after it: what the running instance runs. */
  to: unknown;
}

/** What one change of a running VM's stored spec did (see {@link changeOutcome}). */
export interface ChangeOutcome {
  /** `after`'s plan entry with only the changes this change made, plus those it released. */
  entry: VmPlanEntry;
  /** Fields the change reverted. */
  reverts: FieldRevert[];
  /** Paths among `entry.changes` whose value did not change but which go live now, held until this change. */
  released: string[];
}

/** `narrowed` with its disruption summed up again from its own changes (the engine's covered `whole`). */
function withDisruption(narrowed: VmPlanEntry, whole: VmPlanEntry): VmPlanEntry {
  const disruption = narrowDisruption(whole, narrowed.changes);
  if (disruption === undefined) {
    const { disruption: _dropped, ...rest } = narrowed;
    return rest;
  }
  return { ...narrowed, disruption };
}

/** `why` of a released change. */
export const RELEASED_WHY = 'held by the pending restart until this change; goes live now';

/**
 * Splits what a change of the stored VM (`storedBefore` → `storedAfter`) does to a VM with a
 * running instance, given the engine's plan of each against that instance.
 *
 * - A field is *changed* when its stored value differs and the plan after lists it: it is listed
 *   live or staged with its reasons; `from` is the stored value before (the previous synced commit's
 *   value, not the value the instance started with).
 * - A field is *reverted* when its stored value differs, the plan before listed it (the stored
 *   value was not what the instance runs: staged, waiting for a restart, or held), and the plan
 *   after does not (the new value is what the instance runs: it started with it, or a live update
 *   already brought it there). Nothing goes to the guest and nothing waits for a restart; when no
 *   other field keeps it, KubeVirt (from v1.8) clears RestartRequired. Setting a hot-plugged field
 *   back to its start value is no revert: the instance runs the hot-plugged value, so the plan
 *   after lists it (a hot-unplug, or a restart).
 * - A field is *released* when its stored value did not change, the plan before listed it staged
 *   and the plan after lists it live: a live update held while a restart was pending goes through
 *   now that the change removed what kept the restart pending.
 */
export function changeOutcome(before: VmPlanEntry, after: VmPlanEntry, storedBefore: Obj, storedAfter: Obj): ChangeOutcome {
  const beforeByPath = new Map(before.changes.map((c) => [c.path, c]));
  const afterPaths = new Set(after.changes.map((c) => c.path));
  const changes: FieldChange[] = [];
  const released: string[] = [];
  for (const c of after.changes) {
    if (fieldChanged(c.path, storedBefore, storedAfter)) {
      const from = getAt(storedBefore, parsePath(c.path));
      const { from: _engineFrom, ...rest } = c;
      changes.push(from === undefined ? rest : { ...rest, from });
    } else if (c.rollout === Rollout.live && beforeByPath.get(c.path)?.rollout === Rollout.staged) {
      changes.push({ ...c, why: RELEASED_WHY });
      released.push(c.path);
    }
  }
  const reverts: FieldRevert[] = [];
  for (const c of before.changes) {
    if (afterPaths.has(c.path) || !fieldChanged(c.path, storedBefore, storedAfter)) continue;
    const segments = parsePath(c.path);
    reverts.push({ path: c.path, from: getAt(storedBefore, segments), to: getAt(storedAfter, segments) });
  }
  const kept = new Set(changes.filter((c) => !released.includes(c.path)).map((c) => c.path));
  return { entry: withDisruption({ ...after, changes, reasons: after.reasons.filter((r) => kept.has(r.path)) }, after), reverts, released };
}

/** `why` of a change to the VirtualMachine's own labels or annotations. */
export const VM_LEVEL_WHY = 'VM-level field: takes effect at once, not part of the running instance';

/**
 * Changes to the VirtualMachine's own labels and annotations between two stored copies, as live
 * changes: they are not part of the running instance. The engine lists them only against a baseline
 * that carries metadata, and a start baseline (KubeVirt's ControllerRevision) carries the spec only.
 * `ignore` leaves out keys that change on every apply (vmroll's source-commit annotation).
 */
export function vmMetadataChanges(before: Obj, after: Obj, ignore: (kind: 'labels' | 'annotations', key: string) => boolean = () => false): FieldChange[] {
  const out: FieldChange[] = [];
  for (const kind of ['labels', 'annotations'] as const) {
    const was = (getAt(before, ['metadata', kind]) ?? {}) as Obj;
    const now = (getAt(after, ['metadata', kind]) ?? {}) as Obj;
    for (const key of [...new Set([...Object.keys(was), ...Object.keys(now)])].sort()) {
      if (ignore(kind, key) || semanticEqual(was[key], now[key])) continue;
      const change: FieldChange = { path: formatPath(['metadata', kind, key]), to: now[key] ?? null, rollout: Rollout.live, why: VM_LEVEL_WHY, reachesGuest: ReachesGuest.immediately };
      out.push(was[key] === undefined ? change : { ...change, from: was[key] });
    }
  }
  return out;
}
