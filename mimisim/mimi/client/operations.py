"""Operations of a client and the per-room state they run against.

An operation (:class:`Op`) is one thing the user asked for in one room
(create it, add or remove a user, leave, send a message, join with a new
device, commit pending proposals, an Update commit). It moves through the
stages of :class:`Stage`; every move goes through :func:`advance`, which
looks the move up in :data:`TRANSITIONS` (a table in the style of h11: a
dict of ``(stage, event) -> next stage``). A move the table does not list is
a bug in the client, raised as :class:`OperationStateError` and never
turned into a trace row.

The stages::

    NEW --FETCH--> FETCHING --FETCHED--> NEW          (add_user(s): KeyPackages claimed)
    NEW --SUBMIT--> SUBMITTED                         (the request is in flight)
    FETCHING --SUBMIT--> SUBMITTED                    (join: GroupInfo in hand, external commit sent)
    NEW | FETCHING | SUBMITTED --WAIT--> WAITING      (refused, or needs a later epoch)
    WAITING --RESUME--> NEW                           (what it waited for came; rebuild)
    NEW | SUBMITTED | WAITING --FINISH--> DONE
    NEW | FETCHING | SUBMITTED | WAITING --FAIL--> FAILED
"""

from __future__ import annotations

import enum
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from mimisim.mimi import wire as W
from mimisim.mls.group import Group, StagedCommit
from mimisim.mls.structs import KeyPackage


class OpKind(enum.StrEnum):
    """What an operation does (the values are the API's names, which the
    trace's ``detail`` shows)."""

    CREATE = "create_room"
    ADD = "add_user"
    ADD_MANY = "add_users"
    REMOVE = "remove_user"
    LEAVE = "leave"
    SEND = "send_message"
    JOIN = "join"
    COMMIT_PENDING = "commit_pending"
    UPDATE = "update"


class Stage(enum.StrEnum):
    """Where an operation stands."""

    NEW = "new"  # to be built from the current state
    FETCHING = "fetching"  # a lookup (KeyPackages, GroupInfo) is in flight
    SUBMITTED = "submitted"  # its commit, proposals or message is in flight
    WAITING = "waiting"  # for an epoch, proposals or a backoff timer
    DONE = "done"
    FAILED = "failed"


class OpEvent(enum.Enum):
    """What happens to an operation (the inputs of :data:`TRANSITIONS`)."""

    FETCH = "fetch"  # a lookup request was sent
    FETCHED = "fetched"  # the lookup answered: build the real request next
    SUBMIT = "submit"  # the operation's own request was sent
    WAIT = "wait"  # refused, or it needs a later epoch: wait, then rebuild
    RESUME = "resume"  # what it waited for came
    FINISH = "finish"  # nothing (more) to do
    FAIL = "fail"


_N, _F, _S, _W, _D, _X = Stage.NEW, Stage.FETCHING, Stage.SUBMITTED, Stage.WAITING, Stage.DONE, Stage.FAILED

#: Every allowed move of an operation: ``(stage, event) -> next stage``.
TRANSITIONS: dict[tuple[Stage, OpEvent], Stage] = {
    (_N, OpEvent.FETCH): _F,
    (_N, OpEvent.SUBMIT): _S,
    (_N, OpEvent.WAIT): _W,
    (_N, OpEvent.FINISH): _D,
    (_N, OpEvent.FAIL): _X,
    (_F, OpEvent.FETCHED): _N,
    (_F, OpEvent.SUBMIT): _S,
    (_F, OpEvent.WAIT): _W,
    (_F, OpEvent.FAIL): _X,
    (_S, OpEvent.WAIT): _W,
    (_S, OpEvent.FINISH): _D,
    (_S, OpEvent.FAIL): _X,
    (_W, OpEvent.RESUME): _N,
    (_W, OpEvent.FINISH): _D,
    (_W, OpEvent.FAIL): _X,
}

#: Stages an operation never leaves.
TERMINAL = frozenset({Stage.DONE, Stage.FAILED})


