"""Measured layer costs for omnibal's cost model: per layer forward and backward time and memory
of real PyTorch layers, written as the calibration file that ``omnibal plan --calibration`` and
``omnibal partition --calibration`` take.

Two ways in:

- ``python -m omnibal.profile --model NAME``: builds one layer of each kind of a model preset
  (presets/models.json) at its real shapes with random weights (:mod:`omnibal.blocks`; nothing is
  downloaded), measures it at ``--tiles`` image tiles and ``--tokens`` LLM tokens per
  micro-batch and at a second, smaller load (``--extra-load``; ``--one-load`` for none), and
  writes the calibration (``--out``, else stdout); progress goes to stderr.
- :func:`profile_layers` from Python: your own ``nn.Module`` layers (a Hugging Face model's
  ``layers``, say) and a function that makes each one's input.

How it measures: on a GPU, CUDA events around forward and backward and the peak allocated
memory; on the CPU (glibc's malloc thresholds fixed first, :func:`steady_allocator`), wall
clock (``time.perf_counter``) or the thread's CPU time, and the bytes autograd saves for the
backward (``torch.autograd.graph.saved_tensors_hooks`` in one extra untimed run, parameters left
out). Each figure is the
median of ``repeats`` runs after ``warmup`` runs.

What it writes (``"schema": "omnibal.calibration/2"``): ``layers`` (per layer and load:
``index`` into the cost model's layer table, ``forwardMs``, the ``load`` it was measured at,
plus the measured ``measuredForwardMs``/``backwardMs``), ``stageMemory`` (per measured ViT and
LLM block at the first load, one single-layer "stage": the layer input as the bytes kept under
recomputation, the saved bytes without) and ``load`` (the first load). With two loads or more
the cost model fits each layer kind's fixed cost (operator launches, small kernels: a large
share of a small layer's time) and its efficiency on the FLOPs. The loads are measured
interleaved (each round runs every load once). The cost model prices a
layer's backward at twice its forward, so by default (``--fit step``) ``forwardMs`` is a third
of the measured forward + backward: the fitted model then predicts training-step time, which is
what plans are ranked by; ``--fit forward`` writes the measured forward alone.

Needs PyTorch (the rest of the package does not).
"""
import argparse
import datetime
import json
import os
import stat
import statistics
import sys
import time

try:
    import torch  # noqa: F401
except ImportError as _missing:  # the rest of the package works without PyTorch; this module does not
    if __name__ == "__main__":
        sys.stderr.write("omnibal.profile: needs PyTorch (%s)\n" % _missing)
        sys.exit(2)
    raise

from . import blocks

#: The load ``omnibal plan`` assumes for a calibration without ``load`` (InternVL-style).
PLAN_LOAD = {"tiles": 18, "tokens": 5000}
#: The default measuring load for the tiny preset (a typical mini-run micro-batch).
TINY_LOAD = {"tiles": 8, "tokens": 40}

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


class UsageError(Exception):
    """A bad flag or option value (the CLI prints it on one line and exits 2)."""


def _first_tensor(y):
    if torch.is_tensor(y):
        return y
    if isinstance(y, (tuple, list)):
        for v in y:
            if torch.is_tensor(v):
                return v
    if isinstance(y, dict):
        for v in y.values():
            if torch.is_tensor(v):
                return v
    raise TypeError("the layer returned no tensor (got %s)" % type(y).__name__)


def _tensor_bytes(t):
    return t.numel() * t.element_size()


class _Saved:
    """Counts the bytes autograd saves for backward, each storage once, parameters excluded."""

    def __init__(self, params):
        self.params = {p.data_ptr() for p in params}
        self.seen = set()
        self.bytes = 0

    def pack(self, t):
        ptr = t.data_ptr()
        if ptr not in self.params and (ptr, t.numel()) not in self.seen:
            self.seen.add((ptr, t.numel()))
            self.bytes += _tensor_bytes(t)
        return t

    @staticmethod
    def unpack(t):
        return t


def _median(xs):
    return statistics.median(xs) if xs else float("nan")


