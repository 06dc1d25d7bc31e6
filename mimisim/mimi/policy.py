"""Room policy: roles, capabilities, preauthorisation, and the participant list rules.

Sources: **[RP]** draft-ietf-mimi-room-policy (roles, capabilities, the
authorised role changes, preauthorised users, the base room policy, the role
examples) and **[P]/[P6]** draft-ietf-mimi-protocol (the participant list, its
update, room metadata, what removed and banned users may still send).

The wire structs of the policy components are in
:mod:`mimisim.mimi.policy_wire` and the [RP] role examples in
:mod:`mimisim.mimi.policy_presets`; both are re-exported here, so
``policy.Role`` and ``policy.default_policy`` keep working.

What lives here, and why in one module: every authorisation question the hub
(and a verifying client) asks about a room -- "may this participant add that
user with that role?", "may a banned user send this proposal?" -- is answered
from the same three pieces of room state in the MLS ``app_data_dictionary``
(``roles_list``, ``preauth_list``, ``base_room_policy``) plus the
``participant_list``. Keeping the rules next to the data means a reader finds
the whole policy in one place, and the hub only asks questions.

The module is sans-IO and pure: no clock, no randomness, no I/O. Every
function either returns a new value or a :class:`Verdict`; nothing mutates
its arguments. Errors at the protocol boundary are values: a refused
participant-list change is ``Verdict.refuse(reason, code)`` with the draft's
``UpdateResponseCode`` (``notAllowed`` for an authorisation refusal,
``invalidProposal`` for an update that cannot even be applied). Only the
``AppComponentApply`` functions raise ``ValueError`` -- that is the MLS
core's contract for an invalid AppDataUpdate, which it turns into its own
error value.

Role indices: 0 is "not in the participant list", 1 is the role named
"banned" (DESIGN.md; [RP] "the banned role always has role_index = 1").
Every other index is defined per room by its ``roles_list``.

Choices where the drafts are silent or disagree are listed in
``docs/mimi-choices.md`` ("Room policy, dedup, consent, identifiers").
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from typing import Any, Generic, TypeVar

from mimisim import sharing
from mimisim.codec import DecodeError
from mimisim.mimi.policy_presets import (
    POLICY_ENFORCER,
    cooperative_roles,
    default_roles,
    moderated_roles,
    multi_organization_roles,
    strictly_administered_roles,
)
from mimisim.mimi.policy_wire import (
    BANNED,
    BASIC_CLAIM_DOMAIN,
    BASIC_CLAIM_USER,
    NO_ROLE,
    BaseRoomData,
    BaseRoomPolicy,
    BaseRoomUpdate,
    Bool,
    C,
    Claim,
    ClaimId,
    Claims,
    PolicyError,
    PreAuthData,
    PreAuthRoleEntry,
    PreAuthUpdate,
    Role,
    RoleData,
    RoleUpdate,
    SingleSourceRoleChangeTargets,
    TlsBool,
    base_room_policy,
    basic_credential_claims,
    make_role,
    preauth_entry,
)
from mimisim.mimi.wire import (
    BANNED_ROLE_NAME,
    Capability,
    ComponentId,
    ParticipantListData,
    ParticipantListUpdate,
    RoomMetaData,
    UpdateResponseCode,
    UserindexRolePair,
    UserRolePair,
)
from mimisim.mls.proposals import AppComponentApply
from mimisim.mls.structs import AppDataDictionary, ProposalType

T = TypeVar("T")


# ==========================================================================
# verdicts


@dataclasses.dataclass(frozen=True)
class Verdict(Generic[T]):
    """The answer to "may this change happen?": ok with the resulting value,
    or a refusal with the reason and the draft's response code.

    Truth-testing a Verdict raises ``TypeError``: ``if verdict:`` is
    ambiguous (is a verdict "true" when allowed, or when it holds an error?).
    Read ``.ok``.
    """

    ok: bool
    value: T | None = None
    reason: str = ""
    code: UpdateResponseCode = UpdateResponseCode.success

    @staticmethod
    def allow(value: T) -> Verdict[T]:
        return Verdict(True, value, "", UpdateResponseCode.success)

    @staticmethod
    def refuse(reason: str, code: UpdateResponseCode = UpdateResponseCode.notAllowed) -> Verdict[Any]:
        return Verdict(False, None, reason, code)

    def __bool__(self) -> bool:
        raise TypeError("a Verdict has no truth value; use verdict.ok")


# ==========================================================================
# the policy


@dataclasses.dataclass(frozen=True)
class RoomPolicy:
    """The room's policy components, answering authorisation questions.

    ``roles`` is the ``roles_list``; ``preauth`` the ``preauth_list`` and
    ``base`` the ``base_room_policy`` (each None when the room has none).
    ``self_leave_always`` is a simulator option, not on the wire: when True
    (default) any participant who is not banned may remove itself from the
    list, whatever its role's ``canRemoveSelf`` and minimum constraints say
    (a user cannot be held in a room: it can always delete its clients);
    when False the draft's ``canRemoveSelf`` rule applies.

    Immutable; build variants with :meth:`with_component` or
    ``dataclasses.replace``. Construction validates the components and their
    consistency, raising :class:`PolicyError`.
    """

    roles: tuple[Role, ...]
    preauth: PreAuthData | None = None
    base: BaseRoomPolicy | None = None
    self_leave_always: bool = True
    _by_index: dict[int, Role] = dataclasses.field(init=False, repr=False, compare=False)
    _caps: dict[int, frozenset[int]] = dataclasses.field(init=False, repr=False, compare=False)
    _changes: dict[int, dict[int, frozenset[int]]] = dataclasses.field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "roles", tuple(self.roles))
        err = RoleData(list(self.roles))._check()
        if err:
            raise PolicyError(err)
        for r in self.roles:
            err = r._check()
            if err:
                raise PolicyError(err)
        by_index = {r.role_index: r for r in self.roles}
        object.__setattr__(self, "_by_index", by_index)
        object.__setattr__(self, "_caps", {i: r.capabilities for i, r in by_index.items()})
        object.__setattr__(self, "_changes", {i: r.changes for i, r in by_index.items()})
        if self.preauth is not None:
            for i, e in enumerate(self.preauth.preauthorized_entries):
                err = e._check()
                if err:
                    raise PolicyError(f"preauthorized_entries[{i}]: {err}")
                if e.target_role.role_index not in by_index:
                    raise PolicyError(
                        f"preauthorized_entries[{i}] names role {e.target_role.role_index}, not in roles_list"
                    )
        if self.base is not None:
            err = self.base._check()
            if err:
                raise PolicyError(err)
            if self.base.fixed_membership:
                for r in self.roles:
                    if r.role_index not in (NO_ROLE, BANNED) and C.canAddParticipant in r.capabilities:
                        raise PolicyError(
                            f"fixed-membership room: role {r.role_index} must not hold canAddParticipant"
                        )

    # ------------------------------------------------------------ construction

    @classmethod
    def from_roles(cls, roles: Iterable[Role], **kw: Any) -> RoomPolicy:
        return cls(tuple(roles), **kw)

    @classmethod
    def from_dictionary(
        cls, dictionary: AppDataDictionary | Mapping[int, bytes] | bytes, *, self_leave_always: bool = True
    ) -> RoomPolicy:
        """The policy a room's ``app_data_dictionary`` holds.

        A room without a ``roles_list`` follows the cooperatively
        administered room of [RP] (:func:`default_policy`), so rooms created
        without explicit roles still work the same way for hub and clients.
        The participant list, when present, must only use defined roles
        (or 0/1): a role update that strands a participant is refused here.
        Raises :class:`PolicyError` / ``DecodeError`` (both ValueError).
        """
        get = _getter(dictionary)
        raw_roles = get(ComponentId.roles_list)
        roles = tuple(RoleData.decode(raw_roles).roles) if raw_roles is not None else default_roles()
        raw_pre = get(ComponentId.preauth_list)
        raw_base = get(ComponentId.base_room_policy)
        policy = cls(
            roles,
            PreAuthData.decode(raw_pre) if raw_pre is not None else None,
            BaseRoomPolicy.decode(raw_base) if raw_base is not None else None,
            self_leave_always,
        )
        raw_list = get(ComponentId.participant_list)
        if raw_list is not None:
            for p in ParticipantListData.decode(raw_list).participants:
                if p.role_index != BANNED and p.role_index not in policy._by_index:
                    raise PolicyError(f"participant {p.user} has role {p.role_index}, not in roles_list")
                if p.role_index == BANNED and BANNED not in policy._by_index:
                    raise PolicyError(f"participant {p.user} is banned but the room has no banned role")
        return policy

    def components(self) -> dict[int, bytes]:
        """The policy as ``app_data_dictionary`` entries (component id -> data)."""
        out = {int(ComponentId.roles_list): RoleData(list(self.roles)).encode()}
        if self.preauth is not None:
            out[int(ComponentId.preauth_list)] = self.preauth.encode()
        if self.base is not None:
            out[int(ComponentId.base_room_policy)] = self.base.encode()
        return dict(sorted(out.items()))

    def with_component(self, component_id: int, data: bytes | None) -> RoomPolicy:
        """This policy with one policy component replaced (None: removed),
        validated against the rest. Raises PolicyError / DecodeError."""
        cid = int(component_id)
        if cid == ComponentId.roles_list:
            roles = tuple(RoleData.decode(data).roles) if data is not None else default_roles()
            return dataclasses.replace(self, roles=roles)
        if cid == ComponentId.preauth_list:
            return dataclasses.replace(self, preauth=PreAuthData.decode(data) if data is not None else None)
        if cid == ComponentId.base_room_policy:
            return dataclasses.replace(self, base=BaseRoomPolicy.decode(data) if data is not None else None)
        raise PolicyError(f"component {cid:#06x} is not a room policy component")

    @staticmethod
    def component_check(component_id: int, data: bytes) -> None:
        """Check one policy component on its own (decodes, self-consistent).

        For the hub, before an AppDataUpdate of ``roles_list``,
        ``preauth_list`` or ``base_room_policy``; the consistency with the
        rest of the room is checked when the commit's new state is built
        (:meth:`from_dictionary`). Raises PolicyError / DecodeError.
        """
        cid = int(component_id)
        codec = POLICY_COMPONENTS.get(cid)
        if codec is None:
            raise PolicyError(f"component {cid:#06x} is not a room policy component")
        value = codec.decode(data)  # runs each struct's _check
        if cid == ComponentId.roles_list:
            RoomPolicy(tuple(value.roles))  # and each role's

    # ------------------------------------------------------------ questions

    def role(self, index: int) -> Role | None:
        """The role with this index, or None if the room does not define it."""
        return self._by_index.get(int(index))

    def role_by_name(self, name: str) -> Role | None:
        for r in self.roles:
            if r.role_name == name:
                return r
        return None

    def defined(self, index: int) -> bool:
        return int(index) in self._by_index

    def can(self, actor_role: int, capability: int) -> bool:
        """Does ``actor_role`` hold ``capability``? Banned holds nothing;
        role 0 holds what the room gives non-participants (``canOpenJoin``,
        ``canUseJoinCode``); an undefined role holds nothing."""
        if int(actor_role) == BANNED:
            return False
        return int(capability) in self._caps.get(int(actor_role), frozenset())

    has = can  # the hub's spelling

    def changes(self, actor_role: int, from_role: int) -> frozenset[int]:
        """Roles a holder of ``actor_role`` may move a user from ``from_role`` to."""
        if int(actor_role) == BANNED:
            return frozenset()
        return self._changes.get(int(actor_role), {}).get(int(from_role), frozenset())

    @property
    def banned_role_defined(self) -> bool:
        """[RP] canBan/canUnban need role 1 to exist, named "banned"."""
        r = self._by_index.get(BANNED)
        return r is not None and r.role_name == BANNED_ROLE_NAME

    @property
    def fixed_membership(self) -> bool:
        return self.base is not None and self.base.fixed_membership

    @property
    def max_users(self) -> int | None:
        return self.base.max_users if self.base is not None else None

    def open_join_role(self) -> int | None:
        """The role a non-participant takes when it joins an open room, or None.

        [RP] canOpenJoin on role 0: the joiner may take any non-zero target
        of role 0's ``(0, [...])`` entry; mimisim gives the lowest that is not
        "banned".
        """
        if not self.can(NO_ROLE, C.canOpenJoin):
            return None
        return self._lowest_join_target()

    def join_code_roles(self) -> tuple[int, ...]:
        """Roles a valid joining code may grant ([RP] canUseJoinCode on role 0)."""
        if not self.can(NO_ROLE, C.canUseJoinCode):
            return ()
        return tuple(sorted(t for t in self.changes(NO_ROLE, NO_ROLE) if t not in (NO_ROLE, BANNED)))

    def _lowest_join_target(self) -> int | None:
        targets = sorted(t for t in self.changes(NO_ROLE, NO_ROLE) if t not in (NO_ROLE, BANNED) and self.defined(t))
        return targets[0] if targets else None

    def preauthorized_role(self, claims: Claims | None) -> int | None:
        """[RP] Preauthorized Users: the role of the first entry whose every
        claim the requester's ``claims`` match exactly; None if none does."""
        if self.preauth is None or claims is None:
            return None
        for e in self.preauth.preauthorized_entries:
            if all(
                claims.get((c.claim_id.credential_type, c.claim_id.id)) == c.claim_value for c in e.claimset
            ):
                return e.target_role.role_index
        return None

    def hub_role(self) -> int | None:
        """The role the hub acts with, if any: the role named ``policy_enforcer``.

        [RP] suggests the hub's authority be a (preauthorised) role such as
        the examples' ``policy_enforcer``; the hub is not in the participant
        list, so mimisim finds the role by that name.
        """
        r = self.role_by_name(POLICY_ENFORCER)
        return r.role_index if r is not None else None

    def hub_may_change_participants(self) -> bool:
        """May the hub remove users from the participant list (e.g. a user
        deleted at its provider)? Only with a policy_enforcer role that holds
        ``canRemoveParticipant``."""
        r = self.hub_role()
        return r is not None and self.can(r, C.canRemoveParticipant)


