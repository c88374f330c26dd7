// The published shape, installed the way a user installs it: stage the root package
// (scripts/stage-package.mjs wires the platform packages as optionalDependencies), pack it, every
// platform package (the linux-x64-gnu one with the binary built here) and the runtime
// dependencies, serve them all from a registry on 127.0.0.1 started by this test, and
// `npm install omnibal` into fresh projects with an empty npm cache. Nothing comes from the
// network or from a warm cache. Then: npm picked the platform package by name, the native
// backend loads from it, ESM import and CJS require work, a strict TypeScript consumer compiles
// without skipLibCheck, and without the platform package the twins run with one warning.
import test from 'ava';
import { execFile, execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { once } from 'node:events';
import { copyFileSync, cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { promisify } from 'node:util';
import { nativeTest, root } from './helpers';

const platform = 'linux-x64-gnu';
// Needs the linux-x64-gnu binary built here: a glibc x64 Linux machine (not musl).
const onThisPlatform =
  process.platform === 'linux' &&
  process.arch === 'x64' &&
  Boolean((process.report.getReport() as { header: { glibcVersionRuntime?: string } }).header.glibcVersionRuntime);
const packTest = onThisPlatform ? nativeTest.serial : test.skip;
const run = promisify(execFile);

interface PackResult {
  filename: string;
  files: { path: string }[];
}

/** A package as the registry serves it: its manifest and its tarball. */
interface Published {
  manifest: { name: string; version: string } & Record<string, unknown>;
  tarball: Buffer;
}

/**
 * npm's environment for the child: an own empty cache, the loopback registry, no proxy, nothing
 * inherited from the npm that runs this suite (`npm test` exports its config as npm_config_*).
 */
function npmEnv(cache: string, registry: string): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [key, value] of Object.entries(process.env)) {
    if (/^npm_/i.test(key) || /_proxy$/i.test(key) || key === 'OMNIBAL_BACKEND' || key === 'NAPI_RS_NATIVE_LIBRARY_PATH') continue;
    env[key] = value;
  }
  return {
    ...env,
    npm_config_cache: cache,
    npm_config_registry: registry,
    npm_config_userconfig: path.join(cache, 'npmrc'),
    npm_config_loglevel: 'error',
    npm_config_fund: 'false',
    npm_config_audit: 'false',
    npm_config_update_notifier: 'false',
  };
}

// Asynchronous on purpose: the registry answers from this process, so a synchronous child
// would deadlock it.
async function npm(args: string[], cwd: string, env: NodeJS.ProcessEnv): Promise<string> {
  const { stdout } = await run('npm', args, { cwd, env, encoding: 'utf8', maxBuffer: 64 << 20 });
  return stdout;
}

function pack(dir: string, into: string): PackResult {
  // --ignore-scripts: the tree is already built; packing must not rebuild it.
  const out = execFileSync('npm', ['pack', '--json', '--ignore-scripts', '--pack-destination', into], {
    cwd: dir,
    encoding: 'utf8',
    env: { ...process.env, npm_config_loglevel: 'error' },
  });
  return (JSON.parse(out) as PackResult[])[0];
}

function publish(dir: string, into: string): Published & { files: string[] } {
  const result = pack(dir, into);
  return {
    manifest: JSON.parse(readFileSync(path.join(dir, 'package.json'), 'utf8')),
    tarball: readFileSync(path.join(into, result.filename)),
    files: result.files.map((f) => f.path),
  };
}

/** The runtime dependency closure of `manifest`, packed from this checkout's node_modules. */
function publishDependencies(manifest: Published['manifest'], into: string): Published[] {
  const seen = new Map<string, Published>();
  const visit = (deps: Record<string, string> | undefined) => {
    for (const name of Object.keys(deps ?? {})) {
      if (seen.has(name)) continue;
      const dir = path.join(root, 'node_modules', name);
      const copy = path.join(into, 'deps', name);
      cpSync(dir, copy, { recursive: true });
      const published = publish(copy, into);
      seen.set(name, published);
      visit(published.manifest.dependencies as Record<string, string> | undefined);
    }
  };
  visit(manifest.dependencies as Record<string, string> | undefined);
  return [...seen.values()];
}

