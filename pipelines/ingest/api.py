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
from pipelines.ingest.model import (
    MECHANISM_TYPES,
    RUN_COMPLETED,
    RUN_FAILED,
    RUN_INTERRUPTED,
    RUN_RUNNING,
    RUN_WARNINGS,
    FileSummary,
    IngestError,
    IngestSummary,
)
from pipelines.ingest.readers import R_TRUNCATED, RawTable, read_path
from pipelines.ingest.runs import settle_interrupted_runs

Progress = Callable[[str], None]
TRUNCATED = "the gzip stream ends early: the file is truncated"


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
    mechanism_type_default: str | None = None,
    allow_unlabelled: bool = False,
    progress: Progress | None = None,
) -> IngestSummary:
    """Ingest files into ``raw.items/labels/domains/quarantine`` and record one ``raw.ingest_runs`` row.

    Each file is committed on its own (one transaction each), and every file is attempted: a file that cannot be
    read (not text, damaged, not UTF-8 where it must be) or has no usable row fails alone, with its reason in the
    summary. Then, if any failed, an :class:`IngestError` naming each failed file and why is raised, carrying the
    summary of all files. The ``raw.ingest_runs`` row is always closed: ``finished_at``, ``status`` (``completed``,
    ``completed_with_warnings``, ``failed``, ``interrupted``) and ``reason``. A missing file, a directory, an
    unknown format or bad arguments raise before anything is written. ``progress`` receives one message per step.
    ``mechanism_type_default`` is the type of verdicts whose file names none (AnnotatedPairs ``unknown`` annotators,
    the ICAI CSV's ``preferred_text``). ``allow_unlabelled`` (`preflens score` only) loads a row without a winner as
    an item with no label row (``FileSummary.unlabelled``) instead of quarantining it; a winner that is present is
    checked as always.
    """
    say = progress or (lambda _msg: None)
    files = [Path(p) for p in paths]
    if not files:
        raise IngestError("no input files given")
    _check_paths(files)
    if fmt is not None and fmt not in FORMATS:
        raise IngestError(f"unknown format {fmt!r} (expected {'|'.join(FORMATS)})")
    for flag, value in (("", mechanism_type), (" default", mechanism_type_default)):
        if value is not None and value not in MECHANISM_TYPES:
            raise IngestError(f"unknown mechanism type{flag} {value!r} (expected {'|'.join(MECHANISM_TYPES)})")
    opts = Options(
        domain=domain,
        mechanism=mechanism,
        mechanism_type=mechanism_type,
        mechanism_type_default=mechanism_type_default,
        allow_unlabelled=allow_unlabelled,
    )

    ensure_schemas(con)
    started = _now()
    summary = IngestSummary(ingest_id=new_id(now=started, stamp="%Y%m%dT%H%M%S", suffix_len=8))
    # rows a killed ingest left running
    settle_interrupted_runs(con, found_by=f"ingest {summary.ingest_id}", now=started)
    con.execute(
        "insert into raw.ingest_runs (ingest_id, started_at, files, status) values (?, ?, ?, ?)",
        [summary.ingest_id, started, [str(p.resolve()) for p in files], RUN_RUNNING],
    )
    current = ""
    try:
        for path in files:
            current = str(path.resolve())
            _ingest_file(con, path, current, fmt, opts, summary, say)
    except KeyboardInterrupt:
        done = sum(f.committed for f in summary.files)
        _close_quietly(
            con,
            summary,
            RUN_INTERRUPTED,
            f"interrupted while ingesting {current}; {done} of {len(files)} files were committed before it "
            "(the counts are theirs)",
        )
        raise
    except BaseException as exc:
        _close_quietly(con, summary, RUN_FAILED, f"stopped by an unexpected error while ingesting {current}: {exc}")
        raise
    warnings = summary.warnings()
    failed = summary.failed
    if failed:
        message = "; ".join(f"{f.path}: {f.error}" for f in failed)
        if len(summary.files) > 1:
            ok = len(summary.files) - len(failed)
            message = f"{len(failed)} of {len(summary.files)} files failed (the other {ok} are committed): {message}"
        _close_run(con, summary, RUN_FAILED, "; ".join([message, *warnings]))
        raise IngestError(message, summary)
    _close_run(con, summary, RUN_WARNINGS if warnings else RUN_COMPLETED, "; ".join(warnings) or None)
    return summary


