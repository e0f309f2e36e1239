// Nothing in a manifest path is dropped silently, and no mistake in a file loses its VM: manifests
// loaded from a real git repository served by git-http-backend on 127.0.0.1 (other kinds and unknown
// fields as warnings, typos and invalid names as errors that hold the VM, kind: List and JSON read
// like kubectl reads them, a file name Git allows but vmroll refuses), checked against KubeVirt's
// published schema read from ../shared, and synced with --prune through the Reconciler.
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { parseAllDocuments, stringify } from 'yaml';
import { makeLogger } from '../reconciler/commands/run.ts';
import { SimCluster } from '../reconciler/cluster/sim/simCluster.ts';
import { Reconciler } from '../reconciler/controller/reconcile.ts';
import type { Obj } from '../reconciler/rollout/index.ts';
import { GitSource } from '../reconciler/source/gitSource.ts';
import { loadManifests, type ManifestSet } from '../reconciler/source/manifests.ts';
import { closest, editDistance, unknownVirtualMachineFields } from '../reconciler/validate.ts';
import { KUBEVIRT_FIELDS } from '../schemas/generated/kubevirt-fields.ts';
import { ROOT } from './helpers/cases.ts';
import { startGitServer, type GitServer, type WorkingClone } from './helpers/gitServer.ts';

const sharedDir = path.resolve(ROOT, '..', 'shared');
const examplesDir = path.join(sharedDir, 'kubevirt', 'examples');
const swaggerPath = path.join(sharedDir, 'schemas', 'kubevirt-v1.swagger-subset.json');
const EXAMPLE = path.join(ROOT, 'fixtures', 'example-repo', 'vms');
const silent = makeLogger('silent', []);

/** A valid VirtualMachine; the lines are fixed so tests can name them (sockets is on line 12). */
function vmYaml(name: string, namespace = 'shop', sockets = 2): string {
  return `apiVersion: kubevirt.io/v1
kind: VirtualMachine
metadata:
  name: ${name}
  namespace: ${namespace}
spec:
  runStrategy: Always
  template:
    spec:
      domain:
        cpu:
          sockets: ${sockets}
        memory:
          guest: 1Gi
        devices: {}
`;
}

const SERVICE = `apiVersion: v1
kind: Service
metadata:
  name: web-svc
spec:
  ports:
    - port: 80
`;

const keys = (set: ManifestSet): string[] => set.vms.map((v) => `${v.namespace}/${v.name}`);
const where = (list: ReadonlyArray<{ file: string; line: number; message: string }>): string[] => list.map((w) => `${w.file}:${w.line} ${w.message}`);

