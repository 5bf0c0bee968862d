"""Shared fixtures and helpers: repo paths, an isolated warehouse per test, the `preflens` console script, one
session-wide real run on the bundled sample (read it, or copy it to change it), the local LLM server, the quality
fixture build DB, a planted-signal raw warehouse and a tiny hostile served copy."""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from pipelines.core.config import Paths
from tests.llm_server import LLMTestServer
from tests.quality_db import build_fixture_db

REPO = Path(__file__).resolve().parent.parent
SHARED_DATA = REPO.parent / "shared" / "data"

# ------------------------------------------------------------------ running on two xdist workers (`make test`)

#: The longest test files, longest first. `make test` hands whole files to two workers (``--dist loadfile``) in
#: this order, then the rest in collection order, so the two workers finish together. The order is from per-file
#: ``--durations`` (issue 12: one file at a time, no xdist; files not measured then keep their earlier place). The
#: first file, ``test_crash_safety``, builds the shared sample run (``sample_run``) while the other worker runs
#: ``test_dbt_build``, which does not need it; the other readers of the sample run come after it is built.
LONGEST_FIRST = (
    "test_crash_safety.py",
    "test_dbt_build.py",
    "test_score.py",
    "test_fulldata.py",
    "test_interop.py",
    "test_llm_e2e.py",
    "test_build_concurrency.py",
    "test_pipeline_e2e.py",
    "test_build_vars.py",
    "test_evaluate_resume.py",
    "test_evaluate.py",
    "test_quality.py",
    "test_fit_history.py",
    "test_summary.py",
    "test_report.py",
    "test_fit_runner.py",
)
#: nested thread pools that would oversubscribe the two cores the two workers already keep busy
_THREAD_POOL_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def pytest_configure(config: pytest.Config) -> None:
    """Keep the file order below for xdist; one thread per BLAS/OpenMP pool on a worker."""
    if hasattr(config.option, "loadscopereorder"):
        config.option.loadscopereorder = False  # xdist would sort the files by their number of tests instead
    if os.environ.get("PYTEST_XDIST_WORKER"):
        from threadpoolctl import threadpool_limits

        for var in _THREAD_POOL_VARS:  # for every `preflens`, dbt and fit process a test starts
            os.environ.setdefault(var, "1")
        threadpool_limits(1)  # and for this worker, whose numpy is already loaded


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The files of ``LONGEST_FIRST`` first, in its order."""
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: the others keep their order


@pytest.fixture
def warehouse(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty warehouse folder, exported as PREFLENS_WAREHOUSE."""
    wh = tmp_path / "warehouse"
    wh.mkdir()
    monkeypatch.setenv("PREFLENS_WAREHOUSE", str(wh))
    return wh


def planted_concepts() -> list[str]:
    """Concept names for the planted fixture; one is hostile to prove names are data, not SQL."""
    return ["Clarity", "Verbosity", "Hedging", "Politeness", "Robert'); drop table raw.items; --"]


def write_planted_raw(db_path: Path, n_items: int = 240, seed: int = 7, start: int = 0) -> dict[str, object]:
    """Fill the raw tables with synthetic items whose labels follow known concept weights.

    Two mechanisms: 'human:planted' prefers higher Clarity everywhere and lower Verbosity in domain
    'legal' only; 'judge:noise' is random. Domains: general, legal, coding.
    """
    from pipelines.core.warehouse import connect

    rng = np.random.default_rng(seed)
    concepts = planted_concepts()
    domains = ["general", "legal", "coding"]
    con = connect(db_path)
    items, labels, annotations = [], [], []
    for i in range(start, start + n_items):
        item_id = hashlib.sha256(f"item{i}".encode()).hexdigest()[:16]
        domain = domains[i % 3]
        x = rng.choice([-1, 0, 1], size=len(concepts))
        z = 2.0 * x[0] + (-2.0 * x[1] if domain == "legal" else 0.0)
        winner = "a" if rng.random() < 1 / (1 + np.exp(-z)) else "b"
        items.append((item_id, f"prompt {i}", f"response a {i}", f"response b {i}", domain))
        labels.append(
            (hashlib.sha256(f"{item_id}h".encode()).hexdigest()[:16], item_id, "human:planted", "human", winner)
        )
        labels.append(
            (
                hashlib.sha256(f"{item_id}j".encode()).hexdigest()[:16],
                item_id,
                "judge:noise",
                "judge",
                str(rng.choice(["a", "b"])),
            )
        )
        for name, v in zip(concepts, x):
            sa, sb = (5, 3) if v > 0 else (3, 5) if v < 0 else (4, 4)
            annotations.append((item_id, name, "offline", "test-1", int(sa), int(sb), int(v), sa - sb))
    con.executemany("insert into raw.items values (?, ?, ?, ?, ?, 'fixture', null, null, null, 'ing0', now())", items)
    con.executemany(
        "insert into raw.labels values (?, ?, ?, ?, ?, null, null, 'fixture.jsonl', 1, 'ing0', now())", labels
    )
    con.executemany(
        "insert into raw.domains select ?, 'fixture', 'ing0' where ? not in (select domain from raw.domains)",
        [(d, d) for d in domains],
    )
    con.executemany(
        "insert or ignore into raw.concepts values (?, 'offline', 'test-1', 'd', ?, 'offline', true, null, 'h', null)",
        [(c, f"A high score indicates {c}; A low score indicates not {c}.") for c in concepts],
    )
    con.executemany(
        """insert into raw.annotations values (?, ?, ?, ?, null, null, ?, ?, ?, ?, true, null, now())""",
        annotations,
    )
    con.close()
    return {"n_items": n_items, "n_labels": len(labels), "concepts": concepts}


