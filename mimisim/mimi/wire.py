"""MIMI wire bodies: every request and response body of the MIMI protocol draft.

Each body is declared once, as a dataclass whose fields carry their codec
(:mod:`mimisim.codec`), so encoding and decoding are generic and strict: a
truncated body, trailing bytes, an unknown value of a closed enum, a reserved
value, or a body that breaks one of the draft's MUSTs about its own shape
raises :class:`~mimisim.codec.DecodeError` naming the field path. Encoding
refuses the same things (``EncodeError``), so what we send always decodes.

Sources, cited in each docstring by section title:

* [P]   draft-ietf-mimi-protocol (the seed)
* [P6]  draft-ietf-mimi-protocol-06 (followed where the seed is TODO, silent,
        or older -- e.g. signed key-material requests, -06 franking, the
        extension dictionaries)
* [RP]  draft-ietf-mimi-room-policy (role indices, capabilities, component IDs)
* [RTO] draft-mahy-mls-ratchet-tree-options (RatchetTreeOption and
        PartialGroupInfo are declared in :mod:`mimisim.mls.structs`, being MLS
        objects, and re-exported here)
* [EXT] draft-ietf-mls-extensions (component IDs, SafeAAD, AppDataDictionary)

Every choice where the drafts disagree or are silent is listed in
``docs/mimi-choices.md``.

Why one module of ~1,600 lines: it is a declarative list (64 classes: 36 body
structs for the requests and responses of the draft and their enums, in the
draft's order) with no logic beyond each body's own shape checks. Split by
endpoint it would scatter the shared pieces (identifiers, codes, the
HandshakeBundle) and make "which body does the draft define here" a search
across files instead of one scroll.

Naming: struct and enum names, and enum member names, are the drafts' own
(``UpdateResponseCode.wrongEpoch``), so a trace can print ``code.name``.
Field names are the drafts' names in snake_case (``currentEpoch`` ->
``current_epoch``). Opaque fields that the drafts say hold a URI or text are
``str`` (strict UTF-8, no NUL); all other opaque fields are ``bytes``.

The module is sans-IO: no clock, no randomness, no I/O. Timestamps arrive as
arguments.
"""

from __future__ import annotations

import dataclasses
import enum
import json
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, ClassVar, TypeVar
from urllib.parse import urlsplit

from mimisim import sharing
from mimisim.codec import (
    Codec,
    DecodeError,
    EncodeError,
    EnumCodec,
    Fixed,
    Optional,
    Reader,
    Select,
    Struct,
    Vector,
    as_codec,
    field,
    opaque,
    uint8,
    uint16,
    uint32,
    uint64,
)
from mimisim.mls.structs import (
    AppDataDictionary,
    Capabilities,
    ContentType,
    Credential,
    ExternalSender,
    GroupInfo,
    HPKECiphertext,
    KeyPackage,
    MLSMessage,
    PartialGroupInfo,
    RatchetTreeOption,
    RequiredCapabilities,
    SafeAADItem,
    Welcome,
    WireFormat,
)

# Re-exported: MIMI bodies embed these [RTO] objects; mls.structs declares them.
from mimisim.mls.structs import RatchetTreePresence as RatchetTreePresence
from mimisim.mls.structs import RatchetTreeRepresentation as RatchetTreeRepresentation

T = TypeVar("T")

# ==========================================================================
# codecs this module needs beyond mimisim.codec


class Text(Codec):
    """``opaque x<V>`` holding UTF-8 text, surfaced as ``str``.

    Why: the drafts carry URIs and human-readable strings as opaque bytes
    ("a sequence of valid UTF8 without nulls", [P] Room Metadata). Decoding
    them to ``str`` once, strictly, means no caller compares bytes with str or
    forgets to validate. Python's strict UTF-8 codec rejects overlong forms,
    encoded surrogates and code points above U+10FFFF.
    """

    def __init__(self, allow_nul: bool = False) -> None:
        self.allow_nul = allow_nul

    def encode(self, value: Any, out: bytearray) -> None:
        if not isinstance(value, str):
            raise EncodeError(f"text expects str, got {type(value).__name__}")
        if not self.allow_nul and "\x00" in value:
            raise EncodeError("text must not contain NUL")
        try:
            data = value.encode("utf-8")
        except UnicodeEncodeError as e:
            raise EncodeError(f"text is not encodable as UTF-8: {e.reason}") from None
        opaque.encode(data, out)

    def decode(self, r: Reader, ctx: Mapping[str, Any]) -> str:
        data = opaque.decode(r, ctx)
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as e:
            raise r.fail(f"invalid UTF-8 at byte {e.start}") from None
        if not self.allow_nul and "\x00" in text:
            raise r.fail("NUL in UTF-8 string")
        return text

    def __repr__(self) -> str:
        return "Text()"


#: ``UTF8String`` / ``string`` / URI text of the drafts: UTF-8 without NUL.
UTF8String = Text()


class StrictEnum(EnumCodec):
    """A closed enum that also refuses the values the draft marks ``reserved``.

    Why: ``reserved(0)`` is named in the drafts' enums but never valid on the
    wire; rejecting it in the codec gives a field-path error instead of a
    confusing "no case" further on.
    """

    def __init__(
        self, enum_cls: type[enum.IntEnum], width: Any = uint8, reserved: Iterable[int] = (0,)
    ) -> None:
        super().__init__(enum_cls, width, closed=True)
        self.reserved = frozenset(int(v) for v in reserved)

    @property
    def allowed(self) -> list[enum.IntEnum]:
        """The members a valid body may carry (used by strategy builders)."""
        return [m for m in self.enum_cls if int(m) not in self.reserved]

    def encode(self, value: Any, out: bytearray) -> None:
        if int(value) in self.reserved or int(value) not in self._values:
            raise EncodeError(f"{self.enum_cls.__name__} value {int(value)} is reserved or unknown")
        super().encode(value, out)

    def decode(self, r: Reader, ctx: Mapping[str, Any]) -> Any:
        v = super().decode(r, ctx)
        if int(v) in self.reserved:
            raise r.fail(f"reserved {self.enum_cls.__name__} value {int(v)}")
        return v


def closed(enum_cls: type[enum.IntEnum], width: Any = uint8) -> StrictEnum:
    """A closed enum (no reserved values) that refuses unknown values both ways.

    ``EnumCodec(closed=True)`` checks only when decoding; this also refuses to
    encode a value the draft does not define, so encode and decode agree.
    """
    return StrictEnum(enum_cls, width, reserved=())


class NonEmptyVector(Vector):
    """``T x<V>`` that the draft requires to hold at least one element."""

    min_items = 1

    def encode(self, value: Any, out: bytearray) -> None:
        if isinstance(value, (list, tuple)) and not value:
            raise EncodeError("vector must not be empty")
        super().encode(value, out)

    def decode(self, r: Reader, ctx: Mapping[str, Any]) -> list[Any]:
        items = super().decode(r, ctx)
        if not items:
            raise r.fail("vector must not be empty")
        return items


class DerivedSelect(Select):
    """``select (x.y.z)`` where the tag is not a field of this struct.

    The drafts select on values inside an earlier field
    (``proposalOrCommit.content.content_type``, ``message.wire_format``).
    ``derive`` computes the tag from the already-decoded fields; for encoding
    the struct exposes the same tag as a property named ``tag_field``.
    """

    def __init__(
        self, tag_field: str, derive: Callable[[Mapping[str, Any]], Any], cases: Mapping[Any, Any]
    ) -> None:
        super().__init__(tag_field, cases)
        self.derive = derive

    def encode_with(self, tag: Any, value: Any, out: bytearray) -> None:
        if tag is None:
            raise EncodeError(f"{self.tag_field} is undefined for this message")
        super().encode_with(tag, value, out)

    def decode(self, r: Reader, ctx: Mapping[str, Any]) -> Any:
        tag = self.derive(ctx)
        if tag is None or int(tag) not in self.cases:
            raise r.fail(f"no case for {self.tag_field}={tag!r}")
        c = self.cases[int(tag)]
        return None if c is None else as_codec(c).decode(r, ctx)


