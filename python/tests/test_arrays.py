"""Binary answers (``encoding: "base64"``): the Python decoding gives exactly the plans of the
JSON answers (summary, every step, every rank; every tail mode), the lazy views behave as lists,
and malformed arrays are a ProtocolError."""
import unittest

from helpers import ROOT  # noqa: F401,E402  (sets sys.path)

from omnibal import Client, MicroBatches, PlanLists, ProtocolError, decode_u32, even_rank_batches, u32_array


class BinaryAnswers(unittest.TestCase):
    def test_both_encodings_carry_identical_plans(self):
        n = 700
        vision = [(i * 5) % 9 for i in range(n)]
        text = [50 + (i * 7919) % 3000 for i in range(n)]
        with Client() as c:
            for tail in ("drop", "pad", "keep-partial"):
                for dp, accum in ((1, 1), (3, 2), (8, 3)):
                    params = {"vision": u32_array(vision), "text": u32_array(text), "dp": dp, "accum": accum, "seed": 5,
                              "tail": tail, "maxVision": 7, "maxText": 2900}
                    js = c.call("pack", params)
                    bi = c.call("pack", dict(params, encoding="base64"))
                    self.assertTrue(bi["shared"])
                    self.assertEqual(bi.pop("encoding"), "base64")
                    self.assertGreater(len(js["dropped"]), 0)
                    self.assertEqual(decode_u32(bi.pop("dropped")).tolist(), js.pop("dropped"))
                    self.assertEqual(decode_u32(bi.pop("droppedReason")).tolist(), js.pop("droppedReason"))
                    pid = js.pop("planId")
                    bi.pop("planId")
                    js.pop("shared")
                    bi.pop("shared")
                    self.assertEqual(bi, js)
                    for step in range(js["steps"]):
                        plan = c.plan_step(pid, step)
                        self.assertEqual(plan.tolist(), c.call("planStep", {"planId": pid, "step": step}))
                        self.assertEqual(len(plan), dp)
                    for rank in range(dp):
                        want = c.call("planForRank", {"planId": pid, "rank": rank})
                        plan = c.plan_for_rank(pid, rank)
                        self.assertEqual(plan.tolist(), want)
                        self.assertEqual([plan[g] for g in range(len(plan))], want)
                        self.assertEqual(plan[-1], want[-1])
                        self.assertEqual(plan[1:3], want[1:3])
                        self.assertEqual(list(plan.micro_batches()), [mb for step in want for mb in step])
                        # The sampler's per-rank list is the same from either form.
                        if tail == "keep-partial" and dp > 1:
                            last = c.call("planStep", {"planId": pid, "step": js["steps"] - 1})
                            lazy = even_rank_batches(plan, rank, dp, c.plan_step(pid, js["steps"] - 1), "pad")
                            self.assertIsInstance(lazy, MicroBatches)
                            self.assertEqual(list(lazy), even_rank_batches(want, rank, dp, last, "pad"))
                            self.assertEqual(lazy[-1], even_rank_batches(want, rank, dp, last, "pad")[-1])

    def test_malformed_arrays_are_protocol_errors(self):
        self.assertEqual(decode_u32({"$base64": "AQAAAP////8=", "dtype": "u32"}).tolist(), [1, 4294967295])
        for bad in ({"$base64": "AQAA", "dtype": "u32"}, {"$base64": "A*==", "dtype": "u32"}, {"$base64": "AAAAAA==", "dtype": "f64"}, "AAAA", None):
            with self.assertRaises(ProtocolError):
                decode_u32(bad)
        ok = {"$base64": "AAAAAA==", "dtype": "u32"}
        with self.assertRaises(ProtocolError):
            PlanLists({"encoding": "base64", "samples": ok, "microBatchOffsets": {"$base64": "AAAAAAIAAAA=", "dtype": "u32"}, "groupOffsets": ok})
        with self.assertRaises(ProtocolError):
            PlanLists([[1, 2]])


if __name__ == "__main__":
    unittest.main()
