"""An MLS group as one member sees it (RFC 9420 s.8-s.12), with staged processing.

The group's per-epoch state is one value (:class:`EpochState`). Handling an
incoming commit computes a *new* EpochState next to the current one and hands
it back as a :class:`StagedCommit`; nothing the group holds changes until the
caller merges it. That gives the two properties the simulator relies on:

* a rejected commit leaves no trace (validate, stage, then commit in one step);
* a member whose own commit lost a race discards its pending commit, processes
  the winner and can commit again from the same epoch.

Randomness is injected (``rng``), time is an argument (``now_s``). The group
holds no I/O and owns no clock.

Why ~1,200 lines and a 47-method :class:`Group`: RFC 9420's member
operations (create, join by Welcome or external commit, every proposal type,
commit, process, the secret tree's protect/unprotect, exporters, past
epochs) all read and stage the same EpochState; they are kept on one class
so that the validate-stage-merge discipline lives in one place. The parts
that do not need the member's state are elsewhere: proposal validation
(:mod:`~mimisim.mls.proposals`), tree validation
(:mod:`~mimisim.mls.tree_validation`), framing, the key schedule and TreeKEM.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TypeVar

from mimisim import sharing
from mimisim.mls import framing, tree_validation
from mimisim.mls.crypto import CipherSuite, CryptoError, RandomSource, get_suite
from mimisim.mls.errors import MLSError, ProposalError, ReplayError, ValidationError, WrongEpochError
from mimisim.mls.keypackage import (
    KeyPackagePrivate,
    resign_leaf,
    sign_group_info,
    sign_leaf_node,
    tree_from_group_info,
    tree_source,
    verify_group_info,
)
from mimisim.mls.keyschedule import (
    EpochSecrets,
    SecretTree,
    compute_psk_secret,
    derive_epoch_secrets,
    derive_joiner_secret,
    mls_exporter,
    welcome_key_nonce,
)
from mimisim.mls.proposals import (
    AppComponentApply,
    CachedProposal,
    ProposalOutcome,
    ResolvedProposal,
    apply_proposals,
    check_proposal_sender,
    resolve_commit,
    sender_signature_key,
)
from mimisim.mls.structs import (
    DEFAULT_PROPOSAL_TYPES,
    MLS10,
    Add,
    AuthData,
    AuthenticatedContent,
    Commit,
    ContentType,
    Credential,
    EncryptedGroupSecrets,
    Extension,
    ExtensionType,
    ExternalInit,
    ExternalPub,
    FramedContent,
    GroupContext,
    GroupInfo,
    GroupSecrets,
    HPKECiphertext,
    KeyPackage,
    LeafNode,
    LeafNodeSource,
    MLSMessage,
    Node,
    PathSecret,
    PreSharedKey,
    PreSharedKeyID,
    PrivateMessage,
    Proposal,
    ProposalOrRef,
    ProposalType,
    PSKType,
    PublicMessage,
    RatchetTreeExt,
    ReInit,
    Remove,
    ResumptionPSKUsage,
    SelfRemove,
    Sender,
    SenderType,
    Update,
    Welcome,
    WireFormat,
)
from mimisim.mls.tree import RatchetTree
from mimisim.mls.treekem import (
    TreePrivate,
    apply_update_path,
    create_update_path,
    path_secret_for_joiner,
    private_from_joiner_path_secret,
)
from mimisim.mls.validation import validate_leaf_node

# ---------------------------------------------------------------- configuration


@dataclass
class GroupConfig:
    """Choices a member makes that peers do not need to agree on."""

    handshake_wire_format: WireFormat = WireFormat.public_message
    # PrivateMessage padding: pad the content to a multiple of this many bytes (0: none).
    padding_block: int = 0
    # How many past epochs' secret trees to keep for late application messages.
    max_past_epochs: int = 2
    # How many past resumption PSKs to keep (for PSK proposals that name old epochs).
    max_resumption_psks: int = 8
    # How many past epochs' whole states to keep so that a commit the
    # delivery service accepted instead of the one merged can still be
    # processed (Group.stage_fork_commit). 0, the default, keeps none:
    # a kept state holds that epoch's init secret and path keys, so keeping
    # it trades forward secrecy of the kept epochs for recovering from a
    # delivery service that lost an accepted commit (docs/mimi-choices.md,
    # "Lagging failover").
    max_fork_epochs: int = 0
    # AppDataUpdate semantics per component id (default: replace).
    app_components: Mapping[int, AppComponentApply] = field(default_factory=dict)


@dataclass
class PSKStore:
    """External PSKs this client knows, by psk_id."""

    external: dict[bytes, bytes] = field(default_factory=dict)


# ---------------------------------------------------------------- epoch state


@dataclass
class EpochState:
    """Everything that changes together when an epoch changes."""

    suite: CipherSuite
    context: GroupContext
    context_bytes: bytes
    tree: RatchetTree
    private: TreePrivate
    own_leaf: int
    secrets: EpochSecrets
    interim: bytes
    secret_tree: SecretTree
    proposals: dict[bytes, CachedProposal] = field(default_factory=dict)
    # Proposals this member sent this epoch (their refs), in order.
    own_proposals: list[bytes] = field(default_factory=list)
    # Private keys of this member's own pending Update proposals, by public key.
    update_keys: dict[bytes, bytes] = field(default_factory=dict)

    @property
    def epoch(self) -> int:
        return self.context.epoch


def _make_epoch(
    suite: CipherSuite,
    context: GroupContext,
    tree: RatchetTree,
    private: TreePrivate,
    own_leaf: int,
    secrets: EpochSecrets,
    confirmation_tag: bytes,
) -> EpochState:
    interim = framing.interim_transcript_hash(suite, context.confirmed_transcript_hash, confirmation_tag)
    return EpochState(
        suite=suite,
        context=context,
        context_bytes=context.encode(),
        tree=tree,
        private=private,
        own_leaf=own_leaf,
        secrets=secrets,
        interim=interim,
        secret_tree=SecretTree(suite, secrets.encryption_secret, tree.n_leaves),
    )


@dataclass
class _PastEpoch:
    """What is kept of an old epoch: enough to read late application messages."""

    context_bytes: bytes
    tree: RatchetTree
    secret_tree: SecretTree
    sender_data_secret: bytes


# ---------------------------------------------------------------- results


@dataclass
class ApplicationMessage:
    sender: int
    epoch: int
    data: bytes
    authenticated_data: bytes


@dataclass
class ProposalReceived:
    ref: bytes
    proposal: Proposal
    sender: Sender


@dataclass
class StagedCommit:
    """A validated commit not yet merged. ``state`` is the next epoch's state,
    ``None`` when the commit removes this member."""

    state: EpochState | None
    epoch: int
    sender: Sender
    outcome: ProposalOutcome
    message_bytes: bytes
    own: bool = False
    removed_self: bool = False
    reinit: bool = False


@dataclass
class CommitOutput:
    """What :meth:`Group.commit` produces: the message to send and its side products."""

    message: MLSMessage
    welcome: MLSMessage | None
    group_info: GroupInfo
    staged: StagedCommit
    # New members' KeyPackageRefs and leaf indices, for Welcome routing.
    added: list[tuple[int, bytes]] = field(default_factory=list)
    # Pending proposals the commit left out because they were invalid for the
    # group (RFC 9420 s.12.2): (proposal ref, why), in the order found.
    left_out: list[tuple[bytes, str]] = field(default_factory=list)


Processed = ApplicationMessage | ProposalReceived | StagedCommit


# ---------------------------------------------------------------- the group


class Group:
    """One member's view of one MLS group."""

    def __init__(
        self,
        state: EpochState,
        signature_priv: bytes,
        rng: RandomSource,
        *,
        psks: PSKStore | None = None,
        config: GroupConfig | None = None,
    ) -> None:
        self.state = state
        self.signature_priv = signature_priv
        self.rng = rng
        self.psks = psks or PSKStore()
        self.config = config or GroupConfig()
        self.pending: StagedCommit | None = None
        self.active = True
        # Set once a ReInit commit is merged: the parameters of the successor group.
        self.reinit: ReInit | None = None
        self._past: dict[int, _PastEpoch] = {}
        # epoch -> (that epoch's state, the commit merged to leave it), the
        # last config.max_fork_epochs of them: see stage_fork_commit.
        self._forkable: dict[int, tuple[EpochState, bytes]] = {}
        self._resumption: dict[tuple[bytes, int], bytes] = {
            (state.context.group_id, state.epoch): state.secrets.resumption_psk
        }

    # ------------------------------------------------------------ accessors

    @property
    def suite(self) -> CipherSuite:
        return self.state.suite

    @property
    def group_id(self) -> bytes:
        return self.state.context.group_id

    @property
    def epoch(self) -> int:
        return self.state.context.epoch

    @property
    def context(self) -> GroupContext:
        return self.state.context

    @property
    def tree(self) -> RatchetTree:
        return self.state.tree

    @property
    def own_leaf(self) -> int:
        return self.state.own_leaf

    @property
    def epoch_authenticator(self) -> bytes:
        return self.state.secrets.epoch_authenticator

    @property
    def tree_hash(self) -> bytes:
        return self.state.context.tree_hash

    @property
    def extensions(self) -> list[Extension]:
        return self.state.context.extensions

    def members(self) -> list[tuple[int, LeafNode]]:
        t = self.state.tree
        return t.members()

    def export_secret(self, label: bytes, context: bytes, length: int) -> bytes:
        return mls_exporter(self.suite, self.state.secrets.exporter_secret, label, context, length)

    # ------------------------------------------------------------ creation

    @classmethod
    def create(
        cls,
        suite: CipherSuite | int,
        group_id: bytes,
        key_package: KeyPackage,
        kp_private: KeyPackagePrivate,
        rng: RandomSource,
        *,
        extensions: Sequence[Extension] = (),
        psks: PSKStore | None = None,
        config: GroupConfig | None = None,
    ) -> Group:
        """A one-member group at epoch 0 (RFC 9420 s.11), the creator at leaf 0."""
        suite = get_suite(suite) if isinstance(suite, int) else suite
        validate_leaf_node(suite, key_package.leaf_node, LeafNodeSource.key_package, group_extensions=extensions)
        tree = RatchetTree.from_nodes(suite, [_leaf_node(key_package.leaf_node)])
        context = GroupContext(MLS10, suite.suite_id, group_id, 0, tree.tree_hash(), b"", list(extensions))
        gc = context.encode()
        init_secret = rng.random_bytes(suite.hash_len)
        joiner = derive_joiner_secret(suite, init_secret, bytes(suite.hash_len), gc)
        secrets = derive_epoch_secrets(suite, joiner, bytes(suite.hash_len), gc)
        tag = framing.confirmation_tag(suite, secrets.confirmation_key, b"")
        private = TreePrivate(0, kp_private.encryption_priv, {})
        state = _make_epoch(suite, context, tree, private, 0, secrets, tag)
        return cls(state, kp_private.signature_priv, rng, psks=psks, config=config)

    @classmethod
    def join(
        cls,
        welcome: Welcome | MLSMessage | bytes,
        key_package: KeyPackage,
        kp_private: KeyPackagePrivate,
        rng: RandomSource,
        *,
        ratchet_tree: Sequence[Node | None] | None = None,
        psks: PSKStore | None = None,
        config: GroupConfig | None = None,
        resumption_psks: Mapping[tuple[bytes, int], bytes] | None = None,
        now_s: int | None = None,
    ) -> Group:
        """Join from a Welcome (RFC 9420 s.12.4.3.1). Raises MLSError / DecodeError."""
        welcome = _as_body(welcome, Welcome, WireFormat.welcome)
        suite = get_suite(key_package.cipher_suite)
        if welcome.cipher_suite != suite.suite_id:
            raise ValidationError("Welcome cipher suite differs from the KeyPackage's")
        kp_ref = suite.make_key_package_ref(key_package.encode())
        mine = [s for s in welcome.secrets if s.new_member == kp_ref]
        if len(mine) != 1:
            raise ValidationError("Welcome has no (or several) entries for this KeyPackage")
        egs = mine[0].encrypted_group_secrets
        try:
            gs_bytes = suite.decrypt_with_label(
                kp_private.init_priv, b"Welcome", welcome.encrypted_group_info, egs.kem_output, egs.ciphertext
            )
        except CryptoError as e:
            raise ValidationError(f"cannot decrypt GroupSecrets: {e}") from None
        gs = GroupSecrets.decode(gs_bytes)
        psk_store = psks or PSKStore()
        resumption = dict(resumption_psks or {})
        psk_values = []
        for pid in gs.psks:
            psk_values.append((pid, _lookup_psk(pid, psk_store, resumption)))
        psk_secret = compute_psk_secret(suite, psk_values)
        welcome_secret = suite.derive_secret(suite.kdf_extract(gs.joiner_secret, psk_secret), b"welcome")
        key, nonce = welcome_key_nonce(suite, welcome_secret)
        try:
            gi_bytes = suite.aead_open(key, nonce, b"", welcome.encrypted_group_info)
        except CryptoError:
            raise ValidationError("cannot decrypt the Welcome's GroupInfo") from None
        gi = GroupInfo.decode(gi_bytes)
        ctx = gi.group_context
        if ctx.cipher_suite != suite.suite_id or ctx.version != MLS10:
            raise ValidationError("GroupInfo suite/version mismatch")
        source = tree_source(gi, ratchet_tree)
        known = _validated_tree(suite, ctx.group_id, ctx.tree_hash, source)
        tree = known.copy() if known is not None else tree_from_group_info(suite, gi, ratchet_tree)
        signer = tree.leaf(gi.signer) if gi.signer < tree.n_leaves else None
        if signer is None:
            raise ValidationError("GroupInfo signer is not a member")
        if not verify_group_info(suite, gi, signer.signature_key):
            raise ValidationError("invalid GroupInfo signature")
        if known is None:
            if tree.tree_hash() != ctx.tree_hash:
                raise ValidationError("ratchet tree does not match the GroupContext tree hash")
            problems = tree_validation.validate(tree, ctx.group_id)
            if problems:
                raise ValidationError(f"invalid ratchet tree: {problems[0]}")
            _remember_tree(suite, ctx.group_id, ctx.tree_hash, source, tree)
        own_leaf = key_package.leaf_node
        own_enc, own_bytes = own_leaf.encryption_key, own_leaf.encode()
        # The key comparison first (cheap, and implied by equal encodings):
        # encoding every leaf of a 1,000-member tree cost each joiner ~0.1 s.
        own = tree.find_leaf(lambda leaf: leaf.encryption_key == own_enc and leaf.encode() == own_bytes)
        if own is None:
            raise ValidationError("own leaf not found in the ratchet tree")
        if gs.path_secret is not None:
            private = private_from_joiner_path_secret(
                tree, own, gi.signer, kp_private.encryption_priv, gs.path_secret.path_secret
            )
        else:
            private = TreePrivate(own, kp_private.encryption_priv, {})
        gc = ctx.encode()
        secrets = derive_epoch_secrets(suite, gs.joiner_secret, psk_secret, gc)
        tag = framing.confirmation_tag(suite, secrets.confirmation_key, ctx.confirmed_transcript_hash)
        if tag != gi.confirmation_tag:
            raise ValidationError("GroupInfo confirmation tag does not verify")
        state = _make_epoch(suite, ctx, tree, private, own, secrets, tag)
        group = cls(state, kp_private.signature_priv, rng, psks=psk_store, config=config)
        group._resumption.update(resumption)
        return group

    @classmethod
    def external_join(
        cls,
        group_info: GroupInfo | MLSMessage | bytes,
        credential: Credential,
        signature_priv: bytes,
        rng: RandomSource,
        *,
        ratchet_tree: Sequence[Node | None] | None = None,
        resync_leaf: int | None = None,
        self_removes: Sequence[MLSMessage] = (),
        psks: Sequence[PreSharedKeyID] = (),
        psk_store: PSKStore | None = None,
        leaf_extensions: Sequence[Extension] = (),
        capabilities: object = None,
        config: GroupConfig | None = None,
        authenticated_data: bytes = b"",
    ) -> tuple[Group, MLSMessage]:
        """Join by external commit (RFC 9420 s.12.4.3.2), or resync when ``resync_leaf``
        names this client's old leaf. Returns the would-be group and the commit;
        the group is only valid once the hub accepts the commit.

        ``self_removes`` are pending SelfRemove proposals (PublicMessages) that the
        extensions draft requires an external joiner to include by reference.
        """
        gi = _as_body(group_info, GroupInfo, WireFormat.group_info)
        suite = get_suite(gi.group_context.cipher_suite)
        tree = tree_from_group_info(suite, gi, ratchet_tree)
        signer = tree.leaf(gi.signer) if gi.signer < tree.n_leaves else None
        if signer is None or not verify_group_info(suite, gi, signer.signature_key):
            raise ValidationError("invalid GroupInfo signature")
        if tree.tree_hash() != gi.group_context.tree_hash:
            raise ValidationError("ratchet tree does not match the GroupContext tree hash")
        ext_pub_raw = gi.extension(ExtensionType.external_pub)
        if ext_pub_raw is None:
            raise ValidationError("GroupInfo has no external_pub extension")
        external_pub = ExternalPub.decode(ext_pub_raw).external_pub
        kem_output, init_secret = suite.external_init_sender(external_pub, rng)
        ctx = gi.group_context
        interim = framing.interim_transcript_hash(suite, ctx.confirmed_transcript_hash, gi.confirmation_tag)

        proposals: list[ProposalOrRef] = [ProposalOrRef.by_value(Proposal.of(ExternalInit(kem_output)))]
        resolved = [ResolvedProposal(Proposal.of(ExternalInit(kem_output)), Sender.new_member_commit(), None)]
        if resync_leaf is not None:
            rm = Proposal.of(Remove(resync_leaf))
            proposals.append(ProposalOrRef.by_value(rm))
            resolved.append(ResolvedProposal(rm, Sender.new_member_commit(), None))
        for pid in psks:
            pp = Proposal.of(PreSharedKey(pid))
            proposals.append(ProposalOrRef.by_value(pp))
            resolved.append(ResolvedProposal(pp, Sender.new_member_commit(), None))
        cache: dict[bytes, CachedProposal] = {}
        for m in self_removes:
            pm = _as_body(m, PublicMessage, WireFormat.public_message)
            ac = AuthenticatedContent(WireFormat.public_message, pm.content, pm.auth)
            sender_leaf = tree.leaf(pm.content.sender.leaf_index or 0)
            if (
                pm.content.proposal is None
                or pm.content.proposal.proposal_type != ProposalType.self_remove
                or pm.content.epoch != ctx.epoch
                or sender_leaf is None
                or not framing.verify_content(suite, sender_leaf.signature_key, ac, ctx.encode())
            ):
                raise ValidationError("not a valid pending SelfRemove of this epoch")
            ref = suite.make_proposal_ref(ac.encode())
            cache[ref] = CachedProposal(ref, pm.content.proposal, pm.content.sender)
            proposals.append(ProposalOrRef.by_ref(ref))
            resolved.append(ResolvedProposal(pm.content.proposal, pm.content.sender, ref))

        psk_store = psk_store or PSKStore()
        outcome = apply_proposals(
            suite, ctx.group_id, ctx.extensions, tree, resolved, Sender.new_member_commit(),
            external_commit=True,
            app_components=(config or GroupConfig()).app_components,
        )
        new_tree = outcome.tree
        enc_priv, enc_pub = suite.generate_hpke_key_pair(rng)
        from mimisim.mls.keypackage import default_capabilities

        caps = capabilities or default_capabilities(suite)
        placeholder = sign_leaf_node(
            suite, signature_priv, encryption_key=enc_pub, credential=credential, capabilities=caps,  # type: ignore[arg-type]
            source=LeafNodeSource.commit, parent_hash=b"", extensions=leaf_extensions,
            group_id=ctx.group_id, leaf_index=0,
        )
        own_leaf = new_tree.add_leaf(placeholder)
        built = _build_commit_path(
            suite=suite,
            old_context=ctx,
            interim=interim,
            outcome=outcome,
            tree=new_tree,
            own_leaf=own_leaf,
            private=TreePrivate(own_leaf, enc_priv, {}),
            signature_priv=signature_priv,
            proposals=proposals,
            sender=Sender.new_member_commit(),
            init_secret=init_secret,
            psk_values=[(p, _lookup_psk(p, psk_store, {})) for p in outcome.psks],
            rng=rng,
            authenticated_data=authenticated_data,
            leaf_template=placeholder,
            joiners=[],
        )
        assert built.staged.state is not None
        group = cls(built.staged.state, signature_priv, rng, psks=psk_store, config=config)
        return group, built.message

    # ------------------------------------------------------------ proposals

    def _frame(self, content: FramedContent) -> tuple[MLSMessage, AuthenticatedContent]:
        """Sign and frame handshake or application content for this epoch."""
        st = self.state
        wf = (
            WireFormat.private_message
            if content.content_type == ContentType.application
            else self.config.handshake_wire_format
        )
        auth = framing.sign_content(st.suite, self.signature_priv, wf, content, st.context_bytes)
        ac = AuthenticatedContent(wf, content, auth)
        return self._wrap(ac), ac

    def _wrap(self, ac: AuthenticatedContent) -> MLSMessage:
        st = self.state
        if ac.wire_format == WireFormat.public_message:
            return MLSMessage.wrap(
                framing.to_public_message(st.suite, ac, st.secrets.membership_key, st.context_bytes)
            )
        return MLSMessage.wrap(
            framing.encrypt_private(
                st.suite, ac, st.secret_tree, st.secrets.sender_data_secret, self.rng, self._padding(ac)
            )
        )

    def _padding(self, ac: AuthenticatedContent) -> int:
        block = self.config.padding_block
        if block <= 0:
            return 0
        size = len(ac.content.encode())
        return (-size) % block

    def propose(self, proposal: Proposal, authenticated_data: bytes = b"") -> MLSMessage:
        """Send a proposal; it is cached here too so a commit can reference it."""
        self._check_active()
        st = self.state
        if not self.supports_proposal(proposal.proposal_type):
            raise ProposalError(f"not every member supports proposal type {proposal.proposal_type.name}")
        content = FramedContent(
            st.context.group_id, st.epoch, Sender.member(st.own_leaf), authenticated_data,
            ContentType.proposal, None, proposal, None,
        )
        msg, ac = self._frame(content)
        ref = st.suite.make_proposal_ref(ac.encode())
        st.proposals[ref] = CachedProposal(ref, proposal, content.sender)
        st.own_proposals.append(ref)
        return msg

    def propose_add(self, key_package: KeyPackage) -> MLSMessage:
        return self.propose(Proposal.of(Add(key_package)))

    def propose_remove(self, leaf_index: int) -> MLSMessage:
        return self.propose(Proposal.of(Remove(leaf_index)))

    def supports_proposal(self, proposal_type: int) -> bool:
        """Every member lists ``proposal_type`` in its capabilities (always
        true of RFC 9420's default types 1-7). A non-default proposal that a
        member does not support makes the commit carrying it invalid (RFC 9420
        s.12.2) and, for an implementation that does not know the type, the
        proposal itself undecodable; [EXT] SelfRemove: "MUST NOT be sent
        unless all members support it"."""
        if proposal_type in DEFAULT_PROPOSAL_TYPES:
            return True
        return all(proposal_type in props for _, props, _ in self.state.tree.leaf_capability_counts())

    def propose_self_remove(self) -> MLSMessage:
        """A SelfRemove ([EXT]); :class:`ProposalError` unless every member supports it."""
        return self.propose(Proposal.of(SelfRemove()))

    def propose_leave(self) -> MLSMessage:
        """Ask to leave: a SelfRemove when every member supports it, else the
        fallback, a Remove of our own leaf (RFC 9420 s.12.1.3 does not forbid a
        member to propose its own removal; another member commits it either
        way). docs/mls-choices.md, "SelfRemove and AppDataUpdate"."""
        if self.supports_proposal(ProposalType.self_remove):
            return self.propose_self_remove()
        return self.propose_remove(self.state.own_leaf)

    def propose_update(self, *, leaf_extensions: Sequence[Extension] | None = None) -> MLSMessage:
        st = self.state
        priv, pub = st.suite.generate_hpke_key_pair(self.rng)
        old = st.tree.leaf(st.own_leaf)
        assert old is not None
        leaf = resign_leaf(
            st.suite, self.signature_priv, old, encryption_key=pub, source=LeafNodeSource.update,
            lifetime=None, parent_hash=None,
            extensions=list(leaf_extensions) if leaf_extensions is not None else old.extensions,
            group_id=st.context.group_id, leaf_index=st.own_leaf,
        )
        msg = self.propose(Proposal.of(Update(leaf)))
        st.update_keys[pub] = priv
        return msg

    def propose_external_psk(self, psk_id: bytes) -> MLSMessage:
        if psk_id not in self.psks.external:
            raise MLSError("unknown external PSK")
        pid = PreSharedKeyID.external(psk_id, self.rng.random_bytes(self.suite.hash_len))
        return self.propose(Proposal.of(PreSharedKey(pid)))

    def resumption_psk_id(self, epoch: int) -> PreSharedKeyID:
        return PreSharedKeyID.resumption(
            ResumptionPSKUsage.application, self.group_id, epoch, self.rng.random_bytes(self.suite.hash_len)
        )

    # ------------------------------------------------------------ commits

    def commit(
        self,
        proposals: Sequence[Proposal] = (),
        *,
        include_pending: bool = True,
        path: bool | None = None,
        authenticated_data: bytes = b"",
        ratchet_tree_in_welcome: bool = True,
        external_pub: bool = True,
        now_s: int | None = None,
        _reinit_usage: ResumptionPSKUsage | None = None,
    ) -> CommitOutput:
        """Create a commit of ``proposals`` (by value) plus the pending ones (by
        reference). The group does not change: the result is pending until
        :meth:`merge_pending_commit` (after the hub accepted it) or
        :meth:`discard_pending_commit` (it lost a race)."""
        self._check_active()
        st = self.state
        suite = st.suite
        me = Sender.member(st.own_leaf)
        por: list[ProposalOrRef] = []
        resolved: list[ResolvedProposal] = []
        pending: list[tuple[bytes, CachedProposal]] = self._committable(st) if include_pending else []
        left_out: list[tuple[bytes, str]] = []
        while True:
            por = [ProposalOrRef.by_ref(ref) for ref, _ in pending]
            resolved = [ResolvedProposal(cp.proposal, cp.sender, ref) for ref, cp in pending]
            for p in proposals:
                por.append(ProposalOrRef.by_value(p))
                resolved.append(ResolvedProposal(p, me, None))
            try:
                outcome = apply_proposals(
                    suite, st.context.group_id, st.context.extensions, st.tree, resolved, me,
                    now_s=now_s, app_components=self.config.app_components, psk_known=self._psk_known,
                    reinit_usage=_reinit_usage if self.epoch == 0 else None,
                )
                break
            except ProposalError as e:
                # RFC 9420 s.12.2: a committer leaves out pending proposals
                # that are invalid for the group rather than fail; the error
                # names them by reference. One invalid by-value proposal (the
                # caller's own) or an error naming none of the pending ones
                # is the caller's: raise it.
                bad = [ref for ref, _ in pending if ref in e.refs]
                if not bad:
                    raise
                left_out.extend((ref, str(e)) for ref in bad)
                pending = [(ref, cp) for ref, cp in pending if ref not in bad]
        if outcome.reinit is not None:
            path = False if path is None else path
        use_path = outcome.path_required or (path if path is not None else True)
        if outcome.path_required and path is False:
            raise ProposalError("these proposals require an UpdatePath")
        psk_values = [(p, self._psk_value(p)) for p in outcome.psks]
        joiners = [i for i, _ in outcome.added]
        old_leaf = st.tree.leaf(st.own_leaf)
        assert old_leaf is not None
        built = _build_commit_path(
            suite=suite,
            old_context=st.context,
            interim=st.interim,
            outcome=outcome,
            tree=outcome.tree,
            own_leaf=st.own_leaf,
            private=st.private.copy(),
            signature_priv=self.signature_priv,
            proposals=por,
            sender=me,
            init_secret=st.secrets.init_secret,
            psk_values=psk_values,
            rng=self.rng,
            authenticated_data=authenticated_data,
            leaf_template=old_leaf,
            joiners=joiners,
            use_path=use_path,
            wire_format=self.config.handshake_wire_format,
            frame=self,
        )
        staged = built.staged
        new = staged.state
        assert new is not None
        welcome = None
        added_refs: list[tuple[int, bytes]] = []
        gi_exts: list[Extension] = []
        if external_pub:
            gi_exts.append(
                Extension(ExtensionType.external_pub, ExternalPub(new.secrets.external_key_pair(suite)[1]).encode())
            )
        gi_plain = sign_group_info(
            suite, self.signature_priv, new.context, gi_exts, built.confirmation_tag, new.own_leaf
        )
        if outcome.added:
            w_exts = list(gi_exts)
            if ratchet_tree_in_welcome:
                w_exts.insert(0, Extension(ExtensionType.ratchet_tree, RatchetTreeExt(new.tree.to_nodes()).encode()))
            gi_welcome = sign_group_info(
                suite, self.signature_priv, new.context, w_exts, built.confirmation_tag, new.own_leaf
            )
            welcome, added_refs = _make_welcome(
                suite, gi_welcome, new.secrets.joiner_secret, new.secrets.welcome_secret,
                outcome.added, built.path_secrets, new.tree, new.own_leaf, psk_values, self.rng,
            )
        self.pending = staged
        return CommitOutput(built.message, welcome, gi_plain, staged, added_refs, left_out)

    def _committable(self, st: EpochState) -> list[tuple[bytes, CachedProposal]]:
        """Pending proposals a commit can include: drop those that would make the
        list invalid (our own Update, a Remove of us, a second action on a leaf)."""
        out = []
        touched: set[int] = set()
        for ref, cp in st.proposals.items():
            t = cp.proposal.proposal_type
            target: int | None = None
            if t == ProposalType.update:
                target = cp.sender.leaf_index
                if target == st.own_leaf:
                    continue
            elif t == ProposalType.self_remove:
                target = cp.sender.leaf_index
                if target == st.own_leaf:
                    continue
            elif t == ProposalType.remove:
                target = cp.proposal.body.removed
                if target == st.own_leaf:
                    continue
            if target is not None:
                if target in touched or st.tree.leaf(target) is None:
                    continue
                touched.add(target)
            out.append((ref, cp))
        return out

    def merge_pending_commit(self) -> None:
        if self.pending is None:
            raise MLSError("no pending commit")
        staged = self.pending
        self.pending = None
        self.merge(staged)

    def discard_pending_commit(self) -> None:
        self.pending = None

    def merge(self, staged: StagedCommit) -> None:
        """Make a staged commit's epoch current."""
        old = self.state
        if staged.removed_self or staged.state is None:
            self.active = False
            self.pending = None
            return
        if staged.state.context.epoch != old.epoch + 1:
            raise MLSError("staged commit is not for the next epoch")
        # The old epoch's tree is only looked up from now on (late messages,
        # a fork): its indexes go, which at 1,000 members is most of its memory.
        old.tree.drop_indexes()
        self._past[old.epoch] = _PastEpoch(
            old.context_bytes, old.tree, old.secret_tree, old.secrets.sender_data_secret
        )
        while len(self._past) > self.config.max_past_epochs:
            del self._past[min(self._past)]
        if self.config.max_fork_epochs > 0:
            self._forkable[old.epoch] = (old, staged.message_bytes)
            while len(self._forkable) > self.config.max_fork_epochs:
                del self._forkable[min(self._forkable)]
        self.state = staged.state
        self.pending = None
        if staged.outcome.reinit is not None:
            # RFC 9420 s.11.2: the old group is done; only the successor may be created.
            self.reinit = staged.outcome.reinit
        self._resumption[(self.group_id, self.epoch)] = self.state.secrets.resumption_psk
        while len(self._resumption) > self.config.max_resumption_psks:
            del self._resumption[min(self._resumption, key=lambda k: k[1])]

    # ------------------------------------------------------------ forks

    def merged_commit(self, epoch: int) -> bytes | None:
        """The commit this member merged to leave past ``epoch``, while that
        epoch's state is kept (``config.max_fork_epochs``), else None."""
        kept = self._forkable.get(epoch)
        return kept[1] if kept is not None else None

    def stage_fork_commit(self, message: MLSMessage | bytes, *, now_s: int | None = None) -> StagedCommit:
        """Validate a commit for a past epoch whose state is kept, against
        that state, without changing anything: the delivery service accepted
        it instead of the commit this member merged (a hub that failed over
        to a standby which had not received that commit). Raises
        WrongEpochError when the epoch's state is not kept, MLSError (and
        subclasses) when the commit is invalid there."""
        res = self._process_kept(message, now_s)
        if not isinstance(res, StagedCommit):
            raise MLSError("not a commit")
        return res

    def cache_fork_proposal(self, message: MLSMessage | bytes, *, now_s: int | None = None) -> ProposalReceived:
        """Cache a proposal of a past epoch whose state is kept in that state:
        a commit for that epoch on the delivery service's branch
        (:meth:`stage_fork_commit`) may reference it. Raises as
        :meth:`stage_fork_commit`."""
        res = self._process_kept(message, now_s)
        if not isinstance(res, ProposalReceived):
            raise MLSError("not a proposal")
        return res

    def _process_kept(self, message: MLSMessage | bytes, now_s: int | None) -> Processed:
        self._check_active()
        if isinstance(message, bytes):
            message = MLSMessage.decode(message)
        body = message.body
        if isinstance(body, PublicMessage):
            epoch = body.content.epoch
        elif isinstance(body, PrivateMessage):
            epoch = body.epoch
        else:
            raise MLSError(f"a group does not process {message.wire_format.name} messages")
        kept = self._forkable.get(epoch)
        if kept is None or epoch >= self.epoch:
            raise WrongEpochError(f"no state kept for epoch {epoch}", self.epoch, epoch)
        current, pending = self.state, self.pending
        self.state, self.pending = kept[0], None
        try:
            return self.process(message, now_s=now_s)
        finally:
            self.state, self.pending = current, pending

    def merge_fork(self, staged: StagedCommit) -> None:
        """Go back to the kept state of the epoch ``staged`` leaves (from
        :meth:`stage_fork_commit`) and merge it there: everything this
        member derived on the abandoned branch after that epoch is deleted."""
        base = staged.epoch - 1
        kept = self._forkable.get(base)
        if kept is None:
            raise WrongEpochError(f"no state kept for epoch {base}", self.epoch, base)
        self.state, self.pending = kept[0], None
        self._forkable = {e: k for e, k in self._forkable.items() if e < base}
        self._past = {e: p for e, p in self._past.items() if e < base}
        self._resumption = {k: v for k, v in self._resumption.items() if k[1] <= base}
        self.merge(staged)

    # ------------------------------------------------------------ application

    def protect(self, data: bytes, authenticated_data: bytes = b"") -> MLSMessage:
        """Encrypt an application message for this epoch."""
        self._check_active()
        st = self.state
        content = FramedContent(
            st.context.group_id, st.epoch, Sender.member(st.own_leaf), authenticated_data,
            ContentType.application, data, None, None,
        )
        return self._frame(content)[0]

    # ------------------------------------------------------------ processing

    def process(self, message: MLSMessage | bytes, *, now_s: int | None = None) -> Processed:
        """Handle one incoming message.

        Application messages and proposals are returned (proposals are cached).
        Commits are validated and returned *staged*: call :meth:`merge`. A
        commit equal to this member's pending commit returns that one.
        """
        self._check_active()
        raw = message if isinstance(message, bytes) else None
        if isinstance(message, bytes):
            message = MLSMessage.decode(message)
        if message.wire_format == WireFormat.public_message:
            return self._process_public(message.body, raw or message.encode(), now_s)
        if message.wire_format == WireFormat.private_message:
            return self._process_private(message.body, raw or message.encode(), now_s)
        raise MLSError(f"a group does not process {message.wire_format.name} messages")

    def past_tree(self, epoch: int) -> RatchetTree | None:
        """The ratchet tree of a past epoch this group still keeps for late
        application messages (``config.max_past_epochs``), or None."""
        past = self._past.get(epoch)
        return past.tree if past is not None else None

    def process_late_application(self, message: MLSMessage | bytes) -> Processed:
        """Decrypt an application message of an epoch this member was part of,
        even after it was removed (it then keeps the state of its last epoch).
        The delivery service may deliver a message the hub accepted before the
        removing commit after that commit; the removed member was a legitimate
        recipient. Anything else is refused as by :meth:`process`."""
        if isinstance(message, bytes):
            message = MLSMessage.decode(message)
        if message.wire_format != WireFormat.private_message:
            raise MLSError("only application messages can arrive late")
        pm = message.body
        if pm.content_type != ContentType.application or pm.epoch > self.state.epoch:
            raise MLSError("only application messages of past epochs can arrive late")
        if self.reinit is not None:
            raise MLSError("the group was reinitialised; use its successor")
        return self._process_private(pm, message.encode(), None)

    def _process_public(self, pm: PublicMessage, raw: bytes, now_s: int | None) -> Processed:
        st = self.state
        c = pm.content
        if c.group_id != st.context.group_id:
            raise MLSError("message for another group")
        if c.epoch != st.epoch:
            raise WrongEpochError(f"message epoch {c.epoch}, group epoch {st.epoch}", st.epoch, c.epoch)
        if c.content_type == ContentType.application:
            raise MLSError("application data must be sent as PrivateMessage")
        if self.pending is not None and c.content_type == ContentType.commit and raw == self.pending.message_bytes:
            return self.pending
        try:
            ac = framing.from_public_message(st.suite, pm, st.secrets.membership_key, st.context_bytes)
        except framing.FramingError as e:
            raise MLSError(str(e), "badMembershipTag") from None
        return self._handle_content(ac, raw, now_s)

    def _process_private(self, pm: PrivateMessage, raw: bytes, now_s: int | None) -> Processed:
        st = self.state
        if pm.group_id != st.context.group_id:
            raise MLSError("message for another group")
        if pm.epoch != st.epoch:
            if pm.content_type == ContentType.application and pm.epoch in self._past:
                past = self._past[pm.epoch]
                ac = self._decrypt(pm, past.secret_tree, past.sender_data_secret)
                return self._application(ac, past.tree, past.context_bytes)
            raise WrongEpochError(f"message epoch {pm.epoch}, group epoch {st.epoch}", st.epoch, pm.epoch)
        if self.pending is not None and pm.content_type == ContentType.commit and raw == self.pending.message_bytes:
            return self.pending
        ac = self._decrypt(pm, st.secret_tree, st.secrets.sender_data_secret)
        if ac.content.content_type == ContentType.application:
            return self._application(ac, st.tree, st.context_bytes)
        return self._handle_content(ac, raw, now_s)

    def _decrypt(self, pm: PrivateMessage, secret_tree: SecretTree, sds: bytes) -> AuthenticatedContent:
        try:
            return framing.decrypt_private(self.suite, pm, secret_tree, sds)
        except framing.FramingError as e:
            if "replay" in str(e) or "consumed" in str(e):
                raise ReplayError(str(e)) from None
            raise MLSError(str(e), "undecryptable") from None

    def _application(self, ac: AuthenticatedContent, tree: RatchetTree, ctx_bytes: bytes) -> ApplicationMessage:
        li = ac.content.sender.leaf_index
        assert li is not None
        leaf = tree.leaf(li) if li < tree.n_leaves else None
        if leaf is None:
            raise MLSError("application message from a blank leaf")
        if not framing.verify_content(self.suite, leaf.signature_key, ac, ctx_bytes):
            raise MLSError("invalid application message signature", "badSignature")
        assert ac.content.application_data is not None
        return ApplicationMessage(li, ac.content.epoch, ac.content.application_data, ac.content.authenticated_data)

    def _handle_content(self, ac: AuthenticatedContent, raw: bytes, now_s: int | None) -> Processed:
        st = self.state
        c = ac.content
        sig_key = sender_signature_key(st.tree, st.context.extensions, c)
        if not framing.verify_content(st.suite, sig_key, ac, st.context_bytes):
            raise MLSError("invalid signature", "badSignature")
        if c.content_type == ContentType.proposal:
            assert c.proposal is not None
            try:
                check_proposal_sender(c.proposal, c.sender, st.context.extensions, st.tree)
            except ProposalError:
                raise
            ref = st.suite.make_proposal_ref(ac.encode())
            if ref in st.proposals:
                raise ReplayError("proposal already received this epoch")
            if c.proposal.proposal_type == ProposalType.self_remove and ac.wire_format != WireFormat.public_message:
                raise ProposalError("SelfRemove must be sent as a PublicMessage")
            st.proposals[ref] = CachedProposal(ref, c.proposal, c.sender)
            return ProposalReceived(ref, c.proposal, c.sender)
        assert c.commit is not None
        return self._stage_commit(ac, raw, now_s)

    def _stage_commit(self, ac: AuthenticatedContent, raw: bytes, now_s: int | None) -> StagedCommit:
        st = self.state
        suite = st.suite
        c = ac.content
        commit = c.commit
        assert commit is not None
        sender = c.sender
        external = sender.sender_type == SenderType.new_member_commit
        if sender.sender_type not in (SenderType.member, SenderType.new_member_commit):
            raise MLSError("only members and new members can commit")
        if sender.sender_type == SenderType.member and sender.leaf_index == st.own_leaf:
            raise MLSError("a commit from this member that is not its pending commit")
        resolved = resolve_commit(commit, sender, st.proposals)
        outcome = apply_proposals(
            suite, st.context.group_id, st.context.extensions, st.tree, resolved, sender,
            external_commit=external, now_s=now_s,
            app_components=self.config.app_components, psk_known=self._psk_known,
        )
        if outcome.path_required and commit.path is None:
            raise ProposalError("commit needs an UpdatePath for its proposals")
        tree = outcome.tree
        removed_self = st.own_leaf in outcome.removed
        committer = sender.leaf_index
        if external:
            assert commit.path is not None
            committer = tree.add_leaf(commit.path.leaf_node)
        assert committer is not None
        private = st.private.copy()
        commit_secret = bytes(suite.hash_len)
        new_ctx = replace(st.context, epoch=st.epoch + 1, extensions=outcome.extensions)
        if removed_self:
            return StagedCommit(None, st.epoch + 1, sender, outcome, raw, removed_self=True)
        # Our own Update proposal committed by someone else: switch to the new key.
        if st.own_leaf in outcome.updated:
            new_leaf = tree.leaf(st.own_leaf)
            assert new_leaf is not None
            key = st.update_keys.get(new_leaf.encryption_key)
            if key is None:
                raise MLSError("own Update committed but its private key is unknown")
            private = private.with_leaf_key(key)
        if commit.path is not None:
            try:
                validate_leaf_node(
                    suite, commit.path.leaf_node, LeafNodeSource.commit, group_id=st.context.group_id,
                    leaf_index=committer, group_extensions=outcome.extensions,
                    members=tree, replacing=committer, now_s=now_s,
                )
            except ValidationError as e:
                raise MLSError(f"commit path leaf: {e}", "invalidPath") from None
            joiners = {i for i, _ in outcome.added}
            try:
                commit_secret, private = apply_update_path(
                    tree, private, committer, commit.path, lambda t: replace(new_ctx, tree_hash=t.tree_hash()).encode(),
                    joiners,
                )
            except (MLSError, CryptoError, ValueError) as e:
                raise MLSError(f"cannot apply UpdatePath: {e}", "invalidPath") from None
        new_ctx = replace(new_ctx, tree_hash=tree.tree_hash())
        confirmed = framing.confirmed_transcript_hash(suite, st.interim, ac)
        new_ctx = replace(new_ctx, confirmed_transcript_hash=confirmed)
        gc = new_ctx.encode()
        if external:
            assert outcome.external_init is not None
            ext_priv = st.secrets.external_key_pair(suite)[0]
            try:
                init_secret = suite.external_init_receiver(ext_priv, outcome.external_init)
            except CryptoError as e:
                raise MLSError(f"bad ExternalInit: {e}") from None
        else:
            init_secret = st.secrets.init_secret
        psk_secret = compute_psk_secret(suite, [(p, self._psk_value(p)) for p in outcome.psks])
        joiner = derive_joiner_secret(suite, init_secret, commit_secret, gc)
        secrets = derive_epoch_secrets(suite, joiner, psk_secret, gc)
        assert ac.auth.confirmation_tag is not None
        if framing.confirmation_tag(suite, secrets.confirmation_key, confirmed) != ac.auth.confirmation_tag:
            raise MLSError("confirmation tag does not verify", "badConfirmationTag")
        new = _make_epoch(suite, new_ctx, tree, private, st.own_leaf, secrets, ac.auth.confirmation_tag)
        return StagedCommit(new, new_ctx.epoch, sender, outcome, raw, reinit=outcome.reinit is not None)

    # ------------------------------------------------------------ PSKs

    def _psk_value(self, pid: PreSharedKeyID) -> bytes:
        return _lookup_psk(pid, self.psks, self._resumption)

    def _psk_known(self, pid: PreSharedKeyID) -> bool:
        try:
            self._psk_value(pid)
        except MLSError:
            return False
        return True

    def _check_active(self) -> None:
        if not self.active:
            raise MLSError("this member has been removed from the group")
        if self.reinit is not None:
            raise MLSError("the group was reinitialised; use its successor")

    def resumption_psks(self) -> dict[tuple[bytes, int], bytes]:
        """The resumption PSKs this member holds, for joining a successor group."""
        return dict(self._resumption)

    def create_reinit_group(
        self,
        key_package: KeyPackage,
        kp_private: KeyPackagePrivate,
        others: Sequence[KeyPackage],
    ) -> tuple[Group, CommitOutput]:
        """After a ReInit commit: create the successor group (RFC 9420 s.11.2)
        with the ReInit's parameters, adding ``others`` in its first commit,
        which carries the reinit resumption PSK of this group's current epoch.
        The joiners need :meth:`resumption_psks` of their old group to join."""
        if self.reinit is None:
            raise MLSError("no ReInit has been committed in this group")
        ri = self.reinit
        if key_package.cipher_suite != ri.cipher_suite:
            raise MLSError("KeyPackage suite differs from the ReInit's")
        # A named child stream when the source supports it (DeterministicRandom does).
        fork: Callable[[str], RandomSource] | None = getattr(self.rng, "fork", None)
        new = Group.create(
            ri.cipher_suite, ri.group_id, key_package, kp_private, fork("reinit") if fork else self.rng,
            extensions=ri.extensions, psks=self.psks, config=self.config,
        )
        new._resumption.update(self._resumption)
        pid = PreSharedKeyID.resumption(
            ResumptionPSKUsage.reinit, self.group_id, self.epoch, self.rng.random_bytes(new.suite.hash_len)
        )
        props = [Proposal.of(Add(kp)) for kp in others] + [Proposal.of(PreSharedKey(pid))]
        out = new.commit(props, _reinit_usage=ResumptionPSKUsage.reinit)
        return new, out

    # ------------------------------------------------------------ group info

    def group_info(self, *, with_tree: bool = False, external_pub: bool = True) -> GroupInfo:
        """A signed GroupInfo for the current epoch (e.g. for external joiners)."""
        st = self.state
        exts: list[Extension] = []
        if with_tree:
            exts.append(Extension(ExtensionType.ratchet_tree, RatchetTreeExt(st.tree.to_nodes()).encode()))
        if external_pub:
            exts.append(
                Extension(ExtensionType.external_pub, ExternalPub(st.secrets.external_key_pair(st.suite)[1]).encode())
            )
        tag = self._confirmation_tag()
        return sign_group_info(st.suite, self.signature_priv, st.context, exts, tag, st.own_leaf)

    def _confirmation_tag(self) -> bytes:
        st = self.state
        return framing.confirmation_tag(st.suite, st.secrets.confirmation_key, st.context.confirmed_transcript_hash)


