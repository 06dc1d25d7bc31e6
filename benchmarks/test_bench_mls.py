"""Runs the MLS benchmark at small sizes under ``pytest -m slow benchmarks``;
the full table (up to 1000 members) comes from ``python benchmarks/bench_mls.py``."""

import pytest

from benchmarks.bench_mls import bench_size


@pytest.mark.slow
def test_bench_small_sizes(capsys: pytest.CaptureFixture[str]) -> None:
    for n in (2, 10, 100):
        row = bench_size(n, 3)
        print(n, {k: round(v, 2) for k, v in row.items()})
        assert row["ciphertexts_full"] <= row["ciphertexts_sparse"]
