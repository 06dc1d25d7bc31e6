"""One MIMI client (one device of one user) as a sans-IO core.

A :class:`ClientCore` holds the client's MLS signature key, the private keys
of the KeyPackages it published, one MLS :class:`~mimisim.mls.group.Group`
per room, and per room a FIFO queue of operations (create the room, add or
remove a user, leave, send a message, join with a new device, commit pending
proposals). It never does I/O and owns no clock: every entry point takes
``now_ms`` and returns a :class:`ClientStep` -- the
:class:`~mimisim.mimi.transport.ClientMessage` s to send to the client's own
provider, the :class:`Timer` s to arm, trace events, and the application
messages delivered to the user. Randomness comes from the injected ``rng``
(keys, salts, delays). A bad, duplicated, stale or reordered delivery becomes
a trace event, never an exception.

Why a queue per room: every operation that changes a room is an MLS commit
(or proposals) against one epoch, and a client can have only one commit
pending per group. Running a room's operations one at a time, in the order
the user asked for them, keeps the client's state simple (at most one
pending commit) and makes retries well defined: after ``wrongEpoch`` the
*same* operation is rebuilt against the new epoch.

Provider-internal bodies (``[[ ... ]]`` in the draft's figures; not MIMI):

* ``upload_key_packages``: the KeyPackages as concatenated ``MLSMessage`` s
  (:func:`mimisim.mimi.keystore.encode_upload`); a last-resort KeyPackage
  carries the [EXT] ``last_resort_key_package`` component in its
  ``app_data_dictionary`` extension (:func:`mimisim.mimi.keystore.last_resort_extension`).
* ``create_room``: the creator's epoch-0 GroupInfo as an ``MLSMessage``, with
  the ``ratchet_tree`` extension (the hub starts following the group from it).
* ``fetch_key_material``: a signed -06 ``KeyMaterialRequest``; ``target`` is
  the user, ``room`` the room.
* ``update``: an ``UpdateRequest`` (HandshakeBundle: a commit with its
  Welcome, partial GroupInfo and RatchetTreeOption, or proposals).
* ``submit_message``: a ``SubmitMessageRequest``.
* ``fetch_group_info``: a signed ``GroupInfoRequest``.
* ``left_room``: empty; tells the provider the client left (stop delivering).

Application content is a minimal but genuine CBOR encoding of the
draft-ietf-mimi-content ``mimiContent`` array
(:func:`mimisim.mimi.franking.encode_simple_content`): a 16-byte salt from
``rng``, no ``replaces``/``inReplyTo``/``expires``, an empty ``topicId``, the
extensions map ``{1: senderUri, 2: roomUri}`` that [P6] franking requires,
and one ``SinglePart`` with disposition ``render``, language ``""``, content
type ``text/plain;charset=utf-8`` and the UTF-8 text. The franking tag
``HMAC_SHA256(salt, application_data)`` ([P6] "Client creation and sending")
is the ``frank_aad`` SafeAAD item of the PrivateMessage's authenticated_data;
receivers check franks with :func:`mimisim.mimi.franking.verify_received_frank`.

Choices are listed in ``docs/mimi-choices.md`` ("Client").
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from mimisim.codec import DecodeError, EncodeError
from mimisim.mimi import franking as F
from mimisim.mimi import policy as P
from mimisim.mimi import wire as W
from mimisim.mimi.hub import msg_id_of, state_tag
from mimisim.mimi.identity import UriError, client_of_identity, domain_of, group_id_of_room, user_of_client
from mimisim.mimi.keystore import encode_upload, last_resort_extension
from mimisim.mimi.transport import ClientMessage, ClientOp, ClientReply, Deliver, Event
from mimisim.mls.crypto import CipherSuite, CryptoError, RandomSource, get_suite
from mimisim.mls.errors import MLSError, ProposalError, ReplayError, WrongEpochError
from mimisim.mls.group import (
    ApplicationMessage,
    Group,
    GroupConfig,
    ProposalReceived,
    StagedCommit,
)
from mimisim.mls.keypackage import KeyPackagePrivate, create_key_package, tree_from_group_info
from mimisim.mls.observer import partial_group_info
from mimisim.mls.structs import (
    Add,
    AppDataDictionary,
    AppDataUpdate,
    AppDataUpdateOperation,
    Credential,
    CredentialType,
    Extension,
    ExtensionType,
    ExternalSender,
    ExternalSenders,
    KeyPackage,
    LeafNode,
    MLSMessage,
    Proposal,
    ProposalType,
    PublicMessage,
    RatchetTreeOption,
    RatchetTreeRepresentation,
    Remove,
    RequiredCapabilities,
    SenderType,
    WireFormat,
    find_extension,
)

CID = W.ComponentId

# ==========================================================================
# MIMI content (draft-ietf-mimi-content), minimal CBOR

TEXT_PLAIN = "text/plain;charset=utf-8"
DISPOSITION_RENDER = 1
CARDINALITY_SINGLE = 1
SALT_LEN = 16


ContentError = F.ContentError  # bytes that are not a mimiContent this client can read


@dataclass(frozen=True)
class MimiContent:
    """The fields of a ``mimiContent`` this client writes and reads."""

    salt: bytes
    sender_uri: str
    room_uri: str
    text: str
    content_type: str = TEXT_PLAIN


_NULL = None  # CBOR null decodes to None


class _CborReader:
    """Strict reader of definite-length CBOR: uints, byte/text strings,
    arrays, maps, null, booleans. Anything else is refused."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def _take(self, n: int) -> bytes:
        if self.pos + n > len(self.data):
            raise ContentError("truncated CBOR")
        out = self.data[self.pos : self.pos + n]
        self.pos += n
        return out

    def item(self, depth: int = 0) -> Any:
        if depth > 16:
            raise ContentError("CBOR nested too deeply")
        ib = self._take(1)[0]
        major, ai = ib >> 5, ib & 0x1F
        if major == 7:
            simple = {20: False, 21: True, 22: _NULL}
            if ai not in simple:
                raise ContentError(f"unsupported CBOR simple value {ai}")
            return simple[ai]
        if ai < 24:
            n = ai
        elif ai in (24, 25, 26, 27):
            n = int.from_bytes(self._take(1 << (ai - 24)), "big")
        else:
            raise ContentError("indefinite or reserved CBOR length")
        if major == 0:
            return n
        if major == 2:
            return self._take(n)
        if major == 3:
            try:
                return self._take(n).decode("utf-8")
            except UnicodeDecodeError:
                raise ContentError("invalid UTF-8 in CBOR text") from None
        if major == 4:
            if n > len(self.data):
                raise ContentError("CBOR array longer than the data")
            return [self.item(depth + 1) for _ in range(n)]
        if major == 5:
            if n > len(self.data):
                raise ContentError("CBOR map longer than the data")
            out: dict[Any, Any] = {}
            for _ in range(n):
                k = self.item(depth + 1)
                if isinstance(k, list | dict) or k in out:
                    raise ContentError("bad or duplicate CBOR map key")
                out[k] = self.item(depth + 1)
            return out
        raise ContentError(f"unsupported CBOR major type {major}")


def encode_mimi_content(c: MimiContent) -> bytes:
    """``mimiContent = [salt, replaces, topicId, expires, inReplyTo,
    mimiExtensions, nestedPart]`` with a SinglePart ``nestedPart``, written by
    :func:`mimisim.mimi.franking.encode_simple_content`."""
    return F.encode_simple_content(c.salt, c.sender_uri, c.room_uri, c.text.encode("utf-8"), c.content_type)


def decode_mimi_content(data: bytes) -> MimiContent:
    """Read a mimiContent with a SinglePart text body; raises ContentError."""
    r = _CborReader(data)
    top = r.item()
    if r.pos != len(data):
        raise ContentError("trailing bytes after mimiContent")
    if not isinstance(top, list) or len(top) != 7:
        raise ContentError("mimiContent is a 7-element array")
    salt, _replaces, _topic, _expires, _reply, ext, nested = top
    if not isinstance(salt, bytes) or len(salt) != SALT_LEN:
        raise ContentError("salt must be a 16-byte bstr")
    if not isinstance(ext, dict):
        raise ContentError("mimiExtensions must be a map")
    sender, room = ext.get(1), ext.get(2)
    if not isinstance(sender, str) or not isinstance(room, str):
        raise ContentError("senderUri (1) and roomUri (2) are required for franking")
    if not isinstance(nested, list) or len(nested) != 5 or nested[2] != CARDINALITY_SINGLE:
        raise ContentError("only a SinglePart nestedPart is supported")
    ctype, body = nested[3], nested[4]
    if not isinstance(ctype, str) or not isinstance(body, bytes):
        raise ContentError("SinglePart needs a tstr contentType and a bstr content")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise ContentError("text content is not UTF-8") from None
    return MimiContent(salt, sender, room, text, ctype)


# ==========================================================================
# what a client call returns


@dataclass(frozen=True)
class Timer:
    """Call :meth:`ClientCore.on_timer` with ``token`` at simulated time ``at_ms``."""

    at_ms: int
    token: int


@dataclass
class ClientStep:
    """What one client call produced, in the order it happened.

    ``delivered`` holds ``(room, sender_user, text, msg_id)`` for each
    application message shown to the user.
    """

    messages: list[ClientMessage] = field(default_factory=list)
    timers: list[Timer] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    delivered: list[tuple[str, str, str, str]] = field(default_factory=list)

    def extend(self, other: ClientStep) -> None:
        self.messages.extend(other.messages)
        self.timers.extend(other.timers)
        self.events.extend(other.events)
        self.delivered.extend(other.delivered)


