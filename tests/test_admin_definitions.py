"""AdminService pathways, citation schemas and outcomes against a real server."""

from __future__ import annotations

import copy
import sqlite3
from collections.abc import Awaitable
from typing import Any

import grpc
import pytest
import yaml
from conftest import ACME, GLOBEX, OPERATOR, Stubs, base_config
from google.protobuf import json_format
from helpers import error_reason, violation_fields
from parley.v1 import admin_pb2, definitions_pb2

from server import definitions
from server.app import Parley

DEFINITION_TABLES = ("pathway_versions", "citation_schemas", "outcomes")

BOOKING_PATHWAY: dict[str, Any] = {
    "start_node_id": "ask",
    "nodes": [
        {
            "id": "ask",
            "text": "Hi {{ request_data.name | default: 'there' }}, how many guests?",
            "fallback_text": "Please reply with a number of guests.",
            "edges": [
                {
                    "target_node_id": "done",
                    "regex": "[0-9]+",
                    "captures": [
                        {
                            "variable": "party_size",
                            "regex": "([0-9]+)",
                            "type": "NUMBER",
                        }
                    ],
                }
            ],
        },
        {"id": "done", "text": "Booked for {{ party_size }}.", "end": True},
    ],
}

CONTACT_SCHEMA: dict[str, Any] = {
    "id": "contact",
    "variables": [
        {"name": "email", "type": "STRING", "rules": [{"preset": "EMAIL"}]},
        {
            "name": "plan",
            "type": "ENUM",
            "enum_values": ["basic", "pro"],
            "rules": [{"regex": "(basic|pro)", "sender": "USER", "confidence": 0.8}],
        },
    ],
}

MESSAGE_COUNT_OUTCOME: dict[str, Any] = {
    "id": "message-count",
    "script": "return {messages: transcript.length};",
    "time_limit_ms": 500,
}


def pathway_definition(data: dict[str, Any]) -> definitions_pb2.PathwayDefinition:
    return json_format.ParseDict(data, definitions_pb2.PathwayDefinition())


def booking_definition(end_text: str = "Booked.") -> definitions_pb2.PathwayDefinition:
    """The booking pathway with `end_text` as the text of its end node."""
    definition = pathway_definition(BOOKING_PATHWAY)
    definition.nodes[1].text = end_text
    return definition


def contact_schema() -> definitions_pb2.CitationSchema:
    return json_format.ParseDict(CONTACT_SCHEMA, definitions_pb2.CitationSchema())


def message_count_outcome() -> definitions_pb2.Outcome:
    return json_format.ParseDict(MESSAGE_COUNT_OUTCOME, definitions_pb2.Outcome())


async def rpc_error(call: Awaitable[Any]) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call
    return caught.value


def definition_counts(server: Parley) -> dict[str, int]:
    """Row counts of the definition tables, read straight from the SQLite file."""
    assert server.components is not None
    with sqlite3.connect(server.components.database.path) as connection:
        return {
            table: connection.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]
            for table in DEFINITION_TABLES
        }


def publish_request(
    pathway_id: str,
    version: str,
    definition: definitions_pb2.PathwayDefinition,
    account_id: str = "",
) -> admin_pb2.PublishPathwayVersionRequest:
    return admin_pb2.PublishPathwayVersionRequest(
        account_id=account_id,
        pathway_id=pathway_id,
        version=version,
        definition=definition,
    )


