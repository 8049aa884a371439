"""AdminService against a real server: scoping, keys, numbers, personas, usage."""

from __future__ import annotations

import base64
import sqlite3
from collections.abc import Awaitable
from typing import Any

import grpc
import pytest
import yaml
from conftest import (
    ACME,
    ACME_KEY,
    ACME_NUMBER,
    GLOBEX,
    GLOBEX_NUMBER,
    GLOBEX_PERSONA_ID,
    OPERATOR,
    PERSONA_ID,
    Stubs,
    auth,
    base_config,
)
from helpers import error_reason, violation_fields
from parley.v1 import admin_pb2, types_pb2

from server.app import Parley

NEW_NUMBER = "+14155550177"
NEW_PERSONA_ID = "3c5e2a8d-1f4b-4c6a-9e7d-5b8a0c2f4e61"
ADMIN_TABLES = (
    "accounts",
    "api_keys",
    "operator_keys",
    "numbers",
    "personas",
    "persona_versions",
)


async def rpc_error(call: Awaitable[Any]) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call
    return caught.value


def admin_counts(server: Parley) -> dict[str, int]:
    """Row counts of the admin tables, read straight from the SQLite file."""
    assert server.components is not None
    with sqlite3.connect(server.components.database.path) as connection:
        return {
            table: connection.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]
            for table in ADMIN_TABLES
        }


def apply_request(document: dict[str, Any]) -> admin_pb2.ApplyConfigRequest:
    return admin_pb2.ApplyConfigRequest(yaml=yaml.safe_dump(document))


def summary_counts(response: admin_pb2.ApplyConfigResponse) -> tuple[int, ...]:
    return (
        response.accounts,
        response.api_keys,
        response.numbers,
        response.personas,
        response.persona_versions,
    )


class TestAuthentication:
    async def test_missing_key_unauthenticated(self, stubs: Stubs) -> None:
        """A call without authorization metadata is rejected."""
        error = await rpc_error(stubs.admin.ListNumbers(admin_pb2.ListNumbersRequest()))
        assert error.code() == grpc.StatusCode.UNAUTHENTICATED

    async def test_unknown_key_unauthenticated(self, stubs: Stubs) -> None:
        """A key that was never issued is rejected."""
        call = stubs.admin.ListNumbers(
            admin_pb2.ListNumbersRequest(), metadata=auth("pk_not-a-real-key")
        )
        error = await rpc_error(call)
        assert error.code() == grpc.StatusCode.UNAUTHENTICATED

    async def test_malformed_authorization_unauthenticated(self, stubs: Stubs) -> None:
        """A value without the Bearer scheme is rejected."""
        call = stubs.admin.ListNumbers(
            admin_pb2.ListNumbersRequest(), metadata=(("authorization", ACME_KEY),)
        )
        error = await rpc_error(call)
        assert error.code() == grpc.StatusCode.UNAUTHENTICATED


