/**
 * A Kubernetes client vmroll did not write, against `vmroll sim`'s API server: Debian's kubectl
 * 1.20 (package kubernetes-client) over real HTTP on 127.0.0.1. Namespaces, client-side and
 * server-side apply, every patch type, table printing, watch, delete, and the simulated
 * virt-controller's answers (VMIs, hot-plug, RestartRequired) as kubectl shows them.
 *
 * kubectl runs with a temporary HOME and cache directory, so no user configuration or
 * discovery cache takes part; every call is bounded in time.
 */
import assert from 'node:assert/strict';
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { pino } from 'pino';
import { parse, stringify } from 'yaml';
import { type ApiServer, startApiServer } from '../reconciler/cluster/sim/apiServer.ts';
import { SimCluster } from '../reconciler/cluster/sim/simCluster.ts';
import { simKubeconfig } from '../reconciler/commands/sim.ts';
import type { Obj } from '../reconciler/rollout/index.ts';
import { ROOT } from './helpers/cases.ts';
import { debianKubectl } from './helpers/kubectl.ts';
import { until } from './helpers/waitFor.ts';

const read = (...parts: string[]): Obj => parse(readFileSync(path.join(ROOT, 'fixtures', ...parts), 'utf8')) as Obj;
const KUBEVIRT = read('example-cluster', 'kubevirt.yaml');
const manifest = (name: 'web' | 'db' | 'batch'): Obj => read('example-repo', 'vms', `${name}.yaml`);

/** Every kubectl call ends within this, or the test fails (generous: a busy machine starts processes slowly). */
const CALL_TIMEOUT_MS = 60_000;

interface Outcome {
  /** Exit code; null when kubectl was killed (timeout). */
  code: number | null;
  stdout: string;
  stderr: string;
}

const meta = (o: Readonly<Obj> | undefined): Obj => (o?.['metadata'] ?? {}) as Obj;
const templateSpec = (vm: Readonly<Obj> | undefined): Obj => ((((vm?.['spec'] ?? {}) as Obj)['template'] ?? {}) as Obj)['spec'] as Obj;
const domain = (vm: Readonly<Obj> | undefined): Obj => (templateSpec(vm)['domain'] ?? {}) as Obj;
const cpu = (o: Readonly<Obj> | undefined): Obj => (domain(o)['cpu'] ?? {}) as Obj;
/** A VMI's spec has the domain directly. */
const vmiCpu = (vmi: Readonly<Obj> | undefined): Obj => ((((vmi?.['spec'] ?? {}) as Obj)['domain'] ?? {}) as Obj)['cpu'] as Obj;
const managers = (o: Readonly<Obj> | undefined): string[] => ((meta(o)['managedFields'] ?? []) as Obj[]).map((e) => `${String(e['manager'])} ${String(e['operation'])}`).sort();
/** The managers whose fieldsV1 name `spec.template.spec.domain.cpu.sockets`. */
function socketOwners(o: Readonly<Obj> | undefined): string[] {
  const owners: string[] = [];
  for (const e of (meta(o)['managedFields'] ?? []) as Obj[]) {
    let f: unknown = e['fieldsV1'];
    for (const k of ['f:spec', 'f:template', 'f:spec', 'f:domain', 'f:cpu', 'f:sockets']) f = typeof f === 'object' && f !== null ? (f as Obj)[k] : undefined;
    if (f !== undefined) owners.push(String(e['manager']));
  }
  return owners.sort();
}
/** Table rows as arrays of cells (kubectl separates columns by at least three spaces). */
const rows = (table: string): string[][] =>
  table
    .trim()
    .split('\n')
    .map((line) => line.trim().split(/\s{3,}/));

