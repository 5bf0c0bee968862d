"""Run the mart suites with Great Expectations on pandas frames pulled from DuckDB.

GE 1.x has no working DuckDB path (see ecosystem.md A.3), so each table is read with
``con.sql(...).df()`` and validated through an ephemeral context's pandas datasource.
"""

from __future__ import annotations

import json
import math
import time
import warnings
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd

from pipelines.build.quality.gx_shim import import_gx, to_gx_suite
from pipelines.build.quality.registry import SUITES
from pipelines.build.quality.specs import (
    ExpectationSpec,
    FrameQuery,
    Skip,
    SuiteDefinition,
    SuiteSpec,
    qualified,
    table_columns,
)
from pipelines.build.quality.thresholds import QualityThresholds, coerce_thresholds

_SAMPLE_MAX = 5
_FRAME_DTYPES: dict[str, str] = {
    "suite": "string",
    "table": "string",
    "expectation_type": "string",
    "column": "string",
    "success": "bool",
    "expected": "string",
    "observed": "string",
    "unexpected_count": "Int64",
    "unexpected_percent": "Float64",
    "error": "string",
    "blocking": "bool",
}


@dataclass(frozen=True)
class QualityResult:
    """The outcome of one expectation on one table."""

    suite: str
    table: str
    expectation_type: str
    column: str | None
    success: bool
    expected: str = ""
    observed: str = ""
    unexpected_count: int | None = None
    unexpected_percent: float | None = None
    error: str | None = None
    #: False for a recorded, non-blocking check: its failure does not stop publication
    blocking: bool = True
    #: the suite did not apply (reason in ``observed``); counts as passed. Not a column of :meth:`to_frame`
    #: (there ``observed`` starts with ``skipped:``).
    skipped: bool = False

    def describe(self) -> str:
        """One readable line, e.g. ``marts.fct_predictions.prob_a: expect_column_values_to_be_between ...``."""
        where = self.table + (f".{self.column}" if self.column else "")
        status = "skipped" if self.skipped else "ok" if self.success else "FAILED"
        parts = [f"[{self.suite}] {where}: {self.expectation_type} {status}"]
        if self.expected:
            parts.append(f"expected {self.expected}")
        if self.observed:
            parts.append(f"observed {self.observed}")
        if self.error:
            parts.append(f"error: {self.error}")
        return "; ".join(parts)


@dataclass
class QualityReport:
    """All expectation results of one run. ``success`` is true only if every expectation passed."""

    results: list[QualityResult] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    #: suite name -> why it was skipped (missing optional table, gate disabled, nothing to check)
    skip_reasons: dict[str, str] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    thresholds: QualityThresholds | None = None

    def skip(self, suite: str, table: str, reason: str) -> None:
        """Record a suite that did not apply: listed in ``skipped`` and as a passing ``suite_skipped`` row."""
        self.skipped.append(suite)
        self.skip_reasons[suite] = reason
        self.results.append(
            QualityResult(suite, table, "suite_skipped", None, True, observed=f"skipped: {reason}", skipped=True)
        )

    @property
    def success(self) -> bool:
        """True when every *blocking* expectation passed (non-blocking failures are warnings)."""
        return all(r.success or not r.blocking for r in self.results)

    def failures(self) -> list[QualityResult]:
        """Failed blocking expectations: what stops publication."""
        return [r for r in self.results if not r.success and r.blocking]

    def warnings(self) -> list[QualityResult]:
        """Failed non-blocking expectations: recorded and shown, publication goes ahead."""
        return [r for r in self.results if not r.success and not r.blocking]

    def to_frame(self) -> pd.DataFrame:
        """One row per expectation, typed so DuckDB infers VARCHAR/BOOLEAN/BIGINT/DOUBLE even when all null.

        The columns are those of ``ops.quality_results`` (minus ``build_id``/``checked_at``); a skipped
        suite is one passing row of type ``suite_skipped`` whose ``observed`` is ``skipped: <reason>``.
        """
        df = pd.DataFrame([asdict(r) for r in self.results], columns=list(_FRAME_DTYPES))
        return df.astype(_FRAME_DTYPES)

    def format_failures(self) -> str:
        """Readable summary of what failed, on which table/column, with the observed values."""
        fails = self.failures()
        n = sum(not r.skipped for r in self.results)
        if not fails:
            return f"all {n} expectations passed" + (f" (skipped: {', '.join(self.skipped)})" if self.skipped else "")
        lines = [f"{len(fails)} of {n} expectations failed:"]
        lines += [f"  - {r.describe()}" for r in fails]
        return "\n".join(lines)

    def format_warnings(self) -> str:
        """The failed non-blocking checks (recorded, publication goes ahead), one line each; '' when none."""
        return "\n".join(f"  - {r.describe()}" for r in self.warnings())

    def __str__(self) -> str:
        return self.format_failures()