class TestScoping:
    async def test_account_key_defaults_to_own_account(self, stubs: Stubs) -> None:
        """An empty account_id means the caller's account."""
        response = await stubs.admin.ListNumbers(
            admin_pb2.ListNumbersRequest(), metadata=ACME
        )
        assert {number.account_id for number in response.numbers} == {"acme"}
        assert ACME_NUMBER in [number.number for number in response.numbers]

    async def test_account_key_cannot_name_other_account(self, stubs: Stubs) -> None:
        """An account key naming another account is denied for reads and writes."""
        calls = [
            stubs.admin.ListNumbers(
                admin_pb2.ListNumbersRequest(account_id="globex"), metadata=ACME
            ),
            stubs.admin.CreateApiKey(
                admin_pb2.CreateApiKeyRequest(account_id="globex"), metadata=ACME
            ),
            stubs.admin.PutNumber(
                admin_pb2.PutNumberRequest(account_id="globex", number=NEW_NUMBER),
                metadata=ACME,
            ),
            stubs.admin.GetUsage(
                admin_pb2.GetUsageRequest(account_id="globex"), metadata=ACME
            ),
        ]
        for call in calls:
            error = await rpc_error(call)
            assert error.code() == grpc.StatusCode.PERMISSION_DENIED
            assert error_reason(error) == "OTHER_ACCOUNT"

    async def test_operator_must_name_account(self, stubs: Stubs) -> None:
        """An operator key has no own account, so account_id is required."""
        call = stubs.admin.ListNumbers(
            admin_pb2.ListNumbersRequest(), metadata=OPERATOR
        )
        error = await rpc_error(call)
        assert error.code() == grpc.StatusCode.PERMISSION_DENIED
        assert error_reason(error) == "ACCOUNT_ID_REQUIRED"

    async def test_operator_acts_on_named_account(self, stubs: Stubs) -> None:
        """An operator key reads any account it names."""
        response = await stubs.admin.ListNumbers(
            admin_pb2.ListNumbersRequest(account_id="globex"), metadata=OPERATOR
        )
        assert [number.number for number in response.numbers] == [GLOBEX_NUMBER]

    async def test_operator_unknown_account_not_found(self, stubs: Stubs) -> None:
        """Naming an account that does not exist gives NOT_FOUND."""
        call = stubs.admin.CreateApiKey(
            admin_pb2.CreateApiKeyRequest(account_id="nobody"), metadata=OPERATOR
        )
        error = await rpc_error(call)
        assert error.code() == grpc.StatusCode.NOT_FOUND
        assert error_reason(error) == "ACCOUNT_NOT_FOUND"

    async def test_accounts_need_operator_key(self, stubs: Stubs) -> None:
        """CreateAccount and ListAccounts are operator-only."""
        calls = [
            stubs.admin.CreateAccount(
                admin_pb2.CreateAccountRequest(account_id="initech"), metadata=ACME
            ),
            stubs.admin.ListAccounts(admin_pb2.ListAccountsRequest(), metadata=ACME),
        ]
        for call in calls:
            error = await rpc_error(call)
            assert error.code() == grpc.StatusCode.PERMISSION_DENIED
            assert error_reason(error) == "OPERATOR_KEY_REQUIRED"


class TestAccounts:
    async def test_create_and_list(self, stubs: Stubs) -> None:
        """A created account is listed with its display name."""
        account = await stubs.admin.CreateAccount(
            admin_pb2.CreateAccountRequest(
                account_id="initech", display_name="Initech"
            ),
            metadata=OPERATOR,
        )
        listed = await stubs.admin.ListAccounts(
            admin_pb2.ListAccountsRequest(), metadata=OPERATOR
        )

        assert account.id == "initech"
        assert account.created_at.seconds > 0
        assert [item.id for item in listed.accounts] == ["acme", "globex", "initech"]
        assert listed.accounts[2].display_name == "Initech"

    async def test_duplicate_rejected(self, stubs: Stubs) -> None:
        """Creating an existing account gives ALREADY_EXISTS."""
        call = stubs.admin.CreateAccount(
            admin_pb2.CreateAccountRequest(account_id="acme"), metadata=OPERATOR
        )
        error = await rpc_error(call)
        assert error.code() == grpc.StatusCode.ALREADY_EXISTS
        assert error_reason(error) == "ACCOUNT_EXISTS"

    @pytest.mark.parametrize(
        ("account_id", "reason"),
        [
            ("", "MISSING_FIELD"),
            ("Initech", "INVALID_ACCOUNT_ID"),
            ("a" * 65, "INVALID_ACCOUNT_ID"),
        ],
    )
    async def test_bad_id_rejected(
        self, stubs: Stubs, account_id: str, reason: str
    ) -> None:
        """Account ids are 1 to 64 of a-z, 0-9, "-" and "_"."""
        call = stubs.admin.CreateAccount(
            admin_pb2.CreateAccountRequest(account_id=account_id), metadata=OPERATOR
        )
        error = await rpc_error(call)
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert error_reason(error) == reason
        assert violation_fields(error) == ["account_id"]


