/**
 * The resources the simulator's API server serves, and the discovery documents built from
 * them: one table, so routing, discovery, error messages and watch filtering agree.
 */
import type { Obj } from '../../rollout/index.ts';

/** API verbs, as Kubernetes names them in discovery and RBAC. */
export const Verb = {
  /** Read one object. */
  get: 'get',
  /** Read every object (of a namespace, or of all). */
  list: 'list',
  /** Stream changes. */
  watch: 'watch',
  /** POST a new object. */
  create: 'create',
  /** PUT a whole object. */
  update: 'update',
  /** PATCH (JSON, merge, strategic merge, server-side apply). */
  patch: 'patch',
  /** DELETE one object. */
  delete: 'delete',
  /** DELETE every object matching a selector. */
  deletecollection: 'deletecollection',
} as const;
/** One of {@link Verb}. */
export type Verb = (typeof Verb)[keyof typeof Verb];

const ALL_VERBS: readonly Verb[] = ['create', 'delete', 'deletecollection', 'get', 'list', 'patch', 'update', 'watch'];
const STATUS_VERBS: readonly Verb[] = ['get', 'patch', 'update'];

/** One stored resource type: a plural name under a group/version, and the kind of its objects. */
export interface ResourceInfo {
  /** API group; '' for the core group. */
  group: string;
  version: string;
  /** Plural, lower case, as in URLs: `virtualmachines`. */
  resource: string;
  singular: string;
  /** The kind of stored objects; also the simulator store's key for them. */
  kind: string;
  namespaced: boolean;
  shortNames: readonly string[];
  categories: readonly string[];
  /** Whether `<resource>/status` is served (writes to the main resource then leave status alone). */
  hasStatus: boolean;
}

/** A KubeVirt action served as a subresource (PUT, body optional), e.g. `virtualmachines/restart`. */
export interface ActionInfo {
  group: string;
  version: string;
  /** The resource the action applies to. */
  resource: string;
  /** `restart`, `start` or `stop`. */
  action: VmAction;
}

/** The VirtualMachine actions of `subresources.kubevirt.io`. */
export const VmAction = {
  /** Stop and start the VM's instance. */
  restart: 'restart',
  /** Start a stopped VM. */
  start: 'start',
  /** Stop a running VM. */
  stop: 'stop',
} as const;
/** One of {@link VmAction}. */
export type VmAction = (typeof VmAction)[keyof typeof VmAction];

function res(group: string, version: string, kind: string, resource: string, namespaced: boolean, extra: Partial<Pick<ResourceInfo, 'shortNames' | 'categories' | 'hasStatus'>> = {}): ResourceInfo {
  return { group, version, resource, singular: kind.toLowerCase(), kind, namespaced, shortNames: extra.shortNames ?? [], categories: extra.categories ?? [], hasStatus: extra.hasStatus ?? false };
}

/** Every stored resource the server serves. */
export const RESOURCES: readonly ResourceInfo[] = [
  res('', 'v1', 'Namespace', 'namespaces', false, { shortNames: ['ns'], hasStatus: true }),
  res('', 'v1', 'PersistentVolumeClaim', 'persistentvolumeclaims', true, { shortNames: ['pvc'], hasStatus: true }),
  res('apps', 'v1', 'ControllerRevision', 'controllerrevisions', true),
  res('coordination.k8s.io', 'v1', 'Lease', 'leases', true),
  res('kubevirt.io', 'v1', 'VirtualMachine', 'virtualmachines', true, { shortNames: ['vm', 'vms'], categories: ['all'], hasStatus: true }),
  res('kubevirt.io', 'v1', 'VirtualMachineInstance', 'virtualmachineinstances', true, { shortNames: ['vmi', 'vmis'], categories: ['all'], hasStatus: true }),
  res('kubevirt.io', 'v1', 'VirtualMachineInstanceMigration', 'virtualmachineinstancemigrations', true, { shortNames: ['vmim', 'vmims'], categories: ['all'], hasStatus: true }),
  res('kubevirt.io', 'v1', 'KubeVirt', 'kubevirts', true, { shortNames: ['kv', 'kvs'], categories: ['all'], hasStatus: true }),
  res('instancetype.kubevirt.io', 'v1beta1', 'VirtualMachineInstancetype', 'virtualmachineinstancetypes', true, { shortNames: ['vminstancetype', 'vminstancetypes', 'vmf', 'vmfs'], categories: ['all'] }),
  res('instancetype.kubevirt.io', 'v1beta1', 'VirtualMachinePreference', 'virtualmachinepreferences', true, { shortNames: ['vmpref', 'vmprefs', 'vmp', 'vmps'], categories: ['all'] }),
  res('instancetype.kubevirt.io', 'v1beta1', 'VirtualMachineClusterInstancetype', 'virtualmachineclusterinstancetypes', false, { shortNames: ['vmclusterinstancetype', 'vmclusterinstancetypes', 'vmcf', 'vmcfs'] }),
  res('instancetype.kubevirt.io', 'v1beta1', 'VirtualMachineClusterPreference', 'virtualmachineclusterpreferences', false, { shortNames: ['vmcp', 'vmcps'] }),
];

