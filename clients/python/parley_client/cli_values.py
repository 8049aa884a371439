"""Argument value converters for the `parley` command line.

Each converter raises `argparse.ArgumentTypeError`, so a bad value makes
argparse print the usage and the problem to stderr and exit with code 2.
"""

from __future__ import annotations

import argparse
import json
import math
from typing import Any

from google.protobuf import struct_pb2

_UINT32_MAX = 2**32 - 1
_UINT64_MAX = 2**64 - 1
# A Struct stores every number as a double, which represents integers
# exactly only up to 2**53 in magnitude.
_STRUCT_INT_LIMIT = 2**53


def _integer(text: str, maximum: int) -> int:
    try:
        number = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid integer {text!r}") from None
    if not 0 <= number <= maximum:
        raise argparse.ArgumentTypeError(f"{number} is out of range 0 to {maximum}")
    return number


def uint32(text: str) -> int:
    """Parse an integer from 0 to 2**32 - 1."""
    return _integer(text, _UINT32_MAX)


def uint64(text: str) -> int:
    """Parse an integer from 0 to 2**64 - 1."""
    return _integer(text, _UINT64_MAX)


def _reject_constant(name: str) -> Any:
    raise argparse.ArgumentTypeError(f"{name} is not allowed: use a finite number")


def _check_struct_value(value: Any, path: str) -> None:
    """Raise unless every number in the value survives conversion to a double."""
    if isinstance(value, dict):
        for key, item in value.items():
            _check_struct_value(item, f"{path}.{key}")
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _check_struct_value(item, f"{path}[{index}]")
    elif isinstance(value, int) and not isinstance(value, bool):
        if abs(value) > _STRUCT_INT_LIMIT:
            raise argparse.ArgumentTypeError(
                f"{path} = {value} exceeds 2**53 and would lose precision: "
                "send it as a string"
            )
    elif isinstance(value, float) and not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{path} = {value} is not a finite number")


def _json_type_name(value: Any) -> str:
    if isinstance(value, list):
        return "array"
    if isinstance(value, str):
        return "string"
    if isinstance(value, bool):
        return "boolean"
    if value is None:
        return "null"
    return "number"


def json_object(text: str) -> struct_pb2.Struct:
    """Parse a JSON object into a Struct.

    Rejects invalid JSON, a top-level value that is not an object, NaN and
    infinities, and integers beyond 2**53 that a Struct would round.
    """
    try:
        value = json.loads(text, parse_constant=_reject_constant)
    except json.JSONDecodeError as exc:
        raise argparse.ArgumentTypeError(f"invalid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(
            f'expected a JSON object such as \'{{"key": "value"}}\', '
            f"got a JSON {_json_type_name(value)}"
        )
    _check_struct_value(value, "$")
    struct = struct_pb2.Struct()
    struct.update(value)
    return struct


def id_list(text: str) -> list[str]:
    """Split a comma-separated list; an empty string gives an empty list."""
    return [item.strip() for item in text.split(",") if item.strip()]


def key_value(text: str) -> tuple[str, str]:
    """Parse `key=value`; the value may be empty or contain `=`."""
    key, separator, value = text.partition("=")
    if not separator or not key:
        raise argparse.ArgumentTypeError(f"expected key=value, got {text!r}")
    return key, value
