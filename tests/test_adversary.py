"""Adversaries as scenario actors (``mimisim.sim.adversary``): every attack of
scenarios/adversaries.yaml is tried and refused, nothing is accepted, the
honest members still satisfy every invariant; the schema of the
``adversaries:`` section; and a broken core (signatures not checked) shows
up as accepted attacks."""

from __future__ import annotations

from pathlib import Path

import pytest

from mimisim.analysis.invariants import Context, check_trace
from mimisim.api import run
from mimisim.check import check_seed
from mimisim.mls.crypto import CipherSuite
from mimisim.sim.scenario import ScenarioError, load_scenario, load_scenario_text

ROOT = Path(__file__).resolve().parents[1]
ADV = ROOT / "scenarios" / "adversaries.yaml"
ALL_ATTACKS = {"replay_notify", "spoof_from", "tamper", "withhold_fanout", "non_member_submit", "forged_signature",
               "after_removal", "reuse_key_package", "stale_epoch", "forge_sender", "forge_leaf", "replay_message",
               "old_epoch_state", "state_compromise", "forward_secrecy", "read_after_removal", "malformed"}


def _outcomes(trace: object) -> dict[str, dict[str, int]]:
    import pandas as pd

    assert isinstance(trace, pd.DataFrame)
    a = trace[trace["kind"].str.startswith("adversary.")]
    attack = a[a["kind"] == "adversary.attempt"].set_index("req_id")["status"]
    out: dict[str, dict[str, int]] = {}
    for r in a[a["kind"] != "adversary.attempt"].itertuples(index=False):
        d = out.setdefault(attack[r.req_id], {})
        d[r.kind] = d.get(r.kind, 0) + 1
    return out


def test_every_attack_is_tried_and_refused_and_members_are_unharmed() -> None:
    res = run(ADV, out=False, progress=False)
    t = res.trace
    out = _outcomes(t)
    assert set(out) == ALL_ATTACKS
    # Every kind is tried and refused at least once, none is ever accepted.
    for attack, d in out.items():
        assert d.get("adversary.rejected", 0) >= 1 and not d.get("adversary.accepted"), (attack, d)
    n_attempts = int((t["kind"] == "adversary.attempt").sum())
    assert n_attempts > 80
    assert int((t["kind"] == "adversary.accepted").sum()) == 0
    # A clean network answers all; only a captured state can be left unjudged
    # (captured while a commit was on its way to the victim: the copy loses
    # track, which proves nothing either way).
    unanswered = t[t["kind"] == "adversary.unanswered"]
    assert set(unanswered["attack"]) <= {"state_compromise"}
    assert set(unanswered["status"]) <= {"lostTrack:gap", "lostTrack:commit", "notUpdated"}
    n_rejected = int((t["kind"] == "adversary.rejected").sum())
    assert n_rejected + len(unanswered) == n_attempts
    # The refusals are the protocol's: who may send, signatures, epochs,
    # identities; the members' for what the hub cannot read.
    codes = set(t[t["kind"] == "adversary.rejected"]["status"])
    assert {"notAllowed", "wrongEpoch", "Forbidden", "Bad Request", "detected", "epochTooOld",
            "refusedByMembers", "lockedOut"} <= codes
    # Both forms of spoof_from run, the /notify one included (issue 11: it never did).
    spoofs = t[(t["kind"] == "adversary.attempt") & (t["attack"] == "spoof_from")]["detail"]
    assert spoofs.str.contains("/notify to").any() and spoofs.str.contains("/update to").any()
    # The captured state reads the room across other members' commits until
    # the victim's own update locks it out.
    pcs = t[(t["kind"] == "adversary.rejected") & (t["attack"] == "state_compromise")]["detail"]
    spans = pcs.str.extract(r"captured at epoch (\d+); read (\d+) .* locked out at epoch (\d+)").astype(int)
    assert ((spans[2] > spans[0]) & (spans[1] > 0)).any()
    summary = dict(zip(res.summary["metric"], res.summary["value"], strict=True))
    assert summary["attacks accepted (must be 0)"] == 0
    assert (summary["attacks tried"], summary["attacks rejected"], summary["attacks unanswered"]) == (
        n_attempts, n_rejected, len(unanswered))
    for attack in ALL_ATTACKS:
        assert summary[f"attack {attack}: tried"] >= summary[f"attack {attack}: refused"] >= 1
        assert summary[f"attack {attack}: accepted"] == 0
    verdicts = check_trace(t, Context.from_scenario(load_scenario(ADV)))
    assert not any(verdicts.values()), {k: [v.message for v in vs] for k, vs in verdicts.items() if vs}
    assert res.world is not None and res.world.disagreements() == []


def test_check_counts_attacks() -> None:
    r = check_seed((str(ADV), (), 2))
    assert r.ok and r.adversary["attempt"] > 50 and r.adversary.get("accepted", 0) == 0
    # and by attack kind, for the matrix's figures
    kinds = {k.split(":", 1)[1] for k in r.adversary if k.startswith("attempt:")}
    assert "malformed" in kinds and sum(r.adversary[f"attempt:{k}"] for k in kinds) == r.adversary["attempt"]


