/**
 * The rollout engine: given the VM as its running instance started (the baseline), the
 * desired VM, the running VMI and the KubeVirt CR, it works out what KubeVirt will do in one
 * reconcile pass: which changes reach the running guest, which wait for a restart and why,
 * and what happens to the RestartRequired condition. Pure: no I/O, no clock, no logger.
 */
import { admitVm, type AdmissionError } from './admission.ts';
import { type ClusterSettings, resolveCluster } from './cluster.ts';
import { handleCpuChange } from './cpu.ts';
import { type RawChange, diffValues } from './diff.ts';
import { expandVm } from './instancetype.ts';
import { type Obj, clone, ensureObj, get, getList, getObj, getStr, isObj } from './json.ts';
import { annotateGuestPaths, summariseDisruption } from './guest.ts';
import { handleMemoryChange } from './memory.ts';
import { type NetworkContext, isNonHotplugBinding, networkRestartReason, nicHotplugEnabled, syncNetworks } from './network.ts';
import type { HandlerOutcome } from './outcome.ts';
import { type Segment, TEMPLATE_SPEC, formatPath, getAt, isWithin, parsePath } from './paths.ts';
import { handleAffinityChange, handleTolerationsChange } from './placement.ts';
import type { FieldChange, RestartReason, VmPlanEntry } from './plan.ts';
import { semanticEqual } from './semantic.ts';
import { knownBugNote } from './versions.ts';
import { disksRestartReasons, handleVolumeMigration, handleVolumeReplacement, isHotplugVolume, syncHotplugVolumes, volumesRestartReasons } from './volumes.ts';
import { ConditionAction, Disruption, FeatureGate, Message, PlanAction, RestartRequired, Rollout, Strategy, TakesEffect } from './vocabulary.ts';

/** Everything one plan is computed from. */
export interface RolloutInput {
  /** The VM as it should be (from Git). */
  desired: Obj;
  /** The VM spec the running VMI started from (`revision-start-vm-<uid>-<generation>`); a whole VM or `{spec}`. */
  baseline?: Obj | null;
  /** The running VirtualMachineInstance; absent when the VM is not running. */
  vmi?: Obj | null;
  /** The KubeVirt CR. */
  kubevirt?: Obj | null;
  /** Conditions already on the VM (defaults to `desired.status.conditions`). */
  conditions?: Obj[] | null;
  /** VirtualMachine(Cluster)Instancetype and VirtualMachine(Cluster)Preference objects. */
  instancetypes?: Obj[];
  /** Overrides `status.observedKubeVirtVersion`. */
  kubevirtVersion?: string;
  /** The VirtualMachineInstanceMigrations in the cluster (finished ones are ignored): they decide how many migrations are ahead of this VM's. */
  migrations?: Obj[];
}

/** What the engine returns. */
export interface RolloutResult {
  /** The plan entry (VmPlan contract). */
  plan: VmPlanEntry;
  /** Non-empty when KubeVirt's admission webhook would refuse the desired VM: then nothing else applies. */
  admissionErrors: AdmissionError[];
  /** The VMI after this pass's live updates (null when none runs or the VM is being stopped). */
  vmi: Obj | null;
  /** The VM's conditions after this pass. */
  conditions: Obj[];
  /** The settings the plan was computed under. */
  cluster: ClusterSettings;
}

/** Template annotations KubeVirt keeps in sync on a running VMI under any strategy. */
const DYNAMIC_ANNOTATIONS = ['descheduler.alpha.kubernetes.io/evict', 'descheduler.alpha.kubernetes.io/prefer-no-eviction'];

/** Template fields that live-update handlers own under LiveUpdate. */
const HANDLER_FIELDS: readonly Segment[][] = [
  [...TEMPLATE_SPEC, 'domain', 'cpu', 'sockets'],
  [...TEMPLATE_SPEC, 'domain', 'memory', 'guest'],
  [...TEMPLATE_SPEC, 'nodeSelector'],
  [...TEMPLATE_SPEC, 'affinity'],
  [...TEMPLATE_SPEC, 'tolerations'],
];

const SAME_LIST_VOLUMES =
  'changed in the same edit as a volume that needs a restart: KubeVirt judges the volume list as a whole, so this waits too';
const SAME_LIST_DISKS =
  'changed in the same edit as a disk that needs a restart: KubeVirt judges the disk list as a whole, so this waits too';

/** Template lists the always-running synchronisers write to the VMI whatever the condition says. */
const SYNCED_LISTS: readonly Segment[][] = [
  [...TEMPLATE_SPEC, 'volumes'],
  [...TEMPLATE_SPEC, 'domain', 'devices', 'disks'],
  [...TEMPLATE_SPEC, 'domain', 'devices', 'interfaces'],
  [...TEMPLATE_SPEC, 'networks'],
];

const RUNNING_STRATEGIES = new Set(['Always', 'RerunOnFailure', 'Once']);

function vmName(vm: Obj): { namespace: string; name: string } {
  return { namespace: getStr(vm, 'metadata', 'namespace') ?? 'default', name: getStr(vm, 'metadata', 'name') ?? '' };
}

