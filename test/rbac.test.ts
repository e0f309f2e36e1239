/**
 * The RBAC rules in deploy/base are exactly what vmroll needs: a full cycle of the kube backend
 * and leader election against the simulator's API server over HTTP (create, update, prune,
 * restart/stop/start, a conflict and its fresh read, a lease acquired, renewed and released),
 * every request recorded, and each request checked against the ClusterRole and the leases
 * Role the manifests bind to vmroll's ServiceAccount. Every request must be allowed, and every
 * verb the roles grant on every resource must have been used by some request. Then `vmroll run`
 * itself, as a process started with the Deployment's arguments over the ConfigMap's and the
 * Secret's files, must make only allowed requests too.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { parse, parseAllDocuments, stringify } from 'yaml';
import { ClusterError } from '../reconciler/cluster/backend.ts';
import { metaOf } from '../reconciler/cluster/object.ts';
import { KubeCluster, loadKubeConfig } from '../reconciler/cluster/kube.ts';
import { DEFAULT_LEASE_NAME, LeaderElector } from '../reconciler/cluster/leaderElection.ts';
import { type ApiRequestInfo, type ApiServer, startApiServer } from '../reconciler/cluster/sim/apiServer.ts';
import { SimCluster } from '../reconciler/cluster/sim/simCluster.ts';
import { makeLogger } from '../reconciler/commands/run.ts';
import { simKubeconfig } from '../reconciler/commands/sim.ts';
import { Reconciler } from '../reconciler/controller/reconcile.ts';
import type { Obj } from '../reconciler/rollout/index.ts';
import { GitSource } from '../reconciler/source/gitSource.ts';
import { ROOT } from './helpers/cases.ts';
import { type GitServer, startGitServer } from './helpers/gitServer.ts';
import { until } from './helpers/waitFor.ts';

const BASE = path.join(ROOT, 'deploy', 'base');
const EXAMPLE = path.join(ROOT, 'fixtures', 'example-repo', 'vms');
const KUBEVIRT = path.join(ROOT, 'fixtures', 'example-cluster', 'kubevirt.yaml');

// ---------------------------------------------------------------------------------------------
// A small RBAC authorizer, after Kubernetes' documented rule semantics.

/** One rule of a Role or ClusterRole. */
interface PolicyRule {
  apiGroups: string[];
  resources: string[];
  verbs: string[];
  resourceNames: string[];
  nonResourceURLs: string[];
}

/** Rules granted to a subject, and where they apply (undefined: every namespace). */
interface Grant {
  source: string;
  namespace: string | undefined;
  rules: PolicyRule[];
}

/** What the authorizer is asked: one verb on one resource (or a non-resource path). */
interface Attributes {
  resourceRequest: boolean;
  verb: string;
  group: string;
  resource: string;
  subresource: string | undefined;
  namespace: string | undefined;
  name: string | undefined;
  path: string;
}

const strings = (v: unknown): string[] => (Array.isArray(v) ? v.filter((x): x is string => typeof x === 'string') : []);

function toRule(r: unknown): PolicyRule {
  const o = (r ?? {}) as Obj;
  return { apiGroups: strings(o['apiGroups']), resources: strings(o['resources']), verbs: strings(o['verbs']), resourceNames: strings(o['resourceNames']), nonResourceURLs: strings(o['nonResourceURLs']) };
}

/** Whether one rule allows the request: verb, group, `resource` or `resource/subresource`, name. */
function ruleAllows(rule: PolicyRule, a: Attributes): boolean {
  if (!rule.verbs.includes(a.verb) && !rule.verbs.includes('*')) return false;
  if (!a.resourceRequest) return rule.nonResourceURLs.some((u) => u === a.path || u === '*' || (u.endsWith('*') && a.path.startsWith(u.slice(0, -1))));
  if (!rule.apiGroups.includes(a.group) && !rule.apiGroups.includes('*')) return false;
  const combined = a.subresource === undefined ? a.resource : `${a.resource}/${a.subresource}`;
  const resourceOk = rule.resources.some(
    (r) => r === '*' || r === combined || (a.subresource !== undefined && (r === `${a.resource}/*` || r === `*/${a.subresource}`)),
  );
  if (!resourceOk) return false;
  // A rule naming objects matches only requests for one of them: never a create, list or collection watch.
  return rule.resourceNames.length === 0 || (a.name !== undefined && rule.resourceNames.includes(a.name));
}

