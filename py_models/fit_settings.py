"""The settings of one build's fit, typed (pure, no I/O).

Their values are dbt vars (``dbt_project/dbt_project.yml``, overridable with ``--vars``). The dbt Python model
``int_hmdr_fits`` reads them through its ``config:`` block (dbt renders every value as text) and the Spark fit
runner reads the project vars directly (YAML types); ``FitSettings.from_vars`` turns either into one typed,
frozen object, so the parsing rules live here only.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import ClassVar

from py_models.representations import representation_settings

__all__ = ["FitSettings"]

_TRUE = ("true", "1", "yes")


def _text(value: object) -> str:
    return "" if value is None else str(value).strip()


def _flag(value: object) -> bool:
    return _text(value).lower() in _TRUE


def _optional_int(value: object) -> int | None:
    text = _text(value)
    return int(text) if text else None


def _optional_float(value: object) -> float | None:
    text = _text(value)
    return float(text) if text else None


def _solver(value: object) -> str:
    from py_models.hmdr import SOLVERS

    text = _text(value)
    if text not in SOLVERS:
        raise ValueError(f"dbt var hmdr_solver must be one of {SOLVERS}, got {text!r}")
    return text


@dataclass(frozen=True)
class FitSettings:
    """What ``py_models.fit_build.fit_build`` needs besides the data; the var each field comes from in
    brackets (see ``dbt_project.yml`` for their meaning and defaults).

    Attributes
    ----------
    fit_id : str
        Lineage id stamped on every row (``build_id``).
    representations : tuple of str
        Representations to fit, in order; the first one fitted is the lead (``representations``, comma-separated).
    n_folds : int
        Cross-fitting and CV folds (``cv_folds``).
    min_domain_pairs : int
        Fewer decisive pairs in a domain: no domain weights (``min_domain_pairs``).
    select : bool
        Choose the hyperparameters by CV (``hmdr_select``).
    grid, rule : str
        The selection's grid and rule (``hmdr_grid``, ``hmdr_rule``).
    grid_domains : int or None
        |D| of the paper grid (``hmdr_grid_domains``; empty = the data's).
    alpha : float or None
        Fixed alpha without selection (``hmdr_alpha``; empty = 1/|D|).
    lambda_shared, lambda_domain : float
        Fixed lambdas without selection (``hmdr_lambda_shared``, ``hmdr_lambda_domain``).
    length_control : bool
        Add the length-controlled refit for the lead representation (``length_control``).
    n_jobs : int
        Worker processes (``fit_jobs``).
    n_bootstrap : int
        Bootstrap resamples for the lead representation (``hmdr_n_bootstrap``).
    max_abs_weight : float
        The selection's weight bound: the publication bound ``max_abs_lift_pct`` / 50 (lift = 50 * weight).
    solver : str
        The HMDR solver, one of ``py_models.hmdr.SOLVERS`` (``hmdr_solver``): ``cd`` (default) or ``liblinear``
        (the previous route, kept for comparison).
    """

    fit_id: str
    representations: tuple[str, ...]
    n_folds: int
    min_domain_pairs: int
    select: bool
    grid: str
    rule: str
    grid_domains: int | None
    alpha: float | None
    lambda_shared: float
    lambda_domain: float
    length_control: bool
    n_jobs: int
    n_bootstrap: int
    max_abs_weight: float
    solver: str

    #: the dbt vars (= keys of int_hmdr_fits' config block) ``from_vars`` reads
    VARS: ClassVar[tuple[str, ...]] = (
        "build_id",
        "representations",
        "cv_folds",
        "min_domain_pairs",
        "hmdr_select",
        "hmdr_grid",
        "hmdr_rule",
        "hmdr_grid_domains",
        "hmdr_alpha",
        "hmdr_lambda_shared",
        "hmdr_lambda_domain",
        "length_control",
        "fit_jobs",
        "hmdr_n_bootstrap",
        "max_abs_lift_pct",
        "hmdr_solver",
    )

    @classmethod
    def from_vars(cls, values: Mapping[str, object]) -> FitSettings:
        """Settings from dbt var values, as text (dbt's rendered config) or YAML types (the project vars).
        Keys besides ``VARS`` are ignored; a missing one is an error."""
        missing = [k for k in cls.VARS if k not in values]
        if missing:
            raise ValueError(f"fit settings lack the dbt vars {missing}")
        representations = tuple(r.strip() for r in _text(values["representations"]).split(",") if r.strip())
        for name in representations:
            representation_settings(name)  # ValueError for an unknown one
        return cls(
            fit_id=_text(values["build_id"]),
            representations=representations,
            n_folds=int(_text(values["cv_folds"])),
            min_domain_pairs=int(_text(values["min_domain_pairs"])),
            select=_flag(values["hmdr_select"]),
            grid=_text(values["hmdr_grid"]),
            rule=_text(values["hmdr_rule"]),
            grid_domains=_optional_int(values["hmdr_grid_domains"]),
            alpha=_optional_float(values["hmdr_alpha"]),
            lambda_shared=float(_text(values["hmdr_lambda_shared"])),
            lambda_domain=float(_text(values["hmdr_lambda_domain"])),
            length_control=_flag(values["length_control"]),
            n_jobs=int(_text(values["fit_jobs"])),
            n_bootstrap=int(_text(values["hmdr_n_bootstrap"])),
            max_abs_weight=float(_text(values["max_abs_lift_pct"])) / 50.0,
            solver=_solver(values["hmdr_solver"]),
        )
