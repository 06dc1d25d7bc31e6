"""Interoperability with an independent MLS implementation (issue 13, item 8).

The other side is mls-rs (AWS Labs' Rust implementation of RFC 9420) through
its UniFFI Python bindings, as published on PyPI by the
``agentvault-mls-rs-uniffi`` wheel (a fork of ``awslabs/mls-rs`` that adds
``Message.to_bytes``/``from_bytes``, without which no bytes could be handed
across). Both sides use cipher suite 1 (MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519),
basic credentials, PublicMessage handshakes, and exchange nothing but the
encoded MLSMessages: a bug on either side in framing, the key schedule,
TreeKEM, the tree hash, the transcript hashes or the Welcome shows up as a
refused message or a wrong plaintext.

Covered: create and join (both directions: an mls-rs member joins our group
by our Welcome, and one of ours joins by an mls-rs Welcome), path commits
both ways, proposals by reference both ways (an Add proposed by mls-rs and
committed by us; a Remove proposed by us and committed by mls-rs),
application messages both ways, and removal.

The package is optional: without it the test is skipped with a line that
says how to install it (``pip install agentvault-mls-rs-uniffi``, part of the
``test`` extra).
"""

from __future__ import annotations

from typing import Any

import pytest

R: Any = pytest.importorskip(
    "mls_rs_uniffi",
    reason="mls-rs bindings absent: pip install agentvault-mls-rs-uniffi (the test extra) to run the interop test",
)

from mimisim.mls.crypto import DeterministicRandom, get_suite  # noqa: E402
from mimisim.mls.group import ApplicationMessage, Group, ProposalReceived, StagedCommit  # noqa: E402
from mimisim.mls.keypackage import create_key_package  # noqa: E402
from mimisim.mls.structs import Credential, MLSMessage, ProposalType  # noqa: E402

SUITE = get_suite(1)


def _ours(name: str, rng: DeterministicRandom) -> tuple:
    priv, _ = SUITE.generate_signature_key_pair(rng.fork(f"sig {name}"))
    return create_key_package(SUITE, Credential.basic(name.encode()), priv, rng.fork(f"kp {name}"))


def _rs_client(name: str) -> Any:
    kp = R.generate_signature_keypair(R.CipherSuite.CURVE25519_AES128)
    return R.Client(name.encode(), kp, R.client_config_default())


def to_rs(msg: MLSMessage) -> Any:
    return R.Message.from_bytes(msg.encode())


def from_rs(msg: Any) -> MLSMessage:
    return MLSMessage.decode(msg.to_bytes())


def rs_commit(g: Any) -> Any:
    """An mls-rs path commit (with its pending proposals), applied on the
    mls-rs side by processing its own message (the bindings' way to merge)."""
    out = g.commit()
    assert g.process_incoming_message(out.commit_message).is_commit()
    return out.commit_message


def _apply(g: Group, msg: MLSMessage) -> StagedCommit:
    staged = g.process(msg)
    assert isinstance(staged, StagedCommit), staged
    g.merge(staged)
    return staged


