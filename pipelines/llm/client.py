"""A cached, rate-limited, budgeted async client for OpenAI-compatible chat completions.

One :class:`LLMClient` serves one command run. ``await client.run(specs)`` answers a list of
:class:`~pipelines.llm.types.CallSpec` concurrently:

1. every spec's cache key (sha256 of model, sampling parameters, template, template version and the
   rendered messages) is looked up in ``raw.llm_cache`` in one query; hits cost nothing;
2. misses are sent with at most ``concurrency`` requests in flight, behind an RPM/TPM limiter, each with its
   own output cap (``max_tokens`` sized to what its schema needs, :func:`~pipelines.llm.limits.output_cap`) and
   a timeout, and with exponential backoff + jitter (honouring ``Retry-After`` / ``retry-after-ms``) on 429, 5xx
   and connection errors (:mod:`pipelines.llm.limits`, :mod:`pipelines.llm.retry`). A timeout is not retried
   (the endpoint may still be computing the abandoned request); after ``max_timeouts`` of them the run stops
   with a message naming ``timeout_s``. The ``response_format`` dialect is learnt per endpoint
   (:mod:`pipelines.llm.dialect`);
3. the answer must be JSON that validates against the spec's pydantic model, does not echo the template's
   placeholders, and passes its extra check (e.g. "one verdict per concept id"); a malformed, truncated
   (``finish_reason=length``), incomplete, refused or template-echoing answer is retried a bounded number of
   times, then recorded as *failed* with its raw text. Nothing is ever guessed (:mod:`pipelines.llm.answers`);
4. every finished call is handed to a writer thread that commits it to ``raw.llm_cache`` (and every HTTP
   attempt to ``raw.llm_ledger``) within milliseconds (group commit), so ``kill -9`` loses only the calls
   in flight (:mod:`pipelines.llm.store`).

``dry_run`` answers from the cache only and projects calls, tokens and $ for the misses. ``budget_usd``
stops issuing calls before the projected spend (spent + in-flight reservations + this call's upper
bound) would exceed the cap; everything finished so far is kept.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import duckdb
import openai

from pipelines.core.ids import new_id
from pipelines.llm.answers import response_format, validate_answer
from pipelines.llm.config import LLMConfig
from pipelines.llm.dialect import dialect_for
from pipelines.llm.limits import Budget, RateLimiter, estimate_tokens, output_cap
from pipelines.llm.retry import backoff_delay, is_invalid, is_transient, parse_retry_after
from pipelines.llm.store import (
    CACHE_INSERT,
    LEDGER_INSERT,
    Persister,
    cached_answers,
    chunk_id,
    now_utc,
    record_run_end,
    record_run_start,
    settle_interrupted_runs,
)
from pipelines.llm.types import Attempt, CallResult, CallSpec, FatalLLMError, RunStats

log = logging.getLogger("preflens.llm")
T = TypeVar("T")


@dataclass
class _CallState:
    """What one logical call has accumulated over its attempts."""

    chunk_id: str | None
    concepts: list[str] | None
    attempts: int = 0
    transient: int = 0  # transient failures retried so far
    invalid: int = 0  # unusable answers so far
    prompt_tokens: int = 0
    completion_tokens: int = 0
    raw: str | None = None  # the text of the latest answer


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
        self._budget = Budget(budget_usd)
        self.run_id = new_id()
        self.stats = RunStats()
        self._dialect = dialect_for(config.base_url, config.structured)
        self._timeouts = 0  # timed-out attempts in this run
        self._slowest_ok_s = 0.0  # the longest answered attempt, for the slow-endpoint message
        self._rng = random.Random(seed)
        self._params = config.sampling_params()
        self._params_json = json.dumps(self._params, sort_keys=True)
        self._persister: Persister | None = None
        self._client: openai.AsyncOpenAI | None = None
        self._sem: asyncio.Semaphore | None = None
        self._limiter: RateLimiter | None = None
        self._fatal: BaseException | None = None

    @property
    def response_mode(self) -> str:
        """The ``response_format`` dialect in use for this endpoint (:mod:`pipelines.llm.dialect`)."""
        return self._dialect.mode

    def max_tokens_for(self, spec: CallSpec) -> int:
        """The output cap ``spec`` is sent with (:func:`pipelines.llm.limits.output_cap`)."""
        over = self.config.stage_max_tokens
        return output_cap(
            spec.expected_output_tokens,
            spec.max_output_tokens,
            over.get(spec.stage) or over.get(spec.template),
            self.config.max_tokens,
        )

    @property
    def budget_usd(self) -> float | None:
        return self._budget.cap_usd

    @property
    def budget_stopped(self) -> bool:
        """True once a call was not sent because it could have passed the budget."""
        return self._budget.stopped

    # ---- lifecycle -------------------------------------------------------------------------------
    def __enter__(self) -> LLMClient:
        if not self.dry_run:
            settle_interrupted_runs(self.con, found_by=f"{self.command} run {self.run_id}")
            self._persister = Persister(self.con)
            record_run_start(self.con, self.run_id, self.command, self.config, self.budget_usd)
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
            record_run_end(self.con, self.run_id, status, self.stats, message)

    def flush(self) -> None:
        if self._persister is not None:
            self._persister.flush()

    def persist(self, sql: str, row: tuple) -> None:
        """Queue any other row (e.g. annotation votes) on the same writer thread."""
        if self._persister is None:
            raise RuntimeError("persist() outside the client context or in a dry run")
        self._persister.put(sql, row)

    # ---- keys --------------------------------------------------------------------------------------
    def key_for(self, spec: CallSpec) -> str:
        payload = {
            "model": self.config.model,
            "params": self._params,
            "template": spec.template,
            "template_version": spec.template_version,
            "messages": spec.messages,
        }
        return hashlib.sha256(json.dumps(payload, sort_keys=True, ensure_ascii=False).encode()).hexdigest()

    # ---- the public entry points --------------------------------------------------------------------
    async def run(self, specs: Sequence[CallSpec]) -> list[CallResult]:
        """Answer every spec (cache first). Results are in the order of ``specs``; duplicates share one call."""
        for s in specs:
            s.key = self.key_for(s)
        hits = cached_answers(self.con, [s.key for s in specs])
        results: list[CallResult | None] = [None] * len(specs)
        pending: dict[str, list[int]] = {}
        for i, s in enumerate(specs):
            if s.key in hits:
                results[i] = CallResult(s, "ok", parsed=s.schema.model_validate_json(hits[s.key]), from_cache=True)
                self.stats.cache_hits += 1
            else:
                pending.setdefault(s.key, []).append(i)
        if pending:
            self._open_transport()
            answers = await asyncio.gather(*(self._answer(specs[idx[0]]) for idx in pending.values()))
            for idx, res in zip(pending.values(), answers):
                for i in idx:
                    results[i] = res
            if self._fatal is not None:
                raise FatalLLMError(str(self._fatal)) from self._fatal
        return [r for r in results if r is not None]

    def run_sync(self, specs: Sequence[CallSpec]) -> list[CallResult]:
        """:meth:`run` from synchronous code (in its own event loop, then closing the HTTP session)."""
        return self.drive(lambda: self.run(specs)) if specs else []

    def drive(self, work: Callable[[], Awaitable[T]]) -> T:
        """Run ``work``, an async step that calls this client, from synchronous code; close the HTTP session after."""

        async def go() -> T:
            try:
                return await work()
            finally:
                await self.aclose()

        return asyncio.run(go())

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.close()
            self._client = None
        self._sem = None
        self._limiter = None

    def _open_transport(self) -> None:
        """The HTTP client (not in a dry run), the concurrency semaphore and the rate limiter, once per session."""
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

    # ---- one logical call ---------------------------------------------------------------------------
    async def _answer(self, spec: CallSpec) -> CallResult:
        """Project the call (dry run), or send it until it succeeds, fails for good, or the run stops."""
        if self.dry_run:
            return self._project(spec)
        state = _CallState(chunk_id(spec.concepts), list(spec.concepts) if spec.concepts else None)
        while True:
            reserved = self._reserve(spec)
            if reserved is None:
                self.stats.skipped += 1
                return CallResult(spec, "skipped", error="budget exhausted" if self.budget_stopped else "fatal error")
            attempt = await self._request(spec, reserved)
            if attempt is None:
                self.stats.skipped += 1
                return CallResult(spec, "skipped", error="fatal error")
            backoff = self._account(spec, state, attempt)
            if attempt.outcome == "ok":
                return self._succeed(spec, state, attempt)
            if not await self._retry(spec, state, attempt, backoff):
                return self._fail(spec, state, attempt)

    def _prompt_tokens(self, spec: CallSpec) -> int:
        return estimate_tokens(" " * spec.prompt_chars())

    def _project(self, spec: CallSpec) -> CallResult:
        """Dry run: count the call with its estimated tokens and cost instead of sending it."""
        pt, ct = self._prompt_tokens(spec), spec.expected_output_tokens
        self.stats.count_projection(spec.stage, pt, ct, self.config.cost(pt, ct))
        return CallResult(spec, "projected")

    def _reserve(self, spec: CallSpec) -> float | None:
        """Reserve the call's upper-bound cost (0 without a budget); None when the run has stopped."""
        if self.budget_stopped or self._fatal is not None:
            return None
        upper_cost = self.config.cost(self._prompt_tokens(spec), self.max_tokens_for(spec))
        return self._budget.reserve(self.stats.cost_usd, upper_cost)

    async def _request(self, spec: CallSpec, reserved: float) -> Attempt | None:
        """Wait for the rate limiter and a free slot, send one request (None: not sent, as the run stopped while it
        waited), release the budget reservation and settle the limiter."""
        assert self._limiter is not None and self._sem is not None
        estimated = self._prompt_tokens(spec) + spec.expected_output_tokens
        await self._limiter.acquire(estimated)
        attempt = None
        try:
            async with self._sem:
                if self._fatal is None:
                    attempt = await self._send(spec)
        finally:
            if reserved:
                self._budget.release(reserved)
        used = attempt.prompt_tokens + attempt.completion_tokens if attempt else 0
        self._limiter.settle(estimated, used)
        return attempt

    async def _send(self, spec: CallSpec) -> Attempt:
        """One HTTP request, in the response format dialect current when it is sent; its answer validated, or its
        error mapped to an outcome."""
        assert self._client is not None
        mode_used = self._dialect.mode
        params = {**self._params, "max_tokens": self.max_tokens_for(spec)}
        t0 = time.perf_counter()

        def elapsed_ms() -> float:
            return (time.perf_counter() - t0) * 1000

        try:
            resp = await self._client.chat.completions.create(  # type: ignore[call-overload]
                model=self.config.model,
                messages=spec.messages,
                response_format=response_format(spec, mode_used),
                **params,
            )
        except openai.BadRequestError as exc:
            return self._bad_request(exc, mode_used, elapsed_ms())
        except (openai.AuthenticationError, openai.PermissionDeniedError, openai.NotFoundError) as exc:
            self._fatal = FatalLLMError(
                f"{type(exc).__name__} from the endpoint (status {exc.status_code}); check the base URL, model "
                f"and the key variable {self.config.api_key_env}"
            )
            return Attempt(f"http_{exc.status_code}", type(exc).__name__, elapsed_ms(), http_status=exc.status_code)
        except openai.APIStatusError as exc:
            if exc.status_code >= 500 and self._dialect.rejected(mode_used, exc.status_code, str(exc)):
                return Attempt("schema_unsupported", str(exc)[:500], elapsed_ms(), http_status=exc.status_code)
            return Attempt(
                f"http_{exc.status_code}",
                f"HTTP {exc.status_code}",
                elapsed_ms(),
                http_status=exc.status_code,
                retry_after=parse_retry_after(exc.response.headers),
            )
        except openai.APITimeoutError:
            return Attempt("timeout", self._timeout_message(), elapsed_ms())
        except openai.APIConnectionError as exc:
            return Attempt("connection", type(exc).__name__, elapsed_ms())
        latency_ms = elapsed_ms()
        self._dialect.answered(mode_used)
        self._slowest_ok_s = max(self._slowest_ok_s, latency_ms / 1000)
        usage = getattr(resp, "usage", None)
        outcome, raw, parsed, error = validate_answer(spec, resp)
        return Attempt(
            outcome,
            error,
            latency_ms,
            http_status=200,
            prompt_tokens=int(getattr(usage, "prompt_tokens", 0) or 0),
            completion_tokens=int(getattr(usage, "completion_tokens", 0) or 0),
            answered=True,
            raw=raw,
            parsed=parsed,
        )

    def _bad_request(self, exc: openai.BadRequestError, mode_used: str, latency_ms: float) -> Attempt:
        """HTTP 400: a rejected response format steps down to the next dialect (``auto`` only), else a failure."""
        msg = str(exc)
        if self._dialect.rejected(mode_used, exc.status_code, msg):
            return Attempt("schema_unsupported", msg[:500], latency_ms, http_status=exc.status_code)
        return Attempt("http_400", msg[:500], latency_ms, http_status=exc.status_code)

    def _timeout_message(self) -> str:
        t = self.config.timeout_s
        return (
            f"no answer within timeout_s = {t:g} s; not retried, as the endpoint may still be computing it. If "
            f"the endpoint is this slow, raise timeout_s ([llm] timeout_s in preflens.toml, or "
            f"PREFLENS_LLM_TIMEOUT_S={max(2 * t, 120):g}), or lower [llm] max_tokens / the chunk sizes"
        )

    def _slow_endpoint(self, spec: CallSpec) -> FatalLLMError:
        """The error that stops a run after ``max_timeouts`` timed-out attempts."""
        t = self.config.timeout_s
        seen = f"; the slowest answered call took {self._slowest_ok_s:.1f} s" if self._slowest_ok_s else ""
        return FatalLLMError(
            f"the endpoint {self.config.base_url or 'api.openai.com'} is slower than timeout_s = {t:g} s: "
            f"{self._timeouts} requests got no answer in time (the last one at stage {spec.stage}){seen}. Raise "
            f"timeout_s ([llm] timeout_s in preflens.toml, or PREFLENS_LLM_TIMEOUT_S={max(2 * t, 120):g}), lower "
            "the concurrency or the chunk sizes, or use a faster endpoint. Finished calls are saved; re-run to "
            "continue"
        )

    def _account(self, spec: CallSpec, state: _CallState, attempt: Attempt) -> float | None:
        """Count the attempt (stats, the call's totals, a ledger row); return the backoff before a retry, if any."""
        state.attempts += 1
        state.prompt_tokens += attempt.prompt_tokens
        state.completion_tokens += attempt.completion_tokens
        if attempt.answered:
            state.raw = attempt.raw
        cost = self.config.cost(attempt.prompt_tokens, attempt.completion_tokens)
        self.stats.count_attempt(spec.stage, attempt.prompt_tokens, attempt.completion_tokens, cost)
        backoff = None
        if is_transient(attempt.outcome) and state.transient < self.config.max_transient_retries:
            backoff = backoff_delay(
                state.transient, self.config.backoff_base_s, self.config.backoff_max_s, attempt.retry_after, self._rng
            )
        self._persist_ledger(spec, state, attempt, cost, backoff)
        return backoff

    async def _retry(self, spec: CallSpec, state: _CallState, attempt: Attempt, backoff: float | None) -> bool:
        """Whether to send a failed attempt again: after a JSON-mode fallback, after ``backoff`` for a transient
        error within its retry limit, or at once for an unusable answer within its limit."""
        if attempt.outcome == "schema_unsupported":
            return True
        if attempt.outcome == "timeout":
            self._timeouts += 1
            if self._timeouts >= self.config.max_timeouts and self._fatal is None:
                self._fatal = self._slow_endpoint(spec)
            return False
        if is_transient(attempt.outcome):
            if backoff is None:
                return False
            state.transient += 1
            await asyncio.sleep(backoff)
            return True
        if is_invalid(attempt.outcome):
            state.invalid += 1
            return state.invalid <= self.config.max_invalid_retries
        return False

    def _succeed(self, spec: CallSpec, state: _CallState, attempt: Attempt) -> CallResult:
        self.stats.logical_calls += 1
        self._persist_cache(spec, state, "ok", attempt.parsed.model_dump_json(), None, attempt.latency_ms)
        return CallResult(spec, "ok", parsed=attempt.parsed, raw=attempt.raw)

    def _fail(self, spec: CallSpec, state: _CallState, attempt: Attempt) -> CallResult:
        """A permanent failure: recorded with the raw text, never guessed."""
        error = f"{attempt.outcome}: {attempt.error}"
        self.stats.failed += 1
        self.stats.logical_calls += 1
        if self._fatal is None:
            self._persist_cache(spec, state, "failed", None, error, attempt.latency_ms)
        log.warning(
            "LLM call failed after %d attempt(s): stage=%s item=%s outcome=%s",
            state.attempts,
            spec.stage,
            spec.item_id,
            attempt.outcome,
        )
        return CallResult(spec, "failed", raw=state.raw, error=error)

    # ---- rows for the writer thread -------------------------------------------------------------------
    def _persist_cache(
        self,
        spec: CallSpec,
        state: _CallState,
        status: str,
        parsed_json: str | None,
        error: str | None,
        latency_ms: float,
    ) -> None:
        assert self._persister is not None
        self._persister.put(
            CACHE_INSERT,
            (
                spec.key,
                spec.stage,
                spec.template,
                spec.template_version,
                self.config.model,
                self._params_json,
                spec.item_id,
                status,
                state.raw,
                parsed_json,
                error,
                state.prompt_tokens,
                state.completion_tokens,
                latency_ms,
                state.attempts,
                self.run_id,
                now_utc(),
            ),
        )

    def _persist_ledger(
        self, spec: CallSpec, state: _CallState, attempt: Attempt, cost: float, backoff: float | None
    ) -> None:
        assert self._persister is not None
        _, _, price_known = self.config.price()
        self._persister.put(
            LEDGER_INSERT,
            (
                self.run_id,
                spec.key,
                spec.stage,
                state.chunk_id,
                state.concepts,
                self.config.model,
                state.attempts,
                attempt.outcome,
                attempt.http_status,
                attempt.prompt_tokens,
                attempt.completion_tokens,
                cost,
                price_known,
                attempt.latency_ms,
                backoff,
                now_utc(),
            ),
        )
