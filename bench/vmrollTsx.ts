/**
 * `vmroll` from the sources through tsx, for bench/kubeRows.ts's "vmroll run, tsx" row: the same
 * main() bin/vmroll.js calls, without the compiled build, so the bench can show what tsx costs.
 *
 *   node --import tsx bench/vmrollTsx.ts run --kubeconfig ...
 */
import { main } from '../reconciler/cli.ts';

process.exitCode = await main(process.argv.slice(2));
