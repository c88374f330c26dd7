// The length files a saved plan names (`replay.inputs.files`): relative ones are read against the
// plan file's own folder, never the working directory, so `simulate --plan` reads the same files
// from anywhere; `plan --out` writes them that way, `plan --json` on stdout absolute.
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import test from 'ava';
import { cli } from './helpers';

const root = fs.mkdtempSync(path.join(os.tmpdir(), 'omnibal-plan-paths-'));
const proj = path.join(root, 'proj');
const elsewhere = path.join(root, 'elsewhere');
for (const d of [path.join(proj, 'data'), path.join(proj, 'plans'), path.join(elsewhere, 'data')]) fs.mkdirSync(d, { recursive: true });
const lengths = (n: number, k: number) => JSON.stringify(Array.from({ length: n }, (_, i) => ({ vit_num: 1 + ((i * k) % 5), token_num: 300 + ((i * 37 * k) % 900) })));
fs.writeFileSync(path.join(proj, 'data', 'l.json'), lengths(3000, 1));
// A decoy at the same relative path from the other folder: reading it would give other figures.
fs.writeFileSync(path.join(elsewhere, 'data', 'l.json'), lengths(5000, 3));

function omnibal(args: string[], cwd: string) {
  return spawnSync(process.execPath, [cli, ...args], { cwd, encoding: 'utf8', timeout: 120_000 });
}

const plan = ['plan', '--model', 'tiny-vlm', '--gpu', 'cpu', '--gpus', '4', '--pp', '2', '--accum', '4', '--simulated-steps', '1'];

/** `simulate --plan FILE --json` from `cwd`: its stdout (exit 0 asserted by the caller). */
const simulate = (file: string, cwd: string, extra: string[] = []) => omnibal(['simulate', '--plan', file, '--json', ...extra], cwd);

test('plan --out names a relative --input relative to its own folder; simulate --plan reads it from any working directory, with the same result', (t) => {
  const made = omnibal([...plan, '--input', 'data/l.json', '--out', 'plans/p.json', '--json'], proj);
  t.is(made.status, 0, made.stderr);
  const saved = JSON.parse(fs.readFileSync(path.join(proj, 'plans', 'p.json'), 'utf8'));
  t.deepEqual(saved.replay.inputs, { files: ['../data/l.json'] });
  // On stdout the plan's file is not known: absolute.
  t.deepEqual(JSON.parse(made.stdout).replay.inputs, { files: [path.join(proj, 'data', 'l.json')] });
  const here = simulate('plans/p.json', proj);
  t.is(here.status, 0, here.stderr);
  const there = simulate(path.join(proj, 'plans', 'p.json'), elsewhere);
  t.is(there.status, 0, there.stderr);
  t.is(there.stdout, here.stdout);
  const fromPlans = simulate('p.json', path.join(proj, 'plans'));
  t.is(fromPlans.stdout, here.stdout, fromPlans.stderr);
});

test("a hand-written plan's relative file is read against the plan's folder, not a same-named file under the working directory", (t) => {
  const made = omnibal([...plan, '--input', 'data/l.json', '--json'], proj);
  t.is(made.status, 0, made.stderr);
  const doc = JSON.parse(made.stdout);
  doc.replay.inputs = { files: ['data/l.json'] };
  const file = path.join(proj, 'hand.json');
  fs.writeFileSync(file, JSON.stringify(doc));
  const here = simulate('hand.json', proj);
  t.is(here.status, 0, here.stderr);
  const there = simulate(file, elsewhere);
  t.is(there.status, 0, there.stderr);
  t.is(there.stdout, here.stdout);
  // The decoy under the other working directory gives other figures: it was not the one read.
  const decoy = simulate(file, elsewhere, ['--input', 'data/l.json']);
  t.is(decoy.status, 0, decoy.stderr);
  t.not(JSON.parse(decoy.stdout).stepMs, JSON.parse(here.stdout).stepMs);
  // An absolute path is used as given.
  doc.replay.inputs = { files: [path.join(proj, 'data', 'l.json')] };
  fs.writeFileSync(path.join(proj, 'plans', 'abs.json'), JSON.stringify(doc));
  t.is(simulate(path.join(proj, 'plans', 'abs.json'), elsewhere).stdout, here.stdout);
});

test("a plan's missing relative file: exit 2, one line naming the resolved path and the plan's entry", (t) => {
  const made = omnibal([...plan, '--input', 'data/l.json', '--json'], proj);
  t.is(made.status, 0, made.stderr);
  const doc = JSON.parse(made.stdout);
  doc.replay.inputs = { files: ['../data/l.json', 'data/missing.json'] };
  const file = path.join(proj, 'plans', 'missing.json');
  fs.writeFileSync(file, JSON.stringify(doc));
  const r = omnibal(['simulate', '--plan', file], elsewhere);
  t.is(r.status, 2, r.stderr);
  t.is(r.stdout, '');
  const lines = r.stderr.trim().split('\n');
  t.is(lines.length, 1, r.stderr);
  t.true(lines[0].includes(`${path.join(proj, 'plans', 'data', 'missing.json')}:`), lines[0]);
  t.true(lines[0].includes('replay.inputs.files[1] "data/missing.json"'), lines[0]);
  t.regex(lines[0], /\[ERR_OMNIBAL_[A-Z_]+\]$/);
  t.false(/\n\s+at /.test(r.stderr));
});

