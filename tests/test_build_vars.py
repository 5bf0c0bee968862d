"""`preflens build` settings: dbt vars as `--vars` YAML/JSON (as dbt takes them), `--var KEY=VALUE` and named flags,
all on the one path to dbt and to the quality thresholds; and every documented `preflens build` example parses.

The parser tests are quick; one real build on a small fixture (tests/sample_subset.py) shows the settings reach dbt,
the fit and the gates."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import duckdb
import pytest

from pipelines.build.build_vars import TUNABLE_VARS, build_settings
from pipelines.build.quality import thresholds_from_dbt_vars
from pipelines.cli import build_parser
from tests.conftest import REPO, preflens
from tests.sample_subset import write_sample_subset


def settings(*argv: str) -> dict[str, str]:
    return build_settings(build_parser().parse_args(["build", *argv]))


def test_vars_take_yaml_and_json_as_dbt_does() -> None:
    assert settings("--vars", "{hmdr_n_bootstrap: 0, hmdr_select: false, representations: [measure, comp]}") == {
        "hmdr_n_bootstrap": "0",
        "hmdr_select": "false",
        "representations": "measure,comp",
    }
    assert settings("--vars", '{"cv_folds": 3, "length_control": true}') == {"cv_folds": "3", "length_control": "true"}
    assert settings("--vars", "min_domain_pairs: 10") == {"min_domain_pairs": "10"}


def test_named_flags_set_the_documented_settings() -> None:
    got = settings(
        "--n-bootstrap", "0", "--no-model-selection", "--representations", "comp", "--fit-jobs", "1", "--top-k", "5"
    )
    assert got == {
        "hmdr_n_bootstrap": "0",
        "hmdr_select": "false",
        "representations": "comp",
        "fit_jobs": "1",
        "top_k": "5",
    }
    assert settings("--length-control", "--alpha", "0.5") == {"length_control": "true", "hmdr_alpha": "0.5"}


def test_the_three_forms_combine_and_a_conflict_is_an_error() -> None:
    got = settings("--vars", "{hmdr_n_bootstrap: 0}", "--var", "top_k=5", "--n-bootstrap", "0")
    assert got == {"hmdr_n_bootstrap": "0", "top_k": "5"}
    with pytest.raises(ValueError, match="hmdr_n_bootstrap given twice"):
        settings("--vars", "{hmdr_n_bootstrap: 0}", "--n-bootstrap", "5")


def test_the_settings_that_are_thresholds_reach_the_gates_through_the_same_mapping() -> None:
    got = settings("--vars", "{min_domain_pairs: 10}", "--n-bootstrap", "0")
    assert thresholds_from_dbt_vars(got)["min_domain_pairs"] == 10


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--vars", "{build_id: x}"], "unknown setting"),
        (["--vars", "{nope: 1}"], "unknown setting"),
        (["--vars", "[1, 2]"], "expected a mapping"),
        (["--vars", "{a: [}"], "not YAML or JSON"),
        (["--n-bootstrap", "many"], "invalid int value"),
    ],
)
def test_bad_settings_are_usage_errors(argv: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        build_parser().parse_args(["build", *argv])
    assert exc.value.code == 2 and message in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--vars", "{cv_folds: many}"], "invalid fit setting"),
        (["--vars", "{representations: nope}"], "invalid fit setting"),
        (["--grid", "nope"], "hmdr_grid"),
        (["--var", "top_k=0"], "top_k"),
        (["--vars", "{top_k: ten}"], "top_k"),
        (["--vars", '{hmdr_rule: "x\'; drop table raw.items; --"}'], "unsafe value"),
    ],
)
def test_bad_values_fail_before_the_build_starts(argv: list[str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        settings(*argv)


def test_only_the_tunable_vars_are_settable_and_each_named_flag_names_one() -> None:
    from pipelines.build.build_vars import NAMED_SETTINGS

    assert {s.var for s in NAMED_SETTINGS} <= TUNABLE_VARS
    assert "build_id" not in TUNABLE_VARS and "max_abs_lift_pct" not in TUNABLE_VARS


def _documented_build_commands() -> list[str]:
    """Every `preflens build ...` command in README.md and docs/*.md (inline code or a code block line)."""
    found = []
    for page in [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]:
        for line in page.read_text().splitlines():
            for cmd in re.findall(r"`((?:\.venv/bin/)?preflens build(?: [^`]*)?)`", line):
                found.append(cmd)
            code = re.match(r"^\s*(?:\S*/)?(?:\.venv/bin/)?(preflens build(?: .*)?)$", line.split("#")[0].rstrip())
            if code and "`" not in line:
                found.append(code.group(1))
    return found


