"""Conversion of loaded YAML data into a `ConfigDocument`, checking the schema.

Unknown keys, wrong types and out-of-range values raise INVALID_ARGUMENT
whose field is the path of the value, such as
`accounts[0].numbers[1].sms_config.timeout_seconds`. A null or absent
value means "not given" for every optional key.
"""

from __future__ import annotations

import dataclasses
import re
import typing
from typing import Any, TypeVar

from google.protobuf.descriptor import FieldDescriptor

from server.config_definitions import DefinitionsParser
from server.config_model import (
    AccountEntry,
    ChannelConfig,
    ConfigDocument,
    NumberEntry,
    PersonaEntry,
    PersonaVersionEntry,
    validate_account_id,
    validate_channel_config,
    validate_display_name,
    validate_version,
)
from server.config_values import join_path
from server.errors import invalid_argument
from server.settings import CarrierSettings, ServerSettings
from server.validation import normalize_e164, quote_value, validate_text, validate_uuid

KEY_MIN_CHARS = 8
KEY_MAX_CHARS = 256
# Upper bound for every numeric server and carrier setting.
MAX_SETTING_VALUE = 1_000_000_000
CARRIER_ERROR_CODE_MAX_CHARS = 32

_KEY_CHARS = re.compile(r"[!-~]+")
_NUMBER_PREFIX = re.compile(r"\+[0-9]{1,15}")
_POSITIVE_SETTINGS = frozenset(
    {
        "heartbeat_seconds",
        "cleanup_interval_seconds",
        "idempotency_retention_hours",
        "event_retention_hours",
    }
)
_CARRIER_KINDS = ("simulator",)
_TOP_KEYS = ("server", "carrier", "operator_keys", "accounts")
_ACCOUNT_KEYS = (
    "id",
    "display_name",
    "api_keys",
    "numbers",
    "personas",
    "pathways",
    "citation_schemas",
    "outcomes",
)
_NUMBER_KEYS = ("number", "sms_config", "whatsapp_config")
_PERSONA_KEYS = ("id", "default_version", "versions")
_VERSION_KEYS = ("version", "config")
_CHANNEL_FIELDS = ChannelConfig.DESCRIPTOR.fields
_CHANNEL_KEYS = tuple(descriptor.name for descriptor in _CHANNEL_FIELDS)

Settings = TypeVar("Settings", ServerSettings, CarrierSettings)


def parse_document(data: object) -> ConfigDocument:
    """Build a `ConfigDocument` from loaded YAML; None gives the empty document."""
    return _DocumentParser().document(data)