#: Policy component id -> its struct.
POLICY_COMPONENTS: dict[int, Any] = {
    int(ComponentId.roles_list): RoleData,
    int(ComponentId.preauth_list): PreAuthData,
    int(ComponentId.base_room_policy): BaseRoomPolicy,
}

#: [RP] Disruptive Policy Changes: the capability to change each policy component.
COMPONENT_CAPABILITY: dict[int, Capability] = {
    int(ComponentId.roles_list): C.canChangeRoleDefinitions,
    int(ComponentId.preauth_list): C.canChangePreauthorizedUserList,
    int(ComponentId.base_room_policy): C.canChangeRoomMembershipStyle,
}

#: [RP] Adjust metadata: RoomMetaData field -> the capability to change it.
METADATA_CAPABILITY: dict[str, Capability] = {
    "room_name": C.canChangeRoomName,
    "room_descriptions": C.canChangeRoomDescription,
    "room_avatar": C.canChangeRoomAvatar,
    "room_subject": C.canChangeRoomSubject,
    "room_mood": C.canChangeRoomMood,
}


def _getter(dictionary: AppDataDictionary | Mapping[int, bytes] | bytes) -> Callable[[int], bytes | None]:
    if isinstance(dictionary, bytes):
        dictionary = AppDataDictionary.decode(dictionary)
    if isinstance(dictionary, AppDataDictionary):
        return dictionary.get
    m = {int(k): v for k, v in dictionary.items()}
    return m.get


