"""Smoke test of the single-room benchmark (``benchmarks/bench_room.py``) at a tiny size,
outside the default suite: ``python -m pytest -m slow tests/test_bench_room.py``."""

import pytest

from benchmarks.bench_room import measure, report
from mimisim import sharing


@pytest.mark.slow
def test_bench_room_tiny() -> None:
    runs = []
    for on in (True, False):
        with sharing.sharing(on):
            runs.append(measure(6, 2, 8.0, 3.0, None, profile=on))
    shared, alone = runs
    assert shared.events == alone.events and shared.counts == alone.counts  # sharing changes no result
    assert shared.counts.get("client.commit", 0) >= 5  # the room was built by real commits
    assert 0 < shared.setup_events < shared.events and shared.workload_wall_s > 0
    assert shared.profile is not None and shared.profile["share"]["crypto"] > 0
    assert "6/2" in report(runs, isolate=False)