class MessageKind(enum.IntEnum):
    """What an MLSMessage carries, as the drafts' ``select`` arms name it.

    Not on the wire: [P6] FanoutMessage selects on "message.wire_format" with
    arms ``application``, ``welcome``, ``proposal`` and ``commit`` -- a mix of
    wire formats and content types. This enum names that derived tag. Values
    1-3 equal the MLS ``ContentType`` values.
    """

    application = 1
    proposal = 2
    commit = 3
    welcome = 4


def message_kind(msg: Any) -> MessageKind | None:
    """The :class:`MessageKind` of an MLSMessage, or None if MIMI never carries it.

    MIMI carries application messages as PrivateMessage ([P] Submit a
    Message), handshake messages as PublicMessage ([P] Update Room State;
    SemiPrivateMessage is not implemented), and Welcomes. Everything else
    (PrivateMessage handshakes, GroupInfo, KeyPackage) has no kind.
    """
    if not isinstance(msg, MLSMessage):
        return None
    wf = msg.wire_format
    if wf == WireFormat.welcome:
        return MessageKind.welcome
    if wf == WireFormat.private_message:
        return MessageKind.application if msg.body.content_type == ContentType.application else None
    if wf == WireFormat.public_message:
        ct = msg.body.content.content_type
        if ct == ContentType.proposal:
            return MessageKind.proposal
        if ct == ContentType.commit:
            return MessageKind.commit
    return None


_KIND_TEXT = {
    MessageKind.application: "PrivateMessage(application)",
    MessageKind.proposal: "PublicMessage(proposal)",
    MessageKind.commit: "PublicMessage(commit)",
    MessageKind.welcome: "Welcome",
}


def _describe(msg: MLSMessage) -> str:
    wf = getattr(msg.wire_format, "name", str(msg.wire_format))
    ct = getattr(msg.body, "content_type", None) or getattr(
        getattr(msg.body, "content", None), "content_type", None
    )
    return f"{wf}({ct.name})" if ct is not None else wf


class KindedMessage(Codec):
    """An ``MLSMessage`` that must be of one of the given kinds.

    Why a codec and not a check: the drafts restrict which messages each field
    may hold ("MLSMessage with a WireFormat of PrivateMessage, and a
    content_type of application", [P] Submit a Message). Enforcing it here
    names the field in the error and makes encode refuse the same bodies.
    """

    def __init__(self, *kinds: MessageKind) -> None:
        self.kinds = frozenset(kinds)

    def _expect(self) -> str:
        return " or ".join(_KIND_TEXT[k] for k in sorted(self.kinds))

    def encode(self, value: Any, out: bytearray) -> None:
        if message_kind(value) not in self.kinds:
            got = _describe(value) if isinstance(value, MLSMessage) else type(value).__name__
            raise EncodeError(f"expected {self._expect()}, got {got}")
        as_codec(MLSMessage).encode(value, out)

    def decode(self, r: Reader, ctx: Mapping[str, Any]) -> MLSMessage:
        msg: MLSMessage = as_codec(MLSMessage).decode(r, ctx)
        if message_kind(msg) not in self.kinds:
            raise r.fail(f"expected {self._expect()}, got {_describe(msg)}")
        return msg

    def __repr__(self) -> str:
        return f"KindedMessage({self._expect()})"


# ==========================================================================
# enums and constants


class Protocol(enum.IntEnum):
    """[P] MIMI Endpoints and Framing: the end-to-end protocol of a body."""

    reserved = 0
    mls10 = 1


ProtocolCodec = StrictEnum(Protocol)
MLS10 = Protocol.mls10

CipherSuite = uint16  # RFC 9420 s.17.1
SignaturePublicKey = opaque  # RFC 9420 s.5.1.1
HPKEPublicKey = opaque
ProposalRef = opaque  # RFC 9420 s.5.2: HashReference = opaque<V>


class KeyMaterialUserCode(enum.IntEnum):
    """[P] Fetch Key Material: per-user status."""

    success = 0
    partialSuccess = 1
    incompatibleProtocol = 2
    noCompatibleMaterial = 3
    userUnknown = 4
    noConsent = 5
    noConsentForThisRoom = 6
    userDeleted = 7


#: User codes for which a KeyMaterialResponse may list clients ([P]: "For
#: any other user code, the provider MUST NOT populate the clients list").
USER_CODES_WITH_CLIENTS = frozenset(
    {
        KeyMaterialUserCode.success,
        KeyMaterialUserCode.partialSuccess,
        KeyMaterialUserCode.noCompatibleMaterial,
    }
)


class KeyMaterialClientCode(enum.IntEnum):
    """[P] Fetch Key Material: per-client status."""

    success = 0
    keyMaterialExhausted = 1
    nothingCompatible = 2


class GroupInfoRepresentation(enum.IntEnum):
    """[P] Update Room State: how the GroupInfo travels with a commit."""

    reserved = 0
    full = 1
    partial = 2


class UpdateResponseCode(enum.IntEnum):
    """[P] Update Room State: response code of /update."""

    success = 0
    wrongEpoch = 1
    notAllowed = 2
    invalidProposal = 3


class SubmitResponseCode(enum.IntEnum):
    """[P] Submit a Message: response code of /submitMessage (accepted = success)."""

    accepted = 0
    notAllowed = 1
    epochTooOld = 2


class GroupInfoCode(enum.IntEnum):
    """[P] Claim group key information: response code of /groupInfo."""

    reserved = 0
    success = 1
    notAuthorized = 2
    noSuchRoom = 3


class ConsentOperation(enum.IntEnum):
    """[P] Convey explicit consent."""

    cancel = 0
    request = 1
    grant = 2
    revoke = 3


#: Operations each consent endpoint carries ([P] Convey explicit consent).
REQUEST_CONSENT_OPERATIONS = frozenset({ConsentOperation.request, ConsentOperation.cancel})
UPDATE_CONSENT_OPERATIONS = frozenset({ConsentOperation.grant, ConsentOperation.revoke})


class SearchIdentifierType(enum.IntEnum):
    """[P] Find internal address: what a QueryElement matches."""

    reserved = 0
    handle = 1
    nick = 2
    email = 3
    phone = 4
    partialName = 5
    wholeProfile = 6
    oidcStdClaim = 7
    vcardField = 8


class IdentifierQueryCode(enum.IntEnum):
    """[P] Find internal address: response code of /identifierQuery."""

    success = 0
    notFound = 1
    ambiguous = 2
    forbidden = 3
    unsupportedField = 4


class FieldSource(enum.IntEnum):
    """[P] Find internal address: where a ProfileField's name comes from."""

    reserved = 0
    oidcStdClaim = 7
    vcardField = 8


class AbuseType(enum.IntEnum):
    """[P] Report abuse: reason code. The draft defines no reasons yet (TODO),
    so the codec is open: any uint8 decodes, unknown values stay ints."""

    reserved = 0


