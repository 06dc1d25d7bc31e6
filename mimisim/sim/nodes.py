"""Provider and client nodes: the sans-IO cores inside SimPy processes.

A :class:`ProviderNode` wraps one :class:`~mimisim.mimi.provider.ProviderCore`
and a :class:`ClientNode` one :class:`~mimisim.mimi.client.ClientCore`. The
nodes own everything the cores refuse to own: time, links, processing cost,
crashes. The cores are used unchanged; a real HTTPS server could host them
the same way.

**Processing cost.** A provider handles one input at a time (a SimPy
``Resource`` of capacity 1: its CPU). Each input costs
``per_request + per_byte * body bytes + per_signature * signatures +
per_hpke * HPKE operations``, where the signature and HPKE counts are the
operations the core really performed during the call (it returns them on
its output envelope, ``Outcome.crypto``), so the cost follows the protocol,
not a guess. Clients' processing is free (their devices are not the object of
study).

**The input is a transaction.** The core handles an input at once when the
CPU takes it up; its new state and the ``/notify`` requests it must send
(the outbox) are committed then. The response and the other actions leave
only after the processing time. A crash during that time loses the response
and the actions, but not the state or (with durable storage) the outbox: the
requester times out and retries, the followers still get their notifies.

**Crashes.** A crashed provider answers nothing and its exchanges stop.
``durable``: on restart it resends its outbox (every ``/notify`` not yet
answered with 201), in order, and resumes the deliveries queued for its
clients. ``volatile``: the outbox, the queued deliveries, the outstanding
requests and the notify dedup window are lost; rooms, key material and
routing survive (they are the provider's database). Clients whose requests
were in the crashed provider get a ``503 connection lost`` at once.

**Failover.** A hub with a standby can fail over: the primary stops and
after ``takeover`` the standby answers for the domain. ``sync``: the standby
has every input the primary committed (the same state, the same outbox).
``lag``: every input reaches the standby ``lag`` later (in order); at the
failover the standby rebuilds the core by replaying the inputs that had
arrived (the core is deterministic in its inputs and seeded randomness, so
the replay is exact; the log holds the typed inputs,
:data:`~mimisim.mimi.transport.CoreInput`), and every input in the lost
suffix that the hub had accepted (``Outcome.accepted``) is recorded as
``hub.lost``.

**Hooks.** A scenario actor (an adversary) acts through two declared hooks
of a :class:`ProviderNode`, never by replacing its methods:
``action_filter`` sees each outcome before its actions are carried out and
returns the actions to carry out; ``request_tap`` sees each inbound request.

**Client access.** The client-to-provider protocol is outside MIMI; it runs
over a reliable ordered connection (:class:`Stream`): a message lost on the
access link is retransmitted after a TCP-like timeout, a message for an
offline client waits at the provider until the client is back (store and
forward), and the receiver sees messages in the order they were sent.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import simpy

from mimisim import events as E
from mimisim.mimi.client import ClientCore, ClientStep
from mimisim.mimi.provider import ProviderCore
from mimisim.mimi.transport import (
    Action,
    ClientMessage,
    ClientReply,
    CoreInput,
    Deliver,
    FromClient,
    HttpReply,
    MimiRequest,
    MimiResponse,
    Outcome,
    PeerRequest,
    PeerResponse,
    SendRequest,
)
from mimisim.sim.http import ExchangeResult, RetryPolicy
from mimisim.sim.links import wire_size
from mimisim.sim.rng import stream

if TYPE_CHECKING:
    from mimisim.sim.trace import Trace
    from mimisim.sim.world import World

#: First retransmission timeout on an access link (RFC 6298's minimum is 1 s;
#: mobile stacks use ~200 ms), doubled per loss up to ``RTO_MAX_MS``.
RTO_MS = 200.0
RTO_MAX_MS = 8_000.0
#: How often a connection to a crashed provider is retried.
RECONNECT_MS = 500.0


# ====================================================================== access connections


def _record_core_event(trace: Trace, t: float, e: Any, node: str) -> None:
    """Record one event a core emitted: a typed :class:`mimisim.events.TraceEvent`,
    or (until every core emits those) the untyped ``transport.Event``."""
    if isinstance(e, E.TraceEvent):
        trace.record(t, e, node)
    else:
        trace.record(t, e.kind, node, peer=e.peer, room=e.room, epoch=e.epoch, msg_id=e.msg_id, status=e.status,
                     detail=e.detail)


class Stream:
    """One direction of a client's connection to its own provider: reliable,
    ordered, retransmitting (see the module docstring).

    ``sender_up`` / ``receiver_up`` say whether each end is running (a
    crashed provider neither sends nor accepts). :meth:`reset` drops what is
    queued or in flight (a volatile crash): the receiver then expects the
    next message sent after the reset.
    """

    def __init__(
        self,
        world: World,
        src: str,
        dst: str,
        on_arrive: Callable[[Any], None],
        sender_up: Callable[[], bool],
        receiver_up: Callable[[], bool],
    ) -> None:
        self.world = world
        self.src, self.dst = src, dst
        self.on_arrive = on_arrive
        self.sender_up, self.receiver_up = sender_up, receiver_up
        self.next_send = 0
        self.next_deliver = 0
        self.arrived: dict[int, Any] = {}
        self.generation = 0

    def send(self, item: Any, size: int, msg_id: str = "", detail: str = "") -> None:
        seq = self.next_send
        self.next_send += 1
        self.world.env.process(self._carry(seq, self.generation, item, size, msg_id, detail))

    def reset(self) -> int:
        """Forget everything queued or in flight; returns how many messages were lost."""
        lost = self.next_send - self.next_deliver
        self.generation += 1
        self.arrived.clear()
        self.next_deliver = self.next_send
        return lost

    def _carry(self, seq: int, gen: int, item: Any, size: int, msg_id: str, detail: str) -> Generator:
        w = self.world
        env, net, trace = w.env, w.network, w.trace
        rto = RTO_MS
        first = True
        while True:
            if gen != self.generation:
                return
            if not self.sender_up():
                yield env.timeout(RECONNECT_MS)
                continue
            now = env.now
            if first:
                trace.record(now, E.NetSend(peer=self.dst, msg_id=msg_id, size=size, stream_item=detail), self.src)
            arrivals = net.transmit(self.src, self.dst, now, size)
            if arrivals:
                yield env.timeout(max(0.0, min(a.at_ms for a in arrivals) - now))
                if gen != self.generation:
                    return
                if self.receiver_up():
                    trace.record(env.now, E.NetDeliver(peer=self.src, msg_id=msg_id, size=size, stream_item=detail),
                                 self.dst)
                    self.arrived[seq] = item
                    self._release()
                    return
                trace.record(env.now, E.NetDrop(peer=self.dst, msg_id=msg_id, size=size, stream_item=detail,
                                                reason="crashed"), self.src)
                wait = RECONNECT_MS
            else:
                reason = arrivals.drop_reason or "loss"
                trace.record(now, E.NetDrop(peer=self.dst, msg_id=msg_id, size=size, stream_item=detail,
                                            reason=reason, retransmission=not first), self.src)
                if reason in ("offline", "partition"):
                    wait = max(net.blocked_until(self.src, self.dst, now) - now, 1.0)
                else:
                    wait = rto
                    rto = min(rto * 2, RTO_MAX_MS)
            first = False
            yield env.timeout(wait)

    def _release(self) -> None:
        while self.next_deliver in self.arrived:
            item = self.arrived.pop(self.next_deliver)
            self.next_deliver += 1
            self.on_arrive(item)


# ====================================================================== clients


class ClientNode:
    """A client device: its core, its connection to its provider, its timers."""

    def __init__(self, world: World, core: ClientCore, provider: ProviderNode) -> None:
        self.world = world
        self.core = core
        self.uri = core.client_uri
        self.provider = provider
        # request id -> whether it reached the provider (then a crash loses it)
        self.outstanding: dict[int, bool] = {}
        # request id -> who takes its reply instead of the core (an adversary's own requests)
        self.intercept: dict[int, Callable[[ClientReply], None]] = {}
        self.uplink = Stream(world, self.uri, provider.domain, self._arrived_at_provider,
                             sender_up=lambda: True, receiver_up=lambda: provider.up)

    @property
    def now(self) -> int:
        return int(self.world.env.now)

    def call(self, fn: Callable[..., ClientStep], *args: Any) -> None:
        """Call the core (``fn(*args)``) and carry out its step, measuring
        the call's process CPU time when the scenario asks
        (``outputs.cpu_time``; :meth:`apply`)."""
        if not self.world.measure_cpu:
            self.apply(fn(*args))
            return
        t0 = time.process_time()
        step = fn(*args)
        self.apply(step, cpu_ms=(time.process_time() - t0) * 1000.0)

    def apply(self, step: ClientStep, cpu_ms: float | None = None) -> None:
        """Carry out what a core call produced. ``cpu_ms`` (measured by
        :meth:`call`) goes to the step's one MLS-cost event -- the commit it
        built or the epoch it processed from a commit or Welcome -- and to
        none when the step holds several (it cannot be split)."""
        w = self.world
        t = w.env.now
        events: list[Any] = list(step.events)
        if cpu_ms is not None:
            costed = [i for i, e in enumerate(events) if isinstance(e, E.ClientCommit)
                      or (isinstance(e, E.ClientEpoch) and e.via in ("commit", "welcome"))]
            if len(costed) == 1:
                events[costed[0]] = dataclasses.replace(events[costed[0]], cpu_ms=cpu_ms)
        for e in events:
            _record_core_event(w.trace, t, e, self.uri)
        for m in step.messages:
            self.outstanding[m.request_id] = False
            size = wire_size(len(m.body))
            w.trace.record(t, E.ClientSend(peer=self.provider.domain, room=m.room, req_id=m.request_id, size=size,
                                           request=m.op.value), self.uri)
            self.uplink.send(m, size, detail=m.op.value)
        for timer in step.timers:
            w.env.process(self._timer(timer.at_ms, timer.token))

    def _timer(self, at_ms: int, token: int) -> Generator:
        yield self.world.env.timeout(max(0.0, at_ms - self.world.env.now))
        self.call(self.core.on_timer, token, self.now)

    def _arrived_at_provider(self, msg: ClientMessage) -> None:
        if msg.request_id in self.outstanding:
            self.outstanding[msg.request_id] = True
        self.provider.on_client_message(msg)

    def on_reply(self, reply: ClientReply) -> None:
        hook = self.intercept.pop(reply.request_id, None)
        if hook is not None:
            hook(reply)
            return
        self.outstanding.pop(reply.request_id, None)
        self.call(self.core.on_reply, reply, self.now)

    def on_deliver(self, deliver: Deliver) -> None:
        self.call(self.core.on_deliver, deliver, self.now)

    def connection_lost(self, request_ids: list[int] | None = None) -> None:
        """The provider crashed: the requests it had received will never be
        answered; the client sees the connection drop (503) for each."""
        ids = sorted(r for r, reached in self.outstanding.items() if reached)
        if request_ids is not None:
            ids = sorted(set(ids) | {r for r in request_ids if r in self.outstanding})
        for rid in ids:
            self.on_reply(ClientReply(self.uri, rid, 503, b"", "connection lost"))


# ====================================================================== providers


@dataclass
class Cost:
    """The processing-cost model of one provider, in ms (see the module docstring)."""

    per_request: float = 0.0
    per_byte: float = 0.0
    per_signature: float = 0.0
    per_hpke: float = 0.0

    def of(self, body_bytes: int, signatures: int, hpke: int) -> float:
        return (self.per_request + self.per_byte * body_bytes + self.per_signature * signatures
                + self.per_hpke * hpke)


@dataclass(frozen=True)
class AbandonRequests:
    """Log entry of a crash: :meth:`ProviderCore.abandon_requests`."""

    keep_notify: bool


@dataclass(frozen=True)
class LoseSoftState:
    """Log entry of a volatile restart: :meth:`ProviderCore.lose_soft_state`."""


#: What a lagging standby replays: the core's inputs and the crash lifecycle calls.
LoggedInput = CoreInput | AbandonRequests | LoseSoftState


@dataclass
class LogEntry:
    """One input to a core, kept for a lagging standby's replay."""

    t_ms: float
    replicated_ms: float
    input: LoggedInput
    accepted: tuple[tuple[str, str, int], ...] = ()  # (room, msg_id, epoch) the hub accepted


