"""The client under load and failure: concurrent large requests from many threads, a stopped
sidecar (timeout), errors that name no request, a progress callback that raises (the call fails
with its exception and is cancelled), clients that are never closed, and the node-shared sidecar on a Unix socket."""
import gc
import json
import multiprocessing
import os
import signal
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
import unittest
from unittest import mock

from helpers import ROOT, alive, from_threads, resume  # noqa: E402  (sets sys.path)

import omnibal
from omnibal import Client, u32_array

# A stand-in sidecar that reads request lines and answers every second one with an error
# carrying no id (what a JSON-RPC server does for a line it cannot parse), to test the client's
# handling of an ambiguous id-less error; the real sidecar names the id when it can.
IDLESS_SIDECAR = textwrap.dedent("""
    import sys
    n = 0
    for line in sys.stdin:
        n += 1
        if n % 2 == 0:
            sys.stdout.write('{"jsonrpc":"2.0","id":null,"error":{"code":-32700,"message":"parse error"}}\\n')
            sys.stdout.flush()
""")


def _balance_params(k):
    n = 1500 + 37 * k  # base64 of 2 x n u32: over 4 KiB per request
    return {"vision": u32_array(1 + (i * (k + 3)) % 6 for i in range(n)), "text": u32_array(200 + (i * 7919 + k) % 1800 for i in range(n)),
            "dp": 2, "samplesPerPack": 3, "seed": k}


class ThreadSafety(unittest.TestCase):
    def test_concurrent_large_requests_get_their_own_answers(self):
        with Client() as c:
            params = [_balance_params(k) for k in range(24)]
            self.assertTrue(all(len(json.dumps(p)) > 4096 for p in params))
            expected = []
            for p in params:
                r = c.call("balance", p)
                expected.append((r["steps"], r["microBatches"], r["dropped"]))

            def work(k):
                r = c.call("balance", params[k], timeout=60)
                return (r["steps"], r["microBatches"], r["dropped"])

            got, errors = from_threads(24, work)
            self.assertEqual(errors, [])
            self.assertEqual(got, expected)
            self.assertGreater(len({e[1] for e in expected}), 5, "the cases must differ to tell answers apart")


