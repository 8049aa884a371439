"""End-to-end tests of the `parley` command against a real server.

The server runs in the test's event loop (the `server` fixture) with its own
SQLite file. Every command runs as the installed `parley` console script in a
subprocess, so the tests check the stdout, stderr and exit code that a user
gets.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import sqlite3
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import (
    ACME_KEY,
    ACME_NUMBER,
    GLOBEX_KEY,
    OPERATOR_KEY,
    USER_NUMBER,
    base_config,
)
from google.protobuf import json_format, struct_pb2
from parley.v1 import events_pb2, types_pb2

from server.app import Parley
from server.citations import validate_citation_schema
from server.config_file import parse_config
from server.outcomes import (
    citations_for_scripts,
    run_outcome,
    transcript_for_scripts,
    validate_outcome,
)
from server.pathways.graph import PathwayGraph

PARLEY_SCRIPT = Path(sys.executable).with_name("parley")
# Upper bound for one command, far above the time one command needs.
COMMAND_TIMEOUT = 60.0
WAIT_TIMEOUT = 15.0
DEMO_CONFIG = Path(__file__).resolve().parents[1] / "config" / "demo.yaml"
SEND_LINE = re.compile(
    r"^conversation (?P<conversation>\S+)  message (?P<message>\S+)"
    r"  status (?P<status>\w+)(?P<replay>  \(replay\))?$"
)


@dataclass
class Result:
    """Exit code and decoded output of one `parley` run."""

    code: int
    stdout: str
    stderr: str

    @property
    def lines(self) -> list[str]:
        return self.stdout.splitlines()


def demo_definitions() -> dict[str, Any]:
    """Return the pathways, citation schemas and outcomes of the demo account."""
    document = yaml.safe_load(DEMO_CONFIG.read_text(encoding="utf-8"))
    account = document["accounts"][0]
    return {
        "pathways": account["pathways"],
        "citation_schemas": account["citation_schemas"],
        "outcomes": account["outcomes"],
    }


@pytest.fixture
def config_data() -> dict[str, Any]:
    """The base config, with the demo's definitions and a failing outcome on acme."""
    config = base_config()
    definitions = demo_definitions()
    definitions["outcomes"].append(
        {"id": "broken", "script": 'throw new Error("no table left");'}
    )
    config["accounts"][0].update(definitions)
    return config


def cli_environment(**variables: str) -> dict[str, str]:
    """Return this process's environment without PARLEY_* settings, plus `variables`."""
    environment = {
        name: value
        for name, value in os.environ.items()
        if name not in ("PARLEY_ADDRESS", "PARLEY_API_KEY")
    }
    environment.update(variables)
    return environment


async def run_cli(*argv: str, environment: dict[str, str] | None = None) -> Result:
    """Run `parley argv...` and wait for it to exit."""
    process = await asyncio.create_subprocess_exec(
        str(PARLEY_SCRIPT),
        *argv,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=environment if environment is not None else cli_environment(),
    )
    try:
        stdout, stderr = await asyncio.wait_for(process.communicate(), COMMAND_TIMEOUT)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise
    assert process.returncode is not None
    return Result(process.returncode, stdout.decode(), stderr.decode())


async def parley(server: Parley, *argv: str, api_key: str = ACME_KEY) -> Result:
    """Run a command against `server` with `api_key`."""
    return await run_cli("--address", server.address, "--api-key", api_key, *argv)


async def send(server: Parley, text: str, *options: str) -> re.Match[str]:
    """Run `parley send` from the acme number and return the parsed output line."""
    result = await parley(
        server,
        "send",
        "--agent",
        ACME_NUMBER,
        "--to",
        USER_NUMBER,
        "--message",
        text,
        *options,
    )
    assert result.code == 0, result.stderr
    match = SEND_LINE.match(result.stdout.strip())
    assert match is not None, result.stdout
    return match


def database_path(tmp_path: Path) -> Path:
    """Return the SQLite file of the `server` fixture."""
    return tmp_path / "parley.db"


