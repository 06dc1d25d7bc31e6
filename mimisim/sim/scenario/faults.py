"""The ``faults`` (scheduled and random) and ``adversaries`` sections."""

from __future__ import annotations

from typing import Annotated, Literal, get_args

from pydantic import Field

from mimisim.sim.scenario.base import _Model
from mimisim.sim.scenario.distributions import Distribution
from mimisim.sim.scenario.fields import Domain, Duration, Name, Probability, Rate
from mimisim.sim.scenario.workload import _StartStop


class _Timed(_Model):
    at: Duration


class _Windowed(_Timed):
    duration: Duration | None = None
    """How long it lasts; none means until the end of the run."""


class CrashFault(_Timed):
    """A provider stops; it restarts after ``duration`` (or at a ``restart`` fault)."""

    kind: Literal["crash"]
    node: Domain
    state: Literal["durable", "volatile"] | None = None
    """Default: the provider's ``state``."""
    duration: Duration | None = None


class RestartFault(_Timed):
    """A crashed provider starts again."""

    kind: Literal["restart"]
    node: Domain


class FailoverFault(_Timed):
    """The hub crashes and its standby takes over its domain."""

    kind: Literal["failover"]
    hub: Domain


class PartitionFault(_Windowed):
    """Nodes in different groups cannot talk; unnamed providers form one more group,
    clients go with their provider unless named."""

    kind: Literal["partition"]
    groups: list[list[str]] = Field(min_length=1)


class DegradeFault(_Windowed):
    """Links get slower and lossier for a while."""

    kind: Literal["degrade"]
    links: list[str] | Literal["all"] = "all"
    """``a.example<>b.example`` pairs (both directions), or ``all``."""
    latency_factor: float = Field(default=1.0, ge=0)
    extra_latency: Duration = 0.0
    extra_loss: Probability = 0.0


class OfflineFault(_Windowed):
    """A client goes offline."""

    kind: Literal["offline"]
    client: str


Fault = Annotated[
    CrashFault | RestartFault | FailoverFault | PartitionFault | DegradeFault | OfflineFault,
    Field(discriminator="kind"),
]


class RandomCrash(_Model):
    rate: Rate
    duration: Distribution
    """Downtime."""
    nodes: list[Domain] | None = None
    """Default: every provider."""
    state: Literal["durable", "volatile"] | None = None


class RandomFailover(_Model):
    rate: Rate
    hubs: list[Domain] | None = None
    """Default: every provider with a standby."""


class RandomPartition(_Model):
    rate: Rate
    duration: Distribution


class RandomDegrade(_Model):
    rate: Rate
    duration: Distribution
    links: list[str] | Literal["all"] = "all"
    latency_factor: float = Field(default=1.0, ge=0)
    extra_latency: Duration = 0.0
    extra_loss: Probability = 0.0


class RandomOffline(_Model):
    rate: Rate
    duration: Distribution
    clients: list[str] | None = None
    """Default: every client."""


class RandomFaults(_Model):
    """Each kind is a Poisson process at ``rate`` over the whole scenario, picking a target uniformly."""

    seed: int | None = Field(default=None, ge=0)
    """Default: derived from the run's seed (stream ``faults.random``)."""
    start: Duration = 0.0
    stop: Duration | None = None
    crash: RandomCrash | None = None
    failover: RandomFailover | None = None
    partition: RandomPartition | None = None
    degrade: RandomDegrade | None = None
    offline: RandomOffline | None = None


class Faults(_Model):
    schedule: list[Fault] = Field(default_factory=list)
    """Fixed faults, each with ``kind`` and ``at``."""
    random: RandomFaults | None = None


# ====================================================================== adversaries

FollowerAttack = Literal["replay_notify", "spoof_from", "tamper", "withhold_fanout"]
ClientAttack = Literal["non_member_submit", "forged_signature", "after_removal", "reuse_key_package",
                       "stale_epoch"]
_FOLLOWER_ATTACKS: tuple[FollowerAttack, ...] = get_args(FollowerAttack)
_CLIENT_ATTACKS: tuple[ClientAttack, ...] = get_args(ClientAttack)


class _Attacker(_StartStop):
    rate: Rate
    """Poisson rate of attempts; each attempt takes the next attack of ``attacks`` in turn."""


class FollowerAdversary(_Attacker):
    """A provider that turns against a room it follows (``mimisim.sim.adversary``): it replays
    old ``/notify`` bodies to another follower, claims another provider's ``From``, sends
    tampered commits to the hub, and withholds a commit's fanout from its own clients."""

    provider: Domain
    room: Name
    attacks: list[FollowerAttack] = Field(
        default_factory=lambda: list(_FOLLOWER_ATTACKS), min_length=1)


class ClientAdversary(_Attacker):
    """A malicious client: submits to a room it is not in, forges signatures, acts after its
    user was removed, republishes a used KeyPackage, commits on a stale epoch."""

    client: str
    """``user/device``, a unique device name, or its URI."""
    room: Name
    attacks: list[ClientAttack] = Field(
        default_factory=lambda: list(_CLIENT_ATTACKS), min_length=1)


class MalformedAdversary(_Attacker):
    """A provider that sends malformed bodies (random bytes, truncated valid bodies) to every
    endpoint of every other provider, in turn."""

    provider: Domain


class Adversaries(_Model):
    """Malicious actors; the trace records each attempt (``adversary.attempt``) and its outcome
    (``adversary.rejected`` / ``adversary.accepted`` / ``adversary.unanswered``)."""

    followers: list[FollowerAdversary] = Field(default_factory=list)
    clients: list[ClientAdversary] = Field(default_factory=list)
    malformed: list[MalformedAdversary] = Field(default_factory=list)

    def any(self) -> bool:
        return bool(self.followers or self.clients or self.malformed)


# ====================================================================== protocol, outputs, sweep
