"""Tests for the event log (server.event_log) and EventService.SubscribeEvents.

The log tests write events with EventRecorder into a real SQLite file. The
stream tests run against the real server, whose carrier simulator moves each
message from QUEUED to SENT to DELIVERED within about 100 ms.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import grpc
import pytest
import yaml
from google.protobuf import json_format, struct_pb2
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from parley.v1 import conversation_pb2, events_pb2, types_pb2
from prometheus_client import REGISTRY

from server.app import Parley
from server.db import Database
from server.errors import ParleyError
from server.event_log import (
    PRUNED_THROUGH_KEY,
    EventFilter,
    LogPage,
    check_cursor,
    prune_events,
    read_after,
)
from server.events import EventBroker, EventRecorder, Subscription
from tests.conftest import (
    ACME,
    ACME_NUMBER,
    ACME_WHATSAPP_NUMBER,
    GLOBEX,
    GLOBEX_NUMBER,
    OPERATOR,
    USER_NUMBER,
    Stubs,
)

# Bound on every wait for a stream item; generous so a loaded machine passes.
WAIT_SECONDS = 15.0
OTHER_USER_NUMBER = "+14155550124"

CREATED = events_pb2.EVENT_TYPE_CONVERSATION_CREATED
MESSAGE_CREATED = events_pb2.EVENT_TYPE_MESSAGE_CREATED
STATUS_CHANGED = events_pb2.EVENT_TYPE_MESSAGE_STATUS_CHANGED
QUEUED = types_pb2.MESSAGE_STATUS_QUEUED
SENT = types_pb2.MESSAGE_STATUS_SENT
DELIVERED = types_pb2.MESSAGE_STATUS_DELIVERED


# --- the log, on a database file without a server ---------------------------


@pytest.fixture
async def database(tmp_path: Path) -> AsyncIterator[Database]:
    opened = await Database.open(tmp_path / "log.db")
    try:
        yield opened
    finally:
        await opened.close()


def make_conversation(
    conversation_id: str = "conv_1",
    account_id: str = "acme",
    agent_number: str = ACME_NUMBER,
    metadata: dict[str, Any] | None = None,
) -> types_pb2.Conversation:
    conversation = types_pb2.Conversation(
        id=conversation_id,
        account_id=account_id,
        agent_number=agent_number,
        user_number=USER_NUMBER,
        channel=types_pb2.CHANNEL_SMS,
    )
    json_format.ParseDict(metadata or {}, conversation.metadata)
    return conversation


async def append(
    database: Database,
    conversation: types_pb2.Conversation,
    event_type: events_pb2.EventType.ValueType = CREATED,
    now_ms: int = 1_000,
) -> events_pb2.Event:
    recorder = EventRecorder(EventBroker())
    async with database.transaction() as transaction:
        return await recorder.append(
            transaction, event_type, conversation=conversation, now_ms=now_ms
        )


async def expect_out_of_range(call: Any, reason: str) -> ParleyError:
    with pytest.raises(ParleyError) as caught:
        await call
    assert caught.value.code == grpc.StatusCode.OUT_OF_RANGE
    assert caught.value.reason == reason
    return caught.value


async def test_read_after_pages_in_order(database: Database) -> None:
    conversation = make_conversation()
    written = [await append(database, conversation) for _ in range(7)]
    sequences = [event.sequence for event in written]

    first = await read_after(database, "acme", 0, 3)
    second = await read_after(database, "acme", first.last_scanned_sequence, 3)
    third = await read_after(database, "acme", second.last_scanned_sequence, 3)

    assert [event.sequence for event in first.events] == sequences[:3]
    assert first.last_scanned_sequence == sequences[2]
    assert not first.complete
    assert [event.sequence for event in second.events] == sequences[3:6]
    assert not second.complete
    assert [event.sequence for event in third.events] == sequences[6:]
    assert third.complete
    assert third.last_scanned_sequence == sequences[6]
    assert third.events[0] == written[6]


async def test_read_after_returns_only_account(database: Database) -> None:
    acme = make_conversation("conv_a", "acme")
    globex = make_conversation("conv_g", "globex", GLOBEX_NUMBER)
    acme_first = await append(database, acme)
    await append(database, globex)
    acme_second = await append(database, acme)
    globex_last = await append(database, globex)

    page = await read_after(database, "acme", 0, 100)

    assert [event.sequence for event in page.events] == [
        acme_first.sequence,
        acme_second.sequence,
    ]
    assert all(event.account_id == "acme" for event in page.events)
    # A complete page covers the whole log, including other accounts' rows.
    assert page.complete
    assert page.last_scanned_sequence == globex_last.sequence


async def test_read_after_empty_log(database: Database) -> None:
    page = await read_after(database, "acme", 0, 10)

    assert page.events == []
    assert page.complete
    assert page.last_scanned_sequence == 0


async def test_read_after_column_filters(database: Database) -> None:
    first = make_conversation("conv_1", agent_number=ACME_NUMBER)
    second = make_conversation("conv_2", agent_number=ACME_WHATSAPP_NUMBER)
    created_1 = await append(database, first, CREATED)
    message_1 = await append(database, first, MESSAGE_CREATED)
    created_2 = await append(database, second, CREATED)
    message_2 = await append(database, second, MESSAGE_CREATED)
    cases = [
        (EventFilter(conversation_ids=frozenset({"conv_2"})), [created_2, message_2]),
        (EventFilter(agent_numbers=frozenset({ACME_NUMBER})), [created_1, message_1]),
        (EventFilter(event_types=frozenset({MESSAGE_CREATED})), [message_1, message_2]),
        (
            EventFilter(
                conversation_ids=frozenset({"conv_1", "conv_2"}),
                event_types=frozenset({CREATED}),
            ),
            [created_1, created_2],
        ),
        (EventFilter(conversation_ids=frozenset({"conv_9"})), []),
    ]

    for filters, expected in cases:
        page = await read_after(database, "acme", 0, 100, filters)
        assert page.events == expected, filters
        assert page.last_scanned_sequence == message_2.sequence, filters


async def test_read_after_metadata_filter(database: Database) -> None:
    tagged = await append(
        database, make_conversation("conv_1", metadata={"crm_id": "A-17"})
    )
    await append(database, make_conversation("conv_2", metadata={"crm_id": "B-2"}))
    numbered = await append(database, make_conversation("conv_3", metadata={"tier": 3}))
    await append(database, make_conversation("conv_4"))

    by_crm = await read_after(
        database, "acme", 0, 100, EventFilter(metadata={"crm_id": "A-17"})
    )
    by_tier = await read_after(
        database, "acme", 0, 100, EventFilter(metadata={"tier": "3"})
    )

    assert by_crm.events == [tagged]
    assert by_tier.events == [numbered]


async def test_metadata_filter_advances_position(database: Database) -> None:
    conversation = make_conversation(metadata={"crm_id": "B-2"})
    written = [await append(database, conversation) for _ in range(5)]
    filters = EventFilter(metadata={"crm_id": "A-17"})

    page = await read_after(database, "acme", 0, 2, filters)

    # The rows were read and rejected in Python, so the page is full but empty.
    assert page.events == []
    assert not page.complete
    assert page.last_scanned_sequence == written[1].sequence


async def pruned_through(database: Database) -> int | None:
    row = await database.fetchone(
        "SELECT value FROM meta WHERE key = ?", (PRUNED_THROUGH_KEY,)
    )
    return None if row is None else int(row["value"])


async def test_prune_deletes_old_prefix(database: Database) -> None:
    conversation = make_conversation()
    old = [await append(database, conversation, now_ms=ms) for ms in (1_000, 2_000)]
    recent = await append(database, conversation, now_ms=9_000)

    deleted = await prune_events(database, older_than_ms=5_000)
    page = await read_after(database, "acme", old[1].sequence, 10)

    assert deleted == 2
    assert page.events == [recent]
    assert await pruned_through(database) == old[1].sequence


async def test_prune_moves_recorded_cut(database: Database) -> None:
    conversation = make_conversation()
    await append(database, conversation, now_ms=1_000)
    second = await append(database, conversation, now_ms=2_000)
    await prune_events(database, older_than_ms=3_000)

    nothing = await prune_events(database, older_than_ms=500)
    cut_after_nothing = await pruned_through(database)
    third = await append(database, conversation, now_ms=100)
    deleted = await prune_events(database, older_than_ms=500)

    assert nothing == 0
    assert cut_after_nothing == second.sequence
    assert deleted == 1
    assert await pruned_through(database) == third.sequence


async def test_prune_after_clock_moved_back(database: Database) -> None:
    conversation = make_conversation()
    await append(database, conversation, now_ms=1_000)
    await append(database, conversation, now_ms=8_000)
    last = await append(database, conversation, now_ms=2_000)

    deleted = await prune_events(database, older_than_ms=5_000)
    page = await read_after(database, "acme", last.sequence, 10)

    # The event stamped 8,000 sits before an old one, so it goes too and
    # the log stays a suffix.
    assert deleted == 3
    assert page.events == []


async def test_read_after_pruned_cursor_expires(database: Database) -> None:
    conversation = make_conversation()
    first = await append(database, conversation, now_ms=1_000)
    second = await append(database, conversation, now_ms=2_000)
    third = await append(database, conversation, now_ms=9_000)
    await prune_events(database, older_than_ms=5_000)

    error = await expect_out_of_range(
        read_after(database, "acme", first.sequence, 10), "CURSOR_EXPIRED"
    )
    skipped = await read_after(database, "acme", first.sequence, 10, skip_pruned=True)

    assert str(second.sequence) in error.message
    assert error.details["pruned_through_sequence"] == str(second.sequence)
    assert skipped.events == [third]


async def test_check_cursor_accepts_log_range(database: Database) -> None:
    conversation = make_conversation()
    await append(database, conversation, now_ms=1_000)
    second = await append(database, conversation, now_ms=2_000)
    third = await append(database, conversation, now_ms=9_000)
    await prune_events(database, older_than_ms=5_000)

    assert await check_cursor(database, None) == third.sequence
    assert await check_cursor(database, 0) == 0
    assert await check_cursor(database, second.sequence) == second.sequence
    assert await check_cursor(database, third.sequence) == third.sequence


async def test_check_cursor_rejects_expired(database: Database) -> None:
    conversation = make_conversation()
    first = await append(database, conversation, now_ms=1_000)
    second = await append(database, conversation, now_ms=2_000)
    await prune_events(database, older_than_ms=5_000)

    error = await expect_out_of_range(
        check_cursor(database, first.sequence), "CURSOR_EXPIRED"
    )

    assert f"after_sequence {second.sequence}" in error.message
    assert "without after_sequence" in error.message


async def test_check_cursor_rejects_ahead(database: Database) -> None:
    written = await append(database, make_conversation())

    error = await expect_out_of_range(
        check_cursor(database, written.sequence + 1), "CURSOR_AHEAD"
    )

    assert str(written.sequence) in error.message


async def test_check_cursor_after_full_prune(database: Database) -> None:
    conversation = make_conversation()
    await append(database, conversation, now_ms=1_000)
    last = await append(database, conversation, now_ms=2_000)
    await prune_events(database, older_than_ms=5_000)

    # The newest sequence survives the deletion of every row.
    assert await check_cursor(database, None) == last.sequence
    assert await check_cursor(database, last.sequence) == last.sequence


# --- the stream, against the real server ------------------------------------


class EventStream:
    """One SubscribeEvents call whose reads fail after WAIT_SECONDS."""

    def __init__(
        self, stubs: Stubs, key: tuple[tuple[str, str], ...] = ACME, **fields: Any
    ) -> None:
        request = events_pb2.SubscribeEventsRequest(**fields)
        self.call = stubs.events.SubscribeEvents(request, metadata=key)

    async def read(self) -> events_pb2.SubscribeEventsResponse:
        item = await asyncio.wait_for(self.call.read(), WAIT_SECONDS)
        assert item is not grpc.aio.EOF, "the stream ended"
        assert isinstance(item, events_pb2.SubscribeEventsResponse)
        return item

    async def read_heartbeat(self) -> events_pb2.Heartbeat:
        """Read the next item, which must be a heartbeat."""
        item = await self.read()
        assert item.WhichOneof("kind") == "heartbeat", item
        return item.heartbeat

    async def events_until(
        self, done: Callable[[list[events_pb2.Event]], bool]
    ) -> list[events_pb2.Event]:
        """Collect events, skipping heartbeats, until `done(collected)` holds."""
        collected: list[events_pb2.Event] = []
        while not done(collected):
            item = await self.read()
            if item.WhichOneof("kind") == "event":
                collected.append(item.event)
        return collected

    async def events_through(self, sequence: int) -> list[events_pb2.Event]:
        """Collect events until a heartbeat reports `sequence` or a later position."""
        collected: list[events_pb2.Event] = []
        while True:
            item = await self.read()
            if item.WhichOneof("kind") == "event":
                collected.append(item.event)
            elif item.heartbeat.sequence >= sequence:
                return collected

    def cancel(self) -> None:
        self.call.cancel()


def delivered(message_ids: set[str]) -> Callable[[list[events_pb2.Event]], bool]:
    """Return a check that every message in `message_ids` has a DELIVERED event."""

    def check(collected: list[events_pb2.Event]) -> bool:
        done = {
            event.message.id
            for event in collected
            if event.type == STATUS_CHANGED and event.message.status == DELIVERED
        }
        return message_ids <= done

    return check


async def send(
    stubs: Stubs,
    *,
    user_number: str = USER_NUMBER,
    agent_number: str = ACME_NUMBER,
    channel: types_pb2.Channel.ValueType = types_pb2.CHANNEL_SMS,
    metadata: dict[str, Any] | None = None,
    text: str = "hi",
) -> conversation_pb2.SendMessageResponse:
    request = conversation_pb2.SendMessageRequest(
        agent_number=agent_number,
        user_number=user_number,
        channel=channel,
        agent_message=text,
    )
    if metadata is not None:
        request.metadata.CopyFrom(struct_from(metadata))
    response: conversation_pb2.SendMessageResponse = (
        await stubs.conversations.SendMessage(request, metadata=ACME)
    )
    return response


def struct_from(data: dict[str, Any]) -> struct_pb2.Struct:
    value = struct_pb2.Struct()
    json_format.ParseDict(data, value)
    return value


async def live_stream(
    stubs: Stubs, key: tuple[tuple[str, str], ...] = ACME, **fields: Any
) -> EventStream:
    """Open a stream at new events and wait for its first heartbeat.

    The heartbeat proves the server registered the subscription, so events
    written afterwards reach it.
    """
    stream = EventStream(stubs, key, heartbeat_seconds=1, **fields)
    await stream.read_heartbeat()
    return stream


def rpc_error_details(
    error: grpc.aio.AioRpcError,
) -> tuple[error_details_pb2.ErrorInfo, list[str]]:
    """Return the ErrorInfo and the BadRequest field names of a failed call."""
    status = rpc_status.from_call(error)
    assert status is not None, "the error carries no google.rpc.Status"
    info = error_details_pb2.ErrorInfo()
    fields: list[str] = []
    for detail in status.details:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            detail.Unpack(info)
        elif detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad_request = error_details_pb2.BadRequest()
            detail.Unpack(bad_request)
            fields.extend(v.field for v in bad_request.field_violations)
    return info, fields


async def expect_stream_error(stream: EventStream) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await asyncio.wait_for(stream.call.read(), WAIT_SECONDS)
    return caught.value


async def test_events_carry_conversation_metadata(stubs: Stubs) -> None:
    stream = await live_stream(stubs)

    response = await send(stubs, metadata={"crm_id": "A-17"})
    events = await stream.events_until(delivered({response.message_id}))
    replayed = await EventStream(stubs, after_sequence=0).events_until(
        lambda collected: len(collected) == len(events)
    )

    assert [event.type for event in events] == [
        CREATED,
        MESSAGE_CREATED,
        STATUS_CHANGED,
        STATUS_CHANGED,
        STATUS_CHANGED,
    ]
    statuses = [(e.previous_status, e.message.status) for e in events[2:]]
    assert statuses == [
        (types_pb2.MESSAGE_STATUS_UNSPECIFIED, QUEUED),
        (QUEUED, SENT),
        (SENT, DELIVERED),
    ]
    for event in events:
        assert json_format.MessageToDict(event.metadata) == {"crm_id": "A-17"}
        assert event.conversation_id == response.conversation_id
        assert event.account_id == "acme"
        assert event.agent_number == ACME_NUMBER
        assert event.user_number == USER_NUMBER
        assert event.time.seconds > 0
    assert events[0].conversation.id == response.conversation_id
    assert events[1].message.id == response.message_id
    sequences = [event.sequence for event in events]
    assert sequences == sorted(set(sequences))
    assert replayed == events


async def test_resume_after_disconnect(
    stubs: Stubs, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Small pages make the replay span several queries.
    monkeypatch.setattr("server.services.events.REPLAY_PAGE_SIZE", 7)
    witness = await live_stream(stubs)
    first = await send(stubs)
    before = await witness.events_until(delivered({first.message_id}))
    reader = EventStream(stubs, after_sequence=0)
    seen = await reader.events_until(lambda collected: len(collected) == 2)
    cursor = seen[-1].sequence
    reader.cancel()

    message_ids = {
        (await send(stubs, text=f"missed {n}")).message_id for n in range(50)
    }
    missed = await witness.events_until(delivered(message_ids))
    resumed = EventStream(stubs, after_sequence=cursor)
    expected = [event for event in before + missed if event.sequence > cursor]
    replayed = await resumed.events_until(
        lambda collected: len(collected) == len(expected)
    )
    live = await send(stubs, text="after resume")
    live_events = await resumed.events_until(delivered({live.message_id}))
    witness_live = await witness.events_until(delivered({live.message_id}))

    assert seen == before[:2]
    assert len(expected) == len(before) - 2 + 50 * 4
    assert replayed == expected
    assert live_events == witness_live
    assert live_events[0].sequence > replayed[-1].sequence
    sequences = [event.sequence for event in replayed + live_events]
    assert sequences == sorted(set(sequences))


async def test_account_isolation(stubs: Stubs) -> None:
    globex = await live_stream(stubs, GLOBEX)
    acme = await live_stream(stubs)

    response = await send(stubs)
    acme_events = await acme.events_until(delivered({response.message_id}))
    last_sequence = acme_events[-1].sequence
    globex_live = await globex.events_through(last_sequence)
    globex_replay = await EventStream(stubs, GLOBEX, after_sequence=0).events_through(
        last_sequence
    )

    assert len(acme_events) == 5
    assert globex_live == []
    assert globex_replay == []


def metadata_of(event: events_pb2.Event) -> dict[str, Any]:
    return json_format.MessageToDict(event.metadata)


FILTER_CASES: list[tuple[str, dict[str, Any], Callable[[events_pb2.Event], bool]]] = [
    (
        "agent number in other notation",
        {"agent_numbers": ["+1 (415) 555-0101"]},
        lambda event: event.agent_number == ACME_WHATSAPP_NUMBER,
    ),
    (
        "event type",
        {"event_types": [CREATED, MESSAGE_CREATED]},
        lambda event: event.type in (CREATED, MESSAGE_CREATED),
    ),
    (
        "metadata string",
        {"metadata": {"crm_id": "A-17"}},
        lambda event: metadata_of(event).get("crm_id") == "A-17",
    ),
    (
        "metadata number",
        {"metadata": {"tier": "3"}},
        lambda event: metadata_of(event).get("tier") == 3,
    ),
    (
        "type and metadata",
        {"event_types": [STATUS_CHANGED], "metadata": {"crm_id": "A-17"}},
        lambda event: (
            event.type == STATUS_CHANGED and metadata_of(event).get("crm_id") == "A-17"
        ),
    ),
]


@pytest.mark.parametrize(
    ("fields", "expected"),
    [(fields, expected) for _, fields, expected in FILTER_CASES],
    ids=[case_id for case_id, _, _ in FILTER_CASES],
)
async def test_filters_on_replay_and_live(
    stubs: Stubs, fields: dict[str, Any], expected: Callable[[events_pb2.Event], bool]
) -> None:
    witness = EventStream(stubs, after_sequence=0, heartbeat_seconds=1)
    first_round = [
        await send(stubs, metadata={"crm_id": "A-17", "tier": 3}),
        await send(stubs, user_number=OTHER_USER_NUMBER, metadata={"crm_id": "B-2"}),
        await send(
            stubs,
            agent_number=ACME_WHATSAPP_NUMBER,
            channel=types_pb2.CHANNEL_WHATSAPP,
            metadata={"crm_id": "A-17"},
        ),
    ]
    stored = await witness.events_until(delivered({r.message_id for r in first_round}))
    filtered = EventStream(stubs, after_sequence=0, heartbeat_seconds=1, **fields)
    from_log = await filtered.events_through(stored[-1].sequence)

    second_round = [
        await send(stubs, text="again"),
        await send(stubs, user_number=OTHER_USER_NUMBER, text="again"),
        await send(
            stubs, agent_number=ACME_WHATSAPP_NUMBER, channel=types_pb2.CHANNEL_WHATSAPP
        ),
    ]
    live = await witness.events_until(delivered({r.message_id for r in second_round}))
    from_live = await filtered.events_through(live[-1].sequence)

    expected_from_log = [event for event in stored if expected(event)]
    expected_from_live = [event for event in live if expected(event)]
    assert expected_from_log
    assert expected_from_live
    assert len(expected_from_log) < len(stored)
    assert from_log == expected_from_log
    assert from_live == expected_from_live


async def test_conversation_id_filter(stubs: Stubs) -> None:
    witness = EventStream(stubs, after_sequence=0, heartbeat_seconds=1)
    chosen = await send(stubs)
    other = await send(stubs, user_number=OTHER_USER_NUMBER)
    stored = await witness.events_until(
        delivered({chosen.message_id, other.message_id})
    )
    filtered = EventStream(
        stubs,
        after_sequence=0,
        heartbeat_seconds=1,
        conversation_ids=[chosen.conversation_id],
    )

    from_log = await filtered.events_through(stored[-1].sequence)
    again = await send(stubs, text="again")
    await send(stubs, user_number=OTHER_USER_NUMBER, text="again")
    from_live = await filtered.events_until(delivered({again.message_id}))

    assert from_log == [
        e for e in stored if e.conversation_id == chosen.conversation_id
    ]
    assert len(from_log) == 5
    assert {event.conversation_id for event in from_live} == {chosen.conversation_id}
    assert len(from_live) == 4


INVALID_REQUESTS: list[tuple[str, dict[str, Any], str, str]] = [
    (
        "bad agent number",
        {"agent_numbers": ["555-0100"]},
        "INVALID_PHONE_NUMBER",
        "agent_numbers[0]",
    ),
    ("unspecified type", {"event_types": [0]}, "INVALID_EVENT_TYPE", "event_types[0]"),
    (
        "unknown type",
        {"event_types": [CREATED, 99]},
        "INVALID_EVENT_TYPE",
        "event_types[1]",
    ),
    (
        "empty conversation id",
        {"conversation_ids": [""]},
        "INVALID_CONVERSATION_ID",
        "conversation_ids[0]",
    ),
    (
        "empty metadata key",
        {"metadata": {"": "x"}},
        "INVALID_METADATA_FILTER",
        "metadata",
    ),
    (
        "heartbeat too long",
        {"heartbeat_seconds": 301},
        "INVALID_HEARTBEAT_SECONDS",
        "heartbeat_seconds",
    ),
    (
        "too many ids",
        {"conversation_ids": ["c"] * 1001},
        "TOO_MANY_FILTER_VALUES",
        "conversation_ids",
    ),
]


@pytest.mark.parametrize(
    ("fields", "reason", "field"),
    [case[1:] for case in INVALID_REQUESTS],
    ids=[case[0] for case in INVALID_REQUESTS],
)
async def test_invalid_request_rejected(
    stubs: Stubs, fields: dict[str, Any], reason: str, field: str
) -> None:
    error = await expect_stream_error(EventStream(stubs, **fields))
    info, violations = rpc_error_details(error)

    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert info.reason == reason
    assert info.domain == "parley"
    assert violations == [field]
    assert field.split("[")[0] in (error.details() or "")


async def test_operator_key_rejected(stubs: Stubs) -> None:
    error = await expect_stream_error(EventStream(stubs, OPERATOR))
    info, _ = rpc_error_details(error)

    assert error.code() == grpc.StatusCode.PERMISSION_DENIED
    assert info.reason == "ACCOUNT_KEY_REQUIRED"


async def test_missing_key_rejected(stubs: Stubs) -> None:
    error = await expect_stream_error(EventStream(stubs, ()))

    assert error.code() == grpc.StatusCode.UNAUTHENTICATED


async def test_heartbeat_reports_position_when_idle(stubs: Stubs) -> None:
    witness = EventStream(stubs, after_sequence=0)
    response = await send(stubs)
    events = await witness.events_until(delivered({response.message_id}))
    last_sequence = events[-1].sequence

    live = EventStream(stubs, heartbeat_seconds=1)
    live_heartbeat = await live.read_heartbeat()
    filtered = EventStream(
        stubs,
        after_sequence=0,
        heartbeat_seconds=1,
        event_types=[events_pb2.EVENT_TYPE_TIMED_OUT],
    )
    filtered_heartbeat = await filtered.read_heartbeat()
    next_heartbeat = await live.read_heartbeat()

    assert live_heartbeat.sequence == last_sequence
    assert live_heartbeat.time.seconds > 0
    # Events that did not match still move the position forward.
    assert filtered_heartbeat.sequence == last_sequence
    assert next_heartbeat.sequence == last_sequence


async def test_heartbeat_follows_delivered_events(stubs: Stubs) -> None:
    stream = await live_stream(stubs)

    response = await send(stubs)
    events = await stream.events_until(delivered({response.message_id}))
    heartbeat = await stream.read_heartbeat()

    assert heartbeat.sequence == events[-1].sequence


@pytest.fixture
def small_buffer(monkeypatch: pytest.MonkeyPatch) -> list[Subscription]:
    """Shrink live buffers to 2 events and record every catch-up from the log.

    SendMessage publishes three events at once, so every send overflows a
    buffer of 2. Request this fixture before `server` so the broker is
    built with the small buffer.
    """
    monkeypatch.setattr("server.events.DEFAULT_SUBSCRIPTION_BUFFER", 2)
    resets: list[Subscription] = []
    original_reset = Subscription.reset

    def recording_reset(subscription: Subscription) -> None:
        resets.append(subscription)
        original_reset(subscription)

    monkeypatch.setattr(Subscription, "reset", recording_reset)
    return resets


async def test_slow_subscriber_loses_nothing(
    small_buffer: list[Subscription], server: Parley, stubs: Stubs
) -> None:
    witness = await live_stream(stubs)
    slow = await live_stream(stubs)
    streams_started = len(small_buffer)

    # The slow stream reads nothing while 20 messages go through.
    message_ids = {(await send(stubs, text=f"burst {n}")).message_id for n in range(20)}
    seen_by_witness = await witness.events_until(delivered(message_ids))
    last_sequence = seen_by_witness[-1].sequence
    seen_by_slow = await slow.events_through(last_sequence)
    from_log = await EventStream(stubs, after_sequence=0).events_until(
        lambda collected: len(collected) == len(seen_by_witness)
    )

    assert streams_started == 2
    assert len(small_buffer) > streams_started, "no stream fell back to the log"
    # The first send creates the conversation: one more event than the rest.
    assert len(seen_by_witness) == 1 + 20 * 4
    assert seen_by_slow == from_log
    assert seen_by_witness == from_log


async def test_replay_overlap_sent_once(
    server: Parley, stubs: Stubs, monkeypatch: pytest.MonkeyPatch
) -> None:
    components = server.components
    assert components is not None
    written: list[events_pb2.Event] = []

    async def write_then_read(*args: Any, **kwargs: Any) -> LogPage:
        # The event is committed after the stream cleared its buffer and
        # before it reads the log, so it arrives both ways.
        if not written:
            async with components.database.transaction() as transaction:
                event = await components.events.append(
                    transaction, CREATED, conversation=make_conversation(), now_ms=1_000
                )
            written.append(event)
        return await read_after(*args, **kwargs)

    monkeypatch.setattr("server.services.events.read_after", write_then_read)
    stream = EventStream(stubs, after_sequence=0, heartbeat_seconds=1)
    first = await stream.read()
    received = await stream.events_through(written[0].sequence)

    assert first.event == written[0]
    assert received == []


async def test_cursor_expired_after_prune(server: Parley, stubs: Stubs) -> None:
    witness = EventStream(stubs, after_sequence=0)
    responses = [await send(stubs), await send(stubs, user_number=OTHER_USER_NUMBER)]
    events = await witness.events_until(delivered({r.message_id for r in responses}))
    last_sequence = events[-1].sequence
    assert server.components is not None
    database = server.components.database

    deleted = await prune_events(database, server.components.clock.now_ms() + 1)
    error = await expect_stream_error(
        EventStream(stubs, after_sequence=events[0].sequence)
    )
    info, _ = rpc_error_details(error)
    at_cut = await EventStream(
        stubs, after_sequence=last_sequence, heartbeat_seconds=1
    ).read_heartbeat()
    from_start = await EventStream(
        stubs, after_sequence=0, heartbeat_seconds=1
    ).read_heartbeat()

    assert deleted == len(events)
    assert error.code() == grpc.StatusCode.OUT_OF_RANGE
    assert info.reason == "CURSOR_EXPIRED"
    assert f"after_sequence {last_sequence} or higher" in (error.details() or "")
    assert at_cut.sequence == last_sequence
    assert from_start.sequence == last_sequence


async def test_cursor_ahead_rejected(stubs: Stubs) -> None:
    # 2**64 - 1 is beyond SQLite's signed 64-bit integers and must still be
    # rejected with CURSOR_AHEAD rather than an internal error.
    for cursor in (1_000_000, 2**64 - 1):
        error = await expect_stream_error(EventStream(stubs, after_sequence=cursor))
        info, _ = rpc_error_details(error)

        assert error.code() == grpc.StatusCode.OUT_OF_RANGE, cursor
        assert info.reason == "CURSOR_AHEAD", cursor
        assert str(cursor) in (error.details() or ""), cursor


async def wait_until(check: Callable[[], bool]) -> None:
    """Poll `check` until it holds; fail after WAIT_SECONDS."""
    deadline = asyncio.get_running_loop().time() + WAIT_SECONDS
    while not check():
        assert asyncio.get_running_loop().time() < deadline, "timed out waiting"
        await asyncio.sleep(0.01)


def subscriber_gauge() -> float:
    value = REGISTRY.get_sample_value("parley_event_subscribers")
    return value or 0.0


async def test_cancel_unsubscribes(server: Parley, stubs: Stubs) -> None:
    assert server.components is not None
    broker = server.components.broker
    gauge_before = subscriber_gauge()

    stream = await live_stream(stubs)
    open_count = broker.subscription_count()
    gauge_open = subscriber_gauge()
    stream.cancel()
    await wait_until(lambda: broker.subscription_count() == 0)

    assert open_count == 1
    assert gauge_open == gauge_before + 1
    assert subscriber_gauge() == gauge_before


async def test_stream_ends_ok_when_server_stops(
    tmp_path: Path, config_data: dict[str, Any]
) -> None:
    config_path = tmp_path / "own.yaml"
    config_path.write_text(yaml.safe_dump(config_data))
    parley = Parley(tmp_path / "own.db", "127.0.0.1:0", config_path)
    await parley.start()
    stopped = False
    try:
        async with grpc.aio.insecure_channel(parley.address) as channel:
            stream = await live_stream(Stubs(channel))
            await parley.stop(grace=5.0)
            stopped = True
            end = await asyncio.wait_for(stream.call.read(), WAIT_SECONDS)
            code = await stream.call.code()
    finally:
        if not stopped:
            await parley.stop(grace=1.0)

    assert end is grpc.aio.EOF
    assert code == grpc.StatusCode.OK
