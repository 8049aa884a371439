"""Tests for request-field validation in server.validation."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import grpc
import pytest
from google.protobuf import struct_pb2

from server.errors import ParleyError
from server.validation import (
    METADATA_MAX_BYTES,
    REQUEST_DATA_MAX_BYTES,
    STRUCT_MAX_DEPTH,
    json_to_struct,
    metadata_matches,
    normalize_e164,
    quote_value,
    struct_to_json,
    validate_idempotency_key,
    validate_struct,
    validate_text,
    validate_uuid,
)


def expect_invalid(call: Callable[[], object], reason: str, field: str) -> ParleyError:
    """Run `call` and return the INVALID_ARGUMENT error it raised for `field`."""
    with pytest.raises(ParleyError) as caught:
        call()
    error = caught.value
    assert error.code == grpc.StatusCode.INVALID_ARGUMENT
    assert error.reason == reason
    assert field in error.message
    assert len(error.violations) == 1
    assert error.violations[0].field == field
    return error


def make_struct(data: dict[str, Any]) -> struct_pb2.Struct:
    value = struct_pb2.Struct()
    value.update(data)
    return value


def nested_struct(depth: int) -> struct_pb2.Struct:
    """Build a Struct whose depth, counting the top level as 1, is `depth`."""
    data: dict[str, Any] = {"leaf": 1}
    for _ in range(depth - 1):
        data = {"child": data}
    return make_struct(data)


def check_struct(value: struct_pb2.Struct) -> None:
    validate_struct(
        value, "metadata", max_bytes=METADATA_MAX_BYTES, max_depth=STRUCT_MAX_DEPTH
    )


# Phone numbers.

GOOD_PHONES = [
    ("+14155550100", "+14155550100"),
    ("+1 (415) 555-0100", "+14155550100"),
    ("+1 415 555 0100", "+14155550100"),
    ("+1-415-555-0100", "+14155550100"),
    ("+44 20 7946 0018", "+442079460018"),
    ("+49 151 23456789", "+4915123456789"),
    ("+33 1 23 45 67 89", "+33123456789"),
]

BAD_PHONES = [
    ("14155550100", "no plus sign"),
    ("+1415555", "too short"),
    ("+19999999999", "possible length but not valid"),
    ("+1 800 FLOWERS", "letters"),
    ("+14155550100 ext. 5", "extension"),
    ("+1415555010\uff10", "full-width digit"),
    (" +14155550100", "leading space"),
    ("++14155550100", "double plus"),
    ("+", "plus only"),
    ("+ ( ) -", "formatting only"),
    ("+999 1234567", "unknown country code"),
    ("+1" + "5" * 300, "far too long"),
]


@pytest.mark.parametrize(("raw", "expected"), GOOD_PHONES)
def test_normalize_e164_accepts(raw: str, expected: str) -> None:
    assert normalize_e164(raw, "user_number") == expected


@pytest.mark.parametrize(
    "raw", [case[0] for case in BAD_PHONES], ids=[case[1] for case in BAD_PHONES]
)
def test_normalize_e164_rejects(raw: str) -> None:
    error = expect_invalid(
        lambda: normalize_e164(raw, "user_number"),
        "INVALID_PHONE_NUMBER",
        "user_number",
    )
    assert "E.164" in error.message


def test_normalize_e164_empty_is_missing() -> None:
    expect_invalid(
        lambda: normalize_e164("", "agent_number"), "MISSING_FIELD", "agent_number"
    )


def test_normalize_e164_message_quotes_value() -> None:
    error = expect_invalid(
        lambda: normalize_e164("+19999999999", "user_number"),
        "INVALID_PHONE_NUMBER",
        "user_number",
    )
    assert '"+19999999999"' in error.message


# UUIDs.

GOOD_UUIDS = [
    ("7b0e8c1e-3f5a-4a53-9d6e-2f4f1d9a0c11", "7b0e8c1e-3f5a-4a53-9d6e-2f4f1d9a0c11"),
    ("7B0E8C1E-3F5A-4A53-9D6E-2F4F1D9A0C11", "7b0e8c1e-3f5a-4a53-9d6e-2f4f1d9a0c11"),
    ("00000000-0000-0000-0000-000000000000", "00000000-0000-0000-0000-000000000000"),
]

BAD_UUIDS = [
    "not-a-uuid",
    "7b0e8c1e3f5a4a539d6e2f4f1d9a0c11",
    "{7b0e8c1e-3f5a-4a53-9d6e-2f4f1d9a0c11}",
    "urn:uuid:7b0e8c1e-3f5a-4a53-9d6e-2f4f1d9a0c11",
    "7b0e8c1e-3f5a-4a53-9d6e-2f4f1d9a0c1",
    "7b0e8c1e-3f5a-4a53-9d6e-2f4f1d9a0c111",
    "7b0e8c1e-3f5a-4a53-9d6e-2f4f1d9a0c1g",
    "7b0e8c1e-3f5a-4a53-9d6e-2f4f1d9a0c11\n",
    " 7b0e8c1e-3f5a-4a53-9d6e-2f4f1d9a0c11",
]


@pytest.mark.parametrize(("raw", "expected"), GOOD_UUIDS)
def test_validate_uuid_accepts(raw: str, expected: str) -> None:
    assert validate_uuid(raw, "persona_id") == expected


@pytest.mark.parametrize("raw", BAD_UUIDS)
def test_validate_uuid_rejects(raw: str) -> None:
    expect_invalid(
        lambda: validate_uuid(raw, "persona_id"), "INVALID_UUID", "persona_id"
    )


def test_validate_uuid_empty_is_missing() -> None:
    expect_invalid(
        lambda: validate_uuid("", "persona_id"), "MISSING_FIELD", "persona_id"
    )


# Texts.


def test_validate_text_accepts_limit() -> None:
    text = "x" * 1600
    assert validate_text(text, "agent_message", 1600) == text


def test_validate_text_counts_code_points() -> None:
    # 1,600 emoji are 3,200 UTF-16 code units but 1,600 code points.
    text = "\U0001f600" * 1600
    assert validate_text(text, "agent_message", 1600) == text


def test_validate_text_allows_tab_and_newlines() -> None:
    text = "line one\r\nline\ttwo\n"
    assert validate_text(text, "agent_message", 1600) == text


def test_validate_text_empty_optional() -> None:
    assert validate_text("", "agent_message", 1600) == ""


def test_validate_text_empty_required() -> None:
    expect_invalid(
        lambda: validate_text("", "message", 1600, required=True),
        "MISSING_FIELD",
        "message",
    )


def test_validate_text_too_long() -> None:
    error = expect_invalid(
        lambda: validate_text("x" * 1601, "agent_message", 1600),
        "TEXT_TOO_LONG",
        "agent_message",
    )
    assert "1,601" in error.message
    assert "1,600" in error.message


def test_validate_text_custom_too_long_reason() -> None:
    expect_invalid(
        lambda: validate_text(
            "x" * 11, "timeout_message", 10, reason_too_long="MESSAGE_TOO_LONG"
        ),
        "MESSAGE_TOO_LONG",
        "timeout_message",
    )


@pytest.mark.parametrize(
    "char", ["\x00", "\x01", "\x07", "\x0b", "\x0c", "\x1b", "\x1f"]
)
def test_validate_text_rejects_control(char: str) -> None:
    error = expect_invalid(
        lambda: validate_text(f"hi{char}there", "agent_message", 1600),
        "INVALID_TEXT",
        "agent_message",
    )
    assert f"U+{ord(char):04X}" in error.message
    assert "index 2" in error.message


def test_quote_value_truncates() -> None:
    quoted = quote_value("a" * 100)
    assert quoted == '"' + "a" * 40 + '..."'


def test_quote_value_escapes_controls() -> None:
    assert quote_value("a\x00b") == '"a\\u0000b"'


# Idempotency keys.

GOOD_KEYS = ["k", "order-42/retry 1", "~" * 255, "A!#$%&'()*+,-./:;<=>?@[]^_`{|}"]

BAD_KEYS = [
    ("", "empty"),
    ("k" * 256, "too long"),
    (" key", "leading space"),
    ("key ", "trailing space"),
    ("key\tvalue", "tab"),
    ("key\n", "newline"),
    ("clé", "non-ascii"),
    ("key\x7f", "delete char"),
]


@pytest.mark.parametrize("key", GOOD_KEYS)
def test_validate_idempotency_key_accepts(key: str) -> None:
    assert validate_idempotency_key(key, "idempotency_key") == key


@pytest.mark.parametrize(
    "key", [case[0] for case in BAD_KEYS], ids=[case[1] for case in BAD_KEYS]
)
def test_validate_idempotency_key_rejects(key: str) -> None:
    expect_invalid(
        lambda: validate_idempotency_key(key, "idempotency_key"),
        "INVALID_IDEMPOTENCY_KEY",
        "idempotency_key",
    )


# Structs.


def test_validate_struct_accepts_plain() -> None:
    value = make_struct(
        {"crm_id": "c-1", "n": 7, "ok": True, "none": None, "list": [1, "a"]}
    )
    check_struct(value)


def test_validate_struct_accepts_empty() -> None:
    check_struct(struct_pb2.Struct())


def test_validate_struct_accepts_depth_limit() -> None:
    check_struct(nested_struct(STRUCT_MAX_DEPTH))


def test_validate_struct_rejects_depth_over_limit() -> None:
    path = "metadata" + ".child" * STRUCT_MAX_DEPTH
    error = expect_invalid(
        lambda: check_struct(nested_struct(STRUCT_MAX_DEPTH + 1)),
        "STRUCT_TOO_DEEP",
        path,
    )
    assert "11" in error.message


def test_validate_struct_lists_count_as_depth() -> None:
    # Struct (1) > list (2) > list (3) exceeds a limit of 2.
    value = make_struct({"a": [[1]]})
    expect_invalid(
        lambda: validate_struct(value, "request_data", max_bytes=1024, max_depth=2),
        "STRUCT_TOO_DEEP",
        "request_data.a[0]",
    )


def test_validate_struct_list_within_depth() -> None:
    value = make_struct({"a": [1]})
    validate_struct(value, "request_data", max_bytes=1024, max_depth=2)


@pytest.mark.parametrize("number", [math.nan, math.inf, -math.inf])
def test_validate_struct_rejects_non_finite(number: float) -> None:
    value = make_struct({"total": number})
    expect_invalid(lambda: check_struct(value), "INVALID_NUMBER", "metadata.total")


def test_validate_struct_rejects_beyond_2_53() -> None:
    value = make_struct({"order": {"id": 2**53 + 2}})
    error = expect_invalid(
        lambda: check_struct(value), "NUMBER_OUT_OF_RANGE", "metadata.order.id"
    )
    assert "string" in error.message
    assert "9007199254740994" in error.message


def test_validate_struct_rejects_negative_beyond_2_53() -> None:
    value = make_struct({"n": -(2**53) - 2})
    expect_invalid(lambda: check_struct(value), "NUMBER_OUT_OF_RANGE", "metadata.n")


def test_validate_struct_accepts_2_53() -> None:
    check_struct(make_struct({"n": 2**53, "m": -(2**53)}))


def test_validate_struct_names_list_path() -> None:
    value = make_struct({"order": {"items": [1, 2, math.nan]}})
    expect_invalid(
        lambda: check_struct(value), "INVALID_NUMBER", "metadata.order.items[2]"
    )


def test_validate_struct_quotes_odd_keys() -> None:
    value = make_struct({"a.b": math.inf})
    expect_invalid(lambda: check_struct(value), "INVALID_NUMBER", 'metadata["a.b"]')


def test_validate_struct_rejects_oversize() -> None:
    value = make_struct({"blob": "x" * METADATA_MAX_BYTES})
    error = expect_invalid(lambda: check_struct(value), "STRUCT_TOO_LARGE", "metadata")
    assert "16,384" in error.message


def test_validate_struct_request_data_limit() -> None:
    value = make_struct({"blob": "x" * (REQUEST_DATA_MAX_BYTES - 100)})
    validate_struct(
        value,
        "request_data",
        max_bytes=REQUEST_DATA_MAX_BYTES,
        max_depth=STRUCT_MAX_DEPTH,
    )


def test_validate_struct_size_boundary() -> None:
    value = make_struct({"blob": "x" * 100})
    size = value.ByteSize()
    validate_struct(value, "metadata", max_bytes=size, max_depth=STRUCT_MAX_DEPTH)
    expect_invalid(
        lambda: validate_struct(value, "metadata", max_bytes=size - 1, max_depth=10),
        "STRUCT_TOO_LARGE",
        "metadata",
    )


def test_validate_struct_rejects_empty_key() -> None:
    value = make_struct({"outer": {"": 1}})
    expect_invalid(lambda: check_struct(value), "INVALID_STRUCT_KEY", "metadata.outer")


def test_validate_struct_rejects_long_key() -> None:
    value = make_struct({"k" * 257: 1})
    error = expect_invalid(
        lambda: check_struct(value), "INVALID_STRUCT_KEY", "metadata"
    )
    assert "257" in error.message


def test_validate_struct_accepts_256_char_key() -> None:
    check_struct(make_struct({"k" * 256: 1}))


# JSON conversion.


def test_struct_to_json_is_canonical() -> None:
    value = make_struct({"b": 7, "a": [1.5, True, None, "s"], "c": {"z": 1, "y": 2}})
    assert struct_to_json(value) == '{"a":[1.5,true,null,"s"],"b":7,"c":{"y":2,"z":1}}'


def test_struct_to_json_keeps_non_ascii() -> None:
    assert struct_to_json(make_struct({"name": "Zoë"})) == '{"name":"Zoë"}'


def test_struct_to_json_large_integral_stays_float() -> None:
    # Beyond 2^53 a whole double is not converted, so the text shows it is a float.
    assert struct_to_json(make_struct({"n": 2.0**60})) == '{"n":1.152921504606847e+18}'


def test_struct_to_json_empty() -> None:
    assert struct_to_json(struct_pb2.Struct()) == "{}"


def test_json_round_trip() -> None:
    text = '{"a":[1,2.5,{"b":null}],"c":"x","d":false}'
    assert struct_to_json(json_to_struct(text)) == text


def test_json_to_struct_rejects_array() -> None:
    with pytest.raises(ValueError):
        json_to_struct("[1, 2]")


def test_json_to_struct_rejects_nan() -> None:
    with pytest.raises(ValueError):
        json_to_struct('{"a": NaN}')


def test_json_to_struct_rejects_invalid() -> None:
    with pytest.raises(ValueError):
        json_to_struct("{")


# Metadata matching.

METADATA: dict[str, object] = {
    "crm_id": "c-42",
    "vip": True,
    "closed": False,
    "count": 7,
    "whole_float": 7.0,
    "ratio": 7.5,
    "none": None,
    "nested": {"a": "1"},
    "items": ["1"],
}

MATCHES = [
    ({}, True),
    ({"crm_id": "c-42"}, True),
    ({"crm_id": "c-43"}, False),
    ({"vip": "true"}, True),
    ({"vip": "True"}, False),
    ({"closed": "false"}, True),
    ({"count": "7"}, True),
    ({"count": "7.0"}, False),
    ({"whole_float": "7"}, True),
    ({"ratio": "7.5"}, True),
    ({"none": "null"}, False),
    ({"none": ""}, False),
    ({"nested": '{"a":"1"}'}, False),
    ({"items": '["1"]'}, False),
    ({"missing": ""}, False),
    ({"crm_id": "c-42", "count": "7"}, True),
    ({"crm_id": "c-42", "count": "8"}, False),
]


@pytest.mark.parametrize(("filters", "expected"), MATCHES)
def test_metadata_matches(filters: dict[str, str], expected: bool) -> None:
    assert metadata_matches(METADATA, filters) is expected
