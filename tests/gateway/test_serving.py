"""The gateway end to end: real model server, real HTTP, tiny models whose every answer can be predicted."""

from __future__ import annotations

import asyncio
import io
import re
import shutil
import time
from collections.abc import Iterator

import httpx
import numpy as np
import pytest
from PIL import Image

from services.gateway import metrics
from tests.gateway.conftest import TINY_SIZE
from tests.gateway.helpers import RunningGateway, encode, gateway_settings, png_bomb, running_gateway, solid
from tests.support.modelserver import ModelServerHandle
from tests.support.tiny_models import BOXES, LABELS

pytestmark = pytest.mark.integration

MAX_BYTES = 256 * 1024


@pytest.fixture(scope="module")
def gateway(model_server: ModelServerHandle, tiny_models) -> Iterator[RunningGateway]:  # type: ignore[no-untyped-def]
    settings = gateway_settings(
        model_server.grpc_target,
        model_config_file=tiny_models / "models.config",
        model_root=tiny_models / "root",
        max_image_bytes=MAX_BYTES,
        dynamic_input_size=32,
        max_batch_delay_ms=20,
    )
    with running_gateway(settings) as running:
        yield running


@pytest.fixture(scope="module")
def http(gateway: RunningGateway) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=gateway.url, timeout=30) as client:
        yield client


def detect(http: httpx.Client, model: str, body: bytes, query: str = "min_score=0", **headers: str) -> httpx.Response:
    return http.post(
        f"/v1/models/{model}:detect?{query}", content=body, headers={"Content-Type": "image/png", **headers}
    )


def expected_boxes(width: int, height: int) -> list[dict[str, float]]:
    """The tiny detector's fixed boxes, letterboxed back to a ``width`` x ``height`` image."""
    factor = TINY_SIZE / min(TINY_SIZE / width, TINY_SIZE / height)
    return [
        {
            "xmin": min(x0 * factor, width),
            "ymin": min(y0 * factor, height),
            "xmax": min(x1 * factor, width),
            "ymax": min(y1 * factor, height),
        }
        for (y0, x0, y1, x1) in BOXES
    ]


def test_detect_answers_labelled_boxes_in_original_pixels(http: httpx.Client) -> None:
    response = detect(http, "tiny", solid(32, 32))
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["model"], body["version"], body["width"], body["height"]) == ("tiny", 1, 32, 32)
    found = body["detections"]
    assert [d["label"] for d in found] == list(LABELS)  # names from the model's own labels signature
    assert [d["class_id"] for d in found] == [1, 2, 3]
    np.testing.assert_allclose([d["score"] for d in found], [1.0, 0.5, 1 / 3], atol=1e-5)
    for got, want in zip(found, expected_boxes(32, 32), strict=True):
        assert got["box"] == pytest.approx(want, abs=1e-3)
    assert response.headers["X-Request-ID"]


def test_boxes_follow_the_exif_orientation(http: httpx.Client) -> None:
    exif = Image.Exif()
    exif[0x0112] = 6  # stored 64x32, shown rotated: 32 wide, 64 high
    buffer = io.BytesIO()
    Image.new("RGB", (64, 32), "white").save(buffer, format="JPEG", exif=exif)
    body = detect(http, "tiny", buffer.getvalue(), "min_score=0&tile=off", **{"Content-Type": "image/jpeg"}).json()
    assert (body["width"], body["height"]) == (32, 64)
    for got, want in zip(body["detections"], expected_boxes(32, 64), strict=True):
        assert got["box"] == pytest.approx(want, abs=0.5)


def test_multipart_uploads_work(http: httpx.Client) -> None:
    response = http.post(
        "/v1/models/tiny:detect", params={"min_score": 0}, files={"image": ("a.png", solid(32, 32), "image/png")}
    )
    assert response.status_code == 200, response.text
    assert len(response.json()["detections"]) == 3
    missing = http.post("/v1/models/tiny:detect", files={"picture": ("a.png", solid(8, 8), "image/png")})
    assert missing.status_code == 400
    assert "image" in missing.json()["error"]["message"]


def test_min_score_and_max_detections(http: httpx.Client) -> None:
    found = detect(http, "tiny", solid(32, 32), "min_score=0.4").json()["detections"]
    assert [d["label"] for d in found] == ["circle", "square"]
    found = detect(http, "tiny", solid(32, 32), "min_score=0&max_detections=1").json()["detections"]
    assert [d["label"] for d in found] == ["circle"]


def test_versions_and_labels_select_what_serves(http: httpx.Client) -> None:
    assert detect(http, "tiny", solid(8, 8), "version=1").json()["version"] == 1
    assert detect(http, "tiny", solid(8, 8), "label=stable").json()["version"] == 1
    for query, code in [("version=9", "model_not_found"), ("label=nope", "model_not_found")]:
        response = detect(http, "tiny", solid(8, 8), query)
        assert response.status_code == 404, query
        assert response.json()["error"]["code"] == code
    unknown = detect(http, "no-such-model", solid(8, 8))
    assert unknown.status_code == 404
    assert "no-such-model" in unknown.json()["error"]["message"]