def query(tmp_path: Path, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    with sqlite3.connect(database_path(tmp_path)) as connection:
        return connection.execute(sql, params).fetchall()


async def wait_for_delivered(tmp_path: Path, message_id: str) -> None:
    """Wait until the carrier simulator reported the message delivered."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + WAIT_TIMEOUT
    while loop.time() < deadline:
        rows = query(tmp_path, "SELECT status FROM messages WHERE id = ?", message_id)
        if rows and rows[0][0] == types_pb2.MESSAGE_STATUS_DELIVERED:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"message {message_id} was not delivered in {WAIT_TIMEOUT}s")


async def test_send_shows_in_get_list_messages(server: Parley, tmp_path: Path) -> None:
    sent = await send(server, "Your table for two is booked for 7pm.")
    conversation_id = sent["conversation"]
    assert sent["status"] == "queued"
    assert sent["replay"] is None

    details = await parley(server, "get", conversation_id)
    assert details.code == 0, details.stderr
    assert f"id: {conversation_id}" in details.lines
    assert "account: acme" in details.lines
    assert "state: active" in details.lines
    assert f"agent number: {ACME_NUMBER}" in details.lines
    assert f"user number: {USER_NUMBER}" in details.lines

    listing = await parley(server, "list", "--agent", ACME_NUMBER)
    assert listing.code == 0, listing.stderr
    assert len(listing.lines) == 1
    assert listing.lines[0].startswith(f"{conversation_id}  active  sms  ")
    assert f"{ACME_NUMBER} -> {USER_NUMBER}" in listing.lines[0]

    transcript = await parley(server, "messages", conversation_id)
    assert transcript.code == 0, transcript.stderr
    assert len(transcript.lines) == 1
    line = transcript.lines[0]
    assert "  agent  " in line
    assert '"Your table for two is booked for 7pm."' in line
    assert line.endswith(f"id={sent['message']}")
    stored = query(tmp_path, "SELECT id FROM messages")
    assert stored == [(sent["message"],)]


async def test_send_same_idempotency_key_replays(
    server: Parley, tmp_path: Path
) -> None:
    first = await send(server, "See you soon.", "--idempotency-key", "booking-42")
    second = await send(server, "See you soon.", "--idempotency-key", "booking-42")
    assert first["replay"] is None
    assert second["replay"] == "  (replay)"
    assert second["conversation"] == first["conversation"]
    assert second["message"] == first["message"]
    assert query(tmp_path, "SELECT COUNT(*) FROM messages") == [(1,)]
    assert query(tmp_path, "SELECT COUNT(*) FROM ledger") == [(1,)]


async def test_events_print_metadata(server: Parley, tmp_path: Path) -> None:
    sent = await send(server, "Booked.", "--metadata", '{"crm_id":"A-17"}')
    await wait_for_delivered(tmp_path, sent["message"])

    result = await parley(server, "events", "--after", "0")
    assert result.code == 0, result.stderr
    stored = [
        row[0]
        for row in query(
            tmp_path, "SELECT seq FROM events WHERE account_id = 'acme' ORDER BY seq"
        )
    ]
    printed = [int(line.split("  ")[0]) for line in result.lines]
    assert printed == stored
    kinds = [line.split("  ")[1] for line in result.lines]
    assert kinds == [
        "conversation_created",
        "message_created",
        "message_status_changed",
        "message_status_changed",
        "message_status_changed",
    ]
    for line in result.lines:
        assert f"  {sent['conversation']}  " in line
        assert line.endswith('  {"crm_id":"A-17"}')
    assert "queued->sent" in result.lines[3]
    assert "sent->delivered" in result.lines[4]


async def test_events_filter_by_metadata(server: Parley, tmp_path: Path) -> None:
    tagged = await send(server, "Tagged.", "--metadata", '{"crm_id":"A-17"}')
    await wait_for_delivered(tmp_path, tagged["message"])
    other = await parley(
        server,
        "send",
        "--agent",
        ACME_NUMBER,
        "--to",
        "+14155550124",
        "--message",
        "Untagged.",
    )
    assert other.code == 0, other.stderr

    result = await parley(server, "events", "--after", "0", "--metadata", "crm_id=A-17")
    assert result.code == 0, result.stderr
    assert len(result.lines) == 5
    for line in result.lines:
        assert f"  {tagged['conversation']}  " in line


async def test_inbound_stores_user_message(server: Parley) -> None:
    result = await parley(
        server,
        "inbound",
        "--agent",
        ACME_NUMBER,
        "--from",
        USER_NUMBER,
        "--text",
        "Thanks!",
    )
    assert result.code == 0, result.stderr
    match = re.fullmatch(
        r"conversation (\S+)  message (\S+)  \(new conversation\)",
        result.stdout.strip(),
    )
    assert match is not None, result.stdout
    conversation_id, message_id = match.groups()

    transcript = await parley(server, "messages", conversation_id)
    assert transcript.code == 0, transcript.stderr
    assert len(transcript.lines) == 1
    assert '  user  received  "Thanks!"  ' in transcript.lines[0]
    assert transcript.lines[0].endswith(f"id={message_id}")


async def test_usage_shows_charge(server: Parley) -> None:
    empty = await parley(server, "usage")
    assert empty.code == 0, empty.stderr
    assert empty.lines == ["total: 0 messages, 0 segments, amount 0.000000"]

    sent = await send(server, "Your table for two is booked for 7pm.")
    result = await parley(server, "usage")
    assert result.code == 0, result.stderr
    assert result.lines[0] == "total: 1 messages, 1 segments, amount 0.007500"
    assert len(result.lines) == 2
    entry = result.lines[1]
    assert f"message={sent['message']}" in entry
    assert f"conversation={sent['conversation']}" in entry
    assert "segments=1/gsm7" in entry
    assert entry.endswith("amount=0.007500")


async def test_admin_apply_twice(server: Parley, tmp_path: Path) -> None:
    document = {
        "accounts": [
            {
                "id": "initech",
                "api_keys": ["initech-test-key-1"],
                "numbers": [{"number": "+12025550178", "sms_config": {}}],
            }
        ]
    }
    config_file = tmp_path / "initech.yaml"
    config_file.write_text(yaml.safe_dump(document))

    first = await parley(
        server, "admin", "apply", "-f", str(config_file), api_key=OPERATOR_KEY
    )
    assert first.code == 0, first.stderr
    assert first.lines == [
        "applied: 1 accounts, 1 API keys, 1 numbers, 0 personas, 0 persona versions, "
        "0 pathway versions, 0 citation schemas, 0 outcomes"
    ]
    second = await parley(
        server, "admin", "apply", "-f", str(config_file), api_key=OPERATOR_KEY
    )
    assert second.code == 0, second.stderr
    assert second.lines == [
        "applied: 0 accounts, 0 API keys, 0 numbers, 0 personas, 0 persona versions, "
        "0 pathway versions, 0 citation schemas, 0 outcomes"
    ]

    # The applied key and number work at once.
    numbers = await parley(server, "admin", "numbers", api_key="initech-test-key-1")
    assert numbers.code == 0, numbers.stderr
    assert len(numbers.lines) == 1
    assert numbers.lines[0].startswith("+12025550178  account=initech  sms=")


async def test_admin_apply_missing_file(server: Parley, tmp_path: Path) -> None:
    missing = tmp_path / "absent.yaml"
    result = await parley(
        server, "admin", "apply", "-f", str(missing), api_key=OPERATOR_KEY
    )
    assert result.code == 1
    assert result.stdout == ""
    assert result.stderr.startswith(f"error: failed to read config file {missing}: ")


@pytest.mark.parametrize(
    ("api_key", "argv", "head"),
    [
        pytest.param(
            ACME_KEY,
            ["send", "--agent", ACME_NUMBER, "--to", "+1415", "--message", "Hi"],
            "INVALID_ARGUMENT INVALID_PHONE_NUMBER",
            id="invalid-number",
        ),
        pytest.param(
            "unknown-key-7Qx2",
            ["usage"],
            "UNAUTHENTICATED UNAUTHENTICATED",
            id="unknown-key",
        ),
        pytest.param(
            OPERATOR_KEY,
            ["send", "--agent", ACME_NUMBER, "--to", USER_NUMBER, "--message", "Hi"],
            "PERMISSION_DENIED ACCOUNT_KEY_REQUIRED",
            id="operator-key",
        ),
        pytest.param(
            GLOBEX_KEY,
            ["send", "--agent", ACME_NUMBER, "--to", USER_NUMBER, "--message", "Hi"],
            "PERMISSION_DENIED AGENT_NUMBER_NOT_OWNED",
            id="other-account-number",
        ),
        # The server quotes the conversation id, which here is the key itself.
        pytest.param(
            ACME_KEY, ["get", ACME_KEY], "NOT_FOUND CONVERSATION_NOT_FOUND", id="echo"
        ),
    ],
)
async def test_rpc_error_output(
    server: Parley, api_key: str, argv: list[str], head: str
) -> None:
    result = await parley(server, *argv, api_key=api_key)
    assert result.code == 1
    assert result.stdout == ""
    assert result.stderr.startswith(f"error: {head}: ")
    assert "Traceback" not in result.stderr
    assert api_key not in result.stderr
    assert api_key not in result.stdout


async def test_rpc_error_lists_field_violations(server: Parley) -> None:
    result = await parley(
        server, "send", "--agent", ACME_NUMBER, "--to", "+1415", "--message", "Hi"
    )
    assert result.code == 1
    lines = result.stderr.splitlines()
    assert len(lines) == 2
    assert lines[1].startswith('  user_number: user_number "+1415" is not a valid')


async def test_rpc_error_masks_echoed_key(server: Parley) -> None:
    result = await parley(server, "get", ACME_KEY)
    assert result.code == 1
    assert 'conversation_id "***"' in result.stderr
    assert ACME_KEY not in result.stderr


async def test_missing_api_key_exits_2(server: Parley) -> None:
    result = await run_cli("--address", server.address, "usage")
    assert result.code == 2
    assert result.stdout == ""
    assert "missing API key: pass --api-key or set PARLEY_API_KEY" in result.stderr


async def test_environment_address_and_key(server: Parley) -> None:
    environment = cli_environment(
        PARLEY_ADDRESS=server.address, PARLEY_API_KEY=ACME_KEY
    )
    result = await run_cli("usage", environment=environment)
    assert result.code == 0, result.stderr
    assert result.lines == ["total: 0 messages, 0 segments, amount 0.000000"]


async def test_api_key_option_overrides_environment(server: Parley) -> None:
    environment = cli_environment(
        PARLEY_ADDRESS=server.address, PARLEY_API_KEY=GLOBEX_KEY
    )
    argv = ["send", "--agent", ACME_NUMBER, "--to", USER_NUMBER, "--message", "Hi"]
    with_environment_key = await run_cli(*argv, environment=environment)
    assert with_environment_key.code == 1
    assert "AGENT_NUMBER_NOT_OWNED" in with_environment_key.stderr

    with_option_key = await run_cli(
        "--api-key", ACME_KEY, *argv, environment=environment
    )
    assert with_option_key.code == 0, with_option_key.stderr
    assert SEND_LINE.match(with_option_key.stdout.strip()) is not None


async def test_module_entry_point(server: Parley) -> None:
    """`python -m parley_client.cli` runs the same command line as `parley`."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "parley_client.cli",
        "--address",
        server.address,
        "--api-key",
        ACME_KEY,
        "usage",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=cli_environment(),
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), COMMAND_TIMEOUT)
    assert process.returncode == 0, stderr.decode()
    assert stdout.decode() == "total: 0 messages, 0 segments, amount 0.000000\n"


