/**
 * Volumes and disks: which changes are hotplug (KubeVirt's `validLiveUpdateVolumes` /
 * `validLiveUpdateDisks`), what declarative hotplug writes to the VMI, and the storage
 * migration handler for `updateVolumesStrategy: Migration`.
 */
import { type Obj, byName, clone, get, getList, getObj, isObj } from './json.ts';
import type { HandlerOutcome } from './outcome.ts';
import { templatePath } from './paths.ts';
import { semanticEqual } from './semantic.ts';
import { knownBugNote } from './versions.ts';
import { Message } from './vocabulary.ts';
import { isLiveMigratable, vmiPhase } from './vmi.ts';

/** KubeVirt's `IsHotplugVolume`: a PVC, DataVolume or MemoryDump marked hotpluggable. */
export function isHotplugVolume(volume: Obj | undefined): boolean {
  if (volume === undefined) return false;
  return ['persistentVolumeClaim', 'dataVolume', 'memoryDump'].some((k) => get(volume, k, 'hotpluggable') === true);
}

function isClaimVolume(volume: Obj): boolean {
  return isObj(volume['persistentVolumeClaim']) || isObj(volume['dataVolume']);
}

/** One element of a volume or disk list that blocks live update. */
export interface ElementReason {
  name: string;
  why: string;
}

/** Why the volume set cannot be live-updated (one entry per offending volume); empty when it can. */
export function volumesRestartReasons(baseline: Obj, current: Obj, migration: boolean): ElementReason[] {
  const before = byName(getList(baseline, 'volumes'));
  const after = byName(getList(current, 'volumes'));
  const out: ElementReason[] = [];
  for (const [name, volume] of after) {
    if (isHotplugVolume(volume)) continue;
    if (migration && isClaimVolume(volume)) continue;
    const old = before.get(name);
    if (old === undefined) out.push({ name, why: `volume "${name}" was added but is not hotpluggable` });
    else if (!semanticEqual(volume, old)) out.push({ name, why: `volume "${name}" changed and is not hotpluggable` });
  }
  for (const [name, old] of before) {
    if (!after.has(name) && !isHotplugVolume(old)) out.push({ name, why: `volume "${name}" was removed but was not hotpluggable` });
  }
  return out;
}

/** Version switches of {@link disksRestartReasons}. */
export interface DiskRules {
  /** Removing a CD-ROM drive needs a restart (v1.7+). */
  cdromRemovalRestart: boolean;
  /** v1.4.0–v1.5.x: a removed disk's volume is looked up in the updated spec only. */
  removedHotplugDiskBug: boolean;
}

/** Why the disk set cannot be live-updated (one entry per offending disk); empty when it can. */
export function disksRestartReasons(baseline: Obj, current: Obj, rules: DiskRules): ElementReason[] {
  const { cdromRemovalRestart } = rules;
  const out: ElementReason[] = [];
  const beforeVolumes = byName(getList(baseline, 'volumes'));
  const afterVolumes = byName(getList(current, 'volumes'));
  const hotplugName = (name: string): boolean => isHotplugVolume(afterVolumes.get(name) ?? beforeVolumes.get(name));
  const before = byName(getList(baseline, 'domain', 'devices', 'disks'));
  const after = byName(getList(current, 'domain', 'devices', 'disks'));
  for (const [name, disk] of after) {
    if (hotplugName(name)) continue;
    const old = before.get(name);
    if (old === undefined) out.push({ name, why: `disk "${name}" was added for a volume that is not hotpluggable` });
    else if (!semanticEqual(disk, old)) out.push({ name, why: `disk "${name}" changed and does not belong to a hotpluggable volume` });
  }
  for (const [name, old] of before) {
    if (after.has(name)) continue;
    if (rules.removedHotplugDiskBug && isHotplugVolume(beforeVolumes.get(name)) && !isHotplugVolume(afterVolumes.get(name))) {
      out.push({ name, why: `disk "${name}" was removed with its hotplug volume, and this KubeVirt then sets RestartRequired: ${knownBugNote('removedHotplugDiskBug')}` });
    } else if (!isHotplugVolume(beforeVolumes.get(name))) out.push({ name, why: `disk "${name}" was removed but its volume was not hotpluggable` });
    else if (cdromRemovalRestart && isObj(old['cdrom'])) out.push({ name, why: `CD-ROM disk "${name}" was removed: ejecting the media is live, removing the drive needs a restart` });
  }
  return out;
}

