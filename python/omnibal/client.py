"""The sidecar client: starts ``omnibal serve`` on stdio (or connects to a node's shared one on a
Unix socket), sends JSON-RPC requests, relays progress, and stops a sidecar it started when it
closes, when it is garbage-collected, or when this process exits (no orphan: a stdio sidecar
also exits when its stdin closes).

Thread-safe: any number of threads may call at once; each request is written whole under a lock,
and one reader thread (reading large chunks, splitting lines in linear time) hands every answer
to the call with its id.

Big integer arrays travel as binary attachments (docs/protocol.md, "Binary attachments"): a
param that is an ``array.array`` of uint32 (see :func:`u32_values`), a uint32 ``memoryview`` or
a numpy ``uint32`` array is sent as its raw little-endian bytes after the request line (no
encoding, no copy on a little-endian host), and an answer asked for with ``"encoding":
"binary"`` has its arrays read straight into ``array.array`` objects.
"""

import array
import base64
import errno
import fcntl
import json
import logging
import math
import os
import re
import select
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import threading
import time
import weakref

from .arrays import PlanLists
from .errors import IncompatibleSidecar, InvalidParams, LimitExceeded, MethodNotFound, NotJson, ProtocolError, SidecarExited, SidecarNotFound, SidecarTimeout, from_rpc

_HERE = os.path.dirname(os.path.abspath(__file__))
_log = logging.getLogger("omnibal")

#: Seconds a call waits with neither an answer nor a progress notification before it fails with
#: :class:`SidecarTimeout` (``$OMNIBAL_TIMEOUT`` overrides; ``none`` there, or ``None`` here, waits forever).
def _default_timeout():
    raw = os.environ.get("OMNIBAL_TIMEOUT", "")
    if raw.strip().lower() in ("none", "off"):
        return None
    try:
        value = float(raw) if raw.strip() else 300.0
        if value > 0:
            return value
    except ValueError:
        pass
    _log.warning("omnibal: OMNIBAL_TIMEOUT=%r is not a positive number of seconds (or 'none'); using 300", raw)
    return 300.0


DEFAULT_TIMEOUT = _default_timeout()
_READ_CHUNK = 1 << 20
#: The JSON-RPC code of a refused connection (over ``--max-connections``; see :class:`TooManyConnections`).
_TOO_MANY_CONNECTIONS = -32005
#: Seconds a send that found the connection gone waits for the reader thread to read what the
#: sidecar sent before it went (a refusal), so that the call fails with that.
_GONE_READ_S = 1.0


def find_command():
    """The command that starts the sidecar: ``$OMNIBAL_CLI`` (a path to the CLI's ``main.js``
    or an ``omnibal`` executable), the CLI of the repository this package sits in, or
    ``omnibal`` on ``PATH``."""
    node = os.environ.get("OMNIBAL_NODE") or shutil.which("node")
    explicit = os.environ.get("OMNIBAL_CLI")
    if explicit:
        if explicit.endswith(".js"):
            if not os.path.isfile(explicit):
                raise SidecarNotFound("OMNIBAL_CLI=%s: no such file (set it to the path of omnibal's dist/src/cli/main.js)" % explicit)
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


_U32 = "I" if array.array("I").itemsize == 4 else "L"


def u32_values(values):
    """``values`` as an ``array.array`` of uint32 (kept as is when it already is one); a value
    outside 0..2^32 - 1 is an :class:`InvalidParams` error."""
    if isinstance(values, array.array) and values.typecode == _U32:
        return values
    try:
        return array.array(_U32, values)
    except (OverflowError, TypeError) as e:
        raise InvalidParams("lengths must be integers in 0..4294967295 (%s)" % e, code="ERR_OMNIBAL_INVALID_SAMPLE")


class _Base64Array(dict):
    """What :func:`u32_array` returns: a plain ``{"$base64", "dtype"}`` dict to every reader,
    which also keeps the text's bytes (``raw``) so that :func:`request_line` can put them in
    the line without encoding and checking them again (it does so only while ``$base64`` is
    still the very text they were made with)."""



def _check_command(command):
    """Raises :class:`InvalidParams` (``ERR_OMNIBAL_INVALID_TYPE``) unless ``command`` is None or a
    list of arguments: a string (a socket path given where ``socket_path=`` was meant, or a shell
    line) would be started character by character."""
    if isinstance(command, (str, bytes)):
        hint = " (to connect to a running sidecar, pass socket_path=%r)" % (command,) if isinstance(command, str) and os.sep in command else ""
        raise InvalidParams("command must be a list of arguments such as ['npx', 'omnibal', 'serve'], got %r%s" % (command, hint),
                            code="ERR_OMNIBAL_INVALID_TYPE")

def check_progress(progress):
    """Raises :class:`InvalidParams` (``ERR_OMNIBAL_INVALID_TYPE``) unless ``progress`` is None or
    callable as ``progress(done, total)``."""
    if progress is not None and not callable(progress):
        raise InvalidParams("progress must be a callable progress(done, total), got %r" % (progress,), code="ERR_OMNIBAL_INVALID_TYPE")


def u32_array(values):
    """Encodes non-negative integers for the wire as little-endian uint32 in base64."""
    a = u32_values(values)
    if sys.byteorder != "little":
        a = array.array(_U32, a)
        a.byteswap()
    raw = base64.b64encode(memoryview(a).cast("B"))
    out = _Base64Array({"$base64": raw.decode("ascii"), "dtype": "u32"})
    out.raw, out.text = raw, out["$base64"]
    return out


_BASE64_ALPHABET = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/="
# Binary arrays at least this long are spliced into the line instead of passing through json.dumps.
_SPLICE_MIN = 1 << 16


