/**
 * Plans for people: the sticky pull-request comment (GitHub-flavoured markdown, under GitHub's
 * 65,536-character limit), its summary line and status description, and the terminal table of
 * `vmroll plan`. Every value that comes from a manifest or the cluster is escaped, so a field
 * value can neither break the table nor inject HTML, mentions or issue links.
 */
import { ObservedOutcome, PlanAction, ReachesGuest, Rollout, TakesEffect, type VmPlan, type VmPlanEntry } from '../rollout/index.ts';
import type { ManifestError } from '../rollout/plan.ts';
import type { ManifestWarning } from '../source/manifests.ts';
import type { VmOrphan } from '../apply/prune.ts';
import { formatValue } from '../format.ts';
import { PowerChange } from '../plan/planCommit.ts';
import { type Summary, countPlan } from '../plan/summary.ts';
import { PLAN_MARKER } from './reporter.ts';

/** GitHub refuses comment bodies longer than this many characters. */
export const COMMENT_LIMIT = 65_536;

/** More VM sections than this are folded into `<details>` blocks. */
export const FOLD_AFTER = 5;

/** Changes shown per VM; the rest are counted in one row. */
const MAX_ROWS_PER_VM = 100;
/** Manifest errors listed; the rest are counted in one line. */
const MAX_ERRORS = 100;
/** Parts of the comment a VM's section, the error list and the outcome table may each take at most (escaping can multiply lengths). */
const SECTION_SHARE = 1 / 3;
const ERRORS_SHARE = 1 / 4;
const OUTCOME_SHARE = 1 / 3;
/** Characters of a field value shown in a cell (cut before escaping, so no entity is ever split). */
const VALUE_CHARS = 80;

/** The sync that applied a merged pull request, as the comment's outcome shows it. */
export interface PlanOutcome {
  /** The commit the sync applied (it contains the pull request's head). */
  commit: string;
  /** The sync's plan (ReconcileReport.plan). */
  plan: VmPlan;
}

/** What became of one VM of the reviewed plan after merge and sync. */
export const VmOutcome = {
  /** Every change reached the VM and its running guest. */
  liveApplied: 'live-applied',
  /** Applied to the VM; some changes wait for the next restart. */
  staged: 'staged, awaiting restart',
  /** The write failed, or the VM's file failed to load in the synced commit. */
  failed: 'failed',
  created: 'created',
  deleted: 'deleted',
  /** Nothing was left to write: an earlier sync had applied it. */
  inSync: 'in sync',
  /** Applied; a live migration is carrying a live change to the guest. */
  migrating: 'applied, migrating to the guest',
  /** Applied; the migration (or eviction) that carries a live change has yet to start. */
  queued: 'applied, queued',
  /** Applied to the VMI; no migration will carry it, so the guest gets it at the next restart. */
  blocked: 'patched, not in the guest until a restart',
  /** Applied; KubeVirt's workload updater evicted the VMI to carry it: the guest restarts. */
  evicted: 'applied, restarted by eviction',
  /** Applied; vmroll restarted the VM under the repository's restart policy (issued, or back Running and Ready). */
  restarted: 'applied, restarted by vmroll',
  /** Applied; vmroll's restart of the VM failed (its restart group is stopped). */
  restartFailed: 'applied, restart failed',
  /** The synced commit's plan does not mention the VM (e.g. prune is off, or a later commit changed it again). */
  notApplied: 'not applied',
} as const;
export type VmOutcome = (typeof VmOutcome)[keyof typeof VmOutcome];

/** Input of {@link renderPlanComment}. */
export interface PlanCommentInput {
  plan: VmPlan;
  /** Default: counted from the plan (and `power`). */
  summary?: Summary;
  /** runStrategy stops and starts by `namespace/name` (planCommit's `power`). */
  power?: Record<string, string>;
  /** Defining file and line by `namespace/name` (planCommit's `sources`). */
  sources?: Record<string, { file: string; line: number | null }>;
  /** The repository as it may be shown (no credentials). */
  repo?: string;
  /** Branch the commit is on (the pull request's head branch). */
  ref?: string;
  /** Commit planned; default `plan.commit`. */
  sha?: string;
  prNumber?: number;
  /** Set after merge and sync: the comment then reports what happened. */
  outcome?: PlanOutcome;
  /** What the plan was made against (API server and context, or the simulator); default: "the cluster vmroll syncs to". */
  target?: string;
  /** Default {@link COMMENT_LIMIT}. */
  maxLength?: number;
  /** Set when the repository's restart policy turns the merge gate on: why it fails `vmroll/plan` (empty: it passes). */
  restartGate?: readonly string[];
}

