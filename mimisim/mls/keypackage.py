"""Creating signed LeafNodes, KeyPackages and GroupInfos with injected randomness.

Validation lives in :mod:`mimisim.mls.validation`; this module only builds
objects a client sends, so every signature here is made with a key the
caller holds.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from mimisim.codec import DecodeError
from mimisim.mls.crypto import CipherSuite, RandomSource
from mimisim.mls.errors import ValidationError
from mimisim.mls.structs import (
    MLS10,
    Capabilities,
    Credential,
    CredentialType,
    Extension,
    ExtensionType,
    GroupContext,
    GroupInfo,
    KeyPackage,
    LeafNode,
    LeafNodeSource,
    Lifetime,
    Node,
    ProposalType,
    RatchetTreeExt,
)
from mimisim.mls.tree import RatchetTree

# What mimisim clients advertise by default: the extensions and proposals MIMI
# needs beyond RFC 9420's defaults (app_data_dictionary, AppDataUpdate,
# SelfRemove).
DEFAULT_CAPABILITY_EXTENSIONS = (6,)
DEFAULT_CAPABILITY_PROPOSALS = (int(ProposalType.app_data_update), int(ProposalType.self_remove))

FOREVER = Lifetime(0, (1 << 64) - 1)


def default_capabilities(suite: CipherSuite) -> Capabilities:
    return Capabilities(
        versions=[MLS10],
        cipher_suites=[suite.suite_id],
        extensions=list(DEFAULT_CAPABILITY_EXTENSIONS),
        proposals=list(DEFAULT_CAPABILITY_PROPOSALS),
        credentials=[CredentialType.basic],
    )


@dataclass(frozen=True)
class KeyPackagePrivate:
    """The private keys that go with one KeyPackage."""

    init_priv: bytes
    encryption_priv: bytes
    signature_priv: bytes


def sign_leaf_node(
    suite: CipherSuite,
    sig_priv: bytes,
    *,
    encryption_key: bytes,
    credential: Credential,
    capabilities: Capabilities,
    source: LeafNodeSource,
    lifetime: Lifetime | None = None,
    parent_hash: bytes | None = None,
    extensions: Sequence[Extension] = (),
    group_id: bytes | None = None,
    leaf_index: int | None = None,
) -> LeafNode:
    leaf = LeafNode(
        encryption_key=encryption_key,
        signature_key=suite.signature_public_key(sig_priv),
        credential=credential,
        capabilities=capabilities,
        leaf_node_source=source,
        lifetime=lifetime if source == LeafNodeSource.key_package else None,
        parent_hash=parent_hash if source == LeafNodeSource.commit else None,
        extensions=list(extensions),
        signature=b"",
    )
    leaf.signature = suite.sign_with_label(sig_priv, b"LeafNodeTBS", leaf.tbs(group_id, leaf_index))
    return leaf


def resign_leaf(suite: CipherSuite, sig_priv: bytes, leaf: LeafNode, **changes: object) -> LeafNode:
    """A copy of ``leaf`` with some fields changed, signed again."""
    group_id = changes.pop("group_id", None)
    leaf_index = changes.pop("leaf_index", None)
    fields = {
        "encryption_key": leaf.encryption_key,
        "credential": leaf.credential,
        "capabilities": leaf.capabilities,
        "source": leaf.leaf_node_source,
        "lifetime": leaf.lifetime,
        "parent_hash": leaf.parent_hash,
        "extensions": leaf.extensions,
    }
    fields.update(changes)
    return sign_leaf_node(suite, sig_priv, group_id=group_id, leaf_index=leaf_index, **fields)  # type: ignore[arg-type]


def create_key_package(
    suite: CipherSuite,
    credential: Credential,
    sig_priv: bytes,
    rng: RandomSource,
    *,
    lifetime: Lifetime = FOREVER,
    capabilities: Capabilities | None = None,
    leaf_extensions: Sequence[Extension] = (),
    extensions: Sequence[Extension] = (),
) -> tuple[KeyPackage, KeyPackagePrivate]:
    """A fresh KeyPackage: new init and encryption key pairs drawn from ``rng``."""
    init_priv, init_pub = suite.generate_hpke_key_pair(rng)
    enc_priv, enc_pub = suite.generate_hpke_key_pair(rng)
    leaf = sign_leaf_node(
        suite,
        sig_priv,
        encryption_key=enc_pub,
        credential=credential,
        capabilities=capabilities or default_capabilities(suite),
        source=LeafNodeSource.key_package,
        lifetime=lifetime,
        extensions=leaf_extensions,
    )
    kp = KeyPackage(MLS10, suite.suite_id, init_pub, leaf, list(extensions), b"")
    kp.signature = suite.sign_with_label(sig_priv, b"KeyPackageTBS", kp.tbs())
    return kp, KeyPackagePrivate(init_priv, enc_priv, sig_priv)


def sign_group_info(
    suite: CipherSuite,
    sig_priv: bytes,
    context: GroupContext,
    extensions: Sequence[Extension],
    confirmation_tag: bytes,
    signer: int,
) -> GroupInfo:
    gi = GroupInfo(context, list(extensions), confirmation_tag, signer, b"")
    gi.signature = suite.sign_with_label(sig_priv, b"GroupInfoTBS", gi.tbs())
    return gi


def verify_group_info(suite: CipherSuite, gi: GroupInfo, signer_key: bytes) -> bool:
    return suite.verify_with_label(signer_key, b"GroupInfoTBS", gi.tbs(), gi.signature)


def tree_source(gi: GroupInfo, given: Sequence[Node | None] | None) -> bytes | Sequence[Node | None] | None:
    """What :func:`tree_from_group_info` builds the tree from: the GroupInfo's
    ratchet_tree extension bytes, else the node list given (None: neither)."""
    raw = gi.extension(ExtensionType.ratchet_tree)
    return bytes(raw) if raw is not None else given


def tree_from_group_info(suite: CipherSuite, gi: GroupInfo, given: Sequence[Node | None] | None) -> RatchetTree:
    """The ratchet tree of a GroupInfo: its ratchet_tree extension, else the one given."""
    raw = gi.extension(ExtensionType.ratchet_tree)
    if raw is not None:
        nodes = RatchetTreeExt.decode(raw).nodes
    elif given is not None:
        nodes = list(given)
    else:
        raise ValidationError("no ratchet tree in the GroupInfo and none given")
    try:
        return RatchetTree.from_nodes(suite, nodes)
    except (ValueError, DecodeError) as e:
        raise ValidationError(f"malformed ratchet tree: {e}") from None
