/**
 * The install in deploy/ and the image in Dockerfile say what they claim: every manifest parses
 * the same way Kubernetes reads it, validates against Kubernetes' own schemas (kubernetes-models'
 * validators compiled from the upstream OpenAPI document, plus client-node's generated models
 * for unknown fields, which kubectl's strict validation rejects), renders with kubectl's
 * kustomize, and holds the security and wiring properties the Deployment promises.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync, readFileSync, readdirSync, statSync } from 'node:fs';
import { builtinModules } from 'node:module';
import path from 'node:path';
import { promisify } from 'node:util';
import * as clientNode from '@kubernetes/client-node';
import { parseAllDocuments } from 'yaml';
import { DEFAULT_LEASE_NAME } from '../reconciler/cluster/leaderElection.ts';
import { RUN_HELP } from '../reconciler/commands/run.ts';
import { type VmrollConfig, parseConfig } from '../reconciler/configFile.ts';
import type { Obj } from '../reconciler/rollout/index.ts';
import { ROOT } from './helpers/cases.ts';
import { IMAGE_FILES } from './helpers/image.ts';
import { debianKubectl } from './helpers/kubectl.ts';

const run = promisify(execFile);
const DEPLOY = path.join(ROOT, 'deploy');
const BASE = path.join(DEPLOY, 'base');
const OVERLAY = path.join(DEPLOY, 'overlays', 'example');
const NAMESPACE = 'vmroll-system';

// ---------------------------------------------------------------------------------------------
// Reading manifests

function yamlFiles(dir: string): string[] {
  return readdirSync(dir)
    .flatMap((f) => {
      const p = path.join(dir, f);
      return statSync(p).isDirectory() ? yamlFiles(p) : /\.ya?ml$/.test(f) ? [p] : [];
    })
    .sort();
}

/** The objects of a multi-document YAML text, read as YAML `version`; parse errors fail. */
function parseObjects(text: string, where: string, version: '1.1' | '1.2' = '1.1'): Obj[] {
  const out: Obj[] = [];
  for (const doc of parseAllDocuments(text, { version, prettyErrors: true, uniqueKeys: true })) {
    assert.deepEqual(doc.errors.map((e) => e.message), [], `${where}: YAML errors`);
    assert.deepEqual(doc.warnings.map((e) => e.message), [], `${where}: YAML warnings`);
    const o = doc.toJS({ maxAliasCount: 0 }) as unknown;
    if (o === null || o === undefined) continue;
    assert.ok(typeof o === 'object' && !Array.isArray(o), `${where}: every document is an object`);
    out.push(o as Obj);
  }
  return out;
}

function readObjects(file: string): Obj[] {
  return parseObjects(readFileSync(file, 'utf8'), path.relative(ROOT, file));
}

const metaOf = (o: Obj): Obj => (o['metadata'] ?? {}) as Obj;
const idOf = (o: Obj): string => `${String(o['kind'])}/${metaOf(o)['namespace'] === undefined ? '' : `${String(metaOf(o)['namespace'])}/`}${String(metaOf(o)['name'])}`;
const obj = (v: unknown): Obj => (typeof v === 'object' && v !== null && !Array.isArray(v) ? (v as Obj) : {});
const list = (v: unknown): Obj[] => (Array.isArray(v) ? v.map(obj) : []);
const strings = (v: unknown): string[] => (Array.isArray(v) ? v.filter((x): x is string => typeof x === 'string') : []);

/** The base as its kustomization lists it, read straight from the files. */
function baseObjects(): Obj[] {
  const k = readObjects(path.join(BASE, 'kustomization.yaml'))[0] ?? {};
  return strings(k['resources']).flatMap((f) => readObjects(path.join(BASE, f)));
}

// ---------------------------------------------------------------------------------------------
// Kubernetes' schemas

/** A kubernetes-models class: built from the object, validated against the upstream schema. */
type ModelClass = new (data: unknown) => { validate(): void };

async function modelFor(apiVersion: string, kind: string): Promise<ModelClass> {
  // kubernetes-models publishes one module per group/version: `v1`, `apps/v1`, `rbac.authorization.k8s.io/v1`.
  const mod = (await import(`kubernetes-models/${apiVersion}`)) as Record<string, unknown>;
  const model = mod[kind];
  assert.equal(typeof model, 'function', `kubernetes-models has no ${kind} in ${apiVersion}`);
  return model as ModelClass;
}

interface Attribute {
  baseName: string;
  type: string;
}
const generated = clientNode as unknown as Record<string, { getAttributeTypeMap?: () => Attribute[] } | undefined>;

/** Fields that client-node's generated model of `type` (Kubernetes' OpenAPI, type by type) does not know. */
function unknownFields(value: unknown, type: string, at: string, out: string[]): void {
  const array = /^Array<(.+)>$/.exec(type);
  if (array !== null) {
    if (Array.isArray(value)) value.forEach((v, i) => unknownFields(v, array[1] ?? '', `${at}[${i}]`, out));
    return;
  }
  const map = /^\{ \[key: string\]: (.+); \}$/.exec(type);
  if (map !== null) {
    for (const [k, v] of Object.entries(obj(value))) unknownFields(v, map[1] ?? '', `${at}.${k}`, out);
    return;
  }
  const attributes = generated[type]?.getAttributeTypeMap?.();
  if (attributes === undefined || typeof value !== 'object' || value === null) return;
  for (const [k, v] of Object.entries(value)) {
    const a = attributes.find((x) => x.baseName === k);
    if (a === undefined) out.push(`${at}.${k}`);
    else unknownFields(v, a.type, `${at}.${k}`, out);
  }
}