# ==========================================================================
# participant list: data


class ParticipantListError(ValueError):
    """A participant-list update that cannot be applied to the list."""


def decode_participant_list(raw: bytes | None) -> ParticipantListData:
    """The ``participant_list`` component's data (absent = empty list)."""
    return ParticipantListData([]) if raw is None else ParticipantListData.decode(raw)


def participant_list_component(data: ParticipantListData | Mapping[str, int]) -> bytes:
    """Encode a participant list for the ``app_data_dictionary``. A mapping
    user -> role is listed in its iteration order."""
    if not isinstance(data, ParticipantListData):
        data = ParticipantListData([UserRolePair(u, int(r)) for u, r in data.items()])
    return data.encode()


def decode_room_metadata(raw: bytes | None) -> RoomMetaData | None:
    return None if raw is None else RoomMetaData.decode(raw)


def room_metadata_component(meta: RoomMetaData) -> bytes:
    return meta.encode()


def roles_list_component(roles: RoleData | Iterable[Role]) -> bytes:
    return (roles if isinstance(roles, RoleData) else RoleData(list(roles))).encode()


def preauth_list_component(preauth: PreAuthData) -> bytes:
    return preauth.encode()


def base_room_policy_component(base: BaseRoomPolicy) -> bytes:
    return base.encode()


