"""Reply handlers: what a client does with its provider's answer to a request.

Success merges the client's commit (or installs the group it created or
joined) and finishes the operation; a refusal because the room moved on
(``wrongEpoch``, ``epochTooOld``, ``invalidProposal``) or a transport failure
(5xx, timeout, lost connection) schedules a retry; anything else fails the
operation with a ``client.fail`` event. A reply that cannot be decoded or
verified fails the operation (``badReply``); see
:meth:`ReplyHandler.dispatch`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from mimisim import events as E
from mimisim.codec import DecodeError, EncodeError
from mimisim.mimi import policy as P
from mimisim.mimi import wire as W
from mimisim.mimi.client.operations import Op, OpEvent, OpKind, Room
from mimisim.mimi.client.output import StepBuilder
from mimisim.mimi.client.roomstate import (
    epoch_event,
    fork_rng,
    participants_of,
    pending_removed_users,
    room_policy,
)
from mimisim.mimi.hub import msg_id_of
from mimisim.mimi.identity import group_id_of_room
from mimisim.mimi.transport import ClientOp, ClientReply
from mimisim.mls.crypto import CryptoError
from mimisim.mls.errors import MLSError
from mimisim.mls.group import Group
from mimisim.mls.keypackage import tree_from_group_info
from mimisim.mls.observer import partial_group_info
from mimisim.mls.structs import (
    ExtensionType,
    ExternalSenders,
    GroupInfo,
    MLSMessage,
    Node,
    ProposalType,
    RatchetTreeOption,
    RatchetTreeRepresentation,
    find_extension,
)

if TYPE_CHECKING:
    from mimisim.mimi.client.core import ClientCore
    from mimisim.mimi.client.engine import OperationEngine

#: Key-material answers that mean "no consent" ([P] Fetch Key Material).
CONSENT_CODES = frozenset({W.KeyMaterialUserCode.noConsent, W.KeyMaterialUserCode.noConsentForThisRoom})
#: An add waiting for consent fetches again this often (ms) ...
CONSENT_POLL_MS = 1_000
#: ... and gives up after this many noConsent answers (about 15 s with the poll).
CONSENT_POLLS = 15


class ReplyHandler:
    """Handles the replies to one client's requests."""

    def __init__(self, core: ClientCore) -> None:
        self.core = core

    @property
    def engine(self) -> OperationEngine:
        return self.core.engine

    def dispatch(self, r: Room, op: Op, what: str, reply: ClientReply, now_ms: int, step: StepBuilder) -> None:
        """Hand ``reply`` to the handler of the request kind ``what``; a reply
        this client cannot use fails the operation, nothing escapes."""
        handler = {
            "create": self.on_create_reply,
            "key_material": self.on_key_material_reply,
            "consent": self.on_consent_reply,
            "commit": self.on_commit_reply,
            "proposals": self.on_proposals_reply,
            "submit": self.on_submit_reply,
            "group_info": self.on_group_info_reply,
            "external_commit": self.on_external_commit_reply,
        }[what]
        try:
            handler(r, op, reply, now_ms, step)
        except (DecodeError, EncodeError, MLSError, CryptoError, ValueError) as e:
            if r.group is not None and r.group.pending is not None and r.group.pending is op.staged:
                r.group.discard_pending_commit()
            self.engine.fail(step, r, op, f"bad {what} reply: {e}", "badReply")

    def on_create_reply(self, r: Room, op: Op, reply: ClientReply, now_ms: int, step: StepBuilder) -> None:
        if reply.status not in (200, 201):
            self.engine.fail(step, r, op, f"the hub refused the room: {reply.code} {reply.body[:100]!r}",
                             reply.code or str(reply.status))
            return
        assert op.creating is not None
        r.group, r.removed = op.creating, False
        op.creating = None
        self.engine.done(op)
        step.emit(epoch_event(r, "created", "", "created"))

    def on_key_material_reply(self, r: Room, op: Op, reply: ClientReply, now_ms: int, step: StepBuilder) -> None:
        if op.kind == OpKind.ADD_MANY:
            self.on_key_material_reply_many(r, op, reply, step)
            return
        if reply.status != 200:
            self.engine.fail(step, r, op, f"key material: {reply.code or reply.status}", reply.code or str(reply.status))
            return
        resp = W.KeyMaterialResponse.decode(reply.body)
        kps = [c.key_package for c in resp.clients
               if c.client_status == W.KeyMaterialClientCode.success and c.key_package is not None]
        if not kps and resp.user_status in CONSENT_CODES:
            self.no_consent(r, op, W.KeyMaterialUserCode(resp.user_status).name, now_ms, step)
            return
        if not kps:
            self.engine.fail(step, r, op, f"no KeyPackage for {op.target} ({W.KeyMaterialUserCode(resp.user_status).name})",
                             W.KeyMaterialUserCode(resp.user_status).name)
            return
        op.key_packages = kps
        op.advance(OpEvent.FETCHED)  # the pump commits now

    def no_consent(self, r: Room, op: Op, code: str, now_ms: int, step: StepBuilder) -> None:
        """The target's provider says its user has not consented to being
        added by us ([P] Fetch Key Material: ``noConsent``,
        ``noConsentForThisRoom``). The first time, ask for consent for this
        room ([P] Convey explicit consent: ``requestConsent``); then fetch
        again every :data:`CONSENT_POLL_MS` (the draft gives the requester
        no notice of a grant: its provider receives the ``updateConsent``,
        its client does not) and give up, reported, after
        :data:`CONSENT_POLLS` refusals (the user did not answer, or
        refused: a revoke looks the same from here)."""
        op.consent_polls += 1
        if op.consent_polls > CONSENT_POLLS:
            self.engine.fail(step, r, op, f"{op.target} did not consent ({code} after {CONSENT_POLLS} tries)", code)
            return
        if op.consent_polls == 1:
            entry = W.RequestConsentBody(W.ConsentOperation.request, W.IdentifierUri(self.core.user_uri),
                                         W.IdentifierUri(op.target), W.IdentifierUri(r.uri), None,
                                         W.AppDataDictionary([]))
            op.request_id = self.engine.request(step, ClientOp.request_consent, r.uri, op.id, "consent",
                                                entry.encode(), op.target)
            step.emit(E.ClientConsent(room=r.uri, status=code, peer=op.target, operation="request",
                                      target_user=op.target))
            return
        self.poll_consent(r, op, now_ms, step)

    def poll_consent(self, r: Room, op: Op, now_ms: int, step: StepBuilder) -> None:
        """Wait :data:`CONSENT_POLL_MS`, then fetch the KeyPackages again."""
        op.advance(OpEvent.WAIT)
        op.backoff_timer = self.engine.timer(step, now_ms + CONSENT_POLL_MS, "retry", r.uri, op.id)

    def on_consent_reply(self, r: Room, op: Op, reply: ClientReply, now_ms: int, step: StepBuilder) -> None:
        """The answer to our ``requestConsent``: 201 says only that it was
        received (the target decides later); 404 that the target is unknown."""
        if reply.status != 201:
            self.engine.fail(step, r, op, f"consent request refused: {reply.code or reply.status}",
                             reply.code or str(reply.status))
            return
        self.poll_consent(r, op, now_ms, step)

    def on_key_material_reply_many(self, r: Room, op: Op, reply: ClientReply, step: StepBuilder) -> None:
        """add_users: keep this user's KeyPackages; a user without any is left
        out, named in a ``client.fail`` row (the others are still added). Once
        every request answered, the pump commits (or the operation fails if
        nobody can be added)."""
        user = op.fetches.pop(reply.request_id)
        why = ""
        if reply.status != 200:
            why = reply.code or str(reply.status)
        else:
            resp = W.KeyMaterialResponse.decode(reply.body)
            kps = [c.key_package for c in resp.clients
                   if c.client_status == W.KeyMaterialClientCode.success and c.key_package is not None]
            if kps:
                op.fetched[user] = kps
            else:
                why = W.KeyMaterialUserCode(resp.user_status).name
        if why:
            step.emit(E.ClientFail(room=r.uri, epoch=r.group.epoch if r.group is not None else None, status=why,
                                   peer=user, operation=op.kind.value, reason=f"no KeyPackage for {user}: left out"))
        if op.fetches:
            return  # more answers to come
        if not op.fetched:
            self.engine.fail(step, r, op, f"no KeyPackage for any of {len(op.targets)} users", "noKeyPackages")
            return
        op.key_packages = [kp for u, _ in op.targets for kp in op.fetched.get(u, [])]
        op.advance(OpEvent.FETCHED)  # the pump commits now

    def on_commit_reply(self, r: Room, op: Op, reply: ClientReply, now_ms: int, step: StepBuilder) -> None:
        g = r.group
        assert g is not None
        resp = W.UpdateRoomResponse.decode(reply.body) if reply.status == 200 else None
        if op.merged:
            self.engine.done(op)  # the echo arrived first and was merged
            return
        code = resp.response_code if resp is not None else None
        if code == W.UpdateResponseCode.success:
            staged = r.own_commits.pop(op.msg_id, None)
            if g.pending is not None and g.pending is op.staged:
                g.merge_pending_commit()
            elif staged is not None and g.active and staged.epoch == g.epoch + 1:
                g.merge(staged)
            elif op.staged is not None and self.core.inbound.fork_own(r, op.staged, op.msg_id, now_ms, step):
                self.engine.done(op)  # the hub took it, after losing the commit we had merged
                return
            else:
                step.drop(r.uri, g.epoch, op.msg_id, "staleSuccess",
                        "accepted commit no longer applies to this client's state")
                self.engine.done(op)
                return
            self.engine.done(op)
            r.own_msgs.add(op.msg_id)  # its echo is still to come: recognise it
            self.core.inbound.after_merge(r, op.staged, op.msg_id, [], now_ms, step, via="own_commit",
                                          operation=op.kind.value)
            return
        if g.pending is not None and g.pending is op.staged:
            g.discard_pending_commit()
        if resp is None:
            self.transport_failure(r, op, reply, now_ms, step)
        elif code == W.UpdateResponseCode.wrongEpoch:
            self.wrong_epoch(r, op, resp, now_ms, step)
        elif code == W.UpdateResponseCode.invalidProposal:
            self.engine.retry(r, op, now_ms, step, "invalidProposal", refs=resp.invalid_proposals or [])
        else:
            self.engine.fail(step, r, op, f"notAllowed: {resp.error_description}", "notAllowed")

    def wrong_epoch(self, r: Room, op: Op, resp: W.UpdateRoomResponse, now_ms: int, step: StepBuilder) -> None:
        """``wrongEpoch`` to a commit or to proposals: retry at the hub's epoch,
        after giving back lost commits if the hub is behind what we built on
        (a lagging failover lost them)."""
        hub_epoch = resp.current_epoch
        assert hub_epoch is not None  # wrongEpoch carries current_epoch (a Select on response_code)
        if hub_epoch < op.sent_epoch:
            self.engine.restore(r, hub_epoch, now_ms, step)
        self.engine.retry(r, op, now_ms, step, "wrongEpoch", hub_epoch=hub_epoch)

    def transport_failure(self, r: Room, op: Op, reply: ClientReply, now_ms: int, step: StepBuilder) -> None:
        """No protocol answer: retry on a server error or timeout (the hub may
        or may not have accepted; a later echo of an accepted commit still
        merges, see ``own_commits``), fail on any other HTTP error."""
        status = reply.code or str(reply.status)
        if reply.status == 0 or reply.status == 408 or reply.status == 429 or reply.status >= 500:
            op.resend = bool(op.body)
            self.engine.retry(r, op, now_ms, step, status, retry_after_ms=reply.retry_after_ms)
        else:
            self.engine.fail(step, r, op, f"HTTP {reply.status} {reply.code} {reply.body[:100]!r}", status)

    def on_proposals_reply(self, r: Room, op: Op, reply: ClientReply, now_ms: int, step: StepBuilder) -> None:
        g = r.group
        assert g is not None
        resp = W.UpdateRoomResponse.decode(reply.body) if reply.status == 200 else None
        code = resp.response_code if resp is not None else None
        if code == W.UpdateResponseCode.success:
            # Accepted and cached by the hub. Stay queued until the commit that
            # removes us; if an epoch passes without it, propose again.
            self.engine.wait_next_epoch(r, op)
            op.attempts = 0
            return
        if resp is None:
            # The hub may have accepted them: keep them cached, and send the
            # same bytes again (OperationEngine.resend).
            self.transport_failure(r, op, reply, now_ms, step)
            return
        if g.active:
            self.core.builders.forget_own_proposals(g, op)
        if code == W.UpdateResponseCode.wrongEpoch:
            self.wrong_epoch(r, op, resp, now_ms, step)
        elif code == W.UpdateResponseCode.invalidProposal:
            self.engine.retry(r, op, now_ms, step, "invalidProposal", hub_epoch=g.epoch + 1)
        else:
            self.engine.fail(step, r, op, f"notAllowed: {resp.error_description}", "notAllowed")

    def on_submit_reply(self, r: Room, op: Op, reply: ClientReply, now_ms: int, step: StepBuilder) -> None:
        if reply.status != 200:
            self.transport_failure(r, op, reply, now_ms, step)
            return
        resp = W.SubmitMessageResponse.decode(reply.body)
        if resp.status_code == W.SubmitResponseCode.accepted:
            self.engine.done(op)
        elif resp.status_code == W.SubmitResponseCode.epochTooOld:
            self.engine.retry(r, op, now_ms, step, "epochTooOld", hub_epoch=resp.current_epoch)
        else:
            # notAllowed names no epoch, and one of its causes is "an MLS
            # epoch more recent than the hub's" ([P] Submit a Message): a hub
            # that lost our commit into this epoch. Give it back (harmless
            # otherwise: the hub answers wrongEpoch or duplicate).
            g = r.group
            if g is not None and g.active and self._may_send(r, g):
                self.engine.restore(r, g.epoch - 1, now_ms, step)
            self.engine.fail(step, r, op, "notAllowed", "notAllowed")

    def _may_send(self, r: Room, g: Group) -> bool:
        """Whether, by the room state this client holds, its user may send
        (listed with a role holding canSendMessage, not being removed): only
        then can a notAllowed mean that the hub is behind."""
        role = dict(participants_of(g.extensions)).get(self.core.user_uri)
        if role is None or self.core.user_uri in pending_removed_users(g):
            return False
        return P.may_send_message(room_policy(g.extensions), role)

    def on_restore_reply(self, r: Room, reply: ClientReply, now_ms: int, step: StepBuilder) -> None:
        """The hub's answer to a commit given back (``OperationEngine.restore``):
        on ``wrongEpoch`` naming an epoch still behind ours, or on success,
        give back our commit out of the hub's epoch now, if we hold one."""
        ep = r.restoring[0] if r.restoring is not None else None
        r.restoring = None
        resp = W.UpdateRoomResponse.decode(reply.body) if reply.status == 200 else None
        code = resp.response_code if resp is not None else None
        answer = W.UpdateResponseCode(code).name if code is not None else reply.code or str(reply.status)
        mid = r.restorable[ep][0] if ep is not None and ep in r.restorable else ""
        step.gap(r.uri, ep, mid, "restored" if code == W.UpdateResponseCode.success else "restoreRefused",
                 f"the hub answered {answer} to our commit from epoch {ep} given back")
        if (resp is not None and code == W.UpdateResponseCode.wrongEpoch and resp.current_epoch is not None
                and resp.current_epoch != ep):  # wrongEpoch always carries current_epoch
            self.engine.restore(r, resp.current_epoch, now_ms, step)
        elif code == W.UpdateResponseCode.success and ep is not None:
            self.engine.restore(r, ep + 1, now_ms, step)  # the hub may have lost our next commit too

    def on_group_info_reply(self, r: Room, op: Op, reply: ClientReply, now_ms: int, step: StepBuilder) -> None:
        if reply.status != 200:
            self.transport_failure(r, op, reply, now_ms, step)
            return
        if self.core.group_info_decoder is not None:
            # another profile's framing (ds: ExternalCommitInfo, no SelfRemoves)
            gi, tree, self_removes = self.core.group_info_decoder(r, op, reply)
            self.external_join(r, op, gi, tree, self_removes, step)
            return
        resp = W.GroupInfoResponse.decode(reply.body)
        if resp.status != W.GroupInfoCode.success:
            self.engine.fail(step, r, op, f"groupInfo: {W.GroupInfoCode(resp.status).name}", W.GroupInfoCode(resp.status).name)
            return
        tbe = self.open_group_info(r, resp, op.hpke_priv)
        gi = tbe.group_info
        rto = tbe.ratchet_tree_option
        tree = rto.ratchet_tree if rto.representation == RatchetTreeRepresentation.full else None
        self_removes = [
            p.proposal for p in tbe.pending_proposals
            if p.proposal.body.content.proposal is not None
            and p.proposal.body.content.proposal.proposal_type == ProposalType.self_remove
        ]
        self.external_join(r, op, gi, tree, self_removes, step)

    def external_join(self, r: Room, op: Op, gi: GroupInfo, tree: list[Node | None] | None,
                      self_removes: list[MLSMessage], step: StepBuilder) -> None:
        """Join (or resync) by external commit from a GroupInfo and tree the hub served."""
        resync_leaf = None
        if op.resync or op.rejoin:
            full = tree_from_group_info(self.core.suite, gi, tree)
            for i in range(full.n_leaves):
                leaf = full.leaf(i)
                if leaf is not None and leaf.signature_key == self.core.signature_pub:
                    resync_leaf = i
                    break
        r.joins += 1
        group, commit = Group.external_join(
            gi, self.core.credential, self.core.signature_priv, fork_rng(self.core.rng, f"group {r.uri} #{r.joins}"),
            ratchet_tree=tree, self_removes=self_removes, config=self.core.group_config(), resync_leaf=resync_leaf,
            leaf_extensions=self.core.leaf_extensions,
            capabilities=self.core.capabilities() if self.core.leaf_extensions else None,
        )
        gio = W.GroupInfoOption.partial(partial_group_info(group.group_info()))
        rto_out = RatchetTreeOption(RatchetTreeRepresentation.distribution_service, None, None, None)
        body = W.UpdateRequest(W.HandshakeBundle.commit(commit, gio, rto_out, None)).encode()
        op.joiner = group
        op.msg_id = msg_id_of(commit.encode())
        op.attempts += 1
        op.request_id = self.engine.request(step, ClientOp.update, r.uri, op.id, "external_commit", body)
        if resync_leaf is not None and op.resync:
            step.gap(r.uri, gi.group_context.epoch, op.msg_id, "resync",
                    f"resync by external commit replacing leaf {resync_leaf}")
        self.engine.submitted(op)
        step.emit(E.ClientCommit(room=r.uri, epoch=gi.group_context.epoch, msg_id=op.msg_id, peer=self.core.user_uri,
                                 operation=op.kind.value, attempt=op.attempts, external=True))

    def open_group_info(self, r: Room, resp: W.GroupInfoResponse, hpke_priv: bytes) -> W.GroupInfoRatchetTreeTBE:
        """A successful GroupInfoResponse checked (room, suite, the hub's
        signature, the hub an external sender of the group) and opened."""
        assert resp.hub_sender is not None and resp.encrypted_groupinfo_and_tree is not None
        if resp.room_id != r.uri or resp.cipher_suite != self.core.suite.suite_id:
            raise MLSError("GroupInfoResponse for another room or suite")
        if not self.core.suite.verify_with_label(resp.hub_sender.signature_key, b"GroupInfoResponseTBS",
                                                 resp.tbs().encode(), resp.signature or b""):
            raise MLSError("bad hub signature on the GroupInfoResponse")
        ct = resp.encrypted_groupinfo_and_tree
        pt = self.core.suite.decrypt_with_label(hpke_priv, W.GROUP_INFO_ENCRYPTION_LABEL, r.uri.encode(),
                                                ct.kem_output, ct.ciphertext)
        tbe = W.GroupInfoRatchetTreeTBE.decode(pt)
        gi = tbe.group_info
        if gi.group_context.group_id != group_id_of_room(r.uri):
            raise MLSError("the GroupInfo is for another group")
        raw = find_extension(gi.group_context.extensions, ExtensionType.external_senders)
        senders = ExternalSenders.decode(raw).senders if raw is not None else []
        if not any(s.signature_key == resp.hub_sender.signature_key for s in senders):
            raise MLSError("the responding hub is not an external sender of the group")
        return tbe

    def on_welcome_tree_reply(self, r: Room, reply: ClientReply, now_ms: int, step: StepBuilder) -> None:
        """The hub's answer to a Welcome's tree fetch: join with the tree, or
        drop the Welcome (with why) when the hub refused or sent no tree."""
        wait, r.welcome_wait = r.welcome_wait, None
        if wait is None:
            step.drop(r.uri, None, "", "staleReply", "welcome tree reply with no Welcome waiting")
            return
        fm, mid, priv = wait
        if reply.status != 200:
            step.drop(r.uri, None, mid, "treeUnavailable", f"Welcome tree: {reply.code or reply.status}")
            return
        resp = W.GroupInfoResponse.decode(reply.body)
        if resp.status != W.GroupInfoCode.success:
            step.drop(r.uri, None, mid, "treeUnavailable", f"Welcome tree: {W.GroupInfoCode(resp.status).name}")
            return
        tbe = self.open_group_info(r, resp, priv)
        rto = tbe.ratchet_tree_option
        tree = rto.ratchet_tree if rto.representation == RatchetTreeRepresentation.full else None
        self.core.inbound.join_welcome(r, fm, mid, tree, now_ms, step)

    def on_external_commit_reply(self, r: Room, op: Op, reply: ClientReply, now_ms: int,
                                 step: StepBuilder) -> None:
        resp = W.UpdateRoomResponse.decode(reply.body) if reply.status == 200 else None
        code = resp.response_code if resp is not None else None
        if code == W.UpdateResponseCode.success:
            assert op.joiner is not None
            r.group, r.removed = op.joiner, False
            op.joiner = None
            self.engine.done(op)
            if op.resync:
                r.held.clear()
                r.gap_epoch = -1
            r.commit_bodies.clear()  # commits of the group we replaced
            r.restorable.clear()
            r.own_msgs.add(op.msg_id)  # its echo is still to come: recognise it
            step.emit(epoch_event(r, "external_commit", op.msg_id, "joined"))
            return
        op.joiner = None
        if resp is None:
            self.transport_failure(r, op, reply, now_ms, step)
        elif code == W.UpdateResponseCode.wrongEpoch:
            self.engine.retry(r, op, now_ms, step, "wrongEpoch", hub_epoch=resp.current_epoch)
        else:
            self.engine.fail(step, r, op, f"{W.UpdateResponseCode(resp.response_code).name}: {resp.error_description}",
                             W.UpdateResponseCode(resp.response_code).name)
