"""Resuming the event stream across server restarts, with real subprocesses."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from conftest import ACME, ACME_NUMBER, USER_NUMBER, Stubs
from parley.v1 import conversation_pb2, events_pb2
from server_process import ServerProcess


@pytest.fixture
async def server_process(tmp_path: Path) -> AsyncIterator[ServerProcess]:
    process = ServerProcess(tmp_path)
    await process.start()
    yield process
    process.kill_if_running()


async def send_many(address: str, count: int) -> None:
    async with grpc.aio.insecure_channel(address) as channel:
        stubs = Stubs(channel)
        for index in range(count):
            await stubs.conversations.SendMessage(
                conversation_pb2.SendMessageRequest(
                    agent_number=ACME_NUMBER,
                    user_number=USER_NUMBER,
                    agent_message=f"message {index}",
                ),
                metadata=ACME,
            )


async def read_until_idle(address: str, after: int) -> list[int]:
    """Replay after `after` and stop at the first heartbeat (the stream went idle)."""
    sequences: list[int] = []
    async with grpc.aio.insecure_channel(address) as channel:
        stream = Stubs(channel).events.SubscribeEvents(
            events_pb2.SubscribeEventsRequest(
                after_sequence=after, heartbeat_seconds=1
            ),
            metadata=ACME,
        )
        async for item in stream:
            if item.HasField("heartbeat"):
                break
            sequences.append(item.event.sequence)
        stream.cancel()
    return sequences


async def wait_for_quiet_log(process: ServerProcess) -> None:
    """Wait until the carrier simulator stops adding status events."""
    previous = -1
    for _ in range(100):
        current = len(process.acme_sequences(0))
        if current == previous:
            return
        previous = current
        await asyncio.sleep(0.3)


class TestResumeAcrossRestart:
    async def test_resume_after_graceful_restart(
        self, server_process: ServerProcess
    ) -> None:
        """Read up to N, restart, 50 sends, resume after N: exactly the missed events."""
        await send_many(server_process.address, 3)
        await wait_for_quiet_log(server_process)
        seen = await read_until_idle(server_process.address, 0)
        assert seen == server_process.acme_sequences(0)
        cursor = seen[-1]

        assert server_process.stop(signal.SIGTERM) == 0
        await server_process.start()
        await send_many(server_process.address, 50)
        await wait_for_quiet_log(server_process)

        missed = await read_until_idle(server_process.address, cursor)
        expected = server_process.acme_sequences(cursor)
        assert missed == expected
        # 50 sends: created-message, queued, sent and delivered events each.
        assert len(missed) >= 200
        assert missed == sorted(set(missed))

    async def test_resume_then_live_after_crash(
        self, server_process: ServerProcess
    ) -> None:
        """A SIGKILLed server restarts and the resumed stream continues live."""
        await send_many(server_process.address, 2)
        await wait_for_quiet_log(server_process)
        cursor = server_process.acme_sequences(0)[-1]
        server_process.stop(signal.SIGKILL)
        await server_process.start()

        async with grpc.aio.insecure_channel(server_process.address) as channel:
            stream = Stubs(channel).events.SubscribeEvents(
                events_pb2.SubscribeEventsRequest(
                    after_sequence=cursor, heartbeat_seconds=1
                ),
                metadata=ACME,
            )
            first = await asyncio.wait_for(stream.read(), 10)
            assert first.HasField("heartbeat")  # nothing missed yet
            await send_many(server_process.address, 1)
            live: list[int] = []
            while len(live) < 3:
                item = await asyncio.wait_for(stream.read(), 10)
                if item.HasField("event"):
                    live.append(item.event.sequence)
            stream.cancel()
        assert live == server_process.acme_sequences(cursor)[:3]
        assert live[0] > cursor


class TestTimersAcrossRestart:
    async def test_due_timer_fires_once_after_crash(
        self, server_process: ServerProcess
    ) -> None:
        """A timeout that came due while the server was down fires once at start-up."""
        async with grpc.aio.insecure_channel(server_process.address) as channel:
            sent = await Stubs(channel).conversations.SendMessage(
                conversation_pb2.SendMessageRequest(
                    agent_number=ACME_NUMBER,
                    user_number=USER_NUMBER,
                    agent_message="Table ready",
                    timeout_seconds=2,
                    warning_seconds=0,
                    timeout_message="Closing this chat.",
                ),
                metadata=ACME,
            )
        server_process.stop(signal.SIGKILL)
        await asyncio.sleep(2.5)
        await server_process.start()
        for _ in range(200):
            if server_process.count_events(sent.conversation_id, "CONVERSATION_ENDED"):
                break
            await asyncio.sleep(0.05)
        server_process.stop(signal.SIGTERM)
        await server_process.start()
        await asyncio.sleep(1.0)
        assert server_process.count_events(sent.conversation_id, "TIMED_OUT") == 1
        assert (
            server_process.count_events(sent.conversation_id, "CONVERSATION_ENDED") == 1
        )
        texts = server_process.message_texts(sent.conversation_id)
        assert texts == ["Table ready", "Closing this chat."]
