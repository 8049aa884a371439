"""SendMessage and CreateConversation against a real server and SQLite file."""

from __future__ import annotations

import asyncio
import sqlite3
from typing import Any

import grpc
import pytest
from conftest import (
    ACME,
    ACME_NUMBER,
    ACME_WHATSAPP_NUMBER,
    GLOBEX,
    GLOBEX_NUMBER,
    GLOBEX_PERSONA_ID,
    PERSONA_ID,
    USER_NUMBER,
    Stubs,
    base_config,
    with_override_pathways,
)
from google.protobuf import struct_pb2
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from parley.v1 import admin_pb2, conversation_pb2, types_pb2

from server.app import Parley

COUNTED_TABLES = ("conversations", "messages", "events", "ledger", "idempotency_keys")


def table_counts(server: Parley) -> dict[str, int]:
    """Row counts read straight from the server's SQLite file."""
    assert server.components is not None
    path = server.components.database.path
    with sqlite3.connect(path) as connection:
        return {
            table: connection.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]
            for table in COUNTED_TABLES
        }


def error_info(error: grpc.aio.AioRpcError) -> error_details_pb2.ErrorInfo:
    status = rpc_status.from_call(error)
    assert status is not None, "the error carries no google.rpc.Status details"
    for detail in status.details:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            return info
    raise AssertionError("no ErrorInfo in the status details")


def send_request(**fields: Any) -> conversation_pb2.SendMessageRequest:
    fields.setdefault("agent_number", ACME_NUMBER)
    fields.setdefault("user_number", USER_NUMBER)
    fields.setdefault("agent_message", "Hello from Acme")
    return conversation_pb2.SendMessageRequest(**fields)


async def send_error(
    stubs: Stubs, request: Any, metadata: Any = ACME
) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stubs.conversations.SendMessage(request, metadata=metadata)
    return caught.value


async def get_config(stubs: Stubs, conversation_id: str) -> types_pb2.EffectiveConfig:
    conversation = await stubs.conversations.GetConversation(
        conversation_pb2.GetConversationRequest(conversation_id=conversation_id),
        metadata=ACME,
    )
    return conversation.config


async def usage(stubs: Stubs, metadata: Any = ACME) -> admin_pb2.GetUsageResponse:
    return await stubs.admin.GetUsage(admin_pb2.GetUsageRequest(), metadata=metadata)


@pytest.fixture
def config_data() -> dict[str, Any]:
    """The base config plus the pathways that overrides in these tests name."""
    return with_override_pathways(base_config())


class TestTimeoutValidation:
    async def test_warning_above_timeout_rejected(
        self, server: Parley, stubs: Stubs
    ) -> None:
        """warning 300 with timeout 120 is rejected and leaves no trace."""
        before = table_counts(server)
        error = await send_error(
            stubs, send_request(timeout_seconds=120, warning_seconds=300)
        )
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert error_info(error).reason == "INVALID_TIMEOUT_CONFIG"
        assert error_info(error).domain == "parley"
        assert "warning_seconds" in (error.details() or "")
        assert table_counts(server) == before
        assert before["conversations"] == 0
        assert (await usage(stubs)).total_segments == 0

    @pytest.mark.parametrize("number_timeout, accepted", [(30, False), (600, True)])
    async def test_warning_checked_against_number_timeout(
        self, stubs: Stubs, number_timeout: int, accepted: bool
    ) -> None:
        """A lone warning_seconds 60 is checked against the number's timeout."""
        await stubs.admin.PutNumber(
            admin_pb2.PutNumberRequest(
                number="+14155550177",
                sms_config=types_pb2.ChannelConfig(timeout_seconds=number_timeout),
            ),
            metadata=ACME,
        )
        request = send_request(agent_number="+14155550177", warning_seconds=60)
        if accepted:
            response = await stubs.conversations.SendMessage(request, metadata=ACME)
            config = await get_config(stubs, response.conversation_id)
            assert config.timeout_seconds == 600
            assert config.warning_seconds == 60
        else:
            error = await send_error(stubs, request)
            assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert error_info(error).reason == "INVALID_TIMEOUT_CONFIG"

    async def test_timeout_zero_disables_timeout(self, stubs: Stubs) -> None:
        """timeout_seconds 0 disables the timeout, so any warning is allowed."""
        response = await stubs.conversations.SendMessage(
            send_request(timeout_seconds=0, warning_seconds=900), metadata=ACME
        )
        config = await get_config(stubs, response.conversation_id)
        assert config.timeout_seconds == 0
        assert config.warning_seconds == 900

    async def test_timeout_persists_across_turns(self, stubs: Stubs) -> None:
        """900 set on turn 1 survives turn 2 and is replaced by 60 on turn 3."""
        first = await stubs.conversations.SendMessage(
            send_request(timeout_seconds=900), metadata=ACME
        )
        assert (await get_config(stubs, first.conversation_id)).timeout_seconds == 900
        second = await stubs.conversations.SendMessage(send_request(), metadata=ACME)
        assert second.conversation_id == first.conversation_id
        assert (await get_config(stubs, first.conversation_id)).timeout_seconds == 900
        third = await stubs.conversations.SendMessage(
            send_request(timeout_seconds=60, warning_seconds=30), metadata=ACME
        )
        assert third.conversation_id == first.conversation_id
        config = await get_config(stubs, first.conversation_id)
        assert config.timeout_seconds == 60
        assert config.warning_seconds == 30

    async def test_persisted_timeout_checks_later_warning(self, stubs: Stubs) -> None:
        """A warning on turn 2 is checked against the timeout stored on turn 1."""
        await stubs.conversations.SendMessage(
            send_request(timeout_seconds=100, warning_seconds=50), metadata=ACME
        )
        error = await send_error(stubs, send_request(warning_seconds=100))
        assert error_info(error).reason == "INVALID_TIMEOUT_CONFIG"


