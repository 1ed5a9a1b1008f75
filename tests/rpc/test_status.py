"""The one mapping between ``services.errors`` and gRPC statuses: complete, as documented, and invertible."""

from __future__ import annotations

import re

import grpc
import pytest

from services import errors
from services.client.rpc import frame_error
from services.gateway.rpc.convert import frame_error as frame_error_message
from services.grpc_errors import GRPC_STATUS, error_from_status, error_trailers, grpc_status
from tests.conftest import REPO
from tests.support.errors import every_error_class


def make(cls: type[errors.SpotterError]) -> errors.SpotterError:
    if issubclass(cls, errors.Overloaded | errors.Unavailable):
        return cls(f"a {cls.__name__}", retry_after=2.5, details={"queue": 3})
    return cls(f"a {cls.__name__}", details={"field": "min_score"})


def test_the_statuses_are_those_of_the_architecture_table() -> None:
    text = (REPO / "docs" / "architecture.md").read_text()
    documented = re.findall(r"`(\w+)`(?:\s+\(and\s[^)]*\))?\s+\d{3}(?:\s+\+\s+`Retry-After`)?\s+/\s+([A-Z_]+)", text)
    assert len(documented) >= 10, "the error table of docs/architecture.md was not found"
    for name, status in documented:
        assert GRPC_STATUS[getattr(errors, name)].name == status, name
    assert {cls.__name__ for cls in GRPC_STATUS} == {name for name, _ in documented}


@pytest.mark.parametrize("cls", every_error_class(), ids=lambda cls: cls.__name__)
def test_every_error_comes_back_as_its_own_class(cls: type[errors.SpotterError]) -> None:
    sent = make(cls)
    received = error_from_status(grpc_status(sent), sent.message, error_trailers(sent))
    assert type(received) is cls
    assert (received.code, received.message, received.details) == (sent.code, sent.message, sent.details)
    if isinstance(sent, errors.Overloaded | errors.Unavailable):
        assert received.retry_after == 3  # type: ignore[attr-defined]  # whole seconds, rounded up, as HTTP's
    # A stream frame's error maps the same way.
    assert type(frame_error(frame_error_message(sent))) is cls


def test_subclasses_take_their_parents_status() -> None:
    assert grpc_status(errors.ModelNotFound("x")) == grpc.StatusCode.NOT_FOUND
    assert grpc_status(errors.SpotterError("x")) == grpc.StatusCode.INTERNAL


@pytest.mark.parametrize(
    ("status", "cls"),
    [
        (grpc.StatusCode.INVALID_ARGUMENT, errors.InvalidInput),
        (grpc.StatusCode.RESOURCE_EXHAUSTED, errors.PayloadTooLarge),  # gRPC's own message size limit
        (grpc.StatusCode.NOT_FOUND, errors.NotFound),
        (grpc.StatusCode.UNAVAILABLE, errors.Unavailable),  # gRPC's own "failed to connect"
        (grpc.StatusCode.DEADLINE_EXCEEDED, errors.DeadlineExceeded),  # the client's own deadline
        (grpc.StatusCode.UNKNOWN, errors.SpotterError),
        (grpc.StatusCode.UNIMPLEMENTED, errors.SpotterError),
    ],
)
def test_without_our_code_the_status_decides(status: grpc.StatusCode, cls: type[errors.SpotterError]) -> None:
    assert type(error_from_status(status, "details")) is cls


def test_a_code_that_does_not_fit_the_status_is_not_trusted() -> None:
    # A proxy answered UNAVAILABLE with our trailers from another answer: the status wins.
    received = error_from_status(grpc.StatusCode.UNAVAILABLE, "gone", [("spotter-error-code", "invalid_input")])
    assert type(received) is errors.Unavailable


def test_a_code_from_a_newer_gateway_is_kept_on_the_class_of_its_status() -> None:
    received = error_from_status(grpc.StatusCode.INVALID_ARGUMENT, "new", {"spotter-error-code": "brand_new_code"})
    assert type(received) is errors.InvalidInput
    assert received.code == "brand_new_code"
