"""The features of a score run's items, built by dbt on the run's own file: the fit's own transform and pivot.

dbt owns the measure transform (``int_item_concepts``) and the concept pivot (macro ``concept_feature_table``).
A score run does not copy them: it runs ``dbt run --select +int_item_features_<rep>`` (tag ``scoring``) on
``<warehouse>/score/<score_id>.duckdb`` with the fit's annotator and annotator version as vars, the way a build
runs dbt (:func:`pipelines.build.dbt_runner.run_dbt`: absolute paths, run from the file's folder, tied to this
process), and reads the item feature table back in the fit's concept order. dbt opens the file through a link of
one name in ``<warehouse>/score/dbt/`` (one profile for every score run: dbt parses partially), and its artifacts
of score runs go to ``<warehouse>/score/dbt/dbt_target`` (score runs hold the build lock, so one at a time), never to
the build's.
"""

from __future__ import annotations

import os
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
from numpy.typing import NDArray

from pipelines.build.build_vars import SAFE_VAR
from pipelines.build.dbt_runner import DbtError, run_dbt
from pipelines.core.config import Paths
from pipelines.score.fit import FitSpec, ScoreError

#: the key columns of the item feature tables, before one column per concept (macro concept_feature_table)
ITEM_KEYS = ("item_id", "domain")


def item_feature_model(representation: str) -> str:
    """The dbt model of a representation's item features (``dbt_project/models/intermediate/scoring/``)."""
    return f"int_item_features_{representation}"


#: the name dbt opens a score file by: a (hard) link in ``<warehouse>/score/dbt/`` while dbt runs, so that every score
#: run has the same dbt profile and dbt parses the project partially (a profile naming each run's file would make it
#: parse it all again)
DBT_LINK_NAME = "score.duckdb"


def score_dbt_paths(input_db: Path) -> tuple[Paths, str]:
    """(paths, file) dbt gets for a score file: ``<warehouse>/score/dbt/`` as dbt's working folder, holding the hard
    link :data:`DBT_LINK_NAME` to ``input_db`` (made here, removed after dbt; the file's absolute path where the
    file system has no hard links) and dbt's target folder ``dbt_target``. Score runs hold the build lock, so one
    at a time uses the link."""
    work = input_db.resolve().parent / "dbt"
    work.mkdir(parents=True, exist_ok=True)
    # a write-ahead log beside the link is an interrupted dbt run's on an earlier file: never replay it on this one
    (work / f"{DBT_LINK_NAME}.wal").unlink(missing_ok=True)
    tmp = work / f".{DBT_LINK_NAME}.{os.getpid()}"
    tmp.unlink(missing_ok=True)
    try:
        os.link(input_db.resolve(), tmp)  # a hard link: DuckDB names the database after the path it opens
    except OSError:
        return Paths(warehouse=work), str(input_db.resolve())
    os.replace(tmp, work / DBT_LINK_NAME)
    return Paths(warehouse=work), DBT_LINK_NAME


def build_item_features(input_db: Path, fit: FitSpec, run_id: str) -> None:
    """Build the item features of ``fit``'s representation on ``input_db`` with dbt (the fit's annotator vars)."""
    dbt_vars = {"annotator": fit.annotator, "annotator_version": fit.annotator_version}
    for key, value in dbt_vars.items():
        if not SAFE_VAR.match(value):
            raise ScoreError(f"fit {fit.fit_id}: unsafe {key} {value!r} for dbt (allowed: {SAFE_VAR.pattern})")
    vars_arg = "{" + ", ".join(f"{k}: '{v}'" for k, v in dbt_vars.items()) + "}"
    model = item_feature_model(fit.representation)
    paths, db_file = score_dbt_paths(input_db)
    try:
        run_dbt(
            ["run", "--select", f"+{model}", "--vars", vars_arg],
            paths,
            run_id,
            extra_env={"PREFLENS_BUILD_DB": db_file},
        )
    except DbtError as exc:
        raise ScoreError(f"building the features of {input_db} with dbt ({model}) failed: {exc}") from exc
    finally:
        (paths.warehouse / DBT_LINK_NAME).unlink(missing_ok=True)


def read_item_features(
    con: duckdb.DuckDBPyConnection, input_db: Path, fit: FitSpec, item_ids: list[str]
) -> NDArray[np.float64]:
    """The raw feature matrix of ``item_ids`` (rows) in the fit's concept order (columns) from the item feature
    table of ``con`` (the score file ``input_db``): a fit concept the table lacks is 0 (no value for it, as in the
    macro), a concept the fit lacks is ignored."""
    model = item_feature_model(fit.representation)
    try:
        frame = con.execute(f"select * from intermediate.{model}").df()
    except duckdb.CatalogException as exc:
        raise ScoreError(f"{input_db} has no intermediate.{model}: its dbt run did not build it ({exc})") from exc
    if tuple(frame.columns[: len(ITEM_KEYS)]) != ITEM_KEYS:
        raise ScoreError(f"intermediate.{model} of {input_db} does not start with the columns {', '.join(ITEM_KEYS)}")
    values = frame.iloc[:, len(ITEM_KEYS) :].set_axis(frame["item_id"].astype(str), axis=0)
    if values.index.duplicated().any():
        raise ScoreError(f"intermediate.{model} of {input_db} repeats an item")
    missing = pd.Index(item_ids).difference(values.index)
    if len(missing):
        raise ScoreError(f"intermediate.{model} of {input_db} lacks {len(missing)} item(s), e.g. {missing[0]!r}")
    X = values.reindex(columns=fit.frozen.concepts, fill_value=0.0).loc[item_ids].to_numpy(dtype=np.float64)
    if not np.all(np.isfinite(X)):
        raise ScoreError(f"intermediate.{model} of {input_db} has a value that is not a finite number")
    return X
