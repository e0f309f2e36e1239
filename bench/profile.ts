/** Summaries of V8 CPU profiles (.cpuprofile, as written by --cpu-prof or the inspector's Profiler): where self time goes. */
import { readFileSync } from 'node:fs';

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number; columnNumber: number };
  children?: number[];
}

interface CpuProfile {
  nodes: ProfileNode[];
  startTime: number;
  endTime: number;
  samples?: number[];
  timeDeltas?: number[];
}

/** Self time of one function or one file/package, ms. */
export interface ProfileRow {
  label: string;
  selfMs: number;
  share: number;
}

/** Where the time of one or more profiles went. */
export interface ProfileSummary {
  totalMs: number;
  functions: ProfileRow[];
  /** Self time by file within the project, by package within node_modules, else by category. */
  places: ProfileRow[];
}

function place(url: string, functionName: string): string {
  if (url === '') return functionName.startsWith('(') ? functionName : '(native/builtin)';
  const clean = url.replace(/^file:\/\//, '');
  const nm = clean.lastIndexOf('/node_modules/');
  if (nm >= 0) {
    const rest = clean.slice(nm + '/node_modules/'.length).split('/');
    return `npm:${rest[0]?.startsWith('@') ? `${rest[0]}/${rest[1] ?? ''}` : (rest[0] ?? '?')}`;
  }
  if (clean.startsWith('node:')) return clean;
  const project = clean.indexOf('/reconciler/');
  if (project >= 0) return clean.slice(project + 1);
  const bench = clean.indexOf('/bench/');
  if (bench >= 0) return clean.slice(bench + 1);
  return clean;
}

function shortUrl(url: string): string {
  const p = place(url, '');
  return p === '(native/builtin)' ? '' : p;
}

/**
 * Self time per function and per place, summed over the given profile files. Functions are labelled
 * `name file:line:column` of the code V8 ran (tsx emits each module on one line, so the column tells them apart).
 */
export function summarizeProfiles(files: readonly string[], top = 15): ProfileSummary {
  const byFunction = new Map<string, number>();
  const byPlace = new Map<string, number>();
  let totalMs = 0;
  for (const file of files) {
    const profile = JSON.parse(readFileSync(file, 'utf8')) as CpuProfile;
    const nodes = new Map(profile.nodes.map((n) => [n.id, n]));
    const samples = profile.samples ?? [];
    const deltas = profile.timeDeltas ?? [];
    for (let i = 0; i < samples.length; i++) {
      const node = nodes.get(samples[i] as number);
      // A sample's duration is the delta to the next one.
      const ms = (deltas[i + 1] ?? 0) / 1000;
      if (node === undefined) continue;
      const f = node.callFrame;
      const fnLabel = `${f.functionName || '(anonymous)'} ${shortUrl(f.url)}${f.url ? `:${f.lineNumber + 1}:${f.columnNumber + 1}` : ''}`.trim();
      byFunction.set(fnLabel, (byFunction.get(fnLabel) ?? 0) + ms);
      const p = place(f.url, f.functionName);
      byPlace.set(p, (byPlace.get(p) ?? 0) + ms);
      totalMs += ms;
    }
  }
  const rows = (m: Map<string, number>): ProfileRow[] =>
    [...m.entries()]
      .sort((a, b) => b[1] - a[1])
      .slice(0, top)
      .map(([label, selfMs]) => ({ label, selfMs, share: totalMs > 0 ? selfMs / totalMs : 0 }));
  return { totalMs, functions: rows(byFunction), places: rows(byPlace) };
}

/** The summary as text lines. */
export function formatProfileSummary(title: string, s: ProfileSummary): string {
  const line = (r: ProfileRow): string => `  ${r.selfMs.toFixed(0).padStart(7)} ms ${(r.share * 100).toFixed(1).padStart(5)}%  ${r.label}`;
  return [
    `${title}: ${s.totalMs.toFixed(0)} ms sampled`,
    ' self time by place:',
    ...s.places.map(line),
    ' self time by function:',
    ...s.functions.map(line),
  ].join('\n');
}

/**
 * Self time by owner: each sample goes to the innermost frame that is project or package code, so time
 * spent in Node internals, builtins and fs errors is charged to whoever called them
 * (GC and idle samples have no caller and stay as they are).
 */
export function summarizeByOwner(files: readonly string[], top = 40): ProfileRow[] {
  const byOwner = new Map<string, number>();
  let totalMs = 0;
  for (const file of files) {
    const profile = JSON.parse(readFileSync(file, 'utf8')) as CpuProfile;
    const nodes = new Map(profile.nodes.map((n) => [n.id, n]));
    const parent = new Map<number, number>();
    for (const n of profile.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
    const samples = profile.samples ?? [];
    const deltas = profile.timeDeltas ?? [];
    for (let i = 0; i < samples.length; i++) {
      const ms = (deltas[i + 1] ?? 0) / 1000;
      let id: number | undefined = samples[i];
      let owner: string | null = null;
      const first = id === undefined ? undefined : nodes.get(id);
      while (id !== undefined) {
        const n = nodes.get(id);
        if (n === undefined) break;
        const p = place(n.callFrame.url, n.callFrame.functionName);
        if (n.callFrame.url !== '' && !p.startsWith('node:')) {
          owner = p;
          break;
        }
        id = parent.get(id);
      }
      const label = owner ?? (first ? place(first.callFrame.url, first.callFrame.functionName) : '?');
      byOwner.set(label, (byOwner.get(label) ?? 0) + ms);
      totalMs += ms;
    }
  }
  return [...byOwner.entries()]
    .sort((a, b) => b[1] - a[1])
    .slice(0, top)
    .map(([label, selfMs]) => ({ label, selfMs, share: totalMs > 0 ? selfMs / totalMs : 0 }));
}

// The issue-15 categories, by owner (see summarizeByOwner); the first match wins.
const CATEGORIES: [string, RegExp][] = [
  ['YAML parsing (yaml, js-yaml, yamlDocs/fastYaml)', /^npm:(yaml|js-yaml)$|source\/(yamlDocs|fastYaml)\.[jt]s$/],
  ['Git object reads (isomorphic-git, pako, packReader)', /^npm:(isomorphic-git|pako)$|source\/packReader\.[jt]s$/],
  ['parse cache (manifestCache)', /source\/manifestCache\.[jt]s$/],
  ['schema validation (validate, ajv)', /^npm:ajv|reconciler\/validate\.[jt]s$/],
  ['engine (rollout/, incl. its JSON clone)', /^reconciler\/rollout\//],
  ['SSA field ownership (apply/)', /^reconciler\/apply\//],
  ['the embedded simulator (cluster/sim/)', /^reconciler\/cluster\/sim\//],
  ['HTTP client, JSON and SSA bodies (kube, kubeconfig, leaderElection, client-node, undici)', /^npm:(@kubernetes|undici)|^reconciler\/cluster\/(kube|kubeconfig|leaderElection)\.[jt]s$/],
  ['informer/cache copies and trimming (informer, cache, trim)', /^reconciler\/cluster\//],
  ['logging (pino)', /^npm:pino/],
  ['manifest loading, plan, report, controller (rest of reconciler/)', /^reconciler\//],
  ['garbage collector', /^\(garbage collector\)$/],
  ['idle', /^\(idle\)$/],
];

/** Shares of the issue-15 categories, from {@link summarizeByOwner} over every owner. */
export function categoryShares(files: readonly string[]): ProfileRow[] {
  const sums = new Map<string, number>();
  let total = 0;
  for (const r of summarizeByOwner(files, Number.MAX_SAFE_INTEGER)) {
    const cat = CATEGORIES.find(([, re]) => re.test(r.label))?.[0] ?? 'other';
    sums.set(cat, (sums.get(cat) ?? 0) + r.selfMs);
    total += r.selfMs;
  }
  return [...sums.entries()].sort((a, b) => b[1] - a[1]).map(([label, selfMs]) => ({ label, selfMs, share: total > 0 ? selfMs / total : 0 }));
}

// `npx tsx bench/profile.ts a.cpuprofile...`: the categories and the owners, as text.
if (process.argv[1] !== undefined && import.meta.url === new URL(`file://${process.argv[1]}`).href) {
  const files = process.argv.slice(2);
  const line = (r: ProfileRow): string => `  ${r.selfMs.toFixed(0).padStart(7)} ms ${(r.share * 100).toFixed(1).padStart(5)}%  ${r.label}`;
  console.log('by category:');
  for (const r of categoryShares(files)) console.log(line(r));
  console.log('by owner (innermost project/package frame):');
  for (const r of summarizeByOwner(files, 25)) console.log(line(r));
}
