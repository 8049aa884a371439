"""Handlers of the `parley` commands: each calls the API and prints the result."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import pathlib
import sys
from collections.abc import Awaitable, Callable
from typing import Protocol, TextIO, TypeVar

import grpc
from parley.v1 import admin_pb2, conversation_pb2, events_pb2, types_pb2

from parley_client import cli_output as out
from parley_client.cli_lifecycle import LIFECYCLE_HANDLERS
from parley_client.cli_requests import (
    build_create_request,
    build_inbound_request,
    build_list_request,
    build_send_request,
    build_status_request,
    build_subscribe_request,
    build_usage_request,
)
from parley_client.client import ParleyClient
from parley_client.enum_names import enum_label
from parley_client.errors import error_info, field_violations


class CommandError(Exception):
    """A failure outside the RPC, such as an unreadable input file."""


class _Page(Protocol):
    @property
    def next_page_token(self) -> str: ...


_PageT = TypeVar("_PageT", bound=_Page)
_Handler = Callable[[ParleyClient, argparse.Namespace, out.Printer], Awaitable[None]]


async def _read_pages(
    fetch: Callable[[str], Awaitable[_PageT]],
    first_token: str,
    every_page: bool,
    add: Callable[[_PageT], None],
) -> None:
    """Fetch one page, or with `every_page` follow next_page_token to the end."""
    token = first_token
    while True:
        page = await fetch(token)
        add(page)
        token = page.next_page_token
        if not every_page or not token:
            return


async def _send(
    client: ParleyClient, args: argparse.Namespace, printer: out.Printer
) -> None:
    response = await client.send_message(build_send_request(args), retries=args.retries)
    if printer.json_mode:
        printer.json(response)
        return
    status = enum_label(types_pb2.MessageStatus, response.message_status)
    line = (
        f"conversation {response.conversation_id}  "
        f"message {response.message_id}  status {status}"
    )
    printer.line(line + ("  (replay)" if response.replay else ""))


async def _create(
    client: ParleyClient, args: argparse.Namespace, printer: out.Printer
) -> None:
    response = await client.create_conversation(
        build_create_request(args), retries=args.retries
    )
    if printer.json_mode:
        printer.json(response)
        return
    line = f"conversation {response.conversation_id}"
    if response.message_id:
        status = enum_label(types_pb2.MessageStatus, response.message_status)
        line += f"  message {response.message_id}  status {status}"
    printer.line(line + ("  (replay)" if response.replay else ""))


async def _get(
    client: ParleyClient, args: argparse.Namespace, printer: out.Printer
) -> None:
    request = conversation_pb2.GetConversationRequest(
        conversation_id=args.conversation_id
    )
    conversation = await client.conversations.GetConversation(request)
    if printer.json_mode:
        printer.json(conversation)
        return
    for line in out.format_conversation_details(conversation):
        printer.line(line)


async def _list(
    client: ParleyClient, args: argparse.Namespace, printer: out.Printer
) -> None:
    request = build_list_request(args)
    combined = conversation_pb2.ListConversationsResponse()

    def fetch(token: str) -> Awaitable[conversation_pb2.ListConversationsResponse]:
        request.page_token = token
        return client.conversations.ListConversations(request)

    def add(page: conversation_pb2.ListConversationsResponse) -> None:
        combined.conversations.extend(page.conversations)
        combined.next_page_token = page.next_page_token

    await _read_pages(fetch, request.page_token, args.all, add)
    if printer.json_mode:
        printer.json(combined)
        return
    for conversation in combined.conversations:
        printer.line(out.format_conversation_row(conversation))
    if combined.next_page_token:
        printer.line(f"next page token: {combined.next_page_token}")


async def _messages(
    client: ParleyClient, args: argparse.Namespace, printer: out.Printer
) -> None:
    """Print the whole transcript, following every page."""
    request = conversation_pb2.ListMessagesRequest(conversation_id=args.conversation_id)
    combined = conversation_pb2.ListMessagesResponse()

    def fetch(token: str) -> Awaitable[conversation_pb2.ListMessagesResponse]:
        request.page_token = token
        return client.conversations.ListMessages(request)

    def add(page: conversation_pb2.ListMessagesResponse) -> None:
        combined.messages.extend(page.messages)

    await _read_pages(fetch, "", True, add)
    if printer.json_mode:
        printer.json(combined)
        return
    for message in combined.messages:
        printer.line(out.format_message(message))


async def _events(
    client: ParleyClient, args: argparse.Namespace, printer: out.Printer
) -> None:
    """Print events; without --follow, stop at the first heartbeat."""
    stream = client.subscribe(build_subscribe_request(args), resume=args.follow)
    async with contextlib.aclosing(stream):
        async for response in stream:
            is_heartbeat = response.WhichOneof("kind") == "heartbeat"
            if not is_heartbeat or args.heartbeats:
                _print_stream_response(printer, response)
            if is_heartbeat and not args.follow:
                return


def _print_stream_response(
    printer: out.Printer, response: events_pb2.SubscribeEventsResponse
) -> None:
    if printer.json_mode:
        printer.json(response, compact=True)
    elif response.WhichOneof("kind") == "heartbeat":
        printer.line(out.format_heartbeat(response.heartbeat))
    else:
        printer.line(out.format_event(response.event))


async def _inbound(
    client: ParleyClient, args: argparse.Namespace, printer: out.Printer
) -> None:
    response = await client.carrier.ReceiveMessage(build_inbound_request(args))
    if printer.json_mode:
        printer.json(response)
        return
    line = f"conversation {response.conversation_id}  message {response.message_id}"
    if response.new_conversation:
        line += "  (new conversation)"
    if response.replay:
        line += "  (replay)"
    printer.line(line)


async def _status(
    client: ParleyClient, args: argparse.Namespace, printer: out.Printer
) -> None:
    response = await client.carrier.ReportStatus(build_status_request(args))
    if printer.json_mode:
        printer.json(response)
        return
    printer.line(out.format_message(response.message))
    printer.line(
        "applied" if response.applied else "not applied: the status did not change"
    )


async def _usage(
    client: ParleyClient, args: argparse.Namespace, printer: out.Printer
) -> None:
    request = build_usage_request(args)
    combined = admin_pb2.GetUsageResponse()

    def fetch(token: str) -> Awaitable[admin_pb2.GetUsageResponse]:
        request.page_token = token
        return client.admin.GetUsage(request)

    def add(page: admin_pb2.GetUsageResponse) -> None:
        combined.total_messages = page.total_messages
        combined.total_segments = page.total_segments
        combined.total_amount_micros = page.total_amount_micros
        combined.entries.extend(page.entries)
        combined.next_page_token = page.next_page_token

    await _read_pages(fetch, request.page_token, args.all, add)
    if printer.json_mode:
        printer.json(combined)
        return
    printer.line(out.format_usage_totals(combined))
    for entry in combined.entries:
        printer.line(out.format_ledger_entry(entry))
    if combined.next_page_token:
        printer.line(f"next page token: {combined.next_page_token}")


async def _admin_apply(
    client: ParleyClient, args: argparse.Namespace, printer: out.Printer
) -> None:
    path = pathlib.Path(args.file)
    try:
        text = await asyncio.to_thread(path.read_text, encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise CommandError(f"failed to read config file {args.file}: {exc}") from exc
    counts = await client.admin.ApplyConfig(admin_pb2.ApplyConfigRequest(yaml=text))
    if printer.json_mode:
        printer.json(counts)
    else:
        printer.line(out.format_apply_counts(counts))


async def _admin_create_key(
    client: ParleyClient, args: argparse.Namespace, printer: out.Printer
) -> None:
    """Print the new key; the server returns its plaintext only this once."""
    request = admin_pb2.CreateApiKeyRequest(account_id=args.account)
    response = await client.admin.CreateApiKey(request)
    if printer.json_mode:
        printer.json(response)
        return
    printer.line(f"api key: {response.api_key}")
    printer.line(f"key id: {response.key.id}  account: {response.key.account_id}")
    printer.line("store the key now: the server keeps only its hash")


async def _admin_numbers(
    client: ParleyClient, args: argparse.Namespace, printer: out.Printer
) -> None:
    request = admin_pb2.ListNumbersRequest(account_id=args.account)
    response = await client.admin.ListNumbers(request)
    if printer.json_mode:
        printer.json(response)
        return
    for number in response.numbers:
        printer.line(out.format_number(number))


HANDLERS: dict[str, _Handler] = {
    "send": _send,
    "create": _create,
    "get": _get,
    "list": _list,
    "messages": _messages,
    "events": _events,
    "inbound": _inbound,
    "status": _status,
    "usage": _usage,
    "admin apply": _admin_apply,
    "admin create-key": _admin_create_key,
    "admin numbers": _admin_numbers,
    **LIFECYCLE_HANDLERS,
}


def report_rpc_error(exc: grpc.aio.AioRpcError, api_key: str, stream: TextIO) -> None:
    """Print `error: CODE REASON: message` and one line per field violation.

    Any occurrence of the API key in the server's text is masked.
    """
    info = error_info(exc)
    head = exc.code().name if info is None else f"{exc.code().name} {info[0]}"
    message = _mask(exc.details() or "no message", api_key)
    print(f"error: {head}: {message}", file=stream)
    for field, description in field_violations(exc):
        print(f"  {field}: {_mask(description, api_key)}", file=stream)


def _mask(text: str, secret: str) -> str:
    return text.replace(secret, "***") if secret else text


async def run_command(args: argparse.Namespace) -> int:
    """Run the parsed command against the server; return the exit code.

    Returns 0 on success and 1 after printing an RPC or input error to stderr.
    """
    printer = out.Printer(sys.stdout, args.json)
    handler = HANDLERS[args.command]
    try:
        async with ParleyClient(
            args.address, args.api_key, timeout=args.call_timeout
        ) as client:
            await handler(client, args, printer)
    except grpc.aio.AioRpcError as exc:
        report_rpc_error(exc, args.api_key, sys.stderr)
        return 1
    except CommandError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0