# ---------------------------------------------------------------- helpers


def _leaf_node(leaf: LeafNode) -> Node:
    return Node(node_type=1, leaf=leaf, parent=None)  # type: ignore[arg-type]


_B = TypeVar("_B")


def _as_body(message: object, cls: type[_B], wf: WireFormat) -> _B:
    """The ``cls`` body of a message given as bytes, an MLSMessage, or the body itself."""
    if isinstance(message, bytes):
        message = MLSMessage.decode(message)
    if isinstance(message, MLSMessage):
        if message.wire_format != wf:
            raise MLSError(f"expected {wf.name}, got {message.wire_format.name}")
        body: _B = message.body  # the wire format fixes the body's type
        return body
    if not isinstance(message, cls):
        raise TypeError(f"expected {cls.__name__}")
    return message


def _lookup_psk(pid: PreSharedKeyID, store: PSKStore, resumption: Mapping[tuple[bytes, int], bytes]) -> bytes:
    if pid.psktype == PSKType.external:
        assert pid.psk_id is not None
        v = store.external.get(pid.psk_id)
        if v is None:
            raise MLSError(f"unknown external PSK {pid.psk_id.hex()}")
        return v
    key = (pid.psk_group_id or b"", pid.psk_epoch or 0)
    v = resumption.get(key)
    if v is None:
        raise MLSError(f"unknown resumption PSK for epoch {pid.psk_epoch}")
    return v


