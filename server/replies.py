"""Agent replies generated from a conversation's pathway.

The scope of a node's template contains the conversation's captured variables
at the top level, plus `request_data`, `metadata` and `reply` (the user's
last reply, empty before the first one).
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from google.protobuf import json_format, struct_pb2
from parley.v1 import types_pb2

from server.db import Transaction
from server.definitions import get_pathway_version
from server.errors import ParleyError, failed_precondition
from server.pathways.graph import PathwayGraph

if TYPE_CHECKING:
    from server.app import Components

# Published pathway versions are immutable, so parsed graphs can be cached.
_GRAPH_CACHE_SIZE = 256


@dataclass(frozen=True)
class Reply:
    """The pathway's next reply: text to send (maybe empty) and whether it ends."""

    text: str
    ends: bool
    end_reason: str


class PathwayReplies:
    def __init__(self, components: Components) -> None:
        self._components = components
        self._graphs: OrderedDict[tuple[str, str, str], PathwayGraph] = OrderedDict()

    async def first_reply(
        self, tx: Transaction, conversation: types_pb2.Conversation
    ) -> Reply:
        """Render the current node, entering the pathway if the conversation has not."""
        graph = await self._graph(tx, conversation)
        if not conversation.current_node_id:
            conversation.current_node_id = graph.entry_node_id(
                conversation.config.start_node_id
            )
        return self._render(graph, conversation, conversation.current_node_id, "")

    async def next_reply(
        self, tx: Transaction, conversation: types_pb2.Conversation, reply_text: str
    ) -> Reply | None:
        """Move along the edge the user's reply matches and render the new node.

        A conversation that has not entered its pathway yet replies with the
        entry node. With no matching edge the node's fallback text is sent, or
        nothing (None) when it has none.
        """
        graph = await self._graph(tx, conversation)
        if not conversation.current_node_id:
            return await self.first_reply(tx, conversation)
        variables = _struct_dict(conversation.variables)
        step = graph.step(conversation.current_node_id, reply_text, variables)
        if not step.matched:
            if not graph.fallback_text(conversation.current_node_id):
                return None
            node_id = conversation.current_node_id
            text = self._checked_render(
                lambda: graph.render_fallback(
                    node_id, _scope(conversation, reply_text)
                ),
                node_id,
            )
            return Reply(text, False, "")
        variables.update(step.captured)
        conversation.variables.Clear()
        conversation.variables.update(variables)
        conversation.current_node_id = step.target_node_id
        return self._render(graph, conversation, step.target_node_id, reply_text)

    def _render(
        self,
        graph: PathwayGraph,
        conversation: types_pb2.Conversation,
        node_id: str,
        reply_text: str,
    ) -> Reply:
        text = self._checked_render(
            lambda: graph.render(node_id, _scope(conversation, reply_text)), node_id
        )
        return Reply(text, graph.is_end(node_id), graph.end_reason(node_id))

    @staticmethod
    def _checked_render(render: Callable[[], str], node_id: str) -> str:
        try:
            return render()
        except (ValueError, TypeError) as error:
            raise failed_precondition(
                "TEMPLATE_FAILED", f"node {node_id!r} could not be rendered: {error}"
            ) from error

    async def _graph(
        self, tx: Transaction, conversation: types_pb2.Conversation
    ) -> PathwayGraph:
        config = conversation.config
        if not config.pathway_id:
            raise failed_precondition(
                "PATHWAY_REQUIRED",
                "agent_message is empty and the conversation has no pathway to generate"
                " a reply; send agent_message, or set pathway_id on the request, the"
                " persona or the number.",
            )
        version = conversation.resolved_pathway_version or config.pathway_version
        found = await get_pathway_version(
            tx, conversation.account_id, config.pathway_id, version
        )
        if found is None:
            raise failed_precondition(
                "PATHWAY_NOT_FOUND",
                f"pathway {config.pathway_id!r} version {version or '(latest)'!r} is not"
                " published for this account; publish it with"
                " AdminService.PublishPathwayVersion.",
            )
        resolved_version, definition = found
        # The conversation keeps the version it started with, even when a
        # newer one is published later.
        conversation.resolved_pathway_version = resolved_version
        key = (conversation.account_id, config.pathway_id, resolved_version)
        graph = self._graphs.get(key)
        if graph is None:
            try:
                # Compiling a large graph takes up to about half a second, so
                # it runs off the event loop.
                graph = await asyncio.to_thread(
                    PathwayGraph.from_definition, definition
                )
            except ParleyError as error:
                raise failed_precondition("INVALID_PATHWAY", error.message) from error
            self._graphs[key] = graph
            if len(self._graphs) > _GRAPH_CACHE_SIZE:
                self._graphs.popitem(last=False)
        else:
            self._graphs.move_to_end(key)
        return graph


def _scope(conversation: types_pb2.Conversation, reply_text: str) -> dict[str, Any]:
    scope: dict[str, Any] = dict(_struct_dict(conversation.variables))
    scope["request_data"] = _struct_dict(conversation.request_data)
    scope["metadata"] = _struct_dict(conversation.metadata)
    scope["reply"] = reply_text
    return scope


def _struct_dict(value: struct_pb2.Struct) -> dict[str, Any]:
    converted: dict[str, Any] = json_format.MessageToDict(value)
    return converted
