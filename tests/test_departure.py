"""Delivery to leaving and removed users (issue 13, item 3): the
``no_delivery_after_removal`` invariant and ``protocol.leave_delivery``."""

from __future__ import annotations

from functools import cache

import pandas as pd
import pytest

from mimisim.analysis.departure import no_delivery_after_removal, received_after_leave
from mimisim.analysis.invariants import Context, Digest, check_trace
from mimisim.sim.scenario import load_scenario_text
from mimisim.sim.world import World

# Bob (B1, B2 on b.example, beside Dave's D1) leaves at 3 s; the room's
# members commit his leave after 2-2.5 s. Cathy sends three messages while
# the leave is pending and two after it was committed.
SCENARIO = """
name: departure
seed: 3
duration: 10s
providers: {a.example: {}, b.example: {}, c.example: {}}
users:
  alice: {provider: a.example, clients: [A1]}
  bob: {provider: b.example, clients: [B1, B2]}
  dave: {provider: b.example, clients: [D1]}
  cathy: {provider: c.example, clients: [C1]}
rooms:
  lobby:
    hub: a.example
    participants: {alice: group_admin, bob: ordinary_user, cathy: ordinary_user, dave: ordinary_user}
    policy:
      pending_proposals: {strategy: random_delay, min_delay: 2s, max_delay: 2.5s}
network:
  default: {latency: 20ms}
  access: {default: {latency: 5ms}}
workload:
  script:
    - {at: 3s, client: B1, action: leave, room: lobby}
    - {at: 3.5s, client: C1, action: send, room: lobby, text: one}
    - {at: 4s, client: C1, action: send, room: lobby, text: two}
    - {at: 4.5s, client: C1, action: send, room: lobby, text: three}
    - {at: 8s, client: C1, action: send, room: lobby, text: four}
    - {at: 8.5s, client: C1, action: send, room: lobby, text: five}
"""

BOB = "mimi://b.example/u/bob"
LOBBY = "mimi://a.example/r/lobby"


@cache
def run(mode: str) -> pd.DataFrame:
    scn = load_scenario_text(SCENARIO, overrides=[f"protocol.leave_delivery={mode}"])
    return World(scn).run(progress=False).trace.to_pandas()


def _read_by(trace: pd.DataFrame, client: str) -> int:
    d = trace[(trace["kind"] == "client.deliver") & (trace["node"] == client)]
    return len(d)


@pytest.mark.parametrize("mode", ["commit", "proposal"])
def test_leave_delivery(mode: str) -> None:
    t = run(mode)
    prop = t[(t["kind"] == "client.propose") & (t["operation"] == "leave")]
    removal = t[(t["kind"] == "hub.accept") & (t["message"] == "commit") & (t["removed"].fillna(0) > 0)]
    assert len(prop) and len(removal)
    asked, removed = float(prop["t_ms"].iloc[0]), float(removal["t_ms"].iloc[0])
    n = received_after_leave(t, [(LOBBY, BOB, asked, removed)])[0]
    b1, b2 = _read_by(t, "mimi://b.example/d/bob/B1"), _read_by(t, "mimi://b.example/d/bob/B2")
    # Dave shares Bob's provider and must get all five either way.
    assert _read_by(t, "mimi://b.example/d/dave/D1") == 5
    if mode == "commit":
        assert (n, b1, b2) == (6, 3, 3)  # three messages, each read by both of Bob's clients
    else:
        assert (n, b1, b2) == (0, 0, 0)
    ctx = Context(leave_delivery=mode)
    bad = {k: v for k, v in check_trace(t, ctx).items() if v}
    assert not bad
    if mode == "proposal":
        # no_loss owes a leaving user nothing only under "proposal".
        assert check_trace(t, Context(leave_delivery="commit"), only=["no_loss"])["no_loss"]


def test_no_delivery_after_removal_catches_a_late_read() -> None:
    t = run("commit")
    d = Digest.of(t)
    assert no_delivery_after_removal(d, Context()) == []
    late = t[(t["kind"] == "hub.accept") & (t["message"] == "application")].iloc[-1]
    row = t[t["kind"] == "client.deliver"].iloc[[-1]].copy()
    row["node"], row["msg_id"] = "mimi://b.example/d/bob/B2", late["msg_id"]
    row["seq"], row["t_ms"] = int(t["seq"].max()) + 1, float(t["t_ms"].max())
    bad = no_delivery_after_removal(Digest.of(pd.concat([t, row], ignore_index=True)), Context())
    assert len(bad) == 1 and "B2" in bad[0].message and "bob" in bad[0].message


def test_app_epoch_window_reaches_the_hub() -> None:
    """protocol.app_epoch_window is the window of every hub's rooms (issue 13, item 4)."""
    scn = load_scenario_text(SCENARIO, overrides=["protocol.app_epoch_window=2", "duration=1s", "workload.script=[]"])
    w = World(scn).run(progress=False)
    rooms = [r for p in w.providers.values() for r in p.core.rooms.values()]
    assert rooms and all(r.max_past_epochs == 2 for r in rooms)
    from mimisim.mimi.provider import ProviderConfig, ProviderCore
    from mimisim.sim.rng import protocol_random

    with pytest.raises(ValueError, match="app_epoch_window"):
        ProviderCore.new("a.example", protocol_random(1, "x"), ProviderConfig(app_epoch_window=-1))
