"""The sidecar's binary answers (``"encoding": "binary"`` or ``"base64"``, see docs/protocol.md):
little-endian uint32 arrays as attachments (read by the client into ``array.array``) or as base64
strings, decoded with the standard library (``base64`` + ``array``; no number is parsed one by
one), and the nested micro-batch lists of ``planStep`` / ``planForRank``
as a lazy view over three flat arrays: a list is made only for the micro-batch asked for.
"""

import array
import base64
import binascii
import sys
from collections.abc import Sequence

from .errors import ProtocolError

_U32 = "I" if array.array("I").itemsize == 4 else "L"


def decode_u32(value):
    """``{"$base64": ..., "dtype": "u32"}`` as an ``array.array`` of uint32 (a JSON list is
    taken as is; a binary attachment, which the client has already read into an ``array.array``,
    is returned as it is). A malformed value is a :class:`ProtocolError`."""
    if isinstance(value, array.array):
        return value
    if isinstance(value, list):
        return array.array(_U32, value)
    if not isinstance(value, dict) or value.get("dtype") != "u32" or not isinstance(value.get("$base64"), str):
        raise ProtocolError("expected a base64 u32 array from the sidecar, got %r" % (type(value).__name__,))
    try:
        raw = base64.b64decode(value["$base64"], validate=True)
    except (binascii.Error, ValueError) as e:
        raise ProtocolError("invalid base64 from the sidecar: %s" % e)
    if len(raw) % 4:
        raise ProtocolError("base64 u32 array of %d bytes (not a multiple of 4)" % len(raw))
    out = array.array(_U32)
    out.frombytes(raw)
    if sys.byteorder != "little":
        out.byteswap()
    return out


class MicroBatches(Sequence):
    """Micro-batches ``first .. end - 1`` of a :class:`PlanLists`, then the lists in ``tail``:
    ``len``, indexing (a new list of sample indices) and slicing (a list of such lists)."""

    __slots__ = ("_samples", "_offsets", "_first", "_count", "_tail")

    def __init__(self, samples, offsets, first, end, tail=()):
        self._samples = samples
        self._offsets = offsets
        self._first = first
        self._count = end - first
        self._tail = list(tail)

    def __len__(self):
        return self._count + len(self._tail)

    def __getitem__(self, k):
        if isinstance(k, slice):
            return [self[i] for i in range(*k.indices(len(self)))]
        n = len(self)
        if k < 0:
            k += n
        if not 0 <= k < n:
            raise IndexError("micro-batch index out of range")
        if k >= self._count:
            return list(self._tail[k - self._count])
        j = self._first + k
        return self._samples[self._offsets[j]:self._offsets[j + 1]].tolist()

    def __iter__(self):
        for k in range(len(self)):
            yield self[k]

    def __add__(self, other):
        """These micro-batches followed by the lists of ``other`` (kept lazy)."""
        return MicroBatches(self._samples, self._offsets, self._first, self._first + self._count, self._tail + [list(mb) for mb in other])


class PlanLists(Sequence):
    """An ``encoding: "binary"`` (or ``"base64"``) answer of ``planStep`` (groups = ranks) or ``planForRank``
    (groups = steps): ``plan[g][j]`` is the list of sample indices of micro-batch ``j`` of group
    ``g``, as in the JSON answer; :meth:`tolist` gives the JSON answer's nested lists exactly."""

    def __init__(self, result):
        if not isinstance(result, dict) or result.get("encoding") not in ("base64", "binary"):
            raise ProtocolError("expected an answer with encoding base64 or binary from the sidecar")
        self.samples = decode_u32(result["samples"])
        self.micro_batch_offsets = decode_u32(result["microBatchOffsets"])
        self.group_offsets = decode_u32(result["groupOffsets"])
        o, g = self.micro_batch_offsets, self.group_offsets
        if not g or not o or g[-1] != len(o) - 1 or o[-1] != len(self.samples) or g[0] != 0 or o[0] != 0:
            raise ProtocolError("inconsistent offsets in a base64 plan answer")

    def __len__(self):
        return len(self.group_offsets) - 1

    def __getitem__(self, g):
        if isinstance(g, slice):
            return [self[i] for i in range(*g.indices(len(self)))]
        n = len(self)
        if g < 0:
            g += n
        if not 0 <= g < n:
            raise IndexError("group index out of range")
        return self.micro_batches(g, g + 1)[:]

    def micro_batches(self, first=0, end=None):
        """The micro-batches of groups ``first .. end - 1`` in order, as one lazy sequence."""
        end = len(self) if end is None else end
        return MicroBatches(self.samples, self.micro_batch_offsets, self.group_offsets[first], self.group_offsets[end])

    def tolist(self):
        """The nested lists of the JSON answer."""
        samples, o = self.samples.tolist(), self.micro_batch_offsets.tolist()
        mbs = [samples[a:b] for a, b in zip(o, o[1:])]
        g = self.group_offsets.tolist()
        return [mbs[a:b] for a, b in zip(g, g[1:])]
