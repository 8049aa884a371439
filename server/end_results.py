"""Citations and outcome results of a conversation, computed when it ends."""

from __future__ import annotations

from typing import TYPE_CHECKING

import structlog
from parley.v1 import definitions_pb2, types_pb2

from server.citations import extract_citations_async
from server.conversation_store import load_transcript, metadata_dict
from server.definitions import get_citation_schema, get_outcome
from server.outcomes import (
    citations_for_scripts,
    run_outcome_async,
    transcript_for_scripts,
)

if TYPE_CHECKING:
    from server.app import Components

log = structlog.get_logger("parley.end_results")


async def compute_results(
    components: Components, conversation: types_pb2.Conversation
) -> tuple[list[types_pb2.Citation], list[types_pb2.OutcomeResult]]:
    """Run the conversation's citation schemas, then its outcomes over them.

    A schema that no longer exists is skipped with a log line; an outcome that
    no longer exists gives a FAILED result saying so.
    """
    transcript = await load_transcript(components.database, conversation.id)
    citations = await extract_configured_citations(components, conversation, transcript)
    outcomes = [
        await run_named_outcome(
            components, conversation, outcome_id, transcript, citations
        )
        for outcome_id in conversation.config.outcome_ids
    ]
    return citations, outcomes


async def extract_configured_citations(
    components: Components,
    conversation: types_pb2.Conversation,
    transcript: list[types_pb2.Message],
) -> list[types_pb2.Citation]:
    """Run the conversation's citation schemas over `transcript`."""
    citations: list[types_pb2.Citation] = []
    for schema_id in conversation.config.citation_schema_ids:
        schema = await get_citation_schema(
            components.database, conversation.account_id, schema_id
        )
        if schema is None:
            log.warning(
                "citation_schema_missing",
                conversation_id=conversation.id,
                citation_schema_id=schema_id,
            )
            continue
        citations.extend(await extract_citations_async(schema, transcript))
    return citations


async def run_named_outcome(
    components: Components,
    conversation: types_pb2.Conversation,
    outcome_id: str,
    transcript: list[types_pb2.Message],
    citations: list[types_pb2.Citation],
) -> types_pb2.OutcomeResult:
    outcome = await get_outcome(
        components.database, conversation.account_id, outcome_id
    )
    if outcome is None:
        return types_pb2.OutcomeResult(
            outcome_id=outcome_id,
            status=types_pb2.OUTCOME_STATUS_FAILED,
            error=f"outcome {outcome_id!r} does not exist in the account",
        )
    return await run_outcome(outcome, conversation, transcript, citations)


async def run_outcome(
    outcome: definitions_pb2.Outcome,
    conversation: types_pb2.Conversation,
    transcript: list[types_pb2.Message],
    citations: list[types_pb2.Citation],
) -> types_pb2.OutcomeResult:
    result = await run_outcome_async(
        outcome,
        transcript_for_scripts(transcript),
        citations_for_scripts(citations),
        metadata_dict(conversation),
    )
    if result.status == types_pb2.OUTCOME_STATUS_FAILED:
        log.info(
            "outcome_failed",
            conversation_id=conversation.id,
            outcome_id=outcome.id,
            error=result.error,
        )
    return result
