"""Assembly of the service: database, event broker, carrier and gRPC server.

`Parley.start()` opens the database, applies the config file, starts the
carrier and the cleanup loop, and then serves. `Parley.stop()` ends event
streams, lets running calls finish within the grace period and closes the
database.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import structlog
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from parley.v1 import (
    admin_pb2,
    admin_pb2_grpc,
    carrier_pb2,
    carrier_pb2_grpc,
    conversation_pb2,
    conversation_pb2_grpc,
    events_pb2,
    events_pb2_grpc,
)

from server.auth import Authenticator
from server.carrier import Carrier, build_carrier
from server.clock import Clock, SystemClock
from server.config_file import ConfigDocument, apply_config, load_config
from server.db import Database
from server.decoding import add_servicer
from server.delivery import Delivery
from server.events import EventBroker, EventRecorder
from server.lifecycle import Lifecycle
from server.maintenance import run_cleanup_loop
from server.settings import ServerSettings
from server.timers import TimerScheduler, TimerWake

log = structlog.get_logger("parley.server")

SERVICE_NAMES = (
    conversation_pb2.DESCRIPTOR.services_by_name["ConversationService"].full_name,
    events_pb2.DESCRIPTOR.services_by_name["EventService"].full_name,
    carrier_pb2.DESCRIPTOR.services_by_name["CarrierService"].full_name,
    admin_pb2.DESCRIPTOR.services_by_name["AdminService"].full_name,
)


@dataclass
class Components:
    """Shared state that the servicers use."""

    settings: ServerSettings
    clock: Clock
    database: Database
    broker: EventBroker
    events: EventRecorder
    authenticator: Authenticator
    carrier: Carrier
    delivery: Delivery
    timer_wake: TimerWake
    # Set right after construction, because the lifecycle needs the rest.
    lifecycle: Lifecycle = field(init=False)


class Parley:
    """One server instance bound to one database file and listen address."""

    def __init__(
        self,
        database_path: str | Path,
        listen: str = "127.0.0.1:50051",
        config_path: str | Path | None = None,
        clock: Clock | None = None,
    ) -> None:
        self._database_path = Path(database_path)
        self._listen = listen
        self._config_path = Path(config_path) if config_path else None
        self._clock = clock or SystemClock()
        self._server: grpc.aio.Server | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self.components: Components | None = None
        self.port = 0

    @property
    def address(self) -> str:
        host = self._listen.rsplit(":", 1)[0]
        return f"{host}:{self.port}"

    async def start(self) -> None:
        document = (
            load_config(self._config_path) if self._config_path else ConfigDocument()
        )
        database = await Database.open(self._database_path)
        try:
            await self._start_serving(database, document)
        except BaseException:
            log.error("start_aborted", database=str(self._database_path))
            await self.stop(grace=0)
            if self.components is None:
                await database.close()
            raise

    async def _start_serving(
        self, database: Database, document: ConfigDocument
    ) -> None:
        await apply_config(database, document, self._clock.now_ms())
        components = self._assemble(database, document)
        self.components = components
        await components.carrier.start(components.delivery)
        await components.delivery.resubmit_pending()
        self._tasks.append(asyncio.create_task(run_cleanup_loop(components)))
        scheduler = TimerScheduler(
            components, components.lifecycle, components.timer_wake
        )
        self._tasks.append(asyncio.create_task(scheduler.run()))
        self._server = self._build_server(components)
        self.port = self._server.add_insecure_port(self._listen)
        if self.port == 0:
            raise OSError(f"cannot listen on {self._listen}")
        await self._server.start()
        log.info(
            "server_started", address=self.address, database=str(self._database_path)
        )

    def _assemble(self, database: Database, document: ConfigDocument) -> Components:
        broker = EventBroker()
        events = EventRecorder(broker)
        carrier = build_carrier(document.carrier)
        delivery = Delivery(database, events, carrier, self._clock, document.server)
        components = Components(
            settings=document.server,
            clock=self._clock,
            database=database,
            broker=broker,
            events=events,
            authenticator=Authenticator(database),
            carrier=carrier,
            delivery=delivery,
            timer_wake=TimerWake(),
        )
        components.lifecycle = Lifecycle(components)
        return components

    def _build_server(self, components: Components) -> grpc.aio.Server:
        # Imported here: the service modules import Components for typing.
        from server.services.admin import AdminServicer
        from server.services.carrier import CarrierServicer
        from server.services.conversations import ConversationServicer
        from server.services.events import EventServicer

        # Port sharing (SO_REUSEPORT, on by default in gRPC) would let a second
        # server bind the same address and split the traffic silently.
        server = grpc.aio.server(options=[("grpc.so_reuseport", 0)])
        add_servicer(
            server,
            conversation_pb2_grpc.add_ConversationServiceServicer_to_server,
            ConversationServicer(components),
        )
        add_servicer(
            server,
            events_pb2_grpc.add_EventServiceServicer_to_server,
            EventServicer(components),
        )
        add_servicer(
            server,
            carrier_pb2_grpc.add_CarrierServiceServicer_to_server,
            CarrierServicer(components),
        )
        add_servicer(
            server,
            admin_pb2_grpc.add_AdminServiceServicer_to_server,
            AdminServicer(components),
        )
        health_servicer = health.aio.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
        for name in (*SERVICE_NAMES, ""):
            self._tasks.append(
                asyncio.create_task(
                    health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
                )
            )
        reflection.enable_server_reflection(
            (*SERVICE_NAMES, reflection.SERVICE_NAME, health.SERVICE_NAME), server
        )
        return server

    async def stop(self, grace: float | None = None) -> None:
        """Stop serving: end streams, let unary calls finish, close the database."""
        components = self.components
        if components is not None:
            components.broker.close()
        if self._server is not None:
            if grace is None:
                grace = (
                    components.settings.shutdown_grace_seconds if components else 5.0
                )
            await self._server.stop(grace)
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if components is not None:
            await components.lifecycle.stop()
            await components.delivery.stop()
            await components.carrier.stop()
            await components.database.close()
        log.info("server_stopped")

    async def wait_for_termination(self) -> None:
        if self._server is not None:
            await self._server.wait_for_termination()
