/** The one phrase naming the cluster a command reads and writes, for the first line `run` and `plan` print. */
import path from 'node:path';
import { redactUrl } from '../source/errors.ts';
import { UsageError } from '../usage.ts';
import { type KubeConfigSource, loadKubeConfig } from './kubeconfig.ts';

/** What a command runs against: the cluster it reads and writes. */
export interface TargetOptions {
  cluster: 'sim' | 'kube';
  /** Where the kubeconfig comes from (kube). */
  kubeconfig?: KubeConfigSource | undefined;
  /** The simulator's state file (sim); none: the simulated cluster lives in memory only. */
  simState?: string | undefined;
}

/**
 * One phrase naming the target: the API server URL with its context and kubeconfig, or the
 * embedded simulator with where its state is. Loads the kubeconfig to learn the server, so a
 * broken one is a usage error before anything else.
 */
export function describeTarget(options: TargetOptions): string {
  if (options.cluster === 'sim') {
    return `embedded KubeVirt simulator, ${options.simState !== undefined ? `state in ${options.simState}` : 'state in memory only'}`;
  }
  const source = options.kubeconfig;
  if (source === undefined) throw new UsageError('--cluster kube needs a kubeconfig');
  let kc;
  try {
    kc = loadKubeConfig(source);
  } catch (e) {
    throw new UsageError(e instanceof Error ? e.message : String(e));
  }
  const server = redactUrl(kc.server);
  if ('inCluster' in source) return `${server} (in-cluster service account)`;
  return `${server} (context ${kc.context ?? ''}, kubeconfig ${path.resolve(source.file)})`;
}
