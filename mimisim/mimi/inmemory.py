"""A plain in-memory dispatcher for provider and client cores (no SimPy).

It carries out the cores' actions in FIFO order with zero latency, and
records every provider-to-provider request and response, so a test (or a
teacher) can run the draft's example flows step by step and compare the
sequence of requests with the draft's figures. Time only moves when the
caller advances it or when the queue is empty and a client timer is due.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any

from mimisim.events import TraceEvent
from mimisim.mimi.client import ClientCore, ClientStep
from mimisim.mimi.provider import ProviderCore
from mimisim.mimi.transport import ClientMessage, ClientReply, Deliver, Event, HttpReply, Outcome, SendRequest


@dataclass
class Exchange:
    """One provider-to-provider request and its response, as the log keeps them."""

    sender: str
    receiver: str
    detail: str
    status: int | None = None
    code: str = ""

    def __str__(self) -> str:
        return f"{self.sender}->{self.receiver}: {self.detail} -> {self.status} {self.code}".rstrip()


@dataclass
class InMemoryWorld:
    providers: dict[str, ProviderCore] = field(default_factory=dict)
    clients: dict[str, ClientCore] = field(default_factory=dict)
    now_ms: int = 0
    exchanges: list[Exchange] = field(default_factory=list)
    events: list[tuple[str, Event | TraceEvent]] = field(default_factory=list)
    delivered: list[tuple[str, Any]] = field(default_factory=list)
    _queue: deque = field(default_factory=deque)
    _timers: list[tuple[int, int, str, Any]] = field(default_factory=list)
    _inbound: dict[int, tuple[str, int, Exchange]] = field(default_factory=dict)
    _next_inbound: int = 1
    _timer_seq: int = 0
    drop_notify_to: set[str] = field(default_factory=set)

    def add_provider(self, p: ProviderCore) -> None:
        self.providers[p.domain] = p

    def add_client(self, c: ClientCore) -> None:
        self.clients[c.client_uri] = c

    # ------------------------------------------------------------ driving

    def client_step(self, client: str, step: ClientStep) -> None:
        """Feed a client's output (from calling one of its API methods) in."""
        self._absorb_client(client, step)
        self.run()

    def _absorb_client(self, client: str, step: ClientStep) -> None:
        for m in step.messages:
            self._queue.append(("client_msg", m))
        for t in step.timers:
            self._timer_seq += 1
            self._timers.append((t.at_ms, self._timer_seq, client, t.token))
        for e in step.events:
            self.events.append((client, e))
        for d in step.delivered:
            self.delivered.append((client, d))

    def _absorb(self, domain: str, out: Outcome, inbound_exchange: Exchange | None = None) -> None:
        for e in out.events:
            self.events.append((domain, e))
        for a in out.actions:
            self._queue.append(("action", domain, a))

    def run(self, advance_timers: bool = True) -> None:
        while True:
            while self._queue:
                self._step(self._queue.popleft())
            if not advance_timers or not self._timers:
                return
            self._timers.sort()
            at, _, client, token = self._timers.pop(0)
            self.now_ms = max(self.now_ms, at)
            self._absorb_client(client, self.clients[client].on_timer(token, self.now_ms))

    def _step(self, item: tuple) -> None:
        if item[0] == "client_msg":
            msg: ClientMessage = item[1]
            provider = self.providers[_domain(msg.client)]
            self._absorb(provider.domain, provider.handle_client(msg, self.now_ms))
            return
        _, domain, action = item
        if isinstance(action, SendRequest):
            self._send(domain, action)
        elif isinstance(action, HttpReply):
            sender, token, ex = self._inbound.pop(action.inbound)
            ex.status, ex.code = action.response.status, action.response.code
            self._absorb(sender, self.providers[sender].handle_response(token, action.response, self.now_ms))
        elif isinstance(action, ClientReply):
            c = self.clients.get(action.client)
            if c is not None:
                self._absorb_client(action.client, c.on_reply(action, self.now_ms))
        elif isinstance(action, Deliver):
            c = self.clients.get(action.client)
            if c is not None:
                self._absorb_client(action.client, c.on_deliver(action, self.now_ms))

    def _send(self, sender: str, action: SendRequest) -> None:
        req = action.request
        ex = Exchange(sender, req.host, req.detail)
        self.exchanges.append(ex)
        receiver = self.providers.get(req.host)
        if receiver is None or req.host in self.drop_notify_to:
            return
        inbound = self._next_inbound
        self._next_inbound += 1
        out = receiver.handle_request(req, sender, self.now_ms, inbound)
        if out.response is not None:
            ex.status, ex.code = out.response.status, out.response.code
            self._absorb(req.host, out)
            self._absorb(sender, self.providers[sender].handle_response(action.token, out.response, self.now_ms))
        else:
            self._inbound[inbound] = (sender, action.token, ex)
            self._absorb(req.host, out)

    # ------------------------------------------------------------ inspection

    def exchange_lines(self, since: int = 0) -> list[str]:
        return [f"{e.sender}->{e.receiver}: {e.detail}" for e in self.exchanges[since:]]


def _domain(uri: str) -> str:
    return uri[len("mimi://") :].split("/", 1)[0]