class TestIdempotency:
    @pytest.mark.parametrize("in_metadata", [False, True])
    async def test_concurrent_sends_one_message(
        self, server: Parley, stubs: Stubs, in_metadata: bool
    ) -> None:
        """20 concurrent sends with one key make one message, charge and event set."""
        key = "order-17-reminder"
        if in_metadata:
            request = send_request()
            metadata = (*ACME, ("idempotency-key", key))
        else:
            request = send_request(idempotency_key=key)
            metadata = ACME
        responses = await asyncio.gather(
            *(
                stubs.conversations.SendMessage(request, metadata=metadata)
                for _ in range(20)
            )
        )
        originals = [r for r in responses if not r.replay]
        replays = [r for r in responses if r.replay]
        assert len(originals) == 1
        assert len(replays) == 19
        for replay in replays:
            assert replay.message_id == originals[0].message_id
            assert replay.conversation_id == originals[0].conversation_id
        counts = table_counts(server)
        assert counts["messages"] == 1
        assert counts["ledger"] == 1
        assert counts["idempotency_keys"] == 1
        # conversation created, message created, status QUEUED; the carrier
        # adds status events later, once per message.
        assert counts["events"] >= 3
        assert (await usage(stubs)).total_messages == 1

    async def test_field_and_metadata_key_are_one_key(self, stubs: Stubs) -> None:
        """The same key as a field and as metadata is one key."""
        first = await stubs.conversations.SendMessage(
            send_request(idempotency_key="k-1"), metadata=ACME
        )
        second = await stubs.conversations.SendMessage(
            send_request(), metadata=(*ACME, ("idempotency-key", "k-1"))
        )
        assert second.replay
        assert second.message_id == first.message_id

    async def test_key_reused_for_other_request(
        self, server: Parley, stubs: Stubs
    ) -> None:
        """Same key, different agent_message: ALREADY_EXISTS and nothing changes."""
        await stubs.conversations.SendMessage(
            send_request(idempotency_key="k-2", agent_message="first"), metadata=ACME
        )
        before = table_counts(server)
        error = await send_error(
            stubs, send_request(idempotency_key="k-2", agent_message="second")
        )
        assert error.code() == grpc.StatusCode.ALREADY_EXISTS
        assert error_info(error).reason == "IDEMPOTENCY_KEY_REUSED"
        await asyncio.sleep(0.2)  # let carrier status events of the first send land
        after = table_counts(server)
        assert after["messages"] == before["messages"]
        assert after["ledger"] == before["ledger"]
        assert after["conversations"] == before["conversations"]

    async def test_rejected_request_stores_no_key(self, stubs: Stubs) -> None:
        """A request rejected by validation leaves its key free for a valid one."""
        bad = send_request(
            idempotency_key="k-3", timeout_seconds=10, warning_seconds=20
        )
        await send_error(stubs, bad)
        good = await stubs.conversations.SendMessage(
            send_request(idempotency_key="k-3"), metadata=ACME
        )
        assert not good.replay

    async def test_keys_are_scoped_per_account(self, stubs: Stubs) -> None:
        """Two accounts may use the same key independently."""
        acme = await stubs.conversations.SendMessage(
            send_request(idempotency_key="shared"), metadata=ACME
        )
        globex = await stubs.conversations.SendMessage(
            send_request(idempotency_key="shared", agent_number=GLOBEX_NUMBER),
            metadata=GLOBEX,
        )
        assert not globex.replay
        assert globex.message_id != acme.message_id

    async def test_conflicting_field_and_metadata_keys(self, stubs: Stubs) -> None:
        error = await send_error(
            stubs,
            send_request(idempotency_key="a"),
            metadata=(*ACME, ("idempotency-key", "b")),
        )
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert error_info(error).reason == "IDEMPOTENCY_KEY_CONFLICT"

    async def test_key_too_long(self, stubs: Stubs) -> None:
        error = await send_error(stubs, send_request(idempotency_key="k" * 256))
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT


