/** observeGuest: where an applied VM stands, from its VMI, the migrations in flight and the KubeVirt CR (semantics §8). */
import assert from 'node:assert/strict';
import { type Obj, introducedBy, observeGuest, planRollout } from '../reconciler/rollout/index.ts';
import { base, mergePatch } from './helpers/cases.ts';

const kv = (methods: string[], extra: Obj = {}): Obj =>
  mergePatch({ apiVersion: 'kubevirt.io/v1', kind: 'KubeVirt', spec: { workloadUpdateStrategy: { workloadUpdateMethods: methods } }, status: { phase: 'Deployed' } }, extra) as Obj;

const hotCpu = { status: { conditions: [{ type: 'LiveMigratable', status: 'True' }, { type: 'HotVCPUChange', status: 'True' }] }, spec: { domain: { cpu: { sockets: 4 } } } };
const notMigratable = (extra: Obj[] = []): Obj => ({
  status: { conditions: [{ type: 'LiveMigratable', status: 'False', reason: 'DisksNotLiveMigratable', message: 'PVC data is not shared' }, ...extra] },
});
const mig = (name: string, vmiName: string, phase: string, namespace = 'default'): Obj => ({ metadata: { name, namespace }, spec: { vmiName }, status: { phase } });

interface Row {
  name: string;
  /** Merge patch onto base/vmi.yaml; `none` for no VMI. */
  vmi: Obj | 'none';
  vm?: Obj;
  kubevirt: Obj | null;
  migrations?: Obj[];
  want: { outcome: string; blockedBy?: string; queuedAhead?: number; via?: string; pending?: string[]; summary?: string };
}

