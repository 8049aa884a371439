"""Durable timers: inactivity warnings and timeouts, and end finalisation.

Timers are rows in the `timers` table, one per conversation and kind, so
they survive a restart. One scheduler loop reads the due rows in order of
due time; there is no task per conversation. A handler deletes its row in
the transaction that acts on it, so each timer fires exactly once, and one
that came due while the server was down fires at start-up.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING, Protocol

import structlog
from parley.v1 import types_pb2

from server.db import Transaction

if TYPE_CHECKING:
    from server.app import Components

log = structlog.get_logger("parley.timers")

WARNING = "warning"
TIMEOUT = "timeout"
# Runs citation schemas and outcomes of a conversation that has ended.
FINALIZE = "finalize"

# Due timers handled per pass, and the longest sleep between passes. The
# sleep is cut short whenever a transaction schedules an earlier timer.
_BATCH = 100
_MAX_SLEEP_SECONDS = 5.0
_RETRY_DELAY_MS = 5_000


class TimerHandler(Protocol):
    async def fire_timer(self, conversation_id: str, kind: str, due_at: int) -> None:
        """Act on one due timer; delete its row in the same transaction."""
        ...


async def schedule_inactivity(
    tx: Transaction, conversation: types_pb2.Conversation, now: int, wake: TimerWake
) -> None:
    """Restart the warning and timeout clocks of `conversation` from `now`.

    Nothing is scheduled for an ended or handed-off conversation, or for a
    timer whose seconds are 0.
    """
    await cancel_inactivity(tx, conversation.id)
    if (
        conversation.state != types_pb2.CONVERSATION_STATE_ACTIVE
        or conversation.handed_off
    ):
        return
    config = conversation.config
    timeout, warning = config.timeout_seconds, config.warning_seconds
    if warning > 0 and (timeout == 0 or warning < timeout):
        due = now + warning * 1000
        await _insert(tx, conversation.id, WARNING, due)
        tx.after_commit(lambda: wake.wake_for(due))
    if timeout > 0:
        due = now + timeout * 1000
        await _insert(tx, conversation.id, TIMEOUT, due)
        tx.after_commit(lambda: wake.wake_for(due))


async def cancel_inactivity(tx: Transaction, conversation_id: str) -> None:
    await tx.execute(
        "DELETE FROM timers WHERE conversation_id = ? AND kind IN (?, ?)",
        (conversation_id, WARNING, TIMEOUT),
    )


async def schedule_finalize(
    tx: Transaction, conversation_id: str, now: int, wake: TimerWake
) -> None:
    await _insert(tx, conversation_id, FINALIZE, now)
    tx.after_commit(lambda: wake.wake_for(now))


async def take_timer(
    tx: Transaction, conversation_id: str, kind: str, due_at: int
) -> bool:
    """Delete the timer if it is still the one that came due; return whether it was."""
    deleted = await tx.execute_rowcount(
        "DELETE FROM timers WHERE conversation_id = ? AND kind = ? AND due_at = ?",
        (conversation_id, kind, due_at),
    )
    return deleted == 1


async def _insert(
    tx: Transaction, conversation_id: str, kind: str, due_at: int
) -> None:
    await tx.execute(
        "INSERT INTO timers (conversation_id, kind, due_at) VALUES (?, ?, ?)"
        " ON CONFLICT (conversation_id, kind) DO UPDATE SET due_at = excluded.due_at",
        (conversation_id, kind, due_at),
    )


class TimerWake:
    """Wakes the scheduler loop after a commit that added an earlier timer."""

    def __init__(self) -> None:
        self._event = asyncio.Event()
        # Clock time (ms) the loop sleeps until; None while it is working.
        self.sleeping_until: int | None = None

    def wake(self) -> None:
        self._event.set()

    def wake_for(self, due_ms: int) -> None:
        """Wake the loop only if it would otherwise sleep past `due_ms`."""
        if self.sleeping_until is None or due_ms < self.sleeping_until:
            self._event.set()

    async def wait(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._event.wait(), seconds)
        self._event.clear()


class TimerScheduler:
    """The single loop that fires due timers."""

    def __init__(
        self, components: Components, handler: TimerHandler, wake: TimerWake
    ) -> None:
        self._components = components
        self._handler = handler
        self._wake = wake

    async def run_due(self) -> int:
        """Fire every timer due at the clock's current time; return how many."""
        fired = 0
        while True:
            now = self._components.clock.now_ms()
            rows = await self._components.database.fetchall(
                "SELECT conversation_id, kind, due_at FROM timers WHERE due_at <= ?"
                " ORDER BY due_at, rowid LIMIT ?",
                (now, _BATCH),
            )
            for row in rows:
                try:
                    await self._handler.fire_timer(
                        row["conversation_id"], row["kind"], row["due_at"]
                    )
                except Exception:
                    log.exception(
                        "timer_failed",
                        conversation_id=row["conversation_id"],
                        kind=row["kind"],
                    )
                    await self._postpone(
                        row["conversation_id"], row["kind"], row["due_at"]
                    )
                    continue
                fired += 1
            if len(rows) < _BATCH:
                return fired

    async def _postpone(self, conversation_id: str, kind: str, due_at: int) -> None:
        """Retry a failed timer later instead of blocking the ones behind it."""
        async with self._components.database.transaction() as tx:
            await tx.execute(
                "UPDATE timers SET due_at = ? WHERE conversation_id = ? AND kind = ?"
                " AND due_at = ?",
                (due_at + _RETRY_DELAY_MS, conversation_id, kind, due_at),
            )
        log.info("timer_retry_scheduled", conversation_id=conversation_id, kind=kind)

    async def run(self) -> None:
        """Fire due timers until cancelled, sleeping until the next one is due."""
        while True:
            try:
                await self.run_due()
                delay = await self._seconds_until_next()
            except Exception:
                log.exception("timer_pass_failed")
                delay = _MAX_SLEEP_SECONDS
            now = self._components.clock.now_ms()
            self._wake.sleeping_until = now + int(delay * 1000)
            await self._wake.wait(delay)
            self._wake.sleeping_until = None

    async def _seconds_until_next(self) -> float:
        row = await self._components.database.fetchone(
            "SELECT MIN(due_at) AS due FROM timers"
        )
        if row is None or row["due"] is None:
            return _MAX_SLEEP_SECONDS
        due: int = row["due"]
        delay = (due - self._components.clock.now_ms()) / 1000
        return min(max(delay, 0.0), _MAX_SLEEP_SECONDS)
