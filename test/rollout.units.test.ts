/** The engine's building blocks: quantities, versions and the behaviour table, semantic diff and paths. */
import assert from 'node:assert/strict';
import { diffValues } from '../reconciler/rollout/diff.ts';
import { formatPath, parsePath } from '../reconciler/rollout/paths.ts';
import { formatBytes, parseQuantity } from '../reconciler/rollout/quantity.ts';
import { semanticEqual } from '../reconciler/rollout/semantic.ts';
import { BEHAVIOUR_TABLE, behavioursFor, parseVersion } from '../reconciler/rollout/versions.ts';

describe('quantities', () => {
  const cases: Array<[string | number, bigint | null]> = [
    ['1Gi', 1073741824000n],
    ['1024Mi', 1073741824000n],
    ['1.5Gi', 1610612736000n],
    ['500m', 500n],
    ['2', 2000n],
    [2, 2000n],
    ['1e3', 1000000n],
    ['1k', 1000000n],
    ['0.1', 100n],
    ['1 Gi', null],
    ['fedora', null],
  ];
  for (const [text, milli] of cases) {
    it(`${JSON.stringify(text)} → ${milli}`, () => assert.equal(parseQuantity(text), milli));
  }
  it('formats bytes with the largest exact binary suffix', () => {
    assert.equal(formatBytes(3n * 1024n ** 3n), '3Gi');
    assert.equal(formatBytes(3072n * 1024n ** 2n + 512n * 1024n), '3146240Ki');
    assert.equal(formatBytes(1000n), '1000');
  });
});

describe('versions', () => {
  it('parses releases, pre-releases and development builds', () => {
    assert.deepEqual(parseVersion('v1.8.0'), { major: 1, minor: 8, patch: 0 });
    assert.deepEqual(parseVersion('1.7.2'), { major: 1, minor: 7, patch: 2 });
    assert.deepEqual(parseVersion('v1.9.0-rc.1'), { major: 1, minor: 9, patch: 0 });
    // KubeVirt's main branch past a tag is ahead of that minor's releases.
    assert.deepEqual(parseVersion('v1.9.0-beta.0-1264-gd923fdb815'), { major: 1, minor: 10, patch: 0 });
    assert.equal(parseVersion('latest'), null);
  });

  it('resolves the seed model without a version', () => {
    const b = behavioursFor(null);
    assert.equal(b.model, 'seed');
    assert.equal(b.defaultStrategy, 'Stage');
    assert.equal(b.liveUpdateGateGA, false);
    assert.equal(b.conditionSticky, true);
  });

  it('switches each behaviour at the release the table names', () => {
    const at = (v: string) => behavioursFor(parseVersion(v));
    assert.equal(at('v1.4.9').liveUpdateGateGA, false);
    assert.equal(at('v1.5.0').liveUpdateGateGA, true);
    assert.equal(at('v1.5.3').defaultStrategy, 'Stage');
    assert.equal(at('v1.6.0').defaultStrategy, 'LiveUpdate');
    assert.equal(at('v1.7.5').conditionSticky, true);
    assert.equal(at('v1.8.0').conditionSticky, false);
    assert.equal(at('v1.3.0').tolerationsLive, false);
    assert.equal(at('v1.4.0').tolerationsLive, true);
    assert.deepEqual(['v1.7.0', 'v1.8.1', 'v1.9.2', 'v1.10.0'].map((v) => at(v).nadRef), ['restart', 'gated', 'live', 'liveIfMigratable']);
    assert.deepEqual(['v1.2.4', 'v1.3.0'].map((v) => at(v).allVolumesNeutralisedUnderLiveUpdate), [true, false]);
  });

  it('lists its versions in ascending order in every row', () => {
    for (const [key, row] of Object.entries(BEHAVIOUR_TABLE)) {
      const versions = row.since.map(([v]) => parseVersion(v));
      assert.ok(versions.every((v) => v !== null), key);
      for (let i = 1; i < versions.length; i++) {
        const [a, b] = [versions[i - 1]!, versions[i]!];
        assert.ok(a.major < b.major || (a.major === b.major && (a.minor < b.minor || (a.minor === b.minor && a.patch < b.patch))), key);
      }
    }
  });
});

describe('semantic comparison and diff', () => {
  it('compares quantities by value and nil with empty', () => {
    assert.ok(semanticEqual({ memory: { guest: '1Gi' } }, { memory: { guest: '1024Mi' } }));
    assert.ok(semanticEqual({ requests: { cpu: '1' } }, { requests: { cpu: '1000m' } }));
    assert.ok(semanticEqual({ tolerations: [] }, {}));
    assert.ok(!semanticEqual({ image: '1' }, { image: '1.0' }), 'strings that are not quantity fields compare as strings');
  });

  it('reports changes inside named list elements by name, and a reorder once', () => {
    const a = { volumes: [{ name: 'a', pvc: { claimName: 'x' } }, { name: 'b', pvc: { claimName: 'y' } }] };
    const b = { volumes: [{ name: 'b', pvc: { claimName: 'y' } }, { name: 'a', pvc: { claimName: 'z' } }, { name: 'c' }] };
    const changes = diffValues(a, b).map((c) => `${formatPath(c.segments)}${c.reorder ? ' (reorder)' : ''}`);
    assert.deepEqual(changes, ['volumes[name=a].pvc.claimName', 'volumes[name=c]', 'volumes (reorder)']);
  });

  it('quotes keys that are not identifiers, and parses its own paths back', () => {
    const p = formatPath(['spec', 'template', 'metadata', 'annotations', 'descheduler.alpha.kubernetes.io/evict']);
    assert.equal(p, 'spec.template.metadata.annotations["descheduler.alpha.kubernetes.io/evict"]');
    assert.deepEqual(parsePath(p), ['spec', 'template', 'metadata', 'annotations', 'descheduler.alpha.kubernetes.io/evict']);
    assert.deepEqual(parsePath('spec.template.spec.volumes[name=data].persistentVolumeClaim'), ['spec', 'template', 'spec', 'volumes', { name: 'data' }, 'persistentVolumeClaim']);
  });
});
