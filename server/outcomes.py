"""Outcome scripts: validation, and sandboxed runs of account JavaScript.

An outcome's script is the body of a JavaScript function called with
`(transcript, citations, metadata)` when a conversation ends. It runs in V8
through mini-racer (`py_mini_racer`, version 0.14.1), which exposes only the
ECMAScript built-ins: there is no `require`, `fetch`, `process`, file system
or network access.

Every run starts a fresh Python child process with its own V8 isolate, so no
state is shared between runs or accounts. The process boundary is needed
because some allocations abort the whole process with a V8 fatal error
instead of raising: with mini-racer 0.14.1, `new Array(1e9).fill(0)` ends
the process with "Fatal JavaScript out of memory: invalid table size". In a
child, such a script fails only its own run.

Limits: the time limit is mini-racer's eval timeout, and the parent kills a
child still running 5 seconds after the limit. The memory limit is
mini-racer's hard limit on the V8 heap, which is checked after garbage
collections. A single large allocation, such as `s.toUpperCase()` on a
256 MiB string, passes that check, so the child also runs V8 with a heap
maximum of twice the limit (at least 32 MiB). V8 aborts the child when it
reaches that maximum, which is reported as the memory limit too.
ArrayBuffer, SharedArrayBuffer, DataView, the typed arrays and WebAssembly
are deleted before the script runs, because their memory is outside the V8
heap and neither limit counts it.
"""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import sys
import time
import weakref
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import structlog
from google.protobuf import json_format, struct_pb2
from parley.v1 import definitions_pb2, types_pb2
from py_mini_racer import JSEvalException, JSTimeoutException, MiniRacer

from server.errors import invalid_argument
from server.validation import quote_value

OUTCOME_ID_MAX_CHARS = 128
SCRIPT_MAX_BYTES = 64 * 1024
RESULT_MAX_BYTES = 64 * 1024
# Each JSON level costs two protobuf levels (Value, then ListValue or Struct),
# and an event wraps the result in three more (Event, Conversation and
# OutcomeResult). The upb decoder of the Python protobuf runtime limits the
# nesting depth: with protobuf 7.36.2 an Event holding a result 50 levels deep
# fails to decode, and so does every later read of its conversation. 20 levels
# leave room for responses that wrap the conversation further.
RESULT_MAX_DEPTH = 20
DEFAULT_TIME_LIMIT_MS = 1_000
MAX_TIME_LIMIT_MS = 10_000
DEFAULT_MEMORY_LIMIT_MB = 32
MAX_MEMORY_LIMIT_MB = 256
MAX_CONCURRENT_RUNS = 2
ERROR_MAX_CHARS = 1_000

log = structlog.get_logger("parley.outcomes")

# Time the child may take beyond the script's limit to start Python and V8
# and to stop, before the parent kills it.
_CHILD_GRACE_SECONDS = 5.0
_COMPILE_TIME_LIMIT_MS = 2_000
# V8's own heap maximum in the child is twice the memory limit, so that an
# allocation too large for mini-racer's check ends the child, not the machine.
_MIN_OLD_SPACE_MB = 32
_PARAMETERS = ("transcript", "citations", "metadata")
# V8 puts two lines before the body of `new Function`: the signature and "{".
_FUNCTION_HEADER_LINES = 2
# Globals whose memory lies outside the V8 heap.
_REMOVED_GLOBALS = [
    "ArrayBuffer",
    "SharedArrayBuffer",
    "DataView",
    "WebAssembly",
    "Int8Array",
    "Uint8Array",
    "Uint8ClampedArray",
    "Int16Array",
    "Uint16Array",
    "Int32Array",
    "Uint32Array",
    "Float16Array",
    "Float32Array",
    "Float64Array",
    "BigInt64Array",
    "BigUint64Array",
]
# The first line of a mini-racer exception: "<script name>:<line>: <message>".
# Code made by `new Function` has the script name "undefined".
_V8_LOCATION = re.compile(r"(?P<script>[^\n]*?):(?P<line>[0-9]+): (?P<message>[^\n]*)")

