"""Tests for citation schema validation and extraction in server.citations."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import grpc
import pytest
from google.protobuf import json_format, timestamp_pb2
from parley.v1 import definitions_pb2, types_pb2

from server import citations as citations_module
from server.citations import (
    CITATIONS_MAX_BYTES,
    DEFAULT_CONFIDENCE,
    DISAGREEMENT_FACTOR,
    MAX_TRANSCRIPT_MESSAGES,
    VALUE_MAX_CHARS,
    extract_citations,
    extract_citations_async,
    normalize_citation_schema,
    validate_citation_schema,
)
from server.errors import ParleyError

USER = types_pb2.SENDER_USER
AGENT = types_pb2.SENDER_AGENT


def message(
    message_id: str,
    text: str,
    sender: types_pb2.Sender.ValueType = USER,
    created_at: str | None = "2026-11-30T15:00:00",
    history: bool = False,
) -> types_pb2.Message:
    """Build a transcript message; `created_at` is naive ISO text read as UTC."""
    result = types_pb2.Message(id=message_id, sender=sender, text=text, history=history)
    if created_at is not None:
        moment = datetime.fromisoformat(created_at).replace(tzinfo=UTC)
        result.created_at.CopyFrom(timestamp_pb2.Timestamp())
        result.created_at.FromDatetime(moment)
    return result


def variable(
    name: str, variable_type: str, *rules: dict[str, Any], **extra: Any
) -> dict[str, Any]:
    return {"name": name, "type": variable_type, "rules": list(rules), **extra}


def schema(
    *variables: dict[str, Any], schema_id: str = "booking"
) -> definitions_pb2.CitationSchema:
    return json_format.ParseDict(
        {"id": schema_id, "variables": list(variables)},
        definitions_pb2.CitationSchema(),
    )


def extract(
    citation_schema: definitions_pb2.CitationSchema,
    transcript: list[types_pb2.Message],
    **options: Any,
) -> dict[str, types_pb2.Citation]:
    """Validate the schema, extract, and key the citations by variable name."""
    validate_citation_schema(citation_schema)
    citations = extract_citations(citation_schema, transcript, **options)
    return {citation.variable: citation for citation in citations}


def plain(citation: types_pb2.Citation) -> Any:
    return json_format.MessageToDict(citation.value)


def test_email_and_date_cite_user_messages() -> None:
    citation_schema = schema(
        variable("email", "STRING", {"preset": "EMAIL"}),
        variable("visit", "DATE", {"preset": "DATE"}),
    )
    transcript = [
        message("m1", "Hi, write to agent@parley.example if needed", sender=AGENT),
        message("m2", "Sure, it's Ann.Lee+sms@mail.example.org."),
        message("m3", "What day suits you?", sender=AGENT),
        message("m4", "Let's do Dec 5th, 2026 please"),
    ]
    citations = extract(citation_schema, transcript)

    email = citations["email"]
    assert plain(email) == "Ann.Lee+sms@mail.example.org"
    assert email.message_id == "m2"
    assert email.schema_id == "booking"
    assert email.type == "STRING"
    assert email.excerpt == "Ann.Lee+sms@mail.example.org"
    assert email.confidence == pytest.approx(DEFAULT_CONFIDENCE)

    visit = citations["visit"]
    assert plain(visit) == "2026-12-05"
    assert visit.message_id == "m4"
    assert visit.type == "DATE"
    assert visit.excerpt == "Dec 5th, 2026"


def test_latest_value_wins_with_lowered_confidence() -> None:
    citation_schema = schema(
        variable(
            "party_size", "NUMBER", {"regex": r"(?i)party of (\d+)", "confidence": 0.7}
        )
    )
    transcript = [
        message("m1", "A party of 4"),
        message("m2", "Nothing to add"),
        message("m3", "Actually a party of 6"),
    ]
    citation = extract(citation_schema, transcript)["party_size"]
    assert plain(citation) == 6
    assert citation.message_id == "m3"
    # The rule's 0.7, lowered by the factor 0.8 because m1 gave 4.
    assert citation.confidence == pytest.approx(0.56)


def test_repeated_same_value_keeps_confidence() -> None:
    citation_schema = schema(variable("party_size", "NUMBER", {"preset": "NUMBER"}))
    transcript = [message("m1", "4 people"), message("m2", "yes, 4")]
    citation = extract(citation_schema, transcript)["party_size"]
    assert citation.message_id == "m2"
    assert citation.confidence == pytest.approx(DEFAULT_CONFIDENCE)


def test_enum_matches_case_insensitively() -> None:
    citation_schema = schema(
        variable(
            "plan",
            "ENUM",
            {"regex": r"(?i)\b(basic|premium|gold)\b"},
            enum_values=["Basic", "Premium"],
        )
    )
    transcript = [message("m1", "I want PREMIUM"), message("m2", "or maybe gold")]
    citation = extract(citation_schema, transcript)["plan"]
    # "gold" is not an enum value, so the earlier message keeps the citation.
    assert plain(citation) == "Premium"
    assert citation.message_id == "m1"
    assert citation.confidence == pytest.approx(DEFAULT_CONFIDENCE)


def test_boolean_from_yes_no_words() -> None:
    citation_schema = schema(
        variable("confirmed", "BOOLEAN", {"preset": "YES_NO"}),
        variable("flag", "BOOLEAN", {"regex": r"flag=(\w+)"}),
    )
    transcript = [message("m1", "Yep, that works"), message("m2", "flag=FALSE")]
    citations = extract(citation_schema, transcript)
    assert plain(citations["confirmed"]) is True
    assert citations["confirmed"].message_id == "m1"
    assert plain(citations["flag"]) is False


def test_yes_no_latest_answer_wins() -> None:
    citation_schema = schema(variable("confirmed", "BOOLEAN", {"preset": "yes_no"}))
    transcript = [message("m1", "ok"), message("m2", "nah, cancel it")]
    citation = extract(citation_schema, transcript)["confirmed"]
    assert plain(citation) is False
    assert citation.confidence == pytest.approx(
        DEFAULT_CONFIDENCE * DISAGREEMENT_FACTOR
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("about 1,250.50 dollars", 1250.5),
        ("-3 degrees", -3),
        ("room 42", 42),
    ],
)
def test_number_preset_values(text: str, expected: float) -> None:
    citation_schema = schema(variable("amount", "NUMBER", {"preset": "NUMBER"}))
    citation = extract(citation_schema, [message("m1", text)])["amount"]
    assert plain(citation) == expected


def test_number_type_skips_non_numbers() -> None:
    citation_schema = schema(variable("amount", "NUMBER", {"regex": r"amount: (\S+)"}))
    transcript = [message("m1", "amount: 12"), message("m2", "amount: twelve")]
    citation = extract(citation_schema, transcript)["amount"]
    assert plain(citation) == 12
    assert citation.message_id == "m1"


def test_agent_sender_reads_agent_messages() -> None:
    citation_schema = schema(
        variable("quote", "NUMBER", {"regex": r"\$(\d+)", "sender": "agent"})
    )
    transcript = [
        message("m1", "Can you do it for $50?"),
        message("m2", "The price is $80", sender=AGENT),
    ]
    citation = extract(citation_schema, transcript)["quote"]
    assert plain(citation) == 80
    assert citation.message_id == "m2"


def test_any_sender_reads_both_sides() -> None:
    citation_schema = schema(
        variable("quote", "NUMBER", {"regex": r"\$(\d+)", "sender": "ANY"})
    )
    transcript = [
        message("m1", "The price is $80", sender=AGENT),
        message("m2", "Can you do it for $50?"),
    ]
    citation = extract(citation_schema, transcript)["quote"]
    assert plain(citation) == 50
    assert citation.message_id == "m2"
    assert citation.confidence == pytest.approx(
        DEFAULT_CONFIDENCE * DISAGREEMENT_FACTOR
    )


def test_user_rule_skips_agent_messages() -> None:
    citation_schema = schema(variable("email", "STRING", {"preset": "EMAIL"}))
    transcript = [message("m1", "Mail help@parley.example", sender=AGENT)]
    assert extract(citation_schema, transcript) == {}


def test_unspecified_sender_counts_as_user() -> None:
    citation_schema = schema(variable("email", "STRING", {"preset": "EMAIL"}))
    transcript = [message("m1", "me@home.example", sender=types_pb2.SENDER_UNSPECIFIED)]
    assert plain(extract(citation_schema, transcript)["email"]) == "me@home.example"


def test_history_messages_are_read() -> None:
    citation_schema = schema(variable("email", "STRING", {"preset": "EMAIL"}))
    transcript = [message("h1", "old@home.example", history=True)]
    citation = extract(citation_schema, transcript)["email"]
    assert citation.message_id == "h1"


@pytest.mark.parametrize(
    ("text", "created_at", "expected"),
    [
        ("today", "2026-11-30T23:59:00", "2026-11-30"),
        ("tomorrow works", "2026-11-30T23:59:00", "2026-12-01"),
        ("Tomorrow", "2026-12-31T08:00:00", "2027-01-01"),
        ("not yesterday", "2026-03-01T08:00:00", "2026-02-28"),
        ("on 2026-12-05", "2026-11-30T08:00:00", "2026-12-05"),
        ("on 12/05/2026", "2026-11-30T08:00:00", "2026-12-05"),
        ("December 5", "2026-11-30T08:00:00", "2026-12-05"),
        ("Dec 5th, 2026", "2026-11-30T08:00:00", "2026-12-05"),
        ("5 December 2026", "2026-11-30T08:00:00", "2026-12-05"),
        ("the 5th of Dec", "2026-11-30T08:00:00", "2026-12-05"),
        ("Sept. 9", "2026-11-30T08:00:00", "2027-09-09"),
        ("Jan 3", "2026-11-30T08:00:00", "2027-01-03"),
        ("Feb 29", "2026-11-30T08:00:00", "2028-02-29"),
    ],
)
def test_date_forms_resolve(text: str, created_at: str, expected: str) -> None:
    citation_schema = schema(variable("visit", "DATE", {"preset": "DATE"}))
    transcript = [message("m1", text, created_at=created_at)]
    assert plain(extract(citation_schema, transcript)["visit"]) == expected


def test_relative_date_uses_each_message_date() -> None:
    citation_schema = schema(variable("visit", "DATE", {"preset": "DATE"}))
    transcript = [
        message("m1", "tomorrow", created_at="2026-11-30T10:00:00"),
        message("m2", "ok, today then", created_at="2026-12-01T10:00:00"),
    ]
    citation = extract(citation_schema, transcript)["visit"]
    assert plain(citation) == "2026-12-01"
    assert citation.message_id == "m2"
    # Both messages name the same day, so the values agree.
    assert citation.confidence == pytest.approx(DEFAULT_CONFIDENCE)


def test_dates_needing_a_reference_skip_without_time() -> None:
    citation_schema = schema(variable("visit", "DATE", {"preset": "DATE"}))
    transcript = [
        message("m1", "2026-12-05", created_at=None),
        message("m2", "tomorrow", created_at=None),
        message("m3", "December 9", created_at=None),
    ]
    citation = extract(citation_schema, transcript)["visit"]
    assert plain(citation) == "2026-12-05"
    assert citation.message_id == "m1"


def test_invalid_dates_are_skipped() -> None:
    citation_schema = schema(variable("visit", "DATE", {"preset": "DATE"}))
    transcript = [message("m1", "2026-02-30 or 13/01/2026 or February 30")]
    assert extract(citation_schema, transcript) == {}


def test_phone_preset_normalises_to_e164() -> None:
    citation_schema = schema(variable("phone", "STRING", {"preset": "PHONE"}))
    transcript = [
        message("m1", "call +1 (415) 555-0123 today"),
        message("m2", "order 1234567 is late"),
    ]
    citation = extract(citation_schema, transcript)["phone"]
    assert plain(citation) == "+14155550123"
    assert citation.message_id == "m1"
    assert citation.excerpt == "+1 (415) 555-0123"


def test_phone_preset_uses_default_region() -> None:
    citation_schema = schema(variable("phone", "STRING", {"preset": "PHONE"}))
    transcript = [message("m1", "my cell is 415.555.0123")]
    assert extract(citation_schema, transcript) == {}
    citation = extract(citation_schema, transcript, default_region="US")["phone"]
    assert plain(citation) == "+14155550123"


def test_regex_with_preset_normalises_group() -> None:
    citation_schema = schema(
        variable(
            "visit", "DATE", {"regex": r"(?i)arrive (?:on )?(.+?)\.", "preset": "DATE"}
        )
    )
    transcript = [message("m1", "We arrive on Dec 24. Leave later.")]
    citation = extract(citation_schema, transcript)["visit"]
    assert plain(citation) == "2026-12-24"
    assert citation.excerpt == "arrive on Dec 24."


def test_first_group_is_value() -> None:
    citation_schema = schema(variable("user", "STRING", {"regex": r"(\w+)@(\w+)"}))
    citation = extract(citation_schema, [message("m1", "ann@home")])["user"]
    assert plain(citation) == "ann"
    assert citation.excerpt == "ann@home"


def test_first_participating_group_is_value() -> None:
    citation_schema = schema(
        variable("name", "STRING", {"regex": r"my name is (\w+)|(\w+) here"})
    )
    citation = extract(citation_schema, [message("m1", "Hi, Ann here")])["name"]
    assert plain(citation) == "Ann"


def test_rules_are_tried_in_order() -> None:
    citation_schema = schema(
        variable(
            "size",
            "STRING",
            {"regex": r"size (\w+)", "confidence": 1.0},
            {"regex": r"(small|large)", "confidence": 0.5},
        )
    )
    transcript = [message("m1", "large, size medium")]
    citation = extract(citation_schema, transcript)["size"]
    assert plain(citation) == "medium"
    assert citation.confidence == pytest.approx(1.0)


def test_excerpt_is_cut_to_200_characters() -> None:
    citation_schema = schema(variable("note", "STRING", {"regex": r"note: (.*)"}))
    text = "note: " + "x" * 500
    citation = extract(citation_schema, [message("m1", text)])["note"]
    assert plain(citation) == "x" * 500
    assert len(citation.excerpt) == 200
    assert citation.excerpt.endswith("...")


def test_string_value_is_cut_to_1000_characters() -> None:
    citation_schema = schema(variable("note", "STRING", {"regex": r"(?s)(.*)"}))
    text = "".join(str(index % 10) for index in range(1_600))
    citation = extract(citation_schema, [message("m1", text)])["note"]
    assert VALUE_MAX_CHARS == 1_000
    assert plain(citation) == text[:1_000]
    assert len(citation.excerpt) == 200


def test_cut_values_compare_equal() -> None:
    # Values that differ only after 1,000 characters are stored equal.
    citation_schema = schema(variable("note", "STRING", {"regex": r"(?s)(.*)"}))
    transcript = [message("m1", "x" * 1_200 + "a"), message("m2", "x" * 1_200 + "b")]
    citation = extract(citation_schema, transcript)["note"]
    assert plain(citation) == "x" * 1_000
    assert citation.confidence == pytest.approx(DEFAULT_CONFIDENCE)


def test_citations_stop_at_64_kib() -> None:
    names = [f"v{index}" for index in range(100)]
    citation_schema = schema(
        *(variable(name, "STRING", {"regex": r"(?s)(.*)"}) for name in names)
    )
    validate_citation_schema(citation_schema)
    citations = extract_citations(citation_schema, [message("m1", "y" * 1_600)])
    sizes = [citation.ByteSize() for citation in citations]
    next_citation = types_pb2.Citation()
    next_citation.CopyFrom(citations[-1])
    next_citation.variable = names[len(citations)]
    assert CITATIONS_MAX_BYTES == 64 * 1024
    assert 0 < len(citations) < len(names)
    assert [citation.variable for citation in citations] == names[: len(citations)]
    assert sum(sizes) <= CITATIONS_MAX_BYTES
    assert sum(sizes) + next_citation.ByteSize() > CITATIONS_MAX_BYTES


def test_citations_under_64_kib_are_all_kept() -> None:
    names = [f"v{index}" for index in range(100)]
    citation_schema = schema(
        *(variable(name, "NUMBER", {"preset": "NUMBER"}) for name in names)
    )
    citations = extract(citation_schema, [message("m1", "table for 4")])
    assert list(citations) == names


def test_only_last_500_messages_are_read() -> None:
    citation_schema = schema(variable("email", "STRING", {"preset": "EMAIL"}))
    filler = [message(f"f{index}", "hello") for index in range(499)]
    assert MAX_TRANSCRIPT_MESSAGES == 500
    too_old = [message("m0", "a@example.com"), message("m1", "hi"), *filler]
    assert extract(citation_schema, too_old) == {}
    oldest_read = [message("m0", "b@example.com"), *filler]
    citation = extract(citation_schema, oldest_read)["email"]
    assert plain(citation) == "b@example.com"
    assert citation.message_id == "m0"


async def test_async_extraction_matches_sync() -> None:
    citation_schema = schema(
        variable("email", "STRING", {"preset": "EMAIL"}),
        variable("phone", "STRING", {"preset": "PHONE"}),
    )
    validate_citation_schema(citation_schema)
    transcript = [message("m1", "mail a@example.com or call 415 555 2671")]
    expected = extract_citations(citation_schema, transcript, default_region="US")
    result = await extract_citations_async(
        citation_schema, transcript, default_region="US"
    )
    assert result == expected
    assert len(result) == 2


async def test_async_extraction_runs_on_worker_thread(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    threads: list[threading.Thread] = []
    received: list[int] = []

    def record(
        citation_schema: definitions_pb2.CitationSchema,
        transcript: list[types_pb2.Message],
        *,
        default_region: str | None = None,
    ) -> list[types_pb2.Citation]:
        threads.append(threading.current_thread())
        received.append(len(transcript))
        time.sleep(0.2)
        return []

    monkeypatch.setattr(citations_module, "extract_citations", record)
    ticks = 0

    async def tick() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    ticker = asyncio.create_task(tick())
    transcript = [message(f"m{index}", "hi") for index in range(600)]
    result = await extract_citations_async(schema(), transcript)
    ticker.cancel()
    assert result == []
    assert threads[0] is not threading.main_thread()
    assert received == [500]
    assert ticks >= 5


def test_empty_matches_are_skipped() -> None:
    citation_schema = schema(variable("code", "STRING", {"regex": r"(x*)"}))
    assert extract(citation_schema, [message("m1", "abc")]) == {}
    citation = extract(citation_schema, [message("m2", "a xx b")])["code"]
    assert plain(citation) == "xx"


def test_variable_without_match_has_no_citation() -> None:
    citation_schema = schema(
        variable("email", "STRING", {"preset": "EMAIL"}),
        variable("party_size", "NUMBER", {"preset": "NUMBER"}),
    )
    citations = extract(citation_schema, [message("m1", "table for 2")])
    assert list(citations) == ["party_size"]


def test_catastrophic_pattern_on_long_text_completes() -> None:
    citation_schema = schema(variable("run", "STRING", {"regex": r"(a+)+$"}))
    transcript = [message("m1", "a" * 100_000 + "!")]
    started = time.monotonic()
    citations = extract(citation_schema, transcript)
    elapsed = time.monotonic() - started
    assert citations == {}
    assert elapsed < 2.0


def test_valid_schema_accepts_any_case() -> None:
    citation_schema = schema(
        variable(
            "plan", "enum", {"preset": "yes_no", "sender": "any"}, enum_values=["a"]
        ),
        variable("when", "Date", {"regex": "x", "sender": "", "confidence": 1}),
    )
    validate_citation_schema(citation_schema)
    normalize_citation_schema(citation_schema)
    assert citation_schema.variables[0].type == "ENUM"
    assert citation_schema.variables[0].rules[0].preset == "YES_NO"
    assert citation_schema.variables[0].rules[0].sender == "ANY"
    assert citation_schema.variables[1].type == "DATE"


def valid_variable() -> dict[str, Any]:
    return variable("email", "STRING", {"preset": "EMAIL"})


def change_rule(**rule: Any) -> Callable[[dict[str, Any]], None]:
    def change(data: dict[str, Any]) -> None:
        data["variables"][1]["rules"] = [{"preset": "EMAIL"}, rule]

    return change


def change_variable(**fields: Any) -> Callable[[dict[str, Any]], None]:
    def change(data: dict[str, Any]) -> None:
        data["variables"][1].update(fields)

    return change


def set_id(value: str) -> Callable[[dict[str, Any]], None]:
    def change(data: dict[str, Any]) -> None:
        data["id"] = value

    return change


def set_variables(variables: list[dict[str, Any]]) -> Callable[[dict[str, Any]], None]:
    def change(data: dict[str, Any]) -> None:
        data["variables"] = variables

    return change


@pytest.mark.parametrize(
    ("change", "field", "fragment"),
    [
        (set_id(""), "schema.id", "1 to 128 printable"),
        (set_id("has space"), "schema.id", "without spaces"),
        (set_id("x" * 129), "schema.id", "1 to 128 printable"),
        (set_variables([]), "schema.variables", "has 0 variables"),
        (
            set_variables(
                [variable(f"v{i}", "STRING", {"preset": "EMAIL"}) for i in range(101)]
            ),
            "schema.variables",
            "has 101 variables",
        ),
        (change_variable(name="email"), "schema.variables[1].name", "must be unique"),
        (
            change_variable(name="2nd"),
            "schema.variables[1].name",
            "not a valid variable name",
        ),
        (
            change_variable(name=""),
            "schema.variables[1].name",
            "not a valid variable name",
        ),
        (change_variable(type="TEXT"), "schema.variables[1].type", "not a known type"),
        (change_variable(type=""), "schema.variables[1].type", "not a known type"),
        (
            change_variable(type="ENUM"),
            "schema.variables[1].enum_values",
            "needs 1 to 100",
        ),
        (
            change_variable(enum_values=["a"]),
            "schema.variables[1].enum_values",
            "only accepted when the type is ENUM",
        ),
        (
            change_variable(type="ENUM", enum_values=["Gold", "gold"]),
            "schema.variables[1].enum_values[1]",
            "repeats an earlier value",
        ),
        (
            change_variable(type="ENUM", enum_values=["  "]),
            "schema.variables[1].enum_values[0]",
            "not a valid enum value",
        ),
        (change_variable(rules=[]), "schema.variables[1].rules", "has 0 rules"),
        (change_rule(), "schema.variables[1].rules[1]", "neither a regex nor a preset"),
        (
            change_rule(preset="ZIP"),
            "schema.variables[1].rules[1].preset",
            "not a known preset",
        ),
        (change_rule(regex="(a"), "schema.variables[1].rules[1].regex", "missing )"),
        (
            change_rule(regex=r"(a)\1"),
            "schema.variables[1].rules[1].regex",
            "not a valid RE2 regular expression",
        ),
        (
            change_rule(regex="(?=a)b"),
            "schema.variables[1].rules[1].regex",
            "not a valid RE2 regular expression",
        ),
        (
            change_rule(regex="a" * 1001),
            "schema.variables[1].rules[1].regex",
            "maximum is 1,000",
        ),
        (
            change_rule(preset="EMAIL", sender="BOT"),
            "schema.variables[1].rules[1].sender",
            "not a known sender",
        ),
        (
            change_rule(preset="EMAIL", confidence=1.5),
            "schema.variables[1].rules[1].confidence",
            "from 0 to 1",
        ),
        (
            change_rule(preset="EMAIL", confidence=-0.1),
            "schema.variables[1].rules[1].confidence",
            "from 0 to 1",
        ),
        (
            change_rule(preset="EMAIL", confidence="NaN"),
            "schema.variables[1].rules[1].confidence",
            "from 0 to 1",
        ),
    ],
)
def test_validation_names_invalid_element(
    change: Callable[[dict[str, Any]], None], field: str, fragment: str
) -> None:
    data: dict[str, Any] = {
        "id": "booking",
        "variables": [
            valid_variable(),
            variable("other", "NUMBER", {"preset": "NUMBER"}),
        ],
    }
    change(data)
    citation_schema = json_format.ParseDict(data, definitions_pb2.CitationSchema())
    with pytest.raises(ParleyError) as caught:
        validate_citation_schema(citation_schema)
    error = caught.value
    assert error.code == grpc.StatusCode.INVALID_ARGUMENT
    assert error.reason == "INVALID_CITATION_SCHEMA"
    assert error.message.startswith(field)
    assert fragment in error.message
    assert [violation.field for violation in error.violations] == [field]


def test_validation_uses_field_prefix() -> None:
    citation_schema = schema(variable("email", "STRING", {"preset": "FAX"}))
    with pytest.raises(ParleyError) as caught:
        validate_citation_schema(citation_schema, field_prefix="citation_schemas[3]")
    field = caught.value.violations[0].field
    assert field == "citation_schemas[3].variables[0].rules[0].preset"
