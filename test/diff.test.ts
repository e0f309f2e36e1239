/**
 * `vmroll diff` as operators read it, run through the CLI's main(): what it says without a running
 * instance, ControllerRevision baselines, fields KubeVirt fills in itself, and the README's example.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { parse, stringify } from 'yaml';
import { main } from '../reconciler/cli.ts';
import { DIFF_HELP } from '../reconciler/commands/diff.ts';
import { CLUSTER_DEFAULT_PATHS, type Obj, type VmPlan, type VmPlanEntry, behavioursFor, fillClusterDefaults, parseVersion } from '../reconciler/rollout/index.ts';
import { getAt, parsePath } from '../reconciler/rollout/paths.ts';
import { validateVmPlan } from '../reconciler/validate.ts';
import { ROOT, mergePatch } from './helpers/cases.ts';

const EX = path.join(ROOT, 'fixtures', 'examples');
const ex = (name: string): string => path.join(EX, name);
const NON_LIVE = 'a non-live-updatable field was changed in the template spec';

/** Runs `vmroll <args>` through the CLI's main() and collects what it prints. */
async function vmroll(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  const out: string[] = [];
  const err: string[] = [];
  const code = await main(args, { out: (t) => out.push(t), err: (t) => err.push(t) });
  return { code, stdout: out.join('\n'), stderr: err.join('\n') };
}

async function planOf(...args: string[]): Promise<{ plan: VmPlan; vm: VmPlanEntry }> {
  const r = await vmroll('diff', ...args, '--output', 'json');
  assert.equal(r.code, 0, r.stderr || r.stdout);
  const plan = JSON.parse(r.stdout) as VmPlan;
  const validation = validateVmPlan(plan);
  assert.ok(validation.ok, `not a VmPlan: ${JSON.stringify(validation)}`);
  assert.equal(plan.vms.length, 1, r.stdout);
  return { plan, vm: plan.vms[0] as VmPlanEntry };
}

const readYaml = (file: string): Obj => parse(readFileSync(file, 'utf8')) as Obj;

/** The rows of the table's change list: field, from → to, rollout column, why. */
function tableRows(table: string): string[] {
  const lines = table.split('\n');
  const header = lines.findIndex((l) => /^\s+FIELD\s+FROM → TO\s+/.test(l));
  if (header < 0) return [];
  return lines.slice(header + 1).filter((l) => /^ {2}spec\.|^ {2}metadata\./.test(l));
}

