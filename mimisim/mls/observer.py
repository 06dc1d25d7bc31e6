"""The hub's view of an MLS group: no private keys, full public validation.

A MIMI hub follows each room's group the way an MLS Delivery Service does
when handshakes travel as PublicMessages (draft-ietf-mimi-protocol s.4,
draft-mahy-mls-ratchet-tree-options): it checks signatures, proposal rules,
UpdatePath parent hashes and the resulting tree hash, keeps the epoch's
proposal cache, and can rebuild a signed GroupInfo from the committer's
PartialGroupInfo and serve the ratchet tree to joiners.

What it cannot check without the epoch secrets, and does not pretend to:
membership tags and confirmation tags. Those are checked by every member.

The observer shares :mod:`mimisim.mls.proposals` with members, so a commit the
hub accepts is a commit the members accept, and vice versa.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace

from mimisim.mls import framing, tree_validation
from mimisim.mls.crypto import CipherSuite, get_suite
from mimisim.mls.errors import MLSError, ProposalError, ReplayError, ValidationError, WrongEpochError
from mimisim.mls.keypackage import tree_from_group_info, verify_group_info
from mimisim.mls.proposals import (
    AppComponentApply,
    CachedProposal,
    ProposalOutcome,
    apply_proposals,
    check_proposal_sender,
    resolve_commit,
    sender_signature_key,
)
from mimisim.mls.structs import (
    AuthenticatedContent,
    ContentType,
    Extension,
    ExtensionType,
    FramedContent,
    GroupContext,
    GroupInfo,
    LeafNodeSource,
    MLSMessage,
    Node,
    PartialGroupInfo,
    Proposal,
    PublicMessage,
    RatchetTreeExt,
    RatchetTreePresence,
    Sender,
    SenderType,
    WireFormat,
)
from mimisim.mls.tree import RatchetTree
from mimisim.mls.treekem import apply_update_path_public
from mimisim.mls.validation import validate_leaf_node


@dataclass
class ObservedCommit:
    """A commit the observer validated but has not merged."""

    context: GroupContext
    tree: RatchetTree
    interim: bytes
    confirmation_tag: bytes
    outcome: ProposalOutcome
    committer: int
    sender_type: SenderType
    referenced: list[bytes]
    message: PublicMessage

    @property
    def epoch(self) -> int:
        return self.context.epoch


@dataclass
class GroupObserver:
    """Follows one group from its PublicMessages."""

    suite: CipherSuite
    context: GroupContext
    tree: RatchetTree
    interim: bytes
    confirmation_tag: bytes
    group_info_extensions: list[Extension] = field(default_factory=list)
    signer: int = 0
    group_info_signature: bytes = b""
    proposals: dict[bytes, CachedProposal] = field(default_factory=dict)
    app_components: Mapping[int, AppComponentApply] = field(default_factory=dict)
    tree_in_group_info: bool = False

    # ------------------------------------------------------------ creation

    @classmethod
    def from_group_info(
        cls,
        group_info: GroupInfo | MLSMessage | bytes,
        ratchet_tree: Sequence[Node | None] | None = None,
        *,
        app_components: Mapping[int, AppComponentApply] | None = None,
    ) -> GroupObserver:
        """Start following a group from a signed GroupInfo and its tree."""
        if isinstance(group_info, bytes):
            group_info = MLSMessage.decode(group_info)
        if isinstance(group_info, MLSMessage):
            if group_info.wire_format != WireFormat.group_info:
                raise MLSError("expected a GroupInfo")
            gi: GroupInfo = group_info.body
        else:
            gi = group_info
        suite = get_suite(gi.group_context.cipher_suite)
        raw = gi.extension(ExtensionType.ratchet_tree)
        tree = tree_from_group_info(suite, gi, ratchet_tree)
        signer = tree.leaf(gi.signer) if gi.signer < tree.n_leaves else None
        if signer is None or not verify_group_info(suite, gi, signer.signature_key):
            raise ValidationError("invalid GroupInfo signature")
        if tree.tree_hash() != gi.group_context.tree_hash:
            raise ValidationError("ratchet tree does not match the GroupContext tree hash")
        problems = tree_validation.validate(tree, gi.group_context.group_id)
        if problems:
            raise ValidationError(f"invalid ratchet tree: {problems[0]}")
        ctx = gi.group_context
        interim = framing.interim_transcript_hash(suite, ctx.confirmed_transcript_hash, gi.confirmation_tag)
        return cls(
            suite=suite,
            context=ctx,
            tree=tree,
            interim=interim,
            confirmation_tag=gi.confirmation_tag,
            group_info_extensions=[e for e in gi.extensions if e.extension_type != ExtensionType.ratchet_tree],
            signer=gi.signer,
            group_info_signature=gi.signature,
            app_components=dict(app_components or {}),
            tree_in_group_info=raw is not None,
        )

    # ------------------------------------------------------------ accessors

    @property
    def epoch(self) -> int:
        return self.context.epoch

    @property
    def group_id(self) -> bytes:
        return self.context.group_id

    @property
    def tree_hash(self) -> bytes:
        return self.context.tree_hash

    def ratchet_tree(self) -> list[Node | None]:
        return self.tree.to_nodes()

    def pending_proposals(self) -> list[CachedProposal]:
        return list(self.proposals.values())

    # ------------------------------------------------------------ messages

    def _public(self, message: MLSMessage | PublicMessage | bytes) -> PublicMessage:
        if isinstance(message, bytes):
            message = MLSMessage.decode(message)
        if isinstance(message, MLSMessage):
            if message.wire_format != WireFormat.public_message:
                raise MLSError("the hub can only follow PublicMessage handshakes")
            message = message.body
        if not isinstance(message, PublicMessage):
            raise MLSError("expected a PublicMessage")
        c = message.content
        if c.group_id != self.context.group_id:
            raise MLSError("message for another group")
        if c.epoch != self.context.epoch:
            raise WrongEpochError(
                f"message epoch {c.epoch}, group epoch {self.context.epoch}", self.context.epoch, c.epoch
            )
        return message

    def _verify(self, pm: PublicMessage) -> AuthenticatedContent:
        ac = AuthenticatedContent(WireFormat.public_message, pm.content, pm.auth)
        key = self._signature_key(pm.content)
        if not framing.verify_content(self.suite, key, ac, self.context.encode()):
            raise MLSError("invalid signature", "badSignature")
        return ac

    def _signature_key(self, c: FramedContent) -> bytes:
        return sender_signature_key(self.tree, self.context.extensions, c)

    def process_proposal(self, message: MLSMessage | PublicMessage | bytes) -> CachedProposal:
        """Validate a proposal and add it to this epoch's cache."""
        pm = self._public(message)
        c = pm.content
        if c.content_type != ContentType.proposal or c.proposal is None:
            raise MLSError("not a proposal")
        ac = self._verify(pm)
        check_proposal_sender(c.proposal, c.sender, self.context.extensions, self.tree)
        ref = self.suite.make_proposal_ref(ac.encode())
        if ref in self.proposals:
            raise ReplayError("proposal already received this epoch")
        cp = CachedProposal(ref, c.proposal, c.sender)
        self.proposals[ref] = cp
        return cp

    def stage_commit(self, message: MLSMessage | PublicMessage | bytes, *, now_s: int | None = None) -> ObservedCommit:
        """Validate a commit fully (as far as public data allows); nothing changes."""
        pm = self._public(message)
        c = pm.content
        if c.content_type != ContentType.commit or c.commit is None:
            raise MLSError("not a commit")
        sender = c.sender
        if sender.sender_type not in (SenderType.member, SenderType.new_member_commit):
            raise MLSError("only members and new members can commit")
        ac = self._verify(pm)
        commit = c.commit
        external = sender.sender_type == SenderType.new_member_commit
        resolved = resolve_commit(commit, sender, self.proposals)
        outcome = apply_proposals(
            self.suite, self.group_id, self.context.extensions, self.tree, resolved, sender,
            external_commit=external, now_s=now_s, app_components=self.app_components,
        )
        if outcome.path_required and commit.path is None:
            raise ProposalError("commit needs an UpdatePath for its proposals")
        tree = outcome.tree
        committer = sender.leaf_index
        if external:
            assert commit.path is not None
            committer = tree.add_leaf(commit.path.leaf_node)
        assert committer is not None
        if commit.path is not None:
            try:
                validate_leaf_node(
                    self.suite, commit.path.leaf_node, LeafNodeSource.commit, group_id=self.group_id,
                    leaf_index=committer, group_extensions=outcome.extensions,
                    members=tree, replacing=committer, now_s=now_s,
                )
                apply_update_path_public(tree, committer, commit.path, {i for i, _ in outcome.added})
            except ValidationError as e:
                raise MLSError(f"commit path: {e}", "invalidPath") from None
            except ValueError as e:
                raise MLSError(f"cannot apply UpdatePath: {e}", "invalidPath") from None
        confirmed = framing.confirmed_transcript_hash(self.suite, self.interim, ac)
        new_ctx = replace(
            self.context,
            epoch=self.context.epoch + 1,
            tree_hash=tree.tree_hash(),
            confirmed_transcript_hash=confirmed,
            extensions=outcome.extensions,
        )
        tag = pm.auth.confirmation_tag
        assert tag is not None
        interim = framing.interim_transcript_hash(self.suite, confirmed, tag)
        referenced = [r.reference for r in commit.proposals if r.reference is not None]
        return ObservedCommit(new_ctx, tree, interim, tag, outcome, committer, sender.sender_type, referenced, pm)

    def merge(self, staged: ObservedCommit, partial_group_info: PartialGroupInfo | None = None) -> None:
        """Make a staged commit current. With the committer's PartialGroupInfo,
        the observer can afterwards serve a signed GroupInfo for the new epoch."""
        if staged.context.epoch != self.context.epoch + 1:
            raise MLSError("staged commit is not for the next epoch")
        gi_exts: list[Extension] = []
        sig = b""
        with_tree = False
        if partial_group_info is not None:
            gi_exts, with_tree = self._check_partial(staged, partial_group_info)
            sig = partial_group_info.signature
        self.context = staged.context
        self.tree = staged.tree
        self.interim = staged.interim
        self.confirmation_tag = staged.confirmation_tag
        self.signer = staged.committer
        self.group_info_extensions = gi_exts
        self.group_info_signature = sig
        self.tree_in_group_info = with_tree
        self.proposals = {}

    def _check_partial(self, staged: ObservedCommit, pgi: PartialGroupInfo) -> tuple[list[Extension], bool]:
        if any(e.extension_type == ExtensionType.ratchet_tree for e in pgi.group_info_extensions):
            raise ValidationError("PartialGroupInfo extensions must not carry ratchet_tree")
        with_tree = pgi.ratchet_tree_presence in (RatchetTreePresence.present, RatchetTreePresence.added)
        gi = self._build_group_info(
            staged.context, staged.tree, staged.confirmation_tag, staged.committer,
            list(pgi.group_info_extensions), pgi.signature, with_tree,
        )
        signer = staged.tree.leaf(staged.committer)
        assert signer is not None
        if not verify_group_info(self.suite, gi, signer.signature_key):
            raise ValidationError("PartialGroupInfo signature does not verify over the rebuilt GroupInfo")
        return list(pgi.group_info_extensions), with_tree

    def _build_group_info(
        self,
        context: GroupContext,
        tree: RatchetTree,
        tag: bytes,
        signer: int,
        exts: list[Extension],
        signature: bytes,
        with_tree: bool,
    ) -> GroupInfo:
        all_exts = list(exts)
        if with_tree:
            all_exts.insert(0, Extension(ExtensionType.ratchet_tree, RatchetTreeExt(tree.to_nodes()).encode()))
        return GroupInfo(context, all_exts, tag, signer, signature)

    def group_info(self) -> GroupInfo:
        """The signed GroupInfo of the current epoch, rebuilt from the last
        PartialGroupInfo (raises if the committer did not provide one)."""
        if not self.group_info_signature:
            raise MLSError("no GroupInfo signature for this epoch")
        return self._build_group_info(
            self.context, self.tree, self.confirmation_tag, self.signer,
            self.group_info_extensions, self.group_info_signature, self.tree_in_group_info,
        )


