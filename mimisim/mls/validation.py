"""LeafNode and KeyPackage validation (RFC 9420 s.7.3 and s.10.1).

One module so the member, the joiner and the hub observer apply the same
rules. Time is an input (``now_s``, seconds); ``None`` means "the caller cannot
tell the time" (a joiner, a replay of test vectors), and skips only the
lifetime check, as s.7.3 allows for received LeafNodes.
"""

from __future__ import annotations

from collections.abc import Iterable

from mimisim.codec import DecodeError
from mimisim.mls.crypto import CipherSuite
from mimisim.mls.errors import ValidationError
from mimisim.mls.structs import (
    DEFAULT_EXTENSION_TYPES,
    DEFAULT_PROPOSAL_TYPES,
    MLS10,
    CredentialType,
    ExtensionType,
    KeyPackage,
    LeafNode,
    LeafNodeSource,
    RequiredCapabilities,
)
from mimisim.mls.tree import RatchetTree


def required_capabilities(extensions: Iterable) -> RequiredCapabilities | None:
    for e in extensions:
        if e.extension_type == ExtensionType.required_capabilities:
            try:
                return RequiredCapabilities.decode(e.extension_data)
            except DecodeError as exc:  # a bug elsewhere must propagate, not become a validation error
                raise ValidationError(f"malformed required_capabilities: {exc}") from None
    return None


def supports_extension(leaf: LeafNode, ext_type: int) -> bool:
    return ext_type in DEFAULT_EXTENSION_TYPES or ext_type in leaf.capabilities.extensions


def supports_proposal(leaf: LeafNode, prop_type: int) -> bool:
    return prop_type in DEFAULT_PROPOSAL_TYPES or prop_type in leaf.capabilities.proposals


def check_capabilities(leaf: LeafNode, group_extensions: Iterable) -> None:
    """The leaf supports the group's required capabilities and GroupContext extensions."""
    exts = list(group_extensions)
    rc = required_capabilities(exts)
    if rc is not None:
        for t in rc.extension_types:
            if not supports_extension(leaf, t):
                raise ValidationError(f"leaf does not support required extension {t}")
        for t in rc.proposal_types:
            if not supports_proposal(leaf, t):
                raise ValidationError(f"leaf does not support required proposal type {t}")
        for t in rc.credential_types:
            if t not in leaf.capabilities.credentials:
                raise ValidationError(f"leaf does not support required credential type {t}")
    for e in exts:
        if not supports_extension(leaf, e.extension_type):
            raise ValidationError(f"leaf does not support group extension {e.extension_type}")


