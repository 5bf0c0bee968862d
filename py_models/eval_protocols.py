"""Evaluation protocols of method.md §6.3 for HMDR and its baselines (pure, no I/O).

* **in_domain** -- ``n_splits`` (default 25) random train/test splits per mechanism, stratified by domain: in
  every domain round(n_d * test_frac) pairs go to test (test_frac = 1/8, the paper's 400 of 3,200). Every
  variant is fitted on the same training part with its own 5-fold CV selection (nested) and scored on the test
  part, per domain and overall (``__all__``).
* **ood** -- leave one domain out: for every domain with at least ``min_ood_test`` pairs (and a mechanism with
  at least 2 domains), ``n_seeds`` (default 5) seeds each train on a stratified ``ood_train_frac`` (0.875, the
  paper's 2,450 of 2,800) subsample of the other domains and test on the whole held-out domain, predicting with
  b only (the held-out domain is unseen). Variants that have no shared part (specific_only, peer_enet) are not
  run OOD, as in the paper's Table 1.
* **Ties** (method.md §14.6, "explaining a judge/RM"): tie verdicts are dropped before splitting
  (``n_ties_dropped``); a prediction with P = 0.5 exactly scores 0.5. Recorded as ``tie_policy``.
* Test pairs are never symmetrised into training (the split happens on pairs first).

The work is planned in **units**. :func:`prepare_mechanism` builds a mechanism's design once (decisive pairs in
label_id order: X, y, domains), :func:`plan_units` lists its units and :func:`run_unit` fits and scores one. A unit
is one training part of one protocol (an in-domain split, or a held-out domain and seed) and one fit with its
selection, which gives the rows of one variant, or of several when they are the same model: ``shared_only`` and
``flat_pooled`` are one L1 logistic regression on every concept with the same C grid unless ``shared_mask``
restricts the shared concepts (:func:`variant_groups`), so one fit serves both. A unit's rows depend on nothing
but its design, its own keys and the settings, so units may run in any order and process, and an interrupted
evaluation resumes by running the units it has no rows for.

``run_protocols`` returns one row per (mechanism, variant, protocol, split, domain) with n_pairs, accuracy and
log-loss (EVAL_COLUMNS), in the order of the protocol loops above.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, cast

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from py_models._jobs import map_jobs
from py_models.baselines import (
    L1_SOLVERS,
    FlatPooledClassifier,
    PeerElasticNetClassifier,
    SharedOnlyClassifier,
    SpecificOnlyClassifier,
)
from py_models.cv import score
from py_models.selection import PAPER_GRID_DOMAINS, DomainGridSearchCV, HMDRClassifierCV

__all__ = [
    "VARIANTS",
    "OOD_VARIANTS",
    "EVAL_COLUMNS",
    "TIE_POLICY",
    "PROTOCOL_VERSION",
    "ProtocolSettings",
    "MechanismDesign",
    "EvalUnit",
    "in_domain_splits",
    "in_domain_mask",
    "ood_splits",
    "ood_runs",
    "ood_masks",
    "fit_variant",
    "variant_groups",
    "prepare_mechanism",
    "plan_units",
    "run_unit",
    "evaluate_mechanism",
    "run_protocols",
    "sort_results",
]

VARIANTS = ("hmdr", "hmdr_paper", "shared_only", "specific_only", "dirty", "flat_pooled", "peer_enet")
OOD_VARIANTS = ("hmdr", "hmdr_paper", "shared_only", "dirty", "flat_pooled")
PROTOCOLS = ("in_domain", "ood")
TIE_POLICY = "ties_dropped;p=0.5_scores_0.5"
#: bump when a change to this module or to the estimators changes any result: an interrupted evaluation of another
#: version is not resumed (its settings key differs)
PROTOCOL_VERSION = 2  # 2: the L1 baselines on the cd kernel (equal to liblinear's fits within solver tolerance)
ALL = "__all__"
EVAL_COLUMNS = [
    "mechanism",
    "mechanism_type",
    "representation",
    "variant",
    "protocol",
    "split",
    "held_out_domain",
    "domain",
    "n_pairs",
    "accuracy",
    "log_loss",
    "n_train",
    "selected_config",
    "tie_policy",
    "n_ties_dropped",
]
#: relative CPU cost of one unit per training pair (measured on the sample by benchmarks/eval_bench.py, the L1
#: baselines on the cd kernel: the per-domain fits of specific_only still cost most); it only orders the work
_COST = {
    "hmdr": 1.5,
    "hmdr_paper": 1.0,
    "dirty": 0.95,
    "shared_only": 1.0,
    "flat_pooled": 1.0,
    "specific_only": 2.4,
    "peer_enet": 1.3,
}


@dataclass(frozen=True)
class ProtocolSettings:
    """Everything besides the data that a unit's rows depend on (defaults: the paper's protocols)."""

    protocols: tuple[str, ...] = PROTOCOLS
    variants: tuple[str, ...] = VARIANTS
    n_splits: int = 25
    n_seeds: int = 5
    test_frac: float = 0.125
    ood_train_frac: float = 0.875
    min_ood_test: int = 20
    seed: int = 0
    n_folds: int = 5
    grid_domains: int | None = PAPER_GRID_DOMAINS
    min_domain_samples: int = 20
    shared_mask: NDArray[np.bool_] | None = field(default=None, compare=False)
    domain_masks: Mapping[Any, NDArray[np.bool_]] | None = field(default=None, compare=False)
    #: solver of the L1 baselines (``cd``, or ``liblinear``: scikit-learn's wrapper, the benchmark's reference)
    baseline_solver: str = "cd"

    def __post_init__(self) -> None:
        object.__setattr__(self, "protocols", tuple(self.protocols))
        object.__setattr__(self, "variants", tuple(self.variants))
        unknown = sorted(set(self.variants) - set(VARIANTS)) + sorted(set(self.protocols) - set(PROTOCOLS))
        if unknown:
            raise ValueError(
                f"unknown variant(s) or protocol(s) {unknown}; variants: {VARIANTS}, protocols: {PROTOCOLS}"
            )
        if self.baseline_solver not in L1_SOLVERS:
            raise ValueError(f"baseline_solver must be one of {L1_SOLVERS}, got {self.baseline_solver!r}")

    def fit_kw(self) -> dict[str, Any]:
        """The keyword arguments of :func:`fit_variant` (besides the seed)."""
        return {
            "n_folds": self.n_folds,
            "grid_domains": self.grid_domains,
            "min_domain_samples": self.min_domain_samples,
            "shared_mask": self.shared_mask,
            "domain_masks": self.domain_masks,
            "baseline_solver": self.baseline_solver,
        }

    def key(self) -> dict[str, Any]:
        """The settings as plain values, with ``PROTOCOL_VERSION`` (what an evaluation is resumed by); masks are
        not representable here and make the settings unkeyable."""
        if self.shared_mask is not None or self.domain_masks is not None:
            raise ValueError("settings with masks have no key")
        out = {k: v for k, v in asdict(self).items() if k not in ("shared_mask", "domain_masks")}
        out["protocols"] = sorted(self.protocols)
        out["variants"] = sorted(self.variants)
        out["protocol_version"] = PROTOCOL_VERSION
        return out


@dataclass(frozen=True)
class MechanismDesign:
    """One mechanism's decisive pairs in one representation, in label_id order (built once, used by every unit)."""

    representation: str
    mechanism: str
    mechanism_type: str
    n_ties_dropped: int
    X: NDArray[np.float64]
    y: NDArray[np.object_]
    dom: NDArray[np.object_]

    @property
    def y_pos(self) -> NDArray[np.bool_]:
        return self.y == "a"

    @property
    def evaluable(self) -> bool:
        """Two classes and at least 10 decisive pairs (otherwise the mechanism gets no rows)."""
        return len(set(self.y.tolist())) >= 2 and len(self.y) >= 10

    def base_row(self) -> dict[str, Any]:
        return {
            "mechanism": self.mechanism,
            "mechanism_type": self.mechanism_type,
            "representation": self.representation,
            "tie_policy": TIE_POLICY,
            "n_ties_dropped": self.n_ties_dropped,
        }


