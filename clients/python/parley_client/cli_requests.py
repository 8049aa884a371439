"""Request messages built from parsed `parley` arguments.

Each builder takes the namespace from `cli_parser.parse_arguments` and sets
an optional proto field only when its option was given, so the server can
tell "not given" from an explicit zero or empty value.
"""

from __future__ import annotations

import argparse

from parley.v1 import admin_pb2, carrier_pb2, conversation_pb2, events_pb2, types_pb2

from parley_client.enum_names import enum_value

_ConversationRequest = (
    conversation_pb2.SendMessageRequest | conversation_pb2.CreateConversationRequest
)


def _apply_conversation_options(
    request: _ConversationRequest, args: argparse.Namespace
) -> None:
    """Fill the fields that SendMessage and CreateConversation share."""
    request.agent_number = args.agent
    request.user_number = args.to
    if args.channel:
        request.channel = enum_value(types_pb2.Channel, args.channel)
    if args.idempotency_key:
        request.idempotency_key = args.idempotency_key
    request.new_conversation = args.new_conversation
    if args.persona is not None:
        request.persona_id = args.persona
    if args.persona_version is not None:
        request.persona_version = args.persona_version
    _apply_pathway_options(request, args)
    if args.metadata is not None:
        request.metadata.CopyFrom(args.metadata)
    if args.request_data is not None:
        request.request_data.CopyFrom(args.request_data)
    if args.outcome_ids is not None:
        request.outcome_ids.SetInParent()
        request.outcome_ids.values.extend(args.outcome_ids)
    if args.citation_schema_ids is not None:
        request.citation_schema_ids.SetInParent()
        request.citation_schema_ids.values.extend(args.citation_schema_ids)
    _apply_timeout_options(request, args)


def _apply_pathway_options(
    request: _ConversationRequest, args: argparse.Namespace
) -> None:
    if args.pathway is not None:
        request.pathway_id = args.pathway
    if args.pathway_version is not None:
        request.pathway_version = args.pathway_version
    if args.start_node is not None:
        request.start_node_id = args.start_node
    settings = request.persona_settings
    if args.persona_pathway is not None:
        settings.pathway_id = args.persona_pathway
    if args.persona_pathway_version is not None:
        settings.pathway_version = args.persona_pathway_version
    if args.persona_start_node is not None:
        settings.start_node_id = args.persona_start_node


def _apply_timeout_options(
    request: _ConversationRequest, args: argparse.Namespace
) -> None:
    if args.timeout_seconds is not None:
        request.timeout_seconds = args.timeout_seconds
    if args.warning_seconds is not None:
        request.warning_seconds = args.warning_seconds
    if args.timeout_message is not None:
        request.timeout_message = args.timeout_message
    if args.warning_message is not None:
        request.warning_message = args.warning_message


def build_send_request(args: argparse.Namespace) -> conversation_pb2.SendMessageRequest:
    """Build the SendMessage request of `parley send`."""
    request = conversation_pb2.SendMessageRequest(agent_message=args.message)
    _apply_conversation_options(request, args)
    return request


def build_create_request(
    args: argparse.Namespace,
) -> conversation_pb2.CreateConversationRequest:
    """Build the CreateConversation request of `parley create`."""
    request = conversation_pb2.CreateConversationRequest(message=args.message)
    if args.sender:
        request.sender = enum_value(types_pb2.Sender, args.sender)
    _apply_conversation_options(request, args)
    return request


def build_list_request(
    args: argparse.Namespace,
) -> conversation_pb2.ListConversationsRequest:
    """Build the first ListConversations request of `parley list`."""
    request = conversation_pb2.ListConversationsRequest(
        agent_number=args.agent,
        user_number=args.user,
        metadata=dict(args.metadata),
        page_size=args.page_size,
        page_token=args.page_token,
    )
    if args.state:
        request.state = enum_value(types_pb2.ConversationState, args.state)
    return request


def build_subscribe_request(
    args: argparse.Namespace,
) -> events_pb2.SubscribeEventsRequest:
    """Build the SubscribeEvents request of `parley events`.

    Without --follow the command replays the log and stops at the first
    heartbeat, so `after_sequence` defaults to 0 (the whole retained log) and
    heartbeats come after 1 idle second. With --follow, an absent --after
    starts at new events and the server picks the heartbeat interval.
    """
    request = events_pb2.SubscribeEventsRequest(
        conversation_ids=args.conversations,
        agent_numbers=args.agents,
        event_types=[enum_value(events_pb2.EventType, label) for label in args.types],
        metadata=dict(args.metadata),
    )
    if args.after is not None:
        request.after_sequence = args.after
    elif not args.follow:
        request.after_sequence = 0
    if args.heartbeat_seconds is not None:
        request.heartbeat_seconds = args.heartbeat_seconds
    elif not args.follow:
        request.heartbeat_seconds = 1
    return request


def build_inbound_request(
    args: argparse.Namespace,
) -> carrier_pb2.ReceiveMessageRequest:
    """Build the ReceiveMessage request of `parley inbound`."""
    request = carrier_pb2.ReceiveMessageRequest(
        agent_number=args.agent,
        user_number=args.user,
        text=args.text,
        carrier_message_id=args.carrier_message_id,
    )
    if args.channel:
        request.channel = enum_value(types_pb2.Channel, args.channel)
    return request


def build_status_request(args: argparse.Namespace) -> carrier_pb2.ReportStatusRequest:
    """Build the ReportStatus request of `parley status`."""
    return carrier_pb2.ReportStatusRequest(
        message_id=args.message_id,
        carrier_message_id=args.carrier_message_id,
        status=enum_value(types_pb2.MessageStatus, args.status),
        error_code=args.error_code,
    )


def build_usage_request(args: argparse.Namespace) -> admin_pb2.GetUsageRequest:
    """Build the first GetUsage request of `parley usage`."""
    return admin_pb2.GetUsageRequest(
        account_id=args.account, page_size=args.page_size, page_token=args.page_token
    )
