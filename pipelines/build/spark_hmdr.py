"""The HMDR fit on Spark MLlib: Eq. 1 solved distributed, for data that does not fit one machine.

With no intercept, Eq. 1 (``py_models/_augment.py``) is one L1 logistic regression on the augmented design
(method.md §4.5), with column scaling for the two penalties and instance weights for the two losses. MLlib's
``LogisticRegression`` (``elasticNetParam=1``, ``standardization=False``, ``fitIntercept=False``, ``weightCol``)
minimises

    (1 / sum_r v_r) sum_r v_r l(y_r, theta'a_r) + regParam * ||theta||_1

over augmented rows r with weights v_r. Each pair i of a domain with weights of its own gives a row
``[c*x_i | x_i in block d]`` (weight w_i) and, when alpha > 0, a row ``[c*x_i | 0]`` (weight alpha*w_i); a pair of
a domain without weights gives ``[c*x_i | 0]`` (weight (1+alpha)*w_i). So sum_r v_r = (1+alpha) N, and with the
shared column j scaled by ``c_j = lambda_domain / (lambda_shared * f_j)`` (f_j the penalty factor) and
``regParam = lambda_domain / (1 + alpha)``, MLlib's objective times (1 + alpha) is exactly the mean-normalised
Eq. 1 (``hmdr_objective``), with ``b_j = c_j * theta_j`` and ``s_d = theta`` of block d.

The augmented design is built row by row on the executors (``flatMap``), never collected; only the per-domain
pair counts (one row per domain) and the coefficients come back to the driver. See docs/scaling.md.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from py_models._augment import UNPENALIZED_FACTOR

#: columns of the input frame besides the features
DOMAIN, LABEL, WEIGHT = "domain", "label", "weight"


@dataclass(frozen=True)
class MllibProblem:
    """How Eq. 1 maps onto MLlib's L1 logistic regression (pure arithmetic, no Spark)."""

    n_features: int
    #: domains with weights of their own, in block order
    weighted_domains: tuple[str, ...]
    #: scale of each feature's column in the shared block (``lambda_domain / (lambda_shared * f_j)``)
    shared_scale: NDArray[np.float64]
    #: features that get a domain deviation (not unpenalised covariates)
    domain_features: NDArray[np.intp]
    alpha: float
    reg_param: float

    @property
    def width(self) -> int:
        """Columns of the augmented design."""
        return self.n_features + len(self.weighted_domains) * len(self.domain_features)

    def block_start(self, k: int) -> int:
        return self.n_features + k * len(self.domain_features)

    def unpack(self, theta: NDArray[np.float64]) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        """``(b, S)`` in original parameters from MLlib's coefficients (S has one row per weighted domain)."""
        theta = np.asarray(theta, dtype=np.float64)
        b = self.shared_scale * theta[: self.n_features]
        S = np.zeros((len(self.weighted_domains), self.n_features))
        for k in range(len(self.weighted_domains)):
            start = self.block_start(k)
            S[k, self.domain_features] = theta[start : start + len(self.domain_features)]
        return b, S


def mllib_problem(
    domain_counts: dict[str, int],
    n_features: int,
    alpha: float,
    lambda_shared: float,
    lambda_domain: float,
    min_domain_samples: int,
    unpenalized: Sequence[int] = (),
) -> MllibProblem:
    """The MLlib form of Eq. 1 for these hyperparameters. Domains with fewer than ``min_domain_samples``
    pairs (at least 1) get no deviation, as in :class:`~py_models.hmdr.HMDRClassifier`."""
    if alpha < 0 or lambda_shared <= 0 or lambda_domain <= 0:
        raise ValueError("need alpha >= 0 and lambda_shared, lambda_domain > 0")
    factor = np.ones(n_features)
    factor[list(unpenalized)] = UNPENALIZED_FACTOR
    weighted = tuple(sorted(d for d, n in domain_counts.items() if n >= max(int(min_domain_samples), 1)))
    free = set(int(j) for j in unpenalized)
    return MllibProblem(
        n_features=n_features,
        weighted_domains=weighted,
        shared_scale=lambda_domain / (lambda_shared * factor),
        domain_features=np.array([j for j in range(n_features) if j not in free], dtype=np.intp),
        alpha=float(alpha),
        reg_param=lambda_domain / (1.0 + alpha),
    )


