/** The simulator's Kubernetes-API-compatible server, over real HTTP on 127.0.0.1 with plain fetch. */
import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { parse as parseYaml } from 'yaml';
import { type ApiServer, startApiServer } from '../reconciler/cluster/sim/apiServer.ts';
import { SimCluster } from '../reconciler/cluster/sim/simCluster.ts';
import type { Obj } from '../reconciler/rollout/index.ts';
import { ROOT } from './helpers/cases.ts';
import { WAIT_MS } from './helpers/waitFor.ts';

interface Reply {
  status: number;
  body: Obj;
}

/** One request; bodies that are not strings go as JSON. */
async function call(server: ApiServer, method: string, urlPath: string, body?: unknown, contentType = 'application/json', headers: Record<string, string> = {}): Promise<Reply> {
  const res = await fetch(`${server.url}${urlPath}`, {
    method,
    headers: { 'content-type': contentType, ...headers },
    ...(body !== undefined ? { body: typeof body === 'string' ? body : JSON.stringify(body) } : {}),
  });
  const text = await res.text();
  return { status: res.status, body: text === '' ? {} : (JSON.parse(text) as Obj) };
}

const VMS = '/apis/kubevirt.io/v1/namespaces/default/virtualmachines';

function vm(name: string, extra: { labels?: Record<string, string>; runStrategy?: string; cores?: number } = {}): Obj {
  return {
    apiVersion: 'kubevirt.io/v1',
    kind: 'VirtualMachine',
    metadata: { name, ...(extra.labels !== undefined ? { labels: extra.labels } : {}) },
    spec: {
      runStrategy: extra.runStrategy ?? 'Halted',
      template: { spec: { domain: { cpu: { sockets: 1, cores: extra.cores ?? 1 }, memory: { guest: '1Gi' }, devices: {} } } },
    },
  };
}

const meta = (o: Obj): Obj => (o['metadata'] ?? {}) as Obj;
const names = (list: Obj): string[] => ((list['items'] ?? []) as Obj[]).map((o) => String(meta(o)['name'])).sort();

function assertStatus(r: Reply, code: number, reason: string): void {
  assert.equal(r.status, code, JSON.stringify(r.body));
  assert.equal(r.body['kind'], 'Status');
  assert.equal(r.body['apiVersion'], 'v1');
  assert.equal(r.body['status'], 'Failure');
  assert.equal(r.body['reason'], reason);
  assert.equal(r.body['code'], code);
}

/** A watch stream read line by line; every read gives up after two seconds. */
class WatchStream {
  private buffer = '';
  private readonly decoder = new TextDecoder();
  private constructor(
    private readonly reader: ReadableStreamDefaultReader<Uint8Array>,
    private readonly controller: AbortController,
    readonly status: number,
  ) {}

  static async open(server: ApiServer, urlPath: string): Promise<WatchStream> {
    const controller = new AbortController();
    const res = await fetch(`${server.url}${urlPath}`, { signal: controller.signal });
    assert.ok(res.body);
    return new WatchStream(res.body.getReader(), controller, res.status);
  }

  /** The next event, or null when the server ended the stream. */
  async next(): Promise<Obj | null> {
    for (;;) {
      const nl = this.buffer.indexOf('\n');
      if (nl >= 0) {
        const line = this.buffer.slice(0, nl);
        this.buffer = this.buffer.slice(nl + 1);
        return JSON.parse(line) as Obj;
      }
      let timer: NodeJS.Timeout | undefined;
      const timeout = new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`no watch event within ${WAIT_MS} ms`)), WAIT_MS);
      });
      const chunk = await Promise.race([this.reader.read(), timeout]).finally(() => clearTimeout(timer));
      if (chunk.done) return null;
      this.buffer += this.decoder.decode(chunk.value, { stream: true });
    }
  }

  /** Events up to and including the first of `type`. */
  async until(type: string): Promise<Obj[]> {
    const out: Obj[] = [];
    for (;;) {
      const e = await this.next();
      assert.ok(e, `stream ended before a ${type} event`);
      out.push(e);
      if (e['type'] === type) return out;
    }
  }

  close(): void {
    this.controller.abort();
  }
}

const summary = (events: Obj[]): string[] => events.map((e) => `${String(e['type'])} ${String(meta((e['object'] ?? {}) as Obj)['name'] ?? '')}`);

