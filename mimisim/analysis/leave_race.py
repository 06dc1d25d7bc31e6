"""The race model of leave latency: the mechanism of one leave, replayed on a
reduced system with the room's other traffic as Poisson interferers.

Why a replay and not a closed formula: under ``immediate_commit`` every
remaining member commits the cached proposals the moment it receives them,
so the latency is set by a race and by the order of the hub's notifies, not
by one path:

- **the race**: the proposals reach the hub ``up(leaver)`` after they are
  made; a member on the hub's provider gets them at once, one on a follower
  provider only through that follower's notify; every member's commit
  reaches the hub its own round trip later, the first one is accepted and
  the others are refused. The winner is the member with the shortest hub
  round trip (a hub-local member if there is one), and its commit travels
  to the others from the hub;
- **the ordered notify** (``protocol.notify_pipelining`` false, the default):
  the hub sends one ``/notify`` at a time per room and follower, the next
  one only after the previous one's ``201``. The removing commit waits for
  the proposals' notify to be acknowledged (a hub-local winner commits long
  before that), and the proposals' notify waits for any notify of earlier
  traffic still unanswered;
- **second rounds**: a commit or another leave's proposals accepted between
  the proposals and the winning commit make every racing commit stale
  (``wrongEpoch``) or incomplete (``invalidProposal``); the members rebuild
  after processing what they missed plus the retry backoff, and race again.
  A commit accepted just before the proposals arrive refuses the proposals
  themselves (the leaver proposes again after catching up). A member whose
  own commit is in flight commits the proposals only after its reply (one
  operation per room at a time). An Update built after its author received
  the proposals carries them and removes the leaver itself.

The reduced system keeps: each client's mean path to and from the hub
(access + inter-provider link, 0 on the hub's own provider), each follower's
notify round trip, the hub's acceptance rule (the current epoch, every
cached proposal included), the fanout targets (providers with members other
than the sender's only one), per-follower FIFO notifies, the strategy
(``immediate_commit``, ``random_delay`` timers, ``designated``), the retry
backoff (first retry, full jitter), one operation per member. The other
traffic (Updates and adds as commits by a uniform member, other leaves'
proposals, application messages occupying the notify streams) is Poisson
at the scenario's rates in a window around the leave. It drops processing
costs, link jitter, loss and membership changes inside the window. Nothing
in it is fitted: the inputs are the scenario's latencies and rates and the
room's membership at each leave (read from the trace).
"""

from __future__ import annotations

import functools
import heapq
import math
import zlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np

# kinds of scheduled events
_PROPOSE, _AT_HUB, _DELIVER, _REPLY, _TIMER, _UPDATE, _MESSAGE, _RETRY, _LEAVE = range(9)


@dataclass(frozen=True)
class Member:
    """A client in the reduced system: its provider and mean paths (ms)."""

    provider: str
    up: float
    down: float


@dataclass
class _Client:
    m: Member
    epoch: int = 0
    props: set[int] = field(default_factory=set)
    busy: bool = False
    queued: list[str] = field(default_factory=list)
    timer: bool = False
    done_at: float = math.nan  # processed a commit carrying the leave
    removed: bool = False


@dataclass(frozen=True)
class RaceSetup:
    """One leave's configuration: the leaver (index 0 of ``clients``) and the
    remaining members (the rest), the hub's provider, follower round trips."""

    clients: tuple[Member, ...]
    hub: str
    rtt: tuple[tuple[str, float], ...]
    strategy: str = "immediate_commit"
    delay_ms: tuple[float, float] = (0.0, 0.0)
    designated: int = -1  # index of the designated committer (strategy ``designated``)
    update_rate: float = 0.0  # per second per room (commits: Updates, adds, removes)
    leave_rate: float = 0.0  # other leaves' proposals, per second per room
    message_rate: float = 0.0  # application messages, per second per room
    backoff_ms: float = 50.0  # first retry after a refusal: uniform in [0, backoff_ms]


