/**
 * Wall-clock time in an IANA time zone, through Intl.DateTimeFormat only (the runtime's tz data):
 * instant → local fields, local fields → instant (with the DST gap and overlap decided), the zone's
 * abbreviation. Instants are epoch milliseconds; nothing here reads the clock.
 */

/** A local date and time in some zone, to the minute; month 1–12, weekday 0 = Sunday. */
export interface LocalTime {
  year: number;
  month: number;
  day: number;
  hour: number;
  minute: number;
  weekday: number;
}

const MINUTE = 60_000;
const DAY = 86_400_000;
const WEEKDAYS = ['Sun', 'Mon', 'Tue', 'Wed', 'Thu', 'Fri', 'Sat'] as const;

const formatters = new Map<string, Intl.DateTimeFormat>();

function formatter(timeZone: string): Intl.DateTimeFormat {
  let f = formatters.get(timeZone);
  if (f === undefined) {
    f = new Intl.DateTimeFormat('en-US', { timeZone, hourCycle: 'h23', year: 'numeric', month: 'numeric', day: 'numeric', hour: 'numeric', minute: 'numeric', second: 'numeric', weekday: 'short' });
    formatters.set(timeZone, f);
  }
  return f;
}

/** The zone's canonical name when the runtime knows it (`europe/berlin` → `Europe/Berlin`), else null. */
export function canonicalTimeZone(timeZone: string): string | null {
  if (timeZone.trim() === '') return null;
  try {
    return new Intl.DateTimeFormat('en-US', { timeZone }).resolvedOptions().timeZone;
  } catch {
    return null;
  }
}

/** The wall-clock fields of `instant` in `timeZone` (seconds dropped). */
export function localTime(instant: number, timeZone: string): LocalTime {
  const parts: Record<string, string> = {};
  for (const p of formatter(timeZone).formatToParts(instant)) parts[p.type] = p.value;
  return {
    year: Number(parts['year']),
    month: Number(parts['month']),
    day: Number(parts['day']),
    hour: Number(parts['hour']),
    minute: Number(parts['minute']),
    weekday: WEEKDAYS.indexOf((parts['weekday'] ?? '') as (typeof WEEKDAYS)[number]),
  };
}

/** The zone's offset from UTC at `instant`, in ms (east positive), to the minute. */
export function offsetAt(instant: number, timeZone: string): number {
  const t = localTime(instant, timeZone);
  return Date.UTC(t.year, t.month - 1, t.day, t.hour, t.minute) - Math.floor(instant / MINUTE) * MINUTE;
}

/** The weekday (0 = Sunday) of a civil date, independent of any zone. */
export function civilWeekday(year: number, month: number, day: number): number {
  return new Date(Date.UTC(year, month - 1, day)).getUTCDay();
}

/** Days in a civil month. */
export function daysInMonth(year: number, month: number): number {
  return new Date(Date.UTC(year, month, 0)).getUTCDate();
}

/** How a local time maps to instants: once, twice (the autumn overlap) or not at all (the spring gap). */
export interface Resolved {
  /** The earliest instant showing this local time; in a gap, the first instant after it (the change itself). */
  instant: number;
  /** `gap` when the local time does not exist that day, `overlap` when it exists twice. */
  kind: 'exact' | 'overlap' | 'gap';
}

/**
 * The instant of a local time in `timeZone`. In the autumn overlap the earlier of the two instants
 * wins; a time skipped by the spring change resolves to the instant of the change, so a window that
 * starts in the gap opens as soon as the clock has jumped rather than not at all.
 */
export function resolveLocal(year: number, month: number, day: number, hour: number, minute: number, timeZone: string): Resolved {
  const wall = Date.UTC(year, month - 1, day, hour, minute);
  // One DST change at most within a day either side: the offsets before and after it are candidates.
  const before = offsetAt(wall - DAY, timeZone);
  const after = offsetAt(wall + DAY, timeZone);
  const matches = [...new Set([wall - before, wall - after])].filter((i) => {
    const t = localTime(i, timeZone);
    return t.year === year && t.month === month && t.day === day && t.hour === hour && t.minute === minute;
  });
  if (matches.length > 0) return { instant: Math.min(...matches), kind: matches.length > 1 ? 'overlap' : 'exact' };
  // In the gap: the change lies between the two candidates; find the first minute with the new offset.
  let lo = Math.min(wall - before, wall - after);
  let hi = Math.max(wall - before, wall - after);
  while (hi - lo > MINUTE) {
    const mid = lo + Math.floor((hi - lo) / 2 / MINUTE) * MINUTE;
    if (offsetAt(mid, timeZone) === before) lo = mid;
    else hi = mid;
  }
  return { instant: hi, kind: 'gap' };
}

/**
 * The zone's short name at `instant` as people write it: `UTC`, `CET`/`CEST`, `EST`/`EDT`; where
 * the runtime knows no abbreviation, the offset (`UTC+5:30`).
 */
export function zoneAbbreviation(instant: number, timeZone: string): string {
  for (const locale of ['en-US', 'en-GB']) {
    const name = new Intl.DateTimeFormat(locale, { timeZone, timeZoneName: 'short' }).formatToParts(instant).find((p) => p.type === 'timeZoneName')?.value;
    // `GMT+1` is an offset, not a name; plain `GMT` (London in winter) is a name.
    if (name !== undefined && !/^GMT[+-]/.test(name)) return name;
  }
  const offset = offsetAt(instant, timeZone) / MINUTE;
  if (offset === 0) return 'UTC';
  const abs = Math.abs(offset);
  return `UTC${offset < 0 ? '-' : '+'}${Math.floor(abs / 60)}${abs % 60 !== 0 ? `:${String(abs % 60).padStart(2, '0')}` : ''}`;
}

/** `Sat`, the English short weekday. */
export function weekdayName(weekday: number): string {
  return WEEKDAYS[weekday] ?? '?';
}
