"""The layers of an InternVL-style VLM in PyTorch, built at a preset's real shapes with random
weights (nothing is downloaded): patch embedding, ViT blocks (LayerNorm, multi-head attention,
GELU MLP), the MLP projector (pixel shuffle 0.5, LayerNorm, two linears), the LLM token
embedding, LLM blocks (RMSNorm, grouped-query attention, SwiGLU MLP) and the head (RMSNorm,
vocabulary projection, cross-entropy). The layer sequence matches omnibal's cost model
(``src/model/vlm.ts``) one to one, so a measured layer maps to a layer index of its table.

Every layer takes ``(x, batch)``: ``x`` the previous layer's output (``None`` for the patch
embedding) and ``batch`` a :class:`MicroBatch` (pixels, token ids, labels and the sample
lengths of a packed micro-batch; every process that runs a part of the model builds the same
one from the same seed). Attention uses ``torch.nn.functional.scaled_dot_product_attention``
(flash/memory-efficient kernels on a GPU) on PyTorch 2.x and a plain softmax attention on
older versions. Needs PyTorch.
"""
import json
import math
import os

import torch
import torch.nn.functional as F
from torch import nn

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
PRESETS = os.path.join(ROOT, "presets", "models.json")

#: Layer kinds, in the order of omnibal's numeric codes (``LAYER_KINDS`` in src/model/vlm.ts).
LAYER_KINDS = ("vit-embed", "vit", "projector", "embed", "llm", "head")


def load_spec(model, presets=PRESETS):
    """The VLM preset ``model`` from presets/models.json as a dict with ``vit``, ``llm`` (the
    transformer shapes), ``vitTokensPerTile``, ``tilePixels``, ``patch``, ``llmTokensPerTile``,
    ``pixelShuffle`` and ``projectorIn``; a dict is returned as is (a spec spelled out).
    Raises ``KeyError`` naming the known presets for an unknown name."""
    if isinstance(model, dict):
        return model
    with open(presets) as fh:
        doc = json.load(fh)
    vlm = doc["vlms"].get(model)
    if vlm is None:
        raise KeyError("unknown model %r; known: %s" % (model, ", ".join(doc["vlms"])))
    spec = dict(vlm)
    spec["vit"] = dict(doc["transformers"][vlm["vit"]])
    spec["llm"] = dict(doc["transformers"][vlm["llm"]])
    spec["projectorIn"] = spec["vit"]["hidden"] / (vlm["pixelShuffle"] ** 2)
    return spec


class MicroBatch:
    """One packed micro-batch: ``tiles`` image tiles, ``lengths`` the LLM length of each sample
    (image tokens included), its ``tiles_per_sample``; pixels, token ids and next-token labels
    drawn from ``seed``. Image tokens sit at the start of each sample."""

    def __init__(self, spec, tiles_per_sample, lengths, seed=0, device="cpu", dtype=torch.float32):
        assert len(tiles_per_sample) == len(lengths)
        per_tile = spec["llmTokensPerTile"]
        for t, n in zip(tiles_per_sample, lengths):
            if n < t * per_tile + 1:
                raise ValueError("a sample of %d tiles needs more than %d tokens, got %d" % (t, t * per_tile, n))
        self.tiles_per_sample = list(tiles_per_sample)
        self.lengths = list(lengths)
        self.tiles = sum(tiles_per_sample)
        self.tokens = sum(lengths)
        self.sum_sq_len = sum(n * n for n in lengths)
        g = torch.Generator().manual_seed(seed)
        side = spec["tilePixels"]
        vocab = spec["llm"]["vocab"]
        self.pixels = torch.randn(self.tiles, 3, side, side, generator=g).to(device=device, dtype=dtype)
        ids = torch.randint(0, vocab, (self.tokens + 1,), generator=g)
        self.input_ids = ids[:-1].to(device)
        self.labels = ids[1:].to(device)
        positions = []
        start = 0
        for t, n in zip(tiles_per_sample, lengths):
            positions.extend(range(start, start + t * per_tile))
            start += n
        self.image_positions = torch.tensor(positions, dtype=torch.long, device=device)