test('plan --out keeps an absolute --input as given, and names one outside its folder with ..', (t) => {
  const abs = path.join(proj, 'data', 'l.json');
  const out = path.join(elsewhere, 'deep', 'p.json');
  fs.mkdirSync(path.dirname(out), { recursive: true });
  const r = omnibal([...plan, '--input', abs, '--input', '../proj/data/l.json', '--out', out], elsewhere);
  t.is(r.status, 0, r.stderr);
  t.deepEqual(JSON.parse(fs.readFileSync(out, 'utf8')).replay.inputs, { files: [abs, '../../proj/data/l.json'] });
  const s = simulate(out, proj);
  t.is(s.status, 0, s.stderr);
});

test('symbolic links: a plan written through a linked folder, and one read through a link to its file, name the same files', (t) => {
  const deep = path.join(proj, 'sub', 'deep');
  fs.mkdirSync(deep, { recursive: true });
  const linkedDir = path.join(proj, 'linked');
  fs.symlinkSync(deep, linkedDir);
  // Written through the linked folder, read by its real path from elsewhere.
  const made = omnibal([...plan, '--input', 'data/l.json', '--out', 'linked/p.json', '--json'], proj);
  t.is(made.status, 0, made.stderr);
  const real = simulate(path.join(deep, 'p.json'), elsewhere);
  t.is(real.status, 0, real.stderr);
  const viaLink = simulate('linked/p.json', proj);
  t.is(viaLink.status, 0, viaLink.stderr);
  t.is(viaLink.stdout, real.stdout);
  // Read through a link to the plan file that lives in another folder.
  const latest = path.join(proj, 'latest.json');
  fs.symlinkSync(path.join(deep, 'p.json'), latest);
  const viaFileLink = simulate('latest.json', proj);
  t.is(viaFileLink.status, 0, viaFileLink.stderr);
  t.is(viaFileLink.stdout, real.stdout);
  // A hand-written plan whose relative file exists only from the link's own folder is read from there.
  const doc = JSON.parse(fs.readFileSync(path.join(deep, 'p.json'), 'utf8'));
  doc.replay.inputs = { files: ['data/l.json'] };
  fs.writeFileSync(path.join(root, 'hand-real.json'), JSON.stringify(doc));
  fs.symlinkSync(path.join(root, 'hand-real.json'), path.join(proj, 'hand-link.json'));
  const handLink = simulate('hand-link.json', proj);
  t.is(handLink.status, 0, handLink.stderr);
  t.is(handLink.stdout, real.stdout);
});

test("a path with .. after a linked folder names what the system opens (the link target's parent), in plan --out and simulate --plan", (t) => {
  // proj/hop -> elsewhere/data, so hop/../data/l.json is elsewhere's data/l.json (the decoy), not proj's.
  fs.symlinkSync(path.join(elsewhere, 'data'), path.join(proj, 'hop'));
  const made = omnibal([...plan, '--input', 'hop/../data/l.json', '--out', 'plans/hop.json', '--json'], proj);
  t.is(made.status, 0, made.stderr);
  const saved = JSON.parse(fs.readFileSync(path.join(proj, 'plans', 'hop.json'), 'utf8'));
  t.deepEqual(saved.replay.inputs, { files: [path.relative(path.join(fs.realpathSync(proj), 'plans'), fs.realpathSync(path.join(elsewhere, 'data', 'l.json')))] });
  t.deepEqual(JSON.parse(made.stdout).replay.inputs, { files: [fs.realpathSync(path.join(elsewhere, 'data', 'l.json'))] });
  const read = simulate('plans/hop.json', proj);
  t.is(read.status, 0, read.stderr);
  const direct = simulate(path.join(proj, 'plans', 'hop.json'), proj, ['--input', path.join(elsewhere, 'data', 'l.json')]);
  t.is(read.stdout, direct.stdout);
  // A hand-written plan naming hop/../data/l.json reads the same file as the system would.
  const doc = JSON.parse(made.stdout);
  doc.replay.inputs = { files: ['hop/../data/l.json'] };
  fs.writeFileSync(path.join(proj, 'hand-hop.json'), JSON.stringify(doc));
  const hand = simulate(path.join(proj, 'hand-hop.json'), root);
  t.is(hand.status, 0, hand.stderr);
  t.is(hand.stdout, read.stdout);
  const proj1 = simulate('hand-hop.json', proj, ['--input', 'data/l.json']);
  t.not(JSON.parse(proj1.stdout).stepMs, JSON.parse(hand.stdout).stepMs, "proj's own data/l.json gives other figures");
});
