"""A cached, rate-limited, budgeted async client for OpenAI-compatible chat completions.

One :class:`LLMClient` serves one command run. ``await client.run(specs)`` answers a list of
:class:`CallSpec` concurrently:

1. every spec's cache key (sha256 of model, sampling parameters, template, template version and the
   rendered messages) is looked up in ``raw.llm_cache`` in one query; hits cost nothing;
2. misses are sent with at most ``concurrency`` requests in flight, behind an RPM/TPM limiter, with a
   timeout, and with exponential backoff + jitter (honouring ``Retry-After`` / ``retry-after-ms``) on
   429, 5xx, timeouts and connection errors;
3. the answer must be JSON that validates against the spec's pydantic model (and its extra check, e.g.
   "one verdict per concept id"); a malformed, truncated (``finish_reason=length``), incomplete or refused
   answer is retried a bounded number of times, then recorded as *failed* with its raw text. Nothing is
   ever guessed;
4. every finished call is handed to a writer thread that commits it to ``raw.llm_cache`` (and every HTTP
   attempt to ``raw.llm_ledger``) within milliseconds (group commit), so ``kill -9`` loses only the calls
   in flight.

``dry_run`` answers from the cache only and projects calls, tokens and $ for the misses. ``budget_usd``
stops issuing calls before the projected spend (spent + in-flight reservations + this call's upper
bound) would exceed the cap; everything finished so far is kept.
"""

from __future__ import annotations

import asyncio
import email.utils
import hashlib
import json
import logging
import math
import queue
import random
import re
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any
from urllib.parse import urlparse

import duckdb
import openai
from pydantic import BaseModel, ValidationError

from pipelines.llm.config import LLMConfig

log = logging.getLogger("preflens.llm")


def _now() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None)


def estimate_tokens(text: str) -> int:
    """A deliberately pessimistic token estimate (3 characters per token) for limits, budgets and dry runs."""
    return max(1, math.ceil(len(text) / 3))


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
    expected_output_tokens: int = 200
    key: str = ""

    def prompt_chars(self) -> int:
        return sum(len(m["content"]) for m in self.messages)


@dataclass
class CallResult:
    spec: CallSpec
    status: str                     # ok | failed | skipped (budget) | projected (dry run)
    parsed: Any = None              # the validated pydantic object (ok only)
    raw: str | None = None
    error: str | None = None
    from_cache: bool = False

    @property
    def ok(self) -> bool:
        return self.status == "ok"


@dataclass
class RunStats:
    calls: int = 0                  # HTTP attempts
    logical_calls: int = 0          # specs answered by the endpoint (ok or failed)
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


class BudgetExhausted(RuntimeError):
    pass


class FatalLLMError(RuntimeError):
    """Errors no retry can fix (authentication, unknown model, bad URL)."""


class RateLimiter:
    """Token buckets for requests/min and tokens/min; ``acquire`` waits (FIFO) until both allow the call."""

    def __init__(self, rpm: int | None, tpm: int | None) -> None:
        self.rpm, self.tpm = rpm, tpm
        self._req = float(rpm or 0)
        self._tok = float(tpm or 0)
        self._t = time.monotonic()
        self._lock = asyncio.Lock()

    def _refill(self) -> None:
        now = time.monotonic()
        dt, self._t = now - self._t, now
        if self.rpm:
            self._req = min(float(self.rpm), self._req + dt * self.rpm / 60)
        if self.tpm:
            self._tok = min(float(self.tpm), self._tok + dt * self.tpm / 60)

    async def acquire(self, tokens: int) -> None:
        if not self.rpm and not self.tpm:
            return
        tokens = min(tokens, self.tpm or tokens)  # a call larger than the bucket waits for a full bucket
        async with self._lock:
            while True:
                self._refill()
                wait = 0.0
                if self.rpm and self._req < 1:
                    wait = max(wait, (1 - self._req) * 60 / self.rpm)
                if self.tpm and self._tok < tokens:
                    wait = max(wait, (tokens - self._tok) * 60 / self.tpm)
                if wait <= 0:
                    if self.rpm:
                        self._req -= 1
                    if self.tpm:
                        self._tok -= tokens
                    return
                await asyncio.sleep(wait)

    def settle(self, estimated: int, actual: int) -> None:
        """Correct the token bucket once the real usage is known."""
        if self.tpm:
            self._tok = min(float(self.tpm), self._tok + estimated - actual)