class _DocumentParser(DefinitionsParser):
    """Walks the YAML data, checking every key and type against the schema."""

    def document(self, data: object) -> ConfigDocument:
        if data is None:
            return ConfigDocument()
        top = self._mapping(data, "", _TOP_KEYS)
        server = self._settings(top.get("server"), "server", ServerSettings)
        carrier = self._settings(top.get("carrier"), "carrier", CarrierSettings)
        if carrier.kind not in _CARRIER_KINDS:
            raise invalid_argument(
                "carrier.kind",
                f"carrier.kind {quote_value(carrier.kind)} is not supported; "
                f"accepted: {', '.join(_CARRIER_KINDS)}",
            )
        operator_keys = self._sequence(top.get("operator_keys"), "operator_keys")
        accounts = self._sequence(top.get("accounts"), "accounts")
        document = ConfigDocument(
            server=server,
            carrier=carrier,
            operator_keys=tuple(self._key(item, path) for path, item in operator_keys),
            accounts=tuple(self._account(item, path) for path, item in accounts),
        )
        _check_unique_ids(document)
        return document

    def _account(self, data: object, path: str) -> AccountEntry:
        entry = self._mapping(data, path, _ACCOUNT_KEYS, required=("id",))
        id_path = join_path(path, "id")
        account_id = validate_account_id(self._string(entry["id"], id_path), id_path)

        display_name = None
        if entry.get("display_name") is not None:
            name_path = join_path(path, "display_name")
            display_name = self._string(entry["display_name"], name_path)
            validate_display_name(display_name, name_path)

        api_keys = self._sequence(entry.get("api_keys"), join_path(path, "api_keys"))
        numbers = self._sequence(entry.get("numbers"), join_path(path, "numbers"))
        personas = self._sequence(entry.get("personas"), join_path(path, "personas"))
        pathways = self._sequence(entry.get("pathways"), join_path(path, "pathways"))
        schemas_path = join_path(path, "citation_schemas")
        schemas = self._sequence(entry.get("citation_schemas"), schemas_path)
        outcomes = self._sequence(entry.get("outcomes"), join_path(path, "outcomes"))
        return AccountEntry(
            id=account_id,
            display_name=display_name,
            api_keys=tuple(self._key(item, item_path) for item_path, item in api_keys),
            numbers=tuple(
                self._agent_number(item, item_path) for item_path, item in numbers
            ),
            personas=tuple(
                self._persona(item, item_path) for item_path, item in personas
            ),
            pathways=tuple(
                self._pathway(item, item_path) for item_path, item in pathways
            ),
            citation_schemas=tuple(
                self._citation_schema(item, item_path) for item_path, item in schemas
            ),
            outcomes=tuple(
                self._outcome(item, item_path) for item_path, item in outcomes
            ),
        )

    def _key(self, data: object, path: str) -> str:
        key = self._string(data, path)
        if KEY_MIN_CHARS <= len(key) <= KEY_MAX_CHARS and _KEY_CHARS.fullmatch(key):
            return key
        # The message leaves the value out because it is a credential.
        raise invalid_argument(
            path,
            f"{path} is not a valid key; use {KEY_MIN_CHARS} to {KEY_MAX_CHARS} "
            "printable ASCII characters without spaces",
        )

    def _agent_number(self, data: object, path: str) -> NumberEntry:
        entry = self._mapping(data, path, _NUMBER_KEYS, required=("number",))
        number_path = join_path(path, "number")
        number = normalize_e164(self._string(entry["number"], number_path), number_path)
        sms_path = join_path(path, "sms_config")
        whatsapp_path = join_path(path, "whatsapp_config")
        return NumberEntry(
            number=number,
            sms_config=self._channel_config(entry.get("sms_config"), sms_path),
            whatsapp_config=self._channel_config(
                entry.get("whatsapp_config"), whatsapp_path
            ),
        )

    def _persona(self, data: object, path: str) -> PersonaEntry:
        entry = self._mapping(data, path, _PERSONA_KEYS, required=("id",))
        id_path = join_path(path, "id")
        persona_id = validate_uuid(self._string(entry["id"], id_path), id_path)
        items = self._sequence(entry.get("versions"), join_path(path, "versions"))
        versions = tuple(
            self._persona_version(item, item_path) for item_path, item in items
        )

        default_version = ""
        if entry.get("default_version") is not None:
            default_path = join_path(path, "default_version")
            default_version = self._string(entry["default_version"], default_path)
            listed = [version.version for version in versions]
            if default_version not in listed:
                raise invalid_argument(
                    default_path,
                    f"{default_path} {quote_value(default_version)} is not one of"
                    " the persona's versions; listed versions:"
                    f" {', '.join(listed) or 'none'}",
                )
        return PersonaEntry(persona_id, default_version, versions)

    def _persona_version(self, data: object, path: str) -> PersonaVersionEntry:
        entry = self._mapping(data, path, _VERSION_KEYS, required=("version",))
        version_path = join_path(path, "version")
        version = validate_version(
            self._string(entry["version"], version_path), version_path
        )
        # A version always has a config; null or absent means one with nothing set.
        config = self._channel_config(entry.get("config"), join_path(path, "config"))
        return PersonaVersionEntry(version, config or ChannelConfig())

    def _channel_config(self, data: object, path: str) -> ChannelConfig | None:
        """Convert a channel config mapping; null or absent gives None."""
        if data is None:
            return None
        entry = self._mapping(data, path, _CHANNEL_KEYS)
        config = ChannelConfig()
        for descriptor in _CHANNEL_FIELDS:
            value = entry.get(descriptor.name)
            if value is not None:
                field_path = join_path(path, descriptor.name)
                self._set_channel_field(config, descriptor, value, field_path)
        validate_channel_config(config, path)
        return config

    def _set_channel_field(
        self,
        config: ChannelConfig,
        descriptor: FieldDescriptor,
        value: object,
        path: str,
    ) -> None:
        name = descriptor.name
        if descriptor.type == FieldDescriptor.TYPE_MESSAGE:
            # SetInParent keeps an explicit empty list present ("explicitly none").
            string_list = getattr(config, name)
            string_list.SetInParent()
            items = self._sequence(value, path)
            string_list.values.extend(
                self._string(item, item_path) for item_path, item in items
            )
        elif descriptor.type == FieldDescriptor.TYPE_UINT32:
            setattr(config, name, self._integer(value, path, 0, 2**32 - 1))
        elif descriptor.type == FieldDescriptor.TYPE_BOOL:
            setattr(config, name, self._boolean(value, path))
        else:
            setattr(config, name, self._string(value, path))

    def _settings(
        self, data: object, path: str, settings_type: type[Settings]
    ) -> Settings:
        """Build a settings dataclass; each field's type decides the check."""
        if data is None:
            return settings_type()
        hints = typing.get_type_hints(settings_type)
        names = [item.name for item in dataclasses.fields(settings_type)]
        entry = self._mapping(data, path, names)
        values: dict[str, Any] = {}
        for name, value in entry.items():
            item_path = join_path(path, name)
            hint = hints[name]
            if hint is str:
                values[name] = self._string(value, item_path)
            elif hint is int:
                values[name] = self._integer(value, item_path, 0, MAX_SETTING_VALUE)
            elif hint is float:
                positive = name in _POSITIVE_SETTINGS
                values[name] = self._float(
                    value, item_path, positive=positive, maximum=MAX_SETTING_VALUE
                )
            elif hint == dict[str, str]:
                values[name] = self._prefix_map(value, item_path)
            else:
                raise TypeError(
                    f"no config check for {settings_type.__name__}.{name}: {hint}"
                )
        return settings_type(**values)

    def _prefix_map(self, data: object, path: str) -> dict[str, str]:
        """Check a mapping of user-number prefix to carrier error code."""
        result: dict[str, str] = {}
        for key, value in self._mapping(data, path, None).items():
            key_path = f"{path}[{quote_value(str(key))}]"
            if not isinstance(key, str) or not _NUMBER_PREFIX.fullmatch(key):
                raise invalid_argument(
                    key_path,
                    f"{key_path}: the key must be a quoted number prefix such as "
                    '"+1650555019" (a "+" followed by 1 to 15 digits)',
                )
            code = self._string(value, key_path)
            validate_text(code, key_path, CARRIER_ERROR_CODE_MAX_CHARS, required=True)
            result[key] = code
        return result


