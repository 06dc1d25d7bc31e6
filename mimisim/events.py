"""Typed trace events: one frozen record class per kind of the trace vocabulary.

The core (client, hub, provider) and the simulator emit these objects; the
:class:`mimisim.sim.trace.Trace` records them. Each class carries

- its ``kind`` (a class attribute, the dotted name in ``KINDS`` of
  :mod:`mimisim.sim.trace`),
- the common fields every row has (``room, epoch, msg_id, peer, status,
  req_id, size``; the recording host adds ``t_ms``, ``seq`` and ``node``),
- typed fields of its own, which become typed, nullable columns of the trace
  (``None`` is a real null, never ``-1`` or ``''``),
- and :attr:`~TraceEvent.detail`, the human-readable rendering of the row.
  It is written exactly as the emitters wrote it before the events were
  typed, so the ``detail`` column reads as it did; analysis code reads the
  typed columns and never parses it.

A field declared with :func:`_col` is a column; one declared with
:func:`_text` is free text that only goes into ``detail`` (an exception's
message, an explanation). A column name means the same thing, with the same
type, in every kind that has it (``added`` is a number of members added
wherever it appears); :func:`columns` checks that.

This module is a leaf: it imports nothing from mimisim, so every layer (the
sans-IO core included) may build events from it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar, NamedTuple, TypeVar

__all__ = [
    "MEASURED_COLUMNS",
    "REGISTRY",
    "Column",
    "RoleChange",
    "TraceEvent",
    "class_columns",
    "columns",
    "event_class",
    "typed_values",
]

#: Column types, by name; :mod:`mimisim.sim.trace` maps them to Arrow types.
TYPES = ("string", "int64", "float64", "bool", "list<string>", "list<role_change>")


class Column(NamedTuple):
    """One typed column: its name, Arrow type name (see :data:`TYPES`), unit
    (``""`` when dimensionless or text), and what it holds."""

    name: str
    type: str
    unit: str
    description: str


class RoleChange(NamedTuple):
    """One participant-list change a commit made: ``user`` moved from role
    ``old`` to role ``new`` (0: not a participant)."""

    user: str
    old: int
    new: int


def _col(description: str, type_: str, unit: str = "") -> Any:
    """A typed column field, ``None`` (null) unless the emitter sets it."""
    if type_ not in TYPES:
        raise ValueError(f"unknown column type {type_!r}")
    return field(default=None, metadata={"column": Column("", type_, unit, description)})


def _text(description: str) -> Any:
    """Free text that goes into ``detail`` only (not a column)."""
    return field(default="", metadata={"text": description})


@dataclass(frozen=True, slots=True, kw_only=True)
class TraceEvent:
    """The common fields of every trace row (besides ``t_ms, seq, node``,
    which the recording host supplies). Subclasses set ``kind``."""

    kind: ClassVar[str] = ""
    #: The typed column fields of the class, in declaration order (set by :func:`_register`).
    typed: ClassVar[tuple[str, ...]] = ()

    room: str = ""
    epoch: int | None = None
    msg_id: str = ""
    peer: str = ""
    status: str = ""
    req_id: int | None = None
    size: int | None = None

    @property
    def detail(self) -> str:
        """The human-readable rendering of this event (the ``detail`` column)."""
        return ""


REGISTRY: dict[str, type[TraceEvent]] = {}


_T = TypeVar("_T", bound=type[TraceEvent])


def _register(cls: _T) -> _T:
    if not cls.kind:
        raise TypeError(f"{cls.__name__} has no kind")
    if cls.kind in REGISTRY:
        raise TypeError(f"two classes for {cls.kind}: {REGISTRY[cls.kind].__name__}, {cls.__name__}")
    cls.typed = tuple(f.name for f in dataclasses.fields(cls) if "column" in f.metadata)
    REGISTRY[cls.kind] = cls
    return cls


def _event(kind: str) -> Callable[[_T], _T]:
    """Class decorator (over ``@dataclass(frozen=True, slots=True, kw_only=True)``):
    the class records ``kind`` and is registered for it."""

    def wrap(cls: _T) -> _T:
        cls.kind = kind
        return _register(cls)

    return wrap


def _endpoint(method: str | None, path: str | None) -> str:
    """``METHOD /path`` as an HTTP event's detail begins."""
    return f"{method} {path}"


