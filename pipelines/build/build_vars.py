"""The settings one build takes from its command line: dbt vars, the way dbt takes them or as named flags.

``preflens build`` accepts ``--vars '{hmdr_n_bootstrap: 0, top_k: 5}'`` (a YAML or JSON mapping, as
``dbt --vars``), ``--var KEY=VALUE`` (repeatable) and a named flag for each documented setting
(``--n-bootstrap 0``, ``--no-model-selection``; :data:`NAMED_SETTINGS`). Every source becomes one mapping of dbt
var to text (:func:`check_dbt_vars`), the ``dbt_vars`` of :func:`pipelines.build.run.run_pipeline`, which passes
it to dbt and, for the vars that are also quality thresholds, to the gates
(:func:`pipelines.build.quality.thresholds_from_dbt_vars`). Only :data:`TUNABLE_VARS` can be set; one var given
twice with different values is an error.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Mapping
from dataclasses import dataclass

import yaml

from py_models.fit_settings import FitSettings

#: the mechanism-contrast fit's settings (int_mechanism_contrast_fits, docs/contrasts.md)
CONTRAST_VARS: frozenset[str] = frozenset({"contrast_min_shared_items", "contrast_min_domain_items", "contrast_fdr"})

#: dbt vars a caller may set per build: the fit settings (owned by ``FitSettings.VARS``; the build id is set by the
#: build, the lift bound is a publication rule), the contrast fit's and the report's top-k
TUNABLE_VARS: frozenset[str] = (
    (frozenset(FitSettings.VARS) - {"build_id", "max_abs_lift_pct"}) | CONTRAST_VARS | {"top_k"}
)

#: what a var's value may contain (it is rendered into dbt's ``--vars`` and into SQL comparisons)
SAFE_VAR = re.compile(r"^[A-Za-z0-9_.:/+-]+$")


@dataclass(frozen=True)
class NamedSetting:
    """A command-line flag for one dbt var."""

    flag: str
    var: str
    kind: type  # int, float, str, or bool (a --flag / --no-flag pair)
    help: str


NAMED_SETTINGS: tuple[NamedSetting, ...] = (
    NamedSetting("representations", "representations", str, "comma-separated: measure, comp, score"),
    NamedSetting("cv-folds", "cv_folds", int, "cross-fitting and CV folds"),
    NamedSetting("min-domain-pairs", "min_domain_pairs", int, "decisive pairs a domain needs for its own weights"),
    NamedSetting("model-selection", "hmdr_select", bool, "choose the penalties by CV (no: the fixed ones)"),
    NamedSetting("grid", "hmdr_grid", str, "selection grid: pooling or paper"),
    NamedSetting("rule", "hmdr_rule", str, "selection rule, e.g. log_loss_within_accuracy_se"),
    NamedSetting("grid-domains", "hmdr_grid_domains", int, "|D| of the paper grid"),
    NamedSetting("alpha", "hmdr_alpha", float, "fixed alpha without selection"),
    NamedSetting("lambda-shared", "hmdr_lambda_shared", float, "fixed lambda of b without selection"),
    NamedSetting("lambda-domain", "hmdr_lambda_domain", float, "fixed lambda of s_d without selection"),
    NamedSetting("length-control", "length_control", bool, "also fit the length-controlled refit"),
    NamedSetting("fit-jobs", "fit_jobs", int, "worker processes for the fit"),
    NamedSetting("n-bootstrap", "hmdr_n_bootstrap", int, "bootstrap resamples for the CIs (0 = off)"),
    NamedSetting("top-k", "top_k", int, "concepts per mechanism and domain in rpt_top_concepts"),
)


def _text(value: object) -> str:
    """A var value as dbt reads it back: YAML booleans as true/false, lists comma-joined, null as empty."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return ""
    if isinstance(value, list | tuple):
        return ",".join(_text(v) for v in value)
    if isinstance(value, Mapping):
        raise ValueError(f"a setting takes one value, not a mapping: {value!r}")
    return str(value).strip()


def check_dbt_vars(values: Mapping[str, object]) -> dict[str, str]:
    """Validated extra dbt vars as text (ValueError naming the bad key or value)."""
    out = {}
    for key, value in values.items():
        if key not in TUNABLE_VARS:
            raise ValueError(f"unknown setting {key!r}; settable: {', '.join(sorted(TUNABLE_VARS))}")
        text = _text(value)
        if text and not SAFE_VAR.match(text.replace(",", "")):
            raise ValueError(f"unsafe value for setting {key}: {text!r}")
        out[key] = text
    check_fit_settings(out)
    return out


