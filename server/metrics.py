"""Prometheus metrics, served over HTTP when `--metrics-listen` is set."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

RPC_DURATION = Histogram(
    "parley_rpc_duration_seconds",
    "Time spent handling an RPC, by method and status code.",
    ["method", "code"],
)
MESSAGES_SENT = Counter(
    "parley_messages_sent_total", "Outbound messages accepted, by channel.", ["channel"]
)
SEGMENTS_CHARGED = Counter(
    "parley_segments_charged_total", "Segments charged to accounts."
)
EVENTS_APPENDED = Counter("parley_events_appended_total", "Events written to the log.")
SUBSCRIBERS = Gauge("parley_event_subscribers", "Open SubscribeEvents streams.")
