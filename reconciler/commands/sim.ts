/** `vmroll sim`: the embedded KubeVirt simulator behind a Kubernetes-API-compatible HTTP server, for kubectl and client-node. */
import { writeFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { stringify } from 'yaml';
import { type ApiFaults, type ApiServer, startApiServer } from '../cluster/sim/apiServer.ts';
import { SimCluster } from '../cluster/sim/simCluster.ts';
import { loadKubeVirt, parseDuration } from '../config.ts';
import { parseListenAddress } from '../http.ts';
import type { Obj } from '../rollout/index.ts';
import { makeLogger, parseLogFormat } from '../logging.ts';
import { UsageError } from '../usage.ts';
import type { CommandIO } from './common.ts';
import { SIM_HELP } from './help.ts';

/** Help text of `vmroll sim`, kept in help.ts so that `vmroll help sim` loads none of this module's imports. */
export { SIM_HELP } from './help.ts';


function duration(flag: string, text: string | undefined): number | undefined {
  if (text === undefined) return undefined;
  try {
    return parseDuration(text);
  } catch {
    throw new UsageError(`${flag}: "${text}" is not a duration (e.g. 50ms, 2s, 1m)`);
  }
}

function number(flag: string, text: string | undefined): number | undefined {
  if (text === undefined) return undefined;
  const n = Number(text);
  if (text.trim() === '' || !Number.isFinite(n)) throw new UsageError(`${flag}: "${text}" is not a number`);
  return n;
}

function rate(flag: string, text: string | undefined): number | undefined {
  const n = number(flag, text);
  if (n !== undefined && (n < 0 || n > 1)) throw new UsageError(`${flag}: must be between 0 and 1`);
  return n;
}

/** The kubeconfig `--kubeconfig-out` writes: plain http, no credentials, context `vmroll-sim`. */
export function simKubeconfig(url: string): string {
  return stringify({
    apiVersion: 'v1',
    kind: 'Config',
    // client-node sends nothing to a cluster entry without skipTLSVerify, even over plain http.
    clusters: [{ name: 'vmroll-sim', cluster: { server: url, 'insecure-skip-tls-verify': true } }],
    users: [{ name: 'vmroll-sim', user: {} }],
    contexts: [{ name: 'vmroll-sim', context: { cluster: 'vmroll-sim', user: 'vmroll-sim', namespace: 'default' } }],
    'current-context': 'vmroll-sim',
    preferences: {},
  });
}

/** Runs `vmroll sim`. */
export async function runSim(argv: string[], io: CommandIO): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: {
      listen: { type: 'string' },
      state: { type: 'string' },
      kubevirt: { type: 'string' },
      'kubeconfig-out': { type: 'string' },
      'watch-history': { type: 'string' },
      'migration-duration': { type: 'string' },
      'boot-time': { type: 'string' },
      latency: { type: 'string' },
      'error-rate': { type: 'string' },
      'error-status': { type: 'string' },
      'conflict-rate': { type: 'string' },
      'drop-watches-after': { type: 'string' },
      seed: { type: 'string' },
      'log-level': { type: 'string' },
      'log-format': { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
    strict: true,
    allowPositionals: false,
  });
  if (values.help) {
    io.out(SIM_HELP);
    return 0;
  }
  const listen = values.listen ?? '127.0.0.1:8080';
  try {
    parseListenAddress(listen);
  } catch (e) {
    throw new UsageError(`--listen: ${e instanceof Error ? e.message : String(e)}`);
  }
  const faults: ApiFaults = {};
  const latency = duration('--latency', values.latency);
  if (latency !== undefined) faults.latencyMs = latency;
  const dropAfter = duration('--drop-watches-after', values['drop-watches-after']);
  if (dropAfter !== undefined) faults.dropWatchesAfterMs = dropAfter;
  const errorRate = rate('--error-rate', values['error-rate']);
  if (errorRate !== undefined) faults.errorRate = errorRate;
  const conflictRate = rate('--conflict-rate', values['conflict-rate']);
  if (conflictRate !== undefined) faults.conflictRate = conflictRate;
  const errorStatus = number('--error-status', values['error-status']);
  if (errorStatus !== undefined) {
    if (errorStatus !== 500 && errorStatus !== 503) throw new UsageError('--error-status: must be 500 or 503');
    faults.errorStatus = errorStatus;
  }
  const seed = number('--seed', values.seed);
  if (seed !== undefined) faults.seed = seed;
  const watchHistory = number('--watch-history', values['watch-history']);
  if (watchHistory !== undefined && (!Number.isInteger(watchHistory) || watchHistory < 1)) throw new UsageError('--watch-history: must be a positive integer');

  const migrationDurationMs = duration('--migration-duration', values['migration-duration']);
  const bootTimeMs = duration('--boot-time', values['boot-time']);
  const logger = makeLogger(values['log-level'] ?? 'info', [], process.stderr, parseLogFormat(values['log-format']));
  const cluster = new SimCluster({
    ...(values.state !== undefined ? { stateFile: values.state } : {}),
    ...(values.kubevirt !== undefined ? { kubevirt: loadKubeVirt(values.kubevirt, '--kubevirt') } : {}),
    ...(watchHistory !== undefined ? { watchHistory } : {}),
    ...(migrationDurationMs !== undefined ? { migrationDurationMs } : {}),
    ...(bootTimeMs !== undefined ? { bootTimeMs } : {}),
  });
  let server: ApiServer;
  try {
    server = await startApiServer({ cluster, listen, faults, logger });
  } catch (e) {
    io.err(`vmroll sim: cannot listen on ${listen}: ${e instanceof Error ? ((e as NodeJS.ErrnoException).code ?? e.message) : String(e)}`);
    return 1;
  }
  io.out(`vmroll sim: Kubernetes API at ${server.url} (KubeVirt simulator${values.state !== undefined ? `, state in ${values.state}` : ''})`);
  const kubeconfigOut = values['kubeconfig-out'];
  if (kubeconfigOut !== undefined) {
    writeFileSync(kubeconfigOut, simKubeconfig(server.url), { mode: 0o600 });
    io.out(`vmroll sim: kubeconfig written to ${kubeconfigOut} (kubectl --kubeconfig ${kubeconfigOut} get vms -A)`);
  }
  await new Promise<void>((resolve) => {
    const done = (): void => {
      process.off('SIGINT', done);
      process.off('SIGTERM', done);
      resolve();
    };
    process.on('SIGINT', done);
    process.on('SIGTERM', done);
  });
  await server.close();
  io.out('vmroll sim: stopped');
  return 0;
}
