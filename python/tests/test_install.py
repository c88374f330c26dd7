"""The client installs offline with pip and imports from the install."""
import os
import subprocess
import sys
import tempfile
import unittest

from helpers import ROOT  # noqa: E402


def _has_wheel():
    # Checked in a child process: importing setuptools here would patch distutils for the suite.
    return subprocess.run([sys.executable, "-c", "import setuptools, wheel, pip"], capture_output=True).returncode == 0


@unittest.skipUnless(_has_wheel(), "needs pip, setuptools and wheel to build the package offline")
class Install(unittest.TestCase):
    def test_pip_install_offline_without_build_isolation(self):
        with tempfile.TemporaryDirectory() as target:
            r = subprocess.run(
                [sys.executable, "-m", "pip", "install", "-q", "--no-build-isolation", "--no-index", "--target", target, os.path.join(ROOT, "python")],
                capture_output=True, text=True, cwd=target,
            )
            self.assertEqual(r.returncode, 0, r.stderr)
            out = subprocess.run([sys.executable, "-c", "import omnibal; print(omnibal.__file__)"], capture_output=True, text=True, env={"PYTHONPATH": target, "PATH": os.environ.get("PATH", "")})
            self.assertTrue(out.stdout.strip().startswith(target), out.stdout + out.stderr)


if __name__ == "__main__":
    unittest.main()
