"""Conversion of an account's `pathways`, `citation_schemas` and `outcomes` sections.

YAML keys are the field names of the `parley.v1` definition messages, so a
pathway node is written as `{id, text, end, end_reason, fallback_text,
edges}`. Fields that the server sets (`account_id`, `updated_at`,
`published_at`) are not accepted. Each converted definition is validated by
the same function that AdminService uses, and its errors name the YAML path,
such as `accounts[0].pathways[1].versions[0].definition.nodes[2].id`.
"""

from __future__ import annotations

import typing

from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message
from parley.v1 import definitions_pb2

from server.citations import validate_citation_schema
from server.config_model import (
    PathwayEntry,
    PathwayVersionEntry,
    validate_definition_id,
)
from server.config_values import ValueReader, join_path
from server.errors import invalid_argument
from server.outcomes import validate_outcome
from server.pathways.graph import PathwayGraph

_PATHWAY_KEYS = ("id", "versions")
_PATHWAY_VERSION_KEYS = ("version", "definition")
# Fields stored from the row rather than from the definition.
_SERVER_FIELDS = frozenset({"account_id", "updated_at", "published_at"})
# Largest value of a proto uint32 field.
_UINT32_MAX = 2**32 - 1


class DefinitionsParser(ValueReader):
    """Converts definition entries into their protos and validates them."""

    def _pathway(self, data: object, path: str) -> PathwayEntry:
        entry = self._mapping(data, path, _PATHWAY_KEYS, required=("id", "versions"))
        id_path = join_path(path, "id")
        pathway_id = validate_definition_id(
            self._string(entry["id"], id_path), id_path, "pathway id"
        )
        versions_path = join_path(path, "versions")
        items = self._sequence(entry["versions"], versions_path)
        if not items:
            raise invalid_argument(
                versions_path,
                f"{versions_path} is empty; list at least one version, because a"
                " pathway exists only with a published version",
            )
        versions = tuple(
            self._pathway_version(item, item_path) for item_path, item in items
        )
        return PathwayEntry(pathway_id, versions)

    def _pathway_version(self, data: object, path: str) -> PathwayVersionEntry:
        entry = self._mapping(
            data, path, _PATHWAY_VERSION_KEYS, required=("version", "definition")
        )
        version_path = join_path(path, "version")
        version = validate_definition_id(
            self._string(entry["version"], version_path),
            version_path,
            "pathway version",
        )
        definition_path = join_path(path, "definition")
        definition = definitions_pb2.PathwayDefinition()
        self._fill_message(entry["definition"], definition_path, definition)
        PathwayGraph.from_definition(definition, field_name=definition_path)
        return PathwayVersionEntry(version, definition)

    def _citation_schema(
        self, data: object, path: str
    ) -> definitions_pb2.CitationSchema:
        schema = definitions_pb2.CitationSchema()
        self._fill_message(data, path, schema, required=("id",))
        id_path = join_path(path, "id")
        validate_definition_id(schema.id, id_path, "citation schema id")
        validate_citation_schema(schema, field_prefix=path)
        return schema

    def _outcome(self, data: object, path: str) -> definitions_pb2.Outcome:
        outcome = definitions_pb2.Outcome()
        self._fill_message(data, path, outcome, required=("id", "script"))
        validate_definition_id(outcome.id, join_path(path, "id"), "outcome id")
        validate_outcome(outcome, field_prefix=path)
        return outcome

    def _fill_message(
        self,
        data: object,
        path: str,
        message: Message,
        required: tuple[str, ...] = (),
    ) -> None:
        """Set the fields of `message` from a mapping keyed by field name."""
        # The stubs add the upb descriptor class to the type, which has the same
        # attributes at run time.
        descriptor = typing.cast(Descriptor, message.DESCRIPTOR)
        fields = [
            field for field in descriptor.fields if field.name not in _SERVER_FIELDS
        ]
        entry = self._mapping(
            data, path, [field.name for field in fields], required=required
        )
        for field in fields:
            value = entry.get(field.name)
            if value is not None:
                self._set_field(message, field, value, join_path(path, field.name))

    def _set_field(
        self, message: Message, field: FieldDescriptor, value: object, path: str
    ) -> None:
        if field.is_repeated:
            container = getattr(message, field.name)
            for item_path, item in self._sequence(value, path):
                if field.type == FieldDescriptor.TYPE_MESSAGE:
                    self._fill_message(item, item_path, container.add())
                else:
                    container.append(self._scalar(field, item, item_path))
        elif field.type == FieldDescriptor.TYPE_MESSAGE:
            self._fill_message(value, path, getattr(message, field.name))
        else:
            setattr(message, field.name, self._scalar(field, value, path))

    def _scalar(self, field: FieldDescriptor, value: object, path: str) -> object:
        """Check one scalar value against the field's proto type.

        Raises TypeError for a type that no definition message uses yet.
        """
        if field.type == FieldDescriptor.TYPE_STRING:
            return self._string(value, path)
        if field.type == FieldDescriptor.TYPE_BOOL:
            return self._boolean(value, path)
        if field.type == FieldDescriptor.TYPE_UINT32:
            return self._integer(value, path, 0, _UINT32_MAX)
        if field.type == FieldDescriptor.TYPE_DOUBLE:
            # The only double is an extraction rule's confidence, from 0 to 1.
            return self._float(value, path, positive=False, maximum=1.0)
        raise TypeError(f"no config check for field {field.full_name}")