def test_classify_answers_the_top_labels(http: httpx.Client) -> None:
    response = http.post("/v1/models/cls:classify?top_k=2", content=solid(8, 8), headers={"Content-Type": "image/png"})
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["model"], body["version"]) == ("cls", 1)
    # softmax((k + 1) * mean) with mean 1: the last class first.
    assert [(p["label"], p["class_id"]) for p in body["predictions"]] == [("class3", 3), ("class2", 2)]
    assert body["predictions"][0]["score"] > body["predictions"][1]["score"]


def test_the_wrong_endpoint_for_the_kind_says_which_fits(http: httpx.Client) -> None:
    response = detect(http, "cls", solid(8, 8))
    assert response.status_code == 422
    assert ":classify" in response.json()["error"]["message"]
    response = http.post("/v1/models/tiny:classify", content=solid(8, 8), headers={"Content-Type": "image/png"})
    assert response.status_code == 422
    assert ":detect" in response.json()["error"]["message"]


def test_a_model_without_labels_uses_its_label_map(http: httpx.Client) -> None:
    response = detect(http, "odapi", solid(40, 20))
    assert response.status_code == 200, response.text
    body = response.json()
    assert [d["label"] for d in body["detections"]][:1] == ["ball"]
    assert {d["label"] for d in body["detections"]} <= {"ball", "box", "cone"}
    assert (body["width"], body["height"]) == (40, 20)


def test_models_are_listed_with_kind_size_and_labels(http: httpx.Client) -> None:
    models = {m["name"]: m for m in http.get("/v1/models").json()["models"]}
    assert {"tiny", "cls", "odapi", "fresh"} <= set(models)
    tiny = http.get("/v1/models/tiny").json()
    assert tiny["version_labels"] == {"stable": 1}
    [version] = tiny["versions"]
    assert (version["version"], version["state"], version["kind"], version["input_size"]) == (
        1,
        "AVAILABLE",
        "detector",
        TINY_SIZE,
    )
    assert [label["name"] for label in version["labels"]] == list(LABELS)
    assert models["cls"]["versions"][0]["kind"] == "classifier"
    assert models["odapi"]["versions"][0]["input_size"] == 32  # its input size is open: the configured canvas
    assert http.get("/v1/models/nothing").status_code == 404


@pytest.mark.parametrize("accept", ["image/jpeg", "image/png", "image/*;q=0.5, image/png"])
def test_annotate_answers_a_drawn_image_of_the_input_size(http: httpx.Client, accept: str) -> None:
    response = http.post(
        "/v1/models/tiny:annotate?min_score=0",
        content=solid(48, 30, value=200),
        headers={"Content-Type": "image/png", "Accept": accept},
    )
    assert response.status_code == 200, response.text
    wanted = "image/jpeg" if accept == "image/jpeg" else "image/png"
    assert response.headers["content-type"] == wanted
    drawn = Image.open(io.BytesIO(response.content))
    assert drawn.format == ("JPEG" if wanted == "image/jpeg" else "PNG")
    assert drawn.size == (48, 30)
    assert np.asarray(drawn.convert("RGB")).std() > 0  # something was drawn on the flat grey


def test_annotate_refuses_an_accept_it_cannot_answer(http: httpx.Client) -> None:
    response = http.post(
        "/v1/models/tiny:annotate", content=solid(8, 8), headers={"Content-Type": "image/png", "Accept": "text/html"}
    )
    assert response.status_code == 406
    assert response.json()["error"]["code"] == "not_acceptable"