class ComponentId(enum.IntEnum):
    """MLS application component IDs ([EXT] registry, [P6] and [RP] IANA).

    Suggested values; [RP]'s are "TBDn (suggested value ...)".
    """

    app_components = 0x0001  # [EXT]
    safe_aad = 0x0002  # [EXT]
    content_media_types = 0x0003  # [EXT]
    last_resort_key_package = 0x0004  # [EXT]
    app_ack = 0x0005  # [EXT]
    frank_aad = 0x0020  # [P6] Safe AAD component
    franking_agent = 0x0021  # [P6] GroupContext component
    franking_signature_key = 0x0021  # [P6] IANA name of the same component
    participant_list = 0x0022  # [P6]
    room_metadata = 0x0023  # [P6]
    mls_operational_policy = 0x0024  # [RP]
    roles_list = 0x0025  # [RP]
    preauth_list = 0x0026  # [RP]
    base_room_policy = 0x0027  # [RP]
    status_notification_policy = 0x0028  # [RP]
    join_link_policy = 0x0029  # [RP]
    join_links = 0x002A  # [RP]
    link_preview_policy = 0x002B  # [RP]
    asset_policy = 0x002C  # [RP]
    logging_policy = 0x002D  # [RP]
    chat_history_policy = 0x002E  # [RP]
    bot_policy = 0x002F  # [RP]
    message_expiration_policy = 0x0030  # [RP]


class RoleIndex(enum.IntEnum):
    """[RP] Role-Based Access Control: the role indices the draft fixes.

    Role 0 is "not in the participant list"; role 1, when it exists, is the
    role named "banned". All other indices are defined per room.
    """

    no_role = 0
    banned = 1


BANNED_ROLE_NAME = "banned"


class Capability(enum.IntEnum):
    """[RP] New MIMI Role Capabilities registry (uint16 CapabilityType)."""

    canAddParticipant = 0x0000
    canRemoveParticipant = 0x0001
    canAddOwnClient = 0x0002
    canRemoveOwnClient = 0x0003
    canOpenJoin = 0x0004
    canJoinIfPreauthorized = 0x0005
    canRemoveSelf = 0x0006
    canCreateJoinCode = 0x0007  # reserved
    canDeleteJoinCode = 0x0008  # reserved
    canUseJoinCode = 0x0009
    canBan = 0x000A
    canUnBan = 0x000B
    canUnban = 0x000B  # spelling used in the capability text
    canKick = 0x000C
    canKnock = 0x000D  # reserved
    canAcceptKnock = 0x000E  # reserved
    canChangeUserRole = 0x000F
    canChangeOwnRole = 0x0010
    canCreateSubgroup = 0x0011  # reserved
    canSendMessage = 0x0100
    canReceiveMessage = 0x0101
    canCopyMessage = 0x0102
    canReportAbuse = 0x0103
    canReplyToMessage = 0x0104
    canReactToMessage = 0x0105
    canEditReaction = 0x0106
    canDeleteOwnReaction = 0x0107
    canDeleteOtherReaction = 0x0108
    canEditOwnMessage = 0x0109
    canDeleteOwnMessage = 0x010A
    canDeleteOtherMessage = 0x010B
    canStartTopic = 0x010C
    canReplyInTopic = 0x010D
    canEditOwnTopic = 0x010E
    canEditOtherTopic = 0x010F
    canSendDirectMessage = 0x0110  # reserved
    canTargetMessage = 0x0111  # reserved
    canUploadImage = 0x0200
    canUploadAudio = 0x0201
    canUploadVideo = 0x0202
    canUploadAttachment = 0x0203
    canDownloadImage = 0x0204
    canDownloadAudio = 0x0205
    canDownloadVideo = 0x0206
    canDownloadAttachment = 0x0207
    canSendLink = 0x0208
    canSendLinkPreview = 0x0209
    canFollowLink = 0x020A
    canCopyLink = 0x020B
    canChangeRoomName = 0x0300
    canChangeRoomDescription = 0x0301
    canChangeRoomAvatar = 0x0302
    canChangeRoomSubject = 0x0303
    canChangeRoomMood = 0x0304
    canChangeOwnName = 0x0380  # reserved
    canChangeOwnPresence = 0x0381  # reserved
    canChangeOwnMood = 0x0382  # reserved
    canChangeOwnAvatar = 0x0383  # reserved
    canStartCall = 0x0400
    canJoinCall = 0x0401
    canSendAudio = 0x0402
    canReceiveAudio = 0x0403
    canSendVideo = 0x0404
    canReceiveVideo = 0x0405
    canShareScreen = 0x0406
    canViewSharedScreen = 0x0407
    canCreateRoom = 0x0500  # reserved
    canDestroyRoom = 0x0501
    canChangeRoomMembershipStyle = 0x0502
    canChangeRoleDefinitions = 0x0503
    canChangePreauthorizedUserList = 0x0504
    canChangeOtherPolicyAttribute = 0x0505  # reserved
    canChangeMlsOperationalPolicies = 0x0600  # reserved
    canSendMLSReinitProposal = 0x0601
    canSendMLSUpdateProposal = 0x0602  # reserved
    canSendMLSPSKProposal = 0x0603  # reserved
    canSendMLSExternalProposal = 0x0604  # reserved
    canSendMLSExternalCommit = 0x0605  # reserved


#: Capabilities the registry lists as "(reserved)": named, not yet defined.
RESERVED_CAPABILITIES = frozenset(
    {
        Capability.canCreateJoinCode,
        Capability.canDeleteJoinCode,
        Capability.canKnock,
        Capability.canAcceptKnock,
        Capability.canCreateSubgroup,
        Capability.canSendDirectMessage,
        Capability.canTargetMessage,
        Capability.canChangeOwnName,
        Capability.canChangeOwnPresence,
        Capability.canChangeOwnMood,
        Capability.canChangeOwnAvatar,
        Capability.canCreateRoom,
        Capability.canChangeOtherPolicyAttribute,
        Capability.canChangeMlsOperationalPolicies,
        Capability.canSendMLSUpdateProposal,
        Capability.canSendMLSPSKProposal,
        Capability.canSendMLSExternalProposal,
        Capability.canSendMLSExternalCommit,
    }
)

#: [RP]: "Assignments in the range 0xF000 to 0xFFFF are for private use."
CAPABILITY_PRIVATE_USE = range(0xF000, 0x10000)


# ==========================================================================
# identifiers


class IdentifierUri(Struct, frozen=True):
    """[P] Fetch Key Material: ``struct { opaque uri<V>; } IdentifierUri``.

    Also the ``Uri`` of [P] Room Metadata and ``RoomId`` of [P] Convey
    explicit consent (same wire form). Frozen so it can key dicts. An empty
    URI is how the drafts' non-optional-but-optional fields say "absent"
    (``roomId`` outside a room, anonymous ``reportingUser``).
    """

    uri: str = field(UTF8String)

    def __str__(self) -> str:
        return self.uri

    @property
    def empty(self) -> bool:
        return not self.uri


#: [P] Room Metadata ``Uri`` and [P] consent ``RoomId``: same struct.
Uri = IdentifierUri
RoomId = IdentifierUri


# ==========================================================================
# fetch key material


class KeyMaterialRequestTBS(Struct):
    """[P6] Fetch Key Material: the part of KeyMaterialRequest the requester signs.

    ``key_material_request_signature = SignWithLabel(requesterSignatureKey,
    "KeyMaterialRequestTBS", KeyMaterialRequestTBS)``.
    """

    protocol: Protocol = field(ProtocolCodec)
    requesting_user: IdentifierUri = field(IdentifierUri)
    target_user: IdentifierUri = field(IdentifierUri)
    room_id: IdentifierUri = field(IdentifierUri)
    acceptable_ciphersuites: list[int] = field(Select("protocol", {MLS10: NonEmptyVector(CipherSuite)}))
    required_capabilities: RequiredCapabilities = field(Select("protocol", {MLS10: RequiredCapabilities}))
    requester_signature_key: bytes = field(Select("protocol", {MLS10: SignaturePublicKey}))
    requester_credential: Credential = field(Select("protocol", {MLS10: Credential}))


