"""Schema migrations, applied in order at start-up inside one transaction each.

Append new migrations to `MIGRATIONS`; never edit one that has shipped.
Times are integer milliseconds since the Unix epoch. Protobuf columns hold
serialized messages so that field presence survives a round trip.
"""

from __future__ import annotations

MIGRATIONS: list[str] = [
    # 1: accounts, keys, numbers, personas, conversations, messages, ledger,
    # idempotency keys and the event log.
    """
    CREATE TABLE accounts (
        id TEXT PRIMARY KEY,
        display_name TEXT NOT NULL DEFAULT '',
        created_at INTEGER NOT NULL
    );
    CREATE TABLE api_keys (
        id TEXT PRIMARY KEY,
        account_id TEXT NOT NULL REFERENCES accounts(id),
        key_hash TEXT NOT NULL UNIQUE,
        prefix TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        revoked_at INTEGER
    );
    CREATE TABLE operator_keys (
        key_hash TEXT PRIMARY KEY,
        created_at INTEGER NOT NULL
    );
    CREATE TABLE numbers (
        number TEXT PRIMARY KEY,
        account_id TEXT NOT NULL REFERENCES accounts(id),
        sms_config BLOB,
        whatsapp_config BLOB,
        created_at INTEGER NOT NULL,
        updated_at INTEGER NOT NULL
    );
    CREATE INDEX numbers_by_account ON numbers(account_id, number);
    CREATE TABLE personas (
        id TEXT PRIMARY KEY,
        account_id TEXT NOT NULL REFERENCES accounts(id),
        default_version TEXT NOT NULL DEFAULT '',
        created_at INTEGER NOT NULL
    );
    CREATE INDEX personas_by_account ON personas(account_id, id);
    CREATE TABLE persona_versions (
        persona_id TEXT NOT NULL REFERENCES personas(id),
        version TEXT NOT NULL,
        config BLOB NOT NULL,
        published_at INTEGER NOT NULL,
        PRIMARY KEY (persona_id, version)
    );
    CREATE TABLE conversations (
        id TEXT PRIMARY KEY,
        account_id TEXT NOT NULL,
        agent_number TEXT NOT NULL,
        user_number TEXT NOT NULL,
        channel INTEGER NOT NULL,
        state INTEGER NOT NULL,
        end_reason TEXT NOT NULL DEFAULT '',
        persona_id TEXT NOT NULL DEFAULT '',
        persona_version TEXT NOT NULL DEFAULT '',
        config BLOB NOT NULL,
        overrides BLOB NOT NULL,
        metadata TEXT NOT NULL DEFAULT '{}',
        request_data TEXT NOT NULL DEFAULT '{}',
        current_node_id TEXT NOT NULL DEFAULT '',
        created_at INTEGER NOT NULL,
        updated_at INTEGER NOT NULL,
        ended_at INTEGER
    );
    -- At most one active conversation per pair and channel (state 1 = ACTIVE).
    CREATE UNIQUE INDEX conversations_one_active
        ON conversations(account_id, agent_number, user_number, channel)
        WHERE state = 1;
    CREATE INDEX conversations_by_account
        ON conversations(account_id, created_at DESC, id DESC);
    CREATE TABLE messages (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        id TEXT NOT NULL UNIQUE,
        conversation_id TEXT NOT NULL REFERENCES conversations(id),
        account_id TEXT NOT NULL,
        sender INTEGER NOT NULL,
        text TEXT NOT NULL,
        status INTEGER NOT NULL,
        error_code TEXT NOT NULL DEFAULT '',
        segments INTEGER NOT NULL DEFAULT 0,
        encoding INTEGER NOT NULL DEFAULT 0,
        carrier_message_id TEXT,
        history INTEGER NOT NULL DEFAULT 0,
        created_at INTEGER NOT NULL,
        updated_at INTEGER NOT NULL
    );
    CREATE INDEX messages_by_conversation ON messages(conversation_id, seq);
    CREATE UNIQUE INDEX messages_by_carrier_id
        ON messages(sender, carrier_message_id)
        WHERE carrier_message_id IS NOT NULL;
    CREATE INDEX messages_by_status ON messages(status) WHERE status IN (1, 2);
    CREATE TABLE ledger (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        account_id TEXT NOT NULL,
        message_id TEXT NOT NULL,
        conversation_id TEXT NOT NULL,
        segments INTEGER NOT NULL,
        encoding INTEGER NOT NULL,
        amount_micros INTEGER NOT NULL,
        created_at INTEGER NOT NULL
    );
    CREATE INDEX ledger_by_account ON ledger(account_id, id);
    CREATE TABLE idempotency_keys (
        account_id TEXT NOT NULL,
        key TEXT NOT NULL,
        request_hash TEXT NOT NULL,
        response BLOB NOT NULL,
        created_at INTEGER NOT NULL,
        PRIMARY KEY (account_id, key)
    );
    CREATE INDEX idempotency_keys_by_age ON idempotency_keys(created_at);
    CREATE TABLE events (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        account_id TEXT NOT NULL,
        conversation_id TEXT NOT NULL,
        agent_number TEXT NOT NULL,
        type INTEGER NOT NULL,
        created_at INTEGER NOT NULL,
        data BLOB NOT NULL
    );
    CREATE INDEX events_by_account ON events(account_id, seq);
    CREATE INDEX events_by_age ON events(created_at);
    -- Single values such as the highest pruned event sequence.
    CREATE TABLE meta (
        key TEXT PRIMARY KEY,
        value INTEGER NOT NULL
    );
    """,
    # 2: pathway state, handoff and end results on conversations; pathway,
    # citation schema and outcome definitions; durable timers.
    """
    ALTER TABLE conversations ADD COLUMN variables TEXT NOT NULL DEFAULT '{}';
    ALTER TABLE conversations ADD COLUMN handed_off INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE conversations ADD COLUMN end_actor TEXT NOT NULL DEFAULT '';
    ALTER TABLE conversations ADD COLUMN resolved_pathway_version TEXT NOT NULL DEFAULT '';
    -- A serialized Conversation holding only `citations` and `outcomes`.
    ALTER TABLE conversations ADD COLUMN results BLOB;
    ALTER TABLE messages ADD COLUMN author TEXT NOT NULL DEFAULT '';
    CREATE TABLE pathway_versions (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        account_id TEXT NOT NULL REFERENCES accounts(id),
        pathway_id TEXT NOT NULL,
        version TEXT NOT NULL,
        definition BLOB NOT NULL,
        published_at INTEGER NOT NULL,
        UNIQUE (account_id, pathway_id, version)
    );
    CREATE TABLE citation_schemas (
        account_id TEXT NOT NULL REFERENCES accounts(id),
        id TEXT NOT NULL,
        definition BLOB NOT NULL,
        updated_at INTEGER NOT NULL,
        PRIMARY KEY (account_id, id)
    );
    CREATE TABLE outcomes (
        account_id TEXT NOT NULL REFERENCES accounts(id),
        id TEXT NOT NULL,
        definition BLOB NOT NULL,
        updated_at INTEGER NOT NULL,
        PRIMARY KEY (account_id, id)
    );
    -- Pending inactivity timers: kind is "warning" or "timeout".
    CREATE TABLE timers (
        conversation_id TEXT NOT NULL REFERENCES conversations(id),
        kind TEXT NOT NULL,
        due_at INTEGER NOT NULL,
        PRIMARY KEY (conversation_id, kind)
    );
    CREATE INDEX timers_by_due ON timers(due_at);
    """,
    # 3: carrier message ids are unique per account, not across accounts.
    """
    DROP INDEX messages_by_carrier_id;
    CREATE UNIQUE INDEX messages_by_carrier_id
        ON messages(account_id, sender, carrier_message_id)
        WHERE carrier_message_id IS NOT NULL;
    """,
    # 4: who took a conversation over.
    """
    ALTER TABLE conversations ADD COLUMN handoff_actor TEXT NOT NULL DEFAULT '';
    """,
]
