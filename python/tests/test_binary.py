"""Binary attachments (docs/protocol.md, "Binary attachments"): uint32 arrays sent as raw bytes
after the request line, answers with ``"encoding": "binary"`` read into ``array.array``; the same
plans as JSON lists; the client's thread-safety, timeout and misframing guarantees hold."""
import array
import os
import tempfile
import sys
import textwrap
import unittest

from helpers import ROOT, from_threads  # noqa: F401  (sets sys.path)

import omnibal
from omnibal import Client, LimitExceeded, SidecarExited, SidecarTimeout, u32_values
from omnibal.client import request_frame

try:
    import numpy
except ImportError:  # numpy is optional: the client never imports it
    numpy = None


def _lengths(n, k=0):
    return [1 + (i * (k + 7)) % 6 for i in range(n)], [150 + (i * 7919 + k) % 2400 for i in range(n)]


def _params(vision, text, **extra):
    return dict({"vision": vision, "text": text, "dp": 2, "accum": 2, "samplesPerPack": 3, "seed": 4}, **extra)


class Frames(unittest.TestCase):
    def test_the_frame_declares_its_attachments_and_sends_the_arrays_own_memory(self):
        vision, text = u32_values([1, 2, 3]), u32_values([7, 8])
        parts = request_frame({"jsonrpc": "2.0", "id": 3, "method": "pack", "params": {"vision": vision, "text": text, "dp": 1}})
        import json
        line = json.loads(parts[0])
        self.assertEqual(line["$attachments"], [12, 8])
        self.assertEqual(line["params"]["vision"], {"$binary": 0, "dtype": "u32"})
        self.assertEqual(line["params"]["text"], {"$binary": 1, "dtype": "u32"})
        self.assertEqual(list(line)[:2], ["jsonrpc", "id"])  # the id comes first (id recovery)
        # "$attachments" comes last: the sidecar finds it at the end of a line over its limit and skips the bytes too.
        self.assertEqual(list(line)[-1], "$attachments")
        self.assertTrue(parts[0].rstrip(b"\n").endswith(b'"$attachments":[12,8]}'), parts[0][-40:])
        self.assertEqual(parts[-1], b"\n")
        if sys.byteorder == "little":
            self.assertIs(parts[1].obj, vision)  # no copy
        self.assertEqual(bytes(parts[1]), vision.tobytes() if sys.byteorder == "little" else bytes(parts[1]))
        # Plain params: one line, as before.
        self.assertEqual(len(request_frame({"jsonrpc": "2.0", "id": 4, "method": "version"})), 1)
        # Other arrays are not attachments: 8-byte items, floats.
        self.assertEqual(len(request_frame({"jsonrpc": "2.0", "id": 5, "method": "x", "params": {"a": [1.5]}})), 1)
        with self.assertRaises(TypeError):
            request_frame({"jsonrpc": "2.0", "id": 6, "method": "x", "params": {"a": array.array("d", [1.5])}})

    def test_more_arrays_than_attachments_allow_is_a_limit_error_naming_it(self):
        # Was a ValueError that request() reported as "(NaN and Infinity are not JSON)".
        params = {"a%d" % k: u32_values([k]) for k in range(65)}
        with Client(command=[sys.executable, "-c", "import sys; sys.stdin.read()"], timeout=5) as c:
            with self.assertRaises(LimitExceeded) as e:
                c.call("pack", params)
        self.assertIn("at most 64 binary arrays", str(e.exception))
        self.assertNotIn("NaN", str(e.exception))
        self.assertEqual(len(request_frame({"jsonrpc": "2.0", "id": 1, "method": "pack", "params": dict(list(params.items())[:64])})), 66)

    def test_a_scalar_is_never_sent_as_a_one_element_attachment(self):
        # A 0-d uint32 view (or a numpy uint32 scalar, `dp=numpy.uint32(8)`) is a number, not an
        # array: it was sent as attachment 0, and the sidecar answered "dp must be integer".
        scalars = [memoryview(bytes(4)).cast("I", shape=[])]
        if numpy is not None:
            scalars += [numpy.uint32(8), numpy.array(8, dtype=numpy.uint32)]
        for value in scalars:
            with self.subTest(value=type(value).__name__), self.assertRaises(TypeError):
                request_frame({"jsonrpc": "2.0", "id": 7, "method": "pack", "params": {"dp": value}})


