/**
 * Network interfaces: KubeVirt's `IsRestartRequired(vm, vmi)` (which compares the template
 * with the running VMI, not with the baseline) and the network synchroniser that hot-plugs,
 * unplugs, sets link state and copies NAD references, under any strategy.
 */
import { type Obj, byName, clone, get, getList, getObj, getStr, isObj } from './json.ts';
import { semanticEqual } from './semantic.ts';
import type { Behaviours } from './versions.ts';
import { FeatureGate, Strategy } from './vocabulary.ts';
import { isLiveMigratable } from './vmi.ts';

/** What the restart check and the synchroniser need besides the two objects. */
export interface NetworkContext {
  behaviours: Behaviours;
  strategy: Strategy;
  featureGates: ReadonlySet<string>;
}

function withoutState(iface: Obj): Obj {
  const copy = { ...iface };
  delete copy['state'];
  return copy;
}

function withoutNadName(network: Obj): Obj {
  const copy = clone(network);
  const multus = getObj(copy, 'multus');
  if (multus !== undefined) delete multus['networkName'];
  return copy;
}

/** Whether a NAD reference change is live for this VMI under this KubeVirt. */
export function nadRefLive(vmi: Obj, ctx: NetworkContext): boolean {
  switch (ctx.behaviours.nadRef) {
    case 'restart':
      return false;
    case 'gated':
      return ctx.featureGates.has(FeatureGate.LiveUpdateNADRef);
    case 'live':
      return true;
    case 'liveIfMigratable':
      return isLiveMigratable(vmi);
  }
}

/** Why the template's interfaces/networks need a restart relative to the VMI, or null when they do not. */
export function networkRestartReason(spec: Obj, vmi: Obj, ctx: NetworkContext): string | null {
  const vmIfaces = byName(getList(spec, 'domain', 'devices', 'interfaces'));
  const vmiIfaces = byName(getList(vmi, 'spec', 'domain', 'devices', 'interfaces'));
  for (const [name, running] of vmiIfaces) {
    const wanted = vmIfaces.get(name);
    if (wanted === undefined) return `interface "${name}" was removed without the "state: absent" unplug`;
    if (!semanticEqual(withoutState(wanted), withoutState(running))) return `interface "${name}" changed (binding, model or MAC): only its state is live-updatable`;
  }
  const vmNets = byName(getList(spec, 'networks'));
  const vmiNets = byName(getList(vmi, 'spec', 'networks'));
  const hasPod = (nets: Map<string, Obj>): boolean => [...nets.values()].some((n) => isObj(n['pod']));
  // v1.6.x–v1.7.x have no such rule: the pod network then waits for the next boot silently.
  if (ctx.behaviours.podNetworkAddedRestart && hasPod(vmNets) && !hasPod(vmiNets)) return 'the pod network was added to a VM running without it';
  const ignoreNad = nadRefLive(vmi, ctx);
  for (const [name, running] of vmiNets) {
    const wanted = vmNets.get(name);
    if (wanted === undefined) return `network "${name}" was removed`;
    const same = ignoreNad ? semanticEqual(withoutNadName(wanted), withoutNadName(running)) : semanticEqual(wanted, running);
    if (!same) {
      const nadOnly = semanticEqual(withoutNadName(wanted), withoutNadName(running));
      return nadOnly ? `network "${name}" changed its NAD reference, which this VMI cannot take live` : `network "${name}" changed`;
    }
  }
  return null;
}

/** Whether interface changes are hot-plugged into the VMI under this KubeVirt and strategy. */
export function nicHotplugEnabled(ctx: NetworkContext): boolean {
  switch (ctx.behaviours.nicHotplug) {
    case 'none':
      return false;
    case 'gated':
      return ctx.featureGates.has(FeatureGate.HotplugNICs);
    case 'liveUpdate':
      return ctx.strategy === Strategy.LiveUpdate;
    case 'always':
      return true;
  }
}

function binding(iface: Obj): string {
  for (const b of ['bridge', 'sriov', 'masquerade', 'passt', 'slirp', 'macvtap']) if (isObj(iface[b])) return b;
  return getStr(iface, 'binding', 'name') ?? 'unknown';
}

/** The network synchroniser: updates `vmi` in place; returns interface names it touched. */
export function syncNetworks(spec: Obj, vmi: Obj, ctx: NetworkContext): string[] {
  const touched: string[] = [];
  const devices = getObj(vmi, 'spec', 'domain', 'devices');
  const vmiSpec = getObj(vmi, 'spec');
  if (devices === undefined || vmiSpec === undefined) return touched;
  const vmiIfaces = getList(devices, 'interfaces');
  const vmiNets = getList(vmiSpec, 'networks');
  const runningIfaces = byName(vmiIfaces);
  const runningNets = byName(vmiNets);
  const wantedNets = byName(getList(spec, 'networks'));
  if (nicHotplugEnabled(ctx)) {
    for (const iface of getList(spec, 'domain', 'devices', 'interfaces')) {
      const name = String(iface['name']);
      const running = runningIfaces.get(name);
      const state = getStr(iface, 'state') ?? '';
      if (running === undefined) {
        const net = wantedNets.get(name);
        if (state === 'absent' || !['bridge', 'sriov'].includes(binding(iface)) || net === undefined) continue;
        vmiIfaces.push(clone(iface));
        if (!runningNets.has(name)) vmiNets.push(clone(net));
        touched.push(name);
      } else if (getStr(running, 'state') !== 'absent' && (getStr(running, 'state') ?? '') !== state) {
        if (state === '') delete running['state'];
        else running['state'] = state;
        touched.push(name);
      }
    }
  }
  if (nadRefLive(vmi, ctx)) {
    for (const net of vmiNets) {
      const wanted = getStr(wantedNets.get(String(net['name'])), 'multus', 'networkName');
      const multus = getObj(net, 'multus');
      if (wanted !== undefined && multus !== undefined && multus['networkName'] !== wanted) {
        multus['networkName'] = wanted;
        touched.push(String(net['name']));
      }
    }
  }
  devices['interfaces'] = vmiIfaces;
  vmiSpec['networks'] = vmiNets;
  return touched;
}

/** True when the interface is added with a binding KubeVirt does not hot-plug (it waits for the next boot). */
export function isNonHotplugBinding(iface: unknown): boolean {
  return isObj(iface) && !['bridge', 'sriov'].includes(binding(iface));
}

/** Reads `multus.networkName` of a network. */
export function nadName(network: unknown): string | undefined {
  const v = get(network, 'multus', 'networkName');
  return typeof v === 'string' ? v : undefined;
}
