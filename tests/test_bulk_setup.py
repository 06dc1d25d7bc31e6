"""Bulk room setup (issue 14): the creator adds every initial participant in
one commit, through the protocol; the setup's cost is reported apart."""

from __future__ import annotations

import pytest

from mimisim.api import run
from mimisim.sim.scenario import Scenario, load_scenario_text
from mimisim.sim.world import BULK_SETUP_ABOVE, World, setup_mode

TEXT = """
name: bulk
seed: 3
duration: 12s
providers:
  a.example: {{}}
  b.example: {{}}
  c.example: {{}}
users:
  alice: {{provider: a.example, clients: [A1]}}
  bob: {{provider: b.example, clients: [B1, B2]}}
  cathy: {{provider: c.example, clients: [C1]}}
  dan: {{provider: c.example, clients: [D1]}}
  erin: {{provider: b.example, clients: {{E1: {{joined: false}}}}}}
rooms:
  room:
    hub: a.example
    participants: {{alice: group_admin, bob: ordinary_user, cathy: ordinary_user, dan: ordinary_user{erin}}}
    setup: {setup}
network:
  default: {{latency: {{kind: constant, value: 30ms}}, jitter: 5ms}}
workload:
  messages: {{rate: 2/s, start: 4s}}
"""
ROOM = "mimi://a.example/r/room"


def scenario(setup: str, erin: bool = False) -> Scenario:
    return load_scenario_text(TEXT.format(setup=setup, erin=", erin: ordinary_user" if erin else ""), "bulk.yaml")


def test_bulk_setup_adds_everyone_in_one_commit_and_reports_setup_apart() -> None:
    res = run(scenario("bulk"), out=False, progress=False)
    w, t = res.world, res.trace
    assert w is not None and w.disagreements() == []
    commits = t[t.kind == "client.commit"]
    setup = commits[commits.operation == "add_users"]
    assert len(setup) == 1 and int(setup.added.iloc[0]) == 4  # bob's two clients, cathy, dan
    members = [u for u, n in w.clients.items() if n.core.is_member(ROOM)]
    assert len(members) == 5
    joined = t[(t.kind == "client.epoch") & (t.via == "welcome")]
    assert w.setup_end_ms == pytest.approx(float(joined.t_ms.max()))
    assert w.setup_wall_s is not None and w.setup_cpu_s is not None
    s = dict(zip(res.summary.metric, res.summary.value, strict=True))
    assert s["initial rooms built after"] == pytest.approx(w.setup_end_ms / 1000)
    assert s["setup: commits built"] == 1
    assert s["setup: events"] + s["after setup: events"] == len(t)
    assert res.manifest["setup"]["rooms_built_ms"] == w.setup_end_ms
    # the workload ran after the setup: every message reached the 4 others
    assert len(res.messages) > 10 and (res.messages.receivers == 4).all()


def test_incremental_setup_commits_once_per_user_and_takes_longer() -> None:
    bulk = World(scenario("bulk"), 3).run(progress=False)
    inc = run(scenario("incremental"), out=False, progress=False)
    assert inc.world is not None and inc.world.disagreements() == []
    c = inc.trace[inc.trace.kind == "client.commit"]
    assert (c.operation == "add_user").sum() == 3
    assert bulk.setup_end_ms is not None and inc.world.setup_end_ms is not None
    assert bulk.setup_end_ms < inc.world.setup_end_ms


def test_bulk_setup_leaves_out_a_user_without_key_packages() -> None:
    w = World(scenario("bulk", erin=True), 3).run(progress=False)
    t = w.trace.to_pandas()
    fail = t[t.kind == "client.fail"]
    assert len(fail) == 1 and fail.peer.iloc[0] == "mimi://b.example/u/erin" and fail.operation.iloc[0] == "add_users"
    assert sum(n.core.is_member(ROOM) for n in w.clients.values()) == 5 and w.disagreements() == []
    assert w.setup_end_ms is not None  # erin's client was never meant to join at the start


def test_auto_setup_is_bulk_above_the_threshold() -> None:
    def room(n: int, setup: str = "auto") -> object:
        users = {f"u{i}": ("group_admin" if i == 0 else "ordinary_user") for i in range(n)}
        return scenario("incremental").rooms["room"].model_copy(update={"participants": users, "setup": setup})

    assert setup_mode(room(BULK_SETUP_ABOVE)) == "incremental"  # type: ignore[arg-type]
    assert setup_mode(room(BULK_SETUP_ABOVE + 1)) == "bulk"  # type: ignore[arg-type]
    assert setup_mode(room(BULK_SETUP_ABOVE + 1, "incremental")) == "incremental"  # type: ignore[arg-type]
    assert setup_mode(room(3, "bulk")) == "bulk"  # type: ignore[arg-type]