@dataclass
class _Built:
    staged: StagedCommit
    confirmation_tag: bytes
    path_secrets: dict[int, bytes]
    message: MLSMessage


def _build_commit_path(
    *,
    suite: CipherSuite,
    old_context: GroupContext,
    interim: bytes,
    outcome: ProposalOutcome,
    tree: RatchetTree,
    own_leaf: int,
    private: TreePrivate,
    signature_priv: bytes,
    proposals: list[ProposalOrRef],
    sender: Sender,
    init_secret: bytes,
    psk_values: list[tuple[PreSharedKeyID, bytes]],
    rng: RandomSource,
    authenticated_data: bytes,
    leaf_template: LeafNode,
    joiners: list[int],
    use_path: bool = True,
    wire_format: WireFormat = WireFormat.public_message,
    frame: Group | None = None,
) -> _Built:
    """The committer's side of s.12.4.2: path, provisional context, signature,
    transcript, key schedule, confirmation tag. Works on ``tree`` (a copy)."""
    new_ctx = replace(old_context, epoch=old_context.epoch + 1, extensions=outcome.extensions)
    commit_secret = bytes(suite.hash_len)
    path = None
    path_secrets: dict[int, bytes] = {}
    if use_path:

        def leaf_builder(encryption_key: bytes, parent_hash: bytes) -> LeafNode:
            return resign_leaf(
                suite, signature_priv, leaf_template, encryption_key=encryption_key,
                source=LeafNodeSource.commit, lifetime=None, parent_hash=parent_hash,
                group_id=old_context.group_id, leaf_index=own_leaf,
            )

        path, commit_secret, private, path_secrets = create_update_path(
            tree, private, own_leaf, leaf_builder,
            lambda t: replace(new_ctx, tree_hash=t.tree_hash()).encode(),
            set(joiners), rng,
        )
    new_ctx = replace(new_ctx, tree_hash=tree.tree_hash())
    content = FramedContent(
        old_context.group_id, old_context.epoch, sender, authenticated_data, ContentType.commit,
        None, None, Commit(proposals, path),
    )
    if sender.sender_type == SenderType.new_member_commit:
        wire_format = WireFormat.public_message
    old_ctx_bytes = old_context.encode()
    auth = framing.sign_content(suite, signature_priv, wire_format, content, old_ctx_bytes)
    ac = AuthenticatedContent(wire_format, content, auth)
    confirmed = framing.confirmed_transcript_hash(suite, interim, ac)
    new_ctx = replace(new_ctx, confirmed_transcript_hash=confirmed)
    gc = new_ctx.encode()
    psk_secret = compute_psk_secret(suite, psk_values)
    joiner = derive_joiner_secret(suite, init_secret, commit_secret, gc)
    secrets = derive_epoch_secrets(suite, joiner, psk_secret, gc)
    tag = framing.confirmation_tag(suite, secrets.confirmation_key, confirmed)
    ac.auth = AuthData(auth.signature, tag)
    if frame is not None:
        message = frame._wrap(ac)
    else:
        message = MLSMessage.wrap(framing.to_public_message(suite, ac, None, old_ctx_bytes))
    new = _make_epoch(suite, new_ctx, tree, private, own_leaf, secrets, tag)
    staged = StagedCommit(new, new_ctx.epoch, sender, outcome, message.encode(), own=True)
    return _Built(staged, tag, path_secrets, message)


