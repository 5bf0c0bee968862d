"""What holds calls back: a pessimistic token estimate, each call's output cap, the RPM/TPM rate limiter and the
dollar budget."""

from __future__ import annotations

import asyncio
import math
import time


def estimate_tokens(text: str) -> int:
    """A deliberately pessimistic token estimate (3 characters per token) for limits, budgets and dry runs."""
    return max(1, math.ceil(len(text) / 3))


def output_cap(expected_tokens: int, explicit: int | None, override: int | None, ceiling: int) -> int:
    """The ``max_tokens`` a call is sent with: the config's per-stage ``override`` if set, else the call's ``explicit``
    cap (free-text stages), else twice what its schema is expected to need plus 64 (room for a wordier model and
    JSON whitespace); never above ``ceiling`` (``max_tokens``). A model that rambles past it is cut (``truncated``)
    instead of holding a slow endpoint for thousands of tokens."""
    cap = override or explicit or 2 * expected_tokens + 64
    return max(1, min(ceiling, cap))


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


class Budget:
    """A run's dollar cap (``None``: no cap). A call reserves its upper-bound cost before it is sent and releases
    it once the real cost is counted; the first call that would take spent + reserved past the cap stops the run."""

    def __init__(self, cap_usd: float | None) -> None:
        self.cap_usd = cap_usd
        self.reserved = 0.0
        self.stopped = False

    def reserve(self, spent_usd: float, upper_cost_usd: float) -> float | None:
        """The amount reserved for one call (0 without a cap), or None when the call would pass the cap."""
        if self.cap_usd is None:
            return 0.0
        if spent_usd + self.reserved + upper_cost_usd > self.cap_usd:
            self.stopped = True
            return None
        self.reserved += upper_cost_usd
        return upper_cost_usd

    def release(self, amount_usd: float) -> None:
        self.reserved -= amount_usd
