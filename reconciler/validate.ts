// Validates documents against the project's own JSON Schemas (schemas/*.schema.json), with errors
// that name the offending field the way vmroll names fields everywhere else: spec.template.spec.domain.cpu.sockets.
import { readFileSync } from 'node:fs';
import { Ajv, type ErrorObject, type ValidateFunction } from 'ajv';
import ajvFormats from 'ajv-formats';
import type { KubeVirt, VirtualMachine, VirtualMachineInstance } from '../schemas/generated/virtualmachine.ts';
import type { VmPlan } from '../schemas/generated/vmplan.ts';

/** One way a document fails its schema. */
export interface SchemaIssue {
  /** Dotted path of the offending field, e.g. `spec.runStrategy` or `spec.template.spec.volumes[0].name`; empty for the document itself. */
  path: string;
  /** What is wrong with it. */
  message: string;
}

/** The outcome of a validation: the document, now typed, or every issue found (not just the first). */
export type ValidationResult<T> = { ok: true; value: T } | { ok: false; errors: SchemaIssue[] };

const VIRTUALMACHINE_SCHEMA_ID = 'https://vmroll.dev/schemas/virtualmachine.schema.json';
const VMPLAN_SCHEMA_ID = 'https://vmroll.dev/schemas/vmplan.schema.json';

interface Validators {
  virtualMachine: ValidateFunction;
  virtualMachineInstance: ValidateFunction;
  kubeVirt: ValidateFunction;
  vmPlan: ValidateFunction;
}

let validators: Validators | undefined;

function readSchema(file: string): Record<string, unknown> {
  return JSON.parse(readFileSync(new URL(`../schemas/${file}`, import.meta.url), 'utf8')) as Record<string, unknown>;
}

// Compiled on first use, once per process: compiling costs far more than validating.
function compiled(): Validators {
  if (validators) return validators;
  const ajv = new Ajv({ allErrors: true, strict: true, allowUnionTypes: true });
  // ajv-formats is CommonJS; under nodenext its default import is the module object.
  ajvFormats.default(ajv, ['date-time']);
  // json-schema-to-typescript's annotation for "any JSON value"; it constrains nothing.
  ajv.addVocabulary(['tsType']);
  ajv.addSchema(readSchema('virtualmachine.schema.json'));
  ajv.addSchema(readSchema('vmplan.schema.json'));
  const get = (ref: string): ValidateFunction => {
    const validate = ajv.getSchema(ref);
    if (!validate) throw new Error(`schema ${ref} not found`);
    return validate;
  };
  validators = {
    virtualMachine: get(`${VIRTUALMACHINE_SCHEMA_ID}#/definitions/VirtualMachine`),
    virtualMachineInstance: get(`${VIRTUALMACHINE_SCHEMA_ID}#/definitions/VirtualMachineInstance`),
    kubeVirt: get(`${VIRTUALMACHINE_SCHEMA_ID}#/definitions/KubeVirt`),
    vmPlan: get(VMPLAN_SCHEMA_ID),
  };
  return validators;
}

function dottedPath(segments: string[]): string {
  let out = '';
  for (const segment of segments) {
    if (/^\d+$/.test(segment)) out += `[${segment}]`;
    else if (/^[A-Za-z_$][\w$-]*$/.test(segment)) out += out === '' ? segment : `.${segment}`;
    else out += `[${JSON.stringify(segment)}]`;
  }
  return out;
}

function toIssue(error: ErrorObject): SchemaIssue {
  const segments = error.instancePath
    .split('/')
    .slice(1)
    .map((s) => s.replaceAll('~1', '/').replaceAll('~0', '~'));
  const params = error.params as Record<string, unknown>;
  let message = error.message ?? 'is invalid';
  switch (error.keyword) {
    case 'required':
      segments.push(String(params['missingProperty']));
      message = 'is required';
      break;
    case 'additionalProperties':
      segments.push(String(params['additionalProperty']));
      message = 'is not allowed here';
      break;
    case 'enum':
      message = `must be one of ${(params['allowedValues'] as unknown[]).map((v) => JSON.stringify(v)).join(', ')}`;
      break;
    case 'const':
      message = `must be ${JSON.stringify(params['allowedValue'])}`;
      break;
    case 'pattern':
      if (error.schemaPath.endsWith('/definitions/Quantity/pattern')) {
        message = 'must be a Kubernetes quantity such as 128Mi, 2Gi, 500m or 1.5';
      }
      break;
  }
  return { path: dottedPath(segments), message };
}

function run<T>(validate: ValidateFunction, doc: unknown): ValidationResult<T> {
  if (validate(doc)) return { ok: true, value: doc as T };
  const seen = new Set<string>();
  const errors: SchemaIssue[] = [];
  for (const issue of (validate.errors ?? []).map(toIssue)) {
    const key = `${issue.path}\n${issue.message}`;
    if (seen.has(key)) continue;
    seen.add(key);
    errors.push(issue);
  }
  return { ok: false, errors };
}

/** Checks a parsed manifest against the VirtualMachine definition of schemas/virtualmachine.schema.json. */
export function validateVirtualMachine(doc: unknown): ValidationResult<VirtualMachine> {
  return run(compiled().virtualMachine, doc);
}

/** Checks a parsed object against the VirtualMachineInstance definition of schemas/virtualmachine.schema.json. */
export function validateVirtualMachineInstance(doc: unknown): ValidationResult<VirtualMachineInstance> {
  return run(compiled().virtualMachineInstance, doc);
}

/** Checks a parsed object against the KubeVirt (CR) definition of schemas/virtualmachine.schema.json. */
export function validateKubeVirt(doc: unknown): ValidationResult<KubeVirt> {
  return run(compiled().kubeVirt, doc);
}

/** Checks a plan (e.g. `vmroll plan --output json`) against schemas/vmplan.schema.json. */
export function validateVmPlan(doc: unknown): ValidationResult<VmPlan> {
  return run(compiled().vmPlan, doc);
}
