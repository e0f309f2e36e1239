/**
 * vmroll's own kubeconfig loader (reconciler/cluster/kubeconfig.ts) over real TLS sockets: an
 * HTTPS server on 127.0.0.1 with a CA made here by openssl, which requests a client certificate
 * and answers who it saw (the certificate's CN, the Authorization header), or 401 for a token it
 * was told to refuse. Covers client certificates (files relative to the kubeconfig, and inline
 * data), the CA and tls-server-name, skip-verify, token, tokenFile, basic, exec credential
 * plugins (a script that counts its runs), the pod's service account with a rotating token, and
 * the errors an operator reads for a broken kubeconfig.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:https';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import type { TLSSocket } from 'node:tls';
import { stringify } from 'yaml';
import { ClusterError } from '../reconciler/cluster/backend.ts';
import { ApiStatusError, kubeRequest } from '../reconciler/cluster/kube.ts';
import { type KubeClusterConfig, type KubeConfigLoadOptions, loadKubeConfig } from '../reconciler/cluster/kubeconfig.ts';

/** What the test server saw of one request. */
interface Seen {
  cn: string | null;
  authorization: string | null;
}

describe('kubeconfig loader (vmroll\'s own, no client-node) over TLS on 127.0.0.1', function () {
  this.timeout(60_000);
  let dir: string;
  let server: Server;
  let port: number;
  const refused = new Set<string>();
  const seen: Seen[] = [];
  let ca: string;
  const pem = (f: string): string => readFileSync(path.join(dir, 'pki', f), 'utf8');
  const b64 = (f: string): string => Buffer.from(pem(f)).toString('base64');

  before(() => {
    dir = mkdtempSync(path.join(os.tmpdir(), 'vmroll-kubeconfig-'));
    const pki = path.join(dir, 'pki');
    mkdirSync(pki);
    const ssl = (...args: string[]): void => void execFileSync('openssl', args, { cwd: pki, stdio: 'ignore' });
    ssl('req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', 'ca.key', '-out', 'ca.crt', '-days', '2', '-subj', '/CN=test-ca');
    const leaf = (name: string, subject: string, ext: string): void => {
      writeFileSync(path.join(pki, `${name}.ext`), ext);
      ssl('req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', `${name}.key`, '-out', `${name}.csr`, '-subj', subject);
      ssl('x509', '-req', '-in', `${name}.csr`, '-CA', 'ca.crt', '-CAkey', 'ca.key', '-CAcreateserial', '-out', `${name}.crt`, '-days', '2', '-extfile', `${name}.ext`);
    };
    leaf('server', '/CN=kube-apiserver', 'subjectAltName=DNS:kube.test,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n');
    leaf('alice', '/CN=alice/O=operators', 'extendedKeyUsage=clientAuth\n');
    leaf('bob', '/CN=bob', 'extendedKeyUsage=clientAuth\n');
    ca = pem('ca.crt');
  });

  before(async () => {
    server = createServer({ key: pem('server.key'), cert: pem('server.crt'), ca, requestCert: true, rejectUnauthorized: false }, (req, res) => {
      const socket = req.socket as TLSSocket;
      const cert = socket.authorized ? socket.getPeerCertificate() : null;
      const authorization = req.headers.authorization ?? null;
      const cn = cert?.subject?.CN;
      seen.push({ cn: cn === undefined ? null : String(cn), authorization });
      const token = authorization?.startsWith('Bearer ') === true ? authorization.slice(7) : null;
      if (token !== null && refused.has(token)) {
        res.writeHead(401, { 'content-type': 'application/json' }).end(JSON.stringify({ kind: 'Status', status: 'Failure', reason: 'Unauthorized', code: 401, message: 'Unauthorized' }));
        return;
      }
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ kind: 'Status', status: 'Success' }));
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    port = (server.address() as AddressInfo).port;
  });

  after(async () => {
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
    rmSync(dir, { recursive: true, force: true });
  });

  beforeEach(() => {
    seen.length = 0;
    refused.clear();
  });

  /** Writes a kubeconfig with one context `c` into its own folder; returns the file. */
  let files = 0;
  function kubeconfig(cluster: Record<string, unknown>, user: Record<string, unknown>, extra: Record<string, unknown> = {}): string {
    const folder = path.join(dir, `kc-${++files}`);
    mkdirSync(folder, { recursive: true });
    const file = path.join(folder, 'config');
    const doc = {
      apiVersion: 'v1',
      kind: 'Config',
      'current-context': 'c',
      clusters: [{ name: 'k', cluster: { server: `https://127.0.0.1:${port}`, ...cluster } }],
      users: [{ name: 'u', user }],
      contexts: [{ name: 'c', context: { cluster: 'k', user: 'u' } }],
      ...extra,
    };
    writeFileSync(file, stringify(doc));
    return file;
  }

  /** One GET through the loaded config; the last request the server saw. */
  async function whoami(kc: KubeClusterConfig): Promise<Seen> {
    await kubeRequest(kc, 'GET', '/api', undefined, 20_000);
    const last = seen.at(-1);
    assert.ok(last !== undefined);
    return last;
  }

  const loaded: KubeClusterConfig[] = [];
  const load = (file: string, context?: string, options: KubeConfigLoadOptions = {}): KubeClusterConfig => {
    const kc = loadKubeConfig({ file, ...(context !== undefined ? { context } : {}) }, options);
    loaded.push(kc);
    return kc;
  };
  afterEach(async () => {
    await Promise.all(loaded.splice(0).map((kc) => kc.close()));
  });

  it('verifies the server with certificate-authority (a path relative to the kubeconfig) and presents client-certificate/client-key files', async () => {
    const file = kubeconfig({ 'certificate-authority': '../pki/ca.crt' }, { 'client-certificate': '../pki/alice.crt', 'client-key': '../pki/alice.key' });
    const kc = load(file);
    assert.equal(kc.server, `https://127.0.0.1:${port}`);
    assert.equal(kc.context, 'c');
    assert.deepEqual(await whoami(kc), { cn: 'alice', authorization: null });
  });

  it('takes certificate-authority-data and client-certificate-data / client-key-data inline', async () => {
    const kc = load(kubeconfig({ 'certificate-authority-data': b64('ca.crt') }, { 'client-certificate-data': b64('bob.crt'), 'client-key-data': b64('bob.key') }));
    assert.deepEqual(await whoami(kc), { cn: 'bob', authorization: null });
  });

  it('refuses a server its CA did not sign, checks tls-server-name, and skips checks only with insecure-skip-tls-verify', async () => {
    await assert.rejects(whoami(load(kubeconfig({}, { token: 'x' }))), /self[- ]signed|unable to (?:get|verify)|certificate/i, 'the system roots do not know the test CA');
    await assert.rejects(whoami(load(kubeconfig({ 'certificate-authority-data': b64('ca.crt'), 'tls-server-name': 'other.test' }, {}))), /altnames|other\.test/i);
    assert.equal((await whoami(load(kubeconfig({ 'certificate-authority-data': b64('ca.crt'), 'tls-server-name': 'kube.test' }, {})))).cn, null);
    assert.deepEqual(await whoami(load(kubeconfig({ 'insecure-skip-tls-verify': true }, { token: 'skip' }))), { cn: null, authorization: 'Bearer skip' });
  });

  it('sends a token, and username/password as basic auth', async () => {
    const cluster = { 'certificate-authority-data': b64('ca.crt') };
    assert.equal((await whoami(load(kubeconfig(cluster, { token: 's3cret' })))).authorization, 'Bearer s3cret');
    assert.equal((await whoami(load(kubeconfig(cluster, { username: 'ops', password: 'pw:1' })))).authorization, `Basic ${Buffer.from('ops:pw:1').toString('base64')}`);
    // A refused static token is not retried: nothing new to send.
    refused.add('s3cret');
    const before = seen.length;
    await assert.rejects(whoami(load(kubeconfig(cluster, { token: 's3cret' }))), (e: unknown) => e instanceof ApiStatusError && e.statusCode === 401);
    assert.equal(seen.length - before, 1);
  });

  it('reads tokenFile (relative to the kubeconfig) again after the refresh period and after a 401', async () => {
    let clock = Date.parse('2026-11-30T12:00:00Z');
    const file = kubeconfig({ 'certificate-authority-data': b64('ca.crt') }, { tokenFile: 'token' });
    const tokenFile = path.join(path.dirname(file), 'token');
    writeFileSync(tokenFile, 't1\n');
    const kc = load(file, undefined, { now: () => clock, tokenRefreshMs: 60_000 });
    assert.equal((await whoami(kc)).authorization, 'Bearer t1');
    writeFileSync(tokenFile, 't2\n');
    clock += 59_000;
    assert.equal((await whoami(kc)).authorization, 'Bearer t1', 'held until the refresh period ends');
    clock += 1_000;
    assert.equal((await whoami(kc)).authorization, 'Bearer t2', 're-read after it');
    writeFileSync(tokenFile, 't3\n');
    refused.add('t2');
    assert.equal((await whoami(kc)).authorization, 'Bearer t3', 'a 401 re-reads the file and the request is sent again');
    assert.deepEqual(seen.map((s) => s.authorization).slice(-2), ['Bearer t2', 'Bearer t3']);
  });

  it('in a pod: KUBERNETES_SERVICE_HOST/PORT, the service account CA, and its token re-read as the kubelet rotates it', async () => {
    let clock = Date.parse('2026-11-30T12:00:00Z');
    const sa = path.join(dir, 'serviceaccount');
    mkdirSync(sa, { recursive: true });
    writeFileSync(path.join(sa, 'ca.crt'), ca);
    writeFileSync(path.join(sa, 'token'), 'bound-1');
    const env = { KUBERNETES_SERVICE_HOST: '127.0.0.1', KUBERNETES_SERVICE_PORT: String(port) };
    const kc = loadKubeConfig({ inCluster: true }, { env, serviceAccountDir: sa, now: () => clock });
    loaded.push(kc);
    assert.equal(kc.server, `https://127.0.0.1:${port}`);
    assert.equal((await whoami(kc)).authorization, 'Bearer bound-1');
    writeFileSync(path.join(sa, 'token'), 'bound-2');
    clock += 61_000;
    assert.equal((await whoami(kc)).authorization, 'Bearer bound-2', 're-read within a minute');
    writeFileSync(path.join(sa, 'token'), 'bound-3');
    refused.add('bound-2');
    assert.equal((await whoami(kc)).authorization, 'Bearer bound-3', 'and at once on a 401');
    assert.throws(() => loadKubeConfig({ inCluster: true }, { env: {}, serviceAccountDir: sa }), /KUBERNETES_SERVICE_HOST/);
    const v6 = loadKubeConfig({ inCluster: true }, { env: { KUBERNETES_SERVICE_HOST: 'fd00::1', KUBERNETES_SERVICE_PORT: '443' }, serviceAccountDir: sa });
    assert.equal(v6.server, 'https://[fd00::1]:443');
  });

  for (const apiVersion of ['client.authentication.k8s.io/v1', 'client.authentication.k8s.io/v1beta1']) {
    it(`runs an exec credential plugin (${apiVersion}): cached until expirationTimestamp, run again after it and once after a 401`, async () => {
      let clock = Date.parse('2026-11-30T12:00:00Z');
      const folder = path.join(dir, `exec-${apiVersion.split('/')[1]}`);
      mkdirSync(folder, { recursive: true });
      const count = path.join(folder, 'runs');
      const info = path.join(folder, 'info.json');
      // Prints token exec-<run>, valid for an hour after the clock the test set; records its runs and KUBERNETES_EXEC_INFO.
      writeFileSync(
        path.join(folder, 'plugin.sh'),
        [
          '#!/bin/sh',
          'n=$(cat "$RUNS" 2>/dev/null || echo 0); n=$((n+1)); echo $n > "$RUNS"',
          'printf "%s" "$KUBERNETES_EXEC_INFO" > "$INFO"',
          `printf '{"apiVersion":"${apiVersion}","kind":"ExecCredential","status":{"token":"exec-%s-%s","expirationTimestamp":"%s"}}' "$1" "$n" "$(cat "$EXPIRES")"`,
        ].join('\n'),
      );
      chmodSync(path.join(folder, 'plugin.sh'), 0o755);
      const expires = path.join(folder, 'expires');
      writeFileSync(expires, new Date(clock + 3_600_000).toISOString());
      const file = kubeconfig(
        { 'certificate-authority-data': b64('ca.crt') },
        { exec: { apiVersion, command: `../exec-${apiVersion.split('/')[1]}/plugin.sh`, args: ['tok'], env: [{ name: 'RUNS', value: count }, { name: 'INFO', value: info }, { name: 'EXPIRES', value: expires }] } },
      );
      const kc = load(file, undefined, { now: () => clock });
      const runs = (): number => Number(readFileSync(count, 'utf8').trim());
      await Promise.all([whoami(kc), whoami(kc), whoami(kc)]);
      assert.deepEqual(seen.map((s) => s.authorization), ['Bearer exec-tok-1', 'Bearer exec-tok-1', 'Bearer exec-tok-1']);
      assert.equal(runs(), 1, 'one run for concurrent requests');
      assert.deepEqual(JSON.parse(readFileSync(info, 'utf8')), { apiVersion, kind: 'ExecCredential', spec: { interactive: false } });
      clock += 30 * 60_000;
      assert.equal((await whoami(kc)).authorization, 'Bearer exec-tok-1', 'cached before expiry');
      assert.equal(runs(), 1);
      writeFileSync(expires, new Date(clock + 3_600_000).toISOString());
      clock += 31 * 60_000;
      assert.equal((await whoami(kc)).authorization, 'Bearer exec-tok-2', 'run again once expired');
      assert.equal(runs(), 2);
      refused.add('exec-tok-2');
      const [a, b] = await Promise.all([whoami(kc), whoami(kc)]);
      assert.deepEqual([a.authorization, b.authorization], ['Bearer exec-tok-3', 'Bearer exec-tok-3']);
      assert.equal(runs(), 3, 'two requests refused with the same token run the plugin once');
      // A server that refuses every token: one more run, then the 401 is the answer.
      refused.add('exec-tok-3').add('exec-tok-4');
      await assert.rejects(whoami(kc), (e: unknown) => e instanceof ApiStatusError && e.statusCode === 401);
      assert.equal(runs(), 4);
    });
  }

  it('an exec plugin that fails or prints no credential: the error names the command and shows none of its output', async () => {
    const folder = path.join(dir, 'exec-bad');
    mkdirSync(folder, { recursive: true });
    writeFileSync(path.join(folder, 'fail.sh'), '#!/bin/sh\necho \'{"status":{"token":"leaked-token"}}\'\necho "not logged in" >&2\nexit 3\n');
    writeFileSync(path.join(folder, 'wrong.sh'), '#!/bin/sh\necho \'{"apiVersion":"client.authentication.k8s.io/v1","kind":"ExecCredential","status":{"nothing":"leaked-token"}}\'\n');
    chmodSync(path.join(folder, 'fail.sh'), 0o755);
    chmodSync(path.join(folder, 'wrong.sh'), 0o755);
    for (const [script, expected] of [
      ['fail.sh', /exec plugin .*fail\.sh: exited with code 3: not logged in/],
      ['wrong.sh', /exec plugin .*wrong\.sh: its ExecCredential has neither a token nor a client certificate/],
      ['absent.sh', /exec plugin .*absent\.sh: command not found \(install the absent plugin\)/],
    ] as const) {
      const exec = { apiVersion: 'client.authentication.k8s.io/v1', command: path.join(folder, script), installHint: 'install the absent plugin\n' };
      const kc = load(kubeconfig({ 'certificate-authority-data': b64('ca.crt') }, { exec }));
      await assert.rejects(whoami(kc), (e: unknown) => {
        assert.ok(e instanceof ClusterError);
        assert.match(e.message, expected);
        assert.doesNotMatch(JSON.stringify({ message: e.message, data: e.data }), /leaked-token/);
        return true;
      });
    }
  });

  it('names the file and what is missing: the context, its cluster, its user; refuses auth-provider and unknown exec versions', () => {
    const file = kubeconfig({}, { token: 'x' });
    assert.throws(() => load(file, 'nope'), (e: unknown) => e instanceof ClusterError && e.message === `kubeconfig ${file}: no context named "nope"`);
    const noCluster = kubeconfig({}, {}, { contexts: [{ name: 'c', context: { cluster: 'gone', user: 'u' } }] });
    assert.throws(() => load(noCluster), (e: unknown) => e instanceof ClusterError && e.message === `kubeconfig ${noCluster}: context "c": no cluster named "gone"`);
    const noUser = kubeconfig({}, {}, { contexts: [{ name: 'c', context: { cluster: 'k', user: 'ghost' } }] });
    assert.throws(() => load(noUser), (e: unknown) => e instanceof ClusterError && e.message === `kubeconfig ${noUser}: context "c": no user named "ghost"`);
    const noCurrent = kubeconfig({}, {}, { 'current-context': undefined });
    assert.throws(() => load(noCurrent), /no current-context set and no --context given/);
    const oidc = kubeconfig({}, { 'auth-provider': { name: 'oidc', config: { 'id-token': 'leaked-token' } } });
    assert.throws(
      () => load(oidc),
      (e: unknown) => e instanceof Error && e.message.startsWith(`kubeconfig ${oidc}: user "u": auth-provider (oidc) is not supported`) && !e.message.includes('leaked-token'),
    );
    const alpha = kubeconfig({}, { exec: { apiVersion: 'client.authentication.k8s.io/v1alpha1', command: 'x' } });
    assert.throws(() => load(alpha), /exec: apiVersion "client\.authentication\.k8s\.io\/v1alpha1" is not supported/);
    assert.throws(() => load(path.join(dir, 'missing')), /kubeconfig .*missing: cannot read it \(ENOENT\)/);
    const badCa = kubeconfig({ 'certificate-authority': 'nowhere.crt' }, {});
    assert.throws(() => load(badCa), new RegExp(`kubeconfig ${badCa}: certificate-authority ${path.join(path.dirname(badCa), 'nowhere.crt')}: cannot read it`));
  });

  it('uses the context named over the current one', async () => {
    const file = kubeconfig({ 'certificate-authority-data': b64('ca.crt') }, { token: 'current' }, {
      users: [{ name: 'u', user: { token: 'current' } }, { name: 'v', user: { token: 'other' } }],
      contexts: [{ name: 'c', context: { cluster: 'k', user: 'u' } }, { name: 'd', context: { cluster: 'k', user: 'v' } }],
    });
    assert.equal((await whoami(load(file))).authorization, 'Bearer current');
    const d = load(file, 'd');
    assert.equal(d.context, 'd');
    assert.equal((await whoami(d)).authorization, 'Bearer other');
  });
});
