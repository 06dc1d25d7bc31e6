"""Simulator benchmark: wall-time throughput of the SimPy world at 100, 1,000
and 10,000 clients.

Run: ``python benchmarks/bench_sim.py [--sizes 100,1000,10000] [--sim-minutes 10]
[--skip-transport] [--profile/--no-profile] [--budget-s 600] [--no-isolate]``
(a tiny size is also collected by ``python -m pytest -m slow tests/test_bench_sim.py``).

Two kinds of run, on the same shape and the same network model:

* ``transport``: HTTP exchanges over the network model alone
  (:class:`~mimisim.sim.http.HttpFabric` over :class:`~mimisim.sim.network.Network`,
  clients on the same reliable access connections as the world), with
  trivial server handlers and no protocol cores: a message goes from the
  sender's client to its provider, by ``/submitMessage`` to the hub, by one
  ``/notify`` per follower provider, and down to every other member client.
  Bodies have fixed sizes close to the protocol run's.
* ``protocol``: the real thing, :class:`~mimisim.sim.world.World` on a
  generated scenario (real MLS groups, real MIMI bodies, hub and followers),
  with the setup phase (KeyPackage uploads, rooms created by adding their
  users one at a time) followed by the workload.

Shape at N clients (one client per user): ``max(3, N // 50)`` providers,
``max(2, N // 10)`` rooms; room sizes cycle through 5..15 (mean 10), each
user is in exactly one room, rooms are filled from a seeded shuffle of the
users (so a room spans many providers), the hub of a room is the provider
of its first member (its creator). Workload: 6 messages/min per room
(200 B plaintext) and 0.2 Update commits/min per room, from ``WARMUP_S``.

Figures per run: trace rows (simulated events) per second of wall time,
application messages (``client.submit`` rows) and deliveries
(``client.deliver`` rows) per second of wall time, wall time (the run,
plus building the world), the steady-state rate after the setup phase,
peak memory as ``resource.getrusage().ru_maxrss`` of a fresh process per
run (``--no-isolate``: of this process), and with ``--profile`` a second,
identical run under cProfile whose ``tottime`` is attributed by file:
SimPy (the ``simpy`` package), crypto (the ``cryptography`` package,
``mimisim/mls/crypto.py`` and ``mimisim/mls/hpke.py``), and the rest. Time
inside a built-in (C) function is attributed to the file of the Python
function that called it, edge by edge (so ``Ed25519PrivateKey.sign`` called
from ``crypto.py`` is crypto, ``list.append`` from ``trace.py`` is the rest).

Reference convention: every ratio is against a run measured in the same
invocation (the smallest size of each kind; the transport run at the same
size), never against a figure from another machine.

``--budget-s``: before a protocol run, its wall time (the profiled rerun
included) is estimated from the previous size, linearly in clients; if it
would exceed the budget, that size runs for fewer simulated minutes and the
output says so.
"""

from __future__ import annotations

import argparse
import cProfile
import multiprocessing as mp
import os
import pstats
import random
import re
import resource
import statistics
import sys
import time
import types
from collections.abc import Generator
from dataclasses import dataclass, field
from typing import Any

import simpy

from mimisim.mimi.endpoints import Endpoint
from mimisim.mimi.transport import MimiRequest, MimiResponse
from mimisim.sim import scenario as S
from mimisim.sim.http import HttpFabric, RetryPolicy
from mimisim.sim.links import LinkModel, wire_size
from mimisim.sim.network import Network
from mimisim.sim.nodes import Stream
from mimisim.sim.rng import stream
from mimisim.sim.scenario import load_scenario_text
from mimisim.sim.trace import Trace
from mimisim.sim.world import World

