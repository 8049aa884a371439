"""CarrierService: inbound user texts and delivery reports from carriers."""

from __future__ import annotations

from typing import TYPE_CHECKING

from parley.v1 import carrier_pb2, carrier_pb2_grpc

from server.auth import Principal
from server.errors import invalid_argument
from server.inbound import InboundText
from server.rpc import Context, unary
from server.turns import MAX_MESSAGE_CHARS, validate_channel
from server.validation import normalize_e164, validate_text

if TYPE_CHECKING:
    from server.app import Components

MAX_CARRIER_ID_CHARS = 128


class CarrierServicer(carrier_pb2_grpc.CarrierServiceServicer):
    def __init__(self, components: Components) -> None:
        self.components = components
        self.authenticator = components.authenticator
        self.lifecycle = components.lifecycle

    @unary
    async def ReceiveMessage(
        self,
        request: carrier_pb2.ReceiveMessageRequest,
        context: Context,
        principal: Principal,
    ) -> carrier_pb2.ReceiveMessageResponse:
        inbound = InboundText(
            agent_number=normalize_e164(request.agent_number, "agent_number"),
            user_number=normalize_e164(request.user_number, "user_number"),
            channel=validate_channel(request.channel),
            text=validate_text(request.text, "text", MAX_MESSAGE_CHARS, required=True),
            carrier_message_id=_carrier_id(
                request.carrier_message_id, "carrier_message_id"
            ),
        )
        return await self.lifecycle.receive(principal.account_id, inbound)

    @unary
    async def ReportStatus(
        self,
        request: carrier_pb2.ReportStatusRequest,
        context: Context,
        principal: Principal,
    ) -> carrier_pb2.ReportStatusResponse:
        # Delivery reports move money (a FAILED report refunds the charge), so
        # only the carrier's operator key may send them.
        principal.require_operator()
        if bool(request.message_id) == bool(request.carrier_message_id):
            raise invalid_argument(
                "message_id",
                "Send exactly one of message_id and carrier_message_id.",
                reason="MESSAGE_REFERENCE_REQUIRED",
            )
        _carrier_id(request.message_id, "message_id")
        _carrier_id(request.carrier_message_id, "carrier_message_id")
        validate_text(request.error_code, "error_code", 32)
        message, applied = await self.components.delivery.apply_report(
            request.message_id,
            request.carrier_message_id,
            request.status,
            request.error_code,
            None,
        )
        return carrier_pb2.ReportStatusResponse(message=message, applied=applied)


def _carrier_id(value: str, field: str) -> str:
    if len(value) > MAX_CARRIER_ID_CHARS or not value.isprintable():
        raise invalid_argument(
            field,
            f"{field} must be at most {MAX_CARRIER_ID_CHARS} printable characters.",
        )
    return value