@dataclass(frozen=True)
class EvalUnit:
    """One training part and one fit: the rows of ``variants`` (several when they are the same model)."""

    representation: str
    mechanism: str
    protocol: str
    split: int  # split index (in_domain) or seed (ood)
    held_out_domain: str | None
    variants: tuple[str, ...]
    cost: float = field(default=0.0, compare=False)

    def keys(self) -> list[tuple[str, str, str, int, str | None, str]]:
        """(representation, mechanism, protocol, split, held_out_domain, variant) of every variant it gives."""
        return [
            (self.representation, self.mechanism, self.protocol, self.split, self.held_out_domain, v)
            for v in self.variants
        ]


def _rng(seed: int, *keys: str) -> np.random.Generator:
    return np.random.default_rng([seed, *(zlib.crc32(k.encode("utf-8")) for k in keys)])


def _as_str(domains: NDArray) -> NDArray:
    return np.asarray(domains, dtype=object).astype(str)


def in_domain_mask(domains: NDArray, split: int, test_frac: float, seed: int, key: str = "") -> NDArray[np.bool_]:
    """Test mask of in-domain split ``split``: round(n_d * test_frac) test pairs per domain (none where that
    would leave a domain without test or without training pairs)."""
    dom = _as_str(domains)
    rng = _rng(seed, key, "in_domain", str(split))
    te = np.zeros(len(dom), dtype=bool)
    for d in sorted(set(dom.tolist())):
        idx = np.flatnonzero(dom == d)
        k = int(round(len(idx) * test_frac))
        if 0 < k < len(idx):
            te[rng.choice(idx, size=k, replace=False)] = True
    return te


