"""What is asked of an answer and how it is checked: the response format, JSON + schema validation, id checks.

An answer is usable only when it is JSON that validates against the spec's pydantic model, does not echo the
template's placeholders, and passes the spec's extra ``check``; anything else gets an outcome naming why
(malformed, truncated, incomplete, refusal, invalid) and is never guessed at.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from pipelines.llm.types import CallSpec

_PLACEHOLDER_RE = re.compile(r'"(<[^"<>\n]{1,60}>)"')
# a quoted form to fill in, e.g. "A high score indicates the response ...; A low score indicates the response ..."
_ELLIPSIS_RE = re.compile(r'"([^"]{0,160}(?:\.\.\.|\u2026)[^"]{0,160})"')
_BRACKETED_RE = re.compile(r"^<[^<>]{1,60}>$")
_SPACE_RE = re.compile(r"\s+")


def response_format(spec: CallSpec, mode: str) -> dict[str, Any]:
    """The ``response_format`` of a request in one of the dialects of :mod:`pipelines.llm.dialect`."""
    if mode == "json_schema":
        return {
            "type": "json_schema",
            "json_schema": {"name": spec.template.replace("-", "_"), "schema": answer_schema(spec), "strict": False},
        }
    if mode == "json_object_schema":
        return {"type": "json_object", "schema": answer_schema(spec)}
    return {"type": "json_object"}


def answer_schema(spec: CallSpec) -> dict[str, Any]:
    """The JSON schema sent with a request: the spec's pydantic schema, bounded when its check is an
    :class:`IdsCheck`: exactly one entry per id (``minItems`` = ``maxItems``, the entry's ``id`` an ``enum`` of the
    ids). A server that turns the schema into a grammar (llama.cpp) then cannot let a small model run on past the
    last entry; a server that only reads it loses nothing."""
    schema = copy.deepcopy(spec.schema.model_json_schema())
    chk = spec.check
    if not isinstance(chk, IdsCheck) or not chk.ids:
        return schema
    prop = schema.get("properties", {}).get(chk.field_name)
    if not prop or prop.get("type") != "array":
        return schema
    prop["minItems"] = prop["maxItems"] = len(chk.ids)
    entry = schema.get("$defs", {}).get(str(prop.get("items", {}).get("$ref", "")).rsplit("/", 1)[-1])
    if entry and "id" in entry.get("properties", {}):
        entry["properties"]["id"] = {**entry["properties"]["id"], "enum": list(chk.ids)}
    return schema


def _instructions(spec: CallSpec) -> str:
    """The instructions of the spec's last message: the text before its first data block."""
    content = spec.messages[-1]["content"] if spec.messages else ""
    return content.split("<<<BEGIN ", 1)[0]


def placeholders(spec: CallSpec) -> set[str]:
    """The quoted ``"<...>"`` placeholders of the spec's answer template (e.g. ``"<sub-domain>"``), read from the
    instructions only: text inside the data blocks never counts."""
    return set(_PLACEHOLDER_RE.findall(_instructions(spec)))


def _squash(text: str) -> str:
    return _SPACE_RE.sub("", text).lower().replace("\u2026", "...")


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from _strings(v)
    elif isinstance(value, list | tuple):
        for v in value:
            yield from _strings(v)


def template_echo(spec: CallSpec, data: Any) -> str | None:
    """Why ``data`` (a parsed answer) only copies the template, or None: a string that is one of the template's
    placeholders (with or without its brackets), any other bare ``<...>`` placeholder, or a quoted form of the
    instructions still holding its ellipses (``"A high score indicates the response ...; A low score ..."``)."""
    echoes = {p.lower() for p in placeholders(spec)}
    echoes |= {p.strip("<>").strip() for p in echoes}
    forms = {_squash(f) for f in _ELLIPSIS_RE.findall(_instructions(spec))}  # quoted forms to fill in
    for text in _strings(data):
        t = text.strip()
        if t.lower() in echoes or _BRACKETED_RE.match(t) or (t and _squash(t) in forms):
            return f"the answer echoes the template's placeholder {t!r} instead of answering"
    return None


def validate_answer(spec: CallSpec, resp: Any) -> tuple[str, str | None, Any, str | None]:
    """(outcome, raw text, parsed object, error) of a chat completion; the outcome is ``ok`` or why it is unusable."""
    if not getattr(resp, "choices", None):
        return "malformed", None, None, "no choices in the response"
    choice = resp.choices[0]
    msg = choice.message
    raw = getattr(msg, "content", None)
    refusal = getattr(msg, "refusal", None)
    if refusal:
        return "refusal", refusal, None, "the model refused"
    if choice.finish_reason == "length":
        return "truncated", raw, None, "finish_reason=length"
    if choice.finish_reason == "content_filter":
        return "refusal", raw, None, "finish_reason=content_filter"
    if not raw:
        return "malformed", raw, None, "empty content"
    text = raw.strip()
    if text.startswith("```"):
        text = text.strip("`")
        text = text[text.find("{") :] if "{" in text else text
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        return "malformed", raw, None, f"invalid JSON: {exc}"
    echo = template_echo(spec, data)
    if echo:
        return "invalid", raw, None, f"template echo: {echo}"
    try:
        parsed = spec.schema.model_validate(data)
    except ValidationError as exc:
        return "incomplete", raw, None, f"schema: {_first_error(exc)}"
    if spec.check is not None:
        problem = spec.check(parsed)
        if problem:
            return "incomplete", raw, None, problem
    return "ok", raw, parsed, None


def _first_error(exc: ValidationError) -> str:
    """The first error of a validation failure, with where it is (pydantic's first line names only the model)."""
    errs = exc.errors()
    if not errs:
        return str(exc).splitlines()[0]
    e = errs[0]
    where = ".".join(str(x) for x in e.get("loc", ()))
    return f"{where}: {e.get('msg', '')} (got {e.get('input')!r})"[:300]


@dataclass(frozen=True)
class IdsCheck:
    """A ``CallSpec.check``: the entries of the answer's list ``field_name`` carry each of ``ids`` exactly once; then
    the optional ``then`` check. :func:`answer_schema` reads it to bound the schema sent."""

    field_name: str
    ids: tuple[str, ...]
    then: Callable[[Any], str | None] | None = None

    def __call__(self, parsed: Any) -> str | None:
        got = [e.id for e in getattr(parsed, self.field_name)]
        if len(got) != len(set(got)):
            return "duplicate ids"
        expected = set(self.ids)
        if set(got) != expected:
            missing = sorted(expected - set(got))
            extra = sorted(set(got) - expected)
            return f"ids missing {missing[:5]} extra {extra[:5]}"
        return self.then(parsed) if self.then is not None else None


def ids_check(field_name: str, ids: Sequence[str], then: Callable[[Any], str | None] | None = None) -> IdsCheck:
    """An :class:`IdsCheck` of the answer's list ``field_name`` against ``ids`` (then ``then``)."""
    return IdsCheck(field_name, tuple(ids), then)
