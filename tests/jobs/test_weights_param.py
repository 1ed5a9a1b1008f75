"""A train job's ``weights``: ``imagenet``, ``none`` or the name of a file in the data folder's ``weights/`` folder.

Anything path-like is refused by the parameters model itself, before any file is looked at, so the answer is the same
whether or not the path exists on the host: the API is no oracle for the server's files (issue 11, item 6).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from services.gateway.config import GatewaySettings
from services.jobs.params import TrainParams
from tests.jobs.conftest import KEY, queued

TRAIN = {"type": "train", "dataset": "shapes", "input_size": 128, "epochs": 2}


def submit(client: TestClient, weights: str):  # type: ignore[no-untyped-def]
    return client.post("/v1/jobs", json={**TRAIN, "weights": weights}, headers=KEY)


@pytest.mark.parametrize(
    "weights",
    [
        "/etc/shadow",
        "/etc/no-such-file",
        "../weights/backbone.h5",
        "weights/backbone.h5",
        "..",
        ".hidden.h5",
        "~/.keras/models/x.h5",
        "C:\\weights\\x.h5",
        "back\x00bone.h5",
    ],
)
def test_a_path_is_a_422_naming_the_rule_and_nothing_is_queued(
    client: TestClient, settings: GatewaySettings, weights: str
) -> None:
    answer = submit(client, weights)
    assert answer.status_code == 422, answer.text
    error = answer.json()["error"]
    assert error["code"] == "invalid_parameter" and "weights" in error["message"]
    assert "'imagenet', 'none' or the name of a file in the data folder's weights/ folder" in error["message"]
    assert "not found" not in error["message"]  # nothing was looked up
    assert queued(settings.redis_url) == 0


def test_an_existing_host_file_gets_the_same_answer_as_a_missing_one(
    client: TestClient, settings: GatewaySettings, tmp_path: Path
) -> None:
    secret = tmp_path / "secret.h5"
    secret.write_bytes(b"\x89HDF\r\n\x1a\n" + bytes(64))
    there, missing = submit(client, str(secret)), submit(client, str(tmp_path / "absent.h5"))
    assert there.status_code == missing.status_code == 422
    body_there = there.json()["error"]["message"].replace(str(secret), "X")
    body_missing = missing.json()["error"]["message"].replace(str(tmp_path / "absent.h5"), "X")
    assert body_there == body_missing
    assert queued(settings.redis_url) == 0


def test_a_name_in_the_weights_folder_is_taken_and_a_missing_name_is_422(
    client: TestClient, settings: GatewaySettings
) -> None:
    missing = submit(client, "mobilenet_v2_0.35_no_top.h5")
    assert missing.status_code == 422
    assert (
        "'mobilenet_v2_0.35_no_top.h5' is not in the data folder's weights/ folder"
        in missing.json()["error"]["message"]
    )
    assert queued(settings.redis_url) == 0
    folder = settings.data_dir / "weights"
    folder.mkdir()
    (folder / "mobilenet_v2_0.35_no_top.h5").write_bytes(b"\x89HDF\r\n\x1a\n" + bytes(64))
    answer = submit(client, "mobilenet_v2_0.35_no_top.h5")
    assert answer.status_code == 202, answer.text
    assert queued(settings.redis_url) == 1
    for keyword in ("imagenet", "none"):
        assert submit(client, keyword).status_code == 202


def test_the_worker_parses_the_same_rule() -> None:
    """The worker re-parses the queued params with the same model: a body edited in Redis can't name a path."""
    assert TrainParams.model_validate({**TRAIN, "weights": "backbone-v2.h5"}).weights == "backbone-v2.h5"
    with pytest.raises(ValueError, match="not a path"):
        TrainParams.model_validate({**TRAIN, "weights": "/etc/shadow"})
