/** The engine against every table-driven case in fixtures/rollout/cases, under each model a case names. */
import assert from 'node:assert/strict';
import { planRollout } from '../reconciler/rollout/index.ts';
import { validateVmPlan } from '../reconciler/validate.ts';
import { containsSubset, inputsFor, loadCases } from './helpers/cases.ts';

const cases = loadCases();

describe('rollout engine cases', () => {
  it('has cases under both the seed model and KubeVirt >= v1.8', () => {
    const models = new Set(cases.flatMap((c) => Object.keys(c.expect)));
    assert.ok(models.has('seed'));
    assert.ok([...models].some((m) => /^v1\.(8|9|1\d)\./.test(m)));
  });

  for (const c of cases) {
    describe(`${c.file}: ${c.name}`, () => {
      for (const [model, want] of Object.entries(c.expect)) {
        it(model, () => {
          const { baseline, desired, vmi, kubevirt } = inputsFor(c);
          const result = planRollout({
            baseline,
            desired,
            vmi,
            kubevirt,
            conditions: c.conditions ?? [],
            instancetypes: c.instancetypes ?? [],
            migrations: c.migrations ?? [],
            ...(model === 'seed' ? {} : { kubevirtVersion: model }),
          });
          const plan = result.plan;
          const shown = JSON.stringify({ plan, admission: result.admissionErrors }, null, 1);
          if (want.admission) {
            assert.deepEqual(result.admissionErrors.map((a) => a.message), want.admission, shown);
            return;
          }
          assert.deepEqual(result.admissionErrors, [], shown);
          const validation = validateVmPlan({ commit: null, vms: [plan], errors: [] });
          assert.ok(validation.ok, `plan does not match schemas/vmplan.schema.json: ${JSON.stringify(validation)}`);
          assert.equal(plan.restartRequired, want.restartRequired, `restartRequired\n${shown}`);
          if (want.condition !== undefined) assert.equal(plan.condition, want.condition, `condition\n${shown}`);
          if (want.conditionMessage !== undefined) assert.equal(plan.conditionMessage, want.conditionMessage, `conditionMessage\n${shown}`);
          if (want.strategy !== undefined) assert.equal(plan.strategy, want.strategy, `strategy\n${shown}`);
          const paths = (rollout: string): string[] => plan.changes.filter((ch) => ch.rollout === rollout).map((ch) => ch.path).sort();
          if (want.live) assert.deepEqual(paths('live'), [...want.live].sort(), `live paths\n${shown}`);
          if (want.staged) assert.deepEqual(paths('staged'), [...want.staged].sort(), `staged paths\n${shown}`);
          for (const r of want.reasons ?? []) {
            assert.ok(plan.reasons.some((p) => p.path === r.path && p.message === r.message), `missing reason ${JSON.stringify(r)}\n${shown}`);
          }
          for (const [p, text] of Object.entries(want.reasonIncludes ?? {})) {
            assert.ok(plan.reasons.some((r) => r.path === p && r.message.includes(text)), `no reason at ${p} containing ${JSON.stringify(text)}\n${shown}`);
          }
          if (want.waiting) assert.deepEqual(plan.waiting.map((w) => w.message), want.waiting, `waiting\n${shown}`);
          if (vmi === null) {
            // Nothing runs: nothing waits for a restart, every change takes effect at the next start (or on the VM object).
            assert.deepEqual(plan.reasons, [], `no restart reasons without an instance\n${shown}`);
            for (const ch of plan.changes) {
              assert.ok(ch.takesEffect === 'nextStart' || ch.takesEffect === 'vmObject', `${ch.path} takes effect ${ch.takesEffect} with no instance\n${shown}`);
              assert.doesNotMatch(ch.why ?? '', /running VMI|running instance|hot-?plug/i, `${ch.path}\n${shown}`);
            }
          } else {
            const stagedPaths = new Set(paths('staged'));
            for (const p of stagedPaths) assert.ok(plan.reasons.some((r) => r.path === p), `staged change ${p} has no reason\n${shown}`);
          }
          for (const ch of plan.changes) {
            const expected = ch.rollout === 'live' ? ['running', 'vmObject'] : ['nextRestart', 'nextStart'];
            assert.ok(expected.includes(ch.takesEffect ?? ''), `${ch.path}: rollout ${ch.rollout} but takesEffect ${ch.takesEffect}\n${shown}`);
          }
          for (const ch of plan.changes) {
            // Every live change says how it reaches the guest; a staged one does not.
            if (ch.rollout === 'live') assert.ok(ch.reachesGuest !== undefined, `${ch.path}: live without reachesGuest\n${shown}`);
            else assert.equal(ch.reachesGuest, undefined, `${ch.path}: staged with reachesGuest\n${shown}`);
            const needsMigration = ['liveMigration', 'awaitingRestart', 'eviction'].includes(ch.reachesGuest ?? '');
            assert.equal(ch.migration !== undefined, needsMigration, `${ch.path}: migration detail and reachesGuest ${ch.reachesGuest} disagree\n${shown}`);
          }
          assert.ok(plan.disruption !== undefined, `no disruption\n${shown}`);
          for (const [p, r] of Object.entries(want.reachesGuest ?? {})) {
            const ch = plan.changes.find((x) => x.path === p);
            assert.ok(ch !== undefined, `no change at ${p}\n${shown}`);
            assert.equal(ch.reachesGuest ?? 'none', r, `reachesGuest of ${p}\n${shown}`);
          }
          for (const [p, m] of Object.entries(want.migration ?? {})) {
            const ch = plan.changes.find((x) => x.path === p);
            assert.ok(ch !== undefined, `no change at ${p}\n${shown}`);
            if (m === null) assert.equal(ch.migration, undefined, `migration of ${p}\n${shown}`);
            else assert.ok(containsSubset(ch.migration, m), `migration of ${p}: want ${JSON.stringify(m)}\n${shown}`);
          }
          if (want.disruption !== undefined) assert.equal(plan.disruption.kind, want.disruption, `disruption\n${shown}`);
          if (want.summary !== undefined) assert.ok(plan.disruption.summary.includes(want.summary), `summary should contain ${JSON.stringify(want.summary)}\n${shown}`);
          if (want.vmi !== undefined) {
            assert.ok(containsSubset(result.vmi, want.vmi), `VMI after the pass:\n${JSON.stringify(result.vmi, null, 1)}`);
          }
        });
      }
    });
  }
});
