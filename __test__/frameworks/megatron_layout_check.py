"""Runs omnibal's Megatron layout through megatron-core's own layout parser and validator.

megatron-core (PyPI) ships megatron/core only: Megatron-LM's argument validation
(megatron/training/arguments.py) is not in it, and its package __init__ needs torch 2. This
loads megatron/core/transformer/pipeline_parallel_layer_layout.py and enums.py by file, with stand-ins
for parallel_state (only consulted for the current rank, not by parsing or validation) and
utils.log_single_rank (a log line), then runs PipelineParallelLayerLayout.from_str(...).validate_layer_layout(...).
Reads {"layout", "pp", "numLayers"} on stdin; prints {"ok": true} or {"ok": false, "error"}.
"""
import importlib.util
import json
import os
import sys
import types


def load():
    spec = importlib.util.find_spec("megatron")
    root = os.path.join(list(spec.submodule_search_locations)[0], "core")
    for name, path in [("megatron", None), ("megatron.core", None), ("megatron.core.transformer", None)]:
        m = types.ModuleType(name)
        m.__path__ = []
        sys.modules[name] = m
    sys.modules["megatron.core.parallel_state"] = types.ModuleType("megatron.core.parallel_state")
    sys.modules["megatron.core"].parallel_state = sys.modules["megatron.core.parallel_state"]
    # from_str logs the parsed layout on rank 0 through megatron.core.utils.
    utils = types.ModuleType("megatron.core.utils")
    utils.log_single_rank = lambda logger, level, message: None
    sys.modules["megatron.core.utils"] = utils
    mods = {}
    for name in ["enums", "pipeline_parallel_layer_layout"]:
        full = f"megatron.core.transformer.{name}"
        s = importlib.util.spec_from_file_location(full, os.path.join(root, "transformer", f"{name}.py"))
        m = importlib.util.module_from_spec(s)
        sys.modules[full] = m
        s.loader.exec_module(m)
        mods[name] = m
    return mods["pipeline_parallel_layer_layout"].PipelineParallelLayerLayout


def main():
    doc = json.load(sys.stdin)
    layout_cls = load()
    layout = layout_cls.from_str(layout=doc["layout"], pipeline_model_parallel_size=doc["pp"])
    layout.validate_layer_layout(num_layers=doc["numLayers"], mtp_num_layers=None)
    decoder = sys.modules["megatron.core.transformer.enums"].LayerType.decoder
    # Decoder layers megatron-core builds per (pipeline rank, virtual stage), its own 2D view.
    per_rank = [[len([x for x in chunk if x == decoder]) for chunk in row] for row in layout.layout]
    print(json.dumps({"ok": True, "stages": len(layout.layout), "decoderPerRank": per_rank}))


if __name__ == "__main__":
    try:
        main()
    except BaseException as e:  # report, never a traceback
        print(json.dumps({"ok": False, "error": f"{type(e).__name__}: {e}"}))
