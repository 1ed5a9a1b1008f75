"""The page to try a model (``GET /ui``), in a real headless Chromium against a real gateway and model server.

The browser is Debian's ``chromium`` (``scripts/ensure-chromium.sh``, run by ``make test``), driven by Playwright
with ``executable_path``, so nothing is downloaded. What the page shows is checked against the REST API itself:
the listed boxes and the JSON against a direct ``:detect`` with the slider's min_score, the canvas pixels against
the box colours (a drawn box) and the example image's own pixels (a box the slider hides).

``SPOTTER_UI_SCREENSHOT=docs/ui.jpg pytest tests/gateway/test_ui.py`` also saves the screenshot the docs show.
"""

from __future__ import annotations

import itertools
import json
import math
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image
from playwright.sync_api import Browser, Page, sync_playwright

from tests.gateway.helpers import RunningGateway, gateway_settings, running_gateway, solid
from tests.support.modelserver import ModelServerHandle
from tests.support.session_models import DEMO

pytestmark = pytest.mark.integration

CHROMIUM = Path("/usr/bin/chromium")
EXAMPLES = DEMO / "examples"
SCENE = EXAMPLES / "scene-1.png"  # a PNG: the canvas holds its pixels exactly
POSTER = EXAMPLES / "poster.jpg"  # large, small objects: tiling matters
MEDIA_TYPES = {".jpg": "image/jpeg", ".png": "image/png"}
LABEL_WIDTH = 120  # "triangle 1.00" in the page's 12 px font is about 75 px
# Selectors, not JavaScript predicates: the page's Content-Security-Policy forbids eval, Playwright's way of polling.
SETTLED = "body[data-state=done], body[data-state=error]"


@pytest.fixture(scope="module")
def gateway(model_server: ModelServerHandle, tiny_models: Path) -> Iterator[RunningGateway]:
    if not (DEMO / "1" / "saved_model.pb").exists() or not SCENE.exists():
        pytest.fail("models/demo/1 and models/demo/examples/ are missing: run `make demo-model`")
    settings = gateway_settings(model_server.grpc_target, model_config_file=tiny_models / "models.config")
    with running_gateway(settings) as running:
        yield running


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: run scripts/ensure-chromium.sh (make test does)")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM))
        yield launched
        launched.close()


@pytest.fixture
def page(browser: Browser, gateway: RunningGateway) -> Iterator[Page]:
    """The page, opened from the gateway's root and done listing the models. Fails the test if the page asked for
    anything that is not the gateway's own (a CDN, a font, another host)."""
    context = browser.new_context(viewport={"width": 1280, "height": 960})
    opened = context.new_page()
    elsewhere: list[str] = []
    opened.on(
        "request", lambda r: None if r.url.startswith((gateway.url, "blob:", "data:")) else elsewhere.append(r.url)
    )
    errors: list[str] = []
    opened.on("pageerror", lambda e: errors.append(str(e)))
    opened.on("console", lambda m: errors.append(m.text) if "Content Security Policy" in m.text else None)
    opened.goto(f"{gateway.url}/")
    assert opened.url == f"{gateway.url}/ui"
    opened.wait_for_selector("body[data-state=idle]", state="attached")
    yield opened
    context.close()
    assert not elsewhere, f"the page fetched from outside the gateway: {elsewhere}"
    assert not errors, f"script errors or refused by the page's CSP: {errors}"


def settle(page: Page, action: Any) -> str:
    """Run ``action`` (one that makes the page ask the gateway) and wait for the answer; the page's state after."""
    page.evaluate("document.body.dataset.state = 'waiting'")
    action()
    page.wait_for_selector(SETTLED, state="attached")
    return str(page.evaluate("document.body.dataset.state"))


def choose(page: Page, model: str, path: Path) -> None:
    page.select_option("#model", model)
    assert settle(page, lambda: page.set_input_files("#file", str(path))) == "done", page.text_content("#status")


def slide(page: Page, value: float) -> None:
    """Move the min score slider as a user's drag does (value, then an ``input`` event)."""
    page.eval_on_selector(
        "#min-score", "(el, v) => { el.value = v; el.dispatchEvent(new Event('input', {bubbles: true})); }", value
    )


def listed(page: Page) -> list[dict[str, Any]]:
    """The detections the page lists (its data attributes), shaped like the API's."""
    items = page.eval_on_selector_all("#detections li", "items => items.map(i => ({...i.dataset}))")
    return [
        {
            "label": i["label"],
            "class_id": int(i["classId"]),
            "score": float(i["score"]),
            "box": {k: float(i[k]) for k in ("xmin", "ymin", "xmax", "ymax")},
            "color": i["color"],
        }
        for i in items
    ]


def shown_json(page: Page) -> dict[str, Any]:
    return json.loads(page.text_content("#json") or "null")