SEED = 1
#: Messages per minute per room, their plaintext size, Update commits per minute per room.
MSG_PER_MIN = 6.0
MSG_SIZE = 200
UPDATES_PER_MIN = 0.2
#: When the workload starts (the protocol run's setup happens before), capped at a quarter of the run.
WARMUP_S = 30.0
#: Request bodies of the transport run (bytes): about an encoded SubmitMessageRequest and
#: FanoutMessage carrying one 200 B PrivateMessage in the protocol run, and the response bodies.
SUBMIT_BODY = 420
NOTIFY_BODY = 460
SUBMIT_RESPONSE_BODY = 40
CLIENT_REPLY_BODY = 40
#: Provider processing cost (both runs): per request, per body byte; the protocol run adds
#: per signature and per HPKE operation (counted by the core).
COST = {"per_request": 0.5, "per_byte": 2e-6, "per_signature": 0.1, "per_hpke": 0.2}
KINDS = ("transport", "protocol")
#: Files counted as crypto besides the ``cryptography`` package: the MLS crypto layer, and the
#: standard library's HMAC and hashlib wrappers (HKDF and hashing run through them).
CRYPTO_FILES = ("mimisim/mls/crypto.py", "mimisim/mls/hpke.py", "/hmac.py", "/hashlib.py")


# ====================================================================== shape


@dataclass(frozen=True)
class Shape:
    clients: int
    providers: list[str]
    users: list[tuple[str, str, str]]  # (user, provider, access profile)
    rooms: dict[str, list[str]]  # room -> member users, creator first
    hubs: dict[str, str]  # room -> hub domain

    def spread(self) -> str:
        sizes = [len(m) for m in self.rooms.values()]
        prov = {u: p for u, p, _ in self.users}
        span = [len({prov[u] for u in m}) for m in self.rooms.values()]
        return (f"{self.clients} clients (one per user), {len(self.providers)} providers, {len(self.rooms)} rooms; "
                f"members per room min/median/max {min(sizes)}/{statistics.median(sizes):g}/{max(sizes)}; "
                f"providers per room {min(span)}/{statistics.median(span):g}/{max(span)}")


