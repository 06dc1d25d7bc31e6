"""Cross-field checks: references between sections, one function per section.

Pydantic checks each value on its own (types, units, ranges, unknown keys);
what it cannot see is whether a name used in one section exists in another
(a user's provider, a room's participants, a script's client, a fault's
node). :func:`check_scenario` runs one function per section over a
scenario whose defaults are already filled in (:func:`~mimisim.sim.scenario.
resolve.fill_defaults`) and raises one :class:`ScenarioError` listing every
problem, each at its own key path. The checks only read: they change
nothing, so their order does not matter except for the order of problems
in the error (kept as it always was: users, links, rooms, workload,
adversaries, faults).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from mimisim.mimi.identity import parse
from mimisim.sim.scenario.errors import ScenarioError
from mimisim.sim.scenario.faults import (
    CrashFault,
    DegradeFault,
    FailoverFault,
    OfflineFault,
    PartitionFault,
    RestartFault,
)
from mimisim.sim.scenario.keypath import format_key_path
from mimisim.sim.scenario.network import parse_link_key
from mimisim.sim.scenario.parties import _check_active_role
from mimisim.sim.units import format_duration

if TYPE_CHECKING:
    from mimisim.sim.scenario.model import Scenario

__all__ = ["check_scenario"]

Loc = tuple[Any, ...]


def _problems(items: list[tuple[Loc, str]]) -> ScenarioError:
    """The cross-field checks' findings as one (location-less) error."""
    errs = [ScenarioError(msg, loc=loc, path=format_key_path(loc)) for loc, msg in items]
    return ScenarioError(errs[0].message, loc=errs[0].loc, path=errs[0].path, problems=errs)


class _Checker:
    """The problems found so far and the reference checks every section uses."""

    def __init__(self, scenario: Scenario) -> None:
        self.sc = scenario
        self.problems: list[tuple[Loc, str]] = []

    def bad(self, loc: Loc, msg: str) -> None:
        self.problems.append((loc, msg))

    def provider(self, loc: Loc, domain: str, what: str = "provider") -> bool:
        providers = self.sc.providers
        if domain not in providers:
            self.bad(loc, f"unknown {what} '{domain}' (providers: {', '.join(providers)})")
            return False
        return True

    def client(self, loc: Loc, ref: str) -> str | None:
        """The client's URI, or None (and a problem) when ``ref`` names no client."""
        try:
            return self.sc._resolve_client(ref)
        except ValueError as e:
            self.bad(loc, str(e))
            return None

    def user(self, loc: Loc, user: str) -> bool:
        if user not in self.sc.users:
            self.bad(loc, f"unknown user '{user}' (users: {', '.join(self.sc.users) or 'none'})")
            return False
        return True

    def room(self, loc: Loc, room: str) -> bool:
        if room not in self.sc.rooms:
            self.bad(loc, f"unknown room '{room}' (rooms: {', '.join(self.sc.rooms) or 'none'})")
            return False
        return True

    def access(self, loc: Loc, profile: str, *, listed: bool = True) -> None:
        access = self.sc.network.access
        if profile not in access:
            known = f" (profiles: {', '.join(access)})" if listed else ""
            self.bad(loc, f"unknown access profile '{profile}'{known}")

    def created_at_hub(self, loc: Loc, uri: str, room: str) -> None:
        """A room is created by a client of its hub (a provider refuses to create a
        room it does not host: 403 'rooms are created at their hub')."""
        hub = self.sc.rooms[room].hub
        domain = parse(uri).domain
        if domain != hub and hub in self.sc.providers and domain in self.sc.providers:
            self.bad(
                loc,
                f"'{uri}' is a client of {domain}, not of the room's hub {hub} (a room is created by a "
                "client of its hub: set created_by or put a participant of the hub first)",
            )

    def before_end(self, loc: Loc, at: float) -> None:
        end = self.sc.duration
        if at >= end:
            self.bad(
                loc, f"{format_duration(at)} is not before the end of the run (duration {format_duration(end)})"
            )

    def link_pair(self, loc: Loc, key: str, *, undirected: bool) -> tuple[str, str, bool] | None:
        try:
            a, b, both = parse_link_key(key)
        except ValueError as e:
            self.bad(loc, str(e))
            return None
        if undirected and not both:
            self.bad(loc, f"degradations apply to both directions; write '{a}<>{b}'")
            return None
        if self.provider(loc, a) and self.provider(loc, b):
            if a == b:
                self.bad(loc, f"a link joins two different providers, got '{key}'")
                return None
            return a, b, both
        return None


