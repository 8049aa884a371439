"""The RPC boundary: authentication, one log line per call, error mapping.

Servicer methods are written as `async def Method(self, request, context,
principal)` and wrapped with `@unary` or `@streaming`, which authenticate
the caller, bind ids for logging, turn `ParleyError` into a rich gRPC status
and log any other exception before returning INTERNAL.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, Protocol, TypeVar

import grpc
import structlog
from grpc_status import rpc_status

from server.auth import Authenticator, Principal
from server.decoding import MalformedRequest
from server.errors import ParleyError
from server.metrics import RPC_DURATION

log = structlog.get_logger("parley.rpc")

Request = TypeVar("Request")
Response = TypeVar("Response")


class Servicer(Protocol):
    authenticator: Authenticator


S = TypeVar("S", bound=Servicer)
Context = grpc.aio.ServicerContext[Any, Any]


def unary(
    handler: Callable[[S, Request, Context, Principal], Awaitable[Response]],
) -> Callable[[S, Request, Context], Awaitable[Response]]:
    """Wrap a unary-unary servicer method."""
    method = handler.__name__

    @functools.wraps(handler)
    async def wrapper(self: S, request: Request, context: Context) -> Response:
        started = time.perf_counter()
        code = grpc.StatusCode.OK
        failure: ParleyError | None = None
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(rpc=method)
        try:
            _reject_malformed(request)
            principal = await self.authenticator.authenticate(
                context.invocation_metadata() or ()
            )
            structlog.contextvars.bind_contextvars(account_id=principal.account_id)
            # A call whose client gives up (deadline, cancel) still finishes its
            # work, so a write is never cut in half. A retry with the same
            # idempotency key then gets the stored response.
            work = asyncio.ensure_future(handler(self, request, context, principal))
            try:
                return await asyncio.shield(work)
            except asyncio.CancelledError:
                work.add_done_callback(_log_orphaned_failure)
                raise
        except ParleyError as error:
            code, failure = error.code, error
        except asyncio.CancelledError:
            code = grpc.StatusCode.CANCELLED
            raise
        except Exception:
            code = grpc.StatusCode.INTERNAL
            log.exception("rpc_failed")
        finally:
            _log_call(method, code, started, failure)
        await _abort(context, failure)
        raise AssertionError("unreachable: abort raises")

    return wrapper


def streaming(
    handler: Callable[[S, Request, Context, Principal], AsyncIterator[Response]],
) -> Callable[[S, Request, Context], AsyncIterator[Response]]:
    """Wrap a unary-stream servicer method written as an async generator."""
    method = handler.__name__

    @functools.wraps(handler)
    async def wrapper(
        self: S, request: Request, context: Context
    ) -> AsyncIterator[Response]:
        started = time.perf_counter()
        code = grpc.StatusCode.OK
        failure: ParleyError | None = None
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(rpc=method)
        log.info("stream_started")
        try:
            _reject_malformed(request)
            principal = await self.authenticator.authenticate(
                context.invocation_metadata() or ()
            )
            structlog.contextvars.bind_contextvars(account_id=principal.account_id)
            async for item in handler(self, request, context, principal):
                yield item
        except ParleyError as error:
            code, failure = error.code, error
        except (asyncio.CancelledError, GeneratorExit):
            code = grpc.StatusCode.CANCELLED
            raise
        except Exception:
            code = grpc.StatusCode.INTERNAL
            log.exception("rpc_failed")
        finally:
            _log_call(method, code, started, failure)
        if code != grpc.StatusCode.OK:
            await _abort(context, failure)

    return wrapper


def _log_orphaned_failure(work: asyncio.Future[Any]) -> None:
    """Log an unexpected error of a call whose caller was cancelled meanwhile."""
    if work.cancelled():
        return
    error = work.exception()
    if error is not None and not isinstance(error, ParleyError):
        log.error("rpc_failed_after_cancel", error=repr(error))


def _reject_malformed(request: object) -> None:
    if isinstance(request, MalformedRequest):
        raise ParleyError(
            grpc.StatusCode.INVALID_ARGUMENT,
            "MALFORMED_REQUEST",
            f"The request bytes are not a valid message of this RPC: {request.error}."
            " Strings must be valid UTF-8 and messages nested at most 100 deep.",
        )


async def _abort(context: Context, failure: ParleyError | None) -> None:
    if failure is None:
        await context.abort(
            grpc.StatusCode.INTERNAL, "Internal error; see the server log."
        )
    else:
        await context.abort_with_status(rpc_status.to_status(failure.to_status()))


def _log_call(
    method: str, code: grpc.StatusCode, started: float, failure: ParleyError | None
) -> None:
    elapsed = time.perf_counter() - started
    RPC_DURATION.labels(method=method, code=code.name).observe(elapsed)
    fields: dict[str, Any] = {
        "code": code.name,
        "duration_ms": round(elapsed * 1000, 2),
    }
    if failure is not None:
        fields["reason"] = failure.reason
        fields["error"] = failure.message
    log.info("rpc", **fields)
