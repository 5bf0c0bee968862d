"""`preflens report`: the self-contained HTML report (fixture copies, the real sample, a Chromium screenshot)."""

from __future__ import annotations

import html
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import duckdb
import numpy as np
import pytest

from pipelines.serve.report import build_report
from pipelines.serve.report.data import ReportDataError, wilson_interval
from tests.conftest import HOSTILE_CONCEPT, HOSTILE_MECHANISM, SampleRun, env_with, venv_bin, write_mini_served

CHROMIUM = "/usr/bin/chromium"


class _Page(HTMLParser):
    """Collects tags, attributes and ids of a page (escaped text never becomes a tag here)."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.urls: list[str] = []
        self.ids: set[str] = set()
        self.images: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        a = {k: v or "" for k, v in attrs}
        self.urls += [a[k] for k in ("src", "href", "action", "data") if k in a]
        if "id" in a:
            self.ids.add(a["id"])
        if tag == "img":
            self.images.append(a.get("src", ""))


def parse(text: str) -> _Page:
    p = _Page()
    p.feed(text)
    return p


def assert_offline(page: _Page) -> None:
    external = [u for u in page.urls if u.lower().startswith(("http:", "https:", "//", "ftp:"))]
    assert not external, external
    assert "script" not in page.tags and "link" not in page.tags and "iframe" not in page.tags
    assert page.images and all(s.startswith("data:image/png;base64,") for s in page.images)


def test_wilson_interval() -> None:
    lo, hi = wilson_interval(60, 100)
    assert 0.50 < lo < 0.6 < hi < 0.70
    assert wilson_interval(0, 10)[0] == 0.0 and wilson_interval(10, 10)[1] == 1.0
    assert all(np.isnan(wilson_interval(0, 0)))


def test_report_escapes_hostile_names_and_is_self_contained(tmp_path: Path) -> None:
    db = tmp_path / "serve.duckdb"
    meta = write_mini_served(db, with_ci=True, with_comparison=True)
    out = build_report(db, tmp_path / "reports")
    assert out.parent == tmp_path / "reports" and out.suffix == ".html"
    text = out.read_text(encoding="utf-8")
    page = parse(text)
    assert_offline(page)
    # hostile names appear only escaped
    assert HOSTILE_CONCEPT not in text and HOSTILE_MECHANISM not in text
    assert html.escape(HOSTILE_MECHANISM) in text
    assert "<img src=http://evil" not in text and "<script>" not in text
    for mech in meta["mechanisms"]:
        assert html.escape(mech) in text
    assert {
        "global",
        "contrast",
        "human-judge",
        "data",
        "pairs",
        "agreement",
        "annotation",
        "model",
        "accuracy",
        "comparison",
    } <= page.ids
    assert "Whiskers are 95% bootstrap intervals" in text
    assert "shared b only" in text  # 'legal' has no own weights in the fixture
    assert "in_domain · hmdr" in text  # the Table-1-style comparison was rendered
    assert meta["fit_id"] in text


def test_report_without_optional_columns_and_tables(tmp_path: Path) -> None:
    db = tmp_path / "serve.duckdb"
    write_mini_served(db, with_ci=False, with_comparison=False)
    text = build_report(db, tmp_path / "reports").read_text(encoding="utf-8")
    assert_offline(parse(text))
    assert "No bootstrap intervals in this build" in text
    assert "rpt_model_comparison is not in this served copy" in text


def test_report_clear_error_without_served_copy(tmp_path: Path) -> None:
    with pytest.raises(ReportDataError, match="run `preflens run` first"):
        build_report(tmp_path / "missing.duckdb", tmp_path / "reports")
    proc = subprocess.run(
        [venv_bin("preflens"), "--warehouse", str(tmp_path), "report"], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 1 and "no served copy" in proc.stderr


# ----------------------------------------------------------------------------------------- CJK names (issue 11.14)

CJK_CONCEPT = "清晰度 (Clarity)"
CJK_MECHANISM = "human:评审员"
CJK_CHARS = "".join(sorted({c for c in CJK_CONCEPT + CJK_MECHANISM if ord(c) > 0x2E80}))


def _cjk_warehouse(tmp_path: Path) -> Path:
    """A warehouse whose served copy is the tiny fixture with a CJK concept and a CJK mechanism."""
    wh = tmp_path / "wh"
    db = wh / "serve" / "preflens.duckdb"
    db.parent.mkdir(parents=True)
    write_mini_served(db)
    con = duckdb.connect(str(db))
    try:
        for column, old, new in (("concept", "Clarity", CJK_CONCEPT), ("mechanism", "human:raters", CJK_MECHANISM)):
            cols = con.execute(
                "select table_name, column_name from information_schema.columns where table_schema = 'marts' "
                "and column_name in (?, ?, ?)",
                [column, f"{column}_a", f"{column}_b"],
            ).fetchall()
            for table_name, col in cols:
                con.execute(f'update marts."{table_name}" set "{col}" = ? where "{col}" = ?', [new, old])
    finally:
        con.close()
    return wh


def _cjk_font_installed() -> bool:
    """Whether fontconfig knows a font that covers the test's CJK characters."""
    if shutil.which("fc-list") is None:
        return False
    charset = " ".join(f"{ord(c):x}" for c in CJK_CHARS)
    proc = subprocess.run(["fc-list", f":charset={charset}", "file"], capture_output=True, text=True, timeout=60)
    return bool(proc.stdout.strip())


