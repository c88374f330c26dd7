"""The sampler in real PyTorch: a DataLoader with worker processes, and a torch.distributed job
(gloo, CPU) over 4 ranks with exact coverage, balance, and mid-epoch resume."""
import os
import tempfile
import unittest
import warnings

from helpers import have_real_data, real_lengths  # noqa: E402

import omnibal

try:
    import torch
    import torch.distributed as dist
    import torch.multiprocessing as mp
    from torch.utils.data import DataLoader, Dataset
except ImportError:  # pragma: no cover - CI installs Debian's python3-torch
    torch = None

needs = unittest.skipUnless(torch is not None and have_real_data(), "needs torch (Debian python3-torch) and the shared length files")


class Lengths(Dataset if torch is not None else object):
    """A map-style dataset whose items are their own (index, tiles, tokens)."""

    def __init__(self, pairs):
        self.pairs = pairs

    def __len__(self):
        return len(self.pairs)

    def __getitem__(self, i):
        v, t = self.pairs[i]
        return torch.tensor([i, v, t])


@needs
class DataLoaderEpoch(unittest.TestCase):
    def test_four_ranks_cover_every_sample_once_with_balanced_steps(self):
        pairs = real_lengths()
        world = 4
        accum = 2
        seen = []
        steps_per_rank = []
        rank_tokens = []  # [rank][step] tokens
        plan_id = None
        client = omnibal.Client()
        try:
            for rank in range(world):
                sampler = omnibal.BalancedBatchSampler(lengths=pairs, rank=rank, world_size=world, accum=accum, seed=3, client=client)
                loader = DataLoader(Lengths(pairs), batch_sampler=sampler, num_workers=2)
                tokens = []
                step_tokens = 0
                for k, batch in enumerate(loader):
                    seen.extend(batch[:, 0].tolist())
                    step_tokens += int(batch[:, 2].sum())
                    if (k + 1) % accum == 0:
                        tokens.append(step_tokens)
                        step_tokens = 0
                steps_per_rank.append(len(tokens))
                rank_tokens.append(tokens)
                plan_id = sampler.plan["planId"]
                dropped = set(sampler.plan["dropped"])
            self.assertEqual(len(set(steps_per_rank)), 1, steps_per_rank)
            self.assertEqual(len(seen), len(set(seen)), "a sample appeared twice")
            self.assertEqual(set(seen) | dropped, set(range(len(pairs))))
            metrics = client.call("metrics", {"planId": plan_id})
            # The per-step rank loads seen through the DataLoader match the sidecar's metrics.
            for step, expected in enumerate(metrics["stepTextDist"]):
                loads = [rank_tokens[r][step] for r in range(world)]
                top = max(loads)
                self.assertAlmostEqual(sum(top - x for x in loads) / (top * world), expected, places=12)
            self.assertLess(metrics["textDist"], 0.01)
        finally:
            client.close()