@dataclass(frozen=True)
class RetryStrategy:
    """What a client does when the hub refuses its commit (or message) because
    the room moved on (``wrongEpoch``, ``epochTooOld``, ``invalidProposal``)
    or the request failed in transport (5xx, timeout).

    ``mode="after_commit"``: wait until the winning commit(s) arrived (the
    client's epoch reaches the hub's ``currentEpoch``; for
    ``invalidProposal``, until the missing proposals arrived), then rebuild
    the same operation. ``mode="immediate"``: rebuild at once against
    whatever epoch the client has; if it still lags, the hub refuses again
    and that costs an attempt. ``mode="abandon"``: an Update commit (which
    has no intent beyond refreshing keys) is dropped after its first refusal;
    other operations behave as ``after_commit``.

    The rebuild happens no earlier than a backoff after the refusal: the
    wait ``w = min(cap_ms, backoff_ms * factor**(failures-1))``, then the
    jitter: ``"add"`` adds a uniform draw in ``[0, jitter_ms]`` (the default,
    so a plain ``backoff_ms``/``jitter_ms`` pair means what it says),
    ``"full"`` draws uniformly in ``[0, w]``, ``"equal"`` takes ``w/2`` plus a
    uniform draw in ``[0, w/2]``, ``"none"`` takes ``w``. Draws come from the
    client's timing stream. ``max_attempts`` counts submissions, the first
    included.
    """

    max_attempts: int = 5
    backoff_ms: int = 0
    jitter_ms: int = 0
    mode: str = "after_commit"
    factor: float = 2.0
    cap_ms: int | None = None
    jitter: str = "add"

    def __post_init__(self) -> None:
        if self.mode not in ("after_commit", "immediate", "abandon"):
            raise ValueError(f"retry mode must be after_commit, immediate or abandon, not {self.mode!r}")
        if self.max_attempts < 1 or self.backoff_ms < 0 or self.jitter_ms < 0:
            raise ValueError("max_attempts >= 1, backoff_ms >= 0, jitter_ms >= 0")
        if self.factor < 1 or (self.cap_ms is not None and self.cap_ms < 0):
            raise ValueError("factor >= 1, cap_ms >= 0")
        if self.jitter not in ("add", "full", "equal", "none"):
            raise ValueError(f"jitter must be add, full, equal or none, not {self.jitter!r}")


PENDING_STRATEGIES = ("immediate_commit", "random_delay")

#: Deliveries a room may hold back (future epochs, or before the client has
#: the group). Beyond that they are dropped: a gap that never fills must not
#: grow memory without bound.
MAX_BUFFERED = 4096

# Operation kinds, in the order the API lists them.
_CREATE, _ADD, _REMOVE, _LEAVE, _SEND, _JOIN, _COMMIT_PENDING, _UPDATE = (
    "create_room",
    "add_user",
    "remove_user",
    "leave",
    "send_message",
    "join",
    "commit_pending",
    "update",
)
# Stages of an operation.
_NEW, _FETCHING, _SUBMITTED, _WAITING, _DONE, _FAILED = "new", "fetching", "submitted", "waiting", "done", "failed"


@dataclass(eq=False)
class _Op:
    """One queued operation of one room and where it stands."""

    id: int
    kind: str
    room: str
    requested_ms: int
    target: str = ""
    text: str = ""
    role: int | str | None = None
    stage: str = _NEW
    attempts: int = 0
    request_id: int = 0
    # add_user: the claimed KeyPackages (kept across retries: claiming again
    # would consume more of the target's key material).
    key_packages: list[KeyPackage] | None = None
    # send_message: the encoded content (salt included), the same across retries.
    content: bytes = b""
    # The submitted commit (or first proposal / application message).
    msg_id: str = ""
    staged: StagedCommit | None = None
    proposal_refs: list[bytes] = field(default_factory=list)
    merged: bool = False
    # Retry conditions.
    wait_epoch: int | None = None
    wait_refs: list[bytes] | None = None
    wait_from_epoch: int = -1
    backoff_timer: int | None = None
    # join: the HPKE key for the GroupInfo response and the would-be group;
    # resync: a join that replaces this client's own stale leaf (gap recovery).
    resync: bool = False
    hpke_priv: bytes = b""
    joiner: Group | None = None
    # create_room: the group being created.
    creating: Group | None = None
    create_body: bytes = b""


@dataclass(eq=False)
class _Room:
    """A client's state for one room."""

    uri: str
    group: Group | None = None
    queue: deque[_Op] = field(default_factory=deque)
    # Deliveries that cannot be processed yet (future epoch, or no group yet):
    # (epoch, arrival number, msg_id, FanoutMessage).
    buffer: list[tuple[int, int, str, W.FanoutMessage]] = field(default_factory=list)
    buffered_ids: set[str] = field(default_factory=set)
    # msg ids processed or definitively dropped (duplicate detection).
    seen: set[str] = field(default_factory=set)
    # msg ids of this client's own proposals and application messages.
    own_msgs: set[str] = field(default_factory=set)
    # This client's commits not yet merged or superseded, by msg id: an echo
    # (or a late "success") merges them even after a transport failure.
    own_commits: dict[str, StagedCommit] = field(default_factory=dict)
    pending_timer: int | None = None
    removed: bool = False
    joins: int = 0
    # Commits of the current epoch that reference proposals not yet received
    # (the hub's notifies can overtake each other): retried when proposals arrive.
    held: list[tuple[int, str, W.FanoutMessage]] = field(default_factory=list)
    # Gap detection: the epoch the client was stuck at when the gap timer was armed.
    gap_timer: int | None = None
    gap_epoch: int = -1

    @property
    def member(self) -> bool:
        return self.group is not None and self.group.active and not self.removed


# ==========================================================================
# the client


#: How many past epochs' secrets a client keeps for application messages that
#: arrive after a later commit (RFC 9420 leaves it to the application). The MLS
#: layer's own default (2) lost messages the hub had accepted: a notify delayed
#: by a crashed follower arrived three epochs late (chaos seeds 477, 636, 770,
#: 782, 784, 811, 931, 980 of 1000; found by ``mimisim check``).
PAST_EPOCHS = 8


