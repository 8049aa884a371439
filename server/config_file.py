"""The declarative YAML config: loading, parsing and applying it.

The server's `--config` file and `AdminService.ApplyConfig` take the same
document. Parsing is strict. A YAML syntax error, an unknown or duplicate
key, a wrong type or an invalid value raises INVALID_ARGUMENT with reason
INVALID_CONFIG. More specific reasons pass through unchanged:
INVALID_TIMEOUT_CONFIG for a warning that does not come before its timeout,
and INVALID_PATHWAY, INVALID_CITATION_SCHEMA, INVALID_OUTCOME and
INVALID_OUTCOME_SCRIPT for a definition that its validator rejects. The message starts with the source and names the path,
as in `parley.yaml: accounts[0].numbers[1].sms_config.timout_seconds is
not a known key`. The entry types live in `server.config_model`, the
schema walk in `server.config_parser` and the database writes in
`server.config_apply`; this module re-exports what callers need.
"""

from __future__ import annotations

import contextlib
import typing
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import yaml

from server.config_apply import ApplySummary, apply_config
from server.config_model import (
    AccountEntry,
    ConfigDocument,
    NumberEntry,
    PathwayEntry,
    PathwayVersionEntry,
    PersonaEntry,
    PersonaVersionEntry,
)
from server.config_parser import parse_document
from server.errors import ParleyError, failed_precondition, invalid_argument

try:
    # The libyaml loader is several times faster, and libyaml 0.2.6 rejects
    # nesting deeper than about 1,000 levels.
    from yaml import CSafeLoader as _SafeLoader
except ImportError:  # PyYAML built without libyaml
    from yaml import SafeLoader as _SafeLoader  # type: ignore[assignment]

# Reasons more specific than INVALID_CONFIG, which parse errors keep.
_KEPT_REASONS = frozenset(
    {
        "INVALID_TIMEOUT_CONFIG",
        "INVALID_PATHWAY",
        "INVALID_CITATION_SCHEMA",
        "INVALID_OUTCOME",
        "INVALID_OUTCOME_SCRIPT",
    }
)

__all__ = [
    "AccountEntry",
    "ApplySummary",
    "ConfigDocument",
    "NumberEntry",
    "PathwayEntry",
    "PathwayVersionEntry",
    "PersonaEntry",
    "PersonaVersionEntry",
    "apply_config",
    "load_config",
    "parse_config",
]


def load_config(path: str | Path) -> ConfigDocument:
    """Read and parse the config file at `path`.

    Raises FAILED_PRECONDITION, reason CONFIG_UNREADABLE, when the file cannot be read.
    """
    try:
        raw = Path(path).read_bytes()
    except OSError as error:
        raise failed_precondition(
            "CONFIG_UNREADABLE",
            f"Cannot read the config file {str(path)!r}: {error.strerror or error}; "
            "check the --config path and the file's permissions.",
        ) from error
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        raise invalid_argument(
            "config",
            f"{path}: the file is not valid UTF-8 (invalid byte at offset"
            f" {error.start}); save it as UTF-8",
            "INVALID_CONFIG",
        ) from error
    return parse_config(text, str(path))


def parse_config(text: str, source: str = "config") -> ConfigDocument:
    """Parse a YAML config document; error messages start with `source`."""
    with _config_errors(source):
        return parse_document(_load_yaml(text))


@contextlib.contextmanager
def _config_errors(source: str) -> Iterator[None]:
    """Re-raise INVALID_ARGUMENT errors naming `source`, mostly as INVALID_CONFIG."""
    try:
        yield
    except ParleyError as error:
        if error.code != grpc.StatusCode.INVALID_ARGUMENT:
            raise
        reason = "INVALID_CONFIG"
        if error.reason in _KEPT_REASONS:
            reason = error.reason
        message = f"{source}: {error.message}"
        raise ParleyError(error.code, reason, message, error.violations) from None


class _StrictLoader(_SafeLoader):
    """The safe loader, except that a key written twice in one mapping is an error."""

    def construct_mapping(
        self, node: yaml.MappingNode, deep: bool = False
    ) -> dict[Any, Any]:
        seen: set[object] = set()
        for key_node, _value_node in node.value:
            # Merge keys (`<<: *defaults`) may repeat and may be overridden.
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=True)
            if isinstance(key, typing.Hashable) and key in seen:
                raise yaml.constructor.ConstructorError(
                    "while constructing a mapping",
                    node.start_mark,
                    f"found the key {_clip(repr(key))} twice",
                    key_node.start_mark,
                )
            seen.add(key)
        return super().construct_mapping(node, deep)


def _load_yaml(text: str) -> object:
    try:
        return yaml.load(text, Loader=_StrictLoader)
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = _clip(error.problem or error.context or "invalid syntax")
        raise invalid_argument(
            "yaml", f"the YAML is invalid{where}: {problem}"
        ) from None
    except (yaml.YAMLError, ValueError, TypeError) as error:
        # ValueError: a tagged or date-like scalar that cannot be converted.
        message = f"the YAML is invalid: {_clip(str(error))}"
        raise invalid_argument("yaml", message) from None
    except RecursionError:
        # Only the pure-Python loader recurses once per nesting level.
        raise invalid_argument(
            "yaml",
            "the YAML is nested too deeply;"
            " a config document needs fewer than ten levels",
        ) from None


def _clip(text: str) -> str:
    """Cut `text` to 200 characters, because YAML errors may quote huge tokens."""
    return text if len(text) <= 200 else text[:200] + "..."
