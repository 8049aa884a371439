"""Writing a `ConfigDocument` into the database, and the writes AdminService shares.

Applying is idempotent and additive: entries are created or updated by id,
nothing absent from the document is deleted, and applying the same document
again writes nothing. Conflicts with what another account owns raise
ALREADY_EXISTS, and because the whole document is applied in one
transaction, an error leaves the database as it was.
"""

from __future__ import annotations

import dataclasses
import secrets
from dataclasses import dataclass

from server.auth import KEY_PREFIX_LENGTH, hash_key
from server.config_model import (
    AccountEntry,
    ChannelConfig,
    ConfigDocument,
    NumberEntry,
    PersonaEntry,
)
from server.db import Database, Transaction
from server.definitions import (
    publish_pathway_version,
    put_citation_schema,
    put_outcome,
)
from server.errors import ParleyError, already_exists


@dataclass
class ApplySummary:
    """Counts of entries created or updated, as in `ApplyConfigResponse`."""

    accounts: int = 0
    api_keys: int = 0
    numbers: int = 0
    personas: int = 0
    persona_versions: int = 0
    pathway_versions: int = 0
    citation_schemas: int = 0
    outcomes: int = 0


async def apply_config(
    database: Database, document: ConfigDocument, now_ms: int
) -> ApplySummary:
    """Apply `document` in one transaction; callers then invalidate cached keys."""
    summary = ApplySummary()
    async with database.transaction() as tx:
        for index, key in enumerate(document.operator_keys):
            await _apply_operator_key(tx, key, f"operator_keys[{index}]", now_ms)
        for index, account in enumerate(document.accounts):
            await _apply_account(tx, account, f"accounts[{index}]", now_ms, summary)
    return summary


def serialize_config(config: ChannelConfig | None) -> bytes | None:
    """Serialize for storage; deterministic, so equal configs give equal bytes."""
    return None if config is None else config.SerializeToString(deterministic=True)