# Source of the child process. It imports only py_mini_racer, reads one
# request as JSON on stdin and writes one report as JSON on stdout.
_CHILD_SOURCE = """
import json, sys, time
from py_mini_racer import (
    DEFAULT_V8_FLAGS, JSEvalException, JSOOMException, JSTimeoutException, MiniRacer,
    init_mini_racer,
)
request = json.load(sys.stdin)
heap_flag = f"--max-old-space-size={request['max_old_space_mb']}"
init_mini_racer(flags=(*DEFAULT_V8_FLAGS, heap_flag))
with MiniRacer() as context:
    started = time.monotonic()
    try:
        value = context.eval(
            request["program"],
            timeout_sec=request["time_limit_ms"] / 1000,
            max_memory=request["memory_limit_bytes"],
        )
        report = {"kind": "value", "text": value if isinstance(value, str) else None}
    except JSTimeoutException:
        report = {"kind": "timeout"}
    except JSOOMException:
        report = {"kind": "memory"}
    except JSEvalException as error:
        report = {"kind": "error", "message": str(error)[:4000]}
    report["elapsed_ms"] = round((time.monotonic() - started) * 1000)
sys.stdout.write(json.dumps(report))
"""


def validate_outcome(
    outcome: definitions_pb2.Outcome, field_prefix: str = "outcome"
) -> None:
    """Raise INVALID_ARGUMENT unless `outcome` can be stored and run.

    The id is 1 to 128 printable characters without whitespace, the time
    limit at most 10,000 ms and the memory limit at most 256 MiB (reason
    INVALID_OUTCOME). The script must be non-blank, at most 64 KiB of UTF-8
    and compile as a function body (reason INVALID_OUTCOME_SCRIPT, with V8's
    SyntaxError). Compiling runs V8 in this process on a short-lived thread
    and blocks the caller for a few tens of milliseconds.
    """
    _check_id(outcome.id, f"{field_prefix}.id")
    _check_limits(outcome, field_prefix)
    field = f"{field_prefix}.script"
    script = outcome.script
    if not script.strip():
        raise invalid_argument(
            field,
            f"{field} is empty; send the body of a JavaScript function that "
            "receives (transcript, citations, metadata)",
            "INVALID_OUTCOME_SCRIPT",
        )
    size = len(script.encode("utf-8", "surrogatepass"))
    if size > SCRIPT_MAX_BYTES:
        raise invalid_argument(
            field,
            f"{field} is {size:,} bytes of UTF-8; the maximum is {SCRIPT_MAX_BYTES:,}",
            "INVALID_OUTCOME_SCRIPT",
        )
    error = _compile_error(script)
    if error is not None:
        raise invalid_argument(
            field,
            f"{field} does not compile as a function body: {error}",
            "INVALID_OUTCOME_SCRIPT",
        )


def _check_id(value: str, field: str) -> None:
    valid = (
        0 < len(value) <= OUTCOME_ID_MAX_CHARS
        and value.isprintable()
        and not any(char.isspace() for char in value)
    )
    if not valid:
        raise invalid_argument(
            field,
            f"{field} {quote_value(value)} is not a valid id; send 1 to "
            f"{OUTCOME_ID_MAX_CHARS} printable characters without spaces",
            "INVALID_OUTCOME",
        )


def _check_limits(outcome: definitions_pb2.Outcome, field_prefix: str) -> None:
    if outcome.time_limit_ms > MAX_TIME_LIMIT_MS:
        field = f"{field_prefix}.time_limit_ms"
        raise invalid_argument(
            field,
            f"{field} is {outcome.time_limit_ms:,}; send 1 to {MAX_TIME_LIMIT_MS:,} "
            f"milliseconds, or 0 for {DEFAULT_TIME_LIMIT_MS:,}",
            "INVALID_OUTCOME",
        )
    if outcome.memory_limit_mb > MAX_MEMORY_LIMIT_MB:
        field = f"{field_prefix}.memory_limit_mb"
        raise invalid_argument(
            field,
            f"{field} is {outcome.memory_limit_mb:,}; send 1 to {MAX_MEMORY_LIMIT_MB} "
            f"MiB, or 0 for {DEFAULT_MEMORY_LIMIT_MB}",
            "INVALID_OUTCOME",
        )


def _compile_error(script: str) -> str | None:
    """Return V8's error for `script` as a function body, or None if it compiles.

    mini-racer cannot apply a timeout on a thread that runs an asyncio event
    loop, so V8 runs on a new thread.
    """
    with ThreadPoolExecutor(
        max_workers=1, thread_name_prefix="outcome-compile"
    ) as pool:
        return pool.submit(_compile_in_v8, script).result()


