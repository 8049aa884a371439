"""Tests for pathway templates, edge conditions and graphs in server.pathways."""

from __future__ import annotations

from typing import Any

import grpc
import pytest
from parley.v1 import definitions_pb2

from server.errors import ParleyError
from server.pathways.conditions import (
    KEYWORD_MAX_CHARS,
    MAX_KEYWORDS,
    NUMBER_MAX_ABS,
    CaptureRule,
    KeywordMatcher,
    Regex,
    compile_expression,
    parse_number,
)
from server.pathways.graph import (
    DEFINITION_MAX_BYTES,
    MAX_CAPTURES_PER_EDGE,
    TEXT_MAX_CHARS,
    PathwayGraph,
    Step,
)
from server.pathways.templates import (
    RENDERED_MAX_CHARS,
    RenderedTextTooLongError,
    TemplateError,
    render_template,
    validate_template,
)

Node = definitions_pb2.PathwayNode
Edge = definitions_pb2.PathwayEdge
Capture = definitions_pb2.Capture

# Templates


def test_template_renders_nested_paths() -> None:
    scope = {
        "request_data": {"customer": {"first_name": "Ada"}},
        "items": [{"name": "cake"}, {"name": "tea"}],
    }
    text = render_template(
        "Hi {{ request_data.customer.first_name }}, {{ items.1.name }}?", scope
    )
    assert text == "Hi Ada, tea?"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("plain", "plain"),
        (7, "7"),
        (3.0, "3"),
        (2.5, "2.5"),
        (True, "true"),
        (False, "false"),
        (None, ""),
        ({"a": [1.0, None, True]}, '{"a":[1,null,true]}'),
        (["x", 2], '["x",2]'),
    ],
)
def test_template_formats_value(value: object, expected: str) -> None:
    assert render_template("{{ v }}", {"v": value}) == expected


def test_template_missing_renders_empty() -> None:
    scope: dict[str, object] = {"items": [], "name": "Ada"}
    assert render_template("[{{ nobody }}]", scope) == "[]"
    assert render_template("[{{ items.3 }}]", scope) == "[]"
    assert render_template("[{{ name.first }}]", scope) == "[]"
    assert render_template("[{{ items.x }}]", scope) == "[]"


def test_template_default_filter() -> None:
    scope: dict[str, object] = {"empty": "", "none": None, "zero": 0, "no": False}
    assert render_template("{{ missing | default: 'friend' }}", scope) == "friend"
    assert render_template('{{ none | default: "friend" }}', scope) == "friend"
    assert render_template("{{ empty|default:'friend' }}", scope) == "friend"
    assert render_template("{{ zero | default: 'friend' }}", scope) == "0"
    assert render_template("{{ no | default: 'friend' }}", scope) == "false"


def test_template_default_may_contain_braces() -> None:
    text = render_template("{{ x | default: '}} {{ y }}' }}!", {"y": "no"})
    assert text == "}} {{ y }}!"


def test_template_values_are_not_rescanned() -> None:
    scope = {
        "request_data": {"name": "{{ ''.__class__ }}"},
        "other": "{{ request_data.name }}",
    }
    text = render_template("{{ request_data.name }} {{ other }}", scope)
    assert text == "{{ ''.__class__ }} {{ request_data.name }}"


def test_template_other_syntax_is_literal() -> None:
    text = "{% for x in items %}{{ x }}{% endfor %} }} {# note #}"
    assert (
        render_template(text, {"x": 1})
        == "{% for x in items %}1{% endfor %} }} {# note #}"
    )


@pytest.mark.parametrize(
    ("template", "position"),
    [
        ("Hello {{ name", 6),
        ("{{ ''.__class__ }}", 0),
        ("ok {{ request_data.__class__ }}", 3),
        ("{{ a.b() }}", 0),
        ("{{ a[0] }}", 0),
        ("{{ a + b }}", 0),
        ("{{ a or b }}", 0),
        ("{{ }}", 0),
        ("{{ name | upper }}", 0),
        ("{{ name | }}", 0),
        ("{{ name | default: friend }}", 0),
        ("{{ name | default 'friend' }}", 0),
        ("{{ name | default: 'a' | default: 'b' }}", 0),
        ("{{ name | default: 'unclosed }}", 0),
    ],
)
def test_template_malformed_rejected(template: str, position: int) -> None:
    with pytest.raises(TemplateError) as caught:
        validate_template(template)
    assert caught.value.position == position
    assert f"at index {position}" in str(caught.value)