const rows: Row[] = [
  { name: 'no triggers: effective', vmi: {}, kubevirt: kv([]), want: { outcome: 'effective', pending: [] } },
  {
    name: 'a completed CPU hotplug (sockets = currentCPUTopology, no condition): effective',
    vmi: { spec: { domain: { cpu: { sockets: 4 } } }, status: { currentCPUTopology: { sockets: 4, cores: 1, threads: 1 } } },
    kubevirt: kv([]),
    want: { outcome: 'effective', pending: [] },
  },
  {
    name: 'sockets patched, condition not yet set, status behind: not effective',
    vmi: { spec: { domain: { cpu: { sockets: 4 } } }, status: { currentCPUTopology: { sockets: 2, cores: 1, threads: 1 } } },
    kubevirt: kv(['LiveMigrate']),
    want: { outcome: 'queued', via: 'liveMigration', queuedAhead: 0, pending: ['HotVCPUChange'] },
  },
  {
    name: 'HotVCPUChange, no workload update methods: blocked',
    vmi: hotCpu,
    kubevirt: kv([]),
    want: { outcome: 'blocked', blockedBy: 'noLiveMigrateMethod', pending: ['HotVCPUChange'], summary: 'the cluster has no LiveMigrate workload update method' },
  },
  {
    name: 'HotVCPUChange, no KubeVirt CR given: blocked by the default (no methods), and says so',
    vmi: hotCpu,
    kubevirt: null,
    want: { outcome: 'blocked', blockedBy: 'noLiveMigrateMethod', summary: "by KubeVirt's default" },
  },
  {
    name: 'HotVCPUChange with LiveMigrate and no migration yet: queued for the workload updater',
    vmi: hotCpu,
    kubevirt: kv(['LiveMigrate']),
    want: { outcome: 'queued', via: 'liveMigration', queuedAhead: 0, summary: 'the workload updater will migrate it' },
  },
  {
    name: 'its own migration pending behind 5 running others (parallelMigrationsPerCluster 5): queued, 1 ahead',
    vmi: hotCpu,
    kubevirt: kv(['LiveMigrate']),
    migrations: [mig('own', 'testvm', 'Pending'), ...['a', 'b', 'c', 'd', 'e'].map((n) => mig(n, n, 'Running', 'other')), mig('old', 'x', 'Succeeded', 'other')],
    want: { outcome: 'queued', via: 'liveMigration', queuedAhead: 1 },
  },
  {
    name: 'its own migration running: migrating',
    vmi: hotCpu,
    kubevirt: kv(['LiveMigrate']),
    migrations: [mig('own', 'testvm', 'Running')],
    want: { outcome: 'migrating', via: 'liveMigration' },
  },
  {
    name: 'a migration of the same name in another namespace is not its own',
    vmi: hotCpu,
    kubevirt: kv(['LiveMigrate']),
    migrations: [mig('own', 'testvm', 'Running', 'other')],
    want: { outcome: 'queued', via: 'liveMigration', queuedAhead: 0 },
  },
  {
    name: 'migrationState started and not ended: migrating',
    vmi: mergePatch(hotCpu, { status: { migrationState: { startTimestamp: '2026-11-30T09:00:00Z' } } }) as Obj,
    kubevirt: kv(['LiveMigrate']),
    want: { outcome: 'migrating' },
  },
  {
    name: 'not migratable with LiveMigrate only: blocked',
    vmi: mergePatch(notMigratable([{ type: 'HotVCPUChange', status: 'True' }]), { spec: { domain: { cpu: { sockets: 4 } } } }) as Obj,
    kubevirt: kv(['LiveMigrate']),
    want: { outcome: 'blocked', blockedBy: 'notMigratable', summary: 'DisksNotLiveMigratable: PVC data is not shared' },
  },
  {
    name: 'not migratable with LiveMigrate and Evict: queued for eviction',
    vmi: notMigratable([{ type: 'HotVCPUChange', status: 'True' }]),
    kubevirt: kv(['LiveMigrate', 'Evict'], { spec: { workloadUpdateStrategy: { batchEvictionSize: 4, batchEvictionInterval: '1m30s' } } }),
    want: { outcome: 'queued', via: 'eviction', summary: 'evicts up to 4 VMIs every 90 s' },
  },
  {
    name: 'only Evict, migratable, evictionStrategy LiveMigrate: queued for a migration (the eviction becomes one)',
    vmi: mergePatch(hotCpu, { spec: { evictionStrategy: 'LiveMigrate' } }) as Obj,
    kubevirt: kv(['Evict']),
    want: { outcome: 'queued', via: 'liveMigration', queuedAhead: 0, summary: 'evictionStrategy LiveMigrate' },
  },
  {
    name: 'only Evict, not migratable, cluster evictionStrategy LiveMigrate: blocked, the eviction is refused',
    vmi: notMigratable([{ type: 'HotVCPUChange', status: 'True' }]),
    kubevirt: kv(['Evict'], { spec: { configuration: { evictionStrategy: 'LiveMigrate' } } }),
    want: { outcome: 'blocked', blockedBy: 'noLiveMigrateMethod', summary: 'eviction is refused' },
  },
  {
    name: 'HotMemoryChange=True: pending, queued with LiveMigrate',
    vmi: { spec: { domain: { memory: { guest: '4Gi' } } }, status: { conditions: [{ type: 'LiveMigratable', status: 'True' }, { type: 'HotMemoryChange', status: 'True' }] } },
    kubevirt: kv(['LiveMigrate']),
    want: { outcome: 'queued', pending: ['HotMemoryChange'] },
  },
  {
    name: 'guest memory equal in quantity (4096Mi vs 4Gi) and no condition: effective',
    vmi: { spec: { domain: { memory: { guest: '4096Mi' } } }, status: { memory: { guestCurrent: '4Gi' } } },
    kubevirt: kv([]),
    want: { outcome: 'effective' },
  },
  {
    name: 'HotMemoryChange=False (hotplug failed): blocked, not retried',
    vmi: { spec: { domain: { memory: { guest: '4Gi' } } }, status: { conditions: [{ type: 'LiveMigratable', status: 'True' }, { type: 'HotMemoryChange', status: 'False' }] } },
    kubevirt: kv(['LiveMigrate']),
    want: { outcome: 'blocked', blockedBy: 'hotplugFailed' },
  },
  {
    name: 'MigrationRequired=False (AutoMigrationPending): pending, queued',
    vmi: { status: { conditions: [{ type: 'LiveMigratable', status: 'True' }, { type: 'MigrationRequired', status: 'False', reason: 'AutoMigrationPending' }] } },
    kubevirt: kv(['LiveMigrate']),
    want: { outcome: 'queued', pending: ['MigrationRequired'] },
  },
  {
    name: 'KubeVirt not Deployed: blocked for now',
    vmi: hotCpu,
    kubevirt: kv(['LiveMigrate'], { status: { phase: 'Deploying' } }),
    want: { outcome: 'blocked', blockedBy: 'kubevirtNotDeployed' },
  },
  { name: 'no VMI, runStrategy Always: restarting', vmi: 'none', kubevirt: kv(['Evict']), want: { outcome: 'restarting' } },
  { name: 'no VMI, runStrategy Halted: stopped', vmi: 'none', vm: { spec: { runStrategy: 'Halted' } }, kubevirt: kv([]), want: { outcome: 'stopped' } },
  {
    name: 'VMI being deleted (evicted), runStrategy Always: restarting',
    vmi: mergePatch(hotCpu, { metadata: { deletionTimestamp: '2026-11-30T09:00:00Z' } }) as Obj,
    kubevirt: kv(['Evict']),
    want: { outcome: 'restarting' },
  },
  {
    name: 'VMI Succeeded after eviction, runStrategy Manual: stopped',
    vmi: { status: { phase: 'Succeeded' } },
    vm: { spec: { runStrategy: 'Manual' } },
    kubevirt: kv(['Evict']),
    want: { outcome: 'stopped' },
  },
];

