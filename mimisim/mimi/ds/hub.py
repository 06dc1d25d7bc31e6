"""The hub's side of the DS profile (draft-robert-mimi-delivery-service).

The hub follows each group it hosts from PublicMessages with the shared
:class:`~mimisim.mls.observer.GroupObserver` ([DS] DS assisted joining), so
the members it authenticates, the trees it serves and the commits it accepts
are those the members' own MLS state machines agree with.

Per request ([DS] Framing and processing overview, Client-initiated
operations):

* authenticate: ``ClientSignature`` is checked against the signature key of
  the leaf at ``sender_index`` in the group's current tree (for
  ``ds_welcome_info``: in the tree of the requested epoch); a handshake sent by
  a member must name the same leaf in its MLS sender. ``Anonymous`` is only
  accepted where the MLS message itself authenticates its sender (external
  commits, external proposals) or nothing is secret (KeyPackages, GroupInfo)
  [C12];
* validate and apply: proposals are cached, commits (each an MLSGroupUpdate)
  are staged and merged with their PartialGroupInfo; a delete group commit must
  remove every other member; a request with several commits is all or
  nothing;
* FanoutAuthTokens: every joiner's KeyPackage must carry the FanoutAuth
  extension (C7); a FanoutAuth LeafNode extension on an external joiner's leaf
  (required) or an updated leaf (optional) replaces the stored token [C11];
* fan out: one DSFanoutRequest per guest DS and message, with exactly that
  DS's recipients and their tokens; Welcomes go to the clients they add;
* past states: for every epoch in which clients were added the hub keeps the
  tree of that epoch until each of those clients has joined (fetched its
  WelcomeInfo, or acted in the group) or left [C10].

Sans-IO: no clock, no randomness; the owner sends the fanouts.
"""

from __future__ import annotations

import copy
import hashlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from mimisim.codec import DecodeError
from mimisim.mimi.ds.ratelimit import Limiter
from mimisim.mimi.ds.wire import (
    CLIENT_SIGNATURE_LABEL,
    DS10,
    FANOUT_AUTH_EXTENSION,
    JOINER_INDEX,
    SUPPORTED_VERSIONS,
    CommitRequest,
    DeleteGroupRequest,
    DSAuthType,
    DSError,
    DSErrorCode,
    DSFanoutRequest,
    DSRequest,
    DSResponse,
    DSResponseBody,
    ExternalCommitInfo,
    FanoutAuthToken,
    GroupInfoRequest,
    KeyPackages,
    KeyPackagesRequest,
    MLSGroupUpdate,
    PartialGroupInfo,
    ProposalRequest,
    SendMessageRequest,
    WelcomeInfo,
    WelcomeInfoRequest,
)
from mimisim.mls.errors import MLSError, ValidationError, WrongEpochError
from mimisim.mls.observer import GroupObserver, ObservedCommit, external_proposal
from mimisim.mls.structs import (
    Extension,
    GroupInfo,
    KeyPackage,
    LeafNode,
    MLSMessage,
    Node,
    Proposal,
    RatchetTreeCodec,
    RatchetTreePresence,
    Remove,
    SenderType,
)
from mimisim.mls.structs import PartialGroupInfo as MLSPartialGroupInfo


class DSFailure(Exception):
    """A request the hub refuses: becomes a DSError response (not a bug).
    ``epoch``: the group's current epoch, for ``wrong_epoch`` [C5]."""

    def __init__(self, code: DSErrorCode, reason: str, epoch: int | None = None) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason
        self.epoch = epoch


#: How many accepted DSRequests the hub remembers for replay protection [C17].
REPLAY_WINDOW = 4096


@dataclass(frozen=True)
class Fanout:
    """One DSFanoutRequest for the guest DS ``domain`` (the hub's own clients included)."""

    domain: str
    request: DSFanoutRequest


@dataclass(frozen=True)
class HubResult:
    """The response to the requester and the fanouts to send after it."""

    response: DSResponse
    fanout: tuple[Fanout, ...] = ()
    deleted: bool = False
    #: a replay (or retry) of a request already accepted: answered with the
    #: original response, nothing processed or fanned out again [C17]
    duplicate: bool = False

    @property
    def ok(self) -> bool:
        return self.response.ok


