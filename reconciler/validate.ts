// Validates documents against the project's own JSON Schemas (schemas/*.schema.json), with errors
// that name the offending field the way vmroll names fields everywhere else: spec.template.spec.domain.cpu.sockets.
import { readFileSync } from 'node:fs';
import { Ajv, type ErrorObject, type ValidateFunction } from 'ajv';
import ajvFormats from 'ajv-formats';
import type { KubeVirt, VirtualMachine, VirtualMachineInstance } from '../schemas/generated/virtualmachine.ts';
import type { VmPlan } from '../schemas/generated/vmplan.ts';
import { KUBEVIRT_FIELDS, KUBEVIRT_ROOT_TYPE } from '../schemas/generated/kubevirt-fields.ts';
import { projectPath } from './projectRoot.ts';
import { isObj } from './rollout/json.ts';

/** One way a document fails its schema. */
export interface SchemaIssue {
  /** Dotted path of the offending field, e.g. `spec.runStrategy` or `spec.template.spec.volumes[0].name`; empty for the document itself. */
  path: string;
  /** What is wrong with it. */
  message: string;
}

/** The outcome of a validation: the document, now typed, or every issue found (not just the first). */
export type ValidationResult<T> = { ok: true; value: T } | { ok: false; errors: SchemaIssue[] };

