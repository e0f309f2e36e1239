/**
 * The restart planner and the restart records, pure and at fixed instants: budget arithmetic in and
 * out of a window, onChange, manual, the protection marker, runStrategy Halted/Manual, migration,
 * failed groups, explicit requests served exactly once (also across a leader that died), the claim
 * and health checks, and the merge gate.
 */
import assert from 'node:assert/strict';
import {
  MANUAL_POLICY,
  RestartAnnotation,
  RestartDecisionKind,
  RestartPolicy,
  type RecordedVm,
  type RestartCandidate,
  type RestartPolicySpec,
  RestartStatus,
  claimAnnotations,
  finishAnnotations,
  generationServed,
  mergeGateReasons,
  parseCron,
  patchedAnnotations,
  pendingRequest,
  planRestarts,
  readRestartRecord,
  requestChange,
  restartHealth,
  restartIssued,
  restartPolicyOf,
  vmRestartPolicy,
} from '../reconciler/restart/index.ts';

const at = (iso: string): number => Date.parse(iso);
/** Monday; the window opens Saturday 2026-12-05 02:00 UTC for 2 h. */
const MONDAY = at('2026-11-30T08:00:00Z');
const IN_WINDOW = at('2026-12-05T02:30:00Z');

const windowPolicy = (budget: { concurrent: number; perWindow: number | null }): RestartPolicySpec => ({
  policy: RestartPolicy.window,
  windows: [{ schedule: parseCron('0 2 * * 6'), durationMs: 2 * 3_600_000, timeZone: 'UTC' }],
  budget,
  healthTimeoutMs: 600_000,
  mergeGate: true,
});

const vm = (name: string, extra: Partial<RestartCandidate> = {}): RestartCandidate => ({ namespace: 'shop', name, stagedGeneration: 2, request: null, migratable: false, runStrategy: 'Always', ...extra });
const ten = (): RestartCandidate[] => Array.from({ length: 10 }, (_, i) => vm(`vm-${String(i).padStart(2, '0')}`));
const recorded = (name: string, annotations: Record<string, string>, namespace = 'shop'): RecordedVm => ({ namespace, name, record: readRestartRecord(annotations) });
const claimed = (name: string, startedAt: string, generation = 2): RecordedVm => recorded(name, patchedAnnotations({}, claimAnnotations({ generation, request: null, vmiUid: `uid-${name}`, now: at(startedAt) })));
const succeeded = (name: string, startedAt: string, finishedAt: string): RecordedVm =>
  recorded(name, patchedAnnotations(patchedAnnotations({}, claimAnnotations({ generation: 2, request: null, vmiUid: `uid-${name}`, now: at(startedAt) })), finishAnnotations({ status: 'Succeeded', now: at(finishedAt) })));

/** name → kind, for the whole plan at a glance. */
const kinds = (plan: ReturnType<typeof planRestarts>): Record<string, string> => Object.fromEntries(plan.decisions.map((d) => [d.name, d.kind]));
const text = (plan: ReturnType<typeof planRestarts>, name: string): string => plan.decisions.find((d) => d.name === name)?.text ?? '(none)';

