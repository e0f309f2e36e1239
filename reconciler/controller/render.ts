/**
 * A sync for people (stdout of `vmroll run` and `vmroll demo`): one line of counts, then only
 * what is new since the previous sync of this process.
 */
import { formatValue } from '../format.ts';
import { SyncState, formatSummary, stateOf } from '../plan/summary.ts';
import { type FieldRevert, ObservedOutcome, type VmPlanEntry } from '../rollout/index.ts';
import type { ReconcileReport } from './reconcile.ts';
import type { RestartLine, RestartReport } from './restarts.ts';

/** What a followed VM's line says once its guest runs the change, by what carried it. */
const ARRIVED: Record<'migration' | 'eviction' | 'restart', string> = {
  migration: 'effective: a live migration carried the change to the guest',
  eviction: 'effective: the guest was restarted by eviction and runs the change',
  restart: 'effective: the guest was restarted and runs the change',
};

/** The states a lagging guest gives a VM (a VM awaiting restart is listed as such). */
const GUEST_STATES: ReadonlySet<SyncState> = new Set([SyncState.migrating, SyncState.queued, SyncState.blocked, SyncState.evicted]);

/** Width of the verb column of {@link renderReport}. */
const VERB = 8;

/** A word of the verb column, padded to {@link VERB} and never touching what follows. */
function col(word: string): string {
  return word.length < VERB ? word.padEnd(VERB) : `${word} `;
}

/** The lines of one field change: rollout, path, from → to, then every reason for it. */
function changeLines(vm: VmPlanEntry, indent: string): string[] {
  const lines: string[] = [];
  for (const c of vm.changes) {
    const reasons = vm.reasons.filter((r) => r.path === c.path).map((r) => r.message);
    // `why` often repeats the reason; said once is enough.
    const why = c.why !== undefined && !reasons.includes(c.why) ? ` (${c.why})` : '';
    lines.push(`${indent}${col(c.rollout)}${c.path}: ${formatValue(c.from, 40)} → ${formatValue(c.to, 40)}${why}`);
    for (const message of reasons) lines.push(`${indent}${''.padEnd(VERB)}because ${message}`);
  }
  return lines;
}

function revertText(r: FieldRevert): string {
  return `${r.path} ${formatValue(r.from, 40)} → ${formatValue(r.to, 40)} (back to what the VM runs)`;
}

function conditionText(vm: VmPlanEntry): string {
  switch (vm.condition) {
    case 'set':
      return ` · RestartRequired set: "${vm.conditionMessage ?? ''}"`;
    case 'kept':
      return ` · RestartRequired kept: "${vm.conditionMessage ?? ''}"`;
    case 'cleared':
      return ' · RestartRequired cleared';
    default:
      return '';
  }
}

/**
 * Renders one sync for people (stdout). The first line counts every VM by state; below it come only
 * the errors that are new since the previous sync of this process, and the VMs the sync changed:
 * per VM the fields it changed since the previous synced commit, live or staged with every reason,
 * and the fields it reverted. A VM that stays awaiting restart is listed when it enters that state
 * (or on the first sync of the process) and afterwards only counted.
 */
