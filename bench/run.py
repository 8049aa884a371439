"""`make bench`: SendMessage throughput of Parley against an empty handler.

Each server runs in its own subprocess on loopback; the load generator runs
here with a fixed number of requests in flight. Parley's numbers are read as
ratios to the empty grpc.aio handler measured in the same run, because
absolute numbers on a shared machine vary from run to run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import grpc
import yaml
from parley.v1 import (
    conversation_pb2,
    conversation_pb2_grpc,
    events_pb2,
    events_pb2_grpc,
)

REPO_ROOT = Path(__file__).resolve().parent.parent
API_KEY = "bench-key-1"
AGENT_NUMBER = "+14155550100"
METADATA = (("authorization", f"Bearer {API_KEY}"),)


@dataclass
class Result:
    name: str
    requests: int
    seconds: float
    latencies_ms: list[float]
    events_received: int = 0

    @property
    def per_second(self) -> float:
        return self.requests / self.seconds

    def percentile(self, fraction: float) -> float:
        ordered = sorted(self.latencies_ms)
        return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def bench_config() -> dict[str, object]:
    return {
        "carrier": {"kind": "simulator", "sent_after_ms": 10, "delivered_after_ms": 20},
        "accounts": [
            {
                "id": "bench",
                "api_keys": [API_KEY],
                "numbers": [{"number": AGENT_NUMBER, "sms_config": {}}],
            }
        ],
    }


@asynccontextmanager
async def subprocess_server(
    command: list[str], read_address: bool
) -> AsyncIterator[str]:
    """Start a server subprocess and yield its address once it serves."""
    # Popen returns at once; the wait for the address runs in a thread below.
    process = subprocess.Popen(  # noqa: ASYNC220
        command,
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        stream = process.stdout if read_address else process.stderr
        assert stream is not None
        address = await asyncio.to_thread(_read_address, stream, read_address)
        # Keep reading the log so a full pipe never blocks the server.
        drain = threading.Thread(target=_drain, args=(stream,), daemon=True)
        drain.start()
        yield address
    finally:
        process.terminate()
        process.wait(timeout=30)


def _drain(stream: IO[str]) -> None:
    for _line in stream:
        pass


def _read_address(stream: IO[str], plain: bool) -> str:
    """Read the address from the first stdout line, or Parley's "serving" log line."""
    for line in stream:
        if plain:
            return line.strip()
        record = json.loads(line)
        if record.get("event") == "serving":
            return str(record["address"])
    raise RuntimeError("the server exited before it served")


async def run_load(
    address: str, name: str, requests: int, concurrency: int, subscribers: int
) -> Result:
    latencies: list[float] = []
    received = 0
    async with grpc.aio.insecure_channel(address) as channel:
        stub = conversation_pb2_grpc.ConversationServiceStub(channel)
        events = events_pb2_grpc.EventServiceStub(channel)
        streams = [
            events.SubscribeEvents(
                events_pb2.SubscribeEventsRequest(), metadata=METADATA
            )
            for _ in range(subscribers)
        ]

        async def follow(stream: grpc.aio.UnaryStreamCall) -> None:  # type: ignore[type-arg]
            nonlocal received
            async for item in stream:
                if item.HasField("event"):
                    received += 1

        followers = [asyncio.create_task(follow(stream)) for stream in streams]
        queue: asyncio.Queue[int] = asyncio.Queue()
        for index in range(requests):
            queue.put_nowait(index)

        async def worker() -> None:
            while not queue.empty():
                index = queue.get_nowait()
                request = conversation_pb2.SendMessageRequest(
                    agent_number=AGENT_NUMBER,
                    user_number=f"+141555501{index % 100:02d}",
                    agent_message=f"Benchmark message {index}",
                )
                started = time.perf_counter()
                await stub.SendMessage(request, metadata=METADATA)
                latencies.append((time.perf_counter() - started) * 1000)

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
        # Wait until the carrier's last status events have reached the streams.
        previous = -1
        while subscribers and received != previous:
            previous = received
            await asyncio.sleep(0.5)
        for stream in streams:
            stream.cancel()
        await asyncio.gather(*followers, return_exceptions=True)
    return Result(name, requests, elapsed, latencies, received)


async def main(requests: int, concurrency: int, subscribers: int) -> None:
    python = sys.executable
    results: list[Result] = []
    async with subprocess_server([python, "-m", "bench.empty_server"], True) as address:
        await run_load(address, "warm-up", 200, concurrency, 0)
        results.append(
            await run_load(address, "empty grpc.aio handler", requests, concurrency, 0)
        )
    for label, subscriber_count in (
        ("Parley SendMessage", 0),
        (f"Parley SendMessage, {subscribers} subscribers", subscribers),
    ):
        with tempfile.TemporaryDirectory() as folder:
            config = Path(folder) / "bench.yaml"
            config.write_text(yaml.safe_dump(bench_config()))
            command = [
                python, "-m", "server",
                "--config", str(config),
                "--database", str(Path(folder) / "bench.db"),
                "--listen", "127.0.0.1:0",
            ]  # fmt: skip
            async with subprocess_server(command, False) as address:
                await run_load(address, "warm-up", 200, concurrency, 0)
                results.append(
                    await run_load(
                        address, label, requests, concurrency, subscriber_count
                    )
                )
    print_report(results, requests, concurrency)


def print_report(results: list[Result], requests: int, concurrency: int) -> None:
    baseline = results[0].per_second
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    )
    print(f"load: {requests} requests, {concurrency} in flight, one channel\n")
    print(
        "| scenario | requests/s | ratio to empty | p50 ms | p99 ms | events received |"
    )
    print("|---|---|---|---|---|---|")
    for result in results:
        print(
            f"| {result.name} | {result.per_second:,.0f} | {result.per_second / baseline:.2f}"
            f" | {statistics.median(result.latencies_ms):.2f} | {result.percentile(0.99):.2f}"
            f" | {result.events_received:,} |"
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=2000, help="sends per scenario")
    parser.add_argument(
        "--concurrency", type=int, default=16, help="requests in flight"
    )
    parser.add_argument(
        "--subscribers", type=int, default=10, help="streams in the last scenario"
    )
    arguments = parser.parse_args()
    asyncio.run(main(arguments.requests, arguments.concurrency, arguments.subscribers))
