"""A new warehouse starts from the last parse of the project (pipelines/build/dbt_runner.py), not a full parse."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipelines.build.dbt_runner import PARTIAL_PARSE_FILE, parse_cache_dir, run_dbt
from pipelines.core.config import Paths

FULL_PARSE = "Starting full parse"


def _parse(warehouse: Path) -> str:
    """``dbt parse`` in a new warehouse; dbt's log of it."""
    warehouse.mkdir(parents=True)
    paths = Paths(warehouse=warehouse)
    run_dbt(["parse"], paths, build_id="parse")
    return (paths.dbt_target_dir / "logs" / "dbt.log").read_text()


def test_a_new_warehouse_reuses_the_last_parse(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PREFLENS_DBT_PARSE_CACHE", str(tmp_path / "cache"))
    first = _parse(tmp_path / "one")
    cache = parse_cache_dir()
    assert cache is not None and (cache / PARTIAL_PARSE_FILE).exists()
    assert FULL_PARSE in first  # nothing to start from
    second = _parse(tmp_path / "two")  # another warehouse: another build file path, the same profile
    assert FULL_PARSE not in second and "profile has changed" not in second
    manifest_one = (tmp_path / "one" / "dbt_target" / "manifest.json").read_text()
    manifest_two = (tmp_path / "two" / "dbt_target" / "manifest.json").read_text()
    assert len(manifest_two) > 0.9 * len(manifest_one)  # a whole manifest, not an empty one


def test_the_cache_can_be_turned_off(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PREFLENS_DBT_PARSE_CACHE", "off")
    assert parse_cache_dir() is None
    _parse(tmp_path / "one")
    assert FULL_PARSE in _parse(tmp_path / "two")


def test_a_damaged_cached_parse_costs_only_a_full_parse(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PREFLENS_DBT_PARSE_CACHE", str(tmp_path / "cache"))
    cache = parse_cache_dir()
    assert cache is not None
    cache.mkdir(parents=True)
    (cache / PARTIAL_PARSE_FILE).write_bytes(b"\x00not msgpack")
    log = _parse(tmp_path / "one")
    assert "ParsedFileLoadFailed" in log  # dbt could not read it, and parsed the whole project
    manifest = (tmp_path / "one" / "dbt_target" / "manifest.json").read_text()
    assert '"model.preflens.int_item_concepts"' in manifest and '"model.preflens.fct_builds"' in manifest