def in_domain_splits(
    domains: NDArray, n_splits: int, test_frac: float, seed: int, key: str = ""
) -> list[NDArray[np.bool_]]:
    """Test masks, stratified by domain (round(n_d * test_frac) test pairs per domain)."""
    return [in_domain_mask(domains, s, test_frac, seed, key) for s in range(n_splits)]


def ood_runs(domains: NDArray, n_seeds: int, min_test: int) -> list[tuple[str, int]]:
    """(held-out domain, seed) of every OOD run: domains with at least ``min_test`` pairs, of >= 2 domains."""
    dom = _as_str(domains)
    names = sorted(set(dom.tolist()))
    if len(names) < 2:
        return []
    return [(d, s) for d in names if (dom == d).sum() >= min_test for s in range(n_seeds)]


def ood_masks(
    domains: NDArray, held_out: str, seed_index: int, train_frac: float, seed: int, key: str = ""
) -> tuple[NDArray[np.bool_], NDArray[np.bool_]]:
    """(train mask, test mask) of one OOD run: a stratified subsample of the other domains, the held-out one."""
    dom = _as_str(domains)
    te = dom == held_out
    rng = _rng(seed, key, "ood", held_out, str(seed_index))
    tr = np.zeros(len(dom), dtype=bool)
    for o in sorted(set(dom.tolist())):
        if o == held_out:
            continue
        idx = np.flatnonzero(dom == o)
        k = max(1, int(round(len(idx) * train_frac)))
        tr[rng.choice(idx, size=k, replace=False)] = True
    return tr, te