class TestPathways:
    async def test_publish_and_get(self, stubs: Stubs) -> None:
        """A published version comes back with its definition and publish time."""
        published = await stubs.admin.PublishPathwayVersion(
            publish_request("booking", "1", booking_definition()), metadata=ACME
        )
        fetched = await stubs.admin.GetPathway(
            admin_pb2.GetPathwayRequest(pathway_id="booking"), metadata=ACME
        )

        assert published == fetched
        assert fetched.id == "booking"
        assert fetched.account_id == "acme"
        assert [version.version for version in fetched.versions] == ["1"]
        assert fetched.versions[0].definition == booking_definition()
        assert fetched.versions[0].published_at.seconds > 0

    async def test_republish_same_definition(self, stubs: Stubs) -> None:
        """Publishing an identical version again changes nothing."""
        request = publish_request("booking", "1", booking_definition())
        first = await stubs.admin.PublishPathwayVersion(request, metadata=ACME)
        second = await stubs.admin.PublishPathwayVersion(request, metadata=ACME)

        assert second == first
        assert len(second.versions) == 1

    async def test_published_version_immutable(
        self, server: Parley, stubs: Stubs
    ) -> None:
        """A version cannot be republished with another definition."""
        await stubs.admin.PublishPathwayVersion(
            publish_request("booking", "1", booking_definition()), metadata=ACME
        )
        changed = publish_request("booking", "1", booking_definition("Changed."))
        error = await rpc_error(
            stubs.admin.PublishPathwayVersion(changed, metadata=ACME)
        )
        fetched = await stubs.admin.GetPathway(
            admin_pb2.GetPathwayRequest(pathway_id="booking"), metadata=ACME
        )

        assert error.code() == grpc.StatusCode.ALREADY_EXISTS
        assert error_reason(error) == "PATHWAY_VERSION_IMMUTABLE"
        assert fetched.versions[0].definition == booking_definition()
        assert definition_counts(server)["pathway_versions"] == 1

    async def test_latest_is_last_published(self, server: Parley, stubs: Stubs) -> None:
        """Versions keep publishing order, and an empty version reads the latest."""
        for version in ("2", "10", "1"):
            await stubs.admin.PublishPathwayVersion(
                publish_request("booking", version, booking_definition(version)),
                metadata=ACME,
            )
        fetched = await stubs.admin.GetPathway(
            admin_pb2.GetPathwayRequest(pathway_id="booking"), metadata=ACME
        )
        assert server.components is not None
        database = server.components.database
        latest = await definitions.get_pathway_version(database, "acme", "booking", "")
        named = await definitions.get_pathway_version(database, "acme", "booking", "2")
        missing = await definitions.get_pathway_version(
            database, "acme", "booking", "3"
        )

        assert [version.version for version in fetched.versions] == ["2", "10", "1"]
        assert latest == ("1", booking_definition("1"))
        assert named == ("2", booking_definition("2"))
        assert missing is None

    async def test_list_ordered_by_id(self, stubs: Stubs) -> None:
        for pathway_id in ("support", "booking"):
            await stubs.admin.PublishPathwayVersion(
                publish_request(pathway_id, "1", booking_definition()), metadata=ACME
            )
        listed = await stubs.admin.ListPathways(
            admin_pb2.ListPathwaysRequest(), metadata=ACME
        )
        assert [pathway.id for pathway in listed.pathways] == ["booking", "support"]
        assert {pathway.account_id for pathway in listed.pathways} == {"acme"}

    async def test_invalid_pathway_rejected(self, server: Parley, stubs: Stubs) -> None:
        """An edge to a missing node is rejected, naming the edge, and nothing is stored."""
        definition = booking_definition()
        definition.nodes[0].edges[0].target_node_id = "nowhere"
        error = await rpc_error(
            stubs.admin.PublishPathwayVersion(
                publish_request("booking", "1", definition), metadata=ACME
            )
        )

        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert error_reason(error) == "INVALID_PATHWAY"
        fields = violation_fields(error)
        assert fields
        assert fields[0].startswith("definition.nodes[0].edges[0]")
        assert "nowhere" in (error.details() or "")
        assert definition_counts(server)["pathway_versions"] == 0

    async def test_oversized_pathway_rejected(
        self, server: Parley, stubs: Stubs
    ) -> None:
        """A definition over 256 KiB is rejected as a whole, and nothing is stored."""
        definition = booking_definition()
        for index in range(200):
            node = definition.nodes.add(id=f"filler-{index}", end=True)
            node.text = "x" * 1_600
        assert definition.ByteSize() > 256 * 1024
        before = definition_counts(server)
        error = await rpc_error(
            stubs.admin.PublishPathwayVersion(
                publish_request("booking", "1", definition), metadata=ACME
            )
        )

        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert error_reason(error) == "INVALID_PATHWAY"
        assert violation_fields(error) == ["definition"]
        assert "maximum is 262,144 bytes" in (error.details() or "")
        assert definition_counts(server) == before

    @pytest.mark.parametrize(
        ("pathway_id", "version", "field", "reason"),
        [
            ("", "1", "pathway_id", "MISSING_FIELD"),
            ("book ing", "1", "pathway_id", "INVALID_PATHWAY_ID"),
            ("b" * 129, "1", "pathway_id", "INVALID_PATHWAY_ID"),
            ("booking", "", "version", "MISSING_FIELD"),
            ("booking", "v/1", "version", "INVALID_PATHWAY_VERSION"),
        ],
    )
    async def test_bad_ids_rejected(
        self, stubs: Stubs, pathway_id: str, version: str, field: str, reason: str
    ) -> None:
        request = publish_request(pathway_id, version, booking_definition())
        error = await rpc_error(
            stubs.admin.PublishPathwayVersion(request, metadata=ACME)
        )

        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert error_reason(error) == reason
        assert violation_fields(error) == [field]

    async def test_longest_ids_accepted(self, stubs: Stubs) -> None:
        """Ids and versions of 128 characters are within the limit."""
        pathway_id = "P._-9" + "x" * 123
        request = publish_request(pathway_id, "v" * 128, booking_definition())
        published = await stubs.admin.PublishPathwayVersion(request, metadata=ACME)
        assert published.id == pathway_id

    async def test_missing_definition_rejected(self, stubs: Stubs) -> None:
        request = admin_pb2.PublishPathwayVersionRequest(
            pathway_id="booking", version="1"
        )
        error = await rpc_error(
            stubs.admin.PublishPathwayVersion(request, metadata=ACME)
        )

        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert error_reason(error) == "MISSING_FIELD"
        assert violation_fields(error) == ["definition"]

    async def test_unknown_pathway_not_found(self, stubs: Stubs) -> None:
        error = await rpc_error(
            stubs.admin.GetPathway(
                admin_pb2.GetPathwayRequest(pathway_id="booking"), metadata=ACME
            )
        )
        assert error.code() == grpc.StatusCode.NOT_FOUND
        assert error_reason(error) == "PATHWAY_NOT_FOUND"


