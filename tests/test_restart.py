"""Resuming the event stream across server restarts, with real subprocesses."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
import yaml
from conftest import ACME, ACME_NUMBER, USER_NUMBER, Stubs, base_config
from parley.v1 import conversation_pb2, events_pb2

REPO_ROOT = Path(__file__).resolve().parent.parent
STARTUP_TIMEOUT = 30.0


class ServerProcess:
    """`python -m server` in a subprocess on a free loopback port."""

    def __init__(self, tmp_path: Path) -> None:
        self.config = tmp_path / "parley.yaml"
        self.database = tmp_path / "parley.db"
        self.config.write_text(yaml.safe_dump(base_config()))
        self.process: subprocess.Popen[str] | None = None
        self.address = ""

    async def start(self) -> None:
        # Popen returns at once; the wait for start-up runs in a thread below.
        self.process = subprocess.Popen(  # noqa: ASYNC220
            [
                sys.executable,
                "-m",
                "server",
                "--config",
                str(self.config),
                "--database",
                str(self.database),
                "--listen",
                "127.0.0.1:0",
            ],
            cwd=REPO_ROOT,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "PARLEY_LOG_LEVEL": "info"},
        )
        self.address = await asyncio.wait_for(
            asyncio.to_thread(self._read_address), STARTUP_TIMEOUT
        )

    def _read_address(self) -> str:
        assert self.process is not None and self.process.stderr is not None
        for line in self.process.stderr:
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if record.get("event") == "serving":
                address: str = record["address"]
                return address
        raise RuntimeError(f"server exited with {self.process.wait()} before serving")

    def stop(self, signum: int = signal.SIGTERM) -> int:
        assert self.process is not None
        self.process.send_signal(signum)
        code = self.process.wait(timeout=30)
        assert self.process.stderr is not None
        self.process.stderr.close()
        return code

    def acme_sequences(self, after: int) -> list[int]:
        with sqlite3.connect(self.database) as connection:
            rows = connection.execute(
                "SELECT seq FROM events WHERE account_id = 'acme' AND seq > ? ORDER BY seq",
                (after,),
            ).fetchall()
        return [row[0] for row in rows]


@pytest.fixture
async def server_process(tmp_path: Path) -> AsyncIterator[ServerProcess]:
    process = ServerProcess(tmp_path)
    await process.start()
    yield process
    if process.process is not None and process.process.poll() is None:
        process.stop(signal.SIGKILL)


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