def request_line(msg):
    """``msg`` as one compact, strict JSON line (bytes, ``\n`` included): exactly
    ``json.dumps(msg, separators=(",", ":"), allow_nan=False) + "\n"`` in UTF-8, but the long
    ``$base64`` texts of binary arrays among ``msg["params"]``'s values (base64 needs no JSON
    escaping) are put in as bytes, not scanned by the JSON encoder (0.18 s for a 4M-sample
    ``pack``). A text with any other character goes through the encoder as usual."""
    params = msg.get("params")
    spliced = []
    if isinstance(params, dict):
        token = os.urandom(8).hex()
        copy = None
        for key, value in params.items():
            text = value.get("$base64") if isinstance(value, dict) else None
            if not isinstance(text, str) or len(text) < _SPLICE_MIN:
                continue
            if isinstance(value, _Base64Array) and text is getattr(value, "text", None):
                raw = value.raw  # made by b64encode from this very text's bytes: base64 only
            else:
                if not text.isascii():
                    continue
                raw = text.encode("ascii")
                if raw.translate(None, _BASE64_ALPHABET):
                    continue
            mark = "omnibal-base64-%s-%d" % (token, len(spliced))
            copy = dict(params) if copy is None else copy
            copy[key] = dict(value)
            copy[key]["$base64"] = mark
            spliced.append((('"%s"' % mark).encode("ascii"), raw))
        if copy is not None:
            msg = dict(msg)
            msg["params"] = copy
    data = (json.dumps(msg, separators=(",", ":"), allow_nan=False) + "\n").encode("utf8")
    if not spliced:
        return data
    parts = []
    for mark, raw in spliced:
        before, found, data = data.partition(mark)
        if not found:  # cannot happen: each mark is in the line once
            raise AssertionError("omnibal: lost a spliced array")
        parts += [before, b'"', raw, b'"']
    parts.append(data)
    return b"".join(parts)


#: Most attachments one message may carry (the sidecar's limit too).
MAX_ATTACHMENTS = 64


def _u32_bytes(value):
    """The little-endian bytes of a uint32 array param as a byte ``memoryview`` (over the
    array's own memory on a little-endian host), or None when ``value`` is not one: an
    ``array.array`` of typecode ``I``/``L`` with 4-byte items, a C-contiguous ``memoryview`` of
    4-byte unsigned items, or a numpy ``uint32`` array (numpy is not imported). A scalar (a
    numpy ``uint32`` scalar, a 0-d array or view) is not an array: None, so it is never sent as
    a one-element attachment where a number was meant."""
    if isinstance(value, array.array):
        if value.itemsize != 4 or value.typecode not in "IL":
            return None
        if sys.byteorder != "little":
            value = array.array(value.typecode, value)
            value.byteswap()
        return memoryview(value).cast("B")
    if isinstance(value, memoryview):
        if value.ndim == 0 or value.itemsize != 4 or value.format.lstrip("@=<") not in ("I", "L"):
            return None
        if sys.byteorder != "little" and not value.format.startswith("<"):
            return _u32_bytes(array.array(_U32, value.tolist()))
        return (value if value.c_contiguous else memoryview(value.tobytes())).cast("B")
    dtype = getattr(value, "dtype", None)
    if dtype is not None and type(value).__module__ == "numpy" and getattr(dtype, "kind", None) == "u" and getattr(dtype, "itemsize", 0) == 4 \
            and getattr(value, "ndim", 0) > 0:
        if dtype.byteorder == ">" or (dtype.byteorder == "=" and sys.byteorder != "little"):
            value = value.astype("<u4")
        if not value.flags["C_CONTIGUOUS"]:
            value = value.copy()
        return memoryview(value).cast("B")
    return None


def request_frame(msg):
    """``msg`` as the byte pieces to write, in order: the request line (see
    :func:`request_line`), then, when ``msg["params"]`` has uint32 arrays (see
    :func:`_u32_bytes`) among its values, each array's bytes as an attachment (the line
    declares their lengths in ``"$attachments"`` and refers to them as ``{"$binary": k,
    "dtype": "u32"}``) and the closing ``\n``."""
    params = msg.get("params")
    attachments = []
    if isinstance(params, dict):
        copy = None
        for key, value in params.items():
            raw = _u32_bytes(value)
            if raw is None:
                continue
            copy = dict(params) if copy is None else copy
            copy[key] = {"$binary": len(attachments), "dtype": "u32"}
            attachments.append(raw)
        if copy is not None:
            if len(attachments) > MAX_ATTACHMENTS:
                # Not a ValueError: request() tells those apart as NaN/Infinity in the params.
                raise LimitExceeded("%d uint32 array params; at most %d binary arrays go in one request"
                                    % (len(attachments), MAX_ATTACHMENTS), rpc_code=-32001, code="ERR_OMNIBAL_LIMIT")
            msg = dict(msg, params=copy)
            msg["$attachments"] = [len(a) for a in attachments]
    line = request_line(msg)
    if not attachments:
        return [line]
    return [line] + attachments + [b"\n"]


# --- transports -------------------------------------------------------------------------------

_live_transports = weakref.WeakSet()


def _after_fork_in_child():
    # A forked child (a DataLoader worker) must not hold the parent's pipe to the sidecar open:
    # the sidecar exits when its stdin ends, which it would never see while a child kept a copy.
    for t in list(_live_transports):
        t.forget_in_child()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


