/** KubeVirt's hotplug ceilings (rollout/ceilings.ts), the start revision's name, and the object readers, as pure functions. */
import assert from 'node:assert/strict';
import { annotation, conditionsOf, labelsOf, metaOf, objectKey, specOf } from '../reconciler/cluster/object.ts';
import { type CeilingSettings, hotplugCeilings, maxGuestCeiling, maxSocketsCeiling, parseStartRevisionName, resolveCluster, startRevisionName } from '../reconciler/rollout/index.ts';

const live = (over: Partial<CeilingSettings> = {}): CeilingSettings => ({ strategy: 'LiveUpdate', maxHotplugRatio: 4, maxCpuSockets: undefined, maxGuest: undefined, ...over });

describe('rollout: hotplug ceilings at VMI creation', () => {
  const sockets: Array<{ cpu: object; cluster: CeilingSettings; want: number; why: string }> = [
    { cpu: { sockets: 2, cores: 1, threads: 1 }, cluster: live(), want: 8, why: 'sockets × maxHotplugRatio' },
    { cpu: {}, cluster: live(), want: 4, why: 'a missing topology counts one of each' },
    { cpu: { sockets: 2, cores: 1, threads: 1 }, cluster: live({ maxHotplugRatio: 2 }), want: 4, why: 'the ratio from liveUpdateConfiguration' },
    { cpu: { sockets: 2, cores: 1, threads: 1 }, cluster: live({ maxCpuSockets: 6 }), want: 6, why: 'maxCpuSockets wins over the ratio' },
    { cpu: { sockets: 8, cores: 1, threads: 1 }, cluster: live({ maxCpuSockets: 6 }), want: 8, why: 'maxCpuSockets is raised to sockets' },
    { cpu: { sockets: 2, cores: 64, threads: 2 }, cluster: live(), want: 4, why: '8 × 128 vCPUs pass 512: 512 / 128' },
    { cpu: { sockets: 8, cores: 64, threads: 2 }, cluster: live(), want: 8, why: 'lowered for 512, but never below sockets' },
    { cpu: { sockets: 1, cores: 64, threads: 2 }, cluster: live({ maxCpuSockets: 16 }), want: 16, why: 'maxCpuSockets is not capped at 512 vCPUs' },
  ];
  for (const c of sockets) {
    it(`maxSockets ${c.want}: ${c.why}`, () => {
      assert.equal(maxSocketsCeiling(c.cpu, c.cluster), c.want);
    });
  }

  const spec = (memory: object, extra: object = {}): Record<string, unknown> => ({ domain: { cpu: { sockets: 1 }, memory }, ...extra });
  it('maxGuest: guest × maxHotplugRatio, or liveUpdateConfiguration.maxGuest', () => {
    assert.equal(maxGuestCeiling(spec({ guest: '2Gi' }), live()), '8Gi');
    assert.equal(maxGuestCeiling(spec({ guest: '2Gi' }), live({ maxGuest: '16Gi' })), '16Gi');
  });
  it('maxGuest: none when ValidateLiveUpdateMemory refuses the candidate or there is no guest memory', () => {
    assert.equal(maxGuestCeiling(spec({ guest: '512Mi' }), live()), undefined, 'below 1Gi of guest memory');
    assert.equal(maxGuestCeiling(spec({ guest: '2Gi' }), live({ maxGuest: '1Gi' })), undefined, 'guest above maxGuest');
    assert.equal(maxGuestCeiling(spec({ guest: '2Gi' }, { architecture: 's390x' }), live()), undefined, 'not x86_64');
    assert.equal(maxGuestCeiling(spec({}), live()), undefined);
  });

  it('setupHotplug: both ceilings under LiveUpdate, none under Stage or on arm64, and never over one the spec sets', () => {
    assert.deepEqual(hotplugCeilings(spec({ guest: '2Gi' }), live()), { maxSockets: 4, maxGuest: '8Gi' });
    assert.deepEqual(hotplugCeilings(spec({ guest: '2Gi' }), live({ strategy: 'Stage' })), {});
    assert.deepEqual(hotplugCeilings(spec({ guest: '2Gi' }, { architecture: 'arm64' }), live()), {});
    assert.deepEqual(hotplugCeilings({ domain: { cpu: { sockets: 1, maxSockets: 3 }, memory: { guest: '2Gi', maxGuest: '4Gi' } } }, live()), {});
    assert.deepEqual(hotplugCeilings({ domain: { cpu: { sockets: 1, maxSockets: 0 }, memory: { guest: '512Mi' } } }, live()), { maxSockets: 4 }, 'maxSockets 0 is unset');
  });

  it('reads its settings from the KubeVirt CR through resolveCluster', () => {
    const kubevirt = {
      kind: 'KubeVirt',
      spec: { configuration: { vmRolloutStrategy: 'LiveUpdate', liveUpdateConfiguration: { maxHotplugRatio: 3, maxGuest: '12Gi' } } },
      status: { observedKubeVirtVersion: 'v1.5.0' },
    };
    assert.deepEqual(hotplugCeilings(spec({ guest: '2Gi' }), resolveCluster(kubevirt)), { maxSockets: 3, maxGuest: '12Gi' });
  });
});

describe('rollout: the start revision name', () => {
  it('names and parses revision-start-vm-<uid>-<generation>, uids with dashes included', () => {
    const uid = '0c1e2a2e-5c6d-4f7e-9a1b-2c3d4e5f6a7b';
    assert.equal(startRevisionName(uid, 3), `revision-start-vm-${uid}-3`);
    assert.deepEqual(parseStartRevisionName(startRevisionName(uid, 12)), { uid, generation: 12 });
    for (const other of ['web-u1-small-v1beta1-1', 'revision-start-vm-abc', 'revision-start-vm--2', 'x-revision-start-vm-a-1']) assert.equal(parseStartRevisionName(other), null, other);
  });
});

describe('cluster/object: reading untyped objects', () => {
  it('reads parts, and missing or malformed ones as empty', () => {
    const vm = { metadata: { name: 'web', namespace: 'shop', labels: { a: '1' }, annotations: { k: 'v', empty: '', n: 3 } }, spec: { running: true }, status: { conditions: [{ type: 'Ready' }, 'junk'] } };
    assert.equal(metaOf(vm), vm.metadata, 'the object itself, so writes land in it');
    assert.deepEqual(specOf(vm), { running: true });
    assert.deepEqual(labelsOf(vm), { a: '1' });
    assert.equal(annotation(vm, 'k'), 'v');
    assert.equal(annotation(vm, 'empty'), null);
    assert.equal(annotation(vm, 'n'), null);
    assert.deepEqual(conditionsOf(vm), [{ type: 'Ready' }]);
    assert.equal(objectKey(vm), 'shop/web');
    const odd = { metadata: 'x', spec: [1], status: { conditions: 'no' } };
    assert.deepEqual([metaOf(odd), specOf(odd), labelsOf(odd), conditionsOf(odd), conditionsOf(undefined), objectKey({})], [{}, {}, {}, [], [], '/']);
  });
});
