/**
 * The oracle's case generator: realistic running VMs (fixtures/rollout/base and KubeVirt's
 * own examples in ../shared/kubevirt/examples, read at run time) under single- and
 * multi-field mutations, each under several cluster settings. Deterministic: the same inputs
 * give the same cases, named so that a known difference can point at one.
 */
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { parseAllDocuments } from 'yaml';
import type { Obj } from '../../../reconciler/rollout/index.ts';
import { ROOT, base } from '../../helpers/cases.ts';

/** Families a mutation belongs to; the report counts agreement per family. */
export const Family = {
  cpu: 'cpu',
  memory: 'memory',
  placement: 'placement',
  volumes: 'volumes',
  cdrom: 'cdrom',
  interfaces: 'interfaces',
  firmware: 'firmware',
  metadata: 'metadata',
  instancetype: 'instancetype',
  other: 'other',
  none: 'none',
} as const;
/** One of {@link Family}. */
export type Family = (typeof Family)[keyof typeof Family];

/** One generated case: what both KubeVirt's controller and vmroll's engine are given. */
export interface OracleCase {
  name: string;
  families: Family[];
  kubevirt: Obj;
  /** The VM the running VMI started from (the start ControllerRevision's spec). */
  start: Obj;
  /** The VM as stored now. */
  vm: Obj;
  vmi: Obj;
  conditions: Obj[];
  instancetypes: Obj[];
}

interface Mutation {
  id: string;
  family: Family;
  /** Changes the template spec (and metadata) of a stored VM in place; false when it does not apply to this VM. */
  apply(vm: Obj): boolean;
}

const FIRMWARE_UUID = '0c8a7b14-5f2d-4e0e-9c1b-7a3f3f1d2e11';
const FIRMWARE_SERIAL = 'a3e6d0e2-3c1c-4f6b-8f1e-2b9d8c7a6f54';

function tspec(vm: Obj): Obj {
  return ((vm['spec'] as Obj)['template'] as Obj)['spec'] as Obj;
}
function tmeta(vm: Obj): Obj {
  const t = (vm['spec'] as Obj)['template'] as Obj;
  t['metadata'] ??= {};
  return t['metadata'] as Obj;
}
function obj(o: Obj, key: string): Obj {
  if (typeof o[key] !== 'object' || o[key] === null) o[key] = {};
  return o[key] as Obj;
}
function list(o: Obj, key: string): Obj[] {
  if (!Array.isArray(o[key])) o[key] = [];
  return o[key] as Obj[];
}
function domain(vm: Obj): Obj {
  return obj(tspec(vm), 'domain');
}
function devices(vm: Obj): Obj {
  return obj(domain(vm), 'devices');
}
/** Memory in MiB from a Kubernetes quantity this generator writes (Mi/Gi). */
function mib(q: unknown): number {
  const m = /^(\d+)(Mi|Gi)$/.exec(String(q));
  if (!m) return 0;
  return Number(m[1]) * (m[2] === 'Gi' ? 1024 : 1);
}

/** The bases: the engine's own base VM and a few of KubeVirt's examples, made to run. */
function bases(): Array<{ id: string; vm: Obj }> {
  const out: Array<{ id: string; vm: Obj }> = [{ id: 'base', vm: base('vm') }];
  const dir = path.join(ROOT, '..', 'shared', 'kubevirt', 'examples');
  for (const file of ['vm-cirros.yaml', 'vm-alpine-multipvc.yaml', 'vm-priorityclass.yaml']) {
    for (const doc of parseAllDocuments(readFileSync(path.join(dir, file), 'utf8'))) {
      const vm = doc.toJSON() as Obj | null;
      if (vm?.['kind'] !== 'VirtualMachine') continue;
      out.push({ id: file.replace(/\.yaml$/, ''), vm });
    }
  }
  // The base VM sized by a cluster instancetype instead of its own CPU and memory.
  const it = base('vm');
  (it['spec'] as Obj)['instancetype'] = { kind: 'VirtualMachineClusterInstancetype', name: 'small' };
  const itDomain = domain(it);
  delete itDomain['cpu'];
  delete itDomain['memory'];
  delete itDomain['resources'];
  out.push({ id: 'instancetype', vm: it });
  for (const b of out) {
    const vm = b.vm;
    const meta = obj(vm, 'metadata');
    meta['namespace'] = 'default';
    (vm['spec'] as Obj)['runStrategy'] = 'Always';
    delete (vm['spec'] as Obj)['running'];
    // What KubeVirt's webhook wrote when the VM was created (v1.8+): a firmware UUID and serial.
    const fw = obj(domain(vm), 'firmware');
    fw['uuid'] ??= FIRMWARE_UUID;
    fw['serial'] ??= FIRMWARE_SERIAL;
  }
  return out;
}