def test_template_error_is_value_error() -> None:
    with pytest.raises(ValueError, match="no closing"):
        validate_template("{{ x")


def test_template_rendered_length_limit() -> None:
    exact = render_template("{{ v }}", {"v": "x" * RENDERED_MAX_CHARS})
    assert len(exact) == RENDERED_MAX_CHARS
    with pytest.raises(RenderedTextTooLongError):
        render_template("a{{ v }}", {"v": "x" * RENDERED_MAX_CHARS})


def test_template_long_literal_rejected() -> None:
    with pytest.raises(TemplateError, match="maximum of 1,600"):
        validate_template("x" * (RENDERED_MAX_CHARS + 1))


def test_template_rejects_python_objects() -> None:
    with pytest.raises(TypeError, match="JSON-like"):
        render_template("{{ v }}", {"v": object()})


# Expressions


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("answer == 'yes'", True),
        ("answer != 'yes'", False),
        ("party_size <= 8 and party_size > 0", True),
        ("1 < party_size < 5", True),
        ("party_size >= 10 or answer == 'yes'", True),
        ("not confirmed", True),
        ("-party_size < 0", True),
        ("answer in ['yes', 'y', -1]", True),
        ("answer not in ('no', 'n')", True),
        ("'es' in answer", True),
        ("'budget' in request", True),
        ("unknown == None", True),
        ("unknown", False),
        ("price == 4", True),
        ("flag == 1", False),
        ("party_size < 'ten'", False),
        ("unknown > 3", False),
        ("3 in party_size", False),
        ("3 not in party_size", False),
        ("answer != 4", True),
        ("-answer == None", True),
    ],
)
def test_expression_evaluates(expression: str, expected: bool) -> None:
    variables: dict[str, object] = {
        "answer": "yes",
        "party_size": 4,
        "confirmed": False,
        "price": 4.0,
        "flag": True,
        "request": {"budget": 10},
    }
    assert compile_expression(expression).evaluate(variables) is expected


@pytest.mark.parametrize(
    "expression",
    [
        "__import__('os')",
        "__import__('os').system('true')",
        "answer.upper()",
        "answer.__class__",
        "().__class__.__bases__",
        "lambda: 1",
        "9**9**9",
        "party_size + 1 > 2",
        "answer[0] == 'y'",
        "[x for x in answer]",
        "(x := 1)",
        "answer if flag else 1",
        "f'{answer}'",
        "b'yes' == answer",
        "1j == 1",
        "answer is None",
        "{'a': 1}",
        "[1, 2] == x",
        "x in [y]",
        "x in [len]",
        "a == 1; import os",
        "not" + " not" * 60 + " a",
        "",
        "   ",
        "a ==",
        "a" * 501,
    ],
)
def test_expression_rejected(expression: str) -> None:
    with pytest.raises(ValueError):
        compile_expression(expression)


def test_expression_max_length_accepted() -> None:
    text = "a == '" + "x" * 493 + "'"
    assert len(text) == 500
    assert compile_expression(text).evaluate({"a": "x" * 493}) is True


# Regular expressions, keywords and captures


def test_regex_backtracking_pattern_is_bounded() -> None:
    # Python's `re` takes exponential time on this input; RE2 returns at once.
    pattern = Regex("(a+)+$")
    assert pattern.matches("a" * 5000 + "b") is False
    assert pattern.matches("a" * 5000) is True


@pytest.mark.parametrize("pattern", ["(a", "(a)\\1", "(?=a)b", "x{2,1}"])
def test_regex_invalid_rejected(pattern: str) -> None:
    with pytest.raises(ValueError, match="RE2"):
        Regex(pattern)


