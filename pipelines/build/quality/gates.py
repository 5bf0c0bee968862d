"""Gates on derived frames: each is a ``*_frame`` builder (the SQL of the frame checked, or a :class:`Skip`
with the reason the gate does not apply) paired with the ``*_expectations`` on that frame.

They cover what no single table row shows: decisive labels without features, domain weights on too few
pairs, swap-inconsistency and parse-failure rates of the annotators in use, rank groups of
``rpt_top_concepts``, and the (non-blocking) comparison with the length-only baseline. A threshold of
``None`` disables its gate (recorded as skipped).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import duckdb

from pipelines.build.quality.expectations import FEATURE_KEY_COLUMNS, TOP_CONCEPTS_GROUP
from pipelines.build.quality.specs import (
    MARTS,
    RAW,
    ExpectationSpec,
    FrameQuery,
    Skip,
    active_annotator_filter,
    expect,
    qualified,
    table_columns,
)
from pipelines.build.quality.thresholds import QualityThresholds

SHARED_DOMAIN = "__shared__"


def _disabled(what: str) -> Skip:
    return Skip(f"{what} threshold is None (gate disabled)")


def labels_without_features_frame(con: duckdb.DuckDBPyConnection, th: QualityThresholds) -> FrameQuery | Skip:
    """Decisive ``raw.labels`` rows whose item has no annotation of the active annotator (expected: none)."""
    if th.max_labels_without_features is None:
        return _disabled("max_labels_without_features")
    pred, params = active_annotator_filter(th, "r")
    return FrameQuery(
        f"""
        select l.label_id, l.item_id, l.mechanism, l.winner,
               l.mechanism || ' / ' || l.label_id || ' (item ' || l.item_id || ')' as row_label
        from {qualified(RAW, "labels")} l
        where l.winner in ('a', 'b')
          and not exists (select 1 from {qualified(RAW, "annotations")} r where r.item_id = l.item_id and {pred})
        order by l.mechanism, l.label_id
        """,
        tuple(params),
    )


def labels_without_features_expectations(
    con: duckdb.DuckDBPyConnection, columns: Sequence[str], th: QualityThresholds
) -> list[ExpectationSpec]:
    """Every decisive labelled pair has features: the frame of those that don't has <= the allowed rows."""
    return [expect("ExpectTableRowCountToBeBetween", min_value=0, max_value=int(th.max_labels_without_features or 0))]


def domain_weights_frame(con: duckdb.DuckDBPyConnection, th: QualityThresholds) -> FrameQuery | Skip:
    """Rows of ``fct_concept_effects`` that carry (or claim) domain-specific weights."""
    if th.min_domain_pairs is None:
        return _disabled("min_domain_pairs")
    return FrameQuery(
        f"""
        select fit_id, mechanism, representation, domain, concept, domain_deviation, n_pairs, has_domain_weights,
               mechanism || ' / ' || representation || ' / ' || domain || ' (' || coalesce(cast(n_pairs as varchar), 'null')
                 || ' pairs)' as row_label
        from {qualified(MARTS, "fct_concept_effects")}
        where domain <> ? and (domain_deviation <> 0 or has_domain_weights)
        """,
        (SHARED_DOMAIN,),
    )


def domain_weights_expectations(
    con: duckdb.DuckDBPyConnection, columns: Sequence[str], th: QualityThresholds
) -> list[ExpectationSpec]:
    """A non-zero deviation needs ``has_domain_weights``; domain weights need ``n_pairs >= min_domain_pairs``."""
    return [
        expect("ExpectColumnValuesToBeInSet", column="has_domain_weights", value_set=[True]),
        expect("ExpectColumnValuesToNotBeNull", column="n_pairs"),
        expect("ExpectColumnValuesToBeBetween", column="n_pairs", min_value=int(th.min_domain_pairs or 0)),
    ]