/** The cluster instancetypes and preference the instancetype base and its mutations name. */
const INSTANCETYPES: Obj[] = [
  { apiVersion: 'instancetype.kubevirt.io/v1beta1', kind: 'VirtualMachineClusterInstancetype', metadata: { name: 'small' }, spec: { cpu: { guest: 2 }, memory: { guest: '2Gi' } } },
  { apiVersion: 'instancetype.kubevirt.io/v1beta1', kind: 'VirtualMachineClusterInstancetype', metadata: { name: 'large' }, spec: { cpu: { guest: 4 }, memory: { guest: '4Gi' } } },
  { apiVersion: 'instancetype.kubevirt.io/v1beta1', kind: 'VirtualMachineClusterInstancetype', metadata: { name: 'huge' }, spec: { cpu: { guest: 16 }, memory: { guest: '32Gi' } } },
  { apiVersion: 'instancetype.kubevirt.io/v1beta1', kind: 'VirtualMachineClusterInstancetype', metadata: { name: 'small-dedicated' }, spec: { cpu: { guest: 2, dedicatedCPUPlacement: true }, memory: { guest: '2Gi' } } },
  { apiVersion: 'instancetype.kubevirt.io/v1beta1', kind: 'VirtualMachineClusterPreference', metadata: { name: 'cores' }, spec: { cpu: { preferredCPUTopology: 'cores' } } },
];

/** The running VMI KubeVirt created from `start` under LiveUpdate: its spec (the instancetype expanded), with the hotplug ceilings (`ratio` × sockets and guest memory; KubeVirt's default maxHotplugRatio is 4). */
function vmiFor(start: Obj, ratio = 4): Obj {
  const spec = structuredClone(tspec(start));
  const d = obj(spec, 'domain');
  const itName = ((start['spec'] as Obj)['instancetype'] as Obj | undefined)?.['name'];
  const it = INSTANCETYPES.find((x) => x['kind'] === 'VirtualMachineClusterInstancetype' && (x['metadata'] as Obj)['name'] === itName);
  if (it !== undefined) {
    const itSpec = it['spec'] as Obj;
    d['cpu'] = { sockets: (itSpec['cpu'] as Obj)['guest'], cores: 1, threads: 1 };
    d['memory'] = { guest: (itSpec['memory'] as Obj)['guest'] };
  }
  const cpu = d['cpu'] as Obj | undefined;
  if (cpu !== undefined) cpu['maxSockets'] = Number(cpu['sockets'] ?? 1) * ratio;
  const mem = d['memory'] as Obj | undefined;
  const guest = mem?.['guest'];
  // KubeVirt's VMI webhook requests the guest memory when the spec requests none.
  if (guest !== undefined) {
    const requests = obj(obj(d, 'resources'), 'requests');
    requests['memory'] ??= guest;
  }
  if (mem !== undefined && guest !== undefined) mem['maxGuest'] = `${mib(guest) * ratio}Mi`;
  const labels = structuredClone((tmeta(start)['labels'] as Obj | undefined) ?? {});
  const annotations = structuredClone((tmeta(start)['annotations'] as Obj | undefined) ?? {});
  // What virt-handler reports for each interface of a VMI started by a current KubeVirt: the pod
  // network as eth0, a secondary one under its hashed pod interface name (namescheme), without
  // which KubeVirt assumes the old ordinal naming and refuses interface hot-unplug.
  const nets = new Map(((spec['networks'] as Obj[] | undefined) ?? []).map((n) => [n['name'] as string, n]));
  const interfaces = (((d['devices'] as Obj | undefined)?.['interfaces'] as Obj[] | undefined) ?? []).map((i) => {
    const name = i['name'] as string;
    const secondary = nets.get(name)?.['multus'] !== undefined;
    const podInterfaceName = secondary ? `pod${createHash('sha256').update(name).digest('hex').slice(0, 11)}` : 'eth0';
    return { name, interfaceName: `eth${[...nets.keys()].indexOf(name)}`, infoSource: 'domain, guest-agent, multus-status', podInterfaceName };
  });
  const vmi: Obj = {
    apiVersion: 'kubevirt.io/v1',
    kind: 'VirtualMachineInstance',
    metadata: { name: (start['metadata'] as Obj)['name'], namespace: 'default', labels, annotations },
    spec,
    status: {
      phase: 'Running',
      ...(interfaces.length > 0 ? { interfaces } : {}),
      conditions: [{ type: 'LiveMigratable', status: 'True' }, { type: 'Ready', status: 'True' }],
      ...(guest !== undefined ? { memory: { guestAtBoot: guest, guestCurrent: guest, guestRequested: guest } } : {}),
    },
  };
  return vmi;
}

