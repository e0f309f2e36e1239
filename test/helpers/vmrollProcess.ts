/** `vmroll` as the operator runs it (the binary, in its own process), and the simulator state file it leaves. */
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import type { Obj } from '../../reconciler/rollout/index.ts';
import { ROOT } from './cases.ts';

const run = promisify(execFile);

/** What one `vmroll` process printed and how it exited. */
export interface VmrollResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs `bin/vmroll.js` with `args` (the command first), bounded at 120 s. */
export async function vmrollProcess(args: string[]): Promise<VmrollResult> {
  try {
    const { stdout, stderr } = await run(process.execPath, [path.join(ROOT, 'bin', 'vmroll.js'), ...args], { cwd: ROOT, timeout: 120_000 });
    return { code: 0, stdout, stderr };
  } catch (e) {
    const err = e as { code?: number; stdout?: string; stderr?: string };
    return { code: typeof err.code === 'number' ? err.code : -1, stdout: err.stdout ?? '', stderr: err.stderr ?? '' };
  }
}

/** `namespace/name` of every VM in a simulator state file (`--sim-state`), sorted. */
export function vmsInState(state: string): string[] {
  const snap = JSON.parse(readFileSync(state, 'utf8')) as { objects: Obj[] };
  return snap.objects
    .filter((o) => o['kind'] === 'VirtualMachine')
    .map((o) => `${String((o['metadata'] as Obj)['namespace'])}/${String((o['metadata'] as Obj)['name'])}`)
    .sort();
}
