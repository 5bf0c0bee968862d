"""Ids of runs, builds and catalog versions: one sortable UTC timestamp, then a suffix that keeps them unique."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

STAMP = "%Y%m%dT%H%M%SZ"


def new_id(
    prefix: str = "", *, now: datetime | None = None, stamp: str = STAMP, suffix: str | None = None, suffix_len: int = 6
) -> str:
    """``<prefix><now formatted by stamp>-<suffix>``, e.g. ``20250101T120000Z-1a2b3c``.

    Ids of one kind sort by creation time, since the timestamp comes first (to the second with the default ``stamp``).
    ``now`` is taken as UTC when naive. The suffix is ``suffix_len`` random hex digits, so ids made in the same
    second differ, unless ``suffix`` gives one (e.g. a content hash).
    """
    when = now or datetime.now(UTC)
    if when.tzinfo is not None:
        when = when.astimezone(UTC)
    return f"{prefix}{when.strftime(stamp)}-{uuid.uuid4().hex[:suffix_len] if suffix is None else suffix}"