async def test_closed_stdout_exits_141(server: Parley) -> None:
    """A reader that closed the pipe, as `parley usage | head -0` does, ends quietly."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        process = await asyncio.create_subprocess_exec(
            str(PARLEY_SCRIPT),
            "--address",
            server.address,
            "--api-key",
            ACME_KEY,
            "usage",
            stdout=write_end,
            stderr=asyncio.subprocess.PIPE,
            env=cli_environment(),
        )
    finally:
        os.close(write_end)
    _, stderr = await asyncio.wait_for(process.communicate(), COMMAND_TIMEOUT)
    assert process.returncode == 141
    assert stderr.decode() == ""


@contextlib.contextmanager
def sigint_not_ignored() -> Iterator[None]:
    """Let children started in the block receive SIGINT if this process ignores it.

    A shell without job control starts background jobs with SIGINT ignored,
    and a child inherits an ignored signal through exec, while a handled one
    is reset to the default. This avoids `preexec_fn`, which forks a process
    that runs gRPC threads and made the child abort now and then.
    """
    previous = signal.getsignal(signal.SIGINT)
    if previous is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        if previous is signal.SIG_IGN:
            signal.signal(signal.SIGINT, signal.SIG_IGN)


async def read_line(process: asyncio.subprocess.Process) -> str:
    """Read one output line of a running `parley`, or fail with its stderr."""
    assert process.stdout is not None
    assert process.stderr is not None
    line = await asyncio.wait_for(process.stdout.readline(), WAIT_TIMEOUT)
    if not line:
        await asyncio.wait_for(process.wait(), WAIT_TIMEOUT)
        stderr = (await process.stderr.read()).decode()
        raise AssertionError(f"parley exited with {process.returncode}: {stderr}")
    return line.decode().rstrip("\n")


async def test_events_follow_live_until_sigint(server: Parley) -> None:
    with sigint_not_ignored():
        process = await asyncio.create_subprocess_exec(
            str(PARLEY_SCRIPT),
            "--address",
            server.address,
            "--api-key",
            ACME_KEY,
            "events",
            "--follow",
            "--heartbeats",
            "--heartbeat-seconds",
            "1",
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=cli_environment(),
        )
    try:
        # A heartbeat shows that the stream is open, so the next send is live.
        first = await read_line(process)
        assert "  heartbeat  " in first
        start = int(first.split("  ")[0])

        sent = await send(server, "Live one.")
        received = ""
        while "  message_created  " not in received:
            received = await read_line(process)
        assert f"  {sent['conversation']}  " in received
        assert '"Live one."' in received
        assert int(received.split("  ")[0]) > start

        process.send_signal(signal.SIGINT)
        code = await asyncio.wait_for(process.wait(), WAIT_TIMEOUT)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert code == 0
    assert process.stderr is not None
    stderr = (await process.stderr.read()).decode()
    assert "Traceback" not in stderr


INBOUND_LINE = re.compile(
    r"^conversation (?P<conversation>\S+)  message (?P<message>\S+)"
)
ADD_MESSAGE_LINE = re.compile(
    r"^message (?P<message>\S+)  status (?P<status>\w+)(?P<replay>  \(replay\))?$"
)


async def inbound(server: Parley, text: str) -> str:
    """Run `parley inbound` from USER_NUMBER and return the stored message id."""
    result = await parley(
        server, "inbound", "--agent", ACME_NUMBER, "--from", USER_NUMBER, "--text", text
    )
    assert result.code == 0, result.stderr
    match = INBOUND_LINE.match(result.stdout.strip())
    assert match is not None, result.stdout
    return match["message"]


async def wait_for_ended_event(tmp_path: Path, conversation_id: str) -> None:
    """Wait for CONVERSATION_ENDED, which the server appends with the end results."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + WAIT_TIMEOUT
    while loop.time() < deadline:
        rows = query(
            tmp_path,
            "SELECT COUNT(*) FROM events WHERE conversation_id = ? AND type = ?",
            conversation_id,
            events_pb2.EVENT_TYPE_CONVERSATION_ENDED,
        )
        if rows[0][0]:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"conversation {conversation_id} did not end in time")


