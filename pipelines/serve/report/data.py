"""Read-only queries on the served copy that feed the visual report (no plotting, no HTML here).

Every query goes through a read-only DuckDB connection on ``warehouse/serve/preflens.duckdb`` and returns
pandas frames. Tables and columns that other parts of the project add over time (bootstrap CIs and
selection frequencies in ``fct_concept_effects``, ``rpt_model_comparison``, annotation failures) are looked up
first and used only when present, so an older served copy still renders.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import pandas as pd

from pipelines.serve.served import connect_served, latest_fit_id, table_columns
from py_models.mart_keys import ALL_DOMAINS, SHARED_DOMAIN

SHARED, ALL = SHARED_DOMAIN, ALL_DOMAINS  # the marts' reserved domain keys

# Column names of the bootstrap interval of the global lift, newest first (the mart's names, then short ones).
CI_COLUMNS = (("global_lift_ci_low", "global_lift_ci_high"), ("ci_low", "ci_high"))


class ReportDataError(RuntimeError):
    """The served copy is missing or holds no fitted explanation."""


def wilson_interval(successes: float, n: float, z: float = 1.96) -> tuple[float, float]:
    """Wilson score 95% interval of a proportion (``(nan, nan)`` when n is 0)."""
    if not n or n <= 0:
        return (math.nan, math.nan)
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return (max(0.0, centre - half), min(1.0, centre + half))


@dataclass
class ReportData:
    """Everything the report draws, as frames (one per section)."""

    serve_db: Path
    representation: str
    fit_id: str | None
    build: dict[str, object]
    counts: dict[str, int]
    effects: pd.DataFrame  # latest fit, chosen representation, all mechanisms and domains (+ ci_low/ci_high/sel)
    has_ci: bool
    has_selection: bool
    mechanisms: pd.DataFrame  # dim_mechanisms
    pairs: pd.DataFrame  # domain x mechanism pair counts
    agreement: pd.DataFrame
    annotation_quality: pd.DataFrame
    metrics: pd.DataFrame  # overall held-out accuracy per mechanism x representation (+ wilson ci)
    model_comparison: pd.DataFrame | None
    notes: list[str] = field(default_factory=list)
    #: shared weights b of the length-controlled refit (control = 'length'), one row per mechanism x concept
    controlled: pd.DataFrame = field(default_factory=pd.DataFrame)
    #: fitted contrasts of the latest fit, one orientation per pair (``contrast_frame``); None = no contrast mart
    contrasts: pd.DataFrame | None = None
    #: concept drift over published builds (``drift_frame``); None = no rpt_concept_drift in the served copy
    drift: pd.DataFrame | None = None

    @property
    def mechanism_order(self) -> list[str]:
        """Mechanisms grouped by type (human, judge, reward, other), largest first within a type."""
        order = {"human": 0, "judge": 1, "reward": 2}
        m = self.mechanisms.copy()
        m["_t"] = m["mechanism_type"].map(order).fillna(3)
        fitted = set(self.effects["mechanism"]) if not self.effects.empty else set()
        m = m[m["mechanism"].isin(fitted)] if fitted else m
        return m.sort_values(["_t", "n_labels", "mechanism"], ascending=[True, False, True])["mechanism"].tolist()


def _effects(
    con: duckdb.DuckDBPyConnection, fit_id: str | None, representation: str
) -> tuple[pd.DataFrame, bool, bool]:
    cols = set(table_columns(con, "fct_concept_effects"))
    ci = next(((lo, hi) for lo, hi in CI_COLUMNS if lo in cols and hi in cols), None)
    extra = []
    extra.append(f"{ci[0]} as ci_low, {ci[1]} as ci_high" if ci else "null::double as ci_low, null::double as ci_high")
    has_sel = "selection_frequency" in cols
    extra.append("selection_frequency" if has_sel else "null::double as selection_frequency")
    df = con.execute(
        f"""select mechanism, mechanism_type, domain, concept, shared_weight, domain_deviation, total_weight,
                   shared_lift_pct, deviation_lift_pct, global_lift_pct, n_pairs, has_domain_weights,
                   {", ".join(extra)}
            from marts.fct_concept_effects
            where fit_id = ? and representation = ?{" and control = 'none'" if "control" in cols else ""}""",
        [fit_id, representation],
    ).df()
    has_ci = bool(ci) and bool(df["ci_low"].notna().any())
    has_sel = has_sel and bool(df["selection_frequency"].notna().any())
    return df, has_ci, has_sel


def _build(con: duckdb.DuckDBPyConnection) -> dict[str, object]:
    if not table_columns(con, "fct_builds"):
        return {}
    df = con.execute("select * from marts.fct_builds order by started_at desc nulls last limit 1").df()
    return {} if df.empty else {str(k): v for k, v in df.iloc[0].items()}


def _metrics(con: duckdb.DuckDBPyConnection, fit_id: str | None) -> pd.DataFrame:
    variant = "variant" if "variant" in set(table_columns(con, "fct_model_metrics")) else "'hmdr'"
    df = con.execute(
        f"""select mechanism, mechanism_type, representation, {variant} as variant, protocol, n_pairs, accuracy,
                   log_loss
           from marts.fct_model_metrics
           where fit_id = ? and domain = ?
           order by mechanism, representation, {variant} = 'hmdr' desc, variant, protocol""",
        [latest_fit_id(con, "fct_model_metrics"), ALL],
    ).df()
    if df.empty:
        return df.assign(acc_low=[], acc_high=[])
    ci = [wilson_interval(a * n, n) for a, n in zip(df["accuracy"], df["n_pairs"])]
    df["acc_low"] = [c[0] for c in ci]
    df["acc_high"] = [c[1] for c in ci]
    return df


CONTRAST_COLUMNS = [
    "representation",
    "domain",
    "concept",
    "mechanism_a",
    "mechanism_type_a",
    "mechanism_b",
    "mechanism_type_b",
    "lift_diff_pct",
    "lift_diff_ci_low",
    "lift_diff_ci_high",
    "selection_frequency",
    "p_adjusted",
    "distinguishable",
    "n_shared_items",
]


def _contrasts(con: duckdb.DuckDBPyConnection, fit_id: str | None) -> pd.DataFrame | None:
    """The latest fit's contrasts in lift points, from ``rpt_mechanism_contrast`` (both orientations) or, in a
    served copy without it, ``fct_mechanism_contrasts`` at the report's fit; None when neither mart is there."""
    if table_columns(con, "rpt_mechanism_contrast"):
        df = con.execute(f"select {', '.join(CONTRAST_COLUMNS)} from marts.rpt_mechanism_contrast").df()
    elif table_columns(con, "fct_mechanism_contrasts"):
        df = con.execute(
            """select representation, domain, concept, mechanism_a, mechanism_type_a, mechanism_b, mechanism_type_b,
                      50.0 * estimate as lift_diff_pct, 50.0 * ci_low as lift_diff_ci_low,
                      50.0 * ci_high as lift_diff_ci_high, selection_frequency, p_adjusted, distinguishable,
                      n_shared_items
               from marts.fct_mechanism_contrasts where fit_id = ?""",
            [fit_id],
        ).df()
        df = pd.concat([df, _flipped(df)], ignore_index=True)  # the fact holds a < b by name only
    else:
        return None
    return orient_contrasts(df)


