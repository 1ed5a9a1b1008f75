"""Predicting on an active-learning pool through the serving path: each image is sent to the gateway's
``/v1/models/{name}:detect`` by the project's REST client (:class:`~services.client.rest.RestClient`), pinned to the
round's version, ``predict_batch`` requests in flight, so the gateway's batcher groups them as it groups any
clients' requests. TensorFlow-free.

A version the job has just published is only served once the model server has loaded it: the predictor waits for
``GET /v1/models/{name}`` to list it as available. A 503 (queue full, model loading) or an unreachable gateway is
retried (8 tries, half a second apart). Then the error decides how the job fails:

- a refusal that names the request's mistake (a 4xx: a pool image the gateway will not take, a model or version it
  does not know, a parameter out of range) is :class:`~services.errors.InvalidParameter`, with the image and the
  gateway's message;
- the gateway's own trouble (5xx, still overloaded or unreachable, no answer in time) keeps its class
  (``Unavailable``, ``Overloaded``, ``UpstreamError``, ``DeadlineExceeded``): not the user's mistake;
- a wrong or missing API key (401/403) keeps its class too: it is the worker's ``SPOTTER_GATEWAY_API_KEY``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import httpx
from tenacity import (
    RetryError,
    Retrying,
    retry_if_exception_type,
    retry_if_result,
    stop_after_attempt,
    stop_after_delay,
    wait_fixed,
)

from services import errors
from services.client.rest import RestClient
from services.errors import InvalidParameter, Unavailable
from services.jobs.params import ActiveLearningParams
from services.store.datasets.validate import ValidImage
from services.vision.results import Detection

log = logging.getLogger(__name__)

TIMEOUT_S = 60.0
LOAD_WAIT_S = 300.0
"""How long a freshly published version may take to be served."""
SERVED_POLL_S = 1.0
TRIES = 8
TRY_INTERVAL_S = 0.5

_TRANSIENT = (errors.Overloaded, errors.Unavailable)
# The request's fault (4xx): what the job was asked to do cannot be done, and trying again will not help.
_REFUSALS = (
    errors.InvalidInput,
    errors.InvalidParameter,
    errors.NotFound,
    errors.PayloadTooLarge,
    errors.UnsupportedMediaType,
    errors.NotAcceptable,
    errors.Conflict,
)


class GatewayPredictor:
    """``(images, version) -> detections per image``, through a gateway (see the module's text).

    Args:
        url: The gateway.
        api_key: Sent as ``X-API-Key`` when given.
        params: The job's parameters (model, ``candidate_score``, ``predict_batch``).
        transport: An httpx transport for the client (tests).
    """

    def __init__(
        self,
        url: str,
        api_key: str | None,
        params: ActiveLearningParams,
        *,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self._client = RestClient(url, api_key=api_key, timeout=TIMEOUT_S, transport=transport)
        self._model = params.model
        self._min_score = params.candidate_score
        self._in_flight = params.predict_batch

    def __call__(self, images: Sequence[ValidImage], version: int) -> list[list[Detection]]:
        self._wait_served(version)
        with ThreadPoolExecutor(self._in_flight, thread_name_prefix="pool-detect") as workers:
            return list(workers.map(lambda image: self._detect(image, version), images))

    def close(self) -> None:
        self._client.close()

    def _served(self, version: int) -> bool:
        try:
            model = self._client.get_model(self._model)
        except errors.ModelNotFound:
            return False
        return any(v["version"] == version and v["state"] == "AVAILABLE" for v in model["versions"])

    def _wait_served(self, version: int) -> None:
        try:
            Retrying(
                stop=stop_after_delay(LOAD_WAIT_S),
                wait=wait_fixed(SERVED_POLL_S),
                retry=retry_if_result(lambda ok: not ok),
            )(self._served, version)
        except RetryError as exc:
            raise Unavailable(
                f"the gateway does not serve {self._model} version {version} after {LOAD_WAIT_S:.0f} s"
            ) from exc

    def _detect(self, image: ValidImage, version: int) -> list[Detection]:
        try:
            result = Retrying(
                stop=stop_after_attempt(TRIES),
                wait=wait_fixed(TRY_INTERVAL_S),
                retry=retry_if_exception_type(_TRANSIENT),
                reraise=True,
            )(
                self._client.detect,
                image.encoded(),
                model=self._model,
                content_type=f"image/{image.format}",
                version=version,
                min_score=self._min_score,
            )
        except _REFUSALS as err:
            raise InvalidParameter(
                f"the gateway refused {image.filename}: {err.code}: {err.message}",
                details={"image": image.filename, "code": err.code},
            ) from err
        return result.detections


def gateway_predictor(url: str | None, api_key: str | None, params: ActiveLearningParams) -> GatewayPredictor:
    """A predictor through the gateway at ``url`` (the worker's ``SPOTTER_GATEWAY_URL``).

    Raises:
        InvalidParameter: the worker has no gateway URL.
    """
    if not url:
        raise InvalidParameter("predict_via 'gateway' needs the worker's SPOTTER_GATEWAY_URL (or use 'local')")
    return GatewayPredictor(url, api_key, params)