const HOTPLUG_PVC = { name: 'hp-data', persistentVolumeClaim: { claimName: 'data-pvc', hotpluggable: true } };
const HOTPLUG_DISK = { name: 'hp-data', disk: { bus: 'scsi' } };

/** Every single-field mutation. */
function mutations(): Mutation[] {
  const m: Mutation[] = [];
  const add = (id: string, family: Family, apply: (vm: Obj) => boolean | void): void => {
    m.push({ id, family, apply: (vm) => apply(vm) !== false });
  };
  // CPU
  const sockets = (vm: Obj): number => Number((domain(vm)['cpu'] as Obj | undefined)?.['sockets'] ?? 1);
  add('cpu.sockets+1', Family.cpu, (vm) => void (obj(domain(vm), 'cpu')['sockets'] = sockets(vm) + 1));
  add('cpu.sockets+2', Family.cpu, (vm) => void (obj(domain(vm), 'cpu')['sockets'] = sockets(vm) + 2));
  add('cpu.sockets-1', Family.cpu, (vm) => {
    if (sockets(vm) < 2) return false;
    obj(domain(vm), 'cpu')['sockets'] = sockets(vm) - 1;
  });
  add('cpu.sockets-over-ceiling', Family.cpu, (vm) => void (obj(domain(vm), 'cpu')['sockets'] = sockets(vm) * 4 + 1));
  add('cpu.cores', Family.cpu, (vm) => void (obj(domain(vm), 'cpu')['cores'] = 2));
  add('cpu.threads', Family.cpu, (vm) => void (obj(domain(vm), 'cpu')['threads'] = 2));
  add('cpu.model', Family.cpu, (vm) => void (obj(domain(vm), 'cpu')['model'] = 'host-passthrough'));
  add('cpu.dedicated', Family.cpu, (vm) => void (obj(domain(vm), 'cpu')['dedicatedCpuPlacement'] = true));
  // Memory
  const guest = (vm: Obj): number => mib((domain(vm)['memory'] as Obj | undefined)?.['guest']);
  add('memory.guest+1Gi', Family.memory, (vm) => {
    if (guest(vm) === 0) return false;
    obj(domain(vm), 'memory')['guest'] = `${guest(vm) + 1024}Mi`;
  });
  add('memory.guest*2', Family.memory, (vm) => {
    if (guest(vm) === 0) return false;
    obj(domain(vm), 'memory')['guest'] = `${guest(vm) * 2}Mi`;
  });
  add('memory.guest-decrease', Family.memory, (vm) => {
    if (guest(vm) < 256) return false;
    obj(domain(vm), 'memory')['guest'] = `${guest(vm) / 2}Mi`;
  });
  add('memory.guest-over-ceiling', Family.memory, (vm) => {
    if (guest(vm) === 0) return false;
    obj(domain(vm), 'memory')['guest'] = `${guest(vm) * 8}Mi`;
  });
  add('memory.requests', Family.memory, (vm) => void (obj(obj(domain(vm), 'resources'), 'requests')['memory'] = '4Gi'));
  add('memory.limits', Family.memory, (vm) => void (obj(obj(domain(vm), 'resources'), 'limits')['memory'] = '8Gi'));
  // Placement
  add('nodeSelector.add', Family.placement, (vm) => void (obj(tspec(vm), 'nodeSelector')['topology.kubernetes.io/zone'] = 'zone-b'));
  add('nodeSelector.remove', Family.placement, (vm) => {
    if (tspec(vm)['nodeSelector'] === undefined) return false;
    delete tspec(vm)['nodeSelector'];
  });
  add('affinity.nodeAffinity', Family.placement, (vm) => {
    tspec(vm)['affinity'] = {
      nodeAffinity: {
        requiredDuringSchedulingIgnoredDuringExecution: {
          nodeSelectorTerms: [{ matchExpressions: [{ key: 'node-role.kubernetes.io/worker', operator: 'Exists' }] }],
        },
      },
    };
  });
  add('affinity.podAntiAffinity', Family.placement, (vm) => {
    tspec(vm)['affinity'] = {
      podAntiAffinity: {
        preferredDuringSchedulingIgnoredDuringExecution: [
          { weight: 100, podAffinityTerm: { topologyKey: 'kubernetes.io/hostname', labelSelector: { matchLabels: { app: 'db' } } } },
        ],
      },
    };
  });
  add('tolerations.add', Family.placement, (vm) => void list(tspec(vm), 'tolerations').push({ key: 'gpu', operator: 'Exists', effect: 'NoSchedule' }));
  add('tolerations.remove', Family.placement, (vm) => {
    if (tspec(vm)['tolerations'] === undefined) return false;
    delete tspec(vm)['tolerations'];
  });
  add('priorityClassName', Family.placement, (vm) => void (tspec(vm)['priorityClassName'] = 'high-priority'));
  add('schedulerName', Family.placement, (vm) => void (tspec(vm)['schedulerName'] = 'custom-scheduler'));
  // Volumes and disks
  add('volume.add-hotplug-pvc', Family.volumes, (vm) => {
    list(tspec(vm), 'volumes').push(structuredClone(HOTPLUG_PVC));
    list(devices(vm), 'disks').push(structuredClone(HOTPLUG_DISK));
  });
  add('volume.add-hotplug-pvc-no-disk', Family.volumes, (vm) => void list(tspec(vm), 'volumes').push(structuredClone(HOTPLUG_PVC)));
  add('volume.add-containerdisk', Family.volumes, (vm) => {
    list(tspec(vm), 'volumes').push({ name: 'extra', containerDisk: { image: 'quay.io/containerdisks/centos-stream:9' } });
    list(devices(vm), 'disks').push({ name: 'extra', disk: { bus: 'virtio' } });
  });
  add('volume.add-pvc-not-hotpluggable', Family.volumes, (vm) => {
    list(tspec(vm), 'volumes').push({ name: 'cold', persistentVolumeClaim: { claimName: 'cold-pvc' } });
    list(devices(vm), 'disks').push({ name: 'cold', disk: { bus: 'virtio' } });
  });
  add('volume.containerdisk-image', Family.volumes, (vm) => {
    const v = list(tspec(vm), 'volumes').find((x) => x['containerDisk'] !== undefined);
    if (!v) return false;
    (v['containerDisk'] as Obj)['image'] = 'quay.io/containerdisks/fedora:41';
  });
  add('volume.cloudinit-userdata', Family.volumes, (vm) => {
    const v = list(tspec(vm), 'volumes').find((x) => x['cloudInitNoCloud'] !== undefined);
    if (!v) return false;
    (v['cloudInitNoCloud'] as Obj)['userData'] = '#cloud-config\npassword: changed\n';
  });
  add('volume.pvc-claim', Family.volumes, (vm) => {
    const v = list(tspec(vm), 'volumes').find((x) => x['persistentVolumeClaim'] !== undefined && (x['persistentVolumeClaim'] as Obj)['hotpluggable'] !== true);
    if (!v) return false;
    (v['persistentVolumeClaim'] as Obj)['claimName'] = 'other-claim';
  });
  add('volume.migrate-claim', Family.volumes, (vm) => {
    const v = list(tspec(vm), 'volumes').find((x) => x['persistentVolumeClaim'] !== undefined && (x['persistentVolumeClaim'] as Obj)['hotpluggable'] !== true);
    if (!v) return false;
    (v['persistentVolumeClaim'] as Obj)['claimName'] = 'migrated-claim';
    (vm['spec'] as Obj)['updateVolumesStrategy'] = 'Migration';
  });
  add('disk.bus', Family.volumes, (vm) => {
    const d = list(devices(vm), 'disks').find((x) => x['disk'] !== undefined);
    if (!d) return false;
    d['disk'] = { bus: 'sata' };
  });
  add('disk.remove-last', Family.volumes, (vm) => {
    const disks = list(devices(vm), 'disks');
    const vols = list(tspec(vm), 'volumes');
    const last = disks.at(-1);
    if (!last || disks.length < 2 || last['cdrom'] !== undefined) return false;
    disks.pop();
    tspec(vm)['volumes'] = vols.filter((v) => v['name'] !== last['name']);
  });
  // CD-ROMs (the base VM has a hot-pluggable one)
  const cdromVolume = (vm: Obj): Obj | undefined => {
    const cd = list(devices(vm), 'disks').find((x) => x['cdrom'] !== undefined);
    return cd ? list(tspec(vm), 'volumes').find((v) => v['name'] === cd['name']) : undefined;
  };
  add('cdrom.eject', Family.cdrom, (vm) => {
    const v = cdromVolume(vm);
    if (!v) return false;
    tspec(vm)['volumes'] = list(tspec(vm), 'volumes').filter((x) => x !== v);
  });
  add('cdrom.swap-claim', Family.cdrom, (vm) => {
    const v = cdromVolume(vm);
    if (!v || v['persistentVolumeClaim'] === undefined) return false;
    (v['persistentVolumeClaim'] as Obj)['claimName'] = 'iso-debian';
  });
  add('cdrom.remove-with-volume', Family.cdrom, (vm) => {
    const disks = list(devices(vm), 'disks');
    const cd = disks.find((x) => x['cdrom'] !== undefined);
    if (!cd) return false;
    devices(vm)['disks'] = disks.filter((x) => x !== cd);
    tspec(vm)['volumes'] = list(tspec(vm), 'volumes').filter((x) => x['name'] !== cd['name']);
  });
  add('cdrom.add-empty', Family.cdrom, (vm) => void list(devices(vm), 'disks').push({ name: 'cdrom2', cdrom: { bus: 'sata' } }));
  // Interfaces and networks
  const hasPod = (vm: Obj): boolean => list(tspec(vm), 'networks').some((n) => n['pod'] !== undefined);
  add('iface.add-bridge', Family.interfaces, (vm) => {
    list(devices(vm), 'interfaces').push({ name: 'net2', bridge: {} });
    list(tspec(vm), 'networks').push({ name: 'net2', multus: { networkName: 'nad-b' } });
  });
  add('iface.add-sriov', Family.interfaces, (vm) => {
    list(devices(vm), 'interfaces').push({ name: 'sriov1', sriov: {} });
    list(tspec(vm), 'networks').push({ name: 'sriov1', multus: { networkName: 'sriov-nad' } });
  });
  add('iface.add-masquerade-pod', Family.interfaces, (vm) => {
    if (hasPod(vm)) return false;
    list(devices(vm), 'interfaces').push({ name: 'default', masquerade: {} });
    list(tspec(vm), 'networks').push({ name: 'default', pod: {} });
  });
  add('iface.absent', Family.interfaces, (vm) => {
    const i = list(devices(vm), 'interfaces').find((x) => x['bridge'] !== undefined);
    if (!i) return false;
    i['state'] = 'absent';
  });
  add('iface.down', Family.interfaces, (vm) => {
    const i = list(devices(vm), 'interfaces').find((x) => x['bridge'] !== undefined);
    if (!i) return false;
    i['state'] = 'down';
  });
  add('iface.remove-bridge', Family.interfaces, (vm) => {
    const i = list(devices(vm), 'interfaces').find((x) => x['bridge'] !== undefined);
    if (!i) return false;
    devices(vm)['interfaces'] = list(devices(vm), 'interfaces').filter((x) => x !== i);
    tspec(vm)['networks'] = list(tspec(vm), 'networks').filter((n) => n['name'] !== i['name']);
  });
  add('iface.mac', Family.interfaces, (vm) => {
    const i = list(devices(vm), 'interfaces')[0];
    if (!i) return false;
    i['macAddress'] = '02:00:00:aa:bb:cc';
  });
  add('iface.model', Family.interfaces, (vm) => {
    const i = list(devices(vm), 'interfaces')[0];
    if (!i) return false;
    i['model'] = 'e1000';
  });
  add('network.nad-ref', Family.interfaces, (vm) => {
    const n = list(tspec(vm), 'networks').find((x) => x['multus'] !== undefined);
    if (!n) return false;
    (n['multus'] as Obj)['networkName'] = 'nad-z';
  });
  add('iface.reorder', Family.interfaces, (vm) => {
    const ifs = list(devices(vm), 'interfaces');
    const nets = list(tspec(vm), 'networks');
    if (ifs.length < 2) return false;
    ifs.reverse();
    nets.reverse();
  });
  // Firmware
  add('firmware.uuid', Family.firmware, (vm) => void (obj(domain(vm), 'firmware')['uuid'] = 'f2b1a9e0-0000-4000-8000-000000000001'));
  add('firmware.serial', Family.firmware, (vm) => void (obj(domain(vm), 'firmware')['serial'] = 'serial-2'));
  add('firmware.efi', Family.firmware, (vm) => void (obj(domain(vm), 'firmware')['bootloader'] = { efi: { secureBoot: false } }));
  // Template metadata and the VM's own
  add('template.label', Family.metadata, (vm) => void (obj(tmeta(vm), 'labels')['tier'] = 'gold'));
  add('template.annotation', Family.metadata, (vm) => void (obj(tmeta(vm), 'annotations')['example.com/note'] = 'hello'));
  add('template.descheduler-evict', Family.metadata, (vm) => void (obj(tmeta(vm), 'annotations')['descheduler.alpha.kubernetes.io/evict'] = 'true'));
  add('vm.label', Family.metadata, (vm) => void (obj(obj(vm, 'metadata'), 'labels')['owner'] = 'team-red'));
  // Instancetypes and preferences (only on a VM that has one)
  const itRef = (vm: Obj): Obj | undefined => (vm['spec'] as Obj)['instancetype'] as Obj | undefined;
  add('instancetype.larger', Family.instancetype, (vm) => {
    const r = itRef(vm);
    if (!r) return false;
    r['name'] = 'large';
  });
  add('instancetype.over-ceiling', Family.instancetype, (vm) => {
    const r = itRef(vm);
    if (!r) return false;
    r['name'] = 'huge';
  });
  add('instancetype.dedicated', Family.instancetype, (vm) => {
    const r = itRef(vm);
    if (!r) return false;
    r['name'] = 'small-dedicated';
  });
  add('instancetype.add-preference', Family.instancetype, (vm) => {
    if (!itRef(vm)) return false;
    (vm['spec'] as Obj)['preference'] = { kind: 'VirtualMachineClusterPreference', name: 'cores' };
  });
  // The run strategy: stopping the running instance
  add('runStrategy.halted', Family.other, (vm) => void ((vm['spec'] as Obj)['runStrategy'] = 'Halted'));
  // Other template fields
  add('terminationGracePeriod', Family.other, (vm) => void (tspec(vm)['terminationGracePeriodSeconds'] = 30));
  add('evictionStrategy', Family.other, (vm) => void (tspec(vm)['evictionStrategy'] = 'LiveMigrate'));
  add('hostname', Family.other, (vm) => void (tspec(vm)['hostname'] = 'renamed'));
  add('clock.timezone', Family.other, (vm) => void (domain(vm)['clock'] = { timezone: 'Europe/Paris' }));
  return m;
}