def _flipped(df: pd.DataFrame) -> pd.DataFrame:
    """The same contrasts read the other way round (B − A)."""
    out = df.rename(
        columns={
            "mechanism_a": "mechanism_b",
            "mechanism_b": "mechanism_a",
            "mechanism_type_a": "mechanism_type_b",
            "mechanism_type_b": "mechanism_type_a",
            "lift_diff_ci_low": "lift_diff_ci_high",
            "lift_diff_ci_high": "lift_diff_ci_low",
        }
    )
    for col in ("lift_diff_pct", "lift_diff_ci_low", "lift_diff_ci_high"):
        out[col] = -out[col]
    return out[df.columns]


def orient_contrasts(df: pd.DataFrame) -> pd.DataFrame:
    """One orientation per mechanism pair: A is the later type in human < judge < reward < other (so a
    human/judge pair reads "what the judge rewards more than the humans"), the smaller name on a tie."""
    if df.empty:
        return df.reset_index(drop=True)
    rank = {"human": 0, "judge": 1, "reward": 2}
    ra = df["mechanism_type_a"].map(rank).fillna(3)
    rb = df["mechanism_type_b"].map(rank).fillna(3)
    keep = (ra > rb) | ((ra == rb) & (df["mechanism_a"] < df["mechanism_b"]))
    out = df[keep].copy()
    out["distinguishable"] = out["distinguishable"].fillna(False).astype(bool)
    return out.reset_index(drop=True)


