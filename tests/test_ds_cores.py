"""The DS profile's sans-IO cores with real MLS groups: the hub
(mimisim.mimi.ds.hub) authenticating, validating, keeping past trees for
Welcome joiners and fanning out per guest DS; the guest DS
(mimisim.mimi.ds.guest) checking version, recipients and FanoutAuthTokens."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mimisim.mimi.ds import wire as D
from mimisim.mimi.ds.client import anonymous_request, group_update, sign_request
from mimisim.mimi.ds.guest import DSGuest
from mimisim.mimi.ds.hub import DSHub, HubResult, fanout_extension
from mimisim.mimi.ds.tokens import make_token
from mimisim.mls.crypto import DeterministicRandom, get_suite
from mimisim.mls.group import ApplicationMessage, Group, StagedCommit
from mimisim.mls.keypackage import KeyPackagePrivate, create_key_package, default_capabilities
from mimisim.mls.structs import (
    Add,
    Credential,
    Extension,
    ExtensionType,
    ExternalSender,
    ExternalSenders,
    KeyPackage,
    Proposal,
    Remove,
)
from tests.hypothesis_profiles import examples

SUITE = get_suite(1)
HUB = "a.example"


def domain_of(cid: bytes) -> str:
    return cid.split(b"@", 1)[1].decode()


def caps():  # type: ignore[no-untyped-def]
    c = default_capabilities(SUITE)
    c.extensions = [*c.extensions, D.FANOUT_AUTH_EXTENSION]
    return c


@dataclass
class C:
    cid: bytes
    sig: bytes
    kp: KeyPackage
    priv: KeyPackagePrivate
    group: Group | None = None


class Net:
    """A hub, one DSGuest per domain, clients; fanouts are delivered through the guests."""

    def __init__(self, seed: int = 1) -> None:
        self.rng = DeterministicRandom(seed, "ds-test")
        self.guests = {d: DSGuest(d, f"key-{d}".encode()) for d in (HUB, "b.example", "c.example")}
        self.kps: dict[bytes, KeyPackage] = {}
        self.hub_sig, hub_pub = SUITE.generate_signature_key_pair(self.rng.fork("hub"))
        self.hub = DSHub(HUB, domain_of, key_package_store=lambda cid: self.kps.pop(cid, None),
                         signature_priv=self.hub_sig)
        self.hub_pub = hub_pub
        self.clients: dict[bytes, C] = {}
        self.inbox: dict[bytes, list] = {}  # type: ignore[type-arg]

    def client(self, cid: bytes, token: bool = True) -> C:
        guest = self.guests[domain_of(cid)]
        guest.add_client(cid)
        sig, _ = SUITE.generate_signature_key_pair(self.rng.fork("sig" + cid.decode()))
        exts = [fanout_extension(guest.token(cid))] if token else []
        kp, priv = create_key_package(SUITE, Credential.basic(cid), sig, self.rng.fork("kp" + cid.decode()),
                                      extensions=exts, capabilities=caps())
        c = C(cid, sig, kp, priv)
        self.clients[cid] = c
        self.inbox[cid] = []
        return c

    def create(self, creator: C, gid: bytes = b"room") -> None:
        ext = [Extension(ExtensionType.external_senders,
                         ExternalSenders([ExternalSender(self.hub_pub, Credential.basic(HUB.encode()))]).encode())]
        creator.group = Group.create(SUITE, gid, creator.kp, creator.priv, self.rng.fork("g" + creator.cid.decode()), extensions=ext)
        self.hub.create_group(creator.group.group_info(with_tree=True), None, creator.kp)

    def deliver(self, res: HubResult) -> None:
        for f in res.fanout:
            gres = self.guests[f.domain].handle_fanout(f.request.encode())
            assert gres.ok, gres.response
            for cid, msg in gres.deliveries:
                self.inbox[cid].append(msg)

    def commit(self, c: C, proposals: list[Proposal], **kw: object) -> tuple[HubResult, object]:
        g = c.group
        assert g is not None
        out = g.commit(proposals, **kw)  # type: ignore[arg-type]
        welcomes = [out.welcome] if out.welcome is not None else []
        req = sign_request(SUITE, c.sig, D.CommitRequest([group_update(out.message, out.group_info)], welcomes), g.own_leaf)
        res = self.hub.handle(req.encode())
        if res.ok:
            g.merge_pending_commit()
        else:
            g.discard_pending_commit()
        return res, out

    def catch_up(self, c: C) -> list[bytes]:
        got = []
        assert c.group is not None
        for m in self.inbox[c.cid]:
            r = c.group.process(m)
            if isinstance(r, StagedCommit):
                c.group.merge(r)
            elif isinstance(r, ApplicationMessage):
                got.append(r.data)
        self.inbox[c.cid] = []
        return got


def code(res: HubResult) -> D.DSErrorCode | None:
    e = res.response.error
    return None if e is None else e.code


def leaf_of(tree: list, c: C) -> int:  # type: ignore[type-arg]
    for x in range(0, len(tree), 2):
        n = tree[x]
        if n is not None and n.leaf.signature_key == c.kp.leaf_node.signature_key:
            return x >> 1
    raise KeyError(c.cid)


def welcome_join(net: Net, c: C) -> None:
    """Join from the delivered Welcome with the tree the hub kept for the joiner."""
    assert net.inbox[c.cid], "no Welcome delivered"
    welcome = net.inbox[c.cid].pop(0)
    res = net.hub.handle(sign_request(SUITE, c.sig, D.WelcomeInfoRequest(b"room", ref(c)), D.JOINER_INDEX).encode())
    assert res.ok, res.response
    info = res.response.response_body.body
    assert isinstance(info, D.WelcomeInfo)
    c.group = Group.join(welcome, c.kp, c.priv, net.rng.fork("join" + c.cid.decode()), ratchet_tree=info.ratchet_tree)


def ref(c: C) -> bytes:
    return SUITE.make_key_package_ref(c.kp.encode())


@pytest.fixture
def room() -> tuple[Net, C, C, C]:
    """alice@a creates; she adds bob@b and carol@b without the tree in the Welcome."""
    net = Net()
    alice, bob, carol = net.client(b"alice@a.example"), net.client(b"bob@b.example"), net.client(b"carol@b.example")
    net.create(alice)
    res, _ = net.commit(alice, [Proposal.of(Add(bob.kp)), Proposal.of(Add(carol.kp))], ratchet_tree_in_welcome=False)
    assert res.ok, res.response
    # exactly one fanout: the Welcome, to b.example, for exactly bob and carol
    assert [(f.domain, f.request.recipient_ids) for f in res.fanout] == [("b.example", [bob.cid, carol.cid])]
    assert res.fanout[0].request.fanout_auth_tokens == [net.guests["b.example"].token(x) for x in (bob.cid, carol.cid)]
    net.deliver(res)
    return net, alice, bob, carol


def test_welcome_joiners_get_the_tree_of_their_epoch_after_the_group_moved_on(room) -> None:  # type: ignore[no-untyped-def]
    net, alice, bob, carol = room
    g = net.hub.groups[b"room"]
    assert set(g.past) == {1} and net.hub.retained_bytes() > 0
    welcome_join(net, bob)
    assert g.past[1].joiners and net.hub.retained_bytes() > 0  # carol has not joined
    res, _ = net.commit(alice, [], path=True)  # the group moves to epoch 2
    assert res.ok
    # the commit goes to bob and carol (b.example), not back to alice
    assert [(f.domain, f.request.recipient_ids) for f in res.fanout] == [("b.example", [bob.cid, carol.cid])]
    net.deliver(res)
    net.catch_up(bob)
    welcome_join(net, carol)  # epoch 1's tree, kept for her
    assert not net.hub.groups[b"room"].past and net.hub.retained_bytes() == 0
    net.catch_up(carol)
    assert carol.group is not None and carol.group.epoch == alice.group.epoch == bob.group.epoch == 2  # type: ignore[union-attr]
    # without the kept state the request is refused
    res = net.hub.handle(sign_request(SUITE, carol.sig, D.WelcomeInfoRequest(b"room", ref(carol)), D.JOINER_INDEX).encode())
    assert code(res) == D.DSErrorCode.epoch_unavailable


def test_welcome_info_needs_the_joiners_own_signature(room) -> None:  # type: ignore[no-untyped-def]
    net, alice, bob, carol = room
    # bob asks for carol's tree (signing with his key), or signs with a leaf index
    forged = sign_request(SUITE, bob.sig, D.WelcomeInfoRequest(b"room", ref(carol)), D.JOINER_INDEX)
    assert code(net.hub.handle(forged)) == D.DSErrorCode.authentication_failed
    as_leaf = sign_request(SUITE, carol.sig, D.WelcomeInfoRequest(b"room", ref(carol)), 2)
    assert code(net.hub.handle(as_leaf)) == D.DSErrorCode.authentication_failed
    assert code(net.hub.handle(anonymous_request(D.WelcomeInfoRequest(b"room", ref(carol))))) == D.DSErrorCode.authentication_failed
    # a joiner removed before joining frees the kept state
    res, _ = net.commit(alice, [Proposal.of(Remove(1)), Proposal.of(Remove(2))])
    assert res.ok
    assert not net.hub.groups[b"room"].past and not net.hub.joiners and net.hub.retained_bytes() == 0


def test_send_message_fans_out_per_domain_and_guests_deliver(room) -> None:  # type: ignore[no-untyped-def]
    net, alice, bob, carol = room
    welcome_join(net, bob)
    welcome_join(net, carol)
    assert bob.group is not None
    msg = bob.group.protect(b"hi all")
    res = net.hub.handle(sign_request(SUITE, bob.sig, D.SendMessageRequest([msg]), bob.group.own_leaf).encode())
    assert res.ok
    assert sorted((f.domain, tuple(f.request.recipient_ids)) for f in res.fanout) == [
        ("a.example", (alice.cid,)), ("b.example", (carol.cid,))]
    net.deliver(res)
    assert net.catch_up(alice) == [b"hi all"] and net.catch_up(carol) == [b"hi all"]


def test_client_signature_is_checked_against_the_leaf(room) -> None:  # type: ignore[no-untyped-def]
    net, alice, bob, carol = room
    welcome_join(net, bob)
    welcome_join(net, carol)
    assert bob.group is not None and carol.group is not None
    msg = bob.group.protect(b"x")
    # carol signs claiming bob's leaf: forged
    forged = sign_request(SUITE, carol.sig, D.SendMessageRequest([msg]), bob.group.own_leaf)
    assert code(net.hub.handle(forged.encode())) == D.DSErrorCode.authentication_failed
    # anonymous send: refused
    assert code(net.hub.handle(anonymous_request(D.SendMessageRequest([msg])))) == D.DSErrorCode.authentication_failed
    # a leaf outside the tree
    assert code(net.hub.handle(sign_request(SUITE, bob.sig, D.SendMessageRequest([msg]), 99))) == D.DSErrorCode.authentication_failed
    # a commit by carol signed as bob (valid ClientSignature, other MLS sender)
    out = carol.group.commit([], path=True)
    req = sign_request(SUITE, bob.sig, D.CommitRequest([group_update(out.message, out.group_info)], []), bob.group.own_leaf)
    assert code(net.hub.handle(req)) == D.DSErrorCode.authentication_failed
    carol.group.discard_pending_commit()
    # an unsupported version and garbage
    good = sign_request(SUITE, bob.sig, D.SendMessageRequest([msg]), bob.group.own_leaf).encode()
    assert code(net.hub.handle(b"\x00\x02" + good[2:])) == D.DSErrorCode.unsupported_version
    assert code(net.hub.handle(good[:-3])) == D.DSErrorCode.malformed


def test_joiner_without_fanout_auth_is_refused_and_nothing_changes(room) -> None:  # type: ignore[no-untyped-def]
    net, alice, _bob, _carol = room
    dave = net.client(b"dave@c.example", token=False)
    epoch = net.hub.groups[b"room"].observer.epoch
    res, _ = net.commit(alice, [Proposal.of(Add(dave.kp))])
    assert code(res) == D.DSErrorCode.not_allowed and not res.fanout
    assert net.hub.groups[b"room"].observer.epoch == epoch


def test_stale_epoch_commit_is_wrong_epoch(room) -> None:  # type: ignore[no-untyped-def]
    net, alice, bob, _carol = room
    welcome_join(net, bob)
    assert bob.group is not None and alice.group is not None
    out_b = bob.group.commit([], path=True)
    res, _ = net.commit(alice, [], path=True)
    assert res.ok
    req = sign_request(SUITE, bob.sig, D.CommitRequest([group_update(out_b.message, out_b.group_info)], []), bob.group.own_leaf)
    assert code(net.hub.handle(req)) == D.DSErrorCode.wrong_epoch


def test_self_remove_proposal_then_commit_by_reference(room) -> None:  # type: ignore[no-untyped-def]
    net, alice, bob, carol = room
    welcome_join(net, bob)
    welcome_join(net, carol)
    assert carol.group is not None and bob.group is not None
    prop = carol.group.propose(Proposal.of(Remove(carol.group.own_leaf)))
    res = net.hub.handle(sign_request(SUITE, carol.sig, D.ProposalRequest([prop]), carol.group.own_leaf))
    assert res.ok
    assert sorted((f.domain, tuple(f.request.recipient_ids)) for f in res.fanout) == [
        ("a.example", (alice.cid,)), ("b.example", (bob.cid,))]
    net.deliver(res)
    net.catch_up(bob)
    net.catch_up(alice)
    res, _ = net.commit(bob, [])  # includes carol's proposal by reference
    assert res.ok, res.response
    assert net.hub.groups[b"room"].observer.tree.leaf(2) is None
    # carol (removed) still receives the commit that removes her
    assert any(carol.cid in f.request.recipient_ids for f in res.fanout)


def test_external_commit_with_group_info_and_token(room) -> None:  # type: ignore[no-untyped-def]
    net, alice, _bob, _carol = room
    dave = net.client(b"dave@c.example")
    res = net.hub.handle(anonymous_request(D.GroupInfoRequest(b"room")).encode())
    assert res.ok
    info = res.response.response_body.body
    assert isinstance(info, D.ExternalCommitInfo)
    # without a FanoutAuth leaf extension: refused
    g0, msg0 = Group.external_join(info.group_info, Credential.basic(dave.cid), dave.sig, net.rng.fork("x0"),
                                   ratchet_tree=info.ratchet_tree)
    r0 = net.hub.handle(anonymous_request(D.CommitRequest([group_update(msg0, g0.group_info())], [])))
    assert code(r0) == D.DSErrorCode.not_allowed
    token = net.guests["c.example"].token(dave.cid)
    g, msg = Group.external_join(info.group_info, Credential.basic(dave.cid), dave.sig, net.rng.fork("x1"),
                                 ratchet_tree=info.ratchet_tree, leaf_extensions=[fanout_extension(token)], capabilities=caps())
    r = net.hub.handle(anonymous_request(D.CommitRequest([group_update(msg, g.group_info())], [])))
    assert r.ok, r.response
    hg = net.hub.groups[b"room"]
    assert hg.tokens[g.own_leaf] == token
    # the commit reaches the old members (alice on a, bob and carol on b)
    assert sorted(f.domain for f in r.fanout) == ["a.example", "b.example"]


def test_delete_group_must_remove_every_other_member(room) -> None:  # type: ignore[no-untyped-def]
    net, alice, bob, carol = room
    assert alice.group is not None
    out = alice.group.commit([Proposal.of(Remove(1))])
    bad = sign_request(SUITE, alice.sig, D.DeleteGroupRequest(group_update(out.message, out.group_info)), 0)
    assert code(net.hub.handle(bad)) == D.DSErrorCode.invalid_delete
    alice.group.discard_pending_commit()
    out = alice.group.commit([Proposal.of(Remove(1)), Proposal.of(Remove(2))])
    res = net.hub.handle(sign_request(SUITE, alice.sig, D.DeleteGroupRequest(group_update(out.message, out.group_info)), 0))
    assert res.ok and res.deleted and b"room" not in net.hub.groups
    assert [(f.domain, f.request.recipient_ids) for f in res.fanout] == [("b.example", [bob.cid, carol.cid])]
    assert code(net.hub.handle(anonymous_request(D.GroupInfoRequest(b"room")))) == D.DSErrorCode.unknown_group


def test_key_packages_request() -> None:
    net = Net()
    erin = net.client(b"erin@a.example")
    net.kps[erin.cid] = erin.kp
    res = net.hub.handle(anonymous_request(D.KeyPackagesRequest([erin.cid])))
    assert res.ok and res.response.response_body.body.key_packages == [erin.kp]
    assert code(net.hub.handle(anonymous_request(D.KeyPackagesRequest([erin.cid])))) == D.DSErrorCode.no_key_package
    assert code(net.hub.handle(anonymous_request(D.KeyPackagesRequest([b"x@b.example"])))) == D.DSErrorCode.unknown_client


def test_guest_checks_version_recipients_and_tokens(room) -> None:  # type: ignore[no-untyped-def]
    net, _alice, bob, carol = room
    guest = net.guests["b.example"]
    payload = net.inbox[bob.cid][0]  # the Welcome the room fixture delivered
    t_bob, t_carol = guest.token(bob.cid), guest.token(carol.cid)

    def ask(req: D.DSFanoutRequest) -> tuple[D.DSFanoutErrorCode | None, list[bytes]]:
        r = guest.handle_fanout(req.encode())
        e = r.response.response_body.error
        return (None, [c for c, _ in r.deliveries]) if e is None else (e.code, e.recipient_ids)

    assert ask(D.DSFanoutRequest(D.DS10, [bob.cid, carol.cid], [t_bob, t_carol], payload)) == (None, [bob.cid, carol.cid])
    assert ask(D.DSFanoutRequest(2, [bob.cid], [t_bob], payload))[0] == D.DSFanoutErrorCode.unsupported_version
    assert ask(D.DSFanoutRequest(D.DS10, [bob.cid, b"alice@a.example"], [t_bob, t_bob], payload)) == (
        D.DSFanoutErrorCode.unknown_recipient, [b"alice@a.example"])
    # carol's token for bob, a token from another DS's key, a truncated one
    assert ask(D.DSFanoutRequest(D.DS10, [bob.cid], [t_carol], payload)) == (D.DSFanoutErrorCode.invalid_token, [bob.cid])
    other = make_token(b"key-c.example", bob.cid, 0)
    assert ask(D.DSFanoutRequest(D.DS10, [bob.cid], [other], payload))[0] == D.DSFanoutErrorCode.invalid_token
    assert ask(D.DSFanoutRequest(D.DS10, [bob.cid], [D.FanoutAuthToken(t_bob.token[:-1])], payload))[0] == D.DSFanoutErrorCode.invalid_token
    # rotation revokes the old token
    new = guest.rotate(bob.cid)
    assert ask(D.DSFanoutRequest(D.DS10, [bob.cid], [t_bob], payload))[0] == D.DSFanoutErrorCode.invalid_token
    assert ask(D.DSFanoutRequest(D.DS10, [bob.cid], [new], payload)) == (None, [bob.cid])
    assert guest.handle_fanout(b"\x00\x01\x05").response.response_body.error.code == D.DSFanoutErrorCode.malformed  # type: ignore[union-attr]


def test_hub_proposes_a_removal_and_the_next_commit_includes_it(room) -> None:  # type: ignore[no-untyped-def]
    net, alice, bob, carol = room
    welcome_join(net, bob)
    welcome_join(net, carol)
    fan = net.hub.propose_remove(b"room", 2)
    assert sorted((f.domain, tuple(f.request.recipient_ids)) for f in fan) == [
        ("a.example", (alice.cid,)), ("b.example", (bob.cid, carol.cid))]
    net.deliver(HubResult(res_ok(), fan))
    net.catch_up(alice)
    res, _ = net.commit(alice, [])  # the stored proposal, by reference
    assert res.ok, res.response
    assert net.hub.groups[b"room"].observer.tree.leaf(2) is None and 2 not in net.hub.groups[b"room"].tokens


def test_an_update_rotates_the_fanout_token(room) -> None:  # type: ignore[no-untyped-def]
    net, alice, bob, _carol = room
    welcome_join(net, bob)
    assert bob.group is not None
    guest = net.guests["b.example"]
    old = guest.token(bob.cid)
    new = guest.rotate(bob.cid)
    prop = bob.group.propose_update(leaf_extensions=[fanout_extension(new)])
    res = net.hub.handle(sign_request(SUITE, bob.sig, D.ProposalRequest([prop]), bob.group.own_leaf))
    assert res.ok, res.response
    net.deliver(res)
    net.catch_up(alice)
    res, _ = net.commit(alice, [])
    assert res.ok, res.response
    assert net.hub.groups[b"room"].tokens[bob.group.own_leaf] == new != old
    net.deliver(res)  # the guest accepts the fanout to bob with the new token


def res_ok() -> D.DSResponse:
    return D.DSResponse(D.DS10, D.DSResponseBody.ok())


def test_a_joiner_in_a_removed_members_leaf_does_not_lend_it_its_token(room) -> None:  # type: ignore[no-untyped-def]
    net, alice, bob, carol = room
    welcome_join(net, bob)
    welcome_join(net, carol)
    dave = net.client(b"dave@c.example")
    res, _ = net.commit(alice, [Proposal.of(Remove(1)), Proposal.of(Add(dave.kp))])
    assert res.ok, res.response
    assert net.hub.groups[b"room"].observer.tree.leaf(1).credential.identity == dave.cid  # type: ignore[union-attr]
    to_b = [f.request for f in res.fanout if f.domain == "b.example"][0]
    assert dict(zip(to_b.recipient_ids, to_b.fanout_auth_tokens, strict=True))[bob.cid] == net.guests["b.example"].token(bob.cid)
    net.deliver(res)  # every guest accepts every token


# ---------------------------------------------------------------- rate limiting


def test_token_buckets_admit_refill_and_report_retry_after() -> None:
    from mimisim.mimi.ds.ratelimit import Limiter, Rate

    lim = Limiter({"client": Rate(2.0, burst=2), "group": Rate(100.0, burst=100)})
    keys = [("client", "x"), ("group", "g"), ("ds", "unlimited")]
    assert lim.admit(keys, 0) == 0 and lim.admit(keys, 0) == 0
    assert lim.admit(keys, 0) == 500  # one token per 500 ms
    assert lim.buckets["group"].state["g"] == (98.0, 0)  # the refusal took nothing from the group
    assert lim.admit(keys, 499) == 1
    assert lim.admit(keys, 500) == 0
    assert lim.admit([("client", "y")], 500) == 0  # another client has its own bucket
    with pytest.raises(ValueError):
        Rate(0.0)


def test_hub_answers_rate_limited_with_retry_after_per_client(room) -> None:  # type: ignore[no-untyped-def]
    from mimisim.mimi.ds.ratelimit import Limiter, Rate

    net, alice, bob, carol = room
    welcome_join(net, bob)
    welcome_join(net, carol)
    net.hub.limiter = Limiter({"client": Rate(1.0, burst=1), "ds": Rate(1.0, burst=3)})
    assert bob.group is not None and carol.group is not None

    def send(c: C, t: float) -> HubResult:
        assert c.group is not None
        return net.hub.handle(sign_request(SUITE, c.sig, D.SendMessageRequest([c.group.protect(b"m")]), c.group.own_leaf),
                              now_ms=t, from_ds="b.example")

    assert send(bob, 0).ok
    r = send(bob, 100)
    err = r.response.error
    assert err is not None and err.code == D.DSErrorCode.rate_limited and err.retry_after_ms == 900 and not r.fanout
    assert send(carol, 100).ok  # carol is another client
    assert send(bob, 1000).ok  # Retry-After honoured
    assert send(carol, 1100).ok
    assert send(bob, 2000).ok
    # each client is within its own rate, but b.example's (burst 3, 1/s) is spent
    r = send(carol, 2100)
    err = r.response.error
    assert err is not None and err.code == D.DSErrorCode.rate_limited and err.retry_after_ms == 900
    with pytest.raises(ValueError):
        net.hub.handle(sign_request(SUITE, bob.sig, D.SendMessageRequest([bob.group.protect(b"m")]), bob.group.own_leaf))


def test_guest_limits_fanout_per_sending_ds(room) -> None:  # type: ignore[no-untyped-def]
    from mimisim.mimi.ds.ratelimit import Limiter, Rate

    net, _alice, bob, _carol = room
    guest = net.guests["b.example"]
    guest.limiter = Limiter({"ds": Rate(1.0, burst=1)})
    req = D.DSFanoutRequest(D.DS10, [bob.cid], [guest.token(bob.cid)], net.inbox[bob.cid][0])
    assert guest.handle_fanout(req, now_ms=0, from_ds=HUB).ok
    r = guest.handle_fanout(req, now_ms=10, from_ds=HUB)
    e = r.response.response_body.error
    assert e is not None and e.code == D.DSFanoutErrorCode.rate_limited and e.retry_after_ms == 990 and not r.deliveries
    assert guest.handle_fanout(req, now_ms=10, from_ds="c.example").ok  # another hub


# ---------------------------------------------------------------- the hub never raises on bad input


def _hub_requests() -> tuple[Net, list[bytes]]:
    net = Net(5)
    alice, bob = net.client(b"alice@a.example"), net.client(b"bob@b.example")
    net.create(alice)
    res, _ = net.commit(alice, [Proposal.of(Add(bob.kp))], ratchet_tree_in_welcome=False)
    net.deliver(res)
    assert alice.group is not None
    reqs = [
        sign_request(SUITE, alice.sig, D.SendMessageRequest([alice.group.protect(b"hi")]), 0),
        sign_request(SUITE, bob.sig, D.WelcomeInfoRequest(b"room", ref(bob)), D.JOINER_INDEX),
        anonymous_request(D.GroupInfoRequest(b"room")),
    ]
    out = alice.group.commit([], path=True)
    reqs.append(sign_request(SUITE, alice.sig, D.CommitRequest([group_update(out.message, out.group_info)], []), 0))
    alice.group.discard_pending_commit()
    out = alice.group.commit([Proposal.of(Remove(1))])
    reqs.append(sign_request(SUITE, alice.sig, D.DeleteGroupRequest(group_update(out.message, out.group_info)), 0))
    alice.group.discard_pending_commit()
    reqs.append(sign_request(SUITE, alice.sig, D.ProposalRequest([alice.group.propose(Proposal.of(Remove(1)))]), 0))
    return net, [r.encode() for r in reqs]


HUB_NET, HUB_REQS = _hub_requests()


@settings(max_examples=examples(60), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_hub_answers_every_mutated_request_without_raising(data: st.DataObject) -> None:
    buf = bytearray(data.draw(st.sampled_from(HUB_REQS)))
    for _ in range(data.draw(st.integers(1, 2))):
        i = data.draw(st.integers(0, len(buf) - 1))
        buf[i] ^= 1 << data.draw(st.integers(0, 7))
    before = HUB_NET.hub.groups[b"room"].observer.epoch if b"room" in HUB_NET.hub.groups else None
    res = HUB_NET.hub.handle(bytes(buf))
    assert isinstance(res.response, D.DSResponse)
    if not res.ok and b"room" in HUB_NET.hub.groups:
        assert HUB_NET.hub.groups[b"room"].observer.epoch == before
