"""The carrier seam and the loopback carrier simulator.

A carrier accepts outbound messages and later reports their statuses to a
`StatusSink`. The simulator replaces a real carrier on one machine:
each message becomes SENT after `sent_after_ms` and DELIVERED after
`delivered_after_ms`, unless a user-number prefix rule makes it FAILED or
UNDELIVERED with a carrier error code.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any, Protocol

import structlog
from parley.v1 import types_pb2

from server.settings import CarrierSettings

log = structlog.get_logger("parley.carrier")


@dataclass(frozen=True)
class OutboundMessage:
    message_id: str
    account_id: str
    agent_number: str
    user_number: str
    channel: types_pb2.Channel.ValueType
    text: str


@dataclass(frozen=True)
class StatusReport:
    message_id: str
    status: types_pb2.MessageStatus.ValueType
    error_code: str = ""


class StatusSink(Protocol):
    async def report(self, report: StatusReport) -> None:
        """Apply a delivery report from the carrier."""
        ...


class Carrier(Protocol):
    async def start(self, sink: StatusSink) -> None: ...

    async def submit(self, outbound: OutboundMessage) -> str:
        """Hand a message to the carrier and return the carrier's message id."""
        ...

    async def track(self, outbound: OutboundMessage, sent: bool) -> None:
        """Follow a message submitted before a restart until its final status.

        `sent` is true when the SENT report was already applied.
        """
        ...

    async def stop(self) -> None: ...


class CarrierSimulator:
    """Moves messages through statuses on timers, in this process."""

    def __init__(self, settings: CarrierSettings) -> None:
        self._settings = settings
        self._sink: StatusSink | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self, sink: StatusSink) -> None:
        self._sink = sink

    async def submit(self, outbound: OutboundMessage) -> str:
        self._spawn(self._run(outbound, include_sent=True))
        return "sim_" + uuid.uuid4().hex

    async def track(self, outbound: OutboundMessage, sent: bool) -> None:
        self._spawn(self._run(outbound, include_sent=not sent))

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run(self, outbound: OutboundMessage, include_sent: bool) -> None:
        settings = self._settings
        fail_code = _match_prefix(settings.fail_prefixes, outbound.user_number)
        undelivered_code = _match_prefix(
            settings.undelivered_prefixes, outbound.user_number
        )
        await asyncio.sleep(settings.sent_after_ms / 1000)
        if fail_code is not None:
            await self._report(outbound, types_pb2.MESSAGE_STATUS_FAILED, fail_code)
            return
        if include_sent:
            await self._report(outbound, types_pb2.MESSAGE_STATUS_SENT)
        remaining_ms = max(0, settings.delivered_after_ms - settings.sent_after_ms)
        await asyncio.sleep(remaining_ms / 1000)
        if undelivered_code is not None:
            await self._report(
                outbound, types_pb2.MESSAGE_STATUS_UNDELIVERED, undelivered_code
            )
        else:
            await self._report(outbound, types_pb2.MESSAGE_STATUS_DELIVERED)

    async def _report(
        self,
        outbound: OutboundMessage,
        status: types_pb2.MessageStatus.ValueType,
        code: str = "",
    ) -> None:
        assert self._sink is not None, "start() must run before messages are submitted"
        try:
            await self._sink.report(StatusReport(outbound.message_id, status, code))
        except Exception:
            log.exception("simulated_report_failed", message_id=outbound.message_id)


def _match_prefix(rules: dict[str, str], number: str) -> str | None:
    """Return the error code of the longest prefix rule matching `number`."""
    matches = [prefix for prefix in rules if number.startswith(prefix)]
    if not matches:
        return None
    return rules[max(matches, key=len)]


def build_carrier(settings: CarrierSettings) -> Carrier:
    if settings.kind != "simulator":
        raise ValueError(
            f"unknown carrier kind {settings.kind!r}; the only kind is 'simulator'"
        )
    return CarrierSimulator(settings)
