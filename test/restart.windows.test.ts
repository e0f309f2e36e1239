/**
 * Maintenance windows, pure: cron parsing (fields, names, steps, the day-of-month/day-of-week OR
 * rule, errors naming the field), and window openings at fixed instants in UTC and in
 * Europe/Berlin across the 2026 spring and autumn clock changes. No clock is read.
 */
import assert from 'node:assert/strict';
import { CronError, dayMatches, parseCron } from '../reconciler/restart/cron.ts';
import { type MaintenanceWindow, currentWindow, formatOccurrence, lastStart, nextOccurrence, nextStart, nextWindow, occurrenceAt } from '../reconciler/restart/window.ts';
import { canonicalTimeZone, localTime, offsetAt, resolveLocal, zoneAbbreviation } from '../reconciler/restart/zone.ts';

const HOUR = 3_600_000;
const at = (iso: string): number => Date.parse(iso);
const iso = (ms: number | undefined): string | undefined => (ms === undefined ? undefined : new Date(ms).toISOString());
const win = (schedule: string, hours: number, timeZone = 'UTC'): MaintenanceWindow => ({ schedule: parseCron(schedule), durationMs: hours * HOUR, timeZone });

/** The next `n` openings after `from`, as ISO start instants. */
function starts(w: MaintenanceWindow, from: number, n: number): string[] {
  const out: string[] = [];
  let after = from;
  for (let i = 0; i < n; i++) {
    const o = nextOccurrence(w, after);
    assert.ok(o !== null);
    out.push(iso(o.start) ?? '');
    after = o.start;
  }
  return out;
}

describe('restart windows: cron schedules', () => {
  it('parses lists, ranges, steps, names and 7 as Sunday', () => {
    const s = parseCron('*/15 0-6/2 1,15 JAN-MAR,dec mon-FRI');
    assert.deepEqual(s.minutes, [0, 15, 30, 45]);
    assert.deepEqual(s.hours, [0, 2, 4, 6]);
    assert.deepEqual(s.daysOfMonth, [1, 15]);
    assert.deepEqual(s.months, [1, 2, 3, 12]);
    assert.deepEqual(s.daysOfWeek, [1, 2, 3, 4, 5]);
    assert.deepEqual(parseCron('0 0 * * 5-7').daysOfWeek, [0, 5, 6]);
    assert.deepEqual(parseCron('5/20 * * * *').minutes, [5, 25, 45], 'a/n runs from a to the end');
    assert.deepEqual(parseCron('@weekly'), { ...parseCron('0 0 * * 0'), text: '@weekly' });
    assert.deepEqual(parseCron('  0   2 * *   SAT ').daysOfWeek, [6]);
  });

  it('combines day-of-month and day-of-week as cron does: OR when both are restricted, AND when one starts with *', () => {
    const either = parseCron('0 0 13 * FRI');
    assert.equal(dayMatches(either, 11, 13, 5), true, 'Friday the 13th');
    assert.equal(dayMatches(either, 11, 13, 1), true, 'a Monday the 13th: day-of-month alone');
    assert.equal(dayMatches(either, 11, 20, 5), true, 'Friday the 20th: day-of-week alone');
    assert.equal(dayMatches(either, 11, 20, 1), false);
    const both = parseCron('0 0 */2 * FRI');
    assert.equal(dayMatches(both, 11, 13, 5), true, 'odd day and Friday');
    assert.equal(dayMatches(both, 11, 20, 5), false, 'a * field restricts together with the other');
    assert.equal(dayMatches(parseCron('0 0 * JUN *'), 11, 1, 0), false, 'month restricts always');
    // The OR rule seen through the schedule: 2026-11-13 is a Friday, 2026-12-13 a Sunday.
    assert.deepEqual(starts(win('0 0 13 * FRI', 1), at('2026-11-12T00:00:00Z'), 4), ['2026-11-13T00:00:00.000Z', '2026-11-20T00:00:00.000Z', '2026-11-27T00:00:00.000Z', '2026-12-04T00:00:00.000Z']);
  });

  const errors: Array<[string, string]> = [
    ['', 'expected 5 fields (minute hour day-of-month month day-of-week), got 0'],
    ['0 2 * *', 'expected 5 fields (minute hour day-of-month month day-of-week), got 4'],
    ['0 2 * * 6 2026', 'expected 5 fields (minute hour day-of-month month day-of-week), got 6'],
    ['60 * * * *', 'minute field "60": 60 is out of range 0–59'],
    ['* 24 * * *', 'hour field "24": 24 is out of range 0–23'],
    ['* * 0 * *', 'day-of-month field "0": 0 is out of range 1–31'],
    ['* * * 13 *', 'month field "13": 13 is out of range 1–12'],
    ['* * * * 8', 'day-of-week field "8": 8 is out of range 0–7'],
    ['*/0 * * * *', 'minute field "*/0": step "0" must be a positive number'],
    ['5-1 * * * *', 'minute field "5-1": range 5-1 runs backwards'],
    ['* * * FOO *', 'month field "FOO": "FOO" is not a number or a name (JAN–DEC)'],
    ['* * * * SATURDAY', 'day-of-week field "SATURDAY": "SATURDAY" is not a number or a name (SUN–SAT)'],
    ['1,,2 * * * *', 'minute field "1,,2": empty list item'],
    ['1-2-3 * * * *', 'minute field "1-2-3": "1-2-3" is not a range a-b'],
    ['*/5/2 * * * *', 'minute field "*/5/2": more than one / in "*/5/2"'],
    ['0 0 30 2 *', 'day-of-month "30" never occurs in month "2": the schedule never fires'],
    ['@fortnightly', 'unknown macro "@fortnightly" (known: @yearly, @annually, @monthly, @weekly, @daily, @midnight, @hourly)'],
  ];
  for (const [text, message] of errors) {
    it(`refuses "${text}": ${message}`, () => {
      assert.throws(() => parseCron(text), (e: unknown) => e instanceof CronError && e.message === message);
    });
  }

  it('accepts 29 February and finds it in the next leap year, across 2100 which is none', () => {
    assert.equal(iso(nextOccurrence(win('0 0 29 2 *', 1), at('2026-11-30T00:00:00Z'))?.start), '2028-02-29T00:00:00.000Z');
    assert.equal(iso(nextOccurrence(win('0 0 29 2 *', 1), at('2097-01-01T00:00:00Z'))?.start), '2104-02-29T00:00:00.000Z');
  });
});

