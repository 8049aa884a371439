"""SendMessage and CreateConversation: resolve, validate, write, hand off.

Each request runs in one write transaction: the idempotency lookup, the
ownership and persona checks, the configuration check and every write with
its events. Any error rolls the whole transaction back, so a rejected
request stores, sends, charges and emits nothing. The carrier receives an
outbound message only after the commit.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from parley.v1 import conversation_pb2, events_pb2, types_pb2

from server import idempotency
from server.conversation_store import (
    find_active_conversation,
    insert_conversation,
    insert_message,
    new_id,
    update_conversation,
)
from server.db import Transaction
from server.definitions import get_pathway_version
from server.directory import (
    NumberRecord,
    get_number,
    get_persona,
    get_persona_version_config,
)
from server.errors import (
    failed_precondition,
    invalid_argument,
    not_found,
    permission_denied,
)
from server.lifecycle import Lifecycle
from server.outbound import send_agent_text
from server.resolution import check_timers, resolve_config
from server.segments import count_segments
from server.turns import (
    MAX_MESSAGE_CHARS,
    Turn,
    TurnRequest,
    validate_sender,
    validate_turn,
)
from server.validation import quote_value, validate_text

_PATHWAY_FIELDS: tuple[
    Literal["pathway_id", "pathway_version", "start_node_id"], ...
] = (
    "pathway_id",
    "pathway_version",
    "start_node_id",
)
_TIMER_FIELDS: tuple[
    Literal["timeout_seconds", "warning_seconds", "timeout_message", "warning_message"],
    ...,
] = ("timeout_seconds", "warning_seconds", "timeout_message", "warning_message")
_LIST_FIELDS: tuple[Literal["outcome_ids", "citation_schema_ids"], ...] = (
    "outcome_ids",
    "citation_schema_ids",
)


@dataclass(frozen=True)
class PersonaChoice:
    persona_id: str
    version: str
    config: types_pb2.ChannelConfig | None


class Conversations:
    """The write paths of ConversationService."""

    def __init__(self, lifecycle: Lifecycle) -> None:
        self._lifecycle = lifecycle
        self._components = lifecycle.components

    async def send_message(
        self, account_id: str, request: conversation_pb2.SendMessageRequest, key: str
    ) -> conversation_pb2.SendMessageResponse:
        turn = validate_turn(request)
        validate_text(request.agent_message, "agent_message", MAX_MESSAGE_CHARS)
        fingerprint = (
            idempotency.request_fingerprint("SendMessage", request) if key else ""
        )
        components = self._components
        async with components.database.transaction() as tx:
            now = components.clock.now_ms()
            if key:
                stored = await idempotency.find_response(
                    tx,
                    account_id,
                    key,
                    fingerprint,
                    conversation_pb2.SendMessageResponse,
                )
                if stored is not None:
                    stored.replay = True
                    return stored
            conversation = await self._prepare(
                tx, account_id, turn, request, now, end_reason="NEW_CONVERSATION"
            )
            message = await self._send_turn(
                tx, conversation, request.agent_message, now
            )
            response = conversation_pb2.SendMessageResponse(
                conversation_id=conversation.id,
                message_id=message.id,
                message_status=message.status,
            )
            if key:
                await idempotency.store_response(
                    tx, account_id, key, fingerprint, response, now
                )
        return response

    async def _send_turn(
        self, tx: Transaction, conversation: types_pb2.Conversation, text: str, now: int
    ) -> types_pb2.Message:
        """Send `text`, or the pathway's reply of the current node when it is empty."""
        lifecycle = self._lifecycle
        if text:
            message = await send_agent_text(
                self._components, tx, conversation, text, now
            )
            await lifecycle.after_agent_message(tx, conversation, now)
            return message
        if conversation.handed_off:
            raise failed_precondition(
                "HANDED_OFF",
                f"conversation {conversation.id} is handed off to a human, so the agent"
                " does not reply; send agent_message or resume the conversation.",
            )
        reply = await lifecycle.replies.first_reply(tx, conversation)
        if not reply.text:
            raise failed_precondition(
                "EMPTY_REPLY",
                f"node {conversation.current_node_id!r} of pathway"
                f" {conversation.config.pathway_id!r} rendered empty text; send"
                " agent_message or give the node a text.",
            )
        sent = await lifecycle.send_reply(tx, conversation, reply, now)
        assert sent is not None, "a reply with text always sends a message"
        return sent

    async def create_conversation(
        self,
        account_id: str,
        request: conversation_pb2.CreateConversationRequest,
        key: str,
    ) -> conversation_pb2.CreateConversationResponse:
        turn = validate_turn(request)
        validate_text(request.message, "message", MAX_MESSAGE_CHARS)
        sender = validate_sender(request.sender)
        fingerprint = (
            idempotency.request_fingerprint("CreateConversation", request)
            if key
            else ""
        )
        components = self._components
        async with components.database.transaction() as tx:
            now = components.clock.now_ms()
            if key:
                stored = await idempotency.find_response(
                    tx,
                    account_id,
                    key,
                    fingerprint,
                    conversation_pb2.CreateConversationResponse,
                )
                if stored is not None:
                    stored.replay = True
                    return stored
            conversation = await self._prepare(
                tx,
                account_id,
                turn,
                request,
                now,
                end_reason="REPLACED",
                always_new=True,
            )
            response = conversation_pb2.CreateConversationResponse(
                conversation_id=conversation.id
            )
            if request.message:
                message = await self._store_history(
                    tx, conversation, request.message, sender, now
                )
                response.message_id = message.id
                response.message_status = message.status
            if key:
                await idempotency.store_response(
                    tx, account_id, key, fingerprint, response, now
                )
        return response

    async def _prepare(
        self,
        tx: Transaction,
        account_id: str,
        turn: Turn,
        request: TurnRequest,
        now: int,
        *,
        end_reason: str,
        always_new: bool = False,
    ) -> types_pb2.Conversation:
        """Find or start the conversation and apply the request's settings to it."""
        number = await _owned_number(tx, account_id, turn)
        channel_config = _enabled_channel(number, turn)
        active = await find_active_conversation(
            tx, account_id, turn.agent_number, turn.user_number, turn.channel
        )
        start_new = always_new or request.new_conversation or active is None
        previous = None if start_new else active
        persona = await _choose_persona(tx, account_id, turn, request, previous)
        overrides = _updated_overrides(previous, request)
        config = resolve_config(channel_config, persona.config, overrides)
        check_timers(config)

        if start_new and active is not None:
            await self._lifecycle.end(tx, active, end_reason, now)
        conversation = previous or types_pb2.Conversation(
            id=new_id("conv"),
            account_id=account_id,
            agent_number=turn.agent_number,
            user_number=turn.user_number,
            channel=turn.channel,
            state=types_pb2.CONVERSATION_STATE_ACTIVE,
        )
        before = conversation.SerializeToString(deterministic=True)
        if _pathway_changed(conversation.config, config):
            # A different pathway, version or entry node starts from its entry
            # node again; captured variables stay.
            conversation.current_node_id = ""
            conversation.resolved_pathway_version = ""
        if config.pathway_id and _sets_pathway(request):
            await _check_pathway_published(tx, account_id, config)
        conversation.persona_id = persona.persona_id
        conversation.persona_version = persona.version
        conversation.overrides.CopyFrom(overrides)
        conversation.config.CopyFrom(config)
        if request.HasField("metadata"):
            conversation.metadata.CopyFrom(request.metadata)
        if request.HasField("request_data"):
            conversation.request_data.CopyFrom(request.request_data)

        events = self._components.events
        if previous is None:
            await insert_conversation(tx, conversation, now)
            await events.append(
                tx,
                events_pb2.EVENT_TYPE_CONVERSATION_CREATED,
                conversation=conversation,
                now_ms=now,
            )
        elif conversation.SerializeToString(deterministic=True) != before:
            await update_conversation(tx, conversation, now)
            await events.append(
                tx,
                events_pb2.EVENT_TYPE_CONVERSATION_UPDATED,
                conversation=conversation,
                now_ms=now,
            )
        return conversation

    async def _store_history(
        self,
        tx: Transaction,
        conversation: types_pb2.Conversation,
        text: str,
        sender: types_pb2.Sender.ValueType,
        now: int,
    ) -> types_pb2.Message:
        """Store a history message: never sent, never charged."""
        status = (
            types_pb2.MESSAGE_STATUS_RECEIVED
            if sender == types_pb2.SENDER_USER
            else types_pb2.MESSAGE_STATUS_DELIVERED
        )
        count = count_segments(text)
        message = types_pb2.Message(
            id=new_id("msg"),
            conversation_id=conversation.id,
            sender=sender,
            text=text,
            status=status,
            encoding=count.encoding,
            history=True,
        )
        await insert_message(tx, message, conversation.account_id, now)
        await self._components.events.append(
            tx,
            events_pb2.EVENT_TYPE_MESSAGE_CREATED,
            conversation=conversation,
            message=message,
            now_ms=now,
        )
        return message


