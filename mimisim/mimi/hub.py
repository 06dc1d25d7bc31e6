"""The hub of a MIMI room: the room state a hub keeps and the four endpoints it serves.

draft-ietf-mimi-protocol ("Server State", "Relation between MIMI state and
cryptographic state") makes the hub the arbiter of a room: every handshake
and application message goes through it, it checks them against the MLS
group it follows (:class:`~mimisim.mls.observer.GroupObserver`) and the
room's policy (:mod:`mimisim.mimi.policy`), and fans accepted ones out to the
providers of the room's participants.

One :class:`HubRoom` per room. Its endpoints take the request body, the
authenticated peer domain and the simulated time, and return a
:class:`HubResult`: the HTTP response, the fanout plan (one
:class:`FanoutItem` per FanoutMessage and target domain, in the order the
hub wants them delivered) and trace events. The module is sans-IO: no clock
(``now_ms`` is an argument; timestamps on the wire are
``epoch_base_ms + now_ms``), no entropy except the injected ``rng``.

Errors are values. A handler never raises on bad input: a body that does not
decode is HTTP 400; a well-formed request the hub refuses gets the draft's
code (``wrongEpoch``, ``notAllowed``, ``invalidProposal``, ``epochTooOld``,
``notAuthorized``). Every handler validates on staged copies (a shallow copy
of the observer, new lists) and commits the new state in one assignment
block at the end, so a refused request leaves :meth:`HubRoom.digest`
unchanged.

Choices where the drafts are silent are listed in ``docs/mimi-choices.md``
("Hub"); the docstrings below say why at the point of use.
"""

from __future__ import annotations

import copy
import hashlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from mimisim.codec import DecodeError, EncodeError
from mimisim.mimi import franking as F
from mimisim.mimi import policy as P
from mimisim.mimi import wire as W
from mimisim.mimi.identity import (
    UriError,
    client_of_identity,
    domain_of,
    group_id_of_room,
    hub_of_room,
    parse,
    user_of_client,
)
from mimisim.mimi.transport import Event, MimiResponse, bad_request, created, forbidden, not_found
from mimisim.mls.crypto import CipherSuite, CryptoError, RandomSource
from mimisim.mls.errors import MLSError, ProposalError, ReplayError, WrongEpochError
from mimisim.mls.observer import GroupObserver, ObservedCommit, external_proposal
from mimisim.mls.proposals import CachedProposal, ResolvedProposal, apply_proposals, external_senders
from mimisim.mls.structs import (
    AppDataDictionary,
    AppDataUpdate,
    AppDataUpdateOperation,
    AuthenticatedContent,
    Credential,
    CredentialType,
    ExtensionType,
    ExternalSender,
    GroupInfo,
    HPKECiphertext,
    KeyPackage,
    LeafNode,
    MLSMessage,
    Node,
    PartialGroupInfo,
    Proposal,
    ProposalType,
    PublicMessage,
    RatchetTreeExt,
    RatchetTreeOption,
    RatchetTreePresence,
    RatchetTreeRepresentation,
    Remove,
    Sender,
    SenderType,
    WireFormat,
    find_extension,
)
from mimisim.mls.tree import RatchetTree

C = W.Capability
CID = W.ComponentId

#: Past epochs whose application messages /submitMessage still accepts
#: (0: only the current epoch). [P] leaves it to the hub ("epochTooOld
#: indicates that the hub provider is using a new MLS epoch").
DEFAULT_MAX_PAST_EPOCHS = 0

#: MIMI components (0x0020-0x0030). Those without a client-side rule in
#: :mod:`mimisim.mimi.policy` (the participant list, room metadata and the
#: policy components have one) -- e.g. ``franking_agent`` -- only change
#: through the hub.
MIMI_COMPONENTS = range(0x0020, 0x0031)


class HubError(ValueError):
    """An invalid room creation (the only hub call that raises: it is local to
    the hub's provider, not a MIMI request with a response code)."""


#: How many accepted application messages a hub remembers for /submitMessage idempotency.
RECENT_SUBMITS = 1024


def state_tag(tree_hash: bytes, participants: dict[str, int], epoch_authenticator: bytes | None = None) -> str:
    """A short fingerprint of a room's state for trace details:
    ``tree=<8 hex> plist=<8 hex>`` (plus ``auth=<8 hex>`` for a member, who
    knows the epoch authenticator; the hub does not). The agreement invariant
    compares these between the hub's ``hub.accept`` and members' ``client.epoch``
    rows without any live object."""
    plist = hashlib.sha256(
        "\n".join(f"{u}:{r}" for u, r in sorted(participants.items())).encode()
    ).hexdigest()[:8]
    tag = f"tree={tree_hash.hex()[:8]} plist={plist}"
    if epoch_authenticator is not None:
        tag += f" auth={epoch_authenticator.hex()[:8]}"
    return tag


def role_changes_tag(before: dict[str, int], after: dict[str, int]) -> str:
    """`` changes=<user>:<old>><new>,...`` (empty when no role changed), for
    the policy invariant: with the committer's ``role=`` it lets a checker
    replay the participant list from the trace alone and ask whether the
    committer's role allowed each change."""
    changed = [
        f"{u}:{before.get(u, 0)}>{after.get(u, 0)}"
        for u in sorted(set(before) | set(after))
        if before.get(u, 0) != after.get(u, 0)
    ]
    return f" changes={','.join(changed)}" if changed else ""


def msg_id_of(mls_message_bytes: bytes) -> str:
    """A stable id of one MLS message end to end: the first 16 hex digits of
    SHA-256 over the encoded MLSMessage.

    SHA-256 is the hash of cipher suites 1-3; it is used for every suite so
    the id depends on the bytes only, not on which room or provider computes it.
    """
    return hashlib.sha256(mls_message_bytes).hexdigest()[:16]


@dataclass(frozen=True)
class FanoutItem:
    """One FanoutMessage for one provider. ``kind`` is ``commit``,
    ``proposal``, ``application`` or ``welcome``. Items for the hub's own
    domain are delivered locally by its provider."""

    domain: str
    body: bytes
    msg_id: str
    kind: str


@dataclass
class HubResult:
    """What one request produced: the HTTP response, the fanout plan (in
    delivery order) and trace events."""

    response: MimiResponse
    fanout: list[FanoutItem] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)


@dataclass(frozen=True)
class PendingEntry:
    """A proposal the hub accepted in the current epoch, as it arrived.

    The observer caches the decoded proposal; the hub also keeps the
    MLSMessage and acceptance time, which /groupInfo returns as -06
    ``PendingProposal``s, and who originated it.
    """

    ref: bytes
    message: bytes
    accepted_ms: int
    origin: str  # "client" | "hub"


@dataclass(frozen=True)
class AbuseRecord:
    """An accepted abuse report ([P6] Report abuse): when, from which
    provider, the encoded report, and the reported user."""

    accepted_ms: int
    from_domain: str
    alleged_abuser: str
    report: bytes


class _Reject(Exception):
    """Internal: a request refused with ``response``. Raised inside the
    handlers and turned into a :class:`HubResult` at their boundary."""

    def __init__(self, response: MimiResponse, detail: str) -> None:
        super().__init__(detail)
        self.response = response
        self.detail = detail


def _update_reject(resp: W.UpdateRoomResponse) -> _Reject:
    return _Reject(MimiResponse(200, resp.encode(), resp.response_code.name), resp.error_description)


def _not_allowed(why: str) -> _Reject:
    return _update_reject(W.UpdateRoomResponse.not_allowed(why[:200]))


def _invalid(refs: Iterable[bytes], why: str) -> _Reject:
    return _update_reject(W.UpdateRoomResponse.invalid_proposal(list(refs), why[:200]))


def _bad(why: str) -> _Reject:
    return _Reject(bad_request(why), why)


def _client_of_leaf(leaf: LeafNode | None) -> str | None:
    """The client URI a leaf's basic credential names (see identity.py)."""
    if leaf is None:
        return None
    return _client_of_credential(leaf.credential)


def _client_of_credential(cred: Credential) -> str | None:
    if cred.credential_type != CredentialType.basic or cred.identity is None:
        return None
    return client_of_identity(cred.identity)


