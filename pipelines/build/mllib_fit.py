"""The fit runner's ``mllib`` engine: every HMDR point estimate of a build re-solved on Spark MLlib.

``fit_runner --engine spark --fit-engine mllib`` first runs the local fit (``fit_build``: selection, cross-fitted
predictions, bootstrap intervals, the length-controlled refit, reference models). Then, for every mechanism x
representation fit without a control covariate, this module solves Eq. 1 again on the cluster at the
hyperparameters the local fit chose (its ``params`` rows): the features are read from the Spark feature table
(``intermediate.int_pair_features_<rep>``), the augmented design is built on the executors
(:func:`pipelines.build.spark_hmdr.fit_hmdr_mllib`) and only the coefficients come back. They replace the
point estimate in the tall table, in the same rows and columns, so every mart after the fit builds unchanged:

* ``coefficients`` (control ``none``): shared_weight, domain_deviation, total_weight and the three lifts;
* ``local_explanations``: recomputed from MLlib's weights (``weight = b + s_d``, as the local route does);
* ``params``: duality_gap, the certificate of Eq. 1 at MLlib's weights.

Bootstrap intervals, selection frequencies, out-of-fold predictions, metrics and the length-controlled refit
stay those of the local route. See docs/scaling.md, "The fit itself on Spark MLlib".
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from pipelines.build.spark_hmdr import DOMAIN, LABEL, WEIGHT, MllibFit, fit_hmdr_mllib
from py_models._cd import DomainDesign
from py_models.features import design_frame
from py_models.fit_job import NO_CONTROL, SHARED_DOMAIN
from py_models.hmdr import HMDRClassifier
from py_models.lift import concept_contributions
from py_models.representations import representation_settings

__all__ = ["FIT_ENGINES", "MllibRefit", "refit_on_mllib"]

#: where the point estimates come from: ``local`` (the driver, as the dbt model) or ``mllib`` (Spark MLlib)
FIT_ENGINES = ("local", "mllib")

_WEIGHT_COLUMNS = (
    "shared_weight",
    "domain_deviation",
    "total_weight",
    "shared_lift_pct",
    "deviation_lift_pct",
    "global_lift_pct",
)


@dataclass(frozen=True)
class MllibRefit:
    """One point estimate re-solved on MLlib, next to the local solver's (for the run's report)."""

    mechanism: str
    representation: str
    n_pairs: int
    n_iter: int
    #: MLlib's own final objective, times (1 + alpha): Eq. 1, mean-normalised
    objective_mllib: float
    #: Eq. 1 at the local solver's weights and at MLlib's, evaluated by the local certificate
    objective_local: float
    objective_at_mllib: float
    duality_gap_mllib: float
    max_abs_weight_gap: float

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _quoted(name: str) -> str:
    return "`" + name.replace("`", "``") + "`"


def _certificate(
    X: NDArray[np.float64],
    y: NDArray[Any],
    dom: NDArray[Any],
    params: pd.Series,
    min_domain_samples: int,
    b: NDArray[np.float64],
    S: Any,
) -> dict[str, float]:
    """Objective and duality gap of Eq. 1 at ``(b, S)`` (``S`` one row per sorted domain), by the local solver's
    own certificate (``DomainDesign.diagnostics_at``) on the same design."""
    est = HMDRClassifier(
        alpha=float(params["alpha"]),
        lambda_shared=float(params["lambda_shared"]),
        lambda_domain=float(params["lambda_domain"]),
        min_domain_samples=min_domain_samples,
        solver="cd",
    )
    design, w, meta = est._prepare(X, y, dom, None)
    beta = np.zeros(design.width)
    beta[: design.n_shared_cols] = b[design.shared_cols]
    for k, cols in enumerate(design.domain_cols):
        beta[design.starts[k + 1] : design.starts[k + 2]] = S[meta["weighted_rows"][k], cols]
    assert isinstance(design, DomainDesign)  # solver="cd"
    d = design.diagnostics_at(beta, w, est.lambda_shared_, est.lambda_domain_)
    return {"objective": float(d["objective"]), "duality_gap": float(d["duality_gap"])}


def _spark_frame(spark: Any, table: str, mechanism: str, concepts: list[str], scale: NDArray[np.float64]) -> Any:
    """The decisive pairs of one mechanism from the Spark feature table, scaled as the local fit scales them,
    with the label and weight columns ``fit_hmdr_mllib`` reads. Nothing is collected."""
    from pyspark.sql import functions as F

    winner = F.lower(F.trim(F.col("winner")))
    return (
        spark.table(table)
        .where((F.col("mechanism") == F.lit(mechanism)) & winner.isin("a", "b"))
        .select(
            *[(F.col(_quoted(c)).cast("double") / F.lit(float(s))).alias(c) for c, s in zip(concepts, scale)],
            F.col("domain").cast("string").alias(DOMAIN),
            F.when(winner == F.lit("a"), 1.0).otherwise(0.0).alias(LABEL),
            F.lit(1.0).alias(WEIGHT),
        )
    )


def _local_weights(coef: pd.DataFrame, concepts: list[str], domains: tuple[str, ...]) -> tuple[Any, Any]:
    """``(b, S)`` of the local fit from its coefficient rows (S: one row per domain of ``domains``)."""
    shared = coef[coef["domain"] == SHARED_DOMAIN].set_index("concept")["shared_weight"]
    b = shared.reindex(concepts).to_numpy(dtype=np.float64)
    per = coef[coef["domain"] != SHARED_DOMAIN].set_index(["domain", "concept"])["domain_deviation"]
    S = np.array([[float(per.get((d, c), 0.0)) for c in concepts] for d in domains]).reshape(len(domains), -1)
    return b, S


def _replace_coefficients(coef: pd.DataFrame, fit: MllibFit, concepts: list[str]) -> pd.DataFrame:
    """The coefficient rows of one fit with MLlib's weights (same rows, same columns)."""
    out = coef.copy()
    is_shared = (out["domain"] == SHARED_DOMAIN).to_numpy()
    unknown = sorted(set(out.loc[~is_shared, "domain"].astype(str)) - set(fit.domains))
    if unknown:  # the Spark feature table and the local fit saw different pairs
        raise ValueError(f"MLlib fit has no domain {unknown} of the local fit (domains {list(fit.domains)})")
    j = out["concept"].map({c: i for i, c in enumerate(concepts)}).to_numpy(dtype=np.intp)
    b = fit.coef_shared[j]
    k = out["domain"].map({d: i for i, d in enumerate(fit.domains)}).fillna(0).to_numpy(dtype=np.intp)
    s = np.where(is_shared, 0.0, fit.coef_domain[k, j])
    for col, value in zip(_WEIGHT_COLUMNS, (b, s, b + s, 50.0 * b, 50.0 * s, 50.0 * (b + s))):
        out[col] = value
    return out


