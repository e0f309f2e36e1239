/**
 * A small running VM as a manifest, for the restart tests: one container disk whose `image` is the
 * change a test stages (a container disk is not hot-pluggable, so a new image sets RestartRequired).
 */
export interface SmallVm {
  namespace: string;
  name: string;
  image: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
}

/** The manifest of {@link SmallVm}, labels and annotations quoted. */
export function smallVmYaml(v: SmallVm): string {
  const map = (key: string, m: Record<string, string> | undefined): string[] =>
    m === undefined || Object.keys(m).length === 0 ? [] : [`  ${key}:`, ...Object.entries(m).map(([k, x]) => `    ${k}: "${x}"`)];
  return [
    'apiVersion: kubevirt.io/v1',
    'kind: VirtualMachine',
    'metadata:',
    `  name: ${v.name}`,
    `  namespace: ${v.namespace}`,
    ...map('labels', v.labels),
    ...map('annotations', v.annotations),
    'spec:',
    '  runStrategy: Always',
    '  template:',
    '    spec:',
    '      domain:',
    '        cpu: {sockets: 1, cores: 1, threads: 1}',
    '        memory: {guest: 1Gi}',
    '        devices:',
    '          disks: [{name: root, disk: {bus: virtio}}]',
    '      volumes:',
    `        - {name: root, containerDisk: {image: "${v.image}"}}`,
    '',
  ].join('\n');
}
