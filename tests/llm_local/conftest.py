"""The opt-in tests against a real llama.cpp server (``make test-llm-local``): marked ``llm_local`` and skipped
unless ``PREFLENS_LLM_LOCAL=1``, which only that target sets (it builds the server and installs it first)."""

from __future__ import annotations

import os

import pytest


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "llm_local: needs a real llama.cpp server (opt-in: make test-llm-local)")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if os.environ.get("PREFLENS_LLM_LOCAL") == "1":
        return
    skip = pytest.mark.skip(reason="opt-in: `make test-llm-local` runs it against a real llama.cpp server")
    for item in items:
        if "llm_local" in item.keywords:
            item.add_marker(skip)
