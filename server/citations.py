"""Citation schemas: validation, and extraction of typed variables from a transcript.

A schema lists variables. Each variable has extraction rules, and a rule is
an RE2 regular expression or a preset (EMAIL, PHONE, DATE, NUMBER, YES_NO)
applied to the messages of one sender. Patterns are written by account users
and run on user text, so they use RE2 (the `google-re2` package), whose
matching time is linear in the text length. Backreferences and lookaround do
not exist in RE2 syntax and are rejected by validation.

Extraction rules:

- Every message of the rule's sender is read in transcript order, history
  messages included. In each message the rules are tried in order, and the
  first match whose value converts to the variable's type is used.
- The latest message with a value wins. Its confidence is the rule's
  confidence (0 means 0.9), multiplied by 0.8 when an earlier message gave a
  different value, because the user then changed the value or the rule
  also matched unrelated text.
- A variable without any value gets no citation.

Limits:

- Only the last 500 messages of the transcript are read.
- A citation's string value is cut to its first 1,000 characters, with no
  marker. The excerpt, the whole match, is cut to 200 characters ending
  in "...".
- Citations are added in variable order until the next one would take the
  sum of their serialized sizes over 64 KiB. That citation and the ones
  after it are left out, without an error or a log entry.

Extraction is CPU work that can take seconds on long transcripts, so code
running on an event loop calls `extract_citations_async`, which runs it on
a worker thread.
"""

from __future__ import annotations

import asyncio
import math
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, date
from typing import Any, NoReturn

import phonenumbers
import re2  # type: ignore[import-untyped]
from google.protobuf import struct_pb2
from parley.v1 import definitions_pb2, types_pb2

from server.citation_values import (
    MONTH_ALTERNATIVES,
    Scalar,
    coerce_value,
    parse_date,
    parse_yes_no,
)
from server.errors import invalid_argument
from server.validation import quote_value

SCHEMA_ID_MAX_CHARS = 128
MAX_VARIABLES = 100
VARIABLE_NAME_MAX_CHARS = 64
MAX_RULES = 20
MAX_ENUM_VALUES = 100
ENUM_VALUE_MAX_CHARS = 128
REGEX_MAX_CHARS = 1_000
EXCERPT_MAX_CHARS = 200
VALUE_MAX_CHARS = 1_000
CITATIONS_MAX_BYTES = 64 * 1024
MAX_TRANSCRIPT_MESSAGES = 500
DEFAULT_CONFIDENCE = 0.9
DISAGREEMENT_FACTOR = 0.8

VARIABLE_TYPES = ("STRING", "NUMBER", "BOOLEAN", "ENUM", "DATE")
PRESETS = ("EMAIL", "PHONE", "DATE", "NUMBER", "YES_NO")
SENDERS = ("USER", "AGENT", "ANY")
REASON = "INVALID_CITATION_SCHEMA"

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_RE2_OPTIONS = re2.Options()
# RE2 otherwise prints every rejected pattern to stderr through absl logging.
_RE2_OPTIONS.log_errors = False

_DAY = r"[0-9]{1,2}(?:st|nd|rd|th)?"
_YEAR = r"(?:,?\s+[0-9]{4})?"
_DATE_PATTERN = (
    r"(?i)\b(?:[0-9]{4}-[0-9]{2}-[0-9]{2}"
    r"|[0-9]{1,2}/[0-9]{1,2}/[0-9]{4}"
    rf"|(?:{MONTH_ALTERNATIVES})\.?\s+{_DAY}{_YEAR}"
    rf"|{_DAY}\s+(?:of\s+)?(?:{MONTH_ALTERNATIVES})\.?{_YEAR}"
    r"|today|tomorrow|yesterday)\b"
)

_PRESET_PATTERNS = {
    "EMAIL": r"[A-Za-z0-9._%+\-]+@[A-Za-z0-9\-]+(?:\.[A-Za-z0-9\-]+)*\.[A-Za-z]{2,}",
    # An optional "+" and "(", then 7 to 22 digits, spaces, dots, dashes and
    # brackets that start and end with a digit.
    "PHONE": r"\+?\(?[0-9][0-9 ().\-]{5,20}[0-9]",
    "DATE": _DATE_PATTERN,
    "NUMBER": r"[-+]?(?:[0-9]{1,3}(?:,[0-9]{3})+|[0-9]+)(?:\.[0-9]+)?",
    "YES_NO": r"(?i)\b(?:yes|yeah|yep|sure|okay|ok|nope|nah|no)\b",
}


