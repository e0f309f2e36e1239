/**
 * deploy/base's RBAC against Kubernetes' own RBAC authorizer: the ServiceAccount, ClusterRole,
 * Role and bindings applied to a real kube-apiserver, a token from the TokenRequest API, and a
 * full cycle of the kube backend and leader election as that ServiceAccount. The server's audit
 * log (every request with the authorizer's decision) must show every request allowed and every
 * granted verb used. Not part of `npm test` (it builds Go): `npm run test:conformance`.
 */
import assert from 'node:assert/strict';
import { CoreV1Api, KubeConfig, KubernetesObjectApi, type KubernetesObject } from '@kubernetes/client-node';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { parse, stringify } from 'yaml';
import { ClusterError } from '../../reconciler/cluster/backend.ts';
import { KubeCluster } from '../../reconciler/cluster/kube.ts';
import { DEFAULT_LEASE_NAME, LeaderElector } from '../../reconciler/cluster/leaderElection.ts';
import type { Obj } from '../../reconciler/rollout/index.ts';
import { ROOT } from '../helpers/cases.ts';
import { BUILD_TIMEOUT_MS, type RealApiServer, START_TIMEOUT_MS, startRealApiServer } from '../helpers/realApiServer.ts';
import { until } from '../helpers/waitFor.ts';

const BASE = path.join(ROOT, 'deploy', 'base');
const WEB = parse(readFileSync(path.join(ROOT, 'fixtures', 'example-repo', 'vms', 'web.yaml'), 'utf8')) as Obj;
const NAMESPACE = 'vmroll-system';
const USER = `system:serviceaccount:${NAMESPACE}:vmroll`;

/** The fields of an audit.k8s.io/v1 Event the test reads. */
interface AuditEvent {
  stage: string;
  verb: string;
  user: { username: string };
  objectRef?: { apiGroup?: string; resource?: string; subresource?: string; name?: string; namespace?: string };
  responseStatus?: { code?: number };
  annotations?: Record<string, string>;
}

/** One rule of the roles, flattened. */
interface Rule {
  source: string;
  group: string;
  resource: string;
  verb: string;
  resourceNames: string[];
}

function rulesOf(file: string): Rule[] {
  const role = parse(readFileSync(path.join(BASE, file), 'utf8')) as { kind: string; rules: Array<{ apiGroups: string[]; resources: string[]; verbs: string[]; resourceNames?: string[] }> };
  return role.rules.flatMap((r) =>
    r.apiGroups.flatMap((group) => r.resources.flatMap((resource) => r.verbs.map((verb) => ({ source: `${role.kind} ${file}`, group, resource, verb, resourceNames: r.resourceNames ?? [] })))),
  );
}

