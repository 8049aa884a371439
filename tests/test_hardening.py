"""Inputs and situations found by attacking the server: each must fail cleanly."""

from __future__ import annotations

import asyncio
import base64
import json
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from conftest import (
    ACME,
    ACME_NUMBER,
    GLOBEX,
    GLOBEX_NUMBER,
    OPERATOR,
    USER_NUMBER,
    Stubs,
    base_config,
)
from google.protobuf import struct_pb2
from helpers import error_reason
from parley.v1 import (
    admin_pb2,
    carrier_pb2,
    conversation_pb2,
    events_pb2,
    types_pb2,
)
from server_process import REPO_ROOT, ServerProcess

from server.app import Parley
from server.logs import _PHONE_IN_TEXT


def token(position: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps(position).encode()).decode()


async def sent_conversation(stubs: Stubs) -> str:
    response = await stubs.conversations.SendMessage(
        conversation_pb2.SendMessageRequest(
            agent_number=ACME_NUMBER, user_number=USER_NUMBER, agent_message="hi"
        ),
        metadata=ACME,
    )
    return response.conversation_id


class TestPageTokens:
    @pytest.mark.parametrize(
        "page_token",
        [
            token(["abc"]),
            token([None]),
            token([[1]]),
            token([2**70]),
            token([-1]),
            token([True]),
            base64.urlsafe_b64encode(b"[" * 200_000).decode(),
            "%%%",
        ],
    )
    async def test_list_messages_bad_token(self, stubs: Stubs, page_token: str) -> None:
        conversation_id = await sent_conversation(stubs)
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stubs.conversations.ListMessages(
                conversation_pb2.ListMessagesRequest(
                    conversation_id=conversation_id, page_token=page_token
                ),
                metadata=ACME,
            )
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert error_reason(caught.value) == "INVALID_PAGE_TOKEN"

    @pytest.mark.parametrize(
        "position", [[{}, "x"], [1, [1]], [2**70, "x"], ["x"], [1, 2, 3]]
    )
    async def test_list_conversations_bad_token(
        self, stubs: Stubs, position: Any
    ) -> None:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stubs.conversations.ListConversations(
                conversation_pb2.ListConversationsRequest(page_token=token(position)),
                metadata=ACME,
            )
        assert error_reason(caught.value) == "INVALID_PAGE_TOKEN"

    async def test_large_pages_are_cut_by_size(self, stubs: Stubs) -> None:
        """Pages of large conversations stop near 3 MiB and continue by token."""
        request_data = struct_pb2.Struct()
        request_data["blob"] = "x" * 60_000
        for index in range(60):
            await stubs.conversations.SendMessage(
                conversation_pb2.SendMessageRequest(
                    agent_number=ACME_NUMBER,
                    user_number=f"+141555501{index:02d}",
                    agent_message="hi",
                    request_data=request_data,
                ),
                metadata=ACME,
            )
        first = await stubs.conversations.ListConversations(
            conversation_pb2.ListConversationsRequest(), metadata=ACME
        )
        assert 0 < len(first.conversations) < 60
        assert first.next_page_token
        second = await stubs.conversations.ListConversations(
            conversation_pb2.ListConversationsRequest(page_token=first.next_page_token),
            metadata=ACME,
        )
        ids = {c.id for c in first.conversations} | {c.id for c in second.conversations}
        assert len(ids) == len(first.conversations) + len(second.conversations)
        assert len(ids) == 60


class TestCarrierRpcs:
    async def test_unknown_status_number(self, stubs: Stubs) -> None:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stubs.carrier.ReportStatus(
                carrier_pb2.ReportStatusRequest(message_id="msg_x", status=99),
                metadata=OPERATOR,
            )
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT

    async def test_account_key_cannot_report(self, stubs: Stubs) -> None:
        """An account could otherwise refund its own messages with FAILED."""
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stubs.carrier.ReportStatus(
                carrier_pb2.ReportStatusRequest(
                    message_id="msg_x", status=types_pb2.MESSAGE_STATUS_FAILED
                ),
                metadata=ACME,
            )
        assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED

    async def test_carrier_id_reused_across_accounts(self, stubs: Stubs) -> None:
        for number, metadata in ((ACME_NUMBER, ACME), (GLOBEX_NUMBER, GLOBEX)):
            response = await stubs.carrier.ReceiveMessage(
                carrier_pb2.ReceiveMessageRequest(
                    agent_number=number,
                    user_number=USER_NUMBER,
                    text="hello",
                    carrier_message_id="dup-1",
                ),
                metadata=metadata,
            )
            assert not response.replay

    async def test_unregistered_number_looks_foreign(self, stubs: Stubs) -> None:
        """Account keys get the same error for unknown and foreign numbers."""
        codes = []
        for number in ("+14155550166", GLOBEX_NUMBER):
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await stubs.carrier.ReceiveMessage(
                    carrier_pb2.ReceiveMessageRequest(
                        agent_number=number, user_number=USER_NUMBER, text="hi"
                    ),
                    metadata=ACME,
                )
            codes.append(caught.value.code())
        assert codes == [grpc.StatusCode.PERMISSION_DENIED] * 2


