"""The liveness invariants (``mimisim.analysis.liveness``) on hand-made
traces: each one's violation, and the story that passes."""

from __future__ import annotations

from mimisim import events as E
from mimisim.analysis.invariants import INVARIANTS, Bounds, Context, check_trace
from mimisim.sim.trace import Trace

ROOM = "mimi://a.example/r/room"
A1 = "mimi://a.example/d/alice/A1"
B1, B2 = "mimi://b.example/d/bob/B1", "mimi://b.example/d/bob/B2"
BOB = "mimi://b.example/u/bob"
NEW = ["joins_complete", "members_converged", "resync_explained", "exchanges_end", "no_internal_error",
       "room_progress", "operations_taken_up", "leave_completes"]


def ctx() -> Context:
    return Context(Bounds(settle_ms=1_000.0), {}, {BOB: [B1, B2], "mimi://a.example/u/alice": [A1]})


def commit(tr: Trace, t: float, mid: str, a: int, changes: tuple[E.RoleChange, ...] = ()) -> None:
    tr.record(t, E.HubAccept(room=ROOM, epoch=a, msg_id=mid, status="success", message="commit", committer=A1,
                             epoch_from=a, epoch_to=a + 1, added=0, removed=0, tree_fp="aaaaaaaa",
                             plist_fp="bbbbbbbb", role=3, role_changes=changes), "a.example")


def epoch(tr: Trace, t: float, client: str, e: int, mid: str, status: str = "") -> None:
    tr.record(t, E.ClientEpoch(room=ROOM, epoch=e, msg_id=mid, status=status,
                               via="welcome" if status == "joined" else "commit", committer=A1,
                               tree_fp="aaaaaaaa", plist_fp="bbbbbbbb", auth_fp="cccccccc"), client)


def verdicts(tr: Trace) -> dict[str, list[str]]:
    res = check_trace(tr.to_pandas(), ctx(), only=NEW)
    return {k: [v.message for v in vs] for k, vs in res.items() if vs}


def story(welcome_both: bool = True) -> Trace:
    tr = Trace()
    commit(tr, 10, "c0", 0)
    epoch(tr, 20, A1, 1, "c0")
    commit(tr, 100, "c1", 1, (E.RoleChange(BOB, 0, 2),))
    epoch(tr, 110, A1, 2, "c1")
    epoch(tr, 120, B1, 2, "w1", "joined")
    if welcome_both:
        epoch(tr, 130, B2, 2, "w1", "joined")
    return tr


def test_registered() -> None:
    assert all(name in INVARIANTS for name in NEW)


def test_a_clean_story_passes() -> None:
    tr = story()
    tr.record(200, "client.submit", B1, room=ROOM, epoch=2, msg_id="m1")
    tr.record(210, "hub.accept", "a.example", room=ROOM, epoch=2, msg_id="m1", status="accepted")
    tr.record(300, "http.request", "a.example", peer="b.example", req_id=1)
    tr.record(320, "http.response", "a.example", peer="b.example", req_id=1, status="Created")
    tr.record(30_000, "run.end")
    assert verdicts(tr) == {}


def test_a_client_without_its_welcome_is_seen() -> None:
    tr = story(welcome_both=False)
    tr.record(30_000, "run.end")
    v = verdicts(tr)
    assert any(B2 in m and "never joined" in m for m in v["joins_complete"])
    assert any(B2 in m for m in v["members_converged"])


def test_a_join_too_close_to_the_end_is_not_judged() -> None:
    tr = story(welcome_both=False)
    tr.record(5_000, "run.end")
    assert "joins_complete" not in verdicts(tr)


def test_a_resync_needs_a_cause() -> None:
    tr = story()
    tr.record(12_000, "client.gap", B1, room=ROOM, epoch=2, status="stuck")
    tr.record(30_000, "run.end")
    assert "resynced" in verdicts(tr)["resync_explained"][0]
    tr = story()  # the same after a volatile crash: explained
    tr.record(1_000, "fault.crash", "b.example", status="volatile")
    tr.record(2_000, "fault.restart", "b.example")
    tr.record(12_000, "client.gap", B1, room=ROOM, epoch=2, status="stuck")
    tr.record(30_000, "run.end")
    assert "resync_explained" not in verdicts(tr)
    tr = story()  # a durable crash is no excuse
    tr.record(1_000, "fault.crash", "b.example", status="durable")
    tr.record(2_000, "fault.restart", "b.example")
    tr.record(12_000, "client.gap", B1, room=ROOM, epoch=2, status="stuck")
    tr.record(30_000, "run.end")
    assert "resync_explained" in verdicts(tr)


