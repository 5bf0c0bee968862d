"""Quality checks of a build: dbt data tests for the rules, Great Expectations for the publication contract.

One owner per rule:

- row and column invariants (keys, value sets, bounds, row counts reconciled with ``raw``) are dbt tests in the
  models' yml and ``dbt_project/data-tests/``, run by ``dbt build``; their results are read from dbt's artifacts
  (:mod:`.dbt_tests`) and recorded per build (:func:`recorded_dbt_tests`);
- the quality gates are dbt singular tests (``data-tests/gates/``, tag ``gate``) that the checks stage runs with
  the thresholds of :mod:`.thresholds` as vars (:func:`run_gate_tests`);
- Great Expectations checks the publication contract (:mod:`.contract`: each published relation present, with its
  documented columns, non-empty where it must be) and the page of every result is :mod:`.docs`.

Every dbt test keeps its failing rows in schema ``audit`` of the build file. The package is split by job:
:mod:`.results` (result types), :mod:`.thresholds`, :mod:`.specs` (GE spec types, SQL helpers), :mod:`.handle`
(who holds the build file while dbt runs), :mod:`.dbt_tests`, :mod:`.contract`, :mod:`.gx_shim` (the GE bridge),
:mod:`.runner` (gates, then contract), :mod:`.docs` (the HTML page) and :mod:`.record` (storing results).
Importing this package does not import Great Expectations (that happens on the first contract check).
"""

from pipelines.build.quality.contract import MUST_BE_NON_EMPTY, check_contract, published_relations
from pipelines.build.quality.dbt_tests import GATE_SELECTOR, read_test_results, run_gate_tests
from pipelines.build.quality.docs import render_quality_report, write_quality_report
from pipelines.build.quality.handle import BuildFile, BuildHandle, attach_build
from pipelines.build.quality.record import (
    record_quality_run,
    recorded_dbt_tests,
    store_quality_results,
    store_results,
)
from pipelines.build.quality.results import QualityReport, QualityResult
from pipelines.build.quality.runner import run_quality_checks
from pipelines.build.quality.specs import quote_ident
from pipelines.build.quality.thresholds import QualityThresholds, coerce_thresholds, thresholds_from_dbt_vars

__all__ = [
    "GATE_SELECTOR",
    "MUST_BE_NON_EMPTY",
    "BuildFile",
    "BuildHandle",
    "QualityReport",
    "QualityResult",
    "QualityThresholds",
    "attach_build",
    "check_contract",
    "coerce_thresholds",
    "published_relations",
    "quote_ident",
    "read_test_results",
    "record_quality_run",
    "recorded_dbt_tests",
    "render_quality_report",
    "run_gate_tests",
    "run_quality_checks",
    "store_quality_results",
    "store_results",
    "thresholds_from_dbt_vars",
    "write_quality_report",
]
