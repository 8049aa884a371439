"""SMS segment counting for billing, following the GSM 03.38 alphabet.

A message that fits one segment carries 160 GSM-7 septets or 70 UCS-2 code
units. Longer messages are split into parts of 153 septets or 67 code units,
because each part loses room to the concatenation header. Parts are packed
one character at a time, so an escape pair (GSM-7) or a surrogate pair
(UCS-2) never straddles two parts.
"""

from __future__ import annotations

from dataclasses import dataclass

from parley.v1 import types_pb2

GSM7_SINGLE_SEPTETS = 160
GSM7_PART_SEPTETS = 153
UCS2_SINGLE_UNITS = 70
UCS2_PART_UNITS = 67

# The GSM 03.38 default alphabet (3GPP TS 23.038), one row of 16 code points
# per string. Position 0x1B is the escape to the extension table and is left
# out, so a literal U+001B in the text forces UCS-2.
_GSM7_BASIC_ROWS = (
    "@£$¥èéùìòÇ\nØø\rÅå",
    "Δ_ΦΓΛΩΠΨΣΘΞÆæßÉ",
    " !\"#¤%&'()*+,-./",
    "0123456789:;<=>?",
    "¡ABCDEFGHIJKLMNO",
    "PQRSTUVWXYZÄÖÑÜ§",
    "¿abcdefghijklmno",
    "pqrstuvwxyzäöñüà",
)
GSM7_BASIC = frozenset("".join(_GSM7_BASIC_ROWS))

# Characters of the GSM 03.38 extension table. Each is sent as ESC plus one
# septet, so it takes two septets.
GSM7_EXTENSION = frozenset("\f^{}\\[~]|€")


@dataclass(frozen=True)
class SegmentCount:
    """Billing size of one message text.

    `encoding` is a `types_pb2.Encoding` value. `units` is the total length in
    septets (GSM-7) or UTF-16 code units (UCS-2), without segment headers.
    """

    encoding: types_pb2.Encoding.ValueType
    segments: int
    units: int


def count_segments(text: str) -> SegmentCount:
    """Count the segments `text` is sent in; an empty text is 0 segments of GSM-7."""
    septets = _gsm7_septets(text)
    if septets is not None:
        return SegmentCount(
            encoding=types_pb2.ENCODING_GSM7,
            segments=_pack(septets, GSM7_SINGLE_SEPTETS, GSM7_PART_SEPTETS),
            units=sum(septets),
        )
    code_units = [_utf16_units(char) for char in text]
    return SegmentCount(
        encoding=types_pb2.ENCODING_UCS2,
        segments=_pack(code_units, UCS2_SINGLE_UNITS, UCS2_PART_UNITS),
        units=sum(code_units),
    )


def _gsm7_septets(text: str) -> list[int] | None:
    """Return the septet width of each character, or None if one is not GSM-7."""
    widths: list[int] = []
    for char in text:
        if char in GSM7_BASIC:
            widths.append(1)
        elif char in GSM7_EXTENSION:
            widths.append(2)
        else:
            return None
    return widths


def _utf16_units(char: str) -> int:
    """Return 2 for a code point outside the Basic Multilingual Plane, else 1."""
    return 2 if ord(char) > 0xFFFF else 1


def _pack(widths: list[int], single_size: int, part_size: int) -> int:
    """Count parts for `widths`, packed greedily without splitting a character."""
    total = sum(widths)
    if total == 0:
        return 0
    if total <= single_size:
        return 1
    parts = 1
    used = 0
    for width in widths:
        if used + width > part_size:
            parts += 1
            used = 0
        used += width
    return parts
