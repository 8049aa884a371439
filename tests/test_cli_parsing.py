"""Tests of the parts of the `parley` CLI and client that need no server.

They cover argument parsing into request messages (including field presence),
environment defaults, and decoding of the rich error trailer.
"""

from __future__ import annotations

import argparse
import io

import grpc
import pytest
from google.protobuf import any_pb2, json_format
from google.rpc import code_pb2, error_details_pb2, status_pb2
from parley.v1 import events_pb2, types_pb2
from parley_client import error_info, field_violations, rich_status
from parley_client.cli import main
from parley_client.cli_commands import report_rpc_error
from parley_client.cli_parser import DEFAULT_ADDRESS, parse_arguments
from parley_client.cli_requests import (
    build_create_request,
    build_inbound_request,
    build_list_request,
    build_send_request,
    build_status_request,
    build_subscribe_request,
    build_usage_request,
)
from parley_client.enum_names import enum_label, enum_labels, enum_value

ENV = {"PARLEY_API_KEY": "test-key"}
PAIR = ["--agent", "+14155550100", "--to", "+14155550111"]


def parse(*argv: str) -> argparse.Namespace:
    return parse_arguments(list(argv), ENV)


def make_rpc_error(
    details: list[any_pb2.Any] | None,
    *,
    code: grpc.StatusCode = grpc.StatusCode.INVALID_ARGUMENT,
    message: str = "warning_seconds 900 is not below timeout_seconds 600",
) -> grpc.aio.AioRpcError:
    """Build the error a call raises, with an optional rich status trailer."""
    trailing = grpc.aio.Metadata()
    if details is not None:
        status = status_pb2.Status(
            code=code_pb2.INVALID_ARGUMENT, message=message, details=details
        )
        trailing.add("grpc-status-details-bin", status.SerializeToString())
    return grpc.aio.AioRpcError(
        code, grpc.aio.Metadata(), trailing, details=message, debug_error_string=None
    )


def packed(
    message: error_details_pb2.ErrorInfo | error_details_pb2.BadRequest,
) -> any_pb2.Any:
    container = any_pb2.Any()
    container.Pack(message)
    return container


def timeout_error_details() -> list[any_pb2.Any]:
    info = error_details_pb2.ErrorInfo(reason="INVALID_TIMEOUT_CONFIG", domain="parley")
    bad_request = error_details_pb2.BadRequest(
        field_violations=[
            error_details_pb2.BadRequest.FieldViolation(
                field="warning_seconds", description="must be less than 600"
            ),
            error_details_pb2.BadRequest.FieldViolation(
                field="metadata.crm_id", description="too deep"
            ),
        ]
    )
    return [packed(info), packed(bad_request)]


# Send and create requests.


def test_send_minimal_leaves_optionals_absent() -> None:
    request = build_send_request(parse("send", *PAIR))
    assert request.agent_number == "+14155550100"
    assert request.user_number == "+14155550111"
    assert request.agent_message == ""
    assert request.channel == types_pb2.CHANNEL_UNSPECIFIED
    assert request.idempotency_key == ""
    assert not request.new_conversation
    for field in (
        "timeout_seconds",
        "warning_seconds",
        "timeout_message",
        "warning_message",
        "pathway_id",
        "pathway_version",
        "start_node_id",
        "persona_settings",
        "outcome_ids",
        "citation_schema_ids",
        "metadata",
        "request_data",
    ):
        assert not request.HasField(field), field


def test_send_all_options() -> None:
    args = parse(
        "send",
        *PAIR,
        "--message",
        "Hello",
        "--channel",
        "whatsapp",
        "--idempotency-key",
        "key-1",
        "--new-conversation",
        "--persona",
        "7b0e8c1e-3f5a-4a53-9d6e-2f4f1d9a0c11",
        "--persona-version",
        "2",
        "--pathway",
        "intake",
        "--pathway-version",
        "3",
        "--start-node",
        "greet",
        "--persona-pathway",
        "vip",
        "--persona-start-node",
        "welcome",
        "--timeout-seconds",
        "600",
        "--warning-seconds",
        "300",
        "--timeout-message",
        "Closing this chat.",
        "--warning-message",
        "Still there?",
        "--outcome-ids",
        "booked,churn",
        "--citation-schema-ids",
        "address",
    )

    request = build_send_request(args)
    assert request.agent_message == "Hello"
    assert request.channel == types_pb2.CHANNEL_WHATSAPP
    assert request.idempotency_key == "key-1"
    assert request.new_conversation
    assert request.persona_id == "7b0e8c1e-3f5a-4a53-9d6e-2f4f1d9a0c11"
    assert request.persona_version == "2"
    assert request.pathway_id == "intake"
    assert request.pathway_version == "3"
    assert request.start_node_id == "greet"

    assert request.persona_settings.pathway_id == "vip"
    assert not request.persona_settings.HasField("pathway_version")
    assert request.persona_settings.start_node_id == "welcome"

    assert request.timeout_seconds == 600
    assert request.warning_seconds == 300
    assert request.timeout_message == "Closing this chat."
    assert request.warning_message == "Still there?"
    assert list(request.outcome_ids.values) == ["booked", "churn"]
    assert list(request.citation_schema_ids.values) == ["address"]