def room_app_data(
    policy: RoomPolicy,
    participants: ParticipantListData | Mapping[str, int],
    metadata: RoomMetaData | None = None,
    extra: Mapping[int, bytes] | None = None,
) -> AppDataDictionary:
    """The ``app_data_dictionary`` of a new room: its policy components, the
    participant list, its metadata (and any ``extra`` components, e.g. the
    franking agent). Validated as :meth:`RoomPolicy.from_dictionary` would."""
    items: dict[int, bytes] = dict(extra or {})
    items.update(policy.components())
    items[int(ComponentId.participant_list)] = participant_list_component(participants)
    if metadata is not None:
        items[int(ComponentId.room_metadata)] = metadata.encode()
    d = AppDataDictionary([])
    for cid in sorted(items):
        d = d.with_data(cid, items[cid])
    RoomPolicy.from_dictionary(d, self_leave_always=policy.self_leave_always)
    return d


def _check_update_shape(update: ParticipantListUpdate) -> None:
    err = update._check()
    if err:
        raise ParticipantListError(err)


def apply_participant_update(current: ParticipantListData, update: ParticipantListUpdate) -> ParticipantListData:
    """[P] Participant List: ``current`` with ``update`` applied (pure).

    Order as the draft says: role changes (by index into ``current``), then
    removals (by index into ``current``), then appends. Raises
    :class:`ParticipantListError` when the update cannot apply: an index out
    of range, a role change to 0 (removal is ``removedIndices``), a user
    touched twice, or an added user who is already listed (banned included:
    unbanning is a role change).
    """
    _check_update_shape(update)
    rows = [(p.user, p.role_index) for p in current.participants]
    n = len(rows)
    for c in update.changed_role_participants:
        if c.user_index >= n:
            raise ParticipantListError(f"changed user_index {c.user_index} out of range (list has {n})")
        if c.role_index == NO_ROLE:
            raise ParticipantListError(f"role change of index {c.user_index} to 0: use removedIndices")
        rows[c.user_index] = (rows[c.user_index][0], c.role_index)
    removed = set()
    for i in update.removed_indices:
        if i >= n:
            raise ParticipantListError(f"removed index {i} out of range (list has {n})")
        removed.add(i)
    listed = {u for u, _ in rows}
    kept = [UserRolePair(u, r) for i, (u, r) in enumerate(rows) if i not in removed]
    for a in update.added_participants:
        if a.user in listed:
            raise ParticipantListError(f"{a.user} is already in the participant list")
        kept.append(UserRolePair(a.user, a.role_index))
    # No user twice and no role 0 by construction: changes refuse 0, additions
    # are new users with non-zero roles (the update's own _check).
    return ParticipantListData(kept)


def merge_participant_updates(current: ParticipantListData, updates: Sequence[ParticipantListUpdate]) -> ParticipantListUpdate:
    """The updates of one commit as one update (all index ``current``).

    [P] "A single commit is not valid if it contain any combination of
    Participant list updates that operate on ... the same user ... more than
    once": every update of one commit indexes the list as committed in the
    previous epoch, and no user may be touched by two of them. Role changes
    and removals are sorted by index, additions keep proposal order.
    """
    changes: list[UserindexRolePair] = []
    removed: list[int] = []
    added: list[UserRolePair] = []
    touched: set[str] = set()
    users = [p.user for p in current.participants]
    for k, u in enumerate(updates):
        _check_update_shape(u)
        names = [users[i] if i < len(users) else f"#{i}" for i in
                 [c.user_index for c in u.changed_role_participants] + list(u.removed_indices)]
        names += [a.user for a in u.added_participants]
        for name in names:
            if name in touched:
                raise ParticipantListError(f"update {k} touches {name}, already touched in this commit")
            touched.add(name)
        changes += u.changed_role_participants
        removed += u.removed_indices
        added += u.added_participants
    return ParticipantListUpdate(
        sorted(changes, key=lambda c: c.user_index), sorted(removed), added
    )


