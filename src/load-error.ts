/**
 * Why the native addon did not load, in one line that leads with the cause on this platform and
 * the one fix that applies (the generated loader's own message blames npm's optional-dependency
 * bug whatever happened, and nests its tries last-first with the WebAssembly ones outermost).
 *
 * @module
 */
import { existsSync } from 'node:fs';
import * as path from 'node:path';

/** What {@link describeLoadError} needs to know about the install. */
export interface LoadContext {
  /** The package version (the platform package must match it). */
  version: string;
  /** The package root (`.../node_modules/omnibal` when installed). */
  packageRoot: string;
  /** `NAPI_RS_NATIVE_LIBRARY_PATH`, when set (the loader then tries that file only). */
  overridePath?: string;
}

const firstLine = (message: string) => message.split('\n')[0].trim();

/**
 * The loader's tries in the order it made them: the generated loader chains them as `cause`s with
 * the last try outermost. An error without a chain is one try.
 */
export function loadAttempts(error: unknown): string[] {
  const tries: string[] = [];
  let cause = error instanceof Error ? error.cause : undefined;
  while (cause instanceof Error && tries.length < 64) {
    tries.push(firstLine(cause.message));
    cause = cause.cause;
  }
  if (tries.length === 0) return [firstLine(error instanceof Error ? error.message : String(error))];
  return tries.reverse();
}

const notFound = (message: string) => /^Cannot find module '([^']+)'/.exec(message)?.[1];
const isWasm = (message: string) => /wasi|wasm/i.test(message);
const isPackageName = (specifier: string) => !specifier.startsWith('.') && !path.isAbsolute(specifier);

/** The project's lock file beside the `node_modules` omnibal is installed in, if any. */
function projectLockFile(packageRoot: string): string | undefined {
  const at = packageRoot.indexOf(`${path.sep}node_modules${path.sep}`);
  if (at < 0) return undefined;
  const project = packageRoot.slice(0, at);
  return ['package-lock.json', 'npm-shrinkwrap.json'].map((f) => path.join(project, f)).find((f) => existsSync(f));
}

/** The fix for a binary that was found but did not load (`cause` is the loader's message). */
function fixForBrokenFile(cause: string, platformPackage: string | undefined, ctx: LoadContext): string {
  const reinstall = platformPackage ? `reinstall the platform package: npm install ${platformPackage}@${ctx.version}` : 'reinstall omnibal';
  if (/^Unsupported (OS|architecture)/.test(cause)) return 'no prebuilt addon exists for this platform';
  if (/version mismatch/.test(cause)) return reinstall;
  if (/GLIBC(XX)?_[\d.]+' not found/.test(cause)) return "this system's C library is older than the prebuilt addon needs";
  if (ctx.overridePath && cause.includes(ctx.overridePath)) return 'NAPI_RS_NATIVE_LIBRARY_PATH names a file that is not a loadable addon for this platform';
  if (platformPackage && cause.includes(platformPackage)) return `the addon file is corrupt or for another platform: ${reinstall}`;
  return 'the addon file beside omnibal is corrupt or for another platform: remove it, or rebuild it with npm run build';
}

/**
 * One line: the loader's first real failure on this platform, then the one fix that applies; the
 * WebAssembly fallbacks and the other tries are left out (they are in the error's `cause` chain).
 *
 * - A file was found but did not load (corrupt, wrong platform, old C library, version
 *   mismatch): that message, and the fix for it.
 * - Nothing was found: the missing platform package and how to install it; npm's
 *   optional-dependency bug only when a lock file sits beside `node_modules`.
 *
 * @param error - what requiring the generated loader (`bindings.js`) threw
 * @param ctx - the version, the package root and the override path
 * @returns the cause and the fix, one line
 */
export function describeLoadError(error: unknown, ctx: LoadContext): string {
  const tries = loadAttempts(error);
  const platform = tries.filter((m) => !isWasm(m));
  const specifiers = platform.map(notFound);
  const platformPackage = specifiers.find((s): s is string => s !== undefined && isPackageName(s)) ?? /node_modules[\\/](omnibal-[\w-]+)/.exec(platform.join(' '))?.[1];
  const broken = platform.find((m) => notFound(m) === undefined);
  if (broken !== undefined) return `${broken}: ${fixForBrokenFile(broken, platformPackage, ctx)}`;
  if (ctx.overridePath) return `${platform[0] ?? tries[0]}: NAPI_RS_NATIVE_LIBRARY_PATH names no file`;
  if (platformPackage === undefined) return tries[0];
  const lock = projectLockFile(ctx.packageRoot);
  const bug = lock ? `; if it was not left out on purpose (npm install --omit=optional), npm's optional-dependency bug dropped it (https://github.com/npm/cli/issues/4828): remove ${path.basename(lock)} and node_modules, then npm install` : '';
  return `Cannot find module '${platformPackage}' (the platform package with the prebuilt addon is not installed): install it with npm install ${platformPackage}@${ctx.version}${bug}`;
}
