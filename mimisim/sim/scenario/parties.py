"""The ``providers``, ``users`` and ``rooms`` sections (with room policies and roles)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field, ValidationInfo, field_validator

from mimisim.sim.scenario.base import _check_order, _Model, _OrShorthand
from mimisim.sim.scenario.distributions import Distribution
from mimisim.sim.scenario.fields import Capability, Domain, Duration, Name


class CostModel(_Model):
    """Simulated processing time of a provider: fixed per request plus per byte and per crypto operation."""

    per_request: Duration = 0.0
    """Fixed processing time of every request the provider handles (default 0ms)."""
    per_byte: Duration = 0.0
    """Per byte of request body (``2ns`` is 2 ms per MB)."""
    per_signature: Duration = 0.0
    """Per signature made or verified."""
    per_hpke: Duration = 0.0
    """Per HPKE seal or open."""


class Standby(_Model):
    """A standby that takes over the hub's domain when the hub fails over."""

    replication: Literal["sync", "lag"] = "sync"
    """``sync``: the standby has everything the hub acknowledged; ``lag``: state arrives after a delay."""
    lag: Distribution | None = Field(default=None, validate_default=True)
    """Replication delay per state change (required with ``replication: lag``)."""
    takeover: Duration = 0.0
    """Time from the failover until the standby answers for the hub's domain."""

    @field_validator("lag")
    @classmethod
    def _lag(cls, v: Any, info: ValidationInfo) -> Any:
        mode = info.data.get("replication")
        if mode == "lag" and v is None:
            raise ValueError(
                "replication 'lag' needs a lag distribution (e.g. {kind: exponential, mean: 200ms})"
            )
        if mode == "sync" and v is not None:
            raise ValueError("a lag only applies to replication 'lag'")
        return v


class ProviderSpec(_Model):
    """One provider (the key is its domain)."""

    cost: CostModel = Field(default_factory=CostModel)
    """Simulated processing time of requests (default: free, 0ms for everything)."""
    state: Literal["durable", "volatile"] = "durable"
    """What survives a crash: ``durable`` keeps everything (the notify outbox is resent on restart);
    ``volatile`` loses what lives in memory (notify outbox, queued deliveries, the dedup window) but keeps
    rooms and key material (docs/simulator.md, "Crashes and failover")."""
    standby: Standby | None = None
    """Hub failover target; needed by ``failover`` faults."""
    silent: bool = False
    """Its clients are represented by their KeyPackages only: they upload them and can be added to rooms, but the
    provider delivers nothing to them, so they never join or process a room (the mls-cost study's members outside
    the committer pool: docs/studies.md, "MLS costs"). It still answers the hub's notifies."""


# ====================================================================== users and clients


class OfflineWindow(_Model):
    """A period in which a client is offline."""

    start: Duration
    """When the client goes offline (simulated time from the start of the run); before the run's end."""
    end: Duration | None = None
    """End of the window; none means until the end of the run."""

    @field_validator("end")
    @classmethod
    def _order(cls, v: float | None, info: ValidationInfo) -> float | None:
        _check_order("start", info, v, strict=True)
        return v


class ClientSpec(_Model):
    """One client (device) of a user (the key is its device name)."""

    access: Name = "default"
    """Access profile name (``network.access``)."""
    joined: bool = True
    """Whether the client is in its user's rooms from the start; ``false``: a later device that
    joins by external commit (script action ``join_room``)."""
    offline: list[OfflineWindow] = Field(default_factory=list)
    """Its online/offline schedule: the windows it is offline."""


def _clients_shorthand(v: Any) -> Any:
    """``clients: [ClientA1, ClientA2]`` is short for a mapping of defaults."""
    if isinstance(v, list) and all(isinstance(x, str) for x in v):
        return {x: {} for x in v}
    return v