def section(lines: list[str], title: str) -> list[str]:
    """Return the indented lines under `title:` of `parley get` output, unindented."""
    start = lines.index(f"{title}:") + 1
    items = []
    for line in lines[start:]:
        if not line.startswith("  "):
            break
        items.append(line.removeprefix("  "))
    return items


def event_summaries(lines: list[str], event_type: str) -> list[str]:
    """Return the summary field of every `parley events` line of one type."""
    fields = [line.split("  ") for line in lines]
    return [parts[3] for parts in fields if parts[1] == event_type]


async def test_booking_pathway_ends_with_results(
    server: Parley, tmp_path: Path
) -> None:
    sent = await send(
        server,
        "",
        "--pathway",
        "booking",
        "--request-data",
        '{"name": "Ada"}',
        "--outcome-ids",
        "booked",
        "--citation-schema-ids",
        "contact",
    )
    conversation_id = sent["conversation"]
    await inbound(server, "yes")
    email_id = await inbound(server, "ada@example.com")
    guests_id = await inbound(server, "4 of us")
    await wait_for_ended_event(tmp_path, conversation_id)

    transcript = await parley(server, "messages", conversation_id)
    assert transcript.code == 0, transcript.stderr
    agent_texts = [
        json.loads(line.split("  ")[3])
        for line in transcript.lines
        if "  agent  " in line
    ]
    assert agent_texts == [
        "Hi Ada! Shall we book you a table? Reply yes or no.",
        "Great. Which email should we send the confirmation to?",
        "Thanks. How many guests, from 1 to 12?",
        "Booked: a table for 4. The confirmation goes to ada@example.com.",
    ]

    details = await parley(server, "get", conversation_id)
    assert details.code == 0, details.stderr
    assert "state: ended" in details.lines
    assert "end reason: BOOKED" in details.lines
    assert "end actor: system" in details.lines
    assert "pathway: booking version 1" in details.lines
    assert "current node: booked" in details.lines
    assert 'variables: {"email":"ada@example.com","guests":4}' in details.lines
    assert section(details.lines, "citations") == [
        f'email = "ada@example.com"  message={email_id}  confidence=0.90'
        "  schema=contact",
        f"guests = 4  message={guests_id}  confidence=0.90  schema=contact",
    ]
    outcomes = section(details.lines, "outcomes")
    assert len(outcomes) == 1
    assert outcomes[0].startswith('booked  succeeded  {"booked":true,"guests":4}  ')

    events = await parley(
        server, "events", "--after", "0", "--conversation", conversation_id
    )
    assert events.code == 0, events.stderr
    assert event_summaries(events.lines, "conversation_ended") == [
        "ended reason=BOOKED actor=system; "
        'citations: email="ada@example.com", guests=4; '
        'outcomes: booked succeeded {"booked":true,"guests":4}'
    ]
    assert event_summaries(events.lines, "conversation_created") == [
        "active pathway=booking"
    ]


