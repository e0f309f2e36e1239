/** Builds the conformance tier (kube-apiserver, the CRD generator, KubeVirt's CRDs, the KubeVirt controller oracle) and prints how long it took; one line and exit 1 when it cannot. */
import { ORACLE_VERSIONS, buildOracle } from '../helpers/kubevirtOracle.ts';
import { ConformanceSetupError, buildRealApiServer } from '../helpers/realApiServer.ts';

try {
  const { ms, goVersion } = await buildRealApiServer();
  console.log(`conformance tier built in ${(ms / 1000).toFixed(1)} s (${goVersion})`);
  for (const { version } of ORACLE_VERSIONS) {
    const oracleMs = await buildOracle(version);
    console.log(`KubeVirt ${version} controller oracle built in ${(oracleMs / 1000).toFixed(1)} s`);
  }
} catch (e) {
  console.error(e instanceof ConformanceSetupError ? e.message : `conformance tier: build failed: ${e instanceof Error ? e.message : String(e)}`);
  process.exit(1);
}