describe('restart planner: budgets and windows (10 VMs, concurrent 2, perWindow 5)', () => {
  const policy = windowPolicy({ concurrent: 2, perWindow: 5 });

  it('outside the window: five wait for the next opening, five for the one after (over the per-window budget)', () => {
    const plan = planRestarts({ policy, candidates: ten(), records: [], now: MONDAY });
    assert.equal(plan.current, null);
    assert.ok(plan.decisions.every((d) => d.kind === RestartDecisionKind.waitWindow));
    assert.equal(text(plan, 'vm-02'), 'restarts in the next window (Sat 02:00–04:00 UTC), 3 of 5 this window');
    assert.equal(text(plan, 'vm-07'), 'restarts in the window after next (Sat 12 Dec 02:00–04:00 UTC), 3 of 5 this window (budget 5 per window)');
    assert.deepEqual(
      plan.decisions.map((d) => [d.window?.index, d.window?.start, d.overBudget === true]),
      [...Array(5).fill([1, at('2026-12-05T02:00:00Z'), false]), ...Array(5).fill([2, at('2026-12-12T02:00:00Z'), true])],
    );
    assert.deepEqual(mergeGateReasons(plan, policy), ['5 restarts over the budget of 5 per window (Sat 02:00–04:00 UTC), pushed to later windows: shop/vm-05, shop/vm-06, shop/vm-07, shop/vm-08, shop/vm-09']);
  });

  it('when the window opens: two restart now, three wait for a slot, five go to the next window', () => {
    const plan = planRestarts({ policy, candidates: ten(), records: [], now: IN_WINDOW });
    assert.equal(plan.current?.start, at('2026-12-05T02:00:00Z'));
    assert.deepEqual(Object.values(kinds(plan)), ['restartNow', 'restartNow', 'waitBudget', 'waitBudget', 'waitBudget', 'waitWindow', 'waitWindow', 'waitWindow', 'waitWindow', 'waitWindow']);
    assert.equal(text(plan, 'vm-00'), 'restarts now, in the current window (Sat 02:00–04:00 UTC), 1 of 5 this window');
    assert.equal(text(plan, 'vm-04'), 'waits for a free restart slot, 3rd in line (2 at once), in the current window (Sat 02:00–04:00 UTC), 5 of 5 this window');
    // They could have gone in this window but for its budget, which the text says.
    assert.equal(text(plan, 'vm-05'), 'restarts in the next window (Sat 12 Dec 02:00–04:00 UTC), 1 of 5 this window (budget 5 per window)');
    assert.deepEqual(plan.decisions.map((d) => d.overBudget === true), [...Array(5).fill(false), ...Array(5).fill(true)]);
    assert.deepEqual(plan.decisions.map((d) => d.serves.generation), Array(10).fill(2));
    assert.match(mergeGateReasons(plan, policy)[0] ?? '', /^5 restarts over the budget of 5 per window \(Sat 02:00–04:00 UTC\), pushed to later windows: shop\/vm-05,/);
  });

  it('counts restarts in progress against the slots and restarts done in this window against its budget', () => {
    // vm-00 and vm-01 came back; vm-02 and vm-03 are restarting: both slots taken, 4 of 5 used.
    const records = [succeeded('vm-00', '2026-12-05T02:01:00Z', '2026-12-05T02:05:00Z'), succeeded('vm-01', '2026-12-05T02:01:00Z', '2026-12-05T02:06:00Z'), claimed('vm-02', '2026-12-05T02:05:00Z'), claimed('vm-03', '2026-12-05T02:06:00Z')];
    const plan = planRestarts({ policy, candidates: ten(), records, now: IN_WINDOW });
    assert.equal(plan.inProgress, 2);
    assert.deepEqual(Object.values(kinds(plan)), ['done', 'done', 'restarting', 'restarting', 'waitBudget', 'waitWindow', 'waitWindow', 'waitWindow', 'waitWindow', 'waitWindow']);
    assert.equal(text(plan, 'vm-02'), 'restarting (started 2026-12-05 02:05 UTC)');
    assert.equal(text(plan, 'vm-04'), 'waits for a free restart slot, 1st in line (2 at once), in the current window (Sat 02:00–04:00 UTC), 5 of 5 this window');
    // Once vm-02 is back, vm-04 takes its slot; the budget of this window is then spent.
    const later = planRestarts({ policy, candidates: ten(), records: [...records.slice(0, 2), succeeded('vm-02', '2026-12-05T02:05:00Z', '2026-12-05T02:20:00Z'), records[3] as RecordedVm], now: at('2026-12-05T02:40:00Z') });
    assert.equal(kinds(later)['vm-04'], 'restartNow');
    assert.equal(text(later, 'vm-04'), 'restarts now, in the current window (Sat 02:00–04:00 UTC), 5 of 5 this window');
    assert.equal(kinds(later)['vm-05'], 'waitWindow');
    // A restart from last week's window does not count against this one.
    const fresh = planRestarts({ policy, candidates: ten().slice(1), records: [succeeded('vm-00', '2026-11-28T02:10:00Z', '2026-11-28T02:15:00Z')], now: IN_WINDOW });
    assert.equal(fresh.decisions.filter((d) => d.window?.index === 0).length, 5);
  });

  it('without a per-window limit, everything waiting goes into the next opening', () => {
    const plan = planRestarts({ policy: windowPolicy({ concurrent: 2, perWindow: null }), candidates: ten(), records: [], now: MONDAY });
    assert.ok(plan.decisions.every((d) => d.window?.index === 1));
    assert.equal(text(plan, 'vm-09'), 'restarts in the next window (Sat 02:00–04:00 UTC), 10 of 10 this window');
    assert.deepEqual(mergeGateReasons(plan, MANUAL_POLICY), []);
  });
});