def _make_welcome(
    suite: CipherSuite,
    gi: GroupInfo,
    joiner_secret: bytes,
    welcome_secret: bytes,
    added: list[tuple[int, KeyPackage]],
    path_secrets: dict[int, bytes],
    tree: RatchetTree,
    committer: int,
    psk_values: list[tuple[PreSharedKeyID, bytes]],
    rng: RandomSource,
) -> tuple[MLSMessage, list[tuple[int, bytes]]]:
    key, nonce = welcome_key_nonce(suite, welcome_secret)
    enc_gi = suite.aead_seal(key, nonce, b"", gi.encode())
    secrets = []
    refs = []
    psks = [p for p, _ in psk_values]
    for idx, kp in added:
        ps = path_secret_for_joiner(tree, committer, idx, path_secrets)
        gs = GroupSecrets(joiner_secret, PathSecret(ps) if ps is not None else None, psks)
        kem_output, ct = suite.encrypt_with_label(kp.init_key, b"Welcome", enc_gi, gs.encode(), rng)
        ref = suite.make_key_package_ref(kp.encode())
        secrets.append(EncryptedGroupSecrets(ref, HPKECiphertext(kem_output, ct)))
        refs.append((idx, ref))
    return MLSMessage.wrap(Welcome(suite.suite_id, secrets, enc_gi)), refs




