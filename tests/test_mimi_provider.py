"""The provider core (``ProviderCore.handle_request``) endpoint by endpoint.

Why these tests: a provider is what other providers talk to. The hub tests
(tests/test_mimi_hub.py) drive :class:`HubRoom` directly; here every response
code of every provider-to-provider endpoint is reached *through the
provider's routing* -- ``From`` vs. the TLS peer, ``Host``, which room, which
service -- with bodies built by real :class:`ClientCore` s and real MLS groups
(three providers and the in-memory dispatcher, as in tests/test_mimi_flows.py).
A refused request must leave ``provider.digest()`` unchanged.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, field

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from mimisim.mimi import wire as W
from mimisim.mimi.client import ClientCore
from mimisim.mimi.consent import ConsentStore
from mimisim.mimi.endpoints import Endpoint
from mimisim.mimi.hub import msg_id_of
from mimisim.mimi.identifiers import (
    ProviderSearchPolicy,
    SearchPolicy,
    UserRecord,
    identifier_request,
    query_element,
)
from mimisim.mimi.inmemory import InMemoryWorld
from mimisim.mimi.provider import ProviderConfig, ProviderCore
from mimisim.mimi.transport import (
    ClientMessage,
    ClientOp,
    ClientReply,
    Deliver,
    HttpReply,
    MimiRequest,
    MimiResponse,
    Outcome,
    SendRequest,
)
from mimisim.mls.crypto import DeterministicRandom, get_suite
from mimisim.mls.group import Group, StagedCommit
from mimisim.mls.observer import partial_group_info
from mimisim.mls.structs import (
    AppDataDictionary,
    AppDataUpdate,
    AppDataUpdateOperation,
    Credential,
    MLSMessage,
    Proposal,
    RatchetTreeOption,
    RatchetTreeRepresentation,
    Remove,
    RequiredCapabilities,
)
from tests.hypothesis_profiles import examples

SUITE = get_suite(1)
BASE_MS = 1_700_000_000_000
A, B, C = "a.example", "b.example", "c.example"
ROOM = "mimi://a.example/r/clubhouse"
ALICE, BOB, CATHY = "mimi://a.example/u/alice", "mimi://b.example/u/bob", "mimi://c.example/u/cathy"
DAVE = "mimi://b.example/u/dave"
UC, CC = W.KeyMaterialUserCode, W.KeyMaterialClientCode
UPD = W.UpdateResponseCode
BANNED = 1


# ====================================================================== the world


@dataclass
class Net:
    """Three providers, Alice (A1, the room's creator), Bob (B1, B2) and Cathy
    (C1) in ``ROOM`` at a.example; every inbound provider request logged."""

    w: InMemoryWorld
    cl: dict[str, ClientCore]
    log: list[tuple[str, MimiRequest, str, MimiResponse | None]] = field(default_factory=list)

    def p(self, domain: str) -> ProviderCore:
        return self.w.providers[domain]

    def answers(self, receiver: str, endpoint: Endpoint, sender: str) -> list[MimiResponse | None]:
        return [r for d, q, peer, r in self.log if d == receiver and q.endpoint == endpoint and peer == sender]

    def call(self, receiver: str, endpoint: Endpoint, target: str, body: bytes, frm: str,
             peer: str | None = None, txn: str = "", host: str | None = None) -> Outcome:
        """One request straight into ``receiver``'s core (nothing dispatched)."""
        req = MimiRequest(endpoint, target, frm, host or receiver, body, txn)
        return self.p(receiver).handle_request(req, peer or frm, self.w.now_ms)

    def group(self, name: str) -> Group:
        """A private copy of a client's group, to craft messages with
        (the ClientCore itself stays untouched)."""
        g = self.cl[name].group(ROOM)
        assert g is not None
        return copy.deepcopy(g)


def _record(net: Net, p: ProviderCore) -> None:
    inner = p.handle_request

    def handle_request(req: MimiRequest, peer: str, now_ms: int, inbound: int = 0) -> Outcome:
        out = inner(req, peer, now_ms, inbound)
        net.log.append((p.domain, req, peer, out.response))
        return out

    p.handle_request = handle_request  # type: ignore[method-assign]


def build(seed: int = 1, config: ProviderConfig | None = None) -> Net:
    root = DeterministicRandom(seed, "provider-test")
    w = InMemoryWorld()
    net = Net(w, {})
    for d in (A, B, C):
        p = ProviderCore.new(d, root.fork("provider " + d), config)
        _record(net, p)
        w.add_provider(p)
    for name, uri in (("a1", "mimi://a.example/d/alice/A1"), ("b1", "mimi://b.example/d/bob/B1"),
                      ("b2", "mimi://b.example/d/bob/B2"), ("c1", "mimi://c.example/d/cathy/C1")):
        c = ClientCore(uri, 1, root.fork(uri), now_s=BASE_MS // 1000)
        w.add_client(c)
        net.cl[name] = c
    for name in ("b1", "b2", "c1"):
        w.client_step(net.cl[name].client_uri, net.cl[name].upload_key_packages(2))
    a1, b1 = net.cl["a1"], net.cl["b1"]
    hub = net.p(A)
    w.client_step(a1.client_uri, a1.create_room(ROOM, hub_signature_key=hub.hub_signature_pub,
                                                 hub_franking_key=hub.franking_key, now_ms=0))
    w.client_step(a1.client_uri, a1.add_user(ROOM, BOB, w.now_ms))
    w.client_step(b1.client_uri, b1.add_user(ROOM, CATHY, w.now_ms))
    assert hub.rooms[ROOM].participants().keys() == {ALICE, BOB, CATHY}
    return net


def update_response(out: Outcome) -> W.UpdateRoomResponse:
    assert out.response is not None and out.response.status == 200, out.response
    return W.UpdateRoomResponse.decode(out.response.body)


def commit_body(g: Group, proposals: list[Proposal] | None = None, **kw: object) -> tuple[bytes, MLSMessage]:
    out = g.commit(list(proposals or []), **kw)  # type: ignore[arg-type]
    gio = W.GroupInfoOption.partial(partial_group_info(out.group_info))
    rto = RatchetTreeOption(RatchetTreeRepresentation.distribution_service, None, None, None)
    welcome = out.welcome.body if out.welcome is not None else None
    return W.UpdateRequest(W.HandshakeBundle.commit(out.message, gio, rto, welcome)).encode(), out.message


def proposals_body(*msgs: MLSMessage) -> bytes:
    return W.UpdateRequest(W.HandshakeBundle.proposals(msgs[0], list(msgs[1:]))).encode()


def leaf_of(g: Group, client_uri: str) -> int:
    return next(i for i, leaf in g.members() if leaf.credential.identity == client_uri.encode())


def plist(changed: list[tuple[int, int]] = (), removed: list[int] = ()) -> Proposal:  # type: ignore[assignment]
    upd = W.ParticipantListUpdate([W.UserindexRolePair(i, r) for i, r in changed], list(removed), [])
    return Proposal.of(AppDataUpdate(W.ComponentId.participant_list, AppDataUpdateOperation.update, upd.encode()))


def kmr(client: ClientCore, target: str, room: str = ROOM, suites: tuple[int, ...] = (1,),
        required: RequiredCapabilities | None = None, *, requesting: str | None = None,
        credential: Credential | None = None, sign_key: bytes | None = None) -> bytes:
    """A signed -06 KeyMaterialRequest of ``client``'s user (or ``requesting``)."""
    tbs = W.KeyMaterialRequestTBS(
        W.MLS10, W.IdentifierUri(requesting or client.user_uri), W.IdentifierUri(target), W.IdentifierUri(room),
        list(suites), required or RequiredCapabilities([], [], []), client.signature_pub,
        credential or client.credential,
    )
    sig = SUITE.sign_with_label(sign_key or client.signature_priv, b"KeyMaterialRequestTBS", tbs.encode())
    return W.KeyMaterialRequest(
        tbs.protocol, tbs.requesting_user, tbs.target_user, tbs.room_id, tbs.acceptable_ciphersuites,
        tbs.required_capabilities, tbs.requester_signature_key, tbs.requester_credential, sig,
    ).encode()


def km(out: Outcome) -> W.KeyMaterialResponse:
    assert out.response is not None and out.response.status == 200, out.response
    return W.KeyMaterialResponse.decode(out.response.body)


def gi_request(client: ClientCore, sign_key: bytes | None = None, credential: Credential | None = None,
               suite_id: int = 1) -> bytes:
    _, hpke_pub = SUITE.generate_hpke_key_pair(DeterministicRandom(5, client.client_uri))
    req = W.GroupInfoRequest(W.MLS10, suite_id, client.signature_pub, credential or client.credential,
                             hpke_pub, None, b"")
    req.signature = SUITE.sign_with_label(sign_key or client.signature_priv, b"GroupInfoRequestTBS",
                                          req.tbs().encode())
    return req.encode()


def gi_status(out: Outcome) -> W.GroupInfoCode:
    assert out.response is not None and out.response.status == 200, out.response
    return W.GroupInfoCode(W.GroupInfoResponse.decode(out.response.body).status)


def refused(net: Net, domain: str, fn: Callable[[], Outcome]) -> Outcome:
    """Run ``fn``; the provider's state must not change."""
    before = net.p(domain).digest()
    out = fn()
    assert net.p(domain).digest() == before, out.response
    assert not [a for a in out.actions if isinstance(a, (SendRequest, Deliver))]
    return out


# ====================================================================== transport-level checks


def test_from_must_match_the_tls_peer_and_host_must_be_us() -> None:
    net = build()
    body = kmr(net.cl["c1"], BOB)
    out = refused(net, B, lambda: net.call(B, Endpoint.KEY_MATERIAL, BOB, body, frm=C, peer=A))
    assert out.response is not None and out.response.status == 403
    assert out.events[0].kind == "provider.reject"
    out = refused(net, B, lambda: net.call(B, Endpoint.KEY_MATERIAL, BOB, body, frm=C, host=A))
    assert out.response is not None and out.response.status == 421
    for ep in Endpoint:
        if ep == Endpoint.PROXY_DOWNLOAD:
            out = refused(net, A, lambda ep=ep: net.call(A, ep, "https://x.example/f", b"", frm=B))
            assert out.response is not None and out.response.status == 404  # not served
            continue
        out = refused(net, A, lambda ep=ep: net.call(A, ep, ROOM, body, frm=B, peer=C))
        assert out.response is not None and out.response.status == 403, ep


def test_unknown_room_is_404_except_group_info_which_says_no_such_room() -> None:
    net = build()
    nowhere = "mimi://a.example/r/nowhere"
    g = net.group("b1")
    upd, _ = commit_body(g)
    sub = W.SubmitMessageRequest(W.MLS10, g.protect(b"x"), W.IdentifierUri(BOB)).encode()
    rep = W.AbuseReport(W.IdentifierUri(BOB), W.IdentifierUri(CATHY), 0, "", [], AppDataDictionary([])).encode()
    for ep, body in ((Endpoint.UPDATE, upd), (Endpoint.SUBMIT_MESSAGE, sub), (Endpoint.REPORT_ABUSE, rep)):
        out = refused(net, A, lambda ep=ep, body=body: net.call(A, ep, nowhere, body, frm=B))
        assert out.response is not None and out.response.status == 404, ep
    out = refused(net, A, lambda: net.call(A, Endpoint.GROUP_INFO, nowhere, gi_request(net.cl["b1"]), frm=B))
    assert gi_status(out) == W.GroupInfoCode.noSuchRoom
    assert W.GroupInfoResponse.decode(out.response.body).room_id == nowhere  # type: ignore[union-attr]
    # A room of another hub is no room of ours either; a malformed body stays 400.
    out = net.call(B, Endpoint.GROUP_INFO, ROOM, gi_request(net.cl["b1"]), frm=C)
    assert gi_status(out) == W.GroupInfoCode.noSuchRoom
    out = refused(net, A, lambda: net.call(A, Endpoint.GROUP_INFO, nowhere, b"\x01", frm=B))
    assert out.response is not None and out.response.status == 400


def test_a_local_client_asking_for_a_missing_room_of_its_own_hub() -> None:
    net = build()
    a1 = net.cl["a1"]
    msg = ClientMessage(a1.client_uri, ClientOp.fetch_group_info, 77, gi_request(a1), "mimi://a.example/r/gone")
    out = net.p(A).handle_client(msg, 0)
    assert not [a for a in out.actions if isinstance(a, SendRequest)]  # no request to itself
    (reply,) = out.actions
    assert isinstance(reply, ClientReply) and reply.status == 200 and reply.code == "noSuchRoom"


# ====================================================================== /keyMaterial


def test_key_material_user_and_client_codes() -> None:
    net = build()
    b, c1 = net.p(B), net.cl["c1"]

    def claim(target: str, **kw: object) -> W.KeyMaterialResponse:
        return km(net.call(B, Endpoint.KEY_MATERIAL, target, kmr(c1, target, **kw), frm=C))  # type: ignore[arg-type]

    # success: one KeyPackage per client of Bob.
    r = claim(BOB)
    assert r.user_status == UC.success and [x.client_status for x in r.clients] == [CC.success, CC.success]
    # partialSuccess: a third client of Bob has no KeyPackage left.
    assert b.keystore.add_client("mimi://b.example/d/bob/B3") is None
    r = claim(BOB)
    assert r.user_status == UC.partialSuccess
    assert [x.client_status for x in r.clients] == [CC.success, CC.success, CC.keyMaterialExhausted]
    # noCompatibleMaterial: Dave's only client has nothing.
    assert b.keystore.add_client("mimi://b.example/d/dave/D1") is None
    before = b.digest()
    r = claim(DAVE)
    assert r.user_status == UC.noCompatibleMaterial and [x.client_status for x in r.clients] == [
        CC.keyMaterialExhausted]
    assert b.digest() == before
    # nothingCompatible: ciphersuite filtering, and capability filtering (capabilities revealed).
    r = claim(BOB, suites=(3,))
    assert r.user_status == UC.noCompatibleMaterial
    assert {x.client_status for x in r.clients} == {CC.nothingCompatible, CC.keyMaterialExhausted}
    r = claim(BOB, required=RequiredCapabilities([0xFF0A], [], []))
    assert r.user_status == UC.noCompatibleMaterial
    assert [x.client_capabilities is not None for x in r.clients[:2]] == [True, True]
    assert b.digest() == before
    # userUnknown, userDeleted
    assert claim("mimi://b.example/u/nobody").user_status == UC.userUnknown
    b.keystore.delete_user(DAVE)
    before = b.digest()
    assert claim(DAVE).user_status == UC.userDeleted
    assert b.digest() == before


def test_key_material_incompatible_protocol() -> None:
    """[P6] s.5.2: a request in a protocol the provider does not speak gets
    the user code incompatibleProtocol (reading only the fields every
    protocol shares), not a 400; nothing changes; a body whose shared fields
    do not decode is still a 400."""
    net = build()
    b, c1 = net.p(B), net.cl["c1"]
    body = bytearray(kmr(c1, BOB))
    assert body[0] == int(W.Protocol.mls10)
    body[0] = 7
    before = b.digest()
    out = net.call(B, Endpoint.KEY_MATERIAL, BOB, bytes(body), frm=C)
    r = km(out)
    assert r.user_status == UC.incompatibleProtocol and r.user_uri.uri == BOB and r.clients == []
    assert b.digest() == before
    bad = net.call(B, Endpoint.KEY_MATERIAL, BOB, bytes([7, 0xFF]), frm=C).response
    assert bad is not None and bad.status == 400


def test_key_material_consent_codes() -> None:
    net = build()
    b, c1, a1 = net.p(B), net.cl["c1"], net.cl["a1"]
    assert b.consent_store is not None
    # Open consent (the default): Bob revokes Cathy for every room, Alice for this room only.
    assert b.consent_store.revoke(CATHY, BOB).ok
    assert b.consent_store.revoke(ALICE, BOB, ROOM).ok
    before = b.digest()
    assert km(net.call(B, Endpoint.KEY_MATERIAL, BOB, kmr(c1, BOB), frm=C)).user_status == UC.noConsent
    out = net.call(B, Endpoint.KEY_MATERIAL, BOB, kmr(a1, BOB), frm=A)
    assert km(out).user_status == UC.noConsentForThisRoom and km(out).clients == []
    assert b.digest() == before
    assert km(net.call(B, Endpoint.KEY_MATERIAL, BOB, kmr(a1, BOB, room=""), frm=A)).user_status == UC.success
    # Explicit consent: nothing without a grant; a grant for another room is noConsentForThisRoom.
    b.consent_store = ConsentStore(B)
    before = b.digest()
    assert km(net.call(B, Endpoint.KEY_MATERIAL, BOB, kmr(c1, BOB), frm=C)).user_status == UC.noConsent
    assert b.consent_store.grant(CATHY, BOB, "mimi://a.example/r/other").ok
    assert km(net.call(B, Endpoint.KEY_MATERIAL, BOB, kmr(c1, BOB), frm=C)).user_status == UC.noConsentForThisRoom
    assert b.consent_store.grant(CATHY, BOB, ROOM).ok
    assert km(net.call(B, Endpoint.KEY_MATERIAL, BOB, kmr(c1, BOB), frm=C)).user_status == UC.success
    # An explicit consent callable overrides the store.
    b.consent = lambda requester, target, room: UC.noConsentForThisRoom
    assert km(net.call(B, Endpoint.KEY_MATERIAL, BOB, kmr(c1, BOB), frm=C)).user_status == UC.noConsentForThisRoom
    assert before != b.digest()


def test_key_material_requests_must_be_signed_by_the_requester() -> None:
    net = build()
    b, c1, b2 = net.p(B), net.cl["c1"], net.cl["b2"]
    before = b.digest()
    forged = kmr(c1, BOB, sign_key=b2.signature_priv)  # signature by another key
    assert km(refused(net, B, lambda: net.call(B, Endpoint.KEY_MATERIAL, BOB, forged, frm=C))).user_status == (
        UC.noConsent)
    # Signed correctly, but the credential is a client of another user.
    other = kmr(c1, BOB, credential=Credential.basic(b"mimi://c.example/d/carol/X1"))
    assert km(net.call(B, Endpoint.KEY_MATERIAL, BOB, other, frm=C)).user_status == UC.noConsent
    assert b.digest() == before
    # Unsigned requests are accepted only when the provider does not require signatures.
    lax = build(2, ProviderConfig(require_signed_key_requests=False))
    forged = kmr(lax.cl["c1"], BOB, sign_key=lax.cl["b2"].signature_priv)
    assert km(lax.call(B, Endpoint.KEY_MATERIAL, BOB, forged, frm=C)).user_status == UC.success


def test_key_material_requester_path_and_proxy_checks() -> None:
    net = build()
    c1 = net.cl["c1"]
    # b.example asking in Cathy's name (it is neither her provider nor the room's hub).
    out = refused(net, B, lambda: net.call(B, Endpoint.KEY_MATERIAL, BOB, kmr(c1, BOB, room=""), frm=A))
    assert out.response is not None and out.response.status == 403
    # Body and path disagree on the target.
    out = refused(net, B, lambda: net.call(B, Endpoint.KEY_MATERIAL, DAVE, kmr(c1, BOB), frm=C))
    assert out.response is not None and out.response.status == 400
    # The hub of the named room may ask for anyone (it proxies); outside its rooms it may not.
    assert km(net.call(B, Endpoint.KEY_MATERIAL, BOB, kmr(c1, BOB), frm=A)).user_status == UC.success
    other_room = "mimi://c.example/r/elsewhere"
    out = refused(net, B, lambda: net.call(B, Endpoint.KEY_MATERIAL, BOB, kmr(c1, BOB, room=other_room), frm=A))
    assert out.response is not None and out.response.status == 403
    out = refused(net, A, lambda: net.call(A, Endpoint.KEY_MATERIAL, BOB,
                                           kmr(c1, BOB, room="mimi://a.example/r/nowhere"), frm=C))
    assert out.response is not None and out.response.status == 403  # a hub proxies only for its rooms
    # A proxied claim: deferred answer, route recorded when the answer comes.
    hub = net.p(A)
    out = net.call(A, Endpoint.KEY_MATERIAL, BOB, kmr(c1, BOB), frm=C)
    assert out.response is None
    (send,) = out.actions
    assert isinstance(send, SendRequest) and send.request.host == B and send.request.from_domain == A
    answer = net.p(B).handle_request(send.request, A, 0)
    assert answer.response is not None
    n = len(hub.routing)
    back = hub.handle_response(send.token, answer.response, 0)
    assert isinstance(back.actions[0], HttpReply) and back.actions[0].response == answer.response
    assert len(hub.routing) == n + 2  # Bob's two clients


def test_reserved_protocol_is_a_bad_request() -> None:
    # reserved(0) is never valid on the wire: a 400 (any other unknown
    # protocol is incompatibleProtocol, test above).
    net = build()
    body = bytearray(kmr(net.cl["c1"], BOB))
    assert body[0] == W.MLS10
    body[0] = 0
    out = refused(net, B, lambda: net.call(B, Endpoint.KEY_MATERIAL, BOB, bytes(body), frm=C))
    assert out.response is not None and out.response.status == 400


# ====================================================================== /update


def test_update_success_through_the_provider() -> None:
    net = build()
    (resp,) = net.answers(A, Endpoint.UPDATE, B)  # Bob added Cathy
    assert resp is not None and resp.code == "success"
    r = W.UpdateRoomResponse.decode(resp.body)
    assert r.response_code == UPD.success and r.accepted_timestamp is not None
    assert [x.status for x in net.answers(C, Endpoint.NOTIFY, A)] == [201]  # type: ignore[union-attr]


def test_update_wrong_epoch_not_allowed_invalid_proposal() -> None:
    net = build()
    hub = net.p(A)
    stale, _ = commit_body(net.group("c1"))
    # Alice commits (an empty commit, through her provider): the room moves to the next epoch.
    ga = net.group("a1")
    body, _ = commit_body(ga)
    out = hub.handle_client(ClientMessage(net.cl["a1"].client_uri, ClientOp.update, 900, body, ROOM), 0)
    assert isinstance(out.actions[0], ClientReply) and out.actions[0].code == "success"
    before = hub.digest()
    r = update_response(net.call(A, Endpoint.UPDATE, ROOM, stale, frm=C))
    assert r.response_code == UPD.wrongEpoch and r.current_epoch == hub.rooms[ROOM].epoch
    assert hub.digest() == before
    # Cathy's client processes Alice's commit (a private copy), then is refused:
    gc = net.group("c1")
    (commit_deliver,) = [a for a in out.actions if isinstance(a, SendRequest) and a.request.host == C]
    fm = W.decode_fanout_messages(commit_deliver.request.body)[0]
    staged = gc.process(fm.message)
    assert isinstance(staged, StagedCommit)
    gc.merge(staged)
    # notAllowed: Cathy (ordinary_user) kicks Bob's client; or c.example speaks for Bob.
    kick, _ = commit_body(copy.deepcopy(gc), [Proposal.of(Remove(leaf_of(gc, net.cl["b2"].client_uri)))])
    assert update_response(net.call(A, Endpoint.UPDATE, ROOM, kick, frm=C)).response_code == UPD.notAllowed
    empty, _ = commit_body(copy.deepcopy(gc))
    assert update_response(net.call(A, Endpoint.UPDATE, ROOM, empty, frm=B)).response_code == UPD.notAllowed
    # invalidProposal: a Remove of a blank leaf; a commit referencing a proposal the hub never saw.
    bad = copy.deepcopy(gc).propose(Proposal.of(Remove(17)))
    r = update_response(net.call(A, Endpoint.UPDATE, ROOM, proposals_body(bad), frm=C))
    assert r.response_code == UPD.invalidProposal and r.invalid_proposals
    g2 = copy.deepcopy(gc)
    g2.propose(plist(changed=[(0, 2)]))  # kept local
    unseen, _ = commit_body(g2)
    r = update_response(net.call(A, Endpoint.UPDATE, ROOM, unseen, frm=C))
    assert r.response_code == UPD.invalidProposal and len(r.invalid_proposals or []) == 1
    assert hub.digest() == before
    # The same empty commit from its own provider is accepted.
    assert update_response(net.call(A, Endpoint.UPDATE, ROOM, empty, frm=C)).response_code == UPD.success
    # 400 for a body that is no UpdateRequest.
    out = refused(net, A, lambda: net.call(A, Endpoint.UPDATE, ROOM, b"\x00\x01\x02", frm=C))
    assert out.response is not None and out.response.status == 400


# ====================================================================== /submitMessage


def test_submit_message_codes() -> None:
    net = build()
    hub, c1 = net.p(A), net.cl["c1"]
    net.w.client_step(c1.client_uri, c1.send_message(ROOM, "hello", net.w.now_ms))
    (resp,) = net.answers(A, Endpoint.SUBMIT_MESSAGE, C)
    assert resp is not None and resp.code == "accepted"
    sub = W.SubmitMessageResponse.decode(resp.body)
    assert sub.status_code == W.SubmitResponseCode.accepted and sub.frank is not None
    gc = net.group("c1")
    before = hub.digest()
    # notAllowed: c.example sending as Bob; b.example relaying Cathy's message.
    as_bob = W.SubmitMessageRequest(W.MLS10, gc.protect(b"x"), W.IdentifierUri(BOB)).encode()
    out = refused(net, A, lambda: net.call(A, Endpoint.SUBMIT_MESSAGE, ROOM, as_bob, frm=C))
    assert W.SubmitMessageResponse.decode(out.response.body).status_code == W.SubmitResponseCode.notAllowed  # type: ignore[union-attr]
    mine = W.SubmitMessageRequest(W.MLS10, gc.protect(b"y"), W.IdentifierUri(CATHY)).encode()
    out = refused(net, A, lambda: net.call(A, Endpoint.SUBMIT_MESSAGE, ROOM, mine, frm=B))
    assert out.response is not None and out.response.code == "notAllowed"
    # epochTooOld: the room moves on (Alice's empty commit) and the message is of the old epoch.
    old = W.SubmitMessageRequest(W.MLS10, gc.protect(b"late"), W.IdentifierUri(CATHY)).encode()
    hub.rooms[ROOM].max_past_epochs = 0
    body, _ = commit_body(net.group("a1"))
    hub.handle_client(ClientMessage(net.cl["a1"].client_uri, ClientOp.update, 901, body, ROOM), 0)
    before = hub.digest()
    out = refused(net, A, lambda: net.call(A, Endpoint.SUBMIT_MESSAGE, ROOM, old, frm=C))
    r = W.SubmitMessageResponse.decode(out.response.body)  # type: ignore[union-attr]
    assert r.status_code == W.SubmitResponseCode.epochTooOld and r.current_epoch == hub.rooms[ROOM].epoch
    assert hub.digest() == before


# ====================================================================== /groupInfo


def test_group_info_success_and_failures() -> None:
    net = build()
    hub = net.p(A)
    b3 = ClientCore("mimi://b.example/d/bob/B3", 1, DeterministicRandom(3, "b3"), now_s=BASE_MS // 1000)
    before = hub.digest()
    assert gi_status(net.call(A, Endpoint.GROUP_INFO, ROOM, gi_request(b3), frm=B)) == W.GroupInfoCode.success
    eve = ClientCore("mimi://c.example/d/eve/E1", 1, DeterministicRandom(3, "eve"), now_s=BASE_MS // 1000)
    for body, frm in (
        (gi_request(eve), C),  # not a participant
        (gi_request(b3, sign_key=eve.signature_priv), B),  # forged signature
        (gi_request(b3), C),  # c.example asking for Bob's device
        (gi_request(b3, suite_id=3), B),  # not the room's cipher suite
    ):
        out = refused(net, A, lambda body=body, frm=frm: net.call(A, Endpoint.GROUP_INFO, ROOM, body, frm=frm))
        assert gi_status(out) == W.GroupInfoCode.notAuthorized
    assert hub.digest() == before
    # The real flow: a new device of Cathy joins by external commit.
    c3 = ClientCore("mimi://c.example/d/cathy/C3", 1, DeterministicRandom(3, "c3"), now_s=BASE_MS // 1000)
    net.w.add_client(c3)
    net.w.client_step(c3.client_uri, c3.join_new_device(ROOM, net.w.now_ms))
    assert [r.code for r in net.answers(A, Endpoint.GROUP_INFO, C) if r] == ["notAuthorized", "notAuthorized",
                                                                              "success"]
    assert c3.rooms() == [ROOM]


# ====================================================================== /notify


def test_notify_created_dedup_forbidden_and_malformed() -> None:
    net = build()
    # The notifies the flows produced were all 201.
    assert {r.status for r in net.answers(B, Endpoint.NOTIFY, A) if r} == {201}
    g = net.group("c1")
    fm = W.FanoutMessage.application(BASE_MS, g.protect(b"hi"))
    body = W.encode_fanout_messages([fm])
    mid = msg_id_of(fm.message.encode())
    out = net.call(B, Endpoint.NOTIFY, ROOM, body, frm=A)
    assert out.response is not None and out.response.status == 201
    delivered = sorted(a.client for a in out.actions if isinstance(a, Deliver) and a.msg_id == mid)
    assert delivered == [net.cl["b1"].client_uri, net.cl["b2"].client_uri]
    assert out.events[0].kind == "notify.accept"
    # The same body again: 201, processed once.
    out = refused(net, B, lambda: net.call(B, Endpoint.NOTIFY, ROOM, body, frm=A))
    assert out.response is not None and out.response.status == 201 and out.actions == ()
    assert out.events[0].kind == "notify.dedup"
    # Not from the hub: 403; malformed: 400.
    out = refused(net, B, lambda: net.call(B, Endpoint.NOTIFY, ROOM, body, frm=C))
    assert out.response is not None and out.response.status == 403
    for bad in (b"", b"\x00", body[:-1], body + b"\x07"):
        out = refused(net, B, lambda bad=bad: net.call(B, Endpoint.NOTIFY, ROOM, bad, frm=A))
        assert out.response is not None and out.response.status == 400


def test_notify_dedup_by_transaction_id() -> None:
    net = build(3, ProviderConfig(dedup="transaction_id"))
    g = net.group("c1")
    fm = W.FanoutMessage.application(BASE_MS, g.protect(b"hi"))
    body = W.encode_fanout_messages([fm])
    assert net.call(B, Endpoint.NOTIFY, ROOM, body, frm=A, txn="t1").actions
    assert refused(net, B, lambda: net.call(B, Endpoint.NOTIFY, ROOM, body, frm=A, txn="t1")).actions == ()
    # A legitimate repeat of the same bytes under a new transaction id is delivered again.
    assert net.call(B, Endpoint.NOTIFY, ROOM, body, frm=A, txn="t2").actions


# ====================================================================== /reportAbuse


def test_report_abuse_through_the_provider() -> None:
    net = build()
    hub, c1, b1 = net.p(A), net.cl["c1"], net.cl["b1"]
    net.w.client_step(c1.client_uri, c1.send_message(ROOM, "rude words", net.w.now_ms))
    (mid,) = [m for u, d in net.w.delivered if u == b1.client_uri for m in [d[3]]]
    stored = b1.received_frank(ROOM, mid)
    assert stored is not None
    content, rf = stored
    msg = rf.abusive_message(content)
    report = W.AbuseReport(W.IdentifierUri(BOB), W.IdentifierUri(CATHY), 0, "rude", [msg], AppDataDictionary([]))
    before = hub.digest()
    # Refusals: c.example reporting as Bob; a forged frank; no message at all.
    out = refused(net, A, lambda: net.call(A, Endpoint.REPORT_ABUSE, ROOM, report.encode(), frm=C))
    assert out.response is not None and out.response.status == 403
    forged = W.AbuseReport(W.IdentifierUri(BOB), W.IdentifierUri(CATHY), 0, "rude",
                           [W.AbusiveMessage(content + b"!", msg.frank, msg.accepted_timestamp)],
                           AppDataDictionary([]))
    out = refused(net, A, lambda: net.call(A, Endpoint.REPORT_ABUSE, ROOM, forged.encode(), frm=B))
    assert out.response is not None and out.response.status == 403
    out = refused(net, A, lambda: net.call(A, Endpoint.REPORT_ABUSE, ROOM, b"\xff", frm=B))
    assert out.response is not None and out.response.status == 400
    assert hub.digest() == before
    out = net.call(A, Endpoint.REPORT_ABUSE, ROOM, report.encode(), frm=B)
    assert out.response is not None and out.response.status == 201
    assert len(hub.rooms[ROOM].abuse_reports) == 1


# ====================================================================== consent endpoints


def test_request_and_update_consent_endpoints() -> None:
    net = build()
    b = net.p(B)
    assert b.consent_store is not None
    req = W.RequestConsentBody(W.ConsentOperation.request, W.IdentifierUri(CATHY), W.IdentifierUri(BOB),
                               W.IdentifierUri(ROOM), None, AppDataDictionary([])).encode()
    out = net.call(B, Endpoint.REQUEST_CONSENT, B, req, frm=C)
    assert out.response is not None and out.response.status == 201
    assert len(b.consent_store.pending_requests(BOB)) == 1
    before = b.digest()
    # c.example cannot speak for a requester of a.example; the path must name us; bodies must decode.
    alice_req = W.RequestConsentBody(W.ConsentOperation.request, W.IdentifierUri(ALICE), W.IdentifierUri(BOB),
                                     None, None, AppDataDictionary([])).encode()
    assert refused(net, B, lambda: net.call(B, Endpoint.REQUEST_CONSENT, B, alice_req, frm=C)).response.status == 403  # type: ignore[union-attr]
    assert refused(net, B, lambda: net.call(B, Endpoint.REQUEST_CONSENT, C, req, frm=C)).response.status == 404  # type: ignore[union-attr]
    assert refused(net, B, lambda: net.call(B, Endpoint.REQUEST_CONSENT, B, req[:-2], frm=C)).response.status == 400  # type: ignore[union-attr]
    # A grant arriving at the requester's provider.
    grant = W.UpdateConsentBody(W.ConsentOperation.grant, W.IdentifierUri(CATHY), W.IdentifierUri(BOB),
                                None, [], AppDataDictionary([])).encode()
    out = net.call(C, Endpoint.UPDATE_CONSENT, C, grant, frm=B)
    assert out.response is not None and out.response.status == 201
    assert net.p(C).consent_store.may_add(CATHY, BOB)  # type: ignore[union-attr]
    assert refused(net, C, lambda: net.call(C, Endpoint.UPDATE_CONSENT, C, grant, frm=A)).response.status == 403  # type: ignore[union-attr]
    assert refused(net, B, lambda: net.call(B, Endpoint.UPDATE_CONSENT, B, req, frm=C)).response.status == 400  # type: ignore[union-attr]
    assert b.digest() == before
    # Without a consent store the endpoints are not served.
    b.consent_store = None
    assert net.call(B, Endpoint.REQUEST_CONSENT, B, req, frm=C).response.status == 404  # type: ignore[union-attr]


def test_consent_operations_of_local_users_are_recorded_and_sent() -> None:
    """Bob (target, b.example, explicit consent) grants Cathy: b.example records
    the grant (so Cathy's claim then succeeds) and tells c.example."""
    net = build()
    b, b1 = net.p(B), net.cl["b1"]
    b.consent_store = ConsentStore(B)
    c1 = net.cl["c1"]
    assert km(net.call(B, Endpoint.KEY_MATERIAL, BOB, kmr(c1, BOB, room=""), frm=C)).user_status == UC.noConsent
    grant = W.UpdateConsentBody(W.ConsentOperation.grant, W.IdentifierUri(CATHY), W.IdentifierUri(BOB),
                                None, [], AppDataDictionary([])).encode()
    # Another user's client cannot grant for Bob; a request body is not an update.
    out = b.handle_client(ClientMessage("mimi://b.example/d/dave/D1", ClientOp.update_consent, 1, grant), 0)
    assert isinstance(out.actions[0], ClientReply) and out.actions[0].status == 403
    out = b.handle_client(ClientMessage(b1.client_uri, ClientOp.request_consent, 2, grant), 0)
    assert isinstance(out.actions[0], ClientReply) and out.actions[0].status == 400
    out = b.handle_client(ClientMessage(b1.client_uri, ClientOp.update_consent, 3, grant), 0)
    (send,) = out.actions
    assert isinstance(send, SendRequest) and send.request.endpoint == Endpoint.UPDATE_CONSENT
    assert send.request.host == C and send.request.target == C
    assert km(net.call(B, Endpoint.KEY_MATERIAL, BOB, kmr(c1, BOB, room=""), frm=C)).user_status == UC.success
    answer = net.p(C).handle_request(send.request, B, 0)
    assert answer.response is not None and answer.response.status == 201
    assert net.p(C).consent_store.may_add(CATHY, BOB)  # type: ignore[union-attr]
    # Cathy asks Bob (request_consent from her client) -> POST /requestConsent/b.example.
    ask = W.RequestConsentBody(W.ConsentOperation.request, W.IdentifierUri(CATHY), W.IdentifierUri(DAVE),
                               None, None, AppDataDictionary([])).encode()
    out = net.p(C).handle_client(ClientMessage(c1.client_uri, ClientOp.request_consent, 4, ask), 0)
    (send,) = out.actions
    assert isinstance(send, SendRequest) and send.request.endpoint == Endpoint.REQUEST_CONSENT
    assert send.request.host == B and send.request.target == B


# ====================================================================== /identifierQuery


def test_identifier_query_through_the_provider() -> None:
    net = build()
    b = net.p(B)
    assert b.identifier_directory is not None
    b.identifier_directory.add(UserRecord(BOB, handle="im:bob@b.example", nicks=("bob",),
                                          claims={"name": "Bob Builder"}, policy=SearchPolicy.exact_handle()))
    body = identifier_request(query_element(W.SearchIdentifierType.handle, "im:bob@b.example")).encode()
    out = net.call(B, Endpoint.IDENTIFIER_QUERY, B, body, frm=C)
    assert out.response is not None and out.response.status == 200 and out.response.code == "success"
    assert [u.uri for u in W.IdentifierResponse.decode(out.response.body).uri] == [BOB]
    nick = identifier_request(query_element(W.SearchIdentifierType.nick, "bob")).encode()
    assert net.call(B, Endpoint.IDENTIFIER_QUERY, B, nick, frm=C).response.code == "notFound"  # type: ignore[union-attr]
    assert net.call(B, Endpoint.IDENTIFIER_QUERY, C, body, frm=C).response.status == 404  # type: ignore[union-attr]
    assert net.call(B, Endpoint.IDENTIFIER_QUERY, B, body[:-1], frm=C).response.status == 400  # type: ignore[union-attr]
    # ambiguous (a partial query that is too short), unsupportedField, forbidden.
    short = identifier_request(query_element(W.SearchIdentifierType.partialName, "bo")).encode()
    assert net.call(B, Endpoint.IDENTIFIER_QUERY, B, short, frm=C).response.code == "ambiguous"  # type: ignore[union-attr]
    odd = identifier_request(query_element(W.SearchIdentifierType.oidcStdClaim, "x", "shoe_size")).encode()
    assert net.call(B, Endpoint.IDENTIFIER_QUERY, B, odd, frm=C).response.code == "unsupportedField"  # type: ignore[union-attr]
    b.identifier_directory.policy = ProviderSearchPolicy(allowed_domains=frozenset({A}))
    assert net.call(B, Endpoint.IDENTIFIER_QUERY, B, body, frm=C).response.code == "forbidden"  # type: ignore[union-attr]
    assert net.call(B, Endpoint.IDENTIFIER_QUERY, B, body, frm=A).response.code == "success"  # type: ignore[union-attr]
    # A client's query goes to the named provider.
    out = net.p(C).handle_client(ClientMessage(net.cl["c1"].client_uri, ClientOp.identifier_query, 5, body,
                                               target=B), 0)
    assert isinstance(out.actions[0], SendRequest) and out.actions[0].request.host == B


# ====================================================================== impersonation


def _forge(msg: MLSMessage) -> MLSMessage:
    """The same handshake message with its signature replaced by another key's."""
    forged = MLSMessage.decode(msg.encode())
    forged.body.auth.signature = SUITE.sign_with_label(
        SUITE.generate_signature_key_pair(DeterministicRandom(9, "forger"))[0], b"FramedContentTBS", b"forged")
    return forged


def test_forged_signatures_on_commits_and_proposals_are_refused() -> None:
    net = build()
    gc = net.group("c1")
    body, msg = commit_body(copy.deepcopy(gc))
    req = W.UpdateRequest.decode(body)
    req.bundle.proposal_or_commit = _forge(msg)
    out = refused(net, A, lambda: net.call(A, Endpoint.UPDATE, ROOM, req.encode(), frm=C))
    assert out.response is not None and out.response.status in (200, 400)
    assert out.response.code != "success"
    prop = _forge(copy.deepcopy(gc).propose(Proposal.of(Remove(leaf_of(gc, net.cl["c1"].client_uri)))))
    out = refused(net, A, lambda: net.call(A, Endpoint.UPDATE, ROOM, proposals_body(prop), frm=C))
    assert out.response is not None and out.response.code != "success"
    # The genuine commit is accepted afterwards: the forgeries left nothing behind.
    assert update_response(net.call(A, Endpoint.UPDATE, ROOM, body, frm=C)).response_code == UPD.success


def test_non_members_and_removed_users_cannot_submit() -> None:
    net = build()
    hub = net.p(A)
    gc, gb = net.group("c1"), net.group("b1")
    # c.example sends Cathy's ciphertext in the name of Eve, who is no participant.
    eve = W.SubmitMessageRequest(W.MLS10, gc.protect(b"x"), W.IdentifierUri("mimi://c.example/u/eve")).encode()
    out = refused(net, A, lambda: net.call(A, Endpoint.SUBMIT_MESSAGE, ROOM, eve, frm=C))
    assert out.response is not None and out.response.code == "notAllowed"
    # Bob is removed; a message from his (old) group is refused, whatever the epoch window.
    a1 = net.cl["a1"]
    net.w.client_step(a1.client_uri, a1.remove_user(ROOM, BOB, net.w.now_ms))
    assert BOB not in hub.rooms[ROOM].participants()
    hub.rooms[ROOM].max_past_epochs = 5
    late = W.SubmitMessageRequest(W.MLS10, gb.protect(b"still here"), W.IdentifierUri(BOB)).encode()
    out = refused(net, A, lambda: net.call(A, Endpoint.SUBMIT_MESSAGE, ROOM, late, frm=B))
    assert out.response is not None and out.response.code == "notAllowed"


def test_a_banned_user_cannot_commit() -> None:
    net = build()
    hub = net.p(A)
    index = list(hub.rooms[ROOM].participants()).index(BOB)
    ban = net.group("a1").propose(plist(changed=[(index, BANNED)]))
    out = hub.handle_client(ClientMessage(net.cl["a1"].client_uri, ClientOp.update, 1, proposals_body(ban), ROOM), 0)
    assert isinstance(out.actions[0], ClientReply) and out.actions[0].code == "success"
    gb = net.group("b1")
    gb.process(ban)
    for name, props in (("empty", []), ("kick Cathy", [Proposal.of(Remove(leaf_of(gb, net.cl["c1"].client_uri)))])):
        body, _ = commit_body(copy.deepcopy(gb), props, include_pending=False)
        r = update_response(refused(net, A, lambda body=body: net.call(A, Endpoint.UPDATE, ROOM, body, frm=B)))
        assert r.response_code == UPD.notAllowed, name
    # Including the ban does not help either: the banned user may not commit at all.
    body, _ = commit_body(copy.deepcopy(gb))
    r = update_response(refused(net, A, lambda: net.call(A, Endpoint.UPDATE, ROOM, body, frm=B)))
    assert r.response_code == UPD.notAllowed


def test_a_replayed_commit_is_answered_once_and_only_to_its_provider() -> None:
    net = build()
    hub = net.p(A)
    body, _ = commit_body(net.group("c1"))
    first = net.call(A, Endpoint.UPDATE, ROOM, body, frm=C)
    assert update_response(first).response_code == UPD.success
    assert [a for a in first.actions if isinstance(a, SendRequest)]  # fanned out
    # A retry from the same provider: the same answer, nothing fanned out again.
    again = refused(net, A, lambda: net.call(A, Endpoint.UPDATE, ROOM, body, frm=C))
    assert update_response(again).accepted_timestamp == update_response(first).accepted_timestamp
    # The same bytes replayed by another provider: notAllowed.
    r = update_response(refused(net, A, lambda: net.call(A, Endpoint.UPDATE, ROOM, body, frm=B)))
    assert r.response_code == UPD.notAllowed
    # Once the room has moved on: still the original answer (the hub sends no
    # commit back to a provider whose only member is the committer, so the
    # answer to a retry is the committer's only proof of acceptance).
    ga = net.group("a1")
    staged = ga.process(W.UpdateRequest.decode(body).bundle.proposal_or_commit)
    assert isinstance(staged, StagedCommit)
    ga.merge(staged)
    nxt, _ = commit_body(ga)
    out = hub.handle_client(ClientMessage(net.cl["a1"].client_uri, ClientOp.update, 2, nxt, ROOM), 0)
    assert isinstance(out.actions[0], ClientReply) and out.actions[0].code == "success"
    r = update_response(refused(net, A, lambda: net.call(A, Endpoint.UPDATE, ROOM, body, frm=C)))
    assert r.response_code == UPD.success
    assert r.accepted_timestamp == update_response(first).accepted_timestamp


def test_a_follower_cannot_claim_another_providers_from() -> None:
    net = build()
    body, _ = commit_body(net.group("c1"))
    g = net.group("c1")
    fm = W.encode_fanout_messages([W.FanoutMessage.application(BASE_MS, g.protect(b"hi"))])
    for receiver, ep, target, payload, claimed in (
        (A, Endpoint.UPDATE, ROOM, body, C),  # b.example relays Cathy's commit as c.example
        (B, Endpoint.NOTIFY, ROOM, fm, A),  # c.example poses as the hub
        (B, Endpoint.KEY_MATERIAL, BOB, kmr(net.cl["c1"], BOB), A),  # c.example poses as the hub
    ):
        peer = B if claimed == C else C
        out = refused(net, receiver, lambda r=receiver, e=ep, t=target, p=payload, c=claimed, q=peer:
                      net.call(r, e, t, p, frm=c, peer=q))
        assert out.response is not None and out.response.status == 403


# ====================================================================== local members, Welcome routes


ANN = "mimi://a.example/u/ann"


def test_the_hub_drops_removed_local_clients_after_delivering_the_commit() -> None:
    net = build()
    hub, a1 = net.p(A), net.cl["a1"]
    an1 = ClientCore("mimi://a.example/d/ann/AN1", 1, DeterministicRandom(4, "ann"), now_s=BASE_MS // 1000)
    net.w.add_client(an1)
    net.w.client_step(an1.client_uri, an1.upload_key_packages(1))
    net.w.client_step(a1.client_uri, a1.add_user(ROOM, ANN, net.w.now_ms))
    assert an1.client_uri in hub.local_members[ROOM]
    # Alice removes Ann: her update goes to the hub; the core's outcome (not
    # yet carried out) already delivers the commit to Ann and forgets her.
    step = a1.remove_user(ROOM, ANN, net.w.now_ms)
    (msg,) = step.messages
    out = hub.handle_client(msg, net.w.now_ms)
    delivered = [a.client for a in out.actions if isinstance(a, Deliver)]
    assert an1.client_uri in delivered and a1.client_uri in delivered
    assert hub.local_members[ROOM] == {a1.client_uri}


def test_a_follower_forgets_clients_that_say_left_room() -> None:
    # A follower cannot see who a commit removes without the group's tree;
    # the removed clients tell it (ClientOp.left_room).
    net = build()
    b, a1 = net.p(B), net.cl["a1"]
    assert b.local_members[ROOM] == {net.cl["b1"].client_uri, net.cl["b2"].client_uri}
    net.w.client_step(a1.client_uri, a1.remove_user(ROOM, BOB, net.w.now_ms))
    assert net.cl["b1"].rooms() == [] and b.local_members[ROOM] == set()
    # Later room traffic no longer reaches Bob's clients (nor b.example).
    n = len(net.w.exchanges)
    c1 = net.cl["c1"]
    net.w.client_step(c1.client_uri, c1.send_message(ROOM, "bye bob", net.w.now_ms))
    assert f"{A}->{B}: POST /notify/a.example/r/clubhouse" not in net.w.exchange_lines(n)


def test_welcome_routes_are_forgotten_once_routed_or_too_old() -> None:
    net = build()
    hub, b = net.p(A), net.p(B)
    assert len(hub.routing) == 0  # Bob's and Cathy's Welcomes were routed
    assert b.keystore.snapshot().claimed == ()  # and delivered: b.example forgot its refs too
    assert net.p(C).keystore.snapshot().claimed == ()
    # A proxied claim whose Welcome never comes: its routes stay until the age bound.
    c1 = net.cl["c1"]

    def proxied_claim(now_ms: int) -> None:
        out = hub.handle_request(MimiRequest(Endpoint.KEY_MATERIAL, BOB, C, A, kmr(c1, BOB)), C, now_ms)
        (send,) = out.actions
        assert isinstance(send, SendRequest)
        answer = b.handle_request(send.request, A, now_ms)
        assert answer.response is not None and answer.response.code == "success"
        hub.handle_response(send.token, answer.response, now_ms)

    proxied_claim(1_000)
    assert len(hub.routing) == 2
    old = set(hub.routing.snapshot())
    proxied_claim(1_000 + hub.config.routing_max_age_ms + 1)
    assert len(hub.routing) == 2 and not old & set(hub.routing.snapshot())
    # Routes carry the KeyPackage's not_after: expired ones go too.
    entry = next(iter(hub.routing.snapshot().values()))
    assert entry.not_after is not None and entry.recorded_ms == 1_000 + hub.config.routing_max_age_ms + 1
    assert hub.routing.prune(entry.not_after + 1) == 2


# ====================================================================== bad input, per endpoint (hypothesis)


@dataclass(frozen=True)
class Case:
    """A valid request to one provider: who receives it, the path target, the sender."""

    receiver: str
    target: str
    frm: str
    body: bytes


ERROR_CODES = {
    "wrongEpoch", "notAllowed", "invalidProposal", "epochTooOld", "notAuthorized", "noSuchRoom",
    "incompatibleProtocol", "noCompatibleMaterial", "userUnknown", "noConsent", "noConsentForThisRoom",
    "userDeleted", "notFound", "ambiguous", "forbidden", "unsupportedField",
}
# Endpoints whose bodies are not (fully) authenticated end to end, so a
# mutated body may legitimately be accepted: a PrivateMessage's ciphertext
# (the hub cannot read it), a /notify from the genuine hub over mutual TLS,
# an abuse report's note, consent bodies and identifier queries (plain data).
MAY_ACCEPT_MUTATED = {
    Endpoint.SUBMIT_MESSAGE, Endpoint.NOTIFY, Endpoint.REPORT_ABUSE, Endpoint.REQUEST_CONSENT,
    Endpoint.UPDATE_CONSENT, Endpoint.IDENTIFIER_QUERY, Endpoint.GROUP_INFO,
}
_FUZZ: list[tuple[Net, dict[Endpoint, Case]]] = []


def fuzz_world() -> tuple[Net, dict[Endpoint, Case]]:
    """One world and one valid body per endpoint, built once for every example."""
    if not _FUZZ:
        _FUZZ.append(make_fuzz_world())
    return _FUZZ[0]


def make_fuzz_world() -> tuple[Net, dict[Endpoint, Case]]:
    """A new world and one valid body per endpoint (see :func:`fuzz_world`)."""
    net = build(21)
    c1, b1 = net.cl["c1"], net.cl["b1"]
    net.w.client_step(c1.client_uri, c1.send_message(ROOM, "report me", net.w.now_ms))
    mid = next(d[3] for u, d in net.w.delivered if u == b1.client_uri)
    stored = b1.received_frank(ROOM, mid)
    assert stored is not None
    report = W.AbuseReport(W.IdentifierUri(BOB), W.IdentifierUri(CATHY), 0, "rude",
                           [stored[1].abusive_message(stored[0])], AppDataDictionary([]))
    gc = net.group("c1")
    b3 = ClientCore("mimi://b.example/d/bob/B3", 1, DeterministicRandom(3, "b3"), now_s=BASE_MS // 1000)
    net.p(B).identifier_directory.add(UserRecord(BOB, handle="im:bob@b.example",  # type: ignore[union-attr]
                                                 policy=SearchPolicy.exact_handle()))
    cases = {
        Endpoint.KEY_MATERIAL: Case(B, BOB, C, kmr(c1, BOB)),
        Endpoint.UPDATE: Case(A, ROOM, C, commit_body(copy.deepcopy(gc))[0]),
        Endpoint.SUBMIT_MESSAGE: Case(A, ROOM, C, W.SubmitMessageRequest(
            W.MLS10, copy.deepcopy(gc).protect(b"fuzz"), W.IdentifierUri(CATHY)).encode()),
        Endpoint.GROUP_INFO: Case(A, ROOM, B, gi_request(b3)),
        Endpoint.REPORT_ABUSE: Case(A, ROOM, B, report.encode()),
        Endpoint.NOTIFY: Case(B, ROOM, A, W.encode_fanout_messages(
            [W.FanoutMessage.application(BASE_MS, copy.deepcopy(gc).protect(b"n"))])),
        Endpoint.REQUEST_CONSENT: Case(B, B, C, W.RequestConsentBody(
            W.ConsentOperation.request, W.IdentifierUri(CATHY), W.IdentifierUri(BOB), W.IdentifierUri(ROOM), None,
            AppDataDictionary([])).encode()),
        Endpoint.UPDATE_CONSENT: Case(C, C, B, W.UpdateConsentBody(
            W.ConsentOperation.grant, W.IdentifierUri(CATHY), W.IdentifierUri(BOB), None, [],
            AppDataDictionary([])).encode()),
        Endpoint.IDENTIFIER_QUERY: Case(B, B, C, identifier_request(
            query_element(W.SearchIdentifierType.handle, "im:bob@b.example")).encode()),
    }
    # Every valid body is valid indeed (a GroupInfo request changes nothing;
    # the others are only ever sent mutated).
    out = net.call(A, Endpoint.GROUP_INFO, ROOM, cases[Endpoint.GROUP_INFO].body, frm=B)
    assert gi_status(out) == W.GroupInfoCode.success
    return net, cases


def _accepted(resp: MimiResponse) -> bool:
    return resp.status == 201 or (resp.status == 200 and resp.code not in ERROR_CODES)


def check_bad_input(endpoint: Endpoint, body: bytes, *, mutated: bool) -> None:
    """Send ``body`` as ``endpoint``'s; the answer is a response, never an
    exception; a refusal (4xx or a draft error code) changes nothing."""
    net, cases = fuzz_world()
    case = cases[endpoint]
    p = net.p(case.receiver)
    before = p.digest()
    out = net.call(case.receiver, endpoint, case.target, body, frm=case.frm)
    resp = out.response
    assert isinstance(resp, MimiResponse)
    assert resp.status in (200, 201) or 400 <= resp.status < 500, resp
    if _accepted(resp):
        assert mutated and endpoint in MAY_ACCEPT_MUTATED, (endpoint, resp)
    else:
        assert p.digest() == before, (endpoint, resp)
        assert not [a for a in out.actions if isinstance(a, (SendRequest, Deliver))]


def membership_tag_range(update_body: bytes) -> range:
    """Where the membership_tag of an UpdateRequest's commit lies in the body."""
    msg = W.UpdateRequest.decode(update_body).bundle.proposal_or_commit
    raw, tag = msg.encode(), msg.body.membership_tag
    assert update_body.startswith(raw) and tag and raw.endswith(tag)
    return range(len(raw) - len(tag), len(raw))


def test_the_hub_cannot_check_membership_tags() -> None:
    """A documented limit, not a wish: the membership_tag is a MAC under the
    epoch's membership key, which only members hold (RFC 9420 s.6.2). The
    hub accepts a commit whose tag was damaged by its sender's provider;
    every member then refuses the commit (its sender's provider is the only
    one that could have changed it, over mutual TLS)."""
    net = build(22)
    body, _ = commit_body(net.group("c1"))
    damaged = bytearray(body)
    damaged[membership_tag_range(body)[5]] ^= 0x10
    out = net.call(A, Endpoint.UPDATE, ROOM, bytes(damaged), frm=C)
    assert update_response(out).response_code == UPD.success
    (notify,) = [a for a in out.actions if isinstance(a, SendRequest) and a.request.host == B]
    follower = net.p(B).handle_request(notify.request, A, 0)
    b1 = net.cl["b1"]
    (deliver,) = [a for a in follower.actions if isinstance(a, Deliver) and a.client == b1.client_uri]
    epoch = b1.epoch(ROOM)
    step = b1.on_deliver(deliver, 0)
    assert b1.epoch(ROOM) == epoch and [e.kind for e in step.events] == ["client.drop"]


ENDPOINTS = sorted((e for e in Endpoint if e not in (Endpoint.PROXY_DOWNLOAD, Endpoint.DIRECTORY)), key=lambda e: e.name)
FUZZ = settings(max_examples=examples(40), deadline=None, suppress_health_check=[HealthCheck.too_slow])


@pytest.mark.parametrize("endpoint", ENDPOINTS, ids=lambda e: e.name)
@FUZZ
@given(frac=st.floats(0, 1, exclude_max=True))
def test_truncated_bodies_are_refused(endpoint: Endpoint, frac: float) -> None:
    body = fuzz_world()[1][endpoint].body
    check_bad_input(endpoint, body[: int(len(body) * frac)], mutated=False)


@pytest.mark.parametrize("endpoint", ENDPOINTS, ids=lambda e: e.name)
@FUZZ
@given(where=st.floats(0, 1, exclude_max=True), bit=st.integers(0, 7))
def test_bit_flipped_bodies_never_raise(endpoint: Endpoint, where: float, bit: int) -> None:
    body = bytearray(fuzz_world()[1][endpoint].body)
    i = int(len(body) * where)
    # The hub cannot check a commit's membership_tag (it has no membership
    # key); test_the_hub_cannot_check_membership_tags shows what happens.
    assume(not (endpoint == Endpoint.UPDATE and i in membership_tag_range(bytes(body))))
    body[i] ^= 1 << bit
    check_bad_input(endpoint, bytes(body), mutated=True)


@pytest.mark.parametrize("endpoint", ENDPOINTS, ids=lambda e: e.name)
def test_foreign_bodies_are_refused(endpoint: Endpoint) -> None:
    for other in ENDPOINTS:
        if other != endpoint:
            check_bad_input(endpoint, fuzz_world()[1][other].body, mutated=False)


def test_every_endpoint_is_fuzzed() -> None:
    assert set(fuzz_world()[1]) == set(ENDPOINTS)