class TestApiKeys:
    async def test_create_list_revoke(self, stubs: Stubs) -> None:
        """A new key works at once and stops working when revoked."""
        created = await stubs.admin.CreateApiKey(
            admin_pb2.CreateApiKeyRequest(), metadata=ACME
        )
        new_key = auth(created.api_key)
        # The first call caches the key; the revoke must clear that cache.
        await stubs.admin.ListNumbers(admin_pb2.ListNumbersRequest(), metadata=new_key)

        listed = await stubs.admin.ListApiKeys(
            admin_pb2.ListApiKeysRequest(), metadata=new_key
        )
        revoked = await stubs.admin.RevokeApiKey(
            admin_pb2.RevokeApiKeyRequest(key_id=created.key.id), metadata=ACME
        )
        error = await rpc_error(
            stubs.admin.ListNumbers(admin_pb2.ListNumbersRequest(), metadata=new_key)
        )

        assert created.api_key.startswith("pk_")
        assert created.key.prefix == created.api_key[:8]
        assert created.key.account_id == "acme"
        assert [key.id for key in listed.keys][-1] == created.key.id
        assert len(listed.keys) == 2
        assert all(created.api_key not in str(key) for key in listed.keys)
        assert revoked.HasField("revoked_at")
        assert error.code() == grpc.StatusCode.UNAUTHENTICATED

    async def test_revoke_twice_keeps_time(self, stubs: Stubs) -> None:
        """Revoking a revoked key changes nothing."""
        created = await stubs.admin.CreateApiKey(
            admin_pb2.CreateApiKeyRequest(), metadata=ACME
        )
        request = admin_pb2.RevokeApiKeyRequest(key_id=created.key.id)
        first = await stubs.admin.RevokeApiKey(request, metadata=ACME)
        second = await stubs.admin.RevokeApiKey(request, metadata=ACME)
        assert first.revoked_at == second.revoked_at

    async def test_operator_creates_key_for_account(self, stubs: Stubs) -> None:
        """An operator key issues keys for the account it names."""
        created = await stubs.admin.CreateApiKey(
            admin_pb2.CreateApiKeyRequest(account_id="globex"), metadata=OPERATOR
        )
        response = await stubs.admin.ListNumbers(
            admin_pb2.ListNumbersRequest(), metadata=auth(created.api_key)
        )
        assert [number.number for number in response.numbers] == [GLOBEX_NUMBER]

    async def test_other_account_key_not_found(self, stubs: Stubs) -> None:
        """Globex cannot revoke a key of Acme, and Acme's key keeps working."""
        listed = await stubs.admin.ListApiKeys(
            admin_pb2.ListApiKeysRequest(), metadata=ACME
        )
        call = stubs.admin.RevokeApiKey(
            admin_pb2.RevokeApiKeyRequest(key_id=listed.keys[0].id), metadata=GLOBEX
        )
        error = await rpc_error(call)

        assert error.code() == grpc.StatusCode.NOT_FOUND
        assert error_reason(error) == "API_KEY_NOT_FOUND"
        await stubs.admin.ListApiKeys(admin_pb2.ListApiKeysRequest(), metadata=ACME)

    async def test_config_key_prefix_is_short(self, stubs: Stubs) -> None:
        """A hand-written key shows at most a third of its characters."""
        listed = await stubs.admin.ListApiKeys(
            admin_pb2.ListApiKeysRequest(), metadata=ACME
        )
        assert listed.keys[0].prefix == ACME_KEY[: len(ACME_KEY) // 3]


class TestNumbers:
    async def test_put_get_list_delete(self, stubs: Stubs) -> None:
        """A number is stored normalised, with channel presence kept."""
        sms_config = types_pb2.ChannelConfig(
            timeout_seconds=0, outcome_ids=types_pb2.StringList()
        )
        put = await stubs.admin.PutNumber(
            admin_pb2.PutNumberRequest(
                number="+1 (415) 555-0177", sms_config=sms_config
            ),
            metadata=ACME,
        )
        fetched = await stubs.admin.GetNumber(
            admin_pb2.GetNumberRequest(number=NEW_NUMBER), metadata=ACME
        )
        listed = await stubs.admin.ListNumbers(
            admin_pb2.ListNumbersRequest(), metadata=ACME
        )

        assert put.number == NEW_NUMBER
        assert fetched == put
        assert fetched.HasField("sms_config")
        assert not fetched.HasField("whatsapp_config")
        assert fetched.sms_config.HasField("timeout_seconds")
        assert fetched.sms_config.HasField("outcome_ids")
        assert not fetched.sms_config.HasField("warning_seconds")
        assert NEW_NUMBER in [number.number for number in listed.numbers]

        await stubs.admin.DeleteNumber(
            admin_pb2.DeleteNumberRequest(number=NEW_NUMBER), metadata=ACME
        )
        error = await rpc_error(
            stubs.admin.GetNumber(
                admin_pb2.GetNumberRequest(number=NEW_NUMBER), metadata=ACME
            )
        )
        assert error.code() == grpc.StatusCode.NOT_FOUND
        assert error_reason(error) == "NUMBER_NOT_FOUND"

    async def test_put_replaces_configs(self, stubs: Stubs) -> None:
        """PutNumber replaces both channels; an absent one is disabled."""
        request = admin_pb2.PutNumberRequest(
            number=ACME_NUMBER,
            whatsapp_config=types_pb2.ChannelConfig(timeout_seconds=60),
        )
        put = await stubs.admin.PutNumber(request, metadata=ACME)

        assert not put.HasField("sms_config")
        assert put.whatsapp_config.timeout_seconds == 60
        assert put.updated_at.ToMilliseconds() >= put.created_at.ToMilliseconds()

    async def test_number_owned_elsewhere(self, server: Parley, stubs: Stubs) -> None:
        """Globex cannot take Acme's number, and nothing changes."""
        before = admin_counts(server)
        call = stubs.admin.PutNumber(
            admin_pb2.PutNumberRequest(
                number=ACME_NUMBER, sms_config=types_pb2.ChannelConfig()
            ),
            metadata=GLOBEX,
        )
        error = await rpc_error(call)

        assert error.code() == grpc.StatusCode.ALREADY_EXISTS
        assert error_reason(error) == "NUMBER_OWNED_ELSEWHERE"
        assert admin_counts(server) == before
        fetched = await stubs.admin.GetNumber(
            admin_pb2.GetNumberRequest(number=ACME_NUMBER), metadata=ACME
        )
        assert fetched.sms_config.timeout_seconds == 600

    async def test_other_account_number_not_found(self, stubs: Stubs) -> None:
        """Get and Delete of another account's number give NOT_FOUND."""
        calls = [
            stubs.admin.GetNumber(
                admin_pb2.GetNumberRequest(number=ACME_NUMBER), metadata=GLOBEX
            ),
            stubs.admin.DeleteNumber(
                admin_pb2.DeleteNumberRequest(number=ACME_NUMBER), metadata=GLOBEX
            ),
        ]
        for call in calls:
            error = await rpc_error(call)
            assert error.code() == grpc.StatusCode.NOT_FOUND
            assert error_reason(error) == "NUMBER_NOT_FOUND"
        await stubs.admin.GetNumber(
            admin_pb2.GetNumberRequest(number=ACME_NUMBER), metadata=ACME
        )

    async def test_bad_number_rejected(self, stubs: Stubs) -> None:
        """A number that is not valid E.164 is rejected naming the field."""
        call = stubs.admin.PutNumber(
            admin_pb2.PutNumberRequest(number="+1415"), metadata=ACME
        )
        error = await rpc_error(call)
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert violation_fields(error) == ["number"]

    @pytest.mark.parametrize(
        ("config", "field", "reason"),
        [
            (
                types_pb2.ChannelConfig(timeout_seconds=60, warning_seconds=60),
                "sms_config.warning_seconds",
                "INVALID_TIMEOUT_CONFIG",
            ),
            (
                types_pb2.ChannelConfig(timeout_message="x" * 1601),
                "sms_config.timeout_message",
                "TEXT_TOO_LONG",
            ),
            (
                types_pb2.ChannelConfig(outcome_ids=types_pb2.StringList(values=[""])),
                "sms_config.outcome_ids[0]",
                "MISSING_FIELD",
            ),
        ],
    )
    async def test_bad_config_rejected(
        self,
        server: Parley,
        stubs: Stubs,
        config: types_pb2.ChannelConfig,
        field: str,
        reason: str,
    ) -> None:
        """Channel configs are checked like the YAML ones, and nothing is stored."""
        before = admin_counts(server)
        call = stubs.admin.PutNumber(
            admin_pb2.PutNumberRequest(number=NEW_NUMBER, sms_config=config),
            metadata=ACME,
        )
        error = await rpc_error(call)

        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert error_reason(error) == reason
        assert violation_fields(error) == [field]
        assert admin_counts(server) == before


class TestPersonas:
    async def test_config_persona_loaded(self, stubs: Stubs) -> None:
        """The persona from the config file has its default and both versions."""
        persona = await stubs.admin.GetPersona(
            admin_pb2.GetPersonaRequest(persona_id=PERSONA_ID), metadata=ACME
        )
        assert persona.default_version == "2"
        assert [version.version for version in persona.versions] == ["1", "2"]
        assert persona.versions[1].config.pathway_id == "persona-path"

    async def test_versions_and_default(self, stubs: Stubs) -> None:
        """The first version becomes the default; later ones only on request."""
        created = await stubs.admin.CreatePersona(
            admin_pb2.CreatePersonaRequest(), metadata=ACME
        )
        persona_id = created.id

        def publish(version: str, timeout: int, make_default: bool = False) -> Any:
            request = admin_pb2.PublishPersonaVersionRequest(
                persona_id=persona_id,
                version=version,
                config=types_pb2.ChannelConfig(timeout_seconds=timeout),
                make_default=make_default,
            )
            return stubs.admin.PublishPersonaVersion(request, metadata=ACME)

        first = await publish("1", 60)
        second = await publish("2", 120)
        third = await publish("3", 180, make_default=True)

        assert len(persona_id) == 36
        assert created.default_version == ""
        assert first.default_version == "1"
        assert second.default_version == "1"
        assert third.default_version == "3"
        assert [version.version for version in third.versions] == ["1", "2", "3"]

        again = await publish("1", 60)
        assert again == third

        error = await rpc_error(publish("1", 61))
        assert error.code() == grpc.StatusCode.ALREADY_EXISTS
        assert error_reason(error) == "PERSONA_VERSION_IMMUTABLE"

        reset = await stubs.admin.SetDefaultPersonaVersion(
            admin_pb2.SetDefaultPersonaVersionRequest(
                persona_id=persona_id, version="2"
            ),
            metadata=ACME,
        )
        assert reset.default_version == "2"
        assert reset.versions[0].config.timeout_seconds == 60

    async def test_unknown_default_version(self, stubs: Stubs) -> None:
        """Only a published version can become the default."""
        call = stubs.admin.SetDefaultPersonaVersion(
            admin_pb2.SetDefaultPersonaVersionRequest(
                persona_id=PERSONA_ID, version="9"
            ),
            metadata=ACME,
        )
        error = await rpc_error(call)
        assert error.code() == grpc.StatusCode.NOT_FOUND
        assert error_reason(error) == "PERSONA_VERSION_NOT_FOUND"

    async def test_create_existing_rejected(self, stubs: Stubs) -> None:
        """A taken id gives PERSONA_EXISTS, or PERSONA_OWNED_ELSEWHERE if not ours."""
        cases = [
            (PERSONA_ID, "PERSONA_EXISTS"),
            (GLOBEX_PERSONA_ID, "PERSONA_OWNED_ELSEWHERE"),
        ]
        for persona_id, reason in cases:
            call = stubs.admin.CreatePersona(
                admin_pb2.CreatePersonaRequest(persona_id=persona_id), metadata=ACME
            )
            error = await rpc_error(call)
            assert error.code() == grpc.StatusCode.ALREADY_EXISTS
            assert error_reason(error) == reason

    async def test_create_with_given_id(self, stubs: Stubs) -> None:
        """A given UUID is stored lower-case."""
        created = await stubs.admin.CreatePersona(
            admin_pb2.CreatePersonaRequest(persona_id=NEW_PERSONA_ID.upper()),
            metadata=ACME,
        )
        listed = await stubs.admin.ListPersonas(
            admin_pb2.ListPersonasRequest(), metadata=ACME
        )
        assert created.id == NEW_PERSONA_ID
        assert [persona.id for persona in listed.personas] == [
            PERSONA_ID,
            NEW_PERSONA_ID,
        ]

    async def test_other_account_persona_not_found(self, stubs: Stubs) -> None:
        """Globex can neither read nor extend Acme's persona."""
        calls = [
            stubs.admin.GetPersona(
                admin_pb2.GetPersonaRequest(persona_id=PERSONA_ID), metadata=GLOBEX
            ),
            stubs.admin.PublishPersonaVersion(
                admin_pb2.PublishPersonaVersionRequest(
                    persona_id=PERSONA_ID, version="3"
                ),
                metadata=GLOBEX,
            ),
        ]
        for call in calls:
            error = await rpc_error(call)
            assert error.code() == grpc.StatusCode.NOT_FOUND
            assert error_reason(error) == "PERSONA_NOT_FOUND"

    async def test_bad_version_rejected(self, stubs: Stubs) -> None:
        """Versions are 1 to 64 of letters, digits, ".", "-" and "_"."""
        call = stubs.admin.PublishPersonaVersion(
            admin_pb2.PublishPersonaVersionRequest(
                persona_id=PERSONA_ID, version="v 2"
            ),
            metadata=ACME,
        )
        error = await rpc_error(call)
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert violation_fields(error) == ["version"]


async def insert_ledger(server: Parley, account_id: str, amounts: list[int]) -> None:
    """Write ledger rows directly: one charge of 2 segments per positive amount."""
    assert server.components is not None
    async with server.components.database.transaction() as tx:
        for index, amount in enumerate(amounts):
            segments = 2 if amount > 0 else -2
            await tx.execute(
                "INSERT INTO ledger (account_id, message_id, conversation_id, segments,"
                " encoding, amount_micros, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    account_id,
                    f"msg-{index}",
                    "conv-1",
                    segments,
                    1,
                    amount,
                    1000 + index,
                ),
            )


