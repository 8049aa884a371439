"""Async client for the Parley gRPC API over `grpc.aio`."""

from __future__ import annotations

import asyncio
import logging
import random
import uuid
from collections.abc import AsyncGenerator, Awaitable, Callable
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Self, TypeVar

import grpc
from parley.v1 import (
    admin_pb2_grpc,
    carrier_pb2_grpc,
    conversation_pb2,
    conversation_pb2_grpc,
    events_pb2,
    events_pb2_grpc,
)

from parley_client.client_auth import StreamAuthInterceptor, UnaryAuthInterceptor

if TYPE_CHECKING:
    from parley.v1.admin_pb2_grpc import AdminServiceAsyncStub
    from parley.v1.carrier_pb2_grpc import CarrierServiceAsyncStub
    from parley.v1.conversation_pb2_grpc import ConversationServiceAsyncStub
    from parley.v1.events_pb2_grpc import EventServiceAsyncStub

logger = logging.getLogger(__name__)

# Codes after which repeating a request with the same idempotency key is safe
# and may succeed: the server was unreachable, too slow or overloaded.
RETRYABLE_CODES = frozenset(
    {
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
    }
)

_Response = TypeVar("_Response")
_KeyedRequest = TypeVar(
    "_KeyedRequest",
    conversation_pb2.SendMessageRequest,
    conversation_pb2.CreateConversationRequest,
    conversation_pb2.AddMessageRequest,
)


# gRPC's reconnect backoff grows to two minutes by default, so a client that
# saw a long outage would wait that long after the server is back. Capping it
# at five seconds makes `resume=True` streams reconnect promptly.
_CHANNEL_OPTIONS = (
    ("grpc.initial_reconnect_backoff_ms", 500),
    ("grpc.min_reconnect_backoff_ms", 500),
    ("grpc.max_reconnect_backoff_ms", 5_000),
)


@dataclass(frozen=True)
class _Connection:
    channel: grpc.aio.Channel
    conversations: ConversationServiceAsyncStub
    events: EventServiceAsyncStub
    carrier: CarrierServiceAsyncStub
    admin: AdminServiceAsyncStub


def _with_idempotency_key(request: _KeyedRequest) -> _KeyedRequest:
    """Return the request itself if it has a key, else a copy with a new uuid4 key."""
    if request.idempotency_key:
        return request
    prepared = type(request)()
    prepared.CopyFrom(request)
    prepared.idempotency_key = str(uuid.uuid4())
    return prepared


def _advance_cursor(
    request: events_pb2.SubscribeEventsRequest,
    response: events_pb2.SubscribeEventsResponse,
) -> None:
    """Move `after_sequence` forward to the sequence of an event or heartbeat."""
    kind = response.WhichOneof("kind")
    if kind == "event":
        sequence = response.event.sequence
    elif kind == "heartbeat":
        sequence = response.heartbeat.sequence
    else:
        return
    if not request.HasField("after_sequence") or sequence > request.after_sequence:
        request.after_sequence = sequence