async def test_end_prints_results(server: Parley) -> None:
    sent = await send(
        server,
        "How many guests, and which email?",
        "--outcome-ids",
        "booked,broken",
        "--citation-schema-ids",
        "contact",
    )
    conversation_id = sent["conversation"]
    message_id = await inbound(server, "3 guests, ada@example.com")

    result = await parley(
        server, "end", conversation_id, "--reason", "RESOLVED", "--actor", "crm"
    )
    assert result.code == 0, result.stderr
    assert f"id: {conversation_id}" in result.lines
    assert "state: ended" in result.lines
    assert "end reason: RESOLVED" in result.lines
    assert "end actor: crm" in result.lines
    assert section(result.lines, "citations") == [
        f'email = "ada@example.com"  message={message_id}  confidence=0.90'
        "  schema=contact",
        f"guests = 3  message={message_id}  confidence=0.90  schema=contact",
    ]
    booked, broken = section(result.lines, "outcomes")
    assert booked.startswith('booked  succeeded  {"booked":false,"guests":3}  ')
    assert broken.startswith('broken  failed  error="')
    assert "no table left" in broken

    again = await parley(server, "end", conversation_id)
    assert again.code == 1
    assert again.stderr.startswith("error: FAILED_PRECONDITION CONVERSATION_ENDED: ")


