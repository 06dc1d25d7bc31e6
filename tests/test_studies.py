"""The studies (issue 5): metrics from the trace, sweeps (serial, local
processes, Dask, resume), plots, the scenario files, and agreement of the
simulation with the reference models. Sizes are small; full sweeps are run
with ``mimisim sweep`` and are not tests."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd
import pytest

from mimisim.analysis import conflicts, dedup, failover, fanout, leave
from mimisim.analysis.stats import mean_ci, mean_ci_nonneg, ratio_ci, t975, wilson
from mimisim.api import run
from mimisim.cli import main
from mimisim.parallel import run_tasks
from mimisim.sim.scenario import load_scenario, load_scenario_text
from mimisim.sweep import plan, run_sweep

ROOT = Path(__file__).resolve().parents[1]
SCN = ROOT / "scenarios"
STUDY_FILES = ["epoch-conflicts", "notify-dedup", "leave-latency", "failover", "fanout"]


# ---------------------------------------------------------------- statistics


def test_confidence_intervals() -> None:
    assert t975(1) == pytest.approx(12.706) and t975(1000) == pytest.approx(1.962, abs=1e-3)
    m, lo, hi, n = mean_ci([1.0, 2.0, 3.0, math.nan])
    assert (m, n) == (2.0, 3) and lo == pytest.approx(2 - 4.303 / math.sqrt(3)) and hi > m
    m, lo, hi, n = mean_ci([5.0])  # one run: no spread, no interval (never a zero-width band)
    assert m == 5.0 and n == 1 and math.isnan(lo) and math.isnan(hi)
    # a count that cannot be negative: the t interval's low end is clamped at 0, and says so
    assert mean_ci([0.0, 0.0, 1.0])[1] < 0
    m, lo, hi, n, clamped = mean_ci_nonneg([0.0, 0.0, 1.0])
    assert lo == 0.0 and clamped and hi == mean_ci([0.0, 0.0, 1.0])[2]
    assert mean_ci_nonneg([4.0, 5.0, 6.0])[4] is False and mean_ci_nonneg([5.0])[4] is False
    # the cluster interval widens with the spread between runs; Wilson would not
    p, lo, hi, k = ratio_ci([10, 10], [100, 100])
    assert p == 0.1 and k == 2 and lo == hi == 0.1
    p, lo2, hi2, _ = ratio_ci([2, 18], [100, 100])
    assert p == 0.1 and lo2 < 0.1 < hi2 and hi2 - lo2 > 0.5
    assert math.isnan(ratio_ci([3], [10])[1])
    p, lo, hi = wilson(0, 20)
    assert p == 0 and lo == 0 and 0.1 < hi < 0.2
    p, lo, hi = wilson(10, 20)
    assert lo < 0.5 < hi and lo == pytest.approx(1 - hi)


# ---------------------------------------------------------------- scenario files


@pytest.mark.parametrize("name", STUDY_FILES)
def test_study_scenarios_validate_with_their_sweeps(name: str) -> None:
    assert main(["validate", str(SCN / f"{name}.yaml"), "--sweep"]) == 0
    scn = load_scenario(SCN / f"{name}.yaml")
    assert scn.sweep is not None and scn.sweep.grid


# ---------------------------------------------------------------- metrics


def test_conflict_metrics_chain_retries_into_operations() -> None:
    scn = load_scenario(SCN / "epoch-conflicts.yaml", ["duration=40s", "workload.updates.rate=3/s"])
    tr = run(scn, out=False).trace
    ops = conflicts.operations(tr)
    upd = ops[ops.op == "update"]
    # every update attempt row belongs to exactly one operation
    n_attempts = tr[(tr.kind == "client.commit") & (tr.operation == "update")].shape[0]
    assert upd.attempts.sum() == n_attempts
    assert upd.conflicted.sum() > 0 and (upd[upd.conflicted].attempts > 1).all()
    assert upd.wrong_epoch.sum() == tr[(tr.kind == "hub.reject") & (tr.status == "wrongEpoch")].shape[0]
    assert (upd.time_to_accept_ms.dropna() > 0).all()
    row = conflicts.rows(tr, scn)[0]
    assert row["rate_per_s"] == 3.0 and 50 < row["W_ms"] < 200 and 0 < row["p_model"] < 1
    assert row["p_low"] <= row["p_conflict"] <= row["p_high"]
    # W from the scenario alone (access 10 ms, links 50 ms, hub on a.example, five members):
    # (4 x 70 + 4 x (70 + 3 x 120)) / 25 = 80 ms; the measurement adds processing costs.
    assert conflicts.window_from_scenario(scn) == pytest.approx(80.0)
    assert row["W_scenario_ms"] == pytest.approx(80.0) and abs(row["W_ms"] - 80.0) < 5
    # offered vs carried: every requested Update is built, queued or still waiting; every built one
    # is accepted, given up or still in flight (nothing dropped silently)
    assert row["requested"] == row["operations"] + row["not_built"]
    assert row["operations"] == row["accepted"] + row["gave_up"] + row["in_flight"]
    assert row["abandoned"] == row["gave_up"] + row["in_flight"]
    assert row["queued"] > 0 and row["fresh"] + row["queued"] == row["operations"]
    assert (upd.t_first >= upd.t_request).all() and (upd.queued == (upd.t_first > upd.t_request + 0.5)).all()
    assert row["gave_up"] == tr[(tr.kind == "client.fail") & (tr.operation == "update")].shape[0]
    assert 0 < row["p_model_queue"] < 1 and 0 < row["queued_frac_model"] < 1


def test_queue_model_reduces_to_the_light_load_model() -> None:
    """At light load nobody queues, and the queue model agrees with 1 - exp(-lambda W)."""
    paths = ((10.0, 10.0), (60.0, 60.0), (60.0, 60.0), (60.0, 60.0), (60.0, 60.0))
    q = conflicts.model_queue(paths, 0.25, 200_000.0)
    w = sum(u + d for i, (u, _) in enumerate(paths) for j, (_, d) in enumerate(paths) if i != j) / 25
    assert q["queued_frac"] < 0.05
    assert q["p_conflict"] == pytest.approx(conflicts.model_p_conflict(0.25, w), abs=0.01)


def _dedup_run(strategy: str, entries: int = 4096) -> pd.DataFrame:
    scn = load_scenario(SCN / "notify-dedup.yaml", [
        # Pipelined notifies: the study is about retries of several notifies in
        # flight at once (ordered, one per follower is in flight: a window of 2 never forgets).
        "duration=15s", "network.default.loss.p=0.0", "protocol.notify.timeout=70ms", "protocol.notify_pipelining=true",
        f"protocol.dedup.strategy={strategy}", f"protocol.dedup.window_entries={entries}"])
    return run(scn, out=False).trace


def test_dedup_metrics_per_strategy() -> None:
    # A /notify timeout shorter than the round trip: every notify is retried.
    none, body, small = _dedup_run("none"), _dedup_run("body_hash"), _dedup_run("body_hash", 2)
    s_none, s_body, s_small = dedup.summary(none), dedup.summary(body), dedup.summary(small)
    for s in (s_none, s_body, s_small):
        assert s["notify_retries"] > 0 and s["dup_at_follower"] > 0 and s["wrongly_dropped"] == 0
    assert s_none["dup_processed"] == s_none["dup_at_follower"] and s_none["dup_to_clients"] > 0
    assert s_none["window_entries_max"] == 0
    assert s_body["dup_processed"] == 0 and s_body["dup_to_clients"] == 0
    assert s_body["dup_deduplicated"] == s_body["dup_at_follower"]
    # a window of two entries forgets: some retries are processed again
    assert s_small["window_entries_max"] == 2 and s_small["window_bytes_max"] == 2 * 40
    assert s_small["dup_processed"] > 0
    # the stream model (a Monte Carlo of the hub's attempts and the window)
    scn = load_scenario(SCN / "notify-dedup.yaml", [
        "duration=15s", "network.default.loss.p=0.0", "protocol.notify.timeout=70ms", "protocol.notify_pipelining=true",
        "protocol.dedup.strategy=body_hash", "protocol.dedup.window_entries=2"])
    m = dedup.stream_model(small, scn)
    assert m["window_entries_max_model"] == 2 and m["window_bytes_max_model"] == 80
    assert m["dup_at_follower_model"] == pytest.approx(s_small["dup_at_follower"], rel=0.15)
    assert 0 < m["dup_processed_model"] < m["dup_at_follower_model"]
    w = dedup.window(body)
    assert w.entries.is_monotonic_increasing or w.groupby("follower").entries.is_monotonic_increasing.all()


def test_leave_metrics_and_model_parts() -> None:
    scn = load_scenario(SCN / "leave-latency.yaml", ["duration=120s"])
    tr = run(scn, out=False).trace
    lv = leave.leaves(tr)
    assert len(lv) > 3 and (lv.completed | lv.at_end).all()
    lv = lv[lv.completed]
    assert (lv.latency_all_ms >= lv.latency_accept_ms).all() and (lv.latency_accept_ms > 0).all()
    assert (lv.remaining >= 2).all()
    row = leave.rows(tr, scn)[0]
    assert row["never_completed"] == 0 and row["commit_rate_per_s"] == pytest.approx(0.2 + 4 / 60)
    # the model's parts: wait from the strategy, paths from the network (10 + 50 + 50 + 10 ms)
    assert 100 < row["h_ms"] < 140 and 100 < row["c_ms"] < 140 and 0 < row["wait_ms"] < 5000 / 3
    assert leave.expected_wait_ms(0.0, "random_delay", 0, 5000, 1) == pytest.approx(2500, rel=1e-3)
    assert leave.expected_wait_ms(0.0, "random_delay", 0, 5000, 4) == pytest.approx(1000, rel=1e-3)
    assert leave.expected_wait_ms(1.0, "random_delay", 1e9, 1e9 + 1, 1) == pytest.approx(1000, rel=1e-2)
    assert leave.expected_wait_ms(1.0, "immediate_commit") == 0
    assert row["model_quiet_ms"] > 0 and row["model_all_ms"] > 0


def test_a_leave_requested_again_while_under_way_is_one_leave() -> None:
    """The workload may pick a member that is already leaving (a slow
    link): the second request repeats the first, it is not a leave with no
    proposal and no latency (which the mean would silently leave out)."""
    room, f1, a1 = "mimi://a.example/r/lobby", "mimi://d.example/d/fred/F1", "mimi://a.example/d/alice/A1"

    def ev(t: float, kind: str, node: str, **kw: object) -> dict[str, object]:
        return {"t_ms": t, "kind": kind, "node": node, "room": room, "peer": "", "msg_id": "", "status": "",
                "operation": None, "action": None, "removed": None, "committer": None, "role_changes": None,
                "attempt": None, "external": None, "message": None, "duplicate": None, **kw}

    rows = [ev(100, "workload.action", f1, action="leave"),
            ev(100, "client.propose", f1, operation="leave", peer="mimi://d.example/u/fred", msg_id="p1"),
            ev(400, "workload.action", f1, action="leave"),  # again, while the first is under way
            ev(500, "hub.accept", "a.example", msg_id="c1", removed=1, committer=a1),
            ev(700, "client.epoch", f1, msg_id="c1", status="removed"),
            ev(710, "client.epoch", a1, msg_id="c1", status="")]
    for i, r in enumerate(rows):
        r["seq"] = i
    lv = leave.leaves(pd.DataFrame(rows))
    assert len(lv) == 1 and lv["repeats"].iloc[0] == 1 and lv["latency_all_ms"].iloc[0] == 610
    row = leave.rows(pd.DataFrame(rows))[0]
    assert (row["leaves"], row["completed"], row["repeats"], row["latency_n"]) == (1, 1, 1, 1)
    # asked again after the removal: a new leave (here never completed)
    lv = leave.leaves(pd.DataFrame([*rows, ev(900, "workload.action", f1, action="leave", seq=6)]), tail_ms=0)
    assert len(lv) == 2 and list(lv["outcome"]) == ["completed", "never_completed"]


def test_leave_race_model_by_hand() -> None:
    """The race with no other traffic, worked by hand (access 10 ms, links
    30 ms, hub a): the proposals reach the hub at 40 ms; a hub-local member
    wins at 60 ms, but its commit's notify waits for the proposals' notify
    (sent at 40, answered at 100): followers get it at 100 + 40 = 140 ms.
    Without a hub-local member a follower gets the proposals at 80, its
    commit is accepted at 120 and reaches the others at 160 ms."""
    from mimisim.analysis.leave_race import Member, RaceSetup, race_latency

    def m(p: str) -> Member:
        return Member(p, 10.0 + (0 if p == "a" else 30), 10.0 + (0 if p == "a" else 30))

    rtt = tuple((p, 60.0) for p in "bcd")
    assert race_latency(RaceSetup((m("b"), m("a"), m("c"), m("d")), "a", rtt))[1] == pytest.approx(140)
    assert race_latency(RaceSetup((m("b"), m("c"), m("d")), "a", rtt))[1] == pytest.approx(160)
    # pipelined notifies would give 60 + 40 = 100 ms: the 40 ms are the ordered notify's wait
    busy = RaceSetup((m("b"), m("a"), m("c"), m("d")), "a", rtt, update_rate=2.0, leave_rate=0.5)
    assert race_latency(busy, 100)[0] > 140  # second rounds and waits behind other notifies only add
    # designated: the named follower commits at once (80 + 40 -> 120, + 40 -> 160 ms)
    des = RaceSetup((m("b"), m("a"), m("c"), m("d")), "a", rtt, strategy="designated", delay_ms=(1000, 2000),
                    designated=2)
    assert race_latency(des, 20)[1] == pytest.approx(160)


@pytest.mark.parametrize("standby,lost", [("{replication: sync, takeover: 500ms}", False),
                                          ("{replication: lag, lag: {kind: constant, value: 2s}, "
                                           "takeover: 500ms}", True)])
def test_failover_metrics(standby: str, lost: bool) -> None:
    scn = load_scenario(SCN / "failover.yaml", ["duration=40s", f"providers.a.example.standby={standby}"])
    tr = run(scn, out=False).trace
    s = failover.summary(tr)
    assert s["faults"] >= 2 and s["accepted"] > 50 and 500 <= s["service_ms"] < 10_000
    assert s["recover_ms"] > 0
    if lost:
        assert s["hub_lost"] > 0 and s["undelivered"] > 0
    else:
        assert s["hub_lost"] == 0 and s["undelivered"] == 0


FANOUT = """
name: fanout-small
seed: 3
duration: 25s
providers: {a.example: {}, b.example: {}, c.example: {}}
users:
  a0: {provider: a.example, clients: [A0]}
  b0: {provider: b.example, clients: [B0]}
  b1: {provider: b.example, clients: [B1]}
  c0: {provider: c.example, clients: [C0]}
