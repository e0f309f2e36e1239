/** Builds the conformance tier (kube-apiserver, the CRD generator, KubeVirt's CRDs) and prints how long it took; one line and exit 1 when it cannot. */
import { ConformanceSetupError, buildRealApiServer } from '../helpers/realApiServer.ts';

try {
  const { ms, goVersion } = await buildRealApiServer();
  console.log(`conformance tier built in ${(ms / 1000).toFixed(1)} s (${goVersion})`);
} catch (e) {
  console.error(e instanceof ConformanceSetupError ? e.message : `conformance tier: build failed: ${e instanceof Error ? e.message : String(e)}`);
  process.exit(1);
}