@dataclass
class PastEpoch:
    """The tree of an epoch in which clients were added, kept until they joined [C10]."""

    tree: list[Node | None]
    #: leaf index -> signature key of each added client that has not joined yet
    joiners: dict[int, bytes]
    #: leaf index -> KeyPackageRef of the same clients
    refs: dict[int, bytes] = field(default_factory=dict)

    def size(self) -> int:
        out = bytearray()
        RatchetTreeCodec.encode(self.tree, out)
        return len(out)


@dataclass
class HubGroup:
    """What the hub keeps per group."""

    observer: GroupObserver
    tokens: dict[int, FanoutAuthToken] = field(default_factory=dict)
    past: dict[int, PastEpoch] = field(default_factory=dict)


def fanout_token(extensions: Sequence[Extension]) -> FanoutAuthToken | None:
    """The token of a FanoutAuth extension (C7), or None; a malformed one is None too."""
    for e in extensions:
        if e.extension_type == FANOUT_AUTH_EXTENSION:
            try:
                return FanoutAuthToken.decode(e.extension_data)
            except DecodeError:
                return None
    return None


def fanout_extension(token: FanoutAuthToken) -> Extension:
    """The FanoutAuth extension carrying ``token`` (for KeyPackages and LeafNodes)."""
    return Extension(FANOUT_AUTH_EXTENSION, token.encode())


def client_id(leaf: LeafNode) -> bytes:
    """A leaf's ClientID: its BasicCredential identity [C3]."""
    ident = leaf.credential.identity
    if ident is None:
        raise DSFailure(DSErrorCode.not_allowed, "only BasicCredentials carry a ClientID")
    return ident


def group_of(request: DSRequest) -> bytes | None:
    """The group a request is about, as its first MLS message names it (None:
    KeyPackages, WelcomeInfo)."""
    body = request.request_body.body
    if isinstance(body, SendMessageRequest):
        gid: bytes = body.application_messages[0].body.group_id
        return gid
    if isinstance(body, ProposalRequest):
        return bytes(body.proposals[0].body.content.group_id)
    if isinstance(body, CommitRequest):
        return bytes(body.group_updates[0].commit.body.content.group_id)
    if isinstance(body, DeleteGroupRequest):
        return bytes(body.group_update.commit.body.content.group_id)
    if isinstance(body, GroupInfoRequest):
        return bytes(body.group_id)
    return None


def _mls_pgi(pgi: PartialGroupInfo) -> MLSPartialGroupInfo:
    # [C9] the DS draft's PartialGroupInfo has no tree presence: the GroupInfo
    # it completes never carries the tree (WelcomeInfo/ExternalCommitInfo do).
    return MLSPartialGroupInfo(RatchetTreePresence.no_ratchet_tree, list(pgi.group_info_extensions), pgi.signature)


def _error(code: DSErrorCode, reason: str, epoch: int | None = None) -> HubResult:
    current = (epoch if epoch is not None else 0) if code == DSErrorCode.wrong_epoch else None
    return HubResult(DSResponse(DS10, DSResponseBody.of(DSError(code, None, reason, current))))