class TestCitationSchemas:
    async def test_put_get_list_replace(self, stubs: Stubs) -> None:
        """A schema is stored, listed, kept by an identical put and replaced by a new one."""
        created = await stubs.admin.PutCitationSchema(
            admin_pb2.PutCitationSchemaRequest(schema=contact_schema()), metadata=ACME
        )
        unchanged = await stubs.admin.PutCitationSchema(
            admin_pb2.PutCitationSchemaRequest(schema=contact_schema()), metadata=ACME
        )
        fetched = await stubs.admin.GetCitationSchema(
            admin_pb2.GetCitationSchemaRequest(citation_schema_id="contact"),
            metadata=ACME,
        )

        assert created.account_id == "acme"
        assert created.updated_at.seconds > 0
        assert list(created.variables) == list(contact_schema().variables)
        assert unchanged == created
        assert fetched == created

        replacement = contact_schema()
        del replacement.variables[1]
        replacement.variables[0].rules[0].confidence = 0.5
        replaced = await stubs.admin.PutCitationSchema(
            admin_pb2.PutCitationSchemaRequest(schema=replacement), metadata=ACME
        )
        listed = await stubs.admin.ListCitationSchemas(
            admin_pb2.ListCitationSchemasRequest(), metadata=ACME
        )

        assert [variable.name for variable in replaced.variables] == ["email"]
        assert replaced.variables[0].rules[0].confidence == 0.5
        assert list(listed.schemas) == [replaced]

    async def test_request_account_fields_ignored(self, stubs: Stubs) -> None:
        """The schema's own account_id and updated_at do not override the stored ones."""
        schema = contact_schema()
        schema.account_id = "globex"
        schema.updated_at.FromSeconds(5)
        stored = await stubs.admin.PutCitationSchema(
            admin_pb2.PutCitationSchemaRequest(schema=schema), metadata=ACME
        )
        assert stored.account_id == "acme"
        assert stored.updated_at.seconds != 5

    async def test_invalid_schema_rejected(self, server: Parley, stubs: Stubs) -> None:
        schema = contact_schema()
        schema.variables[0].type = "COLOUR"
        error = await rpc_error(
            stubs.admin.PutCitationSchema(
                admin_pb2.PutCitationSchemaRequest(schema=schema), metadata=ACME
            )
        )

        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert error_reason(error) == "INVALID_CITATION_SCHEMA"
        assert violation_fields(error)[0].startswith("schema.variables[0]")
        assert definition_counts(server)["citation_schemas"] == 0

    @pytest.mark.parametrize(
        ("request_message", "field"),
        [
            (admin_pb2.PutCitationSchemaRequest(), "schema"),
            (
                admin_pb2.PutCitationSchemaRequest(
                    schema=definitions_pb2.CitationSchema(id="")
                ),
                "schema.id",
            ),
            (
                admin_pb2.PutCitationSchemaRequest(
                    schema=definitions_pb2.CitationSchema(id="con tact")
                ),
                "schema.id",
            ),
        ],
    )
    async def test_missing_or_bad_id_rejected(
        self,
        stubs: Stubs,
        request_message: admin_pb2.PutCitationSchemaRequest,
        field: str,
    ) -> None:
        error = await rpc_error(
            stubs.admin.PutCitationSchema(request_message, metadata=ACME)
        )
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert violation_fields(error) == [field]

    async def test_unknown_schema_not_found(self, stubs: Stubs) -> None:
        error = await rpc_error(
            stubs.admin.GetCitationSchema(
                admin_pb2.GetCitationSchemaRequest(citation_schema_id="contact"),
                metadata=ACME,
            )
        )
        assert error.code() == grpc.StatusCode.NOT_FOUND
        assert error_reason(error) == "CITATION_SCHEMA_NOT_FOUND"