class UserSpec(_Model):
    """One user (the key is the user name, unique in the scenario)."""

    provider: Domain
    """Domain of the user's provider (a key of ``providers``); its clients connect to it. Generated users
    choose it with ``generate.provider``."""
    clients: Annotated[
        dict[Name, ClientSpec],
        BeforeValidator(_clients_shorthand),
        _OrShorthand({"type": "array", "items": {"type": "string"}, "description": "device names"}),
    ] = Field(min_length=1)
    """Device name -> client; the client URI is ``mimi://<provider>/d/<user>/<device>``."""


# ====================================================================== rooms and policy


class RoleSpec(_Model):
    """A role of the room policy's role-based access control (draft-ietf-mimi-room-policy)."""

    index: int = Field(ge=0)
    """role_index; 0 means not a participant, 1 is reserved for the role named 'banned'."""
    capabilities: list[Capability] = Field(default_factory=list)
    """Capabilities of the role (draft-ietf-mimi-room-policy names, e.g. ``canSendMessage``); default none."""
    role_changes: dict[int, list[int]] = Field(default_factory=dict)
    """authorized_role_changes: from role index -> target role indices."""
    min_participants: int = Field(default=0, ge=0)
    """Fewest participants the room may have in this role; a change leaving fewer is refused (default 0)."""
    max_participants: int | None = Field(default=None, ge=0)
    """Most participants in this role; none means no limit."""
    min_active_participants: int = Field(default=0, ge=0)
    """Fewest participants in this role with at least one client in the group (default 0)."""
    max_active_participants: int | None = Field(default=None, ge=0)
    """Most participants in this role with a client in the group; 0 for roles that may not be in the group
    (``no_role``, ``banned``); none means no limit."""


_ORDINARY = [
    "canAddParticipant", "canRemoveParticipant", "canAddOwnClient", "canRemoveOwnClient", "canRemoveSelf",
    "canSendMessage", "canReceiveMessage", "canCopyMessage", "canReportAbuse", "canReplyToMessage",
    "canReactToMessage", "canDeleteOwnReaction", "canEditOwnMessage", "canDeleteOwnMessage", "canStartTopic",
    "canReplyInTopic", "canEditOwnTopic", "canUploadImage", "canUploadVideo", "canUploadAudio",
    "canUploadAttachment", "canDownloadImage", "canDownloadVideo", "canDownloadAudio", "canDownloadAttachment",
    "canSendLink", "canSendLinkPreview", "canFollowLink", "canCopyLink", "canChangeRoomName",
    "canChangeRoomAvatar", "canChangeRoomSubject", "canChangeRoomMood",
]  # fmt: skip
_ADMIN = [*_ORDINARY, "canBan", "canUnBan", "canKick", "canChangeUserRole", "canDeleteOtherMessage",
          "canEditOtherTopic", "canChangeRoomDescription"]  # fmt: skip
_SUPER = [*_ADMIN, "canChangeRoomMembershipStyle", "canChangePreauthorizedUserList", "canDestroyRoom"]

#: The draft's "cooperatively administered room" example (draft-ietf-mimi-room-policy,
#: "Role examples"), without the policy_enforcer role; capabilities the draft
#: marks reserved (canChangeOwnName ...) and voice capabilities the registry
#: lacks are left out. The default of every room's ``policy.roles``.
DEFAULT_ROLES: dict[str, dict[str, Any]] = {
    "no_role": {"index": 0, "capabilities": [], "max_active_participants": 0},
    "banned": {"index": 1, "capabilities": [], "max_active_participants": 0},
    "ordinary_user": {"index": 2, "capabilities": _ORDINARY, "role_changes": {0: [2], 2: [0]}},
    "group_admin": {
        "index": 3,
        "capabilities": _ADMIN,
        "min_participants": 1,
        "role_changes": {0: [1, 2, 3], 1: [0, 2, 3], 2: [0, 1, 3], 3: [0, 1, 2]},
    },
    "super_admin": {
        "index": 4,
        "capabilities": _SUPER,
        "role_changes": {i: [j for j in range(5) if j != i] for i in range(5)},
    },
}


