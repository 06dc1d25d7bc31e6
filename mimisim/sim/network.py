"""The network of providers and clients: who is linked to whom, with which
link model per direction, and the fault schedule (partitions, degradations,
offline windows) that overrides the links for a while.

Pure like :mod:`mimisim.sim.links`: no SimPy here. The SimPy layer asks
:meth:`Network.transmit` for the arrival times of a message and schedules
them; it records the fault transitions from :meth:`Network.fault_schedule`
at their times. Keeping the network a plain object lets the tests check
partition windows to the millisecond without running an environment.

Topology (a networkx ``DiGraph``, one edge per direction, each edge carrying
its own :class:`~mimisim.sim.links.LinkModel` with its own state):

- providers form a full mesh, every direction a fresh copy of the default
  provider link unless overridden with :meth:`Network.set_link`;
- each client has an access link to and from its own provider only (the
  client-to-provider protocol is the provider's business; MIMI is between
  providers), with its own profile: a named pair (uplink, downlink).

Randomness: every directed link draws from its own stream,
``stream(root_seed, "link:<src>><dst>")``, so adding a node, a link or a
fault never shifts the draws of an unrelated link.

Fault semantics (chosen to match what a cut wire does):

- **Partition** ``[start, end)``: nodes in different groups cannot talk. A
  message is dropped if the partition is active when it is sent *or* starts
  while the message is in flight (each copy is judged by its own arrival
  time). A client not named in any group is in its provider's group; a
  provider not named is in the implicit group of all unnamed providers.
- **Offline** ``[start, end)`` for a node: every message from or to it that
  is sent, or would arrive, inside the window is dropped.
- **Degradation** ``[start, end)``: links sent on while it is active get
  their latency draws multiplied by ``latency_factor`` (plus
  ``extra_latency_ms``) and an extra independent loss ``extra_loss``. Several
  active degradations compose: factors multiply, survival probabilities
  multiply.

Drops are reported as :class:`NetEvent` (kind ``net.drop``, detail the reason
``offline`` | ``partition`` | ``loss`` | ``queue``) to the ``on_event``
callback, or kept in :attr:`Network.events` when there is none.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import networkx as nx
import numpy as np

from mimisim.sim.links import Arrival, LinkModel
from mimisim.sim.rng import stream

__all__ = [
    "Degradation",
    "NetEvent",
    "Network",
    "NoLink",
    "OfflineWindow",
    "Partition",
    "link_stream_name",
]

NodeKind = Literal["provider", "client"]


def link_stream_name(src: str, dst: str) -> str:
    """The rng stream name of the direction ``src -> dst``."""
    return f"link:{src}>{dst}"


class Transmission(list[Arrival]):
    """What :meth:`Network.transmit` returns: the arrivals (a list, empty
    when the message was dropped) and, when dropped, why (``drop_reason``:
    ``offline``, ``partition``, ``loss``, ``queue``...). The reason travels
    with the result, so a caller never reads it back from the network."""

    def __init__(self, arrivals: Iterable[Arrival] = (), drop_reason: str | None = None) -> None:
        super().__init__(arrivals)
        self.drop_reason = drop_reason


class NoLink(KeyError):
    """``transmit`` between nodes with no direct link (e.g. a client and a
    provider other than its own)."""


def _check_window(start_ms: float, end_ms: float) -> None:
    if not (start_ms <= end_ms):
        raise ValueError(f"fault window needs start_ms <= end_ms, got {start_ms}, {end_ms}")


def _overlaps(start_ms: float, end_ms: float, t0: float, t1: float) -> bool:
    """Whether [start, end) meets the closed flight interval [t0, t1]."""
    return start_ms <= t1 and t0 < end_ms


@dataclass(frozen=True)
class Partition:
    """While ``start_ms <= t < end_ms``, nodes in different ``groups`` cannot
    exchange messages."""

    start_ms: float
    end_ms: float
    groups: Sequence[frozenset[str] | set[str]]

    def __post_init__(self) -> None:
        _check_window(self.start_ms, self.end_ms)
        frozen = tuple(frozenset(g) for g in self.groups)
        seen: set[str] = set()
        for g in frozen:
            if seen & g:
                raise ValueError(f"partition groups overlap: {sorted(seen & g)}")
            seen |= g
        object.__setattr__(self, "groups", frozen)

    def describe(self) -> str:
        return " | ".join(",".join(sorted(g)) for g in self.groups)


@dataclass(frozen=True)
class Degradation:
    """While active, the chosen links (both directions of each ``(a, b)``
    pair, or ``'all'``) are slower and lossier."""

    start_ms: float
    end_ms: float
    links: Sequence[tuple[str, str]] | Literal["all"] = "all"
    latency_factor: float = 1.0
    extra_loss: float = 0.0
    extra_latency_ms: float = 0.0

    def __post_init__(self) -> None:
        _check_window(self.start_ms, self.end_ms)
        if self.latency_factor < 0 or self.extra_latency_ms < 0:
            raise ValueError("degradation latency_factor and extra_latency_ms must be >= 0")
        if not 0.0 <= self.extra_loss <= 1.0:
            raise ValueError(f"degradation extra_loss must be in [0, 1], got {self.extra_loss}")
        if self.links != "all":
            object.__setattr__(self, "links", tuple((str(a), str(b)) for a, b in self.links))

    def covers(self, src: str, dst: str) -> bool:
        if self.links == "all":
            return True
        return (src, dst) in self.links or (dst, src) in self.links

    def describe(self) -> str:
        where = "all" if self.links == "all" else " ".join(f"{a}<>{b}" for a, b in self.links)
        return (
            f"links={where} latency_factor={self.latency_factor:g} "
            f"extra_latency_ms={self.extra_latency_ms:g} extra_loss={self.extra_loss:g}"
        )


@dataclass(frozen=True)
class OfflineWindow:
    """``node`` neither sends nor receives while ``start_ms <= t < end_ms``."""

    node: str
    start_ms: float
    end_ms: float

    def __post_init__(self) -> None:
        _check_window(self.start_ms, self.end_ms)


@dataclass(frozen=True)
class NetEvent:
    """One network fact for the trace, in the trace's vocabulary
    (``net.drop``, ``fault.partition``, ``fault.degrade``, ``fault.offline``)."""

    t_ms: float
    kind: str
    node: str = ""
    peer: str = ""
    size: int | None = None
    detail: str = ""

    def record(self, trace: Any, **extra: Any) -> None:
        """Append to a :class:`mimisim.sim.trace.Trace` (duck-typed);
        ``extra`` adds columns the network does not know (``msg_id``...)."""
        trace.record(
            self.t_ms, self.kind, self.node, peer=self.peer, size=self.size, detail=self.detail, **extra
        )


@dataclass
class Network:
    """Providers, clients, their links, and the fault schedule.

    ``default_link`` is stamped (as a fresh copy) onto every provider-to-
    provider direction; ``default_access`` onto client access links that get
    no profile. Both default to a 0 ms lossless link, so a bare network is a
    perfect one.
    """

    root_seed: int
    default_link: LinkModel = field(default_factory=LinkModel)
    default_access: LinkModel = field(default_factory=LinkModel)
    on_event: Callable[[NetEvent], None] | None = None
    graph: nx.DiGraph = field(default_factory=nx.DiGraph, init=False)
    partitions: list[Partition] = field(default_factory=list, init=False)
    degradations: list[Degradation] = field(default_factory=list, init=False)
    offline: list[OfflineWindow] = field(default_factory=list, init=False)
    profiles: dict[str, tuple[LinkModel, LinkModel]] = field(default_factory=dict, init=False)
    events: list[NetEvent] = field(default_factory=list, init=False)
    _gens: dict[tuple[str, str], np.random.Generator] = field(default_factory=dict, init=False, repr=False)

    # ---- topology --------------------------------------------------------

    def add_provider(self, domain: str) -> None:
        """Add a provider and mesh it with every existing provider."""
        if domain in self.graph:
            raise ValueError(f"node {domain!r} already exists")
        others = sorted(n for n, k in self.graph.nodes(data="kind") if k == "provider")
        self.graph.add_node(domain, kind="provider")
        for other in others:
            self._set_edge(domain, other, self.default_link)
            self._set_edge(other, domain, self.default_link)

    def add_profile(self, name: str, uplink: LinkModel, downlink: LinkModel | None = None) -> None:
        """A named access profile (``'mobile'``, ``'wifi'``): the uplink is
        client -> provider, the downlink provider -> client (defaults to the
        uplink's configuration)."""
        self.profiles[name] = (uplink, downlink if downlink is not None else uplink)

    def add_client(
        self,
        uri: str,
        provider: str,
        access: str | LinkModel | tuple[LinkModel, LinkModel] | None = None,
    ) -> None:
        """Add a client with an access link to and from ``provider``.
        ``access`` is a profile name, one model for both directions, an
        ``(uplink, downlink)`` pair, or ``None`` for ``default_access``."""
        if uri in self.graph:
            raise ValueError(f"node {uri!r} already exists")
        if self.graph.nodes.get(provider, {}).get("kind") != "provider":
            raise ValueError(f"client {uri!r}: unknown provider {provider!r}")
        if access is None:
            up = down = self.default_access
        elif isinstance(access, str):
            if access not in self.profiles:
                raise ValueError(f"client {uri!r}: unknown access profile {access!r}")
            up, down = self.profiles[access]
        elif isinstance(access, LinkModel):
            up = down = access
        else:
            up, down = access
        self.graph.add_node(
            uri, kind="client", provider=provider, profile=access if isinstance(access, str) else ""
        )
        self._set_edge(uri, provider, up)
        self._set_edge(provider, uri, down)

    def set_link(self, src: str, dst: str, model: LinkModel, *, both_directions: bool = True) -> None:
        """Override the model of an existing link (a fresh copy: idle, its
        loss chain unstarted). Do it before traffic flows."""
        pairs = [(src, dst), (dst, src)] if both_directions else [(src, dst)]
        for a, b in pairs:
            if not self.graph.has_edge(a, b):
                raise NoLink((a, b))
            self._set_edge(a, b, model)

    def _set_edge(self, src: str, dst: str, model: LinkModel) -> None:
        self.graph.add_edge(src, dst, model=model.fresh())

    def link(self, src: str, dst: str) -> LinkModel:
        """The live model (with its state) of the direction ``src -> dst``."""
        try:
            return self.graph.edges[src, dst]["model"]
        except KeyError:
            raise NoLink((src, dst)) from None

    def kind(self, node: str) -> NodeKind:
        return self.graph.nodes[node]["kind"]

    def provider_of(self, node: str) -> str:
        """A client's provider; a provider is its own."""
        data = self.graph.nodes[node]
        return data["provider"] if data["kind"] == "client" else node

    def providers(self) -> list[str]:
        return sorted(n for n, k in self.graph.nodes(data="kind") if k == "provider")

    def clients(self, provider: str | None = None) -> list[str]:
        return sorted(
            n
            for n, d in self.graph.nodes(data=True)
            if d["kind"] == "client" and (provider is None or d["provider"] == provider)
        )

    # ---- faults ----------------------------------------------------------

    def add_partition(self, partition: Partition) -> None:
        self.partitions.append(partition)

    def add_degradation(self, degradation: Degradation) -> None:
        self.degradations.append(degradation)

    def add_offline(self, node: str, start_ms: float, end_ms: float) -> None:
        if node not in self.graph:
            raise ValueError(f"offline window for unknown node {node!r}")
        self.offline.append(OfflineWindow(node, start_ms, end_ms))

    def _group(self, partition: Partition, node: str) -> int:
        for i, g in enumerate(partition.groups):
            if node in g:
                return i
        if node in self.graph and self.graph.nodes[node]["kind"] == "client":
            prov = self.graph.nodes[node]["provider"]
            for i, g in enumerate(partition.groups):
                if prov in g:
                    return i
        return -1  # the unnamed rest

    def separates(self, partition: Partition, a: str, b: str) -> bool:
        """Whether ``partition`` puts ``a`` and ``b`` in different groups."""
        return self._group(partition, a) != self._group(partition, b)

    def _blocked(self, src: str, dst: str, t0: float, t1: float) -> str | None:
        """Why a copy in flight over [t0, t1] is lost to a fault, if it is."""
        for w in self.offline:
            if (w.node == src or w.node == dst) and _overlaps(w.start_ms, w.end_ms, t0, t1):
                return "offline"
        for p in self.partitions:
            if _overlaps(p.start_ms, p.end_ms, t0, t1) and self.separates(p, src, dst):
                return "partition"
        return None

    def blocked_until(self, src: str, dst: str, now_ms: float) -> float:
        """When the fault that blocks ``src -> dst`` at ``now_ms`` ends (the
        latest end among the offline windows and partitions blocking it now;
        ``now_ms`` if nothing blocks it). A reliable transport waits that
        long instead of polling a dead link."""
        end = now_ms
        for w in self.offline:
            if (w.node == src or w.node == dst) and w.start_ms <= now_ms < w.end_ms:
                end = max(end, w.end_ms)
        for p in self.partitions:
            if p.start_ms <= now_ms < p.end_ms and self.separates(p, src, dst):
                end = max(end, p.end_ms)
        return end

    def is_online(self, node: str, now_ms: float) -> bool:
        return not any(w.node == node and w.start_ms <= now_ms < w.end_ms for w in self.offline)

    def link_up(self, src: str, dst: str, now_ms: float) -> bool:
        """Whether the direct link ``src -> dst`` exists and no partition or
        offline window blocks it at ``now_ms``."""
        return self.graph.has_edge(src, dst) and self._blocked(src, dst, now_ms, now_ms) is None

    def path_exists(self, src: str, dst: str, now_ms: float) -> bool:
        """Whether some chain of usable links joins ``src`` to ``dst`` at
        ``now_ms`` (faults only; random loss does not cut a path)."""
        if src not in self.graph or dst not in self.graph:
            return False
        if not (self.is_online(src, now_ms) and self.is_online(dst, now_ms)):
            return False
        view = nx.subgraph_view(
            self.graph,
            filter_node=lambda n: self.is_online(n, now_ms),
            filter_edge=lambda a, b: self._blocked(a, b, now_ms, now_ms) is None,
        )
        return nx.has_path(view, src, dst)

    def _degradation(self, src: str, dst: str, now_ms: float) -> tuple[float, float, float]:
        factor, extra_ms, survive = 1.0, 0.0, 1.0
        for d in self.degradations:
            if d.start_ms <= now_ms < d.end_ms and d.covers(src, dst):
                factor *= d.latency_factor
                extra_ms += d.extra_latency_ms
                survive *= 1.0 - d.extra_loss
        return factor, extra_ms, 1.0 - survive

    def fault_schedule(self) -> list[NetEvent]:
        """Every fault transition as a trace event, sorted by time (ties in
        the order the faults were added: partitions, degradations, offline
        windows). The SimPy layer records each at its ``t_ms``."""
        out: list[tuple[float, int, NetEvent]] = []
        order = 0
        for p in self.partitions:
            out.append(
                (p.start_ms, order, NetEvent(p.start_ms, "fault.partition", detail="start " + p.describe()))
            )
            out.append(
                (p.end_ms, order + 1, NetEvent(p.end_ms, "fault.partition", detail="heal " + p.describe()))
            )
            order += 2
        for d in self.degradations:
            out.append(
                (d.start_ms, order, NetEvent(d.start_ms, "fault.degrade", detail="start " + d.describe()))
            )
            out.append(
                (d.end_ms, order + 1, NetEvent(d.end_ms, "fault.degrade", detail="end " + d.describe()))
            )
            order += 2
        for w in self.offline:
            out.append(
                (w.start_ms, order, NetEvent(w.start_ms, "fault.offline", node=w.node, detail="offline"))
            )
            out.append(
                (w.end_ms, order + 1, NetEvent(w.end_ms, "fault.offline", node=w.node, detail="online"))
            )
            order += 2
        return [e for _, _, e in sorted(out, key=lambda x: (x[0], x[1])) if math.isfinite(e.t_ms)]

    # ---- traffic ---------------------------------------------------------

    def gen(self, src: str, dst: str) -> np.random.Generator:
        """The random stream of the direction ``src -> dst``."""
        key = (src, dst)
        g = self._gens.get(key)
        if g is None:
            g = self._gens[key] = stream(self.root_seed, link_stream_name(src, dst))
        return g

    def transmit(self, src: str, dst: str, now_ms: float, size_bytes: int) -> Transmission:
        """The arrivals at ``dst`` of a message ``src`` sends at ``now_ms``.

        Order of judgement: offline and partition at send time (the link is
        not touched and draws nothing), then the link model with any active
        degradation, then each copy's flight against offline windows and
        partitions that begin before it lands. An empty result means dropped;
        its ``drop_reason`` and a ``net.drop`` event say why. If the
        original copy is lost in flight but its duplicate survives, the
        survivor is reported as the original.
        """
        model = self.link(src, dst)
        reason = self._blocked(src, dst, now_ms, now_ms)
        if reason is not None:
            return self._drop(src, dst, now_ms, size_bytes, reason)
        factor, extra_ms, extra_loss = self._degradation(src, dst, now_ms)
        arrivals = model.transmit(
            now_ms,
            size_bytes,
            self.gen(src, dst),
            latency_factor=factor,
            extra_latency_ms=extra_ms,
            extra_loss=extra_loss,
        )
        if not arrivals:
            return self._drop(src, dst, now_ms, size_bytes, model.last_drop_reason or "loss")
        kept: list[Arrival] = []
        flight_reason: str | None = None
        for a in arrivals:
            r = self._blocked(src, dst, now_ms, a.at_ms)
            if r is None:
                kept.append(a)
            else:
                flight_reason = flight_reason or r
        if not kept:
            assert flight_reason is not None
            return self._drop(src, dst, now_ms, size_bytes, flight_reason)
        if len(kept) == 1 and kept[0].duplicate:
            kept[0] = Arrival(kept[0].at_ms, False)
        return Transmission(kept)

    def _drop(self, src: str, dst: str, now_ms: float, size: int, reason: str) -> Transmission:
        self._emit(NetEvent(now_ms, "net.drop", node=src, peer=dst, size=int(size), detail=reason))
        return Transmission((), reason)

    def _emit(self, ev: NetEvent) -> None:
        if self.on_event is not None:
            self.on_event(ev)
        else:
            self.events.append(ev)

    # ---- convenience -----------------------------------------------------

    @classmethod
    def build(
        cls,
        root_seed: int,
        providers: Iterable[str],
        clients: Iterable[tuple[str, str]] = (),
        *,
        default_link: LinkModel | None = None,
        default_access: LinkModel | None = None,
        on_event: Callable[[NetEvent], None] | None = None,
    ) -> Network:
        """A network from lists: providers, then ``(client_uri, provider)``."""
        net = cls(
            root_seed,
            default_link=default_link or LinkModel(),
            default_access=default_access or LinkModel(),
            on_event=on_event,
        )
        for p in providers:
            net.add_provider(p)
        for uri, prov in clients:
            net.add_client(uri, prov)
        return net
