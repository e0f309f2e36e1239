/** `vmroll diff`: the rollout engine offline, on files, for one VM. */
import { readFile } from 'node:fs/promises';
import { parseArgs } from 'node:util';
import { INSTANCETYPE_KINDS, InvalidVersionError, type Obj, type VmPlan, type VmPlanEntry, planRollout } from '../rollout/index.ts';
import { ManifestParseError, parseYamlDocuments, type YamlDoc } from '../source/yamlDocs.ts';
import { parseOutput } from '../config.ts';
import { type CommandIO, UsageError, formatValue } from './common.ts';

/** Help text of `vmroll diff`. */
export const DIFF_HELP = `Usage: vmroll diff --baseline <vm.yaml> --desired <vm.yaml> [options]

Predicts, offline, what KubeVirt does with a change to one VirtualMachine: which fields
go live into the running instance, which wait for a restart and why, and what happens to
the RestartRequired condition.

Options:
  --baseline <file>        the VM as it was when its running instance started
  --desired <file>         the VM as it should be
  --vmi <file>             the running VirtualMachineInstance (without it nothing runs)
  --kubevirt <file>        the KubeVirt CR (strategy, feature gates, liveUpdateConfiguration,
                           status.observedKubeVirtVersion)
  --conditions <file>      YAML list of conditions already on the VM
  --instancetypes <file>   multi-document YAML of instancetypes and preferences
  --kubevirt-version <v>   KubeVirt version to model (e.g. v1.8.0); default: the CR's
                           status.observedKubeVirtVersion, else the seed model
  -o, --output text|json   text (default): one line per changed field; json: the VmPlan
  -h, --help               this text

Exit status: 0 a plan was computed; 1 KubeVirt's admission would refuse the desired VM;
2 bad input.`;

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

async function readOne(file: string, label: string, kind: string): Promise<{ doc: Obj; line: number; nameLine: number }> {
  const docs = await readDocs(file, label);
  const first = docs[0];
  if (first === undefined) throw new UsageError(`${file}: empty file, expected a ${kind} (--${label})`);
  if (docs.length > 1) throw new UsageError(`${file}:${docs[1]?.line ?? 1}: expected one ${kind}, found ${docs.length} documents (--${label})`);
  const v = first.value;
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new UsageError(`${file}:${first.line}: expected a ${kind} object (--${label})`);
  const doc = v as Obj;
  if (doc['kind'] !== kind) {
    throw new UsageError(`${file}:${first.line}: kind is ${doc['kind'] === undefined ? 'missing' : JSON.stringify(doc['kind'])}, expected ${kind} (--${label})`);
  }
  return { doc, line: first.line, nameLine: first.lineOf(['metadata', 'name']) };
}

function vmId(vm: Obj): string {
  const meta = (vm['metadata'] ?? {}) as Obj;
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

  const baseline = await readOne(values.baseline, 'baseline', 'VirtualMachine');
  const desired = await readOne(values.desired, 'desired', 'VirtualMachine');
  if (vmId(baseline.doc) !== vmId(desired.doc)) {
    throw new UsageError(`${values.desired}:${desired.nameLine}: names VM ${vmId(desired.doc)} but the baseline ${values.baseline} names ${vmId(baseline.doc)}`);
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
  try {
    result = planRollout({
      baseline: baseline.doc,
      desired: desired.doc,
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
    vms: result.admissionErrors.length > 0 ? [] : [result.plan],
    errors: result.admissionErrors.map((a) => ({
      file: values.desired ?? '',
      line: desired.line,
      path: a.path,
      message: `admission webhook would deny the update: ${a.message}`,
    })),
  };
  if (output === 'json') io.out(JSON.stringify(plan, null, 2));
  else io.out(renderTable(plan));
  return result.admissionErrors.length > 0 ? 1 : 0;
}

/** Renders a plan for people: one line per changed field. */
export function renderTable(plan: VmPlan): string {
  const lines: string[] = [];
  for (const e of plan.errors) lines.push(`error ${e.file}${e.line !== null ? `:${e.line}` : ''}: ${e.path ? `${e.path}: ` : ''}${e.message}`);
  for (const vm of plan.vms) lines.push(...renderVm(vm));
  return lines.join('\n');
}

function renderVm(vm: VmPlanEntry): string[] {
  const lines = [
    `VM ${vm.namespace}/${vm.name}: ${vm.action} · strategy ${vm.strategy} · KubeVirt ${vm.kubevirt.version ?? 'unknown'} (model ${vm.kubevirt.model})`,
    vm.restartRequired
      ? `RestartRequired: ${vm.condition} · "${vm.conditionMessage ?? ''}"`
      : `RestartRequired: ${vm.condition === 'cleared' ? 'cleared' : 'no'}`,
  ];
  if (vm.changes.length === 0) {
    lines.push('  no changes');
    return lines;
  }
  const rows = vm.changes.map((c) => [c.path, `${formatValue(c.from)} → ${formatValue(c.to)}`, c.rollout, c.why ?? '']);
  const w0 = Math.max(...rows.map((r) => r[0]?.length ?? 0), 5);
  const w1 = Math.max(...rows.map((r) => r[1]?.length ?? 0), 9);
  lines.push(`  ${'FIELD'.padEnd(w0)}  ${'FROM → TO'.padEnd(w1)}  ${'ROLLOUT'.padEnd(7)}  WHY`);
  for (const r of rows) lines.push(`  ${(r[0] ?? '').padEnd(w0)}  ${(r[1] ?? '').padEnd(w1)}  ${(r[2] ?? '').padEnd(7)}  ${r[3] ?? ''}`);
  for (const w of vm.waiting) lines.push(`  waiting: ${w.path}: ${w.message}`);
  return lines;
}
