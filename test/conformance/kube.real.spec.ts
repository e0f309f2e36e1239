/**
 * The kube backend against Kubernetes' own API server (kube-apiserver from k8s.io/kubernetes,
 * embedded etcd) serving KubeVirt's CRDs generated from kubevirt.io/api: structural schemas,
 * lists, informer watches, server-side apply with real managedFields and list types,
 * conflicts, the 410 relist after etcd compacts the history, leader election over a Lease,
 * and `vmroll run --kubeconfig` syncing and pruning. Not part of `npm test` (it builds Go):
 * `npm run test:conformance`.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { CoordinationV1Api, CoreV1Api, CustomObjectsApi, KubeConfig, PatchStrategy, setHeaderOptions } from '@kubernetes/client-node';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { promisify } from 'node:util';
import { type Server, type Socket, createConnection, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Writable } from 'node:stream';
import { pino } from 'pino';
import { parse, stringify } from 'yaml';
import type { WatchEvent } from '../../reconciler/cluster/backend.ts';
import { KubeCluster } from '../../reconciler/cluster/kube.ts';
import { LeaderElector } from '../../reconciler/cluster/leaderElection.ts';
import type { Obj, VmPlan } from '../../reconciler/rollout/index.ts';
import { ROOT } from '../helpers/cases.ts';
import { startGitServer } from '../helpers/gitServer.ts';
import { BUILD_TIMEOUT_MS, type RealApiServer, START_TIMEOUT_MS, startRealApiServer } from '../helpers/realApiServer.ts';
import { until } from '../helpers/waitFor.ts';

const WEB = parse(readFileSync(path.join(ROOT, 'fixtures', 'example-repo', 'vms', 'web.yaml'), 'utf8')) as Obj;
const KUBEVIRT = parse(readFileSync(path.join(ROOT, 'fixtures', 'example-cluster', 'kubevirt.yaml'), 'utf8')) as Obj;
const VM = { group: 'kubevirt.io', version: 'v1', plural: 'virtualmachines' } as const;
const EXAMPLE = path.join(ROOT, 'fixtures', 'example-repo', 'vms');
const run = promisify(execFile);

/** `vmroll run --once` as its own process, bounded at 120 s. */
async function vmrollOnce(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await run(process.execPath, [path.join(ROOT, 'bin', 'vmroll.js'), 'run', '--once', ...args], { cwd: ROOT, timeout: 120_000 });
    return { code: 0, stdout, stderr };
  } catch (e) {
    const err = e as { code?: number; stdout?: string; stderr?: string };
    return { code: typeof err.code === 'number' ? err.code : -1, stdout: err.stdout ?? '', stderr: err.stderr ?? '' };
  }
}

function vm(name: string, namespace: string, patch: (spec: Obj) => void = () => {}): Obj {
  const copy = structuredClone(WEB);
  (copy['metadata'] as Obj)['name'] = name;
  (copy['metadata'] as Obj)['namespace'] = namespace;
  patch(copy['spec'] as Obj);
  return copy;
}

function domain(spec: Obj): Obj {
  return ((spec['template'] as Obj)['spec'] as Obj)['domain'] as Obj;
}

const meta = (o: Obj | undefined): Obj => (o?.['metadata'] ?? {}) as Obj;

/** A TCP relay in front of the API server whose connections a test can cut: a network partition. */
interface Relay {
  port: number;
  /** Destroys every open connection and stops accepting new ones (they are refused). */
  suspend(): Promise<void>;
  /** Accepts connections again on the same port. */
  resume(): Promise<void>;
  close(): Promise<void>;
}

async function startRelay(targetPort: number): Promise<Relay> {
  const sockets = new Set<Socket>();
  let server: Server | null = null;
  let port = 0;
  const listen = (): Promise<void> =>
    new Promise((resolve, reject) => {
      const s = createServer((client) => {
        const upstream = createConnection({ host: '127.0.0.1', port: targetPort });
        for (const sock of [client, upstream]) {
          sockets.add(sock);
          sock.on('close', () => sockets.delete(sock));
          sock.on('error', () => sock.destroy());
        }
        client.pipe(upstream).pipe(client);
        client.on('close', () => upstream.destroy());
        upstream.on('close', () => client.destroy());
      });
      s.once('error', reject);
      s.listen(port, '127.0.0.1', () => {
        port = (s.address() as { port: number }).port;
        server = s;
        resolve();
      });
    });
  const stopListening = (): Promise<void> =>
    new Promise((resolve) => {
      const s = server;
      server = null;
      for (const sock of sockets) sock.destroy();
      if (s === null) resolve();
      else s.close(() => resolve());
    });
  await listen();
  return { port, suspend: stopListening, resume: listen, close: stopListening };
}

