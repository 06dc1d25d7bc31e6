"""Room policy on the wire: the [RP] policy components as structs.

Sources: **[RP]** draft-ietf-mimi-room-policy ("Role-Based Access Control",
"Preauthorized Users", "Base Room policy component syntax").

Why apart from the rules (:mod:`mimisim.mimi.policy`): these are data, declared
once with their field codecs; the rules only read them. Each struct that
can contradict itself has a ``_check`` returning the reason (or None), so
decoding stays lenient and validation happens where the room state is
assembled (:class:`mimisim.mimi.policy.RoomPolicy`). The preauthorisation
claims of a basic credential are here too: they are what a
``PreAuthRoleEntry`` is matched against.

Sans-IO and pure.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from mimisim.codec import (
    Codec,
    EncodeError,
    Optional,
    Reader,
    Struct,
    Vector,
    field,
    opaque,
    uint8,
    uint16,
    uint32,
)
from mimisim.mimi.identity import parse, user_of_client
from mimisim.mimi.wire import (
    BANNED_ROLE_NAME,
    Capability,
    ComponentId,
    IdentifierUri,
    RoleIndex,
    UTF8String,
)
from mimisim.mls.structs import CredentialType

C = Capability
NO_ROLE = int(RoleIndex.no_role)
BANNED = int(RoleIndex.banned)


class PolicyError(ValueError):
    """A policy component that contradicts itself or the rest of the room state.

    A ``ValueError`` so the MLS core's AppDataUpdate handling and the hub's
    room-state check treat it like a decode error.
    """


# ==========================================================================
# wire: [RP] components


class TlsBool(Codec):
    """[RP] ``enum { false(0), true(1) } bool``, surfaced as ``bool``.

    Strict both ways: any byte other than 0 or 1 is refused, so a policy has
    exactly one encoding (the hub compares encodings).
    """

    def encode(self, value: Any, out: bytearray) -> None:
        if not isinstance(value, bool):
            raise EncodeError(f"bool expects bool, got {type(value).__name__}")
        out.append(1 if value else 0)

    def decode(self, r: Reader, ctx: Mapping[str, Any]) -> bool:
        v = uint8.decode(r, ctx)
        if v not in (0, 1):
            raise r.fail(f"bool must be 0 or 1, got {v}")
        return v == 1


Bool = TlsBool()


class SingleSourceRoleChangeTargets(Struct):
    """[RP] Role-Based Access Control: from one role to which roles a holder may move a user.

    Target 0 means "remove from the participant list"; a source of 0 means
    "add a user who is not in the list".
    """

    from_role_index: int = field(uint32)
    target_role_indexes: list[int] = field(Vector(uint32))

    def _check(self) -> str | None:
        if len(set(self.target_role_indexes)) != len(self.target_role_indexes):
            return f"target_role_indexes of from_role_index {self.from_role_index} lists a role twice"
        return None


class Role(Struct):
    """[RP] Role-Based Access Control: one role of the room.

    ``role_capabilities`` holds raw ``CapabilityType`` values (uint16): the
    registry is open (private use 0xF000-0xFFFF), so unknown values decode
    and simply grant nothing this module knows. Build one with :func:`make_role`.
    """

    role_index: int = field(uint32)
    role_name: str = field(UTF8String)
    role_description: str = field(UTF8String)
    role_capabilities: list[int] = field(Vector(uint16))
    minimum_participants_constraint: int = field(uint32)
    maximum_participants_constraint: int | None = field(Optional(uint32))
    minimum_active_participants_constraint: int = field(uint32)
    maximum_active_participants_constraint: int | None = field(Optional(uint32))
    authorized_role_changes: list[SingleSourceRoleChangeTargets] = field(Vector(SingleSourceRoleChangeTargets))

    def _check(self) -> str | None:
        caps = [int(c) for c in self.role_capabilities]
        if len(set(caps)) != len(caps):
            return f"role {self.role_index} lists a capability twice"
        sources = [c.from_role_index for c in self.authorized_role_changes]
        if len(set(sources)) != len(sources):
            return f"role {self.role_index}: authorized_role_changes has two entries for one from_role_index"
        mx = self.maximum_participants_constraint
        if mx is not None and mx < self.minimum_participants_constraint:
            return f"role {self.role_index}: maximum_participants_constraint < minimum"
        mxa = self.maximum_active_participants_constraint
        if mxa is not None and mxa < self.minimum_active_participants_constraint:
            return f"role {self.role_index}: maximum_active_participants_constraint < minimum"
        return None

    @property
    def capabilities(self) -> frozenset[int]:
        return frozenset(int(c) for c in self.role_capabilities)

    @property
    def changes(self) -> dict[int, frozenset[int]]:
        """``authorized_role_changes`` as from-role -> target roles."""
        return {c.from_role_index: frozenset(c.target_role_indexes) for c in self.authorized_role_changes}


def make_role(
    index: int,
    name: str,
    capabilities: Iterable[int] = (),
    changes: Mapping[int, Sequence[int]] | None = None,
    *,
    min_participants: int = 0,
    max_participants: int | None = None,
    min_active: int = 0,
    max_active: int | None = None,
    description: str = "",
) -> Role:
    """A :class:`Role` from plain values; capabilities are de-duplicated and
    kept in registry order, changes sorted by source role (one canonical
    encoding per role)."""
    caps = sorted({int(c) for c in capabilities})
    arc = [SingleSourceRoleChangeTargets(f, list(t)) for f, t in sorted((changes or {}).items())]
    role = Role(index, name, description, caps, min_participants, max_participants, min_active, max_active, arc)
    err = role._check()
    if err:
        raise PolicyError(err)
    return role


class RoleData(Struct):
    """[RP] Role-Based Access Control: the ``roles_list`` component (and RoleUpdate).

    Checked as a whole (a list violating these is self-contradictory):
    role indices unique; role 1, when defined, is named "banned" and has no
    capabilities; ``canOpenJoin`` only on role 0 ([RP] MUST NOT); every
    role index an ``authorized_role_changes`` entry names is defined, or 0,
    or 1 ([RP]: the banned role "does not have to exist in a room"; a ban
    then simply cannot happen).
    """

    roles: list[Role] = field(Vector(Role))

    def _check(self) -> str | None:
        indices = [r.role_index for r in self.roles]
        if len(set(indices)) != len(indices):
            return "two roles share a role_index"
        defined = set(indices) | {NO_ROLE, BANNED}
        for r in self.roles:
            if r.role_index == BANNED:
                if r.role_name != BANNED_ROLE_NAME:
                    return f'role_index 1 is reserved for the role named "banned", not {r.role_name!r}'
                if r.role_capabilities:
                    return "the banned role must have no capabilities"
            if r.role_index != NO_ROLE and C.canOpenJoin in r.capabilities:
                return f"canOpenJoin may only appear on role 0, not role {r.role_index}"
            for ch in r.authorized_role_changes:
                for idx in (ch.from_role_index, *ch.target_role_indexes):
                    if idx not in defined:
                        return f"role {r.role_index}: authorized_role_changes names undefined role {idx}"
        return None


RoleUpdate = RoleData


class ClaimId(Struct):
    """[RP] Preauthorized Users: which claim of which credential type."""

    credential_type: int = field(uint16)
    id: bytes = field(opaque)


class Claim(Struct):
    """[RP] Preauthorized Users: a claim and the exact value it must have."""

    claim_id: ClaimId = field(ClaimId)
    claim_value: bytes = field(opaque)


class PreAuthRoleEntry(Struct):
    """[RP] Preauthorized Users: when every claim matches, the requester may take ``target_role``.

    The draft embeds a whole ``Role``; this module uses its ``role_index``
    and the ``roles_list`` definition of that index (the room has one
    definition of each role; see docs/mimi-choices.md).
    """

    claimset: list[Claim] = field(Vector(Claim))
    target_role: Role = field(Role)

    def _check(self) -> str | None:
        if self.target_role.role_index == NO_ROLE:
            return "a preauthorised role cannot be role 0"
        return None


class PreAuthData(Struct):
    """[RP] Preauthorized Users: the ``preauth_list`` component (and PreAuthUpdate).
    Entries are consulted in order; the first match wins."""

    preauthorized_entries: list[PreAuthRoleEntry] = field(Vector(PreAuthRoleEntry))


PreAuthUpdate = PreAuthData


class BaseRoomPolicy(Struct):
    """[RP] Base Room policy component syntax: the ``base_room_policy`` component.

    ``parent_room`` is the draft's ``Uri parent_room<V>``: a vector holding
    the parent's room URI when ``parent_dependent`` is true, empty otherwise.
    ``policy_component_ids`` are MLS ComponentIDs (uint16).
    """

    fixed_membership: bool = field(Bool)
    parent_dependent: bool = field(Bool)
    parent_room: list[IdentifierUri] = field(Vector(IdentifierUri))
    multi_device: bool = field(Bool)
    max_clients: int | None = field(Optional(uint32))
    max_users: int | None = field(Optional(uint32))
    pseudonyms_allowed: bool = field(Bool)
    persistent_room: bool = field(Bool)
    discoverable: bool = field(Bool)
    policy_component_ids: list[int] = field(Vector(uint16))

    def _check(self) -> str | None:
        if self.parent_dependent != (len(self.parent_room) == 1) or len(self.parent_room) > 1:
            return "parent_room holds exactly one URI when parent_dependent is true, none otherwise"
        if len(set(self.policy_component_ids)) != len(self.policy_component_ids):
            return "policy_component_ids lists a component twice"
        return None


BaseRoomData = BaseRoomPolicy
BaseRoomUpdate = BaseRoomPolicy


def base_room_policy(
    *,
    fixed_membership: bool = False,
    parent_room: str | None = None,
    multi_device: bool = True,
    max_clients: int | None = None,
    max_users: int | None = None,
    pseudonyms_allowed: bool = False,
    persistent_room: bool = True,
    discoverable: bool = False,
    policy_component_ids: Sequence[int] = (ComponentId.roles_list,),
) -> BaseRoomPolicy:
    """A :class:`BaseRoomPolicy` with the draft's defaults (``multi_device`` true)."""
    parents = [IdentifierUri(parent_room)] if parent_room is not None else []
    return BaseRoomPolicy(
        fixed_membership,
        parent_room is not None,
        parents,
        multi_device,
        max_clients,
        max_users,
        pseudonyms_allowed,
        persistent_room,
        discoverable,
        [int(c) for c in policy_component_ids],
    )


