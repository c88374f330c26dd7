"""Runs omnibal's DeepSpeed export through DeepSpeed's own PipelineModule code.

Reads one export {"python", "parts", "checkpointLayers"} or a list of them on stdin. For each stage
it builds the generated OmnibalPipelineModule around DeepSpeed's real topology class, calls its
_partition_layers (DeepSpeed's _set_bounds), runs DeepSpeed's real PipelineModule.forward with
a recording checkpoint function, and checks the bounds and the checkpointed layers. It also
runs the stock forward with activation_checkpoint_interval = 2 to confirm the documented
semantics (chunks of k consecutive layers). No process group is needed: the module is built
without PipelineModule.__init__, which wants one rank per stage.
Prints one JSON line: {"ok": all passed, "results": [{"ok", "error"?} per export], ...}.
"""
import json
import sys

import torch
from deepspeed.runtime.pipe.module import PipelineModule
from deepspeed.runtime.pipe.topology import PipeDataParallelTopology


def build(cls, stages, layers, stage):
    m = cls.__new__(cls)
    torch.nn.Module.__init__(m)
    m._topo = PipeDataParallelTopology(num_pp=stages, num_dp=1)
    m.global_rank = m._topo.get_rank(pipe=stage, data=0)
    m._layer_specs = list(range(layers))
    m.micro_offset = 0
    m.seed_layers = False
    m.seed_fn = None
    m.base_seed = 1234
    m.checkpointable_layers = None
    return m


class Tagged(torch.nn.Module):
    """A layer with a parameter (so DeepSpeed's _is_checkpointable accepts it) that logs its index."""

    def __init__(self, index, log):
        super().__init__()
        self.index = index
        self.log = log
        self.weight = torch.nn.Parameter(torch.ones(1))

    def forward(self, x):
        self.log.append(self.index)
        return x * self.weight


def run(m, interval):
    """Bounds from _partition_layers, then DeepSpeed's forward: the layer chunks it checkpoints."""
    m._partition_layers()
    log = []
    m.forward_funcs = [Tagged(i, log) for i in range(m._local_start, m._local_stop)]
    m.activation_checkpoint_interval = interval
    chunks = []

    def record(func, *args):
        mark = len(log)
        out = func(*args)
        chunks.append(log[mark:])
        return out

    m.activation_checkpoint_func = record
    # Newer DeepSpeed caches _is_checkpointable per chunk before the first forward.
    m.is_checkpointable_results = []
    m.is_checkpointable_results_interval = None
    if hasattr(m, "_precompute_checkpointable_values"):
        m._precompute_checkpointable_values()
    m.forward(torch.zeros(1))
    return chunks


def main():
    docs = json.load(sys.stdin)
    results = []
    for doc in docs if isinstance(docs, list) else [docs]:
        try:
            check(doc)
            results.append({"ok": True})
        except Exception as e:  # one result per export
            results.append({"ok": False, "error": f"{type(e).__name__}: {e}"})
    semantics = interval_semantics()
    print(json.dumps({"ok": all(r["ok"] for r in results), "results": results, "interval2Chunks": semantics}))


def check(doc):
    scope = {}
    exec(doc["python"], scope)
    cls = scope["OmnibalPipelineModule"]
    parts = doc["parts"]
    stages = len(parts) - 1
    layers = parts[-1]
    for s in range(stages):
        m = build(cls, stages, layers, s)
        # The generated __init__ forces one layer per chunk; check it asks for that.
        captured = {}
        orig = PipelineModule.__init__
        try:
            PipelineModule.__init__ = lambda self, *a, **k: captured.update(k)
            cls([])
        finally:
            PipelineModule.__init__ = orig
        if captured.get("activation_checkpoint_interval") != 1:
            raise AssertionError(f"interval {captured}")
        checkpointed = [i for chunk in run(m, 1) for i in chunk]
        if (m._local_start, m._local_stop) != (parts[s], parts[s + 1]):
            raise AssertionError(f"stage {s}: bounds {(m._local_start, m._local_stop)} != {parts[s:s + 2]}")
        if checkpointed != doc["checkpointLayers"][s]:
            raise AssertionError(f"stage {s}: checkpointed {checkpointed} != {doc['checkpointLayers'][s]}")



def interval_semantics():
    """Stock semantics: interval 2 checkpoints chunks of two consecutive layers."""

    class Plain(PipelineModule):
        def _partition_layers(self, method="uniform"):
            self._set_bounds(start=0, stop=5)

    m = build(Plain, 1, 5, 0)
    chunks = run(m, 2)
    if chunks != [[0, 1], [2, 3], [4]]:
        raise AssertionError(f"interval 2 checkpointed chunks {chunks}")
    return chunks


if __name__ == "__main__":
    try:
        main()
    except Exception as e:  # report, never a traceback
        print(json.dumps({"ok": False, "error": f"{type(e).__name__}: {e}"}))
