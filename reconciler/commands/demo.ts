/** `vmroll demo`: a scripted tour on a scratch copy of the example repository and the embedded simulator. */
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { conditionsOf, metaOf, statusOf } from '../cluster/object.ts';
import { ManualClock } from '../cluster/sim/clock.ts';
import { SimCluster } from '../cluster/sim/simCluster.ts';
import { EXAMPLE_FIXTURES } from '../config.ts';
import { type ReconcileReport, Reconciler } from '../controller/reconcile.ts';
import {
  Disruption,
  InvalidVersionError,
  MigrationBlock,
  MigrationTrigger,
  type Obj,
  ObservedOutcome,
  ReachesGuest,
  type VmPlanEntry,
  WorkloadUpdateMethod,
  behavioursFor,
  observeGuest,
  parseVersion,
} from '../rollout/index.ts';
import { commitAll, ensureExampleRepo } from '../source/exampleRepo.ts';
import { GitSource } from '../source/gitSource.ts';
import { UsageError } from '../usage.ts';
import type { CommandIO } from './common.ts';
import { makeLogger } from '../logging.ts';
import { renderReport, restartLines } from '../controller/render.ts';
import { RestartStep } from '../controller/restarts.ts';
import { parse as parseYaml } from 'yaml';
import { type RestartConfigBlock, RestartAnnotation, restartConfigProblems, restartPolicyOf } from '../restart/index.ts';
import { DEMO_HELP } from './help.ts';

/** Help text of `vmroll demo`, kept in help.ts so that `vmroll help demo` loads none of this module's imports. */
export { DEMO_HELP } from './help.ts';

/** How long a simulated live migration takes in the demo: long enough to see its phases, short enough to wait for. */
const DEMO_MIGRATION_MS = 600;
/** Bound of a wait on the simulator: generous, so a busy machine is slow rather than failing. */
const DEMO_WAIT_MS = 30_000;
const SOCKETS = 'spec.template.spec.domain.cpu.sockets';

type DemoVm = 'web' | 'db';

interface Step {
  title: string;
  /** The VM whose file the step edits and whose VMI it shows (default web). */
  vm?: DemoVm;
  edit?: (text: string) => string;
  message?: string;
  restart?: boolean;
  /** Checked right after the sync. */
  expect: (vm: Obj | undefined, report: ReconcileReport) => string | null;
  /** What KubeVirt does after the sync (`guestBefore`: the guest's sockets before it): waits on the simulator, prints what it saw, returns a problem or null. */
  follow?: (report: ReconcileReport, guestBefore: unknown) => Promise<string | null>;
}

function condition(vm: Obj | undefined): string | undefined {
  const c = conditionsOf(vm).find((x) => x['type'] === 'RestartRequired');
  return c === undefined ? undefined : String(c['message']);
}

function cpuOf(vmi: Obj | undefined): Obj {
  return ((((vmi?.['spec'] ?? {}) as Obj)['domain'] ?? {}) as Obj)['cpu'] as Obj ?? {};
}

function guestSockets(vmi: Obj | undefined): unknown {
  return ((statusOf(vmi ?? {})['currentCPUTopology'] ?? {}) as Obj)['sockets'];
}

function hasCondition(vmi: Obj | undefined, type: string): boolean {
  return conditionsOf(vmi).some((c) => c['type'] === type);
}

function liveMigratable(vmi: Obj | undefined): string {
  const c = conditionsOf(vmi).find((x) => x['type'] === 'LiveMigratable');
  return c === undefined ? 'unknown' : `${String(c['status'])}${c['reason'] !== undefined ? ` (${String(c['reason'])})` : ''}`;
}

/** The plan's prediction for one VM's socket change, as the demo prints it. */
function predictionText(entry: VmPlanEntry | undefined): string {
  const change = entry?.changes.find((c) => c.path === SOCKETS);
  if (entry === undefined || change === undefined) return 'no socket change planned';
  const m = change.migration;
  const detail = m === undefined ? '' : m.blockedBy !== undefined ? ` · blockedBy ${m.blockedBy}` : ` · ${m.queuedAhead ?? 0} migration(s) ahead`;
  return `reachesGuest ${change.reachesGuest ?? 'unset'}${detail} · disruption ${entry.disruption?.kind ?? 'unset'}: ${entry.disruption?.summary ?? ''}`;
}