class _PipeTransport:
    """A sidecar this process started, spoken to over its stdin/stdout."""

    def __init__(self, proc):
        self.proc = proc
        self.owner_pid = os.getpid()
        self._in = proc.stdin.fileno()
        self._out = proc.stdout.fileno()
        # Writes wait in poll(), bounded by the call's timeout: a stopped sidecar whose stdin pipe
        # is full must not block the writer (and every thread behind the write lock) forever.
        os.set_blocking(self._in, False)
        # Each write to the raw descriptor, and its closing, under this lock: a descriptor closed
        # by another thread (the reader ending a misframed connection) is never written to, even
        # where its number was reused by a file opened since.
        self._in_lock = threading.Lock()
        self._in_closed = False

    def write(self, data, timeout=None):
        view = memoryview(data).cast("B")
        while view:
            with self._in_lock:
                if self._in_closed:
                    raise BrokenPipeError("the connection to the sidecar has ended")
                try:
                    n = os.write(self._in, view)
                except BlockingIOError:
                    n = 0
            if n:
                view = view[n:]
            else:
                _wait_writable(self._in, timeout)

    def read(self):
        return os.read(self._out, _READ_CHUNK)

    def read_into(self, view):
        return os.readv(self._out, [view])

    def forget_in_child(self):
        for f in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            try:
                f.close()
            except (OSError, ValueError):
                pass
        self.owner_pid = None

    def close(self, grace):
        if self.owner_pid == os.getpid():
            with self._in_lock:
                self._in_closed = True
                try:
                    self.proc.stdin.close()  # the sidecar answers what it has, then exits
                except OSError:
                    pass
            _stop_process(self.proc, grace)

    def release_files(self):
        for f in (self.proc.stdout, self.proc.stderr):
            try:
                f and f.close()
            except OSError:
                pass

    def release_read_side(self):
        try:
            self.proc.stdout.close()
        except OSError:
            pass


class _SocketTransport:
    """A connection to a sidecar listening on a Unix socket (shared by a node's ranks)."""

    def __init__(self, sock, server=None):
        self.sock = sock
        self.server = server  # the Popen of a server this process started, else None
        self.owner_pid = os.getpid()

    def write(self, data, timeout=None):
        # Not sendall: the socket stays blocking for the reader thread, each send here does not
        # wait, and poll() bounds the wait by the call's timeout (see _PipeTransport.write).
        view = memoryview(data).cast("B")
        while view:
            try:
                n = self.sock.send(view, socket.MSG_DONTWAIT)
            except (BlockingIOError, InterruptedError):
                n = 0
            if n:
                view = view[n:]
            else:
                _wait_writable(self.sock.fileno(), timeout)

    def read(self):
        return self.sock.recv(_READ_CHUNK)

    def read_into(self, view):
        return self.sock.recv_into(view)

    def forget_in_child(self):
        try:
            self.sock.close()
        except OSError:
            pass
        if self.server is not None:
            for f in (self.server.stdin, self.server.stderr):
                try:
                    f and f.close()
                except (OSError, ValueError):
                    pass
        self.owner_pid = None

    def close(self, grace):
        if self.owner_pid != os.getpid():
            return
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        if self.server is not None:
            # A socket server does not end with its stdin: it is terminated after a short wait.
            _stop_process(self.server, min(grace, 0.2))

    def release_files(self):
        try:
            self.sock.close()
        except OSError:
            pass
        if self.server is not None and self.server.stderr is not None:
            try:
                self.server.stderr.close()
            except OSError:
                pass

    def release_read_side(self):
        pass  # the socket is closed with the client (it is also the write side)


class _WriteStalled(Exception):
    """The sidecar took no byte of a request for the call's timeout (stopped, or not reading)."""


def _wait_writable(fd, timeout):
    """Waits until ``fd`` takes bytes again; :class:`_WriteStalled` after ``timeout`` seconds
    (None: no limit). An error or hang-up on ``fd`` returns, and the write that follows fails."""
    poller = select.poll()
    poller.register(fd, select.POLLOUT)
    if not poller.poll(None if timeout is None else max(0.0, timeout) * 1000):
        raise _WriteStalled()


# --- the pending calls and the reader ---------------------------------------------------------


def _non_finite(value, path):
    """(path, value) of the first NaN or infinite float in ``value`` (nested dicts and lists),
    else None: names the parameter a request cannot carry."""
    if isinstance(value, float) and not math.isfinite(value):
        return path, value
    if isinstance(value, dict):
        items = ((".%s" % k, v) for k, v in value.items())
    elif isinstance(value, (list, tuple)):
        items = (("[%d]" % i, v) for i, v in enumerate(value))
    else:
        return None
    for key, v in items:
        found = _non_finite(v, path + key)
        if found:
            return found
    return None


class _Pending:
    __slots__ = ("event", "response", "progress", "activity", "parsed", "failure")

    def __init__(self, progress):
        self.event = threading.Event()
        self.response = None
        self.progress = progress
        self.activity = time.monotonic()
        self.parsed = False  # the sidecar has shown it read this request (progress seen)
        self.failure = None  # what the progress callback raised: the call raises it (see Client.wait)