/** Whether any grant allows the request; a namespaced grant only inside its namespace. */
function allowed(grants: readonly Grant[], a: Attributes): boolean {
  return grants.some((g) => (g.namespace === undefined || g.namespace === a.namespace) && g.rules.some((r) => ruleAllows(r, a)));
}

/**
 * The checks RBAC makes for one recorded request. Server-side apply is a patch, and when it
 * creates the object (201) the API server also checks create.
 */
function checksFor(info: ApiRequestInfo): Attributes[] {
  const base: Attributes = {
    resourceRequest: info.resourceRequest,
    verb: info.verb,
    group: info.group,
    resource: info.resource,
    subresource: info.subresource,
    namespace: info.namespace,
    name: info.name,
    path: info.path,
  };
  if (info.verb !== 'apply') return [base];
  return info.code === 201 ? [{ ...base, verb: 'patch' }, { ...base, verb: 'create', name: undefined }] : [{ ...base, verb: 'patch' }];
}

/**
 * Kubernetes binds the default ClusterRoles system:discovery and system:public-info-viewer
 * to every authenticated user: these non-resource paths need nothing from vmroll's roles.
 */
const DEFAULT_NON_RESOURCE_GRANT: Grant = {
  source: 'system:discovery (Kubernetes default)',
  namespace: undefined,
  rules: [toRule({ verbs: ['get'], nonResourceURLs: ['/api', '/api/*', '/apis', '/apis/*', '/healthz', '/livez', '/readyz', '/version', '/version/', '/openapi', '/openapi/*'] })],
};

/** Every object of every YAML file in a folder. */
function loadObjects(dir: string): Obj[] {
  const out: Obj[] = [];
  for (const f of readdirSync(dir).filter((x) => x.endsWith('.yaml')).sort()) {
    for (const doc of parseAllDocuments(readFileSync(path.join(dir, f), 'utf8'))) {
      const o = doc.toJS() as unknown;
      if (typeof o === 'object' && o !== null) out.push(o as Obj);
    }
  }
  return out;
}

/** The rules the manifests give a ServiceAccount, following its ClusterRoleBindings and RoleBindings. */
function grantsOf(objects: readonly Obj[], account: { namespace: string; name: string }): Grant[] {
  const grants: Grant[] = [];
  const find = (kind: string, name: string, namespace?: string): Obj | undefined =>
    objects.find((o) => o['kind'] === kind && metaOf(o)['name'] === name && (namespace === undefined || metaOf(o)['namespace'] === namespace));
  for (const binding of objects.filter((o) => o['kind'] === 'ClusterRoleBinding' || o['kind'] === 'RoleBinding')) {
    const subjects = (binding['subjects'] ?? []) as Obj[];
    const bindingNs = metaOf(binding)['namespace'] as string | undefined;
    const mine = subjects.some((s) => s['kind'] === 'ServiceAccount' && s['name'] === account.name && (s['namespace'] ?? bindingNs) === account.namespace);
    if (!mine) continue;
    const ref = (binding['roleRef'] ?? {}) as Obj;
    const roleName = String(ref['name'] ?? '');
    const role = ref['kind'] === 'ClusterRole' ? find('ClusterRole', roleName) : find('Role', roleName, bindingNs);
    assert.ok(role !== undefined, `${String(binding['kind'])} ${String(metaOf(binding)['name'])} refers to ${String(ref['kind'])} ${roleName}, which the manifests do not define`);
    grants.push({
      source: `${String(role['kind'])} ${roleName}`,
      // A ClusterRoleBinding grants everywhere; any RoleBinding only in its own namespace.
      namespace: binding['kind'] === 'ClusterRoleBinding' ? undefined : bindingNs,
      rules: ((role['rules'] ?? []) as unknown[]).map(toRule),
    });
  }
  return grants;
}

