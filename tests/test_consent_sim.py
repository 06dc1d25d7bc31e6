"""Explicit consent in the simulator (``protocol.consent``): an add waits
for the target's grant, a refusal fails the add (reported), the check judges
that nobody is added without consent, and the schema names a bad key."""

from __future__ import annotations

import pytest

from mimisim.check import run_checked
from mimisim.sim.scenario import ScenarioError, load_scenario_text
from tests import mutations as M

TEXT = """
name: consent
seed: 1
duration: 26s
providers: {{a.example: {{}}, b.example: {{}}, c.example: {{}}}}
users:
  alice: {{provider: a.example, clients: [A1]}}
  bob: {{provider: b.example, clients: [B1]}}
  cathy: {{provider: c.example, clients: [C1]}}
rooms:
  room: {{hub: a.example, participants: {{alice: group_admin}}}}
network: {{default: {{latency: {{kind: constant, value: 20ms}}}}}}
workload:
  messages: {{rate: 1/s, start: 1s, stop: 20s}}
  script:
    - {{at: 1s, client: A1, action: add_user, room: room, user: bob}}
    - {{at: 1s, client: A1, action: add_user, room: room, user: cathy}}
protocol:
  consent: {{mode: {mode}, answer_delay: 1500ms, refuse: {refuse}}}
"""


def scenario(mode: str = "explicit", refuse: str = "[cathy]") -> object:
    return load_scenario_text(TEXT.format(mode=mode, refuse=refuse), "consent.yaml")


@pytest.fixture(scope="module")
def explicit() -> tuple[object, dict]:
    world, res = run_checked(scenario(), 1)  # type: ignore[arg-type]
    return world.trace.to_pandas(), res


def test_an_add_waits_for_the_grant_and_a_refusal_fails_reported(explicit: tuple) -> None:
    t, res = explicit
    assert not any(res.values()), {k: [v.message for v in vs] for k, vs in res.items() if vs}
    c = t[t["kind"] == "client.consent"]
    asked = c[c["operation"] == "request"]
    assert set(asked["target_user"]) == {"mimi://b.example/u/bob", "mimi://c.example/u/cathy"}
    grant = c[(c["operation"] == "grant") & (c["node"] == "mimi://b.example/d/bob/B1")]
    assert len(grant) >= 1 and set(grant["peer"]) == {"mimi://a.example/u/alice"}
    added = t[(t["kind"] == "hub.accept") & (t["message"] == "commit") & (t["added"] > 0)]
    assert len(added) == 1 and float(added["t_ms"].iloc[0]) > float(grant["t_ms"].iloc[0])
    assert (c["operation"] == "revoke").any()  # cathy refuses
    fail = t[(t["kind"] == "client.fail") & (t["operation"] == "add_user")]
    assert len(fail) == 1 and fail["status"].iloc[0].startswith("noConsent")
    assert "cathy" in fail["peer"].iloc[0]
    # Every operation of the user ends, named by its id: the refused add as failed, with its reason.
    ops, ends = t[t["kind"] == "client.op"], t[t["kind"] == "client.done"]
    assert set(zip(ops["node"], ops["op_id"], strict=True)) == set(zip(ends["node"], ends["op_id"], strict=True))
    failed = ends[ends["status"] == "failed"]
    assert list(failed["operation"]) == ["add_user"] and failed["failure"].iloc[0].startswith("noConsent")


def test_open_consent_asks_nobody() -> None:
    world, res = run_checked(scenario("open"), 1)  # type: ignore[arg-type]
    t = world.trace.to_pandas()
    assert not any(res.values())
    assert not (t["kind"] == "client.consent").any()
    assert int(((t["kind"] == "hub.accept") & (t["message"] == "commit") & (t["added"] > 0)).sum()) >= 1


def test_a_key_store_that_ignores_consent_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    M.ignore_consent(monkeypatch)
    _, res = run_checked(scenario(), 1)  # type: ignore[arg-type]
    assert any("cathy never granted" in v.message for v in res["consent_respected"])


def test_refusing_an_unknown_user_is_one_error() -> None:
    with pytest.raises(ScenarioError) as e:
        scenario(refuse="[zoe]")
    assert "protocol.consent.refuse" in str(e.value) and "zoe" in str(e.value)