def ood_splits(
    domains: NDArray, n_seeds: int, train_frac: float, min_test: int, seed: int, key: str = ""
) -> list[tuple[str, int, NDArray[np.bool_], NDArray[np.bool_]]]:
    """(held-out domain, seed, train mask, test mask): train = stratified subsample of the other domains."""
    return [(d, s, *ood_masks(domains, d, s, train_frac, seed, key)) for d, s in ood_runs(domains, n_seeds, min_test)]


def fit_variant(
    variant: str,
    X: Any,
    y: NDArray,
    dom: NDArray,
    *,
    n_folds: int = 5,
    seed: int = 0,
    grid_domains: int | None = PAPER_GRID_DOMAINS,
    min_domain_samples: int = 20,
    shared_mask: NDArray[np.bool_] | None = None,
    domain_masks: Mapping[Any, NDArray[np.bool_]] | None = None,
    baseline_solver: str = "cd",
) -> Any:
    """Fit one variant with its model selection (peer_enet: fixed C = 1, as the peers do).

    ``hmdr``: the main job's selection (``HMDRClassifierCV``, pooling grid, its default rule);
    ``hmdr_paper``: the paper's 9-configuration grid by fold-averaged CV accuracy (``max_fold_accuracy``, no
    weight bound); ``dirty``: that grid with alpha = 0; the L1 baselines: ``C_GRID`` by the same rule
    (``DomainGridSearchCV``), solved by ``baseline_solver`` (``cd``: every fold's C path on one stored design,
    and peer_enet's saga called directly; ``liblinear``: scikit-learn's estimators per fit, the previous route).
    """
    if variant == "hmdr":
        return HMDRClassifierCV(
            n_folds=n_folds,
            seed=seed,
            min_domain_samples=min_domain_samples,
            shared_mask=shared_mask,
            domain_masks=domain_masks,
        ).fit(X, y, domains=dom)
    if variant in ("hmdr_paper", "dirty"):
        return HMDRClassifierCV(
            grid="paper",
            rule="max_fold_accuracy",
            n_folds=n_folds,
            seed=seed,
            grid_domains=grid_domains,
            max_abs_weight=np.inf,
            alpha=0.0 if variant == "dirty" else None,
            min_domain_samples=min_domain_samples,
            shared_mask=shared_mask,
            domain_masks=domain_masks,
        ).fit(X, y, domains=dom)
    baselines: dict[str, Any] = {
        "shared_only": SharedOnlyClassifier(shared_mask=shared_mask, solver=baseline_solver),
        "specific_only": SpecificOnlyClassifier(solver=baseline_solver),
        "flat_pooled": FlatPooledClassifier(solver=baseline_solver),
    }
    if variant == "peer_enet":
        backend = "estimator" if baseline_solver == "liblinear" else "sag_solver"
        m = PeerElasticNetClassifier(C=1.0, backend=backend).fit(X, y, domains=dom)
        m.selected_config_ = {"C": 1.0}
        return m
    if variant not in baselines:
        raise ValueError(f"unknown variant {variant!r}; choose from {VARIANTS}")
    est = baselines[variant]
    return DomainGridSearchCV(est, est.param_grid(0), n_folds=n_folds, seed=seed).fit(X, y, domains=dom)


def variant_groups(variants: Sequence[str], shared_mask: NDArray[np.bool_] | None = None) -> list[tuple[str, ...]]:
    """``variants`` (in order) grouped by the model they fit: ``shared_only`` joins ``flat_pooled`` when no
    ``shared_mask`` restricts it (both are then the same L1 logistic regression on every concept, same C grid,
    same folds), every other variant is its own group."""
    groups: list[tuple[str, ...]] = []
    same = shared_mask is None and "shared_only" in variants and "flat_pooled" in variants
    for v in variants:
        if same and v == "flat_pooled":
            continue
        groups.append(("shared_only", "flat_pooled") if same and v == "shared_only" else (v,))
    return groups


def _config_str(model: Any) -> str:
    cfg = getattr(model, "selected_config_", {}) or {}
    return ";".join(f"{k}={float(v):.6g}" for k, v in sorted(cfg.items()))