def test_regex_extract_groups() -> None:
    assert Regex(r"(\d+) people").extract("we are 6 people") == "6"
    assert Regex(r"\d+").extract("table for 6") == "6"
    assert Regex(r"(\d+)?x").extract("x") is None
    assert Regex(r"\d+").extract("no digits") is None


def test_keywords_match_whole_words() -> None:
    matcher = KeywordMatcher(["yes", "sounds good", "👍"])
    assert matcher.matches("YES please")
    assert matcher.matches("ok, yes.")
    assert matcher.matches("that Sounds\n good")
    assert matcher.matches("👍")
    assert not matcher.matches("yesterday")
    assert not matcher.matches("eyes")
    assert not matcher.matches("sounds fine")


def test_keywords_escape_metacharacters() -> None:
    matcher = KeywordMatcher(["a.b", "(x"])
    assert matcher.matches("say a.b now")
    assert not matcher.matches("say axb now")
    assert matcher.matches("(x")


def test_keywords_empty_rejected() -> None:
    with pytest.raises(ValueError):
        KeywordMatcher(["yes", "  "])
    with pytest.raises(ValueError):
        KeywordMatcher([])


@pytest.mark.parametrize(
    ("keywords", "message"),
    [
        (["k"] * (MAX_KEYWORDS + 1), "has 51 keywords"),
        (["a" * (KEYWORD_MAX_CHARS + 1)], "101 characters long"),
        (["a" * 100_000], "100,000 characters long"),
    ],
)
def test_keywords_limits_rejected(keywords: list[str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        KeywordMatcher(keywords)


def test_keywords_at_limits_accepted() -> None:
    keywords = [f"{index:02d}" + "x" * (KEYWORD_MAX_CHARS - 2) for index in range(50)]
    assert len(keywords) == MAX_KEYWORDS
    matcher = KeywordMatcher(keywords)
    assert matcher.matches("say " + keywords[49])
    assert not matcher.matches("say " + keywords[49][:-1])


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("8", 8),
        ("-3", -3),
        ("+2", 2),
        ("2.5", 2.5),
        (".5", 0.5),
        ("1,000", None),
        ("1e3", None),
        ("nan", None),
        ("inf", None),
        ("1_000", None),
        ("٣", None),
        ("", None),
        ("9" * 5000, None),
        ("9" * 400, None),
        ("9" * 400 + ".5", None),
        (str(2**53), 2**53),
        (f"-{2**53}", -(2**53)),
        (f"{2**53}.0", 2.0**53),
        (str(2**53 + 1), None),
        (f"-{2**53 + 1}", None),
        ("9007199254740994.0", None),
    ],
)
def test_parse_number(text: str, expected: float | None) -> None:
    assert parse_number(text) == expected


def test_capture_number_and_string() -> None:
    number = CaptureRule("party_size", Regex(r"(\d+)"), number=True)
    whole = CaptureRule("note", None, number=False)
    assert number.extract("a table for 6 please") == 6
    assert number.extract("a table for six") is None
    assert whole.extract("  window seat \n") == "window seat"


def test_capture_number_too_large_fails() -> None:
    number = CaptureRule("party_size", Regex(r"(\d+)"), number=True)
    assert number.extract("9" * 400) is None
    assert number.extract(str(NUMBER_MAX_ABS)) == NUMBER_MAX_ABS


# Graphs


def two_step_definition() -> definitions_pb2.PathwayDefinition:
    return definitions_pb2.PathwayDefinition(
        start_node_id="ask",
        nodes=[
            Node(
                id="ask",
                text="Hi {{ request_data.name | default: 'there' }}, book a table?",
                edges=[
                    Edge(target_node_id="confirm", keywords=["yes", "sure"]),
                    Edge(target_node_id="bye", keywords=["no"]),
                ],
                fallback_text="Please answer yes or no, {{ request_data.name }}.",
            ),
            Node(
                id="confirm",
                text="Great, {{ request_data.name }}. How many people?",
                edges=[
                    Edge(
                        target_node_id="booked",
                        regex=r"\d",
                        captures=[
                            Capture(
                                variable="party_size", regex=r"(\d+)", type="NUMBER"
                            )
                        ],
                        expression="party_size <= 8",
                    ),
                    Edge(target_node_id="too_many", regex=r"\d"),
                ],
            ),
            Node(
                id="booked",
                text="Booked for {{ party_size }}.",
                end=True,
                end_reason="BOOKED",
            ),
            Node(id="too_many", text="Call us for groups.", end=True),
            Node(id="bye", text="Bye.", end=True),
            Node(id="unused", text="No edge leads here.", end=True),
        ],
    )