def apply_participant_list_update(current: bytes | None, updates: list[bytes]) -> bytes:
    """``AppComponentApply`` for ``participant_list``: the MLS core calls it
    with the component's data and the commit's updates, in proposal order.

    Pure and deterministic. Raises ``ValueError`` (ParticipantListError or
    DecodeError) on an update that does not decode or cannot apply. Every
    member of a room applies the same update to the same list: with
    :mod:`mimisim.sharing` on, the result is memoised by the exact input bytes
    (errors are not memoised, they are raised again).
    """
    if sharing.enabled:
        return _apply_participant_list_shared(current, tuple(updates))
    return _apply_participant_list_update(current, updates)


def _apply_participant_list_update(current: bytes | None, updates: Sequence[bytes]) -> bytes:
    data = decode_participant_list(current)
    decoded = [ParticipantListUpdate.decode(u) for u in updates]
    if not decoded:
        return data.encode()
    return apply_participant_update(data, merge_participant_updates(data, decoded)).encode()


_apply_participant_list_shared = functools.lru_cache(maxsize=1024)(_apply_participant_list_update)


def _single(updates: list[bytes], what: str) -> bytes:
    if len(updates) != 1:
        raise PolicyError(f"exactly one {what} update per commit, got {len(updates)}")
    return updates[0]


def apply_room_metadata_update(current: bytes | None, updates: list[bytes]) -> bytes:
    """``AppComponentApply`` for ``room_metadata``: [P] "Only a single Room
    metadata update is valid per commit"; it replaces the data. The room URI
    cannot change."""
    new = RoomMetaData.decode(_single(updates, "room_metadata"))
    if current is not None and RoomMetaData.decode(current).room_uri != new.room_uri:
        raise PolicyError("room_metadata cannot change the room URI")
    return new.encode()


def apply_roles_list_update(current: bytes | None, updates: list[bytes]) -> bytes:
    """``AppComponentApply`` for ``roles_list``: RoleUpdate replaces RoleData."""
    raw = _single(updates, "roles_list")
    RoomPolicy.component_check(ComponentId.roles_list, raw)
    return raw


def apply_preauth_list_update(current: bytes | None, updates: list[bytes]) -> bytes:
    """``AppComponentApply`` for ``preauth_list``: PreAuthUpdate replaces PreAuthData."""
    raw = _single(updates, "preauth_list")
    RoomPolicy.component_check(ComponentId.preauth_list, raw)
    return raw


def apply_base_room_policy_update(current: bytes | None, updates: list[bytes]) -> bytes:
    """``AppComponentApply`` for ``base_room_policy``: BaseRoomUpdate replaces BaseRoomData."""
    raw = _single(updates, "base_room_policy")
    RoomPolicy.component_check(ComponentId.base_room_policy, raw)
    return raw


def mimi_app_components() -> dict[int, AppComponentApply]:
    """The AppDataUpdate semantics of MIMI's room components, for the MLS
    core (hub observer and clients alike: both must compute the same state).
    Components not listed keep the core's default (last update replaces)."""
    return {
        int(ComponentId.participant_list): apply_participant_list_update,
        int(ComponentId.room_metadata): apply_room_metadata_update,
        int(ComponentId.roles_list): apply_roles_list_update,
        int(ComponentId.preauth_list): apply_preauth_list_update,
        int(ComponentId.base_room_policy): apply_base_room_policy_update,
    }


hub_app_components = mimi_app_components


# ==========================================================================
# participant list: authorisation


def _role_of(data: ParticipantListData, user: str) -> int:
    return int(data.role_of(user))


