"""Request builders: the bodies a client sends to its provider for an operation.

Each builder reads the room's current MLS state, builds the request (a
signed KeyMaterialRequest, a HandshakeBundle with a commit or proposals, a
SubmitMessageRequest, a signed GroupInfoRequest), sends it through the
:class:`~mimisim.mimi.client.engine.OperationEngine` and records what it
sent. A builder that finds nothing left to do finishes the operation; one
that must wait for the next epoch says so.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from mimisim import events as E
from mimisim.mimi import franking as F
from mimisim.mimi import wire as W
from mimisim.mimi.client.content import SALT_LEN, MimiContent, content_id, encode_mimi_content, message_id
from mimisim.mimi.client.operations import Op, OpEvent, Room
from mimisim.mimi.client.output import StepBuilder
from mimisim.mimi.client.roomstate import (
    CID,
    MEMBER_ROLE,
    participants_of,
    pending_removed_leaves,
    pending_removed_users,
    removal_pending,
    resolve_role,
    room_policy,
    user_of_leaf,
)
from mimisim.mimi.hub import msg_id_of
from mimisim.mimi.transport import ClientOp
from mimisim.mls.group import Group
from mimisim.mls.keypackage import sign_group_info
from mimisim.mls.observer import partial_group_info
from mimisim.mls.structs import (
    Add,
    AppDataUpdate,
    AppDataUpdateOperation,
    Extension,
    ExtensionType,
    GroupInfo,
    Proposal,
    RatchetTreeExt,
    RatchetTreeOption,
    RatchetTreeRepresentation,
    Remove,
    RequiredCapabilities,
    find_extension,
)

if TYPE_CHECKING:
    from mimisim.mimi.client.core import ClientCore
    from mimisim.mimi.client.engine import OperationEngine
    from mimisim.mls.tree import RatchetTree


class RequestBuilder:
    """Builds and sends the requests of one client's operations."""

    def __init__(self, core: ClientCore) -> None:
        self.core = core

    @property
    def engine(self) -> OperationEngine:
        return self.core.engine

    def fetch_key_material(self, r: Room, op: Op, step: StepBuilder) -> None:
        op.request_id = self._key_material_request(r, op, op.target, step)
        op.advance(OpEvent.FETCH)

    def fetch_key_material_many(self, r: Room, op: Op, step: StepBuilder) -> None:
        """add_users: one KeyMaterialRequest per user not claimed yet, all sent
        at once (the draft's request names one target user)."""
        for user, _role in op.targets:
            if user not in op.fetched and user not in op.fetches.values():
                op.fetches[self._key_material_request(r, op, user, step)] = user
        op.advance(OpEvent.FETCH)

    def _key_material_request(self, r: Room, op: Op, target: str, step: StepBuilder) -> int:
        g = r.group
        assert g is not None
        raw = find_extension(g.extensions, ExtensionType.required_capabilities)
        required = RequiredCapabilities.decode(raw) if raw is not None else RequiredCapabilities([], [], [])
        tbs = W.KeyMaterialRequestTBS(
            W.MLS10, W.IdentifierUri(self.core.user_uri), W.IdentifierUri(target), W.IdentifierUri(r.uri),
            [self.core.suite.suite_id], required, self.core.signature_pub, self.core.credential,
        )
        sig = self.core.suite.sign_with_label(self.core.signature_priv, b"KeyMaterialRequestTBS", tbs.encode())
        req = W.KeyMaterialRequest(
            tbs.protocol, tbs.requesting_user, tbs.target_user, tbs.room_id, tbs.acceptable_ciphersuites,
            tbs.required_capabilities, tbs.requester_signature_key, tbs.requester_credential, sig,
        )
        return self.engine.request(step, ClientOp.fetch_key_material, r.uri, op.id, "key_material",
                                   req.encode(), target)

    def commit_add(self, r: Room, op: Op, now_ms: int, step: StepBuilder) -> None:
        g = r.group
        assert g is not None and op.key_packages is not None
        if removal_pending(g):
            self.engine.wait_next_epoch(r, op)
            return
        listed = {u for u, _ in participants_of(g.extensions)}
        users = [(u, kps) for u, kps in [(op.target, op.key_packages), *op.more_users] if u not in listed]
        if not users:
            # Already a participant (a concurrent add won, or our own earlier
            # attempt was accepted after all): nothing left to do.
            self.engine.done(op)
            return
        role = resolve_role(room_policy(g.extensions), op.role, MEMBER_ROLE)
        upd = W.ParticipantListUpdate([], [], [W.UserRolePair(u, role) for u, _ in users])
        proposals = [Proposal.of(AppDataUpdate(CID.participant_list, AppDataUpdateOperation.update, upd.encode()))]
        present = {leaf.signature_key for _, leaf in g.members()}
        proposals += [Proposal.of(Add(kp)) for _, kps in users for kp in kps
                      if kp.leaf_node.signature_key not in present]
        self.send_commit(r, op, proposals, now_ms, step)

    def commit_add_many(self, r: Room, op: Op, now_ms: int, step: StepBuilder) -> None:
        """add_users: one participant-list update adding every user not yet
        listed (in the order asked), plus an Add per claimed KeyPackage not
        yet in the tree."""
        g = r.group
        assert g is not None
        if removal_pending(g):
            self.engine.wait_next_epoch(r, op)
            return
        listed = {u for u, _ in participants_of(g.extensions)}
        pol = room_policy(g.extensions)
        new = [(u, role) for u, role in op.targets if u in op.fetched and u not in listed]
        if not new:
            self.engine.done(op)  # every one of them is a participant already
            return
        upd = W.ParticipantListUpdate([], [], [W.UserRolePair(u, resolve_role(pol, role, MEMBER_ROLE))
                                               for u, role in new])
        proposals = [Proposal.of(AppDataUpdate(CID.participant_list, AppDataUpdateOperation.update, upd.encode()))]
        present = {leaf.signature_key for _, leaf in g.members()}
        for u, _ in new:
            proposals += [Proposal.of(Add(kp)) for kp in op.fetched[u] if kp.leaf_node.signature_key not in present]
        self.send_commit(r, op, proposals, now_ms, step)

    def commit_remove(self, r: Room, op: Op, now_ms: int, step: StepBuilder) -> None:
        g = r.group
        assert g is not None
        if removal_pending(g):
            self.engine.wait_next_epoch(r, op)
            return
        removing = pending_removed_leaves(g)
        leaves = [i for i, leaf in g.members() if user_of_leaf(leaf) == op.target and i not in removing]
        proposals = [Proposal.of(Remove(i)) for i in leaves]
        listed = [u for u, _ in participants_of(g.extensions)]
        if op.target in listed and op.target not in pending_removed_users(g):
            upd = W.ParticipantListUpdate([], [listed.index(op.target)], [])
            proposals.append(
                Proposal.of(AppDataUpdate(CID.participant_list, AppDataUpdateOperation.update, upd.encode()))
            )
        in_tree = any(user_of_leaf(leaf) == op.target for _, leaf in g.members())
        if not in_tree and op.target not in listed:
            self.engine.done(op)  # not (or no longer) in the room
            return
        self.send_commit(r, op, proposals, now_ms, step)

    def commit_pending(self, r: Room, op: Op, now_ms: int, step: StepBuilder) -> None:
        g = r.group
        assert g is not None
        if not self.core.inbound.needs_commit(r):
            self.engine.done(op)  # someone else committed them, or they remove us
            return
        self.send_commit(r, op, [], now_ms, step)

    def send_commit(self, r: Room, op: Op, proposals: list[Proposal], now_ms: int, step: StepBuilder) -> None:
        """Commit ``proposals`` plus every cached proposal (the hub requires
        them) and send the HandshakeBundle: Welcome (if any), a partial
        GroupInfo, and a RatchetTreeOption -- ``full`` when there is a Welcome
        (joiners need the tree; the hub checks it equals its own), else
        ``distribution_service`` (the hub has the tree already)."""
        g = r.group
        assert g is not None
        out = g.commit(proposals, now_s=self.core.now_seconds(now_ms), ratchet_tree_in_welcome=False)
        new_state = out.staged.state
        assert new_state is not None
        welcome = out.welcome.body if out.welcome is not None else None
        if welcome is not None and self.core.welcome_tree == "inline":
            rto = RatchetTreeOption(RatchetTreeRepresentation.full, new_state.tree.to_nodes(), None, None)
        else:
            rto = RatchetTreeOption(RatchetTreeRepresentation.distribution_service, None, None, None)
        gio = self.group_info_option(out.group_info, new_state.tree)
        body = W.UpdateRequest(W.HandshakeBundle.commit(out.message, gio, rto, welcome)).encode()
        encoded = out.message.encode()
        mid = msg_id_of(encoded)
        r.own_commits[mid] = out.staged
        r.commit_bodies[mid] = (g.epoch, body)
        op.msg_id, op.staged, op.merged, op.body = mid, out.staged, False, body
        op.attempts += 1
        op.sent_epoch = g.epoch
        op.request_id = self.engine.request(step, ClientOp.update, r.uri, op.id, "commit", body)
        self.engine.submitted(op)
        oc = out.staged.outcome
        step.emit(E.ClientCommit(
            room=r.uri, epoch=g.epoch, msg_id=mid, peer=op.target, operation=op.kind.value, attempt=op.attempts,
            external=False, added=len(oc.added), removed=len(oc.removed), commit_bytes=len(encoded),
            welcome_bytes=len(out.welcome.encode()) if out.welcome is not None else None,
            groupinfo_bytes=len(out.group_info.encode()), partial_groupinfo_bytes=len(gio.encode()),
            bundle_bytes=len(body), left_out=tuple(why for _, why in out.left_out) or None))

    def group_info_option(self, gi: GroupInfo, tree: RatchetTree) -> W.GroupInfoOption:
        """The commit's GroupInfo as this client's ``group_info`` option says:
        the draft's PartialGroupInfo (the hub rebuilds the rest from the
        handshake it saw), the full GroupInfo, or the full GroupInfo re-signed
        with a ``ratchet_tree`` extension (the upload of deployments whose
        server keeps no tree; [RTO] s.4 says it grows linearly with the
        group). The hub accepts all three."""
        opt = self.core.group_info
        if opt == "partial":
            return W.GroupInfoOption.partial(partial_group_info(gi))
        if opt == "full":
            return W.GroupInfoOption.full(gi)
        exts = [Extension(ExtensionType.ratchet_tree, RatchetTreeExt(tree.to_nodes()).encode()), *gi.extensions]
        signed = sign_group_info(self.core.suite, self.core.signature_priv, gi.group_context, exts,
                                 gi.confirmation_tag, gi.signer)
        return W.GroupInfoOption.full(signed)

    def propose_leave(self, r: Room, op: Op, step: StepBuilder) -> None:
        """Removes of all this user's clients and the participant-list removal,
        sent together as one proposals bundle."""
        g = r.group
        assert g is not None
        self.forget_own_proposals(g, op)
        if all(user_of_leaf(leaf) == self.core.user_uri for _, leaf in g.members()):
            # Only another member can commit a Remove of us, and an MLS group
            # keeps at least one member: nobody is left to do it. Reported
            # (and counted) rather than proposed and waited for forever.
            self.engine.fail(step, r, op, "the last member of the room cannot leave: nobody is left to commit "
                             "its removal", "lastMember")
            return
        removing = pending_removed_leaves(g)
        proposals = [
            Proposal.of(Remove(i))
            for i, leaf in g.members()
            if user_of_leaf(leaf) == self.core.user_uri and i not in removing
        ]
        listed = [u for u, _ in participants_of(g.extensions)]
        if self.core.user_uri in listed and self.core.user_uri not in pending_removed_users(g):
            upd = W.ParticipantListUpdate([], [listed.index(self.core.user_uri)], [])
            proposals.append(
                Proposal.of(AppDataUpdate(CID.participant_list, AppDataUpdateOperation.update, upd.encode()))
            )
        if not proposals:
            # Someone already proposed all of it this epoch: wait for the commit.
            self.engine.wait_next_epoch(r, op)
            return
        msgs = [g.propose(p) for p in proposals]
        op.proposal_refs = list(g.state.own_proposals[-len(msgs):])
        ids = [msg_id_of(m.encode()) for m in msgs]
        r.own_msgs.update(ids)
        op.msg_id = ids[0]
        op.attempts += 1
        body = W.UpdateRequest(W.HandshakeBundle.proposals(msgs[0], msgs[1:])).encode()
        op.sent_epoch, op.body = g.epoch, body
        # target = this user: the provider learns the update is its user
        # leaving (ProviderConfig.leave_delivery).
        op.request_id = self.engine.request(step, ClientOp.update, r.uri, op.id, "proposals", body,
                                            target=self.core.user_uri)
        self.engine.submitted(op)
        step.emit(E.ClientPropose(room=r.uri, epoch=g.epoch, msg_id=ids[0], peer=self.core.user_uri,
                                  operation=op.kind.value, proposals=len(msgs)))

    def forget_own_proposals(self, g: Group, op: Op) -> None:
        """Drop this op's earlier proposals from the cache if the hub refused
        them (same epoch, immediate retry): a commit must not include them."""
        for ref in op.proposal_refs:
            g.state.proposals.pop(ref, None)
            if ref in g.state.own_proposals:
                g.state.own_proposals.remove(ref)
        op.proposal_refs = []

    def submit_message(self, r: Room, op: Op, step: StepBuilder) -> None:
        g = r.group
        assert g is not None
        if not op.content:
            salt = self.core.rng.random_bytes(SALT_LEN)
            op.content = encode_mimi_content(MimiContent(salt, self.core.user_uri, r.uri, op.text))
            op.content_id = content_id(message_id(self.core.user_uri, r.uri, op.content, salt))
        # No franking tag where no hub franks (the ds profile, docs/ds-choices.md C19).
        aad = F.add_frank_aad(op.content) if self.core.frank_messages else b""
        msg = g.protect(op.content, aad)
        mid = msg_id_of(msg.encode())
        r.own_msgs.add(mid)
        op.msg_id = mid
        op.attempts += 1
        body = W.SubmitMessageRequest(W.MLS10, msg, W.IdentifierUri(self.core.user_uri)).encode()
        op.sent_epoch, op.body = g.epoch, body
        op.request_id = self.engine.request(step, ClientOp.submit_message, r.uri, op.id, "submit", body)
        self.engine.submitted(op)
        self.emit_submit(r, op, step)

    def emit_submit(self, r: Room, op: Op, step: StepBuilder) -> None:
        """The ``client.submit`` of an attempt, with the content's MIMI message id."""
        step.emit(E.ClientSubmit(room=r.uri, epoch=op.sent_epoch, msg_id=op.msg_id, attempt=op.attempts,
                                 content_bytes=len(op.content), content_id=op.content_id))

    def group_info_request(self) -> tuple[bytes, bytes]:
        """A signed GroupInfoRequest with a fresh HPKE key: (private key, body)."""
        priv, pub = self.core.suite.generate_hpke_key_pair(self.core.rng)
        tbs = W.GroupInfoRequestTBS(W.MLS10, self.core.suite.suite_id, self.core.signature_pub, self.core.credential, pub, None)
        sig = self.core.suite.sign_with_label(self.core.signature_priv, b"GroupInfoRequestTBS", tbs.encode())
        req = W.GroupInfoRequest(W.MLS10, self.core.suite.suite_id, self.core.signature_pub, self.core.credential, pub, None, sig)
        return priv, req.encode()

    def fetch_group_info(self, r: Room, op: Op, step: StepBuilder) -> None:
        op.hpke_priv, body = self.group_info_request()
        op.request_id = self.engine.request(step, ClientOp.fetch_group_info, r.uri, op.id, "group_info", body)
        op.advance(OpEvent.FETCH)

    def fetch_welcome_tree(self, r: Room, fm: W.FanoutMessage, mid: str, step: StepBuilder) -> None:
        """A Welcome came without its ratchet tree (``distribution_service``):
        ask the hub for it with /groupInfo, the draft's only endpoint that
        returns a tree ([P6] "Claim group key information"); the hub answers a
        client it welcomed with the tree of the Welcome's epoch
        (docs/mimi-choices.md, "Ratchet tree options"). No operation owns the
        request: the Welcome waits in ``r.welcome_wait`` until the reply."""
        priv, body = self.group_info_request()
        r.welcome_wait = (fm, mid, priv)
        self.engine.request(step, ClientOp.fetch_group_info, r.uri, 0, "welcome_tree", body)