class KeyMaterialRequest(Struct):
    """[P6] Fetch Key Material: body of ``POST /keyMaterial/{targetUser}``.

    The seed has no requester key, credential or signature; -06 adds them.
    ``room_id`` is empty when the request is not for a particular room.
    """

    protocol: Protocol = field(ProtocolCodec)
    requesting_user: IdentifierUri = field(IdentifierUri)
    target_user: IdentifierUri = field(IdentifierUri)
    room_id: IdentifierUri = field(IdentifierUri)
    acceptable_ciphersuites: list[int] = field(Select("protocol", {MLS10: NonEmptyVector(CipherSuite)}))
    required_capabilities: RequiredCapabilities = field(Select("protocol", {MLS10: RequiredCapabilities}))
    requester_signature_key: bytes = field(Select("protocol", {MLS10: SignaturePublicKey}))
    requester_credential: Credential = field(Select("protocol", {MLS10: Credential}))
    key_material_request_signature: bytes = field(Select("protocol", {MLS10: opaque}))

    def tbs(self) -> KeyMaterialRequestTBS:
        """The signed content: this request without its signature."""
        return KeyMaterialRequestTBS(
            self.protocol,
            self.requesting_user,
            self.target_user,
            self.room_id,
            self.acceptable_ciphersuites,
            self.required_capabilities,
            self.requester_signature_key,
            self.requester_credential,
        )


def foreign_protocol_key_material_request(body: bytes) -> tuple[int, str] | None:
    """``(protocol, target user)`` of a KeyMaterialRequest whose protocol is
    neither MLS 1.0 nor reserved, else None. Only the fields every protocol
    shares (protocol, requesting user, target user, room) are read: the rest
    is ``select (protocol)`` with no arm this implementation knows, so a
    provider can answer ``incompatibleProtocol`` ([P6] s.5.2) instead of a
    400. Raises :class:`DecodeError` when even the shared fields do not
    decode."""
    if not body or body[0] in (int(Protocol.reserved), int(Protocol.mls10)):
        return None
    r = Reader(body, 1)
    IdentifierUri.decode_prefix(r)  # requesting user
    target = IdentifierUri.decode_prefix(r)
    IdentifierUri.decode_prefix(r)  # room
    return body[0], target.uri


_CLIENT = KeyMaterialClientCode


class ClientKeyMaterial(Struct):
    """[P] Fetch Key Material: one client's entry in a KeyMaterialResponse.

    The draft's ``select (protocol)`` refers to the enclosing response's
    protocol, which must be mls10; the MLS arm is therefore always taken.
    """

    client_status: KeyMaterialClientCode = field(closed(KeyMaterialClientCode))
    client_uri: IdentifierUri = field(IdentifierUri)
    key_package: KeyPackage | None = field(
        Select(
            "client_status",
            {
                _CLIENT.success: KeyPackage,
                _CLIENT.keyMaterialExhausted: None,
                _CLIENT.nothingCompatible: None,
            },
        )
    )
    client_capabilities: Capabilities | None = field(
        Select(
            "client_status",
            {
                _CLIENT.success: None,
                _CLIENT.keyMaterialExhausted: None,
                _CLIENT.nothingCompatible: Optional(Capabilities),
            },
        )
    )


class KeyMaterialResponse(Struct):
    """[P] Fetch Key Material: response body of /keyMaterial.

    Only ``success``, ``partialSuccess`` and ``noCompatibleMaterial`` may list
    clients (the draft's MUST NOT), and the protocol must be mls10 because the
    clients' encoding depends on it.
    """

    protocol: Protocol = field(ProtocolCodec)
    user_status: KeyMaterialUserCode = field(closed(KeyMaterialUserCode))
    user_uri: IdentifierUri = field(IdentifierUri)
    clients: list[ClientKeyMaterial] = field(Vector(ClientKeyMaterial))

    def _check(self) -> str | None:
        if self.clients and self.user_status not in USER_CODES_WITH_CLIENTS:
            return f"clients must be empty when user_status is {KeyMaterialUserCode(self.user_status).name}"
        return None


# ==========================================================================
# update room state


class GroupInfoOption(Struct):
    """[P] Update Room State: the committer's GroupInfo, full or partial."""

    representation: GroupInfoRepresentation = field(StrictEnum(GroupInfoRepresentation))
    group_info: GroupInfo | None = field(
        Select(
            "representation", {GroupInfoRepresentation.full: GroupInfo, GroupInfoRepresentation.partial: None}
        )
    )
    partial_group_info: PartialGroupInfo | None = field(
        Select(
            "representation",
            {GroupInfoRepresentation.full: None, GroupInfoRepresentation.partial: PartialGroupInfo},
        )
    )

    @staticmethod
    def full(group_info: GroupInfo) -> GroupInfoOption:
        return GroupInfoOption(GroupInfoRepresentation.full, group_info, None)

    @staticmethod
    def partial(partial_group_info: PartialGroupInfo) -> GroupInfoOption:
        return GroupInfoOption(GroupInfoRepresentation.partial, None, partial_group_info)


def _kind_of(field_name: str) -> Callable[[Mapping[str, Any]], MessageKind | None]:
    return lambda ctx: message_kind(ctx.get(field_name))


_HB_KIND = _kind_of("proposal_or_commit")
_K = MessageKind


class HandshakeBundle(Struct):
    """[P] Update Room State: a commit with what the hub needs to fan it out,
    or a proposal with any further proposals.

    Selected on ``proposalOrCommit.content.content_type`` (``kind``). The
    commit arm carries an optional Welcome, the GroupInfo (full or partial)
    and a RatchetTreeOption; the proposal arm carries ``more_proposals``.
    Handshakes travel as PublicMessage (SemiPrivateMessage is not supported).
    """

    proposal_or_commit: MLSMessage = field(KindedMessage(_K.proposal, _K.commit))
    welcome: Welcome | None = field(
        DerivedSelect("kind", _HB_KIND, {_K.commit: Optional(Welcome), _K.proposal: None})
    )
    group_info_option: GroupInfoOption | None = field(
        DerivedSelect("kind", _HB_KIND, {_K.commit: GroupInfoOption, _K.proposal: None})
    )
    ratchet_tree_option: RatchetTreeOption | None = field(
        DerivedSelect("kind", _HB_KIND, {_K.commit: RatchetTreeOption, _K.proposal: None})
    )
    more_proposals: list[MLSMessage] | None = field(
        DerivedSelect("kind", _HB_KIND, {_K.commit: None, _K.proposal: Vector(KindedMessage(_K.proposal))})
    )

    @property
    def kind(self) -> MessageKind | None:
        return message_kind(self.proposal_or_commit)

    @staticmethod
    def commit(
        commit: MLSMessage,
        group_info_option: GroupInfoOption,
        ratchet_tree_option: RatchetTreeOption,
        welcome: Welcome | None = None,
    ) -> HandshakeBundle:
        return HandshakeBundle(commit, welcome, group_info_option, ratchet_tree_option, None)

    @staticmethod
    def proposals(first: MLSMessage, more: Sequence[MLSMessage] = ()) -> HandshakeBundle:
        return HandshakeBundle(first, None, None, None, list(more))


