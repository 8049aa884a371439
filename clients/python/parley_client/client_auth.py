"""Client interceptors that add the API key and a default deadline to calls."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

import grpc

_Request = TypeVar("_Request")
_Response = TypeVar("_Response")


def _authorized_details(
    details: grpc.aio.ClientCallDetails, authorization: str, timeout: float | None
) -> grpc.aio.ClientCallDetails:
    """Copy call details, adding the authorization header and a default deadline.

    An `authorization` entry that the call already passes is kept, so one call
    can use another key. A timeout that the call passes is kept as well.
    """
    metadata = grpc.aio.Metadata()
    has_authorization = False
    for key, value in details.metadata or ():
        metadata.add(key, value)
        has_authorization = has_authorization or key == "authorization"
    if not has_authorization:
        metadata.add("authorization", authorization)
    return grpc.aio.ClientCallDetails(
        method=details.method,
        timeout=details.timeout if details.timeout is not None else timeout,
        metadata=metadata,
        credentials=details.credentials,
        wait_for_ready=details.wait_for_ready,
    )


class UnaryAuthInterceptor(grpc.aio.UnaryUnaryClientInterceptor):
    """Adds the API key and the client's default deadline to unary calls."""

    def __init__(self, authorization: str, timeout: float) -> None:
        self._authorization = authorization
        self._timeout = timeout

    async def intercept_unary_unary(
        self,
        continuation: Callable[
            [grpc.aio.ClientCallDetails, _Request],
            Awaitable[grpc.aio.UnaryUnaryCall[_Request, _Response]],
        ],
        client_call_details: grpc.aio.ClientCallDetails,
        request: _Request,
    ) -> grpc.aio.UnaryUnaryCall[_Request, _Response]:
        details = _authorized_details(
            client_call_details, self._authorization, self._timeout
        )
        return await continuation(details, request)


class StreamAuthInterceptor(grpc.aio.UnaryStreamClientInterceptor):
    """Adds the API key to server-streaming calls, which get no default deadline."""

    def __init__(self, authorization: str) -> None:
        self._authorization = authorization

    async def intercept_unary_stream(
        self,
        continuation: Callable[
            [grpc.aio.ClientCallDetails, _Request],
            Awaitable[grpc.aio.UnaryStreamCall[_Request, _Response]],
        ],
        client_call_details: grpc.aio.ClientCallDetails,
        request: _Request,
    ) -> grpc.aio.UnaryStreamCall[_Request, _Response]:
        details = _authorized_details(client_call_details, self._authorization, None)
        return await continuation(details, request)
