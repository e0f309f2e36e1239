/**
 * Waiting in tests: on the event a test needs, with a bound generous enough that a starved
 * machine (two CPU burners beside the suite on two cores) is slow rather than failing. A wait
 * that gives up says what it was waiting for, and for how long.
 */

/** Default bound of a wait: long for a busy machine, well under the suite's mocha timeout. */
export const WAIT_MS = 30_000;

/** What a wait may be told besides its condition. */
export interface WaitOptions {
  /** Upper bound (default {@link WAIT_MS}). */
  timeoutMs?: number;
  /** Time between checks (default 10 ms). */
  everyMs?: number;
  /** Checked before each poll: a reason to give up at once (e.g. the child process exited). */
  failIf?: () => string | undefined;
  /** Added to the error when the wait gives up (e.g. the log so far). */
  detail?: () => string;
}

/** Polls `check` until it holds; throws `timed out after N ms waiting for <what>` at the bound. */
export async function until(what: string, check: () => boolean | Promise<boolean>, options: number | WaitOptions = {}): Promise<void> {
  const o: WaitOptions = typeof options === 'number' ? { timeoutMs: options } : options;
  const timeoutMs = o.timeoutMs ?? WAIT_MS;
  const started = Date.now();
  for (;;) {
    if (await check()) return;
    const failed = o.failIf?.();
    const late = Date.now() - started > timeoutMs;
    if (failed !== undefined || late) {
      const why = failed !== undefined ? `gave up (${failed}) after ${Date.now() - started} ms` : `timed out after ${timeoutMs} ms`;
      const detail = o.detail?.();
      throw new Error(`${why} waiting for ${what}${detail !== undefined && detail !== '' ? `\n${detail}` : ''}`);
    }
    await new Promise((r) => setTimeout(r, o.everyMs ?? 10));
  }
}