/** What {@link syncHotplugVolumes} did to the VMI. */
export interface HotplugSync {
  /** Names whose volume was attached, detached or swapped. */
  changed: string[];
  /** Names among them whose source changed: the old volume was unplugged and the new one plugged. */
  swapped: string[];
}

/**
 * Volume hotplug: attaches and detaches the template's hotpluggable volumes on a running VMI (in
 * place). With `swapSources` (declarative hotplug, `pkg/storage/hotplug/hotplug.go`:
 * `filterHotplugVMIVolumes` drops a hot-plugged volume whose source changed, and
 * `getNewHotplugVMVolumes` plugs the new one once the unplug is done) a changed source replaces
 * the running volume; the VMI is shown as it ends up.
 */
export function syncHotplugVolumes(spec: Obj, vmi: Obj, swapSources = false): HotplugSync {
  const none: HotplugSync = { changed: [], swapped: [] };
  if (vmiPhase(vmi) !== 'Running') return none;
  const vmiSpec = getObj(vmi, 'spec');
  if (vmiSpec === undefined) return none;
  const swapped: string[] = [];
  const wanted = byName(getList(spec, 'volumes'));
  const running = getList(vmi, 'spec', 'volumes');
  const runningByName = byName(running);
  const changed: string[] = [];
  const kept = running.map((v) => {
    const name = String(v['name']);
    const want = wanted.get(name);
    if (swapSources && want !== undefined && isHotplugVolume(v) && isHotplugVolume(want) && !semanticEqual(want, v)) {
      changed.push(name);
      swapped.push(name);
      return clone(want);
    }
    return v;
  }).filter((v) => {
    const name = String(v['name']);
    const keep = !isHotplugVolume(v) || wanted.has(name);
    if (!keep) changed.push(name);
    return keep;
  });
  const disks = getList(vmi, 'spec', 'domain', 'devices', 'disks');
  const diskNames = new Set(disks.map((d) => String(d['name'])));
  const wantedDisks = byName(getList(spec, 'domain', 'devices', 'disks'));
  for (const [name, volume] of wanted) {
    if (!isHotplugVolume(volume) || runningByName.has(name)) continue;
    kept.push(clone(volume));
    changed.push(name);
    const disk = wantedDisks.get(name);
    if (disk !== undefined && !diskNames.has(name)) disks.push(clone(disk));
  }
  const removed = new Set(changed.filter((n) => !wanted.has(n)));
  const keptDisks = disks.filter((d) => {
    const name = String(d['name']);
    // A CD-ROM drive stays when its media is ejected (the template keeps the drive); removed from
    // the template with its volume, it leaves too (hotplug.go: filterHotplugVMIDisks). Other
    // hotplug disks leave with their volume.
    return !removed.has(name) || (isObj(d['cdrom']) && wantedDisks.has(name));
  });
  vmiSpec['volumes'] = kept;
  const devices = (getObj(vmiSpec, 'domain', 'devices') ?? {}) as Obj;
  devices['disks'] = keptDisks;
  return { changed, swapped };
}

const isClaimOrDataVolumeHotplug = (v: Obj): boolean => get(v, 'persistentVolumeClaim', 'hotpluggable') === true || get(v, 'dataVolume', 'hotpluggable') === true;

/**
 * v1.6.0–v1.6.2 `handleVolumeUpdateRequest` under the default (Replacement) volume strategy: unless
 * a hot-plugged volume was removed, any difference between the VMI's volumes and the template's
 * (a hotplug volume added or its source changed) sets RestartRequired, a known bug fixed in v1.6.3.
 */