def _compile_in_v8(script: str) -> str | None:
    program = f"new Function({_function_arguments(script)}); null"
    with MiniRacer() as context:
        try:
            context.eval(program, timeout_sec=_COMPILE_TIME_LIMIT_MS / 1000)
        except JSTimeoutException:
            return f"compiling took over {_COMPILE_TIME_LIMIT_MS:,} ms"
        except JSEvalException as error:
            return _describe_exception(str(error), script)
    return None


def _function_arguments(script: str) -> str:
    """Return the `new Function` arguments, the script as a JSON string literal."""
    parameters = ", ".join(json.dumps(name) for name in _PARAMETERS)
    return f"{parameters}, {json.dumps(script)}"


def _describe_exception(text: str, script: str) -> str:
    """Format a mini-racer exception as "<message> at line <n>" of the script.

    An exception outside the script's code, such as a stack overflow while
    parsing it, has no line.
    """
    match = _V8_LOCATION.match(text)
    if match is None:
        return _cut(text.strip())
    message = _cut(match["message"])
    if match["script"] != "undefined":
        return message
    line = int(match["line"]) - _FUNCTION_HEADER_LINES
    if line > script.count("\n") + 1:
        return f"{message} at the end of the script"
    return f"{message} at line {line}"


def _cut(text: str) -> str:
    if len(text) <= ERROR_MAX_CHARS:
        return text
    return text[: ERROR_MAX_CHARS - 3] + "..."


@dataclass(frozen=True)
class _Limits:
    time_ms: int
    memory_mb: int


def run_outcome(
    outcome: definitions_pb2.Outcome,
    transcript: list[dict[str, Any]],
    citations: list[dict[str, Any]],
    metadata: dict[str, Any],
) -> types_pb2.OutcomeResult:
    """Run the outcome's script in a new child process and return its result.

    Blocks until the child ends. Never raises for a problem of the script
    or its inputs. An exception or the time or memory limit gives status
    FAILED with `error`, and so does a result that JSON cannot represent,
    that exceeds 64 KiB or that nests arrays and objects over 20 levels deep.
    `duration_ms` is the script's time measured in the child, or the wall
    time when the child did not report.
    """
    limits = _Limits(
        outcome.time_limit_ms or DEFAULT_TIME_LIMIT_MS,
        outcome.memory_limit_mb or DEFAULT_MEMORY_LIMIT_MB,
    )
    started = time.monotonic()
    try:
        inputs = json.dumps(
            {"transcript": transcript, "citations": citations, "metadata": metadata},
            allow_nan=False,
        )
    except (TypeError, ValueError, RecursionError) as error:
        return _failed(outcome, f"the inputs cannot be converted to JSON: {error}", 0)
    report = _run_in_child(_run_program(outcome.script, inputs), limits, outcome.id)
    elapsed_ms = report.get("elapsed_ms")
    if not isinstance(elapsed_ms, int):
        elapsed_ms = round((time.monotonic() - started) * 1000)
    return _result_from_report(outcome, report, limits, elapsed_ms)


def _run_program(script: str, inputs: str) -> str:
    """Build the JavaScript that runs `script` and returns its result as JSON text.

    Text starting with "!" is a failure marker, which JSON text never is:
    "!promise", "!<typeof>" for a value JSON.stringify skips, "!size <n>", or
    "!json <exception>" when JSON.stringify throws.
    """
    removed = json.dumps(_REMOVED_GLOBALS)
    return f"""(() => {{
  const input = JSON.parse({json.dumps(inputs)});
  const stringify = JSON.stringify;
  const PromiseType = Promise;
  for (const name of {removed}) delete globalThis[name];
  const run = new Function({_function_arguments(script)});
  const value = run(input.transcript, input.citations, input.metadata);
  if (value instanceof PromiseType) return "!promise";
  if (value === undefined) return "null";
  let text;
  try {{
    text = stringify(value);
  }} catch (error) {{
    try {{
      return "!json " + String(error);
    }} catch {{
      return "!json an exception that cannot be converted to text";
    }}
  }}
  if (typeof text !== "string") return "!" + typeof value;
  if (text.length > {RESULT_MAX_BYTES}) return "!size " + text.length;
  return text;
}})()"""


