"""One simulated world built from a scenario: network, HTTP fabric,
provider and client nodes, workload, faults, and the trace; and its run.

The run has three phases, all in simulated time and all in the trace:

1. **Setup** (from t=0): every client that starts in its rooms uploads its
   KeyPackages; once they are acknowledged (or after ``SETUP_WAIT_MS``), the
   creator of each room creates it at its hub and adds the other initial
   participants through the real protocol: one commit per user
   (``incremental``) or all of them in one commit (``bulk``, the default
   for rooms of more than :data:`BULK_SETUP_ABOVE`); see :func:`setup_mode`.
   The setup ends when every joined client of every initial participant is
   a member; the run notes when (simulated, wall and CPU time) so that the
   setup's cost is reported apart from the workload's.
2. **Workload** from each activity's ``start``: Poisson activities and the
   script (:mod:`mimisim.sim.workload`).
3. **Faults** at their times (:mod:`mimisim.sim.faults`), each recorded with
   its id; at the end a ``fault.effect`` row per fault says whether it bit.

Randomness: one root seed; every component draws from its own named stream
(:mod:`mimisim.sim.rng`), the protocol cores from
:func:`~mimisim.sim.rng.protocol_random` streams named after the node.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Generator
from typing import Any

import simpy

from mimisim import events as E
from mimisim.mimi import policy as P
from mimisim.mimi.client import ClientCore, ClientStep, RetryStrategy
from mimisim.mimi.ds.endpoints import DSEndpoint
from mimisim.mimi.ds.member import DSMember
from mimisim.mimi.ds.provider import DSProviderConfig, DSProviderCore
from mimisim.mimi.ds.ratelimit import Rate
from mimisim.mimi.endpoints import Endpoint
from mimisim.mimi.identity import user_of_client
from mimisim.mimi.provider import ProviderConfig, ProviderCore
from mimisim.mimi.wire import Capability
from mimisim.sim import consent
from mimisim.sim import scenario as S
from mimisim.sim.adversary import Adversaries
from mimisim.sim.faults import FaultPlan, expand, fault_effects
from mimisim.sim.http import HttpFabric, RetryPolicy
from mimisim.sim.links import LatencyModel, LinkModel
from mimisim.sim.network import Degradation, Network, Partition
from mimisim.sim.nodes import ClientNode, Cost, ProviderNode
from mimisim.sim.rng import protocol_random, stream
from mimisim.sim.trace import CHUNK_ROWS, Trace
from mimisim.sim.workload import Workload

#: One-time KeyPackages each client publishes at the start (plus one last-resort).
KEY_PACKAGES = 4
#: How long the setup waits for the KeyPackage uploads before creating rooms anyway.
SETUP_WAIT_MS = 5_000.0
#: ``setup: auto`` builds rooms of more initial participants than this in one
#: commit. Why 32: one commit per user costs every member already in the room
#: one commit to process, about N^2/2 member-commits for N users (500 at 32,
#: 500,000 at 1,000: the 300-member room of issue 14 was still being built
#: after a simulated minute). Rooms up to 32 keep the one-add-at-a-time setup
#: every study so far was recorded with (the largest scenario room has 32).
BULK_SETUP_ABOVE = 32
#: How often (simulated ms) the run looks whether the setup has ended, to
#: split wall and CPU time between setup and workload (the trace is unchanged:
#: stopping and resuming SimPy reorders nothing).
SETUP_POLL_MS = 1_000.0


#: How a client becomes a member of a room (``client.epoch`` ``via``).
_JOINED_VIA = frozenset({"created", "welcome", "external_commit"})


def setup_mode(room: S.RoomSpec) -> str:
    """``incremental`` or ``bulk``: the room's ``setup`` option, ``auto`` resolved."""
    if room.setup != "auto":
        return room.setup
    return "bulk" if len(room.participants) > BULK_SETUP_ABOVE else "incremental"


def _link_model(spec: S.LinkSpec, base_dir: Any) -> LinkModel:
    return LinkModel.from_dict(spec.to_link_dict(base_dir))


def _retry_policy(rp: S.RequestPolicy, *, notify: bool, ds: bool = False) -> RetryPolicy:
    b = rp.retry.backoff
    return RetryPolicy(
        timeout_ms=float(rp.timeout),
        max_attempts=rp.retry.max_attempts,
        backoff_base_ms=float(b.base),
        backoff_factor=float(b.factor),
        backoff_cap_ms=float(b.cap),
        jitter=b.jitter,
        honour_retry_after=rp.retry.honour_retry_after,
        success_statuses=(frozenset({(DSEndpoint.DS_FANOUT if ds else Endpoint.NOTIFY).success_status}) if notify
                          else None),
    )