def validate_citation_schema(
    schema: definitions_pb2.CitationSchema, field_prefix: str = "schema"
) -> None:
    """Raise INVALID_ARGUMENT (reason INVALID_CITATION_SCHEMA) unless `schema` is usable.

    The id is 1 to 128 printable characters without whitespace. There are 1
    to 100 variables with unique identifier names, each with a known type,
    enum values exactly when the type is ENUM, and 1 to 20 rules. A rule has
    an RE2 regex or a preset, a sender of USER, AGENT, ANY or empty, and a
    confidence from 0 to 1. Type, preset and sender are case-insensitive.
    The error names the invalid element, such as
    `schema.variables[1].rules[0].regex`. `account_id` and `updated_at` are
    not checked.
    """
    _check_id(schema.id, f"{field_prefix}.id")
    field = f"{field_prefix}.variables"
    count = len(schema.variables)
    if not 1 <= count <= MAX_VARIABLES:
        _fail(field, f"{field} has {count} variables; send 1 to {MAX_VARIABLES}")
    seen: set[str] = set()
    for index, variable in enumerate(schema.variables):
        path = f"{field}[{index}]"
        _check_variable(variable, path)
        if variable.name in seen:
            _fail(
                f"{path}.name",
                f"{path}.name {quote_value(variable.name)} is used by an earlier "
                "variable; variable names must be unique within a schema",
            )
        seen.add(variable.name)


def normalize_citation_schema(schema: definitions_pb2.CitationSchema) -> None:
    """Upper-case every type, preset and sender of a valid `schema` in place."""
    for variable in schema.variables:
        variable.type = variable.type.upper()
        for rule in variable.rules:
            rule.preset = rule.preset.upper()
            rule.sender = rule.sender.upper()


def _check_id(value: str, field: str) -> None:
    valid = (
        0 < len(value) <= SCHEMA_ID_MAX_CHARS
        and value.isprintable()
        and not any(char.isspace() for char in value)
    )
    if not valid:
        _fail(
            field,
            f"{field} {quote_value(value)} is not a valid id; send 1 to "
            f"{SCHEMA_ID_MAX_CHARS} printable characters without spaces",
        )


def _check_variable(variable: definitions_pb2.CitationVariable, path: str) -> None:
    name = variable.name
    if not (len(name) <= VARIABLE_NAME_MAX_CHARS and _IDENTIFIER.fullmatch(name)):
        _fail(
            f"{path}.name",
            f"{path}.name {quote_value(name)} is not a valid variable name; send 1 "
            f"to {VARIABLE_NAME_MAX_CHARS} ASCII letters, digits and underscores, "
            "not starting with a digit",
        )
    variable_type = variable.type.upper()
    if variable_type not in VARIABLE_TYPES:
        _fail(
            f"{path}.type",
            f"{path}.type {quote_value(variable.type)} is not a known type; "
            f"send one of {', '.join(VARIABLE_TYPES)}",
        )
    _check_enum_values(variable, variable_type, f"{path}.enum_values")
    rules_field = f"{path}.rules"
    count = len(variable.rules)
    if not 1 <= count <= MAX_RULES:
        _fail(rules_field, f"{rules_field} has {count} rules; send 1 to {MAX_RULES}")
    for index, rule in enumerate(variable.rules):
        _check_rule(rule, f"{rules_field}[{index}]")


def _check_enum_values(
    variable: definitions_pb2.CitationVariable, variable_type: str, field: str
) -> None:
    enum_values = variable.enum_values
    if variable_type != "ENUM":
        if enum_values:
            _fail(field, f"{field} is only accepted when the type is ENUM; remove it")
        return
    if not 1 <= len(enum_values) <= MAX_ENUM_VALUES:
        _fail(
            field,
            f"{field} has {len(enum_values)} values; an ENUM variable needs 1 to "
            f"{MAX_ENUM_VALUES}",
        )
    seen: set[str] = set()
    for index, value in enumerate(enum_values):
        path = f"{field}[{index}]"
        if not value.strip() or len(value) > ENUM_VALUE_MAX_CHARS:
            _fail(
                path,
                f"{path} {quote_value(value)} is not a valid enum value; send 1 to "
                f"{ENUM_VALUE_MAX_CHARS} characters that are not all whitespace",
            )
        key = value.strip().casefold()
        if key in seen:
            _fail(
                path,
                f"{path} {quote_value(value)} repeats an earlier value; enum values "
                "must differ when compared case-insensitively",
            )
        seen.add(key)


