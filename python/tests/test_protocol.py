"""The sidecar protocol: valid calls, every error class, limits, concurrency, cancellation,
socket transport, and no orphans."""
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import unittest
from unittest import mock

from helpers import CLI, ROOT, alive, from_threads, rpc, serve, stop  # noqa: E402  (sets sys.path)

import omnibal
from omnibal import Client, client as client_module, u32_array


class Protocol(unittest.TestCase):
    def setUp(self):
        self.proc = serve()

    def tearDown(self):
        stop(self.proc)

    def test_valid_calls(self):
        self.assertEqual(rpc(self.proc, '{"jsonrpc":"2.0","id":1,"method":"version"}')["result"]["protocol"], "omnibal-rpc/1")
        self.assertIn(rpc(self.proc, '{"jsonrpc":"2.0","id":"b","method":"backend"}')["result"]["kind"], ("native", "js"))
        params = {"vision": [1, 2, 3, 4] * 10, "text": [100, 300, 500, 700] * 10, "dp": 2, "samplesPerPack": 3}
        plan = rpc(self.proc, json.dumps({"jsonrpc": "2.0", "id": 2, "method": "balance", "params": params}))["result"]
        step = rpc(self.proc, json.dumps({"jsonrpc": "2.0", "id": 3, "method": "planStep", "params": {"planId": plan["planId"], "step": 0}}))["result"]
        self.assertEqual(len(step), 2)
        m = rpc(self.proc, json.dumps({"jsonrpc": "2.0", "id": 4, "method": "metrics", "params": {"planId": plan["planId"]}}))["result"]
        self.assertEqual(m["steps"], plan["steps"])

    def test_error_classes(self):
        self.assertEqual(rpc(self.proc, "{not json")["error"]["code"], -32700)
        self.assertEqual(rpc(self.proc, '{"id":1,"method":"version"}')["error"]["code"], -32600)
        self.assertEqual(rpc(self.proc, '{"jsonrpc":"2.0","id":1,"method":7}')["error"]["code"], -32600)
        batch = rpc(self.proc, '[1,2]')  # a batch of two invalid requests: one error each
        self.assertEqual([r["error"]["code"] for r in batch], [-32600, -32600])
        self.assertEqual(rpc(self.proc, '{"jsonrpc":"2.0","id":1,"method":"fly"}')["error"]["code"], -32601)
        bad = rpc(self.proc, '{"jsonrpc":"2.0","id":1,"method":"balance","params":{"vision":[1],"text":[5],"dp":0,"samplesPerPack":2}}')["error"]
        self.assertEqual(bad["code"], -32602)
        self.assertEqual(bad["data"]["code"], "ERR_OMNIBAL_OUT_OF_RANGE")
        neg = rpc(self.proc, '{"jsonrpc":"2.0","id":2,"method":"balance","params":{"vision":[-1],"text":[5],"dp":1,"samplesPerPack":2}}')["error"]
        self.assertEqual(neg["code"], -32602)
        missing = rpc(self.proc, '{"jsonrpc":"2.0","id":3,"method":"balance","params":{"path":"/nonexistent.json","dp":1,"samplesPerPack":2}}')["error"]
        self.assertEqual(missing["data"]["code"], "ERR_OMNIBAL_PARSE")
        # Still serving after all of that.
        self.assertIn("result", rpc(self.proc, '{"jsonrpc":"2.0","id":9,"method":"version"}'))