describe('restart windows: openings in UTC', () => {
  const saturday = win('0 2 * * SAT', 2);
  // Monday 2026-11-30; the next Saturday is 5 December.
  const monday = at('2026-11-30T08:00:00Z');

  it('finds the next opening and says it as people read it', () => {
    const o = nextOccurrence(saturday, monday);
    assert.equal(iso(o?.start), '2026-12-05T02:00:00.000Z');
    assert.equal(iso(o?.end), '2026-12-05T04:00:00.000Z');
    assert.ok(o !== null);
    assert.equal(formatOccurrence(o, monday), 'Sat 02:00–04:00 UTC');
    // Six days or more ahead, a weekday alone would point at the nearer Saturday: the date is named.
    assert.equal(formatOccurrence(o, at('2026-11-28T08:00:00Z')), 'Sat 5 Dec 02:00–04:00 UTC');
    assert.deepEqual(starts(saturday, monday, 3), ['2026-12-05T02:00:00.000Z', '2026-12-12T02:00:00.000Z', '2026-12-19T02:00:00.000Z']);
  });

  it('is inside from the start (inclusive) to the end (exclusive)', () => {
    assert.equal(occurrenceAt(saturday, monday), null);
    assert.equal(occurrenceAt(saturday, at('2026-12-05T01:59:59Z')), null);
    assert.equal(iso(occurrenceAt(saturday, at('2026-12-05T02:00:00Z'))?.start), '2026-12-05T02:00:00.000Z');
    assert.equal(iso(occurrenceAt(saturday, at('2026-12-05T03:59:59Z'))?.end), '2026-12-05T04:00:00.000Z');
    assert.equal(occurrenceAt(saturday, at('2026-12-05T04:00:00Z')), null);
    // Inside a window, the next one is the following week's.
    assert.equal(iso(nextOccurrence(saturday, at('2026-12-05T02:30:00Z'))?.start), '2026-12-12T02:00:00.000Z');
  });

  it('spans midnight and names both days', () => {
    const friday = win('0 23 * * FRI', 2);
    const o = occurrenceAt(friday, at('2026-12-05T00:30:00Z'));
    assert.ok(o !== null);
    assert.equal(iso(o.start), '2026-12-04T23:00:00.000Z');
    assert.equal(formatOccurrence(o), 'Fri 23:00–Sat 01:00 UTC');
  });

  it('of several windows, picks the open one and the earliest next one', () => {
    const windows = [saturday, win('30 22 * * WED', 1)];
    assert.equal(iso(nextWindow(windows, monday)?.start), '2026-12-02T22:30:00.000Z');
    assert.equal(iso(currentWindow(windows, at('2026-12-02T23:00:00Z'))?.end), '2026-12-02T23:30:00.000Z');
    assert.equal(currentWindow(windows, at('2026-12-02T23:30:00Z')), null);
    assert.equal(nextWindow([], monday), null);
  });
});

