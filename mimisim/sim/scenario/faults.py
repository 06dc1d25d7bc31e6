"""The ``faults`` (scheduled and random) and ``adversaries`` sections."""

from __future__ import annotations

from typing import Annotated, Literal, get_args

from pydantic import Field

from mimisim.sim.rng import MAX_SEED
from mimisim.sim.scenario.base import _Model
from mimisim.sim.scenario.distributions import Distribution
from mimisim.sim.scenario.fields import Domain, Duration, Name, Probability, Rate
from mimisim.sim.scenario.workload import _StartStop


class _Timed(_Model):
    at: Duration
    """When the fault happens (simulated time); before the run's end."""


class _Windowed(_Timed):
    duration: Duration | None = None
    """How long it lasts; none means until the end of the run."""


class CrashFault(_Timed):
    """A provider stops; it restarts after ``duration`` (or at a ``restart`` fault)."""

    kind: Literal["crash"]
    """Selects a provider crash."""
    node: Domain
    """Domain of the provider that crashes."""
    state: Literal["durable", "volatile"] | None = None
    """Default: the provider's ``state``."""
    duration: Duration | None = None
    """Downtime before it restarts by itself; none: down until a ``restart`` fault or the end of the run."""


class RestartFault(_Timed):
    """A crashed provider starts again."""

    kind: Literal["restart"]
    """Selects the restart of a crashed provider."""
    node: Domain
    """Domain of the provider that restarts."""


class FailoverFault(_Timed):
    """The hub crashes and its standby takes over its domain."""

    kind: Literal["failover"]
    """Selects a hub failover."""
    hub: Domain
    """Domain of the hub that fails over (it needs ``providers.<domain>.standby``)."""


class PartitionFault(_Windowed):
    """Nodes in different groups cannot talk; unnamed providers form one more group,
    clients go with their provider unless named."""

    kind: Literal["partition"]
    """Selects a network partition."""
    groups: list[list[str]] = Field(min_length=1)
    """Groups of nodes (provider domains, clients as ``user/device``, device names or URIs) that can talk only
    within their group."""


class DegradeFault(_Windowed):
    """Links get slower and lossier for a while."""

    kind: Literal["degrade"]
    """Selects a link degradation."""
    links: list[str] | Literal["all"] = "all"
    """``a.example<>b.example`` pairs (both directions), or ``all``."""
    latency_factor: float = Field(default=1.0, ge=0)
    """Every latency draw on the links is multiplied by this (default 1: unchanged)."""
    extra_latency: Duration = 0.0
    """Added to every latency draw on the links (default 0ms)."""
    extra_loss: Probability = 0.0
    """Added to the links' loss probability (default 0)."""


class OfflineFault(_Windowed):
    """A client goes offline."""

    kind: Literal["offline"]
    """Selects a client going offline."""
    client: str
    """The client: ``user/device``, a unique device name, or its URI."""


Fault = Annotated[
    CrashFault | RestartFault | FailoverFault | PartitionFault | DegradeFault | OfflineFault,
    Field(discriminator="kind"),
]


class RandomCrash(_Model):
    rate: Rate
    """Poisson rate of crashes over the random-fault period (``1/min``)."""
    duration: Distribution
    """Downtime."""
    nodes: list[Domain] | None = None
    """Default: every provider."""
    state: Literal["durable", "volatile"] | None = None
    """What survives each crash; default: the crashed provider's ``state``."""


class RandomFailover(_Model):
    rate: Rate
    """Poisson rate of failovers (``1/min``)."""
    hubs: list[Domain] | None = None
    """Default: every provider with a standby."""


class RandomPartition(_Model):
    rate: Rate
    """Poisson rate of partitions (``2/min``); each splits the providers into two random groups."""
    duration: Distribution
    """How long each partition lasts."""


class RandomDegrade(_Model):
    rate: Rate
    """Poisson rate of degradations (``1/min``)."""
    duration: Distribution
    """How long each degradation lasts."""
    links: list[str] | Literal["all"] = "all"
    """``a.example<>b.example`` pairs to degrade (both directions), or ``all``."""
    latency_factor: float = Field(default=1.0, ge=0)
    """Every latency draw is multiplied by this while degraded (default 1)."""
    extra_latency: Duration = 0.0
    """Added to every latency draw while degraded (default 0ms)."""
    extra_loss: Probability = 0.0
    """Added to the loss probability while degraded (default 0)."""


