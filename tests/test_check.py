"""The invariant checkers on hand-made traces (each one's violation and
window), ``mimisim check`` end to end (table, exit status, first failing
seed, replay command, shrunk schedule replayed by ``mimisim run --faults``),
the regression seeds it found, and (slow) the 1000-seed chaos check."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest

from mimisim import events as E
from mimisim.analysis.invariants import INVARIANTS, Bounds, Context, Digest, check_trace
from mimisim.check import run_checked, shrink
from mimisim.cli import main
from mimisim.mimi import hub as hub_mod
from mimisim.sim.faults import FaultPlan
from mimisim.sim.scenario import load_scenario, load_scenario_text
from mimisim.sim.trace import Trace

ROOT = Path(__file__).resolve().parents[1]
CHAOS = ROOT / "scenarios" / "chaos.yaml"
ROOM = "mimi://a.example/r/room"
A1, B1 = "mimi://a.example/d/alice/A1", "mimi://b.example/d/bob/B1"


def commit(tr: Trace, t: float, mid: str, a: int, tree: str = "aaaaaaaa", by: str = A1,
           changes: tuple[tuple[str, int, int], ...] = (), role: int = 3) -> None:
    tr.record(t, E.HubAccept(room=ROOM, epoch=a, msg_id=mid, status="success", message="commit", committer=by,
                             epoch_from=a, epoch_to=a + 1, added=0, removed=0, tree_fp=tree, plist_fp="bbbbbbbb",
                             role=role, role_changes=tuple(E.RoleChange(*c) for c in changes)), "a.example")


def epoch(tr: Trace, t: float, client: str, e: int, mid: str, tree: str = "aaaaaaaa", auth: str = "cccccccc",
          status: str = "") -> None:
    tr.record(t, E.ClientEpoch(room=ROOM, epoch=e, msg_id=mid, status=status, via="commit", committer=A1,
                               tree_fp=tree, plist_fp="bbbbbbbb", auth_fp=auth), client)


def application(tr: Trace, t: float, mid: str) -> None:
    tr.record(t, E.HubAccept(room=ROOM, epoch=1, msg_id=mid, status="accepted", message="application", franked=True,
                             sender="mimi://a.example/u/alice", role=3), "a.example")


def verdicts(tr: Trace, ctx: Context | None = None) -> dict[str, list[str]]:
    res = check_trace(tr.to_pandas(), ctx or Context(Bounds(settle_ms=1_000.0)))
    return {k: [v.message for v in vs] for k, vs in res.items() if vs}


def test_a_clean_story_passes() -> None:
    tr = Trace()
    commit(tr, 10, "c1", 0)
    epoch(tr, 20, A1, 1, "c1")
    epoch(tr, 21, B1, 1, "c1")
    tr.record(30, E.ClientSubmit(room=ROOM, epoch=1, msg_id="m1", attempt=1, content_bytes=10), A1)
    application(tr, 31, "m1")
    tr.record(40, E.ClientDeliver(room=ROOM, epoch=1, msg_id="m1", status="frank:ok", sender=A1, frank="ok"), B1)
    tr.record(5_000, "run.end")
    assert verdicts(tr) == {}


def test_each_checker_names_its_violation_and_rows() -> None:
    tr = Trace()
    commit(tr, 10, "c1", 0)
    commit(tr, 11, "c2", 0)  # a second commit for epoch 0
    epoch(tr, 20, A1, 1, "c1")
    epoch(tr, 21, B1, 1, "c2", tree="dddddddd")  # processed the wrong one, with another tree
    epoch(tr, 22, A1, 3, "c9")  # skipped to epoch 3
    tr.record(30, E.ClientSubmit(room=ROOM, epoch=1, msg_id="m1", attempt=1, content_bytes=10), A1)
    application(tr, 31, "m1")
    c1 = "mimi://c.example/d/cathy/C1"
    tr.record(40, E.ClientDeliver(room=ROOM, epoch=1, msg_id="m1", status="frank:badSignature", sender=A1,
                                  frank="badSignature"), c1)
    tr.record(41, E.ClientDeliver(room=ROOM, epoch=1, msg_id="m1", status="frank:ok", sender=A1, frank="ok"), c1)
    tr.record(5_000, "run.end")
    v = verdicts(tr)
    assert "two commits accepted for epoch 0" in v["hub_total_order"][0]
    assert any("not the hub's commit" in m for m in v["member_order"])
    assert any("skipped from epoch 1 to 3" in m for m in v["member_order"])
    assert "tree hash" in v["agreement"][0]
    assert "never reached mimi://b.example/d/bob/B1" in v["no_loss"][0]
    assert "delivered m1 twice" in v["no_duplicate"][0]
    assert "badSignature" in v["franks_verify"][0]
    res = check_trace(tr.to_pandas(), Context(Bounds(settle_ms=1_000.0)))
    assert res["hub_total_order"][0].rows == (0, 1)
    window = res["hub_total_order"][0].window(tr.to_pandas())
    assert list(window["msg_id"]) == ["c1", "c2"]


def test_leave_bound_and_policy() -> None:
    tr = Trace()
    commit(tr, 10, "c1", 0, changes=(("mimi://b.example/u/bob", 0, 2),))
    tr.record(100, E.ClientPropose(room=ROOM, epoch=1, msg_id="p1", operation="leave", proposals=2), B1)
    tr.record(110, E.HubAccept(room=ROOM, epoch=1, msg_id="p1", status="success", message="proposal",
                               proposal_types=("self_remove",)), "a.example")
    # Bob (ordinary user, role 2) makes alice (3) a banned user: not his to do.
    commit(tr, 200, "c2", 1, by=B1, role=2, changes=(("mimi://a.example/u/alice", 3, 1),))
    tr.record(20_000, "run.end")
    from mimisim.sim.world import room_policy

    scn = load_scenario(ROOT / "scenarios" / "quickstart.yaml")
    pol = room_policy(next(iter(scn.rooms.values())).policy)
    ctx = Context(Bounds(settle_ms=1_000.0, leave_base_ms={ROOM: 2_000.0}), {ROOM: pol})
    v = verdicts(tr, ctx)
    assert "leave from" in v["leave_committed"][0] and "never committed" in v["leave_committed"][0]
    assert v["policy"] == [f"{ROOM}: commit c2 by mimi://b.example/u/bob (role 2) moved "
                           "mimi://a.example/u/alice from role 3 to 1, which that role may not do"]
    # Committed late: over the bound.
    commit(tr, 15_000, "c3", 2, changes=(("mimi://b.example/u/bob", 2, 0),))
    v = verdicts(tr, ctx)
    assert "to commit (bound 3000 ms" in v["leave_committed"][0]


def test_bounds_come_from_the_scenario() -> None:
    b = Bounds.from_scenario(load_scenario(CHAOS))
    assert b.settle_ms == pytest.approx(2 * 1000 + 1600 + 2000)
    assert b.backoff_cap_ms == 2000 and b.end_ms == 40_000
    d = Digest.of(Trace().to_pandas(), b)
    assert d.quiet_after(5.0) == 5.0


def test_chaos_seed_477_no_longer_loses_messages() -> None:
    """Regression: a notify delayed by a crashed follower arrived three epochs
    late and its members, keeping two past epochs, dropped it as too old."""
    _, res = run_checked(load_scenario(CHAOS), 477)
    assert not any(res.values()), {k: [v.message for v in vs] for k, vs in res.items() if vs}


def test_leave_latency_seed_10_commits_every_leave() -> None:
    """Regression (workload): the two last users of the room both left; a
    leaving client may only propose, so nobody could commit the leaves."""
    _, res = run_checked(load_scenario(ROOT / "scenarios" / "leave-latency.yaml"), 10)
    assert not res["leave_committed"], [v.message for v in res["leave_committed"]]


QUICK = """
name: quick
seed: 1
duration: 12s
providers: {a.example: {}, b.example: {}, c.example: {}}
users:
  alice: {provider: a.example, clients: [A1]}
  bob: {provider: b.example, clients: [B1]}
  cathy: {provider: c.example, clients: [C1]}