describe('vmroll diff', function () {
  this.timeout(60_000);
  let dir: string;
  const file = (name: string, content: string | Obj): string => {
    const p = path.join(dir, name);
    writeFileSync(p, typeof content === 'string' ? content : stringify(content));
    return p;
  };

  before(() => {
    dir = mkdtempSync(path.join(tmpdir(), 'vmroll-diff-'));
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  describe('with no --vmi nothing is running', function () {
    // Each: the inputs, and the changes expected (path → takesEffect).
    const cases: Array<{ name: string; args: () => string[]; expect: Record<string, string> }> = [
      {
        name: "the README's VM, runStrategy Always",
        args: () => ['--baseline', ex('web-baseline.yaml'), '--desired', ex('web-desired.yaml'), '--kubevirt', ex('kubevirt.yaml')],
        expect: {
          'spec.template.spec.domain.cpu.sockets': 'nextStart',
          'spec.template.spec.domain.memory.guest': 'nextStart',
          'spec.template.spec.domain.devices.disks[name=data]': 'nextStart',
          'spec.template.spec.nodeSelector["topology.kubernetes.io/zone"]': 'nextStart',
          'spec.template.spec.volumes[name=data]': 'nextStart',
        },
      },
      {
        name: 'a stopped VM under Stage on v1.7: a VM label, a non-live-updatable field, and a template label',
        args: () => {
          const stopped = mergePatch(readYaml(ex('web-baseline.yaml')), { spec: { runStrategy: 'Halted' } });
          const desired = mergePatch(stopped, {
            metadata: { labels: { tier: 'front' } },
            spec: { template: { metadata: { labels: { extra: 'yes' } }, spec: { hostname: 'web-1', domain: { cpu: { cores: 2 } } } } },
          });
          return ['--baseline', file('stopped-baseline.yaml', stopped as Obj), '--desired', file('stopped-desired.yaml', desired as Obj), '--kubevirt-version', 'v1.7.0'];
        },
        expect: {
          'metadata.labels.tier': 'vmObject',
          'spec.template.metadata.labels.extra': 'nextStart',
          'spec.template.spec.hostname': 'nextStart',
          'spec.template.spec.domain.cpu.cores': 'nextStart',
        },
      },
      {
        name: 'a VM started by this change (runStrategy Halted → Always) from a ControllerRevision',
        args: () => {
          const desired = mergePatch(readYaml(ex('web-desired.yaml')), { spec: { template: { spec: { domain: { cpu: { sockets: 2 }, memory: { guest: '2Gi' } } } } } });
          const revision = readYaml(ex('web-revision.yaml'));
          ((revision['data'] as Obj)['spec'] as Obj)['runStrategy'] = 'Halted';
          return ['--baseline', file('halted-revision.yaml', revision), '--desired', file('started.yaml', desired as Obj), '--kubevirt', ex('kubevirt.yaml')];
        },
        expect: {
          'spec.runStrategy': 'vmObject',
          'spec.template.spec.domain.devices.disks[name=data]': 'nextStart',
          'spec.template.spec.nodeSelector["topology.kubernetes.io/zone"]': 'nextStart',
          'spec.template.spec.volumes[name=data]': 'nextStart',
        },
      },
    ];

    for (const c of cases) {
      it(`${c.name}: JSON has no restart and nothing on a running instance`, async () => {
        const { vm } = await planOf(...c.args());
        const shown = JSON.stringify(vm, null, 1);
        assert.deepEqual(Object.fromEntries(vm.changes.map((ch) => [ch.path, ch.takesEffect])), c.expect, shown);
        assert.equal(vm.restartRequired, false, shown);
        assert.equal(vm.condition, 'absent', shown);
        assert.equal(vm.conditionMessage, null, shown);
        assert.deepEqual(vm.reasons, [], shown);
        for (const ch of vm.changes) {
          // Only a VM-level field changes anything at once, and that is the VM object, not an instance.
          assert.equal(ch.rollout, ch.takesEffect === 'vmObject' ? 'live' : 'staged', `${ch.path}\n${shown}`);
          assert.doesNotMatch(ch.why ?? '', /running VMI|running instance|hot-?plug|migrat|restart/i, `${ch.path}\n${shown}`);
        }
        const started = vm.changes.find((ch) => ch.path === 'spec.runStrategy');
        if (started !== undefined) assert.match(started.why ?? '', /KubeVirt starts one from the template/);
      });

      it(`${c.name}: the table says so on top and on every line`, async () => {
        const r = await vmroll('diff', ...c.args());
        assert.equal(r.code, 0, r.stderr);
        const lines = r.stdout.split('\n');
        assert.equal(lines[0], 'No instance is running (no --vmi): every change takes effect at the next start of the VM; nothing is applied live and no restart is needed.');
        assert.ok(lines.includes('RestartRequired: no (nothing is running to restart)'), r.stdout);
        assert.match(r.stdout, /^ {2}FIELD\s+FROM → TO\s+TAKES EFFECT\s+WHY$/m);
        const rows = tableRows(r.stdout);
        assert.equal(rows.length, Object.keys(c.expect).length, r.stdout);
        for (const row of rows) {
          assert.match(row, /\s(next start|VM object)\s{2,}(no instance is running|VM-level field)/, row);
          assert.doesNotMatch(row, /\s(live|staged)\s|running VMI|hot-?plug|restart/i, row);
        }
      });
    }

    it('with --vmi the same change is live, so the difference comes from the VMI alone', async () => {
      const { vm } = await planOf('--baseline', ex('web-baseline.yaml'), '--desired', ex('web-desired.yaml'), '--kubevirt', ex('kubevirt.yaml'), '--vmi', ex('web-vmi.yaml'));
      assert.ok(vm.changes.length === 5 && vm.changes.every((ch) => ch.rollout === 'live' && ch.takesEffect === 'running'), JSON.stringify(vm.changes));
      const r = await vmroll('diff', '--baseline', ex('web-baseline.yaml'), '--desired', ex('web-desired.yaml'), '--kubevirt', ex('kubevirt.yaml'), '--vmi', ex('web-vmi.yaml'));
      assert.doesNotMatch(r.stdout, /No instance is running/);
      assert.match(r.stdout, /^ {2}FIELD\s+FROM → TO\s+ROLLOUT\s+WHY$/m);
    });
  });

  describe('--baseline as the ControllerRevision KubeVirt stores', function () {
    /** The ControllerRevision KubeVirt would store for a VM: its spec under data, owned by the VM. */
    const revisionOf = (vm: Obj, uid: string, generation: number): Obj => {
      const meta = vm['metadata'] as Obj;
      return {
        apiVersion: 'apps/v1',
        kind: 'ControllerRevision',
        metadata: {
          name: `revision-start-vm-${uid}-${generation}`,
          namespace: meta['namespace'],
          ownerReferences: [{ apiVersion: 'kubevirt.io/v1', kind: 'VirtualMachine', name: meta['name'], uid, controller: true, blockOwnerDeletion: true }],
        },
        revision: generation,
        data: { spec: vm['spec'] },
      };
    };

    for (const withVmi of [true, false]) {
      it(`gives the same plan as the VM it was stored from (${withVmi ? 'with' : 'without'} --vmi)`, async () => {
        const revision = file('web-baseline-revision.yaml', revisionOf(readYaml(ex('web-baseline.yaml')), '7c3e', 4));
        const rest = ['--desired', ex('web-desired.yaml'), '--kubevirt', ex('kubevirt.yaml'), ...(withVmi ? ['--vmi', ex('web-vmi.yaml')] : [])];
        const fromVm = await planOf('--baseline', ex('web-baseline.yaml'), ...rest);
        const fromRevision = await planOf('--baseline', revision, ...rest);
        assert.deepEqual(fromRevision.plan, fromVm.plan);
        assert.ok(fromVm.vm.changes.length > 0);
        const table = await vmroll('diff', '--baseline', revision, ...rest);
        assert.equal(table.code, 0, table.stderr);
        assert.match(table.stdout, /^Baseline: ControllerRevision revision-start-vm-7c3e-4 \(the VM as KubeVirt stored it at its last start\)\.$/m);
        const vmTable = await vmroll('diff', '--baseline', ex('web-baseline.yaml'), ...rest);
        assert.equal(table.stdout.split('\n').filter((l) => !l.startsWith('Baseline: ')).join('\n'), vmTable.stdout);
      });
    }

    it('fixtures/examples/web-revision.yaml, as KubeVirt v1.9 stored it, plans the same changes as web-baseline.yaml', async () => {
      const rest = ['--desired', ex('web-desired.yaml'), '--vmi', ex('web-vmi.yaml'), '--kubevirt', ex('kubevirt.yaml')];
      const fromVm = await planOf('--baseline', ex('web-baseline.yaml'), ...rest);
      const fromRevision = await planOf('--baseline', ex('web-revision.yaml'), ...rest);
      const { clusterDefaults, ...same } = fromRevision.vm;
      const { clusterDefaults: none, ...expected } = fromVm.vm;
      assert.deepEqual(same, expected);
      assert.deepEqual(none, []);
      assert.deepEqual(
        clusterDefaults?.map((d) => [d.path, d.value]),
        [
          ['spec.template.spec.architecture', 'amd64'],
          ['spec.template.spec.domain.machine.type', 'q35'],
          ['spec.template.spec.domain.firmware.uuid', '3f5d9c2e-8b7a-4e61-a0d4-1c9e7f2b6a58'],
          ['spec.template.spec.domain.firmware.serial', '6a1f0e52-2c1b-4f7e-9d43-52f3b8c1e0a9'],
          ['spec.template.metadata.annotations["kubevirt.io/pci-topology-version"]', 'v3'],
        ],
      );
    });

    // Each: what the file holds, and the one line the operator gets (file:line of the problem).
    const broken: Array<[string, string, RegExp]> = [
      [
        'no data',
        'apiVersion: apps/v1\nkind: ControllerRevision\nmetadata:\n  name: revision-start-vm-abc-2\n  namespace: shop\nrevision: 2\n',
        /no-data\.yaml:1: ControllerRevision revision-start-vm-abc-2 holds no VM spec \(no data; /,
      ],
      [
        'data without spec',
        'apiVersion: apps/v1\nkind: ControllerRevision\nmetadata:\n  name: revision-start-vm-abc-2\n  namespace: shop\nrevision: 2\ndata:\n  status: {}\n',
        /data-without-spec\.yaml:8: ControllerRevision revision-start-vm-abc-2 holds no VM spec \(no data\.spec; KubeVirt stores \{spec: <the VM's spec>\} there\) \(--baseline\)$/,
      ],
      [
        'a spec without template',
        'apiVersion: apps/v1\nkind: ControllerRevision\nmetadata:\n  name: revision-start-vm-abc-2\n  namespace: shop\nrevision: 2\ndata:\n  spec:\n    runStrategy: Always\n',
        /a-spec-without-template\.yaml:9: ControllerRevision revision-start-vm-abc-2 holds no VM spec \(no data\.spec\.template; /,
      ],
      [
        'an instancetype revision',
        'apiVersion: apps/v1\nkind: ControllerRevision\nmetadata:\n  name: revision-start-vm-abc-2\n  namespace: shop\nrevision: 2\ndata:\n  apiVersion: instancetype.kubevirt.io/v1beta1\n  kind: VirtualMachineInstancetype\n  spec:\n    cpu: {guest: 2}\n',
        /an-instancetype-revision\.yaml:9: ControllerRevision revision-start-vm-abc-2 holds a VirtualMachineInstancetype, not a VM spec \(--baseline\)$/,
      ],
      [
        'a revision that is not a start revision',
        'apiVersion: apps/v1\nkind: ControllerRevision\nmetadata:\n  name: web-u1-small-v1beta1-1\n  namespace: shop\nrevision: 1\ndata:\n  spec:\n    template: {spec: {domain: {}}}\n',
        /a-revision-that-is-not-a-start-revision\.yaml:4: ControllerRevision "web-u1-small-v1beta1-1" is not a VM start revision; KubeVirt names those revision-start-vm-<uid>-<generation> \(--baseline\)$/,
      ],
      [
        'another VM',
        stringify(revisionOf({ metadata: { name: 'db', namespace: 'shop' }, spec: { template: { spec: { domain: {} } } } }, 'd1', 1)),
        /web-desired\.yaml:\d+: names VM shop\/web but the baseline .*another-vm\.yaml is ControllerRevision revision-start-vm-d1-1 of shop\/db$/,
      ],
      [
        'the wrong apiVersion',
        'apiVersion: apps/v1beta1\nkind: ControllerRevision\nmetadata:\n  name: revision-start-vm-abc-2\n',
        /the-wrong-apiversion\.yaml:1: a ControllerRevision is apps\/v1, not "apps\/v1beta1" \(--baseline\)$/,
      ],
    ];
    for (const [what, content, message] of broken) {
      it(`refuses ${what} with one line naming file and line, exit 2`, async () => {
        const p = file(`${what.replace(/\s+/g, '-').toLowerCase()}.yaml`, content);
        const r = await vmroll('diff', '--baseline', p, '--desired', ex('web-desired.yaml'));
        assert.equal(r.code, 2, r.stdout);
        assert.equal(r.stdout, '');
        assert.equal(r.stderr.split('\n').length, 1, r.stderr);
        assert.match(r.stderr, message);
      });
    }
  });

  describe('fields KubeVirt fills in when the manifest leaves them out', function () {
    const stored = readYaml(ex('web-baseline.yaml'));
    // Each: the field as a stored VM carries it (merge patch), its printed path and value, and the KubeVirt version.
    // machine.type at v1.6.3, not v1.6.0: the example adds a hotplug volume, which v1.6.0-v1.6.2 answer with a spurious RestartRequired (fidelity fix (h)).
    const omitted: Array<{ patch: Obj; path: string; value: unknown; version: string }> = [
      { patch: { spec: { template: { spec: { architecture: 'amd64' } } } }, path: 'spec.template.spec.architecture', value: 'amd64', version: 'v1.9.0' },
      { patch: { spec: { template: { spec: { domain: { machine: { type: 'q35' } } } } } }, path: 'spec.template.spec.domain.machine.type', value: 'q35', version: 'v1.6.3' },
      { patch: { spec: { template: { spec: { domain: { firmware: { uuid: '5d2c0a8e-1b9f-4c3d-8e7a-6f5b4a3c2d1e' } } } } } }, path: 'spec.template.spec.domain.firmware.uuid', value: '5d2c0a8e-1b9f-4c3d-8e7a-6f5b4a3c2d1e', version: 'v1.8.0' },
      { patch: { spec: { template: { spec: { domain: { firmware: { serial: 'a1b2c3' } } } } } }, path: 'spec.template.spec.domain.firmware.serial', value: 'a1b2c3', version: 'v1.8.0' },
      { patch: { spec: { template: { metadata: { annotations: { 'kubevirt.io/pci-topology-version': 'v3' } } } } }, path: 'spec.template.metadata.annotations["kubevirt.io/pci-topology-version"]', value: 'v3', version: 'v1.9.0' },
    ];

    for (const o of omitted) {
      it(`${o.path} (${o.version}): left out of --desired, it is filled from the baseline, no change and no restart reason`, async () => {
        const baseline = file('stored.yaml', mergePatch(stored, o.patch) as Obj);
        const args = ['--baseline', baseline, '--desired', ex('web-desired.yaml'), '--vmi', ex('web-vmi.yaml'), '--kubevirt', ex('kubevirt.yaml'), '--kubevirt-version', o.version];
        const { vm } = await planOf(...args);
        const shown = JSON.stringify(vm, null, 1);
        assert.deepEqual(vm.clusterDefaults?.map((d) => [d.path, d.value]), [[o.path, o.value]], shown);
        assert.match(vm.clusterDefaults?.[0]?.setBy ?? '', /^KubeVirt's VM mutating webhook/);
        // Other changes may wait on older releases (the data volume's hotplug), never this field.
        assert.equal(vm.restartRequired, false, shown);
        const overlaps = (p: string): boolean => o.path.startsWith(p) || p.startsWith(o.path);
        assert.ok(!vm.reasons.some((r) => overlaps(r.path)), shown);
        assert.ok(!vm.changes.some((c) => overlaps(c.path)), shown);
        const r = await vmroll('diff', ...args);
        assert.equal(r.code, 0, r.stderr);
        assert.match(r.stdout, /^ {2}filled from the baseline \(KubeVirt sets these when a manifest leaves them out; applying keeps them, so they are no change\):$/m);
        assert.ok(r.stdout.includes(`\n    ${o.path} = ${String(o.value)} · set by KubeVirt's VM mutating webhook`), r.stdout);
        assert.match(r.stdout, /^RestartRequired: no$/m);
      });
    }

    it('before v1.8 the firmware UUID is not a webhook default: leaving it out is a change that needs a restart', async () => {
      const baseline = file('stored-uuid.yaml', mergePatch(stored, omitted[2]?.patch) as Obj);
      const { vm } = await planOf('--baseline', baseline, '--desired', ex('web-desired.yaml'), '--vmi', ex('web-vmi.yaml'), '--kubevirt', ex('kubevirt.yaml'), '--kubevirt-version', 'v1.7.0');
      assert.deepEqual(vm.clusterDefaults, []);
      assert.equal(vm.restartRequired, true);
      assert.ok(vm.reasons.some((r) => r.path.startsWith('spec.template.spec.domain.firmware') && r.message === NON_LIVE), JSON.stringify(vm.reasons));
    });

    // Each: what --desired sets explicitly, and the restart reasons that must remain.
    const explicit: Array<{ name: string; desired: Obj; reasons: string[] }> = [
      { name: 'a different machine.type', desired: { spec: { template: { spec: { domain: { machine: { type: 'pc-q35-rhel9.4.0' } } } } } }, reasons: ['spec.template.spec.domain.machine.type'] },
      // The webhook would default arm64's machine type, not q35: the baseline's value is not taken.
      // (The engine lists the removed block: machine {type: q35} → ∅.)
      { name: 'another architecture, machine.type left out', desired: { spec: { template: { spec: { architecture: 'arm64' } } } }, reasons: ['spec.template.spec.architecture', 'spec.template.spec.domain.machine'] },
      { name: 'a different firmware.uuid', desired: { spec: { template: { spec: { domain: { firmware: { uuid: '00000000-0000-4000-8000-000000000001' } } } } } }, reasons: ['spec.template.spec.domain.firmware.uuid'] },
    ];
    const defaulted = mergePatch(stored, {
      spec: { template: { spec: { architecture: 'amd64', domain: { machine: { type: 'q35' }, firmware: { uuid: '5d2c0a8e-1b9f-4c3d-8e7a-6f5b4a3c2d1e' } } } } },
    }) as Obj;
    for (const e of explicit) {
      it(`${e.name} set in --desired is still reported, with its restart reason`, async () => {
        const baseline = file('defaulted.yaml', defaulted);
        const desired = file('explicit.yaml', mergePatch(readYaml(ex('web-desired.yaml')), e.desired) as Obj);
        const args = ['--baseline', baseline, '--desired', desired, '--vmi', ex('web-vmi.yaml'), '--kubevirt', ex('kubevirt.yaml')];
        const { vm } = await planOf(...args);
        const shown = JSON.stringify(vm, null, 1);
        assert.equal(vm.restartRequired, true, shown);
        assert.equal(vm.conditionMessage, NON_LIVE, shown);
        for (const p of e.reasons) assert.ok(vm.reasons.some((r) => r.path === p && r.message === NON_LIVE), `${p}\n${shown}`);
        for (const p of e.reasons) assert.ok(!(vm.clusterDefaults ?? []).some((d) => d.path.startsWith(p)), `${p} must not be filled\n${shown}`);
        const r = await vmroll('diff', ...args);
        for (const p of e.reasons) {
          const row = tableRows(r.stdout).find((l) => l.trimStart().startsWith(`${p} `));
          assert.ok(row !== undefined, `${p}\n${r.stdout}`);
          assert.match(row, new RegExp(`\\sstaged\\s+${NON_LIVE}$`), row);
        }
        assert.match(r.stdout, new RegExp(`^RestartRequired: set · "${NON_LIVE}"$`, 'm'));
      });
    }
  });

  describe('fillClusterDefaults (rollout/, for vmroll plan to reuse)', function () {
    const v18 = behavioursFor(parseVersion('v1.8.0'));
    const v17 = behavioursFor(parseVersion('v1.7.0'));
    const vm = (spec: Obj): Obj => ({ apiVersion: 'kubevirt.io/v1', kind: 'VirtualMachine', metadata: { name: 'a', namespace: 'n' }, spec });
    const tpl = (templateSpec: Obj, metadata?: Obj): Obj => ({ template: { ...(metadata ? { metadata } : {}), spec: templateSpec } });
    const storedSpec = {
      instancetype: { name: 'u1.small', kind: 'virtualmachineclusterinstancetype', revisionName: 'a-u1.small-1' },
      preference: { name: 'fedora', kind: 'virtualmachineclusterpreference', revisionName: 'a-fedora-1' },
      ...tpl({ architecture: 'amd64', domain: { machine: { type: 'q35' }, firmware: { uuid: 'u', serial: 's' } } }, { annotations: { 'kubevirt.io/pci-topology-version': 'v3' } }),
    };

    // Each: the desired spec, the behaviours, and the paths expected filled.
    const cases: Array<{ name: string; desired: Obj; behaviours: typeof v18; filled: string[] }> = [
      { name: 'everything left out, v1.8', desired: { instancetype: { name: 'u1.small' }, preference: { name: 'fedora' }, ...tpl({ domain: {} }) }, behaviours: v18, filled: [...CLUSTER_DEFAULT_PATHS] },
      {
        name: 'everything left out, v1.7: no firmware or PCI annotation',
        desired: { instancetype: { name: 'u1.small' }, preference: { name: 'fedora' }, ...tpl({ domain: {} }) },
        behaviours: v17,
        filled: CLUSTER_DEFAULT_PATHS.filter((p) => !/firmware|pci-topology/.test(p)),
      },
      {
        name: 'another instancetype and preference: no kind, no revisionName, no machine.type (the preference may prefer another)',
        desired: { instancetype: { name: 'u1.large' }, preference: { name: 'windows' }, ...tpl({ domain: {} }) },
        behaviours: v18,
        filled: ['spec.template.spec.architecture', 'spec.template.spec.domain.firmware.uuid', 'spec.template.spec.domain.firmware.serial', 'spec.template.metadata.annotations["kubevirt.io/pci-topology-version"]'],
      },
      {
        name: 'the same matchers spelt with their kinds: revisionName is filled',
        desired: { instancetype: { name: 'u1.small', kind: 'VirtualMachineClusterInstancetype' }, preference: { name: 'fedora', kind: 'virtualmachineclusterpreferences' }, ...tpl({ domain: {} }) },
        behaviours: v17,
        filled: ['spec.instancetype.revisionName', 'spec.preference.revisionName', 'spec.template.spec.architecture', 'spec.template.spec.domain.machine.type'],
      },
      {
        name: 'no matchers in the desired VM: none invented',
        desired: tpl({ domain: {} }),
        behaviours: v17,
        filled: ['spec.template.spec.architecture'],
      },
      {
        name: 'explicit values, even empty machine blocks, stay as written',
        desired: { instancetype: { name: 'u1.small', kind: 'virtualmachineclusterinstancetype' }, preference: { name: 'fedora', kind: 'virtualmachineclusterpreference' }, ...tpl({ architecture: 's390x', domain: { machine: {}, firmware: { uuid: 'mine', serial: 'mine' } } }, { annotations: { 'kubevirt.io/pci-topology-version': 'v2' } }) },
        behaviours: v18,
        filled: ['spec.instancetype.revisionName', 'spec.preference.revisionName'],
      },
    ];
    for (const c of cases) {
      it(c.name, () => {
        const desired = vm(c.desired);
        const before = structuredClone(desired);
        const result = fillClusterDefaults(desired, vm(storedSpec), c.behaviours);
        assert.deepEqual(desired, before, 'the input is not changed');
        assert.deepEqual(result.filled.map((f) => f.path), c.filled);
        for (const p of CLUSTER_DEFAULT_PATHS) {
          const at = parsePath(p);
          const filled = result.filled.find((f) => f.path === p);
          // Filled: the stored value, listed with it; not filled: exactly as the desired VM wrote it.
          if (filled !== undefined) assert.deepEqual([getAt(result.vm, at), filled.value], [getAt(vm(storedSpec), at), getAt(vm(storedSpec), at)], p);
          else assert.deepEqual(getAt(result.vm, at), getAt(desired, at), p);
        }
      });
    }
  });

  describe('a KubeVirt release whose VM controller panics on the change', function () {
    // The README example's VM with a CD-ROM whose hot-pluggable ISO is then ejected (drive kept,
    // volume gone), under LiveUpdate: KubeVirt v1.4.0-v1.5.x panics in validLiveUpdateDisks.
    const withCdrom = (vm: Obj, volume: boolean): Obj => {
      const out = structuredClone(vm);
      const spec = getAt(out, parsePath(vm['kind'] === 'VirtualMachineInstance' ? 'spec' : 'spec.template.spec')) as Obj;
      ((spec['domain'] as Obj)['devices'] as Obj)['disks'] = [...((((spec['domain'] as Obj)['devices'] as Obj)['disks'] as Obj[]) ?? []), { name: 'cdrom', cdrom: { bus: 'sata' } }];
      if (volume) spec['volumes'] = [...((spec['volumes'] as Obj[]) ?? []), { name: 'cdrom', persistentVolumeClaim: { claimName: 'iso', hotpluggable: true } }];
      return out;
    };
    const args = (version: string): string[] => [
      '--baseline', file('cdrom-baseline.yaml', withCdrom(readYaml(ex('web-baseline.yaml')), true)),
      '--desired', file('cdrom-ejected.yaml', withCdrom(readYaml(ex('web-baseline.yaml')), false)),
      '--vmi', file('cdrom-vmi.yaml', withCdrom(readYaml(ex('web-vmi.yaml')), true)),
      '--kubevirt', file('cdrom-kubevirt.yaml', { apiVersion: 'kubevirt.io/v1', kind: 'KubeVirt', metadata: { name: 'kubevirt', namespace: 'kubevirt' }, spec: { configuration: { vmRolloutStrategy: 'LiveUpdate' } } }),
      '--kubevirt-version', version,
    ];

    it('on v1.5.3 the text says the controller panics on the ejected CD-ROM and names the fixing release', async () => {
      const r = await vmroll('diff', ...args('v1.5.3'));
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stdout, /^ {2}waiting: spec\.template\.spec\.domain\.devices\.disks\[name=cdrom\]: KubeVirt's VM controller panics on this VM and never finishes its sync: .*fixed in v1\.6\.0/m);
      const { vm } = await planOf(...args('v1.5.3'));
      assert.equal(vm.restartRequired, false);
      assert.equal(vm.waiting.length, 1);
    });

    it('on v1.6.0 nothing panics', async () => {
      const r = await vmroll('diff', ...args('v1.6.0'));
      assert.equal(r.code, 0, r.stderr);
      assert.doesNotMatch(r.stdout, /panics/);
    });
  });

  describe('help and the README', function () {
    it('--help documents ControllerRevision baselines, the no-VMI case and every field filled from the baseline', async () => {
      const r = await vmroll('diff', '--help');
      assert.equal(r.code, 0);
      assert.equal(r.stdout, DIFF_HELP);
      assert.match(r.stdout, /ControllerRevision/);
      assert.match(r.stdout, /revision-start-vm-<uid>-<generation>/);
      assert.match(r.stdout, /Without it no instance is\s+running: every change takes effect at the VM's next start,\s+nothing is applied live and no restart is needed/);
      assert.match(r.stdout, /filled from the baseline/);
      const flat = r.stdout.replace(/\s+/g, ' ');
      for (const p of ['spec.template.spec.architecture', 'spec.template.spec.domain.machine.type', 'spec.instancetype.kind', 'spec.preference.kind', 'revisionName', 'firmware.uuid', '.serial', 'kubevirt.io/pci-topology-version', 'v1.8']) {
        assert.ok(flat.includes(p), `${p} in --help`);
      }
    });

    it("the README's vmroll diff commands run as printed, in a shell and through main()", async function () {
      this.timeout(240_000);
      const readme = readFileSync(path.join(ROOT, 'README.md'), 'utf8');
      const section = readme.slice(readme.indexOf('## `vmroll diff`'), readme.indexOf('## How the engine decides'));
      const block = /```sh\n([\s\S]*?)```/.exec(section)?.[1];
      assert.ok(block !== undefined, 'a sh block in the README section');
      const commands = block.replace(/\\\n\s*/g, '').trim().split('\n');
      assert.equal(commands.length, 2, block);
      const outputs: string[] = [];
      for (const command of commands) {
        assert.match(command, /^npx vmroll diff /);
        assert.doesNotMatch(command, /#|['"$`]/, 'plain words only, so splitting on spaces is what the shell does');
        const r = await vmroll(...command.replace(/^npx vmroll /, '').split(/\s+/));
        assert.equal(r.code, 0, `${command}\n${r.stderr}`);
        outputs.push(r.stdout);
      }
      assert.match(outputs[0] ?? '', /spec\.template\.spec\.domain\.cpu\.sockets\s+2 → 4\s+live\s/);
      assert.match(outputs[1] ?? '', /^No instance is running \(no --vmi\)/);
      assert.match(outputs[1] ?? '', /^Baseline: ControllerRevision revision-start-vm-/m);
      assert.match(outputs[1] ?? '', /filled from the baseline/);
      // The same block in a real shell, from the repository root, prints the same.
      const { stdout } = await promisify(execFile)('bash', ['-e', '-c', block], { cwd: ROOT, timeout: 120_000 });
      assert.equal(stdout, `${outputs.join('\n')}\n`);
    });
  });
});
