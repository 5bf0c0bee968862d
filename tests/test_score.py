"""`preflens score` on the real sample: frozen published weights applied to new pairs, agreement and drift.

One private copy of the shared sample warehouse; the sample's own pairs of one judge are scored as they are
(agreement within the fit's held-out interval) and with every verdict flipped (a drift signal). Then a warehouse
built without a held-back part of two judges' pairs scores that part (pairs the fit never saw), and a second
build on all of them shows in rpt_concept_drift while the first fit stays frozen.
"""

from __future__ import annotations

import gzip
import hashlib
import json
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pytest

from pipelines.annotate.catalog import OFFLINE_ANNOTATOR, OFFLINE_ANNOTATOR_VERSION
from pipelines.annotate.offline import upsert_catalog
from pipelines.core.config import SAMPLE_PATH, Paths
from pipelines.core.warehouse import connect
from pipelines.score.fit import FitSpec, ScoreError, load_fit
from pipelines.score.inputs import annotate_new_pairs, ingest_new_pairs, load_new_pairs, new_pair_features
from py_models.frozen import ALL_DOMAINS, FrozenFit
from tests.conftest import QUICK_FIT_ARGS, SampleRun, preflens
from tests.sample_subset import SUBSET_MECHANISMS

pytestmark = pytest.mark.slow

MECHANISM = "judge:gpt-3.5-turbo"


def _write_pairs(path: Path, *, flip: bool = False) -> int:
    """The sample's rows of MECHANISM (canonical JSONL), every verdict flipped when ``flip``."""
    n = 0
    with gzip.open(SAMPLE_PATH, "rt", encoding="utf-8") as src, path.open("w", encoding="utf-8") as out:
        for line in src:
            row = json.loads(line)
            if row["mechanism"] != MECHANISM:
                continue
            if flip:
                row["winner"] = {"a": "b", "b": "a"}.get(row["winner"], row["winner"])
            out.write(json.dumps(row) + "\n")
            n += 1
    return n


def q(db: Path, sql: str, params: list | None = None) -> list[tuple]:
    con = duckdb.connect(str(db), read_only=True)
    try:
        return con.execute(sql, params or []).fetchall()
    finally:
        con.close()


class Scored:
    def __init__(self, warehouse: Path, n_pairs: int, same, flipped, labels_before: int) -> None:
        self.paths = Paths(warehouse=warehouse)
        self.n_pairs, self.same, self.flipped, self.labels_before = n_pairs, same, flipped, labels_before

    def score_id(self, proc) -> str:
        line = next(x for x in proc.stdout.splitlines() if x.startswith("score "))
        return line.split()[1].rstrip(":")


@pytest.fixture(scope="module")
def scored(sample_run: SampleRun, tmp_path_factory: pytest.TempPathFactory) -> Scored:
    root = tmp_path_factory.mktemp("score")
    warehouse = sample_run.copy_to(root / "warehouse")
    same_file, flipped_file = root / "same.jsonl", root / "flipped.jsonl"
    n = _write_pairs(same_file)
    _write_pairs(flipped_file, flip=True)
    labels_before = q(Paths(warehouse=warehouse).build_db, "select count(*) from raw.labels")[0][0]
    same = preflens(warehouse, "score", str(same_file), "--fit", "latest", "--mechanism", MECHANISM)
    flipped = preflens(warehouse, "score", str(flipped_file), "--mechanism", MECHANISM)
    return Scored(warehouse, n, same, flipped, labels_before)


def test_the_samples_own_pairs_agree_within_the_fits_interval(scored: Scored) -> None:
    proc = scored.same
    assert proc.returncode == 0, proc.stderr
    assert "no drift: agreement within the fit's held-out interval" in proc.stdout
    sid = scored.score_id(proc)
    db = scored.paths.build_db
    ((n, agreement, fit_acc, fit_low, agree_high, drift),) = q(
        db,
        "select n_pairs, agreement, fit_accuracy, fit_ci_low, agreement_ci_high, drift from ops.score_agreement "
        "where score_id = ? and domain = '__all__'",
        [sid],
    )
    assert n == scored.n_pairs and drift is False
    assert agree_high >= fit_low and agreement > 0.5 and 0.5 < fit_acc < 1
    # every pair is in the mart, with P(A wins), a predicted winner and its local explanation
    rows = q(
        db,
        "select count(*), min(prob_a), max(prob_a), count(*) filter (where agrees is null) "
        "from marts.fct_scored_pairs where score_id = ?",
        [sid],
    )[0]
    assert rows[0] == scored.n_pairs and 0 <= rows[1] <= rows[2] <= 1 and rows[3] == 0
    n_explained = q(db, "select count(distinct item_id) from marts.fct_scored_explanations where score_id = ?", [sid])
    assert n_explained[0][0] > 0.9 * scored.n_pairs
    # the domains are compared too, each against the fit's own figure for it
    domains = q(db, "select count(*) from marts.fct_score_agreement where score_id = ? and domain <> '__all__'", [sid])
    assert domains[0][0] >= 2


