/** Memory hotplug: KubeVirt's `ValidateLiveUpdateMemory` and `handleMemoryHotplugRequest`. */
import { type Obj, clone, get, getObj, getStr, setPath } from './json.ts';
import { formatBytes, quantityUnits } from './quantity.ts';
import type { HandlerOutcome } from './outcome.ts';
import { templatePath } from './paths.ts';
import { Message, WaitMessage } from './vocabulary.ts';
import { hasVmiCondition, isDeleting, isLiveMigratable, isMigrating } from './vmi.ts';

const MI2 = 2n * 1024n * 1024n;
const GI = 1024n * 1024n * 1024n;

/** The architecture KubeVirt defaults a VM to when the template names none. */
export const DEFAULT_ARCHITECTURE = 'amd64';

/**
 * Returns the first reason memory hotplug cannot work for this VMI spec with this ceiling,
 * with KubeVirt's exact wording, or null when it can.
 */
export function validateLiveUpdateMemory(spec: Obj, maxGuest: unknown): string | null {
  const domain = getObj(spec, 'domain') ?? {};
  if (get(domain, 'cpu', 'realtime') !== undefined) return 'Memory hotplug is not compatible with realtime VMs';
  if (get(domain, 'cpu', 'numa', 'guestMappingPassthrough') !== undefined) {
    return 'Memory hotplug is not compatible with guest mapping passthrough';
  }
  if (get(domain, 'launchSecurity') !== undefined) return 'Memory hotplug is not compatible with encrypted VMs';
  const align = getStr(domain, 'memory', 'hugepages', 'pageSize') === '1Gi' ? GI : MI2;
  const guest = quantityUnits(get(domain, 'memory', 'guest'));
  if (guest === null) return 'Guest memory must be configured when memory hotplug is enabled';
  const max = quantityUnits(maxGuest);
  if (max === null) return 'Max guest memory must be configured when memory hotplug is enabled';
  if (guest > max) return 'Guest memory is greater than the configured maxGuest memory';
  if (guest % align !== 0n) return `Guest memory must be ${formatBytes(align)} aligned`;
  if (max % align !== 0n) return `MaxGuest must be ${formatBytes(align)} aligned`;
  if ((getStr(spec, 'architecture') ?? DEFAULT_ARCHITECTURE) !== 'amd64') return 'Memory hotplug is only available for x86_64 VMs';
  if (guest < GI) return 'Memory hotplug is only available for VMs with at least 1Gi of guest memory';
  return null;
}

const GUEST_PATH = templatePath('domain', 'memory', 'guest');

/** Memory handler: compares the desired template with the running VMI and patches `vmi` in place when it can. */
export function handleMemoryChange(spec: Obj, vmi: Obj): HandlerOutcome {
  if (isDeleting(vmi)) return { kind: 'none' };
  const wanted = quantityUnits(get(spec, 'domain', 'memory', 'guest'));
  const running = quantityUnits(get(vmi, 'spec', 'domain', 'memory', 'guest'));
  const status = getObj(vmi, 'status', 'memory');
  const guestCurrent = quantityUnits(get(status, 'guestCurrent'));
  if (wanted === null || running === null || status === undefined || guestCurrent === null) return { kind: 'none' };
  const restart = (message: string): HandlerOutcome => ({ kind: 'restart', path: GUEST_PATH, message });
  if (hasVmiCondition(vmi, 'HotMemoryChange', 'False')) return restart(Message.memoryHotplugFailed);
  if (wanted === running) return { kind: 'none' };
  if (!isLiveMigratable(vmi)) return restart(Message.memoryNotMigratable);
  const maxGuestRaw = get(vmi, 'spec', 'domain', 'memory', 'maxGuest');
  if (maxGuestRaw === undefined || maxGuestRaw === null) return restart(Message.memoryNoMaxGuest);
  if (hasVmiCondition(vmi, 'HotMemoryChange')) return { kind: 'wait', path: GUEST_PATH, message: WaitMessage.memoryInProgress };
  if (isMigrating(vmi)) return { kind: 'wait', path: GUEST_PATH, message: WaitMessage.memoryMigrating };
  const invalid = validateLiveUpdateMemory(spec, maxGuestRaw);
  if (invalid !== null) return restart(Message.memoryNotSupportedPrefix + invalid);
  const atBoot = quantityUnits(get(status, 'guestAtBoot'));
  if (atBoot !== null && wanted < atBoot) return restart(Message.memoryBelowBoot);
  const maxGuest = quantityUnits(maxGuestRaw);
  if (maxGuest !== null && wanted > maxGuest) return restart(Message.memoryAboveMax);

  const delta = wanted - guestCurrent;
  setPath(vmi, ['spec', 'domain', 'memory', 'guest'], clone(get(spec, 'domain', 'memory', 'guest')));
  const request = quantityUnits(get(vmi, 'spec', 'domain', 'resources', 'requests', 'memory'));
  if (request !== null && request !== 0n) {
    let next = request + delta;
    if (next < wanted) next = wanted;
    setPath(vmi, ['spec', 'domain', 'resources', 'requests', 'memory'], formatBytes(next));
  }
  const vmLimit = get(spec, 'domain', 'resources', 'limits', 'memory');
  const limit = quantityUnits(get(vmi, 'spec', 'domain', 'resources', 'limits', 'memory'));
  if (vmLimit !== undefined && limit !== null) {
    setPath(vmi, ['spec', 'domain', 'resources', 'limits', 'memory'], formatBytes(limit + delta));
  }
  return { kind: 'patched', paths: [GUEST_PATH], note: 'guest memory patched into the VMI; it reaches the guest only through a live migration' };
}