def test_graph_two_steps() -> None:
    graph = PathwayGraph.from_definition(two_step_definition())
    scope: dict[str, Any] = {"request_data": {"name": "Ada"}, "metadata": {}}
    node = graph.entry_node_id("")
    assert node == "ask"
    assert graph.render(node, scope) == "Hi Ada, book a table?"
    step = graph.step(node, "Yes please", {})
    assert step == Step(matched=True, target_node_id="confirm", captured={})
    assert graph.render(step.target_node_id, scope) == "Great, Ada. How many people?"
    assert not graph.is_end(step.target_node_id)


def test_graph_capture_feeds_expression() -> None:
    graph = PathwayGraph.from_definition(two_step_definition())
    small = graph.step("confirm", "we are 4", {})
    assert small.matched
    assert small.target_node_id == "booked"
    assert small.captured == {"party_size": 4}
    large = graph.step("confirm", "we are 12", {})
    assert large.target_node_id == "too_many"
    assert large.captured == {}
    assert graph.render("booked", {"party_size": 4}) == "Booked for 4."


def test_graph_unmatched_stays() -> None:
    graph = PathwayGraph.from_definition(two_step_definition())
    step = graph.step("ask", "maybe", {})
    assert step == Step(matched=False, target_node_id="ask", captured={})
    fallback = graph.render_fallback("ask", {"request_data": {"name": "Ada"}})
    assert fallback == "Please answer yes or no, Ada."
    assert graph.render_fallback("confirm", {}) == ""
    raw = graph.fallback_text("ask")
    assert raw == "Please answer yes or no, {{ request_data.name }}."
    assert graph.render_text(raw, {"request_data": {"name": "Bo"}}).endswith("Bo.")
    assert graph.fallback_text("confirm") == ""


def test_graph_end_reasons() -> None:
    graph = PathwayGraph.from_definition(two_step_definition())
    assert graph.is_end("booked")
    assert graph.end_reason("booked") == "BOOKED"
    assert graph.end_reason("bye") == "PATHWAY_END"
    assert graph.step("bye", "hello?", {}).matched is False


def test_graph_huge_number_does_not_match() -> None:
    """A NUMBER capture past 2**53 fails, so the next edge is taken instead."""
    capture = Capture(variable="amount", type="NUMBER")
    definition = definitions_pb2.PathwayDefinition(
        start_node_id="ask",
        nodes=[
            Node(
                id="ask",
                edges=[
                    Edge(target_node_id="stored", captures=[capture]),
                    Edge(target_node_id="other"),
                ],
            ),
            Node(id="stored", end=True),
            Node(id="other", end=True),
        ],
    )
    graph = PathwayGraph.from_definition(definition)

    huge = graph.step("ask", "9" * 400, {})
    assert huge == Step(matched=True, target_node_id="other", captured={})
    largest = graph.step("ask", str(2**53), {})
    assert largest.target_node_id == "stored"
    assert largest.captured == {"amount": 2**53}


def test_graph_edge_without_conditions_matches() -> None:
    definition = definitions_pb2.PathwayDefinition(
        start_node_id="a",
        nodes=[Node(id="a", edges=[Edge(target_node_id="b")]), Node(id="b", end=True)],
    )
    graph = PathwayGraph.from_definition(definition)
    assert graph.step("a", "", {}).target_node_id == "b"


def test_graph_expression_sees_reply_and_variables() -> None:
    definition = definitions_pb2.PathwayDefinition(
        start_node_id="a",
        nodes=[
            Node(
                id="a",
                edges=[
                    Edge(target_node_id="b", expression="reply == 'go' and tries < 3"),
                ],
            ),
            Node(id="b", end=True),
        ],
    )
    graph = PathwayGraph.from_definition(definition)
    assert graph.step("a", "go", {"tries": 1}).matched
    assert not graph.step("a", "go", {"tries": 3}).matched
    assert not graph.step("a", "stop", {"tries": 1}).matched