def attention(q, k, v, causal):
    """Softmax attention of ``q`` (B, H, N, d) over ``k``, ``v`` (B, Hkv, N, d); grouped-query
    heads are repeated. SDPA where PyTorch has it (2.x), else the plain formula."""
    if k.shape[1] != q.shape[1]:
        rep = q.shape[1] // k.shape[1]
        k = k.repeat_interleave(rep, dim=1)
        v = v.repeat_interleave(rep, dim=1)
    sdpa = getattr(F, "scaled_dot_product_attention", None)
    if sdpa is not None:
        return sdpa(q, k, v, is_causal=causal)
    scores = torch.matmul(q, k.transpose(-1, -2)) * (1.0 / math.sqrt(q.shape[-1]))
    if causal:
        n = q.shape[-2]
        mask = torch.ones(n, n, dtype=torch.bool, device=q.device).triu(1)
        scores = scores.masked_fill(mask, float("-inf"))
    return torch.matmul(torch.softmax(scores, dim=-1), v)


class RMSNorm(nn.Module):
    """Root-mean-square norm (InternLM2, Llama)."""

    def __init__(self, dim, eps=1e-6):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x):
        y = x.float()
        y = y * torch.rsqrt(y.pow(2).mean(-1, keepdim=True) + self.eps)
        return y.to(x.dtype) * self.weight


class PatchEmbed(nn.Module):
    """Patchify (a strided convolution), class token and position embedding: pixels (T, 3, S, S)
    to (T, vitTokensPerTile, hidden)."""

    kind = "vit-embed"

    def __init__(self, spec):
        super().__init__()
        h = spec["vit"]["hidden"]
        self.conv = nn.Conv2d(3, h, spec["patch"], stride=spec["patch"])
        self.cls = nn.Parameter(torch.randn(1, 1, h) * 0.02)
        self.pos = nn.Parameter(torch.randn(1, spec["vitTokensPerTile"], h) * 0.02)

    def forward(self, x, batch):
        y = self.conv(batch.pixels).flatten(2).transpose(1, 2)
        y = torch.cat([self.cls.expand(y.shape[0], -1, -1), y], dim=1)
        return y + self.pos