def _run_once(s: RaceSetup, rng: np.random.Generator, before_ms: float, after_ms: float) -> float:
    """One replication: the leave's latency to the last remaining member (ms)
    from its first proposal; NaN if it did not complete within the window."""
    cl = [_Client(m) for m in s.clients]
    n = len(cl)
    rtt = dict(s.rtt)
    hub_epoch = 0
    hub_cached: set[int] = set()
    free: dict[str, float] = {}
    heap: list[tuple[float, int, int, tuple[Any, ...]]] = []
    seq = 0
    next_prop = 1  # proposal ids; 0 is the leave under study

    def push(t: float, kind: int, *args: Any) -> None:
        nonlocal seq
        heapq.heappush(heap, (t, seq, kind, args))
        seq += 1

    def fanout(t: float, author: int, item: tuple[Any, ...], commit: bool) -> None:
        """Deliver an accepted item: hub-local clients at once, followers
        through their FIFO notify stream. Targets: providers with clients
        other than the author's only one (a commit also reaches the clients
        it removes)."""
        targets: dict[str, list[int]] = {}
        for i, c in enumerate(cl):
            if i == author or (c.removed and not commit):
                continue
            targets.setdefault(c.m.provider, []).append(i)
        for prov in sorted(targets):
            if prov == s.hub:
                for i in targets[prov]:
                    push(t + cl[i].m.down, _DELIVER, i, item)
                continue
            start = max(t, free.get(prov, -math.inf))
            free[prov] = start + rtt[prov]
            for i in targets[prov]:
                push(start + cl[i].m.down, _DELIVER, i, item)

    def commit(i: int, t: float) -> None:
        c = cl[i]
        c.busy = True
        push(t + c.m.up, _AT_HUB, "commit", i, c.epoch, frozenset(c.props))

    def propose(i: int, t: float, pid: int) -> None:
        c = cl[i]
        c.busy = True
        push(t + c.m.up, _AT_HUB, "propose", i, c.epoch, pid)

    def wants_commit(i: int) -> bool:
        c = cl[i]
        return bool(c.props) and not c.removed and i != 0

    def start_next(i: int, t: float) -> None:
        c = cl[i]
        while c.queued and not c.busy:
            what = c.queued.pop(0)
            if what == "update":
                commit(i, t)
            elif what == "pending" and wants_commit(i):
                commit(i, t)

    def on_proposals(i: int, t: float) -> None:
        """The strategy, when a member learns pending proposals."""
        if not wants_commit(i):
            return
        strategy = s.strategy
        if strategy == "designated":
            strategy = "immediate_commit" if i == s.designated else "random_delay"
        if strategy == "immediate_commit":
            if cl[i].busy:
                if "pending" not in cl[i].queued:
                    cl[i].queued.append("pending")
            else:
                commit(i, t)
        elif not cl[i].timer:
            cl[i].timer = True
            push(t + float(rng.uniform(*s.delay_ms)), _TIMER, i)

    # the interferers, Poisson in the window (authors: the remaining members)
    span = before_ms + after_ms
    for rate, kind in ((s.update_rate, _UPDATE), (s.leave_rate, _PROPOSE), (s.message_rate, _MESSAGE)):
        if rate > 0 and n > 1:
            k = int(rng.poisson(rate * span / 1000.0))
            for t0, who in zip(rng.uniform(-before_ms, after_ms, k), rng.integers(1, n, k), strict=True):
                push(float(t0), kind, int(who))
    push(0.0, _LEAVE)  # built at 0 with what the leaver processed by then
    retry_wait: dict[int, tuple[str, int, frozenset[int]]] = {}  # client -> (what, epoch, proposals it waits for)

    def wake(i: int, t: float) -> None:
        """A refused client rebuilds after the backoff once it holds what the
        hub's answer named (its epoch; the proposals it omitted)."""
        w = retry_wait.get(i)
        c = cl[i]
        if w is None or c.epoch < w[1] or (c.epoch == w[1] and not w[2] <= c.props):
            return
        del retry_wait[i]
        push(t + float(rng.uniform(0.0, s.backoff_ms)), _RETRY, i, w[0])

    while heap:
        t, _, kind, a = heapq.heappop(heap)
        if t > after_ms:
            break
        if kind == _LEAVE:
            propose(0, t, 0)
        elif kind == _UPDATE:
            i = a[0]
            if cl[i].removed:
                continue
            if cl[i].busy:
                cl[i].queued.append("update")
            else:
                commit(i, t)
        elif kind == _PROPOSE:
            i = a[0]
            if cl[i].busy or cl[i].removed or any(p for p in cl[i].props if p < 0):
                continue  # an interferer proposal by a busy member is left out (rare)
            propose(i, t, -next_prop)
            next_prop += 1
        elif kind == _MESSAGE:
            i = a[0]
            fanout(t + cl[i].m.up, i, ("message",), False)
        elif kind == _AT_HUB:
            what, i, epoch = a[0], a[1], a[2]
            ok = epoch == hub_epoch and (what == "propose" or hub_cached <= a[3])
            if ok and what == "propose":
                hub_cached.add(a[3])
                fanout(t, i, ("propose", a[3]), False)
                push(t + cl[i].m.down, _REPLY, i, "ok-propose", a[3])
            elif ok:
                hub_epoch += 1
                fanout(t, i, ("commit", frozenset(hub_cached)), True)
                push(t + cl[i].m.down, _REPLY, i, "ok-commit", frozenset(hub_cached))
                hub_cached = set()
            elif what == "propose":  # wrongEpoch: propose again once at the hub's epoch
                push(t + cl[i].m.down, _REPLY, i, "refused-propose", hub_epoch, frozenset())
            elif epoch != hub_epoch:  # wrongEpoch: rebuild after the backoff with what it has
                push(t + cl[i].m.down, _REPLY, i, "refused-commit", -1, frozenset())
            else:  # invalidProposal: rebuild once it holds the proposals the hub named
                push(t + cl[i].m.down, _REPLY, i, "refused-commit", hub_epoch, frozenset(hub_cached))
        elif kind in (_DELIVER, _REPLY):
            i = a[0]
            c = cl[i]
            item = a[1]
            if kind == _DELIVER and item[0] == "commit" or kind == _REPLY and item == "ok-commit":
                carried = a[1][1] if kind == _DELIVER else a[2]
                c.epoch += 1
                c.props.clear()
                c.timer = False
                if 0 in carried and math.isnan(c.done_at):
                    c.done_at = t
                if 0 in carried and i == 0:
                    c.removed = True
                if kind == _REPLY:
                    c.busy = False
                    start_next(i, t)
                wake(i, t)
            elif kind == _DELIVER and item[0] == "propose":
                c.props.add(item[1])
                on_proposals(i, t)
                wake(i, t)
            elif kind == _REPLY and item == "ok-propose":
                c.busy = False  # the leaver waits for its removal; an interferer likewise stays out
                if i != 0:
                    c.removed = True  # an interferer leaver takes no further part
                start_next(i, t)
            elif kind == _REPLY and item.startswith("refused"):
                retry_wait[i] = ("propose" if item == "refused-propose" else "pending", a[2], a[3])
                wake(i, t)
        elif kind == _TIMER:
            i = a[0]
            if cl[i].timer:
                cl[i].timer = False
                if wants_commit(i):
                    if cl[i].busy:
                        cl[i].queued.append("pending")
                    else:
                        commit(i, t)
        elif kind == _RETRY:
            i, what = a[0], a[1]
            c = cl[i]
            c.busy = False
            if what == "propose":
                if not c.removed:
                    propose(i, t, 0 if i == 0 else -next_prop)
            elif wants_commit(i):
                commit(i, t)
            start_next(i, t)
        if all(not math.isnan(c.done_at) for c in cl[1:] if not c.removed):
            break
    ends = [c.done_at for c in cl[1:] if not c.removed]
    return max(ends) if ends and all(not math.isnan(e) for e in ends) else math.nan


