"""A small OpenAI-compatible chat-completions server for tests and benchmarks (127.0.0.1 only).

It plays a *deterministic naive model*: every answer is a function of the request content, so a known
concept gets a known verdict and a planted concept can be recovered end to end.

* Concept scoring: the concept's first word (lower-cased) is counted in a response; score = min(7, 1 + 2·count).
  Comp-rep answers 1 / 2 / 0 by comparing the two responses' scores as they appear in the prompt (so the
  swapped call agrees after un-flipping), except concepts whose name contains "Positional", which always get
  "1" (a position-biased model: the two orders disagree).
* Relevance: a concept is relevant when its word appears in the query or a response, or when a hash of
  (concept, query) falls under ``relevance_rate``.
* Prompt injection: the model is *steerable by text outside data blocks*: if "ignore previous instructions"
  appears outside every ``<<<BEGIN X>>> … <<<END X>>>`` block it answers 1 / relevant / 7 for everything. Text
  inside a well-formed block is ignored, which is what the client's delimiting must guarantee.
* Usage: prompt_tokens = ceil(chars of all messages / 4), completion_tokens = ceil(chars of content / 4).
  Totals count every 200 response, so a client ledger can be compared with them.
* Faults: a marker ``[[fault:KIND:N]]`` or ``[[fault:KIND:N:TAG]]`` anywhere in the request makes the first N
  attempts of that exact request (optionally only for task tags starting with TAG) fail with KIND:
  429 (Retry-After), 500, 503, hang (no answer: the client must time out), malformed, truncated
  (finish_reason=length), missing (one entry dropped), refusal, echo (the answer echoes the template: every string
  becomes the prompt's placeholder for its key, e.g. ``"<sub-domain>"``, and a list gets a ``"1234567890"`` too,
  as SmolLM2-135M answered), digits (every list gets ``"1234567890"``).
* Slow endpoints: ``latency_s`` delays every answer; ``slots=1`` makes requests queue behind each other (a
  single-slot llama.cpp server), and an abandoned request is still computed to the end (as a non-streamed request
  is on such servers), so a client retrying a timeout waits behind its own dead request.
* ``response_format`` dialects: ``json_schema=False`` rejects ``{"type": "json_schema", ...}`` with HTTP
  ``json_schema_status`` (400: an endpoint with JSON mode only; 500: llama-cpp-python's server); ``object_schema=
  False`` rejects ``{"type": "json_object", "schema": ...}`` with 400 (plain JSON mode only). ``formats`` counts
  the dialects received (json_schema / json_object+schema / json_object / none).

* Judging (``judge*`` tags, keys RESPONSE_A / RESPONSE_B): a *planted judge* preferring the response with more
  list items; equal counts always answer "A" (position bias, so the two orders disagree: a tie).
  ``tiebreak*``: the response with the larger sum of naive concept scores over the CONCEPTS block, equal -> "A".
  ``generate*``: a bulleted list when a concept mentions lists, else one line of prose.

Admin: ``GET /admin/stats``, ``POST /admin/reset``, ``POST /admin/config`` (JSON of settings).
Run standalone: ``python tests/llm_server.py --port 0 --latency 0.3`` prints ``PORT <n>``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import re
import sys
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

BLOCK_RE = re.compile(r"<<<BEGIN ([A-Z0-9_]+)>>>\n(.*?)\n<<<END \1>>>", re.S)
TAG_RE = re.compile(r"\[preflens:([A-Za-z0-9_.-]+)\]")
FAULT_RE = re.compile(r"\[\[fault:([a-z0-9]+):(\d+)(?::([A-Za-z0-9_-]+))?\]\]")
WORD_RE = re.compile(r"[a-z0-9]+")
INJECTION = "ignore previous instructions"


def concept_word(name: str) -> str:
    m = WORD_RE.search(name.lower())
    return m.group(0) if m else "x"


def naive_score(text: str, concept: str) -> int:
    w = concept_word(concept)
    return min(7, 1 + 2 * len(re.findall(rf"\b{re.escape(w)}\b", text.lower())))


LIST_RE = re.compile(r"^\s*(?:[-*\u2022]|\d+[.)])\s+", re.M)


def list_items(text: str) -> int:
    """Lines that are list items (bullets or numbered): the planted judge's one concept."""
    return len(LIST_RE.findall(text))


def _h(*parts: str) -> int:
    return int(hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:8], 16)


