"""A real mini-run that checks omnibal's predictions against measured times on this machine.

``python -m omnibal.validate --model tiny-vlm --json`` trains the tiny preset with
``torch.distributed`` (gloo over loopback, two processes, one thread each):

1. It profiles the model's layers (:mod:`omnibal.profile`) at the mean micro-batch of the data
   and at the profiler's second load (about a quarter of it), so each layer kind gets a fixed
   cost and an efficiency, and uses that calibration for every prediction below.
2. Data parallel, 2 ranks: the same samples batched two ways by ``omnibal pack`` (``random``
   fixed-size batches, and the ``balanced`` plan), real per-sample lengths scaled down to the
   tiny model (``--lengths`` files, else the shared length files, else synthetic data with the
   same statistics, said in the output). Measured: per step the slowest rank's compute time
   (forward + backward of its micro-batches; the gradient all-reduce after it is timed
   apart). Predicted: omnibal's calibrated cost model summed over each rank's micro-batches.
3. Pipeline, 2 stages, a real 1F1B schedule (isend/recv of activations and gradients between
   the processes): the naive splits (``uniform`` by layer count as Megatron, ``parameters`` as
   DeepSpeed) and omnibal's ``optimal`` split, each from ``omnibal partition --calibration``.
   Measured: the iteration's wall time (the slower process). Predicted: the partition's
   ``objectiveMs``. The losses of every split are compared (same weights, same data).

A model whose mini-run would take more than half of the machine's memory or 30 minutes of
CPU time (``internvl-chat-1.5``: 26B parameters, ~400 GB in fp32 across the two processes) is
refused before anything is built, exit 2 with the estimate, unless ``--allow-large-model``.

Every measured figure is the median over ``--repeats`` runs after one warm-up. Output: JSON
``{"runs": [{"name", "predictedMs", "measuredMs", ...}], "speedups": {...}, ...}`` with
``--json``, else a table. Needs PyTorch and the built CLI (``dist/src/cli/main.js``).
"""
import argparse
import glob
import json
import os
import random
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time

try:
    import torch  # noqa: F401
    from torch.multiprocessing.spawn import ProcessException
except ImportError as _missing:  # the rest of the package works without PyTorch; this module does not
    if __name__ == "__main__":
        sys.stderr.write("omnibal.validate: needs PyTorch (%s)\n" % _missing)
        sys.exit(2)
    raise

from . import blocks

CLI = os.path.join(blocks.ROOT, "dist", "src", "cli", "main.js")
#: The GPU preset of the mini-run: one CPU thread per rank, a nominal peak whose efficiencies the
#: calibration replaces (the peak cancels out).
GPU = "cpu"
#: Real tokens per tiny token: InternVL's 256 image tokens per tile become tiny-vlm's 4.
TOKEN_SCALE = 64


#: Per-thread CPU speed the size guard assumes for its time estimate, FLOP/s (tiny-vlm's blocks
#: reach 2 to 10 GFLOP/s per thread on this project's machines; a larger model's wider blocks a
#: little more). Used for the estimate only, never for a prediction.
ASSUMED_CPU_FLOPS = 1e10
#: The longest mini-run the size guard lets start without ``--allow-large-model``, s.
MAX_RUN_S = 1800.0
#: The share of the machine's memory the mini-run's two processes may take without the flag.
MAX_MEMORY_SHARE = 0.5


class UsageError(Exception):
    """A bad flag (the CLI prints it on one line and exits 2)."""


def layer_params(spec, kind):
    """Parameters of one layer of ``kind`` (weights of the matrices; norms and biases left out)."""
    vit, llm = spec["vit"], spec["llm"]

    def block(t):
        h, d = t["hidden"], t["hidden"] / t["heads"]
        return 2 * h * h + 2 * h * t["kvHeads"] * d + (3 if t["gated"] else 2) * h * t["ffn"]

    return {"vit-embed": 3 * spec["patch"] ** 2 * vit["hidden"], "vit": block(vit) if kind == "vit" else 0, "projector": spec["projectorIn"] * llm["hidden"] + llm["hidden"] ** 2,
            "embed": llm["vocab"] * llm["hidden"], "llm": block(llm) if kind == "llm" else 0, "head": llm["hidden"] * llm["vocab"]}[kind]


