/** `vmroll diff`: the rollout engine offline, on files, for one VM. */
import { readFile } from 'node:fs/promises';
import { parseArgs } from 'node:util';
import {
  type ClusterDefault,
  INSTANCETYPE_KINDS,
  InvalidVersionError,
  type Obj,
  TakesEffect,
  type VmPlan,
  type VmPlanEntry,
  fillClusterDefaults,
  planRollout,
  parseStartRevisionName,
  resolveCluster,
} from '../rollout/index.ts';
import { isObj, metaOf } from '../cluster/object.ts';
import { ManifestParseError, parseYamlDocuments, type YamlDoc } from '../source/yamlDocs.ts';
import { formatValue } from '../format.ts';
import { UsageError, parseOutput } from '../usage.ts';
import type { CommandIO } from './common.ts';
import { DIFF_HELP } from './help.ts';

/** Help text of `vmroll diff`, kept in help.ts so that `vmroll help diff` loads none of this module's imports. */
export { DIFF_HELP } from './help.ts';

async function readDocs(file: string, label: string): Promise<YamlDoc[]> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    const why = code === 'ENOENT' ? 'no such file' : code === 'EACCES' ? 'permission denied' : code === 'EISDIR' ? 'is a directory' : 'cannot be read';
    throw new UsageError(`${file}: ${why} (--${label})`);
  }
  try {
    return parseYamlDocuments(text, file);
  } catch (e) {
    if (e instanceof ManifestParseError) throw new UsageError(e.message);
    throw e;
  }
}

interface Loaded {
  doc: Obj;
  line: number;
  nameLine: number;
  lineOf(keys: ReadonlyArray<string | number>): number;
}

async function readOne(file: string, label: string, kind: string | readonly string[]): Promise<Loaded> {
  const kinds = typeof kind === 'string' ? [kind] : kind;
  const wanted = kinds.join(' or ');
  const docs = await readDocs(file, label);
  const first = docs[0];
  if (first === undefined) throw new UsageError(`${file}: empty file, expected a ${wanted} (--${label})`);
  if (docs.length > 1) throw new UsageError(`${file}:${docs[1]?.line ?? 1}: expected one ${wanted}, found ${docs.length} documents (--${label})`);
  const v = first.value;
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new UsageError(`${file}:${first.line}: expected a ${wanted} object (--${label})`);
  const doc = v as Obj;
  if (!kinds.includes(String(doc['kind']))) {
    throw new UsageError(`${file}:${first.line}: kind is ${doc['kind'] === undefined ? 'missing' : JSON.stringify(doc['kind'])}, expected ${wanted} (--${label})`);
  }
  return { doc, line: first.line, nameLine: first.lineOf(['metadata', 'name']), lineOf: first.lineOf };
}

/** The baseline as the engine takes it, and what the file said it was. */
interface Baseline {
  /** A whole VM, or `{spec}` from a ControllerRevision. */
  vm: Obj;
  /** The ControllerRevision's name when the file held one. */
  revision: string | null;
  /** The VM it names: from the VM itself, or from the revision's namespace and owner reference. */
  namespace: string;
  name: string | null;
  uid: string | null;
}