# Field declarations shared by several kinds (one meaning per column name).
def _method() -> Any:
    return _col("HTTP method of the request (POST, GET)", "string")


def _path() -> Any:
    return _col("the request's endpoint path as the draft writes it (/notify/a.example/r/club)", "string")


#: Columns whose values are MEASURED on the machine that ran the simulation
#: (process CPU time), not simulated: they are null unless the scenario sets
#: ``outputs.cpu_time``, and they are the only columns two runs of the same
#: scenario and seed may differ in. Comparisons of traces for determinism
#: drop them (docs/studies.md, "MLS costs").
MEASURED_COLUMNS: tuple[str, ...] = ("cpu_ms",)


def _cpu_ms() -> Any:
    return _col(
        "MEASURED, not simulated: process CPU time (time.process_time) of the core call that produced this event "
        "(client: the step that built the commit or processed the epoch, null when one step did both; hub: the "
        "/update request that was accepted); null unless outputs.cpu_time; not deterministic (MEASURED_COLUMNS)",
        "float64", "ms")


def _attempt() -> Any:
    return _col("which attempt this is (1 for the first)", "int64")


def _http_status() -> Any:
    return _col("numeric HTTP status of the response", "int64")


def _fault_id() -> Any:
    return _col("the fault plan's id of the fault (F0, F1, ...); null when no planned fault caused it", "string")


def _fault_kind() -> Any:
    return _col("the planned fault's kind: crash | restart | failover | partition | degrade | offline", "string")


def _operation() -> Any:
    return _col("the client operation (create_room, add_user, remove_user, update, join, leave, send, ...)",
                "string")


def _content_id() -> Any:
    return _col("MIMI message id of the content (draft-ietf-mimi-content s.3.3: a hash of the sender URI, room "
                "URI, content and salt), first 8 bytes in hex: the same across resubmissions of one message",
                "string")


def _added() -> Any:
    return _col("members (clients) the commit adds", "int64", "clients")


def _removed() -> Any:
    return _col("members (clients) the commit removes", "int64", "clients")


def _tree_fp() -> Any:
    return _col("first 8 hex digits of the ratchet tree hash after the commit", "string")


def _plist_fp() -> Any:
    return _col("first 8 hex digits of SHA-256 over the participant list (user:role lines, sorted)", "string")


def _role() -> Any:
    return _col("the acting user's role index in the participant list (committer or sender)", "int64")


def _sender() -> Any:
    return _col("user URI of the application message's sender", "string")


def _committer() -> Any:
    return _col("client URI of the committer (a client view: 'a new member' or 'leaf N' when unnamed)",
                "string")


def _proposals() -> Any:
    return _col("number of proposals sent", "int64", "proposals")


def _reason() -> Any:
    return _col("why, as a code: for net.drop loss, queue, partition, offline or crashed; for provider.reject "
                "impersonation, malformed, not_hub or foreign_user", "string")


def _external() -> Any:
    return _col("an external commit (a joiner's, or a resync); a client records no sizes for one", "bool")


def _target_user() -> Any:
    return _col("the user an action adds or removes (the hub's remove proposals, the workload's add/remove)",
                "string")


def _text_field() -> Any:
    return _text("free text (an explanation or an error message)")


# ====================================================================== network


@dataclass(frozen=True, slots=True, kw_only=True)
class _NetEvent(TraceEvent):
    """What a link carries: an HTTP request or response between providers
    (``method``, ``path``, ``response``), or an item on a client's connection
    to its provider (``stream_item``)."""

    method: str | None = _method()
    path: str | None = _path()
    response: bool | None = _col("the message is an HTTP response (false: a request)", "bool")
    stream_item: str | None = _col(
        "on a client-provider connection: the client's request type (update, submit_message, ...; "
        "'(adversary)' appended for an adversary's), or reply or deliver from the provider", "string")

    @property
    def detail(self) -> str:
        if self.stream_item is not None:
            return self.stream_item
        if self.response:
            return "response"
        return _endpoint(self.method, self.path)


@_event("net.send")
@dataclass(frozen=True, slots=True, kw_only=True)
class NetSend(_NetEvent):
    @property
    def detail(self) -> str:
        if self.stream_item is not None:
            return self.stream_item
        if self.response:
            return "response to " + _endpoint(self.method, self.path)
        return _endpoint(self.method, self.path)


@_event("net.deliver")
@dataclass(frozen=True, slots=True, kw_only=True)
class NetDeliver(_NetEvent):
    pass


