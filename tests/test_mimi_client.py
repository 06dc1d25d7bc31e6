"""ClientCore against a small fake provider+hub.

Why a fake and not the real provider: these tests pin down the *client's*
behaviour (queueing, retries, epoch ordering, dedup, pending proposals) with
full control over delivery order, duplication and timing. The fake plays
every provider at once and the hub of one room, following the group with the
real :class:`~mimisim.mls.observer.GroupObserver` (so every commit a client
sends is checked publicly, as a MIMI hub does) and enforcing the two hub
rules the client logic depends on: the epoch check (``wrongEpoch`` /
``epochTooOld`` with the hub's current epoch) and "the next commit must
include every cached proposal" (``invalidProposal``). It franks messages
with the real franking module, so receivers verify real franks.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any

import pytest

from mimisim.codec import DecodeError
from mimisim.mimi import franking as F
from mimisim.mimi import policy as P
from mimisim.mimi import wire as W
from mimisim.mimi.client import (
    ClientCore,
    ClientStep,
    MimiContent,
    RetryStrategy,
    decode_mimi_content,
    encode_mimi_content,
)
from mimisim.mimi.hub import msg_id_of
from mimisim.mimi.identity import client_of_identity, domain_of, room_uri, user_of_client, user_uri
from mimisim.mimi.keystore import is_last_resort, parse_upload
from mimisim.mimi.transport import ClientMessage, ClientOp, ClientReply, Deliver, Event
from mimisim.mls.crypto import DeterministicRandom, get_suite
from mimisim.mls.errors import MLSError
from mimisim.mls.observer import GroupObserver
from mimisim.mls.structs import (
    ExternalSender,
    HPKECiphertext,
    KeyPackage,
    MLSMessage,
    RatchetTreeOption,
    RatchetTreeRepresentation,
)

SUITE = get_suite(1)
ROOM = room_uri("a.example", "clubhouse")
ALICE, BOB, CATHY, DAVE = (user_uri(d, u) for d, u in
                           (("a.example", "alice"), ("b.example", "bob"), ("c.example", "cathy"),
                            ("c.example", "dave")))
A1 = "mimi://a.example/d/alice/A1"
B1, B2, B3 = "mimi://b.example/d/bob/B1", "mimi://b.example/d/bob/B2", "mimi://b.example/d/bob/B3"
C1 = "mimi://c.example/d/cathy/C1"
D1 = "mimi://c.example/d/dave/D1"
EPOCH_BASE_MS = 1_700_000_000_000


# ==========================================================================
# fake provider + hub


@dataclass
class FakeHub:
    """Every provider and the hub of one room, for the tests."""

    suite: Any = SUITE
    rng: DeterministicRandom = field(default_factory=lambda: DeterministicRandom(7, "fake hub"))
    observer: GroupObserver | None = None
    room: str = ROOM
    pending: list[MLSMessage] = field(default_factory=list)
    members: list[str] = field(default_factory=list)
    key_packages: dict[str, list[tuple[KeyPackage, bool]]] = field(default_factory=dict)
    kp_owner: dict[bytes, str] = field(default_factory=dict)
    accepted: list[str] = field(default_factory=list)  # kinds of accepted requests, in order

    def __post_init__(self) -> None:
        self.sig_priv, self.sig_pub = self.suite.generate_signature_key_pair(self.rng.fork("signature"))
        self.franking_secret = self.rng.fork("franking").random_bytes(32)

    # --------------------------------------------------------------- helpers

    def reply(self, m: ClientMessage, status: int, body: bytes = b"", code: str = "") -> ClientReply:
        return ClientReply(m.client, m.request_id, status, body, code)

    def fanout(self, fm: W.FanoutMessage, to: list[str]) -> list[Deliver]:
        body = fm.encode()
        mid = msg_id_of(fm.message.encode())
        return [Deliver(c, self.room, body, mid) for c in to]

    def update_reply(self, m: ClientMessage, resp: W.UpdateRoomResponse) -> ClientReply:
        return self.reply(m, 200, resp.encode(), W.UpdateResponseCode(resp.response_code).name)

    # --------------------------------------------------------------- dispatch

    def handle(self, m: ClientMessage, now_ms: int) -> list[ClientReply | Deliver]:
        ts = EPOCH_BASE_MS + now_ms
        if m.op == ClientOp.upload_key_packages:
            for kp in parse_upload(m.body):
                self.key_packages.setdefault(m.client, []).append((kp, is_last_resort(kp)))
                self.kp_owner[SUITE.make_key_package_ref(kp.encode())] = m.client
            return [self.reply(m, 201, code="Created")]
        if m.op == ClientOp.create_room:
            self.observer = GroupObserver.from_group_info(m.body, app_components=P.mimi_app_components())
            self.members.append(m.client)
            self.accepted.append("create")
            return [self.reply(m, 201, code="Created")]
        if m.op == ClientOp.left_room:
            if m.client in self.members:
                self.members.remove(m.client)
            return [self.reply(m, 201, code="Created")]
        if m.op == ClientOp.fetch_key_material:
            return [self.reply(m, 200, self.claim(W.KeyMaterialRequest.decode(m.body)).encode(), "success")]
        if m.op == ClientOp.update:
            return self.update(m, ts)
        if m.op == ClientOp.submit_message:
            return self.submit(m, ts)
        if m.op == ClientOp.fetch_group_info:
            return [self.group_info(m)]
        return [self.reply(m, 400, b"unknown op", "Bad Request")]

    def claim(self, req: W.KeyMaterialRequest) -> W.KeyMaterialResponse:
        target = req.target_user.uri
        clients = []
        for client in sorted(c for c in self.key_packages if user_of_client(c) == target):
            kps = self.key_packages[client]
            pick = next((i for i, (_, lr) in enumerate(kps) if not lr), None)
            if pick is None:
                pick = next((i for i, (_, lr) in enumerate(kps) if lr), None)
            if pick is None:
                continue
            kp, lr = kps[pick]
            if not lr:
                del kps[pick]
            clients.append(W.ClientKeyMaterial(W.KeyMaterialClientCode.success, W.IdentifierUri(client), kp, None))
        code = W.KeyMaterialUserCode.success if clients else W.KeyMaterialUserCode.userUnknown
        return W.KeyMaterialResponse(W.MLS10, code, W.IdentifierUri(target), clients)

    def update(self, m: ClientMessage, ts: int) -> list[ClientReply | Deliver]:
        obs = self.observer
        assert obs is not None
        bundle = W.UpdateRequest.decode(m.body).bundle
        msg = bundle.proposal_or_commit
        if msg.body.content.epoch != obs.epoch:
            return [self.update_reply(m, W.UpdateRoomResponse.wrong_epoch(obs.epoch))]
        if bundle.kind == W.MessageKind.proposal:
            msgs = [msg, *(bundle.more_proposals or [])]
            for p in msgs:
                obs.process_proposal(p)
            self.pending += msgs
            self.accepted.append("proposals")
            return [self.update_reply(m, W.UpdateRoomResponse.success(ts)),
                    *self.fanout(W.FanoutMessage.proposal(ts, msg, msgs[1:]), list(self.members))]
        try:
            staged = obs.stage_commit(msg)
        except MLSError as e:
            return [self.update_reply(m, W.UpdateRoomResponse.invalid_proposal([], str(e)[:100]))]
        missing = [r for r in obs.proposals if r not in staged.referenced]
        if missing and staged.sender_type == 1:
            return [self.update_reply(m, W.UpdateRoomResponse.invalid_proposal(missing, "omits cached proposals"))]
        before = list(self.members)
        obs.merge(staged, bundle.group_info_option.partial_group_info)
        self.pending = []
        out: list[ClientReply | Deliver] = [self.update_reply(m, W.UpdateRoomResponse.success(ts))]
        if staged.sender_type != 1 and m.client not in self.members:
            self.members.append(m.client)  # an external joiner
        out += self.fanout(W.FanoutMessage.commit(ts, msg), before)
        if bundle.welcome is not None:
            targets = [self.kp_owner[s.new_member] for s in bundle.welcome.secrets]
            for t in targets:
                if t not in self.members:
                    self.members.append(t)
            rto = RatchetTreeOption(RatchetTreeRepresentation.full, obs.ratchet_tree(), None, None)
            out += self.fanout(W.FanoutMessage.welcome(ts, MLSMessage.wrap(bundle.welcome), rto), targets)
        self.accepted.append("commit")
        return out

    def submit(self, m: ClientMessage, ts: int) -> list[ClientReply | Deliver]:
        obs = self.observer
        assert obs is not None
        req = W.SubmitMessageRequest.decode(m.body)
        pm = req.app_message.body
        if pm.epoch != obs.epoch:
            resp = W.SubmitMessageResponse.epoch_too_old(obs.epoch)
            return [self.reply(m, 200, resp.encode(), "epochTooOld")]
        tag = F.frank_aad_of(pm.authenticated_data)
        frank = None
        if tag is not None:
            frank = F.server_frank(self.suite, self.franking_secret, tag, req.sending_uri.uri, self.room, ts)
        self.accepted.append("application")
        resp = W.SubmitMessageResponse.accepted(ts, frank)
        return [self.reply(m, 200, resp.encode(), "accepted"),
                *self.fanout(W.FanoutMessage.application(ts, req.app_message, frank), list(self.members))]

    def group_info(self, m: ClientMessage) -> ClientReply:
        obs = self.observer
        assert obs is not None
        req = W.GroupInfoRequest.decode(m.body)
        assert self.suite.verify_with_label(req.requesting_signature_key, b"GroupInfoRequestTBS",
                                            req.tbs().encode(), req.signature)
        rto = RatchetTreeOption(RatchetTreeRepresentation.full, obs.ratchet_tree(), None, None)
        pend = [W.PendingProposal(p, 0) for p in self.pending]
        tbe = W.GroupInfoRatchetTreeTBE(obs.group_info(), rto, pend).encode()
        kem, ct = self.suite.encrypt_with_label(req.group_info_public_key, W.GROUP_INFO_ENCRYPTION_LABEL,
                                                self.room.encode(), tbe, self.rng)
        hub_sender = ExternalSender(self.sig_pub, client_hub_credential())
        resp = W.GroupInfoResponse(W.MLS10, self.room, W.GroupInfoCode.success, self.suite.suite_id, hub_sender,
                                   HPKECiphertext(kem, ct), b"")
        resp.signature = self.suite.sign_with_label(self.sig_priv, b"GroupInfoResponseTBS", resp.tbs().encode())
        return self.reply(m, 200, resp.encode(), "success")


def client_hub_credential() -> Any:
    from mimisim.mimi.client import hub_credential

    return hub_credential("a.example")


# ==========================================================================
# driver


@dataclass
class Net:
    """Zero-latency FIFO world with knobs: hold one client's deliveries,
    duplicate every delivery, fire timers in time order."""

    hub: FakeHub = field(default_factory=FakeHub)
    clients: dict[str, ClientCore] = field(default_factory=dict)
    now: int = 0
    queue: deque = field(default_factory=deque)
    timers: list[tuple[int, int, str, int]] = field(default_factory=list)
    held: dict[str, list[Deliver]] = field(default_factory=dict)
    hold_for: set[str] = field(default_factory=set)
    duplicate: bool = False
    events: list[tuple[str, Event]] = field(default_factory=list)
    delivered: list[tuple[str, tuple[str, str, str, str]]] = field(default_factory=list)
    sent: list[ClientMessage] = field(default_factory=list)
    _seq: int = 0

    def client(self, uri: str, **kw: Any) -> ClientCore:
        c = ClientCore(uri, 1, DeterministicRandom(11, uri), now_s=EPOCH_BASE_MS // 1000, **kw)
        self.clients[uri] = c
        return c

    def absorb(self, uri: str, step: ClientStep) -> None:
        assert isinstance(step, ClientStep)
        for m in step.messages:
            self.sent.append(m)
            self.queue.append(m)
        for t in step.timers:
            assert t.at_ms >= self.now
            self._seq += 1
            self.timers.append((t.at_ms, self._seq, uri, t.token))
        assert not [e for e in step.events if e.status == "internalError"], step.events
        self.events += [(uri, e) for e in step.events]
        self.delivered += [(uri, d) for d in step.delivered]

    def do(self, uri: str, step: ClientStep) -> None:
        self.absorb(uri, step)
        self.run()

    def run(self, timers: bool = True) -> None:
        for _ in range(100_000):
            while self.queue:
                item = self.queue.popleft()
                if isinstance(item, ClientMessage):
                    for out in self.hub.handle(item, self.now):
                        if isinstance(out, Deliver) and out.client in self.hold_for:
                            self.held.setdefault(out.client, []).append(out)
                            continue
                        self.queue.append(out)
                        if isinstance(out, Deliver) and self.duplicate:
                            self.queue.append(out)
                elif isinstance(item, ClientReply):
                    self.absorb(item.client, self.clients[item.client].on_reply(item, self.now))
                else:
                    c = self.clients.get(item.client)
                    if c is not None:
                        self.absorb(item.client, c.on_deliver(item, self.now))
            if not timers or not self.timers:
                return
            self.timers.sort()
            at, _, uri, token = self.timers.pop(0)
            self.now = max(self.now, at)
            self.absorb(uri, self.clients[uri].on_timer(token, self.now))
        raise AssertionError("the world does not settle")

    def release(self, uri: str, order: list[int] | None = None) -> None:
        held = self.held.pop(uri, [])
        self.hold_for.discard(uri)
        for i in order if order is not None else range(len(held)):
            self.queue.append(held[i])
        self.run()

    def kinds(self, uri: str | None = None, kind: str | None = None) -> list[Event]:
        return [e for u, e in self.events if (uri is None or u == uri) and (kind is None or e.kind == kind)]

    def texts(self, uri: str) -> list[str]:
        return [d[2] for u, d in self.delivered if u == uri]


def room_with_alice(**kw: Any) -> tuple[Net, ClientCore]:
    net = Net()
    alice = net.client(A1, **kw)
    net.do(A1, alice.create_room(ROOM, hub_signature_key=net.hub.sig_pub,
                                 hub_franking_key=net.hub.franking_secret, now_ms=0))
    return net, alice


def with_users(net: Net, uris: list[str], **kw: Any) -> list[ClientCore]:
    out = []
    for uri in uris:
        c = net.client(uri, **kw)
        net.do(uri, c.upload_key_packages(3))
        out.append(c)
    return out


def assert_agree(net: Net, uris: list[str]) -> None:
    """Every listed client is in the room at the hub's epoch with the same
    epoch authenticator and tree hash: they share the group state."""
    obs = net.hub.observer
    assert obs is not None
    auths = {net.clients[u].epoch_authenticator(ROOM) for u in uris}
    assert len(auths) == 1
    for u in uris:
        c = net.clients[u]
        assert ROOM in c.rooms()
        assert c.epoch(ROOM) == obs.epoch
        assert c.tree_hash(ROOM) == obs.tree_hash


def members_of(net: Net) -> list[str]:
    obs = net.hub.observer
    assert obs is not None
    out = []
    for i in obs.tree.leaf_indices():
        leaf = obs.tree.leaf(i)
        assert leaf is not None and leaf.credential.identity is not None
        c = client_of_identity(leaf.credential.identity)
        assert c is not None
        out.append(c)
    return sorted(out)


# ==========================================================================
# tests: encodings


def test_content_roundtrip_and_franking_fields() -> None:
    c = MimiContent(bytes(range(16)), ALICE, ROOM, "héllo")
    data = encode_mimi_content(c)
    assert decode_mimi_content(data) == c
    fields = F.franking_fields(data)
    assert (fields.salt, fields.sender_uri, fields.room_uri) == (c.salt, ALICE, ROOM)
    for bad in (b"", data[:-1], data + b"\x00", b"\x9f", b"\x87" + b"\x00" * 7):
        with pytest.raises(ValueError):
            decode_mimi_content(bad)


def test_upload_body_is_the_keystore_format() -> None:
    net = Net()
    c = net.client(B1)
    step = c.upload_key_packages(2, last_resort=1)
    (m,) = step.messages
    assert m.op == ClientOp.upload_key_packages
    kps = parse_upload(m.body)
    assert [is_last_resort(kp) for kp in kps] == [False, False, True]
    assert all(kp.leaf_node.credential.identity == B1.encode() for kp in kps)
    assert c.key_package_count() == 3


# ==========================================================================
# tests: the draft's flows


def test_create_room() -> None:
    net, alice = room_with_alice()
    (create,) = [m for m in net.sent if m.op == ClientOp.create_room]
    assert create.room == ROOM
    obs = net.hub.observer
    assert obs is not None and obs.epoch == 0 and obs.tree_in_group_info
    assert alice.rooms() == [ROOM] and alice.epoch(ROOM) == 0
    assert alice.participants(ROOM) == {ALICE: 3}  # group_admin of the cooperative room
    assert F.franking_agent_of(alice.group(ROOM).extensions) is not None  # type: ignore[union-attr]
    assert [e.status for e in net.kinds(A1, "client.epoch")] == ["created"]
    assert alice.pending_operations(ROOM) == []


def test_add_user_two_devices_join_from_welcome() -> None:
    net, alice = room_with_alice()
    b1, b2 = with_users(net, [B1, B2])
    net.do(A1, alice.add_user(ROOM, BOB, net.now))
    assert [m.op for m in net.sent if m.client == A1][-2:] == [ClientOp.fetch_key_material, ClientOp.update]
    req = W.KeyMaterialRequest.decode(next(m.body for m in net.sent if m.op == ClientOp.fetch_key_material))
    assert req.requesting_user.uri == ALICE and req.room_id.uri == ROOM
    assert SUITE.verify_with_label(req.requester_signature_key, b"KeyMaterialRequestTBS", req.tbs().encode(),
                                   req.key_material_request_signature)
    assert_agree(net, [A1, B1, B2])
    assert members_of(net) == sorted([A1, B1, B2])
    for c in (alice, b1, b2):
        assert c.participants(ROOM) == {ALICE: 3, BOB: 2}
    assert [e.status for e in net.kinds(B1, "client.epoch")] == ["joined"]
    assert b1.key_package_count() == 3  # 3 one-time + 1 last resort, one used
    # Alice's own commit came back to her after the success reply: dropped as her echo.
    assert [e.status for e in net.kinds(A1, "client.drop")] == ["ownEcho"]


def test_messages_are_franked_and_delivered_once_even_when_duplicated() -> None:
    net, alice = room_with_alice()
    (b1,) = with_users(net, [B1])
    net.do(A1, alice.add_user(ROOM, BOB, net.now))
    net.duplicate = True
    net.do(B1, b1.send_message(ROOM, "hello from bob", net.now))
    net.do(A1, alice.send_message(ROOM, "hi bob", net.now))
    assert net.texts(A1) == ["hello from bob"]
    assert net.texts(B1) == ["hi bob"]
    delivers = net.kinds(A1, "client.deliver")
    assert [e.status for e in delivers] == ["frank:ok"]
    (_, (room, sender, text, mid)) = next(d for d in net.delivered if d[0] == A1)
    assert (room, sender) == (ROOM, BOB)
    stored = alice.received_frank(ROOM, mid)
    assert stored is not None
    content, record = stored
    assert F.verify_abusive_message(SUITE, net.hub.franking_secret, record.abusive_message(content), ROOM, BOB)
    drops = [e.status for e in net.kinds(A1, "client.drop")]
    assert "duplicate" in drops and "ownEcho" in drops
    # Hand the very same Deliver over again, much later: still dropped.
    body = [m for m in net.sent if m.op == ClientOp.submit_message and m.client == B1][0].body
    app = W.SubmitMessageRequest.decode(body).app_message
    again = Deliver(A1, ROOM, W.FanoutMessage.application(1, app, None).encode(), msg_id_of(app.encode()))
    net.absorb(A1, alice.on_deliver(again, net.now))
    assert net.texts(A1) == ["hello from bob"]


def test_race_loser_gets_wrong_epoch_and_retries_after_the_winning_commit() -> None:
    net, alice = room_with_alice()
    (b1,) = with_users(net, [B1])
    net.do(A1, alice.add_user(ROOM, BOB, net.now))
    with_users(net, [C1, D1])
    # Both commit on the same epoch: Alice adds Cathy, Bob adds Dave. Bob's
    # deliveries are held so his wrongEpoch reply comes before the winner.
    net.hold_for.add(B1)
    net.absorb(A1, alice.add_user(ROOM, CATHY, net.now))
    net.absorb(B1, b1.add_user(ROOM, DAVE, net.now))
    net.run()
    retries = net.kinds(B1, "client.retry")
    assert [e.status for e in retries] == ["wrongEpoch"]
    assert retries[0].epoch == 2  # the hub's currentEpoch
    assert b1.pending_operations(ROOM) == ["add_user"]  # waiting for the winning commit
    assert b1.epoch(ROOM) == 1
    net.release(B1)
    assert b1.pending_operations(ROOM) == []
    assert_agree(net, [A1, B1, C1, D1])
    assert net.hub.observer is not None and net.hub.observer.epoch == 3
    assert alice.participants(ROOM) == {ALICE: 3, BOB: 2, CATHY: 2, DAVE: 2}
    commits = [e for e in net.kinds(B1, "client.commit")]
    assert [e.epoch for e in commits] == [1, 2]  # same add, rebuilt against the new epoch


def test_race_when_the_winner_arrives_before_the_refusal() -> None:
    net, alice = room_with_alice()
    (b1,) = with_users(net, [B1])
    net.do(A1, alice.add_user(ROOM, BOB, net.now))
    with_users(net, [C1, D1])
    net.absorb(A1, alice.add_user(ROOM, CATHY, net.now))
    net.absorb(B1, b1.add_user(ROOM, DAVE, net.now))
    net.run()
    assert [e.status for e in net.kinds(B1, "client.retry")] == ["wrongEpoch"]
    assert_agree(net, [A1, B1, C1, D1])


@pytest.mark.parametrize("mode", ["immediate", "after_commit"])
def test_retry_modes_and_backoff_give_up_after_max_attempts(mode: str) -> None:
    retry = RetryStrategy(max_attempts=2, backoff_ms=50, jitter_ms=10, mode=mode)
    net, alice = room_with_alice()
    b1 = net.client(B1, retry=retry)
    net.do(B1, b1.upload_key_packages(3))
    net.do(A1, alice.add_user(ROOM, BOB, net.now))
    with_users(net, [C1, D1])
    net.hold_for.add(B1)
    net.absorb(A1, alice.add_user(ROOM, CATHY, net.now))
    net.absorb(B1, b1.add_user(ROOM, DAVE, net.now))
    net.run(timers=False)
    (retry_ev,) = net.kinds(B1, "client.retry")
    assert "50" in retry_ev.detail or "5" in retry_ev.detail  # a backoff timer was armed
    assert len(net.timers) == 1 and 50 <= net.timers[0][0] - net.now <= 60
    if mode == "immediate":
        # Rebuilt against epoch 1 again: refused again, out of attempts.
        net.run()
        assert [e.kind for e in net.kinds(B1) if e.kind in ("client.retry", "client.fail")] == [
            "client.retry", "client.fail"]
        net.release(B1)
        assert DAVE not in alice.participants(ROOM)
    else:
        net.release(B1)
        assert DAVE in alice.participants(ROOM)
        assert not net.kinds(B1, "client.fail")
    assert_agree(net, [A1, B1, C1])


def test_invalid_proposal_when_a_commit_misses_a_cached_proposal() -> None:
    net, alice = room_with_alice()
    (c1,) = with_users(net, [C1])
    b1 = net.client(B1, pending_proposals="random_delay", pending_delay_ms=(5000, 5000))
    net.do(B1, b1.upload_key_packages(2))
    net.do(A1, alice.add_user(ROOM, BOB, net.now))
    net.do(A1, alice.add_user(ROOM, CATHY, net.now))
    # Cathy leaves; the hub caches her proposals. Alice has not seen them
    # when she commits her own add: the hub refuses it (invalidProposal).
    d1 = net.client(D1)
    net.do(D1, d1.upload_key_packages(2))
    net.hold_for.add(A1)
    net.absorb(C1, c1.leave(ROOM, net.now))
    net.absorb(A1, alice.add_user(ROOM, DAVE, net.now))
    net.run(timers=False)
    (retry,) = net.kinds(A1, "client.retry")
    assert retry.status == "invalidProposal" and "2 proposal(s)" in retry.detail
    assert alice.pending_operations(ROOM) == ["add_user"]
    # Once the proposals arrive she rebuilds the add, now including them.
    net.release(A1)
    assert alice.pending_operations(ROOM) == []
    assert_agree(net, [A1, B1, D1])
    assert c1.rooms() == []
    assert alice.participants(ROOM) == {ALICE: 3, BOB: 2, DAVE: 2}
    # Bob's delayed commit found nothing left to commit.
    assert not [e for e in net.kinds(B1, "client.commit")]


def test_leave_with_immediate_commit() -> None:
    net, alice = room_with_alice()
    b1, b2, c1 = with_users(net, [B1, B2, C1])
    net.do(A1, alice.add_user(ROOM, BOB, net.now))
    net.do(A1, alice.add_user(ROOM, CATHY, net.now))
    net.do(B1, b1.leave(ROOM, net.now))
    # One bundle: Remove B1, Remove B2, AppDataUpdate(-Bob).
    body = [m for m in net.sent if m.client == B1 and m.op == ClientOp.update][-1].body
    bundle = W.UpdateRequest.decode(body).bundle
    assert bundle.kind == W.MessageKind.proposal and len(bundle.more_proposals or []) == 2
    assert [e.kind for e in net.kinds(B1, "client.propose")] == ["client.propose"]
    assert members_of(net) == sorted([A1, C1])
    assert_agree(net, [A1, C1])
    for c in (b1, b2):
        assert c.rooms() == []
        assert [e.status for e in net.kinds(c.client_uri, "client.epoch")][-1] == "removed"
        assert any(m.op == ClientOp.left_room and m.client == c.client_uri for m in net.sent)
    assert alice.participants(ROOM) == {ALICE: 3, CATHY: 2}
    # Bob's other device saw its own removal proposed and did not commit it.
    assert not [e for e in net.kinds(B2, "client.commit")]
    assert not net.kinds(B1, "client.fail") and not net.kinds(B2, "client.fail")


def test_a_leave_refused_for_a_moving_room_is_retried_past_max_attempts(monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 11: under commit contention a leave whose proposals were refused
    wrongEpoch five times was abandoned and the user stayed. A leave refused
    because the room moved on is retried while the hub answers; the other
    operations still stop at max_attempts."""
    net, alice = room_with_alice()
    b1, c1 = with_users(net, [B1, C1])
    net.do(A1, alice.add_user(ROOM, BOB, net.now))
    net.do(A1, alice.add_user(ROOM, CATHY, net.now))
    real = FakeHub.update
    refusals = {"n": 0}

    def contended(self: FakeHub, m: ClientMessage, ts: int) -> list[ClientReply | Deliver]:
        bundle = W.UpdateRequest.decode(m.body).bundle
        if bundle.kind == W.MessageKind.proposal and refusals["n"] < 7:
            refusals["n"] += 1  # another member's commit always got in first
            assert self.observer is not None
            return [self.update_reply(m, W.UpdateRoomResponse.wrong_epoch(self.observer.epoch))]
        return real(self, m, ts)

    monkeypatch.setattr(FakeHub, "update", contended)
    net.do(B1, b1.leave(ROOM, net.now))
    assert refusals["n"] == 7 and b1.rooms() == []
    assert len(net.kinds(B1, "client.retry")) == 7 and not net.kinds(B1, "client.fail")
    assert alice.participants(ROOM) == {ALICE: 3, CATHY: 2}
    # A leave that cannot reach the hub still fails, reported.
    c1_before = len(net.kinds(C1, "client.fail"))
    monkeypatch.setattr(FakeHub, "update", lambda self, m, ts: [self.reply(m, 503, b"", "Service Unavailable")])
    net.do(C1, c1.leave(ROOM, net.now))
    fails = net.kinds(C1, "client.fail")[c1_before:]
    assert len(fails) == 1 and fails[0].operation == "leave" and "gave up after 5" in fails[0].reason