def _pathway_changed(
    old: types_pb2.EffectiveConfig, new: types_pb2.EffectiveConfig
) -> bool:
    return (old.pathway_id, old.pathway_version, old.start_node_id) != (
        new.pathway_id,
        new.pathway_version,
        new.start_node_id,
    )


def _sets_pathway(request: TurnRequest) -> bool:
    """Tell whether the request chooses a pathway, directly or through a persona."""
    settings = request.persona_settings
    return (
        bool(request.persona_id)
        or any(request.HasField(name) for name in _PATHWAY_FIELDS)
        or any(settings.HasField(name) for name in _PATHWAY_FIELDS)
    )


async def _check_pathway_published(
    tx: Transaction, account_id: str, config: types_pb2.EffectiveConfig
) -> None:
    found = await get_pathway_version(
        tx, account_id, config.pathway_id, config.pathway_version
    )
    if found is None:
        version = config.pathway_version or "(latest)"
        raise not_found(
            "PATHWAY_NOT_FOUND",
            f"pathway_id {quote_value(config.pathway_id)} version {quote_value(version)} is"
            " not published for this account; publish it with"
            " AdminService.PublishPathwayVersion or the config file.",
        )


async def _owned_number(tx: Transaction, account_id: str, turn: Turn) -> NumberRecord:
    number = await get_number(tx, turn.agent_number)
    if number is None or number.account_id != account_id:
        raise permission_denied(
            "AGENT_NUMBER_NOT_OWNED",
            f"agent_number {turn.agent_number} does not belong to the caller's account;"
            " use one of the account's numbers (AdminService.ListNumbers).",
        )
    return number


