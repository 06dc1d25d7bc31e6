"""Adversaries as scenario actors: a malicious follower, a malicious client,
and a sender of malformed bodies (the scenario's ``adversaries:`` section).

Each actor attacks at Poisson times (its own random stream), taking the next
attack of its list in turn. Every attempt is one ``adversary.attempt`` row
(``req_id`` numbers the attempt, ``status`` names the attack), and its outcome
one row with the same ``req_id``: ``adversary.rejected`` (status: the HTTP
status or protocol code that refused it), ``adversary.accepted`` (the target
took it: a protocol failure) or ``adversary.unanswered`` (lost on the way or
the target was down; neither). An attack that does not apply at that moment
(a stale-epoch commit before the room has moved on) is not attempted.

What the attackers hold is what such an attacker would have: the follower
its own TLS identity, the ``/notify`` bodies the hub sent it and the group
state of its own clients; the client its own keys, group state (snapshots
of earlier epochs included) and KeyPackages. Nothing else: they never
touch another node's state. They read the cores through public accessors
only and act on a provider through the node's declared hooks
(``request_tap``: the requests it receives; ``action_filter``: what its
core's outcomes do), never by replacing a method. The rejections come from the unchanged protocol
cores (:mod:`mimisim.mimi.provider`, :mod:`mimisim.mimi.hub`,
:mod:`mimisim.mimi.keystore`).

``withhold_fanout`` is different in kind: a follower that keeps a commit from
its own clients cannot be refused by anyone. Its outcome is judged at the
end: ``rejected`` (status ``detected``) when every client it withheld from
noticed the gap (a ``client.gap`` row after it: the next epoch's message
arrived without the commit, and the client resyncs after its gap timeout)
or reached the commit's epoch or a later one all the same, else
``accepted`` (a member silently held back in an old epoch). Whether they recovered is the
invariants' business (``converged``, ``member_order``). (Withholding *application*
messages from one's own users is undetectable in MIMI: a provider delivers
to its users; the drafts give members no way to notice.)
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from mimisim import events as E
from mimisim.mimi import franking as F
from mimisim.mimi import wire as W
from mimisim.mimi.client.content import SALT_LEN, MimiContent, encode_mimi_content
from mimisim.mimi.client.roomstate import client_of_leaf, epoch_of
from mimisim.mimi.endpoints import Endpoint
from mimisim.mimi.hub import msg_id_of
from mimisim.mimi.identity import group_id_of_room, hub_of_room, user_of_client
from mimisim.mimi.keystore import encode_upload
from mimisim.mimi.transport import (
    Action,
    ClientMessage,
    ClientOp,
    Deliver,
    MimiRequest,
    MimiResponse,
    Outcome,
)
from mimisim.mls import framing
from mimisim.mls.errors import MLSError, WrongEpochError
from mimisim.mls.group import ApplicationMessage, StagedCommit
from mimisim.mls.keypackage import create_key_package
from mimisim.mls.observer import partial_group_info
from mimisim.mls.structs import (
    AuthenticatedContent,
    ContentType,
    FramedContent,
    MLSMessage,
    RatchetTreeOption,
    RatchetTreeRepresentation,
    Sender,
    SenderType,
    WireFormat,
)
from mimisim.sim.http import ExchangeResult, RetryPolicy
from mimisim.sim.links import wire_size
from mimisim.sim.rng import protocol_random, stream

if TYPE_CHECKING:
    from mimisim.mimi.client import ClientCore
    from mimisim.mls.group import Group
    from mimisim.sim.world import World

#: Response codes that are refusals (as the provider fuzz tests define them).
ERROR_CODES = frozenset({
    "wrongEpoch", "notAllowed", "invalidProposal", "epochTooOld", "notAuthorized", "noSuchRoom",
    "incompatibleProtocol", "noCompatibleMaterial", "userUnknown", "noConsent", "noConsentForThisRoom",
    "userDeleted", "notFound", "ambiguous", "forbidden", "unsupportedField",
})
#: One attempt, no retry: an attacker that is refused does not insist.
ONE_SHOT = RetryPolicy(timeout_ms=3_000.0, max_attempts=1)
#: Client request ids of attacks start here (far from the client core's own).
REQUEST_BASE = 1_000_000_000
#: ``forge_leaf`` encrypts this many generations past the victim's next one
#: (below the receivers' 256 skipped keys, so the victim's real messages keep theirs).
FORGE_GENERATION_SKIP = 128


def _accepted(status: int, code: str) -> bool:
    return status == 201 or (status == 200 and code not in ERROR_CODES)


def _commit_body(g: Group) -> tuple[bytes, MLSMessage]:
    """A commit of ``g`` (a copy: the attacker's real state is not moved) as an /update body."""
    out = g.commit([])
    gio = W.GroupInfoOption.partial(partial_group_info(out.group_info))
    rto = RatchetTreeOption(RatchetTreeRepresentation.distribution_service, None, None, None)
    welcome = out.welcome.body if out.welcome is not None else None
    return W.UpdateRequest(W.HandshakeBundle.commit(out.message, gio, rto, welcome)).encode(), out.message


@dataclass
class _Pending:
    attack: str
    node: str
    peer: str
    room: str
    judge: Callable[[int, str, bytes], bool] | None = None
    #: An application message the hub may accept without harm (it cannot read
    #: it): when it does, the receivers judge it at the end (:meth:`Adversaries.finish`).
    #: ``(msg id, rule)``; rule ``no_delivery`` (no member may deliver it) or
    #: ``no_second_delivery`` (no member may deliver it twice).
    receivers: tuple[str, str] | None = None


@dataclass
class _Shadow:
    """A captured copy of a victim's group, fed the traffic the victim gets."""

    n: int
    group: Group
    leaf: int
    key: bytes  # the victim's leaf encryption key when captured
    epoch: int
    #: The leaf key of the victim's commit pending when captured (its path
    #: secrets are in the copy: that update is no post-compromise one).
    pending_key: bytes = b""
    read_before: int = 0  # application messages it decrypted while the leaf was the captured one
    read_after: int = 0  # ... after the leaf changed (post-compromise security broken)
    locked_out: int | None = None  # the epoch it could not follow
    #: Why: "update" (the victim's own commit: its new leaf secrets are out of
    #: reach, the defence working), "commit" (another member's commit it failed
    #: to process), "gap" (a commit in flight when it captured, never seen).
    why: str = ""


@dataclass
class _Removed:
    """What a removed member keeps: its last group state, as far as it could follow the room."""

    group: Group
    seen: int = 0  # traffic entries already used
    removed_at: int | None = None  # the first epoch it is not a member of (followed by pretending)
    stuck: int | None = None  # the epoch whose commit it could not follow


@dataclass
class Adversaries:
    """Every adversary of a world; :meth:`start` at the beginning, :meth:`finish` at the end."""

    world: World
    attempts: int = 0
    pending: dict[int, _Pending] = field(default_factory=dict)
    withheld: list[tuple[int, str, str, str, float]] = field(default_factory=list)  # id, provider, room, mid, t
    judged: list[tuple[int, str, str]] = field(default_factory=list)  # id, msg id, rule (see _Pending.receivers)
    shadows: list[_Shadow] = field(default_factory=list)

    # ---------------------------------------------------------------- recording

    def _attempt(self, attack: str, node: str, peer: str, room: str, detail: str,
                 judge: Callable[[int, str, bytes], bool] | None = None,
                 receivers: tuple[str, str] | None = None) -> int:
        self.attempts += 1
        n = self.attempts
        w = self.world
        w.trace.record(w.env.now, E.AdversaryAttempt(peer=peer, room=room, req_id=n, status=attack, attack=attack,
                                                     text=detail), node)
        self.pending[n] = _Pending(attack, node, peer, room, judge, receivers)
        return n

    def _outcome(self, n: int, status: int | None, code: str = "", body: bytes = b"") -> None:
        p = self.pending.pop(n, None)
        if p is None:
            return
        w = self.world
        if status is None:
            w.trace.record(w.env.now, E.AdversaryUnanswered(peer=p.peer, room=p.room, req_id=n, status="noResponse",
                                                            attack=p.attack), p.node)
            return
        ok = p.judge(status, code, body) if p.judge is not None else _accepted(status, code)
        if ok and p.receivers is not None:
            # The hub took it (it cannot read an application message); the
            # members must refuse it. Judged at the end from their rows.
            self.judged.append((n, *p.receivers))
            self.pending[n] = p
            return
        cls = E.AdversaryAccepted if ok else E.AdversaryRejected
        w.trace.record(w.env.now, cls(peer=p.peer, room=p.room, req_id=n, status=code or str(status), attack=p.attack,
                                      http_status=status), p.node)

    # ---------------------------------------------------------------- plumbing

    def _http(self, n: int, src: str, req: MimiRequest, gen: np.random.Generator) -> Generator[Any, Any, None]:
        """Send one request from provider ``src`` (its TLS identity) and record the outcome."""
        w = self.world
        node = w.providers[src]
        result: ExchangeResult = yield w.fabric.exchange(src, req, ONE_SHOT, gen, alive=lambda: node.up)
        resp: MimiResponse | None = result.response
        if resp is None:
            self._outcome(n, None)
        else:
            self._outcome(n, resp.status, resp.code, resp.body)

    def _client_send(self, n: int, uri: str, op: ClientOp, room: str, body: bytes) -> None:
        """Send one request from client ``uri`` to its own provider; the reply
        is taken off the client's connection before its core sees it."""
        node = self.world.clients[uri]
        rid = REQUEST_BASE + n
        node.intercept[rid] = lambda reply: self._outcome(n, reply.status, reply.code, reply.body)
        msg = ClientMessage(uri, op, rid, body, room)
        node.uplink.send(msg, wire_size(len(body)), detail=f"{op.value} (adversary)")

    def _ticks(self, spec: Any, name: str) -> Generator:
        """Poisson attack times of one actor; yields the index of each attempt."""
        env = self.world.env
        g = stream(self.world.seed, f"adversary:{name}")
        end = float(spec.stop) if spec.stop is not None else float(self.world.scenario.duration)
        t = float(spec.start)
        i = 0
        while True:
            t += float(g.exponential(1000.0 / float(spec.rate)))
            if t >= end:
                return
            yield env.timeout(max(0.0, t - env.now))
            yield i
            i += 1

    # ---------------------------------------------------------------- start / finish

    def start(self) -> None:
        scn = self.world.scenario
        env = self.world.env
        adv = scn.adversaries
        for i, f in enumerate(adv.followers):
            env.process(self._follower(f, i))
        for i, c in enumerate(adv.clients):
            env.process(self._client(c, i))
        for i, m in enumerate(adv.malformed):
            env.process(self._malformed(m, i))
        for i, comp in enumerate(adv.compromises):
            env.process(self._compromise(comp, i))

    def finish(self) -> None:
        """Judge the withheld commits; everything still in flight is unanswered."""
        w = self.world
        trace = w.trace.cols
        epochs = [-1 if e is None else e for e in trace["epoch"]]
        rows = list(zip(trace["kind"], trace["node"], trace["room"], trace["msg_id"], trace["t_ms"], epochs,
                        strict=True))
        for n, _provider, room, mid, t0 in self.withheld:
            victims = self.pending[n].peer.split(",") if n in self.pending else []
            # The epoch the withheld commit leads to (from the hub's acceptance).
            target = max((int(e) for k, r, m, e in zip(trace["kind"], trace["room"], trace["msg_id"],
                                                       trace["epoch"], strict=True)
                          if k == "hub.accept" and r == room and m == mid), default=-2) + 1
            noticed = []
            for uri in victims:
                # Not silently held back: a gap logged after the withholding (the
                # next epoch's message came without the commit), or the client
                # reached the commit's epoch or a later one all the same.
                noticed.append(any(
                    node == uri and r == room and t >= t0
                    and (k == "client.gap" or (k == "client.epoch" and (m == mid or e >= target)))
                    for k, node, r, m, t, e in rows))
            p = self.pending.pop(n, None)
            if p is None:
                continue
            cls = E.AdversaryRejected if all(noticed) else E.AdversaryAccepted
            w.trace.record(w.env.now, cls(peer=p.peer, room=p.room, req_id=n,
                                          status="detected" if all(noticed) else "undetected", attack=p.attack,
                                          text=mid), p.node)
        delivered: dict[str, dict[str, int]] = {}  # msg id -> client -> deliveries
        for k, node, m in zip(trace["kind"], trace["node"], trace["msg_id"], strict=True):
            if k == "client.deliver" and m:
                d = delivered.setdefault(m, {})
                d[node] = d.get(node, 0) + 1
        for n, mid, rule in self.judged:
            p = self.pending.pop(n, None)
            if p is None:
                continue
            got = delivered.get(mid, {})
            bad = any(c > 1 for c in got.values()) if rule == "no_second_delivery" else bool(got)
            cls = E.AdversaryAccepted if bad else E.AdversaryRejected
            status = ("deliveredTwice" if rule == "no_second_delivery" else "delivered") if bad else "refusedByMembers"
            w.trace.record(w.env.now, cls(peer=p.peer, room=p.room, req_id=n, status=status, attack=p.attack,
                                          text=f"{mid} accepted by the hub; {sum(got.values())} delivery(ies)"),
                           p.node)
        for sh in self.shadows:
            p = self.pending.pop(sh.n, None)
            if p is None:
                continue
            what = (f"captured at epoch {sh.epoch}; read {sh.read_before} message(s) before the leaf was "
                    f"updated, {sh.read_after} after; "
                    + (f"locked out at epoch {sh.locked_out} ({sh.why})" if sh.locked_out is not None
                       else "never locked out"))
            if sh.read_after:
                w.trace.record(w.env.now, E.AdversaryAccepted(peer=p.peer, room=p.room, req_id=sh.n,
                                                              status="readAfterUpdate", attack=p.attack, text=what),
                               p.node)
            elif sh.why == "update" and self._leaf_updated(p.peer, p.room, sh):
                w.trace.record(w.env.now, E.AdversaryRejected(peer=p.peer, room=p.room, req_id=sh.n,
                                                              status="lockedOut", attack=p.attack, text=what),
                               p.node)
            else:
                # Nothing to judge: the victim never updated its leaf while the
                # copy followed, or the copy lost track for another reason.
                status = "notUpdated" if not sh.why else f"lostTrack:{sh.why}"
                w.trace.record(w.env.now, E.AdversaryUnanswered(peer=p.peer, room=p.room, req_id=sh.n,
                                                                status=status, attack=p.attack, text=what),
                               p.node)
        for n in sorted(self.pending):
            self._outcome(n, None)

    def _leaf_updated(self, client: str, room: str, sh: _Shadow) -> bool:
        """Whether the victim's leaf is no longer the captured one (updated,
        or the client left the group or resynced into a new leaf)."""
        g = self.world.clients[client].core.group(room)
        if g is None or not self.world.clients[client].core.is_member(room) or g.own_leaf != sh.leaf:
            return True
        leaf = g.tree.leaf(sh.leaf)
        return leaf is None or leaf.encryption_key != sh.key

    def _observe(self, provider: str, fn: Callable[[Outcome], None]) -> None:
        """Watch the outcomes of a provider's core (its Delivers, requests):
        the node's declared ``action_filter`` hook, chained so that an earlier
        filter (``withhold_fanout``) keeps its say."""
        node = self.world.providers[provider]
        prev = node.action_filter

        def observe(out: Outcome) -> Sequence[Action]:
            fn(out)
            return prev(out) if prev is not None else out.actions

        node.action_filter = observe

    # ---------------------------------------------------------------- malicious follower

    def _follower(self, spec: Any, index: int) -> Generator:
        w = self.world
        scn = w.scenario
        me = spec.provider
        room = scn.room_uri(spec.room)
        hub = hub_of_room(room)
        gen = stream(w.seed, f"adversary:follower:{index}:http")
        captured: list[bytes] = []
        node = w.providers[me]

        def capture(req: MimiRequest, peer: str) -> None:
            if req.endpoint == Endpoint.NOTIFY and req.target == room and peer == hub:
                captured.append(req.body)

        node.request_tap = capture
        armed: list[int] = []

        stop = float(spec.stop) if spec.stop is not None else float(scn.duration)

        def withhold(out: Outcome) -> Sequence[Action]:
            if armed and w.env.now < stop:
                for a in out.actions:
                    if isinstance(a, Deliver) and a.room == room and a.msg_id:
                        try:
                            kind = W.FanoutMessage.decode(a.body).kind
                        except Exception:  # noqa: BLE001 - not ours to judge
                            continue
                        if kind == W.MessageKind.commit:
                            victims = sorted({d.client for d in out.actions
                                              if isinstance(d, Deliver) and d.msg_id == a.msg_id})
                            n = self._attempt("withhold_fanout", me, ",".join(victims), room,
                                              f"commit {a.msg_id} kept from {len(victims)} client(s)")
                            self.withheld.append((n, me, room, a.msg_id, w.env.now))
                            armed.clear()
                            return [d for d in out.actions if not (isinstance(d, Deliver) and d.msg_id == a.msg_id)]
            return out.actions

        prev_filter = node.action_filter

        def withhold_chained(out: Outcome) -> Sequence[Action]:
            kept = withhold(out)
            if prev_filter is None:
                return kept
            inner = prev_filter(out)
            return [a for a in kept if a in inner]

        node.action_filter = withhold_chained
        followers = sorted({scn.users[u].provider for u in scn.rooms[spec.room].participants} - {me, hub})
        victim = followers[0] if followers else hub
        attacks = list(spec.attacks)
        spoofs = 0  # spoof_from alternates its two forms by its own count (not by ev)
        ticks = self._ticks(spec, f"follower:{index}")
        for ev in ticks:
            if not isinstance(ev, int):
                yield ev
                continue
            attack = attacks[ev % len(attacks)]
            if not node.up:
                continue
            if attack == "replay_notify" and captured:
                body = captured[int(gen.integers(len(captured)))]
                req = MimiRequest(Endpoint.NOTIFY, room, me, victim, body)
                n = self._attempt(attack, me, victim, room, f"an old /notify of {hub} replayed as {me}")
                w.env.process(self._http(n, me, req, gen))
            elif attack == "spoof_from":
                spoofs += 1
                if captured and spoofs % 2 == 1:
                    req = MimiRequest(Endpoint.NOTIFY, room, hub, victim, captured[-1])
                    what = f"/notify to {victim} claiming From: {hub}"
                    target = victim
                else:
                    g = self._member_group(me, room)
                    if g is None:
                        continue
                    body, _ = _commit_body(g)
                    req = MimiRequest(Endpoint.UPDATE, room, victim, hub, body)
                    what = f"/update to {hub} claiming From: {victim}"
                    target = hub
                n = self._attempt(attack, me, target, room, what)
                w.env.process(self._http(n, me, req, gen))
            elif attack == "tamper":
                g = self._member_group(me, room)
                if g is None:
                    continue
                _, msg = _commit_body(g)
                msg.body.content.authenticated_data = msg.body.content.authenticated_data + b"tampered"
                gio_g = self._member_group(me, room)
                assert gio_g is not None
                out = gio_g.commit([])
                gio = W.GroupInfoOption.partial(partial_group_info(out.group_info))
                rto = RatchetTreeOption(RatchetTreeRepresentation.distribution_service, None, None, None)
                body = W.UpdateRequest(W.HandshakeBundle.commit(msg, gio, rto, None)).encode()
                req = MimiRequest(Endpoint.UPDATE, room, me, hub, body)
                n = self._attempt(attack, me, hub, room, "a commit whose content was changed after signing")
                w.env.process(self._http(n, me, req, gen))
            elif attack == "withhold_fanout":
                if not armed:
                    armed.append(1)

    def _member_group(self, provider: str, room: str) -> Group | None:
        """A copy of the group of one of ``provider``'s clients that is a member of ``room``."""
        for uri in sorted(self.world.clients):
            node = self.world.clients[uri]
            if node.provider.domain != provider:
                continue
            g = node.core.group(room)
            if node.core.is_member(room) and g is not None:
                return copy.deepcopy(g)
        return None

    # ---------------------------------------------------------------- malicious client

    def _client(self, spec: Any, index: int) -> Generator:
        w = self.world
        scn = w.scenario
        uri = scn.client(spec.client).uri
        room = scn.room_uri(spec.room)
        node = w.clients[uri]
        core = node.core
        rng = protocol_random(w.seed, f"adversary client {index}")
        old: list[Any] = []  # snapshots of the attacker's group, oldest first
        attacks = list(spec.attacks)
        seen: list[MLSMessage] = []  # application messages its provider delivered to it (the last 16)

        def capture(out: Outcome) -> None:
            for a in out.actions:
                if isinstance(a, Deliver) and a.client == uri and a.room == room:
                    try:
                        fm = W.FanoutMessage.decode(a.body)
                    except Exception:  # noqa: BLE001 - not ours to judge
                        continue
                    if fm.kind == W.MessageKind.application:
                        seen.append(fm.message)
                        del seen[:-16]

        #: The room's commits and application messages its provider hands to
        #: any of its clients (MLS's threat model gives ciphertexts to the
        #: delivery service and the network), by message id, in order: what a
        #: removed member tries to follow (``read_after_removal``).
        traffic: dict[str, W.FanoutMessage] = {}

        def record(out: Outcome) -> None:
            for a in out.actions:
                if isinstance(a, Deliver) and a.room == room and a.msg_id and a.msg_id not in traffic:
                    try:
                        fm = W.FanoutMessage.decode(a.body)
                    except Exception:  # noqa: BLE001 - not ours to judge
                        continue
                    if fm.kind in (W.MessageKind.commit, W.MessageKind.application):
                        traffic[a.msg_id] = fm

        if {"replay_message"} & set(attacks):
            self._observe(node.provider.domain, capture)
        if "read_after_removal" in attacks:
            self._observe(node.provider.domain, record)
        removed: _Removed | None = None
        forged = 0  # forge_sender alternates the sendingUri it claims
        stale_apps = 0  # old_epoch_state alternates the epoch in the header
        for ev in self._ticks(spec, f"client:{index}"):
            if not isinstance(ev, int):
                yield ev
                continue
            group = core.group(room)
            member = core.is_member(room) and group is not None
            if member and group is not None and (not old or old[-1].epoch != group.epoch):
                old.append(copy.deepcopy(group))
                old[:] = old[-4:]
            attack = attacks[ev % len(attacks)]
            if attack == "non_member_submit" and not member:
                kp, priv = create_key_package(core.suite, core.credential, core.signature_priv, rng)
                from mimisim.mls.group import Group as _G

                g = _G.create(core.suite, group_id_of_room(room), kp, priv, rng)
                submit = W.SubmitMessageRequest(W.MLS10, self._current(g.protect(b"let me in"), room),
                                                W.IdentifierUri(core.user_uri))
                n = self._attempt(attack, uri, hub_of_room(room), room, "a message to a room it is not in")
                self._client_send(n, uri, ClientOp.submit_message, room, submit.encode())
            elif attack == "forged_signature" and member:
                assert group is not None
                _, msg = _commit_body(copy.deepcopy(group))
                msg.body.auth.signature = core.suite.sign_with_label(
                    core.suite.generate_signature_key_pair(rng)[0], b"FramedContentTBS", b"forged")
                g2 = copy.deepcopy(group)
                out = g2.commit([])
                gio = W.GroupInfoOption.partial(partial_group_info(out.group_info))
                rto = RatchetTreeOption(RatchetTreeRepresentation.distribution_service, None, None, None)
                body = W.UpdateRequest(W.HandshakeBundle.commit(msg, gio, rto, None)).encode()
                n = self._attempt(attack, uri, hub_of_room(room), room, "a commit signed with another key")
                self._client_send(n, uri, ClientOp.update, room, body)
            elif attack == "after_removal" and not member and old:
                g = copy.deepcopy(old[-1])
                submit = W.SubmitMessageRequest(W.MLS10, self._current(g.protect(b"still here"), room),
                                                W.IdentifierUri(core.user_uri))
                n = self._attempt(attack, uri, hub_of_room(room), room,
                                  f"a message from its group of epoch {g.epoch} after its user was removed")
                self._client_send(n, uri, ClientOp.submit_message, room, submit.encode())
            elif attack == "reuse_key_package" and core.key_packages():
                kp = core.key_packages()[0]
                n = self._attempt(attack, uri, node.provider.domain, "", "republishes a KeyPackage it published")
                self._client_send(n, uri, ClientOp.upload_key_packages, "", encode_upload([kp]))
            elif attack == "read_after_removal" and not member and old:
                if removed is None:
                    removed = _Removed(copy.deepcopy(old[-1]))
                self._read_after_removal(removed, list(traffic.values()), uri, room)
            elif attack == "stale_epoch" and member and len(old) > 1:
                assert group is not None
                g = copy.deepcopy(old[0])
                body, _ = _commit_body(g)
                n = self._attempt(attack, uri, hub_of_room(room), room,
                                  f"a commit on epoch {old[0].epoch} (room at {group.epoch})")
                self._client_send(n, uri, ClientOp.update, room, body)

            elif attack == "forge_sender" and member:
                assert group is not None
                others = sorted(u for u in core.participants(room) if u != core.user_uri)
                if not others:
                    continue
                victim = others[0]
                forged += 1
                # Content in the victim's name, signed (MLS) with the attacker's
                # own leaf key: members must see the leaf is not the victim's.
                content = encode_mimi_content(MimiContent(rng.random_bytes(SALT_LEN), victim, room, "forged"))
                msg = group.protect(content, F.add_frank_aad(content))  # its real state: the generation is spent
                same = victim.split("/u/")[0] == core.user_uri.split("/u/")[0]
                claim = victim if forged % 2 == 0 and same else core.user_uri
                submit = W.SubmitMessageRequest(W.MLS10, msg, W.IdentifierUri(claim))
                n = self._attempt(attack, uri, hub_of_room(room), room,
                                  f"a message in {victim}'s name signed with its own key (sendingUri {claim})",
                                  receivers=(msg_id_of(msg.encode()), "no_delivery"))
                self._client_send(n, uri, ClientOp.submit_message, room, submit.encode())
            elif attack == "forge_leaf" and member:
                assert group is not None
                forged_msg = self._forge_leaf(group, core, room, rng)
                if forged_msg is None:
                    continue
                msg, victim = forged_msg
                submit = W.SubmitMessageRequest(W.MLS10, msg, W.IdentifierUri(core.user_uri))
                n = self._attempt(attack, uri, hub_of_room(room), room,
                                  f"a message encrypted as {victim}'s leaf, signed with its own key",
                                  receivers=(msg_id_of(msg.encode()), "no_delivery"))
                self._client_send(n, uri, ClientOp.submit_message, room, submit.encode())
            elif attack == "replay_message" and member and seen:
                msg = seen[-1]
                submit = W.SubmitMessageRequest(W.MLS10, msg, W.IdentifierUri(core.user_uri))
                mid = msg_id_of(msg.encode())
                n = self._attempt(attack, uri, hub_of_room(room), room,
                                  f"another member's application message {mid} submitted again as its own",
                                  receivers=(mid, "no_second_delivery"))
                self._client_send(n, uri, ClientOp.submit_message, room, submit.encode())
            elif attack == "old_epoch_state" and member and len(old) > 1:
                assert group is not None
                g = copy.deepcopy(old[0])
                stale_apps += 1
                content = encode_mimi_content(MimiContent(rng.random_bytes(SALT_LEN), core.user_uri, room, "old"))
                msg = g.protect(content, F.add_frank_aad(content))
                honest = stale_apps % 2 == 1
                if not honest:
                    msg = self._current(msg, room)  # claims the current epoch, encrypted under the old one
                submit = W.SubmitMessageRequest(W.MLS10, msg, W.IdentifierUri(core.user_uri))
                n = self._attempt(attack, uri, hub_of_room(room), room,
                                  f"a message from its kept state of epoch {g.epoch} (room at {group.epoch}), "
                                  f"header epoch {msg.body.epoch}",
                                  receivers=(msg_id_of(msg.encode()), "no_delivery"))
                self._client_send(n, uri, ClientOp.submit_message, room, submit.encode())

    @staticmethod
    def _forge_leaf(group: Group, core: ClientCore, room: str,
                    rng: Any) -> tuple[MLSMessage, str] | None:
        """An application message whose sender data names another member's
        leaf, encrypted with that leaf's ratchet (every member can derive
        every leaf's keys from the epoch's encryption secret: only the
        signature says who wrote it) and signed with the attacker's own key.
        A receiver that skips the signature check delivers it in the
        victim's name (content and credential agree).

        The generation is :data:`FORGE_GENERATION_SKIP` past the victim's
        next one as the attacker sees it, inside every receiver's
        skipped-key window: honest receivers refuse the forgery after
        decrypting it, and the victim's own next messages still find
        their keys (the attack probes authentication, not the burning of
        a generation; see docs/invariants.md)."""
        st = group.state
        victims = []
        for li, leaf in group.members():
            who = client_of_leaf(leaf)
            if li != group.own_leaf and who is not None and user_of_client(who) != core.user_uri:
                victims.append((li, who))
        if not victims:
            return None
        li, who = victims[0]
        user = user_of_client(who)
        content = encode_mimi_content(MimiContent(rng.random_bytes(SALT_LEN), user, room, "forged leaf"))
        fc = FramedContent(st.context.group_id, st.epoch, Sender.member(li), F.add_frank_aad(content),
                           ContentType.application, content, None, None)
        auth = framing.sign_content(st.suite, core.signature_priv, WireFormat.private_message, fc, st.context_bytes)
        tree = st.secret_tree.copy()
        for _ in range(FORGE_GENERATION_SKIP):
            tree.next_application(li)
        pm = framing.encrypt_private(st.suite, AuthenticatedContent(WireFormat.private_message, fc, auth), tree,
                                     st.secrets.sender_data_secret, rng)
        return MLSMessage.wrap(pm), user

    def _read_after_removal(self, r: _Removed, traffic: list[W.FanoutMessage], uri: str, room: str) -> None:
        """A removed member's best try at reading on: its last group state
        follows the room's commits as far as it can, *ignoring its own
        removal* (it processes the removing commit as if it sat at another
        member's leaf: the key schedule only needs its own leaf to decrypt
        the UpdatePath, which RFC 9420 s.12.4.2 encrypts to the members that
        remain), then tries the application messages of the epochs after
        its removal. One attempt per tick with new such messages: accepted
        if it reads one (the removal gave no forward secrecy), else refused
        (``lockedOut``)."""
        start = r.seen
        r.seen = len(traffic)
        tried: list[int] = []
        read = 0
        for fm in traffic[start:]:
            ep = epoch_of(fm.message)
            if ep is None:
                continue
            g = r.group
            if fm.kind == W.MessageKind.commit:
                if r.stuck is None and ep == g.epoch:
                    nxt, pretended = self._follow(g, fm.message)
                    if nxt is None:
                        r.stuck = g.epoch
                    else:
                        r.group = nxt
                        if pretended and r.removed_at is None:
                            r.removed_at = nxt.epoch
                continue
            # The first epoch it has no right to read: after the commit that
            # removed it (followed by pretending), or after the one it could not follow.
            first = r.removed_at if r.removed_at is not None else (r.stuck + 1 if r.stuck is not None else None)
            if first is None or ep < first:
                continue
            tried.append(ep)
            try:
                res = copy.deepcopy(g).process(fm.message)
            except MLSError:
                continue
            if isinstance(res, ApplicationMessage):
                read += 1
        if not tried:
            return
        where = (f"followed its removal into epoch {r.removed_at}" if r.removed_at is not None
                 else f"stuck at epoch {r.stuck}")
        n = self._attempt("read_after_removal", uri, hub_of_room(room), room,
                          f"its kept state ({where}) tries {len(tried)} "
                          f"message(s) of epochs {min(tried)}..{max(tried)}")
        w = self.world
        p = self.pending.pop(n)
        if read:
            w.trace.record(w.env.now, E.AdversaryAccepted(peer=p.peer, room=room, req_id=n, status="readAfterRemoval",
                                                          attack=p.attack, text=f"read {read} of them"), p.node)
        else:
            w.trace.record(w.env.now, E.AdversaryRejected(peer=p.peer, room=room, req_id=n, status="lockedOut",
                                                          attack=p.attack,
                                                          text=f"read none (could not follow the commit of epoch "
                                                          f"{r.stuck})" if r.stuck is not None else "read none"),
                           p.node)

    @staticmethod
    def _follow(g: Group, commit: MLSMessage) -> tuple[Group | None, bool]:
        """The next epoch of ``g`` after ``commit`` (None if it cannot be
        computed), and whether it took pretending: a commit that removes
        ``g``'s member is processed again from another remaining leaf (not
        the committer's)."""
        nxt = copy.deepcopy(g)
        try:
            res = nxt.process(commit)
        except MLSError:
            return None, False
        if not isinstance(res, StagedCommit):
            return None, False
        if not res.removed_self:
            try:
                nxt.merge(res)
            except MLSError:
                return None, False
            return nxt, False
        committer = res.sender.leaf_index
        for li, _ in g.members():
            if li in (g.own_leaf, committer) or li in res.outcome.removed:
                continue
            pretend = copy.deepcopy(g)
            pretend.state.own_leaf = li
            try:
                staged = pretend.process(commit)
            except MLSError:
                return None, False
            if not isinstance(staged, StagedCommit) or staged.state is None:
                return None, False
            pretend.merge(staged)
            return pretend, True
        return None, False

    def _current(self, msg: MLSMessage, room: str) -> MLSMessage:
        """Write the room's current epoch into a PrivateMessage's clear header
        (an attacker learns it from any GroupInfo or fanout), so the hub's
        refusal is about who sends, not about a stale epoch."""
        hub = self.world.providers[hub_of_room(room)].core.rooms.get(room)
        if hub is not None:
            msg.body.epoch = hub.epoch
        return msg

    # ---------------------------------------------------------------- state compromise

    def _compromise(self, spec: Any, index: int) -> Generator:
        """Capture the victim's group at each tick; feed every copy the
        room's traffic the victim's provider delivers to the victim."""
        w = self.world
        scn = w.scenario
        uri = scn.client(spec.client).uri
        room = scn.room_uri(spec.room)
        victim = w.clients[uri]
        mine: list[_Shadow] = []
        #: Application messages handed to the victim, (epoch, message), the
        #: last 64: what the forward-secrecy probe tries a captured state on.
        recorded: list[tuple[int, MLSMessage]] = []
        retention = scn.protocol.past_epoch_keys

        def feed(out: Outcome) -> None:
            for a in out.actions:
                if not (isinstance(a, Deliver) and a.client == uri and a.room == room):
                    continue
                try:
                    fm = W.FanoutMessage.decode(a.body)
                except Exception:  # noqa: BLE001 - not ours to judge
                    continue
                if fm.kind == W.MessageKind.application:
                    ep = epoch_of(fm.message)
                    if ep is not None:
                        recorded.append((ep, fm.message))
                        del recorded[:-64]
                for sh in mine:
                    self._shadow_step(sh, fm, victim.core, room)

        self._observe(victim.provider.domain, feed)
        for ev in self._ticks(spec, f"compromise:{index}"):
            if not isinstance(ev, int):
                yield ev
                continue
            g = victim.core.group(room)
            if g is None or not victim.core.is_member(room):
                continue
            leaf = g.tree.leaf(g.own_leaf)
            assert leaf is not None
            n = self._attempt("state_compromise", uri, uri, room,
                              f"captures {uri}'s state at epoch {g.epoch} and reads the room's later traffic")
            sh = _Shadow(n, copy.deepcopy(g), g.own_leaf, leaf.encryption_key, g.epoch)
            if g.pending is not None and g.pending.state is not None:
                mine_next = g.pending.state.tree.leaf(g.own_leaf)
                if mine_next is not None:
                    sh.pending_key = mine_next.encryption_key
            mine.append(sh)
            self.shadows.append(sh)
            self._forward_secrecy(uri, room, g, recorded, retention)

    def _forward_secrecy(self, uri: str, room: str, g: Group, recorded: list[tuple[int, MLSMessage]],
                         retention: int) -> None:
        """Forward secrecy probe: the state captured at epoch E may hold the
        secrets of the last ``retention`` past epochs (late messages), never
        older ones. Tried on the newest recorded message of each epoch older
        than E - ``retention`` (at most four epochs): a state that has deleted
        that epoch's secrets says ``WrongEpochError`` without opening anything;
        any other answer (the sender data opened and the key was spent, or the
        message read) means the epoch's secrets are still there (accepted).
        Messages the victim already read are useless to it whatever it keeps
        (their keys are spent), so what is judged is the deletion itself, seen
        through the one door an attacker has: the captured group's ``process``."""
        old: dict[int, MLSMessage] = {}
        for ep, m in recorded:
            if ep < g.epoch - retention:
                old[ep] = m
        if not old:
            return
        epochs = sorted(old)[-4:]
        n = self._attempt("forward_secrecy", uri, uri, room,
                          f"captures {uri}'s state at epoch {g.epoch} (keeps {retention} past epoch(s)) and "
                          f"tries messages of epochs {', '.join(map(str, epochs))}")
        probe = copy.deepcopy(g)
        held = []
        for ep in epochs:
            try:
                probe.process(old[ep])
            except WrongEpochError:
                continue
            except MLSError as e:
                held.append(f"{ep} ({e.code})")
                continue
            held.append(f"{ep} (read)")
        w = self.world
        p = self.pending.pop(n)
        if held:
            w.trace.record(w.env.now, E.AdversaryAccepted(peer=p.peer, room=room, req_id=n, status="pastEpochHeld",
                                                          attack=p.attack, text="secrets still held for epoch(s) "
                                                          + ", ".join(held)), p.node)
        else:
            w.trace.record(w.env.now, E.AdversaryRejected(peer=p.peer, room=room, req_id=n, status="deleted",
                                                          attack=p.attack, text="no secrets of those epochs"),
                           p.node)

    def _shadow_step(self, sh: _Shadow, fm: W.FanoutMessage, victim: ClientCore, room: str) -> None:
        """One delivery to a captured copy: follow a commit, or decrypt an
        application message (counted by whether the victim's leaf in the
        copy's view is still the captured one)."""
        if sh.locked_out is not None:
            return
        g = sh.group
        ep = epoch_of(fm.message) if fm.kind in (W.MessageKind.commit, W.MessageKind.application) else None
        if ep is None or ep < g.epoch:
            return
        if ep > g.epoch:
            # A commit it never saw came before. The victim's provider does not
            # hand a client its own commit back, so this is usually the
            # victim's update: its leaf in the victim's view of the next epoch.
            real = victim.group(room)
            nxt = None
            if real is not None:
                nxt = real.tree if real.epoch == g.epoch + 1 else real.past_tree(g.epoch + 1)
            leaf = nxt.leaf(sh.leaf) if nxt is not None and sh.leaf < nxt.n_leaves else None
            sh.locked_out = g.epoch
            sh.why = "update" if nxt is not None and (leaf is None or leaf.encryption_key not in (sh.key, sh.pending_key)) \
                else "gap"
            return
        own = False
        if fm.kind == W.MessageKind.commit:
            sender = fm.message.body.content.sender
            own = sender.sender_type == SenderType.member and sender.leaf_index == sh.leaf
        try:
            res = g.process(fm.message)
            if isinstance(res, StagedCommit):
                g.merge(res)
                return
        except Exception:  # noqa: BLE001 - a failure to read is what the attacker gets
            if fm.kind == W.MessageKind.commit:
                sh.locked_out, sh.why = g.epoch, "update" if own else "commit"
            return
        if isinstance(res, ApplicationMessage):
            leaf = g.tree.leaf(sh.leaf) if sh.leaf < g.tree.n_leaves else None
            if leaf is not None and leaf.encryption_key in (sh.key, sh.pending_key):
                sh.read_before += 1
            else:
                sh.read_after += 1

    # ---------------------------------------------------------------- malformed bodies

    def _malformed(self, spec: Any, index: int) -> Generator:
        w = self.world
        scn = w.scenario
        me = spec.provider
        gen = stream(w.seed, f"adversary:malformed:{index}")
        others = sorted(d for d in scn.providers if d != me)
        endpoints = [e for e in Endpoint if e != Endpoint.DIRECTORY]  # a GET without a body to corrupt
        rooms_of = {d: sorted(scn.room_uri(n) for n, r in scn.rooms.items() if r.hub == d) for d in others}
        users_of = {d: sorted(scn.user_uri(u) for u, s in scn.users.items() if s.provider == d) for d in others}
        node = w.providers[me]
        for ev in self._ticks(spec, f"malformed:{index}"):
            if not isinstance(ev, int):
                yield ev
                continue
            if not others or not node.up:
                continue
            ep = endpoints[ev % len(endpoints)]
            to = others[(ev // len(endpoints)) % len(others)]
            kind = ep.spec.param_kind.name
            if ep in (Endpoint.KEY_MATERIAL,):
                target = (users_of[to] or [f"mimi://{to}/u/nobody"])[0]
            elif ep == Endpoint.PROXY_DOWNLOAD:
                target = f"https://{to}/download/x"
            elif "DOMAIN" in kind:
                target = to
            else:
                target = (rooms_of[to] or [f"mimi://{to}/r/none"])[0]
            size = int(gen.integers(0, 400))
            body = gen.bytes(size) if ev % 3 else bytes(size)
            req = MimiRequest(ep, target, me, to, body)
            n = self._attempt("malformed", me, to, target if target.startswith("mimi://") and "/r/" in target else "",
                              f"{size} bytes of {'noise' if ev % 3 else 'zeros'} to {req.detail}")
            w.env.process(self._http(n, me, req, gen))

