/**
 * Instancetype and preference expansion: what KubeVirt's `ApplyToVM` writes into the template
 * before comparing, so changes are judged by what they expand to.
 */
import { type Obj, clone, ensureObj, get, getObj, getStr, isObj } from './json.ts';

/** Kinds accepted in `spec.instancetype.kind` / `spec.preference.kind`. */
export const InstancetypeKind = {
  VirtualMachineInstancetype: 'VirtualMachineInstancetype',
  VirtualMachineClusterInstancetype: 'VirtualMachineClusterInstancetype',
  VirtualMachinePreference: 'VirtualMachinePreference',
  VirtualMachineClusterPreference: 'VirtualMachineClusterPreference',
} as const;

/** Every instancetype and preference kind, in the order vmroll lists them. */
export const INSTANCETYPE_KINDS: readonly string[] = Object.values(InstancetypeKind);

/** Result of expanding one VM. */
export type Expansion = { ok: true; vm: Obj } | { ok: false; error: string };

/**
 * The kind a matcher names, as KubeVirt reads it: case-insensitive, singular or plural resource name.
 * The webhook itself writes the lower-case singular (`virtualmachineclusterinstancetype`), so a stored VM carries that.
 */
export function matcherKind(matcher: Obj | undefined, fallback: string): string {
  const written = getStr(matcher, 'kind');
  if (written === undefined || written === '') return fallback;
  const lower = written.toLowerCase();
  return INSTANCETYPE_KINDS.find((k) => k.toLowerCase() === lower || `${k.toLowerCase()}s` === lower) ?? written;
}

function find(objects: readonly Obj[], matcher: Obj, namespaced: string, cluster: string, namespace: string): Obj | undefined {
  const name = getStr(matcher, 'name');
  const kind = matcherKind(matcher, cluster);
  return objects.find(
    (o) =>
      o['kind'] === kind &&
      getStr(o, 'metadata', 'name') === name &&
      (kind !== namespaced || (getStr(o, 'metadata', 'namespace') ?? 'default') === namespace),
  );
}

function setIfUnset(target: Obj, key: string, value: unknown): void {
  if (value !== undefined && target[key] === undefined) target[key] = clone(value);
}

/** Expands `spec.instancetype` and `spec.preference` into a copy of the VM's template. */
export function expandVm(vm: Obj, objects: readonly Obj[]): Expansion {
  const itMatcher = getObj(vm, 'spec', 'instancetype');
  const prefMatcher = getObj(vm, 'spec', 'preference');
  if (itMatcher === undefined && prefMatcher === undefined) return { ok: true, vm };
  const namespace = getStr(vm, 'metadata', 'namespace') ?? 'default';
  const out = clone(vm);
  const spec = ensureObj(out, 'spec', 'template', 'spec');
  const domain = ensureObj(spec, 'domain');

  let preference: Obj | undefined;
  if (prefMatcher !== undefined) {
    preference = find(objects, prefMatcher, InstancetypeKind.VirtualMachinePreference, InstancetypeKind.VirtualMachineClusterPreference, namespace);
    if (preference === undefined) {
      return { ok: false, error: `preference ${matcherKind(prefMatcher, InstancetypeKind.VirtualMachineClusterPreference)}/${getStr(prefMatcher, 'name') ?? ''} not found` };
    }
  }
  if (itMatcher !== undefined) {
    const it = find(objects, itMatcher, InstancetypeKind.VirtualMachineInstancetype, InstancetypeKind.VirtualMachineClusterInstancetype, namespace);
    if (it === undefined) {
      return { ok: false, error: `instancetype ${matcherKind(itMatcher, InstancetypeKind.VirtualMachineClusterInstancetype)}/${getStr(itMatcher, 'name') ?? ''} not found` };
    }
    applyInstancetype(getObj(it, 'spec') ?? {}, spec, domain, getStr(preference, 'spec', 'cpu', 'preferredCPUTopology'));
  }
  if (preference !== undefined) applyPreference(getObj(preference, 'spec') ?? {}, spec, domain);
  return { ok: true, vm: out };
}

