/**
 * vmroll's own kubeconfig loader, read as kubectl reads one: a YAML file's current or named
 * context (its cluster's server, CA and TLS settings; its user's client certificate, token,
 * token file, basic credentials or exec credential plugin), or a pod's service account. Each
 * request asks {@link KubeClusterConfig.credentials} for its headers and an undici connection
 * pool with the TLS options; a 401 invalidates cached credentials once. Loading it costs no
 * Kubernetes client library (whose models alone take about 80 MiB and 0.6 CPU-s to load).
 */
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { Agent, type Dispatcher } from 'undici';
import { parse } from 'yaml';
import { ClusterError } from './backend.ts';

/** Where the kubeconfig comes from. */
export type KubeConfigSource = { file: string; context?: string } | { inCluster: true };

/** Where a pod finds its service account's token, CA and namespace. */
export const SERVICE_ACCOUNT_DIR = '/var/run/secrets/kubernetes.io/serviceaccount';

/** How often a token file (a service account's bound token, which the kubelet rotates hourly) is read again. */
export const TOKEN_REFRESH_MS = 60_000;

/** The exec credential API versions vmroll speaks. */
export const EXEC_API_VERSIONS = ['client.authentication.k8s.io/v1', 'client.authentication.k8s.io/v1beta1'] as const;

/** An exec credential is run again this long before it expires, so no request goes out with one about to lapse. */
const EXPIRY_MARGIN_MS = 5_000;

/** Time limit of one run of an exec credential plugin. */
const EXEC_TIMEOUT_MS = 60_000;

/** Tunables of {@link loadKubeConfig} (tests point them elsewhere). */
export interface KubeConfigLoadOptions {
  /** Environment of the in-cluster lookup and of exec plugins (default `process.env`). */
  env?: NodeJS.ProcessEnv;
  /** The service account folder (default {@link SERVICE_ACCOUNT_DIR}). */
  serviceAccountDir?: string;
  /** Re-read period of token files (default {@link TOKEN_REFRESH_MS}). */
  tokenRefreshMs?: number;
  /** The clock credentials expire by (default `Date.now`). */
  now?: () => number;
}

/** TLS settings of the connection pool. */
interface Tls {
  ca?: string;
  cert?: string;
  key?: string;
  servername?: string;
  rejectUnauthorized: boolean;
}

/** An exec credential plugin as the kubeconfig describes it. */
interface ExecPlugin {
  command: string;
  args: string[];
  env: Record<string, string>;
  apiVersion: string;
  provideClusterInfo: boolean;
  /** What to tell the operator when the command is not installed. */
  installHint?: string;
}

/** How requests prove who they are. */
type Auth =
  | { kind: 'static'; headers: Record<string, string> }
  | { kind: 'tokenFile'; file: string }
  | { kind: 'exec'; plugin: ExecPlugin };

/** Credentials held until `expiresAt` (local clock). */
interface Held {
  headers: Record<string, string>;
  cert?: string;
  key?: string;
  expiresAt: number;
}

/** What one request sends: its auth headers and the pool to send on. */
export interface Credentials {
  headers: Record<string, string>;
  dispatcher: Dispatcher;
  /** Which credentials these are, so a 401 invalidates them only once. */
  readonly generation: number;
}

/** A kubeconfig entry list (`clusters`, `contexts`, `users`) as `name` → its body. */
function entries(doc: Record<string, unknown>, list: string, field: string): Map<string, Record<string, unknown>> {
  const out = new Map<string, Record<string, unknown>>();
  const items = doc[list];
  if (!Array.isArray(items)) return out;
  for (const item of items as unknown[]) {
    if (typeof item !== 'object' || item === null) continue;
    const { name, [field]: body } = item as Record<string, unknown>;
    if (typeof name === 'string') out.set(name, typeof body === 'object' && body !== null ? (body as Record<string, unknown>) : {});
  }
  return out;
}

const str = (v: unknown): string | undefined => (typeof v === 'string' && v !== '' ? v : undefined);

/** The loaded kubeconfig: where the API server is and how to reach it as the configured user. */
export class KubeClusterConfig {
  private held: Held | null = null;
  private pending: Promise<Held> | null = null;
  private generation = 0;
  private readonly pools = new Map<string, Agent>();
  private readonly now: () => number;

  /** Use {@link loadKubeConfig}. */
  constructor(
    /** The API server's URL (no credentials in it). */
    readonly server: string,
    /** The context used; null in a pod. */
    readonly context: string | null,
    /** The kubeconfig file, absolute; null in a pod. */
    readonly file: string | null,
    private readonly tls: Tls,
    private readonly auth: Auth,
    private readonly options: KubeConfigLoadOptions,
  ) {
    this.now = options.now ?? Date.now;
  }