# ---------------------------------------------------------------- shared tree validation

#: What a tree is built from: a ratchet_tree extension's bytes, or node objects.
TreeSource = bytes | Sequence[Node | None]

#: Ratchet trees joiners validated, by (suite, group id, tree hash): what they
#: were built from and the validated tree (hashes and indexes computed). With
#: :mod:`mimisim.sharing` on, a joiner whose tree comes from the same bytes
#: (a GroupInfo's ratchet_tree extension) or the very same node objects (a
#: Welcome's RatchetTreeOption decoded once for every joiner of the process)
#: copies the validated tree instead of recomputing the tree hash and
#: validating every leaf: identical inputs, identical verdict. Bounded.
_TREES: OrderedDict[tuple[int, bytes, bytes], tuple[bytes | tuple[Node | None, ...], RatchetTree]] = OrderedDict()
_TREES_MAX = 16


def _same_source(seen: bytes | tuple[Node | None, ...], source: TreeSource) -> bool:
    if isinstance(seen, bytes) or isinstance(source, bytes):
        return isinstance(seen, bytes) and isinstance(source, bytes) and seen == source
    return len(seen) == len(source) and all(a is b for a, b in zip(seen, source, strict=True))


def _validated_tree(suite: CipherSuite, group_id: bytes, tree_hash: bytes,
                    source: TreeSource | None) -> RatchetTree | None:
    """A tree validated before from exactly this source, or None."""
    if not sharing.enabled or source is None:
        return None
    hit = _TREES.get((suite.suite_id, bytes(group_id), bytes(tree_hash)))
    if hit is None or not _same_source(hit[0], source):
        return None
    return hit[1]


def _remember_tree(suite: CipherSuite, group_id: bytes, tree_hash: bytes,
                   source: TreeSource | None, tree: RatchetTree) -> None:
    if not sharing.enabled or source is None:
        return
    kept = tree.copy()
    kept.leaf_capability_counts()  # builds the key and profile indexes, which copies inherit
    key = (suite.suite_id, bytes(group_id), bytes(tree_hash))
    _TREES[key] = (source if isinstance(source, bytes) else tuple(source), kept)
    _TREES.move_to_end(key)
    while len(_TREES) > _TREES_MAX:
        _TREES.popitem(last=False)
