"""The [RP] role examples as preset role sets ("Role examples" of
draft-ietf-mimi-room-policy): cooperatively administered, strictly
administered, moderated and multi-organization rooms.

Why a module of their own: they are configuration, not rules. Each
function returns the roles of one example as :class:`~mimisim.mimi.policy_wire.Role`
values; :mod:`mimisim.mimi.policy` wraps them into ``RoomPolicy`` presets
(``default_policy``, ``moderated_policy``...) and uses
:func:`default_roles` for a room that defines none. Capability lists are
built from the draft's prose; where it refers to a role the example does not
define, the docstring says how it was read.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from mimisim.mimi.policy_wire import BANNED, NO_ROLE, C, Role, make_role
from mimisim.mimi.wire import BANNED_ROLE_NAME

#: The name of the role the hub's policy enforcement acts as.
POLICY_ENFORCER = "policy_enforcer"



_CA_ORDINARY = [
    C.canAddParticipant, C.canRemoveParticipant, C.canAddOwnClient, C.canRemoveOwnClient, C.canRemoveSelf,
    C.canSendMessage, C.canReceiveMessage, C.canCopyMessage, C.canReportAbuse, C.canReplyToMessage,
    C.canReactToMessage, C.canDeleteOwnReaction, C.canEditOwnMessage, C.canDeleteOwnMessage, C.canStartTopic,
    C.canReplyInTopic, C.canEditOwnTopic, C.canUploadImage, C.canUploadVideo, C.canUploadAudio,
    C.canUploadAttachment, C.canDownloadImage, C.canDownloadVideo, C.canDownloadAudio, C.canDownloadAttachment,
    C.canSendLink, C.canSendLinkPreview, C.canFollowLink, C.canCopyLink, C.canChangeRoomName,
    C.canChangeRoomAvatar, C.canChangeRoomSubject, C.canChangeRoomMood, C.canChangeOwnName,
    C.canChangeOwnPresence, C.canChangeOwnMood, C.canChangeOwnAvatar,
]  # fmt: skip
_CA_ADMIN = [*_CA_ORDINARY, C.canBan, C.canUnBan, C.canKick, C.canChangeUserRole, C.canDeleteOtherMessage,
             C.canEditOtherTopic, C.canChangeRoomDescription]  # fmt: skip
_CA_SUPER = [*_CA_ADMIN, C.canChangeRoomMembershipStyle, C.canChangePreauthorizedUserList, C.canDestroyRoom]
_ENFORCER = [
    C.canRemoveParticipant, C.canChangeUserRole, C.canBan, C.canUnBan, C.canChangeRoleDefinitions,
    C.canChangePreauthorizedUserList, C.canChangeMlsOperationalPolicies, C.canDestroyRoom,
    C.canSendMLSReinitProposal,
]  # fmt: skip


def _all_pairs(n: int) -> dict[int, list[int]]:
    """``[(0,[1..n-1]), (1,[0,2..]), ...]``: any role 0..n-1 to any other."""
    return {i: [j for j in range(n) if j != i] for i in range(n)}


def _no_role(caps: Iterable[int] = (), changes: Mapping[int, Sequence[int]] | None = None, max_active: int | None = 0) -> Role:
    return make_role(NO_ROLE, "no_role", caps, changes, max_active=max_active)


def _banned() -> Role:
    return make_role(BANNED, BANNED_ROLE_NAME, (), None, max_active=0)


def _enforcer(index: int, changes: Mapping[int, Sequence[int]]) -> Role:
    return make_role(index, POLICY_ENFORCER, _ENFORCER, changes, min_participants=1, max_participants=2, max_active=0)


def cooperative_roles(with_policy_enforcer: bool = True) -> tuple[Role, ...]:
    """[RP] "Cooperatively administered room": no_role 0, banned 1,
    ordinary_user 2, group_admin 3, super_admin 4, policy_enforcer 5.

    The indices match [P]'s figure (4 = admin, 3 = moderator, 1 = banned).
    ``canRevokeVoice``/``canGrantVoice`` are left out: the registry has no
    value for them.
    """
    roles = [
        _no_role(),
        _banned(),
        make_role(2, "ordinary_user", _CA_ORDINARY, {0: [2], 2: [0]}),
        make_role(3, "group_admin", _CA_ADMIN, _all_pairs(4), min_participants=1),
        make_role(4, "super_admin", _CA_SUPER, _all_pairs(5)),
    ]
    if with_policy_enforcer:
        roles.append(_enforcer(5, {0: [1], 1: [0], 2: [0, 1], 3: [0, 1], 4: [0, 1]}))
    return tuple(roles)


def default_roles() -> tuple[Role, ...]:
    """The roles of a room that defines none: the cooperatively administered room."""
    return cooperative_roles()



_SA_ORDINARY = [
    C.canAddOwnClient, C.canJoinIfPreauthorized, C.canRemoveOwnClient, C.canRemoveSelf, C.canChangeOwnRole,
    C.canSendMessage, C.canReceiveMessage, C.canCopyMessage, C.canReportAbuse, C.canReactToMessage,
    C.canDeleteOwnReaction, C.canEditOwnMessage, C.canDeleteOwnMessage, C.canStartTopic, C.canReplyInTopic,
    C.canUploadImage, C.canUploadVideo, C.canUploadAudio, C.canUploadAttachment, C.canDownloadImage,
    C.canDownloadVideo, C.canDownloadAudio, C.canDownloadAttachment, C.canSendLink, C.canSendLinkPreview,
    C.canFollowLink, C.canCopyLink, C.canChangeOwnName, C.canChangeOwnPresence, C.canChangeOwnMood,
    C.canChangeOwnAvatar,
]  # fmt: skip
_MODERATION = [
    C.canAddParticipant, C.canRemoveParticipant, C.canBan, C.canUnBan, C.canKick, C.canChangeUserRole,
    C.canCreateJoinCode, C.canDeleteJoinCode, C.canDeleteOtherReaction, C.canDeleteOtherMessage,
    C.canEditOwnTopic, C.canEditOtherTopic,
]  # fmt: skip
_SA_ADMIN = [*_SA_ORDINARY, *_MODERATION, C.canChangeRoomDescription, C.canChangeRoomName,
             C.canChangeRoomAvatar, C.canChangeRoomSubject, C.canChangeRoomMood]  # fmt: skip
_DISRUPTIVE = [C.canChangeRoomMembershipStyle, C.canChangeRoleDefinitions, C.canChangePreauthorizedUserList,
               C.canDestroyRoom, C.canSendMLSReinitProposal]  # fmt: skip


def strictly_administered_roles() -> tuple[Role, ...]:
    """[RP] "Strictly administered room": only admins add and remove;
    non-participants may use a join code to become ordinary users."""
    roles = (
        _no_role([C.canUseJoinCode], {0: [2]}),
        _banned(),
        make_role(2, "ordinary_user", _SA_ORDINARY, {0: [2], 2: [0]}),
        make_role(3, "group_admin", _SA_ADMIN, _all_pairs(4), min_participants=1),
        make_role(4, "super_admin", [*_SA_ADMIN, *_DISRUPTIVE], _all_pairs(5)),
        _enforcer(5, {0: [1], 1: [0], 2: [0, 1], 3: [0, 1], 4: [0, 1]}),
    )
    return roles


_MR_GUEST = [
    C.canRemoveSelf, C.canReceiveMessage, C.canCopyMessage, C.canReactToMessage, C.canDeleteOwnReaction,
    C.canFollowLink, C.canCopyLink, C.canDownloadImage, C.canDownloadVideo, C.canDownloadAudio,
]  # fmt: skip
_MR_ATTENDEE = [*_MR_GUEST, C.canAddOwnClient, C.canJoinIfPreauthorized, C.canRemoveOwnClient,
                C.canChangeOwnRole, C.canReportAbuse, C.canReplyInTopic, C.canDownloadAttachment,
                C.canChangeOwnName, C.canChangeOwnPresence, C.canChangeOwnAvatar]  # fmt: skip
_MR_SPEAKER = [*_MR_ATTENDEE, C.canSendMessage, C.canEditOwnMessage, C.canDeleteOwnMessage, C.canStartTopic,
               C.canUploadImage, C.canUploadVideo, C.canUploadAudio, C.canUploadAttachment, C.canSendLink,
               C.canSendLinkPreview]  # fmt: skip
_MR_MODERATOR = [*_MR_SPEAKER, *_MODERATION, C.canChangeRoomName, C.canChangeRoomAvatar,
                 C.canChangeRoomSubject, C.canChangeRoomMood]  # fmt: skip


def moderated_roles() -> tuple[Role, ...]:
    """[RP] "Moderated room": guest 2 (read only), attendee 3, speaker 4
    (may send), moderator 5, super_admin 6, policy_enforcer 7.

    The draft's speaker "includes all the capabilities of a speaker" and its
    moderator "of an ordinary_user" (no such role here): read as attendee
    and speaker respectively.
    """
    roles = (
        _no_role([C.canUseJoinCode], {0: [2, 3]}, max_active=None),
        _banned(),
        make_role(2, "guest", _MR_GUEST, {0: [2], 2: [0]}),
        make_role(3, "attendee", _MR_ATTENDEE, {0: [3], 3: [0]}),
        make_role(4, "speaker", _MR_SPEAKER, {0: [4], 4: [0]}),
        make_role(5, "moderator", _MR_MODERATOR, _all_pairs(6), min_participants=1),
        make_role(6, "super_admin", [*_MR_MODERATOR, C.canChangeRoomDescription, *_DISRUPTIVE], _all_pairs(7)),
        _enforcer(7, {0: [1], 1: [0], **{i: [0, 1] for i in range(2, 7)}}),
    )
    return roles


_MO_B_USER = [
    C.canRemoveSelf, C.canAddOwnClient, C.canRemoveOwnClient, C.canSendMessage, C.canReceiveMessage,
    C.canCopyMessage, C.canReportAbuse, C.canReplyInTopic, C.canReactToMessage, C.canDeleteOwnReaction,
    C.canEditOwnMessage, C.canSendLink, C.canSendLinkPreview, C.canFollowLink, C.canCopyLink,
    C.canDownloadImage, C.canDownloadVideo, C.canDownloadAudio, C.canDownloadAttachment, C.canChangeOwnName,
    C.canChangeOwnPresence, C.canChangeOwnAvatar,
]  # fmt: skip
_MO_HOST = [C.canChangeOwnRole, C.canJoinIfPreauthorized]
_MO_B_ADMIN = [*_MO_B_USER, C.canDeleteOwnMessage, C.canStartTopic, C.canUploadImage, C.canUploadVideo,
               C.canUploadAudio, C.canUploadAttachment, C.canAddParticipant, C.canRemoveParticipant, C.canBan,
               C.canKick, C.canChangeUserRole]  # fmt: skip
_MO_SUPER = [*_MO_B_ADMIN, *_MO_HOST, C.canUnBan, C.canDeleteOtherReaction, C.canDeleteOtherMessage,
             C.canEditOwnTopic, C.canEditOtherTopic, C.canChangeRoomDescription, C.canChangeRoomName,
             C.canChangeRoomAvatar, C.canChangeRoomSubject, C.canChangeRoomMood, *_DISRUPTIVE]  # fmt: skip


def multi_organization_roles() -> tuple[Role, ...]:
    """[RP] "Multi-organization administered room": per-organisation user and
    admin roles for orgs A (host), B and C; org admins manage only their own
    org's users and can ban but not unban them; at most 3 admins per guest org."""
    org_admin: dict[str, Any] = {"min_participants": 1, "max_participants": 3, "min_active": 1}
    roles = (
        _no_role(),
        _banned(),
        make_role(2, "org_a_user", [*_MO_B_USER, *_MO_HOST], {0: [2], 2: [0]}),
        make_role(3, "org_b_user", _MO_B_USER, {0: [3], 3: [0]}),
        make_role(4, "org_c_user", _MO_B_USER, {0: [4], 4: [0]}),
        make_role(5, "org_a_admin", [*_MO_B_ADMIN, *_MO_HOST], {0: [2, 5], 2: [0, 1, 5], 5: [0, 1, 2]}),
        make_role(6, "org_b_admin", _MO_B_ADMIN, {0: [3, 6], 3: [0, 1, 6], 6: [0, 1, 3]}, **org_admin),
        make_role(7, "org_c_admin", _MO_B_ADMIN, {0: [4, 7], 4: [0, 1, 7], 7: [0, 1, 4]}, **org_admin),
        make_role(
            8,
            "super_admin",
            _MO_SUPER,
            {0: list(range(1, 9)), 1: [0, *range(2, 9)], 2: [0, 1, 5, 8], 3: [0, 1, 6], 4: [0, 1, 7],
             5: [0, 1, 2, 8], 6: [0, 1, 3], 7: [0, 1, 4], 8: [0, 1, 2, 5]},
            min_participants=1,
            min_active=1,
        ),  # fmt: skip
        _enforcer(9, {0: [1], 1: [0], **{i: [0, 1] for i in range(3, 9)}}),
    )
    return roles