class State:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.latency_s = 0.0
        self.json_schema = True
        self.hang_s = 5.0
        self.retry_after_ms = 50
        self.relevance_rate = 0.7
        self.json_schema_status = 400
        self.object_schema = True
        self.slots: int | None = None
        self._slot_sem: threading.Semaphore | None = None
        self.reset()

    def slot(self) -> threading.Semaphore | None:
        """The semaphore of the server's ``slots`` (None: unlimited), created on first use."""
        with self.lock:
            if self.slots and self._slot_sem is None:
                self._slot_sem = threading.Semaphore(self.slots)
            return self._slot_sem

    def reset(self) -> None:
        self.requests = 0
        self.ok_requests = 0
        self.prompt_tokens = 0
        self.completion_tokens = 0
        self.by_tag: Counter[str] = Counter()
        self.faults: Counter[str] = Counter()
        self.formats: Counter[str] = Counter()
        self.max_tokens_seen: list[int | None] = []
        self.last_response_format: dict[str, Any] = {}
        self.attempts: Counter[str] = Counter()
        self.authorization_seen: set[str] = set()
        self.max_in_flight = 0
        self.in_flight = 0

    def snapshot(self) -> dict[str, Any]:
        with self.lock:
            return {
                "requests": self.requests,
                "ok_requests": self.ok_requests,
                "prompt_tokens": self.prompt_tokens,
                "completion_tokens": self.completion_tokens,
                "by_tag": dict(self.by_tag),
                "faults": dict(self.faults),
                "formats": dict(self.formats),
                "max_tokens_seen": list(self.max_tokens_seen),
                "last_response_format": self.last_response_format,
                "max_in_flight": self.max_in_flight,
            }


# ---- the naive model ---------------------------------------------------------------------------------


def _concepts(blocks: dict[str, str]) -> list[dict[str, str]]:
    try:
        return json.loads(blocks.get("CONCEPTS", "[]"))
    except json.JSONDecodeError:
        return []


def answer(tag: str, blocks: dict[str, str], steered: bool, st: State) -> dict[str, Any]:
    concepts = _concepts(blocks)
    query = blocks.get("QUERY", "")
    r1, r2 = blocks.get("RESPONSE_1", ""), blocks.get("RESPONSE_2", "")
    if tag.startswith("relevance"):
        out = []
        for c in concepts:
            w = concept_word(c["name"])
            rel = (
                steered
                or any(naive_score(t, c["name"]) > 1 for t in (query, r1, r2))
                or (_h(c["name"], query) % 1000 < st.relevance_rate * 1000)
                or w in query.lower()
            )
            out.append({"id": c["id"], "relevant": bool(rel)})
        return {"verdicts": out}
    if tag.startswith("comp"):
        out = []
        for c in concepts:
            s1, s2 = naive_score(r1, c["name"]), naive_score(r2, c["name"])
            a = 1 if steered or "positional" in c["name"].lower() else (1 if s1 > s2 else 2 if s2 > s1 else 0)
            out.append({"id": c["id"], "explanation": f"{c['name']}: {s1} vs {s2}", "answer": a})
        return {"verdicts": out}
    if tag.startswith("score-joint"):
        return {
            "scores": [
                {
                    "id": c["id"],
                    "explanation": "counted",
                    "score_1": 1 if steered else naive_score(r1, c["name"]),
                    "score_2": 1 if steered else naive_score(r2, c["name"]),
                }
                for c in concepts
            ]
        }
    if tag.startswith("score-single"):
        r = blocks.get("RESPONSE", "")
        return {
            "scores": [
                {"id": c["id"], "explanation": "counted", "score": 1 if steered else naive_score(r, c["name"])}
                for c in concepts
            ]
        }
    if tag.startswith("tag-propose"):
        words = Counter(w for w in WORD_RE.findall(blocks.get("QUERIES", "").lower()) if len(w) > 5)
        top = [w.capitalize() for w, _ in words.most_common(3)] or ["General"]
        return {"domains": top, "tasks": ["Advice", "Explanation"]}
    if tag.startswith("tag-assign"):
        items = json.loads(blocks.get("QUERIES", "[]"))
        opts = json.loads(blocks.get("OPTIONS", "{}"))
        out = []
        for it in items:
            text = it["query"].lower()
            doms = [d for d in opts.get("domains", []) if d.lower() in text] or ["None"]
            tasks = [t for t in opts.get("tasks", []) if _h(t, text) % 2 == 0] or ["None"]
            out.append({"id": it["id"], "domains": doms, "tasks": tasks})
        return {"tags": out}
    if tag.startswith("propose"):
        pool = [
            "Clarity",
            "Clarity of Explanation",
            "Conciseness",
            "Concise Answer",
            "Politeness",
            "Polite Tone",
            "Code Correctness",
            "Legal Accuracy",
            "Step-by-step Structure",
            "Structure",
            "Empathy",
            "Humor",
            "Citations",
            "Safety Warnings",
            "Actionability",
            "Examples",
            "Formality",
            "Directness",
        ]
        seed = _h(blocks.get("PAIRS", ""))
        names = [pool[(seed + 7 * i) % len(pool)] for i in range(10)]
        names = list(dict.fromkeys(names))
        return {"concepts": [{"name": n, "description": f"A good response shows {n.lower()}."} for n in names]}
    if tag.startswith("dedup"):
        pairs = json.loads(blocks.get("PAIRS", "[]"))
        return {"decisions": [{"id": p["id"], "same": concept_word(p["a"]) == concept_word(p["b"])} for p in pairs]}
    if tag.startswith("define"):
        return {
            "definitions": [
                {
                    "id": c["id"],
                    "definition": f"A high score indicates the response shows strong {c['name'].lower()}; "
                    f"A low score indicates the response lacks {c['name'].lower()}.",
                }
                for c in concepts
            ]
        }
    if tag.startswith("judge"):
        # planted judge: prefers the response with more list items; equal counts -> always "A" (position bias,
        # so the two orders disagree: an order-inconsistent pair)
        a, b = list_items(blocks.get("RESPONSE_A", "")), list_items(blocks.get("RESPONSE_B", ""))
        return {"explanation": f"list items {a} vs {b}", "final_answer": "B" if b > a else "A"}
    if tag.startswith("tiebreak"):
        # planted resolver: sums the naive concept scores of the listed concepts; equal -> "A" (position bias)
        ra, rb = blocks.get("RESPONSE_A", ""), blocks.get("RESPONSE_B", "")
        d = sum(naive_score(ra, c["name"]) - naive_score(rb, c["name"]) for c in concepts)
        return {"explanation": f"concept score difference {d}", "final_answer": "B" if d < 0 else "A"}
    if tag.startswith("generate"):
        # planted generator: a bulleted list when asked to consider a concept about lists, else prose
        words = " ".join(concept_word(c["name"]) for c in concepts)
        if any(re.search(r"\blists?\b", (c["name"] + " " + c.get("definition", "")).lower()) for c in concepts):
            return {"response": "Here is the answer:\n- first point\n- second point\n- third point\n- " + words}
        return {"response": f"Here is the answer in prose about {words or 'the query'}."}
    return {"error": f"unknown task {tag}"}


