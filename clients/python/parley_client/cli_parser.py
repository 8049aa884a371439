"""Command-line grammar of `parley`: the argparse parser and its defaults."""

from __future__ import annotations

import argparse
import math
from collections.abc import Mapping
from typing import Any

from parley.v1 import events_pb2, types_pb2

from parley_client.cli_parser_lifecycle import (
    add_definition_lists,
    add_lifecycle_commands,
)
from parley_client.cli_values import id_list, json_object, key_value, uint32, uint64
from parley_client.enum_names import enum_labels

DEFAULT_ADDRESS = "127.0.0.1:50051"
ADDRESS_ENV = "PARLEY_ADDRESS"
API_KEY_ENV = "PARLEY_API_KEY"


def _add_global_options(parser: argparse.ArgumentParser, *, suppress: bool) -> None:
    """Add the connection and output options.

    Subcommands get them with SUPPRESS defaults, so an option given after the
    command overrides the main parser's value and an absent one leaves it.
    """

    def default(value: Any) -> Any:
        return argparse.SUPPRESS if suppress else value

    parser.add_argument(
        "--address",
        default=default(None),
        help=f"server HOST:PORT (default: ${ADDRESS_ENV}, else {DEFAULT_ADDRESS})",
    )
    parser.add_argument(
        "--api-key",
        default=default(None),
        help=f"API key sent as a bearer token (default: ${API_KEY_ENV})",
    )
    parser.add_argument(
        "--json",
        action="store_true",
        default=default(False),
        help="print responses as protobuf JSON instead of text",
    )
    parser.add_argument(
        "--call-timeout",
        type=float,
        default=default(10.0),
        metavar="SECONDS",
        help="deadline of each unary call in seconds (default: 10)",
    )


def _add_conversation_options(parser: argparse.ArgumentParser) -> None:
    """Add the options that SendMessage and CreateConversation share."""
    parser.add_argument(
        "--agent", required=True, metavar="NUMBER", help="agent number, E.164"
    )
    parser.add_argument(
        "--to", required=True, metavar="NUMBER", help="user number, E.164"
    )
    parser.add_argument(
        "--channel", choices=enum_labels(types_pb2.Channel), help="default: sms"
    )
    parser.add_argument("--idempotency-key", metavar="KEY", help="default: a new uuid4")

    parser.add_argument(
        "--new-conversation",
        action="store_true",
        help="end the active conversation of the pair and start a new one",
    )

    parser.add_argument("--persona", metavar="ID", help="persona UUID")
    parser.add_argument(
        "--persona-version", metavar="VERSION", help="default: the persona's"
    )
    parser.add_argument("--pathway", metavar="ID", help="pathway id override")
    parser.add_argument("--pathway-version", metavar="VERSION")
    parser.add_argument("--start-node", metavar="ID", help="pathway start node id")
    parser.add_argument(
        "--persona-pathway", metavar="ID", help="pathway id in persona_settings"
    )
    parser.add_argument("--persona-pathway-version", metavar="VERSION")
    parser.add_argument("--persona-start-node", metavar="ID")
    _add_conversation_settings(parser)


def _add_conversation_settings(parser: argparse.ArgumentParser) -> None:
    """Add the data, timeout, end-of-conversation and retry options."""
    parser.add_argument(
        "--metadata",
        type=json_object,
        metavar="JSON",
        help="JSON object that replaces the conversation's metadata",
    )
    parser.add_argument(
        "--request-data",
        type=json_object,
        metavar="JSON",
        help="JSON object of template variables",
    )

    parser.add_argument(
        "--timeout-seconds",
        type=uint32,
        metavar="N",
        help="inactivity timeout in seconds; 0 disables it",
    )
    parser.add_argument(
        "--warning-seconds",
        type=uint32,
        metavar="N",
        help="seconds of silence before the warning message",
    )
    parser.add_argument("--timeout-message", metavar="TEXT")
    parser.add_argument("--warning-message", metavar="TEXT")

    parser.add_argument(
        "--outcome-ids",
        type=id_list,
        metavar="A,B",
        help='comma-separated; "" for none',
    )
    parser.add_argument(
        "--citation-schema-ids",
        type=id_list,
        metavar="A,B",
        help='comma-separated; "" for none',
    )

    parser.add_argument(
        "--retries",
        type=uint32,
        default=3,
        metavar="N",
        help="retries after UNAVAILABLE, DEADLINE_EXCEEDED or RESOURCE_EXHAUSTED "
        "(default: 3)",
    )


