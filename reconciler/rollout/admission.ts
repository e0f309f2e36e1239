/** KubeVirt's admission checks on a VM update that the rollout engine must honour: a rejected VM never gets a plan. */
import { type Obj, get, getNum, getObj } from './json.ts';
import { validateLiveUpdateMemory } from './memory.ts';
import { templatePath } from './paths.ts';
import { AdmissionMessage, Strategy } from './vocabulary.ts';

/** One reason the API server would refuse the VM. */
export interface AdmissionError {
  path: string;
  message: string;
}

/** `validateLiveUpdateFeatures`: under LiveUpdate, the VM's own ceilings must hold. */
export function admitVm(vm: Obj, strategy: Strategy): AdmissionError[] {
  if (strategy !== Strategy.LiveUpdate) return [];
  const errors: AdmissionError[] = [];
  const spec = getObj(vm, 'spec', 'template', 'spec') ?? {};
  const sockets = getNum(spec, 'domain', 'cpu', 'sockets') ?? 0;
  const maxSockets = getNum(spec, 'domain', 'cpu', 'maxSockets') ?? 0;
  if (sockets !== 0 && maxSockets !== 0 && sockets > maxSockets) {
    errors.push({ path: templatePath('domain', 'cpu', 'sockets'), message: AdmissionMessage.socketsAboveMaxSockets });
  }
  const maxGuest = get(spec, 'domain', 'memory', 'maxGuest');
  if (maxGuest !== undefined && maxGuest !== null) {
    const invalid = validateLiveUpdateMemory(spec, maxGuest);
    if (invalid !== null) errors.push({ path: templatePath('domain', 'memory', 'guest'), message: invalid });
  }
  return errors;
}
