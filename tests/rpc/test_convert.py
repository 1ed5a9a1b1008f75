"""Messages to the dataplane's requests and back: presence, selectors, enums (known, unknown and unset)."""

from __future__ import annotations

import pytest

from services import errors
from services.gateway.catalog import ModelDescription, VersionDescription
from services.gateway.rpc import convert
from services.gen.spotter.v1 import detection_pb2, model_pb2
from services.vision.tiling import ModelViews


def test_unset_optional_fields_are_none_and_set_zeros_are_kept() -> None:
    unset = convert.detect_request(detection_pb2.DetectRequest(model="m"))
    assert (unset.min_score, unset.max_detections, unset.version, unset.label) == (None, None, None, None)
    assert (unset.tile, unset.content_type, unset.data) == ("auto", None, b"")
    zero = convert.detect_request(detection_pb2.DetectRequest(model="m", min_score=0.0, version=0))
    assert (zero.min_score, zero.version) == (0.0, 0)  # the dataplane says what is wrong with version 0
    labelled = convert.classify_request(detection_pb2.ClassifyRequest(model="m", label="stable", top_k=0))
    assert (labelled.label, labelled.version, labelled.top_k) == ("stable", None, 0)


@pytest.mark.parametrize(
    ("tile", "mode"),
    [
        (detection_pb2.TILE_MODE_UNSPECIFIED, "auto"),
        (detection_pb2.TILE_MODE_AUTO, "auto"),
        (detection_pb2.TILE_MODE_ON, "on"),
        (detection_pb2.TILE_MODE_OFF, "off"),
    ],
)
def test_tile_modes(tile: int, mode: str) -> None:
    assert convert.detect_request(detection_pb2.DetectRequest(model="m", tile=tile)).tile == mode  # type: ignore[arg-type]


def test_an_unknown_tile_number_says_which_are_known() -> None:
    with pytest.raises(errors.InvalidParameter, match="TILE_MODE_AUTO, TILE_MODE_ON, TILE_MODE_OFF, not 9"):
        convert.detect_request(detection_pb2.DetectRequest(model="m", tile=9))  # type: ignore[arg-type]


def test_model_descriptions_map_kinds_and_states() -> None:
    message = convert.model_message(
        ModelDescription(
            "m",
            [
                VersionDescription(
                    1, "AVAILABLE", "detector", 320, {2: "b", 1: "a"}, ModelViews("tiles", 256, (14, 40))
                ),
                VersionDescription(2, "AVAILABLE", "unknown", None, {}, ModelViews()),
                VersionDescription(3, "LOADING"),
                VersionDescription(4, "SOMETHING_NEW"),
            ],
            {"stable": 1},
        )
    )
    kinds = [model_pb2.ModelKind.Name(v.kind) for v in message.versions]
    assert kinds == [
        "MODEL_KIND_DETECTOR",
        "MODEL_KIND_UNSUPPORTED",
        "MODEL_KIND_UNSPECIFIED",
        "MODEL_KIND_UNSPECIFIED",
    ]
    states = [model_pb2.VersionState.Name(v.state) for v in message.versions]
    assert states == [
        "VERSION_STATE_AVAILABLE",
        "VERSION_STATE_AVAILABLE",
        "VERSION_STATE_LOADING",
        "VERSION_STATE_UNSPECIFIED",
    ]
    assert [(x.id, x.name) for x in message.versions[0].labels] == [(1, "a"), (2, "b")]
    assert message.versions[0].input_size == 320 and not message.versions[2].HasField("input_size")
    assert dict(message.version_labels) == {"stable": 1}
    first, second = message.versions[0], message.versions[1]
    assert (first.views, first.crop_size, list(first.object_size_px)) == ("tiles", 256, [14.0, 40.0])
    assert (second.views, second.HasField("crop_size"), list(second.object_size_px)) == ("whole", False, [])
    assert not message.versions[2].HasField("views")