def _score_rows(base: dict[str, Any], y_pos: NDArray, prob: NDArray, dom: NDArray, per_domain: bool) -> list[dict]:
    acc, ll = score(y_pos, prob)
    rows = [{**base, "domain": ALL, "n_pairs": len(y_pos), "accuracy": acc, "log_loss": ll}]
    if per_domain:
        for d in sorted(set(dom.tolist()), key=str):
            m = dom == d
            a, lo = score(y_pos[m], prob[m])
            rows.append({**base, "domain": str(d), "n_pairs": int(m.sum()), "accuracy": a, "log_loss": lo})
    return rows


def prepare_mechanism(sub: pd.DataFrame, concept_cols: Sequence[str], representation: str) -> MechanismDesign:
    """The design of one mechanism's labelled pairs (``sub``: one mechanism; ties dropped, label_id order)."""
    mech = str(sub["mechanism"].iloc[0])
    mtypes = sorted(map(str, sub["mechanism_type"].unique()))
    winners = sub["winner"].astype(str).str.strip().str.lower()
    dec = sub[winners != "tie"].sort_values("label_id", kind="stable").reset_index(drop=True)
    X = dec[list(concept_cols)].to_numpy(dtype=np.float64)
    if not np.isfinite(X).all():
        bad = [c for c, ok in zip(concept_cols, np.isfinite(X).all(axis=0)) if not ok]
        raise ValueError(f"{representation}-rep values of mechanism {mech!r} are not finite in concept(s) {bad}")
    return MechanismDesign(
        representation=representation,
        mechanism=mech,
        mechanism_type="|".join(mtypes),
        n_ties_dropped=int((winners == "tie").sum()),
        X=X,
        y=dec["winner"].astype(str).str.strip().str.lower().to_numpy(dtype=object),
        dom=dec["domain"].astype(str).to_numpy(dtype=object),
    )


def plan_units(design: MechanismDesign, settings: ProtocolSettings) -> list[EvalUnit]:
    """Every unit of one mechanism, in protocol-loop order (in-domain splits, then OOD runs; variants inside)."""
    if not design.evaluable:
        return []
    groups = variant_groups(settings.variants, settings.shared_mask)
    rep, mech = design.representation, design.mechanism
    n = len(design.y)
    units: list[EvalUnit] = []
    if "in_domain" in settings.protocols:
        n_tr = n * (1.0 - settings.test_frac)
        for s in range(settings.n_splits):
            units += [EvalUnit(rep, mech, "in_domain", s, None, g, _COST[g[0]] * n_tr) for g in groups]
    if "ood" in settings.protocols:
        ood_groups = [tuple(v for v in g if v in OOD_VARIANTS) for g in groups]
        for d, s in ood_runs(design.dom, settings.n_seeds, settings.min_ood_test):
            n_tr = (n - int((design.dom == d).sum())) * settings.ood_train_frac
            units += [EvalUnit(rep, mech, "ood", s, d, g, _COST[g[0]] * n_tr) for g in ood_groups if g]
    return units


