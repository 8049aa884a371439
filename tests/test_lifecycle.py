"""Conversation lifecycle: pathway replies, timers, handoff, end results."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest
import yaml
from conftest import (
    ACME,
    ACME_NUMBER,
    USER_NUMBER,
    Stubs,
    base_config,
    with_override_pathways,
)
from google.protobuf import json_format, struct_pb2
from helpers import error_reason
from parley.v1 import (
    admin_pb2,
    carrier_pb2,
    conversation_pb2,
    definitions_pb2,
    events_pb2,
    types_pb2,
)

from server.app import Parley

START_MS = 1_800_000_000_000

BOOKING_PATHWAY: dict[str, Any] = {
    "start_node_id": "ask",
    "nodes": [
        {
            "id": "ask",
            "text": "Hi {{ request_data.name }}, shall we book your table? (yes/no)",
            "edges": [
                {"target_node_id": "confirm", "keywords": ["yes", "sure"]},
                {"target_node_id": "bye", "keywords": ["no"]},
            ],
            "fallback_text": "Please answer yes or no.",
        },
        {
            "id": "confirm",
            "text": "Booked, {{ request_data.name }}! How many guests?",
            "edges": [
                {
                    "target_node_id": "done",
                    "captures": [
                        {"variable": "guests", "regex": "(\\d+)", "type": "NUMBER"}
                    ],
                    "expression": "guests >= 1 and guests <= 8",
                }
            ],
        },
        {
            "id": "done",
            "text": "See you, party of {{ guests }}.",
            "end": True,
            "end_reason": "BOOKED",
        },
        {"id": "bye", "text": "No problem, goodbye.", "end": True},
    ],
}


@pytest.fixture
def config_data() -> dict[str, Any]:
    """The base config plus the pathways that overrides in these tests name."""
    return with_override_pathways(base_config())


class ManualClock:
    def __init__(self, now_ms: int) -> None:
        self.now = now_ms

    def now_ms(self) -> int:
        return self.now


async def publish_booking(stubs: Stubs) -> None:
    definition = json_format.ParseDict(
        BOOKING_PATHWAY, definitions_pb2.PathwayDefinition()
    )
    await stubs.admin.PublishPathwayVersion(
        admin_pb2.PublishPathwayVersionRequest(
            pathway_id="booking", version="1", definition=definition
        ),
        metadata=ACME,
    )


def struct(values: dict[str, Any]) -> struct_pb2.Struct:
    result = struct_pb2.Struct()
    result.update(values)
    return result


async def inbound(stubs: Stubs, text: str) -> carrier_pb2.ReceiveMessageResponse:
    return await stubs.carrier.ReceiveMessage(
        carrier_pb2.ReceiveMessageRequest(
            agent_number=ACME_NUMBER, user_number=USER_NUMBER, text=text
        ),
        metadata=ACME,
    )


async def texts(stubs: Stubs, conversation_id: str) -> list[tuple[int, str]]:
    page = await stubs.conversations.ListMessages(
        conversation_pb2.ListMessagesRequest(conversation_id=conversation_id),
        metadata=ACME,
    )
    return [(m.sender, m.text) for m in page.messages]


async def get(stubs: Stubs, conversation_id: str) -> types_pb2.Conversation:
    return await stubs.conversations.GetConversation(
        conversation_pb2.GetConversationRequest(conversation_id=conversation_id),
        metadata=ACME,
    )


async def wait_for(
    stubs: Stubs, conversation_id: str, state: int
) -> types_pb2.Conversation:
    for _ in range(200):
        conversation = await get(stubs, conversation_id)
        if conversation.state == state and (
            state != types_pb2.CONVERSATION_STATE_ENDED or not _finalizing(conversation)
        ):
            return conversation
        await asyncio.sleep(0.05)
    raise AssertionError(f"conversation never reached state {state}")


def _finalizing(conversation: types_pb2.Conversation) -> bool:
    expected = len(conversation.config.outcome_ids)
    return len(conversation.outcomes) < expected


class TestPathwayReplies:
    async def test_two_step_pathway(self, stubs: Stubs) -> None:
        """Empty agent_message sends node 1; "yes" takes the yes edge to node 2."""
        await publish_booking(stubs)
        sent = await stubs.conversations.SendMessage(
            conversation_pb2.SendMessageRequest(
                agent_number=ACME_NUMBER,
                user_number=USER_NUMBER,
                pathway_id="booking",
                request_data=struct({"name": "Ada"}),
            ),
            metadata=ACME,
        )
        agent = types_pb2.SENDER_AGENT
        user = types_pb2.SENDER_USER
        assert await texts(stubs, sent.conversation_id) == [
            (agent, "Hi Ada, shall we book your table? (yes/no)")
        ]
        await inbound(stubs, "Yes please")
        conversation = await get(stubs, sent.conversation_id)
        assert conversation.current_node_id == "confirm"
        assert conversation.resolved_pathway_version == "1"
        assert (await texts(stubs, sent.conversation_id))[1:] == [
            (user, "Yes please"),
            (agent, "Booked, Ada! How many guests?"),
        ]

    async def test_capture_and_end_node(self, stubs: Stubs) -> None:
        """A captured number feeds the expression and the end node ends it."""
        await publish_booking(stubs)
        sent = await stubs.conversations.SendMessage(
            conversation_pb2.SendMessageRequest(
                agent_number=ACME_NUMBER, user_number=USER_NUMBER, pathway_id="booking"
            ),
            metadata=ACME,
        )
        await inbound(stubs, "yes")
        await inbound(stubs, "we are 4")
        conversation = await wait_for(
            stubs, sent.conversation_id, types_pb2.CONVERSATION_STATE_ENDED
        )
        assert conversation.end_reason == "BOOKED"
        assert dict(conversation.variables) == {"guests": 4}
        assert (await texts(stubs, sent.conversation_id))[-1][
            1
        ] == "See you, party of 4."

    async def test_unmatched_reply_gets_fallback(self, stubs: Stubs) -> None:
        await publish_booking(stubs)
        sent = await stubs.conversations.SendMessage(
            conversation_pb2.SendMessageRequest(
                agent_number=ACME_NUMBER, user_number=USER_NUMBER, pathway_id="booking"
            ),
            metadata=ACME,
        )
        await inbound(stubs, "maybe later")
        conversation = await get(stubs, sent.conversation_id)
        assert conversation.current_node_id == "ask"
        assert (await texts(stubs, sent.conversation_id))[-1][
            1
        ] == "Please answer yes or no."

    async def test_template_injection_renders_as_text(self, stubs: Stubs) -> None:
        await publish_booking(stubs)
        payload = "{{ ''.__class__ }}{% for x in y %}"
        sent = await stubs.conversations.SendMessage(
            conversation_pb2.SendMessageRequest(
                agent_number=ACME_NUMBER,
                user_number=USER_NUMBER,
                pathway_id="booking",
                request_data=struct({"name": payload}),
            ),
            metadata=ACME,
        )
        text = (await texts(stubs, sent.conversation_id))[0][1]
        assert text == f"Hi {payload}, shall we book your table? (yes/no)"

    async def test_no_pathway_stores_without_reply(self, stubs: Stubs) -> None:
        sent = await stubs.conversations.SendMessage(
            conversation_pb2.SendMessageRequest(
                agent_number=ACME_NUMBER, user_number=USER_NUMBER, agent_message="Hello"
            ),
            metadata=ACME,
        )
        await inbound(stubs, "hi there")
        assert [t for _, t in await texts(stubs, sent.conversation_id)] == [
            "Hello",
            "hi there",
        ]

    async def test_empty_message_without_pathway(self, stubs: Stubs) -> None:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stubs.conversations.SendMessage(
                conversation_pb2.SendMessageRequest(
                    agent_number=ACME_NUMBER, user_number=USER_NUMBER
                ),
                metadata=ACME,
            )
        assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert error_reason(caught.value) == "PATHWAY_REQUIRED"

    async def test_unpublished_pathway_rejected(
        self, server: Parley, stubs: Stubs
    ) -> None:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stubs.conversations.SendMessage(
                conversation_pb2.SendMessageRequest(
                    agent_number=ACME_NUMBER, user_number=USER_NUMBER, pathway_id="nope"
                ),
                metadata=ACME,
            )
        assert error_reason(caught.value) == "PATHWAY_NOT_FOUND"
        page = await stubs.conversations.ListConversations(
            conversation_pb2.ListConversationsRequest(), metadata=ACME
        )
        assert list(page.conversations) == []


@pytest.fixture
async def clocked(tmp_path: Path) -> AsyncIterator[tuple[Parley, ManualClock, Stubs]]:
    """A server whose clock moves only when the test advances it."""
    config_path = tmp_path / "parley.yaml"
    config_path.write_text(yaml.safe_dump(base_config()))
    clock = ManualClock(START_MS)
    parley = Parley(tmp_path / "parley.db", "127.0.0.1:0", config_path, clock=clock)
    await parley.start()
    try:
        async with grpc.aio.insecure_channel(parley.address) as channel:
            yield parley, clock, Stubs(channel)
    finally:
        await parley.stop(grace=1.0)


async def advance(parley: Parley, clock: ManualClock, seconds: float) -> None:
    """Move the clock and wait until the scheduler has fired what came due."""
    clock.now += int(seconds * 1000)
    assert parley.components is not None
    parley.components.timer_wake.wake()
    for _ in range(200):
        row = await parley.components.database.fetchone(
            "SELECT COUNT(*) AS due FROM timers WHERE due_at <= ?", (clock.now,)
        )
        if row is not None and row["due"] == 0:
            return
        await asyncio.sleep(0.02)
    raise AssertionError("due timers were not fired")


async def event_types(stubs: Stubs, conversation_id: str) -> list[int]:
    stream = stubs.events.SubscribeEvents(
        events_pb2.SubscribeEventsRequest(
            after_sequence=0, conversation_ids=[conversation_id], heartbeat_seconds=1
        ),
        metadata=ACME,
    )
    types = []
    async for item in stream:
        if item.HasField("heartbeat"):
            break
        types.append(item.event.type)
    stream.cancel()
    return types


def timer_request(**fields: Any) -> conversation_pb2.SendMessageRequest:
    fields.setdefault("agent_number", ACME_NUMBER)
    fields.setdefault("user_number", USER_NUMBER)
    fields.setdefault("agent_message", "Your table is ready.")
    fields.setdefault("warning_seconds", 60)
    fields.setdefault("timeout_seconds", 120)
    fields.setdefault("warning_message", "Still there?")
    fields.setdefault("timeout_message", "Closing this chat.")
    return conversation_pb2.SendMessageRequest(**fields)


class TestTimersWithManualClock:
    async def test_warning_then_timeout_in_order(
        self, clocked: tuple[Parley, ManualClock, Stubs]
    ) -> None:
        parley, clock, stubs = clocked
        sent = await stubs.conversations.SendMessage(timer_request(), metadata=ACME)
        await advance(parley, clock, 59)
        assert [t for _, t in await texts(stubs, sent.conversation_id)] == [
            "Your table is ready."
        ]
        await advance(parley, clock, 2)
        await advance(parley, clock, 30)
        assert [t for _, t in await texts(stubs, sent.conversation_id)] == [
            "Your table is ready.",
            "Still there?",
        ]
        await advance(parley, clock, 30)
        conversation = await wait_for(
            stubs, sent.conversation_id, types_pb2.CONVERSATION_STATE_ENDED
        )
        assert conversation.end_reason == "TIMEOUT"
        assert [t for _, t in await texts(stubs, sent.conversation_id)][-1] == (
            "Closing this chat."
        )
        await asyncio.sleep(0.2)
        kinds = [
            t
            for t in await event_types(stubs, sent.conversation_id)
            if t
            in (
                events_pb2.EVENT_TYPE_WARNING_SENT,
                events_pb2.EVENT_TYPE_TIMED_OUT,
                events_pb2.EVENT_TYPE_CONVERSATION_ENDED,
            )
        ]
        assert kinds == [
            events_pb2.EVENT_TYPE_WARNING_SENT,
            events_pb2.EVENT_TYPE_TIMED_OUT,
            events_pb2.EVENT_TYPE_CONVERSATION_ENDED,
        ]

    async def test_user_reply_resets_clock(
        self, clocked: tuple[Parley, ManualClock, Stubs]
    ) -> None:
        parley, clock, stubs = clocked
        sent = await stubs.conversations.SendMessage(
            timer_request(warning_seconds=0), metadata=ACME
        )
        await advance(parley, clock, 90)
        await inbound(stubs, "I'm here")
        await advance(parley, clock, 90)
        conversation = await get(stubs, sent.conversation_id)
        assert conversation.state == types_pb2.CONVERSATION_STATE_ACTIVE
        await advance(parley, clock, 31)
        conversation = await wait_for(
            stubs, sent.conversation_id, types_pb2.CONVERSATION_STATE_ENDED
        )
        assert conversation.end_reason == "TIMEOUT"

    async def test_handoff_suspends_timeout_and_replies(
        self, clocked: tuple[Parley, ManualClock, Stubs]
    ) -> None:
        parley, clock, stubs = clocked
        await publish_booking(stubs)
        sent = await stubs.conversations.SendMessage(
            timer_request(agent_message="", pathway_id="booking"), metadata=ACME
        )
        request = conversation_pb2.HandoffConversationRequest(
            conversation_id=sent.conversation_id, actor="grace@acme"
        )
        handed = await stubs.conversations.HandoffConversation(request, metadata=ACME)
        assert handed.handed_off
        assert handed.handoff_actor == "grace@acme"
        await inbound(stubs, "yes")
        await advance(parley, clock, 600)
        conversation = await get(stubs, sent.conversation_id)
        assert conversation.state == types_pb2.CONVERSATION_STATE_ACTIVE
        assert conversation.current_node_id == "ask"
        assert len(await texts(stubs, sent.conversation_id)) == 2  # node 1 and "yes"
        await stubs.conversations.AddMessage(
            conversation_pb2.AddMessageRequest(
                conversation_id=sent.conversation_id,
                text="A human here.",
                actor="grace",
            ),
            metadata=ACME,
        )
        resumed = await stubs.conversations.ResumeConversation(
            conversation_pb2.ResumeConversationRequest(
                conversation_id=sent.conversation_id
            ),
            metadata=ACME,
        )
        assert not resumed.handed_off
        assert resumed.handoff_actor == ""
        await advance(parley, clock, 121)
        conversation = await wait_for(
            stubs, sent.conversation_id, types_pb2.CONVERSATION_STATE_ENDED
        )
        assert conversation.end_reason == "TIMEOUT"


class TestTimersRealTime:
    async def test_short_warning_and_timeout(self, stubs: Stubs) -> None:
        """warning 1 s, timeout 2 s: warning once, timeout message, ended TIMEOUT."""
        sent = await stubs.conversations.SendMessage(
            timer_request(warning_seconds=1, timeout_seconds=2), metadata=ACME
        )
        conversation = await wait_for(
            stubs, sent.conversation_id, types_pb2.CONVERSATION_STATE_ENDED
        )
        assert conversation.end_reason == "TIMEOUT"
        assert [t for _, t in await texts(stubs, sent.conversation_id)] == [
            "Your table is ready.",
            "Still there?",
            "Closing this chat.",
        ]

    async def test_reply_at_1_5_seconds_prevents_timeout(self, stubs: Stubs) -> None:
        sent = await stubs.conversations.SendMessage(
            timer_request(warning_seconds=0, timeout_seconds=2), metadata=ACME
        )
        await asyncio.sleep(1.5)
        await inbound(stubs, "still here")
        await asyncio.sleep(1.0)
        conversation = await get(stubs, sent.conversation_id)
        assert conversation.state == types_pb2.CONVERSATION_STATE_ACTIVE


class TestEndResults:
    async def test_outcomes_and_citations_at_end(self, stubs: Stubs) -> None:
        await stubs.admin.PutCitationSchema(
            admin_pb2.PutCitationSchemaRequest(
                schema=definitions_pb2.CitationSchema(
                    id="contact",
                    variables=[
                        definitions_pb2.CitationVariable(
                            name="email",
                            type="STRING",
                            rules=[definitions_pb2.ExtractionRule(preset="EMAIL")],
                        ),
                        definitions_pb2.CitationVariable(
                            name="visit_date",
                            type="DATE",
                            rules=[definitions_pb2.ExtractionRule(preset="DATE")],
                        ),
                    ],
                )
            ),
            metadata=ACME,
        )
        for outcome_id, script in (
            ("booked", "return { booked: true };"),
            ("spin", "while (true) {}"),
        ):
            await stubs.admin.PutOutcome(
                admin_pb2.PutOutcomeRequest(
                    outcome=definitions_pb2.Outcome(
                        id=outcome_id, script=script, time_limit_ms=200
                    )
                ),
                metadata=ACME,
            )
        sent = await stubs.conversations.SendMessage(
            conversation_pb2.SendMessageRequest(
                agent_number=ACME_NUMBER,
                user_number=USER_NUMBER,
                agent_message="What's your email and when do you come?",
                outcome_ids=types_pb2.StringList(values=["booked", "spin"]),
                citation_schema_ids=types_pb2.StringList(values=["contact"]),
                metadata=struct({"crm_id": "A-17"}),
            ),
            metadata=ACME,
        )
        email_message = await inbound(stubs, "It's ada@example.com")
        date_message = await inbound(stubs, "We come on 2026-12-24")
        ended = await stubs.conversations.EndConversation(
            conversation_pb2.EndConversationRequest(
                conversation_id=sent.conversation_id, reason="RESOLVED", actor="crm"
            ),
            metadata=ACME,
        )
        assert ended.state == types_pb2.CONVERSATION_STATE_ENDED
        assert ended.end_reason == "RESOLVED"
        assert ended.end_actor == "crm"
        citations = {c.variable: c for c in ended.citations}
        assert citations["email"].value.string_value == "ada@example.com"
        assert citations["email"].message_id == email_message.message_id
        assert citations["visit_date"].value.string_value == "2026-12-24"
        assert citations["visit_date"].message_id == date_message.message_id
        outcomes = {o.outcome_id: o for o in ended.outcomes}
        assert outcomes["booked"].status == types_pb2.OUTCOME_STATUS_SUCCEEDED
        assert json_format.MessageToDict(outcomes["booked"].result) == {"booked": True}
        assert outcomes["spin"].status == types_pb2.OUTCOME_STATUS_FAILED
        assert "time limit" in outcomes["spin"].error

        stream = stubs.events.SubscribeEvents(
            events_pb2.SubscribeEventsRequest(
                after_sequence=0,
                event_types=[events_pb2.EVENT_TYPE_CONVERSATION_ENDED],
                heartbeat_seconds=1,
            ),
            metadata=ACME,
        )
        first = await asyncio.wait_for(stream.read(), 10)
        stream.cancel()
        event = first.event
        assert event.conversation.end_reason == "RESOLVED"
        assert len(event.conversation.citations) == 2
        assert len(event.conversation.outcomes) == 2
        assert dict(event.metadata) == {"crm_id": "A-17"}

    async def test_end_twice_rejected(self, stubs: Stubs) -> None:
        sent = await stubs.conversations.SendMessage(timer_request(), metadata=ACME)
        request = conversation_pb2.EndConversationRequest(
            conversation_id=sent.conversation_id
        )
        await stubs.conversations.EndConversation(request, metadata=ACME)
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stubs.conversations.EndConversation(request, metadata=ACME)
        assert error_reason(caught.value) == "CONVERSATION_ENDED"


class TestRestartAfterEnd:
    @pytest.mark.parametrize("restart", [True, False])
    async def test_user_text_after_end(self, stubs: Stubs, restart: bool) -> None:
        """restart_after_end decides whether a later user text starts a new one."""
        await stubs.admin.PutNumber(
            admin_pb2.PutNumberRequest(
                number="+14155550179",
                sms_config=types_pb2.ChannelConfig(restart_after_end=restart),
            ),
            metadata=ACME,
        )
        sent = await stubs.conversations.SendMessage(
            conversation_pb2.SendMessageRequest(
                agent_number="+14155550179",
                user_number=USER_NUMBER,
                agent_message="Hello",
                metadata=struct({"crm_id": "A-17"}),
            ),
            metadata=ACME,
        )
        await stubs.conversations.EndConversation(
            conversation_pb2.EndConversationRequest(
                conversation_id=sent.conversation_id
            ),
            metadata=ACME,
        )
        later = await stubs.carrier.ReceiveMessage(
            carrier_pb2.ReceiveMessageRequest(
                agent_number="+14155550179", user_number=USER_NUMBER, text="Hi again"
            ),
            metadata=ACME,
        )
        assert later.new_conversation == restart
        if restart:
            assert later.conversation_id != sent.conversation_id
            restarted = await get(stubs, later.conversation_id)
            assert restarted.state == types_pb2.CONVERSATION_STATE_ACTIVE
            assert dict(restarted.metadata) == {"crm_id": "A-17"}
        else:
            assert later.conversation_id == sent.conversation_id
            ended = await get(stubs, sent.conversation_id)
            assert ended.state == types_pb2.CONVERSATION_STATE_ENDED
            assert [t for _, t in await texts(stubs, sent.conversation_id)] == [
                "Hello",
                "Hi again",
            ]


class TestPathwayOverrides:
    async def test_unknown_pathway_rejected_with_text(self, stubs: Stubs) -> None:
        """A pathway override is checked even when the send carries its text."""
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stubs.conversations.SendMessage(
                conversation_pb2.SendMessageRequest(
                    agent_number=ACME_NUMBER,
                    user_number=USER_NUMBER,
                    agent_message="hi",
                    pathway_id="nosuch",
                ),
                metadata=ACME,
            )
        assert caught.value.code() == grpc.StatusCode.NOT_FOUND
        assert error_reason(caught.value) == "PATHWAY_NOT_FOUND"

    async def test_switching_pathway_restarts_at_entry(self, stubs: Stubs) -> None:
        await publish_booking(stubs)
        sent = await stubs.conversations.SendMessage(
            conversation_pb2.SendMessageRequest(
                agent_number=ACME_NUMBER, user_number=USER_NUMBER, pathway_id="booking"
            ),
            metadata=ACME,
        )
        await inbound(stubs, "yes")
        assert (await get(stubs, sent.conversation_id)).current_node_id == "confirm"
        await stubs.conversations.SendMessage(
            conversation_pb2.SendMessageRequest(
                agent_number=ACME_NUMBER,
                user_number=USER_NUMBER,
                pathway_id="request-path",
            ),
            metadata=ACME,
        )
        conversation = await get(stubs, sent.conversation_id)
        assert conversation.current_node_id == "hello"
        assert conversation.resolved_pathway_version == "3"
        assert (await texts(stubs, sent.conversation_id))[-1][1] == "Hello!"
