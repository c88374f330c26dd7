"""The layer profiler (omnibal.profile) and the GPU check's CPU path (omnibal.gpu_check --tiny):
what they measure, the calibration file they write, and that omnibal's CLI takes it."""
import io
import json
import os
import subprocess
import sys
import tempfile
import time
import unittest

from helpers import CLI, ROOT  # noqa: E402

try:
    import torch
    from torch import nn

    from omnibal import blocks, profile
except ImportError:  # pragma: no cover - CI installs Debian's python3-torch
    torch = None

needs_torch = unittest.skipUnless(torch is not None, "needs torch (Debian python3-torch)")
needs_cli = unittest.skipUnless(os.path.exists(CLI), "needs the built CLI (npm run build)")
ENV = dict(os.environ, PYTHONPATH=os.path.join(ROOT, "python"))


def py(*args, timeout=300):
    return subprocess.run([sys.executable, "-m"] + list(args), cwd=ROOT, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=timeout)


def node(*args, stdin=None):
    return subprocess.run(["node"] + list(args), cwd=ROOT, input=stdin, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=120)


@needs_torch
class ProfileLayers(unittest.TestCase):
    def test_user_layers_times_and_saved_bytes(self):
        torch.manual_seed(0)
        lin = nn.Linear(8, 4)

        class Pair(nn.Module):
            """Returns a tuple, as Hugging Face layers do."""

            def forward(self, x):
                return (torch.tanh(x), None)

        x = torch.randn(3, 8)
        rows = profile.profile_layers([lin, Pair()], lambda i: x if i == 0 else torch.randn(3, 4), repeats=4, warmup=1, names=["lin", "pair"])
        self.assertEqual([r["name"] for r in rows], ["lin", "pair"])
        for r in rows:
            self.assertEqual(len(r["forwardSamplesMs"]), 4)
            self.assertGreater(r["forwardMs"], 0)
            self.assertGreater(r["backwardMs"], 0)
        # Linear saves its input (the weight is a parameter, left out): 3 x 8 float32.
        self.assertEqual(rows[0]["savedBytes"], 3 * 8 * 4)
        self.assertEqual(rows[0]["inputBytes"], 3 * 8 * 4)
        self.assertEqual(rows[0]["params"], 8 * 4 + 4)
        # tanh saves its output: 3 x 4 float32.
        self.assertEqual(rows[1]["savedBytes"], 3 * 4 * 4)
        self.assertIsNotNone(lin.weight.grad)

    def test_blocks_run_forward_and_backward_at_preset_shapes(self):
        spec = blocks.load_spec("tiny-vlm")
        layers = blocks.build_layers(spec, seed=3)
        self.assertEqual(len(layers), len(blocks.layer_names(spec)))
        self.assertEqual([l.kind for l in layers], blocks.layer_kinds(spec))
        mb = blocks.MicroBatch(spec, [2, 1], [12, 7], seed=1)
        x = None
        for layer in layers:
            x = layer(x, mb)
        self.assertEqual(x.dim(), 0)
        x.backward()
        self.assertTrue(all(p.grad is not None for l in layers for p in l.parameters() if l.kind != "embed"))
        with self.assertRaises(ValueError):
            blocks.MicroBatch(spec, [3], [12])  # 3 tiles are 12 image tokens: no room for text

    def test_packed_attention_stays_inside_each_sample(self):
        spec = blocks.load_spec("tiny-vlm")
        block = blocks.LlmBlock(spec["llm"])
        a = blocks.MicroBatch(spec, [1, 1], [6, 6], seed=0)
        x = torch.randn(1, 12, spec["llm"]["hidden"])
        y = block(x, a)
        # The second sample alone gives the same output: nothing leaks across the pack.
        alone = blocks.MicroBatch(spec, [1], [6], seed=0)
        self.assertTrue(torch.allclose(block(x[:, 6:], alone), y[:, 6:], atol=1e-5))


