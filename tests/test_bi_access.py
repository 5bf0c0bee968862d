"""BI access through SQLAlchemy + duckdb_engine (the route Superset and most Python BI tools use).

A small served copy is published from the fixture build DB, then opened read-only with SQLAlchemy: the
inspector lists schemas, tables and columns, pandas reads a mart, writes are refused, and a pool that
is recycled after a new publication sees the new data. Needs ``sqlalchemy<2.1`` (ecosystem.md A.5:
``get_columns`` fails on 2.1 with duckdb_engine 0.17).
"""

from __future__ import annotations

from pathlib import Path

import duckdb
import duckdb_engine  # noqa: F401 - a declared dependency: fail, don't skip, when it is missing
import pandas as pd
import pytest
import sqlalchemy as sa
from sqlalchemy.pool import NullPool

from pipelines.build.publish import publish
from tests.quality_db import WEIRD, mutate


@pytest.fixture
def served(quality_db: Path) -> tuple[Path, Path, Path]:
    """The quality fixture build DB, published beside it: (build DB, served copy, Parquet exports)."""
    serve = quality_db.parent / "serve" / "preflens.duckdb"
    exports = quality_db.parent / "serve" / "parquet"
    publish(quality_db, serve, exports)
    return quality_db, serve.resolve(), exports


def url(path: Path) -> str:
    """The URL the README documents for Superset: absolute path (so four slashes), read-only."""
    assert path.is_absolute()
    return f"duckdb:///{path}?access_mode=read_only"


def _expected_tables(serve: Path) -> set[str]:
    con = duckdb.connect(str(serve), read_only=True)
    try:
        return {
            r[0]
            for r in con.execute(
                "select table_name from information_schema.tables where table_schema = 'marts'"
            ).fetchall()
        }
    finally:
        con.close()


def test_sqlalchemy_pin_is_the_one_that_works() -> None:
    major, minor = (int(x) for x in sa.__version__.split(".")[:2])
    assert (major, minor) == (2, 0), "get_columns breaks with sqlalchemy 2.1 on duckdb_engine (ecosystem.md A.5)"


def test_inspector_lists_schemas_tables_and_columns(served: tuple[Path, Path, Path]) -> None:
    _, serve, _ = served
    tables = _expected_tables(serve)
    assert {"fct_concept_effects", "dim_concepts", "rpt_top_concepts", "fct_builds"} <= tables
    engine = sa.create_engine(url(serve), poolclass=NullPool)
    try:
        insp = sa.inspect(engine)
        schemas = insp.get_schema_names()
        # duckdb_engine qualifies schemas with their catalog (the file stem)
        assert "preflens.marts" in schemas or "marts" in schemas, schemas
        assert not any(s.endswith(".raw") for s in schemas)  # the served copy has the marts only
        assert set(insp.get_table_names(schema="marts")) == tables
        assert insp.get_view_names(schema="marts") == []  # views were materialised at publication
        cols = {c["name"]: c for c in insp.get_columns("fct_pair_features_comp", schema="marts")}
        assert {"label_id", "domain", "winner", WEIRD} <= set(cols)
        effect_cols = [c["name"] for c in insp.get_columns("fct_concept_effects", schema="marts")]
        assert {"global_lift_pct", "shared_weight", "domain_deviation", "fit_id"} <= set(effect_cols)
    finally:
        engine.dispose()


def test_pandas_reads_a_mart_and_binds_parameters(served: tuple[Path, Path, Path]) -> None:
    _, serve, _ = served
    engine = sa.create_engine(url(serve), poolclass=NullPool)
    try:
        with engine.connect() as conn:
            df = pd.read_sql("select * from marts.fct_concept_effects order by mechanism, domain, concept", conn)
            top = pd.read_sql(
                sa.text(
                    "select concept, concept_rank from marts.rpt_top_concepts "
                    "where mechanism = :m and domain = :d and representation = 'comp' order by concept_rank"
                ),
                conn,
                params={"m": "judge:gpt-4", "d": "code"},
            )
            (n,) = conn.execute(sa.text("select count(*) from marts.fct_concept_effects")).one()
    finally:
        engine.dispose()
    assert len(df) == n > 0
    assert {"global_lift_pct", "fit_id"} <= set(df.columns)
    assert top["concept_rank"].tolist() == list(range(1, len(top) + 1)) and len(top) == 3
    assert top["concept"].iloc[0] == "clarity"  # |lift| 20 beats 12 and 9.5 in the fixture


def test_read_only_engine_refuses_writes(served: tuple[Path, Path, Path]) -> None:
    _, serve, _ = served
    for engine in (
        sa.create_engine(url(serve), poolclass=NullPool),
        sa.create_engine(f"duckdb:///{serve}", connect_args={"read_only": True}, poolclass=NullPool),
    ):
        try:
            with engine.connect() as conn:
                assert conn.execute(sa.text("select current_setting('access_mode')")).scalar() == "read_only"
                with pytest.raises(sa.exc.DBAPIError):
                    conn.execute(sa.text("create table marts.scratch (x integer)"))
        finally:
            engine.dispose()


def test_two_bi_engines_read_at_once(served: tuple[Path, Path, Path]) -> None:
    _, serve, _ = served
    a = sa.create_engine(url(serve))
    b = sa.create_engine(url(serve))
    try:
        with a.connect() as ca, b.connect() as cb:
            q = sa.text("select count(*) from marts.fct_predictions")
            assert ca.execute(q).scalar() == cb.execute(q).scalar() > 0
    finally:
        a.dispose()
        b.dispose()


def test_recycled_pool_sees_the_next_publication(served: tuple[Path, Path, Path]) -> None:
    """After a swap, a pooled engine must be recycled (``dispose()``, or NullPool) to see the new build."""
    build, serve, exports = served
    engine = sa.create_engine(url(serve), poolclass=NullPool)
    q = sa.text("select count(*) from marts.fct_model_metrics")
    try:
        with engine.connect() as conn:
            before = conn.execute(q).scalar()
        mutate(
            build,
            "insert into marts.fct_model_metrics "
            "values ('fit2', 'judge:gpt-4', 'judge', 'comp', 'hmdr', 'code', 'cv', 3, 0.99, 0.4)",
        )
        publish(build, serve, exports)
        with engine.connect() as conn:  # NullPool: a fresh DuckDB connection on the new file
            assert conn.execute(q).scalar() == before + 1
    finally:
        engine.dispose()
