/**
 * Manifest parsing, side by side in one run: the full `yaml` parse (parseYamlDocuments) against the fast
 * path (parseYamlDocumentsFast: js-yaml, with the full parse as fallback), over the generated fleet of
 * bench/manifests.ts. Rounds alternate the two, so both see the same machine; CPU = user + sys of this process.
 * Two tables: the parse alone, and loadManifests (parse + validate + assemble, blobs from memory) with
 * `yamlParser: 'full'` against `'fast'`, whose ManifestSets are also compared (MISS when they differ).
 *
 *   npx tsx bench/parse.bench.ts --compare --count 1000 --count 10000
 */
import { loadavg } from 'node:os';
import { parseArgs } from 'node:util';
import { planRepository, renderManifest } from './manifests.ts';
import { fastYamlStats, parseYamlDocumentsFast } from '../reconciler/source/fastYaml.ts';
import { parseYamlDocuments } from '../reconciler/source/yamlDocs.ts';
import { isDeepStrictEqual } from 'node:util';
import { loadManifests, type ManifestReader, type ManifestSet, type YamlParser } from '../reconciler/source/manifests.ts';

const { values } = parseArgs({ options: { compare: { type: 'boolean' }, count: { type: 'string', multiple: true }, rounds: { type: 'string' } }, strict: true });
const counts = (values.count ?? ['1000', '10000']).map(Number);
const rounds = Number(values.rounds ?? '3');
const load = (): string => loadavg().map((l) => l.toFixed(2)).join(' ');

function run(parse: typeof parseYamlDocuments, texts: { text: string; file: string }[]): { wallMs: number; cpuMs: number; check: number } {
  const t0 = performance.now();
  const c0 = process.cpuUsage();
  let check = 0;
  for (const { text, file } of texts) {
    const docs = parse(text, file);
    check += docs.length + docs[0]!.line;
  }
  const c = process.cpuUsage(c0);
  return { wallMs: performance.now() - t0, cpuMs: (c.user + c.system) / 1000, check };
}

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] as number;

console.log(`Node ${process.version}; load average before: ${load()}; ${rounds} rounds each, alternating, medians`);
console.log('| manifests | full parse (yaml) wall / CPU | fast path wall / CPU | CPU ratio | fast / fallback files | load average after |');
console.log('|---:|---:|---:|---:|---:|---|');
for (const count of counts) {
  const texts = planRepository(count).map((vm) => ({ text: renderManifest(vm), file: vm.file }));
  // One warm-up of each, not counted (JIT).
  run(parseYamlDocuments, texts.slice(0, 200));
  run(parseYamlDocumentsFast, texts.slice(0, 200));
  const slow: ReturnType<typeof run>[] = [];
  const fast: ReturnType<typeof run>[] = [];
  let fastFiles = 0;
  let fallbackFiles = 0;
  for (let r = 0; r < rounds; r++) {
    slow.push(run(parseYamlDocuments, texts));
    const f0 = { ...fastYamlStats };
    fast.push(run(parseYamlDocumentsFast, texts));
    fastFiles = fastYamlStats.fast - f0.fast;
    fallbackFiles = fastYamlStats.fallback - f0.fallback;
  }
  if (slow.some((s, i) => s.check !== fast[i]!.check)) console.log('MISS: document counts or lines differ between the paths');
  const sw = median(slow.map((s) => s.wallMs));
  const sc = median(slow.map((s) => s.cpuMs));
  const fw = median(fast.map((s) => s.wallMs));
  const fc = median(fast.map((s) => s.cpuMs));
  console.log(`| ${count} | ${sw.toFixed(0)} ms / ${sc.toFixed(0)} ms | ${fw.toFixed(0)} ms / ${fc.toFixed(0)} ms | ${(sc / fc).toFixed(1)}× | ${fastFiles} / ${fallbackFiles} | ${load()} |`);
}

function reader(texts: { text: string; file: string }[]): ManifestReader {
  const blobs = texts.map((t) => new TextEncoder().encode(t.text));
  return {
    listFiles: () => Promise.resolve(texts.map((t, i) => ({ path: t.file, oid: String(i), mode: 0o100644 }))),
    changedPaths: () => Promise.resolve([]),
    readBlob: ({ oid }) => Promise.resolve(blobs[Number(oid)] as Uint8Array),
  };
}

async function runLoad(yamlParser: YamlParser, source: ManifestReader): Promise<{ wallMs: number; cpuMs: number; set: ManifestSet }> {
  const t0 = performance.now();
  const c0 = process.cpuUsage();
  const set = await loadManifests({ source, commit: 'bench', yamlParser });
  const c = process.cpuUsage(c0);
  return { wallMs: performance.now() - t0, cpuMs: (c.user + c.system) / 1000, set };
}

console.log('');
console.log('| manifests | loadManifests, full parse: wall / CPU | loadManifests, fast path: wall / CPU | CPU ratio | same ManifestSet | load average after |');
console.log('|---:|---:|---:|---:|---|---|');
for (const count of counts) {
  const source = reader(planRepository(count).map((vm) => ({ text: renderManifest(vm), file: vm.file })));
  await runLoad('full', reader([]));
  const slow: number[][] = [];
  const fast: number[][] = [];
  let same = true;
  for (let r = 0; r < rounds; r++) {
    const a = await runLoad('full', source);
    const b = await runLoad('fast', source);
    slow.push([a.wallMs, a.cpuMs]);
    fast.push([b.wallMs, b.cpuMs]);
    if (r === 0) same = isDeepStrictEqual(a.set, b.set) && a.set.vms.length === count;
  }
  const sw = median(slow.map((x) => x[0] as number));
  const sc = median(slow.map((x) => x[1] as number));
  const fw = median(fast.map((x) => x[0] as number));
  const fc = median(fast.map((x) => x[1] as number));
  console.log(`| ${count} | ${sw.toFixed(0)} ms / ${sc.toFixed(0)} ms | ${fw.toFixed(0)} ms / ${fc.toFixed(0)} ms | ${(sc / fc).toFixed(1)}× | ${same ? 'yes' : 'MISS: differ'} | ${load()} |`);
}
