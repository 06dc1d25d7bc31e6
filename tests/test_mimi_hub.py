"""The hub of a MIMI room, driven directly with real MLS groups (no provider).

Why these tests: the hub is the arbiter of every room change ([P] "Room
state"); each draft response code must be reachable on purpose, a refused
request must leave the room state untouched (``digest``), and no body, however
broken, may make a handler raise.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field

import pytest

from mimisim.mimi import franking as F
from mimisim.mimi import policy as P
from mimisim.mimi import wire as W
from mimisim.mimi.hub import HubError, HubResult, HubRoom, msg_id_of
from mimisim.mimi.identity import client_uri, group_id_of_room, room_uri, user_uri
from mimisim.mls.crypto import DeterministicRandom, get_suite
from mimisim.mls.group import CommitOutput, Group, GroupConfig, StagedCommit
from mimisim.mls.keypackage import KeyPackagePrivate, create_key_package
from mimisim.mls.observer import external_proposal, partial_group_info
from mimisim.mls.structs import (
    AppDataDictionary,
    AppDataUpdate,
    AppDataUpdateOperation,
    ComponentData,
    Credential,
    Extension,
    ExtensionType,
    ExternalSender,
    ExternalSenders,
    KeyPackage,
    MLSMessage,
    Proposal,
    RatchetTreeOption,
    RatchetTreeRepresentation,
    Remove,
)

SUITE = get_suite(1)
BASE_MS = 1_700_000_000_000
HUB = "a.example"
ROOM = room_uri(HUB, "clubhouse")
CID = W.ComponentId
C = W.Capability

BANNED, MEMBER, ADMIN, READER, ENFORCER = 1, 2, 3, 4, 5
ALICE, BOB, CATHY, DAVE = (
    user_uri("a.example", "alice"),
    user_uri("b.example", "bob"),
    user_uri("c.example", "cathy"),
    user_uri("d.example", "dave"),
)

MEMBER_CAPS = [
    C.canSendMessage, C.canReceiveMessage, C.canAddOwnClient, C.canRemoveOwnClient, C.canRemoveSelf,
    C.canReportAbuse, C.canChangeRoomSubject,
]
ADMIN_CAPS = [
    *MEMBER_CAPS, C.canAddParticipant, C.canRemoveParticipant, C.canChangeUserRole, C.canBan, C.canUnBan,
    C.canKick, C.canChangeRoomName, C.canChangeRoomDescription, C.canChangeRoomAvatar, C.canChangeRoomMood,
    C.canChangeRoleDefinitions,
]


def roles_list(open_join: bool = False) -> bytes:
    """Four roles plus the hub's ``policy_enforcer`` (so the hub may remove
    users from the list); role 0 lets joining codes (and, for an open room,
    anyone) join as a member."""
    role0 = [C.canUseJoinCode, C.canOpenJoin] if open_join else [C.canUseJoinCode]
    roles = [
        P.make_role(0, "no_role", role0, {0: [MEMBER]}),
        P.make_role(BANNED, "banned"),
        P.make_role(MEMBER, "member", MEMBER_CAPS, {MEMBER: [0]}),
        P.make_role(ADMIN, "admin", ADMIN_CAPS, {0: [MEMBER, ADMIN, READER], MEMBER: [0, BANNED, ADMIN, READER],
                                                  READER: [0, BANNED, MEMBER], BANNED: [0, MEMBER], ADMIN: [0]}),
        P.make_role(READER, "reader", [C.canReceiveMessage, C.canAddOwnClient]),
        P.make_role(ENFORCER, P.POLICY_ENFORCER, [C.canRemoveParticipant],
                    {MEMBER: [0, BANNED], ADMIN: [0, BANNED], READER: [0, BANNED]}),
    ]
    return P.RoleData(roles).encode()


def plist(changed: Sequence[tuple[int, int]] = (), removed: Sequence[int] = (),
          added: Sequence[tuple[str, int]] = ()) -> Proposal:
    upd = W.ParticipantListUpdate(
        [W.UserindexRolePair(i, r) for i, r in changed], list(removed), [W.UserRolePair(u, r) for u, r in added]
    )
    return Proposal.of(AppDataUpdate(CID.participant_list, AppDataUpdateOperation.update, upd.encode()))


def metadata(name: str, subject: str = "") -> Proposal:
    md = W.RoomMetaData(W.IdentifierUri(ROOM), name, [], W.IdentifierUri(""), subject, "")
    return Proposal.of(AppDataUpdate(CID.room_metadata, AppDataUpdateOperation.update, md.encode()))


def code_of(res: HubResult) -> str:
    return res.response.code


def update_response(res: HubResult) -> W.UpdateRoomResponse:
    assert res.response.status == 200, res.response
    return W.UpdateRoomResponse.decode(res.response.body)


@dataclass
class Device:
    uri: str
    sig_priv: bytes
    rng: DeterministicRandom
    group: Group | None = None
    pending_kp: tuple[KeyPackage, KeyPackagePrivate] | None = None
    received: list[bytes] = field(default_factory=list)

    @property
    def domain(self) -> str:
        return self.uri.split("/")[2]

    @property
    def active(self) -> bool:
        return self.group is not None and self.group.active


CONFIG = GroupConfig(app_components=P.mimi_app_components())


class World:
    """One room at hub a.example, Alice (admin) its creator, devices by name."""

    def __init__(self, seed: int = 1, *, franking: bool = True, open_join: bool = False,
                 followers: Sequence[str] = ()) -> None:
        self.rng = DeterministicRandom(seed, "hub-test")
        self.hub_priv, self.hub_pub = SUITE.generate_signature_key_pair(self.rng.fork("hub"))
        #: follower domain -> (external sender index, signature private key)
        self.followers: dict[str, tuple[int, bytes]] = {}
        senders = [ExternalSender(self.hub_pub, Credential.basic(f"mimi://{HUB}".encode()))]
        for dom in followers:
            priv, pub = SUITE.generate_signature_key_pair(self.rng.fork("follower " + dom))
            self.followers[dom] = (len(senders), priv)
            senders.append(ExternalSender(pub, Credential.basic(f"mimi://{dom}".encode())))
        self.franking_key = self.rng.fork("franking").random_bytes(32)
        self.devices: dict[str, Device] = {}
        self.routes: dict[bytes, str] = {}
        self.now = 0
        a1 = self.device(ALICE, "A1")
        comps = {
            CID.participant_list: W.ParticipantListData([W.UserRolePair(ALICE, ADMIN)]).encode(),
            CID.roles_list: roles_list(open_join),
            CID.room_metadata: W.RoomMetaData(W.IdentifierUri(ROOM), "Clubhouse", [], W.IdentifierUri(""), "", "").encode(),
        }
        if franking:
            comps[CID.franking_agent] = F.franking_agent_data(SUITE, self.franking_key, HUB).encode()
        self.extensions = [
            Extension(ExtensionType.external_senders, ExternalSenders(senders).encode()),
            Extension(ExtensionType.app_data_dictionary, AppDataDictionary(
                [ComponentData(k, v) for k, v in sorted(comps.items())]).encode()),
        ]
        kp, priv = self.key_package(a1, route=False)
        a1.group = Group.create(SUITE, group_id_of_room(ROOM), kp, priv, a1.rng, extensions=self.extensions, config=CONFIG)
        gi = a1.group.group_info(with_tree=True)
        self.room = HubRoom.create(
            ROOM, MLSMessage.wrap(gi).encode(), None, a1.uri, hub_domain=HUB, hub_signature_priv=self.hub_priv,
            hub_franking_key=self.franking_key, rng=self.rng.fork("room"), epoch_base_ms=BASE_MS, now_ms=0,
        )

    # ------------------------------------------------------------ devices

    def device(self, user: str, name: str) -> Device:
        domain, uname = user.split("/")[2], user.split("/")[-1]
        uri = client_uri(domain, uname, name)
        sig, _ = SUITE.generate_signature_key_pair(self.rng.fork("sig " + uri))
        d = Device(uri, sig, self.rng.fork("dev " + uri))
        self.devices[name] = d
        return d

    def key_package(self, d: Device, route: bool = True) -> tuple[KeyPackage, KeyPackagePrivate]:
        kp, priv = create_key_package(SUITE, Credential.basic(d.uri.encode()), d.sig_priv, d.rng.fork("kp"))
        d.pending_kp = (kp, priv)
        if route:
            self.routes[SUITE.make_key_package_ref(kp.encode())] = d.domain
        return kp, priv

    def __getitem__(self, name: str) -> Device:
        return self.devices[name]

    def active(self) -> list[Device]:
        return [d for d in self.devices.values() if d.active]

    # ------------------------------------------------------------ requests

    def update(self, body: bytes, from_domain: str) -> HubResult:
        self.now += 10
        return self.room.handle_update(body, from_domain, self.now, self.routes.get)

    def propose(self, sender: str, proposals: Sequence[Proposal], from_domain: str | None = None,
                deliver: bool = True) -> tuple[HubResult, list[MLSMessage]]:
        d = self[sender]
        assert d.group is not None
        msgs = [d.group.propose(p) for p in proposals]
        body = W.UpdateRequest(W.HandshakeBundle.proposals(msgs[0], msgs[1:])).encode()
        res = self.update(body, from_domain or d.domain)
        if deliver and code_of(res) == "success":
            self.deliver(res, sender=d)
        return res, msgs

    def commit_out(self, committer: str, proposals: Sequence[Proposal] = (), **kw: object) -> CommitOutput:
        g = self[committer].group
        assert g is not None
        return g.commit(list(proposals), **kw)  # type: ignore[arg-type]

    @staticmethod
    def commit_body(out: CommitOutput, *, full: bool = False,
                    rto: RatchetTreeOption | None = None) -> bytes:
        gio = W.GroupInfoOption.full(out.group_info) if full else W.GroupInfoOption.partial(partial_group_info(out.group_info))
        rto = rto or RatchetTreeOption(RatchetTreeRepresentation.distribution_service, None, None, None)
        welcome = out.welcome.body if out.welcome is not None else None
        return W.UpdateRequest(W.HandshakeBundle.commit(out.message, gio, rto, welcome)).encode()

    def commit(self, committer: str, proposals: Sequence[Proposal] = (), *, from_domain: str | None = None,
               deliver: bool = True, full: bool = False, **kw: object) -> HubResult:
        d = self[committer]
        assert d.group is not None
        out = self.commit_out(committer, proposals, **kw)
        res = self.update(self.commit_body(out, full=full), from_domain or d.domain)
        if code_of(res) == "success":
            d.group.merge_pending_commit()
            if deliver:
                self.deliver(res, sender=d)
        else:
            d.group.discard_pending_commit()
        return res

    def deliver(self, res: HubResult, sender: Device | None = None) -> None:
        """Carry out the fanout plan: each item to the devices of its domain."""
        for item in res.fanout:
            fm = W.FanoutMessage.decode(item.body)
            for d in list(self.devices.values()):
                if d.domain != item.domain or d is sender:
                    continue
                if fm.kind == W.MessageKind.welcome:
                    if d.pending_kp is None or d.active:
                        continue
                    kp, priv = d.pending_kp
                    ref = SUITE.make_key_package_ref(kp.encode())
                    if ref in [s.new_member for s in fm.message.body.secrets]:
                        rto = fm.ratchet_tree_option
                        d.group = Group.join(fm.message, kp, priv, d.rng.fork("join"), ratchet_tree=rto.ratchet_tree,
                                             config=CONFIG)
                        d.pending_kp = None
                    continue
                if not d.active:
                    continue
                assert d.group is not None
                if fm.kind == W.MessageKind.commit:
                    sc = d.group.process(fm.message)
                    assert isinstance(sc, StagedCommit)
                    d.group.merge(sc)
                    for p in fm.external_proposals or []:
                        if d.active:
                            d.group.process(p)
                elif fm.kind == W.MessageKind.proposal:
                    for p in [fm.message, *(fm.more_proposals or [])]:
                        d.group.process(p)
                else:
                    d.received.append(d.group.process(fm.message).data)  # type: ignore[union-attr]
        self.check_agreement()

    def check_agreement(self) -> None:
        obs = self.room.observer
        for d in self.active():
            assert d.group is not None
            if d.group.epoch == obs.epoch:
                assert d.group.context == obs.context, d.uri
        assert sorted(d.uri for d in self.active() if d.group and d.group.epoch == obs.epoch) == self.room.members()

    # ------------------------------------------------------------ scenario steps

    def add_user(self, committer: str, user: str, devices: Sequence[str], role_index: int = MEMBER) -> HubResult:
        kps = [self.key_package(self.device(user, n))[0] for n in devices]
        props = [plist(added=[(user, role_index)])] + [Proposal.of(W.Add(kp)) if hasattr(W, "Add") else _add(kp) for kp in kps]
        return self.commit(committer, props)

    def index(self, user: str) -> int:
        return list(self.room.participants()).index(user)

    def submit(self, sender: str, text: bytes, sending_uri: str | None = None, from_domain: str | None = None,
               franked: bool = False) -> tuple[HubResult, bytes, bytes]:
        """Send ``text`` (as MIMI content with a frank_aad tag when
        ``franked``); returns the result, the content and the AAD."""
        d = self[sender]
        assert d.group is not None
        user = "mimi://" + d.domain + "/u/" + d.uri.split("/")[-2]
        content, aad = text, b""
        if franked:
            content = F.encode_simple_content(d.rng.random_bytes(F.SALT_SIZE), user, ROOM, text)
            aad = F.add_frank_aad(content)
        msg = d.group.protect(content, aad)
        body = W.SubmitMessageRequest(W.MLS10, msg, W.IdentifierUri(sending_uri or user)).encode()
        self.now += 10
        return self.room.handle_submit(body, from_domain or d.domain, self.now), content, aad


def _add(kp: KeyPackage) -> Proposal:
    from mimisim.mls.structs import Add

    return Proposal.of(Add(kp))


def three_users(seed: int = 1, **kw: object) -> World:
    """Alice (admin, A1), Bob (member, B1 B2), Cathy (member, C1)."""
    w = World(seed, **kw)  # type: ignore[arg-type]
    assert code_of(w.add_user("A1", BOB, ["B1", "B2"])) == "success"
    assert code_of(w.add_user("A1", CATHY, ["C1"])) == "success"
    return w


# ====================================================================== creation


def test_room_creation() -> None:
    w = World()
    r = w.room
    assert r.epoch == 0
    assert r.members() == [client_uri("a.example", "alice", "A1")]
    assert r.participants() == {ALICE: ADMIN}
    assert r.follower_domains() == []
    assert r.room_metadata() is not None and r.room_metadata().room_name == "Clubhouse"
    assert len(r.digest()) == 32
    assert World().room.digest() == r.digest()  # deterministic


def _create(w: World, gi: bytes, creator: str = "", **kw: object) -> HubRoom:
    args = dict(hub_domain=HUB, hub_signature_priv=w.hub_priv, hub_franking_key=w.franking_key,
                rng=w.rng, epoch_base_ms=BASE_MS, now_ms=0)
    args.update(kw)
    return HubRoom.create(ROOM, gi, None, creator or w["A1"].uri, **args)  # type: ignore[arg-type]


def _group_info_with(w: World, comps: dict[int, bytes | None], senders: bool = True,
                     group_id: bytes | None = None) -> bytes:
    d = w.device(ALICE, "X" + str(len(w.devices)))
    base = AppDataDictionary.decode(w.extensions[1].extension_data)
    for k, v in comps.items():
        base = base.with_data(k, v)
    exts = [Extension(ExtensionType.app_data_dictionary, base.encode())]
    if senders:
        exts.insert(0, w.extensions[0])
    kp, priv = w.key_package(d, route=False)
    g = Group.create(SUITE, group_id or group_id_of_room(ROOM), kp, priv, d.rng, extensions=exts, config=CONFIG)
    return MLSMessage.wrap(g.group_info(with_tree=True)).encode(), d.uri  # type: ignore[return-value]


def test_create_refuses_invalid_rooms() -> None:
    w = World()
    gi, creator = _group_info_with(w, {})
    assert _create(w, gi, creator).epoch == 0
    bad = {
        "other group id": _group_info_with(w, {}, group_id=b"mimi://a.example/g/other"),
        "hub not an external sender": _group_info_with(w, {}, senders=False),
        "creator not listed": _group_info_with(w, {CID.participant_list: W.ParticipantListData([]).encode()}),
        "creator banned": _group_info_with(
            w, {CID.participant_list: W.ParticipantListData([W.UserRolePair(ALICE, BANNED)]).encode()}),
        "foreign franking agent": _group_info_with(
            w, {CID.franking_agent: F.franking_agent_data(SUITE, b"\x01" * 32, HUB).encode()}),
        "metadata of another room": _group_info_with(w, {CID.room_metadata: W.RoomMetaData(
            W.IdentifierUri("mimi://a.example/r/x"), "", [], W.IdentifierUri(""), "", "").encode()}),
    }
    for why, (gi, creator) in bad.items():
        with pytest.raises(HubError):
            _create(w, gi, creator)
            pytest.fail(why)
    with pytest.raises(HubError):
        _create(w, b"\x00\x01garbage")
    with pytest.raises(HubError):  # creator is not a member of that group
        _create(w, _group_info_with(w, {})[0], w["A1"].uri)
    with pytest.raises(HubError):  # another hub's room
        _create(w, gi, creator, hub_domain="b.example")


# ====================================================================== adds and fanout


def test_add_user_with_participant_list_update_and_welcome_routing() -> None:
    w = World()
    before = w.room.digest()
    # B2's KeyPackage is not in the routing table: the hub falls back to the
    # domain of its client URI. Cathy's KP is "claimed via" x.example.
    res = w.add_user("A1", BOB, ["B1", "B2"])
    assert code_of(res) == "success"
    resp = update_response(res)
    assert resp.accepted_timestamp == BASE_MS + w.now
    assert w.room.epoch == 1
    assert w.room.participants() == {ALICE: ADMIN, BOB: MEMBER}
    assert [d.split("/")[-1] for d in w.room.members()] == ["A1", "B1", "B2"]
    assert w.room.follower_domains() == ["b.example"]
    assert w.room.digest() != before
    kinds = [(i.domain, i.kind) for i in res.fanout]
    # Flow 2 of the draft: b.example has no member yet, so it gets the
    # Welcome only; a.example's only member is the committer.
    assert kinds == [("b.example", "welcome")]
    welcome = W.FanoutMessage.decode(res.fanout[-1].body)
    assert welcome.ratchet_tree_option.representation == RatchetTreeRepresentation.full
    assert res.fanout[0].msg_id == msg_id_of(W.FanoutMessage.decode(res.fanout[0].body).message.encode())
    assert res.events[0].kind == "hub.accept" and res.events[0].status == "success"
    # Welcome routing: a table entry wins over the credential's domain.
    c1 = w.device(CATHY, "C1")
    kp, _ = w.key_package(c1)
    w.routes[SUITE.make_key_package_ref(kp.encode())] = "x.example"
    out = w.commit_out("A1", [plist(added=[(CATHY, MEMBER)]), _add(kp)])
    res = w.update(w.commit_body(out), "a.example")
    assert code_of(res) == "success"
    # The commit to b.example (Bob's clients), not to c.example (Cathy is
    # new) nor back to the committer's provider; the Welcome by the route.
    assert [(i.domain, i.kind) for i in res.fanout] == [("b.example", "commit"), ("x.example", "welcome")]


def test_commit_with_full_group_info_and_tree_options() -> None:
    w = World()
    b1 = w.device(BOB, "B1")
    kp, _ = w.key_package(b1)
    out = w.commit_out("A1", [plist(added=[(BOB, MEMBER)]), _add(kp)])
    rto = RatchetTreeOption(RatchetTreeRepresentation.out_of_band, None, None, b"sig")
    res = w.update(w.commit_body(out, full=True, rto=rto), "a.example")
    assert code_of(res) == "success"
    fm = W.FanoutMessage.decode(res.fanout[-1].body)
    assert fm.ratchet_tree_option.representation == RatchetTreeRepresentation.out_of_band
    assert w.room.observer.group_info().group_context == w.room.observer.context


def test_full_group_info_must_match_the_commit() -> None:
    w = three_users()
    out = w.commit_out("A1")
    wrong = w["C1"].group.group_info()  # type: ignore[union-attr]  # previous epoch
    body = W.UpdateRequest(W.HandshakeBundle.commit(
        out.message, W.GroupInfoOption.full(wrong),
        RatchetTreeOption(RatchetTreeRepresentation.distribution_service, None, None, None))).encode()
    before = w.room.digest()
    res = w.update(body, "a.example")
    assert res.response.status == 400
    assert w.room.digest() == before


# ====================================================================== response codes


def test_wrong_epoch_carries_the_current_epoch() -> None:
    w = three_users()
    out_b = w.commit_out("B1")
    g = w["B1"].group
    assert g is not None
    stale = g.propose_update()  # of epoch 2, sent after C1's commit
    assert code_of(w.commit("C1")) == "success"
    before = w.room.digest()
    res = w.update(w.commit_body(out_b), "b.example")
    resp = update_response(res)
    assert resp.response_code == W.UpdateResponseCode.wrongEpoch
    assert resp.current_epoch == w.room.epoch == 3
    assert w.room.digest() == before
    assert res.events[0].kind == "hub.reject" and res.events[0].status == "wrongEpoch"
    # Proposals of an old epoch too.
    resp = update_response(w.update(W.UpdateRequest(W.HandshakeBundle.proposals(stale)).encode(), "b.example"))
    assert resp.response_code == W.UpdateResponseCode.wrongEpoch and resp.current_epoch == 3
    assert w.room.digest() == before


NOT_ALLOWED = {
    # name: (actor, proposals(world)) -- Bob is a plain member
    "add participant": ("B1", lambda w: [plist(added=[(DAVE, MEMBER)]), _add(w.key_package(w.device(DAVE, "D1"))[0])]),
    "remove participant": ("B1", lambda w: [plist(removed=[w.index(CATHY)]), Proposal.of(Remove(3))]),
    "change role": ("B1", lambda w: [plist(changed=[(w.index(CATHY), ADMIN)])]),
    "change room name": ("B1", lambda w: [metadata("Bob's room")]),
    "ban": ("B1", lambda w: [plist(changed=[(w.index(CATHY), BANNED)]), Proposal.of(Remove(3))]),
    "kick": ("B1", lambda w: [Proposal.of(Remove(3))]),
    "add client of a non-participant": ("A1", lambda w: [_add(w.key_package(w.device(DAVE, "D1"))[0])]),
    "GroupContextExtensions changing room state": ("A1", lambda w: [_gce_without_dictionary(w)]),
}


def _gce_without_dictionary(w: World) -> Proposal:
    from mimisim.mls.structs import GroupContextExtensions

    return Proposal.of(GroupContextExtensions([w.extensions[0]]))


@pytest.mark.parametrize("name", sorted(NOT_ALLOWED))
@pytest.mark.parametrize("as_commit", [True, False])
def test_not_allowed_for_each_missing_capability(name: str, as_commit: bool) -> None:
    w = three_users()
    assert [d.split("/")[-1] for d in w.room.members()][3] == "C1"
    actor, make = NOT_ALLOWED[name]
    props = make(w)
    before = w.room.digest()
    if as_commit:
        res = w.commit(actor, props)
    else:
        res, _ = w.propose(actor, props, deliver=False)
    resp = update_response(res)
    assert resp.response_code == W.UpdateResponseCode.notAllowed, (name, resp.error_description)
    assert w.room.digest() == before


def test_admin_may_do_what_members_may_not() -> None:
    w = three_users()
    assert code_of(w.commit("A1", [metadata("Renamed")])) == "success"
    assert w.room.room_metadata().room_name == "Renamed"  # type: ignore[union-attr]
    assert code_of(w.commit("A1", [plist(changed=[(w.index(CATHY), ADMIN)])])) == "success"
    assert w.room.participants()[CATHY] == ADMIN
    # Bob may change the subject (his role has canChangeRoomSubject) but not the name.
    assert code_of(w.commit("B1", [metadata("Renamed", subject="hi")])) == "success"


def test_provider_speaks_only_for_its_clients() -> None:
    w = three_users()
    before = w.room.digest()
    res = w.commit("B1", from_domain="c.example")
    assert update_response(res).response_code == W.UpdateResponseCode.notAllowed
    res, _ = w.propose("B1", [Proposal.of(Remove(3))], from_domain="c.example", deliver=False)
    assert update_response(res).response_code == W.UpdateResponseCode.notAllowed
    assert w.room.digest() == before


def test_invalid_proposal_codes() -> None:
    w = three_users()
    before = w.room.digest()
    # A proposal the hub never saw, referenced by a commit.
    w["A1"].group.propose(Proposal.of(Remove(3)))  # type: ignore[union-attr]  # kept local
    out = w.commit_out("A1")
    res = w.update(w.commit_body(out), "a.example")
    resp = update_response(res)
    assert resp.response_code == W.UpdateResponseCode.invalidProposal
    assert resp.invalid_proposals == [out.message.body.content.commit.proposals[0].reference]
    w["A1"].group.discard_pending_commit()  # type: ignore[union-attr]
    assert w.room.digest() == before
    # A Remove of a blank leaf, sent as a proposal.
    g = w["C1"].group
    assert g is not None
    bad = g.propose(Proposal.of(Remove(17)))
    res = w.update(W.UpdateRequest(W.HandshakeBundle.proposals(bad)).encode(), "c.example")
    resp = update_response(res)
    assert resp.response_code == W.UpdateResponseCode.invalidProposal
    assert resp.invalid_proposals and len(resp.invalid_proposals[0]) == SUITE.hash_len
    assert w.room.digest() == before


def test_conflicting_proposals_are_refused_while_cached() -> None:
    w = three_users()
    res, _ = w.propose("A1", [plist(changed=[(w.index(CATHY), READER)])])
    assert code_of(res) == "success"
    before = w.room.digest()
    res, msgs = w.propose("A1", [plist(changed=[(w.index(CATHY), ADMIN)])], deliver=False)
    resp = update_response(res)
    assert resp.response_code == W.UpdateResponseCode.invalidProposal
    assert w.room.digest() == before


# ====================================================================== leave


def test_leave_flow() -> None:
    w = three_users()
    leaves = [plist(removed=[w.index(BOB)]), Proposal.of(Remove(1)), Proposal.of(Remove(2))]
    res, msgs = w.propose("B1", leaves)
    assert code_of(res) == "success"
    assert sorted({i.domain for i in res.fanout}) == ["a.example", "b.example", "c.example"]
    assert len(w.room.pending) == 3
    fm = W.FanoutMessage.decode(res.fanout[0].body)
    assert [m.encode() for m in fm.more_proposals or []] == [m.encode() for m in msgs[1:]]
    # Bob is already out of the room state: he cannot speak.
    assert code_of(w.submit("B2", b"still here?")[0]) == "notAllowed"
    # A commit that leaves the cached proposals out is refused.
    before = w.room.digest()
    res = w.commit("C1", include_pending=False)
    resp = update_response(res)
    assert resp.response_code == W.UpdateResponseCode.invalidProposal
    assert len(resp.invalid_proposals or []) == 3
    assert w.room.digest() == before
    # One that includes them is accepted; Bob's clients get the commit.
    res = w.commit("C1")
    assert code_of(res) == "success"
    assert BOB not in w.room.participants()
    assert not any("/bob/" in m for m in w.room.members())
    assert ("b.example", "commit") in [(i.domain, i.kind) for i in res.fanout]
    assert not w["B1"].active and not w["B2"].active
    assert w.room.pending == []
    assert w.room.follower_domains() == ["c.example"]


def test_a_retried_commit_or_proposal_is_answered_once() -> None:
    w = three_users()
    out = w.commit_out("C1")
    body = w.commit_body(out)
    first = w.update(body, "c.example")
    assert code_of(first) == "success"
    digest = w.room.digest()
    again = w.update(body, "c.example")
    assert code_of(again) == "success" and again.fanout == ()
    assert update_response(again).accepted_timestamp == update_response(first).accepted_timestamp
    assert w.room.digest() == digest
    w["C1"].group.merge_pending_commit()  # type: ignore[union-attr]
    w.deliver(first, sender=w["C1"])
    g = w["B1"].group
    assert g is not None
    p = g.propose(Proposal.of(Remove(2)))
    body = W.UpdateRequest(W.HandshakeBundle.proposals(p)).encode()
    assert code_of(w.update(body, "b.example")) == "success"
    digest = w.room.digest()
    again = w.update(body, "b.example")
    assert code_of(again) == "success" and again.fanout == ()
    assert w.room.digest() == digest


# ====================================================================== banned / removed users


def test_banned_user_may_only_send_remove_or_self_remove() -> None:
    w = three_users()
    res, _ = w.propose("A1", [plist(changed=[(w.index(BOB), BANNED)])])
    assert code_of(res) == "success"
    before = w.room.digest()
    b1 = w["B1"].group
    assert b1 is not None
    update = b1.propose_update()
    res = w.update(W.UpdateRequest(W.HandshakeBundle.proposals(update)).encode(), "b.example")
    assert update_response(res).response_code == W.UpdateResponseCode.notAllowed
    res, _ = w.propose("B1", [Proposal.of(Remove(3))], deliver=False)  # Cathy's client
    assert update_response(res).response_code == W.UpdateResponseCode.notAllowed
    assert update_response(w.commit("B1", include_pending=False)).response_code == W.UpdateResponseCode.notAllowed
    assert code_of(w.submit("B1", b"hi")[0]) == "notAllowed"
    assert w.room.digest() == before
    # Remove of his own other client and SelfRemove are allowed.
    res, _ = w.propose("B1", [Proposal.of(Remove(2))])
    assert code_of(res) == "success"
    sr = b1.propose_self_remove()
    res = w.update(W.UpdateRequest(W.HandshakeBundle.proposals(sr)).encode(), "b.example")
    assert code_of(res) == "success"
    w.deliver(res, sender=w["B1"])
    # The admin's commit of all of them bans Bob and removes his clients.
    res = w.commit("A1")
    assert code_of(res) == "success"
    assert w.room.participants()[BOB] == BANNED
    assert not any("/bob/" in m for m in w.room.members())


# ====================================================================== submit


def test_submit_message_franked_and_refused() -> None:
    w = three_users()
    res, content, aad = w.submit("C1", b"hello", franked=True)
    assert code_of(res) == "accepted"
    resp = W.SubmitMessageResponse.decode(res.response.body)
    ts = resp.accepted_timestamp
    assert ts == BASE_MS + w.now and resp.frank is not None
    check = F.verify_received_frank(SUITE, w.room.observer.context.extensions, ROOM, CATHY, aad, content,
                                    resp.frank, ts)
    assert check.ok, check.status
    fms = [W.FanoutMessage.decode(i.body) for i in res.fanout]
    # Cathy's only client sent it: nothing back to c.example.
    assert [i.domain for i in res.fanout] == ["a.example", "b.example"]
    assert all(fm.frank == resp.frank and fm.timestamp == ts for fm in fms)
    w.deliver(res, sender=w["C1"])
    assert w["B2"].received == [content]
    # unfranked when there is no tag
    res, _, _ = w.submit("C1", b"plain")
    assert W.SubmitMessageResponse.decode(res.response.body).frank is None
    # notAllowed: another provider speaking for Cathy, a non-user URI, a reader
    assert code_of(w.submit("C1", b"x", from_domain="b.example")[0]) == "notAllowed"
    assert code_of(w.submit("C1", b"x", sending_uri=w["C1"].uri)[0]) == "notAllowed"
    assert code_of(w.commit("A1", [plist(changed=[(w.index(CATHY), READER)])])) == "success"
    assert code_of(w.submit("C1", b"x")[0]) == "notAllowed"
    # epochTooOld: a message of the previous epoch
    g = w["B1"].group
    assert g is not None
    old = g.protect(b"late")
    assert code_of(w.commit("A1")) == "success"
    body = W.SubmitMessageRequest(W.MLS10, old, W.IdentifierUri(BOB)).encode()
    res = w.room.handle_submit(body, "b.example", 1)
    resp = W.SubmitMessageResponse.decode(res.response.body)
    assert resp.status_code == W.SubmitResponseCode.epochTooOld and resp.current_epoch == w.room.epoch


def test_submit_window_of_past_epochs() -> None:
    w = three_users()
    w.room.max_past_epochs = 1
    g = w["B1"].group
    assert g is not None
    old = g.protect(b"late")
    assert code_of(w.commit("A1")) == "success"
    body = W.SubmitMessageRequest(W.MLS10, old, W.IdentifierUri(BOB)).encode()
    assert code_of(w.room.handle_submit(body, "b.example", 1)) == "accepted"


# ====================================================================== groupInfo, external commit


def group_info_request(w: World, d: Device, code: bytes | None = None, cred: Credential | None = None,
                       key: bytes | None = None) -> tuple[bytes, bytes]:
    hpke_priv, hpke_pub = SUITE.generate_hpke_key_pair(d.rng.fork("gi"))
    req = W.GroupInfoRequest(W.MLS10, SUITE.suite_id, SUITE.signature_public_key(d.sig_priv),
                             cred or Credential.basic(d.uri.encode()), hpke_pub, code, b"")
    req.signature = SUITE.sign_with_label(key or d.sig_priv, b"GroupInfoRequestTBS", req.tbs().encode())
    return req.encode(), hpke_priv


def open_group_info(w: World, res: HubResult, hpke_priv: bytes) -> W.GroupInfoRatchetTreeTBE:
    resp = W.GroupInfoResponse.decode(res.response.body)
    assert resp.status == W.GroupInfoCode.success
    assert SUITE.verify_with_label(w.hub_pub, b"GroupInfoResponseTBS", resp.tbs().encode(), resp.signature)
    ct = resp.encrypted_groupinfo_and_tree
    pt = SUITE.decrypt_with_label(hpke_priv, W.GROUP_INFO_ENCRYPTION_LABEL, ROOM.encode(), ct.kem_output, ct.ciphertext)
    return W.GroupInfoRatchetTreeTBE.decode(pt)


def external_join(w: World, d: Device, tbe: W.GroupInfoRatchetTreeTBE) -> tuple[Group, bytes]:
    srs = [p.proposal for p in tbe.pending_proposals
           if p.proposal.body.content.proposal.proposal_type == 0x000A]
    g, commit = Group.external_join(tbe.group_info, Credential.basic(d.uri.encode()), d.sig_priv, d.rng.fork("ext"),
                                    ratchet_tree=tbe.ratchet_tree_option.ratchet_tree, self_removes=srs, config=CONFIG)
    gi = g.group_info()
    body = W.UpdateRequest(W.HandshakeBundle.commit(
        commit, W.GroupInfoOption.partial(partial_group_info(gi)),
        RatchetTreeOption(RatchetTreeRepresentation.distribution_service, None, None, None))).encode()
    return g, body


def test_group_info_and_external_commit_of_a_new_device() -> None:
    w = three_users()
    b3 = w.device(BOB, "B3")
    body, hpke_priv = group_info_request(w, b3)
    res = w.room.handle_group_info(body, "b.example", 5)
    tbe = open_group_info(w, res, hpke_priv)
    assert tbe.group_info.group_context == w.room.observer.context
    g, commit = external_join(w, b3, tbe)
    res = w.update(commit, "b.example")
    assert code_of(res) == "success", update_response(res).error_description
    b3.group = g
    w.deliver(res, sender=b3)
    assert b3.uri in w.room.members() and w.room.epoch == 3


def test_group_info_refusals() -> None:
    w = three_users()
    before = w.room.digest()
    eve = w.device(user_uri("e.example", "eve"), "E1")
    cases = [
        (group_info_request(w, eve)[0], "e.example"),  # not a participant
        (group_info_request(w, w.device(BOB, "B9"), key=eve.sig_priv)[0], "b.example"),  # bad signature
        (group_info_request(w, w.device(BOB, "B8"))[0], "c.example"),  # wrong provider
    ]
    for body, dom in cases:
        res = w.room.handle_group_info(body, dom, 5)
        resp = W.GroupInfoResponse.decode(res.response.body)
        assert resp.status == W.GroupInfoCode.notAuthorized
        assert w.room.digest() == before


def test_pending_proposals_travel_with_the_group_info() -> None:
    w = three_users()
    g = w["C1"].group
    assert g is not None
    sr = g.propose_self_remove()
    res = w.update(W.UpdateRequest(W.HandshakeBundle.proposals(sr)).encode(), "c.example")
    assert code_of(res) == "success"
    w.deliver(res, sender=w["C1"])
    b3 = w.device(BOB, "B3")
    body, priv = group_info_request(w, b3)
    tbe = open_group_info(w, w.room.handle_group_info(body, "b.example", 5), priv)
    assert [p.proposal.encode() for p in tbe.pending_proposals] == [sr.encode()]
    g3, commit = external_join(w, b3, tbe)
    res = w.update(commit, "b.example")
    assert code_of(res) == "success"
    b3.group = g3
    w.deliver(res, sender=b3)
    assert w["C1"].uri not in w.room.members()


def test_external_commit_of_a_non_participant() -> None:
    w = three_users()
    d1 = w.device(DAVE, "D1")
    before = w.room.digest()
    # Without a joining code: no GroupInfo, and an external commit is refused.
    res = w.room.handle_group_info(group_info_request(w, d1)[0], "d.example", 5)
    assert W.GroupInfoResponse.decode(res.response.body).status == W.GroupInfoCode.notAuthorized
    b3 = w.device(BOB, "B3")
    body, priv = group_info_request(w, b3)
    tbe = open_group_info(w, w.room.handle_group_info(body, "b.example", 5), priv)
    _, commit = external_join(w, d1, tbe)
    assert update_response(w.update(commit, "d.example")).response_code == W.UpdateResponseCode.notAllowed
    assert w.room.digest() == before
    # With a joining code the hub admits Dave and staples the list change.
    w.room.add_joining_code(b"letmein", MEMBER)
    body, priv = group_info_request(w, d1, code=b"letmein")
    tbe = open_group_info(w, w.room.handle_group_info(body, "d.example", 5), priv)
    g, commit = external_join(w, d1, tbe)
    res = w.update(commit, "d.example")
    assert code_of(res) == "success", update_response(res).error_description
    d1.group = g
    w.deliver(res, sender=d1)
    fm = W.FanoutMessage.decode(res.fanout[0].body)
    assert len(fm.external_proposals or []) == 1
    assert len(w.room.pending) == 1 and w.room.pending[0].origin == "hub"
    # The next commit must include the hub's proposal; then Dave is listed.
    assert update_response(w.commit("A1", include_pending=False)).response_code == W.UpdateResponseCode.invalidProposal
    d1.group.process(fm.external_proposals[0])  # the joiner saw the stapled proposal  # type: ignore[union-attr]
    assert code_of(w.commit("A1")) == "success"
    assert w.room.participants()[DAVE] == MEMBER


def test_open_join_room() -> None:
    w = three_users(open_join=True)
    d1 = w.device(DAVE, "D1")
    body, priv = group_info_request(w, d1)
    tbe = open_group_info(w, w.room.handle_group_info(body, "d.example", 5), priv)
    g, commit = external_join(w, d1, tbe)
    assert code_of(w.update(commit, "d.example")) == "success"


# ====================================================================== abuse


def test_report_abuse() -> None:
    w = three_users()
    res, content, _ = w.submit("C1", b"abusive", franked=True)
    frank = W.SubmitMessageResponse.decode(res.response.body).frank
    ts = W.SubmitMessageResponse.decode(res.response.body).accepted_timestamp
    assert frank is not None and ts is not None
    msg = W.AbusiveMessage(content, frank, ts)
    report = W.AbuseReport(W.IdentifierUri(BOB), W.IdentifierUri(CATHY), 0, "rude", [msg], AppDataDictionary([]))
    res = w.room.handle_report_abuse(report.encode(), "b.example", 50)
    assert res.response.status == 201
    assert len(w.room.abuse_reports) == 1 and w.room.abuse_reports[0].alleged_abuser == CATHY
    before = w.room.digest()
    forged = W.AbusiveMessage(content, W.Frank(bytes(32), frank.franking_signature_ciphersuite,
                                               frank.franking_integrity_signature), ts)
    report.messages = [forged]
    assert w.room.handle_report_abuse(report.encode(), "b.example", 60).response.status == 403
    report.messages = [msg]
    assert w.room.handle_report_abuse(report.encode(), "c.example", 60).response.status == 403  # not Bob's provider
    assert w.room.digest() == before


# ====================================================================== hub removal


def test_hub_originated_removal_of_a_user() -> None:
    w = three_users()
    res = w.room.propose_remove_user(BOB, 100)
    assert code_of(res) == "success"
    fm = W.FanoutMessage.decode(res.fanout[0].body)
    assert len([fm.message, *(fm.more_proposals or [])]) == 3  # two Removes and the list update
    w.deliver(res)
    assert w.room.removal_intents == [BOB]
    assert code_of(w.room.propose_remove_user(DAVE, 101)).startswith("Not Found")
    assert code_of(w.commit("A1")) == "success"
    assert BOB not in w.room.participants() and w.room.removal_intents == []
    assert not any("/bob/" in m for m in w.room.members())


def test_hub_removal_survives_an_external_commit() -> None:
    w = three_users()
    w.deliver(w.room.propose_remove_user(CATHY, 100))
    b3 = w.device(BOB, "B3")
    body, priv = group_info_request(w, b3)
    tbe = open_group_info(w, w.room.handle_group_info(body, "b.example", 5), priv)
    g, commit = external_join(w, b3, tbe)
    res = w.update(commit, "b.example")
    assert code_of(res) == "success"
    b3.group = g
    fm = W.FanoutMessage.decode(res.fanout[0].body)
    assert len(fm.external_proposals or []) == 2  # regenerated for the new epoch
    w.deliver(res, sender=b3)
    for p in fm.external_proposals or []:
        g.process(p)
    assert code_of(w.commit("A1")) == "success"
    assert CATHY not in w.room.participants()


def test_follower_external_proposals_may_only_remove_its_own_clients() -> None:
    w = three_users(followers=["b.example"])
    index, priv = w.followers["b.example"]

    def external(leaf: int) -> bytes:
        m = external_proposal(SUITE, group_id_of_room(ROOM), w.room.epoch, index, priv, Proposal.of(Remove(leaf)))
        return W.UpdateRequest(W.HandshakeBundle.proposals(m)).encode()

    before = w.room.digest()
    assert update_response(w.update(external(3), "b.example")).response_code == W.UpdateResponseCode.notAllowed
    assert update_response(w.update(external(2), "c.example")).response_code == W.UpdateResponseCode.notAllowed
    assert w.room.digest() == before
    res = w.update(external(2), "b.example")  # B2, a client of b.example: e.g. a deleted device
    assert code_of(res) == "success"
    w.deliver(res)
    assert code_of(w.commit("A1")) == "success"
    assert w["B2"].uri not in w.room.members()


# ====================================================================== bad bodies


def _accepted(res: HubResult) -> bool:
    return res.response.status == 201 or (res.response.status == 200 and res.response.code in ("success", "accepted"))


def _mutations(body: bytes, rnd: random.Random, n: int) -> list[bytes]:
    out = [b"", body[:1], body[: len(body) // 2], body[:-1], body + b"\x00"]
    for _ in range(n):
        b = bytearray(body)
        i = rnd.randrange(len(b))
        b[i] ^= 1 << rnd.randrange(8)
        out.append(bytes(b))
    return out


def test_bad_bodies_never_raise_and_change_nothing() -> None:
    w = three_users()
    rnd = random.Random(7)
    update_body = w.commit_body(w.commit_out("B1", [Proposal.of(Remove(3))]))
    w["B1"].group.discard_pending_commit()  # type: ignore[union-attr]
    g = w["C1"].group
    assert g is not None
    prop_body = W.UpdateRequest(W.HandshakeBundle.proposals(g.propose(Proposal.of(Remove(1))))).encode()
    submit_body = W.SubmitMessageRequest(W.MLS10, g.protect(b"x"), W.IdentifierUri(CATHY)).encode()
    gi_body = group_info_request(w, w.device(BOB, "B7"))[0]
    report = W.AbuseReport(W.IdentifierUri(BOB), W.IdentifierUri(CATHY), 0, "", [], AppDataDictionary([])).encode()
    bodies = [update_body, prop_body, submit_body, gi_body, report]
    handlers = {
        "update": lambda b, d: w.room.handle_update(b, d, 1000, w.routes.get),
        "submit": lambda b, d: w.room.handle_submit(b, d, 1000),
        "groupInfo": lambda b, d: w.room.handle_group_info(b, d, 1000),
        "reportAbuse": lambda b, d: w.room.handle_report_abuse(b, d, 1000),
    }
    count = 0
    for body in bodies:
        for m in _mutations(body, rnd, 40):
            for name, h in handlers.items():
                for dom in ("b.example", "c.example"):
                    before = w.room.digest()
                    res = h(m, dom)
                    count += 1
                    assert isinstance(res, HubResult)
                    assert res.response.status in (200, 201, 400, 403, 404), (name, res.response)
                    if res.response.status == 200:
                        assert res.response.code in (
                            "success", "accepted", "wrongEpoch", "notAllowed", "invalidProposal", "epochTooOld",
                            "notAuthorized", "noSuchRoom",
                        )
                    if not _accepted(res):
                        assert w.room.digest() == before, (name, res.response)
                        assert res.fanout == ()
    assert count > 1500


def test_submit_retried_after_a_lost_answer_is_accepted_once() -> None:
    """A provider that retries /submitMessage (its answer was lost) gets the
    same answer again and the message is not fanned out a second time; the
    same bytes from another provider are still refused."""
    w = three_users()
    g = w["B1"].group
    assert g is not None
    body = W.SubmitMessageRequest(W.MLS10, g.protect(b"once"), W.IdentifierUri(BOB)).encode()
    first = w.room.handle_submit(body, "b.example", 10)
    again = w.room.handle_submit(body, "b.example", 900)
    assert code_of(first) == code_of(again) == "accepted"
    assert first.fanout and not again.fanout
    assert again.response.body == first.response.body  # same accepted timestamp and frank
    assert "duplicate" in again.events[0].detail
    before = w.room.digest()
    assert code_of(w.room.handle_submit(body, "c.example", 901)) == "notAllowed"
    assert w.room.digest() == before