class TestOutcomes:
    async def test_put_get_list_replace(self, stubs: Stubs) -> None:
        """An outcome is stored, listed, kept by an identical put and replaced by a new one."""
        created = await stubs.admin.PutOutcome(
            admin_pb2.PutOutcomeRequest(outcome=message_count_outcome()), metadata=ACME
        )
        unchanged = await stubs.admin.PutOutcome(
            admin_pb2.PutOutcomeRequest(outcome=message_count_outcome()), metadata=ACME
        )
        fetched = await stubs.admin.GetOutcome(
            admin_pb2.GetOutcomeRequest(outcome_id="message-count"), metadata=ACME
        )

        assert created.account_id == "acme"
        assert created.script == MESSAGE_COUNT_OUTCOME["script"]
        assert created.time_limit_ms == 500
        assert created.updated_at.seconds > 0
        assert unchanged == created
        assert fetched == created

        replacement = message_count_outcome()
        replacement.script = "return transcript.length > 2;"
        replacement.memory_limit_mb = 64
        replaced = await stubs.admin.PutOutcome(
            admin_pb2.PutOutcomeRequest(outcome=replacement), metadata=ACME
        )
        listed = await stubs.admin.ListOutcomes(
            admin_pb2.ListOutcomesRequest(), metadata=ACME
        )

        assert replaced.script == "return transcript.length > 2;"
        assert replaced.memory_limit_mb == 64
        assert list(listed.outcomes) == [replaced]

    async def test_syntax_error_rejected(self, server: Parley, stubs: Stubs) -> None:
        """A script that does not compile is rejected before anything is stored."""
        outcome = message_count_outcome()
        outcome.script = "return {messages: ;"
        error = await rpc_error(
            stubs.admin.PutOutcome(
                admin_pb2.PutOutcomeRequest(outcome=outcome), metadata=ACME
            )
        )

        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert error_reason(error) == "INVALID_OUTCOME_SCRIPT"
        assert violation_fields(error) == ["outcome.script"]
        assert definition_counts(server)["outcomes"] == 0

    async def test_missing_outcome_rejected(self, stubs: Stubs) -> None:
        error = await rpc_error(
            stubs.admin.PutOutcome(admin_pb2.PutOutcomeRequest(), metadata=ACME)
        )
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert violation_fields(error) == ["outcome"]

    async def test_unknown_outcome_not_found(self, stubs: Stubs) -> None:
        error = await rpc_error(
            stubs.admin.GetOutcome(
                admin_pb2.GetOutcomeRequest(outcome_id="message-count"), metadata=ACME
            )
        )
        assert error.code() == grpc.StatusCode.NOT_FOUND
        assert error_reason(error) == "OUTCOME_NOT_FOUND"


