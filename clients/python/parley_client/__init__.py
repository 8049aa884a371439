"""Python client and command-line tool for the Parley gRPC API."""

from parley_client.client import RETRYABLE_CODES, ParleyClient
from parley_client.errors import (
    STATUS_DETAILS_KEY,
    error_info,
    field_violations,
    rich_status,
)

__all__ = [
    "RETRYABLE_CODES",
    "STATUS_DETAILS_KEY",
    "ParleyClient",
    "error_info",
    "field_violations",
    "rich_status",
]
