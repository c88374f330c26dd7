// The README's figures of the default `omnibal plan` are what the command prints now (it is
// deterministic): the ablation table's rows and the run figures.
import test from 'ava';
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import * as path from 'node:path';
import { cli, root } from './helpers';

test('README: the default plan\'s ablation rows, samples/s and tokens/s match `omnibal plan`', (t) => {
  const r = spawnSync(process.execPath, [cli, 'plan'], { encoding: 'utf8', timeout: 300_000 });
  t.is(r.status, 0, r.stderr);
  const readme = readFileSync(path.join(root, 'README.md'), 'utf8').replace(/\s+/g, ' ');
  const rows: [string, string][] = [
    ['baseline (random batches, parameter split, full recompute)', 'baseline: random batches, parameter split, full recompute'],
    ['+ data balance', '+ data balance'],
    ['+ model balance', '+ model balance'],
    ['+ memory balance', '+ memory balance'],
  ];
  for (const [printed, inReadme] of rows) {
    const line = r.stdout.split('\n').find((l) => l.startsWith(`${printed} `));
    t.truthy(line, printed);
    const [, stepS, days, speedup] = line!.slice(printed.length).trim().split(/\s+/);
    t.true(readme.includes(`| ${inReadme} | ${stepS} s | ${days} | ${speedup} |`), `README row for ${printed}: ${stepS} s, ${days} GPU-days, ${speedup}`);
  }
  const figures = /; ([\d.,]+) samples\/s, ([\d,]+) tokens\/s; ([\d.]+) model TFLOP\/s per GPU, MFU ([\d.]+)%/.exec(r.stdout);
  t.truthy(figures, r.stdout);
  t.true(readme.includes(`The default plan predicts ${figures![1]} samples/s, ${figures![2]} tokens/s, ${figures![3]} TFLOP/s per GPU (MFU ${figures![4]}%)`), `README run figures: ${figures![0]}`);
});