async def store_acme_definitions(stubs: Stubs) -> None:
    await stubs.admin.PublishPathwayVersion(
        publish_request("booking", "1", booking_definition()), metadata=ACME
    )
    await stubs.admin.PutCitationSchema(
        admin_pb2.PutCitationSchemaRequest(schema=contact_schema()), metadata=ACME
    )
    await stubs.admin.PutOutcome(
        admin_pb2.PutOutcomeRequest(outcome=message_count_outcome()), metadata=ACME
    )


class TestIsolation:
    async def test_other_account_cannot_read(self, stubs: Stubs) -> None:
        """Globex reads none of acme's definitions: gets are NOT_FOUND, lists are empty."""
        await store_acme_definitions(stubs)
        calls = [
            (
                stubs.admin.GetPathway(
                    admin_pb2.GetPathwayRequest(pathway_id="booking"), metadata=GLOBEX
                ),
                "PATHWAY_NOT_FOUND",
            ),
            (
                stubs.admin.GetCitationSchema(
                    admin_pb2.GetCitationSchemaRequest(citation_schema_id="contact"),
                    metadata=GLOBEX,
                ),
                "CITATION_SCHEMA_NOT_FOUND",
            ),
            (
                stubs.admin.GetOutcome(
                    admin_pb2.GetOutcomeRequest(outcome_id="message-count"),
                    metadata=GLOBEX,
                ),
                "OUTCOME_NOT_FOUND",
            ),
        ]
        for call, reason in calls:
            error = await rpc_error(call)
            assert error.code() == grpc.StatusCode.NOT_FOUND
            assert error_reason(error) == reason

        pathways = await stubs.admin.ListPathways(
            admin_pb2.ListPathwaysRequest(), metadata=GLOBEX
        )
        schemas = await stubs.admin.ListCitationSchemas(
            admin_pb2.ListCitationSchemasRequest(), metadata=GLOBEX
        )
        outcomes = await stubs.admin.ListOutcomes(
            admin_pb2.ListOutcomesRequest(), metadata=GLOBEX
        )
        assert not pathways.pathways
        assert not schemas.schemas
        assert not outcomes.outcomes

    async def test_other_account_cannot_be_named(self, stubs: Stubs) -> None:
        """An account key naming another account is denied for reads and writes."""
        await store_acme_definitions(stubs)
        calls = [
            stubs.admin.ListPathways(
                admin_pb2.ListPathwaysRequest(account_id="acme"), metadata=GLOBEX
            ),
            stubs.admin.GetOutcome(
                admin_pb2.GetOutcomeRequest(
                    account_id="acme", outcome_id="message-count"
                ),
                metadata=GLOBEX,
            ),
            stubs.admin.PutCitationSchema(
                admin_pb2.PutCitationSchemaRequest(
                    account_id="acme", schema=contact_schema()
                ),
                metadata=GLOBEX,
            ),
            stubs.admin.PublishPathwayVersion(
                publish_request("booking", "2", booking_definition(), "acme"),
                metadata=GLOBEX,
            ),
        ]
        for call in calls:
            error = await rpc_error(call)
            assert error.code() == grpc.StatusCode.PERMISSION_DENIED
            assert error_reason(error) == "OTHER_ACCOUNT"

    async def test_same_ids_per_account(self, stubs: Stubs) -> None:
        """Two accounts may use the same ids without touching each other's entries."""
        await store_acme_definitions(stubs)
        globex_outcome = message_count_outcome()
        globex_outcome.script = "return 1;"
        await stubs.admin.PublishPathwayVersion(
            publish_request("booking", "1", booking_definition("Globex.")),
            metadata=GLOBEX,
        )
        await stubs.admin.PutOutcome(
            admin_pb2.PutOutcomeRequest(outcome=globex_outcome), metadata=GLOBEX
        )
        acme_pathway = await stubs.admin.GetPathway(
            admin_pb2.GetPathwayRequest(pathway_id="booking"), metadata=ACME
        )
        acme_outcome = await stubs.admin.GetOutcome(
            admin_pb2.GetOutcomeRequest(outcome_id="message-count"), metadata=ACME
        )

        assert acme_pathway.versions[0].definition == booking_definition()
        assert acme_outcome.script == MESSAGE_COUNT_OUTCOME["script"]

    async def test_operator_names_account(self, stubs: Stubs) -> None:
        """An operator reads a named account and must name a known one."""
        await store_acme_definitions(stubs)
        listed = await stubs.admin.ListOutcomes(
            admin_pb2.ListOutcomesRequest(account_id="acme"), metadata=OPERATOR
        )
        unnamed = await rpc_error(
            stubs.admin.ListOutcomes(admin_pb2.ListOutcomesRequest(), metadata=OPERATOR)
        )
        unknown = await rpc_error(
            stubs.admin.GetPathway(
                admin_pb2.GetPathwayRequest(account_id="initech", pathway_id="booking"),
                metadata=OPERATOR,
            )
        )

        assert [outcome.id for outcome in listed.outcomes] == ["message-count"]
        assert unnamed.code() == grpc.StatusCode.PERMISSION_DENIED
        assert error_reason(unnamed) == "ACCOUNT_ID_REQUIRED"
        assert unknown.code() == grpc.StatusCode.NOT_FOUND
        assert error_reason(unknown) == "ACCOUNT_NOT_FOUND"


