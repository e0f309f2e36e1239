// The PR comment and the terminal table: marker, summary line, every reason, escaping, folding,
// and GitHub's 65,536-character limit, on plans built by hand.
import assert from 'node:assert/strict';
import type { VmPlan, VmPlanEntry } from '../reconciler/rollout/index.ts';
import { COMMENT_LIMIT, FOLD_AFTER, escapeMarkdown, gateDescription, renderPlanComment, renderPlanTable, statusDescription, summaryLine } from '../reconciler/report/markdown.ts';
import { countPlan, emptySummary } from '../reconciler/plan/summary.ts';
import { PLAN_MARKER } from '../reconciler/report/reporter.ts';

const SHA = 'abc1234def5678abc1234def5678abc1234def56';
const KV = { version: 'v1.9.0', model: 'v1.9.0' };
const NON_LIVE = 'a non-live-updatable field was changed in the template spec';

function entry(name: string, over: Partial<VmPlanEntry> = {}): VmPlanEntry {
  return {
    namespace: 'shop',
    name,
    action: 'update',
    strategy: 'LiveUpdate',
    restartRequired: false,
    condition: 'absent',
    conditionMessage: null,
    reasons: [],
    changes: [],
    waiting: [],
    kubevirt: KV,
    ...over,
  };
}

const live = (name: string): VmPlanEntry =>
  entry(name, { changes: [{ path: 'spec.template.spec.domain.cpu.sockets', from: 2, to: 4, rollout: 'live', why: 'CPU sockets hot-plugged' }] });

const staged = (name: string): VmPlanEntry =>
  entry(name, {
    restartRequired: true,
    condition: 'set',
    conditionMessage: NON_LIVE,
    changes: [
      { path: 'spec.template.spec.domain.cpu.cores', from: 1, to: 2, rollout: 'staged', why: NON_LIVE },
      { path: 'spec.template.spec.domain.machine.type', from: 'q35', to: 'pc-q35-rhel9', rollout: 'staged', why: 'machine type needs a new instance' },
      { path: 'spec.template.spec.domain.cpu.sockets', from: 2, to: 3, rollout: 'staged', why: 'held: another change in this edit needs a restart' },
    ],
    reasons: [
      { path: 'spec.template.spec.domain.cpu.cores', message: NON_LIVE },
      { path: 'spec.template.spec.domain.machine.type', message: 'machine type needs a new instance' },
      { path: 'spec.template.spec.domain.cpu.sockets', message: 'held: another change in this edit needs a restart' },
    ],
  });

function samplePlan(): VmPlan {
  return {
    commit: SHA,
    vms: [
      live('a'),
      live('b'),
      staged('c'),
      entry('d', { action: 'create' }),
      entry('e', { action: 'none' }),
      entry('f', { action: 'delete', strategy: 'LiveUpdate' }),
    ],
    errors: [{ file: 'vms/bad.yaml', line: 7, path: 'spec.runStrategy', message: 'VirtualMachine shop/bad: spec.runStrategy must be one of "Always", "Halted"' }],
  };
}

/** The cells of a markdown table row, split on unescaped pipes. */
function cells(row: string): string[] {
  return row.split('|').slice(1, -1);
}

