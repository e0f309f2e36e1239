/**
 * Units of ownership: the repository identity (normalised URL plus path, a local checkout's
 * origin, an explicit identity), who owns a live VM, and the field sets read from managedFields.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { normaliseRepoUrl, repositoryIdentity } from '../reconciler/apply/identity.ts';
import { Owner, ownerOf } from '../reconciler/apply/ownership.ts';
import { recordUpdate, serverSideApply } from '../reconciler/cluster/sim/patch.ts';
import { compareOwnedFields, declaredFields, ownedFields, projectApply } from '../reconciler/cluster/ssa.ts';
import { parseConfig } from '../reconciler/configFile.ts';
import type { Obj } from '../reconciler/rollout/index.ts';

describe('repository identity', () => {
  it('normalises a URL: scheme, credentials, .git, trailing slash and default port go, the host is lowercased', () => {
    const cases: Array<[string, string | null]> = [
      ['https://user:tok@Git.Example.com/acme/vms.git/', 'git.example.com/acme/vms'],
      ['https://git.example.com/acme/vms', 'git.example.com/acme/vms'],
      ['http://git.example.com:80/acme/vms.git', 'git.example.com/acme/vms'],
      ['https://git.example.com:8443/acme/vms.git', 'git.example.com:8443/acme/vms'],
      ['ssh://git@git.example.com:2222/acme/vms.git', 'git.example.com/acme/vms'],
      ['git@Git.Example.com:acme/vms.git', 'git.example.com/acme/vms'],
      ['https://git.example.com//acme//vms.git?x=1#frag', 'git.example.com/acme/vms'],
      ['/srv/git/vms', null],
      ['./vms', null],
      ['C:\\repos\\vms', null],
    ];
    for (const [input, want] of cases) assert.equal(normaliseRepoUrl(input), want, input);
  });

  it('adds the path, or takes the identity set explicitly', async () => {
    assert.equal((await repositoryIdentity({ repo: 'https://t:x@git.example.com/acme/vms.git', path: './clusters/prod/' })).id, 'git.example.com/acme/vms//clusters/prod');
    assert.equal((await repositoryIdentity({ repo: 'https://git.example.com/acme/vms.git' })).id, 'git.example.com/acme/vms');
    assert.equal((await repositoryIdentity({ repo: 'https://git.example.com/acme/vms.git', path: 'vms', identity: 'shop-prod' })).id, 'shop-prod');
  });

  it("a local checkout takes its origin's URL; without one, its absolute path", async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'vmroll-identity-'));
    try {
      const checkout = path.join(dir, 'checkout');
      const bare = path.join(dir, 'bare.git');
      execFileSync('git', ['init', '--quiet', checkout]);
      execFileSync('git', ['init', '--quiet', '--bare', bare]);
      const plain = await repositoryIdentity({ repo: checkout, path: 'vms' });
      assert.equal(plain.id, `${checkout}//vms`);
      assert.equal(plain.localPath, checkout);
      execFileSync('git', ['-C', checkout, 'remote', 'add', 'origin', 'https://x-access-token:ghs_secret@github.com/Acme/VMs.git']);
      execFileSync('git', ['-C', bare, 'remote', 'add', 'origin', 'git@github.com:Acme/VMs.git']);
      const viaOrigin = await repositoryIdentity({ repo: checkout, path: 'vms' });
      assert.equal(viaOrigin.id, 'github.com/Acme/VMs//vms');
      assert.ok(!viaOrigin.id.includes('ghs_secret'), 'no credentials');
      assert.equal((await repositoryIdentity({ repo: bare, path: 'vms' })).id, 'github.com/Acme/VMs//vms', 'a bare repository and an ssh origin agree');
      assert.equal((await repositoryIdentity({ repo: path.relative(process.cwd(), checkout), path: 'vms' })).id, 'github.com/Acme/VMs//vms');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('tells this, legacy, other and unmanaged VMs apart', async () => {
    const identity = await repositoryIdentity({ repo: 'https://git.example.com/acme/vms.git', path: 'vms' });
    const vm = (labels: Obj, annotations: Obj): Obj => ({ metadata: { name: 'db', namespace: 'shop', labels, annotations } });
    const managed = { 'app.kubernetes.io/managed-by': 'vmroll' };
    const at = (repo: string, file = 'vms/db.yaml'): Obj => vm(managed, { 'vmroll.dev/source-repo': repo, 'vmroll.dev/source-path': file });
    assert.equal(ownerOf(at('git.example.com/acme/vms//vms'), identity).owner, Owner.this);
    assert.equal(ownerOf(at('https://git.example.com/acme/vms.git'), identity).owner, Owner.legacy);
    assert.equal(ownerOf(at('https://GIT.example.com/acme/vms/'), identity).owner, Owner.legacy);
    assert.equal(ownerOf(at('https://git.example.com/acme/vms.git', 'other/db.yaml'), identity).owner, Owner.other, 'an old VM from another path of the repository');
    assert.equal(ownerOf(at('git.example.com/acme/vms//staging'), identity).owner, Owner.other);
    assert.equal(ownerOf(at('git.example.com/acme/other'), identity).owner, Owner.other);
    assert.equal(ownerOf(vm({}, { 'vmroll.dev/source-repo': 'git.example.com/acme/vms//vms' }), identity).owner, Owner.none, 'no managed-by label');
    assert.equal(ownerOf(vm(managed, {}), identity).owner, Owner.none, 'no source annotation');
  });

  it('vmroll.yaml takes an identity per repository, refuses it twice and at the top level beside repositories', () => {
    const config = parseConfig(['repositories:', '  - name: shop', '    url: https://git.example.com/shop/vms.git', '    identity: shop-prod'].join('\n'), '/etc/vmroll/vmroll.yaml');
    assert.equal(config.repositories?.[0]?.identity, 'shop-prod');
    assert.throws(
      () => parseConfig(['repositories:', '  - name: a', '    url: https://h/a.git', '    identity: same', '  - name: b', '    url: https://h/b.git', '    identity: same'].join('\n'), '/etc/vmroll/vmroll.yaml'),
      /vmroll\.yaml:7: repositories\[1\]\.identity: "same" is already the identity of repositories\[0\]/,
    );
    assert.throws(() => parseConfig(['repositories:', '  - name: a', '    url: https://h/a.git', '    identity: " padded"'].join('\n'), '/etc/vmroll/vmroll.yaml'), /repositories\[0\]\.identity: must be one line/);
    assert.throws(() => parseConfig(['identity: x', 'repositories:', '  - name: a', '    url: https://h/a.git'].join('\n'), '/etc/vmroll/vmroll.yaml'), /vmroll\.yaml:1: identity: belongs to one repository/);
    assert.equal(parseConfig(['repo: https://h/a.git', 'identity: single'].join('\n'), '/etc/vmroll/vmroll.yaml').identity, 'single');
  });
});

describe('managedFields field sets (cluster/ssa.ts)', () => {
  const live = (fieldsV1: Obj, extra: Obj = {}): Obj => ({
    metadata: {
      name: 'web',
      labels: { app: 'web' },
      managedFields: [
        { manager: 'vmroll', operation: 'Apply', apiVersion: 'kubevirt.io/v1', fieldsType: 'FieldsV1', fieldsV1 },
        { manager: 'virt-controller', operation: 'Update', apiVersion: 'kubevirt.io/v1', fieldsType: 'FieldsV1', fieldsV1: { 'f:status': { 'f:ready': {} } } },
        { manager: 'vmroll', operation: 'Apply', subresource: 'status', fieldsType: 'FieldsV1', fieldsV1: { 'f:status': { 'f:x': {} } } },
      ],
    },
    spec: { running: true, template: { spec: { disks: [{ name: 'a' }] } } },
    status: { ready: true },
    ...extra,
  });

  it("reads vmroll's Apply entry only; a granular list is one leaf; '.' alone is an empty map", () => {
    const owned = ownedFields(live({ 'f:metadata': { 'f:labels': { '.': {}, 'f:app': {} } }, 'f:spec': { 'f:running': {}, 'f:template': { 'f:spec': { 'f:disks': { 'k:{"name":"a"}': { '.': {}, 'f:name': {} } }, 'f:empty': { '.': {} } } } } }), 'vmroll');
    assert.deepEqual([...(owned ?? [])].sort(), [
      '["metadata","labels","app"]',
      '["spec","running"]',
      '["spec","template","spec","disks"]',
      '["spec","template","spec","empty"]',
    ]);
    assert.equal(ownedFields({ metadata: { name: 'x' } }, 'vmroll'), null, 'no managedFields: the caller falls back');
    assert.deepEqual([...(ownedFields({ metadata: { managedFields: [] } }, 'vmroll') ?? ['x'])], [], 'managedFields without vmroll: owns nothing');
  });

  it('declares leaves the way server-side apply records them: nulls are no opinion, status and server metadata are not applied', () => {
    const declared = declaredFields({ apiVersion: 'v', kind: 'K', metadata: { name: 'web', namespace: 's', labels: { app: 'web' }, creationTimestamp: null }, spec: { a: null, b: { c: null }, d: {}, e: [1] }, status: { x: 1 } });
    assert.deepEqual([...declared].sort(), ['["metadata","labels","app"]', '["spec","d"]', '["spec","e"]']);
  });

  it('in sync only when vmroll owns exactly what is declared, with the same values', () => {
    const fields = { 'f:metadata': { 'f:labels': { 'f:app': {} } }, 'f:spec': { 'f:running': {}, 'f:template': { 'f:spec': { 'f:disks': {} } } } };
    const desired: Obj = { metadata: { name: 'web', labels: { app: 'web' } }, spec: { running: true, template: { spec: { disks: [{ name: 'a' }] } } } };
    assert.deepEqual(compareOwnedFields(desired, live(fields), 'vmroll'), { inSync: true, drift: [] });
    const fewer: Obj = { metadata: { name: 'web', labels: { app: 'web' } }, spec: { running: true } };
    assert.deepEqual(compareOwnedFields(fewer, live(fields), 'vmroll')?.drift, [{ path: 'spec.template.spec.disks', drift: 'removed' }]);
    const more: Obj = { ...desired, spec: { running: true, template: { spec: { disks: [{ name: 'a' }] } }, runStrategy: 'Always' } };
    assert.deepEqual(compareOwnedFields(more, live(fields), 'vmroll')?.drift, [{ path: 'spec.runStrategy', drift: 'notOwned' }]);
    const other: Obj = { ...desired, spec: { running: false, template: { spec: { disks: [{ name: 'a' }] } } } };
    assert.deepEqual(compareOwnedFields(other, live(fields), 'vmroll')?.drift, [{ path: 'spec.running', drift: 'differs' }]);
    assert.equal(compareOwnedFields(other, live(fields), 'vmroll', (p) => p.join('.') === 'spec.running')?.inSync, true, 'a value the caller ignores');
  });

  it("projects an apply the way the simulator's API server performs it", () => {
    const now = '2026-01-01T00:00:00Z';
    const vm = (labels: Obj, spec: Obj): Obj => ({ apiVersion: 'kubevirt.io/v1', kind: 'VirtualMachine', metadata: { name: 'web', namespace: 'shop', labels }, spec });
    const first = serverSideApply(undefined, vm({ app: 'web', tier: 'fe' }, { running: true, template: { spec: { nodeSelector: { arch: 'amd64' }, disks: [{ name: 'a' }] } } }), { manager: 'vmroll', force: true, now });
    assert.ok(first.ok);
    // Another manager adds a label and takes a spec field; status belongs to nobody vmroll knows.
    const edited = recordUpdate(first.object, { ...first.object, metadata: { ...(first.object['metadata'] as Obj), labels: { app: 'web', tier: 'fe', team: 'x' } }, status: { ready: true } }, { manager: 'kubectl', now });
    const cases: Obj[] = [
      vm({ app: 'web' }, { running: true }),
      vm({ app: 'web', tier: 'be' }, { running: false, template: { spec: { disks: [{ name: 'b' }] } } }),
      vm({}, { template: { spec: { nodeSelector: { arch: 'arm64', zone: 'a' } } } }),
    ];
    for (const desired of cases) {
      const sim = serverSideApply(edited, desired, { manager: 'vmroll', force: true, now });
      assert.ok(sim.ok);
      const strip = (o: Obj): Obj => ({ ...o, metadata: { ...(o['metadata'] as Obj), managedFields: undefined } });
      assert.deepEqual(strip(projectApply(edited, desired, 'vmroll') as Obj), strip(sim.object), JSON.stringify(desired));
    }
    assert.equal(projectApply({ metadata: { name: 'x' } }, cases[0] as Obj, 'vmroll'), null);
  });
});
