"""structlog set-up: JSON lines on stderr with masked phone numbers.

Any event-dict key ending in `number` (such as `agent_number`) is masked.
Phone numbers quoted in other text values, such as error messages, are
masked too. Keys that could carry a credential are removed. A credential
written into free text (for example a key pasted where a config expects a
name) is not recognised, so log calls still must not format secrets.
"""

from __future__ import annotations

import contextlib
import logging
import re
import sys
from collections.abc import MutableMapping
from typing import Any, TextIO, cast

import structlog

_SECRET_KEYS = frozenset({"api_key", "authorization", "key", "token", "password"})
# Seven or more digits (any script), optionally after "+" and grouped by
# single spaces, dots, slashes, dashes or parentheses: a phone number quoted
# inside free text such as an error message. Long runs of digits that are
# not phone numbers get masked too, which costs little in a log. Digits
# glued to letters or underscores (ids such as conv_4f06...) are left alone.
_PHONE_IN_TEXT = re.compile(r"(?<!\w)\+?\(?\d(?:[ .()/\-]{0,2}\d){6,}")


def mask_number(number: str) -> str:
    """Keep the first four and last two characters: `+1415*****00`."""
    if len(number) <= 6:
        return "*" * len(number)
    return number[:4] + "*" * (len(number) - 6) + number[-2:]


def _mask_match(match: re.Match[str]) -> str:
    return mask_number(match.group(0))


def _scrub(
    _logger: object, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    for key in list(event_dict):
        if key in _SECRET_KEYS:
            del event_dict[key]
        elif key.endswith("number") and isinstance(event_dict[key], str):
            event_dict[key] = mask_number(event_dict[key])
        elif key != "event" and isinstance(event_dict[key], str):
            event_dict[key] = _PHONE_IN_TEXT.sub(_mask_match, event_dict[key])
    return event_dict


class _QuietStderr:
    """Standard error that drops lines once it is closed.

    A server whose log reader went away must still shut down on SIGTERM, so
    a broken pipe must not turn a log call into an exception.
    """

    def write(self, text: str) -> int:
        try:
            return sys.stderr.write(text)
        except (ValueError, OSError):
            return 0

    def flush(self) -> None:
        with contextlib.suppress(ValueError, OSError):
            sys.stderr.flush()


def configure_logging(level: str = "info", fmt: str = "json") -> None:
    """Configure structlog; `fmt` is "json" (production) or "console"."""
    renderer: Any = (
        structlog.dev.ConsoleRenderer(colors=False)
        if fmt == "console"
        else structlog.processors.JSONRenderer()
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            # Tracebacks are text before the scrub, so it masks numbers in them.
            structlog.processors.format_exc_info,
            _scrub,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.getLevelNamesMapping()[level.upper()]
        ),
        logger_factory=structlog.PrintLoggerFactory(file=cast(TextIO, _QuietStderr())),
        cache_logger_on_first_use=False,
    )
