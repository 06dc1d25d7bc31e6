"""Chunked trace (issue 14): rows turned into columnar batches as the run goes
give the same table, the same Parquet bytes, counts and columns."""

from __future__ import annotations

from pathlib import Path

import pytest

from mimisim.sim.scenario import load_scenario
from mimisim.sim.trace import TraceError
from mimisim.sim.world import World

ROOT = Path(__file__).resolve().parents[1]


def _run(chunk_rows: int | None) -> World:
    w = World(load_scenario(ROOT / "scenarios" / "quickstart.yaml"), 2)
    w.trace.chunk_rows = chunk_rows
    return w.run(progress=False)


def test_chunked_trace_equals_the_unchunked_one(tmp_path: Path) -> None:
    whole, chunked = _run(None), _run(97)
    assert chunked.trace._batches, "the run is long enough to be chunked"
    assert len(whole.trace) == len(chunked.trace) and whole.trace.counts() == chunked.trace.counts()
    whole.trace.to_parquet(tmp_path / "a.parquet")
    chunked.trace.to_parquet(tmp_path / "b.parquet")
    assert (tmp_path / "a.parquet").read_bytes() == (tmp_path / "b.parquet").read_bytes()
    n = len(whole.trace)
    for name in ("t_ms", "kind", "epoch", "via", "added", "reason"):
        assert whole.trace.column(name) == chunked.trace.column(name)
        assert whole.trace.column(name, 90, 300) == chunked.trace.column(name, 90, 300)
    assert whole.trace.column("kind", n - 5) == chunked.trace.column("kind", n - 5)
    assert whole.trace.cols == chunked.trace.cols
    assert whole.setup_end_ms == chunked.setup_end_ms
    with pytest.raises(TraceError):
        _ = chunked.trace.events