def _check_rule(rule: definitions_pb2.ExtractionRule, path: str) -> None:
    preset = rule.preset.upper()
    if preset and preset not in PRESETS:
        _fail(
            f"{path}.preset",
            f"{path}.preset {quote_value(rule.preset)} is not a known preset; "
            f"send one of {', '.join(PRESETS)}, or leave it empty and set regex",
        )
    if not rule.regex and not preset:
        _fail(path, f"{path} has neither a regex nor a preset; set at least one")
    if rule.regex:
        _check_regex(rule.regex, f"{path}.regex")
    if rule.sender.upper() not in (*SENDERS, ""):
        _fail(
            f"{path}.sender",
            f"{path}.sender {quote_value(rule.sender)} is not a known sender; send "
            f"one of {', '.join(SENDERS)}, or leave it empty for USER",
        )
    confidence = rule.confidence
    if math.isnan(confidence) or not 0 <= confidence <= 1:
        _fail(
            f"{path}.confidence",
            f"{path}.confidence is {confidence}; send a number from 0 to 1 "
            "(0 means 0.9)",
        )


def _check_regex(pattern: str, field: str) -> None:
    if len(pattern) > REGEX_MAX_CHARS:
        _fail(
            field,
            f"{field} is {len(pattern):,} characters long; the maximum is "
            f"{REGEX_MAX_CHARS:,}",
        )
    try:
        re2.compile(pattern, _RE2_OPTIONS)
    except re2.error as error:
        _fail(
            field,
            f"{field} {quote_value(pattern)} is not a valid RE2 regular expression "
            f"({_re2_message(error)}); RE2 has no backreferences or lookaround",
        )


def _re2_message(error: Exception) -> str:
    """Decode RE2's message, which the binding passes as bytes."""
    detail = error.args[0] if error.args else error
    if isinstance(detail, bytes):
        return detail.decode("utf-8", "replace")
    return str(detail)


def _fail(field: str, message: str) -> NoReturn:
    raise invalid_argument(field, message, REASON)


# A citation value before it becomes a google.protobuf.Value.


@dataclass(frozen=True)
class _Found:
    """One value of a variable read from one message."""

    value: Scalar
    message: types_pb2.Message
    excerpt: str
    confidence: float


def extract_citations(
    schema: definitions_pb2.CitationSchema,
    transcript: Sequence[types_pb2.Message],
    *,
    default_region: str | None = None,
) -> list[types_pb2.Citation]:
    """Extract one citation per variable of `schema` that has a value in `transcript`.

    `schema` must have passed `validate_citation_schema`. Citations follow
    the order of the variables. `default_region` (a region code such as "US")
    lets the PHONE preset read numbers written without a leading '+'. Without
    it, only international numbers are read. Only the last 500 messages are
    read, and the citations stop before their serialized sizes sum to over
    64 KiB.
    """
    recent = transcript[-MAX_TRANSCRIPT_MESSAGES:]
    citations: list[types_pb2.Citation] = []
    total_bytes = 0
    for variable in schema.variables:
        found = list(_find_values(variable, recent, default_region))
        if not found:
            continue
        latest = found[-1]
        confidence = latest.confidence
        if any(item.value != latest.value for item in found[:-1]):
            confidence *= DISAGREEMENT_FACTOR
        citation = types_pb2.Citation(
            schema_id=schema.id,
            variable=variable.name,
            type=variable.type.upper(),
            value=_to_proto_value(latest.value),
            message_id=latest.message.id,
            confidence=confidence,
            excerpt=latest.excerpt,
        )
        total_bytes += citation.ByteSize()
        if total_bytes > CITATIONS_MAX_BYTES:
            break
        citations.append(citation)
    return citations


async def extract_citations_async(
    schema: definitions_pb2.CitationSchema,
    transcript: Sequence[types_pb2.Message],
    *,
    default_region: str | None = None,
) -> list[types_pb2.Citation]:
    """Run `extract_citations` on a worker thread, so the event loop stays free.

    The last 500 messages are copied to a list first, so messages appended
    meanwhile are not read. The schema and the messages themselves are
    shared with the thread and must not be changed until this returns.
    """
    recent = list(transcript[-MAX_TRANSCRIPT_MESSAGES:])
    return await asyncio.to_thread(
        extract_citations, schema, recent, default_region=default_region
    )