def check_fit_settings(dbt_vars: Mapping[str, str]) -> None:
    """Fail now, not after the dbt build, when ``dbt_vars`` do not make valid fit settings."""
    from pipelines.core.config import dbt_project_vars

    try:
        settings = FitSettings.from_vars({**dbt_project_vars(), **dbt_vars, "build_id": "check"})
    except ValueError as exc:
        raise ValueError(f"invalid fit setting: {exc}") from None
    if "hmdr_grid" in dbt_vars or "hmdr_rule" in dbt_vars:
        from py_models.selection import GRIDS, SELECTION_RULES

        if settings.grid not in GRIDS:
            raise ValueError(f"invalid setting hmdr_grid {settings.grid!r}; one of {', '.join(GRIDS)}")
        if settings.rule not in SELECTION_RULES:
            raise ValueError(f"invalid setting hmdr_rule {settings.rule!r}; one of {', '.join(SELECTION_RULES)}")
    if "top_k" in dbt_vars and not (dbt_vars["top_k"].isdigit() and int(dbt_vars["top_k"]) >= 1):
        raise ValueError(f"invalid setting top_k {dbt_vars['top_k']!r}; a whole number, at least 1")


def parse_vars(text: str) -> dict[str, object]:
    """``--vars`` text (a YAML or JSON mapping, as ``dbt --vars`` takes it) as a mapping; argparse type."""
    try:
        loaded = yaml.safe_load(text) if text.strip() else {}
    except yaml.YAMLError as exc:
        raise argparse.ArgumentTypeError(f"not YAML or JSON: {str(exc).splitlines()[0]}") from None
    if not isinstance(loaded, dict):
        raise argparse.ArgumentTypeError(f"expected a mapping such as '{{hmdr_n_bootstrap: 0}}', got {text!r}")
    unknown = sorted(str(k) for k in loaded if k not in TUNABLE_VARS)
    if unknown:
        raise argparse.ArgumentTypeError(
            f"unknown setting(s) {', '.join(unknown)}; settable: {', '.join(sorted(TUNABLE_VARS))}"
        )
    return {str(k): v for k, v in loaded.items()}


def add_build_settings(parser: argparse.ArgumentParser) -> None:
    """Add ``--vars``, ``--var`` and the :data:`NAMED_SETTINGS` flags to a build command's parser."""
    group = parser.add_argument_group(
        "build settings", "dbt vars for this build (defaults: vars in dbt_project/dbt_project.yml; docs/fitting.md)"
    )
    group.add_argument(
        "--vars",
        type=parse_vars,
        metavar="YAML",
        dest="settings_yaml",
        help="settings as a YAML/JSON mapping, as dbt takes it, e.g. --vars '{hmdr_n_bootstrap: 0, top_k: 5}'",
    )
    group.add_argument(
        "--var",
        action="append",
        metavar="KEY=VALUE",
        help="one setting, e.g. --var hmdr_n_bootstrap=0 (repeatable)",
    )
    for s in NAMED_SETTINGS:
        dest = f"setting__{s.var}"
        text = f"{s.help} (var {s.var})"
        if s.kind is bool:
            group.add_argument(f"--{s.flag}", action=argparse.BooleanOptionalAction, dest=dest, help=text)
        else:
            metavar = {int: "N", float: "X"}.get(s.kind, "VALUE")
            group.add_argument(f"--{s.flag}", type=s.kind, dest=dest, metavar=metavar, help=text)


def build_settings(args: argparse.Namespace) -> dict[str, str]:
    """The validated dbt vars of a command parsed with :func:`add_build_settings` (ValueError on a conflict)."""
    given: dict[str, tuple[str, str]] = {}  # var -> (text, where it came from)

    def put(var: str, value: object, origin: str) -> None:
        text = _text(value)
        if var in given and given[var][0] != text:
            raise ValueError(f"setting {var} given twice: {given[var][1]} and {origin}")
        given[var] = (text, origin)

    for key, value in (getattr(args, "settings_yaml", None) or {}).items():
        put(key, value, f"--vars {key}: {_text(value)}")
    for item in getattr(args, "var", None) or []:
        key, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"--var expects KEY=VALUE, got {item!r}")
        put(key.strip(), value, f"--var {item}")
    for s in NAMED_SETTINGS:
        value = getattr(args, f"setting__{s.var}", None)
        if value is not None:
            flag = f"--{s.flag}" if value is not False else f"--no-{s.flag}"
            put(s.var, value, flag if s.kind is bool else f"{flag} {value}")
    return check_dbt_vars({var: text for var, (text, _) in given.items()})