  /** The headers and connection pool of a request; runs the exec plugin or reads the token file when due. */
  async credentials(): Promise<Credentials> {
    const generation = this.generation;
    let held = this.held;
    if (held === null || this.now() >= held.expiresAt) {
      this.pending ??= this.fetch().finally(() => (this.pending = null));
      held = await this.pending;
      this.held = held;
    }
    return { headers: held.headers, dispatcher: this.pool(held), generation };
  }

  /**
   * A request with `used` was answered 401: drops the cached credentials (once for all requests
   * that used them). True when a retry may succeed (they came from a file or a plugin).
   */
  unauthorized(used: Credentials): boolean {
    if (this.auth.kind === 'static') return false;
    if (used.generation === this.generation) {
      this.generation += 1;
      this.held = null;
    }
    return true;
  }

  /** Closes every connection pool. */
  async close(): Promise<void> {
    const open = [...this.pools.values()];
    this.pools.clear();
    await Promise.all(open.map((a) => a.close().catch(() => undefined)));
  }

  /** One pool per distinct TLS setting (an exec plugin may hand out a new client certificate). */
  private pool(held: Held): Dispatcher {
    const tls: Tls = { ...this.tls, ...(held.cert !== undefined ? { cert: held.cert } : {}), ...(held.key !== undefined ? { key: held.key } : {}) };
    const key = `${tls.cert ?? ''}\0${tls.key ?? ''}`;
    let agent = this.pools.get(key);
    if (agent === undefined) {
      agent = new Agent({ connect: { ...tls } });
      // The previous certificate's pool is no longer used: close it once its requests are done.
      for (const [k, old] of this.pools) {
        this.pools.delete(k);
        void old.close().catch(() => undefined);
      }
      this.pools.set(key, agent);
    }
    return agent;
  }

  private async fetch(): Promise<Held> {
    const auth = this.auth;
    if (auth.kind === 'static') return { headers: auth.headers, expiresAt: Infinity };
    if (auth.kind === 'tokenFile') {
      let token: string;
      try {
        token = readFileSync(auth.file, 'utf8').trim();
      } catch (e) {
        throw new ClusterError('Invalid', `kubeconfig: cannot read the token file ${auth.file}: ${(e as NodeJS.ErrnoException).code ?? String(e)}`);
      }
      return { headers: token === '' ? {} : { authorization: `Bearer ${token}` }, expiresAt: this.now() + (this.options.tokenRefreshMs ?? TOKEN_REFRESH_MS) };
    }
    return this.runPlugin(auth.plugin);
  }

  /** Runs an exec credential plugin and reads its ExecCredential; errors name the command, never what it printed on stdout. */
  private runPlugin(plugin: ExecPlugin): Promise<Held> {
    const info: Record<string, unknown> = { apiVersion: plugin.apiVersion, kind: 'ExecCredential', spec: { interactive: false } };
    if (plugin.provideClusterInfo) {
      (info['spec'] as Record<string, unknown>)['cluster'] = {
        server: this.server,
        ...(this.tls.ca !== undefined ? { 'certificate-authority-data': Buffer.from(this.tls.ca).toString('base64') } : {}),
        ...(this.tls.servername !== undefined ? { 'tls-server-name': this.tls.servername } : {}),
        'insecure-skip-tls-verify': !this.tls.rejectUnauthorized,
      };
    }
    const env = { ...(this.options.env ?? process.env), ...plugin.env, KUBERNETES_EXEC_INFO: JSON.stringify(info) };
    const what = `kubeconfig ${this.file ?? '(in-cluster)'}: exec plugin ${plugin.command}`;
    return new Promise((resolve, reject) => {
      const child = execFile(plugin.command, plugin.args, { env, timeout: EXEC_TIMEOUT_MS, maxBuffer: 4 * 1024 * 1024 }, (error, stdout, stderr) => {
        if (error !== null) {
          const code = (error as { code?: unknown }).code;
          if (code === 'ENOENT') {
            reject(new ClusterError('Invalid', `${what}: command not found${plugin.installHint !== undefined ? ` (${plugin.installHint.trim()})` : ''}`));
            return;
          }
          // The last line of stderr says why (not logged in, ...); stdout, where a credential would be, is never shown.
          const last = String(stderr).trim().split('\n').pop()?.slice(0, 300) ?? '';
          reject(new ClusterError('Unavailable', `${what}: ${typeof code === 'number' ? `exited with code ${code}` : error.message}${last !== '' ? `: ${last}` : ''}`, { status: 0 }));
          return;
        }
        try {
          resolve(this.readCredential(String(stdout), plugin, what));
        } catch (e) {
          reject(e);
        }
      });
      child.stdin?.end();
    });
  }

