"""Errors that handlers raise and the RPC layer turns into gRPC statuses.

Every expected failure is a `ParleyError` carrying a canonical gRPC code, an
UPPER_SNAKE_CASE reason for `google.rpc.ErrorInfo` and, for invalid fields,
`BadRequest` field violations. The RPC boundary (`server.rpc`) converts it
with `grpc_status`; anything else is a bug and is logged before it becomes
INTERNAL.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import grpc
from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2

ERROR_DOMAIN = "parley"


@dataclass(frozen=True)
class FieldViolation:
    """One invalid request field, named by its proto path (`metadata.crm_id`)."""

    field: str
    description: str


@dataclass
class ParleyError(Exception):
    """An expected failure that maps to one gRPC status."""

    code: grpc.StatusCode
    reason: str
    message: str
    violations: Sequence[FieldViolation] = ()
    details: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        super().__init__(self.message)

    def to_status(self) -> status_pb2.Status:
        """Build the `google.rpc.Status` sent as the call's rich error."""
        info = error_details_pb2.ErrorInfo(
            reason=self.reason, domain=ERROR_DOMAIN, metadata=dict(self.details)
        )
        packed = [_pack(info)]
        if self.violations:
            bad_request = error_details_pb2.BadRequest(
                field_violations=[
                    error_details_pb2.BadRequest.FieldViolation(
                        field=v.field, description=v.description
                    )
                    for v in self.violations
                ]
            )
            packed.append(_pack(bad_request))
        return status_pb2.Status(
            code=_RPC_CODES[self.code], message=self.message, details=packed
        )


def _pack(
    message: error_details_pb2.ErrorInfo | error_details_pb2.BadRequest,
) -> any_pb2.Any:
    container = any_pb2.Any()
    container.Pack(message)
    return container


def invalid_argument(
    field_name: str, message: str, reason: str = "INVALID_ARGUMENT"
) -> ParleyError:
    """Build an INVALID_ARGUMENT error with one field violation."""
    return ParleyError(
        grpc.StatusCode.INVALID_ARGUMENT,
        reason,
        message,
        violations=[FieldViolation(field_name, message)],
    )


def not_found(reason: str, message: str) -> ParleyError:
    return ParleyError(grpc.StatusCode.NOT_FOUND, reason, message)


def permission_denied(reason: str, message: str) -> ParleyError:
    return ParleyError(grpc.StatusCode.PERMISSION_DENIED, reason, message)


def failed_precondition(reason: str, message: str) -> ParleyError:
    return ParleyError(grpc.StatusCode.FAILED_PRECONDITION, reason, message)


def already_exists(reason: str, message: str) -> ParleyError:
    return ParleyError(grpc.StatusCode.ALREADY_EXISTS, reason, message)


def unauthenticated(message: str) -> ParleyError:
    return ParleyError(grpc.StatusCode.UNAUTHENTICATED, "UNAUTHENTICATED", message)


_RPC_CODES: dict[grpc.StatusCode, int] = {
    grpc.StatusCode.OK: code_pb2.OK,
    grpc.StatusCode.CANCELLED: code_pb2.CANCELLED,
    grpc.StatusCode.UNKNOWN: code_pb2.UNKNOWN,
    grpc.StatusCode.INVALID_ARGUMENT: code_pb2.INVALID_ARGUMENT,
    grpc.StatusCode.DEADLINE_EXCEEDED: code_pb2.DEADLINE_EXCEEDED,
    grpc.StatusCode.NOT_FOUND: code_pb2.NOT_FOUND,
    grpc.StatusCode.ALREADY_EXISTS: code_pb2.ALREADY_EXISTS,
    grpc.StatusCode.PERMISSION_DENIED: code_pb2.PERMISSION_DENIED,
    grpc.StatusCode.RESOURCE_EXHAUSTED: code_pb2.RESOURCE_EXHAUSTED,
    grpc.StatusCode.FAILED_PRECONDITION: code_pb2.FAILED_PRECONDITION,
    grpc.StatusCode.ABORTED: code_pb2.ABORTED,
    grpc.StatusCode.OUT_OF_RANGE: code_pb2.OUT_OF_RANGE,
    grpc.StatusCode.UNIMPLEMENTED: code_pb2.UNIMPLEMENTED,
    grpc.StatusCode.INTERNAL: code_pb2.INTERNAL,
    grpc.StatusCode.UNAVAILABLE: code_pb2.UNAVAILABLE,
    grpc.StatusCode.DATA_LOSS: code_pb2.DATA_LOSS,
    grpc.StatusCode.UNAUTHENTICATED: code_pb2.UNAUTHENTICATED,
}
