/** `vmroll` as users run it: the installed bin, exit codes, and one clear line for bad input. */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { ROOT } from './helpers/cases.ts';

const run = promisify(execFile);
const BIN = path.join(ROOT, 'bin', 'vmroll.js');
const EX = path.join(ROOT, 'fixtures', 'examples');

async function vmrollIn(cwd: string, ...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await run(process.execPath, [BIN, ...args], { cwd, timeout: 60_000 });
    return { code: 0, stdout, stderr };
  } catch (e) {
    const err = e as { code?: number; stdout?: string; stderr?: string };
    return { code: typeof err.code === 'number' ? err.code : -1, stdout: err.stdout ?? '', stderr: err.stderr ?? '' };
  }
}

function vmroll(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return vmrollIn(ROOT, ...args);
}

describe('vmroll CLI', function () {
  // Several node processes per test: each takes seconds to start on a busy machine.
  this.timeout(180_000);
  let dir: string;
  const file = (name: string, text: string): string => {
    const p = path.join(dir, name);
    writeFileSync(p, text);
    return p;
  };
  const ex = (name: string): string => path.join(EX, name);

  before(() => {
    dir = mkdtempSync(path.join(tmpdir(), 'vmroll-cli-'));
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('--help lists the commands, and each command has --help', async () => {
    const top = await vmroll('--help');
    assert.equal(top.code, 0);
    for (const name of ['run', 'demo', 'diff']) {
      assert.match(top.stdout, new RegExp(`\\n  ${name}\\s+\\S`), `${name} is listed`);
      const help = await vmroll(name, '--help');
      assert.equal(help.code, 0, name);
      assert.match(help.stdout, new RegExp(`^Usage: vmroll ${name} `), name);
    }
    const diff = await vmroll('diff', '--help');
    assert.match(diff.stdout, /--baseline <file>/);
    assert.match(diff.stdout, /--kubevirt-version/);
  });

  it('vmroll run without --repo syncs the embedded default: the example repository on the simulator', async () => {
    const r = await vmrollIn(dir, 'run', '--cluster', 'sim', '--once', '--output', 'json', '--log-level', 'silent');
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, /Created the example repository/);
    const plan = JSON.parse(r.stdout) as { commit: string; vms: Array<{ name: string; action: string }>; errors: unknown[] };
    assert.match(plan.commit, /^[0-9a-f]{40}$/);
    assert.deepEqual(plan.vms.map((v) => `${v.name}:${v.action}`), ['batch:create', 'db:create', 'web:create']);
    const again = await vmrollIn(dir, 'run', '--cluster', 'sim', '--once', '--output', 'json', '--log-level', 'silent');
    const plan2 = JSON.parse(again.stdout) as { vms: Array<{ action: string }> };
    assert.deepEqual(plan2.vms.map((v) => v.action), ['none', 'none', 'none'], 'the second run finds the simulated cluster in sync');
  });

  it('vmroll demo runs its tour and exits 0', async () => {
    const r = await vmroll('demo');
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /Step 2: A CPU hot-plug that reaches the guest by live migration/);
    // The migration step shows the plan's prediction, the vmim through its phases and the guest's new topology.
    assert.match(r.stdout, /plan: reachesGuest liveMigration .* disruption migration/);
    assert.match(r.stdout, /vmim kubevirt-workload-update-\S+: Pending → Scheduling → TargetReady → Running → Succeeded/);
    assert.match(r.stdout, /web: guest status\.currentCPUTopology\.sockets 2 → 4 · HotVCPUChange gone/);
    assert.match(r.stdout, /Step 3: A CPU hot-plug that is blocked/);
    assert.match(r.stdout, /plan: reachesGuest awaitingRestart · blockedBy notMigratable/);
    assert.match(r.stdout, /db: VMI spec 6 sockets · guest status\.currentCPUTopology\.sockets 4 \(unchanged\) · HotVCPUChange set · migrations of db: 0/);
    assert.match(r.stdout, /Step 7: A restart/);
    // The second act: a window releases queued restarts one at a time (a ManualClock, no real wait).
    assert.match(r.stdout, /waits +fleet\/app-1: restarts in the next window \(Sat 02:00–04:00 UTC\), 1 of 3 this window\n/);
    assert.match(r.stdout, /waits +fleet\/app-4: restarts in the window after next \(Sat 10 Jan 02:00–04:00 UTC\), 1 of 1 this window \(budget 3 per window\)/);
    assert.match(r.stdout, /the next window opens 2026-01-03 02:00:00 UTC · restarts pending 4/);
    const window = r.stdout.slice(r.stdout.indexOf('Step 11: The window opens'));
    const events = [...window.matchAll(/^ +(restart|back) +fleet\/(app-\d):/gm)].map((m) => `${m[1]} ${m[2]}`);
    assert.deepEqual(events, ['restart app-1', 'back app-1', 'restart app-2', 'back app-2', 'restart app-3', 'back app-3'], 'one at a time, each after the previous came back');
    assert.match(window, /restarts counted in the simulator \(new VMI per start\): app-1 1, app-2 1, app-3 1, app-4 0/);
    assert.equal((r.stdout.match(/✓ as expected/g) ?? []).length, 11);
    assert.doesNotMatch(r.stdout, /✗/);
  });

  it('an unknown command exits 2 and says so', async () => {
    const r = await vmroll('explode');
    assert.equal(r.code, 2);
    assert.match(r.stderr, /unknown command "explode"/);
  });

  it('diff --output json prints a VmPlan and exits 0', async () => {
    const r = await vmroll('diff', '--baseline', ex('web-baseline.yaml'), '--desired', ex('web-desired.yaml'), '--vmi', ex('web-vmi.yaml'), '--kubevirt', ex('kubevirt.yaml'), '--output', 'json');
    assert.equal(r.code, 0, r.stderr);
    const plan = JSON.parse(r.stdout) as { commit: null; vms: Array<{ name: string; restartRequired: boolean; changes: Array<{ path: string; rollout: string }>; reasons: unknown[] }>; errors: unknown[] };
    assert.equal(plan.commit, null);
    assert.deepEqual(plan.errors, []);
    assert.equal(plan.vms.length, 1);
    const vm = plan.vms[0]!;
    assert.equal(vm.name, 'web');
    assert.equal(vm.restartRequired, false);
    assert.deepEqual(
      vm.changes.map((c) => `${c.path} ${c.rollout}`).sort(),
      [
        'spec.template.spec.domain.cpu.sockets live',
        'spec.template.spec.domain.devices.disks[name=data] live',
        'spec.template.spec.domain.memory.guest live',
        'spec.template.spec.nodeSelector["topology.kubernetes.io/zone"] live',
        'spec.template.spec.volumes[name=data] live',
      ],
    );
  });

  it('diff --output table prints one line per changed field with from → to', async () => {
    const r = await vmroll('diff', '--baseline', ex('web-baseline.yaml'), '--desired', ex('web-desired.yaml'), '--vmi', ex('web-vmi.yaml'), '--kubevirt', ex('kubevirt.yaml'));
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /spec\.template\.spec\.domain\.cpu\.sockets\s+2 → 4\s+live/);
    assert.match(r.stdout, /spec\.template\.spec\.domain\.memory\.guest\s+2Gi → 3072Mi\s+live/);
  });

  it('--kubevirt-version selects the model: v1.8 without the gate leaves the hotplug volume staged', async () => {
    const r = await vmroll('diff', '--baseline', ex('web-baseline.yaml'), '--desired', ex('web-desired.yaml'), '--vmi', ex('web-vmi.yaml'), '--kubevirt', ex('kubevirt.yaml'), '--kubevirt-version', 'v1.8.0', '--output', 'json');
    assert.equal(r.code, 0, r.stderr);
    const vm = (JSON.parse(r.stdout) as { vms: Array<{ kubevirt: { model: string }; changes: Array<{ path: string; rollout: string }> }> }).vms[0]!;
    assert.equal(vm.kubevirt.model, 'v1.8.0');
    assert.equal(vm.changes.find((c) => c.path === 'spec.template.spec.volumes[name=data]')?.rollout, 'staged');
  });

  it('an admission rejection is an error, not a plan, and exits 1', async () => {
    const desired = file('too-many-sockets.yaml', (await import('node:fs')).readFileSync(ex('web-desired.yaml'), 'utf8').replace('sockets: 4', 'sockets: 6\n          maxSockets: 4'));
    const r = await vmroll('diff', '--baseline', ex('web-baseline.yaml'), '--desired', desired, '--kubevirt', ex('kubevirt.yaml'), '--output', 'json');
    assert.equal(r.code, 1, r.stderr);
    const plan = JSON.parse(r.stdout) as { vms: unknown[]; errors: Array<{ file: string; line: number; path: string; message: string }> };
    assert.deepEqual(plan.vms, []);
    assert.equal(plan.errors[0]?.file, desired);
    assert.equal(plan.errors[0]?.path, 'spec.template.spec.domain.cpu.sockets');
    assert.match(plan.errors[0]?.message ?? '', /Number of sockets in CPU topology is greater than the maximum sockets allowed/);
  });

  const badInput: Array<[string, () => string[], RegExp]> = [
    ['a missing file', () => ['--baseline', path.join(dir, 'nope.yaml'), '--desired', ex('web-desired.yaml')], /nope\.yaml: no such file \(--baseline\)$/],
    ['invalid YAML', () => ['--baseline', ex('web-baseline.yaml'), '--desired', file('broken.yaml', 'kind: VirtualMachine\nmetadata:\n  name: web\n  bad: [unclosed\n')], /broken\.yaml:\d+: invalid YAML: /],
    ['not a VirtualMachine', () => ['--baseline', ex('web-baseline.yaml'), '--desired', ex('web-vmi.yaml')], /web-vmi\.yaml:\d+: kind is "VirtualMachineInstance", expected VirtualMachine \(--desired\)$/],
    ['baseline and desired naming different VMs', () => ['--baseline', ex('web-baseline.yaml'), '--desired', file('other.yaml', 'apiVersion: kubevirt.io/v1\nkind: VirtualMachine\nmetadata:\n  name: db\n  namespace: shop\nspec:\n  template:\n    spec:\n      domain: {}\n')], /other\.yaml:4: names VM shop\/db but the baseline .*web-baseline\.yaml names shop\/web$/],
    ['an empty file', () => ['--baseline', ex('web-baseline.yaml'), '--desired', file('empty.yaml', '# nothing\n')], /empty\.yaml: empty file, expected a VirtualMachine \(--desired\)$/],
    ['a missing --desired', () => ['--baseline', ex('web-baseline.yaml')], /--desired <vm\.yaml> is required$/],
    ['an unknown option', () => ['--baseline', ex('web-baseline.yaml'), '--desired', ex('web-desired.yaml'), '--colour'], /Unknown option '--colour'/],
    ['a bad --output', () => ['--baseline', ex('web-baseline.yaml'), '--desired', ex('web-desired.yaml'), '--output', 'xml'], /--output must be text or json, not "xml"$/],
    ['a bad --kubevirt-version', () => ['--baseline', ex('web-baseline.yaml'), '--desired', ex('web-desired.yaml'), '--kubevirt-version', 'latest'], /--kubevirt-version: "latest" is not a KubeVirt version/],
    ['a --conditions file that is not a list', () => ['--baseline', ex('web-baseline.yaml'), '--desired', ex('web-desired.yaml'), '--conditions', file('conds.yaml', 'type: RestartRequired\n')], /conds\.yaml:1: expected a YAML list of conditions/],
    ['a wrong kind in --instancetypes', () => ['--baseline', ex('web-baseline.yaml'), '--desired', ex('web-desired.yaml'), '--instancetypes', file('its.yaml', 'kind: VirtualMachineClusterInstancetype\nmetadata: {name: a}\n---\nkind: Pod\nmetadata: {name: b}\n')], /its\.yaml:4: expected one of .*found "Pod"/],
  ];
  for (const [what, args, message] of badInput) {
    it(`bad input, ${what}: exit 2 and one line naming the problem`, async () => {
      const r = await vmroll('diff', ...args());
      assert.equal(r.code, 2, r.stdout);
      assert.equal(r.stdout, '');
      const lines = r.stderr.trimEnd().split('\n');
      assert.equal(lines.length, 1, r.stderr);
      assert.match(lines[0] ?? '', message);
    });
  }

  it('an unreadable file is named with the reason', async function () {
    if (process.getuid?.() === 0) {
      // root reads any file regardless of mode; a directory stands in for an unreadable file.
      const r = await vmroll('diff', '--baseline', dir, '--desired', ex('web-desired.yaml'));
      assert.equal(r.code, 2);
      assert.match(r.stderr, /: is a directory \(--baseline\)/);
      return;
    }
    const p = file('secret.yaml', 'kind: VirtualMachine\n');
    chmodSync(p, 0o000);
    const r = await vmroll('diff', '--baseline', p, '--desired', ex('web-desired.yaml'));
    assert.equal(r.code, 2);
    assert.match(r.stderr, /secret\.yaml: permission denied \(--baseline\)/);
  });
});