def parse_retry_after(headers: Any) -> float | None:
    """Seconds to wait from ``retry-after-ms`` or ``Retry-After`` (seconds or an HTTP date)."""
    if headers is None:
        return None
    ms = headers.get("retry-after-ms")
    if ms:
        try:
            return max(0.0, float(ms) / 1000)
        except ValueError:
            pass
    ra = headers.get("retry-after")
    if not ra:
        return None
    try:
        return max(0.0, float(ra))
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(ra)
            return max(0.0, when.timestamp() - time.time())
        except (TypeError, ValueError):
            return None


def backoff_delay(attempt: int, base: float, cap: float, retry_after: float | None, rng: random.Random) -> float:
    """Exponential backoff with equal jitter; never shorter than the server's Retry-After (capped at ``cap``)."""
    d = min(cap, base * (2 ** attempt))
    delay = d / 2 + rng.uniform(0, d / 2)
    if retry_after is not None:
        delay = max(delay, min(retry_after, cap))
    return delay


class Persister:
    """A writer thread with its own DuckDB connection: batches whatever is queued into one transaction."""

    def __init__(self, con: duckdb.DuckDBPyConnection) -> None:
        self._con = con.cursor()
        self._q: queue.Queue[tuple[str, tuple] | None] = queue.Queue()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._loop, name="preflens-llm-writer", daemon=True)
        self._thread.start()

    def put(self, sql: str, row: tuple) -> None:
        if self._error:
            raise RuntimeError(f"LLM writer failed: {self._error}") from self._error
        self._q.put((sql, row))

    def _loop(self) -> None:
        while True:
            first = self._q.get()
            batch = [first]
            while len(batch) < 1000:
                try:
                    batch.append(self._q.get_nowait())
                except queue.Empty:
                    break
            stop = any(b is None for b in batch)
            rows = [b for b in batch if b is not None]
            try:
                if rows:
                    groups: dict[str, list[tuple]] = defaultdict(list)
                    for sql, row in rows:
                        groups[sql].append(row)
                    self._con.execute("begin transaction")
                    for sql, grp in groups.items():
                        self._insert(sql, grp)
                    self._con.execute("commit")
            except BaseException as exc:  # noqa: BLE001 - surfaced to the caller on the next put/flush
                self._error = exc
                try:
                    self._con.execute("rollback")
                except Exception:  # noqa: BLE001
                    pass
            finally:
                for _ in batch:
                    self._q.task_done()
            if stop:
                return

    _SQL_RE = re.compile(r"^\s*insert\s+(or\s+replace\s+)?into\s+([\w.]+)\s*\(([^)]*)\)", re.I)

    def _insert(self, sql: str, rows: list[tuple]) -> None:
        """Bulk insert through Arrow (executemany is one statement per row: far too slow at 100+ calls/s)."""
        m = self._SQL_RE.match(sql)
        if m is None or len(rows) < 2:
            self._con.executemany(sql, rows)
            return
        import pyarrow as pa

        cols = [c.strip() for c in m.group(3).split(",")]
        tbl = pa.table({c: [r[i] for r in rows] for i, c in enumerate(cols)})
        self._con.register("_llm_batch", tbl)
        try:
            col_list = ", ".join(cols)
            self._con.execute(f"insert {m.group(1) or ''}into {m.group(2)} ({col_list}) select {col_list} from _llm_batch")
        finally:
            self._con.unregister("_llm_batch")

    def flush(self) -> None:
        self._q.join()
        if self._error:
            raise RuntimeError(f"LLM writer failed: {self._error}") from self._error

    def close(self) -> None:
        self._q.put(None)
        self._thread.join()
        self._con.close()
        if self._error:
            raise RuntimeError(f"LLM writer failed: {self._error}") from self._error


_CACHE_INSERT = """insert or replace into raw.llm_cache (cache_key, stage, template, template_version, model, params_json,
    item_id, status, raw_response, parsed_json, error, prompt_tokens, completion_tokens, latency_ms, attempts, run_id,
    created_at) values (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"""
_LEDGER_INSERT = """insert into raw.llm_ledger (run_id, cache_key, stage, chunk_id, concepts, model, attempt, outcome,
    http_status, prompt_tokens, completion_tokens, cost_usd, price_known, latency_ms, backoff_s, created_at)
    values (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"""


def chunk_id(concepts: Sequence[str] | None) -> str | None:
    if not concepts:
        return None
    return hashlib.sha256("\x1f".join(sorted(concepts)).encode()).hexdigest()[:12]