rooms:
  r1: {hub: a.example, participants: {a0: group_admin, b0: ordinary_user}}
  r2: {hub: a.example, participants: {a0: group_admin, b0: ordinary_user, b1: ordinary_user, c0: ordinary_user}}
  r3: {hub: a.example, participants: {a0: group_admin, b1: ordinary_user}}
  r4: {hub: a.example, participants: {a0: group_admin, b0: ordinary_user}}
  r5: {hub: a.example, participants: {a0: group_admin, b0: ordinary_user}}
  r6: {hub: a.example, participants: {a0: group_admin, b0: ordinary_user}}
  r7: {hub: a.example, participants: {a0: group_admin, b0: ordinary_user}}
network:
  default: {latency: {kind: constant, value: 30ms}}
workload:
  messages: {rate: 1/s, start: 10s}
"""


def test_fanout_metrics_and_every_added_client_joins_beyond_its_keypackages() -> None:
    # b0 is added to 6 rooms with 4 one-time KeyPackages: rooms 5-7 use its
    # last-resort KeyPackage. Its Welcome used to be lost after the first use
    # (the follower forgot the last-resort ref): every room must have b0.
    tr = run(load_scenario_text(FANOUT, "fanout-small.yaml"), out=False).trace
    rooms = fanout.rooms(tr).set_index("room")
    want = {"r1": (2, 2), "r2": (4, 3), "r3": (2, 2), "r4": (2, 2), "r5": (2, 2), "r6": (2, 2), "r7": (2, 2)}
    got = {r.rsplit("/", 1)[-1]: (int(v.members), int(v.providers)) for r, v in rooms.iterrows()}
    assert got == want
    scn = load_scenario_text(FANOUT, "fanout-small.yaml")
    rows = {r["room"].rsplit("/", 1)[-1]: r for r in fanout.rows(tr, scn)}
    # no loss: at most one /notify per follower provider per message; none
    # back to a provider whose only member sent it (r2: 1.7 of 2)
    assert 1 < rows["r2"]["requests_per_msg"] < 2 and 0 < rows["r1"]["requests_per_msg"] <= 1
    # the model counts the targets per message from its sender: exact here
    for r in rows.values():
        assert r["requests_per_msg"] == pytest.approx(r["requests_per_msg_model"])
        assert r["planned_per_msg"] == pytest.approx(r["planned_per_msg_model"]) and r["unsent_at_end"] == 0
    assert rows["r2"]["requests_per_msg_all_providers"] == 2 and rows["r2"]["stream_load"] == pytest.approx(0.06)
    assert 0 < rows["r2"]["requests_per_follower"] <= 1
    assert rows["r2"]["bytes_per_msg"] > rows["r1"]["bytes_per_msg"]
    cs = fanout.commit_sizes(tr)
    r2 = cs[cs.room.str.endswith("/r2") & (cs.op == "add_user")]
    assert list(r2.members_after) == [2, 3, 4] and r2.welcome.is_monotonic_increasing
    assert (cs.groupinfo > 0).all() and (cs.commit > 0).all()


# ---------------------------------------------------------------- sweeps and plots

SMALL = ["duration=20s", "sweep.grid={workload.updates.rate: [1/s, 3/s], workload.retry.mode: [rebuild]}"]


def test_printed_summary_names_every_metric_over_fewer_runs() -> None:
    from mimisim.sweep import format_summary

    summary = pd.DataFrame([{"latency_all_mean_ms_mean": 100.0, "latency_all_mean_ms_low": 90.0,
                             "latency_all_mean_ms_high": 110.0, "latency_all_mean_ms_n": 3, "n": 3,
                             "recover_ms_mean": 5.0, "recover_ms_n": 2, "h_ms_mean": 1.0, "h_ms_n": 3}])
    text = format_summary(summary, [], "leave")
    assert "defined in fewer runs: recover_ms 2 of 3" in text and "h_ms" not in text


def test_sweep_merges_resumes_and_plots(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "sw"
    sw = plan(SCN / "epoch-conflicts.yaml", SMALL, seeds=2, out=out)
    assert len(sw.points) == 4 and sw.study == "conflicts"
    runs, summary = run_sweep(sw, workers=1, progress=False)
    assert list(runs.columns[:3]) == ["workload.updates.rate", "workload.retry.mode", "seed"]
    assert list(runs["seed"]) == [1, 2, 1, 2] and list(runs["workload.updates.rate"]) == ["1/s"] * 2 + ["3/s"] * 2
    assert len(summary) == 2 and (summary["n"] == 2).all()
    for m in ("p_conflict", "tta_mean_ms"):
        assert (summary[f"{m}_low"] <= summary[f"{m}_mean"]).all()
        assert (summary[f"{m}_mean"] <= summary[f"{m}_high"]).all()
    assert {"p_conflict_pooled", "p_conflict_pooled_low", "p_conflict_pooled_high"} <= set(summary.columns)
    # every metric here is >= 0: no negative lower bound, and a clamp is flagged
    lows = summary[[c for c in summary.columns if c.endswith("_low")]]
    assert (lows.fillna(0) >= 0).all().all() and summary["gave_up_clamped"].dtype == bool
    # resume: drop one run, run again through the CLI; only that run is redone
    victim = sorted((out / "runs").glob("*.json"))[1]
    victim.unlink()
    assert main(["sweep", str(SCN / "epoch-conflicts.yaml"), *sum((["--set", s] for s in SMALL), []),
                 "--seeds", "2", "--out", str(out), "--workers", "1", "--no-progress"]) == 0
    meta = json.loads((out / "sweep.json").read_text())
    assert meta["ran_now"] == 1 and meta["resumed"] == 3 and meta["study"] == "conflicts"
    pd.testing.assert_frame_equal(pd.read_parquet(out / "runs.parquet"), runs)
    assert "p_conflict" in capsys.readouterr().out
    # plots: PNG and SVG per figure, labelled with the scenario and units
    assert main(["plot", str(out)]) == 0
    figs = sorted(p.name for p in (out / "figures").iterdir())
    assert "epoch-conflicts-p_conflict.png" in figs and "epoch-conflicts-p_conflict.svg" in figs
    svg = (out / "figures" / "epoch-conflicts-tta_mean_ms.svg").read_text()
    assert "epoch-conflicts" in svg and "(ms)" in svg and "per s" in svg
    assert main(["plot", str(tmp_path)]) == 2


EXECUTOR_GRID = ["duration=15s", "sweep.grid={workload.updates.rate: [1/s, 3/s], network.default.latency.value: [20ms]}"]


def test_sweep_on_local_processes_equals_serial(tmp_path: Path) -> None:
    """The same table serially and on two local processes."""
    serial, _ = run_sweep(plan(SCN / "epoch-conflicts.yaml", EXECUTOR_GRID, seeds=2, out=tmp_path / "s"), workers=1,
                          progress=False)
    local, _ = run_sweep(plan(SCN / "epoch-conflicts.yaml", EXECUTOR_GRID, seeds=2, out=tmp_path / "l"), workers=2,
                         progress=False)
    pd.testing.assert_frame_equal(local, serial)


@pytest.mark.parametrize("dask_workers", [pytest.param(1, id="small", marks=pytest.mark.long),
                                          pytest.param(2, id="full", marks=pytest.mark.slow)])
def test_sweep_on_dask_equals_serial(tmp_path: Path, dask_workers: int) -> None:
    """The same table serially and on a Dask cluster (one worker process in
    CI's ``long`` step, two with ``-m slow``: each costs seconds to start,
    which is why this is outside the default suite)."""
    distributed = pytest.importorskip("dask.distributed")
    serial, _ = run_sweep(plan(SCN / "epoch-conflicts.yaml", EXECUTOR_GRID, seeds=2, out=tmp_path / "s"), workers=1,
                          progress=False)
    # Processes, not threads: the crypto operation counters the cost model reads are per process.
    with distributed.LocalCluster(n_workers=dask_workers, threads_per_worker=1, processes=True, dashboard_address=None) as lc, \
            distributed.Client(lc) as client:
        dask, _ = run_sweep(plan(SCN / "epoch-conflicts.yaml", EXECUTOR_GRID, seeds=2, out=tmp_path / "d"), dask=client,
                            progress=False)
    pd.testing.assert_frame_equal(dask, serial)


# ---------------------------------------------------------------- agreement with the models


@pytest.mark.parametrize("duration", [pytest.param("40s", id="small", marks=pytest.mark.long),
                                      pytest.param("100s", id="full", marks=pytest.mark.slow)])
def test_conflict_probability_follows_the_poisson_model(tmp_path: Path, duration: str) -> None:
    """P(conflict) ~ 1 - exp(-lambda W), W measured from the run's own commits:
    the model lies inside the simulation's pooled 95% Wilson interval.
    CI's ``long`` step runs shorter simulations (wider intervals); ``-m slow`` the full ones."""
    grid = [f"duration={duration}", "sweep.grid={workload.updates.rate: [0.5/s, 2/s], "
            "network.default.latency.value: [50ms, 150ms]}"]
    runs, summary = run_sweep(plan(SCN / "epoch-conflicts.yaml", grid, seeds=2, out=tmp_path), workers=2,
                              progress=False)
    for _, r in summary.iterrows():
        # the queue model, from the scenario alone, holds at every point
        assert r["p_conflict_pooled_low"] <= r["p_model_queue_mean"] <= r["p_conflict_pooled_high"], r.to_dict()
        if r["offered_lambda_w_mean"] < 0.35:  # the light-load model only where the load is light
            assert r["p_conflict_pooled_low"] <= r["p_model_mean"] <= r["p_conflict_pooled_high"], r.to_dict()
        assert r["n"] == 2 and r["p_conflict_n"] == 2 and r["p_conflict_trials"] == r["operations_mean"] * 2
    # and the probability grows with the rate and the latency, as the model says
    p = summary.set_index(["workload.updates.rate", "network.default.latency.value"])["p_conflict_pooled"]
    assert p[("2/s", "150ms")] > p[("0.5/s", "150ms")] and p[("2/s", "150ms")] > p[("2/s", "50ms")]


