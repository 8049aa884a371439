"""Operations: health, reflection, logs, shutdown, start-up errors, cleanup."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest
import yaml
from conftest import (
    ACME,
    ACME_KEY,
    ACME_NUMBER,
    GLOBEX_KEY,
    OPERATOR_KEY,
    USER_NUMBER,
    Stubs,
    base_config,
)
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from parley.v1 import conversation_pb2, events_pb2
from server_process import REPO_ROOT, ServerProcess

from server.app import SERVICE_NAMES, Parley
from server.maintenance import run_cleanup


class ManualClock:
    """A clock that moves only when the test advances it."""

    def __init__(self, now_ms: int) -> None:
        self.now = now_ms

    def now_ms(self) -> int:
        return self.now


@pytest.fixture
async def process(tmp_path: Path) -> AsyncIterator[ServerProcess]:
    server = ServerProcess(tmp_path)
    await server.start()
    yield server
    server.kill_if_running()


async def test_health_reports_serving(server: Parley, stubs: Stubs) -> None:
    health = health_pb2_grpc.HealthStub(stubs.channel)
    for service in ("", *SERVICE_NAMES):
        response = await health.Check(health_pb2.HealthCheckRequest(service=service))
        assert response.status == health_pb2.HealthCheckResponse.SERVING, service


async def test_reflection_lists_services(server: Parley, stubs: Stubs) -> None:
    reflection = reflection_pb2_grpc.ServerReflectionStub(stubs.channel)
    request = reflection_pb2.ServerReflectionRequest(list_services="")
    names: set[str] = set()
    async for response in reflection.ServerReflectionInfo(iter([request])):
        names.update(
            service.name for service in response.list_services_response.service
        )
    assert set(SERVICE_NAMES) <= names


async def test_log_line_per_rpc_masks_secrets(process: ServerProcess) -> None:
    """Each RPC logs one line with method and code; no key or full number."""
    async with grpc.aio.insecure_channel(process.address) as channel:
        stubs = Stubs(channel)
        await stubs.conversations.SendMessage(
            conversation_pb2.SendMessageRequest(
                agent_number=ACME_NUMBER, user_number=USER_NUMBER, agent_message="hi"
            ),
            metadata=ACME,
        )
        with pytest.raises(grpc.aio.AioRpcError):
            await stubs.conversations.SendMessage(
                conversation_pb2.SendMessageRequest(
                    agent_number=ACME_NUMBER, user_number="+1415", agent_message="hi"
                ),
                metadata=ACME,
            )
        await asyncio.sleep(0.3)
    assert process.stop(signal.SIGTERM) == 0
    records = process.log_records()
    rpc_lines = [
        r for r in records if r.get("event") == "rpc" and r.get("rpc") == "SendMessage"
    ]
    assert [r["code"] for r in rpc_lines] == ["OK", "INVALID_ARGUMENT"]
    assert rpc_lines[0]["account_id"] == "acme"
    assert rpc_lines[1]["reason"] == "INVALID_PHONE_NUMBER"
    assert all("duration_ms" in r for r in rpc_lines)
    assert any(r.get("event") == "server_stopped" for r in records)
    text = process.log_path.read_text()
    for secret in (ACME_KEY, GLOBEX_KEY, OPERATOR_KEY, ACME_NUMBER, USER_NUMBER):
        assert secret not in text, f"{secret} appears in the server log"


async def test_sigterm_ends_streams_cleanly(process: ServerProcess) -> None:
    """SIGTERM ends an open stream with status OK and the server exits 0."""
    async with grpc.aio.insecure_channel(process.address) as channel:
        stream = Stubs(channel).events.SubscribeEvents(
            events_pb2.SubscribeEventsRequest(heartbeat_seconds=1), metadata=ACME
        )
        first = await asyncio.wait_for(stream.read(), 10)
        assert first.HasField("heartbeat")
        process.stop(signal.SIGTERM)
        while (await asyncio.wait_for(stream.read(), 15)) is not grpc.aio.EOF:
            pass
        assert await stream.code() == grpc.StatusCode.OK
    assert process.process is not None
    assert process.process.returncode == 0


@pytest.mark.parametrize(
    "config_text, expected",
    [
        ("accounts: [", "INVALID_CONFIG"),
        ("accounts:\n  - id: acme\n    numbrs: []\n", "numbrs"),
        ("accounts:\n  - id: acme\n    numbers:\n      - number: '12345'\n", "number"),
    ],
)
def test_bad_config_exits_2(tmp_path: Path, config_text: str, expected: str) -> None:
    """A broken config file stops start-up with exit code 2 and a log line."""
    config = tmp_path / "bad.yaml"
    config.write_text(config_text)
    result = subprocess.run(
        [sys.executable, "-m", "server", "--config", str(config), "--database",
         str(tmp_path / "x.db"), "--listen", "127.0.0.1:0"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )  # fmt: skip
    assert result.returncode == 2
    assert "startup_failed" in result.stderr
    assert expected in result.stderr
    assert "Traceback" not in result.stderr


def test_environment_variables_configure_server(tmp_path: Path) -> None:
    """PARLEY_CONFIG, PARLEY_DATABASE and PARLEY_LISTEN stand in for the flags."""
    config = tmp_path / "env.yaml"
    config.write_text(yaml.safe_dump(base_config()))
    database = tmp_path / "env.db"
    environment = {
        "PARLEY_CONFIG": str(config),
        "PARLEY_DATABASE": str(database),
        "PARLEY_LISTEN": "127.0.0.1:0",
        "PATH": "/usr/bin:/bin",
    }
    server = subprocess.Popen(
        [sys.executable, "-m", "server"],
        cwd=REPO_ROOT,
        env=environment,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stderr is not None
        for line in server.stderr:
            if '"serving"' in line:
                break
        assert '"address": "127.0.0.1:' in line
        assert database.exists()
    finally:
        server.send_signal(signal.SIGTERM)
        server.communicate(timeout=30)
    assert server.returncode == 0


class TestCleanup:
    async def test_idempotency_keys_expire_after_retention(
        self, tmp_path: Path
    ) -> None:
        """A key is replayed within 24 hours and free again after cleanup."""
        config: dict[str, Any] = base_config()
        config_path = tmp_path / "parley.yaml"
        config_path.write_text(yaml.safe_dump(config))
        clock = ManualClock(1_800_000_000_000)
        parley = Parley(tmp_path / "parley.db", "127.0.0.1:0", config_path, clock=clock)
        await parley.start()
        try:
            async with grpc.aio.insecure_channel(parley.address) as channel:
                stubs = Stubs(channel)
                request = conversation_pb2.SendMessageRequest(
                    agent_number=ACME_NUMBER,
                    user_number=USER_NUMBER,
                    agent_message="hi",
                    idempotency_key="daily-1",
                )
                first = await stubs.conversations.SendMessage(request, metadata=ACME)
                assert parley.components is not None
                clock.now += 23 * 3_600_000
                assert await run_cleanup(parley.components) == (0, 0)
                within = await stubs.conversations.SendMessage(request, metadata=ACME)
                assert within.replay
                clock.now += 2 * 3_600_000
                keys_deleted, _ = await run_cleanup(parley.components)
                assert keys_deleted == 1
                after = await stubs.conversations.SendMessage(request, metadata=ACME)
                assert not after.replay
                assert after.message_id != first.message_id
        finally:
            await parley.stop(grace=1.0)
