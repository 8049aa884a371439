"""A conversation's life after it starts: replies, timers, handoff and end.

Ending has two steps. The transaction that ends a conversation (a timeout,
EndConversation, a pathway end node, or a new conversation replacing it)
marks it ENDED, so nothing replies any more, and schedules a FINALIZE
timer. Finalising runs the citation schemas and outcomes outside the write
lock, because scripts may take up to their time limit, and then stores the
results and appends CONVERSATION_ENDED with them in one transaction.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import structlog
from parley.v1 import carrier_pb2, events_pb2, types_pb2

from server.conversation_store import (
    find_active_conversation,
    find_latest_conversation,
    find_message_by_carrier_id,
    insert_conversation,
    insert_message,
    load_conversation,
    new_id,
    update_conversation,
)
from server.db import Database, Transaction
from server.directory import get_number, get_persona_version_config
from server.end_results import compute_results
from server.errors import (
    failed_precondition,
    invalid_argument,
    not_found,
    permission_denied,
)
from server.inbound import InboundText
from server.outbound import send_agent_text
from server.replies import PathwayReplies, Reply
from server.resolution import resolve_config
from server.segments import count_segments
from server.timers import (
    FINALIZE,
    TIMEOUT,
    WARNING,
    cancel_inactivity,
    schedule_finalize,
    schedule_inactivity,
    take_timer,
)
from server.timeutil import timestamp_from_ms
from server.validation import quote_value

if TYPE_CHECKING:
    from server.app import Components

log = structlog.get_logger("parley.lifecycle")

SYSTEM_ACTOR = "system"
# How long a started finalisation keeps its timer row from firing again. Ten
# minutes is longer than 50 outcomes at their 10-second maximum would take.
FINALIZE_LEASE_MS = 600_000


class Lifecycle:
    def __init__(self, components: Components) -> None:
        self.components = components
        self.replies = PathwayReplies(components)
        # Conversations being finalised now, so their outcomes never run twice.
        self._finalizing: set[str] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    # Agent turns -----------------------------------------------------------

    async def after_agent_message(
        self, tx: Transaction, conversation: types_pb2.Conversation, now: int
    ) -> None:
        """Restart the inactivity clocks after an agent message."""
        await schedule_inactivity(tx, conversation, now, self.components.timer_wake)

    async def send_reply(
        self,
        tx: Transaction,
        conversation: types_pb2.Conversation,
        reply: Reply,
        now: int,
    ) -> types_pb2.Message | None:
        """Send a pathway reply, store the new node, and end at an end node."""
        message = None
        if reply.text:
            message = await send_agent_text(
                self.components, tx, conversation, reply.text, now
            )
        await update_conversation(tx, conversation, now)
        if reply.ends:
            await self.end(tx, conversation, reply.end_reason, now)
        else:
            await self.after_agent_message(tx, conversation, now)
        return message

    # Ending ----------------------------------------------------------------

    async def end(
        self,
        tx: Transaction,
        conversation: types_pb2.Conversation,
        reason: str,
        now: int,
        actor: str = SYSTEM_ACTOR,
    ) -> None:
        """Mark the conversation ended and schedule its finalisation."""
        conversation.state = types_pb2.CONVERSATION_STATE_ENDED
        conversation.handed_off = False
        conversation.handoff_actor = ""
        conversation.end_reason = reason
        conversation.end_actor = actor
        conversation.ended_at.CopyFrom(timestamp_from_ms(now))
        await update_conversation(tx, conversation, now)
        await cancel_inactivity(tx, conversation.id)
        await schedule_finalize(tx, conversation.id, now, self.components.timer_wake)

    async def finalize(self, conversation_id: str) -> types_pb2.Conversation | None:
        """Run the end results of an ended conversation, store them, emit ENDED.

        Returns the finished conversation, or None when another caller already
        finalised it.
        """
        if conversation_id in self._finalizing:
            return None
        self._finalizing.add(conversation_id)
        try:
            return await self._finalize(conversation_id)
        finally:
            self._finalizing.discard(conversation_id)

    async def _finalize(self, conversation_id: str) -> types_pb2.Conversation | None:
        components = self.components
        conversation = await _load_any(components, conversation_id)
        if conversation is None:
            return None
        citations, outcomes = await compute_results(components, conversation)
        async with components.database.transaction() as tx:
            deleted = await tx.execute_rowcount(
                "DELETE FROM timers WHERE conversation_id = ? AND kind = ?",
                (conversation_id, FINALIZE),
            )
            if deleted != 1:
                return None
            now = components.clock.now_ms()
            current = await load_conversation(
                tx, conversation_id, conversation.account_id
            )
            assert current is not None
            current.citations.extend(citations)
            current.outcomes.extend(outcomes)
            await update_conversation(tx, current, now)
            await components.events.append(
                tx,
                events_pb2.EVENT_TYPE_CONVERSATION_ENDED,
                conversation=current,
                now_ms=now,
            )
        log.info(
            "conversation_finalized",
            conversation_id=conversation_id,
            citations=len(citations),
            outcomes=len(outcomes),
        )
        return current

    # Timers ----------------------------------------------------------------

    async def fire_timer(self, conversation_id: str, kind: str, due_at: int) -> None:
        if kind == FINALIZE:
            await self._start_finalize(conversation_id)
        elif kind in (WARNING, TIMEOUT):
            await self._fire_inactivity(conversation_id, kind, due_at)
        else:
            log.warning(
                "timer_kind_unknown", conversation_id=conversation_id, kind=kind
            )
            async with self.components.database.transaction() as tx:
                await take_timer(tx, conversation_id, kind, due_at)

    async def _start_finalize(self, conversation_id: str) -> None:
        """Finalise in the background, so slow outcome scripts hold up no timer.

        The FINALIZE row is leased: its due time moves forward while the work
        runs, and the work deletes it at the end. After a crash the lease
        runs out and the row fires again.
        """
        if conversation_id in self._finalizing:
            return
        async with self.components.database.transaction() as tx:
            await tx.execute(
                "UPDATE timers SET due_at = ? WHERE conversation_id = ? AND kind = ?",
                (
                    self.components.clock.now_ms() + FINALIZE_LEASE_MS,
                    conversation_id,
                    FINALIZE,
                ),
            )
        task = asyncio.create_task(self._finalize_logged(conversation_id))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _finalize_logged(self, conversation_id: str) -> None:
        try:
            await self.finalize(conversation_id)
        except Exception:
            log.exception("finalize_failed", conversation_id=conversation_id)

    async def stop(self) -> None:
        """Cancel background finalisations; their leased rows fire after a restart."""
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _fire_inactivity(
        self, conversation_id: str, kind: str, due_at: int
    ) -> None:
        components = self.components
        async with components.database.transaction() as tx:
            if not await take_timer(tx, conversation_id, kind, due_at):
                return
            conversation = await _load_any(components, conversation_id, tx)
            active = conversation is not None and (
                conversation.state == types_pb2.CONVERSATION_STATE_ACTIVE
                and not conversation.handed_off
            )
            if conversation is None or not active:
                return
            now = components.clock.now_ms()
            config = conversation.config
            text = config.warning_message if kind == WARNING else config.timeout_message
            if text:
                await send_agent_text(components, tx, conversation, text, now)
            event_type = (
                events_pb2.EVENT_TYPE_WARNING_SENT
                if kind == WARNING
                else events_pb2.EVENT_TYPE_TIMED_OUT
            )
            await components.events.append(
                tx, event_type, conversation=conversation, now_ms=now
            )
            if kind == TIMEOUT:
                await self.end(tx, conversation, "TIMEOUT", now)
        log.info("timer_fired", conversation_id=conversation_id, kind=kind)

    # Handoff ---------------------------------------------------------------

    async def set_handoff(
        self, account_id: str, conversation_id: str, handed_off: bool, actor: str
    ) -> types_pb2.Conversation:
        """Hand the conversation to a human, or give it back to the agent."""
        components = self.components
        async with components.database.transaction() as tx:
            now = components.clock.now_ms()
            conversation = await load_active(tx, account_id, conversation_id)
            if conversation.handed_off == handed_off:
                return conversation
            conversation.handed_off = handed_off
            conversation.handoff_actor = actor if handed_off else ""
            await update_conversation(tx, conversation, now)
            if handed_off:
                await cancel_inactivity(tx, conversation.id)
            else:
                await self.after_agent_message(tx, conversation, now)
            await components.events.append(
                tx,
                events_pb2.EVENT_TYPE_CONVERSATION_UPDATED,
                conversation=conversation,
                now_ms=now,
            )
        log.info(
            "handoff_changed",
            conversation_id=conversation_id,
            handed_off=handed_off,
            actor=actor,
        )
        return conversation

    # Inbound ---------------------------------------------------------------

    async def receive(
        self, account_id: str | None, inbound: InboundText
    ) -> carrier_pb2.ReceiveMessageResponse:
        """Store a user's text on the pair's conversation, starting one if needed.

        `account_id` None means an operator key, which may address any number.
        A repeated carrier_message_id returns the stored message as a replay.
        On an active conversation the text restarts the inactivity clocks and,
        unless a human has taken over, the pathway (if any) replies.
        """
        components = self.components
        async with components.database.transaction() as tx:
            now = components.clock.now_ms()
            number = await get_number(tx, inbound.agent_number)
            if number is None and account_id is None:
                raise not_found(
                    "NUMBER_NOT_FOUND",
                    f"agent_number {inbound.agent_number} is not registered.",
                )
            # An account key learns nothing about numbers outside its account.
            if number is None or (
                account_id is not None and number.account_id != account_id
            ):
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
                    tx,
                    inbound.carrier_message_id,
                    types_pb2.SENDER_USER,
                    number.account_id,
                )
                if seen is not None:
                    return carrier_pb2.ReceiveMessageResponse(
                        conversation_id=seen[0].conversation_id,
                        message_id=seen[0].id,
                        replay=True,
                    )
            conversation, started = await self._conversation_for_inbound(
                tx, number.account_id, inbound, channel_config, now
            )
            message = await self._store_inbound(tx, conversation, inbound, now)
            if conversation.state == types_pb2.CONVERSATION_STATE_ACTIVE:
                await self._answer(tx, conversation, inbound.text, now)
        return carrier_pb2.ReceiveMessageResponse(
            conversation_id=conversation.id,
            message_id=message.id,
            new_conversation=started,
        )

    async def _answer(
        self, tx: Transaction, conversation: types_pb2.Conversation, text: str, now: int
    ) -> None:
        """Reset the clocks after a user text and send the pathway's reply."""
        await self.after_agent_message(tx, conversation, now)
        if conversation.handed_off or not conversation.config.pathway_id:
            return
        try:
            reply = await self.replies.next_reply(tx, conversation, text)
        except Exception as error:
            # The user's text is stored either way; a broken pathway must not
            # lose it, so the failure is logged and no reply goes out.
            log.warning(
                "pathway_reply_failed",
                conversation_id=conversation.id,
                error=str(error),
            )
            return
        if reply is not None:
            await self.send_reply(tx, conversation, reply, now)
        else:
            await update_conversation(tx, conversation, now)

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


