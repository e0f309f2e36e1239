/**
 * A real Kubernetes API server for conformance tests: test/conformance/apiserver builds
 * kube-apiserver (k8s.io/kubernetes, pinned in its go.mod) with an embedded etcd, and serves
 * KubeVirt's CRDs generated from kubevirt.io/api. Built with the Go toolchain on first use (the
 * Go build cache makes later builds take seconds), started per suite on 127.0.0.1.
 */
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { closeSync, existsSync, mkdirSync, mkdtempSync, openSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { ROOT } from './cases.ts';
import { until } from './waitFor.ts';

/** The Go module of the tier. */
export const APISERVER_MODULE = path.join(ROOT, 'test', 'conformance', 'apiserver');
/** Where the built programs and the generated CRDs go (ignored by git). */
const OUT = path.join(APISERVER_MODULE, '.bin');
const SERVER_BIN = path.join(OUT, 'vmroll-apiserver');
const GENCRDS_BIN = path.join(OUT, 'gencrds');
/** KubeVirt's CRDs as the generator wrote them. */
export const KUBEVIRT_CRDS = path.join(OUT, 'kubevirt-crds.json');

/** A cold build of kube-apiserver on a busy 2-core machine takes tens of minutes; a warm one seconds. */
export const BUILD_TIMEOUT_MS = 90 * 60_000;
/** etcd, kube-apiserver's post-start hooks and eight CRDs, on a busy machine. */
export const START_TIMEOUT_MS = 180_000;

/** What the build did. */
export interface BuildResult {
  /** Wall time of `go build` for both programs plus the CRD generation. */
  ms: number;
  /** `go version` of the toolchain used. */
  goVersion: string;
}

/** One line that says why the tier cannot run. */
export class ConformanceSetupError extends Error {
  override name = 'ConformanceSetupError';
}

/**
 * The build's environment: module mode (no vendor directory), and no VCS stamp, so that a new
 * commit in the worktree does not relink a 180 MB binary whose code did not change.
 */
const GO_ENV = { ...process.env, GOFLAGS: '-mod=mod -buildvcs=false' };

function go(args: string[], timeoutMs: number): Promise<{ stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    // nice: other test suites share the machine and are timing-sensitive; the compiler is not.
    const child = execFile('nice', ['-n', '19', 'go', ...args], { cwd: APISERVER_MODULE, timeout: timeoutMs, maxBuffer: 64 << 20, env: GO_ENV }, (error, stdout, stderr) => {
      if (error === null) resolve({ stdout, stderr });
      else reject(Object.assign(error, { stdout, stderr }));
    });
    child.stdin?.end();
  });
}

/** The first line of a `go` failure that names its cause, for a one-line error. */
function cause(stderr: string): string {
  const lines = stderr.split('\n').map((l) => l.trim()).filter((l) => l !== '');
  const proxy = lines.find((l) => /proxy\.golang\.org|GOPROXY|dial tcp|no such host|connection refused|i\/o timeout|TLS handshake/i.test(l));
  return proxy ?? lines.find((l) => /error|cannot|undefined|not found/i.test(l)) ?? lines[0] ?? 'no output';
}

let built: Promise<BuildResult> | null = null;

/**
 * Builds the server and the CRD generator (`go build` is a no-op when nothing changed) and
 * regenerates the CRDs when the generator is newer than them. Fails with one line when Go is
 * missing or the module proxy is unreachable. Once per process.
 */
export function buildRealApiServer(): Promise<BuildResult> {
  built ??= (async () => {
    const started = Date.now();
    let goVersion: string;
    try {
      goVersion = (await go(['version'], 30_000)).stdout.trim();
    } catch {
      throw new ConformanceSetupError('conformance tier: the Go toolchain is missing (`go version` failed; Go 1.26 must be on PATH)');
    }
    mkdirSync(OUT, { recursive: true });
    for (const [bin, pkg] of [[SERVER_BIN, '.'], [GENCRDS_BIN, './cmd/gencrds']] as const) {
      try {
        await go(['build', '-o', bin, pkg], BUILD_TIMEOUT_MS);
      } catch (e) {
        const err = e as { stderr?: string; killed?: boolean };
        if (err.killed === true) throw new ConformanceSetupError(`conformance tier: go build ${pkg} took longer than ${BUILD_TIMEOUT_MS / 60_000} min`);
        const line = cause(err.stderr ?? '');
        const what = /proxy\.golang\.org|GOPROXY|dial tcp|no such host|i\/o timeout|TLS handshake/i.test(line) ? 'the Go module proxy is unreachable' : `go build ${pkg} failed`;
        throw new ConformanceSetupError(`conformance tier: ${what}: ${line}`);
      }
    }
    if (!existsSync(KUBEVIRT_CRDS) || statSync(KUBEVIRT_CRDS).mtimeMs < statSync(GENCRDS_BIN).mtimeMs) {
      await new Promise<void>((resolve, reject) => {
        execFile(GENCRDS_BIN, ['-out', KUBEVIRT_CRDS], { cwd: APISERVER_MODULE, timeout: 300_000, env: GO_ENV }, (error, _stdout, stderr) =>
          error === null ? resolve() : reject(new ConformanceSetupError(`conformance tier: generating KubeVirt's CRDs failed: ${cause(stderr)}`)),
        );
      });
    }
    return { ms: Date.now() - started, goVersion };
  })();
  built.catch(() => (built = null));
  return built;
}