describe('restart planner: policies and what no policy overrides', () => {
  const onChange: RestartPolicySpec = { ...MANUAL_POLICY, policy: RestartPolicy.onChange, budget: { concurrent: 2, perWindow: null } };

  it('onChange restarts at once within the concurrent budget', () => {
    const plan = planRestarts({ policy: onChange, candidates: [vm('a'), vm('b'), vm('c')], records: [], now: MONDAY });
    assert.deepEqual(kinds(plan), { a: 'restartNow', b: 'restartNow', c: 'waitBudget' });
    assert.equal(text(plan, 'a'), 'restarts now: staged changes need it (policy onChange)');
    assert.equal(text(plan, 'c'), 'waits for a free restart slot, 1st in line (2 at once): staged changes need it');
    // A restart in progress elsewhere in the repository takes a slot.
    const busy = planRestarts({ policy: onChange, candidates: [vm('a'), vm('b')], records: [claimed('x', '2026-11-30T07:59:00Z', 5)], now: MONDAY });
    assert.deepEqual(kinds(busy), { a: 'restartNow', b: 'waitBudget' });
  });

  it('manual reports only; an explicit request is the manual restart, and is served', () => {
    const plan = planRestarts({ policy: MANUAL_POLICY, candidates: [vm('a'), vm('b', { request: '2026-11-30' })], records: [], now: MONDAY });
    assert.deepEqual(kinds(plan), { a: 'manual', b: 'restartNow' });
    assert.equal(text(plan, 'a'), 'awaits a manual restart (policy manual)');
    assert.equal(text(plan, 'b'), 'restarts now: requested (vmroll.dev/restart-requested: 2026-11-30) (policy manual)');
    // Per VM, the annotation overrides the repository's policy, both ways.
    const mixed = planRestarts({ policy: onChange, candidates: [vm('a', { annotations: { [RestartAnnotation.policy]: 'manual' } })], records: [], now: MONDAY });
    assert.equal(text(mixed, 'a'), 'awaits a manual restart (policy manual, from vmroll.dev/restart-policy)');
    const opted = planRestarts({ policy: { ...MANUAL_POLICY, windows: windowPolicy({ concurrent: 1, perWindow: null }).windows }, candidates: [vm('a', { annotations: { [RestartAnnotation.policy]: 'window' } })], records: [], now: MONDAY });
    assert.equal(text(opted, 'a'), 'restarts in the next window (Sat 02:00–04:00 UTC), 1 of 1 this window');
  });

  it('never restarts a protected VM (label or annotation), whatever the policy or a request, and the merge gate says why', () => {
    const policy = windowPolicy({ concurrent: 5, perWindow: null });
    const candidates = [
      vm('by-label', { labels: { [RestartAnnotation.protect]: 'never' } }),
      vm('by-annotation', { annotations: { [RestartAnnotation.protect]: 'never' }, request: 'now-please', stagedGeneration: null }),
      vm('misspelt', { annotations: { [RestartAnnotation.protect]: 'nevr' } }),
      vm('free'),
    ];
    const plan = planRestarts({ policy, candidates, records: [], now: IN_WINDOW });
    assert.deepEqual(kinds(plan), { 'by-annotation': 'protected', 'by-label': 'protected', free: 'restartNow', misspelt: 'protected' });
    assert.equal(text(plan, 'by-label'), 'never restarted by vmroll: protected (vmroll.dev/restart: never); its staged changes wait for a manual restart');
    assert.deepEqual(plan.decisions.find((d) => d.name === 'misspelt')?.problems, ['vmroll.dev/restart: "nevr" is not "never"; the VM is treated as protected']);
    assert.deepEqual(mergeGateReasons(plan, policy), [
      'shop/by-annotation is protected (vmroll.dev/restart: never) but the change requests a restart of it',
      'shop/by-label is protected (vmroll.dev/restart: never) but its staged changes need a restart under policy window',
      'shop/misspelt is protected (vmroll.dev/restart: never) but its staged changes need a restart under policy window',
    ]);
    // Under manual, a protected VM with staged changes was never going to be restarted by vmroll: nothing for the gate.
    const manual = planRestarts({ policy: MANUAL_POLICY, candidates: [candidates[0] as RestartCandidate], records: [], now: IN_WINDOW });
    assert.equal(kinds(manual)['by-label'], 'protected');
    assert.deepEqual(mergeGateReasons(manual, MANUAL_POLICY), []);
  });

  it('never starts or restarts a VM with runStrategy Halted or Manual, even on request', () => {
    const plan = planRestarts({ policy: onChange, candidates: [vm('halted', { runStrategy: 'Halted', request: 'x' }), vm('manual', { runStrategy: 'Manual' }), vm('rerun', { runStrategy: 'RerunOnFailure' })], records: [], now: MONDAY });
    assert.deepEqual(kinds(plan), { halted: 'never', manual: 'never', rerun: 'restartNow' });
    assert.equal(text(plan, 'halted'), 'never restarted by vmroll: runStrategy Halted; its changes take effect when it is next started');
  });

  it('does not restart for changes a live migration brings up to date, but does for a request', () => {
    const plan = planRestarts({ policy: onChange, candidates: [vm('mig', { migratable: true }), vm('mig-req', { migratable: true, request: 't1' })], records: [], now: MONDAY });
    assert.deepEqual(kinds(plan), { mig: 'notNeeded', 'mig-req': 'restartNow' });
    assert.equal(text(plan, 'mig'), 'not restarted: a live migration brings it up to date');
    assert.deepEqual(plan.decisions.find((d) => d.name === 'mig-req')?.serves, { generation: null, request: 't1' });
  });

  it('stops the group of a VM that failed to come back; other groups go on', () => {
    const claim = patchedAnnotations({}, claimAnnotations({ generation: 2, request: null, vmiUid: 'u1', now: at('2026-11-30T07:00:00Z') }));
    const failed = recorded('db-1', patchedAnnotations(claim, finishAnnotations({ status: 'Failed', now: at('2026-11-30T07:10:00Z'), message: 'did not come back within 10m: still no Ready' })));
    const candidates = [vm('db-1'), vm('db-2'), vm('web-1', { namespace: 'web' }), vm('db-3', { annotations: { [RestartAnnotation.group]: 'canary' } })];
    const plan = planRestarts({ policy: { ...onChange, budget: { concurrent: 5, perWindow: null } }, candidates, records: [failed], now: MONDAY });
    assert.deepEqual(kinds(plan), { 'db-1': 'failed', 'db-2': 'held', 'db-3': 'restartNow', 'web-1': 'restartNow' });
    assert.equal(text(plan, 'db-1'), 'restart failed (started 2026-11-30 07:00 UTC): did not come back within 10m: still no Ready; group shop is stopped');
    assert.equal(text(plan, 'db-2'), 'held: group shop is stopped since the restart of shop/db-1 failed');
    // A newer generation of the failed VM waits too: the group waits for a person.
    assert.equal(kinds(planRestarts({ policy: onChange, candidates: [vm('db-1', { stagedGeneration: 3 })], records: [failed], now: MONDAY }))['db-1'], 'held');
  });

  it('reads a VM’s policy annotations the safe way', () => {
    const repo = restartPolicyOf({ policy: 'onChange' });
    assert.deepEqual(vmRestartPolicy(repo, { namespace: 'ns', annotations: { [RestartAnnotation.policy]: 'sometimes' } }), {
      policy: 'manual',
      source: 'annotation',
      protected: false,
      group: 'ns',
      problems: ['vmroll.dev/restart-policy: "sometimes" is not one of manual, onChange, window; the VM is treated as manual'],
    });
    assert.deepEqual(vmRestartPolicy(repo, { namespace: 'ns', annotations: { [RestartAnnotation.policy]: 'window' } }).problems, [
      "vmroll.dev/restart-policy: window, but the repository's restart policy declares no windows; the VM is treated as manual",
    ]);
    assert.equal(vmRestartPolicy(repo, { namespace: 'ns' }).policy, 'onChange');
  });
});