describe('PR comment markdown', function () {
  it('starts with the marker, then a title and the summary line', function () {
    const body = renderPlanComment({ plan: samplePlan(), prNumber: 12, ref: 'feature/cpu' });
    assert.ok(body.startsWith(`${PLAN_MARKER}\n`));
    const lines = body.split('\n');
    assert.match(lines[1] ?? '', /^### vmroll plan · pull request #12 <code>feature\/cpu<\/code> at <code>abc1234<\/code>/);
    assert.equal(lines[3], '**vmroll plan** for <code>abc1234</code>: 2 live-updated · 1 staged until restart · 1 created · 1 deleted · 1 in sync · 1 error');
    assert.equal(summaryLine(countPlan(samplePlan()), SHA), lines[3]);
  });

  it('lists every restart reason, the condition message, and manifest errors with file:line', function () {
    const body = renderPlanComment({ plan: samplePlan() });
    for (const path of ['cpu.cores', 'machine.type', 'cpu.sockets']) {
      assert.ok(body.includes(`- <code>spec.template.spec.domain.${path}</code>: `), `reason for ${path}`);
    }
    assert.ok(body.includes('machine type needs a new instance'));
    assert.ok(body.includes('held: another change in this edit needs a restart'));
    assert.ok(body.includes(`**RestartRequired** (set), with KubeVirt's message: "${NON_LIVE}"`));
    assert.ok(body.includes('Restart reasons (3):'));
    assert.ok(body.includes('- <code>vms/bad.yaml:7</code>: VirtualMachine shop/bad: spec.runStrategy must be one of "Always", "Halted"'));
    // The VM in sync gets no section; the others do, restarts first.
    assert.ok(!body.includes('shop/e ·'));
    const order = ['shop/c', 'shop/f', 'shop/a', 'shop/b', 'shop/d'].map((k) => body.indexOf(`#### ${k} ·`));
    assert.ok(order.every((i) => i > 0), String(order));
    assert.deepEqual([...order].sort((x, y) => x - y), order);
  });

  it('tables have one row per change, five cells each, live and staged with restart yes/no', function () {
    const body = renderPlanComment({ plan: samplePlan() });
    const rows = body.split('\n').filter((l) => l.startsWith('| <code>spec.'));
    assert.equal(rows.length, 5);
    for (const r of rows) assert.equal(cells(r).length, 5, r);
    const cores = rows.find((r) => r.includes('cpu.cores')) as string;
    assert.deepEqual(cells(cores).map((c) => c.trim()), ['<code>spec.template.spec.domain.cpu.cores</code>', '<code>1</code> → <code>2</code>', 'staged', 'yes', NON_LIVE]);
    const sockets = rows.find((r) => r.includes('cpu.sockets') && r.includes('live')) as string;
    assert.deepEqual(cells(sockets).slice(2).map((c) => c.trim()), ['live', 'no', 'CPU sockets hot-plugged']);
  });

  it('escapes pipes, backticks, HTML, mentions and issue links in values', function () {
    const nasty = 'a|b `rm -rf` <script>alert(1)</script> @octocat #77 **bold** [x](http://e)';
    const plan: VmPlan = {
      commit: SHA,
      vms: [entry('x', { changes: [{ path: 'metadata.annotations["note|`x`"]', from: nasty, to: 'line1\nline2|', rollout: 'live', why: nasty }] })],
      errors: [{ file: 'vms/<evil>.yaml', line: 1, message: nasty }],
    };
    const body = renderPlanComment({ plan });
    const row = body.split('\n').find((l) => l.startsWith('| <code>metadata')) as string;
    assert.equal(cells(row).length, 5, row);
    for (const raw of ['<script>', '`', '@octocat', '#77', '**bold**', '[x]']) assert.ok(!body.slice(PLAN_MARKER.length).includes(raw), `raw ${raw} in body`);
    assert.ok(body.includes('&lt;script&gt;'));
    assert.ok(body.includes('&#96;rm -rf&#96;'));
    assert.ok(body.includes('a&#124;b'));
    assert.ok(body.includes('&#64;octocat'));
    assert.ok(body.includes('line1 line2&#124;'), 'newlines become spaces');
    assert.ok(body.includes('vms/&lt;evil&gt;.yaml:1'));
    assert.equal(escapeMarkdown('plain text, 2Gi.'), 'plain text, 2Gi.');
  });

  it(`folds sections in <details> beyond ${FOLD_AFTER} VMs, and not before`, function () {
    const few: VmPlan = { commit: SHA, vms: Array.from({ length: FOLD_AFTER }, (_, i) => live(`vm${i}`)), errors: [] };
    assert.ok(!renderPlanComment({ plan: few }).includes('<details>'));
    const many: VmPlan = { commit: SHA, vms: Array.from({ length: FOLD_AFTER + 1 }, (_, i) => live(`vm${i}`)), errors: [] };
    const body = renderPlanComment({ plan: many });
    assert.equal(body.split('<details><summary>').length - 1, FOLD_AFTER + 1);
    assert.equal(body.split('</details>').length - 1, FOLD_AFTER + 1);
    assert.ok(body.includes('<details><summary><b>shop/vm0 · update · 1 live</b></summary>\n\n'));
  });

  it('stays under 65,536 characters with 2,000 VMs, cutting between whole sections', function () {
    const vms = Array.from({ length: 2000 }, (_, i) => (i % 2 === 0 ? staged(`vm${String(i).padStart(4, '0')}`) : live(`vm${String(i).padStart(4, '0')}`)));
    const plan: VmPlan = { commit: SHA, vms, errors: [] };
    const body = renderPlanComment({ plan });
    assert.ok(body.length <= COMMENT_LIMIT, String(body.length));
    assert.ok(body.length > COMMENT_LIMIT - 5000, 'uses the room it has');
    assert.ok(body.startsWith(PLAN_MARKER));
    assert.ok(body.includes("for <code>abc1234</code>: 1000 live-updated · 1000 staged until restart · 0 created · 0 deleted\n"));
    const shown = body.split('<details><summary>').length - 1;
    assert.equal(body.split('</details>').length - 1, shown, 'every folded section is closed');
    const note = /_… (\d+) more VMs not shown: the comment is limited to 65536 characters\._/.exec(body);
    assert.ok(note, 'a line counts the VMs left out');
    assert.equal(Number(note[1]) + shown, 2000);
    // The note comes after the last whole section, and the footer is intact.
    assert.ok(body.lastIndexOf('</details>') < body.indexOf(note[0]));
    assert.ok(body.trimEnd().endsWith('</sub>'));
  });

  it('keeps a huge error list and a VM with thousands of changes under the limit', function () {
    const errors = Array.from({ length: 5000 }, (_, i) => ({ file: `vms/f${i}.yaml`, line: i + 1, message: '|'.repeat(300) }));
    const changes = Array.from({ length: 5000 }, (_, i) => ({ path: `spec.template.spec.x${i}`, from: '<'.repeat(200), to: '`'.repeat(200), rollout: 'staged' as const, why: '_'.repeat(100) }));
    const plan: VmPlan = { commit: SHA, vms: [entry('big', { changes, reasons: changes.slice(0, 3).map((c) => ({ path: c.path, message: 'why' })) })], errors };
    const body = renderPlanComment({ plan });
    assert.ok(body.length <= COMMENT_LIMIT, String(body.length));
    assert.match(body, /- … \d+ more errors not shown/);
    assert.match(body, /\| … \| \d+ more changes not shown \| \| \| \|/);
    assert.ok(body.includes('Restart reasons (3):'), 'the section is shown, with its reasons');
    assert.ok(body.includes('- <code>spec.template.spec.x2</code>: why'));
  });

  it('honours a smaller limit', function () {
    const plan: VmPlan = { commit: SHA, vms: Array.from({ length: 50 }, (_, i) => staged(`vm${i}`)), errors: [] };
    const body = renderPlanComment({ plan, maxLength: 6000 });
    assert.ok(body.length <= 6000, String(body.length));
    assert.match(body, /more VMs not shown/);
  });

  it('status descriptions fit 140 characters', function () {
    const s = countPlan(samplePlan());
    assert.equal(statusDescription(s), '1 error · 2 live · 1 staged until restart · 1 created · 1 deleted');
    assert.equal(statusDescription({ ...s, errors: 0, deleted: 0 }), '2 live · 1 staged until restart · 1 created');
    // A VM left alone whose earlier change still awaits a restart is in sync for the pull request.
    assert.equal(statusDescription({ ...emptySummary(), vms: 3, inSync: 2, awaitingRestart: 1, pendingRestart: 1 }), 'no changes · 3 in sync');
    const huge = { ...emptySummary(), vms: 1e12, liveUpdated: 1e15, staged: 1e15, restarting: 1e15, created: 1e15, deleted: 1e15, errors: 1e15 };
    assert.ok(statusDescription(huge).length <= 140);
  });

  it('the outcome variant says per VM: live-applied, staged, failed with its error, created, deleted', function () {
    const reviewed = samplePlan();
    const sync: VmPlan = {
      commit: 'f00dfeedf00dfeedf00dfeedf00dfeedf00dfeed',
      vms: [
        { ...live('a') },
        { ...staged('c'), condition: 'set' },
        entry('d', { action: 'create' }),
        entry('f', { action: 'delete' }),
        // b's apply failed: the loop reports it unchanged, and the error by file.
        entry('b', { action: 'none' }),
      ],
      errors: [{ file: 'vms/b.yaml', line: 1, message: 'apply failed: admission webhook denied: spec.x is invalid' }],
    };
    const sources = { 'shop/a': { file: 'vms/a.yaml', line: 1 }, 'shop/b': { file: 'vms/b.yaml', line: 1 }, 'shop/c': { file: 'vms/c.yaml', line: 1 } };
    const body = renderPlanComment({ plan: reviewed, sources, prNumber: 12, outcome: { commit: sync.commit as string, plan: sync } });
    assert.ok(body.startsWith(PLAN_MARKER));
    assert.ok(body.includes('**vmroll sync** of <code>f00dfee</code> (contains <code>abc1234</code>): 1 live-applied · 1 staged awaiting restart · 1 failed · 1 created · 1 deleted'));
    const row = (vm: string): string[] => cells(body.split('\n').find((l) => l.startsWith(`| <code>shop/${vm}</code>`)) ?? '').map((c) => c.trim());
    assert.deepEqual(row('a'), ['<code>shop/a</code>', 'live-applied', '']);
    assert.deepEqual(row('b'), ['<code>shop/b</code>', 'failed', 'apply failed: admission webhook denied: spec.x is invalid']);
    assert.deepEqual(row('c'), ['<code>shop/c</code>', 'staged, awaiting restart', `RestartRequired: ${NON_LIVE}`]);
    assert.deepEqual(row('d').slice(1, 2), ['created']);
    assert.deepEqual(row('f').slice(1, 2), ['deleted']);
    assert.ok(body.includes('<details><summary>The plan as reviewed before merge</summary>'));
    assert.equal(body.split('<details>').length, body.split('</details>').length);
  });

  it('renders a terminal table with every reason', function () {
    const text = renderPlanTable(samplePlan(), { power: { 'shop/c': 'stop' } });
    assert.match(text, /^vmroll plan for abc1234: 2 live-updated · 1 staged until restart · 1 stopped or started by runStrategy · 1 created · 1 deleted · 1 in sync · 1 error/);
    assert.match(text, /error vms\/bad\.yaml:7: spec\.runStrategy: /);
    assert.match(text, /VM shop\/c: update · 3 staged · runStrategy stops it · restart required/);
    assert.match(text, /restart reasons:\n {4}spec\.template\.spec\.domain\.cpu\.cores: a non-live-updatable/);
    assert.match(text, /machine type needs a new instance/);
    assert.ok(!text.includes('shop/e'));
  });
});

describe('restart merge gate description', function () {
  it('names the first reason and counts the rest, within the 140 characters of a status', function () {
    assert.equal(gateDescription(['shop/db is protected (vmroll.dev/restart: never) but the change requests a restart of it']), 'restart merge gate: shop/db is protected (vmroll.dev/restart: never) but the change requests a restart of it');
    const long = `${'x'.repeat(200)} is protected`;
    const text = gateDescription([long, 'second', 'third']);
    assert.ok(text.length <= 140, `${text.length}`);
    assert.ok(text.startsWith('restart merge gate: xxx'));
    assert.ok(text.endsWith('… (+2 more)'), text);
  });
});
