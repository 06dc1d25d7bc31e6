"""The simulated world end to end: determinism, retries after a follower
crash, hub failover (sync and lagging), offline clients, partitions, the
results folder and the CLI."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

import mimisim
from mimisim.api import load, run
from mimisim.cli import main
from mimisim.sim.scenario import Scenario, load_scenario_text
from mimisim.sim.world import World

ROOT = Path(__file__).resolve().parents[1]
QUICKSTART = ROOT / "scenarios" / "quickstart.yaml"

BASE = """
name: {name}
seed: {seed}
duration: {duration}
providers:
  a.example: {{cost: {{per_request: 0.2ms, per_signature: 0.05ms, per_hpke: 0.1ms}}{a_extra}}}
  b.example: {{}}
  c.example: {{}}
users:
  alice: {{provider: a.example, clients: [A1]}}
  bob: {{provider: b.example, clients: [B1, B2]}}
  cathy: {{provider: c.example, clients: [C1]}}
rooms:
  room: {{hub: a.example, participants: {{alice: group_admin, bob: ordinary_user, cathy: ordinary_user}}}}
network:
  default: {{latency: {{kind: constant, value: 30ms}}, jitter: 10ms{loss}}}
workload:
  messages: {{rate: {rate}, start: 2s, stop: {stop}}}
{extra}
"""


def scenario(name: str = "t", seed: int = 1, duration: str = "30s", rate: str = "2/s", stop: str = "25s",
             loss: str = "", a_extra: str = "", extra: str = "") -> Scenario:
    text = BASE.format(name=name, seed=seed, duration=duration, rate=rate, stop=stop,
                       loss=f", loss: {loss}" if loss else "", a_extra=a_extra, extra=extra)
    return load_scenario_text(text, f"{name}.yaml")


def _accepted_app_messages(w: World) -> list[tuple[float, str, int]]:
    df = w.trace.to_pandas()
    sub = set(df[df.kind == "client.submit"].msg_id)
    acc = df[(df.kind == "hub.accept") & df.msg_id.isin(sub)]
    return [(t, m, e) for t, m, e in zip(acc.t_ms, acc.msg_id, acc.epoch, strict=True)]


def _delivery_counts(w: World) -> dict[tuple[str, str], int]:
    df = w.trace.to_pandas()
    d = df[df.kind == "client.deliver"]
    return d.groupby(["msg_id", "node"]).size().to_dict()


def _members_expected(w: World, sender_of: dict[str, str]) -> None:
    """Every accepted message reached every current member except its sender, exactly once."""
    counts = _delivery_counts(w)
    members = [u for u, n in sorted(w.clients.items()) if n.core.is_member("mimi://a.example/r/room")]
    assert len(members) == 4
    for _, mid, _ in _accepted_app_messages(w):
        for uri in members:
            if uri == sender_of[mid]:
                continue
            assert counts.get((mid, uri), 0) == 1, (mid, uri, counts.get((mid, uri), 0))


def _senders(w: World) -> dict[str, str]:
    df = w.trace.to_pandas()
    s = df[df.kind == "client.submit"]
    return dict(zip(s.msg_id, s.node, strict=True))


# ---------------------------------------------------------------- basics


def test_quickstart_runs_and_members_agree() -> None:
    res = run(QUICKSTART, out=False, progress=False)
    w = res.world
    assert w is not None
    assert w.disagreements() == []
    m = res.tables["messages"]
    assert len(m) > 10 and m["accepted"].all()
    # Every message reached the other members of its epoch: before Bob's leave
    # (30 s) three other clients, after its commit one (Alice or Cathy).
    before, after = m[m.t_submit < 29_000], m[m.t_submit > 32_000]
    assert len(before) and (before["receivers"] == 3).all()
    assert len(after) and (after["receivers"] == 1).all()
    assert res.summary["metric"].tolist()[0] == "events"


def test_clean_run_delivers_every_message_once_and_members_agree() -> None:
    w = World(scenario()).run(progress=False)
    assert w.disagreements() == []
    assert len(_accepted_app_messages(w)) > 20
    _members_expected(w, _senders(w))


# quickstart in CI's long step (a second fresh process, about 3 s of CPU); chaos, the harder case, by default
@pytest.mark.parametrize("name", [pytest.param("quickstart", marks=pytest.mark.long), "chaos"])
def test_same_seed_same_trace_different_seed_different_trace(tmp_path: Path, name: str) -> None:
    """Byte-identical trace.parquet from this process and from a separate one
    with another PYTHONHASHSEED (chaos: with random crashes, failovers and
    partitions); another seed gives another trace. One subprocess only: its
    start-up costs more than the run."""
    here = os.environ.get("PYTHONHASHSEED")
    other = "12345" if here == "0" else "0"  # unset here means a random hash seed, almost surely not 0

    def args(seed: int, out: Path) -> list[str]:
        return ["run", str(ROOT / "scenarios" / f"{name}.yaml"), "--seed", str(seed), "--out", str(out),
                "--quiet", "--no-progress"]

    def digest(seed: int, out: Path) -> str:
        return hashlib.sha256((out / f"seed-{seed}" / "trace.parquet").read_bytes()).hexdigest()

    subprocess.run([sys.executable, "-m", "mimisim.cli", *args(1, tmp_path / "sub")], check=True,
                   env=dict(os.environ, PYTHONHASHSEED=other), cwd=tmp_path)
    assert main(args(1, tmp_path / "here")) == 0
    assert main(args(2, tmp_path / "seed2")) == 0
    assert digest(1, tmp_path / "sub") == digest(1, tmp_path / "here")
    assert digest(1, tmp_path / "here") != digest(2, tmp_path / "seed2")


def test_results_folder_round_trip(tmp_path: Path) -> None:
    res = run(QUICKSTART, out=tmp_path, progress=False)
    folder = tmp_path / "seed-1"
    assert res.dir == folder
    for name in ("trace.parquet", "manifest.json", "summary.csv", "messages.parquet", "commits.parquet",
                 "deliveries.parquet", "exchanges.parquet", "faults.parquet"):
        assert (folder / name).is_file(), name
    back = mimisim.load(folder)
    assert back.manifest["seed"] == 1 and back.manifest["scenario"] == "quickstart"
    assert len(back.trace) == len(res.trace)
    assert back.messages.equals(res.messages)
    with pytest.raises(FileNotFoundError):
        load(tmp_path)


def test_cli_run_prints_summary_and_bad_scenario_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", str(QUICKSTART), "--out", str(tmp_path), "--no-progress",
                 "--set", "duration=40s"]) == 0
    out = capsys.readouterr().out
    assert "messages submitted" in out and "results:" in out
    bad = tmp_path / "bad.yaml"
    bad.write_text(QUICKSTART.read_text().replace("rate: 0.5/s", "rate: -1/s"))
    assert main(["run", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "bad.yaml:" in err and "workload.messages.rate" in err


# ---------------------------------------------------------------- faults


def test_follower_down_gets_every_notify_after_restart_once() -> None:
    """b.example crashes (durable) for 8 s: the hub retries its notifies until
    201; after the restart b's clients get every message, once, and agree."""
    scn = scenario(extra="faults:\n  schedule:\n    - {kind: crash, node: b.example, at: 6s, duration: 8s}\n")
    w = World(scn).run(progress=False)
    df = w.trace.to_pandas()
    assert (df.kind == "fault.crash").sum() == 1 and (df.kind == "fault.restart").sum() == 1
    retries = df[(df.kind.isin(["http.retry", "http.timeout"])) & (df.peer == "b.example")]
    assert len(retries) > 0  # the hub really had to retry
    assert w.disagreements() == []
    _members_expected(w, _senders(w))
    eff = df[df.kind == "fault.effect"]
    assert eff.status.tolist() == ["bit"]


