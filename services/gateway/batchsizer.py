"""How big the batches of one key should be, learned from what the upstream's Predict calls cost.

Whether batching pays depends on the hardware behind the model server, not on the gateway: on a GPU a batch of 16
costs about what one image costs, so big batches multiply throughput; on a small CPU a batch of 8 costs nearly 8
images, and two single-image Predicts in flight keep both cores busier than one batched stream (measured in
docs/benchmarks.md). A fixed ``max_batch_size`` is right for one of them and wrong for the other, so the batcher
asks a :class:`BatchSizer` per key for its current limit instead.

The sizer keeps, per size bucket (powers of two up to the most the key allows), an exponentially weighted mean of
the upstream's seconds per image, from Predict calls made while every Predict slot of the key was busy (a saturated
upstream: only then do sizes compete for the same hardware, and only then does the limit matter, since a
work-conserving batcher sends smaller batches anyway when few images wait). It starts at batch 1 and moves one
bucket at a time: it tries a neighbouring size for a few calls, and of two neighbours the bigger is kept only when its
per-image time is lower by ``margin`` (batches grow only while per-image time falls). Learning takes a few dozen
saturated calls, so it is quick exactly where big batches pay (a GPU's calls take milliseconds); starting from the
largest size instead spends them on the slowest batches where batching pays least (measured on this project's busy
2-core machine: a 6 s window at 32 clients still averaged batches of 7.5, against 2 when starting from 1). A step
that moved the limit is followed at once by another in the same direction; once settled, every ``probe_every``
saturated calls it tries a neighbour again (bigger or smaller, in turn), so it follows the upstream when its load or
hardware changes. It never exceeds the configured maximum, so ``max_batch_size`` stays a ceiling.
"""

from __future__ import annotations

from dataclasses import dataclass, field

DEFAULT_MARGIN = 0.1
DEFAULT_SAMPLES = 6
DEFAULT_PROBE_EVERY = 128
DEFAULT_ALPHA = 0.3


def size_buckets(largest: int) -> tuple[int, ...]:
    """1, 2, 4, ... below ``largest``, then ``largest`` itself (so the configured maximum is always a choice)."""
    sizes: list[int] = []
    size = 1
    while size < largest:
        sizes.append(size)
        size *= 2
    return (*sizes, largest)


@dataclass
class _Bucket:
    per_image: float | None = None  # EWMA of upstream seconds per image
    samples: int = 0  # observations since the bucket was last reset for a trial


@dataclass
class BatchSizer:
    """The batch-size limit of one key: the biggest size that still costs the upstream less per image.

    Args:
        largest: The most images per batch (the configured maximum, or the model's fixed batch dimension).
        margin: How much lower (a fraction) a bigger size's per-image time must be to be kept.
        samples: Saturated Predict calls per size before two sizes are compared.
        probe_every: Saturated calls between two tries of a neighbouring size, once settled.
        alpha: Weight of the newest observation in each size's mean.
    """

    largest: int
    margin: float = DEFAULT_MARGIN
    samples: int = DEFAULT_SAMPLES
    probe_every: int = DEFAULT_PROBE_EVERY
    alpha: float = DEFAULT_ALPHA
    sizes: tuple[int, ...] = field(init=False)
    _buckets: list[_Bucket] = field(init=False)
    _level: int = field(init=False, default=0)  # the settled bucket: batch 1 at first
    _trial: int | None = field(init=False, default=None)
    _since_probe: int = field(init=False, default=0)
    _probe_up_next: bool = field(init=False, default=True)
    _momentum: int = field(init=False, default=1)  # +1/-1: the last step moved the limit that way; go on at once

    def __post_init__(self) -> None:
        if self.largest < 1 or self.samples < 1 or self.probe_every < 1 or not 0 < self.alpha <= 1:
            raise ValueError("largest, samples and probe_every must be positive, alpha within (0, 1]")
        if not 0 <= self.margin < 1:
            raise ValueError("the margin must be within [0, 1)")
        self.sizes = size_buckets(self.largest)
        self._buckets = [_Bucket() for _ in self.sizes]

    @property
    def limit(self) -> int:
        """The most images the next batch may carry."""
        return self.sizes[self._trial if self._trial is not None else self._level]

    @property
    def settled(self) -> int:
        """The size it has settled on (the limit between trials)."""
        return self.sizes[self._level]

    def per_image(self, size: int) -> float | None:
        """The current mean seconds per image of the bucket ``size`` falls in (None before any observation)."""
        return self._buckets[self._bucket_of(size)].per_image

    def observe(self, size: int, seconds: float, *, saturated: bool) -> None:
        """Record one successful Predict of ``size`` images that took ``seconds``; only saturated calls count."""
        if not saturated or size < 1 or seconds < 0:
            return
        bucket = self._buckets[self._bucket_of(size)]
        value = seconds / size
        bucket.per_image = (
            value if bucket.per_image is None else bucket.per_image + self.alpha * (value - bucket.per_image)
        )
        bucket.samples += 1
        if self._trial is None:
            self._since_probe += 1
            self._maybe_start_trial()
        elif self._buckets[self._trial].samples >= self.samples:
            self._decide()

    def _bucket_of(self, size: int) -> int:
        """The biggest bucket not above ``size`` (a batch of 5 counts as a batch of 4)."""
        index = 0
        for i, bucket_size in enumerate(self.sizes):
            if bucket_size <= size:
                index = i
        return index

    def _maybe_start_trial(self) -> None:
        if self._buckets[self._level].samples < self.samples:
            return
        up, down = self._level + 1, self._level - 1
        ahead = self._level + self._momentum
        if self._momentum and 0 <= ahead < len(self.sizes):
            chosen = ahead  # the last step paid: try the next one in the same direction now
        elif self._since_probe < self.probe_every:
            return
        elif up < len(self.sizes) and (self._probe_up_next or down < 0):
            chosen = up
        elif down >= 0:
            chosen = down
        else:
            return  # one size only: nothing to choose
        self._probe_up_next = chosen != up
        self._buckets[chosen] = _Bucket()  # a fresh mean: the old one may be from other times
        self._trial = chosen

    def _decide(self) -> None:
        """Compare the trial size with the settled one; the bigger must be cheaper per image by ``margin``."""
        trial = self._trial
        assert trial is not None
        smaller, bigger = sorted((trial, self._level))
        small, big = self._buckets[smaller].per_image, self._buckets[bigger].per_image
        before = self._level
        if small is not None and big is not None:
            self._level = bigger if big < small * (1 - self.margin) else smaller
        self._momentum = (self._level > before) - (self._level < before)
        self._trial = None
        self._since_probe = 0
        # Start the settled size's count afresh, so the next comparison uses its recent cost.
        self._buckets[self._level].samples = 0
