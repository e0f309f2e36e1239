/**
 * KubeVirt's name for the ControllerRevision it stores when it starts a VM (`vmRevisionName`):
 * `revision-start-vm-<uid>-<generation>`, holding `{spec}` of the VM as that instance started.
 * That spec is the engine's baseline; the cluster backends, the simulator and `vmroll diff`
 * all find it by this name.
 */

const START_REVISION = /^revision-start-vm-(.+)-(\d+)$/;

/** The start revision's name for the VM with `uid` at `generation`. */
export function startRevisionName(uid: string, generation: number): string {
  return `revision-start-vm-${uid}-${generation}`;
}

/** The VM uid and generation a start revision's name holds; null for any other name. */
export function parseStartRevisionName(name: string): { uid: string; generation: number } | null {
  const match = START_REVISION.exec(name);
  if (match === null) return null;
  const [, uid = '', generation = '0'] = match;
  return { uid, generation: Number(generation) };
}
