"""What the hub's modules share: result types, the refusal signal, and
helpers that read a room's group (members, credentials, the participant list).

The hub is split by concern (docs: issue 10): :mod:`mimisim.mimi.hub` holds
the room state and the /update and /submitMessage endpoints,
:mod:`mimisim.mimi.hub_authz` the authorisation rules as pure functions,
:mod:`mimisim.mimi.hub_group_info` and :mod:`mimisim.mimi.hub_report_abuse`
one endpoint each. Everything here is sans-IO and pure.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from mimisim.codec import DecodeError
from mimisim.events import RoleChange
from mimisim.mimi import wire as W
from mimisim.mimi.identity import UriError, client_of_identity, domain_of, parse, user_of_client
from mimisim.mimi.transport import Accepted, AnyEvent, MimiResponse, bad_request
from mimisim.mls.structs import (
    AppDataDictionary,
    Credential,
    CredentialType,
    ExtensionType,
    GroupInfo,
    LeafNode,
    MLSMessage,
    WireFormat,
    find_extension,
)
from mimisim.mls.tree import RatchetTree

CID = W.ComponentId

#: Past epochs whose application messages /submitMessage still accepts
#: (0: only the current epoch). [P] leaves it to the hub ("epochTooOld
#: indicates that the hub provider is using a new MLS epoch").
DEFAULT_MAX_PAST_EPOCHS = 0

#: MIMI components (0x0020-0x0030). Those without a client-side rule in
#: :mod:`mimisim.mimi.policy` (the participant list, room metadata and the
#: policy components have one) -- e.g. ``franking_agent`` -- only change
#: through the hub.
MIMI_COMPONENTS = range(0x0020, 0x0031)


class HubError(ValueError):
    """An invalid room creation (the only hub call that raises: it is local to
    the hub's provider, not a MIMI request with a response code)."""


#: How many accepted application messages a hub remembers for /submitMessage idempotency.
RECENT_SUBMITS = 1024


def plist_fingerprint(participants: dict[str, int]) -> str:
    """First 8 hex digits of SHA-256 over the participant list (``user:role``
    lines, sorted): the ``plist_fp`` of ``hub.accept`` and ``client.epoch``."""
    return hashlib.sha256("\n".join(f"{u}:{r}" for u, r in sorted(participants.items())).encode()).hexdigest()[:8]


def state_tag(tree_hash: bytes, participants: dict[str, int], epoch_authenticator: bytes | None = None) -> str:
    """A short fingerprint of a room's state for trace details:
    ``tree=<8 hex> plist=<8 hex>`` (plus ``auth=<8 hex>`` for a member, who
    knows the epoch authenticator; the hub does not). The agreement invariant
    compares these between the hub's ``hub.accept`` and members' ``client.epoch``
    rows without any live object."""
    tag = f"tree={tree_hash.hex()[:8]} plist={plist_fingerprint(participants)}"
    if epoch_authenticator is not None:
        tag += f" auth={epoch_authenticator.hex()[:8]}"
    return tag


def role_changes(before: dict[str, int], after: dict[str, int]) -> tuple[RoleChange, ...]:
    """The participant-list changes between two lists, by user (sorted):
    ``(user, old role, new role)``, 0 meaning not listed. With the
    committer's role it lets a checker replay the participant list from the
    trace alone and ask whether the committer's role allowed each change."""
    return tuple(
        RoleChange(u, int(before.get(u, 0)), int(after.get(u, 0)))
        for u in sorted(set(before) | set(after))
        if before.get(u, 0) != after.get(u, 0)
    )


def role_changes_tag(before: dict[str, int], after: dict[str, int]) -> str:
    """`` changes=<user>:<old>><new>,...`` (empty when no role changed): the
    text form of :func:`role_changes`."""
    changed = [f"{c.user}:{c.old}>{c.new}" for c in role_changes(before, after)]
    return f" changes={','.join(changed)}" if changed else ""


def msg_id_of(mls_message_bytes: bytes) -> str:
    """A stable id of one MLS message end to end: the first 16 hex digits of
    SHA-256 over the encoded MLSMessage.

    SHA-256 is the hash of cipher suites 1-3; it is used for every suite so
    the id depends on the bytes only, not on which room or provider computes it.
    """
    return hashlib.sha256(mls_message_bytes).hexdigest()[:16]


@dataclass(frozen=True)
class FanoutItem:
    """One FanoutMessage for one provider. ``kind`` is ``commit``,
    ``proposal``, ``application`` or ``welcome``. Items for the hub's own
    domain are delivered locally by its provider."""

    domain: str
    body: bytes
    msg_id: str
    kind: str


@dataclass(frozen=True)
class HubResult:
    """What one request produced, frozen like the provider's
    :class:`~mimisim.mimi.transport.Outcome` (which it becomes): the HTTP
    response, the fanout plan (in delivery order), trace events, and the
    inputs accepted (what a lagging standby would lose). Lists given to the
    constructor are frozen into tuples."""

    response: MimiResponse
    fanout: tuple[FanoutItem, ...] = ()
    events: tuple[AnyEvent, ...] = ()
    accepted: tuple[Accepted, ...] = ()

    def __post_init__(self) -> None:
        for name in ("fanout", "events", "accepted"):
            v = getattr(self, name)
            if not isinstance(v, tuple):
                object.__setattr__(self, name, tuple(v))


@dataclass(frozen=True)
class PendingEntry:
    """A proposal the hub accepted in the current epoch, as it arrived.

    The observer caches the decoded proposal; the hub also keeps the
    MLSMessage and acceptance time, which /groupInfo returns as -06
    ``PendingProposal``s, and who originated it.
    """

    ref: bytes
    message: bytes
    accepted_ms: int
    origin: str  # "client" | "hub"


@dataclass(frozen=True)
class AbuseRecord:
    """An accepted abuse report ([P6] Report abuse): when, from which
    provider, the encoded report, and the reported user."""

    accepted_ms: int
    from_domain: str
    alleged_abuser: str
    report: bytes


class Reject(Exception):
    """Internal: a request refused with ``response``. Raised inside the
    handlers and turned into a :class:`HubResult` at their boundary."""

    def __init__(self, response: MimiResponse, detail: str) -> None:
        super().__init__(detail)
        self.response = response
        self.detail = detail


def update_reject(resp: W.UpdateRoomResponse) -> Reject:
    return Reject(MimiResponse(200, resp.encode(), resp.response_code.name), resp.error_description)


def not_allowed(why: str) -> Reject:
    return update_reject(W.UpdateRoomResponse.not_allowed(why[:200]))


def invalid(refs: Iterable[bytes], why: str) -> Reject:
    return update_reject(W.UpdateRoomResponse.invalid_proposal(list(refs), why[:200]))


def bad(why: str) -> Reject:
    return Reject(bad_request(why), why)


def client_of_leaf(leaf: LeafNode | None) -> str | None:
    """The client URI a leaf's basic credential names (see identity.py)."""
    if leaf is None:
        return None
    return client_of_credential(leaf.credential)


def client_of_credential(cred: Credential) -> str | None:
    if cred.credential_type != CredentialType.basic or cred.identity is None:
        return None
    return client_of_identity(cred.identity)


def dictionary_of(extensions: Sequence) -> AppDataDictionary:
    raw = find_extension(list(extensions), ExtensionType.app_data_dictionary)
    return AppDataDictionary.decode(raw) if raw is not None else AppDataDictionary([])


def participants_of(extensions: Sequence) -> list[tuple[str, int]]:
    raw = dictionary_of(extensions).get(CID.participant_list)
    if raw is None:
        return []
    return [(p.user, p.role_index) for p in W.ParticipantListData.decode(raw).participants]


def members_of(tree: RatchetTree) -> dict[int, str | None]:
    """Leaf index -> client URI (None for a credential that is not one)."""
    return {i: client_of_leaf(tree.leaf(i)) for i in tree.leaf_indices()}


def user_or_none(client: str | None) -> str | None:
    if client is None:
        return None
    try:
        return user_of_client(client)
    except UriError:
        return None


def hash_parts(h: hashlib._Hash, *parts: bytes | str | int) -> None:
    """Length-prefixed, so distinct part lists never hash alike."""
    for p in parts:
        if isinstance(p, int):
            b = p.to_bytes(8, "big", signed=True)
        elif isinstance(p, str):
            b = p.encode()
        else:
            b = bytes(p)
        h.update(len(b).to_bytes(4, "big") + b)



def decode_group_info(data: bytes) -> GroupInfo:
    """A GroupInfo given as an MLSMessage or as the bare struct."""
    try:
        m = MLSMessage.decode(data)
    except DecodeError:
        return GroupInfo.decode(data)
    if m.wire_format != WireFormat.group_info:
        raise DecodeError("expected a GroupInfo")
    gi: GroupInfo = m.body
    return gi


def participants_of_bytes(raw: bytes | None) -> list[tuple[str, int]]:
    if raw is None:
        return []
    return [(p.user, p.role_index) for p in W.ParticipantListData.decode(raw).participants]


def domain_of_credential(cred: Credential) -> str | None:
    """The provider a follower's external-sender credential names: a basic
    identity that is ``mimi://<domain>`` or a bare domain."""
    if cred.credential_type != CredentialType.basic or cred.identity is None:
        return None
    try:
        s = cred.identity.decode()
        return domain_of(s) if s.startswith("mimi://") else parse("mimi://" + s).domain
    except (UnicodeDecodeError, UriError):
        return None


