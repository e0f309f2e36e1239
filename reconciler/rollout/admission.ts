/** KubeVirt's admission checks on a VM update that the rollout engine must honour: a rejected VM never gets a plan. */
import { type Obj, get, getList, getNum, getObj, getStr } from './json.ts';
import { validateLiveUpdateMemory } from './memory.ts';
import { templatePath } from './paths.ts';
import type { Behaviours } from './versions.ts';
import { AdmissionMessage, FeatureGate, Strategy } from './vocabulary.ts';

/** One reason the API server would refuse the VM. */
export interface AdmissionError {
  path: string;
  message: string;
}

/**
 * `validateLiveUpdateFeatures` (under LiveUpdate: the VM's own ceilings hold and, before v1.5, the
 * gates `updateVolumesStrategy` needs are listed) and, before v1.5, `validateInterfaceStateValue`
 * (only `absent` is an interface state). `behaviours` and `featureGates` default to the seed model.
 */
export function admitVm(vm: Obj, strategy: Strategy, behaviours?: Pick<Behaviours, 'interfaceLinkState' | 'volumeMigrationGated'>, featureGates: ReadonlySet<string> = new Set()): AdmissionError[] {
  const errors: AdmissionError[] = [];
  const spec = getObj(vm, 'spec', 'template', 'spec') ?? {};
  if (behaviours !== undefined && !behaviours.interfaceLinkState) {
    for (const iface of getList(spec, 'domain', 'devices', 'interfaces')) {
      const state = getStr(iface, 'state');
      if (state !== undefined && state !== '' && state !== 'absent') {
        errors.push({ path: templatePath('domain', 'devices', 'interfaces', { name: String(iface['name']) }, 'state'), message: AdmissionMessage.interfaceStateUnsupported(String(iface['name']), state) });
      }
    }
  }
  if (strategy !== Strategy.LiveUpdate) return errors;
  const volumesStrategy = getStr(vm, 'spec', 'updateVolumesStrategy');
  if (behaviours?.volumeMigrationGated === true && volumesStrategy !== undefined) {
    if (!featureGates.has(FeatureGate.VolumesUpdateStrategy)) errors.push({ path: 'spec.updateVolumesStrategy', message: AdmissionMessage.gateNotEnabled(FeatureGate.VolumesUpdateStrategy) });
    if (volumesStrategy === 'Migration' && !featureGates.has(FeatureGate.VolumeMigration)) errors.push({ path: 'spec.updateVolumesStrategy', message: AdmissionMessage.gateNotEnabled(FeatureGate.VolumeMigration) });
  }
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
