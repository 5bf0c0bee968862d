"""LLM settings: a config file (``preflens.toml``) overridden by environment variables.

Resolution order (later wins): built-in defaults < config file < environment.

* config file: ``$PREFLENS_CONFIG`` if set, else ``./preflens.toml``, else ``<warehouse>/../preflens.toml``;
  the settings live in its ``[llm]`` table (``[llm.prices]`` for the price table).
* environment: ``PREFLENS_LLM_BASE_URL``, ``PREFLENS_LLM_MODEL``, ``PREFLENS_LLM_API_KEY_ENV`` (the *name* of
  the variable holding the key; default ``OPENAI_API_KEY``), ``PREFLENS_LLM_CONCURRENCY``, ``PREFLENS_LLM_TIMEOUT_S``.

The key itself is never stored in the config object's repr, the cache, the ledger or any table: only
the name of the variable it came from is.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

# USD per 1M tokens (input, output). Defaults for a few well-known hosted models, as list prices when
# this was written; override or extend them in ``[llm.prices]``. Unknown models cost 0 (local servers)
# and the ledger flags them with ``price_known = false``.
DEFAULT_PRICES: dict[str, tuple[float, float]] = {
    "gpt-4o-mini": (0.15, 0.60),
    "gpt-4o": (2.50, 10.00),
    "gpt-4.1-mini": (0.40, 1.60),
    "gpt-4.1": (2.00, 8.00),
    "gpt-4.1-nano": (0.10, 0.40),
}


@dataclass(frozen=True)
class LLMConfig:
    """Every knob of the LLM layer. ``api_key`` is resolved from ``api_key_env`` and never printed."""

    base_url: str | None = None
    model: str | None = None
    api_key_env: str = "OPENAI_API_KEY"
    api_key: str | None = field(default=None, repr=False, compare=False)
    # transport
    concurrency: int = 16
    rpm: int | None = None  # requests per minute (None: unlimited)
    tpm: int | None = None  # tokens per minute, estimated before the call
    timeout_s: float = 60.0  # per HTTP attempt; a timed-out attempt is not retried (see client.py)
    max_timeouts: int = 3  # timed-out attempts after which a run stops: the endpoint is slower than timeout_s
    max_transient_retries: int = 5  # 429 / 5xx / connection errors
    max_invalid_retries: int = 2  # malformed, truncated, incomplete, refused or template-echoing answers
    backoff_base_s: float = 1.0
    backoff_max_s: float = 60.0
    # auto (json_schema, then json_object + schema, then json_object: pipelines/llm/dialect.py) or one of those
    structured: str = "auto"
    # sampling (part of the cache key)
    temperature: float = 0.0
    max_tokens: int = 4096  # the ceiling of every call's output cap
    seed: int | None = None
    # output cap per template or stage (e.g. comp = 1200), overriding the one sized from the call's schema; not part
    # of the cache key (an answer cut by its cap is never cached as ok)
    stage_max_tokens: dict[str, int] = field(default_factory=dict)
    # method
    comp_chunk_size: int = 20  # concepts per comp-rep call (paper: at most 20)
    score_chunk_size: int = 20
    relevance_chunk_size: int = 60
    score_mode: str = "joint"  # joint (both responses, one call) | separate (one call per response) | off
    # cost
    prices: dict[str, tuple[float, float]] = field(default_factory=lambda: dict(DEFAULT_PRICES))

    def __post_init__(self) -> None:
        if self.structured not in {"auto", "json_schema", "json_object_schema", "json_object"}:
            raise ValueError(
                f"llm.structured must be auto, json_schema, json_object_schema or json_object, not {self.structured!r}"
            )
        if self.score_mode not in {"joint", "separate", "off"}:
            raise ValueError(f"llm.score_mode must be joint, separate or off, not {self.score_mode!r}")
        if not 1 <= self.comp_chunk_size <= 20:
            raise ValueError("llm.comp_chunk_size must be between 1 and 20 (the paper's maximum)")
        if self.concurrency < 1:
            raise ValueError("llm.concurrency must be >= 1")
        if not self.timeout_s > 0:
            raise ValueError("llm.timeout_s must be > 0")
        if self.max_timeouts < 1:
            raise ValueError("llm.max_timeouts must be >= 1")
        if self.max_tokens < 1:
            raise ValueError("llm.max_tokens must be >= 1")
        bad = {k: v for k, v in self.stage_max_tokens.items() if not isinstance(v, int) or v < 1}
        if bad:
            raise ValueError(f"llm.stage_max_tokens values must be integers >= 1, got {bad}")

    @property
    def configured(self) -> bool:
        return bool(self.base_url or self.model)

    def price(self, model: str | None = None) -> tuple[float, float, bool]:
        """(input $/1M, output $/1M, known) for ``model`` (default: the configured one)."""
        m = model or self.model or ""
        if m in self.prices:
            p = self.prices[m]
            return float(p[0]), float(p[1]), True
        return 0.0, 0.0, False

    def cost(self, prompt_tokens: int, completion_tokens: int, model: str | None = None) -> float:
        pin, pout, _ = self.price(model)
        return (prompt_tokens * pin + completion_tokens * pout) / 1_000_000

    def sampling_params(self) -> dict[str, Any]:
        """The sampling parameters hashed into the cache key (``max_tokens``: the ceiling; each call is sent with its
        own cap, :func:`pipelines.llm.limits.output_cap`)."""
        out: dict[str, Any] = {"temperature": self.temperature, "max_tokens": self.max_tokens}
        if self.seed is not None:
            out["seed"] = self.seed
        return out

    def with_overrides(self, **kw: Any) -> LLMConfig:
        return replace(self, **{k: v for k, v in kw.items() if v is not None})


_FIELD_NAMES = {f.name for f in fields(LLMConfig)} - {"api_key"}


def config_file_path(warehouse: Path | None = None) -> Path | None:
    env = os.environ.get("PREFLENS_CONFIG")
    if env:
        return Path(env)
    for cand in [Path.cwd() / "preflens.toml", *([Path(warehouse).parent / "preflens.toml"] if warehouse else [])]:
        if cand.is_file():
            return cand
    return None


def load_llm_config(
    path: Path | None = None, *, warehouse: Path | None = None, env: dict[str, str] | None = None
) -> LLMConfig:
    """Defaults < ``[llm]`` of the config file < environment variables."""
    env = dict(os.environ) if env is None else env
    values: dict[str, Any] = {}
    path = path or config_file_path(warehouse)
    if path is not None:
        if not Path(path).is_file():
            raise FileNotFoundError(f"config file {path} not found")
        data = tomllib.loads(Path(path).read_text(encoding="utf-8")).get("llm", {})
        unknown = set(data) - _FIELD_NAMES
        if unknown:
            raise ValueError(f"unknown [llm] settings in {path}: {sorted(unknown)}")
        values.update(data)
        if "prices" in data:
            prices = dict(DEFAULT_PRICES)
            for model, p in data["prices"].items():
                if isinstance(p, dict):
                    prices[model] = (float(p["input"]), float(p["output"]))
                else:
                    prices[model] = (float(p[0]), float(p[1]))
            values["prices"] = prices
        if "stage_max_tokens" in data:
            values["stage_max_tokens"] = dict(data["stage_max_tokens"])
    if env.get("PREFLENS_LLM_BASE_URL"):
        values["base_url"] = env["PREFLENS_LLM_BASE_URL"]
    if env.get("PREFLENS_LLM_MODEL"):
        values["model"] = env["PREFLENS_LLM_MODEL"]
    if env.get("PREFLENS_LLM_API_KEY_ENV"):
        values["api_key_env"] = env["PREFLENS_LLM_API_KEY_ENV"]
    if env.get("PREFLENS_LLM_CONCURRENCY"):
        values["concurrency"] = int(env["PREFLENS_LLM_CONCURRENCY"])
    if env.get("PREFLENS_LLM_TIMEOUT_S"):
        values["timeout_s"] = float(env["PREFLENS_LLM_TIMEOUT_S"])
    cfg = LLMConfig(**values)
    key = env.get(cfg.api_key_env)
    return replace(cfg, api_key=key or None)


def llm_configured(warehouse: Path | None = None) -> bool:
    """True when an endpoint or a model is configured (else the offline annotator stays the default)."""
    try:
        return load_llm_config(warehouse=warehouse).configured
    except (FileNotFoundError, ValueError):
        return False