def validate_leaf_node(
    suite: CipherSuite,
    leaf: LeafNode,
    source: LeafNodeSource,
    *,
    group_id: bytes | None = None,
    leaf_index: int | None = None,
    group_extensions: Iterable = (),
    members: Iterable[tuple[int, LeafNode]] | RatchetTree = (),
    replacing: int | None = None,
    now_s: int | None = None,
) -> None:
    """Validate ``leaf`` for inclusion in a group (RFC 9420 s.7.3).

    ``members`` are the group's current (index, leaf) pairs, used for the
    credential-type compatibility and key-uniqueness checks; ``replacing`` is
    the index of a leaf this one replaces (an Update or a commit path), whose
    own keys do not count as duplicates. Given the tree itself, those checks
    first consult its incremental indexes (key counts, credential profiles)
    and scan the members, for the exact error, only when the indexes say a
    check may fail: the same outcome in time independent of the group size.
    """
    if leaf.leaf_node_source != source:
        raise ValidationError(f"leaf_node_source is {leaf.leaf_node_source.name}, expected {source.name}")
    if leaf.credential.credential_type not in (CredentialType.basic, CredentialType.x509):
        raise ValidationError(f"unsupported credential type {leaf.credential.credential_type}")
    if source == LeafNodeSource.key_package:
        tbs = leaf.tbs()
    else:
        if group_id is None or leaf_index is None:
            raise ValidationError("update/commit leaf needs group_id and leaf_index")
        tbs = leaf.tbs(group_id, leaf_index)
    if not suite.verify_with_label(leaf.signature_key, b"LeafNodeTBS", tbs, leaf.signature):
        raise ValidationError("invalid LeafNode signature")
    if MLS10 not in leaf.capabilities.versions:
        raise ValidationError("leaf does not support mls10")
    if leaf.credential.credential_type not in leaf.capabilities.credentials:
        raise ValidationError("leaf does not list its own credential type in its capabilities")
    check_capabilities(leaf, group_extensions)
    for e in leaf.extensions:
        if not supports_extension(leaf, e.extension_type):
            raise ValidationError(f"leaf carries extension {e.extension_type} it does not list as supported")
    if source == LeafNodeSource.key_package and now_s is not None:
        lt = leaf.lifetime
        assert lt is not None
        if not lt.not_before <= now_s <= lt.not_after:
            raise ValidationError("leaf lifetime does not cover the current time")
    if isinstance(members, RatchetTree):
        if not _may_conflict(members, leaf, replacing):
            return
        members = members.members()
    for i, other in members:
        if i == replacing:
            continue
        if other.credential.credential_type not in leaf.capabilities.credentials:
            raise ValidationError(f"leaf does not support credential type of member {i}")
        if leaf.credential.credential_type not in other.capabilities.credentials:
            raise ValidationError(f"member {i} does not support this leaf's credential type")
        if other.signature_key == leaf.signature_key:
            raise ValidationError(f"signature key duplicates member {i}")
        if other.encryption_key == leaf.encryption_key:
            raise ValidationError(f"encryption key duplicates member {i}")


def _may_conflict(tree: RatchetTree, leaf: LeafNode, replacing: int | None) -> bool:
    """Whether a member other than ``replacing`` may fail the member checks of
    :func:`validate_leaf_node` (False: none can). Conservative: the encryption
    key count includes parent nodes, which the member scan then rules out."""
    old = tree.leaf(replacing) if replacing is not None and replacing < tree.n_leaves else None
    if tree.signature_key_count(leaf.signature_key) - (old is not None and old.signature_key == leaf.signature_key) > 0:
        return True
    if tree.encryption_key_count(leaf.encryption_key) - (old is not None and old.encryption_key == leaf.encryption_key) > 0:
        return True
    own = None if old is None else (int(old.credential.credential_type), tuple(old.capabilities.credentials))
    ct, supported = leaf.credential.credential_type, leaf.capabilities.credentials
    for (other_ct, other_supported), count in tree.leaf_profile_counts().items():
        if count - ((other_ct, other_supported) == own) <= 0:
            continue
        if other_ct not in supported or ct not in other_supported:
            return True
    return False


def validate_key_package(
    suite: CipherSuite,
    kp: KeyPackage,
    *,
    group_extensions: Iterable = (),
    members: Iterable[tuple[int, LeafNode]] | RatchetTree = (),
    now_s: int | None = None,
) -> None:
    """Validate a KeyPackage for an Add (RFC 9420 s.10.1, s.12.1.1)."""
    if kp.version != MLS10:
        raise ValidationError(f"KeyPackage version {kp.version} is not mls10")
    if kp.cipher_suite != suite.suite_id:
        raise ValidationError(f"KeyPackage cipher suite {kp.cipher_suite} != group suite {suite.suite_id}")
    if not suite.verify_with_label(kp.leaf_node.signature_key, b"KeyPackageTBS", kp.tbs(), kp.signature):
        raise ValidationError("invalid KeyPackage signature")
    if kp.init_key == kp.leaf_node.encryption_key:
        raise ValidationError("KeyPackage init_key equals the leaf encryption_key")
    validate_leaf_node(
        suite,
        kp.leaf_node,
        LeafNodeSource.key_package,
        group_extensions=group_extensions,
        members=members,
        now_s=now_s,
    )