/** Reads --baseline: a VirtualMachine, or the `revision-start-vm-<uid>-<generation>` ControllerRevision KubeVirt keeps. */
async function readBaseline(file: string): Promise<Baseline> {
  const loaded = await readOne(file, 'baseline', ['VirtualMachine', 'ControllerRevision']);
  const doc = loaded.doc;
  const meta = metaOf(doc);
  const namespace = typeof meta['namespace'] === 'string' ? meta['namespace'] : 'default';
  if (doc['kind'] === 'VirtualMachine') {
    return { vm: doc, revision: null, namespace, name: String(meta['name'] ?? ''), uid: typeof meta['uid'] === 'string' ? meta['uid'] : null };
  }
  const at = (keys: ReadonlyArray<string | number>): string => `${file}:${loaded.lineOf(keys)}`;
  if (doc['apiVersion'] !== undefined && doc['apiVersion'] !== 'apps/v1') {
    throw new UsageError(`${at(['apiVersion'])}: a ControllerRevision is apps/v1, not ${JSON.stringify(doc['apiVersion'])} (--baseline)`);
  }
  const revision = typeof meta['name'] === 'string' ? meta['name'] : '';
  const start = parseStartRevisionName(revision);
  if (start === null) {
    throw new UsageError(
      `${at(['metadata', 'name'])}: ControllerRevision ${JSON.stringify(revision)} is not a VM start revision; KubeVirt names those revision-start-vm-<uid>-<generation> (--baseline)`,
    );
  }
  const data = doc['data'];
  const dataKind = isObj(data) ? data['kind'] : undefined;
  if (dataKind !== undefined && dataKind !== 'VirtualMachine') {
    throw new UsageError(`${at(['data', 'kind'])}: ControllerRevision ${revision} holds a ${String(dataKind)}, not a VM spec (--baseline)`);
  }
  if (!isObj(data) || !isObj(data['spec']) || !isObj(data['spec']['template'])) {
    const what = !isObj(data) ? 'no data' : !isObj(data['spec']) ? 'no data.spec' : 'no data.spec.template';
    const where = data === undefined ? [] : isObj(data) && isObj(data['spec']) ? ['data', 'spec'] : ['data'];
    throw new UsageError(`${at(where)}: ControllerRevision ${revision} holds no VM spec (${what}; KubeVirt stores {spec: <the VM's spec>} there) (--baseline)`);
  }
  const owner = Array.isArray(meta['ownerReferences'])
    ? (meta['ownerReferences'] as unknown[]).find((o): o is Obj => isObj(o) && o['kind'] === 'VirtualMachine')
    : undefined;
  return {
    vm: data,
    revision,
    namespace,
    name: typeof owner?.['name'] === 'string' ? owner['name'] : null,
    uid: typeof owner?.['uid'] === 'string' ? owner['uid'] : start.uid,
  };
}

function vmId(vm: Obj): string {
  const meta = metaOf(vm);
  return `${typeof meta['namespace'] === 'string' ? meta['namespace'] : 'default'}/${String(meta['name'] ?? '')}`;
}