def test_leave_with_random_delay_commits_once_after_a_timer() -> None:
    net = Net()
    kw: dict[str, Any] = {"pending_proposals": "random_delay", "pending_delay_ms": (100, 2000)}
    alice = net.client(A1, **kw)
    net.do(A1, alice.create_room(ROOM, hub_signature_key=net.hub.sig_pub, now_ms=0))
    b1, c1, d1 = with_users(net, [B1, C1, D1], **kw)
    for u in (BOB, CATHY, DAVE):
        net.do(A1, alice.add_user(ROOM, u, net.now))
    start = net.now
    net.absorb(B1, b1.leave(ROOM, net.now))
    net.run(timers=False)
    # Alice, Cathy and Dave each armed one timer; nobody committed yet.
    assert len(net.timers) == 3
    assert all(start + 100 <= t[0] <= start + 2000 for t in net.timers)
    assert net.hub.accepted[-1] == "proposals"
    net.run()
    committers = [u for u, e in net.events if e.kind == "client.commit" and "commit_pending" in e.detail]
    assert len(committers) == 1  # the first timer commits; the others find nothing left
    assert b1.rooms() == []
    assert_agree(net, [A1, C1, D1])
    assert BOB not in alice.participants(ROOM)


def test_leave_is_proposed_again_when_an_external_commit_drops_the_proposals() -> None:
    net = Net()
    kw: dict[str, Any] = {"pending_proposals": "random_delay", "pending_delay_ms": (5000, 5000)}
    alice = net.client(A1, **kw)
    net.do(A1, alice.create_room(ROOM, hub_signature_key=net.hub.sig_pub, now_ms=0))
    b1, c1 = with_users(net, [B1, C1], **kw)
    for u in (BOB, CATHY):
        net.do(A1, alice.add_user(ROOM, u, net.now))
    net.absorb(B1, b1.leave(ROOM, net.now))
    net.run(timers=False)
    # Cathy's new device joins by external commit before anyone commits the
    # leave: an external commit cannot include Bob's Removes, they die with the epoch.
    c3 = net.client("mimi://c.example/d/cathy/C3", **kw)
    net.absorb(c3.client_uri, c3.join_new_device(ROOM, net.now))
    net.run(timers=False)
    assert len(net.kinds(B1, "client.propose")) == 2  # Bob proposed again in the new epoch
    assert b1.rooms() == [ROOM]
    net.run()
    assert b1.rooms() == []
    assert_agree(net, [A1, C1, c3.client_uri])
    assert alice.participants(ROOM) == {ALICE: 3, CATHY: 2}


