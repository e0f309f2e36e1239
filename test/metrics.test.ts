/**
 * vmroll's Prometheus metrics, read back from the exposition text as Prometheus would scrape it:
 * reconcile outcomes and VM states, Kubernetes API requests counted by a real KubeCluster against
 * the simulator's API server, Git host calls and the rate limit left against the GitHub emulator.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { register as globalRegistry } from 'prom-client';
import { KubeCluster } from '../reconciler/cluster/kube.ts';
import { startApiServer } from '../reconciler/cluster/sim/apiServer.ts';
import { SimCluster } from '../reconciler/cluster/sim/simCluster.ts';
import { simKubeconfig } from '../reconciler/commands/sim.ts';
import type { ReconcileReport } from '../reconciler/controller/reconcile.ts';
import type { Summary as SyncSummary } from '../reconciler/plan/summary.ts';
import { VmrollMetrics } from '../reconciler/controller/metrics.ts';
import { GitHubReporter } from '../reconciler/report/github.ts';
import { GitHostError } from '../reconciler/report/reporter.ts';
import type { VmPlanEntry } from '../reconciler/rollout/index.ts';
import { startGitHubEmulator } from './helpers/githubEmulator.ts';

/** One sample of the exposition text. */
interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

/** Parses Prometheus' text format (0.0.4): `# HELP`/`# TYPE` lines, then `name{a="b",…} value`. */
function parseExposition(text: string): { samples: Sample[]; types: Map<string, string>; help: Map<string, string> } {
  const samples: Sample[] = [];
  const types = new Map<string, string>();
  const help = new Map<string, string>();
  for (const line of text.split('\n')) {
    if (line === '') continue;
    const meta = /^# (HELP|TYPE) (\S+) (.*)$/.exec(line);
    if (meta !== null) {
      (meta[1] === 'TYPE' ? types : help).set(meta[2] ?? '', meta[3] ?? '');
      continue;
    }
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    assert.ok(m !== null, `not an exposition line: ${line}`);
    const labels: Record<string, string> = {};
    for (const l of (m[2] ?? '').matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) labels[l[1] ?? ''] = (l[2] ?? '').replace(/\\(.)/g, '$1');
    const raw = m[3] ?? '';
    samples.push({ name: m[1] ?? '', labels, value: raw === '+Inf' ? Infinity : Number(raw) });
  }
  return { samples, types, help };
}

/** The value of the one sample with this name and (at least) these labels; undefined when absent. */
function value(samples: Sample[], name: string, labels: Record<string, string> = {}): number | undefined {
  const found = samples.filter((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v));
  assert.ok(found.length <= 1, `${name} ${JSON.stringify(labels)} matches ${found.length} samples`);
  return found[0]?.value;
}

function entry(name: string, action: VmPlanEntry['action'], restartRequired = false): VmPlanEntry {
  return {
    namespace: 'shop',
    name,
    action,
    strategy: 'LiveUpdate',
    restartRequired,
    condition: restartRequired ? 'set' : 'absent',
    conditionMessage: restartRequired ? 'a non-live-updatable field was changed in the template spec' : null,
    reasons: [],
    changes: [],
    waiting: [],
    kubevirt: { version: '1.5.0', model: 'v1.5' },
  };
}

function report(vms: VmPlanEntry[], errors: number, ms: { fetch: number; total: number }, counts: Partial<SyncSummary> = {}): ReconcileReport {
  return {
    plan: { commit: 'c0ffee', vms, errors: Array.from({ length: errors }, (_, i) => ({ file: `vms/broken-${i}.yaml`, line: 3, message: 'invalid YAML' })) },
    summary: { vms: vms.length, inSync: 0, created: 0, liveUpdated: 0, staged: 0, reverted: 0, awaitingRestart: 0, held: 0, deleted: 0, errors, ...counts },
    commit: 'c0ffee',
    timings: { fetch: ms.fetch, diff: 0, load: 0, observe: 0, plan: 0, apply: 0, settle: 0, report: 0, total: ms.total },
    waiting: null,
    read: [],
    writes: 0,
    outcomes: [],
    newErrors: [],
    newWarnings: [],
  };
}