def check_participant_change(
    policy: RoomPolicy,
    current: ParticipantListData | bytes | None,
    update: ParticipantListUpdate | bytes,
    actor_user: str,
    actor_role: int | Mapping[str, int] | None = None,
    *,
    actor_claims: Claims | None = None,
    active_users: Collection[str] | None = None,
) -> Verdict[ParticipantListData]:
    """May ``actor_user`` (holding ``actor_role``) make this participant-list change?

    ``current`` is the committed list the update indexes (bytes as in the
    ``app_data_dictionary`` are accepted); ``actor_role`` is the actor's
    role, or a user -> role map to look it up in (the hub's view including
    accepted, uncommitted changes), or None for its role in ``current``.
    ``actor_claims`` are the actor's credential claims (preauthorised joins
    and ``canChangeOwnRole``). ``active_users`` are the users with clients
    in the group now; when given, the active-participant constraints are
    checked too (removed and banned users become inactive, added users are
    counted as active: they are added to have clients).

    Each action is authorised on its own ([P] "Each of these actions ... is
    authorized separately"), the role constraints on the net effect of the
    whole update. Returns ``Verdict.allow(new_list)``; refusals carry
    ``notAllowed`` (policy) or ``invalidProposal`` (the update cannot apply).
    Never raises on bad input.
    """
    try:
        cur = decode_participant_list(current) if not isinstance(current, ParticipantListData) else current
        upd = ParticipantListUpdate.decode(update) if isinstance(update, bytes) else update
        new = apply_participant_update(cur, upd)
    except (ValueError, DecodeError) as e:
        return Verdict.refuse(str(e), UpdateResponseCode.invalidProposal)
    if isinstance(actor_role, Mapping):
        role = int(actor_role.get(actor_user, NO_ROLE))
    elif actor_role is None:
        role = _role_of(cur, actor_user)
    else:
        role = int(actor_role)
    users = [p.user for p in cur.participants]
    actions: list[tuple[str, int, int]] = []
    for c in upd.changed_role_participants:
        actions.append((users[c.user_index], cur.participants[c.user_index].role_index, c.role_index))
    for i in upd.removed_indices:
        actions.append((users[i], cur.participants[i].role_index, NO_ROLE))
    for a in upd.added_participants:
        actions.append((a.user, NO_ROLE, a.role_index))
    for target, from_role, to_role in actions:
        why = _authorise_action(policy, actor_user, role, target, from_role, to_role, actor_claims)
        if why is not None:
            return Verdict.refuse(why)
    leaver = None
    if policy.self_leave_always and actor_user in {users[i] for i in upd.removed_indices}:
        leaver = actor_user  # a user may always leave: its leaving breaks no minimum
    why = _check_constraints(policy, cur, new, active_users, leaver)
    if why is not None:
        return Verdict.refuse(why)
    return Verdict.allow(new)


def _authorise_action(
    policy: RoomPolicy,
    actor: str,
    actor_role: int,
    target: str,
    from_role: int,
    to_role: int,
    claims: Claims | None,
) -> str | None:
    """Why ``actor`` may not move ``target`` from ``from_role`` to ``to_role``
    (0 = not listed), or None if it may. [RP] Membership Capabilities."""
    p = policy
    if to_role != NO_ROLE and not p.defined(to_role):
        return f"role {to_role} is not defined in this room"
    if to_role == from_role:
        return f"{target} already has role {to_role}"
    if target == actor:
        return _authorise_own(p, actor, actor_role, from_role, to_role, claims)
    if actor_role in (NO_ROLE, BANNED):
        return f"{actor} is not an active participant (role {actor_role})"
    allowed = p.changes(actor_role, from_role)
    if from_role == NO_ROLE:  # an add
        if to_role == BANNED:
            return _authorise_ban(p, actor_role, target, allowed)
        if not p.can(actor_role, C.canAddParticipant):
            return f"role {actor_role} lacks canAddParticipant"
        if to_role not in allowed:
            return f"role {actor_role} may not add users as role {to_role}"
        return None
    if to_role == NO_ROLE:  # a removal
        if p.fixed_membership:
            return "fixed-membership room: participants cannot be removed"
        if not p.can(actor_role, C.canRemoveParticipant):
            return f"role {actor_role} lacks canRemoveParticipant"
        if NO_ROLE not in allowed:
            return f"role {actor_role} may not remove users of role {from_role}"
        return None
    if to_role == BANNED:
        return _authorise_ban(p, actor_role, target, allowed)
    if from_role == BANNED:  # an unban
        if not (p.can(actor_role, C.canChangeUserRole) or p.can(actor_role, C.canUnBan)):
            return f"role {actor_role} lacks canUnBan"
        if to_role not in allowed:
            return f"role {actor_role} may not unban users to role {to_role}"
        return None
    if not p.can(actor_role, C.canChangeUserRole):
        return f"role {actor_role} lacks canChangeUserRole"
    if to_role not in allowed:
        return f"role {actor_role} may not move users from role {from_role} to {to_role}"
    return None


def _authorise_ban(p: RoomPolicy, actor_role: int, target: str, allowed: frozenset[int]) -> str | None:
    """[RP] canBan: the target's role may move to 1 ("banned"); canChangeUserRole
    with 1 among the targets allows the same ("could allow the same action").
    Role 1 is defined (checked by the caller) and so named "banned" (RoleData)."""
    if not (p.can(actor_role, C.canBan) or p.can(actor_role, C.canChangeUserRole)):
        return f"role {actor_role} lacks canBan"
    if BANNED not in allowed:
        return f"role {actor_role} may not ban {target} from its role"
    return None


def _authorise_own(
    p: RoomPolicy, actor: str, actor_role: int, from_role: int, to_role: int, claims: Claims | None
) -> str | None:
    """Changes a user makes to its own entry: join, leave, own role."""
    if from_role == NO_ROLE:  # joining
        if to_role == BANNED:
            return "a user cannot ban itself"
        if p.can(NO_ROLE, C.canOpenJoin) and to_role in p.changes(NO_ROLE, NO_ROLE):
            return None
        pre = p.preauthorized_role(claims)
        if pre is not None and pre == to_role and p.can(to_role, C.canJoinIfPreauthorized):
            return None
        return f"{actor} may not add itself as role {to_role} (no open join or preauthorisation)"
    if from_role == BANNED:
        return f"{actor} is banned and cannot change its own entry"
    if to_role == NO_ROLE:  # leaving
        if p.fixed_membership:
            return "fixed-membership room: participants cannot leave"
        if p.self_leave_always:
            return None
        if not p.can(from_role, C.canRemoveSelf):
            return f"role {from_role} lacks canRemoveSelf"
        if NO_ROLE not in p.changes(from_role, from_role):
            return f"role {from_role} may not leave (no ({from_role}, [0]) entry)"
        return None
    if to_role == BANNED:
        return "a user cannot ban itself"
    if not p.can(from_role, C.canChangeOwnRole):
        return f"role {from_role} lacks canChangeOwnRole (and canChangeUserRole is not for oneself)"
    pre = p.preauthorized_role(claims)
    if pre != to_role:
        return f"{actor} is not preauthorised for role {to_role}"
    return None


