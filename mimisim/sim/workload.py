"""What the simulated users do: Poisson activities and a fixed script.

Each activity of each room (or client, or user) is its own Poisson process
with its own random stream (``workload:<activity>:<target>``), so adding an
activity or a room never shifts the draws of another. At each event the
process picks its actor uniformly among the *online members* of the room,
sorted by URI (never from an unordered set), and asks that client's core to
act; if nobody qualifies the event is recorded as skipped, not silently
lost. Whether the action then succeeds is up to the protocol: a member
without ``canAddParticipant`` who tries an add gets ``notAllowed``, and that
is data too.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from functools import partial
from typing import TYPE_CHECKING, Any

import numpy as np

from mimisim import events as E
from mimisim.mimi.client import ClientCore
from mimisim.mimi.identity import client_uri
from mimisim.sim.rng import stream

if TYPE_CHECKING:
    from mimisim.sim.nodes import ClientNode
    from mimisim.sim.world import World


def filler_text(prefix: str, size: int) -> str:
    """A message text of exactly ``size`` bytes (at least the prefix)."""
    if len(prefix) >= size:
        return prefix
    return prefix + "x" * (size - len(prefix))


class Workload:
    """The workload processes of one world."""

    def __init__(self, world: World) -> None:
        self.world = world
        self.scn = world.scenario
        self._sent = 0
        self._new_devices = 0
        # room -> users whose leave the workload asked for and that are still listed
        self._leaving: dict[str, set[str]] = {}

    # ---------------------------------------------------------------- helpers

    def _record(self, node: str, room: str, action: str, status: str = "", detail: str = "",
                user: str | None = None, step: int | None = None) -> None:
        w = self.world
        w.trace.record(w.env.now, E.WorkloadAction(room=room, status=status, action=action, target_user=user,
                                                   step=step, text=detail), node)

    def online_members(self, room: str) -> list[ClientNode]:
        w = self.world
        now = w.env.now
        out = []
        for uri in w.room_candidates.get(room, ()):
            node = w.clients[uri]
            if node.core.is_member(room) and w.network.is_online(uri, now):
                out.append(node)
        return out

    def _poisson(self, name: str, rate_per_s: float, start: float, stop: float | None,
                 act: Callable[[np.random.Generator], None]) -> Generator:
        env = self.world.env
        gen = stream(self.world.seed, "workload:" + name)
        end = float(self.scn.duration) if stop is None else float(stop)
        if rate_per_s <= 0:
            return
        mean = 1000.0 / rate_per_s
        t = float(start)
        while True:
            t += float(gen.exponential(mean))
            if t >= end:
                return
            yield env.timeout(t - env.now)
            act(gen)

    def _rooms(self, names: list[str] | None) -> list[str]:
        names = names if names is not None else list(self.scn.rooms)
        return [self.scn.room_uri(n) for n in names]

    def _pick(self, gen: np.random.Generator, items: list[Any]) -> Any:
        return items[int(gen.integers(len(items)))]

    # ---------------------------------------------------------------- activities

    def start(self) -> None:
        wl = self.scn.workload
        env = self.world.env
        if wl.messages is not None:
            msg = wl.messages
            if msg.per == "room":
                for room in self._rooms(msg.rooms):
                    env.process(self._poisson(f"messages:{room}", msg.rate, msg.start, msg.stop,
                                              partial(self._send_in_room, room=room, size=msg.size)))
            else:
                msg_rooms = self._rooms(msg.rooms)
                for uri in sorted(self.world.clients):
                    env.process(self._poisson(f"messages:{uri}", msg.rate, msg.start, msg.stop,
                                              partial(self._send_from_client, uri=uri, rooms=msg_rooms,
                                                      size=msg.size)))
        if wl.updates is not None:
            upd = wl.updates
            if upd.per == "room":
                for room in self._rooms(upd.rooms):
                    env.process(self._poisson(f"updates:{room}", upd.rate, upd.start, upd.stop,
                                              partial(self._update_in_room, room=room)))
            else:
                upd_rooms = self._rooms(upd.rooms)
                for uri in sorted(self.world.clients):
                    env.process(self._poisson(f"updates:{uri}", upd.rate, upd.start, upd.stop,
                                              partial(self._update_from_client, uri=uri, rooms=upd_rooms)))
        for kind in ("adds", "removes", "leaves"):
            a = getattr(wl, kind)
            if a is None:
                continue
            for room in self._rooms(a.rooms):
                env.process(self._poisson(f"{kind}:{room}", a.rate, a.start, a.stop,
                                          partial(self._membership, room=room, kind=kind, users=a.users)))
        if wl.bulk_adds is not None:
            b = wl.bulk_adds
            for room in self._rooms(b.rooms):
                env.process(self._poisson(f"bulk_adds:{room}", b.rate, b.start, b.stop,
                                          partial(self._bulk_add, room=room, batch=b.batch, users=b.users)))
        if wl.new_devices is not None:
            dev = wl.new_devices
            users = dev.users or list(self.scn.users)
            if dev.per == "scenario":

                def new_device_of_anyone(g: np.random.Generator, users: list[str] = users,
                                         access: str = dev.access) -> None:
                    self._new_device(self._pick(g, users), access)

                env.process(self._poisson("new_devices", dev.rate, dev.start, dev.stop, new_device_of_anyone))
            else:
                for user in users:

                    def new_device_of(g: np.random.Generator, user: str = user, access: str = dev.access) -> None:
                        self._new_device(user, access)

                    env.process(self._poisson(f"new_devices:{user}", dev.rate, dev.start, dev.stop, new_device_of))
        for i, step in enumerate(sorted(enumerate(wl.script), key=lambda x: (x[1].at, x[0]))):
            env.process(self._script(i, step[1]))

    def _text(self, size: int) -> str:
        self._sent += 1
        return filler_text(f"m{self._sent} ", int(size))

    def _send_in_room(self, gen: np.random.Generator, room: str, size: int) -> None:
        members = self.online_members(room)
        if not members:
            self._record("", room, "send", "skipped", "no online member")
            return
        node = self._pick(gen, members)
        self._record(node.uri, room, "send")
        node.apply(node.core.send_message(room, self._text(size), node.now))

    def _send_from_client(self, gen: np.random.Generator, uri: str, rooms: list[str], size: int) -> None:
        node = self.world.clients[uri]
        mine = [r for r in rooms if node.core.is_member(r)]
        if not mine or not self.world.network.is_online(uri, self.world.env.now):
            self._record(uri, "", "send", "skipped", "offline or in no room")
            return
        room = self._pick(gen, mine)
        self._record(uri, room, "send")
        node.apply(node.core.send_message(room, self._text(size), node.now))

    def _update_in_room(self, gen: np.random.Generator, room: str) -> None:
        members = self.online_members(room)
        if not members:
            self._record("", room, "update", "skipped", "no online member")
            return
        node = self._pick(gen, members)
        self._record(node.uri, room, "update")
        node.call(node.core.update, room, node.now)

    def _update_from_client(self, gen: np.random.Generator, uri: str, rooms: list[str]) -> None:
        node = self.world.clients[uri]
        mine = [r for r in rooms if node.core.is_member(r)]
        if not mine or not self.world.network.is_online(uri, self.world.env.now):
            self._record(uri, "", "update", "skipped", "offline or in no room")
            return
        room = self._pick(gen, mine)
        self._record(uri, room, "update")
        node.call(node.core.update, room, node.now)

    def _membership(self, gen: np.random.Generator, room: str, kind: str, users: list[str] | None) -> None:
        w = self.world
        members = self.online_members(room)
        if not members:
            self._record("", room, kind[:-1], "skipped", "no online member")
            return
        candidates = sorted(users or self.scn.users)
        if kind == "adds":
            actor = self._pick(gen, members)
            listed = actor.core.participants(room)
            choices = [u for u in candidates if self.scn.user_uri(u) not in listed]
            if not choices:
                self._record(actor.uri, room, "add_user", "skipped", "every candidate is a participant")
                return
            user = self._pick(gen, choices)
            w.add_candidates(room, user)
            self._record(actor.uri, room, "add_user", user=user)
            actor.call(actor.core.add_user, room, self.scn.user_uri(user), actor.now)
        elif kind == "removes":
            # A user whose leave is pending does not remove others (it could remove
            # the last member able to commit its own leave).
            pending = self._leaving.get(room, set())
            actors = [m for m in members if m.core.user_uri not in pending]
            if not actors:
                self._record("", room, "remove_user", "skipped", "every online member is leaving")
                return
            actor = self._pick(gen, actors)
            listed = actor.core.participants(room)
            choices = [u for u in candidates if self.scn.user_uri(u) in listed and
                       self.scn.user_uri(u) != actor.core.user_uri]
            if not choices:
                self._record(actor.uri, room, "remove_user", "skipped", "no other participant")
                return
            user = self._pick(gen, choices)
            self._record(actor.uri, room, "remove_user", user=user)
            actor.apply(actor.core.remove_user(room, self.scn.user_uri(user), actor.now))
        else:
            by_user: dict[str, list[ClientNode]] = {}
            for m in members:
                by_user.setdefault(m.core.user_uri, []).append(m)
            allowed = {self.scn.user_uri(u) for u in candidates}
            # A leave is only proposed; another member must commit it. Users whose
            # leave is still pending do not count as staying (two last users both
            # leaving left a room nobody could commit in: leave-latency seed 10).
            listed = set(members[0].core.participants(room))
            leaving = self._leaving.setdefault(room, set())
            leaving &= listed
            staying = [u for u in by_user if u not in leaving]
            choices = sorted(u for u in staying if u in allowed)
            if len(staying) < 2 or not choices:
                self._record("", room, "leave", "skipped", "no user could leave (or only one would stay)")
                return
            user = self._pick(gen, choices)
            leaving.add(user)
            node = self._pick(gen, by_user[user])
            self._record(node.uri, room, "leave")
            node.apply(node.core.leave(room, node.now))

    def _bulk_add(self, gen: np.random.Generator, room: str, batch: int, users: list[str] | None) -> None:
        """A random online member adds ``batch`` random users not in the room
        in one commit, each client's KeyPackage taken from it directly
        (ClientCore.direct_key_package: no /keyMaterial round trip)."""
        w = self.world
        members = self.online_members(room)
        if not members:
            self._record("", room, "add_users", "skipped", "no online member")
            return
        actor = self._pick(gen, members)
        listed = set(actor.core.participants(room))
        choices = [u for u in sorted(users or self.scn.users) if self.scn.user_uri(u) not in listed]
        if not choices:
            self._record(actor.uri, room, "add_users", "skipped", "every candidate is a participant")
            return
        picked = sorted(int(i) for i in gen.choice(len(choices), size=min(batch, len(choices)), replace=False))
        adds = []
        for i in picked:
            user = choices[i]
            uri = self.scn.user_uri(user)
            w.add_candidates(room, user)
            clients = w.clients_of_user.get(uri, [])
            adds.append((uri, [w.clients[c].core.direct_key_package() for c in clients]))
        self._record(actor.uri, room, "add_users", detail=f"{len(adds)} users")
        actor.call(actor.core.add_with_key_packages, room, adds, actor.now)

    def _new_device(self, user: str, access: str) -> None:
        w = self.world
        self._new_devices += 1
        spec = self.scn.users[user]
        device = f"new{self._new_devices}"
        uri = client_uri(spec.provider, user, device)
        node = w.add_client(uri, spec.provider, access if access in self.scn.network.access else None)
        rooms = sorted(r for r, cands in w.room_candidates.items()
                       if any(w.clients[c].core.user_uri == node.core.user_uri and w.clients[c].core.is_member(r)
                              for c in cands))
        self._record(uri, "", "new_device", detail=f"joins {len(rooms)} room(s)")
        node.apply(node.core.upload_key_packages(w.key_packages))
        for room in rooms:
            w.room_candidates[room].append(uri)
            w.room_candidates[room].sort()
            node.apply(node.core.join_new_device(room, node.now))

    # ---------------------------------------------------------------- script

    def _script(self, index: int, step: Any) -> Generator:
        w = self.world
        yield w.env.timeout(max(0.0, float(step.at) - w.env.now))
        uri = self.scn.client(step.client).uri
        node = w.clients[uri]
        core: ClientCore = node.core
        room = self.scn.room_uri(step.room)
        now = node.now
        self._record(uri, room, step.action, user=self.scn.user_uri(step.user) if step.user else None, step=index)
        if step.action == "create_room":
            w.add_candidates(room, core.user_uri, client=uri)
            node.apply(w.create_room_step(node, step.room, step.role))
        elif step.action == "add_user":
            assert step.user is not None
            w.add_candidates(room, step.user)
            node.apply(core.add_user(room, self.scn.user_uri(step.user), now, role=step.role))
        elif step.action == "remove_user":
            assert step.user is not None
            node.apply(core.remove_user(room, self.scn.user_uri(step.user), now))
        elif step.action == "leave":
            node.apply(core.leave(room, now))
        elif step.action == "send":
            size = step.size if step.size is not None else (
                self.scn.workload.messages.size if self.scn.workload.messages is not None else 100)
            text = step.text if step.text is not None else self._text(int(size))
            node.apply(core.send_message(room, text, now))
        elif step.action == "update":
            node.apply(core.update(room, now))
        elif step.action == "join_room":
            w.add_candidates(room, core.user_uri, client=uri)
            node.apply(core.join_new_device(room, now))
