"""Where the official MLS vectors are: ../shared/vectors/mls, or $MIMISIM_VECTORS."""

from __future__ import annotations

import json
import os
from functools import cache
from pathlib import Path
from typing import Any

from mimisim.mls.vectors import Checker, FileResult, checkers, run_file

VECTORS = Path(os.environ.get("MIMISIM_VECTORS") or Path(__file__).resolve().parents[1].parent / "shared" / "vectors" / "mls")


@cache
def load(name: str) -> list[Any]:
    return json.loads((VECTORS / name).read_text())  # type: ignore[no-any-return]


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