def _check_constraints(
    p: RoomPolicy,
    old: ParticipantListData,
    new: ParticipantListData,
    active: Collection[str] | None,
    leaver: str | None = None,
) -> str | None:
    """[RP] role constraints on the net effect: a role that loses members
    must keep its minimum, one that gains must stay within its maximum; the
    same for active participants when known; and the base policy's
    ``max_users`` (non-banned entries). ``leaver`` (a self-leave under
    ``self_leave_always``) is counted as still present for the minimums."""
    leaver_role = old.role_of(leaver) if leaver is not None else NO_ROLE

    def counts(data: ParticipantListData, only: Collection[str] | None) -> dict[int, int]:
        out: dict[int, int] = {}
        for q in data.participants:
            if only is None or q.user in only:
                out[q.role_index] = out.get(q.role_index, 0) + 1
        if data is new and leaver_role != NO_ROLE and (only is None or leaver in only):
            out[leaver_role] = out.get(leaver_role, 0) + 1
        return out

    before, after = counts(old, None), counts(new, None)
    for idx in sorted(set(before) | set(after)):
        r = p.role(idx)
        if r is None:
            continue
        b, a = before.get(idx, 0), after.get(idx, 0)
        if a < b and a < r.minimum_participants_constraint:
            return f"role {idx} ({r.role_name}) needs at least {r.minimum_participants_constraint} participant(s)"
        mx = r.maximum_participants_constraint
        if a > b and mx is not None and a > mx:
            return f"role {idx} ({r.role_name}) allows at most {mx} participant(s)"
    if active is not None:
        old_users = {q.user for q in old.participants}
        active_after = {
            q.user
            for q in new.participants
            if q.role_index != BANNED and (q.user in active or q.user not in old_users)
        }
        before, after = counts(old, active), counts(new, active_after)
        for idx in sorted(set(before) | set(after)):
            r = p.role(idx)
            if r is None:
                continue
            b, a = before.get(idx, 0), after.get(idx, 0)
            if a < b and a < r.minimum_active_participants_constraint:
                return f"role {idx} ({r.role_name}) needs at least {r.minimum_active_participants_constraint} active participant(s)"
            mxa = r.maximum_active_participants_constraint
            if a > b and mxa is not None and a > mxa:
                return f"role {idx} ({r.role_name}) allows at most {mxa} active participant(s)"
    if p.max_users is not None:
        b = sum(1 for q in old.participants if q.role_index != BANNED)
        a = sum(1 for q in new.participants if q.role_index != BANNED)
        if a > b and a > p.max_users:
            return f"the room allows at most {p.max_users} users"
    return None


# ==========================================================================
# other questions the hub asks


#: [P] Update Room State: the only proposals a removed or banned user's clients may send.
RESTRICTED_PROPOSAL_TYPES = frozenset({ProposalType.remove, ProposalType.self_remove})


def is_active_role(role: int) -> bool:
    """Listed and not banned: a role whose holders may act in the room."""
    return int(role) not in (NO_ROLE, BANNED)


def may_send_proposal(role: int, proposal_type: int) -> bool:
    """[P] a removed (role 0) or banned (role 1) participant's clients may
    send only Remove and SelfRemove proposals (and no commits, no application
    messages). Whose clients a Remove may target is the hub's check."""
    return is_active_role(role) or int(proposal_type) in RESTRICTED_PROPOSAL_TYPES


def may_commit(role: int) -> bool:
    """[P] removed and banned participants' clients may not commit."""
    return is_active_role(role)


def may_send_message(policy: RoomPolicy, role: int) -> bool:
    """[RP] canSendMessage, for an active participant only."""
    return is_active_role(role) and policy.can(role, C.canSendMessage)


def may_receive_message(policy: RoomPolicy, role: int) -> bool:
    """[RP] canReceiveMessage, for an active participant only."""
    return is_active_role(role) and policy.can(role, C.canReceiveMessage)


def check_client_removal(
    policy: RoomPolicy, actor_user: str, actor_role: int, target_user: str, target_leaving: bool = False
) -> Verdict[None]:
    """May ``actor_user`` remove a client of ``target_user`` from the MLS group?

    Own client: ``canRemoveOwnClient``. Another user's client: ``canKick``.
    Either is also allowed when the target user leaves the participant list
    (or is banned) in the same commit, whose list change is authorised on
    its own. A removed or banned actor may only remove its own clients.
    """
    if target_leaving:
        return Verdict.allow(None)
    if not is_active_role(actor_role):
        if target_user == actor_user:
            return Verdict.allow(None)
        return Verdict.refuse(f"{actor_user} is removed or banned: only its own clients")
    cap = C.canRemoveOwnClient if target_user == actor_user else C.canKick
    if policy.can(actor_role, cap):
        return Verdict.allow(None)
    return Verdict.refuse(f"role {actor_role} lacks {cap.name}")


