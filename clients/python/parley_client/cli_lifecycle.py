"""Handlers of the lifecycle commands and of the definition lists.

Each handler calls one RPC and prints the result, as in `cli_commands`.
"""

from __future__ import annotations

import argparse
from collections.abc import Awaitable, Callable

from parley.v1 import admin_pb2, conversation_pb2, types_pb2

from parley_client import cli_output as out
from parley_client.cli_output_results import format_citation, format_outcome_result
from parley_client.client import ParleyClient
from parley_client.enum_names import enum_label

Handler = Callable[[ParleyClient, argparse.Namespace, out.Printer], Awaitable[None]]


async def _end(
    client: ParleyClient, args: argparse.Namespace, printer: out.Printer
) -> None:
    """Print the ended conversation; the server returns it with its end results."""
    request = conversation_pb2.EndConversationRequest(
        conversation_id=args.conversation_id, reason=args.reason, actor=args.actor
    )
    conversation = await client.conversations.EndConversation(request)
    if printer.json_mode:
        printer.json(conversation)
        return
    for line in out.format_conversation_details(conversation):
        printer.line(line)


async def _handoff(
    client: ParleyClient, args: argparse.Namespace, printer: out.Printer
) -> None:
    request = conversation_pb2.HandoffConversationRequest(
        conversation_id=args.conversation_id, actor=args.actor
    )
    conversation = await client.conversations.HandoffConversation(request)
    if printer.json_mode:
        printer.json(conversation)
    else:
        printer.line(out.format_handoff_state(conversation))


async def _resume(
    client: ParleyClient, args: argparse.Namespace, printer: out.Printer
) -> None:
    request = conversation_pb2.ResumeConversationRequest(
        conversation_id=args.conversation_id
    )
    conversation = await client.conversations.ResumeConversation(request)
    if printer.json_mode:
        printer.json(conversation)
    else:
        printer.line(out.format_handoff_state(conversation))


async def _add_message(
    client: ParleyClient, args: argparse.Namespace, printer: out.Printer
) -> None:
    request = conversation_pb2.AddMessageRequest(
        conversation_id=args.conversation_id,
        text=args.text,
        actor=args.actor,
        idempotency_key=args.idempotency_key or "",
    )
    response = await client.add_message(request, retries=args.retries)
    if printer.json_mode:
        printer.json(response)
        return
    status = enum_label(types_pb2.MessageStatus, response.message_status)
    line = f"message {response.message_id}  status {status}"
    printer.line(line + ("  (replay)" if response.replay else ""))


async def _run_citation(
    client: ParleyClient, args: argparse.Namespace, printer: out.Printer
) -> None:
    request = conversation_pb2.RunCitationSchemaRequest(
        conversation_id=args.conversation_id, citation_schema_id=args.schema_id
    )
    response = await client.conversations.RunCitationSchema(request)
    if printer.json_mode:
        printer.json(response)
        return
    if not response.citations:
        printer.line("no citations: no message matched the schema's rules")
    for citation in response.citations:
        printer.line(format_citation(citation))


async def _run_outcome(
    client: ParleyClient, args: argparse.Namespace, printer: out.Printer
) -> None:
    request = conversation_pb2.RunOutcomeRequest(
        conversation_id=args.conversation_id, outcome_id=args.outcome_id
    )
    result = await client.conversations.RunOutcome(request)
    if printer.json_mode:
        printer.json(result)
    else:
        printer.line(format_outcome_result(result))


async def _admin_pathways(
    client: ParleyClient, args: argparse.Namespace, printer: out.Printer
) -> None:
    request = admin_pb2.ListPathwaysRequest(account_id=args.account)
    response = await client.admin.ListPathways(request)
    if printer.json_mode:
        printer.json(response)
        return
    for pathway in response.pathways:
        printer.line(out.format_pathway(pathway))


async def _admin_citation_schemas(
    client: ParleyClient, args: argparse.Namespace, printer: out.Printer
) -> None:
    request = admin_pb2.ListCitationSchemasRequest(account_id=args.account)
    response = await client.admin.ListCitationSchemas(request)
    if printer.json_mode:
        printer.json(response)
        return
    for schema in response.schemas:
        printer.line(out.format_citation_schema(schema))


async def _admin_outcomes(
    client: ParleyClient, args: argparse.Namespace, printer: out.Printer
) -> None:
    request = admin_pb2.ListOutcomesRequest(account_id=args.account)
    response = await client.admin.ListOutcomes(request)
    if printer.json_mode:
        printer.json(response)
        return
    for outcome in response.outcomes:
        printer.line(out.format_outcome(outcome))


LIFECYCLE_HANDLERS: dict[str, Handler] = {
    "end": _end,
    "handoff": _handoff,
    "resume": _resume,
    "add-message": _add_message,
    "run-citation": _run_citation,
    "run-outcome": _run_outcome,
    "admin pathways": _admin_pathways,
    "admin citation-schemas": _admin_citation_schemas,
    "admin outcomes": _admin_outcomes,
}
