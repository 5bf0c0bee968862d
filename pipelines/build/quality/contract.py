"""The publication contract: what the served copy promises its readers, checked with Great Expectations on the
build database just before it is copied.

The published relations are the dbt models of schema ``marts`` (``publish`` copies that schema; docs/tables.md
describes them). For each: it is present, its documented columns (the ``columns:`` of its yml, read from dbt's
manifest) are present, and, for the relations a publication cannot do without (:data:`MUST_BE_NON_EMPTY`), it has
rows. Row and column invariants are dbt tests, not part of the contract.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import duckdb

from pipelines.build.quality.gx_shim import GxValidator
from pipelines.build.quality.results import QualityResult
from pipelines.build.quality.specs import MARTS, SuiteSpec, expect, qualified, table_columns

#: published relations that must have rows: the build being published, and what every reader starts from (items,
#: domains, mechanisms, the annotator and its concepts). The fit's outputs may be empty: a build whose mechanisms
#: all had too few pairs publishes its fct_fit_skips.
MUST_BE_NON_EMPTY: frozenset[str] = frozenset(
    {"fct_builds", "dim_items", "dim_domains", "dim_mechanisms", "dim_annotators", "dim_concepts", "fct_pair_concepts"}
)


@dataclass(frozen=True)
class PublishedRelation:
    """One relation of the served copy, as the contract sees it."""

    name: str
    #: the columns its yml documents (in yml order)
    columns: tuple[str, ...]
    non_empty: bool


def published_relations(manifest: Mapping[str, Any], schema: str = MARTS) -> list[PublishedRelation]:
    """The enabled dbt models of ``schema`` in ``manifest`` (dbt's ``manifest.json``), by name."""
    out = [
        PublishedRelation(
            name=str(node.get("alias") or node["name"]),
            columns=tuple(node.get("columns") or {}),
            non_empty=str(node.get("alias") or node["name"]) in MUST_BE_NON_EMPTY,
        )
        for node in manifest.get("nodes", {}).values()
        if node.get("resource_type") == "model" and node.get("schema") == schema
    ]
    return sorted(out, key=lambda r: r.name)


def contract_suite(relation: PublishedRelation, schema: str = MARTS) -> SuiteSpec:
    """The GE suite of one published relation: documented columns present, rows when it must have them."""
    expectations = (
        [expect("ExpectTableColumnsToMatchSet", column_set=list(relation.columns), exact_match=False)]
        if relation.columns
        else [expect("ExpectTableColumnCountToBeBetween", min_value=1)]
    )
    if relation.non_empty:
        expectations.append(expect("ExpectTableRowCountToBeBetween", min_value=1))
    return SuiteSpec(relation.name, schema, relation.name, tuple(expectations))


def check_contract(
    con: duckdb.DuckDBPyConnection,
    relations: Sequence[PublishedRelation],
    *,
    schema: str = MARTS,
    timings: dict[str, float] | None = None,
) -> list[QualityResult]:
    """Validate the contract on the current catalog of ``con``; one result per expectation (a missing relation:
    one failed ``table_exists``; one that cannot be read, e.g. a view over a dropped table: ``table_readable``).
    Relations that must have rows are read whole (the row count is observed), the others only for their columns."""
    results: list[QualityResult] = []
    validator: GxValidator | None = None
    for rel in relations:
        table = f"{schema}.{rel.name}"
        if table_columns(con, schema, rel.name) is None:
            results.append(QualityResult(rel.name, table, "table_exists", None, False, "table exists", "missing"))
            continue
        t0 = time.perf_counter()
        try:
            frame = con.sql(f"select * from {qualified(schema, rel.name)}{'' if rel.non_empty else ' limit 0'}").df()
        except duckdb.Error as exc:  # e.g. a view over a relation that is gone
            error = f"cannot be read: {str(exc).splitlines()[0]}"
            results.append(QualityResult(rel.name, table, "table_readable", None, False, "readable", error=error))
            continue
        if validator is None:
            validator = GxValidator()
        results += validator.validate(contract_suite(rel, schema), frame)
        if timings is not None:
            timings[f"contract:{rel.name}"] = time.perf_counter() - t0
    return results
