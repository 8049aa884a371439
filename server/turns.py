"""Validation of SendMessage and CreateConversation fields before any write.

Both requests share the conversation fields (numbers, channel, persona,
overrides, metadata); `validate_turn` checks those and returns the
normalised numbers and channel. Nothing here touches the database.
"""

from __future__ import annotations

from dataclasses import dataclass

from parley.v1 import conversation_pb2, types_pb2

from server.errors import invalid_argument
from server.resolution import check_timer_range
from server.validation import (
    METADATA_MAX_BYTES,
    REQUEST_DATA_MAX_BYTES,
    STRUCT_MAX_DEPTH,
    normalize_e164,
    quote_value,
    validate_struct,
    validate_text,
    validate_uuid,
)

MAX_MESSAGE_CHARS = 1_600
MAX_ID_CHARS = 128
MAX_SCHEMA_IDS = 50

TurnRequest = (
    conversation_pb2.SendMessageRequest | conversation_pb2.CreateConversationRequest
)


@dataclass(frozen=True)
class Turn:
    """The normalised identity of a request's conversation."""

    agent_number: str
    user_number: str
    channel: types_pb2.Channel.ValueType
    persona_id: str


def validate_turn(request: TurnRequest) -> Turn:
    """Check every shared field; raise INVALID_ARGUMENT naming the first bad one."""
    user_number = normalize_e164(request.user_number, "user_number")
    agent_number = normalize_e164(request.agent_number, "agent_number")
    channel = validate_channel(request.channel)
    persona_id = (
        validate_uuid(request.persona_id, "persona_id") if request.persona_id else ""
    )
    if request.persona_version and not persona_id:
        raise invalid_argument(
            "persona_version",
            "persona_version needs persona_id; send the persona's UUID too.",
            reason="MISSING_FIELD",
        )
    _validate_identifier(request.persona_version, "persona_version")
    for name in ("pathway_id", "pathway_version", "start_node_id"):
        _validate_identifier(getattr(request, name), name)
        _validate_identifier(
            getattr(request.persona_settings, name), f"persona_settings.{name}"
        )
    for name in ("timeout_seconds", "warning_seconds"):
        check_timer_range(getattr(request, name), name)
    for name in ("timeout_message", "warning_message"):
        validate_text(getattr(request, name), name, MAX_MESSAGE_CHARS)
    _validate_id_list(request.outcome_ids, "outcome_ids")
    _validate_id_list(request.citation_schema_ids, "citation_schema_ids")
    validate_struct(
        request.metadata,
        "metadata",
        max_bytes=METADATA_MAX_BYTES,
        max_depth=STRUCT_MAX_DEPTH,
    )
    validate_struct(
        request.request_data,
        "request_data",
        max_bytes=REQUEST_DATA_MAX_BYTES,
        max_depth=STRUCT_MAX_DEPTH,
    )
    return Turn(agent_number, user_number, channel, persona_id)


def validate_sender(sender: int) -> types_pb2.Sender.ValueType:
    if sender == types_pb2.SENDER_AGENT:
        return types_pb2.SENDER_AGENT
    if sender in (types_pb2.SENDER_UNSPECIFIED, types_pb2.SENDER_USER):
        return types_pb2.SENDER_USER
    raise invalid_argument(
        "sender",
        f"sender {sender} is not a known value; use SENDER_USER or SENDER_AGENT.",
    )


def validate_channel(channel: int) -> types_pb2.Channel.ValueType:
    if channel == types_pb2.CHANNEL_WHATSAPP:
        return types_pb2.CHANNEL_WHATSAPP
    if channel in (types_pb2.CHANNEL_UNSPECIFIED, types_pb2.CHANNEL_SMS):
        return types_pb2.CHANNEL_SMS
    raise invalid_argument(
        "channel",
        f"channel {channel} is not a known value; use CHANNEL_SMS or CHANNEL_WHATSAPP.",
    )


def _validate_identifier(value: str, field: str) -> None:
    if len(value) > MAX_ID_CHARS or any(
        ch.isspace() or not ch.isprintable() for ch in value
    ):
        raise invalid_argument(
            field,
            f"{field} {quote_value(value)} is invalid; use at most {MAX_ID_CHARS} printable"
            " characters without spaces.",
        )


def _validate_id_list(values: types_pb2.StringList, field: str) -> None:
    if len(values.values) > MAX_SCHEMA_IDS:
        raise invalid_argument(
            field,
            f"{field} has {len(values.values)} entries; the maximum is {MAX_SCHEMA_IDS}.",
        )
    for index, value in enumerate(values.values):
        if not value:
            raise invalid_argument(f"{field}[{index}]", f"{field}[{index}] is empty.")
        _validate_identifier(value, f"{field}[{index}]")