def swap_consistency_frame(con: duckdb.DuckDBPyConnection, th: QualityThresholds) -> FrameQuery | Skip:
    """Swap-inconsistency rate per annotator version in use (cells with ``is_consistent`` not null)."""
    if th.max_swap_inconsistency_rate is None:
        return _disabled("max_swap_inconsistency_rate")
    pred, params = active_annotator_filter(th, "r")
    sql = f"""
        select r.annotator, r.annotator_version,
               count(*) as n_cells,
               count(r.is_consistent) as n_swap_checked,
               count(*) filter (where not r.is_consistent) as n_inconsistent,
               (count(*) filter (where not r.is_consistent))::double / count(r.is_consistent) as swap_inconsistency_rate,
               r.annotator || ' ' || r.annotator_version as row_label
        from {qualified(RAW, "annotations")} r
        where {pred}
        group by r.annotator, r.annotator_version
        having count(r.is_consistent) > 0
        order by 1, 2
    """
    n = con.execute(f"select count(*) from ({sql})", params).fetchall()[0][0]
    if n == 0:
        return Skip("no swap-checked annotations for the annotator(s) in use (the offline annotator has none)")
    return FrameQuery(sql, tuple(params))


def _rate_at_most(column: str, limit: float | None) -> list[ExpectationSpec]:
    """The rate in ``column`` of every row of the frame is in [0, ``limit``]."""
    return [expect("ExpectColumnValuesToBeBetween", column=column, min_value=0.0, max_value=float(limit or 0.0))]


def swap_consistency_expectations(
    con: duckdb.DuckDBPyConnection, columns: Sequence[str], th: QualityThresholds
) -> list[ExpectationSpec]:
    return _rate_at_most("swap_inconsistency_rate", th.max_swap_inconsistency_rate)


def _llm_versions_in_use(con: duckdb.DuckDBPyConnection, th: QualityThresholds) -> list[str]:
    if th.annotator is not None:
        if th.annotator not in th.llm_annotators:
            return []
        if th.annotator_version is not None:
            return [th.annotator_version]
        rows = con.execute(
            f"select distinct annotator_version from {qualified(RAW, 'annotations')} where annotator = ?",
            [th.annotator],
        ).fetchall()
        return [r[0] for r in rows]
    rows = con.execute(
        f"select distinct annotator, annotator_version from {qualified(MARTS, 'fct_pair_concepts')}"
    ).fetchall()
    return [v for a, v in rows if a in th.llm_annotators]


def models_of_versions(versions: Sequence[str]) -> list[str]:
    """Model names (as sanitised in the version) of LLM annotator versions ``llm-<prompt>:<model>``."""
    return sorted({v.split(":", 1)[1] for v in versions if ":" in v})


def parse_failures_frame(con: duckdb.DuckDBPyConnection, th: QualityThresholds) -> FrameQuery | Skip:
    """Parse-failure rate of the LLM annotation calls per model in use, from ``raw.llm_cache``."""
    if th.max_parse_failure_rate is None:
        return _disabled("max_parse_failure_rate")
    if th.llm_models is not None:
        models, model_expr = list(th.llm_models), "c.model"
    else:
        versions = _llm_versions_in_use(con, th)
        if not versions:
            return Skip("no LLM annotator in use")
        models = models_of_versions(versions)
        # the annotator version carries the model name with unsafe characters replaced (pipelines/annotate/llm.py)
        model_expr = "regexp_replace(c.model, '[^A-Za-z0-9_.:/+-]', '_', 'g')"
    if not models:
        return Skip("no LLM model in use")
    params: list[Any] = list(models)
    where = [f"{model_expr} in ({', '.join('?' * len(models))})"]
    if th.llm_annotation_stages is not None:
        where.append(f"c.stage in ({', '.join('?' * len(th.llm_annotation_stages))})")
        params += list(th.llm_annotation_stages)
    failed = "c.status = 'failed'"
    if th.parse_failure_outcomes is not None:
        failed += (
            f" and split_part(coalesce(c.error, ''), ':', 1) in ({', '.join('?' * len(th.parse_failure_outcomes))})"
        )
    sql = f"""
        select c.model, count(*) as n_calls,
               count(*) filter (where {failed}) as n_parse_failures,
               (count(*) filter (where {failed}))::double / count(*) as parse_failure_rate,
               c.model as row_label
        from {qualified(RAW, "llm_cache")} c
        where {" and ".join(where)}
        group by c.model
        order by c.model
    """
    # parameters in textual order: the failure filter appears first (twice), then the where clause
    fparams = list(th.parse_failure_outcomes or ())
    all_params = [*fparams, *fparams, *params]
    n = con.execute(f"select count(*) from ({sql})", all_params).fetchall()[0][0]
    if n == 0:
        return Skip(f"no LLM annotation calls in raw.llm_cache for model(s) {', '.join(models)}")
    return FrameQuery(sql, tuple(all_params))


