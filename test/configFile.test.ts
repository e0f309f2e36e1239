/**
 * vmroll.yaml: valid files load with paths anchored at the file; every kind of mistake is
 * reported as file:line: field: message, all of them at once; namespace rules per repository.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parse } from 'yaml';
import { UsageError } from '../reconciler/usage.ts';
import { ConfigFileError, loadConfigFile, namespaceAllowed, namespaceRefusal, parseConfig, repositoriesOf, repositoryName } from '../reconciler/configFile.ts';
import { ROOT } from './helpers/cases.ts';

const FILE = '/etc/vmroll/vmroll.yaml';

/** The issues parseConfig reports for `text`, as printed. */
function problems(text: string): string[] {
  try {
    parseConfig(text, FILE);
  } catch (e) {
    assert.ok(e instanceof ConfigFileError, `expected a ConfigFileError, got ${String(e)}`);
    assert.ok(e instanceof UsageError, 'the CLI treats it as a usage error (exit 2)');
    return e.message.split('\n');
  }
  assert.fail('expected the configuration to be refused');
}

const FULL = `# Two teams, one cluster.
repositories:
  - name: shop
    url: https://git.example.com/shop/vms.git
    branch: production
    path: clusters/east
    namespaces: [shop, shop-staging]
    interval: 30s
    prune: true
    gitTokenFile: secrets/shop-token
    reportTo: shop/vms
  - name: lab
    url: ../lab-repo
    path: vms
    namespaces: ["lab-*"]
cluster:
  kind: kube
  kubeconfig: kube/config
  context: east
reporters:
  github:
    apiUrl: https://github.example.com/api/v3
    tokenFile: /var/run/secrets/vmroll/github-token
    targetUrl: https://vmroll.example.com/
    repo: infra/vms
leaderElection:
  enabled: true
  namespace: vmroll-system
  leaseName: vmroll
  leaseDuration: 20s
listen: ":8080"
interval: 2m
logLevel: debug
`;