def _run_in_child(program: str, limits: _Limits, outcome_id: str) -> dict[str, Any]:
    """Evaluate `program` in a new child process and return its report.

    When the child writes no report, the report has kind "timeout" (the
    parent killed it), "memory" (V8 aborted at its heap maximum) or "crash"
    (with another V8 fatal error or the exit status).
    """
    request = json.dumps(
        {
            "program": program,
            "time_limit_ms": limits.time_ms,
            "memory_limit_bytes": limits.memory_mb * 1024 * 1024,
            "max_old_space_mb": max(2 * limits.memory_mb, _MIN_OLD_SPACE_MB),
        }
    )
    try:
        completed = subprocess.run(
            [sys.executable, "-I", "-c", _CHILD_SOURCE],
            input=request,
            capture_output=True,
            encoding="utf-8",
            errors="replace",
            timeout=limits.time_ms / 1000 + _CHILD_GRACE_SECONDS,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return {"kind": "timeout"}
    except OSError as error:
        log.error(
            "outcome_process_start_failed", outcome_id=outcome_id, error=str(error)
        )
        return {"kind": "crash", "message": f"cannot start the script process: {error}"}
    try:
        report = json.loads(completed.stdout)
    except json.JSONDecodeError:
        report = None
    if completed.returncode == 0 and isinstance(report, dict):
        return report
    return _report_failed_child(completed, outcome_id)


def _report_failed_child(
    completed: subprocess.CompletedProcess[str], outcome_id: str
) -> dict[str, Any]:
    """Build the report of a child that wrote none, from its stderr and exit status."""
    lines = [line.strip() for line in completed.stderr.splitlines() if line.strip()]
    # V8 prints a fatal error as "# Fatal <kind>" lines, the most specific last.
    fatal = [line[2:] for line in lines if line.startswith("# Fatal")]
    if fatal and "out of memory" in fatal[-1]:
        return {"kind": "memory"}
    if fatal:
        message = f"the JavaScript engine aborted the process: {_cut(fatal[-1])}"
        return {"kind": "crash", "message": message}
    # Without a V8 fatal error the child failed outside the script, for example
    # because py_mini_racer is missing or the kernel's OOM killer ended it.
    detail = _cut(lines[-1]) if lines else "no error output"
    log.error(
        "outcome_process_failed",
        outcome_id=outcome_id,
        exit_status=completed.returncode,
        error=detail,
    )
    message = (
        f"the script process failed with exit status {completed.returncode}: {detail}"
    )
    return {"kind": "crash", "message": message}


def _result_from_report(
    outcome: definitions_pb2.Outcome,
    report: dict[str, Any],
    limits: _Limits,
    elapsed_ms: int,
) -> types_pb2.OutcomeResult:
    kind = report.get("kind")
    if kind == "timeout":
        error = f"time limit of {limits.time_ms:,} ms exceeded"
    elif kind == "memory":
        error = f"memory limit of {limits.memory_mb} MiB exceeded"
    elif kind == "error":
        error = _describe_exception(str(report.get("message")), outcome.script)
    elif kind == "value" and isinstance(report.get("text"), str):
        return _result_from_json(outcome, report["text"], elapsed_ms)
    else:
        error = str(report.get("message", "the script process sent no result"))
    return _failed(outcome, error, elapsed_ms)


def _result_from_json(
    outcome: definitions_pb2.Outcome, text: str, elapsed_ms: int
) -> types_pb2.OutcomeResult:
    if text == "!promise":
        error = "the script returned a Promise, which is not awaited; return a value"
        return _failed(outcome, error, elapsed_ms)
    if text.startswith("!size "):
        size = int(text.removeprefix("!size "))
        error = f"the result is {size:,} characters of JSON; the maximum is {RESULT_MAX_BYTES:,} bytes"
        return _failed(outcome, error, elapsed_ms)
    if text.startswith("!json "):
        detail = _cut(text.removeprefix("!json ").splitlines()[0])
        error = f"the result cannot be converted to JSON: {detail}"
        return _failed(outcome, error, elapsed_ms)
    if text.startswith("!"):
        error = f"the script returned a value of type {text[1:]}, which JSON cannot represent"
        return _failed(outcome, error, elapsed_ms)
    size = len(text.encode("utf-8", "surrogatepass"))
    if size > RESULT_MAX_BYTES:
        error = f"the result is {size:,} bytes of JSON; the maximum is {RESULT_MAX_BYTES:,} bytes"
        return _failed(outcome, error, elapsed_ms)
    try:
        parsed = json.loads(text)
    except (ValueError, RecursionError) as parse_error:
        message = f"the result cannot be stored: {parse_error}"
        return _failed(outcome, message, elapsed_ms)
    if _json_depth(parsed) > RESULT_MAX_DEPTH:
        message = (
            f"the result is nested deeper than {RESULT_MAX_DEPTH} levels; return "
            "flatter arrays and objects"
        )
        return _failed(outcome, message, elapsed_ms)
    value = struct_pb2.Value()
    try:
        json_format.ParseDict(parsed, value)
    except (ValueError, RecursionError, json_format.ParseError) as error:
        return _failed(outcome, f"the result cannot be stored: {error}", elapsed_ms)
    return types_pb2.OutcomeResult(
        outcome_id=outcome.id,
        status=types_pb2.OUTCOME_STATUS_SUCCEEDED,
        result=value,
        duration_ms=elapsed_ms,
    )


def _json_depth(value: Any) -> int:
    """Count the nesting levels of arrays and objects in `value`. A scalar has 0.

    Iterative, so it measures any depth that `json.loads` accepted.
    """
    deepest = 0
    pending: list[tuple[Any, int]] = [(value, 0)]
    while pending:
        item, depth = pending.pop()
        if isinstance(item, dict):
            children: list[Any] = list(item.values())
        elif isinstance(item, list):
            children = item
        else:
            continue
        deepest = max(deepest, depth + 1)
        pending.extend((child, depth + 1) for child in children)
    return deepest


def _failed(
    outcome: definitions_pb2.Outcome, error: str, elapsed_ms: int
) -> types_pb2.OutcomeResult:
    return types_pb2.OutcomeResult(
        outcome_id=outcome.id,
        status=types_pb2.OUTCOME_STATUS_FAILED,
        error=error,
        duration_ms=elapsed_ms,
    )


# An asyncio.Semaphore belongs to the event loop that first waits on it, so
# each loop gets its own. A server runs one loop; tests start one per test.
_run_slots: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Semaphore] = (
    weakref.WeakKeyDictionary()
)


