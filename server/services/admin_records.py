"""Reads for AdminService: rows of the admin tables as `admin_pb2` messages.

Every function takes a `Database` (committed data) or an open `Transaction`
(to read what the same transaction wrote), and scopes the query to one
account where the entity belongs to one.
"""

from __future__ import annotations

from parley.v1 import admin_pb2, types_pb2

from server.db import Row, Transaction
from server.directory import Reader
from server.errors import ParleyError, invalid_argument, not_found
from server.paging import decode_token
from server.timeutil import timestamp_from_ms

_API_KEY_COLUMNS = "id, account_id, prefix, created_at, revoked_at"
_NUMBER_COLUMNS = (
    "number, account_id, sms_config, whatsapp_config, created_at, updated_at"
)


async def account_exists(reader: Reader, account_id: str) -> bool:
    row = await reader.fetchone("SELECT 1 FROM accounts WHERE id = ?", (account_id,))
    return row is not None


async def list_accounts(reader: Reader) -> list[admin_pb2.Account]:
    rows = await reader.fetchall(
        "SELECT id, display_name, created_at FROM accounts ORDER BY id"
    )
    return [
        admin_pb2.Account(
            id=row["id"],
            display_name=row["display_name"],
            created_at=timestamp_from_ms(row["created_at"]),
        )
        for row in rows
    ]


async def get_api_key(
    reader: Reader, account_id: str, key_id: str
) -> admin_pb2.ApiKey | None:
    row = await reader.fetchone(
        f"SELECT {_API_KEY_COLUMNS} FROM api_keys WHERE id = ? AND account_id = ?",
        (key_id, account_id),
    )
    return None if row is None else _api_key_from_row(row)


async def list_api_keys(reader: Reader, account_id: str) -> list[admin_pb2.ApiKey]:
    """Return the account's keys, revoked ones included, oldest first."""
    rows = await reader.fetchall(
        f"SELECT {_API_KEY_COLUMNS} FROM api_keys WHERE account_id = ?"
        " ORDER BY created_at, id",
        (account_id,),
    )
    return [_api_key_from_row(row) for row in rows]


def _api_key_from_row(row: Row) -> admin_pb2.ApiKey:
    key = admin_pb2.ApiKey(
        id=row["id"],
        account_id=row["account_id"],
        prefix=row["prefix"],
        created_at=timestamp_from_ms(row["created_at"]),
    )
    if row["revoked_at"] is not None:
        key.revoked_at.CopyFrom(timestamp_from_ms(row["revoked_at"]))
    return key


def number_not_found(number: str, account_id: str) -> ParleyError:
    return not_found(
        "NUMBER_NOT_FOUND",
        f"Agent number {number} is not a number of account {account_id!r};"
        " ListNumbers shows the account's numbers.",
    )


async def require_number(
    reader: Reader, account_id: str, number: str
) -> admin_pb2.AgentNumber:
    """Return the account's agent number; NOT_FOUND if it is not the account's."""
    row = await reader.fetchone(
        f"SELECT {_NUMBER_COLUMNS} FROM numbers WHERE number = ? AND account_id = ?",
        (number, account_id),
    )
    if row is None:
        raise number_not_found(number, account_id)
    return _number_from_row(row)


async def list_numbers(reader: Reader, account_id: str) -> list[admin_pb2.AgentNumber]:
    rows = await reader.fetchall(
        f"SELECT {_NUMBER_COLUMNS} FROM numbers WHERE account_id = ? ORDER BY number",
        (account_id,),
    )
    return [_number_from_row(row) for row in rows]


def _number_from_row(row: Row) -> admin_pb2.AgentNumber:
    number = admin_pb2.AgentNumber(
        number=row["number"],
        account_id=row["account_id"],
        created_at=timestamp_from_ms(row["created_at"]),
        updated_at=timestamp_from_ms(row["updated_at"]),
    )
    # A NULL column means the channel is not enabled, so the field stays unset.
    if row["sms_config"] is not None:
        number.sms_config.ParseFromString(row["sms_config"])
    if row["whatsapp_config"] is not None:
        number.whatsapp_config.ParseFromString(row["whatsapp_config"])
    return number


async def persona_owner(reader: Reader, persona_id: str) -> str | None:
    """Return the account that owns the persona id, or None if it is free."""
    row = await reader.fetchone(
        "SELECT account_id FROM personas WHERE id = ?", (persona_id,)
    )
    return None if row is None else str(row["account_id"])