/** A registry on 127.0.0.1 serving packuments and tarballs; records every request path. */
async function startRegistry(packages: Published[]) {
  const requests: string[] = [];
  const server = createServer((req, res) => {
    const url = decodeURIComponent((req.url ?? '/').split('?')[0]);
    requests.push(url);
    const tarball = /^\/(.+)\/-\/[^/]+-(\d[^/]*)\.tgz$/.exec(url);
    if (tarball) {
      const found = packages.find((p) => p.manifest.name === tarball[1] && p.manifest.version === tarball[2]);
      if (found) {
        res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': found.tarball.length });
        res.end(found.tarball);
        return;
      }
    } else {
      const name = url.slice(1);
      const versions = packages.filter((p) => p.manifest.name === name);
      if (versions.length > 0) {
        const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
        const packument = {
          name,
          'dist-tags': { latest: versions[versions.length - 1].manifest.version },
          versions: Object.fromEntries(
            versions.map(({ manifest, tarball }) => [
              manifest.version,
              {
                ...manifest,
                _id: `${name}@${manifest.version}`,
                dist: {
                  tarball: `${base}/${name}/-/${name.split('/').pop()}-${manifest.version}.tgz`,
                  integrity: `sha512-${createHash('sha512').update(tarball).digest('base64')}`,
                  shasum: createHash('sha1').update(tarball).digest('hex'),
                },
              },
            ]),
          ),
        };
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(JSON.stringify(packument));
        return;
      }
    }
    res.writeHead(404, { 'content-type': 'application/json' });
    res.end('{"error":"not found"}');
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/`;
  return { url, requests, close: () => new Promise<void>((resolve) => server.close(() => resolve())) };
}

function consumer(dir: string): string {
  mkdirSync(dir, { recursive: true });
  writeFileSync(path.join(dir, 'package.json'), JSON.stringify({ name: 'consumer', version: '1.0.0', private: true }));
  return dir;
}

/** Runs `node args` in `cwd` without any backend override; resolves with stdout and stderr. */
async function node(args: string[], cwd: string) {
  const env = { ...process.env };
  delete env.OMNIBAL_BACKEND;
  delete env.NAPI_RS_NATIVE_LIBRARY_PATH;
  return run(process.execPath, args, { cwd, env, encoding: 'utf8' });
}

packTest('npm install omnibal from a loopback registry with an empty cache picks the platform package', async (t) => {
  const work = mkdtempSync(path.join(tmpdir(), 'omnibal-pack-'));
  t.teardown(() => rmSync(work, { recursive: true, force: true }));

  const staged = path.join(work, 'omnibal');
  execFileSync(process.execPath, [path.join(root, 'scripts', 'stage-package.mjs'), staged], { stdio: 'ignore' });
  const rootPkg = publish(staged, work);
  const optional = rootPkg.manifest.optionalDependencies as Record<string, string>;
  t.is(optional[`omnibal-${platform}`], rootPkg.manifest.version, 'platform packages wired');
  t.is(Object.keys(optional).length, readdirSync(path.join(root, 'npm')).length);
  t.log(`root package: ${rootPkg.files.length} files`);
  for (const file of rootPkg.files) {
    t.false(/(^|\/)__test__\//.test(file), `no tests in the package: ${file}`);
    t.false(/^(crate|scripts|npm|vectors|bench|node_modules)\//.test(file), `no crate sources or build scripts: ${file}`);
    t.false(/\.(rs|node|tgz|map|tsbuildinfo)$/.test(file), `no build junk: ${file}`);
    t.false(file.endsWith('.ts') && !file.endsWith('.d.ts'), `no TypeScript sources: ${file}`);
  }
  for (const needed of ['package.json', 'README.md', 'LICENSE', 'bindings.js', 'dist/index.js', 'dist/index.d.ts', 'dist/bindings.d.ts', 'dist/src/cli/main.js']) {
    t.true(rootPkg.files.includes(needed), `ships ${needed}`);
  }

  // Every platform package, as the release publishes them; only linux-x64-gnu has a binary here.
  const platforms: Published[] = [];
  for (const dir of readdirSync(path.join(root, 'npm')).sort()) {
    const stage = path.join(work, 'platforms', dir);
    cpSync(path.join(root, 'npm', dir), stage, { recursive: true });
    if (dir === platform) {
      const binary = `omnibal.${platform}.node`;
      t.true(existsSync(path.join(root, binary)), `built ${binary}`);
      copyFileSync(path.join(root, binary), path.join(stage, binary));
      const published = publish(stage, work);
      t.deepEqual(published.files.sort(), ['README.md', binary, 'package.json']);
      platforms.push(published);
    } else {
      platforms.push(publish(stage, work));
    }
  }
  const deps = publishDependencies(rootPkg.manifest, work);
  t.true(deps.some((d) => d.manifest.name === 'commander'), 'commander is served');

  const registry = await startRegistry([rootPkg, ...platforms, ...deps]);
  t.teardown(registry.close);
  const env = npmEnv(path.join(work, 'cache'), registry.url);

  const project = consumer(path.join(work, 'project'));
  await npm(['install', `omnibal@${rootPkg.manifest.version}`], project, env);

  // npm chose the platform package by its os/cpu/libc fields and fetched no other binary package.
  const installed = readdirSync(path.join(project, 'node_modules')).filter((n) => n.startsWith('omnibal-'));
  t.deepEqual(installed, [`omnibal-${platform}`]);
  const fetchedPlatforms = registry.requests.filter((r) => /^\/omnibal-[^/]+\/-\//.test(r));
  t.deepEqual(fetchedPlatforms, [`/omnibal-${platform}/-/omnibal-${platform}-${rootPkg.manifest.version}.tgz`]);

  // CJS require and ESM import both load the native backend from the platform package.
  const probe = 'JSON.stringify({ info: o.backend(), p: Array.from(o.permutation(5, 1)) })';
  writeFileSync(path.join(project, 'cjs.cjs'), `const o = require('omnibal');\nprocess.stdout.write(${probe});\n`);
  writeFileSync(path.join(project, 'esm.mjs'), `import * as o from 'omnibal';\nimport { permutation } from 'omnibal';\nif (typeof permutation !== 'function') throw new Error('no named export');\nprocess.stdout.write(${probe});\n`);
  for (const file of ['cjs.cjs', 'esm.mjs']) {
    const { stdout, stderr } = await node([file], project);
    const { info, p } = JSON.parse(stdout);
    t.is(info.kind, 'native', file);
    t.true(info.path.includes(path.join('node_modules', `omnibal-${platform}`)), info.path);
    t.is(p.length, 5);
    t.is(stderr, '', `${file} prints no warning`);
  }

  const doctor = JSON.parse(
    (await run(path.join(project, 'node_modules', '.bin', 'omnibal'), ['doctor', '--json'], { cwd: project, encoding: 'utf8' })).stdout,
  );
  t.is(doctor.backend, 'native');

  // A strict TypeScript consumer, CJS and ESM, without skipLibCheck: the shipped declarations
  // resolve everything they import.
  writeFileSync(
    path.join(project, 'consumer.ts'),
    [
      "import { backend, permutation, planBatches, type BackendInfo } from 'omnibal';",
      'const info: BackendInfo = backend();',
      'const order: Uint32Array = permutation(5, 1);',
      'export const used = [info.kind, order.length, typeof planBatches];',
      '',
    ].join('\n'),
  );
  writeFileSync(
    path.join(project, 'consumer.mts'),
    ["import * as omnibal from 'omnibal';", "export const kind: 'native' | 'js' = omnibal.backend().kind;", ''].join('\n'),
  );
  writeFileSync(
    path.join(project, 'tsconfig.json'),
    JSON.stringify({
      compilerOptions: {
        strict: true,
        module: 'node16',
        moduleResolution: 'node16',
        target: 'ES2022',
        noEmit: true,
        skipLibCheck: false,
        types: ['node'],
        typeRoots: [path.join(root, 'node_modules', '@types')],
      },
      files: ['consumer.ts', 'consumer.mts'],
    }),
  );
  const tsc = await run(process.execPath, [path.join(root, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', project], { cwd: project, encoding: 'utf8' }).then(
    () => '',
    (error: { stdout?: string }) => error.stdout ?? String(error),
  );
  t.is(tsc, '', 'tsc --strict compiles the consumer');

  // Without the platform package (an unsupported platform, or --omit=optional) the twins serve
  // the same API with exactly one warning line.
  const bare = consumer(path.join(work, 'bare'));
  await npm(['install', '--omit=optional', `omnibal@${rootPkg.manifest.version}`], bare, env);
  t.false(existsSync(path.join(bare, 'node_modules', `omnibal-${platform}`)));
  writeFileSync(path.join(bare, 'cjs.cjs'), `const o = require('omnibal');\nprocess.stdout.write(${probe});\n`);
  const twins = await node(['cjs.cjs'], bare);
  const { info, p } = JSON.parse(twins.stdout);
  t.is(info.kind, 'js');
  t.deepEqual(p, JSON.parse((await node(['cjs.cjs'], project)).stdout).p, 'the twins give the native permutation');
  const warnings = twins.stderr.trim().split('\n');
  t.is(warnings.length, 1, twins.stderr);
  t.regex(warnings[0], /omnibal/);
});
