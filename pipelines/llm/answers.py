"""What is asked of an answer and how it is checked: the response format, JSON + schema validation, id checks.

An answer is usable only when it is JSON that validates against the spec's pydantic model and passes the spec's
extra ``check``; anything else gets an outcome naming why (malformed, truncated, incomplete, refusal) and is
never guessed at.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any

from pydantic import ValidationError

from pipelines.llm.types import CallSpec


def response_format(spec: CallSpec, mode: str) -> dict[str, Any]:
    """The ``response_format`` of a request: the spec's JSON schema (``json_schema`` mode) or plain JSON mode."""
    if mode == "json_schema":
        return {
            "type": "json_schema",
            "json_schema": {
                "name": spec.template.replace("-", "_"),
                "schema": spec.schema.model_json_schema(),
                "strict": False,
            },
        }
    return {"type": "json_object"}


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
    try:
        parsed = spec.schema.model_validate(data)
    except ValidationError as exc:
        return "incomplete", raw, None, f"schema: {str(exc).splitlines()[0]}"
    if spec.check is not None:
        problem = spec.check(parsed)
        if problem:
            return "incomplete", raw, None, problem
    return "ok", raw, parsed, None


def ids_check(field_name: str, ids: Sequence[str]) -> Callable[[Any], str | None]:
    """A ``CallSpec.check``: the entries of the answer's list ``field_name`` carry each of ``ids`` exactly once."""
    expected = set(ids)

    def check(parsed: Any) -> str | None:
        got = [e.id for e in getattr(parsed, field_name)]
        if len(got) != len(set(got)):
            return "duplicate ids"
        if set(got) != expected:
            missing = sorted(expected - set(got))
            extra = sorted(set(got) - expected)
            return f"ids missing {missing[:5]} extra {extra[:5]}"
        return None

    return check
