"""Run dbt as a subprocess with explicit, absolute project/profiles/target paths, from the warehouse folder.

dbt runs in the warehouse folder and opens the build file by its name there (``PREFLENS_BUILD_DB=preflens.duckdb``),
so the profile dbt hashes is the same for every warehouse. A new warehouse then starts from the last parse of
this project with the same vars (``partial_parse.msgpack``, kept in the user's cache per vars, :func:`parse_cache_dir`),
and every command starts from the last parse with its vars, and dbt re-parses
only what differs (dbt checks every file's checksum, the vars, the profile and the env vars it read), instead of
parsing the whole project again.

dbt runs tied to this process (:mod:`pipelines.build.tied_process`): in its own process group, killed with its
fit workers when this process dies, even by ``kill -9``, so it never outlives the build that started it.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from pipelines.build.tied_process import start_tied, stop_tied
from pipelines.core.config import DBT_PROJECT_DIR, Paths


class DbtError(RuntimeError):
    """dbt exited non-zero; the message lists the failing nodes."""


@dataclass
class DbtResult:
    """Outcome of one dbt invocation."""

    command: list[str]
    returncode: int
    node_status: dict[str, str] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)

    @property
    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for status in self.node_status.values():
            out[status] = out.get(status, 0) + 1
        return out


def dbt_executable() -> str:
    """The dbt script of the running interpreter's environment."""
    candidate = Path(sys.executable).parent / "dbt"
    return str(candidate) if candidate.exists() else "dbt"


def dbt_env(paths: Paths, build_id: str, extra: dict[str, str] | None = None) -> dict[str, str]:
    """Environment for dbt (run in :func:`dbt_cwd`): the build file's name, build id, no usage tracking."""
    env = dict(os.environ)
    env.update(
        {
            "PREFLENS_BUILD_DB": paths.build_db.name,
            "PREFLENS_BUILD_ID": build_id,
            "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",
            "DO_NOT_TRACK": "1",
        }
    )
    env.update(extra or {})
    return env


def dbt_command(args: Sequence[str], paths: Paths) -> list[str]:
    """``dbt <args>`` with the project and profiles of this install and the target of ``paths`` (all absolute); run
    it in :func:`dbt_cwd` with :func:`dbt_env`."""
    return [
        dbt_executable(),
        *args,
        "--project-dir",
        str(DBT_PROJECT_DIR),
        "--profiles-dir",
        str(DBT_PROJECT_DIR),
        "--target-path",
        str(paths.dbt_target_dir),
        "--log-path",
        str(paths.dbt_target_dir / "logs"),
    ]


def dbt_cwd(paths: Paths) -> str:
    """The folder dbt runs in: the warehouse, where ``PREFLENS_BUILD_DB`` (a bare file name) points."""
    return str(paths.build_db.parent)


#: the partial-parse state dbt keeps in its target folder
PARTIAL_PARSE_FILE = "partial_parse.msgpack"


def parse_cache_dir() -> Path | None:
    """Where the last parse of this project is kept for new warehouses; ``None`` when turned off.

    ``$PREFLENS_DBT_PARSE_CACHE`` (a folder, or ``off``), else ``$XDG_CACHE_HOME/preflens/dbt-parse`` (default
    ``~/.cache``), one sub-folder per dbt version and project location, one file per set of ``--vars``.
    """
    setting = os.environ.get("PREFLENS_DBT_PARSE_CACHE", "")
    if setting.lower() in {"off", "0", "false", "no"}:
        return None
    if setting:
        root = Path(setting)
    else:
        root = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "preflens" / "dbt-parse"
    from importlib.metadata import version

    key = hashlib.sha256(f"{version('dbt-core')}\0{DBT_PROJECT_DIR.resolve()}".encode()).hexdigest()[:16]
    return root / key


def _vars_text(args: list[str]) -> str:
    """The ``--vars`` of a dbt command line ('' without)."""
    return next((args[i + 1] for i, arg in enumerate(args[:-1]) if arg == "--vars"), "")


def _cached_parse(args: list[str]) -> Path | None:
    """The cached parse for this command's vars: dbt parses anew when the vars differ, so each set keeps its own."""
    cache = parse_cache_dir()
    if cache is None:
        return None
    return cache / f"{hashlib.sha256(_vars_text(args).encode()).hexdigest()[:16]}.msgpack"