class RandomOffline(_Model):
    rate: Rate
    """Poisson rate of clients going offline (``1/min``), a client picked uniformly each time."""
    duration: Distribution
    """How long each client stays offline."""
    clients: list[str] | None = None
    """Default: every client."""


class RandomFaults(_Model):
    """Each kind is a Poisson process at ``rate`` over the whole scenario, picking a target uniformly."""

    seed: int | None = Field(default=None, ge=0, le=MAX_SEED)
    """Default: derived from the run's seed (stream ``faults.random``)."""
    start: Duration = 0.0
    """Random faults begin at this time (default 0ms)."""
    stop: Duration | None = None
    """Random faults end at this time, after ``start``; none: the end of the run."""
    crash: RandomCrash | None = None
    """Random provider crashes; none: no random crashes."""
    failover: RandomFailover | None = None
    """Random hub failovers; none: no random failovers."""
    partition: RandomPartition | None = None
    """Random network partitions; none: no random partitions."""
    degrade: RandomDegrade | None = None
    """Random link degradations; none: no random degradations."""
    offline: RandomOffline | None = None
    """Random client offline periods; none: no random offline periods."""


class Faults(_Model):
    schedule: list[Fault] = Field(default_factory=list)
    """Fixed faults, each with ``kind`` and ``at``."""
    random: RandomFaults | None = None
    """Random faults (Poisson processes per kind); none: no random faults."""


# ====================================================================== adversaries

FollowerAttack = Literal["replay_notify", "spoof_from", "tamper", "withhold_fanout"]
ClientAttack = Literal["non_member_submit", "forged_signature", "after_removal", "reuse_key_package",
                       "stale_epoch", "forge_sender", "forge_leaf", "replay_message", "old_epoch_state",
                       "read_after_removal"]
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
    """Domain of the malicious follower provider (not the room's hub)."""
    room: Name
    """The room it attacks (a key of ``rooms``)."""
    attacks: list[FollowerAttack] = Field(
        default_factory=lambda: list(_FOLLOWER_ATTACKS), min_length=1)
    """The attacks to try, in turn (default all four)."""


class ClientAdversary(_Attacker):
    """A malicious client: submits to a room it is not in, forges signatures, acts after its
    user was removed, republishes a used KeyPackage, commits on a stale epoch, sends an
    application message in another member's name (signed with its own key: from its own leaf,
    or encrypted as the other member's leaf), replays another member's application message,
    sends with a kept old epoch's state, and, once removed, tries to follow the room's commits
    and read its later messages with the state it kept."""

    client: str
    """``user/device``, a unique device name, or its URI."""
    room: Name
    """The room it attacks (a key of ``rooms``)."""
    attacks: list[ClientAttack] = Field(
        default_factory=lambda: list(_CLIENT_ATTACKS), min_length=1)
    """The attacks to try, in turn (default all ten)."""


class StateCompromise(_Attacker):
    """An actor that captures a member client's whole state (keys, group secrets) at each of
    its attempts, then tries to read the room's later traffic that reaches the client's
    provider: it follows the commits it can and decrypts what it can. Reading before the
    client's own leaf is updated is expected; reading a message of an epoch after that
    update breaks post-compromise security (``adversary.accepted``)."""

    client: str
    """The victim: ``user/device``, a unique device name, or its URI."""
    room: Name
    """The room whose traffic it tries to read (a key of ``rooms``)."""


class MalformedAdversary(_Attacker):
    """A provider that sends malformed bodies (random bytes, truncated valid bodies) to every
    endpoint of every other provider, in turn."""

    provider: Domain
    """Domain of the provider that sends the malformed bodies."""


class Adversaries(_Model):
    """Malicious actors; the trace records each attempt (``adversary.attempt``) and its outcome
    (``adversary.rejected`` / ``adversary.accepted`` / ``adversary.unanswered``)."""

    followers: list[FollowerAdversary] = Field(default_factory=list)
    """Malicious follower providers; default none."""
    clients: list[ClientAdversary] = Field(default_factory=list)
    """Malicious clients; default none."""
    malformed: list[MalformedAdversary] = Field(default_factory=list)
    """Senders of malformed request bodies; default none."""
    compromises: list[StateCompromise] = Field(default_factory=list)
    """State-compromise actors (post-compromise security probes); default none."""

    def any(self) -> bool:
        return bool(self.followers or self.clients or self.malformed or self.compromises)


# ====================================================================== protocol, outputs, sweep
