"""The GPU check: profile InternVL-Chat-1.5's blocks (InternViT-6B, the projector, InternLM2-20B,
its embedding and head) at real shapes in bf16 with SDPA (flash) attention on one GPU, compare
the measurements with omnibal's uncalibrated cost model, calibrate it at two loads (the given
one and about a quarter of it), and check the calibrated model against measurements at a third.

``python -m omnibal.gpu_check --out DIR`` (or ``scripts/gpu-calibrate.sh DIR``) writes

- ``DIR/calibration.json``: the calibration file (``omnibal plan --calibration``), with the
  date, GPU name and PyTorch version;
- ``DIR/check.json`` and ``DIR/table.md``: per layer kind the measured forward and backward,
  the uncalibrated prediction and its error at the calibration load, and the calibrated
  prediction (fixed cost + cost per FLOP, fitted at the calibration load and a quarter of it)
  and its error at the check load. The three loads are measured interleaved, so a change in
  the machine's load falls on all of them.

Needs PyTorch 2.x with CUDA and the standard library only; nothing is downloaded; a few minutes
on an H200 (each layer built once, ``--repeats`` timed runs after warm-up). ``--tiny`` runs the
same path on the CPU with the tiny preset (the test suite does, so the script cannot rot).
"""
import argparse
import json
import os
import sys
import time

try:
    import torch  # noqa: F401
except ImportError as _missing:  # the rest of the package works without PyTorch; this module does not
    if __name__ == "__main__":
        sys.stderr.write("omnibal.gpu_check: needs PyTorch (%s)\n" % _missing)
        sys.exit(2)
    raise

from . import blocks, profile


def _parser():
    class P(argparse.ArgumentParser):
        def error(self, message):
            raise profile.UsageError(message)

    p = P(prog="python -m omnibal.gpu_check", description=__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True, help="folder for calibration.json, check.json and table.md")
    p.add_argument("--model", default=None, help="model preset (default internvl-chat-1.5; tiny-vlm with --tiny)")
    p.add_argument("--gpu", default=None, help="GPU preset of the uncalibrated model (default H200; cpu with --tiny)")
    p.add_argument("--device", default=None, help="default cuda (cpu with --tiny)")
    p.add_argument("--dtype", default=None, help="default bfloat16 (float32 with --tiny)")
    p.add_argument("--tiles", type=int, default=None, help="calibration load: tiles (default 18)")
    p.add_argument("--tokens", type=int, default=None, help="calibration load: tokens (default 5000)")
    p.add_argument("--check-tiles", type=int, default=None, help="check load: tiles (default 9)")
    p.add_argument("--check-tokens", type=int, default=None, help="check load: tokens (default 2500)")
    p.add_argument("--check-samples", type=int, default=2, help="samples packed in the check micro-batch (default 2)")
    p.add_argument("--repeats", type=int, default=None, help="timed runs per layer (default 10; 3 with --tiny)")
    p.add_argument("--clock", default="wall", help="CPU timing: wall (default) or cpu (thread CPU time)")
    p.add_argument("--threads", type=int, default=None, help="CPU threads (default 1 with --tiny)")
    p.add_argument("--tiny", action="store_true", help="the CPU path with the tiny preset (for tests)")
    return p


