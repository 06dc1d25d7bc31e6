"""The MLS-cost study (issue 18): silent members, bulk adds, measured CPU
columns outside the determinism guarantee, the per-bin rows and the fits."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mimisim import events as E
from mimisim.analysis import mlscost as M
from mimisim.sim.scenario import load_scenario
from mimisim.sim.world import World

ROOT = Path(__file__).resolve().parent.parent

#: A small mls-cost: 150 silent users, bins of 100 reached in 60 s, CPU measured.
SMALL = ["users.generate.count=150", "duration=60s", "workload.bulk_adds.batch=10", "workload.bulk_adds.rate=0.5/s",
         "workload.adds.rate=1/s", "outputs.cpu_time=true"]


def _run(*extra: str) -> pd.DataFrame:
    scn = load_scenario(ROOT / "scenarios" / "mls-cost.yaml", [*SMALL, *extra])
    return World(scn).run(progress=False).trace.to_pandas()


@pytest.fixture(scope="module")
def trace() -> pd.DataFrame:
    return _run()


@pytest.mark.slow
def test_silent_members_are_added_but_never_process_the_room(trace: pd.DataFrame) -> None:
    acc = trace[(trace.kind == "hub.accept") & (trace.message == "commit")]
    assert acc.added.sum() > 100  # the room grew past the first bin
    silent = trace.node.astype(str).str.startswith("mimi://s.example/")
    assert not (silent & trace.kind.isin(["client.epoch", "client.deliver", "client.drop"])).any()
    # The hub still fans out to the silent provider, which answers.
    assert ((trace.kind == "notify.accept") & (trace.node == "s.example")).any()
    # Bulk adds: one commit adds several users.
    assert (acc.added > 1).any() and (acc.added == 1).any()


@pytest.mark.slow
def test_cpu_columns_are_measured_only_when_asked_and_are_all_that_differs(trace: pd.DataFrame) -> None:
    commits = trace[trace.kind == "client.commit"]
    assert (commits.cpu_ms.dropna() > 0).all() and commits.cpu_ms.notna().mean() > 0.9
    hub = trace[(trace.kind == "hub.accept") & (trace.message == "commit")]
    assert hub.cpu_ms.notna().all()
    off = _run("outputs.cpu_time=false")
    assert off.cpu_ms.isna().all()
    drop = list(E.MEASURED_COLUMNS)
    pd.testing.assert_frame_equal(trace.drop(columns=drop), off.drop(columns=drop))


@pytest.mark.slow
def test_rows_bin_every_100_members_with_costs_that_grow(trace: pd.DataFrame) -> None:
    rows = pd.DataFrame(M.rows(trace))
    assert list(rows.size_bin[:2]) == [0, 100]
    assert (rows.epochs > 0).all() and (rows.bulk_epochs.sum() > 0)
    first, second = rows.iloc[0], rows.iloc[1]
    assert second.commit_bytes > first.commit_bytes  # the UpdatePath and the participant list grow
    assert second.add_welcome_bytes > first.add_welcome_bytes
    for col in ["gen_cpu_ms", "proc_cpu_ms", "hub_cpu_ms", "latency_ms"]:
        assert math.isfinite(second[col]) and second[col] > 0, col
    assert 0 < second.welcome_gi_share < 1
    assert second.auc_bytes == pytest.approx(second.commit_bytes)  # k = 1


def test_average_update_cost_and_fits() -> None:
    assert M.average_update_cost(100.0, 800.0, 8) == pytest.approx(200.0)
    assert M.average_update_cost(0.0, 50.0, 0) == pytest.approx(50.0)
    n = np.arange(100.0, 2100.0, 100.0)
    lin = M.fit_one(n, 3.0 + 0.5 * n)
    assert lin["lin_r2"] == pytest.approx(1.0) and lin["lin_b"] == pytest.approx(0.5)
    assert 0.9 < lin["exponent"] < 1.0
    log = M.fit_one(n, 2.0 + 4.0 * np.log(n))
    assert log["log_r2"] == pytest.approx(1.0) and log["lin_r2"] < 1.0 and log["exponent"] < 0.5
    assert math.isnan(M.fit_one(n[:2], n[:2])["exponent"])


def test_tiny_room_cpu_measured_apart_and_silent_provider_quiet() -> None:
    """The default-suite version: 12 silent users, 15 s; the scenario's own run measures nothing."""
    tiny = ["users.generate.count=12", "duration=15s", "workload.adds.start=2s", "outputs.cpu_time=true",
            "workload.bulk_adds.start=2s", "workload.bulk_adds.batch=4", "workload.updates.start=2s"]
    scn = load_scenario(ROOT / "scenarios" / "mls-cost.yaml", tiny)
    on = World(scn).run(progress=False).trace.to_pandas()
    off = World(load_scenario(ROOT / "scenarios" / "mls-cost.yaml", [*tiny, "outputs.cpu_time=false"])).run(
        progress=False).trace.to_pandas()
    assert on.cpu_ms.notna().any() and off.cpu_ms.isna().all()
    drop = list(E.MEASURED_COLUMNS)
    pd.testing.assert_frame_equal(on.drop(columns=drop), off.drop(columns=drop))
    assert on[(on.kind == "hub.accept") & (on.message == "commit")].added.sum() >= 4
    silent = on.node.astype(str).str.startswith("mimi://s.example/")
    assert not (silent & (on.kind == "client.epoch")).any()


def test_after_sweep_writes_fits_and_figures(tmp_path: Path) -> None:
    """The sweep hook: fits.csv per grid point (single-valued keys dropped)
    and one figure per fitted metric, from per-bin rows."""
    bins = np.arange(0, 2100, 100)
    rows = []
    for shape, slope in (("all", 0.2), ("2", 0.1)):
        for b in bins:
            n = b + 50.0
            rows.append({"rooms.generate.participants": shape, "duration": "420s", "size_bin": int(b),
                         "members_mean": n, "gen_cpu_ms": slope * n, "commit_bytes": 82.0 * n,
                         "proc_cpu_ms": 2.0 + np.log(n)})
    runs = pd.DataFrame(rows)
    text = M.after_sweep(tmp_path, runs, ["duration", "rooms.generate.participants"], "mls-cost")
    f = pd.read_csv(tmp_path / "fits.csv")
    assert "duration" not in f.columns and set(f["rooms.generate.participants"].astype(str)) == {"all", "2"}
    gen = f[f.metric == "gen_cpu_ms"]
    assert np.allclose(gen.lin_r2, 1.0) and np.allclose(gen.exponent, 1.0)
    assert (f[f.metric == "proc_cpu_ms"].log_r2 > 0.999).all()
    assert (tmp_path / "figures" / "mls-cost-gen_cpu_ms.png").is_file()
    assert "gen_cpu_ms: exponent 1.00" in text
