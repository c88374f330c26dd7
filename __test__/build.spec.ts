// The install-time build without a Rust toolchain: it succeeds and says so in one line. The
// built binary's glibc floor.
import test from 'ava';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { root } from './helpers';

// A PATH holding only `node` (a symlink): POSIX only.
(process.platform === 'win32' ? test.skip : test)('without cargo the build succeeds with one clear line', (t) => {
  const bin = mkdtempSync(path.join(tmpdir(), 'omnibal-nocargo-'));
  t.teardown(() => rmSync(bin, { recursive: true, force: true }));
  symlinkSync(process.execPath, path.join(bin, 'node'));
  const r = spawnSync(process.execPath, [path.join(root, 'scripts', 'build.mjs'), '--native-only'], {
    cwd: root,
    env: { PATH: bin, HOME: process.env.HOME },
    encoding: 'utf8',
  });
  t.is(r.status, 0, r.stderr);
  t.is(r.stdout, '');
  const lines = r.stderr.trim().split('\n');
  t.is(lines.length, 1);
  t.regex(lines[0], /^omnibal: no Rust toolchain \(cargo\) found, skipped the native build; the package runs on its TypeScript twins$/);
});

/** The `GLIBC_x.y[.z]` symbol versions an ELF64 little-endian shared object needs (its .gnu.version_r). */
function glibcVersionsNeeded(file: string): string[] {
  const elf = readFileSync(file);
  if (elf.readUInt32BE(0) !== 0x7f454c46 || elf[4] !== 2 || elf[5] !== 1) throw new Error(`${file}: not an ELF64 LE file`);
  const shoff = Number(elf.readBigUInt64LE(0x28));
  const shentsize = elf.readUInt16LE(0x3a);
  const shnum = elf.readUInt16LE(0x3c);
  const section = (i: number) => {
    const at = shoff + i * shentsize;
    return {
      type: elf.readUInt32LE(at + 4),
      offset: Number(elf.readBigUInt64LE(at + 0x18)),
      link: elf.readUInt32LE(at + 0x28),
      info: elf.readUInt32LE(at + 0x2c),
    };
  };
  const SHT_GNU_VERNEED = 0x6ffffffe;
  const names = new Set<string>();
  for (let i = 0; i < shnum; i++) {
    const verneed = section(i);
    if (verneed.type !== SHT_GNU_VERNEED) continue;
    const strtab = section(verneed.link).offset;
    const str = (at: number) => elf.toString('latin1', strtab + at, elf.indexOf(0, strtab + at));
    let entry = verneed.offset;
    for (let n = 0; n < verneed.info; n++) {
      const count = elf.readUInt16LE(entry + 2);
      let aux = entry + elf.readUInt32LE(entry + 8);
      for (let k = 0; k < count; k++) {
        const name = str(elf.readUInt32LE(aux + 8));
        if (name.startsWith('GLIBC_')) names.add(name);
        aux += elf.readUInt32LE(aux + 12);
      }
      entry += elf.readUInt32LE(entry + 12);
    }
  }
  return [...names];
}

const byVersion = (a: string, b: string) => {
  const x = a.replace('GLIBC_', '').split('.').map(Number);
  const y = b.replace('GLIBC_', '').split('.').map(Number);
  for (let i = 0; i < Math.max(x.length, y.length); i++) if ((x[i] ?? 0) !== (y[i] ?? 0)) return (x[i] ?? 0) - (y[i] ?? 0);
  return 0;
};

// The README's glibc floor: scripts/build.mjs links the linux-x64-gnu binary against the glibc
// 2.17 sysroot of the napi-rs cross toolchain. OMNIBAL_HOST_GLIBC=1 builds against this
// machine's glibc instead; then the floor is this machine's.
const binary = path.join(root, 'omnibal.linux-x64-gnu.node');
const glibcHost = process.platform === 'linux' && process.arch === 'x64' && existsSync(binary);
(glibcHost ? test : test.skip)('the linux-x64-gnu binary needs glibc 2.17 at most', (t) => {
  const needed = glibcVersionsNeeded(binary).sort(byVersion);
  t.true(needed.length > 0, 'links against glibc');
  const floor = needed[needed.length - 1];
  t.log(`highest symbol version: ${floor}`);
  const allowed =
    process.env.OMNIBAL_HOST_GLIBC === '1'
      ? `GLIBC_${(process.report.getReport() as { header: { glibcVersionRuntime: string } }).header.glibcVersionRuntime}`
      : 'GLIBC_2.17';
  t.true(byVersion(floor, allowed) <= 0, `${floor} > ${allowed}`);
});

// `npm publish` from the repository root would ship a package that wires no platform package.
test('prepublishOnly refuses a publish from the repository root', (t) => {
  const pkg = JSON.parse(readFileSync(path.join(root, 'package.json'), 'utf8'));
  t.is(pkg.scripts.prepublishOnly, 'node scripts/stage-package.mjs --refuse-publish');
  const r = spawnSync(process.execPath, [path.join(root, 'scripts', 'stage-package.mjs'), '--refuse-publish'], { cwd: root, encoding: 'utf8' });
  t.is(r.status, 1);
  t.regex(r.stderr, /^omnibal: do not publish the repository root/);
});

// `npm pack` at the root would make a tarball with no platform package wired and a `prepare`
// script whose build script it does not ship; the staged folder is the one to pack.
test('prepack refuses `npm pack` at the repository root; the staged folder packs, every platform package wired', (t) => {
  const pkg = JSON.parse(readFileSync(path.join(root, 'package.json'), 'utf8'));
  t.is(pkg.scripts.prepack, 'node scripts/stage-package.mjs --refuse-pack');
  const npm = process.platform === 'win32' ? 'npm.cmd' : 'npm';
  const atRoot = spawnSync(npm, ['pack', '--dry-run', '--json'], { cwd: root, encoding: 'utf8', shell: process.platform === 'win32' });
  t.not(atRoot.status, 0, atRoot.stdout);
  t.regex(atRoot.stderr, /omnibal: do not pack the repository root .*\n.*node scripts\/stage-package\.mjs \.stage && npm pack \.stage/);
  const out = mkdtempSync(path.join(tmpdir(), 'omnibal-stage-'));
  t.teardown(() => rmSync(out, { recursive: true, force: true }));
  const staged = spawnSync(process.execPath, [path.join(root, 'scripts', 'stage-package.mjs'), out], { cwd: root, encoding: 'utf8' });
  t.is(staged.status, 0, staged.stderr);
  const stagedPkg = JSON.parse(readFileSync(path.join(out, 'package.json'), 'utf8'));
  t.is(stagedPkg.scripts, undefined);
  const platforms = readdirSync(path.join(root, 'npm')).map((d) => JSON.parse(readFileSync(path.join(root, 'npm', d, 'package.json'), 'utf8')).name as string);
  t.deepEqual(Object.keys(stagedPkg.optionalDependencies).sort(), platforms.sort());
  const packed = spawnSync(npm, ['pack', '--dry-run', '--json', out], { cwd: tmpdir(), encoding: 'utf8', shell: process.platform === 'win32' });
  t.is(packed.status, 0, packed.stderr);
  const files = (JSON.parse(packed.stdout) as { files: { path: string }[] }[])[0].files.map((f) => f.path);
  t.true(files.includes('dist/index.js') && files.includes('bindings.js'));
  t.false(files.some((f) => f.startsWith('scripts/')));
});