def call(gateway: RunningGateway, path: Path, verb: str, model: str, **query: Any) -> dict[str, Any]:
    response = httpx.post(
        f"{gateway.url}/v1/models/{model}:{verb}",
        params=query,
        content=path.read_bytes(),
        headers={"Content-Type": MEDIA_TYPES.get(path.suffix, "image/png")},
        timeout=120,
    )
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()
    return answer


def same(shown: Any, answered: Any) -> bool:
    """Whether what the page shows is what the API answered (numbers to float precision, the rest exactly)."""
    if isinstance(shown, dict) and isinstance(answered, dict):
        return shown.keys() == answered.keys() and all(same(shown[k], answered[k]) for k in shown)
    if isinstance(shown, list) and isinstance(answered, list):
        return len(shown) == len(answered) and all(same(a, b) for a, b in zip(shown, answered, strict=True))
    if isinstance(shown, float | int) and isinstance(answered, float | int) and not isinstance(shown, bool):
        return math.isclose(shown, answered, rel_tol=1e-6, abs_tol=1e-6)
    return bool(shown == answered)


def without_color(detections: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: v for k, v in d.items() if k != "color"} for d in detections]


def pixel(page: Page, x: int, y: int) -> tuple[int, int, int]:
    rgba = page.eval_on_selector(
        "#canvas", "(c, [x, y]) => Array.from(c.getContext('2d').getImageData(x, y, 1, 1).data)", [x, y]
    )
    return rgba[0], rgba[1], rgba[2]


def left_edge(detection: dict[str, Any]) -> tuple[int, int]:
    """A pixel the box's stroke covers whole (its left edge, half way down; strokes are at least 2 px wide)."""
    box = detection["box"]
    return math.floor(box["xmin"]), math.floor((box["ymin"] + box["ymax"]) / 2)


def rgb(color: str) -> tuple[int, int, int]:
    return int(color[1:3], 16), int(color[3:5], 16), int(color[5:7], 16)


def clear_of(point: tuple[int, int], detections: list[dict[str, Any]]) -> bool:
    """Whether ``point`` is outside what the page draws for every one of ``detections``: its stroke (a few px either
    side of the box) and its label (a strip above the box's top left, narrower than LABEL_WIDTH px)."""
    x, y = point
    return all(
        not (d["box"]["xmin"] - 4 <= x <= max(d["box"]["xmax"], d["box"]["xmin"] + LABEL_WIDTH) + 4)
        or not (d["box"]["ymin"] - 24 <= y <= d["box"]["ymax"] + 4)
        for d in detections
    )


def test_the_root_redirects_to_the_page_and_serves_only_its_files(gateway: RunningGateway) -> None:
    root = httpx.get(f"{gateway.url}/", timeout=10)
    assert root.status_code == 307 and root.headers["location"] == "ui"
    page = httpx.get(f"{gateway.url}/ui", timeout=10)
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "default-src 'none'" in page.headers["content-security-policy"]
    assert page.headers["x-content-type-options"] == "nosniff"
    script = httpx.get(f"{gateway.url}/ui/app.js", timeout=10)
    assert script.status_code == 200 and script.headers["content-type"].startswith("text/javascript")
    for path in ("/ui/index.html", "/ui/..%2Fapp.py", "/ui/missing.js"):
        missing = httpx.get(f"{gateway.url}{path}", timeout=10)
        assert missing.status_code == 404, path
        assert missing.json()["error"]["code"] == "not_found", path
    assert "/ui" not in httpx.get(f"{gateway.url}/openapi.json", timeout=10).json()["paths"]


def test_the_page_draws_the_boxes_detect_answers(page: Page, gateway: RunningGateway) -> None:
    choose(page, "demo", SCENE)
    assert page.text_content("#min-score-value") == "0.50"
    direct = call(gateway, SCENE, "detect", "demo", min_score=0.5)
    assert direct["detections"], "the demo finds nothing in its own example"
    shown = listed(page)
    assert same(without_color(shown), direct["detections"])
    assert same(shown_json(page), direct)
    assert page.text_content("#request") == "POST v1/models/demo:detect?min_score=0.50&tile=auto"

    image = Image.open(SCENE).convert("RGB")
    canvas = page.eval_on_selector("#canvas", "c => [c.width, c.height]")
    assert canvas == [direct["width"], direct["height"]] == list(image.size)
    best = shown[0]
    assert pixel(page, *left_edge(best)) == rgb(best["color"])
    assert pixel(page, *left_edge(best)) != image.getpixel(left_edge(best)), "the box is drawn over the image"


def widest_gap(scores: list[float]) -> tuple[float, float]:
    """The two neighbouring scores (ascending) furthest apart."""
    ordered = sorted(set(scores))
    return max(itertools.pairwise(ordered), key=lambda pair: pair[1] - pair[0], default=(0.0, 0.0))


