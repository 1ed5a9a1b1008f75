"""Predicting on an active-learning pool through the serving path: each image is POSTed to the gateway's
``/v1/models/{name}:detect`` (pinned to the round's version), ``predict_batch`` requests in flight, so the gateway's
batcher groups them as it groups any clients' requests. TensorFlow-free.

A version the job has just published is only served once the model server has loaded it: the predictor waits for
``GET /v1/models/{name}`` to list it as available. A 503 or 429 (queue full, model loading) is retried (8 tries,
half a second apart); any other refusal fails the job with the gateway's message.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import httpx
from tenacity import RetryError, Retrying, retry_if_result, stop_after_attempt, stop_after_delay, wait_fixed

from services.errors import InvalidParameter, Unavailable
from services.training.datasets.validate import ValidImage
from services.training.params import ActiveLearningParams
from services.vision.boxes import Box, Detection

log = logging.getLogger(__name__)

TIMEOUT_S = 60.0
LOAD_WAIT_S = 300.0
"""How long a freshly published version may take to be served."""


class GatewayPredictor:
    """``(images, version) -> detections per image``, through a gateway (see the module's text)."""

    def __init__(self, url: str, api_key: str | None, params: ActiveLearningParams) -> None:
        headers = {"X-API-Key": api_key} if api_key else {}
        self._client = httpx.Client(base_url=url.rstrip("/"), headers=headers, timeout=TIMEOUT_S)
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
        answer = self._client.get(f"/v1/models/{self._model}")
        if answer.status_code == 404:
            return False
        answer.raise_for_status()
        return any(v["version"] == version and v["state"] == "AVAILABLE" for v in answer.json()["versions"])

    def _wait_served(self, version: int) -> None:
        try:
            Retrying(
                stop=stop_after_delay(LOAD_WAIT_S), wait=wait_fixed(1.0), retry=retry_if_result(lambda ok: not ok)
            )(self._served, version)
        except RetryError as exc:
            raise Unavailable(
                f"the gateway does not serve {self._model} version {version} after {LOAD_WAIT_S:.0f} s"
            ) from exc

    def _post(self, image: ValidImage, version: int) -> httpx.Response:
        return self._client.post(
            f"/v1/models/{self._model}:detect",
            params={"version": version, "min_score": self._min_score},
            content=image.encoded(),
            headers={"Content-Type": f"image/{image.format}"},
        )

    def _detect(self, image: ValidImage, version: int) -> list[Detection]:
        answer: httpx.Response = Retrying(
            stop=stop_after_attempt(8),
            wait=wait_fixed(0.5),
            retry=retry_if_result(lambda a: a.status_code in (429, 503)),
            retry_error_callback=lambda state: state.outcome.result() if state.outcome else None,
        )(self._post, image, version)
        if answer.status_code != 200:
            message = answer.json().get("error", {}).get("message", answer.text[:200])
            raise InvalidParameter(f"the gateway refused {image.filename}: {answer.status_code} {message}")
        return [
            Detection(d["label"], int(d["class_id"]), float(d["score"]), Box(**d["box"]))
            for d in answer.json()["detections"]
        ]


def gateway_predictor(url: str | None, api_key: str | None, params: ActiveLearningParams) -> GatewayPredictor:
    """A predictor through the gateway at ``url`` (the worker's ``SPOTTER_GATEWAY_URL``).

    Raises:
        InvalidParameter: the worker has no gateway URL.
    """
    if not url:
        raise InvalidParameter("predict_via 'gateway' needs the worker's SPOTTER_GATEWAY_URL (or use 'local')")
    return GatewayPredictor(url, api_key, params)
