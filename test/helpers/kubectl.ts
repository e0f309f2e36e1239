/**
 * Debian's kubectl (package kubernetes-client), unpacked with `apt-get download` + `dpkg -x`
 * into .vmroll/tools/ so it never replaces a kubectl already installed on the machine.
 */
import { execFile } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, renameSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { ROOT } from './cases.ts';

const run = promisify(execFile);

/** Where the unpacked package lives. */
export const KUBECTL_TOOLS_DIR = path.join(ROOT, '.vmroll', 'tools', 'kubernetes-client');

/** The kubectl binary, or why there is none. */
export type KubectlLookup = { ok: true; path: string; version: string } | { ok: false; reason: string };

let lookup: Promise<KubectlLookup> | null = null;

async function version(bin: string): Promise<string> {
  const { stdout } = await run(bin, ['version', '--client', '--short'], { timeout: 20_000 }).catch(() => run(bin, ['version', '--client'], { timeout: 20_000 }));
  return stdout.trim().split('\n')[0] ?? '';
}

async function fetchPackage(): Promise<KubectlLookup> {
  const bin = path.join(KUBECTL_TOOLS_DIR, 'usr', 'bin', 'kubectl');
  if (existsSync(bin)) return { ok: true, path: bin, version: await version(bin) };
  const work = mkdtempSync(path.join(os.tmpdir(), 'vmroll-kubectl-'));
  try {
    try {
      await run('apt-get', ['download', 'kubernetes-client'], { cwd: work, timeout: 120_000 });
    } catch (e) {
      return { ok: false, reason: `apt-get download kubernetes-client failed: ${(e as { stderr?: string }).stderr?.trim() || (e instanceof Error ? e.message : String(e))}` };
    }
    const deb = readdirSync(work).find((f) => f.endsWith('.deb'));
    if (deb === undefined) return { ok: false, reason: 'apt-get download kubernetes-client produced no .deb' };
    const unpacked = path.join(work, 'root');
    try {
      await run('dpkg', ['-x', path.join(work, deb), unpacked], { timeout: 60_000 });
    } catch (e) {
      return { ok: false, reason: `dpkg -x ${deb} failed: ${e instanceof Error ? e.message : String(e)}` };
    }
    mkdirSync(path.dirname(KUBECTL_TOOLS_DIR), { recursive: true });
    rmSync(KUBECTL_TOOLS_DIR, { recursive: true, force: true });
    // Renamed into place whole, so a half-unpacked package is never picked up by the next run.
    renameSync(unpacked, KUBECTL_TOOLS_DIR);
    return { ok: true, path: bin, version: await version(bin) };
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

/** Debian's kubectl, downloaded once per checkout (about 8 MB); `ok: false` with the reason when it cannot be had. */
export function debianKubectl(): Promise<KubectlLookup> {
  lookup ??= fetchPackage().catch((e: unknown) => ({ ok: false as const, reason: e instanceof Error ? e.message : String(e) }));
  return lookup;
}
