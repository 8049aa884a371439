"""A validated user text addressed to an agent number."""

from __future__ import annotations

from dataclasses import dataclass

from parley.v1 import types_pb2


@dataclass(frozen=True)
class InboundText:
    agent_number: str
    user_number: str
    channel: types_pb2.Channel.ValueType
    text: str
    carrier_message_id: str
