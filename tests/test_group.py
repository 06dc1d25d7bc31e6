"""Group-level behaviour: the life of a group among many members and a hub
observer, staged processing, races, replays, bad input."""

from __future__ import annotations

import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mimisim.codec import DecodeError
from mimisim.mls.crypto import DeterministicRandom, get_suite
from mimisim.mls.errors import MLSError, ProposalError, WrongEpochError
from mimisim.mls.group import ApplicationMessage, Group, GroupConfig, ProposalReceived, StagedCommit
from mimisim.mls.keypackage import create_key_package
from mimisim.mls.observer import GroupObserver, partial_group_info
from mimisim.mls.structs import (
    Add,
    AppDataDictionary,
    AppDataUpdate,
    AppDataUpdateOperation,
    ComponentData,
    Credential,
    Extension,
    ExtensionType,
    MLSMessage,
    Proposal,
    Remove,
    WireFormat,
)
from tests.hypothesis_profiles import examples
from tests.mls_harness import World, run_random


def _pair(suite_id: int = 1, config: GroupConfig | None = None) -> tuple[Group, Group, object]:
    suite = get_suite(suite_id)
    rng = DeterministicRandom(7, f"pair-{suite_id}")
    sa, _ = suite.generate_signature_key_pair(rng)
    sb, _ = suite.generate_signature_key_pair(rng)
    kpa, pa = create_key_package(suite, Credential.basic(b"alice"), sa, rng)
    kpb, pb = create_key_package(suite, Credential.basic(b"bob"), sb, rng)
    alice = Group.create(suite, b"g", kpa, pa, rng.fork("a"), config=config)
    out = alice.commit([Proposal.of(Add(kpb))])
    alice.merge_pending_commit()
    assert out.welcome is not None
    bob = Group.join(out.welcome, kpb, pb, rng.fork("b"), config=config)
    return alice, bob, out


@pytest.mark.parametrize("suite_id", range(1, 8))
def test_two_members_every_suite(suite_id: int) -> None:
    alice, bob, _ = _pair(suite_id)
    assert alice.epoch_authenticator == bob.epoch_authenticator
    # A path commit from Bob, processed by Alice.
    out = bob.commit()
    staged = alice.process(out.message)
    assert isinstance(staged, StagedCommit)
    assert alice.epoch == 1  # staged: nothing changed yet
    alice.merge(staged)
    bob.merge_pending_commit()
    assert alice.epoch == bob.epoch == 2
    assert alice.epoch_authenticator == bob.epoch_authenticator
    # Application messages both ways.
    m = alice.process(bob.protect(b"hi alice"))
    assert isinstance(m, ApplicationMessage) and m.data == b"hi alice" and m.sender == bob.own_leaf
    m = bob.process(alice.protect(b"hi bob", b"aad"))
    assert isinstance(m, ApplicationMessage) and m.data == b"hi bob" and m.authenticated_data == b"aad"


def test_private_handshakes_and_padding() -> None:
    cfg = GroupConfig(handshake_wire_format=WireFormat.private_message, padding_block=64)
    alice, bob, _ = _pair(1, cfg)
    prop = alice.propose_update()
    assert prop.wire_format == WireFormat.private_message
    bob.process(prop)
    out = bob.commit()
    assert out.message.wire_format == WireFormat.private_message
    alice.merge(alice.process(out.message))  # type: ignore[arg-type]
    bob.merge_pending_commit()
    assert alice.epoch_authenticator == bob.epoch_authenticator
    assert len(alice.protect(b"x").encode()) == len(alice.protect(b"y" * 20).encode())


def test_application_replay_rejected() -> None:
    alice, bob, _ = _pair()
    msg = alice.protect(b"once")
    assert bob.process(msg).data == b"once"  # type: ignore[union-attr]
    with pytest.raises(MLSError):
        bob.process(msg)


def test_commit_replay_and_stale_epoch_rejected() -> None:
    alice, bob, _ = _pair()
    out = alice.commit()
    alice.merge_pending_commit()
    bob.merge(bob.process(out.message))  # type: ignore[arg-type]
    with pytest.raises(WrongEpochError) as e:
        bob.process(out.message)
    assert e.value.current_epoch == 2 and e.value.message_epoch == 1


def test_late_application_message_from_previous_epoch() -> None:
    alice, bob, _ = _pair()
    late = alice.protect(b"sent before the commit")
    out = alice.commit()
    alice.merge_pending_commit()
    bob.merge(bob.process(out.message))  # type: ignore[arg-type]
    assert bob.process(late).data == b"sent before the commit"  # type: ignore[union-attr]


