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
