/**
 * A sync whose write meets a conflicting writer (the API server answers 409 Conflict, past the
 * client's own re-reads) is a `waiting` outcome: the VM is held, the sync says why, and the
 * repository chain re-checks within seconds instead of at the interval, which syncs the VM once
 * the other writer is gone. Over vmroll's simulator API server (real sockets, the Kubernetes
 * client) and the real Git server.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { type ApiServer, startApiServer } from '../reconciler/cluster/sim/apiServer.ts';
import { SimCluster } from '../reconciler/cluster/sim/simCluster.ts';
import { specOf } from '../reconciler/cluster/object.ts';
import { type RunHandle, makeLogger, startRun } from '../reconciler/commands/run.ts';
import { simKubeconfig } from '../reconciler/commands/sim.ts';
import { loadKubeVirt, runConfig } from '../reconciler/config.ts';
import { SYNC_RETRY } from '../reconciler/controller/backoff.ts';
import type { Obj } from '../reconciler/rollout/index.ts';
import { ROOT } from './helpers/cases.ts';
import { type GitServer, type WorkingClone, startGitServer } from './helpers/gitServer.ts';
import { WAIT_MS, until } from './helpers/waitFor.ts';

const EXAMPLE = path.join(ROOT, 'fixtures', 'example-repo', 'vms');
const KUBEVIRT = path.join(ROOT, 'fixtures', 'example-cluster', 'kubevirt.yaml');
const HOUR = 3_600_000;

type LogLine = Record<string, unknown>;

describe('a conflicting writer makes a sync wait, not stall (simulator API server)', function () {
  this.timeout(180_000);
  let git: GitServer;
  let work: WorkingClone;
  let repo: string;
  let dir: string;
  let sim: SimCluster;
  let api: ApiServer;
  let handle: RunHandle | undefined;

  before(async () => {
    git = await startGitServer();
    dir = mkdtempSync(path.join(tmpdir(), 'vmroll-waiting-'));
    repo = await git.createBareRepo('fleet');
    work = await git.createWorkingClone('fleet');
    await work.write('vms/web.yaml', readFileSync(path.join(EXAMPLE, 'web.yaml'), 'utf8'));
    await work.commit('web');
    await work.push();
    sim = new SimCluster({ kubevirt: loadKubeVirt(KUBEVIRT, 'kubevirt') });
    sim.createObject({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'shop' } });
    api = await startApiServer({ cluster: sim, listen: '127.0.0.1:0', bookmarkIntervalMs: 100 });
  });
  after(async () => {
    await handle?.stop();
    await api?.close();
    await git?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it('a 409 on apply holds the VM, says why, re-checks within seconds, and syncs once the conflict is gone', async () => {
    const kubeconfig = path.join(dir, 'kubeconfig');
    writeFileSync(kubeconfig, simKubeconfig(api.url));
    const config = runConfig({ repo, ref: 'main', path: 'vms', interval: '1h', cluster: 'kube', kubeconfig, 'cache-dir': path.join(dir, 'cache'), output: 'json', 'log-level': 'debug' }, {});
    const log: LogLine[] = [];
    const stream = { write: (l: string) => (log.push(JSON.parse(l) as LogLine), true) } as unknown as NodeJS.WritableStream;
    handle = await startRun(config, { out: () => {}, err: () => {} }, makeLogger('debug', [], stream));
    const said = (msg: RegExp): LogLine[] => log.filter((l) => msg.test(String(l['msg'])));
    const dueIn = (): number => {
      const at = handle?.repositories[0]?.nextSyncAt() ?? null;
      assert.ok(at !== null, 'a timer is armed');
      return at - Date.now();
    };

    const first = await handle.trigger('first');
    assert.ok(first !== null && first.summary.created === 1, JSON.stringify(first?.plan.errors));
    assert.equal(first.waiting, null);
    handle.start();
    assert.ok(dueIn() > HOUR * 0.85, 'after a clean sync the next one is an interval away');

    // Another writer holds the VM: every write to an existing object is answered 409.
    const web = readFileSync(path.join(EXAMPLE, 'web.yaml'), 'utf8');
    const changed = web.replace(/guest: \S+/, 'guest: 3Gi');
    assert.notEqual(changed, web, 'the fixture sets a guest memory to change');
    await work.write('vms/web.yaml', changed);
    await work.commit('web: 3Gi');
    await work.push();
    api.setFaults({ conflictRate: 1 });
    const blocked = await handle.trigger('push');
    assert.ok(blocked !== null, 'the sync runs: one VM failing is no failure of the whole sync');
    assert.match(blocked.waiting ?? '', /^1 write refused for a conflicting writer \(shop\/web\)$/);
    assert.equal(blocked.summary.held, 1);
    assert.match(blocked.plan.errors.map((e) => e.message).join('\n'), /apply failed: .*the object has been modified/);
    const delay = dueIn();
    assert.ok(delay <= SYNC_RETRY.waitingMaxMs, `the re-check is armed in ${delay} ms, not at the 1h interval`);
    assert.ok(said(/^re-checking soon: /).length >= 1, 'the log says why it re-checks soon');

    // The other writer is done; the timer, not the test, brings the next sync.
    api.setFaults({});
    const memory = (): unknown => {
      const vm = sim.store.list('VirtualMachine').find((o: Obj) => (o['metadata'] as Obj | undefined)?.['name'] === 'web');
      return ((specOf((specOf(vm ?? {})['template'] as Obj | undefined) ?? {})['domain'] as Obj | undefined)?.['memory'] as Obj | undefined)?.['guest'];
    };
    await until('the timer to re-check and apply the change', () => memory() === '3Gi', { timeoutMs: WAIT_MS + SYNC_RETRY.waitingMaxMs * 2, detail: () => JSON.stringify(said(/sync|re-checking|reconciled/).slice(-5)) });
    // While the re-check runs no timer is armed; once it ends, the interval is.
    const armedAt = (): number | null => handle?.repositories[0]?.nextSyncAt() ?? null;
    await until('the re-check to arm the interval again', () => (armedAt() ?? 0) - Date.now() > HOUR * 0.85, { timeoutMs: WAIT_MS });
  });
});
