"""Tests for SMS segment counting in server.segments."""

from __future__ import annotations

import pytest
from parley.v1 import types_pb2

from server.segments import GSM7_BASIC, GSM7_EXTENSION, count_segments

GSM7 = types_pb2.ENCODING_GSM7
UCS2 = types_pb2.ENCODING_UCS2
EMOJI = "\U0001f600"  # one code point, two UTF-16 code units

# (case id, text, encoding, segments, units)
CASES = [
    ("empty", "", GSM7, 0, 0),
    ("one gsm char", "a", GSM7, 1, 1),
    ("160 gsm", "a" * 160, GSM7, 1, 160),
    ("161 gsm", "a" * 161, GSM7, 2, 161),
    ("306 gsm", "a" * 306, GSM7, 2, 306),
    ("307 gsm", "a" * 307, GSM7, 3, 307),
    ("459 gsm", "a" * 459, GSM7, 3, 459),
    ("460 gsm", "a" * 460, GSM7, 4, 460),
    ("70 ucs2", "Ж" * 70, UCS2, 1, 70),
    ("71 ucs2", "Ж" * 71, UCS2, 2, 71),
    ("134 ucs2", "Ж" * 134, UCS2, 2, 134),
    ("135 ucs2", "Ж" * 135, UCS2, 3, 135),
    ("80 euro", "€" * 80, GSM7, 1, 160),
    ("81 euro", "€" * 81, GSM7, 2, 162),
    ("159 gsm plus euro", "a" * 159 + "€", GSM7, 2, 161),
    ("158 gsm plus euro", "a" * 158 + "€", GSM7, 1, 160),
    ("200 chars one emoji", "a" * 199 + EMOJI, UCS2, 3, 201),
    ("emoji alone", EMOJI, UCS2, 1, 2),
    ("35 emoji", EMOJI * 35, UCS2, 1, 70),
    ("36 emoji", EMOJI * 36, UCS2, 2, 72),
    ("one non-gsm char", "a" * 100 + "ç", UCS2, 2, 101),
    ("escape char forces ucs2", "a\x1bb", UCS2, 1, 3),
    ("gsm accents", "àÄÖÑÜ§¿ÆæßÉ", GSM7, 1, 11),
    ("gsm greek", "ΔΦΓΛΩΠΨΣΘΞ", GSM7, 1, 10),
    ("line breaks", "a\nb\rc", GSM7, 1, 5),
    ("tab is not gsm", "a\tb", UCS2, 1, 3),
]


@pytest.mark.parametrize(
    ("text", "encoding", "segments", "units"),
    [case[1:] for case in CASES],
    ids=[case[0] for case in CASES],
)
def test_count_segments_table(
    text: str, encoding: int, segments: int, units: int
) -> None:
    count = count_segments(text)
    assert count.encoding == encoding
    assert count.segments == segments
    assert count.units == units


def test_extension_chars_take_two_septets() -> None:
    for char in "€[]{}^~|\\\f":
        count = count_segments(char)
        assert count.encoding == GSM7, repr(char)
        assert count.units == 2, repr(char)


def test_extension_table_is_exact() -> None:
    assert set("€[]{}^~|\\\f") == GSM7_EXTENSION


def test_basic_and_extension_tables_disjoint() -> None:
    assert not GSM7_BASIC & GSM7_EXTENSION


def test_basic_table_size() -> None:
    # 128 code points minus the escape at 0x1B.
    assert len(GSM7_BASIC) == 127


def test_escape_pair_moves_to_next_segment() -> None:
    # 152 septets, then an escape pair that would need septets 153 and 154:
    # the pair starts part 2, which then contains 2 + 152 = 154 septets, so a
    # third part is needed although 306 septets would fit 2 x 153.
    text = "a" * 152 + "€" + "a" * 152
    count = count_segments(text)
    assert count.units == 306
    assert count.segments == 3


def test_escape_pair_at_segment_end_fits() -> None:
    # 151 + 2 fills part 1 exactly, so 153 more septets fit part 2.
    text = "a" * 151 + "€" + "a" * 153
    count = count_segments(text)
    assert count.units == 306
    assert count.segments == 2


def test_escape_pair_moved_fits_two_segments() -> None:
    # The pair moves to part 2 and 2 + 151 = 153 still fits it.
    text = "a" * 152 + "€" + "a" * 151
    count = count_segments(text)
    assert count.units == 305
    assert count.segments == 2


def test_surrogate_pair_moves_to_next_segment() -> None:
    # 66 code units, then an emoji that would need units 67 and 68: it starts
    # part 2, which then contains 2 + 66 = 68 units, so a third part is needed.
    text = "Ж" * 66 + EMOJI + "Ж" * 66
    count = count_segments(text)
    assert count.encoding == UCS2
    assert count.units == 134
    assert count.segments == 3


def test_surrogate_pair_at_segment_end_fits() -> None:
    text = "Ж" * 65 + EMOJI + "Ж" * 67
    count = count_segments(text)
    assert count.units == 134
    assert count.segments == 2


def test_surrogate_pair_moved_fits_two_segments() -> None:
    text = "Ж" * 66 + EMOJI + "Ж" * 65
    count = count_segments(text)
    assert count.units == 133
    assert count.segments == 2


def test_euro_with_emoji_counts_one_unit() -> None:
    # In UCS-2 the euro sign is one code unit, not an escape pair.
    count = count_segments("€" + EMOJI)
    assert count.encoding == UCS2
    assert count.units == 3
