"""The problems report of an import: every problem found, with its file and row or element, in one list.

An import never stops at the first problem. Each problem has a severity:

- ``fatal``: the input is refused as a whole (hostile XML, a corrupt record file, nothing usable); the import fails,
  but only after every file has been looked at, so the report lists all of them.
- ``error``: one image or box is dropped (unreadable image, inverted box, unknown class); the import goes on.
- ``warning``: something was fixed and kept (real image size used, box clipped to the image, duplicate row dropped).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass
from enum import StrEnum
from typing import Any

from services.errors import InvalidInput


class Severity(StrEnum):
    FATAL = "fatal"
    ERROR = "error"
    WARNING = "warning"


@dataclass(frozen=True, slots=True)
class Problem:
    """One problem: how bad, a stable ``code``, the file (relative to the import's root), where in it, and what."""

    severity: Severity
    code: str
    file: str
    where: str
    message: str

    def to_dict(self) -> dict[str, str]:
        body = asdict(self)
        body["severity"] = str(self.severity)
        return body

    @classmethod
    def from_dict(cls, body: dict[str, Any]) -> Problem:
        return cls(Severity(body["severity"]), body["code"], body["file"], body.get("where", ""), body["message"])


class ProblemReport:
    """Collects problems in the order they are found."""

    def __init__(self, problems: list[Problem] | None = None) -> None:
        self.problems: list[Problem] = list(problems or [])

    def add(self, severity: Severity, code: str, file: str, where: str, message: str) -> None:
        self.problems.append(Problem(severity, code, file, where, message))

    def fatal(self, code: str, file: str, where: str, message: str) -> None:
        self.add(Severity.FATAL, code, file, where, message)

    def error(self, code: str, file: str, where: str, message: str) -> None:
        self.add(Severity.ERROR, code, file, where, message)

    def warning(self, code: str, file: str, where: str, message: str) -> None:
        self.add(Severity.WARNING, code, file, where, message)

    def extend(self, other: ProblemReport) -> None:
        self.problems.extend(other.problems)

    @property
    def has_fatal(self) -> bool:
        return any(p.severity is Severity.FATAL for p in self.problems)

    def counts(self) -> dict[str, int]:
        """How many problems of each severity (every severity present, zeros included)."""
        counted = Counter(str(p.severity) for p in self.problems)
        return {str(s): counted.get(str(s), 0) for s in Severity}

    def to_dict(self) -> dict[str, Any]:
        """The report as JSON: counts per severity and the problems in the order found."""
        return {"counts": self.counts(), "problems": [p.to_dict() for p in self.problems]}

    @classmethod
    def from_dict(cls, body: dict[str, Any]) -> ProblemReport:
        return cls([Problem.from_dict(p) for p in body.get("problems", [])])

    def __len__(self) -> int:
        return len(self.problems)

    def raise_if_fatal(self, summary: str) -> None:
        """Refuse the import when any problem is fatal; the whole report goes in the error's details."""
        if self.has_fatal:
            fatal = [p for p in self.problems if p.severity is Severity.FATAL]
            first = fatal[0]
            where = f" ({first.where})" if first.where else ""
            more = f" and {len(fatal) - 1} more" if len(fatal) > 1 else ""
            raise InvalidInput(
                f"{summary}: {first.file}{where}: {first.message}{more}", details={"problems": self.to_dict()}
            )