def test_send_explicit_zero_and_empty_are_present() -> None:
    args = parse(
        "send",
        *PAIR,
        "--timeout-seconds",
        "0",
        "--timeout-message",
        "",
        "--pathway",
        "",
        "--outcome-ids",
        "",
        "--citation-schema-ids",
        " , ",
    )
    request = build_send_request(args)
    assert request.HasField("timeout_seconds")
    assert request.timeout_seconds == 0
    assert request.HasField("timeout_message")
    assert request.HasField("pathway_id")
    assert request.HasField("outcome_ids")
    assert list(request.outcome_ids.values) == []
    assert request.HasField("citation_schema_ids")
    assert list(request.citation_schema_ids.values) == []


def test_send_id_list_trims_spaces() -> None:
    request = build_send_request(parse("send", *PAIR, "--outcome-ids", " a , b,,c "))
    assert list(request.outcome_ids.values) == ["a", "b", "c"]


def test_send_metadata_json_becomes_struct() -> None:
    args = parse(
        "send",
        *PAIR,
        "--metadata",
        '{"crm_id": "A-1", "score": 4.5, "vip": true, "tags": ["x", 2], "n": null}',
        "--request-data",
        '{"name": {"first": "Ada"}}',
    )
    request = build_send_request(args)
    assert request.HasField("metadata")
    assert json_format.MessageToDict(request.metadata) == {
        "crm_id": "A-1",
        "score": 4.5,
        "vip": True,
        "tags": ["x", 2.0],
        "n": None,
    }
    assert (
        request.request_data.fields["name"].struct_value.fields["first"].string_value
        == "Ada"
    )


def test_send_empty_metadata_object_is_present() -> None:
    request = build_send_request(parse("send", *PAIR, "--metadata", "{}"))
    assert request.HasField("metadata")
    assert len(request.metadata.fields) == 0


def test_create_message_and_sender() -> None:
    args = parse(
        "create",
        *PAIR,
        "--message",
        "Hi, I need help",
        "--sender",
        "agent",
        "--outcome-ids",
        "",
    )
    request = build_create_request(args)
    assert request.message == "Hi, I need help"
    assert request.sender == types_pb2.SENDER_AGENT
    assert request.agent_number == "+14155550100"
    assert request.HasField("outcome_ids")
    assert not request.HasField("timeout_seconds")


def test_create_sender_defaults_to_unspecified() -> None:
    request = build_create_request(parse("create", *PAIR))
    assert request.sender == types_pb2.SENDER_UNSPECIFIED
    assert request.message == ""


# Invalid values exit with code 2 and name the option.