class _Calls:
    """The pending calls by id; shared by the client and its reader thread (which must not hold
    the client itself, so that an unreferenced client can be collected and stop its sidecar)."""

    def __init__(self):
        self.lock = threading.Lock()
        self.pending = {}
        self.ended = None  # why the connection ended, once it has
        # The last message, when it was an error naming no request while none was pending: the
        # calls of a connection that then ends fail with it rather than with a bare
        # SidecarExited (a refusal, -32005, is kept in ``refused`` instead).
        self.unaddressed = None
        # The refusal of this connection (-32005, id null: over the sidecar's --max-connections),
        # once read: every call pending then and every later one fails with it (kept for good).
        self.refused = None

    def add(self, rid, pending):
        with self.lock:
            if self.ended is not None or self.refused is not None:
                return False
            self.pending[rid] = pending
            return True

    def pop(self, rid):
        with self.lock:
            return self.pending.pop(rid, None)

    def dispatch_message(self, msg):
        if not isinstance(msg, dict):
            return
        if msg.get("method") == "progress":
            p = msg.get("params") or {}
            with self.lock:
                pending = self.pending.get(p.get("id"))
            if pending is None:
                return
            pending.activity = time.monotonic()
            pending.parsed = True
            if pending.progress is not None:
                try:
                    pending.progress(p.get("done"), p.get("total"))
                except BaseException as e:  # noqa: BLE001 - a callback's failure must not stop the reader
                    # The call fails with it (Client.wait cancels the request); the callback is
                    # not called again, as with Node's onProgress.
                    pending.progress = None
                    pending.failure = e
                    pending.event.set()
            return
        rid = msg.get("id")
        if rid is None:
            self._fail_unaddressed(msg)
            return
        self.unaddressed = None
        pending = self.pop(rid)
        if pending is not None:
            pending.response = msg
            pending.event.set()

    def _fail_unaddressed(self, msg):
        # An error that names no request (a line the sidecar could not parse, one over its line
        # limit). It belongs to one of the requests the sidecar has not shown it has read: if
        # that is one request it fails; if several, they all fail rather than wait forever.
        if "error" not in msg:
            return
        if isinstance(msg["error"], dict) and msg["error"].get("code") == _TOO_MANY_CONNECTIONS:
            self._refuse(msg)
            return
        with self.lock:
            self.unaddressed = msg if not self.pending and isinstance(msg["error"], dict) else None
            unread = [rid for rid, p in self.pending.items() if not p.parsed]
            if not unread:
                unread = list(self.pending)
            failed = [(rid, self.pending.pop(rid)) for rid in unread]
        if len(failed) == 1:
            failed[0][1].response = msg
            failed[0][1].event.set()
            return
        err = msg["error"] if isinstance(msg["error"], dict) else {}
        for rid, pending in failed:
            pending.response = {"_protocol": "the sidecar answered an error without an id while %d requests were pending: %s (code %s)"
                                % (len(failed), err.get("message"), err.get("code")), "error": err}
            pending.event.set()

    def _refuse(self, msg):
        # The sidecar refused this connection and closes it: it runs none of its requests, so
        # every pending one fails with the refusal, however many there are, and so does every
        # later one (see add and end).
        with self.lock:
            self.refused = msg
            failed = list(self.pending.values())
            self.pending.clear()
        for pending in failed:
            pending.response = msg
            pending.event.set()

    def end(self, why):
        with self.lock:
            if self.ended is None:
                self.ended = why
            waiting = list(self.pending.values())
            self.pending.clear()
        for pending in waiting:
            pending.response = self.refused or self.unaddressed or {"_exited": self.ended}
            pending.event.set()


class _Misframed(Exception):
    """The sidecar's bytes do not follow the framing (the connection cannot be read on)."""


def _attachment_lengths(msg):
    lengths = msg.get("$attachments")
    if not isinstance(lengths, list) or len(lengths) > MAX_ATTACHMENTS or not all(
            type(n) is int and n >= 0 for n in lengths):
        raise _Misframed("an answer with a malformed \"$attachments\" (%r)" % (lengths,))
    return lengths


def _new_attachment(n):
    """Memory for an attachment of ``n`` bytes: an ``array.array`` of uint32 (read into in
    place) when ``n`` is a whole number of them, else a ``bytearray``."""
    if n % 4 == 0 and sys.byteorder == "little":
        return array.array(_U32, bytes(4)) * (n // 4)
    return bytearray(n)


def _bind_attachments(msg, arrays):
    """Replaces the ``{"$binary": k}`` members of the result by attachment ``k``; each must be
    referenced once."""
    result = msg.get("result")
    used = set()
    if isinstance(result, dict):
        for key, value in list(result.items()):
            if isinstance(value, dict) and "$binary" in value:
                k = value["$binary"]
                if type(k) is not int or not 0 <= k < len(arrays) or k in used or value.get("dtype") != "u32":
                    raise _Misframed("an answer's %s refers to attachment %r of %d" % (key, k, len(arrays)))
                used.add(k)
                a = arrays[k]
                if not isinstance(a, array.array):
                    if len(a) % 4:
                        raise _Misframed("attachment %d of %d bytes (not a multiple of 4)" % (k, len(a)))
                    b = array.array(_U32)
                    b.frombytes(a)
                    if sys.byteorder != "little":
                        b.byteswap()
                    a = b
                result[key] = a
    if len(used) != len(arrays):
        raise _Misframed("an answer with %d attachments, %d of them referenced" % (len(arrays), len(used)))
    msg.pop("$attachments", None)


class _FrameReader:
    """Reads the sidecar's messages: lines (split in linear time over large chunks) and the
    binary attachments a line declares, read straight into their arrays."""

    def __init__(self, transport):
        self.transport = transport
        self.chunk = b""
        self.start = 0

    def _more(self):
        try:
            chunk = self.transport.read()
        except OSError:
            chunk = b""
        self.chunk, self.start = chunk, 0
        return bool(chunk)

    def messages(self):
        parts = []
        while True:
            if self.start >= len(self.chunk) and not self._more():
                return
            nl = self.chunk.find(b"\n", self.start)
            if nl < 0:
                parts.append(self.chunk[self.start:])
                self.start = len(self.chunk)
                continue
            piece = self.chunk[self.start:nl]
            self.start = nl + 1
            line = b"".join(parts + [piece]) if parts else piece
            parts = []
            if not line.strip():
                continue
            try:
                msg = json.loads(line)
            except ValueError:
                _log.warning("omnibal: ignored a line from the sidecar that is not JSON (%d bytes)", len(line))
                continue
            if isinstance(msg, dict) and "$attachments" in msg:
                self._read_attachments(msg)
            yield msg

    def _read_attachments(self, msg):
        arrays = []
        for n in _attachment_lengths(msg):
            out = _new_attachment(n)
            view = memoryview(out).cast("B")
            filled = min(n, len(self.chunk) - self.start)
            view[:filled] = self.chunk[self.start:self.start + filled]
            self.start += filled
            while filled < n:
                try:
                    got = self.transport.read_into(view[filled:])
                except OSError:
                    got = 0
                if not got:
                    raise _Misframed("the connection ended inside an answer's attachments")
                filled += got
            view.release()
            arrays.append(out)
        if self.start >= len(self.chunk) and not self._more():
            raise _Misframed("the connection ended inside an answer's attachments")
        if self.chunk[self.start:self.start + 1] != b"\n":
            raise _Misframed("an answer's attachments not followed by a newline")
        self.start += 1
        _bind_attachments(msg, arrays)


def _read_loop(transport, calls, on_stderr=None):
    try:
        for msg in _FrameReader(transport).messages():
            calls.dispatch_message(msg)
    except _Misframed as e:
        if calls.ended is None:  # not a connection this client closed itself
            _log.error("omnibal: %s; the connection is closed", e)
        calls.end("the sidecar's answer was misframed (%s)" % e)
        transport.close(0)
    except Exception as e:  # noqa: BLE001 - a reader that dies silently leaves every call waiting for its timeout
        # An answer this client cannot hold or parse (MemoryError for an attachment of 2**62
        # bytes, RecursionError for JSON nested too deep): the connection cannot be read on.
        why = "%s: %s" % (type(e).__name__, str(e)[:200])
        if calls.ended is None:
            _log.error("omnibal: cannot read the sidecar's answer (%s); the connection is closed", why)
        calls.end("the sidecar's answer could not be read (%s)" % why)
        transport.close(0)
    calls.end("the sidecar exited" if calls.ended is None else calls.ended)
    transport.release_read_side()


def _read_stderr(stream, sink):
    try:
        for raw in stream:
            sink.append(raw.decode("utf8", "replace").rstrip())
            if len(sink) > 1000:
                del sink[:500]
    except (OSError, ValueError):
        pass
    try:
        stream.close()
    except OSError:
        pass


def _stop_process(proc, grace):
    """Closes a sidecar's stdin (it answers what it has, then exits), waits ``grace`` seconds,
    then terminates it (and kills it if SIGTERM is not enough)."""
    try:
        if proc.stdin is not None:
            proc.stdin.close()
    except OSError:
        pass
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        proc.terminate()
        try:
            proc.wait(2)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _stop(transport, calls, grace):
    calls.end("the client is closed")
    transport.close(grace)


def _die_with_parent():
    # Linux: the server receives SIGTERM when the process that started it dies (even SIGKILLed).
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, 15)  # PR_SET_PDEATHSIG, SIGTERM
    except Exception:  # noqa: BLE001 - best effort, Linux only
        pass