def test_out_of_order_commits_are_buffered_until_the_gap_fills() -> None:
    net, alice = room_with_alice()
    b1, c1, d1 = with_users(net, [B1, C1, D1])
    net.do(A1, alice.add_user(ROOM, BOB, net.now))
    net.hold_for.add(B1)
    net.do(A1, alice.add_user(ROOM, CATHY, net.now))
    net.do(A1, alice.add_user(ROOM, DAVE, net.now))
    net.do(C1, c1.send_message(ROOM, "in epoch 3", net.now))
    assert len(net.held[B1]) == 3 and b1.epoch(ROOM) == 1
    net.release(B1, order=[2, 1, 0])  # message, commit 2->3, commit 1->2
    gaps = net.kinds(B1, "client.gap")
    assert [e.epoch for e in gaps] == [3, 2]
    assert_agree(net, [A1, B1, C1, D1])
    assert net.texts(B1) == ["in epoch 3"]
    assert not [e for e in net.kinds(B1, "client.drop")]


def test_stale_and_malformed_deliveries_become_events() -> None:
    net, alice = room_with_alice()
    (b1,) = with_users(net, [B1])
    net.do(A1, alice.add_user(ROOM, BOB, net.now))
    first_commit = next(m for m in net.sent if m.op == ClientOp.update and m.client == A1)
    commit = W.UpdateRequest.decode(first_commit.body).bundle.proposal_or_commit
    net.do(A1, alice.add_user(ROOM, CATHY, net.now))  # fails: no KeyPackages for Cathy
    assert [e.status for e in net.kinds(A1, "client.fail")] == ["userUnknown"]
    stale = Deliver(B1, ROOM, W.FanoutMessage.commit(1, commit).encode(), "x-stale")
    junk = [
        Deliver(B1, ROOM, b"\x00\x01garbage", "x-junk"),
        Deliver(B1, ROOM, b"", "x-empty"),
        Deliver(B1, "mimi://z.example/r/other", W.FanoutMessage.commit(1, commit).encode(), "x-other"),
    ]
    before = b1.epoch(ROOM)
    for d in [stale, *junk]:
        step = b1.on_deliver(d, net.now)
        assert isinstance(step, ClientStep)
        net.absorb(B1, step)
    assert b1.epoch(ROOM) == before
    drops = {e.msg_id: e.status for e in net.kinds(B1, "client.drop")}
    assert drops["x-stale"] == "stale" and drops["x-junk"] == "malformed" and drops["x-empty"] == "malformed"
    # Replies nobody asked for, and unknown timers, are harmless too.
    net.absorb(B1, b1.on_reply(ClientReply(B1, 9999, 200, b"\x01"), net.now))
    assert net.kinds(B1, "client.drop")[-1].status == "staleReply"
    assert b1.on_timer(424242, net.now) == ClientStep()
    # A Welcome for someone else.
    welcome_body = next(W.UpdateRequest.decode(m.body).bundle.welcome for m in net.sent
                        if m.op == ClientOp.update and m.client == A1)
    rto = RatchetTreeOption(RatchetTreeRepresentation.distribution_service, None, None, None)
    w = Deliver(A1, ROOM, W.FanoutMessage.welcome(1, MLSMessage.wrap(welcome_body), rto).encode(), "x-w")
    net.absorb(A1, alice.on_deliver(w, net.now))
    assert net.kinds(A1, "client.drop")[-1].status == "notForMe"


