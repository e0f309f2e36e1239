/**
 * Fields KubeVirt writes into a VirtualMachine itself when a manifest leaves them out: its
 * mutating webhook (architecture, machine type, matcher kinds, and from v1.8 the firmware UUID
 * and serial and the PCI topology annotation) and its controller (the instancetype and
 * preference revision names). A stored VM, and so a start baseline, carries them; a manifest
 * from Git usually does not. Applying such a manifest keeps the stored values (they belong to
 * KubeVirt's field managers, not to the applier), so comparing the manifest as written with the
 * baseline would report changes, even restart reasons, that never happen.
 *
 * {@link fillClusterDefaults} projects a desired VM onto its baseline: every such field the
 * desired VM leaves out is filled in with the baseline's value, and listed. A field the desired
 * VM sets, to any value, is left as written, so a real change is still a change. Pure.
 */
import { matcherKind } from './instancetype.ts';
import { type Obj, clone, get, getObj, getStr, isObj, setPath } from './json.ts';
import { formatPath } from './paths.ts';
import type { ClusterDefault } from './plan.ts';
import type { Behaviours } from './versions.ts';

/** Who sets a field, as the output names them. */
const SetBy = {
  webhook: "KubeVirt's VM mutating webhook",
  webhookV18: "KubeVirt's VM mutating webhook (v1.8+)",
  controller: "KubeVirt's VM controller",
} as const;

/** The template annotation the v1.8 webhook sets to record the PCI address scheme of the VM. */
export const PCI_TOPOLOGY_ANNOTATION = 'kubevirt.io/pci-topology-version';

/** The cluster-scoped kinds the webhook writes into matchers that name none, lower-case as KubeVirt writes them. */
const DEFAULT_MATCHER_KIND = { instancetype: 'virtualmachineclusterinstancetype', preference: 'virtualmachineclusterpreference' } as const;
const CANONICAL_MATCHER_KIND = { instancetype: 'VirtualMachineClusterInstancetype', preference: 'VirtualMachineClusterPreference' } as const;

/** One field KubeVirt fills in, and when the baseline's value is the one it would give the desired VM. */
interface DefaultedField {
  keys: string[];
  setBy: string;
  /** Whether this KubeVirt fills the field in at all. */
  applies(b: Pick<Behaviours, 'firmwarePciDefaults'>): boolean;
  /** Whether KubeVirt would give the desired VM the baseline's value (desired as filled so far). */
  sameSource(desired: Obj, baseline: Obj): boolean;
}

/** A matcher names the same object on both sides (kind compared as KubeVirt reads it). */
function sameMatcher(desired: Obj, baseline: Obj, which: 'instancetype' | 'preference'): boolean {
  const d = getObj(desired, 'spec', which);
  const b = getObj(baseline, 'spec', which);
  if (d === undefined || b === undefined) return d === b;
  const name = getStr(d, 'name');
  return name !== undefined && name === getStr(b, 'name') && matcherKind(d, CANONICAL_MATCHER_KIND[which]) === matcherKind(b, CANONICAL_MATCHER_KIND[which]);
}

const always = (): boolean => true;
const fromV18 = (b: Pick<Behaviours, 'firmwarePciDefaults'>): boolean => b.firmwarePciDefaults;