@needs_torch
@needs_cli
class FlopsTwin(unittest.TestCase):
    def test_python_flops_match_the_cost_model(self):
        script = (
            "const o = require(process.argv[1]);"
            "const [m, l] = JSON.parse(process.argv[2]);"
            "process.stdout.write(JSON.stringify(Array.from(o.vlmLayers(m, 'A100-80G', { load: l }).forwardFlops)));"
        )
        for model in ("tiny-vlm", "internvl-chat-1.5", "llava-1.5-7b"):
            spec = blocks.load_spec(model)
            load = {"tiles": 7, "tokens": 3001, "sumSqLen": 2000000}
            r = node("-e", script, os.path.join(ROOT, "dist", "index.js"), json.dumps([model, load]))
            self.assertEqual(r.returncode, 0, r.stderr)
            want = json.loads(r.stdout)
            kinds = blocks.layer_kinds(spec)
            self.assertEqual(len(want), len(kinds))
            for i, k in enumerate(kinds):
                got = profile.model_forward_flops(spec, k, 7, 3001, 2000000)
                self.assertAlmostEqual(got, want[i], delta=1e-9 * max(1.0, want[i]), msg="%s %s" % (model, k))


@needs_torch
@needs_cli
class ProfileCli(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="omnibal-profile-")
        cls.cal = os.path.join(cls.tmp, "cal.json")
        cls.proc = py("omnibal.profile", "--model", "tiny-vlm", "--tiles", "6", "--tokens", "30", "--samples", "2", "--repeats", "3", "--warmup", "1", "--threads", "1", "--out", cls.cal)

    @classmethod
    def tearDownClass(cls):
        for f in os.listdir(cls.tmp):
            os.unlink(os.path.join(cls.tmp, f))
        os.rmdir(cls.tmp)

    def test_a_model_too_large_for_a_cpu_profile_is_refused_before_anything_is_built(self):
        started = time.time()
        p = py("omnibal.profile", "--model", "internvl-chat-1.5", "--out", os.path.join(self.tmp, "big.json"))
        self.assertEqual(p.returncode, 2, p.stderr)
        self.assertLess(time.time() - started, 60)
        line = p.stderr.strip()
        self.assertEqual(len(line.splitlines()), 1, line)
        self.assertIn("--allow-large-model", line)
        self.assertIn("of CPU time", line)
        self.assertNotIn("building", line)
        self.assertFalse(os.path.exists(os.path.join(self.tmp, "big.json")))
        # tiny-vlm passes the same check (the class's own run above profiled it).
        from omnibal import profile
        spec = blocks.load_spec("tiny-vlm")
        self.assertIsNone(profile.cpu_size_check("tiny-vlm", spec, 8, 40, 1, 12, 2, False))
        with self.assertRaises(profile.UsageError):
            profile.cpu_size_check("internvl-chat-1.5", blocks.load_spec("internvl-chat-1.5"), 18, 5000, 1, 12, 2, False)
        self.assertIsNotNone(profile.cpu_size_check("internvl-chat-1.5", blocks.load_spec("internvl-chat-1.5"), 18, 5000, 1, 12, 2, True))

    def test_the_memory_guard_counts_what_a_layer_run_allocates(self):
        # 60,000 tokens in one sample: 7 minutes of CPU time at one run passes the time guard,
        # but the LLM block's attention alone holds 4 heads x 60,000^2 float32 scores (57.6 GB)
        # several times over; the old guard counted only the weights (a few MB) and let it
        # start, to fail allocating.
        from omnibal import profile
        spec = blocks.load_spec("tiny-vlm")
        p = py("omnibal.profile", "--model", "tiny-vlm", "--tokens", "60000", "--repeats", "1", "--warmup", "0", "--out", os.path.join(self.tmp, "long.json"))
        self.assertEqual(p.returncode, 2, p.stderr)
        line = p.stderr.strip()
        self.assertEqual(len(line.splitlines()), 1, line)
        self.assertIn("for its largest layer run (llm:", line)
        self.assertIn("7 minutes", line)
        self.assertNotIn("building", line)
        self.assertFalse(os.path.exists(os.path.join(self.tmp, "long.json")))
        run = profile.layer_run_bytes(spec, "llm", 8, [60000])
        self.assertGreater(run, 3 * 4 * 60000 ** 2 * 4)  # the saved softmax, the scores and their masked copy
        # Packed samples hold their own attention: 4 of 15,000 tokens need far less than 1 of 60,000.
        self.assertLess(profile.layer_run_bytes(spec, "llm", 8, [15000] * 4), run / 4)
        # An extra load is checked too, and bfloat16 halves the bytes.
        with self.assertRaises(profile.UsageError):
            profile.cpu_size_check("tiny-vlm", spec, 8, 40, 1, 1, 2, False, extra_loads=[(8, 60000, 1)])
        self.assertEqual(profile.layer_run_bytes(spec, "llm", 8, [4000], 2) * 2, profile.layer_run_bytes(spec, "llm", 8, [4000], 4))

    def test_a_second_load_equal_to_the_first_is_said(self):
        # At 1 tile / 5 tokens the default second load (a quarter, at least a tile and its image
        # tokens plus one) is the first: one load is measured, and the progress says so.
        from omnibal import profile
        said = []
        doc = profile.profile_preset("tiny-vlm", 1, 5, repeats=1, warmup=0, progress=said.append)
        self.assertEqual(len(doc["loads"]), 1)
        self.assertTrue(any("measured once" in m and "no fixed cost fitted" in m for m in said), said)

    def test_writes_a_complete_calibration_with_progress_on_stderr(self):
        self.assertEqual(self.proc.returncode, 0, self.proc.stderr)
        self.assertEqual(self.proc.stdout, "")
        self.assertIn("llm.block.0 at 6 tiles, 30 tokens: forward", self.proc.stderr)
        with open(self.cal) as fh:
            doc = json.load(fh)
        self.assertEqual(doc["schema"], "omnibal.calibration/2")
        self.assertEqual(doc["load"], {"tiles": 6, "tokens": 30, "sumSqLen": 15 * 15 * 2})
        # The second load: about a quarter (2 tiles, 8 tokens in 1 sample).
        self.assertEqual(doc["loads"], [{"tiles": 6, "tokens": 30, "sumSqLen": 450, "samples": 2}, {"tiles": 2, "tokens": 9, "sumSqLen": 81, "samples": 1}])
        self.assertEqual([l["kind"] for l in doc["layers"]], [k for k in blocks.LAYER_KINDS for _ in range(2)])
        spec = blocks.load_spec("tiny-vlm")
        kinds = blocks.layer_kinds(spec)
        for j, l in enumerate(doc["layers"]):
            self.assertEqual(kinds[l["index"]], l["kind"])
            self.assertEqual(l["load"], {k: doc["loads"][j % 2][k] for k in ("tiles", "tokens", "sumSqLen")})
            self.assertAlmostEqual(l["forwardMs"], (l["measuredForwardMs"] + l["backwardMs"]) / 3)
            self.assertGreater(l["savedBytes"], 0)
        self.assertEqual([m["firstLayer"] for m in doc["stageMemory"]], [kinds.index("vit"), kinds.index("llm")])

    def test_the_cli_fits_what_the_python_twin_fits(self):
        # Calibrated from the file, omnibal's model gives each kind's fixed cost + cost per FLOP
        # as the Python twin of the fit computes it (the GPU check relies on that twin), at
        # both measured loads and at a third.
        script = (
            "const o = require(process.argv[1]);"
            "const cal = JSON.parse(require('fs').readFileSync(process.argv[2], 'utf8'));"
            "const r = o.calibrate('tiny-vlm', 'cpu', { load: { tiles: 1, tokens: 100 } }, cal);"
            "const at = (load) => Array.from(o.vlmLayers('tiny-vlm', r.gpu, { load }).forwardMs);"
            "process.stdout.write(JSON.stringify({ loads: [...cal.loads, { tiles: 4, tokens: 20, sumSqLen: 200 }].map(at), scale: r.activationScale }));"
        )
        r = node("-e", script, os.path.join(ROOT, "dist", "index.js"), self.cal)
        self.assertEqual(r.returncode, 0, r.stderr)
        got = json.loads(r.stdout)
        with open(self.cal) as fh:
            doc = json.load(fh)
        spec = blocks.load_spec("tiny-vlm")
        loads = doc["loads"] + [{"tiles": 4, "tokens": 20, "sumSqLen": 200}]
        for kind in blocks.LAYER_KINDS:
            mine = [l for l in doc["layers"] if l["kind"] == kind]
            flops = lambda l: profile.model_forward_flops(spec, kind, l["tiles"], l["tokens"], l["sumSqLen"])  # noqa: E731
            o, per = profile.fit_layer_cost([(flops(l["load"]), l["forwardMs"]) for l in mine])
            self.assertGreaterEqual(o, 0)
            for j, load in enumerate(loads):
                want = o + per * flops(load)
                self.assertAlmostEqual(got["loads"][j][mine[0]["index"]] / want, 1.0, places=9, msg=(kind, load))
        self.assertGreater(got["scale"]["llm"], 0)

    def test_plan_and_partition_take_the_file(self):
        r = node(CLI, "partition", "--model", "tiny-vlm", "--gpu", "cpu", "--calibration", self.cal, "--pp", "2", "--micro-batches", "4", "--vision-per-micro-batch", "6", "--text-per-micro-batch", "30", "--json")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(len(json.loads(r.stdout)["stages"]), 2)
        for extra in ([], ["--calibration", self.cal]):
            r = node(CLI, "plan", "--model", "tiny-vlm", "--gpu", "cpu", "--gpus", "4", "--pp", "2", "--synthetic", "400", "--simulated-steps", "2", "--json", *extra)
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertEqual(json.loads(r.stdout)["replay"]["calibration"] is not None, bool(extra))

    def test_a_text_only_profile_is_taken_by_the_cli_and_the_sidecar(self):
        # The CLI refuses --tiles 0 (a calibration without the ViT would leave it on the guessed
        # efficiency, with no word said); profile_preset() at 0 tiles skips the vision layers
        # (no input, no work), saying so. The vision kinds timed only at 0 tiles would be
        # rejected; the rest is a calibration the CLI and the sidecar both take, with stage
        # bytes of 0 (a stage that keeps nothing) as well.
        cal = os.path.join(self.tmp, "text-only.json")
        r = py("omnibal.profile", "--model", "tiny-vlm", "--tiles", "0", "--tokens", "20", "--repeats", "3", "--warmup", "1", "--threads", "1", "--out", cal)
        self.assertEqual(r.returncode, 2, r.stderr)
        self.assertIn("--tiles 0 measures none of the vision layers", r.stderr)
        self.assertEqual(len(r.stderr.strip().splitlines()), 1, r.stderr)
        self.assertFalse(os.path.exists(cal))
        from omnibal import profile
        said = []
        doc = profile.profile_preset("tiny-vlm", 0, 20, repeats=3, warmup=1, progress=said.append)
        self.assertIn("skipping vit.block.0 (vit): no tiles at any load, nothing to time", said)
        with open(cal, "w") as fh:
            json.dump(doc, fh)
        self.assertEqual(sorted({l["kind"] for l in doc["layers"]}), ["embed", "head", "llm"])
        self.assertTrue(all(l["load"]["tiles"] == 0 for l in doc["layers"]))
        llm = blocks.layer_kinds(blocks.load_spec("tiny-vlm")).index("llm")
        doc["stageMemory"].append({"firstLayer": llm, "lastLayer": llm, "inFlight": 1, "fullRecomputeBytes": 0, "noRecomputeBytes": 0})
        with open(cal, "w") as fh:
            json.dump(doc, fh)
        r = node(CLI, "partition", "--model", "tiny-vlm", "--gpu", "cpu", "--calibration", cal, "--pp", "2", "--micro-batches", "4", "--vision-per-micro-batch", "2", "--text-per-micro-batch", "30", "--json")
        self.assertEqual(r.returncode, 0, r.stderr)
        r = node(CLI, "plan", "--model", "tiny-vlm", "--gpu", "cpu", "--gpus", "4", "--pp", "2", "--synthetic", "400", "--simulated-steps", "1", "--json", "--calibration", cal)
        self.assertEqual(r.returncode, 0, r.stderr)
        from omnibal.client import Client
        with Client(timeout=120) as c:
            got = c.call("plan", {"model": "tiny-vlm", "gpu": "cpu", "cluster": {"gpus": 4, "tp": 1, "pp": 2, "dp": 2}, "simulatedSteps": 1, "calibration": doc})
        self.assertEqual(got["replay"]["calibration"]["stageMemory"][-1]["fullRecomputeBytes"], 0)

    def test_bad_flags_exit_2_with_one_line(self):
        for args in (["--model", "nope"], ["--model", "tiny-vlm", "--tiles", "x"], ["--model", "tiny-vlm", "--dtype", "int8"],
                     ["--model", "tiny-vlm", "--fit", "both"], ["--model", "tiny-vlm", "--tokens", "0"], ["--tiles", "3"],
                     ["--model", "tiny-vlm", "--tiles", "20", "--tokens", "10"], ["--model", "tiny-vlm", "--dtype", "float16"],
                     ["--model", "tiny-vlm", "--threads", "100000"], ["--model", "tiny-vlm", "--out", self.tmp],
                     ["--model", "tiny-vlm", "--tiles", "0", "--tokens", "20"], ["--model", "tiny-vlm", "--tiles", "6", "--tokens", "30", "--extra-load", "6,30"],
                     ["--model", "tiny-vlm", "--extra-load", "2,10", "--extra-load", "2,10,1"]):
            r = py("omnibal.profile", *args)
            self.assertEqual(r.returncode, 2, args)
            self.assertEqual(len(r.stderr.strip().splitlines()), 1, r.stderr)
            self.assertTrue(r.stderr.startswith("omnibal.profile: "), r.stderr)
        real, err = profile.profile_preset, sys.stderr
        def oom(*_a, **_k):
            raise RuntimeError("[enforce fail at alloc_cpu.cpp:75] DefaultCPUAllocator: can't allocate memory\nmore")
        profile.profile_preset, sys.stderr = oom, io.StringIO()
        try:
            rc, text = profile.main(["--model", "tiny-vlm"]), sys.stderr.getvalue()  # out of memory, simulated
        finally:
            profile.profile_preset, sys.stderr = real, err
        self.assertEqual((rc, len(text.strip().splitlines())), (2, 1), text)
        self.assertIn("measuring failed", text)
        # An --out that is a FIFO: refused before measuring (was: measured, then blocked for ever opening it).
        ran = []
        def record(*_a, **_k):
            ran.append(1)
            raise RuntimeError("measured")
        profile.profile_preset, sys.stderr = record, io.StringIO()
        try:
            fifo = os.path.join(self.tmp, "out.fifo")
            os.mkfifo(fifo)
            rc, text = profile.main(["--model", "tiny-vlm", "--out", fifo]), sys.stderr.getvalue()
        finally:
            profile.profile_preset, sys.stderr = real, err
        self.assertEqual((rc, text, ran), (2, "omnibal.profile: --out %s: a FIFO, not a regular file (writing it would block)\n" % fifo, []))
        if not torch.cuda.is_available():
            r = py("omnibal.profile", "--model", "tiny-vlm", "--device", "cuda")
            self.assertEqual(r.returncode, 2)
            self.assertIn("no CUDA", r.stderr)


