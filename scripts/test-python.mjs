#!/usr/bin/env node
// Runs the Python client's unittest suite with an interpreter that has PyTorch when one does
// (Debian's python3-torch installs into /usr/bin/python3), else with python3 (the torch tests
// then skip, saying so).
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const candidates = [process.env.OMNIBAL_PYTHON, '/usr/bin/python3', 'python3'].filter(Boolean);
const hasTorch = (py) => spawnSync(py, ['-c', 'import torch'], { stdio: 'ignore' }).status === 0;
const usable = (py) => (py.startsWith('/') ? existsSync(py) : true) && spawnSync(py, ['--version'], { stdio: 'ignore' }).status === 0;
const python = candidates.find((py) => usable(py) && hasTorch(py)) ?? candidates.find(usable);
if (!python) {
  console.error('no python3 found: the Python client tests need Python 3.8+');
  process.exit(1);
}
console.error(`python tests with ${python}${hasTorch(python) ? ' (torch available)' : ' (no torch: the PyTorch tests will skip)'}`);
const r = spawnSync(python, ['-W', 'error::ResourceWarning', '-m', 'unittest', 'discover', '-s', join(root, 'python', 'tests'), '-v'], { stdio: 'inherit', cwd: root });
process.exit(r.status ?? 1);