/** Validates one object: kubernetes-models' schema, then no field Kubernetes does not define. */
async function validateObject(o: Obj, where: string): Promise<void> {
  const apiVersion = String(o['apiVersion'] ?? '');
  const kind = String(o['kind'] ?? '');
  const Model = await modelFor(apiVersion, kind);
  try {
    new Model(o).validate();
  } catch (e) {
    assert.fail(`${where}: ${idOf(o)} does not validate against ${apiVersion} ${kind}: ${e instanceof Error ? e.message : String(e)}`);
  }
  const version = apiVersion.split('/').pop() ?? '';
  const typeName = `${version.charAt(0).toUpperCase()}${version.slice(1)}${kind}`;
  assert.ok(generated[typeName]?.getAttributeTypeMap !== undefined, `client-node has no model ${typeName}`);
  const unknown: string[] = [];
  unknownFields(o, typeName, kind, unknown);
  assert.deepEqual(unknown, [], `${where}: fields Kubernetes does not define (strict validation rejects them)`);
}

// ---------------------------------------------------------------------------------------------
// The Deployment's properties, checked on the base and on the rendered overlay

function deploymentOf(objects: readonly Obj[]): { deployment: Obj; pod: Obj; container: Obj } {
  const deployment = objects.find((o) => o['kind'] === 'Deployment');
  assert.ok(deployment !== undefined, 'a Deployment');
  const pod = obj(obj(obj(deployment['spec'])['template'])['spec']);
  const containers = list(pod['containers']);
  assert.equal(containers.length, 1, 'one container');
  return { deployment, pod, container: containers[0] ?? {} };
}

/** `--flag=value` arguments of the container, by flag. */
function flagsOf(container: Obj): Map<string, string> {
  const flags = new Map<string, string>();
  for (const a of strings(container['args'])) {
    const m = /^(--[a-z-]+)(?:=(.*))?$/.exec(a);
    if (m !== null) flags.set(m[1] ?? '', m[2] ?? '');
  }
  return flags;
}

/** The volume mounted at the longest mount path that holds `file`. */
function volumeHolding(pod: Obj, container: Obj, file: string): { volume: Obj; mount: Obj; relative: string } {
  const mounts = list(container['volumeMounts'])
    .filter((m) => file === m['mountPath'] || file.startsWith(`${String(m['mountPath'])}/`))
    .sort((a, b) => String(b['mountPath']).length - String(a['mountPath']).length);
  const mount = mounts[0];
  assert.ok(mount !== undefined, `${file} lies under a volume mount`);
  const volume = list(pod['volumes']).find((v) => v['name'] === mount['name']);
  assert.ok(volume !== undefined, `volume ${String(mount['name'])} is defined`);
  return { volume, mount, relative: path.posix.relative(String(mount['mountPath']), file) };
}