def make_shape(n: int, seed: int = SEED) -> Shape:
    """The benchmark's world at ``n`` clients (see the module docstring)."""
    if n < 4:
        raise ValueError("at least 4 clients")
    n_prov = max(3, n // 50)
    n_rooms = max(2, n // 10)
    providers = [f"p{i:03d}.example" for i in range(n_prov)]
    users = [(f"u{i:05d}", providers[i % n_prov], "mobile" if i % 3 == 0 else "wifi") for i in range(n)]
    sizes = [5 + (r * 7) % 11 for r in range(n_rooms)]  # 5..15, mean 10 over each 11 rooms
    r = 0
    while sum(sizes) != n:  # even out to exactly n, keeping every room at 2 members or more
        if sum(sizes) < n:
            sizes[r % n_rooms] += 1
        elif sizes[r % n_rooms] > 2:
            sizes[r % n_rooms] -= 1
        r += 1
    order = [u for u, _, _ in users]
    random.Random(f"bench-sim {seed} {n}").shuffle(order)
    prov = {u: p for u, p, _ in users}
    rooms: dict[str, list[str]] = {}
    hubs: dict[str, str] = {}
    at = 0
    for i, size in enumerate(sizes):
        name = f"room{i:04d}"
        rooms[name] = order[at:at + size]
        hubs[name] = prov[rooms[name][0]]
        at += size
    return Shape(n, providers, users, rooms, hubs)


def warmup_s(sim_s: float) -> float:
    return min(WARMUP_S, sim_s / 4)


def scenario_yaml(shape: Shape, sim_s: float, seed: int = SEED) -> str:
    """The protocol run's scenario (and the transport run's network) as YAML text."""
    cost = ", ".join(f"{k}: {v * 1e6:g}ns" for k, v in COST.items())
    out = [f"name: bench-sim-{shape.clients}", f"seed: {seed}", f"duration: {sim_s:g}s", "providers:"]
    out += [f"  {p}: {{cost: {{{cost}}}}}" for p in shape.providers]
    out.append("users:")
    out += [f"  {u}: {{provider: {p}, clients: {{d{u[1:]}: {{access: {a}}}}}}}" for u, p, a in shape.users]
    out.append("rooms:")
    for room, members in shape.rooms.items():
        parts = ", ".join(f"{u}: {'group_admin' if i == 0 else 'ordinary_user'}" for i, u in enumerate(members))
        out += [f"  {room}:", f"    hub: {shape.hubs[room]}", f"    participants: {{{parts}}}"]
    start = warmup_s(sim_s)
    out += f"""network:
  default:
    latency: {{kind: constant, value: 40ms}}
    jitter: 10ms
    loss: {{kind: bernoulli, p: 0.01}}
  access:
    wifi:
      latency: {{kind: uniform, low: 5ms, high: 15ms}}
    mobile:
      latency: {{kind: lognormal, median: 60ms, sigma: 0.5}}
      loss: 0.5%
      bandwidth: 10Mbit/s
workload:
  messages: {{rate: {MSG_PER_MIN:g}/min, size: {MSG_SIZE}B, start: {start:g}s}}
  updates: {{rate: {UPDATES_PER_MIN:g}/min, start: {start:g}s}}
outputs: {{progress: never, trace: false}}
""".splitlines()
    return "\n".join(out) + "\n"


# ====================================================================== results


@dataclass
class Result:
    kind: str
    clients: int
    spread: str
    sim_s: float
    warmup_s: float
    events: int
    messages: int  # client.submit rows
    deliveries: int  # client.deliver rows
    build_s: float  # building the world (scenario parsing included)
    wall_s: float  # the run
    setup_wall_s: float  # the run up to the workload start
    setup_events: int
    maxrss_mib: float
    baseline_rss_mib: float  # ru_maxrss before building
    counts: dict[str, int] = field(default_factory=dict)
    profile: dict[str, Any] | None = None
    note: str = ""

    @property
    def events_per_s(self) -> float:
        return self.events / self.wall_s

    @property
    def messages_per_s(self) -> float:
        return self.messages / self.wall_s

    @property
    def deliveries_per_s(self) -> float:
        return self.deliveries / self.wall_s

    @property
    def steady_events_per_s(self) -> float:
        wall = self.wall_s - self.setup_wall_s
        return (self.events - self.setup_events) / wall if wall > 0 else float("nan")


def _maxrss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


def _marker(env: simpy.Environment, at_ms: float, trace: Trace, into: dict[str, float]) -> Generator:
    """Notes the wall clock and the trace length when simulated time reaches ``at_ms``.
    It records no trace row and draws nothing, so the run is unchanged."""
    yield env.timeout(at_ms)
    into["wall"] = time.perf_counter()
    into["events"] = len(trace)


# ====================================================================== transport run


def _request_policy(rp: S.RequestPolicy, *, notify: bool) -> RetryPolicy:
    b = rp.retry.backoff
    return RetryPolicy(
        timeout_ms=float(rp.timeout), max_attempts=rp.retry.max_attempts, backoff_base_ms=float(b.base),
        backoff_factor=float(b.factor), backoff_cap_ms=float(b.cap), jitter=b.jitter,
        honour_retry_after=rp.retry.honour_retry_after, success_statuses=frozenset({201}) if notify else None,
    )


class TransportRun:
    """The transport benchmark's world: network, fabric, access connections, trivial servers."""

    def __init__(self, shape: Shape, sim_s: float, seed: int = SEED) -> None:
        scn = load_scenario_text(scenario_yaml(shape, sim_s, seed), f"bench-sim-{shape.clients}")
        self.scn, self.shape, self.seed, self.sim_s = scn, shape, seed, sim_s
        self.env = env = simpy.Environment()
        self.trace = trace = Trace()
        base = scn.base_dir
        net = Network(seed, default_link=LinkModel.from_dict(scn.network.default.to_link_dict(base)),
                      on_event=lambda ev: None)
        for p in shape.providers:
            net.add_provider(p)
        for name in scn.network.access:
            up, down = scn.access(name)
            net.add_profile(name, LinkModel.from_dict(up.to_link_dict(base)),
                            LinkModel.from_dict(down.to_link_dict(base)))
        self.net = net
        self.fabric = HttpFabric(env, net, trace)
        self.submit_policy = _request_policy(scn.protocol.requests, notify=False)
        self.notify_policy = _request_policy(scn.protocol.notify, notify=True)
        world = types.SimpleNamespace(env=env, network=net, trace=trace)  # what a Stream needs
        up_ = lambda: True  # noqa: E731
        self.client_of = {u: f"mimi://{p}/d/{u}/d{u[1:]}" for u, p, _ in shape.users}
        self.provider_of = {u: p for u, p, _ in shape.users}
        self.uplink: dict[str, Stream] = {}
        self.downlink: dict[str, Stream] = {}
        for u, p, access in shape.users:
            c = self.client_of[u]
            net.add_client(c, p, access)
            self.uplink[c] = Stream(world, c, p, self._at_provider, up_, up_)  # type: ignore[arg-type]
            self.downlink[c] = Stream(world, p, c, lambda item, c=c: self._at_client(c, item),  # type: ignore[arg-type]
                                      up_, up_)
        # room -> follower provider -> its member clients; and the hub's own member clients
        self.room_uri = {r: scn.room_uri(r) for r in shape.rooms}
        self.local: dict[tuple[str, str], list[str]] = {}
        for r, members in shape.rooms.items():
            for u in members:
                self.local.setdefault((self.room_uri[r], self.provider_of[u]), []).append(self.client_of[u])
        self.followers = {
            self.room_uri[r]: sorted({self.provider_of[u] for u in m} - {shape.hubs[r]}) for r, m in shape.rooms.items()
        }
        self.hub_of = {self.room_uri[r]: shape.hubs[r] for r in shape.rooms}
        self.members = {self.room_uri[r]: [self.client_of[u] for u in m] for r, m in shape.rooms.items()}
        self.seen: dict[str, set[str]] = {p: set() for p in shape.providers}  # notify dedup per provider
        self.gen = {p: stream(seed, f"bench:http:{p}") for p in shape.providers}
        for p in shape.providers:
            self.fabric.servers[p] = self._serve
        self.n_msg = 0
        self.sender_of: dict[str, str] = {}

    def _cost(self, body: int) -> float:
        return COST["per_request"] + COST["per_byte"] * body

    # A message travels as (what, room, msg_id, sender client); the body sizes stand for its encoding.

    def _poisson(self, room: str) -> Generator:
        env = self.env
        gen = stream(self.seed, f"bench:messages:{room}")
        mean = 60_000.0 / MSG_PER_MIN
        t = warmup_s(self.sim_s) * 1000.0
        members = self.members[room]
        while True:
            t += float(gen.exponential(mean))
            if t >= self.sim_s * 1000.0:
                return
            yield env.timeout(t - env.now)
            sender = members[int(gen.integers(len(members)))]
            self.n_msg += 1
            msg_id = f"m{self.n_msg}"
            self.sender_of[msg_id] = sender
            self.trace.record(env.now, "client.submit", sender, room=room, msg_id=msg_id, size=MSG_SIZE)
            size = wire_size(SUBMIT_BODY)
            self.trace.record(env.now, "client.send", sender, peer=self.net.provider_of(sender), room=room,
                              size=size, detail="submit")
            self.uplink[sender].send(("submit", room, msg_id, sender), size, msg_id=msg_id, detail="submit")

    def _at_provider(self, item: tuple[str, str, str, str]) -> None:
        _, room, msg_id, sender = item
        self.env.process(self._submit(room, msg_id, sender))

    def _submit(self, room: str, msg_id: str, sender: str) -> Generator:
        env = self.env
        prov = self.net.provider_of(sender)
        hub = self.hub_of[room]
        if prov == hub:
            yield env.timeout(self._cost(SUBMIT_BODY))
            self._fanout(room, msg_id, sender)
        else:
            req = MimiRequest(Endpoint.SUBMIT_MESSAGE, room, prov, hub, bytes(SUBMIT_BODY), txn_id=msg_id)
            yield self.fabric.exchange(prov, req, self.submit_policy, self.gen[prov], msg_id)
        self.downlink[sender].send(("reply", room, msg_id, sender), wire_size(CLIENT_REPLY_BODY, "response"),
                                   msg_id=msg_id, detail="reply")

    def _serve(self, req: MimiRequest, peer: str, now: float) -> Generator[simpy.Event, Any, MimiResponse | None]:
        env = self.env
        yield env.timeout(self._cost(len(req.body)))
        room, msg_id = req.target, req.txn_id
        seen = self.seen[req.host]
        first = msg_id not in seen  # a retried request reaches the server twice: act once
        seen.add(msg_id)
        if req.endpoint is Endpoint.SUBMIT_MESSAGE:
            if first:
                self._fanout(room, msg_id, self.sender_of[msg_id])
            return MimiResponse(200, bytes(SUBMIT_RESPONSE_BODY), "OK")
        if first:
            self._deliver_local(room, req.host, msg_id, self.sender_of[msg_id])
        return MimiResponse(201, b"", "Created")

    def _fanout(self, room: str, msg_id: str, sender: str) -> None:
        hub = self.hub_of[room]
        self.trace.record(self.env.now, "hub.accept", hub, room=room, msg_id=msg_id, detail="application")
        for f in self.followers[room]:
            self.trace.record(self.env.now, "hub.fanout", hub, peer=f, room=room, msg_id=msg_id)
            req = MimiRequest(Endpoint.NOTIFY, room, hub, f, bytes(NOTIFY_BODY), txn_id=msg_id)
            self.fabric.exchange(hub, req, self.notify_policy, self.gen[hub], msg_id)
        self._deliver_local(room, hub, msg_id, sender)

    def _deliver_local(self, room: str, provider: str, msg_id: str, sender: str) -> None:
        size = wire_size(NOTIFY_BODY, "response")
        for c in self.local.get((room, provider), ()):
            if c != sender:
                self.downlink[c].send(("deliver", room, msg_id, sender), size, msg_id=msg_id, detail="deliver")

    def _at_client(self, client: str, item: tuple[str, str, str, str]) -> None:
        what, room, msg_id, _ = item
        if what == "deliver":
            self.trace.record(self.env.now, "client.deliver", client, room=room, msg_id=msg_id, size=MSG_SIZE)

    def run(self, marker: dict[str, float]) -> float:
        t0 = time.perf_counter()
        env = self.env
        self.trace.record(0.0, "run.start", detail=f"transport bench {self.shape.clients} clients")
        for room in self.members:
            env.process(self._poisson(room))
        env.process(_marker(env, warmup_s(self.sim_s) * 1000.0, self.trace, marker))
        env.run(until=self.sim_s * 1000.0)
        self.trace.record(self.sim_s * 1000.0, "run.end", detail=f"{len(self.trace)} events")
        return time.perf_counter() - t0


# ====================================================================== one measurement


def _run_once(kind: str, n: int, sim_s: float, seed: int, prof: cProfile.Profile | None) -> Result:
    base_rss = _maxrss_mib()
    shape = make_shape(n, seed)
    marker: dict[str, float] = {}
    t0 = time.perf_counter()
    if kind == "transport":
        tr = TransportRun(shape, sim_s, seed)
        build = time.perf_counter() - t0
        if prof is not None:
            prof.enable()
        t1 = time.perf_counter()
        tr.run(marker)
        wall = time.perf_counter() - t1
        trace = tr.trace
    else:
        scn = load_scenario_text(scenario_yaml(shape, sim_s, seed), f"bench-sim-{n}")
        world = World(scn, seed)
        build = time.perf_counter() - t0
        world.env.process(_marker(world.env, warmup_s(sim_s) * 1000.0, world.trace, marker))
        if prof is not None:
            prof.enable()
        t1 = time.perf_counter()
        world.run(progress=False)
        wall = time.perf_counter() - t1
        trace = world.trace
    if prof is not None:
        prof.disable()
    counts = trace.counts()
    return Result(
        kind=kind, clients=n, spread=shape.spread(), sim_s=sim_s, warmup_s=warmup_s(sim_s), events=len(trace),
        messages=counts.get("client.submit", 0), deliveries=counts.get("client.deliver", 0), build_s=build,
        wall_s=wall, setup_wall_s=marker.get("wall", t1) - t1, setup_events=int(marker.get("events", 0)),
        maxrss_mib=_maxrss_mib(), baseline_rss_mib=base_rss, counts=counts,
    )


def measure(kind: str, n: int, sim_s: float, seed: int = SEED, profile: bool = False) -> Result:
    """One run (and with ``profile`` a second, identical one under cProfile) in this process."""
    res = _run_once(kind, n, sim_s, seed, None)
    if profile:
        prof = cProfile.Profile()
        again = _run_once(kind, n, sim_s, seed, prof)
        if again.events != res.events:
            raise AssertionError(f"profiled rerun differs: {again.events} events, first run {res.events}")
        res.profile = attribute(prof)
        res.profile["wall_s"] = again.wall_s
    return res


def _measure_child(kind: str, n: int, sim_s: float, seed: int, profile: bool) -> Result:
    if profile:  # the profiled rerun in its own process too, so that it does not raise the peak
        res = _measure_child(kind, n, sim_s, seed, False)
        ctx = mp.get_context("spawn")
        with ctx.Pool(1) as pool:
            prof_res: Result = pool.apply(measure, (kind, n, sim_s, seed, True))
        if prof_res.events != res.events:
            raise AssertionError(f"rerun differs: {prof_res.events} events, first run {res.events}")
        res.profile = prof_res.profile
        return res
    ctx = mp.get_context("spawn")
    with ctx.Pool(1) as pool:
        return pool.apply(measure, (kind, n, sim_s, seed, False))


# ====================================================================== profile attribution


def category(filename: str) -> str:
    f = filename.replace("\\", "/")
    if "/simpy/" in f:
        return "simpy"
    if "/cryptography/" in f or f.endswith(CRYPTO_FILES):
        return "crypto"
    return "rest"


def _short(filename: str) -> str:
    f = filename.replace("\\", "/")
    for cut in ("/site-packages/", "/work/main/"):
        if cut in f:
            return f.split(cut, 1)[1]
    return re.sub(r"^.*/lib/python3\.\d+/", "", f)


def attribute(prof: cProfile.Profile) -> dict[str, Any]:
    """Profiled ``tottime`` by category and by file (built-ins go to their callers' files)."""
    st = pstats.Stats(prof)
    by_file: dict[str, float] = {}
    builtin_unattributed = 0.0
    for func, (_cc, _nc, tt, _ct, callers) in st.stats.items():  # type: ignore[attr-defined]
        fname, _line, name = func
        if fname != "~":
            by_file[fname] = by_file.get(fname, 0.0) + tt
            continue
        if "cryptography" in name:  # a method of a cryptography Rust object
            by_file["<cryptography built-ins>/cryptography/"] = by_file.get(
                "<cryptography built-ins>/cryptography/", 0.0) + tt
            continue
        edges = [(c[0], e[2]) for c, e in callers.items()]
        total = sum(t for _, t in edges)
        if total <= 0:
            builtin_unattributed += tt
            by_file["<built-ins>"] = by_file.get("<built-ins>", 0.0) + tt
            continue
        for caller_file, t in edges:
            key = caller_file if caller_file != "~" else "<built-ins>"
            by_file[key] = by_file.get(key, 0.0) + tt * t / total
    total = sum(by_file.values())
    cats = {"simpy": 0.0, "crypto": 0.0, "rest": 0.0}
    for f, t in by_file.items():
        cats[category(f)] += t
    top = sorted(((t, f) for f, t in by_file.items()), reverse=True)[:8]
    funcs = sorted(((v[2], k) for k, v in st.stats.items()), reverse=True)[:8]  # type: ignore[attr-defined]
    return {
        "total_s": total,
        "share": {k: v / total for k, v in cats.items()} if total else cats,
        "top": [(_short(f), t / total) for t, f in top] if total else [],
        "top_funcs": [(f"{_short(fn)}:{line}({name})" if fn != "~" else name, t / total, st.stats[(fn, line, name)][1])  # type: ignore[attr-defined]
                      for t, (fn, line, name) in funcs] if total else [],
    }


# ====================================================================== budget


def plan_sim_s(
    prev: Result | None, n: int, sim_s: float, budget_s: float | None, profile: bool
) -> tuple[float, bool, str]:
    """The simulated seconds for a protocol run at ``n`` clients that fit the budget, whether to
    profile it (the profiled rerun is dropped first if even one simulated minute would not fit
    with it), and a note saying what was cut."""
    if prev is None or budget_s is None or prev.clients >= n:
        return sim_s, profile, ""
    scale = n / prev.clients * 1.2  # linear in clients, with a margin
    setup = (prev.build_s + prev.setup_wall_s) * scale
    steady_sim = prev.sim_s - prev.warmup_s
    per_sim_s = (prev.wall_s - prev.setup_wall_s) / steady_sim * scale if steady_sim > 0 else 0.0

    def est(t: float, factor: float) -> float:
        return (setup + per_sim_s * (t - warmup_s(t))) * factor

    def fit(factor: float) -> float:
        room = budget_s / factor - setup
        t = 30.0 * int((room / per_sim_s + WARMUP_S) / 30.0) if per_sim_s > 0 and room > 0 else 60.0
        return max(60.0, min(sim_s, t))

    factor = 1.0
    if profile and prev.profile is not None:
        factor += (prev.profile["wall_s"] + prev.build_s) / (prev.wall_s + prev.build_s)
    if est(sim_s, factor) <= budget_s:
        return sim_s, profile, ""
    cut: list[str] = []
    if factor > 1.0 and est(60.0, factor) > budget_s:
        cut.append(f"not profiled (the profiled rerun, {factor - 1:.2f}x the run at {prev.clients} clients, "
                   f"would not fit the budget even at 1 simulated min)")
        profile, factor = False, 1.0
    t = fit(factor)
    if t < sim_s:
        cut.append(f"simulated {t / 60:g} min instead of {sim_s / 60:g}")
    note = ("; ".join(cut) + f": estimated {est(sim_s, 1.0):.0f} s of wall time for the unprofiled run at "
            f"{sim_s / 60:g} min (linear in clients from the {prev.clients}-client run, +20%) against a "
            f"budget of {budget_s:.0f} s per size; estimate for what runs: {est(t, factor):.0f} s")
    return t, profile, note


# ====================================================================== report


def report(results: list[Result], profile: bool, isolate: bool) -> str:
    lines: list[str] = []
    mem = ("peak RSS = ru_maxrss of a fresh process per run (spawned; 'base' is its ru_maxrss after imports)"
           if isolate else "peak RSS = ru_maxrss of this process so far (not isolated)")
    lines.append(f"seed {SEED}; workload {MSG_PER_MIN:g} msg/min/room ({MSG_SIZE} B), {UPDATES_PER_MIN:g} "
                 f"Update commits/min/room (protocol run only), from min(30 s, duration/4); {mem}")
    sizes = sorted({r.clients for r in results})
    for n in sizes:
        r = next(r for r in results if r.clients == n)
        lines.append(f"shape {n}: {r.spread}")
    hdr = (f"{'kind':9} {'clients':>7} {'sim s':>6} {'events':>9} {'msgs':>7} {'deliv':>8} {'build s':>8} "
           f"{'wall s':>8} {'ev/s':>8} {'steady ev/s':>11} {'msg/s':>7} {'deliv/s':>8} {'peak MiB':>9} {'base':>5}")
    lines += ["", hdr]
    for r in results:
        lines.append(
            f"{r.kind:9} {r.clients:>7} {r.sim_s:>6g} {r.events:>9} {r.messages:>7} {r.deliveries:>8} "
            f"{r.build_s:>8.2f} {r.wall_s:>8.2f} {r.events_per_s:>8.0f} {r.steady_events_per_s:>11.0f} "
            f"{r.messages_per_s:>7.1f} {r.deliveries_per_s:>8.1f} {r.maxrss_mib:>9.0f} {r.baseline_rss_mib:>5.0f}"
        )
    notes = [f"  {r.kind} {r.clients}: {r.note}" for r in results if r.note]
    if notes:
        lines += ["", "notes:", *notes]
    lines += ["", "setup phase (protocol: KeyPackages, rooms built one add at a time) vs workload:"]
    for r in results:
        per_msg = r.deliveries / r.messages if r.messages else float("nan")
        lines.append(
            f"  {r.kind:9} {r.clients:>6}: setup {r.setup_events} events in {r.setup_wall_s:.2f} s wall; "
            f"workload {r.events - r.setup_events} events in {r.wall_s - r.setup_wall_s:.2f} s; "
            f"deliveries per message {per_msg:.2f}; commits {r.counts.get('client.commit', 0)}, "
            f"http requests {r.counts.get('http.request', 0)}, retries {r.counts.get('http.retry', 0)}"
        )
    lines += ["", "ratios against runs of this invocation (events/s, msg/s; > 1 is faster):"]
    for kind in KINDS:
        runs = [r for r in results if r.kind == kind]
        if not runs:
            continue
        ref = runs[0]
        for r in runs:
            lines.append(
                f"  {kind:9} {r.clients:>6} vs {kind} {ref.clients}: ev/s x{r.events_per_s / ref.events_per_s:.3f}, "
                f"msg/s per client x{(r.messages_per_s / r.clients) / (ref.messages_per_s / ref.clients):.3f}, "
                f"wall per sim-second per client x{(r.wall_s / r.sim_s / r.clients) / (ref.wall_s / ref.sim_s / ref.clients):.3f}"
            )
    for r in results:
        if r.kind != "protocol":
            continue
        t = next((x for x in results if x.kind == "transport" and x.clients == r.clients), None)
        if t is not None and t.sim_s == r.sim_s:
            lines.append(f"  protocol {r.clients:>6} vs transport {t.clients}: ev/s x{r.events_per_s / t.events_per_s:.3f}, "
                         f"msg/s x{r.messages_per_s / t.messages_per_s:.3f}, wall x{r.wall_s / t.wall_s:.2f}")
    if profile:
        lines += ["", "cProfile tottime shares of the run (world building excluded), from a second identical run "
                  "under the profiler;", "built-ins count for their callers' files; crypto = cryptography package, "
                  "mimisim/mls/crypto.py, hpke.py, stdlib hmac.py/hashlib.py:"]
        for r in results:
            if r.profile is None:
                continue
            sh = r.profile["share"]
            lines.append(
                f"  {r.kind:9} {r.clients:>6}: SimPy {sh['simpy'] * 100:5.1f}%  crypto {sh['crypto'] * 100:5.1f}%  "
                f"rest {sh['rest'] * 100:5.1f}%   (profiled run {r.profile['wall_s']:.1f} s wall, "
                f"{r.profile['wall_s'] / r.wall_s:.2f}x unprofiled)"
            )
            lines.append("      top files: " + ", ".join(f"{f} {s * 100:.1f}%" for f, s in r.profile["top"]))
            lines.append("      top functions (own time, calls): " + ", ".join(
                f"{f} {s * 100:.1f}% {c}" for f, s, c in r.profile["top_funcs"]))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    ap.add_argument("--sizes", default="100,1000,10000")
    ap.add_argument("--sim-minutes", type=float, default=10.0)
    ap.add_argument("--skip-transport", action="store_true")
    ap.add_argument("--profile", action=argparse.BooleanOptionalAction, default=True)
    ap.add_argument("--budget-s", type=float, default=600.0,
                    help="wall-time budget per protocol size (0: none); see the module docstring")
    ap.add_argument("--isolate", action=argparse.BooleanOptionalAction, default=True,
                    help="each run in a fresh process (clean peak memory)")
    args = ap.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",")]
    sim_s = args.sim_minutes * 60.0
    kinds = [k for k in KINDS if not (k == "transport" and args.skip_transport)]
    results: list[Result] = []
    load0 = os.getloadavg()
    for kind in kinds:
        prev: Result | None = None
        for n in sizes:
            this_s, prof, note = sim_s, args.profile, ""
            if kind == "protocol":
                this_s, prof, note = plan_sim_s(prev, n, sim_s, args.budget_s or None, args.profile)
            print(f"... {kind} {n} clients, {this_s / 60:g} simulated min{' (+ profiled rerun)' if prof else ''}"
                  + (f"; {note}" if note else ""), file=sys.stderr, flush=True)
            if args.isolate:
                r = _measure_child(kind, n, this_s, SEED, prof)
            else:
                r = measure(kind, n, this_s, SEED, prof)
            r.note = note
            print(f"    {r.events} events, {r.messages} messages, {r.deliveries} deliveries, build {r.build_s:.2f} s, "
                  f"wall {r.wall_s:.2f} s, {r.events_per_s:.0f} ev/s, {r.messages_per_s:.1f} msg/s, "
                  f"peak RSS {r.maxrss_mib:.0f} MiB" + (f", shares {r.profile['share']}" if r.profile else ""),
                  file=sys.stderr, flush=True)
            results.append(r)
            prev = r
    load = os.getloadavg()
    print(f"python {sys.version.split()[0]}, simpy {simpy.__version__}, {os.cpu_count()} CPUs; "
          f"load average at start {load0[0]:.2f}, at end {load[0]:.2f} (other processes share the CPUs); "
          f"command: {' '.join(sys.argv)}")
    print(report(results, args.profile, args.isolate))


if __name__ == "__main__":
    main()
