"""Sending one agent message: store, emit, charge, queue for the carrier."""

from __future__ import annotations

from typing import TYPE_CHECKING

from parley.v1 import events_pb2, types_pb2

from server.conversation_store import insert_message, new_id
from server.db import Transaction
from server.ledger import charge_message
from server.segments import count_segments

if TYPE_CHECKING:
    from server.app import Components


async def send_agent_text(
    components: Components,
    tx: Transaction,
    conversation: types_pb2.Conversation,
    text: str,
    now: int,
    *,
    author: str = "",
) -> types_pb2.Message:
    """Store, charge and queue one outbound agent message in `tx`.

    The carrier receives the message only after `tx` commits.
    """
    count = count_segments(text)
    message = types_pb2.Message(
        id=new_id("msg"),
        conversation_id=conversation.id,
        sender=types_pb2.SENDER_AGENT,
        text=text,
        status=types_pb2.MESSAGE_STATUS_QUEUED,
        segments=count.segments,
        encoding=count.encoding,
        author=author,
    )
    await insert_message(tx, message, conversation.account_id, now)
    for event_type in (
        events_pb2.EVENT_TYPE_MESSAGE_CREATED,
        events_pb2.EVENT_TYPE_MESSAGE_STATUS_CHANGED,
    ):
        await components.events.append(
            tx, event_type, conversation=conversation, message=message, now_ms=now
        )
    await charge_message(
        tx,
        conversation.account_id,
        message,
        components.settings.price_per_segment_micros,
        now,
    )
    components.delivery.submit_after_commit(tx, message, conversation)
    return message
