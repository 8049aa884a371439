"""Tests of the Python client `ParleyClient` against a real server.

Most tests use the in-process `server` fixture. The retry and resume tests
run `python -m server` subprocesses on one fixed loopback port and one
SQLite file, so they can stop the server and start it again at the same
address while the client keeps its channel.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import signal
import socket
import sqlite3
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import grpc
import pytest
from conftest import ACME_KEY, ACME_NUMBER, GLOBEX_KEY, USER_NUMBER
from google.rpc import code_pb2
from parley.v1 import admin_pb2, conversation_pb2, events_pb2, types_pb2
from parley_client import ParleyClient, error_info, field_violations, rich_status
from server_process import ServerProcess

from server.app import Parley

WAIT_TIMEOUT = 30.0
# Enough retries that the client is still retrying when a restarted server,
# and the channel's own reconnect backoff, are ready again.
RETRIES = 40
RETRY_KEY = re.compile(r"with idempotency key (\S+)$")


def send_request(text: str, **fields: str) -> conversation_pb2.SendMessageRequest:
    return conversation_pb2.SendMessageRequest(
        agent_number=ACME_NUMBER, user_number=USER_NUMBER, agent_message=text, **fields
    )


def query(database: Path, sql: str, *params: object) -> list[tuple[object, ...]]:
    with sqlite3.connect(database) as connection:
        return connection.execute(sql, params).fetchall()


def free_loopback_port() -> int:
    """Return a port that was free on 127.0.0.1 a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


async def wait_until(condition_name: str, check: Callable[[], bool]) -> None:
    """Poll `check()` until it returns true, for at most WAIT_TIMEOUT seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + WAIT_TIMEOUT
    while not check():
        if loop.time() > deadline:
            raise AssertionError(f"timed out after {WAIT_TIMEOUT}s: {condition_name}")
        await asyncio.sleep(0.05)


@pytest.fixture
async def fixed_port_server(tmp_path: Path) -> AsyncIterator[ServerProcess]:
    process = ServerProcess(tmp_path, listen=f"127.0.0.1:{free_loopback_port()}")
    await process.start()
    yield process
    process.kill_if_running()


async def test_calls_carry_api_key(server: Parley) -> None:
    async with ParleyClient(server.address, ACME_KEY) as client:
        usage = await client.admin.GetUsage(admin_pb2.GetUsageRequest())
        response = await client.conversations.SendMessage(send_request("Hello"))
    assert usage.total_messages == 0
    assert response.message_id


async def test_unknown_key_is_unauthenticated(server: Parley) -> None:
    async with ParleyClient(server.address, "unknown-key-7Qx2") as client:
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await client.admin.GetUsage(admin_pb2.GetUsageRequest())
    assert raised.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert error_info(raised.value) == ("UNAUTHENTICATED", "parley")


async def test_call_metadata_key_wins(server: Parley) -> None:
    """An authorization entry passed with the call replaces the client's key."""
    globex = (("authorization", f"Bearer {GLOBEX_KEY}"),)
    async with ParleyClient(server.address, ACME_KEY) as client:
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await client.conversations.SendMessage(
                send_request("Hello"), metadata=globex
            )
    assert raised.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert error_info(raised.value) == ("AGENT_NUMBER_NOT_OWNED", "parley")


async def test_stream_carries_api_key(server: Parley) -> None:
    request = events_pb2.SubscribeEventsRequest(after_sequence=0, heartbeat_seconds=1)
    async with ParleyClient(server.address, ACME_KEY) as client:
        stream = client.subscribe(request)
        async with contextlib.aclosing(stream):
            first = await asyncio.wait_for(anext(stream), WAIT_TIMEOUT)
    assert first.HasField("heartbeat")

    async with ParleyClient(server.address, "unknown-key-7Qx2") as client:
        stream = client.subscribe(request, resume=True)
        async with contextlib.aclosing(stream):
            with pytest.raises(grpc.aio.AioRpcError) as raised:
                await asyncio.wait_for(anext(stream), WAIT_TIMEOUT)
    assert raised.value.code() == grpc.StatusCode.UNAUTHENTICATED


async def test_send_message_generates_key(server: Parley, tmp_path: Path) -> None:
    request = send_request("Hello")
    async with ParleyClient(server.address, ACME_KEY) as client:
        response = await client.send_message(request)
    assert not response.replay
    # The caller's request stays without a key.
    assert request.idempotency_key == ""
    rows = query(
        tmp_path / "parley.db",
        "SELECT key FROM idempotency_keys WHERE account_id = 'acme'",
    )
    assert len(rows) == 1
    stored_key = rows[0][0]
    assert isinstance(stored_key, str)
    assert uuid.UUID(stored_key).version == 4


async def test_send_message_explicit_key_replays(
    server: Parley, tmp_path: Path
) -> None:
    request = send_request("Hello", idempotency_key="booking-42")
    async with ParleyClient(server.address, ACME_KEY) as client:
        first = await client.send_message(request)
        second = await client.send_message(request)
    assert not first.replay
    assert second.replay
    assert second.conversation_id == first.conversation_id
    assert second.message_id == first.message_id
    assert query(tmp_path / "parley.db", "SELECT COUNT(*) FROM messages") == [(1,)]


async def test_send_message_new_key_per_call(server: Parley, tmp_path: Path) -> None:
    """Two calls without a key are two requests, so two messages are sent."""
    request = send_request("Hello")
    async with ParleyClient(server.address, ACME_KEY) as client:
        first = await client.send_message(request)
        second = await client.send_message(request)
    assert not second.replay
    assert second.message_id != first.message_id
    assert query(tmp_path / "parley.db", "SELECT COUNT(*) FROM messages") == [(2,)]


