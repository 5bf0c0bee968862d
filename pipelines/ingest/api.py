"""The ingest entry point: read, adapt, validate and load files into the raw tables."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from pathlib import Path

import duckdb

from pipelines.core.ids import new_id
from pipelines.core.warehouse import ensure_schemas
from pipelines.ingest.adapters import FORMATS, Options, adapt, detect_format
from pipelines.ingest.load import write_file
from pipelines.ingest.model import MECHANISM_TYPES, FileSummary, IngestError, IngestSummary
from pipelines.ingest.readers import read_path

Progress = Callable[[str], None]


def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def ingest_paths(
    con: duckdb.DuckDBPyConnection,
    paths: Iterable[str | Path],
    *,
    fmt: str | None = None,
    domain: str | None = None,
    mechanism: str | None = None,
    mechanism_type: str | None = None,
    progress: Progress | None = None,
) -> IngestSummary:
    """Ingest files into ``raw.items/labels/domains/quarantine`` and record one ``raw.ingest_runs`` row.

    Each file is loaded in its own transaction. All files are processed; then an :class:`IngestError` is raised if
    any had no usable row (its quarantine rows are kept). A missing file, an unknown format or bad arguments raise
    before anything is written. ``progress`` receives one human-readable message per step.
    """
    say = progress or (lambda _msg: None)
    files = [Path(p) for p in paths]
    if not files:
        raise IngestError("no input files given")
    missing = [str(p) for p in files if not p.is_file()]
    if missing:
        raise IngestError(f"input file not found: {', '.join(missing)}")
    if fmt is not None and fmt not in FORMATS:
        raise IngestError(f"unknown format {fmt!r} (expected {'|'.join(FORMATS)})")
    if mechanism_type is not None and mechanism_type not in MECHANISM_TYPES:
        raise IngestError(f"unknown mechanism type {mechanism_type!r} (expected {'|'.join(MECHANISM_TYPES)})")
    opts = Options(domain=domain, mechanism=mechanism, mechanism_type=mechanism_type)

    ensure_schemas(con)
    started = _now()
    summary = IngestSummary(ingest_id=new_id(now=started, stamp="%Y%m%dT%H%M%S", suffix_len=8))
    con.execute(
        "insert into raw.ingest_runs (ingest_id, started_at, files) values (?, ?, ?)",
        [summary.ingest_id, started, [str(p.resolve()) for p in files]],
    )
    failures: list[str] = []
    try:
        for path in files:
            name = str(path.resolve())
            say(f"reading {name}")
            raw = read_path(path)
            # a file where no record parsed has no columns to detect from: adapt it as canonical, so its
            # quarantine rows are kept and the "no usable rows" error names the reasons
            file_fmt = fmt or (detect_format(raw.columns) if raw.columns else "canonical")
            adapted = adapt(raw, file_fmt, opts)
            say(f"loading {adapted.rows_read} rows from {name} as {file_fmt}")
            fs = write_file(con, adapted, FileSummary(path=name, format=file_fmt), summary.ingest_id, _now())
            summary.files.append(fs)
            say(
                f"{name}: loaded {fs.loaded}, duplicates {fs.duplicates}, quarantined {fs.quarantined}, "
                f"skipped {fs.skipped}"
            )
            if fs.usable == 0:
                top = ", ".join(f"{r} ({n})" for r, n in fs.quarantine_reasons.most_common(3))
                failures.append(
                    f"{name}: no usable rows out of {fs.rows_read}" + (f"; top reasons: {top}" if top else "")
                )
    except IngestError as exc:
        _finish_run(con, summary)
        exc.summary = summary
        raise
    _finish_run(con, summary)
    if failures:
        raise IngestError("; ".join(failures), summary)
    return summary


def _finish_run(con: duckdb.DuckDBPyConnection, summary: IngestSummary) -> None:
    con.execute(
        """update raw.ingest_runs set finished_at = ?, rows_read = ?, rows_loaded = ?, rows_duplicate = ?,
                  rows_quarantined = ? where ingest_id = ?""",
        [_now(), summary.rows_read, summary.loaded, summary.duplicates, summary.quarantined, summary.ingest_id],
    )