describe('manifest loading: nothing dropped silently, no mistake loses a VM', function () {
  this.timeout(60_000);
  let server: GitServer;
  let work: WorkingClone;
  let source: GitSource;
  let cacheDir: string;

  before(async function () {
    server = await startGitServer();
    cacheDir = mkdtempSync(path.join(tmpdir(), 'vmroll-manifests-'));
    const url = await server.createBareRepo('fleet');
    work = await server.createWorkingClone('fleet');
    source = new GitSource({ repo: url, cacheDir });
  });
  after(async function () {
    await server?.stop();
    if (cacheDir) rmSync(cacheDir, { recursive: true, force: true });
  });

  /** Commits and pushes what the test wrote, and returns the commit as the source sees it. */
  async function publish(message: string): Promise<string> {
    await work.commit(message);
    await work.push();
    return (await source.sync({ ref: 'main' })).commit;
  }

  async function reset(files: Record<string, string>): Promise<void> {
    await work.git('rm', '-r', '--quiet', '--ignore-unmatch', 'vms');
    for (const [file, content] of Object.entries(files)) await work.write(file, content);
  }

  it('other kinds are warnings naming file, line and kind; the VMs beside them load', async function () {
    await reset({
      'vms/web.yaml': vmYaml('web') + '---\n' + SERVICE,
      'vms/vmi.yaml': 'apiVersion: kubevirt.io/v1\nkind: VirtualMachineInstance\nmetadata:\n  name: scratch\nspec: {}\n',
      'vms/kustomization.yaml': 'resources:\n  - web.yaml\n',
      'vms/dv.yaml': '# a DataVolume\napiVersion: cdi.kubevirt.io/v1beta1\nkind: DataVolume\nmetadata:\n  name: disk\n',
      'vms/vmware.yaml': 'apiVersion: vmoperator.vmware.com/v1alpha2\nkind: VirtualMachine\nmetadata:\n  name: elsewhere\n',
    });
    const commit = await publish('other kinds');
    const set = await loadManifests({ source, commit, path: 'vms' });
    assert.deepEqual(keys(set), ['shop/web']);
    assert.deepEqual(set.errors, []);
    assert.deepEqual(where(set.warnings), [
      'vms/dv.yaml:2 DataVolume disk skipped: vmroll applies only kubevirt.io VirtualMachines',
      'vms/kustomization.yaml:1 kustomization.yaml skipped: vmroll does not run kustomize; it applies only kubevirt.io VirtualMachines, as they are written',
      'vms/vmi.yaml:1 VirtualMachineInstance scratch skipped: vmroll applies only kubevirt.io VirtualMachines',
      'vms/vmware.yaml:1 VirtualMachine elsewhere (vmoperator.vmware.com/v1alpha2) skipped: vmroll applies only kubevirt.io VirtualMachines',
      'vms/web.yaml:17 Service web-svc skipped: vmroll applies only kubevirt.io VirtualMachines',
    ]);
    assert.deepEqual(set.skipped.map((s) => `${s.file}:${s.line} ${s.kind}`), ['vms/dv.yaml:2 DataVolume', 'vms/kustomization.yaml:1 null', 'vms/vmi.yaml:1 VirtualMachineInstance', 'vms/vmware.yaml:1 VirtualMachine', 'vms/web.yaml:17 Service']);

    // --strict: the same warnings are errors of their files, and web (beside the Service) is held, not applied.
    const strict = await loadManifests({ source, commit, path: 'vms', strict: true });
    assert.deepEqual(strict.vms, []);
    assert.deepEqual(strict.warnings, []);
    assert.deepEqual(strict.heldVms, ['shop/web']);
    assert.deepEqual(where(strict.errors), where(set.warnings).map((w) => `${w} (an error under --strict)`));
    assert.deepEqual(strict.failedFiles, ['vms/dv.yaml', 'vms/kustomization.yaml', 'vms/vmi.yaml', 'vms/vmware.yaml', 'vms/web.yaml']);
    // A previous load under other options is not reused.
    const again = await loadManifests({ source, commit, path: 'vms', previous: set, strict: true });
    assert.equal(again.incremental, false);
    assert.deepEqual(where(again.errors), where(strict.errors));

    // An incremental load keeps the warnings of the files it does not read again.
    await work.write('vms/vmi.yaml', 'apiVersion: kubevirt.io/v1\nkind: VirtualMachineInstance\nmetadata:\n  name: scratch2\nspec: {}\n');
    const next = await loadManifests({ source, commit: await publish('another VMI'), path: 'vms', previous: set });
    assert.equal(next.incremental, true);
    assert.deepEqual(next.read, ['vms/vmi.yaml']);
    assert.deepEqual(where(next.warnings), where(set.warnings).map((w) => w.replace('scratch', 'scratch2')));
  });

  it('unknown fields are warnings at the field line with a "did you mean"; Kubernetes types inside the VM raise none', async function () {
    const rich = `apiVersion: kubevirt.io/v1
kind: VirtualMachine
metadata:
  name: rich
  namespace: shop
  labels: { app: rich, tier.example.com/role: db }
  annotations: { note: "free text, any key" }
spec:
  runStrategy: Always
  dataVolumeTemplates:
    - metadata: { name: rich-root }
      spec:
        storage:
          accessModes: [ReadWriteOnce]
          resources: { requests: { storage: 10Gi } }
          storageClassName: fast
        source: { registry: { url: "docker://quay.io/containerdisks/fedora:40" } }
  template:
    metadata:
      labels: { kubevirt.io/domain: rich }
    spec:
      nodeSelector: { kubernetes.io/arch: amd64 }
      tolerations:
        - { key: dedicated, operator: Equal, value: vms, effect: NoSchedule }
      affinity:
        podAntiAffinity:
          preferredDuringSchedulingIgnoredDuringExecution:
            - weight: 100
              podAffinityTerm: { topologyKey: kubernetes.io/hostname, labelSelector: { matchLabels: { app: rich } } }
      domain:
        cpu:
          sockets: 2
          socket: 2
        resources: { requests: { memory: 1Gi, cpu: 500m } }
        frobnicate: true
        devices: {}
      volumes:
        - name: root
          dataVolume: { name: rich-root }
        - name: scratch
          persistentVolumeClaim: { claimName: scratch, readOnly: false }
      networks:
        - name: default
          multus: { networkName: br, default: true }
`;
    await reset({ 'vms/rich.yaml': rich });
    const set = await loadManifests({ source, commit: await publish('unknown fields'), path: 'vms' });
    assert.deepEqual(keys(set), ['shop/rich'], 'warnings do not stop a VM');
    assert.deepEqual(set.errors, []);
    assert.deepEqual(
      set.warnings.map((w) => ({ ...w })),
      [
        {
          file: 'vms/rich.yaml',
          line: 33,
          path: 'spec.template.spec.domain.cpu.socket',
          message: 'VirtualMachine shop/rich: spec.template.spec.domain.cpu.socket is not a field KubeVirt defines for CPU; did you mean "sockets"?',
        },
        {
          file: 'vms/rich.yaml',
          line: 35,
          path: 'spec.template.spec.domain.frobnicate',
          message: 'VirtualMachine shop/rich: spec.template.spec.domain.frobnicate is not a field KubeVirt defines for DomainSpec',
        },
      ],
    );
  });

  it('a typo in kind or apiVersion is an error at its line with a "did you mean", and the VM it defined stays held', async function () {
    await reset({ 'vms/db.yaml': vmYaml('db'), 'vms/web.yaml': vmYaml('web') });
    const good = await loadManifests({ source, commit: await publish('good'), path: 'vms' });
    assert.deepEqual(keys(good), ['shop/db', 'shop/web']);

    const cases: Array<[string, string, string]> = [
      ['kind: VirtualMachine', 'kind: VirtualMachin', 'vms/db.yaml:2 kind "VirtualMachin" is not a kind vmroll knows; did you mean "VirtualMachine"?'],
      ['kind: VirtualMachine', 'kind: virtualmachine', 'vms/db.yaml:2 kind "virtualmachine" is not a kind vmroll knows; did you mean "VirtualMachine"?'],
      ['apiVersion: kubevirt.io/v1', 'apiVersion: kubevirt.io/v11', 'vms/db.yaml:1 apiVersion "kubevirt.io/v11" is not a version KubeVirt serves VirtualMachines in (kubevirt.io/v1, kubevirt.io/v1alpha3); did you mean "kubevirt.io/v1"?'],
      ['apiVersion: kubevirt.io/v1', 'apiVersion: kubvirt.io/v1', `vms/db.yaml:1 apiVersion "kubvirt.io/v1" is not KubeVirt's API group; did you mean "kubevirt.io/v1"?`],
      ['apiVersion: kubevirt.io/v1', 'apiVersion: v1', `vms/db.yaml:1 apiVersion "v1" is not KubeVirt's API group; did you mean "kubevirt.io/v1"?`],
    ];
    for (const [from, to, expected] of cases) {
      await work.write('vms/db.yaml', vmYaml('db').replace(from, to));
      await work.write('vms/web.yaml', vmYaml('web', 'shop', Number(to.length % 7) + 1));
      const commit = await publish(to);
      for (const set of [await loadManifests({ source, commit, path: 'vms', previous: good }), await loadManifests({ source, commit, path: 'vms' })]) {
        assert.deepEqual(where(set.errors), [expected], `${to} (incremental: ${set.incremental})`);
        assert.deepEqual(set.warnings, [], 'not a skipped document');
        assert.deepEqual(keys(set), ['shop/web']);
        assert.ok(set.holdingFiles.includes('vms/db.yaml'), 'its file holds the VM it named before on a fresh start');
        assert.deepEqual(set.heldVms, set.incremental ? ['shop/db'] : []);
      }
    }
  });

  it('a file that now defines nothing holds its VM with a warning; one that cleanly defines another VM (rename) does not', async function () {
    await reset({ 'vms/db.yaml': vmYaml('db'), 'vms/web.yaml': vmYaml('web') });
    const good = await loadManifests({ source, commit: await publish('good again'), path: 'vms' });
    await work.write('vms/db.yaml', '# emptied by mistake\n');
    const emptied = await loadManifests({ source, commit: await publish('emptied'), path: 'vms', previous: good });
    assert.deepEqual(emptied.heldVms, ['shop/db']);
    assert.deepEqual(where(emptied.warnings), ['vms/db.yaml:1 defines no VirtualMachine now; VirtualMachine shop/db, defined here before, is held (not pruned) until this file defines it again or is deleted']);
    assert.ok(emptied.holdingFiles.includes('vms/db.yaml'));

    await work.write('vms/db.yaml', vmYaml('db2'));
    const renamed = await loadManifests({ source, commit: await publish('renamed'), path: 'vms', previous: emptied });
    assert.deepEqual(keys(renamed), ['shop/db2', 'shop/web']);
    assert.deepEqual(renamed.heldVms, []);
    assert.ok(!renamed.holdingFiles.includes('vms/db.yaml'));
  });

  it('reads kind: List exports and *.json files like kubectl apply -f dir/, with lines at the item', async function () {
    const list = `apiVersion: v1
kind: List
items:
  - apiVersion: kubevirt.io/v1
    kind: VirtualMachine
    metadata: { name: db, namespace: shop, resourceVersion: "4711", uid: 0b1c, generation: 3, creationTimestamp: "2026-01-01T00:00:00Z" }
    spec:
      runStrategy: Always
      template: { spec: { domain: { cpu: { sockets: 2 }, memory: { guest: 1Gi }, devices: {} } } }
    status: { printableStatus: Running, ready: true }
  - apiVersion: kubevirt.io/v1
    kind: VirtualMachine
    metadata: { name: cache, namespace: shop }
    spec:
      runStrategy: Sometimes
      template: { spec: { domain: { cpu: { sockets: 2 } } } }
  - apiVersion: v1
    kind: ConfigMap
    metadata: { name: settings }
metadata:
  resourceVersion: ""
`;
    const json = JSON.stringify({ apiVersion: 'kubevirt.io/v1', kind: 'VirtualMachine', metadata: { name: 'api', namespace: 'shop' }, spec: { runStrategy: 'Halted', template: { spec: { domain: { cpu: { sockets: 1, cores: 2 } } } } } }, null, 2);
    const jsonList = JSON.stringify({ apiVersion: 'kubevirt.io/v1', kind: 'VirtualMachineList', items: [{ apiVersion: 'kubevirt.io/v1', kind: 'VirtualMachine', metadata: { name: 'j2', namespace: 'shop' }, spec: { template: { spec: { domain: { cpu: { cores: 1 } } } } } }] }, null, 2);
    await reset({ 'vms/export.yaml': list, 'vms/api.json': json, 'vms/list.json': jsonList, 'vms/broken.json': '{"apiVersion": "kubevirt.io/v1",\n "kind": "VirtualMachine",\n "metadata": {"name": "x"\n' });
    const set = await loadManifests({ source, commit: await publish('exports'), path: 'vms' });
    assert.deepEqual(keys(set), ['shop/api', 'shop/db', 'shop/j2']);
    assert.equal(set.vms.find((v) => v.name === 'db')?.line, 4);
    assert.equal(set.vms.find((v) => v.name === 'j2')?.line, 5);
    assert.deepEqual(where(set.warnings), ['vms/export.yaml:17 ConfigMap settings skipped: vmroll applies only kubevirt.io VirtualMachines']);
    assert.deepEqual(set.heldVms, ['shop/cache']);
    const errors = where(set.errors);
    assert.equal(errors.length, 2, errors.join('\n'));
    assert.match(errors[0] ?? '', /^vms\/broken\.json:\d+ invalid JSON: /);
    assert.equal(errors[1], 'vms/export.yaml:15 VirtualMachine shop/cache: spec.runStrategy must be one of "Always", "RerunOnFailure", "Manual", "Halted", "Once", "WaitAsReceiver"');
  });

  it('names and namespaces are checked as Kubernetes checks them, at the line of the field; the VM is held, not replaced', async function () {
    await reset({ 'vms/db.yaml': vmYaml('db'), 'vms/web.yaml': vmYaml('web') });
    const good = await loadManifests({ source, commit: await publish('names good'), path: 'vms' });
    const long = 'd'.repeat(254);
    const cases: Array<[string, string, string]> = [
      ['name: db', 'name: DB', `vms/db.yaml:4 VirtualMachine shop/DB: metadata.name must be a lowercase RFC 1123 subdomain, as Kubernetes requires of a VirtualMachine's name (at most 253 characters: a-z, 0-9, '-' and '.', each dot-separated part starting and ending with a letter or digit); "DB" is not`],
      ['name: db', 'name: db..x', `vms/db.yaml:4 VirtualMachine shop/db..x: metadata.name must be a lowercase RFC 1123 subdomain, as Kubernetes requires of a VirtualMachine's name (at most 253 characters: a-z, 0-9, '-' and '.', each dot-separated part starting and ending with a letter or digit); "db..x" is not`],
      ['name: db', `name: ${long}`, `vms/db.yaml:4 VirtualMachine shop/${long}: metadata.name must be a lowercase RFC 1123 subdomain, as Kubernetes requires of a VirtualMachine's name (at most 253 characters: a-z, 0-9, '-' and '.', each dot-separated part starting and ending with a letter or digit); "${'d'.repeat(32)}…" (254 characters) is not`],
      ['namespace: shop', 'namespace: Shop_1', `vms/db.yaml:5 VirtualMachine Shop_1/db: metadata.namespace must be a lowercase RFC 1123 label, as Kubernetes requires of a namespace (at most 63 characters: a-z, 0-9 and '-', starting and ending with a letter or digit); "Shop_1" is not`],
    ];
    for (const [from, to, expected] of cases) {
      await work.write('vms/db.yaml', vmYaml('db').replace(from, to));
      const set = await loadManifests({ source, commit: await publish(to.slice(0, 40)), path: 'vms', previous: good });
      assert.deepEqual(where(set.errors), [expected]);
      assert.deepEqual(keys(set), ['shop/web']);
      assert.deepEqual(set.heldVms, ['shop/db'], 'the old VM is held; the invalid name is no VM');
    }
    // A 253-character name of 63-character parts is valid.
    const longest = ['a'.repeat(63), 'b'.repeat(63), 'c'.repeat(63), 'd'.repeat(61)].join('.');
    assert.equal(longest.length, 253);
    await work.write('vms/db.yaml', vmYaml(longest));
    const ok = await loadManifests({ source, commit: await publish('longest name'), path: 'vms' });
    assert.deepEqual(ok.errors, []);
    assert.deepEqual(keys(ok), [`shop/${longest}`, 'shop/web']);
  });

  it('values outside KubeVirt and Kubernetes types are errors at their line', async function () {
    const bad = vmYaml('db')
      .replace('sockets: 2', 'sockets: 4294967296\n          cores: -1\n          threads: 4294967295')
      .replace('  namespace: shop\n', '  namespace: shop\n  labels:\n    app: "a\\0b"\n    "bad key!": x\n    ok.example.com/tier: ""\n');
    await reset({ 'vms/db.yaml': bad, 'vms/web.yaml': vmYaml('web') });
    const set = await loadManifests({ source, commit: await publish('out of range'), path: 'vms' });
    assert.deepEqual(keys(set), ['shop/web']);
    assert.deepEqual(where(set.errors), [
      `vms/db.yaml:7 VirtualMachine shop/db: metadata.labels.app must be a valid label value: empty, or at most 63 characters of letters, digits, '-', '_' and '.', starting and ending with a letter or digit; "a\\u0000b" is not`,
      `vms/db.yaml:8 VirtualMachine shop/db: metadata.labels["bad key!"] is not a valid label key: an optional DNS subdomain prefix and '/', then a name of at most 63 characters of letters, digits, '-', '_' and '.', starting and ending with a letter or digit; "bad key!" is not`,
      "vms/db.yaml:16 VirtualMachine shop/db: spec.template.spec.domain.cpu.sockets must be a whole number from 0 to 4294967295: KubeVirt's CPU topology fields are uint32",
      "vms/db.yaml:17 VirtualMachine shop/db: spec.template.spec.domain.cpu.cores must be a whole number from 0 to 4294967295: KubeVirt's CPU topology fields are uint32",
    ]);
    assert.deepEqual(set.heldVms, ['shop/db']);
  });

  it('a file name Git allows but vmroll refuses (vms/a\\b.yaml) is an error for that file; the rest loads', async function () {
    await reset({ 'vms/web.yaml': vmYaml('web'), 'vms/a\\b.yaml': vmYaml('db'), 'vms/x\\y/inner.yaml': vmYaml('inner'), 'vms/a\\b.txt': 'not a manifest\n' });
    const before = await publish('backslashes');
    assert.match(await work.git('ls-tree', '-r', '--name-only', 'HEAD'), /"vms\/a\\\\b\.yaml"/, 'git stored the backslash name');
    const files = await source.listFiles({ commit: before, path: 'vms' });
    assert.deepEqual(
      files.map((f) => `${f.path} ${f.refused ?? 'ok'}`),
      [
        'vms/a\\b.txt the name "a\\b.txt" contains a backslash, which is a folder separator on Windows',
        'vms/a\\b.yaml the name "a\\b.yaml" contains a backslash, which is a folder separator on Windows',
        'vms/web.yaml ok',
        'vms/x\\y/inner.yaml the name "x\\y" contains a backslash, which is a folder separator on Windows',
      ],
    );
    const set = await loadManifests({ source, commit: before, path: 'vms' });
    assert.deepEqual(keys(set), ['shop/web']);
    assert.deepEqual(where(set.errors), [
      'vms/a\\b.yaml:1 path refused: the name "a\\b.yaml" contains a backslash, which is a folder separator on Windows; rename it (the rest of the repository is read as usual)',
      'vms/x\\y/inner.yaml:1 path refused: the name "x\\y" contains a backslash, which is a folder separator on Windows; rename it (the rest of the repository is read as usual)',
    ]);
    assert.deepEqual(set.heldVms, ['shop/db', 'shop/inner'], 'what the refused files define is held, never pruned');

    // The diff walk reports the refused names too, and an incremental load follows them.
    await work.write('vms/a\\b.yaml', vmYaml('db', 'shop', 4));
    await work.write('vms/web.yaml', vmYaml('web', 'shop', 4));
    await work.remove('vms/x\\y');
    const after = await publish('edit around the backslashes');
    assert.deepEqual(
      (await source.changedPaths({ from: before, to: after, path: 'vms' })).map((c) => `${c.status} ${c.path}${c.refused !== undefined ? ' (refused)' : ''}`),
      ['modified vms/a\\b.yaml (refused)', 'modified vms/web.yaml', 'deleted vms/x\\y/inner.yaml'],
    );
    const next = await loadManifests({ source, commit: after, path: 'vms', previous: set });
    assert.equal(next.incremental, true);
    assert.deepEqual([...next.read].sort(), ['vms/a\\b.yaml', 'vms/web.yaml']);
    assert.deepEqual(where(next.errors).map((e) => e.split(' ')[0]), ['vms/a\\b.yaml:1']);
    assert.equal(next.vms.find((v) => v.name === 'web')?.manifest.spec?.template?.spec?.domain?.cpu?.sockets, 4);
  });
});