class ClientCore:
    """One MIMI client: see the module docstring.

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
        self._timing = _fork(rng, "timing")
        self.signature_priv, self.signature_pub = self.suite.generate_signature_key_pair(_fork(rng, "signature"))
        self.credential = Credential.basic(client_uri.encode())
        # KeyPackageRef -> (KeyPackage, private keys, last resort)
        self._key_packages: dict[bytes, tuple[KeyPackage, KeyPackagePrivate, bool]] = {}
        self._rooms: dict[str, _Room] = {}
        self._requests: dict[int, tuple[str, int, str]] = {}  # request id -> (room, op id, what)
        self._timers: dict[int, tuple[str, str, int]] = {}  # token -> (what, room, op id)
        self._next_request = 1
        self._next_timer = 1
        self._next_op = 1
        self._arrivals = 0
        self._kp_counter = 0
        # (room, msg id) -> (application_data, verified frank), for abuse reports.
        self._franks: dict[tuple[str, str], tuple[bytes, F.ReceivedFrank]] = {}
        # Per-room pending-proposal strategy (the room policy's), overriding the default.
        self._room_pending: dict[str, tuple[str, tuple[int, int]]] = {}

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
        return dict(_participants(self._group(room).extensions))

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

    # ------------------------------------------------------------ helpers

    def _now_s(self, now_ms: int) -> int:
        return self.now_s + now_ms // 1000

    def _config(self) -> GroupConfig:
        return GroupConfig(app_components=dict(client_app_components()), max_past_epochs=self.past_epochs)

    def _request(self, step: ClientStep, op: ClientOp, room: str, op_id: int, what: str, body: bytes,
                 target: str = "") -> int:
        rid = self._next_request
        self._next_request += 1
        self._requests[rid] = (room, op_id, what)
        step.messages.append(ClientMessage(self.client_uri, op, rid, body, room, target))
        return rid

    def _timer(self, step: ClientStep, at_ms: int, what: str, room: str, op_id: int) -> int:
        token = self._next_timer
        self._next_timer += 1
        self._timers[token] = (what, room, op_id)
        step.timers.append(Timer(at_ms, token))
        return token

    def _uniform(self, lo: int, hi: int) -> int:
        """An integer uniform in [lo, hi] from the timing stream (64-bit draw)."""
        if hi <= lo:
            return lo
        return lo + int.from_bytes(self._timing.random_bytes(8), "big") % (hi - lo + 1)

    def _room(self, room: str) -> _Room:
        r = self._rooms.get(room)
        if r is None:
            r = _Room(room)
            self._rooms[room] = r
        return r

    def _enqueue(self, room: str, kind: str, now_ms: int, **kw: Any) -> _Op:
        op = _Op(self._next_op, kind, room, now_ms, **kw)
        self._next_op += 1
        self._room(room).queue.append(op)
        return op

    @staticmethod
    def _ev(step: ClientStep, kind: str, room: str = "", epoch: int | None = None, msg_id: str = "",
            status: str = "", detail: str = "", peer: str = "") -> None:
        step.events.append(Event(kind, room=room, epoch=epoch, msg_id=msg_id, status=status, detail=detail,
                                 peer=peer))

    def _fail(self, step: ClientStep, r: _Room, op: _Op, why: str, status: str = "failed") -> None:
        op.stage = _FAILED
        epoch = r.group.epoch if r.group is not None else None
        self._ev(step, "client.fail", r.uri, epoch, op.msg_id, status, f"{op.kind}: {why}"[:300], op.target)

    def _done(self, op: _Op) -> None:
        op.stage = _DONE

    # ================================================================ API: key packages

    def upload_key_packages(self, count: int, last_resort: int = 1) -> ClientStep:
        """Publish ``count`` one-time KeyPackages plus ``last_resort`` reusable
        ones at this client's provider, keeping their private keys to join
        from a Welcome later."""
        step = ClientStep()
        kps: list[KeyPackage] = []
        for i in range(count + last_resort):
            self._kp_counter += 1
            lr = i >= count
            kp, priv = create_key_package(
                self.suite, self.credential, self.signature_priv, _fork(self.rng, f"key package {self._kp_counter}"),
                extensions=[last_resort_extension()] if lr else [],
            )
            self._key_packages[self.suite.make_key_package_ref(kp.encode())] = (kp, priv, lr)
            kps.append(kp)
        self._request(step, ClientOp.upload_key_packages, "", 0, "upload", encode_upload(kps))
        return step

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
        step = ClientStep()
        r = self._room(room_uri)
        if r.member or any(op.kind == _CREATE for op in r.queue):
            self._ev(step, "client.fail", room_uri, None, "", "exists", "create_room: already in this room")
            return step
        op = self._enqueue(room_uri, _CREATE, now_ms)
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
                self.suite, self.credential, self.signature_priv, _fork(self.rng, f"key package {self._kp_counter}")
            )
            r.joins += 1
            group = Group.create(
                self.suite, group_id, kp, priv, _fork(self.rng, f"group {room_uri} #{r.joins}"),
                extensions=exts, config=self._config(),
            )
            op.creating = group
            op.create_body = MLSMessage.wrap(group.group_info(with_tree=True)).encode()
        except (MLSError, UriError, ValueError, DecodeError, EncodeError) as e:
            self._fail(step, r, op, f"cannot create the group: {e}")
        self._finish(r, now_ms, step)
        return step

    def add_user(self, room_uri: str, user_uri: str, now_ms: int, *, role: int | str | None = None) -> ClientStep:
        """Add a user: claim its clients' KeyPackages, then commit an
        AppDataUpdate adding it to the participant list plus an Add per
        KeyPackage ([P] "Alice adds Bob to the Room"). ``role`` is a role
        index or name (default: ``ordinary_user``, see :func:`resolve_role`)."""
        return self._api(room_uri, _ADD, now_ms, target=user_uri, role=role)

    def remove_user(self, room_uri: str, user_uri: str, now_ms: int) -> ClientStep:
        """Commit Removes of all the user's clients (found by their credentials
        in the tree) plus its removal from the participant list."""
        return self._api(room_uri, _REMOVE, now_ms, target=user_uri)

    def leave(self, room_uri: str, now_ms: int) -> ClientStep:
        """Leave: propose (not commit) Removes of all this user's clients and
        the user's removal from the participant list ([P] "Bob Leaves the
        Room"); another member commits them. The client re-proposes if an
        epoch passes without them (an external commit cannot carry them)."""
        return self._api(room_uri, _LEAVE, now_ms, target=self.user_uri)

    def send_message(self, room_uri: str, text: str, now_ms: int) -> ClientStep:
        """Send ``text`` as franked MIMI content (see the module docstring)."""
        return self._api(room_uri, _SEND, now_ms, text=text)

    def update(self, room_uri: str, now_ms: int) -> ClientStep:
        """Commit with a path and no proposals of its own (an Update commit:
        fresh keys for this leaf, forward secrecy), carrying every cached
        proposal as any commit must. The epoch-conflict study's driver."""
        return self._api(room_uri, _UPDATE, now_ms)

    def set_pending_strategy(self, room_uri: str, strategy: str, delay_ms: tuple[int, int] = (0, 0)) -> None:
        """Use the room policy's pending-proposal strategy for ``room_uri``
        instead of this client's default (the policy is per room; the
        client's constructor argument is the default for rooms without one)."""
        if strategy not in PENDING_STRATEGIES:
            raise ValueError(f"pending_proposals must be one of {PENDING_STRATEGIES}, not {strategy!r}")
        lo, hi = delay_ms
        if lo < 0 or hi < lo:
            raise ValueError("delay_ms must be (lo, hi) with 0 <= lo <= hi")
        self._room_pending[room_uri] = (strategy, (int(lo), int(hi)))

    def join_new_device(self, room_uri: str, now_ms: int) -> ClientStep:
        """Join a room of this client's user by external commit ([P] "Cathy
        adds a new device"): fetch the GroupInfo from the hub, then commit."""
        return self._api(room_uri, _JOIN, now_ms)

    def _api(self, room_uri: str, kind: str, now_ms: int, **kw: Any) -> ClientStep:
        step = ClientStep()
        r = self._room(room_uri)
        self._enqueue(room_uri, kind, now_ms, **kw)
        self._finish(r, now_ms, step)
        return step

    # ================================================================ inputs

    def on_reply(self, reply: ClientReply, now_ms: int) -> ClientStep:
        """The provider's answer to one of this client's requests."""
        step = ClientStep()
        info = self._requests.pop(reply.request_id, None)
        if info is None:
            self._ev(step, "client.drop", status="staleReply", detail=f"reply to unknown request {reply.request_id}")
            return step
        room, op_id, what = info
        if what == "upload":
            if reply.status not in (200, 201):
                self._ev(step, "client.fail", status=reply.code or str(reply.status),
                         detail=f"upload_key_packages: {reply.body[:100]!r}")
            return step
        if what == "left":
            return step
        r = self._rooms.get(room)
        op = r.queue[0] if r is not None and r.queue else None
        if r is None or op is None or op.id != op_id or op.request_id != reply.request_id:
            self._ev(step, "client.drop", room, None, "", "staleReply", f"{what} reply for an abandoned operation")
            return step
        try:
            self._dispatch_reply(r, op, what, reply, now_ms, step)
            self._finish(r, now_ms, step)
        except Exception as e:  # the boundary: a bug becomes a visible event, not a crash
            self._ev(step, "client.drop", r.uri, None, op.msg_id, "internalError", f"{type(e).__name__}: {e}"[:300])
        return step

    def _dispatch_reply(self, r: _Room, op: _Op, what: str, reply: ClientReply, now_ms: int,
                        step: ClientStep) -> None:
        try:
            handler = {
                "create": self._on_create_reply,
                "key_material": self._on_key_material_reply,
                "commit": self._on_commit_reply,
                "proposals": self._on_proposals_reply,
                "submit": self._on_submit_reply,
                "group_info": self._on_group_info_reply,
                "external_commit": self._on_external_commit_reply,
            }[what]
            handler(r, op, reply, now_ms, step)
        except (DecodeError, EncodeError, MLSError, CryptoError, ValueError) as e:
            # A reply this client cannot use: the operation fails, nothing escapes.
            if r.group is not None and r.group.pending is not None and r.group.pending is op.staged:
                r.group.discard_pending_commit()
            self._fail(step, r, op, f"bad {what} reply: {e}", "badReply")

    def on_deliver(self, deliver: Deliver, now_ms: int) -> ClientStep:
        """One FanoutMessage pushed by the provider (commit, proposals,
        application message or Welcome)."""
        step = ClientStep()
        r = self._room(deliver.room)
        try:
            fm = W.FanoutMessage.decode(deliver.body)
        except (DecodeError, EncodeError, ValueError) as e:
            self._ev(step, "client.drop", deliver.room, None, deliver.msg_id, "malformed", str(e)[:200])
            return step
        mid = deliver.msg_id or msg_id_of(fm.message.encode())
        try:
            self._ingest(r, fm, mid, now_ms, step)
            self._finish(r, now_ms, step)
        except Exception as e:  # the boundary: a bug becomes a visible event, not a crash
            self._ev(step, "client.drop", r.uri, None, mid, "internalError", f"{type(e).__name__}: {e}"[:300])
        return step

    def on_timer(self, token: int, now_ms: int) -> ClientStep:
        """A timer this client asked for has expired."""
        step = ClientStep()
        info = self._timers.pop(token, None)
        if info is None:
            return step
        what, room, op_id = info
        r = self._rooms.get(room)
        if r is None:
            return step
        if what == "retry":
            for op in r.queue:
                if op.id == op_id and op.backoff_timer == token:
                    op.backoff_timer = None
        elif what == "gap" and r.gap_timer == token:
            r.gap_timer = None
            if self._stuck(r) and r.group is not None and r.group.epoch == r.gap_epoch:
                self._queue_resync(r, now_ms, step)
            elif self._stuck(r):
                self._arm_gap_timer(r, now_ms, step)  # progress was made; still behind: watch again
        elif what == "pending" and r.pending_timer == token:
            r.pending_timer = None
            if r.member and self._needs_commit(r):
                self._queue_commit_pending(r, now_ms)
        try:
            self._finish(r, now_ms, step)
        except Exception as e:  # the boundary: a bug becomes a visible event, not a crash
            self._ev(step, "client.drop", r.uri, None, "", "internalError", f"{type(e).__name__}: {e}"[:300])
        return step

    # ================================================================ operation engine

    def _finish(self, r: _Room, now_ms: int, step: ClientStep) -> None:
        """Process what became processable, then run the room's queue."""
        self._drain(r, now_ms, step)
        self._pump(r, now_ms, step)

    def _pump(self, r: _Room, now_ms: int, step: ClientStep) -> None:
        """Start or resume the head operation until one is in flight or waits."""
        for _ in range(1000):  # every pass ends an op or changes its stage; bounded anyway
            if not r.queue:
                return
            op = r.queue[0]
            if op.stage in (_DONE, _FAILED):
                r.queue.popleft()
                continue
            if op.stage == _WAITING:
                if not self._ready(r, op):
                    # A resync queued behind an operation that waits for an
                    # epoch the client cannot reach (the gap) goes first.
                    for i in range(1, len(r.queue)):
                        cand = r.queue[i]
                        if cand.kind == _JOIN and cand.resync and cand.stage == _NEW:
                            del r.queue[i]
                            r.queue.appendleft(cand)
                            break
                    else:
                        return
                    continue
                op.stage = _NEW
            if op.stage != _NEW:
                return  # a request is in flight
            self._start(r, op, now_ms, step)

    def _ready(self, r: _Room, op: _Op) -> bool:
        if op.backoff_timer is not None:
            return False
        g = r.group
        if g is None or not g.active:
            return True  # _start fails it (or, for a join, refetches)
        if op.wait_epoch is not None and g.epoch < op.wait_epoch:
            return False
        if op.wait_refs and g.epoch == op.wait_from_epoch:
            return all(ref in g.state.proposals for ref in op.wait_refs)
        return True

    def _wait_next_epoch(self, r: _Room, op: _Op) -> None:
        assert r.group is not None
        op.stage = _WAITING
        op.wait_epoch = r.group.epoch + 1
        op.wait_refs = None

    def _start(self, r: _Room, op: _Op, now_ms: int, step: ClientStep) -> None:
        """Build and send the head operation's next request from the current state."""
        op.wait_epoch, op.wait_refs = None, None
        if op.kind == _CREATE:
            op.request_id = self._request(step, ClientOp.create_room, r.uri, op.id, "create", op.create_body)
            op.attempts += 1
            op.stage = _SUBMITTED
            return
        if op.kind == _JOIN:
            if r.member and not op.resync:
                self._done(op)  # already in the group (e.g. added meanwhile)
                return
            if op.resync and not self._stuck(r):
                self._done(op)  # the gap filled while the resync waited
                return
            self._fetch_group_info(r, op, step)
            return
        if not r.member:
            self._fail(step, r, op, "not a member of the room", "notMember")
            return
        try:
            if op.kind == _ADD:
                if op.key_packages is None:
                    self._fetch_key_material(r, op, step)
                else:
                    self._commit_add(r, op, now_ms, step)
            elif op.kind == _REMOVE:
                self._commit_remove(r, op, now_ms, step)
            elif op.kind == _COMMIT_PENDING:
                self._commit_pending(r, op, now_ms, step)
            elif op.kind == _UPDATE:
                self._send_commit(r, op, [], now_ms, step)
            elif op.kind == _LEAVE:
                self._propose_leave(r, op, step)
            elif op.kind == _SEND:
                self._submit_message(r, op, step)
        except (MLSError, DecodeError, EncodeError, CryptoError, UriError, ValueError) as e:
            g = r.group
            if g is not None and g.pending is not None and g.pending is op.staged:
                g.discard_pending_commit()
            self._fail(step, r, op, str(e), getattr(e, "code", "invalid"))

    def _retry(self, r: _Room, op: _Op, now_ms: int, step: ClientStep, why: str, *,
               hub_epoch: int | None = None, refs: Sequence[bytes] | None = None) -> None:
        """Schedule the rebuild of ``op`` after a refusal (see RetryStrategy)."""
        g = r.group
        if op.attempts >= self.retry.max_attempts:
            self._fail(step, r, op, f"gave up after {op.attempts} attempt(s), last: {why}", why)
            return
        if self.retry.mode == "abandon" and op.kind == _UPDATE:
            self._fail(step, r, op, f"abandoned after {why}", why)
            return
        op.stage = _WAITING
        after = self.retry.mode == "after_commit" and op.kind != _JOIN
        op.wait_epoch = hub_epoch if after else None
        op.wait_refs = list(refs) if after and refs else None
        op.wait_from_epoch = g.epoch if g is not None else -1
        delay = self._backoff(op.attempts)
        op.backoff_timer = self._timer(step, now_ms + delay, "retry", r.uri, op.id) if delay > 0 else None
        waits = []
        if op.wait_epoch is not None:
            waits.append(f"epoch {op.wait_epoch}")
        if op.wait_refs:
            waits.append(f"{len(op.wait_refs)} proposal(s)")
        if delay:
            waits.append(f"{delay} ms")
        detail = f"{op.kind} attempt {op.attempts + 1}/{self.retry.max_attempts}"
        if waits:
            detail += " after " + ", ".join(waits)
        self._ev(step, "client.retry", r.uri, hub_epoch if hub_epoch is not None else (g.epoch if g else None),
                 op.msg_id, why, detail, op.target)

    def _backoff(self, failures: int) -> int:
        """The wait before the rebuild after ``failures`` refusals (see RetryStrategy)."""
        rs = self.retry
        wait = rs.backoff_ms * rs.factor ** (failures - 1)
        if rs.cap_ms is not None:
            wait = min(wait, rs.cap_ms)
        w = int(wait)
        if rs.jitter == "add":
            return w + self._uniform(0, rs.jitter_ms)
        if rs.jitter == "full":
            return self._uniform(0, w)
        if rs.jitter == "equal":
            return w // 2 + self._uniform(0, w - w // 2)
        return w

    # ------------------------------------------------------------ building requests

    def _fetch_key_material(self, r: _Room, op: _Op, step: ClientStep) -> None:
        g = r.group
        assert g is not None
        raw = find_extension(g.extensions, ExtensionType.required_capabilities)
        required = RequiredCapabilities.decode(raw) if raw is not None else RequiredCapabilities([], [], [])
        tbs = W.KeyMaterialRequestTBS(
            W.MLS10, W.IdentifierUri(self.user_uri), W.IdentifierUri(op.target), W.IdentifierUri(r.uri),
            [self.suite.suite_id], required, self.signature_pub, self.credential,
        )
        sig = self.suite.sign_with_label(self.signature_priv, b"KeyMaterialRequestTBS", tbs.encode())
        req = W.KeyMaterialRequest(
            tbs.protocol, tbs.requesting_user, tbs.target_user, tbs.room_id, tbs.acceptable_ciphersuites,
            tbs.required_capabilities, tbs.requester_signature_key, tbs.requester_credential, sig,
        )
        op.request_id = self._request(step, ClientOp.fetch_key_material, r.uri, op.id, "key_material",
                                      req.encode(), op.target)
        op.stage = _FETCHING

    def _commit_add(self, r: _Room, op: _Op, now_ms: int, step: ClientStep) -> None:
        g = r.group
        assert g is not None and op.key_packages is not None
        if self._removal_pending(g):
            self._wait_next_epoch(r, op)
            return
        listed = _participants(g.extensions)
        if any(u == op.target for u, _ in listed):
            # Already a participant (a concurrent add won, or our own earlier
            # attempt was accepted after all): nothing left to do.
            self._done(op)
            return
        role = resolve_role(room_policy(g.extensions), op.role, MEMBER_ROLE)
        upd = W.ParticipantListUpdate([], [], [W.UserRolePair(op.target, role)])
        proposals = [Proposal.of(AppDataUpdate(CID.participant_list, AppDataUpdateOperation.update, upd.encode()))]
        present = {leaf.signature_key for _, leaf in g.members()}
        proposals += [Proposal.of(Add(kp)) for kp in op.key_packages if kp.leaf_node.signature_key not in present]
        self._send_commit(r, op, proposals, now_ms, step)

    def _commit_remove(self, r: _Room, op: _Op, now_ms: int, step: ClientStep) -> None:
        g = r.group
        assert g is not None
        if self._removal_pending(g):
            self._wait_next_epoch(r, op)
            return
        removing = _pending_removed_leaves(g)
        leaves = [i for i, leaf in g.members() if _user_of_leaf(leaf) == op.target and i not in removing]
        proposals = [Proposal.of(Remove(i)) for i in leaves]
        listed = [u for u, _ in _participants(g.extensions)]
        if op.target in listed and op.target not in _pending_removed_users(g):
            upd = W.ParticipantListUpdate([], [listed.index(op.target)], [])
            proposals.append(
                Proposal.of(AppDataUpdate(CID.participant_list, AppDataUpdateOperation.update, upd.encode()))
            )
        in_tree = any(_user_of_leaf(leaf) == op.target for _, leaf in g.members())
        if not in_tree and op.target not in listed:
            self._done(op)  # not (or no longer) in the room
            return
        self._send_commit(r, op, proposals, now_ms, step)

    def _commit_pending(self, r: _Room, op: _Op, now_ms: int, step: ClientStep) -> None:
        g = r.group
        assert g is not None
        if not self._needs_commit(r):
            self._done(op)  # someone else committed them, or they remove us
            return
        self._send_commit(r, op, [], now_ms, step)

    def _send_commit(self, r: _Room, op: _Op, proposals: list[Proposal], now_ms: int, step: ClientStep) -> None:
        """Commit ``proposals`` plus every cached proposal (the hub requires
        them) and send the HandshakeBundle: Welcome (if any), a partial
        GroupInfo, and a RatchetTreeOption -- ``full`` when there is a Welcome
        (joiners need the tree; the hub checks it equals its own), else
        ``distribution_service`` (the hub has the tree already)."""
        g = r.group
        assert g is not None
        out = g.commit(proposals, now_s=self._now_s(now_ms), ratchet_tree_in_welcome=False)
        new_state = out.staged.state
        assert new_state is not None
        welcome = out.welcome.body if out.welcome is not None else None
        if welcome is not None:
            rto = RatchetTreeOption(RatchetTreeRepresentation.full, new_state.tree.to_nodes(), None, None)
        else:
            rto = RatchetTreeOption(RatchetTreeRepresentation.distribution_service, None, None, None)
        gio = W.GroupInfoOption.partial(partial_group_info(out.group_info))
        body = W.UpdateRequest(W.HandshakeBundle.commit(out.message, gio, rto, welcome)).encode()
        encoded = out.message.encode()
        mid = msg_id_of(encoded)
        r.own_commits[mid] = out.staged
        op.msg_id, op.staged, op.merged = mid, out.staged, False
        op.attempts += 1
        op.request_id = self._request(step, ClientOp.update, r.uri, op.id, "commit", body)
        op.stage = _SUBMITTED
        oc = out.staged.outcome
        detail = f"{op.kind} attempt {op.attempts}: +{len(oc.added)} -{len(oc.removed)}"
        # Sizes for the fanout study (appended; the prefix above is what other readers parse).
        detail += (f" sizes: commit={len(encoded)} welcome={len(out.welcome.encode()) if out.welcome is not None else 0}"
                   f" groupinfo={len(out.group_info.encode())} partial_groupinfo={len(gio.encode())}"
                   f" bundle={len(body)}")
        self._ev(step, "client.commit", r.uri, g.epoch, mid, "", detail, op.target)

    def _propose_leave(self, r: _Room, op: _Op, step: ClientStep) -> None:
        """Removes of all this user's clients and the participant-list removal,
        sent together as one proposals bundle."""
        g = r.group
        assert g is not None
        self._forget_own_proposals(g, op)
        removing = _pending_removed_leaves(g)
        proposals = [
            Proposal.of(Remove(i))
            for i, leaf in g.members()
            if _user_of_leaf(leaf) == self.user_uri and i not in removing
        ]
        listed = [u for u, _ in _participants(g.extensions)]
        if self.user_uri in listed and self.user_uri not in _pending_removed_users(g):
            upd = W.ParticipantListUpdate([], [listed.index(self.user_uri)], [])
            proposals.append(
                Proposal.of(AppDataUpdate(CID.participant_list, AppDataUpdateOperation.update, upd.encode()))
            )
        if not proposals:
            # Someone already proposed all of it this epoch: wait for the commit.
            self._wait_next_epoch(r, op)
            return
        msgs = [g.propose(p) for p in proposals]
        op.proposal_refs = list(g.state.own_proposals[-len(msgs):])
        ids = [msg_id_of(m.encode()) for m in msgs]
        r.own_msgs.update(ids)
        op.msg_id = ids[0]
        op.attempts += 1
        body = W.UpdateRequest(W.HandshakeBundle.proposals(msgs[0], msgs[1:])).encode()
        op.request_id = self._request(step, ClientOp.update, r.uri, op.id, "proposals", body)
        op.stage = _SUBMITTED
        self._ev(step, "client.propose", r.uri, g.epoch, ids[0], "", f"leave: {len(msgs)} proposal(s)",
                 self.user_uri)

    def _forget_own_proposals(self, g: Group, op: _Op) -> None:
        """Drop this op's earlier proposals from the cache if the hub refused
        them (same epoch, immediate retry): a commit must not include them."""
        for ref in op.proposal_refs:
            g.state.proposals.pop(ref, None)
            if ref in g.state.own_proposals:
                g.state.own_proposals.remove(ref)
        op.proposal_refs = []

    def _submit_message(self, r: _Room, op: _Op, step: ClientStep) -> None:
        g = r.group
        assert g is not None
        if not op.content:
            salt = self.rng.random_bytes(SALT_LEN)
            op.content = encode_mimi_content(MimiContent(salt, self.user_uri, r.uri, op.text))
        aad = F.add_frank_aad(op.content)
        msg = g.protect(op.content, aad)
        mid = msg_id_of(msg.encode())
        r.own_msgs.add(mid)
        op.msg_id = mid
        op.attempts += 1
        body = W.SubmitMessageRequest(W.MLS10, msg, W.IdentifierUri(self.user_uri)).encode()
        op.request_id = self._request(step, ClientOp.submit_message, r.uri, op.id, "submit", body)
        op.stage = _SUBMITTED
        self._ev(step, "client.submit", r.uri, g.epoch, mid, "", f"attempt {op.attempts}, {len(op.content)} bytes")

    def _fetch_group_info(self, r: _Room, op: _Op, step: ClientStep) -> None:
        priv, pub = self.suite.generate_hpke_key_pair(self.rng)
        op.hpke_priv = priv
        tbs = W.GroupInfoRequestTBS(W.MLS10, self.suite.suite_id, self.signature_pub, self.credential, pub, None)
        sig = self.suite.sign_with_label(self.signature_priv, b"GroupInfoRequestTBS", tbs.encode())
        req = W.GroupInfoRequest(W.MLS10, self.suite.suite_id, self.signature_pub, self.credential, pub, None, sig)
        op.request_id = self._request(step, ClientOp.fetch_group_info, r.uri, op.id, "group_info", req.encode())
        op.stage = _FETCHING

    # ------------------------------------------------------------ replies

    def _on_create_reply(self, r: _Room, op: _Op, reply: ClientReply, now_ms: int, step: ClientStep) -> None:
        if reply.status not in (200, 201):
            self._fail(step, r, op, f"the hub refused the room: {reply.code} {reply.body[:100]!r}",
                       reply.code or str(reply.status))
            return
        assert op.creating is not None
        r.group, r.removed = op.creating, False
        op.creating = None
        self._done(op)
        self._ev(step, "client.epoch", r.uri, r.group.epoch, "", "created", "created the room " + self._tag(r))

    def _on_key_material_reply(self, r: _Room, op: _Op, reply: ClientReply, now_ms: int, step: ClientStep) -> None:
        if reply.status != 200:
            self._fail(step, r, op, f"key material: {reply.code or reply.status}", reply.code or str(reply.status))
            return
        resp = W.KeyMaterialResponse.decode(reply.body)
        kps = [c.key_package for c in resp.clients
               if c.client_status == W.KeyMaterialClientCode.success and c.key_package is not None]
        if not kps:
            self._fail(step, r, op, f"no KeyPackage for {op.target} ({W.KeyMaterialUserCode(resp.user_status).name})",
                       W.KeyMaterialUserCode(resp.user_status).name)
            return
        op.key_packages = kps
        op.stage = _NEW  # the pump commits now

    def _on_commit_reply(self, r: _Room, op: _Op, reply: ClientReply, now_ms: int, step: ClientStep) -> None:
        g = r.group
        assert g is not None
        resp = W.UpdateRoomResponse.decode(reply.body) if reply.status == 200 else None
        if op.merged:
            self._done(op)  # the echo arrived first and was merged
            return
        code = resp.response_code if resp is not None else None
        if code == W.UpdateResponseCode.success:
            staged = r.own_commits.pop(op.msg_id, None)
            if g.pending is not None and g.pending is op.staged:
                g.merge_pending_commit()
            elif staged is not None and g.active and staged.epoch == g.epoch + 1:
                g.merge(staged)
            else:
                self._ev(step, "client.drop", r.uri, g.epoch, op.msg_id, "staleSuccess",
                         "accepted commit no longer applies to this client's state")
                self._done(op)
                return
            self._done(op)
            r.own_msgs.add(op.msg_id)  # its echo is still to come: recognise it
            self._after_merge(r, op.staged, op.msg_id, f"own commit ({op.kind})", [], now_ms, step)
            return
        if g.pending is not None and g.pending is op.staged:
            g.discard_pending_commit()
        if resp is None:
            self._transport_failure(r, op, reply, now_ms, step)
        elif code == W.UpdateResponseCode.wrongEpoch:
            self._retry(r, op, now_ms, step, "wrongEpoch", hub_epoch=resp.current_epoch)
        elif code == W.UpdateResponseCode.invalidProposal:
            self._retry(r, op, now_ms, step, "invalidProposal", refs=resp.invalid_proposals or [])
        else:
            self._fail(step, r, op, f"notAllowed: {resp.error_description}", "notAllowed")

    def _transport_failure(self, r: _Room, op: _Op, reply: ClientReply, now_ms: int, step: ClientStep) -> None:
        """No protocol answer: retry on a server error or timeout (the hub may
        or may not have accepted; a later echo of an accepted commit still
        merges, see ``own_commits``), fail on any other HTTP error."""
        status = reply.code or str(reply.status)
        if reply.status == 0 or reply.status == 408 or reply.status == 429 or reply.status >= 500:
            self._retry(r, op, now_ms, step, status)
        else:
            self._fail(step, r, op, f"HTTP {reply.status} {reply.code} {reply.body[:100]!r}", status)

    def _on_proposals_reply(self, r: _Room, op: _Op, reply: ClientReply, now_ms: int, step: ClientStep) -> None:
        g = r.group
        assert g is not None
        resp = W.UpdateRoomResponse.decode(reply.body) if reply.status == 200 else None
        code = resp.response_code if resp is not None else None
        if code == W.UpdateResponseCode.success:
            # Accepted and cached by the hub. Stay queued until the commit that
            # removes us; if an epoch passes without it, propose again.
            self._wait_next_epoch(r, op)
            op.attempts = 0
            return
        if g.active:
            self._forget_own_proposals(g, op)
        if resp is None:
            self._transport_failure(r, op, reply, now_ms, step)
        elif code == W.UpdateResponseCode.wrongEpoch:
            self._retry(r, op, now_ms, step, "wrongEpoch", hub_epoch=resp.current_epoch)
        elif code == W.UpdateResponseCode.invalidProposal:
            self._retry(r, op, now_ms, step, "invalidProposal", hub_epoch=g.epoch + 1)
        else:
            self._fail(step, r, op, f"notAllowed: {resp.error_description}", "notAllowed")

    def _on_submit_reply(self, r: _Room, op: _Op, reply: ClientReply, now_ms: int, step: ClientStep) -> None:
        if reply.status != 200:
            self._transport_failure(r, op, reply, now_ms, step)
            return
        resp = W.SubmitMessageResponse.decode(reply.body)
        if resp.status_code == W.SubmitResponseCode.accepted:
            self._done(op)
        elif resp.status_code == W.SubmitResponseCode.epochTooOld:
            self._retry(r, op, now_ms, step, "epochTooOld", hub_epoch=resp.current_epoch)
        else:
            self._fail(step, r, op, "notAllowed", "notAllowed")

    def _on_group_info_reply(self, r: _Room, op: _Op, reply: ClientReply, now_ms: int, step: ClientStep) -> None:
        if reply.status != 200:
            self._transport_failure(r, op, reply, now_ms, step)
            return
        resp = W.GroupInfoResponse.decode(reply.body)
        if resp.status != W.GroupInfoCode.success:
            self._fail(step, r, op, f"groupInfo: {W.GroupInfoCode(resp.status).name}", W.GroupInfoCode(resp.status).name)
            return
        assert resp.hub_sender is not None and resp.encrypted_groupinfo_and_tree is not None
        if resp.room_id != r.uri or resp.cipher_suite != self.suite.suite_id:
            raise MLSError("GroupInfoResponse for another room or suite")
        if not self.suite.verify_with_label(resp.hub_sender.signature_key, b"GroupInfoResponseTBS",
                                            resp.tbs().encode(), resp.signature or b""):
            raise MLSError("bad hub signature on the GroupInfoResponse")
        ct = resp.encrypted_groupinfo_and_tree
        pt = self.suite.decrypt_with_label(op.hpke_priv, W.GROUP_INFO_ENCRYPTION_LABEL, r.uri.encode(),
                                           ct.kem_output, ct.ciphertext)
        tbe = W.GroupInfoRatchetTreeTBE.decode(pt)
        gi = tbe.group_info
        if gi.group_context.group_id != group_id_of_room(r.uri):
            raise MLSError("the GroupInfo is for another group")
        raw = find_extension(gi.group_context.extensions, ExtensionType.external_senders)
        senders = ExternalSenders.decode(raw).senders if raw is not None else []
        if not any(s.signature_key == resp.hub_sender.signature_key for s in senders):
            raise MLSError("the responding hub is not an external sender of the group")
        rto = tbe.ratchet_tree_option
        tree = rto.ratchet_tree if rto.representation == RatchetTreeRepresentation.full else None
        self_removes = [
            p.proposal for p in tbe.pending_proposals
            if p.proposal.body.content.proposal is not None
            and p.proposal.body.content.proposal.proposal_type == ProposalType.self_remove
        ]
        resync_leaf = None
        if op.resync:
            full = tree_from_group_info(self.suite, gi, tree)
            for i in range(full.n_leaves):
                leaf = full.leaf(i)
                if leaf is not None and leaf.signature_key == self.signature_pub:
                    resync_leaf = i
                    break
        r.joins += 1
        group, commit = Group.external_join(
            gi, self.credential, self.signature_priv, _fork(self.rng, f"group {r.uri} #{r.joins}"),
            ratchet_tree=tree, self_removes=self_removes, config=self._config(), resync_leaf=resync_leaf,
        )
        gio = W.GroupInfoOption.partial(partial_group_info(group.group_info()))
        rto_out = RatchetTreeOption(RatchetTreeRepresentation.distribution_service, None, None, None)
        body = W.UpdateRequest(W.HandshakeBundle.commit(commit, gio, rto_out, None)).encode()
        op.joiner = group
        op.msg_id = msg_id_of(commit.encode())
        op.attempts += 1
        op.request_id = self._request(step, ClientOp.update, r.uri, op.id, "external_commit", body)
        if resync_leaf is not None:
            self._ev(step, "client.gap", r.uri, gi.group_context.epoch, op.msg_id, "resync",
                     f"resync by external commit replacing leaf {resync_leaf}")
        op.stage = _SUBMITTED
        self._ev(step, "client.commit", r.uri, gi.group_context.epoch, op.msg_id, "",
                 f"join attempt {op.attempts}: external commit", self.user_uri)

    def _on_external_commit_reply(self, r: _Room, op: _Op, reply: ClientReply, now_ms: int,
                                  step: ClientStep) -> None:
        resp = W.UpdateRoomResponse.decode(reply.body) if reply.status == 200 else None
        code = resp.response_code if resp is not None else None
        if code == W.UpdateResponseCode.success:
            assert op.joiner is not None
            r.group, r.removed = op.joiner, False
            op.joiner = None
            self._done(op)
            if op.resync:
                r.held.clear()
                r.gap_epoch = -1
            r.own_msgs.add(op.msg_id)  # its echo is still to come: recognise it
            self._ev(step, "client.epoch", r.uri, r.group.epoch, op.msg_id, "joined",
                     "joined by external commit " + self._tag(r))
            return
        op.joiner = None
        if resp is None:
            self._transport_failure(r, op, reply, now_ms, step)
        elif code == W.UpdateResponseCode.wrongEpoch:
            self._retry(r, op, now_ms, step, "wrongEpoch", hub_epoch=resp.current_epoch)
        else:
            self._fail(step, r, op, f"{W.UpdateResponseCode(code).name}: {resp.error_description}",
                       W.UpdateResponseCode(code).name)

    # ================================================================ incoming messages

    def _ingest(self, r: _Room, fm: W.FanoutMessage, mid: str, now_ms: int, step: ClientStep) -> None:
        """Process one delivery now, buffer it, or drop it (with an event)."""
        kind = fm.kind
        if mid in r.seen or mid in r.buffered_ids:
            self._ev(step, "client.drop", r.uri, _epoch_of(fm.message), mid, "duplicate",
                     f"{kind.name if kind else '?'} already received")
            return
        if kind == W.MessageKind.welcome:
            self._on_welcome(r, fm, mid, now_ms, step)
            return
        ep = _epoch_of(fm.message)
        if ep is None or kind is None:
            r.seen.add(mid)
            self._ev(step, "client.drop", r.uri, None, mid, "malformed", "not a MIMI fanout message")
            return
        if r.group is None:
            # Not (yet) a member: the Welcome or our external commit's success
            # may still be on its way. Keep it; stale ones are dropped later.
            self._buffer(r, ep, mid, fm, step)
            return
        g = r.group
        if not g.active or r.removed:
            r.seen.add(mid)
            if kind == W.MessageKind.application and ep <= g.epoch and not g.active:
                # Accepted before the commit that removed us, delivered after it.
                self._on_application(r, fm, mid, ep, step)
                return
            self._ev(step, "client.drop", r.uri, ep, mid, "notMember", f"{kind.name} after leaving the room")
            return
        if ep > g.epoch:
            if not any(e == ep for e, _, _, _ in r.buffer):
                self._ev(step, "client.gap", r.uri, ep, mid, "", f"have epoch {g.epoch}, got {kind.name} of epoch {ep}")
            self._buffer(r, ep, mid, fm, step)
            self._arm_gap_timer(r, now_ms, step)
            return
        r.seen.add(mid)
        if mid in r.own_msgs:
            self._ev(step, "client.drop", r.uri, ep, mid, "ownEcho", f"own {kind.name}")
            return
        if kind == W.MessageKind.commit:
            self._on_commit(r, fm, mid, ep, now_ms, step)
        elif kind == W.MessageKind.proposal:
            if ep < g.epoch:
                self._ev(step, "client.drop", r.uri, ep, mid, "stale", f"proposal of epoch {ep} < {g.epoch}")
                return
            self._on_proposals(r, [fm.message, *(fm.more_proposals or [])], mid, now_ms, step)
        else:
            self._on_application(r, fm, mid, ep, step)

    def _buffer(self, r: _Room, ep: int, mid: str, fm: W.FanoutMessage, step: ClientStep) -> None:
        if len(r.buffer) >= MAX_BUFFERED:
            r.seen.add(mid)
            self._ev(step, "client.drop", r.uri, ep, mid, "bufferFull", f"{len(r.buffer)} messages already waiting")
            return
        self._arrivals += 1
        r.buffer.append((ep, self._arrivals, mid, fm))
        r.buffered_ids.add(mid)

    def _drain(self, r: _Room, now_ms: int, step: ClientStep) -> None:
        """Process buffered deliveries that became processable, epoch by
        epoch; within an epoch proposals and application messages before the
        commit (the hub accepted them before the commit that ended the epoch)."""
        while r.buffer and r.group is not None:
            g = r.group
            if not g.active or r.removed:
                for ep, _, mid, _fm in sorted(r.buffer, key=lambda b: (b[0], b[1])):
                    r.seen.add(mid)
                    self._ev(step, "client.drop", r.uri, ep, mid, "notMember", "buffered message after leaving")
                r.buffer.clear()
                r.buffered_ids.clear()
                return
            ready = [b for b in r.buffer if b[0] <= g.epoch]
            if not ready:
                return
            ready.sort(key=lambda b: (b[0], b[3].kind == W.MessageKind.commit, b[1]))
            ep, n, mid, fm = ready[0]
            r.buffer.remove((ep, n, mid, fm))
            r.buffered_ids.discard(mid)
            self._ingest(r, fm, mid, now_ms, step)

    def _on_commit(self, r: _Room, fm: W.FanoutMessage, mid: str, ep: int, now_ms: int, step: ClientStep) -> None:
        g = r.group
        assert g is not None
        head = r.queue[0] if r.queue else None
        if ep < g.epoch:
            status = "ownEcho" if mid in r.own_commits or (head is not None and head.msg_id == mid) else "stale"
            r.own_commits.pop(mid, None)
            self._ev(step, "client.drop", r.uri, ep, mid, status, f"commit of epoch {ep} < {g.epoch}")
            return
        own = r.own_commits.pop(mid, None)
        if own is not None:
            # Our own commit, echoed by the hub: it was accepted. Merge it even
            # if the reply has not arrived (or said something else first).
            if g.pending is own:
                g.merge_pending_commit()
            else:
                g.merge(own)
            for op in r.queue:
                if op.msg_id == mid and op.stage == _SUBMITTED:
                    op.merged = True
            self._after_merge(r, own, mid, "own commit (echo)", fm.external_proposals or [], now_ms, step)
            return
        try:
            res = g.process(fm.message, now_s=self._now_s(now_ms))
        except ProposalError as e:
            if "unknown proposal" in str(e) and len(r.held) < MAX_BUFFERED:
                # The proposals it commits are still on their way (the hub's
                # notifies overtook each other): hold it until they arrive.
                r.seen.discard(mid)
                r.buffered_ids.add(mid)
                r.held.append((ep, mid, fm))
                self._ev(step, "client.gap", r.uri, ep, mid, "waitProposals", "commit waits for the proposals it references")
                self._arm_gap_timer(r, now_ms, step)
                return
            self._ev(step, "client.drop", r.uri, ep, mid, getattr(e, "code", "invalid"), f"commit: {e}"[:300])
            return
        except (MLSError, DecodeError, EncodeError, CryptoError, ValueError) as e:
            self._ev(step, "client.drop", r.uri, ep, mid, getattr(e, "code", "invalid"), f"commit: {e}"[:300])
            return
        if not isinstance(res, StagedCommit):
            self._ev(step, "client.drop", r.uri, ep, mid, "invalid", "not a commit")
            return
        if g.pending is not None:
            g.discard_pending_commit()  # ours lost the race; the hub will say wrongEpoch
        g.merge(res)
        self._after_merge(r, res, mid, f"commit by {self._committer(res, g)}", fm.external_proposals or [],
                          now_ms, step)

    @staticmethod
    def _committer(staged: StagedCommit, g: Group) -> str:
        s = staged.sender
        if s.sender_type == SenderType.new_member_commit:
            return "a new member"
        if s.leaf_index is not None and staged.state is not None:
            leaf = staged.state.tree.leaf(s.leaf_index)
            if leaf is not None:
                return _client_of_leaf(leaf) or f"leaf {s.leaf_index}"
        return f"leaf {s.leaf_index}"

    def _after_merge(self, r: _Room, staged: StagedCommit | None, mid: str, detail: str,
                     external_proposals: Sequence[MLSMessage], now_ms: int, step: ClientStep) -> None:
        g = r.group
        assert g is not None
        if not g.active or (staged is not None and staged.removed_self):
            self._removed(r, mid, now_ms, step)
            return
        self._ev(step, "client.epoch", r.uri, g.epoch, mid, "", detail + " " + self._tag(r))
        r.own_commits = {k: v for k, v in r.own_commits.items() if v.epoch > g.epoch}
        if external_proposals:
            # The hub's proposals for the new epoch, stapled to the commit ([P6] Fanout).
            self._on_proposals(r, list(external_proposals), mid, now_ms, step)

    def _removed(self, r: _Room, mid: str, now_ms: int, step: ClientStep) -> None:
        """A commit removed this client: stop, tell the provider, settle the queue."""
        g = r.group
        r.removed = True
        self._ev(step, "client.epoch", r.uri, g.epoch + 1 if g is not None else None, mid, "removed",
                 "removed from the group")
        # The body names the last epoch we were a member of: the provider still
        # delivers application messages of that epoch and earlier (accepted
        # before our removal, but possibly overtaken by the removing commit).
        last = g.epoch if g is not None else 0
        self._request(step, ClientOp.left_room, r.uri, 0, "left", last.to_bytes(8, "big"))
        for op in r.queue:
            if op.stage in (_DONE, _FAILED):
                continue
            if op.kind == _LEAVE:
                self._done(op)
            elif op.kind != _JOIN:
                self._fail(step, r, op, "removed from the room", "removed")
        r.own_commits.clear()
        r.pending_timer = None

    def _on_proposals(self, r: _Room, messages: list[MLSMessage], mid: str, now_ms: int, step: ClientStep) -> None:
        g = r.group
        assert g is not None
        received = 0
        for m in messages:
            pid = msg_id_of(m.encode())
            if pid in r.own_msgs:
                continue
            try:
                res = g.process(m, now_s=self._now_s(now_ms))
            except ReplayError:
                continue  # already cached (e.g. the same proposal restapled)
            except (MLSError, DecodeError, EncodeError, CryptoError, ValueError) as e:
                self._ev(step, "client.drop", r.uri, g.epoch, pid, getattr(e, "code", "invalid"),
                         f"proposal: {e}"[:300])
                continue
            if isinstance(res, ProposalReceived):
                received += 1
        if received and r.held:
            held, r.held = r.held, []
            for _ep, hmid, hfm in held:
                r.buffered_ids.discard(hmid)
                self._ingest(r, hfm, hmid, now_ms, step)
            if not r.member:
                return
        if received:
            self._pending_proposals_arrived(r, now_ms, step)

    def _on_application(self, r: _Room, fm: W.FanoutMessage, mid: str, ep: int, step: ClientStep) -> None:
        g = r.group
        assert g is not None
        try:
            res = g.process(fm.message) if g.active else g.process_late_application(fm.message)
        except ReplayError:
            self._ev(step, "client.drop", r.uri, ep, mid, "duplicate", "application message replayed")
            return
        except WrongEpochError:
            self._ev(step, "client.drop", r.uri, ep, mid, "stale", f"application message of epoch {ep}, too old")
            return
        except (MLSError, DecodeError, EncodeError, CryptoError, ValueError) as e:
            self._ev(step, "client.drop", r.uri, ep, mid, getattr(e, "code", "invalid"), f"application: {e}"[:300])
            return
        if not isinstance(res, ApplicationMessage):
            self._ev(step, "client.drop", r.uri, ep, mid, "invalid", "not an application message")
            return
        tree = g.tree if res.epoch == g.epoch else _past_tree(g, res.epoch)
        leaf = tree.leaf(res.sender) if tree is not None and res.sender < tree.n_leaves else None
        sender_client = _client_of_leaf(leaf) if leaf is not None else None
        if sender_client is None:
            self._ev(step, "client.drop", r.uri, ep, mid, "unknownSender", "sender has no MIMI client credential")
            return
        sender_user = user_of_client(sender_client)
        try:
            content = decode_mimi_content(res.data)
        except ContentError as e:
            self._ev(step, "client.drop", r.uri, ep, mid, "badContent", str(e)[:200], sender_client)
            return
        if content.sender_uri != sender_user or content.room_uri != r.uri:
            self._ev(step, "client.drop", r.uri, ep, mid, "senderMismatch",
                     f"content claims {content.sender_uri} in {content.room_uri}", sender_client)
            return
        check = F.verify_received_frank(self.suite, g.extensions, r.uri, sender_user, res.authenticated_data,
                                        res.data, fm.frank, fm.timestamp)
        if check.record is not None:
            self._franks[(r.uri, mid)] = (res.data, check.record)
        step.delivered.append((r.uri, sender_user, content.text, mid))
        self._ev(step, "client.deliver", r.uri, ep, mid, f"frank:{check.status.value}", f"from {sender_user}",
                 sender_client)

    def _on_welcome(self, r: _Room, fm: W.FanoutMessage, mid: str, now_ms: int, step: ClientStep) -> None:
        welcome = fm.message.body
        mine = [s.new_member for s in welcome.secrets if s.new_member in self._key_packages]
        if not mine:
            r.seen.add(mid)
            self._ev(step, "client.drop", r.uri, None, mid, "notForMe", "Welcome for none of our KeyPackages")
            return
        if r.member:
            r.seen.add(mid)
            self._ev(step, "client.drop", r.uri, r.group.epoch if r.group else None, mid, "duplicate",
                     "Welcome while already a member")
            return
        ref = mine[0]
        kp, priv, last_resort = self._key_packages[ref]
        rto = fm.ratchet_tree_option
        tree = rto.ratchet_tree if rto is not None and rto.representation == RatchetTreeRepresentation.full else None
        r.joins += 1
        try:
            group = Group.join(welcome, kp, priv, _fork(self.rng, f"group {r.uri} #{r.joins}"),
                               ratchet_tree=tree, config=self._config(), now_s=self._now_s(now_ms))
            if group.group_id != group_id_of_room(r.uri):
                raise MLSError("the Welcome is for another room's group")
        except (MLSError, DecodeError, EncodeError, CryptoError, UriError, ValueError) as e:
            r.seen.add(mid)
            self._ev(step, "client.drop", r.uri, None, mid, getattr(e, "code", "invalid"), f"Welcome: {e}"[:300])
            return
        r.seen.add(mid)
        if not last_resort:
            del self._key_packages[ref]
        r.group, r.removed = group, False
        self._ev(step, "client.epoch", r.uri, group.epoch, mid, "joined", "joined from a Welcome " + self._tag(r))

    # ------------------------------------------------------------ pending proposals

    def _tag(self, r: _Room) -> str:
        """The room state fingerprint for ``client.epoch`` details (see hub.state_tag)."""
        g = r.group
        assert g is not None
        return state_tag(g.tree_hash, dict(_participants(g.extensions)), g.epoch_authenticator)

    def _stuck(self, r: _Room) -> bool:
        """Whether the room waits for something that has not come: a buffered
        message of a later epoch, or a commit held for missing proposals."""
        g = r.group
        if g is None or not r.member:
            return False
        return bool(r.held) or any(ep > g.epoch for ep, _, _, _ in r.buffer)

    def _arm_gap_timer(self, r: _Room, now_ms: int, step: ClientStep) -> None:
        """Watch a gap: if the client is still stuck at the same epoch after
        ``gap_timeout_ms`` (what it misses was lost, not late), it resyncs by
        external commit. A gap is never skipped silently."""
        if self.gap_timeout_ms is None or r.gap_timer is not None or r.group is None:
            return
        r.gap_epoch = r.group.epoch
        r.gap_timer = self._timer(step, now_ms + self.gap_timeout_ms, "gap", r.uri, 0)

    def _queue_resync(self, r: _Room, now_ms: int, step: ClientStep) -> None:
        if any(op.kind == _JOIN and op.resync and op.stage not in (_DONE, _FAILED) for op in r.queue):
            return
        g = r.group
        self._ev(step, "client.gap", r.uri, g.epoch if g else None, "", "stuck",
                 f"no progress for {self.gap_timeout_ms} ms: resync")
        op = _Op(self._next_op, _JOIN, r.uri, now_ms, resync=True)
        self._next_op += 1
        head = r.queue[0] if r.queue else None
        if head is not None and head.stage == _WAITING:
            r.queue.appendleft(op)  # the head waits for the epoch we cannot reach
        else:
            r.queue.insert(1 if head is not None else 0, op)

    def _removal_pending(self, g: Group) -> bool:
        """Whether a cached proposal removes this client: then it must not
        commit (it cannot commit its own removal; the hub requires every
        cached proposal in the next commit)."""
        me = g.own_leaf
        for cp in g.state.proposals.values():
            t = cp.proposal.proposal_type
            if t == ProposalType.remove and cp.proposal.body.removed == me:
                return True
            if t == ProposalType.self_remove and cp.sender.leaf_index == me:
                return True
        return False

    def _needs_commit(self, r: _Room) -> bool:
        g = r.group
        return g is not None and g.active and bool(g.state.proposals) and not self._removal_pending(g)

    def _queue_commit_pending(self, r: _Room, now_ms: int) -> None:
        if not any(op.kind == _COMMIT_PENDING and op.stage not in (_DONE, _FAILED) for op in r.queue):
            self._enqueue(r.uri, _COMMIT_PENDING, now_ms)

    def _pending_proposals_arrived(self, r: _Room, now_ms: int, step: ClientStep) -> None:
        """The room's pending-proposal strategy: commit now, or after a random
        delay if nobody else did by then."""
        if not self._needs_commit(r):
            return
        strategy, delays = self._room_pending.get(r.uri, (self.pending_proposals, self.pending_delay_ms))
        if strategy == "immediate_commit":
            self._queue_commit_pending(r, now_ms)
        elif r.pending_timer is None:
            delay = self._uniform(*delays)
            r.pending_timer = self._timer(step, now_ms + delay, "pending", r.uri, 0)