function describeRequest(a: Attributes): string {
  if (!a.resourceRequest) return `${a.verb} ${a.path}`;
  const res = `${a.subresource === undefined ? a.resource : `${a.resource}/${a.subresource}`}${a.group === '' ? '' : `.${a.group}`}`;
  return `${a.verb} ${res}${a.namespace !== undefined ? ` in ${a.namespace}` : ' (all namespaces)'}${a.name !== undefined ? ` name ${a.name}` : ''}`;
}

// ---------------------------------------------------------------------------------------------

describe('RBAC authorizer used by these tests', () => {
  const grants: Grant[] = [
    { source: 'cluster', namespace: undefined, rules: [toRule({ apiGroups: ['kubevirt.io'], resources: ['virtualmachines'], verbs: ['get', 'patch'] })] },
    {
      source: 'ns',
      namespace: 'team',
      rules: [
        toRule({ apiGroups: ['coordination.k8s.io'], resources: ['leases'], resourceNames: ['vmroll'], verbs: ['get', 'update'] }),
        toRule({ apiGroups: ['subresources.kubevirt.io'], resources: ['virtualmachines/restart'], verbs: ['update'] }),
      ],
    },
  ];
  const req = (over: Partial<Attributes>): Attributes => ({ resourceRequest: true, verb: 'get', group: 'kubevirt.io', resource: 'virtualmachines', subresource: undefined, namespace: 'a', name: 'x', path: '/x', ...over });
  const cases: Array<[string, Partial<Attributes>, boolean]> = [
    ['granted verb on the granted resource, any namespace', { namespace: 'elsewhere' }, true],
    ['a verb not granted', { verb: 'delete' }, false],
    ['same resource name in another group', { group: 'apps' }, false],
    ['a subresource is not its resource', { subresource: 'status', verb: 'patch' }, false],
    ['resource/subresource as a resource', { group: 'subresources.kubevirt.io', subresource: 'restart', verb: 'update', namespace: 'team' }, true],
    ['another subresource of the same resource', { group: 'subresources.kubevirt.io', subresource: 'stop', verb: 'update', namespace: 'team' }, false],
    ['a namespaced grant outside its namespace', { group: 'coordination.k8s.io', resource: 'leases', name: 'vmroll', namespace: 'other' }, false],
    ['a named object in resourceNames', { group: 'coordination.k8s.io', resource: 'leases', name: 'vmroll', namespace: 'team' }, true],
    ['an object not in resourceNames', { group: 'coordination.k8s.io', resource: 'leases', name: 'other', namespace: 'team' }, false],
    ['a request without a name against resourceNames', { group: 'coordination.k8s.io', resource: 'leases', name: undefined, namespace: 'team', verb: 'update' }, false],
  ];
  for (const [title, over, expected] of cases) {
    it(`${expected ? 'allows' : 'denies'}: ${title}`, () => assert.equal(allowed(grants, req(over)), expected));
  }

  it('turns an apply that created its object into patch and create, and a later apply into patch only', () => {
    const info: ApiRequestInfo = { resourceRequest: true, verb: 'apply', path: '/p', group: 'kubevirt.io', version: 'v1', resource: 'virtualmachines', subresource: undefined, namespace: 'a', name: 'x', code: 201 };
    assert.deepEqual(checksFor(info).map((a) => a.verb), ['patch', 'create']);
    assert.deepEqual(checksFor({ ...info, code: 200 }).map((a) => a.verb), ['patch']);
  });
});