def _defaults(a):
    tiny = a.tiny
    a.model = a.model or ("tiny-vlm" if tiny else "internvl-chat-1.5")
    a.gpu = a.gpu or ("cpu" if tiny else "H200")
    a.device = a.device or ("cpu" if tiny else "cuda")
    a.dtype = a.dtype or ("float32" if tiny else "bfloat16")
    a.tiles = a.tiles if a.tiles is not None else (8 if tiny else 18)
    a.tokens = a.tokens if a.tokens is not None else (40 if tiny else 5000)
    a.check_tiles = a.check_tiles if a.check_tiles is not None else (4 if tiny else 9)
    a.check_tokens = a.check_tokens if a.check_tokens is not None else (24 if tiny else 2500)
    a.repeats = a.repeats if a.repeats is not None else (3 if tiny else 10)
    a.threads = a.threads if a.threads is not None else (1 if tiny else None)
    cpus = os.cpu_count() or 1
    if a.threads is not None and not 1 <= a.threads <= cpus:
        raise profile.UsageError("--threads must be between 1 and %d (this machine's CPUs)" % cpus)
    if a.dtype == "float16" and a.device == "cpu":
        raise profile.UsageError("--dtype float16 needs a CUDA device (PyTorch's CPU kernels lack it); use bfloat16 or float32")
    if a.device.startswith("cuda") and not torch.cuda.is_available():
        raise profile.UsageError("--device %s: this PyTorch has no CUDA device (use --tiny for the CPU path)" % a.device)
    if a.clock not in ("wall", "cpu") or (a.clock == "cpu" and a.device != "cpu"):
        raise profile.UsageError("--clock must be wall, or cpu with the CPU device")
    if a.dtype not in profile.DTYPES:
        raise profile.UsageError("--dtype must be one of %s" % ", ".join(profile.DTYPES))
    if min(a.tiles, a.check_tiles) < 0 or min(a.tokens, a.check_tokens, a.repeats, a.check_samples) < 1:
        raise profile.UsageError("loads and --repeats must be positive")
    if min(a.tiles, a.check_tiles) < 1:
        # The check covers every layer kind; the vision layers do no work at 0 tiles (the profiler skips them there).
        raise profile.UsageError("--tiles and --check-tiles must be >= 1: the check times the vision layers too")
    try:
        blocks.load_spec(a.model)
        profile.load_gpu(a.gpu)
    except KeyError as e:
        raise profile.UsageError(e.args[0])
    # Checked before profiling, so that a GPU run is not lost to an --out it cannot write.
    if os.path.exists(a.out) and not os.path.isdir(a.out):
        raise profile.UsageError("--out %s: not a folder" % a.out)
    try:
        os.makedirs(a.out, exist_ok=True)
    except OSError as e:
        raise profile.UsageError("--out %s: cannot make the folder (%s)" % (a.out, e.strerror or e))
    if not os.access(a.out, os.W_OK):
        raise profile.UsageError("--out %s: not a writable folder" % a.out)
    return a


def run(a, progress=None):
    """Profiles, compares and writes the three files; returns the check document."""
    say = progress or (lambda _m: None)
    spec = blocks.load_spec(a.model)
    gpu = profile.load_gpu(a.gpu)
    t0 = time.time()
    if a.threads:
        torch.set_num_threads(a.threads)
    second = profile.second_load(spec, a.tiles, a.tokens, 1)
    check = (a.check_tiles, a.check_tokens, a.check_samples)
    say("profiling %s on %s (%s) at %d tiles / %d tokens and %d / %d (calibration), and %d / %d in %d samples (check), interleaved"
        % (a.model, a.device, a.dtype, a.tiles, a.tokens, second[0], second[1], check[0], check[1], check[2]))
    doc = profile.profile_preset(a.model, a.tiles, a.tokens, 1, a.device, a.dtype, a.repeats, 3, "step", progress=say, clock=a.clock, extra_loads=[second, check])
    if len(doc["loads"]) != 3:
        raise profile.UsageError("the check load must differ from the calibration loads")
    check_load = doc["loads"][-1]
    cal_loads = doc["loads"][:-1]
    strip = lambda l: {k: l[k] for k in ("tiles", "tokens", "sumSqLen")}  # noqa: E731
    cal = dict(doc, loads=cal_loads, layers=[l for l in doc["layers"] if l["load"] != strip(check_load)])
    rows = []
    for kind in blocks.LAYER_KINDS:
        mine = [l for l in doc["layers"] if l["kind"] == kind]
        c, k = mine[0], mine[-1]
        flops = lambda l: profile.model_forward_flops(spec, kind, l["load"]["tiles"], l["load"]["tokens"], l["load"]["sumSqLen"])  # noqa: E731
        flops_a, flops_b = flops(c), flops(k)
        measured_a = c["measuredForwardMs"] + c["backwardMs"]
        measured_b = k["measuredForwardMs"] + k["backwardMs"]
        uncal_f, uncal_b = profile.model_layer_ms(spec, gpu, kind, c["load"]["tiles"], c["load"]["tokens"], c["load"]["sumSqLen"])
        row = {
            "layer": c["name"], "kind": kind, "forwardTflop": flops_a / 1e12,
            "measuredForwardMs": c["measuredForwardMs"], "measuredBackwardMs": c["backwardMs"],
            "uncalibratedMs": uncal_f + uncal_b, "measuredMs": measured_a,
            "achievedTflops": 3 * flops_a / measured_a / 1e9 if measured_a > 0 else None,
            "checkMeasuredMs": measured_b,
        }
        row["uncalibratedErrorPct"] = 100 * (row["uncalibratedMs"] - measured_a) / measured_a if flops_a > 0 else None
        # Calibrated as omnibal does it (the Python twin of its fit): fixed cost + cost per
        # FLOP from the calibration loads, step time = 3 x the fitted forward.
        o, per = profile.fit_layer_cost([(flops(l), l["forwardMs"]) for l in mine if l is not k])
        row["calibratedMs"] = 3 * (o + per * flops_b)
        row["calibratedErrorPct"] = 100 * (row["calibratedMs"] - measured_b) / measured_b
        rows.append(row)
    meta = {
        "model": a.model, "gpuPreset": a.gpu, "device": cal["device"], "clock": cal["clock"], "dtype": a.dtype, "torch": torch.__version__,
        "sdpa": hasattr(torch.nn.functional, "scaled_dot_product_attention"), "date": cal["date"],
        "calibrationLoad": cal["load"], "calibrationLoads": [strip(l) for l in cal_loads], "checkLoad": strip(check_load), "repeats": a.repeats, "seconds": time.time() - t0,
    }
    doc = {"meta": meta, "rows": rows}
    os.makedirs(a.out, exist_ok=True)
    with open(os.path.join(a.out, "calibration.json"), "w") as fh:
        json.dump(cal, fh, indent=1)
    with open(os.path.join(a.out, "check.json"), "w") as fh:
        json.dump(doc, fh, indent=1)
    with open(os.path.join(a.out, "table.md"), "w") as fh:
        fh.write(format_table(doc) + "\n")
    return doc


