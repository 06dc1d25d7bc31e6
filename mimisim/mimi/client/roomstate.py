"""Room state as a client reads it from its MLS group, and what it writes
into a new room (the policy module's glue).

Pure functions over a :class:`~mimisim.mls.group.Group`, its GroupContext
extensions and its leaves: the participant list, roles, what cached
proposals already remove, the room-state fingerprint of ``client.epoch``
details.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from mimisim import events as E
from mimisim import sharing
from mimisim.codec import DecodeError
from mimisim.mimi import policy as P
from mimisim.mimi import wire as W
from mimisim.mimi.client.operations import Room
from mimisim.mimi.identity import UriError, client_of_identity, user_of_client
from mimisim.mls.crypto import RandomSource
from mimisim.mls.group import Group, StagedCommit
from mimisim.mls.structs import (
    AppDataDictionary,
    Credential,
    CredentialType,
    Extension,
    ExtensionType,
    LeafNode,
    MLSMessage,
    ProposalType,
    PublicMessage,
    RequiredCapabilities,
    SenderType,
    WireFormat,
    find_extension,
)

CID = W.ComponentId

# ==========================================================================
# room state (policy module glue)

#: What every member of a MIMI room must support (GroupContext
#: ``required_capabilities``): the app_data_dictionary extension, the
#: AppDataUpdate and SelfRemove proposals, basic credentials.
MIMI_REQUIRED_CAPABILITIES = RequiredCapabilities(
    [int(ExtensionType.app_data_dictionary)],
    [int(ProposalType.app_data_update), int(ProposalType.self_remove)],
    [int(CredentialType.basic)],
)


def hub_credential(hub_domain: str) -> Credential:
    """The credential of the hub's external-sender entry: a basic credential
    naming the provider, ``mimi://<domain>`` (as the franking agent's)."""
    return Credential.basic(f"mimi://{hub_domain}".encode())


#: Role names a client uses when the caller names none ([RP]
#: "Cooperatively administered room", the default policy): the creator
#: becomes ``group_admin``, added users ``ordinary_user``.
CREATOR_ROLE = "group_admin"
MEMBER_ROLE = "ordinary_user"


def resolve_role(policy: P.RoomPolicy, role: int | str | None, default: str) -> int:
    """A role index from an index, a role name, or None (``default`` by name).

    Falls back to the lowest defined role above ``banned`` when the room has
    no role of that name, so rooms with other role sets still work."""
    if isinstance(role, int):
        if not policy.defined(role):
            raise ValueError(f"role {role} is not defined in this room")
        return role
    r = policy.role_by_name(role if role is not None else default)
    if r is not None:
        return int(r.role_index)
    if role is not None:
        raise ValueError(f"no role named {role!r} in this room")
    usable = sorted(x.role_index for x in policy.roles if x.role_index > int(W.RoleIndex.banned))
    if not usable:
        raise ValueError("the room defines no role a participant can hold")
    return int(usable[0])


def room_dictionary(
    room_uri: str,
    creator_user: str,
    policy: P.RoomPolicy | None,
    franking_agent: W.FrankingAgentData | None,
    room_name: str = "",
    creator_role: int | str | None = None,
) -> AppDataDictionary:
    """The ``app_data_dictionary`` of a new room: policy components, the
    participant list ``[(creator, creator role)]``, ``room_metadata`` naming
    the room, and the hub's ``franking_agent`` when given."""
    pol = policy if policy is not None else P.default_policy()
    role = resolve_role(pol, creator_role, CREATOR_ROLE)
    meta = W.RoomMetaData(W.IdentifierUri(room_uri), room_name, [], W.IdentifierUri(""), "", "")
    extra = {int(CID.franking_agent): franking_agent.encode()} if franking_agent is not None else None
    return P.room_app_data(pol, {creator_user: role}, meta, extra)


def room_policy(extensions: Sequence[Extension]) -> P.RoomPolicy:
    """The room policy in a GroupContext (the policy module's reading)."""
    return P.RoomPolicy.from_dictionary(dictionary_of(extensions))


def client_app_components() -> Mapping[int, Any]:
    """AppDataUpdate semantics a member applies (GroupConfig.app_components):
    the same as the hub's (:func:`mimisim.mimi.policy.mimi_app_components`;
    the participant list is a delta, [P] Participant List), so members and
    hub compute the same GroupContext."""
    return P.mimi_app_components()


# ==========================================================================
# module helpers


def fork_rng(rng: RandomSource, name: str) -> RandomSource:
    """A named child stream when the source supports it (DeterministicRandom)."""
    fork: Callable[[str], RandomSource] | None = getattr(rng, "fork", None)
    return fork(name) if fork is not None else rng


def epoch_of(msg: MLSMessage) -> int | None:
    body = msg.body
    if msg.wire_format == WireFormat.public_message and isinstance(body, PublicMessage):
        return int(body.content.epoch)
    if msg.wire_format == WireFormat.private_message:
        return int(body.epoch)
    return None


def client_of_leaf(leaf: LeafNode | None) -> str | None:
    if leaf is None:
        return None
    cred = leaf.credential
    if cred.credential_type != CredentialType.basic or cred.identity is None:
        return None
    return client_of_identity(cred.identity)


