"""EventService: a resumable stream of one account's events.

Each stream registers its live subscription before it reads the log, so
every event is either in the log when read or in the subscription buffer
afterwards. A stream alternates between two phases:

1. Replay: clear the buffer, then read the log after the stream's position
   in pages until a page reaches the end of the log.
2. Live: deliver buffered events above the position. When the buffer
   overflows because the client reads too slowly, go back to replay. When
   the broker closes at shutdown, end the stream with status OK.

The position only moves forward, so no event is sent twice, and the broker
never waits for a stream, so a slow client cannot delay writers or other
streams.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import structlog
from parley.v1 import events_pb2, events_pb2_grpc

from server.auth import Principal
from server.errors import invalid_argument, unauthenticated
from server.event_log import EventFilter, check_cursor, read_after
from server.events import Subscription
from server.metrics import SUBSCRIBERS
from server.rpc import Context, streaming
from server.timeutil import timestamp_from_ms
from server.validation import STRUCT_KEY_MAX_CHARS, normalize_e164, quote_value

if TYPE_CHECKING:
    from server.app import Components

log = structlog.get_logger("parley.events")

Response = events_pb2.SubscribeEventsResponse

# Rows read from the log per query while replaying.
REPLAY_PAGE_SIZE = 500
MAX_HEARTBEAT_SECONDS = 300
# Values per list filter and pairs in the metadata filter. Three full lists
# stay far below SQLite's default of 32,766 bound parameters (since 3.32,
# https://www.sqlite.org/limits.html#max_variable_number).
MAX_FILTER_VALUES = 1000
MAX_CONVERSATION_ID_CHARS = 128
# How often an open stream checks that its API key was not revoked.
KEY_RECHECK_SECONDS = 5.0

_KNOWN_EVENT_TYPES = frozenset(events_pb2.EventType.values()) - {
    events_pb2.EVENT_TYPE_UNSPECIFIED
}


@dataclass
class _Stream:
    """State of one open SubscribeEvents call."""

    account_id: str
    subscription: Subscription
    filters: EventFilter
    heartbeat_seconds: float
    # Every event of the account up to this sequence was sent or did not match.
    position: int
    # Event loop time of the last response, which starts the heartbeat timer.
    last_sent: float
    # True while a replay of the whole retained log has sent nothing, so a
    # concurrent retention run may move its start without losing anything.
    skip_pruned: bool
    principal: Principal
    # Event loop time when the stream last checked that its key is not revoked.
    key_checked: float


class EventServicer(events_pb2_grpc.EventServiceServicer):
    def __init__(self, components: Components) -> None:
        self.components = components
        self.authenticator = components.authenticator

    @streaming
    async def SubscribeEvents(
        self,
        request: events_pb2.SubscribeEventsRequest,
        context: Context,
        principal: Principal,
    ) -> AsyncIterator[Response]:
        account_id = principal.require_account()
        filters = parse_event_filter(request)
        heartbeat_seconds = self._heartbeat_seconds(request.heartbeat_seconds)
        after_sequence = (
            request.after_sequence if request.HasField("after_sequence") else None
        )
        broker = self.components.broker
        subscription = broker.subscribe(account_id)
        SUBSCRIBERS.inc()
        try:
            position = await check_cursor(self.components.database, after_sequence)
            stream = _Stream(
                account_id=account_id,
                subscription=subscription,
                filters=filters,
                heartbeat_seconds=heartbeat_seconds,
                position=position,
                last_sent=asyncio.get_running_loop().time(),
                skip_pruned=after_sequence == 0,
                principal=principal,
                key_checked=asyncio.get_running_loop().time(),
            )
            async for response in self._run(stream):
                yield response
        finally:
            broker.unsubscribe(subscription)
            SUBSCRIBERS.dec()

    def _heartbeat_seconds(self, requested: int) -> float:
        if requested == 0:
            return self.components.settings.heartbeat_seconds
        if requested > MAX_HEARTBEAT_SECONDS:
            raise invalid_argument(
                "heartbeat_seconds",
                f"heartbeat_seconds {requested} is out of range; send 1 to"
                f" {MAX_HEARTBEAT_SECONDS} seconds, or 0 for the server default",
                "INVALID_HEARTBEAT_SECONDS",
            )
        return float(requested)

    async def _check_key(self, stream: _Stream) -> None:
        """End the stream once its API key is revoked, checked every few seconds."""
        now = asyncio.get_running_loop().time()
        if now - stream.key_checked < KEY_RECHECK_SECONDS:
            return
        stream.key_checked = now
        if await self.authenticator.is_revoked(stream.principal):
            raise unauthenticated("The API key of this stream was revoked.")

    async def _run(self, stream: _Stream) -> AsyncIterator[Response]:
        while True:
            stream.subscription.reset()
            async for response in self._replay(stream):
                yield response
            async for response in self._follow_live(stream):
                yield response
            if not stream.subscription.overflowed:
                return
            log.info("event_stream_catching_up", position=stream.position)

    async def _replay(self, stream: _Stream) -> AsyncIterator[Response]:
        """Send stored events after the position until the end of the log."""
        while True:
            page = await read_after(
                self.components.database,
                stream.account_id,
                stream.position,
                REPLAY_PAGE_SIZE,
                stream.filters,
                skip_pruned=stream.skip_pruned,
            )
            await self._check_key(stream)
            for event in page.events:
                yield self._event_response(stream, event)
            stream.position = max(stream.position, page.last_scanned_sequence)
            if page.complete:
                return
            if self._heartbeat_due(stream):
                yield self._heartbeat_response(stream)

    async def _follow_live(self, stream: _Stream) -> AsyncIterator[Response]:
        """Send buffered live events until the buffer overflows or closes."""
        subscription = stream.subscription
        while not subscription.overflowed:
            await self._check_key(stream)
            events = subscription.pop_all()
            if events:
                for event in events:
                    if event.sequence <= stream.position:
                        continue
                    if stream.filters.matches(event):
                        yield self._event_response(stream, event)
                    else:
                        stream.position = event.sequence
                continue
            if subscription.closed:
                return
            if self._heartbeat_due(stream):
                # The buffer is empty and did not overflow, and nothing was
                # awaited since it was emptied, so every event the broker has
                # published so far was handled.
                latest = self.components.broker.latest_sequence
                stream.position = max(stream.position, latest)
                yield self._heartbeat_response(stream)
                continue
            await subscription.wait(self._seconds_until_heartbeat(stream))

    def _event_response(self, stream: _Stream, event: events_pb2.Event) -> Response:
        stream.position = max(stream.position, event.sequence)
        self._mark_sent(stream)
        return Response(event=event)

    def _heartbeat_response(self, stream: _Stream) -> Response:
        self._mark_sent(stream)
        heartbeat = events_pb2.Heartbeat(
            sequence=stream.position,
            time=timestamp_from_ms(self.components.clock.now_ms()),
        )
        return Response(heartbeat=heartbeat)

    def _mark_sent(self, stream: _Stream) -> None:
        stream.last_sent = asyncio.get_running_loop().time()
        stream.skip_pruned = False

    def _heartbeat_due(self, stream: _Stream) -> bool:
        return self._seconds_until_heartbeat(stream) <= 0

    def _seconds_until_heartbeat(self, stream: _Stream) -> float:
        elapsed = asyncio.get_running_loop().time() - stream.last_sent
        return stream.heartbeat_seconds - elapsed


def parse_event_filter(request: events_pb2.SubscribeEventsRequest) -> EventFilter:
    """Validate the request's filters and return them with E.164 agent numbers."""
    _check_count("conversation_ids", len(request.conversation_ids))
    _check_count("agent_numbers", len(request.agent_numbers))
    _check_count("event_types", len(request.event_types))
    _check_count("metadata", len(request.metadata))
    conversation_ids = frozenset(
        _check_conversation_id(value, f"conversation_ids[{index}]")
        for index, value in enumerate(request.conversation_ids)
    )
    agent_numbers = frozenset(
        normalize_e164(value, f"agent_numbers[{index}]")
        for index, value in enumerate(request.agent_numbers)
    )
    event_types = frozenset(
        _check_event_type(value, f"event_types[{index}]")
        for index, value in enumerate(request.event_types)
    )
    for key in request.metadata:
        _check_metadata_key(key)
    return EventFilter(
        conversation_ids=conversation_ids,
        agent_numbers=agent_numbers,
        event_types=event_types,
        metadata=dict(request.metadata),
    )