describe('vmroll.yaml (configuration file)', () => {
  it('loads a full file: every setting typed, relative paths anchored at the file, defaults per repository', () => {
    const config = parseConfig(FULL, FILE);
    assert.equal(config.cluster?.kind, 'kube');
    assert.equal(config.cluster?.kubeconfig, '/etc/vmroll/kube/config');
    assert.equal(config.reporters?.github?.tokenFile, '/var/run/secrets/vmroll/github-token');
    assert.equal(config.leaderElection?.enabled, true);
    assert.equal(config.listen, ':8080');
    const [shop, lab] = repositoriesOf(config);
    assert.deepEqual(shop, {
      name: 'shop',
      url: 'https://git.example.com/shop/vms.git',
      branch: 'production',
      path: 'clusters/east',
      namespaces: ['shop', 'shop-staging'],
      intervalMs: 30_000,
      prune: true,
      gitTokenFile: '/etc/vmroll/secrets/shop-token',
      reportTo: 'shop/vms',
    });
    assert.deepEqual(lab, {
      name: 'lab',
      url: '/etc/lab-repo',
      branch: 'main',
      path: 'vms',
      namespaces: ['lab-*'],
      intervalMs: 120_000,
      prune: false,
      gitTokenFile: undefined,
      reportTo: 'infra/vms',
    });
  });

  it('takes the single-repository form (the flags as keys) as one repository', () => {
    const config = parseConfig('repo: https://git.example.com/infra/vms.git\nbranch: main\npath: vms\ninterval: 1m\nprune: false\n', FILE);
    assert.deepEqual(repositoriesOf(config), [
      { name: 'vms', url: 'https://git.example.com/infra/vms.git', branch: 'main', path: 'vms', namespaces: undefined, intervalMs: 60_000, prune: false, gitTokenFile: undefined, reportTo: undefined },
    ]);
    // Only settings, the repository given by flag: no repository from the file.
    assert.deepEqual(repositoriesOf(parseConfig('listen: ":8080"\n', FILE)), []);
    assert.deepEqual(repositoriesOf(parseConfig('', FILE)), [], 'an empty file is an empty configuration');
  });

  it('accepts the deploy/ ConfigMaps’ vmroll.yaml', () => {
    for (const file of ['deploy/base/configmap.yaml', 'deploy/overlays/example/config.yaml']) {
      let text: string;
      try {
        text = readFileSync(path.join(ROOT, file), 'utf8');
      } catch {
        continue;
      }
      const cm = parse(text) as { data?: Record<string, string> };
      const embedded = cm.data?.['vmroll.yaml'];
      if (embedded === undefined) continue;
      assert.equal(repositoriesOf(parseConfig(embedded, file)).length, 1, file);
    }
  });

  it('names file:line and the field for schema errors, all at once, with a guess for typos', () => {
    const text = [
      'repositories:', //                        1
      '  - name: shop', //                       2
      '    url: https://git.example.com/a.git', // 3
      '    intervall: 30s', //                   4
      '    namespaces: [Shop]', //               5
      '  - name: Lab', //                        6
      '    prune: yes', //                       7
      'cluster:', //                             8
      '  kind: k8s', //                          9
      'interval: 5 minutes', //                 10
      'leaderElection:', //                     11
      '  enabled: "true"', //                   12
    ].join('\n');
    assert.deepEqual(problems(text), [
      `${FILE}:4: repositories[0].intervall: unknown setting (did you mean interval?); known here: name, url, branch, path, namespaces, interval, prune, gitTokenFile, reportTo, identity, restart`,
      `${FILE}:5: repositories[0].namespaces[0]: must be a namespace (lowercase letters, digits and -), a prefix followed by *, or *`,
      `${FILE}:6: repositories[1].url: is required`,
      `${FILE}:6: repositories[1].name: must be lowercase letters, digits, -, _ or ., starting and ending with a letter or digit`,
      `${FILE}:7: repositories[1].prune: must be a boolean`,
      `${FILE}:9: cluster.kind: must be one of sim, kube`,
      `${FILE}:10: interval: must be a duration such as 30s, 5m or 1h30m`,
      `${FILE}:12: leaderElection.enabled: must be a boolean`,
    ]);
  });

  it('names file:line for YAML syntax errors and refuses what is not one mapping', () => {
    assert.match(problems('repositories:\n  - name: a\n   url: [\n')[0] ?? '', /^\/etc\/vmroll\/vmroll\.yaml:3: invalid YAML/);
    assert.match(problems('interval: 1m\ninterval: 2m\n')[0] ?? '', /^\/etc\/vmroll\/vmroll\.yaml:2: invalid YAML: .*unique/i);
    assert.deepEqual(problems('- repo: x\n'), [`${FILE}:1: must be a mapping of settings (repositories:, cluster:, ...)`]);
    assert.deepEqual(problems('listen: ":1"\n---\nlisten: ":2"\n'), [`${FILE}:3: holds several YAML documents; a configuration file is one`]);
  });

  it('refuses combinations a schema cannot express', () => {
    const text = [
      'repo: https://git.example.com/a.git', //     1
      'path: vms', //                               2
      'namespaces: [a]', //                         3
      'repositories:', //                           4
      '  - name: a', //                             5
      '    url: https://git.example.com/a.git', //  6
      '  - name: a', //                             7
      '    url: https://git.example.com/b.git', //  8
      '    interval: 500ms', //                     9
      'reporters:', //                             10
      '  github:', //                              11
      '    tokenFile: t', //                       12
      'leaderElection:', //                        13
      '  leaseDuration: 10s', //                   14
      'cluster:', //                               15
      '  kind: sim', //                            16
      '  kubeconfig: k', //                        17
    ].join('\n');
    assert.deepEqual(problems(text), [
      `${FILE}:1: repo: give one repository at the top level (repo, branch, path, ...) or several under repositories, not both`,
      `${FILE}:2: path: belongs to one repository: set it in each entry of repositories`,
      `${FILE}:3: namespaces: belongs to one repository: set it in each entry of repositories`,
      `${FILE}:5: repositories[0]: repository a has nowhere to report: set its reportTo, or reporters.github.repo`,
      `${FILE}:7: repositories[1].name: "a" is already the name of repositories[0]`,
      `${FILE}:7: repositories[1]: repository a has nowhere to report: set its reportTo, or reporters.github.repo`,
      `${FILE}:9: repositories[1].interval: must be at least 1s`,
      `${FILE}:14: leaderElection.leaseDuration: renewDeadline (10s) must be shorter than leaseDuration (10s), or two replicas could reconcile at once`,
      `${FILE}:17: cluster.kubeconfig: applies to kind: kube, not sim`,
    ]);
  });

  it('reads restart policies: per repository, the top-level one as the default of the others', () => {
    const text = [
      'restart:', //                                 1
      '  policy: onChange', //                       2
      'repositories:', //                            3
      '  - name: shop', //                           4
      '    url: https://git.example.com/a.git', //   5
      '    restart:', //                             6
      '      policy: window', //                     7
      '      windows:', //                           8
      '        - schedule: "0 2 * * SAT"', //        9
      '          duration: 2h', //                  10
      '          timeZone: europe/berlin', //       11
      '        - {schedule: "@daily", duration: 30m}', // 12
      '      budget: {concurrent: 2, perWindow: 5}', // 13
      '      healthTimeout: 15m', //                14
      '      mergeGate: true', //                   15
      '  - name: lab', //                           16
      '    url: https://git.example.com/b.git', //  17
      '  - name: old', //                           18
      '    url: https://git.example.com/c.git', //  19
    ].join('\n');
    const config = parseConfig(text, FILE);
    const [shop, lab] = repositoriesOf(config);
    assert.equal(shop?.restart?.policy, 'window');
    assert.deepEqual(shop?.restart?.windows.map((w) => [w.schedule.text, w.durationMs, w.timeZone]), [
      ['0 2 * * SAT', 7_200_000, 'Europe/Berlin'],
      ['@daily', 1_800_000, 'UTC'],
    ]);
    assert.deepEqual(shop?.restart?.budget, { concurrent: 2, perWindow: 5 });
    assert.equal(shop?.restart?.healthTimeoutMs, 900_000);
    assert.equal(shop?.restart?.mergeGate, true);
    assert.deepEqual(lab?.restart, { policy: 'onChange', windows: [], budget: { concurrent: 1, perWindow: null }, healthTimeoutMs: 600_000, mergeGate: false });
    assert.equal(repositoriesOf(parseConfig('repo: https://git.example.com/a.git\n', FILE))[0]?.restart, undefined, 'no block: nothing (manual)');
  });

  it('names file:line for restart policies a schema cannot check: cron, time zone, durations, budgets, windows', () => {
    const text = [
      'repositories:', //                            1
      '  - name: shop', //                           2
      '    url: https://git.example.com/a.git', //   3
      '    restart:', //                             4
      '      policy: window', //                     5
      '      windows:', //                           6
      '        - schedule: "0 25 * * SAT"', //       7
      '          duration: 0s', //                   8
      '          timeZone: Europe/Bonn', //          9
      '        - schedule: "0 2 * *"', //           10
      '          duration: 800h', //                11
      '      budget:', //                           12
      '        concurrent: 0', //                   13
      '        perWindow: -5', //                   14
      '      healthTimeout: 0m', //                 15
      '  - name: lab', //                           16
      '    url: https://git.example.com/b.git', //  17
      '    restart: {policy: window}', //           18
    ].join('\n');
    assert.deepEqual(problems(text), [
      `${FILE}:7: repositories[0].restart.windows[0].schedule: not a cron schedule: hour field "25": 25 is out of range 0–23`,
      `${FILE}:8: repositories[0].restart.windows[0].duration: must be a duration above zero, such as 30m or 2h`,
      `${FILE}:9: repositories[0].restart.windows[0].timeZone: "Europe/Bonn" is not a time zone this runtime knows (an IANA name such as Europe/Berlin or UTC)`,
      `${FILE}:10: repositories[0].restart.windows[1].schedule: not a cron schedule: expected 5 fields (minute hour day-of-month month day-of-week), got 4`,
      `${FILE}:11: repositories[0].restart.windows[1].duration: must be at most 31 days`,
      `${FILE}:13: repositories[0].restart.budget.concurrent: must be a whole number of at least 1`,
      `${FILE}:14: repositories[0].restart.budget.perWindow: must be a whole number of at least 1`,
      `${FILE}:15: repositories[0].restart.healthTimeout: must be a duration above zero, such as 10m`,
      `${FILE}:18: repositories[1].restart.policy: window needs at least one entry under windows`,
    ]);
  });

  it('names file:line for restart blocks of the wrong shape: unknown policy, typos, missing fields, types', () => {
    const text = [
      'restart:', //                                 1
      '  policy: sometimes', //                      2
      '  window:', //                                3
      '    - schedule: "0 2 * * 6"', //              4
      '  windows:', //                               5
      '    - schedule: "0 2 * * 6"', //              6
      '  budget: {concurrent: two, perWindow: 1.5}', // 7
      '  healthTimeout: ten minutes', //             8
    ].join('\n');
    assert.deepEqual(problems(text), [
      `${FILE}:2: restart.policy: must be one of manual, onChange, window`,
      `${FILE}:3: restart.window: unknown setting (did you mean windows?); known here: policy, windows, budget, healthTimeout, mergeGate`,
      `${FILE}:6: restart.windows[0].duration: is required`,
      `${FILE}:7: restart.budget.concurrent: must be an integer`,
      `${FILE}:7: restart.budget.perWindow: must be an integer`,
      `${FILE}:8: restart.healthTimeout: must be a duration such as 30s, 5m or 1h30m`,
    ]);
  });

  it('allows one Git host only, and a Gitea host needs its URL', () => {
    assert.deepEqual(problems('reporters:\n  github: {repo: a/b}\n  gitea: {repo: a/b, apiUrl: "https://gitea.example.com"}\n'), [`${FILE}:1: reporters: choose one Git host: github or gitea`]);
    assert.deepEqual(problems('reporters:\n  gitea:\n    repo: a/b\n'), [`${FILE}:2: reporters.gitea.apiUrl: is required`]);
    assert.deepEqual(problems('reporters:\n  github:\n    repo: just-a-name\n    apiUrl: not a url\n'), [
      `${FILE}:3: reporters.github.repo: must be owner/name`,
      `${FILE}:4: reporters.github.apiUrl: must be a URL (https://...)`,
    ]);
  });

  it('reads a file from disk, refuses an unreadable one, and never echoes a secret', () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'vmroll-config-'));
    try {
      const file = path.join(dir, 'vmroll.yaml');
      writeFileSync(file, 'repo: ./vms\ngitTokenFile: token\n');
      const config = loadConfigFile(file);
      assert.equal(config.repo, path.join(dir, 'vms'));
      assert.equal(config.gitTokenFile, path.join(dir, 'token'));
      assert.throws(() => loadConfigFile(path.join(dir, 'missing.yaml')), (e: unknown) => e instanceof ConfigFileError && e.message === `${path.join(dir, 'missing.yaml')}: cannot be read`);
      // A token pasted where a file name belongs is refused without being repeated.
      writeFileSync(file, 'reporters:\n  github:\n    token: ghp_abcdefghijklmnopqrstuvwxyz0123456789\n');
      assert.throws(() => loadConfigFile(file), (e: unknown) => e instanceof ConfigFileError && /:3: reporters\.github\.token: unknown setting \(did you mean tokenFile\?\)/.test(e.message) && !e.message.includes('ghp_'));
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('decides which namespaces a repository may write', () => {
    const shop = { name: 'shop', namespaces: ['shop', 'team-a-*'] };
    assert.equal(namespaceAllowed(shop, 'shop'), true);
    assert.equal(namespaceAllowed(shop, 'team-a-dev'), true);
    assert.equal(namespaceAllowed(shop, 'shop-staging'), false, 'exact names are exact');
    assert.equal(namespaceAllowed(shop, 'team-b'), false);
    assert.equal(namespaceAllowed({}, 'anything'), true, 'no list: any namespace');
    assert.equal(namespaceAllowed({ namespaces: ['*'] }, 'kube-system'), true);
    assert.equal(namespaceAllowed({ namespaces: [] }, 'shop'), false, 'an empty list allows nothing');
    assert.equal(namespaceRefusal(shop, 'shop'), null);
    assert.equal(namespaceRefusal(shop, 'billing'), 'namespace "billing" is not one repository shop may write (allowed: shop, team-a-*); the VM is not applied');
  });

  it('names repositories given only by URL or path', () => {
    assert.equal(repositoryName('https://github.com/Acme/VM-Fleet.git'), 'vm-fleet');
    assert.equal(repositoryName('/srv/git/vms/'), 'vms');
    assert.equal(repositoryName('git@example.com:infra/vms.git'), 'vms');
    assert.equal(repositoryName('https://example.com/'), 'example.com');
  });
});