class Failures(unittest.TestCase):
    def test_a_stopped_sidecar_times_out_instead_of_hanging(self):
        c = Client(timeout=0.5)
        try:
            self.assertEqual(c.call("version", timeout=60)["protocol"], "omnibal-rpc/1")
            os.kill(c.pid, signal.SIGSTOP)
            start = time.monotonic()
            with self.assertRaises(omnibal.SidecarTimeout) as e:
                c.call("version")
            self.assertIsInstance(e.exception, TimeoutError)
            self.assertLess(time.monotonic() - start, 10)
            os.kill(c.pid, signal.SIGCONT)
            self.assertEqual(c.call("version", timeout=30)["protocol"], "omnibal-rpc/1")
        finally:
            resume(c.pid)
            c.close()

    def test_a_write_after_the_connection_closed_never_reaches_a_file_that_reused_its_descriptor(self):
        # The reader thread closes the sidecar's stdin when an answer is misframed, while another
        # thread may be between writes: that write must fail, not land in whatever file took the
        # descriptor's number since.
        c = Client()
        transport = c._transport
        fd = transport._in
        with tempfile.TemporaryDirectory() as d:
            try:
                transport.close(0)
                victim = os.open(os.path.join(d, "victim"), os.O_WRONLY | os.O_CREAT)
                os.dup2(victim, fd)  # the freed number now names another file
                try:
                    with self.assertRaises(BrokenPipeError):
                        transport.write(b"{}\n" * 100, timeout=5)
                    self.assertEqual(os.fstat(victim).st_size, 0)
                finally:
                    os.close(fd)
                    os.close(victim)
            finally:
                c.close()

    def test_a_request_a_stopped_sidecar_never_reads_times_out_and_so_do_the_threads_behind_it(self):
        # 8 MB of attachments never fit the stdin pipe of a stopped sidecar: the write once
        # blocked forever, whatever the timeout, and every other thread waited on the write lock.
        n = 1_000_000
        vision, text = omnibal.u32_values([1 + i % 6 for i in range(n)]), omnibal.u32_values([100 + i % 900 for i in range(n)])
        c = Client(timeout=1)
        try:
            self.assertEqual(c.call("version", timeout=60)["protocol"], "omnibal-rpc/1")
            os.kill(c.pid, signal.SIGSTOP)
            start = time.monotonic()
            errors = []

            def small():
                time.sleep(0.2)  # behind the large request's write
                try:
                    c.call("version")
                except Exception as e:  # noqa: BLE001
                    errors.append(e)

            other = threading.Thread(target=small, daemon=True)
            other.start()
            with self.assertRaises(omnibal.SidecarTimeout) as e:
                c.call("pack", {"vision": vision, "text": text, "dp": 1, "samplesPerPack": 3})
            self.assertIn("took no byte", str(e.exception))
            other.join(20)
            self.assertFalse(other.is_alive(), "a thread behind the stalled write still waits")
            self.assertEqual(len(errors), 1)
            self.assertIsInstance(errors[0], (omnibal.SidecarExited, omnibal.SidecarTimeout))
            self.assertLess(time.monotonic() - start, 20)
            with self.assertRaises(omnibal.SidecarExited):  # the connection has ended (a request was half sent)
                c.call("version")
        finally:
            resume(c.pid)
            c.close()

    def test_a_request_cut_short_while_sent_ends_the_connection(self):
        # An exception inside the write (Ctrl-C in a notebook, here a signal handler's) left half a
        # request on the wire: the sidecar took the next request for its rest, and that call
        # waited for its timeout (300 s by default), as did every later one.
        class Interrupted(Exception):
            pass

        def interrupt(*_):
            raise Interrupted()

        n = 1_000_000
        vision, text = omnibal.u32_values([1 + i % 6 for i in range(n)]), omnibal.u32_values([100 + i % 900 for i in range(n)])
        c = Client(timeout=30)
        previous = signal.signal(signal.SIGALRM, interrupt)
        try:
            self.assertEqual(c.call("version")["protocol"], "omnibal-rpc/1")
            os.kill(c.pid, signal.SIGSTOP)  # the pipe fills: the write is still going when the signal comes
            signal.setitimer(signal.ITIMER_REAL, 0.5)
            with self.assertRaises(Interrupted):
                c.call("pack", {"vision": vision, "text": text, "dp": 1, "samplesPerPack": 3})
            resume(c.pid)  # the client may have ended the connection already
            start = time.monotonic()
            with self.assertRaises(omnibal.SidecarExited) as e:
                c.call("version", timeout=5)
            self.assertIn("cut short", str(e.exception))
            self.assertLess(time.monotonic() - start, 2)
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, previous)
            resume(c.pid)
            c.close()

    def test_an_error_on_an_over_long_line_fails_its_call(self):
        with Client(extra_args=["--max-line-bytes", "2000"], timeout=30) as c:
            with self.assertRaises(omnibal.LimitExceeded):
                c.call("version", {"pad": "x" * 5000})
            self.assertEqual(c.call("version")["protocol"], "omnibal-rpc/1")

    def test_nan_or_infinity_in_params_is_refused_before_sending(self):
        with Client(timeout=30) as c:
            for bad in (float("nan"), float("inf"), -float("inf")):
                with self.assertRaises(ValueError) as e:
                    c.call("balance", {"vision": [1, 2], "text": [10, 20], "dp": 1, "samplesPerPack": bad})
                self.assertIn("not JSON", str(e.exception))
                # Typed (also a ValueError), naming the parameter, nested ones too.
                self.assertIsInstance(e.exception, omnibal.NotJson)
                self.assertEqual(e.exception.code, "ERR_OMNIBAL_INVALID_TYPE")
                self.assertIn("params.samplesPerPack", str(e.exception))
                with self.assertRaises(omnibal.InvalidParams) as e:
                    c.call("plan", {"cluster": {"gpus": 4}, "costs": [1.0, bad]})
                self.assertIn("params.costs[1]", str(e.exception))
            # Nothing was left pending: the next call is answered.
            self.assertEqual(c.call("version")["protocol"], "omnibal-rpc/1")

    def test_an_ambiguous_idless_error_fails_every_call_it_may_belong_to(self):
        with Client(command=[sys.executable, "-c", IDLESS_SIDECAR], timeout=30) as c:
            _, first = c.request("version")
            _, second = c.request("version")
            for pending in (first, second):
                with self.assertRaises(omnibal.ProtocolError) as e:
                    c.wait(pending, timeout=10)
                self.assertEqual(e.exception.rpc_code, -32700)

    def test_a_raising_progress_callback_aborts_the_call_and_cancels_it(self):
        # As Node's onProgress: the call fails with the callback's own exception, and the
        # callback is not called again. Here the request is also cancelled on the sidecar at
        # once, and the connection serves the next request.
        n = 2000000  # a balance of seconds: the first progress comes well before the answer
        params = {"vision": u32_array(1 + i % 5 for i in range(n)), "text": u32_array(300 + (i * 37) % 1500 for i in range(n)), "dp": 8, "samplesPerPack": 4.5}
        boom = RuntimeError("callback bug")
        calls = []

        def bad(done, total):
            calls.append((time.monotonic(), done, total))
            raise boom

        with Client(timeout=120) as c:
            small = _balance_params(3)

            def plan_of(answer):
                return {k: v for k, v in answer.items() if k not in ("planId", "shared")}
            expected = plan_of(c.call("balance", small))
            cancels = []
            request = c.request

            def spy(method, params=None, progress=None, timeout=None):
                rid, pending = request(method, params, progress, timeout)
                if method == "$/cancelRequest":
                    cancels.append((params["id"], pending))
                return rid, pending
            with mock.patch.object(c, "request", spy):
                started = time.monotonic()
                with self.assertRaises(RuntimeError) as e:
                    c.call("balance", params, progress=bad)
                returned = time.monotonic()
                self.assertIs(e.exception, boom)
                self.assertEqual(len(calls), 1, "the callback is not called after it raised")
                self.assertLess(calls[0][1], calls[0][2], "it raised on a report before the end")
                # Prompt: the call does not wait for the balance to finish.
                self.assertLess(returned - calls[0][0], 2.0)
                # The sidecar was told, while the request was still running.
                self.assertEqual(len(cancels), 1)
                self.assertEqual(c.wait(cancels[0][1], timeout=30), {"cancelled": True})
            # The cancelled request's late frames are dropped: the next calls get their own answers.
            self.assertEqual(plan_of(c.call("balance", small)), expected)
            self.assertEqual(c.call("version")["protocol"], "omnibal-rpc/1")
            self.assertEqual(len(calls), 1)
            self.assertLess(returned - started, 60)

    def test_a_callback_raising_on_the_last_report_still_fails_the_call(self):
        n = 400000
        params = {"vision": u32_array(1 + i % 5 for i in range(n)), "text": u32_array(300 + (i * 37) % 1500 for i in range(n)), "dp": 8, "samplesPerPack": 4.5}

        class Late(Exception):
            pass

        def at_the_end(done, total):
            if done == total:
                raise Late("listener failed at the end")
        with Client(timeout=120) as c:
            with self.assertRaises(Late):
                c.call("balance", params, progress=at_the_end)
            self.assertGreater(c.call("balance", params)["steps"], 0)

    def test_a_dead_sidecar_fails_pending_and_later_calls(self):
        c = Client(timeout=30)
        try:
            _, pending = c.request("plan", {"simulatedSteps": 4})
            os.kill(c.pid, signal.SIGKILL)
            with self.assertRaises(omnibal.SidecarExited) as e:
                c.wait(pending, timeout=30)
            # The first error already knows how it ended (not "exit code None").
            self.assertIn("killed by signal 9", str(e.exception))
            with self.assertRaises(omnibal.SidecarExited) as e:
                c.call("version")
            self.assertIn("killed by signal 9", str(e.exception))
        finally:
            c.close()

    def test_a_sidecar_that_cannot_start_says_why(self):
        with mock.patch.dict(os.environ, {"OMNIBAL_CLI": "/nonexistent/main.js"}):
            with self.assertRaises(omnibal.SidecarNotFound) as e:
                Client()
            self.assertIn("/nonexistent/main.js", str(e.exception))
        # A command that starts but dies at once: the error carries its stderr's error line.
        with Client(command=[sys.executable, "-c", "import sys; sys.stderr.write('Error: no such model file\\n'); sys.exit(3)"], timeout=30) as c:
            with self.assertRaises(omnibal.SidecarExited) as e:
                c.call("version")
            self.assertIn("exit code 3", str(e.exception))
            self.assertIn("Error: no such model file", str(e.exception))

    def test_a_token_file_that_is_missing_or_malformed_is_named(self):
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "token.json")
            for content in (None, "{not json", "[]", json.dumps({"listen": "127.0.0.1:x", "token": "t"}), json.dumps({"token": "t"})):
                if content is not None:
                    with open(path, "w") as fh:
                        fh.write(content)
                with self.assertRaises(omnibal.SidecarNotFound) as e:
                    Client.from_token_file(path, timeout=5)
                self.assertIn(path, str(e.exception))
                self.assertEqual(len(str(e.exception).splitlines()), 1)