def test_the_slider_hides_low_scoring_boxes(page: Page, gateway: RunningGateway) -> None:
    # The demo is sure of most boxes: take the PNG example whose scores leave the widest room for a floor between.
    every = {p: call(gateway, p, "detect", "demo", min_score=0.0)["detections"] for p in sorted(EXAMPLES.glob("*.png"))}
    gaps = {p: widest_gap([d["score"] for d in found]) for p, found in every.items()}
    scene = max(gaps, key=lambda p: gaps[p][1] - gaps[p][0])
    low, high = gaps[scene]
    floor = round((low + high) / 2, 2)
    assert low < floor < high, f"no example has two scores far enough apart for a floor between: {every}"

    choose(page, "demo", scene)
    slide(page, 0.0)
    assert same(without_color(listed(page)), every[scene])
    image = Image.open(scene).convert("RGB")
    drawn = {left_edge(d): pixel(page, *left_edge(d)) for d in listed(page)}

    # The floor between them: the boxes under it go, from the list, the JSON and the canvas.
    slide(page, floor)
    assert page.text_content("#min-score-value") == f"{floor:.2f}"
    direct = call(gateway, scene, "detect", "demo", min_score=floor)
    kept = listed(page)
    assert 0 < len(kept) < len(every[scene])
    assert same(without_color(kept), direct["detections"])
    assert same(shown_json(page)["detections"], direct["detections"])
    assert page.text_content("#request") == f"POST v1/models/demo:detect?min_score={floor:.2f}&tile=auto"
    hidden = [d for d in every[scene] if d["score"] < floor and clear_of(left_edge(d), kept)]
    assert hidden, "no hidden box is clear of the kept ones to look at"
    for d in hidden:
        point = left_edge(d)
        assert drawn[point] != image.getpixel(point), f"the box was not drawn at 0: {d}"
        assert pixel(page, *point) == image.getpixel(point), f"a hidden box is still drawn: {d}"


def test_tiles_on_and_off_ask_the_gateway_again(page: Page, gateway: RunningGateway) -> None:
    choose(page, "demo", POSTER)
    tiled = call(gateway, POSTER, "detect", "demo", min_score=0.5, tile="auto")
    assert same(without_color(listed(page)), tiled["detections"])
    assert settle(page, lambda: page.select_option("#tile", "off")) == "done"
    whole = call(gateway, POSTER, "detect", "demo", min_score=0.5, tile="off")
    assert same(shown_json(page), whole)
    assert len(whole["detections"]) < len(tiled["detections"]), "the poster's small objects need tiles"
    assert page.text_content("#request") == "POST v1/models/demo:detect?min_score=0.50&tile=off"
    if target := os.environ.get("SPOTTER_UI_SCREENSHOT"):
        assert settle(page, lambda: page.select_option("#tile", "auto")) == "done"
        jpeg = Path(target).suffix.lower() in (".jpg", ".jpeg")  # the noisy poster is 700 kB as a PNG
        page.screenshot(path=target, full_page=True, type="jpeg" if jpeg else "png", quality=85 if jpeg else None)


def test_an_image_dropped_on_the_page_is_asked_about(page: Page, gateway: RunningGateway) -> None:
    page.select_option("#model", "demo")
    dropped = page.evaluate_handle(
        """([bytes, name]) => {
            const transfer = new DataTransfer();
            transfer.items.add(new File([new Uint8Array(bytes)], name, {type: "image/png"}));
            return transfer;
        }""",
        [list(SCENE.read_bytes()), SCENE.name],
    )
    assert settle(page, lambda: page.dispatch_event("#drop", "drop", {"dataTransfer": dropped})) == "done"
    assert same(shown_json(page), call(gateway, SCENE, "detect", "demo", min_score=0.5))


def test_a_classifier_shows_its_top_k_bars(page: Page, gateway: RunningGateway, tmp_path: Path) -> None:
    image = tmp_path / "grey.png"
    image.write_bytes(solid(8, 8, 180))
    page.select_option("#model", "cls")
    assert page.is_hidden("#min-score") and page.is_visible("#top-k")
    page.fill("#top-k", "2")
    assert settle(page, lambda: page.set_input_files("#file", str(image))) == "done"
    direct = call(gateway, image, "classify", "cls", top_k=2)
    bars = page.eval_on_selector_all(
        "#top-k-bars li",
        "items => items.map(i => ({label: i.dataset.label, class_id: Number(i.dataset.classId),"
        " score: Number(i.dataset.score), width: i.querySelector('.bar').style.width}))",
    )
    assert same([{k: b[k] for k in ("label", "class_id", "score")} for b in bars], direct["predictions"])
    assert [b["width"] for b in bars] == [f"{100 * p['score']:.1f}%" for p in direct["predictions"]]
    assert same(shown_json(page), direct)


def test_a_refused_upload_shows_the_gateways_reason(page: Page, tmp_path: Path) -> None:
    text = tmp_path / "notes.png"
    text.write_text("not an image at all")
    page.select_option("#model", "demo")
    assert settle(page, lambda: page.set_input_files("#file", str(text))) == "error"
    status = page.text_content("#status") or ""
    assert status.startswith(("400: ", "415: ")), status
    assert page.eval_on_selector_all("#detections li", "items => items.length") == 0
    assert page.text_content("#json") == ""
