/**
 * The cron-style schedule of a maintenance window: five fields (minute hour day-of-month month
 * day-of-week) with lists, ranges, steps and names (JAN–DEC, SUN–SAT), plus @hourly, @daily,
 * @weekly, @monthly, @yearly. Day-of-month and day-of-week combine as in Vixie cron: when both are
 * restricted (neither starts with `*`) a day matches either; otherwise both must match.
 */

/** A schedule that cannot be parsed; `message` names the field and what is wrong with it. */
export class CronError extends Error {
  override readonly name = 'CronError';
  readonly code = 'CronError';
  constructor(message: string) {
    super(message);
  }
}

/** A parsed schedule: the allowed values of each field, as sorted lists. */
export interface CronSchedule {
  /** The text it was parsed from, trimmed. */
  text: string;
  minutes: readonly number[];
  hours: readonly number[];
  /** 1–31. */
  daysOfMonth: readonly number[];
  /** 1–12. */
  months: readonly number[];
  /** 0–6, 0 = Sunday (7 is read as 0). */
  daysOfWeek: readonly number[];
  /** Day-of-month field starts with `*`: it does not restrict on its own (the OR rule). */
  domStar: boolean;
  /** Day-of-week field starts with `*`. */
  dowStar: boolean;
}

interface FieldSpec {
  name: string;
  min: number;
  max: number;
  names?: readonly string[];
}

const FIELDS: readonly FieldSpec[] = [
  { name: 'minute', min: 0, max: 59 },
  { name: 'hour', min: 0, max: 23 },
  { name: 'day-of-month', min: 1, max: 31 },
  { name: 'month', min: 1, max: 12, names: ['JAN', 'FEB', 'MAR', 'APR', 'MAY', 'JUN', 'JUL', 'AUG', 'SEP', 'OCT', 'NOV', 'DEC'] },
  // 7 is Sunday too, as in every cron.
  { name: 'day-of-week', min: 0, max: 7, names: ['SUN', 'MON', 'TUE', 'WED', 'THU', 'FRI', 'SAT'] },
];

const MACROS: Readonly<Record<string, string>> = {
  '@yearly': '0 0 1 1 *',
  '@annually': '0 0 1 1 *',
  '@monthly': '0 0 1 * *',
  '@weekly': '0 0 * * 0',
  '@daily': '0 0 * * *',
  '@midnight': '0 0 * * *',
  '@hourly': '0 * * * *',
};

/** Longest day-of-month of each month (February in a leap year). */
const MONTH_DAYS = [31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31] as const;

function parseValue(token: string, spec: FieldSpec, field: string): number {
  const upper = token.toUpperCase();
  const named = spec.names?.indexOf(upper) ?? -1;
  if (named >= 0) return spec.name === 'month' ? named + 1 : named;
  if (!/^\d+$/.test(token)) {
    const hint = spec.names !== undefined ? ` or a name (${spec.names[0]}–${spec.names[spec.names.length - 1]})` : '';
    throw new CronError(`${spec.name} field "${field}": "${token}" is not a number${hint}`);
  }
  const n = Number(token);
  if (n < spec.min || n > spec.max) throw new CronError(`${spec.name} field "${field}": ${n} is out of range ${spec.min}–${spec.max}`);
  return n;
}

function parseField(field: string, spec: FieldSpec): number[] {
  const out = new Set<number>();
  for (const part of field.split(',')) {
    if (part === '') throw new CronError(`${spec.name} field "${field}": empty list item`);
    const [range = '', stepText, extra] = part.split('/');
    if (extra !== undefined) throw new CronError(`${spec.name} field "${field}": more than one / in "${part}"`);
    let step = 1;
    if (stepText !== undefined) {
      if (!/^\d+$/.test(stepText) || Number(stepText) === 0) throw new CronError(`${spec.name} field "${field}": step "${stepText}" must be a positive number`);
      step = Number(stepText);
    }
    let lo: number;
    let hi: number;
    if (range === '*') {
      lo = spec.min;
      hi = spec.max;
    } else if (range.includes('-')) {
      const [a = '', b = '', more] = range.split('-');
      if (more !== undefined || a === '' || b === '') throw new CronError(`${spec.name} field "${field}": "${range}" is not a range a-b`);
      lo = parseValue(a, spec, field);
      hi = parseValue(b, spec, field);
      if (lo > hi) throw new CronError(`${spec.name} field "${field}": range ${range} runs backwards`);
    } else {
      lo = parseValue(range, spec, field);
      // `5/15` means from 5 to the end in steps of 15 (as most crons read it); `5` alone is one value.
      hi = stepText !== undefined ? spec.max : lo;
    }
    for (let v = lo; v <= hi; v += step) out.add(spec.name === 'day-of-week' && v === 7 ? 0 : v);
  }
  return [...out].sort((x, y) => x - y);
}

/** Parses a five-field schedule (or a macro such as @weekly); a CronError names the field that is wrong. */
export function parseCron(text: string): CronSchedule {
  const trimmed = text.trim();
  const expanded = trimmed.startsWith('@') ? MACROS[trimmed.toLowerCase()] : trimmed;
  if (expanded === undefined) throw new CronError(`unknown macro "${trimmed}" (known: ${Object.keys(MACROS).join(', ')})`);
  const fields = expanded.split(/\s+/).filter((f) => f !== '');
  if (fields.length !== 5) throw new CronError(`expected 5 fields (minute hour day-of-month month day-of-week), got ${fields.length}`);
  const [minutes, hours, daysOfMonth, months, daysOfWeek] = fields.map((f, i) => parseField(f, FIELDS[i] as FieldSpec)) as [number[], number[], number[], number[], number[]];
  const schedule: CronSchedule = {
    text: trimmed,
    minutes,
    hours,
    daysOfMonth,
    months,
    daysOfWeek,
    domStar: fields[2]?.startsWith('*') ?? false,
    dowStar: fields[4]?.startsWith('*') ?? false,
  };
  // A day-of-month that no listed month has (30 2 = 30 February) never fires: a window that never opens is a mistake.
  const dayOnlyByMonth = !schedule.domStar && schedule.dowStar;
  if (dayOnlyByMonth && !months.some((m) => daysOfMonth.some((d) => d <= (MONTH_DAYS[m - 1] ?? 0)))) {
    throw new CronError(`day-of-month "${fields[2] ?? ''}" never occurs in month "${fields[3] ?? ''}": the schedule never fires`);
  }
  return schedule;
}

/** Whether a calendar day (month 1–12, weekday 0 = Sunday) is one the schedule fires on. */
export function dayMatches(schedule: CronSchedule, month: number, day: number, weekday: number): boolean {
  if (!schedule.months.includes(month)) return false;
  const dom = schedule.daysOfMonth.includes(day);
  const dow = schedule.daysOfWeek.includes(weekday);
  // Vixie cron: both restricted → either may match; otherwise both (a `*` field matches anyway).
  if (!schedule.domStar && !schedule.dowStar) return dom || dow;
  return dom && dow;
}