class Lifetime(unittest.TestCase):
    def test_an_unreferenced_client_stops_its_sidecar(self):
        c = Client()
        pid = c.pid
        c.call("version")
        del c
        gc.collect()
        deadline = time.time() + 15
        while alive(pid) and time.time() < deadline:
            time.sleep(0.05)
        self.assertFalse(alive(pid), "the sidecar outlived its collected client")

    def test_a_sampler_never_closed_stops_its_sidecar_at_exit(self):
        script = ("import sys; sys.path.insert(0, %r)\n"
                  "import omnibal\n"
                  "s = omnibal.BalancedBatchSampler([(1, 100 + i) for i in range(64)], world_size=2, rank=0, samples_per_pack=2)\n"
                  "len(s); print(s._client.pid, flush=True)\n" % os.path.join(ROOT, "python"))
        out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
        self.assertEqual(out.returncode, 0, out.stderr)
        pid = int(out.stdout.strip())
        deadline = time.time() + 15
        while alive(pid) and time.time() < deadline:
            time.sleep(0.05)
        self.assertFalse(alive(pid), "the sidecar outlived its process")

    def test_close_is_quick_when_a_forked_child_holds_the_pipe(self):
        c = Client()
        c.call("version")
        child = os.fork()
        if child == 0:  # a DataLoader worker that lives on (persistent_workers=True)
            time.sleep(20)
            os._exit(0)
        try:
            proc = c._proc
            c.close()
            # The sidecar saw its stdin end (the child closed its copy at fork) and exited by
            # itself, instead of being terminated after the grace period.
            self.assertEqual(proc.returncode, 0)
        finally:
            os.kill(child, signal.SIGKILL)
            os.waitpid(child, 0)