@pytest.mark.parametrize("duration,seeds", [pytest.param("200s", (1, 2), id="small", marks=pytest.mark.long),
                                            pytest.param("200s", (1, 2, 3), id="full", marks=pytest.mark.slow)])
def test_leave_latency_follows_wait_plus_path(duration: str, seeds: tuple[int, ...]) -> None:
    """E[latency to the last member] ~ proposals' path + next-commit wait +
    commit's path: the model lies inside the 95% interval of the mean over
    every leave of a few runs. CI's ``long`` step runs fewer runs; ``-m slow`` the full ones."""
    points = [("0.05/s", "{strategy: random_delay, min_delay: 0s, max_delay: 5s}"),
              ("1/s", "{strategy: random_delay, min_delay: 0s, max_delay: 5s}"),
              ("0.2/s", "{strategy: immediate_commit}")]
    tasks = [(rate, pp, seed, duration) for rate, pp in points for seed in seeds]
    results = run_tasks(_leave_run, tasks, workers=2, progress=False)
    for rate, pp in points:
        mine = [r for (r_, p_, _, _), r in zip(tasks, results, strict=True) if (r_, p_) == (rate, pp)]
        lat = [x for latencies, _ in mine for x in latencies]
        model = sum(m for _, m in mine) / len(mine)
        m, lo, hi, n = mean_ci(lat)
        assert n > 20 and lo <= model <= hi, (rate, pp, m, lo, hi, model)


