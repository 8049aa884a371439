"""Durable event log and in-process live fan-out.

`append_event` writes the event row inside the caller's transaction, so an
event exists exactly when the change it describes was committed. After the
commit the `EventBroker` hands the event to every live subscription of the
account. Publishing happens while the database write lock is held, so live
events reach subscriptions in sequence order.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Iterable

from google.protobuf import struct_pb2
from parley.v1 import events_pb2, types_pb2

from server.db import Row, Transaction
from server.timeutil import timestamp_from_ms

# Live events a subscription may buffer before it is marked as overflowed and
# falls back to reading the log.
DEFAULT_SUBSCRIPTION_BUFFER = 1024


class Subscription:
    """Live events of one account for one stream, with a bounded buffer.

    When the buffer is full the subscription drops its contents and sets
    `overflowed`; the stream then catches up from the log, so a slow reader
    costs the publisher nothing and loses nothing.
    """

    def __init__(self, account_id: str, capacity: int) -> None:
        self.account_id = account_id
        self.capacity = capacity
        self.overflowed = False
        self.closed = False
        self._events: deque[events_pb2.Event] = deque()
        self._wakeup = asyncio.Event()

    def offer(self, event: events_pb2.Event) -> None:
        if self.overflowed or self.closed:
            return
        if len(self._events) >= self.capacity:
            self._events.clear()
            self.overflowed = True
        else:
            self._events.append(event)
        self._wakeup.set()

    def reset(self) -> None:
        """Start buffering live events again after a catch-up from the log."""
        self._events.clear()
        self.overflowed = False

    def close(self) -> None:
        self.closed = True
        self._wakeup.set()

    def pop_all(self) -> list[events_pb2.Event]:
        items = list(self._events)
        self._events.clear()
        return items

    async def wait(self, seconds: float) -> bool:
        """Wait until an event, an overflow or a close; return False on timeout."""
        if self._events or self.overflowed or self.closed:
            return True
        self._wakeup.clear()
        try:
            await asyncio.wait_for(self._wakeup.wait(), seconds)
        except TimeoutError:
            return False
        return True


class EventBroker:
    """Routes committed events to the live subscriptions of their account."""

    def __init__(self, buffer_size: int | None = None) -> None:
        # The module default is read here, not bound at definition, so tests
        # can lower it before the server builds its broker.
        self._buffer_size = (
            DEFAULT_SUBSCRIPTION_BUFFER if buffer_size is None else buffer_size
        )
        self._subscriptions: dict[str, set[Subscription]] = {}
        self.latest_sequence = 0
        self.closed = False

    def subscribe(self, account_id: str) -> Subscription:
        subscription = Subscription(account_id, self._buffer_size)
        if self.closed:
            subscription.close()
        self._subscriptions.setdefault(account_id, set()).add(subscription)
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        subscriptions = self._subscriptions.get(subscription.account_id)
        if subscriptions is not None:
            subscriptions.discard(subscription)
            if not subscriptions:
                del self._subscriptions[subscription.account_id]

    def publish(self, events: Iterable[events_pb2.Event]) -> None:
        for event in events:
            self.latest_sequence = max(self.latest_sequence, event.sequence)
            for subscription in self._subscriptions.get(event.account_id, ()):
                subscription.offer(event)

    def close(self) -> None:
        """End every subscription, for a graceful shutdown."""
        self.closed = True
        for subscriptions in self._subscriptions.values():
            for subscription in subscriptions:
                subscription.close()

    def subscription_count(self) -> int:
        return sum(len(s) for s in self._subscriptions.values())


class EventRecorder:
    """Appends events within a transaction and publishes them after commit."""

    def __init__(self, broker: EventBroker) -> None:
        self._broker = broker

    async def append(
        self,
        transaction: Transaction,
        event_type: events_pb2.EventType.ValueType,
        *,
        conversation: types_pb2.Conversation,
        now_ms: int,
        message: types_pb2.Message | None = None,
        previous_status: types_pb2.MessageStatus.ValueType = types_pb2.MESSAGE_STATUS_UNSPECIFIED,
    ) -> events_pb2.Event:
        """Write one event of `conversation` and schedule its live delivery."""
        event = events_pb2.Event(
            type=event_type,
            time=timestamp_from_ms(now_ms),
            conversation_id=conversation.id,
            account_id=conversation.account_id,
            agent_number=conversation.agent_number,
            user_number=conversation.user_number,
            channel=conversation.channel,
            metadata=_copy_struct(conversation.metadata),
            previous_status=previous_status,
        )
        if message is not None:
            event.message.CopyFrom(message)
        else:
            event.conversation.CopyFrom(conversation)
        sequence = await transaction.execute(
            "INSERT INTO events (account_id, conversation_id, agent_number, type,"
            " created_at, data) VALUES (?, ?, ?, ?, ?, ?)",
            (
                conversation.account_id,
                conversation.id,
                conversation.agent_number,
                int(event_type),
                now_ms,
                event.SerializeToString(deterministic=True),
            ),
        )
        event.sequence = sequence
        transaction.after_commit(lambda: self._broker.publish([event]))
        return event


def event_from_row(row: Row) -> events_pb2.Event:
    """Decode an `events` row; the sequence lives only in the row."""
    event = events_pb2.Event.FromString(row["data"])
    event.sequence = row["seq"]
    return event


def _copy_struct(value: struct_pb2.Struct) -> struct_pb2.Struct:
    copy = struct_pb2.Struct()
    copy.CopyFrom(value)
    return copy
