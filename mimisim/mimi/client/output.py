"""What a client call returns: a frozen :class:`ClientStep`.

Inside one call the client collects its output in a :class:`StepBuilder`
(lists, appended in the order things happen); the call returns
:meth:`StepBuilder.freeze`, whose fields are tuples of frozen values, so a
host can read the core's actions but not rewrite them in place. The field
names ``actions`` and ``events`` are those of the provider's and hub's
output envelope.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from mimisim import events as E
from mimisim.mimi.transport import ClientMessage


@dataclass(frozen=True)
class Timer:
    """Call :meth:`ClientCore.on_timer` with ``token`` at simulated time ``at_ms``."""

    at_ms: int
    token: int


#: What a client asks its host to do: send a message to its provider, arm a timer.
ClientAction = ClientMessage | Timer

#: An application message shown to the user: (room, sender user, text, msg_id).
Delivered = tuple[str, str, str, str]


@dataclass(frozen=True)
class ClientStep:
    """What one client call produced, in the order it happened.

    ``actions`` holds the :class:`~mimisim.mimi.transport.ClientMessage` s to
    send and the :class:`Timer` s to arm; ``events`` the typed trace events (:mod:`mimisim.events`);
    ``delivered`` a ``(room, sender_user, text, msg_id)`` for each
    application message shown to the user.
    """

    actions: tuple[ClientAction, ...] = ()
    events: tuple[E.TraceEvent, ...] = ()
    delivered: tuple[Delivered, ...] = ()

    @property
    def messages(self) -> tuple[ClientMessage, ...]:
        """The messages to the client's provider, in order."""
        return tuple(a for a in self.actions if isinstance(a, ClientMessage))

    @property
    def timers(self) -> tuple[Timer, ...]:
        """The timers to arm, in order."""
        return tuple(a for a in self.actions if isinstance(a, Timer))


@dataclass
class StepBuilder:
    """The mutable collector one client call appends to; frozen at its end."""

    actions: list[ClientAction] = field(default_factory=list)
    events: list[E.TraceEvent] = field(default_factory=list)
    delivered: list[Delivered] = field(default_factory=list)

    def freeze(self) -> ClientStep:
        return ClientStep(tuple(self.actions), tuple(self.events), tuple(self.delivered))

    def emit(self, ev: E.TraceEvent) -> None:
        """Record one trace event (a typed event of :mod:`mimisim.events`)."""
        self.events.append(ev)

    def drop(self, room: str = "", epoch: int | None = None, msg_id: str = "", status: str = "", text: str = "",
             peer: str = "") -> None:
        """A ``client.drop``: ``status`` says why, ``text`` explains."""
        self.events.append(E.ClientDrop(room=room, epoch=epoch, msg_id=msg_id, status=status, text=text, peer=peer))

    def gap(self, room: str, epoch: int | None, msg_id: str, status: str, text: str) -> None:
        """A ``client.gap``: the client is behind (see :class:`mimisim.events.ClientGap`)."""
        self.events.append(E.ClientGap(room=room, epoch=epoch, msg_id=msg_id, status=status, text=text))