/** Runs `vmroll diff`. */
export async function runDiff(argv: string[], io: CommandIO): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: {
      baseline: { type: 'string' },
      desired: { type: 'string' },
      vmi: { type: 'string' },
      kubevirt: { type: 'string' },
      conditions: { type: 'string' },
      instancetypes: { type: 'string' },
      'kubevirt-version': { type: 'string' },
      output: { type: 'string', short: 'o' },
      help: { type: 'boolean', short: 'h' },
    },
    strict: true,
    allowPositionals: false,
  });
  if (values.help) {
    io.out(DIFF_HELP);
    return 0;
  }
  const output = parseOutput(values.output, ['text', 'json'] as const, 'text');
  if (values.baseline === undefined) throw new UsageError('--baseline <vm.yaml> is required');
  if (values.desired === undefined) throw new UsageError('--desired <vm.yaml> is required');

  const baseline = await readBaseline(values.baseline);
  const desired = await readOne(values.desired, 'desired', 'VirtualMachine');
  const desiredMeta = metaOf(desired.doc);
  if (baseline.revision === null && vmId(baseline.vm) !== vmId(desired.doc)) {
    throw new UsageError(`${values.desired}:${desired.nameLine}: names VM ${vmId(desired.doc)} but the baseline ${values.baseline} names ${vmId(baseline.vm)}`);
  }
  if (baseline.revision !== null) {
    // A revision names its VM through its namespace and owner reference (and the uid in its name).
    const ns = typeof desiredMeta['namespace'] === 'string' ? desiredMeta['namespace'] : 'default';
    const owner = `${baseline.namespace}/${baseline.name ?? '?'}`;
    if (ns !== baseline.namespace || (baseline.name !== null && baseline.name !== desiredMeta['name'])) {
      throw new UsageError(`${values.desired}:${desired.nameLine}: names VM ${vmId(desired.doc)} but the baseline ${values.baseline} is ControllerRevision ${baseline.revision} of ${owner}`);
    }
    if (typeof desiredMeta['uid'] === 'string' && baseline.uid !== null && desiredMeta['uid'] !== baseline.uid) {
      throw new UsageError(`${values.desired}:${desired.lineOf(['metadata', 'uid'])}: VM uid ${desiredMeta['uid']} but the baseline ${values.baseline} is the start revision of uid ${baseline.uid}`);
    }
  }
  const vmi = values.vmi !== undefined ? (await readOne(values.vmi, 'vmi', 'VirtualMachineInstance')).doc : null;
  if (vmi !== null && vmId(vmi) !== vmId(desired.doc)) {
    throw new UsageError(`${values.vmi}: names VMI ${vmId(vmi)} but the VM is ${vmId(desired.doc)}`);
  }
  const kubevirt = values.kubevirt !== undefined ? (await readOne(values.kubevirt, 'kubevirt', 'KubeVirt')).doc : null;
  let conditions: Obj[] | null = null;
  if (values.conditions !== undefined) {
    const docs = await readDocs(values.conditions, 'conditions');
    const list = docs[0]?.value;
    if (!Array.isArray(list) || !list.every((c) => typeof c === 'object' && c !== null && typeof (c as Obj)['type'] === 'string')) {
      throw new UsageError(`${values.conditions}:${docs[0]?.line ?? 1}: expected a YAML list of conditions, each with a type (--conditions)`);
    }
    conditions = list as Obj[];
  }
  const instancetypes: Obj[] = [];
  if (values.instancetypes !== undefined) {
    const kinds = INSTANCETYPE_KINDS;
    for (const d of await readDocs(values.instancetypes, 'instancetypes')) {
      const o = d.value as Obj;
      if (typeof o !== 'object' || o === null || !kinds.includes(String(o['kind']))) {
        throw new UsageError(`${values.instancetypes}:${d.line}: expected one of ${kinds.join(', ')}, found ${JSON.stringify((o as Obj | null)?.['kind'] ?? null)} (--instancetypes)`);
      }
      instancetypes.push(o);
    }
  }

  let result;
  let filled: ClusterDefault[];
  try {
    const version = values['kubevirt-version'];
    const { behaviours } = resolveCluster(kubevirt, version, desired.doc);
    // Compared the way KubeVirt compares the stored VM: what KubeVirt fills in is not a change.
    const projected = fillClusterDefaults(desired.doc, baseline.vm, behaviours);
    filled = projected.filled;
    result = planRollout({
      baseline: baseline.vm,
      desired: projected.vm,
      vmi,
      kubevirt,
      conditions,
      instancetypes,
      ...(values['kubevirt-version'] !== undefined ? { kubevirtVersion: values['kubevirt-version'] } : {}),
    });
  } catch (e) {
    if (e instanceof InvalidVersionError) throw new UsageError(`--kubevirt-version: ${e.message}`);
    throw e;
  }
  const plan: VmPlan = {
    commit: null,
    vms: result.admissionErrors.length > 0 ? [] : [{ ...result.plan, clusterDefaults: filled }],
    errors: result.admissionErrors.map((a) => ({
      file: values.desired ?? '',
      line: desired.line,
      path: a.path,
      message: `admission webhook would deny the update: ${a.message}`,
    })),
  };
  if (output === 'json') io.out(JSON.stringify(plan, null, 2));
  else io.out(renderTable(plan, { running: vmi !== null, baseline: baseline.revision !== null ? `ControllerRevision ${baseline.revision}` : null }));
  return result.admissionErrors.length > 0 ? 1 : 0;
}

