"""Typed access to loaded YAML values for the config parsers.

`ValueReader` checks one value at a time against the type the schema
expects and raises INVALID_ARGUMENT whose field is the value's path, such as
`accounts[0].numbers[1].sms_config.timeout_seconds`. It also counts list
items and mapping entries, so a document that YAML aliases expand to a huge
size is rejected.
"""

from __future__ import annotations

import math
import re
import typing
from typing import Any

from server.errors import invalid_argument
from server.validation import quote_value

# YAML aliases let a small document repeat large lists, so parsing stops
# after this many list items and mapping entries, counting every use.
MAX_DOCUMENT_VALUES = 500_000

_IDENTIFIER_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")


def join_path(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


class ValueReader:
    """Type checks for YAML values, sharing one budget of list items and entries."""

    def __init__(self) -> None:
        self._values_left = MAX_DOCUMENT_VALUES

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
                    key_path = join_path(path, _key_text(key))
                    raise invalid_argument(
                        key_path,
                        f"{key_path} is not a known key; accepted keys in {where}: "
                        f"{', '.join(keys)}",
                    )
        for key in required:
            if data.get(key) is None:
                key_path = join_path(path, key)
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

    def _float(
        self, data: object, path: str, *, positive: bool, maximum: float
    ) -> float:
        if isinstance(data, bool) or not isinstance(data, int | float):
            raise invalid_argument(
                path, f"{path} must be a number, not {_describe(data)}"
            )
        # An integer too large for a float is simply over the maximum.
        number = float(data) if abs(data) <= maximum else math.inf
        too_small = number <= 0 if positive else number < 0
        if not math.isfinite(number) or too_small or number > maximum:
            lower = "greater than 0" if positive else "at least 0"
            limit = f"{maximum:,}"
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