class ModelMethods(unittest.TestCase):
    def test_partition_simulate_plan_and_search(self):
        problem = {"model": "internvl-chat-1.5", "gpu": "A100-80G", "pp": 4, "dp": 8, "microBatches": 16, "load": {"tiles": 18, "tokens": 5000}}
        with Client() as c:
            part = c.call("partition", problem)
            self.assertTrue(part["prediction"])
            self.assertEqual(len(part["stages"]), 4)
            sim = c.call("simulate", {"dp": 1, "pp": 2, "microBatches": 4, "forwardMs": [1] * 8, "backwardMs": [2] * 8, "transferMs": [0], "gradBytes": [0, 0], "allreduceBytesPerS": 0, "activationBytes": [1, 1], "schedule": "1f1b"})
            self.assertEqual(sim["stepMs"], (4 + 2 - 1) * 3)
            ask = c.call("search.ask", {"problem": problem, "budget": 2})
            self.assertEqual(ask["candidate"]["lastLayers"], [s["lastLayer"] for s in part["stages"]])
            told = c.call("search.tell", {"searchId": ask["searchId"], "lastLayers": ask["candidate"]["lastLayers"], "seconds": 12.5})
            self.assertEqual(told["best"], ask["candidate"]["lastLayers"])
            c.call("search.ask", {"searchId": ask["searchId"]})
            self.assertIsNone(c.call("search.ask", {"searchId": ask["searchId"]})["candidate"], "budget of 2 spent")
            with self.assertRaises(omnibal.InvalidParams):
                c.call("search.tell", {"searchId": ask["searchId"], "lastLayers": [1, 2, 3, 4], "seconds": 1})
            plan = c.call("plan", {"simulatedSteps": 1, "cluster": {"gpus": 8, "tp": 1, "pp": 8, "dp": 1}, "accum": 8})
            self.assertEqual(plan["schema"], "omnibal.training-plan/1")
            self.assertEqual(len(plan["ablation"]), 4)
            with self.assertRaises(omnibal.OmnibalError) as e:
                c.call("plan", {"cluster": {"gpus": 8, "tp": 3, "pp": 4, "dp": 2}})
            self.assertEqual(e.exception.code, "ERR_OMNIBAL_INVALID_OPTIONS")


class OffTheLoop(unittest.TestCase):
    def test_a_running_plan_does_not_hold_up_other_requests(self):
        with Client() as c:
            _, plan = c.request("plan", {"simulatedSteps": 4})
            self.assertEqual(c.call("version")["protocol"], "omnibal-rpc/1")
            self.assertFalse(plan.event.is_set(), "version waited for the plan")
            self.assertEqual(c.wait(plan, timeout=120)["schema"], "omnibal.training-plan/1")


class Limits(unittest.TestCase):
    def test_oversized_lines_and_sample_counts(self):
        proc = serve("--max-line-bytes", "2000", "--max-samples", "10")
        try:
            big = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "version", "params": {"pad": "x" * 5000}})
            r = rpc(proc, big)
            self.assertEqual(r["error"]["code"], -32001)
            self.assertEqual(rpc(proc, '{"jsonrpc":"2.0","id":2,"method":"version"}')["result"]["version"], omnibal.__version__)
            many = rpc(proc, json.dumps({"jsonrpc": "2.0", "id": 3, "method": "balance", "params": {"vision": [1] * 11, "text": [5] * 11, "dp": 1, "samplesPerPack": 2}}))
            self.assertEqual(many["error"]["code"], -32001)
        finally:
            stop(proc)


