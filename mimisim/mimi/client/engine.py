"""The operation engine: per-room queues of operations, their stages, retries.

Why a queue per room: every operation that changes a room is an MLS commit
(or proposals) against one epoch, and a client can have only one commit
pending per group. Running a room's operations one at a time, in the order
the user asked for them, keeps the client's state simple (at most one
pending commit) and makes retries well defined: after ``wrongEpoch`` the
*same* operation is rebuilt against the new epoch (see
:class:`~mimisim.mimi.client.operations.RetryStrategy`).

The engine also hands out request ids and timer tokens: a reply or an
expired timer names the room and operation it belongs to.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from mimisim import events as E
from mimisim.codec import DecodeError, EncodeError
from mimisim.mimi.client.operations import Op, OpEvent, OpKind, Room, Stage
from mimisim.mimi.client.output import StepBuilder, Timer
from mimisim.mimi.identity import UriError
from mimisim.mimi.transport import ClientMessage, ClientOp
from mimisim.mls.crypto import CryptoError
from mimisim.mls.errors import MLSError

if TYPE_CHECKING:
    from mimisim.mimi.client.core import ClientCore


#: How long an operation refused by a hub behind the client waits per attempt
#: before it is rebuilt (the hub is learning the lost commit back meanwhile).
HUB_BEHIND_WAIT_MS = 500


class OperationEngine:
    """Runs each room's queue of :class:`Op` s for one :class:`ClientCore`."""

    def __init__(self, core: ClientCore) -> None:
        self.core = core
        self.requests: dict[int, tuple[str, int, str]] = {}  # request id -> (room, op id, what)
        self.timers: dict[int, tuple[str, str, int]] = {}  # token -> (what, room, op id)
        self.next_request = 1
        self.next_timer = 1
        self.next_op = 1
        #: Operations that ended since the last output was frozen (ClientCore reports the users' ones).
        self.ended: list[Op] = []

    # ------------------------------------------------------------ ids, requests, timers

    def request(self, step: StepBuilder, op: ClientOp, room: str, op_id: int, what: str, body: bytes,
                target: str = "") -> int:
        """Send ``body`` to the provider; its reply comes back tagged ``what``."""
        rid = self.next_request
        self.next_request += 1
        self.requests[rid] = (room, op_id, what)
        step.actions.append(ClientMessage(self.core.client_uri, op, rid, body, room, target))
        return rid

    def timer(self, step: StepBuilder, at_ms: int, what: str, room: str, op_id: int) -> int:
        token = self.next_timer
        self.next_timer += 1
        self.timers[token] = (what, room, op_id)
        step.actions.append(Timer(at_ms, token))
        return token

    def new_op(self, room: str, kind: OpKind, now_ms: int, **kw: Any) -> Op:
        op = Op(self.next_op, kind, room, now_ms, **kw)
        op.ended = self.ended
        self.next_op += 1
        return op

    def enqueue(self, room: str, kind: OpKind, now_ms: int, **kw: Any) -> Op:
        op = self.new_op(room, kind, now_ms, **kw)
        self.core.room(room).queue.append(op)
        return op

    # ------------------------------------------------------------ outcomes

    def fail(self, step: StepBuilder, r: Room, op: Op, why: str, status: str = "failed") -> None:
        op.failure = status
        op.advance(OpEvent.FAIL)
        epoch = r.group.epoch if r.group is not None else None
        step.emit(E.ClientFail(room=r.uri, epoch=epoch, msg_id=op.msg_id, status=status, peer=op.target,
                               operation=op.kind.value, reason=why))

    @staticmethod
    def done(op: Op) -> None:
        op.advance(OpEvent.FINISH)

    @staticmethod
    def submitted(op: Op) -> None:
        op.advance(OpEvent.SUBMIT)

    def wait_next_epoch(self, r: Room, op: Op) -> None:
        assert r.group is not None
        op.advance(OpEvent.WAIT)
        op.wait_epoch = r.group.epoch + 1
        op.wait_refs = None

    # ------------------------------------------------------------ running the queue

    def finish(self, r: Room, now_ms: int, step: StepBuilder) -> None:
        """Process what became processable, then run the room's queue."""
        self.core.inbound.drain(r, now_ms, step)
        self.pump(r, now_ms, step)

    def pump(self, r: Room, now_ms: int, step: StepBuilder) -> None:
        """Start or resume the head operation until one is in flight or waits."""
        for _ in range(1000):  # every pass ends an op or changes its stage; bounded anyway
            if not r.queue:
                return
            op = r.queue[0]
            if not op.active:
                r.queue.popleft()
                continue
            if op.stage == Stage.WAITING:
                if not self.ready(r, op):
                    # A resync queued behind an operation that waits for an
                    # epoch the client cannot reach (the gap) goes first.
                    for i in range(1, len(r.queue)):
                        cand = r.queue[i]
                        if cand.kind == OpKind.JOIN and cand.resync and cand.stage == Stage.NEW:
                            del r.queue[i]
                            r.queue.appendleft(cand)
                            break
                    else:
                        return
                    continue
                op.advance(OpEvent.RESUME)
            if op.stage != Stage.NEW:
                return  # a request is in flight
            self.start(r, op, now_ms, step)

    @staticmethod
    def ready(r: Room, op: Op) -> bool:
        """Whether a waiting operation may be rebuilt now."""
        if op.backoff_timer is not None:
            return False
        g = r.group
        if g is None or not g.active:
            return True  # start fails it (or, for a join, refetches)
        if op.wait_epoch is not None and g.epoch < op.wait_epoch:
            return False
        if op.wait_refs and g.epoch == op.wait_from_epoch:
            return all(ref in g.state.proposals for ref in op.wait_refs)
        return True

    def start(self, r: Room, op: Op, now_ms: int, step: StepBuilder) -> None:
        """Build and send the head operation's next request from the current state."""
        core, build = self.core, self.core.builders
        op.wait_epoch, op.wait_refs = None, None
        if op.kind == OpKind.CREATE:
            op.request_id = self.request(step, ClientOp.create_room, r.uri, op.id, "create", op.create_body)
            op.attempts += 1
            self.submitted(op)
            return
        if op.kind == OpKind.JOIN:
            if r.member and not op.resync:
                self.done(op)  # already in the group (e.g. added meanwhile)
                return
            if op.resync and not core.inbound.stuck(r):
                self.done(op)  # the gap filled while the resync waited
                return
            build.fetch_group_info(r, op, step)
            return
        if not r.member:
            self.fail(step, r, op, "not a member of the room", "notMember")
            return
        if op.resend:
            op.resend = False
            if self.resend(r, op, step):
                return
        try:
            if op.kind == OpKind.ADD:
                if op.key_packages is None:
                    build.fetch_key_material(r, op, step)
                else:
                    build.commit_add(r, op, now_ms, step)
            elif op.kind == OpKind.ADD_MANY:
                if op.key_packages is None:
                    build.fetch_key_material_many(r, op, step)
                else:
                    build.commit_add_many(r, op, now_ms, step)
            elif op.kind == OpKind.REMOVE:
                build.commit_remove(r, op, now_ms, step)
            elif op.kind == OpKind.COMMIT_PENDING:
                build.commit_pending(r, op, now_ms, step)
            elif op.kind == OpKind.UPDATE:
                build.send_commit(r, op, [], now_ms, step)
            elif op.kind == OpKind.LEAVE:
                build.propose_leave(r, op, step)
            elif op.kind == OpKind.SEND:
                build.submit_message(r, op, step)
        except (MLSError, DecodeError, EncodeError, CryptoError, UriError, ValueError) as e:
            g = r.group
            if g is not None and g.pending is not None and g.pending is op.staged:
                g.discard_pending_commit()
            self.fail(step, r, op, str(e), getattr(e, "code", "invalid"))

    def resend(self, r: Room, op: Op, step: StepBuilder) -> bool:
        """After a transport failure, send the same request again, if it can
        still be right: an application message always (the hub answers a
        retry of one it accepted with its first answer, whatever its epoch
        now; otherwise it judges it as new), proposals and a commit while the
        client is still at the epoch they were built at (a commit the hub
        accepted gets its original ``success``, the committer's only proof
        when no echo comes). A rebuilt request would be another message with
        another id: a message accepted twice and delivered twice, or a commit
        the hub never heard of while it had accepted the first (the client
        then waits for an epoch it can only reach by resync). Returns whether
        it was sent."""
        g = r.group
        assert g is not None
        if op.kind == OpKind.SEND:
            client_op, what = ClientOp.submit_message, "submit"
        elif op.kind == OpKind.LEAVE:
            if g.epoch != op.sent_epoch:
                return False
            client_op, what = ClientOp.update, "proposals"
        elif op.kind in (OpKind.ADD, OpKind.REMOVE, OpKind.COMMIT_PENDING, OpKind.UPDATE):
            if g.epoch != op.sent_epoch or op.msg_id not in r.own_commits:
                return False
            client_op, what = ClientOp.update, "commit"
        else:
            return False
        op.attempts += 1
        target = self.core.user_uri if op.kind == OpKind.LEAVE else ""  # see RequestBuilder.propose_leave
        op.request_id = self.request(step, client_op, r.uri, op.id, what, op.body, target)
        self.submitted(op)
        if op.kind == OpKind.SEND:
            self.core.builders.emit_submit(r, op, step)
        return True

    # ------------------------------------------------------------ retries

    def retry(self, r: Room, op: Op, now_ms: int, step: StepBuilder, why: str, *,
              hub_epoch: int | None = None, refs: Sequence[bytes] | None = None,
              retry_after_ms: int | None = None) -> None:
        """Schedule the rebuild of ``op`` after a refusal (see RetryStrategy);
        never before a rate limit's ``retry_after_ms``."""
        rs = self.core.retry
        g = r.group
        # A leave refused because the room moved on is retried for as long as
        # the hub keeps answering: the user asked to leave, and the hub
        # "guarantees the leaving client that they will be removed as soon as
        # possible" ([P] Bob Leaves the Room), which cannot hold if the client
        # gives up under commit contention. Transport failures still count:
        # a leave that cannot reach the hub fails, reported (client.fail).
        contended = op.kind == OpKind.LEAVE and why in ("wrongEpoch", "invalidProposal")
        if op.attempts >= rs.max_attempts and not contended:
            self.fail(step, r, op, f"gave up after {op.attempts} attempt(s), last: {why}", why)
            return
        if rs.mode == "abandon" and op.kind == OpKind.UPDATE:
            self.fail(step, r, op, f"abandoned after {why}", why)
            return
        op.advance(OpEvent.WAIT)
        # A leave retried without limit always waits for the epoch the hub
        # named (rebuilding at once against a lagging state would only be
        # refused again, and would keep a queued resync from ever running).
        after = (rs.mode == "after_commit" or contended) and op.kind != OpKind.JOIN
        op.wait_epoch = hub_epoch if after else None
        op.wait_refs = list(refs) if after and refs else None
        op.wait_from_epoch = g.epoch if g is not None else -1
        delay = rs.wait_ms(op.attempts, self.core.uniform)
        if hub_epoch is not None and hub_epoch < op.sent_epoch:
            # The hub is behind us (a lagging failover lost a commit we
            # processed): nothing we receive will say when it caught up, so
            # wait a while for the commit's restore before rebuilding.
            delay = max(delay, HUB_BEHIND_WAIT_MS * op.attempts)
        if retry_after_ms is not None:
            delay = max(delay, int(retry_after_ms))
        op.backoff_timer = self.timer(step, now_ms + delay, "retry", r.uri, op.id) if delay > 0 else None
        step.emit(E.ClientRetry(
            room=r.uri, epoch=hub_epoch if hub_epoch is not None else (g.epoch if g else None), msg_id=op.msg_id,
            status=why, peer=op.target, operation=op.kind.value, attempt=op.attempts + 1,
            max_attempts=None if contended else rs.max_attempts, wait_epoch=op.wait_epoch,
            wait_proposals=len(op.wait_refs) if op.wait_refs else None, delay_ms=delay,
            retry_after_ms=None if retry_after_ms is None else int(retry_after_ms)))

    # ------------------------------------------------------------ lagging failover

    def restore(self, r: Room, hub_epoch: int, now_ms: int, step: StepBuilder) -> None:
        """The hub is at ``hub_epoch``, behind this client: a lagging standby
        took over and lost the suffix that held the commit out of
        ``hub_epoch``, which members had already processed. If that commit
        was ours, send it again, unchanged: it is a valid commit for the
        hub's epoch, so the hub validates and accepts it like any other and
        fans it out again (members drop it as a duplicate), and the room
        goes on on the branch every member is on. [P]/[P6] Fanout: a
        ``success`` is "a commitment from the hub provider that the message
        will eventually be distributed", and clients "need to be prepared to
        receive the client's (effectively duplicate) message ... during
        failover" (docs/mimi-choices.md, "Lagging failover"). One restore in
        flight at a time (re-sent after a second without an answer)."""
        g = r.group
        if g is None or not g.active or r.removed or hub_epoch >= g.epoch or hub_epoch not in r.restorable:
            return
        if r.restoring is not None and r.restoring[0] == hub_epoch and now_ms - r.restoring[1] < 1000:
            return
        mid, body = r.restorable[hub_epoch]
        r.restoring = (hub_epoch, now_ms)
        self.request(step, ClientOp.update, r.uri, 0, "restore", body)
        step.gap(r.uri, hub_epoch, mid, "restore",
                 f"the hub is at epoch {hub_epoch}, we are at {g.epoch}: giving back our commit {mid}")

    # ------------------------------------------------------------ timers

    @staticmethod
    def own_commit_unanswered(r: Room) -> bool:
        """Whether this client's commit out of its current epoch is in flight
        (sent, no answer yet): then the epoch it cannot reach may be its own."""
        g = r.group
        op = r.queue[0] if r.queue else None
        return (g is not None and op is not None and op.stage == Stage.SUBMITTED and op.staged is not None
                and op.sent_epoch == g.epoch)

    def on_timer(self, token: int, now_ms: int, step: StepBuilder) -> Room | None:
        """Settle an expired timer; the room whose queue to run next, if any."""
        info = self.timers.pop(token, None)
        if info is None:
            return None
        what, room, op_id = info
        r = self.core._rooms.get(room)
        if r is None:
            return None
        inbound = self.core.inbound
        if what == "retry":
            for op in r.queue:
                if op.id == op_id and op.backoff_timer == token:
                    op.backoff_timer = None
        elif what == "gap" and r.gap_timer == token:
            r.gap_timer = None
            if inbound.stuck(r) and r.group is not None and r.group.epoch == r.gap_epoch:
                if self.own_commit_unanswered(r):
                    # The missing commit may be our own, still unanswered (the ds
                    # hub sends a committer no echo): wait for its answer.
                    inbound.arm_gap_timer(r, now_ms, step)
                else:
                    inbound.queue_resync(r, now_ms, step)
            elif inbound.stuck(r):
                inbound.arm_gap_timer(r, now_ms, step)  # progress was made; still behind: watch again
        elif what == "pending" and r.pending_timer == token:
            r.pending_timer = None
            if r.member and inbound.needs_commit(r):
                inbound.queue_commit_pending(r, now_ms)
        return r