describe('restart records: explicit requests exactly once, claims and health', () => {
  const token = (t: string): Record<string, string> => ({ [RestartAnnotation.requested]: t });

  it('a change that adds or changes the token is one request; removing it or creating the VM is none', () => {
    assert.equal(requestChange({}, token('a'), { created: false }), 'a');
    assert.equal(requestChange(token('a'), token('b'), { created: false }), 'b');
    assert.equal(requestChange(token('a'), token('a'), { created: false }), null);
    assert.equal(requestChange(token('a'), {}, { created: false }), null);
    assert.equal(requestChange(undefined, token('a'), { created: true }), null);
    assert.equal(requestChange({}, token('  '), { created: false }), null, 'an empty token asks for nothing');
  });

  it('a request is served once, and survives a leader that applied it and died before restarting', () => {
    const live = (extra: Record<string, string> = {}): Record<string, string> => ({ ...token('a'), ...extra });
    // The sync that applies the new token: pending (and written to vmroll.dev/restart-pending in the same apply).
    assert.equal(pendingRequest({ previous: {}, desired: token('a'), live: {} }), 'a');
    // The leader died; the next one's previous state is the cluster's copy, which holds the token and the marker.
    assert.equal(pendingRequest({ previous: live(), desired: token('a'), live: live({ [RestartAnnotation.pending]: 'a' }) }), 'a');
    // Served: the claim recorded the token; nothing is pending any more, whatever the marker says.
    const claim = patchedAnnotations({}, claimAnnotations({ generation: 4, request: 'a', vmiUid: 'u1', now: MONDAY }));
    assert.equal(pendingRequest({ previous: live(), desired: token('a'), live: live({ [RestartAnnotation.pending]: 'a', ...claim }) }), null);
    // A token merely present (no change, no marker) asks for nothing: a VM first seen does not restart.
    assert.equal(pendingRequest({ previous: live(), desired: token('a'), live: live() }), null);
    // A VM the sync creates starts with its spec: no restart.
    assert.equal(pendingRequest({ previous: undefined, desired: token('a'), live: undefined }), null);
    // A new token after a served one is a new request.
    assert.equal(pendingRequest({ previous: live(), desired: token('b'), live: live(claim) }), 'b');

    // Through the planner: pending → restart now; claimed → restarting; finished → done, not again.
    const policy: RestartPolicySpec = { ...MANUAL_POLICY, policy: RestartPolicy.onChange };
    const c = vm('a', { stagedGeneration: null, request: 'a' });
    assert.equal(kinds(planRestarts({ policy, candidates: [c], records: [], now: MONDAY }))['a'], 'restartNow');
    const inProgress = recorded('a', claim);
    assert.equal(kinds(planRestarts({ policy, candidates: [c], records: [inProgress], now: MONDAY }))['a'], 'restarting');
    const done = recorded('a', patchedAnnotations(claim, finishAnnotations({ status: 'Succeeded', now: MONDAY + 60_000 })));
    assert.equal(kinds(planRestarts({ policy, candidates: [c], records: [done], now: MONDAY + 120_000 }))['a'], 'done');
  });

  it('records the served generation and reads back only well-formed values', () => {
    const claim = claimAnnotations({ generation: 7, request: null, vmiUid: null, now: at('2026-12-05T02:03:04.567Z') });
    assert.deepEqual(claim, {
      'vmroll.dev/restarted-generation': '7',
      'vmroll.dev/restart-status': 'InProgress',
      'vmroll.dev/restart-started-at': '2026-12-05T02:03:04Z',
      'vmroll.dev/restart-finished-at': null,
      'vmroll.dev/restart-vmi-uid': '',
      'vmroll.dev/restart-message': null,
    });
    const record = readRestartRecord(patchedAnnotations({ [RestartAnnotation.message]: 'from before', [RestartAnnotation.finishedAt]: '2026-11-01T00:00:00Z' }, claim));
    assert.equal(record.message, null, 'the claim clears the last restart’s message and end');
    assert.equal(record.finishedAt, null);
    assert.equal(record.startedAt, at('2026-12-05T02:03:04Z'));
    assert.equal(record.status, RestartStatus.InProgress);
    assert.equal(generationServed(record, 7), true);
    assert.equal(generationServed(record, 6), true, 'an earlier generation is covered');
    assert.equal(generationServed(record, 8), false);
    assert.deepEqual(readRestartRecord({ [RestartAnnotation.restartedGeneration]: 'seven', [RestartAnnotation.status]: 'Done', [RestartAnnotation.startedAt]: 'yesterday' }), {
      generation: null,
      request: null,
      status: null,
      startedAt: null,
      finishedAt: null,
      vmiUid: null,
      message: null,
    });
  });

  it('tells whether a claimed restart reached KubeVirt', () => {
    const record = readRestartRecord(patchedAnnotations({}, claimAnnotations({ generation: 3, request: null, vmiUid: 'old', now: MONDAY })));
    const vmi = (uid: string, terminating = false) => ({ uid, terminating, phase: 'Running', ready: true, agentConnected: false });
    assert.equal(restartIssued(record, vmi('old'), false), false, 'same VMI, nothing pending: the leader died before calling restart');
    assert.equal(restartIssued(record, vmi('old'), true), true, 'state change requests pending');
    assert.equal(restartIssued(record, vmi('old', true), false), true, 'the old VMI is terminating');
    assert.equal(restartIssued(record, null, false), true, 'no VMI: stopped');
    assert.equal(restartIssued(record, vmi('new'), false), true, 'a new VMI');
    assert.equal(restartIssued({ ...record, status: RestartStatus.Succeeded }, vmi('old'), false), true, 'nothing in progress');
  });

  it('gates on a new VMI Running and Ready (and AgentConnected when expected) within the timeout', () => {
    const record = readRestartRecord(patchedAnnotations({}, claimAnnotations({ generation: 3, request: null, vmiUid: 'old', now: MONDAY })));
    const base = { record, expectAgent: false, timeoutMs: 600_000 };
    const vmi = { uid: 'new', terminating: false, phase: 'Running', ready: true, agentConnected: false };
    assert.deepEqual(restartHealth({ ...base, vmi, now: MONDAY + 60_000 }), { state: 'healthy', message: 'Running and Ready again' });
    assert.deepEqual(restartHealth({ ...base, expectAgent: true, vmi, now: MONDAY + 60_000 }), { state: 'waiting', message: 'waiting for AgentConnected' });
    assert.deepEqual(restartHealth({ ...base, vmi: { ...vmi, uid: 'old' }, now: MONDAY + 60_000 }), { state: 'waiting', message: 'waiting for a new VMI' });
    assert.deepEqual(restartHealth({ ...base, vmi: { ...vmi, phase: 'Scheduling', ready: false }, now: MONDAY + 599_000 }), { state: 'waiting', message: 'waiting for Running (phase Scheduling), Ready' });
    assert.deepEqual(restartHealth({ ...base, vmi: { ...vmi, ready: false }, now: MONDAY + 600_000 }), { state: 'failed', message: 'did not come back within 10m: still no Ready' });
  });
});