def contrast_pairs(contrasts: pd.DataFrame, n: int) -> pd.DataFrame:
    """The ``n`` mechanism pairs to draw: most distinguishable contrasts first, then most shared items.

    Columns mechanism_a, mechanism_b, types, n_shared_items (domain ``__all__``), n_distinguishable, domains (the
    pair's per-domain fits, largest first)."""
    if contrasts.empty:
        return pd.DataFrame(columns=["mechanism_a", "mechanism_b", "n_shared_items", "n_distinguishable", "domains"])
    keys = ["mechanism_a", "mechanism_b"]
    g = contrasts.groupby(keys, as_index=False).agg(
        mechanism_type_a=("mechanism_type_a", "first"),
        mechanism_type_b=("mechanism_type_b", "first"),
        n_distinguishable=("distinguishable", "sum"),
    )
    alld = contrasts[contrasts["domain"] == ALL].groupby(keys, as_index=False)["n_shared_items"].max()
    g = g.merge(alld, on=keys, how="left")
    doms = (
        pd.DataFrame(
            contrasts[contrasts["domain"] != ALL].groupby([*keys, "domain"], as_index=False)["n_shared_items"].max()
        )
        .sort_values(["n_shared_items", "domain"], ascending=[False, True])
        .groupby(keys)["domain"]
        .agg(list)
        .rename("domains")
        .reset_index()
    )
    g = g.merge(doms, on=keys, how="left")
    g["domains"] = [d if isinstance(d, list) else [] for d in g["domains"]]
    g["n_shared_items"] = g["n_shared_items"].fillna(0).astype(int)
    g = g.sort_values(["n_distinguishable", "n_shared_items", *keys], ascending=[False, False, True, True])
    return g.head(max(0, n)).reset_index(drop=True)


def top_contrasts(contrasts: pd.DataFrame, mechanism_a: str, mechanism_b: str, domain: str, k: int) -> pd.DataFrame:
    """Top ``k`` contrasts of one pair and domain: distinguishable first, then by |estimate|; contrasts that are
    0 with no interval away from 0 are left out (the joint fit put the concept in the shared weights)."""
    c = contrasts[
        (contrasts["mechanism_a"] == mechanism_a)
        & (contrasts["mechanism_b"] == mechanism_b)
        & (contrasts["domain"] == domain)
    ]
    spread = c[["lift_diff_ci_low", "lift_diff_ci_high"]].abs().fillna(0).max(axis=1)
    c = c[(c["lift_diff_pct"].abs() > 1e-9) | (spread > 1e-9)]
    c = c.assign(_abs=c["lift_diff_pct"].abs(), _d=c["distinguishable"].astype(bool))
    c = c.sort_values(["_d", "_abs", "concept"], ascending=[False, False, True])
    return c.head(k).drop(columns=["_abs", "_d"]).reset_index(drop=True)


def _drift(con: duckdb.DuckDBPyConnection, representation: str) -> pd.DataFrame | None:
    """Shared-weight history (domain ``__shared__``, plain fit) of every mechanism over the published builds, in
    the report's representation; None when the served copy has no ``rpt_concept_drift``."""
    cols = set(table_columns(con, "rpt_concept_drift"))
    if not cols:
        return None
    opt = [
        c if c in cols else f"null::double as {c}"
        for c in ("global_lift_ci_low", "global_lift_ci_high", "total_weight_ci_low", "total_weight_ci_high")
    ]
    overlap = "intervals_overlap" if "intervals_overlap" in cols else "null::boolean as intervals_overlap"
    control = " and control = 'none'" if "control" in cols else ""
    return con.execute(
        f"""select fit_id, built_at, build_number, mechanism, mechanism_type, concept, total_weight,
                   global_lift_pct, {", ".join(opt)}, lift_change, {overlap}
            from marts.rpt_concept_drift
            where representation = ? and domain = ?{control}
            order by mechanism, built_at, concept""",
        [representation, SHARED],
    ).df()