def _default_roles() -> dict[str, RoleSpec]:
    return {name: RoleSpec.model_validate(spec) for name, spec in DEFAULT_ROLES.items()}


class PendingProposals(_Model):
    """What members do when the hub holds proposals a commit must include (e.g. a leave)."""

    strategy: Literal["immediate_commit", "random_delay", "designated"] = "immediate_commit"
    """``immediate_commit``: every member races: each commits them at once (one wins at the hub, the others
    get ``wrongEpoch``); ``random_delay``: each member waits a uniform delay in [min_delay, max_delay] and
    commits unless someone else did; ``designated``: the room policy names the committer (``committer``), who
    commits at once, and every other member commits after a uniform delay in [min_delay, max_delay] unless
    someone did (the fallback when the named client is offline, gone or removed by the proposals). The draft's
    flow 5 (ClientC1 commits Bob's leave) is ``designated`` with ``committer: ClientC1``."""
    committer: str | None = None
    """``designated``: the client that commits pending proposals (URI, ``user/device`` or device name)."""
    min_delay: Duration = 0.0
    """``random_delay``: shortest wait before committing pending proposals (default 0ms)."""
    max_delay: Duration = 0.0
    """``random_delay``: longest wait; at least ``min_delay`` (default 0ms)."""

    @field_validator("max_delay")
    @classmethod
    def _order(cls, v: float, info: ValidationInfo) -> float:
        _check_order("min_delay", info, v)
        return v


class RoomPolicy(_Model):
    """The room's policy: roles and how pending proposals get committed."""

    roles: dict[Name, RoleSpec] = Field(default_factory=_default_roles)
    """Role name -> role; default: the draft's cooperatively administered room."""
    creator_role: Name = "group_admin"
    """Role of the user who creates the room."""
    default_role: Name = "ordinary_user"
    """Role of users added without an explicit role."""
    pending_proposals: PendingProposals | None = None
    """Default: ``protocol.pending_proposals``."""

    @field_validator("roles")
    @classmethod
    def _roles(cls, v: dict[str, RoleSpec]) -> dict[str, RoleSpec]:
        seen: dict[int, str] = {}
        for name, role in v.items():
            if role.index in seen:
                raise ValueError(f"roles '{seen[role.index]}' and '{name}' share index {role.index}")
            seen[role.index] = name
            if role.index == 1 and name != "banned":
                raise ValueError(f"role index 1 is reserved for the role named 'banned', not '{name}'")
        return v

    @field_validator("creator_role", "default_role")
    @classmethod
    def _known_role(cls, v: str, info: ValidationInfo) -> str:
        roles = info.data.get("roles")
        if roles is not None:
            _check_active_role(v, roles)
        return v


def _check_active_role(name: str, roles: dict[str, RoleSpec]) -> None:
    if name not in roles:
        raise ValueError(f"unknown role '{name}' (roles: {', '.join(roles)})")
    if roles[name].index in (0, 1):
        raise ValueError(f"role '{name}' (index {roles[name].index}) is not an active participant role")


class RoomSpec(_Model):
    """One room (the key is its name; its URI is ``mimi://<hub>/r/<name>``)."""

    hub: Domain
    """The hub provider."""
    policy: RoomPolicy = Field(default_factory=RoomPolicy)
    """Roles and pending-proposal handling; default: the draft's cooperatively administered room."""
    participants: dict[str, Name] = Field(default_factory=dict)
    """Initial participants: user -> role name. Empty: the room is created by a script ``create_room``."""
    created_by: str | None = None
    """Client that creates the MLS group of a room with initial participants; default: the first
    joined client of the first participant."""
    setup: Literal["auto", "incremental", "bulk"] = "auto"
    """How the creator adds the initial participants, through the protocol: ``incremental``, one
    add (one commit) per user; ``bulk``, every user in one commit; ``auto`` (default): ``bulk`` for
    rooms of more than 32 initial participants, else ``incremental`` (see docs/simulator.md)."""


# ====================================================================== workload
