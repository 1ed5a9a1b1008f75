"""The project's one exception hierarchy.

Every error a client can cause or see is a :class:`SpotterError` with a stable ``code`` and a message that says what
to fix. Transports map the class to a status once: HTTP in ``services.gateway.api.errors``, gRPC in
``services.gateway.rpc.interceptors``. Upstream errors (TensorFlow Serving's gRPC status, Redis) are turned into
these where they enter, keeping the original as ``__cause__``.
"""

from __future__ import annotations

from typing import Any


class SpotterError(Exception):
    """Base class: a machine-readable ``code``, a human ``message`` and optional structured ``details``."""

    code = "internal"

    def __init__(self, message: str, *, details: Any = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details

    def to_dict(self) -> dict[str, Any]:
        body: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.details is not None:
            body["details"] = self.details
        return body


class InvalidInput(SpotterError):
    """The request's content is wrong: empty body, not an image, a truncated image, a malformed archive."""

    code = "invalid_input"


class TrainingDiverged(InvalidInput):
    """Training's loss became NaN or infinite (a learning rate too high for the data, or bad boxes): the job fails,
    is not retried, and keeps no weights from the diverged steps."""

    code = "training_diverged"


class InvalidParameter(SpotterError):
    """A parameter is out of range or of the wrong type (``min_score=2``, an unknown job type)."""

    code = "invalid_parameter"


class UnsupportedMediaType(SpotterError):
    """The content type (declared or sniffed) is not one we take."""

    code = "unsupported_media_type"


class NotAcceptable(SpotterError):
    """The client's ``Accept`` header names no media type we can answer with."""

    code = "not_acceptable"


class PayloadTooLarge(SpotterError):
    """Over a byte, pixel, file-count or expanded-size limit; decided before the expensive work."""

    code = "payload_too_large"


class NotFound(SpotterError):
    """A named thing does not exist."""

    code = "not_found"


class ModelNotFound(NotFound):
    code = "model_not_found"


class DatasetNotFound(NotFound):
    code = "dataset_not_found"


class JobNotFound(NotFound):
    code = "job_not_found"


class Conflict(SpotterError):
    """The request contradicts the current state (a dataset version that exists, a job that already ended)."""

    code = "conflict"


class Unauthenticated(SpotterError):
    """No API key where one is needed."""

    code = "unauthenticated"


class PermissionDenied(SpotterError):
    """An API key that is not one of ours."""

    code = "permission_denied"


class Overloaded(SpotterError):
    """A bounded queue is full; retry after ``retry_after`` seconds."""

    code = "overloaded"

    def __init__(self, message: str, *, retry_after: float = 1.0, details: Any = None) -> None:
        super().__init__(message, details=details)
        self.retry_after = retry_after


class Unavailable(SpotterError):
    """The model server (or Redis) cannot be reached, or the model has no available version."""

    code = "unavailable"

    def __init__(self, message: str, *, retry_after: float = 1.0, details: Any = None) -> None:
        super().__init__(message, details=details)
        self.retry_after = retry_after


class DeadlineExceeded(SpotterError):
    """An upstream call did not answer within its deadline."""

    code = "deadline_exceeded"


class UpstreamError(SpotterError):
    """The model server failed in a way that is not the client's fault (its INTERNAL, UNKNOWN...)."""

    code = "upstream_error"


def error_class(code: str) -> type[SpotterError] | None:
    """The class of an error ``code`` (what the transports send), ``None`` for a code this version does not know."""
    found: dict[str, type[SpotterError]] = {}
    pending: list[type[SpotterError]] = [SpotterError]
    while pending:
        cls = pending.pop()
        found.setdefault(cls.code, cls)
        pending.extend(cls.__subclasses__())
    return found.get(code)
