"""EndConversation, AddMessage and the on-demand citation and outcome runs."""

from __future__ import annotations

import asyncio
import re
from typing import TYPE_CHECKING

from parley.v1 import conversation_pb2, types_pb2

from server import idempotency
from server.citations import extract_citations_async
from server.conversation_store import load_conversation, load_transcript
from server.definitions import get_citation_schema, get_outcome
from server.end_results import extract_configured_citations, run_outcome
from server.errors import invalid_argument, not_found
from server.lifecycle import Lifecycle, load_active, load_owned
from server.outbound import send_agent_text
from server.turns import MAX_MESSAGE_CHARS
from server.validation import quote_value, validate_text

if TYPE_CHECKING:
    from server.app import Components

DEFAULT_END_REASON = "ENDED_BY_API"
API_ACTOR = "api"
MAX_ACTOR_CHARS = 128
_REASON = re.compile(r"[A-Z][A-Z0-9_]{0,63}")
# How long EndConversation waits for the scheduler when it finalises the
# conversation first.
_FINALIZE_WAIT_SECONDS = 30.0


class ConversationActions:
    def __init__(self, lifecycle: Lifecycle) -> None:
        self._lifecycle = lifecycle
        self._components: Components = lifecycle.components

    async def end(
        self, account_id: str, request: conversation_pb2.EndConversationRequest
    ) -> types_pb2.Conversation:
        """End the conversation now and return it with its end results."""
        reason = request.reason or DEFAULT_END_REASON
        if not _REASON.fullmatch(reason):
            raise invalid_argument(
                "reason",
                f"reason {quote_value(reason)} is invalid; use UPPER_SNAKE_CASE of at most"
                " 64 characters, such as RESOLVED.",
                reason="INVALID_END_REASON",
            )
        actor = _validate_actor(request.actor) or API_ACTOR
        components = self._components
        async with components.database.transaction() as tx:
            now = components.clock.now_ms()
            conversation = await load_active(tx, account_id, request.conversation_id)
            await self._lifecycle.end(tx, conversation, reason, now, actor)
        finished = await self._lifecycle.finalize(conversation.id)
        if finished is None:
            finished = await self._wait_until_finalized(account_id, conversation.id)
        return finished

    async def _wait_until_finalized(
        self, account_id: str, conversation_id: str
    ) -> types_pb2.Conversation:
        """Wait while the timer scheduler finalises the conversation instead."""
        database = self._components.database
        loop = asyncio.get_running_loop()
        deadline = loop.time() + _FINALIZE_WAIT_SECONDS
        while loop.time() < deadline:
            pending = await database.fetchone(
                "SELECT 1 FROM timers WHERE conversation_id = ? AND kind = 'finalize'",
                (conversation_id,),
            )
            if pending is None:
                break
            await asyncio.sleep(0.05)
        conversation = await load_conversation(database, conversation_id, account_id)
        assert conversation is not None
        return conversation

    async def add_message(
        self, account_id: str, request: conversation_pb2.AddMessageRequest, key: str
    ) -> conversation_pb2.AddMessageResponse:
        """Send a human agent's text through the carrier, idempotently."""
        validate_text(request.text, "text", MAX_MESSAGE_CHARS, required=True)
        author = _validate_actor(request.actor)
        fingerprint = (
            idempotency.request_fingerprint("AddMessage", request) if key else ""
        )
        components = self._components
        async with components.database.transaction() as tx:
            now = components.clock.now_ms()
            if key:
                stored = await idempotency.find_response(
                    tx,
                    account_id,
                    key,
                    fingerprint,
                    conversation_pb2.AddMessageResponse,
                )
                if stored is not None:
                    stored.replay = True
                    return stored
            conversation = await load_active(tx, account_id, request.conversation_id)
            message = await send_agent_text(
                components, tx, conversation, request.text, now, author=author
            )
            await self._lifecycle.after_agent_message(tx, conversation, now)
            response = conversation_pb2.AddMessageResponse(
                message_id=message.id, message_status=message.status
            )
            if key:
                await idempotency.store_response(
                    tx, account_id, key, fingerprint, response, now
                )
        return response

    async def run_citation_schema(
        self, account_id: str, request: conversation_pb2.RunCitationSchemaRequest
    ) -> conversation_pb2.RunCitationSchemaResponse:
        conversation = await load_owned(
            self._components.database, account_id, request.conversation_id
        )
        schema = await get_citation_schema(
            self._components.database, account_id, request.citation_schema_id
        )
        if schema is None:
            raise not_found(
                "CITATION_SCHEMA_NOT_FOUND",
                f"citation_schema_id {quote_value(request.citation_schema_id)} is not a"
                " citation schema of the caller's account.",
            )
        transcript = await load_transcript(self._components.database, conversation.id)
        return conversation_pb2.RunCitationSchemaResponse(
            citations=await extract_citations_async(schema, transcript)
        )

    async def run_outcome(
        self, account_id: str, request: conversation_pb2.RunOutcomeRequest
    ) -> types_pb2.OutcomeResult:
        conversation = await load_owned(
            self._components.database, account_id, request.conversation_id
        )
        outcome = await get_outcome(
            self._components.database, account_id, request.outcome_id
        )
        if outcome is None:
            raise not_found(
                "OUTCOME_NOT_FOUND",
                f"outcome_id {quote_value(request.outcome_id)} is not an outcome of the"
                " caller's account.",
            )
        transcript = await load_transcript(self._components.database, conversation.id)
        citations = list(conversation.citations)
        if conversation.state == types_pb2.CONVERSATION_STATE_ACTIVE:
            # An active conversation has no stored citations yet, so its
            # schemas run now, as they will at the end.
            citations = await extract_configured_citations(
                self._components, conversation, transcript
            )
        return await run_outcome(outcome, conversation, transcript, citations)


def _validate_actor(actor: str) -> str:
    return validate_text(actor, "actor", MAX_ACTOR_CHARS)