async def test_error_helpers_decode_invalid_argument(
    server: Parley, tmp_path: Path
) -> None:
    request = send_request("Hello")
    request.user_number = "+1415"
    async with ParleyClient(server.address, ACME_KEY) as client:
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await client.send_message(request, retries=RETRIES)
    error = raised.value
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error_info(error) == ("INVALID_PHONE_NUMBER", "parley")
    violations = field_violations(error)
    assert len(violations) == 1
    field, description = violations[0]
    assert field == "user_number"
    assert '"+1415"' in description
    status = rich_status(error)
    assert status is not None
    assert status.code == code_pb2.INVALID_ARGUMENT
    assert status.message == error.details()
    # A rejected request stores nothing under the generated key.
    database = tmp_path / "parley.db"
    assert query(database, "SELECT COUNT(*) FROM idempotency_keys") == [(0,)]


async def test_error_helpers_decode_timeout_config(server: Parley) -> None:
    request = send_request("Hello")
    request.warning_seconds = 900
    async with ParleyClient(server.address, ACME_KEY) as client:
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await client.send_message(request)
    assert error_info(raised.value) == ("INVALID_TIMEOUT_CONFIG", "parley")
    assert [field for field, _ in field_violations(raised.value)] == ["warning_seconds"]


async def test_send_message_retries_across_restart(
    fixed_port_server: ServerProcess, caplog: pytest.LogCaptureFixture
) -> None:
    """A send started while the server is down succeeds once it is back, once."""
    process = fixed_port_server
    address = process.address
    client = ParleyClient(address, ACME_KEY, initial_backoff=0.2, max_backoff=1.0)
    async with client:
        warm_up = await client.send_message(send_request("Before the restart"))
        assert not warm_up.replay
        assert process.stop(signal.SIGTERM) == 0

        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await client.send_message(send_request("Not retried"), retries=0)
        assert raised.value.code() == grpc.StatusCode.UNAVAILABLE
        assert error_info(raised.value) is None
        assert field_violations(raised.value) == []

        caplog.set_level(logging.WARNING, logger="parley_client.client")
        sending = asyncio.create_task(
            client.send_message(send_request("During the restart"), retries=RETRIES)
        )
        try:
            await wait_until("first retry logged", lambda: bool(retry_keys(caplog)))
            await process.start()
            assert process.address == address
            response = await asyncio.wait_for(sending, WAIT_TIMEOUT * 2)
        finally:
            sending.cancel()

    assert not response.replay
    keys = retry_keys(caplog)
    assert len(keys) >= 1
    assert len(set(keys)) == 1
    rows = query(
        process.database,
        "SELECT id FROM messages WHERE text = ?",
        "During the restart",
    )
    assert rows == [(response.message_id,)]
    assert query(
        process.database, "SELECT COUNT(*) FROM messages WHERE text = 'Not retried'"
    ) == [(0,)]
    stored = query(
        process.database,
        "SELECT COUNT(*) FROM idempotency_keys WHERE key = ?",
        keys[0],
    )
    assert stored == [(1,)]


def retry_keys(caplog: pytest.LogCaptureFixture) -> list[str]:
    """Return the idempotency key of every SendMessage retry the client logged."""
    keys = []
    for record in caplog.records:
        if record.name != "parley_client.client":
            continue
        match = RETRY_KEY.search(record.getMessage())
        if match is not None and record.getMessage().startswith("SendMessage"):
            keys.append(match.group(1))
    return keys


def all_delivered(database: Path) -> bool:
    rows = query(
        database,
        "SELECT COUNT(*) FROM messages WHERE status != ?",
        types_pb2.MESSAGE_STATUS_DELIVERED,
    )
    return rows == [(0,)]


@pytest.mark.parametrize(
    "stop_signal",
    [
        pytest.param(signal.SIGTERM, id="graceful"),
        pytest.param(signal.SIGKILL, id="crash"),
    ],
)
async def test_subscribe_resumes_across_restart(
    fixed_port_server: ServerProcess, stop_signal: signal.Signals
) -> None:
    """Every event of the log arrives once and in order, across a restart."""
    process = fixed_port_server
    request = events_pb2.SubscribeEventsRequest(after_sequence=0, heartbeat_seconds=1)
    received: list[int] = []

    async def follow(client: ParleyClient) -> None:
        stream = client.subscribe(request, resume=True)
        async with contextlib.aclosing(stream):
            async for response in stream:
                if response.HasField("event"):
                    received.append(response.event.sequence)

    def caught_up() -> bool:
        # A subscription with resume=True should outlive the restart.
        if follower.done():
            raise AssertionError("subscribe(resume=True) ended at the restart")
        return received == process.acme_sequences(0)

    client = ParleyClient(
        process.address, ACME_KEY, initial_backoff=0.2, max_backoff=1.0
    )
    async with client:
        follower = asyncio.create_task(follow(client))
        try:
            for index in range(3):
                await client.send_message(send_request(f"before {index}"))
            await wait_until("delivered", lambda: all_delivered(process.database))
            await wait_until("events before the restart", caught_up)
            before = len(received)

            process.stop(stop_signal)
            await process.start()
            for index in range(3):
                await client.send_message(
                    send_request(f"after {index}"), retries=RETRIES
                )
            await wait_until("delivered", lambda: all_delivered(process.database))
            await wait_until("events after the restart", caught_up)
            assert not follower.done()
        finally:
            follower.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await follower

    assert received == process.acme_sequences(0)
    assert len(received) > before
    assert received == sorted(set(received))
    # Each send after the restart added a message and three status events.
    assert len(received) - before >= 3 * 4