/** Pairs of mutations of different families, every family paired with every other once. */
const PAIRS: ReadonlyArray<[string, string]> = [
  ['cpu.sockets+1', 'memory.guest+1Gi'],
  ['cpu.sockets+1', 'nodeSelector.add'],
  ['cpu.sockets+1', 'cpu.cores'],
  ['cpu.sockets+1', 'firmware.efi'],
  ['cpu.sockets+1', 'volume.add-hotplug-pvc'],
  ['cpu.sockets+1', 'iface.add-bridge'],
  ['cpu.sockets+1', 'template.label'],
  ['cpu.sockets-over-ceiling', 'memory.guest+1Gi'],
  ['memory.guest+1Gi', 'tolerations.add'],
  ['memory.guest+1Gi', 'memory.requests'],
  ['memory.guest+1Gi', 'volume.containerdisk-image'],
  ['memory.guest-over-ceiling', 'nodeSelector.add'],
  ['nodeSelector.add', 'affinity.nodeAffinity'],
  ['nodeSelector.add', 'iface.add-bridge'],
  ['tolerations.add', 'hostname'],
  ['volume.add-hotplug-pvc', 'iface.add-bridge'],
  ['volume.add-hotplug-pvc', 'volume.add-containerdisk'],
  ['volume.add-hotplug-pvc', 'cdrom.eject'],
  ['cdrom.swap-claim', 'cpu.sockets+1'],
  ['cdrom.eject', 'template.descheduler-evict'],
  ['iface.absent', 'cpu.sockets+1'],
  ['iface.add-bridge', 'iface.mac'],
  ['network.nad-ref', 'memory.guest+1Gi'],
  ['firmware.uuid', 'cpu.sockets+1'],
  ['firmware.serial', 'template.annotation'],
  ['template.label', 'template.descheduler-evict'],
  ['terminationGracePeriod', 'nodeSelector.add'],
  ['evictionStrategy', 'cpu.sockets+1'],
  ['instancetype.larger', 'nodeSelector.add'],
  ['instancetype.larger', 'iface.add-bridge'],
  ['instancetype.larger', 'firmware.efi'],
  ['runStrategy.halted', 'cpu.cores'],
];

