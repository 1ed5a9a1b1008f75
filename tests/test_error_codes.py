"""services.errors.error_class: one table from error code to class, read by the REST and the gRPC client alike."""

from __future__ import annotations

import httpx
import pytest

from services import errors
from services.client.rest import error_from_response
from services.grpc_errors import error_from_status, error_trailers, grpc_status
from tests.support.errors import every_error_class


def test_every_code_names_its_own_class() -> None:
    classes = every_error_class()
    assert len({cls.code for cls in classes}) == len(classes), "two classes share a code"
    for cls in classes:
        assert errors.error_class(cls.code) is cls
    assert errors.error_class("a_newer_gateways_code") is None
    assert errors.error_class("") is None


def test_a_class_defined_later_is_known_from_then_on() -> None:
    class QuotaExceeded(errors.Conflict):  # e.g. one a plug-in module defines when it is imported
        code = "quota_exceeded_for_this_test"

    assert errors.error_class("quota_exceeded_for_this_test") is QuotaExceeded


@pytest.mark.parametrize("cls", every_error_class(), ids=lambda cls: cls.__name__)
def test_both_clients_rebuild_the_same_class_from_a_code(cls: type[errors.SpotterError]) -> None:
    sent = cls("refused", retry_after=2.0) if issubclass(cls, errors.Overloaded | errors.Unavailable) else cls("no")
    answer = httpx.Response(418, json={"error": {"code": sent.code, "message": sent.message}})
    over_rest = error_from_response(answer)
    over_grpc = error_from_status(grpc_status(sent), sent.message, error_trailers(sent))
    assert type(over_rest) is type(over_grpc) is cls
    assert over_rest.code == over_grpc.code == sent.code


def test_both_clients_keep_a_code_they_do_not_know() -> None:
    answer = httpx.Response(409, json={"error": {"code": "a_newer_gateways_code", "message": "later"}})
    over_rest = error_from_response(answer)
    over_grpc = error_from_status(
        grpc_status(errors.Conflict("x")), "later", {"spotter-error-code": "a_newer_gateways_code"}
    )
    assert over_rest.code == over_grpc.code == "a_newer_gateways_code"
    assert type(over_rest) is errors.SpotterError and type(over_grpc) is errors.Conflict  # gRPC also has a status