def profile_layers(layers, make_input, repeats=10, warmup=2, device=None, names=None, progress=None):
    """Measures each layer's forward and backward time and memory.

    ``layers``: ``nn.Module`` objects (already on their device and dtype). ``make_input(i)``:
    the positional arguments of layer ``i``'s forward, a tuple (a lone tensor is wrapped);
    floating-point tensors among them get ``requires_grad`` so the backward computes the input
    gradient too, as inside a model. The backward starts from the output (the first tensor of
    a tuple output) with a gradient of ones, or from the scalar itself (a loss).

    Returns one dict per layer: ``name``, ``forwardMs`` and ``backwardMs`` (medians, ms),
    ``forwardSamplesMs``/``backwardSamplesMs`` (every timed run), ``inputBytes`` (the floating
    inputs), ``savedBytes`` (CPU: bytes saved for backward) or ``peakBytes`` (GPU: peak
    allocated during forward above what was allocated before, the output included) and
    ``params``. On the CPU also ``cpuForwardMs``/``cpuBackwardMs`` (and their samples): the
    thread's CPU time (``time.thread_time``), which other processes on a shared machine do not
    inflate (meaningful with one PyTorch thread).
    """
    out = []
    for i, layer in enumerate(layers):
        name = names[i] if names else "layer.%d" % i
        row = profile_layer_loads(layer, [lambda i=i: make_input(i)], repeats, warmup, device)[0]
        row = dict(name=name, **row)
        out.append(row)
        if progress:
            progress("%s: forward %.3f ms, backward %.3f ms" % (name, row["forwardMs"], row["backwardMs"]))
    return out


_ALLOCATOR_PINNED = []


def steady_allocator():
    """On Linux with glibc, fixes malloc's mmap and trim thresholds (32 MiB, 256 MiB) in this
    process, once: a freed buffer of a few hundred KiB (a gradient, say) is then reused instead
    of going back to the kernel and being faulted in afresh on the next run, whose cost (up to
    0.6 ms for the tiny token embedding's 0.8 MB gradient) otherwise comes and goes with the
    allocator's state. A long training process settles into that reuse anyway. Returns whether
    the thresholds are set (False elsewhere: nothing is changed)."""
    if not _ALLOCATOR_PINNED:
        ok = False
        if sys.platform.startswith("linux"):
            try:
                import ctypes

                libc = ctypes.CDLL("libc.so.6")
                # M_TRIM_THRESHOLD = -1, M_MMAP_THRESHOLD = -3 (malloc.h)
                ok = bool(libc.mallopt(-1, 256 << 20)) and bool(libc.mallopt(-3, 32 << 20))
            except (OSError, AttributeError):  # not glibc (musl), no libc.so.6
                ok = False
        _ALLOCATOR_PINNED.append(ok)
    return _ALLOCATOR_PINNED[0]


def profile_layer_loads(layer, makers, repeats=10, warmup=2, device=None):
    """Measures one layer at several inputs (``makers[j]()`` gives the arguments of input
    ``j``, as ``make_input`` of :func:`profile_layers`), interleaved: each round runs every
    input once, so a burst of load on a shared machine falls on all of them alike rather than
    on one. Returns one dict per input, the fields of :func:`profile_layers` less ``name``."""
    params = list(layer.parameters())
    dev = torch.device(device) if device is not None else (params[0].device if params else torch.device("cpu"))
    cuda = dev.type == "cuda"
    if not cuda:
        steady_allocator()
    k = len(makers)
    fwd, bwd, cfwd, cbwd = ([[] for _ in range(k)] for _ in range(4))
    saved, peak, input_bytes = [None] * k, [None] * k, [0] * k
    # Round -1 counts the saved bytes (the hooks cost time, so it is not timed).
    for r in range(-1 if not cuda else 0, warmup + repeats):
        for j, make in enumerate(makers):
            args = make()
            if not isinstance(args, tuple):
                args = (args,)
            args = tuple(a.detach().requires_grad_(True) if torch.is_tensor(a) and a.is_floating_point() else a for a in args)
            input_bytes[j] = sum(_tensor_bytes(a) for a in args if torch.is_tensor(a) and a.is_floating_point())
            for p in params:
                p.grad = None
            if cuda:
                torch.cuda.synchronize(dev)
                torch.cuda.reset_peak_memory_stats(dev)
                base = torch.cuda.memory_allocated(dev)
                e0, e1, e2 = (torch.cuda.Event(enable_timing=True) for _ in range(3))
                e0.record()
                y = _first_tensor(layer(*args))
                e1.record()
                torch.cuda.synchronize(dev)
                peak[j] = torch.cuda.max_memory_allocated(dev) - base
                y.backward(None if y.dim() == 0 else torch.ones_like(y))
                e2.record()
                torch.cuda.synchronize(dev)
                tf, tb = e0.elapsed_time(e1), e1.elapsed_time(e2)
            else:
                if r < 0:
                    counter = _Saved(params)
                    with torch.autograd.graph.saved_tensors_hooks(counter.pack, counter.unpack):
                        y = _first_tensor(layer(*args))
                    saved[j] = counter.bytes
                    y.backward(None if y.dim() == 0 else torch.ones_like(y))
                    continue
                t0, c0 = time.perf_counter(), time.thread_time()
                y = _first_tensor(layer(*args))
                t1, c1 = time.perf_counter(), time.thread_time()
                y.backward(None if y.dim() == 0 else torch.ones_like(y))
                t2, c2 = time.perf_counter(), time.thread_time()
                tf, tb = (t1 - t0) * 1e3, (t2 - t1) * 1e3
                if r >= warmup:
                    cfwd[j].append((c1 - c0) * 1e3)
                    cbwd[j].append((c2 - c1) * 1e3)
            del y
            if r >= warmup:
                fwd[j].append(tf)
                bwd[j].append(tb)
    out = []
    for j in range(k):
        row = {
            "forwardMs": _median(fwd[j]),
            "backwardMs": _median(bwd[j]),
            "forwardSamplesMs": fwd[j],
            "backwardSamplesMs": bwd[j],
            "inputBytes": input_bytes[j],
            "params": sum(p.numel() for p in params),
        }
        if saved[j] is not None:
            row["savedBytes"] = saved[j]
            row.update(cpuForwardMs=_median(cfwd[j]), cpuBackwardMs=_median(cbwd[j]), cpuForwardSamplesMs=cfwd[j], cpuBackwardSamplesMs=cbwd[j])
        if peak[j] is not None:
            row["peakBytes"] = peak[j]
        out.append(row)
    return out