export function renderReport(r: ReconcileReport): string {
  const lines = [`sync ${r.commit.slice(0, 12)}: ${formatSummary(r.summary)} (${Math.round(r.timings.total)} ms, ${r.writes} write${r.writes === 1 ? '' : 's'})`];
  for (const e of r.newErrors) lines.push(`  ${col('error')}${e.file}${e.line !== null ? `:${e.line}` : ''}: ${e.message}`);
  for (const w of r.newWarnings) lines.push(`  ${col('warning')}${w.file}:${w.line}: ${w.message}`);
  // Only the listed VMs' entries are looked up: a one-VM sync of a large fleet lists a handful.
  const listedNames = new Set(r.outcomes.filter((o) => o.listed).map((o) => o.name));
  const entries = new Map<string, VmPlanEntry>();
  for (const vm of r.plan.vms) if (listedNames.has(vm.name)) entries.set(`${vm.namespace}/${vm.name}`, vm);
  const indent = `  ${''.padEnd(VERB)}`;
  for (const o of r.outcomes) {
    if (!o.listed) continue;
    const key = `${o.namespace}/${o.name}`;
    const vm = entries.get(key);
    if (vm === undefined) continue;
    if (vm.action === 'delete' || vm.action === 'create') {
      lines.push(`  ${col(vm.action)}${key}${conditionText(vm)}`);
      continue;
    }
    if (vm.action === 'none' && o.arrived !== undefined) {
      // A VM followed since an earlier sync: its guest now runs the change.
      lines.push(`  ${col(o.arrived === 'migration' ? 'live' : 'ready')}${key} · ${ARRIVED[o.arrived]}`);
      continue;
    }
    if (vm.action === 'none' && o.guest !== undefined && GUEST_STATES.has(o.state)) {
      // A followed VM whose guest moved on (queued → migrating, evicted) without a write.
      lines.push(`  ${col(o.state)}${key} · ${o.guest.summary}`);
      continue;
    }
    if (vm.action === 'none') {
      // Listed without a write: it entered (or this process first saw) awaiting restart, or left it.
      lines.push(
        vm.restartRequired
          ? `  ${col('awaiting')}${key} · RestartRequired: "${vm.conditionMessage ?? ''}"`
          : `  ${col('ready')}${key} · RestartRequired gone without a write from vmroll (the VM was restarted or stopped)`,
      );
      if (vm.restartRequired) lines.push(...changeLines(vm, indent));
      continue;
    }
    const [only] = o.reverts;
    // A revert whose released change is still on its way to the guest is counted by that, and listed as the revert it is.
    const reverted = o.state === SyncState.reverted || (o.reverts.length > 0 && stateOf(vm, o.reverts) === SyncState.reverted);
    if (reverted && o.reverts.length === 1 && only !== undefined) {
      const condition = vm.condition === 'cleared' ? ' · RestartRequired cleared' : '';
      lines.push(`  ${col('revert')}${key}${condition}: ${revertText(only)}`);
    } else {
      lines.push(`  ${col(reverted ? 'revert' : 'update')}${key}${conditionText(vm)}`);
      for (const rv of o.reverts) lines.push(`${indent}${col('revert')}${revertText(rv)}`);
    }
    lines.push(...changeLines(vm, indent));
    if (o.arrived !== undefined) lines.push(`${indent}${col('guest')}${ARRIVED[o.arrived]}`);
    else if (o.guest !== undefined && o.guest.outcome !== ObservedOutcome.effective) lines.push(`${indent}${col('guest')}${o.guest.summary}`);
  }
  for (const o of r.plan.orphans ?? []) lines.push(`  orphan ${o.namespace}/${o.name}: ${o.message}`);
  if (r.restarts !== undefined) lines.push(...restartLines(r.restarts));
  return lines.join('\n');
}

/** The verb of a restart line: what happened in this sync, else where the VM stands. */
function restartVerb(l: RestartLine): string {
  if (l.event === 'failed' || l.kind === 'failed') return 'failed';
  if (l.event === 'restarted' || l.event === 'resumed') return 'restart';
  if (l.event === 'succeeded') return 'back';
  return l.kind === 'restarting' ? 'booting' : 'waits';
}

/**
 * The restart step's lines: every VM it acted on or that waits for vmroll (a window, a slot, a
 * stopped group), each with the planner's text; VMs that wait for a person (policy manual,
 * protected, runStrategy) are counted on one line, as awaiting restart is in the summary.
 */
export function restartLines(rr: RestartReport): string[] {
  const person = { manual: 'awaiting a manual restart', protected: 'protected (vmroll.dev/restart: never)', never: 'with runStrategy Halted or Manual' } as const;
  const out: string[] = [];
  const byPerson = new Map<string, number>();
  for (const l of rr.vms) {
    if (l.event === null && Object.hasOwn(person, l.kind)) {
      byPerson.set(l.kind, (byPerson.get(l.kind) ?? 0) + 1);
      continue;
    }
    if (l.event === null && (l.kind === 'done' || l.kind === 'notNeeded')) continue;
    out.push(`  ${col(restartVerb(l))}${l.namespace}/${l.name}: ${l.text}`);
  }
  const parts = (Object.keys(person) as Array<keyof typeof person>).filter((k) => byPerson.has(k)).map((k) => `${byPerson.get(k) ?? 0} ${person[k]}`);
  // Under the manual policy (the default) every such VM is already the summary's "awaiting
  // restart": the line says something only where vmroll restarts the others.
  if (parts.length > 0 && rr.policy !== 'manual') out.push(`  ${col('manual')}restarts left to a person: ${parts.join(', ')}`);
  return out;
}