def _add_paging_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--page-size", type=uint32, default=0, metavar="N", help="0: server default"
    )
    parser.add_argument(
        "--page-token", default="", metavar="TOKEN", help="page to start at"
    )
    parser.add_argument("--all", action="store_true", help="fetch every page")


def _add_conversation_commands(commands: Any, common: argparse.ArgumentParser) -> None:
    send = commands.add_parser("send", parents=[common], help="send an agent message")
    _add_conversation_options(send)
    send.add_argument(
        "--message",
        default="",
        metavar="TEXT",
        help="text; empty asks the pathway for a reply",
    )
    send.set_defaults(command="send")

    create = commands.add_parser(
        "create", parents=[common], help="create a conversation without sending"
    )
    _add_conversation_options(create)
    create.add_argument(
        "--message", default="", metavar="TEXT", help="history message to store"
    )
    create.add_argument(
        "--sender", choices=enum_labels(types_pb2.Sender), help="default: user"
    )
    create.set_defaults(command="create")

    get = commands.add_parser("get", parents=[common], help="show one conversation")
    get.add_argument("conversation_id", metavar="CONVERSATION_ID")
    get.set_defaults(command="get")

    listing = commands.add_parser("list", parents=[common], help="list conversations")
    listing.add_argument("--agent", default="", metavar="NUMBER")
    listing.add_argument("--user", default="", metavar="NUMBER")
    listing.add_argument("--state", choices=enum_labels(types_pb2.ConversationState))
    listing.add_argument(
        "--metadata",
        type=key_value,
        action="extend",
        nargs="+",
        default=[],
        metavar="KEY=VALUE",
    )
    _add_paging_options(listing)
    listing.set_defaults(command="list")

    messages = commands.add_parser(
        "messages", parents=[common], help="list a transcript"
    )
    messages.add_argument("conversation_id", metavar="CONVERSATION_ID")
    messages.set_defaults(command="messages")


def _add_events_command(commands: Any, common: argparse.ArgumentParser) -> None:
    events = commands.add_parser(
        "events",
        parents=[common],
        help="print events of the account",
        description="Print one line per event. Without --follow, replay the log after "
        "--after (default 0, the whole retained log) and stop when the stream is idle. "
        "With --follow, start at new events unless --after is given, keep reading, "
        "and reconnect after UNAVAILABLE.",
    )
    events.add_argument(
        "--follow", action="store_true", help="keep reading live events"
    )
    events.add_argument(
        "--after", type=uint64, metavar="SEQUENCE", help="exclusive start"
    )
    events.add_argument(
        "--conversation",
        action="extend",
        nargs="+",
        default=[],
        metavar="ID",
        dest="conversations",
    )
    events.add_argument(
        "--agent",
        action="extend",
        nargs="+",
        default=[],
        metavar="NUMBER",
        dest="agents",
    )
    events.add_argument(
        "--type",
        action="extend",
        nargs="+",
        default=[],
        choices=enum_labels(events_pb2.EventType),
        dest="types",
        metavar="TYPE",
        help="event type: " + ", ".join(enum_labels(events_pb2.EventType)),
    )
    events.add_argument(
        "--metadata",
        type=key_value,
        action="extend",
        nargs="+",
        default=[],
        metavar="KEY=VALUE",
    )
    events.add_argument(
        "--heartbeats", action="store_true", help="print heartbeats too"
    )
    events.add_argument(
        "--heartbeat-seconds",
        type=uint32,
        metavar="N",
        help="idle seconds before a heartbeat (default: 1, or server's with --follow)",
    )
    events.set_defaults(command="events")


