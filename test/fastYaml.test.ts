import assert from 'node:assert/strict';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { planRepository, renderManifest } from '../bench/manifests.ts';
import { fastYamlStats, parseYamlDocumentsFast } from '../reconciler/source/fastYaml.ts';
import { parseYamlDocuments, type YamlDoc } from '../reconciler/source/yamlDocs.ts';
import { loadManifests, type ManifestReader } from '../reconciler/source/manifests.ts';
import { SYMLINK_MODE } from '../reconciler/source/gitSource.ts';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

/** Every key path of a value, objects and lists, plus one path past each leaf and one unknown key. */
function paths(v: unknown, at: (string | number)[] = [], out: (string | number)[][] = []): (string | number)[][] {
  out.push(at, [...at, 'no-such-key'], [...at, 7]);
  if (Array.isArray(v)) v.forEach((item, i) => paths(item, [...at, i], out));
  else if (v !== null && typeof v === 'object') for (const [k, item] of Object.entries(v)) paths(item, [...at, k], out);
  return out;
}

type Outcome = { error: unknown } | { docs: { line: number; value: unknown; lines: [string, number, number][] }[] };

function outcome(parse: typeof parseYamlDocuments, text: string, file: string): Outcome {
  let docs: YamlDoc[];
  try {
    docs = parse(text, file, 100, /\.json$/.test(file) ? 'JSON' : 'YAML');
  } catch (e) {
    return { error: e instanceof Error ? { ...e, type: e.constructor.name, text: e.message } : e };
  }
  return {
    docs: docs.map((d) => ({
      line: d.line,
      value: d.value,
      lines: paths(d.value).map((p) => [JSON.stringify(p), d.lineOf(p), d.fieldLine(p)] as [string, number, number]),
    })),
  };
}

function sameAsSlow(text: string, file: string): void {
  assert.deepStrictEqual(outcome(parseYamlDocumentsFast, text, file), outcome(parseYamlDocuments, text, file), file);
}

function yamlFiles(dir: string): string[] {
  const out: string[] = [];
  for (const name of readdirSync(dir)) {
    const p = path.join(dir, name);
    if (name === 'node_modules' || name.startsWith('.')) continue;
    if (statSync(p).isDirectory()) out.push(...yamlFiles(p));
    else if (/\.(ya?ml|json)$/.test(name)) out.push(p);
  }
  return out;
}

// Documents the fast path must either read the same or hand to the full parser.
const TRICKY: Record<string, string> = {
  'empty.yaml': '',
  'comments-only.yaml': '# nothing\n\n# here\n',
  'leading-blank.yaml': '\n\n# c\napiVersion: kubevirt.io/v1\nkind: VirtualMachine\n',
  'two-docs.yaml': 'a: 1\n---\nb: 2\n',
  'dup-key.yaml': 'a: 1\nb: 2\na: 3\n',
  'bad-indent.yaml': 'a:\n  b: 1\n c: 2\n',
  'tab.yaml': 'a:\n\tb: 1\n',
  'anchor.yaml': 'a: &x {b: 1}\nc: *x\n',
  'tag.yaml': 'a: !!str 5\n',
  'merge.yaml': 'base: {a: 1}\nm:\n  <<: {a: 2}\n',
  'core-scalars.yaml': 'a: ~\nb: True\nc: 0x1F\nd: 0o17\ne: +5\nf: .5\ng: .inf\nh: 1e3\ni: 2001-12-14\nj: "true"\nk: \'1\'\n',
  'keys.yaml': '1: a\ntrue: b\nnull: c\n"": d\n',
  'numbers.yaml': 'a: 1\nb: -2\nc: 3.25\nd: 0\ne: 12345678901234567890\nf: "007"\ng: 007\n',
  'block.yaml': 'a: |\n  #cloud-config\n  x: 1\nb: >-\n  folded\n  text\nc: {}\nd: []\ne: [1, "two", {f: g}]\n',
  'unclosed.yaml': 'a: "open\nb: 1\n',
  'scalar-doc.yaml': 'just a string\n',
  'list-doc.yaml': '- a\n- b: 1\n',
  'crlf.yaml': 'a: 1\r\nb: 2\r\n',
  'json.json': '{"apiVersion": "v1", "kind": "List", "items": [{"a": 1}, {"a": 2, "a": 3}]}',
  'json-ok.json': '{"apiVersion": "v1",\n "kind": "ConfigMap",\n "data": {"k": "v"}}\n',
  'proto.yaml': '__proto__: {a: 1}\nb: 2\n',
  'doc-end.yaml': 'a: 1\n...\n',
  'directive.yaml': '%YAML 1.2\n---\na: 1\n',
  'number-forms.yaml': 'a: -0\nb: 0.0\nc: -0.0\nd: 1.\ne: 0.1e1\nf: 1E2\ng: -1.5e-3\nh: 9007199254740993\n',
  'huge.yaml': 'a: 1e400\n',
  'odd-plain.yaml': 'a: 1_000\nb: 0b11\nc: 1:30\nd: .\ne: +.5\nf: 00\n',
  'dash-value.yaml': 'a: -\n',
  'seq-on-key-line.yaml': 'a: - b\n',
};