def test_every_documented_build_command_parses() -> None:
    commands = _documented_build_commands()
    assert any("--vars" in c for c in commands) and any("--n-bootstrap" in c for c in commands), commands
    for cmd in commands:
        argv = shlex.split(cmd.split("preflens", 1)[1])
        if "--help" in argv or any(_placeholder(a) for a in argv):  # a synopsis such as [--var KEY=VALUE]
            continue
        if "--warehouse" in argv:  # a global option (tests/test_cli.py), not a build setting
            i = argv.index("--warehouse")
            del argv[i : i + 2]
        settings(*argv[1:])  # raises on anything invalid


def _placeholder(arg: str) -> bool:
    """A synopsis token: ``[--var``, ``<dir>``, ``YAML``, ``KEY=VALUE``, ``N``."""
    return arg[:1] in "[<" or arg.replace("=", "").isupper() or arg == "..."


@pytest.mark.slow
def test_a_build_with_vars_and_flags_reaches_dbt_the_fit_and_the_gates(tmp_path: Path) -> None:
    """min_domain_pairs 10 (default 20) gives domains with 10-19 pairs their own weights; the gate that checks
    that rule passes only with the same value, so the build publishing proves the gates got it too."""
    wh = tmp_path / "warehouse"
    pairs = tmp_path / "pairs.jsonl"
    write_sample_subset(pairs)
    assert preflens(wh, "ingest", str(pairs)).returncode == 0
    build = preflens(
        wh,
        "build",
        "--vars",
        "{hmdr_n_bootstrap: 0, min_domain_pairs: 10, top_k: 3}",
        "--no-model-selection",
        "--fit-jobs",
        "1",
    )
    assert build.returncode == 0, build.stdout[-2000:] + build.stderr[-2000:]
    con = duckdb.connect(str(wh / "serve" / "preflens.duckdb"), read_only=True)
    try:
        assert con.execute("select distinct selection from marts.fct_fit_configs").fetchall() == [("fixed",)]
        assert con.execute("select distinct n_bootstrap from marts.fct_fit_configs").fetchall() == [(0,)]
        assert con.execute(
            "select count(*) from marts.fct_concept_effects where total_weight_ci_low is not null"
        ).fetchone() == (0,)
        assert con.execute("select max(concept_rank) from marts.rpt_top_concepts").fetchone() == (3,)
        small = con.execute(
            """select count(*) from marts.fct_concept_effects
               where domain <> '__shared__' and has_domain_weights and n_pairs between 10 and 19"""
        ).fetchone()
        assert small is not None and small[0] > 0
        assert con.execute(
            "select count(*) from marts.fct_concept_effects where domain <> '__shared__' and has_domain_weights"
            " and n_pairs < 10"
        ).fetchone() == (0,)
    finally:
        con.close()


# ------------------------------------------------------------------ `preflens run` takes the same settings (issue 11)


def run_settings(*argv: str) -> dict[str, str]:
    return build_settings(build_parser().parse_args(["run", *argv]))


@pytest.mark.parametrize(
    "argv",
    [
        ("--vars", "{hmdr_n_bootstrap: 0, hmdr_select: false, representations: [measure, comp]}"),
        ("--var", "hmdr_n_bootstrap=0", "--var", "top_k=5"),
        ("--n-bootstrap", "0", "--no-model-selection", "--representations", "comp", "--fit-jobs", "1", "--top-k", "5"),
        ("--vars", "{hmdr_n_bootstrap: 0}", "--var", "top_k=5", "--n-bootstrap", "0", "--min-domain-pairs", "10"),
    ],
)
def test_run_takes_every_form_of_build_setting_as_build_does(argv: tuple[str, ...]) -> None:
    assert run_settings("some.jsonl", *argv) == settings(*argv)


