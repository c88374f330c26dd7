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
//   node scripts/stage-package.mjs --refuse-publish
//     the root package.json's `prepublishOnly`: `npm publish` from the repository root would ship
//     a package with no platform packages wired (no native binary for anyone), so it stops.
//   node scripts/stage-package.mjs --refuse-pack
//     the root package.json's `prepack`: the same for `npm pack` at the root (its tarball would
//     also ship the `prepare` script without scripts/build.mjs). Staging packs with
//     --ignore-scripts, and the staged package.json has no scripts, so neither stops there.
import { cpSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const out = process.argv[2];
if (out === '--refuse-publish') {
  console.error(
    'omnibal: do not publish the repository root (it wires no platform packages, so users would get no native binary);\n' +
      '  publish npm/* (with their binaries, `napi artifacts`), then: node scripts/stage-package.mjs .stage && npm publish .stage',
  );
  process.exit(1);
}
if (out === '--refuse-pack') {
  console.error(
    'omnibal: do not pack the repository root (its tarball wires no platform packages, so users would get no native binary, and\n' +
      '  it ships a `prepare` script without scripts/build.mjs); stage it instead: node scripts/stage-package.mjs .stage && npm pack .stage',
  );
  process.exit(1);
}
if (!out) {
  console.error('usage: node scripts/stage-package.mjs OUT_DIR');
  process.exit(2);
}

const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8'));
const platforms = readdirSync(join(root, 'npm')).sort();
const platformPkgs = platforms.map((dir) => JSON.parse(readFileSync(join(root, 'npm', dir, 'package.json'), 'utf8')));
// `npm version` runs `napi version` (the `version` script), which writes the root version into
// npm/*; a platform package at another version would never be installed with this one.
const stale = platformPkgs.filter((p) => p.version !== pkg.version);
if (stale.length > 0) {
  console.error(`omnibal: npm/* versions differ from ${pkg.version}: ${stale.map((p) => `${p.name}@${p.version}`).join(', ')}; run npx napi version`);
  process.exit(1);
}
pkg.optionalDependencies = Object.fromEntries(platformPkgs.map((p) => [p.name, pkg.version]));
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