def _check_unique_ids(document: ConfigDocument) -> None:
    """Reject an account, key, number, persona, version or definition listed twice.

    Definition ids are scoped to their account, so two accounts may both list
    a pathway `intake`.
    """
    seen: dict[str, str] = {}

    def claim(identity: str, path: str, description: str) -> None:
        if identity in seen:
            raise invalid_argument(
                path, f"{path}: {description} is already listed at {seen[identity]}"
            )
        seen[identity] = path

    for index, key in enumerate(document.operator_keys):
        claim("key:" + key, f"operator_keys[{index}]", "the same key")
    for index, account in enumerate(document.accounts):
        path = f"accounts[{index}]"
        claim("account:" + account.id, path, f"account {account.id!r}")
        for key_index, key in enumerate(account.api_keys):
            claim("key:" + key, f"{path}.api_keys[{key_index}]", "the same key")
        for number_index, number in enumerate(account.numbers):
            claim(
                "number:" + number.number,
                f"{path}.numbers[{number_index}]",
                number.number,
            )
        for persona_index, persona in enumerate(account.personas):
            persona_path = f"{path}.personas[{persona_index}]"
            claim("persona:" + persona.id, persona_path, f"persona {persona.id}")
            for version_index, version in enumerate(persona.versions):
                version_path = f"{persona_path}.versions[{version_index}]"
                identity = f"version:{persona.id}:{version.version}"
                claim(identity, version_path, f"version {version.version!r}")
        for pathway_index, pathway in enumerate(account.pathways):
            pathway_path = f"{path}.pathways[{pathway_index}]"
            pathway_identity = f"pathway:{account.id}:{pathway.id}"
            claim(pathway_identity, pathway_path, f"pathway {pathway.id!r}")
            for version_index, pathway_version in enumerate(pathway.versions):
                version_path = f"{pathway_path}.versions[{version_index}]"
                identity = f"{pathway_identity}:{pathway_version.version}"
                claim(identity, version_path, f"version {pathway_version.version!r}")
        for schema_index, schema in enumerate(account.citation_schemas):
            schema_path = f"{path}.citation_schemas[{schema_index}]"
            identity = f"citation_schema:{account.id}:{schema.id}"
            claim(identity, schema_path, f"citation schema {schema.id!r}")
        for outcome_index, outcome in enumerate(account.outcomes):
            outcome_path = f"{path}.outcomes[{outcome_index}]"
            identity = f"outcome:{account.id}:{outcome.id}"
            claim(identity, outcome_path, f"outcome {outcome.id!r}")