/** Runs `vmroll demo`. */
export async function runDemo(argv: string[], io: CommandIO): Promise<number> {
  const { values } = parseArgs({ args: argv, options: { 'kubevirt-version': { type: 'string' }, help: { type: 'boolean', short: 'h' } }, strict: true });
  if (values.help) {
    io.out(DEMO_HELP);
    return 0;
  }
  const version = values['kubevirt-version'] ?? 'v1.9.0';
  const parsed = parseVersion(version);
  if (parsed === null) throw new UsageError(`--kubevirt-version: ${new InvalidVersionError(version).message}`);
  // Before v1.8 (and in the seed model) the condition stays until a restart, revert or not.
  const sticky = behavioursFor(parsed).conditionSticky;
  const dir = mkdtempSync(path.join(tmpdir(), 'vmroll-demo-'));
  const repo = path.join(dir, 'repo');
  const kubevirt: Obj = {
    apiVersion: 'kubevirt.io/v1',
    kind: 'KubeVirt',
    metadata: { name: 'kubevirt', namespace: 'kubevirt' },
    spec: {
      // The workload updater may live-migrate a VMI whose guest lags its spec (KubeVirt's default list is empty: it never would).
      workloadUpdateStrategy: { workloadUpdateMethods: [WorkloadUpdateMethod.LiveMigrate] },
      configuration: { vmRolloutStrategy: 'LiveUpdate', developerConfiguration: { featureGates: ['VMLiveUpdateFeatures'] } },
    },
    status: { observedKubeVirtVersion: version },
  };
  const cluster = new SimCluster({ kubevirt, migrationDurationMs: DEMO_MIGRATION_MS });
  // db keeps its data on a ReadWriteOnce claim: its VMI is not live-migratable, as in a real cluster.
  cluster.ensureNamespace('shop');
  cluster.createObject({
    apiVersion: 'v1',
    kind: 'PersistentVolumeClaim',
    metadata: { name: 'db-data', namespace: 'shop' },
    spec: { accessModes: ['ReadWriteOnce'], resources: { requests: { storage: '10Gi' } } },
    status: { phase: 'Bound', accessModes: ['ReadWriteOnce'] },
  });
  // Every phase each migration passed through, recorded from the store's events as they happen.
  const phases = new Map<string, string[]>();
  const stopRecording = cluster.store.watch((e) => {
    if (e.kind !== 'VirtualMachineInstanceMigration' || e.type === 'DELETED') return;
    const name = String(((e.object['metadata'] ?? {}) as Obj)['name']);
    const seen = phases.get(name) ?? [];
    const phase = String(statusOf(e.object)['phase'] ?? '');
    if (phase !== '' && seen.at(-1) !== phase) seen.push(phase);
    phases.set(name, seen);
  });
  const reconciler = new Reconciler({ source: new GitSource({ repo }), repoLabel: 'example', ref: 'main', path: 'vms', cluster, prune: false, logger: makeLogger('silent', []) });
  const vmOf = (name: DemoVm): Obj | undefined => cluster.store.get('VirtualMachine', 'shop', name);
  const vmiOf = (name: DemoVm): Obj | undefined => cluster.store.get('VirtualMachineInstance', 'shop', name);
  const entryOf = (report: ReconcileReport, name: DemoVm): VmPlanEntry | undefined => report.plan.vms.find((v) => v.namespace === 'shop' && v.name === name);
  const observed = (name: DemoVm): ReturnType<typeof observeGuest> =>
    observeGuest({ vm: vmOf(name) ?? null, vmi: vmiOf(name) ?? null, migrations: cluster.listMigrations(), kubevirt: cluster.controller.kubevirt() });
  const outdated = (): unknown => statusOf(cluster.controller.kubevirt() ?? {})['outdatedVirtualMachineInstanceWorkloads'];
  /** Resolves once `check` holds after some store event (or at once); false at the bound. */
  const waitFor = (check: () => boolean): Promise<boolean> =>
    new Promise((resolve) => {
      if (check()) {
        resolve(true);
        return;
      }
      const timer = setTimeout(() => {
        stop();
        resolve(false);
      }, DEMO_WAIT_MS);
      const stop = cluster.store.watch(() => {
        if (!check()) return;
        clearTimeout(timer);
        // Unsubscribing inside the store's own callback is left to the next tick.
        setImmediate(stop);
        resolve(true);
      });
    });
  let stagedText = '';
  const steps: Step[] = [
    {
      title: 'Initial sync: three VMs are created; web and db start (db keeps its data on a ReadWriteOnce claim)',
      expect: (w) => {
        if (w === undefined || vmiOf('web') === undefined || vmiOf('db') === undefined) return 'web and db are not both running';
        if (!liveMigratable(vmiOf('web')).startsWith('True')) return `web is not live-migratable: ${liveMigratable(vmiOf('web'))}`;
        if (!liveMigratable(vmiOf('db')).startsWith('False (DisksNotLiveMigratable)')) return `db is not refused for its disk: LiveMigratable ${liveMigratable(vmiOf('db'))}`;
        return null;
      },
      follow: async () => {
        io.out(`   LiveMigratable: web ${liveMigratable(vmiOf('web'))} · db ${liveMigratable(vmiOf('db'))}`);
        return null;
      },
    },
    {
      title: 'A CPU hot-plug that reaches the guest by live migration: web goes from 2 to 4 sockets (the KubeVirt CR lists LiveMigrate)',
      edit: (t) => t.replace('sockets: 2', 'sockets: 4'),
      message: 'web: 4 CPU sockets',
      expect: (w, report) => {
        const entry = entryOf(report, 'web');
        const change = entry?.changes.find((c) => c.path === SOCKETS);
        if (change?.rollout !== 'live') return 'the sockets change was not planned live';
        if (change.reachesGuest !== ReachesGuest.liveMigration || entry?.disruption?.kind !== Disruption.migration) return `the plan did not predict a live migration: ${predictionText(entry)}`;
        if (cpuOf(vmiOf('web'))['sockets'] !== 4) return 'the VMI spec did not get 4 sockets';
        return condition(w) !== undefined ? 'unexpected RestartRequired' : null;
      },
      follow: async (_report, guestBefore) => {
        io.out('   waiting for KubeVirt: the workload updater creates a VirtualMachineInstanceMigration…');
        const done = await waitFor(() => {
          const vmi = vmiOf('web');
          return guestSockets(vmi) === 4 && !hasCondition(vmi, MigrationTrigger.HotVCPUChange) && outdated() === 0;
        });
        const ms = cluster.listMigrations('shop', 'web');
        for (const m of ms) {
          const state = (statusOf(m)['migrationState'] ?? {}) as Obj;
          const name = String(((m['metadata'] ?? {}) as Obj)['name']);
          io.out(`   vmim ${name}: ${(phases.get(name) ?? []).join(' → ')} (${String(state['sourceNode'] ?? '?')} → ${String(state['targetNode'] ?? '?')})`);
        }
        const vmi = vmiOf('web');
        io.out(`   web: guest status.currentCPUTopology.sockets ${String(guestBefore)} → ${String(guestSockets(vmi))} · HotVCPUChange ${hasCondition(vmi, MigrationTrigger.HotVCPUChange) ? 'set' : 'gone'} · observed: ${observed('web').summary}`);
        if (!done) return `the migration did not carry the sockets to the guest within ${DEMO_WAIT_MS / 1000} s`;
        if (guestBefore !== 2) return `the guest ran ${String(guestBefore)} sockets before the migration, not 2`;
        if (ms.length !== 1 || statusOf(ms[0] ?? {})['phase'] !== 'Succeeded') return `expected one succeeded migration of web, found ${ms.map((m) => String(statusOf(m)['phase'])).join(', ') || 'none'}`;
        return observed('web').outcome === ObservedOutcome.effective ? null : `observed ${observed('web').outcome}, not effective`;
      },
    },
    {
      title: 'A CPU hot-plug that is blocked: db goes from 4 to 6 sockets, patched into its VMI, but db is not live-migratable',
      vm: 'db',
      edit: (t) => t.replace('sockets: 4', 'sockets: 6'),
      message: 'db: 6 CPU sockets',
      expect: (d, report) => {
        const entry = entryOf(report, 'db');
        const change = entry?.changes.find((c) => c.path === SOCKETS);
        if (change?.rollout !== 'live') return 'the sockets change was not planned live';
        if (change.reachesGuest !== ReachesGuest.awaitingRestart || change.migration?.blockedBy !== MigrationBlock.notMigratable) return `the plan did not predict a blocked migration: ${predictionText(entry)}`;
        if (cpuOf(vmiOf('db'))['sockets'] !== 6) return 'the VMI spec did not get 6 sockets';
        return condition(d) !== undefined ? 'unexpected RestartRequired' : null;
      },
      follow: async (_report, guestBefore) => {
        // The updater counts db as outdated once it has looked at it; any migration it wanted would exist by then.
        const looked = await waitFor(() => outdated() === 1 && hasCondition(vmiOf('db'), MigrationTrigger.HotVCPUChange));
        const vmi = vmiOf('db');
        const ms = cluster.listMigrations('shop', 'db');
        const seen = observed('db');
        io.out(`   db: VMI spec ${cpuOf(vmi)['sockets']} sockets · guest status.currentCPUTopology.sockets ${String(guestSockets(vmi))} (unchanged) · HotVCPUChange ${hasCondition(vmi, MigrationTrigger.HotVCPUChange) ? 'set' : 'gone'} · migrations of db: ${ms.length}`);
        io.out(`   observed: ${seen.summary}`);
        if (!looked) return `the workload updater did not count db as outdated within ${DEMO_WAIT_MS / 1000} s`;
        if (ms.length !== 0) return 'a migration of db was created';
        if (guestSockets(vmi) !== guestBefore) return 'the guest of db changed without a migration';
        return seen.outcome === ObservedOutcome.blocked && seen.blockedBy === MigrationBlock.notMigratable ? null : `observed ${seen.outcome}${seen.blockedBy !== undefined ? ` (${seen.blockedBy})` : ''}, not blocked as not migratable`;
      },
    },
    {
      title: 'A change that is staged: web gets 2 cores per socket (RestartRequired)',
      edit: (t) => (stagedText = t.replace('cores: 1', 'cores: 2')),
      message: 'web: 2 cores per socket',
      expect: (w) => (condition(w) === undefined ? 'RestartRequired was not set' : cpuOf(vmiOf('web'))['cores'] !== 1 ? 'cores reached the running VMI' : null),
    },
    {
      title: 'A revert: the cores change is reverted before any restart (RestartRequired cleared from KubeVirt v1.8)',
      edit: (t) => t.replace('cores: 2', 'cores: 1'),
      message: 'Revert "web: 2 cores per socket"',
      expect: (w, report) => {
        if (!sticky && condition(w) !== undefined) return 'RestartRequired was not cleared by the revert';
        const web = report.outcomes.find((o) => o.name === 'web');
        if (web?.reverts.map((r) => r.path).join() !== 'spec.template.spec.domain.cpu.cores') return 'the sync did not report the cores revert';
        // Before v1.8 the condition stays until a restart, so web still counts as awaiting restart.
        return web.state !== (sticky ? 'awaiting restart' : 'reverted') ? `web counted as ${web.state}` : null;
      },
    },
    {
      title: 'The cores change again: staged with RestartRequired',
      edit: () => stagedText,
      message: 'web: 2 cores per socket, again',
      expect: (w) => (condition(w) === undefined ? 'RestartRequired was not set' : null),
    },
    {
      title: 'A restart: the new instance runs the staged spec and the condition is gone',
      restart: true,
      expect: (w) => (condition(w) !== undefined ? 'RestartRequired survived the restart' : cpuOf(vmiOf('web'))['cores'] !== 2 ? 'the new VMI does not have 2 cores' : null),
    },
  ];
  let failures = 0;
  try {
    await ensureExampleRepo(repo, EXAMPLE_FIXTURES);
    io.out(`vmroll demo: KubeVirt ${version} simulated (workloadUpdateMethods [LiveMigrate], migrations take ${DEMO_MIGRATION_MS} ms), repository ${repo}\n`);
    for (const [i, step] of steps.entries()) {
      const name: DemoVm = step.vm ?? 'web';
      io.out(`── Step ${i + 1}: ${step.title}`);
      if (step.edit) {
        const file = path.join(repo, 'vms', `${name}.yaml`);
        writeFileSync(file, step.edit(readFileSync(file, 'utf8')));
        const sha = await commitAll(repo, step.message ?? step.title);
        io.out(`   commit ${sha.slice(0, 12)} "${step.message ?? step.title}"`);
      }
      if (step.restart) {
        await cluster.restartVirtualMachine({ namespace: 'shop', name });
        io.out(`   virtctl restart shop/${name} (the restart subresource)`);
      }
      const guestBefore = guestSockets(vmiOf(name));
      const report = await reconciler.reconcile();
      io.out(renderReport(report).replace(/^/gm, '   '));
      const vm = vmOf(name);
      io.out(`   ${name}: VMI ${JSON.stringify(cpuOf(vmiOf(name)))} · RestartRequired: ${condition(vm) ?? 'none'}`);
      if (step.edit && entryOf(report, name)?.changes.some((c) => c.path === SOCKETS)) io.out(`   plan: ${predictionText(entryOf(report, name))}`);
      let problem = step.expect(vm, report);
      if (problem === null && step.follow) problem = await step.follow(report, guestBefore);
      if (problem !== null) {
        failures++;
        io.out(`   ✗ ${problem}`);
      } else {
        io.out('   ✓ as expected');
      }
      io.out('');
    }
    const act2 = await windowAct(io, kubevirt, dir, steps.length + 1);
    failures += act2.failures;
  } finally {
    stopRecording();
    reconciler.close();
    cluster.close();
    rmSync(dir, { recursive: true, force: true });
  }
  io.out(failures === 0 ? 'Demo finished: every step did what it says.' : `Demo finished with ${failures} unexpected result(s).`);
  return failures === 0 ? 0 : 1;
}