def _find_values(
    variable: definitions_pb2.CitationVariable,
    transcript: Sequence[types_pb2.Message],
    default_region: str | None,
) -> Iterator[_Found]:
    """Yield the value of each message that has one, in transcript order."""
    rules = [_CompiledRule(rule, default_region) for rule in variable.rules]
    for message in transcript:
        reference = _message_date(message)
        for rule in rules:
            if not rule.reads(message):
                continue
            found = rule.first_value(message.text, variable, reference)
            if found is not None:
                value, excerpt = found
                yield _Found(value, message, excerpt, rule.confidence)
                break


class _CompiledRule:
    """An extraction rule with its pattern compiled."""

    def __init__(
        self, rule: definitions_pb2.ExtractionRule, default_region: str | None
    ) -> None:
        self.preset = rule.preset.upper()
        pattern = rule.regex or _PRESET_PATTERNS[self.preset]
        self.pattern = re2.compile(pattern, _RE2_OPTIONS)
        self.sender = rule.sender.upper() or "USER"
        self.confidence = rule.confidence or DEFAULT_CONFIDENCE
        self.default_region = default_region

    def reads(self, message: types_pb2.Message) -> bool:
        """Return whether the rule applies to messages of this message's sender."""
        if self.sender == "ANY":
            return True
        if message.sender == types_pb2.SENDER_AGENT:
            return self.sender == "AGENT"
        # SENDER_UNSPECIFIED is stored for user messages sent without a sender.
        return self.sender == "USER"

    def first_value(
        self,
        text: str,
        variable: definitions_pb2.CitationVariable,
        reference: date | None,
    ) -> tuple[Scalar, str] | None:
        """Return the value and excerpt of the first match that converts, or None.

        Empty captured text is skipped, so a pattern that can match nothing
        does not cite an empty value.
        """
        for match in self.pattern.finditer(text):
            captured = _captured_text(match, self.pattern.groups)
            if not captured:
                continue
            if self.preset:
                captured = self._apply_preset(captured, reference)
                if captured is None:
                    continue
            value = coerce_value(captured, variable, reference)
            if isinstance(value, str):
                value = value[:VALUE_MAX_CHARS]
            if value is not None:
                return value, _excerpt(match.group(0))
        return None

    def _apply_preset(self, text: str, reference: date | None) -> str | None:
        """Return the preset's canonical text for `text`, or None if it is not one."""
        if self.preset == "PHONE":
            return _normalize_phone(text, self.default_region)
        if self.preset == "DATE":
            parsed = parse_date(text, reference)
            return parsed.isoformat() if parsed else None
        if self.preset == "NUMBER":
            return text.replace(",", "")
        if self.preset == "YES_NO":
            answer = parse_yes_no(text)
            return None if answer is None else str(answer).lower()
        return text


def _captured_text(match: Any, group_count: int) -> str | None:
    """Return the first group that took part in the match, or the whole match."""
    if group_count == 0:
        text = match.group(0)
        return text if isinstance(text, str) else None
    for index in range(1, group_count + 1):
        text = match.group(index)
        if isinstance(text, str):
            return text
    return None


def _normalize_phone(text: str, default_region: str | None) -> str | None:
    """Return `text` as E.164 if it is a valid number, else None."""
    try:
        number = phonenumbers.parse(text, default_region)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_valid_number(number):
        return None
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def _message_date(message: types_pb2.Message) -> date | None:
    """Return the UTC date the message was created, or None if it has no time."""
    if not message.HasField("created_at"):
        return None
    return message.created_at.ToDatetime(tzinfo=UTC).date()


def _excerpt(text: str) -> str:
    if len(text) <= EXCERPT_MAX_CHARS:
        return text
    return text[: EXCERPT_MAX_CHARS - 3] + "..."


def _to_proto_value(value: Scalar) -> struct_pb2.Value:
    if isinstance(value, bool):
        return struct_pb2.Value(bool_value=value)
    if isinstance(value, float):
        return struct_pb2.Value(number_value=value)
    return struct_pb2.Value(string_value=value)