function checkDeployment(objects: readonly Obj[]): void {
  const { deployment, pod, container } = deploymentOf(objects);
  const spec = obj(deployment['spec']);
  assert.equal(spec['replicas'], 2);
  const podLabels = obj(obj(obj(spec['template'])['metadata'])['labels']);
  for (const [k, v] of Object.entries(obj(obj(spec['selector'])['matchLabels']))) assert.equal(podLabels[k], v, `the selector matches the pod's label ${k}`);

  // Non-root, no privilege escalation, nothing written outside the volumes.
  const podSecurity = obj(pod['securityContext']);
  const security = obj(container['securityContext']);
  assert.equal(podSecurity['runAsNonRoot'], true);
  assert.ok(typeof podSecurity['runAsUser'] === 'number' && podSecurity['runAsUser'] > 0, 'a numeric non-root user');
  assert.equal(security['readOnlyRootFilesystem'], true);
  assert.equal(security['allowPrivilegeEscalation'], false);
  assert.notEqual(security['privileged'], true);
  assert.deepEqual(strings(obj(security['capabilities'])['drop']), ['ALL']);
  assert.equal(strings(obj(security['capabilities'])['add']).length, 0);
  assert.equal(obj(podSecurity['seccompProfile'])['type'] ?? obj(security['seccompProfile'])['type'], 'RuntimeDefault');
  for (const host of ['hostNetwork', 'hostPID', 'hostIPC']) assert.notEqual(pod[host], true, host);

  // Requests and limits for CPU and memory.
  const resources = obj(container['resources']);
  for (const kind of ['requests', 'limits']) for (const r of ['cpu', 'memory']) assert.ok(obj(resources[kind])[r] !== undefined, `resources.${kind}.${r}`);
  // V8's heap cap follows the memory limit (deploy/base/deployment.yaml's rule: 75% of it), and the limit is at least 1.5x the request.
  const mib = (q: unknown): number => {
    const m = /^(\d+)(Mi|Gi)$/.exec(String(q));
    assert.ok(m, `memory quantity ${String(q)} in Mi or Gi`);
    return Number(m[1]) * (m[2] === 'Gi' ? 1024 : 1);
  };
  const limit = mib(obj(resources['limits'])['memory']);
  assert.ok(limit >= 1.5 * mib(obj(resources['requests'])['memory']), 'memory limit at least 1.5x the request');
  const nodeOptions = list(container['env']).find((e) => e['name'] === 'NODE_OPTIONS');
  const cap = /--max-old-space-size=(\d+)/.exec(String(nodeOptions?.['value'] ?? ''));
  assert.ok(cap, 'NODE_OPTIONS sets --max-old-space-size');
  assert.equal(Number(cap[1]), Math.floor(limit * 0.75), 'heap cap is 75% of the memory limit');

  // The ServiceAccount the roles are bound to, with its token (the kube backend needs it).
  const account = objects.find((o) => o['kind'] === 'ServiceAccount');
  assert.ok(account !== undefined);
  assert.equal(pod['serviceAccountName'], metaOf(account)['name']);
  assert.notEqual(pod['automountServiceAccountToken'], false);

  // vmroll run, in-cluster, listening on the container's port, and probed there.
  const args = strings(container['args']);
  assert.equal(args[0], 'run', 'the image entrypoint is `node bin/vmroll.js`; the first argument picks `run`');
  const flags = flagsOf(container);
  assert.equal(flags.get('--cluster'), 'kube');
  const listenPort = Number(/:(\d+)$/.exec(flags.get('--listen') ?? '')?.[1]);
  const port = list(container['ports']).find((p) => p['containerPort'] === listenPort);
  assert.ok(port !== undefined, `--listen's port ${listenPort} is a container port`);
  const probePort = (probe: string): unknown => obj(obj(container[probe])['httpGet'])['port'];
  const probePath = (probe: string): unknown => obj(obj(container[probe])['httpGet'])['path'];
  assert.equal(probePath('livenessProbe'), '/healthz');
  assert.equal(probePath('readinessProbe'), '/readyz');
  for (const probe of ['livenessProbe', 'readinessProbe', 'startupProbe']) {
    if (container[probe] === undefined) continue;
    assert.ok(probePort(probe) === port['name'] || probePort(probe) === listenPort, `${probe} probes the port vmroll listens on`);
  }

  // Configuration from the ConfigMap, mounted where --config points.
  const configFile = flags.get('--config') ?? '';
  const config = volumeHolding(pod, container, configFile);
  const configMapName = obj(config.volume['configMap'])['name'];
  const configMap = objects.find((o) => o['kind'] === 'ConfigMap' && metaOf(o)['name'] === configMapName);
  assert.ok(configMap !== undefined, `ConfigMap ${String(configMapName)} is part of the install`);
  assert.equal(typeof obj(configMap['data'])[config.relative], 'string', `the ConfigMap has the key ${config.relative}`);
  assert.equal(config.mount['readOnly'], true);

  // Tokens: files from a Secret, never environment variables.
  const tokenFlags = [...flags.keys()].filter((f) => /-(token|secret)-file$/.test(f));
  assert.deepEqual(tokenFlags.sort(), ['--git-token-file', '--github-token-file', '--webhook-secret-file']);
  for (const f of tokenFlags) {
    const held = volumeHolding(pod, container, flags.get(f) ?? '');
    const secret = obj(held.volume['secret']);
    assert.ok(secret['secretName'] !== undefined, `${f} is read from a Secret volume`);
    assert.equal(held.mount['readOnly'], true);
    const items = list(secret['items']);
    assert.ok(items.length === 0 || items.some((i) => i['path'] === held.relative), `${f}: the Secret volume projects ${held.relative}`);
    // Readable by the pod's group only (fsGroup), not by every user of the node.
    assert.equal(Number(secret['defaultMode'] ?? 0o644) & 0o007, 0, `${f}: no access for others`);
  }
  for (const env of list(container['env'])) {
    assert.equal(obj(env['valueFrom'])['secretKeyRef'], undefined, `env ${String(env['name'])} comes from no Secret`);
    assert.ok(!/TOKEN|SECRET|PASSWORD/i.test(String(env['name'])), `env ${String(env['name'])} holds no credential`);
  }
  assert.equal(list(container['envFrom']).length, 0, 'no envFrom');

  // What vmroll writes goes to volumes: the clone cache, and the temporary directory (the root filesystem is read-only).
  const writable = (dir: string): void => {
    const held = volumeHolding(pod, container, dir);
    assert.ok(held.volume['emptyDir'] !== undefined, `${dir} is on an emptyDir`);
    assert.notEqual(held.mount['readOnly'], true, `${dir} is writable`);
  };
  writable(flags.get('--cache-dir') ?? '');
  writable('/tmp');
}

/** The ConfigMap's vmroll.yaml as `vmroll run --config` reads it, and the Lease it elects with. */
function checkConfig(objects: readonly Obj[], expected: Partial<VmrollConfig>): VmrollConfig {
  const { deployment, pod, container } = deploymentOf(objects);
  const file = flagsOf(container).get('--config') ?? '';
  const held = volumeHolding(pod, container, file);
  const configMap = objects.find((o) => o['kind'] === 'ConfigMap' && metaOf(o)['name'] === obj(held.volume['configMap'])['name']);
  const config = parseConfig(String(obj(configMap?.['data'])[held.relative] ?? ''), file);
  assert.deepEqual(Object.fromEntries(Object.keys(expected).map((k) => [k, config[k as keyof VmrollConfig]])), expected);
  // Two replicas need an election (a flag beside `replicas`, so no ConfigMap patch can lose it);
  // its Lease is the one the Role names, in the pod's own namespace.
  assert.equal(obj(deployment['spec'])['replicas'], 2);
  assert.ok(flagsOf(container).has('--leader-elect'), '--leader-elect');
  const lease = { namespace: flagsOf(container).get('--leader-election-namespace') ?? config.leaderElection?.namespace ?? metaOf(deployment)['namespace'], name: config.leaderElection?.leaseName ?? DEFAULT_LEASE_NAME };
  const role = objects.find((o) => o['kind'] === 'Role' && list(o['rules']).some((r) => strings(r['resources']).includes('leases')));
  assert.ok(role !== undefined, 'a Role for the Lease');
  assert.equal(metaOf(role)['namespace'], lease.namespace);
  for (const rule of list(role['rules']).filter((r) => strings(r['resourceNames']).length > 0)) assert.deepEqual(strings(rule['resourceNames']), [lease.name]);
  return config;
}