/** The fields, in the order KubeVirt's webhook sets them (architecture before the machine type that depends on it). */
const FIELDS: readonly DefaultedField[] = [
  {
    keys: ['spec', 'instancetype', 'kind'],
    setBy: SetBy.webhook,
    applies: always,
    // Only the cluster kind is a default; a namespaced kind in the baseline was written by someone.
    sameSource: (d, b) => getStr(b, 'spec', 'instancetype', 'kind') === DEFAULT_MATCHER_KIND.instancetype && getStr(d, 'spec', 'instancetype', 'name') !== undefined && getStr(d, 'spec', 'instancetype', 'name') === getStr(b, 'spec', 'instancetype', 'name'),
  },
  {
    keys: ['spec', 'preference', 'kind'],
    setBy: SetBy.webhook,
    applies: always,
    sameSource: (d, b) => getStr(b, 'spec', 'preference', 'kind') === DEFAULT_MATCHER_KIND.preference && getStr(d, 'spec', 'preference', 'name') !== undefined && getStr(d, 'spec', 'preference', 'name') === getStr(b, 'spec', 'preference', 'name'),
  },
  { keys: ['spec', 'instancetype', 'revisionName'], setBy: SetBy.controller, applies: always, sameSource: (d, b) => sameMatcher(d, b, 'instancetype') },
  { keys: ['spec', 'preference', 'revisionName'], setBy: SetBy.controller, applies: always, sameSource: (d, b) => sameMatcher(d, b, 'preference') },
  { keys: ['spec', 'template', 'spec', 'architecture'], setBy: SetBy.webhook, applies: always, sameSource: always },
  {
    keys: ['spec', 'template', 'spec', 'domain', 'machine', 'type'],
    setBy: SetBy.webhook,
    applies: always,
    // The default depends on the architecture and on the preference's preferredMachineType.
    sameSource: (d, b) => get(d, 'spec', 'template', 'spec', 'architecture') === get(b, 'spec', 'template', 'spec', 'architecture') && sameMatcher(d, b, 'preference'),
  },
  { keys: ['spec', 'template', 'spec', 'domain', 'firmware', 'uuid'], setBy: SetBy.webhookV18, applies: fromV18, sameSource: always },
  { keys: ['spec', 'template', 'spec', 'domain', 'firmware', 'serial'], setBy: SetBy.webhookV18, applies: fromV18, sameSource: always },
  { keys: ['spec', 'template', 'metadata', 'annotations', PCI_TOPOLOGY_ANNOTATION], setBy: SetBy.webhookV18, applies: fromV18, sameSource: always },
];

/** Paths (as vmroll prints them) of every field {@link fillClusterDefaults} may fill in. */
export const CLUSTER_DEFAULT_PATHS: readonly string[] = FIELDS.map((f) => formatPath(f.keys));

/** The desired VM projected onto the baseline's KubeVirt-set fields, and what was filled in. */
export interface ClusterDefaultsResult {
  /** A copy of the desired VM with the filled-in fields; the input is not changed. */
  vm: Obj;
  /** Each field filled in from the baseline, with its value and who in KubeVirt sets it. */
  filled: ClusterDefault[];
}

/** Leaves out: absent, null, or the empty string KubeVirt's webhook treats as unset. */
function leftOut(v: unknown): boolean {
  return v === undefined || v === null || v === '';
}

/**
 * Fills in, from the baseline (a whole VM or `{spec}`, as KubeVirt stored it), each field that
 * KubeVirt sets itself and the desired VM leaves out, where KubeVirt would give the desired VM
 * the same value. `behaviours` selects the fields of the KubeVirt release modelled.
 */
export function fillClusterDefaults(desired: Obj, baseline: Obj, behaviours: Pick<Behaviours, 'firmwarePciDefaults'>): ClusterDefaultsResult {
  const vm = clone(desired);
  const filled: ClusterDefault[] = [];
  for (const field of FIELDS) {
    if (!field.applies(behaviours)) continue;
    const stored = get(baseline, ...field.keys);
    if (leftOut(stored) || !leftOut(get(vm, ...field.keys))) continue;
    // A matcher field belongs to a matcher the desired VM has, a template field to its template: never invent either.
    const owner = field.keys[1] === 'template' ? ['spec', 'template'] : field.keys.slice(0, -1);
    if (!isObj(get(vm, ...owner))) continue;
    if (!field.sameSource(vm, baseline)) continue;
    setPath(vm, field.keys, clone(stored));
    filled.push({ path: formatPath(field.keys), value: clone(stored), setBy: field.setBy });
  }
  return { vm, filled };
}