@functools.lru_cache(maxsize=4096)
def race_latency(s: RaceSetup, reps: int = 200) -> tuple[float, float]:
    """``(mean latency, mean latency with no other traffic)`` in ms over
    ``reps`` replications (one for the quiet ``immediate_commit`` race,
    which is deterministic), counting the replications that completed in
    the window. Seeded from the setup itself, so the same setup gives the
    same numbers in any process."""
    quiet = RaceSetup(s.clients, s.hub, s.rtt, s.strategy, s.delay_ms, s.designated, 0.0, 0.0, 0.0,
                      s.backoff_ms)
    after = 4_000.0 + 4 * s.delay_ms[1]
    before = 2_000.0
    seed = zlib.crc32(repr(s).encode())
    out = []
    for k, setup in enumerate((s, quiet)):
        rng = np.random.default_rng(seed + k)
        n = 1 if setup is quiet and s.strategy == "immediate_commit" else reps
        v = np.array([_run_once(setup, rng, before, after) for _ in range(n)])
        v = v[~np.isnan(v)]
        out.append(float(v.mean()) if len(v) else math.nan)
    return out[0], out[1]


def _domain(uri: str) -> str:
    return uri.split("//", 1)[-1].split("/", 1)[0]


def scenario_paths(scenario: Any) -> tuple[str, dict[str, Member], dict[str, float]]:
    """The first room's hub provider, each client's :class:`Member` (mean
    latencies of access + link to and from the hub's provider; a link counts
    0 on the hub's own provider) and each follower's notify round trip (the
    two link directions)."""
    from mimisim.analysis.conflicts import mean_latency_ms

    spec = next(iter(scenario.rooms.values()))
    hub = spec.hub

    def access(profile: str) -> tuple[float, float]:
        if profile not in scenario.network.access:
            return 0.0, 0.0
        up, down = scenario.access(profile)
        return mean_latency_ms(up.latency), mean_latency_ms(down.latency)

    def link(a: str, b: str) -> float:
        return 0.0 if a == b else mean_latency_ms(scenario.link(a, b).latency)

    members = {}
    for c in scenario.clients():
        up, down = access(c.spec.access)
        members[c.uri] = Member(c.provider, up + link(c.provider, hub), link(hub, c.provider) + down)
    rtt = {p: link(hub, p) + link(p, hub) for p in scenario.providers if p != hub}
    return hub, members, rtt