def _shared_rank(path, barrier, out, rank):
    sys.path.insert(0, os.path.join(ROOT, "python"))
    import omnibal as ob

    c = ob.Client.node_shared(path)
    try:
        pairs = [(1 + i % 5, 200 + (i * 31) % 1700) for i in range(3000)]
        s = ob.BalancedBatchSampler(pairs, rank=rank, world_size=4, accum=2, seed=5, client=c)
        out.put((rank, c.owns_sidecar, c.pid, [tuple(mb) for mb in s]))
        s.close()
        barrier.wait(60)  # the owner's server serves every rank until all are done
    finally:
        c.close()


class NodeShared(unittest.TestCase):
    def test_four_local_ranks_share_one_sidecar(self):
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "node.sock")
            ctx = multiprocessing.get_context("spawn")
            barrier, out = ctx.Barrier(4), ctx.Queue()
            procs = [ctx.Process(target=_shared_rank, args=(path, barrier, out, r)) for r in range(4)]
            for p in procs:
                p.start()
            got = sorted(out.get(timeout=120) for _ in procs)
            for p in procs:
                p.join(60)
                self.assertEqual(p.exitcode, 0)
            owners = [g for g in got if g[1]]
            self.assertEqual(len(owners), 1, "exactly one rank starts the node's sidecar")
            seen = [i for g in got for mb in g[3] for i in mb]
            self.assertEqual(len(seen), len(set(seen)), "a sample on two ranks")
            self.assertEqual(len({len(g[3]) for g in got}), 1, "ranks got different numbers of micro-batches")
            self.assertEqual(oct(os.stat(path + ".lock").st_mode & 0o777), oct(0o600))
            deadline = time.time() + 15
            while alive(owners[0][2]) and time.time() < deadline:
                time.sleep(0.05)
            self.assertFalse(alive(owners[0][2]), "the node sidecar outlived its owner")

    def test_a_stale_socket_is_replaced_and_a_live_one_shared(self):
        import socket

        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "node.sock")
            dead = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            dead.bind(path)  # a crashed server's socket file: nobody listens on it
            dead.close()
            with Client.node_shared(path, timeout=60) as owner:
                self.assertTrue(owner.owns_sidecar)
                self.assertEqual(oct(os.stat(path).st_mode & 0o777), oct(0o600))
                with Client.node_shared(path, timeout=60) as other:
                    self.assertFalse(other.owns_sidecar)
                    self.assertEqual(other.call("version")["protocol"], "omnibal-rpc/1")