class RoundTrip(unittest.TestCase):
    def test_binary_requests_and_answers_carry_the_json_plans(self):
        vision, text = _lengths(3000)
        with Client() as c:
            as_json = c.call("pack", _params(vision, text))
            as_binary = c.call("pack", _params(u32_values(vision), u32_values(text), encoding="binary"))
            self.assertTrue(as_binary["shared"], "the same data, whatever the wire: one plan")
            self.assertEqual(as_binary.pop("encoding"), "binary")
            self.assertIsInstance(as_binary["dropped"], array.array)
            self.assertEqual(as_binary["dropped"].tolist(), as_json["dropped"])
            self.assertEqual(as_binary["droppedReason"].tolist(), as_json["droppedReason"])
            # A uint32 memoryview is sent as it is.
            view = c.call("pack", _params(memoryview(u32_values(vision)), memoryview(u32_values(text))))
            self.assertTrue(view["shared"])
            for rank in range(as_json["dp"]):
                self.assertEqual(c.plan_for_rank(as_json["planId"], rank).tolist(), c.call("planForRank", {"planId": as_json["planId"], "rank": rank}))
            for step in range(as_json["steps"]):
                self.assertEqual(c.plan_step(as_json["planId"], step).tolist(), c.call("planStep", {"planId": as_json["planId"], "step": step}))

    @unittest.skipIf(numpy is None, "numpy is not installed (optional)")
    def test_numpy_uint32_arrays_are_sent_as_attachments(self):
        vision, text = _lengths(2000)
        with Client() as c:
            want = c.call("pack", _params(vision, text))
            got = c.call("pack", _params(numpy.asarray(vision, dtype=numpy.uint32)[::-1][::-1], numpy.asarray(text, dtype=">u4")))
            self.assertTrue(got["shared"])
            self.assertEqual(got["dropped"], want["dropped"])

    def test_concurrent_binary_requests_from_threads_get_their_own_answers(self):
        cases = [_lengths(2000 + 37 * k, k) for k in range(16)]
        with Client() as c:
            expected = [c.call("pack", _params(v, t, seed=k))["dropped"] for k, (v, t) in enumerate(cases)]

            def work(k):
                v, t = cases[k]
                r = c.call("pack", _params(u32_values(v), u32_values(t), seed=k, encoding="binary"), timeout=60)
                return r["dropped"].tolist()

            got, errors = from_threads(16, work)
            self.assertEqual(errors, [])
            self.assertEqual(got, expected)

    def test_a_request_over_the_limit_fails_its_call_and_the_connection_goes_on(self):
        vision, text = _lengths(5000)
        with Client(extra_args=["--max-line-bytes", "16384"]) as c:
            with self.assertRaises(LimitExceeded) as e:
                c.call("pack", _params(u32_values(vision), u32_values(text)))
            self.assertIn("--max-line-bytes", str(e.exception))
            small_v, small_t = _lengths(500)
            self.assertIn("planId", c.call("pack", _params(u32_values(small_v), u32_values(small_t))))


# A stand-in sidecar that answers every request with a binary answer framed as ``MODE`` says.
FAKE = textwrap.dedent("""
    import json, sys, time
    mode = sys.argv[1]
    for line in sys.stdin.buffer:
        msg = json.loads(line)
        head = {"jsonrpc": "2.0", "id": msg["id"], "result": {"encoding": "binary", "dropped": {"$binary": 0, "dtype": "u32"}}}
        out = sys.stdout.buffer
        if mode == "ok":
            out.write(json.dumps(dict(head, **{"$attachments": [8]})).encode() + b"\\n" + bytes(range(8)) + b"\\n")
        elif mode == "short":  # declares 8 bytes, sends 4, then ends
            out.write(json.dumps(dict(head, **{"$attachments": [8]})).encode() + b"\\n" + bytes(4))
            out.flush()
            sys.exit(0)
        elif mode == "garbage":  # the byte after the attachment is not a newline
            out.write(json.dumps(dict(head, **{"$attachments": [4]})).encode() + b"\\n" + bytes(4) + b"XYZ\\n")
        elif mode == "malformed":
            out.write(json.dumps(dict(head, **{"$attachments": "many"})).encode() + b"\\n")
        elif mode == "huge":  # an attachment no client can hold
            out.write(json.dumps(dict(head, **{"$attachments": [2 ** 62]})).encode() + b"\\n" + bytes(8))
        elif mode == "deep":  # JSON nested deeper than the client's parser recurses
            out.write(b'{"jsonrpc":"2.0","id":%d,"result":' % msg["id"] + b"[" * 100000 + b"]" * 100000 + b"}\\n")
        elif mode == "stall":  # declares 8 bytes and never sends them
            out.write(json.dumps(dict(head, **{"$attachments": [8]})).encode() + b"\\n")
            out.flush()
            time.sleep(30)
        out.flush()
""")


