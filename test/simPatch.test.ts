/** The simulator's patch arithmetic: JSON patch, merge patch, server-side apply and managedFields of ordinary writes. */
import assert from 'node:assert/strict';
import {
  type ApplyConflict,
  type ManagedFieldsEntry,
  PatchError,
  applyJsonPatch,
  applyMergePatch,
  recordUpdate,
  serverSideApply,
} from '../reconciler/cluster/sim/patch.ts';
import type { Obj } from '../reconciler/rollout/index.ts';

const T0 = '2025-01-01T00:00:00Z';
const T1 = '2025-01-01T00:01:00Z';
const T2 = '2025-01-01T00:02:00Z';

/** The VM vmroll would apply; `spec` and `labels` override parts of it. */
function desired(opts: { runStrategy?: string; sockets?: number; labels?: Obj | null; volumes?: unknown[] } = {}): Obj {
  const metadata: Obj = { name: 'testvm', namespace: 'default' };
  if (opts.labels !== null) metadata['labels'] = opts.labels ?? { app: 'web' };
  return {
    apiVersion: 'kubevirt.io/v1',
    kind: 'VirtualMachine',
    metadata,
    spec: {
      runStrategy: opts.runStrategy ?? 'Always',
      template: {
        spec: {
          domain: { cpu: { sockets: opts.sockets ?? 2 } },
          volumes: opts.volumes ?? [{ name: 'root', containerDisk: { image: 'fedora' } }],
        },
      },
    },
  };
}

/** What the server adds on create; SSA must leave these alone. */
function stored(o: Obj): Obj {
  const meta = o['metadata'] as Obj;
  return { ...o, metadata: { ...meta, uid: 'u-1', resourceVersion: '7', generation: 1, creationTimestamp: T0 } };
}

function applyOk(live: Obj | undefined, applied: Obj, manager: string, opts: { force?: boolean; now?: string; subresource?: string } = {}): Obj {
  const r = serverSideApply(live, applied, { manager, force: opts.force ?? false, now: opts.now ?? T1, ...(opts.subresource ? { subresource: opts.subresource } : {}) });
  assert.ok(r.ok, `apply by ${manager} succeeds: ${r.ok ? '' : JSON.stringify(r.conflicts)}`);
  return r.object;
}

function applyConflicts(live: Obj, applied: Obj, manager: string): ApplyConflict[] {
  const r = serverSideApply(live, applied, { manager, force: false, now: T2 });
  assert.ok(!r.ok, `apply by ${manager} conflicts`);
  return r.conflicts;
}

const entries = (o: Obj): ManagedFieldsEntry[] => ((o['metadata'] as Obj)['managedFields'] ?? []) as ManagedFieldsEntry[];

function entry(o: Obj, manager: string, operation: 'Apply' | 'Update', subresource?: string): ManagedFieldsEntry | undefined {
  return entries(o).find((e) => e.manager === manager && e.operation === operation && e.subresource === subresource);
}

const spec = (o: Obj): Obj => o['spec'] as Obj;
const labels = (o: Obj): Obj | undefined => (o['metadata'] as Obj)['labels'] as Obj | undefined;

/** A created VM, as the store holds it after vmroll's first apply. */
const created = (): Obj => stored(applyOk(undefined, desired(), 'vmroll', { now: T0 }));

