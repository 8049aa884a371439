"""AdminService: accounts, API keys, agent numbers, personas, usage and config.

Operator keys act on any account and must name it in `account_id`; an
account key acts on its own account only. Every write runs in one
transaction, so a rejected call changes nothing.
"""

from __future__ import annotations

import asyncio
import uuid

import structlog
from parley.v1 import admin_pb2, types_pb2

from server.auth import Principal, generate_key
from server.config_apply import (
    apply_config,
    key_prefix,
    put_number,
    put_persona_version,
    store_api_key,
)
from server.config_file import parse_config
from server.config_model import (
    ConfigDocument,
    NumberEntry,
    validate_account_id,
    validate_channel_config,
    validate_display_name,
    validate_version,
)
from server.errors import (
    already_exists,
    invalid_argument,
    not_found,
    permission_denied,
)
from server.paging import encode_token, page_size
from server.rpc import Context, unary
from server.services import admin_records as records
from server.services.admin_definitions import DefinitionsServicer
from server.timeutil import timestamp_from_ms
from server.validation import normalize_e164, quote_value, validate_uuid

log = structlog.get_logger("parley.admin")

MAX_CONFIG_BYTES = 1024 * 1024


class AdminServicer(DefinitionsServicer):
    """Implements AdminService on the shared database.

    The pathway, citation schema and outcome RPCs live in `DefinitionsServicer`.
    """

    @unary
    async def CreateAccount(
        self,
        request: admin_pb2.CreateAccountRequest,
        context: Context,
        principal: Principal,
    ) -> admin_pb2.Account:
        principal.require_operator()
        account_id = validate_account_id(request.account_id, "account_id")
        display_name = validate_display_name(request.display_name, "display_name")

        now_ms = self._now_ms()
        async with self._database.transaction() as tx:
            if await records.account_exists(tx, account_id):
                raise already_exists(
                    "ACCOUNT_EXISTS", f"Account {account_id!r} already exists."
                )
            await tx.execute(
                "INSERT INTO accounts (id, display_name, created_at) VALUES (?, ?, ?)",
                (account_id, display_name, now_ms),
            )
        return admin_pb2.Account(
            id=account_id,
            display_name=display_name,
            created_at=timestamp_from_ms(now_ms),
        )

    @unary
    async def ListAccounts(
        self,
        request: admin_pb2.ListAccountsRequest,
        context: Context,
        principal: Principal,
    ) -> admin_pb2.ListAccountsResponse:
        principal.require_operator()
        accounts = await records.list_accounts(self._database)
        return admin_pb2.ListAccountsResponse(accounts=accounts)

    @unary
    async def CreateApiKey(
        self,
        request: admin_pb2.CreateApiKeyRequest,
        context: Context,
        principal: Principal,
    ) -> admin_pb2.CreateApiKeyResponse:
        account_id = await self._account_id(principal, request.account_id)
        api_key = generate_key()
        now_ms = self._now_ms()
        async with self._database.transaction() as tx:
            key_id = await store_api_key(tx, account_id, api_key, now_ms)
        self.authenticator.invalidate()

        log.info("api_key_created", key_id=key_id, target_account_id=account_id)
        key = admin_pb2.ApiKey(
            id=key_id,
            account_id=account_id,
            prefix=key_prefix(api_key),
            created_at=timestamp_from_ms(now_ms),
        )
        return admin_pb2.CreateApiKeyResponse(key=key, api_key=api_key)

    @unary
    async def ListApiKeys(
        self,
        request: admin_pb2.ListApiKeysRequest,
        context: Context,
        principal: Principal,
    ) -> admin_pb2.ListApiKeysResponse:
        account_id = await self._account_id(principal, request.account_id)
        keys = await records.list_api_keys(self._database, account_id)
        return admin_pb2.ListApiKeysResponse(keys=keys)

    @unary
    async def RevokeApiKey(
        self,
        request: admin_pb2.RevokeApiKeyRequest,
        context: Context,
        principal: Principal,
    ) -> admin_pb2.ApiKey:
        """Revoke a key of the account; revoking a revoked key keeps its revoked_at."""
        account_id = await self._account_id(principal, request.account_id)
        if not request.key_id:
            raise invalid_argument(
                "key_id",
                "key_id is missing; ListApiKeys shows the ids of the account's keys.",
                "MISSING_FIELD",
            )

        now_ms = self._now_ms()
        async with self._database.transaction() as tx:
            key = await records.get_api_key(tx, account_id, request.key_id)
            if key is None:
                raise not_found(
                    "API_KEY_NOT_FOUND",
                    f"API key {quote_value(request.key_id)} is not a key of account"
                    f" {account_id!r}; ListApiKeys shows the account's keys.",
                )
            if not key.HasField("revoked_at"):
                await tx.execute(
                    "UPDATE api_keys SET revoked_at = ? WHERE id = ?", (now_ms, key.id)
                )
                key.revoked_at.CopyFrom(timestamp_from_ms(now_ms))
        self.authenticator.invalidate()

        log.info("api_key_revoked", key_id=key.id, target_account_id=account_id)
        return key

    @unary
    async def PutNumber(
        self,
        request: admin_pb2.PutNumberRequest,
        context: Context,
        principal: Principal,
    ) -> admin_pb2.AgentNumber:
        account_id = await self._account_id(principal, request.account_id)
        number = normalize_e164(request.number, "number")
        sms_config = whatsapp_config = None
        if request.HasField("sms_config"):
            sms_config = _copy(request.sms_config)
            validate_channel_config(sms_config, "sms_config")
        if request.HasField("whatsapp_config"):
            whatsapp_config = _copy(request.whatsapp_config)
            validate_channel_config(whatsapp_config, "whatsapp_config")

        entry = NumberEntry(number, sms_config, whatsapp_config)
        async with self._database.transaction() as tx:
            await put_number(tx, account_id, entry, self._now_ms())
            return await records.require_number(tx, account_id, number)

    @unary
    async def GetNumber(
        self,
        request: admin_pb2.GetNumberRequest,
        context: Context,
        principal: Principal,
    ) -> admin_pb2.AgentNumber:
        account_id = await self._account_id(principal, request.account_id)
        number = normalize_e164(request.number, "number")
        return await records.require_number(self._database, account_id, number)

    @unary
    async def ListNumbers(
        self,
        request: admin_pb2.ListNumbersRequest,
        context: Context,
        principal: Principal,
    ) -> admin_pb2.ListNumbersResponse:
        account_id = await self._account_id(principal, request.account_id)
        numbers = await records.list_numbers(self._database, account_id)
        return admin_pb2.ListNumbersResponse(numbers=numbers)

    @unary
    async def DeleteNumber(
        self,
        request: admin_pb2.DeleteNumberRequest,
        context: Context,
        principal: Principal,
    ) -> admin_pb2.DeleteNumberResponse:
        """Delete the number; its stored conversations stay readable."""
        account_id = await self._account_id(principal, request.account_id)
        number = normalize_e164(request.number, "number")
        async with self._database.transaction() as tx:
            deleted = await tx.execute_rowcount(
                "DELETE FROM numbers WHERE number = ? AND account_id = ?",
                (number, account_id),
            )
            if deleted == 0:
                raise records.number_not_found(number, account_id)
        return admin_pb2.DeleteNumberResponse()

    @unary
    async def CreatePersona(
        self,
        request: admin_pb2.CreatePersonaRequest,
        context: Context,
        principal: Principal,
    ) -> admin_pb2.Persona:
        account_id = await self._account_id(principal, request.account_id)
        persona_id = str(uuid.uuid4())
        if request.persona_id:
            persona_id = validate_uuid(request.persona_id, "persona_id")

        now_ms = self._now_ms()
        async with self._database.transaction() as tx:
            owner = await records.persona_owner(tx, persona_id)
            if owner == account_id:
                raise already_exists(
                    "PERSONA_EXISTS", f"Persona {persona_id} already exists."
                )
            if owner is not None:
                raise already_exists(
                    "PERSONA_OWNED_ELSEWHERE",
                    f"Persona id {persona_id} is taken by another account;"
                    " leave persona_id empty to get a new UUID.",
                )
            await tx.execute(
                "INSERT INTO personas (id, account_id, default_version, created_at)"
                " VALUES (?, ?, '', ?)",
                (persona_id, account_id, now_ms),
            )
        return admin_pb2.Persona(
            id=persona_id, account_id=account_id, created_at=timestamp_from_ms(now_ms)
        )

    @unary
    async def PublishPersonaVersion(
        self,
        request: admin_pb2.PublishPersonaVersionRequest,
        context: Context,
        principal: Principal,
    ) -> admin_pb2.Persona:
        """Publish a version; republishing the same config only applies make_default."""
        account_id = await self._account_id(principal, request.account_id)
        persona_id = validate_uuid(request.persona_id, "persona_id")
        version = validate_version(request.version, "version")
        config = types_pb2.ChannelConfig()
        if request.HasField("config"):
            config.CopyFrom(request.config)
        validate_channel_config(config, "config")

        async with self._database.transaction() as tx:
            persona = await records.require_persona(tx, account_id, persona_id)
            await put_persona_version(tx, persona_id, version, config, self._now_ms())
            if request.make_default or not persona.default_version:
                await records.set_default_version(tx, persona_id, version)
            return await records.require_persona(tx, account_id, persona_id)

    @unary
    async def SetDefaultPersonaVersion(
        self,
        request: admin_pb2.SetDefaultPersonaVersionRequest,
        context: Context,
        principal: Principal,
    ) -> admin_pb2.Persona:
        account_id = await self._account_id(principal, request.account_id)
        persona_id = validate_uuid(request.persona_id, "persona_id")
        version = validate_version(request.version, "version")

        async with self._database.transaction() as tx:
            persona = await records.require_persona(tx, account_id, persona_id)
            if version not in [item.version for item in persona.versions]:
                raise not_found(
                    "PERSONA_VERSION_NOT_FOUND",
                    f"Persona {persona_id} has no version {version!r};"
                    " publish it first with PublishPersonaVersion.",
                )
            await records.set_default_version(tx, persona_id, version)
            return await records.require_persona(tx, account_id, persona_id)

    @unary
    async def GetPersona(
        self,
        request: admin_pb2.GetPersonaRequest,
        context: Context,
        principal: Principal,
    ) -> admin_pb2.Persona:
        account_id = await self._account_id(principal, request.account_id)
        persona_id = validate_uuid(request.persona_id, "persona_id")
        return await records.require_persona(self._database, account_id, persona_id)

    @unary
    async def ListPersonas(
        self,
        request: admin_pb2.ListPersonasRequest,
        context: Context,
        principal: Principal,
    ) -> admin_pb2.ListPersonasResponse:
        account_id = await self._account_id(principal, request.account_id)
        personas = await records.list_personas(self._database, account_id)
        return admin_pb2.ListPersonasResponse(personas=personas)

    @unary
    async def GetUsage(
        self,
        request: admin_pb2.GetUsageRequest,
        context: Context,
        principal: Principal,
    ) -> admin_pb2.GetUsageResponse:
        account_id = await self._account_id(principal, request.account_id)
        size = page_size(request.page_size)
        before_id = records.usage_position(request.page_token)

        response = await records.usage_totals(self._database, account_id)
        entries = await records.ledger_page(
            self._database, account_id, before_id, size + 1
        )
        response.entries.extend(entries[:size])
        if len(entries) > size:
            response.next_page_token = encode_token([entries[size - 1].id])
        return response

    @unary
    async def ApplyConfig(
        self,
        request: admin_pb2.ApplyConfigRequest,
        context: Context,
        principal: Principal,
    ) -> admin_pb2.ApplyConfigResponse:
        """Apply a YAML config document.

        The `server` and `carrier` sections are checked but take effect only
        when the server starts with the document as its --config file.
        """
        size = len(request.yaml.encode("utf-8", "surrogatepass"))
        if size > MAX_CONFIG_BYTES:
            raise invalid_argument(
                "yaml",
                f"yaml is {size:,} bytes; the maximum is {MAX_CONFIG_BYTES:,} bytes,"
                " so split the document and apply the parts one after another.",
                "CONFIG_TOO_LARGE",
            )
        # A worker thread parses, because a 1 MiB document can take a second of CPU.
        document = await asyncio.to_thread(parse_config, request.yaml, "yaml")
        _check_config_scope(principal, document)

        summary = await apply_config(self._database, document, self._now_ms())
        self.authenticator.invalidate()
        log.info("config_applied", **vars(summary))
        return admin_pb2.ApplyConfigResponse(**vars(summary))


def _copy(config: types_pb2.ChannelConfig) -> types_pb2.ChannelConfig:
    result = types_pb2.ChannelConfig()
    result.CopyFrom(config)
    return result


def _check_config_scope(principal: Principal, document: ConfigDocument) -> None:
    """Allow an account key only its own account's entries and no operator keys."""
    if principal.is_operator:
        return
    if document.operator_keys:
        raise permission_denied(
            "OPERATOR_KEY_REQUIRED",
            "Only an operator key may apply operator_keys; remove the section"
            " or apply the document with an operator key.",
        )
    for index, account in enumerate(document.accounts):
        if account.id != principal.account_id:
            raise permission_denied(
                "OTHER_ACCOUNT",
                f"accounts[{index}].id {account.id!r} is not the caller's account;"
                " an account key may apply entries of its own account only.",
            )