# --------------------------------------------------------------------------------------------- helpers


def _jsonable(v: Any) -> Any:
    if isinstance(v, float) and math.isnan(v):
        return None
    if hasattr(v, "item") and not isinstance(v, (list, dict, str)):
        try:
            return v.item()
        except (ValueError, AttributeError):
            pass
    return v


def _short(v: Any, limit: int = 300) -> str:
    try:
        s = json.dumps(v, default=str, ensure_ascii=False)
    except (TypeError, ValueError):
        s = repr(v)
    return s if len(s) <= limit else s[: limit - 3] + "..."


def _expected_text(kwargs: dict[str, Any]) -> str:
    skip = {"batch_id", "column", "column_list", "column_A", "column_B", "result_format"}
    return ", ".join(f"{k}={_short(_jsonable(v), 120)}" for k, v in kwargs.items() if k not in skip)


def _column_of(kwargs: dict[str, Any]) -> str | None:
    return ExpectationSpec("", dict(kwargs)).column


def _from_gx(suite: SuiteSpec, r: Any) -> QualityResult:
    cfg = r.expectation_config
    kwargs = dict(cfg.kwargs)
    res: dict[str, Any] = dict(r.result or {})
    exc = r.exception_info or {}
    error = None
    if isinstance(exc, dict) and exc.get("raised_exception"):
        error = str(exc.get("exception_message") or "exception raised")
    observed = ""
    unexpected_count = res.get("unexpected_count")
    unexpected_percent = res.get("unexpected_percent")
    if "observed_value" in res:
        observed = _short(_jsonable(res["observed_value"]))
    elif unexpected_count:
        sample = [_jsonable(x) for x in (res.get("partial_unexpected_list") or [])[:_SAMPLE_MAX]]
        pct = f" ({unexpected_percent:.3g}%)" if unexpected_percent is not None else ""
        observed = f"{unexpected_count} unexpected{pct}, e.g. {_short(sample)}"
    elif unexpected_count == 0:
        observed = "0 unexpected"
    return QualityResult(
        suite=suite.name,
        table=suite.qualified_table,
        expectation_type=cfg.type,
        column=_column_of(kwargs),
        success=bool(r.success),
        expected=_expected_text(kwargs),
        observed=observed,
        unexpected_count=int(unexpected_count) if unexpected_count is not None else None,
        unexpected_percent=float(unexpected_percent) if unexpected_percent is not None else None,
        error=error,
    )


def _offending_rows(etype: str, kwargs: dict[str, Any], df: pd.DataFrame) -> pd.DataFrame:
    """The rows of ``df`` that violate one failed expectation (empty when it cannot tell)."""
    none = df.iloc[0:0]
    if etype.startswith("expect_table_"):
        return df
    col = kwargs.get("column")
    if col is not None and col in df.columns:
        s = df[col]
        if etype == "expect_column_values_to_be_in_set":
            return df[~s.isin(list(kwargs.get("value_set") or [])) & s.notna()]
        if etype == "expect_column_values_to_be_between":
            num = pd.to_numeric(s, errors="coerce")
            mask = pd.Series(False, index=df.index)
            if kwargs.get("min_value") is not None:
                mask |= num < kwargs["min_value"]
            if kwargs.get("max_value") is not None:
                mask |= num > kwargs["max_value"]
            return df[mask.fillna(False)]
        if etype == "expect_column_values_to_not_be_null":
            return df[s.isna()]
        return none
    a, b = kwargs.get("column_A"), kwargs.get("column_B")
    if etype == "expect_column_pair_values_to_be_equal" and a in df.columns and b in df.columns:
        return df[df[a] != df[b]]
    return none


def _with_row_labels(r: QualityResult, kwargs: dict[str, Any], df: pd.DataFrame, label_col: str) -> QualityResult:
    """Append the labels of the offending rows (a few) to a failed result on a derived frame."""
    if r.success or r.error or df.empty or label_col not in df.columns:
        return r
    bad = _offending_rows(r.expectation_type, kwargs, df)
    if bad.empty:
        return r
    labels = [str(x) for x in bad[label_col].head(_SAMPLE_MAX).tolist()]
    more = f" (+{len(bad) - len(labels)} more)" if len(bad) > len(labels) else ""
    observed = (r.observed + "; " if r.observed else "") + "rows: " + "; ".join(labels) + more
    return replace(r, observed=observed)