def _dictionary(extensions: Sequence) -> AppDataDictionary:
    raw = find_extension(list(extensions), ExtensionType.app_data_dictionary)
    return AppDataDictionary.decode(raw) if raw is not None else AppDataDictionary([])


def _participants_of(extensions: Sequence) -> list[tuple[str, int]]:
    raw = _dictionary(extensions).get(CID.participant_list)
    if raw is None:
        return []
    return [(p.user, p.role_index) for p in W.ParticipantListData.decode(raw).participants]


def _members(tree: RatchetTree) -> dict[int, str | None]:
    """Leaf index -> client URI (None for a credential that is not one)."""
    return {i: _client_of_leaf(tree.leaf(i)) for i in tree.leaf_indices()}


def _user_or_none(client: str | None) -> str | None:
    if client is None:
        return None
    try:
        return user_of_client(client)
    except UriError:
        return None


def _hash_parts(h: hashlib._Hash, *parts: bytes | str | int) -> None:
    """Length-prefixed, so distinct part lists never hash alike."""
    for p in parts:
        if isinstance(p, int):
            b = p.to_bytes(8, "big", signed=True)
        elif isinstance(p, str):
            b = p.encode()
        else:
            b = bytes(p)
        h.update(len(b).to_bytes(4, "big") + b)