describe('metrics (Prometheus exposition)', function () {
  this.timeout(60_000);

  it('records reconciles: duration by result, Git fetch duration, VMs by state', async () => {
    const m = new VmrollMetrics({ defaultMetrics: false });
    m.recordReconcile(
      'shop',
      report([entry('a', 'none'), entry('b', 'create'), entry('c', 'update'), entry('d', 'update', true), entry('e', 'none', true), entry('f', 'delete')], 2, { fetch: 40, total: 300 }),
    );
    m.recordReconcile('shop', report([entry('a', 'none'), entry('b', 'none')], 0, { fetch: 20, total: 100 }, { inSync: 2 }));
    m.recordFailure('lab', 1500, 'transient');
    m.recordFailure('lab', 20, 'transient');
    m.recordFailure('lab', 10, 'stalled');
    const { samples, types, help } = parseExposition(await m.metricsText());

    assert.equal(types.get('vmroll_reconcile_duration_seconds'), 'histogram');
    assert.equal(types.get('vmroll_vms'), 'gauge');
    assert.ok((help.get('vmroll_vms') ?? '').length > 0);
    const bucket = (le: string, result: string, repository = 'shop'): number | undefined => value(samples, 'vmroll_reconcile_duration_seconds_bucket', { repository, result, le });
    assert.equal(value(samples, 'vmroll_reconcile_duration_seconds_count', { repository: 'shop', result: 'errors' }), 1);
    assert.equal(value(samples, 'vmroll_reconcile_duration_seconds_count', { repository: 'shop', result: 'ok' }), 1);
    assert.equal(value(samples, 'vmroll_reconcile_duration_seconds_sum', { repository: 'shop', result: 'errors' }), 0.3);
    assert.equal(bucket('0.25', 'errors'), 0, '300 ms is above the 0.25 s bucket');
    assert.equal(bucket('0.5', 'errors'), 1);
    assert.equal(bucket('0.1', 'ok'), 1);
    assert.equal(bucket('+Inf', 'failed', 'lab'), 3);
    assert.equal(bucket('1', 'failed', 'lab'), 2);
    assert.equal(types.get('vmroll_sync_failures_total'), 'counter');
    assert.equal(value(samples, 'vmroll_sync_failures_total', { repository: 'lab', kind: 'transient' }), 2);
    assert.equal(value(samples, 'vmroll_sync_failures_total', { repository: 'lab', kind: 'stalled' }), 1);
    assert.equal(value(samples, 'vmroll_sync_failures_total', { repository: 'shop', kind: 'transient' }), undefined, 'a repository that never failed has no failure series');
    assert.equal(await m.syncFailureCount('lab'), 3);
    assert.equal(await m.syncFailureCount('lab', 'stalled'), 1);

    assert.equal(value(samples, 'vmroll_git_fetch_duration_seconds_count', { repository: 'shop' }), 2);
    assert.ok(Math.abs((value(samples, 'vmroll_git_fetch_duration_seconds_sum', { repository: 'shop' }) ?? 0) - 0.06) < 1e-9);

    // The second sync replaced the first one's counts; a failed repository has no counts yet.
    assert.equal(value(samples, 'vmroll_vms', { repository: 'shop', state: 'in_sync' }), 2);
    assert.equal(value(samples, 'vmroll_vms', { repository: 'shop', state: 'live_updated' }), 0);
    assert.equal(value(samples, 'vmroll_vms', { repository: 'shop', state: 'awaiting_restart' }), 0);
    assert.equal(value(samples, 'vmroll_vms', { repository: 'shop', state: 'error' }), 0);
    assert.equal(value(samples, 'vmroll_vms', { repository: 'lab', state: 'in_sync' }), undefined);
  });

  it('counts VMs by the sync\'s own states: created and unchanged are in sync, every other state as the summary has it', async () => {
    // The states are decided once, by the sync (test/output.e2e.test.ts); metrics repeat its counts.
    const m = new VmrollMetrics({ defaultMetrics: false });
    const vms = [entry('a', 'none'), entry('b', 'create'), entry('c', 'update'), entry('d', 'update', true), entry('e', 'none', true), entry('f', 'delete')];
    m.recordReconcile('shop', report(vms, 2, { fetch: 40, total: 300 }, { inSync: 1, created: 1, liveUpdated: 1, migrating: 6, queued: 7, blocked: 8, blockedWhy: ['not migratable'], evicted: 9, staged: 3, reverted: 4, awaitingRestart: 2, held: 5, deleted: 1 }));
    const { samples } = parseExposition(await m.metricsText());
    assert.deepEqual(
      Object.fromEntries(samples.filter((s) => s.name === 'vmroll_vms').map((s) => [s.labels['state'], s.value])),
      { in_sync: 2, live_updated: 1, migrating: 6, queued: 7, blocked: 8, evicted: 9, staged: 3, reverted: 4, awaiting_restart: 2, held: 5, error: 2 },
    );
    // A later sync whose guests got there moves the counts: nothing stays migrating.
    m.recordReconcile('shop', report(vms, 0, { fetch: 40, total: 300 }, { inSync: 1, liveUpdated: 13 }));
    const after = parseExposition(await m.metricsText()).samples.filter((s) => s.name === 'vmroll_vms');
    assert.deepEqual(Object.fromEntries(after.filter((s) => s.value !== 0).map((s) => [s.labels['state'], s.value])), { in_sync: 1, live_updated: 13 });
  });

  it('counts Kubernetes API requests by verb, resource and code from a real KubeCluster', async () => {
    const m = new VmrollMetrics({ defaultMetrics: false });
    const dir = mkdtempSync(path.join(os.tmpdir(), 'vmroll-metrics-'));
    const server = await startApiServer({ cluster: new SimCluster(), listen: '127.0.0.1:0' });
    const file = path.join(dir, 'kubeconfig');
    writeFileSync(file, simKubeconfig(server.url));
    const kube = new KubeCluster({ kubeconfig: { file }, onRequest: m.kubeRequest, retry: { attempts: 2, baseMs: 1, capMs: 1 }, informer: { retryMs: 20 } });
    try {
      // Before any watch is open, so that the injected failure hits the delete: 503, then (retried) 404.
      server.setFaults({ failNext: 1, errorStatus: 503 });
      await kube.deleteVirtualMachine({ namespace: 'shop', name: 'gone' });
      await kube.listVirtualMachines();
    } finally {
      kube.close();
      await server.close();
      rmSync(dir, { recursive: true, force: true });
    }
    const { samples, types } = parseExposition(await m.metricsText());
    assert.equal(types.get('vmroll_kube_api_requests_total'), 'counter');
    assert.equal(value(samples, 'vmroll_kube_api_requests_total', { verb: 'list', resource: 'virtualmachines', code: '200' }), 1);
    assert.equal(value(samples, 'vmroll_kube_api_requests_total', { verb: 'delete', resource: 'virtualmachines', code: '503' }), 1);
    assert.equal(value(samples, 'vmroll_kube_api_requests_total', { verb: 'delete', resource: 'virtualmachines', code: '404' }), 1);
  });

  it('counts Git host calls by result and follows the rate limit left (GitHub emulator)', async () => {
    const token = 'ghp_metricsTestToken0000000000000000000';
    const github = await startGitHubEmulator({ token, repos: ['acme/vms'] });
    try {
      const m = new VmrollMetrics({ defaultMetrics: false });
      const reporter = m.instrumentReporter(new GitHubReporter({ repo: 'acme/vms', token, apiUrl: github.baseUrl }));
      assert.equal(reporter.kind, 'github');
      const sha = 'a'.repeat(40);
      await reporter.postStatus({ sha, context: 'vmroll/sync', state: 'success', description: '1 in sync' });
      assert.deepEqual(await reporter.listOpenPullRequests(), []);
      github.failNext(1, 502);
      await assert.rejects(reporter.postStatus({ sha, context: 'vmroll/sync', state: 'success', description: '2 in sync' }), (e: unknown) => e instanceof GitHostError && e.code === 'Unavailable');
      const left = reporter.rateLimit()?.remaining;
      assert.ok(left !== undefined && left < 5000, 'the emulator counts its budget down');
      const { samples } = parseExposition(await m.metricsText());
      assert.equal(value(samples, 'vmroll_githost_api_calls_total', { host: 'github', result: 'ok' }), 2);
      assert.equal(value(samples, 'vmroll_githost_api_calls_total', { host: 'github', result: 'unavailable' }), 1);
      assert.equal(value(samples, 'vmroll_githost_rate_limit_remaining', { host: 'github' }), left);
      assert.equal(github.statuses(sha, 'acme/vms').length, 1, 'the wrapper delivered the call itself, once');
    } finally {
      await github.stop();
    }
  });

  it('reports leadership, the report backlog and process metrics, on a registry of its own', async () => {
    const m = new VmrollMetrics();
    let pending = 3;
    m.watchReportQueue('shop', { pending: () => pending });
    let parsed = parseExposition(await m.metricsText());
    assert.equal(value(parsed.samples, 'vmroll_leader'), 0);
    assert.equal(value(parsed.samples, 'vmroll_reports_pending', { repository: 'shop' }), 3);
    assert.ok(value(parsed.samples, 'process_cpu_user_seconds_total') !== undefined, 'default process metrics');
    assert.ok(parsed.samples.some((s) => s.name.startsWith('nodejs_')), 'default Node.js metrics');
    m.setLeader(true);
    pending = 0;
    parsed = parseExposition(await m.metricsText());
    assert.equal(value(parsed.samples, 'vmroll_leader'), 1);
    assert.equal(value(parsed.samples, 'vmroll_reports_pending', { repository: 'shop' }), 0);
    assert.match(m.contentType, /^text\/plain; version=0\.0\.4/);
    // Two instances (two runs in one process) neither share nor touch the global registry.
    const other = new VmrollMetrics({ defaultMetrics: false });
    assert.equal(value(parseExposition(await other.metricsText()).samples, 'vmroll_leader'), 0);
    assert.equal((await globalRegistry.getMetricsAsJSON()).filter((x) => x.name.startsWith('vmroll_')).length, 0);
  });
});