# ---- the cost model's forward FLOPs (Python twin of src/model/vlm.ts, checked against it in
# the test suite) -------------------------------------------------------------------------


def _dense_flops(t, n):
    d = t["hidden"] / t["heads"]
    m = 3 if t["gated"] else 2
    h = t["hidden"]
    return 2 * n * (h * h + 2 * h * t["kvHeads"] * d + h * h + m * h * t["ffn"])


def model_forward_flops(spec, kind, tiles, tokens, sum_sq_len=None):
    """Forward FLOPs of one layer of ``kind`` for a micro-batch, as omnibal's cost model counts
    them (tp 1); ``sum_sq_len`` defaults to one sample (``tokens ** 2``)."""
    vit, llm = spec["vit"], spec["llm"]
    sq = tokens * tokens if sum_sq_len is None else sum_sq_len
    n_vit = tiles * spec["vitTokensPerTile"]
    n_img = tiles * spec["llmTokensPerTile"]
    if kind == "vit-embed":
        return 2 * n_vit * 3 * spec["patch"] ** 2 * vit["hidden"]
    if kind == "vit":
        return _dense_flops(vit, n_vit) + 4 * vit["hidden"] * tiles * spec["vitTokensPerTile"] ** 2
    if kind == "projector":
        return 2 * n_img * (spec["projectorIn"] * llm["hidden"] + llm["hidden"] ** 2)
    if kind == "embed":
        return 0.0
    if kind == "llm":
        return _dense_flops(llm, tokens) + 2 * llm["hidden"] * sq
    if kind == "head":
        return 2 * tokens * llm["hidden"] * llm["vocab"]
    raise ValueError("unknown layer kind %r" % kind)


def model_layer_ms(spec, gpu, kind, tiles, tokens, sum_sq_len=None):
    """The cost model's forward time of one layer (ms) on ``gpu`` (a presets/gpus.json entry:
    ``peakFlops`` and per-kind ``efficiency``); (forward, backward = 2 x forward)."""
    eff = gpu["efficiency"]["vit" if kind in ("vit-embed", "vit") else "llm" if kind in ("embed", "llm") else kind]
    f = model_forward_flops(spec, kind, tiles, tokens, sum_sq_len) / (gpu["peakFlops"] * eff) * 1e3
    return f, 2 * f


def load_gpu(name, presets=None):
    """A GPU preset from presets/gpus.json."""
    import os

    path = presets or os.path.join(blocks.ROOT, "presets", "gpus.json")
    with open(path) as fh:
        doc = json.load(fh)
    if name not in doc or name.startswith("$"):
        raise KeyError("unknown GPU %r; known: %s" % (name, ", ".join(k for k in doc if not k.startswith("$"))))
    return doc[name]


# ---- a preset's blocks ------------------------------------------------------------------


def representative_layers(spec):
    """One layer index per kind: the patch embedding, the first ViT block, the projector, the
    token embedding, the first LLM block and the head."""
    kinds = blocks.layer_kinds(spec)
    return [kinds.index(k) for k in blocks.LAYER_KINDS]


