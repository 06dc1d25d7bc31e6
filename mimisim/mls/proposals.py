"""Proposal validation and application (RFC 9420 s.12.1-12.3, s.12.4.3.2;
draft-ietf-mls-extensions AppDataUpdate and SelfRemove).

Shared by members and the hub observer: both must reach the same verdict on
the same commit, so the rules live in one place. Application never mutates
its inputs; it works on a copy of the tree and returns the outcome, which the
caller merges only when the whole commit is valid (staged processing).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from mimisim.codec import DecodeError
from mimisim.mls.crypto import CipherSuite
from mimisim.mls.errors import MLSError, ProposalError, ValidationError
from mimisim.mls.structs import (
    DEFAULT_EXTENSION_TYPES,
    DEFAULT_PROPOSAL_TYPES,
    AppDataDictionary,
    AppDataUpdateOperation,
    Commit,
    Extension,
    ExtensionType,
    ExternalSenders,
    FramedContent,
    KeyPackage,
    LeafNodeSource,
    PreSharedKeyID,
    Proposal,
    ProposalOrRefType,
    ProposalType,
    PSKType,
    ReInit,
    ResumptionPSKUsage,
    Sender,
    SenderType,
    find_extension,
    replace_extension,
)
from mimisim.mls.tree import RatchetTree
from mimisim.mls.validation import (
    check_capabilities,
    supports_extension,
    supports_proposal,
    validate_key_package,
    validate_leaf_node,
)

# Proposal types that force an UpdatePath (RFC 9420 s.17.4 "Path Required",
# extensions draft for self_remove).
PATH_REQUIRED = frozenset(
    {
        ProposalType.update,
        ProposalType.remove,
        ProposalType.external_init,
        ProposalType.group_context_extensions,
        ProposalType.self_remove,
    }
)
# Proposal types an external sender may send (RFC 9420 s.12.1.8; extensions draft).
EXTERNAL_ALLOWED = frozenset(
    {
        ProposalType.add,
        ProposalType.remove,
        ProposalType.psk,
        ProposalType.reinit,
        ProposalType.group_context_extensions,
        ProposalType.app_data_update,
    }
)
# Proposal types allowed in an external commit (s.12.4.3.2; SelfRemove by the extensions draft).
EXTERNAL_COMMIT_ALLOWED = frozenset(
    {ProposalType.external_init, ProposalType.remove, ProposalType.psk, ProposalType.self_remove}
)

AppComponentApply = Callable[[bytes | None, list[bytes]], bytes]


def replace_semantics(current: bytes | None, updates: list[bytes]) -> bytes:
    """Default AppDataUpdate meaning: the last update replaces the component data."""
    return updates[-1]


@dataclass(frozen=True)
class CachedProposal:
    """A proposal received (or sent) in the current epoch, by reference."""

    ref: bytes
    proposal: Proposal
    sender: Sender


@dataclass
class ResolvedProposal:
    proposal: Proposal
    sender: Sender
    ref: bytes | None  # None when the commit carried it by value


@dataclass
class ProposalOutcome:
    """What applying a commit's proposal list does to the group."""

    tree: RatchetTree
    extensions: list[Extension]
    added: list[tuple[int, KeyPackage]] = field(default_factory=list)
    removed: list[int] = field(default_factory=list)
    updated: list[int] = field(default_factory=list)
    psks: list[PreSharedKeyID] = field(default_factory=list)
    external_init: bytes | None = None
    reinit: ReInit | None = None
    path_required: bool = False
    app_data_changed: list[int] = field(default_factory=list)


def external_senders(extensions: Sequence[Extension]) -> list:
    data = find_extension(list(extensions), ExtensionType.external_senders)
    if data is None:
        return []
    try:
        return ExternalSenders.decode(data).senders
    except DecodeError as e:
        raise ValidationError(f"malformed external_senders extension: {e}") from None


def resolve_commit(
    commit: Commit, sender: Sender, cache: Mapping[bytes, CachedProposal]
) -> list[ResolvedProposal]:
    """Turn a commit's ProposalOrRef list into proposals, looking refs up in the cache."""
    out: list[ResolvedProposal] = []
    for por in commit.proposals:
        if por.type == ProposalOrRefType.reference:
            ref = por.reference
            assert ref is not None
            cp = cache.get(ref)
            if cp is None:
                raise ProposalError("commit references an unknown proposal", (ref,))
            out.append(ResolvedProposal(cp.proposal, cp.sender, ref))
        else:
            assert por.proposal is not None
            out.append(ResolvedProposal(por.proposal, sender, None))
    return out


