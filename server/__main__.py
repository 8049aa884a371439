"""`python -m server`: run Parley until SIGTERM or SIGINT."""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys

import structlog

from server.app import Parley
from server.errors import ParleyError
from server.logs import configure_logging

log = structlog.get_logger("parley.server")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m server",
        description="Run the Parley server.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "--config",
        default=os.environ.get("PARLEY_CONFIG", ""),
        help="YAML config file with accounts, numbers and personas (env PARLEY_CONFIG).",
    )
    parser.add_argument(
        "--database",
        default=os.environ.get("PARLEY_DATABASE", "parley.db"),
        help="SQLite database file, created if missing (env PARLEY_DATABASE).",
    )
    parser.add_argument(
        "--listen",
        default=os.environ.get("PARLEY_LISTEN", "127.0.0.1:50051"),
        help="HOST:PORT to serve gRPC on; port 0 picks a free port (env PARLEY_LISTEN).",
    )
    parser.add_argument(
        "--metrics-listen",
        default=os.environ.get("PARLEY_METRICS_LISTEN", ""),
        help="HOST:PORT for Prometheus metrics over HTTP; empty disables"
        " (env PARLEY_METRICS_LISTEN).",
    )
    parser.add_argument(
        "--log-format",
        choices=("json", "console"),
        default=os.environ.get("PARLEY_LOG_FORMAT", "json"),
        help="Log line format (env PARLEY_LOG_FORMAT).",
    )
    parser.add_argument(
        "--log-level",
        choices=("debug", "info", "warning", "error"),
        type=str.lower,
        default=os.environ.get("PARLEY_LOG_LEVEL", "info"),
        help="Minimum log level (env PARLEY_LOG_LEVEL).",
    )
    args = parser.parse_args(argv)
    for option in ("listen", "metrics_listen"):
        value = getattr(args, option)
        if value and not _valid_address(value):
            parser.error(
                f"--{option.replace('_', '-')} {value!r} is not HOST:PORT with a port"
                " from 0 to 65535, such as 127.0.0.1:50051"
            )
    return args


def _valid_address(value: str) -> bool:
    host, separator, port = value.rpartition(":")
    return bool(separator and host and port.isdigit() and int(port) <= 65_535)


async def serve(args: argparse.Namespace) -> None:
    parley = Parley(args.database, args.listen, args.config or None)
    await parley.start()
    if args.metrics_listen:
        from prometheus_client import start_http_server

        host, _, port = args.metrics_listen.rpartition(":")
        start_http_server(int(port), addr=host or "127.0.0.1")
        log.info("metrics_started", address=args.metrics_listen)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    log.info("serving", address=parley.address)
    await stop.wait()
    log.info("shutdown_requested")
    await parley.stop()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    configure_logging(level=args.log_level, fmt=args.log_format)
    try:
        asyncio.run(serve(args))
    except ParleyError as error:
        log.error("startup_failed", reason=error.reason, error=error.message)
        return 2
    except Exception as error:
        # Start-up problems such as an unreadable database file or a busy
        # port end here; a clear line and exit code 2 beat a traceback.
        log.error("startup_failed", error=f"{type(error).__name__}: {error}")
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
