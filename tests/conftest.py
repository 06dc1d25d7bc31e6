"""Suite-wide hooks: the MLS vector tests skip, with one message, when the
vectors are not there (see ``tests/vectors.py``); the whole suite runs on
one xdist worker per CPU, a chosen file in this process; the property tests
draw fewer examples unless ``--hypothesis-profile=ci-long`` is given
(``tests/hypothesis_profiles.py``)."""

from __future__ import annotations

import os
from typing import Any

import pytest
from hypothesis import settings

from tests.hypothesis_profiles import SUITE
from tests.vectors import PRESENT, REASON

settings.load_profile(SUITE)  # --hypothesis-profile=NAME, applied later by hypothesis's plugin, wins


@pytest.hookimpl(optionalhook=True)  # a hook of pytest-xdist: no error where it is not installed
def pytest_xdist_auto_num_workers(config: pytest.Config) -> int:
    """How many workers ``-n auto`` (pyproject's addopts) starts: one per CPU
    when the whole suite runs (no path given on the command line), none
    (this process alone) when paths are given. Why: each worker imports the
    package and collects the suite again (about 6 s of CPU without byte-code
    caches), which pays off over the whole suite but not over one file.
    ``-n N`` on the command line, or PYTEST_XDIST_AUTO_NUM_WORKERS, decides
    instead."""
    env = os.environ.get("PYTEST_XDIST_AUTO_NUM_WORKERS", "")
    if env.isdigit():
        return int(env)
    if config.args_source is not pytest.Config.ArgsSource.TESTPATHS:
        return 0
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


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
