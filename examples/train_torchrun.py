"""A torchrun training loop fed by omnibal's balanced, packed micro-batches (InternVL style).

    torchrun --nproc_per_node 4 examples/train_torchrun.py --lengths ../shared/data/lengths/ai2d_train_12k.json

(or, where torchrun is unavailable, start each rank with MASTER_ADDR, MASTER_PORT, RANK and
WORLD_SIZE set; Debian's torch 1.13 packaging breaks `python3 -m torch.distributed.run`.)

Each rank builds the same plan from the same inputs and seed and takes its own micro-batches
(no collective communication for the data); a step is `accum` micro-batches; every micro-batch
is one packed sequence (concatenated samples, attention kept per sample with cu_seqlens).
The model here is a stand-in; plug in your VLM's forward on the packed sequence.
"""
import argparse
import json
import os
import sys

import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, Dataset

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "python"))
from omnibal import BalancedBatchSampler  # noqa: E402


class LengthsDataset(Dataset):
    """Stands in for a VLM SFT dataset: returns (tiles, tokens) per sample."""

    def __init__(self, path):
        with open(path) as fh:
            self.rows = [(r["vit_num"], r["token_num"]) for r in json.load(fh)]

    def __len__(self):
        return len(self.rows)

    def __getitem__(self, i):
        tiles, tokens = self.rows[i]
        return {"index": i, "pixel_tiles": tiles, "input_ids": torch.ones(tokens, dtype=torch.long)}


def pack(samples):
    """Concatenates a micro-batch's samples into one sequence with cu_seqlens (varlen attention)."""
    ids = torch.cat([s["input_ids"] for s in samples])
    lens = torch.tensor([0] + [len(s["input_ids"]) for s in samples]).cumsum(0)
    return {"input_ids": ids[None], "cu_seqlens": lens, "tiles": sum(s["pixel_tiles"] for s in samples)}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--lengths", required=True)
    ap.add_argument("--accum", type=int, default=4)
    ap.add_argument("--epochs", type=int, default=1)
    args = ap.parse_args()
    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    data = LengthsDataset(args.lengths)
    sampler = BalancedBatchSampler(path=args.lengths, rank=rank, world_size=world, accum=args.accum, seed=1234)
    loader = DataLoader(data, batch_sampler=sampler, num_workers=2, collate_fn=pack)
    model = torch.nn.Embedding(2, 8)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    for epoch in range(args.epochs):
        sampler.set_epoch(epoch)
        for k, mb in enumerate(loader):
            loss = model(mb["input_ids"]).mean()  # your VLM on the packed sequence
            (loss / args.accum).backward()
            if (k + 1) % args.accum == 0:
                for p in model.parameters():  # DDP would all-reduce here
                    dist.all_reduce(p.grad)
                opt.step()
                opt.zero_grad()
                if rank == 0 and (k + 1) // args.accum % 50 == 0:
                    # A checkpoint would save this: the loader prefetches ahead, so pass what was consumed.
                    print("epoch %d step %d state %s" % (epoch, (k + 1) // args.accum, sampler.state_dict(consumed=k + 1)))
    sampler.close()
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