def test_rejected_commit_changes_nothing() -> None:
    alice, bob, _ = _pair()
    before = (bob.epoch, bob.tree_hash, bob.epoch_authenticator, dict(bob.state.proposals))
    out = alice.commit()
    raw = bytearray(out.message.encode())
    raw[-5] ^= 0x40  # inside the confirmation tag / membership tag
    with pytest.raises((MLSError, DecodeError)):
        bob.process(bytes(raw))
    assert (bob.epoch, bob.tree_hash, bob.epoch_authenticator, dict(bob.state.proposals)) == before
    # The genuine one still works afterwards.
    bob.merge(bob.process(out.message))  # type: ignore[arg-type]
    alice.merge_pending_commit()
    assert alice.epoch_authenticator == bob.epoch_authenticator


def test_race_loser_recovers() -> None:
    w = World.create(3)
    r = random.Random(3)
    w.op_add(r, 3)
    w.op_race(r)
    w.check_agreement()
    assert w.epochs >= 3


def test_external_join_and_resync() -> None:
    w = World.create(4)
    r = random.Random(4)
    w.op_add(r, 2)
    w.op_external_join(r)
    w.op_resync(r)
    w.op_message(r)
    assert len(w.members()) == 4


def test_hub_external_remove() -> None:
    w = World.create(5)
    r = random.Random(5)
    w.op_add(r, 4)
    w.op_hub_remove(r)
    assert len(w.members()) == 4


def test_invalid_proposal_lists() -> None:
    alice, bob, _ = _pair()
    with pytest.raises(ProposalError):
        alice.commit([Proposal.of(Remove(alice.own_leaf))])  # cannot remove yourself
    with pytest.raises(ProposalError):
        alice.commit([Proposal.of(Remove(5))])  # blank / out of range
    with pytest.raises(ProposalError):
        alice.commit([Proposal.of(Remove(bob.own_leaf)), Proposal.of(Remove(bob.own_leaf))])
    assert alice.pending is None and alice.epoch == 1


def test_app_data_update_changes_group_context() -> None:
    alice, bob, _ = _pair()
    upd = Proposal.of(AppDataUpdate(0x8001, AppDataUpdateOperation.update, b"participants v1"))
    out = alice.commit([upd], path=False)
    bob.merge(bob.process(out.message))  # type: ignore[arg-type]
    alice.merge_pending_commit()
    raw = alice.context.extension(ExtensionType.app_data_dictionary)
    assert raw is not None
    assert AppDataDictionary.decode(raw).component_data == [ComponentData(0x8001, b"participants v1")]
    assert alice.context == bob.context
    # Removing state that is not there is invalid.
    with pytest.raises(ProposalError):
        alice.commit([Proposal.of(AppDataUpdate(0x8002, AppDataUpdateOperation.remove, None))])


def test_observer_rebuilds_group_info_for_joiners() -> None:
    alice, bob, out = _pair()
    obs = GroupObserver.from_group_info(alice.group_info(with_tree=True))
    out2 = alice.commit()
    staged = obs.stage_commit(out2.message)
    obs.merge(staged, partial_group_info(out2.group_info))
    alice.merge_pending_commit()
    gi = obs.group_info()
    assert gi.encode() == out2.group_info.encode()


def test_group_extensions_must_be_supported() -> None:
    suite = get_suite(1)
    rng = DeterministicRandom(9, "ext")
    sa, _ = suite.generate_signature_key_pair(rng)
    kpa, pa = create_key_package(suite, Credential.basic(b"a"), sa, rng)
    with pytest.raises(MLSError):
        Group.create(suite, b"g", kpa, pa, rng, extensions=[Extension(0x7777, b"")])


def test_bit_flips_never_raise_other_exceptions() -> None:
    alice, bob, _ = _pair()
    out = alice.commit([], path=True)
    msgs = [out.message.encode(), alice.protect(b"x").encode(), alice.propose_update().encode()]
    r = random.Random(1)
    for raw in msgs:
        for _ in range(40):
            b = bytearray(raw)
            b[r.randrange(len(b))] ^= 1 << r.randrange(8)
            try:
                res = bob.process(bytes(b))
            except (MLSError, DecodeError):
                continue
            # A flip inside unauthenticated padding-free fields cannot survive:
            # anything accepted must be identical in meaning to the original.
            assert not isinstance(res, StagedCommit) or res.epoch == 2
    assert bob.epoch == 1


ALL_OPS = {"add", "remove", "update", "self-remove", "external", "resync", "hub", "race", "path"}


def test_random_life_of_a_group_60_epochs() -> None:
    """Adds, removes, updates, self-removes, PSKs, external joins, resyncs,
    hub removes and races among up to 20 members; every epoch checked
    (the default-suite size of the 200-epoch test below)."""
    w = run_random(seed=11, epochs=60, max_members=20)
    assert w.epochs >= 60
    assert ALL_OPS <= {line.split()[0] for line in w.log}


