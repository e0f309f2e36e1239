/**
 * Restart policies: the repository's (the `restart:` block of vmroll.yaml, checked here so that
 * configFile.ts can report `file:line`), and the one that applies to a VM after its annotations and
 * the protection marker.
 */
import { PROTECTED_VALUE, RestartAnnotation, type StringMap } from './annotations.ts';
import { CronError, parseCron } from './cron.ts';
import type { MaintenanceWindow } from './window.ts';
import { canonicalTimeZone } from './zone.ts';

/** When vmroll restarts a VM whose staged changes need a restart. */
export const RestartPolicy = {
  /** Never on its own: the change is reported and waits for a person (today's behaviour, the default). */
  manual: 'manual',
  /** As soon as a staged change needs it, within the budget. */
  onChange: 'onChange',
  /** Only inside a maintenance window, within the budget. */
  window: 'window',
} as const;
/** One of {@link RestartPolicy}. */
export type RestartPolicy = (typeof RestartPolicy)[keyof typeof RestartPolicy];

const POLICIES: readonly string[] = Object.values(RestartPolicy);

/** How many restarts a repository allows. */
export interface RestartBudget {
  /** At most this many restarts in progress at once (default 1). */
  concurrent: number;
  /** At most this many restarts started per window opening; null for no limit. */
  perWindow: number | null;
}

/** A repository's restart policy with every default filled in. */
export interface RestartPolicySpec {
  policy: RestartPolicy;
  windows: readonly MaintenanceWindow[];
  budget: RestartBudget;
  /** How long a restarted VM has to be Running and Ready again before it counts as failed. */
  healthTimeoutMs: number;
  /** Whether a PR that would restart a protected VM or exceed a window's budget fails `vmroll/plan`. */
  mergeGate: boolean;
}

/** The `restart:` block of vmroll.yaml as written (the schema has checked its shape). */
export interface RestartConfigBlock {
  policy?: string;
  windows?: ReadonlyArray<{ schedule: string; duration: string; timeZone?: string }>;
  budget?: { concurrent?: number; perWindow?: number };
  healthTimeout?: string;
  mergeGate?: boolean;
}

/** Default time a restarted VM has to come back Ready. */
export const DEFAULT_HEALTH_TIMEOUT_MS = 10 * 60_000;
/** A window longer than this is a mistake, not a maintenance window. */
export const MAX_WINDOW_MS = 31 * 86_400_000;

/** The policy of a repository that says nothing: manual, no windows, one at a time. */
export const MANUAL_POLICY: RestartPolicySpec = { policy: RestartPolicy.manual, windows: [], budget: { concurrent: 1, perWindow: null }, healthTimeoutMs: DEFAULT_HEALTH_TIMEOUT_MS, mergeGate: false };

/** One problem in a `restart:` block: the keys below the block, and what is wrong. */
export interface RestartConfigProblem {
  keys: Array<string | number>;
  message: string;
}

/** Parses `500ms`, `30s`, `5m`, `2h`, `1h30m` (the config schema's Duration); NaN when it is not one. */
function durationMs(text: string): number {
  if (!/^(\d+(\.\d+)?(ms|s|m|h))+$/.test(text)) return Number.NaN;
  let total = 0;
  for (const m of text.matchAll(/(\d+(?:\.\d+)?)(ms|s|m|h)/g)) total += Number(m[1]) * { ms: 1, s: 1000, m: 60_000, h: 3_600_000 }[m[2] as 'ms' | 's' | 'm' | 'h'];
  return total;
}

/** What is wrong with a `restart:` block beyond its shape: schedules, time zones, durations, budgets, a window policy without windows. */
export function restartConfigProblems(block: RestartConfigBlock): RestartConfigProblem[] {
  const out: RestartConfigProblem[] = [];
  if (block.policy !== undefined && !POLICIES.includes(block.policy)) out.push({ keys: ['policy'], message: `must be one of ${POLICIES.join(', ')}` });
  if (block.policy === RestartPolicy.window && (block.windows ?? []).length === 0) out.push({ keys: ['policy'], message: 'window needs at least one entry under windows' });
  block.windows?.forEach((w, i) => {
    try {
      parseCron(w.schedule);
    } catch (e) {
      if (!(e instanceof CronError)) throw e;
      out.push({ keys: ['windows', i, 'schedule'], message: `not a cron schedule: ${e.message}` });
    }
    const d = durationMs(w.duration);
    if (!(d > 0)) out.push({ keys: ['windows', i, 'duration'], message: 'must be a duration above zero, such as 30m or 2h' });
    else if (d > MAX_WINDOW_MS) out.push({ keys: ['windows', i, 'duration'], message: 'must be at most 31 days' });
    if (w.timeZone !== undefined && canonicalTimeZone(w.timeZone) === null) out.push({ keys: ['windows', i, 'timeZone'], message: `"${w.timeZone}" is not a time zone this runtime knows (an IANA name such as Europe/Berlin or UTC)` });
  });
  for (const key of ['concurrent', 'perWindow'] as const) {
    const n = block.budget?.[key];
    if (n !== undefined && !(Number.isInteger(n) && n >= 1)) out.push({ keys: ['budget', key], message: 'must be a whole number of at least 1' });
  }
  if (block.healthTimeout !== undefined && !(durationMs(block.healthTimeout) > 0)) out.push({ keys: ['healthTimeout'], message: 'must be a duration above zero, such as 10m' });
  return out;
}