# ==========================================================================
# room state (policy module glue)

#: What every member of a MIMI room must support (GroupContext
#: ``required_capabilities``): the app_data_dictionary extension, the
#: AppDataUpdate and SelfRemove proposals, basic credentials.
MIMI_REQUIRED_CAPABILITIES = RequiredCapabilities(
    [int(ExtensionType.app_data_dictionary)],
    [int(ProposalType.app_data_update), int(ProposalType.self_remove)],
    [int(CredentialType.basic)],
)


def hub_credential(hub_domain: str) -> Credential:
    """The credential of the hub's external-sender entry: a basic credential
    naming the provider, ``mimi://<domain>`` (as the franking agent's)."""
    return Credential.basic(f"mimi://{hub_domain}".encode())


#: Role names a client uses when the caller names none ([RP]
#: "Cooperatively administered room", the default policy): the creator
#: becomes ``group_admin``, added users ``ordinary_user``.
CREATOR_ROLE = "group_admin"
MEMBER_ROLE = "ordinary_user"


def resolve_role(policy: P.RoomPolicy, role: int | str | None, default: str) -> int:
    """A role index from an index, a role name, or None (``default`` by name).

    Falls back to the lowest defined role above ``banned`` when the room has
    no role of that name, so rooms with other role sets still work."""
    if isinstance(role, int):
        if not policy.defined(role):
            raise ValueError(f"role {role} is not defined in this room")
        return role
    r = policy.role_by_name(role if role is not None else default)
    if r is not None:
        return int(r.role_index)
    if role is not None:
        raise ValueError(f"no role named {role!r} in this room")
    usable = sorted(x.role_index for x in policy.roles if x.role_index > int(W.RoleIndex.banned))
    if not usable:
        raise ValueError("the room defines no role a participant can hold")
    return int(usable[0])