/** The second act's simulated boot time: a restarted VM is Ready this long after `restart` (simulated time, no real wait). */
const ACT2_BOOT_MS = 40_000;
/** How far the second act's clock moves between two syncs inside the window. */
const ACT2_SYNC_EVERY_MS = 20_000;
/** Friday 2026-01-02 23:00 UTC: the window `0 2 * * SAT` opens three hours later. */
const ACT2_START = '2026-01-02T23:00:00Z';
const ACT2_WINDOW_OPENS = Date.parse('2026-01-03T02:00:00Z');
const ACT2_WINDOW_CLOSES = Date.parse('2026-01-03T04:00:00Z');
/** The second act's policy, as vmroll.yaml would hold it (printed as is, and parsed: one source for both). */
const ACT2_POLICY_YAML = 'restart: {policy: window, windows: [{schedule: "0 2 * * SAT", duration: 2h, timeZone: UTC}], budget: {concurrent: 1, perWindow: 3}}';
const ACT2_VMS = ['app-1', 'app-2', 'app-3', 'app-4'] as const;

/** A small VM of the second act; a new container disk image is a staged change (RestartRequired). */
function fleetVmYaml(name: string, image: string): string {
  return [
    'apiVersion: kubevirt.io/v1',
    'kind: VirtualMachine',
    'metadata:',
    `  name: ${name}`,
    '  namespace: fleet',
    'spec:',
    '  runStrategy: Always',
    '  template:',
    '    spec:',
    '      domain:',
    '        cpu: {sockets: 1, cores: 1, threads: 1}',
    '        memory: {guest: 1Gi}',
    '        devices:',
    '          disks: [{name: root, disk: {bus: virtio}}]',
    '      volumes:',
    `        - {name: root, containerDisk: {image: "${image}"}}`,
    '',
  ].join('\n');
}

