"""Storage of pathway versions, citation schemas and outcomes, scoped per account.

Definitions are stored as serialized protos. Citation schemas and outcomes
are stored with `account_id` and `updated_at` cleared, and the read
functions fill both in from the row, as they fill in a pathway version's
`published_at`. The functions take a `Database` (committed data) or an open
`Transaction` (to read what it wrote), like `server.directory`. Callers
validate definitions before writing them.
"""

from __future__ import annotations

from typing import TypeVar

from parley.v1 import definitions_pb2

from server.db import Row, Transaction
from server.directory import Reader
from server.errors import already_exists
from server.timeutil import timestamp_from_ms

# A definition stored in a table keyed by (account_id, id).
_Keyed = TypeVar("_Keyed", definitions_pb2.CitationSchema, definitions_pb2.Outcome)


async def publish_pathway_version(
    tx: Transaction,
    account_id: str,
    pathway_id: str,
    version: str,
    definition: definitions_pb2.PathwayDefinition,
    now_ms: int,
) -> bool:
    """Publish a pathway version; return False if it exists with the same definition.

    Raises ALREADY_EXISTS, reason PATHWAY_VERSION_IMMUTABLE, if the version
    exists with another definition.
    """
    blob = definition.SerializeToString(deterministic=True)
    row = await tx.fetchone(
        "SELECT definition FROM pathway_versions"
        " WHERE account_id = ? AND pathway_id = ? AND version = ?",
        (account_id, pathway_id, version),
    )
    if row is None:
        await tx.execute(
            "INSERT INTO pathway_versions"
            " (account_id, pathway_id, version, definition, published_at)"
            " VALUES (?, ?, ?, ?, ?)",
            (account_id, pathway_id, version, blob, now_ms),
        )
        return True
    stored = definitions_pb2.PathwayDefinition.FromString(row["definition"])
    if stored.SerializeToString(deterministic=True) != blob:
        raise already_exists(
            "PATHWAY_VERSION_IMMUTABLE",
            f"Version {version!r} of pathway {pathway_id!r} is already published"
            " with a different definition; published versions are immutable, so"
            " publish the change under a new version.",
        )
    return False


async def get_pathway_version(
    reader: Reader, account_id: str, pathway_id: str, version: str
) -> tuple[str, definitions_pb2.PathwayDefinition] | None:
    """Return the version and its definition; an empty `version` means the latest.

    The latest version is the one published last. None means the account has
    no such pathway or version.
    """
    sql = (
        "SELECT version, definition FROM pathway_versions"
        " WHERE account_id = ? AND pathway_id = ?"
    )
    params = [account_id, pathway_id]
    if version:
        sql += " AND version = ?"
        params.append(version)
    sql += " ORDER BY seq DESC LIMIT 1"
    row = await reader.fetchone(sql, params)
    if row is None:
        return None
    definition = definitions_pb2.PathwayDefinition.FromString(row["definition"])
    return row["version"], definition


async def get_pathway(
    reader: Reader, account_id: str, pathway_id: str
) -> definitions_pb2.Pathway | None:
    """Return the pathway with its versions in publishing order, or None."""
    pathways = await _read_pathways(reader, account_id, pathway_id)
    return pathways[0] if pathways else None


async def list_pathways(
    reader: Reader, account_id: str
) -> list[definitions_pb2.Pathway]:
    """Return the account's pathways ordered by id, each with all its versions."""
    return await _read_pathways(reader, account_id, None)


async def _read_pathways(
    reader: Reader, account_id: str, pathway_id: str | None
) -> list[definitions_pb2.Pathway]:
    sql = (
        "SELECT pathway_id, version, definition, published_at FROM pathway_versions"
        " WHERE account_id = ?"
    )
    params = [account_id]
    if pathway_id is not None:
        sql += " AND pathway_id = ?"
        params.append(pathway_id)
    sql += " ORDER BY pathway_id, seq"

    pathways: dict[str, definitions_pb2.Pathway] = {}
    for row in await reader.fetchall(sql, params):
        pathway = pathways.get(row["pathway_id"])
        if pathway is None:
            pathway = definitions_pb2.Pathway(
                id=row["pathway_id"], account_id=account_id
            )
            pathways[row["pathway_id"]] = pathway
        pathway.versions.append(
            definitions_pb2.PathwayVersion(
                version=row["version"],
                definition=definitions_pb2.PathwayDefinition.FromString(
                    row["definition"]
                ),
                published_at=timestamp_from_ms(row["published_at"]),
            )
        )
    return list(pathways.values())


