"""RFC 9420 wire structs (s.5-s.12), plus the draft-ietf-mls-extensions pieces
MIMI needs (AppDataUpdate 0x0008, SelfRemove 0x000a, app_data_dictionary 0x0006).

Each struct is declared once with its field codecs; encoding and decoding are
generic (see :mod:`mimisim.codec`). Enumerations that the RFC closes (wire
format, sender type, content type, proposal type inside a Proposal, node type)
reject unknown values at decode time; enumerations that peers may extend
(capabilities lists, extension types) stay plain integers.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from mimisim.codec import (
    Codec,
    EnumCodec,
    Fixed,
    Optional,
    Reader,
    Select,
    Struct,
    Vector,
    field,
    opaque,
    uint8,
    uint16,
    uint32,
    uint64,
)

MLS10 = 1


class ProtocolVersion(enum.IntEnum):
    reserved = 0
    mls10 = 1


class ExtensionType(enum.IntEnum):
    application_id = 1
    ratchet_tree = 2
    required_capabilities = 3
    external_pub = 4
    external_senders = 5
    app_data_dictionary = 6  # draft-ietf-mls-extensions (suggested)


class ProposalType(enum.IntEnum):
    add = 1
    update = 2
    remove = 3
    psk = 4
    reinit = 5
    external_init = 6
    group_context_extensions = 7
    app_data_update = 8
    self_remove = 0x000A


DEFAULT_PROPOSAL_TYPES = frozenset(range(1, 8))
DEFAULT_EXTENSION_TYPES = frozenset(range(1, 6))


class CredentialType(enum.IntEnum):
    basic = 1
    x509 = 2


class LeafNodeSource(enum.IntEnum):
    key_package = 1
    update = 2
    commit = 3


class NodeType(enum.IntEnum):
    leaf = 1
    parent = 2


class WireFormat(enum.IntEnum):
    public_message = 1
    private_message = 2
    welcome = 3
    group_info = 4
    key_package = 5


class SenderType(enum.IntEnum):
    member = 1
    external = 2
    new_member_proposal = 3
    new_member_commit = 4


class ContentType(enum.IntEnum):
    application = 1
    proposal = 2
    commit = 3


class PSKType(enum.IntEnum):
    external = 1
    resumption = 2


class ResumptionPSKUsage(enum.IntEnum):
    application = 1
    reinit = 2
    branch = 3


class ProposalOrRefType(enum.IntEnum):
    proposal = 1
    reference = 2


class AppDataUpdateOperation(enum.IntEnum):
    update = 1
    remove = 2


# ---------------------------------------------------------------- credentials


class Certificate(Struct):
    cert_data: bytes = field(opaque)


class Credential(Struct):
    credential_type: int = field(EnumCodec(CredentialType, uint16, closed=False))
    identity: bytes | None = field(Select("credential_type", {CredentialType.basic: opaque}, default=None))
    certificates: list[Certificate] | None = field(
        Select("credential_type", {CredentialType.x509: Vector(Certificate)}, default=None)
    )

    @staticmethod
    def basic(identity: bytes) -> Credential:
        return Credential(CredentialType.basic, identity, None)

    def _check(self) -> str | None:
        if self.credential_type not in (CredentialType.basic, CredentialType.x509):
            return f"unsupported credential type {self.credential_type}"
        return None


class Extension(Struct):
    extension_type: int = field(uint16)
    extension_data: bytes = field(opaque)


class Capabilities(Struct):
    versions: list[int] = field(Vector(uint16))
    cipher_suites: list[int] = field(Vector(uint16))
    extensions: list[int] = field(Vector(uint16))
    proposals: list[int] = field(Vector(uint16))
    credentials: list[int] = field(Vector(uint16))


class Lifetime(Struct):
    not_before: int = field(uint64)
    not_after: int = field(uint64)


class LeafNode(Struct):
    # Hashed into the tree hash and signed (TBS = the wire bytes without the
    # trailing signature): keep the bytes of a decoded leaf rather than
    # re-encode it at every tree hash and validation, by every member that
    # shares the decoded message (see mimisim.sharing).
    _keep_wire = True
    encryption_key: bytes = field(opaque)
    signature_key: bytes = field(opaque)
    credential: Credential = field(Credential)
    capabilities: Capabilities = field(Capabilities)
    leaf_node_source: LeafNodeSource = field(EnumCodec(LeafNodeSource, uint8))
    lifetime: Lifetime | None = field(Select("leaf_node_source", {1: Lifetime, 2: None, 3: None}))
    parent_hash: bytes | None = field(Select("leaf_node_source", {1: None, 2: None, 3: opaque}))
    extensions: list[Extension] = field(Vector(Extension))
    signature: bytes = field(opaque)

    def tbs(self, group_id: bytes | None = None, leaf_index: int | None = None) -> bytes:
        """LeafNodeTBS: the signed part, plus group and leaf for update/commit leaves."""
        wire = self.__dict__.get("_wire")
        if wire is not None:  # a decoded leaf: its TBS core is its bytes minus the last field, the signature
            body = wire[: len(wire) - len(opaque_bytes(self.signature))]
        else:
            body = self._tbs_core()
        if self.leaf_node_source == LeafNodeSource.key_package:
            return body
        assert group_id is not None and leaf_index is not None
        return body + opaque_bytes(group_id) + leaf_index.to_bytes(4, "big")

    def _tbs_core(self) -> bytes:
        return LeafNodeTBSCore(
            self.encryption_key,
            self.signature_key,
            self.credential,
            self.capabilities,
            self.leaf_node_source,
            self.lifetime,
            self.parent_hash,
            self.extensions,
        ).encode()

    def extension(self, ext_type: int) -> bytes | None:
        return find_extension(self.extensions, ext_type)


class LeafNodeTBSCore(Struct):
    encryption_key: bytes = field(opaque)
    signature_key: bytes = field(opaque)
    credential: Credential = field(Credential)
    capabilities: Capabilities = field(Capabilities)
    leaf_node_source: LeafNodeSource = field(EnumCodec(LeafNodeSource, uint8))
    lifetime: Lifetime | None = field(Select("leaf_node_source", {1: Lifetime, 2: None, 3: None}))
    parent_hash: bytes | None = field(Select("leaf_node_source", {1: None, 2: None, 3: opaque}))
    extensions: list[Extension] = field(Vector(Extension))


class KeyPackage(Struct):
    version: int = field(uint16)
    cipher_suite: int = field(uint16)
    init_key: bytes = field(opaque)
    leaf_node: LeafNode = field(LeafNode)
    extensions: list[Extension] = field(Vector(Extension))
    signature: bytes = field(opaque)

    def tbs(self) -> bytes:
        return KeyPackageTBS(
            self.version, self.cipher_suite, self.init_key, self.leaf_node, self.extensions
        ).encode()

    def extension(self, ext_type: int) -> bytes | None:
        return find_extension(self.extensions, ext_type)


class KeyPackageTBS(Struct):
    version: int = field(uint16)
    cipher_suite: int = field(uint16)
    init_key: bytes = field(opaque)
    leaf_node: LeafNode = field(LeafNode)
    extensions: list[Extension] = field(Vector(Extension))


# ---------------------------------------------------------------- tree


class ParentNode(Struct):
    encryption_key: bytes = field(opaque)
    parent_hash: bytes = field(opaque)
    unmerged_leaves: list[int] = field(Vector(uint32))


class Node(Struct):
    node_type: NodeType = field(EnumCodec(NodeType, uint8))
    leaf: LeafNode | None = field(Select("node_type", {1: LeafNode, 2: None}))
    parent: ParentNode | None = field(Select("node_type", {1: None, 2: ParentNode}))

    @property
    def value(self) -> LeafNode | ParentNode:
        v = self.leaf if self.node_type == NodeType.leaf else self.parent
        assert v is not None
        return v


RatchetTreeCodec = Vector(Optional(Node))


class RatchetTreeExt(Struct):
    nodes: list[Node | None] = field(RatchetTreeCodec)


class HPKECiphertext(Struct):
    kem_output: bytes = field(opaque)
    ciphertext: bytes = field(opaque)


class UpdatePathNode(Struct):
    encryption_key: bytes = field(opaque)
    encrypted_path_secret: list[HPKECiphertext] = field(Vector(HPKECiphertext))


class UpdatePath(Struct):
    leaf_node: LeafNode = field(LeafNode)
    nodes: list[UpdatePathNode] = field(Vector(UpdatePathNode))


class LeafNodeHashInput(Struct):
    leaf_index: int = field(uint32)
    leaf_node: LeafNode | None = field(Optional(LeafNode))


class ParentNodeHashInput(Struct):
    parent_node: ParentNode | None = field(Optional(ParentNode))
    left_hash: bytes = field(opaque)
    right_hash: bytes = field(opaque)


class ParentHashInput(Struct):
    encryption_key: bytes = field(opaque)
    parent_hash: bytes = field(opaque)
    original_sibling_tree_hash: bytes = field(opaque)


# ---------------------------------------------------------------- proposals


class PreSharedKeyID(Struct):
    psktype: PSKType = field(EnumCodec(PSKType, uint8))
    psk_id: bytes | None = field(Select("psktype", {1: opaque, 2: None}))
    usage: ResumptionPSKUsage | None = field(
        Select("psktype", {1: None, 2: EnumCodec(ResumptionPSKUsage, uint8)})
    )
    psk_group_id: bytes | None = field(Select("psktype", {1: None, 2: opaque}))
    psk_epoch: int | None = field(Select("psktype", {1: None, 2: uint64}))
    psk_nonce: bytes = field(opaque)

    @staticmethod
    def external(psk_id: bytes, nonce: bytes) -> PreSharedKeyID:
        return PreSharedKeyID(PSKType.external, psk_id, None, None, None, nonce)

    @staticmethod
    def resumption(usage: ResumptionPSKUsage, group_id: bytes, epoch: int, nonce: bytes) -> PreSharedKeyID:
        return PreSharedKeyID(PSKType.resumption, None, usage, group_id, epoch, nonce)


class PSKLabel(Struct):
    id: PreSharedKeyID = field(PreSharedKeyID)
    index: int = field(uint16)
    count: int = field(uint16)


class Add(Struct):
    key_package: KeyPackage = field(KeyPackage)


class Update(Struct):
    leaf_node: LeafNode = field(LeafNode)


class Remove(Struct):
    removed: int = field(uint32)


class PreSharedKey(Struct):
    psk: PreSharedKeyID = field(PreSharedKeyID)


class ReInit(Struct):
    group_id: bytes = field(opaque)
    version: int = field(uint16)
    cipher_suite: int = field(uint16)
    extensions: list[Extension] = field(Vector(Extension))


class ExternalInit(Struct):
    kem_output: bytes = field(opaque)


class GroupContextExtensions(Struct):
    extensions: list[Extension] = field(Vector(Extension))


class AppDataUpdate(Struct):
    component_id: int = field(uint16)
    op: AppDataUpdateOperation = field(EnumCodec(AppDataUpdateOperation, uint8))
    update: bytes | None = field(Select("op", {1: opaque, 2: None}))


class SelfRemove(Struct):
    pass


_PROPOSAL_BODY = {
    ProposalType.add: Add,
    ProposalType.update: Update,
    ProposalType.remove: Remove,
    ProposalType.psk: PreSharedKey,
    ProposalType.reinit: ReInit,
    ProposalType.external_init: ExternalInit,
    ProposalType.group_context_extensions: GroupContextExtensions,
    ProposalType.app_data_update: AppDataUpdate,
    ProposalType.self_remove: SelfRemove,
}


class Proposal(Struct):
    proposal_type: ProposalType = field(EnumCodec(ProposalType, uint16))
    body: Any = field(Select("proposal_type", _PROPOSAL_BODY))

    @staticmethod
    def of(body: Any) -> Proposal:
        for t, cls in _PROPOSAL_BODY.items():
            if isinstance(body, cls):
                return Proposal(t, body)
        raise TypeError(f"not a proposal body: {body!r}")


class ProposalOrRef(Struct):
    type: ProposalOrRefType = field(EnumCodec(ProposalOrRefType, uint8))
    proposal: Proposal | None = field(Select("type", {1: Proposal, 2: None}))
    reference: bytes | None = field(Select("type", {1: None, 2: opaque}))

    @staticmethod
    def by_value(p: Proposal) -> ProposalOrRef:
        return ProposalOrRef(ProposalOrRefType.proposal, p, None)

    @staticmethod
    def by_ref(ref: bytes) -> ProposalOrRef:
        return ProposalOrRef(ProposalOrRefType.reference, None, ref)


class Commit(Struct):
    proposals: list[ProposalOrRef] = field(Vector(ProposalOrRef))
    path: UpdatePath | None = field(Optional(UpdatePath))


# ---------------------------------------------------------------- framing


class Sender(Struct):
    sender_type: SenderType = field(EnumCodec(SenderType, uint8))
    leaf_index: int | None = field(Select("sender_type", {1: uint32, 2: None, 3: None, 4: None}))
    sender_index: int | None = field(Select("sender_type", {1: None, 2: uint32, 3: None, 4: None}))

    @staticmethod
    def member(i: int) -> Sender:
        return Sender(SenderType.member, i, None)

    @staticmethod
    def external(i: int) -> Sender:
        return Sender(SenderType.external, None, i)

    @staticmethod
    def new_member_commit() -> Sender:
        return Sender(SenderType.new_member_commit, None, None)

    @staticmethod
    def new_member_proposal() -> Sender:
        return Sender(SenderType.new_member_proposal, None, None)


class FramedContent(Struct):
    _keep_wire = True  # signed, MACed and transcript-hashed: re-encoded several times
    group_id: bytes = field(opaque)
    epoch: int = field(uint64)
    sender: Sender = field(Sender)
    authenticated_data: bytes = field(opaque)
    content_type: ContentType = field(EnumCodec(ContentType, uint8))
    application_data: bytes | None = field(Select("content_type", {1: opaque, 2: None, 3: None}))
    proposal: Proposal | None = field(Select("content_type", {1: None, 2: Proposal, 3: None}))
    commit: Commit | None = field(Select("content_type", {1: None, 2: None, 3: Commit}))


class GroupContext(Struct):
    version: int = field(uint16)
    cipher_suite: int = field(uint16)
    group_id: bytes = field(opaque)
    epoch: int = field(uint64)
    tree_hash: bytes = field(opaque)
    confirmed_transcript_hash: bytes = field(opaque)
    extensions: list[Extension] = field(Vector(Extension))

    def extension(self, ext_type: int) -> bytes | None:
        return find_extension(self.extensions, ext_type)


@dataclass
class AuthData:
    """FramedContentAuthData: signature, plus confirmation_tag for commits.

    Its layout depends on the enclosing FramedContent's content type, which is
    not part of its own encoding, so it has a codec of its own below.
    """

    signature: bytes
    confirmation_tag: bytes | None = None


class AuthDataCodec(Codec):
    def encode(self, value: Any, out: bytearray) -> None:
        opaque.encode(value.signature, out)
        if value.confirmation_tag is not None:
            opaque.encode(value.confirmation_tag, out)

    def decode(self, r: Reader, ctx: Mapping[str, Any]) -> AuthData:
        sig = opaque.decode(r, ctx)
        if ctx["content"].content_type == ContentType.commit:
            return AuthData(sig, opaque.decode(r, ctx))
        return AuthData(sig, None)


class _MembershipTagCodec(Codec):
    """Present only when the sender is a member (RFC 9420 s.6.2)."""

    def encode(self, value: Any, out: bytearray) -> None:
        if value is not None:
            opaque.encode(value, out)

    def decode(self, r: Reader, ctx: Mapping[str, Any]) -> Any:
        if ctx["content"].sender.sender_type == SenderType.member:
            return opaque.decode(r, ctx)
        return None


def _check_auth(content: FramedContent, auth: AuthData) -> str | None:
    if (content.content_type == ContentType.commit) != (auth.confirmation_tag is not None):
        return "confirmation_tag must be present exactly for commits"
    return None


class PublicMessage(Struct):
    content: FramedContent = field(FramedContent)
    auth: AuthData = field(AuthDataCodec())
    membership_tag: bytes | None = field(_MembershipTagCodec())

    def _check(self) -> str | None:
        err = _check_auth(self.content, self.auth)
        if err:
            return err
        if (self.content.sender.sender_type == SenderType.member) != (self.membership_tag is not None):
            return "membership_tag must be present exactly for member senders"
        return None


class AuthenticatedContent(Struct):
    wire_format: WireFormat = field(EnumCodec(WireFormat, uint16))
    content: FramedContent = field(FramedContent)
    auth: AuthData = field(AuthDataCodec())

    def _check(self) -> str | None:
        return _check_auth(self.content, self.auth)


class PrivateMessage(Struct):
    group_id: bytes = field(opaque)
    epoch: int = field(uint64)
    content_type: ContentType = field(EnumCodec(ContentType, uint8))
    authenticated_data: bytes = field(opaque)
    encrypted_sender_data: bytes = field(opaque)
    ciphertext: bytes = field(opaque)


class SenderData(Struct):
    leaf_index: int = field(uint32)
    generation: int = field(uint32)
    reuse_guard: bytes = field(Fixed(4))


class SenderDataAAD(Struct):
    group_id: bytes = field(opaque)
    epoch: int = field(uint64)
    content_type: ContentType = field(EnumCodec(ContentType, uint8))


class PrivateContentAAD(Struct):
    group_id: bytes = field(opaque)
    epoch: int = field(uint64)
    content_type: ContentType = field(EnumCodec(ContentType, uint8))
    authenticated_data: bytes = field(opaque)


class ConfirmedTranscriptHashInput(Struct):
    wire_format: WireFormat = field(EnumCodec(WireFormat, uint16))
    content: FramedContent = field(FramedContent)
    signature: bytes = field(opaque)


# ---------------------------------------------------------------- group info / welcome


class GroupInfo(Struct):
    group_context: GroupContext = field(GroupContext)
    extensions: list[Extension] = field(Vector(Extension))
    confirmation_tag: bytes = field(opaque)
    signer: int = field(uint32)
    signature: bytes = field(opaque)

    def tbs(self) -> bytes:
        return GroupInfoTBS(self.group_context, self.extensions, self.confirmation_tag, self.signer).encode()

    def extension(self, ext_type: int) -> bytes | None:
        return find_extension(self.extensions, ext_type)


class GroupInfoTBS(Struct):
    group_context: GroupContext = field(GroupContext)
    extensions: list[Extension] = field(Vector(Extension))
    confirmation_tag: bytes = field(opaque)
    signer: int = field(uint32)


class PathSecret(Struct):
    path_secret: bytes = field(opaque)


class GroupSecrets(Struct):
    joiner_secret: bytes = field(opaque)
    path_secret: PathSecret | None = field(Optional(PathSecret))
    psks: list[PreSharedKeyID] = field(Vector(PreSharedKeyID))


class EncryptedGroupSecrets(Struct):
    new_member: bytes = field(opaque)
    encrypted_group_secrets: HPKECiphertext = field(HPKECiphertext)


class Welcome(Struct):
    cipher_suite: int = field(uint16)
    secrets: list[EncryptedGroupSecrets] = field(Vector(EncryptedGroupSecrets))
    encrypted_group_info: bytes = field(opaque)


class MLSMessage(Struct):
    version: int = field(uint16)
    wire_format: WireFormat = field(EnumCodec(WireFormat, uint16))
    body: Any = field(
        Select(
            "wire_format",
            {
                WireFormat.public_message: PublicMessage,
                WireFormat.private_message: PrivateMessage,
                WireFormat.welcome: Welcome,
                WireFormat.group_info: GroupInfo,
                WireFormat.key_package: KeyPackage,
            },
        )
    )

    def _check(self) -> str | None:
        if self.version != MLS10:
            return f"unsupported protocol version {self.version}"
        return None

    @staticmethod
    def wrap(body: Any) -> MLSMessage:
        wf = {
            PublicMessage: WireFormat.public_message,
            PrivateMessage: WireFormat.private_message,
            Welcome: WireFormat.welcome,
            GroupInfo: WireFormat.group_info,
            KeyPackage: WireFormat.key_package,
        }[type(body)]
        return MLSMessage(MLS10, wf, body)


# ---------------------------------------------------------------- extensions' bodies


class ExternalSender(Struct):
    signature_key: bytes = field(opaque)
    credential: Credential = field(Credential)


class ExternalSenders(Struct):
    senders: list[ExternalSender] = field(Vector(ExternalSender))


class RequiredCapabilities(Struct):
    extension_types: list[int] = field(Vector(uint16))
    proposal_types: list[int] = field(Vector(uint16))
    credential_types: list[int] = field(Vector(uint16))


class ExternalPub(Struct):
    external_pub: bytes = field(opaque)


class ComponentData(Struct):
    component_id: int = field(uint16)
    data: bytes = field(opaque)


class AppDataDictionary(Struct):
    component_data: list[ComponentData] = field(Vector(ComponentData))

    def _check(self) -> str | None:
        ids = [c.component_id for c in self.component_data]
        if ids != sorted(set(ids)):
            return "component_data must be sorted by component_id, one entry each"
        return None

    def get(self, component_id: int) -> bytes | None:
        for c in self.component_data:
            if c.component_id == component_id:
                return c.data
        return None

    def with_data(self, component_id: int, data: bytes | None) -> AppDataDictionary:
        items = {c.component_id: c.data for c in self.component_data}
        if data is None:
            items.pop(component_id, None)
        else:
            items[component_id] = data
        return AppDataDictionary([ComponentData(k, items[k]) for k in sorted(items)])


class SafeAADItem(Struct):
    component_id: int = field(uint16)
    aad_item_data: bytes = field(opaque)


class SafeAAD(Struct):
    aad_items: list[SafeAADItem] = field(Vector(SafeAADItem))


# ---------------------------------------------------------------- helpers


def opaque_bytes(data: bytes) -> bytes:
    out = bytearray()
    opaque.encode(data, out)
    return bytes(out)


def find_extension(exts: list[Extension], ext_type: int) -> bytes | None:
    for e in exts:
        if e.extension_type == ext_type:
            return e.extension_data
    return None


def replace_extension(exts: list[Extension], ext_type: int, data: bytes | None) -> list[Extension]:
    """Set (in place of the old entry, keeping order) or drop one extension."""
    out: list[Extension] = []
    done = False
    for e in exts:
        if e.extension_type == ext_type:
            if data is not None and not done:
                out.append(Extension(ext_type, data))
                done = True
            continue
        out.append(e)
    if data is not None and not done:
        out.append(Extension(ext_type, data))
    return out


# ---------------------------------------------------------------- draft-mahy-mls-ratchet-tree-options


class RatchetTreeRepresentation(enum.IntEnum):
    full = 1
    https_uri = 2
    out_of_band = 3
    distribution_service = 4


class RatchetTreeOption(Struct):
    """How a joiner gets the ratchet tree (draft-mahy-mls-ratchet-tree-options s.2)."""

    representation: RatchetTreeRepresentation = field(EnumCodec(RatchetTreeRepresentation, uint8))
    ratchet_tree: list[Node | None] | None = field(Select("representation", {1: RatchetTreeCodec, 2: None, 3: None, 4: None}))
    ratchet_tree_url: bytes | None = field(Select("representation", {1: None, 2: opaque, 3: None, 4: None}))
    tree_signature: bytes | None = field(Select("representation", {1: None, 2: opaque, 3: opaque, 4: None}))


class RatchetTreePresence(enum.IntEnum):
    no_ratchet_tree = 0
    present = 1
    removed = 2
    added = 3


class PartialGroupInfo(Struct):
    """The parts of a GroupInfo a hub cannot rebuild from PublicMessages alone:
    the committer's extensions (without ratchet_tree) and signature."""

    ratchet_tree_presence: RatchetTreePresence = field(EnumCodec(RatchetTreePresence, uint8))
    group_info_extensions: list[Extension] = field(Vector(Extension))
    signature: bytes = field(opaque)