def test_graph_entry_node_override() -> None:
    graph = PathwayGraph.from_definition(two_step_definition())
    assert graph.entry_node_id("confirm") == "confirm"
    with pytest.raises(ParleyError) as caught:
        graph.entry_node_id("nowhere")
    assert caught.value.code == grpc.StatusCode.FAILED_PRECONDITION
    assert caught.value.reason == "START_NODE_NOT_FOUND"
    assert '"nowhere"' in caught.value.message


def test_graph_unknown_node_raises() -> None:
    graph = PathwayGraph.from_definition(two_step_definition())
    with pytest.raises(ParleyError) as caught:
        graph.render("gone", {})
    assert caught.value.reason == "PATHWAY_NODE_NOT_FOUND"


def test_graph_render_injection_in_values() -> None:
    graph = PathwayGraph.from_definition(two_step_definition())
    scope = {"request_data": {"name": "{{ ''.__class__.__mro__ }}"}}
    rendered = graph.render("confirm", scope)
    assert rendered == "Great, {{ ''.__class__.__mro__ }}. How many people?"


def invalid_pathway(definition: definitions_pb2.PathwayDefinition) -> ParleyError:
    with pytest.raises(ParleyError) as caught:
        PathwayGraph.from_definition(definition)
    error = caught.value
    assert error.code == grpc.StatusCode.INVALID_ARGUMENT
    assert error.reason == "INVALID_PATHWAY"
    return error


def broken(path: str, value: Any) -> definitions_pb2.PathwayDefinition:
    """Return the two-step definition with one field, named by `path`, replaced."""
    definition = two_step_definition()
    *parents, last = path.split(".")
    target: Any = definition
    for part in parents:
        name, _, index = part.partition("[")
        target = getattr(target, name)
        if index:
            target = target[int(index.rstrip("]"))]
    if isinstance(value, list):
        del getattr(target, last)[:]
        getattr(target, last).extend(value)
    else:
        setattr(target, last, value)
    return definition


