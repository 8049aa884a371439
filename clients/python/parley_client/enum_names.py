"""Short command-line names for proto enum values.

The CLI shows and accepts enum values in lower case without the enum's
prefix: `MESSAGE_STATUS_QUEUED` is `queued`, `CHANNEL_SMS` is `sms`.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:
    from google.protobuf.internal.enum_type_wrapper import _EnumTypeWrapper

_Value = TypeVar("_Value", bound=int)


def _prefix(enum: _EnumTypeWrapper[_Value]) -> str:
    """Derive the value prefix: `MessageStatus` gives `MESSAGE_STATUS_`."""
    words = re.sub(r"(?<!^)(?=[A-Z])", "_", enum.DESCRIPTOR.name)
    return words.upper() + "_"


def enum_label(enum: _EnumTypeWrapper[_Value], number: int) -> str:
    """Return the short name of a value, or the number itself if it is unknown."""
    value = enum.DESCRIPTOR.values_by_number.get(number)
    if value is None:
        return str(number)
    return value.name.removeprefix(_prefix(enum)).lower()


def enum_labels(enum: _EnumTypeWrapper[_Value]) -> list[str]:
    """Return the short names of every value except the zero UNSPECIFIED one."""
    return [
        enum_label(enum, value.number)
        for value in enum.DESCRIPTOR.values
        if value.number
    ]


def enum_value(enum: _EnumTypeWrapper[_Value], label: str) -> _Value:
    """Return the value with the given short name; raise ValueError if none has it."""
    try:
        return enum.Value(_prefix(enum) + label.upper())
    except ValueError:
        expected = ", ".join(enum_labels(enum))
        raise ValueError(
            f"invalid value {label!r}: expected one of {expected}"
        ) from None