def test_new_device_joins_by_external_commit() -> None:
    net, alice = room_with_alice()
    (b1,) = with_users(net, [B1])
    net.do(A1, alice.add_user(ROOM, BOB, net.now))
    b3 = net.client(B3)
    net.do(B3, b3.join_new_device(ROOM, net.now))
    ops = [m.op for m in net.sent if m.client == B3]
    assert ops == [ClientOp.fetch_group_info, ClientOp.update]
    assert [e.status for e in net.kinds(B3, "client.epoch")] == ["joined"]
    assert members_of(net) == sorted([A1, B1, B3])
    assert_agree(net, [A1, B1, B3])
    net.do(B3, b3.send_message(ROOM, "from my new phone", net.now))
    assert net.texts(A1) == ["from my new phone"] and net.texts(B1) == ["from my new phone"]
    assert b3.participants(ROOM) == {ALICE: 3, BOB: 2}


def test_new_device_retries_the_external_commit_after_wrong_epoch() -> None:
    net, alice = room_with_alice()
    (b1,) = with_users(net, [B1])
    net.do(A1, alice.add_user(ROOM, BOB, net.now))
    with_users(net, [C1])
    b3 = net.client(B3)
    # B3 fetches the GroupInfo, then Alice commits before B3's commit arrives.
    net.absorb(B3, b3.join_new_device(ROOM, net.now))
    gi_req = net.queue.popleft()
    for out in net.hub.handle(gi_req, net.now):
        net.queue.append(out)
    reply = net.queue.popleft()
    net.absorb(B3, b3.on_reply(reply, net.now))  # B3's external commit is now queued
    ext_commit = net.queue.pop()
    net.do(A1, alice.add_user(ROOM, CATHY, net.now))
    net.queue.append(ext_commit)
    net.run()
    assert [e.status for e in net.kinds(B3, "client.retry")] == ["wrongEpoch"]
    assert [m.op for m in net.sent if m.client == B3].count(ClientOp.fetch_group_info) == 2
    assert_agree(net, [A1, B1, C1, B3])


