"""Typed exceptions of the omnibal Python client."""


class OmnibalError(Exception):
    """An error answered by the sidecar: the JSON-RPC code and omnibal's own code."""

    def __init__(self, message, rpc_code=None, code=None):
        super().__init__(message)
        #: JSON-RPC error code (-32700 parse, -32600 invalid request, -32601 method not found,
        #: -32602 invalid params, -32000 server, -32001 limit, -32002 unauthorized, -32003 unknown
        #: handle, -32004 shutting down, -32005 too many connections, -32800 cancelled).
        self.rpc_code = rpc_code
        #: omnibal's stable code (``ERR_OMNIBAL_...``), when the error has one.
        self.code = code


class InvalidParams(OmnibalError):
    """The request's parameters were rejected (-32602)."""


class NotJson(InvalidParams, ValueError):
    """A parameter holds a number JSON cannot carry (NaN, Infinity): refused before anything is
    sent, the message naming the parameter (code ``ERR_OMNIBAL_INVALID_TYPE``). Also a
    :class:`ValueError`."""


class MethodNotFound(OmnibalError):
    """No such method (-32601)."""


class LimitExceeded(OmnibalError):
    """A line or a sample count over the sidecar's limits (-32001)."""


class Cancelled(OmnibalError):
    """The request was cancelled (-32800)."""


class ShuttingDown(OmnibalError):
    """The sidecar stopped (SIGTERM/SIGINT or ``shutdown``) before this request was finished
    (-32004, ``ERR_OMNIBAL_SHUTTING_DOWN``): not a crash; send it again to a running sidecar."""


class TooManyConnections(OmnibalError):
    """A socket sidecar already holds as many connections as it takes (-32005,
    ``ERR_OMNIBAL_TOO_MANY_CONNECTIONS``: ``--max-connections``, or on TCP
    ``--max-unauthenticated`` before ``auth``): this connection was refused and closed before any
    request ran. Every call on the refused client raises it, those pending when the refusal came
    and every later one. Close a client you do not need, or try again later with a new one."""


class SidecarNotFound(OmnibalError):
    """The sidecar (Node.js and the omnibal CLI) could not be started."""


class SidecarExited(OmnibalError):
    """The sidecar process ended (or the client was closed) while requests were pending."""


class SidecarTimeout(OmnibalError, TimeoutError):
    """No answer and no progress from the sidecar within the call's timeout (the request is
    cancelled). Also a :class:`TimeoutError`."""


class ProtocolError(OmnibalError):
    """The sidecar answered an error that names no request (``id: null``, e.g. a line it could
    not parse) while several requests were pending, so each of them fails with it rather than
    waiting for an answer that will never come. (A refused connection's -32005, which names no
    request either, is :class:`TooManyConnections` instead.)"""


class IncompatibleSidecar(OmnibalError):
    """The sidecar is a version without a capability this client needs for a request (binary
    attachments, carry, ...), or speaks another protocol: the message names both versions
    (code ``ERR_OMNIBAL_INCOMPATIBLE_SIDECAR``)."""


class Unauthorized(OmnibalError):
    """A TCP connection without the server's token, or ``shutdown`` without it (-32002)."""


class UnknownHandle(OmnibalError):
    """No such plan or search on this connection: never made, released, evicted from the
    sidecar's plan store, or made by another connection (-32003)."""


class StateMismatch(InvalidParams):
    """``load_state_dict`` got a state saved for other data, other options, or a world size it
    cannot resume into exactly (code ``ERR_OMNIBAL_STATE_MISMATCH``)."""


class RankWarning(UserWarning):
    """A ``rank``/``world_size`` given to the sampler that looks like a mistake against the
    initialised process group (or torchrun's ``RANK``/``WORLD_SIZE``): another process's rank at
    the group's size, or a world size that does not divide the group. The values are used as
    given, as ``DistributedSampler`` uses them; silence it with ``warnings.filterwarnings("ignore",
    category=omnibal.RankWarning)`` when the ranks are remapped on purpose."""


_BY_CODE = {-32602: InvalidParams, -32601: MethodNotFound, -32001: LimitExceeded, -32800: Cancelled, -32002: Unauthorized,
            -32003: UnknownHandle, -32004: ShuttingDown, -32005: TooManyConnections}


def from_rpc(error):
    """Builds the typed exception for a JSON-RPC error object."""
    rpc_code = error.get("code")
    data = error.get("data") or {}
    cls = _BY_CODE.get(rpc_code, OmnibalError)
    return cls(error.get("message", "error"), rpc_code=rpc_code, code=data.get("code"))
