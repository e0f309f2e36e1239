/** KubeVirt's own example VMs (read from ../shared) through the engine: no change is no plan; changes get schema-valid plans. */
import assert from 'node:assert/strict';
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import path from 'node:path';
import { parseAllDocuments } from 'yaml';
import { type Obj, planRollout } from '../reconciler/rollout/index.ts';
import { validateVmPlan } from '../reconciler/validate.ts';
import { ROOT, mergePatch } from './helpers/cases.ts';

const examplesDir = path.resolve(ROOT, '..', 'shared', 'kubevirt', 'examples');

function exampleVms(): Array<{ file: string; vm: Obj }> {
  const out: Array<{ file: string; vm: Obj }> = [];
  for (const file of readdirSync(examplesDir).filter((f) => f.endsWith('.yaml')).sort()) {
    for (const doc of parseAllDocuments(readFileSync(path.join(examplesDir, file), 'utf8'))) {
      const v = doc.toJS() as Obj | null;
      if (v?.['kind'] === 'VirtualMachine') out.push({ file, vm: v });
    }
  }
  return out;
}

/** A VMI as KubeVirt would start it from the VM's template under LiveUpdate. */
function runningFrom(vm: Obj): Obj {
  const spec = structuredClone((((vm['spec'] as Obj)['template'] as Obj)['spec'] ?? {}) as Obj);
  const domain = (spec['domain'] ??= {}) as Obj;
  const cpu = (domain['cpu'] ??= {}) as Obj;
  cpu['sockets'] ??= 1;
  cpu['maxSockets'] ??= Number(cpu['sockets']) * 4;
  return { apiVersion: 'kubevirt.io/v1', kind: 'VirtualMachineInstance', metadata: { name: (vm['metadata'] as Obj)['name'] }, spec, status: { phase: 'Running', conditions: [{ type: 'LiveMigratable', status: 'True' }] } };
}

describe("KubeVirt's example VMs through the engine", function () {
  before(function () {
    if (!existsSync(examplesDir)) {
      console.log(`    skipped: KubeVirt's examples are read from ${examplesDir}, which is missing`);
      this.skip();
    }
  });

  it('plans nothing when desired equals the baseline, and a schema-valid plan for a change', function () {
    const vms = exampleVms();
    assert.ok(vms.length >= 10, `found ${vms.length} example VMs`);
    for (const { file, vm: example } of vms) {
      // The examples ship stopped; a running instance needs a runStrategy that keeps it running.
      const vm = mergePatch(example, { spec: { running: null, runStrategy: 'Always' } }) as Obj;
      for (const version of [undefined, 'v1.8.0']) {
        const same = planRollout({ baseline: vm, desired: structuredClone(vm), vmi: runningFrom(vm), ...(version ? { kubevirtVersion: version } : {}) });
        assert.deepEqual(same.plan.changes, [], `${file}: no change`);
        assert.equal(same.plan.restartRequired, false, file);
        const desired = mergePatch(vm, { metadata: { labels: { changed: 'yes' } }, spec: { template: { spec: { domain: { cpu: { sockets: 2 } }, hostname: 'renamed' } } } }) as Obj;
        const changed = planRollout({ baseline: vm, desired, vmi: runningFrom(vm), ...(version ? { kubevirtVersion: version } : {}) });
        const validation = validateVmPlan({ commit: null, vms: [changed.plan], errors: [] });
        assert.ok(validation.ok, `${file}: ${JSON.stringify(validation)}`);
        const spec = vm['spec'] as Obj;
        if (spec['instancetype'] !== undefined || spec['preference'] !== undefined) {
          // Without the instancetype objects KubeVirt cannot expand the VM and leaves the condition alone.
          assert.equal(changed.plan.restartRequired, false, file);
          assert.match(changed.plan.waiting[0]?.message ?? '', /^instancetype expansion failed: (instancetype|preference) \S+ not found$/, file);
          continue;
        }
        assert.equal(changed.plan.restartRequired, true, `${file}: hostname is not live-updatable`);
        assert.equal(changed.plan.conditionMessage, 'a non-live-updatable field was changed in the template spec', file);
        assert.ok(changed.plan.changes.some((c) => c.path === 'metadata.labels.changed' && c.rollout === 'live'), `${file}: VM metadata is not a template change`);
        assert.ok(changed.plan.reasons.some((r) => r.path === 'spec.template.spec.hostname'), file);
      }
    }
  });
});
