"""omnibal for Python: balanced, deterministic batches for VLM training through the
``omnibal serve`` sidecar (standard library only)."""

from .arrays import MicroBatches, PlanLists, decode_u32
from .client import DEFAULT_TIMEOUT, Client, default_socket_path, find_command, u32_array, u32_values
from .errors import (Cancelled, IncompatibleSidecar, InvalidParams, LimitExceeded, MethodNotFound, NotJson, OmnibalError, ProtocolError,
                     RankWarning, ShuttingDown, SidecarExited, SidecarNotFound, SidecarTimeout, StateMismatch, TooManyConnections, Unauthorized,
                     UnknownHandle)
from .sampler import BalancedBatchSampler, even_rank_batches

__all__ = [
    "BalancedBatchSampler", "Cancelled", "Client", "DEFAULT_TIMEOUT", "IncompatibleSidecar", "InvalidParams", "LimitExceeded",
    "MethodNotFound", "MicroBatches", "NotJson", "OmnibalError", "PlanLists", "ProtocolError", "RankWarning", "SidecarExited", "SidecarNotFound", "SidecarTimeout",
    "ShuttingDown", "StateMismatch", "TooManyConnections", "Unauthorized", "UnknownHandle", "decode_u32", "default_socket_path", "even_rank_batches", "find_command", "u32_array",
    "u32_values",
]
__version__ = "0.1.0"
