/**
 * The compiled build, laid out as the image holds it: tsc's output (tsconfig.build.json) in dist/
 * beside only the files IMAGE_FILES lists, with no TypeScript source. Run through bin/vmroll.js, it
 * answers --version, the help texts, `diff` and `run --once` as the sources do; the help texts and
 * `diff` load neither the Kubernetes client nor Octokit (a module-resolution hook records every URL
 * the process loads), and `run --once --kubeconfig` loads no @kubernetes/client-node;
 * and in a source checkout bin/vmroll.js never runs a dist/ older than its sources.
 */
import assert from 'node:assert/strict';
import { execFile, execFileSync } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, symlinkSync, utimesSync, writeFileSync } from 'node:fs';
import { builtinModules } from 'node:module';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { promisify } from 'node:util';
import { parse } from 'yaml';
import { startApiServer } from '../reconciler/cluster/sim/apiServer.ts';
import { SimCluster } from '../reconciler/cluster/sim/simCluster.ts';
import { main, usage } from '../reconciler/cli.ts';
import { simKubeconfig } from '../reconciler/commands/sim.ts';
import type { Obj } from '../reconciler/rollout/index.ts';
import { DEMO_HELP, DIFF_HELP, PLAN_HELP, RUN_HELP, SIM_HELP } from '../reconciler/commands/help.ts';
import { validateVmPlan } from '../reconciler/validate.ts';
import { ROOT } from './helpers/cases.ts';
import { IMAGE_FILES } from './helpers/image.ts';