# ==========================================================================
# claims (for preauthorisation)

#: Claims of a requester: (credential_type, claim id) -> claim value.
Claims = Mapping[tuple[int, bytes], bytes]

#: Pseudo-claim ids mimisim gives a basic credential (whose identity is a client URI).
BASIC_CLAIM_USER = b"user"
BASIC_CLAIM_DOMAIN = b"domain"


def basic_credential_claims(uri: str) -> dict[tuple[int, bytes], bytes]:
    """The claims a mimisim basic credential carries, for preauthorisation.

    [RP] matches claims of X.509, JWT or CWT credentials; the simulator's
    credentials are basic (identity = client URI), which have no claims. So
    that preauthorisation can be exercised, a basic credential is read as
    carrying two claims: ``user`` (the user URI) and ``domain`` (its
    provider). ``uri`` may be a client or a user URI.
    """
    u = parse(uri)
    user = user_of_client(uri) if u.kind == "d" else uri
    return {
        (int(CredentialType.basic), BASIC_CLAIM_USER): user.encode(),
        (int(CredentialType.basic), BASIC_CLAIM_DOMAIN): u.domain.encode(),
    }


def preauth_entry(target_role: Role, claims: Mapping[tuple[int, bytes], bytes]) -> PreAuthRoleEntry:
    """A :class:`PreAuthRoleEntry` from a claim map (sorted, one canonical encoding)."""
    cs = [Claim(ClaimId(t, i), v) for (t, i), v in sorted(claims.items())]
    return PreAuthRoleEntry(cs, target_role)
