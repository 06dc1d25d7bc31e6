"""The ``workload`` section: Poisson activities, the script, wrong-epoch retries."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, ValidationInfo, field_validator

from mimisim.sim.scenario.base import _check_order, _Model
from mimisim.sim.scenario.fields import Duration, Name, Rate, Size


class _StartStop(_Model):
    """A period of activity within the run: [start, stop)."""

    start: Duration = 0.0
    """When the activity begins (simulated time, default 0ms); before the run's end."""
    stop: Duration | None = None
    """Default: the end of the run."""

    @field_validator("stop")
    @classmethod
    def _order(cls, v: float | None, info: ValidationInfo) -> float | None:
        _check_order("start", info, v, strict=True)
        return v


class _Activity(_StartStop):
    rate: Rate
    """Poisson rate (``0.5/s``), per ``per``."""
    rooms: list[str] | None = None
    """Rooms it applies to; default all."""


class MessageActivity(_Activity):
    """Application messages; the sender is a random online member client."""

    per: Literal["room", "client"] = "room"
    """``room``: one Poisson process per room at ``rate``; ``client``: one per client at ``rate``, each event
    in a random one of its rooms."""
    size: Size = 100
    """Plaintext content size."""


class CommitActivity(_Activity):
    """Update (path-only) commits, the epoch-conflict study's driver."""

    per: Literal["room", "client"] = "room"
    """``room``: one Poisson process per room at ``rate``, a random online member commits; ``client``: one per
    client."""


class MembershipActivity(_Activity):
    """Adds, removes or leaves of users, per room."""

    per: Literal["room"] = "room"
    """Always ``room``: one Poisson process per room at ``rate``."""
    users: list[str] | None = None
    """Candidate users (adds: users not in the room; removes, leaves: participants); default all."""


class BulkAddActivity(_Activity):
    """Several users added in one commit, their KeyPackages taken from their clients directly (no /keyMaterial):
    grows a large room fast between the measured single adds of the mls-cost study (docs/studies.md, "MLS
    costs")."""

    per: Literal["room"] = "room"
    """Always ``room``: one Poisson process per room at ``rate``."""
    batch: int = Field(default=20, ge=1)
    """Users per commit (random users not in the room; fewer when fewer are left)."""
    users: list[str] | None = None
    """Candidate users; default all."""


class DeviceActivity(_StartStop):
    """New devices of existing users joining all their user's rooms by external commit."""

    rate: Rate
    """Poisson rate of new devices (``1/min``), per user or for the whole scenario (``per``)."""
    per: Literal["user", "scenario"] = "scenario"
    """``scenario``: one process at ``rate``, each new device for a random user of ``users``; ``user``: one
    process per user."""
    users: list[str] | None = None
    """Users who get new devices; default all."""
    access: Name = "default"
    """Access profile of the new clients."""


class Backoff(_Model):
    """Exponential backoff: attempt n waits min(cap, base * factor^(n-1)), then jitter."""

    base: Duration = 100.0
    """Wait before the second attempt (default 100ms)."""
    factor: float = Field(default=2.0, ge=1.0)
    """Growth of the wait per attempt, at least 1 (default 2: doubling)."""
    cap: Duration = 30_000.0
    """Longest wait, at least ``base`` (default 30s)."""
    jitter: Literal["none", "full", "equal"] = "full"
    """``full``: uniform in [0, wait]; ``equal``: wait/2 + uniform in [0, wait/2]; ``none``: wait."""

    @field_validator("cap")
    @classmethod
    def _order(cls, v: float, info: ValidationInfo) -> float:
        _check_order("base", info, v)
        return v


class WrongEpochRetry(_Model):
    """What a client does when the hub answers its commit with ``wrongEpoch``."""

    max_attempts: int = Field(default=5, ge=1)
    """Attempts in all, the first included."""
    backoff: Backoff = Field(default_factory=lambda: Backoff(base=50.0, cap=2_000.0))
    """Wait between attempts (default: base 50ms, cap 2s, full jitter)."""
    mode: Literal["rebuild", "immediate", "abandon"] = "rebuild"
    """``rebuild``: catch up to the hub's currentEpoch, wait the backoff, recreate the commit with
    the same intent; ``immediate``: recreate it after the backoff against whatever epoch the client
    has (it may be refused again); ``abandon``: drop the intent (Update commits) and carry on."""


ScriptAction = Literal["create_room", "add_user", "remove_user", "leave", "send", "update", "join_room"]


class ScriptStep(_Model):
    """One action at a fixed time (the draft's example flow, step by step)."""

    at: Duration
    """When the step runs (simulated time); before the run's end."""
    client: str
    """Acting client: ``user/device``, a unique device name, or its URI."""
    action: ScriptAction
    """What the client does: ``create_room``, ``add_user``, ``remove_user``, ``leave``, ``send``, ``update`` (a
    path-only commit), ``join_room`` (a later device joins by external commit)."""
    room: str
    """The room acted on (a key of ``rooms``)."""
    user: str | None = None
    """add_user / remove_user: the target user."""
    role: Name | None = None
    """create_room / add_user: the role (default: the policy's creator_role / default_role)."""
    size: Size | None = None
    """send: plaintext size (default: workload.messages.size or 100B)."""
    text: str | None = None
    """send: the message text (its length is the size)."""


class Workload(_Model):
    """What clients do: Poisson activities and/or a fixed script."""

    messages: MessageActivity | None = None
    """Application messages at a Poisson rate, per room or per client; none: no random messages."""
    updates: CommitActivity | None = None
    """Update (path-only) commits at a Poisson rate; none: no random updates."""
    adds: MembershipActivity | None = None
    """Random additions of users to rooms at a Poisson rate per room; none: no random adds."""
    removes: MembershipActivity | None = None
    """Random removals of participants by another member at a Poisson rate per room; none: no removals."""
    leaves: MembershipActivity | None = None
    """Random participants leaving rooms at a Poisson rate per room; none: nobody leaves at random."""
    bulk_adds: BulkAddActivity | None = None
    """Several users added per commit with KeyPackages taken directly (fast growth of a large room); none: no
    bulk adds."""
    new_devices: DeviceActivity | None = None
    """New devices of existing users joining their rooms by external commit; none: no new devices."""
    script: list[ScriptStep] = Field(default_factory=list)
    """Fixed actions at fixed times, run in time order (ties in file order)."""
    retry: WrongEpochRetry = Field(default_factory=WrongEpochRetry)
    """What a client does when the hub refuses its commit with ``wrongEpoch`` (default: rebuild, 5 attempts)."""


# ====================================================================== faults