def room_dictionary(
    room_uri: str,
    creator_user: str,
    policy: P.RoomPolicy | None,
    franking_agent: W.FrankingAgentData | None,
    room_name: str = "",
    creator_role: int | str | None = None,
) -> AppDataDictionary:
    """The ``app_data_dictionary`` of a new room: policy components, the
    participant list ``[(creator, creator role)]``, ``room_metadata`` naming
    the room, and the hub's ``franking_agent`` when given."""
    pol = policy if policy is not None else P.default_policy()
    role = resolve_role(pol, creator_role, CREATOR_ROLE)
    meta = W.RoomMetaData(W.IdentifierUri(room_uri), room_name, [], W.IdentifierUri(""), "", "")
    extra = {int(CID.franking_agent): franking_agent.encode()} if franking_agent is not None else None
    return P.room_app_data(pol, {creator_user: role}, meta, extra)


def room_policy(extensions: Sequence[Extension]) -> P.RoomPolicy:
    """The room policy in a GroupContext (the policy module's reading)."""
    return P.RoomPolicy.from_dictionary(_dictionary(extensions))


def client_app_components() -> Mapping[int, Any]:
    """AppDataUpdate semantics a member applies (GroupConfig.app_components):
    the same as the hub's (:func:`mimisim.mimi.policy.mimi_app_components`;
    the participant list is a delta, [P] Participant List), so members and
    hub compute the same GroupContext."""
    return P.mimi_app_components()


