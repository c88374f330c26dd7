// The published shape: stage the root package (scripts/stage-package.mjs wires the platform
// packages as optionalDependencies), pack it and the linux-x64-gnu platform package, install
// both tarballs offline into a fresh project, and load omnibal from there.
import test from 'ava';
import { execFileSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { nativeTest, root } from './helpers';

const platform = 'linux-x64-gnu';
const onThisPlatform = process.platform === 'linux' && process.arch === 'x64';
const packTest = onThisPlatform ? nativeTest.serial : test.skip;

interface PackResult {
  filename: string;
  files: { path: string }[];
}

function npm(args: string[], cwd: string): string {
  return execFileSync('npm', args, {
    cwd,
    encoding: 'utf8',
    env: { ...process.env, npm_config_loglevel: 'error', npm_config_fund: 'false', npm_config_audit: 'false' },
  });
}

function pack(dir: string, into: string): PackResult {
  // --ignore-scripts: the tree is already built; packing must not rebuild it.
  const [result] = JSON.parse(npm(['pack', '--json', '--ignore-scripts', '--pack-destination', into], dir)) as PackResult[];
  return result;
}

packTest('packed tarballs install offline and load the native backend', (t) => {
  const work = mkdtempSync(path.join(tmpdir(), 'omnibal-pack-'));
  t.teardown(() => rmSync(work, { recursive: true, force: true }));

  const staged = path.join(work, 'omnibal');
  execFileSync(process.execPath, [path.join(root, 'scripts', 'stage-package.mjs'), staged], { stdio: 'ignore' });
  const stagedPkg = JSON.parse(readFileSync(path.join(staged, 'package.json'), 'utf8'));
  t.is(stagedPkg.optionalDependencies[`omnibal-${platform}`], stagedPkg.version, 'platform packages wired');
  t.is(Object.keys(stagedPkg.optionalDependencies).length, 7);
  const rootPack = pack(staged, work);
  const rootFiles = rootPack.files.map((f) => f.path);
  t.log(`root package: ${rootFiles.length} files`);
  for (const file of rootFiles) {
    t.false(/(^|\/)__test__\//.test(file), `no tests in the package: ${file}`);
    t.false(/^(crate|scripts|npm|vectors|bench|node_modules)\//.test(file), `no crate sources or build scripts: ${file}`);
    t.false(/\.(rs|node|tgz|map|tsbuildinfo)$/.test(file), `no build junk: ${file}`);
    t.false(file.endsWith('.ts') && !file.endsWith('.d.ts'), `no TypeScript sources: ${file}`);
  }
  for (const needed of ['package.json', 'README.md', 'bindings.js', 'dist/index.js', 'dist/index.d.ts', 'dist/src/cli/main.js']) {
    t.true(rootFiles.includes(needed), `ships ${needed}`);
  }

  const stage = path.join(work, platform);
  execFileSync('cp', ['-r', path.join(root, 'npm', platform), stage]);
  const binary = `omnibal.${platform}.node`;
  t.true(existsSync(path.join(root, binary)), `built ${binary}`);
  copyFileSync(path.join(root, binary), path.join(stage, binary));
  const platformPack = pack(stage, work);
  t.deepEqual(platformPack.files.map((f) => f.path).sort(), ['README.md', binary, 'package.json']);

  const project = path.join(work, 'project');
  execFileSync('mkdir', ['-p', project]);
  writeFileSync(path.join(project, 'package.json'), JSON.stringify({ name: 'consumer', version: '1.0.0', private: true }));
  npm(['install', '--offline', '--no-package-lock', path.join(work, rootPack.filename), path.join(work, platformPack.filename)], project);

  const loaded = execFileSync(
    process.execPath,
    ['-e', 'const o = require("omnibal"); process.stdout.write(JSON.stringify({ info: o.backend(), p: Array.from(o.permutation(5, 1)) }))'],
    { cwd: project, encoding: 'utf8', env: { ...process.env, OMNIBAL_BACKEND: undefined } },
  );
  const { info, p } = JSON.parse(loaded);
  t.is(info.kind, 'native');
  t.true(info.path.includes(path.join('node_modules', `omnibal-${platform}`)), info.path);
  t.is(p.length, 5);

  const doctor = JSON.parse(
    execFileSync(path.join(project, 'node_modules', '.bin', 'omnibal'), ['doctor', '--json'], {
      cwd: project,
      encoding: 'utf8',
      env: { ...process.env, OMNIBAL_BACKEND: undefined },
    }),
  );
  t.is(doctor.backend, 'native');
});
