/**
 * Maintenance windows: a cron schedule read on the wall clock of an IANA time zone opens a window,
 * which stays open for a duration of elapsed time. Whether an instant is inside one, when the
 * current one ends and when the next one opens, correct across DST changes (zone.ts), and the text
 * people read (`Sat 02:00–04:00 UTC`). Pure: `now` is always an argument.
 */
import { type CronSchedule, dayMatches } from './cron.ts';
import { civilWeekday, daysInMonth, localTime, offsetAt, resolveLocal, weekdayName, zoneAbbreviation } from './zone.ts';

/** One window of a policy: opens at each time `schedule` names in `timeZone`, open for `durationMs`. */
export interface MaintenanceWindow {
  schedule: CronSchedule;
  durationMs: number;
  /** IANA name, e.g. `Europe/Berlin` or `UTC`. */
  timeZone: string;
}

/** One opening of a window: from `start` (inclusive) to `end` (exclusive), epoch ms. */
export interface WindowOccurrence {
  start: number;
  end: number;
  /** The window it is an opening of. */
  window: MaintenanceWindow;
}

const HOUR = 3_600_000;
const DAY = 86_400_000;
/** Far enough for a 29 February schedule across a century year (2096 → 2104). */
const MAX_SCAN_DAYS = 8 * 366 + 2;
/** More than any zone's DST step: local wall times further than this from the target cannot resolve near it. */
const SLACK = 4 * HOUR;

/** A civil date stepped by whole days, through UTC so that no zone's clock changes interfere. */
function civilDay(year: number, month: number, day: number, delta: number): { year: number; month: number; day: number } {
  const d = new Date(Date.UTC(year, month - 1, day) + delta * DAY);
  return { year: d.getUTCFullYear(), month: d.getUTCMonth() + 1, day: d.getUTCDate() };
}

/** The first opening of `schedule` in `timeZone` strictly after `after`, or null when it never opens within eight years. */
export function nextStart(schedule: CronSchedule, timeZone: string, after: number): number | null {
  const wallAfter = after + offsetAt(after, timeZone);
  const t = localTime(after, timeZone);
  // Start a day early: in the autumn overlap a later wall time can resolve before `after`'s own.
  for (let i = -1; i < MAX_SCAN_DAYS; i++) {
    const d = civilDay(t.year, t.month, t.day, i);
    if (d.day > daysInMonth(d.year, d.month) || !dayMatches(schedule, d.month, d.day, civilWeekday(d.year, d.month, d.day))) continue;
    for (const hour of schedule.hours) {
      for (const minute of schedule.minutes) {
        if (Date.UTC(d.year, d.month - 1, d.day, hour, minute) < wallAfter - SLACK) continue;
        const r = resolveLocal(d.year, d.month, d.day, hour, minute, timeZone);
        if (r.instant > after) return r.instant;
      }
    }
  }
  return null;
}

/** The last opening of `schedule` in `timeZone` at or before `at` and after `notBefore`, or null. */
export function lastStart(schedule: CronSchedule, timeZone: string, at: number, notBefore: number): number | null {
  const wallAt = at + offsetAt(at, timeZone);
  const wallFloor = notBefore + offsetAt(notBefore, timeZone) - SLACK;
  const t = localTime(at, timeZone);
  const hours = [...schedule.hours].reverse();
  const minutes = [...schedule.minutes].reverse();
  for (let i = 1; i > -MAX_SCAN_DAYS; i--) {
    const d = civilDay(t.year, t.month, t.day, i);
    if (Date.UTC(d.year, d.month - 1, d.day + 1) < wallFloor) return null;
    if (!dayMatches(schedule, d.month, d.day, civilWeekday(d.year, d.month, d.day))) continue;
    for (const hour of hours) {
      for (const minute of minutes) {
        const wall = Date.UTC(d.year, d.month - 1, d.day, hour, minute);
        if (wall > wallAt + SLACK) continue;
        if (wall < wallFloor) return null;
        // Wall times map to instants in the same order (overlap: the earlier; gap: the change), so the first hit is the latest.
        const r = resolveLocal(d.year, d.month, d.day, hour, minute, timeZone);
        if (r.instant <= at) return r.instant > notBefore ? r.instant : null;
      }
    }
  }
  return null;
}

/** The opening of `window` that `now` is inside, or null. When openings overlap, the latest one. */
export function occurrenceAt(window: MaintenanceWindow, now: number): WindowOccurrence | null {
  const start = lastStart(window.schedule, window.timeZone, now, now - window.durationMs);
  return start === null ? null : { start, end: start + window.durationMs, window };
}

/** The next opening of `window` that starts after `after`, or null when it never opens (within eight years). */
export function nextOccurrence(window: MaintenanceWindow, after: number): WindowOccurrence | null {
  const start = nextStart(window.schedule, window.timeZone, after);
  return start === null ? null : { start, end: start + window.durationMs, window };
}

/** Of several windows, the opening `now` is inside (the latest-opened when several are), or null. */
export function currentWindow(windows: readonly MaintenanceWindow[], now: number): WindowOccurrence | null {
  let best: WindowOccurrence | null = null;
  for (const w of windows) {
    const o = occurrenceAt(w, now);
    if (o !== null && (best === null || o.start > best.start)) best = o;
  }
  return best;
}

/** Of several windows, the first opening that starts after `after` (the earliest start; the longest on a tie), or null. */
export function nextWindow(windows: readonly MaintenanceWindow[], after: number): WindowOccurrence | null {
  let best: WindowOccurrence | null = null;
  for (const w of windows) {
    const o = nextOccurrence(w, after);
    if (o !== null && (best === null || o.start < best.start || (o.start === best.start && o.end > best.end))) best = o;
  }
  return best;
}

function hhmm(instant: number, timeZone: string): { day: string; date: string; time: string } {
  const t = localTime(instant, timeZone);
  const month = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'][t.month - 1] ?? '?';
  return { day: weekdayName(t.weekday), date: `${t.day} ${month}`, time: `${String(t.hour).padStart(2, '0')}:${String(t.minute).padStart(2, '0')}` };
}

/**
 * An opening as people read it, in its own zone: `Sat 02:00–04:00 UTC`; `Sat 23:00–Sun 01:00 CET`
 * across midnight; `Sun 01:00 CEST–02:00 CET` across a DST change. With `now`, an opening six days
 * or more away also names its date (`Sat 12 Dec 02:00–04:00 UTC`), since a weekday alone would
 * point at the nearer one.
 */
export function formatOccurrence(o: { start: number; end: number; window: { timeZone: string } }, now?: number): string {
  const tz = o.window.timeZone;
  const a = hhmm(o.start, tz);
  // The end is exclusive: a window to midnight ends at 24:00 of its day, shown as the next day's 00:00.
  const b = hhmm(o.end, tz);
  const za = zoneAbbreviation(o.start, tz);
  const zb = zoneAbbreviation(o.end, tz);
  const withDate = now !== undefined && o.start - now >= 6 * DAY;
  const startText = `${a.day}${withDate ? ` ${a.date}` : ''} ${a.time}`;
  const sameDay = a.day === b.day && a.date === b.date;
  const endText = `${sameDay ? '' : `${b.day}${withDate ? ` ${b.date}` : ''} `}${b.time}`;
  return za === zb ? `${startText}–${endText} ${za}` : `${startText} ${za}–${endText} ${zb}`;
}