describe('rollout: observeGuest on an applied VM', () => {
  for (const r of rows) {
    it(r.name, () => {
      const vmi = r.vmi === 'none' ? null : (mergePatch(base('vmi'), r.vmi) as Obj);
      const vm = mergePatch(base('vm'), r.vm ?? {}) as Obj;
      const got = observeGuest({ vm, vmi, migrations: r.migrations ?? [], kubevirt: r.kubevirt });
      const shown = JSON.stringify(got);
      assert.equal(got.outcome, r.want.outcome, shown);
      assert.equal(got.blockedBy, r.want.blockedBy, shown);
      if (r.want.queuedAhead !== undefined) assert.equal(got.queuedAhead, r.want.queuedAhead, shown);
      if (r.want.via !== undefined) assert.equal(got.via, r.want.via, shown);
      if (r.want.pending !== undefined) assert.deepEqual(got.pending, r.want.pending, shown);
      if (r.want.summary !== undefined) assert.ok(got.summary.includes(r.want.summary), shown);
      assert.ok(got.summary.length > 0 && !got.summary.includes('\n'), 'one line');
    });
  }
});

describe('rollout: the disruption of a plan narrowed to one commit', () => {
  const vm = base('vm');
  const cpuAndLabel = mergePatch(vm, { spec: { template: { metadata: { labels: { tier: 'gold' } }, spec: { domain: { cpu: { sockets: 4 } } } } } }) as Obj;
  const cpuOnly = mergePatch(vm, { spec: { template: { spec: { domain: { cpu: { sockets: 4 } } } } } }) as Obj;
  const plan = (desired: Obj, methods: string[]) =>
    planRollout({ baseline: vm, desired, vmi: base('vmi'), kubevirt: kv(methods), kubevirtVersion: 'v1.9.0' }).plan;

  it('a commit that only adds a label does not inherit the earlier CPU change\'s eviction', () => {
    const whole = plan(cpuAndLabel, ['Evict']);
    assert.equal(whole.disruption?.kind, 'restart', JSON.stringify(whole.disruption));
    const narrowed = introducedBy(whole, cpuOnly, cpuAndLabel);
    assert.deepEqual(narrowed.changes.map((c) => c.path), ['spec.template.metadata.labels.tier']);
    assert.equal(narrowed.disruption?.kind, 'none', JSON.stringify(narrowed.disruption));
    assert.doesNotMatch(narrowed.disruption?.summary ?? '', /evict/, JSON.stringify(narrowed.disruption));
    assert.match(narrowed.disruption?.summary ?? '', /1 change waits for a restart/);
  });

  it('the commit that raised the sockets keeps the migration and its explanation', () => {
    const whole = plan(cpuOnly, ['LiveMigrate']);
    const narrowed = introducedBy(whole, vm, cpuOnly);
    assert.equal(narrowed, whole, 'nothing narrowed: the same entry');
    assert.equal(narrowed.disruption?.summary, 'hot-plug via live migration (no migrations ahead)');
    const blocked = plan(cpuAndLabel, []);
    const onlyCpu = introducedBy(blocked, mergePatch(vm, { spec: { template: { metadata: { labels: { tier: 'gold' } } } } }) as Obj, cpuAndLabel);
    assert.deepEqual(onlyCpu.changes.map((c) => c.path), ['spec.template.spec.domain.cpu.sockets']);
    assert.equal(onlyCpu.disruption?.summary, 'patched but will not reach the guest until a restart: the cluster has no LiveMigrate workload update method');
    assert.equal(onlyCpu.changes[0]?.migration?.blockedWhy, 'the cluster has no LiveMigrate workload update method');
  });
});
