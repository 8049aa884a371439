"""Text and JSON rendering of Parley responses for the `parley` command.

Text output shows enum values by their short names (`queued`, `sms`) and
timestamps in ISO 8601 UTC. JSON output is the protobuf JSON mapping with
every field printed, including those at their default value.
"""

from __future__ import annotations

import datetime
import json
from decimal import Decimal
from typing import TextIO

from google.protobuf import json_format, timestamp_pb2
from google.protobuf.message import Message as ProtoMessage
from parley.v1 import admin_pb2, definitions_pb2, events_pb2, types_pb2

from parley_client.cli_output_results import (
    format_end_results,
    format_struct,
    summarize_end_results,
)
from parley_client.enum_names import enum_label


class Printer:
    """Writes lines or protobuf JSON to one stream, flushing after each write.

    Flushing keeps `parley events --follow` usable in a pipe.
    """

    def __init__(self, stream: TextIO, json_mode: bool) -> None:
        self.stream = stream
        self.json_mode = json_mode

    def line(self, text: str = "") -> None:
        print(text, file=self.stream, flush=True)

    def json(self, message: ProtoMessage, *, compact: bool = False) -> None:
        """Print a message as JSON, on one line when `compact` is set."""
        text = json_format.MessageToJson(
            message,
            indent=None if compact else 2,
            always_print_fields_with_no_presence=True,
        )
        self.line(text)


