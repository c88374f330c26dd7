/**
 * Where this package lives on disk, and its version.
 *
 * @module
 */
import * as path from 'node:path';

/**
 * The package root (the folder of `package.json`, `bindings.js`): this file is `src/package.ts`
 * in the sources and `dist/src/package.js` when compiled.
 */
export const packageRoot: string = (() => {
  const parent = path.resolve(__dirname, '..');
  return path.basename(parent) === 'dist' ? path.dirname(parent) : parent;
})();

/** The version of this package, as in its `package.json`. */
export const version: string = (
  require(path.join(packageRoot, 'package.json')) as { version: string }
).version;