class TestUsage:
    async def test_pages_newest_first(self, server: Parley, stubs: Stubs) -> None:
        """Five entries come 2, 2 and 1 per page, newest first; totals cover all."""
        await insert_ledger(server, "acme", [15_000, 15_000, -15_000, 15_000, 15_000])
        await insert_ledger(server, "globex", [99_000])

        pages: list[admin_pb2.GetUsageResponse] = []
        token = ""
        while True:
            page = await stubs.admin.GetUsage(
                admin_pb2.GetUsageRequest(page_size=2, page_token=token), metadata=ACME
            )
            pages.append(page)
            token = page.next_page_token
            if not token:
                break

        entries = [entry for page in pages for entry in page.entries]
        assert [len(page.entries) for page in pages] == [2, 2, 1]
        assert [entry.message_id for entry in entries] == [
            f"msg-{i}" for i in (4, 3, 2, 1, 0)
        ]
        assert entries[2].amount_micros == -15_000
        assert entries[2].segments == 2
        assert pages[0].total_messages == 4
        assert pages[0].total_segments == 8
        assert pages[0].total_amount_micros == 45_000
        assert pages[2].total_messages == 4

    async def test_default_page_size(self, server: Parley, stubs: Stubs) -> None:
        """page_size 0 returns up to 100 entries."""
        await insert_ledger(server, "acme", [10] * 101)
        page = await stubs.admin.GetUsage(admin_pb2.GetUsageRequest(), metadata=ACME)
        assert len(page.entries) == 100
        assert page.next_page_token

    @pytest.mark.parametrize(
        "token",
        [
            "garbage!",
            base64.urlsafe_b64encode(b'["x"]').decode(),
            base64.urlsafe_b64encode(b"[-1]").decode(),
            base64.urlsafe_b64encode(b"[true]").decode(),
            base64.urlsafe_b64encode(str([2**64]).encode()).decode(),
            base64.urlsafe_b64encode(b"[1, 2]").decode(),
        ],
    )
    async def test_bad_token_rejected(self, stubs: Stubs, token: str) -> None:
        """A token that GetUsage did not issue is INVALID_PAGE_TOKEN."""
        call = stubs.admin.GetUsage(
            admin_pb2.GetUsageRequest(page_token=token), metadata=ACME
        )
        error = await rpc_error(call)
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert error_reason(error) == "INVALID_PAGE_TOKEN"

    async def test_page_size_too_large(self, stubs: Stubs) -> None:
        """page_size above 1000 is rejected."""
        call = stubs.admin.GetUsage(
            admin_pb2.GetUsageRequest(page_size=1001), metadata=ACME
        )
        error = await rpc_error(call)
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert violation_fields(error) == ["page_size"]

    async def test_empty_ledger(self, stubs: Stubs) -> None:
        """An account without charges has zero totals and no token."""
        page = await stubs.admin.GetUsage(admin_pb2.GetUsageRequest(), metadata=GLOBEX)
        assert page.total_messages == 0
        assert page.total_amount_micros == 0
        assert not page.entries
        assert page.next_page_token == ""