function restartCondition(conditions: Obj[]): Obj | undefined {
  return conditions.find((c) => c['type'] === RestartRequired && c['status'] === 'True');
}

/** Whether the desired VM asks for its instance to be stopped. */
function wantsStopped(vm: Obj): boolean {
  const rs = getStr(vm, 'spec', 'runStrategy');
  return rs === 'Halted' || (rs === undefined && get(vm, 'spec', 'running') === false);
}

function wantsRunning(vm: Obj): boolean {
  const rs = getStr(vm, 'spec', 'runStrategy');
  return rs !== undefined ? RUNNING_STRATEGIES.has(rs) : get(vm, 'spec', 'running') === true;
}

/** Why a template change waits when no instance runs: there is nothing to restart, the next start uses it. */
function nextStartWhy(vm: Obj): string {
  const rs = getStr(vm, 'spec', 'runStrategy') ?? (get(vm, 'spec', 'running') === true ? 'running: true' : undefined);
  const starts = rs === 'Always' || rs === 'RerunOnFailure' || rs === 'running: true';
  return starts
    ? `no instance is running: takes effect when KubeVirt starts the VM (${rs === 'running: true' ? 'running: true' : `runStrategy ${rs}`})`
    : 'no instance is running: takes effect at the next start';
}

/** Computes one VM's plan. */
export function planRollout(input: RolloutInput): RolloutResult {
  const desired = input.desired;
  const cluster = resolveCluster(input.kubevirt ?? null, input.kubevirtVersion, desired);
  const conditions = clone(input.conditions ?? getList(desired, 'status', 'conditions'));
  const existing = restartCondition(conditions);
  const vmi = input.vmi ?? null;
  const entry: VmPlanEntry = {
    ...vmName(desired),
    action: PlanAction.none,
    strategy: cluster.strategy,
    restartRequired: existing !== undefined,
    condition: existing !== undefined ? ConditionAction.kept : ConditionAction.absent,
    conditionMessage: existing !== undefined ? String(existing['message'] ?? '') : null,
    reasons: [],
    changes: [],
    waiting: [],
    kubevirt: { version: cluster.version, model: cluster.behaviours.model },
  };
  const admissionErrors = admitVm(desired, cluster.strategy, cluster.behaviours, cluster.featureGates);
  if (admissionErrors.length > 0) {
    entry.disruption = { kind: Disruption.none, summary: "refused by KubeVirt's admission webhook: nothing is applied" };
    return { plan: entry, admissionErrors, vmi, conditions, cluster };
  }

  const pass = new Pass(input, cluster, existing);
  pass.run();
  entry.changes = pass.changes;
  entry.reasons = pass.reasons;
  entry.waiting = pass.waiting;
  entry.action = pass.changes.length > 0 ? PlanAction.update : PlanAction.none;
  // How each live change reaches the guest: at once, at the next scheduling, or through a migration that may never start.
  annotateGuestPaths(entry.changes, { desired, vmi: pass.stopping ? null : vmi, settings: cluster.workloadUpdate, migrations: input.migrations ?? [] });
  entry.disruption = summariseDisruption(entry.changes, { running: vmi !== null, stopping: pass.stopping, conditionMessage: pass.finalMessage ?? null });
  const final = pass.finalMessage;
  entry.restartRequired = final !== undefined;
  entry.conditionMessage = final ?? null;
  entry.condition =
    existing === undefined
      ? final === undefined
        ? ConditionAction.absent
        : ConditionAction.set
      : final === undefined
        ? ConditionAction.cleared
        : final === existing['message']
          ? ConditionAction.kept
          : ConditionAction.set;
  const others = conditions.filter((c) => c['type'] !== RestartRequired);
  const kept = final !== undefined && final === existing?.['message'] ? existing : undefined;
  const nextConditions = final === undefined ? others : [...others, kept ?? { type: RestartRequired, status: 'True', reason: '', message: final }];
  return { plan: entry, admissionErrors, vmi: pass.vmiAfter, conditions: nextConditions, cluster };
}

/** One reconcile pass, step by step in KubeVirt's order. */
class Pass {
  readonly changes: FieldChange[] = [];
  readonly reasons: RestartReason[] = [];
  readonly waiting: RestartReason[] = [];
  finalMessage: string | undefined;
  vmiAfter: Obj | null;

  private readonly desiredSpec: Obj;
  private readonly baselineSpec: Obj | null;
  private readonly expandedDesired: Obj;
  private readonly expandedBaseline: Obj | null;
  private readonly netCtx: NetworkContext;
  /** Non-live-updatable differences from the baseline (after neutralisation). */
  private nonLive: RawChange[] = [];
  /** Specific explanations for non-live-updatable groups, by path prefix. */
  private readonly explanations: Array<{ at: Segment[]; why: string }> = [];
  private readonly handlerRestarts = new Map<string, string>();
  /** vmroll's fuller reason for a handler restart, where it has one (a known KubeVirt bug). */
  private readonly handlerWhy = new Map<string, string>();
  private readonly handlerWaits = new Map<string, string>();
  private readonly liveNotes = new Map<string, string>();
  private handlersRan = false;
  /** Set when a handler's retryable error stopped the handlers after it in this pass. */
  private abortedBy: string | undefined;
  private expansionError: string | null = null;
  /** The desired runStrategy stops the running instance in this pass. */
  stopping = false;

