"""omnibal for Python: balanced, deterministic batches for VLM training through the
``omnibal serve`` sidecar (standard library only)."""

from .client import Client, find_command, u32_array
from .errors import (Cancelled, InvalidParams, LimitExceeded, MethodNotFound, OmnibalError,
                     SidecarExited, SidecarNotFound)
from .sampler import BalancedBatchSampler

__all__ = [
    "BalancedBatchSampler", "Cancelled", "Client", "InvalidParams", "LimitExceeded",
    "MethodNotFound", "OmnibalError", "SidecarExited", "SidecarNotFound", "find_command", "u32_array",
]
__version__ = "0.1.0"