class TestOwnershipAndPersonas:
    async def test_other_account_number_denied(
        self, server: Parley, stubs: Stubs
    ) -> None:
        error = await send_error(stubs, send_request(agent_number=GLOBEX_NUMBER))
        assert error.code() == grpc.StatusCode.PERMISSION_DENIED
        assert error_info(error).reason == "AGENT_NUMBER_NOT_OWNED"
        assert table_counts(server)["conversations"] == 0

    async def test_other_account_number_denied_with_persona(self, stubs: Stubs) -> None:
        """A valid persona of the caller does not unlock another account's number."""
        error = await send_error(
            stubs, send_request(agent_number=GLOBEX_NUMBER, persona_id=PERSONA_ID)
        )
        assert error.code() == grpc.StatusCode.PERMISSION_DENIED

    async def test_unknown_number_denied(self, stubs: Stubs) -> None:
        error = await send_error(stubs, send_request(agent_number="+14155550199"))
        assert error.code() == grpc.StatusCode.PERMISSION_DENIED

    async def test_persona_id_not_uuid(self, stubs: Stubs) -> None:
        error = await send_error(stubs, send_request(persona_id="abc"))
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert error_info(error).reason == "INVALID_UUID"

    async def test_persona_unknown_uuid(self, stubs: Stubs) -> None:
        error = await send_error(
            stubs, send_request(persona_id="00000000-0000-4000-8000-000000000000")
        )
        assert error.code() == grpc.StatusCode.NOT_FOUND
        assert error_info(error).reason == "PERSONA_NOT_FOUND"

    async def test_persona_of_other_account_not_found(self, stubs: Stubs) -> None:
        error = await send_error(stubs, send_request(persona_id=GLOBEX_PERSONA_ID))
        assert error.code() == grpc.StatusCode.NOT_FOUND

    async def test_persona_unknown_version(self, stubs: Stubs) -> None:
        error = await send_error(
            stubs, send_request(persona_id=PERSONA_ID, persona_version="9")
        )
        assert error.code() == grpc.StatusCode.NOT_FOUND
        assert error_info(error).reason == "PERSONA_VERSION_NOT_FOUND"

    async def test_persona_default_and_pinned_version(self, stubs: Stubs) -> None:
        """An empty version takes the default (2: 300 s); version 1 gives 120 s."""
        default = await stubs.conversations.SendMessage(
            send_request(persona_id=PERSONA_ID), metadata=ACME
        )
        conversation = await stubs.conversations.GetConversation(
            conversation_pb2.GetConversationRequest(
                conversation_id=default.conversation_id
            ),
            metadata=ACME,
        )
        assert conversation.persona_version == "2"
        assert conversation.config.timeout_seconds == 300
        pinned = await stubs.conversations.SendMessage(
            send_request(
                persona_id=PERSONA_ID,
                persona_version="1",
                new_conversation=True,
                warning_seconds=0,
            ),
            metadata=ACME,
        )
        config = await get_config(stubs, pinned.conversation_id)
        assert config.timeout_seconds == 120

    async def test_pathway_precedence(self, stubs: Stubs) -> None:
        """persona_settings beats request pathway_*, which beats the persona."""
        persona_only = await stubs.conversations.SendMessage(
            send_request(persona_id=PERSONA_ID), metadata=ACME
        )
        assert (await get_config(stubs, persona_only.conversation_id)).pathway_id == (
            "persona-path"
        )
        request_override = await stubs.conversations.SendMessage(
            send_request(persona_id=PERSONA_ID, pathway_id="request-path"),
            metadata=ACME,
        )
        assert (
            await get_config(stubs, request_override.conversation_id)
        ).pathway_id == ("request-path")
        both = await stubs.conversations.SendMessage(
            send_request(
                persona_id=PERSONA_ID,
                pathway_id="request-path",
                pathway_version="3",
                persona_settings=types_pb2.PersonaSettings(pathway_id="settings-path"),
            ),
            metadata=ACME,
        )
        config = await get_config(stubs, both.conversation_id)
        assert config.pathway_id == "settings-path"
        assert config.pathway_version == "3"

    async def test_persona_settings_needs_persona(self, stubs: Stubs) -> None:
        error = await send_error(
            stubs,
            send_request(persona_settings=types_pb2.PersonaSettings(pathway_id="p")),
        )
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert error_info(error).reason == "PERSONA_REQUIRED"


