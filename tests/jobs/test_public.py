"""No absolute path of the server in what a job shows: paths under a root become relative, others their last part."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.jobs.public import public, strip_paths

ROOTS = [Path("/srv/spotter/data"), Path("/srv/spotter/models")]


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        (
            "[Errno 36] File name too long: '/srv/spotter/data/uploads/ab/x.zip'",
            "[Errno 36] File name too long: 'uploads/ab/x.zip'",
        ),
        ("no SavedModel in /srv/spotter/models/demo/3.", "no SavedModel in demo/3."),
        ("cannot open /etc/shadow: denied", "cannot open shadow: denied"),
        ("/srv/spotter/database/x is not the data folder", "x is not the data folder"),
        (
            "see http://gateway:8080/v1/models and images/a.jpg, 1/2 done",
            "see http://gateway:8080/v1/models and images/a.jpg, 1/2 done",
        ),
        ("no path here", "no path here"),
    ],
)
def test_strip_paths(text: str, shown: str) -> None:
    assert strip_paths(text, ROOTS) == shown


def test_public_walks_json_and_knows_the_resolved_root(tmp_path: Path) -> None:
    real = tmp_path / "real"
    (real / "jobs").mkdir(parents=True)
    link = tmp_path / "link"
    link.symlink_to(real)
    body = {"dir": str(real / "jobs" / "1"), "log": [str(link / "jobs" / "1" / "log.txt"), 3], "n": None}
    assert public(body, [link]) == {"dir": "jobs/1", "log": ["jobs/1/log.txt", 3], "n": None}
