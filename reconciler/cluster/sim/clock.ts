/**
 * Time for the simulated controllers: the wall clock in `vmroll sim`, a clock that tests step
 * by hand (so a 60 s eviction batch interval or a migration's duration costs no real time).
 */

/** A timer handle, to cancel it. */
export interface SimTimer {
  readonly id: number;
}

/** What the simulated controllers read time from and schedule work with. */
export interface SimClock {
  /** The current time. */
  now(): Date;
  /** Runs `fn` once, `ms` from now. */
  setTimeout(fn: () => void, ms: number): SimTimer;
  /** Cancels a timer that has not fired yet (a fired or cancelled one is ignored). */
  clearTimeout(timer: SimTimer): void;
}

/** The wall clock with Node's timers (unref'd: pending simulated work never keeps a process alive). */
export function systemClock(now: () => Date = () => new Date()): SimClock {
  const handles = new Map<number, NodeJS.Timeout>();
  let next = 0;
  return {
    now,
    setTimeout(fn, ms) {
      const id = ++next;
      const handle = setTimeout(() => {
        handles.delete(id);
        fn();
      }, Math.max(0, ms));
      handle.unref();
      handles.set(id, handle);
      return { id };
    },
    clearTimeout(timer) {
      const handle = handles.get(timer.id);
      if (handle !== undefined) clearTimeout(handle);
      handles.delete(timer.id);
    },
  };
}

interface Pending {
  id: number;
  at: number;
  fn: () => void;
}

/** A clock that only moves when told to: {@link advance} runs every timer that falls due, in time order. */
export class ManualClock implements SimClock {
  private t: number;
  private next = 0;
  private pending: Pending[] = [];

  constructor(start: Date | string = '2026-01-01T00:00:00Z') {
    this.t = new Date(start).getTime();
  }

  now(): Date {
    return new Date(this.t);
  }

  setTimeout(fn: () => void, ms: number): SimTimer {
    const id = ++this.next;
    this.pending.push({ id, at: this.t + Math.max(0, ms), fn });
    return { id };
  }

  clearTimeout(timer: SimTimer): void {
    this.pending = this.pending.filter((p) => p.id !== timer.id);
  }

  /** Timers not yet fired. */
  get pendingTimers(): number {
    return this.pending.length;
  }

  /**
   * Moves time forward by `ms`, firing due timers one at a time in (time, creation) order; a
   * timer set by a firing one fires too when it falls within the step.
   */
  advance(ms = 0): void {
    const end = this.t + ms;
    for (;;) {
      let first: Pending | undefined;
      for (const p of this.pending) if (p.at <= end && (first === undefined || p.at < first.at || (p.at === first.at && p.id < first.id))) first = p;
      if (first === undefined) break;
      const due = first;
      this.pending = this.pending.filter((p) => p !== due);
      this.t = Math.max(this.t, due.at);
      due.fn();
    }
    this.t = end;
  }
}