def _echo(obj: Any, prompt: str, key: str | None = None) -> Any:
    """``obj`` with every string (ids excepted) replaced by the prompt's placeholder for its key, and every list of
    strings by that placeholder plus ``"1234567890"``: a model that copies the template instead of answering."""
    if isinstance(obj, dict):
        return {k: v if k == "id" else _echo(v, prompt, k) for k, v in obj.items()}
    m = re.search(rf'"{re.escape(key)}":\s*\[?\s*"(<[^"<>]+>)"', prompt) if key else None
    if isinstance(obj, list):
        if obj and all(isinstance(x, str) for x in obj):
            return [m.group(1) if m else obj[0], "1234567890"]
        return [_echo(x, prompt, key) for x in obj]
    if isinstance(obj, str) and m:
        return m.group(1)
    return obj


def _format_kind(rf: dict[str, Any]) -> str:
    """The ``response_format`` dialect of a request."""
    kind = str(rf.get("type") or "none")
    return "json_object+schema" if kind == "json_object" and "schema" in rf else kind


def _drop_one(obj: dict[str, Any]) -> dict[str, Any]:
    for k, v in obj.items():
        if isinstance(v, list) and v:
            return {**obj, k: v[:-1]}
    return {}


# ---- HTTP -----------------------------------------------------------------------------------------------


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: Server

    def log_message(self, *args: Any) -> None:  # quiet
        pass

    def _send(self, code: int, body: dict[str, Any] | None, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(body or {}).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        try:
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):  # the client gave up (timed out): the work is done anyway
            self.close_connection = True

    def do_GET(self) -> None:  # noqa: N802
        if self.path.startswith("/admin/stats"):
            self._send(200, self.server.state.snapshot())
        else:
            self._send(404, {"error": {"message": "not found"}})

    def do_POST(self) -> None:  # noqa: N802
        st = self.server.state
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        if self.path.startswith("/admin/reset"):
            with st.lock:
                st.reset()
            return self._send(200, {"ok": True})
        if self.path.startswith("/admin/config"):
            cfg = json.loads(body or b"{}")
            with st.lock:
                for k, v in cfg.items():
                    setattr(st, k, v)
            return self._send(200, {"ok": True})
        if not self.path.rstrip("/").endswith("/chat/completions"):
            return self._send(404, {"error": {"message": "not found"}})
        with st.lock:
            st.in_flight += 1
            st.max_in_flight = max(st.max_in_flight, st.in_flight)
        try:
            self._chat(json.loads(body), st)
        finally:
            with st.lock:
                st.in_flight -= 1

    def _chat(self, req: dict[str, Any], st: State) -> None:
        messages = req.get("messages", [])
        content = "\n".join(str(m.get("content") or "") for m in messages)
        auth = self.headers.get("Authorization", "")
        rkey = hashlib.sha256(content.encode()).hexdigest()
        with st.lock:
            st.requests += 1
            st.attempts[rkey] += 1
            n_attempt = st.attempts[rkey]
            st.authorization_seen.add(auth)
        rf = req.get("response_format") or {}
        kind = _format_kind(rf)
        with st.lock:
            st.formats[kind] += 1
            st.max_tokens_seen.append(req.get("max_tokens"))
            st.last_response_format = rf
        if kind == "json_schema" and not st.json_schema:
            if st.json_schema_status == 500:  # what llama-cpp-python's server answers
                return self._send(500, {"error": {"message": "Internal Server Error", "type": "server_error"}})
            return self._send(
                st.json_schema_status,
                {
                    "error": {
                        "message": "response_format json_schema is not supported by this server",
                        "type": "invalid_request_error",
                    }
                },
            )
        if kind == "json_object+schema" and not st.object_schema:
            return self._send(
                400,
                {"error": {"message": "Unrecognized request argument: response_format.schema", "type": "invalid"}},
            )
        m = TAG_RE.search(content)
        tag = m.group(1) if m else "unknown"
        fault = None
        for kind, n, only in FAULT_RE.findall(content):
            if n_attempt <= int(n) and (not only or tag.startswith(only)):
                fault = kind
                break
        slot = st.slot()
        if slot is not None:
            slot.acquire()
        try:
            if st.latency_s:
                time.sleep(st.latency_s)
        finally:
            if slot is not None:
                slot.release()
        if fault:
            with st.lock:
                st.faults[fault] += 1
        if fault == "429":
            return self._send(
                429,
                {"error": {"message": "rate limited", "type": "rate_limit_error"}},
                {"Retry-After": "1", "retry-after-ms": str(st.retry_after_ms)},
            )
        if fault in {"500", "503"}:
            return self._send(int(fault), {"error": {"message": "server error", "type": "server_error"}})
        if fault == "hang":
            st.stop.wait(st.hang_s)
            self.close_connection = True
            return None
        blocks = {name: text for name, text in BLOCK_RE.findall(content)}
        outside = BLOCK_RE.sub("", content).lower()
        steered = INJECTION in outside
        obj = answer(tag, blocks, steered, st)
        text = json.dumps(obj)
        finish, refusal = "stop", None
        if fault == "malformed":
            text = text[: max(1, len(text) // 3)].replace('"', "'") + " }}"
        elif fault == "truncated":
            text, finish = text[: max(1, len(text) // 2)], "length"
        elif fault == "missing":
            text = json.dumps(_drop_one(obj))
        elif fault == "refusal":
            text, refusal = None, "I'm sorry, but I can't help with that."
        elif fault == "echo":
            text = json.dumps(_echo(obj, content))
        elif fault == "digits":
            text = json.dumps({k: [*v, "1234567890"] if isinstance(v, list) else v for k, v in obj.items()})
        pt = math.ceil(len(content) / 4)
        ct = math.ceil(len(text or refusal or "") / 4)
        with st.lock:
            st.ok_requests += 1
            st.prompt_tokens += pt
            st.completion_tokens += ct
            st.by_tag[tag] += 1
        self._send(
            200,
            {
                "id": "chatcmpl-" + rkey[:12],
                "object": "chat.completion",
                "created": int(time.time()),
                "model": req.get("model", "test"),
                "choices": [
                    {
                        "index": 0,
                        "finish_reason": finish,
                        "message": {"role": "assistant", "content": text, "refusal": refusal},
                    }
                ],
                "usage": {"prompt_tokens": pt, "completion_tokens": ct, "total_tokens": pt + ct},
            },
        )


class Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, port: int = 0) -> None:
        super().__init__(("127.0.0.1", port), Handler)
        self.state = State()


class LLMTestServer:
    """In-process server on a background thread: ``with LLMTestServer() as srv: srv.base_url``."""

    def __init__(self, port: int = 0, **settings: Any) -> None:
        self.httpd = Server(port)
        for k, v in settings.items():
            setattr(self.httpd.state, k, v)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def state(self) -> State:
        return self.httpd.state

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def stats(self) -> dict[str, Any]:
        return self.state.snapshot()

    def __enter__(self) -> LLMTestServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.state.stop.set()
        self.httpd.shutdown()
        self.httpd.server_close()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--latency", type=float, default=0.0)
    ap.add_argument("--no-json-schema", action="store_true")
    ap.add_argument("--json-schema-status", type=int, default=400)
    a = ap.parse_args()
    srv = Server(a.port)
    srv.state.latency_s = a.latency
    srv.state.json_schema = not a.no_json_schema
    srv.state.json_schema_status = a.json_schema_status
    print(f"PORT {srv.server_address[1]}", flush=True)
    try:
        srv.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    sys.exit(main())
