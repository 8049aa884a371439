"""The base of AdminService: the servicer's components and account scoping."""

from __future__ import annotations

from typing import TYPE_CHECKING

from parley.v1 import admin_pb2_grpc

from server.auth import Principal
from server.db import Database
from server.errors import not_found
from server.services import admin_records as records
from server.validation import quote_value

if TYPE_CHECKING:
    from server.app import Components


class AdminServicerBase(admin_pb2_grpc.AdminServiceServicer):
    """Shared state and helpers of the AdminService servicer classes."""

    def __init__(self, components: Components) -> None:
        self.components = components
        self.authenticator = components.authenticator

    @property
    def _database(self) -> Database:
        return self.components.database

    def _now_ms(self) -> int:
        return self.components.clock.now_ms()

    async def _account_id(self, principal: Principal, requested: str) -> str:
        """Return the account the call acts on; NOT_FOUND for an unknown account."""
        account_id = principal.resolve_account(requested)
        if principal.is_operator and not await records.account_exists(
            self._database, account_id
        ):
            raise not_found(
                "ACCOUNT_NOT_FOUND",
                f"Account {quote_value(account_id)} does not exist;"
                " ListAccounts shows the accounts.",
            )
        return account_id