def split_tokens(spec, tiles, tokens, samples):
    """``samples`` packed samples sharing ``tiles`` tiles and ``tokens`` tokens as evenly as the
    integers allow (tiles per sample, lengths); every sample holds its image tokens and one
    text token at least."""
    if samples < 1 or samples > max(tokens, 1):
        raise UsageError("--samples must be between 1 and --tokens")
    tps = [tiles // samples + (1 if s < tiles % samples else 0) for s in range(samples)]
    need = [t * spec["llmTokensPerTile"] + 1 for t in tps]
    if sum(need) > tokens:
        raise UsageError("%d tokens cannot hold %d tiles of %d tokens each plus text (need %d at least)" % (tokens, tiles, spec["llmTokensPerTile"], sum(need)))
    extra = tokens - sum(need)
    lengths = [n + extra // samples + (1 if s < extra % samples else 0) for s, n in enumerate(need)]
    return tps, lengths


def layer_inputs(spec, index, batch, device, dtype):
    """The input of layer ``index`` for ``batch``: what the layer before it outputs (random)."""
    kind = blocks.layer_kinds(spec)[index]
    g = torch.Generator().manual_seed(1000 + index)
    hv, hl = spec["vit"]["hidden"], spec["llm"]["hidden"]

    def rnd(*shape):
        return torch.randn(*shape, generator=g).to(device=device, dtype=dtype)

    if kind == "vit-embed":
        return (None, batch)
    if kind in ("vit", "projector"):
        return (rnd(batch.tiles, spec["vitTokensPerTile"], hv), batch)
    if kind == "embed":
        return (rnd(batch.tiles * spec["llmTokensPerTile"], hl), batch)
    return (rnd(1, batch.tokens, hl), batch)


#: Layer kinds whose work is the image tiles (none at 0 tiles).
VISION_KINDS = ("vit-embed", "vit", "projector")


def second_load(spec, tiles, tokens, samples):
    """The profiler's default second load: about a quarter of the first (at least one tile when
    there are tiles, one sample, and room for the image tokens plus one text token), so the fit
    sees a layer's fixed cost apart from its cost per FLOP."""
    t = max(1, int(round(tiles / 4.0))) if tiles > 0 else 0
    s = max(1, int(round(samples / 4.0)))
    n = max(t * spec["llmTokensPerTile"] + s, int(round(tokens / 4.0)))
    return t, n, s


def fit_layer_cost(points):
    """Python twin of the cost model's fit (``fit_layer_cost`` in crate/core/src/model/
    calibrate.rs): ``points`` are ``(x, t)`` pairs of one layer kind, ``x`` its forward FLOPs
    (any unit) and ``t`` its measured time; returns ``(overhead, per_x)`` with ``t ~ overhead +
    per_x * x``, least squares over two loads or more, through the origin when the intercept
    would be negative or the loads are one."""
    n = float(len(points))
    mx = sum(x for x, _ in points) / n
    my = sum(t for _, t in points) / n
    if max(x for x, _ in points) <= 0:
        return my, 0.0
    sxx = sum((x - mx) ** 2 for x, _ in points)
    sxy = sum((x - mx) * (t - my) for x, t in points)
    if sxx > 1e-12 * mx * mx * n:
        slope = sxy / sxx
        o = my - slope * mx
        if slope > 0 and o >= 0:
            return o, slope
    return 0.0, sum(x * t for x, t in points) / sum(x * x for x, _ in points)


def profile_preset(model, tiles, tokens, samples=1, device="cpu", dtype="float32", repeats=10, warmup=2, fit="step", seed=0, progress=None, keep_samples=False, clock="wall", extra_loads=None):
    """Profiles one layer of each kind of ``model`` at ``tiles`` tiles and ``tokens`` tokens
    (``samples`` packed samples) and at each of ``extra_loads`` (``(tiles, tokens, samples)``;
    default one, :func:`second_load`; ``[]`` for none), the loads interleaved, and returns the
    calibration document (format 2: every layer time with its ``load``; see the module doc);
    ``keep_samples`` adds every timed run under ``samples``; ``clock`` ``cpu`` (CPU only) fits
    the thread's CPU time instead of the wall clock."""
    if clock not in ("wall", "cpu") or (clock == "cpu" and device != "cpu"):
        raise UsageError("--clock must be wall, or cpu with --device cpu")
    if fit not in ("step", "forward"):
        raise UsageError("--fit must be step or forward, got %r" % fit)
    if dtype not in DTYPES:
        raise UsageError("--dtype must be one of %s, got %r" % (", ".join(DTYPES), dtype))
    spec = blocks.load_spec(model)
    tdtype = DTYPES[dtype]
    if extra_loads is None:
        extra_loads = [second_load(spec, tiles, tokens, samples)]
    wanted = [(tiles, tokens, samples)] + [tuple(x) for x in extra_loads]
    load_list = []
    batches = []
    for t, n, m in wanted:
        tps, lengths = split_tokens(spec, t, n, m)
        load = {"tiles": t, "tokens": n, "sumSqLen": sum(x * x for x in lengths), "samples": m}
        if load in load_list:
            # The same load twice measures nothing new (the default second load of a tiny first
            # load can be the first): said, since the fit then has one load.
            if progress:
                progress("the load of %d tiles, %d tokens in %d samples is measured once (given twice); one load: time proportional to FLOPs, no fixed cost fitted" % (t, n, m)
                         if len(load_list) == 1 and len(wanted) == 2 else "the load of %d tiles, %d tokens in %d samples is measured once (given twice)" % (t, n, m))
            continue
        load_list.append(load)
        batches.append(blocks.MicroBatch(spec, tps, lengths, seed=seed, device=device, dtype=tdtype))
    names = blocks.layer_names(spec)
    kinds = blocks.layer_kinds(spec)
    picks = representative_layers(spec)
    torch.manual_seed(seed)
    rows = []
    for i in picks:
        # A vision layer at 0 tiles has no input and does no work: its time would calibrate
        # nothing (omnibal rejects a vision kind timed only there), so it is not timed there.
        timed = [j for j, load in enumerate(load_list) if load["tiles"] > 0 or kinds[i] not in VISION_KINDS]
        if not timed:
            if progress:
                progress("skipping %s (%s): no tiles at any load, nothing to time" % (names[i], kinds[i]))
            continue
        if progress:
            progress("building %s (%s)" % (names[i], kinds[i]))
        layer = blocks.build_layer(spec, i).to(device=device, dtype=tdtype)
        inputs = [layer_inputs(spec, i, batches[j], device, tdtype) for j in timed]
        got = profile_layer_loads(layer, [lambda a=a: a for a in inputs], repeats=repeats, warmup=warmup, device=device)
        for load, r in zip([load_list[j] for j in timed], got):
            r.update(name=names[i], index=i, kind=kinds[i], load=load)
            rows.append(r)
            if progress:
                progress("%s at %d tiles, %d tokens: forward %.3f ms, backward %.3f ms" % (names[i], load["tiles"], load["tokens"], r["forwardMs"], r["backwardMs"]))
        del layer
        if device.startswith("cuda"):
            torch.cuda.empty_cache()
    layers = []
    stage_memory = []
    for r in rows:
        if clock == "cpu":
            r = dict(r, forwardMs=r["cpuForwardMs"], backwardMs=r["cpuBackwardMs"], forwardSamplesMs=r["cpuForwardSamplesMs"], backwardSamplesMs=r["cpuBackwardSamplesMs"])
        entry = {
            "index": r["index"],
            "name": r["name"],
            "kind": r["kind"],
            "load": {k: r["load"][k] for k in ("tiles", "tokens", "sumSqLen")},
            "samples": r["load"]["samples"],
            "forwardMs": (r["forwardMs"] + r["backwardMs"]) / 3 if fit == "step" else r["forwardMs"],
            "measuredForwardMs": r["forwardMs"],
            "backwardMs": r["backwardMs"],
            "inputBytes": r["inputBytes"],
            "params": r["params"],
        }
        if "cpuForwardMs" in r:
            entry.update(cpuForwardMs=r["cpuForwardMs"], cpuBackwardMs=r["cpuBackwardMs"])
        mem = r.get("savedBytes", r.get("peakBytes"))
        entry["savedBytes" if "savedBytes" in r else "peakBytes"] = mem
        layers.append(entry)
        # Stage memory at the first load (the fit compares it with the model at `load`).
        if r["kind"] in ("vit", "llm") and mem is not None and r["load"] == load_list[0]:
            stage_memory.append({"firstLayer": r["index"], "lastLayer": r["index"], "inFlight": 1, "fullRecomputeBytes": r["inputBytes"], "noRecomputeBytes": max(mem, r["inputBytes"])})
    extra = {"samples": [{"forward": r["forwardSamplesMs"], "backward": r["backwardSamplesMs"], "cpuForward": r.get("cpuForwardSamplesMs"), "cpuBackward": r.get("cpuBackwardSamplesMs")} for r in rows]} if keep_samples else {}
    dev_name = torch.cuda.get_device_name(torch.device(device)) if device.startswith("cuda") else "cpu (%d threads)" % torch.get_num_threads()
    first = load_list[0]
    return {
        "schema": "omnibal.calibration/2",
        "model": model if isinstance(model, str) else "custom",
        "device": dev_name,
        "dtype": dtype,
        "torch": torch.__version__,
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "fit": fit,
        "clock": "cuda events" if device.startswith("cuda") else "thread cpu time" if clock == "cpu" else "wall",
        "repeats": repeats,
        "load": {k: first[k] for k in ("tiles", "tokens", "sumSqLen")},
        "loads": load_list,
        "layers": layers,
        "stageMemory": stage_memory,
        **extra,
    }


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        raise UsageError(message)


def _parser():
    p = _Parser(prog="python -m omnibal.profile", description=__doc__.split("\n\n")[0])
    p.add_argument("--model", required=True, help="model preset (presets/models.json), e.g. tiny-vlm, internvl-chat-1.5")
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default cpu)")
    p.add_argument("--dtype", default=None, help="float32, bfloat16 or float16 (default: bfloat16 on a GPU, float32 on the CPU)")
    p.add_argument("--tiles", type=int, default=None, help="image tiles per micro-batch (default 18, tiny-vlm 8)")
    p.add_argument("--tokens", type=int, default=None, help="LLM tokens per micro-batch (default 5000, tiny-vlm 40)")
    p.add_argument("--samples", type=int, default=1, help="samples packed in the micro-batch (attention per sample; default 1)")
    p.add_argument("--extra-load", action="append", default=None, metavar="TILES,TOKENS[,SAMPLES]", help="also measure at this load (repeatable; default: about a quarter of --tiles/--tokens, so the fit separates each layer's fixed cost from its cost per FLOP)")
    p.add_argument("--one-load", action="store_true", help="measure at --tiles/--tokens only (time proportional to FLOPs, no fixed cost)")
    p.add_argument("--repeats", type=int, default=10, help="timed runs per layer (median; default 10)")
    p.add_argument("--warmup", type=int, default=2, help="untimed runs first (default 2)")
    p.add_argument("--threads", type=int, default=None, help="CPU threads (torch.set_num_threads)")
    p.add_argument("--fit", default="step", help="step (forwardMs = (forward + backward) / 3, default) or forward")
    p.add_argument("--clock", default="wall", help="CPU timing: wall (default) or cpu (the thread's CPU time, steady on a shared machine)")
    p.add_argument("--out", default=None, help="write the calibration here (default: stdout)")
    p.add_argument("--allow-large-model", action="store_true", help="on the CPU, profile layers whose timed runs would take more than 30 minutes or half of this machine's memory (refused otherwise, with the estimate)")
    return p


def parse_args(argv):
    """Parses CLI flags; raises :class:`UsageError` on bad ones."""
    a = _parser().parse_args(argv)
    tiny = a.model.startswith("tiny")
    a.tiles = (TINY_LOAD if tiny else PLAN_LOAD)["tiles"] if a.tiles is None else a.tiles
    a.tokens = (TINY_LOAD if tiny else PLAN_LOAD)["tokens"] if a.tokens is None else a.tokens
    if a.tiles < 0 or a.tokens < 1:
        raise UsageError("--tiles must be >= 0 and --tokens >= 1")
    if a.one_load and a.extra_load:
        raise UsageError("--one-load and --extra-load exclude each other")
    extra = []
    for text in a.extra_load or []:
        parts = text.split(",")
        try:
            nums = [int(x) for x in parts]
        except ValueError:
            nums = []
        if len(nums) not in (2, 3) or nums[0] < 0 or min(nums[1:]) < 1:
            raise UsageError("--extra-load must be TILES,TOKENS[,SAMPLES] (integers, tokens and samples >= 1), got %r" % text)
        load = tuple(nums) if len(nums) == 3 else (nums[0], nums[1], 1)
        if load == (a.tiles, a.tokens, a.samples) or load in extra:
            raise UsageError("--extra-load %s is a load already measured (%d tiles, %d tokens, %d samples): it would measure nothing new" % (text, load[0], load[1], load[2]))
        extra.append(load)
    a.extra_loads = [] if a.one_load else (extra or None)
    if a.tiles == 0 and not any(t > 0 for t, _, _ in extra):
        raise UsageError("--tiles 0 measures none of the vision layers (patch embedding, ViT, projector): the calibration would leave the ViT on the guessed "
                         "efficiency; give --tiles >= 1 (or an --extra-load with tiles), or profile_layers() for the LLM alone")
    if a.repeats < 1 or a.warmup < 0:
        raise UsageError("--repeats must be >= 1 and --warmup >= 0")
    if not (a.device == "cpu" or a.device == "cuda" or a.device.startswith("cuda:")):
        raise UsageError("--device must be cpu, cuda or cuda:N, got %r" % a.device)
    if a.device.startswith("cuda") and not torch.cuda.is_available():
        raise UsageError("--device %s: this PyTorch has no CUDA device" % a.device)
    a.dtype = a.dtype or ("bfloat16" if a.device.startswith("cuda") else "float32")
    if a.dtype not in DTYPES:
        raise UsageError("--dtype must be one of %s, got %r" % (", ".join(DTYPES), a.dtype))
    if a.fit not in ("step", "forward"):
        raise UsageError("--fit must be step or forward, got %r" % a.fit)
    if a.clock not in ("wall", "cpu") or (a.clock == "cpu" and a.device != "cpu"):
        raise UsageError("--clock must be wall, or cpu with --device cpu")
    if a.dtype == "float16" and a.device == "cpu":
        raise UsageError("--dtype float16 needs --device cuda (PyTorch's CPU kernels lack it); use bfloat16 or float32")
    cpus = os.cpu_count() or 1
    if a.threads is not None and not 1 <= a.threads <= cpus:
        raise UsageError("--threads must be between 1 and %d (this machine's CPUs)" % cpus)
    if a.out is not None:
        if os.path.exists(a.out) and (stat.S_ISFIFO(os.stat(a.out).st_mode) or stat.S_ISSOCK(os.stat(a.out).st_mode)):
            raise UsageError("--out %s: a %s, not a regular file (writing it would block)" % (a.out, "FIFO" if stat.S_ISFIFO(os.stat(a.out).st_mode) else "socket"))
        parent = os.path.dirname(os.path.abspath(a.out))
        if os.path.isdir(a.out) or not os.path.isdir(parent) or not os.access(parent, os.W_OK):
            raise UsageError("--out %s: not a writable file path" % a.out)
    try:
        spec = blocks.load_spec(a.model)
    except KeyError as e:
        raise UsageError(e.args[0])
    if a.device == "cpu":
        loads = 1 + (len(a.extra_loads) if a.extra_loads is not None else 1)
        large = cpu_size_check(a.model, spec, a.tiles, a.tokens, a.samples, a.warmup + a.repeats, loads, a.allow_large_model,
                               extra_loads=a.extra_loads, elem=torch.empty(0, dtype=DTYPES[a.dtype]).element_size())
        if large:
            _progress("--allow-large-model: profiling anyway: %s" % large)
    return a


def layer_run_bytes(spec, kind, tiles, lengths, elem=4):
    """Bytes one forward + backward of a layer of ``kind`` allocates at ``tiles`` tiles and
    packed samples of ``lengths`` tokens, ``elem`` bytes per element (4: float32), for the CPU
    profile's memory guard: its weights and gradients, its input and output with their
    gradients, the activations autograd saves and the backward's gradients of them (about twice
    the forward's, counted per kind from :mod:`omnibal.blocks`), and the attention matrices of
    the plain softmax attention (PyTorch 1.x, and the math kernel of 2.x on the CPU): one
    ``heads x n x n`` softmax saved per packed sample (per tile in the ViT) and two more of the
    largest alive at once (scores and their masked copy; in the backward, the gradients). On
    PyTorch 1.13 it is within 4% of the measured peak of a tiny-vlm profile at 8 tiles and
    4,000 or 8,000 tokens in one sample (0.86 and 3.23 GB of resident memory above the
    interpreter's, 0.83 and 3.20 GB estimated); omnibal's cost model does not use it."""
    from .validate import layer_params  # validate imports this module lazily

    vit, llm = spec["vit"], spec["llm"]
    tokens = sum(lengths)
    n_vit, n_img = tiles * spec["vitTokensPerTile"], tiles * spec["llmTokensPerTile"]
    attn = 0
    if kind == "vit-embed":
        acts = tiles * 3 * spec["tilePixels"] ** 2 + 4 * n_vit * vit["hidden"]
    elif kind == "vit":
        acts = n_vit * (10 * vit["hidden"] + 3 * vit["ffn"])
        attn = 3 * tiles * vit["heads"] * spec["vitTokensPerTile"] ** 2  # every tile's at once
    elif kind == "projector":
        acts = 2 * n_vit * vit["hidden"] + n_img * (3 * spec["projectorIn"] + 4 * llm["hidden"])
    elif kind == "embed":
        acts = 3 * max(n_img, tokens) * llm["hidden"]
    elif kind == "llm":
        biggest = max(lengths) if lengths else 0
        acts = tokens * (10 * llm["hidden"] + 4 * llm["ffn"])
        attn = llm["heads"] * (sum(n * n for n in lengths) + 2 * biggest * biggest)
    elif kind == "head":
        acts = 3 * tokens * llm["hidden"] + 4 * tokens * llm["vocab"]
    else:
        raise ValueError("unknown layer kind %r" % kind)
    return elem * (2 * layer_params(spec, kind) + 2 * acts + attn)


def cpu_size_check(model, spec, tiles, tokens, samples, runs, loads, allow, extra_loads=None, elem=4):
    """Refuses (:class:`UsageError`) a CPU profile of ``model`` whose timed runs would take more
    than ``validate.MAX_RUN_S`` of CPU time (forward + backward, 3 x the forward FLOPs of each
    distinct layer kind, ``runs`` times at each of ``loads`` loads, at ``validate
    .ASSUMED_CPU_FLOPS``) or whose largest layer run (:func:`layer_run_bytes`: weights,
    gradients, activations and attention matrices, at the largest of the first load and
    ``extra_loads``) would exceed ``validate.MAX_MEMORY_SHARE`` of the machine's memory, unless
    ``allow``; returns the line that describes the estimate when it is over, else None."""
    from . import validate  # its guard's constants and parameter counts (validate imports this module lazily)

    kinds = sorted(set(blocks.layer_kinds(spec)))
    per = max(tokens // max(samples, 1), 1)
    flops = sum(3 * model_forward_flops(spec, k, tiles, tokens, samples * per * per) for k in kinds)
    seconds = flops * runs * loads / validate.ASSUMED_CPU_FLOPS
    layer_bytes, worst = 0, kinds[0]
    for t, n, m in [(tiles, tokens, samples)] + [tuple(x) for x in extra_loads or []]:
        _, lengths = split_tokens(spec, t, n, m)
        for k in kinds:
            b = layer_run_bytes(spec, k, t, lengths, elem)
            if b > layer_bytes:
                layer_bytes, worst = b, k
    machine = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    what = "profiling %s on the CPU at %d tiles / %d tokens takes about %s of CPU time (%d runs at %d loads of its %d layer kinds, estimated at %.0f GFLOP/s) and %.1f GB for its largest layer run (%s: weights, gradients, activations and attention matrices; this machine has %.1f GB)" % (
        model, tiles, tokens, validate._duration(seconds), runs, loads, len(kinds), validate.ASSUMED_CPU_FLOPS / 1e9, layer_bytes / 1e9, worst, machine / 1e9)
    if seconds <= validate.MAX_RUN_S and layer_bytes <= validate.MAX_MEMORY_SHARE * machine:
        return None
    if not allow:
        raise UsageError("%s: more than %d minutes or %d%% of the memory; profile it on a GPU (--device cuda), at a smaller load, or pass --allow-large-model" % (
            what, validate.MAX_RUN_S / 60, 100 * validate.MAX_MEMORY_SHARE))
    return what


def _progress(msg):
    sys.stderr.write("omnibal.profile: %s\n" % msg)
    sys.stderr.flush()


def main(argv=None):
    """The ``python -m omnibal.profile`` entry; returns the exit code (2 for bad flags)."""
    try:
        a = parse_args(sys.argv[1:] if argv is None else argv)
        if a.threads:
            torch.set_num_threads(a.threads)
        doc = profile_preset(a.model, a.tiles, a.tokens, a.samples, a.device, a.dtype, a.repeats, a.warmup, a.fit, progress=_progress, clock=a.clock, extra_loads=a.extra_loads)
    except UsageError as e:
        sys.stderr.write("omnibal.profile: %s\n" % e)
        return 2
    except (RuntimeError, MemoryError) as e:  # out of memory at these shapes, an unsupported kernel
        sys.stderr.write("omnibal.profile: measuring failed: %s\n" % (str(e).strip().splitlines() or [type(e).__name__])[0])
        return 2
    text = json.dumps(doc, indent=1) + "\n"
    if a.out:
        try:
            with open(a.out, "w") as fh:
                fh.write(text)
        except OSError as e:
            sys.stderr.write("omnibal.profile: cannot write %s (%s)\n" % (a.out, e.strerror))
            return 2
        _progress("wrote %s" % a.out)
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