@pytest.mark.slow
def test_random_life_of_a_group_200_epochs() -> None:
    """As above, 200 epochs among up to 50 members."""
    w = run_random(seed=11, epochs=200, max_members=50)
    assert w.epochs >= 200
    assert ALL_OPS <= {line.split()[0] for line in w.log}


@settings(max_examples=examples(8), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**32 - 1), suite_id=st.sampled_from([1, 2, 3]))
def test_random_short_lives(seed: int, suite_id: int) -> None:
    run_random(seed=seed, epochs=25, max_members=12, suite_id=suite_id)


def test_decode_error_on_garbage() -> None:
    alice, _, _ = _pair()
    for raw in (b"", b"\x00", b"\x00\x01\x00\x05", MLSMessage.wrap(alice.group_info()).encode()):
        with pytest.raises((MLSError, DecodeError)):
            alice.process(raw)


def test_reinit_creates_successor_group() -> None:
    from mimisim.mls.structs import ReInit

    alice, bob, _ = _pair()
    suite = get_suite(1)
    out = alice.commit([Proposal.of(ReInit(b"g2", 1, 1, []))])
    assert out.message.body.content.commit.path is None  # ReInit needs no path
    bob.merge(bob.process(out.message))  # type: ignore[arg-type]
    alice.merge_pending_commit()
    with pytest.raises(MLSError, match="reinitialised"):
        alice.protect(b"old group")
    rng = DeterministicRandom(8, "reinit")
    sa, _ = suite.generate_signature_key_pair(rng)
    sb, _ = suite.generate_signature_key_pair(rng)
    kpa, pa = create_key_package(suite, Credential.basic(b"alice"), sa, rng)
    kpb, pb = create_key_package(suite, Credential.basic(b"bob"), sb, rng)
    new_a, out2 = alice.create_reinit_group(kpa, pa, [kpb])
    new_a.merge_pending_commit()
    assert out2.welcome is not None
    # Without the old group's resumption PSK, Bob cannot join the successor.
    with pytest.raises(MLSError):
        Group.join(out2.welcome, kpb, pb, rng)
    new_b = Group.join(out2.welcome, kpb, pb, rng, resumption_psks=bob.resumption_psks())
    assert new_b.group_id == b"g2" and new_b.epoch_authenticator == new_a.epoch_authenticator


def test_key_package_validation() -> None:
    from mimisim.mls.errors import ValidationError
    from mimisim.mls.keypackage import default_capabilities
    from mimisim.mls.structs import Lifetime, RequiredCapabilities
    from mimisim.mls.validation import validate_key_package

    suite = get_suite(1)
    rng = DeterministicRandom(10, "kpv")
    sig, _ = suite.generate_signature_key_pair(rng)
    kp, _ = create_key_package(suite, Credential.basic(b"x"), sig, rng, lifetime=Lifetime(100, 200))
    validate_key_package(suite, kp, now_s=150)
    with pytest.raises(ValidationError, match="lifetime"):
        validate_key_package(suite, kp, now_s=201)
    forged = MLSMessage.decode(MLSMessage.wrap(kp).encode()).body
    forged.init_key = suite.generate_hpke_key_pair(rng)[1]
    with pytest.raises(ValidationError, match="signature"):
        validate_key_package(suite, forged)
    with pytest.raises(ValidationError, match="suite"):
        validate_key_package(get_suite(3), kp)
    rc = Extension(ExtensionType.required_capabilities, RequiredCapabilities([0x7777], [], []).encode())
    with pytest.raises(ValidationError, match="required extension"):
        validate_key_package(suite, kp, group_extensions=[rc])
    caps = default_capabilities(suite)
    caps.extensions.append(0x7777)
    kp2, _ = create_key_package(suite, Credential.basic(b"y"), sig, rng, capabilities=caps)
    validate_key_package(suite, kp2, group_extensions=[rc])


@pytest.mark.parametrize("suite_id", [1, 2])
def test_same_seed_same_bytes(suite_id: int) -> None:
    """All randomness is injected: the same seed replays the same group, byte
    for byte (ECDSA suites included); another seed gives another group."""
    def life(seed: int) -> tuple[bytes, bytes]:
        w = run_random(seed=seed, epochs=12, max_members=8, suite_id=suite_id)
        c = w.members()[0].group
        assert c is not None
        return w.observer.context.encode(), c.epoch_authenticator

    assert life(5) == life(5)
    assert life(5) != life(6)


