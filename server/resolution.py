"""Effective conversation configuration from its layers.

The base layer is the persona version's configuration when the conversation
has a persona, and otherwise the number's channel configuration: a persona
replaces the channel configuration as a whole. On top of it come the
conversation's stored overrides (request `pathway_*`, then
`persona_settings`, timeouts, messages and the outcome and citation schema
lists). An override replaces a base field only when it is present, so an
explicit 0 or empty list still overrides.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Literal

import grpc
from parley.v1 import types_pb2

from server.errors import FieldViolation, ParleyError, invalid_argument

# Largest accepted timeout or warning: seven days.
MAX_TIMER_SECONDS = 7 * 24 * 3600

_ScalarField = Literal[
    "pathway_id",
    "pathway_version",
    "start_node_id",
    "timeout_seconds",
    "warning_seconds",
    "timeout_message",
    "warning_message",
    "restart_after_end",
]
_SCALAR_FIELDS: tuple[_ScalarField, ...] = (
    "pathway_id",
    "pathway_version",
    "start_node_id",
    "timeout_seconds",
    "warning_seconds",
    "timeout_message",
    "warning_message",
    "restart_after_end",
)
_LIST_FIELDS: tuple[Literal["outcome_ids", "citation_schema_ids"], ...] = (
    "outcome_ids",
    "citation_schema_ids",
)


def resolve_config(
    channel_config: types_pb2.ChannelConfig,
    persona_config: types_pb2.ChannelConfig | None,
    overrides: types_pb2.ChannelConfig,
) -> types_pb2.EffectiveConfig:
    """Return the effective configuration of a conversation."""
    base = persona_config if persona_config is not None else channel_config
    return effective_config(merge_configs([base, overrides]))


def merge_configs(
    layers: Iterable[types_pb2.ChannelConfig | None],
) -> types_pb2.ChannelConfig:
    """Overlay the layers in order; present fields of later layers win."""
    merged = types_pb2.ChannelConfig()
    for layer in layers:
        if layer is None:
            continue
        for name in _SCALAR_FIELDS:
            if layer.HasField(name):
                setattr(merged, name, getattr(layer, name))
        for list_name in _LIST_FIELDS:
            if layer.HasField(list_name):
                getattr(merged, list_name).CopyFrom(getattr(layer, list_name))
    return merged


def effective_config(merged: types_pb2.ChannelConfig) -> types_pb2.EffectiveConfig:
    return types_pb2.EffectiveConfig(
        pathway_id=merged.pathway_id,
        pathway_version=merged.pathway_version,
        start_node_id=merged.start_node_id,
        timeout_seconds=merged.timeout_seconds,
        warning_seconds=merged.warning_seconds,
        timeout_message=merged.timeout_message,
        warning_message=merged.warning_message,
        outcome_ids=list(merged.outcome_ids.values),
        citation_schema_ids=list(merged.citation_schema_ids.values),
        # A conversation restarts on a later user text unless configured not to.
        restart_after_end=merged.restart_after_end
        if merged.HasField("restart_after_end")
        else True,
    )


def check_timers(config: types_pb2.EffectiveConfig, field_prefix: str = "") -> None:
    """Reject a warning that would not come before the timeout.

    A timeout of 0 disables the timeout, so any warning is then allowed; a
    warning of 0 disables the warning.
    """
    timeout, warning = config.timeout_seconds, config.warning_seconds
    if timeout > 0 and warning > 0 and warning >= timeout:
        raise ParleyError(
            grpc.StatusCode.INVALID_ARGUMENT,
            "INVALID_TIMEOUT_CONFIG",
            f"warning_seconds {warning} must be less than the effective timeout_seconds"
            f" {timeout}; lower warning_seconds, raise timeout_seconds or set"
            " warning_seconds to 0 to disable the warning.",
            violations=[
                FieldViolation(
                    field_prefix + "warning_seconds",
                    f"must be less than the effective timeout_seconds {timeout}",
                )
            ],
            details={"warning_seconds": str(warning), "timeout_seconds": str(timeout)},
        )


def check_timer_range(value: int, field: str) -> None:
    if value > MAX_TIMER_SECONDS:
        raise invalid_argument(
            field,
            f"{field} {value} is too large; the maximum is {MAX_TIMER_SECONDS} (7 days).",
            reason="TIMER_OUT_OF_RANGE",
        )