describe('unknown-field check against KubeVirt’s published schema (../shared)', function () {
  before(function () {
    if (!existsSync(swaggerPath) || !existsSync(examplesDir)) {
      console.log(`    skipped: KubeVirt's schema and examples are read from ${sharedDir}, which is missing`);
      this.skip();
    }
  });

  interface SwaggerSchema {
    type?: string;
    $ref?: string;
    items?: SwaggerSchema;
    additionalProperties?: SwaggerSchema | boolean;
    properties?: Record<string, SwaggerSchema>;
  }

  // A VirtualMachine that sets every property KubeVirt's swagger defines, at every depth (a type
  // already on the path is set empty, to end recursion). Scalars get a placeholder: only names matter.
  function everyField(definitions: Record<string, SwaggerSchema>): { doc: Record<string, unknown>; paths: string[] } {
    const paths: string[] = [];
    const ref = (s: SwaggerSchema | undefined): string | undefined => s?.$ref?.replace('#/definitions/', '');
    const build = (name: string, stack: string[], at: string): unknown => {
      const def = definitions[name];
      if (def?.properties === undefined) return 'x';
      const out: Record<string, unknown> = {};
      for (const [field, schema] of Object.entries(def.properties)) {
        if (stack.length === 1 && field === 'status') continue;
        const here = at === '' ? field : `${at}.${field}`;
        paths.push(here);
        const item = ref(schema) ?? ref(schema.items);
        const mapOf = typeof schema.additionalProperties === 'object' ? ref(schema.additionalProperties) : undefined;
        if (item !== undefined) {
          const value = stack.includes(item) ? {} : build(item, [...stack, item], here);
          out[field] = schema.type === 'array' ? [value] : value;
        } else if (mapOf !== undefined) {
          out[field] = { anyKey: stack.includes(mapOf) ? {} : build(mapOf, [...stack, mapOf], `${here}.anyKey`) };
        } else {
          out[field] = schema.type === 'array' ? ['x'] : schema.type === 'object' ? { anyKey: 'x' } : 'x';
        }
      }
      return out;
    };
    return { doc: build('v1.VirtualMachine', ['v1.VirtualMachine'], '') as Record<string, unknown>, paths };
  }

  it('knows every property KubeVirt’s swagger defines under VirtualMachine: no false warnings', function () {
    const { definitions } = JSON.parse(readFileSync(swaggerPath, 'utf8')) as { definitions: Record<string, SwaggerSchema> };
    const { doc, paths } = everyField(definitions);
    assert.ok(paths.length > 700, `only ${paths.length} field paths built`);
    for (const needle of ['spec.template.spec.domain.cpu.sockets', 'spec.template.spec.affinity.podAntiAffinity.requiredDuringSchedulingIgnoredDuringExecution.labelSelector.matchExpressions.values', 'spec.dataVolumeTemplates.spec.storage.resources.requests', 'spec.template.spec.networks.multus.default', 'metadata.managedFields.fieldsV1']) {
      assert.ok(paths.includes(needle), `${needle} is among the paths`);
    }
    assert.deepEqual(unknownVirtualMachineFields(doc), []);

    // The same document with one misspelt field gives exactly that one warning.
    const cpu = ((((doc['spec'] as Obj)['template'] as Obj)['spec'] as Obj)['domain'] as Obj)['cpu'] as Obj;
    cpu['socket'] = 2;
    assert.deepEqual(unknownVirtualMachineFields(doc), [{ path: 'spec.template.spec.domain.cpu.socket', field: 'socket', type: 'CPU', suggestion: 'sockets' }]);
  });

  it('every field of the generated tree is one KubeVirt’s swagger defines at that place', function () {
    // The tree is derived from a package; a field there that KubeVirt does not define would hide a typo.
    const { definitions } = JSON.parse(readFileSync(swaggerPath, 'utf8')) as { definitions: Record<string, SwaggerSchema> };
    const extra: string[] = [];
    const seen = new Set<string>();
    const walk = (definition: string, type: string): void => {
      if (seen.has(type)) return;
      seen.add(type);
      const properties = definitions[definition]?.properties ?? {};
      for (const [field, child] of Object.entries(KUBEVIRT_FIELDS[type] ?? {})) {
        const schema = properties[field];
        if (schema === undefined) {
          extra.push(`${type}.${field}`);
          continue;
        }
        const ref = (schema.$ref ?? schema.items?.$ref)?.replace('#/definitions/', '');
        if (child !== null && ref !== undefined) walk(ref, child);
      }
    };
    walk('v1.VirtualMachine', 'V1VirtualMachine');
    assert.ok(seen.size > 100, `${seen.size} types compared`);
    assert.deepEqual(extra, []);
  });

  it('all VirtualMachines in ../shared/kubevirt/examples give zero unknown-field warnings', async function () {
    let vms = 0;
    for (const file of readdirSync(examplesDir).filter((f) => f.endsWith('.yaml'))) {
      for (const doc of parseAllDocuments(readFileSync(path.join(examplesDir, file), 'utf8'))) {
        const value = doc.toJS() as Obj;
        if (value['kind'] !== 'VirtualMachine') continue;
        vms++;
        assert.deepEqual(unknownVirtualMachineFields(value), [], file);
      }
    }
    assert.ok(vms >= 10, `${vms} example VMs`);
  });

  it('suggests by edit distance, ignoring case, within a third of the word', function () {
    assert.equal(editDistance('socket', 'sockets'), 1);
    assert.equal(editDistance('cpu', 'cup'), 1, 'a swap of neighbours is one edit');
    assert.equal(closest('socket', ['cores', 'sockets', 'threads']), 'sockets');
    assert.equal(closest('runstrategy', ['running', 'runStrategy']), 'runStrategy');
    assert.equal(closest('frobnicate', ['cpu', 'memory', 'devices']), null);
  });
});