def _leave_run(task: tuple[str, str, int, str]) -> tuple[list[float], float]:
    rate, pp, seed, duration = task
    scn = load_scenario(SCN / "leave-latency.yaml", [f"seed={seed}", f"duration={duration}", f"workload.updates.rate={rate}",
                                                      f"protocol.pending_proposals={pp}"])
    tr = run(scn, out=False).trace
    return list(leave.leaves(tr).latency_all_ms.dropna()), leave.rows(tr, scn)[0]["model_all_ms"]


# notebooks: tests/test_notebooks.py (committed with outputs, outputs current)


def test_grid_values_as_cells_and_axes() -> None:
    from mimisim.plots import _distinct_labels, numeric
    from mimisim.sweep import label

    assert label({"strategy": "random_delay", "max_delay": "5s"}) == "strategy=random_delay max_delay=5s"
    assert label({"lag": {"kind": "constant", "value": "1s"}}) == "lag=(kind=constant value=1s)"
    assert label([{"at": "30s", "kind": "failover"}]) == "[at=30s kind=failover]" and label(0.5) == 0.5
    assert numeric("150ms") == (150.0, "ms") and numeric("2/s") == (2.0, "per s") and numeric(0.2) == (0.2, "")
    assert numeric("1KiB") == (1024.0, "bytes") and numeric("rebuild") is None and numeric(True) is None
    assert _distinct_labels(["replication=sync takeover=1s", "replication=lag takeover=1s"]) == [
        "replication=sync", "replication=lag"]


@pytest.mark.slow
def test_queue_model_holds_on_the_held_out_grid(tmp_path: Path) -> None:
    """The held-out conflict grid (7 members over 6 providers, lambda W to ~1.6):
    the queue model lies inside the cluster-robust interval at every point, and
    the light-load model over-predicts where Updates queue (docs/studies.md)."""
    sw = plan(SCN / "heldout" / "epoch-conflicts-heldout.yaml", ["duration=40s"], seeds=3, out=tmp_path,
              study="conflicts")
    _, summary = run_sweep(sw, workers=2, progress=False)
    assert len(summary) == 9
    for _, r in summary.iterrows():
        assert r["p_conflict_pooled_low"] <= r["p_model_queue_mean"] <= r["p_conflict_pooled_high"], r.to_dict()
    worst = summary.sort_values("offered_lambda_w_mean").iloc[-1]
    assert worst["offered_lambda_w_mean"] >= 1.5 and worst["p_model_mean"] > worst["p_conflict_pooled_high"]