@_event("net.duplicate")
@dataclass(frozen=True, slots=True, kw_only=True)
class NetDuplicate(_NetEvent):
    pass


@_event("net.drop")
@dataclass(frozen=True, slots=True, kw_only=True)
class NetDrop(_NetEvent):
    reason: str | None = _reason()
    retransmission: bool | None = _col("the lost copy was a retransmission on a client connection", "bool")

    @property
    def detail(self) -> str:
        return f"{self.reason} (retransmission)" if self.retransmission else str(self.reason)


# ====================================================================== HTTP


@dataclass(frozen=True, slots=True, kw_only=True)
class _HttpEvent(TraceEvent):
    method: str | None = _method()
    path: str | None = _path()
    attempt: int | None = _attempt()

    @property
    def detail(self) -> str:
        return _endpoint(self.method, self.path)


@_event("http.request")
@dataclass(frozen=True, slots=True, kw_only=True)
class HttpRequest(_HttpEvent):
    pass


@_event("http.retry")
@dataclass(frozen=True, slots=True, kw_only=True)
class HttpRetry(_HttpEvent):
    @property
    def detail(self) -> str:
        return f"{_endpoint(self.method, self.path)} attempt {self.attempt}"


@_event("http.response")
@dataclass(frozen=True, slots=True, kw_only=True)
class HttpResponse(_HttpEvent):
    http_status: int | None = _http_status()
    response_code: str | None = _col("the protocol response code's name in the body, when it has one", "string")


@_event("http.timeout")
@dataclass(frozen=True, slots=True, kw_only=True)
class HttpTimeout(_HttpEvent):
    pass


@_event("http.giveup")
@dataclass(frozen=True, slots=True, kw_only=True)
class HttpGiveup(_HttpEvent):
    @property
    def detail(self) -> str:
        return f"{_endpoint(self.method, self.path)} after {self.attempt} attempts"


# ====================================================================== hub


@_event("hub.accept")
@dataclass(frozen=True, slots=True, kw_only=True)
class HubAccept(TraceEvent):
    """``message`` says what was accepted; the other columns are set for the
    message types they describe."""

    message: str | None = _col(
        "what the hub accepted: commit | proposal | hub_remove (the hub's own remove proposals) | "
        "application | group_info | abuse_report", "string")
    duplicate: bool | None = _col("a retry of a request already accepted (same answer, no second fanout)", "bool")
    proposal_types: tuple[str, ...] | None = _col("the proposal types accepted (proposals)", "list<string>")
    committer: str | None = _committer()
    epoch_from: int | None = _col("the epoch the commit leaves", "int64", "epoch")
    epoch_to: int | None = _col("the epoch the commit creates", "int64", "epoch")
    added: int | None = _added()
    removed: int | None = _removed()
    external: bool | None = _external()
    tree_fp: str | None = _tree_fp()
    plist_fp: str | None = _plist_fp()
    role: int | None = _role()
    role_changes: tuple[RoleChange, ...] | None = _col(
        "participant-list changes the commit makes: (user, old role, new role), 0 = not listed",
        "list<role_change>")
    sender: str | None = _sender()
    franked: bool | None = _col("the hub franked the application message", "bool")
    target_user: str | None = _target_user()
    proposals: int | None = _proposals()
    requester: str | None = _col("the client that asked for the GroupInfo (group_info)", "string")
    grant_role: int | None = _col("role granted to a joiner by external commit (group_info)", "int64")
    abuser: str | None = _col("the alleged abuser's user URI (abuse_report)", "string")
    reported_messages: int | None = _col("franked messages in the abuse report", "int64", "messages")
    cpu_ms: float | None = _cpu_ms()

    @property
    def detail(self) -> str:
        m = self.message
        if m == "commit":
            if self.duplicate:
                return "commit (duplicate)"
            changes = ",".join(f"{c.user}:{c.old}>{c.new}" for c in self.role_changes or ())
            return (f"commit by {self.committer} epoch {self.epoch_from}->{self.epoch_to}"
                    f" +{self.added} -{self.removed}" + (" external" if self.external else "")
                    + f" tree={self.tree_fp} plist={self.plist_fp} role={self.role}"
                    + (f" changes={changes}" if changes else ""))
        if m == "proposal":
            if self.duplicate:
                return "proposals (duplicate)"
            return f"proposals [{','.join(self.proposal_types or ())}]"
        if m == "hub_remove":
            return f"hub removes {self.target_user}: {self.proposals} proposal(s)"
        if m == "application":
            if self.duplicate:
                return "application (duplicate)"
            return "application" + (" franked" if self.franked else "") + f" sender={self.sender} role={self.role}"
        if m == "group_info":
            return f"groupInfo for {self.requester}" + (
                f" (join as role {self.grant_role})" if self.grant_role is not None else "")
        if m == "abuse_report":
            return f"abuse report on {self.abuser} ({self.reported_messages} message(s))"
        return str(m)