def _local_explanations(
    template: pd.DataFrame, dec: pd.DataFrame, X: NDArray[np.float64], fit: MllibFit, concepts: list[str]
) -> pd.DataFrame:
    """Local explanations of every decisive pair at MLlib's weights, as ``fit_job`` builds them."""
    dom = dec["domain"].to_numpy(dtype=object)
    k = np.array([fit.domains.index(d) for d in dom], dtype=np.intp)
    W = fit.coef_shared[None, :] + fit.coef_domain[k]
    le = concept_contributions(X, W, concepts, row_ids=np.arange(len(dec)))
    ridx = le["row_id"].to_numpy()
    le.insert(0, "label_id", dec["label_id"].to_numpy()[ridx])
    le["domain"] = dom[ridx]
    for col in ("mechanism", "representation", "record_type", "fit_id", "fitted_at"):
        le[col] = template[col].iloc[0]
    return le.reindex(columns=template.columns)


def refit_on_mllib(
    spark: Any,
    tall: pd.DataFrame,
    features: Mapping[str, pd.DataFrame],
    schema: str,
    *,
    min_domain_samples: int,
    tol: float = 1e-10,
    max_iter: int = 500,
) -> tuple[pd.DataFrame, list[MllibRefit]]:
    """``tall`` (``fit_build``'s table) with every point estimate without a control covariate re-solved on
    MLlib from the Spark feature tables in ``schema``; and one :class:`MllibRefit` per fit.

    ``features`` are the same tables as pandas (the local route read them): the local explanations and the
    certificate are computed from them, the MLlib fit never sees them. ``min_domain_samples``: the build's
    ``min_domain_pairs`` (the local fit's threshold for domain weights).
    """
    from py_models.fit_output import TALL_SCHEMA

    tall = tall.copy()
    # one params row per mechanism x representation, describing the fit without a control covariate (its
    # ``control`` column is the plan's: 'length' on the lead representation when the length refit was added)
    params = tall[tall["record_type"] == "params"]
    replaced_explanations = np.zeros(len(tall), dtype=bool)
    new_explanations: list[pd.DataFrame] = []
    reports: list[MllibRefit] = []
    for _, p in params.sort_values(["representation", "mechanism"]).iterrows():
        mech, rep = str(p["mechanism"]), str(p["representation"])
        is_fit = (tall["mechanism"] == mech) & (tall["representation"] == rep)
        coef_mask = is_fit & (tall["record_type"] == "coefficients") & (tall["control"] == NO_CONTROL)
        coef = tall[coef_mask]
        shared_rows = coef[coef["domain"] == SHARED_DOMAIN]
        concepts = shared_rows["concept"].astype(str).tolist()
        scale = shared_rows["feature_scale"].to_numpy(dtype=np.float64)
        table = f"{_quoted(schema)}.{_quoted(representation_settings(rep).feature_table)}"
        fit = fit_hmdr_mllib(
            _spark_frame(spark, table, mech, concepts, scale),
            concepts,
            alpha=float(p["alpha"]),
            lambda_shared=float(p["lambda_shared"]),
            lambda_domain=float(p["lambda_domain"]),
            min_domain_samples=min_domain_samples,
            tol=tol,
            max_iter=max_iter,
        )
        if fit.n_rows != int(p["n_train"]):
            raise ValueError(
                f"{table}: {fit.n_rows} decisive pairs of {mech!r} on Spark, the local fit had {int(p['n_train'])}"
            )
        tall.loc[coef_mask, list(_WEIGHT_COLUMNS)] = _replace_coefficients(coef, fit, concepts)[
            list(_WEIGHT_COLUMNS)
        ].to_numpy()

        frame, _ = design_frame(features[rep])
        dec = frame[(frame["mechanism"] == mech) & (frame["winner"].astype(str).str.strip().str.lower() != "tie")]
        dec = dec.sort_values("label_id", kind="stable").reset_index(drop=True)
        X = dec[concepts].to_numpy(dtype=np.float64) / scale
        y = dec["winner"].astype(str).str.strip().str.lower().to_numpy(dtype=object)
        dom = dec["domain"].to_numpy(dtype=object)
        b_local, S_local = _local_weights(coef, concepts, fit.domains)
        at_local = _certificate(X, y, dom, p, min_domain_samples, b_local, S_local)
        at_mllib = _certificate(X, y, dom, p, min_domain_samples, fit.coef_shared, fit.coef_domain)

        le_mask = (is_fit & (tall["record_type"] == "local_explanations")).to_numpy()
        if le_mask.any():
            replaced_explanations |= le_mask
            new_explanations.append(_local_explanations(tall[le_mask], dec, X, fit, concepts))
        p_mask = is_fit & (tall["record_type"] == "params")
        tall.loc[p_mask, "duality_gap"] = at_mllib["duality_gap"]
        reports.append(
            MllibRefit(
                mechanism=mech,
                representation=rep,
                n_pairs=fit.n_rows,
                n_iter=fit.n_iter,
                objective_mllib=fit.objective,
                objective_local=at_local["objective"],
                objective_at_mllib=at_mllib["objective"],
                duality_gap_mllib=at_mllib["duality_gap"],
                max_abs_weight_gap=float(
                    max(np.abs(fit.coef_shared - b_local).max(), np.abs(fit.coef_domain - S_local).max(initial=0.0))
                ),
            )
        )
    if new_explanations:
        tall = pd.concat([tall[~replaced_explanations], *new_explanations], ignore_index=True)
    tall["row_id"] = range(len(tall))
    for col, dtype in TALL_SCHEMA.items():
        tall[col] = tall[col].astype(dtype)  # type: ignore[call-overload]
    return tall[list(TALL_SCHEMA)], reports