/** `HH:MM:SS UTC` of an epoch ms, the second act's clock as printed. */
function clockText(ms: number): string {
  return `${new Date(ms).toISOString().slice(11, 19)} UTC`;
}

/**
 * The second act: a maintenance window releases queued restarts one at a time. Its own simulator
 * runs on a ManualClock (windows and boots cost no real time) and its own repository holds four
 * VMs under `policy: window`, `budget: {concurrent: 1, perWindow: 3}`. Steps are numbered from
 * `first`; returns how many steps ran and how many did not do what they say.
 */
async function windowAct(io: CommandIO, kubevirt: Obj, dir: string, first: number): Promise<{ steps: number; failures: number }> {
  const block = (parseYaml(ACT2_POLICY_YAML) as { restart: RestartConfigBlock }).restart;
  const problems = restartConfigProblems(block);
  if (problems.length > 0) throw new Error(`the demo's restart policy is invalid: ${JSON.stringify(problems)}`);
  const clock = new ManualClock(ACT2_START);
  const now = (): number => clock.now().getTime();
  const cluster = new SimCluster({ kubevirt, clock, bootTimeMs: ACT2_BOOT_MS });
  const src = path.join(dir, 'fleet-src');
  const repo = path.join(dir, 'fleet');
  // Every start of each VM, from the simulator's store (a new VMI uid per start), not from vmroll's report.
  const starts = new Map<string, string[]>();
  const stopCounting = cluster.store.watch((e) => {
    if (e.kind !== 'VirtualMachineInstance' || e.type !== 'ADDED') return;
    const name = String(metaOf(e.object)['name']);
    starts.set(name, [...(starts.get(name) ?? []), String(metaOf(e.object)['uid'])]);
  });
  const restartsOf = (name: string): number => Math.max(0, (starts.get(name)?.length ?? 0) - 1);
  const annotationsOf = (name: string): Record<string, string> => (metaOf(cluster.store.peek('VirtualMachine', 'fleet', name) ?? {})['annotations'] ?? {}) as Record<string, string>;
  const ready = (name: string): boolean => conditionsOf(cluster.store.peek('VirtualMachineInstance', 'fleet', name)).some((c) => c['type'] === 'Ready' && c['status'] === 'True');
  const reconciler = new Reconciler({
    source: new GitSource({ repo }),
    repoLabel: 'fleet',
    ref: 'main',
    path: 'vms',
    cluster,
    prune: false,
    logger: makeLogger('silent', []),
    restarts: new RestartStep({ cluster, policy: restartPolicyOf(block), now }),
  });
  let n = first;
  let failures = 0;
  const step = async (title: string, body: () => Promise<string | null>): Promise<void> => {
    io.out(`── Step ${n++}: ${title}`);
    const problem = await body();
    if (problem !== null) {
      failures++;
      io.out(`   ✗ ${problem}`);
    } else {
      io.out('   ✓ as expected');
    }
    io.out('');
  };
  const writeAll = async (image: string, message: string): Promise<void> => {
    for (const name of ACT2_VMS) writeFileSync(path.join(repo, 'vms', `${name}.yaml`), fleetVmYaml(name, image));
    const sha = await commitAll(repo, message);
    io.out(`   commit ${sha.slice(0, 12)} "${message}"`);
  };
  const textOf = (report: ReconcileReport, name: string): string => report.restarts?.vms.find((v) => v.name === name)?.text ?? '';
  try {
    mkdirSync(path.join(src, 'vms'), { recursive: true });
    for (const name of ACT2_VMS) writeFileSync(path.join(src, 'vms', `${name}.yaml`), fleetVmYaml(name, 'quay.io/containerdisks/fedora:40'));
    await ensureExampleRepo(repo, src);
    io.out(`Act 2: a maintenance window. A second simulator on a clock the demo moves by hand (a boot takes ${ACT2_BOOT_MS / 1000} s of simulated time), repository ${repo}`);
    io.out(`   vmroll.yaml: ${ACT2_POLICY_YAML}\n`);

    await step('Four VMs of the fleet namespace are created and boot (Friday 23:00 UTC)', async () => {
      const report = await reconciler.reconcile();
      io.out(renderReport(report).replace(/^/gm, '   '));
      clock.advance(ACT2_BOOT_MS);
      const notReady = ACT2_VMS.filter((v) => !ready(v));
      io.out(`   ${clockText(now())}: Ready: ${ACT2_VMS.filter((v) => ready(v)).join(', ') || 'none'}`);
      return notReady.length > 0 ? `not Ready after the boot time: ${notReady.join(', ')}` : null;
    });

    await step('A new image for all four: staged (RestartRequired); before the window nothing restarts and each VM says when it will', async () => {
      await writeAll('quay.io/containerdisks/fedora:41', 'fleet: fedora 41');
      const report = await reconciler.reconcile();
      io.out(renderReport(report).replace(/^/gm, '   '));
      const rr = report.restarts;
      const opens = rr?.nextWindowAt ?? null;
      io.out(`   ${clockText(now())}: the next window opens ${opens === null ? 'never' : `${new Date(opens).toISOString().slice(0, 10)} ${clockText(opens)}`} · restarts pending ${rr?.pending ?? 0}`);
      if (rr === undefined) return 'the sync ran no restart step';
      if (rr.restarted.length > 0 || ACT2_VMS.some((v) => restartsOf(v) > 0)) return `restarted before the window: ${rr.restarted.join(', ')}`;
      if (opens !== ACT2_WINDOW_OPENS) return `the next window is not Saturday 02:00 UTC: ${String(opens)}`;
      if (rr.pending !== 4) return `${rr.pending} restarts pending, not 4`;
      for (const [i, v] of ACT2_VMS.slice(0, 3).entries()) {
        const want = `restarts in the next window (Sat 02:00–04:00 UTC), ${i + 1} of 3 this window`;
        if (textOf(report, v) !== want) return `${v}: "${textOf(report, v)}", not "${want}"`;
      }
      // The fourth is over the window's budget: it goes to the window a week later.
      return /^restarts in the window after next \(Sat 10 Jan 02:00–04:00 UTC\), 1 of 1 this window \(budget 3 per window\)$/.test(textOf(report, 'app-4')) ? null : `app-4: "${textOf(report, 'app-4')}" does not place it in the window after next (the budget is 3 per window)`;
    });

    await step('A minute before the window (Saturday 01:59 UTC): still nothing restarts', async () => {
      clock.advance(ACT2_WINDOW_OPENS - 60_000 - now());
      const report = await reconciler.reconcile();
      io.out(`   ${clockText(now())} sync:`);
      for (const l of report.restarts === undefined ? [] : restartLines(report.restarts)) io.out(`   ${l}`);
      if (report.restarts?.restarted.length !== 0 || ACT2_VMS.some((v) => restartsOf(v) > 0)) return 'a VM restarted before the window';
      return report.restarts.pending === 4 ? null : `${report.restarts.pending} restarts pending, not 4`;
    });

    await step('The window opens: restarts one at a time, each after the previous VM came back Ready; app-4 waits for the next window', async () => {
      clock.advance(ACT2_WINDOW_OPENS - now());
      const order: string[] = [];
      let report: ReconcileReport | undefined;
      for (let round = 0; round < 30; round++) {
        report = await reconciler.reconcile();
        const rr = report.restarts;
        if (rr === undefined) return 'the sync ran no restart step';
        // What happened in this sync (restarted, booting, back); the queue's `waits` lines only on the window's first sync.
        const lines = restartLines(rr).filter((l) => round === 0 || !/^\s*waits /.test(l));
        io.out(`   ${clockText(now())} sync:${lines.length === 0 ? ' nothing new' : ''}`);
        for (const l of lines) io.out(`   ${l}`);
        const inProgress = ACT2_VMS.filter((v) => annotationsOf(v)[RestartAnnotation.status] === 'InProgress');
        if (inProgress.length > 1) return `more than one restart at once: ${inProgress.join(', ')}`;
        for (const key of rr.restarted) {
          const v = key.slice('fleet/'.length);
          // Each earlier restart has come back: its new VMI is Ready and vmroll recorded it Succeeded.
          const pending = order.filter((o) => annotationsOf(o)[RestartAnnotation.status] !== 'Succeeded' || !ready(o));
          if (pending.length > 0) return `${v} restarted before ${pending.join(', ')} came back Ready`;
          const started = Date.parse(annotationsOf(v)[RestartAnnotation.startedAt] ?? '');
          if (!(started >= ACT2_WINDOW_OPENS && started < ACT2_WINDOW_CLOSES)) return `${v} restarted outside the window`;
          order.push(v);
        }
        if (rr.failed.length > 0) return `restarts failed: ${rr.failed.map((f) => `${f.vm}: ${f.message}`).join('; ')}`;
        if (order.length === 3 && rr.inProgress === 0) break;
        clock.advance(ACT2_SYNC_EVERY_MS);
      }
      const counts = ACT2_VMS.map((v) => `${v} ${restartsOf(v)}`).join(', ');
      io.out(`   restarts counted in the simulator (new VMI per start): ${counts}`);
      if (report === undefined) return 'no sync ran';
      io.out(`   ${clockText(now())}: app-4 ${textOf(report, 'app-4')}`);
      if (order.join() !== 'app-1,app-2,app-3') return `restarted ${order.join(', ') || 'nothing'}, not app-1, app-2, app-3 in turn`;
      if (ACT2_VMS.map((v) => restartsOf(v)).join() !== '1,1,1,0') return `restarts per VM: ${counts}, not 1, 1, 1, 0`;
      if (!['app-1', 'app-2', 'app-3'].every((v) => ready(v))) return 'a restarted VM is not Ready';
      if (report.restarts?.pending !== 1) return `${report.restarts?.pending ?? 0} restarts pending, not 1 (app-4)`;
      return /^restarts in the next window \(Sat 10 Jan 02:00–04:00 UTC\), 1 of 1 this window \(budget 3 per window\)$/.test(textOf(report, 'app-4')) ? null : `app-4: "${textOf(report, 'app-4')}"`;
    });
  } finally {
    stopCounting();
    reconciler.close();
    cluster.close();
  }
  return { steps: n - first, failures };
}