def _report(wh: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [venv_bin("preflens"), "report"],
        env=env_with(PREFLENS_WAREHOUSE=str(wh), **env),
        capture_output=True,
        text=True,
        timeout=600,
    )


def _glyph_noise(stderr: str) -> list[str]:
    return [ln for ln in stderr.splitlines() if "Glyph" in ln or "Warning" in ln or ".py:" in ln]


def test_report_with_cjk_names_warns_nothing_and_says_once_what_it_cannot_draw(tmp_path: Path) -> None:
    wh = _cjk_warehouse(tmp_path)
    proc = _report(wh)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert not _glyph_noise(proc.stderr), proc.stderr[-2000:]
    out = next(Path(ln.removeprefix("report written to ")) for ln in proc.stdout.splitlines() if "written to" in ln)
    text = out.read_text(encoding="utf-8")
    assert CJK_CONCEPT in text and CJK_MECHANISM in text  # the tables always give the names in full
    notes = [ln for ln in proc.stdout.splitlines() if ln.strip().startswith("note:")]
    if _cjk_font_installed():
        assert notes == [], notes
    else:
        assert len(notes) == 1 and all(c in notes[0] for c in CJK_CHARS) and "□" in notes[0], proc.stdout
        assert text.count("no installed font can draw") == 1


def _write_font(path: Path, chars: str, family: str) -> None:
    """A minimal TrueType font (a filled box per character) that covers ``chars``."""
    from fontTools.fontBuilder import FontBuilder
    from fontTools.pens.ttGlyphPen import TTGlyphPen

    names = [".notdef", *(f"uni{ord(c):04X}" for c in chars)]
    glyphs = {}
    for name in names:
        pen = TTGlyphPen(None)
        pen.moveTo((100, 0))
        pen.lineTo((100, 700))
        pen.lineTo((900, 700))
        pen.lineTo((900, 0))
        pen.closePath()
        glyphs[name] = pen.glyph()
    fb = FontBuilder(1000, isTTF=True)
    fb.setupGlyphOrder(names)
    fb.setupCharacterMap({ord(c): f"uni{ord(c):04X}" for c in chars})
    fb.setupGlyf(glyphs)
    fb.setupHorizontalMetrics({name: (1000, 100) for name in names})
    fb.setupHorizontalHeader(ascent=800, descent=-200)
    fb.setupNameTable({"familyName": family, "styleName": "Regular"})
    fb.setupOS2(sTypoAscender=800, usWinAscent=800, usWinDescent=200)
    fb.setupPost()
    path.parent.mkdir(parents=True, exist_ok=True)
    fb.save(str(path))


