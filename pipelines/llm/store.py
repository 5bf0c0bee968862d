"""The LLM tables of a run: ``raw.llm_runs`` (one row per run), ``raw.llm_cache`` (one answer per cache key) and
``raw.llm_ledger`` (one row per HTTP attempt), written by a writer thread that group-commits what is queued."""

from __future__ import annotations

import hashlib
import queue
import re
import threading
from collections import defaultdict
from collections.abc import Sequence
from datetime import UTC, datetime
from urllib.parse import urlparse

import duckdb

from pipelines.core.lock import no_live_writer
from pipelines.llm.config import LLMConfig
from pipelines.llm.types import RunStats

#: ``raw.llm_runs.status`` of a run whose process died (closed by the next LLM run, :func:`settle_interrupted_runs`)
RUN_INTERRUPTED = "interrupted"

CACHE_INSERT = """insert or replace into raw.llm_cache (cache_key, stage, template, template_version, model, params_json,
    item_id, status, raw_response, parsed_json, error, prompt_tokens, completion_tokens, latency_ms, attempts, run_id,
    created_at) values (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"""
LEDGER_INSERT = """insert into raw.llm_ledger (run_id, cache_key, stage, chunk_id, concepts, model, attempt, outcome,
    http_status, prompt_tokens, completion_tokens, cost_usd, price_known, latency_ms, backoff_s, created_at)
    values (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"""


def now_utc() -> datetime:
    """The naive UTC timestamp stored in the LLM tables."""
    return datetime.now(UTC).replace(tzinfo=None)


def chunk_id(concepts: Sequence[str] | None) -> str | None:
    """The ledger's id of a concept chunk: a hash of its sorted names."""
    if not concepts:
        return None
    return hashlib.sha256("\x1f".join(sorted(concepts)).encode()).hexdigest()[:12]


def cached_answers(con: duckdb.DuckDBPyConnection, keys: list[str]) -> dict[str, str]:
    """cache key -> parsed JSON of every successful cached answer among ``keys``, in one query."""
    if not keys:
        return {}
    import pyarrow as pa

    tbl = pa.table({"k": list(set(keys))})
    con.register("_llm_keys", tbl)
    try:
        rows = con.execute(
            "select c.cache_key, c.parsed_json from raw.llm_cache c join _llm_keys k on c.cache_key = k.k "
            "where c.status = 'ok'"
        ).fetchall()
    finally:
        con.unregister("_llm_keys")
    return {k: v for k, v in rows}


def settle_interrupted_runs(con: duckdb.DuckDBPyConnection, *, found_by: str) -> list[str]:
    """Close every ``running`` row of ``raw.llm_runs`` as ``interrupted``; the run ids closed.

    Only when this process holds the warehouse's build lock (:func:`no_live_writer`), so that no row can be a live
    run's. What the warehouse shows of the dead run fills its figures: the HTTP attempts its writer thread
    committed to ``raw.llm_ledger`` (``calls``, tokens, cost). What it does not show stays NULL: ``finished_at``
    (when it died), ``cache_hits`` and ``failed_calls`` (never written per attempt)."""
    if not no_live_writer(con):
        return []
    stale = [
        r[0]
        for r in con.execute("select run_id from raw.llm_runs where status = 'running' order by started_at").fetchall()
    ]
    for run_id in stale:
        con.execute(
            """update raw.llm_runs as r set status = ?, calls = l.calls, prompt_tokens = l.prompt_tokens,
                   completion_tokens = l.completion_tokens, cost_usd = l.cost_usd, message = ?
               from (select count(*) as calls, coalesce(sum(prompt_tokens), 0) as prompt_tokens,
                            coalesce(sum(completion_tokens), 0) as completion_tokens,
                            coalesce(sum(cost_usd), 0) as cost_usd
                     from raw.llm_ledger where run_id = ?) as l
               where r.run_id = ? and r.status = 'running'""",
            [
                RUN_INTERRUPTED,
                f"interrupted: the process died mid-run (found by {found_by} at {now_utc():%Y-%m-%d %H:%M:%S} UTC); "
                "calls, tokens and cost are the attempts raw.llm_ledger holds",
                run_id,
                run_id,
            ],
        )
    return stale


def record_run_start(
    con: duckdb.DuckDBPyConnection, run_id: str, command: str, config: LLMConfig, budget_usd: float | None
) -> None:
    host = urlparse(config.base_url).hostname if config.base_url else "api.openai.com"
    con.execute(
        "insert into raw.llm_runs (run_id, command, model, base_url_host, started_at, status, budget_usd) "
        "values (?, ?, ?, ?, ?, 'running', ?)",
        [run_id, command, config.model, host, now_utc(), budget_usd],
    )


def record_run_end(
    con: duckdb.DuckDBPyConnection, run_id: str, status: str, stats: RunStats, message: str | None
) -> None:
    s = stats
    con.execute(
        """update raw.llm_runs set finished_at = ?, status = ?, calls = ?, cache_hits = ?, failed_calls = ?,
           prompt_tokens = ?, completion_tokens = ?, cost_usd = ?, message = ? where run_id = ?""",
        [
            now_utc(),
            status,
            s.calls,
            s.cache_hits,
            s.failed,
            s.prompt_tokens,
            s.completion_tokens,
            s.cost_usd,
            message,
            run_id,
        ],
    )


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
            self._con.execute(
                f"insert {m.group(1) or ''}into {m.group(2)} ({col_list}) select {col_list} from _llm_batch"
            )
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
