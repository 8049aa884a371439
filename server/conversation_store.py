"""Rows of the `conversations` and `messages` tables as protobuf messages."""

from __future__ import annotations

import json
import uuid

from parley.v1 import types_pb2

from server.db import Row, Transaction
from server.directory import Reader
from server.timeutil import timestamp_from_ms
from server.validation import json_to_struct, struct_to_json

_CONVERSATION_COLUMNS = (
    "id, account_id, agent_number, user_number, channel, state, end_reason, persona_id,"
    " persona_version, config, overrides, metadata, request_data, current_node_id,"
    " created_at, updated_at, ended_at, variables, handed_off, end_actor,"
    " resolved_pathway_version, results, handoff_actor"
)
_MESSAGE_COLUMNS = (
    "id, conversation_id, sender, text, status, error_code, segments, encoding,"
    " carrier_message_id, history, created_at, updated_at, author"
)


def new_id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex}"


def conversation_from_row(row: Row) -> types_pb2.Conversation:
    conversation = types_pb2.Conversation(
        id=row["id"],
        account_id=row["account_id"],
        agent_number=row["agent_number"],
        user_number=row["user_number"],
        channel=row["channel"],
        state=row["state"],
        end_reason=row["end_reason"],
        persona_id=row["persona_id"],
        persona_version=row["persona_version"],
        config=types_pb2.EffectiveConfig.FromString(row["config"]),
        overrides=types_pb2.ChannelConfig.FromString(row["overrides"]),
        metadata=json_to_struct(row["metadata"]),
        request_data=json_to_struct(row["request_data"]),
        current_node_id=row["current_node_id"],
        created_at=timestamp_from_ms(row["created_at"]),
        updated_at=timestamp_from_ms(row["updated_at"]),
        variables=json_to_struct(row["variables"]),
        handed_off=bool(row["handed_off"]),
        end_actor=row["end_actor"],
        resolved_pathway_version=row["resolved_pathway_version"],
        handoff_actor=row["handoff_actor"],
    )
    if row["results"] is not None:
        results = types_pb2.Conversation.FromString(row["results"])
        conversation.citations.extend(results.citations)
        conversation.outcomes.extend(results.outcomes)
    if row["ended_at"] is not None:
        conversation.ended_at.CopyFrom(timestamp_from_ms(row["ended_at"]))
    return conversation


def message_from_row(row: Row) -> types_pb2.Message:
    return types_pb2.Message(
        id=row["id"],
        conversation_id=row["conversation_id"],
        sender=row["sender"],
        text=row["text"],
        status=row["status"],
        error_code=row["error_code"],
        segments=row["segments"],
        encoding=row["encoding"],
        carrier_message_id=row["carrier_message_id"] or "",
        history=bool(row["history"]),
        created_at=timestamp_from_ms(row["created_at"]),
        updated_at=timestamp_from_ms(row["updated_at"]),
        author=row["author"],
    )


async def load_conversation(
    reader: Reader, conversation_id: str, account_id: str
) -> types_pb2.Conversation | None:
    row = await reader.fetchone(
        f"SELECT {_CONVERSATION_COLUMNS} FROM conversations WHERE id = ? AND account_id = ?",
        (conversation_id, account_id),
    )
    return None if row is None else conversation_from_row(row)


async def find_active_conversation(
    reader: Reader,
    account_id: str,
    agent_number: str,
    user_number: str,
    channel: types_pb2.Channel.ValueType,
) -> types_pb2.Conversation | None:
    row = await reader.fetchone(
        f"SELECT {_CONVERSATION_COLUMNS} FROM conversations WHERE account_id = ?"
        " AND agent_number = ? AND user_number = ? AND channel = ? AND state = ?",
        (
            account_id,
            agent_number,
            user_number,
            channel,
            types_pb2.CONVERSATION_STATE_ACTIVE,
        ),
    )
    return None if row is None else conversation_from_row(row)


async def find_latest_conversation(
    reader: Reader,
    account_id: str,
    agent_number: str,
    user_number: str,
    channel: types_pb2.Channel.ValueType,
) -> types_pb2.Conversation | None:
    row = await reader.fetchone(
        f"SELECT {_CONVERSATION_COLUMNS} FROM conversations WHERE account_id = ?"
        " AND agent_number = ? AND user_number = ? AND channel = ?"
        " ORDER BY created_at DESC, rowid DESC LIMIT 1",
        (account_id, agent_number, user_number, channel),
    )
    return None if row is None else conversation_from_row(row)


