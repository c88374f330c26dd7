"""``BalancedBatchSampler``: omnibal's balanced, deterministic micro-batches for a
``torch.utils.data.DataLoader`` (``batch_sampler=``), one data-parallel rank's share, with the
semantics of PyTorch's ``DistributedSampler``.

Every rank computes the same global plan from the same inputs and seed (a pure function of
them), and takes its own slice, so no collective communication is needed. Each yielded batch is
one micro-batch (a packed sequence's sample indices); a step is ``accum`` consecutive batches.

Resuming. The epoch's *global order* is the plan's steps in order (each step: every rank's
``accum`` micro-batches). ``state_dict()`` records the epoch, the micro-batches this rank has
consumed (every rank consumes the same number), the global count of samples they hold, the world
size, ``accum``, a fingerprint of the data and the planning options. ``load_state_dict()`` then
resumes exactly where training stopped; into another world size (or ``accum``) it resumes by
the consumed prefix of the global order, as Megatron-LM's samplers do: the samples of the
consumed steps are skipped and the rest of the epoch is re-planned for the new ranks, so no
sample is trained twice or skipped. That needs a state saved at a step boundary and the samples
given as ``lengths`` (the sampler sends the rest's lengths); otherwise it is a clear
:class:`StateMismatch` error, never a silent restart.

Carrying the tail (``tail='carry'``, balanced only). Each epoch's last incomplete step is not
dropped but carried: the sidecar reports its samples (reason ``carried``) and the next epoch's
plan takes them besides its own samples, kept out of its own tail, so epochs form one continuous
stream as Megatron's samplers do and no sample is lost at an epoch boundary (over E epochs every
sample is trained E times but those the last epoch carries; an epoch of a step or two may carry
some carried samples again, see the README). Epoch ``e``'s plan therefore
depends on the carry out of epoch ``e - 1``: the sampler keeps the carry of each epoch it
planned, ``state_dict()`` records the current epoch's carry (``"carry"``) and
``load_state_dict()`` restores it, so a resumed run yields exactly the uninterrupted run's
batches. ``set_epoch(e)`` to an epoch whose carry is not known (a jump forward, or a sampler
built with ``epoch=e``) plans the chain from the latest epoch before ``e`` whose carry is known
(else from epoch 0, which carries nothing in): one extra plan per skipped epoch, deterministic.
The chain is planned for this world size and ``accum``; resuming a carried run into another
world size is refused (:class:`StateMismatch`).
"""

import hashlib
import logging
import math
import operator
import os
import struct
import sys
import warnings

from .arrays import PlanLists, decode_u32
from .client import Client, check_progress, u32_array, u32_values
from .errors import InvalidParams, OmnibalError, RankWarning, SidecarExited, StateMismatch, UnknownHandle

_log = logging.getLogger("omnibal")

STATE_FORMAT = "omnibal.sampler-state/1"
_OPTION_KEYS = {"strategy": "strategy", "tail": "tail", "max_vision": "maxVision", "max_text": "maxText",
                "cost_a": "costA", "cost_b": "costB"}


def _distributed():
    """(rank, world size) of an initialised ``torch.distributed`` group, else None (torch is not
    imported for that: only looked at when the program already imported it)."""
    dist = sys.modules.get("torch.distributed")
    if dist is None:
        return None
    try:
        if dist.is_available() and dist.is_initialized():
            return dist.get_rank(), dist.get_world_size()
    except Exception:  # noqa: BLE001 - a broken torch install is not our error to raise
        return None
    return None


def _env_int(name):
    """An integer environment variable (None when unset or empty); a malformed one is an
    :class:`InvalidParams` error naming it, never a bare ValueError."""
    raw = os.environ.get(name, "")
    if not raw.strip():
        return None
    try:
        value = int(raw)
    except ValueError:
        value = -1
    if value < 0:
        raise InvalidParams("%s=%r is not a non-negative integer (torchrun sets it; unset it or fix it)" % (name, raw), code="ERR_OMNIBAL_INVALID_OPTIONS")
    return value


