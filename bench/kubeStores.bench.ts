/**
 * What one KubeCluster's informers hold, and what its first lists cost, against a cluster already
 * holding N VMs (applied to `vmroll sim`, run as its own process, with their VMIs and start
 * revisions): for each variant (a checkout of vmroll, optionally `:<page size>`), a new process
 * imports kube.ts, lists everything, and reports the heap its stores keep after a full GC, its peak
 * RSS, the lists made and their wall and CPU time. Variants alternate, two rounds.
 *
 *   npx tsx bench/kubeStores.bench.ts --count 10000 --variant /tmp/vmroll-before --variant .:500 --variant .:5000
 */
import { execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const SELF = fileURLToPath(import.meta.url);
const ROOT = path.resolve(path.dirname(SELF), '..');

const { values } = parseArgs({
  options: { child: { type: 'string' }, kubeconfig: { type: 'string' }, page: { type: 'string' }, count: { type: 'string', default: '2000' }, variant: { type: 'string', multiple: true } },
  strict: true,
});

if (values.child !== undefined) {
  const gc = (globalThis as { gc?: () => void }).gc as () => void;
  const heap = (): number => {
    gc();
    gc();
    return process.memoryUsage().heapUsed / 1048576;
  };
  const h0 = heap();
  const { KubeCluster } = (await import(path.join(values.child, 'reconciler', 'cluster', 'kube.ts'))) as typeof import('../reconciler/cluster/kube.ts');
  const h1 = heap();
  const c = new KubeCluster({ kubeconfig: { file: values.kubeconfig ?? '' }, ...(values.page !== undefined ? { listPageSize: Number(values.page) } : {}) });
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  await c.listVirtualMachines();
  const wallMs = performance.now() - t0;
  const cpu = process.cpuUsage(cpu0);
  const h2 = heap();
  const lists = [...c.requests].filter(([k]) => k.startsWith('list ')).reduce((n, [, v]) => n + v, 0);
  const objects = ['VirtualMachine', 'VirtualMachineInstance', 'ControllerRevision'].map((k) => `${k} ${c.informer(k)?.store.size ?? 0}`).join(', ');
  process.stdout.write(`${JSON.stringify({ importHeapMiB: h1 - h0, storesHeapMiB: h2 - h1, maxRssMiB: process.resourceUsage().maxRSS / 1024, wallMs, cpuMs: (cpu.user + cpu.system) / 1000, lists, objects })}\n`);
  c.close();
  process.exit(0);
}

const { parse } = await import('yaml');
const { planRepository, renderManifest } = await import('./manifests.ts');
const { KubeCluster } = await import('../reconciler/cluster/kube.ts');
const count = Number(values.count);
const dir = mkdtempSync(path.join(os.tmpdir(), 'vmroll-stores-bench-'));
const kubeconfig = path.join(dir, 'kubeconfig');
const sim = spawn(process.execPath, [path.join(ROOT, 'bin', 'vmroll.js'), 'sim', '--listen', '127.0.0.1:0', '--kubevirt', path.join(ROOT, 'fixtures', 'example-cluster', 'kubevirt.yaml'), '--kubeconfig-out', kubeconfig, '--log-level', 'warn'], {
  stdio: ['ignore', 'pipe', 'inherit'],
});
try {
  let out = '';
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`vmroll sim did not start: ${out}`)), 60_000);
    sim.stdout?.on('data', (d: Buffer) => {
      out += d.toString();
      if (out.includes('kubeconfig written')) {
        clearTimeout(timer);
        resolve();
      }
    });
  });
  const url = /Kubernetes API at (\S+)/.exec(out)?.[1] ?? '';
  const vms = planRepository(count);
  for (const ns of new Set(vms.map((v) => v.namespace))) {
    const res = await fetch(`${url}/api/v1/namespaces`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: ns } }) });
    await res.arrayBuffer();
  }
  const filler = new KubeCluster({ kubeconfig: { file: kubeconfig } });
  const queue = vms.map((v) => parse(renderManifest(v)) as Record<string, unknown>);
  await Promise.all(
    Array.from({ length: 8 }, async () => {
      for (let o = queue.shift(); o !== undefined; o = queue.shift()) await filler.applyVirtualMachine(o);
    }),
  );
  // Every running VM's VMI and start revision exist once the simulator's controller has caught up.
  await filler.listVirtualMachines();
  const deadline = Date.now() + 300_000;
  while (Date.now() < deadline && (filler.informer('ControllerRevision')?.store.size ?? 0) < (filler.informer('VirtualMachineInstance')?.store.size ?? 1)) await new Promise((r) => setTimeout(r, 200));
  filler.close();
  const loadBefore = os.loadavg()[0] ?? NaN;
  process.stdout.write(`${count} VMs applied; 1-minute load average ${loadBefore.toFixed(2)} before the rounds\n`);
  process.stdout.write('| variant | page | round | stores, heap after GC | peak RSS | lists | list wall | list CPU | import heap | objects |\n|---|---|---|---|---|---|---|---|---|---|\n');
  for (let round = 1; round <= 2; round++) {
    for (const v of values.variant ?? ['.']) {
      const [where = '.', page] = v.split(':');
      const root = path.resolve(where);
      const text = execFileSync(process.execPath, ['--expose-gc', '--import', 'tsx', SELF, '--child', root, '--kubeconfig', kubeconfig, ...(page !== undefined ? ['--page', page] : [])], { cwd: root, encoding: 'utf8' });
      const r = JSON.parse(text.trim().split('\n').pop() ?? '{}') as Record<string, number | string>;
      const n = (k: string, d = 1): string => Number(r[k]).toFixed(d);
      process.stdout.write(`| ${path.relative(ROOT, root) || '.'} | ${page ?? 'default'} | ${round} | ${n('storesHeapMiB')} MiB | ${n('maxRssMiB', 0)} MiB | ${r['lists']} | ${n('wallMs', 0)} ms | ${n('cpuMs', 0)} ms | ${n('importHeapMiB')} MiB | ${r['objects']} |\n`);
    }
  }
  process.stdout.write(`1-minute load average ${os.loadavg()[0]?.toFixed(2)} after\n`);
} finally {
  sim.kill('SIGTERM');
  rmSync(dir, { recursive: true, force: true });
}
process.exit(0);