def _add_carrier_commands(commands: Any, common: argparse.ArgumentParser) -> None:
    inbound = commands.add_parser(
        "inbound", parents=[common], help="simulate a user's text"
    )
    inbound.add_argument("--agent", required=True, metavar="NUMBER")
    inbound.add_argument("--from", required=True, metavar="NUMBER", dest="user")
    inbound.add_argument("--text", required=True)
    inbound.add_argument(
        "--channel", choices=enum_labels(types_pb2.Channel), help="default: sms"
    )
    inbound.add_argument(
        "--carrier-message-id", default="", metavar="ID", help="for de-duplication"
    )
    inbound.set_defaults(command="inbound")

    status = commands.add_parser(
        "status", parents=[common], help="report a delivery status"
    )
    target = status.add_mutually_exclusive_group(required=True)
    target.add_argument("--message-id", default="", metavar="ID")
    target.add_argument("--carrier-message-id", default="", metavar="ID")
    status.add_argument(
        "--status", required=True, choices=enum_labels(types_pb2.MessageStatus)
    )
    status.add_argument(
        "--error-code", default="", metavar="CODE", help="carrier error code"
    )
    status.set_defaults(command="status")


def _add_admin_commands(commands: Any, common: argparse.ArgumentParser) -> None:
    usage = commands.add_parser(
        "usage", parents=[common], help="show charges of an account"
    )
    usage.add_argument(
        "--account", default="", metavar="ID", help="default: the key's account"
    )
    _add_paging_options(usage)
    usage.set_defaults(command="usage")

    admin = commands.add_parser(
        "admin", help="manage accounts, keys, numbers and definitions"
    )
    actions = admin.add_subparsers(metavar="ACTION", required=True)
    apply = actions.add_parser(
        "apply", parents=[common], help="apply a YAML config file"
    )
    apply.add_argument(
        "-f", "--file", required=True, metavar="FILE", help="YAML config file"
    )
    apply.set_defaults(command="admin apply")

    create_key = actions.add_parser(
        "create-key", parents=[common], help="create an API key"
    )
    create_key.add_argument("--account", default="", metavar="ID")
    create_key.set_defaults(command="admin create-key")

    numbers = actions.add_parser("numbers", parents=[common], help="list agent numbers")
    numbers.add_argument("--account", default="", metavar="ID")
    numbers.set_defaults(command="admin numbers")
    add_definition_lists(actions, common)


def build_parser() -> argparse.ArgumentParser:
    """Build the parser; each command stores its name in `command`."""
    parser = argparse.ArgumentParser(
        prog="parley", description="Command-line client for the Parley gRPC API."
    )
    _add_global_options(parser, suppress=False)
    common = argparse.ArgumentParser(add_help=False)
    _add_global_options(common, suppress=True)
    commands = parser.add_subparsers(metavar="COMMAND", required=True)
    _add_conversation_commands(commands, common)
    add_lifecycle_commands(commands, common)
    _add_events_command(commands, common)
    _add_carrier_commands(commands, common)
    _add_admin_commands(commands, common)
    return parser


def parse_arguments(
    argv: list[str] | None, environ: Mapping[str, str]
) -> argparse.Namespace:
    """Parse the command line and fill the address and API key from `environ`.

    Raises SystemExit (code 2 after printing the usage to stderr) for invalid
    arguments or when no API key is given, and code 0 after `--help`.
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.address:
        args.address = environ.get(ADDRESS_ENV) or DEFAULT_ADDRESS
    if not args.api_key:
        args.api_key = environ.get(API_KEY_ENV) or None
    if not args.api_key:
        parser.error(f"missing API key: pass --api-key or set {API_KEY_ENV}")
    if not (math.isfinite(args.call_timeout) and args.call_timeout > 0):
        parser.error(
            f"invalid --call-timeout {args.call_timeout}: expected a positive number"
        )
    return args