class UpdateRequest(Struct):
    """[P] Update Room State: body of ``POST /update/{roomId}``.

    ``select (room.protocol)`` depends on the room, not on a byte of the
    body; rooms are MLS 1.0, so the body is exactly a HandshakeBundle.
    """

    bundle: HandshakeBundle = field(HandshakeBundle)


_U = UpdateResponseCode


class UpdateRoomResponse(Struct):
    """[P] Update Room State: response body of /update.

    ``success`` carries the hub's acceptance time (ms since the UNIX epoch),
    ``wrongEpoch`` the hub's current epoch, ``invalidProposal`` the
    references of the offending proposals; ``notAllowed`` carries nothing.
    """

    response_code: UpdateResponseCode = field(closed(UpdateResponseCode))
    error_description: str = field(UTF8String)
    accepted_timestamp: int | None = field(
        Select(
            "response_code",
            {_U.success: uint64, _U.wrongEpoch: None, _U.notAllowed: None, _U.invalidProposal: None},
        )
    )
    current_epoch: int | None = field(
        Select(
            "response_code",
            {_U.success: None, _U.wrongEpoch: uint64, _U.notAllowed: None, _U.invalidProposal: None},
        )
    )
    invalid_proposals: list[bytes] | None = field(
        Select(
            "response_code",
            {
                _U.success: None,
                _U.wrongEpoch: None,
                _U.notAllowed: None,
                _U.invalidProposal: Vector(ProposalRef),
            },
        )
    )

    @staticmethod
    def success(accepted_timestamp: int, error_description: str = "") -> UpdateRoomResponse:
        return UpdateRoomResponse(_U.success, error_description, accepted_timestamp, None, None)

    @staticmethod
    def wrong_epoch(current_epoch: int, error_description: str = "") -> UpdateRoomResponse:
        return UpdateRoomResponse(_U.wrongEpoch, error_description, None, current_epoch, None)

    @staticmethod
    def not_allowed(error_description: str = "") -> UpdateRoomResponse:
        return UpdateRoomResponse(_U.notAllowed, error_description, None, None, None)

    @staticmethod
    def invalid_proposal(refs: Sequence[bytes], error_description: str = "") -> UpdateRoomResponse:
        return UpdateRoomResponse(_U.invalidProposal, error_description, None, None, list(refs))


# ==========================================================================
# franking (-06)


class FrankAAD(Struct):
    """[P6] Message Franking: content of the ``frank_aad`` Safe AAD component (0x0020)."""

    franking_tag: bytes = field(Fixed(32))

    def aad_item(self) -> SafeAADItem:
        """This tag as the SafeAADItem a sender puts in authenticated_data."""
        return SafeAADItem(ComponentId.frank_aad, self.encode())


class FrankingAgentData(Struct):
    """[P6] Message Franking: the ``franking_agent`` GroupContext component
    (0x0021): the hub's franking signature key and its credential. Also the
    ``FrankingAgentUpdate`` of an AppDataUpdate proposal."""

    franking_signature_key: bytes = field(SignaturePublicKey)
    credential: Credential = field(Credential)


FrankingAgentUpdate = FrankingAgentData


class ServerFrankingContext(Struct):
    """[P6] Hub processing: the context the hub binds into a frank."""

    sender_uri: IdentifierUri = field(IdentifierUri)
    room_uri: IdentifierUri = field(IdentifierUri)
    accepted_timestamp: int = field(uint64)


class ServerFrankInput(Struct):
    """[P6] Hub processing: the HMAC input ``franking_tag || context``.

    ``server_frank = HMAC_SHA256(hub_key, ServerFrankInput(...).encode())``:
    the 32 raw tag bytes followed by the encoded ServerFrankingContext.
    """

    franking_tag: bytes = field(Fixed(32))
    context: ServerFrankingContext = field(ServerFrankingContext)


class FrankingIntegrityTBS(Struct):
    """[P6] Hub processing: what the hub signs with its franking key,
    ``SignWithLabel(franking_private_key, "FrankingIntegrityTBS", .)``."""

    server_frank: bytes = field(Fixed(32))
    franking_signature_ciphersuite: int = field(CipherSuite)
    context: ServerFrankingContext = field(ServerFrankingContext)


class Frank(Struct):
    """[P6] Submit a Message: the hub's frank (server_frank plus signature).

    Replaces the seed's HMAC-based ``{serverFrank, franking_integrity_check}``.
    """

    server_frank: bytes = field(Fixed(32))
    franking_signature_ciphersuite: int = field(CipherSuite)
    franking_integrity_signature: bytes = field(opaque)


# ==========================================================================
# submit message


class SubmitMessageRequest(Struct):
    """[P] Submit a Message: body of ``POST /submitMessage/{roomId}``.

    ``app_message`` must be a PrivateMessage with content type application;
    ``sending_uri`` is the sender's user URI (or pseudonym).
    """

    protocol: Protocol = field(ProtocolCodec)
    app_message: MLSMessage = field(Select("protocol", {MLS10: KindedMessage(_K.application)}))
    sending_uri: IdentifierUri = field(Select("protocol", {MLS10: IdentifierUri}))


_S = SubmitResponseCode


class SubmitMessageResponse(Struct):
    """[P6] Submit a Message: response body of /submitMessage.

    ``accepted`` carries the acceptance time and, if the message was franked,
    the Frank; ``epochTooOld`` the hub's current epoch.
    """

    protocol: Protocol = field(ProtocolCodec)
    status_code: SubmitResponseCode = field(Select("protocol", {MLS10: closed(SubmitResponseCode)}))
    accepted_timestamp: int | None = field(
        Select("status_code", {_S.accepted: uint64, _S.notAllowed: None, _S.epochTooOld: None})
    )
    frank: Frank | None = field(
        Select("status_code", {_S.accepted: Optional(Frank), _S.notAllowed: None, _S.epochTooOld: None})
    )
    current_epoch: int | None = field(
        Select("status_code", {_S.accepted: None, _S.notAllowed: None, _S.epochTooOld: uint64})
    )

    @staticmethod
    def accepted(accepted_timestamp: int, frank: Frank | None = None) -> SubmitMessageResponse:
        return SubmitMessageResponse(MLS10, _S.accepted, accepted_timestamp, frank, None)

    @staticmethod
    def not_allowed() -> SubmitMessageResponse:
        return SubmitMessageResponse(MLS10, _S.notAllowed, None, None, None)

    @staticmethod
    def epoch_too_old(current_epoch: int) -> SubmitMessageResponse:
        return SubmitMessageResponse(MLS10, _S.epochTooOld, None, None, current_epoch)


# ==========================================================================
# fanout


_FM_KIND = _kind_of("message")