def definitions_entry(account_id: str = "acme") -> dict[str, Any]:
    """An account entry with two pathway versions, a citation schema and an outcome."""
    second = copy.deepcopy(BOOKING_PATHWAY)
    second["nodes"][1]["text"] = "See you soon."
    return {
        "id": account_id,
        "pathways": [
            {
                "id": "booking",
                "versions": [
                    {"version": "1", "definition": BOOKING_PATHWAY},
                    {"version": "2", "definition": second},
                ],
            }
        ],
        "citation_schemas": [CONTACT_SCHEMA],
        "outcomes": [MESSAGE_COUNT_OUTCOME],
    }


def apply_request(*accounts: dict[str, Any]) -> admin_pb2.ApplyConfigRequest:
    return admin_pb2.ApplyConfigRequest(yaml=yaml.safe_dump({"accounts": accounts}))


def definition_summary(response: admin_pb2.ApplyConfigResponse) -> tuple[int, ...]:
    return (response.pathway_versions, response.citation_schemas, response.outcomes)


class TestApplyConfig:
    async def test_apply_twice_is_idempotent(
        self, server: Parley, stubs: Stubs
    ) -> None:
        """The second apply of the same definitions stores and counts nothing."""
        first = await stubs.admin.ApplyConfig(
            apply_request(definitions_entry()), metadata=OPERATOR
        )
        counts = definition_counts(server)
        second = await stubs.admin.ApplyConfig(
            apply_request(definitions_entry()), metadata=OPERATOR
        )
        pathway = await stubs.admin.GetPathway(
            admin_pb2.GetPathwayRequest(pathway_id="booking"), metadata=ACME
        )
        schema = await stubs.admin.GetCitationSchema(
            admin_pb2.GetCitationSchemaRequest(citation_schema_id="contact"),
            metadata=ACME,
        )
        outcome = await stubs.admin.GetOutcome(
            admin_pb2.GetOutcomeRequest(outcome_id="message-count"), metadata=ACME
        )

        assert definition_summary(first) == (2, 1, 1)
        assert definition_summary(second) == (0, 0, 0)
        assert counts == {"pathway_versions": 2, "citation_schemas": 1, "outcomes": 1}
        assert definition_counts(server) == counts
        assert [version.version for version in pathway.versions] == ["1", "2"]
        assert pathway.versions[1].definition.nodes[1].text == "See you soon."
        assert list(schema.variables) == list(contact_schema().variables)
        assert outcome.time_limit_ms == 500

    async def test_changes_counted(self, stubs: Stubs) -> None:
        """A new version and a changed outcome count, and unchanged entries do not."""
        await stubs.admin.ApplyConfig(
            apply_request(definitions_entry()), metadata=OPERATOR
        )
        changed = definitions_entry()
        changed["pathways"][0]["versions"].append(
            {"version": "3", "definition": BOOKING_PATHWAY}
        )
        changed["outcomes"] = [{**MESSAGE_COUNT_OUTCOME, "time_limit_ms": 900}]
        response = await stubs.admin.ApplyConfig(
            apply_request(changed), metadata=OPERATOR
        )
        outcome = await stubs.admin.GetOutcome(
            admin_pb2.GetOutcomeRequest(outcome_id="message-count"), metadata=ACME
        )

        assert definition_summary(response) == (1, 0, 1)
        assert outcome.time_limit_ms == 900

    async def test_changed_version_rolls_back(
        self, server: Parley, stubs: Stubs
    ) -> None:
        """Republishing a version with another definition fails the whole document."""
        await stubs.admin.PublishPathwayVersion(
            publish_request("booking", "2", booking_definition()), metadata=ACME
        )
        before = definition_counts(server)
        error = await rpc_error(
            stubs.admin.ApplyConfig(
                apply_request(definitions_entry()), metadata=OPERATOR
            )
        )

        assert error.code() == grpc.StatusCode.ALREADY_EXISTS
        assert error_reason(error) == "PATHWAY_VERSION_IMMUTABLE"
        assert "accounts[0].pathways[0].versions[1]" in (error.details() or "")
        assert definition_counts(server) == before

    async def test_invalid_pathway_names_yaml_path(
        self, server: Parley, stubs: Stubs
    ) -> None:
        entry = definitions_entry()
        bad = entry["pathways"][0]["versions"][1]["definition"]
        bad["nodes"][0]["edges"][0]["target_node_id"] = "nowhere"
        error = await rpc_error(
            stubs.admin.ApplyConfig(apply_request(entry), metadata=OPERATOR)
        )

        edge_path = "accounts[0].pathways[0].versions[1].definition.nodes[0].edges[0]"
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert error_reason(error) == "INVALID_PATHWAY"
        assert violation_fields(error)[0].startswith(edge_path)
        assert (error.details() or "").startswith("yaml: ")
        assert edge_path in (error.details() or "")
        assert definition_counts(server) == dict.fromkeys(DEFINITION_TABLES, 0)

    async def test_invalid_outcome_names_yaml_path(self, stubs: Stubs) -> None:
        entry = definitions_entry()
        entry["outcomes"] = [{"id": "broken", "script": "return (;"}]
        error = await rpc_error(
            stubs.admin.ApplyConfig(apply_request(entry), metadata=OPERATOR)
        )

        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert error_reason(error) == "INVALID_OUTCOME_SCRIPT"
        assert violation_fields(error) == ["accounts[0].outcomes[0].script"]

    async def test_account_key_applies_own_definitions(self, stubs: Stubs) -> None:
        response = await stubs.admin.ApplyConfig(
            apply_request(definitions_entry()), metadata=ACME
        )
        denied = await rpc_error(
            stubs.admin.ApplyConfig(
                apply_request(definitions_entry("globex")), metadata=ACME
            )
        )

        assert definition_summary(response) == (2, 1, 1)
        assert denied.code() == grpc.StatusCode.PERMISSION_DENIED
        assert error_reason(denied) == "OTHER_ACCOUNT"


