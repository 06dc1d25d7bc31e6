"""The :class:`Scenario` model: the root of a scenario file and the lookups the simulator uses."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import Field, PrivateAttr, ValidationInfo, model_validator

from mimisim.mimi.identity import UriError, client_uri, parse, room_uri, user_uri
from mimisim.sim.rng import MAX_SEED
from mimisim.sim.scenario.base import _Model
from mimisim.sim.scenario.checks import check_scenario
from mimisim.sim.scenario.faults import Adversaries, Faults
from mimisim.sim.scenario.fields import Domain, Name, PositiveDuration
from mimisim.sim.scenario.generate import expand_generators
from mimisim.sim.scenario.network import LinkOverride, LinkSpec, NetworkSpec, parse_link_key
from mimisim.sim.scenario.parties import ClientSpec, ProviderSpec, RoomSpec, UserSpec
from mimisim.sim.scenario.protocol import Outputs, Protocol, Sweep
from mimisim.sim.scenario.resolve import fill_defaults, resolve_references
from mimisim.sim.scenario.workload import Workload

__all__ = ["ClientInfo", "Scenario"]


@dataclass(frozen=True)
class ClientInfo:
    """A client as the simulator needs it, derived from ``users``."""

    uri: str
    user: str
    device: str
    provider: str
    spec: ClientSpec


class Scenario(_Model):
    """A mimisim scenario: everything one run needs besides the seed."""

    name: Name
    """Names the results folder."""
    description: str = ""
    """Free text for people reading the file and the run's manifest; the simulator ignores it."""
    seed: int = Field(default=0, ge=0, le=MAX_SEED)
    """Root seed of every random stream (latency draws, workload, random faults); ``mimisim run --seed``
    overrides it. Same scenario and seed give a byte-identical trace."""
    duration: PositiveDuration
    """Simulated time of the run."""
    epoch_base_ms: int = Field(default=1_700_000_000_000, ge=0)
    """Wall-clock milliseconds at simulated time 0 (wire timestamps are epoch_base_ms + now)."""
    providers: dict[Domain, ProviderSpec] = Field(min_length=1)
    """Provider domain -> provider."""
    users: dict[Name, UserSpec] = Field(default_factory=dict)
    """User name -> user (its provider and clients). The key ``generate`` declares many users at once
    (``{generate: {count: 1000, provider: round_robin, clients: 1}}``)."""
    rooms: dict[Name, RoomSpec] = Field(default_factory=dict)
    """Room name -> room (hub, policy, initial participants). The key ``generate`` declares many rooms at once
    (``{generate: {count: 200, participants: 5}}``)."""
    network: NetworkSpec = Field(default_factory=NetworkSpec)
    """Link models: provider-to-provider (``default`` and per-link overrides) and client access profiles.
    Default: perfect links (no delay, no loss)."""
    workload: Workload = Field(default_factory=Workload)
    """What clients do: Poisson activities (messages, updates, adds, removes, leaves, new devices) and a fixed
    script. Default: nothing."""
    faults: Faults = Field(default_factory=Faults)
    """Faults injected into the run: a fixed ``schedule`` and/or ``random`` Poisson faults. Default: none."""
    adversaries: Adversaries = Field(default_factory=Adversaries)
    """Malicious followers, clients and senders of malformed bodies (none by default)."""
    protocol: Protocol = Field(default_factory=Protocol)
    """Protocol options: MLS cipher suite, /notify deduplication, request timeouts and retries,
    pending-proposal strategy."""
    outputs: Outputs = Field(default_factory=Outputs)
    """Where results go and what is written."""
    sweep: Sweep | None = None
    """A grid of overrides times seeds for ``mimisim sweep``; ignored by ``mimisim run``. Default: none."""

    _source: str | None = PrivateAttr(default=None)
    _raw: dict[str, Any] | None = PrivateAttr(default=None)
    _node: Any = PrivateAttr(default=None)
    _overrides: list[tuple[tuple[Any, ...], str]] = PrivateAttr(default_factory=list)

    # ---------------------------------------------------------------- helpers

    @property
    def source(self) -> str | None:
        """The file it was loaded from, if any."""
        return self._source

    @property
    def overrides(self) -> list[str]:
        """The ``--set`` overrides (and sweep values) applied at load, for the run's manifest."""
        return [note for _, note in self._overrides]

    @property
    def base_dir(self) -> Path:
        """Folder relative paths in the scenario (empirical samples) are read from."""
        return Path(self._source).resolve().parent if self._source else Path.cwd()

    def clients(self) -> list[ClientInfo]:
        """Every client, sorted by URI (a stable order for the simulator)."""
        out = [
            ClientInfo(client_uri(u.provider, user, device), user, device, u.provider, spec)
            for user, u in self.users.items()
            for device, spec in u.clients.items()
        ]
        return sorted(out, key=lambda c: c.uri)

    def client(self, ref: str) -> ClientInfo:
        """Look a client up by URI, ``user/device`` or unique device name."""
        uri = self._resolve_client(ref)
        return next(c for c in self.clients() if c.uri == uri)

    def user_uri(self, user: str) -> str:
        return user_uri(self.users[user].provider, user)

    def room_uri(self, room: str) -> str:
        return room_uri(self.rooms[room].hub, room)

    def link(self, src: str, dst: str) -> LinkSpec:
        """The effective link model of the direction ``src -> dst`` between providers."""
        spec = self.network.default
        both: list[LinkOverride] = []
        one: list[LinkOverride] = []
        for key, override in self.network.links.items():
            a, b, bidir = parse_link_key(key)
            if (a, b) == (src, dst) or (bidir and (b, a) == (src, dst)):
                (both if bidir else one).append(override)
        for o in both + one:  # a one-way override is more specific
            spec = o.apply(spec)
        return spec

    def access(self, profile: str) -> tuple[LinkSpec, LinkSpec]:
        """An access profile as (uplink, downlink) link models."""
        p = self.network.access[profile]
        up = LinkSpec.model_construct(**{k: getattr(p, k) for k in LinkSpec.model_fields})
        down = p.downlink.apply(up) if p.downlink else up
        return up, down

    def counts(self) -> tuple[int, int, int]:
        """(providers, clients, rooms)."""
        return len(self.providers), sum(len(u.clients) for u in self.users.values()), len(self.rooms)

    # ---------------------------------------------------------------- cross-field checks

    def _resolve_client(self, ref: str) -> str:
        if ref.startswith("mimi://"):
            try:
                u = parse(ref)
            except UriError as e:
                raise ValueError(str(e)) from None
            if u.kind != "d":
                raise ValueError(f"'{ref}' is not a client URI (mimi://<domain>/d/<user>/<device>)")
            user, device = u.path
            spec = self.users.get(user)
            if spec is None or spec.provider != u.domain or device not in spec.clients:
                raise ValueError(f"unknown client '{ref}'")
            return ref
        if "/" in ref:
            user, _, device = ref.partition("/")
            if user not in self.users:
                raise ValueError(f"unknown user '{user}' in client '{ref}'")
            if device not in self.users[user].clients:
                raise ValueError(
                    f"user '{user}' has no client '{device}' (clients: {', '.join(self.users[user].clients)})"
                )
            return client_uri(self.users[user].provider, user, device)
        hits = [(user, spec) for user, spec in self.users.items() if ref in spec.clients]
        if not hits:
            raise ValueError(f"unknown client '{ref}' (write user/device, e.g. 'alice/{ref}')")
        if len(hits) > 1:
            raise ValueError(
                f"client name '{ref}' is ambiguous (users {', '.join(u for u, _ in hits)}); write user/device"
            )
        user, spec = hits[0]
        return client_uri(spec.provider, user, ref)

    @model_validator(mode="before")
    @classmethod
    def _expand_generators(cls, data: Any, info: ValidationInfo) -> Any:
        """``users.generate`` and ``rooms.generate`` become ordinary entries (:mod:`.generate`)."""
        return expand_generators(data, info.context)

    @model_validator(mode="after")
    def _resolve_and_check(self) -> Scenario:
        """Fill in cross-section defaults, check references, resolve client references.

        Three separate steps (:mod:`.resolve`, :mod:`.checks`): the checks
        only read, and see the defaults the run will use; references become
        URIs only once they are known to be good.
        """
        fill_defaults(self)
        check_scenario(self)
        resolve_references(self)
        return self