/** The largest value of a Go uint32, the type of KubeVirt's CPU topology fields. */
export const UINT32_MAX = 4294967295;

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
  return JSON.parse(readFileSync(projectPath('schemas', file), 'utf8')) as Record<string, unknown>;
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
    case 'minimum':
    case 'maximum':
      if (/\/definitions\/(CPU|VirtualMachineInstanceStatus)\/.*\/(sockets|cores|threads|maxSockets)\/(minimum|maximum)$/.test(error.schemaPath)) {
        message = `must be a whole number from 0 to ${UINT32_MAX}: KubeVirt's CPU topology fields are uint32`;
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

/**
 * Checks a parsed manifest against the VirtualMachine definition of schemas/virtualmachine.schema.json,
 * and its names and labels against the rules the Kubernetes API server enforces.
 */
export function validateVirtualMachine(doc: unknown): ValidationResult<VirtualMachine> {
  const result = run<VirtualMachine>(compiled().virtualMachine, doc);
  const meta = isObj(doc) ? objectMetaIssues(doc['metadata'], 'metadata') : [];
  const template = isObj(doc) && isObj(doc['spec']) && isObj(doc['spec']['template']) ? objectMetaIssues(doc['spec']['template']['metadata'], 'spec.template.metadata', false) : [];
  if (meta.length + template.length === 0) return result;
  const schemaIssues = result.ok ? [] : result.errors;
  // The schema's own complaint about a field (say, a label that is not a string) stays the only one for that field.
  const seen = new Set(schemaIssues.map((i) => i.path));
  return { ok: false, errors: [...schemaIssues, ...[...meta, ...template].filter((i) => !seen.has(i.path))] };
}

const DNS1123_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
const QUALIFIED_NAME = /^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$/;

/** True for a lowercase RFC 1123 label of at most 63 characters, what Kubernetes requires of a namespace. */
export function isDns1123Label(s: string): boolean {
  return s.length <= 63 && DNS1123_LABEL.test(s);
}

/** True for a lowercase RFC 1123 subdomain of at most 253 characters, what Kubernetes requires of a custom resource's name. */
export function isDns1123Subdomain(s: string): boolean {
  return s.length <= 253 && s.split('.').every((part) => DNS1123_LABEL.test(part));
}

/** True for a label or annotation key: an optional DNS subdomain prefix and `/`, then a name of at most 63 characters. */
export function isQualifiedName(s: string): boolean {
  const slash = s.lastIndexOf('/');
  const prefix = slash === -1 ? null : s.slice(0, slash);
  const name = slash === -1 ? s : s.slice(slash + 1);
  if (prefix !== null && (prefix === '' || !isDns1123Subdomain(prefix))) return false;
  return name.length <= 63 && QUALIFIED_NAME.test(name);
}

/** True for a label value: empty, or at most 63 characters of letters, digits, `-`, `_` and `.` that start and end with a letter or digit. */
export function isLabelValue(s: string): boolean {
  return s === '' || (s.length <= 63 && QUALIFIED_NAME.test(s));
}

// Long or unprintable values are shown shortened and escaped, so an error line stays one readable line.
function shown(s: string): string {
  const quoted = JSON.stringify(s.length > 40 ? `${s.slice(0, 32)}…` : s);
  return s.length > 40 ? `${quoted} (${s.length} characters)` : quoted;
}

function fieldPath(base: string, key: string): string {
  return /^[A-Za-z_$][\w$-]*$/.test(key) ? `${base}.${key}` : `${base}[${JSON.stringify(key)}]`;
}

// The checks Kubernetes' ValidateObjectMeta makes on what a manifest may set: the name (a custom
// resource's is a DNS-1123 subdomain), the namespace (a DNS-1123 label), label keys and values, annotation keys.
function objectMetaIssues(meta: unknown, base: string, named = true): SchemaIssue[] {
  if (!isObj(meta)) return [];
  const issues: SchemaIssue[] = [];
  const name = meta['name'];
  if (named && typeof name === 'string' && name !== '' && !isDns1123Subdomain(name)) {
    issues.push({
      path: `${base}.name`,
      message: `must be a lowercase RFC 1123 subdomain, as Kubernetes requires of a VirtualMachine's name (at most 253 characters: a-z, 0-9, '-' and '.', each dot-separated part starting and ending with a letter or digit); ${shown(name)} is not`,
    });
  }
  const namespace = meta['namespace'];
  if (named && typeof namespace === 'string' && namespace !== '' && !isDns1123Label(namespace)) {
    issues.push({
      path: `${base}.namespace`,
      message: `must be a lowercase RFC 1123 label, as Kubernetes requires of a namespace (at most 63 characters: a-z, 0-9 and '-', starting and ending with a letter or digit); ${shown(namespace)} is not`,
    });
  }
  for (const field of ['labels', 'annotations'] as const) {
    const map = meta[field];
    if (!isObj(map)) continue;
    for (const [key, value] of Object.entries(map)) {
      const path = fieldPath(`${base}.${field}`, key);
      if (!isQualifiedName(key)) {
        issues.push({
          path,
          message: `is not a valid ${field === 'labels' ? 'label' : 'annotation'} key: an optional DNS subdomain prefix and '/', then a name of at most 63 characters of letters, digits, '-', '_' and '.', starting and ending with a letter or digit; ${shown(key)} is not`,
        });
      } else if (field === 'labels' && typeof value === 'string' && !isLabelValue(value)) {
        issues.push({ path, message: `must be a valid label value: empty, or at most 63 characters of letters, digits, '-', '_' and '.', starting and ending with a letter or digit; ${shown(value)} is not` });
      }
    }
  }
  return issues;
}

/** A field of a VirtualMachine that KubeVirt's published API does not define. */
export interface UnknownField {
  /** Dotted path, as schema issues name fields: `spec.template.spec.domain.cpu.socket`. */
  path: string;
  /** The field's name. */
  field: string;
  /** KubeVirt's name of the object type it sits in, e.g. `CPU`. */
  type: string;
  /** The closest field of that type by edit distance, when one is close enough to be a typo. */
  suggestion: string | null;
}

/**
 * Every field of `doc`, a VirtualMachine, that KubeVirt's published API (schemas/generated/kubevirt-fields.ts)
 * does not define, in document order. Maps with free keys (labels, resource requests) and status are not looked into.
 */
export function unknownVirtualMachineFields(doc: unknown): UnknownField[] {
  const out: UnknownField[] = [];
  const visit = (value: unknown, typeName: string, segments: string[]): void => {
    if (Array.isArray(value)) {
      value.forEach((item, i) => visit(item, typeName, [...segments, String(i)]));
      return;
    }
    if (!isObj(value)) return;
    const fields = KUBEVIRT_FIELDS[typeName];
    if (fields === undefined) return;
    for (const [key, child] of Object.entries(value)) {
      if (!Object.hasOwn(fields, key)) {
        out.push({ path: dottedPath([...segments, key]), field: key, type: displayType(typeName), suggestion: closest(key, Object.keys(fields)) });
        continue;
      }
      const childType = fields[key];
      if (childType !== null && childType !== undefined) visit(child, childType, [...segments, key]);
    }
  };
  visit(doc, KUBEVIRT_ROOT_TYPE, []);
  return out;
}

// The package's type names carry their API group: V1CPU, V1beta1DataVolumeSpec, K8sIoApiCoreV1Affinity.
function displayType(name: string): string {
  return name.replace(/^K8sIo[A-Za-z]*?V1(?=[A-Z])/, '').replace(/^V1(alpha1|beta1)?(?=[A-Z])/, '');
}

/** Optimal-string-alignment distance: insertions, deletions, substitutions and swaps of neighbours each cost 1. */
export function editDistance(a: string, b: string): number {
  const rows: number[][] = Array.from({ length: a.length + 1 }, (_, i) => Array.from({ length: b.length + 1 }, (_, j) => (i === 0 ? j : j === 0 ? i : 0)));
  const at = (i: number, j: number): number => rows[i]?.[j] ?? Number.POSITIVE_INFINITY;
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      let d = Math.min(at(i - 1, j) + 1, at(i, j - 1) + 1, at(i - 1, j - 1) + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) d = Math.min(d, at(i - 2, j - 2) + 1);
      (rows[i] as number[])[j] = d;
    }
  }
  return at(a.length, b.length);
}

/**
 * The candidate `word` is most likely a typo of, or null when none is close: case is ignored, and up
 * to a third of the word's length (at least 1) may differ. Ties go to the earlier candidate.
 */
export function closest(word: string, candidates: readonly string[]): string | null {
  const limit = Math.max(1, Math.floor(word.length / 3));
  let best: string | null = null;
  let bestDistance = Number.POSITIVE_INFINITY;
  for (const candidate of candidates) {
    if (candidate === word) continue;
    const d = editDistance(word.toLowerCase(), candidate.toLowerCase());
    if (d <= limit && d < bestDistance) {
      best = candidate;
      bestDistance = d;
    }
  }
  return best;
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
