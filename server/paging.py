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


# Tokens are small; anything longer was not made by this server.
_MAX_TOKEN_CHARS = 1_024
# Largest integer SQLite stores in an INTEGER column.
_MAX_SQLITE_INTEGER = 2**63 - 1


def decode_token(token: str, shape: tuple[type, ...]) -> list[Any] | None:
    """Return the position in `token`, or None for an empty token.

    A position is a list whose items have the types in `shape` (`int` or
    `str`); integers must fit SQLite's INTEGER. Anything else is rejected.
    """
    if not token:
        return None
    position: object = None
    if len(token) <= _MAX_TOKEN_CHARS:
        try:
            position = json.loads(base64.urlsafe_b64decode(token.encode("ascii")))
        except (ValueError, binascii.Error, UnicodeError, RecursionError):
            position = None
    if not (
        isinstance(position, list)
        and len(position) == len(shape)
        and all(
            _valid_item(item, kind) for item, kind in zip(position, shape, strict=True)
        )
    ):
        raise invalid_argument(
            "page_token",
            "page_token is not a token returned by this RPC; pass next_page_token"
            " unchanged or leave it empty for the first page.",
            reason="INVALID_PAGE_TOKEN",
        )
    return position


def _valid_item(item: object, kind: type) -> bool:
    if kind is int:
        # `type(...) is int` also keeps out booleans, a subclass of int.
        return type(item) is int and 0 <= item <= _MAX_SQLITE_INTEGER
    return isinstance(item, kind)
