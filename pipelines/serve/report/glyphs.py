"""Which characters the report's figures can draw, and with which fonts.

matplotlib draws with its default font (DejaVu Sans), which has no CJK ideographs: a name in Chinese would be
drawn as boxes, with one warning (and a source path) per glyph and figure. So, before any figure is drawn,
:func:`fonts_for` looks at every name the report will draw: a character that the default font cannot draw is
looked up among the installed fonts (matplotlib's own and the system's, as fontconfig and the usual font folders
list them, ``$XDG_DATA_HOME/fonts`` included), and a font that has it joins matplotlib's fallback list
(``font.family``) for the report. A character that no installed font has is drawn as :data:`REPLACEMENT` instead
and recorded, so the report says once what it could not draw; the HTML tables always show the names in full.
"""

from __future__ import annotations

import functools
import unicodedata
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

import matplotlib
from matplotlib import font_manager
from matplotlib.ft2font import FT2Font

#: what a character no installed font can draw becomes in a figure (DejaVu Sans has it)
REPLACEMENT = "□"
#: fonts whose glyphs are placeholders, not characters (matplotlib ships "Last Resort")
_PLACEHOLDER_FONTS = ("last resort", "lastresort")


@functools.cache
def _charmap(path: str) -> frozenset[int]:
    """The code points a font file maps to glyphs (empty when it cannot be read)."""
    try:
        return frozenset(FT2Font(path).get_charmap())
    except (OSError, RuntimeError, ValueError):
        return frozenset()


@functools.cache
def _installed_fonts() -> tuple[str, ...]:
    """Every font file matplotlib or the system knows, in a stable order."""
    known = {f.fname for f in font_manager.fontManager.ttflist}
    system = set(font_manager.findSystemFonts())  # ttf and otf
    return tuple(sorted(known | system))


def _family(path: str) -> str | None:
    try:
        return str(FT2Font(path).family_name)
    except (OSError, RuntimeError, ValueError):
        return None


class Glyphs:
    """The fonts a report draws with, and the characters it had to replace."""

    def __init__(self) -> None:
        default = font_manager.findfont(font_manager.FontProperties(), fallback_to_default=True)
        self._maps: list[frozenset[int]] = [_charmap(default)]
        self.fallbacks: list[str] = []  # font families added for characters the default font lacks
        self.replaced: dict[str, None] = {}  # in the order first met
        self._added: set[str] = set()  # their files

    def covered(self, ch: str) -> bool:
        return any(ord(ch) in m for m in self._maps)

    def extend_for(self, texts: Iterable[str]) -> None:
        """Add installed fonts that cover the characters of ``texts`` the fonts in use lack."""
        missing = {ch for text in texts for ch in str(text) if _drawn(ch) and not self.covered(ch)}
        while missing:
            best, best_hits = None, 0
            for path in _installed_fonts():
                if path in self._added or any(n in Path(path).name.lower() for n in _PLACEHOLDER_FONTS):
                    continue
                hits = sum(1 for ch in missing if ord(ch) in _charmap(path))
                if hits > best_hits:
                    best, best_hits = path, hits
            family = _family(best) if best else None
            if best is None or family is None or family.lower().startswith(_PLACEHOLDER_FONTS):
                return
            if best not in {f.fname for f in font_manager.fontManager.ttflist}:
                font_manager.fontManager.addfont(best)
            self._added.add(best)
            self.fallbacks.append(family)
            self._maps.append(_charmap(best))
            missing = {ch for ch in missing if not self.covered(ch)}

    def text(self, text: str) -> str:
        """``text`` with every character the fonts in use cannot draw replaced (and recorded)."""
        out = []
        for ch in text:
            if ch == "\n" or self.covered(ch):
                out.append(ch)
            elif not _drawn(ch):
                out.append(" " if ch.isspace() else "")
            else:
                self.replaced[ch] = None
                out.append(REPLACEMENT)
        return "".join(out)

    def note(self) -> str | None:
        """One sentence on the characters that were replaced, or None."""
        if not self.replaced:
            return None
        chars = "".join(self.replaced)
        shown = chars if len(chars) <= 12 else chars[:12] + "…"
        return (
            f"{len(chars)} character(s) in names ({shown}) are drawn as {REPLACEMENT} in the figures: no installed "
            "font can draw them (install one that covers them, e.g. Debian's fonts-noto-cjk for Chinese, Japanese "
            "and Korean). The tables give the names in full."
        )


def _drawn(ch: str) -> bool:
    """Whether a character is drawn at all (control and format characters are not)."""
    return unicodedata.category(ch) not in ("Cc", "Cf", "Zl", "Zp", "Cs")


_current: Glyphs | None = None


def current() -> Glyphs:
    """The glyphs of the report being drawn (a default one outside :func:`fonts_for`)."""
    global _current
    if _current is None:
        _current = Glyphs()
    return _current


@contextmanager
def fonts_for(texts: Iterable[str]) -> Iterator[Glyphs]:
    """Draw the figures made inside with fonts that cover ``texts`` where installed fonts allow (matplotlib's
    ``font.family`` gets the fallbacks for this block only); yields the :class:`Glyphs` that records what had
    to be replaced."""
    global _current
    glyphs = Glyphs()
    glyphs.extend_for(texts)
    previous, _current = _current, glyphs
    try:
        with matplotlib.rc_context({"font.family": [*matplotlib.rcParams["font.family"], *glyphs.fallbacks]}):
            yield glyphs
    finally:
        _current = previous


__all__ = ["REPLACEMENT", "Glyphs", "current", "fonts_for"]
