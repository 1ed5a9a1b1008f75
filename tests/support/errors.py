"""The project's error classes, for tests that check each of them."""

from __future__ import annotations

from services import errors


def every_error_class() -> list[type[errors.SpotterError]]:
    """``SpotterError`` and every subclass of it, at any depth."""
    found, pending = [], [errors.SpotterError]
    while pending:
        cls = pending.pop()
        found.append(cls)
        pending.extend(cls.__subclasses__())
    return found