const ENTITIES: Record<string, string> = {
  '&': '&amp;',
  '<': '&lt;',
  '>': '&gt;',
  '|': '&#124;',
  '`': '&#96;',
  '\\': '&#92;',
  '*': '&#42;',
  _: '&#95;',
  '[': '&#91;',
  ']': '&#93;',
  '~': '&#126;',
  '@': '&#64;',
  '#': '&#35;',
  '!': '&#33;',
  $: '&#36;',
};

/**
 * Makes text safe in a table cell, a list item or inline HTML: no HTML, no table breaks, no code
 * spans, emphasis, links, mentions or issue references; line breaks become spaces.
 */
export function escapeMarkdown(text: string): string {
  return text.replace(/\r\n|\r|\n/g, ' ').replace(/[&<>|`\\*_[\]~@#!$]/g, (c) => ENTITIES[c] ?? c);
}

function code(text: string): string {
  return `<code>${escapeMarkdown(text)}</code>`;
}

function value(v: unknown): string {
  return code(formatValue(v, VALUE_CHARS));
}

function short(sha: string): string {
  return sha.slice(0, 7);
}

function vmKey(vm: { namespace: string; name: string }): string {
  return `${vm.namespace}/${vm.name}`;
}

function plural(n: number, one: string, many = `${one}s`): string {
  return `${n} ${n === 1 ? one : many}`;
}

/**
 * A {@link Summary} as a pull request reads it: an update that leaves RestartRequired and one staged
 * on a running VM are both "staged until restart", a VM the plan leaves alone is "in sync" even when
 * an earlier change still awaits a restart, and a revert is live.
 */
function prCounts(s: Summary): { live: number; viaMigration: number; blocked: number; evicted: number; staged: number; inSync: number } {
  const pending = s.pendingRestart ?? 0;
  return {
    live: s.liveUpdated + (s.reverted ?? 0),
    viaMigration: (s.migrating ?? 0) + (s.queued ?? 0),
    blocked: s.blocked ?? 0,
    evicted: s.evicted ?? 0,
    staged: (s.awaitingRestart ?? 0) - pending + s.staged - (s.atNextStart ?? 0),
    inSync: s.inSync + pending,
  };
}

function blockedWords(s: Summary): string {
  const why = s.blockedWhy ?? [];
  return why.length > 0 ? `: ${why.join(', ')}` : '';
}

/** The counts as the summary line shows them: `2 live-updated · 1 hot-plug via live migration · 1 staged until restart · 1 created · 0 deleted`. */
export function summaryText(s: Summary): string {
  const c = prCounts(s);
  const parts = [`${c.live} live-updated`];
  if (c.viaMigration > 0) parts.push(`${c.viaMigration} hot-plug via live migration`);
  if (c.blocked > 0) parts.push(`${c.blocked} patched, not in the guest until a restart${blockedWords(s)}`);
  if (c.evicted > 0) parts.push(`${c.evicted} restarted by eviction`);
  parts.push(`${c.staged} staged until restart`);
  if ((s.atNextStart ?? 0) > 0) parts.push(`${s.atNextStart} at next start (not running)`);
  if ((s.restarting ?? 0) > 0) parts.push(`${s.restarting} stopped or started by runStrategy`);
  parts.push(`${s.created} created`, `${s.deleted} deleted`);
  if ((s.orphans ?? 0) > 0) parts.push(`${s.orphans} orphaned`);
  if (c.inSync > 0) parts.push(`${c.inSync} in sync`);
  if ((s.pendingRestart ?? 0) > 0) parts.push(`${s.pendingRestart} already awaiting restart`);
  if ((s.warnings ?? 0) > 0) parts.push(plural(s.warnings ?? 0, 'warning'));
  if (s.errors > 0) parts.push(plural(s.errors, 'error'));
  return parts.join(' · ');
}

/** The comment's first visible line: `**vmroll plan** for `abc1234`: 2 live-updated · …`. */
export function summaryLine(summary: Summary, sha: string | null): string {
  return `**vmroll plan** for ${sha === null ? 'files' : `<code>${escapeMarkdown(short(sha))}</code>`}: ${summaryText(summary)}`;
}

/** A commit status description (at most 140 characters): `2 live · 1 live via migration · 1 staged until restart · 1 created`. */
export function statusDescription(s: Summary): string {
  const c = prCounts(s);
  const parts: string[] = [];
  if (s.errors > 0) parts.push(plural(s.errors, 'error'));
  if (c.live > 0) parts.push(`${c.live} live`);
  if (c.viaMigration > 0) parts.push(`${c.viaMigration} live via migration`);
  if (c.blocked > 0) parts.push(`${c.blocked} blocked until restart${blockedWords(s)}`);
  if (c.evicted > 0) parts.push(`${c.evicted} restarted by eviction`);
  if (c.staged > 0) parts.push(`${c.staged} staged until restart`);
  if ((s.restarting ?? 0) > 0) parts.push(`${s.restarting} stopped/started`);
  if (s.created > 0) parts.push(`${s.created} created`);
  if (s.deleted > 0) parts.push(`${s.deleted} deleted`);
  if ((s.orphans ?? 0) > 0) parts.push(`${s.orphans} orphaned`);
  if ((s.atNextStart ?? 0) > 0) parts.push(`${s.atNextStart} at next start`);
  if ((s.warnings ?? 0) > 0) parts.push(plural(s.warnings ?? 0, 'warning'));
  if (parts.length === 0) parts.push(c.inSync > 0 ? `no changes · ${c.inSync} in sync` : 'no VM changes');
  const text = parts.join(' · ');
  return text.length <= 140 ? text : `${text.slice(0, 139)}…`;
}

/** The `vmroll/plan` description when the restart merge gate fails: its first reason, and how many more. */
export function gateDescription(reasons: readonly string[]): string {
  const more = reasons.length > 1 ? ` (+${reasons.length - 1} more)` : '';
  const text = `restart merge gate: ${reasons[0] ?? ''}`;
  return text.length + more.length <= 140 ? `${text}${more}` : `${text.slice(0, 139 - more.length)}…${more}`;
}

type PlannedRestarts = NonNullable<VmPlan['restarts']>;

/** The restart lines of a plan (before the merge): per VM, whether and when the repository's policy restarts it; then the merge gate. */
function restartLines(restarts: PlannedRestarts | undefined, gate: readonly string[] | undefined, budget: number): string[] {
  if (restarts === undefined || (restarts.vms.length === 0 && (gate === undefined || gate.length === 0))) return [];
  const lines = [`#### Restarts (policy ${restarts.policy})`, ''];
  const items = restarts.vms.map((l) => `- ${code(vmKey(l))}: ${escapeMarkdown(l.text)}`);
  lines.push(...takeWithin(items, budget, (n) => `- … ${plural(n, 'more VM')} not shown`), '');
  if (gate !== undefined) {
    if (gate.length === 0) lines.push('**Merge gate** (<code>restart.mergeGate</code>): passes.', '');
    else {
      lines.push(`**Merge gate** (<code>restart.mergeGate</code>): fails <code>vmroll/plan</code>:`, '');
      for (const r of gate) lines.push(`- ${escapeMarkdown(r)}`);
      lines.push('');
    }
  }
  return lines;
}

/** A restart line after the merge: the event and when it happened, else the planner's line. */
function restartOutcomeText(l: PlannedRestarts['vms'][number]): string {
  if (l.event === null || l.at === undefined) return l.text;
  const at = `${l.at.slice(0, 16).replace('T', ' ')} UTC`;
  if (l.event === 'restarted' || l.event === 'resumed') return `restart issued by vmroll at ${at} (${l.text})`;
  return `${l.text} (${at})`;
}

/** What the sync after the merge did about restarts of the reviewed VMs, with when. */
function restartOutcomeLines(restarts: PlannedRestarts | undefined, reviewed: ReadonlySet<string>, budget: number): string[] {
  const mine = (restarts?.vms ?? []).filter((l) => reviewed.has(vmKey(l)));
  if (restarts === undefined || mine.length === 0) return [];
  const items = mine.map((l) => `- ${code(vmKey(l))}: ${escapeMarkdown(restartOutcomeText(l))}`);
  return [`Restarts (policy ${restarts.policy}):`, '', ...takeWithin(items, budget, (n) => `- … ${plural(n, 'more VM')} not shown`), ''];
}

function stagedCount(vm: VmPlanEntry): number {
  return vm.changes.filter((c) => c.rollout === Rollout.staged).length;
}

/** Restarts and stops first: they are what a reviewer must not miss. */
function weight(vm: VmPlanEntry, power: Record<string, string>): number {
  if (power[vmKey(vm)] !== undefined) return 0;
  if (vm.action === PlanAction.update && (vm.restartRequired || stagedCount(vm) > 0)) return 1;
  if (vm.action === PlanAction.delete) return 2;
  if (vm.action === PlanAction.update) return 3;
  if (vm.action === PlanAction.create) return 4;
  return 5;
}

/** How the live changes that need a migration reach the guest, in the words a reviewer reads in the title; null when none does. */
function guestPath(vm: VmPlanEntry): string | null {
  const reach = new Set(vm.changes.map((c) => c.reachesGuest));
  if (reach.has(ReachesGuest.eviction)) return 'restarted by eviction';
  if (reach.has(ReachesGuest.awaitingRestart)) return 'not in the guest until a restart';
  if (reach.has(ReachesGuest.liveMigration)) return 'hot-plug via live migration';
  return null;
}

function headline(vm: VmPlanEntry, power: Record<string, string>): string {
  const bits: string[] = [vm.action];
  const staged = stagedCount(vm);
  const live = vm.changes.length - staged;
  if (vm.action === PlanAction.update) {
    if (live > 0) bits.push(`${live} live`);
    if (staged > 0) bits.push(`${staged} staged`);
    const path = guestPath(vm);
    if (path !== null) bits.push(path);
  }
  const p = power[vmKey(vm)];
  if (p === PowerChange.stop) bits.push('runStrategy stops it');
  if (p === PowerChange.start) bits.push('runStrategy starts it');
  if (vm.restartRequired) bits.push('restart required');
  return bits.join(' · ');
}

/**
 * The items that fit in `budget` characters (one newline each), then one line counting the rest:
 * lists are cut between whole items, never inside one.
 */
function takeWithin(items: readonly string[], budget: number, more: (n: number) => string, max = Number.POSITIVE_INFINITY): string[] {
  const out: string[] = [];
  let used = 0;
  for (let i = 0; i < items.length; i++) {
    const item = items[i] as string;
    const left = items.length - i - 1;
    const reserve = left > 0 ? more(left).length + 1 : 0;
    if (i >= max || used + item.length + 1 + reserve > budget) {
      out.push(more(items.length - i));
      return out;
    }
    out.push(item);
    used += item.length + 1;
  }
  return out;
}

function errorLines(errors: readonly ManifestError[], budget: number): string[] {
  const lines = errors.map((e) => {
    const where = `${e.file}${e.line !== null ? `:${e.line}` : ''}`;
    // The message names the field already; e.path stays in the JSON for tools.
    return `- ${code(where)}: ${escapeMarkdown(formatValue(e.message, 500))}`;
  });
  return takeWithin(lines, budget, (n) => `- … ${plural(n, 'more error')} not shown`, MAX_ERRORS);
}

function warningLines(warnings: readonly ManifestWarning[], budget: number): string[] {
  const lines = warnings.map((w) => `- ${code(`${w.file}:${w.line}`)}: ${escapeMarkdown(formatValue(w.message, 500))}`);
  return takeWithin(lines, budget, (n) => `- … ${plural(n, 'more warning')} not shown`, MAX_ERRORS);
}

/** The body of one VM's section: its facts, the table of changes, every restart reason, and what waits. */
function vmBody(vm: VmPlanEntry, power: Record<string, string>, sources: Record<string, { file: string; line: number | null }>, budget: number): string[] {
  const key = vmKey(vm);
  const lines: string[] = [];
  const src = sources[key];
  const facts = [`strategy ${vm.strategy}`, `KubeVirt ${escapeMarkdown(vm.kubevirt.version ?? 'unknown')} (model ${escapeMarkdown(vm.kubevirt.model)})`];
  if (src !== undefined) facts.unshift(`${vm.action === PlanAction.delete ? 'was defined in' : 'from'} ${code(`${src.file}${src.line !== null ? `:${src.line}` : ''}`)}`);
  lines.push(facts.join(' · '), '');
  if (vm.action === PlanAction.create) lines.push('New VirtualMachine: created as written; a running runStrategy boots it with this spec.', '');
  if (vm.action === PlanAction.delete) {
    lines.push('Pruned: this repository applied it and the commit no longer defines it. vmroll deletes the VM, and KubeVirt stops its running instance.', '');
  }
  const p = power[key];
  if (p === PowerChange.stop) lines.push('**runStrategy stops the running instance**: the guest goes down when this is applied; staged changes take effect at the next start.', '');
  if (p === PowerChange.start) lines.push('**runStrategy starts the VM**: it boots with every change below.', '');
  if (vm.changes.length > 0) {
    lines.push('| Field | From → To | Rollout | Restart? | Why |', '|---|---|---|---|---|');
    const rows = vm.changes.map((c) => {
      const staged = c.rollout === Rollout.staged;
      // Nothing runs: the change waits for the VM's next start, and there is nothing to restart.
      const restart = c.takesEffect === TakesEffect.nextStart ? 'no (not running: next start)' : staged ? 'yes' : 'no';
      return `| ${code(c.path)} | ${value(c.from)} → ${value(c.to)} | ${staged ? 'staged' : 'live'} | ${restart} | ${escapeMarkdown(c.why ?? '')} |`;
    });
    // The reasons below are listed in full, so the table gives way first.
    const reasonChars = vm.reasons.reduce((n, r) => n + r.path.length + r.message.length + 40, 0);
    lines.push(...takeWithin(rows, Math.max(budget / 2, budget - reasonChars), (n) => `| … | ${plural(n, 'more change')} not shown | | | |`, MAX_ROWS_PER_VM), '');
  } else if (vm.action === PlanAction.update) {
    lines.push('No field of the running instance changes (labels, annotations or ownership only).', '');
  }
  // Only when the guest is disrupted or a live change never reaches it: the table says the rest.
  const blocked = vm.changes.some((c) => c.reachesGuest === ReachesGuest.awaitingRestart);
  if (vm.disruption !== undefined && (vm.disruption.kind !== 'none' || blocked)) lines.push(`**Guest**: ${escapeMarkdown(vm.disruption.summary)}`, '');
  if (vm.observed !== undefined && vm.observed.outcome !== ObservedOutcome.effective) lines.push(`**Observed**: ${escapeMarkdown(vm.observed.summary)}`, '');
  if (vm.restartRequired) {
    lines.push(`**RestartRequired** (${vm.condition}), with KubeVirt's message: "${escapeMarkdown(vm.conditionMessage ?? '')}"`, '');
  } else if (vm.condition === 'cleared') {
    lines.push('**RestartRequired** is cleared: the VM matches its running instance again.', '');
  }
  if (vm.reasons.length > 0) {
    lines.push(`Restart reasons (${vm.reasons.length}):`, '');
    const reasons = vm.reasons.map((r) => `- ${code(r.path)}: ${escapeMarkdown(r.message)}`);
    lines.push(...takeWithin(reasons, budget / 2, (n) => `- … ${plural(n, 'more reason')} not shown: the comment is limited in length`), '');
  }
  if (vm.waiting.length > 0) {
    lines.push('Waiting (goes live without a restart once KubeVirt can apply it):', '');
    for (const w of vm.waiting) lines.push(`- ${code(w.path)}: ${escapeMarkdown(w.message)}`);
    lines.push('');
  }
  return lines;
}

function section(vm: VmPlanEntry, power: Record<string, string>, sources: Record<string, { file: string; line: number | null }>, folded: boolean, budget: number): string {
  const body = vmBody(vm, power, sources, budget);
  const title = `${escapeMarkdown(vmKey(vm))} · ${escapeMarkdown(headline(vm, power))}`;
  // Every block ends with a blank line, so the next one never continues a table or a list.
  if (folded) return `${[`<details><summary><b>${title}</b></summary>`, '', ...body, '</details>', ''].join('\n')}\n`;
  return `${[`#### ${title}`, '', ...body].join('\n')}\n`;
}

/** Joins head, as many whole sections as fit, a count of the rest, and the tail, within `limit`. */
function fit(head: string, sections: string[], tail: string, limit: number, noun: string): string {
  const room = limit - head.length - tail.length;
  const kept: string[] = [];
  let used = 0;
  for (let i = 0; i < sections.length; i++) {
    const s = sections[i] as string;
    const rest = sections.length - i - 1;
    const note = rest > 0 ? `_… ${plural(rest, `more ${noun}`)} not shown: the comment is limited to ${limit} characters._\n\n`.length : 0;
    if (used + s.length + note > room) break;
    kept.push(s);
    used += s.length;
  }
  const missing = sections.length - kept.length;
  const note = missing > 0 ? `_… ${plural(missing, `more ${noun}`)} not shown: the comment is limited to ${limit} characters._\n\n` : '';
  const body = head + kept.join('') + note + tail;
  // Only a head alone over the limit (which MAX_ERRORS prevents) could get here: cut at a line end.
  return body.length <= limit ? body : `${body.slice(0, body.lastIndexOf('\n', limit - 2) + 1)}`;
}

function titleLine(input: PlanCommentInput, sha: string | null): string {
  const bits: string[] = [];
  if (input.prNumber !== undefined) bits.push(`pull request #${input.prNumber}`);
  if (input.ref !== undefined) bits.push(code(input.ref));
  if (sha !== null) bits.push(`at ${code(short(sha))}`);
  if (input.repo !== undefined) bits.push(`in ${code(input.repo)}`);
  return bits.join(' ');
}

/** What became of one VM, with its detail (condition message or error). */
export function outcomeOf(vm: VmPlanEntry, outcome: PlanOutcome, file: string | undefined): { outcome: VmOutcome; detail: string } {
  const key = vmKey(vm);
  const failure = outcome.plan.errors.find(
    (e) => (file !== undefined && e.file === file && /^(apply|prune) failed/.test(e.message)) || (e.file === key && /^prune failed/.test(e.message)),
  );
  if (failure !== undefined) return { outcome: VmOutcome.failed, detail: failure.message };
  const after = outcome.plan.vms.find((v) => v.namespace === vm.namespace && v.name === vm.name);
  if (after === undefined) {
    const loadError = file !== undefined ? outcome.plan.errors.find((e) => e.file === file) : undefined;
    if (loadError !== undefined) return { outcome: VmOutcome.failed, detail: `${file}${loadError.line !== null ? `:${loadError.line}` : ''}: ${loadError.message}` };
    return { outcome: VmOutcome.notApplied, detail: vm.action === PlanAction.delete ? 'not deleted by the sync (is prune on?)' : 'not in the synced plan' };
  }
  const restart = outcome.plan.restarts?.vms.find((l) => l.namespace === vm.namespace && l.name === vm.name);
  if (restart?.event === 'failed') return { outcome: VmOutcome.restartFailed, detail: restart.text };
  if (restart !== undefined && (restart.event === 'restarted' || restart.event === 'resumed' || restart.event === 'succeeded' || restart.kind === 'restarting')) return { outcome: VmOutcome.restarted, detail: restartOutcomeText(restart) };
  const guest = after.observed;
  if (guest?.restarted === true) return { outcome: VmOutcome.evicted, detail: guest.summary };
  if (guest !== undefined && guest.outcome !== ObservedOutcome.effective && after.action !== PlanAction.delete) {
    switch (guest.outcome) {
      case ObservedOutcome.migrating:
        return { outcome: VmOutcome.migrating, detail: guest.summary };
      case ObservedOutcome.queued:
        return { outcome: VmOutcome.queued, detail: guest.summary };
      case ObservedOutcome.blocked:
        return { outcome: VmOutcome.blocked, detail: guest.summary };
      default:
        return { outcome: VmOutcome.evicted, detail: guest.summary };
    }
  }
  switch (after.action) {
    case PlanAction.create:
      return { outcome: VmOutcome.created, detail: after.restartRequired ? (after.conditionMessage ?? '') : '' };
    case PlanAction.delete:
      return { outcome: VmOutcome.deleted, detail: '' };
    case PlanAction.update:
      return after.restartRequired
        ? { outcome: VmOutcome.staged, detail: `RestartRequired: ${after.conditionMessage ?? ''}` }
        : { outcome: VmOutcome.liveApplied, detail: guest !== undefined ? guest.summary : '' };
    default:
      if (after.restartRequired) return { outcome: VmOutcome.staged, detail: `RestartRequired: ${after.conditionMessage ?? ''}` };
      // Followed since the sync that applied it: its guest now runs the change.
      if (guest !== undefined) return { outcome: VmOutcome.liveApplied, detail: guest.summary };
      return { outcome: VmOutcome.inSync, detail: 'already applied by an earlier sync' };
  }
}

function outcomeHead(input: PlanCommentInput, outcome: PlanOutcome, changed: VmPlanEntry[], sha: string | null, title: string, limit: number): string {
  const sources = input.sources ?? {};
  const rows = changed.map((vm) => ({ vm, ...outcomeOf(vm, outcome, sources[vmKey(vm)]?.file) }));
  const count = (o: VmOutcome): number => rows.filter((r) => r.outcome === o).length;
  const parts = [
    `${count(VmOutcome.liveApplied)} live-applied`,
    `${count(VmOutcome.staged)} staged awaiting restart`,
    `${count(VmOutcome.failed)} failed`,
    `${count(VmOutcome.created)} created`,
    `${count(VmOutcome.deleted)} deleted`,
  ];
  for (const o of [VmOutcome.restartFailed, VmOutcome.restarted, VmOutcome.evicted, VmOutcome.blocked, VmOutcome.queued, VmOutcome.migrating]) if (count(o) > 0) parts.splice(1, 0, `${count(o)} ${o}`);
  if (count(VmOutcome.inSync) > 0) parts.push(`${count(VmOutcome.inSync)} already in sync`);
  if (count(VmOutcome.notApplied) > 0) parts.push(`${count(VmOutcome.notApplied)} not applied`);
  const lines = [
    PLAN_MARKER,
    `### vmroll: merged and synced${title === '' ? '' : ` · ${title}`}`,
    '',
    `**vmroll sync** of <code>${escapeMarkdown(short(outcome.commit))}</code>${sha !== null ? ` (contains <code>${escapeMarkdown(short(sha))}</code>)` : ''}: ${parts.join(' · ')}`,
    '',
  ];
  if (rows.length > 0) {
    lines.push('| VM | Outcome | Detail |', '|---|---|---|');
    const cells = rows.map((r) => `| ${code(vmKey(r.vm))} | ${r.outcome} | ${escapeMarkdown(formatValue(r.detail, 200))} |`);
    lines.push(...takeWithin(cells, limit * OUTCOME_SHARE, (n) => `| … | ${plural(n, 'more VM')} not shown | |`), '');
    lines.push(...restartOutcomeLines(outcome.plan.restarts, new Set(changed.map(vmKey)), limit * ERRORS_SHARE));
  } else {
    lines.push('The reviewed plan changed no VM.', '');
  }
  lines.push('<details><summary>The plan as reviewed before merge</summary>', '', summaryLine(input.summary ?? countPlan(input.plan, powerAsChanges(input.power)), sha), '');
  return `${lines.join('\n')}\n`;
}

function powerAsChanges(power: Record<string, string> | undefined): Record<string, PowerChange> {
  const out: Record<string, PowerChange> = {};
  for (const [k, v] of Object.entries(power ?? {})) if (v === PowerChange.stop || v === PowerChange.start) out[k] = v;
  return out;
}

/**
 * The sticky pull-request comment: the marker, the summary line, manifest errors, then one
 * section per VM the plan changes (folded when there are many), never longer than the limit.
 * With `outcome`, it reports what the sync after merge did, with the reviewed plan folded below.
 */
export function renderPlanComment(input: PlanCommentInput): string {
  const limit = input.maxLength ?? COMMENT_LIMIT;
  const plan = input.plan;
  const power = input.power ?? {};
  const sources = input.sources ?? {};
  const sha = input.sha ?? plan.commit;
  const summary = input.summary ?? countPlan(plan, powerAsChanges(power));
  const title = titleLine(input, sha);
  const changed = plan.vms
    .filter((vm) => vm.action !== PlanAction.none)
    .sort((a, b) => weight(a, power) - weight(b, power) || (vmKey(a) < vmKey(b) ? -1 : vmKey(a) > vmKey(b) ? 1 : 0));
  const folded = input.outcome !== undefined || changed.length > FOLD_AFTER;

  let head: string;
  if (input.outcome !== undefined) {
    head = outcomeHead(input, input.outcome, changed, sha, title, limit);
  } else {
    const lines = [PLAN_MARKER, `### vmroll plan${title === '' ? '' : ` · ${title}`}`, '', summaryLine(summary, sha), ''];
    if (plan.errors.length > 0) {
      lines.push(`#### ${plural(plan.errors.length, 'manifest error')}`, '', 'These files are not applied (and what they define is never pruned) until they load:', '');
      lines.push(...errorLines(plan.errors, limit * ERRORS_SHARE), '');
    }
    lines.push(...orphanLines(plan.orphans ?? [], limit * ERRORS_SHARE));
    if ((plan.warnings ?? []).length > 0) {
      const warnings = plan.warnings ?? [];
      lines.push(`#### ${plural(warnings.length, 'manifest warning')}`, '', 'Read and not applied as written (other kinds are skipped; unknown fields are ignored by KubeVirt):', '');
      lines.push(...warningLines(warnings, limit * ERRORS_SHARE), '');
    }
    lines.push(...restartLines(plan.restarts, input.restartGate, limit * ERRORS_SHARE));
    if (changed.length === 0) lines.push(plan.errors.length === 0 ? 'No VM changes: every VM this commit defines already matches the cluster.' : 'No VM changes besides the errors above.', '');
    head = `${lines.join('\n')}\n`;
  }
  if (input.outcome !== undefined && plan.errors.length > 0) {
    head += [`Manifest errors at review (${plan.errors.length}):`, '', ...errorLines(plan.errors, limit * ERRORS_SHARE), '', ''].join('\n');
  }
  const tail = [
    input.outcome !== undefined ? '</details>\n' : '',
    input.outcome !== undefined
      ? '<sub>vmroll edits this comment once more after each merge is synced.</sub>'
      : `<sub>Planned by vmroll against ${escapeMarkdown(input.target ?? 'the cluster vmroll syncs to')}; nothing is applied before the merge. Live: written to the running VM without a restart; where it needs a live migration to reach the guest, the VM says so under Guest. Staged: waits for the next restart (KubeVirt never restarts a VM by itself, but its workload updater may evict one).</sub>`,
    '',
  ].join('\n');
  const sections = changed.map((vm) => section(vm, power, sources, folded, limit * SECTION_SHARE));
  return fit(head, sections, tail, limit, 'VM');
}

/** The orphans section of the comment: VMs this repository applied that stay although Git no longer defines them. */
function orphanLines(orphans: readonly VmOrphan[], budget: number): string[] {
  if (orphans.length === 0) return [];
  const lines = [`#### ${plural(orphans.length, 'orphaned VM')}`, '', 'This repository applied these VMs and the commit no longer defines them; they stay in the cluster:', ''];
  let used = 0;
  for (const [i, o] of orphans.entries()) {
    const line = `- ${code(`${o.namespace}/${o.name}`)}: ${escapeMarkdown(o.message)}`;
    if (used + line.length > budget) {
      lines.push(`- … and ${orphans.length - i} more`);
      break;
    }
    used += line.length;
    lines.push(line);
  }
  lines.push('');
  return lines;
}

/** The plan for a terminal (`vmroll plan --output text`): summary, errors, then every VM the plan changes. */
export function renderPlanTable(plan: VmPlan, options: { summary?: Summary; power?: Record<string, string>; sources?: Record<string, { file: string; line: number | null }>; restartGate?: readonly string[] } = {}): string {
  const power = options.power ?? {};
  const summary = options.summary ?? countPlan(plan, powerAsChanges(power));
  const lines = [`vmroll plan for ${plan.commit === null ? 'files' : short(plan.commit)}: ${summaryText(summary)}`];
  for (const e of plan.errors) lines.push(`error ${e.file}${e.line !== null ? `:${e.line}` : ''}: ${e.path !== undefined ? `${e.path}: ` : ''}${e.message}`);
  for (const o of plan.orphans ?? []) lines.push(`orphan ${o.namespace}/${o.name}: ${o.message}`);
  for (const w of plan.warnings ?? []) lines.push(`warning ${w.file}:${w.line}: ${w.message}`);
  for (const l of plan.restarts?.vms ?? []) lines.push(`restart ${vmKey(l)}: ${l.text}`);
  if (options.restartGate !== undefined) lines.push(options.restartGate.length === 0 ? 'restart merge gate: passes' : `restart merge gate fails: ${options.restartGate.join('; ')}`);
  for (const vm of plan.vms) {
    if (vm.action === PlanAction.none && !vm.restartRequired) continue;
    const src = options.sources?.[vmKey(vm)];
    lines.push(`VM ${vmKey(vm)}: ${headline(vm, power)} · strategy ${vm.strategy} · KubeVirt ${vm.kubevirt.version ?? 'unknown'} (model ${vm.kubevirt.model})${src !== undefined ? ` · ${src.file}` : ''}`);
    if (vm.restartRequired) lines.push(`  RestartRequired: ${vm.condition} · "${vm.conditionMessage ?? ''}"`);
    const p = power[vmKey(vm)];
    if (p === PowerChange.stop) lines.push('  runStrategy stops the running instance');
    if (p === PowerChange.start) lines.push('  runStrategy starts the VM');
    if (vm.changes.length > 0) {
      const rows = vm.changes.map((c) => [c.path, `${formatValue(c.from)} → ${formatValue(c.to)}`, c.rollout, c.why ?? '']);
      const w0 = Math.max(...rows.map((r) => r[0]?.length ?? 0), 5);
      const w1 = Math.max(...rows.map((r) => r[1]?.length ?? 0), 9);
      lines.push(`  ${'FIELD'.padEnd(w0)}  ${'FROM → TO'.padEnd(w1)}  ${'ROLLOUT'.padEnd(7)}  WHY`);
      for (const r of rows) lines.push(`  ${(r[0] ?? '').padEnd(w0)}  ${(r[1] ?? '').padEnd(w1)}  ${(r[2] ?? '').padEnd(7)}  ${r[3] ?? ''}`);
    }
    if (vm.reasons.length > 0) {
      lines.push('  restart reasons:');
      for (const r of vm.reasons) lines.push(`    ${r.path}: ${r.message}`);
    }
    for (const w of vm.waiting) lines.push(`  waiting: ${w.path}: ${w.message}`);
  }
  return lines.join('\n');
}
