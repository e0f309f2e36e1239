/**
 * The incremental assembly of a ManifestSet (reconciler/source/manifests.ts: only the files whose
 * outcome changed, and those sharing a VM key with them, are assembled again) gives the same set as
 * assembling every file: checked after every one of a few hundred random edits that add, delete,
 * break, fix, duplicate and rename VMs, in the default and the strict mode.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import type { ChangedPath } from '../reconciler/source/gitSource.ts';
import { type ManifestReader, type ManifestSet, loadManifests, reassemble } from '../reconciler/source/manifests.ts';

/** A tiny deterministic generator (mulberry32), so a failure can be replayed from its seed. */
function random(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function vmText(name: string, namespace: string, sockets: number, extra = ''): string {
  return `apiVersion: kubevirt.io/v1
kind: VirtualMachine
metadata:
  name: ${name}
  namespace: ${namespace}
spec:
  runStrategy: Always
  template:
    spec:
      domain:
        cpu:
          sockets: ${sockets}
${extra}        devices: {}
`;
}

/** Commits as path → text maps; blobs by content hash, as Git keeps them. */
class MemoryRepo implements ManifestReader {
  readonly commits = new Map<string, Map<string, string>>();
  private readonly blobs = new Map<string, string>();

  commit(files: Map<string, string>): string {
    const id = `c${this.commits.size}`;
    this.commits.set(id, new Map(files));
    for (const text of files.values()) this.blobs.set(oidOf(text), text);
    return id;
  }

  listFiles(args: { commit: string }): Promise<{ path: string; oid: string; mode: number }[]> {
    return Promise.resolve([...(this.commits.get(args.commit) ?? [])].map(([p, text]) => ({ path: p, oid: oidOf(text), mode: 0o100644 })));
  }

  changedPaths(args: { from: string; to: string }): Promise<ChangedPath[]> {
    const from = this.commits.get(args.from) ?? new Map<string, string>();
    const to = this.commits.get(args.to) ?? new Map<string, string>();
    const out: ChangedPath[] = [];
    for (const [p, text] of to) {
      const was = from.get(p);
      if (was === text) continue;
      out.push({ path: p, status: was === undefined ? 'added' : 'modified', oid: oidOf(text), mode: 0o100644 } as ChangedPath);
    }
    for (const p of from.keys()) if (!to.has(p)) out.push({ path: p, status: 'deleted', oid: null, mode: null } as ChangedPath);
    return Promise.resolve(out);
  }

  readBlob(args: { oid: string }): Promise<Uint8Array> {
    return Promise.resolve(new TextEncoder().encode(this.blobs.get(args.oid) ?? ''));
  }
}

function oidOf(text: string): string {
  return createHash('sha1').update(text).digest('hex');
}

/** The set without what differs by design between an incremental and a full load (the files read). */
function comparable(set: ManifestSet): Omit<ManifestSet, 'read' | 'incremental'> {
  const { read: _read, incremental: _incremental, ...rest } = set;
  return rest;
}

/** One random edit of the file map: what a busy repository sees, errors included. */
function edit(files: Map<string, string>, rnd: () => number, step: number): string {
  const paths = [...files.keys()];
  const pick = (): string => paths[Math.floor(rnd() * paths.length)] ?? 'vms/none.yaml';
  const name = (): string => `vm-${Math.floor(rnd() * 30)}`;
  const ns = (): string => (rnd() < 0.8 ? 'shop' : 'lab');
  const r = rnd();
  if (r < 0.2) {
    const p = pick();
    files.set(p, vmText(/name: (\S+)/.exec(files.get(p) ?? '')?.[1] ?? name(), ns(), 1 + Math.floor(rnd() * 8)));
    return `change ${p}`;
  }
  if (r < 0.3) {
    const p = `vms/new-${step}.yaml`;
    files.set(p, vmText(name(), ns(), 2));
    return `add ${p}`;
  }
  if (r < 0.4 && paths.length > 3) {
    const p = pick();
    files.delete(p);
    return `delete ${p}`;
  }
  if (r < 0.5) {
    const p = pick();
    files.set(`vms/copy-${step}.yaml`, files.get(p) ?? '');
    return `duplicate ${p}`;
  }
  if (r < 0.6) {
    const p = pick();
    files.set(p, `${files.get(p) ?? ''}  broken: [\n`);
    return `break ${p}`;
  }
  if (r < 0.67) {
    const p = pick();
    files.set(p, 'apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: notes\n');
    return `no VM in ${p}`;
  }
  if (r < 0.74) {
    const p = pick();
    files.set(p, vmText(name(), ns(), 2, '        socketz: 1\n'));
    return `unknown field in ${p}`;
  }
  if (r < 0.8) {
    const p = pick();
    files.set(p, vmText(name(), ns(), 2).replace('sockets: 2', 'sockets: many'));
    return `invalid VM in ${p}`;
  }
  if (r < 0.86) {
    const p = pick();
    files.set(p, `${vmText(name(), ns(), 3)}---\n${vmText(name(), ns(), 4)}`);
    return `two VMs in ${p}`;
  }
  if (r < 0.9) {
    const p = pick();
    files.set(p, vmText(name(), ns(), 2).replace('kind: VirtualMachine', 'kind: VirtualMachin'));
    return `kind typo in ${p}`;
  }
  // Several files at once, as a merge brings them.
  for (let i = 0; i < 3; i++) {
    const p = pick();
    files.set(p, vmText(name(), ns(), 1 + Math.floor(rnd() * 4)));
  }
  return 'three files';
}

describe('loadManifests: the incremental assembly is the full one', function () {
  this.timeout(120_000);
  for (const strict of [false, true]) {
    it(`after each of 300 random edits, the same ManifestSet as assembling every file${strict ? ' (strict)' : ''}`, async () => {
      const rnd = random(strict ? 15 : 51);
      const repo = new MemoryRepo();
      const files = new Map<string, string>();
      for (let i = 0; i < 30; i++) files.set(`vms/vm-${i}.yaml`, vmText(`vm-${i}`, 'shop', 2));
      let commit = repo.commit(files);
      let set = await loadManifests({ source: repo, commit, strict });
      assert.deepStrictEqual(comparable(set), comparable(reassemble(set)));
      let duplicates = 0;
      let held = 0;
      let errors = 0;
      for (let step = 0; step < 300; step++) {
        const what = edit(files, rnd, step);
        commit = repo.commit(files);
        const next = await loadManifests({ source: repo, commit, strict, previous: set });
        assert.equal(next.incremental, true);
        assert.deepStrictEqual(comparable(next), comparable(reassemble(next)), `step ${step} (${what})`);
        set = next;
        if (set.errors.some((e) => e.message.includes('is also defined at'))) duplicates++;
        if (set.heldVms.length > 0) held++;
        if (set.errors.length > 0) errors++;
      }
      // The edits must reach what is compared: duplicates, held VMs, errors, in many of the steps.
      assert.ok(duplicates > 50 && held > 50 && errors > 50, `duplicates ${duplicates}, held ${held}, errors ${errors}`);
      assert.ok(set.vms.length > 5, `${set.vms.length} VMs at the end`);
    });
  }

  it('a second load from the same previous set (a sync that failed after its load) assembles everything, and still agrees', async () => {
    const repo = new MemoryRepo();
    const files = new Map<string, string>();
    for (let i = 0; i < 10; i++) files.set(`vms/vm-${i}.yaml`, vmText(`vm-${i}`, 'shop', 2));
    const first = await loadManifests({ source: repo, commit: repo.commit(files) });
    files.set('vms/vm-3.yaml', vmText('vm-4', 'shop', 2));
    const commit = repo.commit(files);
    const a = await loadManifests({ source: repo, commit, previous: first });
    const b = await loadManifests({ source: repo, commit, previous: first });
    assert.deepStrictEqual(comparable(a), comparable(b));
    assert.deepStrictEqual(comparable(b), comparable(reassemble(b)));
    assert.equal(a.errors.filter((e) => e.message.includes('vm-4 is also defined')).length, 2);
  });
});