def test_flipped_verdicts_are_a_drift_signal_recorded_but_not_blocking(scored: Scored) -> None:
    proc = scored.flipped
    assert proc.returncode == 0, proc.stderr  # recorded, not blocking
    assert "drift signal overall" in proc.stdout
    sid = scored.score_id(proc)
    db = scored.paths.build_db
    ((agreement, drift),) = q(
        db, "select agreement, drift from ops.score_agreement where score_id = ? and domain = '__all__'", [sid]
    )
    assert drift is True and agreement < 0.5
    results = q(
        db,
        "select success, blocking, observed from ops.quality_results where build_id = ? and suite = 'score_drift' "
        "and expected like ?",
        [sid, f"{MECHANISM} / __all__:%"],
    )
    assert len(results) == 1 and results[0][0] is False and results[0][1] is False
    assert q(db, "select count(*) from marts.fct_quality_results where build_id = ?", [sid])[0][0] >= 1


def test_flipping_every_verdict_flips_every_agreement(scored: Scored) -> None:
    db = scored.paths.build_db
    sids = [scored.score_id(scored.same), scored.score_id(scored.flipped)]
    same, flipped = (
        dict(q(db, "select item_id, agrees from ops.scored_pairs where score_id = ?", [sid])) for sid in sids
    )
    assert same.keys() == flipped.keys() and all(same[i] is not flipped[i] for i in same)


def test_scoring_adds_nothing_to_the_training_data(scored: Scored) -> None:
    assert q(scored.paths.build_db, "select count(*) from raw.labels")[0][0] == scored.labels_before
    sid = scored.score_id(scored.same)
    ((input_db,),) = q(scored.paths.build_db, "select input_db from ops.score_runs where score_id = ?", [sid])
    assert Path(input_db).parent == scored.paths.warehouse / "score"
    assert q(Path(input_db), "select count(*) from raw.labels")[0][0] == scored.n_pairs


def test_the_new_pairs_features_are_the_fits_own(scored: Scored) -> None:
    """The sample's pairs, re-ingested and re-annotated, get exactly the features the fit was given: the features
    the score run's dbt built in its own file (the same transform and pivot) against the fit's feature mart."""
    db = scored.paths.build_db
    sid = scored.score_id(scored.same)
    ((input_db, fit_id, rep),) = q(
        db, "select input_db, fit_id, representation from ops.score_runs where score_id = ?", [sid]
    )
    con = duckdb.connect(str(db), read_only=True)
    try:
        fit = load_fit(con, fit_id, MECHANISM, rep)
        new = load_new_pairs(Path(input_db), fit, summary=None)  # type: ignore[arg-type]
        cols = ", ".join(f'"{c}"' for c in fit.frozen.concepts)
        wide = con.execute(
            f"select item_id, {cols} from marts.fct_pair_features_{rep} where mechanism = ? order by item_id",
            [MECHANISM],
        ).df()
    finally:
        con.close()
    assert fit.representation == "measure" and len(fit.frozen.concepts) > 10
    ours = new.pairs["item_id"].tolist()
    assert sorted(wide["item_id"]) == sorted(ours)
    expected = wide.set_index("item_id").loc[ours].to_numpy(dtype=float)
    # exactly: one transform and one pivot (dbt's) made both (a Python copy of them differed by 4.4e-16)
    np.testing.assert_array_equal(new.X_raw, expected)


def test_an_unknown_fit_is_named(scored: Scored, tmp_path: Path) -> None:
    path = tmp_path / "p.jsonl"
    _write_pairs(path)
    proc = preflens(scored.paths.warehouse, "score", str(path), "--fit", "no-such-fit", "--mechanism", MECHANISM)
    assert proc.returncode == 1
    assert "fit 'no-such-fit' is not the fit of any build" in proc.stderr