def _pct(x):
    return "" if x is None else "%+.1f%%" % x


def format_table(doc):
    """The check as a Markdown table (forward + backward per layer, ms)."""
    m = doc["meta"]
    lines = [
        "%s on %s (%s, PyTorch %s, %s, %s), %s. Calibration loads %s (tiles / tokens); check load %d tiles / %d tokens (sum of squared lengths %d)."
        % (m["model"], m["device"], m["dtype"], m["torch"], m["clock"], "SDPA" if m["sdpa"] else "plain attention", m["date"], " and ".join("%d / %d" % (l["tiles"], l["tokens"]) for l in m["calibrationLoads"]), m["checkLoad"]["tiles"], m["checkLoad"]["tokens"], m["checkLoad"]["sumSqLen"]),
        "",
        "| layer | fwd TFLOP | measured fwd / bwd ms | uncalibrated model (%s) ms | measured fwd+bwd ms | error | calibrated at check load ms | measured ms | error |" % m["gpuPreset"],
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in doc["rows"]:
        lines.append("| %s | %.4g | %.3f / %.3f | %.3f | %.3f | %s | %s | %.3f | %s |" % (
            r["layer"], r["forwardTflop"], r["measuredForwardMs"], r["measuredBackwardMs"], r["uncalibratedMs"], r["measuredMs"],
            _pct(r["uncalibratedErrorPct"]), "" if r["calibratedMs"] is None else "%.3f" % r["calibratedMs"], r["checkMeasuredMs"], _pct(r["calibratedErrorPct"])))
    return "\n".join(lines)


def main(argv=None):
    """The ``python -m omnibal.gpu_check`` entry; returns the exit code (2 for bad flags)."""
    try:
        a = _defaults(_parser().parse_args(sys.argv[1:] if argv is None else argv))
    except profile.UsageError as e:
        sys.stderr.write("omnibal.gpu_check: %s\n" % e)
        return 2
    try:
        doc = run(a, progress=lambda msg: (sys.stderr.write("omnibal.gpu_check: %s\n" % msg), sys.stderr.flush()))
    except profile.UsageError as e:
        sys.stderr.write("omnibal.gpu_check: %s\n" % e)
        return 2
    except (RuntimeError, MemoryError, OSError) as e:  # out of memory at these shapes, an unwritable --out
        sys.stderr.write("omnibal.gpu_check: failed: %s\n" % (str(e).strip().splitlines() or [type(e).__name__])[0])
        return 2
    sys.stdout.write(format_table(doc) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
