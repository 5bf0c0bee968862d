"""The frozen fit a score run applies, read from the fit marts of the build database.

Only a published build's fit can be frozen (``marts.fct_builds.published``): the fit marts also show the build in
progress, whose fit may still fail its checks. ``latest`` is ``marts.dim_latest_fit`` (the one owner of "latest").
"""

from __future__ import annotations

from dataclasses import dataclass

import duckdb
import pandas as pd

from py_models.frozen import ALL_DOMAINS, FrozenFit
from py_models.representations import REPRESENTATION_NAMES, lead_representation

#: the fit marts' control of the plain fit (the one every report reads; 'length' is the length-controlled refit)
PLAIN_CONTROL = "none"
#: fct_model_metrics' variant of the concept model
HMDR_VARIANT = "hmdr"


class ScoreError(RuntimeError):
    """A score run cannot do its job (unknown or unpublished fit, mechanism not fitted, inputs unusable)."""


@dataclass(frozen=True)
class FitSpec:
    """What a score run applies: the fit's weights, its annotator and its own held-out figures."""

    fit_id: str
    mechanism: str
    representation: str
    annotator: str
    annotator_version: str
    frozen: FrozenFit
    #: fct_model_metrics rows of the fit: domain ('__all__' overall), n_pairs, accuracy (out-of-fold)
    held_out: pd.DataFrame

    @property
    def overall_accuracy(self) -> float:
        """The fit's overall held-out accuracy (domain '__all__')."""
        overall = self.held_out[self.held_out["domain"] == ALL_DOMAINS]
        return float(overall["accuracy"].to_numpy(dtype=float)[0])


def _fetch(con: duckdb.DuckDBPyConnection, sql: str, params: list[object]) -> pd.DataFrame:
    try:
        return con.execute(sql, params).df()
    except duckdb.CatalogException as exc:
        raise ScoreError(f"the warehouse has no published fit marts yet (run `preflens run` first): {exc}") from exc


def resolve_fit_id(con: duckdb.DuckDBPyConnection, fit: str) -> str:
    """``fit`` itself, or the fit of ``marts.dim_latest_fit`` for ``latest``; it must be a published build's."""
    if fit == "latest":
        latest = _fetch(con, "select fit_id from marts.dim_latest_fit", [])
        if latest.empty:
            raise ScoreError("the warehouse has no fit yet: run `preflens run` or `preflens build` first")
        fit = str(latest["fit_id"].iloc[0])
    build = _fetch(con, "select status, coalesce(published, false) from marts.fct_builds where build_id = ?", [fit])
    if build.empty:
        raise ScoreError(f"fit {fit!r} is not the fit of any build (see marts.fct_builds)")
    status, published = build.iloc[0].tolist()
    if not published:
        raise ScoreError(
            f"fit {fit!r} is not published (its build is {status}): only a published fit can be frozen; give --fit "
            "with a published build's id (marts.fct_builds)"
        )
    return fit


def load_fit(con: duckdb.DuckDBPyConnection, fit: str, mechanism: str, representation: str | None = None) -> FitSpec:
    """The frozen plain fit of ``mechanism`` in published fit ``fit`` (or ``latest``), in ``representation``
    (default: the lead representation the fit has for the mechanism)."""
    fit_id = resolve_fit_id(con, fit)
    reps = _fetch(
        con,
        "select distinct representation from marts.fct_concept_effects "
        "where fit_id = ? and mechanism = ? and control = ?",
        [fit_id, mechanism, PLAIN_CONTROL],
    )["representation"].tolist()
    if not reps:
        fitted = _fetch(
            con, "select distinct mechanism from marts.fct_concept_effects where fit_id = ? order by 1", [fit_id]
        )["mechanism"].tolist()
        raise ScoreError(f"fit {fit_id} has no weights for mechanism {mechanism!r} (fitted: {', '.join(fitted)})")
    rep = representation or lead_representation(reps)
    if rep not in reps:
        known = "" if rep in REPRESENTATION_NAMES else " (not a representation)"
        raise ScoreError(f"fit {fit_id} has no {rep!r}{known} fit of {mechanism!r} (it has: {', '.join(sorted(reps))})")
    effects = _fetch(
        con,
        "select domain, concept, shared_weight, domain_deviation, has_domain_weights, feature_scale "
        "from marts.fct_concept_effects where fit_id = ? and mechanism = ? and representation = ? and control = ?",
        [fit_id, mechanism, rep, PLAIN_CONTROL],
    )
    build = _fetch(con, "select annotator, annotator_version from marts.fct_builds where build_id = ?", [fit_id])
    annotator, version = build["annotator"].iloc[0], build["annotator_version"].iloc[0]
    if annotator is None or version is None:
        raise ScoreError(f"the build of fit {fit_id} recorded no annotator version (marts.fct_builds)")
    held_out = _fetch(
        con,
        "select domain, n_pairs, accuracy from marts.fct_model_metrics "
        "where fit_id = ? and mechanism = ? and representation = ? and variant = ?",
        [fit_id, mechanism, rep, HMDR_VARIANT],
    )
    if held_out["domain"].duplicated().any():
        raise ScoreError(f"fit {fit_id} has more than one held-out figure per domain for {mechanism!r} ({rep})")
    if ALL_DOMAINS not in set(held_out["domain"]):
        raise ScoreError(f"fit {fit_id} has no overall held-out accuracy for {mechanism!r} ({rep})")
    try:
        frozen = FrozenFit.from_effects(effects)
    except ValueError as exc:
        raise ScoreError(f"fit {fit_id}, {mechanism!r} ({rep}): {exc}") from exc
    return FitSpec(fit_id, mechanism, rep, str(annotator), str(version), frozen, held_out)
