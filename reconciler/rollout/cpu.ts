/** CPU socket hotplug: KubeVirt's `handleCPUChangeRequest` and the VMI patch it writes. */
import { type Obj, get, getNum, getObj, getStr, setPath } from './json.ts';
import type { HandlerOutcome } from './outcome.ts';
import { templatePath } from './paths.ts';
import { formatMilliCpu, parseQuantity } from './quantity.ts';
import type { Behaviours } from './versions.ts';
import { Message, WaitMessage } from './vocabulary.ts';
import { hasVmiCondition, isDeleting, isMigrating } from './vmi.ts';

const SOCKETS_PATH = templatePath('domain', 'cpu', 'sockets');

/** A CPU topology count; KubeVirt defaults an unset one to 1. */
export function topologyCount(cpu: unknown, key: 'sockets' | 'cores' | 'threads'): number {
  const n = getNum(cpu, key);
  return n === undefined || n === 0 ? 1 : n;
}

/** Options the CPU handler reads from the cluster. */
export interface CpuContext {
  behaviours: Behaviours;
  /** `developerConfiguration.cpuAllocationRatio` (default 10). */
  cpuAllocationRatio: number;
}

/** CPU handler: compares desired sockets with the VMI and patches `vmi` in place when it can. */
export function handleCpuChange(spec: Obj, vmi: Obj, ctx: CpuContext): HandlerOutcome {
  if (isDeleting(vmi)) return { kind: 'none' };
  const vmCpu = getObj(spec, 'domain', 'cpu');
  const vmiCpu = getObj(vmi, 'spec', 'domain', 'cpu');
  if (vmCpu === undefined || vmiCpu === undefined) return { kind: 'none' };
  const wanted = topologyCount(vmCpu, 'sockets');
  const running = topologyCount(vmiCpu, 'sockets');
  if (wanted === running) return { kind: 'none' };
  const restart = (message: string): HandlerOutcome => ({ kind: 'restart', path: SOCKETS_PATH, message });
  if (ctx.behaviours.multiQueueSocketsRestart && get(spec, 'domain', 'devices', 'networkInterfaceMultiqueue') === true) {
    return restart(Message.socketsMultiQueue);
  }
  if (hasVmiCondition(vmi, 'HotVCPUChange')) return { kind: 'wait', path: SOCKETS_PATH, message: WaitMessage.cpuInProgress };
  if (isMigrating(vmi)) return { kind: 'wait', path: SOCKETS_PATH, message: WaitMessage.cpuMigrating };
  if (wanted > (getNum(vmiCpu, 'maxSockets') ?? 0)) return restart(Message.socketsAboveMax);
  if (wanted < running) return restart(Message.socketsReduced);
  if (ctx.behaviours.armCpuHotplugCheck && getStr(spec, 'architecture') === 'arm64') return restart(Message.armNoCpuHotplug);

  const perSocket = topologyCount(vmCpu, 'cores') * topologyCount(vmCpu, 'threads');
  const addedMilli = (BigInt((wanted - running) * perSocket) * 1000n) / BigInt(Math.max(1, ctx.cpuAllocationRatio));
  setPath(vmi, ['spec', 'domain', 'cpu', 'sockets'], wanted);
  for (const kind of ['requests', 'limits'] as const) {
    if (get(spec, 'domain', 'resources', kind, 'cpu') === undefined) continue;
    const current = parseQuantity(get(vmi, 'spec', 'domain', 'resources', kind, 'cpu')) ?? 0n;
    setPath(vmi, ['spec', 'domain', 'resources', kind, 'cpu'], formatMilliCpu(current + addedMilli));
  }
  return { kind: 'patched', paths: [SOCKETS_PATH], note: 'CPU sockets patched into the VMI; they reach the guest only through a live migration' };
}
