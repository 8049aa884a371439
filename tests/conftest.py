"""Fixtures: a real Parley server on 127.0.0.1:0 with its own SQLite file."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest
import yaml
from parley.v1 import (
    admin_pb2_grpc,
    carrier_pb2_grpc,
    conversation_pb2_grpc,
    events_pb2_grpc,
)

from server.app import Parley
from server.logs import configure_logging

OPERATOR_KEY = "ops-test-key-1"
ACME_KEY = "acme-test-key-1"
GLOBEX_KEY = "globex-test-key-1"
ACME_NUMBER = "+14155550100"
ACME_WHATSAPP_NUMBER = "+14155550101"
GLOBEX_NUMBER = "+12025550143"
USER_NUMBER = "+14155550123"
PERSONA_ID = "7b0e8c1e-3f5a-4a53-9d6e-2f4f1d9a0c11"
GLOBEX_PERSONA_ID = "0f1e2d3c-4b5a-4978-8695-a4b3c2d1e0f9"


def with_override_pathways(config: dict[str, Any]) -> dict[str, Any]:
    """Publish the pathways that the override tests name, in acme's config."""
    config["accounts"][0]["pathways"] = [
        _one_node_pathway("persona-path", ["1"]),
        _one_node_pathway("request-path", ["1", "3"]),
        _one_node_pathway("settings-path", ["3"]),
    ]
    return config


def _one_node_pathway(pathway_id: str, versions: list[str]) -> dict[str, Any]:
    """A published pathway whose single node greets, for override tests."""
    definition = {
        "start_node_id": "hello",
        "nodes": [{"id": "hello", "text": "Hello!"}],
    }
    return {
        "id": pathway_id,
        "versions": [{"version": v, "definition": definition} for v in versions],
    }


def base_config() -> dict[str, Any]:
    """Two accounts with one number each, a persona and a fast carrier."""
    return {
        "operator_keys": [OPERATOR_KEY],
        "server": {"heartbeat_seconds": 1},
        "carrier": {
            "kind": "simulator",
            "sent_after_ms": 20,
            "delivered_after_ms": 60,
            "fail_prefixes": {"+1650555019": "30003"},
        },
        "accounts": [
            {
                "id": "acme",
                "api_keys": [ACME_KEY],
                "numbers": [
                    {
                        "number": ACME_NUMBER,
                        "sms_config": {
                            "timeout_seconds": 600,
                            "warning_seconds": 300,
                            "timeout_message": "Closing this chat.",
                            "warning_message": "Still there?",
                            "restart_after_end": True,
                        },
                    },
                    {
                        "number": ACME_WHATSAPP_NUMBER,
                        "whatsapp_config": {"timeout_seconds": 120},
                    },
                ],
                "personas": [
                    {
                        "id": PERSONA_ID,
                        "default_version": "2",
                        "versions": [
                            {"version": "1", "config": {"timeout_seconds": 120}},
                            {
                                "version": "2",
                                "config": {
                                    "timeout_seconds": 300,
                                    "pathway_id": "persona-path",
                                },
                            },
                        ],
                    }
                ],
            },
            {
                "id": "globex",
                "api_keys": [GLOBEX_KEY],
                "numbers": [{"number": GLOBEX_NUMBER, "sms_config": {}}],
                "personas": [
                    {
                        "id": GLOBEX_PERSONA_ID,
                        "versions": [{"version": "1", "config": {}}],
                    }
                ],
            },
        ],
    }


class Stubs:
    """gRPC stubs on one channel, with per-key call metadata helpers."""

    def __init__(self, channel: grpc.aio.Channel) -> None:
        self.channel = channel
        self.conversations = conversation_pb2_grpc.ConversationServiceStub(channel)
        self.events = events_pb2_grpc.EventServiceStub(channel)
        self.carrier = carrier_pb2_grpc.CarrierServiceStub(channel)
        self.admin = admin_pb2_grpc.AdminServiceStub(channel)


def auth(key: str, *extra: tuple[str, str]) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {key}"), *extra)


ACME = auth(ACME_KEY)
GLOBEX = auth(GLOBEX_KEY)
OPERATOR = auth(OPERATOR_KEY)


@pytest.fixture(autouse=True, scope="session")
def _logging() -> None:
    configure_logging(level="warning")


@pytest.fixture
def config_data() -> dict[str, Any]:
    """The config the `server` fixture loads; tests may change it first."""
    return base_config()


@pytest.fixture
async def server(tmp_path: Path, config_data: dict[str, Any]) -> AsyncIterator[Parley]:
    config_path = tmp_path / "parley.yaml"
    config_path.write_text(yaml.safe_dump(config_data))
    parley = Parley(tmp_path / "parley.db", "127.0.0.1:0", config_path)
    await parley.start()
    try:
        yield parley
    finally:
        await parley.stop(grace=1.0)


@pytest.fixture
async def stubs(server: Parley) -> AsyncIterator[Stubs]:
    async with grpc.aio.insecure_channel(server.address) as channel:
        yield Stubs(channel)
