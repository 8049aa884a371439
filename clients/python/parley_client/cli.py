"""Entry point of the `parley` command-line tool.

`main` runs in-process: it reads `sys.argv`, `os.environ`, `sys.stdout` and
`sys.stderr` when called, and returns the exit code instead of exiting.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys

from parley_client.cli_commands import run_command
from parley_client.cli_parser import parse_arguments

# Conventional exit code of a program stopped by SIGINT (128 + 2).
_INTERRUPTED = 130
# Conventional exit code of a program stopped by SIGPIPE (128 + 13).
_BROKEN_PIPE = 128 + signal.SIGPIPE


def main(argv: list[str] | None = None) -> int:
    """Run one `parley` command and return its exit code.

    Exit codes: 0 success (and Ctrl-C during `events`), 1 an RPC or input
    error printed to stderr, 2 invalid arguments, 130 Ctrl-C elsewhere, 141
    when the reader of stdout closed it early (as in `parley events | head`).
    Calls `asyncio.run`, so it must not be called from a running event loop.
    """
    try:
        args = parse_arguments(argv, os.environ)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else 2
    try:
        return asyncio.run(run_command(args))
    except KeyboardInterrupt:
        return 0 if args.command == "events" else _INTERRUPTED
    except BrokenPipeError:
        # Python ignores SIGPIPE, so a closed stdout raises here. The unwritten
        # text stays buffered, and pointing stdout at /dev/null keeps the flush
        # at interpreter exit from raising again (Python `signal` docs, "Note
        # on SIGPIPE").
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
        return _BROKEN_PIPE


if __name__ == "__main__":
    sys.exit(main())