describe('simulator patches', () => {
  describe('JSON patch (RFC 6902)', () => {
    const doc = (): Obj => ({
      metadata: { name: 'vm', annotations: { 'vmroll.io/source': 'git', 'a~b': 'x' } },
      spec: { list: [1, 2, 3], runStrategy: 'Always' },
    });

    const cases: Array<{ name: string; ops: unknown[]; check: (o: Obj) => void }> = [
      { name: 'add a member', ops: [{ op: 'add', path: '/spec/running', value: false }], check: (o) => assert.equal(spec(o)['running'], false) },
      { name: 'add appends with -', ops: [{ op: 'add', path: '/spec/list/-', value: 4 }], check: (o) => assert.deepEqual(spec(o)['list'], [1, 2, 3, 4]) },
      { name: 'add inserts at an index', ops: [{ op: 'add', path: '/spec/list/1', value: 9 }], check: (o) => assert.deepEqual(spec(o)['list'], [1, 9, 2, 3]) },
      { name: 'add at the end index', ops: [{ op: 'add', path: '/spec/list/3', value: 9 }], check: (o) => assert.deepEqual(spec(o)['list'], [1, 2, 3, 9]) },
      { name: 'remove an array item', ops: [{ op: 'remove', path: '/spec/list/0' }], check: (o) => assert.deepEqual(spec(o)['list'], [2, 3]) },
      { name: 'replace keeps key order', ops: [{ op: 'replace', path: '/spec/list', value: [] }], check: (o) => assert.deepEqual(Object.keys(spec(o)), ['list', 'runStrategy']) },
      {
        name: '~1 escapes a slash',
        ops: [{ op: 'replace', path: '/metadata/annotations/vmroll.io~1source', value: 'oci' }],
        check: (o) => assert.equal(((o['metadata'] as Obj)['annotations'] as Obj)['vmroll.io/source'], 'oci'),
      },
      {
        name: '~0 escapes a tilde (and ~01 is "~1", not "/")',
        ops: [
          { op: 'remove', path: '/metadata/annotations/a~0b' },
          { op: 'add', path: '/metadata/annotations/x~01', value: 'y' },
        ],
        check: (o) => assert.deepEqual((o['metadata'] as Obj)['annotations'], { 'vmroll.io/source': 'git', 'x~1': 'y' }),
      },
      {
        name: 'move',
        ops: [{ op: 'move', from: '/spec/runStrategy', path: '/metadata/runStrategy' }],
        check: (o) => {
          assert.equal(spec(o)['runStrategy'], undefined);
          assert.equal((o['metadata'] as Obj)['runStrategy'], 'Always');
        },
      },
      {
        name: 'copy is a deep copy',
        ops: [
          { op: 'copy', from: '/spec/list', path: '/spec/other' },
          { op: 'add', path: '/spec/other/-', value: 4 },
        ],
        check: (o) => {
          assert.deepEqual(spec(o)['list'], [1, 2, 3]);
          assert.deepEqual(spec(o)['other'], [1, 2, 3, 4]);
        },
      },
      {
        name: 'a passing test guards the next op',
        ops: [
          { op: 'test', path: '/spec', value: { runStrategy: 'Always', list: [1, 2, 3] } },
          { op: 'replace', path: '/spec/runStrategy', value: 'Halted' },
        ],
        check: (o) => assert.equal(spec(o)['runStrategy'], 'Halted'),
      },
      { name: 'replace the root', ops: [{ op: 'replace', path: '', value: { a: 1 } }], check: (o) => assert.deepEqual(o, { a: 1 }) },
    ];
    for (const c of cases) {
      it(c.name, () => {
        const input = doc();
        c.check(applyJsonPatch(input, c.ops));
        assert.deepEqual(input, doc(), 'input untouched');
      });
    }

    const failures: Array<{ name: string; ops: unknown; reason: 'BadRequest' | 'Invalid' }> = [
      { name: 'failing test', ops: [{ op: 'test', path: '/spec/runStrategy', value: 'Halted' }], reason: 'Invalid' },
      { name: 'test of a missing path', ops: [{ op: 'test', path: '/spec/nope', value: null }], reason: 'Invalid' },
      { name: 'remove a missing member', ops: [{ op: 'remove', path: '/spec/nope' }], reason: 'Invalid' },
      { name: 'replace a missing member', ops: [{ op: 'replace', path: '/spec/nope', value: 1 }], reason: 'Invalid' },
      { name: 'add under a missing parent', ops: [{ op: 'add', path: '/status/phase', value: 'Running' }], reason: 'Invalid' },
      { name: 'index past the end', ops: [{ op: 'add', path: '/spec/list/4', value: 1 }], reason: 'Invalid' },
      { name: 'leading-zero index', ops: [{ op: 'remove', path: '/spec/list/01' }], reason: 'Invalid' },
      { name: 'move into its own child', ops: [{ op: 'move', from: '/spec', path: '/spec/inner' }], reason: 'Invalid' },
      { name: 'body is an object', ops: { op: 'add', path: '/a', value: 1 }, reason: 'BadRequest' },
      { name: 'unknown op', ops: [{ op: 'merge', path: '/a', value: 1 }], reason: 'BadRequest' },
      { name: 'add without value', ops: [{ op: 'add', path: '/a' }], reason: 'BadRequest' },
      { name: 'pointer without leading slash', ops: [{ op: 'remove', path: 'spec' }], reason: 'BadRequest' },
      { name: 'bad ~ escape', ops: [{ op: 'remove', path: '/a~2' }], reason: 'BadRequest' },
      { name: 'malformed op after a good one', ops: [{ op: 'replace', path: '/spec/runStrategy', value: 'Halted' }, 7], reason: 'BadRequest' },
    ];
    for (const f of failures) {
      it(`rejects: ${f.name} → ${f.reason}`, () => {
        const input = doc();
        assert.throws(
          () => applyJsonPatch(input, f.ops),
          (e: unknown) => e instanceof PatchError && e.reason === f.reason,
        );
        assert.deepEqual(input, doc(), 'nothing applied');
      });
    }
  });

  describe('JSON merge patch (RFC 7386)', () => {
    const target = (): Obj => ({ metadata: { labels: { app: 'web', tier: 'db' } }, spec: { volumes: [{ name: 'a' }, { name: 'b' }], runStrategy: 'Always' } });

    it('deletes with null, merges maps and replaces arrays and scalars', () => {
      const input = target();
      const out = applyMergePatch(input, {
        metadata: { labels: { tier: null, zone: 'a' } },
        spec: { volumes: [{ name: 'c' }], runStrategy: 'Halted', extra: { keep: 1, drop: null } },
      });
      assert.deepEqual(out, {
        metadata: { labels: { app: 'web', zone: 'a' } },
        spec: { volumes: [{ name: 'c' }], runStrategy: 'Halted', extra: { keep: 1 } },
      });
      assert.deepEqual(input, target(), 'input untouched');
      (out['metadata'] as Obj)['resourceVersion'] = '9';
      assert.equal((input['metadata'] as Obj)['resourceVersion'], undefined, 'the result shares nothing with the input');
    });

    it('a null at the top deletes a whole subtree; a non-object body is a bad request', () => {
      assert.deepEqual(applyMergePatch(target(), { spec: null }), { metadata: { labels: { app: 'web', tier: 'db' } } });
      for (const body of [[], 'x', null, 3]) {
        assert.throws(() => applyMergePatch(target(), body), (e: unknown) => e instanceof PatchError && e.reason === 'BadRequest');
      }
    });
  });

  describe('server-side apply', () => {
    it('records the applied fields on create, in Kubernetes fieldsV1 form', () => {
      const vm = applyOk(undefined, desired(), 'vmroll', { now: T0 });
      assert.equal(spec(vm)['runStrategy'], 'Always');
      assert.equal((vm['metadata'] as Obj)['name'], 'testvm');
      assert.deepEqual(entries(vm), [
        {
          manager: 'vmroll',
          operation: 'Apply',
          apiVersion: 'kubevirt.io/v1',
          time: T0,
          fieldsType: 'FieldsV1',
          fieldsV1: {
            'f:metadata': { 'f:labels': { 'f:app': {} } },
            'f:spec': {
              'f:runStrategy': {},
              'f:template': { 'f:spec': { 'f:domain': { 'f:cpu': { 'f:sockets': {} } }, 'f:volumes': {} } },
            },
          },
        },
      ]);
    });

    it('keeps server metadata and the live status, and ignores status in a main-resource apply', () => {
      const live = { ...created(), status: { printableStatus: 'Running' } };
      const out = applyOk(live, { ...desired({ sockets: 4 }), status: { printableStatus: 'Stopped' } }, 'vmroll');
      assert.deepEqual(out['status'], { printableStatus: 'Running' });
      assert.equal((out['metadata'] as Obj)['uid'], 'u-1');
      assert.equal((out['metadata'] as Obj)['resourceVersion'], '7');
      assert.equal(JSON.stringify(entry(out, 'vmroll', 'Apply')?.fieldsV1).includes('status'), false);
    });

    it('removes a field the manager stops applying, and a map left empty by it', () => {
      const out = applyOk(created(), desired({ labels: null }), 'vmroll');
      assert.equal(labels(out), undefined, 'labels map gone with its only label');
      const fields = entry(out, 'vmroll', 'Apply')?.fieldsV1 as Obj;
      assert.equal(fields['f:metadata'], undefined);
    });

    it('keeps a dropped field that another manager also owns', () => {
      const shared = applyOk(created(), { apiVersion: 'kubevirt.io/v1', kind: 'VirtualMachine', metadata: { name: 'testvm', namespace: 'default', labels: { app: 'web' } } }, 'team-labels');
      assert.ok(entry(shared, 'team-labels', 'Apply'), 'second applier recorded');
      const out = applyOk(shared, desired({ labels: null }), 'vmroll');
      assert.deepEqual(labels(out), { app: 'web' }, 'still owned by team-labels');
      assert.deepEqual(entry(out, 'team-labels', 'Apply')?.fieldsV1, { 'f:metadata': { 'f:labels': { 'f:app': {} } } });
      assert.equal((entry(out, 'vmroll', 'Apply')?.fieldsV1 as Obj)['f:metadata'], undefined);
    });

    it('shares ownership of an equal value; a later change by either applier conflicts', () => {
      const vm = created();
      const other = { apiVersion: 'kubevirt.io/v1', kind: 'VirtualMachine', metadata: { name: 'testvm' }, spec: { runStrategy: 'Always' } };
      const shared = applyOk(vm, other, 'ops-team');
      assert.deepEqual(entry(shared, 'ops-team', 'Apply')?.fieldsV1, { 'f:spec': { 'f:runStrategy': {} } });
      assert.ok((entry(shared, 'vmroll', 'Apply')?.fieldsV1 as { 'f:spec': Obj })['f:spec']['f:runStrategy'], 'vmroll keeps its share');
      assert.deepEqual(applyConflicts(shared, desired({ runStrategy: 'Halted' }), 'vmroll'), [{ manager: 'ops-team', path: '.spec.runStrategy' }]);
    });

    it('conflicts with a field kubectl edit changed, and takes it over with force', () => {
      const vm = created();
      const edited = recordUpdate(vm, applyMergePatch(vm, { spec: { runStrategy: 'Halted' } }), { manager: 'kubectl-edit', now: T1 });
      assert.deepEqual(entry(edited, 'kubectl-edit', 'Update')?.fieldsV1, { 'f:spec': { 'f:runStrategy': {} } });
      assert.equal((entry(edited, 'vmroll', 'Apply')?.fieldsV1 as { 'f:spec': Obj })['f:spec']['f:runStrategy'], undefined, 'vmroll lost it');

      assert.deepEqual(applyConflicts(edited, desired({ sockets: 4 }), 'vmroll'), [{ manager: 'kubectl-edit', path: '.spec.runStrategy' }]);
      const agreeing = applyOk(edited, desired({ runStrategy: 'Halted', sockets: 4 }), 'vmroll', { now: T2 });
      assert.ok(entry(agreeing, 'kubectl-edit', 'Update'), 'same value: kubectl-edit keeps a share');

      const forced = applyOk(edited, desired({ sockets: 4 }), 'vmroll', { force: true, now: T2 });
      assert.equal(spec(forced)['runStrategy'], 'Always');
      assert.equal(entry(forced, 'kubectl-edit', 'Update'), undefined, 'its only field moved, so the entry is gone');
      assert.ok((entry(forced, 'vmroll', 'Apply')?.fieldsV1 as { 'f:spec': Obj })['f:spec']['f:runStrategy']);
      assert.equal(entry(forced, 'vmroll', 'Apply')?.time, T2);
    });

    it('a manager dropping a field it no longer owns leaves the new owner\'s value alone', () => {
      const vm = created();
      const edited = recordUpdate(vm, applyMergePatch(vm, { spec: { runStrategy: 'Halted' } }), { manager: 'kubectl-edit', now: T1 });
      const d = desired();
      delete spec(d)['runStrategy'];
      const out = applyOk(edited, d, 'vmroll');
      assert.equal(spec(out)['runStrategy'], 'Halted');
    });

    it('is a no-op, timestamps included, when nothing changes', () => {
      const vm = created();
      assert.deepEqual(applyOk(vm, desired(), 'vmroll', { now: T2 }), vm);
    });

    it('keeps a status-subresource apply to status, in an entry marked subresource status', () => {
      const vm = created();
      const status = { printableStatus: 'Running', conditions: [{ type: 'Ready', status: 'True' }] };
      const out = applyOk(vm, { ...desired({ runStrategy: 'Halted' }), status }, 'virt-controller', { subresource: 'status' });
      assert.equal(spec(out)['runStrategy'], 'Always', 'spec in the body ignored');
      assert.deepEqual(out['status'], status);
      assert.deepEqual(entry(out, 'virt-controller', 'Apply', 'status'), {
        manager: 'virt-controller',
        operation: 'Apply',
        apiVersion: 'kubevirt.io/v1',
        time: T1,
        fieldsType: 'FieldsV1',
        fieldsV1: { 'f:status': { 'f:conditions': {}, 'f:printableStatus': {} } },
        subresource: 'status',
      });
      const again = applyOk(out, desired({ sockets: 4 }), 'vmroll', { now: T2 });
      assert.deepEqual(again['status'], status, 'a main apply keeps status and its owner');
      assert.ok(entry(again, 'virt-controller', 'Apply', 'status'));
    });

    it('sorts entries: Apply first, then by manager', () => {
      let vm = created();
      vm = recordUpdate(vm, applyMergePatch(vm, { metadata: { annotations: { note: 'x' } } }), { manager: 'alpha', now: T1 });
      vm = applyOk(vm, { apiVersion: 'kubevirt.io/v1', kind: 'VirtualMachine', metadata: { name: 'testvm', labels: { z: '1' } } }, 'zeta');
      vm = applyOk(vm, { apiVersion: 'kubevirt.io/v1', kind: 'VirtualMachine', metadata: { name: 'testvm', labels: { b: '1' } } }, 'beta');
      assert.deepEqual(entries(vm).map((e) => `${e.operation}:${e.manager}`), ['Apply:beta', 'Apply:vmroll', 'Apply:zeta', 'Update:alpha']);
    });
  });

  describe('managedFields of non-apply writes', () => {
    it('moves changed fields to the writer, marks maps it created with ".", and drops removed fields everywhere', () => {
      const vm = created();
      const after = applyMergePatch(vm, {
        metadata: { labels: { app: null }, annotations: { note: 'hand-edited' } },
        spec: { template: { spec: { domain: { cpu: { sockets: 4 } } } } },
      });
      const out = recordUpdate(vm, after, { manager: 'kubectl', now: T1 });
      assert.deepEqual(entry(out, 'kubectl', 'Update'), {
        manager: 'kubectl',
        operation: 'Update',
        apiVersion: 'kubevirt.io/v1',
        time: T1,
        fieldsType: 'FieldsV1',
        fieldsV1: {
          'f:metadata': { 'f:annotations': { '.': {}, 'f:note': {} } },
          'f:spec': { 'f:template': { 'f:spec': { 'f:domain': { 'f:cpu': { 'f:sockets': {} } } } } },
        },
      });
      assert.deepEqual(entry(out, 'vmroll', 'Apply')?.fieldsV1, {
        'f:spec': { 'f:runStrategy': {}, 'f:template': { 'f:spec': { 'f:volumes': {} } } },
      });
      assert.equal(entry(out, 'vmroll', 'Apply')?.time, T0, 'a bystander keeps its timestamp');
      assert.deepEqual(labels(out), {}, 'recordUpdate never changes the object itself');
    });

    it('on create owns everything it wrote, a custom resource spec as a whole', () => {
      const out = recordUpdate(undefined, stored(desired()), { manager: 'kubectl-create', now: T0 });
      assert.deepEqual(entries(out), [
        {
          manager: 'kubectl-create',
          operation: 'Update',
          apiVersion: 'kubevirt.io/v1',
          time: T0,
          fieldsType: 'FieldsV1',
          fieldsV1: {
            'f:metadata': { 'f:labels': { '.': {}, 'f:app': {} } },
            'f:spec': {
              '.': {},
              'f:runStrategy': {},
              'f:template': { '.': {}, 'f:spec': { '.': {}, 'f:domain': { '.': {}, 'f:cpu': { '.': {}, 'f:sockets': {} } }, 'f:volumes': {} } },
            },
          },
        },
      ]);
    });

    it('records nothing for a write that changes nothing it may own', () => {
      const vm = created();
      const after = stored({ ...vm, status: { printableStatus: 'Running' } });
      (after['metadata'] as Obj)['resourceVersion'] = '8';
      assert.deepEqual(entries(recordUpdate(vm, after, { manager: 'kubectl', now: T1 })), entries(vm));
    });

    it('keeps status and main writes apart', () => {
      const vm = created();
      const statusWrite = recordUpdate(vm, { ...applyMergePatch(vm, { spec: { runStrategy: 'Halted' } }), status: { ready: true } }, { manager: 'virt-controller', now: T1, subresource: 'status' });
      assert.deepEqual(entry(statusWrite, 'virt-controller', 'Update', 'status')?.fieldsV1, { 'f:status': { '.': {}, 'f:ready': {} } });
      assert.ok((entry(statusWrite, 'vmroll', 'Apply')?.fieldsV1 as { 'f:spec': Obj })['f:spec']['f:runStrategy'], 'spec ownership untouched by a status write');

      const mainWrite = recordUpdate(statusWrite, applyMergePatch(statusWrite, { status: { ready: false } }), { manager: 'kubectl', now: T2 });
      assert.equal(entry(mainWrite, 'kubectl', 'Update'), undefined, 'a main write never owns status');
      assert.ok(entry(mainWrite, 'virt-controller', 'Update', 'status'));
    });

    it('clears ownership when the client sends a single empty entry, but not for an empty list', () => {
      const vm = created();
      const cleared = applyMergePatch(vm, { metadata: { managedFields: [{}] } });
      assert.deepEqual(entries(recordUpdate(vm, cleared, { manager: 'kubectl', now: T1 })), []);
      const emptied = applyMergePatch(vm, { metadata: { managedFields: [] } });
      assert.deepEqual(entries(recordUpdate(vm, emptied, { manager: 'kubectl', now: T1 })), entries(vm));
    });
  });
});
