"""The client core: one device of one user, its keys and its rooms.

:class:`ClientCore` is the client's public face (the API the simulator and
tests call, the three inputs ``on_reply``, ``on_deliver``, ``on_timer``, and
read accessors). It owns the client's identity and rooms and delegates the
work to four parts, one per seam:

* :class:`~mimisim.mimi.client.engine.OperationEngine`: the per-room
  operation queues, stages and retries;
* :class:`~mimisim.mimi.client.requests.RequestBuilder`: the request bodies;
* :class:`~mimisim.mimi.client.replies.ReplyHandler`: the provider's answers;
* :class:`~mimisim.mimi.client.inbound.Inbound`: deliveries, buffering, gaps
  and resync, pending proposals.

See the package docstring for what the client does and why.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from mimisim import events as E
from mimisim.codec import DecodeError, EncodeError
from mimisim.mimi import franking as F
from mimisim.mimi import policy as P
from mimisim.mimi import wire as W
from mimisim.mimi.client.engine import OperationEngine
from mimisim.mimi.client.errors import PROTOCOL_ERRORS
from mimisim.mimi.client.inbound import Inbound
from mimisim.mimi.client.operations import (
    GROUP_INFO_OPTIONS,
    PENDING_STRATEGIES,
    WELCOME_TREE_OPTIONS,
    Op,
    OpKind,
    RetryStrategy,
    Room,
    Stage,
)
from mimisim.mimi.client.output import ClientStep, StepBuilder
from mimisim.mimi.client.replies import ReplyHandler
from mimisim.mimi.client.requests import RequestBuilder
from mimisim.mimi.client.roomstate import (
    MIMI_REQUIRED_CAPABILITIES,
    client_app_components,
    fork_rng,
    hub_credential,
    participants_of,
    room_dictionary,
)
from mimisim.mimi.hub import msg_id_of
from mimisim.mimi.identity import UriError, domain_of, group_id_of_room, user_of_client
from mimisim.mimi.keystore import encode_upload, last_resort_extension
from mimisim.mimi.transport import ClientOp, ClientReply, Deliver
from mimisim.mls.crypto import CipherSuite, RandomSource, get_suite
from mimisim.mls.errors import MLSError
from mimisim.mls.group import Group, GroupConfig
from mimisim.mls.keypackage import KeyPackagePrivate, create_key_package, default_capabilities
from mimisim.mls.structs import (
    Capabilities,
    Credential,
    Extension,
    ExtensionType,
    ExternalSender,
    ExternalSenders,
    GroupInfo,
    KeyPackage,
    MLSMessage,
)

#: How many past epochs' secrets a client keeps for application messages that
#: arrive after a later commit (RFC 9420 leaves it to the application). The MLS
#: layer's own default (2) lost messages the hub had accepted: a notify delayed
#: by a crashed follower arrived three epochs late (chaos seeds 477, 636, 770,
#: 782, 784, 811, 931, 980 of 1000; found by ``mimisim check``).
PAST_EPOCHS = 8

#: How many past epochs' whole group states a client keeps so that it can
#: follow the hub onto another commit for an epoch it already left (a hub
#: whose lagging standby lost the commit this client merged, and which then
#: accepted another one): ``Inbound.fork``. Four covers a lost suffix of up to
#: four commits; never more than ``past_epochs`` (the configured retention of
#: past epochs' secrets, ``protocol.past_epoch_keys``): a kept state holds its
#: epoch's keys (docs/mimi-choices.md, "Lagging failover").
FORK_EPOCHS = 4


class ClientCore:
    """One MIMI client: see the package docstring.

    ``client_uri`` is ``mimi://<domain>/d/<user>/<device>``; the MLS
    credential is ``Credential.basic(client_uri.encode())``. ``rng`` is the
    client's own random stream (a ``DeterministicRandom`` fork in the
    simulator); timing draws (pending-proposal delays, jitter) use a separate
    fork so that they do not shift key material. ``now_s`` is the wall-clock
    base, in seconds, for MLS lifetime checks (``now_s + now_ms // 1000``).
    ``past_epochs``: how many past epochs' keys the group keeps for late
    application messages (:data:`PAST_EPOCHS`).
    """

    def __init__(
        self,
        client_uri: str,
        suite_id: int,
        rng: RandomSource,
        *,
        retry: RetryStrategy | None = None,
        pending_proposals: str = "immediate_commit",
        pending_delay_ms: tuple[int, int] = (0, 2000),
        now_s: int = 0,
        gap_timeout_ms: int | None = 10_000,
        past_epochs: int = PAST_EPOCHS,
        welcome_tree: str = "inline",
        group_info: str = "partial",
    ) -> None:
        if pending_proposals not in PENDING_STRATEGIES:
            raise ValueError(f"pending_proposals must be one of {PENDING_STRATEGIES}, not {pending_proposals!r}")
        lo, hi = pending_delay_ms
        if lo < 0 or hi < lo:
            raise ValueError("pending_delay_ms must be (lo, hi) with 0 <= lo <= hi")
        self.client_uri = client_uri
        self.user_uri = user_of_client(client_uri)
        self.domain = domain_of(client_uri)
        self.suite: CipherSuite = get_suite(suite_id)
        self.rng = rng
        self.retry = retry or RetryStrategy()
        self.pending_proposals = pending_proposals
        self.pending_delay_ms = (int(lo), int(hi))
        self.now_s = now_s
        if gap_timeout_ms is not None and gap_timeout_ms <= 0:
            raise ValueError("gap_timeout_ms must be > 0 (or None: never resync)")
        self.gap_timeout_ms = gap_timeout_ms
        if past_epochs < 0:
            raise ValueError("past_epochs must be >= 0")
        self.past_epochs = past_epochs
        if welcome_tree not in WELCOME_TREE_OPTIONS:
            raise ValueError(f"welcome_tree must be one of {WELCOME_TREE_OPTIONS}, not {welcome_tree!r}")
        if group_info not in GROUP_INFO_OPTIONS:
            raise ValueError(f"group_info must be one of {GROUP_INFO_OPTIONS}, not {group_info!r}")
        # Ratchet-tree options (docs/mimi-choices.md, "Ratchet tree options"):
        # whether this client's commits upload the tree for their Welcome
        # ("inline") or leave it to the hub ("hub"), and how they carry the
        # new epoch's GroupInfo (a PartialGroupInfo, a full GroupInfo, or a
        # full one with the ratchet_tree extension).
        self.welcome_tree = welcome_tree
        self.group_info = group_info
        self._timing = fork_rng(rng, "timing")
        self.signature_priv, self.signature_pub = self.suite.generate_signature_key_pair(fork_rng(rng, "signature"))
        self.credential = Credential.basic(client_uri.encode())
        # KeyPackageRef -> (KeyPackage, private keys, last resort)
        self._key_packages: dict[bytes, tuple[KeyPackage, KeyPackagePrivate, bool]] = {}
        self._rooms: dict[str, Room] = {}
        self._kp_counter = 0
        # (room, msg id) -> (application_data, verified frank), for abuse reports.
        self._franks: dict[tuple[str, str], tuple[bytes, F.ReceivedFrank]] = {}
        # Per-room pending-proposal strategy (the room policy's), overriding the default.
        self._room_pending: dict[str, tuple[str, tuple[int, int]]] = {}
        #: Profile hooks (the ds profile's :class:`mimisim.mimi.ds.member.DSMember`
        #: sets them; empty/None for MIMI): extensions every KeyPackage and every
        #: own leaf carries (the FanoutAuth token, docs/ds-choices.md C11), and
        #: how a group-info reply decodes to (GroupInfo, tree, SelfRemoves).
        self.key_package_extensions: list[Extension] = []
        #: whether application messages carry a franking tag (a MIMI hub franks them)
        self.frank_messages = True
        self.leaf_extensions: list[Extension] = []
        self.group_info_decoder: Callable[[Room, Op, ClientReply], tuple[GroupInfo, list[Any] | None,
                                                                          list[MLSMessage]]] | None = None
        self.engine = OperationEngine(self)
        self.builders = RequestBuilder(self)
        self.replies = ReplyHandler(self)
        self.inbound = Inbound(self)

    # ------------------------------------------------------------ accessors

    def rooms(self) -> list[str]:
        """Rooms in which this client is currently a member, sorted."""
        return sorted(u for u, r in self._rooms.items() if r.member)

    def is_member(self, room: str) -> bool:
        """Whether this client is currently a member of ``room`` (cheap; no sorting)."""
        r = self._rooms.get(room)
        return r is not None and r.member

    def group(self, room: str) -> Group | None:
        r = self._rooms.get(room)
        return r.group if r is not None else None

    def _group(self, room: str) -> Group:
        g = self.group(room)
        if g is None:
            raise KeyError(f"{self.client_uri} has no group for {room}")
        return g

    def epoch(self, room: str) -> int:
        return self._group(room).epoch

    def epoch_authenticator(self, room: str) -> bytes:
        return self._group(room).epoch_authenticator

    def tree_hash(self, room: str) -> bytes:
        return self._group(room).tree_hash

    def participants(self, room: str) -> dict[str, int]:
        """The participant list in the group's GroupContext: user URI -> role index."""
        return dict(participants_of(self._group(room).extensions))

    def pending_operations(self, room: str) -> list[str]:
        """Kinds of the operations queued for ``room`` (head first), for tests."""
        r = self._rooms.get(room)
        return [op.kind for op in r.queue] if r is not None else []

    def received_frank(self, room: str, msg_id: str) -> tuple[bytes, F.ReceivedFrank] | None:
        """The content and verified frank of a delivered message ([P6]: "The
        receiver needs to store ..."), e.g. to build an AbusiveMessage."""
        return self._franks.get((room, msg_id))

    def key_package_count(self) -> int:
        """How many unused KeyPackage private keys this client holds."""
        return len(self._key_packages)

    def key_packages(self) -> list[KeyPackage]:
        """The KeyPackages this client published and has not used yet, oldest first."""
        return [kp for kp, _priv, _last_resort in self._key_packages.values()]

    # ------------------------------------------------------------ helpers (for the parts)

    def now_seconds(self, now_ms: int) -> int:
        """Wall-clock seconds for MLS lifetime checks."""
        return self.now_s + now_ms // 1000

    def capabilities(self) -> Capabilities:
        """The capabilities of this client's leaves: the defaults, plus the
        types of :attr:`leaf_extensions` (RFC 9420 s.7.2: a leaf lists the
        extensions it carries)."""
        caps = default_capabilities(self.suite)
        caps.extensions = [*caps.extensions, *(e.extension_type for e in self.leaf_extensions)]
        return caps

    def group_config(self) -> GroupConfig:
        return GroupConfig(app_components=dict(client_app_components()), max_past_epochs=self.past_epochs,
                           max_fork_epochs=min(FORK_EPOCHS, self.past_epochs))

    def uniform(self, lo: int, hi: int) -> int:
        """An integer uniform in [lo, hi] from the timing stream (64-bit draw)."""
        if hi <= lo:
            return lo
        return lo + int.from_bytes(self._timing.random_bytes(8), "big") % (hi - lo + 1)

    def room(self, room: str) -> Room:
        """The state of ``room``, created empty on first use."""
        r = self._rooms.get(room)
        if r is None:
            r = Room(room)
            self._rooms[room] = r
        return r

    # ================================================================ API: key packages

    def upload_key_packages(self, count: int, last_resort: int = 1) -> ClientStep:
        """Publish ``count`` one-time KeyPackages plus ``last_resort`` reusable
        ones at this client's provider, keeping their private keys to join
        from a Welcome later."""
        step = StepBuilder()
        kps: list[KeyPackage] = []
        for i in range(count + last_resort):
            self._kp_counter += 1
            lr = i >= count
            kp, priv = create_key_package(
                self.suite, self.credential, self.signature_priv, fork_rng(self.rng, f"key package {self._kp_counter}"),
                extensions=([last_resort_extension()] if lr else []) + self.key_package_extensions,
                leaf_extensions=self.leaf_extensions, capabilities=self.capabilities(),
            )
            self._key_packages[self.suite.make_key_package_ref(kp.encode())] = (kp, priv, lr)
            kps.append(kp)
        self.engine.request(step, ClientOp.upload_key_packages, "", 0, "upload", encode_upload(kps))
        return self._freeze(step)

    def answer_consent(self, requester: str, room_uri: str | None, grant: bool, now_ms: int) -> ClientStep:
        """This client's user answers a consent request ([P] Convey explicit
        consent): ``grant`` (with no KeyPackages: the requester claims them
        from the key store as usual) or ``revoke`` (a denial), for one room
        or (``room_uri`` None) any room. Sent to our provider, which records
        it and tells the requester's provider (``updateConsent``)."""
        step = StepBuilder()
        op = W.ConsentOperation.grant if grant else W.ConsentOperation.revoke
        entry = W.UpdateConsentBody(op, W.IdentifierUri(requester), W.IdentifierUri(self.user_uri),
                                    W.IdentifierUri(room_uri) if room_uri is not None else None,
                                    [] if grant else None, W.AppDataDictionary([]))
        self.engine.request(step, ClientOp.update_consent, room_uri or "", 0, "consent_answer", entry.encode(),
                            requester)
        step.emit(E.ClientConsent(room=room_uri or "", peer=requester, operation=op.name, target_user=self.user_uri))
        return self._freeze(step)

    def direct_key_package(self) -> KeyPackage:
        """A fresh one-time KeyPackage handed to the simulator instead of
        uploaded: bulk adds (:meth:`add_with_key_packages`) take their KeyPackages from
        the target clients directly, as a bulk room setup does, without a
        /keyMaterial claim per user. The private keys are kept, so the client
        can join from the Welcome like any other."""
        self._kp_counter += 1
        kp, priv = create_key_package(
            self.suite, self.credential, self.signature_priv, fork_rng(self.rng, f"key package {self._kp_counter}"),
        )
        self._key_packages[self.suite.make_key_package_ref(kp.encode())] = (kp, priv, False)
        return kp

    # ================================================================ API: room operations

    def create_room(
        self,
        room_uri: str,
        *,
        hub_signature_key: bytes,
        franking_agent: W.FrankingAgentData | None = None,
        hub_franking_key: bytes | None = None,
        policy: P.RoomPolicy | None = None,
        creator_role: int | str | None = None,
        room_name: str = "",
        now_ms: int = 0,
    ) -> ClientStep:
        """Create the room's MLS group with this client as its only member and
        ask the hub (this client's own provider) to host it.

        The group's GroupContext carries ``external_senders`` = [the hub's
        signature key] ([P] "Authenticating proposals"), ``required_capabilities``
        (app_data_dictionary, AppDataUpdate, SelfRemove, basic credentials: what
        every member must support for MIMI room state), and the
        ``app_data_dictionary`` with the room policy components, the
        participant list (the creator's user with the policy's creator role),
        ``room_metadata`` and, when given, the hub's ``franking_agent``
        ([P6] Message Franking). ``policy`` is a :class:`mimisim.mimi.policy.RoomPolicy`
        (default: the policy module's default room).

        The hub's keys come from the caller: ``hub_signature_key`` is the
        hub's public signature key; ``franking_agent`` the hub's public
        franking component (``franking.franking_agent_data``). As a simulation
        shortcut the caller may pass the hub's ``hub_franking_key`` secret
        instead and the component is derived from it (a real client would
        learn only the public part). Neither: the room is not franked.
        """
        step = StepBuilder()
        r = self.room(room_uri)
        if r.member or any(op.kind == OpKind.CREATE for op in r.queue):
            step.emit(E.ClientFail(room=room_uri, status="exists", operation=OpKind.CREATE.value,
                                   reason="already in this room"))
            return self._freeze(step)
        op = self.engine.enqueue(room_uri, OpKind.CREATE, now_ms)
        self._started(step, op)
        try:
            group_id = group_id_of_room(room_uri)
            hub_domain = domain_of(room_uri)
            if franking_agent is None and hub_franking_key is not None:
                franking_agent = F.franking_agent_data(self.suite, hub_franking_key, hub_domain)
            dictionary = room_dictionary(room_uri, self.user_uri, policy, franking_agent, room_name, creator_role)
            exts = [
                Extension(
                    ExtensionType.external_senders,
                    ExternalSenders([ExternalSender(hub_signature_key, hub_credential(hub_domain))]).encode(),
                ),
                Extension(ExtensionType.required_capabilities, MIMI_REQUIRED_CAPABILITIES.encode()),
                Extension(ExtensionType.app_data_dictionary, dictionary.encode()),
            ]
            self._kp_counter += 1
            kp, priv = create_key_package(
                self.suite, self.credential, self.signature_priv, fork_rng(self.rng, f"key package {self._kp_counter}"),
                extensions=self.key_package_extensions, leaf_extensions=self.leaf_extensions,
                capabilities=self.capabilities(),
            )
            r.joins += 1
            group = Group.create(
                self.suite, group_id, kp, priv, fork_rng(self.rng, f"group {room_uri} #{r.joins}"),
                extensions=exts, config=self.group_config(),
            )
            op.creating = group
            op.create_body = MLSMessage.wrap(group.group_info(with_tree=True)).encode()
        except (MLSError, UriError, ValueError, DecodeError, EncodeError) as e:
            self.engine.fail(step, r, op, f"cannot create the group: {e}")
        self.engine.finish(r, now_ms, step)
        return self._freeze(step)

    def add_user(self, room_uri: str, user_uri: str, now_ms: int, *, role: int | str | None = None) -> ClientStep:
        """Add a user: claim its clients' KeyPackages, then commit an
        AppDataUpdate adding it to the participant list plus an Add per
        KeyPackage ([P] "Alice adds Bob to the Room"). ``role`` is a role
        index or name (default: ``ordinary_user``, see :func:`resolve_role`)."""
        return self._api(room_uri, OpKind.ADD, now_ms, target=user_uri, role=role)

    def add_users(self, room_uri: str, users: list[tuple[str, int | str | None]], now_ms: int) -> ClientStep:
        """Add several users in one commit (bulk room setup, issue 14): claim
        every user's KeyPackages at once (one KeyMaterialRequest per user, all
        in flight together), then commit one AppDataUpdate adding all of them
        to the participant list plus an Add per KeyPackage. ``users``: (user
        URI, role) pairs, roles as in :meth:`add_user`. A user whose
        KeyPackages cannot be claimed is left out (a ``client.fail`` row names
        it) and the others are added; the commit is retried like an add.
        Why: adding N users one commit at a time costs every member already
        in the room one commit each, O(N^2) work for a room of N; MLS allows
        any number of Adds in one commit (RFC 9420 s.12.4)."""
        if not users:
            raise ValueError("add_users needs at least one user")
        return self._api(room_uri, OpKind.ADD_MANY, now_ms, target="", targets=list(users))

    def add_with_key_packages(self, room_uri: str, users: list[tuple[str, list[KeyPackage]]], now_ms: int, *,
                              role: int | str | None = None) -> ClientStep:
        """Add several users in one commit with KeyPackages given (no
        /keyMaterial claim, unlike :meth:`add_users`): one AppDataUpdate
        listing them all plus an Add per KeyPackage. The mls-cost study grows its room with these between
        its measured single adds (docs/studies.md, "MLS costs"); users
        already listed are left out when the commit is built."""
        if not users:
            raise ValueError("add_with_key_packages needs at least one user")
        first, kps = users[0]
        return self._api(room_uri, OpKind.ADD, now_ms, target=first, role=role, key_packages=list(kps),
                         more_users=[(u, list(k)) for u, k in users[1:]])

    def remove_user(self, room_uri: str, user_uri: str, now_ms: int) -> ClientStep:
        """Commit Removes of all the user's clients (found by their credentials
        in the tree) plus its removal from the participant list."""
        return self._api(room_uri, OpKind.REMOVE, now_ms, target=user_uri)

    def leave(self, room_uri: str, now_ms: int) -> ClientStep:
        """Leave: propose (not commit) Removes of all this user's clients and
        the user's removal from the participant list ([P] "Bob Leaves the
        Room"); another member commits them. The client re-proposes if an
        epoch passes without them (an external commit cannot carry them).
        The leave goes ahead of the room's queued operations that have no
        request in flight."""
        step = StepBuilder()
        r = self.room(room_uri)
        op = self.engine.enqueue(room_uri, OpKind.LEAVE, now_ms, target=self.user_uri)
        self._started(step, op)
        # The leave goes ahead of the room's operations that have no request
        # in flight: under commit contention a queue of Update commits, each
        # retried up to max_attempts, held a leave back for tens of seconds
        # (chaos-leave-contention seed 1), and what waits behind a leave
        # fails anyway once the user is out.
        r.queue.remove(op)
        head = r.queue[0] if r.queue else None
        busy = head is not None and head.stage in (Stage.SUBMITTED, Stage.FETCHING)
        r.queue.insert(1 if busy else 0, op)
        self.engine.finish(r, now_ms, step)
        return self._freeze(step)

    def send_message(self, room_uri: str, text: str, now_ms: int) -> ClientStep:
        """Send ``text`` as franked MIMI content (see the module docstring)."""
        return self._api(room_uri, OpKind.SEND, now_ms, text=text)

    def update(self, room_uri: str, now_ms: int) -> ClientStep:
        """Commit with a path and no proposals of its own (an Update commit:
        fresh keys for this leaf, forward secrecy), carrying every cached
        proposal as any commit must. The epoch-conflict study's driver."""
        return self._api(room_uri, OpKind.UPDATE, now_ms)

    def set_pending_strategy(
        self, room_uri: str, strategy: str, delay_ms: tuple[int, int] = (0, 0), committer: str | None = None
    ) -> None:
        """Use the room policy's pending-proposal strategy for ``room_uri``
        instead of this client's default (the policy is per room; the
        client's constructor argument is the default for rooms without one).
        ``designated`` needs the ``committer``'s client URI; this client
        commits at once when it is that client, else after the delay."""
        if strategy not in PENDING_STRATEGIES:
            raise ValueError(f"pending_proposals must be one of {PENDING_STRATEGIES}, not {strategy!r}")
        if (strategy == "designated") != (committer is not None):
            raise ValueError("a committer is named with the strategy 'designated' and only with it")
        if strategy == "designated":
            # The named committer commits at once; the others wait (fallback).
            strategy = "immediate_commit" if committer == self.client_uri else "random_delay"
        lo, hi = delay_ms
        if lo < 0 or hi < lo:
            raise ValueError("delay_ms must be (lo, hi) with 0 <= lo <= hi")
        self._room_pending[room_uri] = (strategy, (int(lo), int(hi)))

    def join_new_device(self, room_uri: str, now_ms: int, *, rejoin: bool = False) -> ClientStep:
        """Join a room of this client's user by external commit ([P] "Cathy
        adds a new device"): fetch the GroupInfo from the hub, then commit.
        ``rejoin``: the client may already have a leaf in the tree (added by a
        commit whose Welcome it could not use); the external commit replaces it."""
        return self._api(room_uri, OpKind.JOIN, now_ms, rejoin=rejoin)

    def _started(self, step: StepBuilder, op: Op) -> None:
        """A user's operation begins: one ``client.op`` row naming its id
        (its end is ``client.done``, see :meth:`_freeze`)."""
        op.started = True
        step.emit(E.ClientOpStart(room=op.room, peer=op.target if op.target != self.user_uri else "",
                                  operation=op.kind.value, op_id=op.id))

    def _freeze(self, step: StepBuilder) -> ClientStep:
        """The call's output, with one ``client.done`` row per user operation
        that ended during it (``status`` ``done``, or ``failed`` with the
        failure's code in ``failure``): issue 11's operation liveness is judged
        per operation id on these rows."""
        for op in self.engine.ended:
            if op.started:
                failed = op.stage == Stage.FAILED
                step.emit(E.ClientOpEnd(room=op.room, msg_id=op.msg_id, status="failed" if failed else "done",
                                        operation=op.kind.value, op_id=op.id, failure=op.failure if failed else None))
        self.engine.ended.clear()
        return step.freeze()

    def _api(self, room_uri: str, kind: OpKind, now_ms: int, **kw: Any) -> ClientStep:
        step = StepBuilder()
        r = self.room(room_uri)
        self._started(step, self.engine.enqueue(room_uri, kind, now_ms, **kw))
        self.engine.finish(r, now_ms, step)
        return self._freeze(step)

    # ================================================================ inputs

    def on_reply(self, reply: ClientReply, now_ms: int) -> ClientStep:
        """The provider's answer to one of this client's requests."""
        step = StepBuilder()
        info = self.engine.requests.pop(reply.request_id, None)
        if info is None:
            step.drop(status="staleReply", text=f"reply to unknown request {reply.request_id}")
            return self._freeze(step)
        room, op_id, what = info
        if what == "upload":
            if reply.status not in (200, 201):
                step.emit(E.ClientFail(status=reply.code or str(reply.status), operation="upload_key_packages",
                                       reason=f"{reply.body[:100]!r}"))
            return self._freeze(step)
        if what == "left":
            return self._freeze(step)
        if what == "consent_answer":
            if reply.status not in (200, 201):
                step.emit(E.ClientFail(room=room, status=reply.code or str(reply.status), operation="update_consent",
                                       reason=f"{reply.body[:100]!r}"))
            return self._freeze(step)
        r = self._rooms.get(room)
        if what == "restore":
            if r is not None:
                try:
                    self.replies.on_restore_reply(r, reply, now_ms, step)
                    self.engine.finish(r, now_ms, step)
                except PROTOCOL_ERRORS as e:  # bytes a peer sent; a bug propagates
                    step.drop(r.uri, None, "", "internalError", f"{type(e).__name__}: {e}"[:300])
            return self._freeze(step)
        if what == "welcome_tree":
            if r is not None:
                try:
                    self.replies.on_welcome_tree_reply(r, reply, now_ms, step)
                    self.engine.finish(r, now_ms, step)
                except PROTOCOL_ERRORS as e:  # bytes a peer sent; a bug propagates
                    r.welcome_wait = None
                    step.drop(r.uri, None, "", "internalError", f"{type(e).__name__}: {e}"[:300])
            return self._freeze(step)
        op = r.queue[0] if r is not None and r.queue else None
        if (r is None or op is None or op.id != op_id
                or (op.request_id != reply.request_id and reply.request_id not in op.fetches)):
            step.drop(room, None, "", "staleReply", f"{what} reply for an abandoned operation")
            return self._freeze(step)
        try:
            self.replies.dispatch(r, op, what, reply, now_ms, step)
            self.engine.finish(r, now_ms, step)
        except PROTOCOL_ERRORS as e:  # bytes a peer sent that slipped past the handlers; a bug propagates
            step.drop(r.uri, None, op.msg_id, "internalError", f"{type(e).__name__}: {e}"[:300])
        return self._freeze(step)

    def on_deliver(self, deliver: Deliver, now_ms: int) -> ClientStep:
        """One FanoutMessage pushed by the provider (commit, proposals,
        application message or Welcome)."""
        step = StepBuilder()
        r = self.room(deliver.room)
        try:
            fm = W.FanoutMessage.decode(deliver.body)
        except (DecodeError, EncodeError, ValueError) as e:
            step.drop(deliver.room, None, deliver.msg_id, "malformed", str(e)[:200])
            return self._freeze(step)
        mid = deliver.msg_id or msg_id_of(fm.message.encode())
        try:
            self.inbound.ingest(r, fm, mid, now_ms, step)
            self.engine.finish(r, now_ms, step)
        except PROTOCOL_ERRORS as e:  # bytes a peer sent that slipped past the handlers; a bug propagates
            step.drop(r.uri, None, mid, "internalError", f"{type(e).__name__}: {e}"[:300])
        return self._freeze(step)

    def on_timer(self, token: int, now_ms: int) -> ClientStep:
        """A timer this client asked for has expired."""
        step = StepBuilder()
        r = self.engine.on_timer(token, now_ms, step)
        if r is None:
            return self._freeze(step)
        try:
            self.engine.finish(r, now_ms, step)
        except PROTOCOL_ERRORS as e:  # bytes a peer sent that slipped past the handlers; a bug propagates
            step.drop(r.uri, None, "", "internalError", f"{type(e).__name__}: {e}"[:300])
        return self._freeze(step)
