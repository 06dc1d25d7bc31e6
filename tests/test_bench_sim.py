"""Smoke test of the simulator benchmark (``benchmarks/bench_sim.py``) at a tiny size, outside
the default suite: ``python -m pytest -m slow tests/test_bench_sim.py``. The full figures come from
``python benchmarks/bench_sim.py``."""

import pytest

from benchmarks.bench_sim import make_shape, measure, plan_sim_s, report


@pytest.mark.slow
def test_bench_sim_tiny(capsys: pytest.CaptureFixture[str]) -> None:
    shape = make_shape(20)
    assert sum(len(m) for m in shape.rooms.values()) == 20 and len(shape.providers) == 3
    assert all(len(m) >= 2 for m in shape.rooms.values())
    results = [measure(kind, 20, 30.0, profile=True) for kind in ("transport", "protocol")]
    for r in results:
        assert r.events > 0 and r.messages > 0 and r.deliveries > 0
        assert r.wall_s > 0 and r.events_per_s > 0 and r.messages_per_s > 0
        assert r.setup_events <= r.events and 0 <= r.setup_wall_s <= r.wall_s
        assert r.events == sum(r.counts.values())
        assert r.maxrss_mib >= r.baseline_rss_mib > 0
        # every message reaches at most the other members of its room (10 at most here)
        assert r.messages <= r.deliveries <= r.messages * (max(len(m) for m in shape.rooms.values()) - 1)
        assert r.profile is not None
        share = r.profile["share"]
        assert abs(sum(share.values()) - 1.0) < 1e-6 and share["simpy"] > 0
    transport, protocol = results
    assert transport.profile["share"]["crypto"] == 0.0  # type: ignore[index]
    assert protocol.profile["share"]["crypto"] > 0.0  # type: ignore[index]
    assert protocol.counts.get("client.commit", 0) > 0  # the rooms were built by real commits
    # Same seed, same shape: the same message schedule drives both kinds.
    assert transport.messages > 0 and protocol.messages > 0
    # The budget shrinks a bigger run, and says so.
    sim_s, _, note = plan_sim_s(protocol, 20_000, 600.0, 1.0, False)
    assert sim_s == 60.0 and "simulated 1 min instead of 10" in note
    text = report(results, profile=True, isolate=False)
    print(text)
    assert "transport" in text and "protocol" in text and "SimPy" in text