def _trio(config: GroupConfig) -> tuple[Group, Group, Group]:
    """Alice, Bob and Carol in one group, all at epoch 2."""
    suite = get_suite(1)
    rng = DeterministicRandom(11, "trio")
    keys = {n: suite.generate_signature_key_pair(rng)[0] for n in ("alice", "bob", "carol")}
    kps = {n: create_key_package(suite, Credential.basic(n.encode()), keys[n], rng) for n in keys}
    alice = Group.create(suite, b"trio", *kps["alice"], rng.fork("a"), config=config)
    out = alice.commit([Proposal.of(Add(kps["bob"][0])), Proposal.of(Add(kps["carol"][0]))])
    alice.merge_pending_commit()
    assert out.welcome is not None
    bob = Group.join(out.welcome, *kps["bob"], rng.fork("b"), config=config)
    carol = Group.join(out.welcome, *kps["carol"], rng.fork("c"), config=config)
    out = bob.commit()
    bob.merge_pending_commit()
    for g in (alice, carol):
        staged = g.process(out.message)
        assert isinstance(staged, StagedCommit)
        g.merge(staged)
    return alice, bob, carol


@pytest.mark.parametrize("lost", [1, 2])
def test_fork_to_the_delivery_services_commit(lost: int) -> None:
    """Alice's commits (``lost`` of them) reached Bob, then the delivery
    service lost them and accepted Carol's commit for the same epoch: Alice
    and Bob go back to the kept state and merge Carol's; all three agree and
    read each other again, and the abandoned branch's secrets are gone."""
    alice, bob, carol = _trio(GroupConfig(max_fork_epochs=2))
    base = alice.epoch
    ours = []
    for _ in range(lost):
        out = alice.commit()
        alice.merge_pending_commit()
        staged = bob.process(out.message)
        assert isinstance(staged, StagedCommit)
        bob.merge(staged)
        ours.append(out.message.encode())
    assert alice.merged_commit(base) == ours[0] and bob.merged_commit(base) == ours[0]
    theirs = carol.commit()
    carol.merge_pending_commit()
    assert bob.epoch == base + lost and carol.epoch == base + 1
    for g in (alice, bob):
        staged = g.stage_fork_commit(theirs.message)
        assert g.epoch == base + lost  # staged only: nothing changed yet
        g.merge_fork(staged)
        assert g.epoch == base + 1
        assert g.epoch_authenticator == carol.epoch_authenticator
        assert g.merged_commit(base) == theirs.message.encode()
        assert g.merged_commit(base + 1) is None
    msg = carol.protect(b"after the fork")
    for g in (alice, bob):
        got = g.process(msg)
        assert isinstance(got, ApplicationMessage) and got.data == b"after the fork"
    # The room goes on from there as one group.
    out = bob.commit()
    bob.merge_pending_commit()
    for g in (alice, carol):
        staged = g.process(out.message)
        assert isinstance(staged, StagedCommit)
        g.merge(staged)
    assert alice.epoch_authenticator == bob.epoch_authenticator == carol.epoch_authenticator


def test_fork_needs_the_kept_state_and_a_valid_commit() -> None:
    """No state is kept by default (forward secrecy), a kept state is
    dropped after max_fork_epochs, a tampered commit is refused and changes
    nothing, and a proposal of the past epoch can be cached for the fork."""
    alice, bob, carol = _trio(GroupConfig())
    out = alice.commit()
    alice.merge_pending_commit()
    bob.merge(bob.process(out.message))  # type: ignore[arg-type]
    theirs = carol.commit()
    assert bob.merged_commit(alice.epoch - 1) is None
    with pytest.raises(WrongEpochError):
        bob.stage_fork_commit(theirs.message)

    alice, bob, carol = _trio(GroupConfig(max_fork_epochs=1))
    for _ in range(2):
        out = alice.commit()
        alice.merge_pending_commit()
        bob.merge(bob.process(out.message))  # type: ignore[arg-type]
    with pytest.raises(WrongEpochError):  # base's state fell out of the window of 1
        bob.stage_fork_commit(carol.commit().message)

    alice, bob, carol = _trio(GroupConfig(max_fork_epochs=1))
    base = alice.epoch
    proposal = alice.propose_update()
    carol.process(proposal)
    out = alice.commit([])  # Alice commits without her proposal
    alice.merge_pending_commit()
    bob.merge(bob.process(out.message))  # type: ignore[arg-type]
    theirs = carol.commit()  # commits Alice's proposal by reference
    carol.merge_pending_commit()
    with pytest.raises(ProposalError):
        bob.stage_fork_commit(theirs.message)  # Bob never saw the proposal
    assert isinstance(bob.cache_fork_proposal(proposal), ProposalReceived)
    raw = bytearray(theirs.message.encode())
    raw[-5] ^= 1
    with pytest.raises(MLSError):
        bob.stage_fork_commit(bytes(raw))
    assert bob.epoch == base + 1 and bob.merged_commit(base) == out.message.encode()
    staged = bob.stage_fork_commit(theirs.message)
    bob.merge_fork(staged)
    assert bob.epoch_authenticator == carol.epoch_authenticator
