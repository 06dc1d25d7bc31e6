"""Proposal hygiene (issue 13, item 6): non-default proposals only when every
member supports them, with a fallback for SelfRemove; a commit leaves out
pending proposals invalid for the group (RFC 9420 s.12.2) and says why."""

from __future__ import annotations

import pytest

from mimisim.mls.crypto import DeterministicRandom, get_suite
from mimisim.mls.errors import ProposalError
from mimisim.mls.group import Group, ProposalReceived, StagedCommit
from mimisim.mls.keypackage import create_key_package, default_capabilities
from mimisim.mls.structs import (
    AppDataUpdate,
    AppDataUpdateOperation,
    Capabilities,
    Credential,
    Extension,
    ExtensionType,
    GroupContextExtensions,
    Proposal,
    ProposalType,
    RequiredCapabilities,
)

SUITE = get_suite(1)


def _member(name: str, rng: DeterministicRandom, proposals: list[int] | None = None) -> tuple:
    priv, _pub = SUITE.generate_signature_key_pair(rng.fork(f"sig {name}"))
    cred = Credential.basic(name.encode())
    caps = default_capabilities(SUITE)
    if proposals is not None:
        caps = Capabilities(caps.versions, caps.cipher_suites, caps.extensions, proposals, caps.credentials)
    return create_key_package(SUITE, cred, priv, rng.fork(f"kp {name}"), capabilities=caps)


def _group(without_self_remove: bool) -> tuple[Group, Group, Group]:
    """Alice, Bob and Carol; Carol lists no SelfRemove/AppDataUpdate if asked."""
    rng = DeterministicRandom(b"hygiene")
    kpa, pa = _member("alice", rng)
    kpb, pb = _member("bob", rng)
    kpc, pc = _member("carol", rng, [] if without_self_remove else None)
    alice = Group.create(SUITE, b"g", kpa, pa, rng.fork("a"))
    alice.propose_add(kpb)
    alice.propose_add(kpc)
    out = alice.commit()
    alice.merge_pending_commit()
    assert out.welcome is not None
    bob = Group.join(out.welcome, kpb, pb, rng.fork("b"))
    carol = Group.join(out.welcome, kpc, pc, rng.fork("c"))
    return alice, bob, carol


def test_self_remove_only_when_every_member_supports_it() -> None:
    alice, bob, carol = _group(without_self_remove=True)
    assert not alice.supports_proposal(ProposalType.self_remove)
    assert alice.supports_proposal(ProposalType.remove)
    with pytest.raises(ProposalError, match="self_remove"):
        alice.propose_self_remove()
    upd = Proposal.of(AppDataUpdate(0x0022, AppDataUpdateOperation.remove, None))
    with pytest.raises(ProposalError, match="app_data_update"):
        alice.propose(upd)
    # The fallback: a Remove of our own leaf, which Carol can decode and Bob commits.
    msg = alice.propose_leave()
    assert msg.body.content.proposal.proposal_type == ProposalType.remove
    assert msg.body.content.proposal.body.removed == alice.state.own_leaf
    for g in (bob, carol):
        assert isinstance(g.process(msg), ProposalReceived)
    out = bob.commit()
    bob.merge_pending_commit()
    staged = carol.process(out.message)
    assert isinstance(staged, StagedCommit)
    carol.merge(staged)
    assert carol.epoch == bob.epoch and alice.state.own_leaf not in [i for i, _ in bob.members()]


def test_self_remove_when_all_support_it() -> None:
    alice, bob, carol = _group(without_self_remove=False)
    assert alice.supports_proposal(ProposalType.self_remove)
    msg = alice.propose_leave()
    assert msg.body.content.proposal.proposal_type == ProposalType.self_remove
    assert isinstance(bob.process(msg), ProposalReceived)
    out = bob.commit()
    assert out.left_out == []


def test_commit_leaves_out_an_invalid_pending_proposal() -> None:
    """Bob proposes to add Dave, whose KeyPackage lacks SelfRemove; Alice
    then commits a GroupContextExtensions that requires SelfRemove. Dave's
    Add is now invalid (RFC 9420 s.12.2): the commit leaves it out, says why,
    and the rest of the commit (the new requirement) goes through."""
    alice, bob, carol = _group(without_self_remove=False)
    rng = DeterministicRandom(b"dave")
    kpd, _ = _member("dave", rng, [])
    add = bob.propose_add(kpd)
    got = alice.process(add)
    assert isinstance(got, ProposalReceived)
    req = RequiredCapabilities([], [int(ProposalType.self_remove)], [])
    exts = [*alice.state.context.extensions, Extension(ExtensionType.required_capabilities, req.encode())]
    gce = Proposal.of(GroupContextExtensions(exts))
    out = alice.commit([gce])
    assert [ref for ref, _ in out.left_out] == [got.ref]
    assert "Add" in out.left_out[0][1]
    assert out.staged.outcome.added == []
    alice.merge_pending_commit()
    staged = bob.process(out.message)
    assert isinstance(staged, StagedCommit)
    # Without include_pending nothing is left out; a by-value proposal of the
    # caller's own that is invalid still raises.
    with pytest.raises(ProposalError):
        alice.commit([Proposal.of(AppDataUpdate(0x7F00, AppDataUpdateOperation.remove, None))])