def _worker(rank, world, pairs, out_dir):
    os.environ["MASTER_ADDR"] = "127.0.0.1"
    os.environ["MASTER_PORT"] = os.environ.get("OMNIBAL_TEST_PORT", "29517")
    dist.init_process_group("gloo", rank=rank, world_size=world)
    # Rank and world size come from the initialised process group, as for DistributedSampler.
    sampler = omnibal.BalancedBatchSampler(lengths=pairs, accum=2, seed=11)
    try:
        assert (sampler.rank, sampler.world_size) == (rank, world), (sampler.rank, sampler.world_size)
        # A rank and world size given are used as given, as DistributedSampler uses them; those
        # that look like a mistake against the group (a size that does not divide it, another
        # process's rank at its size) warn, and only an out-of-range rank is an error.
        for kw, said in (({"world_size": 3, "rank": 0}, "group of 4 processes"),
                         ({"world_size": world, "rank": (rank + 1) % world}, "differs from this process's rank %d" % rank)):
            with warnings.catch_warnings(record=True) as seen:
                warnings.simplefilter("always")
                other = omnibal.BalancedBatchSampler(lengths=pairs, client=sampler._client, **kw)
            assert (other.rank, other.world_size) == (kw["rank"], kw["world_size"]), (other.rank, other.world_size)
            texts = [str(w.message) for w in seen if issubclass(w.category, omnibal.RankWarning)]
            assert len(texts) == 1 and said in texts[0], texts
            other.close()
        with warnings.catch_warnings(record=True) as seen:
            warnings.simplefilter("always")
            grouped = omnibal.BalancedBatchSampler(lengths=pairs, world_size=2, rank=rank // 2, client=sampler._client)
        assert not [w for w in seen if issubclass(w.category, omnibal.RankWarning)], "a data-parallel group of the job warned"
        grouped.close()
        try:
            omnibal.BalancedBatchSampler(lengths=pairs, world_size=world, rank=world, client=sampler._client)
            raise AssertionError("rank %d of %d accepted" % (world, world))
        except omnibal.InvalidParams as e:
            assert e.code == "ERR_OMNIBAL_OUT_OF_RANGE", e.code
        # One data-parallel rank (tensor or pipeline parallelism only): rank 0 of 1, every process.
        one = omnibal.BalancedBatchSampler(lengths=pairs, world_size=1, client=sampler._client)
        assert (one.rank, one.world_size) == (0, 1), (one.rank, one.world_size)
        mine = []
        loads = torch.zeros(world, dtype=torch.float64)
        batches = list(iter(sampler))
        waits = []  # per step: the share of rank time spent waiting for the slowest (text tokens)
        for step in range(0, len(batches), 2):
            tokens = sum(pairs[i][1] for mb in batches[step:step + 2] for i in mb)
            loads.zero_()
            loads[rank] = tokens
            dist.all_reduce(loads)
            count = torch.tensor([sum(len(mb) for mb in batches[step:step + 2])], dtype=torch.int64)
            dist.all_reduce(count)
            top = float(loads.max())
            waits.append(sum(top - float(x) for x in loads) / (top * world))
            for mb in batches[step:step + 2]:
                mine.extend(mb)
        # Steps are drawn at random (issue 12) and balance the default step-time cost, not plain
        # tokens; no step pairs a part-filled pack with full ones any more (token waits on these
        # 20,000 samples: mean 0.17%, worst step 0.5-2.8% over seeds and epochs).
        assert sum(waits) / len(waits) < 0.005, "unbalanced epoch: mean wait %.4f" % (sum(waits) / len(waits))
        assert max(waits) < 0.05, "unbalanced step: %.4f" % max(waits)
        everyone = [None] * world
        dist.all_gather_object(everyone, mine)
        if rank == 0:
            flat = [i for part in everyone for i in part]
            assert len(flat) == len(set(flat)), "a sample on two ranks"
            assert set(flat) | set(sampler.plan["dropped"]) == set(range(len(pairs))), "a sample lost"
        # Resume: stop half-way, save, restore in a fresh sampler, get the same remaining batches.
        fresh = omnibal.BalancedBatchSampler(lengths=pairs, rank=rank, world_size=world, accum=2, seed=11)
        it = iter(fresh)
        half = len(batches) // 2
        for _ in range(half):
            next(it)
        state = fresh.state_dict()
        fresh.close()
        resumed = omnibal.BalancedBatchSampler(lengths=pairs, rank=rank, world_size=world, accum=2, seed=11)
        resumed.load_state_dict(state)
        resumed.set_epoch(state["epoch"])
        assert list(iter(resumed)) == batches[half:], "resume changed the remaining batches"
        resumed.close()
        with open(os.path.join(out_dir, "rank%d.ok" % rank), "w") as fh:
            fh.write(str(len(batches)))
    finally:
        sampler.close()
        dist.destroy_process_group()


@needs
class PersistentWorkers(unittest.TestCase):
    def test_close_with_persistent_workers_lets_the_sidecar_exit_by_itself(self):
        pairs = real_lengths()[:3000]
        sampler = omnibal.BalancedBatchSampler(lengths=pairs, world_size=2, rank=1, accum=2, seed=1)
        loader = DataLoader(Lengths(pairs), batch_sampler=sampler, num_workers=2, persistent_workers=True)
        try:
            for epoch in range(2):
                sampler.set_epoch(epoch)
                self.assertEqual(sum(1 for _ in loader), len(sampler))
            proc = sampler._client._proc
            sampler.close()
            # The workers still live, and hold no copy of the sidecar's stdin: it saw the end of
            # its input and exited cleanly, not terminated after a grace period.
            self.assertEqual(proc.returncode, 0)
        finally:
            del loader


@needs
class Distributed(unittest.TestCase):
    def test_gloo_job_exact_coverage_balance_and_resume(self):
        pairs = real_lengths()[:20000]
        with tempfile.TemporaryDirectory() as out:
            mp.spawn(_worker, args=(4, pairs, out), nprocs=4, join=True)
            counts = []
            for r in range(4):
                with open(os.path.join(out, "rank%d.ok" % r)) as fh:
                    counts.append(fh.read())
            self.assertEqual(len(set(counts)), 1, "ranks ran different numbers of micro-batches")


if __name__ == "__main__":
    unittest.main()
