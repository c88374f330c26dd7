"""A torchrun training loop fed by omnibal's balanced, packed micro-batches (InternVL style).

    torchrun --nproc_per_node 4 examples/train_torchrun.py --lengths ../shared/data/lengths/ai2d_train_12k.json

(or, where torchrun is unavailable, start each rank with MASTER_ADDR, MASTER_PORT, RANK and
WORLD_SIZE set; Debian's torch 1.13 packaging breaks `python3 -m torch.distributed.run`.)

Each rank builds the same plan from the same inputs and seed and takes its own micro-batches
(no collective communication for the data); a step is `accum` micro-batches; every micro-batch
is one packed sequence (concatenated samples, attention kept per sample with cu_seqlens).
The model here is a stand-in; plug in your VLM's forward on the packed sequence.

The sampler takes rank and world size from the process group; under torchrun with several
local ranks they share one sidecar per node (a Unix socket). `--resume STATE.json` restores a
checkpointed sampler state, also into another number of ranks (the state must then be saved at
a step boundary, as here, and the samples given as lengths).
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
    ap.add_argument("--resume", help="a sampler state saved by this script (JSON)")
    ap.add_argument("--save", help="where rank 0 writes the sampler state at each checkpoint")
    args = ap.parse_args()
    dist.init_process_group("gloo")
    rank = dist.get_rank()
    data = LengthsDataset(args.lengths)
    # Rank and world size come from the process group; lengths= (rather than path=) lets a
    # checkpoint resume into another world size.
    sampler = BalancedBatchSampler(lengths=data.rows, accum=args.accum, seed=1234)
    loader = DataLoader(data, batch_sampler=sampler, num_workers=2, collate_fn=pack)
    model = torch.nn.Embedding(2, 8)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    first_epoch = 0
    if args.resume:
        with open(args.resume) as fh:
            state = json.load(fh)
        sampler.load_state_dict(state)
        first_epoch = state["epoch"]
    for epoch in range(first_epoch, args.epochs):
        sampler.set_epoch(epoch)  # after load_state_dict, the same epoch resumes where it stopped
        for k, mb in enumerate(loader):
            done = sampler.pass_start + k + 1  # micro-batches of this epoch trained (a resumed pass starts later)
            loss = model(mb["input_ids"]).mean()  # your VLM on the packed sequence
            (loss / args.accum).backward()
            if done % args.accum == 0:
                for p in model.parameters():  # DDP would all-reduce here
                    dist.all_reduce(p.grad)
                opt.step()
                opt.zero_grad()
                if rank == 0 and done // args.accum % 50 == 0:
                    # The loader prefetches ahead, so pass what was consumed.
                    state = sampler.state_dict(consumed=done)
                    print("epoch %d step %d: %d samples consumed" % (epoch, done // args.accum, state["consumed_samples"]))
                    if args.save:
                        with open(args.save, "w") as fh:
                            json.dump(state, fh)
    dist.barrier()  # the node's shared sidecar serves every local rank until all are done
    sampler.close()
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