// ---------------------------------------------------------------------------------------------
// The Dockerfile

interface Instruction {
  op: string;
  args: string;
}

/** Instructions of a Dockerfile: comments dropped, continuation lines joined. */
function dockerInstructions(text: string): Instruction[] {
  const out: Instruction[] = [];
  let pending = '';
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (pending === '' && (line === '' || line.startsWith('#'))) continue;
    if (line.endsWith('\\')) {
      pending += `${line.slice(0, -1)} `;
      continue;
    }
    const full = pending + line;
    pending = '';
    const m = /^(\S+)\s*(.*)$/.exec(full);
    if (m !== null) out.push({ op: (m[1] ?? '').toUpperCase(), args: m[2] ?? '' });
  }
  return out;
}

/** Whether .dockerignore keeps `file` out of the build context: the last matching pattern decides. */
function dockerIgnored(patterns: readonly string[], file: string): boolean {
  let ignored = false;
  for (const raw of patterns) {
    const negated = raw.startsWith('!');
    const pattern = (negated ? raw.slice(1) : raw).replace(/\/+$/, '');
    const re = new RegExp(`^${pattern.replace(/[.+^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '[^/]*').replace(/\?/g, '[^/]')}(/.*)?$`);
    if (re.test(file)) ignored = !negated;
  }
  return ignored;
}

/** Bare module specifiers imported (for their values, not only types) by the files under `dir`. */
function runtimeImports(dir: string): Map<string, string> {
  const found = new Map<string, string>();
  const walk = (d: string): void => {
    for (const f of readdirSync(d)) {
      const p = path.join(d, f);
      if (statSync(p).isDirectory()) walk(p);
      else if (/\.(ts|js)$/.test(f)) {
        const text = readFileSync(p, 'utf8');
        const re = /^\s*(import|export)\s+(type\s+)?(?:[^'"]*?\sfrom\s+)?['"]([^'"]+)['"]|import\(\s*['"]([^'"]+)['"]\s*\)/gm;
        for (const m of text.matchAll(re)) {
          if (m[2] !== undefined) continue; // `import type` is erased
          const spec = m[3] ?? m[4] ?? '';
          if (spec.startsWith('.') || spec.startsWith('node:') || builtinModules.includes(spec)) continue;
          const name = spec.startsWith('@') ? spec.split('/').slice(0, 2).join('/') : (spec.split('/')[0] ?? spec);
          if (!found.has(name)) found.set(name, path.relative(ROOT, p));
        }
      }
    }
  };
  walk(dir);
  return found;
}

// ---------------------------------------------------------------------------------------------