  constructor(
    private readonly input: RolloutInput,
    private readonly cluster: ClusterSettings,
    private readonly existing: Obj | undefined,
  ) {
    this.vmiAfter = input.vmi ? clone(input.vmi) : null;
    this.netCtx = { behaviours: cluster.behaviours, strategy: cluster.strategy, featureGates: cluster.featureGates };
    const objects = input.instancetypes ?? [];
    const expDesired = expandVm(input.desired, objects);
    const expBaseline = input.baseline ? expandVm(input.baseline, objects) : null;
    if (!expDesired.ok) this.expansionError = expDesired.error;
    else if (expBaseline && !expBaseline.ok) this.expansionError = expBaseline.error;
    // When either side cannot be expanded, both are compared as written, so nothing is invented.
    const expanded = this.expansionError === null;
    this.expandedDesired = expanded && expDesired.ok ? expDesired.vm : input.desired;
    this.expandedBaseline = expBaseline === null ? null : expanded && expBaseline.ok ? expBaseline.vm : (input.baseline ?? null);
    this.desiredSpec = getObj(this.expandedDesired, 'spec', 'template', 'spec') ?? {};
    this.baselineSpec = this.expandedBaseline ? (getObj(this.expandedBaseline, 'spec', 'template', 'spec') ?? {}) : null;
    this.finalMessage = existing !== undefined ? String(existing['message'] ?? '') : undefined;
  }

  run(): void {
    const vmi = this.vmiAfter;
    if (vmi !== null && this.baselineSpec !== null && this.expansionError === null) {
      if (wantsStopped(this.input.desired)) {
        // syncRunStrategy stops the VMI first and removes the condition; the same sync then runs
        // syncRestartRequired with the VMI it had read, which sets RestartRequired again for a
        // non-live change, and nothing removes it from the stopped VM until it starts
        // (pkg/virt-controller/watch/vm/vm.go: sync; seen with KubeVirt's controller v1.4.0 and
        // v1.9.0 in test/conformance/oracle/). No live-update handler runs for a VMI being stopped.
        this.stopping = true;
        this.restartCheck(clone(vmi), { afterStop: true });
        this.vmiAfter = null;
      } else {
        const crash = this.controllerPanic();
        // The controller's sync of this VM panics before it writes anything: the VMI and the
        // condition stay as they are, and every retry panics again.
        if (crash !== null) this.waiting.push(crash);
        else {
          this.restartCheck(vmi);
          this.synchronisers(vmi);
        }
      }
    } else if (this.expansionError !== null) {
      this.waiting.push({ path: 'spec.instancetype', message: `instancetype expansion failed: ${this.expansionError}` });
    }
    this.classify();
  }

  /**
   * v1.4.0–v1.5.x under LiveUpdate: `validLiveUpdateDisks` (pkg/virt-controller/watch/vm/vm.go)
   * reads `v.Name` of the volume of every unchanged disk, and a disk left without a volume (an
   * ejected CD-ROM) makes that a nil pointer: the VM controller's worker panics on this VM.
   * Checked in KubeVirt's sources v1.4.0, v1.4.1, v1.5.0–v1.5.3 (fixed in v1.6.0) and seen with
   * its controller at v1.4.0 in test/conformance/oracle/.
   */
  private controllerPanic(): { path: string; message: string } | null {
    if (!this.cluster.behaviours.removedHotplugDiskBug || this.cluster.strategy !== Strategy.LiveUpdate || this.baselineSpec === null) return null;
    const volumes = new Set(getList(this.desiredSpec, 'volumes').map((v) => String(v['name'])));
    const before = new Map(getList(this.baselineSpec, 'domain', 'devices', 'disks').map((d) => [String(d['name']), d] as const));
    for (const disk of getList(this.desiredSpec, 'domain', 'devices', 'disks')) {
      const name = String(disk['name']);
      const old = before.get(name);
      if (volumes.has(name) || old === undefined || !semanticEqual(old, disk)) continue;
      return {
        path: formatPath([...TEMPLATE_SPEC, 'domain', 'devices', 'disks', { name }]),
        message: `KubeVirt's VM controller panics on this VM and never finishes its sync: disk "${name}" has no volume (an ejected CD-ROM), ${knownBugNote('ejectedCdromPanic')}; nothing of this change is applied, and the panic recurs on every retry`,
      };
    }
    return null;
  }

