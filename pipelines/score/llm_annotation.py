"""A score run's items annotated by the LLM annotator with a fit's catalog and version, reusing the warehouse cache.

The fit's annotator version is ``llm-<prompt version>:<model>`` (pipelines/annotate/llm.py). A score run runs the
LLM annotator on its own file (never on the build database: the pairs must not become training data) with the
fit's concepts (``raw.concepts`` of that version in the build database), the fit's prompt version (this preflens
must have it) and model, and the endpoint from the environment as ``preflens annotate`` takes it
(:func:`pipelines.llm.config.load_llm_config`). What the warehouse's cache holds for the run's items is copied into
the run's file first (the answered cells of the fit's version, ``raw.annotation_votes``, and the answered requests
of its model, ``raw.llm_cache``), so a pair the warehouse already annotated costs no call.
The answers of the calls made are kept in the build database's cache, ledger and ``raw.llm_runs`` (what the
calls cost is recorded where every LLM spend is), never its items, labels or annotations.

Without an endpoint (no ``PREFLENS_LLM_MODEL`` nor ``PREFLENS_LLM_BASE_URL``), the cache must answer every call:
a dry run counts the calls the cache cannot answer, and any is a clear error before anything is written.
"""

from __future__ import annotations

from pathlib import Path

import duckdb

from pipelines.annotate.llm import PROMPT_VERSION, AnnotateReport, annotate_llm, annotator_version
from pipelines.llm.config import LLMConfig, load_llm_config
from pipelines.llm_apps.discover.catalog import LLMConcept
from pipelines.score.fit import FitSpec, ScoreError
from pipelines.score.item_rows import copy_item_rows

_VERSION_PREFIX = "llm-"


def build_db_path(build: duckdb.DuckDBPyConnection) -> Path:
    """The file of the build database connection ``build``."""
    rows = build.execute("select path from duckdb_databases() where database_name = current_database()").fetchall()
    if not rows or not rows[0][0]:
        raise ScoreError("the build database connection has no file")
    return Path(str(rows[0][0]))


def fit_concepts(build: duckdb.DuckDBPyConnection, fit: FitSpec) -> list[LLMConcept]:
    """The fit's LLM concepts (``raw.concepts`` of its annotator version), each with the definition it was asked
    with (its definition hash must match: the votes are keyed by it)."""
    rows = build.execute(
        "select concept, definition, description, origin, is_shared, domains, definition_hash from raw.concepts "
        "where annotator = ? and annotator_version = ? order by concept",
        [fit.annotator, fit.annotator_version],
    ).fetchall()
    if not rows:
        raise ScoreError(
            f"the build database has no concept catalog of {fit.annotator} version {fit.annotator_version} "
            f"(raw.concepts), the fit's ({fit.fit_id})"
        )
    out = []
    for name, definition, description, origin, is_shared, domains, stored_hash in rows:
        concept = LLMConcept(
            str(name), str(definition), str(description or ""), str(origin), bool(is_shared), tuple(domains or ())
        )
        if concept.definition_hash != stored_hash:
            raise ScoreError(f"concept {name!r} of {fit.annotator_version}: its definition does not match its hash")
        out.append(concept)
    return out


def fit_llm_config(fit: FitSpec, warehouse: Path) -> tuple[LLMConfig, bool]:
    """(config, endpoint configured): the environment's LLM settings with the fit's model (from its version)."""
    prefix = f"{_VERSION_PREFIX}{PROMPT_VERSION}:"
    if not fit.annotator_version.startswith(prefix):
        raise ScoreError(
            f"fit {fit.fit_id} used LLM annotator version {fit.annotator_version}; this preflens asks with prompt "
            f"version {PROMPT_VERSION} ({prefix}<model>) and cannot reproduce it: score with a fit of the current "
            "prompt version"
        )
    config = load_llm_config(warehouse=warehouse)
    configured = config.configured
    if not config.model:
        config = config.with_overrides(model=fit.annotator_version[len(prefix) :])
    if annotator_version(config) != fit.annotator_version:
        raise ScoreError(
            f"the configured LLM model {config.model!r} gives annotator version {annotator_version(config)}, not the "
            f"fit's {fit.annotator_version}: set PREFLENS_LLM_MODEL to the fit's model"
        )
    return config, configured


def copy_cached_answers(
    build: duckdb.DuckDBPyConnection, con: duckdb.DuckDBPyConnection, fit: FitSpec, model: str
) -> int:
    """Copy what the warehouse's LLM cache holds for the items of ``con``: the answered cells of the fit's version
    (``raw.annotation_votes``, keyed by each concept's definition hash: the annotator asks nothing for them) and the
    answered requests of ``model`` (``raw.llm_cache``: a request asked again is a hit). Returns the cells copied."""
    cells = copy_item_rows(build, con, "annotation_votes", "t.annotator_version = ?", [fit.annotator_version])
    copy_item_rows(build, con, "llm_cache", "t.model = ? and t.status = 'ok'", [model])
    return cells


def keep_new_answers(build: duckdb.DuckDBPyConnection, con: duckdb.DuckDBPyConnection, run_id: str) -> None:
    """Keep run ``run_id``'s LLM run, ledger and new cache rows of ``con`` in the build database (one transaction)."""
    tables = (
        ("llm_runs", "insert or ignore", "run_id = ?"),
        ("llm_ledger", "insert", "run_id = ?"),
        ("llm_cache", "insert or ignore", "run_id = ?"),
    )
    reader = con.cursor()  # the annotator may leave a result open on ``con``
    try:
        frames = {
            name: reader.sql(f"select * from raw.{name} where {where}", params=[run_id]).to_arrow_table()
            for name, _, where in tables
        }
    finally:
        reader.close()
    build.execute("begin transaction")
    try:
        for name, verb, _ in tables:
            build.register("_score_llm_rows", frames[name])
            try:
                build.execute(f"{verb} into raw.{name} by name select * from _score_llm_rows")
            finally:
                build.unregister("_score_llm_rows")
        build.execute("commit")
    except BaseException:
        build.execute("rollback")
        raise


def annotate_with_llm(build: duckdb.DuckDBPyConnection, con: duckdb.DuckDBPyConnection, fit: FitSpec) -> AnnotateReport:
    """Annotate the items of the score file ``con`` with the fit's LLM catalog and version (see the module)."""
    concepts = fit_concepts(build, fit)
    config, configured = fit_llm_config(fit, build_db_path(build).parent)
    assert config.model is not None
    copy_cached_answers(build, con, fit, config.model)
    catalog = (f"fit {fit.fit_id}", concepts)
    if not configured:
        dry = annotate_llm(con, config, dry_run=True, catalog=catalog)
        if dry.stats.projected_calls:
            raise ScoreError(
                f"the warehouse's LLM cache does not answer every {fit.annotator_version} call for the pairs to "
                f"score (up to {dry.stats.projected_calls} calls for {dry.items_pending} pairs to annotate), and no "
                "LLM endpoint is configured: set PREFLENS_LLM_MODEL (and PREFLENS_LLM_BASE_URL) as for "
                "`preflens annotate`, then score again"
            )
    report = annotate_llm(con, config, catalog=catalog)
    if report.run_id:
        keep_new_answers(build, con, report.run_id)
    return report
