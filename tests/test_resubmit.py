"""A message resubmitted after a provider crash keeps its identity (issue
11): c.example crashes just after the hub accepted Cathy's message, her
client sees the connection lost and sends again. It sends the same bytes, so
the hub's idempotence answers with its first answer and fans nothing out
twice; a client that rebuilt the message (a new ciphertext, a new msg id,
the old behaviour) had it accepted and shown twice, which ``no_duplicate``
now sees through the content's MIMI message id."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from mimisim.analysis.invariants import Context, check_trace
from mimisim.mimi.client.content import content_id, message_id
from mimisim.mimi.client.engine import OperationEngine
from mimisim.sim.scenario import load_scenario
from mimisim.sim.world import World

ROOT = Path(__file__).resolve().parents[1]
CRASH = ["protocol.notify.timeout=300ms", "protocol.requests.timeout=300ms",
         "faults.schedule=[{kind: crash, node: c.example, at: 6030ms, duration: 400ms, state: durable}]"]


def _run() -> tuple[pd.DataFrame, Context]:
    scn = load_scenario(ROOT / "scenarios" / "clubhouse.yaml", overrides=CRASH)
    return World(scn).run(progress=False).trace.to_pandas(), Context.from_scenario(scn)


def test_a_resubmitted_message_keeps_its_id_and_is_shown_once() -> None:
    df, ctx = _run()
    sub = df[df.kind == "client.submit"]
    assert list(sub.attempt) == [1, 2]  # sent again after the crash...
    assert sub.msg_id.nunique() == 1 and sub.content_id.nunique() == 1  # ...as the same message
    acc = df[(df.kind == "hub.accept") & df.msg_id.isin(sub.msg_id)]
    assert list(acc.duplicate.fillna(False)) == [False, True]  # the hub recognised the retry
    got = df[df.kind == "client.deliver"]
    assert got.groupby("node").size().to_dict() == {
        "mimi://a.example/d/alice/ClientA1": 1, "mimi://b.example/d/bob/ClientB1": 1,
        "mimi://b.example/d/bob/ClientB2": 1, "mimi://c.example/d/cathy/ClientC2": 1}
    assert set(got.content_id) == set(sub.content_id)
    assert {k: v for k, v in check_trace(df, ctx).items() if v} == {}


def test_the_check_sees_a_resubmission_rebuilt_as_a_new_message(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(OperationEngine, "resend", lambda self, r, op, step: False)  # the old client
    df, ctx = _run()
    sub = df[df.kind == "client.submit"]
    assert sub.msg_id.nunique() == 2 and sub.content_id.nunique() == 1
    acc = df[(df.kind == "hub.accept") & df.msg_id.isin(sub.msg_id)]
    assert not acc.duplicate.fillna(False).any()  # accepted twice, under two ids
    dup = check_trace(df, ctx)["no_duplicate"]
    assert len(dup) == 4 and all("delivered the content" in v.message for v in dup)


def test_message_id_follows_the_content_draft() -> None:
    """draft-ietf-mimi-content s.3.3: 0x01 || SHA-256(len16 sender || sender
    || len16 room || room || content || salt)[0..30], written out by hand."""
    import hashlib

    s, r, c, salt = "mimi://a.example/u/alice", "mimi://a.example/r/x", b"\x87content", bytes(range(16))
    want = b"\x01" + hashlib.sha256(b"\x00\x18" + s.encode() + b"\x00\x14" + r.encode() + c + salt).digest()[:31]
    assert message_id(s, r, c, salt) == want and len(want) == 32
    assert content_id(want) == want[1:9].hex()
    assert message_id(s, r, c, bytes(16)) != want