/** Cluster settings a case runs under. */
interface Cluster {
  id: string;
  strategy: 'LiveUpdate' | 'Stage' | 'unset';
  featureGates: string[];
  /** `spec.configuration.liveUpdateConfiguration`; its maxHotplugRatio also sets the running VMI's ceilings. */
  liveUpdateConfiguration?: Obj;
}

const CLUSTERS: readonly Cluster[] = [
  { id: 'live', strategy: 'LiveUpdate', featureGates: [] },
  { id: 'stage', strategy: 'Stage', featureGates: [] },
  { id: 'unset', strategy: 'unset', featureGates: [] },
  { id: 'live+gates', strategy: 'LiveUpdate', featureGates: ['VMLiveUpdateFeatures', 'DeclarativeHotplugVolumes'] },
  // The imperative HotplugVolumes gate: KubeVirt then leaves declarative volume hotplug off.
  { id: 'live+HotplugVolumes', strategy: 'LiveUpdate', featureGates: ['HotplugVolumes'] },
  // A lower hotplug ratio: the VMI started with 2× ceilings.
  { id: 'live+ratio2', strategy: 'LiveUpdate', featureGates: [], liveUpdateConfiguration: { maxHotplugRatio: 2 } },
];

function kubevirtCr(c: Cluster): Obj {
  const configuration: Obj = { developerConfiguration: { featureGates: c.featureGates } };
  if (c.strategy !== 'unset') configuration['vmRolloutStrategy'] = c.strategy;
  if (c.liveUpdateConfiguration) configuration['liveUpdateConfiguration'] = structuredClone(c.liveUpdateConfiguration);
  return { apiVersion: 'kubevirt.io/v1', kind: 'KubeVirt', metadata: { name: 'kubevirt', namespace: 'kubevirt' }, spec: { configuration } };
}

