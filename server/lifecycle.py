"""State changes of a conversation outside a send: ending it and inbound texts."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from parley.v1 import carrier_pb2, events_pb2, types_pb2

from server.conversation_store import (
    find_active_conversation,
    find_latest_conversation,
    find_message_by_carrier_id,
    insert_conversation,
    insert_message,
    new_id,
    update_conversation,
)
from server.db import Transaction
from server.directory import get_number, get_persona_version_config
from server.errors import failed_precondition, not_found, permission_denied
from server.resolution import resolve_config
from server.segments import count_segments
from server.timeutil import timestamp_from_ms

if TYPE_CHECKING:
    from server.app import Components


@dataclass(frozen=True)
class InboundText:
    """A validated user text addressed to an agent number."""

    agent_number: str
    user_number: str
    channel: types_pb2.Channel.ValueType
    text: str
    carrier_message_id: str


class Lifecycle:
    def __init__(self, components: Components) -> None:
        self.components = components

    async def end(
        self,
        tx: Transaction,
        conversation: types_pb2.Conversation,
        reason: str,
        now: int,
    ) -> None:
        """Mark the conversation ended and append the ended event."""
        conversation.state = types_pb2.CONVERSATION_STATE_ENDED
        conversation.end_reason = reason
        conversation.ended_at.CopyFrom(timestamp_from_ms(now))
        await update_conversation(tx, conversation, now)
        await self.components.events.append(
            tx,
            events_pb2.EVENT_TYPE_CONVERSATION_ENDED,
            conversation=conversation,
            now_ms=now,
        )

    async def receive(
        self, account_id: str | None, inbound: InboundText
    ) -> carrier_pb2.ReceiveMessageResponse:
        """Store a user's text on the pair's conversation, starting one if needed.

        `account_id` None means an operator key, which may address any number.
        A repeated carrier_message_id returns the stored message as a replay.
        """
        components = self.components
        async with components.database.transaction() as tx:
            now = components.clock.now_ms()
            number = await get_number(tx, inbound.agent_number)
            if number is None:
                raise not_found(
                    "NUMBER_NOT_FOUND",
                    f"agent_number {inbound.agent_number} is not registered.",
                )
            if account_id is not None and number.account_id != account_id:
                raise permission_denied(
                    "AGENT_NUMBER_NOT_OWNED",
                    f"agent_number {inbound.agent_number} does not belong to the caller's"
                    " account.",
                )
            channel_config = number.channel_config(inbound.channel)
            if channel_config is None:
                raise failed_precondition(
                    "CHANNEL_NOT_ENABLED",
                    f"agent_number {inbound.agent_number} is not enabled for"
                    f" {types_pb2.Channel.Name(inbound.channel)}.",
                )
            if inbound.carrier_message_id:
                seen = await find_message_by_carrier_id(
                    tx, inbound.carrier_message_id, types_pb2.SENDER_USER
                )
                if seen is not None and seen[1] == number.account_id:
                    return carrier_pb2.ReceiveMessageResponse(
                        conversation_id=seen[0].conversation_id,
                        message_id=seen[0].id,
                        replay=True,
                    )
            conversation, started = await self._conversation_for_inbound(
                tx, number.account_id, inbound, channel_config, now
            )
            message = await self._store_inbound(tx, conversation, inbound, now)
        return carrier_pb2.ReceiveMessageResponse(
            conversation_id=conversation.id,
            message_id=message.id,
            new_conversation=started,
        )

    async def _conversation_for_inbound(
        self,
        tx: Transaction,
        account_id: str,
        inbound: InboundText,
        channel_config: types_pb2.ChannelConfig,
        now: int,
    ) -> tuple[types_pb2.Conversation, bool]:
        """Return the active conversation, a restarted one, or the ended one."""
        active = await find_active_conversation(
            tx, account_id, inbound.agent_number, inbound.user_number, inbound.channel
        )
        if active is not None:
            return active, False
        latest = await find_latest_conversation(
            tx, account_id, inbound.agent_number, inbound.user_number, inbound.channel
        )
        if latest is not None and not latest.config.restart_after_end:
            # The last conversation ended and must not restart: keep the text
            # on it for the record.
            return latest, False
        conversation = types_pb2.Conversation(
            id=new_id("conv"),
            account_id=account_id,
            agent_number=inbound.agent_number,
            user_number=inbound.user_number,
            channel=inbound.channel,
            state=types_pb2.CONVERSATION_STATE_ACTIVE,
        )
        persona_config = None
        if latest is not None:
            # A restart keeps the persona, overrides, metadata and request data
            # of the conversation it follows, with fresh pathway state.
            conversation.persona_id = latest.persona_id
            conversation.persona_version = latest.persona_version
            conversation.overrides.CopyFrom(latest.overrides)
            conversation.metadata.CopyFrom(latest.metadata)
            conversation.request_data.CopyFrom(latest.request_data)
            if latest.persona_id:
                persona_config = await get_persona_version_config(
                    tx, latest.persona_id, latest.persona_version
                )
        conversation.config.CopyFrom(
            resolve_config(channel_config, persona_config, conversation.overrides)
        )
        await insert_conversation(tx, conversation, now)
        await self.components.events.append(
            tx,
            events_pb2.EVENT_TYPE_CONVERSATION_CREATED,
            conversation=conversation,
            now_ms=now,
        )
        return conversation, True

    async def _store_inbound(
        self,
        tx: Transaction,
        conversation: types_pb2.Conversation,
        inbound: InboundText,
        now: int,
    ) -> types_pb2.Message:
        message = types_pb2.Message(
            id=new_id("msg"),
            conversation_id=conversation.id,
            sender=types_pb2.SENDER_USER,
            text=inbound.text,
            status=types_pb2.MESSAGE_STATUS_RECEIVED,
            encoding=count_segments(inbound.text).encoding,
            carrier_message_id=inbound.carrier_message_id,
        )
        await insert_message(tx, message, conversation.account_id, now)
        await self.components.events.append(
            tx,
            events_pb2.EVENT_TYPE_MESSAGE_CREATED,
            conversation=conversation,
            message=message,
            now_ms=now,
        )
        return message
