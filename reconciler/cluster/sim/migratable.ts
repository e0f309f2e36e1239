/**
 * The VMI's `LiveMigratable` condition as virt-handler computes it
 * (`calculateLiveMigrationCondition`, `checkVolumesForMigration` in pkg/virt-handler/vm.go;
 * `VerifyVMIMigratable` in pkg/network/vmispec): the first reason found wins, with KubeVirt's
 * reason names and messages. Only the checks the simulator has the data for are made:
 * volumes (from the PersistentVolumeClaims it stores), the pod network's binding, host
 * devices and GPUs, SEV, and the simulator's own override annotation.
 */
import type { Obj } from '../../rollout/index.ts';
import { annotationsOf, isObj, specOf } from '../object.ts';

/** KubeVirt's reasons for `LiveMigratable=False` that the simulator produces. */
export const NotMigratableReason = {
  /** A PVC that is not ReadWriteMany (or a non-shared hostDisk). */
  DisksNotLiveMigratable: 'DisksNotLiveMigratable',
  /** The pod network is bound without masquerade (or the bridge annotation, or a migratable plugin). */
  InterfaceNotLiveMigratable: 'InterfaceNotLiveMigratable',
  /** A PCI host device or GPU is passed through. */
  HostDeviceNotLiveMigratable: 'HostDeviceNotLiveMigratable',
  /** AMD SEV. */
  SEVNotLiveMigratable: 'SEVNotLiveMigratable',
  /** KubeVirt's generic reason; the simulator uses it for its override annotation only. */
  NotMigratable: 'NotMigratable',
} as const;
/** One of {@link NotMigratableReason}. */
export type NotMigratableReason = (typeof NotMigratableReason)[keyof typeof NotMigratableReason];

/** Annotation (on the VM template, so on the VMI) that makes the simulated VMI non-migratable, for tests and demos. */
export const NON_MIGRATABLE_ANNOTATION = 'sim.vmroll.dev/non-migratable';

/** KubeVirt's annotation that lets a VMI with bridge binding on the pod network migrate. */
export const ALLOW_POD_BRIDGE_MIGRATION_ANNOTATION = 'kubevirt.io/allow-pod-bridge-network-live-migration';

/** Access modes of a claim, or undefined when the simulator stores no such PersistentVolumeClaim. */
export type ClaimLookup = (namespace: string, claimName: string) => readonly string[] | undefined;

/** The access modes the simulator assumes for a claim it has no PersistentVolumeClaim for: shared, as most demo VMs expect. */
export const ASSUMED_ACCESS_MODES: readonly string[] = ['ReadWriteMany'];

const list = (o: unknown, key: string): Obj[] => (isObj(o) && Array.isArray(o[key]) ? (o[key] as unknown[]).filter(isObj) : []);

function claimOf(volume: Obj): string | undefined {
  const pvc = volume['persistentVolumeClaim'];
  if (isObj(pvc) && typeof pvc['claimName'] === 'string') return pvc['claimName'];
  const dv = volume['dataVolume'];
  // A DataVolume's PVC carries the DataVolume's name.
  if (isObj(dv) && typeof dv['name'] === 'string') return dv['name'];
  return undefined;
}

/** virt-launcher's device name prefix of a disk bus (converter.go `getPrefixFromBus`); amd64's default bus is SATA. */
function busPrefix(disk: Obj): string {
  const device = ['disk', 'cdrom', 'lun'].map((k) => disk[k]).find(isObj);
  const bus = device !== undefined && typeof device['bus'] === 'string' && device['bus'] !== '' ? device['bus'] : 'sata';
  return bus === 'virtio' ? 'vd' : 'sd';
}

/** `FormatDeviceName`: the prefix and a base-26 letter index (a … z, aa …). */
function deviceName(prefix: string, index: number): string {
  let name = '';
  for (let i = index; i >= 0; i = Math.floor(i / 26) - 1) name = String.fromCharCode(97 + (i % 26)) + name;
  return prefix + name;
}

/**
 * The guest device each volume's disk has (`vda`, `sdb`, …), as virt-launcher's converter names them:
 * in disk order the first free name of the bus's prefix, a target already in the VMI's `volumeStatus` kept.
 */
