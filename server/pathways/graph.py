"""A validated pathway graph: renders node texts and picks the edge a reply takes.

`PathwayGraph.from_definition` checks the whole definition up front, so the
other methods only fail for an unknown node id or a rendering error. Callers
build the template scope for `render` as
`{**variables, "request_data": {...}, "metadata": {...}, "reply": last_reply}`,
so those three names hide conversation variables of the same name, which is
why captures may not use them.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

import grpc
from parley.v1 import definitions_pb2

from server.errors import FieldViolation, ParleyError, failed_precondition
from server.pathways.conditions import (
    CAPTURE_TYPES,
    KEYWORD_MAX_CHARS,
    MAX_KEYWORDS,
    CaptureRule,
    Expression,
    KeywordMatcher,
    Regex,
    check_variable_name,
    compile_expression,
)
from server.pathways.templates import (
    RENDERED_MAX_CHARS,
    Template,
    TemplateError,
    parse_template,
)
from server.validation import quote_value

# Together with the per-element limits below, the size limit bounds the time
# to compile a definition.
DEFINITION_MAX_BYTES = 256 * 1024
MAX_NODES = 500
MAX_EDGES_PER_NODE = 50
MAX_CAPTURES_PER_EDGE = 20
NODE_ID_MAX_CHARS = 128
# A node's text and fallback_text, counted before rendering, tags included.
TEXT_MAX_CHARS = RENDERED_MAX_CHARS
DEFAULT_END_REASON = "PATHWAY_END"

_END_REASON = re.compile(r"[A-Z][A-Z0-9_]{0,63}")

# The status, violations included, travels in gRPC trailers, whose size
# clients limit, so an invalid definition reports at most this many.
_MAX_VIOLATIONS = 10


@dataclass(frozen=True)
class Step:
    """The outcome of one reply: the edge target, or the current node when unmatched."""

    matched: bool
    target_node_id: str
    captured: dict[str, object] = field(default_factory=dict)


@dataclass(frozen=True)
class _Edge:
    target_node_id: str
    keywords: KeywordMatcher | None
    regex: Regex | None
    expression: Expression | None
    captures: tuple[CaptureRule, ...]

    def match(
        self, reply: str, variables: Mapping[str, object]
    ) -> dict[str, object] | None:
        """Return the captured values if every set condition holds, else None."""
        if self.keywords is not None and not self.keywords.matches(reply):
            return None
        if self.regex is not None and not self.regex.matches(reply):
            return None
        captured: dict[str, object] = {}
        for rule in self.captures:
            value = rule.extract(reply)
            if value is None:
                return None
            captured[rule.variable] = value
        if self.expression is not None:
            # Captures are added last, so the expression reads this edge's captured values.
            scope = {**variables, "reply": reply, **captured}
            if not self.expression.evaluate(scope):
                return None
        return captured


@dataclass(frozen=True)
class _Node:
    text: Template
    fallback_text: str
    fallback: Template
    end: bool
    end_reason: str
    edges: tuple[_Edge, ...]


class PathwayGraph:
    """A pathway whose definition passed every check; build it with from_definition."""

    def __init__(self, start_node_id: str, nodes: Mapping[str, _Node]) -> None:
        self.start_node_id = start_node_id
        self._nodes = dict(nodes)

    @classmethod
    def from_definition(
        cls,
        definition: definitions_pb2.PathwayDefinition,
        *,
        field_name: str = "definition",
    ) -> PathwayGraph:
        """Check and compile `definition`.

        Raises ParleyError INVALID_ARGUMENT with reason INVALID_PATHWAY, naming
        each invalid element as `{field_name}.nodes[2].edges[0].regex`.
        """
        builder = _Builder(field_name)
        nodes = builder.build_nodes(definition)
        builder.raise_if_invalid()
        return cls(definition.start_node_id, nodes)

    def entry_node_id(self, start_node_id: str) -> str:
        """Return `start_node_id` if set, else the definition's start node.

        Raises ParleyError FAILED_PRECONDITION (START_NODE_NOT_FOUND) for an unknown id.
        """
        if not start_node_id:
            return self.start_node_id
        if start_node_id not in self._nodes:
            raise failed_precondition(
                "START_NODE_NOT_FOUND",
                f"start_node_id {quote_value(start_node_id)} is not a node of this "
                "pathway; send one of its node ids, or leave it empty to start at "
                f"{quote_value(self.start_node_id)}",
            )
        return start_node_id

    def render(self, node_id: str, scope: Mapping[str, object]) -> str:
        """Render the node's text; raises RenderedTextTooLongError past 1,600 characters.

        The caller turns that error into a failed reply. TypeError means
        `scope` contains a value that is not JSON-like data.
        """
        return self._node(node_id).text.render(scope)

    def render_fallback(self, node_id: str, scope: Mapping[str, object]) -> str:
        """Render the text sent when no edge matches; "" means send nothing."""
        return self._node(node_id).fallback.render(scope)

    def fallback_text(self, node_id: str) -> str:
        """Return the node's fallback template unrendered; "" means send nothing."""
        return self._node(node_id).fallback_text

    def render_text(self, text: str, scope: Mapping[str, object]) -> str:
        """Parse and render any template, such as a fallback_text.

        Raises TemplateError or RenderedTextTooLongError, both ValueError.
        """
        return parse_template(text).render(scope)

    def is_end(self, node_id: str) -> bool:
        return self._node(node_id).end

    def end_reason(self, node_id: str) -> str:
        """Return the node's end reason, or PATHWAY_END when it sets none."""
        return self._node(node_id).end_reason or DEFAULT_END_REASON

    def step(self, node_id: str, reply: str, variables: Mapping[str, object]) -> Step:
        """Take the first edge of the node whose conditions all hold for `reply`.

        An edge without conditions always matches. Unmatched steps stay on `node_id`.
        """
        for edge in self._node(node_id).edges:
            captured = edge.match(reply, variables)
            if captured is not None:
                return Step(True, edge.target_node_id, captured)
        return Step(False, node_id, {})

    def _node(self, node_id: str) -> _Node:
        node = self._nodes.get(node_id)
        if node is None:
            raise failed_precondition(
                "PATHWAY_NODE_NOT_FOUND",
                f"node {quote_value(node_id)} is not in this pathway version",
            )
        return node