def venv_bin(name: str) -> str:
    """A script of the running interpreter's environment (``preflens``, ``dbt``)."""
    return str(Path(sys.executable).parent / name)


def env_with(**kw: str) -> dict[str, str]:
    """This process's environment with ``kw`` set."""
    env = dict(os.environ)
    env.update(kw)
    return env


#: fit settings for builds whose subject is not the fit (re-runs, concurrency, crashes, fit history): no bootstrap,
#: no model selection. The default fit is what the shared sample run and the full-data run build.
QUICK_FIT: dict[str, str] = {"hmdr_n_bootstrap": "0", "hmdr_select": "false"}
#: the same as `preflens run/build` options
QUICK_FIT_ARGS: tuple[str, ...] = tuple(arg for key, value in QUICK_FIT.items() for arg in ("--var", f"{key}={value}"))
#: the cheapest build that still runs every stage and builds every fit mart, for builds whose subject is the pipeline
#: around the fit (kills, locks, snapshots, re-runs): QUICK_FIT, and one representation (``measure``, the lead of the
#: offline annotator; LLM and imported annotations have none: use ``comp`` there), no length-controlled refit, two CV
#: folds and no mechanism contrasts (a minimum of shared items no pair reaches; the contrast mart is built, empty)
CHEAP_BUILD: dict[str, str] = {
    **QUICK_FIT,
    "representations": "measure",
    "length_control": "false",
    "cv_folds": "2",
    "contrast_min_shared_items": "1000000000",
}


def cheap_build_args(**overrides: str) -> tuple[str, ...]:
    """``CHEAP_BUILD`` as `preflens run/build` options, some vars replaced (``representations="comp"`` for LLM
    annotations, ``hmdr_n_bootstrap="200"`` for a fit that must run a while)."""
    return tuple(arg for key, value in {**CHEAP_BUILD, **overrides}.items() for arg in ("--var", f"{key}={value}"))


CHEAP_BUILD_ARGS: tuple[str, ...] = cheap_build_args()


