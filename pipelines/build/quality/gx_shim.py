"""The bridge to Great Expectations: a quiet, lazy import, spec -> ``ExpectationSuite``, and validation of a
suite on a pandas frame into :class:`~pipelines.build.quality.results.QualityResult` rows.

GE 1.x has no working DuckDB path (see ecosystem.md A.3), so a relation is read with ``con.sql(...).df()`` and
validated through an ephemeral context's pandas datasource (:class:`GxValidator`). GE is imported on first use
only (its import costs ~2 s), with a workaround for PySpark's Spark Connect import that can end the process (see
:func:`_without_unusable_spark_connect`).
"""

from __future__ import annotations

import contextlib
import functools
import json
import math
import os
import warnings
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pandas as pd

from pipelines.build.quality.results import GREAT_EXPECTATIONS, QualityResult
from pipelines.build.quality.specs import ExpectationSpec, SuiteSpec

if TYPE_CHECKING:  # pragma: no cover
    import great_expectations as gx


@contextlib.contextmanager
def _without_unusable_spark_connect() -> Iterator[None]:
    """Hide ``pyspark.sql.connect`` from GE's optional import when Spark Connect cannot work anyway.

    GE's ``compatibility/pyspark.py`` imports ``pyspark.sql.connect`` if PySpark is installed (it is, for
    the optional Spark build). Without ``grpc``, PySpark 4's ``sql/connect/utils.py`` then calls
    ``sys.exit(0)`` whenever ``__main__`` has no ``__file__`` (``python -c``, pytest-xdist workers): the
    process silently ends. Marking the package unimportable for the duration of GE's import makes GE
    fall back to "Spark Connect not available", which it handles.
    """
    import importlib.util
    import sys

    name = "pyspark.sql.connect"
    hide = name not in sys.modules and importlib.util.find_spec("grpc") is None
    if hide:
        try:
            hide = importlib.util.find_spec("pyspark") is not None
        except (ImportError, ValueError):
            hide = False
    if not hide:
        yield
        return
    sys.modules[name] = None  # type: ignore[assignment]  # import raises ImportError
    try:
        yield
    finally:
        if sys.modules.get(name, 0) is None:
            del sys.modules[name]


@functools.cache
def import_gx() -> Any:
    """Import Great Expectations quietly (no analytics, no INFO logs)."""
    import logging

    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    with _without_unusable_spark_connect():
        import great_expectations

    for name in ("great_expectations", "great_expectations.core", "great_expectations.data_context"):
        logging.getLogger(name).setLevel(logging.ERROR)
    return great_expectations


def to_gx_suite(spec: SuiteSpec) -> gx.ExpectationSuite:
    """The GE 1.x ``ExpectationSuite`` for ``spec`` (errored expectations left out)."""
    gx_mod = import_gx()
    import great_expectations.expectations as gxe

    suite = gx_mod.ExpectationSuite(name=spec.name)
    for exp in spec.expectations:
        suite.add_expectation(getattr(gxe, exp.type)(**exp.kwargs))
    return suite


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
    skip = {"batch_id", "column", "column_list", "result_format"}
    return ", ".join(f"{k}={_short(_jsonable(v), 120)}" for k, v in kwargs.items() if k not in skip)


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
    missing = ((res.get("details") or {}).get("mismatched") or {}).get("missing")
    if missing:  # a column set: what is missing says more than every column there is
        observed = f"missing {_short(_jsonable(list(missing)))}"
    elif "observed_value" in res:
        observed = _short(_jsonable(res["observed_value"]))
    elif unexpected_count:
        sample = [_jsonable(x) for x in (res.get("partial_unexpected_list") or [])[:5]]
        pct = f" ({unexpected_percent:.3g}%)" if unexpected_percent is not None else ""
        observed = f"{unexpected_count} unexpected{pct}, e.g. {_short(sample)}"
    elif unexpected_count == 0:
        observed = "0 unexpected"
    return QualityResult(
        suite=suite.name,
        table=suite.qualified_table,
        expectation_type=cfg.type,
        column=ExpectationSpec("", kwargs).column,
        success=bool(r.success),
        expected=_expected_text(kwargs),
        observed=observed,
        unexpected_count=int(unexpected_count) if unexpected_count is not None else None,
        unexpected_percent=float(unexpected_percent) if unexpected_percent is not None else None,
        error=error,
        engine=GREAT_EXPECTATIONS,
    )


class GxValidator:
    """One ephemeral GE context with a pandas datasource; one dataframe asset per suite."""

    def __init__(self) -> None:
        gx = import_gx()
        self.ctx = gx.get_context(mode="ephemeral")
        self.ctx.variables.progress_bars = {"globally": False, "metric_calculations": False}
        self.ds = self.ctx.data_sources.add_pandas("preflens_publication")

    def validate(self, spec: SuiteSpec, df: pd.DataFrame) -> list[QualityResult]:
        """The results of ``spec`` on ``df``, one per expectation."""
        asset = self.ds.add_dataframe_asset(spec.name)
        batch_def = asset.add_batch_definition_whole_dataframe(f"{spec.name}_whole")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            batch = batch_def.get_batch(batch_parameters={"dataframe": df})
            out = batch.validate(to_gx_suite(spec), result_format="SUMMARY")
        return [_from_gx(spec, r) for r in out.results]