/** KubeVirt's VM actions, under their own API group as virt-api serves them. */
export const ACTIONS: readonly ActionInfo[] = Object.values(VmAction).map((action) => ({ group: 'subresources.kubevirt.io', version: 'v1', resource: 'virtualmachines', action }));

/** Groups in the order `/apis` lists them; each serves one version, its preferred one. */
const GROUPS: readonly { name: string; version: string }[] = [
  { name: 'apps', version: 'v1' },
  { name: 'coordination.k8s.io', version: 'v1' },
  { name: 'kubevirt.io', version: 'v1' },
  { name: 'subresources.kubevirt.io', version: 'v1' },
  { name: 'instancetype.kubevirt.io', version: 'v1beta1' },
];

/** The Kubernetes version the server claims to be. */
export const SERVER_VERSION = { major: '1', minor: '30', gitVersion: 'v1.30.0' } as const;

const byPath = new Map(RESOURCES.map((r) => [`${r.group}/${r.version}/${r.resource}`, r]));
const byKind = new Map(RESOURCES.map((r) => [r.kind, r]));

/** The resource served at `group/version/resource`, if any. */
export function lookupResource(group: string, version: string, resource: string): ResourceInfo | undefined {
  return byPath.get(`${group}/${version}/${resource}`);
}

/** The resource whose objects have this kind. */
export function resourceOfKind(kind: string): ResourceInfo | undefined {
  return byKind.get(kind);
}

/** The action served at `group/version/resource/<name>/action`, if any. */
export function lookupAction(group: string, version: string, resource: string, action: string): ActionInfo | undefined {
  return ACTIONS.find((a) => a.group === group && a.version === version && a.resource === resource && a.action === action);
}

/** Whether the group/version is served at all (a 404 for anything else under it). */
export function servesGroupVersion(group: string, version: string): boolean {
  return group === '' ? version === 'v1' : GROUPS.some((g) => g.name === group && g.version === version);
}

/** `apiVersion` of a resource's objects: `kubevirt.io/v1`, or `v1` for the core group. */
export function apiVersionOf(r: { group: string; version: string }): string {
  return r.group === '' ? r.version : `${r.group}/${r.version}`;
}

/** `virtualmachines.kubevirt.io`, or `namespaces` in the core group: how Kubernetes names a resource in messages. */
export function qualifiedResource(r: { group: string; resource: string }): string {
  return r.group === '' ? r.resource : `${r.resource}.${r.group}`;
}

/** `VirtualMachine.kubevirt.io`, or `Namespace`: how Kubernetes names a kind in validation messages. */
export function qualifiedKind(r: { group: string; kind: string }): string {
  return r.group === '' ? r.kind : `${r.kind}.${r.group}`;
}

/** `GET /api`. */
export function apiVersionsDocument(serverAddress: string): Obj {
  return { kind: 'APIVersions', versions: ['v1'], serverAddressByClientCIDRs: [{ clientCIDR: '0.0.0.0/0', serverAddress }] };
}

function groupDocument(g: { name: string; version: string }): Obj {
  const gv = { groupVersion: `${g.name}/${g.version}`, version: g.version };
  return { name: g.name, versions: [gv], preferredVersion: gv };
}

/** `GET /apis`. */
export function apiGroupListDocument(): Obj {
  return { kind: 'APIGroupList', apiVersion: 'v1', groups: GROUPS.map(groupDocument) };
}

/** `GET /apis/<group>`, or undefined when the group is not served. */
export function apiGroupDocument(group: string): Obj | undefined {
  const g = GROUPS.find((x) => x.name === group);
  return g === undefined ? undefined : { kind: 'APIGroup', apiVersion: 'v1', ...groupDocument(g) };
}

/** `GET /api/v1` or `GET /apis/<group>/<version>`, or undefined when not served. */
export function apiResourceListDocument(group: string, version: string): Obj | undefined {
  if (!servesGroupVersion(group, version)) return undefined;
  const resources: Obj[] = [];
  for (const r of RESOURCES) {
    if (r.group !== group || r.version !== version) continue;
    const entry: Obj = { name: r.resource, singularName: r.singular, namespaced: r.namespaced, kind: r.kind, verbs: ALL_VERBS };
    if (r.shortNames.length > 0) entry['shortNames'] = r.shortNames;
    if (r.categories.length > 0) entry['categories'] = r.categories;
    resources.push(entry);
    if (r.hasStatus) resources.push({ name: `${r.resource}/status`, singularName: '', namespaced: r.namespaced, kind: r.kind, verbs: STATUS_VERBS });
  }
  for (const a of ACTIONS) {
    if (a.group !== group || a.version !== version) continue;
    resources.push({ name: `${a.resource}/${a.action}`, singularName: '', namespaced: true, kind: '', verbs: ['update'] });
  }
  return { kind: 'APIResourceList', apiVersion: 'v1', groupVersion: apiVersionOf({ group, version }), resources };
}