def format_timestamp(timestamp: timestamp_pb2.Timestamp) -> str:
    """Format a timestamp as ISO 8601 UTC, or "-" for an unset (zero) timestamp."""
    if timestamp.seconds == 0 and timestamp.nanos == 0:
        return "-"
    moment = timestamp.ToDatetime(tzinfo=datetime.UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def format_micros(amount_micros: int) -> str:
    """Format an amount in millionths of a unit as a decimal with six places."""
    return f"{Decimal(amount_micros).scaleb(-6):.6f}"


def format_message(message: types_pb2.Message) -> str:
    """Format one transcript line: time, sender, status, text and extras."""
    parts = [
        format_timestamp(message.created_at),
        enum_label(types_pb2.Sender, message.sender),
        enum_label(types_pb2.MessageStatus, message.status),
        json.dumps(message.text, ensure_ascii=False),
    ]
    if message.error_code:
        parts.append(f"error={message.error_code}")
    if message.segments:
        encoding = enum_label(types_pb2.Encoding, message.encoding)
        parts.append(f"segments={message.segments}/{encoding}")
    if message.history:
        parts.append("history")
    if message.author:
        parts.append(f"author={message.author}")
    parts.append(f"id={message.id}")
    return "  ".join(parts)


def format_conversation_row(conversation: types_pb2.Conversation) -> str:
    """Format one line of `parley list`."""
    parts = [
        conversation.id,
        enum_label(types_pb2.ConversationState, conversation.state),
        enum_label(types_pb2.Channel, conversation.channel),
        f"{conversation.agent_number} -> {conversation.user_number}",
        format_timestamp(conversation.created_at),
    ]
    if conversation.end_reason:
        parts.append(f"reason={conversation.end_reason}")
    if conversation.metadata.fields:
        parts.append(format_struct(conversation.metadata))
    return "  ".join(parts)


def format_conversation_details(conversation: types_pb2.Conversation) -> list[str]:
    """Format the `label: value` lines of `parley get`, then the end results."""
    persona = conversation.persona_id
    if persona:
        persona = f"{persona} version {conversation.persona_version}"
    pathway = conversation.config.pathway_id
    if pathway and conversation.resolved_pathway_version:
        pathway = f"{pathway} version {conversation.resolved_pathway_version}"
    config = json_format.MessageToDict(conversation.config)
    return [
        f"id: {conversation.id}",
        f"account: {conversation.account_id}",
        f"state: {enum_label(types_pb2.ConversationState, conversation.state)}",
        f"end reason: {conversation.end_reason or '-'}",
        f"end actor: {conversation.end_actor or '-'}",
        f"handed off: {_handoff_text(conversation)}",
        f"channel: {enum_label(types_pb2.Channel, conversation.channel)}",
        f"agent number: {conversation.agent_number}",
        f"user number: {conversation.user_number}",
        f"persona: {persona or '-'}",
        f"pathway: {pathway or '-'}",
        f"current node: {conversation.current_node_id or '-'}",
        f"variables: {format_struct(conversation.variables)}",
        f"created: {format_timestamp(conversation.created_at)}",
        f"updated: {format_timestamp(conversation.updated_at)}",
        f"ended: {format_timestamp(conversation.ended_at)}",
        f"metadata: {format_struct(conversation.metadata)}",
        f"request data: {format_struct(conversation.request_data)}",
        f"config: {json.dumps(config, ensure_ascii=False, separators=(',', ':'))}",
        *format_end_results(conversation),
    ]


def format_handoff_state(conversation: types_pb2.Conversation) -> str:
    """Format the line of `parley handoff` and `parley resume`."""
    state = enum_label(types_pb2.ConversationState, conversation.state)
    return f"conversation {conversation.id}  {state}  handed off: {_handoff_text(conversation)}"


def _handoff_text(conversation: types_pb2.Conversation) -> str:
    """Return "no", "yes", or "yes (by ACTOR)" when the actor is known."""
    if not conversation.handed_off:
        return "no"
    if conversation.handoff_actor:
        return f"yes (by {conversation.handoff_actor})"
    return "yes"


def _event_summary(event: events_pb2.Event) -> str:
    """Describe an event's payload: message status and text, or conversation state."""
    payload = event.WhichOneof("payload")
    if payload == "message":
        return _message_summary(event)
    if payload == "conversation":
        return _conversation_summary(event)
    return "-"


def _message_summary(event: events_pb2.Event) -> str:
    message = event.message
    status = enum_label(types_pb2.MessageStatus, message.status)
    changed = event.type == events_pb2.EVENT_TYPE_MESSAGE_STATUS_CHANGED
    # The first status event of a message has no previous status to show.
    if changed and event.previous_status != types_pb2.MESSAGE_STATUS_UNSPECIFIED:
        previous = enum_label(types_pb2.MessageStatus, event.previous_status)
        status = f"{previous}->{status}"
    parts = [
        enum_label(types_pb2.Sender, message.sender),
        status,
        json.dumps(message.text, ensure_ascii=False),
    ]
    if message.error_code:
        parts.append(f"error={message.error_code}")
    return " ".join(parts)


def _conversation_summary(event: events_pb2.Event) -> str:
    conversation = event.conversation
    config = conversation.config
    if event.type == events_pb2.EVENT_TYPE_WARNING_SENT:
        return f"warning sent after {config.warning_seconds}s without a reply"
    if event.type == events_pb2.EVENT_TYPE_TIMED_OUT:
        return f"timed out after {config.timeout_seconds}s without a reply"
    parts = [enum_label(types_pb2.ConversationState, conversation.state)]
    if conversation.end_reason:
        parts.append(f"reason={conversation.end_reason}")
    if conversation.end_actor:
        parts.append(f"actor={conversation.end_actor}")
    if event.type == events_pb2.EVENT_TYPE_CONVERSATION_CREATED and config.pathway_id:
        parts.append(f"pathway={config.pathway_id}")
    if event.type == events_pb2.EVENT_TYPE_CONVERSATION_UPDATED:
        parts.append(f"handed_off={'yes' if conversation.handed_off else 'no'}")
    summary = " ".join(parts)
    if event.type == events_pb2.EVENT_TYPE_CONVERSATION_ENDED:
        summary = "; ".join([summary, *summarize_end_results(conversation)])
    return summary


def format_event(event: events_pb2.Event) -> str:
    """Format one line of `parley events`: sequence, type, conversation, summary."""
    parts = [
        str(event.sequence),
        enum_label(events_pb2.EventType, event.type),
        event.conversation_id or "-",
        _event_summary(event),
    ]
    if event.metadata.fields:
        parts.append(format_struct(event.metadata))
    return "  ".join(parts)


def format_heartbeat(heartbeat: events_pb2.Heartbeat) -> str:
    return f"{heartbeat.sequence}  heartbeat  {format_timestamp(heartbeat.time)}"


def format_usage_totals(usage: admin_pb2.GetUsageResponse) -> str:
    return (
        f"total: {usage.total_messages} messages, {usage.total_segments} segments, "
        f"amount {format_micros(usage.total_amount_micros)}"
    )


def format_ledger_entry(entry: admin_pb2.LedgerEntry) -> str:
    encoding = enum_label(types_pb2.Encoding, entry.encoding)
    return "  ".join(
        [
            format_timestamp(entry.created_at),
            f"message={entry.message_id}",
            f"conversation={entry.conversation_id}",
            f"segments={entry.segments}/{encoding}",
            f"amount={format_micros(entry.amount_micros)}",
        ]
    )


def _format_channel_config(config: types_pb2.ChannelConfig, enabled: bool) -> str:
    if not enabled:
        return "disabled"
    value = json_format.MessageToDict(config)
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def format_number(number: admin_pb2.AgentNumber) -> str:
    """Format one line of `parley admin numbers` with both channel configurations."""
    sms = _format_channel_config(number.sms_config, number.HasField("sms_config"))
    whatsapp = _format_channel_config(
        number.whatsapp_config, number.HasField("whatsapp_config")
    )
    return (
        f"{number.number}  account={number.account_id}  sms={sms}  whatsapp={whatsapp}"
    )


def format_apply_counts(counts: admin_pb2.ApplyConfigResponse) -> str:
    return (
        f"applied: {counts.accounts} accounts, {counts.api_keys} API keys, "
        f"{counts.numbers} numbers, {counts.personas} personas, "
        f"{counts.persona_versions} persona versions, "
        f"{counts.pathway_versions} pathway versions, "
        f"{counts.citation_schemas} citation schemas, {counts.outcomes} outcomes"
    )


def format_pathway(pathway: definitions_pb2.Pathway) -> str:
    """Format one line of `parley admin pathways`: id, versions, latest entry."""
    versions = ",".join(version.version for version in pathway.versions) or "-"
    parts = [pathway.id, f"versions={versions}"]
    if pathway.versions:
        latest = pathway.versions[-1]
        parts.append(f"latest={latest.version}")
        parts.append(f"start={latest.definition.start_node_id}")
        parts.append(f"nodes={len(latest.definition.nodes)}")
        parts.append(f"published={format_timestamp(latest.published_at)}")
    return "  ".join(parts)


def format_citation_schema(schema: definitions_pb2.CitationSchema) -> str:
    """Format one line of `parley admin citation-schemas`: id and typed variables."""
    variables = ",".join(
        f"{variable.name}:{variable.type}" for variable in schema.variables
    )
    return "  ".join(
        [
            schema.id,
            f"variables={variables or '-'}",
            f"updated={format_timestamp(schema.updated_at)}",
        ]
    )


def format_outcome(outcome: definitions_pb2.Outcome) -> str:
    """Format one line of `parley admin outcomes`; a zero limit is the server default."""
    time_limit = f"{outcome.time_limit_ms}ms" if outcome.time_limit_ms else "default"
    memory_limit = (
        f"{outcome.memory_limit_mb}MiB" if outcome.memory_limit_mb else "default"
    )
    return "  ".join(
        [
            outcome.id,
            f"time_limit={time_limit}",
            f"memory_limit={memory_limit}",
            f"script_lines={len(outcome.script.splitlines())}",
            f"updated={format_timestamp(outcome.updated_at)}",
        ]
    )
