"""The inbound side of a client: what its provider delivers.

Every FanoutMessage (commit, proposals, application message, Welcome) is
processed now, buffered (a later epoch, or before the client has the group),
held (a commit whose proposals have not arrived yet: the hub's notifies can
overtake each other) or dropped with a ``client.drop`` event; nothing a peer
sends raises. A gap that does not fill within ``gap_timeout_ms`` (what the
client misses was lost, not late) is repaired by a resync: an external
commit that replaces the client's own stale leaf. The pending-proposal
strategy (commit at once, or after a random delay) runs here too, since it
reacts to arriving proposals.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from mimisim import events as E
from mimisim.codec import DecodeError, EncodeError
from mimisim.mimi import franking as F
from mimisim.mimi import wire as W
from mimisim.mimi.client.content import ContentError, MimiContent, content_id, decode_mimi_content, message_id
from mimisim.mimi.client.operations import MAX_BUFFERED, MAX_UNREADABLE, RESTORABLE, OpKind, Room, Stage
from mimisim.mimi.client.output import StepBuilder
from mimisim.mimi.client.roomstate import (
    client_of_leaf,
    committer,
    epoch_event,
    epoch_of,
    fork_rng,
    removal_pending,
)
from mimisim.mimi.hub import msg_id_of
from mimisim.mimi.identity import UriError, group_id_of_room, user_of_client
from mimisim.mimi.transport import ClientOp
from mimisim.mls.crypto import CryptoError
from mimisim.mls.errors import MLSError, ProposalError, ReplayError, WrongEpochError
from mimisim.mls.group import ApplicationMessage, Group, ProposalReceived, StagedCommit
from mimisim.mls.structs import MLSMessage, Node, RatchetTreeRepresentation

if TYPE_CHECKING:
    from mimisim.mimi.client.core import ClientCore
    from mimisim.mimi.client.engine import OperationEngine


def sender_matches(content: MimiContent, sender_user: str, room_uri: str) -> bool:
    """[P6] "Receiver verification of frank": the content's senderUri must be
    the user of the sender's leaf credential (the MLS signature says who
    sent it) and its roomUri the room it arrived in; otherwise a member
    could write in another's name with its own key."""
    return content.sender_uri == sender_user and content.room_uri == room_uri


