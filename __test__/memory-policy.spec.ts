// The sidecar's allocation policy (crate/node/src/memory.rs): after `keepFreedMemory()`, memory
// freed by one large allocation serves the next one without new page faults; without it, glibc
// maps and unmaps such an allocation each time (every page faulted in again).
import { execFileSync } from 'node:child_process';
import * as path from 'node:path';
import { nativeTest } from './helpers';

const ROOT = path.resolve(__dirname, '..');
// Faults of a second 96 MiB buffer after the first one was freed, in a fresh process.
const SCRIPT = `
const keep = process.argv[1] === 'keep';
if (keep && !require(${JSON.stringify(path.join(ROOT, 'bindings.js'))}).keepFreedMemory()) throw new Error('policy not set');
const faults = () => process.resourceUsage().minorPageFault;
let first = Buffer.alloc(96 << 20, 1);
first = null;
// V8 frees array buffers' memory on a background thread: wait (up to 10 s) until it is freed, so
// a loaded machine cannot make the second buffer come before the first is given back.
const pause = new Int32Array(new SharedArrayBuffer(4));
for (let i = 0; i < 1000 && (globalThis.gc(), process.memoryUsage().arrayBuffers > 64 << 20); i++) Atomics.wait(pause, 0, 0, 10);
const before = faults();
const second = Buffer.alloc(96 << 20, 2);
process.stdout.write(String(faults() - before + second[0] - 2));
`;

function secondFaults(mode: string): number {
  return Number(execFileSync(process.execPath, ['--expose-gc', '-e', SCRIPT, mode], { encoding: 'utf8', env: { ...process.env, GLIBC_TUNABLES: '' } }));
}

const linuxGnu = process.platform === 'linux' && !!(process.report?.getReport() as { header?: { glibcVersionRuntime?: string } } | undefined)?.header?.glibcVersionRuntime;

nativeTest('keepFreedMemory: a freed 96 MiB buffer serves the next one without faulting its pages in again', (t) => {
  if (!linuxGnu) return t.pass('glibc on Linux only');
  const pages = (96 << 20) / 4096;
  const plain = secondFaults('plain');
  const kept = secondFaults('keep');
  t.true(plain > pages * 0.9, `without the policy every page faults again: ${plain} faults`);
  t.true(kept < pages * 0.1, `with it the freed pages are reused: ${kept} faults`);
});
