"""Builds megatron-core's own TransformerConfig from omnibal's Megatron argv.

Megatron-LM's megatron/training/arguments.py (validate_args, core_transformer_config_from_args)
is not on the Python package index (megatron-core ships megatron/core only), so this maps each
flag omnibal emits to the TransformerConfig field that core_transformer_config_from_args sets
from it, rejects any flag it does not know, and lets TransformerConfig.__post_init__ (which holds
the recompute, pipeline split and layout checks) validate the result. The vision config is built
as Megatron-LM's examples/multimodal/model.py builds it: a copy with pipeline size 1, with
recompute_num_layers = all its layers under --recompute-vision, else no recomputation.
Reads {"argv", "numLayers", "hidden", "heads", "kvHeads", "vitLayers", "vitHidden", "vitHeads"},
or a list of them (one import of torch for all), on stdin; prints {"ok": true,
"recomputeNumLayers", "vision": {...}} or {"ok": false, "error"} for each, as one JSON line
(a list for a list).
"""
import json
import sys
import warnings

# (flag, TransformerConfig field, type); core_transformer_config_from_args copies these by name
# (decoder_first/last_pipeline_num_layers become num_layers_in_first/last_pipeline_stage).
# Megatron-LM has no --virtual-pipeline-model-parallel-size flag (arguments.py
# _add_distributed_args; parse_args refuses unknown flags): validate_args derives
# virtual_pipeline_model_parallel_size from the layout or the per-virtual-stage layer count.
FLAGS = {
    "--pipeline-model-parallel-size": ("pipeline_model_parallel_size", int),
    "--pipeline-model-parallel-layout": ("pipeline_model_parallel_layout", str),
    "--decoder-first-pipeline-num-layers": ("num_layers_in_first_pipeline_stage", int),
    "--decoder-last-pipeline-num-layers": ("num_layers_in_last_pipeline_stage", int),
    "--recompute-granularity": ("recompute_granularity", str),
    "--recompute-method": ("recompute_method", str),
    "--recompute-num-layers": ("recompute_num_layers", int),
}


def parse(argv):
    kwargs, vision, i = {}, False, 0
    per_virtual = None
    while i < len(argv):
        flag = argv[i]
        if flag == "--recompute-vision":  # examples/multimodal/multimodal_args.py, a switch
            vision, i = True, i + 1
            continue
        if flag == "--recompute-modules":  # nargs='*'
            j = i + 1
            while j < len(argv) and not argv[j].startswith("--"):
                j += 1
            kwargs["recompute_modules"] = argv[i + 1 : j]
            i = j
            continue
        if flag == "--num-layers-per-virtual-pipeline-stage":
            per_virtual, i = int(argv[i + 1]), i + 2
            continue
        if flag not in FLAGS:
            raise ValueError(f"unknown flag {flag}")
        name, kind = FLAGS[flag]
        kwargs[name] = kind(argv[i + 1])
        i += 2
    return kwargs, vision, per_virtual


def check(doc):
    try:
        return build(doc)
    except BaseException as e:  # report, never a traceback
        return {"ok": False, "error": f"{type(e).__name__}: {e}"}


def build(doc):
    warnings.simplefilter("ignore")
    import torch
    from megatron.core.transformer.transformer_config import TransformerConfig

    kwargs, vision, per_virtual = parse(doc["argv"])
    pp = kwargs.get("pipeline_model_parallel_size", 1)
    # validate_args: "No more than one of the following arguments can be set at the same time:
    # --num-layers-per-virtual-pipeline-stage, --num-virtual-stages-per-pipeline-rank,
    # --pipeline-model-parallel-layout" (TransformerConfig derives the virtual size from a layout).
    if per_virtual is not None and "pipeline_model_parallel_layout" in kwargs:
        raise ValueError("--num-layers-per-virtual-pipeline-stage and --pipeline-model-parallel-layout set together")
    if per_virtual is not None:
        # megatron/training/arguments.py validate_args: the per-stage layers over the layers per
        # virtual stage gives the virtual pipeline size.
        if (doc["numLayers"] // pp) % per_virtual != 0:
            raise ValueError("number of layers per pipeline stage must be divisible by the layers per virtual stage")
        kwargs["virtual_pipeline_model_parallel_size"] = (doc["numLayers"] // pp) // per_virtual
    common = dict(pipeline_dtype=torch.bfloat16, bf16=True)
    language = TransformerConfig(
        num_layers=doc["numLayers"],
        hidden_size=doc["hidden"],
        num_attention_heads=doc["heads"],
        num_query_groups=doc["kvHeads"],
        **common,
        **kwargs,
    )
    # examples/multimodal/model.py: the vision config is a copy of the same arguments with its
    # own pipeline size (1) and no first/last split, and --recompute-vision toggling its recompute.
    vkw = {k: v for k, v in kwargs.items() if not k.startswith(("pipeline_model_parallel", "num_layers_in_", "virtual_pipeline"))}
    if vision and vkw.get("recompute_method") is not None and vkw.get("recompute_granularity") is not None:
        vkw["recompute_num_layers"] = doc["vitLayers"]
    elif not vision:
        for k in ("recompute_granularity", "recompute_method", "recompute_num_layers", "recompute_modules"):
            vkw.pop(k, None)
    vit = TransformerConfig(
        num_layers=doc["vitLayers"],
        hidden_size=doc["vitHidden"],
        num_attention_heads=doc["vitHeads"],
        pipeline_model_parallel_size=1,
        **common,
        **vkw,
    )
    return {
        "ok": True,
        "recomputeNumLayers": language.recompute_num_layers,
        "virtualStages": language.virtual_pipeline_model_parallel_size,
        "vision": {
            "recomputeNumLayers": vit.recompute_num_layers,
            "recomputeMethod": vit.recompute_method,
            "recomputeGranularity": vit.recompute_granularity,
        },
    }

if __name__ == "__main__":
    try:
        doc = json.load(sys.stdin)
        print(json.dumps([check(d) for d in doc] if isinstance(doc, list) else check(doc)))
    except BaseException as e:  # report, never a traceback
        print(json.dumps({"ok": False, "error": f"{type(e).__name__}: {e}"}))