def _rank_arg(name, value, least):
    """``value`` of the ``rank``/``world_size`` argument as an int (None stays None; an integer
    type such as numpy's is taken through ``__index__``); not an integer is
    ``ERR_OMNIBAL_INVALID_TYPE``, below ``least`` ``ERR_OMNIBAL_OUT_OF_RANGE``."""
    if value is None:
        return None
    try:
        if isinstance(value, bool):
            raise TypeError
        number = operator.index(value)
    except TypeError:
        raise InvalidParams("%s must be an integer, got %r" % (name, value), code="ERR_OMNIBAL_INVALID_TYPE") from None
    if number < least:
        raise InvalidParams("%s must be an integer >= %d, got %r" % (name, least, value), code="ERR_OMNIBAL_OUT_OF_RANGE")
    return number


def _warn_rank(message):
    warnings.warn("omnibal: %s" % message, RankWarning, stacklevel=4)


def _resolve_ranks(rank, world_size):
    """(rank, world size) as PyTorch's ``DistributedSampler`` takes them: a ``rank`` and
    ``world_size`` given are used as given (checked for type and ``0 <= rank < world_size``);
    the initialised process group (else torchrun's ``RANK``/``WORLD_SIZE``) only supplies the
    ones not given. A world size above one without a rank (or a rank without a world size) that
    nothing supplies is an error naming both, never a silent rank 0 that would give every
    process the same shard. Explicit values that look like a mistake against the group (another
    process's rank at the group's size, a world size that does not divide it) are taken with a
    :class:`RankWarning`."""
    world_size = _rank_arg("world_size", world_size, 1)
    rank = _rank_arg("rank", rank, 0)
    group = _distributed()
    if group is not None:
        g_rank, g_world = group
        if world_size is None and rank is None:
            return g_rank, g_world
        given_world = world_size is not None
        if world_size is None:
            world_size = g_world
        if rank is None and world_size == 1:
            rank = 0  # one data-parallel rank (tensor or pipeline parallelism only): one shard
        if rank is None:
            if world_size != g_world:
                raise InvalidParams("world_size=%d differs from the process group's %d: pass rank= too (your data-parallel rank)" % (world_size, g_world), code="ERR_OMNIBAL_OUT_OF_RANGE")
            rank = g_rank
        elif world_size == g_world and rank != g_rank and 0 <= rank < world_size:
            _warn_rank("rank=%d differs from this process's rank %d in the process group of %d: unless the ranks are remapped on purpose, "
                       "two processes train rank %d's shard" % (rank, g_rank, g_world, rank))
        if given_world and (world_size > g_world or g_world % world_size != 0):
            _warn_rank("world_size=%d is not a data-parallel size of the initialised process group of %d processes (it does not divide it)" % (world_size, g_world))
    else:
        env_world, env_rank = _env_int("WORLD_SIZE"), _env_int("RANK")
        if env_world is not None and env_rank is not None and env_rank >= env_world:
            raise InvalidParams("RANK=%d is not below WORLD_SIZE=%d" % (env_rank, env_world), code="ERR_OMNIBAL_OUT_OF_RANGE")
        if world_size is None and rank is None:
            if env_world not in (None, 1):
                raise InvalidParams("WORLD_SIZE=%s is set but torch.distributed is not initialised: call init_process_group before building the sampler, or pass rank= and world_size=" % env_world,
                                    code="ERR_OMNIBAL_INVALID_OPTIONS")
            return 0, 1
        if rank is None:
            if world_size == 1:
                rank = 0
            elif env_rank is not None and env_world == world_size:
                rank = env_rank
            else:
                raise InvalidParams("world_size=%d given without rank (and no initialised process group%s): pass rank= too, or every process would train rank 0's shard"
                                    % (world_size, "" if env_rank is None else ", and RANK=%d is of WORLD_SIZE=%s, not %d" % (env_rank, env_world, world_size)),
                                    code="ERR_OMNIBAL_INVALID_OPTIONS")
        elif world_size is None:
            if env_world is None:
                raise InvalidParams("rank=%d given without world_size (and no initialised process group, no WORLD_SIZE): pass world_size= too" % rank, code="ERR_OMNIBAL_INVALID_OPTIONS")
            world_size = env_world
        if env_world is not None and (world_size > env_world or env_world % world_size != 0):
            _warn_rank("world_size=%d is not a data-parallel size of the job's WORLD_SIZE=%d (it does not divide it)" % (world_size, env_world))
        if env_rank is not None and world_size == env_world and rank != env_rank and 0 <= rank < world_size:
            _warn_rank("rank=%d differs from RANK=%d (of WORLD_SIZE=%d): unless the ranks are remapped on purpose, two processes train rank %d's shard"
                       % (rank, env_rank, env_world, rank))
    if not 0 <= rank < world_size:
        raise InvalidParams("rank must be in 0..world_size - 1 (%d), got %d" % (world_size - 1, rank), code="ERR_OMNIBAL_OUT_OF_RANGE")
    return rank, world_size


