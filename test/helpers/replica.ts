/** `vmroll run` replicas as child processes with their JSON log lines, for the leader-election e2e tests. */
import { type ChildProcess, spawn } from 'node:child_process';
import path from 'node:path';
import type { Obj } from '../../reconciler/rollout/index.ts';
import { ROOT } from './cases.ts';

const VMROLL = path.join(ROOT, 'bin', 'vmroll.js');

/** A `vmroll run` child process with its JSON log lines. */
export interface Replica {
  name: string;
  child: ChildProcess;
  lines: Obj[];
  /** Log lines whose msg is `msg`. */
  said(msg: string): Obj[];
  /** Log lines whose msg starts with `prefix`. */
  saidStart(prefix: string): Obj[];
  exit: Promise<number | null>;
}

/** Starts `vmroll run <args>` in `cwd` as the pod `name`; nothing from the test's own environment (KUBECONFIG, tokens) leaks in. */
export function spawnReplica(name: string, args: string[], cwd: string): Replica {
  const child = spawn(process.execPath, [VMROLL, 'run', ...args], {
    cwd,
    env: { PATH: process.env['PATH'] ?? '/usr/bin:/bin', HOME: cwd, POD_NAME: name },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  const lines: Obj[] = [];
  let rest = '';
  child.stderr?.on('data', (d: Buffer) => {
    rest += d.toString();
    const parts = rest.split('\n');
    rest = parts.pop() ?? '';
    for (const p of parts) {
      try {
        lines.push(JSON.parse(p) as Obj);
      } catch {
        lines.push({ msg: p });
      }
    }
  });
  const exit = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  return { name, child, lines, said: (msg) => lines.filter((l) => l['msg'] === msg), saidStart: (prefix) => lines.filter((l) => String(l['msg']).startsWith(prefix)), exit };
}