def parse_failures_expectations(
    con: duckdb.DuckDBPyConnection, columns: Sequence[str], th: QualityThresholds
) -> list[ExpectationSpec]:
    return _rate_at_most("parse_failure_rate", th.max_parse_failure_rate)


def top_concepts_ranks_frame(con: duckdb.DuckDBPyConnection, th: QualityThresholds) -> FrameQuery | Skip:
    """Per group of ``rpt_top_concepts``: ranks must be 1..n without gaps, ordered by descending |lift|."""
    t = qualified(MARTS, "rpt_top_concepts")
    g = ", ".join(TOP_CONCEPTS_GROUP)
    return FrameQuery(
        f"""
        with r as (
            select {g}, concept_rank, abs(global_lift_pct) as a,
                   lag(abs(global_lift_pct)) over (partition by {g} order by concept_rank) as prev_a
            from {t}
        )
        select {g},
               count(*) as n_rows,
               min(concept_rank) as min_rank,
               max(concept_rank) as max_rank,
               count(*) filter (where prev_a is not null and a > prev_a + 1e-9) as n_out_of_order,
               mechanism || ' / ' || representation || ' / ' || domain as row_label
        from r
        group by {g}
        order by {g}
        """
    )


def top_concepts_ranks_expectations(
    con: duckdb.DuckDBPyConnection, columns: Sequence[str], th: QualityThresholds
) -> list[ExpectationSpec]:
    return [
        expect("ExpectColumnValuesToBeInSet", column="min_rank", value_set=[1]),
        expect("ExpectColumnPairValuesToBeEqual", column_A="max_rank", column_B="n_rows"),
        expect("ExpectColumnValuesToBeInSet", column="n_out_of_order", value_set=[0]),
    ]


def measure_features_frame(con: duckdb.DuckDBPyConnection, th: QualityThresholds) -> FrameQuery | Skip | None:
    """The measure-rep table as is, or skipped when no concept has a raw measurement (LLM annotations)."""
    cols = table_columns(con, MARTS, "fct_pair_features_measure") or []
    if not [c for c in cols if c not in FEATURE_KEY_COLUMNS]:
        return Skip("no concept has a raw measurement (measure-rep not fitted)")
    return None


def baselines_frame(con: duckdb.DuckDBPyConnection, th: QualityThresholds) -> FrameQuery | Skip:
    """Per mechanism and representation of the latest fit: does the concept model beat length alone?"""
    if table_columns(con, MARTS, "rpt_model_baselines") is None:
        return Skip("rpt_model_baselines does not exist")
    return FrameQuery(
        f"""
        select mechanism, representation, accuracy, accuracy_length_only, beats_length_only,
               mechanism || ' / ' || representation || ': ' || cast(round(100 * accuracy, 1) as varchar)
                 || '% vs length only ' || coalesce(cast(round(100 * accuracy_length_only, 1) as varchar), '?')
                 || '%' as row_label
        from {qualified(MARTS, "rpt_model_baselines")}
        where accuracy_length_only is not null
        """
    )


def baselines_expectations(
    con: duckdb.DuckDBPyConnection, columns: Sequence[str], th: QualityThresholds
) -> list[ExpectationSpec]:
    """Recorded, not blocking: the explanation should predict better than response length alone."""
    return [expect("ExpectColumnValuesToBeInSet", column="beats_length_only", value_set=[True])]