def test_a_mechanism_the_fit_did_not_fit_is_named(scored: Scored, tmp_path: Path) -> None:
    path = tmp_path / "p.jsonl"
    _write_pairs(path)
    proc = preflens(scored.paths.warehouse, "score", str(path), "--mechanism", "judge:nobody")
    assert proc.returncode == 1
    assert "has no weights for mechanism 'judge:nobody'" in proc.stderr and MECHANISM in proc.stderr


# ------------------------------------------------------------------ the features dbt builds in the score file


def _offline_fit(
    concepts: list[str],
    representation: str = "measure",
    version: str = OFFLINE_ANNOTATOR_VERSION,
    annotator: str = OFFLINE_ANNOTATOR,
) -> FitSpec:
    """A FitSpec over ``concepts`` (the weights do not matter for annotations and features)."""
    p = len(concepts)
    frozen = FrozenFit(concepts, np.ones(p), np.zeros(p), [], np.zeros((0, p)))
    held_out = pd.DataFrame({"domain": [ALL_DOMAINS], "n_pairs": [10], "accuracy": [0.6]})
    return FitSpec("fit-x", MECHANISM, representation, annotator, version, frozen, held_out)


@pytest.fixture
def small_score_file(tmp_path: Path) -> tuple[Path, Path]:
    """A build DB holding only the offline catalog, and a score file with 12 of MECHANISM's sample pairs ingested
    and annotated offline (as a score run leaves them before its features)."""
    pairs = tmp_path / "pairs.jsonl"
    _write_pairs(pairs)
    pairs.write_text("".join(pairs.read_text().splitlines(keepends=True)[:12]))
    build_db, input_db = tmp_path / "build.duckdb", tmp_path / "score" / "score-test.duckdb"
    build = connect(build_db)
    upsert_catalog(build)
    try:
        ingest_new_pairs(input_db, [pairs], mechanism=MECHANISM)
        annotate_new_pairs(build, input_db, _offline_fit(["Length"]))
    finally:
        build.close()
    return build_db, input_db


def test_the_score_files_features_are_built_by_dbt_in_the_fits_concept_order(
    small_score_file: tuple[Path, Path],
) -> None:
    """dbt builds the item features in the score file with the fit's catalog: columns in the fit's order, a concept
    the new data lacks is 0, one the fit lacks is ignored, and the measure transform is the fit's catalog's."""
    build_db, input_db = small_score_file
    build = duckdb.connect(str(build_db))
    try:  # the fit's catalog says identity for Length (the current offline catalog: log1p): the fit's must win
        build.execute("update raw.concepts set measure_transform = 'identity' where concept = 'Length'")
        concepts = ["Readability", "No Such Concept", "Length"]
        new = new_pair_features(build, input_db, _offline_fit(concepts), summary=None)  # type: ignore[arg-type]
    finally:
        build.close()
    tables = q(input_db, "select table_schema || '.' || table_name from information_schema.tables")
    assert ("intermediate.int_item_features_measure",) in tables  # dbt's, not a Python pivot
    raw = dict(
        q(
            input_db,
            "select item_id, case when is_relevant then measure_a - measure_b else 0 end from raw.annotations "
            "where concept = 'Length'",
        )
    )
    ids = new.pairs["item_id"].tolist()
    assert len(ids) == 12 and new.X_raw.shape == (12, 3)
    np.testing.assert_array_equal(new.X_raw[:, 1], 0.0)
    np.testing.assert_allclose(new.X_raw[:, 2], [raw[i] for i in ids], rtol=1e-12)
    assert np.abs(new.X_raw[:, 2]).max() > 50  # identity on word counts, not log1p
    assert np.abs(new.X_raw[:, 0]).max() > 0
    wide = q(input_db, "select count(*) from intermediate.int_item_features_measure")[0][0]
    n_cols = len(q(input_db, "describe intermediate.int_item_features_measure"))
    assert wide == 12 and n_cols > 3 + 2  # every measured concept is built; the fit reads its own three


def test_a_fit_whose_catalog_is_not_in_the_build_db_is_named(small_score_file: tuple[Path, Path]) -> None:
    build_db, input_db = small_score_file
    build = duckdb.connect(str(build_db))
    try:
        old_fit = _offline_fit(["Length"], version="offline-0.9")
        with pytest.raises(ScoreError, match=r"no concept catalog of offline version offline-0\.9 \(raw\.concepts\)"):
            new_pair_features(build, input_db, old_fit, summary=None)  # type: ignore[arg-type]
    finally:
        build.close()


