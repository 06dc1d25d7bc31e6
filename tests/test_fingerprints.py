"""Behaviour is unchanged by refactors: every scenario's event sequence and
study rows match the recorded fingerprints (see ``tests/fingerprints.py``).

A change meant to alter behaviour re-records with
``python -m tests.fingerprints --write`` and says why in its commit."""

from __future__ import annotations

import json

import pytest

from tests import fingerprints as F

RECORDED = json.loads(F.DATA.read_text())


@pytest.mark.parametrize("name", sorted(RECORDED))
def test_fingerprint_unchanged(name: str) -> None:
    got = F.fingerprint(F.ROOT / "scenarios" / name)
    assert got == RECORDED[name], f"{name}: behaviour changed (re-record with python -m tests.fingerprints --write if meant)"


def test_every_scenario_has_a_fingerprint() -> None:
    assert sorted(p.name for p in (F.ROOT / "scenarios").glob("*.yaml")) == sorted(RECORDED)