class Misframed(unittest.TestCase):
    def fake(self, mode, timeout=10):
        return Client(command=[sys.executable, "-c", FAKE, mode], timeout=timeout)

    def test_a_well_framed_answer_is_read_into_arrays(self):
        with self.fake("ok") as c:
            r = c.call("anything")
            self.assertIsInstance(r["dropped"], array.array)
            self.assertEqual(r["dropped"].tobytes() if sys.byteorder == "little" else bytes(range(8)), bytes(range(8)))
            self.assertEqual(len(c.call("again")["dropped"]), 2)

    def test_misframed_answers_fail_the_call_instead_of_hanging(self):
        for mode in ("short", "garbage", "malformed"):
            with self.subTest(mode=mode), self.fake(mode) as c:
                with self.assertRaises(SidecarExited):
                    c.call("anything")
                with self.assertRaises(SidecarExited):
                    c.call("later")

    def test_an_answer_the_client_cannot_hold_or_parse_fails_the_calls_instead_of_hanging(self):
        # The reader thread once died on MemoryError / RecursionError, and every call then waited
        # for its timeout (300 s by default).
        for mode in ("huge", "deep"):
            with self.subTest(mode=mode), self.fake(mode, timeout=60) as c:
                with self.assertRaises(SidecarExited) as e:
                    c.call("anything")
                self.assertIn("could not be read", str(e.exception))
                with self.assertRaises(SidecarExited):
                    c.call("later")

    def test_attachments_that_never_come_time_out(self):
        with self.fake("stall", timeout=1) as c:
            with self.assertRaises(SidecarTimeout):
                c.call("anything")


if __name__ == "__main__":
    unittest.main()


# A stand-in for an older sidecar: `version` answers without the capabilities of ``CAPS`` (JSON,
# or "none" for no list at all); every other request fails as that sidecar would (-32602).
OLD_SIDECAR = textwrap.dedent("""
    import json, sys
    caps = None if sys.argv[1] == "none" else json.loads(sys.argv[1])
    seen = open(sys.argv[2], "a")
    for line in sys.stdin:
        line = line.strip()
        if not line.startswith("{"):
            continue
        msg = json.loads(line)
        seen.write(msg["method"] + "\\n"); seen.flush()
        if msg["method"] == "version":
            result = {"version": "0.0.9", "protocol": "omnibal-rpc/1"}
            if caps is not None:
                result["capabilities"] = caps
            out = {"jsonrpc": "2.0", "id": msg["id"], "result": result}
        else:
            out = {"jsonrpc": "2.0", "id": msg["id"], "error": {"code": -32602, "message": "invalid params: vision must be array"}}
        sys.stdout.write(json.dumps(out) + "\\n"); sys.stdout.flush()
""")


class Capabilities(unittest.TestCase):
    def old(self, caps):
        log = tempfile.NamedTemporaryFile("r", suffix=".log", delete=False)
        self.addCleanup(os.unlink, log.name)
        return Client(command=[sys.executable, "-c", OLD_SIDECAR, caps, log.name], timeout=10), log

    def test_the_sidecar_answers_its_protocol_and_capabilities(self):
        with Client() as c:
            v = c.call("version")
            self.assertEqual(v["protocol"], "omnibal-rpc/1")
            for needed in ("binary-attachments", "carry"):
                self.assertIn(needed, v["capabilities"])
            c.require(["binary-attachments", "carry"])

    def test_an_older_sidecar_is_a_clear_error_naming_both_versions_not_a_confusing_32602(self):
        v, t = _lengths(50)
        for caps, method, params, missing in (
            ("none", "pack", _params(u32_values(v), u32_values(t)), "binary-attachments"),
            ('["binary-attachments"]', "balance", dict(_params(list(v), list(t)), tail="carry", carry=[1, 2]), "carry"),
            ("none", "planForRank", {"planId": "plan-x", "rank": 0, "encoding": "binary"}, "binary-attachments"),
        ):
            with self.subTest(caps=caps, method=method):
                c, log = self.old(caps)
                with c:
                    with self.assertRaises(omnibal.IncompatibleSidecar) as e:
                        c.call(method, params)
                    message = str(e.exception)
                    self.assertIn("omnibal 0.0.9", message)
                    self.assertIn("omnibal %s" % omnibal.__version__, message)
                    self.assertIn(missing, message)
                    self.assertEqual(e.exception.code, "ERR_OMNIBAL_INCOMPATIBLE_SIDECAR")
                    # Asked once; the request itself was never sent; plain calls still work.
                    with self.assertRaises(omnibal.IncompatibleSidecar):
                        c.call(method, params)
                    self.assertEqual(c.call("version")["version"], "0.0.9")
                self.assertEqual(log.read().split(), ["version", "version"])
