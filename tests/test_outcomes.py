"""Tests for outcome validation and sandboxed script runs in server.outcomes."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from typing import Any

import grpc
import pytest
from google.protobuf import json_format, struct_pb2, timestamp_pb2
from parley.v1 import definitions_pb2, events_pb2, types_pb2

from server import outcomes
from server.errors import ParleyError
from server.outcomes import (
    MAX_CONCURRENT_RUNS,
    RESULT_MAX_DEPTH,
    citations_for_scripts,
    run_outcome,
    run_outcome_async,
    transcript_for_scripts,
    validate_outcome,
)

SUCCEEDED = types_pb2.OUTCOME_STATUS_SUCCEEDED
FAILED = types_pb2.OUTCOME_STATUS_FAILED


def outcome(script: str, **limits: int) -> definitions_pb2.Outcome:
    return definitions_pb2.Outcome(id="booked", script=script, **limits)


def run(
    script: str,
    transcript: list[dict[str, Any]] | None = None,
    citations: list[dict[str, Any]] | None = None,
    metadata: dict[str, Any] | None = None,
    **limits: int,
) -> types_pb2.OutcomeResult:
    return run_outcome(
        outcome(script, **limits), transcript or [], citations or [], metadata or {}
    )


def result_value(result: types_pb2.OutcomeResult) -> Any:
    return json_format.MessageToDict(result.result)


def test_returned_object_succeeds() -> None:
    result = run("return {booked: true}")
    assert result.status == SUCCEEDED, result.error
    assert result.outcome_id == "booked"
    assert result.error == ""
    assert result.result.struct_value.fields["booked"].bool_value is True
    assert result_value(result) == {"booked": True}


def test_undefined_result_is_null() -> None:
    result = run("const unused = 1;")
    assert result.status == SUCCEEDED, result.error
    assert result.result.WhichOneof("kind") == "null_value"


def test_infinite_loop_hits_time_limit() -> None:
    started = time.monotonic()
    result = run("while (true) {}", time_limit_ms=300)
    elapsed = time.monotonic() - started
    assert result.status == FAILED
    assert result.error == "time limit of 300 ms exceeded"
    assert result.duration_ms >= 300
    assert elapsed < 5.0


def test_default_time_limit_is_one_second() -> None:
    result = run("while (true) {}")
    assert result.error == "time limit of 1,000 ms exceeded"


def test_memory_hog_hits_memory_limit() -> None:
    script = "const items = []; while (true) { items.push({n: Math.random()}); }"
    result = run(script, memory_limit_mb=16)
    assert result.status == FAILED
    assert result.error == "memory limit of 16 MiB exceeded"


def test_default_memory_limit_is_32_mib() -> None:
    script = "const parts = []; while (true) { parts.push('x'.repeat(1e5) + Math.random()); }"
    result = run(script)
    assert result.error == "memory limit of 32 MiB exceeded"


def test_single_huge_allocation_hits_memory_limit() -> None:
    # One builtin call allocates hundreds of MiB before mini-racer checks the heap,
    # so V8's own heap maximum in the child has to stop it.
    result = run("const s = 'x'.repeat(2 ** 28); return s.toUpperCase().length;")
    assert result.status == FAILED
    assert result.error == "memory limit of 32 MiB exceeded"


def test_uninterruptible_fill_fails() -> None:
    # Array.prototype.fill ignores the timeout while V8 collects garbage near
    # its heap maximum, so on a busy machine the parent may kill the child first.
    result = run("return new Array(1e9).fill(0).length;")
    assert result.status == FAILED
    assert result.error in {
        "memory limit of 32 MiB exceeded",
        "time limit of 1,000 ms exceeded",
    }


def test_thrown_error_fails_with_line() -> None:
    result = run("const a = 1;\nconst b = 2;\nthrow new Error('boom');")
    assert result.status == FAILED
    assert result.error == "Error: boom at line 3"
    assert result.result.WhichOneof("kind") is None


def test_type_error_fails_with_message() -> None:
    result = run("return transcript[5].text;")
    assert result.status == FAILED
    assert "TypeError" in result.error
    assert result.error.endswith("at line 1")


def test_fatal_engine_error_fails_only_the_run() -> None:
    # Splitting a 2^28-character string makes V8 abort instead of raising.
    script = "const s = 'ab'.repeat(2 ** 27); return s.split('').length;"
    result = run(script)
    assert result.status == FAILED
    assert result.error.startswith("the JavaScript engine aborted the process")
    assert run("return 1").status == SUCCEEDED


def test_failed_child_fails_the_run(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(outcomes, "_CHILD_SOURCE", "import sys; sys.exit('no engine')")
    result = run("return 1")
    assert result.status == FAILED
    assert result.error == "the script process failed with exit status 1: no engine"


def test_unstartable_child_fails_the_run(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(outcomes.sys, "executable", "/nonexistent/python")
    result = run("return 1")
    assert result.status == FAILED
    assert result.error.startswith("cannot start the script process")


def test_no_module_network_or_process_access() -> None:
    names = [
        "require",
        "fetch",
        "process",
        "XMLHttpRequest",
        "Deno",
        "Bun",
    ]
    script = "return [" + ", ".join(f"typeof {name}" for name in names) + "];"
    result = run(script)
    assert result.status == SUCCEEDED, result.error
    assert result_value(result) == ["undefined"] * len(names)


def test_buffers_outside_heap_are_removed() -> None:
    names = [
        "ArrayBuffer",
        "SharedArrayBuffer",
        "Uint8Array",
        "Float64Array",
        "WebAssembly",
    ]
    script = "return [" + ", ".join(f"typeof {name}" for name in names) + "];"
    result = run(script)
    assert result_value(result) == ["undefined"] * len(names)


def test_runs_share_no_state() -> None:
    first = run("globalThis.counter = (globalThis.counter || 0) + 1; return counter;")
    second = run("globalThis.counter = (globalThis.counter || 0) + 1; return counter;")
    assert result_value(first) == 1
    assert result_value(second) == 1


def test_inputs_are_visible_to_script() -> None:
    transcript = [{"id": "m1", "text": "hi"}, {"id": "m2", "text": "bye"}]
    citations = [{"variable": "email", "value": "ann@home.example"}]
    metadata = {"crm_id": "c-1", "tier": 2}
    script = """
      return {
        messages: transcript.length,
        last: transcript[transcript.length - 1].id,
        email: citations.find((c) => c.variable === "email").value,
        keys: Object.keys(metadata).sort(),
      };
    """
    result = run(script, transcript, citations, metadata)
    assert result.status == SUCCEEDED, result.error
    assert result_value(result) == {
        "messages": 2,
        "last": "m2",
        "email": "ann@home.example",
        "keys": ["crm_id", "tier"],
    }


def test_script_text_is_not_spliced_into_code() -> None:
    # Quotes and a closing bracket in the script stay inside the function body.
    result = run('return "\\")}); globalThis.escaped = true; ({"')
    assert result.status == SUCCEEDED, result.error
    assert result_value(result) == '")}); globalThis.escaped = true; ({'


def test_result_over_size_cap_fails() -> None:
    result = run("return 'x'.repeat(70000);")
    assert result.status == FAILED
    assert "the maximum is 65,536 bytes" in result.error


def test_multibyte_result_over_size_cap_fails() -> None:
    # 30,000 characters pass the JavaScript length check but are 90,000 bytes.
    result = run("return '\u20ac'.repeat(30000);")
    assert result.status == FAILED
    assert (
        result.error
        == "the result is 90,002 bytes of JSON; the maximum is 65,536 bytes"
    )


def test_result_under_size_cap_succeeds() -> None:
    result = run("return 'x'.repeat(60000);")
    assert result.status == SUCCEEDED, result.error


def nested_arrays_script(depth: int) -> str:
    """Return a script whose result is `depth` arrays, each inside the next."""
    return f"let v = []; for (let i = 1; i < {depth}; i++) v = [v]; return v;"


def nested_objects_script(depth: int) -> str:
    """Return a script whose result is `depth` objects, each inside the next."""
    return f"let v = {{}}; for (let i = 1; i < {depth}; i++) v = {{a: v}}; return v;"


@pytest.mark.parametrize("make_script", [nested_arrays_script, nested_objects_script])
def test_result_at_max_depth_succeeds(make_script: Callable[[int], str]) -> None:
    result = run(make_script(RESULT_MAX_DEPTH))
    assert RESULT_MAX_DEPTH == 20
    assert result.status == SUCCEEDED, result.error
    assert result.error == ""


@pytest.mark.parametrize("make_script", [nested_arrays_script, nested_objects_script])
@pytest.mark.parametrize("depth", [RESULT_MAX_DEPTH + 1, 50])
def test_result_over_max_depth_fails(
    make_script: Callable[[int], str], depth: int
) -> None:
    result = run(make_script(depth))
    assert result.status == FAILED
    assert result.error.startswith("the result is nested deeper than 20 levels")
    assert not result.HasField("result")


def test_scalars_in_deep_result_count_no_level() -> None:
    # 20 arrays around a number and a string stay within the limit.
    script = "let v = [1, 'x']; for (let i = 1; i < 20; i++) v = [v, 2]; return v;"
    result = run(script)
    assert result.status == SUCCEEDED, result.error


def test_max_depth_result_round_trips_in_event() -> None:
    result = run(nested_arrays_script(RESULT_MAX_DEPTH))
    assert result.status == SUCCEEDED, result.error
    event = events_pb2.Event(
        conversation=types_pb2.Conversation(outcomes=[result]),
    )
    decoded = events_pb2.Event.FromString(event.SerializeToString())
    assert decoded == event
    assert decoded.conversation.outcomes[0].result == result.result


@pytest.mark.parametrize(
    ("script", "fragment"),
    [
        ("return () => 1;", "value of type function"),
        ("return Symbol('s');", "value of type symbol"),
        ("return 10n;", "Do not know how to serialize a BigInt"),
        ("const a = {}; a.self = a; return a;", "circular structure"),
        ("return {toJSON() { throw new Error('nope'); }};", "Error: nope"),
        ("return Promise.resolve(1);", "returned a Promise"),
    ],
)
def test_unserialisable_results_fail(script: str, fragment: str) -> None:
    result = run(script)
    assert result.status == FAILED
    assert fragment in result.error


def test_overwritten_json_does_not_break_result() -> None:
    result = run("JSON.stringify = () => 'oops'; return {ok: 1};")
    assert result.status == SUCCEEDED, result.error
    assert result_value(result) == {"ok": 1}


def test_non_json_inputs_fail_without_raising() -> None:
    result = run("return 1;", metadata={"bad": float("nan")})
    assert result.status == FAILED
    assert result.error.startswith("the inputs cannot be converted to JSON")


def test_duration_is_measured() -> None:
    result = run("const end = Date.now() + 50; while (Date.now() < end) {} return 1;")
    assert result.status == SUCCEEDED, result.error
    assert 50 <= result.duration_ms < 1000


def test_validate_accepts_valid_outcome() -> None:
    validate_outcome(outcome("return {booked: true};", time_limit_ms=10_000))
    validate_outcome(outcome("return 1", memory_limit_mb=256))


def test_validate_rejects_syntax_error() -> None:
    with pytest.raises(ParleyError) as caught:
        validate_outcome(outcome("const x = 1;\nreturn x +* 2;"))
    error = caught.value
    assert error.code == grpc.StatusCode.INVALID_ARGUMENT
    assert error.reason == "INVALID_OUTCOME_SCRIPT"
    assert "SyntaxError" in error.message
    assert "at line 2" in error.message
    assert error.violations[0].field == "outcome.script"


def test_validate_does_not_run_script() -> None:
    # Compiling must not execute the body, or this would hit a time limit.
    validate_outcome(outcome("while (true) {}"))


async def test_validate_works_on_event_loop() -> None:
    with pytest.raises(ParleyError) as caught:
        validate_outcome(outcome("return {"))
    assert caught.value.reason == "INVALID_OUTCOME_SCRIPT"


@pytest.mark.parametrize(
    ("changes", "field", "reason", "fragment"),
    [
        ({"id": ""}, "outcome.id", "INVALID_OUTCOME", "printable characters"),
        ({"id": "a b"}, "outcome.id", "INVALID_OUTCOME", "without spaces"),
        ({"id": "x" * 129}, "outcome.id", "INVALID_OUTCOME", "1 to 128"),
        ({"script": ""}, "outcome.script", "INVALID_OUTCOME_SCRIPT", "is empty"),
        ({"script": " \n "}, "outcome.script", "INVALID_OUTCOME_SCRIPT", "is empty"),
        (
            {"script": "//" + "x" * 65535},
            "outcome.script",
            "INVALID_OUTCOME_SCRIPT",
            "65,537 bytes",
        ),
        (
            {"time_limit_ms": 10_001},
            "outcome.time_limit_ms",
            "INVALID_OUTCOME",
            "1 to 10,000",
        ),
        (
            {"memory_limit_mb": 257},
            "outcome.memory_limit_mb",
            "INVALID_OUTCOME",
            "1 to 256",
        ),
        ({"script": "}"}, "outcome.script", "INVALID_OUTCOME_SCRIPT", "SyntaxError"),
        (
            {"script": "return " + "(" * 30000 + "1" + ")" * 30000},
            "outcome.script",
            "INVALID_OUTCOME_SCRIPT",
            "Maximum call stack size exceeded",
        ),
    ],
)
def test_validate_names_invalid_field(
    changes: dict[str, Any], field: str, reason: str, fragment: str
) -> None:
    candidate = outcome("return 1")
    for name, value in changes.items():
        setattr(candidate, name, value)
    with pytest.raises(ParleyError) as caught:
        validate_outcome(candidate)
    error = caught.value
    assert error.reason == reason
    assert error.message.startswith(field)
    assert fragment in error.message
    assert [violation.field for violation in error.violations] == [field]


async def test_concurrent_async_runs_all_complete() -> None:
    scripts = [
        f"return {{index: {index}, size: transcript.length}};" for index in range(5)
    ]
    results = await asyncio.gather(
        *(
            run_outcome_async(outcome(script), [{"id": "m1"}], [], {})
            for script in scripts
        )
    )
    assert [result.status for result in results] == [SUCCEEDED] * 5
    assert [result_value(result)["index"] for result in results] == list(range(5))


async def test_async_runs_are_limited(monkeypatch: pytest.MonkeyPatch) -> None:
    lock = threading.Lock()
    running = 0
    peak = 0

    def slow_run(*args: Any) -> types_pb2.OutcomeResult:
        nonlocal running, peak
        with lock:
            running += 1
            peak = max(peak, running)
        time.sleep(0.05)
        with lock:
            running -= 1
        return types_pb2.OutcomeResult(status=SUCCEEDED)

    monkeypatch.setattr(outcomes, "run_outcome", slow_run)
    await asyncio.gather(
        *(run_outcome_async(outcome("return 1"), [], [], {}) for _ in range(6))
    )
    assert peak == MAX_CONCURRENT_RUNS


async def test_async_run_leaves_event_loop_free() -> None:
    ticks = 0

    async def tick() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    ticker = asyncio.create_task(tick())
    result = await run_outcome_async(
        outcome("while (true) {}", time_limit_ms=300), [], [], {}
    )
    ticker.cancel()
    assert result.status == FAILED
    assert ticks >= 10


def test_transcript_for_scripts_shape() -> None:
    created = timestamp_pb2.Timestamp()
    created.FromJsonString("2026-11-30T15:00:00.250Z")
    messages = [
        types_pb2.Message(
            id="m1",
            sender=types_pb2.SENDER_USER,
            text="hi",
            status=types_pb2.MESSAGE_STATUS_RECEIVED,
            created_at=created,
        ),
        types_pb2.Message(
            id="m2",
            sender=types_pb2.SENDER_AGENT,
            text="hello",
            status=types_pb2.MESSAGE_STATUS_DELIVERED,
            history=True,
        ),
    ]
    assert transcript_for_scripts(messages) == [
        {
            "id": "m1",
            "sender": "user",
            "text": "hi",
            "status": "received",
            "history": False,
            "created_at": "2026-11-30T15:00:00.250Z",
        },
        {
            "id": "m2",
            "sender": "agent",
            "text": "hello",
            "status": "delivered",
            "history": True,
            "created_at": None,
        },
    ]


def test_citations_for_scripts_shape() -> None:
    citation = types_pb2.Citation(
        schema_id="booking",
        variable="party_size",
        type="NUMBER",
        value=struct_pb2.Value(number_value=4),
        message_id="m3",
        confidence=0.72,
        excerpt="party of 4",
    )
    assert citations_for_scripts([citation, types_pb2.Citation(variable="x")]) == [
        {
            "schema_id": "booking",
            "variable": "party_size",
            "type": "NUMBER",
            "value": 4.0,
            "message_id": "m3",
            "confidence": 0.72,
            "excerpt": "party of 4",
        },
        {
            "schema_id": "",
            "variable": "x",
            "type": "",
            "value": None,
            "message_id": "",
            "confidence": 0.0,
            "excerpt": "",
        },
    ]
