"""ConversationService: thin handlers over `server.conversations`."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from parley.v1 import conversation_pb2, conversation_pb2_grpc, types_pb2

from server.auth import Principal
from server.conversation_actions import MAX_ACTOR_CHARS, ConversationActions
from server.conversation_store import (
    conversation_from_row,
    message_from_row,
)
from server.conversations import Conversations
from server.errors import invalid_argument
from server.idempotency import resolve_key
from server.lifecycle import load_owned
from server.paging import decode_token, encode_token, page_size
from server.rpc import Context, unary
from server.validation import (
    metadata_matches,
    normalize_e164,
    validate_text,
)

if TYPE_CHECKING:
    from server.app import Components

# ListConversations with metadata filters reads at most this many rows per
# row requested, so a filter that matches nothing cannot scan forever. The
# page may then be short, with a next_page_token to continue.
_SCAN_FACTOR = 10
# A page stops growing at about this size, well below the 4 MiB that gRPC
# clients accept by default, and hands out a token for the rest.
MAX_RESPONSE_BYTES = 3 * 1024 * 1024


class ConversationServicer(conversation_pb2_grpc.ConversationServiceServicer):
    def __init__(self, components: Components) -> None:
        self.components = components
        self.authenticator = components.authenticator
        self.conversations = Conversations(components.lifecycle)
        self.actions = ConversationActions(components.lifecycle)

    @unary
    async def SendMessage(
        self,
        request: conversation_pb2.SendMessageRequest,
        context: Context,
        principal: Principal,
    ) -> conversation_pb2.SendMessageResponse:
        account_id = principal.require_account()
        key = resolve_key(request.idempotency_key, context.invocation_metadata() or ())
        return await self.conversations.send_message(account_id, request, key)

    @unary
    async def CreateConversation(
        self,
        request: conversation_pb2.CreateConversationRequest,
        context: Context,
        principal: Principal,
    ) -> conversation_pb2.CreateConversationResponse:
        account_id = principal.require_account()
        key = resolve_key(request.idempotency_key, context.invocation_metadata() or ())
        return await self.conversations.create_conversation(account_id, request, key)

    @unary
    async def GetConversation(
        self,
        request: conversation_pb2.GetConversationRequest,
        context: Context,
        principal: Principal,
    ) -> types_pb2.Conversation:
        account_id = principal.require_account()
        return await load_owned(
            self.components.database, account_id, request.conversation_id
        )

    @unary
    async def ListConversations(
        self,
        request: conversation_pb2.ListConversationsRequest,
        context: Context,
        principal: Principal,
    ) -> conversation_pb2.ListConversationsResponse:
        account_id = principal.require_account()
        limit = page_size(request.page_size)
        where, params = _conversation_filters(account_id, request)
        position = decode_token(request.page_token, (int, str))
        if position is not None:
            where.append("(created_at < ? OR (created_at = ? AND id < ?))")
            params += [position[0], position[0], position[1]]
        scan = limit * _SCAN_FACTOR if request.metadata else limit
        rows = await self.components.database.fetchall(
            "SELECT * FROM conversations WHERE "
            + " AND ".join(where)
            + " ORDER BY created_at DESC, id DESC LIMIT ?",
            (*params, scan + 1),
        )
        response = conversation_pb2.ListConversationsResponse()
        last_row = None
        response_bytes = 0
        for row in rows[:scan]:
            if request.metadata and not metadata_matches(
                json.loads(row["metadata"]), request.metadata
            ):
                last_row = row
                continue
            conversation = conversation_from_row(row)
            response_bytes += conversation.ByteSize()
            if response.conversations and response_bytes > MAX_RESPONSE_BYTES:
                break
            last_row = row
            response.conversations.append(conversation)
            if len(response.conversations) == limit:
                break
        # Rows remain beyond the last one examined: hand out a token to continue.
        if last_row is not None and last_row is not rows[-1]:
            response.next_page_token = encode_token(
                [last_row["created_at"], last_row["id"]]
            )
        return response

    @unary
    async def ListMessages(
        self,
        request: conversation_pb2.ListMessagesRequest,
        context: Context,
        principal: Principal,
    ) -> conversation_pb2.ListMessagesResponse:
        account_id = principal.require_account()
        await load_owned(self.components.database, account_id, request.conversation_id)
        limit = page_size(request.page_size)
        position = decode_token(request.page_token, (int,))
        after = int(position[0]) if position is not None else 0
        rows = await self.components.database.fetchall(
            "SELECT * FROM messages WHERE conversation_id = ? AND seq > ? ORDER BY seq LIMIT ?",
            (request.conversation_id, after, limit + 1),
        )
        response = conversation_pb2.ListMessagesResponse(
            messages=[message_from_row(row) for row in rows[:limit]]
        )
        if len(rows) > limit:
            response.next_page_token = encode_token([rows[limit - 1]["seq"]])
        return response

    @unary
    async def EndConversation(
        self,
        request: conversation_pb2.EndConversationRequest,
        context: Context,
        principal: Principal,
    ) -> types_pb2.Conversation:
        return await self.actions.end(principal.require_account(), request)

    @unary
    async def HandoffConversation(
        self,
        request: conversation_pb2.HandoffConversationRequest,
        context: Context,
        principal: Principal,
    ) -> types_pb2.Conversation:
        actor = validate_text(request.actor, "actor", MAX_ACTOR_CHARS)
        return await self.components.lifecycle.set_handoff(
            principal.require_account(), request.conversation_id, True, actor
        )

    @unary
    async def ResumeConversation(
        self,
        request: conversation_pb2.ResumeConversationRequest,
        context: Context,
        principal: Principal,
    ) -> types_pb2.Conversation:
        return await self.components.lifecycle.set_handoff(
            principal.require_account(), request.conversation_id, False, ""
        )

    @unary
    async def AddMessage(
        self,
        request: conversation_pb2.AddMessageRequest,
        context: Context,
        principal: Principal,
    ) -> conversation_pb2.AddMessageResponse:
        account_id = principal.require_account()
        key = resolve_key(request.idempotency_key, context.invocation_metadata() or ())
        return await self.actions.add_message(account_id, request, key)

    @unary
    async def RunCitationSchema(
        self,
        request: conversation_pb2.RunCitationSchemaRequest,
        context: Context,
        principal: Principal,
    ) -> conversation_pb2.RunCitationSchemaResponse:
        return await self.actions.run_citation_schema(
            principal.require_account(), request
        )

    @unary
    async def RunOutcome(
        self,
        request: conversation_pb2.RunOutcomeRequest,
        context: Context,
        principal: Principal,
    ) -> types_pb2.OutcomeResult:
        return await self.actions.run_outcome(principal.require_account(), request)


def _conversation_filters(
    account_id: str, request: conversation_pb2.ListConversationsRequest
) -> tuple[list[str], list[object]]:
    where = ["account_id = ?"]
    params: list[object] = [account_id]
    if request.agent_number:
        where.append("agent_number = ?")
        params.append(normalize_e164(request.agent_number, "agent_number"))
    if request.user_number:
        where.append("user_number = ?")
        params.append(normalize_e164(request.user_number, "user_number"))
    if request.state not in types_pb2.ConversationState.values():
        raise invalid_argument("state", f"state {request.state} is not a known value.")
    if request.state != types_pb2.CONVERSATION_STATE_UNSPECIFIED:
        where.append("state = ?")
        params.append(request.state)
    return where, params
