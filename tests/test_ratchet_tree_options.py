"""Ratchet-tree options (issue 13 item 7; draft-mahy-mls-ratchet-tree-options):
the Welcome with the tree inline or kept at the hub (the joiner fetches it
with /groupInfo), and a commit's GroupInfo partial, full, or full with the
tree. The clubhouse flows run under each option and every body is decoded."""

from __future__ import annotations

from pathlib import Path

import pytest

from mimisim.mimi import wire as W
from mimisim.mimi.endpoints import Endpoint
from mimisim.mimi.transport import MimiRequest
from mimisim.mls.structs import ExtensionType, RatchetTreeRepresentation
from mimisim.sim.scenario import load_scenario
from mimisim.sim.world import World

ROOT = Path(__file__).resolve().parent.parent


def _run(*overrides: str) -> tuple[World, list[MimiRequest]]:
    scn = load_scenario(ROOT / "scenarios" / "clubhouse.yaml", list(overrides))
    w = World(scn)
    seen: list[MimiRequest] = []
    for node in w.providers.values():
        node.request_tap = lambda req, peer: seen.append(req)
    w.run(progress=False)
    return w, seen


def _bundles(seen: list[MimiRequest]) -> list[W.HandshakeBundle]:
    out = []
    for req in seen:
        if req.endpoint == Endpoint.UPDATE:
            b = W.UpdateRequest.decode(req.body).bundle
            if b.kind == W.MessageKind.commit:
                out.append(b)
    return out


def _welcomes(seen: list[MimiRequest]) -> list[W.FanoutMessage]:
    return [fm for req in seen if req.endpoint == Endpoint.NOTIFY
            for fm in W.decode_fanout_messages(req.body) if fm.kind == W.MessageKind.welcome]


def _joined(w: World) -> set[str]:
    df = w.trace.to_pandas()
    return set(df[(df.kind == "client.epoch") & (df.status == "joined")].node)


def test_welcome_tree_at_the_hub_joiners_fetch_it_and_join_as_with_the_tree_inline() -> None:
    w0, seen0 = _run()
    w1, seen1 = _run("protocol.ratchet_tree.welcome=hub")
    joined = _joined(w0)
    assert joined and _joined(w1) == joined
    # Inline: every Welcome carries the full tree, and so does each commit that has one.
    assert all(fm.ratchet_tree_option.representation == RatchetTreeRepresentation.full for fm in _welcomes(seen0))
    assert all(b.ratchet_tree_option.representation == RatchetTreeRepresentation.full
               for b in _bundles(seen0) if b.welcome is not None)
    # Hub: neither does; each welcomed client asks the hub once.
    wel1 = _welcomes(seen1)
    assert wel1 and all(fm.ratchet_tree_option.representation == RatchetTreeRepresentation.distribution_service
                        and not fm.ratchet_tree_option.ratchet_tree for fm in wel1)
    assert all(b.ratchet_tree_option.representation == RatchetTreeRepresentation.distribution_service
               for b in _bundles(seen1))
    df0, df1 = w0.trace.to_pandas(), w1.trace.to_pandas()
    gi0 = ((df0.kind == "hub.accept") & (df0.message == "group_info")).sum()
    gi1 = ((df1.kind == "hub.accept") & (df1.message == "group_info")).sum()
    welcomed = ((df1.kind == "client.epoch") & (df1.status == "joined") & (df1.detail.str.contains("Welcome"))).sum()
    assert welcomed > 0 and gi1 - gi0 == welcomed
    # The committer's upload shrinks by the tree.
    up0 = [len(b.encode()) for b in _bundles(seen0) if b.welcome is not None]
    up1 = [len(b.encode()) for b in _bundles(seen1) if b.welcome is not None]
    assert len(up0) == len(up1) and all(b < a for a, b in zip(up0, up1, strict=True))


def test_group_info_full_with_the_tree_is_accepted_and_serves_external_joins() -> None:
    w0, seen0 = _run()
    w2, seen2 = _run("protocol.ratchet_tree.group_info=full_with_tree")
    assert _joined(w2) == _joined(w0)
    b0, b2 = _bundles(seen0), _bundles(seen2)
    assert all(b.group_info_option.representation == W.GroupInfoRepresentation.partial for b in b0)
    member_commits = [b for b in b2 if b.proposal_or_commit.body.content.sender.sender_type.name == "member"]
    assert member_commits
    for b in member_commits:
        gio = b.group_info_option
        assert gio.representation == W.GroupInfoRepresentation.full
        assert gio.group_info.extension(ExtensionType.ratchet_tree) is not None
    df2 = w2.trace.to_pandas()
    assert not (df2.kind == "hub.reject").any()
    assert ((df2.kind == "client.commit") & (df2.external == True)).any()  # noqa: E712 (the external join ran)
    w3, seen3 = _run("protocol.ratchet_tree.group_info=full")
    assert _joined(w3) == _joined(w0)
    assert all(b.group_info_option.group_info.extension(ExtensionType.ratchet_tree) is None
               for b in _bundles(seen3) if b.group_info_option.representation == W.GroupInfoRepresentation.full)


def test_ratchet_tree_options_are_checked_by_the_schema() -> None:
    from mimisim.sim.scenario import ScenarioError

    with pytest.raises(ScenarioError, match="welcome"):
        load_scenario(ROOT / "scenarios" / "clubhouse.yaml", ["protocol.ratchet_tree.welcome=sometimes"])


@pytest.mark.slow
def test_joiners_get_their_welcomes_tree_after_the_room_moved_on() -> None:
    """The fanout scenario's setup adds users back to back, so a joiner's
    /groupInfo reaches the hub after later commits: the hub must answer with
    the tree of the Welcome's epoch (it once answered the current one, and
    the joiners dropped their Welcomes: tree hash mismatch)."""
    scn = load_scenario(ROOT / "scenarios" / "fanout.yaml", ["duration=8s", "workload.messages.start=7s",
                        "workload.updates.start=7s", "protocol.ratchet_tree.welcome=hub"])
    df = World(scn).run(progress=False).trace.to_pandas()
    drops = df[df.kind == "client.drop"]
    assert not drops.detail.str.contains("tree hash").any()
    joined = df[(df.kind == "client.epoch") & (df.status == "joined")]
    fetched = df[(df.kind == "hub.accept") & (df.message == "group_info")]
    assert len(joined) > 50 and len(joined) == len(fetched)
