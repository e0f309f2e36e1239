/**
 * The layering of reconciler/ (DESIGN.md, "Boundaries"): rollout/ imports only itself (and the
 * generated schema types); restart/ only itself, rollout/ and those types; product paths never import cluster/sim/ (the commands that compose the
 * simulator are listed in SIM_COMPOSERS); nothing below commands/ imports commands/.
 */
import assert from 'node:assert/strict';
import { readFileSync, readdirSync } from 'node:fs';
import path from 'node:path';
import { LayerRule, SIM_COMPOSERS, importsOf, layeringViolations } from './helpers/layering.ts';
import { ROOT } from './helpers/cases.ts';

/** Every .ts file under reconciler/, repository-relative with `/` separators, and its text. */
function reconcilerSources(): Map<string, string> {
  const out = new Map<string, string>();
  const walk = (dir: string): void => {
    for (const entry of readdirSync(path.join(ROOT, dir), { withFileTypes: true })) {
      const rel = `${dir}/${entry.name}`;
      if (entry.isDirectory()) walk(rel);
      else if (entry.name.endsWith('.ts')) out.set(rel, readFileSync(path.join(ROOT, rel), 'utf8'));
    }
  };
  walk('reconciler');
  return out;
}

describe('layering of reconciler/', () => {
  it('no file under reconciler/ breaks a layering rule', () => {
    const files = reconcilerSources();
    // The scan is not vacuous: it reads the whole tree and sees the imports that are allowed.
    assert.ok(files.size > 50, `only ${files.size} files found under reconciler/`);
    assert.ok(importsOf(files.get('reconciler/cli.ts') ?? '').some((s) => s.includes('commands/')), 'cli.ts imports the commands');
    assert.ok(importsOf(files.get('reconciler/commands/run.ts') ?? '').some((s) => s.includes('cluster/sim/')), 'run.ts composes the simulator');
    const violations = layeringViolations(files);
    assert.deepEqual(violations, [], violations.map((v) => `${v.file} imports ${v.specifier} (${v.rule})`).join('\n'));
  });

  it('every file on the simulator allow-list exists', () => {
    const files = reconcilerSources();
    for (const f of SIM_COMPOSERS) assert.ok(files.has(f), `${f} is allowed to import cluster/sim/ but does not exist`);
  });

  describe('the scanner', () => {
    /** A small tree that keeps every rule: the test adds one import at a time to it. */
    const clean = (): Map<string, string> =>
      new Map([
        ['reconciler/cli.ts', "import { runPlan } from './commands/plan.ts';\nconst run = () => import('./commands/run.ts');\n"],
        ['reconciler/commands/plan.ts', "import { SimCluster } from '../cluster/sim/simCluster.ts';\nimport { x } from './common.ts';\nimport { UsageError } from '../usage.ts';\n"],
        ['reconciler/commands/run.ts', "export { makeLogger } from '../logging.ts';\nimport { SimCluster } from '../cluster/sim/simCluster.ts';\n"],
        ['reconciler/cluster/sim/apiServer.ts', "import { metaOf } from '../object.ts';\nimport { SimCluster } from './simCluster.ts';\nimport { readBody } from '../../http.ts';\n"],
        ['reconciler/rollout/engine.ts', "import { isObj } from './json.ts';\nimport type { VmPlan } from '../../schemas/generated/vmplan.ts';\n"],
        ['reconciler/restart/planner.ts', "import { currentWindow } from './window.ts';\nimport type { Strategy } from '../rollout/vocabulary.ts';\nimport type { VmrollConfig } from '../../schemas/generated/vmroll-config.ts';\n"],
        ['reconciler/config.ts', "// import { UsageError } from './commands/common.ts';\nconst s = \"import x from './cluster/sim/store.ts'\";\nimport { UsageError } from './usage.ts';\n"],
        ['test/anything.test.ts', "import { startRun } from '../reconciler/commands/run.ts';\n"],
      ]);

    it('finds nothing in a tree that keeps the rules (comments, strings and tests outside reconciler/ do not count)', () => {
      assert.deepEqual(layeringViolations(clean()), []);
    });

    const forbidden: Array<{ file: string; line: string; rule: LayerRule; specifier: string }> = [
      { file: 'reconciler/rollout/engine.ts', line: "import { UsageError } from '../usage.ts';", rule: LayerRule.rolloutIsolated, specifier: '../usage.ts' },
      { file: 'reconciler/rollout/engine.ts', line: "import { readFileSync } from 'node:fs';", rule: LayerRule.rolloutIsolated, specifier: 'node:fs' },
      { file: 'reconciler/rollout/engine.ts', line: "export * from '../cluster/object.ts';", rule: LayerRule.rolloutIsolated, specifier: '../cluster/object.ts' },
      { file: 'reconciler/rollout/engine.ts', line: "import type { Logger } from 'pino';", rule: LayerRule.rolloutIsolated, specifier: 'pino' },
      { file: 'reconciler/restart/planner.ts', line: "import { readFileSync } from 'node:fs';", rule: LayerRule.restartPure, specifier: 'node:fs' },
      { file: 'reconciler/restart/planner.ts', line: "import { durationMs } from '../configFile.ts';", rule: LayerRule.restartPure, specifier: '../configFile.ts' },
      { file: 'reconciler/restart/planner.ts', line: "import type { Logger } from 'pino';", rule: LayerRule.restartPure, specifier: 'pino' },
      { file: 'reconciler/config.ts', line: "import { SimCluster } from './cluster/sim/simCluster.ts';", rule: LayerRule.noSimInProduct, specifier: './cluster/sim/simCluster.ts' },
      { file: 'reconciler/report/planCommit.ts', line: "import type { SimCluster } from '../cluster/sim/simCluster.ts';", rule: LayerRule.noSimInProduct, specifier: '../cluster/sim/simCluster.ts' },
      { file: 'reconciler/commands/diff.ts', line: "const p = await import('../cluster/sim/patch.ts');", rule: LayerRule.noSimInProduct, specifier: '../cluster/sim/patch.ts' },
      { file: 'reconciler/controller/run.ts', line: "import { SimCluster } from '../cluster/sim/simCluster.ts';", rule: LayerRule.noSimInProduct, specifier: '../cluster/sim/simCluster.ts' },
      { file: 'reconciler/config.ts', line: "import { UsageError } from './commands/common.ts';", rule: LayerRule.noUpwardIntoCommands, specifier: './commands/common.ts' },
      { file: 'reconciler/report/markdown.ts', line: "export { formatValue } from '../commands/common.ts';", rule: LayerRule.noUpwardIntoCommands, specifier: '../commands/common.ts' },
      { file: 'reconciler/cluster/sim/apiServer.ts', line: "const m = await import(\"../../commands/sim.ts\");", rule: LayerRule.noUpwardIntoCommands, specifier: '../../commands/sim.ts' },
    ];
    for (const f of forbidden) {
      it(`reports ${f.rule} for ${f.file}: ${f.line}`, () => {
        const files = clean();
        files.set(f.file, `${files.get(f.file) ?? ''}${f.line}\n`);
        assert.deepEqual(layeringViolations(files), [{ file: f.file, specifier: f.specifier, rule: f.rule }]);
      });
    }

    it('reports an import that breaks two rules once per rule', () => {
      const files = clean();
      files.set('reconciler/rollout/engine.ts', "import { runRun } from '../commands/run.ts';\n");
      assert.deepEqual(
        layeringViolations(files).map((v) => v.rule),
        [LayerRule.rolloutIsolated, LayerRule.noUpwardIntoCommands],
      );
    });

    it('reads every import form: named, default, namespace, side effect, type, export-from, dynamic', () => {
      const source = [
        "import a from './a.ts';",
        "import * as b from './b.ts';",
        "import './c.ts';",
        "import type { D } from './d.ts';",
        "export { e } from './e.ts';",
        "export * from './f.ts';",
        'async function g() { if (1) { await import("./g.ts"); } }',
        "const h = `${'x'}`; // import i from './not-this.ts'",
        "/* export * from './nor-this.ts' */",
      ].join('\n');
      assert.deepEqual(importsOf(source), ['./a.ts', './b.ts', './c.ts', './d.ts', './e.ts', './f.ts', './g.ts']);
    });
  });
});