class ClientBehaviour(unittest.TestCase):
    def test_concurrent_requests_are_answered_by_id(self):
        with Client() as c:
            results = {}

            def work(k):
                n = 50 + k
                r = c.call("balance", {"vision": [1 + i % 4 for i in range(n * 8)], "text": [100 + (i * 7) % 900 for i in range(n * 8)], "dp": 2, "samplesPerPack": 3, "seed": k})
                results[k] = r

            threads = [threading.Thread(target=work, args=(k,)) for k in range(30)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            self.assertEqual(len(results), 30)
            self.assertEqual(len({r["planId"] for r in results.values()}), 30)

    def test_cancellation(self):
        with Client() as c:
            n = 1500000
            rid, pending = c.request("pack", {"vision": u32_array(1 + i % 5 for i in range(n)), "text": u32_array(300 + (i * 37) % 1500 for i in range(n)), "dp": 8, "samplesPerPack": 4.5, "strategy": "isf"})
            time.sleep(0.05)
            c.cancel(rid)
            with self.assertRaises(omnibal.Cancelled):
                c.wait(pending, timeout=30)
            self.assertEqual(c.call("version")["protocol"], "omnibal-rpc/1")

    def test_typed_errors_and_progress(self):
        with Client() as c:
            with self.assertRaises(omnibal.InvalidParams) as e:
                c.call("balance", {"vision": [1], "text": [0], "dp": 1, "samplesPerPack": 2})
            self.assertEqual(e.exception.code, "ERR_OMNIBAL_INVALID_SAMPLE")
            self.assertEqual(e.exception.rpc_code, -32602)
            seen = []
            n = 400000
            c.call("balance", {"vision": u32_array(1 + i % 5 for i in range(n)), "text": u32_array(300 + (i * 37) % 1500 for i in range(n)), "dp": 8, "samplesPerPack": 4.5}, progress=lambda d, t: seen.append((d, t)))
            self.assertTrue(seen)
            self.assertEqual(seen[-1][0], seen[-1][1])

    def test_a_missing_sidecar_says_how_to_install(self):
        with self.assertRaises(omnibal.SidecarNotFound) as e:
            Client(command=["/nonexistent/omnibal"])
        self.assertIn("omnibal", str(e.exception))

    def test_bad_sampler_arguments(self):
        with self.assertRaises(omnibal.InvalidParams):
            omnibal.BalancedBatchSampler(lengths=[(1, 10)], rank=4, world_size=4)
        with self.assertRaises(omnibal.InvalidParams):
            omnibal.BalancedBatchSampler(rank=0, world_size=1)
        s = omnibal.BalancedBatchSampler(path="/nonexistent/lengths.json", rank=0, world_size=1)
        with self.assertRaises(omnibal.OmnibalError) as e:
            len(s)
        self.assertEqual(e.exception.code, "ERR_OMNIBAL_PARSE")
        s.close()


class NoOrphans(unittest.TestCase):
    def test_a_killed_client_leaves_no_sidecar_behind(self):
        script = (
            "import sys, time; sys.path.insert(0, %r)\n"
            "from omnibal import Client, u32_array\n"
            "c = Client(); print(c.pid, flush=True)\n"
            "n = 2000000\n"
            "c.request('pack', {'vision': u32_array(1 + i %% 5 for i in range(n)), 'text': u32_array(300 + i %% 1500 for i in range(n)), 'dp': 8, 'samplesPerPack': 4.5, 'strategy': 'isf'})\n"
            "time.sleep(60)\n" % os.path.join(ROOT, "python")
        )
        child = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE)
        pid = int(child.stdout.readline())
        child.stdout.close()
        time.sleep(1.0)
        child.send_signal(signal.SIGKILL)
        child.wait()
        deadline = time.time() + 30
        while alive(pid) and time.time() < deadline:
            time.sleep(0.2)
        self.assertFalse(alive(pid), "the sidecar outlived its client")


