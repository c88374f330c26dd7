"""The sidecar's layout search through the client: ranked layouts at one global batch in samples,
progress notifications, coded errors, and cancellation that frees the pool."""
import threading
import time
import unittest

import helpers  # noqa: F401  (sets sys.path)

import omnibal
from omnibal import Client

SMALL = {"gpus": 8, "globalBatchSamples": 144, "synthetic": 20000, "tps": [1], "pps": [2, 4, 8], "samplesPerPacks": [2.25, 4.5], "simulatedSteps": 1}


class SearchLayout(unittest.TestCase):
    def test_ranked_layouts_with_progress(self):
        seen = []
        with Client() as c:
            r = c.search_layout(SMALL, progress=lambda d, t: seen.append((d, t)))
        self.assertTrue(r["prediction"])
        self.assertEqual(r["globalBatchSamples"], 144)
        layouts = r["layouts"]
        self.assertEqual(len(layouts), 6)
        fits = [x for x in layouts if "gpuHours" in x]
        self.assertTrue(fits)
        self.assertEqual([x["gpuHours"] for x in fits], sorted(x["gpuHours"] for x in fits), "fastest first")
        for x in layouts:
            self.assertEqual(x["tp"] * x["pp"] * x["dp"], 8)
        for x in fits:
            # Each rank takes a whole number of packs within one pack of its share of the 144 samples.
            self.assertLessEqual(abs(x["samplesPerStep"] - 144), x["packedSamplesPerPack"] * x["dp"] + 0.72)
        self.assertTrue(seen, "progress notifications")
        self.assertEqual(seen[-1][0], seen[-1][1], "the last progress has done == total")
        # Progress counts the candidate layouts, and only them: from 0 of 6 to 6 of 6.
        self.assertEqual(seen[0], (0, 6))
        self.assertEqual({t for _, t in seen}, {6})
        self.assertEqual(r["epochs"], 1)

    def test_epochs(self):
        with Client() as c:
            one = c.search_layout(SMALL)["layouts"]
            two = c.search_layout(dict(SMALL, epochs=2))
        self.assertEqual(two["epochs"], 2)
        fits = [x for x in two["layouts"] if "gpuHours" in x]
        self.assertTrue(fits)
        for x, y in zip(two["layouts"], one):
            if "gpuHours" not in x:
                continue
            self.assertEqual(x["gpuHours"], y["gpuHours"], "per epoch unchanged")
            self.assertAlmostEqual(x["totalGpuHours"], 2 * y["totalGpuHours"], delta=1e-9 * x["totalGpuHours"])
            self.assertAlmostEqual(x["hours"], 2 * y["hours"], delta=1e-9 * x["hours"])

    def test_bad_params_are_coded(self):
        with Client() as c:
            with self.assertRaises(omnibal.InvalidParams) as e:
                c.search_layout({"pps": [128]})
            self.assertEqual(e.exception.code, "ERR_OMNIBAL_OUT_OF_RANGE")
            with self.assertRaises(omnibal.InvalidParams) as e:
                c.search_layout({"gpu": "nope"})
            self.assertEqual(e.exception.code, "ERR_OMNIBAL_UNKNOWN_PRESET")
            with self.assertRaises(omnibal.OmnibalError) as e:
                c.search_layout(dict(SMALL, virtualStages=2))
            self.assertEqual(e.exception.code, "ERR_OMNIBAL_INVALID_OPTIONS")

    def test_cancel_frees_the_pool(self):
        with Client(extra_args=("--workers", "1")) as c:
            rid, pending = c.request("searchLayout", {})  # the default search: seconds
            time.sleep(0.5)
            self.assertTrue(c.cancel(rid)["cancelled"])
            with self.assertRaises(omnibal.Cancelled):
                c.wait(pending, 30, rid)
            started = time.monotonic()
            r = c.search_layout(SMALL)  # the one worker is free again
            self.assertTrue(r["layouts"])
            self.assertLess(time.monotonic() - started, 60)


if __name__ == "__main__":
    unittest.main()
