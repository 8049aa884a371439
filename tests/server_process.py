"""`python -m server` in a subprocess, for restart, crash and logging tests.

The server's log goes to a file in the test's folder rather than a pipe, so
a chatty server can never block on a full pipe, and tests can read the log.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml
from conftest import base_config
from parley.v1 import events_pb2

REPO_ROOT = Path(__file__).resolve().parent.parent
STARTUP_TIMEOUT = 30.0


class ServerProcess:
    """One server subprocess bound to a database file in `folder`."""

    def __init__(
        self,
        folder: Path,
        config: dict[str, Any] | None = None,
        listen: str = "127.0.0.1:0",
    ) -> None:
        self.config = folder / "parley.yaml"
        self.database = folder / "parley.db"
        self.log_path = folder / "server.log"
        self.listen = listen
        self.config.write_text(yaml.safe_dump(config or base_config()))
        self.process: subprocess.Popen[bytes] | None = None
        self.address = ""

    async def start(self) -> None:
        """Start the server and wait for its "serving" log line."""
        offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        with self.log_path.open("ab") as log_file:
            # Popen returns at once; waiting for start-up happens below.
            self.process = subprocess.Popen(  # noqa: ASYNC220
                [
                    sys.executable,
                    "-m",
                    "server",
                    "--config",
                    str(self.config),
                    "--database",
                    str(self.database),
                    "--listen",
                    self.listen,
                ],
                cwd=REPO_ROOT,
                stderr=log_file,
                env={**os.environ, "PARLEY_LOG_LEVEL": "info"},
            )
        self.address = await asyncio.wait_for(
            self._wait_for_address(offset), STARTUP_TIMEOUT
        )

    async def _wait_for_address(self, offset: int) -> str:
        assert self.process is not None
        while True:
            for record in self.log_records(offset):
                if record.get("event") == "serving":
                    return str(record["address"])
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"server exited with {self.process.returncode} before serving"
                )
            await asyncio.sleep(0.05)

    def log_records(self, offset: int = 0) -> list[dict[str, Any]]:
        """Return the JSON log records written after byte `offset`."""
        if not self.log_path.exists():
            return []
        with self.log_path.open("rb") as log_file:
            log_file.seek(offset)
            lines = log_file.read().decode("utf-8", "replace").splitlines()
        records = []
        for line in lines:
            try:
                records.append(json.loads(line))
            except ValueError:
                continue
        return records

    def stop(self, signum: int = signal.SIGTERM) -> int:
        """Send `signum` and return the exit code."""
        assert self.process is not None
        self.process.send_signal(signum)
        return self.process.wait(timeout=30)

    def kill_if_running(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=30)

    def count_events(self, conversation_id: str, type_name: str) -> int:
        """Count events of one type (`TIMED_OUT`, ...) of a conversation."""
        event_type = events_pb2.EventType.Value("EVENT_TYPE_" + type_name)
        with sqlite3.connect(self.database) as connection:
            row = connection.execute(
                "SELECT COUNT(*) FROM events WHERE conversation_id = ? AND type = ?",
                (conversation_id, event_type),
            ).fetchone()
        return int(row[0])

    def message_texts(self, conversation_id: str) -> list[str]:
        with sqlite3.connect(self.database) as connection:
            rows = connection.execute(
                "SELECT text FROM messages WHERE conversation_id = ? ORDER BY seq",
                (conversation_id,),
            ).fetchall()
        return [row[0] for row in rows]

    def acme_sequences(self, after: int) -> list[int]:
        """Sequences of account acme's events after `after`, read from the file."""
        with sqlite3.connect(self.database) as connection:
            rows = connection.execute(
                "SELECT seq FROM events WHERE account_id = 'acme' AND seq > ? ORDER BY seq",
                (after,),
            ).fetchall()
        return [row[0] for row in rows]
