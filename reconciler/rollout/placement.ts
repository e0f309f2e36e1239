/** nodeSelector, affinity and tolerations: KubeVirt's `handleAffinityChangeRequest` and `handleTolerationsChangeRequest`. */
import { type Obj, clone, get, setPath } from './json.ts';
import type { HandlerOutcome } from './outcome.ts';
import { templatePath } from './paths.ts';
import { semanticEqual } from './semantic.ts';
import { WaitMessage } from './vocabulary.ts';
import { isMigrating } from './vmi.ts';

function syncFields(spec: Obj, vmi: Obj, fields: readonly string[], waitMessage: string): HandlerOutcome {
  const differing = fields.filter((f) => !semanticEqual(get(spec, f), get(vmi, 'spec', f), f));
  if (differing.length === 0) return { kind: 'none' };
  if (isMigrating(vmi)) return { kind: 'wait', path: templatePath(differing[0] ?? fields[0] ?? ''), message: waitMessage };
  for (const f of differing) setPath(vmi, ['spec', f], clone(get(spec, f)));
  return {
    kind: 'patched',
    paths: differing.map((f) => templatePath(f)),
    note: 'VMI placement updated: the running pod stays; the rules apply at the next migration',
  };
}

/** Affinity handler: nodeSelector and affinity are copied to the VMI unless it is migrating. */
export function handleAffinityChange(spec: Obj, vmi: Obj): HandlerOutcome {
  return syncFields(spec, vmi, ['nodeSelector', 'affinity'], WaitMessage.affinityMigrating);
}

/** Tolerations handler: tolerations are copied to the VMI unless it is migrating. */
export function handleTolerationsChange(spec: Obj, vmi: Obj): HandlerOutcome {
  return syncFields(spec, vmi, ['tolerations'], WaitMessage.tolerationsMigrating);
}