if __name__ == "__main__":
    unittest.main()


class RequestLineTest(unittest.TestCase):
    """The request line splices long binary arrays in as bytes: it must be exactly what
    json.dumps writes, and anything that is not plain base64 must still go through the encoder."""

    def expected(self, msg):
        return (json.dumps(msg, separators=(",", ":"), allow_nan=False) + "\n").encode("utf8")

    def test_same_bytes_as_json_dumps(self):
        from omnibal.client import request_line
        big = u32_array(list(range(70_000)))
        small = u32_array([1, 2, 3])
        hostile = ['"' + big["$base64"][1:], big["$base64"][:-1] + "\\", big["$base64"] + "é",
                   big["$base64"][:-1] + "\n", "A" * 70_000 + '","x":1,"y":"']
        msgs = [
            {"jsonrpc": "2.0", "id": 1, "method": "pack", "params": {"vision": big, "text": big, "dp": 8, "note": "é\"\\"}},
            {"jsonrpc": "2.0", "id": 2, "method": "pack", "params": {"vision": small, "text": big}},
            {"jsonrpc": "2.0", "id": 3, "method": "version"},
            {"jsonrpc": "2.0", "id": 4, "method": "pack", "params": [big]},
        ] + [{"jsonrpc": "2.0", "id": 10 + i, "method": "pack", "params": {"vision": {"$base64": h, "dtype": "u32"}, "text": big}}
             for i, h in enumerate(hostile)]
        for msg in msgs:
            self.assertEqual(request_line(msg), self.expected(msg))
            json.loads(request_line(msg))  # one valid JSON line
        # The caller's objects are left as they were.
        self.assertEqual(msgs[0]["params"]["vision"], big)
        # u32_array's own bytes are used only while its text is the one they were made with.
        edited = u32_array(list(range(70_000)))
        edited["$base64"] = '"' + edited["$base64"][1:]
        msg = {"jsonrpc": "2.0", "id": 5, "method": "pack", "params": {"vision": edited}}
        self.assertEqual(request_line(msg), self.expected(msg))
        self.assertEqual(json.loads(request_line(msg))["params"]["vision"]["$base64"], edited["$base64"])
        # It is a plain dict to every reader: equal to one, dumped as one.
        self.assertEqual(big, {"$base64": big["$base64"], "dtype": "u32"})
        self.assertEqual(json.dumps(big), json.dumps(dict(big)))

    def test_nan_is_still_refused(self):
        from omnibal.client import request_line
        with self.assertRaises(ValueError):
            request_line({"jsonrpc": "2.0", "id": 1, "method": "pack", "params": {"vision": u32_array(list(range(70_000))), "costA": float("nan")}})


class CommandType(unittest.TestCase):
    def test_a_string_command_is_a_typed_error_naming_socket_path_not_a_spawn_of_its_characters(self):
        for command in ("/tmp/omnibal.sock", "npx omnibal serve", b"/tmp/x"):
            with self.assertRaises(omnibal.InvalidParams) as e:
                Client(command)
            self.assertEqual(e.exception.code, "ERR_OMNIBAL_INVALID_TYPE")
            self.assertIn("list of arguments", str(e.exception))
        with self.assertRaises(omnibal.InvalidParams) as e:
            Client("/tmp/omnibal.sock")
        self.assertIn("socket_path='/tmp/omnibal.sock'", str(e.exception))
