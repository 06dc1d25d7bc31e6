"""HTTP exchanges between providers over the simulated network, in SimPy.

One exchange = a request travelling over the sender's link to the receiver,
the receiver's handling (which takes simulated time), and the response
travelling back over the reverse link, each on its own path with its own
loss, delay and duplication. The sender waits up to a timeout, then retries
under a :class:`RetryPolicy` (attempt limit, exponential backoff with
jitter, ``Retry-After`` honoured). A duplicated request is handled twice by
the receiver, as a real server would see it; that is what the follower's
notify deduplication exists for.

The hub's ``/notify`` fanout is pipelined: each request is its own exchange,
started in order, without waiting for the previous answer, and retried until
it gets 201 (``success_statuses={201}``). Reordering under loss is therefore
possible and is left to the receivers (clients detect and fill epoch gaps).

Why hand-written: SimPy has no HTTP model, and the protocol semantics here
(201-until-done, Retry-After, duplicates reaching the server) are the object
of study, so they must be explicit.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import simpy

from mimisim import events as E
from mimisim.mimi.transport import MimiRequest, MimiResponse
from mimisim.sim.links import wire_size
from mimisim.sim.network import Network
from mimisim.sim.trace import Trace

# A server: (request, peer domain, now_ms) -> SimPy generator returning the
# response, or None when the node cannot answer (crashed, or chose silence).
Handler = Callable[[MimiRequest, str, float], Generator[simpy.Event, Any, MimiResponse | None]]


def _endpoint(req: MimiRequest) -> tuple[str, str]:
    """``(method, path)`` of a request, as its ``detail`` (``METHOD /path``) writes them."""
    method, _, path = req.detail.partition(" ")
    return method, path


@dataclass(frozen=True)
class RetryPolicy:
    """When to give up and how long to wait between attempts."""

    timeout_ms: float = 2_000.0
    max_attempts: int | None = 5  # None: until a success status
    backoff_base_ms: float = 100.0
    backoff_factor: float = 2.0
    backoff_cap_ms: float = 30_000.0
    jitter: str = "full"  # none | full | equal
    honour_retry_after: bool = True
    success_statuses: frozenset[int] | None = None  # None: any status < 500 ends the exchange

    def done(self, status: int) -> bool:
        if self.success_statuses is not None:
            return status in self.success_statuses
        return status < 500

    def backoff_ms(self, attempt: int, gen: np.random.Generator, retry_after_ms: float | None = None) -> float:
        """Wait before attempt ``attempt + 1`` (attempts count from 1)."""
        wait = min(self.backoff_cap_ms, self.backoff_base_ms * self.backoff_factor ** (attempt - 1))
        if self.jitter == "full":
            wait = float(gen.uniform(0.0, wait))
        elif self.jitter == "equal":
            wait = wait / 2 + float(gen.uniform(0.0, wait / 2))
        if self.honour_retry_after and retry_after_ms is not None:
            wait = max(wait, retry_after_ms)
        return wait


@dataclass
class ExchangeResult:
    response: MimiResponse | None
    attempts: int
    gave_up: bool


@dataclass
class HttpFabric:
    """Carries requests between the nodes of one :class:`Network`."""

    env: simpy.Environment
    network: Network
    trace: Trace
    servers: dict[str, Handler] = field(default_factory=dict)
    _next_req: int = 0

    def exchange(
        self, src: str, req: MimiRequest, policy: RetryPolicy, gen: np.random.Generator, msg_id: str = "",
        alive: Callable[[], bool] | None = None,
    ) -> simpy.Process:
        """Start an exchange; the process's value is an :class:`ExchangeResult`.

        ``alive`` says whether the sender still exists (it returns False once
        the sending node crashed): the exchange then stops at its next step,
        without another attempt, and returns ``gave_up``. A copy already on
        the wire still arrives, as it would."""
        return self.env.process(self._exchange(src, req, policy, gen, msg_id, alive))

    def _exchange(
        self, src: str, req: MimiRequest, policy: RetryPolicy, gen: np.random.Generator, msg_id: str,
        alive: Callable[[], bool] | None = None,
    ) -> Generator[simpy.Event, Any, ExchangeResult]:
        attempt = 0
        method, path = _endpoint(req)
        last: MimiResponse | None = None
        while True:
            if alive is not None and not alive():
                return ExchangeResult(None, attempt, True)
            attempt += 1
            self._next_req += 1
            req_id = self._next_req
            cls = E.HttpRequest if attempt == 1 else E.HttpRetry
            self.trace.record(self.env.now, cls(peer=req.host, msg_id=msg_id, req_id=req_id, size=len(req.body),
                                                method=method, path=path, attempt=attempt), src)
            answered = self.env.event()
            self._send_request(src, req, req_id, answered, msg_id)
            timeout = self.env.timeout(policy.timeout_ms)
            yield answered | timeout
            if alive is not None and not alive():
                return ExchangeResult(None, attempt, True)
            if answered.triggered:
                last = answered.value
                assert last is not None
                self.trace.record(self.env.now, E.HttpResponse(
                    peer=req.host, msg_id=msg_id, req_id=req_id, size=len(last.body),
                    status=last.code or str(last.status), method=method, path=path, attempt=attempt,
                    http_status=last.status, response_code=last.code or None), src)
                if policy.done(last.status):
                    return ExchangeResult(last, attempt, False)
                retry_after = last.retry_after_ms
            else:
                self.trace.record(self.env.now, E.HttpTimeout(peer=req.host, msg_id=msg_id, req_id=req_id,
                                                              method=method, path=path, attempt=attempt), src)
                retry_after = None
            if policy.max_attempts is not None and attempt >= policy.max_attempts:
                self.trace.record(self.env.now, E.HttpGiveup(peer=req.host, msg_id=msg_id, req_id=req_id,
                                                             method=method, path=path, attempt=attempt), src)
                return ExchangeResult(last, attempt, True)
            yield self.env.timeout(policy.backoff_ms(attempt, gen, retry_after))

    def _send_request(self, src: str, req: MimiRequest, req_id: int, answered: simpy.Event, msg_id: str) -> None:
        dst = req.host
        size = wire_size(len(req.body), "request")
        method, path = _endpoint(req)
        self.trace.record(self.env.now, E.NetSend(peer=dst, msg_id=msg_id, req_id=req_id, size=size,
                                                  method=method, path=path, response=False), src)
        arrivals = self.network.transmit(src, dst, self.env.now, size)
        if not arrivals:
            self.trace.record(self.env.now, E.NetDrop(
                peer=dst, msg_id=msg_id, req_id=req_id, size=size, method=method, path=path, response=False,
                reason=arrivals.drop_reason or "loss"), src)
        for arr in arrivals:
            self.env.process(self._serve(src, req, req_id, arr.at_ms, arr.duplicate, answered, msg_id))

    def _serve(
        self, src: str, req: MimiRequest, req_id: int, at_ms: float, duplicate: bool,
        answered: simpy.Event, msg_id: str,
    ) -> Generator[simpy.Event, Any, None]:
        dst = req.host
        yield self.env.timeout(max(0.0, at_ms - self.env.now))
        size = wire_size(len(req.body), "request")
        method, path = _endpoint(req)
        cls = E.NetDuplicate if duplicate else E.NetDeliver
        self.trace.record(self.env.now, cls(peer=src, msg_id=msg_id, req_id=req_id, size=size, method=method,
                                            path=path, response=False), dst)
        handler = self.servers.get(dst)
        if handler is None:
            return
        response = yield from handler(req, src, self.env.now)
        if response is None:
            return
        rsize = wire_size(len(response.body), "response")
        self.trace.record(self.env.now, E.NetSend(
            peer=src, msg_id=msg_id, req_id=req_id, size=rsize, status=response.code or str(response.status),
            method=method, path=path, response=True), dst)
        arrivals = self.network.transmit(dst, src, self.env.now, rsize)
        if not arrivals:
            self.trace.record(self.env.now, E.NetDrop(
                peer=src, msg_id=msg_id, req_id=req_id, size=rsize, method=method, path=path, response=True,
                reason=arrivals.drop_reason or "loss"), dst)
        for arr in arrivals:
            self.env.process(self._respond(arr.at_ms, arr.duplicate, response, answered, src, dst, req_id, msg_id,
                                           req))

    def _respond(
        self, at_ms: float, duplicate: bool, response: MimiResponse, answered: simpy.Event,
        src: str, dst: str, req_id: int, msg_id: str, req: MimiRequest,
    ) -> Generator[simpy.Event, Any, None]:
        yield self.env.timeout(max(0.0, at_ms - self.env.now))
        rsize = wire_size(len(response.body), "response")
        method, path = _endpoint(req)
        cls = E.NetDuplicate if duplicate else E.NetDeliver
        self.trace.record(self.env.now, cls(peer=dst, msg_id=msg_id, req_id=req_id, size=rsize, method=method,
                                            path=path, response=True), src)
        if not answered.triggered:
            answered.succeed(response)