describe('deploy/base RBAC against every request of a full vmroll cycle', function () {
  this.timeout(120_000);
  let git: GitServer;
  let server: ApiServer;
  let sim: SimCluster;
  let dir: string;
  const recorded: ApiRequestInfo[] = [];
  let recording = false;

  const objects = loadObjects(BASE);
  const account = objects.find((o) => o['kind'] === 'ServiceAccount');
  const deployment = objects.find((o) => o['kind'] === 'Deployment');
  const vmrollNamespace = String(metaOf(account ?? {})['namespace'] ?? '');

  before(async () => {
    git = await startGitServer();
    dir = mkdtempSync(path.join(tmpdir(), 'vmroll-rbac-'));
    sim = new SimCluster({ kubevirt: parse(readFileSync(KUBEVIRT, 'utf8')) as Obj });
    server = await startApiServer({
      cluster: sim,
      listen: '127.0.0.1:0',
      bookmarkIntervalMs: 100,
      onRequest: (info) => {
        if (recording) recorded.push(info);
      },
    });
    // The cluster as an administrator prepared it, before vmroll runs: not vmroll's requests.
    for (const ns of ['shop', 'jobs', vmrollNamespace]) {
      const res = await fetch(`${server.url}/api/v1/namespaces`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: ns } }) });
      assert.equal(res.status, 201);
    }
  });
  after(async () => {
    await server?.close();
    await git?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it('the manifests bind the roles to the ServiceAccount the Deployment runs as', () => {
    assert.ok(account !== undefined && deployment !== undefined);
    const pod = ((((deployment['spec'] ?? {}) as Obj)['template'] ?? {}) as Obj)['spec'] as Obj;
    assert.equal(pod['serviceAccountName'], metaOf(account)['name']);
    assert.equal(metaOf(deployment)['namespace'], vmrollNamespace);
    const grants = grantsOf(objects, { namespace: vmrollNamespace, name: String(metaOf(account)['name']) });
    assert.deepEqual(grants.map((g) => [g.source, g.namespace ?? '*']).sort(), [
      ['ClusterRole vmroll', '*'],
      ['Role vmroll-leader-election', vmrollNamespace],
    ]);
  });

  it('allows every request and grants nothing unused', async () => {
    const repo = await git.createBareRepo('fleet');
    const work = await git.createWorkingClone('fleet');
    const manifest = (f: string): string => readFileSync(path.join(EXAMPLE, f), 'utf8');
    for (const f of ['web.yaml', 'db.yaml', 'batch.yaml']) await work.write(`vms/${f}`, manifest(f));
    await work.commit('three VMs');
    await work.push();

    const kcFile = path.join(dir, 'kubeconfig');
    writeFileSync(kcFile, simKubeconfig(server.url));
    // One loaded kubeconfig for both clients, as `vmroll run` shares it.
    const kc = loadKubeConfig({ file: kcFile });
    const kube = new KubeCluster({ kubeconfig: kc, retry: { attempts: 2, baseMs: 1, capMs: 5 }, requestTimeoutMs: 30_000, informer: { retryMs: 10 } });
    const reconciler = new Reconciler({
      source: new GitSource({ repo, cacheDir: path.join(dir, 'cache') }),
      repoLabel: repo,
      ref: 'main',
      path: 'vms',
      cluster: kube,
      prune: true,
      logger: makeLogger('silent', []),
      // An upper bound only: the sync reports once the watch shows its writes.
      settleTimeoutMs: 30_000,
    });
    const elector = new LeaderElector({ kubeconfig: kc, namespace: vmrollNamespace, identity: 'vmroll-0', leaseDurationMs: 3000, renewDeadlineMs: 2000, retryPeriodMs: 30 });
    const seen = (verb: string, resource: string): boolean => recorded.some((r) => r.verb === verb && r.resource === resource && r.code < 300);
    recording = true;
    try {
      // Leader election: get (none yet), create; then get + update to renew.
      elector.start();
      await until('the lease to be renewed', () => elector.isLeader() && seen('update', 'leases'));

      // Create three VMs.
      const first = await reconciler.reconcile();
      assert.deepEqual(first.plan.vms.map((v) => `${v.namespace}/${v.name}:${v.action}`), ['jobs/batch:create', 'shop/db:create', 'shop/web:create']);
      assert.deepEqual(first.plan.errors, []);

      // Update one, prune another.
      await work.write('vms/db.yaml', manifest('db.yaml').replace('sockets: 4', 'sockets: 6'));
      await work.remove('vms/batch.yaml');
      await work.commit('db: 6 sockets; batch gone');
      await work.push();
      const second = await reconciler.reconcile();
      assert.deepEqual(second.plan.errors, []);
      assert.equal(second.summary.deleted, 1);
      assert.equal(sim.store.get('VirtualMachine', 'jobs', 'batch'), undefined, 'pruned');

      // KubeVirt's actions.
      const web = { namespace: 'shop', name: 'web' };
      await until('web to run', () => sim.store.get('VirtualMachineInstance', 'shop', 'web') !== undefined);
      await kube.restartVirtualMachine(web);
      await until('web to run again', () => sim.store.get('VirtualMachineInstance', 'shop', 'web') !== undefined);
      await kube.stopVirtualMachine(web);
      await until('web to stop', () => sim.store.get('VirtualMachineInstance', 'shop', 'web') === undefined);
      await kube.startVirtualMachine(web);

      // A conflict on apply is followed by a fresh read of the VM before the retry.
      server.setFaults({ conflictRate: 1 });
      const live = sim.store.get('VirtualMachine', 'shop', 'db') as Obj;
      await assert.rejects(kube.applyVirtualMachine(live), (e: unknown) => e instanceof ClusterError && e.code === 'Conflict');
      server.setFaults({});

      // Hand the lease over: get + update.
      await elector.release();
    } finally {
      reconciler.close();
      kube.close();
      await elector.stop();
    }
    // Watches are reported when they end; end them all.
    await server.close();
    recording = false;

    const grants = [...grantsOf(objects, { namespace: vmrollNamespace, name: String(metaOf(account ?? {})['name']) }), DEFAULT_NON_RESOURCE_GRANT];
    const checks = recorded.flatMap(checksFor);
    const denied = [...new Set(checks.filter((a) => !allowed(grants, a)).map(describeRequest))];
    assert.deepEqual(denied, [], `requests the roles do not allow:\n  ${denied.join('\n  ')}`);

    // Every verb on every resource a rule grants was needed by some request. `get` next to a
    // used `list` on the same resource counts as used: it shows nothing the list does not.
    const unused: string[] = [];
    for (const g of grants.filter((x) => x !== DEFAULT_NON_RESOURCE_GRANT)) {
      for (const rule of g.rules) {
        for (const group of rule.apiGroups) {
          for (const resource of rule.resources) {
            for (const verb of rule.verbs) {
              const usedVerb = (v: string): boolean =>
                checks.some((a) => a.resourceRequest && a.verb === v && a.group === group && (a.subresource === undefined ? a.resource : `${a.resource}/${a.subresource}`) === resource && ruleAllows(rule, a));
              const used = usedVerb(verb) || (verb === 'get' && rule.verbs.includes('list') && usedVerb('list'));
              if (!used) unused.push(`${g.source}: ${verb} ${resource}.${group}${rule.resourceNames.length > 0 ? ` [${rule.resourceNames.join(', ')}]` : ''}`);
            }
          }
        }
      }
    }
    assert.deepEqual(unused, [], `granted but never used:\n  ${unused.join('\n  ')}`);

    // The cycle really went through the paths that need the rarer grants.
    const did = (verb: string, resource: string, code?: number): boolean => recorded.some((r) => r.verb === verb && `${r.resource}${r.subresource === undefined ? '' : `/${r.subresource}`}` === resource && (code === undefined || r.code === code));
    assert.ok(did('apply', 'virtualmachines', 201), 'an apply created a VM');
    assert.ok(did('apply', 'virtualmachines', 200), 'an apply updated a VM');
    assert.ok(did('apply', 'virtualmachines', 409), 'an apply met a conflict');
    assert.ok(did('get', 'leases', 404), 'the first lease read found none');
  });
});