def test_run_rejects_a_conflict_and_a_bad_value_as_build_does() -> None:
    with pytest.raises(ValueError, match="hmdr_n_bootstrap given twice"):
        run_settings("--vars", "{hmdr_n_bootstrap: 0}", "--n-bootstrap", "5")
    with pytest.raises(ValueError, match="invalid fit setting"):
        run_settings("--vars", "{cv_folds: many}")


def test_run_help_lists_every_build_setting(tmp_path: Path) -> None:
    from pipelines.build.build_vars import NAMED_SETTINGS

    proc = preflens(tmp_path / "warehouse", "run", "--help")
    assert proc.returncode == 0, proc.stderr
    flags = ["--vars", "--var"] + [f"--{s.flag}" for s in NAMED_SETTINGS]
    missing = [flag for flag in flags if flag not in proc.stdout]
    assert not missing, proc.stdout
    assert "build settings" in proc.stdout


def test_a_bad_run_setting_fails_before_anything_is_written(tmp_path: Path) -> None:
    wh = tmp_path / "warehouse"
    proc = preflens(wh, "run", "--vars", "{cv_folds: many}")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "invalid fit setting" in proc.stderr and "unrecognized arguments" not in proc.stderr
    assert not (wh / "preflens.duckdb").exists()


def test_commands_md_documents_the_run_settings() -> None:
    text = (REPO / "docs" / "commands.md").read_text()
    (row,) = [line for line in text.splitlines() if line.startswith("| `preflens run ")]
    assert "--vars" in row and "--n-bootstrap" in row, row


def test_every_documented_run_command_parses() -> None:
    """Every `preflens run ...` command in README.md and docs/*.md with settings parses and validates."""
    found = []
    for page in [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]:
        for line in page.read_text().splitlines():
            found += re.findall(r"`((?:\.venv/bin/)?preflens run(?: [^`]*)?)`", line)
            code = re.match(r"^\s*(?:\S*/)?(?:\.venv/bin/)?(preflens run(?: .*)?)$", line.split("#")[0].rstrip())
            if code and "`" not in line:
                found.append(code.group(1))
    with_settings = [c for c in found if "--var" in c or "--n-bootstrap" in c]
    assert any("--vars" in c for c in with_settings), found
    for cmd in with_settings:
        argv = shlex.split(cmd.split("preflens", 1)[1])
        if "--help" in argv or any(_placeholder(a) for a in argv):
            continue
        if "--warehouse" in argv:
            i = argv.index("--warehouse")
            del argv[i : i + 2]
        run_settings(*argv[1:])


@pytest.mark.slow
def test_a_run_with_settings_reaches_dbt_and_shows_the_ingest_warning(tmp_path: Path) -> None:
    """`preflens run` with `--vars` and named flags, on a gzip file cut short: the settings reach dbt and the fit (as
    for `preflens build`), and the run prints the truncated-stream warning `preflens ingest` prints."""
    import gzip

    pairs = tmp_path / "pairs.jsonl"
    write_sample_subset(pairs)
    packed = gzip.compress(pairs.read_bytes())
    cut = tmp_path / "cut.jsonl.gz"
    cut.write_bytes(packed[: int(len(packed) * 0.6)])
    wh = tmp_path / "warehouse"
    run = preflens(
        wh, "run", str(cut), "--vars", "{hmdr_n_bootstrap: 0, top_k: 3}", "--no-model-selection", "--fit-jobs", "1"
    )
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    assert f"warning: {cut.resolve()}: the gzip stream ends early: the file is truncated" in run.stdout, run.stdout
    con = duckdb.connect(str(wh / "serve" / "preflens.duckdb"), read_only=True)
    try:
        assert con.execute("select distinct selection from marts.fct_fit_configs").fetchall() == [("fixed",)]
        assert con.execute("select distinct n_bootstrap from marts.fct_fit_configs").fetchall() == [(0,)]
        assert con.execute("select max(concept_rank) from marts.rpt_top_concepts").fetchone() == (3,)
    finally:
        con.close()
