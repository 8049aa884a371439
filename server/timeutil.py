"""Conversions between stored epoch milliseconds and protobuf timestamps."""

from __future__ import annotations

from google.protobuf import timestamp_pb2


def timestamp_from_ms(epoch_ms: int) -> timestamp_pb2.Timestamp:
    stamp = timestamp_pb2.Timestamp()
    stamp.FromMilliseconds(epoch_ms)
    return stamp