  private readCredential(stdout: string, plugin: ExecPlugin, what: string): Held {
    let out: Record<string, unknown>;
    try {
      out = JSON.parse(stdout) as Record<string, unknown>;
    } catch {
      throw new ClusterError('Invalid', `${what}: its output is not an ExecCredential (not JSON)`);
    }
    if (out['kind'] !== 'ExecCredential' || out['apiVersion'] !== plugin.apiVersion) {
      throw new ClusterError('Invalid', `${what}: its output is not an ExecCredential of ${plugin.apiVersion} (kind ${String(out['kind'])}, apiVersion ${String(out['apiVersion'])})`);
    }
    const status = (typeof out['status'] === 'object' && out['status'] !== null ? out['status'] : {}) as Record<string, unknown>;
    const token = str(status['token']);
    const cert = str(status['clientCertificateData']);
    const key = str(status['clientKeyData']);
    if (token === undefined && (cert === undefined || key === undefined)) {
      throw new ClusterError('Invalid', `${what}: its ExecCredential has neither a token nor a client certificate and key`);
    }
    const expiry = str(status['expirationTimestamp']);
    let expiresAt = Infinity;
    if (expiry !== undefined) {
      const t = Date.parse(expiry);
      if (Number.isNaN(t)) throw new ClusterError('Invalid', `${what}: expirationTimestamp ${expiry} is not a time`);
      expiresAt = t - EXPIRY_MARGIN_MS;
    }
    return {
      headers: token !== undefined ? { authorization: `Bearer ${token}` } : {},
      ...(cert !== undefined && key !== undefined ? { cert, key } : {}),
      expiresAt,
    };
  }
}

/** Loads a kubeconfig: a file (its current context, or the one named) or the pod's service account. */
export function loadKubeConfig(source: KubeConfigSource, options: KubeConfigLoadOptions = {}): KubeClusterConfig {
  return 'inCluster' in source ? loadInCluster(options) : loadFile(source.file, source.context, options);
}

/** The pod's service account: KUBERNETES_SERVICE_HOST/PORT, its CA, and its token file (re-read as it rotates). */
function loadInCluster(options: KubeConfigLoadOptions): KubeClusterConfig {
  const env = options.env ?? process.env;
  const host = env['KUBERNETES_SERVICE_HOST'] ?? '';
  const port = env['KUBERNETES_SERVICE_PORT'] ?? '';
  if (host === '' || port === '') throw new ClusterError('Invalid', 'in-cluster config: KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT must be set (not running in a pod?)');
  const dir = options.serviceAccountDir ?? SERVICE_ACCOUNT_DIR;
  let ca: string;
  try {
    ca = readFileSync(path.join(dir, 'ca.crt'), 'utf8');
  } catch (e) {
    throw new ClusterError('Invalid', `in-cluster config: cannot read ${path.join(dir, 'ca.crt')}: ${(e as NodeJS.ErrnoException).code ?? String(e)}`);
  }
  const server = `https://${host.includes(':') ? `[${host}]` : host}:${port}`;
  return new KubeClusterConfig(server, null, null, { ca, rejectUnauthorized: true }, { kind: 'tokenFile', file: path.join(dir, 'token') }, options);
}

