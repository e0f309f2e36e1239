/**
 * Generator of a realistic repository of VirtualMachine manifests for the sync benchmark:
 * names, ~20 namespaces, sockets, memory, a few disks and interfaces per VM, ~1.5 KB a file,
 * 100 files per folder. Deterministic (seeded), so every run benchmarks the same repository.
 */

/** One generated manifest. */
export interface GeneratedVm {
  /** Repository-relative path. */
  file: string;
  namespace: string;
  name: string;
  sockets: number;
  /** Index of the VM in the repository (0-based). */
  index: number;
}

const TEAMS = [
  'payments', 'checkout', 'search', 'catalog', 'identity', 'billing', 'shipping', 'analytics', 'ml-train', 'ml-serve',
  'ci-runners', 'observability', 'edge', 'messaging', 'storage-gw', 'crm', 'erp', 'hr-apps', 'data-lake', 'security',
];
const ROLES = ['web', 'api', 'worker', 'db', 'cache', 'queue', 'batch', 'proxy', 'etl', 'gateway'];
const IMAGES = [
  'quay.io/containerdisks/fedora:40',
  'quay.io/containerdisks/centos-stream:9',
  'quay.io/containerdisks/ubuntu:24.04',
  'quay.io/containerdisks/debian:12',
];
const SOCKETS = [1, 2, 2, 4];
const MEMORY_GI = [1, 2, 4, 8];

/** Tiny deterministic PRNG (mulberry32). */
function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** The list of VMs of a repository of `count` manifests (100 per folder, folders per namespace). */
export function planRepository(count: number): GeneratedVm[] {
  const out: GeneratedVm[] = [];
  const perNamespace = Math.ceil(count / TEAMS.length);
  for (let i = 0; i < count; i++) {
    const team = TEAMS[Math.floor(i / perNamespace) % TEAMS.length] as string;
    const inNs = i % perNamespace;
    const shard = Math.floor(inNs / 100);
    const r = rng(i + 1);
    const role = ROLES[Math.floor(r() * ROLES.length)] as string;
    const name = `${role}-${team}-${String(inNs).padStart(4, '0')}`;
    const namespace = `team-${team}`;
    out.push({
      file: `vms/${namespace}/shard-${String(shard).padStart(2, '0')}/${name}.yaml`,
      namespace,
      name,
      sockets: SOCKETS[Math.floor(r() * SOCKETS.length)] as number,
      index: i,
    });
  }
  return out;
}

/** The YAML text of one VM; `sockets` overrides the generated CPU socket count. */
export function renderManifest(vm: GeneratedVm, sockets: number = vm.sockets): string {
  const r = rng(vm.index + 1);
  r(); // role
  r(); // sockets
  const memGi = MEMORY_GI[Math.floor(r() * MEMORY_GI.length)] as number;
  const image = IMAGES[Math.floor(r() * IMAGES.length)] as string;
  const halted = r() < 0.1;
  const dataDisks = r() < 0.3 ? 2 : 1;
  const secondNic = r() < 0.4;
  const zone = `zone-${'abc'[Math.floor(r() * 3)]}`;
  const role = vm.name.split('-')[0] as string;
  const disks = [
    '            - name: rootdisk\n              disk:\n                bus: virtio',
    '            - name: cloudinit\n              disk:\n                bus: virtio',
  ];
  const volumes = [
    `        - name: rootdisk\n          containerDisk:\n            image: ${image}`,
    `        - name: cloudinit\n          cloudInitNoCloud:\n            userData: |\n              #cloud-config\n              hostname: ${vm.name}\n              ssh_authorized_keys:\n                - ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAI${String(vm.index).padStart(8, '0')}ops@${vm.namespace}`,
  ];
  for (let d = 0; d < dataDisks; d++) {
    disks.push(`            - name: data${d}\n              disk:\n                bus: ${d === 0 ? 'virtio' : 'scsi'}`);
    volumes.push(`        - name: data${d}\n          persistentVolumeClaim:\n            claimName: ${vm.name}-data${d}`);
  }
  const interfaces = ['            - name: default\n              masquerade: {}'];
  const networks = ['        - name: default\n          pod: {}'];
  if (secondNic) {
    interfaces.push('            - name: storage\n              bridge: {}');
    networks.push(`        - name: storage\n          multus:\n            networkName: ${vm.namespace}/storage-net`);
  }
  return `apiVersion: kubevirt.io/v1
kind: VirtualMachine
metadata:
  name: ${vm.name}
  namespace: ${vm.namespace}
  labels:
    app: ${role}
    team: ${vm.namespace.slice(5)}
    tier: ${vm.index % 3 === 0 ? 'frontend' : 'backend'}
  annotations:
    owner: ${vm.namespace.slice(5)}@example.com
spec:
  runStrategy: ${halted ? 'Halted' : 'Always'}
  template:
    metadata:
      labels:
        kubevirt.io/domain: ${vm.name}
        app: ${role}
    spec:
      domain:
        cpu:
          sockets: ${sockets}
          cores: 1
          threads: 1
        memory:
          guest: ${memGi}Gi
        resources:
          requests:
            memory: ${memGi}Gi
        devices:
          disks:
${disks.join('\n')}
          interfaces:
${interfaces.join('\n')}
      networks:
${networks.join('\n')}
      nodeSelector:
        kubernetes.io/arch: amd64
        topology.kubernetes.io/zone: ${zone}
      volumes:
${volumes.join('\n')}
`;
}
