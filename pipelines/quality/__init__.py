"""Quality gates on the marts: Great Expectations suites defined in code, run on pandas frames.

Importing this package does not import Great Expectations (that happens on the first run).
"""

from pipelines.quality.runner import QualityReport, QualityResult, run_quality_checks
from pipelines.quality.suites import SUITES, QualityThresholds, quote_ident

__all__ = [
    "SUITES",
    "QualityReport",
    "QualityResult",
    "QualityThresholds",
    "quote_ident",
    "run_quality_checks",
]