@dataclass
class DSHub:
    """The hub core for the groups it hosts (and the KeyPackage store of its own clients)."""

    domain: str
    #: the DS domain of a ClientID ([DS] Terminology: an id "maps to the DS domain")
    domain_of: Callable[[bytes], str]
    versions: frozenset[int] = SUPPORTED_VERSIONS
    #: takes one KeyPackage of one of this DS's clients, None when it has none left
    key_package_store: Callable[[bytes], KeyPackage | None] | None = None
    #: the hub's signing key and its index in the groups' ``external_senders`` ([DS] Proposals
    #: and DS-initiated operations); None: this hub proposes nothing
    signature_priv: bytes | None = None
    external_sender_index: int = 0
    #: rate limits of DSRequests per "client" (group, sender_index), "ds" (the
    #: sending or proxying DS) and "group"; None: unlimited
    limiter: Limiter | None = None
    #: how the groups' application components (RFC 9420 extensions, e.g. the
    #: MIMI participant list) apply; the hub tracks them as a client would
    app_components: Mapping[int, Any] | None = None
    groups: dict[bytes, HubGroup] = field(default_factory=dict)
    #: (group, KeyPackageRef) of each Welcome joiner not yet joined -> (group, epoch, leaf) [C4, C10]
    joiners: dict[tuple[bytes, bytes], tuple[bytes, int, int]] = field(default_factory=dict)
    #: SHA-256 of each recently accepted DSRequest -> (group, its response) [C17]
    recent: dict[bytes, tuple[bytes, DSResponse]] = field(default_factory=dict)

    # ------------------------------------------------------------ groups

    def create_group(
        self, group_info: GroupInfo, ratchet_tree: Sequence[Node | None] | None,
        creator_key_package: KeyPackage | None = None,
    ) -> None:
        """Host a new group (creation is between the creator and its own DS [C10])."""
        gid = group_info.group_context.group_id
        if gid in self.groups:
            raise DSFailure(DSErrorCode.not_allowed, "group exists")
        try:
            obs = GroupObserver.from_group_info(group_info, ratchet_tree, app_components=self.app_components)
        except (MLSError, ValidationError, DecodeError) as e:
            raise DSFailure(DSErrorCode.invalid_message, f"GroupInfo: {e}") from None
        leaves = obs.tree.members()
        if len(leaves) != 1:
            raise DSFailure(DSErrorCode.invalid_message, "a new group has exactly its creator")
        if creator_key_package is None:
            # [C10] without the KeyPackage, the token of the creator's leaf (C11)
            token = fanout_token(leaves[0][1].extensions)
            if token is None:
                raise DSFailure(DSErrorCode.not_allowed, "creator's leaf has no FanoutAuth extension")
        else:
            token = fanout_token(creator_key_package.extensions)
            if token is None:
                raise DSFailure(DSErrorCode.not_allowed, "creator KeyPackage has no FanoutAuth extension")
            if leaves[0][1].signature_key != creator_key_package.leaf_node.signature_key:
                raise DSFailure(DSErrorCode.invalid_message, "a new group has exactly its creator")
        self.groups[gid] = HubGroup(obs, {leaves[0][0]: token})

    def retained_bytes(self) -> int:
        """Bytes of past trees kept for Welcome joiners (the memory issue 15 asks to report)."""
        return sum(p.size() for g in self.groups.values() for p in g.past.values())

    def propose_remove(self, group_id: bytes, leaf: int) -> tuple[Fanout, ...]:
        """A DS-initiated Remove ([DS] Proposals and DS-initiated operations), e.g.
        of a client whose DS reports it deleted: cached like a member's proposal
        and fanned out to every member; the next commit must include it."""
        if self.signature_priv is None:
            raise DSFailure(DSErrorCode.not_allowed, "this hub has no external sender key")
        g = self._group(group_id)
        obs = g.observer
        if obs.tree.leaf(leaf) is None:
            raise DSFailure(DSErrorCode.invalid_message, f"no member at leaf {leaf}")
        msg = external_proposal(
            obs.suite, obs.group_id, obs.epoch, self.external_sender_index, self.signature_priv,
            Proposal.of(Remove(leaf)),
        )
        obs.process_proposal(msg)
        return tuple(self._fanout(g, msg, obs.tree.leaf_indices()))

    # ------------------------------------------------------------ requests

    def handle(self, request: DSRequest | bytes, *, now_ms: float | None = None, from_ds: str | None = None) -> HubResult:
        """Answer one DSRequest; refusals are DSError responses, never exceptions.

        ``from_ds``: the DS the request came from (the client's own DS, when it
        proxies, or the client's domain); ``now_ms`` is needed with a limiter.
        """
        if isinstance(request, bytes):
            raw = request
            try:
                request = DSRequest.decode(request)
            except DecodeError as e:
                return _error(DSErrorCode.malformed, str(e))
        else:
            raw = request.encode()
        digest = hashlib.sha256(raw).digest()
        seen = self.recent.get(digest)
        if seen is not None and (seen[0] in self.groups or not seen[0]):
            return HubResult(seen[1], duplicate=True)
        result = self._handle(request, now_ms, from_ds)
        # read-only requests are not kept; nor is WelcomeInfo (its tree is freed
        # once served [C10], and a copy here would keep it)
        if result.ok and not isinstance(request.request_body.body,
                                        (KeyPackagesRequest, GroupInfoRequest, WelcomeInfoRequest)):
            self._remember(digest, request, result.response)
        return result

    def _remember(self, digest: bytes, request: DSRequest, response: DSResponse) -> None:
        """[C17] Keep an accepted request's digest and response (bounded, oldest first out)."""
        gid = group_of(request) or b""
        self.recent[digest] = (gid, response)
        while len(self.recent) > REPLAY_WINDOW:
            del self.recent[next(iter(self.recent))]

    def _handle(self, request: DSRequest, now_ms: float | None, from_ds: str | None) -> HubResult:
        if request.version not in self.versions:
            return _error(DSErrorCode.unsupported_version, f"version {request.version} not supported")
        body = request.request_body.body
        if self.limiter is not None:
            if now_ms is None:
                raise ValueError("a rate-limited hub needs now_ms")
            wait = self.limiter.admit(self._limit_keys(request, from_ds), now_ms)
            if wait:
                err = DSError(DSErrorCode.rate_limited, wait, "rate limited", None)
                return HubResult(DSResponse(DS10, DSResponseBody.of(err)))
        try:
            if isinstance(body, KeyPackagesRequest):
                return self._key_packages(body)
            if isinstance(body, GroupInfoRequest):
                return self._group_info(body)
            if isinstance(body, WelcomeInfoRequest):
                return self._welcome_info(request, body)
            if isinstance(body, SendMessageRequest):
                return self._send(request, body)
            if isinstance(body, ProposalRequest):
                return self._proposals(request, body)
            if isinstance(body, CommitRequest):
                return self._commits(request, body.group_updates, body.welcome_messages, delete=False)
            if isinstance(body, DeleteGroupRequest):
                return self._commits(request, [body.group_update], [], delete=True)
        except DSFailure as f:
            return _error(f.code, f.reason, f.epoch)
        raise AssertionError(f"unhandled request body {type(body).__name__}")  # decoding admits no other

    # ------------------------------------------------------------ helpers

    @staticmethod
    def _limit_keys(request: DSRequest, from_ds: str | None) -> list[tuple[str, object]]:
        """The buckets a request draws from (before authentication, so that a
        flood of forged requests is limited too)."""
        gid = group_of(request)
        keys: list[tuple[str, object]] = []
        if gid is not None:
            keys.append(("group", gid))
            auth = request.authentication_data
            if auth.auth_type == DSAuthType.ClientSignature:
                keys.append(("client", (gid, auth.sender_index)))
        if from_ds is not None:
            keys.append(("ds", from_ds))
        return keys

    def _group(self, gid: bytes) -> HubGroup:
        g = self.groups.get(gid)
        if g is None:
            raise DSFailure(DSErrorCode.unknown_group, "unknown group")
        return g

    def _authenticate(self, request: DSRequest, g: HubGroup, tree_leaf: Callable[[int], LeafNode | None]) -> int:
        """The verified sender_index of a ClientSignature request."""
        auth = request.authentication_data
        if auth.auth_type != DSAuthType.ClientSignature:
            raise DSFailure(DSErrorCode.authentication_failed, "this request needs a ClientSignature")
        assert auth.sender_index is not None and auth.signature is not None
        leaf = tree_leaf(auth.sender_index)
        if leaf is None:
            raise DSFailure(DSErrorCode.authentication_failed, f"no member at leaf {auth.sender_index}")
        tbs = request.tbs(auth.sender_index).encode()
        if not g.observer.suite.verify_with_label(leaf.signature_key, CLIENT_SIGNATURE_LABEL, tbs, auth.signature):
            raise DSFailure(DSErrorCode.authentication_failed, "ClientSignature does not verify")
        return auth.sender_index

    def _member_leaf(self, g: HubGroup) -> Callable[[int], LeafNode | None]:
        return g.observer.tree.leaf

    def _fanout(
        self, g: HubGroup, message: MLSMessage, leaves: Sequence[int], tokens: dict[int, FanoutAuthToken] | None = None
    ) -> list[Fanout]:
        """One DSFanoutRequest per DS, for the clients at ``leaves`` (tree of ``g`` now;
        ``tokens`` overrides the stored ones, for a commit that rotates some)."""
        by_domain: dict[str, tuple[list[bytes], list[FanoutAuthToken]]] = {}
        for i in sorted(set(leaves)):
            leaf = g.observer.tree.leaf(i)
            if leaf is None:
                continue
            cid = client_id(leaf)
            token = (tokens or {}).get(i) or g.tokens.get(i)
            if token is None:  # every member has one: create_group and _apply_tokens enforce it
                raise AssertionError(f"no FanoutAuthToken for leaf {i}")
            ids, toks = by_domain.setdefault(self.domain_of(cid), ([], []))
            ids.append(cid)
            toks.append(token)
        return [Fanout(d, DSFanoutRequest(DS10, ids, toks, message)) for d, (ids, toks) in sorted(by_domain.items())]

    def _forget(self, g: HubGroup, epoch: int, leaf: int) -> None:
        """The joiner at ``leaf`` of ``epoch`` needs no kept state any more [C10]."""
        p = g.past.get(epoch)
        if p is None or leaf not in p.joiners:
            return
        del p.joiners[leaf]
        self.joiners.pop((g.observer.group_id, p.refs.pop(leaf)), None)
        if not p.joiners:
            del g.past[epoch]

    def _joined(self, g: HubGroup, leaf: int) -> None:
        """The client at ``leaf`` acted as a member: it has joined [C10]."""
        node = g.observer.tree.leaf(leaf)
        for epoch in list(g.past):
            if node is not None and g.past[epoch].joiners.get(leaf) == node.signature_key:
                self._forget(g, epoch, leaf)

    # ------------------------------------------------------------ operations

    def _key_packages(self, body: KeyPackagesRequest) -> HubResult:
        out: list[KeyPackage] = []
        for cid in body.client_identifiers:
            if self.domain_of(cid) != self.domain:
                raise DSFailure(DSErrorCode.unknown_client, f"{cid!r} is not a client of {self.domain}")
            kp = self.key_package_store(cid) if self.key_package_store else None
            if kp is None:
                raise DSFailure(DSErrorCode.no_key_package, f"no KeyPackage for {cid!r}")
            out.append(kp)
        return HubResult(DSResponse(DS10, DSResponseBody.of(KeyPackages(out))))

    def _group_info(self, body: GroupInfoRequest) -> HubResult:
        g = self._group(body.group_id)
        try:
            gi = g.observer.group_info()
        except MLSError as e:
            raise DSFailure(DSErrorCode.epoch_unavailable, str(e)) from None
        info = ExternalCommitInfo(MLSMessage.wrap(gi), g.observer.ratchet_tree())
        return HubResult(DSResponse(DS10, DSResponseBody.of(info)))

    def _welcome_info(self, request: DSRequest, body: WelcomeInfoRequest) -> HubResult:
        found = self.joiners.get((body.group_id, body.key_package_ref))
        if found is None:
            raise DSFailure(DSErrorCode.epoch_unavailable, "no kept state for this KeyPackageRef")
        gid, epoch, leaf = found
        g = self._group(gid)
        p = g.past[epoch]
        auth = request.authentication_data
        if auth.auth_type != DSAuthType.ClientSignature or auth.sender_index != JOINER_INDEX:
            raise DSFailure(DSErrorCode.authentication_failed, "a Welcome joiner signs with sender_index 0xFFFFFFFF")
        assert auth.signature is not None
        tbs = request.tbs(JOINER_INDEX).encode()
        if not g.observer.suite.verify_with_label(p.joiners[leaf], CLIENT_SIGNATURE_LABEL, tbs, auth.signature):
            raise DSFailure(DSErrorCode.authentication_failed, "ClientSignature does not verify")
        tree = p.tree
        self._forget(g, epoch, leaf)
        return HubResult(DSResponse(DS10, DSResponseBody.of(WelcomeInfo(tree))))

    def _send(self, request: DSRequest, body: SendMessageRequest) -> HubResult:
        gids = {m.body.group_id for m in body.application_messages}
        if len(gids) != 1:
            raise DSFailure(DSErrorCode.invalid_message, "application messages of several groups")
        g = (self._group(gids.pop()))
        sender = self._authenticate(request, g, self._member_leaf(g))
        for m in body.application_messages:
            if m.body.epoch != g.observer.epoch:
                raise DSFailure(DSErrorCode.wrong_epoch, f"epoch {m.body.epoch}, group at {g.observer.epoch}",
                                g.observer.epoch)
        self._joined(g, sender)
        others = [i for i in g.observer.tree.leaf_indices() if i != sender]
        fan: list[Fanout] = []
        for m in body.application_messages:
            fan += self._fanout(g, m, others)
        return HubResult(DSResponse(DS10, DSResponseBody.ok()), tuple(fan))

    def _mls_sender(self, request: DSRequest, g: HubGroup, msg: MLSMessage) -> int | None:
        """Check that a member's handshake and its ClientSignature name the same leaf."""
        sender = msg.body.content.sender
        if sender.sender_type == SenderType.member:
            idx = self._authenticate(request, g, self._member_leaf(g))
            if idx != sender.leaf_index:
                raise DSFailure(DSErrorCode.authentication_failed, "ClientSignature and MLS sender differ")
            return idx
        return None  # external / new member: the MLS signature is the authentication [C12]

    def _proposals(self, request: DSRequest, body: ProposalRequest) -> HubResult:
        gids = {m.body.content.group_id for m in body.proposals}
        if len(gids) != 1:
            raise DSFailure(DSErrorCode.invalid_message, "proposals of several groups")
        g = (self._group(gids.pop()))
        senders = {self._mls_sender(request, g, m) for m in body.proposals}
        trial = copy.deepcopy(g.observer)
        for m in body.proposals:
            try:
                trial.process_proposal(m)
            except WrongEpochError as e:
                raise DSFailure(DSErrorCode.wrong_epoch, str(e), g.observer.epoch) from None
            except (MLSError, ValidationError) as e:
                raise DSFailure(DSErrorCode.invalid_message, str(e)) from None
        g.observer = trial
        for s in senders:
            if s is not None:
                self._joined(g, s)
        others = [i for i in trial.tree.leaf_indices() if i not in senders]
        fan: list[Fanout] = []
        for m in body.proposals:
            fan += self._fanout(g, m, others)
        return HubResult(DSResponse(DS10, DSResponseBody.ok()), tuple(fan))

    def _commits(
        self, request: DSRequest, updates: Sequence[MLSGroupUpdate], welcomes: Sequence[MLSMessage], *, delete: bool
    ) -> HubResult:
        gids = {u.commit.body.content.group_id for u in updates}
        if len(gids) != 1:
            raise DSFailure(DSErrorCode.invalid_message, "commits of several groups")
        gid = gids.pop()
        g = (self._group(gid))
        work = copy.deepcopy(g)  # all or nothing: the group and the joiner index
        saved_joiners = dict(self.joiners)
        fan: list[Fanout] = []
        added_refs: dict[bytes, int] = {}
        try:
            for u in updates:
                fan += self._commit(request, work, u, added_refs, delete=delete)
            for w in welcomes:
                to = [added_refs[s.new_member] for s in w.body.secrets if s.new_member in added_refs]
                if not to:
                    raise DSFailure(DSErrorCode.invalid_message, "a Welcome for nobody these commits add")
                fan += self._fanout(work, w, to)
        except DSFailure:
            self.joiners = saved_joiners
            raise
        if delete:
            del self.groups[gid]
            self.joiners = {r: v for r, v in self.joiners.items() if v[0] != gid}
            return HubResult(DSResponse(DS10, DSResponseBody.ok()), tuple(fan), deleted=True)
        self.groups[gid] = work
        return HubResult(DSResponse(DS10, DSResponseBody.ok()), tuple(fan))

    def _commit(
        self, request: DSRequest, g: HubGroup, update: MLSGroupUpdate, added_refs: dict[bytes, int], *, delete: bool
    ) -> list[Fanout]:
        obs = g.observer
        msg = update.commit
        if msg.body.content.epoch != obs.epoch:
            raise DSFailure(DSErrorCode.wrong_epoch, f"commit for epoch {msg.body.content.epoch}, group at {obs.epoch}",
                            obs.epoch)
        self._mls_sender(request, g, msg)
        before = obs.tree.leaf_indices()
        try:
            staged: ObservedCommit = obs.stage_commit(msg)
        except WrongEpochError as e:
            raise DSFailure(DSErrorCode.wrong_epoch, str(e), obs.epoch) from None
        except (MLSError, ValidationError) as e:
            raise DSFailure(DSErrorCode.invalid_message, str(e)) from None
        out = staged.outcome
        if delete:
            others = set(before) - {staged.committer}
            if set(out.removed) != others or out.added or staged.sender_type != SenderType.member:
                raise DSFailure(DSErrorCode.invalid_delete, "delete group must remove every other member")
        new_tokens = self._tokens(g, staged)
        # the commit goes to every member of the old epoch but the committer
        # (removed ones included: they learn of their removal); built on the
        # old tree, before the merge drops the removed leaves, and the tokens
        # this commit installs (a rotation revokes the old token at once)
        # (a joiner may take a leaf removed by the same commit: that leaf's
        # recipient is the removed client, with its own old token)
        rotated = {i: t for i, t in new_tokens.items() if i not in out.removed}
        fan = self._fanout(g, msg, [i for i in before if i != staged.committer], rotated)
        try:
            obs.merge(staged, _mls_pgi(update.partial_group_info))
        except (MLSError, ValidationError) as e:
            raise DSFailure(DSErrorCode.invalid_message, f"PartialGroupInfo: {e}") from None
        for i in out.removed:
            g.tokens.pop(i, None)
        g.tokens.update(new_tokens)
        for i in out.removed:
            self._forget_joiner(g, i)
        if out.added:
            refs = {i: obs.suite.make_key_package_ref(kp.encode()) for i, kp in out.added}
            keys = {i: kp.leaf_node.signature_key for i, kp in out.added}
            g.past[obs.epoch] = PastEpoch(obs.ratchet_tree(), keys, refs)
            for i, ref in refs.items():
                added_refs[ref] = i
                self.joiners[(obs.group_id, ref)] = (obs.group_id, obs.epoch, i)
        if staged.sender_type == SenderType.member:
            self._joined(g, staged.committer)
        return fan

    def _forget_joiner(self, g: HubGroup, leaf: int) -> None:
        for epoch in list(g.past):
            self._forget(g, epoch, leaf)

    def _tokens(self, g: HubGroup, staged: ObservedCommit) -> dict[int, FanoutAuthToken]:
        """The FanoutAuthTokens this commit brings [C11]."""
        out: dict[int, FanoutAuthToken] = {}
        for i, kp in staged.outcome.added:
            t = fanout_token(kp.extensions)
            if t is None:
                raise DSFailure(DSErrorCode.not_allowed, f"joiner at leaf {i} has no FanoutAuth KeyPackage extension")
            out[i] = t
        changed = set(staged.outcome.updated)
        if staged.message.content.commit is not None and staged.message.content.commit.path is not None:
            changed.add(staged.committer)
        for i in changed:
            leaf = staged.tree.leaf(i)
            t = fanout_token(leaf.extensions) if leaf is not None else None
            if t is not None:
                out[i] = t
            elif staged.sender_type == SenderType.new_member_commit and i == staged.committer:
                raise DSFailure(DSErrorCode.not_allowed, "external joiner's leaf has no FanoutAuth extension")
        return out