describe('--prune never deletes a VM over a mistake in its file (Reconciler on the embedded simulator)', function () {
  this.timeout(120_000);
  let server: GitServer;
  let work: WorkingClone;
  let url: string;
  let dir: string;
  let cluster: SimCluster;
  let r: Reconciler;
  let sockets = 2;

  before(async function () {
    server = await startGitServer();
    dir = mkdtempSync(path.join(tmpdir(), 'vmroll-prune-'));
    url = await server.createBareRepo('fleet');
    work = await server.createWorkingClone('fleet');
    for (const f of ['web.yaml', 'db.yaml', 'batch.yaml']) await work.write(`vms/${f}`, readFileSync(path.join(EXAMPLE, f), 'utf8'));
    await work.commit('three VMs');
    await work.push();
    cluster = new SimCluster();
    r = new Reconciler({ source: new GitSource({ repo: url, cacheDir: path.join(dir, 'cache') }), repoLabel: url, ref: 'main', path: 'vms', cluster, prune: true, logger: silent });
    const first = await r.reconcile();
    assert.deepEqual(first.plan.errors, []);
    assert.equal((await cluster.listVirtualMachines()).length, 3);
  });
  after(async function () {
    r?.close();
    await server?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  const names = async (): Promise<string[]> => (await cluster.listVirtualMachines()).map((v) => String((v['metadata'] as Obj)['name'])).sort();
  const dbYaml = (): string => readFileSync(path.join(EXAMPLE, 'db.yaml'), 'utf8');

  /** Commits the broken db file and a change to web, syncs with the running reconciler and with a fresh one, and checks that db survives both. */
  async function breakDb(label: string, write: () => Promise<unknown>, expected: RegExp, fresh = true): Promise<void> {
    await write();
    sockets = sockets === 2 ? 3 : 2;
    await work.write('vms/web.yaml', readFileSync(path.join(EXAMPLE, 'web.yaml'), 'utf8').replace('sockets: 2', `sockets: ${sockets}`));
    await work.commit(`${label}, and web to ${sockets} sockets`);
    await work.push();
    const report = await r.reconcile();
    assert.deepEqual(await names(), ['batch', 'db', 'web'], `${label}: nothing pruned`);
    assert.equal(report.plan.vms.find((v) => v.name === 'web')?.action, 'update', `${label}: web still syncs`);
    assert.ok(!report.plan.vms.some((v) => v.action === 'delete'), `${label}: no delete planned`);
    assert.ok(report.plan.errors.some((e) => expected.test(`${e.file}:${e.line} ${e.message}`)), `${label}: ${JSON.stringify(report.plan.errors)}`);
    if (fresh) {
      // A new process (every --once, every restart) knows nothing of the last load: the file still holds db.
      const other = new Reconciler({ source: new GitSource({ repo: url, cacheDir: path.join(dir, `cache-${label.replace(/\W+/g, '-')}`) }), repoLabel: url, ref: 'main', path: 'vms', cluster, prune: true, logger: silent });
      try {
        const cold = await other.reconcile();
        assert.ok(!cold.plan.vms.some((v) => v.action === 'delete'), `${label}: a fresh reconciler deletes nothing`);
        assert.deepEqual(await names(), ['batch', 'db', 'web']);
      } finally {
        other.close();
      }
    }
  }

  async function repairDb(): Promise<void> {
    await work.write('vms/db.yaml', dbYaml());
    await work.commit('repair db');
    await work.push();
    const report = await r.reconcile();
    assert.deepEqual(report.plan.errors, []);
    assert.deepEqual(await names(), ['batch', 'db', 'web']);
  }

  it('kind typo', async function () {
    await breakDb('kind typo', () => work.write('vms/db.yaml', dbYaml().replace('kind: VirtualMachine', 'kind: VirtualMachin')), /^vms\/db\.yaml:3 kind "VirtualMachin" is not a kind vmroll knows; did you mean "VirtualMachine"\?$/);
    await repairDb();
  });

  it('apiVersion typos', async function () {
    await breakDb('apiVersion v11', () => work.write('vms/db.yaml', dbYaml().replace('apiVersion: kubevirt.io/v1', 'apiVersion: kubevirt.io/v11')), /^vms\/db\.yaml:2 apiVersion "kubevirt\.io\/v11" is not a version KubeVirt serves/);
    await breakDb('apiVersion group', () => work.write('vms/db.yaml', dbYaml().replace('apiVersion: kubevirt.io/v1', 'apiVersion: kubvirt.io/v1')), /^vms\/db\.yaml:2 apiVersion "kubvirt\.io\/v1" is not KubeVirt's API group; did you mean "kubevirt\.io\/v1"\?$/);
    await repairDb();
  });

  it('kind: List export (kubectl get vm -o yaml > vms/db.yaml) keeps db, read from the list', async function () {
    // What kubectl prints: the live object, server-set metadata and status included, in a v1 List.
    const live = cluster.store.get('VirtualMachine', 'shop', 'db') as Obj;
    assert.ok(live);
    await work.write('vms/db.yaml', stringify({ apiVersion: 'v1', kind: 'List', metadata: { resourceVersion: '' }, items: [live] }));
    sockets = sockets === 2 ? 3 : 2;
    await work.write('vms/web.yaml', readFileSync(path.join(EXAMPLE, 'web.yaml'), 'utf8').replace('sockets: 2', `sockets: ${sockets}`));
    await work.commit('db as a kubectl export');
    await work.push();
    const report = await r.reconcile();
    assert.deepEqual(report.plan.errors, []);
    assert.deepEqual(await names(), ['batch', 'db', 'web']);
    assert.equal(report.plan.vms.find((v) => v.name === 'web')?.action, 'update', 'web still syncs');
    assert.equal(report.plan.vms.find((v) => v.name === 'db')?.action, 'none', 'db is still defined, read from the list, and in sync');
    await repairDb();
  });

  it('invalid names: DB, db..x, 254 characters', async function () {
    for (const bad of ['DB', 'db..x', 'd'.repeat(254)]) {
      await breakDb(`name ${bad.slice(0, 10)}`, () => work.write('vms/db.yaml', dbYaml().replace('name: db', `name: ${bad}`)), /^vms\/db\.yaml:5 VirtualMachine shop\/\S+: metadata\.name must be a lowercase RFC 1123 subdomain/, bad === 'DB');
    }
    await repairDb();
  });

  it('a backslash file name: the VM it now holds is kept, the rest syncs', async function () {
    await breakDb('backslash', () => work.git('mv', 'vms/db.yaml', 'vms/a\\b.yaml'), /^vms\/a\\b\.yaml:1 path refused: the name "a\\b\.yaml" contains a backslash/);
    await work.git('mv', 'vms/a\\b.yaml', 'vms/db.yaml');
    await work.commit('rename back');
    await work.push();
    const report = await r.reconcile();
    assert.deepEqual(report.plan.errors, []);
    assert.deepEqual(await names(), ['batch', 'db', 'web']);
  });
});