async def put_citation_schema(
    tx: Transaction,
    account_id: str,
    schema: definitions_pb2.CitationSchema,
    now_ms: int,
) -> bool:
    """Create or replace the schema `schema.id`; return False if nothing changed."""
    return await _put_keyed(tx, "citation_schemas", account_id, schema, now_ms)


async def get_citation_schema(
    reader: Reader, account_id: str, schema_id: str
) -> definitions_pb2.CitationSchema | None:
    schemas = await _read_keyed(
        reader,
        "citation_schemas",
        definitions_pb2.CitationSchema,
        account_id,
        schema_id,
    )
    return schemas[0] if schemas else None


async def list_citation_schemas(
    reader: Reader, account_id: str
) -> list[definitions_pb2.CitationSchema]:
    """Return the account's citation schemas ordered by id."""
    return await _read_keyed(
        reader, "citation_schemas", definitions_pb2.CitationSchema, account_id, None
    )


async def put_outcome(
    tx: Transaction, account_id: str, outcome: definitions_pb2.Outcome, now_ms: int
) -> bool:
    """Create or replace the outcome `outcome.id`; return False if nothing changed."""
    return await _put_keyed(tx, "outcomes", account_id, outcome, now_ms)


async def get_outcome(
    reader: Reader, account_id: str, outcome_id: str
) -> definitions_pb2.Outcome | None:
    outcomes = await _read_keyed(
        reader, "outcomes", definitions_pb2.Outcome, account_id, outcome_id
    )
    return outcomes[0] if outcomes else None


async def list_outcomes(
    reader: Reader, account_id: str
) -> list[definitions_pb2.Outcome]:
    """Return the account's outcomes ordered by id."""
    return await _read_keyed(
        reader, "outcomes", definitions_pb2.Outcome, account_id, None
    )


async def _put_keyed(
    tx: Transaction, table: str, account_id: str, definition: _Keyed, now_ms: int
) -> bool:
    """Write `definition` to `table` unless the stored copy is equal.

    `table` is formatted into the SQL, so callers pass only the literal
    "citation_schemas" or "outcomes".
    """
    stored_copy = type(definition)()
    stored_copy.CopyFrom(definition)
    stored_copy.ClearField("account_id")
    stored_copy.ClearField("updated_at")
    blob = stored_copy.SerializeToString(deterministic=True)

    row = await tx.fetchone(
        f"SELECT definition FROM {table} WHERE account_id = ? AND id = ?",
        (account_id, definition.id),
    )
    if row is None:
        await tx.execute(
            f"INSERT INTO {table} (account_id, id, definition, updated_at)"
            " VALUES (?, ?, ?, ?)",
            (account_id, definition.id, blob, now_ms),
        )
        return True
    # Re-serializing the stored bytes makes the comparison independent of how
    # an older version of the code wrote them.
    stored = type(definition).FromString(row["definition"])
    if stored.SerializeToString(deterministic=True) == blob:
        return False
    await tx.execute(
        f"UPDATE {table} SET definition = ?, updated_at = ?"
        " WHERE account_id = ? AND id = ?",
        (blob, now_ms, account_id, definition.id),
    )
    return True


async def _read_keyed(
    reader: Reader,
    table: str,
    message_type: type[_Keyed],
    account_id: str,
    definition_id: str | None,
) -> list[_Keyed]:
    sql = f"SELECT id, definition, updated_at FROM {table} WHERE account_id = ?"
    params = [account_id]
    if definition_id is not None:
        sql += " AND id = ?"
        params.append(definition_id)
    sql += " ORDER BY id"
    return [
        _keyed_from_row(message_type, account_id, row)
        for row in await reader.fetchall(sql, params)
    ]


def _keyed_from_row(message_type: type[_Keyed], account_id: str, row: Row) -> _Keyed:
    definition = message_type.FromString(row["definition"])
    definition.id = row["id"]
    definition.account_id = account_id
    definition.updated_at.CopyFrom(timestamp_from_ms(row["updated_at"]))
    return definition