  /** `syncRestartRequired` followed by the gated handlers. */
  private restartCheck(vmi: Obj, options: { afterStop?: boolean } = {}): void {
    const b = this.cluster.behaviours;
    const live = this.cluster.strategy === Strategy.LiveUpdate;
    const base = this.baselineSpec ?? {};
    const neutral = clone(base);
    const cur = this.desiredSpec;
    const explain = (at: Segment[], why: string): void => {
      this.explanations.push({ at: [...TEMPLATE_SPEC, ...at], why });
    };

    // Always (per version): volumes and disks.
    const migration = getStr(this.expandedDesired, 'spec', 'updateVolumesStrategy') === 'Migration';
    if (b.allVolumesNeutralisedUnderLiveUpdate && live) {
      copyField(neutral, cur, ['volumes']);
      copyField(neutral, cur, ['domain', 'devices', 'disks']);
    } else if (b.hotplugVolumes === 'always' || live) {
      const vr = volumesRestartReasons(base, cur, migration);
      if (vr.length === 0) copyField(neutral, cur, ['volumes']);
      else explain(['volumes'], SAME_LIST_VOLUMES);
      for (const r of vr) explain(['volumes', { name: r.name }], r.why);
      const dr = disksRestartReasons(base, cur, { cdromRemovalRestart: b.cdromRemovalRestart, removedHotplugDiskBug: b.removedHotplugDiskBug });
      if (dr.length === 0) copyField(neutral, cur, ['domain', 'devices', 'disks']);
      else explain(['domain', 'devices', 'disks'], SAME_LIST_DISKS);
      for (const r of dr) explain(['domain', 'devices', 'disks', { name: r.name }], r.why);
    } else {
      explain(['volumes'], 'volume changes wait for a restart under Stage on this KubeVirt (hotplug without restart came in v1.7)');
      explain(['domain', 'devices', 'disks'], 'disk changes wait for a restart under Stage on this KubeVirt (hotplug without restart came in v1.7)');
    }

    // Interfaces and networks are judged against the VMI, not the baseline.
    let netReason = networkRestartReason(cur, vmi, this.netCtx);
    if (netReason === null && b.interfaces === 'liveUpdate') {
      // The seed's model knows only hotplug or restart: an interface that cannot be hot-plugged needs a restart.
      const running = new Set(getList(vmi, 'spec', 'domain', 'devices', 'interfaces').map((i) => i['name']));
      const added = getList(cur, 'domain', 'devices', 'interfaces').find((i) => !running.has(i['name']) && isNonHotplugBinding(i));
      if (added !== undefined) netReason = `interface "${String(added['name'])}" cannot be hot-plugged (only bridge and SR-IOV can)`;
    }
    const netRule = b.interfaces === 'always' || (b.interfaces === 'liveUpdate' && live);
    if (netReason === null && netRule) {
      copyField(neutral, cur, ['domain', 'devices', 'interfaces']);
      copyField(neutral, cur, ['networks']);
    } else {
      const why =
        netReason ??
        (b.interfaces === 'restart'
          ? 'interface changes set RestartRequired on this KubeVirt (without it from v1.6)'
          : 'interface changes wait for a restart under Stage in this model');
      explain(['domain', 'devices', 'interfaces'], why);
      explain(['networks'], why);
    }

    // Firmware UUID backfilled by the controller.
    const vmiUuid = getStr(vmi, 'spec', 'domain', 'firmware', 'uuid');
    if (b.firmwareUuidBackfill && vmiUuid !== undefined && vmiUuid === getStr(cur, 'domain', 'firmware', 'uuid')) {
      copyField(neutral, cur, ['domain', 'firmware', 'uuid']);
    } else if (b.firmwareUuidRestartBug && vmiUuid !== undefined && vmiUuid === getStr(cur, 'domain', 'firmware', 'uuid') && getStr(base, 'domain', 'firmware', 'uuid') === undefined) {
      const why = `KubeVirt wrote this firmware UUID into the VM after starting it without one (the VMI runs with it), and this release counts it as a change: ${knownBugNote('firmwareUuidRestartBug')}`;
      explain(['domain', 'firmware', 'uuid'], why);
      // A VM created without a firmware block gets one holding only the UUID.
      const firmware = getObj(cur, 'domain', 'firmware') ?? {};
      if (getObj(base, 'domain', 'firmware') === undefined && Object.keys(firmware).length === 1) explain(['domain', 'firmware'], why);
    }

    // Only under LiveUpdate: the fields the handlers own.
    if (live) {
      if (getObj(base, 'domain', 'cpu') !== undefined && getObj(cur, 'domain', 'cpu') !== undefined) {
        copyField(neutral, cur, ['domain', 'cpu', 'sockets']);
      }
      if (get(cur, 'domain', 'memory', 'guest') !== undefined) {
        ensureObj(neutral, 'domain', 'memory');
        copyField(neutral, cur, ['domain', 'memory', 'guest']);
      }
      copyField(neutral, cur, ['nodeSelector']);
      copyField(neutral, cur, ['affinity']);
      if (b.tolerationsLive) copyField(neutral, cur, ['tolerations']);
      else explain(['tolerations'], 'tolerations are not live-updatable on this KubeVirt (live from v1.4)');
    } else {
      for (const f of ['domain.cpu.sockets', 'domain.memory.guest', 'nodeSelector', 'affinity', 'tolerations']) {
        explain(f.split('.'), 'the rollout strategy is Stage: KubeVirt holds this change until the next restart');
      }
    }

    const isNetList = (c: RawChange): boolean =>
      c.reorder === true && (isWithin(c.segments, [...TEMPLATE_SPEC, 'networks']) || isWithin(c.segments, [...TEMPLATE_SPEC, 'domain', 'devices', 'interfaces']));
    // Before v1.6 nothing neutralised the lists and KubeVirt compared them in order: a new order is a difference.
    this.nonLive = diffValues(neutral, cur, [...TEMPLATE_SPEC]).filter((c) => b.interfaceOrderSensitive || !isNetList(c));
    const hasNonLive = this.nonLive.length > 0;

    // Stopping removed the condition earlier in the same sync: only this check can set it again.
    let message = this.existing !== undefined && options.afterStop !== true ? String(this.existing['message'] ?? '') : undefined;
    if (b.conditionSticky) {
      if (hasNonLive && message === undefined) message = Message.nonLiveUpdatable;
    } else {
      message = hasNonLive ? (message ?? Message.nonLiveUpdatable) : undefined;
    }
    this.finalMessage = message;
    if (!live || hasNonLive || message !== undefined || options.afterStop === true) return;

    this.handlersRan = true;
    let handlerMessage: string | undefined;
    const handlers: Array<() => HandlerOutcome> = [
      () => handleCpuChange(cur, vmi, { behaviours: b, cpuAllocationRatio: this.cluster.cpuAllocationRatio }),
      () => handleAffinityChange(cur, vmi),
      ...(b.tolerationsLive ? [() => handleTolerationsChange(cur, vmi)] : []),
      () => handleMemoryChange(cur, vmi),
      () =>
        b.volumeReplacementRestartBug
          ? handleVolumeReplacement(cur, vmi, getStr(this.expandedDesired, 'spec', 'updateVolumesStrategy'))
          : ({ kind: 'none' } as const),
      () => (this.volumeMigrationGatesMissing() ? { kind: 'none' as const } : handleVolumeMigration(cur, vmi, getStr(this.expandedDesired, 'spec', 'updateVolumesStrategy'))),
    ];
    for (const handler of handlers) {
      const outcome = handler();
      if (outcome.kind === 'patched') {
        for (const p of outcome.paths) this.liveNotes.set(p, outcome.note);
      } else if (outcome.kind === 'restart') {
        this.handlerRestarts.set(outcome.path, outcome.message);
        if (outcome.why !== undefined) this.handlerWhy.set(outcome.path, outcome.why);
        handlerMessage ??= outcome.message;
      } else if (outcome.kind === 'wait') {
        // A handler error aborts the rest; the condition a handler set in this pass is not written.
        this.handlerWaits.set(outcome.path, outcome.message);
        this.waiting.push({ path: outcome.path, message: outcome.message });
        this.abortedBy = outcome.message;
        handlerMessage = undefined;
        break;
      }
    }
    this.finalMessage = handlerMessage;
  }

