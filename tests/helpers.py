"""Assertion helpers for the rich error details of failed gRPC calls."""

from __future__ import annotations

import grpc
from google.rpc import error_details_pb2
from grpc_status import rpc_status


def error_reason(error: grpc.aio.AioRpcError) -> str:
    """Return the `ErrorInfo.reason` of a failed call, or "" if it carries none."""
    status = rpc_status.from_call(error)
    if status is None:
        return ""
    for detail in status.details:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            return info.reason
    return ""


def violation_fields(error: grpc.aio.AioRpcError) -> list[str]:
    """Return the field names of the call's `BadRequest` violations, in order."""
    status = rpc_status.from_call(error)
    if status is None:
        return []
    fields: list[str] = []
    for detail in status.details:
        if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad_request = error_details_pb2.BadRequest()
            detail.Unpack(bad_request)
            fields.extend(item.field for item in bad_request.field_violations)
    return fields