def check_users(c: _Checker) -> None:
    """Each user's provider exists; each client's access profile exists and its offline windows start in the run."""
    for user, spec in c.sc.users.items():
        c.provider(("users", user, "provider"), spec.provider)
        for device, client in spec.clients.items():
            c.access(("users", user, "clients", device, "access"), client.access)
            for i, w in enumerate(client.offline):
                c.before_end(("users", user, "clients", device, "offline", i, "start"), w.start)


def check_links(c: _Checker) -> None:
    """Link overrides join two known, different providers; a direction has at
    most one two-way and one (more specific) one-way override."""
    seen_dirs: dict[tuple[str, str, bool], str] = {}
    for key in c.sc.network.links:
        pair = c.link_pair(("network", "links", key), key, undirected=False)
        if pair is None:
            continue
        a, b, both = pair
        for src, dst in [(a, b), (b, a)] if both else [(a, b)]:
            prev = seen_dirs.get((src, dst, both))
            if prev is not None:
                c.bad(("network", "links", key), f"the direction {src}>{dst} is already set by '{prev}'")
            seen_dirs[(src, dst, both)] = key


def _created_by_script(sc: Scenario) -> set[str]:
    return {s.room for s in sc.workload.script if s.action == "create_room"}


def check_consent(c: _Checker) -> None:
    """The users who refuse consent exist."""
    for i, user in enumerate(c.sc.protocol.consent.refuse):
        if user not in c.sc.users:
            c.bad(("protocol", "consent", "refuse", i), f"unknown user '{user}'")


def check_rooms(c: _Checker) -> None:
    """Hubs exist; participants are users with active roles; a room has
    initial participants (and a creator among them) or is created by the script."""
    sc = c.sc
    scripted = _created_by_script(sc)
    for room, r in sc.rooms.items():
        c.provider(("rooms", room, "hub"), r.hub, "hub provider")
        pp = r.policy.pending_proposals
        if pp is not None and pp.strategy == "designated":
            if pp.committer is None:
                c.bad(("rooms", room, "policy", "pending_proposals"), "strategy 'designated' needs a 'committer'")
            else:
                c.client(("rooms", room, "policy", "pending_proposals", "committer"), pp.committer)
        elif pp is not None and pp.committer is not None:
            c.bad(("rooms", room, "policy", "pending_proposals", "committer"),
                  "'committer' is read only with strategy 'designated'")
        for user, role in r.participants.items():
            if c.user(("rooms", room, "participants", user), user):
                try:
                    _check_active_role(role, r.policy.roles)
                except ValueError as e:
                    c.bad(("rooms", room, "participants", user), str(e))
        if not r.participants:
            if room not in scripted:
                c.bad(
                    ("rooms", room),
                    "a room without participants must be created by a script step 'action: create_room'",
                )
            continue
        if room in scripted:
            c.bad(
                ("rooms", room, "participants"),
                "a room created by a script 'create_room' starts without participants",
            )
        if r.created_by is None:
            # fill_defaults found no joined client of the first participant
            first = next(iter(r.participants))
            if first in sc.users:
                c.bad(("rooms", room, "participants", first), f"user '{first}' has no joined client to create the room")
            continue
        uri = c.client(("rooms", room, "created_by"), r.created_by)
        if uri is not None and parse(uri).path[0] not in r.participants:
            c.bad(("rooms", room, "created_by"), f"'{uri}' does not belong to a participant of the room")
        elif uri is not None:
            c.created_at_hub(("rooms", room, "created_by"), uri, room)