INITECH_KEY = "initech-test-key-1"


def initech_document(
    default_version: str = "1", display_name: str = "Initech"
) -> dict[str, Any]:
    return {
        "accounts": [
            {
                "id": "initech",
                "display_name": display_name,
                "api_keys": [INITECH_KEY],
                "numbers": [{"number": NEW_NUMBER, "sms_config": {"outcome_ids": []}}],
                "personas": [
                    {
                        "id": NEW_PERSONA_ID,
                        "default_version": default_version,
                        "versions": [
                            {"version": "1", "config": {"timeout_seconds": 60}},
                            {"version": "2", "config": {"timeout_seconds": 90}},
                        ],
                    }
                ],
            }
        ]
    }


class TestApplyConfig:
    async def test_apply_twice_is_idempotent(
        self, server: Parley, stubs: Stubs
    ) -> None:
        """The second apply of a document creates and updates nothing."""
        first = await stubs.admin.ApplyConfig(
            apply_request(initech_document()), metadata=OPERATOR
        )
        counts = admin_counts(server)
        second = await stubs.admin.ApplyConfig(
            apply_request(initech_document()), metadata=OPERATOR
        )

        assert summary_counts(first) == (1, 1, 1, 1, 2)
        assert summary_counts(second) == (0, 0, 0, 0, 0)
        assert admin_counts(server) == counts

        initech = auth(INITECH_KEY)
        number = await stubs.admin.GetNumber(
            admin_pb2.GetNumberRequest(number=NEW_NUMBER), metadata=initech
        )
        persona = await stubs.admin.GetPersona(
            admin_pb2.GetPersonaRequest(persona_id=NEW_PERSONA_ID), metadata=initech
        )
        keys = await stubs.admin.ListApiKeys(
            admin_pb2.ListApiKeysRequest(), metadata=initech
        )
        assert number.sms_config.HasField("outcome_ids")
        assert persona.default_version == "1"
        assert len(keys.keys) == 1

    async def test_startup_config_reapplied_unchanged(
        self, server: Parley, stubs: Stubs
    ) -> None:
        """Applying the config the server started with changes nothing."""
        before = admin_counts(server)
        response = await stubs.admin.ApplyConfig(
            apply_request(base_config()), metadata=OPERATOR
        )
        assert summary_counts(response) == (0, 0, 0, 0, 0)
        assert admin_counts(server) == before

    async def test_updates_counted(self, stubs: Stubs) -> None:
        """A new display name and default version count as updates."""
        await stubs.admin.ApplyConfig(
            apply_request(initech_document()), metadata=OPERATOR
        )
        changed = initech_document(default_version="2", display_name="Initech Corp")
        response = await stubs.admin.ApplyConfig(
            apply_request(changed), metadata=OPERATOR
        )
        accounts = await stubs.admin.ListAccounts(
            admin_pb2.ListAccountsRequest(), metadata=OPERATOR
        )

        assert summary_counts(response) == (1, 0, 0, 1, 0)
        assert accounts.accounts[-1].display_name == "Initech Corp"

    async def test_account_key_applies_own_entries(self, stubs: Stubs) -> None:
        """An account key may apply a document about its own account."""
        document = {"accounts": [{"id": "acme", "numbers": [{"number": NEW_NUMBER}]}]}
        response = await stubs.admin.ApplyConfig(apply_request(document), metadata=ACME)
        number = await stubs.admin.GetNumber(
            admin_pb2.GetNumberRequest(number=NEW_NUMBER), metadata=ACME
        )
        assert response.numbers == 1
        assert not number.HasField("sms_config")

    @pytest.mark.parametrize(
        ("document", "reason"),
        [
            ({"accounts": [{"id": "globex", "display_name": "Mine"}]}, "OTHER_ACCOUNT"),
            ({"accounts": [{"id": "acme"}, {"id": "initech"}]}, "OTHER_ACCOUNT"),
            ({"operator_keys": ["acme-made-operator-key"]}, "OPERATOR_KEY_REQUIRED"),
        ],
    )
    async def test_account_key_restricted(
        self, server: Parley, stubs: Stubs, document: dict[str, Any], reason: str
    ) -> None:
        """An account key cannot apply other accounts or operator keys."""
        before = admin_counts(server)
        error = await rpc_error(
            stubs.admin.ApplyConfig(apply_request(document), metadata=ACME)
        )
        assert error.code() == grpc.StatusCode.PERMISSION_DENIED
        assert error_reason(error) == reason
        assert admin_counts(server) == before

    @pytest.mark.parametrize(
        ("entry", "reason"),
        [
            (
                {"id": "globex", "numbers": [{"number": ACME_NUMBER}]},
                "NUMBER_OWNED_ELSEWHERE",
            ),
            ({"id": "globex", "api_keys": [ACME_KEY]}, "API_KEY_IN_USE"),
            (
                {"id": "globex", "personas": [{"id": PERSONA_ID}]},
                "PERSONA_OWNED_ELSEWHERE",
            ),
            (
                {
                    "id": "acme",
                    "personas": [
                        {"id": PERSONA_ID, "versions": [{"version": "1", "config": {}}]}
                    ],
                },
                "PERSONA_VERSION_IMMUTABLE",
            ),
        ],
    )
    async def test_conflict_rolls_back_everything(
        self, server: Parley, stubs: Stubs, entry: dict[str, Any], reason: str
    ) -> None:
        """A conflict in a later entry leaves the earlier ones unapplied too."""
        document = initech_document()
        document["accounts"].append(entry)
        before = admin_counts(server)
        error = await rpc_error(
            stubs.admin.ApplyConfig(apply_request(document), metadata=OPERATOR)
        )

        assert error.code() == grpc.StatusCode.ALREADY_EXISTS
        assert error_reason(error) == reason
        assert "accounts[1]" in (error.details() or "")
        assert admin_counts(server) == before

    async def test_operator_key_applied(self, stubs: Stubs) -> None:
        """A new operator key from the document works at once."""
        document = {"operator_keys": ["ops-test-key-2"]}
        await stubs.admin.ApplyConfig(apply_request(document), metadata=OPERATOR)
        listed = await stubs.admin.ListAccounts(
            admin_pb2.ListAccountsRequest(), metadata=auth("ops-test-key-2")
        )
        assert [account.id for account in listed.accounts] == ["acme", "globex"]

    @pytest.mark.parametrize(
        ("text", "reason", "field"),
        [
            (
                "accounts: [{id: acme, numbers: [{number: '+14155550100'},"
                " {number: '+14155550101', sms_config: {timout_seconds: 5}}]}]",
                "INVALID_CONFIG",
                "accounts[0].numbers[1].sms_config.timout_seconds",
            ),
            (
                "accounts: [{id: acme, numbers: [{number: '+1415'}]}]",
                "INVALID_CONFIG",
                "accounts[0].numbers[0].number",
            ),
            (
                f"accounts: [{{id: acme, personas: [{{id: '{PERSONA_ID}', versions:"
                " [{version: '3',"
                " config: {timeout_seconds: 5, warning_seconds: 9}}]}]}]",
                "INVALID_TIMEOUT_CONFIG",
                "accounts[0].personas[0].versions[0].config.warning_seconds",
            ),
            ("accounts: [", "INVALID_CONFIG", "yaml"),
        ],
    )
    async def test_invalid_yaml_names_path(
        self, server: Parley, stubs: Stubs, text: str, reason: str, field: str
    ) -> None:
        """Errors name the path of the bad value, and nothing is applied."""
        before = admin_counts(server)
        call = stubs.admin.ApplyConfig(
            admin_pb2.ApplyConfigRequest(yaml=text), metadata=OPERATOR
        )
        error = await rpc_error(call)

        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert error_reason(error) == reason
        assert violation_fields(error) == [field]
        assert (error.details() or "").startswith("yaml: ")
        assert admin_counts(server) == before

    async def test_document_too_large(self, stubs: Stubs) -> None:
        """A document above 1 MiB is rejected before parsing."""
        text = "# " + "x" * (1024 * 1024)
        call = stubs.admin.ApplyConfig(
            admin_pb2.ApplyConfigRequest(yaml=text), metadata=OPERATOR
        )
        error = await rpc_error(call)
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert error_reason(error) == "CONFIG_TOO_LARGE"
