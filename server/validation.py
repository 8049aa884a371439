"""Validation of request fields, raising `ParleyError` with INVALID_ARGUMENT.

Every error message names the field, quotes the value received (cut to 40
characters) and states what would be accepted. The BadRequest violation carries
the same field name, or the path inside a Struct (`metadata.order.items[2]`).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping

import phonenumbers
from google.protobuf import json_format, struct_pb2

from server.errors import ParleyError, invalid_argument

METADATA_MAX_BYTES = 16 * 1024
REQUEST_DATA_MAX_BYTES = 64 * 1024
STRUCT_MAX_DEPTH = 10
STRUCT_KEY_MAX_CHARS = 256
IDEMPOTENCY_KEY_MAX_CHARS = 255

# Largest magnitude up to which every integer is exactly representable as an
# IEEE 754 double, which is what a Struct number is.
MAX_EXACT_INTEGER = 2**53

_PREVIEW_CHARS = 40
_PHONE_CHARS = re.compile(r"\+[0-9 ()\-]+")
_HEX = "[0-9a-fA-F]"
_UUID = re.compile(f"{_HEX}{{8}}-{_HEX}{{4}}-{_HEX}{{4}}-{_HEX}{{4}}-{_HEX}{{12}}")
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_TEXT_CONTROLS_ALLOWED = frozenset("\t\n\r")


def quote_value(value: str) -> str:
    """Quote `value` as JSON for an error message, cut to 40 characters."""
    cut = value if len(value) <= _PREVIEW_CHARS else value[:_PREVIEW_CHARS] + "..."
    quoted = json.dumps(cut, ensure_ascii=False)
    # A gRPC status message must be UTF-8, which cannot encode lone surrogates,
    # so they are escaped.
    return quoted.encode("utf-8", "backslashreplace").decode("utf-8")


def normalize_e164(value: str, field: str) -> str:
    """Return `value` as E.164 (`+14155550100`) if it is a valid phone number.

    The text must start with '+' and may contain spaces, dashes and
    parentheses between the digits, but no letters or extensions. The number
    must be valid for its country in libphonenumber's metadata, which is
    stricter than merely having a possible length.
    """
    if not value:
        raise invalid_argument(
            field,
            f"{field} is missing; send a phone number in E.164 form "
            "such as +14155550100",
            "MISSING_FIELD",
        )
    if not _PHONE_CHARS.fullmatch(value):
        raise _invalid_phone(
            field, value, "it must start with '+' and contain only digits"
        )
    try:
        number = phonenumbers.parse(value, None)
    except phonenumbers.NumberParseException:
        raise _invalid_phone(
            field, value, "it cannot be parsed as a phone number"
        ) from None
    if not phonenumbers.is_valid_number(number):
        raise _invalid_phone(
            field, value, "it is not a valid number for its country code"
        )
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def _invalid_phone(field: str, value: str, problem: str) -> ParleyError:
    message = (
        f"{field} {quote_value(value)} is not a valid phone number because {problem}; "
        "send it in E.164 form such as +14155550100 "
        "(spaces, dashes and parentheses are allowed)"
    )
    return invalid_argument(field, message, "INVALID_PHONE_NUMBER")


def validate_uuid(value: str, field: str) -> str:
    """Return `value` as a lower-case UUID string.

    Only the hyphenated 8-4-4-4-12 form is accepted, in either letter case.
    """
    if not value:
        raise invalid_argument(
            field,
            f"{field} is missing; send a UUID "
            "such as 7b0e8c1e-3f5a-4a53-9d6e-2f4f1d9a0c11",
            "MISSING_FIELD",
        )
    if not _UUID.fullmatch(value):
        message = (
            f"{field} {quote_value(value)} is not a valid UUID; send 32 hex digits "
            "in the hyphenated form 7b0e8c1e-3f5a-4a53-9d6e-2f4f1d9a0c11"
        )
        raise invalid_argument(field, message, "INVALID_UUID")
    return value.lower()


def validate_text(
    value: str,
    field: str,
    max_chars: int,
    *,
    required: bool = False,
    reason_too_long: str = "TEXT_TOO_LONG",
) -> str:
    """Return `value` unchanged if it is at most `max_chars` code points of valid text.

    C0 control characters other than tab, line feed and carriage return are
    rejected with reason INVALID_TEXT. An empty value is accepted unless
    `required` is set.
    """
    if not value:
        if required:
            raise invalid_argument(
                field, f"{field} is missing; send non-empty text", "MISSING_FIELD"
            )
        return value
    if len(value) > max_chars:
        message = (
            f"{field} {quote_value(value)} is {len(value):,} characters long; "
            f"the maximum is {max_chars:,} characters"
        )
        raise invalid_argument(field, message, reason_too_long)
    _reject_control_characters(value, field)
    return value


def _reject_control_characters(value: str, field: str) -> None:
    for index, char in enumerate(value):
        if char >= " " or char in _TEXT_CONTROLS_ALLOWED:
            continue
        message = (
            f"{field} {quote_value(value)} contains control character "
            f"U+{ord(char):04X} at index {index}; "
            "only tab, line feed and carriage return are accepted"
        )
        raise invalid_argument(field, message, "INVALID_TEXT")


def validate_idempotency_key(value: str, field: str) -> str:
    """Return `value` if it is 1 to 255 printable ASCII characters.

    Leading and trailing spaces are rejected, but spaces inside the key are allowed.
    """
    accepted = (
        f"send 1 to {IDEMPOTENCY_KEY_MAX_CHARS} printable ASCII characters "
        "without leading or trailing spaces"
    )
    if not value:
        message = f"{field} is empty; {accepted}, or omit it"
        raise invalid_argument(field, message, "INVALID_IDEMPOTENCY_KEY")
    if len(value) > IDEMPOTENCY_KEY_MAX_CHARS:
        length = len(value)
        message = (
            f"{field} {quote_value(value)} is {length:,} characters long; {accepted}"
        )
        raise invalid_argument(field, message, "INVALID_IDEMPOTENCY_KEY")
    printable = all(" " <= char <= "~" for char in value)
    if not printable or value != value.strip(" "):
        message = (
            f"{field} {quote_value(value)} is not a valid idempotency key; {accepted}"
        )
        raise invalid_argument(field, message, "INVALID_IDEMPOTENCY_KEY")
    return value


def validate_struct(
    value: struct_pb2.Struct, field: str, *, max_bytes: int, max_depth: int
) -> None:
    """Raise INVALID_ARGUMENT unless `value` fits `max_bytes` and `max_depth`.

    `max_bytes` limits the protobuf-encoded size (`ByteSize()`).
    The top-level Struct is depth 1 and each nested Struct or list adds one.
    NaN, infinities, integers beyond ±2^53 and keys that are empty or longer
    than 256 characters are rejected. Errors name the path of the value.
    """
    size = value.ByteSize()
    if size > max_bytes:
        message = (
            f"{field} is {size:,} bytes when encoded; "
            f"the maximum is {max_bytes:,} bytes, so send fewer or shorter values"
        )
        raise invalid_argument(field, message, "STRUCT_TOO_LARGE")
    _check_struct(value, field, 1, max_depth)


def _check_struct(
    value: struct_pb2.Struct, path: str, depth: int, max_depth: int
) -> None:
    _check_depth(path, depth, max_depth)
    for key, item in value.fields.items():
        _check_key(key, path)
        _check_value(item, _key_path(path, key), depth, max_depth)


def _check_list(
    value: struct_pb2.ListValue, path: str, depth: int, max_depth: int
) -> None:
    _check_depth(path, depth, max_depth)
    for index, item in enumerate(value.values):
        _check_value(item, f"{path}[{index}]", depth, max_depth)


def _check_value(
    value: struct_pb2.Value, path: str, depth: int, max_depth: int
) -> None:
    """Check one Value that sits inside a container at `depth`."""
    kind = value.WhichOneof("kind")
    if kind == "struct_value":
        _check_struct(value.struct_value, path, depth + 1, max_depth)
    elif kind == "list_value":
        _check_list(value.list_value, path, depth + 1, max_depth)
    elif kind == "number_value":
        _check_number(value.number_value, path)


def _check_depth(path: str, depth: int, max_depth: int) -> None:
    if depth > max_depth:
        message = (
            f"{path} is nested {depth} levels deep; the maximum is {max_depth} levels, "
            "counting the top-level object as 1 and each nested object or list "
            "as 1 more"
        )
        raise invalid_argument(path, message, "STRUCT_TOO_DEEP")


def _check_key(key: str, parent_path: str) -> None:
    if 0 < len(key) <= STRUCT_KEY_MAX_CHARS:
        return
    message = (
        f"{parent_path} has the key {quote_value(key)} of {len(key):,} characters; "
        f"keys must be 1 to {STRUCT_KEY_MAX_CHARS} characters long"
    )
    raise invalid_argument(parent_path, message, "INVALID_STRUCT_KEY")


def _check_number(number: float, path: str) -> None:
    if math.isnan(number) or math.isinf(number):
        message = (
            f"{path} is {_special_float_name(number)}; send a finite number instead"
        )
        raise invalid_argument(path, message, "INVALID_NUMBER")
    # Every double beyond 2^53 is a whole number, so no integer test is needed.
    if abs(number) > MAX_EXACT_INTEGER:
        message = (
            f"{path} is {number:.0f}, beyond ±2^53 ({MAX_EXACT_INTEGER}), "
            "so it cannot be carried exactly as a number; send it as a string instead"
        )
        raise invalid_argument(path, message, "NUMBER_OUT_OF_RANGE")


def _special_float_name(number: float) -> str:
    if math.isnan(number):
        return "NaN"
    return "Infinity" if number > 0 else "-Infinity"


def _key_path(parent: str, key: str) -> str:
    """Append `key` to a path: `.key` for identifiers, otherwise `["key"]`."""
    if _IDENTIFIER.fullmatch(key):
        return f"{parent}.{key}"
    return f"{parent}[{json.dumps(key, ensure_ascii=False)}]"


def struct_to_json(value: struct_pb2.Struct) -> str:
    """Encode `value` as compact JSON with sorted keys.

    Numbers within ±2^53 that are whole print as `7`, not `7.0`. Raises
    ValueError for NaN or infinity, which `validate_struct` rejects first.
    """
    data = _integral_floats_to_int(json_format.MessageToDict(value))
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def json_to_struct(text: str) -> struct_pb2.Struct:
    """Decode a JSON object into a Struct.

    Raises ValueError for invalid JSON, a value that is not an object, or NaN/Infinity.
    """
    data = json.loads(text, parse_constant=_reject_json_constant)
    if not isinstance(data, dict):
        raise ValueError(f"expected a JSON object, got {type(data).__name__}")
    result = struct_pb2.Struct()
    try:
        json_format.ParseDict(data, result)
    except json_format.ParseError as error:
        raise ValueError(f"JSON cannot be stored in a Struct: {error}") from error
    return result


def _reject_json_constant(name: str) -> object:
    raise ValueError(f"JSON constant {name} is not a finite number")


def _integral_floats_to_int(data: object) -> object:
    if isinstance(data, dict):
        return {key: _integral_floats_to_int(item) for key, item in data.items()}
    if isinstance(data, list):
        return [_integral_floats_to_int(item) for item in data]
    if isinstance(data, float) and data.is_integer() and abs(data) <= MAX_EXACT_INTEGER:
        return int(data)
    return data


def metadata_matches(metadata: dict[str, object], filters: Mapping[str, str]) -> bool:
    """Return whether every filter key is in `metadata` with a matching scalar value.

    A string matches when equal to the filter value. A bool or number matches
    when its JSON text equals it (True is "true", 7 and 7.0 are "7"). Null,
    objects and lists never match.
    """
    for key, expected in filters.items():
        if key not in metadata:
            return False
        if _scalar_text(metadata[key]) != expected:
            return False
    return True


def _scalar_text(value: object) -> str | None:
    """Return the JSON text of a string, bool or number; None for anything else."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return json.dumps(_integral_floats_to_int(value))
    return None
