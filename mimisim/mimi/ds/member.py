"""A client of the ds profile: the MIMI client's operation engine speaking DSRequests.

Why a wrapper and not a second client: everything a client does besides
framing -- one queue of operations per room, retries after ``wrong_epoch``,
buffering of early deliveries, held commits, gap detection and resync by
external commit, giving back a commit a lagging hub lost -- is the same in
both drafts, because both run one MLS group per room through a hub that
orders commits. What differs is the wire between the client and the hub, and
that is all :class:`DSMember` changes (docs/ds-choices.md C18):

* outgoing: each request the client core builds for its provider (an
  UpdateRequest with a commit or proposals, a SubmitMessageRequest, a
  KeyMaterialRequest, a GroupInfoRequest) becomes the DSRequest carrying the
  same MLS messages -- ``ds_commits`` with an MLSGroupUpdate (the commit and
  the PartialGroupInfo of the committer's GroupInfo) and its Welcome,
  ``ds_proposals``, ``ds_send_message``, ``ds_key_packages`` for the target
  user's clients, ``ds_group_info`` -- signed with a ClientSignature by the
  sender's leaf (anonymous for external commits and read-only requests,
  C12), addressed to the DS that serves it and sent through the client's own
  DS (the draft's Figure 1; ``ClientOp.ds_request``);
* incoming answers: the DSResponse is read back into the outcome the core's
  reply handlers act on (Ok -> success, ``wrong_epoch`` with the group's
  current epoch -> wrongEpoch, ``rate_limited`` -> 429 with its
  Retry-After, other refusals -> notAllowed or invalidProposal); the
  ExternalCommitInfo goes to the core's external join as is;
* deliveries: the guest DS forwards bare MLSMessages; a Welcome is held until
  this client has fetched the ratchet tree of its epoch from the hub
  (``ds_welcome_info``, C4), and joins by external commit if the hub no
  longer keeps that epoch. Every delivery is handed to the core in the form
  its inbound code reads (no hub timestamp, no frank: the ds profile has
  neither).

The FanoutAuth token of the client's own DS goes into every KeyPackage (as
the draft's KeyPackage extension) and every leaf of this client (C11), so
the hub learns it from adds, external joins and updates alike.

Sans-IO, like the core it wraps.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from mimisim import events as E
from mimisim.codec import DecodeError, EncodeError
from mimisim.mimi import wire as W
from mimisim.mimi.client import ClientCore, ClientStep
from mimisim.mimi.client.operations import Op, Room
from mimisim.mimi.client.roomstate import user_of_leaf
from mimisim.mimi.ds import wire as D
from mimisim.mimi.ds.client import anonymous_request, sign_request, welcome_group_id
from mimisim.mimi.ds.hub import fanout_extension
from mimisim.mimi.identity import UriError, domain_of, group_id_of_room, hub_of_room
from mimisim.mimi.transport import ClientMessage, ClientOp, ClientReply, Deliver
from mimisim.mls.crypto import CryptoError
from mimisim.mls.errors import MLSError
from mimisim.mls.structs import (
    GroupInfo,
    MLSMessage,
    Node,
    ProposalType,
    RatchetTreeOption,
    RatchetTreeRepresentation,
    SenderType,
    WireFormat,
)

#: Request ids of the wrapper's own requests (WelcomeInfo) start here, far
#: above the core's, so a reply always finds its owner.
OWN_REQUESTS = 1 << 40
#: Attempts at fetching a Welcome's tree before joining by external commit.
WELCOME_INFO_ATTEMPTS = 3


def room_of_group(group_id: bytes) -> str | None:
    """``mimi://a.example/g/club`` -> ``mimi://a.example/r/club`` (None: not a room's group)."""
    try:
        text = group_id.decode()
    except UnicodeDecodeError:
        return None
    head, sep, rest = text.partition("/g/")
    return f"{head}/r/{rest}" if sep and text.startswith("mimi://") else None


@dataclass
class _Sent:
    """What the core asked for with one request id (to read the answer back)."""

    what: str  # commit | proposals | submit | key_material | group_info
    target: str = ""  # the user whose key material was asked for
    epoch: int = -1  # the application message's epoch (submit)


@dataclass
class _WelcomeWait:
    """A Welcome held until its tree arrives."""

    deliver: Deliver
    message: MLSMessage
    ref: bytes
    attempts: int = 1