function diskTargets(vmi: Readonly<Obj>): Map<string, string> {
  const kept = new Map<string, string>();
  const status = isObj(vmi['status']) ? vmi['status'] : {};
  for (const v of list(status, 'volumeStatus')) if (typeof v['target'] === 'string' && v['target'] !== '') kept.set(String(v['name']), v['target']);
  const used = new Set(kept.values());
  const out = new Map<string, string>();
  const domain = specOf(vmi)['domain'];
  for (const disk of list(isObj(domain) ? domain['devices'] : undefined, 'disks')) {
    const name = String(disk['name'] ?? '');
    const have = kept.get(name);
    if (have !== undefined) {
      out.set(name, have);
      continue;
    }
    const prefix = busPrefix(disk);
    // The first name of the prefix not yet taken, as `makeDeviceName` picks it.
    let i = 0;
    while (used.has(deviceName(prefix, i))) i++;
    const target = deviceName(prefix, i);
    used.add(target);
    out.set(name, target);
  }
  return out;
}

/**
 * `status.volumeStatus` entries for the VMI's claims, as virt-controller reports them (persistentVolumeClaimInfo),
 * with the disk's `target` virt-handler fills in (a field KubeVirt's CRD schema requires).
 */
export function volumeStatusOf(vmi: Readonly<Obj>, namespace: string, claims: ClaimLookup): Obj[] {
  const out: Obj[] = [];
  const targets = diskTargets(vmi);
  for (const v of list(specOf(vmi), 'volumes')) {
    const claim = claimOf(v);
    if (claim === undefined) continue;
    const accessModes = [...(claims(namespace, claim) ?? ASSUMED_ACCESS_MODES)];
    const name = String(v['name'] ?? '');
    out.push({ name, target: targets.get(name) ?? '', persistentVolumeClaimInfo: { claimName: claim, accessModes } });
  }
  return out;
}

function podNetworkBinding(spec: Obj): { iface: Obj | undefined } | null {
  const pod = list(spec, 'networks').find((n) => isObj(n['pod']));
  if (pod === undefined) return null;
  const domain = isObj(spec['domain']) ? spec['domain'] : {};
  const devices = isObj(domain['devices']) ? domain['devices'] : {};
  return { iface: list(devices, 'interfaces').find((i) => i['name'] === pod['name']) };
}

/** A reason a VMI cannot migrate, as KubeVirt names and words it. */
interface Obstacle {
  reason: NotMigratableReason;
  message: string;
}

/** The obstacles other than the volumes (interface, host devices, SEV), in virt-handler's order. */
function otherObstacles(vmi: Readonly<Obj>, kubevirt: Readonly<Obj> | null): Obstacle[] {
  const spec = specOf(vmi);
  const annotations = annotationsOf(vmi);
  const out: Obstacle[] = [];
  const binding = podNetworkBinding(spec);
  const iface = binding?.iface;
  if (iface !== undefined && !isObj(iface['masquerade'])) {
    const bridgeAllowed = isObj(iface['bridge']) && annotations[ALLOW_POD_BRIDGE_MIGRATION_ANNOTATION] !== undefined;
    const plugin = isObj(iface['binding']) ? String(iface['binding']['name'] ?? '') : undefined;
    const bindings = (((specOf(kubevirt ?? {})['configuration'] ?? {}) as Obj)['network'] ?? {}) as Obj;
    const pluginMigratable = plugin !== undefined && isObj(bindings['binding']) && isObj((bindings['binding'] as Obj)[plugin]) && ((bindings['binding'] as Obj)[plugin] as Obj)['migration'] !== undefined;
    if (!bridgeAllowed && !pluginMigratable) {
      out.push({ reason: 'InterfaceNotLiveMigratable', message: `cannot migrate VMI which does not use masquerade, bridge with ${ALLOW_POD_BRIDGE_MIGRATION_ANNOTATION} VM annotation or a migratable plugin to connect to the pod network` });
    }
  }
  const domain = isObj(spec['domain']) ? spec['domain'] : {};
  const devices = isObj(domain['devices']) ? domain['devices'] : {};
  if (list(devices, 'hostDevices').length > 0 || list(devices, 'gpus').length > 0) out.push({ reason: 'HostDeviceNotLiveMigratable', message: 'VMI uses a PCI host devices' });
  if (isObj(domain['launchSecurity']) && isObj(domain['launchSecurity']['sev'])) out.push({ reason: 'SEVNotLiveMigratable', message: 'VMI uses SEV' });
  return out;
}

/** The simulator's override as an obstacle, when the VMI carries it. */
function overrideObstacle(vmi: Readonly<Obj>): Obstacle | null {
  return annotationsOf(vmi)[NON_MIGRATABLE_ANNOTATION] === 'true' ? { reason: 'NotMigratable', message: `the simulator was told so by the ${NON_MIGRATABLE_ANNOTATION} annotation` } : null;
}

