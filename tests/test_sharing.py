"""Sharing pure work between simulated members changes no result (issue 14).

With :mod:`mimisim.sharing` off, every scenario's trace and study rows are
byte-identical to the recorded fingerprints, which ``test_fingerprints.py``
checks with sharing on: so the traces are the same either way. The trace
carries the providers' processing times, which come from the metered
signature and HPKE counts, so the counts are the same too. A few small
scenarios run in the default suite; all of them in the slow test."""

from __future__ import annotations

import json

import pytest

from mimisim import sharing
from mimisim.mls import crypto
from tests import fingerprints as F

RECORDED = json.loads(F.DATA.read_text())
QUICK = ["quickstart.yaml", "notify-dedup.yaml", "leave-latency.yaml"]


def _check_off(name: str) -> None:
    with sharing.sharing(False):
        got = F.fingerprint(F.ROOT / "scenarios" / name)
    assert got == RECORDED[name], f"{name}: the trace differs with sharing off"


@pytest.mark.parametrize("name", QUICK)
def test_trace_identical_with_sharing_off(name: str) -> None:
    _check_off(name)


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(RECORDED))
def test_every_scenario_identical_with_sharing_off(name: str) -> None:
    _check_off(name)


def test_shared_verification_counts_every_operation_and_matches() -> None:
    suite = crypto.get_suite(1)
    priv, pub = suite.generate_signature_key_pair(crypto.DeterministicRandom(7, "sharing"))
    sig = suite.sign_with_label(priv, "label", b"content")
    results = {}
    for on in (False, True):
        with sharing.sharing(on), crypto.metered(crypto.OpCounts()) as c:
            results[on] = [suite.verify_with_label(pub, "label", b"content", sig) for _ in range(3)]
            results[on] += [suite.verify_with_label(pub, "label", b"other", sig)]
            assert c.snapshot()[0] == 4  # every logical verification counted, shared or not
    assert results[False] == results[True] == [True, True, True, False]
