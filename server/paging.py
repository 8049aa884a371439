"""Opaque page tokens and page-size checks shared by the List RPCs."""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

from server.errors import invalid_argument

DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 1_000


def page_size(requested: int) -> int:
    if requested == 0:
        return DEFAULT_PAGE_SIZE
    if requested > MAX_PAGE_SIZE:
        raise invalid_argument(
            "page_size",
            f"page_size {requested} is too large; use 1 to {MAX_PAGE_SIZE}.",
        )
    return requested


def encode_token(position: list[object]) -> str:
    raw = json.dumps(position, separators=(",", ":")).encode("utf-8")
    return base64.urlsafe_b64encode(raw).decode("ascii")


def decode_token(token: str, expected_length: int) -> list[Any] | None:
    """Return the position in `token`, or None for an empty token."""
    if not token:
        return None
    try:
        position = json.loads(base64.urlsafe_b64decode(token.encode("ascii")))
    except (ValueError, binascii.Error, UnicodeError):
        position = None
    if not isinstance(position, list) or len(position) != expected_length:
        raise invalid_argument(
            "page_token",
            "page_token is not a token returned by this RPC; pass next_page_token"
            " unchanged or leave it empty for the first page.",
            reason="INVALID_PAGE_TOKEN",
        )
    return position