class Socket(unittest.TestCase):
    def test_loopback_tcp_needs_the_token_and_other_addresses_are_refused(self):
        with tempfile.TemporaryDirectory() as tmp:
            token_file = os.path.join(tmp, "token.json")
            proc = subprocess.Popen(["node", CLI, "serve", "--listen", "127.0.0.1:0", "--token-file", token_file], stderr=subprocess.PIPE, stdout=subprocess.DEVNULL)
            try:
                proc.stderr.readline()  # listening: the token file is written
                self.assertEqual(oct(os.stat(token_file).st_mode & 0o777), oct(0o600))
                with open(token_file) as fh:
                    info = json.load(fh)
                host, _, port = info["listen"].rpartition(":")
                with self.assertRaises(omnibal.Unauthorized):
                    with Client(tcp=(host, int(port)), token="0" * 64, timeout=30) as c:
                        pass
                with Client.from_token_file(token_file, timeout=30) as c:
                    self.assertEqual(c.call("version")["protocol"], "omnibal-rpc/1")
                    self.assertTrue(c.shutdown()["ok"])
                self.assertEqual(proc.wait(10), 0)
            finally:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
                proc.stderr.close()
        refused = subprocess.run(["node", CLI, "serve", "--listen", "10.1.2.3:9999"], capture_output=True, timeout=30)
        self.assertEqual(refused.returncode, 2)
        self.assertIn(b"loopback", refused.stderr)

    def test_a_request_in_flight_at_sigterm_raises_shutting_down(self):
        with tempfile.TemporaryDirectory() as tmp:
            sock = os.path.join(tmp, "s.sock")
            proc = subprocess.Popen(["node", CLI, "serve", "--listen", sock], stderr=subprocess.PIPE, stdout=subprocess.DEVNULL)
            try:
                proc.stderr.readline()  # listening
                seen = []
                with Client(socket_path=sock, timeout=60) as c:
                    # plan's default 1.2M synthetic samples take ~2 s: SIGTERM once it reports progress.
                    def progress(done, total):
                        if not seen:
                            seen.append(done)
                            proc.send_signal(signal.SIGTERM)
                    with self.assertRaises(omnibal.ShuttingDown) as caught:
                        c.call("plan", {"simulatedSteps": 1}, progress=progress)
                self.assertEqual(caught.exception.rpc_code, -32004)
                self.assertEqual(caught.exception.code, "ERR_OMNIBAL_SHUTTING_DOWN")
                self.assertEqual(proc.wait(30), 0)
                self.assertFalse(os.path.exists(sock))
            finally:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
                proc.stderr.close()

    def test_a_connection_over_max_connections_raises_too_many_connections(self):
        with tempfile.TemporaryDirectory() as tmp:
            sock = os.path.join(tmp, "s.sock")
            token_file = os.path.join(tmp, "token.json")
            procs = [subprocess.Popen(["node", CLI, "serve", "--listen", sock, "--max-connections", "1"], stderr=subprocess.PIPE, stdout=subprocess.DEVNULL),
                     subprocess.Popen(["node", CLI, "serve", "--listen", "127.0.0.1:0", "--token-file", token_file, "--max-connections", "1"],
                                      stderr=subprocess.PIPE, stdout=subprocess.DEVNULL)]
            try:
                for proc in procs:
                    proc.stderr.readline()  # listening
                # Unix socket: the refusal comes before any request; the first call raises it.
                with Client(socket_path=sock, timeout=30) as first:
                    self.assertEqual(first.call("version")["protocol"], "omnibal-rpc/1")
                    with Client(socket_path=sock, timeout=30) as second:
                        with self.assertRaises(omnibal.TooManyConnections) as caught:
                            second.call("version")
                    self.assertEqual(caught.exception.rpc_code, -32005)
                    self.assertEqual(caught.exception.code, "ERR_OMNIBAL_TOO_MANY_CONNECTIONS")
                    self.assertIn("--max-connections", str(caught.exception))
                    # Several threads calling at once on a refused connection: each call raises the
                    # refusal (not ProtocolError for the calls pending when it came, nor
                    # SidecarExited for those after).
                    with Client(socket_path=sock, timeout=30) as crowd:
                        _, errors = from_threads(8, lambda k: crowd.call("version"), join_s=30)
                    self.assertEqual([type(e).__name__ for e in errors], ["TooManyConnections"] * 8, errors)
                    self.assertEqual(first.call("version")["protocol"], "omnibal-rpc/1", "the connection held serves on")
                # TCP: the client's auth (in its constructor) raises it.
                with Client.from_token_file(token_file, timeout=30) as first:
                    with self.assertRaises(omnibal.TooManyConnections):
                        Client.from_token_file(token_file, timeout=30)
                    self.assertEqual(first.call("version")["protocol"], "omnibal-rpc/1")
                # The slot is freed once the server sees the close.
                deadline = time.monotonic() + 10
                while True:
                    try:
                        with Client.from_token_file(token_file, timeout=30) as again:
                            self.assertEqual(again.call("version")["protocol"], "omnibal-rpc/1")
                        break
                    except omnibal.TooManyConnections:
                        if time.monotonic() > deadline:
                            raise
                        time.sleep(0.05)
            finally:
                for proc in procs:
                    proc.send_signal(signal.SIGTERM)
                    self.assertEqual(proc.wait(30), 0)
                    proc.stderr.close()