def _snake(name: str) -> str:
    return "".join("_" + c.lower() if c.isupper() else c for c in name).lstrip("_")


class _GxRunner:
    """One ephemeral GE context with a pandas datasource; one dataframe asset per suite."""

    def __init__(self) -> None:
        gx = import_gx()
        self.ctx = gx.get_context(mode="ephemeral")
        self.ctx.variables.progress_bars = {"globally": False, "metric_calculations": False}
        self.ds = self.ctx.data_sources.add_pandas("preflens_marts")

    def validate(self, spec: SuiteSpec, df: pd.DataFrame, row_label: str | None = None) -> list[QualityResult]:
        asset = self.ds.add_dataframe_asset(spec.name)
        batch_def = asset.add_batch_definition_whole_dataframe(f"{spec.name}_whole")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            batch = batch_def.get_batch(batch_parameters={"dataframe": df})
            out = batch.validate(to_gx_suite(spec), result_format="SUMMARY")
        results = []
        for r in out.results:
            res = _from_gx(spec, r)
            if row_label is not None:
                res = _with_row_labels(res, dict(r.expectation_config.kwargs), df, row_label)
            results.append(res)
        return results


# ---------------------------------------------------------------------------------------------- public


def run_quality_checks(
    db: Path | str | duckdb.DuckDBPyConnection,
    *,
    thresholds: QualityThresholds | Mapping[str, Any] | None = None,
    optional: Iterable[str] = (),
    only: Iterable[str] | None = None,
    suites: Iterable[SuiteDefinition] = SUITES,
) -> QualityReport:
    """Validate the marts of the build database.

    ``thresholds`` is a :class:`QualityThresholds` or a dict of its fields. ``db`` is a path (opened
    read-only, then closed; fails if this process already holds the file: pass the connection then) or an open connection whose current catalog holds
    schemas ``raw`` and ``marts``. ``optional`` lists suite names or table names whose table may be
    absent (then the suite is skipped); any other missing table is a failure. ``only`` restricts the run
    to those suite/table names. Never raises for data problems: inspect ``report.success``.
    """
    th = coerce_thresholds(thresholds)
    optional_set = set(optional)
    only_set = set(only) if only is not None else None
    report = QualityReport(thresholds=th)
    t0 = time.perf_counter()

    own = not isinstance(db, duckdb.DuckDBPyConnection)
    con = db if isinstance(db, duckdb.DuckDBPyConnection) else duckdb.connect(str(db), read_only=True)
    runner: _GxRunner | None = None
    try:
        for sdef in suites:
            if only_set is not None and not ({sdef.name, sdef.table} & only_set):
                continue
            table = f"{sdef.schema}.{sdef.table}"
            columns = table_columns(con, sdef.schema, sdef.table)
            if columns is None:
                if sdef.optional_table or {sdef.name, sdef.table, table} & optional_set:
                    report.skip(sdef.name, table, f"table {table} does not exist")
                else:
                    report.results.append(
                        QualityResult(sdef.name, table, "table_exists", None, False, "table exists", "missing")
                    )
                continue
            t = time.perf_counter()
            try:
                query = sdef.frame(con, th) if sdef.frame is not None else None
                if isinstance(query, Skip):
                    report.skip(sdef.name, table, query.reason)
                    continue
                if isinstance(query, FrameQuery):
                    df = con.execute(query.sql, list(query.params)).df()
                    columns = list(df.columns)
                else:
                    df = None
                spec = sdef.spec(con, columns, th)
                if df is None:
                    df = con.sql(f"select * from {qualified(sdef.schema, sdef.table)}").df()
            except duckdb.Error as exc:
                report.results.append(
                    QualityResult(
                        sdef.name,
                        table,
                        "suite_error",
                        None,
                        False,
                        error=f"could not build the checked frame: {str(exc).splitlines()[0]}",
                    )
                )
                continue
            for e in spec.expectations:
                if e.error is not None:
                    report.results.append(
                        QualityResult(sdef.name, table, _snake(e.type), e.column, False, error=e.error)
                    )
            if runner is None:
                ti = time.perf_counter()
                runner = _GxRunner()
                report.timings["gx_setup"] = time.perf_counter() - ti
            results = runner.validate(spec, df, sdef.row_label)
            if not sdef.blocking:
                results = [replace(r, blocking=False) for r in results]
            report.results.extend(results)
            report.timings[sdef.name] = time.perf_counter() - t
    finally:
        if own:
            con.close()
    report.timings["total"] = time.perf_counter() - t0
    return report