def test_remove_user_commits_removes_and_list_update() -> None:
    net, alice = room_with_alice()
    b1, b2 = with_users(net, [B1, B2])
    net.do(A1, alice.add_user(ROOM, BOB, net.now))
    net.do(A1, alice.remove_user(ROOM, BOB, net.now))
    assert members_of(net) == [A1]
    assert alice.participants(ROOM) == {ALICE: 3}
    assert b1.rooms() == [] and b2.rooms() == []
    # Removing someone who is not there is a no-op, not an error.
    n = len(net.sent)
    net.do(A1, alice.remove_user(ROOM, BOB, net.now))
    assert len(net.sent) == n and not net.kinds(A1, "client.fail")


def test_operations_queue_in_order_and_messages_wait_for_commits() -> None:
    net, alice = room_with_alice()
    (b1,) = with_users(net, [B1])
    net.absorb(A1, alice.add_user(ROOM, BOB, net.now))
    net.absorb(A1, alice.send_message(ROOM, "welcome bob", net.now))
    assert alice.pending_operations(ROOM) == ["add_user", "send_message"]
    net.run()
    assert net.texts(B1) == ["welcome bob"]  # sent in epoch 1, after Bob's add


def test_determinism_same_seed_same_bytes() -> None:
    def run() -> list[bytes]:
        net, alice = room_with_alice()
        with_users(net, [B1, C1])
        net.do(A1, alice.add_user(ROOM, BOB, net.now))
        net.do(A1, alice.send_message(ROOM, "x", net.now))
        return [m.body for m in net.sent]

    assert run() == run()


