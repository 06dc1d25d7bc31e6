"""The client's half of the DS profile's wire: building signed DSRequests.

Only the pieces every client needs to talk to a hub ([DS] Framing and
processing overview): the ClientSignature over ClientSignatureTBS (C2) and
the MLSGroupUpdate that accompanies each commit (with the DS draft's
PartialGroupInfo, C9), and :class:`DSClient`, the client core of the ds
profile (not yet driven by the simulator).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from mimisim.mimi.ds.wire import (
    CLIENT_SIGNATURE_LABEL,
    DS10,
    JOINER_INDEX,
    ClientSignatureTBS,
    CommitRequest,
    DeleteGroupRequest,
    DSAuthData,
    DSRequest,
    DSRequestBody,
    DSResponse,
    ExternalCommitInfo,
    GroupInfoRequest,
    KeyPackagesRequest,
    MLSGroupUpdate,
    PartialGroupInfo,
    ProposalRequest,
    SendMessageRequest,
    WelcomeInfo,
    WelcomeInfoRequest,
)
from mimisim.mls.crypto import CipherSuite, DeterministicRandom
from mimisim.mls.errors import MLSError
from mimisim.mls.group import ApplicationMessage, Group, StagedCommit
from mimisim.mls.keypackage import KeyPackagePrivate
from mimisim.mls.keyschedule import compute_psk_secret, welcome_key_nonce
from mimisim.mls.structs import (
    Add,
    Capabilities,
    Credential,
    Extension,
    ExtensionType,
    GroupInfo,
    GroupSecrets,
    KeyPackage,
    MLSMessage,
    Proposal,
    Remove,
    WireFormat,
)


def sign_request(suite: CipherSuite, signature_priv: bytes, body: object, sender_index: int) -> DSRequest:
    """A DSRequest for ``body`` authenticated by the member at ``sender_index``."""
    rb = DSRequestBody.of(body)
    tbs = ClientSignatureTBS(DS10, rb, sender_index).encode()
    sig = suite.sign_with_label(signature_priv, CLIENT_SIGNATURE_LABEL, tbs)
    return DSRequest(DS10, rb, DSAuthData.client_signature(sender_index, sig))


def anonymous_request(body: object) -> DSRequest:
    """A DSRequest whose only authentication is what its MLS content carries (or none)."""
    return DSRequest(DS10, DSRequestBody.of(body), DSAuthData.anonymous())


def group_update(commit: MLSMessage, group_info: GroupInfo) -> MLSGroupUpdate:
    """The MLSGroupUpdate of a commit: the committer's GroupInfo, signed without
    the ratchet tree (C9), reduced to its extensions and signature."""
    if group_info.extension(ExtensionType.ratchet_tree) is not None:
        raise ValueError("the DS profile's GroupInfo is signed without the ratchet tree (C9)")
    return MLSGroupUpdate(commit, PartialGroupInfo(list(group_info.extensions), group_info.signature))


def welcome_group_id(welcome: MLSMessage, ref: bytes, init_priv: bytes, suite: Any) -> bytes:
    """The group id a Welcome is for, as its recipient reads it (RFC 9420
    s.12.4.3.1 up to the GroupInfo; no PSKs in these groups): the guest DS
    forwards a Welcome with no group named in the clear, and the client needs
    it to ask for the tree of the right group."""
    w = welcome.body
    mine = [s for s in w.secrets if s.new_member == ref]
    if len(mine) != 1:
        raise MLSError("no entry for this KeyPackage in the Welcome")
    egs = mine[0].encrypted_group_secrets
    gs = GroupSecrets.decode(suite.decrypt_with_label(init_priv, b"Welcome", w.encrypted_group_info,
                                                      egs.kem_output, egs.ciphertext))
    welcome_secret = suite.derive_secret(suite.kdf_extract(gs.joiner_secret, compute_psk_secret(suite, [])),
                                         b"welcome")
    key, nonce = welcome_key_nonce(suite, welcome_secret)
    gi = GroupInfo.decode(suite.aead_open(key, nonce, b"", w.encrypted_group_info))
    gid: bytes = gi.group_context.group_id
    return gid


# ==========================================================================
# the client core


class ClientBusy(RuntimeError):
    """A new operation while a request is outstanding: a bug in the caller."""


@dataclass
class DSClient:
    """One client of the ds profile: builds DSRequests, applies DSResponses and
    processes what its DS delivers from fanouts.

    One request at a time: an operation that changes the group stays pending
    (the MLS commit is merged on ``Ok``, discarded on an error) until
    :meth:`on_response`. Proposals received from the group (a member's own
    removal, the hub's removals) are stored by the MLS core and every commit
    this client makes includes them by reference ([DS] Proposals and
    DS-initiated operations). Sans-IO: the caller sends the requests.
    """

    client_id: bytes
    suite: CipherSuite
    signature_priv: bytes
    rng: DeterministicRandom
    key_package: KeyPackage
    key_package_priv: KeyPackagePrivate
    group: Group | None = None
    pending: tuple[str, object] | None = None
    welcome: MLSMessage | None = None
    received: list[bytes] = field(default_factory=list)

    # ------------------------------------------------------------ state

    @property
    def member(self) -> bool:
        return self.group is not None and self.group.active

    def _start(self, kind: str, req: DSRequest, data: object = None) -> DSRequest:
        if self.pending is not None:
            raise ClientBusy(f"{self.pending[0]} is outstanding")
        self.pending = (kind, data)
        return req

    def _me(self) -> Group:
        if self.group is None or not self.group.active:
            raise ClientBusy("not a member of a group")
        return self.group

    def _sign(self, body: object) -> DSRequest:
        return sign_request(self.suite, self.signature_priv, body, self._me().own_leaf)

    # ------------------------------------------------------------ operations

    def create_group(self, group_id: bytes, extensions: Sequence[Extension] = ()) -> GroupInfo:
        """Create a group; the GroupInfo (with tree) goes to the hub by the
        creator's own means (C10): ``DSHub.create_group(gi, None, key_package)``."""
        self.group = Group.create(
            self.suite, group_id, self.key_package, self.key_package_priv, self.rng.fork("group"),
            extensions=list(extensions),
        )
        return self.group.group_info(with_tree=True)

    def commit(self, proposals: Sequence[Proposal] = (), *, delete: bool = False, path: bool | None = None) -> DSRequest:
        """A commit of ``proposals`` plus every stored proposal (by reference)."""
        g = self._me()
        if self.pending is not None:
            raise ClientBusy(f"{self.pending[0]} is outstanding")
        out = g.commit(list(proposals), ratchet_tree_in_welcome=False, path=path)
        update = group_update(out.message, out.group_info)
        if delete:
            return self._start("commit", self._sign(DeleteGroupRequest(update)))
        welcomes = [out.welcome] if out.welcome is not None else []
        return self._start("commit", self._sign(CommitRequest([update], welcomes)))

    def add(self, key_packages: Sequence[KeyPackage]) -> DSRequest:
        return self.commit([Proposal.of(Add(kp)) for kp in key_packages])

    def delete_group(self) -> DSRequest:
        """[DS] Delete group: one commit removing every other member."""
        g = self._me()
        others = [i for i, _ in g.members() if i != g.own_leaf]
        return self.commit([Proposal.of(Remove(i)) for i in others], delete=True)

    def propose_leave(self) -> DSRequest:
        """The only way to leave ([DS] Proposals...): propose one's own removal."""
        g = self._me()
        prop = g.propose(Proposal.of(Remove(g.own_leaf)))
        return self._start("proposal", self._sign(ProposalRequest([prop])))

    def send(self, data: bytes) -> DSRequest:
        return self._start("send", self._sign(SendMessageRequest([self._me().protect(data)])))

    def key_packages_request(self, client_ids: Sequence[bytes]) -> DSRequest:
        return self._start("key_packages", anonymous_request(KeyPackagesRequest(list(client_ids))))

    def group_info_request(self, group_id: bytes) -> DSRequest:
        return self._start("group_info", anonymous_request(GroupInfoRequest(group_id)))

    def external_join(self, info: ExternalCommitInfo, leaf_extensions: Sequence[Extension] = (),
                      capabilities: Capabilities | None = None) -> DSRequest:
        """Join by external commit with what a GroupInfo request returned."""
        group, msg = Group.external_join(
            info.group_info, Credential.basic(self.client_id), self.signature_priv, self.rng.fork("external"),
            ratchet_tree=info.ratchet_tree, leaf_extensions=list(leaf_extensions), capabilities=capabilities,
        )
        req = anonymous_request(CommitRequest([group_update(msg, group.group_info())], []))
        return self._start("external", req, group)

    def welcome_info_request(self) -> DSRequest:
        """After a Welcome arrived: ask the hub for the tree of its epoch (C4)."""
        if self.welcome is None:
            raise ClientBusy("no Welcome to join from")
        ref = self.suite.make_key_package_ref(self.key_package.encode())
        gid = welcome_group_id(self.welcome, ref, self.key_package_priv.init_priv, self.suite)
        return self._start(
            "welcome_info", sign_request(self.suite, self.signature_priv, WelcomeInfoRequest(gid, ref), JOINER_INDEX)
        )

    # ------------------------------------------------------------ input

    def on_response(self, response: DSResponse) -> object:
        """Apply the answer to the outstanding request; returns its payload
        (KeyPackages, ExternalCommitInfo, ...) or the DSError."""
        if self.pending is None:
            raise ClientBusy("a response without a request")
        kind, data = self.pending
        self.pending = None
        body = response.response_body.body
        err = response.error
        if kind == "commit":
            assert self.group is not None
            if err is None:
                self.group.merge_pending_commit()
            else:
                self.group.discard_pending_commit()
        elif kind == "external" and err is None:
            assert isinstance(data, Group)
            self.group = data
        elif kind == "welcome_info" and err is None:
            assert isinstance(body, WelcomeInfo) and self.welcome is not None
            self.group = Group.join(
                self.welcome, self.key_package, self.key_package_priv, self.rng.fork("join"),
                ratchet_tree=body.ratchet_tree,
            )
            self.welcome = None
        return err if err is not None else body

    def receive(self, message: MLSMessage) -> bytes | None:
        """A message its DS delivered from a fanout; returns application data."""
        if message.wire_format == WireFormat.welcome:
            self.welcome = message
            return None
        g = self._me()
        out = g.process(message)
        if isinstance(out, StagedCommit):
            g.merge(out)
            return None
        if isinstance(out, ApplicationMessage):
            self.received.append(out.data)
            return out.data
        return None