async def test_end_defaults_and_json(server: Parley) -> None:
    sent = await send(server, "Thanks for visiting.")
    result = await parley(server, "end", sent["conversation"], "--json")
    assert result.code == 0, result.stderr
    ended = json.loads(result.stdout)
    assert ended["state"] == "CONVERSATION_STATE_ENDED"
    assert ended["endReason"] == "ENDED_BY_API"
    assert ended["endActor"] == "api"
    assert ended["citations"] == []
    assert ended["outcomes"] == []

    details = await parley(server, "get", sent["conversation"])
    assert "citations: -" in details.lines
    assert "outcomes: -" in details.lines


async def test_handoff_stops_replies_until_resume(server: Parley) -> None:
    sent = await send(server, "", "--pathway", "booking")
    conversation_id = sent["conversation"]

    handoff = await parley(server, "handoff", conversation_id, "--actor", "grace")
    assert handoff.code == 0, handoff.stderr
    assert handoff.lines == [
        f"conversation {conversation_id}  active  handed off: yes (by grace)"
    ]
    await inbound(server, "yes")
    transcript = await parley(server, "messages", conversation_id)
    # The greeting and the user's "yes", without a pathway reply.
    assert len(transcript.lines) == 2
    details = await parley(server, "get", conversation_id)
    assert "handed off: yes (by grace)" in details.lines
    assert "current node: greet" in details.lines

    resume = await parley(server, "resume", conversation_id)
    assert resume.code == 0, resume.stderr
    assert resume.lines == [f"conversation {conversation_id}  active  handed off: no"]
    events = await parley(
        server, "events", "--after", "0", "--conversation", conversation_id
    )
    assert event_summaries(events.lines, "conversation_updated") == [
        "active handed_off=yes",
        "active handed_off=no",
    ]


async def test_handoff_of_ended_conversation_fails(server: Parley) -> None:
    sent = await send(server, "Goodbye.")
    ended = await parley(server, "end", sent["conversation"])
    assert ended.code == 0, ended.stderr
    for command in ("handoff", "resume"):
        result = await parley(server, command, sent["conversation"])
        assert result.code == 1
        assert result.stderr.startswith(
            "error: FAILED_PRECONDITION CONVERSATION_ENDED: "
        )