LOSSY_HUB = """  updates: {rate: 1/s, start: 2s, stop: 40s}
faults:
  schedule:
    - {kind: partition, at: 5s, duration: 7s, groups: [[a.example], [b.example]]}
    - FAULT
"""


def test_volatile_hub_crash_loses_its_outbox_and_followers_resync() -> None:
    """The hub's notifies to b.example pile up behind a partition; the hub then
    crashes with volatile state and loses them (commits included). b's
    clients see later epochs arrive, detect the gap, wait, and resync by
    external commit: they end in agreement with the hub, nothing skipped."""
    extra = LOSSY_HUB.replace("FAULT", "{kind: crash, node: a.example, at: 11s, duration: 100ms, state: volatile}")
    w = World(scenario(duration="60s", stop="40s", extra=extra)).run(progress=False)
    df = w.trace.to_pandas()
    assert (df[df.kind == "fault.crash"].status == "volatile").all()
    gaps = df[df.kind == "client.gap"]
    assert (gaps.status == "stuck").sum() >= 1 and (gaps.status == "resync").sum() >= 1
    # b.example's clients were behind the partition when the outbox was lost.
    assert {"mimi://b.example/d/bob/B1", "mimi://b.example/d/bob/B2"} <= set(gaps[gaps.status == "stuck"].node)
    assert w.disagreements() == []


def test_lagging_failover_with_commits_forks_and_members_recover() -> None:
    extra = LOSSY_HUB.replace("FAULT", "{kind: failover, hub: a.example, at: 11s}")
    w = World(scenario(duration="60s", stop="40s", extra=extra,
                       a_extra=", standby: {replication: lag, lag: {kind: constant, value: 2s}}")).run(progress=False)
    df = w.trace.to_pandas()
    assert (df.kind == "hub.lost").sum() >= 1
    assert w.disagreements() == []


