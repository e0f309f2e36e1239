/**
 * The parsing helpers of bench/kubeRows.ts (the bench itself is never run or timed here): the sync
 * line as vmroll's renderer prints it, /proc fields, the simulator's Lease counts, and the webhook
 * signature as vmroll's own webhook server checks it over a real socket.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { pino } from 'pino';
import { cpuMsFromStat, githubSignature, leaseWritesOf, markdownTable, median, parseSizes, parseSyncLine, statusKiB, verbsCell } from '../bench/kubeRows.ts';
import { startWebhookServer, type WebhookPush } from '../reconciler/controller/server.ts';
import { renderReport } from '../reconciler/controller/render.ts';
import type { ReconcileReport } from '../reconciler/controller/reconcile.ts';
import { emptySummary } from '../reconciler/plan/summary.ts';

/** The first line renderReport prints for a sync with these counts (nothing else in the report). */
function renderedFirstLine(commit: string, counts: Partial<ReturnType<typeof emptySummary>>, totalMs: number, writes: number): string {
  const report = { commit, summary: { ...emptySummary(), ...counts }, timings: { total: totalMs }, writes, newErrors: [], newWarnings: [], plan: { vms: [], orphans: [] }, outcomes: [] } as unknown as ReconcileReport;
  return renderReport(report).split('\n')[0] as string;
}

describe('bench/kubeRows.ts helpers', () => {
  it('parses the sync line vmroll prints, writes singular and plural', () => {
    const commit = 'a1b2c3d4e5f60718293a4b5c6d7e8f9012345678';
    const many = parseSyncLine(renderedFirstLine(commit, { vms: 10_000, created: 10_000 }, 61_234.4, 10_000));
    assert.ok(many !== null);
    assert.equal(many.commit, commit.slice(0, 12));
    assert.equal(many.ms, 61_234);
    assert.equal(many.writes, 10_000);
    assert.match(many.summary, /10000 created/);
    const one = parseSyncLine(renderedFirstLine(commit, { vms: 5, inSync: 4, liveUpdated: 1 }, 12, 1));
    assert.equal(one?.writes, 1);
    assert.equal(parseSyncLine('  create team-a/web-0001'), null);
    assert.equal(parseSyncLine('target: kube cluster at http://127.0.0.1:1'), null);
  });

  it('reads CPU time from /proc/<pid>/stat, a command name with spaces and parentheses included', () => {
    // Fields 14 and 15 (utime 250, stime 50 ticks) after a name that would break a naive split.
    const stat = '1234 (node (x) y) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 11 0 100 1000 200';
    assert.equal(cpuMsFromStat(stat, 100), 3000);
    assert.ok(Number.isNaN(cpuMsFromStat('garbage', 100)));
    // This process: the same clock as process.cpuUsage(), to a few ticks.
    for (let i = 0, x = 0; i < 3e7; i++) x += i; // some CPU to measure
    const fromProc = cpuMsFromStat(readFileSync('/proc/self/stat', 'utf8'), 100);
    const usage = process.cpuUsage();
    const fromNode = (usage.user + usage.system) / 1000;
    assert.ok(Math.abs(fromProc - fromNode) < 500, `proc ${fromProc} ms, node ${fromNode} ms`);
  });

  it('reads VmHWM and VmRSS from /proc/<pid>/status', () => {
    assert.equal(statusKiB('Name:\tnode\nVmHWM:\t  123456 kB\nVmRSS:\t   100 kB\n', 'VmHWM'), 123456);
    assert.equal(statusKiB('Name:\tnode\nVmRSS:\t   100 kB\n', 'VmRSS'), 100);
    assert.ok(Number.isNaN(statusKiB('Name:\tnode\n', 'VmHWM')));
    const own = statusKiB(readFileSync('/proc/self/status', 'utf8'), 'VmHWM');
    assert.ok(own * 1024 >= process.memoryUsage().rss * 0.5, `VmHWM ${own} KiB`);
  });

  it('counts Lease writes apart from the rest of the simulator stats', () => {
    const byResource = { 'leases.coordination.k8s.io': { get: 3, create: 1, update: 2 }, 'virtualmachines.kubevirt.io': { apply: 7, list: 1 } };
    assert.equal(leaseWritesOf(byResource), 3);
    assert.equal(leaseWritesOf({}), 0);
  });

  it('parses sizes, takes medians and prints markdown', () => {
    assert.deepEqual(parseSizes('1000,5k, 20K'), [1000, 5000, 20000]);
    assert.throws(() => parseSizes('10x'), /not a count/);
    assert.throws(() => parseSizes('0'), /at least 1/);
    assert.equal(median([3, 1, 2]), 2);
    assert.equal(median([4, 1, 2, 3]), 2.5);
    assert.ok(Number.isNaN(median([])));
    assert.equal(verbsCell({ watch: 8, apply: 10, list: 0 }), 'apply 10, watch 8');
    assert.equal(verbsCell({}), 'none');
    assert.equal(markdownTable(['a', 'b'], [['x|y', '1']]), '| a | b |\n|---|---:|\n| x\\|y | 1 |');
  });

  it('signs a push the way vmroll\'s webhook server verifies it (real socket)', async () => {
    const pushes: WebhookPush[] = [];
    const secret = 'bench-test-secret';
    const server = await startWebhookServer({ listen: '127.0.0.1:0', webhookSecret: secret, isReady: () => true, onPush: (p) => pushes.push(p), logger: pino({ level: 'silent' }) });
    try {
      const body = JSON.stringify({ ref: 'refs/heads/main', after: 'f'.repeat(40), repository: { full_name: 'bench/fleet' } });
      const post = (signature: string): Promise<number> =>
        fetch(`http://${server.address}/webhook/github`, { method: 'POST', headers: { 'content-type': 'application/json', 'x-github-event': 'push', 'x-hub-signature-256': signature }, body }).then(async (r) => {
          await r.arrayBuffer();
          return r.status;
        });
      assert.match(githubSignature(secret, body), /^sha256=[0-9a-f]{64}$/);
      assert.equal(await post(githubSignature(secret, body)), 202);
      assert.equal(await post(githubSignature('another secret', body)), 401);
      assert.deepEqual(
        pushes.map((p) => [p.ref, p.after, p.repository]),
        [['refs/heads/main', 'f'.repeat(40), 'bench/fleet']],
      );
    } finally {
      await server.close();
    }
  });
});
