"""Suite-wide hooks: the MLS vector tests skip, with one message, when the
vectors are not there (see ``tests/vectors.py``)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.vectors import PRESENT, REASON


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """A parametrize over a missing vector file collects one "empty
    parameter set" item; give it the vector message instead."""
    if PRESENT:
        return
    for item in items:
        for mark in item.iter_markers(name="skip"):
            if str(mark.kwargs.get("reason", "")).startswith("got empty parameter set"):
                item.add_marker(pytest.mark.skip(reason=REASON), append=False)
                break


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if PRESENT:
        return
    n = sum(1 for rep in terminalreporter.stats.get("skipped", []) if REASON in str(rep.longrepr))
    if n:
        terminalreporter.write_line(f"{n} vector tests skipped: {REASON}")
