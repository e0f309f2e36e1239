// The project's own schemas: cross-checked against KubeVirt's published schema and example manifests
// (read from ../shared, never copied in), exercised on bad input, and the generated types kept current.
import assert from 'node:assert/strict';
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Ajv, type ValidateFunction } from 'ajv';
import ajvFormats from 'ajv-formats';
import { parseAllDocuments } from 'yaml';
import { checkGeneratedTypes } from '../scripts/gen-types.ts';
import {
  validateKubeVirt,
  validateVirtualMachine,
  validateVirtualMachineInstance,
  validateVmPlan,
  type ValidationResult,
} from '../reconciler/validate.ts';
import type { VirtualMachine } from '../schemas/generated/virtualmachine.ts';
import type { VmPlan } from '../schemas/generated/vmplan.ts';

const projectRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const sharedDir = path.resolve(projectRoot, '..', 'shared');
const examplesDir = path.resolve(sharedDir, 'kubevirt', 'examples');
const kubevirtSchemaPath = path.resolve(sharedDir, 'schemas', 'kubevirt-v1.swagger-subset.json');

interface UpstreamValidators {
  virtualMachine: ValidateFunction;
  virtualMachineInstance: ValidateFunction;
  kubeVirt: ValidateFunction;
}

// KubeVirt publishes Swagger 2.0, whose `definitions` are JSON Schema draft-04-ish with OpenAPI formats
// (int32, int64, ...) and x-kubernetes-* keywords: wrap them in one schema and let ajv ignore the extras.
function compileKubeVirtSchema(): UpstreamValidators {
  const swagger = JSON.parse(readFileSync(kubevirtSchemaPath, 'utf8')) as { definitions: Record<string, unknown> };
  const ajv = new Ajv({ strict: false, allErrors: true, allowUnionTypes: true });
  ajvFormats.default(ajv);
  ajv.addSchema({ $id: 'kubevirt-swagger', definitions: swagger.definitions });
  const get = (name: string): ValidateFunction => {
    const validate = ajv.getSchema(`kubevirt-swagger#/definitions/${name}`);
    assert.ok(validate, `KubeVirt's schema has no definition ${name}`);
    return validate;
  };
  return {
    virtualMachine: get('v1.VirtualMachine'),
    virtualMachineInstance: get('v1.VirtualMachineInstance'),
    kubeVirt: get('v1.KubeVirt'),
  };
}

function assertUpstreamValid(validate: ValidateFunction, doc: unknown, what: string): void {
  const valid = validate(doc);
  assert.ok(valid, `${what} fails KubeVirt's schema: ${JSON.stringify(validate.errors, null, 2)}`);
}

function assertOurValid<T>(result: ValidationResult<T>, what: string): void {
  assert.ok(result.ok, `${what} fails the project schema: ${JSON.stringify(result.ok ? [] : result.errors)}`);
}

function loadYamlDocuments(file: string): unknown[] {
  return parseAllDocuments(readFileSync(file, 'utf8')).map((doc) => {
    assert.deepEqual(doc.errors, [], `${file} does not parse`);
    return doc.toJS() as unknown;
  });
}

function kindOf(doc: unknown): unknown {
  return typeof doc === 'object' && doc !== null ? (doc as Record<string, unknown>)['kind'] : undefined;
}