class Inbound:
    """Deliveries, buffering, held commits, gap detection and resync of one client."""

    def __init__(self, core: ClientCore) -> None:
        self.core = core
        self.arrivals = 0  # arrival numbers order buffered deliveries of one epoch

    @property
    def engine(self) -> OperationEngine:
        return self.core.engine

    def ingest(self, r: Room, fm: W.FanoutMessage, mid: str, now_ms: int, step: StepBuilder) -> None:
        """Process one delivery now, buffer it, or drop it (with an event)."""
        kind = fm.kind
        if mid in r.seen or mid in r.buffered_ids:
            step.drop(r.uri, epoch_of(fm.message), mid, "duplicate",
                    f"{kind.name if kind else '?'} already received")
            return
        if kind == W.MessageKind.welcome:
            self.on_welcome(r, fm, mid, now_ms, step)
            return
        ep = epoch_of(fm.message)
        if ep is None or kind is None:
            r.seen.add(mid)
            step.drop(r.uri, None, mid, "malformed", "not a MIMI fanout message")
            return
        if r.group is None:
            # Not (yet) a member: the Welcome or our external commit's success
            # may still be on its way. Keep it; stale ones are dropped later.
            self.buffer(r, ep, mid, fm, step)
            return
        g = r.group
        if not g.active or r.removed:
            r.seen.add(mid)
            if (kind == W.MessageKind.application and ep <= g.epoch and not g.active
                    and (r.removed_ts is None or fm.timestamp <= r.removed_ts)):
                # Accepted before the commit that removed us, delivered after it.
                # (Same millisecond counts as before: the hub's clock has no
                # finer grain, and with the default epoch window a later
                # message is of a newer epoch anyway.)
                self.on_application(r, fm, mid, ep, step)
                return
            step.drop(r.uri, ep, mid, "notMember", f"{kind.name} after leaving the room")
            return
        if ep > g.epoch:
            if not any(e == ep for e, _, _, _ in r.buffer):
                step.gap(r.uri, ep, mid, "", f"have epoch {g.epoch}, got {kind.name} of epoch {ep}")
            self.buffer(r, ep, mid, fm, step)
            self.arm_gap_timer(r, now_ms, step)
            return
        r.seen.add(mid)
        if mid in r.own_msgs:
            # Our own proposals are cached when we send them; an echo matters
            # only if they are not (we forgot them after a transport failure,
            # though the hub had accepted them): then a commit referencing
            # them waits for exactly this echo (chaos-churn random_delay seed 15).
            if not (kind == W.MessageKind.proposal and ep == g.epoch
                    and self.on_proposals(r, [fm.message, *(fm.more_proposals or [])], mid, now_ms, step)):
                step.drop(r.uri, ep, mid, "ownEcho", f"own {kind.name}")
            return
        if kind == W.MessageKind.commit:
            self.on_commit(r, fm, mid, ep, now_ms, step)
        elif kind == W.MessageKind.proposal:
            if ep < g.epoch:
                step.drop(r.uri, ep, mid, "stale", f"proposal of epoch {ep} < {g.epoch}")
                self.keep_for_fork(r, [fm.message, *(fm.more_proposals or [])], ep, now_ms, step)
                return
            self.on_proposals(r, [fm.message, *(fm.more_proposals or [])], mid, now_ms, step)
        else:
            self.on_application(r, fm, mid, ep, step)

    def buffer(self, r: Room, ep: int, mid: str, fm: W.FanoutMessage, step: StepBuilder) -> None:
        if len(r.buffer) >= MAX_BUFFERED:
            r.seen.add(mid)
            step.drop(r.uri, ep, mid, "bufferFull", f"{len(r.buffer)} messages already waiting")
            return
        self.arrivals += 1
        r.buffer.append((ep, self.arrivals, mid, fm))
        r.buffered_ids.add(mid)

    def drain(self, r: Room, now_ms: int, step: StepBuilder) -> None:
        """Process buffered deliveries that became processable, epoch by
        epoch; within an epoch proposals and application messages before the
        commit (the hub accepted them before the commit that ended the epoch)."""
        while r.buffer and r.group is not None:
            g = r.group
            if not g.active or r.removed:
                for ep, _, mid, _fm in sorted(r.buffer, key=lambda b: (b[0], b[1])):
                    r.seen.add(mid)
                    step.drop(r.uri, ep, mid, "notMember", "buffered message after leaving")
                r.buffer.clear()
                r.buffered_ids.clear()
                return
            ready = [b for b in r.buffer if b[0] <= g.epoch]
            if not ready:
                return
            ready.sort(key=lambda b: (b[0], b[3].kind == W.MessageKind.commit, b[1]))
            ep, n, mid, fm = ready[0]
            r.buffer.remove((ep, n, mid, fm))
            r.buffered_ids.discard(mid)
            self.ingest(r, fm, mid, now_ms, step)

    def on_commit(self, r: Room, fm: W.FanoutMessage, mid: str, ep: int, now_ms: int, step: StepBuilder) -> None:
        g = r.group
        assert g is not None
        head = r.queue[0] if r.queue else None
        if ep < g.epoch:
            own_echo = mid in r.own_commits or (head is not None and head.msg_id == mid)
            if not own_echo and self.fork(r, fm, mid, ep, now_ms, step):
                return
            mine = r.own_commits.get(mid) or (head.staged if head is not None and head.msg_id == mid else None)
            if mine is not None and self.fork_own(r, mine, mid, now_ms, step):
                for op in r.queue:
                    if op.msg_id == mid and op.stage == Stage.SUBMITTED:
                        op.merged = True
                return
            status = "ownEcho" if own_echo else "stale"
            r.own_commits.pop(mid, None)
            step.drop(r.uri, ep, mid, status, f"commit of epoch {ep} < {g.epoch}")
            return
        own = r.own_commits.pop(mid, None)
        if own is not None:
            # Our own commit, echoed by the hub: it was accepted. Merge it even
            # if the reply has not arrived (or said something else first).
            if g.pending is own:
                g.merge_pending_commit()
            else:
                g.merge(own)
            for op in r.queue:
                if op.msg_id == mid and op.stage == Stage.SUBMITTED:
                    op.merged = True
            self.after_merge(r, own, mid, fm.external_proposals or [], now_ms, step, via="own_echo")
            return
        try:
            res = g.process(fm.message, now_s=self.core.now_seconds(now_ms))
        except ProposalError as e:
            if "unknown proposal" in str(e) and len(r.held) < MAX_BUFFERED:
                # The proposals it commits are still on their way (the hub's
                # notifies overtook each other): hold it until they arrive.
                r.seen.discard(mid)
                r.buffered_ids.add(mid)
                r.held.append((ep, mid, fm))
                step.gap(r.uri, ep, mid, "waitProposals", "commit waits for the proposals it references")
                self.arm_gap_timer(r, now_ms, step)
                return
            step.drop(r.uri, ep, mid, getattr(e, "code", "invalid"), f"commit: {e}"[:300])
            return
        except (MLSError, DecodeError, EncodeError, CryptoError, ValueError) as e:
            step.drop(r.uri, ep, mid, getattr(e, "code", "invalid"), f"commit: {e}"[:300])
            self.unreadable(r, ep, mid, fm)
            return
        if not isinstance(res, StagedCommit):
            step.drop(r.uri, ep, mid, "invalid", "not a commit")
            return
        if g.pending is not None:
            g.discard_pending_commit()  # ours lost the race; the hub will say wrongEpoch
        g.merge(res)
        if res.removed_self:
            r.removed_ts = fm.timestamp
        self.after_merge(r, res, mid, fm.external_proposals or [], now_ms, step, via="commit",
                         committer=committer(res))

    def fork(self, r: Room, fm: W.FanoutMessage, mid: str, ep: int, now_ms: int, step: StepBuilder) -> bool:
        """The hub fans out a commit for epoch ``ep``, which this client left
        by merging another commit: the hub lost that one (its standby lagged
        behind it at a failover) and accepted this one instead, so the room
        has forked. The hub's log is the room's order ([P6] the hub orders
        the room's handshakes): go back to the kept state of ``ep`` and merge
        the hub's commit, at once, rather than stay on a branch the hub
        will never extend until a gap resync, which loses what the hub
        accepts meanwhile (docs/mimi-choices.md, "Lagging failover"). Only
        a commit valid in that state is followed; anything else is stale.
        Returns whether the client forked (or holds the commit for its
        proposals)."""
        g = r.group
        assert g is not None
        merged = g.merged_commit(ep)
        if merged is None or msg_id_of(merged) == mid:
            return False
        try:
            staged = g.stage_fork_commit(fm.message, now_s=self.core.now_seconds(now_ms))
        except ProposalError as e:
            if "unknown proposal" in str(e) and len(r.held) < MAX_BUFFERED:
                r.buffered_ids.add(mid)
                r.held.append((ep, mid, fm))
                step.gap(r.uri, ep, mid, "waitProposals", "hub's commit for a past epoch waits for its proposals")
                return True
            self.unreadable(r, ep, mid, fm)
            return False
        except (MLSError, DecodeError, EncodeError, CryptoError, ValueError):
            # Not of our kept branch either: perhaps of a branch we fork to
            # later (our own commit the hub took, whose success is on its way).
            self.unreadable(r, ep, mid, fm)
            return False
        r.seen.add(mid)
        self.follow_fork(r, staged, mid, fm.external_proposals or [], now_ms, step)
        return True

    def fork_own(self, r: Room, staged: StagedCommit, mid: str, now_ms: int, step: StepBuilder) -> bool:
        """Our own commit for a past epoch, which the hub accepted (its echo
        or its late ``success``) while we went on with another commit: the
        hub lost that one (a request of ours it took after a lagging
        failover). Follow the hub as in :meth:`fork`. Returns whether we did."""
        g = r.group
        assert g is not None
        base = staged.epoch - 1
        merged = g.merged_commit(base)
        if not g.active or base >= g.epoch or merged is None or msg_id_of(merged) == mid:
            return False
        self.follow_fork(r, staged, mid, [], now_ms, step)
        return True

    def follow_fork(self, r: Room, staged: StagedCommit, mid: str, external_proposals: Sequence[MLSMessage],
                    now_ms: int, step: StepBuilder) -> None:
        """Go back to the kept epoch ``staged`` leaves and merge it there."""
        g = r.group
        assert g is not None
        ep = staged.epoch - 1
        merged = g.merged_commit(ep)
        left = g.epoch
        step.gap(r.uri, ep, mid, "fork", f"the hub committed {mid} for epoch {ep}, not "
                 f"{msg_id_of(merged) if merged else '?'} which took us on to {left}: back to epoch {ep}")
        g.merge_fork(staged)
        # Everything of the abandoned branch: our commits on it cannot be
        # given back or echoed any more, its held commits never apply.
        r.restorable = {e: v for e, v in r.restorable.items() if e < ep}
        r.own_commits.clear()
        r.commit_bodies.clear()
        r.restoring = None
        for _e, hmid, _f in r.held:
            r.buffered_ids.discard(hmid)
        r.held = []
        self.after_merge(r, staged, mid, external_proposals, now_ms, step, via="fork",
                         committer=committer(staged))
        # Messages of the hub's branch that arrived before its commit.
        retry, r.unreadable = [u for u in r.unreadable if u[0] > ep], []
        for _e, umid, ufm in retry:
            r.seen.discard(umid)
            if r.member:
                self.ingest(r, ufm, umid, now_ms, step)

    def unreadable(self, r: Room, ep: int, mid: str, fm: W.FanoutMessage) -> None:
        """Keep a commit or application message that failed in an epoch the
        client could still fork out of (the state before it is kept): if the
        room forked, it may be of the hub's branch and arrived before the
        hub's commit that starts that branch (see :meth:`fork`)."""
        g = r.group
        if g is not None and g.active and g.merged_commit(ep - 1) is not None:
            r.unreadable = [*r.unreadable[-(MAX_UNREADABLE - 1):], (ep, mid, fm)]

    def keep_for_fork(self, r: Room, messages: list[MLSMessage], ep: int, now_ms: int, step: StepBuilder) -> None:
        """A proposal of a past epoch whose state is kept goes into that
        state: a commit of the hub's for that epoch may reference it (see
        :meth:`fork`), and one held for it is tried again."""
        g = r.group
        assert g is not None
        if g.merged_commit(ep) is None:
            return
        for m in messages:
            try:
                g.cache_fork_proposal(m, now_s=self.core.now_seconds(now_ms))
            except (MLSError, DecodeError, EncodeError, CryptoError, ValueError):
                continue
        waiting = [h for h in r.held if h[0] == ep]
        if waiting:
            r.held = [h for h in r.held if h[0] != ep]
            for _e, hmid, hfm in waiting:
                r.buffered_ids.discard(hmid)
                self.ingest(r, hfm, hmid, now_ms, step)

    def after_merge(self, r: Room, staged: StagedCommit | None, mid: str, external_proposals: Sequence[MLSMessage],
                    now_ms: int, step: StepBuilder, *, via: str, operation: str | None = None,
                    committer: str | None = None) -> None:
        """The group merged a commit (``via``: own_commit, own_echo or commit):
        record the new epoch, or the removal, and process the proposals the
        hub stapled to the commit."""
        g = r.group
        assert g is not None
        if not g.active or (staged is not None and staged.removed_self):
            self.removed(r, mid, now_ms, step)
            return
        step.emit(epoch_event(r, via, mid, operation=operation, committer=committer))
        r.own_commits = {k: v for k, v in r.own_commits.items() if v.epoch > g.epoch}
        sent = r.commit_bodies.pop(mid, None)
        if sent is not None and via in ("own_commit", "own_echo"):
            r.restorable[sent[0]] = (mid, sent[1])
            while len(r.restorable) > RESTORABLE:
                del r.restorable[min(r.restorable)]
        r.commit_bodies = {k: v for k, v in r.commit_bodies.items() if v[0] >= g.epoch}
        if external_proposals:
            # The hub's proposals for the new epoch, stapled to the commit ([P6] Fanout).
            self.on_proposals(r, list(external_proposals), mid, now_ms, step)

    def removed(self, r: Room, mid: str, now_ms: int, step: StepBuilder) -> None:
        """A commit removed this client: stop, tell the provider, settle the queue."""
        g = r.group
        r.removed = True
        step.emit(E.ClientEpoch(room=r.uri, epoch=g.epoch + 1 if g is not None else None, msg_id=mid,
                                status="removed", via="removed"))
        # The body names the last epoch we were a member of: the provider still
        # delivers application messages of that epoch and earlier (accepted
        # before our removal, but possibly overtaken by the removing commit).
        last = g.epoch if g is not None else 0
        self.engine.request(step, ClientOp.left_room, r.uri, 0, "left", last.to_bytes(8, "big"))
        for op in r.queue:
            if not op.active:
                continue
            if op.kind == OpKind.LEAVE:
                self.engine.done(op)
            elif op.kind != OpKind.JOIN:
                self.engine.fail(step, r, op, "removed from the room", "removed")
        r.own_commits.clear()
        r.commit_bodies.clear()
        r.restorable.clear()
        r.pending_timer = None

    def on_proposals(self, r: Room, messages: list[MLSMessage], mid: str, now_ms: int, step: StepBuilder) -> int:
        """Cache proposals (our own too, if we no longer hold them), retry
        commits held for proposals, run the pending-proposal strategy.
        Returns how many proposals were newly cached."""
        g = r.group
        assert g is not None
        received = 0
        for m in messages:
            pid = msg_id_of(m.encode())
            try:
                res = g.process(m, now_s=self.core.now_seconds(now_ms))
            except ReplayError:
                continue  # already cached (e.g. the same proposal restapled)
            except (MLSError, DecodeError, EncodeError, CryptoError, ValueError) as e:
                step.drop(r.uri, g.epoch, pid, getattr(e, "code", "invalid"),
                        f"proposal: {e}"[:300])
                continue
            if isinstance(res, ProposalReceived):
                received += 1
        if received and r.held:
            held, r.held = r.held, []
            for _ep, hmid, hfm in held:
                r.buffered_ids.discard(hmid)
                self.ingest(r, hfm, hmid, now_ms, step)
            if not r.member:
                return received
        if received:
            self.pending_proposals_arrived(r, now_ms, step)
        return received

    def on_application(self, r: Room, fm: W.FanoutMessage, mid: str, ep: int, step: StepBuilder) -> None:
        g = r.group
        assert g is not None
        try:
            res = g.process(fm.message) if g.active else g.process_late_application(fm.message)
        except ReplayError:
            step.drop(r.uri, ep, mid, "duplicate", "application message replayed")
            return
        except WrongEpochError:
            step.drop(r.uri, ep, mid, "stale", f"application message of epoch {ep}, too old")
            return
        except (MLSError, DecodeError, EncodeError, CryptoError, ValueError) as e:
            step.drop(r.uri, ep, mid, getattr(e, "code", "invalid"), f"application: {e}"[:300])
            self.unreadable(r, ep, mid, fm)
            return
        if not isinstance(res, ApplicationMessage):
            step.drop(r.uri, ep, mid, "invalid", "not an application message")
            return
        tree = g.tree if res.epoch == g.epoch else g.past_tree(res.epoch)
        leaf = tree.leaf(res.sender) if tree is not None and res.sender < tree.n_leaves else None
        sender_client = client_of_leaf(leaf) if leaf is not None else None
        if sender_client is None:
            step.drop(r.uri, ep, mid, "unknownSender", "sender has no MIMI client credential")
            return
        sender_user = user_of_client(sender_client)
        try:
            content = decode_mimi_content(res.data)
        except ContentError as e:
            step.drop(r.uri, ep, mid, "badContent", str(e)[:200], sender_client)
            return
        if not sender_matches(content, sender_user, r.uri):
            step.drop(r.uri, ep, mid, "senderMismatch",
                    f"content claims {content.sender_uri} in {content.room_uri}", sender_client)
            return
        check = F.verify_received_frank(self.core.suite, g.extensions, r.uri, sender_user, res.authenticated_data,
                                        res.data, fm.frank, fm.timestamp)
        if check.record is not None:
            self.core._franks[(r.uri, mid)] = (res.data, check.record)
        step.delivered.append((r.uri, sender_user, content.text, mid))
        step.emit(E.ClientDeliver(room=r.uri, epoch=ep, msg_id=mid, status=f"frank:{check.status.value}",
                                  peer=sender_client, sender=sender_user, frank=check.status.value,
                                  content_id=content_id(message_id(content.sender_uri, content.room_uri, res.data,
                                                                   content.salt))))

    def on_welcome(self, r: Room, fm: W.FanoutMessage, mid: str, now_ms: int, step: StepBuilder) -> None:
        welcome = fm.message.body
        mine = [s.new_member for s in welcome.secrets if s.new_member in self.core._key_packages]
        if not mine:
            r.seen.add(mid)
            step.drop(r.uri, None, mid, "notForMe", "Welcome for none of our KeyPackages")
            return
        if r.member:
            r.seen.add(mid)
            step.drop(r.uri, r.group.epoch if r.group else None, mid, "duplicate",
                    "Welcome while already a member")
            return
        rto = fm.ratchet_tree_option
        if rto is not None and rto.representation == RatchetTreeRepresentation.distribution_service:
            # The hub keeps the tree: fetch it, join on the reply.
            r.seen.add(mid)
            self.core.builders.fetch_welcome_tree(r, fm, mid, step)
            return
        tree = rto.ratchet_tree if rto is not None and rto.representation == RatchetTreeRepresentation.full else None
        self.join_welcome(r, fm, mid, tree, now_ms, step)

    def join_welcome(self, r: Room, fm: W.FanoutMessage, mid: str, tree: Sequence[Node | None] | None,
                     now_ms: int, step: StepBuilder) -> None:
        """Join from a Welcome for one of our KeyPackages with ``tree`` (from
        the Welcome's RatchetTreeOption, or fetched from the hub)."""
        welcome = fm.message.body
        mine = [s.new_member for s in welcome.secrets if s.new_member in self.core._key_packages]
        if not mine or r.member:
            step.drop(r.uri, None, mid, "notForMe" if not mine else "duplicate",
                      "Welcome for none of our KeyPackages" if not mine else "Welcome while already a member")
            return
        ref = mine[0]
        kp, priv, last_resort = self.core._key_packages[ref]
        r.joins += 1
        try:
            group = Group.join(welcome, kp, priv, fork_rng(self.core.rng, f"group {r.uri} #{r.joins}"),
                               ratchet_tree=tree, config=self.core.group_config(), now_s=self.core.now_seconds(now_ms))
            if group.group_id != group_id_of_room(r.uri):
                raise MLSError("the Welcome is for another room's group")
        except (MLSError, DecodeError, EncodeError, CryptoError, UriError, ValueError) as e:
            r.seen.add(mid)
            step.drop(r.uri, None, mid, getattr(e, "code", "invalid"), f"Welcome: {e}"[:300])
            return
        r.seen.add(mid)
        if not last_resort:
            del self.core._key_packages[ref]
        r.group, r.removed, r.removed_ts = group, False, None
        step.emit(epoch_event(r, "welcome", mid, "joined"))

    # ------------------------------------------------------------ gaps and pending proposals

    def stuck(self, r: Room) -> bool:
        """Whether the room waits for something that has not come: a buffered
        message of a later epoch, or a commit held for missing proposals."""
        g = r.group
        if g is None or not r.member:
            return False
        return bool(r.held) or any(ep > g.epoch for ep, _, _, _ in r.buffer)

    def arm_gap_timer(self, r: Room, now_ms: int, step: StepBuilder) -> None:
        """Watch a gap: if the client is still stuck at the same epoch after
        ``gap_timeout_ms`` (what it misses was lost, not late), it resyncs by
        external commit. A gap is never skipped silently."""
        if self.core.gap_timeout_ms is None or r.gap_timer is not None or r.group is None:
            return
        r.gap_epoch = r.group.epoch
        r.gap_timer = self.engine.timer(step, now_ms + self.core.gap_timeout_ms, "gap", r.uri, 0)

    def queue_resync(self, r: Room, now_ms: int, step: StepBuilder) -> None:
        if any(op.kind == OpKind.JOIN and op.resync and op.active for op in r.queue):
            return
        g = r.group
        step.gap(r.uri, g.epoch if g else None, "", "stuck",
                f"no progress for {self.core.gap_timeout_ms} ms: resync")
        op = self.engine.new_op(r.uri, OpKind.JOIN, now_ms, resync=True)
        head = r.queue[0] if r.queue else None
        if head is not None and head.stage == Stage.WAITING:
            r.queue.appendleft(op)  # the head waits for the epoch we cannot reach
        else:
            r.queue.insert(1 if head is not None else 0, op)

    def needs_commit(self, r: Room) -> bool:
        g = r.group
        return g is not None and g.active and bool(g.state.proposals) and not removal_pending(g)

    def queue_commit_pending(self, r: Room, now_ms: int) -> None:
        if not any(op.kind == OpKind.COMMIT_PENDING and op.active for op in r.queue):
            self.engine.enqueue(r.uri, OpKind.COMMIT_PENDING, now_ms)

    def pending_proposals_arrived(self, r: Room, now_ms: int, step: StepBuilder) -> None:
        """The room's pending-proposal strategy: commit now, or after a random
        delay if nobody else did by then."""
        if not self.needs_commit(r):
            return
        strategy, delays = self.core._room_pending.get(r.uri, (self.core.pending_proposals, self.core.pending_delay_ms))
        if strategy == "immediate_commit":
            self.queue_commit_pending(r, now_ms)
        elif r.pending_timer is None:
            delay = self.core.uniform(*delays)
            r.pending_timer = self.engine.timer(step, now_ms + delay, "pending", r.uri, 0)