def partial_group_info(group_info: GroupInfo, previous_had_tree: bool = False) -> PartialGroupInfo:
    """What a committer sends to the hub instead of its full GroupInfo."""
    has_tree = group_info.extension(ExtensionType.ratchet_tree) is not None
    if has_tree:
        presence = RatchetTreePresence.present if previous_had_tree else RatchetTreePresence.added
    else:
        presence = RatchetTreePresence.removed if previous_had_tree else RatchetTreePresence.no_ratchet_tree
    exts = [e for e in group_info.extensions if e.extension_type != ExtensionType.ratchet_tree]
    return PartialGroupInfo(presence, exts, group_info.signature)


def external_proposal(
    suite: CipherSuite,
    group_id: bytes,
    epoch: int,
    sender_index: int,
    signature_priv: bytes,
    proposal: Proposal,
    authenticated_data: bytes = b"",
) -> MLSMessage:
    """A proposal from an external sender (e.g. the hub removing the clients of
    a deleted user), signed with a key listed in ``external_senders``."""
    content = FramedContent(
        group_id, epoch, Sender.external(sender_index), authenticated_data,
        ContentType.proposal, None, proposal, None,
    )
    auth = framing.sign_content(suite, signature_priv, WireFormat.public_message, content, None)
    return MLSMessage.wrap(PublicMessage(content, auth, None))