def _rate(act: Any, members: int) -> float:
    if act is None:
        return 0.0
    per = getattr(act, "per", "room")
    return float(act.rate) * (members if per == "client" else 1.0)


def setup_for(scenario: Any, leaver: str, remaining: list[str]) -> RaceSetup | None:
    """The :class:`RaceSetup` of one leave (client URIs), from the scenario's
    paths, rates, pending-proposal strategy and retry backoff; None when a
    client is not in the scenario or a latency has no mean."""
    hub, paths, rtt = scenario_paths(scenario)
    if leaver not in paths or any(r not in paths for r in remaining):
        return None
    rest = sorted(remaining)
    clients = (paths[leaver], *(paths[r] for r in rest))
    if any(math.isnan(c.up) or math.isnan(c.down) for c in clients):
        return None
    pp = scenario.protocol.pending_proposals
    spec = next(iter(scenario.rooms.values()))
    if spec.policy.pending_proposals is not None:
        pp = spec.policy.pending_proposals
    designated = -1
    if pp.strategy == "designated" and pp.committer:
        uri = scenario.client(pp.committer).uri
        designated = 1 + rest.index(uri) if uri in rest else -1
    w = scenario.workload
    n = len(clients)
    commits = _rate(w.updates, n) + _rate(w.adds, n) + _rate(w.removes, n)
    back = w.retry.backoff
    used = {c.provider for c in clients}
    return RaceSetup(clients=clients, hub=hub, rtt=tuple(sorted((p, v) for p, v in rtt.items() if p in used)),
                     strategy=pp.strategy, delay_ms=(float(pp.min_delay), float(pp.max_delay)),
                     designated=designated, update_rate=commits, leave_rate=_rate(w.leaves, n),
                     message_rate=_rate(w.messages, n), backoff_ms=float(back.base))