export function handleVolumeReplacement(spec: Obj, vmi: Obj, updateVolumesStrategy: string | undefined): HandlerOutcome {
  if (updateVolumesStrategy !== undefined && updateVolumesStrategy !== 'Replacement') return { kind: 'none' };
  const wanted = byName(getList(spec, 'volumes'));
  const runningList = getList(vmi, 'spec', 'volumes');
  if (runningList.some((v) => isClaimOrDataVolumeHotplug(v) && !wanted.has(String(v['name'])))) return { kind: 'none' };
  // KubeVirt compares the two lists as they are, in order.
  if (semanticEqual(runningList, getList(spec, 'volumes'))) return { kind: 'none' };
  const running = byName(runningList);
  const first = [...wanted].find(([name, v]) => !semanticEqual(v, running.get(name)))?.[0] ?? String(getList(spec, 'volumes')[0]?.['name'] ?? '');
  return {
    kind: 'restart',
    path: templatePath('volumes', { name: first }),
    message: Message.volumesReplacement,
    why: `KubeVirt sets RestartRequired "${Message.volumesReplacement}" for a hotplug volume added or changed under LiveUpdate: ${knownBugNote('volumeReplacementRestartBug')}`,
  };
}

/** Storage live migration for `updateVolumesStrategy: Migration` (a gated LiveUpdate handler). */
export function handleVolumeMigration(spec: Obj, vmi: Obj, updateVolumesStrategy: string | undefined): HandlerOutcome {
  if (updateVolumesStrategy !== 'Migration') return { kind: 'none' };
  const wanted = byName(getList(spec, 'volumes'));
  const running = byName(getList(vmi, 'spec', 'volumes'));
  const swapped: string[] = [];
  for (const [name, volume] of wanted) {
    const old = running.get(name);
    if (old !== undefined && isClaimVolume(volume) && !semanticEqual(volume, old)) swapped.push(name);
  }
  if (swapped.length === 0) return { kind: 'none' };
  const path = templatePath('volumes', { name: swapped[0] ?? '' });
  const invalid = migrationValidationError(spec, vmi, swapped);
  if (invalid !== null) return { kind: 'restart', path, message: invalid };
  const vmiVolumes = getList(vmi, 'spec', 'volumes').map((v) => (swapped.includes(String(v['name'])) ? clone(wanted.get(String(v['name'])) ?? v) : v));
  const vmiSpec = getObj(vmi, 'spec');
  if (vmiSpec !== undefined) vmiSpec['volumes'] = vmiVolumes;
  const status = (getObj(vmi, 'status') ?? {}) as Obj;
  status['migratedVolumes'] = swapped.map((name) => ({ volumeName: name }));
  vmi['status'] = status;
  return {
    kind: 'patched',
    paths: swapped.map((n) => templatePath('volumes', { name: n })),
    note: 'storage live migration to the new volume',
  };
}

function migrationValidationError(spec: Obj, vmi: Obj, swapped: string[]): string | null {
  const disks = byName(getList(spec, 'domain', 'devices', 'disks'));
  const filesystems = new Set(getList(spec, 'domain', 'devices', 'filesystems').map((f) => String(f['name'])));
  const list = (names: string[]): string => `[${names.join(' ')}]`;
  const fs = swapped.filter((n) => filesystems.has(n));
  if (fs.length > 0) return `invalid volumes to update with migration: filesystems: ${list(fs)}`;
  const shareable = swapped.filter((n) => get(disks.get(n), 'shareable') === true);
  if (shareable.length > 0) return `invalid volumes to update with migration: shareable: ${list(shareable)}`;
  const luns = swapped.filter((n) => isObj(get(disks.get(n), 'lun')));
  if (luns.length > 0) return `invalid volumes to update with migration: luns: ${list(luns)}`;
  const volumes = byName(getList(spec, 'volumes'));
  const hotplugged = swapped.filter((n) => isHotplugVolume(volumes.get(n)));
  if (hotplugged.length > 0) return `invalid volumes to update with migration: hotplugged: ${list(hotplugged)}`;
  if (!isLiveMigratable(vmi)) {
    const cond = getList(vmi, 'status', 'conditions').find((c) => c['type'] === 'LiveMigratable');
    return `cannot migrate the volumes as the VMI isn't migratable: ${String(cond?.['message'] ?? 'the VMI is not live-migratable')}`;
  }
  return null;
}

/** Template path of a volume. */
export function volumePath(name: string): string {
  return templatePath('volumes', { name });
}