/** The `LiveMigratable` condition for a VMI (its spec, annotations and the claims it uses). */
export function liveMigratableCondition(vmi: Readonly<Obj>, namespace: string, claims: ClaimLookup, kubevirt: Readonly<Obj> | null): Obj {
  const no = (o: Obstacle): Obj => ({ type: 'LiveMigratable', status: 'False', reason: o.reason, message: o.message });
  const override = overrideObstacle(vmi);
  if (override !== null) return no(override);
  for (const v of list(specOf(vmi), 'volumes')) {
    const claim = claimOf(v);
    if (claim !== undefined) {
      const modes = claims(namespace, claim) ?? ASSUMED_ACCESS_MODES;
      if (!modes.includes('ReadWriteMany')) {
        return no({ reason: 'DisksNotLiveMigratable', message: `cannot migrate VMI: PVC ${claim} is not shared, live migration requires that all PVCs must be shared (using ReadWriteMany access mode)` });
      }
      continue;
    }
    const hostDisk = v['hostDisk'];
    if (isObj(hostDisk) && hostDisk['shared'] !== true) return no({ reason: 'DisksNotLiveMigratable', message: 'cannot migrate VMI with non-shared HostDisk' });
  }
  const [first] = otherObstacles(vmi, kubevirt);
  return first !== undefined ? no(first) : { type: 'LiveMigratable', status: 'True' };
}

/**
 * The `StorageLiveMigratable` condition (`calculateLiveStorageMigrationCondition`): every obstacle
 * except the volumes, all of them in the message (`Reason: message, ...`), reason `NotMigratable`.
 * A storage migration is refused while it is False.
 */
export function storageLiveMigratableCondition(vmi: Readonly<Obj>, kubevirt: Readonly<Obj> | null): Obj {
  const override = overrideObstacle(vmi);
  const all = [...(override !== null ? [override] : []), ...otherObstacles(vmi, kubevirt)];
  if (all.length === 0) return { type: 'StorageLiveMigratable', status: 'True' };
  return { type: 'StorageLiveMigratable', status: 'False', reason: 'NotMigratable', message: all.map((o) => `${o.reason}: ${o.message}`).join(', ') };
}

/**
 * KubeVirt's `ValidateVolumesUpdateMigration` (pkg/virt-controller/watch/volume-migration): null
 * when the VMI's `status.migratedVolumes` may be carried by a migration although the VMI is not
 * otherwise migratable, else KubeVirt's error. It needs `StorageLiveMigratable` not False and
 * every ReadWriteOnce claim in `status.volumeStatus` to be among the migrated volumes.
 */
export function volumeMigrationError(vmi: Readonly<Obj>): string | null {
  const status = (vmi['status'] ?? {}) as Obj;
  const migrated = Array.isArray(status['migratedVolumes']) ? (status['migratedVolumes'] as unknown[]).filter(isObj) : [];
  if (migrated.length === 0) return null;
  const conditions = Array.isArray(status['conditions']) ? (status['conditions'] as unknown[]).filter(isObj) : [];
  const storage = conditions.find((c) => c['type'] === 'StorageLiveMigratable');
  if (storage !== undefined && storage['status'] === 'False') return `cannot migrate the volumes as the VMI isn't migratable: ${String(storage['message'] ?? '')}`;
  const names = new Set(migrated.map((m) => String(m['volumeName'] ?? '')));
  for (const v of Array.isArray(status['volumeStatus']) ? (status['volumeStatus'] as unknown[]).filter(isObj) : []) {
    const info = v['persistentVolumeClaimInfo'];
    if (!isObj(info)) continue;
    const modes = Array.isArray(info['accessModes']) ? (info['accessModes'] as unknown[]).map(String) : [];
    if (modes.includes('ReadWriteOnce') && !names.has(String(v['name'] ?? ''))) return `cannot migrate the VM. The volume ${String(v['name'] ?? '')} is RWO and not included in the migration volumes`;
  }
  return null;
}

/** Whether the VMI carries a storage migration a migration may carry out (`volMig` in the workload updater). */
export function hasValidVolumeMigration(vmi: Readonly<Obj>): boolean {
  const migrated = ((vmi['status'] ?? {}) as Obj)['migratedVolumes'];
  return Array.isArray(migrated) && migrated.length > 0 && volumeMigrationError(vmi) === null;
}

/** The claim a PVC or DataVolume volume uses, or undefined for other volumes. */
export function claimNameOf(volume: Obj): string | undefined {
  return claimOf(volume);
}
