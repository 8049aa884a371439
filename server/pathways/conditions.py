"""Edge conditions on a user's reply: keywords, regular expressions, expressions, captures.

Regular expressions are written by pathway authors and run on user text, so
they use RE2 (the `google-re2` package), which matches in time linear in the
text length and has no backtracking. RE2 syntax has no backreferences or
lookaround; such patterns are rejected when the pathway is loaded.

Expressions are a small language checked against a whitelist of Python AST
nodes and evaluated by this module, never by `eval`: names, constants,
and/or/not, unary minus, comparisons, and list or tuple literals after
`in`/`not in`. There are no calls, attributes, subscripts or arithmetic.
"""

from __future__ import annotations

import ast
import functools
import keyword
import operator
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import re2  # type: ignore[import-untyped]

EXPRESSION_MAX_CHARS = 500
REGEX_MAX_CHARS = 1_000
# Keyword limits bound the time to compile an edge's keyword pattern.
MAX_KEYWORDS = 50
KEYWORD_MAX_CHARS = 100
# A protobuf Struct stores numbers as doubles, which represent every integer
# up to 2**53 exactly but not all larger ones.
NUMBER_MAX_ABS = 2**53
CAPTURE_TYPES = ("STRING", "NUMBER")

# Names the caller sets itself in the expression variables or template scope,
# which a capture would shadow or be hidden by.
RESERVED_VARIABLES = frozenset({"reply", "request_data", "metadata"})

# Bounds the recursion of checking and evaluating; 500 characters of unary
# minus would otherwise nest 499 levels deep.
_EXPRESSION_MAX_DEPTH = 50

_RE2_OPTIONS = re2.Options()
# RE2 otherwise prints every rejected pattern to stderr through absl logging.
_RE2_OPTIONS.log_errors = False

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_NUMBER = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)")


class KeywordMatcher:
    """Case-insensitive match of any keyword or phrase as whole words in a text."""

    def __init__(self, keywords: Sequence[str]) -> None:
        """Check `keywords`; raises ValueError if there are none, too many, or one is invalid.

        A keyword is invalid when it is blank or longer than KEYWORD_MAX_CHARS.
        The pattern is compiled on the first match, so a pathway near its size
        limit, which can have over 20,000 keyword edges, loads without
        compiling them all.
        """
        if not keywords:
            raise ValueError("keyword list is empty; send at least one word or phrase")
        if len(keywords) > MAX_KEYWORDS:
            raise ValueError(
                f"keyword list has {len(keywords):,} keywords; "
                f"the maximum is {MAX_KEYWORDS}"
            )
        alternatives = [_keyword_pattern(word) for word in keywords]
        # Every keyword is escaped, so the pattern has no author-controlled
        # quantifiers and matching takes time of order text length x keyword length.
        joined = "|".join(alternatives)
        self._source = rf"(?<!\w)(?:{joined})(?!\w)"

    @functools.cached_property
    def _pattern(self) -> re.Pattern[str]:
        # The keywords are escaped, so compiling cannot fail.
        return re.compile(self._source, re.IGNORECASE)

    def matches(self, text: str) -> bool:
        """Return whether `text` contains a keyword not joined to other letters or digits."""
        return self._pattern.search(text) is not None


def _check_keyword(word: str) -> None:
    """Raise ValueError if `word` is blank or longer than KEYWORD_MAX_CHARS."""
    if len(word) > KEYWORD_MAX_CHARS:
        raise ValueError(
            f"keyword is {len(word):,} characters long; "
            f"the maximum is {KEYWORD_MAX_CHARS}"
        )
    if not word.strip():
        raise ValueError("keyword is empty; send a word or phrase")


def _keyword_pattern(word: str) -> str:
    _check_keyword(word)
    words = word.split()
    # Any run of whitespace in the reply matches a space in a phrase.
    return r"\s+".join(re.escape(part) for part in words)


class Regex:
    """An RE2 pattern, matched in time linear in the text length."""

    def __init__(self, pattern: str) -> None:
        """Compile `pattern`; raises ValueError if it is too long or not valid RE2 syntax."""
        if len(pattern) > REGEX_MAX_CHARS:
            raise ValueError(
                f"regular expression is {len(pattern):,} characters long; "
                f"the maximum is {REGEX_MAX_CHARS:,}"
            )
        try:
            self._compiled = re2.compile(pattern, _RE2_OPTIONS)
        except re2.error as error:
            raise ValueError(
                f"{_re2_message(error)} (patterns use RE2 syntax, which has no "
                "backreferences or lookaround)"
            ) from None
        self.pattern = pattern

    def matches(self, text: str) -> bool:
        """Return whether the pattern matches anywhere in `text`."""
        return self._compiled.search(text) is not None

    def extract(self, text: str) -> str | None:
        """Return the first group of the first match, or the whole match without groups.

        None when nothing matches or the first group took no part in the match.
        """
        match = self._compiled.search(text)
        if match is None:
            return None
        group = match.group(1) if self._compiled.groups else match.group(0)
        return group if isinstance(group, str) else None


