/**
 * The length files a saved training plan names (`replay.inputs.files`, the only paths a plan
 * carries: its model and GPU are preset names, its calibration is held inline). A relative path
 * in a plan is relative to the plan file's own folder, never to the working directory, so
 * `omnibal simulate --plan FILE` reads the same files wherever it is run from; an absolute path
 * is used as given. `omnibal plan --out FILE` writes its relative `--input`s that way (relative
 * to FILE's folder); a plan on stdout (`--json`), whose file is not known, names them absolute.
 * Folders are taken through symbolic links: a plan written through a linked folder, or read
 * through a link to the plan file, names the same files (a relative path that exists only from
 * the link's own folder, in a plan written by hand, is still read from there).
 *
 * @module
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { isOmnibalError, omnibalError } from '../errors';
import { readSamples, type LoadedSamples } from '../io/samples';

/** A path as a plan file records it: `/`-separated on every system. */
const portable = (p: string) => p.split(path.sep).join('/');

/**
 * The `--input` files as a plan records them: each relative one relative to the folder of
 * `planFile` (the `--out` file), or absolute when the plan's file is not known (stdout); an
 * absolute one as given.
 */
export function recordedInputs(files: readonly string[], planFile?: string): string[] {
  return files.map((f) => {
    if (path.isAbsolute(f)) return f;
    // The file as the reader opened it: `..` after a link is the link target's parent (the
    // system's resolution), not the link's folder (path.resolve's, which names another file).
    const absolute = real(f, path.resolve(f));
    return planFile === undefined ? absolute : portable(path.relative(real(path.dirname(path.resolve(planFile))), absolute));
  });
}

/**
 * `p` with its symbolic links resolved as the system opens it (a `..` after a link goes up from
 * the link's target), or `otherwise` (`p` itself) when that fails (it does not exist yet, say).
 */
function real(p: string, otherwise = p): string {
  return existing(p) ?? otherwise;
}

/** The path `p` opens (links resolved by the system), or `undefined` when nothing is there. */
function existing(p: string): string | undefined {
  try {
    return fs.realpathSync.native(p);
  } catch {
    return undefined;
  }
}

/** The folder a plan file was named in, and its real folder (links resolved). */
function planFolders(planFile: string): { named: string; actual: string } {
  return { named: path.dirname(path.resolve(planFile)), actual: path.dirname(real(path.resolve(planFile))) };
}

/**
 * A plan's input path as read: an absolute one as given; a relative one against the real folder
 * of `planFile` (its links resolved), or against the folder it was named in when only that one
 * holds the file. Joined as text and resolved by the system: a `..` after a link in `file` goes
 * up from the link's target, as when the file is opened (path.resolve would drop both).
 */
export function resolvePlanInput(file: string, planFile: string, folders = planFolders(planFile)): string {
  if (path.isAbsolute(file)) return file;
  const { named, actual } = folders;
  return existing(`${actual}${path.sep}${file}`) ?? (actual !== named ? existing(`${named}${path.sep}${file}`) : undefined) ?? path.resolve(actual, file);
}

/**
 * Reads the length files a saved plan names, each relative one resolved against the plan file's
 * folder. A file that cannot be read is the reader's coded error, naming the resolved path, with
 * the entry of the plan it came from.
 */
export async function readPlanInputs(files: readonly string[], planFile: string): Promise<LoadedSamples> {
  const folders = planFolders(planFile);
  const resolved = files.map((f) => resolvePlanInput(f, planFile, folders));
  try {
    return await readSamples(resolved);
  } catch (error) {
    if (!isOmnibalError(error)) throw error;
    const k = resolved.findIndex((r, i) => r !== files[i] && error.message.startsWith(`${r}:`));
    if (k < 0) throw error;
    throw omnibalError(error.code, `${error.message} (the plan's replay.inputs.files[${k}] ${JSON.stringify(files[k])}, relative to the plan file's folder ${folders.actual})`, error);
  }
}