# --- the client -------------------------------------------------------------------------------


class Client:
    """A connection to one ``omnibal serve`` process.

    ``Client()`` starts a private sidecar on stdio; ``Client(socket_path=...)`` connects to one
    listening on a Unix socket; :meth:`node_shared` gives every local rank of a node one shared
    sidecar. ``call(method, params)`` returns the result or raises a typed :class:`OmnibalError`.

    ``timeout`` (seconds, default :data:`DEFAULT_TIMEOUT`) bounds how long a call waits with
    neither an answer nor progress; ``close_grace`` how long :meth:`close` lets a sidecar it
    started exit after closing its stdin before terminating it. Use it as a context manager, or
    call :meth:`close`; an unreferenced client stops its sidecar when collected or at exit.
    """

    def __init__(self, command=None, env=None, extra_args=(), timeout=DEFAULT_TIMEOUT, socket_path=None, tcp=None, token=None,
                 close_grace=2.0, _server=None):
        _check_command(command)
        self.timeout = timeout
        self.close_grace = close_grace
        self.stderr_lines = []
        self.socket_path = socket_path
        self.token = token
        if socket_path is not None or tcp is not None:
            try:
                if tcp is not None:
                    host, port = tcp
                    if host not in ("127.0.0.1", "::1", "localhost"):
                        raise OSError("only loopback addresses are served")
                    sock = socket.create_connection((host, port), timeout=self.timeout)
                    sock.settimeout(None)
                    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                else:
                    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                    try:
                        sock.connect(socket_path)
                    except OSError:
                        sock.close()
                        raise
            except OSError as e:
                raise SidecarNotFound("cannot connect to the omnibal sidecar on %s: %s" % (socket_path or "%s:%s" % tcp, e))
            self._transport = _SocketTransport(sock, _server)
            self._proc = _server
        else:
            cmd = list(command) if command else find_command()
            cmd += list(extra_args)
            try:
                self._proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, bufsize=0)
            except OSError as e:
                raise SidecarNotFound("cannot start the omnibal sidecar (%s): %s" % (" ".join(cmd), e))
            self._transport = _PipeTransport(self._proc)
        _live_transports.add(self._transport)
        self._ids = _Counter()
        self._write_lock = threading.Lock()
        self._calls = _Calls()
        self._closed = False
        # The sidecar's `version` answer, asked once before the first request that needs a capability.
        self._sidecar_version = None
        self._version_lock = threading.Lock()
        self._reader = threading.Thread(target=_read_loop, args=(self._transport, self._calls), name="omnibal-reader", daemon=True)
        self._reader.start()
        self._err_reader = None
        if self._proc is not None and self._proc.stderr is not None:
            self._err_reader = threading.Thread(target=_read_stderr, args=(self._proc.stderr, self.stderr_lines), name="omnibal-stderr", daemon=True)
            self._err_reader.start()
        # Runs on close(), on collection, or at interpreter exit; holds no reference to self.
        self._finalizer = weakref.finalize(self, _stop, self._transport, self._calls, 0.5)
        if tcp is not None and token is not None:
            try:
                self.call("auth", {"token": token})
            except Exception:
                self.close()
                raise

    @classmethod
    def from_token_file(cls, path, timeout=DEFAULT_TIMEOUT):
        """Connects to a socket sidecar started with ``--token-file path`` (its listen address and
        token, readable by its owner only)."""
        try:
            with open(path) as fh:
                info = json.load(fh)
        except OSError as e:
            raise SidecarNotFound("cannot read the token file %s: %s" % (path, e.strerror or e)) from None
        except ValueError as e:  # not JSON (json.JSONDecodeError), or not UTF-8
            raise SidecarNotFound("the token file %s is not the JSON that omnibal serve --token-file writes: %s" % (path, e)) from None
        listen = info.get("listen") if isinstance(info, dict) else None
        token = info.get("token") if isinstance(info, dict) else None
        if not isinstance(listen, str) or not listen or (token is not None and not isinstance(token, str)):
            raise SidecarNotFound("the token file %s lacks a \"listen\" address (and a string \"token\"): not written by omnibal serve --token-file" % path)
        if listen.startswith("unix:") or "/" in listen:
            return cls(socket_path=listen[5:] if listen.startswith("unix:") else listen, token=token, timeout=timeout)
        host, _, port = listen.rpartition(":")
        if token is None or not port.isdigit():
            raise SidecarNotFound("the token file %s names a TCP address %r without a port or a token" % (path, listen))
        return cls(tcp=(host.strip("[]"), int(port)), token=token, timeout=timeout)

    def shutdown(self):
        """Asks the sidecar to stop (for everyone): allowed to a stdio sidecar's owner, or with the
        server's token."""
        return self.call("shutdown", {"token": self.token} if self.token else None)

    @classmethod
    def node_shared(cls, socket_path=None, command=None, extra_args=(), timeout=DEFAULT_TIMEOUT, start_timeout=60.0):
        """One sidecar per node, shared by its local ranks over a Unix socket.

        Whoever takes the file lock ``socket_path + ".lock"`` first and finds no live server
        starts ``omnibal serve --listen socket_path`` (the server then lives as long as that
        process, or until it closes its client); the others connect. ``socket_path`` defaults to
        ``$OMNIBAL_SOCKET``, else a per-user, per-job path in the temporary directory (the job
        being ``$TORCHELASTIC_RUN_ID`` or ``$MASTER_ADDR:$MASTER_PORT``). Close the owner's client
        after the other ranks are done (e.g. after ``dist.barrier()``).
        """
        path = socket_path or default_socket_path()
        if len(os.fsencode(path)) > 100:
            raise SidecarNotFound("the Unix socket path %r is %d bytes; the limit is about 100 (pass a shorter socket_path)" % (path, len(os.fsencode(path))))
        try:
            lock_fd = os.open(path + ".lock", os.O_CREAT | os.O_RDWR, 0o600)
        except OSError as e:
            raise SidecarNotFound("cannot create the lock %s.lock to share a node sidecar: %s (set OMNIBAL_SOCKET or socket_path to a writable place)" % (path, e))
        try:
            deadline = time.monotonic() + start_timeout
            while True:
                try:
                    fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except OSError as e:
                    if e.errno not in (errno.EAGAIN, errno.EACCES) or time.monotonic() > deadline:
                        raise SidecarNotFound("cannot take the lock %s.lock to share a node sidecar: %s" % (path, e))
                    time.sleep(0.02)
            try:
                return cls(socket_path=path, timeout=timeout)
            except SidecarNotFound:
                pass
            # No live server: start one (we hold the lock, so nobody else is starting one).
            try:
                if stat.S_ISSOCK(os.lstat(path).st_mode):
                    os.unlink(path)  # a dead server's socket (the server refuses any other file)
            except FileNotFoundError:
                pass
            cmd = (list(command) if command else find_command()) + ["--listen", path] + list(extra_args)
            try:
                server = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, bufsize=0, preexec_fn=_die_with_parent)
            except OSError as e:
                raise SidecarNotFound("cannot start the omnibal sidecar (%s): %s" % (" ".join(cmd), e))
            while True:
                try:
                    return cls(socket_path=path, timeout=timeout, _server=server)
                except SidecarNotFound as e:
                    if server.poll() is not None or time.monotonic() > deadline:
                        err = server.stderr.read().decode("utf8", "replace").strip() if server.poll() is not None else ""
                        _stop_process(server, 0.5)
                        server.stderr.close()
                        raise SidecarNotFound("the node's omnibal sidecar did not start on %s: %s %s" % (path, e, err))
                    time.sleep(0.02)
        finally:
            os.close(lock_fd)  # releases the lock

    @property
    def pid(self):
        """The process id of the sidecar this client started (None when it only connected)."""
        return self._proc.pid if self._proc is not None else None

    @property
    def owns_sidecar(self):
        """True when this client started its sidecar (and so stops it on close)."""
        return self._proc is not None

    def send_raw(self, line, timeout=None):
        """Writes one raw line (or any bytes, or a list of byte pieces) to the sidecar, whole,
        under the write lock. A sidecar that takes no byte for ``timeout`` seconds (None: no
        limit) fails with :class:`SidecarTimeout` and ends the connection (a request may be
        half sent)."""
        parts = line if isinstance(line, list) else [line]
        with self._write_lock:
            if self._calls.ended is not None:
                # Ended while this thread waited for the lock: the file descriptor may be closed,
                # and its number reused by another file.
                raise BrokenPipeError("the connection to the sidecar has ended (%s)" % self._calls.ended)
            try:
                for data in parts:
                    self._transport.write(data if not isinstance(data, str) else data.encode("utf8"), timeout)
            except _WriteStalled:
                why = "the sidecar took no byte of a request within %s s (stopped, or not reading)" % timeout
                self._calls.end(why)
                self._transport.close(0)
                raise SidecarTimeout(why, code="ERR_OMNIBAL_TIMEOUT") from None
            except BaseException as e:
                # Cut short (KeyboardInterrupt, a signal handler's exception, a broken pipe): the
                # sidecar would take the next request for the rest of this one, so the
                # connection ends and later calls fail at once instead of waiting for a timeout.
                if isinstance(e, OSError):
                    self._await_reader()
                self._calls.end("a request was cut short while being sent (%s)" % type(e).__name__)
                self._transport.close(0)
                raise

    def request(self, method, params=None, progress=None, timeout=None):
        """Sends a request and returns its id and a handle to wait on (see :meth:`wait`).

        ``progress(done, total)`` is called from the reader thread; if it raises, it is not
        called again, and :meth:`wait` cancels the request and raises that exception.
        ``timeout`` (default: the client's) bounds how long sending may wait for a sidecar that
        takes no byte (then :class:`SidecarTimeout`, and the connection ends)."""
        check_progress(progress)
        if self._closed:
            raise SidecarExited("the client is closed")
        rid = self._ids.next()
        # The id comes first, so that a sidecar that cannot read the whole line can still name it.
        msg = {"jsonrpc": "2.0", "id": rid, "method": method}
        if params is not None:
            msg["params"] = params
        try:
            # Strict JSON: NaN and Infinity are not JSON; the sidecar would refuse the line
            # without naming the field, so they are refused here, before anything is sent.
            data = request_frame(msg)
        except ValueError as e:
            where = _non_finite(params, "params")
            raise NotJson("%s %s: %s (NaN and Infinity are not JSON)" % (method, where[0] if where else "params", "is %r" % where[1] if where else e),
                          code="ERR_OMNIBAL_INVALID_TYPE") from None
        needs = _capabilities_needed(params, data)
        if needs:
            self.require(needs, method)
        pending = _Pending(progress)
        if not self._calls.add(rid, pending):
            raise self._gone(self._calls.ended)
        try:
            self.send_raw(data, self.timeout if timeout is None else timeout)
        except SidecarTimeout:
            self._calls.pop(rid)
            raise
        except OSError:
            self._calls.pop(rid)
            raise self._gone("the sidecar is not running")
        return rid, pending

    def _await_reader(self):
        """Waits (at most :data:`_GONE_READ_S`) for the reader thread to read the connection to
        its end: a send found it gone, and what the sidecar sent before it went (a refusal,
        -32005) decides the error of this call and of those pending (see :meth:`_gone`)."""
        if self._reader is not threading.current_thread():
            self._reader.join(_GONE_READ_S)

    def _gone(self, why):
        """The error of a call on a connection that has ended (or was refused): the refusal,
        once the sidecar refused the connection (:class:`TooManyConnections`), or the error
        the sidecar ended it with, when its last message was one naming no request, else
        :class:`SidecarExited`."""
        last = self._calls.refused or self._calls.unaddressed
        return from_rpc(last["error"]) if last is not None else self._exited(why)

    def wait(self, pending, timeout=DEFAULT_TIMEOUT, rid=None):
        """Waits for a request's answer; returns the result or raises its error.

        Fails with :class:`SidecarTimeout` after ``timeout`` seconds with neither an answer nor
        a progress notification for it (``None``: no limit). When the request's progress
        callback raised, the request is cancelled on the sidecar (``$/cancelRequest``; its late
        answer is read and dropped, so the connection serves the next request) and that very
        exception is raised at once, as Node's Promise variants reject with their
        ``onProgress``'s error."""
        while not pending.event.is_set():
            if timeout is None:
                pending.event.wait()
                break
            left = pending.activity + timeout - time.monotonic()
            if left <= 0 and not pending.event.is_set():
                self._abandon(pending, rid)
                raise SidecarTimeout("no answer or progress from the sidecar within %s s" % timeout, code="ERR_OMNIBAL_TIMEOUT")
            pending.event.wait(max(left, 0.001))
        if pending.failure is not None:
            self._abandon(pending, rid)
            raise pending.failure
        msg = pending.response
        if "_exited" in msg:
            raise self._exited("%s with requests pending" % msg["_exited"])
        if "_protocol" in msg:
            err = msg.get("error") or {}
            raise ProtocolError(msg["_protocol"], rpc_code=err.get("code"), code=(err.get("data") or {}).get("code"))
        if "error" in msg:
            raise from_rpc(msg["error"] if isinstance(msg["error"], dict) else {"message": str(msg["error"])})
        return msg.get("result")

    def _exited(self, why):
        """The :class:`SidecarExited` error for a connection that ended, with how a sidecar this
        client started ended: its exit status (waited for a moment: a killed process is reaped
        a little after its pipes close) and its last error line from stderr."""
        if self._closed or self._proc is None:
            return SidecarExited(why)
        try:
            status = self._proc.wait(2)
        except subprocess.TimeoutExpired:
            status = None
        if status is None:
            how = "still running"
        elif status < 0:
            try:
                how = "killed by signal %d (%s)" % (-status, signal.Signals(-status).name)
            except ValueError:
                how = "killed by signal %d" % -status
        else:
            how = "exit code %d" % status
        if self._err_reader is not None and status is not None:
            self._err_reader.join(1)  # the rest of its stderr (read to its end after the exit)
        lines = [l.strip() for l in list(self.stderr_lines) if l.strip() and not l.strip().startswith("at ")]
        errors = [l for l in lines if re.match(r"([A-Za-z]*Error\b|omnibal\b|.*ERR_)", l)]
        said = (errors or lines)[-1:] if lines and status is not None and status > 0 else []
        return SidecarExited("%s (%s%s)" % (why, how, "; its stderr: %s" % said[0][:300] if said else ""))

    def require(self, capabilities, method=None):
        """Checks that the sidecar has ``capabilities`` (names from its ``version`` answer, asked
        once per client); raises :class:`IncompatibleSidecar` naming both versions when it lacks
        one or speaks another protocol. Called by :meth:`request` before the first request that
        needs a capability (binary attachments, a binary answer, a carry)."""
        with self._version_lock:
            if self._sidecar_version is None:
                try:
                    answer = self.call("version")
                except (InvalidParams, MethodNotFound, ProtocolError) as e:
                    answer = {"version": "unknown (version failed: %s)" % e}
                self._sidecar_version = answer if isinstance(answer, dict) else {}
        info = self._sidecar_version
        have = info.get("capabilities") if isinstance(info.get("capabilities"), list) else []
        missing = [c for c in sorted(capabilities) if c not in have]
        protocol = info.get("protocol")
        if protocol == PROTOCOL and not missing:
            return
        from . import __version__
        lacks = "lacks %s" % ", ".join(missing) if missing else "speaks %s" % (protocol or "an unknown protocol")
        raise IncompatibleSidecar("the omnibal sidecar %s (omnibal %s, protocol %s) %s, which this Python client (omnibal %s, protocol %s) "
                                  "needs%s; install the same omnibal version for Node.js and Python"
                                  % (" ".join(self._command_words()), info.get("version", "unknown"), protocol or "unknown", lacks, __version__, PROTOCOL,
                                     " for %s" % method if method else ""), code="ERR_OMNIBAL_INCOMPATIBLE_SIDECAR")

    def _command_words(self):
        if self.socket_path is not None:
            return ["on", str(self.socket_path)]
        return ["(pid %s)" % self.pid] if self._proc is not None else []

    def _abandon(self, pending, rid):
        with self._calls.lock:
            for k, p in list(self._calls.pending.items()):
                if p is pending:
                    rid = k
                    del self._calls.pending[k]
        if rid is not None and not self._closed:
            try:  # tell the sidecar to stop working on it; its answer is not awaited
                self.request("$/cancelRequest", {"id": rid})
            except Exception:  # noqa: BLE001
                pass

    def call(self, method, params=None, progress=None, timeout=None):
        """Calls a method and returns its result; ``progress(done, total)`` receives progress
        (an exception it raises cancels the request and is raised here, see :meth:`wait`).
        ``timeout`` defaults to the client's (see :class:`Client`)."""
        rid, pending = self.request(method, params, progress, timeout)
        try:
            result = self.wait(pending, self.timeout if timeout is None else timeout, rid)
            if method == "version" and isinstance(result, dict) and self._sidecar_version is None:
                self._sidecar_version = result  # what require() would ask
            return result
        finally:
            self._calls.pop(rid)

    def plan_for_rank(self, plan_id, rank):
        """``planForRank`` with a binary answer: a :class:`PlanLists` (steps of micro-batches of
        sample indices; ``.tolist()`` is the JSON answer's nested lists)."""
        return PlanLists(self.call("planForRank", {"planId": plan_id, "rank": rank, "encoding": "binary"}))

    def plan_step(self, plan_id, step):
        """``planStep`` with a binary answer: a :class:`PlanLists` (ranks of micro-batches)."""
        return PlanLists(self.call("planStep", {"planId": plan_id, "step": step, "encoding": "binary"}))

    def cancel(self, rid):
        """Cancels a pending request: it is answered at once with :class:`Cancelled`."""
        return self.call("$/cancelRequest", {"id": rid})

    def search_layout(self, params=None, progress=None, timeout=None):
        """Ranks parallel layouts (``searchLayout``, as ``omnibal plan --search-layout --json``):
        every tp x pp x dp of ``params["gpus"]`` and micro-batch size at one global batch in
        samples, fastest predicted epoch first. ``params`` as in docs/protocol.md (default: the
        InternVL-Chat-1.5 search on 1.2 million synthetic samples at 4.5 samples per micro-batch
        and 16 simulated steps, several seconds; ``{"samplesPerPacks": [2.25, 4.5, 9],
        "simulatedSteps": 4}`` is ``omnibal plan --search-layout``'s default search);
        ``progress(done, total)`` counts candidate layouts: ``done`` of the ``total`` layouts
        evaluated, and nothing else (``(0, total)`` first, ``(total, total)`` last; the data plans
        made between candidates are not counted, so a count can stand for a second or more).
        ``params["epochs"]`` (default 1) sets the epochs of each layout's ``hours`` and
        ``totalGpuHours``; ``gpuHours`` (the ranking) stays per epoch. Returns ``{"prediction":
        True, "assumptions", "globalBatchSamples", "epochs", "layouts"}``; every figure is a
        prediction."""
        return self.call("searchLayout", params or {}, progress=progress, timeout=timeout)

    def release(self, plan_id):
        """Frees a plan in the sidecar (``release``); a no-op on a sidecar without the method or
        after close. Returns True when the sidecar freed it."""
        if self._closed or plan_id is None:
            return False
        try:
            r = self.call("release", {"planId": plan_id})
        except Exception:  # noqa: BLE001 - releasing is an optimisation, never an error path
            return False
        return bool(r.get("released", True)) if isinstance(r, dict) else True

    def close(self, timeout=None):
        """Closes the connection. A sidecar this client started gets its stdin closed, then
        ``timeout`` (default ``close_grace``) seconds to exit before it is terminated."""
        if self._closed:
            return
        self._closed = True
        self._finalizer.detach()
        _stop(self._transport, self._calls, self.close_grace if timeout is None else timeout)
        self._reader.join(5)
        if self._err_reader is not None:
            self._err_reader.join(5)
        self._transport.release_files()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