def test_sync_failover_loses_nothing_accepted() -> None:
    scn = scenario(a_extra=", standby: {replication: sync, takeover: 500ms}",
                   extra="faults:\n  schedule:\n    - {kind: failover, hub: a.example, at: 10s}\n")
    w = World(scn).run(progress=False)
    df = w.trace.to_pandas()
    assert (df.kind == "fault.failover").sum() >= 1
    assert (df.kind == "hub.lost").sum() == 0
    assert w.disagreements() == []
    _members_expected(w, _senders(w))


def test_lagging_failover_counts_what_it_loses() -> None:
    scn = scenario(rate="5/s", a_extra=", standby: {replication: lag, lag: {kind: constant, value: 2s}}",
                   extra="faults:\n  schedule:\n    - {kind: failover, hub: a.example, at: 10s}\n")
    w = World(scn).run(progress=False)
    df = w.trace.to_pandas()
    lost = df[df.kind == "hub.lost"]
    # About 2 s of accepted messages at 5/s (plus any commit) were never replicated.
    assert 3 <= len(lost) <= 25
    accepted_before = df[(df.kind == "hub.accept") & (df.t_ms < 10_000) & (df.t_ms >= 8_000)]
    assert set(lost.msg_id) <= set(accepted_before.msg_id)
    summary = mimisim.api.run(scn, out=False, progress=False).summary
    row = summary[summary.metric == "accepted messages lost by failover"].value.item()
    assert int(row) == len(lost)


def test_offline_client_gets_its_messages_when_back() -> None:
    scn = scenario(extra="faults:\n  schedule:\n    - {kind: offline, client: bob/B2, at: 5s, duration: 10s}\n")
    w = World(scn).run(progress=False)
    df = w.trace.to_pandas()
    b2 = "mimi://b.example/d/bob/B2"
    got = df[(df.kind == "client.deliver") & (df.node == b2)]
    sent_while_off = df[(df.kind == "client.submit") & (df.t_ms > 5_500) & (df.t_ms < 14_000)
                        & (df.node != b2)]
    assert len(sent_while_off) > 5
    late = got[got.msg_id.isin(sent_while_off.msg_id)]
    assert len(late) == len(sent_while_off)
    assert (late.t_ms >= 15_000).all()  # held at the provider until the client came back
    assert w.disagreements() == []


def test_partition_heals_and_everyone_catches_up() -> None:
    scn = scenario(loss="2%", extra="faults:\n  schedule:\n    - {kind: partition, at: 5s, duration: 6s, "
                                   "groups: [[a.example], [c.example]]}\n")
    w = World(scn).run(progress=False)
    df = w.trace.to_pandas()
    assert (df[(df.kind == "net.drop")].reason == "partition").any()
    assert w.disagreements() == []
    _members_expected(w, _senders(w))


def test_clubhouse_script_reproduces_the_draft_flow() -> None:
    res = run(ROOT / "scenarios" / "clubhouse.yaml", out=False, progress=False)
    w = res.world
    assert w is not None
    assert w.disagreements() == []
    room = "mimi://a.example/r/clubhouse"
    hub = w.providers["a.example"].core.rooms[room]
    assert sorted(hub.participants()) == ["mimi://a.example/u/alice", "mimi://c.example/u/cathy"]
    members = sorted(u for u, n in w.clients.items() if n.core.is_member(room))
    assert members == ["mimi://a.example/d/alice/ClientA1", "mimi://c.example/d/cathy/ClientC1",
                       "mimi://c.example/d/cathy/ClientC2", "mimi://c.example/d/cathy/ClientC3"]
    d = res.tables["deliveries"]
    assert sorted(d.receiver) == ["mimi://a.example/d/alice/ClientA1", "mimi://b.example/d/bob/ClientB1",
                                  "mimi://b.example/d/bob/ClientB2", "mimi://c.example/d/cathy/ClientC2"]


def test_removed_member_still_gets_a_message_accepted_before_its_removal() -> None:
    """chaos-membership seed 6: Bob's message (epoch 3) is held up by a
    partition; the commit removing Dave overtakes it at d.example. Dave was a
    member of epoch 3, so he must still receive it, once."""
    from mimisim.analysis.invariants import check_trace

    res = run(ROOT / "scenarios" / "chaos-membership.yaml", seed=6, out=False, progress=False)
    assert check_trace(res.trace)["no_loss"] == []
    d = res.trace
    late = d[(d.kind == "client.deliver") & (d.node == "mimi://d.example/d/dave/D1")
             & (d.msg_id.str.startswith("6ab8004d"))]
    assert len(late) == 1
