"""Conversion of loaded YAML data into a `ConfigDocument`, checking the schema.

Unknown keys, wrong types and out-of-range values raise INVALID_ARGUMENT
whose field is the path of the value, such as
`accounts[0].numbers[1].sms_config.timeout_seconds`. A null or absent
value means "not given" for every optional key.
"""

from __future__ import annotations

import dataclasses
import math
import re
import typing
from typing import Any, TypeVar

from google.protobuf.descriptor import FieldDescriptor

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
from server.errors import invalid_argument
from server.settings import CarrierSettings, ServerSettings
from server.validation import normalize_e164, quote_value, validate_text, validate_uuid

KEY_MIN_CHARS = 8
KEY_MAX_CHARS = 256
# YAML aliases let a small document repeat large lists, so parsing stops
# after this many list items and mapping entries, counting every use.
MAX_DOCUMENT_VALUES = 500_000
# Upper bound for every numeric server and carrier setting.
MAX_SETTING_VALUE = 1_000_000_000
CARRIER_ERROR_CODE_MAX_CHARS = 32

_KEY_CHARS = re.compile(r"[!-~]+")
_NUMBER_PREFIX = re.compile(r"\+[0-9]{1,15}")
_IDENTIFIER_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")
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
_ACCOUNT_KEYS = ("id", "display_name", "api_keys", "numbers", "personas")
_NUMBER_KEYS = ("number", "sms_config", "whatsapp_config")
_PERSONA_KEYS = ("id", "default_version", "versions")
_VERSION_KEYS = ("version", "config")
_CHANNEL_FIELDS = ChannelConfig.DESCRIPTOR.fields
_CHANNEL_KEYS = tuple(descriptor.name for descriptor in _CHANNEL_FIELDS)

Settings = TypeVar("Settings", ServerSettings, CarrierSettings)


def parse_document(data: object) -> ConfigDocument:
    """Build a `ConfigDocument` from loaded YAML; None gives the empty document."""
    return _DocumentParser().document(data)


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