class OperationStateError(RuntimeError):
    """A move :data:`TRANSITIONS` does not allow: a bug in the client, not
    something a peer can cause."""


@dataclass(eq=False)
class Op:
    """One queued operation of one room and where it stands."""

    id: int
    kind: OpKind
    room: str
    requested_ms: int
    target: str = ""
    text: str = ""
    role: int | str | None = None
    stage: Stage = Stage.NEW
    attempts: int = 0
    request_id: int = 0
    # add_user: the claimed KeyPackages (kept across retries: claiming again
    # would consume more of the target's key material).
    key_packages: list[KeyPackage] | None = None
    # add_users (bulk room setup): the users to add with their roles, the
    # KeyMaterial requests in flight (request id -> user) and the KeyPackages
    # claimed so far by user; ``key_packages`` is set once every request answered.
    targets: list[tuple[str, int | str | None]] = field(default_factory=list)
    fetches: dict[int, str] = field(default_factory=dict)
    fetched: dict[str, list[KeyPackage]] = field(default_factory=dict)
    # A user's operation (started by the API, with a ``client.op`` row): its
    # end is reported too (``client.done``). Internal ones (resyncs, commits
    # of pending proposals) are not.
    started: bool = False
    # Why it failed (the status of its client.fail), for its end row.
    failure: str = ""
    # Where the operation reports that it ended (the engine's list), if anywhere.
    ended: list[Op] | None = field(default=None, repr=False)
    # add_user under explicit consent: how often the target's provider has
    # answered noConsent (the first time, the client asks for consent).
    consent_polls: int = 0
    # A bulk add with KeyPackages given (ClientCore.add_with_key_packages): the users after ``target``, each with its KeyPackages.
    more_users: list[tuple[str, list[KeyPackage]]] = field(default_factory=list)
    # send_message: the encoded content (salt included), the same across retries.
    content: bytes = b""
    content_id: str = ""  # its MIMI message id (content.content_id), the same across retries
    # The last request body sent (commit, proposals or message) and whether
    # the next attempt sends it again unchanged (a transport failure: the hub
    # may have accepted it, and only the same bytes let it say so instead of
    # accepting a second copy; see OperationEngine.resend).
    body: bytes = b""
    resend: bool = False
    # The submitted commit (or first proposal / application message).
    msg_id: str = ""
    staged: StagedCommit | None = None
    proposal_refs: list[bytes] = field(default_factory=list)
    merged: bool = False
    # The epoch its last commit, proposals or message was built at: a hub
    # that answers with an older current epoch has lost state (it cannot be
    # behind an epoch it accepted a commit into), see OperationEngine.restore.
    sent_epoch: int = -1
    # Retry conditions.
    wait_epoch: int | None = None
    wait_refs: list[bytes] | None = None
    wait_from_epoch: int = -1
    backoff_timer: int | None = None
    # join: the HPKE key for the GroupInfo response and the would-be group;
    # resync: a join that replaces this client's own stale leaf (gap recovery).
    resync: bool = False
    #: a join by a client whose leaf may already be in the tree (a Welcome joiner
    #: that could not get its tree, ds profile): its external commit replaces it
    rejoin: bool = False
    hpke_priv: bytes = b""
    joiner: Group | None = None
    # create_room: the group being created.
    creating: Group | None = None
    create_body: bytes = b""

    @property
    def active(self) -> bool:
        """Neither done nor failed."""
        return self.stage not in TERMINAL

    def advance(self, event: OpEvent) -> None:
        """Move to the stage :data:`TRANSITIONS` gives for ``event``."""
        nxt = TRANSITIONS.get((self.stage, event))
        if nxt is None:
            raise OperationStateError(f"{self.kind} operation {self.id}: no move from {self.stage} on {event.value}")
        self.stage = nxt
        if nxt in TERMINAL and self.ended is not None:
            self.ended.append(self)


