"""Concept discovery against the local server: tagging, batches, stem flags, LLM merges, catalog version."""

from __future__ import annotations

from pathlib import Path

from pipelines.core.warehouse import connect
from pipelines.llm.config import LLMConfig
from pipelines.llm_apps.discover.catalog import active_catalog, latest_catalog_version, load_catalog
from pipelines.llm_apps.discover.run import _UF, discover
from pipelines.llm_apps.discover.stem import name_stems, stem
from tests.llm_server import LLMTestServer
from tests.planted import write_planted_pairs as write_fixture


def test_stemmer_and_stop_words() -> None:
    assert stem("Relevance") == stem("relevancy") == "relev"
    assert stem("conciseness") == stem("concise")
    assert name_stems("Depth of Knowledge") & name_stems("Avoidance of Speculation") == set()
    assert name_stems("Relevance to user query") & name_stems("Relevancy")


def test_union_find_is_transitive() -> None:
    uf = _UF()
    uf.union("A", "B")
    uf.union("B", "C")
    assert uf.find("A") == uf.find("C")


def test_discover_stores_a_versioned_catalog(tmp_path: Path) -> None:
    from pipelines.ingest import ingest_paths

    data = tmp_path / "pairs.jsonl"
    write_fixture(data, n=60)
    con = connect(tmp_path / "w.duckdb")
    ingest_paths(con, [data])
    with LLMTestServer() as srv:
        cfg = LLMConfig(base_url=srv.base_url, model="test-model", backoff_base_s=0.01)
        dry = discover(con, cfg, max_batches=6, dry_run=True)
        assert srv.stats()["requests"] == 0 and dry.stats.projected_calls > 0
        rep = discover(con, cfg, max_batches=6)
        assert rep.mechanism == "human:planted" and rep.batches == 6
        assert rep.flagged_pairs > 0 and rep.merges > 0
        tags = srv.stats()["by_tag"]
        assert tags["propose-v1"] == 6 and tags["dedup-v1"] >= 1 and tags["define-v1"] >= 1
        v = latest_catalog_version(con)
        cat = {c.name: c for c in load_catalog(con, v)}
        assert "Clarity" in cat and "Clarity of Explanation" not in cat  # merged, survivor = more domains/batches
        assert all(c.definition.startswith("A high score indicates the response") for c in cat.values())
        assert {"fixed", "discovered"} <= {c.origin for c in cat.values()}
        label, active = active_catalog(con)
        assert label == v and len(active) == len(cat)
        n = srv.stats()["requests"]
        discover(con, cfg, max_batches=6)  # cached
        assert srv.stats()["requests"] == n
    con.close()