describe('simulator API server', () => {
  let cluster: SimCluster;
  let server: ApiServer;

  before(async () => {
    cluster = new SimCluster();
    server = await startApiServer({ cluster, listen: '127.0.0.1:0', bookmarkIntervalMs: 100 });
  });
  after(() => server.close());
  afterEach(() => server.setFaults({}));

  describe('discovery', () => {
    it('serves /version, /api, /api/v1 and /apis', async () => {
      assert.match(String((await call(server, 'GET', '/version')).body['gitVersion']), /^v1\.\d+\.\d+$/);
      assert.deepEqual((await call(server, 'GET', '/api')).body['versions'], ['v1']);
      const core = (await call(server, 'GET', '/api/v1')).body;
      assert.equal(core['kind'], 'APIResourceList');
      const ns = (core['resources'] as Obj[]).find((r) => r['name'] === 'namespaces');
      assert.equal(ns?.['namespaced'], false);
      assert.deepEqual(ns?.['shortNames'], ['ns']);
      const groups = ((await call(server, 'GET', '/apis')).body['groups'] as Obj[]).map((g) => [g['name'], (g['preferredVersion'] as Obj)['version']]);
      assert.deepEqual(new Map(groups as [string, string][]), new Map([
        ['apps', 'v1'],
        ['coordination.k8s.io', 'v1'],
        ['kubevirt.io', 'v1'],
        ['subresources.kubevirt.io', 'v1'],
        ['instancetype.kubevirt.io', 'v1beta1'],
      ]));
    });

    it('lists KubeVirt resources with short names, status subresources and actions', async () => {
      const kv = (await call(server, 'GET', '/apis/kubevirt.io/v1')).body;
      assert.equal(kv['groupVersion'], 'kubevirt.io/v1');
      const byName = new Map((kv['resources'] as Obj[]).map((r) => [String(r['name']), r]));
      assert.deepEqual(byName.get('virtualmachines')?.['shortNames'], ['vm', 'vms']);
      assert.equal(byName.get('virtualmachines')?.['kind'], 'VirtualMachine');
      assert.ok((byName.get('virtualmachines')?.['verbs'] as string[]).includes('watch'));
      assert.deepEqual(byName.get('virtualmachineinstances')?.['shortNames'], ['vmi', 'vmis']);
      assert.deepEqual(byName.get('virtualmachines/status')?.['verbs'], ['get', 'patch', 'update']);
      const it = (await call(server, 'GET', '/apis/instancetype.kubevirt.io/v1beta1')).body['resources'] as Obj[];
      assert.equal(it.find((r) => r['name'] === 'virtualmachineclusterinstancetypes')?.['namespaced'], false);
      assert.equal(it.find((r) => r['name'] === 'virtualmachinepreferences')?.['namespaced'], true);
      const sub = (await call(server, 'GET', '/apis/subresources.kubevirt.io/v1')).body['resources'] as Obj[];
      assert.deepEqual(sub.map((r) => r['name']).sort(), ['virtualmachines/restart', 'virtualmachines/start', 'virtualmachines/stop']);
    });

    it('answers unknown paths and OpenAPI v3 with a 404 Status', async () => {
      assertStatus(await call(server, 'GET', '/openapi/v3'), 404, 'NotFound');
      assertStatus(await call(server, 'GET', '/apis/example.com/v1'), 404, 'NotFound');
      assertStatus(await call(server, 'GET', '/apis/kubevirt.io/v1/namespaces/default/nothings'), 404, 'NotFound');
    });
  });

  describe('objects', () => {
    it('creates, reads, updates and deletes with Kubernetes status codes', async () => {
      const created = await call(server, 'POST', VMS, vm('crud'));
      assert.equal(created.status, 201);
      assert.ok(meta(created.body)['uid']);
      assert.equal(meta(created.body)['generation'], 1);
      // The controller writes the status right after the create: the current version comes from a read.
      const rv = String(meta((await call(server, 'GET', `${VMS}/crud`)).body)['resourceVersion']);

      const again = await call(server, 'POST', VMS, vm('crud'));
      assertStatus(again, 409, 'AlreadyExists');
      assert.equal(again.body['message'], 'virtualmachines.kubevirt.io "crud" already exists');
      assert.deepEqual(again.body['details'], { name: 'crud', group: 'kubevirt.io', kind: 'virtualmachines' });

      const missing = await call(server, 'GET', `${VMS}/nope`);
      assertStatus(missing, 404, 'NotFound');
      assert.equal(missing.body['message'], 'virtualmachines.kubevirt.io "nope" not found');

      const changed = vm('crud', { cores: 2 });
      const updated = await call(server, 'PUT', `${VMS}/crud`, { ...changed, metadata: { ...meta(changed), resourceVersion: rv } });
      assert.equal(updated.status, 200);
      assert.equal(meta(updated.body)['generation'], 2, 'a spec change bumps the generation');
      const stale = await call(server, 'PUT', `${VMS}/crud`, { ...changed, metadata: { ...meta(changed), resourceVersion: rv } });
      assertStatus(stale, 409, 'Conflict');
      assert.match(String(stale.body['message']), /^Operation cannot be fulfilled on virtualmachines\.kubevirt\.io "crud": the object has been modified/);

      const deleted = await call(server, 'DELETE', `${VMS}/crud`);
      assert.equal(deleted.status, 200);
      assert.equal(meta(deleted.body)['name'], 'crud');
      assertStatus(await call(server, 'GET', `${VMS}/crud`), 404, 'NotFound');
      assertStatus(await call(server, 'DELETE', `${VMS}/crud`), 404, 'NotFound');
    });

    it('needs the namespace to exist, and creates namespaces', async () => {
      const orphan = await call(server, 'POST', '/apis/kubevirt.io/v1/namespaces/team-a/virtualmachines', vm('x'));
      assertStatus(orphan, 404, 'NotFound');
      assert.equal(orphan.body['message'], 'namespaces "team-a" not found');
      const ns = await call(server, 'POST', '/api/v1/namespaces', { apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'team-a' } });
      assert.equal(ns.status, 201);
      assert.equal((ns.body['status'] as Obj)['phase'], 'Active');
      assert.equal((await call(server, 'POST', '/apis/kubevirt.io/v1/namespaces/team-a/virtualmachines', vm('x'))).status, 201);
      assert.equal((await call(server, 'DELETE', '/api/v1/namespaces/team-a')).status, 200);
      assertStatus(await call(server, 'GET', '/apis/kubevirt.io/v1/namespaces/team-a/virtualmachines/x'), 404, 'NotFound');
    });

    it('refuses malformed bodies (400) and invalid objects (422)', async () => {
      assertStatus(await call(server, 'POST', VMS, '{"kind": '), 400, 'BadRequest');
      assertStatus(await call(server, 'POST', VMS, { ...vm('k'), kind: 'VirtualMachineInstance' }), 400, 'BadRequest');
      assertStatus(await call(server, 'POST', VMS, { ...vm('k'), apiVersion: 'kubevirt.io/v2' }), 400, 'BadRequest');
      const renamed = await call(server, 'PUT', `${VMS}/other`, vm('k'));
      assertStatus(renamed, 400, 'BadRequest');
      assert.equal(renamed.body['message'], 'the name of the object (k) does not match the name on the URL (other)');

      const nameless = await call(server, 'POST', VMS, { ...vm('k'), metadata: {} });
      assertStatus(nameless, 422, 'Invalid');
      assert.deepEqual(((nameless.body['details'] as Obj)['causes'] as Obj[]).map((c) => c['field']), ['metadata.name']);
      const badSpec = await call(server, 'POST', VMS, { ...vm('k'), spec: 'big' });
      assertStatus(badSpec, 422, 'Invalid');
      assert.match(String(badSpec.body['message']), /^VirtualMachine\.kubevirt\.io "k" is invalid: spec: /);
      const badStrategy = await call(server, 'POST', VMS, vm('k', { runStrategy: 'Sometimes' }));
      assertStatus(badStrategy, 422, 'Invalid');
      assert.equal(((badStrategy.body['details'] as Obj)['causes'] as Obj[])[0]?.['field'], 'spec.runStrategy');
    });

    it('patches with JSON patch and merge patch', async () => {
      await call(server, 'POST', VMS, vm('patched'));
      const merged = await call(server, 'PATCH', `${VMS}/patched`, { metadata: { labels: { tier: 'web' } } }, 'application/merge-patch+json');
      assert.equal(merged.status, 200);
      assert.deepEqual(meta(merged.body)['labels'], { tier: 'web' });
      const strategic = await call(server, 'PATCH', `${VMS}/patched`, { metadata: { labels: { zone: 'a' } } }, 'application/strategic-merge-patch+json');
      assert.deepEqual(meta(strategic.body)['labels'], { tier: 'web', zone: 'a' });
      const json = await call(server, 'PATCH', `${VMS}/patched`, [{ op: 'replace', path: '/metadata/labels/tier', value: 'db' }, { op: 'remove', path: '/metadata/labels/zone' }], 'application/json-patch+json');
      assert.deepEqual(meta(json.body)['labels'], { tier: 'db' });
      assertStatus(await call(server, 'PATCH', `${VMS}/patched`, [{ op: 'test', path: '/metadata/labels/tier', value: 'web' }], 'application/json-patch+json'), 422, 'Invalid');
      assertStatus(await call(server, 'PATCH', `${VMS}/patched`, '[1]', 'application/merge-patch+json'), 400, 'BadRequest');
      assertStatus(await call(server, 'PATCH', `${VMS}/patched`, '{}', 'text/plain'), 415, 'UnsupportedMediaType');
      assertStatus(await call(server, 'PATCH', `${VMS}/absent`, {}, 'application/merge-patch+json'), 404, 'NotFound');
      const managers = (meta(json.body)['managedFields'] as Obj[]).map((e) => e['manager']);
      assert.deepEqual(managers, ['node'], "fetch's User-Agent names the manager");
    });

    it('keeps status apart: main-resource writes leave it, /status writes only change it', async () => {
      await call(server, 'POST', VMS, vm('status-vm'));
      const before = (await call(server, 'GET', `${VMS}/status-vm`)).body;
      const statusBefore = before['status'];
      assert.equal((statusBefore as Obj)['printableStatus'], 'Stopped', 'the controller wrote the status');
      const main = await call(server, 'PATCH', `${VMS}/status-vm`, { status: { printableStatus: 'Hacked' }, metadata: { labels: { a: 'b' } } }, 'application/merge-patch+json');
      assert.deepEqual(main.body['status'], statusBefore);
      assert.deepEqual(meta(main.body)['labels'], { a: 'b' });
      const sub = await call(server, 'PATCH', `${VMS}/status-vm/status`, { status: { printableStatus: 'Custom' }, spec: { runStrategy: 'Always' } }, 'application/merge-patch+json');
      assert.equal(sub.status, 200);
      assert.equal((sub.body['status'] as Obj)['printableStatus'], 'Custom');
      assert.equal((sub.body['spec'] as Obj)['runStrategy'], 'Halted', 'spec is not writable through /status');
      const put = await call(server, 'PUT', `${VMS}/status-vm/status`, { ...sub.body, status: { printableStatus: 'Put' } });
      assert.equal(put.status, 200, JSON.stringify(put.body));
      assert.deepEqual(put.body['status'], { printableStatus: 'Put' });
      assert.equal(meta(put.body)['generation'], meta(before)['generation'], 'status writes keep the generation');
    });

    it('lists with label and field selectors, per namespace and across namespaces', async () => {
      await call(server, 'POST', '/api/v1/namespaces', { metadata: { name: 'sel' } });
      const inSel = '/apis/kubevirt.io/v1/namespaces/sel/virtualmachines';
      await call(server, 'POST', inSel, vm('a', { labels: { tier: 'web', env: 'prod' } }));
      await call(server, 'POST', inSel, vm('b', { labels: { tier: 'db', env: 'prod' } }));
      await call(server, 'POST', inSel, vm('c', { labels: { env: 'dev' } }));
      const q = async (selector: string): Promise<string[]> => {
        const r = await call(server, 'GET', `${inSel}?labelSelector=${encodeURIComponent(selector)}`);
        assert.equal(r.status, 200, JSON.stringify(r.body));
        return names(r.body);
      };
      assert.deepEqual(await q('tier=web'), ['a']);
      assert.deepEqual(await q('tier==db'), ['b']);
      assert.deepEqual(await q('tier!=web'), ['b', 'c']);
      assert.deepEqual(await q('tier in (web, db),env=prod'), ['a', 'b']);
      assert.deepEqual(await q('tier notin (web)'), ['b', 'c']);
      assert.deepEqual(await q('tier'), ['a', 'b']);
      assert.deepEqual(await q('!tier'), ['c']);
      assertStatus(await call(server, 'GET', `${inSel}?labelSelector=${encodeURIComponent('tier in (web')}`), 400, 'BadRequest');

      const all = (await call(server, 'GET', `/apis/kubevirt.io/v1/virtualmachines?fieldSelector=${encodeURIComponent('metadata.namespace=sel,metadata.name!=b')}`)).body;
      assert.equal(all['kind'], 'VirtualMachineList');
      assert.deepEqual(names(all), ['a', 'c']);
      for (const item of all['items'] as Obj[]) {
        assert.equal(item['apiVersion'], 'kubevirt.io/v1');
        assert.equal(item['kind'], 'VirtualMachine');
      }
      assert.match(String(meta(all)['resourceVersion']), /^\d+$/);
      const page = (await call(server, 'GET', `${inSel}?limit=2`)).body;
      assert.deepEqual(names(page), ['a', 'b']);
      const rest = (await call(server, 'GET', `${inSel}?limit=2&continue=${encodeURIComponent(String(meta(page)['continue']))}`)).body;
      assert.deepEqual(names(rest), ['c']);
      assert.equal(meta(rest)['continue'], undefined);
    });

    it("answers kubectl's Table requests with KubeVirt's columns", async () => {
      const r = await call(server, 'GET', '/apis/kubevirt.io/v1/namespaces/sel/virtualmachines', undefined, 'application/json', { accept: 'application/json;as=Table;v=v1;g=meta.k8s.io,application/json' });
      assert.equal(r.body['kind'], 'Table');
      assert.deepEqual((r.body['columnDefinitions'] as Obj[]).map((c) => c['name']), ['Name', 'Age', 'Status', 'Ready']);
      assert.deepEqual((r.body['rows'] as Obj[]).map((row) => (row['cells'] as unknown[])[2]), ['Stopped', 'Stopped', 'Stopped']);
    });

    it('generates names from generateName and takes a resourceVersion in a patch as a precondition', async () => {
      const r = await call(server, 'POST', VMS, { ...vm(''), metadata: { generateName: 'gen-' } });
      assert.equal(r.status, 201);
      const name = String(meta(r.body)['name']);
      assert.match(name, /^gen-[a-z0-9]{5}$/);
      const stale = await call(server, 'PATCH', `${VMS}/${name}`, { metadata: { resourceVersion: '1', labels: { a: 'b' } } }, 'application/merge-patch+json');
      assertStatus(stale, 409, 'Conflict');
    });
  });

  describe('server-side apply', () => {
    const applied = (labels: Record<string, string>, runStrategy?: string): Obj => ({
      apiVersion: 'kubevirt.io/v1',
      kind: 'VirtualMachine',
      metadata: { name: 'ssa', labels },
      ...(runStrategy !== undefined ? { spec: { runStrategy, template: { spec: { domain: { devices: {} } } } } } : {}),
    });
    const apply = (body: Obj, query: string): Promise<Reply> => call(server, 'PATCH', `${VMS}/ssa?${query}`, body, 'application/apply-patch+yaml');

    it('creates, drops fields a manager stops applying, keeps what another manager owns', async () => {
      const first = await apply(applied({ a: '1', b: '2' }, 'Halted'), 'fieldManager=alice');
      assert.equal(first.status, 201);
      assert.deepEqual(meta(first.body)['labels'], { a: '1', b: '2' });
      const bob = await call(server, 'PATCH', `${VMS}/ssa?fieldManager=bob`, 'apiVersion: kubevirt.io/v1\nkind: VirtualMachine\nmetadata:\n  name: ssa\n  labels:\n    c: "3"\n', 'application/apply-patch+yaml');
      assert.equal(bob.status, 200, JSON.stringify(bob.body));
      const second = await apply(applied({ a: '1' }, 'Halted'), 'fieldManager=alice');
      assert.deepEqual(meta(second.body)['labels'], { a: '1', c: '3' }, "b goes with alice's intent, c stays with bob");
      const owners = (meta(second.body)['managedFields'] as Obj[]).map((e) => `${String(e['manager'])}:${String(e['operation'])}`).sort();
      assert.deepEqual(owners, ['alice:Apply', 'bob:Apply']);
    });

    it('refuses a conflicting apply without force and takes the field with force', async () => {
      const refused = await apply(applied({}, 'Always'), 'fieldManager=bob');
      assertStatus(refused, 409, 'Conflict');
      const causes = (refused.body['details'] as Obj)['causes'] as Obj[];
      assert.deepEqual(causes.map((c) => [c['reason'], c['field'], c['message']]), [['FieldManagerConflict', '.spec.runStrategy', 'conflict with "alice"']]);
      assert.match(String(refused.body['message']), /^Apply failed with 1 conflict: conflict with "alice"/);
      const forced = await apply(applied({}, 'Always'), 'fieldManager=bob&force=true');
      assert.equal(forced.status, 200);
      assert.equal((forced.body['spec'] as Obj)['runStrategy'], 'Always');
    });

    it('requires a field manager', async () => {
      const r = await apply(applied({}), '');
      assertStatus(r, 422, 'Invalid');
      assert.match(String(r.body['message']), /fieldManager: Required value/);
    });
  });

  describe('watch', () => {
    it('replays from a resourceVersion, then streams, with bookmarks', async () => {
      await call(server, 'POST', '/api/v1/namespaces', { metadata: { name: 'w' } });
      const base = '/apis/kubevirt.io/v1/namespaces/w/virtualmachines';
      const from = String(meta((await call(server, 'GET', base)).body)['resourceVersion']);
      await call(server, 'POST', base, vm('one'));
      await call(server, 'POST', base, vm('two', { labels: { keep: 'yes' } }));
      await call(server, 'PATCH', `${base}/one`, { metadata: { labels: { x: 'y' } } }, 'application/merge-patch+json');
      await call(server, 'DELETE', `${base}/one`);

      const stream = await WatchStream.open(server, `${base}?watch=true&resourceVersion=${from}&allowWatchBookmarks=true`);
      assert.equal(stream.status, 200);
      const replayed = await stream.until('BOOKMARK');
      const changes = summary(replayed.slice(0, -1)).filter((s) => !s.startsWith('MODIFIED'));
      assert.deepEqual(changes, ['ADDED one', 'ADDED two', 'DELETED one']);
      assert.ok(summary(replayed).includes('MODIFIED one'), 'the label change is replayed');
      const bookmark = replayed.at(-1)?.['object'] as Obj;
      assert.equal(bookmark['kind'], 'VirtualMachine');
      assert.ok(Number(meta(bookmark)['resourceVersion']) >= Number(from));

      await call(server, 'POST', base, vm('three'));
      const live = await stream.until('ADDED');
      assert.equal(summary(live).at(-1), 'ADDED three');
      assert.equal(meta((live.at(-1)?.['object'] ?? {}) as Obj)['resourceVersion'] !== undefined, true);
      const periodic = await stream.until('BOOKMARK');
      assert.equal(periodic.at(-1)?.['type'], 'BOOKMARK', 'bookmarks keep coming while nothing changes');
      stream.close();
    });

    it('starts an unversioned watch with the current objects, filtered by labels', async () => {
      const stream = await WatchStream.open(server, `/apis/kubevirt.io/v1/namespaces/w/virtualmachines?watch=1&labelSelector=keep%3Dyes&allowWatchBookmarks=true`);
      const initial = await stream.until('BOOKMARK');
      assert.deepEqual(summary(initial.slice(0, -1)), ['ADDED two']);
      // Leaving the selection is a DELETED event for this watch.
      await call(server, 'PATCH', '/apis/kubevirt.io/v1/namespaces/w/virtualmachines/two', { metadata: { labels: { keep: null } } }, 'application/merge-patch+json');
      const left = await stream.until('DELETED');
      assert.equal(summary(left).at(-1), 'DELETED two');
      stream.close();
      const one = await WatchStream.open(server, `/apis/kubevirt.io/v1/namespaces/w/virtualmachines/three?watch=true&allowWatchBookmarks=true`);
      assert.deepEqual(summary((await one.until('BOOKMARK')).slice(0, -1)), ['ADDED three'], "a watch on an object's URL sees only that object");
      one.close();
    });

    it('answers a watch from a version older than the history with an ERROR 410 Expired event', async () => {
      const small = new SimCluster({ watchHistory: 5 });
      const s = await startApiServer({ cluster: small, listen: '127.0.0.1:0' });
      try {
        for (let i = 0; i < 8; i++) await call(s, 'POST', '/api/v1/namespaces', { metadata: { name: `n${i}` } });
        const stream = await WatchStream.open(s, '/api/v1/namespaces?watch=true&resourceVersion=1');
        assert.equal(stream.status, 200);
        const event = await stream.next();
        assert.equal(event?.['type'], 'ERROR');
        const status = event?.['object'] as Obj;
        assert.equal(status['code'], 410);
        assert.equal(status['reason'], 'Expired');
        assert.match(String(status['message']), /^too old resource version: 1 \(\d+\)$/);
        assert.equal(await stream.next(), null, 'the stream ends after the error');
      } finally {
        await s.close();
      }
    });
  });

  describe('the simulated virt-controller behind the API', () => {
    const VMIS = '/apis/kubevirt.io/v1/namespaces/default/virtualmachineinstances';
    const conditions = async (name: string): Promise<string[]> =>
      ((((await call(server, 'GET', `${VMS}/${name}`)).body['status'] as Obj)['conditions'] ?? []) as Obj[]).map((c) => String(c['type']));

    it('starts a VMI for runStrategy Always and stages a non-live change with RestartRequired', async () => {
      assert.equal((await call(server, 'POST', VMS, vm('runner', { runStrategy: 'Always' }))).status, 201);
      const vmi = await call(server, 'GET', `${VMIS}/runner`);
      assert.equal(vmi.status, 200);
      assert.equal((vmi.body['status'] as Obj)['phase'], 'Running');
      assert.deepEqual(await conditions('runner'), []);
      await call(server, 'PATCH', `${VMS}/runner`, { spec: { template: { spec: { domain: { cpu: { cores: 2 } } } } } }, 'application/merge-patch+json');
      assert.ok((await conditions('runner')).includes('RestartRequired'));
    });

    it('restarts through the subresource, which clears the condition', async () => {
      const restart = await call(server, 'PUT', '/apis/subresources.kubevirt.io/v1/namespaces/default/virtualmachines/runner/restart');
      assert.equal(restart.status, 202);
      assert.deepEqual(await conditions('runner'), []);
      const vmi = (await call(server, 'GET', `${VMIS}/runner`)).body;
      assert.equal((((vmi['spec'] as Obj)['domain'] as Obj)['cpu'] as Obj)['cores'], 2, 'the new instance runs the new template');
      assertStatus(await call(server, 'PUT', '/apis/subresources.kubevirt.io/v1/namespaces/default/virtualmachines/runner/start', {}), 409, 'Conflict');
      assertStatus(await call(server, 'PUT', '/apis/subresources.kubevirt.io/v1/namespaces/default/virtualmachines/ghost/restart'), 404, 'NotFound');
      assertStatus(await call(server, 'POST', '/apis/subresources.kubevirt.io/v1/namespaces/default/virtualmachines/runner/restart'), 405, 'MethodNotAllowed');
    });

    it('stops by setting runStrategy Halted, and deleting the VM removes its VMI', async () => {
      assert.equal((await call(server, 'PUT', '/apis/subresources.kubevirt.io/v1/namespaces/default/virtualmachines/runner/stop')).status, 202);
      assert.equal(((await call(server, 'GET', `${VMS}/runner`)).body['spec'] as Obj)['runStrategy'], 'Halted');
      assertStatus(await call(server, 'GET', `${VMIS}/runner`), 404, 'NotFound');
      assert.equal((await call(server, 'PUT', '/apis/subresources.kubevirt.io/v1/namespaces/default/virtualmachines/runner/start')).status, 202);
      assert.equal((await call(server, 'GET', `${VMIS}/runner`)).status, 200);
      await call(server, 'DELETE', `${VMS}/runner`);
      assertStatus(await call(server, 'GET', `${VMIS}/runner`), 404, 'NotFound');
    });
  });

  describe('fault injection and admin endpoints', () => {
    it('fails every request with errorRate 1, but never the admin endpoints', async () => {
      const set = await call(server, 'POST', '/admin/faults', { errorRate: 1 });
      assert.equal(set.status, 200);
      const failed = await call(server, 'GET', VMS);
      assertStatus(failed, 500, 'InternalError');
      assert.deepEqual((await call(server, 'GET', '/admin/faults')).body, { errorRate: 1 });
      await call(server, 'POST', '/admin/faults', {});
      assert.equal((await call(server, 'GET', VMS)).status, 200);
      assertStatus(await call(server, 'POST', '/admin/faults', { errorRate: 2 }), 400, 'BadRequest');
    });

    it('fails the next n requests with 503, and writes with conflicts', async () => {
      server.setFaults({ failNext: 2, errorStatus: 503 });
      assertStatus(await call(server, 'GET', VMS), 503, 'ServiceUnavailable');
      assertStatus(await call(server, 'GET', VMS), 503, 'ServiceUnavailable');
      assert.equal((await call(server, 'GET', VMS)).status, 200);
      await call(server, 'POST', VMS, vm('contested'));
      server.setFaults({ conflictRate: 1 });
      assertStatus(await call(server, 'PATCH', `${VMS}/contested`, { metadata: { labels: { a: 'b' } } }, 'application/merge-patch+json'), 409, 'Conflict');
      assert.equal((await call(server, 'GET', `${VMS}/contested`)).status, 200, 'reads do not conflict');
    });

    it('delays requests by latencyMs', async () => {
      server.setFaults({ latencyMs: 400 });
      await assert.rejects(fetch(`${server.url}/version`, { signal: AbortSignal.timeout(40) }), /abort|timeout/i);
      server.setFaults({});
      assert.equal((await fetch(`${server.url}/version`)).status, 200);
    });

    it('ends watch streams after dropWatchesAfterMs', async () => {
      server.setFaults({ dropWatchesAfterMs: 50 });
      const stream = await WatchStream.open(server, `${VMS}?watch=true&resourceVersion=0`);
      let event: Obj | null;
      do event = await stream.next();
      while (event !== null);
      assert.equal((await call(server, 'GET', '/admin/stats')).body['openWatches'], 0);
    });

    it('counts requests by verb and resource', async () => {
      await call(server, 'POST', '/admin/stats/reset');
      await call(server, 'GET', VMS);
      await call(server, 'GET', `${VMS}/contested`);
      await call(server, 'PATCH', `${VMS}/contested`, { metadata: { labels: { n: '1' } } }, 'application/merge-patch+json');
      await call(server, 'GET', '/apis/kubevirt.io/v1');
      const stats = (await call(server, 'GET', '/admin/stats')).body;
      assert.equal(stats['reads'], 2);
      assert.equal(stats['writes'], 1);
      assert.equal(stats['discovery'], 1);
      assert.deepEqual((stats['byResource'] as Obj)['virtualmachines.kubevirt.io'], { list: 1, get: 1, patch: 1 });
    });
  });
});