@dataclass(eq=False)
class Room:
    """A client's state for one room."""

    uri: str
    group: Group | None = None
    queue: deque[Op] = field(default_factory=deque)
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
    # The hub's acceptance time (FanoutMessage.timestamp) of the commit that
    # removed this client: application messages the hub accepted later are
    # not read, even of an epoch we still hold ([P6] s.5.3; possible with
    # protocol.app_epoch_window > 0).
    removed_ts: int | None = None
    joins: int = 0
    # Commits of the current epoch that reference proposals not yet received
    # (the hub's notifies can overtake each other): retried when proposals arrive.
    held: list[tuple[int, str, W.FanoutMessage]] = field(default_factory=list)
    # Gap detection: the epoch the client was stuck at when the gap timer was armed.
    gap_timer: int | None = None
    gap_epoch: int = -1
    # Lagging-failover recovery: the bodies of this client's commits in
    # flight (msg id -> (epoch from, UpdateRequest body)), and of those the
    # hub accepted (epoch from -> (msg id, body)), the last RESTORABLE of
    # them. A hub that lost an accepted commit (its standby lagged) learns it
    # back from them; see ``OperationEngine.restore``.
    commit_bodies: dict[str, tuple[int, bytes]] = field(default_factory=dict)
    restorable: dict[int, tuple[str, bytes]] = field(default_factory=dict)
    # The epoch of the last restore sent, and when (one in flight at a time).
    restoring: tuple[int, int] | None = None
    # A Welcome whose ratchet tree the hub keeps (RatchetTreeOption
    # ``distribution_service``): (FanoutMessage, msg id, HPKE private key of
    # the /groupInfo request in flight that fetches the tree).
    welcome_wait: tuple[W.FanoutMessage, str, bytes] | None = None
    # Application messages of the current epoch that did not decrypt, the
    # last MAX_UNREADABLE (epoch, msg id, message): after a fork onto the
    # hub's branch (Inbound.fork) they may be that branch's and are tried again.
    unreadable: list[tuple[int, str, W.FanoutMessage]] = field(default_factory=list)

    @property
    def member(self) -> bool:
        return self.group is not None and self.group.active and not self.removed


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

    def wait_ms(self, failures: int, uniform: Callable[[int, int], int]) -> int:
        """The wait before the rebuild after ``failures`` refusals;
        ``uniform(lo, hi)`` draws an integer in ``[lo, hi]``."""
        wait = self.backoff_ms * self.factor ** (failures - 1)
        if self.cap_ms is not None:
            wait = min(wait, self.cap_ms)
        w = int(wait)
        if self.jitter == "add":
            return w + uniform(0, self.jitter_ms)
        if self.jitter == "full":
            return uniform(0, w)
        if self.jitter == "equal":
            return w // 2 + uniform(0, w - w // 2)
        return w


PENDING_STRATEGIES = ("immediate_commit", "random_delay", "designated")

#: Ratchet-tree options ([RTO], draft-mahy-mls-ratchet-tree-options): a
#: Welcome's tree travels "inline" (RatchetTreeOption ``full``, uploaded by
#: the committer and fanned out by the hub) or stays at the "hub"
#: (``distribution_service``: the joiner fetches it with /groupInfo).
WELCOME_TREE_OPTIONS = ("inline", "hub")
#: How a commit carries its new epoch's GroupInfo: the draft's
#: PartialGroupInfo, a full GroupInfo without the tree, or a full GroupInfo
#: with the ratchet_tree extension (what deployments outside MIMI upload).
GROUP_INFO_OPTIONS = ("partial", "full", "full_with_tree")

#: How many of its own accepted commits a client keeps to give back to a
#: hub that lost them (a lagging failover loses a suffix of the hub's log).
RESTORABLE = 8

#: Deliveries a room may hold back (future epochs, or before the client has
#: the group). Beyond that they are dropped: a gap that never fills must not
#: grow memory without bound.
MAX_BUFFERED = 4096

#: Undecryptable application messages of the current epoch a room keeps in
#: case a fork onto the hub's branch makes them readable (``Room.unreadable``).
MAX_UNREADABLE = 16