describe('deploy/ manifests', () => {
  const files = yamlFiles(DEPLOY);

  describe('every file parses', () => {
    for (const file of files) {
      const rel = path.relative(ROOT, file);
      it(`${rel}: YAML without errors, read the same as YAML 1.1 (Kubernetes' parser) and 1.2`, () => {
        const text = readFileSync(file, 'utf8');
        const asKubernetes = parseObjects(text, rel, '1.1');
        assert.ok(asKubernetes.length > 0);
        // `0440`, `yes`, `on` and friends mean different things in the two versions: quote them or write them plainly.
        assert.deepEqual(parseObjects(text, rel, '1.2'), asKubernetes, 'YAML 1.1 and 1.2 read this file differently');
      });
    }
  });

  describe('every object validates against Kubernetes\' schema for its kind', () => {
    for (const file of files.filter((f) => f.startsWith(BASE) && !f.endsWith('kustomization.yaml'))) {
      const rel = path.relative(ROOT, file);
      it(rel, async () => {
        for (const o of readObjects(file)) await validateObject(o, rel);
      });
    }
    it('and the validation catches a wrong type, a missing required field and an unknown field', async () => {
      const { deployment } = deploymentOf(baseObjects());
      const copy = (): Obj => structuredClone(deployment);
      const wrongType = copy();
      obj(wrongType['spec'])['replicas'] = 'two';
      await assert.rejects(validateObject(wrongType, 'test'), /replicas/);
      const missing = copy();
      delete obj(missing['spec'])['selector'];
      await assert.rejects(validateObject(missing, 'test'), /selector/);
      const typo = copy();
      const { container } = deploymentOf([typo]);
      obj(container['securityContext'])['readOnlyRootFileSystem'] = true;
      await assert.rejects(validateObject(typo, 'test'), /readOnlyRootFileSystem/);
    });
  });

  describe('the base', () => {
    const objects = baseObjects();

    it('lists every file of its folder and holds the expected objects', () => {
      const k = readObjects(path.join(BASE, 'kustomization.yaml'))[0] ?? {};
      const listed = strings(k['resources']).sort();
      assert.deepEqual(listed, readdirSync(BASE).filter((f) => f.endsWith('.yaml') && f !== 'kustomization.yaml').sort());
      assert.deepEqual(objects.map(idOf).sort(), [
        `ClusterRole/vmroll`,
        `ClusterRoleBinding/vmroll`,
        `ConfigMap/${NAMESPACE}/vmroll-config`,
        `Deployment/${NAMESPACE}/vmroll`,
        `Namespace/${NAMESPACE}`,
        `Role/${NAMESPACE}/vmroll-leader-election`,
        `RoleBinding/${NAMESPACE}/vmroll-leader-election`,
        `Service/${NAMESPACE}/vmroll`,
        `ServiceAccount/${NAMESPACE}/vmroll`,
      ]);
    });

    it('uses only kustomization fields kubectl 1.20\'s kustomize knows', () => {
      // kustomize v2.0.3, built into kubectl 1.14 to 1.20; later versions read them all still.
      const known = new Set(['apiVersion', 'kind', 'resources', 'bases', 'namespace', 'namePrefix', 'nameSuffix', 'commonLabels', 'commonAnnotations', 'images', 'patchesStrategicMerge', 'patchesJson6902', 'configMapGenerator', 'secretGenerator', 'generatorOptions', 'vars']);
      for (const dir of [BASE, OVERLAY]) {
        const k = readObjects(path.join(dir, 'kustomization.yaml'))[0] ?? {};
        assert.deepEqual(Object.keys(k).filter((key) => !known.has(key)), [], path.relative(ROOT, dir));
        assert.equal(k['kind'], 'Kustomization');
        // kustomize v2 takes only files in `resources`; folders go to `bases`.
        for (const r of strings(k['resources'])) assert.ok(statSync(path.join(dir, r)).isFile(), `${r} is a file`);
        for (const b of strings(k['bases'])) assert.ok(existsSync(path.join(dir, b, 'kustomization.yaml')), `${b} is a kustomization`);
      }
    });

    it('puts every namespaced object in vmroll\'s namespace', () => {
      for (const o of objects) {
        const clusterScoped = ['Namespace', 'ClusterRole', 'ClusterRoleBinding'].includes(String(o['kind']));
        assert.equal(metaOf(o)['namespace'], clusterScoped ? undefined : NAMESPACE, idOf(o));
      }
      const bindings = objects.filter((o) => o['kind'] === 'ClusterRoleBinding' || o['kind'] === 'RoleBinding');
      for (const b of bindings) assert.deepEqual(list(b['subjects']), [{ kind: 'ServiceAccount', name: 'vmroll', namespace: NAMESPACE }], idOf(b));
    });

    it('runs vmroll as a locked-down Deployment: 2 replicas, non-root, read-only, limited, probed, config and tokens as files', () => {
      checkDeployment(objects);
    });

    it('passes to `vmroll run` only flags it has', () => {
      const { container } = deploymentOf(objects);
      const missing = [...flagsOf(container).keys()].filter((f) => !new RegExp(`(^|\\s)${f}[ =]`, 'm').test(RUN_HELP));
      assert.deepEqual(missing, [], 'flags `vmroll run --help` does not list');
    });

    it('holds a vmroll.yaml that vmroll\'s own config parser accepts, electing a leader through the Lease the Role allows', () => {
      checkConfig(objects, { repo: 'https://git.example.com/infra/vms.git', branch: 'main', path: 'vms', interval: '1m', prune: false });
    });

    it('exposes the container\'s port through the Service, to the pods of the Deployment', () => {
      const { deployment, container } = deploymentOf(objects);
      const service = objects.find((o) => o['kind'] === 'Service');
      assert.ok(service !== undefined);
      const podLabels = obj(obj(obj(obj(deployment['spec'])['template'])['metadata'])['labels']);
      const selector = obj(obj(service['spec'])['selector']);
      assert.ok(Object.keys(selector).length > 0);
      for (const [k, v] of Object.entries(selector)) assert.equal(podLabels[k], v, `the Service selects the pods by ${k}`);
      const names = list(container['ports']).map((p) => p['name']);
      const ports = list(obj(service['spec'])['ports']);
      assert.ok(ports.length > 0);
      for (const p of ports) assert.ok(names.includes(p['targetPort']), `Service port ${String(p['name'])} targets a named container port`);
    });

    it('grants no wildcard anywhere in its roles', () => {
      for (const role of objects.filter((o) => o['kind'] === 'ClusterRole' || o['kind'] === 'Role')) {
        const rules = list(role['rules']);
        assert.ok(rules.length > 0);
        for (const rule of rules) {
          for (const field of ['apiGroups', 'resources', 'verbs', 'resourceNames', 'nonResourceURLs']) {
            for (const v of strings(rule[field])) assert.ok(!v.includes('*'), `${idOf(role)}: ${field} holds "${v}"`);
          }
          assert.equal(rule['nonResourceURLs'], undefined, `${idOf(role)}: no non-resource URLs`);
          // Secrets, pods and escalation verbs are none of vmroll's business.
          assert.ok(!strings(rule['verbs']).some((v) => ['escalate', 'bind', 'impersonate'].includes(v)), idOf(role));
          assert.ok(!strings(rule['resources']).some((r) => ['secrets', 'pods', 'pods/exec'].includes(r)), idOf(role));
        }
      }
    });
  });

  describe('the example overlay', () => {
    it('patches only objects the base defines', () => {
      const k = readObjects(path.join(OVERLAY, 'kustomization.yaml'))[0] ?? {};
      const base = new Set(baseObjects().map(idOf));
      const patches = strings(k['patchesStrategicMerge']);
      assert.ok(patches.length > 0, 'the overlay shows a patch');
      for (const p of patches) for (const o of readObjects(path.join(OVERLAY, p))) assert.ok(base.has(idOf(o)), `${p}: ${idOf(o)} is in the base`);
    });
  });

  describe('rendered by kubectl kustomize (Debian\'s kubectl)', function () {
    this.timeout(180_000);
    let kubectl = '';
    const render = async (dir: string): Promise<Obj[]> => {
      const { stdout } = await run(kubectl, ['kustomize', dir], { timeout: 60_000 });
      return parseObjects(stdout, `kubectl kustomize ${path.relative(ROOT, dir)}`);
    };

    before(async function () {
      const found = await debianKubectl();
      if (!found.ok) {
        console.warn(`    kustomize rendering skipped: ${found.reason}`);
        this.skip();
      }
      kubectl = found.path;
    });

    it('renders the base to exactly its files\' objects', async () => {
      const rendered = await render(BASE);
      const direct = baseObjects();
      assert.deepEqual(rendered.map(idOf).sort(), direct.map(idOf).sort());
      for (const o of rendered) assert.deepEqual(o, direct.find((d) => idOf(d) === idOf(o)), `${idOf(o)} unchanged by kustomize`);
    });

    it('renders the overlay: same objects, its image, repository and resources, still valid and still locked down', async () => {
      const rendered = await render(OVERLAY);
      assert.deepEqual(rendered.map(idOf).sort(), baseObjects().map(idOf).sort());
      for (const o of rendered) await validateObject(o, `overlay ${idOf(o)}`);
      checkDeployment(rendered);
      const { container } = deploymentOf(rendered);
      assert.equal(container['image'], 'registry.example.com/platform/vmroll:0.1.0');
      assert.equal(obj(obj(container['resources'])['limits'])['memory'], '2Gi');
      const config = checkConfig(rendered, { repo: 'https://github.com/example-org/vm-fleet.git', branch: 'production', prune: true });
      assert.equal(config.reporters?.github?.repo, 'example-org/vm-fleet');
    });
  });
});