@_event("hub.reject")
@dataclass(frozen=True, slots=True, kw_only=True)
class HubReject(TraceEvent):
    refused: str | None = _col("what was refused: the endpoint (POST /update, ...) or 'hub removal'", "string")
    reason: str = _text("why, as the hub explains it")

    @property
    def detail(self) -> str:
        d = f"{self.refused}: {self.reason}" if self.reason else str(self.refused)
        return d[:300]


@_event("hub.fanout")
@dataclass(frozen=True, slots=True, kw_only=True)
class HubFanout(TraceEvent):
    method: str | None = _method()
    path: str | None = _path()

    @property
    def detail(self) -> str:
        return _endpoint(self.method, self.path)


@_event("hub.lost")
@dataclass(frozen=True, slots=True, kw_only=True)
class HubLost(TraceEvent):
    accepted_ms: float | None = _col("when the lost input had been accepted", "float64", "ms")

    @property
    def detail(self) -> str:
        return f"accepted at {self.accepted_ms:.1f} ms, not replicated by the failover"


# ====================================================================== follower


@dataclass(frozen=True, slots=True, kw_only=True)
class _NotifyEvent(TraceEvent):
    method: str | None = _method()
    path: str | None = _path()
    txn_id: str | None = _col("the hub's logical notify id (same on every retry); null when none was sent",
                              "string")
    window_entries: int | None = _col("entries in the follower's dedup window after this request", "int64",
                                      "entries")
    window_bytes: int | None = _col("memory the dedup window holds after this request", "int64", "bytes")

    @property
    def detail(self) -> str:
        return (f"{_endpoint(self.method, self.path)} txn={self.txn_id or '-'} window={self.window_entries} "
                f"entries {self.window_bytes} B")


@_event("notify.accept")
@dataclass(frozen=True, slots=True, kw_only=True)
class NotifyAccept(_NotifyEvent):
    pass


@_event("notify.dedup")
@dataclass(frozen=True, slots=True, kw_only=True)
class NotifyDedup(_NotifyEvent):
    pass


# ====================================================================== providers


@_event("provider.reject")
@dataclass(frozen=True, slots=True, kw_only=True)
class ProviderReject(TraceEvent):
    method: str | None = _method()
    path: str | None = _path()
    reason: str | None = _reason()
    note: str = _text("the impersonated domain, the decode error, or the foreign user")

    @property
    def detail(self) -> str:
        ep = _endpoint(self.method, self.path)
        r = self.reason
        if r == "impersonation":
            return f"{ep} impersonation of {self.note}"
        if r == "malformed":
            return f"{ep}: {self.note}"
        if r == "not_hub":
            return f"{ep} from non-hub"
        if r == "foreign_user":
            return f"{ep} for another provider's user {self.note}"
        return f"{ep} {r}"


@_event("provider.stale_response")
@dataclass(frozen=True, slots=True, kw_only=True)
class ProviderStaleResponse(TraceEvent):
    token: int | None = _col("the host's token of the request the response answers", "int64")

    @property
    def detail(self) -> str:
        return f"token {self.token}"


@_event("provider.directory")
@dataclass(frozen=True, slots=True, kw_only=True)
class ProviderDirectory(TraceEvent):
    """A peer's directory answered ([P6] s.5.1, ``protocol.directory_discovery``):
    ``status`` cached | failed; the requests held for it are released either way."""

    directory_error: str | None = _col("why a peer's directory was not cached (provider.directory failed)",
                                       "string")
    held: int | None = _col("requests that waited for the directory and are now sent", "int64", "requests")

    @property
    def detail(self) -> str:
        return f"{self.status} ({self.held} held)" + (f": {self.directory_error}" if self.directory_error else "")


# ====================================================================== clients