describe('fast YAML path (js-yaml with fallback) gives what the full parse gives', () => {
  it('on every YAML/JSON file of fixtures/ and test/: values, document lines, lineOf/fieldLine of every path, errors', () => {
    const files = [...yamlFiles(path.join(ROOT, 'fixtures')), ...yamlFiles(path.join(ROOT, 'test'))];
    assert.ok(files.length >= 10, `found ${files.length} files`);
    for (const f of files) sameAsSlow(readFileSync(f, 'utf8'), path.relative(ROOT, f));
  });

  it('on documents that must fall back or fail the same way', () => {
    for (const [file, text] of Object.entries(TRICKY)) sameAsSlow(text, file);
  });

  it('on a generated fleet of 1,000 VM manifests, taking the fast path for them', () => {
    const before = fastYamlStats.fast;
    const vms = planRepository(1000);
    for (const vm of vms) sameAsSlow(renderManifest(vm), vm.file);
    // The fleet must actually go through the fast path, or this test proves nothing about it.
    assert.equal(fastYamlStats.fast - before, vms.length);
  });

  it('on 1,500 generated manifests with 1-3 random edits each (deleted characters; inserted :, -, quotes, brackets, #, newlines, ...)', () => {
    let seed = 7;
    const rand = (): number => {
      seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
      return seed / 2 ** 32;
    };
    const inserts = [':', ' ', '-', '"', "'", '\n', '  ', '{', '}', '[', ']', ',', '#', '?', '|', '>', 'x', '1', '\\', '@', '`', ': ', '- '];
    const vms = planRepository(150);
    const before = { ...fastYamlStats };
    for (let k = 0; k < 1500; k++) {
      let text = renderManifest(vms[k % vms.length]!);
      for (let edits = 1 + Math.floor(rand() * 3); edits > 0; edits--) {
        const at = Math.floor(rand() * text.length);
        text = rand() < 0.4 ? text.slice(0, at) + text.slice(at + 1 + Math.floor(rand() * 3)) : text.slice(0, at) + inserts[Math.floor(rand() * inserts.length)] + text.slice(at);
      }
      sameAsSlow(text, `mutant-${k}.yaml`);
    }
    // Both paths must have been exercised by the mutants.
    assert.ok(fastYamlStats.fast - before.fast > 100, `${fastYamlStats.fast - before.fast} fast`);
    assert.ok(fastYamlStats.fallback - before.fallback > 100, `${fastYamlStats.fallback - before.fallback} fallback`);
  });
});

/** A generated fleet with problems mixed in: unknown fields, invalid values, duplicates, bad YAML, Lists, other kinds. */
function brokenFleet(count: number): Map<string, string> {
  const files = new Map<string, string>();
  for (const vm of planRepository(count)) {
    let text = renderManifest(vm);
    const i = vm.index;
    if (i % 50 === 1) text = text.replace('          cores: 1\n', '          cores: 1\n          socket: 2\n'); // unknown field: warning
    if (i % 70 === 2) text = text.replace(/sockets: \d+/, 'sockets: two'); // schema error at its line
    if (i % 90 === 3) text = text.replace('  runStrategy: Always\n', '  runStrategy: Sometimes\n  running: true\n');
    if (i % 110 === 4) text = text.replace('kind: VirtualMachine', 'kind: VirtualMachin'); // near miss
    if (i % 130 === 5) text = text.replace('apiVersion: kubevirt.io/v1', 'apiVersion: kubevirt.io/v2');
    if (i % 150 === 6) text = text.replace('    owner: ', '    owner: "unclosed ');
    if (i % 170 === 7) text = `# leading comment\n\n${text}`;
    if (i % 190 === 8) text = `apiVersion: v1\nkind: List\nitems:\n${text.replace(/^/gm, '  ').replace(/^  /, '- ')}`;
    if (i % 210 === 9) text = `${text}---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: x${i}\n`;
    if (i % 230 === 10) text = text.replace('  namespace: team-', '  namespace: Team_');
    files.set(vm.file, text);
    if (i % 97 === 11) files.set(vm.file.replace('.yaml', '-copy.yml'), text); // the same VM twice
  }
  files.set('vms/notes.json', '{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "n"}}');
  files.set('vms/bad.json', '{"apiVersion": "v1", "kind": ');
  return files;
}

function memoryReader(files: Map<string, string>): ManifestReader {
  const byOid = new Map([...files].map(([file, text], i) => [`oid-${i}`, { file, text }]));
  return {
    listFiles: () => Promise.resolve([...byOid].map(([oid, { file }]) => ({ path: file, oid, mode: file.endsWith('.link.yaml') ? SYMLINK_MODE : 0o100644 }))),
    changedPaths: () => Promise.resolve([]),
    readBlob: ({ oid }) => Promise.resolve(new TextEncoder().encode(byOid.get(oid)?.text ?? '')),
  };
}

describe('loadManifests: the same ManifestSet with either YAML parse', () => {
  for (const strict of [false, true]) {
    it(`on a 600-VM fleet with errors and warnings mixed in${strict ? ' (strict)' : ''}: VMs, errors, warnings, lines`, async () => {
      const files = brokenFleet(600);
      const fast = await loadManifests({ source: memoryReader(files), commit: 'c1', strict, yamlParser: 'fast' });
      const full = await loadManifests({ source: memoryReader(files), commit: 'c1', strict, yamlParser: 'full' });
      assert.deepStrictEqual(fast, full);
      // The inputs must exercise what is compared: VMs, errors and warnings with lines beyond 1.
      assert.ok(full.vms.length > 400, `${full.vms.length} VMs`);
      assert.ok(full.errors.length > 20 && full.errors.some((e) => e.line > 20), `${full.errors.length} errors`);
      if (!strict) assert.ok(full.warnings.length > 5 && full.warnings.some((w) => w.line > 20), `${full.warnings.length} warnings`);
    });
  }
});