def _truncated_jpeg() -> bytes:
    data = encode(np.random.default_rng(1).integers(0, 256, (64, 64, 3), dtype=np.uint8), "JPEG")
    return data[: len(data) // 2]


@pytest.mark.parametrize(
    ("body", "content_type", "status", "code"),
    [
        (b"", "image/png", 400, "invalid_input"),
        (b"hello, this is not an image", "application/octet-stream", 400, "invalid_input"),
        (_truncated_jpeg(), "image/jpeg", 400, "invalid_input"),
        (b"some text", "text/plain", 415, "unsupported_media_type"),
        (b"GIF89a" + b"\0" * 32, "image/gif", 415, "unsupported_media_type"),
        (png_bomb(), "image/png", 413, "payload_too_large"),
        (b"\xff" * (MAX_BYTES + 1), "image/jpeg", 413, "payload_too_large"),
    ],
    ids=["empty", "not-an-image", "truncated-jpeg", "text-plain", "gif", "pixel-bomb", "too-many-bytes"],
)
def test_bad_input_gets_its_status(http: httpx.Client, body: bytes, content_type: str, status: int, code: str) -> None:
    response = http.post("/v1/models/tiny:detect", content=body, headers={"Content-Type": content_type})
    assert response.status_code == status, response.text
    assert response.json()["error"]["code"] == code


def test_a_chunked_body_cannot_pass_the_byte_limit(http: httpx.Client) -> None:
    def chunks() -> Iterator[bytes]:
        for _ in range(MAX_BYTES // 4096 + 2):
            yield b"\xff" * 4096

    response = http.post("/v1/models/tiny:detect", content=chunks(), headers={"Content-Type": "image/jpeg"})
    assert response.status_code == 413


def test_large_images_are_tiled_and_merged(http: httpx.Client) -> None:
    before = metrics.TILED_IMAGES.labels("tiny")._value.get()
    response = detect(http, "tiny", solid(200, 120), "min_score=0&tile=on&max_detections=1000")
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["width"], body["height"]) == (200, 120)
    assert metrics.TILED_IMAGES.labels("tiny")._value.get() == before + 1
    for d in body["detections"]:
        box = d["box"]
        assert 0 <= box["xmin"] < box["xmax"] <= 200 and 0 <= box["ymin"] < box["ymax"] <= 120
    # Each tile finds the three fixed boxes at its own place: many more than the whole image's three.
    assert len(body["detections"]) > 3
    off = detect(http, "tiny", solid(200, 120), "min_score=0&tile=off").json()
    assert len(off["detections"]) == 3


def predict_calls(model_server: ModelServerHandle, model: str) -> int:
    pattern = rf'^:tensorflow:serving:request_count\{{model_name="{model}",status="OK"\}} (\d+)'
    return sum(int(m.group(1)) for m in re.finditer(pattern, model_server.metrics(), re.MULTILINE))


def test_concurrent_requests_share_predict_calls(gateway: RunningGateway, model_server: ModelServerHandle) -> None:
    images = [solid(24 + i % 5 * 8, 16 + i % 3 * 8, value=40 + i) for i in range(64)]  # several sizes
    batch_count = metrics.BATCH_SIZE.labels("tiny", "1")

    async def send_all() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=gateway.url, timeout=60) as client:
            return await asyncio.gather(
                *(
                    client.post(
                        "/v1/models/tiny:detect?min_score=0&tile=off",
                        content=body,
                        headers={"Content-Type": "image/png"},
                    )
                    for body in images
                )
            )

    before_calls = predict_calls(model_server, "tiny")
    before_batches = _count(batch_count)
    responses = asyncio.run(send_all())
    assert [r.status_code for r in responses] == [200] * 64
    calls = predict_calls(model_server, "tiny") - before_calls
    batches = _count(batch_count) - before_batches
    assert 0 < calls < 64, f"64 requests took {calls} Predict calls"
    assert batches == calls
    for response, body in zip(responses, images, strict=True):
        width, height = Image.open(io.BytesIO(body)).size
        assert (response.json()["width"], response.json()["height"]) == (width, height)


def _count(histogram: object) -> float:
    return next(s.value for m in histogram.collect() for s in m.samples if s.name.endswith("_count"))  # type: ignore[attr-defined]


def test_a_new_version_is_served_within_ten_seconds(
    http: httpx.Client,
    tiny_models,
    model_server: ModelServerHandle,  # type: ignore[no-untyped-def]
) -> None:
    assert detect(http, "fresh", solid(16, 16)).json()["version"] == 1
    root = tiny_models / "root" / "fresh"
    shutil.copytree(tiny_models / "staging" / "fresh" / "2", root / ".tmp-2")
    (root / ".tmp-2").rename(root / "2")  # published the way exports are: aside, then renamed in
    seen = []
    end = time.monotonic() + 10
    while time.monotonic() < end:
        body = detect(http, "fresh", solid(16, 16)).json()
        seen.append(body["version"])
        if body["version"] == 2:
            break
        time.sleep(0.2)
    assert seen[-1] == 2, f"versions seen: {seen}\n{model_server.server.log()[-2000:]}"
    assert body["detections"][0]["score"] == pytest.approx(0.5, abs=1e-5)  # version 2 halves the scores
    assert detect(http, "fresh", solid(16, 16), "version=1&min_score=0").json()["detections"][0]["score"] == (
        pytest.approx(1.0, abs=1e-5)
    )


def test_metrics_after_traffic(http: httpx.Client) -> None:
    text = http.get("/metrics").text
    for name in (
        "spotter_request_duration_seconds_bucket",
        "spotter_queue_seconds_bucket",
        "spotter_batch_size_bucket",
        "spotter_upstream_seconds_bucket",
        "spotter_decode_seconds_bucket",
        "spotter_detections_per_image_bucket",
        "spotter_detection_score_bucket",
        "spotter_inflight_requests",
        "spotter_queue_depth",
        "spotter_rejected_requests_total",
        "spotter_tiled_images_total",
        "spotter_model_up",
        "spotter_model_server_up 1.0",
    ):
        assert name in text, name
    assert 'spotter_request_duration_seconds_count{endpoint="detect",model="tiny",status="200",version="1"}' in text
    assert 'model="no-such-model"' not in text  # made-up names are counted as unknown
    # No bad input, nothing at all, was answered 500 (test_errors' deliberate /boom aside: one registry per process).
    assert not [line for line in text.splitlines() if 'status="500"' in line and 'endpoint="boom"' not in line]
    assert 'spotter_rejected_requests_total{model="unknown",reason="model_not_found"}' in text
