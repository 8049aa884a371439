"""AdminService RPCs for pathways, citation schemas and outcomes.

Each definition belongs to one account and is scoped like the other admin
entities: an account key reaches only its own account's definitions, and a
definition of another account is NOT_FOUND. Definitions are validated before
any write, so a rejected call stores nothing.
"""

from __future__ import annotations

import asyncio

import structlog
from parley.v1 import admin_pb2, definitions_pb2

from server import definitions
from server.auth import Principal
from server.citations import validate_citation_schema
from server.config_model import validate_definition_id
from server.errors import ParleyError, invalid_argument, not_found
from server.outcomes import validate_outcome
from server.pathways.graph import PathwayGraph
from server.rpc import Context, unary
from server.services.admin_base import AdminServicerBase

log = structlog.get_logger("parley.admin")


class DefinitionsServicer(AdminServicerBase):
    """The definition RPCs of AdminService."""

    @unary
    async def PublishPathwayVersion(
        self,
        request: admin_pb2.PublishPathwayVersionRequest,
        context: Context,
        principal: Principal,
    ) -> definitions_pb2.Pathway:
        """Publish a version; republishing the same definition changes nothing."""
        account_id = await self._account_id(principal, request.account_id)
        pathway_id = validate_definition_id(
            request.pathway_id, "pathway_id", "pathway id"
        )
        version = validate_definition_id(request.version, "version", "pathway version")
        if not request.HasField("definition"):
            raise _missing("definition", "a pathway definition with its nodes")
        definition = definitions_pb2.PathwayDefinition()
        definition.CopyFrom(request.definition)
        # A worker thread compiles, because a definition near its size limit can
        # have over 20,000 regular expressions to compile.
        await asyncio.to_thread(PathwayGraph.from_definition, definition)

        async with self._database.transaction() as tx:
            created = await definitions.publish_pathway_version(
                tx, account_id, pathway_id, version, definition, self._now_ms()
            )
            pathway = await definitions.get_pathway(tx, account_id, pathway_id)
        if created:
            log.info(
                "pathway_version_published",
                target_account_id=account_id,
                pathway_id=pathway_id,
                version=version,
            )
        assert pathway is not None, "the transaction has just published a version"
        return pathway

    @unary
    async def GetPathway(
        self,
        request: admin_pb2.GetPathwayRequest,
        context: Context,
        principal: Principal,
    ) -> definitions_pb2.Pathway:
        account_id = await self._account_id(principal, request.account_id)
        pathway_id = validate_definition_id(
            request.pathway_id, "pathway_id", "pathway id"
        )
        pathway = await definitions.get_pathway(self._database, account_id, pathway_id)
        if pathway is None:
            raise _not_found(
                "PATHWAY_NOT_FOUND", "pathway", pathway_id, account_id, "ListPathways"
            )
        return pathway

    @unary
    async def ListPathways(
        self,
        request: admin_pb2.ListPathwaysRequest,
        context: Context,
        principal: Principal,
    ) -> admin_pb2.ListPathwaysResponse:
        account_id = await self._account_id(principal, request.account_id)
        pathways = await definitions.list_pathways(self._database, account_id)
        return admin_pb2.ListPathwaysResponse(pathways=pathways)

    @unary
    async def PutCitationSchema(
        self,
        request: admin_pb2.PutCitationSchemaRequest,
        context: Context,
        principal: Principal,
    ) -> definitions_pb2.CitationSchema:
        """Create or replace a schema; `schema.account_id` and `updated_at` are ignored."""
        account_id = await self._account_id(principal, request.account_id)
        if not request.HasField("schema"):
            raise _missing("schema", "a citation schema with an id and variables")
        schema = definitions_pb2.CitationSchema()
        schema.CopyFrom(request.schema)
        validate_definition_id(schema.id, "schema.id", "citation schema id")
        validate_citation_schema(schema, field_prefix="schema")

        async with self._database.transaction() as tx:
            changed = await definitions.put_citation_schema(
                tx, account_id, schema, self._now_ms()
            )
            stored = await definitions.get_citation_schema(tx, account_id, schema.id)
        if changed:
            log.info(
                "citation_schema_stored",
                target_account_id=account_id,
                citation_schema_id=schema.id,
            )
        assert stored is not None, "the transaction has just stored the schema"
        return stored

    @unary
    async def GetCitationSchema(
        self,
        request: admin_pb2.GetCitationSchemaRequest,
        context: Context,
        principal: Principal,
    ) -> definitions_pb2.CitationSchema:
        account_id = await self._account_id(principal, request.account_id)
        schema_id = validate_definition_id(
            request.citation_schema_id, "citation_schema_id", "citation schema id"
        )
        schema = await definitions.get_citation_schema(
            self._database, account_id, schema_id
        )
        if schema is None:
            raise _not_found(
                "CITATION_SCHEMA_NOT_FOUND",
                "citation schema",
                schema_id,
                account_id,
                "ListCitationSchemas",
            )
        return schema

    @unary
    async def ListCitationSchemas(
        self,
        request: admin_pb2.ListCitationSchemasRequest,
        context: Context,
        principal: Principal,
    ) -> admin_pb2.ListCitationSchemasResponse:
        account_id = await self._account_id(principal, request.account_id)
        schemas = await definitions.list_citation_schemas(self._database, account_id)
        return admin_pb2.ListCitationSchemasResponse(schemas=schemas)

    @unary
    async def PutOutcome(
        self,
        request: admin_pb2.PutOutcomeRequest,
        context: Context,
        principal: Principal,
    ) -> definitions_pb2.Outcome:
        """Create or replace an outcome; `outcome.account_id` and `updated_at` are ignored."""
        account_id = await self._account_id(principal, request.account_id)
        if not request.HasField("outcome"):
            raise _missing("outcome", "an outcome with an id and a script")
        outcome = definitions_pb2.Outcome()
        outcome.CopyFrom(request.outcome)
        validate_definition_id(outcome.id, "outcome.id", "outcome id")
        # Compiling the script in V8 takes tens of milliseconds, so it runs
        # off the event loop.
        await asyncio.to_thread(validate_outcome, outcome, "outcome")

        async with self._database.transaction() as tx:
            changed = await definitions.put_outcome(
                tx, account_id, outcome, self._now_ms()
            )
            stored = await definitions.get_outcome(tx, account_id, outcome.id)
        if changed:
            log.info(
                "outcome_stored", target_account_id=account_id, outcome_id=outcome.id
            )
        assert stored is not None, "the transaction has just stored the outcome"
        return stored

    @unary
    async def GetOutcome(
        self,
        request: admin_pb2.GetOutcomeRequest,
        context: Context,
        principal: Principal,
    ) -> definitions_pb2.Outcome:
        account_id = await self._account_id(principal, request.account_id)
        outcome_id = validate_definition_id(
            request.outcome_id, "outcome_id", "outcome id"
        )
        outcome = await definitions.get_outcome(self._database, account_id, outcome_id)
        if outcome is None:
            raise _not_found(
                "OUTCOME_NOT_FOUND", "outcome", outcome_id, account_id, "ListOutcomes"
            )
        return outcome

    @unary
    async def ListOutcomes(
        self,
        request: admin_pb2.ListOutcomesRequest,
        context: Context,
        principal: Principal,
    ) -> admin_pb2.ListOutcomesResponse:
        account_id = await self._account_id(principal, request.account_id)
        outcomes = await definitions.list_outcomes(self._database, account_id)
        return admin_pb2.ListOutcomesResponse(outcomes=outcomes)


def _missing(field_name: str, expected: str) -> ParleyError:
    return invalid_argument(
        field_name, f"{field_name} is missing; send {expected}", "MISSING_FIELD"
    )


def _not_found(
    reason: str, kind: str, item_id: str, account_id: str, list_rpc: str
) -> ParleyError:
    return not_found(
        reason,
        f"The {kind} {item_id!r} is not a {kind} of account {account_id!r};"
        f" {list_rpc} shows the account's {kind}s.",
    )