class TestFieldsAndCharges:
    async def test_message_too_long(self, server: Parley, stubs: Stubs) -> None:
        error = await send_error(stubs, send_request(agent_message="a" * 1601))
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "agent_message" in (error.details() or "")
        assert table_counts(server)["messages"] == 0

    async def test_message_at_limit_accepted(self, stubs: Stubs) -> None:
        response = await stubs.conversations.SendMessage(
            send_request(agent_message="a" * 1600), metadata=ACME
        )
        assert response.message_status == types_pb2.MESSAGE_STATUS_QUEUED

    @pytest.mark.parametrize(
        "text, segments, encoding",
        [
            ("a" * 199 + "\U0001f600", 3, types_pb2.ENCODING_UCS2),
            ("b" * 160, 1, types_pb2.ENCODING_GSM7),
            ("c" * 161, 2, types_pb2.ENCODING_GSM7),
        ],
    )
    async def test_segments_charged(
        self, stubs: Stubs, text: str, segments: int, encoding: int
    ) -> None:
        await stubs.conversations.SendMessage(
            send_request(agent_message=text), metadata=ACME
        )
        ledger = await usage(stubs)
        assert ledger.total_messages == 1
        assert ledger.total_segments == segments
        assert ledger.entries[0].encoding == encoding
        assert ledger.total_amount_micros == segments * 7_500

    @pytest.mark.parametrize(
        "field, value",
        [
            ("user_number", "14155550123"),
            ("user_number", "+1415555"),
            ("agent_number", ""),
            ("channel", 7),
        ],
    )
    async def test_bad_fields_rejected(
        self, stubs: Stubs, field: str, value: Any
    ) -> None:
        error = await send_error(stubs, send_request(**{field: value}))
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert field in (error.details() or "")

    async def test_channel_not_enabled(self, stubs: Stubs) -> None:
        error = await send_error(
            stubs,
            send_request(
                agent_number=ACME_WHATSAPP_NUMBER, channel=types_pb2.CHANNEL_SMS
            ),
        )
        assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert error_info(error).reason == "CHANNEL_NOT_ENABLED"

    async def test_whatsapp_channel(self, stubs: Stubs) -> None:
        response = await stubs.conversations.SendMessage(
            send_request(
                agent_number=ACME_WHATSAPP_NUMBER, channel=types_pb2.CHANNEL_WHATSAPP
            ),
            metadata=ACME,
        )
        conversation = await stubs.conversations.GetConversation(
            conversation_pb2.GetConversationRequest(
                conversation_id=response.conversation_id
            ),
            metadata=ACME,
        )
        assert conversation.channel == types_pb2.CHANNEL_WHATSAPP
        assert conversation.config.timeout_seconds == 120

    @pytest.mark.parametrize(
        "value, reason",
        [
            (float("nan"), "INVALID_NUMBER"),
            (float("inf"), "INVALID_NUMBER"),
            (float(2**53 + 2), "NUMBER_OUT_OF_RANGE"),
        ],
    )
    async def test_metadata_numbers_rejected(
        self, stubs: Stubs, value: float, reason: str
    ) -> None:
        metadata = struct_pb2.Struct()
        metadata["amount"] = value
        error = await send_error(stubs, send_request(metadata=metadata))
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert error_info(error).reason == reason

    async def test_metadata_replaced_or_kept(self, stubs: Stubs) -> None:
        first_metadata = struct_pb2.Struct()
        first_metadata.update({"crm_id": "A-17", "tier": "gold"})
        first = await stubs.conversations.SendMessage(
            send_request(metadata=first_metadata), metadata=ACME
        )
        await stubs.conversations.SendMessage(send_request(), metadata=ACME)
        get = conversation_pb2.GetConversationRequest(
            conversation_id=first.conversation_id
        )
        kept = await stubs.conversations.GetConversation(get, metadata=ACME)
        assert dict(kept.metadata) == {"crm_id": "A-17", "tier": "gold"}
        replacement = struct_pb2.Struct()
        replacement.update({"crm_id": "B-2"})
        await stubs.conversations.SendMessage(
            send_request(metadata=replacement), metadata=ACME
        )
        replaced = await stubs.conversations.GetConversation(get, metadata=ACME)
        assert dict(replaced.metadata) == {"crm_id": "B-2"}

    async def test_outcome_ids_presence(self, stubs: Stubs) -> None:
        """Absent lists inherit the number's; a present empty list overrides."""
        await stubs.admin.PutNumber(
            admin_pb2.PutNumberRequest(
                number="+14155550178",
                sms_config=types_pb2.ChannelConfig(
                    outcome_ids=types_pb2.StringList(values=["booked"]),
                    citation_schema_ids=types_pb2.StringList(values=["contact"]),
                ),
            ),
            metadata=ACME,
        )
        inherited = await stubs.conversations.SendMessage(
            send_request(agent_number="+14155550178"), metadata=ACME
        )
        config = await get_config(stubs, inherited.conversation_id)
        assert list(config.outcome_ids) == ["booked"]
        assert list(config.citation_schema_ids) == ["contact"]
        cleared = await stubs.conversations.SendMessage(
            send_request(
                agent_number="+14155550178",
                outcome_ids=types_pb2.StringList(),
                new_conversation=True,
            ),
            metadata=ACME,
        )
        config = await get_config(stubs, cleared.conversation_id)
        assert list(config.outcome_ids) == []
        assert list(config.citation_schema_ids) == ["contact"]


