"""End to end: `preflens run --annotator llm` against the local server recovers a planted concept; cached re-run
makes zero calls; a SIGKILLed annotate run resumes with only the missing calls; ledger tokens == server tokens."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import pytest

from pipelines.annotate.llm import annotate_llm
from pipelines.core.config import Paths
from pipelines.core.warehouse import connect
from pipelines.llm.config import LLMConfig
from tests.conftest import CHEAP_BUILD
from tests.llm_server import LLMTestServer
from tests.planted import write_planted_pairs

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_run_with_llm_annotator_recovers_planted_concept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, llm_server: LLMTestServer
) -> None:
    from pipelines.build.run import run_pipeline

    wh = tmp_path / "wh"
    monkeypatch.setenv("PREFLENS_WAREHOUSE", str(wh))
    data = tmp_path / "pairs.jsonl"
    write_planted_pairs(data)
    concepts = tmp_path / "concepts.yaml"
    concepts.write_text("""concepts:
  - name: "Robert'); drop table raw.items; --"
    definition: "A high score indicates the response names robert; A low score indicates the response does not"
""")
    cfg = LLMConfig(
        base_url=llm_server.base_url,
        model="test-model",
        backoff_base_s=0.01,
        concurrency=8,
        prices={"test-model": (0.15, 0.60)},
    )
    paths = Paths(warehouse=wh)
    # the cheapest build (conftest CHEAP_BUILD) on comp, the representation the assertions read (LLM annotations have
    # no raw measures): the subject is the annotator, its ledger and its cache; the default fit is the sample run's
    cheap = {**CHEAP_BUILD, "representations": "comp"}
    llm_options = {"config": cfg, "concepts_file": concepts}
    res = run_pipeline(paths, [data], annotator="llm", llm_options=llm_options, dbt_vars=cheap)
    assert res.published and res.annotator == "llm" and res.annotator_version == "llm-p1:test-model"
    first = llm_server.stats()
    con = duckdb.connect(str(paths.build_db), read_only=True)
    try:
        pt, ct, n_rows = con.execute(
            "select sum(prompt_tokens), sum(completion_tokens), count(*) from raw.llm_ledger"
        ).fetchone()
        assert (pt, ct) == (first["prompt_tokens"], first["completion_tokens"])
        assert n_rows == first["requests"]
        top = con.execute("""select concept, total_weight from marts.fct_concept_effects
                             where mechanism = 'human:planted' and representation = 'comp' and domain = '__shared__'
                               and fit_id = (select max(fit_id) from marts.fct_concept_effects)
                             order by abs(total_weight) desc limit 1""").fetchone()
        assert top[0] == "Clarity" and top[1] > 0
        n_concepts = con.execute("select count(*) from marts.dim_concepts").fetchone()[0]
        assert n_concepts == 11
        assert con.execute("select count(*) from raw.items").fetchone()[0] == 150
    finally:
        con.close()
    # cached re-run: zero calls
    res2 = run_pipeline(paths, [data], annotator="llm", llm_options=llm_options, dbt_vars=cheap)
    assert res2.published and llm_server.stats()["requests"] == first["requests"]
    assert res2.llm_report.stats.calls == 0


@pytest.mark.slow
def test_sigkill_mid_run_resumes_with_only_missing_calls(tmp_path: Path, llm_server: LLMTestServer) -> None:
    data = tmp_path / "pairs.jsonl"
    write_planted_pairs(data, n=60)
    from pipelines.ingest import ingest_paths

    def fresh(name: str) -> Path:
        db = tmp_path / name / "preflens.duckdb"
        con = connect(db)
        ingest_paths(con, [data])
        con.close()
        return db

    cfg = LLMConfig(base_url=llm_server.base_url, model="test-model", backoff_base_s=0.01, concurrency=4)
    # reference: how many calls a complete run needs
    ref_db = fresh("ref")
    con = connect(ref_db)
    annotate_llm(con, cfg)
    total_calls = llm_server.stats()["requests"]
    ref_rows = con.execute("select count(*) from raw.annotations").fetchone()[0]
    con.close()
    llm_server.state.reset()
    llm_server.state.latency_s = 0.02
    db = fresh("killed")
    env = {
        **os.environ,
        "PREFLENS_WAREHOUSE": str(db.parent),
        "PREFLENS_LLM_BASE_URL": llm_server.base_url,
        "PREFLENS_LLM_MODEL": "test-model",
        "PREFLENS_LLM_CONCURRENCY": "4",
        "PREFLENS_CONFIG": "",
    }
    env.pop("PREFLENS_CONFIG")
    proc = subprocess.Popen(
        [sys.executable, "-m", "pipelines.cli", "annotate", "--annotator", "llm"],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        for _ in range(3000):
            if llm_server.stats()["requests"] >= total_calls // 3 or proc.poll() is not None:
                break
            time.sleep(0.01)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    llm_server.state.latency_s = 0.0
    issued_before = llm_server.stats()["requests"]
    assert 0 < issued_before < total_calls
    con = connect(db)
    cached = con.execute("select count(*) from raw.llm_cache where status = 'ok'").fetchone()[0]
    assert cached > 0
    llm_server.state.reset()
    annotate_llm(con, cfg)
    resumed = llm_server.stats()["requests"]
    assert resumed == total_calls - cached  # only the missing calls
    assert con.execute("select count(*) from raw.annotations").fetchone()[0] == ref_rows
    dup = con.execute("""select count(*) from (select item_id, concept, count(*) n from raw.annotations
                         group by all having n > 1)""").fetchone()[0]
    assert dup == 0
    con.close()
