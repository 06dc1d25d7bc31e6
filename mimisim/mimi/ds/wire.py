"""Wire bodies of draft-robert-mimi-delivery-service ([DS]).

Declared like :mod:`mimisim.mimi.wire`: each body is a :class:`Struct` whose
fields carry their codec, decoding is strict (truncation, trailing bytes,
unknown enum values, a message of the wrong kind, or a body that breaks one of
the draft's rules about its own shape raise :class:`DecodeError` naming the
field path) and encoding refuses the same values.

Section names in docstrings are the draft's. Every place where the draft is
TODO or inconsistent is a numbered choice in ``docs/ds-choices.md`` (cited
here as [C1]...).

Sans-IO: no clock, no randomness, no I/O.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from typing import Any

from mimisim.codec import (
    Codec,
    DecodeError,
    EncodeError,
    Reader,
    Select,
    Struct,
    Vector,
    field,
    opaque,
    uint16,
    uint32,
    uint64,
)
from mimisim.mimi.wire import KindedMessage, MessageKind, NonEmptyVector, UTF8String, closed
from mimisim.mls.structs import (
    Extension,
    KeyPackage,
    MLSMessage,
    Node,
    RatchetTreeCodec,
    WireFormat,
)

__all__ = [
    "DecodeError",
    "EncodeError",
]

# ==========================================================================
# constants


class DSProtocolVersion(enum.IntEnum):
    """[C1] The draft names ``DSProtocolVersion`` but never defines it: uint16, 0 reserved."""

    reserved = 0
    ds10 = 1


#: The versions this implementation speaks ([C1]). Decoding accepts any
#: non-reserved uint16 so that a peer can *answer* "unsupported version"
#: rather than fail to parse; the cores compare against this set.
SUPPORTED_VERSIONS = frozenset({DSProtocolVersion.ds10})
DS10 = int(DSProtocolVersion.ds10)


class _Version(Codec):
    """uint16, reserved 0 refused both ways; other values surfaced as ``int``."""

    def encode(self, value: Any, out: bytearray) -> None:
        if not isinstance(value, int) or not 0 < int(value) < 1 << 16:
            raise EncodeError(f"DSProtocolVersion out of range or reserved: {value!r}")
        uint16.encode(int(value), out)

    def decode(self, r: Reader, ctx: Mapping[str, Any]) -> int:
        v = uint16.decode(r, ctx)
        if v == 0:
            raise r.fail("reserved DSProtocolVersion 0")
        return v

    def __repr__(self) -> str:
        return "DSProtocolVersion"


VersionCodec = _Version()

#: [C7] MLS private-use extension types (RFC 9420 s.17.3, 0xF000-0xFFFF).
#: KeyPackage extension carrying a :class:`FanoutAuthToken` ("FanoutAuth").
FANOUT_AUTH_EXTENSION = 0xF0D1
#: GroupContext extension: the DS protocol version the group was created with.
DS_VERSION_EXTENSION = 0xF0D2
#: LeafNode extension: the DS protocol versions a client supports.
DS_SUPPORTED_VERSIONS_EXTENSION = 0xF0D3


class Opaque8(Codec):
    """``opaque x<0..255>``: one-byte length prefix, as TLS notation reads ([C2])."""

    def encode(self, value: Any, out: bytearray) -> None:
        if not isinstance(value, (bytes, bytearray)):
            raise EncodeError(f"opaque<0..255> expects bytes, got {type(value).__name__}")
        if len(value) > 255:
            raise EncodeError(f"opaque<0..255> length {len(value)} > 255")
        out.append(len(value))
        out += value

    def decode(self, r: Reader, ctx: Mapping[str, Any]) -> bytes:
        n = r.take(1)[0]
        return r.take(n)

    def __repr__(self) -> str:
        return "opaque<0..255>"


opaque8 = Opaque8()

#: [C3] ``ClientID``: the draft calls client identifiers "preliminary" octet strings.
ClientID = opaque

_K = MessageKind


class WireFormatMessage(Codec):
    """An MLSMessage of one wire format that :class:`KindedMessage` has no kind for (GroupInfo)."""

    def __init__(self, wire_format: WireFormat) -> None:
        self.wire_format = wire_format

    def encode(self, value: Any, out: bytearray) -> None:
        if not isinstance(value, MLSMessage) or value.wire_format != self.wire_format:
            raise EncodeError(f"expected MLSMessage({self.wire_format.name})")
        value._codec.encode(value, out)

    def decode(self, r: Reader, ctx: Mapping[str, Any]) -> MLSMessage:
        msg: MLSMessage = MLSMessage._codec.decode(r, ctx)
        if msg.wire_format != self.wire_format:
            raise r.fail(f"expected MLSMessage({self.wire_format.name}), got {msg.wire_format!r}")
        return msg


# ==========================================================================
# enqueue authorisation and DS-assisted joining


class FanoutAuthToken(Struct, frozen=True):
    """[DS] Enqueue authorization: ``struct { opaque token<V>; } FanoutAuthToken``.

    The token's content is the recipient DS's business ([C6]); on the wire
    it is opaque. Frozen: the hub stores tokens in sets and dict values.
    """

    token: bytes = field(opaque)


class PartialGroupInfo(Struct):
    """[DS] DS assisted joining: the GroupInfo parts a hub cannot rebuild.

    Not the [RTO] ``PartialGroupInfo`` of :mod:`mimisim.mls.structs` (which
    also carries ``ratchet_tree_presence``): this is the DS draft's two-field
    struct, ``Extension group_info_extensions<V>; opaque Signature<V>``.
    """

    group_info_extensions: list[Extension] = field(Vector(Extension))
    signature: bytes = field(opaque)


class MLSGroupUpdate(Struct):
    """[DS] DS assisted joining: a commit (PublicMessage) with its PartialGroupInfo."""

    commit: MLSMessage = field(KindedMessage(_K.commit))
    partial_group_info: PartialGroupInfo = field(PartialGroupInfo)


# ==========================================================================
# client-initiated operations


class DSRequestType(enum.IntEnum):
    """[DS] Client-initiated operations, plus ``ds_welcome_info`` ([C4]).

    The draft lists ``ds_key_packages`` twice; the second is the group info
    request, so it is ``ds_group_info`` here ([C4]). Values start at 0 as in
    the draft's ``ds_delete_group(0)``; uint8 ([C1]).
    """

    ds_delete_group = 0
    ds_proposals = 1
    ds_commits = 2
    ds_send_message = 3
    ds_key_packages = 4
    ds_group_info = 5
    ds_welcome_info = 6


class DeleteGroupRequest(Struct):
    """[DS] Delete group: a commit that removes every other member."""

    group_update: MLSGroupUpdate = field(MLSGroupUpdate)


class ProposalRequest(Struct):
    """[DS] Propose group state changes (the draft's struct is misnamed
    ``AddClientsRequest`` and carries ``welcome_messages``; Welcomes follow
    commits, not proposals, so they are in :class:`CommitRequest` [C4])."""

    proposals: list[MLSMessage] = field(NonEmptyVector(KindedMessage(_K.proposal)))


class CommitRequest(Struct):
    """[DS] Commit group state changes (the draft's ``RemoveClientsRequest``),
    with the Welcomes of the clients the commits add ([C4])."""

    group_updates: list[MLSGroupUpdate] = field(NonEmptyVector(MLSGroupUpdate))
    welcome_messages: list[MLSMessage] = field(Vector(KindedMessage(_K.welcome)))


class SendMessageRequest(Struct):
    """[DS] Send application messages: PrivateMessages of content type application."""

    application_messages: list[MLSMessage] = field(NonEmptyVector(KindedMessage(_K.application)))


class KeyPackagesRequest(Struct):
    """[DS] Fetch KeyPackages of one or more clients of the answering DS."""

    client_identifiers: list[bytes] = field(NonEmptyVector(ClientID))


class GroupInfoRequest(Struct):
    """[DS] Fetch group information. The draft's body is empty, but no other
    field of a GroupInfo request names the group: ``group_id`` added [C4]."""

    group_id: bytes = field(opaque)


class WelcomeInfoRequest(Struct):
    """[C4] Fetch the ratchet tree of the epoch a Welcome put the client in.

    The draft says Welcome joiners "can obtain a ratchet tree from the DS"
    and that the DS keeps past states until they join, but defines no request.
    The joiner names itself by the KeyPackageRef its Welcome lists: it cannot
    know its leaf index before it has the tree, so its ClientSignature carries
    ``sender_index`` :data:`JOINER_INDEX` and is verified with the signature
    key of that KeyPackage. It names the group too (read from the Welcome's
    GroupInfo): a last-resort KeyPackage can put one client in several groups.
    """

    group_id: bytes = field(opaque)
    key_package_ref: bytes = field(opaque)


#: ``sender_index`` of a Welcome joiner's ClientSignature ([C4]): not a leaf yet.
JOINER_INDEX = 0xFFFFFFFF


_R = DSRequestType


class DSRequestBody(Struct):
    """[DS] Client-initiated operations: ``DSRequestBody``."""

    request_type: DSRequestType = field(closed(DSRequestType))
    body: Any = field(
        Select(
            "request_type",
            {
                _R.ds_delete_group: DeleteGroupRequest,
                _R.ds_proposals: ProposalRequest,
                _R.ds_commits: CommitRequest,
                _R.ds_send_message: SendMessageRequest,
                _R.ds_key_packages: KeyPackagesRequest,
                _R.ds_group_info: GroupInfoRequest,
                _R.ds_welcome_info: WelcomeInfoRequest,
            },
        )
    )

    @staticmethod
    def of(body: Any) -> DSRequestBody:
        return DSRequestBody(_TYPE_OF[type(body)], body)


_BODY_TYPE: dict[int, type] = {
    _R.ds_delete_group: DeleteGroupRequest,
    _R.ds_proposals: ProposalRequest,
    _R.ds_commits: CommitRequest,
    _R.ds_send_message: SendMessageRequest,
    _R.ds_key_packages: KeyPackagesRequest,
    _R.ds_group_info: GroupInfoRequest,
    _R.ds_welcome_info: WelcomeInfoRequest,
}
_TYPE_OF: dict[type, DSRequestType] = {t: DSRequestType(k) for k, t in _BODY_TYPE.items()}


class DSAuthType(enum.IntEnum):
    """[DS] Framing: ``DSAuthType`` (uint8 [C1])."""

    Anonymous = 0
    ClientSignature = 1


class DSAuthData(Struct):
    """[DS] Framing: ``DSAuthData``; the signature is ``opaque<0..255>`` ([C2])."""

    auth_type: DSAuthType = field(closed(DSAuthType))
    sender_index: int | None = field(Select("auth_type", {DSAuthType.Anonymous: None, DSAuthType.ClientSignature: uint32}))
    signature: bytes | None = field(Select("auth_type", {DSAuthType.Anonymous: None, DSAuthType.ClientSignature: opaque8}))

    @staticmethod
    def anonymous() -> DSAuthData:
        return DSAuthData(DSAuthType.Anonymous, None, None)

    @staticmethod
    def client_signature(sender_index: int, signature: bytes) -> DSAuthData:
        return DSAuthData(DSAuthType.ClientSignature, sender_index, signature)


class ClientSignatureTBS(Struct):
    """[DS] Framing: what a ClientSignature signs, with label "ClientSignatureTBS" ([C2])."""

    protocol_version: int = field(VersionCodec)
    request_body: DSRequestBody = field(DSRequestBody)
    sender_index: int = field(uint32)


#: SignWithLabel label of :class:`ClientSignatureTBS` ([C2]).
CLIENT_SIGNATURE_LABEL = "ClientSignatureTBS"


class DSRequest(Struct):
    """[DS] Framing: ``DSRequest``."""

    version: int = field(VersionCodec)
    request_body: DSRequestBody = field(DSRequestBody)
    authentication_data: DSAuthData = field(DSAuthData)

    def tbs(self, sender_index: int) -> ClientSignatureTBS:
        return ClientSignatureTBS(self.version, self.request_body, sender_index)


# ==========================================================================
# responses


class DSErrorCode(enum.IntEnum):
    """[C5] The draft's ``DSError`` is "TODO: Operation specific errors"."""

    unsupported_version = 0
    unknown_group = 1
    authentication_failed = 2
    invalid_message = 3
    wrong_epoch = 4
    not_allowed = 5
    invalid_delete = 6
    unknown_client = 7
    no_key_package = 8
    epoch_unavailable = 9
    rate_limited = 10
    malformed = 11


class DSError(Struct):
    """[C5] code, Retry-After in milliseconds when rate limited, a reason text,
    and the group's current epoch when the request named another one
    (``wrong_epoch``: the client learns whether it or the hub is behind)."""

    code: DSErrorCode = field(closed(DSErrorCode))
    retry_after_ms: int | None = field(
        Select("code", {DSErrorCode.rate_limited: uint64}, default=None)
    )
    reason: str = field(UTF8String)
    current_epoch: int | None = field(
        Select("code", {DSErrorCode.wrong_epoch: uint64}, default=None)
    )


class DSResponseType(enum.IntEnum):
    """[DS] Framing: ``DSResponseType`` (uint8 [C1])."""

    Ok = 0
    Error = 1
    WelcomeInfo = 2
    ExternalCommitInfo = 3
    KeyPackages = 4


class WelcomeInfo(Struct):
    """[DS] ``case WelcomeInfo: optional<Node> ratchet_tree<V>``: the tree, as RFC 9420's extension."""

    ratchet_tree: list[Node | None] = field(RatchetTreeCodec)


class ExternalCommitInfo(Struct):
    """[DS] ``case ExternalCommit``: a GroupInfo (as MLSMessage) and the tree."""

    group_info: MLSMessage = field(WireFormatMessage(WireFormat.group_info))
    ratchet_tree: list[Node | None] = field(RatchetTreeCodec)


class KeyPackages(Struct):
    """[DS] ``case KeyPackages: KeyPackage key_packages<V>``, in request order."""

    key_packages: list[KeyPackage] = field(Vector(KeyPackage))


_T = DSResponseType


class DSResponseBody(Struct):
    """[DS] Framing: ``DSResponseBody``."""

    response_type: DSResponseType = field(closed(DSResponseType))
    body: Any = field(
        Select(
            "response_type",
            {
                _T.Ok: None,
                _T.Error: DSError,
                _T.WelcomeInfo: WelcomeInfo,
                _T.ExternalCommitInfo: ExternalCommitInfo,
                _T.KeyPackages: KeyPackages,
            },
        )
    )

    @staticmethod
    def ok() -> DSResponseBody:
        return DSResponseBody(DSResponseType.Ok, None)

    @staticmethod
    def of(body: Any) -> DSResponseBody:
        return DSResponseBody(_RESP_OF[type(body)], body)


_RESP_TYPE: dict[int, type | None] = {
    _T.Ok: None,
    _T.Error: DSError,
    _T.WelcomeInfo: WelcomeInfo,
    _T.ExternalCommitInfo: ExternalCommitInfo,
    _T.KeyPackages: KeyPackages,
}
_RESP_OF: dict[type, DSResponseType] = {t: DSResponseType(k) for k, t in _RESP_TYPE.items() if t is not None}


class DSResponse(Struct):
    """[DS] Framing: ``DSResponse``."""

    protocol_version: int = field(VersionCodec)
    response_body: DSResponseBody = field(DSResponseBody)

    @property
    def ok(self) -> bool:
        return self.response_body.response_type != DSResponseType.Error

    @property
    def error(self) -> DSError | None:
        b = self.response_body
        return b.body if b.response_type == DSResponseType.Error else None


# ==========================================================================
# server to server


class DSFanoutRequest(Struct):
    """[DS] Server to server requests: one per guest DS and message.

    The draft declares ``opaque recipient_ids<V>`` but describes "a list of
    client ids" with a token "for each of the clients": ``ClientID
    recipient_ids<V>`` here, tokens in the same order, same count, no
    duplicate recipient ([C3]). The hub authenticates itself through the
    transport, not a signature in the body ([C8]).
    """

    protocol_version: int = field(VersionCodec)
    recipient_ids: list[bytes] = field(NonEmptyVector(ClientID))
    fanout_auth_tokens: list[FanoutAuthToken] = field(Vector(FanoutAuthToken))
    mls_message: MLSMessage = field(KindedMessage(_K.application, _K.proposal, _K.commit, _K.welcome))

    def _check(self) -> str | None:
        if len(self.fanout_auth_tokens) != len(self.recipient_ids):
            return f"{len(self.recipient_ids)} recipients but {len(self.fanout_auth_tokens)} tokens"
        if len(set(self.recipient_ids)) != len(self.recipient_ids):
            return "duplicate recipient id"
        return None


class DSFanoutResponseType(enum.IntEnum):
    """[DS] Server to server requests: ``DSFanoutResponseType`` (uint8 [C1])."""

    Ok = 0
    Error = 1


class DSFanoutErrorCode(enum.IntEnum):
    """[C5] The draft's ``DSFanoutError`` is "TODO: Fanout error types"."""

    unsupported_version = 0
    unknown_recipient = 1
    invalid_token = 2
    rate_limited = 3
    blocked = 4
    malformed = 5


class DSFanoutError(Struct):
    """[C5] code, Retry-After (ms) when rate limited, the offending recipients, reason."""

    code: DSFanoutErrorCode = field(closed(DSFanoutErrorCode))
    retry_after_ms: int | None = field(Select("code", {DSFanoutErrorCode.rate_limited: uint64}, default=None))
    recipient_ids: list[bytes] = field(Vector(ClientID))
    reason: str = field(UTF8String)


class DSFanoutResponseBody(Struct):
    """[DS] ``DSFanoutResponseBody``."""

    response_type: DSFanoutResponseType = field(closed(DSFanoutResponseType))
    error: DSFanoutError | None = field(
        Select("response_type", {DSFanoutResponseType.Ok: None, DSFanoutResponseType.Error: DSFanoutError})
    )

    @staticmethod
    def ok() -> DSFanoutResponseBody:
        return DSFanoutResponseBody(DSFanoutResponseType.Ok, None)

    @staticmethod
    def fail(error: DSFanoutError) -> DSFanoutResponseBody:
        return DSFanoutResponseBody(DSFanoutResponseType.Error, error)


class DSFanoutResponse(Struct):
    """[DS] ``DSFanoutResponse``: carries a DSFanoutResponseBody, not the
    DSResponseBody the draft's struct names ([C4])."""

    protocol_version: int = field(VersionCodec)
    response_body: DSFanoutResponseBody = field(DSFanoutResponseBody)

    @property
    def ok(self) -> bool:
        return self.response_body.response_type == DSFanoutResponseType.Ok


__all__ += [
    "CLIENT_SIGNATURE_LABEL",
    "ClientSignatureTBS",
    "CommitRequest",
    "DSAuthData",
    "DSAuthType",
    "DSError",
    "DSErrorCode",
    "DSFanoutError",
    "DSFanoutErrorCode",
    "DSFanoutRequest",
    "DSFanoutResponse",
    "DSFanoutResponseBody",
    "DSFanoutResponseType",
    "DSProtocolVersion",
    "DSRequest",
    "DSRequestBody",
    "DSRequestType",
    "DSResponse",
    "DSResponseBody",
    "DSResponseType",
    "DeleteGroupRequest",
    "ExternalCommitInfo",
    "FanoutAuthToken",
    "GroupInfoRequest",
    "KeyPackages",
    "KeyPackagesRequest",
    "MLSGroupUpdate",
    "PartialGroupInfo",
    "ProposalRequest",
    "SendMessageRequest",
    "WelcomeInfo",
    "WelcomeInfoRequest",
    "JOINER_INDEX",
]