#: The protocol this client speaks (``version``'s ``protocol``).
PROTOCOL = "omnibal-rpc/1"


def _capabilities_needed(params, frame):
    """The sidecar capabilities a request needs: ``binary-attachments`` when its frame carries
    attachments or it asks for a binary answer, ``carry`` when it passes a carry."""
    needs = set()
    if len(frame) > 1 or (isinstance(params, dict) and params.get("encoding") == "binary"):
        needs.add("binary-attachments")
    if isinstance(params, dict) and "carry" in params:
        needs.add("carry")
    return needs


class _Counter:
    def __init__(self):
        self._n = 0
        self._lock = threading.Lock()

    def next(self):
        with self._lock:
            self._n += 1
            return self._n


def default_socket_path():
    """The node-shared sidecar's socket: ``$OMNIBAL_SOCKET``, else one per user and job in the
    temporary directory."""
    explicit = os.environ.get("OMNIBAL_SOCKET")
    if explicit:
        return explicit
    job = os.environ.get("TORCHELASTIC_RUN_ID") or "%s-%s" % (os.environ.get("MASTER_ADDR", "local"), os.environ.get("MASTER_PORT", "0"))
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in job)[:40]
    return os.path.join(tempfile.gettempdir(), "omnibal-%d-%s.sock" % (os.getuid(), safe))