class VitBlock(nn.Module):
    """A ViT block: pre-LayerNorm multi-head attention over each tile (bidirectional) and a GELU
    MLP (InternViT's layer scale and QK-norm are left out: their FLOPs are negligible)."""

    kind = "vit"

    def __init__(self, t):
        super().__init__()
        h = t["hidden"]
        self.heads = t["heads"]
        self.norm1 = nn.LayerNorm(h)
        self.qkv = nn.Linear(h, 3 * h)
        self.proj = nn.Linear(h, h)
        self.norm2 = nn.LayerNorm(h)
        self.fc1 = nn.Linear(h, t["ffn"])
        self.fc2 = nn.Linear(t["ffn"], h)

    def forward(self, x, batch):
        b, n, h = x.shape
        q, k, v = self.qkv(self.norm1(x)).view(b, n, 3, self.heads, h // self.heads).permute(2, 0, 3, 1, 4)
        a = attention(q, k, v, causal=False).transpose(1, 2).reshape(b, n, h)
        x = x + self.proj(a)
        return x + self.fc2(F.gelu(self.fc1(self.norm2(x))))


class Projector(nn.Module):
    """InternVL's MLP projector: drop the class token, pixel shuffle by 0.5 (2 x 2 neighbours
    into one token of 4 x the width), LayerNorm, Linear, GELU, Linear; (T, Tv, hv) to
    (T x llmTokensPerTile, hl)."""

    kind = "projector"

    def __init__(self, spec):
        super().__init__()
        cin = int(spec["projectorIn"])
        hl = spec["llm"]["hidden"]
        self.shuffle = spec["pixelShuffle"]
        self.norm = nn.LayerNorm(cin)
        self.fc1 = nn.Linear(cin, hl)
        self.fc2 = nn.Linear(hl, hl)

    def forward(self, x, batch):
        t, n, h = x.shape
        side = int(round(math.sqrt(n - 1)))
        y = x[:, 1:, :].reshape(t, side, side, h)
        if self.shuffle != 1:
            r = int(round(1 / self.shuffle))
            y = y.reshape(t, side // r, r, side // r, r, h).permute(0, 1, 3, 2, 4, 5)
        y = y.reshape(-1, self.norm.normalized_shape[0])
        return self.fc2(F.gelu(self.fc1(self.norm(y))))


class TokenEmbed(nn.Module):
    """The LLM token embedding; the projector's image tokens replace the embeddings at the image
    positions. Output (1, N, hidden)."""

    kind = "embed"

    def __init__(self, spec):
        super().__init__()
        self.embed = nn.Embedding(spec["llm"]["vocab"], spec["llm"]["hidden"])

    def forward(self, x, batch):
        y = self.embed(batch.input_ids)
        if x is not None and batch.image_positions.numel() > 0:
            y = y.index_copy(0, batch.image_positions, x.to(y.dtype))
        return y.unsqueeze(0)


class LlmBlock(nn.Module):
    """An LLM block: RMSNorm, grouped-query causal attention inside each packed sample, RMSNorm,
    SwiGLU MLP (gated) or GELU MLP."""

    kind = "llm"

    def __init__(self, t):
        super().__init__()
        h = t["hidden"]
        self.heads = t["heads"]
        self.kv = t["kvHeads"]
        self.d = h // self.heads
        self.norm1 = RMSNorm(h)
        self.wqkv = nn.Linear(h, (self.heads + 2 * self.kv) * self.d, bias=False)
        self.wo = nn.Linear(h, h, bias=False)
        self.norm2 = RMSNorm(h)
        self.gated = t["gated"]
        self.w1 = nn.Linear(h, t["ffn"], bias=False)
        self.w3 = nn.Linear(h, t["ffn"], bias=False) if self.gated else None
        self.w2 = nn.Linear(t["ffn"], h, bias=False)

    def forward(self, x, batch):
        _, n, h = x.shape
        qkv = self.wqkv(self.norm1(x)).view(n, self.heads + 2 * self.kv, self.d)
        q = qkv[:, : self.heads].transpose(0, 1)
        k = qkv[:, self.heads : self.heads + self.kv].transpose(0, 1)
        v = qkv[:, self.heads + self.kv :].transpose(0, 1)
        outs = []
        start = 0
        for length in batch.lengths:
            s = slice(start, start + length)
            outs.append(attention(q[None, :, s], k[None, :, s], v[None, :, s], causal=True)[0])
            start += length
        a = torch.cat(outs, dim=1).transpose(0, 1).reshape(1, n, h)
        x = x + self.wo(a)
        y = self.norm2(x)
        m = F.silu(self.w1(y)) * self.w3(y) if self.gated else F.gelu(self.w1(y))
        return x + self.w2(m)


class Head(nn.Module):
    """Final RMSNorm, vocabulary projection and the mean next-token cross-entropy (a scalar)."""

    kind = "head"

    def __init__(self, spec):
        super().__init__()
        h = spec["llm"]["hidden"]
        self.norm = RMSNorm(h)
        self.out = nn.Linear(h, spec["llm"]["vocab"], bias=False)

    def forward(self, x, batch):
        logits = self.out(self.norm(x[0]))
        return F.cross_entropy(logits.float(), batch.labels)


def layer_names(spec):
    """Layer names in the cost model's order (``vit.patch_embed``, ``vit.block.0``, ...)."""
    return (
        ["vit.patch_embed"]
        + ["vit.block.%d" % i for i in range(spec["vit"]["layers"])]
        + ["projector", "llm.embed"]
        + ["llm.block.%d" % i for i in range(spec["llm"]["layers"])]
        + ["llm.head"]
    )


def layer_kinds(spec):
    """Layer kinds in the cost model's order."""
    return ["vit-embed"] + ["vit"] * spec["vit"]["layers"] + ["projector", "embed"] + ["llm"] * spec["llm"]["layers"] + ["head"]


def build_layer(spec, index):
    """The layer at ``index`` of the cost model's table, with fresh random weights."""
    kind = layer_kinds(spec)[index]
    if kind == "vit-embed":
        return PatchEmbed(spec)
    if kind == "vit":
        return VitBlock(spec["vit"])
    if kind == "projector":
        return Projector(spec)
    if kind == "embed":
        return TokenEmbed(spec)
    if kind == "llm":
        return LlmBlock(spec["llm"])
    return Head(spec)


def build_layers(spec, seed=0, keep=None, device="cpu", dtype=torch.float32):
    """Every layer of the model in order (weights drawn from ``seed`` in that order, so every
    process builds the same model); with ``keep`` (a range of indices) only those are
    returned (the others are built and dropped to keep the random stream identical)."""
    torch.manual_seed(seed)
    out = []
    for i in range(len(layer_kinds(spec))):
        layer = build_layer(spec, i)
        if keep is None or i in keep:
            out.append(layer.to(device=device, dtype=dtype))
    return out
