"""Outbound delivery: handing messages to the carrier and applying its reports.

A message is written as QUEUED in the request's transaction and submitted to
the carrier only after the commit. A submission that fails is retried with
backoff. At start-up, messages still QUEUED without a carrier id (the server
stopped before handing them over) are submitted again, and messages that
were SENT are tracked again until their final status.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any

import structlog
from parley.v1 import events_pb2, types_pb2

from server.carrier import Carrier, OutboundMessage, StatusReport
from server.clock import Clock
from server.conversation_store import (
    find_message_by_carrier_id,
    load_conversation,
    load_message,
)
from server.db import Database, Transaction
from server.errors import failed_precondition, invalid_argument, not_found
from server.events import EventRecorder
from server.ledger import refund_message
from server.settings import ServerSettings

log = structlog.get_logger("parley.delivery")

SUBMIT_ATTEMPTS = 5
SUBMIT_BACKOFF_SECONDS = 0.5

# Order of outbound statuses: a report applies only when it moves forward.
_RANK = {
    types_pb2.MESSAGE_STATUS_QUEUED: 1,
    types_pb2.MESSAGE_STATUS_SENT: 2,
    types_pb2.MESSAGE_STATUS_DELIVERED: 3,
    types_pb2.MESSAGE_STATUS_UNDELIVERED: 3,
    types_pb2.MESSAGE_STATUS_FAILED: 3,
}


class Delivery:
    def __init__(
        self,
        database: Database,
        events: EventRecorder,
        carrier: Carrier,
        clock: Clock,
        settings: ServerSettings,
    ) -> None:
        self._database = database
        self._events = events
        self._carrier = carrier
        self._clock = clock
        self._settings = settings
        self._tasks: set[asyncio.Task[None]] = set()

    def submit_after_commit(
        self,
        tx: Transaction,
        message: types_pb2.Message,
        conversation: types_pb2.Conversation,
    ) -> None:
        outbound = _outbound(message, conversation)
        tx.after_commit(lambda: self._spawn(self._submit(outbound)))

    async def resubmit_pending(self) -> None:
        rows = await self._database.fetchall(
            "SELECT m.id, m.text, m.status, m.carrier_message_id, c.account_id,"
            " c.agent_number, c.user_number, c.channel FROM messages m"
            " JOIN conversations c ON c.id = m.conversation_id"
            " WHERE m.status IN (?, ?) AND m.sender = ? AND m.history = 0 ORDER BY m.seq",
            (
                types_pb2.MESSAGE_STATUS_QUEUED,
                types_pb2.MESSAGE_STATUS_SENT,
                types_pb2.SENDER_AGENT,
            ),
        )
        for row in rows:
            outbound = OutboundMessage(
                message_id=row["id"],
                account_id=row["account_id"],
                agent_number=row["agent_number"],
                user_number=row["user_number"],
                channel=row["channel"],
                text=row["text"],
            )
            if row["carrier_message_id"] is None:
                log.info("message_resubmitted", message_id=outbound.message_id)
                self._spawn(self._submit(outbound))
            else:
                sent = row["status"] == types_pb2.MESSAGE_STATUS_SENT
                await self._carrier.track(outbound, sent=sent)

    async def report(self, report: StatusReport) -> None:
        """Apply a report from the in-process carrier (the `StatusSink` role)."""
        await self.apply_report(
            report.message_id, "", report.status, report.error_code, None
        )

    async def apply_report(
        self,
        message_id: str,
        carrier_message_id: str,
        status: types_pb2.MessageStatus.ValueType,
        error_code: str,
        account_id: str | None,
    ) -> tuple[types_pb2.Message, bool]:
        """Move a message to `status` if that is forward; return it and whether it moved.

        `account_id` restricts the lookup to one account; None (operator or the
        in-process carrier) finds any message.
        """
        if status not in _RANK:
            name = (
                types_pb2.MessageStatus.Name(status)
                if status in types_pb2.MessageStatus.values()
                else str(status)
            )
            raise invalid_argument(
                "status",
                f"status {name} cannot be reported; use SENT, DELIVERED, UNDELIVERED or"
                " FAILED.",
            )
        async with self._database.transaction() as tx:
            now = self._clock.now_ms()
            found = await _find_message(tx, message_id, carrier_message_id, account_id)
            if found is None or (account_id is not None and found[1] != account_id):
                raise not_found(
                    "MESSAGE_NOT_FOUND", "No outbound message matches the report."
                )
            message, owner = found
            if message.sender != types_pb2.SENDER_AGENT or message.history:
                raise failed_precondition(
                    "NOT_OUTBOUND",
                    f"message {message.id} was not sent through the carrier.",
                )
            if _RANK[status] <= _RANK.get(message.status, 0):
                return message, False
            previous = message.status
            message.status = status
            message.error_code = error_code if status in _ERROR_STATUSES else ""
            message.updated_at.FromMilliseconds(now)
            await tx.execute(
                "UPDATE messages SET status = ?, error_code = ?, updated_at = ? WHERE id = ?",
                (message.status, message.error_code, now, message.id),
            )
            conversation = await load_conversation(tx, message.conversation_id, owner)
            assert conversation is not None
            await self._events.append(
                tx,
                events_pb2.EVENT_TYPE_MESSAGE_STATUS_CHANGED,
                conversation=conversation,
                message=message,
                now_ms=now,
                previous_status=previous,
            )
            if status == types_pb2.MESSAGE_STATUS_FAILED:
                await refund_message(tx, message.id, now)
        return message, True

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _submit(self, outbound: OutboundMessage) -> None:
        for attempt in range(1, SUBMIT_ATTEMPTS + 1):
            try:
                carrier_id = await self._carrier.submit(outbound)
            except Exception as error:
                log.warning(
                    "carrier_submit_retry",
                    message_id=outbound.message_id,
                    attempt=attempt,
                    error=str(error),
                )
                await asyncio.sleep(SUBMIT_BACKOFF_SECONDS * 2 ** (attempt - 1))
                continue
            await self._record_carrier_id(outbound.message_id, carrier_id)
            return
        log.error("carrier_submit_failed", message_id=outbound.message_id)
        await self.apply_report(
            outbound.message_id,
            "",
            types_pb2.MESSAGE_STATUS_FAILED,
            "SUBMIT_FAILED",
            None,
        )

    async def _record_carrier_id(self, message_id: str, carrier_id: str) -> None:
        await self._database.execute_alone(
            "UPDATE messages SET carrier_message_id = ? WHERE id = ?"
            " AND carrier_message_id IS NULL",
            (carrier_id, message_id),
        )


_ERROR_STATUSES = (
    types_pb2.MESSAGE_STATUS_FAILED,
    types_pb2.MESSAGE_STATUS_UNDELIVERED,
)


async def _find_message(
    tx: Transaction, message_id: str, carrier_message_id: str, account_id: str | None
) -> tuple[types_pb2.Message, str] | None:
    if message_id:
        return await load_message(tx, message_id)
    return await find_message_by_carrier_id(
        tx, carrier_message_id, types_pb2.SENDER_AGENT, account_id
    )


def _outbound(
    message: types_pb2.Message, conversation: types_pb2.Conversation
) -> OutboundMessage:
    return OutboundMessage(
        message_id=message.id,
        account_id=conversation.account_id,
        agent_number=conversation.agent_number,
        user_number=conversation.user_number,
        channel=conversation.channel,
        text=message.text,
    )