def key_prefix(api_key: str) -> str:
    """Return the first characters of a key that `ListApiKeys` shows.

    The prefix is at most a third of the key, so a short hand-written key keeps
    most of its characters secret. Generated keys show their first 8.
    """
    return api_key[: min(KEY_PREFIX_LENGTH, len(api_key) // 3)]


async def store_api_key(
    tx: Transaction, account_id: str, api_key: str, now_ms: int
) -> str:
    """Insert the hash of a new API key and return the key's id."""
    key_id = "key_" + secrets.token_hex(8)
    await tx.execute(
        "INSERT INTO api_keys (id, account_id, key_hash, prefix, created_at)"
        " VALUES (?, ?, ?, ?, ?)",
        (key_id, account_id, hash_key(api_key), key_prefix(api_key), now_ms),
    )
    return key_id


async def put_number(
    tx: Transaction, account_id: str, entry: NumberEntry, now_ms: int
) -> bool:
    """Create the number or replace its configs; return whether anything changed.

    Raises ALREADY_EXISTS, reason NUMBER_OWNED_ELSEWHERE, if another account owns it.
    """
    sms_config = serialize_config(entry.sms_config)
    whatsapp_config = serialize_config(entry.whatsapp_config)
    row = await tx.fetchone(
        "SELECT account_id, sms_config, whatsapp_config FROM numbers WHERE number = ?",
        (entry.number,),
    )
    if row is None:
        await tx.execute(
            "INSERT INTO numbers (number, account_id, sms_config, whatsapp_config,"
            " created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?)",
            (entry.number, account_id, sms_config, whatsapp_config, now_ms, now_ms),
        )
        return True
    if row["account_id"] != account_id:
        raise already_exists(
            "NUMBER_OWNED_ELSEWHERE",
            f"Agent number {entry.number} belongs to another account; "
            "an agent number can belong to one account only.",
        )
    stored = (
        _normalize_blob(row["sms_config"]),
        _normalize_blob(row["whatsapp_config"]),
    )
    if stored == (sms_config, whatsapp_config):
        return False
    await tx.execute(
        "UPDATE numbers SET sms_config = ?, whatsapp_config = ?, updated_at = ?"
        " WHERE number = ?",
        (sms_config, whatsapp_config, now_ms, entry.number),
    )
    return True


async def put_persona_version(
    tx: Transaction, persona_id: str, version: str, config: ChannelConfig, now_ms: int
) -> bool:
    """Publish a version; return False if it exists with the same config.

    Raises ALREADY_EXISTS, reason PERSONA_VERSION_IMMUTABLE, if it exists with
    another config.
    """
    blob = serialize_config(config)
    row = await tx.fetchone(
        "SELECT config FROM persona_versions WHERE persona_id = ? AND version = ?",
        (persona_id, version),
    )
    if row is None:
        await tx.execute(
            "INSERT INTO persona_versions (persona_id, version, config, published_at)"
            " VALUES (?, ?, ?, ?)",
            (persona_id, version, blob, now_ms),
        )
        return True
    if _normalize_blob(row["config"]) != blob:
        raise already_exists(
            "PERSONA_VERSION_IMMUTABLE",
            f"Version {version!r} of persona {persona_id} is already published with a"
            " different config; published versions are immutable, so publish the"
            " change under a new version.",
        )
    return False


def _normalize_blob(blob: bytes | None) -> bytes | None:
    """Re-serialize a stored config so the comparison ignores how it was written."""
    if blob is None:
        return None
    return serialize_config(ChannelConfig.FromString(blob))


async def _apply_operator_key(
    tx: Transaction, key: str, path: str, now_ms: int
) -> None:
    digest = hash_key(key)
    if await tx.fetchone("SELECT 1 FROM api_keys WHERE key_hash = ?", (digest,)):
        raise already_exists(
            "API_KEY_IN_USE",
            f"{path}: this key is already an account's API key;"
            " choose another operator key.",
        )
    await tx.execute(
        "INSERT OR IGNORE INTO operator_keys (key_hash, created_at) VALUES (?, ?)",
        (digest, now_ms),
    )


async def _apply_account(
    tx: Transaction,
    account: AccountEntry,
    path: str,
    now_ms: int,
    summary: ApplySummary,
) -> None:
    row = await tx.fetchone(
        "SELECT display_name FROM accounts WHERE id = ?", (account.id,)
    )
    if row is None:
        await tx.execute(
            "INSERT INTO accounts (id, display_name, created_at) VALUES (?, ?, ?)",
            (account.id, account.display_name or "", now_ms),
        )
        summary.accounts += 1
    elif (
        account.display_name is not None and account.display_name != row["display_name"]
    ):
        await tx.execute(
            "UPDATE accounts SET display_name = ? WHERE id = ?",
            (account.display_name, account.id),
        )
        summary.accounts += 1

    for index, key in enumerate(account.api_keys):
        if await _apply_api_key(
            tx, account.id, key, f"{path}.api_keys[{index}]", now_ms
        ):
            summary.api_keys += 1
    for index, number in enumerate(account.numbers):
        try:
            if await put_number(tx, account.id, number, now_ms):
                summary.numbers += 1
        except ParleyError as error:
            raise _at_path(error, f"{path}.numbers[{index}]") from None
    for index, persona in enumerate(account.personas):
        persona_path = f"{path}.personas[{index}]"
        await _apply_persona(tx, account.id, persona, persona_path, now_ms, summary)
    await _apply_definitions(tx, account, path, now_ms, summary)


async def _apply_api_key(
    tx: Transaction, account_id: str, key: str, path: str, now_ms: int
) -> bool:
    """Store the key unless the account has it, even revoked; return whether stored."""
    digest = hash_key(key)
    if await tx.fetchone("SELECT 1 FROM operator_keys WHERE key_hash = ?", (digest,)):
        raise already_exists(
            "API_KEY_IN_USE",
            f"{path}: this key is already an operator key; choose another API key.",
        )
    row = await tx.fetchone(
        "SELECT account_id FROM api_keys WHERE key_hash = ?", (digest,)
    )
    if row is None:
        await store_api_key(tx, account_id, key, now_ms)
        return True
    if row["account_id"] != account_id:
        raise already_exists(
            "API_KEY_IN_USE",
            f"{path}: this key is already an API key of another account;"
            " choose another key.",
        )
    return False


async def _apply_persona(
    tx: Transaction,
    account_id: str,
    persona: PersonaEntry,
    path: str,
    now_ms: int,
    summary: ApplySummary,
) -> None:
    row = await tx.fetchone(
        "SELECT account_id, default_version FROM personas WHERE id = ?", (persona.id,)
    )
    if row is not None and row["account_id"] != account_id:
        raise already_exists(
            "PERSONA_OWNED_ELSEWHERE",
            f"{path}: persona {persona.id} belongs to another account; use a new UUID.",
        )
    created = row is None
    current_default = "" if row is None else row["default_version"]
    if created:
        await tx.execute(
            "INSERT INTO personas (id, account_id, default_version, created_at)"
            " VALUES (?, ?, '', ?)",
            (persona.id, account_id, now_ms),
        )
        summary.personas += 1

    for index, entry in enumerate(persona.versions):
        try:
            if await put_persona_version(
                tx, persona.id, entry.version, entry.config, now_ms
            ):
                summary.persona_versions += 1
        except ParleyError as error:
            raise _at_path(error, f"{path}.versions[{index}]") from None

    # Without default_version, a persona that has none takes its first version.
    first_version = persona.versions[0].version if persona.versions else ""
    new_default = persona.default_version or current_default or first_version
    if new_default != current_default:
        await tx.execute(
            "UPDATE personas SET default_version = ? WHERE id = ?",
            (new_default, persona.id),
        )
        if not created:
            summary.personas += 1


async def _apply_definitions(
    tx: Transaction,
    account: AccountEntry,
    path: str,
    now_ms: int,
    summary: ApplySummary,
) -> None:
    """Publish the account's pathway versions and put its schemas and outcomes."""
    for pathway_index, pathway in enumerate(account.pathways):
        for version_index, entry in enumerate(pathway.versions):
            version_path = f"{path}.pathways[{pathway_index}].versions[{version_index}]"
            try:
                if await publish_pathway_version(
                    tx, account.id, pathway.id, entry.version, entry.definition, now_ms
                ):
                    summary.pathway_versions += 1
            except ParleyError as error:
                raise _at_path(error, version_path) from None
    for schema in account.citation_schemas:
        if await put_citation_schema(tx, account.id, schema, now_ms):
            summary.citation_schemas += 1
    for outcome in account.outcomes:
        if await put_outcome(tx, account.id, outcome, now_ms):
            summary.outcomes += 1


def _at_path(error: ParleyError, path: str) -> ParleyError:
    """Return a copy of `error` whose message starts with the entry's path."""
    return dataclasses.replace(error, message=f"{path}: {error.message}")