  /** The synchronisers that run under any strategy (KubeVirt ignores the condition; the seed model does not). */
  private synchronisers(vmi: Obj): void {
    const b = this.cluster.behaviours;
    if (!b.syncersIgnoreCondition && this.finalMessage !== undefined) return;
    for (const name of syncNetworks(this.desiredSpec, vmi, this.netCtx)) {
      this.liveNotes.set(formatPath([...TEMPLATE_SPEC, 'domain', 'devices', 'interfaces', { name }]), 'interface hot-plugged or its state updated on the running VMI');
      this.liveNotes.set(formatPath([...TEMPLATE_SPEC, 'networks', { name }]), 'network updated on the running VMI');
    }
    if (this.volumeHotplugEnabled()) {
      const declarative = this.cluster.behaviours.volumeHotplug === 'gated' || this.cluster.behaviours.volumeHotplug === 'defaultOn';
      const sync = syncHotplugVolumes(this.desiredSpec, vmi, declarative);
      for (const name of sync.changed) {
        const note = sync.swapped.includes(name)
          ? 'source of a hot-plugged volume changed: the VMI unplugs the old volume and plugs the new one (no restart)'
          : 'volume hot-plugged into (or unplugged from) the running VMI';
        this.liveNotes.set(formatPath([...TEMPLATE_SPEC, 'volumes', { name }]), note);
        this.liveNotes.set(formatPath([...TEMPLATE_SPEC, 'domain', 'devices', 'disks', { name }]), 'disk of a hotplugged volume');
      }
    }
    const annotations = getObj(this.expandedDesired, 'spec', 'template', 'metadata', 'annotations') ?? {};
    // syncDynamicAnnotationsAndLabelsToVMI arrived with v1.6.0.
    for (const key of b.dynamicMetadataSync ? DYNAMIC_ANNOTATIONS : []) {
      const wanted = annotations[key];
      const current = getObj(vmi, 'metadata', 'annotations');
      if (wanted === undefined) {
        if (current !== undefined) delete current[key];
      } else {
        ensureObj(vmi, 'metadata', 'annotations')[key] = wanted;
      }
    }
  }

