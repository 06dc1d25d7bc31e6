"""Behaviour is unchanged by refactors: every scenario's event sequence and
study rows match the recorded fingerprints (see ``tests/fingerprints.py``).

A change meant to alter behaviour re-records with
``python -m tests.fingerprints --write`` and says why in its commit."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mimisim import events as E
from tests import fingerprints as F

RECORDED = json.loads(F.DATA.read_text())
SCENARIOS = sorted((F.ROOT / "scenarios").glob("*.yaml"))


@pytest.mark.parametrize("name", sorted(RECORDED))
def test_fingerprint_unchanged(name: str) -> None:
    got = F.fingerprint(F.ROOT / "scenarios" / name)
    assert got == RECORDED[name], f"{name}: behaviour changed (re-record with python -m tests.fingerprints --write if meant)"


def test_every_scenario_has_a_fingerprint() -> None:
    assert sorted(p.name for p in (F.ROOT / "scenarios").glob("*.yaml")) == sorted(RECORDED)


@pytest.mark.parametrize("path", SCENARIOS, ids=[p.name for p in SCENARIOS])
def test_every_row_is_a_typed_event(path: Path) -> None:
    """Every row of every scenario's trace is recorded from its typed event,
    which renders the row's ``detail`` (the trace schema, docs/trace.md).
    In this file, not tests/test_trace_schema.py, because it reads the same
    runs as the fingerprints (``F.run``, once per process) and under xdist
    (``--dist loadfile``) a file runs on one worker: the runs are not repeated."""
    _, res = F.run(path)
    tr = res.world.trace
    untyped = sorted({k for k, ev in zip(tr.cols["kind"], tr.events, strict=True) if ev is None})
    assert untyped == [], f"{path.name}: kinds recorded without a typed event: {untyped}"
    for kind, ev, detail in zip(tr.cols["kind"], tr.events, tr.cols["detail"], strict=True):
        assert ev is not None and type(ev) is E.REGISTRY[kind] and ev.detail == detail