def preflens(warehouse: Path, *args: str, timeout: int = 900) -> subprocess.CompletedProcess[str]:
    """Run the real `preflens` console script on ``warehouse`` (wide terminal, output captured)."""
    return subprocess.run(
        [venv_bin("preflens"), *args],
        env=env_with(PREFLENS_WAREHOUSE=str(warehouse), COLUMNS="200"),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


# ------------------------------------------------------------------ one real run on the bundled sample


@dataclass(frozen=True)
class SampleRun:
    """A warehouse after one real `preflens run` on the bundled sample, and what that run printed."""

    warehouse: Path
    stdout: str

    @property
    def paths(self) -> Paths:
        return Paths(warehouse=self.warehouse)

    def copy_to(self, dest: Path) -> Path:
        """A private copy of the whole warehouse (build DB, served copy, exports, dbt target) at ``dest``."""
        shutil.copytree(self.warehouse, dest, dirs_exist_ok=True)
        return dest


@contextmanager
def _exclusive(lock_path: Path) -> Iterator[None]:
    """An exclusive advisory lock on ``lock_path`` (blocks until the holder releases it or dies)."""
    with open(lock_path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@pytest.fixture(scope="session")
def sample_run(tmp_path_factory: pytest.TempPathFactory) -> SampleRun:
    """One real `preflens run` on the bundled sample for the whole test session, shared by every xdist worker.

    The first worker to ask runs it under a file lock in the session's base temp folder; the others wait and
    reuse it (a failed run is recorded, so they fail with its output instead of running it again). Tests only
    read it; a test that changes a warehouse uses ``sample_copy`` (or ``SampleRun.copy_to``).
    """
    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = root.parent  # the base temp folder of this session, shared by its workers
    wh, printed, failed = root / "sample_run", root / "sample_run.stdout", root / "sample_run.failed"
    with _exclusive(root / "sample_run.lock"):
        if not printed.exists() and not failed.exists():
            proc = preflens(wh, "run")
            if proc.returncode == 0 and Paths(warehouse=wh).serve_db.exists():
                printed.write_text(proc.stdout)
            else:
                failed.write_text(f"exit {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    if failed.exists():
        pytest.fail(f"the shared sample run failed: {failed.read_text()}", pytrace=False)
    return SampleRun(warehouse=wh, stdout=printed.read_text())


@pytest.fixture
def sample_copy(sample_run: SampleRun, tmp_path: Path) -> Path:
    """A private copy of the shared sample warehouse, for a test that changes it."""
    return sample_run.copy_to(tmp_path / "warehouse")


# ------------------------------------------------------------------ the local LLM server, the quality build DB


@pytest.fixture
def llm_server(request: pytest.FixtureRequest) -> Iterator[LLMTestServer]:
    """The local OpenAI-compatible test server (tests/llm_server.py) on a free port, stopped after the test.

    Server settings come from the closest ``@pytest.mark.llm_server(**settings)`` marker, e.g.
    ``pytestmark = pytest.mark.llm_server(relevance_rate=0.5)``.
    """
    marker = request.node.get_closest_marker("llm_server")
    with LLMTestServer(**(marker.kwargs if marker else {})) as srv:
        yield srv


@pytest.fixture
def quality_db(tmp_path: Path) -> Path:
    """The quality fixture build DB (tests/quality_db.py) at ``<tmp>/warehouse/preflens.duckdb``."""
    return build_fixture_db(tmp_path / "warehouse" / "preflens.duckdb")


# ------------------------------------------------------------------ report / explain: a tiny hostile served copy


HOSTILE_CONCEPT = '<script>alert("c")</script> & $x$'
HOSTILE_MECHANISM = "judge:<img src=http://evil.example/x.png>"
HOSTILE_TEXT = '<a href="https://evil.example/">click</a> [bold red]not markup[/] $1 & 2'


def write_mini_served(db_path: Path, *, with_ci: bool = True, with_comparison: bool = False, seed: int = 3) -> dict:
    """A tiny served copy (schema marts) with hostile names and texts, for report and explain unit tests."""
    import duckdb
    import pandas as pd

    rng = np.random.default_rng(seed)
    fit = "20260101T000000Z-abc123"
    concepts = ["Clarity", "Length", "Hedging", HOSTILE_CONCEPT]
    mechs = [("human:raters", "human"), (HOSTILE_MECHANISM, "judge"), ("reward:rm", "reward")]
    domains = {"general": 40, "legal": 12}
    eff, items, feats, preds, local, metrics = [], [], [], [], [], []
    for mech, mtype in mechs:
        b = rng.normal(0, 0.4, len(concepts)) * (rng.random(len(concepts)) > 0.2)
        for rep in ("comp", "score"):
            for dom in ["__shared__", *domains]:
                own = dom == "general"
                s = rng.normal(0, 0.2, len(concepts)) * own
                n = sum(domains.values()) if dom == "__shared__" else domains[dom]
                for j, c in enumerate(concepts):
                    tot = b[j] + s[j]
                    row = dict(
                        fit_id=fit,
                        mechanism=mech,
                        mechanism_type=mtype,
                        representation=rep,
                        domain=dom,
                        concept=c,
                        shared_weight=b[j],
                        domain_deviation=s[j],
                        total_weight=tot,
                        shared_lift_pct=50 * b[j],
                        deviation_lift_pct=50 * s[j],
                        global_lift_pct=50 * tot,
                        n_pairs=n,
                        has_domain_weights=own,
                    )
                    if with_ci:
                        row.update(
                            global_lift_ci_low=50 * tot - 5,
                            global_lift_ci_high=50 * tot + 5,
                            selection_frequency=float(j % 2 == 0) * 0.9 + 0.05,
                        )
                    eff.append(row)
            metrics.append(
                dict(
                    fit_id=fit,
                    mechanism=mech,
                    mechanism_type=mtype,
                    representation=rep,
                    domain="__all__",
                    protocol="cv5_oof",
                    n_pairs=52,
                    accuracy=0.6 + 0.1 * rng.random(),
                    log_loss=0.65,
                )
            )
    for i in range(6):
        item = f"item{i:012d}"
        dom = "general" if i % 2 else "legal"
        items.append(
            dict(
                item_id=item,
                domain=dom,
                source="fixture",
                prompt=f"prompt {i} {HOSTILE_TEXT}",
                response_a=f"answer A {i} " * 40,
                response_b=f"answer B {i} {HOSTILE_TEXT}",
                model_a="m1",
                model_b="m2",
            )
        )
        for k, (mech, mtype) in enumerate(mechs):
            label = f"label{i:02d}{k:02d}aaaaaa"
            winner = "a" if (i + k) % 2 else "b"
            feats.append(
                dict(label_id=label, item_id=item, mechanism=mech, mechanism_type=mtype, domain=dom, winner=winner)
            )
            p = float(rng.random())
            preds.append(
                dict(
                    fit_id=fit,
                    label_id=label,
                    item_id=item,
                    mechanism=mech,
                    domain=dom,
                    representation="comp",
                    fold=1,
                    prob_a=p,
                    predicted_winner="a" if p > 0.5 else "b",
                    actual_winner=winner,
                    is_correct=(p > 0.5) == (winner == "a"),
                    used_domain_weights=dom == "general",
                )
            )
            for j, c in enumerate(concepts):
                v = float((-1) ** j)
                local.append(
                    dict(
                        fit_id=fit,
                        label_id=label,
                        mechanism=mech,
                        representation="comp",
                        concept=c,
                        value=v,
                        contribution=0.3 * v * (j + 1),
                        local_lift_pct=5.0 * (j + 1),
                    )
                )
    tables = {
        "fct_concept_effects": pd.DataFrame(eff),
        "fct_model_metrics": pd.DataFrame(metrics),
        "dim_items": pd.DataFrame(items),
        "fct_pair_features_comp": pd.DataFrame(feats),
        "fct_predictions": pd.DataFrame(preds),
        "fct_local_explanations": pd.DataFrame(local),
        "dim_mechanisms": pd.DataFrame(
            [dict(mechanism=m, mechanism_type=t, n_labels=6, n_decisive=6, n_ties=0, n_items=6) for m, t in mechs]
        ),
        "dim_domains": pd.DataFrame(
            [dict(domain=d, domain_source="fixture", n_items=3, n_labels=9, n_mechanisms=3) for d in domains]
        ),
        "dim_concepts": pd.DataFrame([dict(concept=c, definition="d") for c in concepts]),
        "fct_builds": pd.DataFrame(
            [
                dict(
                    build_id=fit,
                    status="success",
                    started_at=pd.Timestamp("2026-01-01"),
                    finished_at=pd.Timestamp("2026-01-01 00:01"),
                )
            ]
        ),
        "rpt_mechanism_agreement": pd.DataFrame(
            [
                dict(
                    mechanism_a=a,
                    mechanism_type_a=ta,
                    mechanism_b=b_,
                    mechanism_type_b=tb,
                    n_shared_items=6,
                    n_both_decisive=6 if a != HOSTILE_MECHANISM else 12,
                    agreement_rate=0.5,
                )
                for a, ta in mechs
                for b_, tb in mechs
                if a != b_
            ]
        ),
        "rpt_annotation_quality": pd.DataFrame(
            [
                dict(
                    annotator="offline",
                    annotator_version="1",
                    concept=c,
                    n_items=6,
                    relevance_rate=0.9,
                    swap_inconsistency_rate=None,
                    equal_rate=0.3,
                )
                for c in concepts
            ]
        ),
    }
    if with_comparison:
        tables["rpt_model_comparison"] = pd.DataFrame(
            [
                dict(
                    eval_id="e1",
                    mechanism=m,
                    mechanism_type=t,
                    representation="comp",
                    variant=v,
                    protocol=pr,
                    n_runs=5,
                    mean_accuracy=0.6,
                    accuracy_ci_low=0.55,
                    accuracy_ci_high=0.65,
                )
                for m, t in mechs
                for v in ("hmdr", "shared_only")
                for pr in ("in_domain", "ood")
            ]
        )
    con = duckdb.connect(str(db_path))
    try:
        con.execute("create schema marts")
        for name, df in tables.items():
            con.register("_df", df)
            con.execute(f"create table marts.{name} as select * from _df")
            con.unregister("_df")
    finally:
        con.close()
    return {"mechanisms": [m for m, _ in mechs], "concepts": concepts, "fit_id": fit}