def _refs(*rps: ResolvedProposal) -> tuple[bytes, ...]:
    return tuple(rp.ref for rp in rps if rp.ref is not None)


def check_proposal_sender(proposal: Proposal, sender: Sender, extensions: Sequence[Extension], tree: RatchetTree) -> None:
    """Rules on who may send which proposal, checked when a proposal arrives alone."""
    t = proposal.proposal_type
    st = sender.sender_type
    if st == SenderType.member:
        if tree.leaf(sender.leaf_index or 0) is None:
            raise ProposalError("proposal from a blank leaf")
        if t == ProposalType.external_init:
            raise ProposalError("ExternalInit can only appear in an external commit")
    elif st == SenderType.external:
        if t not in EXTERNAL_ALLOWED:
            raise ProposalError(f"external senders cannot send {t.name}")
        if (sender.sender_index or 0) >= len(external_senders(extensions)):
            raise ProposalError("external sender index out of range")
    elif st == SenderType.new_member_proposal:
        if t != ProposalType.add:
            raise ProposalError("new_member_proposal senders can only propose Add")
    else:
        raise ProposalError("new_member_commit cannot send a standalone proposal")
    if t == ProposalType.self_remove and st != SenderType.member:
        raise ProposalError("SelfRemove must come from a member")


def apply_proposals(
    suite: CipherSuite,
    group_id: bytes,
    extensions: Sequence[Extension],
    tree: RatchetTree,
    resolved: Sequence[ResolvedProposal],
    committer: Sender,
    *,
    external_commit: bool = False,
    now_s: int | None = None,
    app_components: Mapping[int, AppComponentApply] | None = None,
    psk_known: Callable[[PreSharedKeyID], bool] | None = None,
    reinit_usage: ResumptionPSKUsage | None = None,
) -> ProposalOutcome:
    """Validate a commit's proposal list against the group and apply it to a copy.

    Raises :class:`ProposalError` naming the refs at fault. The committer's
    leaf index (for member commits) matters for the "cannot update or remove
    yourself" rules.
    """
    committer_leaf = committer.leaf_index if committer.sender_type == SenderType.member else None
    by_type: dict[ProposalType, list[ResolvedProposal]] = {}
    for rp in resolved:
        by_type.setdefault(rp.proposal.proposal_type, []).append(rp)
        if rp.ref is not None:  # by value, the committer is the sender
            check_proposal_sender(rp.proposal, rp.sender, extensions, tree)
        if rp.proposal.proposal_type == ProposalType.self_remove and rp.ref is None:
            raise ProposalError("SelfRemove is only allowed by reference")
        if rp.proposal.proposal_type == ProposalType.update and rp.ref is None:
            raise ProposalError("Update proposals cannot be committed by value")

    types = set(by_type)
    # --- external commit shape (s.12.4.3.2)
    if external_commit:
        if len(by_type.get(ProposalType.external_init, [])) != 1:
            raise ProposalError("an external commit needs exactly one ExternalInit")
        bad = types - EXTERNAL_COMMIT_ALLOWED
        if bad:
            raise ProposalError(f"external commit cannot carry {sorted(t.name for t in bad)}")
        if len(by_type.get(ProposalType.remove, [])) > 1:
            raise ProposalError("an external commit can remove at most one member")
        for rp in resolved:
            if rp.ref is not None and rp.proposal.proposal_type != ProposalType.self_remove:
                raise ProposalError("external commits carry proposals by value (SelfRemove excepted)", (rp.ref,))
    elif ProposalType.external_init in types:
        raise ProposalError("ExternalInit outside an external commit")
    if ProposalType.reinit in types and len(resolved) != 1:
        raise ProposalError("ReInit must be the only proposal in its commit", _refs(*resolved))
    if len(by_type.get(ProposalType.group_context_extensions, [])) > 1:
        raise ProposalError("more than one GroupContextExtensions proposal")

    new_tree = tree.copy()
    outcome = ProposalOutcome(tree=new_tree, extensions=list(extensions))
    outcome.path_required = not resolved or bool(types & PATH_REQUIRED)

    # --- proposals that need every member's support. The tree's capability
    # index answers for all members at once (one test per distinct profile);
    # the members are scanned, for the exact error, only when one may fail.
    for rp in resolved:
        pt = rp.proposal.proposal_type
        if pt not in (ProposalType.add,) and int(pt) > 7:
            if pt in DEFAULT_PROPOSAL_TYPES or all(pt in props for _, props, _ in tree.leaf_capability_counts()):
                continue
            for i, leaf in tree.members():
                if not supports_proposal(leaf, pt):
                    raise ProposalError(f"member {i} does not support proposal type {pt.name}", _refs(rp))

    # --- GroupContextExtensions: applied first so adds are checked against them
    for rp in by_type.get(ProposalType.group_context_extensions, []):
        new_exts = list(rp.proposal.body.extensions)
        ext_types = [e.extension_type for e in new_exts]
        if len(set(ext_types)) != len(ext_types):
            raise ProposalError("duplicate extension types in GroupContextExtensions", _refs(rp))
        for i, leaf in tree.members():
            try:
                check_capabilities(leaf, new_exts)
            except ValidationError as e:
                raise ProposalError(f"member {i}: {e}", _refs(rp)) from None
        outcome.extensions = new_exts

    touched: dict[int, ResolvedProposal] = {}

    def touch(leaf: int, rp: ResolvedProposal) -> None:
        if leaf in touched:
            raise ProposalError(f"two proposals act on leaf {leaf}", _refs(touched[leaf], rp))
        touched[leaf] = rp

    # --- Update
    for rp in by_type.get(ProposalType.update, []):
        if rp.sender.sender_type != SenderType.member:
            raise ProposalError("Update from a non-member", _refs(rp))
        li = rp.sender.leaf_index
        assert li is not None
        if li == committer_leaf:
            raise ProposalError("the committer cannot commit its own Update", _refs(rp))
        touch(li, rp)
        leaf = rp.proposal.body.leaf_node
        try:
            validate_leaf_node(
                suite, leaf, LeafNodeSource.update, group_id=group_id, leaf_index=li,
                group_extensions=outcome.extensions, members=tree, replacing=li, now_s=now_s,
            )
        except ValidationError as e:
            raise ProposalError(f"Update for leaf {li}: {e}", _refs(rp)) from None
        new_tree.update_leaf(li, leaf)
        outcome.updated.append(li)

    # --- SelfRemove (after Update, before Remove: extensions draft)
    removes: list[tuple[int, ResolvedProposal]] = []
    for rp in by_type.get(ProposalType.self_remove, []):
        li = rp.sender.leaf_index
        assert li is not None
        if li == committer_leaf:
            raise ProposalError("the committer cannot commit its own SelfRemove", _refs(rp))
        removes.append((li, rp))
    for rp in by_type.get(ProposalType.remove, []):
        removes.append((rp.proposal.body.removed, rp))
    for li, rp in removes:
        if li >= tree.n_leaves or tree.leaf(li) is None:
            raise ProposalError(f"Remove of blank or out-of-range leaf {li}", _refs(rp))
        if li == committer_leaf:
            raise ProposalError("the committer cannot remove itself", _refs(rp))
        touch(li, rp)
    for li, _rp in removes:
        new_tree.remove_leaf(li)
        outcome.removed.append(li)

    # --- Add: every KeyPackage is checked against the members left after the
    # removes (not against the other Adds, whose duplicates are checked here),
    # then all are added.
    seen_sig: set[bytes] = set()
    adding: list[KeyPackage] = []
    for rp in by_type.get(ProposalType.add, []):
        kp = rp.proposal.body.key_package
        if rp.sender.sender_type == SenderType.new_member_proposal and rp.ref is None:
            raise ProposalError("new member Add must be by reference", _refs(rp))
        try:
            validate_key_package(
                suite, kp, group_extensions=outcome.extensions, members=new_tree, now_s=now_s
            )
        except ValidationError as e:
            raise ProposalError(f"Add: {e}", _refs(rp)) from None
        sk = kp.leaf_node.signature_key
        if sk in seen_sig:
            raise ProposalError("two Adds with the same signature key", _refs(rp))
        seen_sig.add(sk)
        adding.append(kp)
    for kp in adding:
        outcome.added.append((new_tree.add_leaf(kp.leaf_node), kp))
    # Adds within one commit must also have distinct encryption keys.
    enc = [kp.leaf_node.encryption_key for _, kp in outcome.added]
    if len(set(enc)) != len(enc):
        raise ProposalError("two Adds with the same encryption key")

    # --- PreSharedKey
    seen_psk: set[bytes] = set()
    for rp in by_type.get(ProposalType.psk, []):
        psk = rp.proposal.body.psk
        # usage reinit/branch only in the first commit of the group a ReInit or
        # branch creates (RFC 9420 s.11.2-11.3); the caller says when that is.
        if psk.psktype == PSKType.resumption and psk.usage not in (ResumptionPSKUsage.application, reinit_usage):
            raise ProposalError(f"resumption PSK with usage {psk.usage} is not allowed here", _refs(rp))
        if len(psk.psk_nonce) != suite.hash_len:
            raise ProposalError("PSK nonce length must equal the hash length", _refs(rp))
        key = psk.encode()
        key_id = key[: len(key) - len(psk.psk_nonce) - 1]  # identity without the nonce
        if key_id in seen_psk:
            raise ProposalError("two PSK proposals for the same PSK", _refs(rp))
        seen_psk.add(key_id)
        if psk_known is not None and not psk_known(psk):
            raise ProposalError("unknown PSK", _refs(rp))
        outcome.psks.append(psk)

    # --- ReInit / ExternalInit
    for rp in by_type.get(ProposalType.reinit, []):
        if rp.proposal.body.version < 1:
            raise ProposalError("ReInit to an older protocol version", _refs(rp))
        outcome.reinit = rp.proposal.body
    for rp in by_type.get(ProposalType.external_init, []):
        outcome.external_init = rp.proposal.body.kem_output

    # --- AppDataUpdate (after the RFC's own proposals)
    if ProposalType.app_data_update in types:
        outcome.extensions = _apply_app_data(
            outcome.extensions, by_type[ProposalType.app_data_update], app_components or {}
        )
        outcome.app_data_changed = sorted({rp.proposal.body.component_id for rp in by_type[ProposalType.app_data_update]})

    # Every member left must support the (possibly changed) GroupContext extensions.
    if outcome.extensions != list(extensions):
        ext_types = [ext.extension_type for ext in outcome.extensions]
        if not all(t in DEFAULT_EXTENSION_TYPES or t in exts
                   for exts, _, _ in new_tree.leaf_capability_counts() for t in ext_types):
            for i, leaf in new_tree.members():
                for ext in outcome.extensions:
                    if not supports_extension(leaf, ext.extension_type):
                        raise ProposalError(f"member {i} does not support extension {ext.extension_type}")
    return outcome