async def insert_conversation(
    transaction: Transaction, conversation: types_pb2.Conversation, now_ms: int
) -> None:
    conversation.created_at.CopyFrom(timestamp_from_ms(now_ms))
    conversation.updated_at.CopyFrom(timestamp_from_ms(now_ms))
    await transaction.execute(
        f"INSERT INTO conversations ({_CONVERSATION_COLUMNS})"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, NULL, ?, ?, ?, ?, ?, ?)",
        (
            conversation.id,
            conversation.account_id,
            conversation.agent_number,
            conversation.user_number,
            conversation.channel,
            conversation.state,
            conversation.end_reason,
            conversation.persona_id,
            conversation.persona_version,
            conversation.config.SerializeToString(deterministic=True),
            conversation.overrides.SerializeToString(deterministic=True),
            struct_to_json(conversation.metadata),
            struct_to_json(conversation.request_data),
            conversation.current_node_id,
            now_ms,
            now_ms,
            *_state_columns(conversation),
        ),
    )


async def update_conversation(
    transaction: Transaction, conversation: types_pb2.Conversation, now_ms: int
) -> None:
    """Write every mutable column of `conversation` and stamp updated_at."""
    conversation.updated_at.CopyFrom(timestamp_from_ms(now_ms))
    ended_at = (
        conversation.ended_at.ToMilliseconds()
        if conversation.HasField("ended_at")
        else None
    )
    await transaction.execute(
        "UPDATE conversations SET state = ?, end_reason = ?, persona_id = ?,"
        " persona_version = ?, config = ?, overrides = ?, metadata = ?, request_data = ?,"
        " current_node_id = ?, updated_at = ?, ended_at = ?, variables = ?, handed_off = ?,"
        " end_actor = ?, resolved_pathway_version = ?, results = ?, handoff_actor = ? WHERE id = ?",
        (
            conversation.state,
            conversation.end_reason,
            conversation.persona_id,
            conversation.persona_version,
            conversation.config.SerializeToString(deterministic=True),
            conversation.overrides.SerializeToString(deterministic=True),
            struct_to_json(conversation.metadata),
            struct_to_json(conversation.request_data),
            conversation.current_node_id,
            now_ms,
            ended_at,
            *_state_columns(conversation),
            conversation.id,
        ),
    )


async def insert_message(
    transaction: Transaction, message: types_pb2.Message, account_id: str, now_ms: int
) -> None:
    message.created_at.CopyFrom(timestamp_from_ms(now_ms))
    message.updated_at.CopyFrom(timestamp_from_ms(now_ms))
    await transaction.execute(
        f"INSERT INTO messages ({_MESSAGE_COLUMNS}, account_id)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            message.id,
            message.conversation_id,
            message.sender,
            message.text,
            message.status,
            message.error_code,
            message.segments,
            message.encoding,
            message.carrier_message_id or None,
            int(message.history),
            now_ms,
            now_ms,
            message.author,
            account_id,
        ),
    )


async def load_message(
    reader: Reader, message_id: str
) -> tuple[types_pb2.Message, str] | None:
    """Return the message and its account id."""
    row = await reader.fetchone(
        f"SELECT {_MESSAGE_COLUMNS}, account_id FROM messages WHERE id = ?",
        (message_id,),
    )
    return None if row is None else (message_from_row(row), row["account_id"])


async def find_message_by_carrier_id(
    reader: Reader,
    carrier_message_id: str,
    sender: types_pb2.Sender.ValueType,
    account_id: str | None,
) -> tuple[types_pb2.Message, str] | None:
    """Find a message by carrier id, within one account unless `account_id` is None."""
    if account_id is None:
        row = await reader.fetchone(
            f"SELECT {_MESSAGE_COLUMNS}, account_id FROM messages"
            " WHERE sender = ? AND carrier_message_id = ? LIMIT 1",
            (sender, carrier_message_id),
        )
    else:
        row = await reader.fetchone(
            f"SELECT {_MESSAGE_COLUMNS}, account_id FROM messages"
            " WHERE account_id = ? AND sender = ? AND carrier_message_id = ?",
            (account_id, sender, carrier_message_id),
        )
    return None if row is None else (message_from_row(row), row["account_id"])


def _state_columns(conversation: types_pb2.Conversation) -> tuple[object, ...]:
    """Values of the pathway, handoff and result columns, in column order."""
    results = None
    if conversation.citations or conversation.outcomes:
        holder = types_pb2.Conversation(
            citations=conversation.citations, outcomes=conversation.outcomes
        )
        results = holder.SerializeToString(deterministic=True)
    return (
        struct_to_json(conversation.variables),
        int(conversation.handed_off),
        conversation.end_actor,
        conversation.resolved_pathway_version,
        results,
        conversation.handoff_actor,
    )


async def load_transcript(
    reader: Reader, conversation_id: str
) -> list[types_pb2.Message]:
    """Return every message of the conversation in the order it was stored."""
    rows = await reader.fetchall(
        f"SELECT {_MESSAGE_COLUMNS} FROM messages WHERE conversation_id = ? ORDER BY seq",
        (conversation_id,),
    )
    return [message_from_row(row) for row in rows]


def metadata_dict(conversation: types_pb2.Conversation) -> dict[str, object]:
    loaded: dict[str, object] = json.loads(struct_to_json(conversation.metadata))
    return loaded
