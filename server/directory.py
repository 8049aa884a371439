"""Read access to agent numbers and persona versions.

The functions take a `Database` or an open `Transaction`, so request
handling can read inside the transaction that then writes.
"""

from __future__ import annotations

from dataclasses import dataclass

from parley.v1 import types_pb2

from server.db import Database, Row, Transaction

Reader = Database | Transaction


@dataclass(frozen=True)
class NumberRecord:
    """An agent number and its per-channel configuration (None: not enabled)."""

    number: str
    account_id: str
    sms_config: types_pb2.ChannelConfig | None
    whatsapp_config: types_pb2.ChannelConfig | None

    def channel_config(
        self, channel: types_pb2.Channel.ValueType
    ) -> types_pb2.ChannelConfig | None:
        if channel == types_pb2.CHANNEL_WHATSAPP:
            return self.whatsapp_config
        return self.sms_config


@dataclass(frozen=True)
class PersonaRecord:
    id: str
    account_id: str
    default_version: str


async def get_number(reader: Reader, number: str) -> NumberRecord | None:
    row = await reader.fetchone(
        "SELECT number, account_id, sms_config, whatsapp_config FROM numbers WHERE number = ?",
        (number,),
    )
    return None if row is None else number_from_row(row)


def number_from_row(row: Row) -> NumberRecord:
    return NumberRecord(
        number=row["number"],
        account_id=row["account_id"],
        sms_config=_config_or_none(row["sms_config"]),
        whatsapp_config=_config_or_none(row["whatsapp_config"]),
    )


async def get_persona(reader: Reader, persona_id: str) -> PersonaRecord | None:
    row = await reader.fetchone(
        "SELECT id, account_id, default_version FROM personas WHERE id = ?",
        (persona_id,),
    )
    if row is None:
        return None
    return PersonaRecord(row["id"], row["account_id"], row["default_version"])


async def get_persona_version_config(
    reader: Reader, persona_id: str, version: str
) -> types_pb2.ChannelConfig | None:
    row = await reader.fetchone(
        "SELECT config FROM persona_versions WHERE persona_id = ? AND version = ?",
        (persona_id, version),
    )
    if row is None:
        return None
    return types_pb2.ChannelConfig.FromString(row["config"])


def _config_or_none(blob: bytes | None) -> types_pb2.ChannelConfig | None:
    return None if blob is None else types_pb2.ChannelConfig.FromString(blob)