def augmented_rows(problem: MllibProblem, x: Sequence[float], domain: str, label: float, weight: float) -> list[Any]:
    """The augmented rows ``(features, label, weight)`` of one pair (``pyspark.ml.linalg.SparseVector``)."""
    from pyspark.ml.linalg import SparseVector

    xv = np.asarray(x, dtype=np.float64)
    nz = np.flatnonzero(xv)
    shared_idx, shared_val = nz.tolist(), (xv[nz] * problem.shared_scale[nz]).tolist()
    try:
        k = problem.weighted_domains.index(domain)
    except ValueError:
        k = -1
    if k < 0:
        return [(SparseVector(problem.width, shared_idx, shared_val), label, (1.0 + problem.alpha) * weight)]
    dom_local = np.flatnonzero(xv[problem.domain_features])
    start = problem.block_start(k)
    idx = shared_idx + (start + dom_local).tolist()
    val = shared_val + xv[problem.domain_features[dom_local]].tolist()
    rows = [(SparseVector(problem.width, idx, val), label, weight)]
    if problem.alpha > 0:
        rows.append((SparseVector(problem.width, shared_idx, shared_val), label, problem.alpha * weight))
    return rows


def _quoted(name: str) -> str:
    """A column reference for any name (dots, quotes and backticks are data, not a path)."""
    return "`" + name.replace("`", "``") + "`"


@dataclass(frozen=True)
class MllibFit:
    """The fitted weights, in original parameters, and MLlib's own summary."""

    domains: tuple[str, ...]
    coef_shared: NDArray[np.float64]
    #: one row per domain of ``domains`` (zero for domains without weights of their own)
    coef_domain: NDArray[np.float64]
    has_domain_weights: NDArray[np.bool_]
    #: MLlib's final objective times (1 + alpha): the mean-normalised Eq. 1
    objective: float
    n_iter: int
    n_rows: int


def fit_hmdr_mllib(
    frame: Any,
    features: Sequence[str],
    *,
    alpha: float,
    lambda_shared: float,
    lambda_domain: float,
    min_domain_samples: int = 10,
    unpenalized: Sequence[str] = (),
    tol: float = 1e-10,
    max_iter: int = 500,
) -> MllibFit:
    """Fit Eq. 1 on a Spark DataFrame with the ``features`` columns, ``domain``, ``label`` (1 = response a
    wins, 0 = b) and ``weight`` (> 0). Nothing but per-domain counts and the coefficients is collected."""
    from pyspark.ml.classification import LogisticRegression
    from pyspark.sql import functions as F

    missing = [c for c in [*features, DOMAIN, LABEL, WEIGHT] if c not in frame.columns]
    if missing:
        raise ValueError(f"the input frame lacks column(s): {', '.join(missing)}")
    feats = list(features)
    counts = {
        str(r[DOMAIN]): int(r["n"])
        for r in frame.where(F.col(WEIGHT) > 0).groupBy(DOMAIN).agg(F.count("*").alias("n")).collect()
    }
    problem = mllib_problem(
        counts,
        len(feats),
        alpha,
        lambda_shared,
        lambda_domain,
        min_domain_samples,
        unpenalized=[feats.index(c) for c in unpenalized],
    )
    selected = frame.where(F.col(WEIGHT) > 0).select(
        *[F.col(_quoted(c)).cast("double") for c in feats], DOMAIN, LABEL, WEIGHT
    )
    n = len(feats)
    design = selected.rdd.flatMap(
        lambda r: augmented_rows(problem, r[:n], str(r[n]), float(r[n + 1]), float(r[n + 2]))
    ).toDF(["features", LABEL, WEIGHT])
    model = LogisticRegression(
        featuresCol="features",
        labelCol=LABEL,
        weightCol=WEIGHT,
        family="binomial",
        fitIntercept=False,
        standardization=False,
        elasticNetParam=1.0,
        regParam=problem.reg_param,
        tol=tol,
        maxIter=max_iter,
    ).fit(design)
    b, S_weighted = problem.unpack(model.coefficients.toArray())
    domains = tuple(sorted(counts))
    S = np.zeros((len(domains), n))
    has = np.zeros(len(domains), dtype=bool)
    for k, d in enumerate(problem.weighted_domains):
        S[domains.index(d)] = S_weighted[k]
        has[domains.index(d)] = True
    history = model.summary.objectiveHistory
    return MllibFit(
        domains=domains,
        coef_shared=b,
        coef_domain=S,
        has_domain_weights=has,
        objective=float(history[-1]) * (1.0 + problem.alpha),
        n_iter=int(model.summary.totalIterations),
        n_rows=int(sum(counts.values())),
    )
