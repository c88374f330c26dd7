#!/usr/bin/env node
// Stages the root package for packing or publishing: copies what `npm pack` would ship into a
// folder and wires one optionalDependency per platform package (npm/<platform>/package.json) at
// the package version, as `napi prepublish` does at release time.
//
// The repository's own package.json lists no optionalDependencies: the platform packages are
// not on the registry while developing, and npm cannot lock what it cannot resolve, so `npm ci`
// would refuse the lock file.
//
//   node scripts/stage-package.mjs OUT_DIR     then: npm pack OUT_DIR  (or npm publish OUT_DIR)
import { cpSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const out = process.argv[2];
if (!out) {
  console.error('usage: node scripts/stage-package.mjs OUT_DIR');
  process.exit(2);
}

const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8'));
const platforms = readdirSync(join(root, 'npm')).sort();
pkg.optionalDependencies = Object.fromEntries(
  platforms.map((dir) => [JSON.parse(readFileSync(join(root, 'npm', dir, 'package.json'), 'utf8')).name, pkg.version]),
);
delete pkg.scripts;
delete pkg.devDependencies;
delete pkg.ava;

// The exact file list npm would pack from the repository, by npm's own rules.
const dry = spawnSync('npm', ['pack', '--dry-run', '--json', '--ignore-scripts'], { cwd: root, encoding: 'utf8' });
if (dry.status !== 0) {
  console.error(dry.stderr);
  process.exit(1);
}
mkdirSync(out, { recursive: true });
for (const { path } of JSON.parse(dry.stdout)[0].files) {
  if (path === 'package.json') continue;
  mkdirSync(dirname(join(out, path)), { recursive: true });
  cpSync(join(root, path), join(out, path));
}
writeFileSync(join(out, 'package.json'), `${JSON.stringify(pkg, null, 2)}\n`);
console.error(`staged omnibal@${pkg.version} in ${out} with ${platforms.length} platform packages as optionalDependencies`);