def drift_top_concepts(drift: pd.DataFrame, mechanism: str, k: int) -> list[str]:
    """The ``k`` concepts with the largest |lift| in the mechanism's latest published build (non-zero only)."""
    d = drift[drift["mechanism"] == mechanism]
    if d.empty:
        return []
    last = d[d["build_number"] == d["build_number"].max()]
    last = last[last["global_lift_pct"].abs() > 1e-9]
    last = last.assign(_abs=last["global_lift_pct"].abs()).sort_values(["_abs", "concept"], ascending=[False, True])
    return last["concept"].head(k).tolist()


def load_report_data(serve_db: Path, representation: str | None = None) -> ReportData:
    """Read every frame the report needs from the served copy (read-only); ``representation`` None = the lead
    one of the latest fit (measure when fitted, else comp)."""
    con = connect_served(serve_db, error=ReportDataError)
    try:
        if not table_columns(con, "fct_concept_effects"):
            raise ReportDataError(f"{serve_db} has no marts.fct_concept_effects; is it a preflens served copy?")
        from pipelines.serve.summary import resolve_representation

        representation = resolve_representation(con, representation)
        fit_id = latest_fit_id(con)
        if fit_id is None:
            raise ReportDataError(f"{serve_db} holds no fitted model yet (fct_concept_effects is empty)")
        notes: list[str] = []
        effects, has_ci, has_sel = _effects(con, fit_id, representation)
        if effects.empty:
            raise ReportDataError(f"no {representation}-rep explanation in {serve_db}")
        counts = {
            "items": _scalar(con, "select count(*) from marts.dim_items")
            if table_columns(con, "dim_items")
            else _scalar(con, "select count(distinct item_id) from marts.fct_pair_features_comp"),
            "labelled pairs": _scalar(con, "select count(*) from marts.fct_pair_features_comp"),
            "mechanisms": _scalar(con, "select count(*) from marts.dim_mechanisms"),
            "domains": _scalar(con, "select count(*) from marts.dim_domains"),
            "concepts": _scalar(con, "select count(*) from marts.dim_concepts"),
        }
        mechanisms = con.execute("select * from marts.dim_mechanisms").df()
        pairs = con.execute(
            """select domain, mechanism, mechanism_type, count(*) as n_pairs
               from marts.fct_pair_features_comp group by all"""
        ).df()
        agreement = (
            con.execute("select * from marts.rpt_mechanism_agreement").df()
            if table_columns(con, "rpt_mechanism_agreement")
            else pd.DataFrame()
        )
        quality = (
            con.execute("select * from marts.rpt_annotation_quality order by annotator, concept").df()
            if table_columns(con, "rpt_annotation_quality")
            else pd.DataFrame()
        )
        comparison = None
        if table_columns(con, "rpt_model_comparison"):
            comparison = con.execute("select * from marts.rpt_model_comparison").df()
        metrics = _metrics(con, fit_id)
        controlled = pd.DataFrame()
        if "control" in set(table_columns(con, "fct_concept_effects")):
            controlled = con.execute(
                """select mechanism, concept, global_lift_pct from marts.fct_concept_effects
                   where fit_id = ? and representation = ? and control = 'length' and domain = '__shared__'""",
                [fit_id, representation],
            ).df()
        contrasts = _contrasts(con, fit_id)
        drift = _drift(con, representation)
        return ReportData(
            serve_db=Path(serve_db),
            representation=representation,
            fit_id=fit_id,
            build=_build(con),
            counts=counts,
            effects=effects,
            has_ci=has_ci,
            has_selection=has_sel,
            mechanisms=mechanisms,
            pairs=pairs,
            agreement=agreement,
            annotation_quality=quality,
            metrics=metrics,
            model_comparison=comparison,
            notes=notes,
            controlled=controlled,
            contrasts=contrasts,
            drift=drift,
        )
    finally:
        con.close()


def _scalar(con: duckdb.DuckDBPyConnection, sql: str) -> int:
    row = con.execute(sql).fetchone()
    assert row is not None, "an aggregate query returns one row"
    return int(row[0] or 0)


# ------------------------------------------------------------------------------------------ derived frames