def room_policy(spec: S.RoomPolicy) -> P.RoomPolicy:
    """The scenario's room policy as the protocol's ``roles_list``."""
    roles = []
    for name, r in sorted(spec.roles.items(), key=lambda kv: kv[1].index):
        roles.append(P.make_role(
            r.index, name, [Capability[c] for c in r.capabilities], {k: list(v) for k, v in r.role_changes.items()},
            min_participants=r.min_participants, max_participants=r.max_participants,
            min_active=r.min_active_participants, max_active=r.max_active_participants,
        ))
    return P.RoomPolicy.from_roles(roles)


class World:
    """Everything one run needs; :meth:`run` runs it."""

    def __init__(self, scenario: S.Scenario, seed: int | None = None, faults: FaultPlan | None = None) -> None:
        """``faults`` replaces the schedule the scenario and seed expand to
        (``mimisim check`` replays and shrinks failing schedules with it)."""
        self.scenario = scn = scenario
        self.seed = scn.seed if seed is None else int(seed)
        self.env = simpy.Environment()
        self.trace = Trace(chunk_rows=CHUNK_ROWS)
        # Measure MLS CPU time into the cpu_ms columns (outputs.cpu_time): the
        # one non-deterministic part of a trace (events.MEASURED_COLUMNS).
        self.measure_cpu = bool(scenario.outputs.cpu_time)
        self.key_packages = KEY_PACKAGES
        base = scn.base_dir
        proto = scn.protocol
        # ---- network
        net = Network(self.seed, default_link=_link_model(scn.network.default, base),
                      on_event=lambda ev: None)  # drops are recorded by the carriers, with context
        for domain in scn.providers:
            net.add_provider(domain)
        # Only pairs named in network.links differ from the default (checking
        # every pair was quadratic in providers: 40,000 comparisons at 200).
        pairs: set[tuple[str, str]] = set()
        for key in scn.network.links:
            a, b, both = S.parse_link_key(key)
            pairs.add((a, b))
            if both:
                pairs.add((b, a))
        for a, b in sorted(pairs):
            net.set_link(a, b, _link_model(scn.link(a, b), base), both_directions=False)
        for name in scn.network.access:
            up, down = scn.access(name)
            net.add_profile(name, _link_model(up, base), _link_model(down, base))
        self.network = net
        self.fabric = HttpFabric(self.env, net, self.trace)
        # ---- providers
        self.providers: dict[str, ProviderNode] = {}
        config = ProviderConfig(
            suite_id=proto.suite, epoch_base_ms=scn.epoch_base_ms, dedup=proto.dedup.strategy,
            dedup_max_entries=proto.dedup.window_entries, dedup_max_age_ms=int(proto.dedup.window_age),
            notify_pipelining=proto.notify_pipelining, welcome_tree=proto.ratchet_tree.welcome,
            leave_delivery=proto.leave_delivery, app_epoch_window=proto.app_epoch_window,
            directory_discovery=proto.directory_discovery,
            consent_mode=proto.consent.mode,
        )
        self.provider_config = config
        notify_policy = _retry_policy(proto.notify, notify=True, ds=proto.profile == "ds")
        request_policy = _retry_policy(proto.requests, notify=False)
        self.ds = proto.profile == "ds"
        ds_config = DSProviderConfig(
            suite_id=proto.suite, pipelining=proto.notify_pipelining,
            hub_limits={k: Rate(v.rate, v.burst) for k, v in proto.ds.hub_limits.items()},
            guest_limits={k: Rate(v.rate, v.burst) for k, v in proto.ds.fanout_limits.items()},
        )
        for domain, spec in scn.providers.items():
            cfg = dataclasses.replace(config, deliver_locally=False) if spec.silent else config

            def make(domain: str = domain, cfg: ProviderConfig = cfg) -> Any:
                if self.ds:
                    return self._ds_core(domain, ds_config)
                return ProviderCore.new(domain, protocol_random(self.seed, f"provider {domain}"), cfg)

            lag = None
            if spec.standby is not None and spec.standby.replication == "lag":
                assert spec.standby.lag is not None
                model = LatencyModel.from_dict(S.dist_to_dict(spec.standby.lag, base))
                g = stream(self.seed, f"replication:{domain}")

                def lag(model: LatencyModel = model, g: Any = g) -> float:
                    return max(0.0, float(model.sample(g)))

            c = spec.cost
            node = ProviderNode(
                self, make(), Cost(c.per_request, c.per_byte, c.per_signature, c.per_hpke), make_core=make,
                notify_policy=notify_policy, request_policy=request_policy, state=spec.state,
                standby=spec.standby, lag_sampler=lag,
            )
            self.providers[domain] = node
            self.fabric.servers[domain] = node.serve
        # ---- clients
        self.clients: dict[str, ClientNode] = {}
        self.clients_of_user: dict[str, list[str]] = {}  # user URI -> client URIs (an index)
        self.room_candidates: dict[str, list[str]] = {scn.room_uri(r): [] for r in scn.rooms}
        wr = scn.workload.retry
        mode = {"rebuild": "after_commit"}.get(wr.mode, wr.mode)
        self.retry = RetryStrategy(
            max_attempts=wr.max_attempts, backoff_ms=int(wr.backoff.base), mode=mode,
            factor=float(wr.backoff.factor), cap_ms=int(wr.backoff.cap), jitter=wr.backoff.jitter,
        )
        self.pending = proto.pending_proposals
        for info in scn.clients():
            self.add_client(info.uri, info.provider, info.spec.access if info.spec.access in scn.network.access
                            else None)
        self.plan: FaultPlan = faults if faults is not None else expand(scn, self.seed)
        self._apply_network_faults()
        self.workload = Workload(self)
        self.adversaries: Adversaries | None = Adversaries(self) if scn.adversaries.any() else None
        self.wall_s = 0.0
        # The setup's end (see the module docstring): the (room, client) pairs
        # still to join, None until the rooms are created; then when it ended.
        self._setup_waiting: list[tuple[str, str]] | None = None
        self.setup_targets: list[tuple[str, str]] = []
        self._setup_started_ms = 0.0
        self.setup_end_ms: float | None = None
        self.setup_wall_s: float | None = None
        self.setup_cpu_s: float | None = None

    # ---------------------------------------------------------------- building

    def _ds_core(self, domain: str, config: DSProviderConfig) -> DSProviderCore:
        """A ds-profile DS with its seeded FanoutAuth secret (C6), its clients
        registered (a standby taking over rebuilds the core: the registry is
        part of the DS's database)."""
        key = protocol_random(self.seed, f"ds token key {domain}").random_bytes(32)
        core = DSProviderCore(domain, protocol_random(self.seed, f"provider {domain}"), config, key)
        for uri, node in getattr(self, "clients", {}).items():
            if node.provider.domain == domain:
                core.register_client(uri)
        return core

    def add_client(self, uri: str, provider: str, access: str | None) -> ClientNode:
        scn = self.scenario
        self.network.add_client(uri, provider, access)
        core = ClientCore(
            uri, scn.protocol.suite, protocol_random(self.seed, f"client {uri}"), retry=self.retry,
            pending_proposals=self.pending.strategy,
            pending_delay_ms=(int(self.pending.min_delay), int(self.pending.max_delay)),
            now_s=scn.epoch_base_ms // 1000, welcome_tree=scn.protocol.ratchet_tree.welcome,
            group_info=scn.protocol.ratchet_tree.group_info, past_epochs=scn.protocol.past_epoch_keys,
        )
        for name, room in scn.rooms.items():
            pp = room.policy.pending_proposals
            if pp is None and self.pending.strategy == "designated":
                pp = self.pending
            if pp is not None:
                committer = scn.client(pp.committer).uri if pp.committer is not None else None
                core.set_pending_strategy(scn.room_uri(name), pp.strategy, (int(pp.min_delay), int(pp.max_delay)),
                                          committer=committer)
        if self.ds:
            pcore = self.providers[provider].core
            assert isinstance(pcore, DSProviderCore)
            token = pcore.register_client(uri)
            core = DSMember(core, token, lambda user: list(self.clients_of_user.get(user, ())))
        node = ClientNode(self, core, self.providers[provider])
        self.clients[uri] = node
        self.clients_of_user.setdefault(user_of_client(uri), []).append(uri)
        return node

    def add_candidates(self, room: str, user: str, client: str | None = None) -> None:
        """Remember which clients may be members of ``room`` (the workload's
        actor pool), so it never scans every client of the world."""
        cands = self.room_candidates.setdefault(room, [])
        if client is not None:
            new = [client]
        else:
            user_uri = user if user.startswith("mimi://") else self.scenario.user_uri(user)
            new = self.clients_of_user.get(user_uri, [])
        for uri in new:
            if uri not in cands:
                cands.append(uri)
        cands.sort()

    def _apply_network_faults(self) -> None:
        end = float(self.scenario.duration)
        for f in self.plan.faults:
            stop = f.end_ms if f.end_ms is not None else end
            if stop <= f.at_ms:
                continue
            if f.kind == "partition":
                self.network.add_partition(Partition(f.at_ms, stop, [set(g) for g in f.groups]))
            elif f.kind == "degrade":
                self.network.add_degradation(Degradation(
                    f.at_ms, stop, f.links if isinstance(f.links, str) else list(f.links),
                    f.latency_factor, f.extra_loss, f.extra_latency_ms))
            elif f.kind == "offline":
                self.network.add_offline(f.node, f.at_ms, stop)

    def create_room_step(self, node: ClientNode, room: str, role: str | None) -> ClientStep:
        scn = self.scenario
        spec = scn.rooms[room]
        hub = self.providers[spec.hub].core
        return node.core.create_room(
            scn.room_uri(room), hub_signature_key=hub.hub_signature_pub, hub_franking_key=hub.franking_key,
            policy=room_policy(spec.policy), creator_role=role or spec.policy.creator_role, room_name=room,
            now_ms=node.now,
        )

    # ---------------------------------------------------------------- processes

    def _setup(self) -> Generator:
        scn = self.scenario
        env = self.env
        joined = [c for c in scn.clients() if c.spec.joined]
        for info in joined:
            node = self.clients[info.uri]
            node.apply(node.core.upload_key_packages(self.key_packages))
        waited = 0.0
        while any(self.clients[c.uri].outstanding for c in joined) and waited < SETUP_WAIT_MS:
            yield env.timeout(10.0)
            waited += 10.0
        targets: list[tuple[str, str]] = []
        for name, room in scn.rooms.items():
            if not room.participants:
                continue
            uri = scn.room_uri(name)
            users = list(room.participants)
            if room.created_by is not None:
                creator = scn.client(room.created_by)
            else:
                first = users[0]
                creator = next(c for c in scn.clients() if c.user == first and c.spec.joined)
            node = self.clients[creator.uri]
            self.add_candidates(uri, creator.user)
            self.trace.record(env.now, E.WorkloadAction(room=uri, action="create_room", setup=True), node.uri)
            node.apply(self.create_room_step(node, name, room.participants.get(creator.user)))
            others = [u for u in users if u != creator.user]
            targets.extend((uri, c.uri) for c in scn.clients() if c.user in room.participants and c.spec.joined)
            if setup_mode(room) == "bulk" and others:
                for user in others:
                    self.add_candidates(uri, user)
                self.trace.record(env.now, E.WorkloadAction(room=uri, action="add_users", setup=True,
                                                            text=f"{len(others)} users"), node.uri)
                node.apply(node.core.add_users(uri, [(scn.user_uri(u), room.participants[u]) for u in others],
                                               node.now))
                continue
            for user in others:
                self.add_candidates(uri, user)
                self.trace.record(env.now, E.WorkloadAction(room=uri, action="add_user", setup=True, target_user=user),
                                  node.uri)
                node.apply(node.core.add_user(uri, scn.user_uri(user), node.now, role=room.participants[user]))
        self.setup_targets = targets
        self._setup_started_ms = env.now
        self._setup_waiting = list(targets)

    def _fault(self, f: Any) -> Generator:
        env = self.env
        yield env.timeout(max(0.0, f.at_ms - env.now))
        tr = self.trace
        if f.kind == "crash":
            self.providers[f.node].crash(f.state, why=f.describe(), fault_id=f.id, fault_kind=f.kind)
            if f.end_ms is not None:
                yield env.timeout(max(0.0, f.end_ms - env.now))
                self.providers[f.node].restart(why=f"{f.id} restart", fault_id=f.id, fault_kind=f.kind)
        elif f.kind == "restart":
            self.providers[f.node].restart(why=f.describe(), fault_id=f.id, fault_kind=f.kind)
        elif f.kind == "failover":
            tr.record(env.now, E.FaultFailover(text=f.describe(), fault_id=f.id, fault_kind=f.kind), f.node)
            self.providers[f.node].failover(fault_id=f.id)
        else:
            cls = {"partition": E.FaultPartition, "degrade": E.FaultDegrade, "offline": E.FaultOffline}[f.kind]
            node = f.node if f.kind == "offline" else ""
            tr.record(env.now, cls(status="start", text=f.describe(), fault_id=f.id, fault_kind=f.kind), node)
            stop = f.end_ms if f.end_ms is not None else float(self.scenario.duration)
            if stop < float(self.scenario.duration):
                yield env.timeout(max(0.0, stop - env.now))
                tr.record(env.now, cls(status="end", text=f.describe(), fault_id=f.id, fault_kind=f.kind), node)

    # ---------------------------------------------------------------- inspection

    def disagreements(self) -> list[str]:
        """Members whose view of a room differs from its hub's right now
        (epoch, tree hash, participant list), one line each. Empty when every
        member caught up: the agreement invariant at the end of a quiet run."""
        out = []
        for domain in sorted(self.providers):
            core = self.providers[domain].core
            for room in sorted(core.rooms):
                hub = core.rooms[room]
                for uri in sorted(self.clients):
                    c = self.clients[uri].core
                    if not c.is_member(room):
                        continue
                    if c.epoch(room) != hub.epoch:
                        out.append(f"{uri} in {room}: epoch {c.epoch(room)}, hub {hub.epoch}")
                    elif c.tree_hash(room) != hub.observer.tree_hash:
                        out.append(f"{uri} in {room}: tree hash differs from the hub's")
                    elif c.participants(room) != hub.participants():
                        out.append(f"{uri} in {room}: participant list differs from the hub's")
        return out

    # ---------------------------------------------------------------- run

    def setup_done(self) -> bool:
        """Whether every joined client of every room's initial participants is
        a member (False until the rooms are created)."""
        if self._setup_waiting is None:
            return False
        self._setup_waiting = [(room, c) for room, c in self._setup_waiting if not self.clients[c].core.is_member(room)]
        return not self._setup_waiting

    def _run_to(self, end: float, marks: list[float], bar: Any, t0: float, c0: float) -> None:
        """Run to ``end``, stopping at each of ``marks`` (a progress step:
        ``bar`` advances) and, until the setup ended, every
        :data:`SETUP_POLL_MS` to note when it did: wall and CPU time from
        ``t0``/``c0`` at the first stop that finds it done; the simulated time
        exactly, from the join rows recorded since the stop before."""
        env = self.env
        i = 0
        rows = 0
        while env.now < end:
            nxt = marks[i]
            if self.setup_wall_s is None:
                nxt = min(nxt, env.now + SETUP_POLL_MS)
            waiting = None if self._setup_waiting is None else set(self._setup_waiting)
            env.run(until=nxt)
            if nxt >= marks[i]:
                i += 1
                if bar is not None:
                    bar.update(1)
            if self.setup_wall_s is None:
                if self.setup_done():
                    self.setup_wall_s = time.perf_counter() - t0
                    self.setup_cpu_s = time.process_time() - c0
                    if waiting is None:  # the rooms were created during this stretch
                        waiting = set(self.setup_targets)
                    tr = self.trace
                    self.setup_end_ms = max(
                        (t for t, k, via, room, node in zip(
                            tr.column("t_ms", rows), tr.column("kind", rows), tr.column("via", rows),
                            tr.column("room", rows), tr.column("node", rows), strict=True)
                         if k == "client.epoch" and via in _JOINED_VIA and (room, node) in waiting),
                        default=self._setup_started_ms)
                rows = len(self.trace)

    def run(self, progress: bool | None = None) -> World:
        """Run to the scenario's duration. ``progress``: None shows a bar only
        when the run takes more than two seconds of wall time."""
        scn = self.scenario
        env = self.env
        t0 = time.perf_counter()
        self.trace.record(0.0, E.RunStart(scenario=scn.name, seed=self.seed))
        env.process(self._setup())
        self.workload.start()
        consent.start(self)
        if self.adversaries is not None:
            self.adversaries.start()
        for f in self.plan.faults:
            env.process(self._fault(f))
        end = float(scn.duration)
        mode = scn.outputs.progress if progress is None else ("always" if progress else "never")
        c0 = time.process_time()
        if mode == "never":
            self._run_to(end, [end], None, t0, c0)
        else:
            from tqdm import tqdm

            steps = 200
            with tqdm(total=steps, desc=f"{scn.name} seed {self.seed}", unit="step", leave=False,
                      delay=0.0 if mode == "always" else 2.0) as bar:
                self._run_to(end, [end * i / steps for i in range(1, steps + 1)], bar, t0, c0)
        if self.adversaries is not None:
            self.adversaries.finish()
        self.trace.record(end, E.RunEnd(events=len(self.trace)))
        for f, n, why in fault_effects(self.trace, self.plan, end):
            self.trace.record(end, E.FaultEffect(status="bit" if n else "harmless", fault_id=f.id, fault_kind=f.kind,
                                                 affected=n, text=why), f.node)
        self.wall_s = time.perf_counter() - t0
        return self