@_event("client.send")
@dataclass(frozen=True, slots=True, kw_only=True)
class ClientSend(TraceEvent):
    request: str | None = _col("the client-to-provider request type (update, submit_message, ...)", "string")

    @property
    def detail(self) -> str:
        return str(self.request)


@_event("client.submit")
@dataclass(frozen=True, slots=True, kw_only=True)
class ClientSubmit(TraceEvent):
    attempt: int | None = _attempt()
    content_bytes: int | None = _col("size of the encoded MIMI content (before encryption)", "int64", "bytes")
    content_id: str | None = _content_id()

    @property
    def detail(self) -> str:
        return f"attempt {self.attempt}, {self.content_bytes} bytes"


@_event("client.deliver")
@dataclass(frozen=True, slots=True, kw_only=True)
class ClientDeliver(TraceEvent):
    sender: str | None = _sender()
    frank: str | None = _col("result of the receiver's franking check: ok | absent | ...", "string")
    content_id: str | None = _content_id()

    @property
    def detail(self) -> str:
        return f"from {self.sender}"


@_event("client.commit")
@dataclass(frozen=True, slots=True, kw_only=True)
class ClientCommit(TraceEvent):
    operation: str | None = _operation()
    attempt: int | None = _attempt()
    external: bool | None = _external()
    added: int | None = _added()
    removed: int | None = _removed()
    commit_bytes: int | None = _col("the encoded commit MLSMessage", "int64", "bytes")
    welcome_bytes: int | None = _col("the encoded Welcome; null when the commit adds nobody", "int64", "bytes")
    groupinfo_bytes: int | None = _col("the full GroupInfo of the new epoch", "int64", "bytes")
    partial_groupinfo_bytes: int | None = _col("the partial GroupInfo the request carries", "int64", "bytes")
    bundle_bytes: int | None = _col("the whole /update request body", "int64", "bytes")
    left_out: tuple[str, ...] | None = _col(
        "pending proposals the commit left out as invalid for the group (RFC 9420 s.12.2): why, one per proposal",
        "list<string>")
    cpu_ms: float | None = _cpu_ms()

    @property
    def detail(self) -> str:
        if self.external:
            return f"{self.operation} attempt {self.attempt}: external commit"
        return (f"{self.operation} attempt {self.attempt}: +{self.added} -{self.removed}"
                f" sizes: commit={self.commit_bytes} welcome={self.welcome_bytes or 0}"
                f" groupinfo={self.groupinfo_bytes} partial_groupinfo={self.partial_groupinfo_bytes}"
                f" bundle={self.bundle_bytes}"
                + (f" left_out={len(self.left_out)}" if self.left_out else ""))


@_event("client.epoch")
@dataclass(frozen=True, slots=True, kw_only=True)
class ClientEpoch(TraceEvent):
    via: str | None = _col(
        "how the client reached the epoch: created | welcome | external_commit | own_commit | own_echo | "
        "commit | fork (back to a kept epoch onto the hub's commit) | removed", "string")
    operation: str | None = _operation()
    committer: str | None = _committer()
    tree_fp: str | None = _tree_fp()
    plist_fp: str | None = _plist_fp()
    auth_fp: str | None = _col("first 8 hex digits of the member's epoch authenticator", "string")
    cpu_ms: float | None = _cpu_ms()

    @property
    def detail(self) -> str:
        v = self.via
        if v == "removed":
            return "removed from the group"
        head = {
            "created": "created the room",
            "welcome": "joined from a Welcome",
            "external_commit": "joined by external commit",
            "own_commit": f"own commit ({self.operation})",
            "own_echo": "own commit (echo)",
            "commit": f"commit by {self.committer}",
            "fork": f"hub's commit by {self.committer}, after going back one epoch",
        }.get(str(v), str(v))
        tag = f"tree={self.tree_fp} plist={self.plist_fp}"
        if self.auth_fp is not None:
            tag += f" auth={self.auth_fp}"
        return f"{head} {tag}"