/** A VM, running instance and KubeVirt CR that use every field the project schema describes. */
function richObjects(): { vm: unknown; vmi: unknown; kubevirt: unknown } {
  const templateSpec = {
    domain: {
      cpu: { sockets: 2, cores: 1, threads: 1, maxSockets: 8, model: 'host-passthrough' },
      memory: { guest: '2Gi', maxGuest: '8Gi' },
      resources: { requests: { memory: '2Gi', cpu: '500m' }, limits: { cpu: 2 } },
      firmware: { uuid: '5d307ca9-b3ef-428c-8861-06e72d69f223', bootloader: { efi: { secureBoot: false } } },
      machine: { type: 'q35' },
      devices: {
        networkInterfaceMultiqueue: true,
        disks: [
          { name: 'root', disk: { bus: 'virtio' }, bootOrder: 1 },
          { name: 'data', disk: { bus: 'scsi' } },
          { name: 'iso', cdrom: { bus: 'sata', readonly: true } },
        ],
        interfaces: [
          { name: 'default', masquerade: {}, model: 'virtio', ports: [{ port: 22, protocol: 'TCP' }] },
          { name: 'storage', bridge: {}, macAddress: '02:00:00:00:00:01', state: 'up' },
        ],
      },
    },
    networks: [
      { name: 'default', pod: {} },
      { name: 'storage', multus: { networkName: 'infra/storage' } },
    ],
    volumes: [
      { name: 'root', dataVolume: { name: 'web-root' } },
      { name: 'data', persistentVolumeClaim: { claimName: 'web-data', hotpluggable: true } },
      { name: 'iso', containerDisk: { image: 'quay.io/example/tools:1' } },
    ],
    nodeSelector: { 'kubernetes.io/arch': 'amd64' },
    affinity: { nodeAffinity: { requiredDuringSchedulingIgnoredDuringExecution: { nodeSelectorTerms: [] } } },
    tolerations: [{ key: 'dedicated', operator: 'Equal', value: 'vms', effect: 'NoSchedule' }],
    architecture: 'amd64',
    hostname: 'web',
    evictionStrategy: 'LiveMigrate',
    terminationGracePeriodSeconds: 30,
  };
  const vm = {
    apiVersion: 'kubevirt.io/v1',
    kind: 'VirtualMachine',
    metadata: {
      name: 'web',
      namespace: 'prod',
      uid: '0c1e2a2e-5c6d-4f7e-9a1b-2c3d4e5f6a7b',
      generation: 4,
      labels: { app: 'web' },
      annotations: { 'vmroll.dev/source': 'vms/web.yaml' },
    },
    spec: {
      runStrategy: 'Always',
      instancetype: { kind: 'VirtualMachineClusterInstancetype', name: 'u1.medium', revisionName: 'web-u1.medium-1' },
      preference: { name: 'fedora' },
      dataVolumeTemplates: [
        {
          metadata: { name: 'web-root' },
          spec: { storage: { resources: { requests: { storage: '10Gi' } } }, sourceRef: { kind: 'DataSource', name: 'fedora' } },
        },
      ],
      updateVolumesStrategy: 'Replacement',
      template: { metadata: { labels: { app: 'web' } }, spec: templateSpec },
    },
    status: {
      printableStatus: 'Running',
      ready: true,
      conditions: [
        { type: 'Ready', status: 'True', lastTransitionTime: '2026-01-02T03:04:05Z' },
        {
          type: 'RestartRequired',
          status: 'True',
          message: 'a non-live-updatable field was changed in the template spec',
          lastProbeTime: null,
          lastTransitionTime: null,
        },
      ],
    },
  };
  const vmi = {
    apiVersion: 'kubevirt.io/v1',
    kind: 'VirtualMachineInstance',
    metadata: { name: 'web', namespace: 'prod' },
    spec: templateSpec,
    status: {
      phase: 'Running',
      nodeName: 'node-1',
      conditions: [{ type: 'LiveMigratable', status: 'True' }],
      memory: { guestAtBoot: '2Gi', guestCurrent: '2Gi', guestRequested: '2Gi' },
      currentCPUTopology: { sockets: 2, cores: 1, threads: 1 },
      migrationState: { completed: false, startTimestamp: '2026-01-02T03:04:05Z', sourceNode: 'node-1', targetNode: 'node-2' },
      interfaces: [{ name: 'default', interfaceName: 'eth0', mac: '02:00:00:00:00:02', ipAddress: '10.0.0.5', ipAddresses: ['10.0.0.5'] }],
      virtualMachineRevisionName: 'revision-start-vm-0c1e2a2e-5c6d-4f7e-9a1b-2c3d4e5f6a7b-3',
    },
  };
  const kubevirt = {
    apiVersion: 'kubevirt.io/v1',
    kind: 'KubeVirt',
    metadata: { name: 'kubevirt', namespace: 'kubevirt' },
    spec: {
      configuration: {
        vmRolloutStrategy: 'LiveUpdate',
        developerConfiguration: { featureGates: ['VMLiveUpdateFeatures'] },
        liveUpdateConfiguration: { maxHotplugRatio: 4, maxCpuSockets: 16, maxGuest: '64Gi' },
      },
    },
    status: { observedKubeVirtVersion: 'v1.6.2', phase: 'Deployed' },
  };
  return { vm, vmi, kubevirt };
}

describe('VirtualMachine schema against KubeVirt', function () {
  const exampleFiles = existsSync(examplesDir) ? readdirSync(examplesDir).filter((f) => f.endsWith('.yaml')).sort() : [];
  let upstream: UpstreamValidators;

  before(function () {
    if (!existsSync(examplesDir) || !existsSync(kubevirtSchemaPath)) {
      console.log(`    skipped: KubeVirt's examples and published schema are read from ${sharedDir}, which is missing`);
      this.skip();
    }
    upstream = compileKubeVirtSchema();
  });

  it('finds VirtualMachine examples and recognises the VirtualMachinePool as another kind', function () {
    const kinds = exampleFiles.flatMap((file) =>
      loadYamlDocuments(path.join(examplesDir, file)).map((doc) => ({ file, kind: kindOf(doc) })),
    );
    assert.ok(kinds.filter((k) => k.kind === 'VirtualMachine').length >= 10, 'expected KubeVirt example VMs');
    assert.deepEqual(
      kinds.filter((k) => k.kind !== 'VirtualMachine'),
      [{ file: 'vm-pool-cirros.yaml', kind: 'VirtualMachinePool' }],
    );
  });

  for (const file of exampleFiles) {
    it(`${file}: VirtualMachines pass both schemas, other kinds are rejected at kind`, function () {
      for (const [index, doc] of loadYamlDocuments(path.join(examplesDir, file)).entries()) {
        const what = `${file} document ${index + 1}`;
        if (kindOf(doc) === 'VirtualMachine') {
          assertOurValid(validateVirtualMachine(doc), what);
          assertUpstreamValid(upstream.virtualMachine, doc, what);
        } else {
          const result = validateVirtualMachine(doc);
          assert.ok(!result.ok && result.errors.some((e) => e.path === 'kind'), `${what} is not rejected at kind`);
        }
      }
    });
  }

  it('a VM, VMI and KubeVirt CR using the fields vmroll reads pass both schemas', function () {
    const { vm, vmi, kubevirt } = richObjects();
    assertOurValid(validateVirtualMachine(vm), 'rich VirtualMachine');
    assertUpstreamValid(upstream.virtualMachine, vm, 'rich VirtualMachine');
    assertOurValid(validateVirtualMachineInstance(vmi), 'rich VirtualMachineInstance');
    assertUpstreamValid(upstream.virtualMachineInstance, vmi, 'rich VirtualMachineInstance');
    assertOurValid(validateKubeVirt(kubevirt), 'rich KubeVirt');
    assertUpstreamValid(upstream.kubeVirt, kubevirt, 'rich KubeVirt');
  });
});