function applyInstancetype(it: Obj, spec: Obj, domain: Obj, topology: string | undefined): void {
  const guestCpus = get(it, 'cpu', 'guest');
  if (typeof guestCpus === 'number') {
    const cpu = ensureObj(domain, 'cpu');
    const key = topology === 'cores' || topology === 'preferCores' ? 'cores' : topology === 'threads' || topology === 'preferThreads' ? 'threads' : 'sockets';
    cpu['sockets'] = 1;
    cpu['cores'] = 1;
    cpu['threads'] = 1;
    cpu[key] = guestCpus;
    // The instancetype API spells dedicated placement `dedicatedCPUPlacement`; the VM's CPU spells it `dedicatedCpuPlacement`.
    for (const [from, to] of [
      ['model', 'model'],
      ['dedicatedCPUPlacement', 'dedicatedCpuPlacement'],
      ['isolateEmulatorThread', 'isolateEmulatorThread'],
      ['numa', 'numa'],
      ['realtime', 'realtime'],
      ['maxSockets', 'maxSockets'],
    ] as const) {
      setIfUnset(cpu, to, get(it, 'cpu', from));
    }
  }
  const memory = getObj(it, 'memory');
  if (memory !== undefined) {
    const target = ensureObj(domain, 'memory');
    for (const k of ['guest', 'hugepages', 'maxGuest']) if (memory[k] !== undefined) target[k] = clone(memory[k]);
  }
  if (isObj(it['launchSecurity'])) domain['launchSecurity'] = clone(it['launchSecurity']);
  for (const k of ['gpus', 'hostDevices']) {
    if (Array.isArray(it[k])) ensureObj(domain, 'devices')[k] = clone(it[k]);
  }
  setIfUnset(domain, 'ioThreadsPolicy', it['ioThreadsPolicy']);
  setIfUnset(spec, 'nodeSelector', it['nodeSelector']);
  setIfUnset(spec, 'schedulerName', it['schedulerName']);
}

function applyPreference(pref: Obj, spec: Obj, domain: Obj): void {
  const devices = ensureObj(domain, 'devices');
  const diskBus = getStr(pref, 'devices', 'preferredDiskBus');
  const cdromBus = getStr(pref, 'devices', 'preferredCdromBus');
  const ifaceModel = getStr(pref, 'devices', 'preferredInterfaceModel');
  for (const disk of Array.isArray(devices['disks']) ? devices['disks'] : []) {
    if (!isObj(disk)) continue;
    for (const [kind, bus] of [['disk', diskBus], ['cdrom', cdromBus]] as const) {
      if (bus !== undefined && isObj(disk[kind]) && (disk[kind] as Obj)['bus'] === undefined) (disk[kind] as Obj)['bus'] = bus;
    }
  }
  for (const iface of Array.isArray(devices['interfaces']) ? devices['interfaces'] : []) {
    if (ifaceModel !== undefined && isObj(iface) && iface['model'] === undefined) iface['model'] = ifaceModel;
  }
  const machineType = getStr(pref, 'machine', 'preferredMachineType');
  if (machineType !== undefined) setIfUnset(ensureObj(domain, 'machine'), 'type', machineType);
  const firmware = getObj(pref, 'firmware');
  if (firmware !== undefined && get(domain, 'firmware', 'bootloader') === undefined) {
    if (firmware['preferredUseEfi'] === true || firmware['preferredEfi'] !== undefined) {
      const efi: Obj = isObj(firmware['preferredEfi']) ? clone(firmware['preferredEfi']) : {};
      if (typeof firmware['preferredUseSecureBoot'] === 'boolean') efi['secureBoot'] = firmware['preferredUseSecureBoot'];
      ensureObj(domain, 'firmware', 'bootloader')['efi'] = efi;
    } else if (firmware['preferredUseBios'] === true) {
      ensureObj(domain, 'firmware', 'bootloader')['bios'] = {};
    }
  }
  setIfUnset(spec, 'subdomain', pref['preferredSubdomain']);
  setIfUnset(spec, 'terminationGracePeriodSeconds', pref['preferredTerminationGracePeriodSeconds']);
  if (getStr(spec, 'architecture') === undefined) setIfUnset(spec, 'architecture', pref['preferredArchitecture']);
}
