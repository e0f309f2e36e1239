/**
 * Leader election over a Lease served by the simulator's Kubernetes API on 127.0.0.1: one of
 * several electors leads; a leader cut off from the API steps down by itself before another
 * takes over; a released lease is taken over at once; injected 409s never make two leaders.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { type AddressInfo, type Server, type Socket, connect, createServer } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { LeaderElector, SoleLeader, podNamespace } from '../reconciler/cluster/leaderElection.ts';
import { type ApiServer, startApiServer } from '../reconciler/cluster/sim/apiServer.ts';
import { SimCluster } from '../reconciler/cluster/sim/simCluster.ts';
import { simKubeconfig } from '../reconciler/commands/sim.ts';
import { until } from './helpers/waitFor.ts';

/**
 * Lease timings of these tests. Short enough that a lost leader is replaced within a test, long
 * enough that a replica starved of CPU for a second (a busy 2-core machine) still renews in time:
 * a leader only steps down after `renewDeadlineMs` without one successful renewal.
 */
const TIMING = { leaseDurationMs: 4_000, renewDeadlineMs: 3_000, retryPeriodMs: 50, requestTimeoutMs: 1_000 } as const;

/** A TCP relay to the API server that a test can cut, as if the replica behind it had lost the network. */
interface Relay {
  url: string;
  /** Requests sent through the relay so far, by method (counted from the request lines). */
  requests(method: string): number;
  cut(): void;
  close(): Promise<void>;
}

