"""Node text templates: `{{ path }}` and `{{ path | default: 'text' }}`.

A path is dot-separated keys and list indexes (`request_data.customer.first_name`,
`items.0.name`) looked up in a scope of JSON-like data (dict, list, str, int,
float, bool, None). Lookups only read dict keys and list items, so a template
cannot reach Python attributes, call anything or loop. Rendering is one pass
over the parsed template, so text that comes from a value is never parsed
again: a value "{{ x }}" is sent as those characters.

Values render as text: strings unchanged, whole floats as integers (`3.0` is
"3"), booleans as "true"/"false", dicts and lists as compact JSON. A missing
value, None or "" renders as the default text, or as "" without a default.
There is no escape for a literal "{{" in node text.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass

RENDERED_MAX_CHARS = 1_600

# One path segment: letters, digits and underscores. Segments starting with
# "__" are rejected so that Python dunder names never appear in a template.
_SEGMENT = re.compile(r"[A-Za-z0-9_]+")
_FILTER = re.compile(r"\s*(?P<name>[A-Za-z_]*)\s*(?P<colon>:?)\s*")


class TemplateError(ValueError):
    """A malformed template; `position` is the 0-based index of the bad tag."""

    def __init__(self, message: str, position: int) -> None:
        super().__init__(f"{message} (at index {position})")
        self.position = position


class RenderedTextTooLongError(ValueError):
    """A rendered text longer than RENDERED_MAX_CHARS; no reply should be sent."""

    def __init__(self, length: int) -> None:
        super().__init__(
            f"rendered text is at least {length:,} characters long; the maximum is "
            f"{RENDERED_MAX_CHARS:,}, so shorten the node text or the values it inserts"
        )
        self.length = length


@dataclass(frozen=True)
class _Tag:
    path: tuple[str, ...]
    default: str | None


@dataclass(frozen=True)
class Template:
    """A parsed template: literal text and tags in order."""

    parts: tuple[str | _Tag, ...]

    def render(self, scope: Mapping[str, object]) -> str:
        """Render against `scope`; raises RenderedTextTooLongError past 1,600 characters.

        Raises TypeError when a looked-up value is not JSON-like data.
        """
        pieces: list[str] = []
        length = 0
        for part in self.parts:
            text = part if isinstance(part, str) else _render_tag(part, scope)
            length += len(text)
            if length > RENDERED_MAX_CHARS:
                raise RenderedTextTooLongError(length)
            pieces.append(text)
        return "".join(pieces)


def parse_template(text: str) -> Template:
    """Parse `text` into a Template; raises TemplateError for a malformed tag."""
    parts: list[str | _Tag] = []
    literal_chars = 0
    position = 0
    while position < len(text):
        start = text.find("{{", position)
        if start < 0:
            parts.append(text[position:])
            literal_chars += len(text) - position
            break
        if start > position:
            parts.append(text[position:start])
            literal_chars += start - position
        tag, position = _parse_tag(text, start)
        parts.append(tag)
    if literal_chars > RENDERED_MAX_CHARS:
        raise TemplateError(
            f"the text outside tags is {literal_chars:,} characters long, so every "
            f"rendering would exceed the maximum of {RENDERED_MAX_CHARS:,}",
            0,
        )
    return Template(tuple(parts))


def validate_template(text: str) -> None:
    """Raise TemplateError (a ValueError) with the tag's index if `text` is malformed."""
    parse_template(text)


def render_template(text: str, scope: Mapping[str, object]) -> str:
    """Parse and render `text`; see Template.render for the errors raised."""
    return parse_template(text).render(scope)


def _parse_tag(text: str, start: int) -> tuple[_Tag, int]:
    """Parse the tag opening at `start`; return it and the index after its "}}"."""
    content_start = start + 2
    close = _find_close(text, content_start)
    if close < 0:
        raise TemplateError("'{{' has no closing '}}'", start)
    content = text[content_start:close]
    path_text, pipe, filter_text = content.partition("|")
    path = _parse_path(path_text, start)
    default = _parse_default(filter_text, start) if pipe else None
    return _Tag(path, default), close + 2


def _find_close(text: str, position: int) -> int:
    """Return the index of the "}}" closing a tag, skipping quoted default text."""
    quote: str | None = None
    after_pipe = False
    index = position
    while index < len(text):
        char = text[index]
        if quote is not None:
            if char == quote:
                quote = None
        elif char == "|":
            after_pipe = True
        elif after_pipe and char in "'\"":
            quote = char
        elif text.startswith("}}", index):
            return index
        index += 1
    return -1


def _parse_path(path_text: str, position: int) -> tuple[str, ...]:
    stripped = path_text.strip()
    if not stripped:
        raise TemplateError("tag has no variable path", position)
    segments = tuple(stripped.split("."))
    for segment in segments:
        if not _SEGMENT.fullmatch(segment):
            raise TemplateError(
                f"invalid path {stripped!r}: each dot-separated part must be "
                "letters, digits or underscores",
                position,
            )
        if segment.startswith("__"):
            raise TemplateError(
                f"invalid path {stripped!r}: names starting with '__' are not allowed",
                position,
            )
    return segments


def _parse_default(filter_text: str, position: int) -> str:
    """Parse `default: 'text'` (single or double quotes) and return the text."""
    head = _FILTER.match(filter_text)
    assert head is not None  # every part of the pattern can match empty text
    name = head.group("name")
    if not name:
        raise TemplateError("'|' must be followed by a filter name", position)
    if name != "default":
        raise TemplateError(
            f"unknown filter {name!r}; the only filter is default: 'text'", position
        )
    rest = filter_text[head.end() :]
    if not head.group("colon") or not rest or rest[0] not in "'\"":
        raise TemplateError(
            "the default filter needs a quoted text, as in default: 'friend'",
            position,
        )
    end = rest.find(rest[0], 1)
    if end < 0 or rest[end + 1 :].strip():
        raise TemplateError(
            "the default filter takes one quoted text and nothing after it", position
        )
    return rest[1:end]


def _render_tag(tag: _Tag, scope: Mapping[str, object]) -> str:
    value = _lookup(scope, tag.path)
    text = format_value(value, ".".join(tag.path))
    if text == "" and tag.default is not None:
        return tag.default
    return text


def _lookup(scope: Mapping[str, object], path: tuple[str, ...]) -> object:
    """Follow `path` through dict keys and list indexes; None when any step is missing."""
    current: object = scope.get(path[0])
    for segment in path[1:]:
        if isinstance(current, dict):
            current = current.get(segment)
        elif isinstance(current, list) and segment.isdigit() and len(segment) <= 9:
            index = int(segment)
            current = current[index] if index < len(current) else None
        else:
            return None
    return current


def format_value(value: object, path: str) -> str:
    """Render one JSON-like value as text; raises TypeError for other types."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else repr(value)
    if isinstance(value, dict | list):
        compact = _whole_floats_to_int(value)
        return json.dumps(compact, separators=(",", ":"), ensure_ascii=False)
    raise TypeError(
        f"template value at {path!r} is a {type(value).__name__}; "
        "only JSON-like data (dict, list, str, int, float, bool, None) can be rendered"
    )


def _whole_floats_to_int(value: object) -> object:
    if isinstance(value, dict):
        return {key: _whole_floats_to_int(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_whole_floats_to_int(item) for item in value]
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value
