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

from mimisim.mimi.transport import ClientMessage, Event


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
    send and the :class:`Timer` s to arm; ``events`` the trace events;
    ``delivered`` a ``(room, sender_user, text, msg_id)`` for each
    application message shown to the user.
    """

    actions: tuple[ClientAction, ...] = ()
    events: tuple[Event, ...] = ()
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
    events: list[Event] = field(default_factory=list)
    delivered: list[Delivered] = field(default_factory=list)

    def freeze(self) -> ClientStep:
        return ClientStep(tuple(self.actions), tuple(self.events), tuple(self.delivered))

    def ev(self, kind: str, room: str = "", epoch: int | None = None, msg_id: str = "", status: str = "",
           detail: str = "", peer: str = "") -> None:
        """Record one trace event."""
        self.events.append(Event(kind, room=room, epoch=epoch, msg_id=msg_id, status=status, detail=detail,
                                 peer=peer))