  /** Before v1.5 the storage migration handler does nothing unless both gates are listed. */
  private volumeMigrationGatesMissing(): boolean {
    const gates = this.cluster.featureGates;
    return this.cluster.behaviours.volumeMigrationGated && !(gates.has(FeatureGate.VolumesUpdateStrategy) && gates.has(FeatureGate.VolumeMigration));
  }

  private volumeHotplugEnabled(): boolean {
    if (getStr(this.expandedDesired, 'spec', 'updateVolumesStrategy') === 'Migration') return false;
    const gates = this.cluster.featureGates;
    switch (this.cluster.behaviours.volumeHotplug) {
      case 'none':
        return false;
      case 'liveUpdate':
        return this.cluster.strategy === Strategy.LiveUpdate;
      case 'gated':
        return gates.has('DeclarativeHotplugVolumes') && !gates.has('HotplugVolumes');
      case 'defaultOn':
        return !gates.has('HotplugVolumes');
    }
  }

  /** Lists every change from the baseline with its rollout and, when staged, why. */
  private classify(): void {
    const desired = this.expandedDesired;
    const baseline = this.expandedBaseline;
    if (baseline === null) return;
    const raw: RawChange[] = [];
    // VM-level fields: never part of the restart comparison.
    if (isObj(baseline['metadata'])) {
      for (const key of ['labels', 'annotations']) {
        raw.push(...diffValues(get(baseline, 'metadata', key), get(this.input.desired, 'metadata', key), ['metadata', key]));
      }
    }
    const baseSpec = getObj(this.input.baseline, 'spec') ?? {};
    const wantSpec = getObj(this.input.desired, 'spec') ?? {};
    for (const key of new Set([...Object.keys(baseSpec), ...Object.keys(wantSpec)])) {
      if (key === 'template') continue;
      raw.push(...diffValues(baseSpec[key], wantSpec[key], ['spec', key]));
    }
    raw.push(...diffValues(get(baseline, 'spec', 'template', 'metadata'), get(desired, 'spec', 'template', 'metadata'), ['spec', 'template', 'metadata']));
    raw.push(...diffValues(this.baselineSpec, this.desiredSpec, [...TEMPLATE_SPEC]));

    if (this.input.vmi == null) {
      this.classifyWithoutInstance(raw);
      return;
    }
    const templateStaged = (): boolean => raw.some((c) => isWithin(c.segments, TEMPLATE_SPEC) && this.stagedWhy(c) !== null);
    for (const c of raw) {
      const path = formatPath(c.segments);
      let why: string | null;
      if (!isWithin(c.segments, ['spec', 'template'])) {
        const matcher = isWithin(c.segments, ['spec', 'instancetype']) || isWithin(c.segments, ['spec', 'preference']);
        if (!matcher) {
          this.push(c, path, null, 'VM-level field: takes effect at once, not part of the running instance', TakesEffect.vmObject);
          continue;
        }
        why =
          this.expansionError !== null
            ? `cannot be expanded yet: ${this.expansionError}; KubeVirt leaves the VM's condition as it is until it can`
            : templateStaged()
              ? 'expands to template changes that wait for a restart (listed with them)'
              : null;
        this.push(c, path, why, 'expands to the template changes listed');
        continue;
      }
      why = this.stagedWhy(c);
      this.push(c, path, why, this.liveWhy(c, path));
    }
    // Handler restarts for fields that equal the baseline but not the VMI (e.g. sockets reverted after a hotplug).
    for (const [path, message] of this.handlerRestarts) {
      const why = this.handlerWhy.get(path) ?? message;
      const covered = this.changes.filter((ch) => ch.path === path || ch.path.startsWith(`${path}.`) || ch.path.startsWith(`${path}[`));
      if (covered.length > 0) {
        // A change the synchronisers carried out anyway (a volume attached) while the handler sets the condition: the reason still counts.
        for (const ch of covered) if (ch.rollout === Rollout.live && !this.reasons.some((r) => r.path === ch.path)) this.reasons.push({ path: ch.path, message: why });
        continue;
      }
      const segments = parsePath(path);
      this.changes.push({
        path,
        from: getAt(this.input.vmi, ['spec', ...segments.slice(3)]) ?? null,
        to: getAt(desired, segments) ?? null,
        rollout: Rollout.staged,
        takesEffect: TakesEffect.nextRestart,
        why,
      });
      this.reasons.push({ path, message: why });
    }
  }