def _re2_message(error: Exception) -> str:
    """Decode RE2's message, which the binding passes as bytes."""
    detail = error.args[0] if error.args else error
    if isinstance(detail, bytes):
        return detail.decode("utf-8", "replace")
    return str(detail)


def check_variable_name(name: str) -> None:
    """Raise ValueError unless `name` is an ASCII identifier usable in expressions."""
    if not _IDENTIFIER.fullmatch(name):
        raise ValueError(
            "variable name must start with a letter or underscore and contain only "
            "ASCII letters, digits and underscores"
        )
    if keyword.iskeyword(name):
        raise ValueError(
            "variable name is a Python keyword, so expressions cannot use it"
        )
    if name in RESERVED_VARIABLES:
        reserved = ", ".join(sorted(RESERVED_VARIABLES))
        raise ValueError(
            f"variable name is reserved; the reserved names are {reserved}"
        )


@dataclass(frozen=True)
class CaptureRule:
    """A rule storing one variable from a reply; `regex` None takes the whole reply."""

    variable: str
    regex: Regex | None
    number: bool

    def extract(self, reply: str) -> str | int | float | None:
        """Return the captured value, stripped of surrounding whitespace.

        None means the capture failed, so the edge does not match: the pattern
        found nothing, or a NUMBER capture is not a plain decimal number or its
        absolute value exceeds 2**53.
        """
        if self.regex is None:
            text: str | None = reply
        else:
            text = self.regex.extract(reply)
        if text is None:
            return None
        text = text.strip()
        return parse_number(text) if self.number else text


def parse_number(text: str) -> int | float | None:
    """Parse decimal text such as `8`, `-3` or `2.5`; None for anything else.

    Thousands separators, exponents and non-ASCII digits are not accepted, and
    neither are numbers whose absolute value exceeds NUMBER_MAX_ABS (2**53).
    """
    if not _NUMBER.fullmatch(text):
        return None
    number: int | float
    if "." in text:
        number = float(text)
    else:
        try:
            number = int(text)
        except ValueError:
            # Python refuses to convert integers of more than 4,300 digits.
            return None
    if abs(number) > NUMBER_MAX_ABS:
        return None
    return number


@dataclass(frozen=True, eq=False)
class Expression:
    """A checked expression; build it with compile_expression."""

    text: str
    tree: ast.expr

    def evaluate(self, variables: Mapping[str, object]) -> bool:
        """Evaluate against `variables`, where an unknown name is None.

        Mismatched types make a comparison false instead of raising TypeError.
        """
        return bool(_evaluate(self.tree, variables))


def compile_expression(text: str) -> Expression:
    """Parse and check `text`; raises ValueError for syntax or any node outside the whitelist."""
    if len(text) > EXPRESSION_MAX_CHARS:
        raise ValueError(
            f"expression is {len(text):,} characters long; "
            f"the maximum is {EXPRESSION_MAX_CHARS}"
        )
    source = text.strip()
    if not source:
        raise ValueError("expression is empty")
    try:
        tree = ast.parse(source, mode="eval")
    except SyntaxError as error:
        raise ValueError(
            f"invalid expression syntax at column {error.offset}: {error.msg}"
        ) from None
    except (ValueError, RecursionError, MemoryError):
        raise ValueError("invalid expression syntax") from None
    _check_node(tree.body, 1)
    return Expression(text, tree.body)


_ORDERING: dict[type[ast.cmpop], Callable[[Any, Any], bool]] = {
    ast.Lt: operator.lt,
    ast.LtE: operator.le,
    ast.Gt: operator.gt,
    ast.GtE: operator.ge,
}
_COMPARISONS: tuple[type[ast.cmpop], ...] = (
    ast.Eq,
    ast.NotEq,
    ast.In,
    ast.NotIn,
    *_ORDERING,
)
_CONSTANT_TYPES = (str, int, float, bool, type(None))
_NODE_NAMES = {
    ast.Call: "a function call",
    ast.Attribute: "attribute access",
    ast.Subscript: "a subscript",
    ast.Lambda: "a lambda",
    ast.BinOp: "an arithmetic operator",
    ast.ListComp: "a comprehension",
    ast.SetComp: "a comprehension",
    ast.DictComp: "a comprehension",
    ast.GeneratorExp: "a comprehension",
    ast.List: "a list literal outside 'in'",
    ast.Tuple: "a tuple literal outside 'in'",
    ast.Dict: "a dict literal",
    ast.Set: "a set literal",
    ast.NamedExpr: "an assignment expression",
    ast.IfExp: "a conditional expression",
    ast.JoinedStr: "an f-string",
}