describe('Dockerfile', () => {
  const instructions = dockerInstructions(readFileSync(path.join(ROOT, 'Dockerfile'), 'utf8'));
  const froms = instructions.map((x, i) => ({ ...x, i })).filter((x) => x.op === 'FROM');
  const finalStage = instructions.slice((froms[froms.length - 1]?.i ?? 0) + 1);
  const exec = (op: string): string[] => {
    const found = finalStage.filter((x) => x.op === op).pop();
    if (found === undefined) return [];
    const parsed = JSON.parse(found.args) as unknown;
    assert.ok(Array.isArray(parsed) && parsed.every((a) => typeof a === 'string'), `${op} in exec (JSON) form, so signals reach node`);
    return parsed as string[];
  };

  it('is multi-stage: the runtime stage copies what an earlier stage built', () => {
    assert.ok(froms.length >= 2, 'two FROM stages at least');
    const stages = froms.slice(0, -1).map((f) => /\sAS\s+(\S+)$/i.exec(f.args)?.[1]).filter((s): s is string => s !== undefined);
    assert.ok(stages.length > 0, 'a named build stage');
    assert.ok(finalStage.some((x) => x.op === 'COPY' && stages.some((s) => x.args.includes(`--from=${s}`))), 'COPY --from=<build stage>');
    const build = instructions.slice(0, froms[froms.length - 1]?.i ?? 0);
    assert.ok(build.some((x) => x.op === 'RUN' && /npm ci\b.*--omit=dev/.test(x.args)), 'production dependencies only, from the lockfile');
    assert.ok(!finalStage.some((x) => x.op === 'RUN'), 'nothing runs in the runtime stage (it has no shell)');
  });

  it('compiles in a stage of its own; the stage the runtime copies holds no TypeScript and no tsx', () => {
    const stageOf = (name: string): Instruction[] => {
      const at = froms.findIndex((f) => new RegExp(`\\sAS\\s+${name}$`, 'i').test(f.args));
      assert.ok(at >= 0, `a stage named ${name}`);
      return instructions.slice((froms[at]?.i ?? 0) + 1, froms[at + 1]?.i ?? instructions.length);
    };
    const copied = /--from=(\S+)/.exec(finalStage.find((x) => x.op === 'COPY' && x.args.includes('--from='))?.args ?? '')?.[1] ?? '';
    const gathered = stageOf(copied);
    // The stage that compiles: a full install (the compiler is a dev dependency), then npm run build.
    const compileName = /--from=(\S+)\s+\S*dist\b/.exec(gathered.find((x) => x.op === 'COPY' && /--from=\S+\s+\S*\/dist\s/.test(x.args))?.args ?? '')?.[1] ?? '';
    const compile = stageOf(compileName);
    assert.ok(compile.some((x) => x.op === 'RUN' && /npm ci\b/.test(x.args) && !x.args.includes('--omit=dev')), 'the compile stage installs the dev dependencies');
    assert.ok(compile.some((x) => x.op === 'RUN' && /npm run build\b/.test(x.args)), 'the compile stage runs npm run build');
    // What the runtime gets: production dependencies, dist/ from the compile stage, and files without TypeScript.
    assert.ok(gathered.some((x) => x.op === 'RUN' && /npm ci\b.*--omit=dev/.test(x.args)), `${copied} installs production dependencies only`);
    for (const x of gathered.filter((i) => i.op === 'COPY')) {
      const from = /--from=(\S+)/.exec(x.args)?.[1];
      const sources = x.args.split(/\s+/).filter((a) => !a.startsWith('--')).slice(0, -1);
      if (from !== undefined) {
        assert.equal(from, compileName, `${copied} copies from the compile stage only`);
        assert.deepEqual(sources, ['/app/dist'], 'only dist/ comes from the compile stage');
        continue;
      }
      for (const s of sources) {
        const p = path.join(ROOT, s);
        const files = statSync(p).isDirectory() ? readdirSync(p, { recursive: true }).map(String) : [s];
        assert.deepEqual(files.filter((f) => /\.(ts|mts|cts)$/.test(f) || /(^|\/)tsconfig/.test(f)), [], `${s} holds no TypeScript`);
      }
    }
    const gatheredSources = new Set(gathered.filter((x) => x.op === 'COPY' && !x.args.includes('--from=')).flatMap((x) => x.args.split(/\s+/).filter((a) => !a.startsWith('--')).slice(0, -1)).map((s) => s.replace(/^\.\//, '').replace(/\/$/, '')));
    for (const f of IMAGE_FILES) assert.ok(gatheredSources.has(f), `the image gets ${f}`);
  });

  it('runs as a numeric non-root user, the one the Deployment names', () => {
    const user = finalStage.filter((x) => x.op === 'USER').pop()?.args ?? '';
    const m = /^(\d+)(?::(\d+))?$/.exec(user);
    assert.ok(m !== null, `USER is numeric (uid[:gid]), not "${user}": runAsNonRoot can only check numbers`);
    assert.notEqual(Number(m[1]), 0);
    const { pod } = deploymentOf(baseObjects());
    assert.equal(obj(pod['securityContext'])['runAsUser'], Number(m[1]));
  });

  it('starts `vmroll run` through node and bin/vmroll.js, on the port the Deployment uses', () => {
    const argv = [...exec('ENTRYPOINT'), ...exec('CMD')];
    assert.match(argv[0] ?? '', /(^|\/)node(js)?$/);
    const bin = argv.findIndex((a) => a.endsWith('bin/vmroll.js'));
    assert.ok(bin > 0, 'bin/vmroll.js is what node runs');
    assert.equal(argv[bin + 1], 'run');
    const expose = finalStage.find((x) => x.op === 'EXPOSE')?.args ?? '';
    const { container } = deploymentOf(baseObjects());
    assert.ok(list(container['ports']).some((p) => String(p['containerPort']) === expose.replace(/\/tcp$/, '')), `EXPOSE ${expose} is the container port`);
  });

  it('sends everything it copies, and no local state, through .dockerignore', () => {
    const patterns = readFileSync(path.join(ROOT, '.dockerignore'), 'utf8')
      .split('\n')
      .map((l) => l.trim())
      .filter((l) => l !== '' && !l.startsWith('#'));
    for (const x of instructions.filter((i) => i.op === 'COPY' && !i.args.includes('--from='))) {
      const sources = x.args.split(/\s+/).filter((a) => !a.startsWith('--')).slice(0, -1);
      for (const s of sources) {
        assert.ok(existsSync(path.join(ROOT, s)), `COPY ${s} exists`);
        assert.ok(!dockerIgnored(patterns, s.replace(/\/$/, '')), `.dockerignore lets ${s} through`);
      }
    }
    for (const s of ['node_modules', 'dist', '.vmroll/cache', '.git', 'test/deploy.test.ts', 'deploy/base/deployment.yaml']) assert.ok(dockerIgnored(patterns, s), `.dockerignore keeps ${s} out`);
    // The image copies the folders vmroll reads at run time.
    const copied = new Set(instructions.filter((i) => i.op === 'COPY' && !i.args.includes('--from=')).flatMap((i) => i.args.split(/\s+/).slice(0, -1)).map((s) => s.replace(/^\.\//, '').replace(/\/$/, '')));
    for (const needed of ['package.json', 'package-lock.json', 'tsconfig.json', 'tsconfig.build.json', 'reconciler', 'schemas/generated', ...IMAGE_FILES]) assert.ok(copied.has(needed), `the build gets ${needed}`);
  });

  it('needs at run time only packages `npm ci --omit=dev` installs (tsx and TypeScript not among them)', () => {
    const pkg = JSON.parse(readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as { dependencies?: Record<string, string>; devDependencies?: Record<string, string> };
    const dependencies = new Set(Object.keys(pkg.dependencies ?? {}));
    for (const dev of ['tsx', 'typescript']) {
      assert.ok(!dependencies.has(dev), `${dev} is not a production dependency: the image runs compiled JavaScript`);
      assert.ok(pkg.devDependencies?.[dev] !== undefined, `${dev} is a dev dependency`);
    }
    // bin/vmroll.js imports tsx only to run the sources of a checkout whose dist/ is stale; the
    // image holds no sources (checked by 'compiles in a stage of its own'), so that import never runs there.
    const bin = runtimeImports(path.join(ROOT, 'bin'));
    assert.equal(bin.get('tsx'), path.join('bin', 'vmroll.js'), 'the import scan finds packages');
    bin.delete('tsx');
    const imports = new Map([...bin, ...runtimeImports(path.join(ROOT, 'reconciler'))]);
    assert.ok(imports.has('@kubernetes/client-node'), 'the import scan finds packages');
    const missing = [...imports].filter(([name]) => !dependencies.has(name)).map(([name, file]) => `${name} (${file})`);
    assert.deepEqual(missing, [], 'imported at run time but not in dependencies');
  });
});

// ---------------------------------------------------------------------------------------------
// Node versions: engines, CI, the fetched LTS and the image agree

/** A release as [major, minor, patch]. */
type Release = [number, number, number];

function release(text: string): Release {
  const m = /^v?(\d+)(?:\.(\d+))?(?:\.(\d+))?$/.exec(text.trim());
  assert.ok(m !== null, `"${text}" is a version`);
  return [Number(m[1]), Number(m[2] ?? 0), Number(m[3] ?? 0)];
}

function compare(a: Release, b: Release): number {
  return a[0] - b[0] || a[1] - b[1] || a[2] - b[2];
}

/**
 * Whether `v` satisfies an npm range written with `||`, `^x.y.z`, `>=x.y.z` and `<x.y.z` (the
 * forms `engines` uses; anything else fails the test rather than being guessed at).
 */
function satisfies(v: Release, range: string): boolean {
  return range.split('||').some((alternative) =>
    alternative
      .trim()
      .split(/\s+/)
      .every((c) => {
        const m = /^(\^|>=|<)(.+)$/.exec(c);
        assert.ok(m !== null, `engines comparator "${c}" is one of ^, >=, <`);
        const bound = release(m[2] ?? '');
        if (m[1] === '^') return v[0] === bound[0] && compare(v, bound) >= 0;
        return m[1] === '>=' ? compare(v, bound) >= 0 : compare(v, bound) < 0;
      }),
  );
}

describe('Node versions', () => {
  const engines = (JSON.parse(readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as { engines?: { node?: string } }).engines?.node ?? '';
  const fetchScript = readFileSync(path.join(ROOT, 'scripts', 'fetch-node.sh'), 'utf8');
  /** The releases scripts/fetch-node.sh pins, one per LTS line. */
  const pinned = [...fetchScript.matchAll(/^\s*(\d+)\) version=(\S+) integrity=sha512-\S+ ;;$/gm)].map((m) => ({ major: Number(m[1]), version: release(m[2] ?? '') }));
  const ci = readObjects(path.join(ROOT, '.github', 'workflows', 'ci.yml'))[0] ?? {};
  const job = obj(obj(ci['jobs'])['test']);
  const matrix = (obj(obj(job['strategy'])['matrix'])['node'] as unknown[] | undefined)?.map(Number) ?? [];
  /** The majors (18–40) whose releases engines admits: a line is in if its late releases are. */
  const admitted = Array.from({ length: 23 }, (_, i) => 18 + i).filter((major) => satisfies([major, 999, 999], engines));

  it('engines admits exactly the LTS lines the CI matrix runs, and every release fetch-node pins', () => {
    assert.deepEqual(admitted, [20, 22, 24]);
    assert.deepEqual([...matrix].sort((a, b) => a - b), admitted, 'ci.yml runs the suite on each line engines admits');
    for (const major of [21, 23, 25]) assert.ok(!satisfies([major, 0, 0], engines), `Node ${major} is no LTS line and is not claimed`);
    assert.ok(pinned.length >= 1, 'fetch-node.sh pins releases');
    for (const p of pinned) {
      assert.equal(p.version[0], p.major, `fetch-node.sh ${p.major} pins a ${p.major}.x release`);
      assert.ok(satisfies(p.version, engines), `engines admits the pinned ${p.version.join('.')}`);
    }
    assert.ok(!satisfies([20, 18, 0], engines) && satisfies([20, 19, 0], engines), 'the Node 20 floor stays 20.19');
  });

  it('.ci/run fetches the newest LTS fetch-node pins, the image runs it, and each CI job runs .ci/run', () => {
    const newest = Math.max(...pinned.map((p) => p.major));
    assert.equal(newest, Math.max(...admitted), 'the newest pinned line is the newest engines admits');
    const run = readFileSync(path.join(ROOT, '.ci', 'run'), 'utf8');
    assert.equal(/^LTS=(\d+)$/m.exec(run)?.[1], String(newest), '.ci/run tests the newest LTS line');
    assert.match(run, /scripts\/fetch-node\.sh "\$LTS"/);
    const instructions = dockerInstructions(readFileSync(path.join(ROOT, 'Dockerfile'), 'utf8'));
    const runtime = instructions.filter((x) => x.op === 'FROM').pop()?.args ?? '';
    const image = /^gcr\.io\/distroless\/nodejs(\d+)-debian\d+:nonroot$/.exec(runtime);
    assert.ok(image !== null, `the runtime stage is a distroless Node.js image by its nonroot tag, not "${runtime}"`);
    assert.equal(Number(image[1]), newest, 'the image runs the newest LTS line');
    // The stages before it (compile, gather) build with the same line: ARG defaults substituted.
    const args = new Map(instructions.filter((x) => x.op === 'ARG').map((x) => x.args.split('=') as [string, string]));
    const builders = instructions.filter((x) => x.op === 'FROM').slice(0, -1).map((x) => (x.args.split(/\s+/)[0] ?? '').replace(/\$\{(\w+)\}/g, (_, n: string) => args.get(n) ?? `\${${n}}`));
    assert.ok(builders.length >= 1, 'the image has a build stage');
    for (const b of builders) assert.equal(/^node:(\d+)-/.exec(b)?.[1], String(newest), `build stage ${b} runs Node ${newest}, as the runtime does`);
    const steps = list(job['steps']);
    assert.equal(obj(steps.find((s) => String(s['uses'] ?? '').startsWith('actions/setup-node@'))?.['with'])['node-version'], '${{ matrix.node }}');
    assert.ok(steps.some((s) => /^bash \.ci\/run\b/.test(String(s['run'] ?? ''))), 'the job runs .ci/run');
  });

  it("README's \"Needs Node.js\" line names each line engines admits, with its floor", () => {
    const line = readFileSync(path.join(ROOT, 'README.md'), 'utf8').split('\n').find((l) => l.startsWith('Needs Node.js')) ?? '';
    assert.ok(line !== '', 'README has a "Needs Node.js" line');
    for (const major of admitted) {
      // The floor: the first release of the line that engines admits.
      let floor: Release | undefined;
      for (let minor = 0; minor < 100 && floor === undefined; minor++) if (satisfies([major, minor, 0], engines)) floor = [major, minor, 0];
      assert.ok(floor !== undefined);
      const said = floor[1] === 0 ? new RegExp(`\\b${major}\\b(?! \\()`) : new RegExp(`\\b${major} \\(${major}\\.${floor[1]} or newer\\)`);
      assert.match(line, said, `README says Node ${major}${floor[1] === 0 ? '' : ` from ${major}.${floor[1]}`}`);
    }
    for (const major of [18, 21, 23, 25, 26]) assert.doesNotMatch(line, new RegExp(`\\b${major}\\b`), `README does not name Node ${major}`);
  });
});