def test_report_draws_cjk_names_with_an_installed_font_that_covers_them(tmp_path: Path) -> None:
    """A font installed for the user (``$XDG_DATA_HOME/fonts``) that covers the names is found and used."""
    wh = _cjk_warehouse(tmp_path)
    xdg = tmp_path / "xdg"
    _write_font(xdg / "fonts" / "preflens-test-cjk.ttf", CJK_CHARS, "Preflens Test CJK")
    proc = _report(wh, XDG_DATA_HOME=str(xdg))
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert not _glyph_noise(proc.stderr), proc.stderr[-2000:]
    assert not [ln for ln in proc.stdout.splitlines() if ln.strip().startswith("note:")], proc.stdout


# ----------------------------------------------------------------------------------------- the real sample


def run_report(wh: Path, *args: str) -> Path:
    proc = subprocess.run(
        [venv_bin("preflens"), "report", *args],
        env=env_with(PREFLENS_WAREHOUSE=str(wh)),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    line = next(ln for ln in proc.stdout.splitlines() if ln.startswith("report written to "))
    out = Path(line.removeprefix("report written to ").strip())
    assert out.exists() and out.parent == wh / "reports"
    return out


@pytest.fixture(scope="module")
def sample_report(sample_run: SampleRun, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A copy of the shared sample warehouse (the report writes into its reports/) and its default report."""
    wh = sample_run.copy_to(tmp_path_factory.mktemp("report_wh"))
    return wh, run_report(wh)


@pytest.mark.slow
def test_report_on_the_sample(sample_report: tuple[Path, Path]) -> None:
    wh, out = sample_report
    text = out.read_text(encoding="utf-8")
    page = parse(text)
    assert_offline(page)
    con = duckdb.connect(str(wh / "serve" / "preflens.duckdb"), read_only=True)
    try:
        mechs = [r[0] for r in con.execute("select distinct mechanism from marts.fct_concept_effects").fetchall()]
        build_id = con.execute("select build_id from marts.fct_builds order by started_at desc limit 1").fetchone()[0]
    finally:
        con.close()
    assert len(mechs) >= 15
    for m in mechs:
        assert html.escape(m) in text, m
    for title in (
        "Global explanations per mechanism",
        "Mechanism contrast",
        "Human minus judge",
        "Data and quality",
        "Agreement between mechanisms",
        "Annotation quality per concept",
        "Model quality",
        "Held-out accuracy",
        "How to read lift",
        "Contents",
    ):
        assert title in text, title
    assert build_id in text
    # one Figure 1 per mechanism with a non-zero lift, plus contrast, data and model figures
    assert len(page.images) >= 15
    assert 100_000 < out.stat().st_size < 15_000_000


@pytest.mark.slow
def test_report_options(sample_report: tuple[Path, Path], tmp_path: Path) -> None:
    wh, _ = sample_report
    out = run_report(wh, "--max-domains", "2", "--top", "3", "--representation", "score")
    text = " ".join(out.read_text(encoding="utf-8").split())
    assert "score-rep" in text and "its 2 largest domains" in text and "top 3 concepts" in text


@pytest.mark.slow
@pytest.mark.chromium
def test_report_screenshot_in_headless_chromium(sample_report: tuple[Path, Path], tmp_path: Path) -> None:
    # selected only by `-m chromium` (make test-browser): a missing browser is a failure, not a skip
    if not Path(CHROMIUM).exists() or shutil.which(CHROMIUM) is None:
        pytest.fail(f"headless Chromium not found at {CHROMIUM}: apt-get install -y chromium (make test-browser)")
    from PIL import Image

    _, out = sample_report
    png = tmp_path / "shot.png"
    cmd = [
        CHROMIUM,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={tmp_path / 'profile'}",
        f"--screenshot={png}",
        "--window-size=1400,2400",
        out.resolve().as_uri(),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=180)
    assert png.exists(), proc.stderr[-2000:]
    img = np.asarray(Image.open(png).convert("L"), dtype=float)
    assert img.shape == (2400, 1400)
    assert img.std() > 20  # not a blank page
    assert (img < 128).mean() > 0.01  # a real share of dark pixels: text and bars
