"""Runtime settings of the server and the carrier simulator.

Values come from the `server:` and `carrier:` sections of the config file;
command-line options and PARLEY_* environment variables choose the files
and the listen address.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class CarrierSettings:
    """Loopback carrier simulator: delays and failure rules by user-number prefix."""

    kind: str = "simulator"
    sent_after_ms: int = 50
    delivered_after_ms: int = 150
    # User-number prefix -> carrier error code; the message ends FAILED.
    fail_prefixes: dict[str, str] = field(default_factory=dict)
    # User-number prefix -> carrier error code; the message ends UNDELIVERED.
    undelivered_prefixes: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ServerSettings:
    """Limits and periods that shape the service's behaviour."""

    idempotency_retention_hours: float = 24.0
    event_retention_hours: float = 168.0
    heartbeat_seconds: float = 15.0
    # Charge per message segment, in millionths of the account's currency.
    price_per_segment_micros: int = 7_500
    # How often expired idempotency keys and events are deleted.
    cleanup_interval_seconds: float = 300.0
    # Time that running calls get to finish on SIGTERM or SIGINT.
    shutdown_grace_seconds: float = 10.0
