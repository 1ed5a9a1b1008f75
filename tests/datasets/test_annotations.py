"""The strict number and class-name rules every reader uses (issue 11 item 5)."""

from __future__ import annotations

import math

import pytest

from services.store.datasets.annotations import class_name_problem, parse_number


@pytest.mark.parametrize(
    ("text", "value"),
    [("40", 40.0), (" 12.5 ", 12.5), ("-3", -3.0), ("+7", 7.0), ("1e3", 1000.0), (".5", 0.5), ("640.", 640.0)],
)
def test_numbers_as_tools_write_them(text: str, value: float) -> None:
    assert parse_number(text) == value


PYTHON_READS = ["nan", "NaN", "-nan", "inf", "-Infinity", "1e999", "4_0", "\u0661\u0662"]


@pytest.mark.parametrize("text", [*PYTHON_READS, "0x10", "", " ", "1,5", "12px", "1e", "--1"])
def test_what_no_labelling_tool_writes_is_refused(text: str) -> None:
    with pytest.raises(ValueError):
        parse_number(text)


def test_python_itself_reads_those() -> None:
    """Why a strict parse: ``float`` takes every one of them (``4_0`` is 40, Arabic-Indic digits are 12)."""
    assert [float(t) for t in PYTHON_READS[6:]] == [40.0, 12.0]
    assert not any(math.isfinite(float(t)) for t in PYTHON_READS[:6])


@pytest.mark.parametrize("name", ["wally", "traffic light", "Straßenschild", "🚗", "road-sign_2"])
def test_good_class_names(name: str) -> None:
    assert class_name_problem(name) == ""


@pytest.mark.parametrize(
    ("name", "why"),
    [
        ("wal\x00ly", "U+0000"),
        ("car\nDROP", "U+000A"),
        ("\x1b[31mred", "U+001B"),
        ("a\u2028b", "U+2028"),
        ("   ", "empty"),
        ("x" * 129, "129 characters"),
    ],
)
def test_bad_class_names_say_why(name: str, why: str) -> None:
    assert why in class_name_problem(name)