class TestStartupConfig:
    @pytest.fixture
    def config_data(self) -> dict[str, Any]:
        """The base config with definitions for both accounts."""
        data = base_config()
        for account in data["accounts"]:
            account.update(
                {
                    key: value
                    for key, value in definitions_entry().items()
                    if key != "id"
                }
            )
        return data

    async def test_definitions_loaded(self, stubs: Stubs) -> None:
        """The --config file's definitions are stored per account at start-up."""
        for metadata in (ACME, GLOBEX):
            pathway = await stubs.admin.GetPathway(
                admin_pb2.GetPathwayRequest(pathway_id="booking"), metadata=metadata
            )
            outcomes = await stubs.admin.ListOutcomes(
                admin_pb2.ListOutcomesRequest(), metadata=metadata
            )
            assert len(pathway.versions) == 2
            assert [outcome.id for outcome in outcomes.outcomes] == ["message-count"]

    async def test_reapplying_startup_config_counts_nothing(
        self, stubs: Stubs, config_data: dict[str, Any]
    ) -> None:
        response = await stubs.admin.ApplyConfig(
            admin_pb2.ApplyConfigRequest(yaml=yaml.safe_dump(config_data)),
            metadata=OPERATOR,
        )
        assert definition_summary(response) == (0, 0, 0)