class DSMember:
    """A :class:`ClientCore` that speaks the ds profile (see the module docstring).

    ``token``: this client's FanoutAuthToken (issued by its own DS, C6);
    ``directory``: a user's client URIs, as the discovery the draft leaves
    out would give them (C16). The core's API is reached through this object
    (attribute access falls through to the core)."""

    def __init__(self, core: ClientCore, token: D.FanoutAuthToken, directory: Callable[[str], list[str]]) -> None:
        ext = fanout_extension(token)
        core.key_package_extensions = [ext]
        core.leaf_extensions = [ext]
        core.group_info_decoder = self._group_info
        core.frank_messages = False  # no DS franks (C19)
        self.core = core
        self.directory = directory
        self.sent: dict[int, _Sent] = {}
        self.welcomes: dict[int, _WelcomeWait] = {}
        #: (room, epoch, sender leaf) -> proposals held until the set is whole (C19)
        self.held: dict[tuple[str, int, int], list[tuple[Deliver, MLSMessage]]] = {}
        self._next_own = OWN_REQUESTS

    def __getattr__(self, name: str) -> Any:
        return getattr(self.core, name)

    # ------------------------------------------------------------ the core's API, re-framed

    def upload_key_packages(self, count: int, last_resort: int = 1) -> ClientStep:
        return self._out(self.core.upload_key_packages(count, last_resort))

    def create_room(self, room_uri: str, **kw: Any) -> ClientStep:
        return self._out(self.core.create_room(room_uri, **kw))

    def add_user(self, room_uri: str, user_uri: str, now_ms: int, *, role: int | str | None = None) -> ClientStep:
        return self._out(self.core.add_user(room_uri, user_uri, now_ms, role=role))

    def remove_user(self, room_uri: str, user_uri: str, now_ms: int) -> ClientStep:
        return self._out(self.core.remove_user(room_uri, user_uri, now_ms))

    def leave(self, room_uri: str, now_ms: int) -> ClientStep:
        return self._out(self.core.leave(room_uri, now_ms))

    def send_message(self, room_uri: str, text: str, now_ms: int) -> ClientStep:
        return self._out(self.core.send_message(room_uri, text, now_ms))

    def update(self, room_uri: str, now_ms: int) -> ClientStep:
        return self._out(self.core.update(room_uri, now_ms))

    def join_new_device(self, room_uri: str, now_ms: int) -> ClientStep:
        return self._out(self.core.join_new_device(room_uri, now_ms))

    def on_timer(self, token: int, now_ms: int) -> ClientStep:
        return self._out(self.core.on_timer(token, now_ms))

    # ------------------------------------------------------------ outgoing

    def _out(self, step: ClientStep, extra: list[Any] | None = None) -> ClientStep:
        actions: list[Any] = list(extra or [])
        for a in step.actions:
            if isinstance(a, ClientMessage):
                try:
                    a = self._frame(a)
                except (UriError, DecodeError, EncodeError, MLSError, ValueError):
                    pass  # unframeable (no room, a body the core did not build): the DS refuses it as is
            actions.append(a)
        return ClientStep(tuple(actions), step.events, step.delivered)

    def _signed(self, body: object, leaf: int) -> D.DSRequest:
        return sign_request(self.core.suite, self.core.signature_priv, body, leaf)

    def _own_leaf(self, room: str) -> int:
        g = self.core.group(room)
        if g is None:
            raise MLSError(f"no group for {room}")
        leaf: int = g.own_leaf
        return leaf

    def _frame(self, msg: ClientMessage) -> ClientMessage:
        """The DSRequest for one of the core's requests (others pass unchanged:
        uploads, room creation and departures are provider-internal)."""
        op = msg.op
        if op == ClientOp.update:
            b = W.UpdateRequest.decode(msg.body).bundle
            m = b.proposal_or_commit
            sender = m.body.content.sender
            if b.kind == W.MessageKind.commit:
                gio = b.group_info_option
                assert gio is not None  # a commit's bundle always has one (HandshakeBundle)
                if gio.partial_group_info is not None:
                    exts, sig = gio.partial_group_info.group_info_extensions, gio.partial_group_info.signature
                else:
                    assert gio.group_info is not None
                    exts, sig = gio.group_info.extensions, gio.group_info.signature
                update = D.MLSGroupUpdate(m, D.PartialGroupInfo(list(exts), sig))
                welcomes = [MLSMessage.wrap(b.welcome)] if b.welcome is not None else []
                body: object = D.CommitRequest([update], welcomes)
                what = "commit"
            else:
                body = D.ProposalRequest([m, *(b.more_proposals or [])])
                what = "proposals"
            req = self._signed(body, sender.leaf_index) if sender.sender_type == SenderType.member \
                else anonymous_request(body)
            to = hub_of_room(msg.room)
        elif op == ClientOp.submit_message:
            app = W.SubmitMessageRequest.decode(msg.body).app_message
            req = self._signed(D.SendMessageRequest([app]), self._own_leaf(msg.room))
            self.sent[msg.request_id] = _Sent("submit", epoch=int(app.body.epoch))
            return ClientMessage(msg.client, ClientOp.ds_request, msg.request_id, req.encode(), msg.room,
                                 hub_of_room(msg.room))
        elif op == ClientOp.fetch_key_material:
            ids = self.directory(msg.target) or [msg.target]
            req = anonymous_request(D.KeyPackagesRequest([c.encode() for c in ids]))
            what, to = "key_material", domain_of(msg.target)
        elif op == ClientOp.fetch_group_info:
            req = anonymous_request(D.GroupInfoRequest(group_id_of_room(msg.room)))
            what, to = "group_info", hub_of_room(msg.room)
        else:
            return msg
        self.sent[msg.request_id] = _Sent(what, target=msg.target)
        return ClientMessage(msg.client, ClientOp.ds_request, msg.request_id, req.encode(), msg.room, to)

    # ------------------------------------------------------------ answers

    def on_reply(self, reply: ClientReply, now_ms: int) -> ClientStep:
        wait = self.welcomes.pop(reply.request_id, None)
        if wait is not None:
            return self._welcome_info(wait, reply, now_ms)
        sent = self.sent.pop(reply.request_id, None)
        if sent is not None:
            reply = self._read_back(sent, reply)
        return self._out(self.core.on_reply(reply, now_ms))

    def _read_back(self, sent: _Sent, reply: ClientReply) -> ClientReply:
        """The DSResponse as the outcome the core's reply handlers read (C18)."""
        if reply.status not in (200, 429):
            return reply  # no DS answer (timeout, lost connection): the core retries
        try:
            resp = D.DSResponse.decode(reply.body)
        except (DecodeError, EncodeError):
            return ClientReply(reply.client, reply.request_id, 502, b"", "badDSResponse")
        err = resp.error
        if err is not None and err.code == D.DSErrorCode.rate_limited:
            return ClientReply(reply.client, reply.request_id, 429, b"", "rate_limited",
                               retry_after_ms=err.retry_after_ms)
        rid, client = reply.request_id, reply.client
        if sent.what in ("commit", "proposals"):
            if err is None:
                out = W.UpdateRoomResponse.success(0)
            elif err.code == D.DSErrorCode.wrong_epoch:
                out = W.UpdateRoomResponse.wrong_epoch(err.current_epoch or 0, err.reason)
            elif err.code == D.DSErrorCode.invalid_message:
                out = W.UpdateRoomResponse.invalid_proposal([], err.reason)
            else:
                out = W.UpdateRoomResponse.not_allowed(f"{D.DSErrorCode(err.code).name}: {err.reason}")
            return ClientReply(client, rid, 200, out.encode(), W.UpdateResponseCode(out.response_code).name)
        if sent.what == "submit":
            if err is None:
                sub = W.SubmitMessageResponse.accepted(0)
            elif err.code == D.DSErrorCode.wrong_epoch and (err.current_epoch or 0) > sent.epoch:
                sub = W.SubmitMessageResponse.epoch_too_old(err.current_epoch or 0)
            else:
                sub = W.SubmitMessageResponse.not_allowed()
            return ClientReply(client, rid, 200, sub.encode(), W.SubmitResponseCode(sub.status_code).name)
        if err is not None:
            status = 404 if err.code in (D.DSErrorCode.unknown_group, D.DSErrorCode.unknown_client,
                                         D.DSErrorCode.no_key_package) else 403
            return ClientReply(client, rid, status, err.reason.encode()[:200], D.DSErrorCode(err.code).name)
        if sent.what == "key_material":
            body = resp.response_body.body
            if not isinstance(body, D.KeyPackages) or not body.key_packages:
                return ClientReply(client, rid, 404, b"", "no_key_package")
            clients = [W.ClientKeyMaterial(W.KeyMaterialClientCode.success,
                                           W.IdentifierUri((kp.leaf_node.credential.identity or b"").decode()), kp,
                                           None)
                       for kp in body.key_packages]
            kmr = W.KeyMaterialResponse(W.MLS10, W.KeyMaterialUserCode.success, W.IdentifierUri(sent.target),
                                        clients)
            return ClientReply(client, rid, 200, kmr.encode(), "success")
        return reply  # group_info: the core's decoder reads the DSResponse (_group_info)

    def _group_info(self, r: Room, op: Op, reply: ClientReply) -> tuple[GroupInfo, list[Node | None] | None,
                                                                        list[MLSMessage]]:
        body = D.DSResponse.decode(reply.body).response_body.body
        if not isinstance(body, D.ExternalCommitInfo):
            raise MLSError("the hub's answer to ds_group_info is no ExternalCommitInfo")
        gi: GroupInfo = body.group_info.body
        if gi.group_context.group_id != group_id_of_room(r.uri):
            raise MLSError("the GroupInfo is for another group")
        return gi, list(body.ratchet_tree), []

    # ------------------------------------------------------------ deliveries

    def on_deliver(self, deliver: Deliver, now_ms: int) -> ClientStep:
        """One MLSMessage the client's DS forwarded from a fanout."""
        try:
            msg = MLSMessage.decode(deliver.body)
        except (DecodeError, EncodeError):
            return self._out(self.core.on_deliver(deliver, now_ms))  # the core drops it as malformed
        if msg.wire_format == WireFormat.welcome:
            return self._welcome(deliver, msg, now_ms)
        kind = W.message_kind(msg)
        if msg.wire_format == WireFormat.public_message:
            gid = msg.body.content.group_id
        elif msg.wire_format == WireFormat.private_message:
            gid = msg.body.group_id
        else:
            gid = b""
        room = room_of_group(gid) or deliver.room
        if kind == W.MessageKind.proposal:
            return self._proposal(deliver, room, msg, now_ms)
        step = self._flush(room, now_ms)  # proposals a commit may reference go first
        fm = W.FanoutMessage(0, msg, None, None, None, [] if kind == W.MessageKind.commit else None)
        return self._out(self._join_steps(step, self.core.on_deliver(
            Deliver(deliver.client, room, fm.encode(), deliver.msg_id), now_ms)))

    # ------------------------------------------------------------ proposals of one request

    def _proposal(self, deliver: Deliver, room: str, msg: MLSMessage, now_ms: int) -> ClientStep:
        """[C19] The hub fans out each proposal of a ds_proposals request on its
        own; a member that committed at the first one would split a user's leave
        (its clients' Removes and the participant-list removal travel together).
        Proposals of a member are held until its set is whole -- a Remove of each
        of that user's leaves and an AppDataUpdate -- and handed to the core as
        one bundle, as MIMI's /notify carries them; a commit arriving first
        releases them (it may reference them)."""
        sender = msg.body.content.sender
        g = self.core.group(room)
        if sender.sender_type != SenderType.member or g is None or not g.active:
            return self._out(self._hand([(deliver, msg)], room, now_ms))
        key = (room, int(msg.body.content.epoch), int(sender.leaf_index))
        held = self.held.setdefault(key, [])
        held.append((deliver, msg))
        if self._whole(g, sender.leaf_index, [m for _, m in held]):
            del self.held[key]
            return self._out(self._hand(held, room, now_ms))
        return ClientStep()

    @staticmethod
    def _whole(g: Any, sender_leaf: int, msgs: list[MLSMessage]) -> bool:
        props = [m.body.content.proposal for m in msgs]
        removes = {int(p.body.removed) for p in props if int(p.proposal_type) == int(ProposalType.remove)}
        others = [p for p in props if int(p.proposal_type) != int(ProposalType.remove)]
        if not removes:
            return True  # not a leave: nothing to wait for
        node = g.tree.leaf(sender_leaf)
        if node is None:
            return True
        user = user_of_leaf(node)
        mine = {i for i, leaf in g.members() if user_of_leaf(leaf) == user}
        if sender_leaf not in removes:
            return True  # removing others: not this client's leave
        return mine <= removes and bool(others)

    def _hand(self, held: list[tuple[Deliver, MLSMessage]], room: str, now_ms: int) -> ClientStep:
        first_d, first = held[0]
        fm = W.FanoutMessage(0, first, None, None, [m for _, m in held[1:]], None)
        return self.core.on_deliver(Deliver(first_d.client, room, fm.encode(), first_d.msg_id), now_ms)

    def _flush(self, room: str, now_ms: int) -> ClientStep:
        out = ClientStep()
        for key in sorted(k for k in self.held if k[0] == room):
            out = self._join_steps(out, self._hand(self.held.pop(key), room, now_ms))
        return out

    @staticmethod
    def _join_steps(a: ClientStep, b: ClientStep) -> ClientStep:
        return ClientStep(a.actions + b.actions, a.events + b.events, a.delivered + b.delivered)

    def _welcome(self, deliver: Deliver, msg: MLSMessage, now_ms: int) -> ClientStep:
        """Hold a Welcome and ask the hub for the tree of its epoch (C4)."""
        mine = [s.new_member for s in msg.body.secrets if s.new_member in self.core._key_packages]
        if not mine:
            return self._out(self._hand_welcome(deliver, msg, deliver.room, None, now_ms))
        ref = mine[0]
        _kp, priv, _lr = self.core._key_packages[ref]
        try:
            room = room_of_group(welcome_group_id(msg, ref, priv.init_priv, self.core.suite))
        except (MLSError, CryptoError, DecodeError, ValueError):
            room = None
        if room is None:  # the core drops it with the reason
            return self._out(self._hand_welcome(deliver, msg, deliver.room or "", None, now_ms))
        if any(w.ref == ref and w.deliver.room == room for w in self.welcomes.values()):
            # another copy of a Welcome whose tree is being fetched (a last-resort
            # KeyPackage may be in Welcomes of several rooms: those are not copies)
            return ClientStep(events=(E.ClientDrop(room=room, msg_id=deliver.msg_id, status="duplicate",
                                                   text="Welcome already received (its tree is being fetched)"),))
        d = Deliver(deliver.client, room, deliver.body, deliver.msg_id)
        return self._out(ClientStep(), [self._ask_welcome_info(_WelcomeWait(d, msg, ref))])

    def _ask_welcome_info(self, wait: _WelcomeWait) -> ClientMessage:
        rid = self._next_own
        self._next_own += 1
        self.welcomes[rid] = wait
        req = sign_request(self.core.suite, self.core.signature_priv,
                           D.WelcomeInfoRequest(group_id_of_room(wait.deliver.room), wait.ref), D.JOINER_INDEX)
        return ClientMessage(self.core.client_uri, ClientOp.ds_request, rid, req.encode(), wait.deliver.room,
                             hub_of_room(wait.deliver.room))

    def _welcome_info(self, wait: _WelcomeWait, reply: ClientReply, now_ms: int) -> ClientStep:
        body: object = None
        if reply.status == 200:
            try:
                body = D.DSResponse.decode(reply.body).response_body.body
            except (DecodeError, EncodeError):
                body = None
        if isinstance(body, D.WelcomeInfo):
            return self._out(self._hand_welcome(wait.deliver, wait.message, wait.deliver.room,
                                                list(body.ratchet_tree), now_ms))
        transient = reply.status in (0, 408, 429) or reply.status >= 500
        if transient and wait.attempts < WELCOME_INFO_ATTEMPTS:
            wait.attempts += 1
            return self._out(ClientStep(), [self._ask_welcome_info(wait)])
        if self.core.is_member(wait.deliver.room):
            return ClientStep()  # joined meanwhile (an earlier copy of the Welcome)
        # The hub no longer keeps that epoch (or cannot be reached): join by
        # external commit instead, as a new device would.
        return self._out(self.core.join_new_device(wait.deliver.room, now_ms, rejoin=True))

    def _hand_welcome(self, deliver: Deliver, msg: MLSMessage, room: str, tree: list[Node | None] | None,
                      now_ms: int) -> ClientStep:
        rto = (RatchetTreeOption(RatchetTreeRepresentation.full, tree, None, None) if tree is not None
               else RatchetTreeOption(RatchetTreeRepresentation.distribution_service, None, None, None))
        fm = W.FanoutMessage(0, msg, None, rto, None, None)
        return self.core.on_deliver(Deliver(deliver.client, room, fm.encode(), deliver.msg_id), now_ms)