const exec = promisify(execFile);
const VERSION = (JSON.parse(readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as { version: string }).version;
const HELP: Record<string, string> = { run: RUN_HELP, plan: PLAN_HELP, diff: DIFF_HELP, demo: DEMO_HELP, sim: SIM_HELP };
/** Packages a command must not load unless it talks to a cluster or a Git host. */
const HEAVY = ['@kubernetes/client-node', '@octokit/rest', '@octokit/core', 'isomorphic-git'];

/** The README's `vmroll diff` examples, as arguments. */
const example = (f: string): string => path.join(ROOT, 'fixtures', 'examples', f);
const DIFF_TEXT = ['diff', '--baseline', example('web-baseline.yaml'), '--desired', example('web-desired.yaml'), '--vmi', example('web-vmi.yaml'), '--kubevirt', example('kubevirt.yaml'), '--output', 'text'];
const DIFF_JSON = ['diff', '--baseline', example('web-revision.yaml'), '--desired', example('web-desired.yaml'), '--kubevirt', example('kubevirt.yaml'), '--output', 'json'];

/** The resolve hook of the load recorder: appends every resolved module URL to the file it is given. */
const RECORDER_HOOKS = [
  "import { appendFileSync } from 'node:fs';",
  'let out;',
  'export function initialize(file) { out = file; }',
  'export async function resolve(specifier, context, next) {',
  '  const resolved = await next(specifier, context);',
  "  appendFileSync(out, `${resolved.url}\\n`);",
  '  return resolved;',
  '}',
].join('\n');

/**
 * The load recorder, given to node with `--import`: records every module URL the process resolves
 * (ESM imports, through the hook above) and, at exit, every file in require's cache (CommonJS).
 */
const RECORDER = [
  "import { appendFileSync } from 'node:fs';",
  "import { createRequire, register } from 'node:module';",
  "import { pathToFileURL } from 'node:url';",
  'const out = process.env.VMROLL_TEST_LOADS;',
  "register('./record-hooks.mjs', import.meta.url, { data: out });",
  'const cache = createRequire(import.meta.url).cache;',
  "process.on('exit', () => appendFileSync(out, Object.keys(cache).map((f) => `${pathToFileURL(f).href}\\n`).join('')));",
].join('\n');

interface Result {
  code: number;
  stdout: string;
  stderr: string;
  /** Every module URL the process loaded. */
  loads: string[];
}

/** The package a module URL belongs to (its last node_modules segment), or undefined outside node_modules. */
function packageOf(url: string): string | undefined {
  const parts = url.split('/node_modules/');
  if (parts.length < 2) return undefined;
  const segments = (parts[parts.length - 1] ?? '').split('/');
  return segments[0]?.startsWith('@') === true ? `${segments[0]}/${segments[1] ?? ''}` : segments[0];
}

describe('the compiled build (dist/, as the image holds it)', function () {
  this.timeout(600_000);
  let work: string;
  let image: string;
  let recorder: string;
  let runs = 0;

  /** Runs `<dir>/bin/vmroll.js args` with the load recorder, in `cwd` (default: a fresh folder), with only PATH and HOME from the outside. */
  async function vmroll(dir: string, args: string[], cwd?: string): Promise<Result> {
    runs += 1;
    const loadsFile = path.join(work, `loads-${runs}.txt`);
    writeFileSync(loadsFile, '');
    const where = cwd ?? mkdtempSync(path.join(work, 'cwd-'));
    const env = { PATH: process.env['PATH'] ?? '/usr/bin:/bin', HOME: where, VMROLL_TEST_LOADS: loadsFile };
    let r: Omit<Result, 'loads'>;
    try {
      const { stdout, stderr } = await exec(process.execPath, ['--import', pathToFileURL(recorder).href, path.join(dir, 'bin', 'vmroll.js'), ...args], { cwd: where, env, timeout: 180_000 });
      r = { code: 0, stdout, stderr };
    } catch (e) {
      const err = e as { code?: number; stdout?: string; stderr?: string };
      r = { code: typeof err.code === 'number' ? err.code : -1, stdout: err.stdout ?? '', stderr: err.stderr ?? '' };
    }
    return { ...r, loads: readFileSync(loadsFile, 'utf8').split('\n').filter((l) => l !== '') };
  }

  /** What main() prints in this process, from the TypeScript sources. */
  async function fromSources(args: string[]): Promise<Omit<Result, 'loads'>> {
    let stdout = '';
    let stderr = '';
    const code = await main(args, { out: (t) => (stdout += `${t}\n`), err: (t) => (stderr += `${t}\n`) });
    return { code, stdout, stderr };
  }

  /** A copy of the image layout in `dir`: dist/, IMAGE_FILES, and node_modules as given. */
  function layout(dir: string, nodeModules: 'linked' | 'empty'): string {
    mkdirSync(dir, { recursive: true });
    cpSync(path.join(image, 'dist'), path.join(dir, 'dist'), { recursive: true, preserveTimestamps: true });
    for (const f of IMAGE_FILES) cpSync(path.join(ROOT, f), path.join(dir, f), { recursive: true });
    if (nodeModules === 'linked') symlinkSync(path.join(ROOT, 'node_modules'), path.join(dir, 'node_modules'), 'dir');
    else mkdirSync(path.join(dir, 'node_modules'));
    return dir;
  }

  const loadedPackages = (r: Result): Set<string> => new Set(r.loads.map(packageOf).filter((p): p is string => p !== undefined));
  const assertLight = (r: Result, what: string): void => {
    const packages = loadedPackages(r);
    for (const p of [...HEAVY, 'tsx', 'typescript']) assert.ok(!packages.has(p), `${what} loaded ${p}`);
    assert.deepEqual(r.loads.filter((u) => u.endsWith('.ts')), [], `${what} loaded TypeScript`);
  };

  before(async () => {
    work = mkdtempSync(path.join(tmpdir(), 'vmroll-build-'));
    recorder = path.join(work, 'record-loads.mjs');
    writeFileSync(recorder, RECORDER);
    writeFileSync(path.join(work, 'record-hooks.mjs'), RECORDER_HOOKS);
    image = path.join(work, 'image');
    mkdirSync(image);
    // The same compiler and options as `npm run build`, into the copy instead of the checkout's dist/.
    await exec(process.execPath, [path.join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', path.join(ROOT, 'tsconfig.build.json'), '--outDir', path.join(image, 'dist')], { cwd: ROOT, timeout: 540_000 });
    for (const f of IMAGE_FILES) cpSync(path.join(ROOT, f), path.join(image, f), { recursive: true });
    symlinkSync(path.join(ROOT, 'node_modules'), path.join(image, 'node_modules'), 'dir');
  });

  after(() => {
    if (work !== undefined) rmSync(work, { recursive: true, force: true });
  });

  it('holds JavaScript only: dist/ has a module for every source and no TypeScript', () => {
    const sources = readdirSync(path.join(ROOT, 'reconciler'), { recursive: true })
      .map(String)
      .filter((f) => f.endsWith('.ts'));
    assert.ok(sources.length > 20, 'the sources are found');
    for (const f of sources) assert.ok(existsSync(path.join(image, 'dist', 'reconciler', f.replace(/\.ts$/, '.js'))), `dist/reconciler/${f.replace(/\.ts$/, '.js')}`);
    const built = readdirSync(path.join(image, 'dist'), { recursive: true }).map(String);
    assert.deepEqual(built.filter((f) => f.endsWith('.ts')), []);
    // Relative imports were rewritten to .js: a `.ts` specifier left in the output would not resolve in the image.
    const cli = readFileSync(path.join(image, 'dist', 'reconciler', 'cli.js'), 'utf8');
    assert.match(cli, /import\(['"]\.\/commands\/diff\.js['"]\)/);
    assert.doesNotMatch(cli, /from ['"][^'"]+\.ts['"]|import\(['"][^'"]+\.ts['"]\)/);
  });

  it('imports, in dist/, only Node.js built-ins and production dependencies', () => {
    const pkg = JSON.parse(readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as { dependencies?: Record<string, string> };
    const dependencies = new Set(Object.keys(pkg.dependencies ?? {}));
    const found = new Map<string, string>();
    for (const f of readdirSync(path.join(image, 'dist'), { recursive: true }).map(String)) {
      if (!f.endsWith('.js')) continue;
      const text = readFileSync(path.join(image, 'dist', f), 'utf8');
      for (const m of text.matchAll(/^\s*(?:import|export)\s+(?:[^'"]*?\sfrom\s+)?['"]([^'"]+)['"]|import\(\s*['"]([^'"]+)['"]\s*\)/gm)) {
        const spec = m[1] ?? m[2] ?? '';
        if (spec.startsWith('.') || spec.startsWith('node:') || builtinModules.includes(spec)) continue;
        found.set(spec.startsWith('@') ? spec.split('/').slice(0, 2).join('/') : (spec.split('/')[0] ?? spec), f);
      }
    }
    assert.ok(found.has('@kubernetes/client-node') && found.has('yaml'), 'the scan finds packages');
    assert.deepEqual([...found].filter(([name]) => !dependencies.has(name)).map(([name, f]) => `${name} (dist/${f})`), [], 'imported by dist/ but not in dependencies');
  });

  it('answers --version with package.json\'s version, running dist/ and loading no tsx', async () => {
    const r = await vmroll(image, ['--version']);
    assert.equal(r.stderr, '');
    assert.equal(r.stdout, `vmroll ${VERSION}\n`);
    assert.equal(r.code, 0);
    assert.ok(r.loads.includes(pathToFileURL(path.join(image, 'dist', 'reconciler', 'cli.js')).href), 'the compiled CLI ran');
    assertLight(r, '--version');
  });

  it('prints --help and every command\'s help text without loading any command module', async () => {
    const top = await vmroll(image, ['--help']);
    assert.equal(top.stdout, `${usage()}\n`);
    assert.equal(top.code, 0);
    assertLight(top, '--help');
    for (const [name, text] of Object.entries(HELP)) {
      for (const args of [['help', name], [name, '--help']]) {
        const r = await vmroll(image, args);
        assert.equal(r.stderr, '', args.join(' '));
        assert.equal(r.stdout, `${text}\n`, `vmroll ${args.join(' ')}`);
        assert.equal(r.code, 0);
        assertLight(r, `vmroll ${args.join(' ')}`);
        assert.ok(!r.loads.some((u) => u.includes('/dist/reconciler/commands/') && !u.endsWith('/help.js')), `vmroll ${args.join(' ')} loaded a command module`);
      }
    }
  });

  it('runs `diff` on the README examples as the sources do, loading neither the Kubernetes client nor Octokit', async () => {
    for (const args of [DIFF_TEXT, DIFF_JSON]) {
      const compiled = await vmroll(image, args);
      const sources = await fromSources(args);
      assert.equal(compiled.stderr, sources.stderr);
      assert.equal(compiled.stdout, sources.stdout);
      assert.equal(compiled.code, sources.code);
      assert.equal(compiled.code, 0, compiled.stderr);
      // The recorder sees packages: diff parses YAML with `yaml`.
      assert.ok(loadedPackages(compiled).has('yaml'), 'the load recorder saw yaml');
      assertLight(compiled, 'vmroll diff');
    }
    const plan = JSON.parse((await vmroll(image, DIFF_JSON)).stdout) as unknown;
    assert.ok(validateVmPlan(plan).ok, 'diff --output json prints one VmPlan');
    assert.match((await vmroll(image, DIFF_TEXT)).stdout, /spec\.template\.spec\.domain\.cpu\.sockets/);
  });

  it('runs `run --once --cluster sim` on the bundled example repository, from the image\'s fixtures/', async () => {
    const cwd = mkdtempSync(path.join(work, 'run-'));
    const r = await vmroll(image, ['run', '--once', '--cluster', 'sim', '--log-level', 'silent'], cwd);
    assert.equal(r.code, 0, r.stderr);
    const lines = r.stdout.split('\n');
    assert.equal(lines[0], `target: embedded KubeVirt simulator, state in ${path.join('.vmroll', 'sim-state.json')}`);
    assert.match(lines[1] ?? '', /^Created the example repository \.vmroll\/example-repo /);
    assert.match(r.stdout, /^sync [0-9a-f]{12}: 0 in sync · 3 created /m);
    for (const vm of ['jobs/batch', 'shop/db', 'shop/web']) assert.match(r.stdout, new RegExp(`^  create  ${vm}$`, 'm'));
    assert.deepEqual(readdirSync(path.join(cwd, '.vmroll', 'example-repo', 'vms')).sort(), readdirSync(path.join(ROOT, 'fixtures', 'example-repo', 'vms')).sort());
    assert.ok(existsSync(path.join(cwd, '.vmroll', 'sim-state.json')));
    assert.ok(!loadedPackages(r).has('tsx'));
  });

  it('runs `run --once --kubeconfig` against the simulator\'s API server, loading no @kubernetes/client-node (leader election\'s module included)', async () => {
    const kubevirt = parse(readFileSync(path.join(ROOT, 'fixtures', 'example-cluster', 'kubevirt.yaml'), 'utf8')) as Obj;
    const sim = new SimCluster({ kubevirt });
    for (const name of ['shop', 'jobs']) sim.createObject({ apiVersion: 'v1', kind: 'Namespace', metadata: { name } });
    const server = await startApiServer({ cluster: sim, listen: '127.0.0.1:0' });
    try {
      const cwd = mkdtempSync(path.join(work, 'kube-'));
      const repo = path.join(cwd, 'fleet');
      cpSync(path.join(ROOT, 'fixtures', 'example-repo'), repo, { recursive: true });
      const git = (...args: string[]): void => void execFileSync('git', ['-c', 'user.name=t', '-c', 'user.email=t@example.com', ...args], { cwd: repo, stdio: 'ignore' });
      git('init', '-q', '-b', 'main');
      git('add', '-A');
      git('commit', '-q', '-m', 'fleet');
      writeFileSync(path.join(cwd, 'kubeconfig'), simKubeconfig(server.url));
      const r = await vmroll(image, ['run', '--once', '--kubeconfig', 'kubeconfig', '--repo', repo, '--path', 'vms', '--log-level', 'silent'], cwd);
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stdout, /^sync [0-9a-f]{12}: 0 in sync · 3 created /m);
      for (const vm of [['shop', 'web'], ['shop', 'db'], ['jobs', 'batch']] as const) assert.ok(sim.store.get('VirtualMachine', vm[0], vm[1]) !== undefined, `${vm.join('/')} created through the API`);
      // `--leader-elect` does not go with `--once`; the composition root imports the elector's module all the same.
      for (const m of ['controller/main.js', 'cluster/kube.js', 'cluster/kubeconfig.js', 'cluster/leaderElection.js']) {
        assert.ok(r.loads.includes(pathToFileURL(path.join(image, 'dist', 'reconciler', m)).href), `loaded dist/reconciler/${m}`);
      }
      const packages = loadedPackages(r);
      assert.ok(packages.has('undici') && packages.has('yaml'), 'the load recorder saw the HTTP client and yaml');
      assert.ok(!packages.has('@kubernetes/client-node'), 'run against a cluster loaded @kubernetes/client-node');
      assert.deepEqual(r.loads.filter((u) => u.includes('/node_modules/@kubernetes/')), []);
    } finally {
      await server.close();
    }
  });

  it('reads the configuration schema from the image\'s schemas/: an unknown setting is refused at its line', async () => {
    const cwd = mkdtempSync(path.join(work, 'config-'));
    writeFileSync(path.join(cwd, 'vmroll.yaml'), 'repo: .vmroll/example-repo\nfoo: 1\n');
    const r = await vmroll(image, ['run', '--once', '--cluster', 'sim', '--config', 'vmroll.yaml'], cwd);
    assert.equal(r.stdout, '');
    assert.match(r.stderr, /^vmroll run: vmroll\.yaml:2: foo: unknown setting; known here: repo, /);
    assert.equal(r.code, 2);
  });

  describe('bin/vmroll.js in a source checkout never runs a stale dist/', () => {
    const PAST = new Date('2020-01-01T00:00:00Z');
    /** The image layout plus the sources, every source older than dist/ unless changed afterwards. */
    function checkout(name: string, nodeModules: 'linked' | 'empty'): string {
      const dir = layout(path.join(work, name), nodeModules);
      cpSync(path.join(ROOT, 'reconciler'), path.join(dir, 'reconciler'), { recursive: true });
      cpSync(path.join(ROOT, 'schemas', 'generated'), path.join(dir, 'schemas', 'generated'), { recursive: true });
      for (const sub of ['reconciler', path.join('schemas', 'generated')]) {
        for (const f of readdirSync(path.join(dir, sub), { recursive: true }).map(String)) {
          if (f.endsWith('.ts')) utimesSync(path.join(dir, sub, f), PAST, PAST);
        }
      }
      return dir;
    }
    const compiledCli = (dir: string): string => pathToFileURL(path.join(dir, 'dist', 'reconciler', 'cli.js')).href;
    const sourceCli = (dir: string): string => pathToFileURL(path.join(dir, 'reconciler', 'cli.ts')).href;

    it('runs dist/ when every source is older than its build', async () => {
      const dir = checkout('fresh', 'linked');
      const r = await vmroll(dir, ['--version']);
      assert.equal(r.stdout, `vmroll ${VERSION}\n`);
      assert.ok(r.loads.includes(compiledCli(dir)));
      assert.ok(!r.loads.includes(sourceCli(dir)));
      assertLight(r, '--version');
    });

    it('runs the sources through tsx when a source changed after the build, saying nothing on a pipe', async () => {
      const dir = checkout('changed', 'linked');
      const later = new Date(Date.now() + 60_000);
      utimesSync(path.join(dir, 'reconciler', 'cli.ts'), later, later);
      const r = await vmroll(dir, ['--version']);
      assert.equal(r.stderr, '');
      assert.equal(r.stdout, `vmroll ${VERSION}\n`);
      assert.equal(r.code, 0);
      assert.ok(r.loads.includes(sourceCli(dir)), 'the source CLI ran');
      assert.ok(!r.loads.includes(compiledCli(dir)), 'the stale compiled CLI did not run');
      assert.ok(loadedPackages(r).has('tsx'));
    });

    it('without tsx, stops with one line saying to run npm run build', async () => {
      const dir = checkout('no-tsx', 'empty');
      const later = new Date(Date.now() + 60_000);
      utimesSync(path.join(dir, 'reconciler', 'cli.ts'), later, later);
      const r = await vmroll(dir, ['--version']);
      assert.equal(r.stdout, '');
      assert.equal(r.stderr, `vmroll: reconciler/cli.ts changed after the last build; run \`npm run build\` (in ${dir})\n`);
      assert.equal(r.code, 1);
      assert.ok(!r.loads.includes(compiledCli(dir)));
    });

    it('treats a source without a build as stale', async () => {
      const dir = checkout('added', 'empty');
      writeFileSync(path.join(dir, 'reconciler', 'added.ts'), 'export const added = 1;\n');
      utimesSync(path.join(dir, 'reconciler', 'added.ts'), PAST, PAST);
      const r = await vmroll(dir, ['--version']);
      assert.equal(r.stdout, '');
      assert.equal(r.stderr, `vmroll: dist/ has no build of reconciler/added.ts; run \`npm run build\` (in ${dir})\n`);
      assert.equal(r.code, 1);
    });
  });
});
