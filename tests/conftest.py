"""Shared fixtures: repo paths, an isolated warehouse per test, a planted-signal raw warehouse."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parent.parent
SHARED_DATA = REPO.parent / "shared" / "data"


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
        labels.append((hashlib.sha256(f"{item_id}h".encode()).hexdigest()[:16], item_id, "human:planted", "human", winner))
        labels.append(
            (hashlib.sha256(f"{item_id}j".encode()).hexdigest()[:16], item_id, "judge:noise", "judge", str(rng.choice(["a", "b"])))
        )
        for name, v in zip(concepts, x):
            sa, sb = (5, 3) if v > 0 else (3, 5) if v < 0 else (4, 4)
            annotations.append((item_id, name, "offline", "test-1", int(sa), int(sb), int(v), sa - sb))
    con.executemany(
        "insert into raw.items values (?, ?, ?, ?, ?, 'fixture', null, null, null, 'ing0', now())", items
    )
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
    import sys

    return str(Path(sys.executable).parent / name)


def env_with(**kw: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(kw)
    return env


# ------------------------------------------------------------------ report / explain: served copies to read


@pytest.fixture(scope="module")
def sample_served(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A warehouse after a real `preflens run` on the bundled sample (module-scoped; slow)."""
    import subprocess

    wh = tmp_path_factory.mktemp("sample_wh")
    proc = subprocess.run([venv_bin("preflens"), "run"], env=env_with(PREFLENS_WAREHOUSE=str(wh), COLUMNS="200"),
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert (wh / "serve" / "preflens.duckdb").exists()
    return wh


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
                    row = dict(fit_id=fit, mechanism=mech, mechanism_type=mtype, representation=rep, domain=dom,
                               concept=c, shared_weight=b[j], domain_deviation=s[j], total_weight=tot,
                               shared_lift_pct=50 * b[j], deviation_lift_pct=50 * s[j], global_lift_pct=50 * tot,
                               n_pairs=n, has_domain_weights=own)
                    if with_ci:
                        row.update(global_lift_ci_low=50 * tot - 5, global_lift_ci_high=50 * tot + 5,
                                   selection_frequency=float(j % 2 == 0) * 0.9 + 0.05)
                    eff.append(row)
            metrics.append(dict(fit_id=fit, mechanism=mech, mechanism_type=mtype, representation=rep,
                                domain="__all__", protocol="cv5_oof", n_pairs=52, accuracy=0.6 + 0.1 * rng.random(),
                                log_loss=0.65))
    for i in range(6):
        item = f"item{i:012d}"
        dom = "general" if i % 2 else "legal"
        items.append(dict(item_id=item, domain=dom, source="fixture", prompt=f"prompt {i} {HOSTILE_TEXT}",
                          response_a=f"answer A {i} " * 40, response_b=f"answer B {i} {HOSTILE_TEXT}",
                          model_a="m1", model_b="m2"))
        for k, (mech, mtype) in enumerate(mechs):
            label = f"label{i:02d}{k:02d}aaaaaa"
            winner = "a" if (i + k) % 2 else "b"
            feats.append(dict(label_id=label, item_id=item, mechanism=mech, mechanism_type=mtype, domain=dom,
                              winner=winner))
            p = float(rng.random())
            preds.append(dict(fit_id=fit, label_id=label, item_id=item, mechanism=mech, domain=dom,
                              representation="comp", fold=1, prob_a=p, predicted_winner="a" if p > 0.5 else "b",
                              actual_winner=winner, is_correct=(p > 0.5) == (winner == "a"),
                              used_domain_weights=dom == "general"))
            for j, c in enumerate(concepts):
                v = float((-1) ** j)
                local.append(dict(fit_id=fit, label_id=label, mechanism=mech, representation="comp", concept=c,
                                  value=v, contribution=0.3 * v * (j + 1), local_lift_pct=5.0 * (j + 1)))
    tables = {
        "fct_concept_effects": pd.DataFrame(eff),
        "fct_model_metrics": pd.DataFrame(metrics),
        "dim_items": pd.DataFrame(items),
        "fct_pair_features_comp": pd.DataFrame(feats),
        "fct_predictions": pd.DataFrame(preds),
        "fct_local_explanations": pd.DataFrame(local),
        "dim_mechanisms": pd.DataFrame([dict(mechanism=m, mechanism_type=t, n_labels=6, n_decisive=6, n_ties=0,
                                             n_items=6) for m, t in mechs]),
        "dim_domains": pd.DataFrame([dict(domain=d, domain_source="fixture", n_items=3, n_labels=9, n_mechanisms=3)
                                     for d in domains]),
        "dim_concepts": pd.DataFrame([dict(concept=c, definition="d") for c in concepts]),
        "fct_builds": pd.DataFrame([dict(build_id=fit, status="success", started_at=pd.Timestamp("2026-01-01"),
                                         finished_at=pd.Timestamp("2026-01-01 00:01"))]),
        "rpt_mechanism_agreement": pd.DataFrame([
            dict(mechanism_a=a, mechanism_type_a=ta, mechanism_b=b_, mechanism_type_b=tb, n_shared_items=6,
                 n_both_decisive=6 if a != HOSTILE_MECHANISM else 12, agreement_rate=0.5)
            for a, ta in mechs for b_, tb in mechs if a != b_]),
        "rpt_annotation_quality": pd.DataFrame([
            dict(annotator="offline", annotator_version="1", concept=c, n_items=6, relevance_rate=0.9,
                 swap_inconsistency_rate=None, equal_rate=0.3) for c in concepts]),
    }
    if with_comparison:
        tables["rpt_model_comparison"] = pd.DataFrame([
            dict(eval_id="e1", mechanism=m, mechanism_type=t, representation="comp", variant=v, protocol=pr,
                 n_runs=5, mean_accuracy=0.6, accuracy_ci_low=0.55, accuracy_ci_high=0.65)
            for m, t in mechs for v in ("hmdr", "shared_only") for pr in ("in_domain", "ood")])
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