_REFUSAL = (b'{"jsonrpc":"2.0","id":null,"error":{"code":-32005,"message":"too many connections (--max-connections 1)",'
            b'"data":{"code":"ERR_OMNIBAL_TOO_MANY_CONNECTIONS"}}}\n')


class _Refuser(threading.Thread):
    """A Unix-socket server that refuses its one connection as a full sidecar does: once it has
    read ``lines`` request lines (0: at once), it sends the -32005 line (id null) and closes."""

    def __init__(self, path, lines=0):
        super().__init__(daemon=True)
        self.lines = lines
        self.closed = threading.Event()
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(path)
        self.listener.listen(1)

    def run(self):
        try:
            conn, _ = self.listener.accept()
            with conn:
                seen = b""
                while seen.count(b"\n") < self.lines:
                    chunk = conn.recv(65536)
                    if not chunk:
                        break
                    seen += chunk
                conn.sendall(_REFUSAL)
        finally:
            self.listener.close()
            self.closed.set()


class RefusedConnection(unittest.TestCase):
    """A connection the sidecar refused (-32005, id null) fails every call with
    TooManyConnections: those pending when the refusal came, those sent after, and a send that
    finds the connection gone before the reader has read the refusal."""

    def assert_refused(self, error):
        self.assertIsInstance(error, omnibal.TooManyConnections, repr(error))
        self.assertEqual(error.rpc_code, -32005)
        self.assertEqual(error.code, "ERR_OMNIBAL_TOO_MANY_CONNECTIONS")

    def test_pipelined_requests_and_later_calls_all_raise_the_refusal(self):
        with tempfile.TemporaryDirectory() as tmp:
            server = _Refuser(os.path.join(tmp, "s.sock"), lines=4)
            server.start()
            with Client(socket_path=os.path.join(tmp, "s.sock"), timeout=10) as c:
                handles = [c.request("version")[1] for _ in range(4)]
                for pending in handles:
                    with self.assertRaises(omnibal.OmnibalError) as caught:
                        c.wait(pending, timeout=10)
                    self.assert_refused(caught.exception)
                self.assertTrue(server.closed.wait(10))
                for _ in range(2):
                    with self.assertRaises(omnibal.OmnibalError) as caught:
                        c.call("version")
                    self.assert_refused(caught.exception)
            server.join(10)

    def test_a_send_that_finds_the_connection_gone_waits_for_the_refusal(self):
        # A slow reader: it reads nothing until a send has failed (the server has closed), then
        # takes 0.3 s more. Without the wait for it, those calls raised SidecarExited although
        # the refusal was there to read.
        send_failed = threading.Event()
        write, read = client_module._SocketTransport.write, client_module._SocketTransport.read

        def failing_write(transport, data, timeout=None):
            try:
                return write(transport, data, timeout)
            except OSError:
                send_failed.set()
                raise

        def late_read(transport):
            if not send_failed.is_set():
                send_failed.wait(10)
                time.sleep(0.3)
            return read(transport)

        with tempfile.TemporaryDirectory() as tmp:
            server = _Refuser(os.path.join(tmp, "s.sock"))
            server.start()
            with mock.patch.object(client_module._SocketTransport, "write", failing_write), \
                    mock.patch.object(client_module._SocketTransport, "read", late_read):
                with Client(socket_path=os.path.join(tmp, "s.sock"), timeout=10) as c:
                    self.assertTrue(server.closed.wait(10))
                    started = time.monotonic()
                    _, errors = from_threads(8, lambda k: c.call("version"), join_s=30)
                    self.assertLess(time.monotonic() - started, 5)
                    self.assertTrue(send_failed.is_set(), "no send found the connection gone")
                    self.assertEqual(len(errors), 8)
                    for error in errors:
                        self.assert_refused(error)
            server.join(10)


if __name__ == "__main__":
    unittest.main()
