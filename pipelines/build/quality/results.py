"""The outcome of a quality run: one :class:`QualityResult` per check, gathered in a :class:`QualityReport`.

A check is a dbt data test (an invariant run by ``dbt build``, or a gate run by the checks stage) or a Great
Expectations expectation of the publication contract; both are the same kind of row, stored in
``ops.quality_results``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING

import pandas as pd

if TYPE_CHECKING:  # pragma: no cover
    from pipelines.build.quality.thresholds import QualityThresholds

DBT = "dbt"
GREAT_EXPECTATIONS = "great_expectations"

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
    """The outcome of one check on one table.

    For a dbt test: ``suite`` is the model it is attached to (a singular test: its own name), ``expectation_type``
    the generic test (``not_null``, ``accepted_values`` ...) or the singular test's name, ``unexpected_count`` the
    number of failing rows and ``observed`` where they are (``audit.<test>``).
    """

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
    #: the check did not apply (reason in ``observed``); counts as passed. Not a column of :meth:`to_frame`
    #: (there ``observed`` starts with ``skipped:``).
    skipped: bool = False
    #: what ran it: ``dbt`` or ``great_expectations`` (shown on the page, not stored)
    engine: str = GREAT_EXPECTATIONS

    def describe(self) -> str:
        """One readable line, e.g. ``[fct_predictions] marts.fct_predictions.prob_a: expression_is_true FAILED ...``."""
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
    """The checks of one run. ``success`` is true only if every blocking check passed.

    ``results`` are this run's (stored by :func:`~pipelines.build.quality.record.record_quality_run`);
    ``build_results`` are the data tests the build's ``dbt build`` ran, recorded when they ran: they count for
    ``success`` and are shown on the page, but are not stored again.
    """

    results: list[QualityResult] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    #: suite name -> why it was skipped (a gate disabled by a threshold of None)
    skip_reasons: dict[str, str] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    thresholds: QualityThresholds | None = None
    build_results: list[QualityResult] = field(default_factory=list)

    def skip(self, suite: str, table: str, reason: str, *, engine: str = DBT) -> None:
        """Record a check that did not apply: listed in ``skipped`` and as a passing ``suite_skipped`` row."""
        self.skipped.append(suite)
        self.skip_reasons[suite] = reason
        self.results.append(
            QualityResult(
                suite, table, "suite_skipped", None, True, observed=f"skipped: {reason}", skipped=True, engine=engine
            )
        )

    @property
    def all_results(self) -> list[QualityResult]:
        """The build's earlier results, then this run's."""
        return [*self.build_results, *self.results]

    @property
    def success(self) -> bool:
        """True when every *blocking* check passed (non-blocking failures are warnings)."""
        return all(r.success or not r.blocking for r in self.all_results)

    def failures(self) -> list[QualityResult]:
        """Failed blocking checks: what stops publication."""
        return [r for r in self.all_results if not r.success and r.blocking]

    def warnings(self) -> list[QualityResult]:
        """Failed non-blocking checks: recorded and shown, publication goes ahead."""
        return [r for r in self.all_results if not r.success and not r.blocking]

    def to_frame(self) -> pd.DataFrame:
        """One row per result of this run, typed so DuckDB infers VARCHAR/BOOLEAN/BIGINT/DOUBLE even when all null.

        The columns are those of ``ops.quality_results`` (minus ``build_id``/``checked_at``); a skipped check is
        one passing row of type ``suite_skipped`` whose ``observed`` is ``skipped: <reason>``.
        """
        df = pd.DataFrame([asdict(r) for r in self.results], columns=list(_FRAME_DTYPES))
        return df.astype(_FRAME_DTYPES)

    def format_failures(self) -> str:
        """Readable summary of what failed, on which table/column, with the observed values."""
        fails = self.failures()
        n = sum(not r.skipped for r in self.all_results)
        if not fails:
            return f"all {n} checks passed" + (f" (skipped: {', '.join(self.skipped)})" if self.skipped else "")
        lines = [f"{len(fails)} of {n} checks failed:"]
        lines += [f"  - {r.describe()}" for r in fails]
        return "\n".join(lines)

    def format_warnings(self) -> str:
        """The failed non-blocking checks (recorded, publication goes ahead), one line each; '' when none."""
        return "\n".join(f"  - {r.describe()}" for r in self.warnings())

    def __str__(self) -> str:
        return self.format_failures()
