"""``mimisim check`` re-runs a sample of seeds in a fresh process with
another PYTHONHASHSEED and compares trace digests (issue 11, item 5): an
unbroken core passes, a nondeterminism bug put in (ordering by ``hash()`` of
strings, ``tests/nondeterminism.py``) fails as the ``deterministic`` check."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from mimisim import check as C
from tests import nondeterminism

ROOT = Path(__file__).resolve().parents[1]
SCN = ROOT / "scenarios" / "quickstart.yaml"


def test_sample_spreads_seeds() -> None:
    assert C.sample(range(1, 101), 3) == [1, 51, 100]
    assert C.sample([4, 5], 3) == [4, 5]
    assert C.sample(range(10), 0) == []


def test_an_unbroken_core_replays_identically() -> None:
    report = C.check(str(SCN), [1, 2], determinism=2)
    assert report.passed(C.DETERMINISTIC) == 2 and len(report.runs(C.DETERMINISTIC)) == 2
    assert report.ok


def test_a_nondeterminism_bug_fails_the_check(monkeypatch: pytest.MonkeyPatch) -> None:
    nondeterminism.patch(monkeypatch)
    monkeypatch.setattr(C, "CHILD_COMMAND", [sys.executable, "-m", "tests.nondeterminism"])
    monkeypatch.setenv("PYTHONHASHSEED", "7")  # the child gets 8
    report = C.check(str(SCN), [1, 2, 3], determinism=3)
    assert not report.ok
    assert report.passed(C.DETERMINISTIC) < 3
    bad = next(r for r in report.results if r.counts.get(C.DETERMINISTIC))
    assert "PYTHONHASHSEED=8" in bad.violations[C.DETERMINISTIC][0]["message"]
    # every other invariant still holds: the bug is only nondeterminism
    assert all(r.passed(k) == 3 for r in [report] for k in C.INVARIANTS)


@pytest.mark.long  # the CLI's wording of the case above; a fresh process, about 4 s of CPU: CI's long step
def test_the_cli_reports_it(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    from mimisim.cli import main

    nondeterminism.patch(monkeypatch)
    monkeypatch.setattr(C, "CHILD_COMMAND", [sys.executable, "-m", "tests.nondeterminism"])
    monkeypatch.setenv("PYTHONHASHSEED", "7")
    rc = main(["check", str(SCN), "--seeds", "2", "--determinism", "2", "--no-progress"])
    out = capsys.readouterr().out
    assert rc == 1
    assert "deterministic" in out and "FAILED" in out and "fresh process" in out