/**
 * The pod's files as the kubelet would lay them out, in a local folder: ConfigMap keys and
 * Secret items as files, emptyDirs empty. Returns mount path → local folder.
 */
function podFiles(objects: readonly Obj[], container: Obj, pod: Obj, dir: string, edit: { config: (key: string, text: string) => string; secrets: Record<string, string> }): Map<string, string> {
  const mounts = new Map<string, string>();
  const volumes = (pod['volumes'] ?? []) as Obj[];
  for (const mount of (container['volumeMounts'] ?? []) as Obj[]) {
    const local = path.join(dir, 'pod', String(mount['name']));
    mkdirSync(local, { recursive: true });
    mounts.set(String(mount['mountPath']), local);
    const volume = volumes.find((v) => v['name'] === mount['name']) ?? {};
    const configMap = volume['configMap'] as Obj | undefined;
    const secret = volume['secret'] as Obj | undefined;
    if (configMap !== undefined) {
      const source = objects.find((o) => o['kind'] === 'ConfigMap' && metaOf(o)['name'] === configMap['name']);
      for (const [key, text] of Object.entries((source?.['data'] ?? {}) as Record<string, string>)) writeFileSync(path.join(local, key), edit.config(key, text));
    } else if (secret !== undefined) {
      for (const item of (secret['items'] ?? []) as Obj[]) writeFileSync(path.join(local, String(item['path'])), edit.secrets[String(item['key'])] ?? '');
    }
  }
  return mounts;
}

