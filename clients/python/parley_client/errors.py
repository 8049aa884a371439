"""Decoding of the rich error details that Parley attaches to failed calls.

The server sends a `google.rpc.Status` in the `grpc-status-details-bin`
trailer with one `ErrorInfo` (an UPPER_SNAKE_CASE reason, domain "parley")
and, for invalid fields, a `BadRequest` with field violations.
"""

from __future__ import annotations

import grpc
from google.protobuf.message import DecodeError
from google.rpc import error_details_pb2, status_pb2

STATUS_DETAILS_KEY = "grpc-status-details-bin"


def rich_status(exc: grpc.aio.AioRpcError) -> status_pb2.Status | None:
    """Parse the `google.rpc.Status` from the error's trailing metadata.

    Accepts any error with a synchronous `trailing_metadata()` method, which
    includes `grpc.aio.AioRpcError` and the synchronous `grpc.RpcError` calls.
    Returns None when the trailer is missing or is not a valid Status.
    """
    trailing = exc.trailing_metadata()
    if not trailing:
        return None
    for key, value in trailing:
        if key != STATUS_DETAILS_KEY or not isinstance(value, bytes):
            continue
        try:
            return status_pb2.Status.FromString(value)
        except DecodeError:
            return None
    return None


def error_info(exc: grpc.aio.AioRpcError) -> tuple[str, str] | None:
    """Return (reason, domain) of the first ErrorInfo detail, or None."""
    status = rich_status(exc)
    if status is None:
        return None
    for detail in status.details:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            return info.reason, info.domain
    return None


def field_violations(exc: grpc.aio.AioRpcError) -> list[tuple[str, str]]:
    """Return (field, description) of every BadRequest field violation.

    Fields are proto paths such as `metadata.crm_id`. The list is empty when
    the error carries no BadRequest detail.
    """
    status = rich_status(exc)
    if status is None:
        return []
    violations: list[tuple[str, str]] = []
    for detail in status.details:
        if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad_request = error_details_pb2.BadRequest()
            detail.Unpack(bad_request)
            violations.extend(
                (item.field, item.description) for item in bad_request.field_violations
            )
    return violations