def check_activities(c: _Checker) -> None:
    """The Poisson activities name known rooms, users and access profiles, and start within the run."""
    wl = c.sc.workload
    for section in ("messages", "updates", "adds", "removes", "leaves"):
        act = getattr(wl, section)
        if act is None:
            continue
        for i, room in enumerate(act.rooms or []):
            c.room(("workload", section, "rooms", i), room)
        for i, user in enumerate(getattr(act, "users", None) or []):
            c.user(("workload", section, "users", i), user)
        c.before_end(("workload", section, "start"), act.start)
    if wl.new_devices is not None:
        for i, user in enumerate(wl.new_devices.users or []):
            c.user(("workload", "new_devices", "users", i), user)
        c.access(("workload", "new_devices", "access"), wl.new_devices.access, listed=False)


def check_script(c: _Checker) -> None:
    """Each script step: a known client and room, the keys its action takes, one creation per room."""
    sc = c.sc
    creates: dict[str, int] = {}
    for i, step in enumerate(sc.workload.script):
        loc = ("workload", "script", i)
        c.before_end((*loc, "at"), step.at)
        uri = c.client((*loc, "client"), step.client)
        room_ok = c.room((*loc, "room"), step.room)
        needs_user = step.action in ("add_user", "remove_user")
        if needs_user and step.user is None:
            c.bad((*loc, "user"), f"action '{step.action}' needs the target 'user'")
        elif not needs_user and step.user is not None:
            c.bad((*loc, "user"), f"action '{step.action}' takes no 'user'")
        elif step.user is not None:
            c.user((*loc, "user"), step.user)
        if step.role is not None and step.action not in ("create_room", "add_user"):
            c.bad((*loc, "role"), f"action '{step.action}' takes no 'role'")
        elif step.role is not None and room_ok:
            try:
                _check_active_role(step.role, sc.rooms[step.room].policy.roles)
            except ValueError as e:
                c.bad((*loc, "role"), str(e))
        if step.action != "send" and (step.size is not None or step.text is not None):
            c.bad((*loc, "size" if step.size is not None else "text"), f"action '{step.action}' sends no message")
        if step.action == "create_room":
            if uri is not None and room_ok:
                c.created_at_hub((*loc, "client"), uri, step.room)
            if step.room in creates:
                c.bad((*loc, "room"), f"room '{step.room}' is already created by script step {creates[step.room]}")
            creates.setdefault(step.room, i)
        if step.action == "join_room" and uri is not None:
            user, device = parse(uri).path
            if sc.users[user].clients[device].joined:
                c.bad(
                    (*loc, "client"),
                    f"'{uri}' is joined from the start; a device that joins later has 'joined: false'",
                )


def check_adversaries(c: _Checker) -> None:
    """Attackers name known providers, clients and rooms; a follower is not its room's hub."""
    sc = c.sc
    adv = sc.adversaries
    if sc.protocol.profile == "ds" and adv.any():
        # The attacks forge MIMI bodies (/notify, /update, franks); the ds
        # profile's attacks are tests/test_ds_adversaries.py (docs/ds-choices.md).
        c.bad(("adversaries",), "adversaries are MIMI attacks and are not defined under protocol.profile ds")
        return
    for i, f in enumerate(adv.followers):
        loc = ("adversaries", "followers", i)
        c.before_end((*loc, "start"), f.start)
        c.provider((*loc, "provider"), f.provider)
        c.room((*loc, "room"), f.room)
        if f.room in sc.rooms and f.provider == sc.rooms[f.room].hub:
            c.bad((*loc, "provider"), f"'{f.provider}' is the hub of '{f.room}', not a follower")
    for i, a in enumerate(adv.clients):
        loc = ("adversaries", "clients", i)
        c.before_end((*loc, "start"), a.start)
        c.client((*loc, "client"), a.client)
        c.room((*loc, "room"), a.room)
    for i, s in enumerate(adv.compromises):
        loc = ("adversaries", "compromises", i)
        c.before_end((*loc, "start"), s.start)
        c.client((*loc, "client"), s.client)
        c.room((*loc, "room"), s.room)
    for i, m in enumerate(adv.malformed):
        loc = ("adversaries", "malformed", i)
        c.before_end((*loc, "start"), m.start)
        c.provider((*loc, "provider"), m.provider)