class TestConversationLifecycle:
    async def test_new_conversation_archives_active(self, stubs: Stubs) -> None:
        first = await stubs.conversations.SendMessage(send_request(), metadata=ACME)
        second = await stubs.conversations.SendMessage(
            send_request(new_conversation=True), metadata=ACME
        )
        assert second.conversation_id != first.conversation_id
        old = await stubs.conversations.GetConversation(
            conversation_pb2.GetConversationRequest(
                conversation_id=first.conversation_id
            ),
            metadata=ACME,
        )
        assert old.state == types_pb2.CONVERSATION_STATE_ENDED
        assert old.end_reason == "NEW_CONVERSATION"

    async def test_create_replaces_and_stores_history(
        self, server: Parley, stubs: Stubs
    ) -> None:
        """CreateConversation ends the active one and stores an unsent message."""
        first = await stubs.conversations.SendMessage(send_request(), metadata=ACME)
        created = await stubs.conversations.CreateConversation(
            conversation_pb2.CreateConversationRequest(
                agent_number=ACME_NUMBER,
                user_number=USER_NUMBER,
                message="I'd like to book a table",
                timeout_seconds=900,
            ),
            metadata=ACME,
        )
        assert created.conversation_id != first.conversation_id
        assert created.message_status == types_pb2.MESSAGE_STATUS_RECEIVED
        old = await stubs.conversations.GetConversation(
            conversation_pb2.GetConversationRequest(
                conversation_id=first.conversation_id
            ),
            metadata=ACME,
        )
        assert old.end_reason == "REPLACED"
        messages = await stubs.conversations.ListMessages(
            conversation_pb2.ListMessagesRequest(
                conversation_id=created.conversation_id
            ),
            metadata=ACME,
        )
        assert [m.text for m in messages.messages] == ["I'd like to book a table"]
        assert messages.messages[0].history
        assert messages.messages[0].sender == types_pb2.SENDER_USER
        assert (await usage(stubs)).total_messages == 1  # only the SendMessage

    async def test_create_rejects_bad_timeouts(
        self, server: Parley, stubs: Stubs
    ) -> None:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stubs.conversations.CreateConversation(
                conversation_pb2.CreateConversationRequest(
                    agent_number=ACME_NUMBER,
                    user_number=USER_NUMBER,
                    timeout_seconds=120,
                    warning_seconds=300,
                ),
                metadata=ACME,
            )
        assert error_info(caught.value).reason == "INVALID_TIMEOUT_CONFIG"
        assert table_counts(server)["conversations"] == 0

    async def test_create_idempotent(self, stubs: Stubs) -> None:
        request = conversation_pb2.CreateConversationRequest(
            agent_number=ACME_NUMBER, user_number=USER_NUMBER, idempotency_key="c-1"
        )
        first = await stubs.conversations.CreateConversation(request, metadata=ACME)
        again = await stubs.conversations.CreateConversation(request, metadata=ACME)
        assert again.replay
        assert again.conversation_id == first.conversation_id

    async def test_get_other_account_conversation(self, stubs: Stubs) -> None:
        sent = await stubs.conversations.SendMessage(send_request(), metadata=ACME)
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stubs.conversations.GetConversation(
                conversation_pb2.GetConversationRequest(
                    conversation_id=sent.conversation_id
                ),
                metadata=GLOBEX,
            )
        assert caught.value.code() == grpc.StatusCode.NOT_FOUND

    async def test_message_statuses_advance(self, stubs: Stubs) -> None:
        """The simulator moves a message to DELIVERED; a failing prefix to FAILED."""
        delivered = await stubs.conversations.SendMessage(send_request(), metadata=ACME)
        failed = await stubs.conversations.SendMessage(
            send_request(user_number="+16505550199"), metadata=ACME
        )
        statuses = {}
        for _ in range(100):
            for sent in (delivered, failed):
                page = await stubs.conversations.ListMessages(
                    conversation_pb2.ListMessagesRequest(
                        conversation_id=sent.conversation_id
                    ),
                    metadata=ACME,
                )
                statuses[sent.message_id] = page.messages[0]
            if all(
                m.status
                in (types_pb2.MESSAGE_STATUS_DELIVERED, types_pb2.MESSAGE_STATUS_FAILED)
                for m in statuses.values()
            ):
                break
            await asyncio.sleep(0.05)
        assert (
            statuses[delivered.message_id].status == types_pb2.MESSAGE_STATUS_DELIVERED
        )
        assert statuses[failed.message_id].status == types_pb2.MESSAGE_STATUS_FAILED
        assert statuses[failed.message_id].error_code == "30003"
        ledger = await usage(stubs)
        assert ledger.total_amount_micros == 7_500  # the failed message was refunded