def test_constructor_validates_options() -> None:
    with pytest.raises(ValueError):
        ClientCore(A1, 1, DeterministicRandom(1), pending_proposals="sometimes")
    with pytest.raises(ValueError):
        RetryStrategy(mode="never")
    with pytest.raises(ValueError):
        ClientCore(A1, 1, DeterministicRandom(1), pending_delay_ms=(5, 1))


def test_domain_helpers_used_by_the_fake_are_consistent() -> None:
    assert domain_of(ROOM) == "a.example"
    with pytest.raises(DecodeError):
        W.FanoutMessage.decode(b"")


# ==========================================================================
# integration: the draft's example flow through the real provider and hub


def test_draft_example_flow_with_real_providers() -> None:
    """[P] "Example protocol flow" end to end: Alice creates clubhouse at
    a.example, adds Bob (two devices), Bob adds Cathy, Cathy says hello, Bob
    leaves (the others commit at once), Cathy adds a new device."""
    from mimisim.mimi.inmemory import InMemoryWorld
    from mimisim.mimi.provider import ProviderCore

    root = DeterministicRandom(5, "world")
    w = InMemoryWorld()
    for d in ("a.example", "b.example", "c.example"):
        w.add_provider(ProviderCore.new(d, root.fork("provider " + d)))

    def mk(uri: str) -> ClientCore:
        c = ClientCore(uri, 1, root.fork(uri), now_s=EPOCH_BASE_MS // 1000)
        w.add_client(c)
        return c

    a1, b1, b2, c1, c2 = (mk(u) for u in (A1, B1, B2, C1, "mimi://c.example/d/cathy/C2"))
    for c in (b1, b2, c1, c2):
        w.client_step(c.client_uri, c.upload_key_packages(2))
    hub = w.providers["a.example"]
    w.client_step(A1, a1.create_room(ROOM, hub_signature_key=hub.hub_signature_pub,
                                     hub_franking_key=hub.franking_key, now_ms=0))
    w.client_step(A1, a1.add_user(ROOM, BOB, w.now_ms))
    w.client_step(B1, b1.add_user(ROOM, CATHY, w.now_ms))
    everyone = (a1, b1, b2, c1, c2)
    assert {c.epoch(ROOM) for c in everyone} == {2}
    assert len({c.epoch_authenticator(ROOM) for c in everyone}) == 1
    w.client_step(C1, c1.send_message(ROOM, "hello", w.now_ms))
    got = sorted((u, d[1], d[2]) for u, d in w.delivered)
    assert got == sorted((c.client_uri, CATHY, "hello") for c in (a1, b1, b2, c2))
    assert all(e.status == "frank:ok" for _, e in w.events if e.kind == "client.deliver")
    w.client_step(B1, b1.leave(ROOM, w.now_ms))
    assert b1.rooms() == [] and b2.rooms() == []
    c3 = mk("mimi://c.example/d/cathy/C3")
    w.client_step(c3.client_uri, c3.join_new_device(ROOM, w.now_ms))
    rest = (a1, c1, c2, c3)
    assert len({(c.epoch(ROOM), c.epoch_authenticator(ROOM)) for c in rest}) == 1
    assert hub.rooms[ROOM].epoch == a1.epoch(ROOM)
    assert a1.participants(ROOM) == {ALICE: 3, CATHY: 2}
    assert not [e for _, e in w.events if e.kind == "client.fail"]


# ==========================================================================
# structure: bugs propagate, the stage table, the frozen output


@pytest.mark.parametrize("path", ["reply", "deliver"])
def test_an_unexpected_exception_in_the_core_propagates(path: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A bug inside the client is not a protocol error: it escapes the core
    (failing the run) instead of becoming a ``client.drop internalError`` row."""
    from mimisim.mimi.client import OperationEngine

    net, alice = room_with_alice()
    step = alice.send_message(ROOM, "hello", net.now)
    (submit,) = step.messages
    replies = net.hub.handle(submit, net.now)
    reply = next(x for x in replies if isinstance(x, ClientReply))
    deliver = next(x for x in replies if isinstance(x, Deliver) and x.client == A1)

    def bug(self: Any, *a: Any, **k: Any) -> None:
        raise ZeroDivisionError("a bug")

    monkeypatch.setattr(OperationEngine, "finish", bug)
    with pytest.raises(ZeroDivisionError):
        if path == "reply":
            alice.on_reply(reply, net.now)
        else:
            alice.on_deliver(deliver, net.now)


def test_a_protocol_error_at_the_boundary_becomes_an_event(monkeypatch: pytest.MonkeyPatch) -> None:
    """What bytes from a peer can raise (here a DecodeError) still becomes a
    ``client.drop`` event rather than escaping."""
    from mimisim.mimi.client import OperationEngine

    net, alice = room_with_alice()
    (submit,) = alice.send_message(ROOM, "hello", net.now).messages
    reply = next(x for x in net.hub.handle(submit, net.now) if isinstance(x, ClientReply))

    def bad(self: Any, *a: Any, **k: Any) -> None:
        raise DecodeError("truncated")

    monkeypatch.setattr(OperationEngine, "finish", bad)
    step = alice.on_reply(reply, net.now)
    # (the send itself ended before the failure: its client.done row comes too)
    assert [(e.kind, e.status) for e in step.events] == [("client.drop", "internalError"), ("client.done", "done")]


def test_operation_stage_table() -> None:
    """Every non-terminal stage can fail; terminal stages have no way out; a
    move the table does not list is refused as a bug."""
    from mimisim.mimi.client import TRANSITIONS, Op, OperationStateError, OpEvent, OpKind, Stage

    terminal = {Stage.DONE, Stage.FAILED}
    for stage in Stage:
        outs = {e for (s, e) in TRANSITIONS if s == stage}
        if stage in terminal:
            assert not outs
        else:
            assert OpEvent.FAIL in outs
    assert set(TRANSITIONS.values()) == set(Stage)
    op = Op(1, OpKind.SEND, ROOM, 0)
    op.advance(OpEvent.SUBMIT)
    assert op.stage == Stage.SUBMITTED
    with pytest.raises(OperationStateError):
        op.advance(OpEvent.FETCHED)
    op.advance(OpEvent.FINISH)
    with pytest.raises(OperationStateError):
        op.advance(OpEvent.FAIL)
    assert OpKind.SEND == "send_message" and f"{OpKind.ADD}" == "add_user"


def test_client_step_is_frozen() -> None:
    """The host reads the core's actions but cannot rewrite them in place."""
    import dataclasses

    net, alice = room_with_alice()
    step = alice.send_message(ROOM, "hello", net.now)
    assert isinstance(step.actions, tuple) and isinstance(step.events, tuple)
    assert step.messages and step.messages == tuple(a for a in step.actions if isinstance(a, ClientMessage))
    with pytest.raises(dataclasses.FrozenInstanceError):
        step.actions = ()  # type: ignore[misc]
    with pytest.raises(AttributeError):
        step.actions.append(step.actions[0])  # type: ignore[attr-defined]


def test_client_events_are_typed() -> None:
    """Every client.* event is a typed event of mimisim.events with its facts
    in typed fields; the detail text renders them as before."""
    from mimisim import events as E
    from mimisim.mimi.hub import state_tag

    net, alice = room_with_alice()
    (b1,) = with_users(net, [B1])
    net.do(A1, alice.add_user(ROOM, BOB, net.now))
    net.do(A1, alice.send_message(ROOM, "hello", net.now))
    assert all(isinstance(e, E.TraceEvent) and e.kind.startswith("client.") for _, e in net.events)
    (commit,) = [e for u, e in net.events if u == A1 and isinstance(e, E.ClientCommit)]
    assert (commit.operation, commit.attempt, commit.added, commit.removed, commit.external) == ("add_user", 1, 1, 0,
                                                                                                   False)
    assert commit.welcome_bytes and commit.commit_bytes and commit.bundle_bytes > commit.commit_bytes
    assert commit.detail.startswith("add_user attempt 1: +1 -0 sizes: commit=")
    g = alice.group(ROOM)
    assert g is not None
    last = [e for u, e in net.events if u == A1 and isinstance(e, E.ClientEpoch)][-1]
    assert (last.via, last.operation, last.epoch) == ("own_commit", "add_user", g.epoch)
    assert last.detail == "own commit (add_user) " + state_tag(g.tree_hash, alice.participants(ROOM),
                                                               g.epoch_authenticator)
    joined = [e for u, e in net.events if u == B1 and isinstance(e, E.ClientEpoch)]
    assert [(e.via, e.status) for e in joined] == [("welcome", "joined")]
    (sub,) = [e for u, e in net.events if isinstance(e, E.ClientSubmit)]
    assert sub.attempt == 1 and sub.content_bytes and sub.detail == f"attempt 1, {sub.content_bytes} bytes"
    (dl,) = [e for u, e in net.events if u == B1 and isinstance(e, E.ClientDeliver)]
    assert (dl.sender, dl.frank, dl.status, dl.peer) == (ALICE, "ok", "frank:ok", A1)


def test_own_leave_proposals_echoed_after_the_commit_that_uses_them(monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 11 (chaos-churn, random_delay 2 s, seed 15): the hub accepted
    Bob's leave proposals but his client saw a transport failure and forgot
    them; the commit that references them reached him before their echo,
    waited for them, and the echo was dropped as ``ownEcho``: the held commit
    never ran and the client resynced for nothing. The echo of own proposals
    the client no longer holds is processed like anyone's."""
    net, alice = room_with_alice()
    (c1,) = with_users(net, [C1])
    (b1,) = with_users(net, [B1], retry=RetryStrategy(backoff_ms=500))
    net.do(A1, alice.add_user(ROOM, BOB, net.now))
    net.do(A1, alice.add_user(ROOM, CATHY, net.now))
    real = FakeHub.update

    def answer_lost(self: FakeHub, m: ClientMessage, ts: int) -> list[ClientReply | Deliver]:
        out = real(self, m, ts)
        if m.client == B1 and W.UpdateRequest.decode(m.body).bundle.kind == W.MessageKind.proposal:
            out[0] = self.reply(m, 503, b"", "Service Unavailable")  # accepted, but the answer is lost
        return out

    monkeypatch.setattr(FakeHub, "update", answer_lost)
    net.hold_for.add(B1)
    net.absorb(B1, b1.leave(ROOM, net.now))
    net.run(timers=False)
    assert net.hub.accepted[-2:] == ["proposals", "commit"]  # Alice committed the leave at once
    kinds = [W.FanoutMessage.decode(d.body).kind for d in net.held[B1]]
    assert kinds == [W.MessageKind.proposal, W.MessageKind.commit]
    net.release(B1, order=[1, 0])  # the commit overtakes the proposals' echo
    assert b1.rooms() == []
    assert not [e for e in net.kinds(B1, "client.gap") if e.status in ("stuck", "resync")]
    assert not [e for e in net.kinds(B1, "client.drop") if e.status == "ownEcho"]
    assert alice.participants(ROOM) == {ALICE: 3, CATHY: 2}
    assert not net.kinds(B1, "client.fail")


@pytest.mark.parametrize("echo_first", [True, False])
def test_a_hub_that_lost_a_commit_and_took_ours_instead(echo_first: bool) -> None:
    """Issue 11 (chaos-lagging seeds 2 and 6): Alice's commit for epoch e is
    accepted and merged by everyone; the hub then loses it (a lagging
    standby takes over) and accepts Cathy's commit for e, which her provider
    had sent before and retries now. Alice and Bob go back to e and merge
    Cathy's commit on its fanout; Cathy, who had merged Alice's too, does the
    same on her own commit's echo or its late success, whichever comes first."""
    import copy

    net, alice = room_with_alice()
    b1, c1 = with_users(net, [B1, C1])
    net.do(A1, alice.add_user(ROOM, BOB, net.now))
    net.do(A1, alice.add_user(ROOM, CATHY, net.now))
    base = alice.epoch(ROOM)
    before = copy.deepcopy(net.hub.observer)
    net.absorb(C1, c1.update(ROOM, net.now))  # built at e, held at her provider
    held = net.queue.pop()
    assert isinstance(held, ClientMessage) and held.client == C1
    net.do(A1, alice.update(ROOM, net.now))  # accepted and merged by all three
    assert {c.epoch(ROOM) for c in (alice, b1, c1)} == {base + 1}
    net.hub.observer = before  # the failover: the new hub never saw Alice's commit
    if not echo_first:
        net.hold_for.add(C1)
    net.queue.append(held)
    net.run()
    if not echo_first:
        net.release(C1)
    forks = [(u, e) for u, e in net.events if e.kind == "client.gap" and e.status == "fork"]
    assert sorted(u for u, _ in forks) == sorted([A1, B1, C1])
    assert {e.epoch for _, e in forks} == {base}
    assert_agree(net, [A1, B1, C1])
    assert net.hub.observer.epoch == base + 1
    assert not [e for _, e in net.events if e.kind == "client.drop" and e.status == "staleSuccess"]
    net.do(B1, b1.send_message(ROOM, "one room again", net.now))
    assert ("one room again" in net.texts(A1)) and ("one room again" in net.texts(C1))


def test_the_last_member_cannot_leave_and_is_told_so() -> None:
    """Issue 11 (chaos-churn seed 7): Bob, alone in the room after Dave's
    removal, asked to leave; his proposals were accepted and nobody was left
    to commit them, so the leave never ended and his queue stalled. Only
    another member can commit a Remove and an MLS group keeps at least one
    member: the leave fails at once, reported, nothing is sent."""
    net, alice = room_with_alice()
    sent = len(net.sent)
    net.do(A1, alice.leave(ROOM, net.now))
    fails = net.kinds(A1, "client.fail")
    assert len(fails) == 1 and fails[0].status == "lastMember" and fails[0].operation == "leave"
    assert len(net.sent) == sent and not net.kinds(A1, "client.propose")
    assert alice.rooms() == [ROOM] and alice.pending_operations(ROOM) == []
    net.do(A1, alice.update(ROOM, net.now))  # the queue goes on
    assert net.hub.accepted[-1] == "commit"
