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

The module is one of five: the rules of who may do what are pure
functions in :mod:`mimisim.mimi.hub_authz` (each returns a verdict this
module turns into the answer), ``/groupInfo`` and ``/reportAbuse`` are
:mod:`mimisim.mimi.hub_group_info` and :mod:`mimisim.mimi.hub_report_abuse`,
and the result types and group-reading helpers all of them share are in
:mod:`mimisim.mimi.hub_common` (re-exported here).

Choices where the drafts are silent are listed in ``docs/mimi-choices.md``
("Hub"); the docstrings below say why at the point of use.
"""

from __future__ import annotations

import copy
import hashlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from mimisim import events as E
from mimisim.codec import DecodeError, EncodeError
from mimisim.mimi import franking as F
from mimisim.mimi import hub_authz as A
from mimisim.mimi import policy as P
from mimisim.mimi import wire as W
from mimisim.mimi.hub_common import (
    CID,
    DEFAULT_MAX_PAST_EPOCHS,
    MIMI_COMPONENTS,
    RECENT_SUBMITS,
    AbuseRecord,
    FanoutItem,
    HubError,
    HubResult,
    PendingEntry,
    Reject,
    bad,
    client_of_credential,
    decode_group_info,
    dictionary_of,
    hash_parts,
    invalid,
    members_of,
    msg_id_of,
    not_allowed,
    participants_of,
    participants_of_bytes,
    plist_fingerprint,
    role_changes,
    role_changes_tag,
    state_tag,
    update_reject,
    user_or_none,
)
from mimisim.mimi.hub_group_info import handle_group_info
from mimisim.mimi.hub_report_abuse import handle_report_abuse
from mimisim.mimi.identity import UriError, domain_of, group_id_of_room, hub_of_room, parse, user_of_client
from mimisim.mimi.transport import Accepted, AnyEvent, Event, MimiResponse, not_found
from mimisim.mls.crypto import CipherSuite, CryptoError, RandomSource
from mimisim.mls.errors import MLSError, ProposalError, ReplayError, WrongEpochError
from mimisim.mls.observer import GroupObserver, ObservedCommit, external_proposal
from mimisim.mls.proposals import CachedProposal, ResolvedProposal, apply_proposals, external_senders
from mimisim.mls.structs import (
    AppDataUpdate,
    AppDataUpdateOperation,
    AuthenticatedContent,
    ExtensionType,
    GroupInfo,
    KeyPackage,
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
)
from mimisim.mls.tree import RatchetTree

#: How many epochs the hub keeps the tree of a Welcome whose joiner fetches
#: it (``welcome_tree: hub``): the joiner's /groupInfo may arrive after other
#: commits (the fanout scenario's setup adds users back to back), so not
#: ``max_past_epochs`` (0 by default), which bounds application messages.
WELCOME_TREE_EPOCHS = 64


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
    # Commits accepted lately: msg id -> (acceptance time, provider). A retry
    # of one of them gets its original ``success`` even after the room moved
    # on: the hub sends no commit back to a provider whose only member is the
    # committer, so the answer is that client's only proof of acceptance
    # (bounded like ``recent_submits``).
    recent_commits: dict[str, tuple[int, str]] = field(default_factory=dict)
    created_ms: int = 0
    #: When the hub stops fanning application messages out to a leaving
    #: user's clients: ``"commit"`` (default) once the commit removing them
    #: is accepted ([P6] s.5.3: the hub "MUST prevent any of its clients from
    #: ... receiving any additional application messages" once it "observes
    #: that an active participant has been removed"); ``"proposal"`` already
    #: once it accepted the user's own leave proposals (the draft is silent on
    #: that interval; docs/mimi-choices.md, "Leaving users").
    leave_delivery: str = "commit"
    _participants: dict[str, int] = field(default_factory=dict)
    #: How Welcomes carry the ratchet tree ([RTO] s.3): "inline" (``full``,
    #: the hub's tree, the default) or "hub" (``distribution_service``: the
    #: joiner fetches it with /groupInfo; docs/mimi-choices.md, "Ratchet tree
    #: options").
    welcome_tree: str = "inline"
    #: With ``welcome_tree == "hub"``: client URI -> (epoch, encoded
    #: ratchet_tree) of the Welcome that added it, so its /groupInfo gets the
    #: tree the Welcome needs even if the room moved on; kept
    #: :data:`WELCOME_TREE_EPOCHS` epochs (encoded: later commits must not
    #: change it).
    welcome_trees: dict[str, tuple[int, bytes]] = field(default_factory=dict)

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
        welcome_tree: str = "inline",
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
                group_info = decode_group_info(group_info)
            components = P.hub_app_components()
            observer = GroupObserver.from_group_info(group_info, ratchet_tree, app_components=components)
        except (DecodeError, MLSError, UriError, CryptoError) as e:
            # CryptoError: a cipher suite this implementation does not know
            # (UnsupportedCipherSuite), or key material that does not load.
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
            welcome_tree=welcome_tree,
        )
        try:
            problem = room._check_room_state(observer.context.extensions, observer.tree)
        except (DecodeError, ValueError) as e:
            problem = f"malformed room state: {e}"
        if problem is not None:
            raise HubError(problem)
        members = members_of(observer.tree)
        if creator_client_uri not in members.values():
            raise HubError(f"the creator {creator_client_uri} is not a member of the group")
        room._participants = dict(participants_of(observer.context.extensions))
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
        d = dictionary_of(extensions)
        fa = d.get(CID.franking_agent)
        if fa is not None and not F.is_hub_franking_agent(W.FrankingAgentData.decode(fa), self.hub_franking_key, self.suite):
            return "franking_agent does not hold the hub's franking key"
        meta = d.get(CID.room_metadata)
        if meta is not None and W.RoomMetaData.decode(meta).room_uri.uri != self.room_uri:
            return "room_metadata names another room"
        P.RoomPolicy.from_dictionary(d)  # raises ValueError/DecodeError when malformed
        roles = dict(participants_of(extensions))
        skip = set(unlisted)
        for leaf, client in sorted(members_of(tree).items()):
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
        return sorted(c for c in members_of(self.observer.tree).values() if c is not None)

    def follower_domains(self) -> list[str]:
        """Providers other than the hub with clients in the group, sorted."""
        return sorted({domain_of(c) for c in self.members()} - {self.hub_domain})

    def policy(self) -> P.RoomPolicy:
        """The committed room policy (roles, preauthorisation, base policy)."""
        return P.RoomPolicy.from_dictionary(dictionary_of(self.observer.context.extensions))

    def room_metadata(self) -> W.RoomMetaData | None:
        raw = dictionary_of(self.observer.context.extensions).get(CID.room_metadata)
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
        hash_parts(h, self.room_uri, self.hub_domain, o.context.encode(), RatchetTreeExt(o.ratchet_tree()).encode())
        hash_parts(h, o.interim, o.confirmation_tag, o.signer, o.group_info_signature, int(o.tree_in_group_info))
        for e in o.group_info_extensions:
            hash_parts(h, e.encode())
        for ref in sorted(o.proposals):
            cp = o.proposals[ref]
            hash_parts(h, ref, cp.proposal.encode(), cp.sender.encode())
        for p in self.pending:
            hash_parts(h, p.ref, p.message, p.accepted_ms, p.origin)
        for a in self.abuse_reports:
            hash_parts(h, a.accepted_ms, a.from_domain, a.alleged_abuser, a.report)
        for code in sorted(self.joining_codes):
            hash_parts(h, code, self.joining_codes[code])
        for client in sorted(self.join_grants):
            hash_parts(h, client, self.join_grants[client])
        for user in sorted(self.removal_intents):
            hash_parts(h, user)
        if self.last_commit is not None:
            hash_parts(h, *self.last_commit, self.last_commit_from)
        for m, (d, b) in self.recent_submits.items():
            hash_parts(h, m, d, b)
        for m, (ts, d) in self.recent_commits.items():
            hash_parts(h, m, ts, d)
        for user in sorted(self._participants):
            hash_parts(h, user, self._participants[user])
        return h.digest()

    # ------------------------------------------------------------ room-state helpers

    def _ts(self, now_ms: int) -> int:
        return self.epoch_base_ms + now_ms

    def hub_sender_index(self, extensions: Sequence | None = None) -> int:
        senders = external_senders(self.observer.context.extensions if extensions is None else extensions)
        for i, s in enumerate(senders):
            if s.signature_key == self.hub_signature_pub:
                return i
        raise MLSError("the hub is not an external sender")

    def _committed_list_bytes(self) -> bytes | None:
        return dictionary_of(self.observer.context.extensions).get(CID.participant_list)

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
            return dict(participants_of_bytes(current))
        return dict(participants_of_bytes(P.apply_participant_list_update(current, list(updates))))

    def effective_roles(self) -> dict[str, int]:
        """[P] "Room state": an accepted change applies to the room state at
        once, before it is committed. The hub uses this view to restrict
        removed and banned users."""
        try:
            return self._list_after(self._pending_list_updates())
        except (ValueError, DecodeError):
            return dict(self._participants)

    def _clients_of(self, user: str, tree: RatchetTree | None = None) -> list[tuple[int, str]]:
        t = tree or self.observer.tree
        return [(i, c) for i, c in sorted(members_of(t).items()) if c is not None and user_or_none(c) == user]

    # ------------------------------------------------------------ results

    def event(self, kind: str, epoch: int | None, msg_id: str, status: str, detail: str, peer: str = "") -> Event:
        return Event(kind, room=self.room_uri, epoch=epoch, msg_id=msg_id, status=status, detail=detail, peer=peer)

    _event = event  # the name the mutation tests patch around

    def _keep_welcome_tree(self, staged: ObservedCommit) -> None:
        """Remember the new epoch's tree for each client the commit adds
        (their Welcome says ``distribution_service``); forget entries older
        than ``max_past_epochs``."""
        encoded = RatchetTreeExt(staged.tree.to_nodes()).encode()
        for _, kp in staged.outcome.added:
            client = client_of_credential(kp.leaf_node.credential)
            if client is not None:
                self.welcome_trees[client] = (self.epoch, encoded)
        self.welcome_trees = {
            c: v for c, v in self.welcome_trees.items() if v[0] >= self.epoch - WELCOME_TREE_EPOCHS
        }

    def welcome_tree_for(self, client: str) -> list[Node | None]:
        """The tree a client's /groupInfo gets: the one of the Welcome that
        added it, if the hub keeps it, else the current epoch's."""
        kept = self.welcome_trees.get(client)
        return RatchetTreeExt.decode(kept[1]).nodes if kept is not None else self.observer.ratchet_tree()

    def accept_event(self, epoch: int | None, msg_id: str, status: str, peer: str, **fields: Any) -> E.HubAccept:
        """A typed ``hub.accept`` row of this room (``fields``: the columns
        of :class:`mimisim.events.HubAccept` that describe what was accepted)."""
        return E.HubAccept(room=self.room_uri, epoch=epoch, msg_id=msg_id, status=status, peer=peer, **fields)

    def _accepted(self, response: MimiResponse, fanout: Sequence[FanoutItem], event: AnyEvent) -> HubResult:
        """The result of an accepted input: ``event`` is its ``hub.accept``
        row, and the input is named in ``accepted`` (room, message id,
        epoch) for replication."""
        epoch = -1 if event.epoch is None else event.epoch
        return HubResult(response, tuple(fanout), (event,), (Accepted(self.room_uri, event.msg_id, epoch),))

    def _rejected(self, r: Reject, epoch: int | None, msg_id: str, what: str, peer: str) -> HubResult:
        status = r.response.code or str(r.response.status)
        ev = E.HubReject(room=self.room_uri, epoch=epoch, msg_id=msg_id, status=status, peer=peer, refused=what,
                         reason=r.detail)
        return HubResult(r.response, (), (ev,))

    def guard(self, what: str, peer: str, fn: Callable[[list[str], list[int | None]], HubResult]) -> HubResult:
        """Run a handler; turn every refusal and every input error into a
        response. ``fn`` records the msg id and epoch it learns in the two
        one-element lists so a rejection event can name them."""
        mid: list[str] = [""]
        ep: list[int | None] = [None]
        try:
            return fn(mid, ep)
        except Reject as r:
            return self._rejected(r, ep[0], mid[0], what, peer)
        except (DecodeError, EncodeError, UriError) as e:
            return self._rejected(bad(f"malformed: {e}"), ep[0], mid[0], what, peer)
        except (MLSError, CryptoError, ValueError) as e:
            return self._rejected(bad(f"invalid: {e}"), ep[0], mid[0], what, peer)

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

        return self.guard("POST /update", from_domain, run)

    # ------------------------------------------------------------ proposals

    def _check_group_and_epoch(self, messages: Sequence[MLSMessage]) -> None:
        for m in messages:
            c = m.body.content
            if c.group_id != self.group_id:
                raise bad("message for another group")
        for m in messages:
            if m.body.content.epoch != self.epoch:
                raise update_reject(
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
            raise invalid([r for r in refs if refs.count(r) > 1][:1], "the same proposal twice in one request")
        known = [r for r in refs if r in self.observer.proposals]
        if known:
            if len(known) == len(refs):
                # A retry of a request the hub already accepted: same answer,
                # nothing fanned out again (the first fanout is under way).
                ts = next(p.accepted_ms for p in self.pending if p.ref == refs[0])
                resp = W.UpdateRoomResponse.success(ts, "duplicate")
                return self._accepted(
                    MimiResponse(200, resp.encode(), "success"),
                    [],
                    self.accept_event(self.epoch, mid, "success", from_domain, message="proposal", duplicate=True),
                )
            raise invalid(known, "proposal already cached this epoch")
        staged = copy.copy(self.observer)
        staged.proposals = dict(self.observer.proposals)
        new: list[CachedProposal] = []
        for m, ref in zip(messages, refs, strict=True):
            try:
                cp = staged.process_proposal(m)
            except WrongEpochError as e:
                raise update_reject(W.UpdateRoomResponse.wrong_epoch(self.epoch, str(e))) from None
            except ReplayError as e:
                raise invalid([ref], str(e)) from None
            except MLSError as e:
                raise invalid([ref], f"{e}") from None
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
        sender = self._sender_clients(messages[0].body.content.sender, self.observer.tree)
        fanout = self._fanout_to_room([fm], mid, "proposal", self.observer.tree, sender)
        # commit
        self.observer = staged
        self.pending = [*self.pending, *entries]
        resp = W.UpdateRoomResponse.success(ts)
        kinds = tuple(cp.proposal.proposal_type.name for cp in new)
        return self._accepted(
            MimiResponse(200, resp.encode(), "success"),
            fanout,
            self.accept_event(self.epoch, mid, "success", from_domain, message="proposal", proposal_types=kinds),
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
            raise invalid(blamed, f"conflicts with the cached proposals: {e}") from None
        except (ValueError, DecodeError) as e:
            raise invalid(sorted(new_refs), f"conflicts with the cached proposals: {e}") from None

    # ------------------------------------------------------------ authorisation (rules: hub_authz)

    def _facts(self) -> A.RoomFacts:
        """The committed room state the authorisation rules read."""
        o = self.observer
        return A.RoomFacts(self.hub_signature_pub, o.context.extensions, o.tree, self.joining_codes, self.join_grants)

    def _actor(self, sender: Sender, pm: PublicMessage, from_domain: str) -> tuple[str, str | None, str | None]:
        """Who sent a handshake: (kind, client URI, user URI); see
        :func:`~mimisim.mimi.hub_authz.identify_actor`. Raises :class:`Reject`."""
        actor = A.identify_actor(self._facts(), sender, pm, from_domain)
        if isinstance(actor, A.Verdict):
            raise _rejection(actor)
        return actor.kind, actor.client, actor.user

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
        roles = self.effective_roles()
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
        _enforce(A.authorise_proposal(self._facts(), pol, A.Actor(kind, client, user), proposal, roles, after,
                                      from_domain, ref))

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
            raise bad("message for another group")
        if c.epoch != self.epoch:
            seen = self.recent_commits.get(mid)
            if seen is not None:
                if from_domain != seen[1]:
                    raise not_allowed(f"a replay of {seen[1]}'s commit")
                # A retry of a commit the hub accepted: same answer, no second
                # fanout (HTTP retries after a lost response, failover).
                resp = W.UpdateRoomResponse.success(seen[0], "duplicate")
                ev = self.accept_event(c.epoch, mid, "success", from_domain, message="commit", duplicate=True)
                return self._accepted(MimiResponse(200, resp.encode(), "success"), [], ev)
            raise update_reject(W.UpdateRoomResponse.wrong_epoch(self.epoch, f"message epoch {c.epoch}"))
        if c.sender.sender_type not in (SenderType.member, SenderType.new_member_commit):
            raise bad("only members and new members can commit")
        kind, client, user = self._actor(c.sender, pm, from_domain)
        assert client is not None and user is not None
        pol = self.policy()
        roles = self.effective_roles()
        if kind == "member" and not P.may_commit(roles.get(user, W.RoleIndex.no_role)):
            raise not_allowed(f"{user} is removed or banned and cannot commit")
        try:
            staged = self.observer.stage_commit(msg)
        except WrongEpochError as e:
            raise update_reject(W.UpdateRoomResponse.wrong_epoch(self.epoch, str(e))) from None
        except ProposalError as e:
            raise invalid(e.refs, str(e)) from None
        missing = [r for r in self._required_refs(staged) if r not in set(staged.referenced)]
        if missing:
            raise invalid(missing, f"the commit omits {len(missing)} cached proposal(s)")
        commit = c.commit
        assert commit is not None  # stage_commit accepted it as a commit
        resolved = [
            (por.proposal, por.reference)
            if por.proposal is not None
            else (self.observer.proposals[bytes(por.reference or b"")].proposal, por.reference)
            for por in commit.proposals
        ]
        new_roles = dict(participants_of(staged.context.extensions))
        unlisted: list[str] = []
        grant_role: int | None = None
        facts = self._facts()
        if kind == "member":
            actor = A.Actor(kind, client, user)
            for p, ref in resolved:
                if ref is None:
                    _enforce(A.authorise_proposal(facts, pol, actor, p, roles, new_roles, from_domain))
        else:
            verdict = A.authorise_external_commit(facts, pol, client, user, resolved, roles)
            _enforce(verdict)
            grant_role = verdict.role
            if grant_role is not None:
                unlisted.append(user)
        _enforce(A.check_commit_rules(facts, resolved))
        problem = self._check_room_state(staged.context.extensions, staged.tree, unlisted=unlisted)
        if problem is not None:
            raise not_allowed(problem)
        # GroupInfo and ratchet tree for joiners.
        gio, rto = bundle.group_info_option, bundle.ratchet_tree_option
        if gio is None or rto is None:
            raise bad("a commit needs a GroupInfo option and a ratchet tree option")
        pgi = _partial_group_info(gio, staged)
        new_obs = copy.copy(self.observer)
        new_obs.proposals = dict(self.observer.proposals)
        try:
            new_obs.merge(staged, pgi)
        except MLSError as e:
            raise bad(f"GroupInfo: {e}") from None
        tree_option = _welcome_tree_option(rto, staged, self.welcome_tree == "hub")
        welcome_targets = _welcome_targets(self.suite, bundle.welcome, staged, routing)
        ts = self._ts(now_ms)
        # Hub proposals for the new epoch: pending removals that this commit
        # did not finish, and the participant-list entry of a granted joiner.
        grants = {user: grant_role} if grant_role is not None else {}
        intents, hub_msgs, hub_entries = self._hub_proposals(new_obs, self.removal_intents, grants, ts)
        # Fanout plan: the commit to the members before it but the committer
        # (removed clients learn of their removal), then each Welcome to the
        # new members' providers only.
        fm = W.FanoutMessage.commit(ts, msg, hub_msgs)
        fanout = self._fanout_to_room([fm], mid, "commit", self.observer.tree,
                                      self._sender_clients(c.sender, self.observer.tree))
        if bundle.welcome is not None:
            wmsg = MLSMessage.wrap(bundle.welcome)
            wbody = W.FanoutMessage.welcome(ts, wmsg, tree_option).encode()
            wid = msg_id_of(wmsg.encode())
            fanout += [FanoutItem(d, wbody, wid, "welcome") for d in welcome_targets]
        old_epoch = self.epoch
        accept = self.accept_event(
            old_epoch, mid, "success", from_domain, message="commit", committer=client, epoch_from=old_epoch,
            epoch_to=old_epoch + 1, added=len(staged.outcome.added), removed=len(staged.outcome.removed),
            external=kind == "joiner", tree_fp=new_obs.tree_hash.hex()[:8], plist_fp=plist_fingerprint(new_roles),
            role=int(roles.get(user, W.RoleIndex.no_role)), role_changes=role_changes(self._participants, new_roles),
        )
        # commit
        self.observer = new_obs
        self.pending = hub_entries
        self.last_commit = (mid, ts)
        self.last_commit_from = from_domain
        self.recent_commits[mid] = (ts, from_domain)
        while len(self.recent_commits) > RECENT_SUBMITS:
            del self.recent_commits[next(iter(self.recent_commits))]
        self._participants = new_roles
        self.removal_intents = intents
        if tree_option.representation == RatchetTreeRepresentation.distribution_service and bundle.welcome is not None:
            self._keep_welcome_tree(staged)
        if kind == "joiner":
            self.join_grants = {k: v for k, v in self.join_grants.items() if k != client}
        resp = W.UpdateRoomResponse.success(ts)
        return self._accepted(
            MimiResponse(200, resp.encode(), "success"),
            fanout,
            accept,
        )

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
        pol = P.RoomPolicy.from_dictionary(dictionary_of(obs.context.extensions))
        listed = [u for u, _ in participants_of(obs.context.extensions)]
        index = self.hub_sender_index(obs.context.extensions)
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
                return HubResult(MimiResponse(200, b"", "already pending"))
            staged = copy.copy(self.observer)
            staged.proposals = dict(self.observer.proposals)
            ts = self._ts(now_ms)
            remaining, msgs, entries = self._hub_proposals(staged, [user_uri], {}, ts)
            if not msgs:
                raise Reject(not_found(f"{user_uri} has nothing to remove"), "nothing to remove")
            self._check_committable(staged, {e.ref for e in entries})
            mid[0] = msg_id_of(msgs[0].encode())
            fm = W.FanoutMessage.proposal(ts, msgs[0], msgs[1:])
            fanout = self._fanout_to_room([fm], mid[0], "proposal", self.observer.tree)
            # commit
            self.observer = staged
            self.pending = [*self.pending, *entries]
            self.removal_intents = sorted({*self.removal_intents, *remaining})
            resp = W.UpdateRoomResponse.success(ts)
            return self._accepted(
                MimiResponse(200, resp.encode(), "success"),
                fanout,
                self.accept_event(self.epoch, mid[0], "success", self.hub_domain, message="hub_remove",
                                  target_user=user_uri, proposals=len(msgs)),
            )

        return self.guard("hub removal", self.hub_domain, run)

    # ------------------------------------------------------------ fanout

    def _fanout_to_room(
        self,
        messages: Sequence[W.FanoutMessage],
        mid: str,
        kind: str,
        tree_before: RatchetTree,
        sender: frozenset[str] = frozenset(),
    ) -> list[FanoutItem]:
        """One item per message and provider that has a recipient for it:
        the clients in the group when the hub accepted the event
        (``tree_before``: for a commit, the removed clients learn of their
        removal; the clients it adds get only the Welcome), except
        ``sender``, the client(s) known to have sent it ([P] Fanout: the hub
        "is not expected to forward the client's own message to the client
        or its provider"; a provider with another member still gets it).
        The hub's own domain is one provider among the others (its clients
        are delivered locally). Sorted by domain."""
        domains = sorted({
            domain_of(c) for c in members_of(tree_before).values() if c is not None and c not in sender
        })
        bodies = [m.encode() for m in messages]
        return [FanoutItem(d, b, mid, kind) for d in domains for b in bodies]

    def leaving_clients(self) -> frozenset[str]:
        """The clients that no longer get application messages although still
        members: with ``leave_delivery == "proposal"``, those a pending leave
        removes (a Remove of a client sent by a client of the same user, or a
        SelfRemove); empty with ``"commit"``."""
        if self.leave_delivery != "proposal":
            return frozenset()
        members = members_of(self.observer.tree)
        out: set[str] = set()
        for cp in self.observer.pending_proposals():
            if cp.sender.sender_type != SenderType.member or cp.sender.leaf_index is None:
                continue
            by = members.get(cp.sender.leaf_index)
            t = cp.proposal.proposal_type
            if t == ProposalType.self_remove:
                target = by
            elif t == ProposalType.remove:
                target = members.get(cp.proposal.body.removed)
            else:
                continue
            if by is not None and target is not None and user_or_none(by) == user_or_none(target):
                out.add(target)
        return frozenset(out)

    def _sender_clients(self, sender: Sender, tree: RatchetTree) -> frozenset[str]:
        """The client URI of a member sender (empty for any other sender)."""
        if sender.sender_type != SenderType.member or sender.leaf_index is None:
            return frozenset()
        c = members_of(tree).get(sender.leaf_index)
        return frozenset() if c is None else frozenset({c})

    def _sending_user_client(self, user: str, from_domain: str) -> frozenset[str]:
        """The client that sent an application message, when the hub can tell
        (a PrivateMessage hides its leaf): the sending user's only client in
        the group, on the requesting provider."""
        clients = [c for _, c in self._clients_of(user)]
        if len(clients) == 1 and domain_of(clients[0]) == from_domain:
            return frozenset(clients)
        return frozenset()

    # ================================================================ /submitMessage

    def handle_submit(self, body: bytes, from_domain: str, now_ms: int) -> HubResult:
        """``POST /submitMessage/{roomId}`` ([P] Submit a Message, [P6] franking)."""

        def refuse(resp: W.SubmitMessageResponse, why: str) -> Reject:
            return Reject(MimiResponse(200, resp.encode(), W.SubmitResponseCode(resp.status_code).name), why)

        def run(mid: list[str], ep: list[int | None]) -> HubResult:
            req = W.SubmitMessageRequest.decode(body)
            msg = req.app_message
            pm = msg.body
            mid[0] = msg_id_of(msg.encode())
            ep[0] = pm.epoch
            if pm.group_id != self.group_id:
                raise bad("message for another group")
            seen = self.recent_submits.get(mid[0])
            if seen is not None and seen[0] == from_domain:
                # A retry of a message this hub accepted (its answer was lost,
                # a provider crashed): the first answer, whatever the room's
                # epoch is now, and no second fanout.
                return self._accepted(
                    MimiResponse(200, seen[1], "accepted"), [],
                    self.accept_event(pm.epoch, mid[0], "accepted", from_domain, message="application",
                                      duplicate=True),
                )
            if pm.epoch > self.epoch:
                raise refuse(W.SubmitMessageResponse.not_allowed(), f"epoch {pm.epoch} is ahead of the hub's {self.epoch}")
            if pm.epoch < self.epoch - self.max_past_epochs:
                raise refuse(W.SubmitMessageResponse.epoch_too_old(self.epoch), f"epoch {pm.epoch} < {self.epoch}")
            sender = req.sending_uri.uri
            roles = self.effective_roles()
            verdict = A.authorise_submit(self.policy(), sender, from_domain, roles, bool(self._clients_of(sender)))
            if not verdict.allowed:
                raise refuse(W.SubmitMessageResponse.not_allowed(), verdict.reason)
            role = roles.get(sender, W.RoleIndex.no_role)
            if seen is not None:
                # The same bytes from another provider: a replay, not a retry
                # (as for commits, see _update_commit).
                raise refuse(W.SubmitMessageResponse.not_allowed(), f"a replay of {seen[0]}'s message")
            ts = self._ts(now_ms)
            frank = self._frank(pm.authenticated_data, sender, ts)
            resp = W.SubmitMessageResponse.accepted(ts, frank)
            self.recent_submits[mid[0]] = (from_domain, resp.encode())
            while len(self.recent_submits) > RECENT_SUBMITS:
                del self.recent_submits[next(iter(self.recent_submits))]
            fm = W.FanoutMessage.application(ts, msg, frank)
            fanout = self._fanout_to_room([fm], mid[0], "application", self.observer.tree,
                                          self._sending_user_client(sender, from_domain) | self.leaving_clients())
            return self._accepted(
                MimiResponse(200, resp.encode(), "accepted"),
                fanout,
                self.accept_event(pm.epoch, mid[0], "accepted", from_domain, message="application",
                                  franked=frank is not None, sender=sender, role=int(role)),
            )

        return self.guard("POST /submitMessage", from_domain, run)

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

    # ================================================================ /groupInfo, /reportAbuse

    def handle_group_info(self, body: bytes, from_domain: str, now_ms: int) -> HubResult:
        """``POST /groupInfo/{roomId}``: see :mod:`mimisim.mimi.hub_group_info`."""
        return handle_group_info(self, body, from_domain, now_ms)

    def handle_report_abuse(self, body: bytes, from_domain: str, now_ms: int) -> HubResult:
        """``POST /reportAbuse/{roomId}``: see :mod:`mimisim.mimi.hub_report_abuse`."""
        return handle_report_abuse(self, body, from_domain, now_ms)


def _enforce(verdict: A.Verdict) -> None:
    """Raise the hub's answer to a refused verdict."""
    if not verdict.allowed:
        raise _rejection(verdict)


def _rejection(verdict: A.Verdict) -> Reject:
    if verdict.code == A.INVALID_PROPOSAL:
        return invalid(verdict.refs, verdict.reason)
    return not_allowed(verdict.reason)


def _partial_group_info(gio: W.GroupInfoOption, staged: ObservedCommit) -> PartialGroupInfo:
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
        raise bad("the GroupInfo does not describe the commit's new epoch")
    has_tree = gi.extension(ExtensionType.ratchet_tree) is not None
    exts = [e for e in gi.extensions if e.extension_type != ExtensionType.ratchet_tree]
    presence = RatchetTreePresence.present if has_tree else RatchetTreePresence.no_ratchet_tree
    return PartialGroupInfo(presence, exts, gi.signature)

def _welcome_tree_option(rto: RatchetTreeOption, staged: ObservedCommit, hub_keeps: bool) -> RatchetTreeOption:
    """What joiners get with the Welcome: the hub's full tree unless the
    committer said the tree travels another way (https URI, out of band),
    or, with ``hub_keeps`` (the room's ``welcome_tree`` option "hub"),
    ``distribution_service``: the joiner fetches the tree from the hub.
    A ``full`` tree from the committer must be the hub's."""
    rep = rto.representation
    nodes = staged.tree.to_nodes() if rep == RatchetTreeRepresentation.full or not hub_keeps else None
    if rep == RatchetTreeRepresentation.full:
        assert nodes is not None
        if rto.ratchet_tree and RatchetTreeExt(rto.ratchet_tree).encode() != RatchetTreeExt(nodes).encode():
            raise bad("the committer's ratchet tree differs from the hub's")
    if rep in (RatchetTreeRepresentation.https_uri, RatchetTreeRepresentation.out_of_band):
        return rto
    if hub_keeps:
        return RatchetTreeOption(RatchetTreeRepresentation.distribution_service, None, None, None)
    return RatchetTreeOption(RatchetTreeRepresentation.full, nodes, None, None)

def _welcome_targets(
    suite: CipherSuite, welcome: object, staged: ObservedCommit, routing: Callable[[bytes], str | None]
) -> list[str]:
    """The providers a Welcome goes to ([P] Fanout: "the providers ...
    associated with the KeyPackageRef values in the secrets array"): by
    ``routing`` (where the hub saw the KeyPackage claimed), else the
    domain of the KeyPackage's client URI. The Welcome must name exactly
    the commit's new members."""
    added: dict[bytes, KeyPackage] = {
        suite.make_key_package_ref(kp.encode()): kp for _, kp in staged.outcome.added
    }
    if welcome is None:
        if added:
            raise bad("a commit that adds members needs a Welcome")
        return []
    refs = [s.new_member for s in welcome.secrets]  # type: ignore[attr-defined]
    if welcome.cipher_suite != suite.suite_id:  # type: ignore[attr-defined]
        raise bad("the Welcome's cipher suite is not the group's")
    if len(set(refs)) != len(refs) or set(refs) != set(added):
        raise bad("the Welcome does not match the commit's Adds")
    domains = set()
    for ref in refs:
        d = routing(ref)
        if d is None:
            client = client_of_credential(added[ref].leaf_node.credential)
            if client is None:
                raise bad("cannot route a Welcome for a KeyPackage without a MIMI client credential")
            d = domain_of(client)
        domains.add(d)
    return sorted(domains)


__all__ = [
    "DEFAULT_MAX_PAST_EPOCHS",
    "MIMI_COMPONENTS",
    "RECENT_SUBMITS",
    "AbuseRecord",
    "FanoutItem",
    "HubError",
    "HubResult",
    "HubRoom",
    "PendingEntry",
    "msg_id_of",
    "role_changes_tag",
    "state_tag",
]