/** The existing RestartRequired condition some cases start with, as KubeVirt writes it. */
const EXISTING_RESTART: Obj = {
  type: 'RestartRequired',
  status: 'True',
  reason: '',
  message: 'a non-live-updatable field was changed in the template spec',
};

/** Every case. */
export function generateCases(): OracleCase[] {
  const out: OracleCase[] = [];
  const muts = mutations();
  const byId = new Map(muts.map((x) => [x.id, x]));
  const plans: Array<{ id: string; muts: Mutation[] }> = [
    { id: 'unchanged', muts: [] },
    ...muts.map((x) => ({ id: x.id, muts: [x] })),
    ...PAIRS.map(([a, b]) => ({ id: `${a}+${b}`, muts: [byId.get(a)!, byId.get(b)!] })),
  ];
  for (const b of bases()) {
    for (const p of plans) {
      const vm = structuredClone(b.vm);
      // KubeVirt's webhook refuses a VM whose own CPU or memory conflicts with its instancetype; the controller never sees one.
      if (b.id === 'instancetype' && p.muts.some((x) => x.family === Family.cpu || x.family === Family.memory)) continue;
      if (!p.muts.every((x) => x.apply(vm))) continue;
      const families = p.muts.length === 0 ? [Family.none] : [...new Set(p.muts.map((x) => x.family))];
      // The engine's base VM gets every cluster; KubeVirt's examples get LiveUpdate and Stage.
      const clusters = b.id === 'base' || b.id === 'instancetype' ? CLUSTERS : CLUSTERS.slice(0, 2);
      for (const c of clusters) {
        const conditionsSets: Array<{ id: string; conditions: Obj[] }> = [{ id: '', conditions: [] }];
        // An existing RestartRequired, on the base VM under LiveUpdate.
        if (b.id === 'base' && c.id === 'live') {
          conditionsSets.push({ id: '+restartRequired', conditions: [structuredClone(EXISTING_RESTART)] });
          // One set by a handler, whose message differs from the generic one.
          conditionsSets.push({ id: '+restartRequired(cpu)', conditions: [{ ...structuredClone(EXISTING_RESTART), message: 'Reduction of CPU socket count requires a restart' }] });
        }
        for (const cs of conditionsSets) {
          out.push({
            name: `${b.id}/${c.id}/${p.id}${cs.id}`,
            families,
            kubevirt: kubevirtCr(c),
            start: structuredClone(b.vm),
            vm: structuredClone(vm),
            vmi: vmiFor(b.vm, Number(c.liveUpdateConfiguration?.['maxHotplugRatio'] ?? 4)),
            conditions: cs.conditions,
            instancetypes: b.id === 'instancetype' ? structuredClone(INSTANCETYPES) : [],
          });
        }
      }
    }
  }
  return out;
}
