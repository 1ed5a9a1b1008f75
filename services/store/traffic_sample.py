"""A bounded, uniform sample of the canvases a model was really sent, kept in Redis for the next export's warmup.

TensorFlow Serving warms a new version only with the requests in its ``assets.extra/tf_serving_warmup_requests``;
hand-written (synthetic) ones take the graph's code paths with grey pixels, not with what users send. The gateway
therefore keeps, per model, a reservoir of ``k`` letterboxed canvases (Algorithm R: the ``n``-th request replaces a
random slot with probability ``k / n``, so every request seen so far is equally likely to be in the sample), shared
by every gateway process, and the export job writes them into the new version's warmup file.

One Redis hash per model, ``spotter:traffic-sample:<model>``: field ``n`` counts the requests offered, fields
``slot:<i>`` (``0 <= i < k``) hold one canvas each as a serialized ``tensorflow.TensorProto`` (uint8 ``[S, S, 3]``,
raw ``tensor_content``). The hash gets its TTL when it is created and never again, so no canvas stays in Redis
longer than the TTL: then the sample starts over (which also keeps it recent). The request count is taken first
and the canvas is sent only when it is kept, so past the first ``k`` requests most offers cost one small round trip.

Sync Redis, TensorFlow-free: the gateway calls it from a worker thread (:mod:`services.gateway.traffic_sample`),
the export job and the jobs API directly.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import cast

import redis

KEY_PREFIX = "spotter:traffic-sample:"
DEFAULT_TTL_SECONDS = 7 * 24 * 3600
_COUNT = b"n"
_SLOT = "slot:"


def sample_key(model: str) -> str:
    """The Redis key of ``model``'s sample."""
    return f"{KEY_PREFIX}{model}"


def reservoir_slot(n: int, k: int, rng: random.Random) -> int | None:
    """Algorithm R's decision for the ``n``-th item (1-based) of a stream kept in ``k`` slots: the slot it goes to,
    or None when it is not kept."""
    if k < 1 or n < 1:
        return None
    if n <= k:
        return n - 1
    j = rng.randrange(n)
    return j if j < k else None


@dataclass(frozen=True, slots=True)
class TrafficSample:
    """What a model's sample holds: ``count`` requests offered since it (re)started, ``tensors`` the kept canvases
    (serialized TensorProtos, in slot order)."""

    model: str
    count: int
    tensors: list[bytes]


class SampleStore:
    """The samples of every model in one Redis database.

    Args:
        connection: a synchronous Redis client (give it short socket timeouts where a request waits on it).
        ttl_seconds: the life of a sample from its first request; then it starts over.
    """

    def __init__(self, connection: redis.Redis, *, ttl_seconds: int = DEFAULT_TTL_SECONDS) -> None:
        self._redis = connection
        self._ttl = ttl_seconds

    def count(self, model: str) -> int:
        """Count one more request of ``model`` and return the new count (``n`` of Algorithm R).

        Raises:
            redis.RedisError: Redis can't be reached.
        """
        key = sample_key(model)
        pipe = self._redis.pipeline(transaction=True)
        pipe.hincrby(key, _COUNT, 1)
        pipe.expire(key, self._ttl, nx=True)  # only when the sample is new: the TTL bounds a canvas's life
        n, _ = pipe.execute()
        return int(n)

    def put(self, model: str, slot: int, tensor: bytes) -> None:
        """Store ``tensor`` (a serialized TensorProto) in ``slot`` of ``model``'s sample."""
        key = sample_key(model)
        pipe = self._redis.pipeline(transaction=True)
        pipe.hset(key, f"{_SLOT}{slot}", tensor)
        pipe.expire(key, self._ttl, nx=True)  # the sample may have expired since count(): never leave it forever
        pipe.execute()

    def read(self, model: str) -> TrafficSample:
        """``model``'s sample (empty when there is none)."""
        fields = cast(dict[bytes, bytes], self._redis.hgetall(sample_key(model)))  # a client without decode_responses
        slots = sorted(
            (int(name[len(_SLOT) :]), value)
            for name, value in ((f.decode(), v) for f, v in fields.items() if f != _COUNT)
            if name.startswith(_SLOT) and name[len(_SLOT) :].isdigit()
        )
        count = int(fields.get(_COUNT, len(slots)))
        return TrafficSample(model, count, [value for _, value in slots])

    def summary(self, model: str) -> tuple[int, int, int | None]:
        """``(count, kept, seconds to live)`` of ``model``'s sample without reading its canvases."""
        key = sample_key(model)
        pipe = self._redis.pipeline(transaction=False)
        pipe.hget(key, _COUNT)
        pipe.hlen(key)
        pipe.ttl(key)
        count, length, ttl = pipe.execute()
        kept = max(0, int(length) - (count is not None))
        return int(count or kept), kept, (int(ttl) if ttl is not None and int(ttl) >= 0 else None)

    def clear(self, model: str) -> bool:
        """Delete ``model``'s sample; True when there was one."""
        return bool(self._redis.delete(sample_key(model)))

    def close(self) -> None:
        """Close the Redis client."""
        self._redis.close()
