"""Conversion of text captured by citation rules into typed values.

Dates accept ISO (`2026-12-05`), US month/day (`12/05/2026`), month names
with or without a year (`December 5`, `Dec 5th, 2026`, `5 December 2026`)
and `yesterday`, `today` and `tomorrow`, which resolve against the date of
the message they appear in.
"""

from __future__ import annotations

import math
import re
from datetime import date, timedelta

from parley.v1 import definitions_pb2

Scalar = str | float | bool

_MONTHS = [
    "january",
    "february",
    "march",
    "april",
    "may",
    "june",
    "july",
    "august",
    "september",
    "october",
    "november",
    "december",
]
# Full English month names and their three-letter abbreviations, plus "sept".
MONTH_NUMBERS = {
    spelling: number
    for number, name in enumerate(_MONTHS, start=1)
    for spelling in (name, name[:3])
} | {"sept": 9}
# Longer spellings first, because RE2 takes the first alternative that matches.
MONTH_ALTERNATIVES = "|".join(sorted(MONTH_NUMBERS, key=len, reverse=True))
_RELATIVE_DAYS = {"yesterday": -1, "today": 0, "tomorrow": 1}
_YES_WORDS = frozenset({"yes", "yeah", "yep", "sure", "ok", "okay", "true"})
_NO_WORDS = frozenset({"no", "nope", "nah", "false"})
_DATE_TEXT_MAX_CHARS = 64
# These use Python's engine on captured text. None of them nests quantifiers,
# so matching time stays linear in the text length.
_ISO_DATE = re.compile(r"([0-9]{4})-([0-9]{2})-([0-9]{2})")
_US_DATE = re.compile(r"([0-9]{1,2})/([0-9]{1,2})/([0-9]{4})")
_MONTH_FIRST = re.compile(
    r"([a-z]+)\.?\s+([0-9]{1,2})(?:st|nd|rd|th)?(?:,?\s+([0-9]{4}))?", re.IGNORECASE
)
_DAY_FIRST = re.compile(
    r"([0-9]{1,2})(?:st|nd|rd|th)?\s+(?:of\s+)?([a-z]+)\.?(?:,?\s+([0-9]{4}))?",
    re.IGNORECASE,
)
_NUMBER_TEXT = re.compile(r"[-+]?(?:[0-9]{1,3}(?:,[0-9]{3})+|[0-9]+)(?:\.[0-9]+)?")


def coerce_value(
    text: str, variable: definitions_pb2.CitationVariable, reference: date | None
) -> Scalar | None:
    """Convert captured text to the variable's type, or return None if it cannot.

    NUMBER accepts decimal text with optional thousands commas, BOOLEAN the
    words of `_parse_yes_no`, ENUM any enum value compared case-insensitively
    (returning the value as the schema spells it), DATE the forms of
    `_parse_date` (returning ISO 8601 text). STRING keeps the text unchanged.
    """
    variable_type = variable.type.upper()
    if variable_type == "NUMBER":
        stripped = text.strip()
        if not _NUMBER_TEXT.fullmatch(stripped):
            return None
        number = float(stripped.replace(",", ""))
        return number if math.isfinite(number) else None
    if variable_type == "BOOLEAN":
        return parse_yes_no(text)
    if variable_type == "ENUM":
        key = text.strip().casefold()
        for canonical in variable.enum_values:
            if canonical.strip().casefold() == key:
                return canonical
        return None
    if variable_type == "DATE":
        parsed = parse_date(text, reference)
        return parsed.isoformat() if parsed else None
    return text


def parse_yes_no(text: str) -> bool | None:
    """Map yes/yeah/yep/sure/ok/okay/true to True and no/nope/nah/false to False."""
    word = text.strip().lower()
    if word in _YES_WORDS:
        return True
    if word in _NO_WORDS:
        return False
    return None


def parse_date(text: str, reference: date | None) -> date | None:
    """Parse one date, or return None if `text` is not a valid date in a known form.

    Forms: `2026-12-05`, `12/05/2026` (month first, as in the US),
    `December 5`, `Dec 5th, 2026`, `5 December 2026`, `5th of Dec`, and
    `yesterday`/`today`/`tomorrow`. Relative words count from `reference`.
    A date without a year is its next occurrence on or after `reference`.
    Both need a `reference`, so they give None without one.
    """
    text = text.strip()
    if len(text) > _DATE_TEXT_MAX_CHARS:
        return None
    offset = _RELATIVE_DAYS.get(text.lower())
    if offset is not None:
        return None if reference is None else reference + timedelta(days=offset)
    if match := _ISO_DATE.fullmatch(text):
        year, month, day = (int(part) for part in match.groups())
        return _make_date(year, month, day)
    if match := _US_DATE.fullmatch(text):
        month, day, year = (int(part) for part in match.groups())
        return _make_date(year, month, day)
    for pattern, month_group, day_group in ((_MONTH_FIRST, 1, 2), (_DAY_FIRST, 2, 1)):
        match = pattern.fullmatch(text)
        if match is None:
            continue
        month_number = MONTH_NUMBERS.get(match.group(month_group).lower())
        if month_number is None:
            continue
        day_number = int(match.group(day_group))
        if match.group(3):
            return _make_date(int(match.group(3)), month_number, day_number)
        return _next_occurrence(month_number, day_number, reference)
    return None


def _make_date(year: int, month: int, day: int) -> date | None:
    try:
        return date(year, month, day)
    except ValueError:
        return None


def _next_occurrence(month: int, day: int, reference: date | None) -> date | None:
    if reference is None:
        return None
    # February 29 can be up to 8 years away (from 2096 to 2104).
    for year in range(reference.year, reference.year + 9):
        candidate = _make_date(year, month, day)
        if candidate is not None and candidate >= reference:
            return candidate
    return None