def _check_paths(files: list[Path]) -> None:
    """Every input is an existing regular file; a directory is named as one."""
    dirs = [str(p) for p in files if p.is_dir()]
    if dirs:
        raise IngestError(
            f"{', '.join(dirs)} {'is a directory' if len(dirs) == 1 else 'are directories'}, not a file: "
            "pass the files in it (e.g. DIR/*.jsonl.gz)"
        )
    missing = [str(p) for p in files if not p.exists()]
    if missing:
        raise IngestError(f"input file not found: {', '.join(missing)}")
    special = [str(p) for p in files if not p.is_file()]
    if special:
        raise IngestError(f"not a regular file: {', '.join(special)}")


def _ingest_file(
    con: duckdb.DuckDBPyConnection,
    path: Path,
    name: str,
    fmt: str | None,
    opts: Options,
    summary: IngestSummary,
    say: Progress,
) -> None:
    """Read, adapt and load one file in its own transaction and add its :class:`FileSummary` to ``summary`` (as soon
    as it is committed, so an interruption after that still counts it); a problem with the file is recorded there,
    not raised."""
    say(f"reading {name}")
    file_fmt = fmt or "unknown"
    try:
        raw = read_path(path)
        # a file where no record parsed has no columns to detect from: adapt it as canonical, so its
        # quarantine rows are kept and the "no usable rows" error names the reasons
        file_fmt = fmt or (detect_format(raw.columns) if raw.columns else "canonical")
        adapted = adapt(raw, file_fmt, opts)
        say(f"loading {adapted.rows_read} rows from {name} as {file_fmt}")
        fs = write_file(con, adapted, FileSummary(path=name, format=file_fmt), summary.ingest_id, _now())
    except IngestError as exc:
        summary.files.append(FileSummary(path=name, format=file_fmt, error=str(exc)))
        say(f"{name}: failed, nothing loaded: {exc}")
        return
    summary.files.append(fs)
    cut = raw.cut_records if isinstance(raw, RawTable) else 0
    truncated = TRUNCATED if isinstance(raw, RawTable) and raw.truncated else None
    if fs.usable == 0:
        top = ", ".join(f"{r} ({n})" for r, n in fs.quarantine_reasons.most_common(3))
        fs.error = "; ".join(
            x for x in (f"no usable rows out of {fs.rows_read}", top and f"top reasons: {top}", truncated) if x
        )
    elif truncated:
        n = fs.rows_read
        fs.warnings.append(
            f"{truncated}; read {n} row{'s' if n != 1 else ''} before the end, "
            + (f"the last one cut off and quarantined ('{R_TRUNCATED}')" if cut else "none cut off")
        )
    say(f"{name}: loaded {fs.loaded}, duplicates {fs.duplicates}, quarantined {fs.quarantined}, skipped {fs.skipped}")
    for warning in fs.warnings:
        say(f"warning: {name}: {warning}")


def _close_run(con: duckdb.DuckDBPyConnection, summary: IngestSummary, status: str, reason: str | None) -> None:
    """Close the run's ``raw.ingest_runs`` row with its totals, status and reason."""
    con.execute(
        """update raw.ingest_runs set finished_at = ?, rows_read = ?, rows_loaded = ?, rows_duplicate = ?,
                  rows_quarantined = ?, status = ?, reason = ? where ingest_id = ?""",
        [
            _now(),
            summary.rows_read,
            summary.loaded,
            summary.duplicates,
            summary.quarantined,
            status,
            reason,
            summary.ingest_id,
        ],
    )


def _close_quietly(con: duckdb.DuckDBPyConnection, summary: IngestSummary, status: str, reason: str) -> None:
    """Close the run on the way out of an exception, never masking that exception."""
    try:
        _close_run(con, summary, status, reason)
    except duckdb.Error:
        pass