class _Builder:
    """Compiles a definition while collecting the violations it finds."""

    def __init__(self, field_name: str) -> None:
        self.field_name = field_name
        self.violations: list[FieldViolation] = []

    def add(self, path: str, problem: str, value: str | None = None) -> None:
        subject = path if value is None else f"{path} {quote_value(value)}"
        self.violations.append(FieldViolation(path, f"{subject} {problem}"))

    def raise_if_invalid(self) -> None:
        if not self.violations:
            return
        message = self.violations[0].description
        if len(self.violations) > 1:
            message += f" (and {len(self.violations) - 1} more problems in the pathway)"
        raise ParleyError(
            grpc.StatusCode.INVALID_ARGUMENT,
            "INVALID_PATHWAY",
            message,
            violations=self.violations[:_MAX_VIOLATIONS],
        )

    def build_nodes(
        self, definition: definitions_pb2.PathwayDefinition
    ) -> dict[str, _Node]:
        size = definition.ByteSize()
        if size > DEFINITION_MAX_BYTES:
            self.add(
                self.field_name,
                f"is {size:,} bytes serialized; the maximum is "
                f"{DEFINITION_MAX_BYTES:,} bytes, so shorten its texts or split it "
                "into several pathways",
            )
            return {}
        nodes_path = f"{self.field_name}.nodes"
        if not definition.nodes:
            self.add(nodes_path, "is empty; a pathway needs at least one node")
            return {}
        if len(definition.nodes) > MAX_NODES:
            self.add(
                nodes_path,
                f"has {len(definition.nodes):,} nodes; the maximum is {MAX_NODES}",
            )
            return {}
        node_ids = {node.id for node in definition.nodes}
        self._check_start(definition.start_node_id, node_ids)
        nodes: dict[str, _Node] = {}
        for index, node in enumerate(definition.nodes):
            path = f"{nodes_path}[{index}]"
            self._check_node_id(f"{path}.id", node.id, nodes)
            nodes[node.id] = self._build_node(path, node, node_ids)
        return nodes

    def _check_start(self, start_node_id: str, node_ids: set[str]) -> None:
        path = f"{self.field_name}.start_node_id"
        if not start_node_id:
            self.add(path, "is missing; set it to the id of the first node")
        elif start_node_id not in node_ids:
            self.add(path, "is not the id of a node in this pathway", start_node_id)

    def _check_node_id(
        self, path: str, node_id: str, seen: Mapping[str, _Node]
    ) -> None:
        if not node_id:
            self.add(path, "is missing; every node needs a unique id")
        elif len(node_id) > NODE_ID_MAX_CHARS:
            self.add(
                path,
                f"is {len(node_id):,} characters long; the maximum is {NODE_ID_MAX_CHARS}",
                node_id,
            )
        elif not _is_printable_without_whitespace(node_id):
            self.add(
                path,
                "contains whitespace or a control character; use printable "
                "characters without spaces",
                node_id,
            )
        elif node_id in seen:
            self.add(
                path, "is the id of an earlier node; node ids must be unique", node_id
            )

    def _build_node(
        self, path: str, node: definitions_pb2.PathwayNode, node_ids: set[str]
    ) -> _Node:
        text = self._template(f"{path}.text", node.text)
        fallback = self._template(f"{path}.fallback_text", node.fallback_text)
        if node.end_reason and not _END_REASON.fullmatch(node.end_reason):
            self.add(
                f"{path}.end_reason",
                "is invalid; use UPPER_SNAKE_CASE of at most 64 characters, such as "
                f"BOOKED, or leave it empty for {DEFAULT_END_REASON}",
                node.end_reason,
            )
        edges: list[_Edge] = []
        if node.end and node.edges:
            self.add(f"{path}.edges", "must be empty because the node is an end node")
        elif len(node.edges) > MAX_EDGES_PER_NODE:
            self.add(
                f"{path}.edges",
                f"has {len(node.edges)} edges; the maximum is {MAX_EDGES_PER_NODE}",
            )
        else:
            for index, edge in enumerate(node.edges):
                edges.append(self._build_edge(f"{path}.edges[{index}]", edge, node_ids))
        return _Node(
            text, node.fallback_text, fallback, node.end, node.end_reason, tuple(edges)
        )

    def _template(self, path: str, text: str) -> Template:
        if len(text) > TEXT_MAX_CHARS:
            self.add(
                path,
                f"is {len(text):,} characters long; the maximum is {TEXT_MAX_CHARS:,}",
                text,
            )
            return Template(())
        try:
            return parse_template(text)
        except TemplateError as error:
            self.add(path, f"is not a valid template: {error}", text)
            return Template(())

    def _build_edge(
        self, path: str, edge: definitions_pb2.PathwayEdge, node_ids: set[str]
    ) -> _Edge:
        if edge.target_node_id not in node_ids:
            self.add(
                f"{path}.target_node_id",
                "is not the id of a node in this pathway",
                edge.target_node_id,
            )
        captures: list[CaptureRule | None] = []
        if len(edge.captures) > MAX_CAPTURES_PER_EDGE:
            self.add(
                f"{path}.captures",
                f"has {len(edge.captures)} captures; "
                f"the maximum is {MAX_CAPTURES_PER_EDGE}",
            )
        else:
            captures = [
                self._capture(f"{path}.captures[{index}]", capture)
                for index, capture in enumerate(edge.captures)
            ]
        return _Edge(
            target_node_id=edge.target_node_id,
            keywords=self._keywords(f"{path}.keywords", list(edge.keywords)),
            regex=self._regex(f"{path}.regex", edge.regex),
            expression=self._expression(f"{path}.expression", edge.expression),
            captures=tuple(rule for rule in captures if rule is not None),
        )

    def _keywords(self, path: str, keywords: list[str]) -> KeywordMatcher | None:
        if not keywords:
            return None
        if len(keywords) > MAX_KEYWORDS:
            self.add(
                path,
                f"has {len(keywords)} keywords; the maximum is {MAX_KEYWORDS}",
            )
            return None
        valid = True
        for index, word in enumerate(keywords):
            if len(word) > KEYWORD_MAX_CHARS:
                self.add(
                    f"{path}[{index}]",
                    f"is {len(word):,} characters long; "
                    f"the maximum is {KEYWORD_MAX_CHARS}",
                    word,
                )
                valid = False
            elif not word.strip():
                self.add(f"{path}[{index}]", "is empty; send a word or phrase")
                valid = False
        return KeywordMatcher(keywords) if valid else None

    def _regex(self, path: str, pattern: str) -> Regex | None:
        if not pattern:
            return None
        try:
            return Regex(pattern)
        except ValueError as error:
            self.add(path, f"is not a valid regular expression: {error}", pattern)
            return None

    def _expression(self, path: str, text: str) -> Expression | None:
        if not text:
            return None
        try:
            return compile_expression(text)
        except ValueError as error:
            self.add(path, f"is not a valid expression: {error}", text)
            return None

    def _capture(
        self, path: str, capture: definitions_pb2.Capture
    ) -> CaptureRule | None:
        valid = True
        try:
            check_variable_name(capture.variable)
        except ValueError as error:
            self.add(f"{path}.variable", f"is invalid: {error}", capture.variable)
            valid = False
        if capture.type and capture.type not in CAPTURE_TYPES:
            self.add(
                f"{path}.type",
                "is not a capture type; use STRING or NUMBER, or leave it empty for STRING",
                capture.type,
            )
            valid = False
        regex = self._regex(f"{path}.regex", capture.regex)
        if capture.regex and regex is None:
            valid = False
        if not valid:
            return None
        return CaptureRule(capture.variable, regex, capture.type == "NUMBER")


def _is_printable_without_whitespace(text: str) -> bool:
    return text.isprintable() and not any(char.isspace() for char in text)
