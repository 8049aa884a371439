"""Per-account charges: one ledger row per sent message, priced per segment."""

from __future__ import annotations

from parley.v1 import types_pb2

from server.db import Transaction
from server.metrics import SEGMENTS_CHARGED


async def charge_message(
    transaction: Transaction,
    account_id: str,
    message: types_pb2.Message,
    price_per_segment_micros: int,
    now_ms: int,
) -> None:
    await transaction.execute(
        "INSERT INTO ledger (account_id, message_id, conversation_id, segments, encoding,"
        " amount_micros, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
        (
            account_id,
            message.id,
            message.conversation_id,
            message.segments,
            message.encoding,
            message.segments * price_per_segment_micros,
            now_ms,
        ),
    )
    transaction.after_commit(lambda: SEGMENTS_CHARGED.inc(message.segments))


async def refund_message(
    transaction: Transaction, message_id: str, now_ms: int
) -> bool:
    """Credit back the charge of a message the carrier failed to send.

    Writes at most one refund per message; returns whether it wrote one.
    """
    rows = await transaction.fetchall(
        "SELECT account_id, conversation_id, segments, encoding, amount_micros FROM ledger"
        " WHERE message_id = ?",
        (message_id,),
    )
    if len(rows) != 1 or rows[0]["amount_micros"] <= 0:
        return False
    charge = rows[0]
    await transaction.execute(
        "INSERT INTO ledger (account_id, message_id, conversation_id, segments, encoding,"
        " amount_micros, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
        (
            charge["account_id"],
            message_id,
            charge["conversation_id"],
            -charge["segments"],
            charge["encoding"],
            -charge["amount_micros"],
            now_ms,
        ),
    )
    return True
