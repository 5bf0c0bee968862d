"""Quality gates on the marts: Great Expectations suites defined in code, run on pandas frames.

The package is split by job: :mod:`.thresholds` (the tunable bounds), :mod:`.specs` (spec types and SQL
helpers), :mod:`.expectations` (suites on a table's own rows), :mod:`.gates` (gates on derived frames),
:mod:`.registry` (every suite in run order), :mod:`.gx_shim` (the Great Expectations bridge),
:mod:`.runner` (running them), :mod:`.docs` (the HTML page) and :mod:`.record` (storing a run).

Importing this package does not import Great Expectations (that happens on the first run).
:func:`write_quality_report` renders a run as a self-contained HTML page (``warehouse/quality/index.html``).
"""

from pipelines.build.quality.docs import render_quality_report, write_quality_report
from pipelines.build.quality.record import record_quality_run, store_quality_results
from pipelines.build.quality.registry import SUITES
from pipelines.build.quality.runner import QualityReport, QualityResult, run_quality_checks
from pipelines.build.quality.specs import SuiteDefinition, quote_ident
from pipelines.build.quality.thresholds import QualityThresholds, coerce_thresholds, thresholds_from_dbt_vars

__all__ = [
    "SUITES",
    "QualityReport",
    "QualityResult",
    "QualityThresholds",
    "SuiteDefinition",
    "coerce_thresholds",
    "quote_ident",
    "record_quality_run",
    "render_quality_report",
    "run_quality_checks",
    "store_quality_results",
    "thresholds_from_dbt_vars",
    "write_quality_report",
]
