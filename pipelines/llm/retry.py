"""When a failed attempt is tried again, and after how long: outcome kinds, Retry-After, backoff with jitter."""

from __future__ import annotations

import email.utils
import random
import time
from typing import Any

INVALID_OUTCOMES = frozenset({"malformed", "truncated", "incomplete", "refusal", "invalid"})


def is_transient(outcome: str) -> bool:
    """Rate limits, connection errors and server errors: the same request may well succeed later.

    A timeout is not one: a server that does not cancel an abandoned non-streamed request is still computing it, so
    a retry only queues behind it and times out too, and an endpoint slower than the timeout stays slower. A
    timed-out call fails (the next run asks again), and the client stops the run after ``max_timeouts`` of them."""
    return outcome in {"http_429", "connection", "http_408", "http_409"} or outcome.startswith("http_5")


def is_invalid(outcome: str) -> bool:
    """An answer that came back unusable (see :func:`pipelines.llm.answers.validate_answer`): asking again may help."""
    return outcome in INVALID_OUTCOMES


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
    d = min(cap, base * (2**attempt))
    delay = d / 2 + rng.uniform(0, d / 2)
    if retry_after is not None:
        delay = max(delay, min(retry_after, cap))
    return delay