class FanoutMessage(Struct):
    """[P6] Fanout Messages and Room Events: one event in a /notify body.

    ``timestamp`` is the hub's acceptance time (ms since the UNIX epoch).
    The arm depends on the message's kind: application -> optional Frank;
    Welcome -> RatchetTreeOption; proposal -> more_proposals (the same list
    as in the HandshakeBundle); commit -> external_proposals (the hub's
    replacement proposals stapled to an external commit). There is no
    protocol byte: the room's protocol (MLS 1.0) is implied.

    Decoded once per process for the same bytes while sharing is on (every
    member of a room receives the same /notify body): never mutate one.
    """

    _share_decoded = True
    _keep_wire = True  # re-encoded by every follower for each local recipient
    timestamp: int = field(uint64)
    message: MLSMessage = field(KindedMessage(*MessageKind))
    frank: Frank | None = field(
        DerivedSelect(
            "kind",
            _FM_KIND,
            {_K.application: Optional(Frank), _K.welcome: None, _K.proposal: None, _K.commit: None},
        )
    )
    ratchet_tree_option: RatchetTreeOption | None = field(
        DerivedSelect(
            "kind",
            _FM_KIND,
            {_K.application: None, _K.welcome: RatchetTreeOption, _K.proposal: None, _K.commit: None},
        )
    )
    more_proposals: list[MLSMessage] | None = field(
        DerivedSelect(
            "kind",
            _FM_KIND,
            {
                _K.application: None,
                _K.welcome: None,
                _K.proposal: Vector(KindedMessage(_K.proposal)),
                _K.commit: None,
            },
        )
    )
    external_proposals: list[MLSMessage] | None = field(
        DerivedSelect(
            "kind",
            _FM_KIND,
            {
                _K.application: None,
                _K.welcome: None,
                _K.proposal: None,
                _K.commit: Vector(KindedMessage(_K.proposal)),
            },
        )
    )

    @property
    def kind(self) -> MessageKind | None:
        return message_kind(self.message)

    @staticmethod
    def application(timestamp: int, message: MLSMessage, frank: Frank | None = None) -> FanoutMessage:
        return FanoutMessage(timestamp, message, frank, None, None, None)

    @staticmethod
    def welcome(timestamp: int, message: MLSMessage, ratchet_tree_option: RatchetTreeOption) -> FanoutMessage:
        return FanoutMessage(timestamp, message, None, ratchet_tree_option, None, None)

    @staticmethod
    def proposal(timestamp: int, message: MLSMessage, more: Sequence[MLSMessage] = ()) -> FanoutMessage:
        return FanoutMessage(timestamp, message, None, None, list(more), None)

    @staticmethod
    def commit(
        timestamp: int, message: MLSMessage, external_proposals: Sequence[MLSMessage] = ()
    ) -> FanoutMessage:
        return FanoutMessage(timestamp, message, None, None, None, list(external_proposals))


def encode_fanout_messages(messages: Sequence[FanoutMessage]) -> bytes:
    """A /notify body: one or more FanoutMessages, concatenated, no framing.

    [P]: "The hub can include multiple concatenated FanoutMessage objects
    relevant to the same room." An empty body would notify nothing, so at
    least one message is required.
    """
    if not messages:
        raise EncodeError("a /notify body carries at least one FanoutMessage")
    out = bytearray()
    codec = as_codec(FanoutMessage)
    for m in messages:
        codec.encode(m, out)
    return bytes(out)


def decode_fanout_messages(body: bytes) -> list[FanoutMessage]:
    """Split a /notify body into its FanoutMessages; strict.

    Errors name the message index: ``FanoutMessage[2].message.wire_format``.
    With :mod:`mimisim.sharing` on, a body is decoded once per process (the
    hub sends the same body to every follower of a room; a commit of a
    1,000-member room is ~100 kB) and the decoded messages are shared: their
    users must not mutate them. Bounded by entries and bytes; errors are not
    cached.
    """
    if not sharing.enabled:
        return _decode_fanout_messages(body)
    global _notify_bytes
    key = bytes(body)
    hit = _NOTIFY_SHARED.get(key)
    if hit is not None:
        _NOTIFY_SHARED.move_to_end(key)
        return list(hit)
    got = tuple(_decode_fanout_messages(key))
    _NOTIFY_SHARED[key] = got
    _notify_bytes += len(key)
    while len(_NOTIFY_SHARED) > 256 or _notify_bytes > 64 << 20:
        old, _ = _NOTIFY_SHARED.popitem(last=False)
        _notify_bytes -= len(old)
    return list(got)


_NOTIFY_SHARED: OrderedDict[bytes, tuple[FanoutMessage, ...]] = OrderedDict()
_notify_bytes = 0


def _decode_fanout_messages(body: bytes) -> list[FanoutMessage]:
    r = Reader(body)
    if r.remaining() == 0:
        raise DecodeError("empty /notify body", "FanoutMessage[0]")
    codec = as_codec(FanoutMessage)
    out: list[FanoutMessage] = []
    while r.remaining():
        r.path = [f"FanoutMessage[{len(out)}]"]
        out.append(codec.decode(r, {}))
    return out


# ==========================================================================
# claim group key information


class GroupInfoRequestTBS(Struct):
    """[P] Claim group key information: the signed part of a GroupInfoRequest."""

    protocol: Protocol = field(ProtocolCodec)
    cipher_suite: int = field(Select("protocol", {MLS10: CipherSuite}))
    requesting_signature_key: bytes = field(Select("protocol", {MLS10: SignaturePublicKey}))
    requesting_credential: Credential = field(Select("protocol", {MLS10: Credential}))
    group_info_public_key: bytes = field(Select("protocol", {MLS10: HPKEPublicKey}))
    joining_code: bytes | None = field(Select("protocol", {MLS10: Optional(opaque)}))


class GroupInfoRequest(Struct):
    """[P] Claim group key information: body of ``POST /groupInfo/{roomId}``.

    ``signature = SignWithLabel(requestingSignatureKey,
    "GroupInfoRequestTBS", GroupInfoRequestTBS)``. ``joining_code`` is
    optional here as in the TBS, so the TBS is exactly the request minus the
    signature.
    """

    protocol: Protocol = field(ProtocolCodec)
    cipher_suite: int = field(Select("protocol", {MLS10: CipherSuite}))
    requesting_signature_key: bytes = field(Select("protocol", {MLS10: SignaturePublicKey}))
    requesting_credential: Credential = field(Select("protocol", {MLS10: Credential}))
    group_info_public_key: bytes = field(Select("protocol", {MLS10: HPKEPublicKey}))
    joining_code: bytes | None = field(Select("protocol", {MLS10: Optional(opaque)}))
    signature: bytes = field(Select("protocol", {MLS10: opaque}))

    def tbs(self) -> GroupInfoRequestTBS:
        return GroupInfoRequestTBS(
            self.protocol,
            self.cipher_suite,
            self.requesting_signature_key,
            self.requesting_credential,
            self.group_info_public_key,
            self.joining_code,
        )


class PendingProposal(Struct):
    """[P6] Claim group key information: a proposal the hub accepted this epoch."""

    proposal: MLSMessage = field(KindedMessage(_K.proposal))
    hub_accepted_time: int = field(uint64)


class GroupInfoRatchetTreeTBE(Struct):
    """[P6] Claim group key information: the plaintext HPKE-encrypted to the
    requester's ``groupInfoPublicKey`` with ``EncryptWithLabel(., "GroupInfo
    and ratchet_tree encryption", room_id, .)``."""

    group_info: GroupInfo = field(GroupInfo)
    ratchet_tree_option: RatchetTreeOption = field(RatchetTreeOption)
    pending_proposals: list[PendingProposal] = field(Vector(PendingProposal))


#: The label and context of the GroupInfo encryption ([P] Claim group key information).
GROUP_INFO_ENCRYPTION_LABEL = b"GroupInfo and ratchet_tree encryption"


class GroupInfoResponseTBS(Struct):
    """[P6] Claim group key information: what the hub signs in a success
    response, ``SignWithLabel(hub_sender.signature_key,
    "GroupInfoResponseTBS", .)``."""

    protocol: Protocol = field(ProtocolCodec)
    room_id: str = field(UTF8String)
    status: GroupInfoCode = field(StrictEnum(GroupInfoCode))
    cipher_suite: int = field(Select("protocol", {MLS10: CipherSuite}))
    hub_sender: ExternalSender = field(Select("protocol", {MLS10: ExternalSender}))
    encrypted_groupinfo_and_tree: HPKECiphertext = field(Select("protocol", {MLS10: HPKECiphertext}))