describe('restart windows: Europe/Berlin across the clock changes of 2026', () => {
  // Spring: 29 March, 02:00 CET → 03:00 CEST (01:00Z). Autumn: 25 October, 03:00 CEST → 02:00 CET (01:00Z).
  const tz = 'Europe/Berlin';

  it('keeps the wall-clock time: 01:00 local is 00:00Z in winter and 23:00Z the day before in summer', () => {
    const w = win('0 1 * * SUN', 2, tz);
    assert.deepEqual(starts(w, at('2026-03-20T00:00:00Z'), 3), ['2026-03-22T00:00:00.000Z', '2026-03-29T00:00:00.000Z', '2026-04-04T23:00:00.000Z']);
    // The opening on the change night lasts 2 h of elapsed time: 01:00 CET to 04:00 CEST.
    const change = nextOccurrence(w, at('2026-03-28T00:00:00Z'));
    assert.ok(change !== null);
    assert.equal(formatOccurrence(change), 'Sun 01:00 CET–04:00 CEST');
    assert.equal(iso(occurrenceAt(w, at('2026-03-29T01:59:00Z'))?.start), '2026-03-29T00:00:00.000Z', '03:59 CEST is inside');
    assert.equal(occurrenceAt(w, at('2026-03-29T02:00:00Z')), null, '04:00 CEST is the end');
  });

  it('opens a window whose start the spring change skips at the change itself (03:00 CEST)', () => {
    assert.deepEqual(resolveLocal(2026, 3, 29, 2, 30, tz), { instant: at('2026-03-29T01:00:00Z'), kind: 'gap' });
    const w = win('30 2 * * SUN', 2, tz);
    assert.deepEqual(starts(w, at('2026-03-21T00:00:00Z'), 3), ['2026-03-22T01:30:00.000Z', '2026-03-29T01:00:00.000Z', '2026-04-05T00:30:00.000Z']);
    const o = occurrenceAt(w, at('2026-03-29T02:30:00Z'));
    assert.ok(o !== null);
    assert.equal(formatOccurrence(o), 'Sun 03:00–05:00 CEST');
  });

  it('opens a window whose start the autumn change repeats once, at the first (summer-time) instant', () => {
    assert.deepEqual(resolveLocal(2026, 10, 25, 2, 30, tz), { instant: at('2026-10-25T00:30:00Z'), kind: 'overlap' });
    const w = win('30 2 * * SUN', 2, tz);
    assert.deepEqual(starts(w, at('2026-10-18T12:00:00Z'), 2), ['2026-10-25T00:30:00.000Z', '2026-11-01T01:30:00.000Z']);
    const o = occurrenceAt(w, at('2026-10-25T02:00:00Z'));
    assert.ok(o !== null);
    assert.equal(iso(o.start), '2026-10-25T00:30:00.000Z');
    assert.equal(formatOccurrence(o), 'Sun 02:30 CEST–03:30 CET');
    assert.equal(occurrenceAt(w, at('2026-10-25T02:30:00Z')), null);
    // An hourly schedule fires once for the repeated 02:00, not twice.
    assert.deepEqual(starts(win('0 * * * *', 0.5, tz), at('2026-10-24T23:30:00Z'), 3), ['2026-10-25T00:00:00.000Z', '2026-10-25T02:00:00.000Z', '2026-10-25T03:00:00.000Z']);
  });

  it('knows the zone names the runtime knows, and refuses others', () => {
    assert.equal(canonicalTimeZone('europe/berlin'), 'Europe/Berlin');
    assert.equal(canonicalTimeZone('UTC'), 'UTC');
    assert.equal(canonicalTimeZone('Mars/Olympus_Mons'), null);
    assert.equal(canonicalTimeZone(''), null);
    assert.equal(zoneAbbreviation(at('2026-01-10T00:00:00Z'), tz), 'CET');
    assert.equal(zoneAbbreviation(at('2026-07-10T00:00:00Z'), tz), 'CEST');
    assert.equal(zoneAbbreviation(at('2026-07-10T00:00:00Z'), 'America/New_York'), 'EDT');
    assert.equal(zoneAbbreviation(at('2026-07-10T00:00:00Z'), 'Asia/Kolkata'), 'UTC+5:30', 'no abbreviation: the offset');
  });
});