class ParleyClient:
    """Async Parley client: `async with ParleyClient(address, api_key) as client:`.

    Every call made through the stub attributes (`conversations`, `events`,
    `carrier`, `admin`) carries `authorization: Bearer <api_key>`. Unary calls
    get a deadline of `timeout` seconds unless the call passes its own, and
    streaming calls get none. Without `credentials` the channel is plaintext,
    which suits a server on loopback. Leaving the `async with` block closes
    the channel and cancels calls still running.
    """

    def __init__(
        self,
        address: str,
        api_key: str,
        timeout: float = 10.0,
        *,
        credentials: grpc.ChannelCredentials | None = None,
        initial_backoff: float = 0.2,
        max_backoff: float = 5.0,
    ) -> None:
        """Store the settings; the channel opens on `__aenter__` or `open()`.

        Raises ValueError for an empty address or API key, or a timeout or
        backoff that is not positive.
        """
        if not address:
            raise ValueError("missing address: expected HOST:PORT")
        if not api_key:
            raise ValueError("missing api_key")
        if timeout <= 0 or initial_backoff <= 0 or max_backoff <= 0:
            raise ValueError(
                "timeout, initial_backoff and max_backoff must be positive"
            )
        self.address = address
        self.timeout = timeout
        self.initial_backoff = initial_backoff
        self.max_backoff = max_backoff
        self._authorization = f"Bearer {api_key}"
        self._credentials = credentials
        self._connection: _Connection | None = None

    def __repr__(self) -> str:
        # The API key is left out on purpose so that logs never contain it.
        return f"ParleyClient(address={self.address!r}, timeout={self.timeout!r})"

    async def __aenter__(self) -> Self:
        self.open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()

    def open(self) -> None:
        """Create the channel and stubs; call it inside a running event loop."""
        if self._connection is not None:
            return
        interceptors = [
            UnaryAuthInterceptor(self._authorization, self.timeout),
            StreamAuthInterceptor(self._authorization),
        ]
        if self._credentials is None:
            channel = grpc.aio.insecure_channel(
                self.address, options=_CHANNEL_OPTIONS, interceptors=interceptors
            )
        else:
            channel = grpc.aio.secure_channel(
                self.address,
                self._credentials,
                options=_CHANNEL_OPTIONS,
                interceptors=interceptors,
            )
        self._connection = _Connection(
            channel=channel,
            conversations=conversation_pb2_grpc.ConversationServiceStub(channel),
            events=events_pb2_grpc.EventServiceStub(channel),
            carrier=carrier_pb2_grpc.CarrierServiceStub(channel),
            admin=admin_pb2_grpc.AdminServiceStub(channel),
        )

    async def close(self) -> None:
        """Close the channel; calling it again, or before `open()`, does nothing."""
        connection, self._connection = self._connection, None
        if connection is not None:
            await connection.channel.close()

    def _open_connection(self) -> _Connection:
        if self._connection is None:
            raise RuntimeError(
                "ParleyClient is not open: use 'async with ParleyClient(...)' "
                "or call open()"
            )
        return self._connection

    @property
    def conversations(self) -> ConversationServiceAsyncStub:
        return self._open_connection().conversations

    @property
    def events(self) -> EventServiceAsyncStub:
        return self._open_connection().events

    @property
    def carrier(self) -> CarrierServiceAsyncStub:
        return self._open_connection().carrier

    @property
    def admin(self) -> AdminServiceAsyncStub:
        return self._open_connection().admin

    async def send_message(
        self, request: conversation_pb2.SendMessageRequest, *, retries: int = 3
    ) -> conversation_pb2.SendMessageResponse:
        """Call SendMessage, retrying up to `retries` times after a transient failure.

        A request without `idempotency_key` is sent as a copy with a new uuid4
        key, chosen before the first attempt and reused by every retry. A retry
        after a lost response therefore returns the stored response (marked
        `replay`) and sends no second message. Raises the last AioRpcError.
        """
        prepared = _with_idempotency_key(request)
        response: conversation_pb2.SendMessageResponse = await self._call_with_retries(
            "SendMessage", self.conversations.SendMessage, prepared, retries
        )
        return response

    async def create_conversation(
        self, request: conversation_pb2.CreateConversationRequest, *, retries: int = 3
    ) -> conversation_pb2.CreateConversationResponse:
        """Call CreateConversation with the key and retry rules of `send_message`."""
        prepared = _with_idempotency_key(request)
        response: conversation_pb2.CreateConversationResponse = (
            await self._call_with_retries(
                "CreateConversation",
                self.conversations.CreateConversation,
                prepared,
                retries,
            )
        )
        return response

    async def add_message(
        self, request: conversation_pb2.AddMessageRequest, *, retries: int = 3
    ) -> conversation_pb2.AddMessageResponse:
        """Call AddMessage with the key and retry rules of `send_message`."""
        prepared = _with_idempotency_key(request)
        response: conversation_pb2.AddMessageResponse = await self._call_with_retries(
            "AddMessage", self.conversations.AddMessage, prepared, retries
        )
        return response

    async def subscribe(
        self,
        request: events_pb2.SubscribeEventsRequest,
        *,
        resume: bool = False,
        max_reconnects: int | None = None,
    ) -> AsyncGenerator[events_pb2.SubscribeEventsResponse, None]:
        """Yield events and heartbeats of SubscribeEvents until the stream ends.

        With `resume`, the stream reopens after a backoff when it fails with
        UNAVAILABLE or when the server ends it at shutdown. The new call sets
        `after_sequence` to the last sequence seen in an event or heartbeat, so
        the server resumes right after what was already yielded.
        `max_reconnects` limits the reconnects in a row without a response
        (None means no limit). Past it, the last error is raised, or the
        generator returns after an end of the stream. Other errors are raised. Close the
        iterator (`contextlib.aclosing`) to cancel the call when leaving the
        loop early. The caller's request is not modified.
        """
        current = events_pb2.SubscribeEventsRequest()
        current.CopyFrom(request)
        failures = 0
        while True:
            call = self.events.SubscribeEvents(current)
            try:
                async for response in call:
                    failures = 0
                    _advance_cursor(current, response)
                    yield response
                # SubscribeEvents never ends on its own. The server ends it with
                # OK only when it shuts down, so reconnect and wait for a restart.
                if not resume:
                    return
                if max_reconnects is not None and failures >= max_reconnects:
                    return
                reason = "the server ended the stream"
            except grpc.aio.AioRpcError as exc:
                if not resume or exc.code() != grpc.StatusCode.UNAVAILABLE:
                    raise
                if max_reconnects is not None and failures >= max_reconnects:
                    raise
                reason = exc.details() or "UNAVAILABLE"
            finally:
                call.cancel()
            delay = self._backoff_delay(failures)
            failures += 1
            # NOTE: a stream that failed before its first event or heartbeat,
            # and had no after_sequence, resumes at new events only, so
            # events appended while it was down are not replayed.
            cursor = (
                current.after_sequence if current.HasField("after_sequence") else "none"
            )
            logger.warning(
                "event stream to %s unavailable (%s); "
                "reconnect %d in %.1fs after sequence %s",
                self.address,
                reason,
                failures,
                delay,
                cursor,
            )
            await asyncio.sleep(delay)

    async def _call_with_retries(
        self,
        rpc_name: str,
        method: Callable[[_KeyedRequest], Awaitable[_Response]],
        request: _KeyedRequest,
        retries: int,
    ) -> _Response:
        """Await `method(request)`, repeating it after a code in RETRYABLE_CODES."""
        if retries < 0:
            raise ValueError(f"retries must be 0 or more, got {retries}")
        attempt = 0
        while True:
            try:
                return await method(request)
            except grpc.aio.AioRpcError as exc:
                if exc.code() not in RETRYABLE_CODES or attempt >= retries:
                    raise
                delay = self._backoff_delay(attempt)
                attempt += 1
                logger.warning(
                    "%s to %s failed with %s (%s); retry %d of %d in %.1fs "
                    "with idempotency key %s",
                    rpc_name,
                    self.address,
                    exc.code().name,
                    exc.details(),
                    attempt,
                    retries,
                    delay,
                    request.idempotency_key,
                )
                await asyncio.sleep(delay)

    def _backoff_delay(self, attempt: int) -> float:
        """Return the exponential backoff before retry `attempt` (0-based), with jitter.

        The delay doubles from `initial_backoff` up to `max_backoff`, and a random
        factor from 0.5 to 1 spreads clients that failed together.
        """
        # The exponent is capped so that long reconnect loops cannot overflow.
        base = min(self.max_backoff, self.initial_backoff * 2.0 ** min(attempt, 30))
        return base * random.uniform(0.5, 1.0)