/** The ready line the server prints on stdout. */
interface ReadyLine {
  ready: true;
  server: string;
  kubeconfig: string;
  dir: string;
  crds: number;
  startMs: number;
}

/** A running real API server. */
export interface RealApiServer {
  /** `https://127.0.0.1:<port>`. */
  url: string;
  /** An admin kubeconfig (client certificate in group system:masters, the server's CA). */
  kubeconfig: string;
  /** How many CRDs it serves (all Established and in discovery before it said ready). */
  crds: number;
  /** Time from process start to ready, as the server measured it. */
  startMs: number;
  /** The server's log (kube-apiserver's klog output), for failure messages. */
  log(): string;
  /**
   * Compacts etcd's history up to now (SIGUSR1) and resolves to the revision: a watch resuming
   * from an older resourceVersion that the watch cache does not serve then gets 410 Gone.
   */
  compact(): Promise<number>;
  /** SIGTERM, then waits for the exit (SIGKILL after 30 s); removes its directory. */
  stop(): Promise<void>;
}

/** Options of {@link startRealApiServer}. */
export interface RealApiServerOptions {
  /** More kube-apiserver flags, e.g. `--watch-cache-sizes=virtualmachines.kubevirt.io#0`. */
  apiserverArgs?: string[];
}

/** Builds if needed, then starts a server with KubeVirt's CRDs and waits for its ready line. */
export async function startRealApiServer(options: RealApiServerOptions = {}): Promise<RealApiServer> {
  await buildRealApiServer();
  const dir = mkdtempSync(path.join(tmpdir(), 'vmroll-real-apiserver-'));
  const logFile = path.join(dir, 'apiserver.log');
  const logFd = openSync(logFile, 'w');
  const child: ChildProcess = spawn(SERVER_BIN, [
      '--crds',
      KUBEVIRT_CRDS,
      '--dir',
      path.join(dir, 'server'),
      '--start-timeout',
      `${START_TIMEOUT_MS / 1000}s`,
      ...(options.apiserverArgs ?? []).map((a) => `--apiserver-arg=${a}`),
    ], {
    stdio: ['ignore', 'pipe', logFd],
  });
  closeSync(logFd);
  let out = '';
  child.stdout?.on('data', (d: Buffer) => (out += d.toString()));
  const log = (): string => (existsSync(logFile) ? readFileSync(logFile, 'utf8') : '');
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  try {
    await until('the real API server to print its ready line', () => out.includes('\n'), {
      timeoutMs: START_TIMEOUT_MS + 15_000,
      everyMs: 50,
      failIf: () => (child.exitCode !== null ? `vmroll-apiserver exited ${child.exitCode}` : undefined),
      detail: () => log().split('\n').slice(-15).join('\n'),
    });
  } catch (e) {
    child.kill('SIGKILL');
    await exited;
    rmSync(dir, { recursive: true, force: true });
    throw e;
  }
  const ready = JSON.parse(out.split('\n')[0] ?? '') as ReadyLine;
  return {
    url: ready.server,
    kubeconfig: ready.kubeconfig,
    crds: ready.crds,
    startMs: ready.startMs,
    log,
    async compact() {
      const seen = out.split('\n').length;
      child.kill('SIGUSR1');
      let line: { compacted: number; error?: string } | undefined;
      await until('etcd to compact', () => {
        const next = out.split('\n').slice(seen - 1).find((l) => l.includes('"compacted"'));
        if (next !== undefined) line = JSON.parse(next) as { compacted: number; error?: string };
        return line !== undefined;
      });
      if (line === undefined || line.error !== undefined) throw new Error(`etcd compaction failed: ${line?.error ?? 'no answer'}`);
      return line.compacted;
    },
    async stop() {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill('SIGTERM');
        const timer = setTimeout(() => child.kill('SIGKILL'), 30_000);
        await exited;
        clearTimeout(timer);
      }
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