describe('Debian kubectl 1.20 against vmroll sim', function () {
  this.timeout(120_000);
  let kubectlPath = '';
  let dir = '';
  let cluster: SimCluster;
  let server: ApiServer | undefined;
  let kubeconfig = '';
  /** `METHOD /path STATUS` of every API request, from the server's debug log. */
  const requests: string[] = [];

  /** Runs kubectl against the simulator; never throws for a non-zero exit. */
  function kubectl(...args: string[]): Promise<Outcome> {
    const full = ['--kubeconfig', kubeconfig, '--cache-dir', path.join(dir, 'cache'), '--request-timeout', '30s', ...args];
    return new Promise((resolve) => {
      // Only HOME: no KUBECONFIG or other setting of the machine's user reaches kubectl.
      execFile(kubectlPath, full, { env: { HOME: path.join(dir, 'home') }, timeout: CALL_TIMEOUT_MS, killSignal: 'SIGKILL' }, (error, stdout, stderr) => {
        const code = error === null ? 0 : typeof error.code === 'number' ? error.code : null;
        resolve({ code, stdout, stderr });
      });
    });
  }

  /** kubectl that must succeed; its stdout. */
  async function ok(...args: string[]): Promise<string> {
    const r = await kubectl(...args);
    assert.equal(r.code, 0, `kubectl ${args.join(' ')} exited ${String(r.code)}: ${r.stderr}`);
    return r.stdout;
  }

  /** Writes a manifest into the temp dir (or a subfolder) and returns its path. */
  function write(file: string, ...objects: Obj[]): string {
    const target = path.join(dir, file);
    mkdirSync(path.dirname(target), { recursive: true });
    writeFileSync(target, objects.map((o) => stringify(o)).join('---\n'));
    return target;
  }

  const vm = (name: string, namespace = 'shop'): Readonly<Obj> | undefined => cluster.store.peek('VirtualMachine', namespace, name);
  const vmi = (name: string, namespace = 'shop'): Readonly<Obj> | undefined => cluster.store.peek('VirtualMachineInstance', namespace, name);

  before(async function () {
    this.timeout(180_000);
    const found = await debianKubectl();
    if (!found.ok) {
      console.log(`    skipped: Debian's kubectl cannot be had: ${found.reason}`);
      this.skip();
    }
    kubectlPath = found.path;
    assert.match(found.version, /v1\.20\./);
    dir = mkdtempSync(path.join(os.tmpdir(), 'vmroll-kubectl-'));
    mkdirSync(path.join(dir, 'home'));
    const logger = pino(
      { level: 'debug' },
      {
        write(line: string): void {
          const entry = JSON.parse(line) as Obj;
          if (entry['msg'] === 'api request') requests.push(`${String(entry['method'])} ${String(entry['path'])} ${String(entry['status'])}`);
        },
      },
    );
    cluster = new SimCluster({ kubevirt: KUBEVIRT, migrationDurationMs: 300 });
    server = await startApiServer({ cluster, listen: '127.0.0.1:0', logger });
    kubeconfig = path.join(dir, 'kubeconfig');
    writeFileSync(kubeconfig, simKubeconfig(server.url), { mode: 0o600 });
  });

  after(async () => {
    await server?.close();
    if (dir !== '') rmSync(dir, { recursive: true, force: true });
  });

  it('creates a namespace and lists namespaces', async () => {
    assert.equal((await ok('create', 'namespace', 'shop')).trim(), 'namespace/shop created');
    assert.ok(cluster.store.has('Namespace', undefined, 'shop'));
    const table = rows(await ok('get', 'ns'));
    assert.deepEqual(table[0], ['NAME', 'STATUS', 'AGE']);
    assert.deepEqual(
      table.slice(1).map((r) => r.slice(0, 2)),
      [
        ['default', 'Active'],
        ['kube-node-lease', 'Active'],
        ['kube-public', 'Active'],
        ['kube-system', 'Active'],
        ['kubevirt', 'Active'],
        ['shop', 'Active'],
      ],
    );
  });

  it('applies web.yaml client-side: last-applied annotation, OpenAPI fetched, the controller starts a VMI', async () => {
    const file = write('web.yaml', manifest('web'));
    requests.length = 0;
    assert.equal((await ok('apply', '-f', file)).trim(), 'virtualmachine.kubevirt.io/web created');
    // kubectl 1.20's apply reads the OpenAPI document (as protobuf) before anything else, for validation and patching.
    assert.equal(requests[0], 'GET /openapi/v2 200');
    assert.ok(requests.includes('POST /apis/kubevirt.io/v1/namespaces/shop/virtualmachines 201'), requests.join('\n'));
    const stored = vm('web');
    assert.ok(stored, 'the VM is in the simulator');
    const lastApplied = JSON.parse(String((meta(stored)['annotations'] as Obj)['kubectl.kubernetes.io/last-applied-configuration'])) as Obj;
    assert.deepEqual(lastApplied['spec'], manifest('web')['spec']);
    assert.deepEqual(managers(stored), ['kubectl-client-side-apply Update']);
    // runStrategy Always: the simulated virt-controller started an instance with the template's CPU.
    assert.equal(vmiCpu(vmi('web'))['sockets'], 2);
  });

  it('reports a manifest the server refuses, with the field that is wrong', async () => {
    const bad = manifest('web');
    (bad['spec'] as Obj)['runStrategy'] = 'Sometimes';
    const r = await kubectl('apply', '-f', write('bad/web.yaml', bad));
    assert.equal(r.code, 1);
    assert.match(r.stderr, /The VirtualMachine "web" is invalid: spec\.runStrategy: Invalid value: must be one of "Always"/);
    assert.equal((vm('web')?.['spec'] as Obj)['runStrategy'], 'Always', 'nothing was written');
  });

  it('gets VMs and VMIs: tables, short names, label selectors, -o json/yaml/name', async () => {
    const vms = rows(await ok('get', 'virtualmachines', '-n', 'shop'));
    assert.deepEqual(vms[0], ['NAME', 'AGE', 'STATUS', 'READY']);
    assert.deepEqual([vms[1]?.[0], vms[1]?.[2], vms[1]?.[3]], ['web', 'Running', 'True']);
    // One object by name is printed from a Table too, with the same columns.
    const one = rows(await ok('get', 'vm', 'web', '-n', 'shop'));
    assert.deepEqual(one[0], ['NAME', 'AGE', 'STATUS', 'READY']);
    assert.deepEqual([one[1]?.[0], one[1]?.[2]], ['web', 'Running']);
    const vmis = rows(await ok('get', 'vmi', '-A'));
    assert.deepEqual(vmis[0], ['NAMESPACE', 'NAME', 'AGE', 'PHASE', 'LIVE-MIGRATABLE']);
    assert.deepEqual([vmis[1]?.[0], vmis[1]?.[1], vmis[1]?.[3]], ['shop', 'web', 'Running']);

    const json = JSON.parse(await ok('get', 'vm', 'web', '-n', 'shop', '-o', 'json')) as Obj;
    assert.equal(json['kind'], 'VirtualMachine');
    assert.equal(json['apiVersion'], 'kubevirt.io/v1');
    assert.equal(cpu(json)['sockets'], 2);
    assert.equal((json['status'] as Obj)['printableStatus'], 'Running');
    const yaml = parse(await ok('get', 'vms', 'web', '-n', 'shop', '-o', 'yaml')) as Obj;
    assert.equal(meta(yaml)['uid'], meta(vm('web'))['uid']);
    assert.equal((await ok('get', 'vmis', '-n', 'shop', '-o', 'name')).trim(), 'virtualmachineinstance.kubevirt.io/web');

    assert.equal((await ok('get', 'vms', '-A', '-l', 'app=web', '-o', 'name')).trim(), 'virtualmachine.kubevirt.io/web');
    const none = await kubectl('get', 'vms', '-A', '-l', 'app=db');
    assert.equal(none.code, 0);
    assert.equal(none.stdout, '');
    assert.match(none.stderr, /No resources found/);
  });

  it('answers kubectl\'s Table request with KubeVirt\'s printer columns and partial object metadata', async () => {
    assert.ok(server);
    const res = await fetch(`${server.url}/apis/kubevirt.io/v1/namespaces/shop/virtualmachines`, {
      headers: { accept: 'application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json' },
    });
    const table = (await res.json()) as Obj;
    assert.equal(table['kind'], 'Table');
    assert.equal(table['apiVersion'], 'meta.k8s.io/v1');
    assert.deepEqual(
      (table['columnDefinitions'] as Obj[]).map((c) => c['name']),
      ['Name', 'Age', 'Status', 'Ready'],
    );
    const row = (table['rows'] as Obj[])[0] as Obj;
    assert.deepEqual([(row['cells'] as unknown[])[0], (row['cells'] as unknown[])[2]], ['web', 'Running']);
    assert.equal((row['object'] as Obj)['kind'], 'PartialObjectMetadata');
  });

  it('applies a live change: the extra sockets reach the running VMI, no restart needed', async () => {
    const next = manifest('web');
    (domain(next)['cpu'] as Obj)['sockets'] = 4;
    assert.equal((await ok('apply', '-f', write('web.yaml', next))).trim(), 'virtualmachine.kubevirt.io/web configured');
    assert.equal(cpu(vm('web'))['sockets'], 4);
    assert.equal(vmiCpu(vmi('web'))['sockets'], 4, 'hot-plugged');
    assert.equal(await ok('get', 'vm', 'web', '-n', 'shop', '-o', 'jsonpath={.status.conditions[?(@.type=="RestartRequired")].status}'), '');
  });

  it('applies a non-live change: the VM has it, the VMI does not, RestartRequired is set', async () => {
    const next = manifest('web');
    (domain(next)['cpu'] as Obj)['sockets'] = 4;
    domain(next)['firmware'] = { serial: 'web-0001' };
    (templateSpec(next)['nodeSelector'] as Obj)['topology.kubernetes.io/zone'] = 'zone-a';
    assert.equal((await ok('apply', '-f', write('web.yaml', next))).trim(), 'virtualmachine.kubevirt.io/web configured');
    assert.deepEqual(domain(vm('web'))['firmware'], { serial: 'web-0001' });
    const instance = (vmi('web')?.['spec'] ?? {}) as Obj;
    assert.notEqual(((instance['domain'] as Obj)['firmware'] as Obj | undefined)?.['serial'], 'web-0001', 'the serial waits for a restart');
    assert.deepEqual(instance['nodeSelector'], { 'kubernetes.io/arch': 'amd64' });
    const condition = await ok('get', 'vm', 'web', '-n', 'shop', '-o', 'jsonpath={range .status.conditions[?(@.type=="RestartRequired")]}{.status}|{.message}{end}');
    assert.equal(condition, 'True|a non-live-updatable field was changed in the template spec');
  });

  it('server-side applies as kubectl and as a named field manager; a conflict fails until --force-conflicts', async () => {
    const db = write('db.yaml', manifest('db'));
    assert.equal((await ok('apply', '--server-side', '-f', db)).trim(), 'virtualmachine.kubevirt.io/db serverside-applied');
    assert.deepEqual(managers(vm('db')), ['kubectl Apply']);
    assert.equal(vmiCpu(vmi('db'))['sockets'], 4);

    // The same values from another manager: no conflict, the fields are shared.
    await ok('apply', '--server-side', '--field-manager', 'ops', '-f', db);
    assert.deepEqual(socketOwners(vm('db')), ['kubectl', 'ops']);

    const more = manifest('db');
    (domain(more)['cpu'] as Obj)['sockets'] = 6;
    const file = write('db-6.yaml', more);
    const refused = await kubectl('apply', '--server-side', '--field-manager', 'ops', '-f', file);
    assert.equal(refused.code, 1);
    assert.match(refused.stderr, /Apply failed with 1 conflict: conflict with "kubectl": \.spec\.template\.spec\.domain\.cpu\.sockets/);
    assert.match(refused.stderr, /--force-conflicts/, 'kubectl explains the way out');
    assert.equal(cpu(vm('db'))['sockets'], 4, 'nothing was written');

    assert.equal((await ok('apply', '--server-side', '--field-manager', 'ops', '--force-conflicts', '-f', file)).trim(), 'virtualmachine.kubevirt.io/db serverside-applied');
    assert.equal(cpu(vm('db'))['sockets'], 6);
    assert.deepEqual(socketOwners(vm('db')), ['ops'], 'ops took the field from kubectl');
    assert.equal(vmiCpu(vmi('db'))['sockets'], 6, 'and it was hot-plugged');
  });

  it('patches with --type merge, --type json, and the default strategic type (taken as a merge patch)', async () => {
    assert.equal((await ok('patch', 'vm', 'web', '-n', 'shop', '--type', 'merge', '-p', '{"metadata":{"labels":{"tier":"front"}}}')).trim(), 'virtualmachine.kubevirt.io/web patched');
    assert.equal((await ok('patch', 'vm', 'web', '-n', 'shop', '--type', 'json', '-p', '[{"op":"add","path":"/metadata/annotations/owner","value":"shop-team"}]')).trim(), 'virtualmachine.kubevirt.io/web patched');
    // Kubernetes answers 415 to a strategic merge patch of a custom resource; the simulator applies it as a merge patch.
    assert.equal((await ok('patch', 'vm', 'web', '-n', 'shop', '-p', '{"metadata":{"labels":{"team":"shop"}}}')).trim(), 'virtualmachine.kubevirt.io/web patched');
    assert.deepEqual(meta(vm('web'))['labels'], { app: 'web', tier: 'front', team: 'shop' });
    assert.equal((meta(vm('web'))['annotations'] as Obj)['owner'], 'shop-team');
    assert.ok(managers(vm('web')).includes('kubectl-patch Update'), managers(vm('web')).join(', '));

    const failed = await kubectl('patch', 'vm', 'web', '-n', 'shop', '--type', 'json', '-p', '[{"op":"test","path":"/spec/runStrategy","value":"Halted"}]');
    assert.equal(failed.code, 1);
    assert.match(failed.stderr, /test failed/);
    const invalid = await kubectl('patch', 'vm', 'web', '-n', 'shop', '--type', 'merge', '-p', '{"spec":{"runStrategy":7}}');
    assert.equal(invalid.code, 1);
    assert.match(invalid.stderr, /The VirtualMachine "web" is invalid:[\s\S]*spec\.runStrategy/);
  });

  it('kubectl get -w shows a change made while it watches', async () => {
    const child: ChildProcess = spawn(kubectlPath, ['--kubeconfig', kubeconfig, '--cache-dir', path.join(dir, 'cache'), 'get', 'vms', '-n', 'shop', '-w'], {
      env: { HOME: path.join(dir, 'home') },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    let err = '';
    child.stdout?.on('data', (chunk: Buffer) => (out += chunk.toString()));
    child.stderr?.on('data', (chunk: Buffer) => (err += chunk.toString()));
    const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
    const printed = (what: string, pattern: RegExp): Promise<void> =>
      until(`kubectl get -w to print ${what}`, () => pattern.test(out), {
        failIf: () => (child.exitCode !== null ? `kubectl exited ${child.exitCode}` : undefined),
        detail: () => `${out}${err}`,
      });
    try {
      await printed('the current VMs', /^db\s+\S+\s+Running\s+True$/m);
      await ok('patch', 'vm', 'db', '-n', 'shop', '--type', 'merge', '-p', '{"spec":{"runStrategy":"Halted"}}');
      await printed('the stopped VM', /^db\s+\S+\s+Stopped\s+False$/m);
    } finally {
      child.kill('SIGTERM');
      await exited;
    }
    assert.equal(vmi('db'), undefined, 'runStrategy Halted stopped the VMI');
  });

  it('deletes a VM and its VMI; getting it then fails with NotFound', async () => {
    assert.ok(vmi('web'));
    assert.equal((await ok('delete', 'vm', 'web', '-n', 'shop')).trim(), 'virtualmachine.kubevirt.io "web" deleted');
    assert.equal(vm('web'), undefined);
    assert.equal(vmi('web'), undefined);
    const r = await kubectl('get', 'vm', 'web', '-n', 'shop');
    assert.equal(r.code, 1);
    assert.equal(r.stderr.trim(), 'Error from server (NotFound): virtualmachines.kubevirt.io "web" not found');
  });

  it('applies a directory of manifests, a namespace among them', async () => {
    write('repo/00-jobs.yaml', { apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'jobs' } });
    write('repo/batch.yaml', manifest('batch'));
    write('repo/db.yaml', manifest('db'));
    write('repo/web.yaml', manifest('web'));
    const r = await kubectl('apply', '-f', path.join(dir, 'repo'));
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(r.stdout.trim().split('\n'), [
      'namespace/jobs created',
      'virtualmachine.kubevirt.io/batch created',
      'virtualmachine.kubevirt.io/db configured',
      'virtualmachine.kubevirt.io/web created',
    ]);
    // db was created by server-side apply, so kubectl adds the annotation it missed, and says so.
    assert.match(r.stderr, /virtualmachines\/db is missing the kubectl\.kubernetes\.io\/last-applied-configuration annotation/);
    assert.ok(vm('batch', 'jobs'));
    assert.equal(vmi('batch', 'jobs'), undefined, 'runStrategy Halted: no instance');
    assert.ok(vmi('web'), 'web runs again');
    const all = rows(await ok('get', 'vms', '-A'));
    assert.deepEqual(
      all.slice(1).map((row) => [row[0], row[1], row[3]]),
      [
        ['jobs', 'batch', 'Stopped'],
        ['shop', 'db', 'Running'],
        ['shop', 'web', 'Running'],
      ],
    );
  });

  it('kubectl patch kv turns on LiveMigrate; kubectl get vmim shows the migration that takes a hot-plug to the guest', async () => {
    const guestSockets = (): unknown => (((vmi('web')?.['status'] ?? {}) as Obj)['currentCPUTopology'] as Obj | undefined)?.['sockets'];
    assert.equal(guestSockets(), 2);
    const methods = '{"spec":{"workloadUpdateStrategy":{"workloadUpdateMethods":["LiveMigrate"]}}}';
    assert.equal((await ok('patch', 'kv', 'kubevirt', '-n', 'kubevirt', '--type', 'merge', '-p', methods)).trim(), 'kubevirt.kubevirt.io/kubevirt patched');
    await ok('patch', 'vm', 'web', '-n', 'shop', '--type', 'merge', '-p', '{"spec":{"template":{"spec":{"domain":{"cpu":{"sockets":3}}}}}}');
    await until('the guest of web to run 3 sockets', () => guestSockets() === 3);
    const table = rows(await ok('get', 'vmim', '-n', 'shop'));
    assert.deepEqual(table[0], ['NAME', 'PHASE', 'VMI']);
    assert.equal(table.length, 2, table.join('\n'));
    assert.match(table[1]?.[0] ?? '', /^kubevirt-workload-update-[a-z0-9]{5}$/);
    assert.deepEqual(table[1]?.slice(1), ['Succeeded', 'web']);
    assert.equal(await ok('get', 'vmi', 'web', '-n', 'shop', '-o', 'jsonpath={.status.conditions[?(@.type=="HotVCPUChange")].status}'), '');
    assert.equal(await ok('get', 'vmi', 'web', '-n', 'shop', '-o', 'jsonpath={.status.migrationState.completed}'), 'true');
  });
});
