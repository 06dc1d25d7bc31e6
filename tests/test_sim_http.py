"""HTTP exchanges over simulated links: timing, timeouts, retries with
backoff, Retry-After, 201-until-done notify semantics, duplicates reaching
the server, determinism."""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

import simpy

from mimisim.mimi.endpoints import Endpoint
from mimisim.mimi.transport import MimiRequest, MimiResponse
from mimisim.sim.http import HttpFabric, RetryPolicy
from mimisim.sim.links import LatencyModel, LinkModel, LossModel
from mimisim.sim.network import Network, Partition
from mimisim.sim.rng import stream
from mimisim.sim.trace import Trace

ROOM = "mimi://a.example/r/clubhouse"


def _world(link: LinkModel, seed: int = 1) -> tuple[simpy.Environment, HttpFabric, Network]:
    env = simpy.Environment()
    net = Network(seed, default_link=link)
    net.add_provider("a.example")
    net.add_provider("b.example")
    return env, HttpFabric(env, net, Trace()), net


def _notify(body: bytes = b"x") -> MimiRequest:
    return MimiRequest(Endpoint.NOTIFY, ROOM, "a.example", "b.example", body)


def _server(env: simpy.Environment, log: list[tuple[float, bytes]], cost_ms: float = 1.0, status: int = 201) -> Any:
    def handle(req: MimiRequest, peer: str, now: float) -> Generator[simpy.Event, Any, MimiResponse | None]:
        yield env.timeout(cost_ms)
        log.append((now, req.body))
        return MimiResponse(status, b"", "Created" if status == 201 else str(status))

    return handle


def _run(env: simpy.Environment, proc: simpy.Process) -> Any:
    env.run(until=proc)
    return proc.value


def test_round_trip_time_is_two_latencies_plus_processing() -> None:
    env, fab, _ = _world(LinkModel(latency=LatencyModel.constant(40)))
    seen: list[tuple[float, bytes]] = []
    fab.servers["b.example"] = _server(env, seen, cost_ms=3)
    res = _run(env, fab.exchange("a.example", _notify(), RetryPolicy(), stream(1, "t")))
    assert res.response.status == 201 and res.attempts == 1 and not res.gave_up
    assert env.now == 83.0
    assert seen == [(40.0, b"x")]
    kinds = fab.trace.cols["kind"]
    assert kinds.count("http.request") == 1 and kinds.count("http.response") == 1


def test_retries_until_201_through_a_partition_and_duplicates_reach_server() -> None:
    env, fab, net = _world(LinkModel(latency=LatencyModel.constant(10)))
    net.partitions.append(Partition(0, 5_000, [{"a.example"}, {"b.example"}]))
    seen: list[tuple[float, bytes]] = []
    fab.servers["b.example"] = _server(env, seen)
    policy = RetryPolicy(timeout_ms=500, max_attempts=None, backoff_base_ms=100, jitter="none",
                         success_statuses=frozenset({201}))
    res = _run(env, fab.exchange("a.example", _notify(), policy, stream(1, "t")))
    assert res.response.status == 201 and res.attempts > 5
    assert len(seen) == 1 and seen[0][0] >= 5_000  # only after the heal
    assert fab.trace.cols["kind"].count("http.timeout") == res.attempts - 1


def test_gives_up_after_max_attempts_with_exponential_backoff() -> None:
    env, fab, _ = _world(LinkModel(latency=LatencyModel.constant(10), loss=LossModel.bernoulli(1.0)))
    policy = RetryPolicy(timeout_ms=100, max_attempts=4, backoff_base_ms=50, backoff_factor=2, jitter="none")
    res = _run(env, fab.exchange("a.example", _notify(), policy, stream(1, "t")))
    assert res.gave_up and res.attempts == 4 and res.response is None
    # 4 timeouts of 100 ms and backoffs of 50, 100, 200 ms between them.
    assert env.now == 4 * 100 + 50 + 100 + 200


def test_retry_after_is_honoured_on_503() -> None:
    env, fab, _ = _world(LinkModel(latency=LatencyModel.constant(5)))
    calls: list[float] = []

    def handle(req: MimiRequest, peer: str, now: float) -> Generator[simpy.Event, Any, MimiResponse | None]:
        yield env.timeout(0)
        calls.append(now)
        if len(calls) == 1:
            return MimiResponse(503, b"", "Service Unavailable", retry_after_ms=1_000)
        return MimiResponse(201, b"", "Created")

    fab.servers["b.example"] = handle
    policy = RetryPolicy(backoff_base_ms=10, jitter="none", success_statuses=frozenset({201}))
    res = _run(env, fab.exchange("a.example", _notify(), policy, stream(1, "t")))
    assert res.attempts == 2 and calls[1] - calls[0] >= 1_000


def test_duplicating_link_makes_the_server_see_copies_and_is_deterministic() -> None:
    def run(seed: int) -> tuple[list[Any], int]:
        env, fab, _ = _world(LinkModel(latency=LatencyModel.uniform(10, 50), duplicate_prob=0.3), seed)
        seen: list[tuple[float, bytes]] = []
        fab.servers["b.example"] = _server(env, seen)
        gen = stream(seed, "t")
        procs = [fab.exchange("a.example", _notify(bytes([i])), RetryPolicy(), gen) for i in range(200)]
        env.run(until=simpy.AllOf(env, procs))
        return fab.trace.cols["t_ms"], len(seen)

    t1, n1 = run(3)
    t2, n2 = run(3)
    t3, _ = run(4)
    assert t1 == t2 and n1 == n2
    assert t1 != t3
    assert 200 + 30 < n1 < 200 + 100  # ~30% of requests duplicated on the way in
