"""BalancedBatchSampler with tail='carry': each epoch's tail is trained in the next epoch (no
sample lost at an epoch boundary), every rank yields the same number of batches, state_dict
records the carry so a resumed run yields the uninterrupted run's batches, and set_epoch jumping
forward plans the chain deterministically; the sidecar's carry param is checked."""
import json
import unittest
from collections import Counter

import helpers  # noqa: F401  (sets sys.path)
from helpers import SharedClientCase

from omnibal import BalancedBatchSampler
from omnibal.errors import OmnibalError, StateMismatch

PAIRS = [(1 + (i * 7) % 6, 150 + (i * 7919) % 2400) for i in range(3000)]
WORLD = 16


class CarriedTail(SharedClientCase):
    def sampler(self, rank=0, world_size=WORLD, tail="carry", **kw):
        s = BalancedBatchSampler(PAIRS, rank=rank, world_size=world_size, accum=1, seed=3, client=self.client, tail=tail, **kw)
        self.addCleanup(s.close)
        return s

    def ranks_of_epoch(self, samplers, epoch):
        out = []
        for s in samplers:
            s.set_epoch(epoch)
            out.append(list(s))
        return out

    def test_no_sample_is_lost_over_epochs_and_ranks_stay_even(self):
        samplers = [self.sampler(r) for r in range(WORLD)]
        epochs = 4
        count = Counter()
        carried = []
        for e in range(epochs):
            ranks = self.ranks_of_epoch(samplers, e)
            self.assertEqual(len({len(r) for r in ranks}), 1, "every rank yields the same number of batches")
            for r in ranks:
                for mb in r:
                    count.update(mb)
            plan = samplers[0].plan
            carried = [i for i, why in zip(plan["dropped"], plan["droppedReason"]) if why == 4]
            self.assertTrue(all(why == 4 for why in plan["droppedReason"]), "only carried samples left out")
            if e > 0:
                self.assertTrue(samplers[0].state_dict(consumed=0)["carry"], "epoch %d carries samples in" % e)
        self.assertTrue(carried)
        last = set(carried)
        for i in range(len(PAIRS)):
            self.assertEqual(count[i], epochs - (1 if i in last else 0), "sample %d" % i)
        # Drop loses its tail every epoch instead.
        drop = self.sampler(tail="drop")
        drop.set_epoch(1)
        list(drop)
        self.assertTrue(drop.plan["dropped"])

    def test_resume_mid_run_gives_the_uninterrupted_batches(self):
        s = self.sampler(rank=5)
        run = []
        for e in range(3):
            s.set_epoch(e)
            run.append(list(s))
        # Interrupted 7 micro-batches into epoch 2, from a state that survives a JSON checkpoint.
        t = self.sampler(rank=5)
        t.set_epoch(2)
        it = iter(t)
        for _ in range(7):
            next(it)
        state = json.loads(json.dumps(t.state_dict()))
        self.assertEqual(state["carry"], t.state_dict()["carry"])
        self.assertTrue(state["carry"])
        fresh = self.sampler(rank=5)
        fresh.load_state_dict(state)
        fresh.set_epoch(2)
        self.assertEqual(list(fresh), run[2][7:])
        self.assertEqual(list(fresh), run[2])
        fresh.set_epoch(3)
        s.set_epoch(3)
        self.assertEqual(list(fresh), list(s), "the next epoch gets the same carry")

    def test_set_epoch_jumping_forward_plans_the_chain(self):
        s = self.sampler(rank=2)
        for e in range(4):
            s.set_epoch(e)
            stepped = list(s)
        jumped = self.sampler(rank=2)
        jumped.set_epoch(3)
        self.assertEqual(list(jumped), stepped)
        built = self.sampler(rank=2, epoch=3)
        self.assertEqual(list(built), stepped)
        # Back to an earlier epoch: its known carry, the same batches as before.
        s.set_epoch(1)
        first = list(s)
        again = self.sampler(rank=2)
        again.set_epoch(1)
        self.assertEqual(list(again), first)

    def test_states_that_cannot_resume_a_carried_run_are_refused(self):
        s = self.sampler()
        s.set_epoch(1)
        state = s.state_dict(consumed=0)
        missing = dict(state)
        del missing["carry"]
        with self.assertRaises(StateMismatch):
            self.sampler().load_state_dict(missing)
        with self.assertRaises(StateMismatch) as e:
            self.sampler(world_size=8).load_state_dict(state)
        self.assertIn("world size", str(e.exception))
        with self.assertRaises(StateMismatch):
            self.sampler(tail="drop").load_state_dict(state)
        # A corrupted carry (repeated, or over 32 bits) is refused when loaded, not at iter().
        for carry in ([5, 5], [2 ** 40], [-1], [1.5]):
            with self.assertRaises(StateMismatch) as e:
                self.sampler().load_state_dict(dict(state, carry=carry))
            self.assertIn("distinct sample indices", str(e.exception))

    def test_the_sidecar_checks_carry(self):
        base = {"vision": [v for v, _ in PAIRS], "text": [t for _, t in PAIRS], "dp": WORLD, "samplesPerPack": 4.5, "tail": "carry"}
        ok = self.client.call("pack", dict(base, carry=[1, 2, 3]))
        self.client.release(ok["planId"])
        for carry, says in (([1, 3000], "carry entry 1 must be a sample index below 3000"), ([4, 4], "carry entry 1 repeats sample 4")):
            with self.assertRaises(OmnibalError) as e:
                self.client.call("pack", dict(base, carry=carry))
            self.assertEqual(e.exception.code, "ERR_OMNIBAL_OUT_OF_RANGE")
            self.assertIn(says, str(e.exception))
        with self.assertRaises(OmnibalError) as e:
            self.client.call("pack", dict(base, strategy="random"))
        self.assertIn("needs strategy balanced", str(e.exception))


if __name__ == "__main__":
    unittest.main()
