"""Quality gates on the marts: Great Expectations suites defined in code, run on pandas frames.

Importing this package does not import Great Expectations (that happens on the first run).
:func:`write_quality_report` renders a run as a self-contained HTML page (``warehouse/quality/index.html``).
"""

from pipelines.build.quality.docs import render_quality_report, write_quality_report
from pipelines.build.quality.runner import QualityReport, QualityResult, run_quality_checks
from pipelines.build.quality.suites import SUITES, QualityThresholds, quote_ident

__all__ = [
    "SUITES",
    "QualityReport",
    "QualityResult",
    "QualityThresholds",
    "quote_ident",
    "render_quality_report",
    "run_quality_checks",
    "write_quality_report",
]