_G = GroupInfoCode


class GroupInfoResponse(Struct):
    """[P6] Claim group key information: response body of /groupInfo.

    Only ``success`` carries the cipher suite, hub sender, encrypted
    GroupInfo and the hub's signature (-06; the seed carried them always).
    """

    protocol: Protocol = field(ProtocolCodec)
    room_id: str = field(UTF8String)
    status: GroupInfoCode = field(StrictEnum(GroupInfoCode))
    cipher_suite: int | None = field(
        Select("status", {_G.success: CipherSuite, _G.notAuthorized: None, _G.noSuchRoom: None})
    )
    hub_sender: ExternalSender | None = field(
        Select("status", {_G.success: ExternalSender, _G.notAuthorized: None, _G.noSuchRoom: None})
    )
    encrypted_groupinfo_and_tree: HPKECiphertext | None = field(
        Select("status", {_G.success: HPKECiphertext, _G.notAuthorized: None, _G.noSuchRoom: None})
    )
    signature: bytes | None = field(
        Select("status", {_G.success: opaque, _G.notAuthorized: None, _G.noSuchRoom: None})
    )

    def tbs(self) -> GroupInfoResponseTBS:
        """The signed content of a success response."""
        if self.status != _G.success:
            raise ValueError("only a success GroupInfoResponse is signed")
        assert self.cipher_suite is not None and self.hub_sender is not None
        assert self.encrypted_groupinfo_and_tree is not None
        return GroupInfoResponseTBS(
            self.protocol,
            self.room_id,
            self.status,
            self.cipher_suite,
            self.hub_sender,
            self.encrypted_groupinfo_and_tree,
        )

    @staticmethod
    def failure(room_id: str, status: GroupInfoCode) -> GroupInfoResponse:
        return GroupInfoResponse(MLS10, room_id, status, None, None, None, None)


# ==========================================================================
# consent


class ConsentScope(Struct, frozen=True):
    """[P] Convey explicit consent: who may fetch whose key material, for
    which room (None: any room). Frozen: it keys consent tables."""

    requester_uri: IdentifierUri = field(IdentifierUri)
    target_uri: IdentifierUri = field(IdentifierUri)
    room_id: IdentifierUri | None = field(Optional(IdentifierUri))


_C = ConsentOperation


class ConsentEntry(Struct):
    """[P6] Convey explicit consent: a consent request, cancel, grant or revoke.

    A ``grant`` carries KeyPackages of the target's clients (possibly none).
    ``consent_extensions`` is the -06 extension point (AppDataDictionary).
    """

    consent_operation: ConsentOperation = field(closed(ConsentOperation))
    requester_uri: IdentifierUri = field(IdentifierUri)
    target_uri: IdentifierUri = field(IdentifierUri)
    room_id: IdentifierUri | None = field(Optional(IdentifierUri))
    client_key_packages: list[KeyPackage] | None = field(
        Select(
            "consent_operation",
            {_C.cancel: None, _C.request: None, _C.grant: Vector(KeyPackage), _C.revoke: None},
        )
    )
    consent_extensions: AppDataDictionary = field(AppDataDictionary)

    @property
    def scope(self) -> ConsentScope:
        return ConsentScope(self.requester_uri, self.target_uri, self.room_id)


class RequestConsentBody(ConsentEntry):
    """[P] Convey explicit consent: body of ``POST /requestConsent/{targetDomain}``,
    a ConsentEntry whose operation is ``request`` or ``cancel``."""

    def _check(self) -> str | None:
        if self.consent_operation not in REQUEST_CONSENT_OPERATIONS:
            return f"requestConsent carries request or cancel, not {ConsentOperation(self.consent_operation).name}"
        return None


class UpdateConsentBody(ConsentEntry):
    """[P] Convey explicit consent: body of ``POST /updateConsent/{requesterDomain}``,
    a ConsentEntry whose operation is ``grant`` or ``revoke``."""

    def _check(self) -> str | None:
        if self.consent_operation not in UPDATE_CONSENT_OPERATIONS:
            return (
                f"updateConsent carries grant or revoke, not {ConsentOperation(self.consent_operation).name}"
            )
        return None


# ==========================================================================
# identifier query


_Q = SearchIdentifierType
_NO_NAME = {t: None for t in SearchIdentifierType if t not in (_Q.reserved, _Q.oidcStdClaim, _Q.vcardField)}


class QueryElement(Struct):
    """[P] Find internal address: one search criterion (all must match).

    ``claim_name`` is set for ``oidcStdClaim``, ``property_name`` for
    ``vcardField``; ``search_value`` is UTF-8.
    """

    search_type: SearchIdentifierType = field(StrictEnum(SearchIdentifierType))
    claim_name: bytes | None = field(
        Select("search_type", {**_NO_NAME, _Q.oidcStdClaim: opaque, _Q.vcardField: None})
    )
    property_name: bytes | None = field(
        Select("search_type", {**_NO_NAME, _Q.oidcStdClaim: None, _Q.vcardField: opaque})
    )
    search_value: str = field(UTF8String)


class IdentifierRequest(Struct):
    """[P6] Find internal address: body of ``POST /identifierQuery/{domain}``."""

    query_elements: list[QueryElement] = field(Vector(QueryElement))
    id_request_extensions: AppDataDictionary = field(AppDataDictionary)


class ProfileField(Struct):
    """[P] Find internal address: one searchable field of a found profile."""

    field_source: FieldSource = field(StrictEnum(FieldSource))
    field_name: str = field(UTF8String)
    field_value: bytes = field(opaque)


class UserProfile(Struct):
    """[P] Find internal address: a found user and their visible fields."""

    stable_uri: IdentifierUri = field(IdentifierUri)
    fields: list[ProfileField] = field(Vector(ProfileField))


class IdentifierResponse(Struct):
    """[P6] Find internal address: response body of /identifierQuery."""

    response_code: IdentifierQueryCode = field(closed(IdentifierQueryCode))
    uri: list[IdentifierUri] = field(Vector(IdentifierUri))
    found_profiles: list[UserProfile] = field(Vector(UserProfile))
    id_response_extensions: AppDataDictionary = field(AppDataDictionary)


# ==========================================================================
# report abuse


class AbusiveMessage(Struct):
    """[P6] Report abuse: one allegedly abusive message with its frank."""

    message_content: bytes = field(opaque)
    frank: Frank = field(Frank)
    accepted_timestamp: int = field(uint64)


class AbuseReport(Struct):
    """[P6] Report abuse: body of ``POST /reportAbuse/{roomId}``.

    ``reporting_user`` may be empty (anonymous report); ``note`` is UTF-8,
    possibly empty. ``reason_code`` is an open AbuseType (no taxonomy yet).
    """

    reporting_user: IdentifierUri = field(IdentifierUri)
    alleged_abuser_uri: IdentifierUri = field(IdentifierUri)
    reason_code: int = field(EnumCodec(AbuseType, uint8, closed=False))
    note: str = field(UTF8String)
    messages: list[AbusiveMessage] = field(Vector(AbusiveMessage))
    abuse_extensions: AppDataDictionary = field(AppDataDictionary)


# ==========================================================================
# room state components


class UserRolePair(Struct, frozen=True):
    """[P] Participant List: a user (URI) and its role index."""

    user: str = field(UTF8String)
    role_index: int = field(uint32)


