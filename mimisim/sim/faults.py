"""The fault schedule of a run: fixed faults from the scenario plus random
ones drawn from its seed, expanded into one explicit, sorted list.

Expanding before the run (rather than drawing faults as the run goes) makes
the schedule a value: it goes into the manifest, a failing run can be
replayed with exactly its faults, and ``mimisim check`` can shrink it by
removing entries. Every fault gets an id (``F0``, ``F1``...) that its trace
events carry (``fault_id``; ``detail`` shows it too), and the end-of-run ``fault.effect`` row says
whether it bit (see :func:`fault_effects`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from mimisim.sim import scenario as S
from mimisim.sim.links import LatencyModel
from mimisim.sim.rng import stream

if TYPE_CHECKING:
    from mimisim.sim.trace import Trace


@dataclass(frozen=True)
class FaultEvent:
    """One concrete fault. ``end_ms`` is None for instantaneous faults
    (failover, restart) and for windows that last to the end of the run."""

    id: str
    kind: str  # crash | restart | failover | partition | degrade | offline
    at_ms: float
    end_ms: float | None = None
    node: str = ""  # provider (crash/restart/failover) or client URI (offline)
    state: str | None = None  # crash: durable | volatile (None: the provider's own)
    groups: tuple[tuple[str, ...], ...] = ()  # partition
    links: tuple[tuple[str, str], ...] | Literal["all"] = "all"  # degrade
    latency_factor: float = 1.0
    extra_latency_ms: float = 0.0
    extra_loss: float = 0.0
    origin: str = "schedule"  # schedule | random | outage | client

    def describe(self) -> str:
        if self.kind in ("crash", "restart", "failover", "offline"):
            what = self.node + (f" ({self.state})" if self.state else "")
        elif self.kind == "partition":
            what = " | ".join(",".join(g) for g in self.groups)
        else:
            links = self.links if isinstance(self.links, str) else " ".join(f"{a}<>{b}" for a, b in self.links)
            what = f"{links} x{self.latency_factor:g} +{self.extra_latency_ms:g}ms loss+{self.extra_loss:g}"
        return f"{self.id} {self.kind} {what}"

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["groups"] = [list(g) for g in self.groups]
        d["links"] = self.links if isinstance(self.links, str) else [list(p) for p in self.links]
        return d


@dataclass
class FaultPlan:
    faults: list[FaultEvent] = field(default_factory=list)

    def to_json(self) -> list[dict[str, Any]]:
        return [f.to_json() for f in self.faults]

    @classmethod
    def from_json(cls, items: list[dict[str, Any]]) -> FaultPlan:
        """The inverse of :meth:`to_json` (a manifest's ``faults`` list)."""
        out = []
        for d in items:
            d = dict(d)
            d["groups"] = tuple(tuple(g) for g in d.get("groups", ()))
            links = d.get("links", "all")
            d["links"] = links if isinstance(links, str) else tuple((a, b) for a, b in links)
            out.append(FaultEvent(**d))
        return cls(out)


def _sampler(dist: Any, gen: np.random.Generator, base_dir: Any) -> Any:
    model = LatencyModel.from_dict(S.dist_to_dict(dist, base_dir))
    return lambda: float(model.sample(gen))


def _poisson_times(gen: np.random.Generator, rate_per_s: float, start: float, stop: float) -> list[float]:
    """Event times (ms) of a Poisson process at ``rate_per_s`` in [start, stop)."""
    out: list[float] = []
    if rate_per_s <= 0:
        return out
    rate_per_ms = rate_per_s / 1000.0
    t = start
    while True:
        t += float(gen.exponential(1.0 / rate_per_ms))
        if t >= stop:
            return out
        out.append(t)


def _links(spec: list[str] | str) -> tuple[tuple[str, str], ...] | Literal["all"]:
    if spec == "all":
        return "all"
    out = []
    for key in spec:
        a, b, _ = S.parse_link_key(key)
        out.append((a, b))
    return tuple(out)


def _resolve_node(scn: S.Scenario, ref: str) -> str:
    if ref in scn.providers:
        return ref
    return scn.client(ref).uri


def expand(scn: S.Scenario, seed: int) -> FaultPlan:
    """All faults of a run, sorted by time (ties: schedule order, then random)."""
    end = float(scn.duration)
    items: list[tuple[float, int, dict[str, Any]]] = []
    order = 0

    def add(at: float, **kw: Any) -> None:
        nonlocal order
        items.append((at, order, kw))
        order += 1

    for f in scn.faults.schedule:
        dur = getattr(f, "duration", None)
        stop = None if dur is None else f.at + dur
        if f.kind == "crash":
            add(f.at, kind="crash", node=f.node, state=f.state, end_ms=stop)
        elif f.kind == "restart":
            add(f.at, kind="restart", node=f.node)
        elif f.kind == "failover":
            add(f.at, kind="failover", node=f.hub)
        elif f.kind == "partition":
            groups = tuple(tuple(sorted(_resolve_node(scn, n) for n in g)) for g in f.groups)
            add(f.at, kind="partition", groups=groups, end_ms=stop)
        elif f.kind == "degrade":
            add(f.at, kind="degrade", links=_links(f.links), latency_factor=f.latency_factor,
                extra_latency_ms=f.extra_latency, extra_loss=f.extra_loss, end_ms=stop)
        elif f.kind == "offline":
            add(f.at, kind="offline", node=_resolve_node(scn, f.client), end_ms=stop)

    # Client offline windows from the users section and access-profile outages.
    for c in scn.clients():
        for w in c.spec.offline:
            add(w.start, kind="offline", node=c.uri, end_ms=w.end, origin="client")
        profile = scn.network.access.get(c.spec.access)
        if profile is not None and profile.outages is not None:
            g = stream(seed, f"faults.outages:{c.uri}")
            every = _sampler(profile.outages.every, g, scn.base_dir)
            lasting = _sampler(profile.outages.lasting, g, scn.base_dir)
            t = 0.0
            while True:
                t += max(every(), 1.0)
                if t >= end:
                    break
                d = max(lasting(), 1.0)
                add(t, kind="offline", node=c.uri, end_ms=min(t + d, end), origin="outage")
                t += d

    rf = scn.faults.random
    if rf is not None:
        g = stream(seed if rf.seed is None else rf.seed, "faults.random")
        start = float(rf.start)
        stop = float(rf.stop) if rf.stop is not None else end
        providers = sorted(scn.providers)
        if rf.crash is not None:
            nodes = sorted(rf.crash.nodes or providers)
            dur = _sampler(rf.crash.duration, g, scn.base_dir)
            for t in _poisson_times(g, rf.crash.rate, start, stop):
                node = nodes[int(g.integers(len(nodes)))]
                add(t, kind="crash", node=node, state=rf.crash.state, end_ms=t + max(dur(), 1.0), origin="random")
        if rf.failover is not None:
            hubs = sorted(rf.failover.hubs or [d for d, p in scn.providers.items() if p.standby is not None])
            for t in _poisson_times(g, rf.failover.rate, start, stop):
                if hubs:
                    add(t, kind="failover", node=hubs[int(g.integers(len(hubs)))], origin="random")
        if rf.partition is not None:
            dur = _sampler(rf.partition.duration, g, scn.base_dir)
            for t in _poisson_times(g, rf.partition.rate, start, stop):
                # A random non-trivial cut of the providers: each goes left or right.
                if len(providers) < 2:
                    break
                while True:
                    side = g.integers(2, size=len(providers))
                    if 0 < int(side.sum()) < len(providers):
                        break
                left = tuple(p for p, s in zip(providers, side, strict=True) if s == 0)
                right = tuple(p for p, s in zip(providers, side, strict=True) if s == 1)
                add(t, kind="partition", groups=(left, right), end_ms=t + max(dur(), 1.0), origin="random")
        if rf.degrade is not None:
            dur = _sampler(rf.degrade.duration, g, scn.base_dir)
            for t in _poisson_times(g, rf.degrade.rate, start, stop):
                add(t, kind="degrade", links=_links(rf.degrade.links), latency_factor=rf.degrade.latency_factor,
                    extra_latency_ms=rf.degrade.extra_latency, extra_loss=rf.degrade.extra_loss,
                    end_ms=t + max(dur(), 1.0), origin="random")
        if rf.offline is not None:
            clients = sorted(_resolve_node(scn, c) for c in rf.offline.clients) if rf.offline.clients else sorted(
                c.uri for c in scn.clients())
            dur = _sampler(rf.offline.duration, g, scn.base_dir)
            for t in _poisson_times(g, rf.offline.rate, start, stop):
                if clients:
                    node = clients[int(g.integers(len(clients)))]
                    add(t, kind="offline", node=node, end_ms=t + max(dur(), 1.0), origin="random")

    items.sort(key=lambda x: (x[0], x[1]))
    faults = []
    for i, (at, _, kw) in enumerate(items):
        if kw.get("end_ms") is not None:
            kw["end_ms"] = min(float(kw["end_ms"]), end)
        faults.append(FaultEvent(id=f"F{i}", at_ms=float(at), **kw))
    return FaultPlan(faults)


def fault_effects(trace: Trace, plan: FaultPlan, end_ms: float) -> list[tuple[FaultEvent, int, str]]:
    """For each fault, how many messages it hit: drops it caused (partition,
    offline, crashed) in its window and involving its nodes, or, for a
    degradation, messages sent over its links while it lasted. Returns
    ``(fault, count, explanation)``."""
    kinds = trace.column("kind")
    ts = trace.column("t_ms")
    nodes = trace.column("node")
    peers = trace.column("peer")
    reasons = [r or "" for r in trace.column("reason")]  # net.drop's typed reason
    drops = [i for i, k in enumerate(kinds) if k == "net.drop"]
    sends = [i for i, k in enumerate(kinds) if k == "net.send"]
    out = []
    # A crash lasts until its node's next restart (or failover takeover).
    restarts: dict[str, list[float]] = {}
    for i, k in enumerate(kinds):
        if k == "fault.restart":
            restarts.setdefault(nodes[i], []).append(ts[i])
    for f in plan.faults:
        start = f.at_ms
        stop = f.end_ms if f.end_ms is not None else end_ms
        if f.kind in ("crash", "failover"):
            later = [t for t in restarts.get(f.node, []) if t >= start]
            stop = min(later) if later else end_ms
            n = sum(1 for i in drops if start <= ts[i] <= stop and reasons[i] == "crashed"
                    and (nodes[i] == f.node or peers[i] == f.node))
            out.append((f, n, f"{n} message(s) refused or lost while {f.node} was down"))
        elif f.kind == "restart":
            out.append((f, 0, "a restart affects nothing by itself"))
        elif f.kind == "offline":
            n = sum(1 for i in drops if start <= ts[i] <= stop and reasons[i] == "offline"
                    and (nodes[i] == f.node or peers[i] == f.node))
            out.append((f, n, f"{n} message(s) to or from {f.node} held back"))
        elif f.kind == "partition":
            n = sum(1 for i in drops if start <= ts[i] <= stop and reasons[i] == "partition")
            out.append((f, n, f"{n} message(s) dropped by the partition"))
        else:
            def covered(a: str, b: str, f: FaultEvent = f) -> bool:
                if f.links == "all":
                    return "://" not in a and "://" not in b
                return (a, b) in f.links or (b, a) in f.links

            n = sum(1 for i in sends if start <= ts[i] < stop and covered(nodes[i], peers[i]))
            out.append((f, n, f"{n} message(s) sent over the degraded links"))
    return out
