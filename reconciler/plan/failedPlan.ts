/** The VmPlan of a sync or plan that failed as a whole, printed by `run --once -o json` and `plan -o json` alike. */
import path from 'node:path';
import type { VmPlan } from '../rollout/index.ts';
import { redactUrl } from '../source/errors.ts';

/** The VmPlan of a sync or plan that failed as a whole: no VMs, the failure as an error of the repository. */
export function failedPlan(repo: string, message: string): VmPlan {
  const file = /^[a-z][a-z0-9+.-]*:\/\//i.test(repo) ? redactUrl(repo) : path.resolve(repo);
  return { commit: null, vms: [], errors: [{ file, line: null, message }] };
}
