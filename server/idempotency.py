"""Idempotency keys: one stored response per account and key.

The lookup and the insert run inside the request's write transaction, and
the writer lock serialises transactions, so concurrent requests with one key
produce exactly one result: the first commits it, the others replay it. A
request that fails validation rolls back and leaves no record.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from typing import TypeVar

from google.protobuf.message import Message as ProtoMessage

from server.db import Database, Transaction
from server.errors import already_exists, invalid_argument
from server.validation import validate_idempotency_key

METADATA_KEY = "idempotency-key"

ResponseT = TypeVar("ResponseT", bound=ProtoMessage)


def resolve_key(field_value: str, metadata: Iterable[tuple[str, str | bytes]]) -> str:
    """Return the request's key from the field or the `idempotency-key` metadata."""
    header_values = [
        value.decode("utf-8", "replace") if isinstance(value, bytes) else value
        for key, value in metadata
        if key == METADATA_KEY
    ]
    header = header_values[0] if header_values else ""
    if field_value and header and field_value != header:
        raise invalid_argument(
            "idempotency_key",
            "idempotency_key and the idempotency-key metadata differ; send the key once,"
            " or the same value in both.",
            reason="IDEMPOTENCY_KEY_CONFLICT",
        )
    key = field_value or header
    if key:
        validate_idempotency_key(key, "idempotency_key")
    return key


def request_fingerprint(method: str, request: ProtoMessage) -> str:
    """Hash the request without its key, so field and metadata keys compare equal."""
    copy = type(request)()
    copy.CopyFrom(request)
    if "idempotency_key" in copy.DESCRIPTOR.fields_by_name:
        copy.ClearField("idempotency_key")
    digest = hashlib.sha256(method.encode("utf-8") + b"\0")
    digest.update(copy.SerializeToString(deterministic=True))
    return digest.hexdigest()


async def find_response(
    transaction: Transaction,
    account_id: str,
    key: str,
    fingerprint: str,
    response_type: type[ResponseT],
) -> ResponseT | None:
    """Return the stored response for a repeat, or None for a new key.

    Raises ALREADY_EXISTS with reason IDEMPOTENCY_KEY_REUSED when the key was
    used for a different request.
    """
    row = await transaction.fetchone(
        "SELECT request_hash, response FROM idempotency_keys WHERE account_id = ? AND key = ?",
        (account_id, key),
    )
    if row is None:
        return None
    if row["request_hash"] != fingerprint:
        raise already_exists(
            "IDEMPOTENCY_KEY_REUSED",
            f"idempotency key {key!r} was already used for a different request; use a new"
            " key for a new request, or repeat the original request exactly.",
        )
    return response_type.FromString(row["response"])


async def store_response(
    transaction: Transaction,
    account_id: str,
    key: str,
    fingerprint: str,
    response: ProtoMessage,
    now_ms: int,
) -> None:
    await transaction.execute(
        "INSERT INTO idempotency_keys (account_id, key, request_hash, response, created_at)"
        " VALUES (?, ?, ?, ?, ?)",
        (
            account_id,
            key,
            fingerprint,
            response.SerializeToString(deterministic=True),
            now_ms,
        ),
    )


async def delete_expired_keys(database: Database, older_than_ms: int) -> int:
    async with database.transaction() as transaction:
        return await transaction.execute_rowcount(
            "DELETE FROM idempotency_keys WHERE created_at < ?", (older_than_ms,)
        )