describe('kube backend against a real kube-apiserver with KubeVirt CRDs', function () {
  this.timeout(120_000);
  let server: RealApiServer;
  let kc: KubeConfig;
  let dir: string;
  const backends: KubeCluster[] = [];
  /** Everything the backends logged (the informer says why it relists). */
  let logged: string[] = [];
  const logger = pino({ level: 'info', base: null }, new Writable({ write: (chunk: Buffer, _enc, done) => void (logged.push(chunk.toString('utf8')), done()) }));
  const kube = (kubeconfig: string = server.kubeconfig): KubeCluster => {
    const k = new KubeCluster({ kubeconfig: { file: kubeconfig }, logger, retry: { attempts: 4, baseMs: 20, capMs: 200 }, requestTimeoutMs: 30_000, informer: { retryMs: 20 } });
    backends.push(k);
    return k;
  };
  let namespaces = 0;
  /** A fresh namespace per test: one server serves the whole suite. */
  const namespace = async (): Promise<string> => {
    const name = `t${++namespaces}`;
    await kc.makeApiClient(CoreV1Api).createNamespace({ body: { metadata: { name } } });
    return name;
  };
  const custom = (): CustomObjectsApi => kc.makeApiClient(CustomObjectsApi);
  const getVm = async (namespace: string, name: string): Promise<Obj> => (await custom().getNamespacedCustomObject({ ...VM, namespace, name })) as Obj;
  /** A server-side apply as another field manager (a person with kubectl, another controller). */
  const applyAs = (fieldManager: string, body: Obj, force: boolean): Promise<unknown> => {
    const m = meta(body);
    return custom().patchNamespacedCustomObject(
      { ...VM, namespace: String(m['namespace']), name: String(m['name']), body, fieldManager, force },
      setHeaderOptions('Content-Type', PatchStrategy.ServerSideApply),
    );
  };

  before(async function () {
    // The first run builds kube-apiserver from source.
    this.timeout(BUILD_TIMEOUT_MS + START_TIMEOUT_MS + 60_000);
    // The VM resource's watch cache is off so that a resumed watch reaches etcd, whose compaction answers 410 Gone.
    server = await startRealApiServer({ apiserverArgs: ['--watch-cache-sizes=virtualmachines.kubevirt.io#0'] });
    kc = new KubeConfig();
    kc.loadFromFile(server.kubeconfig);
    dir = mkdtempSync(path.join(tmpdir(), 'vmroll-kube-real-'));
  });

  afterEach(() => {
    for (const k of backends.splice(0)) k.close();
    logged = [];
  });

  after(async () => {
    await server?.stop();
    if (dir !== undefined) rmSync(dir, { recursive: true, force: true });
  });

  it('serves KubeVirt CRDs with structural schemas: typed fields, list types, status subresources', async () => {
    assert.equal(server.crds, 8);
    const crd = async (name: string): Promise<Obj> =>
      (await custom().getClusterCustomObject({ group: 'apiextensions.k8s.io', version: 'v1', plural: 'customresourcedefinitions', name })) as Obj;
    const vmCrd = await crd('virtualmachines.kubevirt.io');
    const version = ((vmCrd['spec'] as Obj)['versions'] as Obj[]).find((v) => v['name'] === 'v1') ?? {};
    assert.deepEqual(version['subresources'], { status: {} }, 'VirtualMachine has a status subresource');
    const root = (version['schema'] as Obj)['openAPIV3Schema'] as Obj;
    const props = (s: Obj | undefined, ...names: string[]): Obj | undefined =>
      names.reduce<Obj | undefined>((at, n) => ((at?.['properties'] ?? {}) as Obj)[n] as Obj | undefined, s);
    assert.equal(root['x-kubernetes-preserve-unknown-fields'], undefined);
    assert.equal(props(root, 'spec')?.['x-kubernetes-preserve-unknown-fields'], undefined, 'spec is typed, not preserve-unknown-fields');
    const template = props(root, 'spec', 'template', 'spec');
    assert.equal(props(template, 'domain', 'cpu', 'sockets')?.['type'], 'integer');
    assert.equal(props(template, 'topologySpreadConstraints')?.['x-kubernetes-list-type'], 'map');
    assert.ok(((vmCrd['status'] as Obj)['conditions'] as Obj[]).some((c) => c['type'] === 'Established' && c['status'] === 'True'));
    const vmiCrd = await crd('virtualmachineinstances.kubevirt.io');
    assert.equal((((vmiCrd['spec'] as Obj)['versions'] as Obj[])[0] ?? {})['subresources'], undefined, 'KubeVirt registers the VMI without a status subresource');
  });

  it('refuses unknown fields and wrong types in a server-side apply with 500 (vmroll takes it as Invalid, not retried), prunes unknown fields from a create', async () => {
    const ns = await namespace();
    const k = kube();
    const typo = (name: string): Obj => vm(name, ns, (s) => void ((domain(s)['cpu'] as Obj)['socket'] = 2));
    // An apply patch is typed against the CRD's schema before anything is stored: an unknown
    // field fails the whole apply, with 500 InternalError ("failed to create typed patch
    // object"). `vmroll sim` accepts it, and vmroll's loader warns about it; the backend takes
    // this 500 as Invalid (the VM's own error), not as a server fault: one attempt, no retries.
    await assert.rejects(k.applyVirtualMachine(typo('web')), (e: unknown) => {
      const err = e as { code?: string; data?: { status?: number }; message?: string };
      return err.code === 'Invalid' && err.data?.status === 500 && /\.spec\.template\.spec\.domain\.cpu\.socket: field not declared in schema/.test(String(err.message));
    });
    assert.equal(k.requests.get('apply virtualmachines'), 1, 'a permanent error is not retried');
    await assert.rejects(getVm(ns, 'web'), (e: unknown) => (e as { code?: number }).code === 404, 'nothing was stored');
    // A create is pruned to the schema instead.
    await custom().createNamespacedCustomObject({ ...VM, namespace: ns, body: typo('created') });
    assert.deepEqual(domain((await getVm(ns, 'created'))['spec'] as Obj)['cpu'], { sockets: 2, cores: 1, threads: 1 }, 'the unknown field `socket` was pruned');

    // A wrong type: the same 500 from an apply; a create gets 422 Invalid from validation.
    const wrongType = (name: string): Obj => vm(name, ns, (s) => void ((domain(s)['cpu'] as Obj)['sockets'] = 'two'));
    await assert.rejects(k.applyVirtualMachine(wrongType('web')), (e: unknown) => {
      const err = e as { code?: string; data?: { status?: number }; message?: string };
      return err.code === 'Invalid' && err.data?.status === 500 && /cpu\.sockets: expected numeric/.test(String(err.message));
    });
    await assert.rejects(custom().createNamespacedCustomObject({ ...VM, namespace: ns, body: wrongType('web') }), (e: unknown) => {
      const err = e as { code?: number; body?: unknown };
      const status = JSON.parse(String(err.body)) as { reason?: string; details?: { causes?: Array<{ field?: string }> } };
      return err.code === 422 && status.reason === 'Invalid' && status.details?.causes?.[0]?.field === 'spec.template.spec.domain.cpu.sockets';
    });
    await k.applyVirtualMachine(vm('web', ns));
    assert.equal(((domain((await getVm(ns, 'web'))['spec'] as Obj)['cpu'] as Obj)['sockets']), 2);

    // A create with a status: the status subresource makes the main resource ignore it.
    const kv = structuredClone(KUBEVIRT);
    (kv['metadata'] as Obj)['namespace'] = ns;
    const created = (await custom().createNamespacedCustomObject({ group: 'kubevirt.io', version: 'v1', namespace: ns, plural: 'kubevirts', body: kv })) as Obj;
    assert.equal((created['status'] as Obj | undefined)?.['observedKubeVirtVersion'], undefined);
    await custom().replaceNamespacedCustomObjectStatus({ group: 'kubevirt.io', version: 'v1', namespace: ns, plural: 'kubevirts', name: 'kubevirt', body: { ...created, status: { observedKubeVirtVersion: 'v1.9.0' } } });
    const backend = kube();
    assert.equal(((await backend.getKubeVirt())?.['status'] as Obj | undefined)?.['observedKubeVirtVersion'], 'v1.9.0');
  });

  it('lists once, then follows the watch: changes by others arrive as events, with no further list', async () => {
    const ns = await namespace();
    await applyAs('someone', vm('web', ns), true);
    const k = kube();
    const vms = (await k.listVirtualMachines()).filter((v) => meta(v)['namespace'] === ns);
    assert.deepEqual(vms.map((v) => meta(v)['name']), ['web']);
    assert.equal(vms[0]?.['kind'], 'VirtualMachine', 'list items get their kind back');
    assert.equal(vms[0]?.['apiVersion'], 'kubevirt.io/v1');
    assert.equal(k.requests.get('list virtualmachines'), 1);

    const events: WatchEvent[] = [];
    k.watch((e) => events.push(e));
    await applyAs('someone', vm('db', ns), true);
    await until('the ADDED event for db', () => events.some((e) => e.type === 'ADDED' && meta(e.object)['name'] === 'db'));
    await custom().deleteNamespacedCustomObject({ ...VM, namespace: ns, name: 'db' });
    await until('the DELETED event for db', () => events.some((e) => e.type === 'DELETED' && meta(e.object)['name'] === 'db'));
    assert.deepEqual(
      (await k.listVirtualMachines()).filter((v) => meta(v)['namespace'] === ns).map((v) => meta(v)['name']),
      ['web'],
    );
    assert.equal(k.requests.get('list virtualmachines'), 1, 'the cache followed the watch');
  });

  it('applies server-side as field manager vmroll: real managedFields, map fields shared, atomic lists taken whole', async () => {
    const ns = await namespace();
    const k = kube();
    const withLabel = vm('web', ns);
    ((withLabel['metadata'] as Obj)['labels'] as Obj)['tier'] = 'front';
    await k.applyVirtualMachine(withLabel);
    let stored = await getVm(ns, 'web');
    const entries = meta(stored)['managedFields'] as Obj[];
    const mine = entries.find((m) => m['manager'] === 'vmroll');
    assert.equal(mine?.['operation'], 'Apply');
    const fields = mine?.['fieldsV1'] as Obj;
    assert.ok(((((fields['f:metadata'] as Obj)['f:labels'] as Obj)['f:tier']) as Obj | undefined) !== undefined, JSON.stringify(fields['f:metadata']));
    assert.ok((fields['f:spec'] as Obj)['f:runStrategy'] !== undefined);
    assert.equal((fields['f:status'] as Obj | undefined), undefined, 'vmroll never applies status');

    // Someone else adds a label (labels are a map: both managers own their keys), a
    // topology spread constraint (a list-type=map list, keyed by topologyKey and
    // whenUnsatisfiable) and a disk (disks carry no list type: atomic, one owner for the list).
    const other = vm('web', ns);
    (other['metadata'] as Obj)['labels'] = { owner: 'ops' };
    const otherSpec = other['spec'] as Obj;
    delete otherSpec['runStrategy'];
    const tmpl = (otherSpec['template'] as Obj)['spec'] as Obj;
    for (const key of Object.keys(tmpl)) if (key !== 'domain') delete tmpl[key];
    tmpl['topologySpreadConstraints'] = [{ topologyKey: 'zone', whenUnsatisfiable: 'ScheduleAnyway', maxSkew: 1 }];
    const devices = (tmpl['domain'] as Obj)['devices'] as Obj;
    tmpl['domain'] = { devices: { disks: [...(devices['disks'] as Obj[]), { name: 'scratch', disk: { bus: 'virtio' } }] } };
    await assert.rejects(applyAs('ops', other, false), (e: unknown) => /conflict/i.test(String((e as { body?: unknown }).body)) && /vmroll/.test(String((e as { body?: unknown }).body)), 'the disks list is vmroll\'s: a conflict without force');
    await applyAs('ops', other, true);
    stored = await getVm(ns, 'web');
    assert.deepEqual(((domain(stored['spec'] as Obj)['devices'] as Obj)['disks'] as Obj[]).map((d) => d['name']), ['rootdisk', 'cloudinit', 'scratch']);

    // vmroll applies again, without its label: its label goes, the other's stays; the spread
    // constraint it never applied stays; the atomic disks list is vmroll's again, whole.
    await k.applyVirtualMachine(vm('web', ns));
    stored = await getVm(ns, 'web');
    assert.deepEqual(meta(stored)['labels'], { app: 'web', owner: 'ops' });
    const spec = (stored['spec'] as Obj)['template'] as Obj;
    assert.deepEqual(((spec['spec'] as Obj)['topologySpreadConstraints'] as Obj[]).map((c) => c['topologyKey']), ['zone']);
    assert.deepEqual(((domain(stored['spec'] as Obj)['devices'] as Obj)['disks'] as Obj[]).map((d) => d['name']), ['rootdisk', 'cloudinit']);
    const managers = (meta(stored)['managedFields'] as Obj[]).map((m) => `${String(m['manager'])}/${String(m['operation'])}`).sort();
    assert.deepEqual(managers, ['ops/Apply', 'vmroll/Apply']);
  });

  it('deletes for prune; deleting what is already gone is fine', async () => {
    const ns = await namespace();
    const k = kube();
    await k.applyVirtualMachine(vm('web', ns));
    await k.deleteVirtualMachine({ namespace: ns, name: 'web' });
    await assert.rejects(getVm(ns, 'web'), (e: unknown) => (e as { code?: number }).code === 404);
    await k.deleteVirtualMachine({ namespace: ns, name: 'web' });
  });

  it('relists after 410 Gone when etcd compacted the history during a partition, and turns the difference into events', async () => {
    const ns = await namespace();
    for (const name of ['keep', 'gone']) await applyAs('someone', vm(name, ns), true);
    const port = Number(new URL(server.url).port);
    const relay = await startRelay(port);
    try {
      // The same kubeconfig, through the relay (the certificate names 127.0.0.1, whatever the port).
      const config = parse(readFileSync(server.kubeconfig, 'utf8')) as { clusters: Array<{ cluster: { server: string } }> };
      for (const c of config.clusters) c.cluster.server = `https://127.0.0.1:${relay.port}`;
      const relayed = path.join(dir, 'relayed-kubeconfig');
      writeFileSync(relayed, stringify(config));
      const k = kube(relayed);
      await k.listVirtualMachines();
      const informer = k.informer('VirtualMachine');
      assert.ok(informer);
      const events: WatchEvent[] = [];
      k.watch((e) => events.push(e));
      const mine = (): string[] => [...informer.store.values()].filter((v) => meta(v)['namespace'] === ns).map((v) => String(meta(v)['name'])).sort();
      assert.deepEqual(mine(), ['gone', 'keep']);

      await relay.suspend();
      await custom().deleteNamespacedCustomObject({ ...VM, namespace: ns, name: 'gone' });
      for (let i = 0; i < 5; i++) await applyAs('someone', vm(`new-${i}`, ns), true);
      const revision = await server.compact();
      assert.ok(revision > 0);
      await relay.resume();

      await until('a relist after 410', () => informer.lists >= 2, { detail: () => `lists: ${informer.lists}` });
      const relists = logged.filter((l) => l.includes('watch history expired (410 Gone)')).map((l) => (JSON.parse(l) as { kind?: string }).kind);
      assert.deepEqual(relists, ['VirtualMachine'], 'etcd answered the resumed VM watch with 410; the other kinds resumed from the watch cache');
      await until('the cache caught up', () => mine().join(',') === ['keep', 'new-0', 'new-1', 'new-2', 'new-3', 'new-4'].join(','), { detail: () => mine().join(',') });
      assert.ok(events.some((e) => e.type === 'DELETED' && meta(e.object)['name'] === 'gone'), 'the deletion missed while away is an event');
      assert.equal(events.filter((e) => e.kind === 'VirtualMachine' && e.type === 'ADDED' && meta(e.object)['namespace'] === ns).length, 5);
    } finally {
      await relay.close();
    }
  });

  it('elects one leader over a real coordination.k8s.io Lease and hands it over on release', async () => {
    const ns = await namespace();
    const events: string[] = [];
    const elector = (identity: string): LeaderElector =>
      new LeaderElector({
        kubeconfig: { file: server.kubeconfig },
        namespace: ns,
        identity,
        // Generous: on a loaded machine a short renew deadline makes a leader step down by itself.
        leaseDurationMs: 15_000,
        renewDeadlineMs: 10_000,
        retryPeriodMs: 500,
        logger,
        onStartedLeading: () => events.push(`${identity} leads`),
        onStoppedLeading: () => events.push(`${identity} stops`),
      });
    const a = elector('a');
    const b = elector('b');
    try {
      a.start();
      await until('a to lead', () => a.isLeader());
      b.start();
      const leases = kc.makeApiClient(CoordinationV1Api);
      const first = await leases.readNamespacedLease({ namespace: ns, name: 'vmroll' });
      assert.equal(first.spec?.holderIdentity, 'a');
      assert.equal(first.spec?.leaseDurationSeconds, 15);
      assert.ok(first.spec?.renewTime !== undefined, 'the server took the MicroTime renewTime');
      // b keeps trying while a renews: a few retry periods later it still does not lead.
      const renewed = first.metadata?.resourceVersion;
      await until('a to renew the lease', async () => (await leases.readNamespacedLease({ namespace: ns, name: 'vmroll' })).metadata?.resourceVersion !== renewed);
      assert.equal(b.isLeader(), false);
      await a.release();
      await until('b to lead', () => b.isLeader());
      const second = await leases.readNamespacedLease({ namespace: ns, name: 'vmroll' });
      assert.equal(second.spec?.holderIdentity, 'b');
      assert.equal((second.spec?.leaseTransitions ?? 0) - (first.spec?.leaseTransitions ?? 0), 1);
      assert.deepEqual(events, ['a leads', 'a stops', 'b leads']);
    } finally {
      await a.stop();
      await b.stop();
    }
  });

  it('vmroll run --kubeconfig: the example repository synced into the real server, then a VM pruned', async () => {
    const core = kc.makeApiClient(CoreV1Api);
    for (const name of ['shop', 'jobs']) await core.createNamespace({ body: { metadata: { name } } });
    const git = await startGitServer();
    try {
      const repo = await git.createBareRepo('fleet');
      const work = await git.createWorkingClone('fleet');
      for (const f of ['web.yaml', 'db.yaml', 'batch.yaml']) await work.write(`vms/${f}`, readFileSync(path.join(EXAMPLE, f), 'utf8'));
      const first = await work.commit('three VMs');
      await work.push();
      const common = ['--repo', repo, '--path', 'vms', '--kubeconfig', server.kubeconfig, '--cache-dir', path.join(dir, 'run-cache'), '--output', 'json', '--log-level', 'silent'];

      const r1 = await vmrollOnce(common);
      assert.equal(r1.code, 0, r1.stderr);
      const plan = JSON.parse(r1.stdout) as VmPlan;
      assert.deepEqual(plan.vms.map((v) => `${v.namespace}/${v.name}:${v.action}`), ['jobs/batch:create', 'shop/db:create', 'shop/web:create']);
      for (const [ns, name] of [['shop', 'web'], ['shop', 'db'], ['jobs', 'batch']] as const) {
        const stored = meta(await getVm(ns, name));
        assert.equal((stored['labels'] as Obj)['app.kubernetes.io/managed-by'], 'vmroll');
        assert.equal((stored['annotations'] as Obj)['vmroll.dev/source-commit'], first);
        assert.deepEqual((stored['managedFields'] as Obj[]).map((m) => `${String(m['manager'])}/${String(m['operation'])}`), ['vmroll/Apply']);
      }

      await work.remove('vms/batch.yaml');
      await work.commit('batch is gone');
      await work.push();
      const r2 = await vmrollOnce([...common, '--prune']);
      assert.equal(r2.code, 0, r2.stderr);
      await assert.rejects(getVm('jobs', 'batch'), (e: unknown) => (e as { code?: number }).code === 404, 'pruned from the real server');
      assert.ok(await getVm('shop', 'web'));
    } finally {
      await git.stop();
    }
  });
});
