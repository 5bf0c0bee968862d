"""A new warehouse starts from the last parse of the project (pipelines/build/dbt_runner.py), not a full parse."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipelines.build.dbt_runner import parse_cache_dir, run_dbt
from pipelines.core.config import Paths

FULL_PARSE = "Starting full parse"


def _parse(warehouse: Path, *vars_args: str) -> str:
    """``dbt parse`` in ``warehouse`` (created when new); dbt's log of this parse."""
    warehouse.mkdir(parents=True, exist_ok=True)
    paths = Paths(warehouse=warehouse)
    log = paths.dbt_target_dir / "logs" / "dbt.log"
    start = log.stat().st_size if log.exists() else 0
    run_dbt(["parse", *vars_args], paths, build_id="parse")
    return log.read_text()[start:]


def test_a_new_warehouse_reuses_the_last_parse(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PREFLENS_DBT_PARSE_CACHE", str(tmp_path / "cache"))
    first = _parse(tmp_path / "one")
    cache = parse_cache_dir()
    assert cache is not None and len(list(cache.glob("*.msgpack"))) == 1
    assert FULL_PARSE in first  # nothing to start from
    second = _parse(tmp_path / "two")  # another warehouse: another build file path, the same profile
    assert FULL_PARSE not in second and "profile has changed" not in second
    manifest_one = (tmp_path / "one" / "dbt_target" / "manifest.json").read_text()
    manifest_two = (tmp_path / "two" / "dbt_target" / "manifest.json").read_text()
    assert len(manifest_two) > 0.9 * len(manifest_one)  # a whole manifest, not an empty one


def test_each_set_of_vars_keeps_its_parse(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A build alternates between its vars and the gates' vars: neither command parses the whole project again."""
    monkeypatch.setenv("PREFLENS_DBT_PARSE_CACHE", str(tmp_path / "cache"))
    build, gates = ("--vars", "{top_k: 3}"), ("--vars", '{"quality_gates": true}')
    wh = tmp_path / "one"
    assert FULL_PARSE in _parse(wh, *build)
    assert "config vars" in _parse(wh, *gates)  # new vars: dbt cannot reuse the build's parse
    assert FULL_PARSE not in _parse(wh, *build)  # the next build's first command: its own vars' parse
    log = _parse(wh, *gates)
    assert FULL_PARSE not in log and "config vars" not in log


def test_the_cache_can_be_turned_off(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PREFLENS_DBT_PARSE_CACHE", "off")
    assert parse_cache_dir() is None
    _parse(tmp_path / "one")
    assert FULL_PARSE in _parse(tmp_path / "two")


def test_a_damaged_cached_parse_costs_only_a_full_parse(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PREFLENS_DBT_PARSE_CACHE", str(tmp_path / "cache"))
    cache = parse_cache_dir()
    assert cache is not None
    _parse(tmp_path / "zero")
    (damaged,) = cache.glob("*.msgpack")
    damaged.write_bytes(b"\x00not msgpack")
    log = _parse(tmp_path / "one")
    assert "ParsedFileLoadFailed" in log  # dbt could not read it, and parsed the whole project
    manifest = (tmp_path / "one" / "dbt_target" / "manifest.json").read_text()
    assert '"model.preflens.int_item_concepts"' in manifest and '"model.preflens.fct_builds"' in manifest