def run_estimate(spec, steps, accum, per_pack, pp_micro, repeats, machine_bytes=None):
    """What a mini-run of ``spec`` costs on this machine, for the size guard: ``params``,
    ``bytes`` (fp32 weights and gradients of the whole model in each of the 2 processes: data
    parallelism holds it whole), ``seconds`` (CPU time of each process at
    :data:`ASSUMED_CPU_FLOPS`: forward + backward, 3 x the forward FLOPs, of every micro-batch it
    runs, warm-ups included, at a micro-batch of 2 tiles and 16 text tokens per sample) and
    ``machineBytes`` (physical memory)."""
    kinds = blocks.layer_kinds(spec)
    params = sum(layer_params(spec, k) for k in kinds)
    from .profile import model_forward_flops  # the cost model's FLOPs (tested equal to it)

    tiles = 2 * per_pack
    tokens = per_pack * (2 * spec["llmTokensPerTile"] + 16)
    step_flops = 3 * sum(model_forward_flops(spec, k, tiles, tokens, per_pack * (tokens // per_pack) ** 2) for k in kinds)
    # Data parallel: 2 plans x (warm-up + repeats) x steps x accum micro-batches per process;
    # pipeline: 3 splits x (warm-up + repeats) x micro-batches, half the model per process.
    passes = 2 * (1 + repeats) * steps * accum + 3 * (1 + repeats) * pp_micro / 2.0
    if machine_bytes is None:
        machine_bytes = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    return {"params": params, "bytes": 2 * 8 * params, "seconds": passes * step_flops / ASSUMED_CPU_FLOPS, "machineBytes": machine_bytes}


def check_size(model, estimate, allow):
    """Refuses (:class:`UsageError`) a model whose mini-run would take more than
    :data:`MAX_MEMORY_SHARE` of the machine's memory or :data:`MAX_RUN_S` of CPU time, unless
    ``allow``; returns the line that describes the estimate."""
    e = estimate
    what = "%s has %.3g billion parameters: its mini-run needs about %.1f GB (fp32 weights and gradients in each of 2 processes; this machine has %.1f GB) and about %s of CPU time per process (estimated at %.0f GFLOP/s per thread)" % (
        model, e["params"] / 1e9, e["bytes"] / 1e9, e["machineBytes"] / 1e9, _duration(e["seconds"]), ASSUMED_CPU_FLOPS / 1e9)
    too_big = e["bytes"] > MAX_MEMORY_SHARE * e["machineBytes"] or e["seconds"] > MAX_RUN_S
    if too_big and not allow:
        raise UsageError("%s, more than this machine should give a CPU mini-run (%d%% of its memory, %d minutes); the mini-run is meant for tiny-vlm: pass --allow-large-model to run it anyway" % (
            what, 100 * MAX_MEMORY_SHARE, MAX_RUN_S / 60))
    return what if too_big else None


def _duration(s):
    return "%.0f s" % s if s < 120 else "%.0f minutes" % (s / 60) if s < 7200 else "%.0f hours" % (s / 3600) if s < 172800 else "%.0f days" % (s / 86400)


def lengths_dirs():
    """Where the shared length files may be: $OMNIBAL_SHARED_LENGTHS when set, else
    shared/data/lengths beside or above the checkout."""
    env = os.environ.get("OMNIBAL_SHARED_LENGTHS")
    if env:
        return [env]
    cands = []
    for up in ("..", os.path.join("..", ".."), os.path.join("..", "..", "..")):
        cands.append(os.path.normpath(os.path.join(blocks.ROOT, up, "shared", "data", "lengths")))
    return cands


def read_lengths(paths=None):
    """Per-sample (tiles, tokens) pairs from reference-format JSON files (``vit_num``,
    ``token_num``), and a note of where they came from; ``None`` pairs when none are found."""
    files = list(paths or [])
    if not files:
        for d in lengths_dirs():
            found = sorted(glob.glob(os.path.join(d, "*.json")))
            if found:
                files = found
                break
    pairs = []
    for f in files:
        with open(f) as fh:
            try:
                doc = json.load(fh)
            except ValueError as e:
                raise UsageError("%s: not JSON (%s)" % (f, e))
        if not isinstance(doc, list):
            raise UsageError("%s: not a list of {vit_num, token_num} objects" % f)
        try:
            for r in doc:
                pairs.append((int(r["vit_num"]), int(r["token_num"])))
        except (KeyError, TypeError, ValueError, OverflowError):
            raise UsageError("%s: not a list of {vit_num, token_num} objects" % f)
    return (pairs, "lengths from %s" % ", ".join(os.path.basename(f) for f in files)) if pairs else (None, None)


def synthetic_lengths(n, seed):
    """Synthetic (tiles, tokens) with the real data's shape: 1-5 tiles, 256 tokens per tile plus
    a text part of about 100 tokens (used only when no length file is found)."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        t = rng.randint(1, 5)
        out.append((t, 256 * t + int(rng.expovariate(1 / 100.0)) + 1))
    return out


def scale_down(spec, pairs):
    """Real (tiles, tokens) scaled to the tiny model: tiles kept, tokens divided by
    ``TOKEN_SCALE`` (image tokens go 256 to 4 per tile), at least the image tokens plus one."""
    per = spec["llmTokensPerTile"]
    return [(t, max(t * per + 1, int(round(n / TOKEN_SCALE)))) for t, n in pairs]


def node(args, stdin=None):
    """Runs the omnibal CLI (or ``node -e``) and returns its stdout; raises with its one-line error."""
    if not os.path.exists(CLI):
        raise UsageError("the omnibal CLI is not built (%s missing): run npm run build" % CLI)
    r = subprocess.run(["node"] + args, input=stdin, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=300)
    if r.returncode != 0:
        raise RuntimeError("node %s failed: %s" % (args[0] if args[0] != "-e" else "-e", " / ".join([ln for ln in r.stderr.strip().splitlines() if "Error" in ln or "[ERR_OMNIBAL_" in ln][:2]) or "exit %d" % r.returncode))
    return r.stdout


_PREDICT_JS = r"""
const o = require(process.argv[1]);
const inp = JSON.parse(require('fs').readFileSync(0, 'utf8'));
const cal = o.calibrate(inp.model, inp.gpu, { load: inp.calibration.load }, inp.calibration);
const out = inp.loads.map((load) => {
  const t = o.vlmLayers(inp.model, cal.gpu, { load });
  let s = 0;
  for (let i = 0; i < t.forwardMs.length; i++) s += t.forwardMs[i] + t.backwardMs[i];
  return s;
});
let splits = [];
if (inp.pp) {
  const problem = o.applyCalibration(o.vlmStageProblem({ model: inp.model, gpu: cal.gpu, pp: inp.pp.stages, microBatches: inp.pp.microBatches, load: inp.pp.load, recompute: 'none' }), cal);
  splits = inp.pp.splits.map((last) => { const p = o.evaluateSplit(problem, last); return { objectiveMs: p.objectiveMs, stageMs: p.stages.map((s) => s.timeMs) }; });
}
process.stdout.write(JSON.stringify({ out, splits }));
"""


def predict_micro_batches(model, calibration, loads, pp=None):
    """omnibal's calibrated prediction of forward + backward (ms) of each micro-batch load
    (``{tiles, tokens, sumSqLen}``), through the package's own ``calibrate`` and ``vlmLayers``;
    with ``pp`` (``{stages, microBatches, load, splits}``) also each given split's predicted
    iteration and stage times (``evaluateSplit``, no recomputation): (times, splits)."""
    index = os.path.join(blocks.ROOT, "dist", "index.js")
    doc = {"model": model, "gpu": GPU, "calibration": calibration, "loads": loads, "pp": pp}
    got = json.loads(node(["-e", _PREDICT_JS, index], stdin=json.dumps(doc)))
    return (got["out"], got["splits"]) if pp else got["out"]


def pack(samples_file, strategy, dp, accum, per_pack, seed):
    """``omnibal pack`` of the length file: (steps[step][rank][micro] = sample indices, the
    number of samples the plan dropped, e.g. an incomplete last step)."""
    out = node([CLI, "pack", "--input", samples_file, "--dp", str(dp), "--accum", str(accum), "--samples-per-pack", str(per_pack), "--strategy", strategy, "--seed", str(seed), "--json"])
    doc = json.loads(out)
    return doc["steps"], len(doc["dropped"])


def partition(model, cal_file, pp, micro, tiles, tokens, samples, method):
    """``omnibal partition --calibration`` with no recomputation: the split and its prediction."""
    out = node([CLI, "partition", "--model", model, "--gpu", GPU, "--calibration", cal_file, "--pp", str(pp), "--micro-batches", str(micro), "--vision-per-micro-batch", str(tiles), "--text-per-micro-batch", str(tokens), "--samples-per-micro-batch", str(samples), "--recompute", "none", "--method", method, "--json"])
    doc = json.loads(out)
    return {"lastLayers": [s["lastLayer"] for s in doc["stages"]], "predictedMs": doc["objectiveMs"], "stageMs": [s["timeMs"] for s in doc["stages"]]}


def micro_batch_of(spec, pairs, indices, seed):
    tps = [pairs[i][0] for i in indices]
    lengths = [pairs[i][1] for i in indices]
    return blocks.MicroBatch(spec, tps, lengths, seed=seed)


def load_of(pairs, indices):
    ts = [pairs[i][0] for i in indices]
    ns = [pairs[i][1] for i in indices]
    return {"tiles": sum(ts), "tokens": sum(ns), "sumSqLen": sum(n * n for n in ns)}


def dp_speedup(random_run, balanced_run, clock="Ms"):
    """The balanced plan's speed-up over random batches per trained sample (``omnibal pack``
    may drop a tail of samples from one plan and not the other; whole-run times would then
    compare different work). ``clock``: ``Ms`` (wall) or ``CpuMs`` (thread CPU time)."""
    def per_sample(run, kind):
        return run[kind + clock] / run["samples"]
    return {k: per_sample(random_run, k) / per_sample(balanced_run, k) for k in ("predicted", "measured")}


def _free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---- the distributed worker ---------------------------------------------------------------


def _out_shape(spec, kind, mb):
    """Shape of the output of a layer of ``kind`` for ``mb`` (what crosses a stage cut)."""
    if kind in ("vit-embed", "vit"):
        return (mb.tiles, spec["vitTokensPerTile"], spec["vit"]["hidden"])
    if kind == "projector":
        return (mb.tiles * spec["llmTokensPerTile"], spec["llm"]["hidden"])
    return (1, mb.tokens, spec["llm"]["hidden"])


def _run_1f1b(torch, dist, rank, world, spec, layers, first, last, mbs):
    """One 1F1B iteration of this stage over ``mbs``; returns (wall ms, this thread's CPU ms,
    losses on the last stage)."""
    kinds = blocks.layer_kinds(spec)
    n_layers = len(kinds)
    m = len(mbs)
    warm = min(world - rank - 1, m)
    inputs, outputs, losses, sends = [None] * m, [None] * m, [None] * m, []

    def forward(i):
        if first == 0:
            x = None
        else:
            x = torch.empty(_out_shape(spec, kinds[first - 1], mbs[i]))
            dist.recv(x, src=rank - 1)
            x.requires_grad_(True)
        inputs[i] = x
        y = x
        for layer in layers:
            y = layer(y, mbs[i])
        outputs[i] = y
        if last == n_layers - 1:
            losses[i] = float(y.item())
        else:
            t = y.detach().contiguous()
            sends.append((dist.isend(t, dst=rank + 1), t))

    def backward(i):
        y = outputs[i]
        if last == n_layers - 1:
            y.backward()
        else:
            g = torch.empty(y.shape)
            dist.recv(g, src=rank + 1)
            y.backward(g)
        if first > 0:
            t = inputs[i].grad.contiguous()
            sends.append((dist.isend(t, dst=rank - 1), t))
        inputs[i] = outputs[i] = None

    dist.barrier()
    t0, c0 = time.perf_counter(), time.thread_time()
    for i in range(warm):
        forward(i)
    for i in range(m - warm):
        forward(i + warm)
        backward(i)
    for i in range(m - warm, m):
        backward(i)
    for w, _t in sends:
        w.wait()
    ms = (time.perf_counter() - t0) * 1e3
    return ms, (time.thread_time() - c0) * 1e3, losses


def _max_over_ranks(torch, dist, values):
    t = torch.tensor(values, dtype=torch.float64)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return t.tolist()


def _merge_calibrations(docs, clock="wall"):
    """One calibration from each rank's (profiled at the same time): per layer the median over
    every rank's timed runs, of the wall clock or of the thread's CPU time."""
    out = json.loads(json.dumps(docs[0]))
    f, b = ("forward", "backward") if clock == "wall" else ("cpuForward", "cpuBackward")
    out["clock"] = "wall" if clock == "wall" else "thread cpu time"
    for j, entry in enumerate(out["layers"]):
        fwd = [x for d in docs for x in d["samples"][j][f]]
        bwd = [x for d in docs for x in d["samples"][j][b]]
        entry["measuredForwardMs"] = statistics.median(fwd)
        entry["backwardMs"] = statistics.median(bwd)
        entry["forwardMs"] = (entry["measuredForwardMs"] + entry["backwardMs"]) / 3 if out["fit"] == "step" else entry["measuredForwardMs"]
    out.pop("samples", None)
    out["device"] = "cpu, %d gloo processes profiling at once, 1 thread each" % len(docs)
    return out


def _predict(job, cal, cal_cpu, tmp):
    """Rank 0: omnibal's predictions from the merged calibrations (data-parallel steps from the
    wall-clock and the CPU-time one, and the pipeline splits)."""
    cal_file = os.path.join(tmp, "calibration.json")
    with open(cal_file, "w") as fh:
        json.dump(cal, fh)
    small = job["pairs"]
    dp_pred = {}
    for name, steps in job["dp"].items():
        loads = [load_of(small, mb) for step in steps for rank in step for mb in rank]
        for key, c in ((name, cal), (name + ":cpu", cal_cpu)):
            it = iter(predict_micro_batches(job["model"], c, loads))
            dp_pred[key] = [[sum(next(it) for _ in rank) for rank in step] for step in steps]
    splits = {}
    for method in job["methods"]:
        splits[method] = partition(job["model"], cal_file, 2, job["ppMicroBatches"], sum(job["ppTiles"]), sum(job["ppLengths"]), len(job["ppLengths"]), method)
    # The same splits under the CPU-time calibration: stage busy time to compare with each
    # process's CPU time.
    load = {"tiles": sum(job["ppTiles"]), "tokens": sum(job["ppLengths"]), "sumSqLen": sum(n * n for n in job["ppLengths"])}
    _, cpu = predict_micro_batches(job["model"], cal_cpu, [], {"stages": 2, "microBatches": job["ppMicroBatches"], "load": load, "splits": [splits[m]["lastLayers"] for m in job["methods"]]})
    for method, c in zip(job["methods"], cpu):
        splits[method]["cpuStageMs"] = c["stageMs"]
    return {"dp": dp_pred, "pp": splits}


def _worker(rank, world, port, job_file, out_file):
    import torch
    import torch.distributed as dist

    from . import profile

    torch.set_num_threads(1)
    with open(job_file) as fh:
        job = json.load(fh)
    dist.init_process_group("gloo", init_method="tcp://127.0.0.1:%d" % port, rank=rank, world_size=world)
    try:
        spec = blocks.load_spec(job["model"])
        pairs = [tuple(p) for p in job["pairs"]]
        repeats = job["repeats"]
        # 1. Calibrate: both ranks profile at once (the same contention as the runs), after two
        # untimed training steps of the whole model (allocator and caches warm, as in the runs).
        c = job["calibrationLoad"]
        warm_model = blocks.build_layers(spec, seed=job["seed"])
        warm_batch = blocks.MicroBatch(spec, *profile.split_tokens(spec, c["tiles"], c["tokens"], c["samples"]), seed=job["seed"])
        for _ in range(2):
            x = None
            for layer in warm_model:
                x = layer(x, warm_batch)
            x.backward()
        del warm_model
        dist.barrier()
        cal = profile.profile_preset(job["model"], c["tiles"], c["tokens"], c["samples"], repeats=job["profileRepeats"], warmup=2, fit="step", seed=job["seed"], keep_samples=True)
        cals = [None] * world
        dist.all_gather_object(cals, cal)
        box = [None]
        if rank == 0:
            cal = _merge_calibrations(cals)
            cal_cpu = _merge_calibrations(cals, "cpu")
            try:
                box = [{"calibration": cal, "calibrationCpu": cal_cpu, "predictions": _predict(job, cal, cal_cpu, os.path.dirname(out_file))}]
            except Exception as e:  # noqa: BLE001 - handed to every rank, reported by the driver
                box = [{"error": str(e)}]
        dist.broadcast_object_list(box, src=0)
        if "error" in box[0]:
            if rank == 0:
                with open(out_file, "w") as fh:
                    json.dump(box[0], fh)
            return
        pred = box[0]["predictions"]
        # 2. Data parallel: every rank holds the whole model; the two plans alternate per repeat.
        model = blocks.build_layers(spec, seed=job["seed"])
        params = [p for layer in model for p in layer.parameters()]
        mine = {name: [[micro_batch_of(spec, pairs, mb, seed=job["seed"] + 7919 * s + 31 * j) for j, mb in enumerate(step[rank])] for s, step in enumerate(steps)] for name, steps in job["dp"].items()}
        dp = {name: {"wall": [[] for _ in steps], "cpu": [[] for _ in steps], "allReduce": []} for name, steps in mine.items()}
        for r in range(repeats + 1):
            for name, steps in mine.items():
                for s, step_mbs in enumerate(steps):
                    for p in params:
                        p.grad = None
                    dist.barrier()
                    t0, c0 = time.perf_counter(), time.thread_time()
                    for mb in step_mbs:
                        x = None
                        for layer in model:
                            x = layer(x, mb)
                        x.backward()
                    t1, c1 = time.perf_counter(), time.thread_time()
                    flat = torch.cat([p.grad.reshape(-1) if p.grad is not None else torch.zeros(p.numel()) for p in params])
                    dist.all_reduce(flat)
                    t2 = time.perf_counter()
                    wall, cpu, ar = _max_over_ranks(torch, dist, [(t1 - t0) * 1e3, (c1 - c0) * 1e3, (t2 - t1) * 1e3])
                    if r > 0:
                        dp[name]["wall"][s].append(wall)
                        dp[name]["cpu"][s].append(cpu)
                        dp[name]["allReduce"].append(ar)
        del model, params
        # 3. Pipeline: each rank holds its stage of each split; the splits alternate per repeat.
        mbs = [blocks.MicroBatch(spec, job["ppTiles"], job["ppLengths"], seed=job["seed"] + 104729 + i) for i in range(job["ppMicroBatches"])]
        n_layers = len(blocks.layer_kinds(spec))
        stages = {}
        for name in job["methods"]:
            last_layers = pred["pp"][name]["lastLayers"]
            first = 0 if rank == 0 else last_layers[rank - 1] + 1
            last = last_layers[rank]
            stages[name] = (first, last, blocks.build_layers(spec, seed=job["seed"], keep=range(first, last + 1)))
        pp = {name: {"times": [], "cpu": [], "losses": None} for name in job["methods"]}
        for r in range(repeats + 1):
            for name, (first, last, layers) in stages.items():
                for layer in layers:
                    for p in layer.parameters():
                        p.grad = None
                ms, cpu, losses = _run_1f1b(torch, dist, rank, world, spec, layers, first, last, mbs)
                cpus = [0.0] * world
                cpus[rank] = cpu
                got = _max_over_ranks(torch, dist, [ms] + cpus)
                if r > 0:
                    pp[name]["times"].append(got[0])
                    pp[name]["cpu"].append(got[1:])
                if last == n_layers - 1:
                    pp[name]["losses"] = losses
        mine_out = {"pp": {k: v["losses"] for k, v in pp.items() if v["losses"] is not None}}
        gathered = [None] * world
        dist.all_gather_object(gathered, mine_out)
        if rank == 0:
            losses = {}
            for g in gathered:
                losses.update(g["pp"])
            result = {
                "calibration": box[0]["calibration"],
                "calibrationCpu": box[0]["calibrationCpu"],
                "predictions": pred,
                "dp": {k: {"stepMs": [statistics.median(x) for x in v["wall"]], "stepCpuMs": [statistics.median(x) for x in v["cpu"]], "allReduceMs": statistics.median(v["allReduce"])} for k, v in dp.items()},
                "pp": {k: {"iterationMs": statistics.median(v["times"]), "samplesMs": v["times"], "stageCpuMs": [statistics.median(c[s] for c in v["cpu"]) for s in range(world)], "losses": losses.get(k)} for k, v in pp.items()},
            }
            with open(out_file, "w") as fh:
                json.dump(result, fh)
    finally:
        dist.destroy_process_group()


# ---- the driver ---------------------------------------------------------------------------


def validate(model="tiny-vlm", lengths=None, dp_steps=2, accum=2, per_pack=2, pp_micro=8, pp_samples=2, repeats=3, profile_repeats=5, seed=0, progress=None):
    """Runs the mini-run and returns the result document (see the module doc)."""
    import torch.multiprocessing as mp

    say = progress or (lambda _m: None)
    spec = blocks.load_spec(model)
    pairs, source = read_lengths(lengths)
    if pairs is None:
        pairs = synthetic_lengths(4096, seed)
        source = "synthetic lengths (no length file found in %s)" % ", ".join(lengths_dirs())
    say(source)
    rng = random.Random(seed)
    need = dp_steps * 2 * accum * per_pack
    picked = [pairs[i] for i in rng.sample(range(len(pairs)), min(need, len(pairs)))]
    small = scale_down(spec, picked)
    tmp = tempfile.mkdtemp(prefix="omnibal-validate-")
    try:
        sample_file = os.path.join(tmp, "lengths.json")
        # omnibal plans the real lengths (its caps and costs are at real scale); the run trains
        # the same samples scaled down.
        with open(sample_file, "w") as fh:
            json.dump([{"vit_num": t, "token_num": n} for t, n in picked], fh)
        # Both plans over the same samples.
        packed = {s: pack(sample_file, s, 2, accum, per_pack, seed) for s in ("random", "balanced")}
        plans = {s: steps for s, (steps, _) in packed.items()}
        # The pipeline micro-batch: pp_samples samples of the data's mean shape.
        mean_t = max(1, int(round(statistics.mean(t for t, _ in small))))
        mean_n = max(mean_t * spec["llmTokensPerTile"] + 1, int(round(statistics.mean(n for _, n in small))))
        # Calibrate at the mean micro-batch of the balanced plan.
        mbs = [mb for step in plans["balanced"] for rank in step for mb in rank]
        cal_tiles = int(round(statistics.mean(load_of(small, mb)["tiles"] for mb in mbs)))
        cal_samples = max(1, int(round(statistics.mean(len(mb) for mb in mbs))))
        cal_tokens = max(cal_tiles * spec["llmTokensPerTile"] + cal_samples, int(round(statistics.mean(load_of(small, mb)["tokens"] for mb in mbs))))
        job = {
            "model": model, "seed": seed, "repeats": repeats, "profileRepeats": profile_repeats, "pairs": small, "dp": plans,
            "methods": ["uniform", "parameters", "optimal"], "ppTiles": [mean_t] * pp_samples, "ppLengths": [mean_n] * pp_samples, "ppMicroBatches": pp_micro,
            "calibrationLoad": {"tiles": cal_tiles, "tokens": cal_tokens, "samples": cal_samples},
        }
        job_file = os.path.join(tmp, "job.json")
        out_file = os.path.join(tmp, "result.json")
        with open(job_file, "w") as fh:
            json.dump(job, fh)
        say("2 processes (gloo, loopback, 1 thread each): profiling at %d tiles, %d tokens, %d samples, then the runs" % (cal_tiles, cal_tokens, cal_samples))
        ctx = mp.spawn(_worker, args=(2, _free_port(), job_file, out_file), nprocs=2, join=False)
        try:
            while not ctx.join():
                pass
        finally:  # a failed rank, Ctrl-C: leave no rank behind (the other may wait in a collective)
            for proc in ctx.processes:
                if proc.is_alive():
                    proc.kill()
                proc.join()
        with open(out_file) as fh:
            measured = json.load(fh)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if "error" in measured:
        raise RuntimeError(measured["error"])
    cal, pred = measured["calibration"], measured["predictions"]
    runs = []
    for name in ("random", "balanced"):
        m = measured["dp"][name]
        per_step = [max(step) for step in pred["dp"][name]]
        per_step_cpu = [max(step) for step in pred["dp"][name + ":cpu"]]
        runs.append({
            "name": "dp2-%s" % name, "predictedMs": sum(per_step), "measuredMs": sum(m["stepMs"]),
            "predictedCpuMs": sum(per_step_cpu), "measuredCpuMs": sum(m["stepCpuMs"]),
            "steps": len(per_step), "samples": sum(len(mb) for step in plans[name] for rank in step for mb in rank), "dropped": packed[name][1],
            "predictedStepMs": per_step, "measuredStepMs": m["stepMs"], "allReduceMs": m["allReduceMs"],
            "what": "sum over steps of the slowest rank's forward + backward (gradient all-reduce excluded)",
        })
    for name in job["methods"]:
        sp, m = pred["pp"][name], measured["pp"][name]
        runs.append({
            "name": "pp2-%s" % name, "predictedMs": sp["predictedMs"], "measuredMs": m["iterationMs"], "lastLayers": sp["lastLayers"],
            "predictedStageMs": sp["stageMs"], "microBatches": pp_micro, "losses": m["losses"], "measuredSamplesMs": m["samplesMs"],
            "predictedStageCpuMs": [t * pp_micro for t in sp["cpuStageMs"]], "measuredStageCpuMs": m["stageCpuMs"],
            "what": "one 1F1B iteration, wall time of the slower process",
        })
    for r in runs:
        r["errorPct"] = 100.0 * (r["predictedMs"] - r["measuredMs"]) / r["measuredMs"]
        if "predictedCpuMs" in r:
            r["cpuErrorPct"] = 100.0 * (r["predictedCpuMs"] - r["measuredCpuMs"]) / r["measuredCpuMs"]
        if "predictedStageCpuMs" in r:
            r["stageCpuErrorPct"] = [100.0 * (p - m) / m for p, m in zip(r["predictedStageCpuMs"], r["measuredStageCpuMs"])]
    by = {r["name"]: r for r in runs}

    def speed(a, b):
        return {"predicted": by[a]["predictedMs"] / by[b]["predictedMs"], "measured": by[a]["measuredMs"] / by[b]["measuredMs"]}

    losses = [by["pp2-%s" % k]["losses"] for k in job["methods"]]
    return {
        "model": model,
        "data": source,
        "tokenScale": TOKEN_SCALE,
        "calibration": {"load": cal["load"], "device": cal["device"], "layers": [{k: l[k] for k in ("name", "load", "measuredForwardMs", "backwardMs")} for l in cal["layers"]],
                        "cpuTimeLayers": [{k: l[k] for k in ("name", "load", "measuredForwardMs", "backwardMs")} for l in measured["calibrationCpu"]["layers"]]},
        "runs": runs,
        "speedups": {
            "dpBalancedOverRandom": dp_speedup(by["dp2-random"], by["dp2-balanced"]),
            "dpBalancedOverRandomCpuTime": dp_speedup(by["dp2-random"], by["dp2-balanced"], "CpuMs"),
            "ppOptimalOverUniform": speed("pp2-uniform", "pp2-optimal"),
            "ppOptimalOverParameters": speed("pp2-parameters", "pp2-optimal"),
        },
        "lossesMatch": all(l is not None and len(l) == len(losses[0]) and all(abs(a - b) <= 1e-5 * max(1.0, abs(a)) for a, b in zip(l, losses[0])) for l in losses),
        "prediction": "predicted figures come from omnibal's cost model calibrated with the profile above (CPU, float32, one thread per process); measured figures are medians of real runs",
    }


def format_table(doc):
    """The runs as a plain-text table."""
    rows = [("run", "predicted ms", "measured ms", "error")]
    for r in doc["runs"]:
        rows.append((r["name"], "%.1f" % r["predictedMs"], "%.1f" % r["measuredMs"], "%+.1f%%" % r["errorPct"]))
        if "predictedCpuMs" in r:
            rows.append((r["name"] + " (cpu time)", "%.1f" % r["predictedCpuMs"], "%.1f" % r["measuredCpuMs"], "%+.1f%%" % r["cpuErrorPct"]))
        for s, (p, m) in enumerate(zip(r.get("predictedStageCpuMs", []), r.get("measuredStageCpuMs", []))):
            rows.append(("%s stage %d (cpu time)" % (r["name"], s), "%.1f" % p, "%.1f" % m, "%+.1f%%" % (100.0 * (p - m) / m)))
    for k, v in doc["speedups"].items():
        rows.append((k, "%.2fx" % v["predicted"], "%.2fx" % v["measured"], ""))
    w = [max(len(r[i]) for r in rows) for i in range(4)]
    return "\n".join("  ".join(c.ljust(w[i]) for i, c in enumerate(r)) for r in rows)


def _parser():
    class P(argparse.ArgumentParser):
        def error(self, message):
            raise UsageError(message)

    p = P(prog="python -m omnibal.validate", description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="tiny-vlm", help="model preset (default tiny-vlm; its training must run on the CPU)")
    p.add_argument("--lengths", action="append", default=[], help="length file (reference JSON); repeatable; default: the shared length files")
    p.add_argument("--steps", type=int, default=2, help="data-parallel steps (default 2)")
    p.add_argument("--accum", type=int, default=2, help="micro-batches per rank per step (default 2)")
    p.add_argument("--samples-per-pack", type=int, default=2, help="samples per micro-batch (default 2)")
    p.add_argument("--pp-micro-batches", type=int, default=8, help="micro-batches per pipeline iteration (default 8)")
    p.add_argument("--pp-samples", type=int, default=2, help="samples per pipeline micro-batch (default 2)")
    p.add_argument("--repeats", type=int, default=3, help="timed repeats after one warm-up (median; default 3)")
    p.add_argument("--profile-repeats", type=int, default=5, help="timed runs per profiled layer (default 5)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", action="store_true", help="write one JSON object")
    p.add_argument("--allow-large-model", action="store_true", help="run a model whose mini-run would take more than half of this machine's memory or 30 minutes of CPU time (refused otherwise, with the estimate)")
    return p


def main(argv=None):
    """The ``python -m omnibal.validate`` entry; returns the exit code (2 for bad flags)."""
    try:
        a = _parser().parse_args(sys.argv[1:] if argv is None else argv)
        for flag in ("steps", "accum", "samples_per_pack", "pp_micro_batches", "pp_samples", "repeats", "profile_repeats"):
            if getattr(a, flag) < 1:
                raise UsageError("--%s must be >= 1" % flag.replace("_", "-"))
        for f in a.lengths:
            if not os.path.exists(f):
                raise UsageError("--lengths %s: no such file" % f)
            if not os.path.isfile(f):  # a FIFO or a device would block or never end
                raise UsageError("--lengths %s: not a regular file" % f)
        try:
            spec = blocks.load_spec(a.model)
        except KeyError as e:
            raise UsageError(e.args[0])
        # Before anything is built: a 26B model on the CPU would swap the machine for days.
        large = check_size(a.model, run_estimate(spec, a.steps, a.accum, a.samples_per_pack, a.pp_micro_batches, a.repeats), a.allow_large_model)
        if large:
            sys.stderr.write("omnibal.validate: --allow-large-model: running anyway: %s\n" % large)
        doc = validate(a.model, a.lengths, a.steps, a.accum, a.samples_per_pack, a.pp_micro_batches, a.pp_samples, a.repeats, a.profile_repeats, a.seed,
                       progress=lambda m: sys.stderr.write("omnibal.validate: %s\n" % m))
    except UsageError as e:
        sys.stderr.write("omnibal.validate: %s\n" % e)
        return 2
    except (RuntimeError, OSError, ProcessException) as e:  # a rank died or failed, node failed
        sys.stderr.write("omnibal.validate: the run failed: %s\n" % (str(e).strip().splitlines() or [type(e).__name__])[0])
        return 2
    except KeyboardInterrupt:
        sys.stderr.write("omnibal.validate: interrupted\n")
        return 130
    sys.stdout.write(json.dumps(doc) + "\n" if a.json else format_table(doc) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
