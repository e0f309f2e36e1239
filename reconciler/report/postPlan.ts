/**
 * `vmroll plan --post`: a plan written to its pull request directly (no queue, one process run):
 * the `vmroll/plan` status, skipped when the commit already shows the same one, then the sticky
 * comment, edited in place.
 */
import type { Logger } from 'pino';
import { type CommitStatus, GitHostError, type GitHostReporter, sameStatus } from './reporter.ts';

/** What {@link postPlan} did. */
export interface PostedPlan {
  /** `unchanged`: the commit's newest status of the context already said this, so none was written. */
  status: 'posted' | 'unchanged';
  comment: { created: boolean; changed: boolean };
}

/**
 * Whether the commit's newest status of the context already says what `status` would: read before
 * writing, as the controller's report queue does. A host that cannot answer the read costs no
 * write: the status is posted all the same.
 */
async function statusShown(reporter: GitHostReporter, status: CommitStatus, logger: Logger): Promise<boolean> {
  if (reporter.latestStatus === undefined) return false;
  try {
    const found = await reporter.latestStatus(status.sha, status.context);
    return found !== null && sameStatus(found, status);
  } catch (e) {
    if (!(e instanceof GitHostError)) throw e;
    logger.warn({ code: e.code, err: e.message }, 'could not read the commit status; posting it unread');
    return false;
  }
}

/** Posts the status (unless the commit shows it already) and the sticky comment of pull request `pr`. Throws GitHostError when a write fails. */
export async function postPlan(options: { reporter: GitHostReporter; pr: number; status: CommitStatus; body: string; logger: Logger }): Promise<PostedPlan> {
  const { reporter, status } = options;
  // A commit that already shows this plan (a re-run, the controller's review) gets no second status.
  const shown = await statusShown(reporter, status, options.logger);
  if (!shown) await reporter.postStatus(status);
  const written = await reporter.upsertPlanComment(options.pr, options.body);
  return { status: shown ? 'unchanged' : 'posted', comment: { created: written.created, changed: written.changed } };
}
