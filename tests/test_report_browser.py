"""`preflens report` in a real headless Chromium (issue 13.4): the contrast and drift panels render and show.

Marker ``chromium``, kept out of `make test`; run with `make test-browser` (needs Debian's ``chromium``). Without
Chromium these tests fail: they are only selected when a browser check was asked for.

The browser is driven over the DevTools protocol on a pipe (``--remote-debugging-pipe``: fd 3 in, fd 4 out,
NUL-terminated JSON), so the test can wait until every image is decoded and clip the screenshot to a section.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

from pipelines.serve.report import build_report
from pipelines.serve.report.figures import HIGHLIGHT
from tests.conftest import write_mini_served
from tests.test_report_panels import _contrast_rows, _drift_rows, add_panel_marts

CHROMIUM = os.environ.get("PREFLENS_CHROMIUM", "/usr/bin/chromium")
WIDTH = 1400

pytestmark = pytest.mark.chromium


class Browser:
    """A headless Chromium driven over ``--remote-debugging-pipe`` (one page)."""

    def __init__(self, profile: Path, width: int = WIDTH, height: int = 1200) -> None:
        if shutil.which(CHROMIUM) is None:
            pytest.fail(f"headless Chromium not found at {CHROMIUM}: apt-get install -y chromium (make test-browser)")
        to_chrome_r, self._w = os.pipe()
        self._r, from_chrome_w = os.pipe()
        os.set_inheritable(to_chrome_r, True)
        os.set_inheritable(from_chrome_w, True)

        def fds() -> None:  # in the child: the protocol's fixed descriptors
            os.dup2(to_chrome_r, 3)
            os.dup2(from_chrome_w, 4)

        self._proc = subprocess.Popen(
            [
                CHROMIUM,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--remote-debugging-pipe",
                f"--user-data-dir={profile}",
                f"--window-size={width},{height}",
                "about:blank",
            ],
            close_fds=False,
            preexec_fn=fds,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        os.close(to_chrome_r)
        os.close(from_chrome_w)
        self._buf = b""
        self._id = 0
        target = self.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        self._session = self.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        self.width = width

    def send(self, method: str, params: dict | None = None, *, page: bool = False, timeout: float = 60) -> dict:
        self._id += 1
        msg: dict = {"id": self._id, "method": method, "params": params or {}}
        if page:
            msg["sessionId"] = self._session
        os.write(self._w, json.dumps(msg).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            while b"\0" in self._buf:
                raw, self._buf = self._buf.split(b"\0", 1)
                reply = json.loads(raw)
                if reply.get("id") == self._id:
                    if "error" in reply:
                        raise RuntimeError(f"{method}: {reply['error']}")
                    return reply["result"]
            if time.monotonic() > deadline:
                raise TimeoutError(f"no reply to {method} within {timeout} s")
            chunk = os.read(self._r, 1 << 20)
            if not chunk:
                raise RuntimeError(f"Chromium closed the DevTools pipe (exit {self._proc.poll()})")
            self._buf += chunk

    def js(self, expression: str) -> object:
        r = self.send("Runtime.evaluate", {"expression": expression, "returnByValue": True}, page=True)
        return r["result"].get("value")

    def open(self, path: Path, timeout: float = 60) -> None:
        """Load a file and wait until the document and every image are loaded and decoded."""
        self.send("Page.enable", page=True)
        self.send("Page.navigate", {"url": path.resolve().as_uri()}, page=True)
        deadline = time.monotonic() + timeout
        ready = "document.readyState === 'complete' && [...document.images].every(i => i.complete)"
        while not self.js(ready):
            if time.monotonic() > deadline:
                raise TimeoutError(f"{path} did not finish loading within {timeout} s")
            time.sleep(0.1)

    def broken_images(self, start_id: str, end_id: str | None) -> tuple[int, int]:
        """(images between the two ids, how many of them failed to decode)."""
        expr = f"""(() => {{
            const a = document.getElementById({json.dumps(start_id)}).getBoundingClientRect().top;
            const e = {json.dumps(end_id)} ? document.getElementById({json.dumps(end_id)}) : null;
            const b = e ? e.getBoundingClientRect().top : Infinity;
            const imgs = [...document.images].filter(i => {{ const t = i.getBoundingClientRect().top;
                                                           return t >= a && t < b; }});
            return [imgs.length, imgs.filter(i => !(i.naturalWidth > 0)).length]; }})()"""
        n, bad = self.js(expr)  # type: ignore[misc]
        return int(n), int(bad)

    def shoot(self, png: Path, start_id: str, end_id: str | None, max_height: int = 1600) -> np.ndarray:
        """Screenshot from element ``start_id`` down to ``end_id`` (or the page end), at most ``max_height`` px."""
        expr = f"""JSON.stringify((() => {{
            const y = el => el.getBoundingClientRect().top + window.scrollY;
            const e = {json.dumps(end_id)} ? document.getElementById({json.dumps(end_id)}) : null;
            return [y(document.getElementById({json.dumps(start_id)})),
                    e ? y(e) : document.documentElement.scrollHeight]; }})())"""
        top, bottom = json.loads(str(self.js(expr)))
        clip = {"x": 0, "y": top, "width": self.width, "height": min(max_height, bottom - top), "scale": 1}
        shot = self.send(
            "Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True, "clip": clip}, page=True
        )
        png.write_bytes(base64.b64decode(shot["data"]))
        from PIL import Image

        return np.asarray(Image.open(png).convert("RGB"), dtype=float)

    def close(self) -> None:
        try:
            self.send("Browser.close", timeout=10)
        except (RuntimeError, TimeoutError, OSError):
            pass
        try:
            self._proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait(timeout=30)
        os.close(self._w)
        os.close(self._r)


@pytest.fixture
def browser(tmp_path: Path):
    b = Browser(tmp_path / "profile")
    try:
        yield b
    finally:
        b.close()


def _share_of(img: np.ndarray, hex_color: str, tol: float = 40.0) -> float:
    rgb = np.array([int(hex_color[i : i + 2], 16) for i in (1, 3, 5)], dtype=float)
    return float((np.abs(img - rgb).max(axis=2) < tol).mean())


def test_contrast_and_drift_panels_render_in_chromium(tmp_path: Path, browser: Browser) -> None:
    db = tmp_path / "serve.duckdb"
    write_mini_served(db, with_ci=True)
    add_panel_marts(db, contrasts=_contrast_rows(), drift=_drift_rows(3))
    out = build_report(db, tmp_path / "reports")
    browser.open(out)
    # the hostile names stayed text: no image or element from them in the live DOM
    assert browser.js("document.querySelectorAll('img[src^=\"http\"], script').length") == 0
    assert browser.broken_images("contrast-pairs", "lift-heatmaps") == (1, 0)
    contrast = browser.shoot(tmp_path / "contrast.png", "contrast-pairs", "lift-heatmaps")
    assert contrast.shape[0] > 400 and contrast.std() > 20  # a drawn panel, not a blank strip
    assert _share_of(contrast, HIGHLIGHT) > 0.0005  # the distinguishable contrast (point, line, row) is highlighted
    assert browser.broken_images("drift", None) == (1, 0)
    drift = browser.shoot(tmp_path / "drift.png", "drift", None)
    assert drift.shape[0] > 300 and drift.std() > 20
    assert _share_of(drift, "#1f77b4") > 0.0005 and _share_of(drift, "#ff7f0e") > 0.0005  # the concept lines


def test_one_build_drift_note_is_visible_in_chromium(tmp_path: Path, browser: Browser) -> None:
    db = tmp_path / "serve.duckdb"
    write_mini_served(db, with_ci=True)
    add_panel_marts(db, contrasts=None, drift=_drift_rows(1))
    browser.open(build_report(db, tmp_path / "reports"))
    shown = browser.js(
        "document.getElementById('drift').parentElement.innerText.includes('One published build so far')"
    )
    assert shown is True
    assert browser.broken_images("drift", None) == (0, 0)
    note = browser.shoot(tmp_path / "drift.png", "drift", None, max_height=300)
    assert _share_of(note, "#fff8e1", tol=6) > 0.01  # the note's box is painted
