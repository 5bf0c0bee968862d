"""Which ``response_format`` dialect an endpoint speaks, learnt once per endpoint and process.

OpenAI-compatible servers disagree on how a JSON schema is asked for. With ``structured = "auto"`` the client tries,
in this order:

* ``json_schema``: ``{"type": "json_schema", "json_schema": {"name", "schema", "strict"}}`` (OpenAI, vLLM,
  llama.cpp's server);
* ``json_object_schema``: ``{"type": "json_object", "schema": {...}}`` (llama-cpp-python's server, which answers
  HTTP 500 to ``json_schema``; llama.cpp's server accepts it too);
* ``json_object``: plain JSON mode; the answer is validated against the schema all the same.

Until an endpoint has answered in the current dialect, a rejection steps down to the next one: an HTTP 400 whose
message names the response format or schema, or a *second* HTTP 500 (the first may be a transient error, so it is
retried as one; 502, 503 and 504 never count). The first answer confirms the dialect; from then on every error is an ordinary error. The dialect
is kept per base URL for the life of the process, so the later stages and commands of a run start with it.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass

log = logging.getLogger("preflens.llm")

DIALECTS = ("json_schema", "json_object_schema", "json_object")
_FORMAT_WORDS = ("response_format", "json_schema", "schema")


@dataclass
class Dialect:
    """The dialect in use for one endpoint, whether an answer confirmed it, and the 5xx seen before that."""

    mode: str
    confirmed: bool = False
    server_errors: int = 0

    def answered(self, mode_used: str) -> None:
        """An answer to a request sent in ``mode_used``: that dialect works (the first answer confirms it)."""
        if not self.confirmed:
            self.mode, self.confirmed, self.server_errors = mode_used, True, 0

    def rejected(self, mode_used: str, status: int, message: str) -> bool:
        """A request in ``mode_used`` failed with HTTP ``status``: True when it should be sent again at once in
        the (possibly new) current dialect, False when the error is an ordinary one."""
        if self.confirmed:
            return False
        if mode_used != self.mode:  # another call already stepped down: send again in the new dialect
            return status in (400, 500)
        if self.mode == DIALECTS[-1]:
            return False
        if status == 400:
            if not any(w in message.lower() for w in _FORMAT_WORDS):
                return False
        elif status == 500:  # not 502/503/504: gateways and overload say nothing about the request
            self.server_errors += 1
            if self.server_errors < 2:
                return False
        else:
            return False
        self.mode = DIALECTS[DIALECTS.index(self.mode) + 1]
        self.server_errors = 0
        log.info("endpoint rejected response_format %s (HTTP %d); using %s + validation", mode_used, status, self.mode)
        return True


_BY_ENDPOINT: dict[str, Dialect] = {}
_LOCK = threading.Lock()


def dialect_for(base_url: str | None, structured: str) -> Dialect:
    """The shared dialect of ``base_url`` under ``auto``; a fixed, confirmed one when ``structured`` names it."""
    if structured != "auto":
        return Dialect(structured, confirmed=True)
    with _LOCK:
        return _BY_ENDPOINT.setdefault(base_url or "https://api.openai.com/v1", Dialect(DIALECTS[0]))


def forget_dialects() -> None:
    """Forget every endpoint's dialect (tests start servers on ports a former server may have used)."""
    with _LOCK:
        _BY_ENDPOINT.clear()