def _seed_parse(target_dir: Path, args: list[str]) -> None:
    """Start from the last parse made with these vars (in any warehouse): a build's dbt commands alternate between
    the build's vars and the gates' vars, and dbt keeps only the last parse. dbt validates the file and re-parses
    what differs."""
    cached = _cached_parse(args)
    if cached is None or not cached.exists():
        return
    try:
        shutil.copyfile(cached, target_dir / PARTIAL_PARSE_FILE)
    except OSError:
        pass  # only a speed-up: dbt parses everything instead


def _keep_parse(target_dir: Path, args: list[str]) -> None:
    """Keep this run's parse for the next command with these vars (written aside, then renamed: never half)."""
    cached, parsed = _cached_parse(args), target_dir / PARTIAL_PARSE_FILE
    if cached is None or not parsed.exists():
        return
    try:
        cached.parent.mkdir(parents=True, exist_ok=True)
        tmp = cached.with_name(f".{cached.name}.{os.getpid()}")
        shutil.copyfile(parsed, tmp)
        os.replace(tmp, cached)
    except OSError:
        pass


def run_dbt(
    args: list[str],
    paths: Paths,
    build_id: str,
    *,
    on_node: Callable[[str, str, int], None] | None = None,
    extra_env: dict[str, str] | None = None,
) -> DbtResult:
    """Invoke ``dbt <args>`` with JSON logs; report each finished node through ``on_node(name, status, total)``.

    Call it from the main thread: dbt is killed when the thread that started it ends (``PR_SET_PDEATHSIG``).
    """
    paths.dbt_target_dir.mkdir(parents=True, exist_ok=True)
    _seed_parse(paths.dbt_target_dir, args)
    cmd = dbt_command(["--log-format", "json", "--no-use-colors", *args], paths)
    result = DbtResult(command=cmd, returncode=-1)
    proc = start_tied(
        cmd,
        cwd=dbt_cwd(paths),
        env=dbt_env(paths, build_id, extra_env),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert proc.stdout is not None
    errors: list[str] = []
    try:
        for line in proc.stdout:
            _handle_line(line, result, errors, on_node)
        result.returncode = proc.wait()
        if result.returncode == 0:
            _keep_parse(paths.dbt_target_dir, args)
    finally:  # an exception or Ctrl-C here: dbt and its workers go too (a no-op once dbt has exited)
        stop_tied(proc)
        proc.stdout.close()
    if result.returncode != 0:
        failed = [f"{n}: {s}" for n, s in result.node_status.items() if s in {"error", "fail", "runtime error"}]
        first_error = next((text for text in map(_error_summary, errors) if text), "")
        detail = "; ".join(failed + ([first_error] if first_error else [])) or "see dbt.log in the target folder"
        result.failures = failed + errors
        raise DbtError(f"dbt {args[0]} failed: {detail}")
    return result


#: first lines of a dbt error that say nothing of its cause
_GENERIC_ERROR_LINES = {"Encountered an error:"}


def _error_summary(error: str, max_lines: int = 3) -> str:
    """An error message of dbt in one line: its first lines that say something, e.g. ``Compilation Error Could
    not render {{ var('x') }}: Required var 'x' not found in config:``."""
    lines = [" ".join(line.split()) for line in error.splitlines()]
    lines = [line for line in lines if line and line not in _GENERIC_ERROR_LINES]
    return " ".join(lines[:max_lines])


_RESULT_EVENTS = {"LogModelResult", "LogTestResult", "LogSeedResult", "LogSnapshotResult", "LogNodeResult"}


def _handle_line(
    line: str, result: DbtResult, errors: list[str], on_node: Callable[[str, str, int], None] | None
) -> None:
    try:
        event = json.loads(line)
    except json.JSONDecodeError:
        if line.strip():
            errors.append(line.strip())
        return
    info = event.get("info", {})
    data = event.get("data", {})
    if info.get("level") == "error" and info.get("msg"):
        errors.append(info["msg"])
    if info.get("name") in _RESULT_EVENTS:
        node = data.get("node_info", {})
        name = node.get("node_name") or data.get("name") or "?"
        status = str(data.get("status") or node.get("node_status", "?")).lower()
        result.node_status[name] = status
        if on_node:
            on_node(name, status, int(data.get("total") or 0))