async def load_owned(
    reader: Database | Transaction, account_id: str, conversation_id: str
) -> types_pb2.Conversation:
    """Return the caller's conversation in any state, or raise NOT_FOUND."""
    if not conversation_id:
        raise invalid_argument(
            "conversation_id", "conversation_id is missing.", reason="MISSING_FIELD"
        )
    conversation = await load_conversation(reader, conversation_id, account_id)
    if conversation is None:
        raise not_found(
            "CONVERSATION_NOT_FOUND",
            f"conversation_id {quote_value(conversation_id)} is not a conversation of"
            " the caller's account.",
        )
    return conversation


async def load_active(
    tx: Transaction, account_id: str, conversation_id: str
) -> types_pb2.Conversation:
    """Return the caller's conversation, raising unless it is active."""
    conversation = await load_owned(tx, account_id, conversation_id)
    if conversation.state != types_pb2.CONVERSATION_STATE_ACTIVE:
        raise failed_precondition(
            "CONVERSATION_ENDED",
            f"conversation {conversation.id} has ended"
            f" ({quote_value(conversation.end_reason)}); start a new one with SendMessage.",
        )
    return conversation


async def _load_any(
    components: Components, conversation_id: str, reader: Transaction | None = None
) -> types_pb2.Conversation | None:
    """Load a conversation of any account, for background work."""
    source = reader if reader is not None else components.database
    row = await source.fetchone(
        "SELECT account_id FROM conversations WHERE id = ?", (conversation_id,)
    )
    if row is None:
        return None
    return await load_conversation(source, conversation_id, row["account_id"])
