"""What the LLM client takes and gives: call specs, call results, one HTTP attempt, run statistics, errors."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel


@dataclass
class CallSpec:
    """One logical LLM call. ``check`` returns an error string when a schema-valid answer is still unusable."""

    stage: str
    template: str
    template_version: str
    messages: list[dict[str, str]]
    schema: type[BaseModel]
    item_id: str | None = None
    concepts: Sequence[str] | None = None
    check: Callable[[Any], str | None] | None = None
    expected_output_tokens: int = 200  # what a good answer needs; sizes the output cap (limits.output_cap)
    max_output_tokens: int | None = None  # an explicit output cap, for free-text answers
    key: str = ""

    def prompt_chars(self) -> int:
        return sum(len(m["content"]) for m in self.messages)


@dataclass
class CallResult:
    spec: CallSpec
    status: str  # ok | failed | skipped (budget) | projected (dry run)
    parsed: Any = None  # the validated pydantic object (ok only)
    raw: str | None = None
    error: str | None = None
    from_cache: bool = False

    @property
    def ok(self) -> bool:
        return self.status == "ok"


@dataclass
class Attempt:
    """One HTTP request of a call: its outcome (``ok`` or why not) and, when the endpoint answered, the answer."""

    outcome: str  # ok | malformed | truncated | incomplete | refusal | http_<status> | timeout | ...
    error: str | None
    latency_ms: float
    http_status: int | None = None
    retry_after: float | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    answered: bool = False  # the endpoint returned a completion (``raw`` is its text)
    raw: str | None = None
    parsed: Any = None


@dataclass
class RunStats:
    calls: int = 0  # HTTP attempts
    logical_calls: int = 0  # specs answered by the endpoint (ok or failed)
    cache_hits: int = 0
    failed: int = 0
    skipped: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
    projected_calls: int = 0
    projected_prompt_tokens: int = 0
    projected_completion_tokens: int = 0
    projected_cost_usd: float = 0.0
    by_stage: dict[str, dict[str, float]] = field(default_factory=lambda: defaultdict(lambda: defaultdict(float)))

    def add_stage(self, stage: str, **kw: float) -> None:
        for k, v in kw.items():
            self.by_stage[stage][k] += v

    def count_attempt(self, stage: str, prompt_tokens: int, completion_tokens: int, cost: float) -> None:
        """Count one HTTP attempt and what it spent."""
        self.calls += 1
        self.prompt_tokens += prompt_tokens
        self.completion_tokens += completion_tokens
        self.cost_usd += cost
        self.add_stage(stage, calls=1, prompt_tokens=prompt_tokens, completion_tokens=completion_tokens, cost_usd=cost)

    def count_projection(self, stage: str, prompt_tokens: int, completion_tokens: int, cost: float) -> None:
        """Count one call a dry run would make and its estimated spend."""
        self.projected_calls += 1
        self.projected_prompt_tokens += prompt_tokens
        self.projected_completion_tokens += completion_tokens
        self.projected_cost_usd += cost
        self.add_stage(
            stage,
            projected_calls=1,
            projected_prompt_tokens=prompt_tokens,
            projected_completion_tokens=completion_tokens,
            projected_cost_usd=cost,
        )

    def usage(self) -> str:
        """``calls N (cache hits, failed, skipped), tokens in / out, $cost``: what a finished run used."""
        return (
            f"calls {self.calls} (cache hits {self.cache_hits}, failed {self.failed}, skipped {self.skipped}), "
            f"tokens {self.prompt_tokens} in / {self.completion_tokens} out, ${self.cost_usd:.4f}"
        )

    def projection(self) -> str:
        """``N calls, X input + Y output tokens, $cost``: what a dry run projects."""
        return (
            f"{self.projected_calls} calls, {self.projected_prompt_tokens} input + "
            f"{self.projected_completion_tokens} output tokens, ${self.projected_cost_usd:.4f}"
        )


class FatalLLMError(RuntimeError):
    """Errors no retry can fix (authentication, unknown model, bad URL)."""