/** A kubeconfig file, as kubectl reads it; relative paths in it are relative to its folder. */
function loadFile(file: string, contextName: string | undefined, options: KubeConfigLoadOptions): KubeClusterConfig {
  const abs = path.resolve(file);
  const fail = (what: string): ClusterError => new ClusterError('Invalid', `kubeconfig ${file}: ${what}`);
  let doc: unknown;
  try {
    doc = parse(readFileSync(abs, 'utf8'));
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw fail(typeof code === 'string' ? `cannot read it (${code})` : `not YAML: ${e instanceof Error ? e.message.split('\n')[0] : String(e)}`);
  }
  if (typeof doc !== 'object' || doc === null || Array.isArray(doc)) throw fail('not a kubeconfig (expected a mapping)');
  const root = doc as Record<string, unknown>;
  const name = contextName ?? str(root['current-context']);
  if (name === undefined) throw fail('no current-context set and no --context given');
  const context = entries(root, 'contexts', 'context').get(name);
  if (context === undefined) throw fail(`no context named "${name}"`);
  const clusterName = str(context['cluster']);
  const cluster = clusterName !== undefined ? entries(root, 'clusters', 'cluster').get(clusterName) : undefined;
  if (cluster === undefined) throw fail(`context "${name}": no cluster named "${clusterName ?? ''}"`);
  const userName = str(context['user']);
  const user = userName === undefined ? {} : entries(root, 'users', 'user').get(userName);
  if (user === undefined) throw fail(`context "${name}": no user named "${userName ?? ''}"`);

  const dir = path.dirname(abs);
  const readPath = (p: string, what: string): string => {
    const full = path.resolve(dir, p);
    try {
      return readFileSync(full, 'utf8');
    } catch (e) {
      throw fail(`${what} ${full}: cannot read it (${(e as NodeJS.ErrnoException).code ?? String(e)})`);
    }
  };
  const material = (data: unknown, file: unknown, what: string): string | undefined => {
    const d = str(data);
    if (d !== undefined) return Buffer.from(d, 'base64').toString('utf8');
    const f = str(file);
    return f !== undefined ? readPath(f, what) : undefined;
  };

  const server = str(cluster['server']);
  if (server === undefined) throw fail(`cluster "${clusterName ?? ''}" has no server`);
  const tls: Tls = { rejectUnauthorized: cluster['insecure-skip-tls-verify'] !== true };
  const ca = material(cluster['certificate-authority-data'], cluster['certificate-authority'], 'certificate-authority');
  if (ca !== undefined) tls.ca = ca;
  const servername = str(cluster['tls-server-name']);
  if (servername !== undefined) tls.servername = servername;
  const cert = material(user['client-certificate-data'], user['client-certificate'], 'client-certificate');
  const key = material(user['client-key-data'], user['client-key'], 'client-key');
  if ((cert === undefined) !== (key === undefined)) throw fail(`user "${userName ?? ''}": a client certificate needs both the certificate and the key`);
  if (cert !== undefined && key !== undefined) Object.assign(tls, { cert, key });

  const who = `user "${userName ?? ''}"`;
  if (user['auth-provider'] !== undefined) {
    const provider = str((user['auth-provider'] as Record<string, unknown> | null)?.['name']) ?? '?';
    throw fail(`${who}: auth-provider (${provider}) is not supported; use an exec credential plugin (users[].user.exec), as kubectl does since 1.26`);
  }
  let auth: Auth;
  const token = str(user['token']);
  const tokenFile = str(user['tokenFile']);
  const username = str(user['username']);
  if (user['exec'] !== undefined && user['exec'] !== null) {
    auth = { kind: 'exec', plugin: execPlugin(user['exec'], dir, (what) => fail(`${who}: exec: ${what}`)) };
  } else if (token !== undefined) {
    auth = { kind: 'static', headers: { authorization: `Bearer ${token}` } };
  } else if (tokenFile !== undefined) {
    auth = { kind: 'tokenFile', file: path.resolve(dir, tokenFile) };
    readPath(tokenFile, 'tokenFile');
  } else if (username !== undefined) {
    const password = typeof user['password'] === 'string' ? user['password'] : '';
    auth = { kind: 'static', headers: { authorization: `Basic ${Buffer.from(`${username}:${password}`).toString('base64')}` } };
  } else {
    auth = { kind: 'static', headers: {} };
  }
  return new KubeClusterConfig(server, name, abs, tls, auth, options);
}

/** Reads `users[].user.exec`; a command with a slash in it is relative to the kubeconfig's folder (kubectl's rule). */
function execPlugin(raw: unknown, dir: string, fail: (what: string) => ClusterError): ExecPlugin {
  if (typeof raw !== 'object' || raw === null) throw fail('expected a mapping');
  const e = raw as Record<string, unknown>;
  const command = str(e['command']);
  if (command === undefined) throw fail('no command');
  const apiVersion = str(e['apiVersion']) ?? '';
  if (!(EXEC_API_VERSIONS as readonly string[]).includes(apiVersion)) throw fail(`apiVersion "${apiVersion}" is not supported (${EXEC_API_VERSIONS.join(', ')})`);
  if (e['interactiveMode'] === 'Always') throw fail('interactiveMode Always needs a terminal; vmroll runs without one');
  const args = Array.isArray(e['args']) ? (e['args'] as unknown[]).map(String) : [];
  const env: Record<string, string> = {};
  if (Array.isArray(e['env'])) {
    for (const v of e['env'] as unknown[]) {
      const entry = (typeof v === 'object' && v !== null ? v : {}) as Record<string, unknown>;
      if (typeof entry['name'] === 'string') env[entry['name']] = String(entry['value'] ?? '');
    }
  }
  const resolved = !path.isAbsolute(command) && command.includes('/') ? path.resolve(dir, command) : command;
  const installHint = str(e['installHint']);
  return { command: resolved, args, env, apiVersion, provideClusterInfo: e['provideClusterInfo'] === true, ...(installHint !== undefined ? { installHint } : {}) };
}