def run_unit(design: MechanismDesign, unit: EvalUnit, settings: ProtocolSettings) -> list[dict[str, Any]]:
    """Fit ``unit.variants[0]`` on the unit's training part and score it on its test part: the rows of every
    variant of the unit ([] when the training part has one class only or the test part is empty)."""
    X, y, dom, mech = design.X, design.y, design.dom, design.mechanism
    ood = unit.protocol == "ood"
    if ood:
        if unit.held_out_domain is None:
            raise ValueError("an OOD unit needs its held-out domain")
        tr, te = ood_masks(dom, unit.held_out_domain, unit.split, settings.ood_train_frac, settings.seed, mech)
    else:
        te = in_domain_mask(dom, unit.split, settings.test_frac, settings.seed, mech)
        tr = ~te
    if len(set(y[tr].tolist())) < 2 or not te.any():
        return []
    model = fit_variant(unit.variants[0], X[tr], y[tr], dom[tr], seed=settings.seed, **settings.fit_kw())
    prob = model.predict_proba(X[te], None if ood else dom[te])[:, 1]
    head = {
        **design.base_row(),
        "protocol": unit.protocol,
        "split": unit.split,
        "held_out_domain": unit.held_out_domain,
        "n_train": int(tr.sum()),
        "selected_config": _config_str(model),
    }
    rows: list[dict[str, Any]] = []
    for v in unit.variants:
        rows.extend(_score_rows({**head, "variant": v}, design.y_pos[te], prob, dom[te], per_domain=not ood))
    if ood:  # OOD rows are per held-out domain: their domain is the held-out one
        for r in rows:
            r["domain"] = unit.held_out_domain
    return rows


def _settings(kw: Mapping[str, Any]) -> ProtocolSettings:
    return ProtocolSettings(**dict(kw))


def evaluate_mechanism(
    sub: pd.DataFrame, concept_cols: Sequence[str], *, representation: str, **kw: Any
) -> list[dict[str, Any]]:
    """All protocol rows for one mechanism's labelled pairs (``kw``: the fields of :class:`ProtocolSettings`)."""
    settings = _settings(kw)
    design = prepare_mechanism(sub, concept_cols, representation)
    rows = [r for u in plan_units(design, settings) for r in run_unit(design, u, settings)]
    frame = sort_results(pd.DataFrame(rows, columns=EVAL_COLUMNS), settings.variants)
    return cast(list[dict[str, Any]], frame.to_dict("records"))


def sort_results(frame: pd.DataFrame, variants: Iterable[str] = VARIANTS) -> pd.DataFrame:
    """Rows in the protocol-loop order: representation, mechanism, protocol (in-domain first), split (OOD: held-out domain, then
    seed), variant (in ``variants`` order), domain (``__all__`` first)."""
    if frame.empty:
        return frame.reset_index(drop=True)
    v_rank = {v: i for i, v in enumerate(variants)}
    keys = pd.DataFrame(
        {
            "r": frame["representation"].astype(str),
            "m": frame["mechanism"].astype(str),
            "p": frame["protocol"].map({p: i for i, p in enumerate(PROTOCOLS)}),
            "h": frame["held_out_domain"].fillna("").astype(str),
            "s": frame["split"],
            "v": frame["variant"].map(v_rank),
            "a": frame["domain"].astype(str) != ALL,
            "d": frame["domain"].astype(str),
        },
        index=frame.index,
    )
    order = keys.sort_values(list(keys.columns), kind="stable").index
    return frame.loc[order].reset_index(drop=True)


def run_protocols(
    df: pd.DataFrame,
    concept_cols: Sequence[str],
    *,
    representation: str,
    n_jobs: int = 1,
    mechanisms: Sequence[str] | None = None,
    **kw: Any,
) -> pd.DataFrame:
    """Run the protocols for every mechanism of ``df`` (labelled pairs + concept columns); EVAL_COLUMNS frame.

    ``kw``: the fields of :class:`ProtocolSettings`. ``n_jobs`` processes over mechanisms (results do not depend
    on it); ``preflens evaluate`` schedules single units instead (pipelines/evaluate/workers.py)."""
    _settings(kw)  # unknown settings fail here, before any worker starts
    mechs = sorted(df["mechanism"].astype(str).unique().tolist()) if mechanisms is None else list(mechanisms)
    subs = [df[df["mechanism"].astype(str) == m] for m in mechs]
    costs = [float(len(s)) for s in subs]
    parts = map_jobs(
        evaluate_mechanism, [(s, concept_cols) for s in subs], n_jobs, costs=costs, representation=representation, **kw
    )
    rows = [r for p in parts for r in p]
    return pd.DataFrame(rows, columns=EVAL_COLUMNS)
