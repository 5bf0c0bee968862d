"""Ingest runs a dead process left ``running`` in ``raw.ingest_runs``: found and closed by the next ingest.

An ingest killed outright (``kill -9``, power loss) cannot close its own row. The next ingest (``preflens ingest``,
or the ingest stage of ``preflens run``) closes it, when no live process can still be writing it: only when this
process holds the build lock of the warehouse the connection's file is in, as every command that writes the build
file does. Then the row is ``interrupted``, with what the warehouse shows of it: the rows each of its files
committed (each file is committed on its own; ``raw.labels.first_ingest_id``, ``raw.quarantine.ingest_id``), in
``rows_loaded`` and ``rows_quarantined``, and the files in ``reason``. What it does not show stays NULL:
``rows_read``, ``rows_duplicate`` (duplicates leave no row) and ``finished_at`` (when it died is not known).
"""

from __future__ import annotations

from datetime import datetime

import duckdb

from pipelines.core.lock import no_live_writer
from pipelines.ingest.model import RUN_INTERRUPTED, RUN_RUNNING

#: the start of the reason of a run closed this way
DIED = "interrupted: the process died mid-ingest"


def settle_interrupted_runs(con: duckdb.DuckDBPyConnection, *, found_by: str, now: datetime) -> list[str]:
    """Close every ``running`` row of ``raw.ingest_runs`` as ``interrupted``, with what is known of it; the ids
    closed. Does nothing unless :func:`no_live_writer` (a row may then be a live ingest's)."""
    if not no_live_writer(con):
        return []
    stale = con.execute(
        "select ingest_id, files from raw.ingest_runs where status = ? order by started_at", [RUN_RUNNING]
    ).fetchall()
    for ingest_id, files in stale:
        committed = _committed_rows(con, ingest_id)
        loaded = sum(n for n, _ in committed.values())
        quarantined = sum(q for _, q in committed.values())
        con.execute(
            """update raw.ingest_runs set status = ?, rows_loaded = ?, rows_quarantined = ?, reason = ?
               where ingest_id = ? and status = ?""",
            [
                RUN_INTERRUPTED,
                loaded,
                quarantined,
                _reason(list(files or []), committed, found_by, now),
                ingest_id,
                RUN_RUNNING,
            ],
        )
    return [row[0] for row in stale]


def _committed_rows(con: duckdb.DuckDBPyConnection, ingest_id: str) -> dict[str, tuple[int, int]]:
    """Per file: the labels it loaded and the rows it quarantined under ``ingest_id`` (files with any)."""
    rows = con.execute(
        """select source_file, sum(labels), sum(quarantined) from (
               select source_file, count(*) as labels, 0 as quarantined from raw.labels
               where first_ingest_id = $id group by source_file
               union all
               select source_file, 0, count(*) from raw.quarantine where ingest_id = $id group by source_file
           ) group by source_file""",
        {"id": ingest_id},
    ).fetchall()
    return {str(f): (int(n), int(q)) for f, n, q in rows}


def _reason(files: list[str], committed: dict[str, tuple[int, int]], found_by: str, now: datetime) -> str:
    done = [f"{f} ({n} loaded, {q} quarantined)" for f, (n, q) in committed.items()]
    rest = [f for f in files if f not in committed]
    parts = [
        f"{DIED} (found by {found_by} at {now:%Y-%m-%d %H:%M:%S} UTC, no live process holding the build lock)",
        f"committed before it: {', '.join(done)}" if done else "no file had committed a row",
    ]
    if rest:
        parts.append(f"no row committed from: {', '.join(rest)} (not reached, rolled back, or duplicates only)")
    parts.append("rows read and duplicates are unknown")
    return "; ".join(parts)
