from __future__ import annotations

from pathlib import Path

import pytest

from services.errors import InvalidInput
from services.vision.labelmap import LabelMap, format_label_map, load_label_map, parse_label_map, write_label_map

# An OD API map using every upstream field, in the formatting variants text_format allows.
UPSTREAM = """
item {
  name: "/m/01g317"
  id: 1
  display_name: "person"
  keypoints { id: 0 label: "nose" }
  keypoints { id: 1 label: "left_eye" }
}
item: {
  name: '/m/0199g'
  id: 2
  display_name: 'bicycle'
  ancestor_ids: 1
  descendant_ids: [3, 4]
  frequency: FREQUENT
  instance_count: 12
}
item { id: 3 display_name: "only a display name" }
"""


def test_parses_upstream_maps_with_every_field() -> None:
    by_name = parse_label_map(UPSTREAM)
    assert dict(by_name.names) == {1: "/m/01g317", 2: "/m/0199g", 3: "only a display name"}
    by_display = parse_label_map(UPSTREAM, use_display_name=True)
    assert dict(by_display.names) == {1: "person", 2: "bicycle", 3: "only a display name"}


def test_the_background_item_of_old_od_api_maps_is_skipped() -> None:
    text = "item { id: 0 name: 'background' } item { id: 1 name: 'cat' }"
    assert dict(parse_label_map(text).names) == {1: "cat"}


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("item { id: 1 name: 'a' ", "not a valid label map"),
        ("item { id: 1 nmae: 'a' }", "not a valid label map"),
        ("item { id: 'one' name: 'a' }", "not a valid label map"),
        ("item { id: 1 id: 2 name: 'a' }", "not a valid label map"),
        ("item { id: 0 name: 'a' }", "item 1 has id 0"),
        ("item { id: -3 name: 'a' }", "item 1 has id -3"),
        ("item { id: 1 name: 'a' } item { id: 1 name: 'b' }", "id 1 is used twice"),
        ("item { id: 1 name: 'a' } item { id: 2 name: 'a' }", "'a' is used by ids 1 and 2"),
        ("item { id: 1 name: '' }", "item 1 (id 1) has no name"),
        ("item { id: 1 name: '  ' }", "has no name"),
        ("item { name: 'a' }", "item 1 has no id"),
        ("", "no items"),
        ("# only a comment\n", "no items"),
    ],
)
def test_bad_maps_name_the_source_and_the_problem(text: str, problem: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        parse_label_map(text, source="maps/roads.pbtxt")
    assert caught.value.message.startswith("maps/roads.pbtxt")
    assert problem in caught.value.message


def test_format_then_parse_round_trips_awkward_names() -> None:
    names = ["road", "it's", 'say "hi"', "back\\slash", "café 🚲", "multi\nline"]
    label_map = LabelMap.from_names(names)
    text = format_label_map(label_map)
    assert text.startswith("item {\n  id: 1\n  name: 'road'\n}\n")
    assert parse_label_map(text) == label_map


def test_label_map_lookups() -> None:
    label_map = LabelMap({3: "c", 1: "a", 2: "b"})
    assert label_map.ids == [1, 2, 3] and len(label_map) == 3
    assert label_map.name(2) == "b" and label_map.id("c") == 3
    assert label_map.label(9) == "class_9" and label_map.get(9) is None
    assert list(label_map) == [(1, "a"), (2, "b"), (3, "c")]
    with pytest.raises(KeyError):
        label_map.name(4)
    with pytest.raises(KeyError):
        label_map.id("d")
    assert hash(label_map) == hash(LabelMap.from_names(["a", "b", "c"]))
    with pytest.raises(TypeError):
        label_map.names[4] = "d"  # type: ignore[index]


@pytest.mark.parametrize("names", [{0: "a"}, {1: ""}, {1: "a", 2: "a"}])
def test_label_map_refuses_bad_content(names: dict[int, str]) -> None:
    with pytest.raises(InvalidInput):
        LabelMap(names)


def test_write_is_atomic_and_load_reads_it_back(tmp_path: Path) -> None:
    path = tmp_path / "label_map.pbtxt"
    path.write_text("old content")
    label_map = LabelMap.from_names(["road", "not-road"])
    write_label_map(path, label_map)
    assert load_label_map(path) == label_map
    assert sorted(p.name for p in tmp_path.iterdir()) == ["label_map.pbtxt"]  # no temporary file left behind


def test_a_failed_write_leaves_the_old_file(tmp_path: Path) -> None:
    path = tmp_path / "label_map.pbtxt"
    write_label_map(path, LabelMap.from_names(["a"]))

    class Exploding(LabelMap):
        def __iter__(self):  # type: ignore[no-untyped-def]
            raise RuntimeError("disk on fire")

    with pytest.raises(RuntimeError):
        write_label_map(path, Exploding({1: "b"}))
    assert load_label_map(path) == LabelMap.from_names(["a"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["label_map.pbtxt"]


def test_load_errors_name_the_path(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match=r"missing\.pbtxt"):
        load_label_map(tmp_path / "missing.pbtxt")
    bad = tmp_path / "bad.pbtxt"
    bad.write_bytes(b"\xff\xfe item")
    with pytest.raises(InvalidInput, match=r"bad\.pbtxt"):
        load_label_map(bad)