describe('deploy/base RBAC against the real RBAC authorizer', function () {
  this.timeout(120_000);
  let server: RealApiServer;
  let dir: string;

  before(async function () {
    this.timeout(BUILD_TIMEOUT_MS + START_TIMEOUT_MS + 60_000);
    dir = mkdtempSync(path.join(tmpdir(), 'vmroll-rbac-real-'));
    const policy = path.join(dir, 'audit-policy.yaml');
    // Metadata level: who, what, the authorizer's decision and the response code, no bodies.
    writeFileSync(policy, stringify({ apiVersion: 'audit.k8s.io/v1', kind: 'Policy', omitStages: ['RequestReceived'], rules: [{ level: 'Metadata' }] }));
    server = await startRealApiServer({ apiserverArgs: [`--audit-policy-file=${policy}`, `--audit-log-path=${path.join(dir, 'audit.log')}`] });
  });

  after(async () => {
    await server?.stop();
    if (dir !== undefined) rmSync(dir, { recursive: true, force: true });
  });

  it('allows every request of a full cycle as the ServiceAccount, and every granted verb is used', async () => {
    const admin = new KubeConfig();
    admin.loadFromFile(server.kubeconfig);
    const objects = admin.makeApiClient(KubernetesObjectApi);
    for (const file of ['namespace.yaml', 'serviceaccount.yaml', 'clusterrole.yaml', 'clusterrolebinding.yaml', 'role.yaml', 'rolebinding.yaml']) {
      await objects.create(parse(readFileSync(path.join(BASE, file), 'utf8')) as KubernetesObject);
    }
    const core = admin.makeApiClient(CoreV1Api);
    await core.createNamespace({ body: { metadata: { name: 'shop' } } });
    // A bound token for the ServiceAccount, as the kubelet would mount it.
    const request = await core.createNamespacedServiceAccountToken({ namespace: NAMESPACE, name: 'vmroll', body: { spec: { audiences: [], expirationSeconds: 3600 } } });
    const token = request.status?.token ?? '';
    assert.ok(token.length > 0);
    const config = parse(readFileSync(server.kubeconfig, 'utf8')) as { users: Array<{ user: Obj }> };
    for (const u of config.users) u.user = { token };
    const kubeconfig = path.join(dir, 'sa-kubeconfig');
    writeFileSync(kubeconfig, stringify(config), { mode: 0o600 });

    // The cycle: read everything (informers list and watch), create, change, restart, stop,
    // start, delete; a lease acquired, renewed and handed back.
    const k = new KubeCluster({ kubeconfig: { file: kubeconfig }, retry: { attempts: 2, baseMs: 20, capMs: 50 }, informer: { retryMs: 50 } });
    const elector = new LeaderElector({ kubeconfig: { file: kubeconfig }, namespace: NAMESPACE, identity: 'replica-a', leaseDurationMs: 15_000, renewDeadlineMs: 10_000, retryPeriodMs: 500 });
    try {
      await Promise.all([k.listVirtualMachines(), k.listBaselines(), k.listInstancetypes(), k.getKubeVirt()]);
      const web = structuredClone(WEB);
      await k.applyVirtualMachine(web);
      (((((web['spec'] as Obj)['template'] as Obj)['spec'] as Obj)['domain'] as Obj)['cpu'] as Obj)['sockets'] = 4;
      await k.applyVirtualMachine(web);
      // No virt-api serves subresources.kubevirt.io here: the authorizer answers first, then 404.
      const ref = { namespace: 'shop', name: 'web' };
      for (const call of [() => k.restartVirtualMachine(ref), () => k.stopVirtualMachine(ref), () => k.startVirtualMachine(ref)]) {
        await assert.rejects(call(), (e: unknown) => e instanceof ClusterError && e.code === 'NotFound');
      }
      await k.deleteVirtualMachine({ namespace: 'shop', name: 'web' });
      elector.start();
      await until('the lease won', () => elector.isLeader());
      const leases = () => events().filter((e) => e.objectRef?.resource === 'leases' && e.verb === 'update');
      await until('a renewal', () => leases().length >= 1);
      await elector.release();
    } finally {
      k.close();
      await elector.stop();
    }

    function events(): AuditEvent[] {
      return readFileSync(path.join(dir, 'audit.log'), 'utf8')
        .split('\n')
        .filter((l) => l !== '')
        .map((l) => JSON.parse(l) as AuditEvent)
        .filter((e) => e.user.username === USER && e.stage !== 'RequestReceived');
    }
    const mine = events();
    assert.ok(mine.length > 20, `${mine.length} audit events for ${USER}`);
    const denied = mine.filter((e) => e.annotations?.['authorization.k8s.io/decision'] !== 'allow');
    assert.deepEqual(
      denied.map((e) => `${e.verb} ${e.objectRef?.resource ?? ''}${e.objectRef?.subresource !== undefined ? `/${e.objectRef.subresource}` : ''}.${e.objectRef?.apiGroup ?? ''} → ${e.responseStatus?.code ?? '?'} ${e.annotations?.['authorization.k8s.io/reason'] ?? ''}`),
      [],
      'every request allowed',
    );

    const used = (r: Rule): boolean =>
      mine.some((e) => {
        const ref = e.objectRef ?? {};
        const resource = ref.subresource !== undefined ? `${ref.resource ?? ''}/${ref.subresource}` : (ref.resource ?? '');
        if ((ref.apiGroup ?? '') !== r.group || resource !== r.resource) return false;
        if (r.resourceNames.length > 0 && !r.resourceNames.includes(ref.name ?? '')) return false;
        // An apply that creates its object is authorized as patch and as create; the 201 tells it created.
        if (r.verb === 'create' && e.verb === 'patch' && e.responseStatus?.code === 201) return true;
        return e.verb === r.verb;
      });
    const rules = [...rulesOf('clusterrole.yaml'), ...rulesOf('role.yaml')];
    // Informers list and watch; a get of one object happens only on the refresh after a conflict
    // (or a lease read), so a get granted beside a used list counts as used, as in test/rbac.test.ts.
    const unused = rules.filter((r) => !used(r) && !(r.verb === 'get' && used({ ...r, verb: 'list' })));
    assert.deepEqual(unused.map((r) => `${r.source}: ${r.verb} ${r.resource}.${r.group}${r.resourceNames.length > 0 ? ` [${r.resourceNames.join(', ')}]` : ''}`), [], 'granted but never used');
    assert.ok(
      mine.some((e) => e.objectRef?.resource === 'leases' && e.verb === 'get' && e.objectRef.name === DEFAULT_LEASE_NAME && e.responseStatus?.code === 404),
      'the first lease read found none, and was allowed',
    );
  });
});