/** The policy a checked `restart:` block declares, defaults filled in (manual when there is no block). */
export function restartPolicyOf(block: RestartConfigBlock | undefined): RestartPolicySpec {
  if (block === undefined) return MANUAL_POLICY;
  const problems = restartConfigProblems(block);
  if (problems.length > 0) throw new Error(`restart policy not checked: ${problems.map((p) => `${p.keys.join('.')}: ${p.message}`).join('; ')}`);
  return {
    policy: (block.policy as RestartPolicy | undefined) ?? RestartPolicy.manual,
    windows: (block.windows ?? []).map((w) => ({ schedule: parseCron(w.schedule), durationMs: durationMs(w.duration), timeZone: canonicalTimeZone(w.timeZone ?? 'UTC') ?? 'UTC' })),
    budget: { concurrent: block.budget?.concurrent ?? 1, perWindow: block.budget?.perWindow ?? null },
    healthTimeoutMs: block.healthTimeout !== undefined ? durationMs(block.healthTimeout) : DEFAULT_HEALTH_TIMEOUT_MS,
    mergeGate: block.mergeGate ?? false,
  };
}

/** The policy that applies to one VM. */
export interface VmRestartPolicy {
  policy: RestartPolicy;
  /** Where the policy comes from: the repository, or the VM's `vmroll.dev/restart-policy`. */
  source: 'repository' | 'annotation';
  /** `vmroll.dev/restart: never` as a label or an annotation: no restart by vmroll, whatever the policy. */
  protected: boolean;
  /** The VM's restart group: `vmroll.dev/restart-group`, else its namespace. */
  group: string;
  /** What is wrong with the VM's restart annotations (each already decided the safe way), for the report. */
  problems: string[];
}

/** The policy of one VM: the repository's, overridden by its annotation, with the protection marker read from labels and annotations. */
export function vmRestartPolicy(repository: RestartPolicySpec, vm: { namespace: string; labels?: StringMap | undefined; annotations?: StringMap | undefined }): VmRestartPolicy {
  const problems: string[] = [];
  const marks = [vm.labels?.[RestartAnnotation.protect], vm.annotations?.[RestartAnnotation.protect]].filter((v): v is string => v !== undefined);
  // Any value but `never` is a mistake in a marker that exists only to protect: it protects too, and says so.
  const odd = marks.find((v) => v !== PROTECTED_VALUE);
  if (odd !== undefined) problems.push(`${RestartAnnotation.protect}: "${odd}" is not "${PROTECTED_VALUE}"; the VM is treated as protected`);
  let policy = repository.policy;
  let source: VmRestartPolicy['source'] = 'repository';
  const override = vm.annotations?.[RestartAnnotation.policy];
  if (override !== undefined) {
    if (!POLICIES.includes(override)) {
      policy = RestartPolicy.manual;
      source = 'annotation';
      problems.push(`${RestartAnnotation.policy}: "${override}" is not one of ${POLICIES.join(', ')}; the VM is treated as manual`);
    } else if (override === RestartPolicy.window && repository.windows.length === 0) {
      policy = RestartPolicy.manual;
      source = 'annotation';
      problems.push(`${RestartAnnotation.policy}: window, but the repository's restart policy declares no windows; the VM is treated as manual`);
    } else {
      policy = override as RestartPolicy;
      source = 'annotation';
    }
  }
  const group = vm.annotations?.[RestartAnnotation.group];
  return { policy, source, protected: marks.length > 0, group: group !== undefined && group !== '' ? group : vm.namespace, problems };
}