def test_an_unanswered_request_and_an_internal_error() -> None:
    tr = story()
    tr.record(300, "http.request", "a.example", peer="b.example", req_id=7)
    tr.record(400, "client.drop", B1, room=ROOM, status="internalError", detail="KeyError: x")
    tr.record(30_000, "run.end")
    v = verdicts(tr)
    assert "request 7" in v["exchanges_end"][0]
    assert "internal error" in v["no_internal_error"][0]


def test_a_stalled_room() -> None:
    tr = story()
    for i, t in enumerate((1_000, 2_000, 3_000)):
        tr.record(t, "client.submit", B1, room=ROOM, epoch=3, msg_id=f"m{i}")
        tr.record(t + 50, "hub.reject", "a.example", room=ROOM, epoch=3, msg_id=f"m{i}", status="wrongEpoch")
    tr.record(30_000, "run.end")
    v = verdicts(tr)["room_progress"]
    assert len(v) == 1 and "accepted nothing" in v[0] and "wrongEpoch" in v[0]


def test_a_blocked_operation_queue() -> None:
    tr = story()
    tr.record(1_000, "workload.action", B1, room=ROOM, detail="send")
    tr.record(1_001, "client.send", B1, peer="b.example", room=ROOM, req_id=3)
    tr.record(2_000, "workload.action", B1, room=ROOM, detail="send")  # never taken up
    tr.record(2_500, "workload.action", A1, room=ROOM, status="skipped", detail="add_user nobody")
    tr.record(30_000, "run.end")
    v = verdicts(tr)["operations_taken_up"]
    assert len(v) == 1 and B1 in v[0] and "2000 ms" in v[0]


def test_a_leave_given_up_leaves_the_user_in_the_room() -> None:
    tr = story()
    tr.record(1_000, E.WorkloadAction(room=ROOM, action="leave"), B1)
    tr.record(1_500, E.ClientFail(room=ROOM, status="wrongEpoch", operation="leave", reason="gave up"), B1)
    tr.record(12_000, "run.end")  # too early for the bound, but the client gave up: judged
    v = verdicts(tr)["leave_completes"]
    assert len(v) == 1 and "still in it" in v[0] and "wrongEpoch" in v[0]
    tr = story()  # the same leave, committed: fine
    tr.record(1_000, E.WorkloadAction(room=ROOM, action="leave"), B1)
    commit(tr, 1_200, "c2", 2, (E.RoleChange(BOB, 2, 0),))
    tr.record(30_000, "run.end")
    assert "leave_completes" not in verdicts(tr)


def test_a_member_on_a_forked_branch_is_not_converged() -> None:
    tr = story()
    tr.record(140, E.ClientEpoch(room=ROOM, epoch=2, msg_id="lost", via="commit", committer=A1, tree_fp="dddddddd",
                                 plist_fp="bbbbbbbb", auth_fp="cccccccc"), B2)
    tr.record(30_000, "run.end")
    v = verdicts(tr)["members_converged"]
    assert len(v) == 1 and B2 in v[0] and "forked branch" in v[0]


def _op(tr: Trace, t: float, client: str, op: int, done: float | None = None, status: str = "done") -> None:
    tr.record(t, E.ClientOpStart(room=ROOM, operation="send", op_id=op), client)
    if done is not None:
        tr.record(done, E.ClientOpEnd(room=ROOM, operation="send", op_id=op, status=status,
                                      failure="notAllowed" if status == "failed" else None), client)


def test_every_operation_ends() -> None:
    def ops(*specs: tuple[float, int, float | None]) -> list[str]:
        tr = story()
        for t, op, done in specs:
            _op(tr, t, B1, op, done)
        tr.record(60_000, "run.end")
        return check_trace(tr.to_pandas(), ctx(), only=["operations_end"])["operations_end"]

    assert ops((200, 1, 300), (210, 2, 900)) == []
    bad = ops((200, 1, None), (210, 2, None))  # the second waits behind the first: one violation
    assert len(bad) == 1 and "#1" in bad[0].message and "never ended" in bad[0].message
    late = ops((200, 1, 40_000))
    assert len(late) == 1 and "ended only" in late[0].message
    assert ops((200, 1, 300), (210, 2, 5_000), (220, 3, 14_000)) == []  # #3 could start only at 5 s
    assert ops((50_000, 1, None)) == []  # too close to the end to judge