async def require_persona(
    reader: Reader, account_id: str, persona_id: str
) -> admin_pb2.Persona:
    """Return the account's persona with its versions in publishing order.

    Raises NOT_FOUND, reason PERSONA_NOT_FOUND, for a persona of another account too.
    """
    personas = await _read_personas(reader, account_id, persona_id)
    if not personas:
        raise not_found(
            "PERSONA_NOT_FOUND",
            f"Persona {persona_id} is not a persona of account {account_id!r};"
            " ListPersonas shows the account's personas.",
        )
    return personas[0]


async def list_personas(reader: Reader, account_id: str) -> list[admin_pb2.Persona]:
    """Return the account's personas, oldest first, each with its versions."""
    return await _read_personas(reader, account_id, None)


async def set_default_version(tx: Transaction, persona_id: str, version: str) -> None:
    await tx.execute(
        "UPDATE personas SET default_version = ? WHERE id = ?", (version, persona_id)
    )


async def _read_personas(
    reader: Reader, account_id: str, persona_id: str | None
) -> list[admin_pb2.Persona]:
    """Read one persona (`persona_id`) or all of the account's, in one query."""
    sql = (
        "SELECT p.id, p.account_id, p.default_version, p.created_at,"
        " v.version, v.config, v.published_at"
        " FROM personas p LEFT JOIN persona_versions v ON v.persona_id = p.id"
        " WHERE p.account_id = ?"
    )
    params: list[str] = [account_id]
    if persona_id is not None:
        sql += " AND p.id = ?"
        params.append(persona_id)
    sql += " ORDER BY p.created_at, p.id, v.published_at, v.rowid"

    personas: dict[str, admin_pb2.Persona] = {}
    for row in await reader.fetchall(sql, params):
        persona = personas.get(row["id"])
        if persona is None:
            persona = admin_pb2.Persona(
                id=row["id"],
                account_id=row["account_id"],
                default_version=row["default_version"],
                created_at=timestamp_from_ms(row["created_at"]),
            )
            personas[row["id"]] = persona
        if row["version"] is not None:
            persona.versions.append(
                admin_pb2.PersonaVersion(
                    version=row["version"],
                    config=types_pb2.ChannelConfig.FromString(row["config"]),
                    published_at=timestamp_from_ms(row["published_at"]),
                )
            )
    return list(personas.values())


async def usage_totals(reader: Reader, account_id: str) -> admin_pb2.GetUsageResponse:
    """Return a response holding the totals over the account's whole ledger.

    Messages and segments count charges only (positive amounts), so a refund
    lowers the amount but not the number of messages sent.
    """
    row = await reader.fetchone(
        "SELECT COALESCE(SUM(amount_micros > 0), 0) AS messages,"
        " COALESCE(SUM(CASE WHEN amount_micros > 0 THEN segments ELSE 0 END), 0)"
        " AS segments,"
        " COALESCE(SUM(amount_micros), 0) AS amount"
        " FROM ledger WHERE account_id = ?",
        (account_id,),
    )
    if row is None:
        return admin_pb2.GetUsageResponse()
    return admin_pb2.GetUsageResponse(
        total_messages=row["messages"],
        total_segments=row["segments"],
        total_amount_micros=row["amount"],
    )


def usage_position(token: str) -> int | None:
    """Return the ledger id that a GetUsage page token continues below.

    None means the first page.
    """
    position = decode_token(token, (int,))
    if position is None:
        return None
    last_id = position[0]
    # SQLite rowids are positive 64-bit integers, and a larger value cannot be bound.
    if type(last_id) is int and 0 < last_id < 2**63:
        return last_id
    raise invalid_argument(
        "page_token",
        "page_token is not a token returned by GetUsage; pass next_page_token"
        " unchanged or leave it empty for the first page.",
        "INVALID_PAGE_TOKEN",
    )


async def ledger_page(
    reader: Reader, account_id: str, before_id: int | None, limit: int
) -> list[admin_pb2.LedgerEntry]:
    """Return up to `limit` entries with an id below `before_id`, newest first."""
    sql = (
        "SELECT id, message_id, conversation_id, segments, encoding, amount_micros,"
        " created_at FROM ledger WHERE account_id = ?"
    )
    params: list[object] = [account_id]
    if before_id is not None:
        sql += " AND id < ?"
        params.append(before_id)
    sql += " ORDER BY id DESC LIMIT ?"
    params.append(limit)
    rows = await reader.fetchall(sql, params)
    return [
        admin_pb2.LedgerEntry(
            id=row["id"],
            message_id=row["message_id"],
            conversation_id=row["conversation_id"],
            # Refund rows store negative segments; the field is unsigned.
            segments=abs(row["segments"]),
            encoding=row["encoding"],
            amount_micros=row["amount_micros"],
            created_at=timestamp_from_ms(row["created_at"]),
        )
        for row in rows
    ]
