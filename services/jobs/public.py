"""What a job shows through the API carries none of the server's absolute paths (TensorFlow-free).

An error message (``[Errno 36] File name too long: '/srv/spotter/data/uploads/...'``), a result or a record field may
name files on the worker's host. Clients know the data folder and the model repository by their parts (datasets,
jobs, models and versions), never by where the server keeps them, and a message must not tell them the host's
layout. So: a path under one of the roots (the data folder, the model root) is shown relative to it
(``uploads/<id>/archive.zip``, ``demo/3``); any other absolute path is cut to its last part.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from pathlib import Path, PurePosixPath
from typing import Any

# An absolute POSIX path: a "/" that does not continue a word, a URL ("http://h/x") or a relative path ("a/b").
_ABSOLUTE_PATH = re.compile(r"(?<![\w.:/~-])/[^\s'\"`,;:()\[\]{}<>|]*[^\s'\"`,;:()\[\]{}<>|.]")


def _prefixes(roots: Iterable[Path]) -> list[str]:
    found: set[str] = set()
    for root in roots:
        for form in (root.absolute(), root.resolve()):
            text = str(form).rstrip("/")
            if text:
                found.add(text)
    return sorted(found, key=len, reverse=True)  # the deepest root first (a model root inside the data folder)


def _shorten(path: str, prefixes: Sequence[str]) -> str:
    for prefix in prefixes:
        if path == prefix:
            return "."
        if path.startswith(prefix + "/"):
            return path[len(prefix) + 1 :]
    return PurePosixPath(path).name or path


def _strip(text: str, prefixes: Sequence[str]) -> str:
    return _ABSOLUTE_PATH.sub(lambda m: _shorten(m.group(0), prefixes), text) if "/" in text else text


def strip_paths(text: str, roots: Iterable[Path]) -> str:
    """``text`` with each absolute path made relative to the root it is under, or cut to its last part."""
    return _strip(text, _prefixes(roots)) if "/" in text else text


def _public(value: Any, prefixes: Sequence[str]) -> Any:
    if isinstance(value, str):
        return _strip(value, prefixes)
    if isinstance(value, dict):
        return {k: _public(v, prefixes) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_public(v, prefixes) for v in value]
    return value


def public(value: Any, roots: Iterable[Path]) -> Any:
    """``value`` (JSON-like: dicts, lists, strings) with :func:`strip_paths` applied to every string in it."""
    return _public(value, _prefixes(roots))