class LLMClient:
    """See the module docstring. Use as ``with LLMClient(cfg, con, command='annotate') as client: ...``."""

    def __init__(
        self,
        config: LLMConfig,
        con: duckdb.DuckDBPyConnection,
        *,
        command: str = "annotate",
        dry_run: bool = False,
        budget_usd: float | None = None,
        seed: int = 0,
    ) -> None:
        if not config.model:
            raise ValueError("no LLM model configured: set PREFLENS_LLM_MODEL or [llm] model in preflens.toml")
        self.config = config
        self.con = con
        self.command = command
        self.dry_run = dry_run
        self.budget_usd = budget_usd
        self.run_id = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ") + "-" + uuid.uuid4().hex[:6]
        self.stats = RunStats()
        self.budget_stopped = False
        self._reserved = 0.0
        self._mode = "json_object" if config.structured == "json_object" else "json_schema"
        self._rng = random.Random(seed)
        self._params = config.sampling_params()
        self._params_json = json.dumps(self._params, sort_keys=True)
        self._persister: Persister | None = None
        self._client: openai.AsyncOpenAI | None = None
        self._sem: asyncio.Semaphore | None = None
        self._limiter: RateLimiter | None = None
        self._fatal: BaseException | None = None

    # ---- lifecycle -------------------------------------------------------------------------------
    def __enter__(self) -> "LLMClient":
        if not self.dry_run:
            self._persister = Persister(self.con)
            host = urlparse(self.config.base_url).hostname if self.config.base_url else "api.openai.com"
            self.con.execute(
                "insert into raw.llm_runs (run_id, command, model, base_url_host, started_at, status, budget_usd) "
                "values (?, ?, ?, ?, ?, 'running', ?)",
                [self.run_id, self.command, self.config.model, host, _now(), self.budget_usd],
            )
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if self._persister is not None:
            self._persister.close()
            self._persister = None
        if not self.dry_run:
            if exc_type is not None:
                status, message = "failed", f"{exc_type.__name__}: {exc}"[:2000]
            else:
                status, message = ("budget_stopped" if self.budget_stopped else "completed"), None
            s = self.stats
            self.con.execute(
                """update raw.llm_runs set finished_at = ?, status = ?, calls = ?, cache_hits = ?, failed_calls = ?,
                   prompt_tokens = ?, completion_tokens = ?, cost_usd = ?, message = ? where run_id = ?""",
                [_now(), status, s.calls, s.cache_hits, s.failed, s.prompt_tokens, s.completion_tokens, s.cost_usd,
                 message, self.run_id],
            )

    def flush(self) -> None:
        if self._persister is not None:
            self._persister.flush()

    def persist(self, sql: str, row: tuple) -> None:
        """Queue any other row (e.g. annotation votes) on the same writer thread."""
        if self._persister is None:
            raise RuntimeError("persist() outside the client context or in a dry run")
        self._persister.put(sql, row)

    # ---- keys and cache --------------------------------------------------------------------------
    def key_for(self, spec: CallSpec) -> str:
        payload = {
            "model": self.config.model,
            "params": self._params,
            "template": spec.template,
            "template_version": spec.template_version,
            "messages": spec.messages,
        }
        return hashlib.sha256(json.dumps(payload, sort_keys=True, ensure_ascii=False).encode()).hexdigest()

    def _lookup(self, keys: list[str]) -> dict[str, str]:
        if not keys:
            return {}
        import pyarrow as pa

        tbl = pa.table({"k": list(set(keys))})
        self.con.register("_llm_keys", tbl)
        try:
            rows = self.con.execute(
                "select c.cache_key, c.parsed_json from raw.llm_cache c join _llm_keys k on c.cache_key = k.k "
                "where c.status = 'ok'"
            ).fetchall()
        finally:
            self.con.unregister("_llm_keys")
        return {k: v for k, v in rows}

    # ---- the public entry point -------------------------------------------------------------------
    async def run(self, specs: Sequence[CallSpec]) -> list[CallResult]:
        """Answer every spec (cache first). Results are in the order of ``specs``; duplicates share one call."""
        for s in specs:
            s.key = self.key_for(s)
        hits = self._lookup([s.key for s in specs])
        results: list[CallResult | None] = [None] * len(specs)
        pending: dict[str, list[int]] = {}
        for i, s in enumerate(specs):
            if s.key in hits:
                results[i] = CallResult(s, "ok", parsed=s.schema.model_validate_json(hits[s.key]), from_cache=True)
                self.stats.cache_hits += 1
            else:
                pending.setdefault(s.key, []).append(i)
        if pending:
            if self._client is None and not self.dry_run:
                self._client = openai.AsyncOpenAI(
                    api_key=self.config.api_key or "not-needed",
                    base_url=self.config.base_url,
                    timeout=self.config.timeout_s,
                    max_retries=0,
                )
            if self._sem is None:
                self._sem = asyncio.Semaphore(self.config.concurrency)
                self._limiter = RateLimiter(self.config.rpm, self.config.tpm)
            answers = await asyncio.gather(*(self._answer(specs[idx[0]]) for idx in pending.values()))
            for idx, res in zip(pending.values(), answers):
                for i in idx:
                    results[i] = res
            if self._fatal is not None:
                raise FatalLLMError(str(self._fatal)) from self._fatal
        return [r for r in results if r is not None]

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.close()
            self._client = None
        self._sem = None
        self._limiter = None

    # ---- one logical call ---------------------------------------------------------------------------
    def _upper_cost(self, spec: CallSpec) -> float:
        return self.config.cost(estimate_tokens(" " * spec.prompt_chars()), self.config.max_tokens)

    async def _answer(self, spec: CallSpec) -> CallResult:
        if self.dry_run:
            pt = estimate_tokens(" " * spec.prompt_chars())
            ct = spec.expected_output_tokens
            cost = self.config.cost(pt, ct)
            s = self.stats
            s.projected_calls += 1
            s.projected_prompt_tokens += pt
            s.projected_completion_tokens += ct
            s.projected_cost_usd += cost
            s.add_stage(spec.stage, projected_calls=1, projected_prompt_tokens=pt, projected_completion_tokens=ct,
                        projected_cost_usd=cost)
            return CallResult(spec, "projected")
        transient = invalid = attempt = 0
        total_pt = total_ct = 0
        latency_ms = 0.0
        raw: str | None = None
        error: str | None = None
        cid = chunk_id(spec.concepts)
        concepts = list(spec.concepts) if spec.concepts else None
        while True:
            if self.budget_stopped or self._fatal is not None:
                self.stats.skipped += 1
                return CallResult(spec, "skipped", error="budget exhausted" if self.budget_stopped else "fatal error")
            reserve = 0.0
            if self.budget_usd is not None:
                reserve = self._upper_cost(spec)
                if self.stats.cost_usd + self._reserved + reserve > self.budget_usd:
                    self.budget_stopped = True
                    self.stats.skipped += 1
                    return CallResult(spec, "skipped", error="budget exhausted")
                self._reserved += reserve
            est = estimate_tokens(" " * spec.prompt_chars()) + spec.expected_output_tokens
            assert self._limiter is not None and self._sem is not None and self._client is not None
            await self._limiter.acquire(est)
            attempt += 1
            outcome, http_status, retry_after = "ok", None, None
            pt = ct = 0
            parsed: Any = None
            t0 = time.perf_counter()
            mode_used = self._mode
            try:
                async with self._sem:
                    t0 = time.perf_counter()
                    resp = await self._client.chat.completions.create(
                        model=self.config.model, messages=spec.messages,  # type: ignore[arg-type]
                        response_format=self._response_format(spec), **self._params,
                    )
                latency_ms = (time.perf_counter() - t0) * 1000
                usage = getattr(resp, "usage", None)
                pt = int(getattr(usage, "prompt_tokens", 0) or 0)
                ct = int(getattr(usage, "completion_tokens", 0) or 0)
                outcome, raw, parsed, error = self._validate(spec, resp)
                http_status = 200
            except openai.BadRequestError as exc:
                latency_ms = (time.perf_counter() - t0) * 1000
                http_status = exc.status_code
                msg = str(exc)
                if mode_used == "json_schema" and self.config.structured == "auto" and (
                    "response_format" in msg or "json_schema" in msg
                ):
                    outcome, error = "schema_unsupported", msg[:500]
                    self._mode = "json_object"
                    log.info("endpoint does not support json_schema response_format; using JSON mode + validation")
                else:
                    outcome, error = "http_400", msg[:500]
            except (openai.AuthenticationError, openai.PermissionDeniedError, openai.NotFoundError) as exc:
                latency_ms = (time.perf_counter() - t0) * 1000
                http_status, outcome, error = exc.status_code, f"http_{exc.status_code}", type(exc).__name__
                self._fatal = FatalLLMError(
                    f"{type(exc).__name__} from the endpoint (status {exc.status_code}); check the base URL, model "
                    f"and the key variable {self.config.api_key_env}"
                )
            except openai.APIStatusError as exc:
                latency_ms = (time.perf_counter() - t0) * 1000
                http_status = exc.status_code
                outcome = "http_429" if exc.status_code == 429 else f"http_{exc.status_code}"
                retry_after = parse_retry_after(exc.response.headers)
                error = f"HTTP {exc.status_code}"
            except openai.APITimeoutError:
                latency_ms = (time.perf_counter() - t0) * 1000
                outcome, error = "timeout", f"no answer within {self.config.timeout_s}s"
            except openai.APIConnectionError as exc:
                latency_ms = (time.perf_counter() - t0) * 1000
                outcome, error = "connection", type(exc).__name__
            finally:
                if reserve:
                    self._reserved -= reserve
            cost = self.config.cost(pt, ct)
            _, _, known = self.config.price()
            self._limiter.settle(est, pt + ct)
            total_pt += pt
            total_ct += ct
            s = self.stats
            s.calls += 1
            s.prompt_tokens += pt
            s.completion_tokens += ct
            s.cost_usd += cost
            s.add_stage(spec.stage, calls=1, prompt_tokens=pt, completion_tokens=ct, cost_usd=cost)
            transient_kinds = outcome in {"http_429", "timeout", "connection"} or (
                outcome.startswith("http_5") or outcome in {"http_408", "http_409"}
            )
            invalid_kinds = outcome in {"malformed", "truncated", "incomplete", "refusal", "invalid"}
            backoff = None
            if transient_kinds and transient < self.config.max_transient_retries:
                backoff = backoff_delay(transient, self.config.backoff_base_s, self.config.backoff_max_s, retry_after,
                                        self._rng)
            self._persist_ledger(spec, cid, concepts, attempt, outcome, http_status, pt, ct, cost, known, latency_ms,
                                 backoff)
            if outcome == "ok":
                s.logical_calls += 1
                self._persist_cache(spec, "ok", raw, parsed.model_dump_json(), None, total_pt, total_ct, latency_ms,
                                    attempt)
                return CallResult(spec, "ok", parsed=parsed, raw=raw)
            if outcome == "schema_unsupported":
                continue
            if transient_kinds:
                if backoff is not None:
                    transient += 1
                    await asyncio.sleep(backoff)
                    continue
            elif invalid_kinds:
                invalid += 1
                if invalid <= self.config.max_invalid_retries:
                    continue
            # permanent failure: record it with the raw text, never guess
            s.failed += 1
            s.logical_calls += 1
            if self._fatal is None:
                self._persist_cache(spec, "failed", raw, None, f"{outcome}: {error}", total_pt, total_ct, latency_ms,
                                    attempt)
            log.warning("LLM call failed after %d attempt(s): stage=%s item=%s outcome=%s", attempt, spec.stage,
                        spec.item_id, outcome)
            return CallResult(spec, "failed", raw=raw, error=f"{outcome}: {error}")

    def _response_format(self, spec: CallSpec) -> dict[str, Any]:
        if self._mode == "json_schema":
            return {
                "type": "json_schema",
                "json_schema": {"name": spec.template.replace("-", "_"), "schema": spec.schema.model_json_schema(),
                                "strict": False},
            }
        return {"type": "json_object"}

    @staticmethod
    def _validate(spec: CallSpec, resp: Any) -> tuple[str, str | None, Any, str | None]:
        """(outcome, raw text, parsed object, error)."""
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
            text = text[text.find("{"):] if "{" in text else text
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

    def _persist_cache(self, spec: CallSpec, status: str, raw: str | None, parsed_json: str | None, error: str | None,
                       pt: int, ct: int, latency_ms: float, attempts: int) -> None:
        assert self._persister is not None
        self._persister.put(
            _CACHE_INSERT,
            (spec.key, spec.stage, spec.template, spec.template_version, self.config.model, self._params_json,
             spec.item_id, status, raw, parsed_json, error, pt, ct, latency_ms, attempts, self.run_id, _now()),
        )

    def _persist_ledger(self, spec: CallSpec, cid: str | None, concepts: list[str] | None, attempt: int, outcome: str,
                        http_status: int | None, pt: int, ct: int, cost: float, known: bool, latency_ms: float,
                        backoff: float | None) -> None:
        assert self._persister is not None
        self._persister.put(
            _LEDGER_INSERT,
            (self.run_id, spec.key, spec.stage, cid, concepts, self.config.model, attempt, outcome, http_status, pt, ct,
             cost, known, latency_ms, backoff, _now()),
        )


def run_sync(coro: Any) -> Any:
    """Run a coroutine from synchronous code."""
    return asyncio.run(coro)