/** What the table says about the inputs, beside the plan. */
export interface TableContext {
  /** Whether a running instance was given (--vmi). */
  running: boolean;
  /** How the baseline was given, when not as a VirtualMachine (e.g. `ControllerRevision revision-start-vm-…`). */
  baseline: string | null;
}

/** The ROLLOUT column: live and staged while an instance runs; without one, when the change takes effect. */
const WHEN: Record<TakesEffect, string> = {
  [TakesEffect.running]: 'live',
  [TakesEffect.vmObject]: 'VM object',
  [TakesEffect.nextRestart]: 'staged',
  [TakesEffect.nextStart]: 'next start',
};

/** Renders a plan for people: what it ran against, then one line per changed field. */
export function renderTable(plan: VmPlan, context: TableContext = { running: true, baseline: null }): string {
  const lines: string[] = [];
  if (!context.running) {
    lines.push('No instance is running (no --vmi): every change takes effect at the next start of the VM; nothing is applied live and no restart is needed.');
  }
  if (context.baseline !== null) lines.push(`Baseline: ${context.baseline} (the VM as KubeVirt stored it at its last start).`);
  for (const e of plan.errors) lines.push(`error ${e.file}${e.line !== null ? `:${e.line}` : ''}: ${e.path ? `${e.path}: ` : ''}${e.message}`);
  for (const vm of plan.vms) lines.push(...renderVm(vm, context));
  return lines.join('\n');
}

function renderVm(vm: VmPlanEntry, context: TableContext): string[] {
  const lines = [
    `VM ${vm.namespace}/${vm.name}: ${vm.action} · strategy ${vm.strategy} · KubeVirt ${vm.kubevirt.version ?? 'unknown'} (model ${vm.kubevirt.model})`,
    vm.restartRequired
      ? `RestartRequired: ${vm.condition} · "${vm.conditionMessage ?? ''}"`
      : `RestartRequired: ${vm.condition === 'cleared' ? 'cleared' : context.running ? 'no' : 'no (nothing is running to restart)'}`,
  ];
  // How the live changes reach the guest (a migration that may never start, an eviction).
  if (context.running && vm.disruption !== undefined && vm.changes.length > 0) lines.push(`Guest: ${vm.disruption.kind} · ${vm.disruption.summary}`);
  const filled = vm.clusterDefaults ?? [];
  if (filled.length > 0) {
    lines.push(`  filled from the baseline (KubeVirt sets these when a manifest leaves them out; applying keeps them, so they are no change):`);
    for (const f of filled) lines.push(`    ${f.path} = ${formatValue(f.value)} · set by ${f.setBy}`);
  }
  if (vm.changes.length === 0) {
    lines.push('  no changes');
    return lines;
  }
  const rows = vm.changes.map((c) => [c.path, `${formatValue(c.from)} → ${formatValue(c.to)}`, c.takesEffect !== undefined ? WHEN[c.takesEffect] : c.rollout, c.why ?? '']);
  const w0 = Math.max(...rows.map((r) => r[0]?.length ?? 0), 5);
  const w1 = Math.max(...rows.map((r) => r[1]?.length ?? 0), 9);
  const header = context.running ? 'ROLLOUT' : 'TAKES EFFECT';
  const w2 = Math.max(...rows.map((r) => r[2]?.length ?? 0), header.length);
  lines.push(`  ${'FIELD'.padEnd(w0)}  ${'FROM → TO'.padEnd(w1)}  ${header.padEnd(w2)}  WHY`);
  for (const r of rows) lines.push(`  ${(r[0] ?? '').padEnd(w0)}  ${(r[1] ?? '').padEnd(w1)}  ${(r[2] ?? '').padEnd(w2)}  ${r[3] ?? ''}`);
  for (const w of vm.waiting) lines.push(`  waiting: ${w.path}: ${w.message}`);
  return lines;
}