async def test_add_message_key_replays(server: Parley, tmp_path: Path) -> None:
    sent = await send(server, "Hello.")
    conversation_id = sent["conversation"]
    argv = ["add-message", conversation_id, "--text", "Grace here.", "--actor", "grace"]

    first = await parley(server, *argv, "--idempotency-key", "human-1")
    assert first.code == 0, first.stderr
    first_match = ADD_MESSAGE_LINE.match(first.stdout.strip())
    assert first_match is not None, first.stdout
    assert first_match["status"] == "queued"
    assert first_match["replay"] is None
    second = await parley(server, *argv, "--idempotency-key", "human-1")
    second_match = ADD_MESSAGE_LINE.match(second.stdout.strip())
    assert second_match is not None, second.stdout
    assert second_match["replay"] == "  (replay)"
    assert second_match["message"] == first_match["message"]

    # Without --idempotency-key each run gets its own key, so both are sent.
    automatic = [await parley(server, *argv) for _ in range(2)]
    ids = set()
    for result in automatic:
        match = ADD_MESSAGE_LINE.match(result.stdout.strip())
        assert match is not None, result.stdout
        assert match["replay"] is None
        ids.add(match["message"])
    assert len(ids) == 2
    assert first_match["message"] not in ids

    stored = query(
        tmp_path,
        "SELECT COUNT(*) FROM messages WHERE conversation_id = ?",
        conversation_id,
    )
    assert stored == [(4,)]
    transcript = await parley(server, "messages", conversation_id)
    authored = [line for line in transcript.lines if "  author=grace  " in line]
    assert len(authored) == 3


async def test_run_citation_and_outcome(server: Parley) -> None:
    sent = await send(server, "Which email should we use?")
    conversation_id = sent["conversation"]
    empty = await parley(server, "run-citation", conversation_id, "contact")
    assert empty.code == 0, empty.stderr
    assert empty.lines == ["no citations: no message matched the schema's rules"]

    message_id = await inbound(server, "It is ada@example.com")
    cited = await parley(server, "run-citation", conversation_id, "contact")
    assert cited.code == 0, cited.stderr
    assert cited.lines == [
        f'email = "ada@example.com"  message={message_id}  confidence=0.90'
        "  schema=contact"
    ]

    booked = await parley(server, "run-outcome", conversation_id, "booked")
    assert booked.code == 0, booked.stderr
    assert len(booked.lines) == 1
    assert booked.lines[0].startswith(
        'booked  succeeded  {"booked":false,"guests":null}  duration='
    )
    broken = await parley(server, "run-outcome", conversation_id, "broken")
    assert broken.code == 0, broken.stderr
    assert broken.lines[0].startswith('broken  failed  error="')
    assert "no table left" in broken.lines[0]

    # Trial runs store nothing on the conversation.
    details = await parley(server, "get", conversation_id)
    assert "state: active" in details.lines
    assert "citations: -" in details.lines
    assert "outcomes: -" in details.lines


@pytest.mark.parametrize(
    ("command", "head"),
    [
        ("run-citation", "NOT_FOUND CITATION_SCHEMA_NOT_FOUND"),
        ("run-outcome", "NOT_FOUND OUTCOME_NOT_FOUND"),
    ],
)
async def test_run_unknown_definition(server: Parley, command: str, head: str) -> None:
    sent = await send(server, "Hello.")
    result = await parley(server, command, sent["conversation"], "missing-id")
    assert result.code == 1
    assert result.stdout == ""
    assert result.stderr.startswith(f"error: {head}: ")


async def test_admin_definition_lists(server: Parley) -> None:
    pathways = await parley(server, "admin", "pathways")
    assert pathways.code == 0, pathways.stderr
    assert len(pathways.lines) == 1
    assert re.fullmatch(
        r"booking  versions=1  latest=1  start=greet  nodes=5  published=\S+Z",
        pathways.lines[0],
    )

    schemas = await parley(server, "admin", "citation-schemas")
    assert schemas.code == 0, schemas.stderr
    assert len(schemas.lines) == 1
    assert schemas.lines[0].startswith(
        "contact  variables=email:STRING,guests:NUMBER  updated="
    )

    outcomes = await parley(
        server, "admin", "outcomes", "--account", "acme", api_key=OPERATOR_KEY
    )
    assert outcomes.code == 0, outcomes.stderr
    rows = {line.split("  ")[0]: line for line in outcomes.lines}
    assert sorted(rows) == ["booked", "broken"]
    script = demo_definitions()["outcomes"][0]["script"]
    assert rows["booked"].startswith(
        "booked  time_limit=default  memory_limit=default  "
        f"script_lines={len(script.splitlines())}  updated="
    )

    as_json = await parley(server, "admin", "pathways", "--json")
    assert as_json.code == 0, as_json.stderr
    (pathway,) = json.loads(as_json.stdout)["pathways"]
    assert pathway["versions"][0]["definition"]["startNodeId"] == "greet"


