"""Where the official MLS vectors are: ../shared/vectors/mls, or $MIMISIM_VECTORS.

Every test module that reads vectors gets them here, so a checkout without
``../shared`` (a fresh clone, a CI runner) still collects and runs the whole
suite: the vector tests skip with one message naming ``MIMISIM_VECTORS``
(``tests/conftest.py`` prints it once), everything else runs.
"""

from __future__ import annotations

import json
import os
from functools import cache
from pathlib import Path
from typing import Any, NoReturn

import pytest

from mimisim.mls.vectors import Checker, FileResult, checkers, run_file

VECTORS = Path(os.environ.get("MIMISIM_VECTORS") or Path(__file__).resolve().parents[1].parent / "shared" / "vectors" / "mls")

#: True when the vector folder holds vector files.
PRESENT = VECTORS.is_dir() and any(VECTORS.glob("*.json"))

REASON = f"MLS test vectors not found in {VECTORS} (set MIMISIM_VECTORS=/path/to/vectors/mls)"

#: Mark for a test that needs the vector files.
needs_vectors = pytest.mark.skipif(not PRESENT, reason=REASON)


class Missing(list[Any]):
    """Stands for a vector file that is not there: it iterates as empty (a
    ``parametrize`` over it collects no case; conftest turns that into the
    vector skip), and taking an item skips the test that does it."""

    def __getitem__(self, index: Any) -> NoReturn:
        pytest.skip(REASON)


@cache
def load(name: str) -> list[Any]:
    """The cases of one vector file, or :class:`Missing` if it is not there."""
    path = VECTORS / name
    if not path.is_file():
        return Missing()
    return json.loads(path.read_text())  # type: ignore[no-any-return]


@cache
def official(name: str) -> FileResult:
    """The result of one official vector file, run once per test session.

    Why: the runner test, the CLI test and the per-case tests all need every
    case checked; checking it once and sharing the outcome keeps the suite fast
    while each of them still fails on its own if a case fails."""
    return run_file(VECTORS / name, checkers()[name])


def run_file_once(path: Path, checker: Checker) -> FileResult:
    """:func:`mimisim.mls.vectors.run_file`, memoised for the official directory."""
    if path.parent.resolve() == VECTORS.resolve() and checker is checkers().get(path.name):
        return official(path.name)
    return run_file(path, checker)


def case_failure(name: str, index: int) -> str | None:
    """Why case ``index`` of official file ``name`` failed, or None if it passed."""
    res = official(name)
    assert res.total_passed + res.total_failed == len(load(name))
    return res.failed_cases.get(index)