def _enabled_channel(number: NumberRecord, turn: Turn) -> types_pb2.ChannelConfig:
    config = number.channel_config(turn.channel)
    if config is None:
        name = types_pb2.Channel.Name(turn.channel)
        raise failed_precondition(
            "CHANNEL_NOT_ENABLED",
            f"agent_number {turn.agent_number} is not enabled for {name}; enable the"
            " channel on the number or send on another channel.",
        )
    return config


async def _choose_persona(
    tx: Transaction,
    account_id: str,
    turn: Turn,
    request: TurnRequest,
    previous: types_pb2.Conversation | None,
) -> PersonaChoice:
    """Return the persona of this turn: the request's, else the conversation's."""
    if turn.persona_id:
        persona = await get_persona(tx, turn.persona_id)
        if persona is None or persona.account_id != account_id:
            raise not_found(
                "PERSONA_NOT_FOUND",
                f"persona_id {turn.persona_id} is not a persona of the caller's account.",
            )
        version = request.persona_version or persona.default_version
        config = await get_persona_version_config(tx, persona.id, version)
        if config is None:
            raise not_found(
                "PERSONA_VERSION_NOT_FOUND",
                f"persona_version {quote_value(version)} is not a published version of"
                f" persona {persona.id}.",
            )
        return PersonaChoice(persona.id, version, config)
    if previous is not None and previous.persona_id:
        config = await get_persona_version_config(
            tx, previous.persona_id, previous.persona_version
        )
        return PersonaChoice(previous.persona_id, previous.persona_version, config)
    if request.HasField("persona_settings"):
        raise invalid_argument(
            "persona_settings",
            "persona_settings applies inside a persona; send persona_id as well.",
            reason="PERSONA_REQUIRED",
        )
    return PersonaChoice("", "", None)


def _updated_overrides(
    previous: types_pb2.Conversation | None, request: TurnRequest
) -> types_pb2.ChannelConfig:
    """Overlay the request's overrides on the ones stored on the conversation."""
    overrides = types_pb2.ChannelConfig()
    if previous is not None:
        overrides.CopyFrom(previous.overrides)
    for name in _PATHWAY_FIELDS:
        if request.HasField(name):
            setattr(overrides, name, getattr(request, name))
    settings = request.persona_settings
    for name in _PATHWAY_FIELDS:
        if settings.HasField(name):
            setattr(overrides, name, getattr(settings, name))
    for timer_name in _TIMER_FIELDS:
        if request.HasField(timer_name):
            setattr(overrides, timer_name, getattr(request, timer_name))
    for list_name in _LIST_FIELDS:
        if request.HasField(list_name):
            getattr(overrides, list_name).CopyFrom(getattr(request, list_name))
    return overrides
