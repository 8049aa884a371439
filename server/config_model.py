"""Config entries (accounts, keys, numbers, personas, definitions) and their field rules.

The YAML config parser and `AdminService` share these rules, so an entry
that one accepts the other accepts too. Every check raises INVALID_ARGUMENT
naming the field.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Literal

from parley.v1 import definitions_pb2, types_pb2

from server.errors import invalid_argument
from server.settings import CarrierSettings, ServerSettings
from server.validation import quote_value, validate_text

ChannelConfig = types_pb2.ChannelConfig

DISPLAY_NAME_MAX_CHARS = 200
IDENTIFIER_MAX_CHARS = 256
MESSAGE_MAX_CHARS = 1600
ID_LIST_MAX_ITEMS = 100
DEFINITION_ID_MAX_CHARS = 128

_ACCOUNT_ID = re.compile(r"[a-z0-9_-]{1,64}")
_VERSION = re.compile(r"[A-Za-z0-9._-]{1,64}")
_DEFINITION_ID = re.compile(r"[A-Za-z0-9._-]{1,128}")
_ID_FIELDS: tuple[Literal["pathway_id", "pathway_version", "start_node_id"], ...] = (
    "pathway_id",
    "pathway_version",
    "start_node_id",
)
_MESSAGE_FIELDS: tuple[Literal["timeout_message", "warning_message"], ...] = (
    "timeout_message",
    "warning_message",
)
_LIST_FIELDS: tuple[Literal["outcome_ids", "citation_schema_ids"], ...] = (
    "outcome_ids",
    "citation_schema_ids",
)


@dataclass(frozen=True)
class NumberEntry:
    """An agent number; a None config means the channel is not enabled."""

    number: str
    sms_config: ChannelConfig | None = None
    whatsapp_config: ChannelConfig | None = None


@dataclass(frozen=True)
class PersonaVersionEntry:
    version: str
    config: ChannelConfig


@dataclass(frozen=True)
class PersonaEntry:
    """A persona; an empty `default_version` keeps the stored default.

    A new persona without `default_version` gets its first listed version.
    """

    id: str
    default_version: str = ""
    versions: tuple[PersonaVersionEntry, ...] = ()


@dataclass(frozen=True)
class PathwayVersionEntry:
    version: str
    definition: definitions_pb2.PathwayDefinition


@dataclass(frozen=True)
class PathwayEntry:
    """A pathway and the versions to publish, in the order listed."""

    id: str
    versions: tuple[PathwayVersionEntry, ...] = ()


@dataclass(frozen=True)
class AccountEntry:
    """An account; a None `display_name` keeps the stored name.

    Citation schemas and outcomes have their `id` set and `account_id` empty.
    """

    id: str
    display_name: str | None = None
    api_keys: tuple[str, ...] = ()
    numbers: tuple[NumberEntry, ...] = ()
    personas: tuple[PersonaEntry, ...] = ()
    pathways: tuple[PathwayEntry, ...] = ()
    citation_schemas: tuple[definitions_pb2.CitationSchema, ...] = ()
    outcomes: tuple[definitions_pb2.Outcome, ...] = ()


@dataclass(frozen=True)
class ConfigDocument:
    """A parsed config document; `ConfigDocument()` is the empty one.

    Keys are plaintext here and stored hashed when the document is applied.
    """

    server: ServerSettings = field(default_factory=ServerSettings)
    carrier: CarrierSettings = field(default_factory=CarrierSettings)
    operator_keys: tuple[str, ...] = ()
    accounts: tuple[AccountEntry, ...] = ()


def validate_account_id(value: str, field_name: str) -> str:
    """Return `value` if it is 1 to 64 characters of a-z, 0-9, "-" and "_"."""
    if _ACCOUNT_ID.fullmatch(value):
        return value
    if not value:
        raise invalid_argument(
            field_name,
            f"{field_name} is missing; send an account id such as acme",
            "MISSING_FIELD",
        )
    raise invalid_argument(
        field_name,
        f"{field_name} {quote_value(value)} is not a valid account id; use 1 to 64 "
        'lower-case letters, digits, "-" and "_"',
        "INVALID_ACCOUNT_ID",
    )


def validate_version(value: str, field_name: str) -> str:
    """Return `value` if it is 1 to 64 of: letters, digits, ".", "-" and "_"."""
    if _VERSION.fullmatch(value):
        return value
    if not value:
        raise invalid_argument(
            field_name,
            f"{field_name} is missing; send a persona version such as 1 or 2024-05",
            "MISSING_FIELD",
        )
    raise invalid_argument(
        field_name,
        f"{field_name} {quote_value(value)} is not a valid persona version;"
        ' use 1 to 64 letters, digits, ".", "-" and "_"',
        "INVALID_PERSONA_VERSION",
    )


def validate_definition_id(value: str, field_name: str, kind: str) -> str:
    """Return `value` if it is 1 to 128 of: letters, digits, ".", "-" and "_".

    `kind` names the value in messages, such as "pathway id" or "outcome id",
    and gives the reason for an invalid value: "pathway id" is rejected with
    INVALID_PATHWAY_ID. An empty value is rejected with MISSING_FIELD.
    """
    if _DEFINITION_ID.fullmatch(value):
        return value
    if not value:
        raise invalid_argument(
            field_name,
            f"{field_name} is missing; send a {kind} such as intake-2024.05",
            "MISSING_FIELD",
        )
    reason = "INVALID_" + kind.upper().replace(" ", "_")
    raise invalid_argument(
        field_name,
        f"{field_name} {quote_value(value)} is not a valid {kind}; use 1 to"
        f' {DEFINITION_ID_MAX_CHARS} letters, digits, ".", "-" and "_"',
        reason,
    )


def validate_display_name(value: str, field_name: str) -> str:
    """Return `value` if it is valid text of at most 200 characters (empty allowed)."""
    return validate_text(value, field_name, DISPLAY_NAME_MAX_CHARS)


def validate_channel_config(config: ChannelConfig, field_name: str) -> None:
    """Raise INVALID_ARGUMENT unless every set field of `config` is within its limits.

    Ids are at most 256 characters and messages at most 1,600. Each id list
    contains at most 100 non-empty ids. `warning_seconds` must be below a
    positive `timeout_seconds` (reason INVALID_TIMEOUT_CONFIG).
    """
    for id_field in _ID_FIELDS:
        if config.HasField(id_field):
            value = getattr(config, id_field)
            validate_text(value, f"{field_name}.{id_field}", IDENTIFIER_MAX_CHARS)
    for message_field in _MESSAGE_FIELDS:
        if config.HasField(message_field):
            value = getattr(config, message_field)
            validate_text(value, f"{field_name}.{message_field}", MESSAGE_MAX_CHARS)
    for list_field in _LIST_FIELDS:
        if config.HasField(list_field):
            values = list(getattr(config, list_field).values)
            _validate_id_list(values, f"{field_name}.{list_field}")
    _validate_timeouts(config, field_name)


def _validate_id_list(values: list[str], field_name: str) -> None:
    if len(values) > ID_LIST_MAX_ITEMS:
        raise invalid_argument(
            field_name,
            f"{field_name} has {len(values)} ids; the maximum is {ID_LIST_MAX_ITEMS}",
        )
    for index, value in enumerate(values):
        validate_text(
            value, f"{field_name}[{index}]", IDENTIFIER_MAX_CHARS, required=True
        )


def _validate_timeouts(config: ChannelConfig, field_name: str) -> None:
    if not (config.HasField("timeout_seconds") and config.HasField("warning_seconds")):
        return
    timeout, warning = config.timeout_seconds, config.warning_seconds
    if timeout > 0 and warning >= timeout:
        raise invalid_argument(
            f"{field_name}.warning_seconds",
            f"{field_name}.warning_seconds is {warning} but timeout_seconds is"
            f" {timeout}; the warning must come before the timeout, so send a"
            " smaller warning_seconds",
            "INVALID_TIMEOUT_CONFIG",
        )