@_event("client.retry")
@dataclass(frozen=True, slots=True, kw_only=True)
class ClientRetry(TraceEvent):
    operation: str | None = _operation()
    attempt: int | None = _attempt()
    max_attempts: int | None = _col("the retry policy's attempt limit (null: none, a leave the room refused for moving on)", "int64")
    wait_epoch: int | None = _col("the epoch the retry waits for, if any", "int64", "epoch")
    wait_proposals: int | None = _col("proposals the retry waits for, if any", "int64", "proposals")
    delay_ms: int | None = _col("backoff before the retry, if any", "int64", "ms")
    retry_after_ms: int | None = _col("the Retry-After of a rate-limited refusal (the delay is at least this)",
                                      "int64", "ms")

    @property
    def detail(self) -> str:
        limit = f"/{self.max_attempts}" if self.max_attempts is not None else " (a leave: no limit while the hub answers)"
        d = f"{self.operation} attempt {self.attempt}{limit}"
        waits = []
        if self.wait_epoch is not None:
            waits.append(f"epoch {self.wait_epoch}")
        if self.wait_proposals:
            waits.append(f"{self.wait_proposals} proposal(s)")
        if self.delay_ms:
            waits.append(f"{self.delay_ms} ms")
        if waits:
            d += " after " + ", ".join(waits)
        return d


@dataclass(frozen=True, slots=True, kw_only=True)
class _TextEvent(TraceEvent):
    text: str = _text_field()

    @property
    def detail(self) -> str:
        return self.text


@_event("client.drop")
@dataclass(frozen=True, slots=True, kw_only=True)
class ClientDrop(_TextEvent):
    """``status`` says why (duplicate, stale, notMember, ...); ``text`` explains."""


@_event("client.gap")
@dataclass(frozen=True, slots=True, kw_only=True)
class ClientGap(_TextEvent):
    """``status``: empty (buffered ahead of a gap), resync, waitProposals, stuck; restore,
    restored, restoreRefused (a commit given back to a hub that lost it); fork (the hub
    committed another commit for an epoch the client had left: it goes back to that epoch)."""


@_event("client.join")
@dataclass(frozen=True, slots=True, kw_only=True)
class ClientJoin(_TextEvent):
    pass


@_event("client.leave")
@dataclass(frozen=True, slots=True, kw_only=True)
class ClientLeave(_TextEvent):
    pass


@_event("client.error")
@dataclass(frozen=True, slots=True, kw_only=True)
class ClientError(_TextEvent):
    pass


@_event("client.consent")
@dataclass(frozen=True, slots=True, kw_only=True)
class ClientConsent(TraceEvent):
    """A user's consent step ([P] Convey explicit consent), by one of its
    clients: ``operation`` ``request`` (the requester asks ``target_user``;
    ``status`` is the key-material code that made it ask) or ``grant`` /
    ``revoke`` (the target answers; ``peer`` is the requester). ``room``:
    the room the consent is for."""

    operation: str | None = _operation()
    target_user: str | None = _target_user()

    @property
    def detail(self) -> str:
        if self.operation == "request":
            return f"request consent of {self.target_user}"
        return f"{self.operation} {self.peer}"


def _op_id() -> Any:
    return _col("the client's number for one of its user's operations (per client, from 1)", "int64")


@_event("client.op")
@dataclass(frozen=True, slots=True, kw_only=True)
class ClientOpStart(TraceEvent):
    """A user's operation begins (the API call): ``op_id`` names it until its
    ``client.done``; ``peer`` is the user it adds or removes, if any."""

    operation: str | None = _operation()
    op_id: int | None = _op_id()

    @property
    def detail(self) -> str:
        return f"{self.operation} #{self.op_id}" + (f" {self.peer}" if self.peer else "")


@_event("client.done")
@dataclass(frozen=True, slots=True, kw_only=True)
class ClientOpEnd(TraceEvent):
    """A user's operation ended: ``status`` ``done`` (the hub accepted what it
    sent, or nothing was left to do) or ``failed`` (``failure``: the status
    of its ``client.fail``, the refusal or error that ended it)."""

    operation: str | None = _operation()
    op_id: int | None = _op_id()
    failure: str | None = _col("why a failed operation failed (the status of its client.fail)", "string")

    @property
    def detail(self) -> str:
        return f"{self.operation} #{self.op_id} {self.status}" + (f" ({self.failure})" if self.failure else "")


@_event("client.fail")
@dataclass(frozen=True, slots=True, kw_only=True)
class ClientFail(TraceEvent):
    operation: str | None = _operation()
    reason: str = _text("why the operation was given up")

    @property
    def detail(self) -> str:
        return f"{self.operation}: {self.reason}"[:300]