def user_of_leaf(leaf: LeafNode | None) -> str | None:
    client = client_of_leaf(leaf)
    if client is None:
        return None
    try:
        return user_of_client(client)
    except UriError:
        return None


def dictionary_of(extensions: Sequence[Extension]) -> AppDataDictionary:
    raw = find_extension(list(extensions), ExtensionType.app_data_dictionary)
    return AppDataDictionary.decode(raw) if raw is not None else AppDataDictionary([])


def participants_of(extensions: Sequence[Extension]) -> list[tuple[str, int]]:
    """The room's participant list, ``(user, role index)`` in list order. With
    :mod:`mimisim.sharing` on it is read once per dictionary bytes (every
    member of a room holds the same), a new list each call."""
    raw = find_extension(list(extensions), ExtensionType.app_data_dictionary)
    if sharing.enabled and raw is not None:
        return list(_participants_shared(bytes(raw)))
    return list(_participants(raw))


def _participants(dictionary: bytes | None) -> tuple[tuple[str, int], ...]:
    d = AppDataDictionary.decode(dictionary) if dictionary is not None else AppDataDictionary([])
    raw = d.get(CID.participant_list)
    if raw is None:
        return ()
    return tuple((p.user, p.role_index) for p in W.ParticipantListData.decode(raw).participants)


_participants_shared = functools.lru_cache(maxsize=256)(_participants)


def _plist_fingerprint(participants: Sequence[tuple[str, int]]) -> str:
    return hashlib.sha256("\n".join(f"{u}:{role}" for u, role in sorted(dict(participants).items())).encode()
                          ).hexdigest()[:8]


@functools.lru_cache(maxsize=256)
def _plist_fingerprint_shared(dictionary: bytes) -> str:
    return _plist_fingerprint(_participants_shared(dictionary))


def pending_removed_leaves(g: Group) -> set[int]:
    """Leaves a cached Remove or SelfRemove already removes."""
    out: set[int] = set()
    for cp in g.state.proposals.values():
        t = cp.proposal.proposal_type
        if t == ProposalType.remove:
            out.add(cp.proposal.body.removed)
        elif t == ProposalType.self_remove and cp.sender.leaf_index is not None:
            out.add(cp.sender.leaf_index)
    return out


def pending_removed_users(g: Group) -> set[str]:
    """Users a cached participant-list update already removes."""
    listed = [u for u, _ in participants_of(g.extensions)]
    out: set[str] = set()
    for cp in g.state.proposals.values():
        b = cp.proposal.body
        if (
            cp.proposal.proposal_type == ProposalType.app_data_update
            and b.component_id == CID.participant_list
            and b.update is not None
        ):
            try:
                upd = W.ParticipantListUpdate.decode(b.update)
            except DecodeError:
                continue
            out.update(listed[i] for i in upd.removed_indices if i < len(listed))
    return out


def removal_pending(g: Group) -> bool:
    """Whether a cached proposal removes this client: then it must not
    commit (it cannot commit its own removal; the hub requires every
    cached proposal in the next commit)."""
    me = g.own_leaf
    for cp in g.state.proposals.values():
        t = cp.proposal.proposal_type
        if t == ProposalType.remove and cp.proposal.body.removed == me:
            return True
        if t == ProposalType.self_remove and cp.sender.leaf_index == me:
            return True
    return False


def state_fingerprints(g: Group) -> tuple[str, str, str]:
    """``(tree, plist, auth)``: the first 8 hex digits of the tree hash, of
    SHA-256 over the participant list (``user:role`` lines, sorted) and of
    the epoch authenticator; the hub's ``state_tag`` renders the same three
    (the agreement invariant compares them with the hub's)."""
    raw = find_extension(list(g.extensions), ExtensionType.app_data_dictionary)
    if sharing.enabled and raw is not None:
        plist = _plist_fingerprint_shared(bytes(raw))
    else:
        plist = _plist_fingerprint(participants_of(g.extensions))
    return g.tree_hash.hex()[:8], plist, g.epoch_authenticator.hex()[:8]


def committer(staged: StagedCommit) -> str:
    """Who made a commit, for the trace: the committer's client URI."""
    s = staged.sender
    if s.sender_type == SenderType.new_member_commit:
        return "a new member"
    if s.leaf_index is not None and staged.state is not None:
        leaf = staged.state.tree.leaf(s.leaf_index)
        if leaf is not None:
            return client_of_leaf(leaf) or f"leaf {s.leaf_index}"
    return f"leaf {s.leaf_index}"


def epoch_event(r: Room, via: str, msg_id: str, status: str = "", *, operation: str | None = None,
                committer: str | None = None) -> E.ClientEpoch:
    """The ``client.epoch`` event of a room whose group just reached a new
    epoch (``via``: created, welcome, external_commit, own_commit, own_echo,
    commit), with the state fingerprints of :func:`state_fingerprints`."""
    g = r.group
    assert g is not None
    tree, plist, auth = state_fingerprints(g)
    return E.ClientEpoch(room=r.uri, epoch=g.epoch, msg_id=msg_id, status=status, via=via, operation=operation,
                         committer=committer, tree_fp=tree, plist_fp=plist, auth_fp=auth)
