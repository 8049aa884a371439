"""Reading, checking and pruning the durable event log (the `events` table).

Retention deletes a prefix of the log: every row up to some sequence number.
The highest deleted sequence number is kept in `meta` under
`events_pruned_through`, so a cursor below it is known to have missed events
and is rejected with CURSOR_EXPIRED instead of silently skipping them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import grpc
from google.protobuf import json_format
from parley.v1 import events_pb2

from server.db import Database
from server.errors import ParleyError
from server.events import event_from_row
from server.validation import metadata_matches

PRUNED_THROUGH_KEY = "events_pruned_through"


@dataclass(frozen=True)
class EventFilter:
    """Conditions an event must meet to reach a subscriber.

    Every non-empty condition must match, and the values within one condition
    are alternatives. Agent numbers must already be in E.164 form.
    """

    conversation_ids: frozenset[str] = frozenset()
    agent_numbers: frozenset[str] = frozenset()
    event_types: frozenset[int] = frozenset()
    metadata: Mapping[str, str] = field(default_factory=dict)

    def matches(self, event: events_pb2.Event) -> bool:
        """Apply every condition, for live events that did not pass through SQL."""
        if self.conversation_ids and event.conversation_id not in self.conversation_ids:
            return False
        if self.agent_numbers and event.agent_number not in self.agent_numbers:
            return False
        if self.event_types and event.type not in self.event_types:
            return False
        return self.matches_metadata(event)

    def matches_metadata(self, event: events_pb2.Event) -> bool:
        """Apply the metadata condition, which SQL cannot check on the stored blob."""
        if not self.metadata:
            return True
        metadata = json_format.MessageToDict(event.metadata)
        return metadata_matches(metadata, self.metadata)

    def sql_conditions(self) -> tuple[list[str], list[Any]]:
        """Return WHERE clauses and their parameters for the column conditions."""
        clauses: list[str] = []
        params: list[Any] = []
        columns: list[tuple[str, frozenset[Any]]] = [
            ("conversation_id", self.conversation_ids),
            ("agent_number", self.agent_numbers),
            ("type", self.event_types),
        ]
        for column, values in columns:
            if values:
                placeholders = ", ".join("?" * len(values))
                clauses.append(f"{column} IN ({placeholders})")
                params.extend(sorted(values))
        return clauses, params


class LogPage(NamedTuple):
    """One page of `read_after`.

    `last_scanned_sequence` is the position the read covered: every event of
    the account up to it is in `events` or did not match. `complete` is true
    when the page reached the end of the log as it was when read.
    """

    events: list[events_pb2.Event]
    last_scanned_sequence: int
    complete: bool


@dataclass(frozen=True)
class LogBounds:
    """Sequence numbers that limit valid cursors."""

    # Highest sequence deleted by retention; 0 when nothing was deleted.
    pruned_through: int
    # Highest sequence ever written, even when retention has deleted it.
    newest_sequence: int


async def read_after(
    database: Database,
    account_id: str,
    after_sequence: int,
    limit: int,
    filters: EventFilter | None = None,
    *,
    skip_pruned: bool = False,
) -> LogPage:
    """Read up to `limit` stored events of `account_id` after `after_sequence`.

    Column conditions of `filters` run in SQL and the metadata condition runs
    here after decoding, so a page can hold fewer than `limit` events even
    when the log has more. Raises OUT_OF_RANGE with reason CURSOR_EXPIRED when
    retention has deleted events after `after_sequence`, unless `skip_pruned`
    is set, which moves the start to the oldest retained event instead.
    """
    filters = filters or EventFilter()
    clauses, filter_params = filters.sql_conditions()
    where = " AND ".join(["account_id = ?", "seq > ?", *clauses])
    # One statement reads the page together with the log bounds, so the
    # bounds belong to the same snapshot. The bounds row sorts first because
    # its seq is NULL.
    rows = await database.fetchall(
        "WITH page AS ("
        f" SELECT seq, data FROM events WHERE {where} ORDER BY seq LIMIT ?)"
        " SELECT NULL AS seq, NULL AS data,"
        "  COALESCE((SELECT value FROM meta WHERE key = ?), 0) AS pruned_through,"
        "  COALESCE((SELECT MAX(seq) FROM events), 0) AS newest_sequence"
        " UNION ALL SELECT seq, data, NULL, NULL FROM page"
        " ORDER BY seq",
        [account_id, after_sequence, *filter_params, limit, PRUNED_THROUGH_KEY],
    )
    bounds, page_rows = rows[0], rows[1:]
    pruned_through = int(bounds["pruned_through"])
    if pruned_through > after_sequence and not skip_pruned:
        raise cursor_expired(after_sequence, pruned_through)
    complete = len(page_rows) < limit
    if complete:
        newest = max(int(bounds["newest_sequence"]), pruned_through)
        last_scanned = max(after_sequence, newest)
    else:
        last_scanned = int(page_rows[-1]["seq"])
    decoded = [event_from_row(row) for row in page_rows]
    events = [event for event in decoded if filters.matches_metadata(event)]
    return LogPage(events, last_scanned, complete)


async def read_log_bounds(database: Database) -> LogBounds:
    row = await database.fetchone(
        "SELECT COALESCE((SELECT value FROM meta WHERE key = ?), 0) AS pruned_through,"
        " COALESCE((SELECT MAX(seq) FROM events), 0) AS newest_sequence",
        (PRUNED_THROUGH_KEY,),
    )
    assert row is not None  # a SELECT without FROM always returns one row
    pruned_through = int(row["pruned_through"])
    newest = max(int(row["newest_sequence"]), pruned_through)
    return LogBounds(pruned_through=pruned_through, newest_sequence=newest)


async def check_cursor(database: Database, after_sequence: int | None) -> int:
    """Return the position a subscription starts after.

    None starts at the newest event, so only later events are delivered.
    0 starts before the oldest retained event. Any other cursor must lie
    within the log: below the pruned prefix it raises CURSOR_EXPIRED, and
    beyond the newest sequence (a cursor from another database) it raises
    CURSOR_AHEAD, both with OUT_OF_RANGE.
    """
    bounds = await read_log_bounds(database)
    if after_sequence is None:
        return bounds.newest_sequence
    if after_sequence == 0:
        return 0
    if after_sequence < bounds.pruned_through:
        raise cursor_expired(after_sequence, bounds.pruned_through)
    if after_sequence > bounds.newest_sequence:
        raise _cursor_ahead(after_sequence, bounds.newest_sequence)
    return after_sequence


async def prune_events(database: Database, older_than_ms: int) -> int:
    """Delete events created before `older_than_ms` and return how many were deleted.

    The cut is a sequence number: the newest event older than the limit and
    every event before it go, even one whose `created_at` is later because
    the clock moved back. The log therefore always stays a suffix, which the
    cursor checks rely on.
    """
    async with database.transaction() as transaction:
        row = await transaction.fetchone(
            "SELECT MAX(seq) AS seq FROM events WHERE created_at < ?", (older_than_ms,)
        )
        if row is None or row["seq"] is None:
            return 0
        cut = int(row["seq"])
        deleted = await transaction.execute_rowcount(
            "DELETE FROM events WHERE seq <= ?", (cut,)
        )
        await transaction.execute(
            "INSERT INTO meta (key, value) VALUES (?, ?)"
            " ON CONFLICT (key) DO UPDATE SET value = MAX(value, excluded.value)",
            (PRUNED_THROUGH_KEY, cut),
        )
    return deleted


def cursor_expired(position: int, pruned_through: int) -> ParleyError:
    """Build the error for a position whose following events retention deleted."""
    message = (
        f"after_sequence {position} is older than the retained event log, which now"
        f" starts after sequence {pruned_through}: events up to {pruned_through} were"
        " deleted after the retention period. Resubscribe with after_sequence"
        f" {pruned_through} or higher (0 replays every retained event), or without"
        " after_sequence to receive only new events."
    )
    return ParleyError(
        grpc.StatusCode.OUT_OF_RANGE,
        "CURSOR_EXPIRED",
        message,
        details={
            "after_sequence": str(position),
            "pruned_through_sequence": str(pruned_through),
        },
    )


def _cursor_ahead(position: int, newest_sequence: int) -> ParleyError:
    message = (
        f"after_sequence {position} is beyond the newest event in the log (sequence"
        f" {newest_sequence}), so it probably comes from another Parley database."
        " Resubscribe without after_sequence to receive new events, or with"
        " after_sequence 0 to replay every retained event."
    )
    return ParleyError(
        grpc.StatusCode.OUT_OF_RANGE,
        "CURSOR_AHEAD",
        message,
        details={
            "after_sequence": str(position),
            "newest_sequence": str(newest_sequence),
        },
    )