@_event("client.propose")
@dataclass(frozen=True, slots=True, kw_only=True)
class ClientPropose(TraceEvent):
    operation: str | None = _operation()
    proposals: int | None = _proposals()

    @property
    def detail(self) -> str:
        return f"{self.operation}: {self.proposals} proposal(s)"


# ====================================================================== faults


@dataclass(frozen=True, slots=True, kw_only=True)
class _FaultEvent(TraceEvent):
    """A fault's event; ``text`` is the fault's description (``F1 crash a.example
    (durable)``) or what else caused it (``failover (sync standby)``)."""

    fault_id: str | None = _fault_id()
    fault_kind: str | None = _fault_kind()
    text: str = _text_field()

    @property
    def detail(self) -> str:
        return self.text


@_event("fault.crash")
@dataclass(frozen=True, slots=True, kw_only=True)
class FaultCrash(_FaultEvent):
    """``status``: durable | volatile (what survives)."""


@_event("fault.restart")
@dataclass(frozen=True, slots=True, kw_only=True)
class FaultRestart(_FaultEvent):
    notify_to_resend: int | None = _col("outbox /notify requests the restarted node sends again", "int64",
                                        "requests")


@_event("fault.failover")
@dataclass(frozen=True, slots=True, kw_only=True)
class FaultFailover(_FaultEvent):
    replayed_inputs: int | None = _col("inputs the lagging standby replayed", "int64", "inputs")
    lost_inputs: int | None = _col("inputs the lagging standby never received", "int64", "inputs")

    @property
    def detail(self) -> str:
        if self.replayed_inputs is not None:
            return f"standby replayed {self.replayed_inputs} inputs, {self.lost_inputs} lost"
        return self.text


@_event("fault.partition")
@dataclass(frozen=True, slots=True, kw_only=True)
class FaultPartition(_FaultEvent):
    pass


@_event("fault.degrade")
@dataclass(frozen=True, slots=True, kw_only=True)
class FaultDegrade(_FaultEvent):
    pass


@_event("fault.offline")
@dataclass(frozen=True, slots=True, kw_only=True)
class FaultOffline(_FaultEvent):
    pass


@_event("fault.effect")
@dataclass(frozen=True, slots=True, kw_only=True)
class FaultEffect(_FaultEvent):
    affected: int | None = _col("messages the fault hit (drops it caused, or sends over degraded links)", "int64",
                                "messages")

    @property
    def detail(self) -> str:
        return f"{self.fault_id} {self.fault_kind}: {self.text}"


# ====================================================================== adversaries


@dataclass(frozen=True, slots=True, kw_only=True)
class _AdversaryEvent(TraceEvent):
    attack: str | None = _col("the attack's name", "string")
    http_status: int | None = _http_status()
    text: str = _text_field()

    @property
    def detail(self) -> str:
        if self.http_status is not None:
            return f"{self.attack}: HTTP {self.http_status}"
        return f"{self.attack}: {self.text}" if self.text else str(self.attack)


@_event("adversary.attempt")
@dataclass(frozen=True, slots=True, kw_only=True)
class AdversaryAttempt(_AdversaryEvent):
    """``status`` names the attack too (the row's short form); ``text`` describes the attempt."""

    @property
    def detail(self) -> str:
        return f"{self.attack}: {self.text}"


@_event("adversary.rejected")
@dataclass(frozen=True, slots=True, kw_only=True)
class AdversaryRejected(_AdversaryEvent):
    pass


@_event("adversary.accepted")
@dataclass(frozen=True, slots=True, kw_only=True)
class AdversaryAccepted(_AdversaryEvent):
    pass


@_event("adversary.unanswered")
@dataclass(frozen=True, slots=True, kw_only=True)
class AdversaryUnanswered(_AdversaryEvent):
    pass


# ====================================================================== run


@_event("run.start")
@dataclass(frozen=True, slots=True, kw_only=True)
class RunStart(TraceEvent):
    scenario: str | None = _col("the scenario's name", "string")
    seed: int | None = _col("the run's seed", "int64")

    @property
    def detail(self) -> str:
        return f"scenario {self.scenario} seed {self.seed}"


@_event("run.end")
@dataclass(frozen=True, slots=True, kw_only=True)
class RunEnd(TraceEvent):
    events: int | None = _col("events recorded before this one", "int64", "events")

    @property
    def detail(self) -> str:
        return f"{self.events} events"