class TestMalformedRequests:
    @pytest.mark.parametrize(
        "payload",
        [
            b"\x0a\x02\xff\xfe",  # field 1 (user_number) with invalid UTF-8
            b"\x0a\xff\xff\xff\xff\x0f",  # length beyond the message
            b"\x72" + b"\x0a\x02\x0a\x00" * 3,  # garbage inside a Struct
        ],
    )
    async def test_undecodable_bytes_rejected(
        self, stubs: Stubs, payload: bytes
    ) -> None:
        call = stubs.channel.unary_unary(
            "/parley.v1.ConversationService/SendMessage",
            request_serializer=lambda raw: raw,
            response_deserializer=lambda raw: raw,
        )
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await call(payload, metadata=ACME)
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert error_reason(caught.value) == "MALFORMED_REQUEST"


async def test_revoked_key_ends_stream(server: Parley, stubs: Stubs) -> None:
    created = await stubs.admin.CreateApiKey(
        admin_pb2.CreateApiKeyRequest(), metadata=ACME
    )
    metadata = (("authorization", f"Bearer {created.api_key}"),)
    stream = stubs.events.SubscribeEvents(
        events_pb2.SubscribeEventsRequest(heartbeat_seconds=1), metadata=metadata
    )
    first = await asyncio.wait_for(stream.read(), 10)
    assert first.HasField("heartbeat")
    await stubs.admin.RevokeApiKey(
        admin_pb2.RevokeApiKeyRequest(key_id=created.key.id), metadata=ACME
    )
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        while True:
            await asyncio.wait_for(stream.read(), 15)
    assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED


@pytest.mark.parametrize(
    "text",
    [
        "+14155550100",
        "14155550987",
        "0014155550987",
        "+1.415.555.0987",
        "+1/415/555/0987",
        "\uff11\uff14\uff11\uff15\uff15\uff15\uff15\uff10\uff19\uff18\uff17",
        "+1 (415) 555-0100",
    ],
)
def test_log_masks_numbers_in_text(text: str) -> None:
    masked = _PHONE_IN_TEXT.sub(lambda match: "#" * len(match.group(0)), text)
    assert sum(ch.isdigit() for ch in masked) <= 1


@pytest.fixture
async def running(tmp_path: Path) -> AsyncIterator[ServerProcess]:
    process = ServerProcess(tmp_path)
    await process.start()
    yield process
    process.kill_if_running()


class TestStartupFailures:
    async def test_port_in_use_exits_2(
        self, running: ServerProcess, tmp_path: Path
    ) -> None:
        second = tmp_path / "second"
        second.mkdir()
        other = ServerProcess(second, listen=running.address)
        with pytest.raises(RuntimeError, match="exited with 2"):
            await other.start()

    async def test_changed_persona_version_exits_2(self, tmp_path: Path) -> None:
        """A config that edits a published persona version stops start-up cleanly."""
        process = ServerProcess(tmp_path)
        await process.start()
        assert process.stop(signal.SIGTERM) == 0
        config = base_config()
        config["accounts"][0]["personas"][0]["versions"][0]["config"] = {
            "timeout_seconds": 5
        }
        changed = tmp_path / "changed.yaml"
        changed.write_text(json.dumps(config))
        result = await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-m", "server", "--config", str(changed), "--database",
             str(process.database), "--listen", "127.0.0.1:0"],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            timeout=60,
        )  # fmt: skip
        assert result.returncode == 2
        assert "PERSONA_VERSION_IMMUTABLE" in result.stderr


class TestCancelledCalls:
    async def test_cancelled_sends_leave_database_usable(self, stubs: Stubs) -> None:
        """Calls cut off by tiny deadlines never leave a transaction open."""
        for round_number in range(3):
            calls = [
                stubs.conversations.SendMessage(
                    conversation_pb2.SendMessageRequest(
                        agent_number=ACME_NUMBER,
                        user_number=USER_NUMBER,
                        agent_message=f"round {round_number} call {index}",
                    ),
                    metadata=ACME,
                    timeout=0.002 + index * 0.001,
                )
                for index in range(40)
            ]
            await asyncio.gather(*calls, return_exceptions=True)
        response = await stubs.conversations.SendMessage(
            conversation_pb2.SendMessageRequest(
                agent_number=ACME_NUMBER, user_number=USER_NUMBER, agent_message="after"
            ),
            metadata=ACME,
        )
        assert response.message_status == types_pb2.MESSAGE_STATUS_QUEUED

    async def test_cancel_at_begin_rolls_back(self, tmp_path: Path) -> None:
        """A task cancelled while BEGIN runs leaves no transaction behind."""
        from server.db import Database

        database = await Database.open(tmp_path / "cancel.db")
        try:
            for _ in range(20):

                async def write() -> None:
                    async with database.transaction() as tx:
                        await tx.execute(
                            "INSERT INTO meta (key, value) VALUES ('k', 1)"
                        )
                        await asyncio.sleep(1)

                task = asyncio.create_task(write())
                await asyncio.sleep(0)
                task.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await task
            async with database.transaction() as tx:
                await tx.execute("INSERT INTO meta (key, value) VALUES ('ok', 1)")
            row = await database.fetchone("SELECT COUNT(*) AS n FROM meta")
            assert row is not None
            assert row["n"] == 1
        finally:
            await database.close()