def _check_node(node: ast.expr, depth: int) -> None:
    if depth > _EXPRESSION_MAX_DEPTH:
        raise ValueError(
            f"expression is nested more than {_EXPRESSION_MAX_DEPTH} levels"
        )
    if isinstance(node, ast.Name):
        return
    if isinstance(node, ast.Constant) and isinstance(node.value, _CONSTANT_TYPES):
        return
    if isinstance(node, ast.BoolOp):
        for value in node.values:
            _check_node(value, depth + 1)
        return
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not | ast.USub):
        _check_node(node.operand, depth + 1)
        return
    if isinstance(node, ast.Compare):
        _check_compare(node, depth)
        return
    _reject(node)


def _check_compare(node: ast.Compare, depth: int) -> None:
    _check_node(node.left, depth + 1)
    for op, comparator in zip(node.ops, node.comparators, strict=True):
        if not isinstance(op, _COMPARISONS):
            raise ValueError(
                f"comparison operator {type(op).__name__} is not allowed; "
                "use == != < <= > >= in or not in"
            )
        is_literal = isinstance(comparator, ast.List | ast.Tuple)
        if is_literal and isinstance(op, ast.In | ast.NotIn):
            _check_literal_items(comparator)
        else:
            _check_node(comparator, depth + 1)


def _check_literal_items(literal: ast.expr) -> None:
    assert isinstance(literal, ast.List | ast.Tuple)
    for item in literal.elts:
        value = item
        if isinstance(item, ast.UnaryOp) and isinstance(item.op, ast.USub):
            value = item.operand
        if not (
            isinstance(value, ast.Constant) and isinstance(value.value, _CONSTANT_TYPES)
        ):
            raise ValueError(
                f"list item at column {item.col_offset + 1} is not a constant; "
                "lists after 'in' may hold only strings, numbers, true/false and None"
            )


def _reject(node: ast.expr) -> None:
    name = _NODE_NAMES.get(type(node), f"{type(node).__name__} syntax")
    if isinstance(node, ast.Constant):
        name = f"a {type(node.value).__name__} constant"
    raise ValueError(
        f"{name} at column {node.col_offset + 1} is not allowed; expressions may use "
        "only names, constants, and/or/not, unary minus, comparisons, "
        "and list literals after 'in'"
    )


def _evaluate(node: ast.expr, variables: Mapping[str, object]) -> object:
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, ast.Name):
        return variables.get(node.id)
    if isinstance(node, ast.BoolOp):
        results = (bool(_evaluate(value, variables)) for value in node.values)
        return all(results) if isinstance(node.op, ast.And) else any(results)
    if isinstance(node, ast.UnaryOp):
        operand = _evaluate(node.operand, variables)
        if isinstance(node.op, ast.Not):
            return not bool(operand)
        if _kind(operand) != "number":
            return None  # Negating a non-number gives None instead of raising.
        assert isinstance(operand, int | float)
        return -operand
    if isinstance(node, ast.Compare):
        return _evaluate_compare(node, variables)
    if isinstance(node, ast.List | ast.Tuple):
        return [_evaluate(item, variables) for item in node.elts]
    raise AssertionError(f"unchecked expression node {type(node).__name__}")


def _evaluate_compare(node: ast.Compare, variables: Mapping[str, object]) -> bool:
    """Evaluate a chain like `1 < x <= 5` pairwise, as Python does."""
    left = _evaluate(node.left, variables)
    for op, comparator in zip(node.ops, node.comparators, strict=True):
        right = _evaluate(comparator, variables)
        if not _compare(op, left, right):
            return False
        left = right
    return True


def _compare(op: ast.cmpop, left: object, right: object) -> bool:
    """Compare two values; operands of incompatible types give False for every operator but !=."""
    if isinstance(op, ast.Eq):
        return _equal(left, right)
    if isinstance(op, ast.NotEq):
        return not _equal(left, right)
    if isinstance(op, ast.In | ast.NotIn):
        found = _contains(right, left)
        if found is None:
            return False
        return found if isinstance(op, ast.In) else not found
    kind = _kind(left)
    if kind not in ("number", "str") or kind != _kind(right):
        return False
    return _ORDERING[type(op)](left, right)


def _contains(container: object, item: object) -> bool | None:
    """Return membership, or None when `container` cannot hold `item`."""
    if isinstance(container, str | dict):
        return item in container if isinstance(item, str) else None
    if isinstance(container, list | tuple):
        return any(_equal(item, element) for element in container)
    return None


def _equal(left: object, right: object) -> bool:
    """Compare like JSON values: `true` is not `1`, but `1` equals `1.0`."""
    return _kind(left) == _kind(right) and left == right


def _kind(value: object) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, list | tuple):
        return "list"
    return type(value).__name__
