/** `vmroll demo`: a scripted tour on a scratch copy of the example repository and the embedded simulator. */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { conditionsOf } from '../cluster/object.ts';
import { SimCluster } from '../cluster/sim/simCluster.ts';
import { EXAMPLE_FIXTURES } from '../config.ts';
import { type ReconcileReport, Reconciler } from '../controller/reconcile.ts';
import { InvalidVersionError, type Obj, behavioursFor, parseVersion } from '../rollout/index.ts';
import { commitAll, ensureExampleRepo } from '../source/exampleRepo.ts';
import { GitSource } from '../source/gitSource.ts';
import { UsageError } from '../usage.ts';
import type { CommandIO } from './common.ts';
import { makeLogger } from '../logging.ts';
import { renderReport } from '../controller/render.ts';
import { DEMO_HELP } from './help.ts';

/** Help text of `vmroll demo`, kept in help.ts so that `vmroll help demo` loads none of this module's imports. */
export { DEMO_HELP } from './help.ts';

interface Step {
  title: string;
  edit?: (text: string) => string;
  message?: string;
  restart?: boolean;
  expect: (web: Obj | undefined, report: ReconcileReport) => string | null;
}

function condition(vm: Obj | undefined): string | undefined {
  const c = conditionsOf(vm).find((x) => x['type'] === 'RestartRequired');
  return c === undefined ? undefined : String(c['message']);
}

/** Runs `vmroll demo`. */
export async function runDemo(argv: string[], io: CommandIO): Promise<number> {
  const { values } = parseArgs({ args: argv, options: { 'kubevirt-version': { type: 'string' }, help: { type: 'boolean', short: 'h' } }, strict: true });
  if (values.help) {
    io.out(DEMO_HELP);
    return 0;
  }
  const version = values['kubevirt-version'] ?? 'v1.9.0';
  const parsed = parseVersion(version);
  if (parsed === null) throw new UsageError(`--kubevirt-version: ${new InvalidVersionError(version).message}`);
  // Before v1.8 (and in the seed model) the condition stays until a restart, revert or not.
  const sticky = behavioursFor(parsed).conditionSticky;
  const dir = mkdtempSync(path.join(tmpdir(), 'vmroll-demo-'));
  const repo = path.join(dir, 'repo');
  const cluster = new SimCluster({
    kubevirt: { apiVersion: 'kubevirt.io/v1', kind: 'KubeVirt', metadata: { name: 'kubevirt', namespace: 'kubevirt' }, spec: { configuration: { vmRolloutStrategy: 'LiveUpdate', developerConfiguration: { featureGates: ['VMLiveUpdateFeatures'] } } }, status: { observedKubeVirtVersion: version } },
  });
  const reconciler = new Reconciler({ source: new GitSource({ repo }), repoLabel: 'example', ref: 'main', path: 'vms', cluster, prune: false, logger: makeLogger('silent', []) });
  const webFile = path.join(repo, 'vms', 'web.yaml');
  const webVm = (): Obj | undefined => cluster.store.get('VirtualMachine', 'shop', 'web');
  const webVmi = (): Obj | undefined => cluster.store.get('VirtualMachineInstance', 'shop', 'web');
  const cpu = (): Obj => ((((webVmi()?.['spec'] ?? {}) as Obj)['domain'] ?? {}) as Obj)['cpu'] as Obj;
  let stagedText = '';
  const steps: Step[] = [
    { title: 'Initial sync: three VMs are created; web and db start', expect: (w) => (w === undefined ? 'web was not created' : null) },
    {
      title: 'A CPU change: web goes from 2 to 4 sockets (hot-plugged, no restart)',
      edit: (t) => t.replace('sockets: 2', 'sockets: 4'),
      message: 'web: 4 CPU sockets',
      expect: (w) => (cpu()['sockets'] !== 4 ? 'the VMI did not get 4 sockets' : condition(w) !== undefined ? 'unexpected RestartRequired' : null),
    },
    {
      title: 'A change that is staged: web gets 2 cores per socket (RestartRequired)',
      edit: (t) => (stagedText = t.replace('cores: 1', 'cores: 2')),
      message: 'web: 2 cores per socket',
      expect: (w) => (condition(w) === undefined ? 'RestartRequired was not set' : cpu()['cores'] !== 1 ? 'cores reached the running VMI' : null),
    },
    {
      title: 'A revert: the cores change is reverted before any restart (RestartRequired cleared from KubeVirt v1.8)',
      edit: (t) => t.replace('cores: 2', 'cores: 1'),
      message: 'Revert "web: 2 cores per socket"',
      expect: (w, report) => {
        if (!sticky && condition(w) !== undefined) return 'RestartRequired was not cleared by the revert';
        const web = report.outcomes.find((o) => o.name === 'web');
        if (web?.reverts.map((r) => r.path).join() !== 'spec.template.spec.domain.cpu.cores') return 'the sync did not report the cores revert';
        // Before v1.8 the condition stays until a restart, so web still counts as awaiting restart.
        return web.state !== (sticky ? 'awaiting restart' : 'reverted') ? `web counted as ${web.state}` : null;
      },
    },
    {
      title: 'The cores change again: staged with RestartRequired',
      edit: () => stagedText,
      message: 'web: 2 cores per socket, again',
      expect: (w) => (condition(w) === undefined ? 'RestartRequired was not set' : null),
    },
    {
      title: 'A restart: the new instance runs the staged spec and the condition is gone',
      restart: true,
      expect: (w) => (condition(w) !== undefined ? 'RestartRequired survived the restart' : cpu()['cores'] !== 2 ? 'the new VMI does not have 2 cores' : null),
    },
  ];
  let failures = 0;
  try {
    await ensureExampleRepo(repo, EXAMPLE_FIXTURES);
    io.out(`vmroll demo: KubeVirt ${version} simulated, repository ${repo}\n`);
    for (const [i, step] of steps.entries()) {
      io.out(`── Step ${i + 1}: ${step.title}`);
      if (step.edit) {
        writeFileSync(webFile, step.edit(readFileSync(webFile, 'utf8')));
        const sha = await commitAll(repo, step.message ?? step.title);
        io.out(`   commit ${sha.slice(0, 12)} "${step.message ?? step.title}"`);
      }
      if (step.restart) {
        await cluster.restartVirtualMachine({ namespace: 'shop', name: 'web' });
        io.out('   virtctl restart shop/web (the restart subresource)');
      }
      const report = await reconciler.reconcile();
      io.out(renderReport(report).replace(/^/gm, '   '));
      const vm = webVm();
      io.out(`   web: VMI ${JSON.stringify(cpu())} · RestartRequired: ${condition(vm) ?? 'none'}`);
      const problem = step.expect(vm, report);
      if (problem !== null) {
        failures++;
        io.out(`   ✗ ${problem}`);
      } else {
        io.out('   ✓ as expected');
      }
      io.out('');
    }
  } finally {
    reconciler.close();
    rmSync(dir, { recursive: true, force: true });
  }
  io.out(failures === 0 ? 'Demo finished: every step did what it says.' : `Demo finished with ${failures} unexpected result(s).`);
  return failures === 0 ? 0 : 1;
}
