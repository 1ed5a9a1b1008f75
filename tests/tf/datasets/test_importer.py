"""Whole imports: bad input reported in one report with the rest imported; failures leave the data folder as it was."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from services.errors import InvalidInput
from services.store.datasets.annotations import SourceFormat
from services.store.datasets.request import ImportRequest
from services.store.datasets.storage import DatasetStore
from services.training.datasets import tfrecord
from services.training.datasets.importer import Progress, import_dataset
from tests.datasets.fixtures import scenes, tree, write_csv, write_csv_dataset, write_voc_dataset, zip_folder


def test_every_problem_is_reported_and_the_rest_is_imported(tmp_path: Path) -> None:
    items = scenes(seed=12, count=10)
    src = tmp_path / "src"
    rows = write_csv_dataset(src, items)
    (src / "images" / "scene_001.jpg").write_bytes(b"garbage")  # not an image
    (src / "images" / "scene_005.jpg").write_bytes((src / "images" / "scene_005.jpg").read_bytes()[:700])  # truncated
    rows = [[*r[:1], "200", "150", *r[3:]] if r[0] == "scene_003.jpg" else r for r in rows]  # declared size wrong
    rows += [
        rows[0],  # duplicate row
        ["scene_002.jpg", "112", "112", "circle", "90", "90", "115", "116"],  # slightly outside: clipped
        ["scene_002.jpg", "112", "112", "circle", "60", "60", "20", "70"],  # inverted
        ["scene_004.jpg", "112", "112", "circle", "5", "5", "5", "20"],  # zero area
        ["ghost.jpg", "112", "112", "circle", "5", "5", "20", "20"],  # missing image
    ]
    write_csv(src / "labels.csv", rows)
    result = import_dataset(
        ImportRequest(name="messy", format=SourceFormat.CSV, source=zip_folder(src, tmp_path / "messy.zip")),
        DatasetStore(tmp_path / "data"),
    )
    codes = [p.code for p in result.problems.problems]
    expected = ("not_an_image", "unreadable_image", "duplicate_row", "box_clipped", "box_inverted", "size_mismatch")
    for code in (*expected, "box_empty", "missing_image"):
        assert code in codes, code
    assert all(p.file for p in result.problems.problems)
    assert result.manifest.problems == result.problems.to_dict()
    assert sum(c.images for c in result.manifest.counts.values()) == 8  # all but the unreadable ones
    assert result.to_dict()["problems"]["counts"]["error"] >= 4


def test_a_failure_while_writing_leaves_no_version_and_no_temp_folder(tmp_path: Path, monkeypatch) -> None:
    write_voc_dataset(tmp_path / "src", scenes(count=6))
    store = DatasetStore(tmp_path / "data")
    import_dataset(ImportRequest(name="keep", format=SourceFormat.VOC, source=tmp_path / "src"), store)
    before = tree(tmp_path / "data")
    real = tfrecord.build_example
    calls = [0]

    def failing(*args, **kwargs):  # the disk fills up after a few records
        calls[0] += 1
        if calls[0] > 3:
            raise OSError(28, "No space left on device")
        return real(*args, **kwargs)

    monkeypatch.setattr(tfrecord, "build_example", failing)
    for name in ("keep", "new"):
        calls[0] = 0
        with pytest.raises(OSError):
            import_dataset(ImportRequest(name=name, format=SourceFormat.VOC, source=tmp_path / "src"), store)
        assert tree(tmp_path / "data") == before


def test_nothing_usable_is_a_clear_error(tmp_path: Path) -> None:
    src = tmp_path / "src"
    write_csv_dataset(src, scenes(count=2))
    for image in (src / "images").iterdir():
        image.write_bytes(b"no")
    with pytest.raises(InvalidInput) as refused:
        import_dataset(ImportRequest(name="x", format=SourceFormat.CSV, source=src), DatasetStore(tmp_path / "data"))
    assert "no usable images" in refused.value.message
    assert len(refused.value.details["problems"]["problems"]) == 2
    assert not (tmp_path / "data").exists()


def test_progress_goes_through_every_stage_to_100(tmp_path: Path) -> None:
    write_voc_dataset(tmp_path / "src", scenes(count=5))
    seen: list[Progress] = []
    import_dataset(
        ImportRequest(name="p", format=SourceFormat.VOC, source=zip_folder(tmp_path / "src", tmp_path / "a.zip")),
        DatasetStore(tmp_path / "data"),
        seen.append,
    )
    assert seen[0].stage == "extract" and seen[-1].stage == "publish" and seen[-1].percent == 100.0
    assert {p.stage for p in seen} == {"extract", "read", "validate", "write", "publish"}
    percents = [p.percent for p in seen]
    assert percents == sorted(percents)


def test_cli_import_list_show(tmp_path: Path, monkeypatch) -> None:
    from services.cli import app

    write_voc_dataset(tmp_path / "src", scenes(count=8))
    (tmp_path / "src" / "annotations" / "scene_000.xml").write_text(
        (tmp_path / "src" / "annotations" / "scene_000.xml").read_text().replace("<xmin>", "<xmin>-", 1)
    )
    monkeypatch.setenv("SPOTTER_DATA_DIR", str(tmp_path / "data"))
    # The command configures logging onto the runner's stderr, which the runner closes: keep pytest's logging.
    monkeypatch.setattr("services.logs.configure_logging", lambda *a, **k: None)
    runner = CliRunner()
    done = runner.invoke(app, ["dataset", "import", str(tmp_path / "src"), "--name", "cli", "--format", "voc"])
    assert done.exit_code == 0, done.output
    assert "Validate" in done.output and "box_clipped" in done.output and "version 1" in done.output
    listed = runner.invoke(app, ["dataset", "list", "--json"])
    assert json.loads(listed.output)[0]["versions"] == [1]
    shown = runner.invoke(app, ["dataset", "show", "cli"])
    assert shown.exit_code == 0 and "circle" in shown.output and "Problems" in shown.output
    missing = runner.invoke(app, ["dataset", "show", "nope"])
    assert missing.exit_code == 1 and "not found" in missing.output
    bad = runner.invoke(app, ["dataset", "import", str(tmp_path / "nope"), "--name", "x", "--format", "voc"])
    assert bad.exit_code == 1 and "does not exist" in bad.output
