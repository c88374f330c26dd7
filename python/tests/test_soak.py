"""Soak: 10,000 sequential requests, 1,000 plans made and released, and 100 concurrent requests
against one sidecar; its resident memory after the soak stays within 15% of after a warm-up of
the same mix (a plan kept per balance call would grow it by about half)."""
import threading
import unittest

from helpers import rss_kib  # noqa: E402

from omnibal import Client


class Soak(unittest.TestCase):
    def test_sequential_and_concurrent_requests_do_not_grow_memory(self):
        params = {"vision": [1 + i % 5 for i in range(2000)], "text": [300 + (i * 37) % 1500 for i in range(2000)], "dp": 4, "samplesPerPack": 4}
        with Client() as c:
            plan_id = c.call("balance", params)["planId"]
            errors = []

            def hit(k):
                try:
                    c.call("backend")
                    c.call("planStep", {"planId": plan_id, "step": k % 2})
                except Exception as e:  # noqa: BLE001
                    errors.append(e)

            def burst():
                threads = [threading.Thread(target=hit, args=(k,)) for k in range(100)]
                for t in threads:
                    t.start()
                for t in threads:
                    t.join()

            def plans(count):
                for k in range(count):
                    pid = c.call("balance", dict(params, seed=k % 50))["planId"]
                    c.call("metrics", {"planId": pid})
                    self.assertTrue(c.release(pid))

            # Warm-up: the same mix as the soak, so caches and code paths are already there.
            for _ in range(500):
                c.call("version")
            plans(500)
            burst()
            warm = rss_kib(c.pid)
            for k in range(10000):
                r = c.call("version")
                self.assertEqual(r["protocol"], "omnibal-rpc/1")
            plans(1000)
            burst()
            self.assertEqual(errors, [])
            after = rss_kib(c.pid)
            self.assertLess(abs(after - warm) / warm, 0.15, "RSS %d KiB after warm-up, %d KiB after the soak" % (warm, after))


if __name__ == "__main__":
    unittest.main()