async def run_outcome_async(
    outcome: definitions_pb2.Outcome,
    transcript: list[dict[str, Any]],
    citations: list[dict[str, Any]],
    metadata: dict[str, Any],
) -> types_pb2.OutcomeResult:
    """Run `run_outcome` on a worker thread, at most 2 at once per event loop."""
    loop = asyncio.get_running_loop()
    slots = _run_slots.get(loop)
    if slots is None:
        slots = _run_slots[loop] = asyncio.Semaphore(MAX_CONCURRENT_RUNS)
    async with slots:
        return await asyncio.to_thread(
            run_outcome, outcome, transcript, citations, metadata
        )


def transcript_for_scripts(
    messages: Sequence[types_pb2.Message],
) -> list[dict[str, Any]]:
    """Convert messages to the `transcript` argument of outcome scripts.

    Each entry has id, sender ("user" or "agent"), text, status (such as
    "received" or "delivered"), history (true for history messages) and
    created_at (ISO 8601 UTC text, or null when unset).
    """
    return [
        {
            "id": message.id,
            "sender": "agent" if message.sender == types_pb2.SENDER_AGENT else "user",
            "text": message.text,
            "status": _status_name(message.status),
            "history": message.history,
            "created_at": (
                message.created_at.ToJsonString()
                if message.HasField("created_at")
                else None
            ),
        }
        for message in messages
    ]


def _status_name(status: types_pb2.MessageStatus.ValueType) -> str:
    name = types_pb2.MessageStatus.Name(status)
    return name.removeprefix("MESSAGE_STATUS_").lower()


def citations_for_scripts(
    citations: Sequence[types_pb2.Citation],
) -> list[dict[str, Any]]:
    """Convert citations to the `citations` argument of outcome scripts.

    Each entry has schema_id, variable, type, value (a JSON value), message_id,
    confidence and excerpt.
    """
    return [
        {
            "schema_id": citation.schema_id,
            "variable": citation.variable,
            "type": citation.type,
            "value": (
                json_format.MessageToDict(citation.value)
                if citation.HasField("value")
                else None
            ),
            "message_id": citation.message_id,
            "confidence": citation.confidence,
            "excerpt": citation.excerpt,
        }
        for citation in citations
    ]
