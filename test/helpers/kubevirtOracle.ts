/**
 * KubeVirt's own VM controller as an oracle: test/conformance/oracle/<version> is a Go module
 * that imports kubevirt.io/kubevirt's pkg/virt-controller/watch/vm at a pinned release and
 * runs one sync per case (cases on stdin, one JSON result per line on stdout). Built with the Go
 * toolchain on first use; the Go build cache makes later builds take seconds.
 */
import { execFile, spawn } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import path from 'node:path';
import { ROOT } from './cases.ts';
import { ConformanceSetupError } from './realApiServer.ts';

/** The KubeVirt releases an oracle module exists for, with its directory under test/conformance/oracle. */
export const ORACLE_VERSIONS = [
  { version: 'v1.9.0', dir: 'v1.9' },
  { version: 'v1.4.0', dir: 'v1.4' },
] as const;
/** One of {@link ORACLE_VERSIONS}' versions. */
export type OracleVersion = (typeof ORACLE_VERSIONS)[number]['version'];

/** A cold build of kubevirt.io/kubevirt's controller packages on a busy 2-core machine takes many minutes. */
export const ORACLE_BUILD_TIMEOUT_MS = 90 * 60_000;

const GO_ENV = { ...process.env, GOFLAGS: '-mod=mod -buildvcs=false' };

function moduleDir(version: OracleVersion): string {
  const v = ORACLE_VERSIONS.find((x) => x.version === version);
  if (v === undefined) throw new Error(`no oracle module for ${version}`);
  return path.join(ROOT, 'test', 'conformance', 'oracle', v.dir);
}

/** The built harness of a version. */
export function oracleBinary(version: OracleVersion): string {
  return path.join(moduleDir(version), '.bin', 'oracle');
}

function go(args: string[], cwd: string, timeoutMs: number): Promise<{ stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    // nice: other test suites share the machine and are timing-sensitive; the compiler is not.
    const child = execFile('nice', ['-n', '19', 'go', ...args], { cwd, timeout: timeoutMs, maxBuffer: 64 << 20, env: GO_ENV }, (error, stdout, stderr) => {
      if (error === null) resolve({ stdout, stderr });
      else reject(Object.assign(error, { stdout, stderr }));
    });
    child.stdin?.end();
  });
}

const PROXY_RE = /proxy\.golang\.org|GOPROXY|dial tcp|no such host|connection refused|i\/o timeout|TLS handshake/i;

/** The first line of a `go` failure that names its cause. */
function cause(stderr: string): string {
  const lines = stderr.split('\n').map((l) => l.trim()).filter((l) => l !== '');
  return lines.find((l) => PROXY_RE.test(l)) ?? lines.find((l) => /error|cannot|undefined|not found|403|404/i.test(l)) ?? lines[0] ?? 'no output';
}

const builds = new Map<OracleVersion, Promise<number>>();

/**
 * Builds one version's harness (`go build` is a no-op when nothing changed) and resolves to the
 * wall time in ms. Fails with one line when Go is missing or the module proxy is unreachable.
 */
export function buildOracle(version: OracleVersion): Promise<number> {
  let p = builds.get(version);
  if (p === undefined) {
    p = (async () => {
      const started = Date.now();
      const dir = moduleDir(version);
      try {
        await go(['version'], dir, 30_000);
      } catch {
        throw new ConformanceSetupError('KubeVirt oracle: the Go toolchain is missing (`go version` failed; Go 1.26 must be on PATH)');
      }
      mkdirSync(path.dirname(oracleBinary(version)), { recursive: true });
      try {
        await go(['build', '-o', oracleBinary(version), '.'], dir, ORACLE_BUILD_TIMEOUT_MS);
      } catch (e) {
        const err = e as { stderr?: string; killed?: boolean };
        if (err.killed === true) throw new ConformanceSetupError(`KubeVirt oracle ${version}: go build took longer than ${ORACLE_BUILD_TIMEOUT_MS / 60_000} min`);
        const line = cause(err.stderr ?? '');
        const what = PROXY_RE.test(line) ? 'the Go module proxy is unreachable' : 'go build failed';
        throw new ConformanceSetupError(`KubeVirt oracle ${version}: ${what}: ${line}`);
      }
      return Date.now() - started;
    })();
    p.catch(() => builds.delete(version));
    builds.set(version, p);
  }
  return p;
}

/** What KubeVirt's controller did in one sync (see main.go's Result). */
export interface OracleResult {
  name: string;
  restartRequired: boolean;
  message?: string;
  conditions: Array<Record<string, unknown>> | null;
  vmiBefore?: Record<string, unknown>;
  vmiAfter?: Record<string, unknown>;
  /** The controller deleted the VMI (stopped the VM). */
  vmiDeleted: boolean;
  vmSpecAfter?: Record<string, unknown>;
  syncError?: string;
  requeued: boolean;
  actions: string[];
  error?: string;
  /** The innermost kubevirt.io/kubevirt function of a panic in KubeVirt's own code. */
  panicIn?: string;
}

/** Runs the harness over `cases` (one process for all of them) and returns the results in order. */
export async function runOracle(version: OracleVersion, cases: unknown[], timeoutMs = 600_000): Promise<OracleResult[]> {
  await buildOracle(version);
  return new Promise((resolve, reject) => {
    const child = spawn(oracleBinary(version), [], { stdio: ['pipe', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.stdout.on('data', (b: Buffer) => out.push(b));
    child.stderr.on('data', (b: Buffer) => err.push(b));
    child.on('error', reject);
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      if (code !== 0) {
        reject(new Error(`oracle ${version} exited ${code ?? signal}: ${Buffer.concat(err).toString().slice(-2000)}`));
        return;
      }
      const lines = Buffer.concat(out).toString().split('\n').filter((l) => l !== '');
      resolve(lines.map((l) => JSON.parse(l) as OracleResult));
    });
    child.stdin.end(JSON.stringify(cases));
  });
}
