// Derives the field tree of KubeVirt's VirtualMachine from the TypeScript declarations that the
// published npm package @kubevirt-ui-ext/kubevirt-api ships (generated there from KubeVirt's OpenAPI
// spec), plus the fields KubeVirt added after that package's release, listed by hand in
// schemas/kubevirt-fields.extra.json. The result, schemas/generated/kubevirt-fields.ts, lets the
// manifest loader warn about a field KubeVirt does not define (`socket:` beside `sockets:`).
import { readFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import path from 'node:path';
import ts from 'typescript';

/** The package the tree is read from, and the file in it. */
export const KUBEVIRT_API_PACKAGE = '@kubevirt-ui-ext/kubevirt-api';
const DECLARATIONS = 'dist/kubevirt/index.d.ts';
/** Where the generated tree goes and the hand-written additions it merges, relative to the project root. */
export const KUBEVIRT_FIELDS_OUTPUT = 'schemas/generated/kubevirt-fields.ts';
export const KUBEVIRT_FIELDS_EXTRA = 'schemas/kubevirt-fields.extra.json';
const ROOT_TYPE = 'V1VirtualMachine';
// Object types whose fields are not checked: what the cluster writes (status), or free-form values.
const OPAQUE: ReadonlySet<string> = new Set(['V1VirtualMachineStatus', 'K8sIoApimachineryPkgApisMetaV1FieldsV1']);

// JavaScript's reserved words: the names the package's generator renames.
const RESERVED: ReadonlySet<string> = new Set(
  'break case catch class const continue debugger default delete do else enum export extends false finally for function if import in instanceof new null return super switch this throw true try typeof var void while with yield let static implements interface package private protected public await'.split(' '),
);

/** One field's value: null for a scalar, a list of scalars or a map with free keys; otherwise the object type it holds (alone or in a list). */
type FieldType = string | null;

interface Extra {
  $comment?: string;
  /** Per type name (as the package names it): field name to the type of its value. */
  fields: Record<string, Record<string, FieldType>>;
  /** Types KubeVirt added after the package's release: type name to its fields. */
  types: Record<string, Record<string, FieldType>>;
}

function typeOf(node: ts.TypeNode | undefined, known: ReadonlySet<string>): FieldType {
  if (node === undefined) return null;
  if (ts.isTypeReferenceNode(node)) {
    const name = node.typeName.getText();
    if (name === 'Array' && node.typeArguments?.length === 1) return typeOf(node.typeArguments[0], known);
    return known.has(name) && !OPAQUE.has(name) ? name : null;
  }
  if (ts.isArrayTypeNode(node)) return typeOf(node.elementType, known);
  // `{ [key: string]: T }` maps (labels, resource requests, node selectors) take any key.
  return null;
}

/** Reads the package's declarations and returns every object type reachable from VirtualMachine with its fields, sorted. */
export async function kubevirtFieldTree(root: string): Promise<{ version: string; types: Record<string, Record<string, FieldType>> }> {
  const require = createRequire(path.join(root, 'package.json'));
  // The package exports no package.json; its `./kubevirt` entry lies in dist/kubevirt/.
  const packageDir = path.resolve(path.dirname(require.resolve(`${KUBEVIRT_API_PACKAGE}/kubevirt`)), '..', '..');
  const version = (JSON.parse(await readFile(path.join(packageDir, 'package.json'), 'utf8')) as { version: string }).version;
  const text = await readFile(path.join(packageDir, DECLARATIONS), 'utf8');
  const source = ts.createSourceFile(DECLARATIONS, text, ts.ScriptTarget.ES2022, true, ts.ScriptKind.TS);
  const interfaces = new Map<string, ts.InterfaceDeclaration>();
  for (const statement of source.statements) if (ts.isInterfaceDeclaration(statement)) interfaces.set(statement.name.text, statement);
  const extra = JSON.parse(await readFile(path.join(root, KUBEVIRT_FIELDS_EXTRA), 'utf8')) as Extra;
  const known = new Set([...interfaces.keys(), ...Object.keys(extra.types)]);

  const types: Record<string, Record<string, FieldType>> = {};
  const queue = [ROOT_TYPE];
  for (let name = queue.shift(); name !== undefined; name = queue.shift()) {
    if (types[name] !== undefined) continue;
    const fields: Record<string, FieldType> = {};
    const declaration = interfaces.get(name);
    if (declaration !== undefined) {
      for (const member of declaration.members) {
        if (!ts.isPropertySignature(member) || member.name === undefined) continue;
        const declared = ts.isStringLiteral(member.name) ? member.name.text : member.name.getText();
        // The package's generator prefixes JSON names that are reserved words (`default` becomes `_default`).
        const field = declared.startsWith('_') && RESERVED.has(declared.slice(1)) ? declared.slice(1) : declared;
        fields[field] = typeOf(member.type, known);
      }
    } else if (extra.types[name] === undefined) {
      throw new Error(`${KUBEVIRT_API_PACKAGE}: no interface ${name}`);
    }
    Object.assign(fields, extra.types[name] ?? {}, extra.fields[name] ?? {});
    types[name] = Object.fromEntries(Object.entries(fields).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
    for (const t of Object.values(fields)) if (t !== null && types[t] === undefined) queue.push(t);
  }
  for (const name of [...Object.keys(extra.fields), ...Object.keys(extra.types)]) {
    if (types[name] === undefined) throw new Error(`${KUBEVIRT_FIELDS_EXTRA}: ${name} is not reachable from ${ROOT_TYPE}`);
  }
  const sorted = Object.fromEntries(Object.entries(types).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
  return { version, types: sorted };
}

/** The text of schemas/generated/kubevirt-fields.ts. */
export async function generateKubevirtFields(root: string): Promise<string> {
  const { version, types } = await kubevirtFieldTree(root);
  const lines = [
    `// Generated by scripts/gen-kubevirt-fields.ts from ${KUBEVIRT_API_PACKAGE} ${version} (${DECLARATIONS}) and ${KUBEVIRT_FIELDS_EXTRA}. Do not edit: change those and run \`npm run gen\`.`,
    '',
    '/** The package version the field tree was read from. */',
    `export const KUBEVIRT_FIELDS_SOURCE = ${JSON.stringify(`${KUBEVIRT_API_PACKAGE}@${version}`)};`,
    '',
    `/** The root type: a VirtualMachine. */`,
    `export const KUBEVIRT_ROOT_TYPE = ${JSON.stringify(ROOT_TYPE)};`,
    '',
    '/** Every object type reachable from a VirtualMachine: per field, the object type its value holds (alone or in a list), or null for a scalar, a list of scalars, a map with free keys, or a value not looked into. */',
    'export const KUBEVIRT_FIELDS: Readonly<Record<string, Readonly<Record<string, string | null>>>> = {',
  ];
  for (const [name, fields] of Object.entries(types)) {
    lines.push(`  ${name}: {`);
    for (const [field, type] of Object.entries(fields)) lines.push(`    ${/^[A-Za-z_$][\w$]*$/.test(field) ? field : JSON.stringify(field)}: ${JSON.stringify(type)},`);
    lines.push('  },');
  }
  lines.push('};', '');
  return lines.join('\n');
}