describe('VirtualMachine schema', function () {
  function minimalVm(): VirtualMachine {
    return {
      apiVersion: 'kubevirt.io/v1',
      kind: 'VirtualMachine',
      metadata: { name: 'web' },
      spec: { runStrategy: 'Always', template: { spec: { domain: { memory: { guest: '1Gi' } } } } },
    };
  }

  it('accepts a VM without devices and with fields it does not know', function () {
    const vm = minimalVm();
    vm.spec.template.spec!.domain['somethingNew'] = { enabled: true };
    vm.spec['futureField'] = 1;
    assertOurValid(validateVirtualMachine(vm), 'minimal VirtualMachine');
  });

  it('rejects an unknown runStrategy and names spec.runStrategy', function () {
    const vm = minimalVm();
    (vm.spec as Record<string, unknown>)['runStrategy'] = 'Sometimes';
    const result = validateVirtualMachine(vm);
    assert.ok(!result.ok, 'runStrategy Sometimes was accepted');
    const error = result.errors.find((e) => e.path === 'spec.runStrategy');
    assert.ok(error, `no error at spec.runStrategy: ${JSON.stringify(result.errors)}`);
    assert.match(error.message, /Always.*Halted/);
  });

  it('rejects a VM without metadata.name and names metadata.name', function () {
    const vm = minimalVm();
    delete (vm.metadata as Partial<VirtualMachine['metadata']>).name;
    const result = validateVirtualMachine(vm);
    assert.ok(!result.ok, 'a VM without a name was accepted');
    assert.deepEqual(result.errors, [{ path: 'metadata.name', message: 'is required' }]);
  });

  it('rejects a malformed quantity with its full path', function () {
    const vm = minimalVm();
    vm.spec.template.spec!.domain.memory!.guest = '1 GB';
    const result = validateVirtualMachine(vm);
    assert.ok(!result.ok, 'guest memory "1 GB" was accepted');
    assert.deepEqual(
      result.errors.map((e) => e.path),
      ['spec.template.spec.domain.memory.guest'],
    );
  });
});

describe('VmPlan schema', function () {
  function plan(): VmPlan {
    return {
      commit: '3f1c2a9d0b7e4c5a6f8e9d0c1b2a3f4e5d6c7b8a',
      vms: [
        {
          namespace: 'prod',
          name: 'web',
          action: 'update',
          strategy: 'LiveUpdate',
          restartRequired: true,
          condition: 'set',
          conditionMessage: 'a non-live-updatable field was changed in the template spec',
          reasons: [{ path: 'spec.template.spec.domain.cpu.cores', message: 'cores cannot be hot-plugged' }],
          changes: [
            { path: 'spec.template.spec.domain.cpu.sockets', from: 2, to: 4, rollout: 'live' },
            { path: 'spec.template.spec.domain.cpu.cores', from: 1, to: 2, rollout: 'staged', why: 'only sockets are hot-pluggable' },
            { path: 'spec.template.spec.domain.memory.maxGuest', to: '8Gi', rollout: 'staged' },
          ],
          waiting: [],
          kubevirt: { version: 'v1.6.2', model: 'v1.6' },
        },
      ],
      errors: [{ file: 'vms/db.yaml', line: 7, message: 'spec.runStrategy must be one of ...', path: 'spec.runStrategy' }],
    };
  }

  it('accepts a valid plan', function () {
    assertOurValid(validateVmPlan(plan()), 'plan');
  });

  it('rejects rollout "soon" and names the change', function () {
    const bad = plan() as unknown as { vms: { changes: { rollout: string }[] }[] };
    bad.vms[0]!.changes[0]!.rollout = 'soon';
    const result = validateVmPlan(bad);
    assert.ok(!result.ok, 'rollout "soon" was accepted');
    assert.deepEqual(
      result.errors.map((e) => e.path),
      ['vms[0].changes[0].rollout'],
    );
  });
});

describe('generated types', function () {
  it('schemas/generated matches the schemas', async function () {
    const stale = await checkGeneratedTypes();
    assert.deepEqual(stale, [], `stale generated files: ${stale.join(', ')}; run \`npm run gen\``);
  });
});