# ==========================================================================
# module helpers


def _fork(rng: RandomSource, name: str) -> RandomSource:
    """A named child stream when the source supports it (DeterministicRandom)."""
    fork: Callable[[str], RandomSource] | None = getattr(rng, "fork", None)
    return fork(name) if fork is not None else rng


def _epoch_of(msg: MLSMessage) -> int | None:
    body = msg.body
    if msg.wire_format == WireFormat.public_message and isinstance(body, PublicMessage):
        return int(body.content.epoch)
    if msg.wire_format == WireFormat.private_message:
        return int(body.epoch)
    return None


def _client_of_leaf(leaf: LeafNode | None) -> str | None:
    if leaf is None:
        return None
    cred = leaf.credential
    if cred.credential_type != CredentialType.basic or cred.identity is None:
        return None
    return client_of_identity(cred.identity)


def _user_of_leaf(leaf: LeafNode | None) -> str | None:
    client = _client_of_leaf(leaf)
    if client is None:
        return None
    try:
        return user_of_client(client)
    except UriError:
        return None


def _past_tree(g: Group, epoch: int) -> Any:
    """The ratchet tree of a past epoch the group still keeps (late messages)."""
    past = getattr(g, "_past", {}).get(epoch)
    return past.tree if past is not None else None


def _dictionary(extensions: Sequence[Extension]) -> AppDataDictionary:
    raw = find_extension(list(extensions), ExtensionType.app_data_dictionary)
    return AppDataDictionary.decode(raw) if raw is not None else AppDataDictionary([])