def test_imported_annotations_are_copied_from_the_warehouse_and_missing_ones_named(
    small_score_file: tuple[Path, Path],
) -> None:
    build_db, input_db = small_score_file
    fit = _offline_fit(["Length"], annotator="annotated_pairs", version="imp-1")
    build = duckdb.connect(str(build_db))
    try:  # the warehouse holds imported annotations of all but one of the run's items
        build.execute(f"attach '{input_db}' as s (read_only)")
        copy = (
            "insert into raw.annotations select * replace ('annotated_pairs' as annotator, 'imp-1' as "
            "annotator_version) from s.raw.annotations where annotator = 'offline' and item_id {} "
            "(select min(item_id) from s.raw.items)"
        )
        build.execute(copy.format("<>"))
        build.execute("detach s")
        with pytest.raises(ScoreError, match=r"1 of 12 pairs have no annotated_pairs annotations of version imp-1"):
            annotate_new_pairs(build, input_db, fit)
        build.execute(f"attach '{input_db}' as s (read_only)")
        build.execute(copy.format("="))
        build.execute("detach s")
        annotate_new_pairs(build, input_db, fit)
    finally:
        build.close()
    assert q(input_db, "select count(distinct item_id) from raw.annotations where annotator_version = 'imp-1'") == [
        (12,)
    ]


# ------------------------------------------------------------------ a held-back part of the sample


def _held_back(item_id: str) -> bool:
    """About a third of the items, chosen by a hash of the id (the same on every machine)."""
    return int(hashlib.sha256(item_id.encode()).hexdigest(), 16) % 3 == 0


class HeldBack:
    def __init__(self, warehouse: Path, first, score_first, second, rescore, n_held: int) -> None:
        self.paths = Paths(warehouse=warehouse)
        self.first, self.score_first, self.second, self.rescore, self.n_held = (
            first,
            score_first,
            second,
            rescore,
            n_held,
        )


@pytest.fixture(scope="module")
def held_back(tmp_path_factory: pytest.TempPathFactory) -> HeldBack:
    """Build 1 on the two judges' pairs minus a held-back third; score that third with MECHANISM's fit; build 2 on
    everything; score the held-back third again with build 1's fit (still frozen)."""
    root = tmp_path_factory.mktemp("held_back")
    train, held = root / "train.jsonl", root / "held.jsonl"
    n_held = 0
    with gzip.open(SAMPLE_PATH, "rt", encoding="utf-8") as src, train.open("w") as t, held.open("w") as h:
        for line in src:
            row = json.loads(line)
            if row["mechanism"] not in SUBSET_MECHANISMS:
                continue
            if _held_back(row["item_id"]):
                h.write(json.dumps(row) + "\n")
                n_held += row["mechanism"] == MECHANISM
            else:
                t.write(json.dumps(row) + "\n")
    wh = root / "warehouse"
    first = preflens(wh, "run", str(train), *QUICK_FIT_ARGS)
    assert first.returncode == 0, first.stdout[-2000:] + first.stderr[-2000:]
    score_first = preflens(wh, "score", str(held), "--mechanism", MECHANISM)
    second = preflens(wh, "run", str(held), *QUICK_FIT_ARGS)
    assert second.returncode == 0, second.stdout[-2000:] + second.stderr[-2000:]
    fit1 = q(Paths(warehouse=wh).build_db, "select fit_id from ops.score_runs")[0][0]
    rescore = preflens(wh, "score", str(held), "--fit", fit1, "--mechanism", MECHANISM)
    return HeldBack(wh, first, score_first, second, rescore, n_held)


def _score_id(proc) -> str:
    return next(x for x in proc.stdout.splitlines() if x.startswith("score ")).split()[1].rstrip(":")


def test_held_back_pairs_agree_within_the_fits_interval(held_back: HeldBack) -> None:
    proc = held_back.score_first
    assert proc.returncode == 0, proc.stderr
    assert "no drift: agreement within the fit's held-out interval" in proc.stdout
    sid = _score_id(proc)
    ((n, agreement, low, high, fit_acc, fit_low, drift),) = q(
        held_back.paths.build_db,
        "select n_pairs, agreement, agreement_ci_low, agreement_ci_high, fit_accuracy, fit_ci_low, drift "
        "from ops.score_agreement where score_id = ? and domain = '__all__'",
        [sid],
    )
    assert n == held_back.n_held > 50 and drift is False
    # pairs that carry only the other judge's verdict are scored, not compared
    unlabelled = q(
        held_back.paths.build_db,
        "select count(*), count(*) filter (where agrees is null) from marts.fct_scored_pairs "
        "where score_id = ? and winner is null",
        [sid],
    )[0]
    assert unlabelled[0] > 0 and unlabelled[0] == unlabelled[1]
    assert high >= fit_low and agreement > 0.5 and low <= fit_acc + 0.15