describe('restart windows: agree with a minute-by-minute scan around clock changes', () => {
  const MIN = 60_000;
  /** Fire instants by brute force: each matching local minute at its first instant; minutes a change skips, at the change. */
  function scan(schedule: string, tz: string, from: number, to: number): number[] {
    const s = parseCron(schedule);
    const matches = (year: number, month: number, day: number, hour: number, minute: number): boolean =>
      dayMatches(s, month, day, new Date(Date.UTC(year, month - 1, day)).getUTCDay()) && s.hours.includes(hour) && s.minutes.includes(minute);
    const out: number[] = [];
    const seen = new Set<number>();
    for (let i = from; i < to; i += MIN) {
      const l = localTime(i, tz);
      const wall = Date.UTC(l.year, l.month - 1, l.day, l.hour, l.minute);
      const p = localTime(i - MIN, tz);
      let fire = !seen.has(wall) && matches(l.year, l.month, l.day, l.hour, l.minute);
      for (let w = Date.UTC(p.year, p.month - 1, p.day, p.hour, p.minute) + MIN; w < wall && !fire; w += MIN) {
        const d = new Date(w);
        fire = matches(d.getUTCFullYear(), d.getUTCMonth() + 1, d.getUTCDate(), d.getUTCHours(), d.getUTCMinutes());
      }
      seen.add(wall);
      if (fire) out.push(i);
    }
    return out;
  }
  // A 30-minute change (Lord Howe), a whole skipped day (Samoa, 30 December 2011), and New York.
  const cases: Array<[string, string]> = [
    ['Australia/Lord_Howe', '2026-04-05T00:00:00Z'],
    ['Australia/Lord_Howe', '2026-10-04T00:00:00Z'],
    ['Pacific/Apia', '2011-12-29T12:00:00Z'],
    ['America/New_York', '2026-03-08T12:00:00Z'],
    ['America/New_York', '2026-11-01T12:00:00Z'],
  ];
  for (const [tz, around] of cases) {
    it(`${tz} around ${around}`, () => {
      const from = at(around) - 86_400_000;
      const to = at(around) + 86_400_000;
      // The window really holds a change: the test is not vacuous.
      assert.notEqual(offsetAt(from, tz), offsetAt(to, tz));
      for (const schedule of ['*/30 * * * *', '30 2 * * *', '0 0-3 * * *']) {
        const expected = scan(schedule, tz, from - 3 * HOUR, to).filter((f) => f > from);
        const got: number[] = [];
        for (let after = from, n = nextStart(parseCron(schedule), tz, after); n !== null && n < to; after = n, n = nextStart(parseCron(schedule), tz, after)) got.push(n);
        assert.deepEqual(got.map(iso), expected.map(iso), `${schedule} next`);
        for (let t = from + 3 * HOUR; t < to; t += 37 * MIN) {
          const last = expected.filter((f) => f <= t).pop();
          assert.equal(lastStart(parseCron(schedule), tz, t, t - 3 * HOUR), last !== undefined && last > t - 3 * HOUR ? last : null, `${schedule} last at ${iso(t) ?? ''}`);
        }
      }
    });
  }
});
