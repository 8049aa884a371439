"""Periodic cleanup: expired idempotency keys and events past retention."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import structlog

from server.event_log import prune_events
from server.idempotency import delete_expired_keys

if TYPE_CHECKING:
    from server.app import Components

log = structlog.get_logger("parley.maintenance")

_MS_PER_HOUR = 3_600_000


async def run_cleanup(components: Components) -> tuple[int, int]:
    """Delete what is past retention; return (keys deleted, events deleted)."""
    settings = components.settings
    now = components.clock.now_ms()
    keys = await delete_expired_keys(
        components.database,
        now - int(settings.idempotency_retention_hours * _MS_PER_HOUR),
    )
    events = await prune_events(
        components.database, now - int(settings.event_retention_hours * _MS_PER_HOUR)
    )
    if keys or events:
        log.info("cleanup_done", idempotency_keys=keys, events=events)
    return keys, events


async def run_cleanup_loop(components: Components) -> None:
    while True:
        try:
            await run_cleanup(components)
        except Exception:
            log.exception("cleanup_failed")
        await asyncio.sleep(components.settings.cleanup_interval_seconds)
