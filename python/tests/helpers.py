"""Shared helpers of the Python suite."""
import json
import os
import signal
import subprocess
import sys
import threading
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "python"))
CLI = os.path.join(ROOT, "dist", "src", "cli", "main.js")
SHARED = os.environ.get("OMNIBAL_SHARED_LENGTHS") or os.path.normpath(os.path.join(ROOT, "..", "shared", "data", "lengths"))
REAL_FILES = [os.path.join(SHARED, f) for f in ("ai2d_train_12k.json", "chartqa_train_18k.json", "synthdog_en.json")]


def have_real_data():
    return all(os.path.exists(f) for f in REAL_FILES)


def real_lengths():
    pairs = []
    for f in REAL_FILES:
        with open(f) as fh:
            pairs += [(r["vit_num"], r["token_num"]) for r in json.load(fh)]
    return pairs


def serve(*args):
    """Starts a bare sidecar (for protocol tests that speak raw lines)."""
    return subprocess.Popen(["node", CLI, "serve"] + list(args), stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, bufsize=0)


def stop(proc):
    """Closes a bare sidecar's stdin (it then exits) and its pipes."""
    proc.stdin.close()
    proc.wait(10)
    proc.stdout.close()
    proc.stderr.close()


def rpc(proc, line):
    """Sends one raw line and returns the next answer (skipping progress notifications)."""
    proc.stdin.write((line if line.endswith("\n") else line + "\n").encode())
    proc.stdin.flush()
    while True:
        msg = json.loads(proc.stdout.readline())
        if isinstance(msg, list) or msg.get("method") != "progress":
            return msg


def alive(pid):
    try:
        with open("/proc/%d/status" % pid) as fh:
            return "State:\tZ" not in fh.read()
    except OSError:
        return False


def resume(pid):
    """SIGCONT to a sidecar a test stopped (already gone: nothing to do)."""
    try:
        os.kill(pid, signal.SIGCONT)
    except ProcessLookupError:
        pass


def rss_kib(pid):
    with open("/proc/%d/status" % pid) as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def from_threads(count, work, join_s=90):
    """Runs ``work(k)`` for k in 0..count-1, each on its own thread: ``([result of each k], [errors])``."""
    got, errors = {}, []

    def run(k):
        try:
            got[k] = work(k)
        except Exception as e:  # noqa: BLE001
            errors.append(e)

    threads = [threading.Thread(target=run, args=(k,)) for k in range(count)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(join_s)
    return [got.get(k) for k in range(count)], errors


class SharedClientCase(unittest.TestCase):
    """A test case whose tests share one sidecar client, ``self.client`` (closed after the class)."""

    @classmethod
    def setUpClass(cls):
        from omnibal import Client

        cls.client = Client()

    @classmethod
    def tearDownClass(cls):
        cls.client.close()
