"""End-to-end tests of the `parley` command against a real server.

The server runs in the test's event loop (the `server` fixture) with its own
SQLite file. Every command runs as the installed `parley` console script in a
subprocess, so the tests check the stdout, stderr and exit code that a user
gets.
"""

from __future__ import annotations

import asyncio
import contextlib
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
)
from parley.v1 import types_pb2

from server.app import Parley

PARLEY_SCRIPT = Path(sys.executable).with_name("parley")
# Upper bound for one command, far above the time one command needs.
COMMAND_TIMEOUT = 60.0
WAIT_TIMEOUT = 15.0
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
        "applied: 1 accounts, 1 API keys, 1 numbers, 0 personas, 0 persona versions"
    ]
    second = await parley(
        server, "admin", "apply", "-f", str(config_file), api_key=OPERATOR_KEY
    )
    assert second.code == 0, second.stderr
    assert second.lines == [
        "applied: 0 accounts, 0 API keys, 0 numbers, 0 personas, 0 persona versions"
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
    assert "conversation_id '***'" in result.stderr


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