  /**
   * With no instance running nothing is live and nothing needs a restart: every template change
   * takes effect at the next start (so there are no restart reasons), and VM-level fields change
   * the VM object when applied.
   */
  private classifyWithoutInstance(raw: RawChange[]): void {
    const desired = this.input.desired;
    for (const c of raw) {
      const path = formatPath(c.segments);
      const change: FieldChange = { path, from: c.from === undefined ? null : c.from, to: c.to === undefined ? null : c.to, rollout: Rollout.staged, takesEffect: TakesEffect.nextStart };
      const vmLevel = !isWithin(c.segments, ['spec', 'template']) && !isWithin(c.segments, ['spec', 'instancetype']) && !isWithin(c.segments, ['spec', 'preference']);
      if (vmLevel) {
        change.rollout = Rollout.live;
        change.takesEffect = TakesEffect.vmObject;
        const power = isWithin(c.segments, ['spec', 'runStrategy']) || isWithin(c.segments, ['spec', 'running']);
        change.why = !power
          ? 'VM-level field: the VirtualMachine object changes when applied; no instance is running'
          : wantsRunning(desired)
            ? 'VM-level field: no instance is running, and once this is applied KubeVirt starts one from the template'
            : 'VM-level field: no instance is running, and the VM stays stopped';
      } else if (this.expansionError !== null && !isWithin(c.segments, ['spec', 'template'])) {
        change.why = `cannot be expanded yet: ${this.expansionError}; no instance is running, so nothing waits on it but the next start`;
      } else {
        change.why = isWithin(c.segments, ['spec', 'template']) ? nextStartWhy(desired) : `expands to template changes: ${nextStartWhy(desired)}`;
      }
      this.changes.push(change);
    }
  }

  private push(c: RawChange, path: string, stagedWhy: string | null, liveWhy: string, live: TakesEffect = TakesEffect.running): void {
    const change: FieldChange = {
      path,
      from: c.from === undefined ? null : c.from,
      to: c.to === undefined ? null : c.to,
      rollout: stagedWhy === null ? Rollout.live : Rollout.staged,
      takesEffect: stagedWhy === null ? live : this.stopping ? TakesEffect.nextStart : TakesEffect.nextRestart,
      why: stagedWhy ?? liveWhy,
    };
    this.changes.push(change);
    if (stagedWhy !== null) this.reasons.push({ path, message: stagedWhy });
  }

  private liveWhy(c: RawChange, path: string): string {
    const wait = this.waitFor(c);
    if (wait !== undefined) return `goes live once KubeVirt can apply it; waiting: ${wait}`;
    return this.liveNotes.get(path) ?? this.noteFor(c.segments) ?? 'applied to the running VMI';
  }

  private noteFor(segments: Segment[]): string | undefined {
    for (const [p, note] of this.liveNotes) if (formatPath(segments).startsWith(p)) return note;
    return undefined;
  }

  private waitFor(c: RawChange): string | undefined {
    for (const [p, message] of this.handlerWaits) {
      if (formatPath(c.segments).startsWith(p)) return message;
    }
    // Handlers after the one that failed did not run; their fields go live on the retry.
    if (this.abortedBy !== undefined && HANDLER_FIELDS.some((f) => isWithin(c.segments, f)) && !this.reachesVmi(c)) return this.abortedBy;
    return undefined;
  }

  /** Null when the change reaches the running guest in this pass; otherwise why it waits. */
  private stagedWhy(c: RawChange): string | null {
    const vmi = this.input.vmi ?? null;
    if (this.stopping) return 'the VM is being stopped by its runStrategy: takes effect at the next start';
    // classifyWithoutInstance handles a VM with no instance; this is only a guard.
    if (vmi === null) return nextStartWhy(this.input.desired);
    if (this.expansionError !== null) return `cannot be judged until the instancetype expands: ${this.expansionError}`;
    const path = formatPath(c.segments);
    // A hotplug the synchronisers did carry out is live even when the rest of its list waits.
    if (SYNCED_LISTS.some((l) => isWithin(c.segments, l)) && this.reachesVmi(c) && c.to !== undefined) return null;
    if (this.nonLive.some((n) => isWithin(n.segments, c.segments) || isWithin(c.segments, n.segments))) {
      if (c.reorder && this.cluster.behaviours.interfaceOrderSensitive) {
        return 'the list was reordered: before v1.6 KubeVirt compares interfaces and networks in order, so a new order sets RestartRequired';
      }
      return this.explanation(c.segments) ?? Message.nonLiveUpdatable;
    }
    for (const [p, message] of this.handlerRestarts) if (path.startsWith(p)) return this.handlerWhy.get(p) ?? message;
    if (this.waitFor(c) !== undefined) return null;
    if (this.reachesVmi(c)) return null;
    return this.silentWhy(c);
  }

  private explanation(segments: Segment[]): string | undefined {
    let best: { at: Segment[]; why: string } | undefined;
    for (const e of this.explanations) if (isWithin(segments, e.at) && (best === undefined || e.at.length > best.at.length)) best = e;
    return best?.why;
  }