def test_a_frozen_fit_scores_the_same_after_a_newer_build(held_back: HeldBack) -> None:
    assert held_back.rescore.returncode == 0, held_back.rescore.stderr
    first, again = _score_id(held_back.score_first), _score_id(held_back.rescore)
    db = held_back.paths.build_db
    rows = q(
        db,
        "select a.item_id, a.prob_a, b.prob_a from ops.scored_pairs a join ops.scored_pairs b using (item_id) "
        "where a.score_id = ? and b.score_id = ?",
        [first, again],
    )
    n_scored = q(db, "select n_pairs from ops.score_runs where score_id = ?", [first])[0][0]
    assert len(rows) == n_scored > held_back.n_held  # the other judge's held-back pairs too, without a verdict of M
    np.testing.assert_allclose([r[1] for r in rows], [r[2] for r in rows], rtol=0, atol=1e-12)
    # while the latest fit is another one
    latest = q(db, "select fit_id from marts.dim_latest_fit")[0][0]
    assert q(db, "select fit_id from ops.score_runs where score_id = ?", [again])[0][0] != latest


def test_concept_drift_follows_the_published_builds(held_back: HeldBack) -> None:
    db = held_back.paths.build_db
    builds = q(db, "select build_id from marts.fct_builds where published order by started_at")
    assert len(builds) == 2
    (b1,), (b2,) = builds
    rows = q(
        db,
        "select fit_id, build_number, previous_fit_id, total_weight, previous_total_weight, weight_change "
        "from marts.rpt_concept_drift where mechanism = ? and representation = 'measure' and control = 'none' "
        "and domain = '__shared__'",
        [MECHANISM],
    )
    firsts = [r for r in rows if r[0] == b1]
    seconds = [r for r in rows if r[0] == b2]
    assert firsts and seconds and len(firsts) == len(seconds)
    assert all(r[1] == 1 and r[2] is None for r in firsts)
    assert all(r[1] == 2 and r[2] == b1 for r in seconds)
    assert all(abs(r[5] - (r[3] - r[4])) < 1e-12 for r in seconds if r[4] is not None)
    assert any(abs(r[5]) > 0 for r in seconds if r[5] is not None)  # more data moved some weight


# ------------------------------------------------------------------ a fit of the LLM annotator


LLM_VERSION = "llm-p1:test-model"


class LLMWarehouse:
    def __init__(self, root: Path, known: Path, new: Path, concepts: list[str]) -> None:
        self.build_db, self.known, self.new, self.concepts = root / "wh" / "preflens.duckdb", known, new, concepts

    def fit(self) -> FitSpec:
        return _offline_fit(self.concepts, representation="comp", version=LLM_VERSION, annotator="llm")


@pytest.fixture
def llm_warehouse(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, llm_server) -> LLMWarehouse:
    """A warehouse whose first 8 planted pairs were annotated by the LLM annotator (test-model, the local server,
    configured in the environment as for `preflens annotate`), and files of those pairs and of 8 new ones."""
    from pipelines.annotate.llm import annotate_llm
    from pipelines.ingest import ingest_paths
    from pipelines.llm.config import load_llm_config
    from tests.planted import write_planted_pairs

    monkeypatch.setenv("PREFLENS_LLM_BASE_URL", llm_server.base_url)
    monkeypatch.setenv("PREFLENS_LLM_MODEL", "test-model")
    monkeypatch.delenv("PREFLENS_CONFIG", raising=False)
    monkeypatch.chdir(tmp_path)
    every = tmp_path / "every.jsonl"
    write_planted_pairs(every, n=16)
    lines = every.read_text().splitlines(keepends=True)  # two verdicts per pair, pair by pair
    known, new = tmp_path / "known.jsonl", tmp_path / "new.jsonl"
    known.write_text("".join(lines[:16]))
    new.write_text("".join(lines[16:]))
    warehouse = LLMWarehouse(tmp_path, known, new, [])
    build = connect(warehouse.build_db)
    try:
        ingest_paths(build, [known])
        report = annotate_llm(build, load_llm_config(warehouse=warehouse.build_db.parent))
        assert report.annotator_version == LLM_VERSION and report.items_completed == 8
        warehouse.concepts = [r[0] for r in build.execute("select concept from raw.concepts order by 1").fetchall()]
    finally:
        build.close()
    return warehouse


