"""``BalancedBatchSampler``: omnibal's balanced, deterministic micro-batches for a
``torch.utils.data.DataLoader`` (``batch_sampler=``), one rank's share.

Every rank computes the same global plan from the same inputs and seed (a pure function of
them), and takes its own slice, so no collective communication is needed. Each yielded batch is
one micro-batch (a packed sequence's sample indices); a step is ``accum`` consecutive batches.
"""

from .client import Client, u32_array
from .errors import InvalidParams


class BalancedBatchSampler:
    """Balanced micro-batches for rank ``rank`` of ``world_size`` data-parallel ranks.

    Give the samples either as ``lengths`` (a sequence of ``(vision, text)`` pairs: image tiles
    and LLM tokens per sample) or as ``path`` (a length file the sidecar reads: the reference
    JSON list, JSON Lines or CSV). Other keyword arguments go to the planner (``strategy``,
    ``tail``, ``max_vision``, ``max_text``, ``cost_a``, ``cost_b``).
    """

    def __init__(self, lengths=None, path=None, rank=0, world_size=1, accum=1, seed=0, epoch=0,
                 samples_per_pack=4.5, client=None, **options):
        if (lengths is None) == (path is None):
            raise InvalidParams("give exactly one of lengths or path", code="ERR_OMNIBAL_INVALID_OPTIONS")
        if not isinstance(world_size, int) or world_size < 1:
            raise InvalidParams("world_size must be a positive integer", code="ERR_OMNIBAL_OUT_OF_RANGE")
        if not isinstance(rank, int) or not 0 <= rank < world_size:
            raise InvalidParams("rank must be in 0..world_size - 1, got %r" % (rank,), code="ERR_OMNIBAL_OUT_OF_RANGE")
        self.rank = rank
        self.world_size = world_size
        self.accum = accum
        self.seed = seed
        self.epoch = epoch
        self._own_client = client is None
        self._client = client or Client()
        if lengths is not None:
            pairs = list(lengths)
            self._source = {"vision": u32_array(v for v, _ in pairs), "text": u32_array(t for _, t in pairs)}
        else:
            self._source = {"path": str(path)}
        keys = {"max_vision": "maxVision", "max_text": "maxText", "cost_a": "costA", "cost_b": "costB"}
        self._options = {keys.get(k, k): v for k, v in options.items()}
        if "maxVision" not in self._options:
            self._options["samplesPerPack"] = samples_per_pack
        self._position = 0
        self._batches = None
        self.plan = None

    def _params(self):
        p = dict(self._source)
        p.update(self._options)
        p.update({"dp": self.world_size, "accum": self.accum, "seed": self.seed, "epoch": self.epoch})
        return p

    def _ensure(self):
        if self._batches is None:
            self.plan = self._client.call("balance", self._params())
            steps = self._client.call("planForRank", {"planId": self.plan["planId"], "rank": self.rank})
            self._batches = [mb for step in steps for mb in step]
        return self._batches

    def set_epoch(self, epoch):
        """Starts epoch ``epoch``: its own order, from the beginning."""
        if epoch != self.epoch or self._batches is None:
            self.epoch = epoch
            self._batches = None
        self._position = 0

    def __iter__(self):
        batches = self._ensure()
        while self._position < len(batches):
            batch = batches[self._position]
            self._position += 1
            yield list(batch)
        self._position = 0

    def __len__(self):
        return len(self._ensure())

    def steps(self):
        """Steps in the epoch (each ``accum`` micro-batches)."""
        return self._ensure() and self.plan["steps"]

    def state_dict(self, consumed=None):
        """Where the sampler is: enough to resume mid-epoch exactly.

        ``position`` counts micro-batches handed out. A ``DataLoader`` with workers prefetches
        some ahead of the training loop, so pass ``consumed`` (micro-batches your loop has
        trained on this epoch) to save exactly where training is.
        """
        return {"epoch": self.epoch, "position": self._position if consumed is None else consumed, "seed": self.seed}

    def load_state_dict(self, state):
        """Resumes: the next batch is the one after the last yielded before ``state_dict()``."""
        if state.get("seed", self.seed) != self.seed:
            raise InvalidParams("the state was saved with another seed", code="ERR_OMNIBAL_INVALID_OPTIONS")
        self.set_epoch(state["epoch"])
        self._position = state["position"]

    def close(self):
        """Stops the sidecar this sampler started."""
        if self._own_client:
            self._client.close()
