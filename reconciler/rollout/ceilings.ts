/**
 * The hotplug ceilings KubeVirt fixes when it creates a VMI (`pkg/defaults`: `setupHotplug`,
 * `setupCPUHotplug`, `setupMemoryHotplug`): how far CPU sockets and guest memory can later
 * be hot-plugged without a restart. They are set once, at creation, and never recomputed, so
 * a ceiling too low for a later change makes that change wait for a restart.
 */
import type { ClusterSettings } from './cluster.ts';
import { topologyCount } from './cpu.ts';
import { type Obj, get, getObj, getStr } from './json.ts';
import { validateLiveUpdateMemory } from './memory.ts';
import { formatBytes, quantityUnits } from './quantity.ts';
import { Strategy } from './vocabulary.ts';

/** KubeVirt's cap on `maxSockets × cores × threads` when the ceiling comes from the ratio. */
export const MAX_HOTPLUG_VCPUS = 512;

/** The part of {@link ClusterSettings} the ceilings read: the strategy and `liveUpdateConfiguration`. */
export type CeilingSettings = Pick<ClusterSettings, 'strategy' | 'maxHotplugRatio' | 'maxCpuSockets' | 'maxGuest'>;

/** What KubeVirt writes into a new VMI's `domain`; a field is absent where it writes nothing. */
export interface HotplugCeilings {
  /** `domain.cpu.maxSockets`. */
  maxSockets?: number;
  /** `domain.memory.maxGuest`, a quantity. */
  maxGuest?: unknown;
}

/**
 * `setupCPUHotplug`: `liveUpdateConfiguration.maxCpuSockets` raised to the VMI's sockets, else
 * sockets × `maxHotplugRatio`, lowered (never below sockets) so that the vCPUs stay within 512.
 */
export function maxSocketsCeiling(cpu: unknown, cluster: CeilingSettings): number {
  const sockets = topologyCount(cpu, 'sockets');
  if (cluster.maxCpuSockets !== undefined) return Math.max(cluster.maxCpuSockets, sockets);
  const perSocket = topologyCount(cpu, 'cores') * topologyCount(cpu, 'threads');
  const max = sockets * cluster.maxHotplugRatio;
  return max * perSocket > MAX_HOTPLUG_VCPUS ? Math.max(Math.floor(MAX_HOTPLUG_VCPUS / perSocket), sockets) : max;
}

/**
 * `setupMemoryHotplug`: `liveUpdateConfiguration.maxGuest`, else guest × `maxHotplugRatio`;
 * undefined (memory hotplug unavailable for the VMI's lifetime) when the VMI has no guest
 * memory or `ValidateLiveUpdateMemory` refuses the candidate.
 */
export function maxGuestCeiling(vmiSpec: Obj, cluster: CeilingSettings): unknown {
  const guest = get(vmiSpec, 'domain', 'memory', 'guest');
  if (guest === undefined) return undefined;
  const guestBytes = quantityUnits(guest);
  const candidate = cluster.maxGuest ?? (guestBytes !== null ? formatBytes(guestBytes * BigInt(cluster.maxHotplugRatio)) : undefined);
  if (candidate === undefined) return undefined;
  return validateLiveUpdateMemory(vmiSpec, candidate) === null ? candidate : undefined;
}

/**
 * `setupHotplug`: the ceilings a VMI created from `vmiSpec` gets, only under the LiveUpdate
 * strategy and not on arm64. A ceiling the spec already sets (`maxSockets` non-zero,
 * `maxGuest` present) is kept, so none is returned for it.
 */
export function hotplugCeilings(vmiSpec: Obj, cluster: CeilingSettings): HotplugCeilings {
  if (cluster.strategy !== Strategy.LiveUpdate || (getStr(vmiSpec, 'architecture') ?? 'amd64') === 'arm64') return {};
  const out: HotplugCeilings = {};
  const cpu = getObj(vmiSpec, 'domain', 'cpu');
  if (!get(cpu, 'maxSockets')) out.maxSockets = maxSocketsCeiling(cpu, cluster);
  if (get(vmiSpec, 'domain', 'memory', 'maxGuest') === undefined) {
    const maxGuest = maxGuestCeiling(vmiSpec, cluster);
    if (maxGuest !== undefined) out.maxGuest = maxGuest;
  }
  return out;
}