def test_interop_with_mls_rs() -> None:
    rng = DeterministicRandom(b"interop")
    akp, apriv = _ours("alice", rng)
    alice = Group.create(SUITE, b"interop-group", akp, apriv, rng.fork("alice"))

    # --- an mls-rs member joins our group by our Welcome (add by value, path commit)
    bob_c = _rs_client("bob")
    bkp = from_rs(bob_c.generate_key_package_message())
    alice.propose_add(bkp.body)
    out = alice.commit()
    alice.merge_pending_commit()
    assert out.welcome is not None
    bob = bob_c.join_group(None, to_rs(out.welcome)).group
    assert alice.epoch == 1

    # --- application messages both ways
    got = bob.process_incoming_message(to_rs(alice.protect(b"hello bob")))
    assert got.is_application_message() and got.data == b"hello bob"
    back = alice.process(from_rs(bob.encrypt_application_message(b"hello alice")))
    assert isinstance(back, ApplicationMessage) and back.data == b"hello alice"

    # --- path commits both ways
    staged = _apply(alice, from_rs(rs_commit(bob)))
    assert staged.state is not None and alice.epoch == 2
    out = alice.commit()
    alice.merge_pending_commit()
    got = bob.process_incoming_message(to_rs(out.message))
    assert got.is_commit()
    assert alice.epoch == 3
    back = alice.process(from_rs(bob.encrypt_application_message(b"epoch 3")))
    assert isinstance(back, ApplicationMessage) and back.data == b"epoch 3"

    # --- a proposal by reference from mls-rs, committed by us: Bob proposes
    # to add Carol (ours); Alice commits it; Carol joins by Alice's Welcome.
    ckp, cpriv = _ours("carol", rng)
    props = bob.propose_add_members([to_rs(MLSMessage.wrap(ckp))])
    assert len(props) == 1
    received = alice.process(from_rs(props[0]))
    assert isinstance(received, ProposalReceived) and received.proposal.proposal_type == ProposalType.add
    out = alice.commit()
    alice.merge_pending_commit()
    assert [r.reference for r in out.message.body.content.commit.proposals] == [received.ref]
    assert bob.process_incoming_message(to_rs(out.message)).is_commit()
    assert out.welcome is not None
    carol = Group.join(out.welcome, ckp, cpriv, rng.fork("carol"))
    assert carol.epoch == alice.epoch == 4
    got = bob.process_incoming_message(to_rs(carol.protect(b"hi from carol")))
    assert got.is_application_message() and got.data == b"hi from carol"
    carol_id = got.sender

    # --- a proposal by reference from us, committed by mls-rs: Alice
    # proposes to remove Carol; Bob commits it (a path commit).
    prop = alice.propose_remove(carol.state.own_leaf)
    carol.process(prop)
    assert bob.process_incoming_message(to_rs(prop)).is_received_proposal()
    commit = from_rs(rs_commit(bob))
    assert [r.reference for r in commit.body.content.commit.proposals if r.reference is not None]
    _apply(alice, commit)
    removed = carol.process(commit)
    assert isinstance(removed, StagedCommit) and removed.removed_self
    assert alice.epoch == 5 and len(list(alice.members())) == 2
    assert carol_id is not None

    # --- an mls-rs group that one of ours joins, then removal of the mls-rs creator's peer
    dave_kp, dave_priv = _ours("dave", rng)
    erin_c = _rs_client("erin")
    erin = erin_c.create_group(b"rs-group")
    out_rs = erin.add_members([to_rs(MLSMessage.wrap(dave_kp))])
    assert erin.process_incoming_message(out_rs.commit_message).is_commit()
    assert out_rs.welcome_message is not None
    dave = Group.join(from_rs(out_rs.welcome_message), dave_kp, dave_priv, rng.fork("dave"),
                      ratchet_tree=None if out_rs.ratchet_tree is None else _tree(out_rs))
    back = dave.process(from_rs(erin.encrypt_application_message(b"welcome dave")))
    assert isinstance(back, ApplicationMessage) and back.data == b"welcome dave"
    got = erin.process_incoming_message(to_rs(dave.protect(b"thanks erin")))
    assert got.is_application_message() and got.data == b"thanks erin"

    # --- removal: Alice removes Bob (the mls-rs member); Bob learns it.
    out = alice.commit([_remove(alice, bob_leaf=1)])
    alice.merge_pending_commit()
    got = bob.process_incoming_message(to_rs(out.message))
    assert got.is_commit() and got.effect.is_removed()
    assert [i for i, _ in alice.members()] == [0]


def _remove(g: Group, bob_leaf: int) -> Any:
    from mimisim.mls.structs import Proposal, Remove

    assert bob_leaf in [i for i, _ in g.members()]
    return Proposal.of(Remove(bob_leaf))


def _tree(out: Any) -> Any:
    """The mls-rs commit's exported ratchet tree as our node list."""
    from mimisim.mls.structs import RatchetTreeExt

    return RatchetTreeExt.decode(out.ratchet_tree.to_bytes()).nodes