def _apply_app_data(
    extensions: list[Extension],
    updates: list[ResolvedProposal],
    components: Mapping[int, AppComponentApply],
) -> list[Extension]:
    raw = find_extension(extensions, ExtensionType.app_data_dictionary)
    try:
        dictionary = AppDataDictionary.decode(raw) if raw is not None else AppDataDictionary([])
    except DecodeError as e:
        raise ProposalError(f"malformed app_data_dictionary: {e}") from None
    grouped: dict[int, list[ResolvedProposal]] = {}
    for rp in updates:
        grouped.setdefault(rp.proposal.body.component_id, []).append(rp)
    for cid in sorted(grouped):
        rps = grouped[cid]
        ops = [rp.proposal.body.op for rp in rps]
        current = dictionary.get(cid)
        if AppDataUpdateOperation.remove in ops:
            if len(ops) != 1:
                raise ProposalError(f"component {cid}: remove must be alone", _refs(*rps))
            if current is None:
                raise ProposalError(f"component {cid}: remove of absent state", _refs(*rps))
            dictionary = dictionary.with_data(cid, None)
            continue
        apply = components.get(cid, replace_semantics)
        try:
            new = apply(current, [rp.proposal.body.update for rp in rps])
        except (ValueError, DecodeError) as e:
            raise ProposalError(f"component {cid}: {e}", _refs(*rps)) from None
        dictionary = dictionary.with_data(cid, new)
    return replace_extension(extensions, ExtensionType.app_data_dictionary, dictionary.encode())


def sender_signature_key(tree: RatchetTree, extensions: Sequence[Extension], c: FramedContent) -> bytes:
    """The key that must have signed ``c``, by sender type (RFC 9420 s.6.1)."""
    s = c.sender
    if s.sender_type == SenderType.member:
        li = s.leaf_index or 0
        leaf = tree.leaf(li) if li < tree.n_leaves else None
        if leaf is None:
            raise MLSError(f"sender leaf {li} is blank")
        return leaf.signature_key
    if s.sender_type == SenderType.external:
        senders = external_senders(extensions)
        idx = s.sender_index or 0
        if idx >= len(senders):
            raise MLSError("unknown external sender")
        return senders[idx].signature_key
    if s.sender_type == SenderType.new_member_proposal:
        if c.proposal is None or c.proposal.proposal_type != ProposalType.add:
            raise MLSError("new_member_proposal must carry an Add")
        return c.proposal.body.key_package.leaf_node.signature_key
    if c.commit is None or c.commit.path is None:
        raise MLSError("new_member_commit needs an UpdatePath")
    return c.commit.path.leaf_node.signature_key