def _participants(extensions: Sequence[Extension]) -> list[tuple[str, int]]:
    raw = _dictionary(extensions).get(CID.participant_list)
    if raw is None:
        return []
    return [(p.user, p.role_index) for p in W.ParticipantListData.decode(raw).participants]


def _pending_removed_leaves(g: Group) -> set[int]:
    """Leaves a cached Remove or SelfRemove already removes."""
    out: set[int] = set()
    for cp in g.state.proposals.values():
        t = cp.proposal.proposal_type
        if t == ProposalType.remove:
            out.add(cp.proposal.body.removed)
        elif t == ProposalType.self_remove and cp.sender.leaf_index is not None:
            out.add(cp.sender.leaf_index)
    return out


def _pending_removed_users(g: Group) -> set[str]:
    """Users a cached participant-list update already removes."""
    listed = [u for u, _ in _participants(g.extensions)]
    out: set[str] = set()
    for cp in g.state.proposals.values():
        b = cp.proposal.body
        if (
            cp.proposal.proposal_type == ProposalType.app_data_update
            and b.component_id == CID.participant_list
            and b.update is not None
        ):
            try:
                upd = W.ParticipantListUpdate.decode(b.update)
            except DecodeError:
                continue
            out.update(listed[i] for i in upd.removed_indices if i < len(listed))
    return out