class ParticipantListData(Struct):
    """[P] Participant List: data of the ``participant_list`` component (0x0022).

    Each user appears once ("each user is assigned exactly one role") and
    never with role 0, which [RP] reserves for "not in the list".

    Decoded once per process for the same bytes while sharing is on (every
    member reads the same list): never mutate one.
    """

    _share_decoded = True
    participants: list[UserRolePair] = field(Vector(UserRolePair))

    def _check(self) -> str | None:
        seen: set[str] = set()
        for i, p in enumerate(self.participants):
            if p.role_index == RoleIndex.no_role:
                return f"participants[{i}] has role_index 0 (no_role)"
            if p.user in seen:
                return f"participants[{i}]: user {p.user!r} listed twice"
            seen.add(p.user)
        return None

    def role_of(self, user: str) -> int:
        """The user's role index, or 0 (no_role) if not listed."""
        for p in self.participants:
            if p.user == user:
                return p.role_index
        return RoleIndex.no_role


class UserindexRolePair(Struct):
    """[P] Participant List: a role change, by index into ``participants``."""

    user_index: int = field(uint32)
    role_index: int = field(uint32)


class ParticipantListUpdate(Struct):
    """[P] Participant List: the ``update`` of an AppDataUpdate proposal for
    ``participant_list``. Applied in order: role changes, removals (by index
    into the current list), then appends. No user may be touched twice
    within one update.
    """

    changed_role_participants: list[UserindexRolePair] = field(Vector(UserindexRolePair))
    removed_indices: list[int] = field(Vector(uint32))
    added_participants: list[UserRolePair] = field(Vector(UserRolePair))

    def _check(self) -> str | None:
        indices = [c.user_index for c in self.changed_role_participants] + list(self.removed_indices)
        if len(indices) != len(set(indices)):
            return "a user index is changed or removed more than once"
        users = [p.user for p in self.added_participants]
        if len(users) != len(set(users)):
            return "a user is added more than once"
        for i, p in enumerate(self.added_participants):
            if p.role_index == RoleIndex.no_role:
                return f"added_participants[{i}] has role_index 0 (no_role)"
        return None


class RichDescription(Struct):
    """[P] Room Metadata: one description (empty media_type = text/plain;charset=utf-8)."""

    media_type: bytes = field(opaque)
    language_tag: bytes = field(opaque)
    description_content: bytes = field(opaque)


class RoomMetaData(Struct):
    """[P] Room Metadata: data of the ``room_metadata`` component (0x0023),
    and (as RoomMetaUpdate) the update that replaces it wholesale."""

    room_uri: IdentifierUri = field(IdentifierUri)
    room_name: str = field(UTF8String)
    room_descriptions: list[RichDescription] = field(Vector(RichDescription))
    room_avatar: IdentifierUri = field(IdentifierUri)
    room_subject: str = field(UTF8String)
    room_mood: str = field(UTF8String)


RoomMetaUpdate = RoomMetaData


# ==========================================================================
# directory (JSON)


class DirectoryError(ValueError):
    """A directory document that is not valid JSON or breaks the schema."""


@dataclasses.dataclass(frozen=True)
class Directory:
    """[P] Directory: the JSON document at ``/.well-known/mimi-protocol-directory``.

    Each value is an https URL template with exactly one ``{variable}``,
    which :meth:`expand` replaces with an already-rendered path parameter
    (see :mod:`mimisim.mimi.endpoints`). The variable's name is not checked:
    the draft's own example names consent variables differently from the
    endpoint paths. ``proxy_download`` is -06 only, so optional.
    """

    key_material: str
    update: str
    notify: str
    submit_message: str
    group_info: str
    request_consent: str
    update_consent: str
    identifier_query: str
    report_abuse: str
    proxy_download: str | None = None

    JSON_KEYS: ClassVar[dict[str, str]] = {
        "key_material": "keyMaterial",
        "update": "update",
        "notify": "notify",
        "submit_message": "submitMessage",
        "group_info": "groupInfo",
        "request_consent": "requestConsent",
        "update_consent": "updateConsent",
        "identifier_query": "identifierQuery",
        "report_abuse": "reportAbuse",
        "proxy_download": "proxyDownload",
    }
    OPTIONAL_KEYS: ClassVar[frozenset[str]] = frozenset({"proxyDownload"})
    WELL_KNOWN_PATH: ClassVar[str] = "/.well-known/mimi-protocol-directory"

    def __post_init__(self) -> None:
        for attr, key in self.JSON_KEYS.items():
            value = getattr(self, attr)
            if value is None and key in self.OPTIONAL_KEYS:
                continue
            _check_url_template(key, value)

    def url_template(self, json_key: str) -> str:
        for attr, key in self.JSON_KEYS.items():
            if key == json_key:
                value: str | None = getattr(self, attr)
                if value is None:
                    raise KeyError(f"directory has no {json_key!r} entry")
                return value
        raise KeyError(f"unknown directory key {json_key!r}")

    def expand(self, json_key: str, rendered_param: str) -> str:
        """The URL for one request: the template with its variable replaced."""
        template = self.url_template(json_key)
        start = template.index("{")
        end = template.index("}", start)
        return template[:start] + rendered_param + template[end + 1 :]

    def to_json(self) -> str:
        obj = {
            key: getattr(self, attr)
            for attr, key in self.JSON_KEYS.items()
            if getattr(self, attr) is not None
        }
        return json.dumps(obj, indent=2)

    @classmethod
    def from_json(cls, text: str | bytes) -> Directory:
        """Parse strictly: valid JSON object, no duplicate, unknown or missing
        keys, every value an https URL template with one variable."""

        def no_dups(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
            out: dict[str, Any] = {}
            for k, v in pairs:
                if k in out:
                    raise DirectoryError(f"duplicate key {k!r}")
                out[k] = v
            return out

        try:
            obj = json.loads(text, object_pairs_hook=no_dups)
        except json.JSONDecodeError as e:
            raise DirectoryError(f"not valid JSON: {e}") from None
        if not isinstance(obj, dict):
            raise DirectoryError("directory must be a JSON object")
        known = set(cls.JSON_KEYS.values())
        for k in obj:
            if k not in known:
                raise DirectoryError(f"unknown key {k!r}")
        kwargs: dict[str, Any] = {}
        for attr, key in cls.JSON_KEYS.items():
            if key not in obj:
                if key in cls.OPTIONAL_KEYS:
                    continue
                raise DirectoryError(f"missing key {key!r}")
            kwargs[attr] = obj[key]
        return cls(**kwargs)


def _check_url_template(key: str, value: Any) -> None:
    if not isinstance(value, str):
        raise DirectoryError(f"{key}: expected a string, got {type(value).__name__}")
    parts = urlsplit(value.replace("{", "").replace("}", ""))
    if parts.scheme != "https" or not parts.hostname:
        raise DirectoryError(f"{key}: expected an https URL, got {value!r}")
    if value.count("{") != 1 or value.count("}") != 1 or value.index("{") > value.index("}"):
        raise DirectoryError(f"{key}: expected exactly one {{variable}} in {value!r}")
    start = value.index("{")
    if start < len(parts.scheme) + 3 + len(parts.netloc):
        raise DirectoryError(f"{key}: the variable must be in the path, got {value!r}")
    name = value[start + 1 : value.index("}")]
    if not name.isidentifier():
        raise DirectoryError(f"{key}: bad variable name {name!r}")


# ==========================================================================
# index


#: Every wire struct of this module, by name (for tests, fuzzing, docs).
WIRE_STRUCTS: dict[str, type] = {
    name: obj
    for name, obj in list(globals().items())
    if isinstance(obj, type)
    and obj.__module__ == __name__
    and hasattr(obj, "_codec")
    and obj.__name__ == name
}