@dataclass
class HubRoom:
    """The state a hub keeps for one room ([P] "Server State") and its
    endpoints. Create with :meth:`create`.

    The room's policy (roles, capabilities, base policy), participant list
    and metadata live in the group's ``app_data_dictionary``; the hub reads
    them from the observer's GroupContext (the source of truth every member
    agrees on) and mirrors the participant list in :meth:`participants`.
    """

    room_uri: str
    hub_domain: str
    suite: CipherSuite
    observer: GroupObserver
    hub_signature_priv: bytes
    hub_signature_pub: bytes
    hub_franking_key: bytes
    rng: RandomSource
    epoch_base_ms: int
    max_past_epochs: int = DEFAULT_MAX_PAST_EPOCHS
    pending: list[PendingEntry] = field(default_factory=list)
    abuse_reports: list[AbuseRecord] = field(default_factory=list)
    #: Joining codes the room accepts (code -> role index a joiner gets).
    joining_codes: dict[bytes, int] = field(default_factory=dict)
    #: Clients allowed to join externally although their user is not a
    #: participant (client URI -> role), from a joining code or open join.
    join_grants: dict[str, int] = field(default_factory=dict)
    #: Users the hub is removing (propose_remove_user) until they are gone.
    removal_intents: list[str] = field(default_factory=list)
    last_commit: tuple[str, int] | None = None
    #: The provider that submitted ``last_commit`` (only it gets the retry answer).
    last_commit_from: str = ""
    # Application messages accepted lately: msg id -> (provider, response body).
    # A provider that retries /submitMessage after a lost answer gets the same
    # answer and the message is not fanned out twice (bounded: oldest go first).
    recent_submits: dict[str, tuple[str, bytes]] = field(default_factory=dict)
    created_ms: int = 0
    _participants: dict[str, int] = field(default_factory=dict)

    # ------------------------------------------------------------ creation

    @classmethod
    def create(
        cls,
        room_uri: str,
        group_info: bytes | GroupInfo | MLSMessage,
        ratchet_tree: Sequence[Node | None] | None,
        creator_client_uri: str,
        *,
        hub_domain: str,
        hub_signature_priv: bytes,
        hub_franking_key: bytes,
        rng: RandomSource,
        epoch_base_ms: int,
        now_ms: int,
        max_past_epochs: int = DEFAULT_MAX_PAST_EPOCHS,
    ) -> HubRoom:
        """Start hosting a room from the creator's signed GroupInfo.

        Required (else :class:`HubError`): the room URI is hosted by
        ``hub_domain``; the GroupInfo verifies with its tree; the group id
        is :func:`group_id_of_room`; the hub's signature key is in
        ``external_senders`` ([P] "Authenticating proposals": MUST); the
        participant list lists the creator's user with a non-banned role and
        every member's user likewise (the invariant every later commit keeps);
        the creator is a member; the room policy components decode; a
        ``franking_agent`` component, if present, holds the hub's franking
        signature key ([P6]). Without ``franking_agent`` the room works but
        messages are not franked. ``room_metadata``, if present, names this room.
        """
        try:
            if hub_of_room(room_uri) != hub_domain:
                raise HubError(f"{room_uri} is not hosted by {hub_domain}")
            if isinstance(group_info, bytes):
                group_info = _decode_group_info(group_info)
            components = P.hub_app_components()
            observer = GroupObserver.from_group_info(group_info, ratchet_tree, app_components=components)
        except (DecodeError, MLSError, UriError) as e:
            raise HubError(f"invalid GroupInfo: {e}") from None
        suite = observer.suite
        try:
            hub_pub = suite.signature_public_key(hub_signature_priv)
        except (CryptoError, ValueError) as e:
            raise HubError(f"bad hub signature key: {e}") from None
        if observer.group_id != group_id_of_room(room_uri):
            raise HubError("the group id is not the room's MLS group URI")
        room = cls(
            room_uri=room_uri,
            hub_domain=hub_domain,
            suite=suite,
            observer=observer,
            hub_signature_priv=hub_signature_priv,
            hub_signature_pub=hub_pub,
            hub_franking_key=hub_franking_key,
            rng=rng.fork(f"hub {room_uri}") if hasattr(rng, "fork") else rng,
            epoch_base_ms=epoch_base_ms,
            max_past_epochs=max_past_epochs,
            created_ms=epoch_base_ms + now_ms,
        )
        try:
            problem = room._check_room_state(observer.context.extensions, observer.tree)
        except (DecodeError, ValueError) as e:
            problem = f"malformed room state: {e}"
        if problem is not None:
            raise HubError(problem)
        members = _members(observer.tree)
        if creator_client_uri not in members.values():
            raise HubError(f"the creator {creator_client_uri} is not a member of the group")
        room._participants = dict(_participants_of(observer.context.extensions))
        return room

    def _check_room_state(self, extensions: Sequence, tree: RatchetTree, *, unlisted: Iterable[str] = ()) -> str | None:
        """The invariants of a room's group, checked at creation and after
        every commit: the hub is an external sender, the franking agent (if
        any) is the hub's, the policy decodes, every member is a client whose
        user is a participant with a role that is neither 0 nor banned
        (``unlisted`` users excepted: external joiners the hub is adding)."""
        senders = external_senders(extensions)
        if not any(s.signature_key == self.hub_signature_pub for s in senders):
            return "the hub's signature key is not in external_senders"
        d = _dictionary(extensions)
        fa = d.get(CID.franking_agent)
        if fa is not None and not F.is_hub_franking_agent(W.FrankingAgentData.decode(fa), self.hub_franking_key, self.suite):
            return "franking_agent does not hold the hub's franking key"
        meta = d.get(CID.room_metadata)
        if meta is not None and W.RoomMetaData.decode(meta).room_uri.uri != self.room_uri:
            return "room_metadata names another room"
        P.RoomPolicy.from_dictionary(d)  # raises ValueError/DecodeError when malformed
        roles = dict(_participants_of(extensions))
        skip = set(unlisted)
        for leaf, client in sorted(_members(tree).items()):
            if client is None:
                return f"member {leaf} has no MIMI client URI credential"
            user = user_of_client(client)
            if user in skip:
                continue
            role = roles.get(user, W.RoleIndex.no_role)
            if not P.is_active_role(role):
                return f"member {client} belongs to {user}, who is not an active participant (role {role})"
        return None

    # ------------------------------------------------------------ accessors

    @property
    def epoch(self) -> int:
        return self.observer.epoch

    @property
    def group_id(self) -> bytes:
        return self.observer.group_id

    def participants(self) -> dict[str, int]:
        """The committed participant list: user URI -> role index."""
        return dict(self._participants)

    def members(self) -> list[str]:
        """Client URIs of the group's members, sorted."""
        return sorted(c for c in _members(self.observer.tree).values() if c is not None)

    def follower_domains(self) -> list[str]:
        """Providers other than the hub with clients in the group, sorted."""
        return sorted({domain_of(c) for c in self.members()} - {self.hub_domain})

    def policy(self) -> P.RoomPolicy:
        """The committed room policy (roles, preauthorisation, base policy)."""
        return P.RoomPolicy.from_dictionary(_dictionary(self.observer.context.extensions))

    def room_metadata(self) -> W.RoomMetaData | None:
        raw = _dictionary(self.observer.context.extensions).get(CID.room_metadata)
        return W.RoomMetaData.decode(raw) if raw is not None else None

    def add_joining_code(self, code: bytes, role_index: int) -> None:
        """Accept ``code`` in /groupInfo requests; joiners get ``role_index``
        (provider-local configuration, like room creation)."""
        self.joining_codes[bytes(code)] = role_index

    def digest(self) -> bytes:
        """SHA-256 over a canonical encoding of the whole room state. Tests
        compare it around refused requests, which must leave it unchanged."""
        h = hashlib.sha256()
        o = self.observer
        _hash_parts(h, self.room_uri, self.hub_domain, o.context.encode(), RatchetTreeExt(o.ratchet_tree()).encode())
        _hash_parts(h, o.interim, o.confirmation_tag, o.signer, o.group_info_signature, int(o.tree_in_group_info))
        for e in o.group_info_extensions:
            _hash_parts(h, e.encode())
        for ref in sorted(o.proposals):
            cp = o.proposals[ref]
            _hash_parts(h, ref, cp.proposal.encode(), cp.sender.encode())
        for p in self.pending:
            _hash_parts(h, p.ref, p.message, p.accepted_ms, p.origin)
        for a in self.abuse_reports:
            _hash_parts(h, a.accepted_ms, a.from_domain, a.alleged_abuser, a.report)
        for code in sorted(self.joining_codes):
            _hash_parts(h, code, self.joining_codes[code])
        for client in sorted(self.join_grants):
            _hash_parts(h, client, self.join_grants[client])
        for user in sorted(self.removal_intents):
            _hash_parts(h, user)
        if self.last_commit is not None:
            _hash_parts(h, *self.last_commit, self.last_commit_from)
        for m, (d, b) in self.recent_submits.items():
            _hash_parts(h, m, d, b)
        for user in sorted(self._participants):
            _hash_parts(h, user, self._participants[user])
        return h.digest()

    # ------------------------------------------------------------ room-state helpers

    def _ts(self, now_ms: int) -> int:
        return self.epoch_base_ms + now_ms

    def _hub_sender_index(self, extensions: Sequence | None = None) -> int:
        senders = external_senders(self.observer.context.extensions if extensions is None else extensions)
        for i, s in enumerate(senders):
            if s.signature_key == self.hub_signature_pub:
                return i
        raise MLSError("the hub is not an external sender")

    def _committed_list_bytes(self) -> bytes | None:
        return _dictionary(self.observer.context.extensions).get(CID.participant_list)

    def _pending_list_updates(self, obs: GroupObserver | None = None) -> list[bytes]:
        """The participant-list updates of the cached proposals, in cache order."""
        o = obs or self.observer
        out = []
        for cp in o.proposals.values():
            b = cp.proposal.body
            if cp.proposal.proposal_type == ProposalType.app_data_update and b.component_id == CID.participant_list:
                if b.op == AppDataUpdateOperation.update and b.update is not None:
                    out.append(b.update)
        return out

    def _list_after(self, updates: list[bytes]) -> dict[str, int]:
        """The participant list after ``updates`` (applied together, as one
        commit would). Raises ValueError/DecodeError when they conflict."""
        current = self._committed_list_bytes()
        if not updates:
            return dict(_participants_of_bytes(current))
        return dict(_participants_of_bytes(P.apply_participant_list_update(current, list(updates))))

    def _effective_roles(self) -> dict[str, int]:
        """[P] "Room state": an accepted change applies to the room state at
        once, before it is committed. The hub uses this view to restrict
        removed and banned users."""
        try:
            return self._list_after(self._pending_list_updates())
        except (ValueError, DecodeError):
            return dict(self._participants)

    def _clients_of(self, user: str, tree: RatchetTree | None = None) -> list[tuple[int, str]]:
        t = tree or self.observer.tree
        return [(i, c) for i, c in sorted(_members(t).items()) if c is not None and _user_or_none(c) == user]

    # ------------------------------------------------------------ results

    def _event(self, kind: str, epoch: int | None, msg_id: str, status: str, detail: str, peer: str = "") -> Event:
        return Event(kind, room=self.room_uri, epoch=epoch, msg_id=msg_id, status=status, detail=detail, peer=peer)

    def _rejected(self, r: _Reject, epoch: int | None, msg_id: str, what: str, peer: str) -> HubResult:
        status = r.response.code or str(r.response.status)
        detail = f"{what}: {r.detail}" if r.detail else what
        return HubResult(r.response, [], [self._event("hub.reject", epoch, msg_id, status, detail[:300], peer)])

    def _guard(self, what: str, peer: str, fn: Callable[[list[str], list[int | None]], HubResult]) -> HubResult:
        """Run a handler; turn every refusal and every input error into a
        response. ``fn`` records the msg id and epoch it learns in the two
        one-element lists so a rejection event can name them."""
        mid: list[str] = [""]
        ep: list[int | None] = [None]
        try:
            return fn(mid, ep)
        except _Reject as r:
            return self._rejected(r, ep[0], mid[0], what, peer)
        except (DecodeError, EncodeError, UriError) as e:
            return self._rejected(_bad(f"malformed: {e}"), ep[0], mid[0], what, peer)
        except (MLSError, CryptoError, ValueError) as e:
            return self._rejected(_bad(f"invalid: {e}"), ep[0], mid[0], what, peer)

    # ================================================================ /update

    def handle_update(
        self, body: bytes, from_domain: str, now_ms: int, routing: Callable[[bytes], str | None]
    ) -> HubResult:
        """``POST /update/{roomId}``: proposals or a commit ([P] Update Room State)."""

        def run(mid: list[str], ep: list[int | None]) -> HubResult:
            req = W.UpdateRequest.decode(body)
            bundle = req.bundle
            msg = bundle.proposal_or_commit
            mid[0] = msg_id_of(msg.encode())
            ep[0] = msg.body.content.epoch
            if bundle.kind == W.MessageKind.commit:
                return self._update_commit(bundle, mid[0], from_domain, now_ms, routing)
            return self._update_proposals(bundle, mid[0], from_domain, now_ms)

        return self._guard("POST /update", from_domain, run)

    # ------------------------------------------------------------ proposals

    def _check_group_and_epoch(self, messages: Sequence[MLSMessage]) -> None:
        for m in messages:
            c = m.body.content
            if c.group_id != self.group_id:
                raise _bad("message for another group")
        for m in messages:
            if m.body.content.epoch != self.epoch:
                raise _update_reject(
                    W.UpdateRoomResponse.wrong_epoch(self.epoch, f"message epoch {m.body.content.epoch}")
                )

    def _proposal_ref(self, pm: PublicMessage) -> bytes:
        ac = AuthenticatedContent(WireFormat.public_message, pm.content, pm.auth)
        return self.suite.make_proposal_ref(ac.encode())

    def _update_proposals(self, bundle: W.HandshakeBundle, mid: str, from_domain: str, now_ms: int) -> HubResult:
        messages = [bundle.proposal_or_commit, *(bundle.more_proposals or [])]
        self._check_group_and_epoch(messages)
        refs = [self._proposal_ref(m.body) for m in messages]
        if len(set(refs)) != len(refs):
            raise _invalid([r for r in refs if refs.count(r) > 1][:1], "the same proposal twice in one request")
        known = [r for r in refs if r in self.observer.proposals]
        if known:
            if len(known) == len(refs):
                # A retry of a request the hub already accepted: same answer,
                # nothing fanned out again (the first fanout is under way).
                ts = next(p.accepted_ms for p in self.pending if p.ref == refs[0])
                resp = W.UpdateRoomResponse.success(ts, "duplicate")
                return HubResult(
                    MimiResponse(200, resp.encode(), "success"),
                    [],
                    [self._event("hub.accept", self.epoch, mid, "success", "proposals (duplicate)", from_domain)],
                )
            raise _invalid(known, "proposal already cached this epoch")
        staged = copy.copy(self.observer)
        staged.proposals = dict(self.observer.proposals)
        new: list[CachedProposal] = []
        for m, ref in zip(messages, refs, strict=True):
            try:
                cp = staged.process_proposal(m)
            except WrongEpochError as e:
                raise _update_reject(W.UpdateRoomResponse.wrong_epoch(self.epoch, str(e))) from None
            except ReplayError as e:
                raise _invalid([ref], str(e)) from None
            except MLSError as e:
                raise _invalid([ref], f"{e}") from None
            new.append(cp)
        # Who may send these, and do they fit the room policy?
        for m, cp in zip(messages, new, strict=True):
            self._authorise_proposal(cp.proposal, cp.sender, m.body, from_domain, new)
        # Every cached proposal must go into the next commit, so the cache as
        # a whole must be committable: refuse what conflicts with it.
        self._check_committable(staged, {cp.ref for cp in new})
        ts = self._ts(now_ms)
        entries = [PendingEntry(ref, m.encode(), ts, "client") for m, ref in zip(messages, refs, strict=True)]
        fm = W.FanoutMessage.proposal(ts, bundle.proposal_or_commit, list(bundle.more_proposals or []))
        fanout = self._fanout_to_room([fm], mid, "proposal", self.observer.tree, None)
        # commit
        self.observer = staged
        self.pending = [*self.pending, *entries]
        resp = W.UpdateRoomResponse.success(ts)
        kinds = ",".join(cp.proposal.proposal_type.name for cp in new)
        return HubResult(
            MimiResponse(200, resp.encode(), "success"),
            fanout,
            [self._event("hub.accept", self.epoch, mid, "success", f"proposals [{kinds}]", from_domain)],
        )

    def _check_committable(self, staged: GroupObserver, new_refs: set[bytes]) -> None:
        """Apply every cached proposal to a copy of the group, with no
        committer, as the next commit must. A conflict (two actions on one
        leaf, a user touched twice in the participant list...) is blamed on
        the new proposals."""
        resolved = [ResolvedProposal(cp.proposal, cp.sender, ref) for ref, cp in staged.proposals.items()]
        try:
            apply_proposals(
                self.suite, self.group_id, staged.context.extensions, staged.tree, resolved,
                Sender.new_member_commit(), app_components=staged.app_components,
            )
        except ProposalError as e:
            blamed = [r for r in e.refs if r in new_refs] or sorted(new_refs)
            raise _invalid(blamed, f"conflicts with the cached proposals: {e}") from None
        except (ValueError, DecodeError) as e:
            raise _invalid(sorted(new_refs), f"conflicts with the cached proposals: {e}") from None

    # ------------------------------------------------------------ authorisation

    def _actor(self, sender: Sender, pm: PublicMessage, from_domain: str) -> tuple[str, str | None, str | None]:
        """Who sent a handshake: (kind, client URI, user URI), with the
        provider check: a provider speaks only for its own clients (the TLS
        peer is ``from_domain``; [P] Transport layer). ``kind`` is
        ``member``, ``hub``, ``follower`` or ``joiner``."""
        st = sender.sender_type
        if st == SenderType.member:
            li = sender.leaf_index or 0
            leaf = self.observer.tree.leaf(li) if li < self.observer.tree.n_leaves else None
            client = _client_of_leaf(leaf)
            if client is None:
                raise _not_allowed(f"sender leaf {li} has no MIMI client credential")
            if domain_of(client) != from_domain:
                raise _not_allowed(f"{from_domain} cannot send for {client}")
            return "member", client, user_of_client(client)
        if st == SenderType.external:
            senders = external_senders(self.observer.context.extensions)
            es = senders[sender.sender_index or 0]
            if es.signature_key == self.hub_signature_pub:
                return "hub", None, None
            dom = _domain_of_credential(es.credential)
            if dom is None or dom != from_domain:
                raise _not_allowed(f"external sender {sender.sender_index} is not {from_domain}")
            return "follower", None, None
        if st == SenderType.new_member_proposal:
            kp = pm.content.proposal.body.key_package
            client = _client_of_credential(kp.leaf_node.credential)
        else:
            path = pm.content.commit.path
            client = _client_of_credential(path.leaf_node.credential) if path is not None else None
        if client is None:
            raise _not_allowed("the joiner has no MIMI client credential")
        if domain_of(client) != from_domain:
            raise _not_allowed(f"{from_domain} cannot send for {client}")
        return "joiner", client, user_of_client(client)

    def _authorise_proposal(
        self,
        proposal: Proposal,
        sender: Sender,
        pm: PublicMessage,
        from_domain: str,
        batch: Sequence[CachedProposal],
    ) -> None:
        """Policy check of one proposal sent alone (or with ``batch``)."""
        kind, client, user = self._actor(sender, pm, from_domain)
        if kind == "hub":
            return
        pol = self.policy()
        roles = self._effective_roles()
        batch_updates = [
            cp.proposal.body.update
            for cp in batch
            if cp.proposal.proposal_type == ProposalType.app_data_update
            and cp.proposal.body.component_id == CID.participant_list
            and cp.proposal.body.update is not None
        ]
        try:
            after = self._list_after(self._pending_list_updates() + batch_updates)
        except (ValueError, DecodeError):
            after = roles
        ref = self._proposal_ref(pm)
        self._authorise(pol, kind, client, user, proposal, roles, after, self.observer.tree, from_domain, ref)

    def _authorise(
        self,
        pol: P.RoomPolicy,
        kind: str,
        client: str | None,
        user: str | None,
        proposal: Proposal,
        roles: dict[str, int],
        after: dict[str, int],
        tree: RatchetTree,
        from_domain: str,
        ref: bytes | None = None,
    ) -> None:
        """The room-policy rules for one proposal from one actor ([P] Update
        Room State, [RP] Role Capabilities), asked of :mod:`mimisim.mimi.policy`.
        ``roles`` is the room's participant list now (accepted changes
        included), ``after`` the list once the proposals that go with this
        one are applied; ``ref`` names the proposal in an ``invalidProposal``
        answer (None when committed by value). Raises :class:`_Reject`."""
        t = proposal.proposal_type
        body = proposal.body
        if kind == "follower":
            # A follower may remove its own users' clients (e.g. a deleted
            # device) and its own users from the list, nothing else.
            if t == ProposalType.remove:
                target = _client_of_leaf(tree.leaf(body.removed))
                if target is not None and domain_of(target) == from_domain:
                    return
            raise _not_allowed(f"external proposals from followers may only remove their own clients, not {t.name}")
        if kind == "joiner":
            if t != ProposalType.add:
                raise _not_allowed("new members can only propose Add")
            assert user is not None
            role = roles.get(user, W.RoleIndex.no_role)
            if not P.is_active_role(role) or not pol.can(role, C.canAddOwnClient):
                raise _not_allowed(f"{user} may not add its own client")
            return
        assert client is not None and user is not None
        role = roles.get(user, W.RoleIndex.no_role)
        if not P.is_active_role(role):
            # [P] a removed or banned participant may only send Remove and
            # SelfRemove proposals for its own clients.
            if not P.may_send_proposal(role, t):
                raise _not_allowed(f"{user} is removed or banned: only Remove/SelfRemove of its own clients")
            if t == ProposalType.remove and _user_or_none(_client_of_leaf(tree.leaf(body.removed))) != user:
                raise _not_allowed(f"{user} is removed or banned: it may only remove its own clients")
            return
        if t == ProposalType.add:
            target_client = _client_of_credential(body.key_package.leaf_node.credential)
            target = _user_or_none(target_client)
            if target is None:
                raise _not_allowed("the added client has no MIMI client credential")
            target_role = after.get(target, W.RoleIndex.no_role)
            if not P.is_active_role(target_role):
                raise _not_allowed(f"{target} is not an active participant; add it to the participant list first")
            needed = C.canAddOwnClient if target == user else C.canAddParticipant
            if not pol.can(role, needed):
                raise _not_allowed(f"role {role} lacks {C(needed).name}")
            return
        if t in (ProposalType.remove, ProposalType.self_remove):
            if t == ProposalType.self_remove:
                target = user
            else:
                target = _user_or_none(_client_of_leaf(tree.leaf(body.removed)))
            if target is None:
                return  # a member without a MIMI credential: anyone may remove it
            leaving = not P.is_active_role(after.get(target, W.RoleIndex.no_role))
            verdict = P.check_client_removal(pol, user, role, target, leaving)
            if not verdict.ok:
                raise _not_allowed(verdict.reason)
            return
        if t == ProposalType.app_data_update:
            self._authorise_app_data(pol, client, user, role, body, roles, ref)
            return
        if t == ProposalType.group_context_extensions:
            old = _dictionary(self.observer.context.extensions)
            new_raw = find_extension(list(body.extensions), ExtensionType.app_data_dictionary)
            new = AppDataDictionary.decode(new_raw) if new_raw is not None else AppDataDictionary([])
            if new.encode() != old.encode():
                raise _not_allowed("room state changes use AppDataUpdate, not GroupContextExtensions")
            if not any(s.signature_key == self.hub_signature_pub for s in external_senders(body.extensions)):
                raise _not_allowed("the hub must stay in external_senders")
            return
        if t == ProposalType.reinit:
            raise _not_allowed("ReInit is not supported by this hub (the room's group id is fixed)")
        # Update, PreSharedKey: ordinary group maintenance by an active member.

    def _authorise_app_data(
        self,
        pol: P.RoomPolicy,
        client: str,
        user: str,
        role: int,
        body: AppDataUpdate,
        roles: dict[str, int],
        ref: bytes | None,
    ) -> None:
        """AppDataUpdate rules: participant list, room metadata and policy
        components as :mod:`mimisim.mimi.policy` says; other MIMI components
        (``franking_agent``...) and removing any MIMI component are the
        hub's alone; non-MIMI components are the application's business."""
        cid = body.component_id
        if body.op != AppDataUpdateOperation.update or body.update is None:
            if cid in MIMI_COMPONENTS:
                raise _not_allowed(f"component {cid:#06x} cannot be removed")
            return
        refs = [ref] if ref is not None else []
        if cid == CID.participant_list:
            active = {u for u in (_user_or_none(c) for c in _members(self.observer.tree).values()) if u is not None}
            verdict = P.check_participant_change(
                pol, self._committed_list_bytes(), body.update, user, roles,
                actor_claims=P.basic_credential_claims(client), active_users=active,
            )
        elif cid == CID.room_metadata:
            verdict = P.check_metadata_change(pol, self.room_metadata(), W.RoomMetaData.decode(body.update), role)
        elif cid in P.COMPONENT_CAPABILITY:
            verdict = P.check_policy_change(pol, cid, body.update, role)
        elif cid in MIMI_COMPONENTS:
            raise _not_allowed(f"component {cid:#06x} can only be changed by the hub")
        else:
            return
        if not verdict.ok:
            if verdict.code == W.UpdateResponseCode.invalidProposal:
                raise _invalid(refs, verdict.reason)
            raise _not_allowed(verdict.reason)

    # ------------------------------------------------------------ commits

    def _required_refs(self, staged: ObservedCommit) -> list[bytes]:
        """The cached proposals this commit must include ([P] Bob Leaves the
        Room: "the hub requires the client to include the cached proposals").

        A member commit must include all of them except its committer's own
        Update proposals (RFC 9420 forbids committing those; the UpdatePath
        replaces them). An external commit can only carry SelfRemoves by
        reference (RFC 9420 s.12.4.3.2, [EXT]), so only those are required;
        the others die with the epoch and the hub regenerates its own
        ([P6] Fanout: stapled ``externalProposals``).
        """
        out = []
        external = staged.sender_type == SenderType.new_member_commit
        for ref, cp in self.observer.proposals.items():
            t = cp.proposal.proposal_type
            if external:
                if t == ProposalType.self_remove:
                    out.append(ref)
                continue
            if (
                t == ProposalType.update
                and cp.sender.sender_type == SenderType.member
                and cp.sender.leaf_index == staged.committer
            ):
                continue
            out.append(ref)
        return out

    def _update_commit(
        self,
        bundle: W.HandshakeBundle,
        mid: str,
        from_domain: str,
        now_ms: int,
        routing: Callable[[bytes], str | None],
    ) -> HubResult:
        msg = bundle.proposal_or_commit
        pm: PublicMessage = msg.body
        c = pm.content
        if c.group_id != self.group_id:
            raise _bad("message for another group")
        if c.epoch != self.epoch:
            if self.last_commit is not None and self.last_commit[0] == mid:
                if from_domain != self.last_commit_from:
                    raise _not_allowed(f"a replay of {self.last_commit_from}'s commit")
                # A retry of the commit the hub accepted last: same answer, no
                # second fanout (HTTP retries after a lost response, failover).
                resp = W.UpdateRoomResponse.success(self.last_commit[1], "duplicate")
                ev = self._event("hub.accept", c.epoch, mid, "success", "commit (duplicate)", from_domain)
                return HubResult(MimiResponse(200, resp.encode(), "success"), [], [ev])
            raise _update_reject(W.UpdateRoomResponse.wrong_epoch(self.epoch, f"message epoch {c.epoch}"))
        if c.sender.sender_type not in (SenderType.member, SenderType.new_member_commit):
            raise _bad("only members and new members can commit")
        kind, client, user = self._actor(c.sender, pm, from_domain)
        assert client is not None and user is not None
        pol = self.policy()
        roles = self._effective_roles()
        if kind == "member" and not P.may_commit(roles.get(user, W.RoleIndex.no_role)):
            raise _not_allowed(f"{user} is removed or banned and cannot commit")
        try:
            staged = self.observer.stage_commit(msg)
        except WrongEpochError as e:
            raise _update_reject(W.UpdateRoomResponse.wrong_epoch(self.epoch, str(e))) from None
        except ProposalError as e:
            raise _invalid(e.refs, str(e)) from None
        missing = [r for r in self._required_refs(staged) if r not in set(staged.referenced)]
        if missing:
            raise _invalid(missing, f"the commit omits {len(missing)} cached proposal(s)")
        resolved = [
            (por.proposal, por.reference)
            if por.proposal is not None
            else (self.observer.proposals[por.reference].proposal, por.reference)
            for por in c.commit.proposals
        ]
        new_roles = dict(_participants_of(staged.context.extensions))
        unlisted: list[str] = []
        grant_role: int | None = None
        if kind == "member":
            for p, ref in resolved:
                if ref is None:
                    self._authorise(pol, kind, client, user, p, roles, new_roles, self.observer.tree, from_domain)
        else:
            grant_role = self._authorise_external_commit(pol, client, user, resolved, roles)
            if grant_role is not None:
                unlisted.append(user)
        self._check_commit_rules(resolved, staged)
        problem = self._check_room_state(staged.context.extensions, staged.tree, unlisted=unlisted)
        if problem is not None:
            raise _not_allowed(problem)
        # GroupInfo and ratchet tree for joiners.
        pgi = self._partial_group_info(bundle.group_info_option, staged)
        new_obs = copy.copy(self.observer)
        new_obs.proposals = dict(self.observer.proposals)
        try:
            new_obs.merge(staged, pgi)
        except MLSError as e:
            raise _bad(f"GroupInfo: {e}") from None
        tree_option = self._welcome_tree_option(bundle.ratchet_tree_option, staged)
        welcome_targets = self._welcome_targets(bundle.welcome, staged, routing)
        ts = self._ts(now_ms)
        # Hub proposals for the new epoch: pending removals that this commit
        # did not finish, and the participant-list entry of a granted joiner.
        grants = {user: grant_role} if grant_role is not None else {}
        intents, hub_msgs, hub_entries = self._hub_proposals(new_obs, self.removal_intents, grants, ts)
        # Fanout plan: the commit to everyone before and after (removed
        # clients learn of their removal), then each Welcome.
        fm = W.FanoutMessage.commit(ts, msg, hub_msgs)
        fanout = self._fanout_to_room([fm], mid, "commit", self.observer.tree, staged.tree)
        if bundle.welcome is not None:
            wmsg = MLSMessage.wrap(bundle.welcome)
            wbody = W.FanoutMessage.welcome(ts, wmsg, tree_option).encode()
            wid = msg_id_of(wmsg.encode())
            fanout += [FanoutItem(d, wbody, wid, "welcome") for d in welcome_targets]
        old_epoch = self.epoch
        detail = (
            f"commit by {client} epoch {old_epoch}->{old_epoch + 1}"
            f" +{len(staged.outcome.added)} -{len(staged.outcome.removed)}"
            + (" external" if kind == "joiner" else "")
            + " " + state_tag(new_obs.tree_hash, new_roles)
            + f" role={roles.get(user, W.RoleIndex.no_role)}"
            + role_changes_tag(self._participants, new_roles)
        )
        # commit
        self.observer = new_obs
        self.pending = hub_entries
        self.last_commit = (mid, ts)
        self.last_commit_from = from_domain
        self._participants = new_roles
        self.removal_intents = intents
        if kind == "joiner":
            self.join_grants = {k: v for k, v in self.join_grants.items() if k != client}
        resp = W.UpdateRoomResponse.success(ts)
        return HubResult(
            MimiResponse(200, resp.encode(), "success"),
            fanout,
            [self._event("hub.accept", old_epoch, mid, "success", detail, from_domain)],
        )

    def _authorise_external_commit(
        self,
        pol: P.RoomPolicy,
        client: str,
        user: str,
        resolved: Sequence[tuple[Proposal, bytes | None]],
        roles: dict[str, int],
    ) -> int | None:
        """[P] Claim group key information: external joins are for a new
        client of an existing participant (needs ``canAddOwnClient``), or for
        a user admitted by a joining code, open join or preauthorisation
        (:meth:`_join_role`). Returns the role to give an unlisted joiner
        (the hub proposes the participant-list entry right after the commit),
        or None for an existing participant."""
        for p, _ref in resolved:
            if p.proposal_type == ProposalType.remove:
                old = _client_of_leaf(self.observer.tree.leaf(p.body.removed))
                if _user_or_none(old) != user:
                    raise _not_allowed("an external commit may only remove an old client of the joiner's own user")
        role = roles.get(user, W.RoleIndex.no_role)
        if role == W.RoleIndex.banned:
            raise _not_allowed(f"{user} is banned")
        if role != W.RoleIndex.no_role:
            if not pol.can(role, C.canAddOwnClient):
                raise _not_allowed(f"role {role} lacks canAddOwnClient")
            return None
        grant = self.join_grants.get(client)
        if grant is None:
            grant = self._join_role(pol, client, None)
        if grant is None:
            raise _not_allowed(f"{user} is not a participant and has no joining code")
        return grant

    def _join_role(self, pol: P.RoomPolicy, client: str, code: bytes | None) -> int | None:
        """The role a non-participant may join as, or None ([RP] Membership
        Capabilities): a joining code the hub knows whose role role 0 may
        take with ``canUseJoinCode``; open join (``canOpenJoin`` on role 0);
        or the first preauthorised role holding ``canJoinIfPreauthorized``
        (claims of a basic credential: :func:`policy.basic_credential_claims`)."""
        if code is not None and code in self.joining_codes:
            role = self.joining_codes[code]
            if role in pol.join_code_roles():
                return role
        role = pol.open_join_role()
        if role is not None:
            return role
        pre = pol.preauthorized_role(P.basic_credential_claims(client))
        if pre is not None and P.is_active_role(pre) and pol.can(pre, C.canJoinIfPreauthorized):
            return pre
        return None

    def _check_commit_rules(self, resolved: Sequence[tuple[Proposal, bytes | None]], staged: ObservedCommit) -> None:
        """Rules on a commit as a whole ([P] Participant List, Room Metadata,
        [RP] Role-Based Access Control)."""
        by_cid: dict[int, list[tuple[bytes, bytes | None]]] = {}
        for p, ref in resolved:
            if p.proposal_type == ProposalType.app_data_update and p.body.update is not None:
                by_cid.setdefault(p.body.component_id, []).append((p.body.update, ref))
        meta = by_cid.get(CID.room_metadata, [])
        if len(meta) > 1:
            raise _invalid([r for _, r in meta if r is not None], "only one room_metadata update per commit")
        plist = by_cid.get(CID.participant_list, [])
        if plist:
            current = [u for u, _ in _participants_of(self.observer.context.extensions)]
            touched: list[str] = []
            only_removals = True
            for raw, _ref in plist:
                upd = W.ParticipantListUpdate.decode(raw)
                if upd.changed_role_participants or upd.added_participants:
                    only_removals = False
                for i in [c.user_index for c in upd.changed_role_participants] + list(upd.removed_indices):
                    touched.append(current[i] if i < len(current) else f"#{i}")
                touched += [a.user for a in upd.added_participants]
            if len(touched) != len(set(touched)):
                raise _invalid(
                    [r for _, r in plist if r is not None], "a commit touches one user twice in the participant list"
                )
            if by_cid.get(CID.roles_list):
                raise _invalid(
                    [r for _, r in by_cid[CID.roles_list] if r is not None],
                    "role definitions cannot change in a commit that changes the participant list",
                )
            if by_cid.get(CID.preauth_list) and not only_removals:
                raise _invalid(
                    [r for _, r in by_cid[CID.preauth_list] if r is not None],
                    "preauthorised users cannot change with participant additions or role changes",
                )

    def _partial_group_info(self, gio: W.GroupInfoOption, staged: ObservedCommit) -> PartialGroupInfo:
        """The committer's GroupInfo as a PartialGroupInfo ([RTO]); a full
        GroupInfo must be the one the hub would rebuild (same context,
        signer and confirmation tag; a ratchet_tree extension, if any, first)."""
        if gio.representation == W.GroupInfoRepresentation.partial:
            assert gio.partial_group_info is not None
            return gio.partial_group_info
        gi = gio.group_info
        assert gi is not None
        if (
            gi.group_context.encode() != staged.context.encode()
            or gi.signer != staged.committer
            or gi.confirmation_tag != staged.confirmation_tag
        ):
            raise _bad("the GroupInfo does not describe the commit's new epoch")
        has_tree = gi.extension(ExtensionType.ratchet_tree) is not None
        exts = [e for e in gi.extensions if e.extension_type != ExtensionType.ratchet_tree]
        presence = RatchetTreePresence.present if has_tree else RatchetTreePresence.no_ratchet_tree
        return PartialGroupInfo(presence, exts, gi.signature)

    def _welcome_tree_option(self, rto: RatchetTreeOption, staged: ObservedCommit) -> RatchetTreeOption:
        """What joiners get with the Welcome: the hub's full tree unless the
        committer said the tree travels another way (https URI, out of band).
        A ``full`` tree from the committer must be the hub's."""
        nodes = staged.tree.to_nodes()
        rep = rto.representation
        if rep == RatchetTreeRepresentation.full:
            if rto.ratchet_tree and RatchetTreeExt(rto.ratchet_tree).encode() != RatchetTreeExt(nodes).encode():
                raise _bad("the committer's ratchet tree differs from the hub's")
        if rep in (RatchetTreeRepresentation.https_uri, RatchetTreeRepresentation.out_of_band):
            return rto
        return RatchetTreeOption(RatchetTreeRepresentation.full, nodes, None, None)

    def _welcome_targets(
        self, welcome: object, staged: ObservedCommit, routing: Callable[[bytes], str | None]
    ) -> list[str]:
        """The providers a Welcome goes to ([P] Fanout: "the providers ...
        associated with the KeyPackageRef values in the secrets array"): by
        ``routing`` (where the hub saw the KeyPackage claimed), else the
        domain of the KeyPackage's client URI. The Welcome must name exactly
        the commit's new members."""
        added: dict[bytes, KeyPackage] = {
            self.suite.make_key_package_ref(kp.encode()): kp for _, kp in staged.outcome.added
        }
        if welcome is None:
            if added:
                raise _bad("a commit that adds members needs a Welcome")
            return []
        refs = [s.new_member for s in welcome.secrets]  # type: ignore[attr-defined]
        if welcome.cipher_suite != self.suite.suite_id:  # type: ignore[attr-defined]
            raise _bad("the Welcome's cipher suite is not the group's")
        if len(set(refs)) != len(refs) or set(refs) != set(added):
            raise _bad("the Welcome does not match the commit's Adds")
        domains = set()
        for ref in refs:
            d = routing(ref)
            if d is None:
                client = _client_of_credential(added[ref].leaf_node.credential)
                if client is None:
                    raise _bad("cannot route a Welcome for a KeyPackage without a MIMI client credential")
                d = domain_of(client)
            domains.add(d)
        return sorted(domains)

    # ------------------------------------------------------------ hub proposals

    def _hub_proposals(
        self, obs: GroupObserver, intents: Sequence[str], grants: dict[str, int], ts: int
    ) -> tuple[list[str], list[MLSMessage], list[PendingEntry]]:
        """Hub-originated external proposals for ``obs``'s epoch, cached in
        ``obs``: Remove of every remaining client of each user in
        ``intents``, and one participant-list AppDataUpdate that removes those
        users (when listed and the policy lets the hub change the list) and
        adds each granted joiner. Returns the users still to remove, the
        messages and their pending entries. ``obs`` must be a staged copy."""
        pol = P.RoomPolicy.from_dictionary(_dictionary(obs.context.extensions))
        listed = [u for u, _ in _participants_of(obs.context.extensions)]
        index = self._hub_sender_index(obs.context.extensions)
        proposals: list[Proposal] = []
        remaining: list[str] = []
        removed_idx: list[int] = []
        for user in sorted(set(intents)):
            clients = self._clients_of(user, obs.tree)
            unlist = user in listed and pol.hub_may_change_participants()
            if not clients and not unlist:
                continue  # gone, or only its list entry is left and the hub may not touch it
            remaining.append(user)
            proposals += [Proposal.of(Remove(leaf)) for leaf, _ in clients]
            if unlist:
                removed_idx.append(listed.index(user))
        added = [W.UserRolePair(u, r) for u, r in sorted(grants.items()) if u not in listed]
        if removed_idx or added:
            upd = W.ParticipantListUpdate([], sorted(removed_idx), added)
            proposals.append(Proposal.of(AppDataUpdate(CID.participant_list, AppDataUpdateOperation.update, upd.encode())))
        msgs: list[MLSMessage] = []
        entries: list[PendingEntry] = []
        for p in proposals:
            m = external_proposal(self.suite, obs.group_id, obs.epoch, index, self.hub_signature_priv, p)
            cp = obs.process_proposal(m)
            msgs.append(m)
            entries.append(PendingEntry(cp.ref, m.encode(), ts, "hub"))
        return remaining, msgs, entries

    def propose_remove_user(self, user_uri: str, now_ms: int) -> HubResult:
        """Hub-originated removal of a user (e.g. deleted at its provider):
        external Remove proposals for all its clients plus, when the policy
        lets the hub change the participant list, the AppDataUpdate removing
        it. Cached and fanned out like client proposals; the next commit must
        include them, and the hub regenerates them after an external commit
        until the user is gone."""

        def run(mid: list[str], ep: list[int | None]) -> HubResult:
            ep[0] = self.epoch
            parse(user_uri)
            if user_uri in self.removal_intents:
                return HubResult(MimiResponse(200, b"", "already pending"), [], [])
            staged = copy.copy(self.observer)
            staged.proposals = dict(self.observer.proposals)
            ts = self._ts(now_ms)
            remaining, msgs, entries = self._hub_proposals(staged, [user_uri], {}, ts)
            if not msgs:
                raise _Reject(not_found(f"{user_uri} has nothing to remove"), "nothing to remove")
            self._check_committable(staged, {e.ref for e in entries})
            mid[0] = msg_id_of(msgs[0].encode())
            fm = W.FanoutMessage.proposal(ts, msgs[0], msgs[1:])
            fanout = self._fanout_to_room([fm], mid[0], "proposal", self.observer.tree, None)
            # commit
            self.observer = staged
            self.pending = [*self.pending, *entries]
            self.removal_intents = sorted({*self.removal_intents, *remaining})
            resp = W.UpdateRoomResponse.success(ts)
            detail = f"hub removes {user_uri}: {len(msgs)} proposal(s)"
            return HubResult(
                MimiResponse(200, resp.encode(), "success"),
                fanout,
                [self._event("hub.accept", self.epoch, mid[0], "success", detail, self.hub_domain)],
            )

        return self._guard("hub removal", self.hub_domain, run)

    # ------------------------------------------------------------ fanout

    def _fanout_to_room(
        self,
        messages: Sequence[W.FanoutMessage],
        mid: str,
        kind: str,
        tree_before: RatchetTree,
        tree_after: RatchetTree | None,
    ) -> list[FanoutItem]:
        """One item per message and domain: the hub's own domain (its provider
        delivers locally) and every provider with clients in the group before
        or after the change, sorted by domain."""
        clients = list(_members(tree_before).values())
        if tree_after is not None:
            clients += list(_members(tree_after).values())
        domains = sorted({domain_of(c) for c in clients if c is not None} | {self.hub_domain})
        bodies = [m.encode() for m in messages]
        return [FanoutItem(d, b, mid, kind) for d in domains for b in bodies]

    # ================================================================ /submitMessage

    def handle_submit(self, body: bytes, from_domain: str, now_ms: int) -> HubResult:
        """``POST /submitMessage/{roomId}`` ([P] Submit a Message, [P6] franking)."""

        def refuse(resp: W.SubmitMessageResponse, why: str) -> _Reject:
            return _Reject(MimiResponse(200, resp.encode(), W.SubmitResponseCode(resp.status_code).name), why)

        def run(mid: list[str], ep: list[int | None]) -> HubResult:
            req = W.SubmitMessageRequest.decode(body)
            msg = req.app_message
            pm = msg.body
            mid[0] = msg_id_of(msg.encode())
            ep[0] = pm.epoch
            if pm.group_id != self.group_id:
                raise _bad("message for another group")
            if pm.epoch > self.epoch:
                raise refuse(W.SubmitMessageResponse.not_allowed(), f"epoch {pm.epoch} is ahead of the hub's {self.epoch}")
            if pm.epoch < self.epoch - self.max_past_epochs:
                raise refuse(W.SubmitMessageResponse.epoch_too_old(self.epoch), f"epoch {pm.epoch} < {self.epoch}")
            sender = req.sending_uri.uri
            try:
                if parse(sender).kind != "u":
                    raise UriError("not a user URI")
            except UriError:
                raise refuse(W.SubmitMessageResponse.not_allowed(), f"sendingUri {sender!r} is not a user URI") from None
            if domain_of(sender) != from_domain:
                raise refuse(W.SubmitMessageResponse.not_allowed(), f"{from_domain} cannot send for {sender}")
            role = self._effective_roles().get(sender, W.RoleIndex.no_role)
            if not P.is_active_role(role):
                raise refuse(W.SubmitMessageResponse.not_allowed(), f"{sender} is not an active participant")
            if not self._clients_of(sender):
                raise refuse(W.SubmitMessageResponse.not_allowed(), f"{sender} has no client in the group")
            if not P.may_send_message(self.policy(), role):
                raise refuse(W.SubmitMessageResponse.not_allowed(), f"role {role} lacks canSendMessage")
            seen = self.recent_submits.get(mid[0])
            if seen is not None and seen[0] == from_domain:
                return HubResult(
                    MimiResponse(200, seen[1], "accepted"), [],
                    [self._event("hub.accept", pm.epoch, mid[0], "accepted", "application (duplicate)", from_domain)],
                )
            ts = self._ts(now_ms)
            frank = self._frank(pm.authenticated_data, sender, ts)
            resp = W.SubmitMessageResponse.accepted(ts, frank)
            self.recent_submits[mid[0]] = (from_domain, resp.encode())
            while len(self.recent_submits) > RECENT_SUBMITS:
                del self.recent_submits[next(iter(self.recent_submits))]
            fm = W.FanoutMessage.application(ts, msg, frank)
            fanout = self._fanout_to_room([fm], mid[0], "application", self.observer.tree, None)
            detail = "application" + (" franked" if frank is not None else "") + f" sender={sender} role={role}"
            return HubResult(
                MimiResponse(200, resp.encode(), "accepted"),
                fanout,
                [self._event("hub.accept", pm.epoch, mid[0], "accepted", detail, from_domain)],
            )

        return self._guard("POST /submitMessage", from_domain, run)

    def _frank(self, authenticated_data: bytes, sender: str, ts: int) -> W.Frank | None:
        """[P6] Hub processing: frank a message whose AAD carries a
        ``frank_aad`` Safe AAD item, if the room has the hub as franking
        agent. AAD that is not a SafeAAD is the sender's business: the
        message is accepted unfranked."""
        if F.franking_agent_of(self.observer.context.extensions) is None:
            return None
        tag = F.frank_aad_of(authenticated_data)
        if tag is None:
            return None
        return F.server_frank(self.suite, self.hub_franking_key, tag, sender, self.room_uri, ts)

    # ================================================================ /groupInfo

    def handle_group_info(self, body: bytes, from_domain: str, now_ms: int) -> HubResult:
        """``POST /groupInfo/{roomId}`` ([P6] Claim group key information).

        The request must verify under its own signature key and carry a basic
        credential naming a client of ``from_domain``. Authorised: a client
        of a participant that is not banned; a holder of a valid joining
        code; anyone in an open-join room. The GroupInfo, the hub's ratchet
        tree (always ``full``) and every pending proposal are sealed to the
        request's ``groupInfoPublicKey`` with ``EncryptWithLabel(.,
        "GroupInfo and ratchet_tree encryption", room_id, .)``; the response
        is signed with the hub's external-sender key.
        """

        def refuse(status: W.GroupInfoCode, why: str) -> _Reject:
            resp = W.GroupInfoResponse.failure(self.room_uri, status)
            return _Reject(MimiResponse(200, resp.encode(), status.name), why)

        def run(mid: list[str], ep: list[int | None]) -> HubResult:
            req = W.GroupInfoRequest.decode(body)
            ep[0] = self.epoch
            if req.cipher_suite != self.suite.suite_id:
                raise refuse(W.GroupInfoCode.notAuthorized, "the hub signs with the room's cipher suite only")
            if not self.suite.verify_with_label(
                req.requesting_signature_key, b"GroupInfoRequestTBS", req.tbs().encode(), req.signature
            ):
                raise refuse(W.GroupInfoCode.notAuthorized, "bad request signature")
            client = _client_of_credential(req.requesting_credential)
            if client is None or domain_of(client) != from_domain:
                raise refuse(W.GroupInfoCode.notAuthorized, f"credential is not a client of {from_domain}")
            user = user_of_client(client)
            role = self._effective_roles().get(user, W.RoleIndex.no_role)
            grant: int | None = None
            if role == W.RoleIndex.banned:
                raise refuse(W.GroupInfoCode.notAuthorized, f"{user} is banned")
            if role == W.RoleIndex.no_role:
                grant = self._join_role(self.policy(), client, req.joining_code)
                if grant is None:
                    raise refuse(W.GroupInfoCode.notAuthorized, f"{user} is not a participant")
            try:
                gi = self.observer.group_info()
            except MLSError as e:
                raise refuse(W.GroupInfoCode.notAuthorized, f"no GroupInfo for this epoch: {e}") from None
            tree = RatchetTreeOption(RatchetTreeRepresentation.full, self.observer.ratchet_tree(), None, None)
            pend = [W.PendingProposal(MLSMessage.decode(p.message), p.accepted_ms) for p in self.pending]
            tbe = W.GroupInfoRatchetTreeTBE(gi, tree, pend).encode()
            try:
                kem_output, ct = self.suite.encrypt_with_label(
                    req.group_info_public_key, W.GROUP_INFO_ENCRYPTION_LABEL, self.room_uri.encode(), tbe, self.rng
                )
            except CryptoError as e:
                raise _bad(f"groupInfoPublicKey: {e}") from None
            senders = external_senders(self.observer.context.extensions)
            hub_sender = senders[self._hub_sender_index()]
            resp = W.GroupInfoResponse(
                W.MLS10, self.room_uri, W.GroupInfoCode.success, self.suite.suite_id,
                ExternalSender(hub_sender.signature_key, hub_sender.credential),
                HPKECiphertext(kem_output, ct), b"",
            )
            resp.signature = self.suite.sign_with_label(
                self.hub_signature_priv, b"GroupInfoResponseTBS", resp.tbs().encode()
            )
            # commit
            if grant is not None:
                self.join_grants = {**self.join_grants, client: grant}
            detail = f"groupInfo for {client}" + (f" (join as role {grant})" if grant is not None else "")
            return HubResult(
                MimiResponse(200, resp.encode(), "success"),
                [],
                [self._event("hub.accept", self.epoch, "", "success", detail, from_domain)],
            )

        return self._guard("POST /groupInfo", from_domain, run)

    # ================================================================ /reportAbuse

    def handle_report_abuse(self, body: bytes, from_domain: str, now_ms: int) -> HubResult:
        """``POST /reportAbuse/{roomId}`` ([P6] Report abuse): the hub checks
        every reported message's frank (its own server frank and franking
        signature) and records the report; 201 when accepted.

        A named ``reporting_user`` must belong to ``from_domain`` and hold
        ``canReportAbuse``; an anonymous report is accepted from any
        provider with participants in the room. A report with no message or
        a frank that does not verify is refused (403): the hub accepts only
        reports it can substantiate.
        """

        def run(mid: list[str], ep: list[int | None]) -> HubResult:
            report = W.AbuseReport.decode(body)
            ep[0] = self.epoch
            reporter = report.reporting_user.uri
            if reporter:
                if parse(reporter).kind != "u" or domain_of(reporter) != from_domain:
                    raise _Reject(forbidden(f"{from_domain} cannot report for {reporter}"), "reporter")
                role = self._participants.get(reporter, W.RoleIndex.no_role)
                if not P.is_active_role(role) or not self.policy().can(role, C.canReportAbuse):
                    raise _Reject(forbidden(f"{reporter} may not report abuse here"), "canReportAbuse")
            elif from_domain not in {domain_of(u) for u in self._participants} | {self.hub_domain}:
                raise _Reject(forbidden(f"{from_domain} has no participants here"), "reporter")
            if not report.messages:
                raise _Reject(forbidden("a report needs at least one franked message"), "no messages")
            for i, m in enumerate(report.messages):
                ok = F.verify_abusive_message(
                    self.suite, self.hub_franking_key, m, self.room_uri, report.alleged_abuser_uri.uri
                )
                if not ok:
                    raise _Reject(forbidden(f"the frank of message {i} does not verify"), f"message {i}")
            ts = self._ts(now_ms)
            rec = AbuseRecord(ts, from_domain, report.alleged_abuser_uri.uri, bytes(body))
            # commit
            self.abuse_reports = [*self.abuse_reports, rec]
            detail = f"abuse report on {rec.alleged_abuser} ({len(report.messages)} message(s))"
            return HubResult(created(), [], [self._event("hub.accept", self.epoch, "", "Created", detail, from_domain)])

        return self._guard("POST /reportAbuse", from_domain, run)


def _decode_group_info(data: bytes) -> GroupInfo:
    """A GroupInfo given as an MLSMessage or as the bare struct."""
    try:
        m = MLSMessage.decode(data)
    except DecodeError:
        return GroupInfo.decode(data)
    if m.wire_format != WireFormat.group_info:
        raise DecodeError("expected a GroupInfo")
    return m.body  # type: ignore[no-any-return]


def _participants_of_bytes(raw: bytes | None) -> list[tuple[str, int]]:
    if raw is None:
        return []
    return [(p.user, p.role_index) for p in W.ParticipantListData.decode(raw).participants]


def _domain_of_credential(cred: Credential) -> str | None:
    """The provider a follower's external-sender credential names: a basic
    identity that is ``mimi://<domain>`` or a bare domain."""
    if cred.credential_type != CredentialType.basic or cred.identity is None:
        return None
    try:
        s = cred.identity.decode()
        return domain_of(s) if s.startswith("mimi://") else parse("mimi://" + s).domain
    except (UnicodeDecodeError, UriError):
        return None


__all__ = [
    "AbuseRecord",
    "FanoutItem",
    "HubError",
    "HubResult",
    "HubRoom",
    "PendingEntry",
    "msg_id_of",
]
