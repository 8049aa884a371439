"""Text rendering of end results: citations, outcome results and JSON values.

JSON values print on one line with sorted keys, because a Struct keeps no
key order. A Struct or Value stores every number as a double, so whole
numbers up to 2**53 print without a fraction (`4`, not `4.0`).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from google.protobuf import json_format, struct_pb2
from parley.v1 import types_pb2

from parley_client.enum_names import enum_label

# Largest magnitude up to which a double represents every integer exactly.
_EXACT_INTEGER_LIMIT = 2**53


def plain_json(value: Any) -> Any:
    """Return `value` with whole floats turned into ints, recursively."""
    if isinstance(value, dict):
        return {key: plain_json(item) for key, item in value.items()}
    if isinstance(value, list):
        return [plain_json(item) for item in value]
    if (
        isinstance(value, float)
        and value.is_integer()
        and abs(value) <= _EXACT_INTEGER_LIMIT
    ):
        return int(value)
    return value


def compact_json(value: Any) -> str:
    """Serialize plain data as one-line JSON with sorted keys and readable non-ASCII."""
    return json.dumps(
        plain_json(value), ensure_ascii=False, separators=(",", ":"), sort_keys=True
    )


def format_struct(struct: struct_pb2.Struct) -> str:
    """Serialize a Struct as one-line JSON."""
    return compact_json(json_format.MessageToDict(struct))


def format_value(value: struct_pb2.Value) -> str:
    """Serialize a Value as one-line JSON; an unset Value prints as `null`."""
    if value.WhichOneof("kind") is None:
        return "null"
    return compact_json(json_format.MessageToDict(value))


def format_citation(citation: types_pb2.Citation) -> str:
    """Format `variable = value` with the schema, cited message and confidence."""
    return "  ".join(
        [
            f"{citation.variable} = {format_value(citation.value)}",
            f"message={citation.message_id or '-'}",
            f"confidence={citation.confidence:.2f}",
            f"schema={citation.schema_id}",
        ]
    )


def format_outcome_result(result: types_pb2.OutcomeResult) -> str:
    """Format an outcome's id, status, then its JSON result or its error."""
    parts = [result.outcome_id, enum_label(types_pb2.OutcomeStatus, result.status)]
    if result.status == types_pb2.OUTCOME_STATUS_SUCCEEDED:
        parts.append(format_value(result.result))
    else:
        parts.append(f"error={json.dumps(result.error, ensure_ascii=False)}")
    parts.append(f"duration={result.duration_ms}ms")
    return "  ".join(parts)


def format_result_section(title: str, lines: Sequence[str]) -> list[str]:
    """Format `title: -` when empty, else the title and one indented line each."""
    if not lines:
        return [f"{title}: -"]
    return [f"{title}:", *(f"  {line}" for line in lines)]


def format_end_results(conversation: types_pb2.Conversation) -> list[str]:
    """Format the `citations:` and `outcomes:` sections of `parley get` and `end`."""
    citations = [format_citation(citation) for citation in conversation.citations]
    outcomes = [format_outcome_result(result) for result in conversation.outcomes]
    return [
        *format_result_section("citations", citations),
        *format_result_section("outcomes", outcomes),
    ]


def summarize_end_results(conversation: types_pb2.Conversation) -> list[str]:
    """Summarize the citations and the outcome results for an ended event.

    A section is left out when nothing of its kind was configured or produced.
    It reads `none` when schemas or outcomes were configured but gave nothing.
    """
    parts: list[str] = []
    citations = [
        f"{citation.variable}={format_value(citation.value)}"
        for citation in conversation.citations
    ]
    if citations or conversation.config.citation_schema_ids:
        parts.append("citations: " + (", ".join(citations) or "none"))
    outcomes = [_outcome_summary(result) for result in conversation.outcomes]
    if outcomes or conversation.config.outcome_ids:
        parts.append("outcomes: " + (", ".join(outcomes) or "none"))
    return parts


def _outcome_summary(result: types_pb2.OutcomeResult) -> str:
    status = enum_label(types_pb2.OutcomeStatus, result.status)
    if result.status == types_pb2.OUTCOME_STATUS_SUCCEEDED:
        return f"{result.outcome_id} {status} {format_value(result.result)}"
    return (
        f"{result.outcome_id} {status} {json.dumps(result.error, ensure_ascii=False)}"
    )