#: An action filter: the outcome a core call produced -> the actions to carry out.
ActionFilter = Callable[[Outcome], Sequence[Action]]


class ProviderNode:
    """One provider in the world (see the module docstring)."""

    def __init__(
        self,
        world: World,
        core: ProviderCore,
        cost: Cost,
        *,
        make_core: Callable[[], ProviderCore],
        notify_policy: RetryPolicy,
        request_policy: RetryPolicy,
        state: str = "durable",
        standby: Any = None,
        lag_sampler: Callable[[], float] | None = None,
    ) -> None:
        self.world = world
        self.core = core
        self.domain = core.domain
        self.cost = cost
        self.make_core = make_core
        self.notify_policy = notify_policy
        self.request_policy = request_policy
        self.state = state
        self.standby = standby
        self.lag_sampler = lag_sampler
        self.up = True
        self.incarnation = 0
        self.cpu = simpy.Resource(world.env, capacity=1)
        self.gen = stream(world.seed, f"http:{self.domain}")
        # /notify requests not yet answered with 201, by core token (the outbox).
        self.outbox: dict[int, SendRequest] = {}
        # Per ordered key (one room's /notify stream to one follower): the
        # event that fires when the latest exchange of that stream ends; the
        # next one waits for it (SendRequest.ordered_key).
        self._stream_tail: dict[str, simpy.Event] = {}
        self.inbound_waiters: dict[int, simpy.Event] = {}
        self._next_inbound = 1
        self.downlinks: dict[str, Stream] = {}
        self.log: list[LogEntry] | None = [] if lag_sampler is not None else None
        self._last_replicated = 0.0
        self.busy_ms = 0.0
        self.inputs = 0
        #: Declared hooks (see the module docstring): None, or an adversary's.
        self.action_filter: ActionFilter | None = None
        self.request_tap: Callable[[MimiRequest, str], None] | None = None

    # ---------------------------------------------------------------- core calls

    def _alive(self, inc: int) -> Callable[[], bool]:
        return lambda: self.up and self.incarnation == inc

    def _call(self, inp: CoreInput, size: int = 0) -> tuple[Outcome, float]:
        """Feed one input to the core, record its events, and return the
        outcome and the processing time it costs."""
        w = self.world
        if w.measure_cpu:
            t0 = time.process_time()
            out = self.core.handle(inp)
            cpu_ms: float | None = (time.process_time() - t0) * 1000.0
        else:
            out, cpu_ms = self.core.handle(inp), None
        cost = self.cost.of(size, out.crypto.signatures, out.crypto.hpke)
        self.inputs += 1
        self.busy_ms += cost
        t = w.env.now
        for e in out.events:
            if cpu_ms is not None and isinstance(e, E.HubAccept) and e.message == "commit":
                e = dataclasses.replace(e, cpu_ms=cpu_ms)  # measured (outputs.cpu_time)
            _record_core_event(w.trace, t, e, self.domain)
        self._log(inp, tuple((a.room, a.msg_id, a.epoch) for a in out.accepted))
        for a in out.actions:
            if isinstance(a, SendRequest) and a.retry_until_done:
                self.outbox[a.token] = a
        return out, cost

    def _log(self, inp: LoggedInput, accepted: tuple[tuple[str, str, int], ...] = ()) -> None:
        if self.log is None or self.lag_sampler is None:
            return
        t = self.world.env.now
        self._last_replicated = max(self._last_replicated, t + self.lag_sampler())
        self.log.append(LogEntry(t, self._last_replicated, inp, accepted))

    def _perform(self, out: Outcome, inc: int) -> None:
        """Carry out a core outcome's actions (after its processing time),
        those the ``action_filter`` keeps when there is one."""
        # The filter sees every outcome, even one a crash has voided (as an
        # actor watching the node's output would).
        actions = out.actions if self.action_filter is None else self.action_filter(out)
        if inc != self.incarnation or not self.up:
            return
        for a in actions:
            if isinstance(a, SendRequest):
                if a.retry_until_done and a.token not in self.outbox:
                    continue  # the outbox lost it (volatile crash during the processing time)
                self._start_exchange(a, inc)
            elif isinstance(a, ClientReply):
                self._downlink(a.client, a, wire_size(len(a.body), "response"), "", "reply")
            elif isinstance(a, Deliver):
                self._downlink(a.client, a, wire_size(len(a.body), "request"), a.msg_id, "deliver")
            elif isinstance(a, HttpReply):
                ev = self.inbound_waiters.pop(a.inbound, None)
                if ev is not None and not ev.triggered:
                    ev.succeed(a.response)

    def _downlink(self, client: str, item: Any, size: int, msg_id: str, detail: str) -> None:
        node = self.world.clients.get(client)
        if node is None:
            return
        s = self.downlinks.get(client)
        if s is None:
            def arrive(x: Any, node: ClientNode = node) -> None:
                if isinstance(x, ClientReply):
                    node.on_reply(x)
                else:
                    node.on_deliver(x)

            s = Stream(self.world, self.domain, client, arrive, sender_up=lambda: self.up,
                       receiver_up=lambda: True)
            self.downlinks[client] = s
        s.send(item, size, msg_id, detail)

    # ---------------------------------------------------------------- inputs

    def serve(self, req: MimiRequest, peer: str, now: float) -> Generator[simpy.Event, Any, MimiResponse | None]:
        """The HTTP server: an inbound request from ``peer`` (the TLS identity)."""
        env = self.world.env
        if self.request_tap is not None:
            self.request_tap(req, peer)
        if not self.up:
            method, _, path = req.detail.partition(" ")
            self.world.trace.record(env.now, E.NetDrop(peer=self.domain, size=wire_size(len(req.body)), method=method,
                                                       path=path, response=False, reason="crashed"), peer)
            return None
        inc = self.incarnation
        waiter = None
        with self.cpu.request() as rq:
            yield rq
            if inc != self.incarnation:
                return None
            inbound = self._next_inbound
            self._next_inbound += 1
            out, cost = self._call(PeerRequest(req, peer, int(env.now), inbound), size=len(req.body))
            if out.response is None:
                waiter = env.event()
                self.inbound_waiters[inbound] = waiter
            yield env.timeout(cost)
        if inc != self.incarnation:
            return None
        self._perform(out, inc)
        if waiter is not None:
            resp = yield waiter
            return resp if inc == self.incarnation else None
        return out.response

    def on_client_message(self, msg: ClientMessage) -> None:
        self.world.env.process(self._client_message(msg))

    def _client_message(self, msg: ClientMessage) -> Generator:
        env = self.world.env
        inc = self.incarnation
        with self.cpu.request() as rq:
            yield rq
            if inc != self.incarnation:
                return
            out, cost = self._call(FromClient(msg, int(env.now)), size=len(msg.body))
            yield env.timeout(cost)
        self._perform(out, inc)

    def _start_exchange(self, action: SendRequest, inc: int) -> None:
        w = self.world
        req = action.request
        if action.retry_until_done:
            for mid in action.msg_ids:
                method, _, path = req.detail.partition(" ")
                w.trace.record(w.env.now, E.HubFanout(peer=req.host, room=action.room or req.target, msg_id=mid,
                                                      method=method,
                                                      path=path), self.domain)
        after: simpy.Event | None = None
        done: simpy.Event | None = None
        if action.ordered_key:
            after = self._stream_tail.get(action.ordered_key)
            done = w.env.event()
            self._stream_tail[action.ordered_key] = done
        w.env.process(self._ordered_exchange(action, inc, after, done))

    def _ordered_exchange(
        self, action: SendRequest, inc: int, after: simpy.Event | None, done: simpy.Event | None
    ) -> Generator[Any, Any, None]:
        """An exchange that starts once the previous one of its ordered stream
        has ended (201, or given up under a finite retry policy), and lets the
        next one go when it ends, whatever way it ends."""
        try:
            if after is not None and not after.triggered:
                yield after
            if inc != self.incarnation or not self.up:
                return
            yield from self._exchange(action, inc)
        finally:
            if done is not None and not done.triggered:
                done.succeed()

    def _exchange(self, action: SendRequest, inc: int) -> Generator[Any, Any, None]:
        w = self.world
        env = w.env
        policy = self.notify_policy if action.retry_until_done else self.request_policy
        mid = action.msg_ids[0] if action.msg_ids else ""
        result: ExchangeResult = yield w.fabric.exchange(self.domain, action.request, policy, self.gen, mid,
                                                         alive=self._alive(inc))
        if inc != self.incarnation or not self.up:
            return
        resp = result.response
        if resp is None:
            resp = MimiResponse(504, b"", "Gateway Timeout")
        if action.retry_until_done:
            if not action.done(resp):
                return  # gave up under a finite notify retry policy: the follower misses it
            self.outbox.pop(action.token, None)
        with self.cpu.request() as rq:
            yield rq
            if inc != self.incarnation:
                return
            out, cost = self._call(PeerResponse(action.token, resp, int(env.now)), size=len(resp.body))
            yield env.timeout(cost)
        self._perform(out, inc)

    # ---------------------------------------------------------------- faults

    def crash(self, state: str | None = None, *, why: str = "crash", fault_id: str | None = None,
              fault_kind: str | None = None) -> None:
        """Stop now. ``state`` (default: the provider's) says what survives;
        ``fault_id``/``fault_kind`` name the planned fault that caused it, if any."""
        if not self.up:
            return
        state = state or self.state
        w = self.world
        self.up = False
        self.incarnation += 1
        self._stream_tail = {}  # a restart resends the outbox in order, on fresh streams
        w.trace.record(w.env.now, E.FaultCrash(status=state, text=why, fault_id=fault_id, fault_kind=fault_kind),
                       self.domain)
        lost = self.core.abandon_requests(keep_notify=state == "durable")
        self._log(AbandonRequests(state == "durable"))
        for ev in self.inbound_waiters.values():
            if not ev.triggered:
                ev.succeed(None)
        self.inbound_waiters.clear()
        if state == "volatile":
            self.core.lose_soft_state()
            self._log(LoseSoftState())
            self.outbox.clear()
            for s in self.downlinks.values():
                s.reset()
        by_client: dict[str, list[int]] = {}
        for client, rid in lost:
            by_client.setdefault(client, []).append(rid)
        for uri in sorted(set(by_client) | {c for c, n in w.clients.items() if n.provider is self}):
            node = w.clients.get(uri)
            if node is not None:
                node.connection_lost(by_client.get(uri, []))

    def restart(self, *, why: str = "restart", fault_id: str | None = None, fault_kind: str | None = None) -> None:
        if self.up:
            return
        w = self.world
        self.up = True
        w.trace.record(w.env.now, E.FaultRestart(status=f"{len(self.outbox)} notify to resend", text=why,
                                                 notify_to_resend=len(self.outbox), fault_id=fault_id,
                                                 fault_kind=fault_kind), self.domain)
        inc = self.incarnation
        for token in sorted(self.outbox):
            self._start_exchange(self.outbox[token], inc)

    def failover(self, *, fault_id: str | None = None) -> None:
        """The hub fails; its standby takes the domain over after ``takeover``."""
        w = self.world
        if self.standby is None:
            raise ValueError(f"{self.domain} has no standby to fail over to")
        if not self.up:
            return
        mode = self.standby.replication
        if mode == "sync":
            self.crash("durable", why="failover (sync standby)", fault_id=fault_id, fault_kind="failover")
        else:
            self.crash("volatile", why="failover (lagging standby)", fault_id=fault_id, fault_kind="failover")
            self._replay(w.env.now, fault_id)
        w.env.process(self._takeover(float(self.standby.takeover), fault_id))

    def _takeover(self, delay: float, fault_id: str | None = None) -> Generator:
        yield self.world.env.timeout(delay)
        self.restart(why="standby takes over", fault_id=fault_id, fault_kind="failover")

    def _replay(self, at_ms: float, fault_id: str | None = None) -> None:
        """Rebuild the core from the inputs that reached the standby by ``at_ms``."""
        assert self.log is not None
        w = self.world
        core = self.make_core()
        outbox: dict[int, SendRequest] = {}
        applied = 0
        for entry in self.log:
            if entry.replicated_ms > at_ms:
                break
            applied += 1
            inp = entry.input
            if isinstance(inp, AbandonRequests):
                core.abandon_requests(keep_notify=inp.keep_notify)
                continue
            if isinstance(inp, LoseSoftState):
                core.lose_soft_state()
                continue
            out = core.handle(inp)
            for a in out.actions:
                if isinstance(a, SendRequest) and a.retry_until_done:
                    outbox[a.token] = a
            if isinstance(inp, PeerResponse):
                sent = outbox.get(inp.token)
                if sent is not None and sent.done(inp.response):
                    del outbox[inp.token]
        lost = self.log[applied:]
        for entry in lost:
            for room, mid, epoch in entry.accepted:
                w.trace.record(w.env.now, E.HubLost(room=room, epoch=None if epoch == -1 else epoch, msg_id=mid,
                                                    accepted_ms=entry.t_ms), self.domain)
        w.trace.record(w.env.now, E.FaultFailover(status="lag", replayed_inputs=applied, lost_inputs=len(lost),
                                                  fault_id=fault_id, fault_kind="failover"), self.domain)
        # The standby's log is the replayed prefix; its outbox what the prefix left unacknowledged.
        self.log = self.log[:applied]
        self.core = core
        self.outbox = outbox