async def test_events_show_warning_and_timeout(server: Parley, tmp_path: Path) -> None:
    sent = await send(
        server, "Table ready?", "--warning-seconds", "1", "--timeout-seconds", "2"
    )
    conversation_id = sent["conversation"]
    await wait_for_ended_event(tmp_path, conversation_id)

    events = await parley(
        server, "events", "--after", "0", "--conversation", conversation_id
    )
    assert events.code == 0, events.stderr
    assert event_summaries(events.lines, "warning_sent") == [
        "warning sent after 1s without a reply"
    ]
    assert event_summaries(events.lines, "timed_out") == [
        "timed out after 2s without a reply"
    ]
    assert event_summaries(events.lines, "conversation_ended") == [
        "ended reason=TIMEOUT actor=system"
    ]
    statuses = event_summaries(events.lines, "message_status_changed")
    assert statuses[0] == 'agent queued "Table ready?"'


def test_demo_config_definitions_validate() -> None:
    document = parse_config(DEMO_CONFIG.read_text(encoding="utf-8"), "demo.yaml")
    (account,) = document.accounts
    assert account.id == "demo"
    # The tour passes --pathway itself, so the number sets none.
    (number,) = account.numbers
    assert number.sms_config is not None
    assert not number.sms_config.HasField("pathway_id")

    (pathway,) = account.pathways
    assert pathway.id == "booking"
    assert [version.version for version in pathway.versions] == ["1"]
    PathwayGraph.from_definition(pathway.versions[0].definition)
    (schema,) = account.citation_schemas
    assert schema.id == "contact"
    validate_citation_schema(schema)
    (outcome,) = account.outcomes
    assert outcome.id == "booked"
    validate_outcome(outcome)


def demo_graph() -> PathwayGraph:
    document = parse_config(DEMO_CONFIG.read_text(encoding="utf-8"), "demo.yaml")
    definition = document.accounts[0].pathways[0].versions[0].definition
    return PathwayGraph.from_definition(definition)


def test_demo_pathway_steps() -> None:
    graph = demo_graph()
    assert graph.entry_node_id("") == "greet"
    assert graph.render("greet", {"request_data": {}}) == (
        "Hi there! Shall we book you a table? Reply yes or no."
    )
    assert graph.render("greet", {"request_data": {"name": "Ada"}}).startswith(
        "Hi Ada! "
    )
    assert graph.step("greet", "Yes please", {}).target_node_id == "ask_email"
    assert graph.step("greet", "no thanks", {}).target_node_id == "declined"
    assert graph.end_reason("declined") == "DECLINED"

    email = graph.step("ask_email", "it's ada@example.com", {})
    assert email.target_node_id == "ask_guests"
    assert email.captured == {"email": "ada@example.com"}
    assert not graph.step("ask_email", "ada at example dot com", {}).matched

    guests = graph.step("ask_guests", "4 of us", {"email": "ada@example.com"})
    assert guests.target_node_id == "booked"
    assert guests.captured == {"guests": 4}
    assert not graph.step("ask_guests", "20 of us", {}).matched
    assert not graph.step("ask_guests", "a few", {}).matched
    assert graph.render_fallback("ask_guests", {}) == (
        "Please send the number of guests as a number from 1 to 12."
    )
    assert graph.is_end("booked")
    assert graph.end_reason("booked") == "BOOKED"
    assert graph.render("booked", {"guests": 4, "email": "ada@example.com"}) == (
        "Booked: a table for 4. The confirmation goes to ada@example.com."
    )


def test_demo_outcome_script() -> None:
    document = parse_config(DEMO_CONFIG.read_text(encoding="utf-8"), "demo.yaml")
    outcome = document.accounts[0].outcomes[0]
    booked_message = types_pb2.Message(
        id="msg_1", sender=types_pb2.SENDER_AGENT, text="Booked: a table for 4."
    )
    guests = types_pb2.Citation(
        schema_id="contact",
        variable="guests",
        type="NUMBER",
        value=struct_pb2.Value(number_value=4),
    )
    booked = run_outcome(
        outcome,
        transcript_for_scripts([booked_message]),
        citations_for_scripts([guests]),
        {},
    )
    assert booked.status == types_pb2.OUTCOME_STATUS_SUCCEEDED, booked.error
    assert json_format.MessageToDict(booked.result) == {"booked": True, "guests": 4}

    # A user text starting with "Booked" does not count, only an agent's.
    user_message = types_pb2.Message(
        id="msg_2", sender=types_pb2.SENDER_USER, text="Booked already?"
    )
    declined = run_outcome(outcome, transcript_for_scripts([user_message]), [], {})
    assert declined.status == types_pb2.OUTCOME_STATUS_SUCCEEDED, declined.error
    assert json_format.MessageToDict(declined.result) == {
        "booked": False,
        "guests": None,
    }