class _DocumentParser:
    """Walks the YAML data, checking every key and type against the schema."""

    def __init__(self) -> None:
        self._values_left = MAX_DOCUMENT_VALUES

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
        id_path = _join(path, "id")
        account_id = validate_account_id(self._string(entry["id"], id_path), id_path)

        display_name = None
        if entry.get("display_name") is not None:
            name_path = _join(path, "display_name")
            display_name = self._string(entry["display_name"], name_path)
            validate_display_name(display_name, name_path)

        api_keys = self._sequence(entry.get("api_keys"), _join(path, "api_keys"))
        numbers = self._sequence(entry.get("numbers"), _join(path, "numbers"))
        personas = self._sequence(entry.get("personas"), _join(path, "personas"))
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
        number_path = _join(path, "number")
        number = normalize_e164(self._string(entry["number"], number_path), number_path)
        sms_path = _join(path, "sms_config")
        whatsapp_path = _join(path, "whatsapp_config")
        return NumberEntry(
            number=number,
            sms_config=self._channel_config(entry.get("sms_config"), sms_path),
            whatsapp_config=self._channel_config(
                entry.get("whatsapp_config"), whatsapp_path
            ),
        )

    def _persona(self, data: object, path: str) -> PersonaEntry:
        entry = self._mapping(data, path, _PERSONA_KEYS, required=("id",))
        id_path = _join(path, "id")
        persona_id = validate_uuid(self._string(entry["id"], id_path), id_path)
        items = self._sequence(entry.get("versions"), _join(path, "versions"))
        versions = tuple(
            self._persona_version(item, item_path) for item_path, item in items
        )

        default_version = ""
        if entry.get("default_version") is not None:
            default_path = _join(path, "default_version")
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
        version_path = _join(path, "version")
        version = validate_version(
            self._string(entry["version"], version_path), version_path
        )
        # A version always has a config; null or absent means one with nothing set.
        config = self._channel_config(entry.get("config"), _join(path, "config"))
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
                field_path = _join(path, descriptor.name)
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
            item_path = _join(path, name)
            hint = hints[name]
            if hint is str:
                values[name] = self._string(value, item_path)
            elif hint is int:
                values[name] = self._integer(value, item_path, 0, MAX_SETTING_VALUE)
            elif hint is float:
                positive = name in _POSITIVE_SETTINGS
                values[name] = self._float(value, item_path, positive=positive)
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

    def _mapping(
        self,
        data: object,
        path: str,
        keys: typing.Sequence[str] | None,
        required: tuple[str, ...] = (),
    ) -> dict[Any, Any]:
        """Return `data` as a dict after checking its keys; `keys` None accepts any."""
        where = path or "the document"
        if not isinstance(data, dict):
            message = f"{where} must be a mapping, not {_describe(data)}"
            raise invalid_argument(path or "config", message)
        self._spend(len(data), where)
        if keys is not None:
            for key in data:
                if key not in keys:
                    key_path = _join(path, _key_text(key))
                    raise invalid_argument(
                        key_path,
                        f"{key_path} is not a known key; accepted keys in {where}: "
                        f"{', '.join(keys)}",
                    )
        for key in required:
            if data.get(key) is None:
                key_path = _join(path, key)
                raise invalid_argument(
                    key_path, f"{key_path} is missing; it is required"
                )
        return data

    def _sequence(self, data: object, path: str) -> list[tuple[str, object]]:
        """Return `(path, item)` pairs of a list; null or absent is the empty list."""
        if data is None:
            return []
        if not isinstance(data, list):
            raise invalid_argument(
                path, f"{path} must be a list, not {_describe(data)}"
            )
        self._spend(len(data), path)
        return [(f"{path}[{index}]", item) for index, item in enumerate(data)]

    def _spend(self, count: int, path: str) -> None:
        self._values_left -= count
        if self._values_left < 0:
            raise invalid_argument(
                path,
                f"the document expands to more than {MAX_DOCUMENT_VALUES:,} list items "
                "and mapping entries (YAML aliases count once per use); "
                "split it into smaller documents",
            )

    def _string(self, data: object, path: str) -> str:
        if isinstance(data, str):
            return data
        hint = "; put the value in quotes" if isinstance(data, int | float) else ""
        raise invalid_argument(
            path, f"{path} must be a string, not {_describe(data)}{hint}"
        )

    def _integer(self, data: object, path: str, minimum: int, maximum: int) -> int:
        if isinstance(data, bool) or not isinstance(data, int):
            raise invalid_argument(
                path, f"{path} must be an integer, not {_describe(data)}"
            )
        if not minimum <= data <= maximum:
            message = f"{path} is {_shorten(data)}; accepted values are {minimum} to {maximum:,}"
            raise invalid_argument(path, message)
        return data

    def _float(self, data: object, path: str, *, positive: bool) -> float:
        if isinstance(data, bool) or not isinstance(data, int | float):
            raise invalid_argument(
                path, f"{path} must be a number, not {_describe(data)}"
            )
        number = float(data)
        too_small = number <= 0 if positive else number < 0
        if not math.isfinite(number) or too_small or number > MAX_SETTING_VALUE:
            lower = "greater than 0" if positive else "at least 0"
            limit = f"{MAX_SETTING_VALUE:,}"
            message = (
                f"{path} is {_shorten(data)}; it must be {lower} and at most {limit}"
            )
            raise invalid_argument(path, message)
        return number

    def _boolean(self, data: object, path: str) -> bool:
        if isinstance(data, bool):
            return data
        raise invalid_argument(
            path, f"{path} must be true or false, not {_describe(data)}"
        )


_TYPE_NAMES = {
    bool: "boolean",
    int: "integer",
    float: "number",
    str: "string",
    list: "list",
    dict: "mapping",
}


def _describe(data: object) -> str:
    """Describe a YAML value for an error message, such as `the integer 42`."""
    if data is None:
        return "null"
    name = _TYPE_NAMES.get(type(data), type(data).__name__)
    if isinstance(data, list | dict):
        return f"a {name}"
    value_text = quote_value(data) if isinstance(data, str) else _shorten(data)
    return f"the {name} {value_text}"


def _shorten(value: object) -> str:
    """Return `str(value)` cut to 40 characters, so a huge value cannot flood a message."""
    text = str(value)
    return text if len(text) <= 40 else text[:40] + "..."


def _key_text(key: object) -> str:
    """Write a mapping key for a path: plain if it is a short identifier, else quoted."""
    if isinstance(key, str) and _IDENTIFIER_KEY.fullmatch(key):
        return key
    return _shorten(repr(key))


def _check_unique_ids(document: ConfigDocument) -> None:
    """Reject an account, key, number, persona or persona version listed twice."""
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