async function startRelay(target: { host: string; port: number }): Promise<Relay> {
  const sockets = new Set<Socket>();
  /** What each connection sent upstream, to count requests by their request lines. */
  const sent: string[][] = [];
  let cut = false;
  const server: Server = createServer((client) => {
    if (cut) return void client.destroy();
    const upstream = connect(target.port, target.host);
    const chunks: string[] = [];
    sent.push(chunks);
    client.on('data', (d: Buffer) => chunks.push(d.toString('latin1')));
    for (const s of [client, upstream]) {
      sockets.add(s);
      s.on('close', () => sockets.delete(s));
      s.on('error', () => {
        client.destroy();
        upstream.destroy();
      });
    }
    client.pipe(upstream);
    upstream.pipe(client);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    // A request line starts the stream or follows the previous request: its blank line, or its JSON body (no newline after it).
    requests: (method) => sent.reduce((n, chunks) => n + (chunks.join('').match(new RegExp(`(?:^|\\n|\\})${method} /\\S* HTTP/1\\.1\\r\\n`, 'g'))?.length ?? 0), 0),
    cut() {
      cut = true;
      for (const s of sockets) s.destroy();
    },
    close: () =>
      new Promise((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}

/** Who led when, across every elector of a test; fails the moment two lead at once. */
class Timeline {
  readonly intervals: Array<{ who: string; from: number; to: number | null }> = [];
  readonly overlaps: string[] = [];
  private readonly leading = new Set<string>();

  started(who: string): void {
    if (this.leading.size > 0) this.overlaps.push(`${who} started leading while ${[...this.leading].join(', ')} led`);
    this.leading.add(who);
    this.intervals.push({ who, from: performance.now(), to: null });
  }

  stopped(who: string): void {
    this.leading.delete(who);
    const open = [...this.intervals].reverse().find((i) => i.who === who && i.to === null);
    if (open !== undefined) open.to = performance.now();
  }

  leaders(): string[] {
    return [...this.leading];
  }
}

describe('leader election over a Lease (vmroll sim API server)', function () {
  this.timeout(60_000);
  let dir: string;
  let sim: SimCluster;
  let server: ApiServer;
  let timeline: Timeline;
  const electors: LeaderElector[] = [];
  const relays: Relay[] = [];

  /** A kubeconfig for the API server, through a fresh relay when `relay` is set. */
  const kubeconfigFor = (url: string, name: string): string => {
    const file = path.join(dir, `kubeconfig-${name}`);
    writeFileSync(file, simKubeconfig(url));
    return file;
  };

  const elector = async (
    identity: string,
    timing: { leaseDurationMs: number; renewDeadlineMs: number; retryPeriodMs: number; requestTimeoutMs: number } = TIMING,
  ): Promise<{ elector: LeaderElector; relay: Relay }> => {
    const relay = await startRelay({ host: '127.0.0.1', port: server.port });
    relays.push(relay);
    const e = new LeaderElector({
      kubeconfig: { file: kubeconfigFor(relay.url, identity) },
      namespace: 'default',
      identity,
      ...timing,
      onStartedLeading: () => timeline.started(identity),
      onStoppedLeading: () => timeline.stopped(identity),
    });
    electors.push(e);
    return { elector: e, relay };
  };

  const readLease = async (): Promise<Record<string, unknown>> => {
    const res = await fetch(`${server.url}/apis/coordination.k8s.io/v1/namespaces/default/leases/vmroll`);
    assert.equal(res.status, 200);
    return ((await res.json()) as { spec: Record<string, unknown> }).spec;
  };

  beforeEach(async () => {
    dir = mkdtempSync(path.join(os.tmpdir(), 'vmroll-lease-'));
    sim = new SimCluster();
    server = await startApiServer({ cluster: sim, listen: '127.0.0.1:0' });
    timeline = new Timeline();
  });

  afterEach(async () => {
    await Promise.all(electors.splice(0).map((e) => e.stop()));
    await Promise.all(relays.splice(0).map((r) => r.close()));
    await server.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('makes exactly one of two electors leader and writes the lease as Kubernetes does', async () => {
    // A lease far longer than the test: leadership may only change hands here by a bug, never because the machine is slow.
    const steady = { ...TIMING, leaseDurationMs: 19_500, renewDeadlineMs: 15_000 };
    const a = await elector('replica-a', steady);
    const b = await elector('replica-b', steady);
    a.elector.start();
    b.elector.start();
    await until('a leader', () => timeline.leaders().length === 1);
    const [leader] = timeline.leaders();
    assert.ok(leader !== undefined);
    const [mine, theirs] = leader === 'replica-a' ? [a, b] : [b, a];
    // Several renewals later (and several looks by the follower), still the same single leader.
    const renewals = mine.relay.requests('PUT');
    await until('five renewals and three looks by the follower', () => mine.relay.requests('PUT') >= renewals + 5 && theirs.relay.requests('GET') >= 3);
    assert.deepEqual(timeline.overlaps, []);
    assert.deepEqual(timeline.leaders(), [leader]);
    assert.equal(a.elector.isLeader(), leader === 'replica-a');
    assert.equal(b.elector.isLeader(), leader === 'replica-b');
    assert.equal(timeline.intervals.length, 1, 'leadership never changed hands');
    const spec = await readLease();
    assert.equal(spec['holderIdentity'], leader);
    assert.equal(spec['leaseDurationSeconds'], 20, 'whole seconds, rounded up');
    assert.equal(spec['leaseTransitions'], 0);
    // MicroTime: RFC 3339 with six fractional digits.
    assert.match(String(spec['acquireTime']), /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$/);
    assert.match(String(spec['renewTime']), /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$/);
    assert.ok(Date.parse(String(spec['renewTime'])) > Date.parse(String(spec['acquireTime'])), 'renewals move renewTime, not acquireTime');
  });

  it('a leader cut off from the API steps down by itself, then the other takes over once the lease expires', async () => {
    const a = await elector('replica-a');
    a.elector.start();
    await until('a leads', () => a.elector.isLeader());
    const b = await elector('replica-b');
    b.elector.start();
    // Two reads by b: it has seen a's lease at least once and acted on it.
    await until('b to look at the lease twice', () => b.relay.requests('GET') >= 2);
    assert.equal(b.elector.isLeader(), false, 'a valid lease is not taken');
    assert.equal(b.relay.requests('PUT') + b.relay.requests('POST'), 0, 'nor written');
    a.relay.cut();
    await until('b leads', () => b.elector.isLeader());
    assert.equal(a.elector.isLeader(), false);
    assert.deepEqual(timeline.overlaps, []);
    const [first, second] = timeline.intervals;
    assert.equal(first?.who, 'replica-a');
    assert.equal(second?.who, 'replica-b');
    assert.ok(first.to !== null && first.to <= second.from, 'a stopped before b started');
    const spec = await readLease();
    assert.equal(spec['holderIdentity'], 'replica-b');
    assert.equal(spec['leaseTransitions'], 1);
  });

  it('writes a lease shorter than a second as one whole second', async () => {
    // Alone, this elector leads however slowly it renews; only the written duration is checked.
    const a = await elector('replica-a', { ...TIMING, leaseDurationMs: 300, renewDeadlineMs: 200, retryPeriodMs: 40 });
    a.elector.start();
    // Once it has acquired the lease (it may step down again at once on a slow machine: no matter, it is the only writer).
    await until('a to acquire the lease', () => timeline.intervals.length > 0);
    assert.equal((await readLease())['leaseDurationSeconds'], 1, 'whole seconds, at least one');
  });

  it('a leader that stops renewing (dies) is replaced after the lease expires, not before', async () => {
    const a = await elector('replica-a');
    a.elector.start();
    await until('a leads', () => a.elector.isLeader());
    const before = await readLease();
    const b = await elector('replica-b');
    b.elector.start();
    await a.elector.stop();
    // b first sees a's lease now and must sit out a whole lease duration.
    assert.equal(b.elector.isLeader(), false);
    await until('b leads', () => b.elector.isLeader());
    const after = await readLease();
    assert.equal(after['holderIdentity'], 'replica-b');
    assert.equal(after['leaseTransitions'], 1);
    assert.notEqual(after['acquireTime'], before['acquireTime']);
  });

  it('release hands the lease over at once, long before it would expire', async () => {
    // A 30 s lease: without the release, the follower could not take over within half of it.
    const slow = { ...TIMING, leaseDurationMs: 30_000, renewDeadlineMs: 20_000, retryPeriodMs: 30 };
    const a = await elector('replica-a', slow);
    a.elector.start();
    await until('a leads', () => a.elector.isLeader());
    const b = await elector('replica-b', slow);
    b.elector.start();
    await until('b to look at the lease twice', () => b.relay.requests('GET') >= 2);
    assert.equal(b.elector.isLeader(), false);
    await a.elector.release();
    assert.equal(a.elector.isLeader(), false);
    await until('b leads', () => b.elector.isLeader(), slow.leaseDurationMs / 2);
    assert.deepEqual(timeline.overlaps, []);
    const spec = await readLease();
    assert.equal(spec['holderIdentity'], 'replica-b');
    assert.equal(spec['leaseDurationSeconds'], 30);
    assert.equal(spec['leaseTransitions'], 1);
  });

  it('under injected conflicts and a lost leader, never two leaders at once', async () => {
    server.setFaults({ conflictRate: 0.5, seed: 7 });
    const replicas = await Promise.all(['replica-a', 'replica-b', 'replica-c'].map((id) => elector(id)));
    for (const r of replicas) r.elector.start();
    await until('a leader', () => timeline.leaders().length === 1);
    const writes = (): number => replicas.reduce((n, r) => n + r.relay.requests('PUT'), 0);
    // Rounds under conflicts: at least ten more lease writes, some of them refused.
    const before = writes();
    await until('ten more lease writes, conflicts among them', () => writes() >= before + 10 && server.stats().faultsInjected > 0);
    const first = replicas.find((r) => r.elector.isLeader());
    assert.ok(first !== undefined, 'conflicts alone do not leave the lease leaderless for long');
    first.relay.cut();
    await until('another leader', () => replicas.some((r) => r !== first && r.elector.isLeader()));
    // The new leader renews a few times beside the remaining candidate.
    const second = replicas.find((r) => r !== first && r.elector.isLeader());
    const renewals = second?.relay.requests('PUT') ?? 0;
    await until('five renewals by the new leader', () => (second?.relay.requests('PUT') ?? 0) >= renewals + 5);
    assert.ok(server.stats().faultsInjected > 0, 'conflicts were injected');
    assert.deepEqual(timeline.overlaps, []);
    const sorted = [...timeline.intervals].sort((x, y) => x.from - y.from);
    for (let i = 1; i < sorted.length; i++) {
      const prev = sorted[i - 1];
      const next = sorted[i];
      assert.ok(prev !== undefined && next !== undefined && prev.to !== null && prev.to <= next.from, `${prev?.who} and ${next?.who} overlapped`);
    }
    assert.equal(timeline.leaders().length, 1);
  });

  it('a leader starved of CPU past its renew deadline no longer says it leads, before its step-down timer has run', async () => {
    const a = await elector('replica-a', { ...TIMING, renewDeadlineMs: 1_000, requestTimeoutMs: 500 });
    a.elector.start();
    await until('a leads', () => a.elector.isLeader());
    // Block the event loop (as a starved process is) for longer than the renew deadline: no renewal, no timer can run.
    const blockedUntil = Date.now() + 1_000 + 50;
    while (Date.now() < blockedUntil);
    assert.deepEqual(timeline.leaders(), ['replica-a'], 'its step-down callback has not run yet');
    assert.equal(a.elector.isLeader(), false, 'yet it does not act as leader: another may hold the lease by now');
  });

  it('refuses timings where a leader could outlive its lease', () => {
    assert.throws(
      () => new LeaderElector({ kubeconfig: { file: kubeconfigFor(server.url, 'x') }, namespace: 'default', leaseDurationMs: 1000, renewDeadlineMs: 1000 }),
      /renew deadline must be shorter than the lease duration/,
    );
  });
});

describe('SoleLeader and podNamespace', () => {
  it('the embedded simulator’s election leads from start to release', async () => {
    const events: string[] = [];
    const e = new SoleLeader({ onStartedLeading: () => events.push('start'), onStoppedLeading: (why) => events.push(`stop: ${why}`) });
    assert.equal(e.isLeader(), false);
    e.start();
    assert.equal(e.isLeader(), true);
    await e.release();
    assert.equal(e.isLeader(), false);
    assert.deepEqual(events, ['start', 'stop: stopping']);
  });

  it('reads the pod namespace file, trimmed, and nothing outside a pod', () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'vmroll-ns-'));
    try {
      const file = path.join(dir, 'namespace');
      writeFileSync(file, 'vm-ops\n');
      assert.equal(podNamespace(file), 'vm-ops');
      assert.equal(podNamespace(path.join(dir, 'missing')), undefined);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