def check_metadata_change(
    policy: RoomPolicy, old: RoomMetaData | None, new: RoomMetaData, actor_role: int
) -> Verdict[RoomMetaData]:
    """[RP] Adjust metadata: each changed field needs its capability; the
    room URI never changes (it names the room)."""
    if not is_active_role(actor_role):
        return Verdict.refuse(f"role {actor_role} is not an active participant")
    if old is not None and old.room_uri != new.room_uri:
        return Verdict.refuse("room_metadata cannot change the room URI")
    for fname, cap in METADATA_CAPABILITY.items():
        changed = old is None or getattr(old, fname) != getattr(new, fname)
        if changed and not policy.can(actor_role, cap):
            return Verdict.refuse(f"role {actor_role} lacks {cap.name}")
    return Verdict.allow(new)


def check_policy_change(policy: RoomPolicy, component_id: int, update: bytes, actor_role: int) -> Verdict[RoomPolicy]:
    """[RP] Disruptive Policy Changes: may ``actor_role`` replace a policy
    component with ``update``? Allowed: the new policy."""
    cap = COMPONENT_CAPABILITY.get(int(component_id))
    if cap is None:
        return Verdict.refuse(f"component {int(component_id):#06x} is not a room policy component")
    if not is_active_role(actor_role) or not policy.can(actor_role, cap):
        return Verdict.refuse(f"role {actor_role} lacks {cap.name}")
    try:
        return Verdict.allow(policy.with_component(component_id, update))
    except (ValueError, DecodeError) as e:
        return Verdict.refuse(str(e), UpdateResponseCode.invalidProposal)


# ==========================================================================
# [RP] Role examples as policies (the roles are in policy_presets)


def default_policy(**kw: Any) -> RoomPolicy:
    """The default room policy: [RP]'s cooperatively administered room
    (friends, family, small peer groups), with its policy_enforcer role.
    [P]'s ``clubhouse`` example (Alice as admin = role 4) fits it."""
    return RoomPolicy(cooperative_roles(), **kw)


cooperatively_administered_policy = default_policy


def strictly_administered_policy(**kw: Any) -> RoomPolicy:
    """[RP] "Strictly administered room" (:func:`~mimisim.mimi.policy_presets.strictly_administered_roles`)."""
    return RoomPolicy(strictly_administered_roles(), **kw)


def moderated_policy(**kw: Any) -> RoomPolicy:
    """[RP] "Moderated room" (:func:`~mimisim.mimi.policy_presets.moderated_roles`)."""
    return RoomPolicy(moderated_roles(), **kw)


def multi_organization_policy(**kw: Any) -> RoomPolicy:
    """[RP] "Multi-organization administered room" (:func:`~mimisim.mimi.policy_presets.multi_organization_roles`)."""
    return RoomPolicy(multi_organization_roles(), **kw)


#: The [RP] role examples by name.
EXAMPLE_POLICIES: dict[str, Callable[..., RoomPolicy]] = {
    "cooperatively_administered": default_policy,
    "strictly_administered": strictly_administered_policy,
    "moderated": moderated_policy,
    "multi_organization": multi_organization_policy,
}


#: Public names, including those re-exported from policy_wire and
#: policy_presets (they were defined here before the split).
__all__ = [
    "BANNED", "BASIC_CLAIM_DOMAIN", "BASIC_CLAIM_USER", "BaseRoomData", "BaseRoomPolicy", "BaseRoomUpdate",
    "Bool", "C", "COMPONENT_CAPABILITY", "Claim", "ClaimId", "EXAMPLE_POLICIES", "METADATA_CAPABILITY",
    "NO_ROLE", "POLICY_COMPONENTS", "POLICY_ENFORCER", "ParticipantListError", "PolicyError", "PreAuthData",
    "PreAuthRoleEntry", "PreAuthUpdate", "RESTRICTED_PROPOSAL_TYPES", "Role", "RoleData", "RoleUpdate",
    "RoomPolicy", "SingleSourceRoleChangeTargets", "TlsBool", "Verdict", "apply_base_room_policy_update",
    "apply_participant_list_update", "apply_participant_update", "apply_preauth_list_update",
    "apply_roles_list_update", "apply_room_metadata_update", "base_room_policy", "base_room_policy_component",
    "basic_credential_claims", "check_client_removal", "check_metadata_change", "check_participant_change",
    "check_policy_change", "cooperative_roles", "cooperatively_administered_policy",
    "decode_participant_list", "decode_room_metadata", "default_policy", "default_roles",
    "hub_app_components", "is_active_role", "make_role", "may_commit", "may_receive_message",
    "may_send_message", "may_send_proposal", "merge_participant_updates", "mimi_app_components",
    "moderated_policy", "moderated_roles", "multi_organization_policy", "multi_organization_roles",
    "participant_list_component", "preauth_entry", "preauth_list_component", "roles_list_component",
    "room_app_data", "room_metadata_component", "strictly_administered_policy", "strictly_administered_roles",
]  # fmt: skip