def _check_count(field: str, count: int) -> None:
    if count > MAX_FILTER_VALUES:
        raise invalid_argument(
            field,
            f"{field} has {count:,} values; the maximum is {MAX_FILTER_VALUES:,},"
            " so split the subscription or filter on fewer values",
            "TOO_MANY_FILTER_VALUES",
        )


def _check_conversation_id(value: str, field: str) -> str:
    if not value or len(value) > MAX_CONVERSATION_ID_CHARS:
        raise invalid_argument(
            field,
            f"{field} {quote_value(value)} is not a conversation id; send the"
            f" conversation_id of a SendMessage or CreateConversation response"
            f" (1 to {MAX_CONVERSATION_ID_CHARS} characters)",
            "INVALID_CONVERSATION_ID",
        )
    return value


def _check_event_type(value: int, field: str) -> int:
    if value not in _KNOWN_EVENT_TYPES:
        names = ", ".join(
            events_pb2.EventType.Name(known) for known in sorted(_KNOWN_EVENT_TYPES)
        )
        raise invalid_argument(
            field,
            f"{field} {value} is not an event type to filter on; send one of {names}",
            "INVALID_EVENT_TYPE",
        )
    return value


def _check_metadata_key(key: str) -> None:
    if 0 < len(key) <= STRUCT_KEY_MAX_CHARS:
        return
    raise invalid_argument(
        "metadata",
        f"metadata filter key {quote_value(key)} has {len(key):,} characters;"
        f" keys must be 1 to {STRUCT_KEY_MAX_CHARS} characters long",
        "INVALID_METADATA_FILTER",
    )