@pytest.mark.parametrize(
    ("option", "value", "expected"),
    [
        ("--metadata", "{not json", "invalid JSON"),
        ("--metadata", "[1, 2]", "got a JSON array"),
        ("--request-data", '"text"', "got a JSON string"),
        ("--metadata", '{"a": NaN}', "NaN is not allowed"),
        ("--metadata", '{"a": 1e400}', "not a finite number"),
        ("--metadata", '{"id": 9007199254740993}', "send it as a string"),
        ("--timeout-seconds", "-1", "out of range"),
        ("--timeout-seconds", "4294967296", "out of range"),
        ("--warning-seconds", "ten", "invalid integer"),
        ("--channel", "fax", "invalid choice"),
    ],
)
def test_send_invalid_value_exits_2(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    option: str,
    value: str,
    expected: str,
) -> None:
    monkeypatch.setenv("PARLEY_API_KEY", "test-key")
    assert main(["send", *PAIR, option, value]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert option in captured.err
    assert expected in captured.err


def test_struct_integer_limit_is_inclusive() -> None:
    request = build_send_request(
        parse("send", *PAIR, "--metadata", '{"id": 9007199254740992}')
    )
    assert request.metadata.fields["id"].number_value == 2**53


def test_missing_required_option_exits_2(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("PARLEY_API_KEY", "test-key")
    assert main(["send", "--agent", "+14155550100"]) == 2
    assert "--to" in capsys.readouterr().err


def test_help_exits_0(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"]) == 0
    assert "send" in capsys.readouterr().out


# Address and API key defaults.


def test_address_defaults_to_loopback() -> None:
    args = parse_arguments(["get", "c1"], {"PARLEY_API_KEY": "k"})
    assert args.address == DEFAULT_ADDRESS
    assert DEFAULT_ADDRESS == "127.0.0.1:50051"


def test_address_and_key_from_environment() -> None:
    environ = {"PARLEY_ADDRESS": "127.0.0.1:6000", "PARLEY_API_KEY": "env-key"}
    args = parse_arguments(["get", "c1"], environ)
    assert args.address == "127.0.0.1:6000"
    assert args.api_key == "env-key"


def test_options_override_environment() -> None:
    environ = {"PARLEY_ADDRESS": "127.0.0.1:6000", "PARLEY_API_KEY": "env-key"}
    args = parse_arguments(
        ["--address", "127.0.0.1:7000", "--api-key", "flag-key", "get", "c1"], environ
    )
    assert args.address == "127.0.0.1:7000"
    assert args.api_key == "flag-key"


def test_global_options_after_command() -> None:
    args = parse_arguments(
        ["get", "c1", "--json", "--address", "127.0.0.1:7000", "--api-key", "k"], {}
    )
    assert args.json
    assert args.address == "127.0.0.1:7000"
    assert args.api_key == "k"
    assert args.conversation_id == "c1"


def test_global_options_before_command_survive() -> None:
    args = parse_arguments(["--json", "--call-timeout", "2.5", "admin", "numbers"], ENV)
    assert args.json
    assert args.call_timeout == 2.5
    assert args.command == "admin numbers"


@pytest.mark.parametrize("environ", [{}, {"PARLEY_API_KEY": ""}])
def test_missing_api_key_exits_2(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    environ: dict[str, str],
) -> None:
    monkeypatch.delenv("PARLEY_API_KEY", raising=False)
    for key, value in environ.items():
        monkeypatch.setenv(key, value)
    assert main(["get", "c1"]) == 2
    assert (
        "missing API key: pass --api-key or set PARLEY_API_KEY"
        in capsys.readouterr().err
    )


def test_invalid_call_timeout_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as raised:
        parse_arguments(["--call-timeout", "0", "get", "c1"], ENV)
    assert raised.value.code == 2
    assert "--call-timeout" in capsys.readouterr().err


# Other commands.


def test_list_request_filters() -> None:
    args = parse(
        "list",
        "--agent",
        "+14155550100",
        "--state",
        "ended",
        "--metadata",
        "crm_id=A-1",
        "expr=a=b",
        "--metadata",
        "empty=",
        "--page-size",
        "50",
    )
    request = build_list_request(args)
    assert request.agent_number == "+14155550100"
    assert request.user_number == ""
    assert request.state == types_pb2.CONVERSATION_STATE_ENDED
    assert dict(request.metadata) == {"crm_id": "A-1", "expr": "a=b", "empty": ""}
    assert request.page_size == 50
    assert not args.all


def test_list_metadata_without_equals_exits_2(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as raised:
        parse("list", "--metadata", "crm_id")
    assert raised.value.code == 2
    assert "expected key=value" in capsys.readouterr().err


def test_events_replay_defaults() -> None:
    request = build_subscribe_request(parse("events"))
    assert request.HasField("after_sequence")
    assert request.after_sequence == 0
    assert request.heartbeat_seconds == 1


def test_events_follow_starts_at_new_events() -> None:
    request = build_subscribe_request(parse("events", "--follow"))
    assert not request.HasField("after_sequence")
    assert request.heartbeat_seconds == 0


def test_events_filters() -> None:
    args = parse(
        "events",
        "--follow",
        "--after",
        "42",
        "--conversation",
        "c1",
        "c2",
        "--agent",
        "+14155550100",
        "--type",
        "message_created",
        "message_status_changed",
        "--metadata",
        "crm_id=A-1",
        "--heartbeat-seconds",
        "5",
    )
    request = build_subscribe_request(args)
    assert request.after_sequence == 42
    assert list(request.conversation_ids) == ["c1", "c2"]
    assert list(request.agent_numbers) == ["+14155550100"]
    assert list(request.event_types) == [
        events_pb2.EVENT_TYPE_MESSAGE_CREATED,
        events_pb2.EVENT_TYPE_MESSAGE_STATUS_CHANGED,
    ]
    assert dict(request.metadata) == {"crm_id": "A-1"}
    assert request.heartbeat_seconds == 5


def test_inbound_request() -> None:
    args = parse(
        "inbound",
        "--agent",
        "+14155550100",
        "--from",
        "+14155550111",
        "--text",
        "yes please",
        "--channel",
        "sms",
        "--carrier-message-id",
        "SM1",
    )
    request = build_inbound_request(args)
    assert request.agent_number == "+14155550100"
    assert request.user_number == "+14155550111"
    assert request.text == "yes please"
    assert request.channel == types_pb2.CHANNEL_SMS
    assert request.carrier_message_id == "SM1"


def test_status_request() -> None:
    args = parse(
        "status", "--message-id", "m1", "--status", "failed", "--error-code", "30003"
    )
    request = build_status_request(args)
    assert request.message_id == "m1"
    assert request.carrier_message_id == ""
    assert request.status == types_pb2.MESSAGE_STATUS_FAILED
    assert request.error_code == "30003"


def test_status_needs_exactly_one_id(capsys: pytest.CaptureFixture[str]) -> None:
    for argv in (
        ["status", "--status", "sent"],
        [
            "status",
            "--message-id",
            "m1",
            "--carrier-message-id",
            "SM1",
            "--status",
            "sent",
        ],
    ):
        with pytest.raises(SystemExit) as raised:
            parse(*argv)
        assert raised.value.code == 2, argv
    capsys.readouterr()


def test_usage_and_admin_commands() -> None:
    usage = build_usage_request(
        parse("usage", "--account", "acme", "--page-size", "10")
    )
    assert usage.account_id == "acme"
    assert usage.page_size == 10
    assert parse("admin", "apply", "-f", "parley.yaml").file == "parley.yaml"
    assert (
        parse("admin", "create-key", "--account", "acme").command == "admin create-key"
    )
    assert parse("admin", "numbers").account == ""


# Enum names.


def test_enum_labels_drop_prefix() -> None:
    assert (
        enum_label(types_pb2.MessageStatus, types_pb2.MESSAGE_STATUS_QUEUED) == "queued"
    )
    assert enum_label(types_pb2.Channel, types_pb2.CHANNEL_SMS) == "sms"
    assert (
        enum_label(events_pb2.EventType, events_pb2.EVENT_TYPE_TIMED_OUT) == "timed_out"
    )
    assert enum_label(types_pb2.Channel, 99) == "99"
    assert enum_labels(types_pb2.ConversationState) == ["active", "ended"]
    assert enum_value(types_pb2.Encoding, "ucs2") == types_pb2.ENCODING_UCS2
    with pytest.raises(ValueError, match="expected one of sms, whatsapp"):
        enum_value(types_pb2.Channel, "fax")


# Rich error decoding.


def test_error_info_decodes_trailer() -> None:
    exc = make_rpc_error(timeout_error_details())
    assert error_info(exc) == ("INVALID_TIMEOUT_CONFIG", "parley")
    assert field_violations(exc) == [
        ("warning_seconds", "must be less than 600"),
        ("metadata.crm_id", "too deep"),
    ]
    status = rich_status(exc)
    assert status is not None
    assert status.code == code_pb2.INVALID_ARGUMENT


def test_error_info_without_trailer() -> None:
    exc = make_rpc_error(None, code=grpc.StatusCode.UNAVAILABLE)
    assert rich_status(exc) is None
    assert error_info(exc) is None
    assert field_violations(exc) == []


def test_error_info_without_error_info_detail() -> None:
    bad_request = error_details_pb2.BadRequest(
        field_violations=[
            error_details_pb2.BadRequest.FieldViolation(
                field="text", description="empty"
            )
        ]
    )
    exc = make_rpc_error([packed(bad_request)])
    assert error_info(exc) is None
    assert field_violations(exc) == [("text", "empty")]


def test_error_info_ignores_corrupt_trailer() -> None:
    trailing = grpc.aio.Metadata(("grpc-status-details-bin", b"\xff\xff\xff"))
    exc = grpc.aio.AioRpcError(
        grpc.StatusCode.INTERNAL, grpc.aio.Metadata(), trailing, details="boom"
    )
    assert rich_status(exc) is None
    assert error_info(exc) is None
    assert field_violations(exc) == []


def test_report_rpc_error_format() -> None:
    stream = io.StringIO()
    report_rpc_error(make_rpc_error(timeout_error_details()), "test-key", stream)
    assert stream.getvalue().splitlines() == [
        "error: INVALID_ARGUMENT INVALID_TIMEOUT_CONFIG: "
        "warning_seconds 900 is not below timeout_seconds 600",
        "  warning_seconds: must be less than 600",
        "  metadata.crm_id: too deep",
    ]


def test_report_rpc_error_without_reason() -> None:
    stream = io.StringIO()
    exc = make_rpc_error(
        None, code=grpc.StatusCode.UNAVAILABLE, message="connection refused"
    )
    report_rpc_error(exc, "test-key", stream)
    assert stream.getvalue() == "error: UNAVAILABLE: connection refused\n"


def test_report_rpc_error_masks_api_key() -> None:
    stream = io.StringIO()
    exc = make_rpc_error(
        None, code=grpc.StatusCode.UNAUTHENTICATED, message="unknown key secret-123"
    )
    report_rpc_error(exc, "secret-123", stream)
    assert "secret-123" not in stream.getvalue()
    assert stream.getvalue() == "error: UNAUTHENTICATED: unknown key ***\n"