@needs_torch
class GpuCheckCpuPath(unittest.TestCase):
    def test_tiny_cpu_path_writes_calibration_check_and_table(self):
        with tempfile.TemporaryDirectory() as out:
            r = py("omnibal.gpu_check", "--tiny", "--repeats", "1", "--clock", "cpu", "--out", out)
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertEqual(sorted(os.listdir(out)), ["calibration.json", "check.json", "table.md"])
            with open(os.path.join(out, "check.json")) as fh:
                doc = json.load(fh)
            self.assertEqual([x["kind"] for x in doc["rows"]], list(blocks.LAYER_KINDS))
            for x in doc["rows"]:
                self.assertGreater(x["measuredMs"], 0)
                if x["kind"] != "embed":
                    self.assertGreater(x["uncalibratedMs"], 0)
                    self.assertGreater(x["calibratedMs"], 0)
            self.assertEqual(doc["meta"]["torch"], torch.__version__)
            with open(os.path.join(out, "table.md")) as fh:
                self.assertIn("| vit.block.0 |", fh.read())
            self.assertIn("| llm.head |", r.stdout)
        r = py("omnibal.gpu_check", "--out", "/nonexistent/x", "--tiny", "--clock", "sundial")
        self.assertEqual(r.returncode, 2)
        self.assertEqual(len(r.stderr.strip().splitlines()), 1)

    def test_calibrated_per_layer_times_hold_at_another_load(self):
        # Calibrated at 8 tiles / 40 tokens and 2 / 10, predicted at 4 / 24 in 2 samples, thread
        # CPU time, the three loads interleaved (a burst of machine load falls on all alike),
        # medians of 25 runs. The target is 15% (npm run bench -- minirun reports it, 0.1% to
        # 13% here); this bound leaves room for a shared machine: 25%, or 0.15 ms for the
        # sub-millisecond layers (patch and token embedding, a few operators each). The old
        # model (time proportional to FLOPs) missed the patch embedding by -40%.
        with tempfile.TemporaryDirectory() as out:
            r = py("omnibal.gpu_check", "--tiny", "--repeats", "25", "--clock", "cpu", "--out", out)
            self.assertEqual(r.returncode, 0, r.stderr)
            with open(os.path.join(out, "check.json")) as fh:
                rows = json.load(fh)["rows"]
        for x in rows:
            err = abs(x["calibratedMs"] - x["checkMeasuredMs"])
            self.assertLessEqual(err, max(0.25 * x["checkMeasuredMs"], 0.15), x)

    def test_bad_flags_and_failures_exit_2_with_one_line(self):
        # --tiles 0: the profiler skips the vision layers there, so the check could not fit them.
        for args in (["--dtype", "float16"], ["--threads", "100000"], ["--tiles", "0"], ["--check-tiles", "0"]):
            r = py("omnibal.gpu_check", "--out", "/nonexistent/x", "--tiny", *args, timeout=60)
            self.assertEqual(r.returncode, 2, args)
            self.assertEqual(len(r.stderr.strip().splitlines()), 1, r.stderr)
        from omnibal import gpu_check

        real, err = gpu_check.run, sys.stderr
        def oom(*_a, **_k):
            raise RuntimeError("CUDA out of memory. Tried to allocate 20.00 GiB\nmore")
        gpu_check.run, sys.stderr = oom, io.StringIO()
        try:
            with tempfile.TemporaryDirectory() as out:
                rc, text = gpu_check.main(["--out", out, "--tiny"]), sys.stderr.getvalue()
        finally:
            gpu_check.run, sys.stderr = real, err
        self.assertEqual((rc, len(text.strip().splitlines())), (2, 1), text)
        self.assertIn("out of memory", text)

    def test_an_unusable_out_is_refused_before_profiling(self):
        from omnibal import gpu_check

        real, err = gpu_check.run, sys.stderr
        ran = []
        gpu_check.run, sys.stderr = (lambda *a, **k: ran.append(1)), io.StringIO()
        try:
            with tempfile.NamedTemporaryFile() as f:
                cases = [(f.name, "not a folder"), ("/dev/null", "not a folder"), (os.path.join(f.name, "sub"), "cannot make the folder")]
                for out, why in cases:
                    sys.stderr = io.StringIO()
                    rc, text = gpu_check.main(["--out", out, "--tiny"]), sys.stderr.getvalue()
                    self.assertEqual((rc, len(text.strip().splitlines())), (2, 1), text)
                    self.assertIn(why, text)
        finally:
            gpu_check.run, sys.stderr = real, err
        self.assertEqual(ran, [], "nothing is profiled for an --out that cannot be written")


if __name__ == "__main__":
    unittest.main()