@pytest.mark.parametrize(
    ("path", "value", "field"),
    [
        ("start_node_id", "", "definition.start_node_id"),
        ("start_node_id", "nowhere", "definition.start_node_id"),
        ("nodes[5].id", "", "definition.nodes[5].id"),
        ("nodes[5].id", "x" * 129, "definition.nodes[5].id"),
        ("nodes[5].id", "ask", "definition.nodes[5].id"),
        ("nodes[0].text", "Hi {{ name", "definition.nodes[0].text"),
        ("nodes[0].text", "{{ ''.__class__ }}", "definition.nodes[0].text"),
        (
            "nodes[0].fallback_text",
            "{{ a | upper }}",
            "definition.nodes[0].fallback_text",
        ),
        (
            "nodes[0].edges[1].target_node_id",
            "nowhere",
            "definition.nodes[0].edges[1].target_node_id",
        ),
        (
            "nodes[0].edges[0].keywords",
            ["yes", " "],
            "definition.nodes[0].edges[0].keywords[1]",
        ),
        ("nodes[1].edges[0].regex", "(a", "definition.nodes[1].edges[0].regex"),
        (
            "nodes[1].edges[0].expression",
            "__import__('os')",
            "definition.nodes[1].edges[0].expression",
        ),
        (
            "nodes[1].edges[0].captures[0].variable",
            "party-size",
            "definition.nodes[1].edges[0].captures[0].variable",
        ),
        (
            "nodes[1].edges[0].captures[0].variable",
            "reply",
            "definition.nodes[1].edges[0].captures[0].variable",
        ),
        (
            "nodes[1].edges[0].captures[0].variable",
            "class",
            "definition.nodes[1].edges[0].captures[0].variable",
        ),
        (
            "nodes[1].edges[0].captures[0].regex",
            "(?P<x",
            "definition.nodes[1].edges[0].captures[0].regex",
        ),
        (
            "nodes[1].edges[0].captures[0].type",
            "DATE",
            "definition.nodes[1].edges[0].captures[0].type",
        ),
        ("nodes[2].edges", [Edge(target_node_id="ask")], "definition.nodes[2].edges"),
        ("nodes[5].id", "a b\n\0", "definition.nodes[5].id"),
        ("nodes[5].id", "tab\there", "definition.nodes[5].id"),
        ("nodes[5].id", "no-break\u00a0space", "definition.nodes[5].id"),
        ("nodes[5].id", "zero\u200bwidth", "definition.nodes[5].id"),
        ("nodes[5].id", " ", "definition.nodes[5].id"),
        (
            "nodes[2].end_reason",
            "lower case; DROP TABLE",
            "definition.nodes[2].end_reason",
        ),
        ("nodes[2].end_reason", "booked", "definition.nodes[2].end_reason"),
        ("nodes[2].end_reason", "_BOOKED", "definition.nodes[2].end_reason"),
        ("nodes[2].end_reason", "1_BOOKED", "definition.nodes[2].end_reason"),
        ("nodes[2].end_reason", "BOOKED-OK", "definition.nodes[2].end_reason"),
        ("nodes[2].end_reason", "BOOKED\n", "definition.nodes[2].end_reason"),
        ("nodes[2].end_reason", "B" * 65, "definition.nodes[2].end_reason"),
        ("nodes[2].end_reason", "X" * 200_018, "definition.nodes[2].end_reason"),
        (
            "nodes[0].text",
            "x" * (TEXT_MAX_CHARS + 1),
            "definition.nodes[0].text",
        ),
        (
            "nodes[0].text",
            "{{ a }}" * 229,
            "definition.nodes[0].text",
        ),
        (
            "nodes[0].fallback_text",
            "x" * (TEXT_MAX_CHARS + 1),
            "definition.nodes[0].fallback_text",
        ),
        (
            "nodes[0].edges[0].keywords",
            ["k"] * (MAX_KEYWORDS + 1),
            "definition.nodes[0].edges[0].keywords",
        ),
        (
            "nodes[0].edges[0].keywords",
            ["yes", "a" * (KEYWORD_MAX_CHARS + 1)],
            "definition.nodes[0].edges[0].keywords[1]",
        ),
        (
            "nodes[1].edges[0].captures",
            [Capture(variable=f"v{index}") for index in range(21)],
            "definition.nodes[1].edges[0].captures",
        ),
    ],
)
def test_graph_invalid_names_element(path: str, value: Any, field: str) -> None:
    error = invalid_pathway(broken(path, value))
    assert [violation.field for violation in error.violations] == [field]
    assert error.message.startswith(field + " ")
    assert error.violations[0].description == error.message


def test_graph_invalid_quotes_value() -> None:
    error = invalid_pathway(broken("nodes[1].edges[0].regex", "(a"))
    assert '"(a"' in error.message
    assert "missing )" in error.message


def test_graph_empty_rejected() -> None:
    error = invalid_pathway(definitions_pb2.PathwayDefinition(start_node_id="a"))
    assert [violation.field for violation in error.violations] == ["definition.nodes"]


def test_graph_node_limit() -> None:
    nodes = [Node(id=f"n{index}", end=True) for index in range(501)]
    definition = definitions_pb2.PathwayDefinition(start_node_id="n0", nodes=nodes)
    error = invalid_pathway(definition)
    assert "maximum is 500" in error.message
    del definition.nodes[500]
    assert PathwayGraph.from_definition(definition).is_end("n499")


def test_graph_edge_limit() -> None:
    edges = [Edge(target_node_id="a") for _ in range(51)]
    definition = definitions_pb2.PathwayDefinition(
        start_node_id="a", nodes=[Node(id="a", edges=edges)]
    )
    error = invalid_pathway(definition)
    assert [violation.field for violation in error.violations] == [
        "definition.nodes[0].edges"
    ]
    del definition.nodes[0].edges[50]
    assert PathwayGraph.from_definition(definition).step("a", "x", {}).matched


