"""The bridge to Great Expectations: a quiet, lazy import and spec -> ``ExpectationSuite``.

GE is imported on first use only (its import costs ~2 s), with a workaround for PySpark's Spark Connect
import that can end the process (see :func:`_without_unusable_spark_connect`).
"""

from __future__ import annotations

import contextlib
import functools
import os
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from pipelines.build.quality.specs import SuiteSpec

if TYPE_CHECKING:  # pragma: no cover
    import great_expectations as gx


@contextlib.contextmanager
def _without_unusable_spark_connect() -> Iterator[None]:
    """Hide ``pyspark.sql.connect`` from GE's optional import when Spark Connect cannot work anyway.

    GE's ``compatibility/pyspark.py`` imports ``pyspark.sql.connect`` if PySpark is installed (it is, for
    the optional Spark build). Without ``grpc``, PySpark 4's ``sql/connect/utils.py`` then calls
    ``sys.exit(0)`` whenever ``__main__`` has no ``__file__`` (``python -c``, pytest-xdist workers): the
    process silently ends. Marking the package unimportable for the duration of GE's import makes GE
    fall back to "Spark Connect not available", which it handles.
    """
    import importlib.util
    import sys

    name = "pyspark.sql.connect"
    hide = name not in sys.modules and importlib.util.find_spec("grpc") is None
    if hide:
        try:
            hide = importlib.util.find_spec("pyspark") is not None
        except (ImportError, ValueError):
            hide = False
    if not hide:
        yield
        return
    sys.modules[name] = None  # type: ignore[assignment]  # import raises ImportError
    try:
        yield
    finally:
        if sys.modules.get(name, 0) is None:
            del sys.modules[name]


@functools.cache
def import_gx() -> Any:
    """Import Great Expectations quietly (no analytics, no INFO logs)."""
    import logging

    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    with _without_unusable_spark_connect():
        import great_expectations

    for name in ("great_expectations", "great_expectations.core", "great_expectations.data_context"):
        logging.getLogger(name).setLevel(logging.ERROR)
    return great_expectations


def to_gx_suite(spec: SuiteSpec) -> gx.ExpectationSuite:
    """The GE 1.x ``ExpectationSuite`` for ``spec`` (errored expectations left out)."""
    gx_mod = import_gx()
    import great_expectations.expectations as gxe

    suite = gx_mod.ExpectationSuite(name=spec.name)
    for exp in spec.expectations:
        if exp.error is None:
            suite.add_expectation(getattr(gxe, exp.type)(**exp.kwargs))
    return suite
