"""BalancedBatchSampler semantics, as PyTorch users expect from DistributedSampler: every iter()
starts the epoch, load_state_dict + set_epoch resumes, equal batch counts on every rank, states
tied to data, options and world size, resuming into another world size by the consumed prefix
(no sample twice, none skipped), and the constructor's argument handling."""
import json
import os
import tempfile
import unittest
import warnings
from unittest import mock

import helpers  # noqa: F401  (sets sys.path)

import omnibal
from omnibal import BalancedBatchSampler, Client

PAIRS = [(1 + (i * 7) % 6, 150 + (i * 7919) % 2400) for i in range(6000)]


class SamplerSemantics(helpers.SharedClientCase):
    def sampler(self, rank=0, world_size=4, accum=2, pairs=PAIRS, **kw):
        s = BalancedBatchSampler(pairs, rank=rank, world_size=world_size, accum=accum, seed=7, client=self.client, **kw)
        self.addCleanup(s.close)
        return s

    def epoch_of(self, world_size, accum=2, **kw):
        return [list(self.sampler(r, world_size, accum, **kw)) for r in range(world_size)]

    def test_every_iter_starts_the_epoch(self):
        s = self.sampler()
        first = list(s)
        it = iter(s)
        for _ in range(5):
            next(it)
        self.assertEqual(list(s), first, "a second iter() must start from the beginning")
        s.set_epoch(1)
        other = list(s)
        self.assertNotEqual(other, first)
        s.set_epoch(0)
        self.assertEqual(list(s), first, "epochs are a pure function of the inputs")

    def test_load_state_dict_then_set_epoch_resumes(self):
        s = self.sampler(rank=1)
        s.set_epoch(3)
        full = list(s)
        it = iter(s)
        for _ in range(9):
            next(it)
        state = s.state_dict()
        self.assertEqual((state["epoch"], state["consumed_micro_batches"], state["world_size"]), (3, 9, 4))
        fresh = self.sampler(rank=1)
        fresh.load_state_dict(json.loads(json.dumps(state)))  # states survive a JSON checkpoint
        fresh.set_epoch(3)  # the README's loop
        self.assertEqual(list(fresh), full[9:])
        self.assertEqual(list(fresh), full, "after the resumed pass, iter() starts the epoch again")
        again = self.sampler(rank=1)
        again.load_state_dict(state)
        self.assertEqual(list(again), full[9:], "resumes without set_epoch too")
        moved = self.sampler(rank=1)
        moved.load_state_dict(state)
        moved.set_epoch(4)
        self.assertEqual(len(list(moved)), len(moved), "another epoch starts from its beginning")

    def test_consumed_samples_count_every_rank(self):
        ranks = self.epoch_of(4)
        s = self.sampler(rank=2)
        state = s.state_dict(consumed=6)
        self.assertEqual(state["consumed_samples"], sum(len(mb) for r in ranks for mb in r[:6]))
        self.assertEqual(s.state_dict(consumed=0)["consumed_samples"], 0)

    def test_keep_partial_gives_every_rank_the_same_count(self):
        pairs = PAIRS[:1234]
        for even in ("pad", "drop"):
            ranks = self.epoch_of(4, accum=3, pairs=pairs, tail="keep-partial", even=even)
            self.assertEqual(len({len(r) for r in ranks}), 1, (even, [len(r) for r in ranks]))
            seen = [i for r in ranks for mb in r for i in mb]
            if even == "pad":
                self.assertEqual(set(seen), set(range(len(pairs))), "pad covers every sample")
            else:
                self.assertEqual(len(seen), len(set(seen)), "drop repeats nothing")
        partial = self.sampler(0, 4, 3, pairs=pairs, tail="keep-partial")
        partial.steps()
        self.assertNotEqual(partial.plan["microBatches"] % (4 * 3), 0, "the case must have a partial last step")

    def _resume_elsewhere(self, old_world, new_world, new_accum, consumed_steps):
        before_ranks = self.epoch_of(old_world)
        consumed = consumed_steps * 2
        state = self.sampler(0, old_world).state_dict(consumed=consumed)
        before = [i for r in before_ranks for mb in r[:consumed] for i in mb]
        after_ranks = []
        for r in range(new_world):
            s = self.sampler(r, new_world, new_accum)
            s.load_state_dict(state)
            s.set_epoch(0)
            after_ranks.append(list(s))
        self.assertEqual(len({len(r) for r in after_ranks}), 1)
        after = [i for r in after_ranks for mb in r for i in mb]
        dropped = set(s.plan["dropped"])
        self.assertEqual(len(before) + len(after), len(set(before) | set(after)), "a sample trained twice")
        self.assertEqual(set(before) | set(after) | dropped, set(range(len(PAIRS))), "a sample skipped")
        self.assertFalse(dropped & (set(before) | set(after)))
        return s, state

    def test_resume_into_more_ranks_skips_the_consumed_prefix(self):
        s, state = self._resume_elsewhere(4, 8, 2, consumed_steps=40)
        # A state saved in the new world size carries on from there, exactly.
        later = s.state_dict(consumed=3)
        self.assertEqual(later["segments"], [[4, 2, 80], [8, 2, 3]])
        self.assertGreater(later["consumed_samples"], state["consumed_samples"])
        rest = list(s)[3:]
        back = self.sampler(7, 8, 2)
        back.load_state_dict(later)
        self.assertEqual(list(back), rest)

    def test_resume_into_fewer_ranks_and_another_accum(self):
        self._resume_elsewhere(4, 3, 3, consumed_steps=25)

    def test_resume_at_the_end_of_an_epoch_into_more_ranks(self):
        small = PAIRS[:400]
        s = self.sampler(0, 2, pairs=small)
        state = s.state_dict(consumed=len(s) - 2)  # one step of 2 x 2 micro-batches left
        bigger = self.sampler(0, 4, pairs=small)
        bigger.load_state_dict(state)
        self.assertEqual(list(bigger), [], "too little left for a step of 4 ranks: the epoch ends")
        self.assertEqual(len(bigger.plan["dropped"]) + state["consumed_samples"], len(small))
        bigger.set_epoch(1)
        self.assertGreater(len(list(bigger)), 0)

    def test_states_that_cannot_resume_exactly_are_refused(self):
        s = self.sampler()
        state = s.state_dict(consumed=5)  # mid-step (accum 2)
        with self.assertRaises(omnibal.StateMismatch) as e:
            self.sampler(0, 8).load_state_dict(state)
        self.assertEqual(e.exception.code, "ERR_OMNIBAL_STATE_MISMATCH")
        self.assertIn("step boundary", str(e.exception))
        with self.assertRaises(omnibal.StateMismatch) as e:
            self.sampler(pairs=PAIRS[:-1]).load_state_dict(state)
        self.assertIn("other data", str(e.exception))
        with self.assertRaises(omnibal.StateMismatch) as e:
            self.sampler(tail="pad").load_state_dict(state)
        self.assertIn("tail", str(e.exception))
        with self.assertRaises(omnibal.StateMismatch):
            self.sampler().load_state_dict({"epoch": 0, "position": 3, "seed": 7})  # the old format
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "lengths.jsonl")
            with open(path, "w") as fh:
                fh.writelines(json.dumps({"vit_num": v, "token_num": t}) + "\n" for v, t in PAIRS)
            from_file = BalancedBatchSampler(path, rank=0, world_size=4, accum=2, seed=7, client=self.client)
            self.addCleanup(from_file.close)
            self.assertEqual(list(from_file), list(self.sampler()), "a path gives the same plan as the same lengths")
            saved = from_file.state_dict(consumed=4)
            other = BalancedBatchSampler(path=path, rank=0, world_size=8, accum=2, seed=7, client=self.client)
            self.addCleanup(other.close)
            with self.assertRaises(omnibal.StateMismatch) as e:
                other.load_state_dict(saved)
            self.assertIn("lengths=", str(e.exception))

    def test_a_damaged_state_is_a_state_mismatch_naming_the_member(self):
        # Edited or damaged checkpoints once raised KeyError / ZeroDivisionError / ValueError, or
        # resumed silently (a negative count; a count past the epoch yielded nothing).
        state = self.sampler().state_dict(consumed=4)
        for member, value in (("segments", [[4, 2, -5]]), ("segments", [[4, 0, 4]]), ("segments", []), ("segments", "x"),
                              ("segments", [[True, 2, 4]]), ("segments", [[4, 2, 4.0]]), ("segments", None), ("options", None),
                              ("fingerprint", 3), ("epoch", -1)):
            with self.subTest(member=member, value=value):
                damaged = dict(state, **{member: value})
                if value is None:
                    del damaged[member]
                with self.assertRaises(omnibal.StateMismatch) as e:
                    self.sampler().load_state_dict(damaged)
                self.assertIn("malformed sampler state: %s" % member, str(e.exception))
        past = self.sampler()
        past.load_state_dict(dict(state, segments=[[4, 2, 10 ** 9]]))
        with self.assertRaises(omnibal.StateMismatch) as e:
            list(past)
        self.assertIn("has only", str(e.exception))
        self.assertEqual(len(list(past)), len(past), "the next iter() starts the epoch")
        with self.assertRaises(omnibal.InvalidParams) as e:
            BalancedBatchSampler([(1, 2), (3,)], world_size=1, client=self.client)
        self.assertIn("lengths[1] must be a (vision, text) pair", str(e.exception))

    def test_an_evicted_plan_is_made_again(self):
        expected = self.sampler(rank=1).state_dict(consumed=6)["consumed_samples"]
        with Client(extra_args=["--max-plan-bytes", "120000"]) as small:
            a = BalancedBatchSampler(PAIRS, rank=1, world_size=4, accum=2, seed=7, client=small)
            first = list(a)
            b = BalancedBatchSampler(PAIRS, rank=1, world_size=4, accum=2, seed=8, client=small)
            list(b)  # its plan pushes a's out of the 120 kB store
            with self.assertRaises(omnibal.UnknownHandle):
                small.call("planStep", {"planId": a._plan_ids[0], "step": 0})
            self.assertEqual(a.state_dict(consumed=6)["consumed_samples"], expected)
            self.assertEqual(list(a), first)
            a.close()
            b.close()

    def test_arguments(self):
        with self.assertRaises(TypeError):
            BalancedBatchSampler(PAIRS, 0, 4)  # rank and world size are keyword-only
        with self.assertRaises(TypeError) as e:
            BalancedBatchSampler(PAIRS, world_size=1, sead=3)
        self.assertIn("sead", str(e.exception))
        with self.assertRaises(TypeError):
            BalancedBatchSampler(PAIRS, lengths=PAIRS)
        with self.assertRaises(omnibal.InvalidParams):
            BalancedBatchSampler(PAIRS, world_size=2, rank=2)
        with self.assertRaises(omnibal.InvalidParams):
            BalancedBatchSampler(PAIRS, world_size=2, accum=0)
        with self.assertRaises(omnibal.InvalidParams):
            BalancedBatchSampler([(1, -5)], world_size=1)
        with mock.patch.dict(os.environ, {"WORLD_SIZE": "4"}):
            with self.assertRaises(omnibal.InvalidParams) as e:
                BalancedBatchSampler(PAIRS, client=self.client)
            self.assertIn("init_process_group", str(e.exception))

    def test_ranks_follow_distributed_sampler_conventions(self):
        # No process group here: a world size above one needs a rank from somewhere (the
        # argument, or torchrun's RANK of the same WORLD_SIZE), never a silent rank 0. A rank
        # and world size given are used as given (DistributedSampler's rule), checked for type
        # and range; one that looks like a mistake against RANK/WORLD_SIZE only warns.
        keys = ("WORLD_SIZE", "RANK")
        saved = {k: os.environ.pop(k, None) for k in keys}

        def env(**values):
            for k in keys:
                os.environ.pop(k, None)
            os.environ.update({k: str(v) for k, v in values.items()})

        def refused(code="ERR_OMNIBAL_OUT_OF_RANGE", **kw):
            with self.assertRaises(omnibal.InvalidParams) as e:
                BalancedBatchSampler(PAIRS, client=self.client, **kw)
            self.assertEqual(len(str(e.exception).splitlines()), 1)
            self.assertEqual(e.exception.code, code)
            return str(e.exception)

        def ranks(warns=None, **kw):
            with warnings.catch_warnings(record=True) as seen:
                warnings.simplefilter("always")
                s = BalancedBatchSampler(PAIRS, client=self.client, **kw)
            s.close()
            said = [str(w.message) for w in seen if issubclass(w.category, omnibal.RankWarning)]
            if warns is None:
                self.assertEqual(said, [])
            else:
                self.assertEqual(len(said), 1, said)
                self.assertIn(warns, said[0])
                self.assertTrue(all(w.filename == __file__ for w in seen), "the warning points at the caller")
            return s.rank, s.world_size

        class Index:  # an integer type that is not int (numpy's, torch's): taken through __index__
            def __init__(self, n):
                self.n = n

            def __index__(self):
                return self.n
        try:
            msg = refused(world_size=2, code="ERR_OMNIBAL_INVALID_OPTIONS")
            self.assertIn("world_size=2", msg)
            self.assertIn("rank", msg)
            self.assertIn("rank=1", refused(rank=1, code="ERR_OMNIBAL_INVALID_OPTIONS"))
            self.assertIn("world_size", refused(rank=1, code="ERR_OMNIBAL_INVALID_OPTIONS"))
            self.assertIn("got 2", refused(rank=2, world_size=2))
            refused(rank=-1, world_size=2)
            refused(rank=0, world_size=0)
            self.assertIn("'1'", refused(rank="1", world_size=2, code="ERR_OMNIBAL_INVALID_TYPE"))
            refused(rank=1.0, world_size=2, code="ERR_OMNIBAL_INVALID_TYPE")
            refused(rank=True, world_size=2, code="ERR_OMNIBAL_INVALID_TYPE")
            self.assertEqual(ranks(), (0, 1))
            self.assertEqual(ranks(world_size=1), (0, 1))
            self.assertEqual(ranks(rank=1, world_size=2), (1, 2))
            self.assertEqual(ranks(rank=Index(1), world_size=Index(3)), (1, 3))
            self.assertIs(type(ranks(rank=Index(1), world_size=Index(3))[0]), int)
            env(WORLD_SIZE=4, RANK=3)
            self.assertEqual(ranks(world_size=4), (3, 4))
            self.assertEqual(ranks(rank=3), (3, 4))
            self.assertEqual(ranks(rank=1, world_size=2), (1, 2))  # a data-parallel group of the job
            # Another process's rank at the job's size, or a size that does not divide the job:
            # used as given (ranks remapped on purpose, several samplers per process), with a warning.
            self.assertEqual(ranks(rank=2, world_size=4, warns="RANK=3"), (2, 4))
            self.assertEqual(ranks(rank=0, world_size=3, warns="WORLD_SIZE=4"), (0, 3))
            self.assertEqual(ranks(rank=5, world_size=8, warns="WORLD_SIZE=4"), (5, 8))
            refused(rank=4, world_size=4)  # the range is still checked
            refused(world_size=2, code="ERR_OMNIBAL_INVALID_OPTIONS")  # RANK=3 is a rank of 4, not of 2
            env(WORLD_SIZE=4, RANK="x")
            self.assertIn("RANK='x'", refused(rank=0, world_size=4, code="ERR_OMNIBAL_INVALID_OPTIONS"))
            env(WORLD_SIZE=2, RANK=2)
            self.assertIn("RANK=2", refused(rank=0, world_size=2))
        finally:
            env(**{k: v for k, v in saved.items() if v is not None})

    def test_len_is_what_the_pass_yields_also_after_a_resume(self):
        s = self.sampler(rank=1)
        for epoch in range(3):
            s.set_epoch(epoch)
            self.assertEqual(len(s), len(list(s)))
        s.set_epoch(2)
        it = iter(s)
        for _ in range(10):
            next(it)
        state = s.state_dict()
        resumed = self.sampler(rank=1)
        resumed.load_state_dict(state)
        resumed.set_epoch(2)
        whole = len(s)
        self.assertEqual(len(resumed), whole - 10)  # before the pass (DataLoader asks then)
        it = iter(resumed)
        first = next(it)
        self.assertEqual(len(resumed), whole - 10)  # while it runs
        self.assertEqual(1 + sum(1 for _ in it), whole - 10)
        self.assertEqual(len(resumed), whole)  # the next pass is a whole epoch
        self.assertEqual(first, list(s)[10])
        # Another world size resumes by the consumed prefix: len is still what it yields.
        moved = self.sampler(rank=0, world_size=2)
        state = self.sampler(rank=0).state_dict(consumed=4)
        moved.load_state_dict(state)
        self.assertEqual(len(moved), len(list(moved)))

    def test_float_arguments_and_environment_are_checked_by_name(self):
        for name in ("samples_per_pack", "cost_a", "cost_b", "max_text"):
            for bad in (float("nan"), float("inf")):
                with self.assertRaises(omnibal.InvalidParams) as e:
                    BalancedBatchSampler(PAIRS, world_size=1, client=self.client, **{name: bad})
                self.assertIn(name, str(e.exception))
        for bad in (5, "x"):
            with self.assertRaises(omnibal.InvalidParams) as e:
                BalancedBatchSampler(PAIRS, world_size=1, client=self.client, progress=bad)
            self.assertEqual(e.exception.code, "ERR_OMNIBAL_INVALID_TYPE")
            with self.assertRaises(omnibal.InvalidParams):
                self.client.call("version", progress=bad)
        with mock.patch.dict(os.environ, {"LOCAL_WORLD_SIZE": "x"}):
            with self.assertRaises(omnibal.InvalidParams) as e:
                BalancedBatchSampler(PAIRS, world_size=1)  # sidecar='auto' reads it
            self.assertIn("LOCAL_WORLD_SIZE", str(e.exception))

    def test_a_raising_progress_callback_fails_the_planning_call_and_nothing_else(self):
        boom = ValueError("the progress bar was closed")
        calls = []

        def bad(done, total):
            calls.append((done, total))
            raise boom
        s = self.sampler(progress=bad)
        with self.assertRaises(ValueError) as e:
            list(s)
        self.assertIs(e.exception, boom)
        self.assertEqual(len(calls), 1)
        # The sampler plans the epoch again at the next pass, on the same connection.
        s.progress = None
        self.assertEqual(list(s), list(self.sampler()))
        self.assertEqual(len(calls), 1)

    def test_a_dead_sidecar_is_restarted_when_the_sampler_owns_it(self):
        import signal
        s = BalancedBatchSampler(PAIRS, rank=1, world_size=4, accum=2, seed=7, sidecar="own")
        self.addCleanup(s.close)
        expected = []
        for epoch in (0, 1):
            s.set_epoch(epoch)
            expected.append(list(s))
        s.set_epoch(0)
        self.assertEqual(list(s), expected[0])
        os.kill(s._client.pid, signal.SIGKILL)
        s.set_epoch(1)
        with self.assertLogs("omnibal", "WARNING"):
            self.assertEqual(list(s), expected[1])
        self.assertEqual(s.state_dict(consumed=3)["consumed_micro_batches"], 3)
        # A client the caller gave is the caller's to restart: the error says so.
        c = Client(timeout=30)
        mine = BalancedBatchSampler(PAIRS, rank=1, world_size=4, accum=2, seed=7, client=c)
        self.assertEqual(list(mine), expected[0])
        os.kill(c.pid, signal.SIGKILL)
        mine.set_epoch(1)
        with self.assertRaises(omnibal.SidecarExited) as e:
            list(mine)
        self.assertIn("new Client", str(e.exception))
        mine.close()
        c.close()


if __name__ == "__main__":
    unittest.main()