describe('deploy/base RBAC against `vmroll run` started with the Deployment\'s own arguments', function () {
  // A vmroll process starts, syncs and stops: slow on a busy machine.
  this.timeout(180_000);
  let git: GitServer;
  let dir: string;

  before(async () => {
    git = await startGitServer();
    dir = mkdtempSync(path.join(tmpdir(), 'vmroll-rbac-pod-'));
  });
  after(async () => {
    await git?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it('reads its ConfigMap and Secret files, wins the Lease, applies, gets ready, and makes only allowed requests', async () => {
    const objects = loadObjects(BASE);
    const deployment = objects.find((o) => o['kind'] === 'Deployment') ?? {};
    const pod = ((((deployment['spec'] ?? {}) as Obj)['template'] ?? {}) as Obj)['spec'] as Obj;
    const container = ((pod['containers'] ?? []) as Obj[])[0] ?? {};
    const namespace = String(metaOf(deployment)['namespace']);
    const webhookSecret = 'webhook-secret-of-the-test';

    const recorded: ApiRequestInfo[] = [];
    let recording = false;
    const sim = new SimCluster({ kubevirt: parse(readFileSync(KUBEVIRT, 'utf8')) as Obj });
    const server = await startApiServer({ cluster: sim, listen: '127.0.0.1:0', bookmarkIntervalMs: 100, onRequest: (info) => recording && recorded.push(info) });
    try {
      for (const ns of ['shop', 'jobs', namespace]) sim.createObject({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: ns } });
      const repo = await git.createBareRepo('fleet');
      const work = await git.createWorkingClone('fleet');
      for (const f of ['web.yaml', 'db.yaml', 'batch.yaml']) await work.write(`vms/${f}`, readFileSync(path.join(EXAMPLE, f), 'utf8'));
      await work.commit('three VMs');
      await work.push();

      // The ConfigMap as shipped, but pointing at the test's repository; tokens as the Secret holds them.
      const mounts = podFiles(objects, container, pod, dir, {
        config: (_key, text) => stringify({ ...(parse(text) as Obj), repo }),
        secrets: { 'git-token': '', 'webhook-secret': webhookSecret, 'github-token': '' },
      });
      const local = (arg: string): string => {
        for (const [mountPath, folder] of [...mounts].sort((a, b) => b[0].length - a[0].length)) {
          const at = arg.indexOf(`=${mountPath}`);
          if (at >= 0) return `${arg.slice(0, at + 1)}${folder}${arg.slice(at + 1 + mountPath.length)}`;
        }
        return arg;
      };
      const args = ((container['args'] ?? []) as string[]).map((a) => (a.startsWith('--listen=') ? '--listen=127.0.0.1:0' : local(a)));
      // In a pod, the namespace comes from the service account's files, and the API server from its environment.
      args.push(`--leader-election-namespace=${namespace}`);
      const kubeconfig = path.join(dir, 'kubeconfig');
      writeFileSync(kubeconfig, simKubeconfig(server.url));
      const tmp = mounts.get('/tmp') ?? '';
      assert.notEqual(tmp, '', 'the pod has a /tmp volume');

      recording = true;
      const child = spawn(process.execPath, [path.join(ROOT, 'bin', 'vmroll.js'), ...args], {
        cwd: ROOT,
        env: { PATH: process.env['PATH'] ?? '', KUBECONFIG: kubeconfig, TMPDIR: tmp },
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      let logs = '';
      child.stdout.on('data', (d: Buffer) => (logs += d.toString()));
      child.stderr.on('data', (d: Buffer) => (logs += d.toString()));
      const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
      try {
        const watching = { timeoutMs: 60_000, everyMs: 25, failIf: () => (child.exitCode !== null ? `vmroll exited ${child.exitCode}` : undefined), detail: () => `vmroll said:\n${logs}` };
        let port = 0;
        await until('vmroll to listen', () => {
          port = Number(/"address":"[^"]*:(\d+)","msg":"listening"/.exec(logs)?.[1] ?? 0);
          return port > 0;
        }, watching);
        await until('the three VMs', () => sim.store.list('VirtualMachine').length === 3, watching);
        await until('/readyz', async () => (await fetch(`http://127.0.0.1:${port}/readyz`).catch(() => null))?.status === 200, watching);
        const lease = sim.store.get('Lease', namespace, DEFAULT_LEASE_NAME);
        assert.ok(typeof ((lease?.['spec'] ?? {}) as Obj)['holderIdentity'] === 'string', `the Lease ${namespace}/${DEFAULT_LEASE_NAME} is held`);
      } finally {
        child.kill('SIGTERM');
      }
      assert.equal(await exited, 0, logs);
      assert.ok(!logs.includes(webhookSecret), 'the webhook secret stays out of the logs');
      assert.equal(((sim.store.get('Lease', namespace, DEFAULT_LEASE_NAME)?.['spec'] ?? {}) as Obj)['holderIdentity'], undefined, 'the Lease was handed back on SIGTERM');
    } finally {
      await server.close();
      recording = false;
    }

    const account = objects.find((o) => o['kind'] === 'ServiceAccount') ?? {};
    const grants = [...grantsOf(objects, { namespace, name: String(metaOf(account)['name']) }), DEFAULT_NON_RESOURCE_GRANT];
    assert.ok(recorded.some((r) => r.resource === 'leases' && r.verb === 'create') && recorded.some((r) => r.verb === 'apply' && r.code === 201), 'the run acquired a lease and created VMs');
    const denied = [...new Set(recorded.flatMap(checksFor).filter((a) => !allowed(grants, a)).map(describeRequest))];
    assert.deepEqual(denied, [], `requests the roles do not allow:\n  ${denied.join('\n  ')}`);
  });
});