def largest_domains(effects: pd.DataFrame, mechanism: str, n: int) -> pd.DataFrame:
    """The ``n`` domains with the most pairs for one mechanism: domain, n_pairs, has_domain_weights."""
    e = effects[(effects["mechanism"] == mechanism) & (effects["domain"] != SHARED)]
    d = e.groupby("domain", as_index=False).agg(
        n_pairs=("n_pairs", "max"), has_domain_weights=("has_domain_weights", "max")
    )
    d = d[d["n_pairs"] > 0]
    return d.sort_values(["n_pairs", "domain"], ascending=[False, True]).head(n).reset_index(drop=True)


def top_concepts(effects: pd.DataFrame, mechanism: str, domain: str, k: int) -> pd.DataFrame:
    """Top ``k`` concepts of one panel by |global lift| (non-zero only), largest first."""
    e = effects[(effects["mechanism"] == mechanism) & (effects["domain"] == domain)]
    e = e[e["global_lift_pct"].abs() > 1e-9]
    e = e.assign(_abs=e["global_lift_pct"].abs()).sort_values(["_abs", "concept"], ascending=[False, True])
    return e.head(k).drop(columns="_abs").reset_index(drop=True)


def contrast_domains(effects: pd.DataFrame, n: int) -> list[str]:
    """``__shared__`` plus the ``n`` domains fitted by the most mechanisms (ties: most pairs)."""
    e = effects[(effects["domain"] != SHARED) & (effects["n_pairs"] > 0)]
    g = e.groupby("domain").agg(n_mech=("mechanism", "nunique"), n_pairs=("n_pairs", "sum")).reset_index()
    g = g.sort_values(["n_mech", "n_pairs", "domain"], ascending=[False, False, True])
    return [SHARED, *g["domain"].head(n).tolist()]


def lift_matrix(effects: pd.DataFrame, domain: str, mechanisms: list[str]) -> pd.DataFrame:
    """concept x mechanism global lift in one domain (mechanisms with pairs there), rows ordered by mean |lift|."""
    e = effects[(effects["domain"] == domain) & (effects["n_pairs"] > 0)]
    m = e.pivot_table(index="concept", columns="mechanism", values="global_lift_pct", aggfunc="first")
    cols = [c for c in mechanisms if c in m.columns]
    m = m[cols]
    m = m.loc[m.abs().max(axis=1) > 1e-9] if not m.empty else m
    return m.loc[m.abs().mean(axis=1).sort_values(ascending=False).index] if not m.empty else m


def human_minus_judge(effects: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    """Per concept: mean human lift minus mean judge lift, averaged over the domains both types judged.

    Within each domain where at least one human and one judge mechanism have pairs, take the mean global lift
    of the human mechanisms and of the judge mechanisms per concept, subtract, then average over those domains.
    Returns (frame with concept, human, judge, diff sorted by diff; the domains used).
    """
    e = effects[
        (effects["domain"] != SHARED) & (effects["n_pairs"] > 0) & effects["mechanism_type"].isin(["human", "judge"])
    ]
    kinds = e.groupby("domain")["mechanism_type"].nunique()
    domains = sorted(kinds[kinds == 2].index)
    e = e[e["domain"].isin(domains)]
    if e.empty:
        return pd.DataFrame(columns=["concept", "human", "judge", "diff"]), []
    per = e.groupby(["domain", "concept", "mechanism_type"])["global_lift_pct"].mean().unstack("mechanism_type")
    per = per.groupby("concept")[["human", "judge"]].mean()
    per["diff"] = per["human"] - per["judge"]
    per = per[(per[["human", "judge"]].abs().max(axis=1) > 1e-9)]
    return per.reset_index().sort_values("diff").reset_index(drop=True), domains


def agreement_matrix(agreement: pd.DataFrame, min_items: int = 1) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Symmetric mechanism x mechanism agreement rate and item-count matrices (pairs with >= min_items)."""
    if agreement.empty:
        return pd.DataFrame(), pd.DataFrame()
    a = agreement[agreement["n_both_decisive"] >= min_items]
    rate = a.pivot_table(index="mechanism_a", columns="mechanism_b", values="agreement_rate", aggfunc="first")
    n = a.pivot_table(index="mechanism_a", columns="mechanism_b", values="n_both_decisive", aggfunc="first")
    names = sorted(set(rate.index) | set(rate.columns))
    return rate.reindex(index=names, columns=names), n.reindex(index=names, columns=names)