def even_rank_batches(steps, rank, dp, last_step, even):
    """One rank's micro-batches (flattened over steps) with equal counts on every rank.

    ``steps`` is ``planForRank``'s answer (nested lists, or a :class:`PlanLists` of the base64
    answer: the result is then a lazy :class:`MicroBatches`); ``last_step`` is ``planStep`` of the last step (only
    needed when that step is partial, ``tail='keep-partial'``, where the sidecar deals the
    remaining micro-batches round-robin so ranks can differ by one). ``even='pad'`` fills a
    short rank with copies of micro-batches of the last step (as ``DistributedSampler`` pads
    with repeated samples); ``even='drop'`` cuts every rank to the shortest (those samples are
    then not trained this epoch).
    """
    if not len(steps):
        return []
    if isinstance(steps, PlanLists):
        flat = steps.micro_batches(0, len(steps) - 1)
    else:
        flat = [mb for step in steps[:-1] for mb in step]
    last = list(steps[-1])
    if isinstance(last_step, PlanLists):
        last_step = last_step.tolist()
    if last_step is not None:
        rest = [last_step[j % dp][j // dp] for j in range(sum(len(r) for r in last_step))]
        top = -(-len(rest) // dp)
        low = len(rest) // dp
        if even == "drop":
            last = last[:low]
        else:
            for p in range(len(last), top):
                last.append(rest[(p * dp + rank) % len(rest)])
    return flat + last


def _check_state(state):
    """Raises :class:`StateMismatch` naming the first malformed member of a state (a damaged or
    edited checkpoint) instead of a KeyError, a ZeroDivisionError or a silent resume at a
    position the state cannot mean."""
    def natural(v, least):
        return isinstance(v, int) and not isinstance(v, bool) and v >= least

    def bad(member, want):
        return StateMismatch("malformed sampler state: %s must be %s, got %r" % (member, want, state.get(member) if member in state else "(missing)"),
                             code="ERR_OMNIBAL_STATE_MISMATCH")
    if not isinstance(state.get("fingerprint"), str):
        raise bad("fingerprint", "a string")
    if not isinstance(state.get("options"), dict):
        raise bad("options", "an object")
    if not natural(state.get("epoch"), 0):
        raise bad("epoch", "an integer >= 0")
    segments = state.get("segments")
    if (not isinstance(segments, (list, tuple)) or not segments
            or not all(isinstance(g, (list, tuple)) and len(g) == 3 and natural(g[0], 1) and natural(g[1], 1) and natural(g[2], 0) for g in segments)):
        raise bad("segments", "a non-empty list of [world_size >= 1, accum >= 1, consumed micro-batches >= 0]")


class BalancedBatchSampler:
    """Balanced micro-batches for one data-parallel rank.

    Give the samples as ``source`` or ``lengths=`` (a sequence of ``(vision, text)`` pairs:
    image tiles and LLM tokens per sample) or ``path=`` (a length file, or a list of them, that
    the sidecar reads: the reference JSON list, JSON Lines or CSV); a string or path-like
    ``source`` is a path. Everything else is keyword-only.

    ``rank``/``world_size`` default to those of an initialised ``torch.distributed`` process
    group (pass both for a data-parallel group that is not the whole job), else 0/1; without a
    group, a ``world_size`` above 1 needs ``rank`` (or torchrun's ``RANK`` of that
    ``WORLD_SIZE``), never a silent rank 0. As with ``DistributedSampler``, a ``rank`` and
    ``world_size`` given are used as given: an integer ``0 <= rank < world_size``, else
    :class:`InvalidParams` (``ERR_OMNIBAL_INVALID_TYPE`` or ``ERR_OMNIBAL_OUT_OF_RANGE``);
    another process's rank at the group's size, or a world size that does not divide the group,
    only warns (:class:`RankWarning`: two processes may then train one shard). Planning
    options: ``strategy`` (default ``balanced``), ``tail`` (``drop`` default, ``pad``,
    ``keep-partial``, ``carry``: each epoch's tail planned in the next, see the module's notes), ``max_vision``, ``max_text``, ``cost_a``, ``cost_b``,
    ``samples_per_pack``. ``even`` (``pad`` default, or ``drop``) makes ``keep-partial``'s last
    step equal on every rank (see :func:`even_rank_batches`): every rank always yields the same
    number of batches, so DDP never waits on a rank that ran out.

    ``sidecar``: ``"own"`` starts a private sidecar, ``"node"`` shares one per node over a Unix
    socket (:meth:`Client.node_shared`), ``"auto"`` (default) is ``"node"`` under ``torchrun``
    with several local ranks (``LOCAL_WORLD_SIZE`` > 1), else ``"own"``; or pass a ``client``.
    ``progress(done, total)`` receives the planner's progress; an exception it raises cancels
    the planning call and is raised to the caller of ``iter()``/``len()`` (see
    :meth:`Client.wait`); the next pass plans again.
    """

    def __init__(self, source=None, *, lengths=None, path=None, rank=None, world_size=None, accum=1, seed=0, epoch=0,
                 samples_per_pack=4.5, client=None, sidecar="auto", even="pad", progress=None, **options):
        if source is not None:
            if lengths is not None or path is not None:
                raise TypeError("BalancedBatchSampler: give the samples once (source, lengths= or path=)")
            if isinstance(source, (str, bytes, os.PathLike)):
                path = source
            else:
                lengths = source
        if (lengths is None) == (path is None):
            raise InvalidParams("give exactly one of lengths or path", code="ERR_OMNIBAL_INVALID_OPTIONS")
        unknown = sorted(set(options) - set(_OPTION_KEYS))
        if unknown:
            raise TypeError("BalancedBatchSampler got unknown option(s) %s; known: %s" % (", ".join(unknown), ", ".join(sorted(_OPTION_KEYS) + ["samples_per_pack", "even"])))
        if even not in ("pad", "drop"):
            raise InvalidParams("even must be 'pad' or 'drop', got %r" % (even,), code="ERR_OMNIBAL_UNKNOWN_OPTION")
        for name, value in (("accum", accum), ("seed", seed), ("epoch", epoch)):
            if isinstance(value, bool) or not isinstance(value, int) or value < (1 if name == "accum" else 0):
                raise InvalidParams("%s must be an integer >= %d, got %r" % (name, 1 if name == "accum" else 0, value), code="ERR_OMNIBAL_OUT_OF_RANGE")
        for name, value in [("samples_per_pack", samples_per_pack)] + sorted(options.items()):
            if name != "strategy" and name != "tail" and (isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value)):
                raise InvalidParams("%s must be a finite number, got %r" % (name, value), code="ERR_OMNIBAL_INVALID_TYPE")
        self.rank, self.world_size = _resolve_ranks(rank, world_size)
        self.accum = accum
        self.seed = seed
        self.epoch = epoch
        self.even = even
        check_progress(progress)
        self.progress = progress
        self._vision = self._text = None
        if lengths is not None:
            pairs = lengths if isinstance(lengths, (list, tuple)) else list(lengths)
            try:
                self._vision = u32_values([v for v, _ in pairs])
                self._text = u32_values([t for _, t in pairs])
            except (TypeError, ValueError):
                bad = next(i for i, p in enumerate(pairs) if not isinstance(p, (list, tuple)) or len(p) != 2)
                raise InvalidParams("lengths[%d] must be a (vision, text) pair, got %r" % (bad, pairs[bad]), code="ERR_OMNIBAL_INVALID_SAMPLE") from None
            # Sent as binary attachments: raw bytes after the request line (no base64).
            self._source = {"vision": self._vision, "text": self._text}
            self._paths = None
        else:
            paths = [os.fspath(p) for p in path] if isinstance(path, (list, tuple)) else [os.fspath(path)]
            self._paths = [p.decode() if isinstance(p, bytes) else p for p in paths]
            self._source = {"path": self._paths[0]} if len(self._paths) == 1 else {"paths": self._paths}
        self._options = {"strategy": "balanced"}
        self._options.update({_OPTION_KEYS[k]: v for k, v in options.items()})
        if "maxVision" not in self._options:
            self._options["samplesPerPack"] = samples_per_pack
        self._own_client = client is None
        self._sidecar = sidecar
        self._client = client if client is not None else self._start_client(sidecar)
        self._fingerprint = None
        self._position = 0  # micro-batches handed out in this epoch (of the current segment)
        self._batches = None
        self._plan_ids = []
        self._plan_params = {}
        self._counts = None  # per rank, cumulative samples per micro-batch (for consumed_samples)
        self._segments = []  # earlier segments of this epoch: [world_size, accum, micro-batches consumed]
        self._prior_samples = 0  # samples those segments consumed
        self._resume_at = None  # (epoch, position): the next iter() starts there, once
        self._pass_open = None  # a token of the iter() pass that is yielding (len then counts from its start)
        #: Micro-batches of the epoch before the first one the last ``iter()`` yielded (0 unless
        #: it resumed): ``state_dict(consumed=sampler.pass_start + batches_trained_this_pass)``.
        self.pass_start = 0
        self.plan = None
        #: ``tail='carry'``: the samples carried into each epoch whose carry is known (epoch 0: none).
        self._carry_into = {0: []}

    @staticmethod
    def _start_client(sidecar):
        if sidecar == "auto":
            local = _env_int("LOCAL_WORLD_SIZE")
            sidecar = "node" if local is not None and local > 1 and hasattr(os, "fork") else "own"
        if sidecar == "own":
            return Client()
        if sidecar == "node":
            return Client.node_shared()
        if isinstance(sidecar, str) and ("/" in sidecar or sidecar.startswith("unix:")):
            return Client.node_shared(sidecar[5:] if sidecar.startswith("unix:") else sidecar)
        raise InvalidParams("sidecar must be 'auto', 'own', 'node' or a socket path, got %r" % (sidecar,), code="ERR_OMNIBAL_UNKNOWN_OPTION")

    # --- planning -----------------------------------------------------------------------------

    def _carrying(self):
        return self._options.get("tail") == "carry"

    def _carry_in(self, epoch):
        """``tail='carry'``: the samples carried into ``epoch``, planning the chain of epochs
        from the latest one before it whose carry is known (each plan released at once)."""
        start = max(k for k in self._carry_into if k <= epoch)
        carry = self._carry_into[start]
        for k in range(start, epoch):
            self._plan_carried(k, carry)
            carry = self._carry_into[k + 1]
            self._release_plans()
        return carry

    def _plan_carried(self, epoch, carry):
        """``tail='carry'``: plans ``epoch`` with the samples carried into it and records what it
        carries into the next; returns (summary, index map)."""
        summary, idmap = self._plan(None, self.world_size, self.accum, epoch=epoch, carry=carry)
        self._carry_into[epoch + 1] = self._carried_out(summary)
        return summary, idmap

    @staticmethod
    def _carried_out(summary):
        """The samples a plan carries into the next epoch (reason 4, ``carried``), ascending."""
        return [i for i, r in zip(summary["dropped"], summary["droppedReason"]) if r == 4]

    def _plan(self, subset, dp, accum, epoch=None, carry=None):
        """Plans ``subset`` (original indices, ascending; None = every sample) for ``dp`` ranks;
        returns (summary, index map or None). ``carry``: the samples carried into the epoch."""
        params = dict(self._source) if subset is None else {
            "vision": u32_values(self._vision[i] for i in subset), "text": u32_values(self._text[i] for i in subset)}
        params.update(self._options)
        params.update({"dp": dp, "accum": accum, "seed": self.seed, "epoch": self.epoch if epoch is None else epoch, "encoding": "binary"})
        if carry:
            params["carry"] = u32_values(carry)
        summary = self._pack(params)
        self._plan_ids.append(summary["planId"])
        self._plan_params[summary["planId"]] = params
        if subset is not None:  # indices of the original samples, as for a full plan
            summary["dropped"] = [subset[i] for i in summary["dropped"]]
        return summary, subset

    def _call(self, method, params, progress=None):
        """A sidecar call. A sidecar this sampler started (``sidecar=``, no ``client=``) that has
        died is started again, once per call, and the call retried: its plans are deterministic,
        so one asked for by a plan id the new sidecar does not know is made again
        (:meth:`_plan_call`)."""
        try:
            return self._client.call(method, params, progress=progress)
        except SidecarExited as e:
            if self._client is None:
                raise
            if not self._own_client:
                raise SidecarExited("%s; the sampler's client= is yours to restart: make a new Client and a new sampler (load_state_dict resumes where the state was saved)" % e,
                                    code=e.code) from None
            _log.warning("omnibal: the sampler's sidecar ended (%s); starting a new one", e)
            old, self._client = self._client, None
            old.close()
            self._client = self._start_client(self._sidecar)
            return self._client.call(method, params, progress=progress)

    def _pack(self, params):
        """``pack`` with binary answers; the summary's lists decoded (as in a JSON answer)."""
        summary = self._call("pack", params, progress=self.progress)
        if summary.pop("encoding", None) in ("base64", "binary"):
            summary["dropped"] = decode_u32(summary["dropped"]).tolist()
            summary["droppedReason"] = decode_u32(summary["droppedReason"]).tolist()
        return summary

    def _plan_call(self, summary, method, params):
        """Calls a method on a plan; a plan the sidecar no longer holds (evicted from its plan
        store) is made again (plans are deterministic) and the call retried."""
        try:
            return self._call(method, dict(params, planId=summary["planId"]))
        except UnknownHandle:
            params_of_plan = self._plan_params.pop(summary["planId"])
            again = self._pack(params_of_plan)
            self._plan_ids.append(again["planId"])
            self._plan_params[again["planId"]] = params_of_plan
            summary["planId"] = again["planId"]
            return self._call(method, dict(params, planId=again["planId"]))

    def _rank_batches(self, summary, idmap, rank):
        if summary["planId"] is None:
            return []
        dp = summary["dp"]
        steps = PlanLists(self._plan_call(summary, "planForRank", {"rank": rank, "encoding": "binary"}))
        last_step = None
        if len(steps) and summary["microBatches"] != summary["steps"] * dp * summary["accum"]:
            last_step = PlanLists(self._plan_call(summary, "planStep", {"step": summary["steps"] - 1, "encoding": "binary"}))
        batches = even_rank_batches(steps, rank, dp, last_step, self.even)
        if idmap is not None:
            batches = [[idmap[i] for i in mb] for mb in batches]
        return batches

    def _release_plans(self):
        ids, self._plan_ids = self._plan_ids, []
        self._plan_params = {}
        for pid in ids:
            self._client.release(pid)

    def _ensure(self):
        if self._batches is not None:
            return self._batches
        self._release_plans()
        self._counts = None
        subset, prior = None, 0
        for dp, accum, consumed in self._segments:
            # Replays an earlier segment of this epoch: what its ranks consumed is skipped.
            summary, idmap = self._plan(subset, dp, accum)
            done = set()
            for r in range(dp):
                for mb in self._rank_batches(summary, idmap, r)[:consumed]:
                    done.update(mb)
                    prior += len(mb)
            everything = range(len(self._text)) if subset is None else subset
            subset = [i for i in everything if i not in done]
            self._release_plans()
        self._prior_samples = prior
        try:
            if subset is not None and not subset:
                raise OmnibalError("nothing left", code="ERR_OMNIBAL_EMPTY_INPUT")
            if self._carrying():
                self.plan, self._idmap = self._plan_carried(self.epoch, self._carry_in(self.epoch))
            else:
                self.plan, self._idmap = self._plan(subset, self.world_size, self.accum)
        except OmnibalError as e:
            # What is left of a resumed epoch is too little for one step of the new ranks
            # (or nothing): the epoch ends here, those samples dropped as a tail.
            if subset is None or e.code not in ("ERR_OMNIBAL_TOO_FEW_SAMPLES", "ERR_OMNIBAL_EMPTY_INPUT"):
                raise
            self.plan = {"planId": None, "strategy": self._options["strategy"], "steps": 0, "dp": self.world_size, "accum": self.accum,
                         "microBatches": 0, "dropped": list(subset), "droppedReason": [3] * len(subset)}
            self._idmap = subset
        self._batches = self._rank_batches(self.plan, self._idmap, self.rank)
        return self._batches

    # --- iteration ----------------------------------------------------------------------------

    def set_epoch(self, epoch):
        """Selects epoch ``epoch`` (its own order). The next ``iter()`` starts it from the
        beginning, unless ``load_state_dict`` just restored a position in this same epoch.
        With ``tail='carry'``, an epoch whose carry is not known yet is planned from the chain
        of epochs before it (see the module's notes)."""
        if isinstance(epoch, bool) or not isinstance(epoch, int) or epoch < 0:
            raise InvalidParams("epoch must be a non-negative integer, got %r" % (epoch,), code="ERR_OMNIBAL_OUT_OF_RANGE")
        if epoch != self.epoch:
            self.epoch = epoch
            self._batches = None
            if self._resume_at is None or self._resume_at[0] != epoch:
                self._resume_at = None
                if self._segments:
                    self._segments = []
        self._position = 0
        self._pass_open = None

    def __iter__(self):
        batches = self._ensure()
        start = 0
        if self._resume_at is not None and self._resume_at[0] == self.epoch:
            start = self._resume_at[1]
            if start > len(batches):
                self._resume_at = None
                raise StateMismatch("the state says %d micro-batches of epoch %d were consumed, but this rank's epoch has only %d: a state of another run"
                                    % (start, self.epoch, len(batches)), code="ERR_OMNIBAL_STATE_MISMATCH")
        self._resume_at = None
        self._position = self.pass_start = start
        self._pass_open = me = object()
        try:
            for k in range(start, len(batches)):
                self._position = k + 1
                yield list(batches[k])
        finally:
            if self._pass_open is me:
                self._pass_open = None

    def __len__(self):
        """Micro-batches this rank's pass over the current epoch yields (the same on every rank):
        what ``DataLoader`` takes for the epoch's length.

        After :meth:`load_state_dict` it counts only the rest of the resumed epoch (what the
        resumed pass yields, also while it runs); after that pass, a whole epoch. It can differ
        between epochs by a few micro-batches: each epoch's samples are drawn in another order
        and packed again, and the packs that fill a step vary with it (a ``DistributedSampler``
        keeps its length because it deals samples, not packs; a constant here would mean padding
        to a count no plan bounds, or cutting longer epochs and losing their samples). Call
        :meth:`set_epoch` before reading it (as before iterating): it is then the length of the
        epoch about to run."""
        batches = self._ensure()
        if self._resume_at is not None and self._resume_at[0] == self.epoch:
            return max(len(batches) - self._resume_at[1], 0)
        return len(batches) - (self.pass_start if self._pass_open is not None else 0)

    def steps(self):
        """Steps in the epoch's plan (each ``accum`` micro-batches per rank)."""
        self._ensure()
        return self.plan["steps"]

    # --- state --------------------------------------------------------------------------------

    def fingerprint(self):
        """A SHA-256 of the samples (their lengths, or the length files' bytes)."""
        if self._fingerprint is None:
            h = hashlib.sha256()
            if self._paths is None:
                h.update(b"lengths\0")
                h.update(struct.pack("<I", len(self._text)))
                # The base64 of the little-endian bytes, as the fingerprint has always been made.
                h.update(u32_array(self._vision)["$base64"].encode())
                h.update(u32_array(self._text)["$base64"].encode())
            else:
                for p in self._paths:
                    h.update(b"file\0")
                    with open(p, "rb") as fh:
                        for block in iter(lambda: fh.read(1 << 20), b""):
                            h.update(block)
            self._fingerprint = "sha256:" + h.hexdigest()
        return self._fingerprint

    def _options_state(self):
        o = dict(self._options)
        o.update({"seed": self.seed, "even": self.even})
        return o

    def _consumed_samples(self, consumed):
        if consumed == 0:
            return self._prior_samples
        if self._counts is None:
            counts = []
            for r in range(self.world_size):
                mine = self._batches if r == self.rank else self._rank_batches(self.plan, self._idmap, r)
                cum, total = [0], 0
                for mb in mine:
                    total += len(mb)
                    cum.append(total)
                counts.append(cum)
            self._counts = counts
        return self._prior_samples + sum(c[min(consumed, len(c) - 1)] for c in self._counts)

    def state_dict(self, consumed=None):
        """Where the sampler is: enough to resume exactly, in this or another world size.

        ``consumed`` is the micro-batches your loop has trained on this epoch (default: those
        handed out; a ``DataLoader`` with workers fetches some ahead, so pass it). The first
        call in an epoch asks the sidecar for the other ranks' shares, to count
        ``consumed_samples`` over all ranks.
        """
        self._ensure()
        position = self._position if consumed is None else consumed
        if isinstance(position, bool) or not isinstance(position, int) or not 0 <= position <= len(self._batches):
            raise InvalidParams("consumed must be in 0..%d micro-batches, got %r" % (len(self._batches), consumed), code="ERR_OMNIBAL_OUT_OF_RANGE")
        state = {
            "format": STATE_FORMAT,
            "epoch": self.epoch,
            "world_size": self.world_size,
            "accum": self.accum,
            "consumed_micro_batches": position,
            "consumed_samples": self._consumed_samples(position),
            "segments": [list(s) for s in self._segments] + [[self.world_size, self.accum, position]],
            "fingerprint": self.fingerprint(),
            "options": self._options_state(),
        }
        if self._carrying():
            # The samples carried into this epoch: its plan depends on them.
            state["carry"] = list(self._carry_in(self.epoch))
        return state

    def load_state_dict(self, state):
        """Resumes from :meth:`state_dict`: the next ``iter()`` (after ``set_epoch`` of the same
        epoch, or none) yields the micro-batch after the last consumed one. Raises
        :class:`StateMismatch` for a state of other data or options, or one it cannot resume
        exactly in this world size."""
        if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
            raise StateMismatch("not an omnibal sampler state (%s expected); states of omnibal < 0.2 cannot be resumed exactly" % STATE_FORMAT, code="ERR_OMNIBAL_STATE_MISMATCH")
        _check_state(state)
        if state["fingerprint"] != self.fingerprint():
            raise StateMismatch("the state was saved for other data (fingerprint %s, these samples have %s)" % (state["fingerprint"], self.fingerprint()), code="ERR_OMNIBAL_STATE_MISMATCH")
        mine = self._options_state()
        diff = sorted(k for k in set(mine) | set(state["options"]) if mine.get(k) != state["options"].get(k))
        if diff:
            raise StateMismatch("the state was saved with other options: %s" % ", ".join("%s %r (now %r)" % (k, state["options"].get(k), mine.get(k)) for k in diff),
                                code="ERR_OMNIBAL_STATE_MISMATCH")
        segments = [list(s) for s in state["segments"]]
        world, accum, consumed = segments[-1]
        carry = None
        if self._carrying():
            carry = state.get("carry")
            if (not isinstance(carry, list) or not all(isinstance(i, int) and not isinstance(i, bool) and 0 <= i <= 0xFFFFFFFF for i in carry)
                    or len(set(carry)) != len(carry)):
                raise StateMismatch("a tail='carry' state must record the samples carried into its epoch (\"carry\": a list of distinct sample indices)", code="ERR_OMNIBAL_STATE_MISMATCH")
            if (world, accum) != (self.world_size, self.accum) or len(segments) > 1:
                raise StateMismatch("tail='carry' resumes in the world size and accum it was saved with (%d / %d), not %d / %d: the carried chain is planned for them"
                                    % (world, accum, self.world_size, self.accum), code="ERR_OMNIBAL_STATE_MISMATCH")
        if (world, accum) == (self.world_size, self.accum):
            prior, position = segments[:-1], consumed
        else:
            if consumed % accum != 0:
                raise StateMismatch("the state was saved %d micro-batches into a step of %d; resuming into world size %d / accum %d (from %d / %d) needs a state saved at a step boundary"
                                    % (consumed % accum, accum, self.world_size, self.accum, world, accum), code="ERR_OMNIBAL_STATE_MISMATCH")
            if self._vision is None:
                raise StateMismatch("resuming into world size %d / accum %d (saved with %d / %d) re-plans the samples not yet consumed, which needs them as lengths=[(vision, text), ...], not path="
                                    % (self.world_size, self.accum, world, accum), code="ERR_OMNIBAL_STATE_MISMATCH")
            prior, position = segments, 0
        self.epoch = state["epoch"]
        if carry is not None:
            self._carry_into = {0: [], self.epoch: carry}
        self._segments = prior
        self._batches = None
        self._resume_at = (self.epoch, position)
        self._position = position
        self._pass_open = None

    def close(self):
        """Frees this sampler's plans and stops the sidecar it started (an unreferenced sampler's
        sidecar stops when it is collected, or at exit)."""
        if self._client is None:
            return
        try:
            if not self._own_client:
                self._release_plans()
        except OmnibalError:
            pass
        if self._own_client:
            self._client.close()
        self._client = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