def _score_file(warehouse: LLMWarehouse, pairs: Path, name: str) -> Path:
    input_db = warehouse.build_db.parent / "score" / f"{name}.duckdb"
    ingest_new_pairs(input_db, [pairs], mechanism="human:planted")
    return input_db


def test_an_llm_fit_annotates_new_pairs_with_its_catalog_reusing_the_cache(
    llm_warehouse: LLMWarehouse, llm_server
) -> None:
    """Pairs the warehouse annotated cost no call; new ones are asked; their answers join the warehouse's cache
    (not its items); the features dbt builds from the LLM annotations are the comp values."""
    fit = llm_warehouse.fit()
    before = llm_server.stats()["requests"]
    build = duckdb.connect(str(llm_warehouse.build_db))
    try:
        cache_before = build.execute("select count(*) from raw.llm_cache").fetchall()[0][0]
        known = _score_file(llm_warehouse, llm_warehouse.known, "score-known")
        annotate_new_pairs(build, known, fit)
        assert llm_server.stats()["requests"] == before  # every answer from the cache
        new = _score_file(llm_warehouse, llm_warehouse.new, "score-new")
        annotate_new_pairs(build, new, fit)
        assert llm_server.stats()["requests"] > before
        assert build.execute("select count(*) from raw.items").fetchall()[0][0] == 8  # no training data added
        assert build.execute("select count(*) from raw.llm_cache").fetchall()[0][0] > cache_before
        features = new_pair_features(build, new, fit, summary=None)  # type: ignore[arg-type]
    finally:
        build.close()
    for db in (known, new):
        n_items, n_annotated, versions = q(
            db,
            "select (select count(*) from raw.items), count(distinct item_id), list(distinct annotator_version) "
            "from raw.annotations",
        )[0]
        assert n_items == n_annotated == 8 and versions == [LLM_VERSION]
    assert features.X_raw.shape == (8, len(llm_warehouse.concepts)) == (8, 10)
    assert set(np.unique(features.X_raw)) <= {-1.0, 0.0, 1.0} and np.abs(features.X_raw).sum() > 0


def test_without_an_endpoint_cached_pairs_are_annotated_and_new_ones_refused(
    llm_warehouse: LLMWarehouse, llm_server, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PREFLENS_LLM_BASE_URL")
    monkeypatch.delenv("PREFLENS_LLM_MODEL")
    fit = llm_warehouse.fit()
    before = llm_server.stats()["requests"]
    build = duckdb.connect(str(llm_warehouse.build_db))
    try:
        known = _score_file(llm_warehouse, llm_warehouse.known, "score-known")
        annotate_new_pairs(build, known, fit)
        new = _score_file(llm_warehouse, llm_warehouse.new, "score-new")
        with pytest.raises(ScoreError, match="no LLM endpoint is configured: set PREFLENS_LLM_MODEL"):
            annotate_new_pairs(build, new, fit)
    finally:
        build.close()
    assert llm_server.stats()["requests"] == before
    assert q(known, "select count(distinct item_id) from raw.annotations")[0][0] == 8
    assert q(new, "select count(*) from raw.annotations")[0][0] == 0  # nothing written before the refusal


def test_an_llm_fit_of_another_prompt_version_or_model_is_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pipelines.score.llm_annotation import fit_llm_config

    monkeypatch.delenv("PREFLENS_CONFIG", raising=False)
    monkeypatch.delenv("PREFLENS_LLM_BASE_URL", raising=False)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PREFLENS_LLM_MODEL", "other-model")
    with pytest.raises(ScoreError, match=r"llm-p0:test-model; this preflens asks with prompt version p1"):
        fit_llm_config(_offline_fit(["A"], version="llm-p0:test-model", annotator="llm"), tmp_path)
    with pytest.raises(ScoreError, match=r"'other-model' gives annotator version llm-p1:other-model, not the fit's"):
        fit_llm_config(_offline_fit(["A"], version=LLM_VERSION, annotator="llm"), tmp_path)
    monkeypatch.delenv("PREFLENS_LLM_MODEL")
    config, configured = fit_llm_config(_offline_fit(["A"], version=LLM_VERSION, annotator="llm"), tmp_path)
    assert config.model == "test-model" and not configured