def _partition_node_is_provider(node: str) -> bool:
    """A partition member written like a domain (and not a client reference) names a provider."""
    return "." in node and "/" not in node and not node.startswith("mimi://")


def check_fault_schedule(c: _Checker) -> None:
    """Scheduled faults: in the run, on known nodes, clients and links; failover needs a standby;
    no node in two partition groups."""
    providers = c.sc.providers
    for i, f in enumerate(c.sc.faults.schedule):
        loc = ("faults", "schedule", i)
        c.before_end((*loc, "at"), f.at)
        if isinstance(f, CrashFault | RestartFault):
            c.provider((*loc, "node"), f.node)
        elif isinstance(f, FailoverFault):
            if c.provider((*loc, "hub"), f.hub) and providers[f.hub].standby is None:
                c.bad(
                    (*loc, "hub"),
                    f"provider '{f.hub}' has no standby to fail over to (set providers[{f.hub}].standby)",
                )
        elif isinstance(f, PartitionFault):
            seen: dict[str, int] = {}
            for g, group in enumerate(f.groups):
                for j, node in enumerate(group):
                    nloc = (*loc, "groups", g, j)
                    if node in providers:
                        name = node
                    elif _partition_node_is_provider(node):
                        c.provider(nloc, node)
                        continue
                    else:
                        name = c.client(nloc, node) or node
                    if name in seen and seen[name] != g:
                        c.bad(nloc, f"'{node}' is in two partition groups")
                    seen[name] = g
        elif isinstance(f, DegradeFault):
            if f.links != "all":
                for j, key in enumerate(f.links):
                    c.link_pair((*loc, "links", j), key, undirected=True)
        elif isinstance(f, OfflineFault):
            c.client((*loc, "client"), f.client)


def check_random_faults(c: _Checker) -> None:
    """Random faults: a non-empty period, known targets, standbys for failovers, two-way links."""
    rf = c.sc.faults.random
    if rf is None:
        return
    providers = c.sc.providers
    base = ("faults", "random")
    if rf.stop is not None and rf.stop <= rf.start:
        c.bad((*base, "stop"), "must be after start")
    if rf.crash is not None:
        for j, node in enumerate(rf.crash.nodes or []):
            c.provider((*base, "crash", "nodes", j), node)
    if rf.failover is not None:
        hubs = rf.failover.hubs
        if hubs is None and not any(p.standby for p in providers.values()):
            c.bad((*base, "failover"), "no provider has a standby to fail over to")
        for j, hub in enumerate(hubs or []):
            if c.provider((*base, "failover", "hubs", j), hub) and providers[hub].standby is None:
                c.bad((*base, "failover", "hubs", j), f"provider '{hub}' has no standby")
    if rf.degrade is not None and rf.degrade.links != "all":
        for j, key in enumerate(rf.degrade.links):
            c.link_pair((*base, "degrade", "links", j), key, undirected=True)
    if rf.offline is not None and rf.offline.clients is not None:
        for j, ref in enumerate(rf.offline.clients):
            c.client((*base, "offline", "clients", j), ref)


#: The checks in the order their problems are listed.
SECTION_CHECKS = (
    check_users,
    check_links,
    check_rooms,
    check_activities,
    check_script,
    check_adversaries,
    check_consent,
    check_fault_schedule,
    check_random_faults,
)


def check_scenario(scenario: Scenario) -> None:
    """Run every section's checks; raise one :class:`ScenarioError` listing all problems.

    Raises :class:`ScenarioError` (not a ``ValueError``) from inside the
    model validator so that pydantic lets it through and the location of
    each problem is its own key path rather than the root.
    """
    checker = _Checker(scenario)
    for check in SECTION_CHECKS:
        check(checker)
    if checker.problems:
        raise _problems(checker.problems)
