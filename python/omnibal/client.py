"""The sidecar client: starts ``omnibal serve``, sends JSON-RPC requests, relays progress, and
stops the sidecar when the client closes or this process exits (no orphan: the sidecar also
exits when its stdin closes)."""

import atexit
import base64
import itertools
import json
import os
import shutil
import struct
import subprocess
import threading

from .errors import SidecarExited, SidecarNotFound, from_rpc

_HERE = os.path.dirname(os.path.abspath(__file__))


def find_command():
    """The command that starts the sidecar: ``$OMNIBAL_CLI`` (a path to the CLI's ``main.js``
    or an ``omnibal`` executable), the CLI of the repository this package sits in, or
    ``omnibal`` on ``PATH``."""
    node = os.environ.get("OMNIBAL_NODE") or shutil.which("node")
    explicit = os.environ.get("OMNIBAL_CLI")
    if explicit:
        if explicit.endswith(".js"):
            if not node:
                raise SidecarNotFound("OMNIBAL_CLI points at a .js file but node is not on PATH; install Node.js 20+")
            return [node, explicit, "serve"]
        return [explicit, "serve"]
    repo_cli = os.path.normpath(os.path.join(_HERE, "..", "..", "dist", "src", "cli", "main.js"))
    if node and os.path.exists(repo_cli):
        return [node, repo_cli, "serve"]
    on_path = shutil.which("omnibal")
    if on_path:
        return [on_path, "serve"]
    raise SidecarNotFound(
        "cannot find the omnibal sidecar: install Node.js 20+ and the npm package "
        "(npm install -g omnibal), or set OMNIBAL_CLI to the path of omnibal's dist/src/cli/main.js"
    )


def u32_array(values):
    """Encodes non-negative integers for the wire as little-endian uint32 in base64."""
    values = list(values)
    return {"$base64": base64.b64encode(struct.pack("<%dI" % len(values), *values)).decode("ascii"), "dtype": "u32"}


class _Pending:
    __slots__ = ("event", "response", "progress")

    def __init__(self, progress):
        self.event = threading.Event()
        self.response = None
        self.progress = progress


class Client:
    """A connection to one ``omnibal serve`` process.

    ``Client()`` starts the sidecar; ``call(method, params)`` returns the result or raises a
    typed :class:`OmnibalError`. Thread-safe: concurrent calls are answered by id. Use it as a
    context manager, or call :meth:`close`.
    """

    def __init__(self, command=None, env=None, extra_args=()):
        cmd = list(command) if command else find_command()
        cmd += list(extra_args)
        try:
            self._proc = subprocess.Popen(
                cmd,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                env=env,
                bufsize=0,
            )
        except OSError as e:
            raise SidecarNotFound("cannot start the omnibal sidecar (%s): %s" % (" ".join(cmd), e))
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self._pending = {}
        self._closed = False
        self.stderr_lines = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self._err_reader = threading.Thread(target=self._read_stderr, daemon=True)
        self._err_reader.start()
        atexit.register(self.close)

    @property
    def pid(self):
        """The sidecar's process id."""
        return self._proc.pid

    def _read(self):
        for raw in self._proc.stdout:
            try:
                msg = json.loads(raw)
            except ValueError:
                continue
            if msg.get("method") == "progress":
                p = msg.get("params", {})
                with self._lock:
                    pending = self._pending.get(p.get("id"))
                if pending and pending.progress:
                    pending.progress(p.get("done"), p.get("total"))
                continue
            with self._lock:
                pending = self._pending.pop(msg.get("id"), None)
            if pending:
                pending.response = msg
                pending.event.set()
        with self._lock:
            waiting = list(self._pending.values())
            self._pending.clear()
        for pending in waiting:
            pending.response = {"error": {"code": -32603, "message": "the sidecar exited"}, "_exited": True}
            pending.event.set()

    def _read_stderr(self):
        for raw in self._proc.stderr:
            self.stderr_lines.append(raw.decode("utf8", "replace").rstrip())

    def send_raw(self, line):
        """Writes one raw line to the sidecar (for protocol tests)."""
        self._proc.stdin.write(line if isinstance(line, bytes) else line.encode("utf8"))
        self._proc.stdin.flush()

    def request(self, method, params=None, progress=None):
        """Sends a request and returns its id and a handle to wait on (see :meth:`wait`)."""
        if self._closed:
            raise SidecarExited("the client is closed")
        rid = next(self._ids)
        pending = _Pending(progress)
        with self._lock:
            self._pending[rid] = pending
        msg = {"jsonrpc": "2.0", "id": rid, "method": method}
        if params is not None:
            msg["params"] = params
        try:
            self.send_raw(json.dumps(msg, separators=(",", ":")) + "\n")
        except (BrokenPipeError, OSError):
            with self._lock:
                self._pending.pop(rid, None)
            raise SidecarExited("the sidecar is not running (exit code %s)" % self._proc.poll())
        return rid, pending

    def wait(self, pending, timeout=None):
        """Waits for a request's answer; returns the result or raises its error."""
        if not pending.event.wait(timeout):
            raise TimeoutError("no answer from the sidecar within %s s" % timeout)
        msg = pending.response
        if msg.get("_exited"):
            raise SidecarExited("the sidecar exited with requests pending")
        if "error" in msg:
            raise from_rpc(msg["error"])
        return msg.get("result")

    def call(self, method, params=None, progress=None, timeout=None):
        """Calls a method and returns its result; ``progress(done, total)`` receives progress."""
        _, pending = self.request(method, params, progress)
        return self.wait(pending, timeout)

    def cancel(self, rid):
        """Cancels a pending request: it is answered at once with :class:`Cancelled`."""
        return self.call("$/cancelRequest", {"id": rid})

    def close(self, timeout=5):
        """Asks the sidecar to shut down, then makes sure it has exited."""
        if self._closed:
            return
        self._closed = True
        try:
            self._proc.stdin.close()
        except OSError:
            pass
        try:
            self._proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()
        self._reader.join(timeout)
        self._err_reader.join(timeout)
        for pipe in (self._proc.stdout, self._proc.stderr):
            try:
                pipe.close()
            except OSError:
                pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        try:
            self.close(timeout=1)
        except Exception:
            pass
