"""Request decoding that turns undecodable bytes into INVALID_ARGUMENT.

grpcio rejects a request whose bytes fail to parse (invalid UTF-8 in a
string, nesting beyond protobuf's limit) with UNKNOWN before any handler
runs. Registering the servicers through `add_servicer` wraps each request
deserializer so that such a request reaches the handler as a
`MalformedRequest`, which the RPC layer rejects with INVALID_ARGUMENT.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import grpc
from google.protobuf.message import DecodeError


class MalformedRequest:
    """Stands in for a request whose bytes could not be decoded."""

    def __init__(self, error: str) -> None:
        self.error = error


class _HandlerCapture:
    """Collects what a generated `add_*Servicer_to_server` function registers."""

    def __init__(self) -> None:
        self.service = ""
        self.handlers: dict[str, grpc.RpcMethodHandler[Any, Any]] = {}

    def add_generic_rpc_handlers(
        self, handlers: Sequence[grpc.GenericRpcHandler]
    ) -> None:
        """Ignore the generic handler; `add_registered_method_handlers` has the same."""

    def add_registered_method_handlers(
        self, service: str, handlers: Mapping[str, grpc.RpcMethodHandler[Any, Any]]
    ) -> None:
        self.service = service
        self.handlers = dict(handlers)


def add_servicer(
    server: grpc.aio.Server,
    add_function: Callable[[Any, Any], None],
    servicer: object,
) -> None:
    """Register `servicer` like `add_function` would, with safe deserializers."""
    capture = _HandlerCapture()
    add_function(servicer, capture)
    wrapped = {
        name: handler._replace(  # type: ignore[attr-defined]
            request_deserializer=_safe(handler.request_deserializer)
        )
        for name, handler in capture.handlers.items()
    }
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler(capture.service, wrapped),)
    )
    server.add_registered_method_handlers(capture.service, wrapped)


def _safe(decode: Callable[[bytes], Any] | None) -> Callable[[bytes], Any]:
    def decode_or_mark(data: bytes) -> Any:
        assert decode is not None
        try:
            return decode(data)
        except (DecodeError, RecursionError, UnicodeDecodeError) as error:
            return MalformedRequest(str(error) or type(error).__name__)

    return decode_or_mark