  /** True when the VMI, after this pass, holds the desired value at the change's path. */
  private reachesVmi(c: RawChange): boolean {
    const vmi = this.vmiAfter;
    if (vmi === null) return false;
    let vmiSegments: Segment[];
    if (isWithin(c.segments, TEMPLATE_SPEC)) vmiSegments = ['spec', ...c.segments.slice(3)];
    else if (isWithin(c.segments, ['spec', 'template', 'metadata'])) vmiSegments = ['metadata', ...c.segments.slice(3)];
    else return false;
    if (c.reorder) return false;
    const last = vmiSegments[vmiSegments.length - 1];
    const running = getAt(vmi, vmiSegments);
    // An added block is live when the VMI holds everything in it (the VMI may carry more, e.g. maxGuest).
    if (c.from === undefined && isObj(c.to) && isObj(running)) return containsSemantic(running, c.to);
    return semanticEqual(running, c.to, typeof last === 'string' ? last : undefined);
  }

  /** Why a change that sets no condition still waits for the next start. */
  private silentWhy(c: RawChange): string {
    const b = this.cluster.behaviours;
    const live = this.cluster.strategy === Strategy.LiveUpdate;
    if (c.reorder) return 'new order takes effect at the next boot (KubeVirt sets no RestartRequired for it)';
    if (isWithin(c.segments, ['spec', 'template', 'metadata'])) {
      const key = c.segments[4];
      if (!b.dynamicMetadataSync && typeof key === 'string' && DYNAMIC_ANNOTATIONS.includes(key)) {
        return 'this KubeVirt syncs no template annotation to a running VMI (the descheduler annotations are synced from v1.6): it applies to the next instance';
      }
      return 'template metadata applies to the next instance (KubeVirt sets no RestartRequired for it)';
    }
    if (HANDLER_FIELDS.some((f) => isWithin(c.segments, f)) && live && !this.handlersRan) {
      if (this.nonLive.length > 0) {
        return 'held: another change in this edit needs a restart, and KubeVirt runs no live update while one is pending';
      }
      return this.finalMessage !== undefined
        ? 'held: RestartRequired is already set, and KubeVirt propagates no further live update until the VM restarts'
        : 'held until the next restart';
    }
    if (isWithin(c.segments, [...TEMPLATE_SPEC, 'domain', 'devices', 'interfaces']) || isWithin(c.segments, [...TEMPLATE_SPEC, 'networks'])) {
      if (!b.syncersIgnoreCondition && this.finalMessage !== undefined) {
        return 'held: RestartRequired is already set, and nothing more is propagated until the VM restarts';
      }
      if (!nicHotplugEnabled(this.netCtx)) return 'this KubeVirt does not hot-plug interfaces here: the change appears at the next boot';
      if (isNonHotplugBinding(c.to)) return 'only bridge and SR-IOV interfaces are hot-plugged: this one appears at the next boot (KubeVirt sets no RestartRequired for it)';
      return 'reaches the guest at the next boot';
    }
    if (isWithin(c.segments, [...TEMPLATE_SPEC, 'volumes']) || isWithin(c.segments, [...TEMPLATE_SPEC, 'domain', 'devices', 'disks'])) {
      if (getStr(this.expandedDesired, 'spec', 'updateVolumesStrategy') === 'Migration' && this.volumeMigrationGatesMissing()) {
        return `updateVolumesStrategy: Migration does nothing without the ${FeatureGate.VolumesUpdateStrategy} and ${FeatureGate.VolumeMigration} feature gates on this KubeVirt (GA from v1.5): no storage migration, the new claim is used at the next boot (KubeVirt sets no RestartRequired for it)`;
      }
      if (getStr(this.expandedDesired, 'spec', 'updateVolumesStrategy') === 'Migration' && !live) {
        return 'volume migration runs only under LiveUpdate: the new volume is used after the next restart (KubeVirt sets no RestartRequired for it)';
      }
      const element = c.segments[3 + (isWithin(c.segments, [...TEMPLATE_SPEC, 'volumes']) ? 1 : 3)];
      const volumeName = typeof element === 'object' ? element.name : undefined;
      const volume = [...getList(this.desiredSpec, 'volumes'), ...getList(this.baselineSpec, 'volumes')].find((v) => v['name'] === volumeName);
      if ((isHotplugVolume(volume) || !live) && b.volumeHotplug === 'none') {
        return 'this KubeVirt (before v1.6) attaches no volume declared in the template to a running VMI: the volume changes at the next start';
      }
      if (isHotplugVolume(volume) || !live) {
        return 'declarative volume hotplug is off on this cluster: the volume changes at the next start (KubeVirt sets no RestartRequired for it)';
      }
    }
    return 'not propagated to the running instance: takes effect at the next start';
  }
}

function containsSemantic(actual: Obj, wanted: Obj): boolean {
  return Object.entries(wanted).every(([k, v]) => {
    const a = actual[k];
    return isObj(v) && isObj(a) ? containsSemantic(a, v) : semanticEqual(a, v, k);
  });
}

function copyField(target: Obj, source: Obj, keys: string[]): void {
  const value = get(source, ...keys);
  const parentKeys = keys.slice(0, -1);
  const last = keys[keys.length - 1] ?? '';
  if (value === undefined) {
    const parent = getObj(target, ...parentKeys);
    if (parent !== undefined) delete parent[last];
    return;
  }
  ensureObj(target, ...parentKeys)[last] = clone(value);
}