@pytest.mark.slow
def test_a_state_captured_with_a_commit_pending_is_not_a_post_compromise_read() -> None:
    """The 1,000-seed matrix (adversaries seed 11): C1's state was captured
    while its own update commit was pending; the copy holds that commit's
    path secrets, so reading after that update is no broken post-compromise
    security, but the probe counted it as one (accepted). The pending
    commit's leaf key counts as captured."""
    r = check_seed((str(ADV), (), 11))
    assert r.ok and r.adversary["attempt:state_compromise"] > 0 and r.adversary.get("accepted", 0) == 0


def test_a_core_that_skips_signature_checks_accepts_forgeries(monkeypatch: pytest.MonkeyPatch) -> None:
    """Faults that bite, for the adversaries: with signature verification
    switched off, forged and tampered commits get through, and the trace
    says so (``adversary.accepted``)."""
    monkeypatch.setattr(CipherSuite, "verify_with_label", lambda self, pub, label, content, sig: True)
    res = run(ADV, out=False, progress=False, overrides=["adversaries.malformed=[]"])
    accepted = _outcomes(res.trace)
    bad = {a for a, d in accepted.items() if d.get("adversary.accepted")}
    assert bad & {"forged_signature", "tamper"}


def test_a_client_that_skips_the_sender_check_delivers_forgeries(monkeypatch: pytest.MonkeyPatch) -> None:
    """Faults that bite: a receiver that does not compare the content's
    sender with the MLS sender's credential delivers forge_sender's messages,
    and the trace says so (the members accepted what the hub could not read)."""
    from mimisim.mimi.client import inbound

    monkeypatch.setattr(inbound, "sender_matches", lambda content, user, room: True)
    res = run(ADV, out=False, progress=False, overrides=["adversaries.malformed=[]", "adversaries.followers=[]"])
    out = _outcomes(res.trace)
    assert out["forge_sender"].get("adversary.accepted", 0) >= 1


@pytest.mark.parametrize("mutation, attack", [
    ("skip_application_signature", "forge_leaf"),
    ("keep_past_epoch_secrets", "forward_secrecy"),
    ("remove_without_path", "read_after_removal"),
])
def test_a_broken_core_lets_the_probe_through(mutation: str, attack: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Faults that bite (issue 11's escapes and one more): the unbroken core
    refuses every attack (``test_every_attack_is_tried_and_refused...``);
    with the mutation of ``tests/mutations.py`` its probe is accepted.

    - no signature check on application messages: a member encrypts as
      another member's leaf and signs with its own key (``forge_leaf``);
    - past epochs' secrets never deleted: the state captured at epoch E
      still opens messages of epochs older than E - ``past_epoch_keys``
      (``forward_secrecy``);
    - a removing commit without an UpdatePath: the removed member follows
      the commit and reads the room on (``read_after_removal``)."""
    from tests import mutations

    getattr(mutations, mutation)(monkeypatch)
    only = ["adversaries.malformed=[]", "adversaries.followers=[]"]
    broken = _outcomes(run(ADV, out=False, progress=False, overrides=only).trace)[attack]
    assert broken.get("adversary.accepted", 0) >= 1, broken


BASE = ADV.read_text()


@pytest.mark.parametrize("edit, message", [
    (("rate: 2/s, start: 4s", "rate: 2/s, colour: red, start: 4s"), "colour"),
    (("{provider: d.example, rate: 2/s", "{provider: z.example, rate: 2/s"), "z.example"),
    (("{provider: c.example, room: lobby", "{provider: a.example, room: lobby"), "is the hub of"),
    (("attacks: [non_member_submit]", "attacks: [teleport]"), "teleport"),
    (("{client: E1, room: lobby", "{client: Z9, room: lobby"), "Z9"),
])
def test_schema_errors_name_the_key(edit: tuple[str, str], message: str) -> None:
    assert edit[0] in BASE
    with pytest.raises(ScenarioError) as e:
        load_scenario_text(BASE.replace(edit[0], edit[1]), "adv.yaml")
    assert message in str(e.value) and "adv.yaml:" in str(e.value) and "adversaries" in str(e.value)


def test_check_fails_when_an_attack_is_accepted(monkeypatch: pytest.MonkeyPatch,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    from mimisim.cli import main

    monkeypatch.setattr(CipherSuite, "verify_with_label", lambda self, pub, label, content, sig: True)
    # --determinism 0: the fresh process of the determinism re-run would not carry the patch
    # (tests/test_check_determinism.py covers that re-run)
    code = main(["check", str(ADV), "--seeds", "1", "--no-progress", "--set", "adversaries.malformed=[]",
                 "--determinism", "0"])
    out = capsys.readouterr().out
    assert code == 1
    assert "attack(s) were accepted; first in seed 1" in out and "replay: mimisim run" in out