def test_graph_reports_several_problems() -> None:
    definition = broken("nodes[1].edges[0].regex", "(a")
    definition.nodes[0].text = "{{ x"
    error = invalid_pathway(definition)
    fields = [violation.field for violation in error.violations]
    assert fields == ["definition.nodes[0].text", "definition.nodes[1].edges[0].regex"]
    assert "and 1 more problems" in error.message


def test_graph_caps_violations() -> None:
    nodes = [Node(id="a", text="{{ x") for _ in range(30)]
    definition = definitions_pb2.PathwayDefinition(start_node_id="a", nodes=nodes)
    error = invalid_pathway(definition)
    assert len(error.violations) == 10
    assert "more problems" in error.message


def test_graph_field_name_prefix() -> None:
    with pytest.raises(ParleyError) as caught:
        PathwayGraph.from_definition(
            broken("start_node_id", ""), field_name="version.definition"
        )
    fields = [violation.field for violation in caught.value.violations]
    assert fields == ["version.definition.start_node_id"]


def test_graph_limits_accepted_at_maximum() -> None:
    """Values exactly at each limit compile."""
    definition = two_step_definition()
    ask, confirm, booked = definition.nodes[0], definition.nodes[1], definition.nodes[2]
    ask.id = "é" + "!" * 126 + "😀"
    definition.start_node_id = ask.id
    ask.text = "x" * TEXT_MAX_CHARS
    ask.fallback_text = "y" * TEXT_MAX_CHARS
    keywords = [f"{index:02d}" + "k" * (KEYWORD_MAX_CHARS - 2) for index in range(50)]
    del ask.edges[0].keywords[:]
    ask.edges[0].keywords.extend(keywords)
    captures = [Capture(variable=f"v{index}") for index in range(MAX_CAPTURES_PER_EDGE)]
    confirm.edges[1].captures.extend(captures)
    booked.end_reason = "B" + "_9" * 31 + "Z"
    assert len(booked.end_reason) == 64

    graph = PathwayGraph.from_definition(definition)

    assert graph.start_node_id == ask.id
    assert graph.end_reason("booked") == booked.end_reason
    assert graph.step(ask.id, keywords[7], {}).target_node_id == "confirm"
    step = graph.step("confirm", "12 people", {})
    assert step.target_node_id == "too_many"
    assert len(step.captured) == MAX_CAPTURES_PER_EDGE


def padded_definition(size: int) -> definitions_pb2.PathwayDefinition:
    """Return a valid definition of exactly `size` serialized bytes."""
    nodes = [Node(id=f"n{index:03d}", end=True) for index in range(400)]
    definition = definitions_pb2.PathwayDefinition(start_node_id="n000", nodes=nodes)
    for node in definition.nodes:
        missing = size - definition.ByteSize()
        if missing <= 0:
            break
        # A text adds a tag and a length prefix to its characters, and the
        # node's own length prefix can grow, so a few rounds reach `size` exactly.
        for _ in range(5):
            chars = len(node.text) + size - definition.ByteSize()
            node.text = "x" * max(0, min(TEXT_MAX_CHARS, chars))
    return definition


def test_graph_size_limit() -> None:
    accepted = padded_definition(DEFINITION_MAX_BYTES)
    assert accepted.ByteSize() == DEFINITION_MAX_BYTES
    assert PathwayGraph.from_definition(accepted).is_end("n000")

    rejected = padded_definition(DEFINITION_MAX_BYTES + 1)
    assert rejected.ByteSize() == DEFINITION_MAX_BYTES + 1
    error = invalid_pathway(rejected)
    assert [violation.field for violation in error.violations] == ["definition"]
    assert "262,145 bytes" in error.message
    assert "maximum is 262,144 bytes" in error.message


def test_graph_oversized_keywords_rejected_fast() -> None:
    """Three megabytes of keywords are rejected by size, before any compiling."""
    edge = Edge(target_node_id="a", keywords=["a" * 100_000] * 30)
    definition = definitions_pb2.PathwayDefinition(
        start_node_id="a", nodes=[Node(id="a", edges=[edge])]
    )
    error = invalid_pathway(definition)
    assert [violation.field for violation in error.violations] == ["definition"]
