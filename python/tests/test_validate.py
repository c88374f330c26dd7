"""The mini-run (omnibal.validate), small: two real gloo processes train tiny-vlm with data
parallelism and a 1F1B pipeline. Timing on a shared machine is noisy, so this asserts only what
cannot flake; the figures themselves are the bench's (npm run bench -- minirun)."""
import io
import json
import math
import os
import re
import subprocess
import sys
import tempfile
import unittest

from helpers import CLI, ROOT  # noqa: E402

try:
    import torch  # noqa: F401

    from omnibal import validate
except ImportError:  # pragma: no cover - CI installs Debian's python3-torch
    torch = None

needs = unittest.skipUnless(torch is not None and os.path.exists(CLI), "needs torch (Debian python3-torch) and the built CLI")
ENV = dict(os.environ, PYTHONPATH=os.path.join(ROOT, "python"))


def py(*args, env=None):
    return subprocess.run([sys.executable, "-m", "omnibal.validate"] + list(args), cwd=ROOT, env=env or ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=600)


@needs
class MiniRun(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        # Skewed lengths (InternVL scale; scaled down by the run): big and small samples alternate,
        # so random fixed-size batches leave ranks unequal and the prediction is clear.
        cls.tmp = tempfile.TemporaryDirectory()
        lengths = os.path.join(cls.tmp.name, "skew.json")
        with open(lengths, "w") as fh:
            json.dump([{"vit_num": 5, "token_num": 1500} if i % 2 else {"vit_num": 1, "token_num": 300} for i in range(64)], fh)
        cls.proc = py("--json", "--lengths", lengths, "--steps", "2", "--accum", "2", "--samples-per-pack", "2", "--pp-micro-batches", "4", "--repeats", "1", "--profile-repeats", "2")
        cls.doc = json.loads(cls.proc.stdout) if cls.proc.returncode == 0 else None

    @classmethod
    def tearDownClass(cls):
        cls.tmp.cleanup()

    def test_completes_with_a_complete_document(self):
        self.assertEqual(self.proc.returncode, 0, self.proc.stderr)
        doc = self.doc
        self.assertIn("lengths from skew.json", doc["data"])
        self.assertEqual([r["name"] for r in doc["runs"]], ["dp2-random", "dp2-balanced", "pp2-uniform", "pp2-parameters", "pp2-optimal"])
        for r in doc["runs"]:
            for k in ("predictedMs", "measuredMs", "errorPct"):
                self.assertTrue(math.isfinite(r[k]), (r["name"], k))
            self.assertGreater(r["predictedMs"], 0)
            self.assertGreater(r["measuredMs"], 0)
        dp = doc["runs"][:2]
        # Both plans get the same samples; a plan may drop a tail (reported), never lose one silently.
        self.assertEqual(dp[0]["samples"] + dp[0]["dropped"], dp[1]["samples"] + dp[1]["dropped"])
        self.assertEqual(dp[0]["samples"] + dp[0]["dropped"], 2 * 2 * 2 * 2)
        for r in dp:
            self.assertGreater(r["measuredCpuMs"], 0)
            self.assertEqual(len(r["predictedStepMs"]), r["steps"])
        splits = [r["lastLayers"] for r in doc["runs"][2:]]
        for s in splits:
            self.assertEqual(len(s), 2)
            self.assertEqual(s[1], 13)  # the last stage ends with the head (tiny-vlm has 14 layers)
        self.assertEqual(set(doc["speedups"]), {"dpBalancedOverRandom", "dpBalancedOverRandomCpuTime", "ppOptimalOverUniform", "ppOptimalOverParameters"})

    def test_losses_match_between_splits(self):
        self.assertIsNotNone(self.doc, self.proc.stderr)
        losses = [r["losses"] for r in self.doc["runs"][2:]]
        for l in losses:
            self.assertEqual(len(l), 4)
            for a, b in zip(l, losses[0]):
                self.assertAlmostEqual(a, b, places=5)
        self.assertTrue(self.doc["lossesMatch"])

    def test_measured_speedup_has_the_predicted_sign_when_the_prediction_is_large(self):
        self.assertIsNotNone(self.doc, self.proc.stderr)
        s = self.doc["speedups"]
        # Thread CPU time is not inflated by other processes, but at this test's size (64 samples,
        # 2 steps) one sample moves it by a third: only a large prediction must show (a fresh CI
        # clone measured 0.93x against a predicted 1.37x; the bench runs it at full size).
        cpu = s["dpBalancedOverRandomCpuTime"]
        if cpu["predicted"] >= 1.5:
            self.assertGreater(cpu["measured"], 1.0, cpu)
        for key in ("dpBalancedOverRandom", "ppOptimalOverUniform", "ppOptimalOverParameters"):
            if s[key]["predicted"] >= 1.5:
                self.assertGreater(s[key]["measured"], 1.0, (key, s[key]))


@unittest.skipUnless(torch is not None, "needs torch")
class Inputs(unittest.TestCase):
    def test_bad_flags_exit_2_with_one_line(self):
        for args in (["--steps", "0"], ["--lengths", "/nonexistent.json"], ["--model", "nope"], ["--repeats", "x"]):
            r = py(*args)
            self.assertEqual(r.returncode, 2, args)
            self.assertEqual(len(r.stderr.strip().splitlines()), 1, r.stderr)
            self.assertTrue(r.stderr.startswith("omnibal.validate: "))

    def test_length_files_that_are_not_lists_of_lengths_exit_2_with_one_line(self):
        real, err = validate.validate, sys.stderr
        ran = []
        validate.validate = lambda *a, **k: ran.append(a)
        try:
            with tempfile.TemporaryDirectory() as d:
                fifo = os.path.join(d, "fifo.json")
                os.mkfifo(fifo)
                bad = {"empty.json": "", "strings.json": '["a", "b"]', "nokeys.json": '[{"vit_num": 1}]', "floats.json": '[{"vit_num": 1e400, "token_num": 1}]'}
                for name, text in bad.items():
                    with open(os.path.join(d, name), "w") as fh:
                        fh.write(text)
                    with self.assertRaises(validate.UsageError, msg=name) as e:
                        validate.read_lengths([os.path.join(d, name)])
                    self.assertIn(name, str(e.exception))
                for path in (fifo, "/dev/zero", d):
                    sys.stderr = io.StringIO()
                    rc, text = validate.main(["--lengths", path]), sys.stderr.getvalue()
                    self.assertEqual((rc, text), (2, "omnibal.validate: --lengths %s: not a regular file\n" % path))
        finally:
            validate.validate, sys.stderr = real, err
        self.assertEqual(ran, [], "nothing runs on a length file that is not a file")

    def test_a_model_too_large_for_the_machine_is_refused_unless_asked(self):
        # internvl-chat-1.5 is 26B parameters: a CPU mini-run would need ~400 GB and weeks.
        # Refused before anything is built (exit 2, one line with the estimate), run with
        # --allow-large-model (here a stub stands for the run), tiny-vlm never asked.
        real, err, out = validate.validate, sys.stderr, sys.stdout
        ran = []
        validate.validate = lambda *a, **k: ran.append(a[0]) or {"runs": [], "speedups": {}}
        try:
            for model in ("internvl-chat-1.5", "llava-1.5-7b"):
                sys.stderr = io.StringIO()
                rc, text = validate.main(["--model", model, "--json"]), sys.stderr.getvalue()
                self.assertEqual(rc, 2, text)
                self.assertEqual(len(text.strip().splitlines()), 1, text)
                self.assertRegex(text, r"^omnibal\.validate: %s has [\d.]+ billion parameters: its mini-run needs about [\d.]+ GB \(fp32 .*\) and about [\d.]+ (hours|days) of CPU time per process .*pass --allow-large-model to run it anyway\n$" % re.escape(model))
            self.assertEqual(ran, [], "nothing runs on a model too large for the machine")
            sys.stderr, sys.stdout = io.StringIO(), io.StringIO()
            rc, text, output = validate.main(["--model", "internvl-chat-1.5", "--allow-large-model", "--json"]), sys.stderr.getvalue(), sys.stdout.getvalue()
            self.assertEqual((rc, ran), (0, ["internvl-chat-1.5"]), text)
            self.assertRegex(text, r"^omnibal\.validate: --allow-large-model: running anyway: internvl-chat-1\.5 has 25\.5 billion parameters")
            self.assertEqual(json.loads(output)["runs"], [])
            sys.stderr, sys.stdout = io.StringIO(), io.StringIO()
            self.assertEqual(validate.main(["--json"]), 0)
            self.assertEqual((ran[-1], sys.stderr.getvalue()), ("tiny-vlm", ""))
        finally:
            validate.validate, sys.stderr, sys.stdout = real, err, out

    def test_the_size_guard_weighs_memory_and_time(self):
        from omnibal import blocks

        tiny, big = blocks.load_spec("tiny-vlm"), blocks.load_spec("internvl-chat-1.5")
        e = validate.run_estimate(tiny, 2, 2, 2, 8, 3, machine_bytes=16 << 30)
        self.assertAlmostEqual(e["params"] / 1.25e6, 1, delta=0.01)  # README: a 1.25M-parameter look-alike
        self.assertEqual(e["bytes"], 16 * e["params"])
        self.assertIsNone(validate.check_size("tiny-vlm", e, False))
        # The same run on a machine of 16 MB: too little memory.
        with self.assertRaises(validate.UsageError):
            validate.check_size("tiny-vlm", dict(e, machineBytes=16 << 20), False)
        # 26B on a machine of 4 TB: memory would do, the CPU time would not.
        e = validate.run_estimate(big, 2, 2, 2, 8, 3, machine_bytes=4 << 40)
        self.assertAlmostEqual(e["params"] / 25.5e9, 1, delta=0.02)
        self.assertGreater(e["seconds"], validate.MAX_RUN_S)
        with self.assertRaisesRegex(validate.UsageError, "days of CPU time"):
            validate.check_size("internvl-chat-1.5", e, False)
        self.assertRegex(validate.check_size("internvl-chat-1.5", e, True), "^internvl-chat-1.5 has 25.5 billion parameters")

    def test_a_failed_or_interrupted_run_is_one_line_not_a_traceback(self):
        from torch.multiprocessing.spawn import ProcessExitedException

        real, err = validate.validate, sys.stderr
        for exc, code, line in ((ProcessExitedException("process 0 terminated with signal SIGKILL", 0, 0, 0, "SIGKILL"), 2, "the run failed: process 0"),
                                (RuntimeError("node pack failed: x\nmore"), 2, "the run failed: node pack failed: x"), (KeyboardInterrupt(), 130, "interrupted")):
            def boom(*_a, **_k):
                raise exc
            validate.validate, sys.stderr = boom, io.StringIO()
            try:
                rc = validate.main(["--json"])
                text = sys.stderr.getvalue()
            finally:
                validate.validate, sys.stderr = real, err
            self.assertEqual(rc, code, text)
            self.assertEqual(len(text.strip().splitlines()), 1, text)
            self.assertTrue(text.startswith("omnibal.validate: " + line), text)

    def test_a_failing_cli_call_keeps_omnibal_s_one_line_reason(self):
        # omnibal's errors end in [ERR_OMNIBAL_*], not "Error": the reason (here --seed -1, passed
        # through to omnibal pack; or a calibration partition rejects) was dropped for "exit 2".
        with tempfile.TemporaryDirectory() as d:
            lengths = os.path.join(d, "lengths.json")
            with open(lengths, "w") as fh:
                json.dump([{"vit_num": 1, "token_num": 10}] * 4, fh)
            with self.assertRaises(RuntimeError) as e:
                validate.node([CLI, "pack", "--input", lengths, "--dp", "2", "--accum", "1", "--samples-per-pack", "1", "--seed", "-1", "--json"])
        self.assertRegex(str(e.exception), r"failed: omnibal: --seed must be between 0 and \d+, got -1 \[ERR_OMNIBAL_OUT_OF_RANGE\]$")

    def test_dp_speedup_compares_time_per_trained_sample(self):
        # omnibal pack dropped a tail of 2 samples from the balanced plan: 14 against 16 samples.
        rnd = {"predictedMs": 1600.0, "measuredMs": 1600.0, "predictedCpuMs": 160.0, "measuredCpuMs": 320.0, "samples": 16}
        bal = {"predictedMs": 1400.0, "measuredMs": 1400.0, "predictedCpuMs": 140.0, "measuredCpuMs": 140.0, "samples": 14}
        self.assertEqual(validate.dp_speedup(rnd, bal), {"predicted": 1.0, "measured": 1.0})
        self.assertEqual(validate.dp_speedup(rnd, bal, "CpuMs"), {"predicted": 1.0, "measured": 2.0})

    def test_falls_back_to_synthetic_lengths_when_no_file_is_found(self):
        with tempfile.TemporaryDirectory() as empty:
            old = os.environ.get("OMNIBAL_SHARED_LENGTHS")
            os.environ["OMNIBAL_SHARED_LENGTHS"] = empty
            try:
                self.assertEqual(validate.read_lengths(), (None, None))
            finally:
                if old is None:
                    del os.environ["OMNIBAL_SHARED_LENGTHS"]
                else:
                    os.environ["OMNIBAL_SHARED_LENGTHS"] = old
        pairs = validate.synthetic_lengths(500, 1)
        self.assertTrue(all(1 <= t <= 5 and n > 256 * t for t, n in pairs))
        small = validate.scale_down(validate.blocks.load_spec("tiny-vlm"), [(5, 1500), (1, 300), (2, 100)])
        self.assertEqual(small, [(5, 23), (1, 5), (2, 9)])


if __name__ == "__main__":
    unittest.main()