class TestListConversations:
    async def test_filters_and_paging(self, stubs: Stubs) -> None:
        """Filters combine, and pages of 2 walk every match exactly once."""
        for index in range(5):
            metadata = struct_pb2.Struct()
            metadata.update(
                {"tier": "gold" if index % 2 == 0 else "silver", "rank": index}
            )
            await stubs.conversations.SendMessage(
                send_request(user_number=f"+141555501{index:02d}", metadata=metadata),
                metadata=ACME,
            )
        await stubs.conversations.SendMessage(
            send_request(
                agent_number=ACME_WHATSAPP_NUMBER, channel=types_pb2.CHANNEL_WHATSAPP
            ),
            metadata=ACME,
        )
        seen: list[str] = []
        token = ""
        while True:
            page = await stubs.conversations.ListConversations(
                conversation_pb2.ListConversationsRequest(
                    agent_number=ACME_NUMBER,
                    metadata={"tier": "gold"},
                    page_size=2,
                    page_token=token,
                ),
                metadata=ACME,
            )
            seen.extend(c.user_number for c in page.conversations)
            token = page.next_page_token
            if not token:
                break
        assert sorted(seen) == ["+14155550100", "+14155550102", "+14155550104"]
        by_number = await stubs.conversations.ListConversations(
            conversation_pb2.ListConversationsRequest(
                user_number="+1 415 555 0103", metadata={"rank": "3"}
            ),
            metadata=ACME,
        )
        assert [c.user_number for c in by_number.conversations] == ["+14155550103"]
        ended = await stubs.conversations.ListConversations(
            conversation_pb2.ListConversationsRequest(
                state=types_pb2.CONVERSATION_STATE_ENDED
            ),
            metadata=ACME,
        )
        assert list(ended.conversations) == []
        other = await stubs.conversations.ListConversations(
            conversation_pb2.ListConversationsRequest(), metadata=GLOBEX
        )
        assert list(other.conversations) == []

    async def test_page_size_too_large(self, stubs: Stubs) -> None:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stubs.conversations.ListConversations(
                conversation_pb2.ListConversationsRequest(page_size=1001), metadata=ACME
            )
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