rooms:
  room: {hub: a.example, participants: {alice: group_admin, bob: ordinary_user, cathy: ordinary_user}}
network: {default: {latency: {kind: constant, value: 20ms}}}
workload: {messages: {rate: 2/s, start: 1s, stop: 8s}}
faults:
  schedule:
    - {kind: crash, node: b.example, at: 2s, duration: 500ms}
    - {kind: partition, at: 4s, duration: 500ms, groups: [[a.example], [b.example, c.example]]}
    - {kind: crash, node: c.example, at: 6s, duration: 300ms}
"""


def test_cli_check_passes_and_fails_with_replay_and_shrunk_schedule(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    f = tmp_path / "quick.yaml"
    f.write_text(QUICK.replace("dir: results", ""))
    assert main(["check", str(f), "--seeds", "2", "--no-progress", "--json", str(tmp_path / "r.json")]) == 0
    out = capsys.readouterr().out
    for name in INVARIANTS:
        assert f"{name}" in out and "2/2" in out
    assert "all invariants hold" in out and "6 faults injected" in out
    assert json.loads((tmp_path / "r.json").read_text())["passed"]["no_loss"] == 2
    # Break the hub's franking (in this process: --workers 1) and check again.
    from mimisim.mimi import franking as F

    def bad(self: object, ad: bytes, sender: str, ts: int) -> object:
        tag = F.frank_aad_of(ad)
        return None if tag is None else F.server_frank(self.suite, self.hub_franking_key, tag, sender,  # type: ignore[attr-defined]
                                                      "mimi://x/r/y", ts)

    monkeypatch.setattr(hub_mod.HubRoom, "_frank", bad)
    # --determinism 0: the re-run's fresh process would not carry the patch (the first check above re-ran)
    code = main(["check", str(f), "--seeds", "2", "--no-progress", "--shrink-dir", str(tmp_path / "s"),
                 "--determinism", "0"])
    out = capsys.readouterr().out
    assert code == 1
    assert re.search(r"franks_verify +0/2   FAILED in 2", out)
    assert "first failing seed: 1" in out and "[franks_verify]" in out
    assert f"replay: mimisim run {f} --seed 1" in out
    shrunk = tmp_path / "s" / "seed-1-faults.json"
    assert "shrunk the fault schedule from 3 to 0 fault(s)" in out and shrunk.is_file()
    assert json.loads(shrunk.read_text()) == []
    assert main(["run", str(f), "--seed", "1", "--faults", str(shrunk), "--out", str(tmp_path / "o"),
                 "--quiet", "--no-progress"]) == 0
    replay = list((tmp_path / "o").glob("seed-1-*"))  # an explicit schedule: its own folder
    assert len(replay) == 1
    manifest = json.loads((replay[0] / "manifest.json").read_text())
    assert manifest["faults"] == [] and manifest["faults_given"]


def test_shrink_finds_the_one_fault_that_matters() -> None:
    scn = load_scenario_text(QUICK, "quick.yaml")
    from mimisim.sim.faults import expand

    plan = expand(scn, 1)
    culprit = plan.faults[1].id

    def fails(p: FaultPlan) -> bool:
        return any(f.id == culprit for f in p.faults)

    small, runs = shrink(scn, 1, "no_loss", plan, fails=fails)
    assert [f.id for f in small.faults] == [culprit] and runs <= 6


@pytest.mark.slow
def test_chaos_1000_seeds_pass_within_15_minutes() -> None:
    t0 = time.perf_counter()
    assert main(["check", str(CHAOS), "--seeds", "1000", "--workers", "2", "--no-progress"]) == 0
    assert time.perf_counter() - t0 < 15 * 60