describe('simulator API server state and vmroll sim', () => {
  let dir: string;
  before(() => {
    dir = mkdtempSync(path.join(tmpdir(), 'vmroll-sim-server-'));
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('saves the state file after writes and on close', async () => {
    const stateFile = path.join(dir, 'state.json');
    const server = await startApiServer({ cluster: new SimCluster({ stateFile }), listen: '127.0.0.1:0', saveDelayMs: 10_000 });
    await call(server, 'POST', VMS, vm('kept'));
    await server.close();
    assert.ok(existsSync(stateFile));
    const reloaded = new SimCluster({ stateFile });
    assert.ok(reloaded.store.get('VirtualMachine', 'default', 'kept'));
  });

  it('vmroll sim serves until SIGTERM and writes a kubeconfig', async function () {
    // Starting a node process (tsx compiles the CLI) takes seconds on a busy machine.
    this.timeout(120_000);
    const kubeconfig = path.join(dir, 'kubeconfig.yaml');
    const child: ChildProcess = spawn(process.execPath, [path.join(ROOT, 'bin', 'vmroll.js'), 'sim', '--listen', '127.0.0.1:0', '--kubeconfig-out', kubeconfig, '--log-level', 'silent'], {
      cwd: ROOT,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    try {
      let out = '';
      const url = await new Promise<string>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`vmroll sim did not start within 60 s: ${out}`)), 60_000);
        child.stdout?.on('data', (chunk: Buffer) => {
          out += chunk.toString();
          const match = /kubeconfig written/.test(out) ? /(http:\/\/127\.0\.0\.1:\d+)/.exec(out) : null;
          if (match?.[1] !== undefined) {
            clearTimeout(timer);
            resolve(match[1]);
          }
        });
        child.once('exit', (code) => reject(new Error(`vmroll sim exited with ${String(code)}: ${out}`)));
      });
      const config = parseYaml(readFileSync(kubeconfig, 'utf8')) as Obj;
      assert.equal(config['current-context'], 'vmroll-sim');
      const cluster = ((config['clusters'] as Obj[])[0]?.['cluster'] ?? {}) as Obj;
      assert.equal(cluster['server'], url);
      assert.equal(cluster['insecure-skip-tls-verify'], true);
      const version = (await (await fetch(`${url}/version`)).json()) as Obj;
      assert.match(String(version['gitVersion']), /^v1\./);
      const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
      child.kill('SIGTERM');
      assert.equal(await exited, 0);
    } finally {
      if (child.exitCode === null) child.kill('SIGKILL');
    }
  });
});