@_event("workload.action")
@dataclass(frozen=True, slots=True, kw_only=True)
class WorkloadAction(TraceEvent):
    """``status``: empty, or ``skipped`` (``text`` says why)."""

    action: str | None = _col("what the workload asks: send, update, add_user, add_users (a bulk add), remove_user, leave, "
                              "new_device, "
                              "create_room, or a script step's action", "string")
    setup: bool | None = _col("part of the scenario's initial room setup", "bool")
    step: int | None = _col("index of the scenario's script step this action runs (null: not scripted)", "int64")
    target_user: str | None = _target_user()
    text: str = _text_field()

    @property
    def detail(self) -> str:
        d = str(self.action) + (" (setup)" if self.setup else "")
        if self.step is not None:
            d += f" script[{self.step}]"
        arg = self.target_user if self.target_user is not None else self.text
        return d + (f" {arg}" if arg else "")


# ====================================================================== ds profile


@_event("ds.request")
@dataclass(frozen=True, slots=True, kw_only=True)
class DSRequestServed(TraceEvent):
    """A DS answered a DSRequest (draft-robert-mimi-delivery-service): the hub
    for group operations, a client's own DS for its KeyPackages. ``status`` is
    the response type (``Ok``, ``WelcomeInfo``, ...) or the error code."""

    ds_request: str | None = _col("the DSRequest type (ds_commits, ds_send_message, ...)", "string")
    ds_response: str | None = _col("the DSResponse type (Ok, Error, WelcomeInfo, ExternalCommitInfo, KeyPackages)",
                                   "string")
    ds_error: str | None = _col("the DSError code of a refused request (null when not refused)", "string")
    sender_index: int | None = _col("the leaf index a ClientSignature names (null: anonymous)", "int64")
    from_ds: str | None = _col("the DS the request came from (the client's own DS, proxying it)", "string")
    duplicate: bool | None = _col("a retry of a request already accepted (same answer, no second fanout)", "bool")
    retained_bytes: int | None = _col("bytes of past group states the hub keeps for Welcome joiners after this "
                                      "request", "int64", "bytes")
    fanouts: int | None = _col("DSFanoutRequests the request caused (one per DS and message)", "int64",
                               "requests")

    @property
    def detail(self) -> str:
        d = f"{self.ds_request} -> {self.ds_error or self.ds_response}"
        if self.sender_index is not None:
            d += f" leaf {self.sender_index}"
        if self.duplicate:
            d += " (duplicate)"
        return d + f" via {self.from_ds}"


@_event("ds.fanout")
@dataclass(frozen=True, slots=True, kw_only=True)
class DSFanoutChecked(TraceEvent):
    """A guest DS checked a DSFanoutRequest (version, recipients, tokens):
    ``status`` ``Ok`` or the DSFanoutError code; ``peer`` the sending hub."""

    recipients: int | None = _col("recipient ids in the DSFanoutRequest", "int64", "clients")
    refused_recipients: int | None = _col("recipients a refused DSFanoutRequest named as offending", "int64",
                                          "clients")

    @property
    def detail(self) -> str:
        d = f"{self.recipients} recipient(s) from {self.peer}: {self.status}"
        return d + (f" ({self.refused_recipients} refused)" if self.refused_recipients else "")


# ====================================================================== lookups


def event_class(kind: str) -> type[TraceEvent]:
    """The class of ``kind``; ``KeyError`` for a kind outside the vocabulary."""
    return REGISTRY[kind]


def class_columns(cls: type[TraceEvent]) -> list[Column]:
    """The typed columns of one class, in declaration order."""
    out = []
    for f in dataclasses.fields(cls):
        c = f.metadata.get("column")
        if c is not None:
            out.append(c._replace(name=f.name))
    return out


def columns() -> list[Column]:
    """Every typed column of the trace, once, in the order of first
    appearance over the registry. Raises ``TypeError`` if one name has two
    types, units or descriptions (a column means one thing)."""
    seen: dict[str, Column] = {}
    for cls in REGISTRY.values():
        for c in class_columns(cls):
            old = seen.get(c.name)
            if old is None:
                seen[c.name] = c
            elif old != c:
                raise TypeError(f"column {c.name!r} is {old} in one kind and {c} in {cls.kind}")
    return list(seen.values())


def typed_values(ev: TraceEvent) -> dict[str, Any]:
    """The event's typed columns that are set (not None)."""
    return {n: v for n in ev.typed if (v := getattr(ev, n)) is not None}
