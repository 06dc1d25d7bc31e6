"""What goes in and out of a MIMI provider core, with no I/O.

A provider core is driven by three kinds of input and answers with an
:class:`Outcome`: the immediate answer (if any) plus a list of actions for
whoever hosts the core (the SimPy world, a test dispatcher, a real server):

* :class:`MimiRequest` from another provider, already authenticated by
  mutual TLS: the host passes the peer's domain separately, and the core
  refuses a request whose ``From`` names another provider (draft s.4.1,
  "Transport layer");
* the :class:`MimiResponse` to a request the core itself sent earlier,
  matched by the ``token`` the core put on that request;
* a :class:`ClientMessage` from one of its own clients (the provider-internal
  protocol, outside MIMI; see ``docs/provider-internal-protocol.md``).

The inputs are data too (:data:`CoreInput`: :class:`PeerRequest`,
:class:`PeerResponse`, :class:`FromClient`), so a host can log and replay
them. The output envelope :class:`Outcome` is frozen; the core builds it
with an :class:`OutcomeBuilder`.

Actions are :class:`SendRequest` (to another provider, with a token),
:class:`HttpReply` (a deferred answer to an inbound request),
:class:`ClientReply` (answer to a client's request) and :class:`Deliver`
(push something to a client). They are plain data, in the order the core
wants them to happen, so a host can log, delay, drop or duplicate them.
"""

from __future__ import annotations

import enum
import functools
from dataclasses import dataclass, field
from typing import Any

from mimisim.events import TraceEvent
from mimisim.mimi.ds.endpoints import DSEndpoint
from mimisim.mimi.endpoints import Endpoint

# ---------------------------------------------------------------- provider to provider


@dataclass(frozen=True)
class MimiRequest:
    """One HTTPS request between providers.

    ``from_domain`` is the ``From: mimi@<domain>`` header's domain, ``host``
    the ``Host`` header. ``target`` is the endpoint's path parameter (room id,
    target user, domain) as a string. ``body`` is the encoded request body.
    ``txn_id`` is an optional explicit transaction id (an HTTP header such as
    ``Idempotency-Key``) used by the ``transaction_id`` dedup strategy.
    """

    endpoint: Endpoint | DSEndpoint
    target: str
    from_domain: str
    host: str
    body: bytes
    txn_id: str = ""

    @functools.cached_property
    def detail(self) -> str:
        """``METHOD /path`` as the draft writes it, for traces. Never raises:
        a parameter that does not fit the endpoint (a URI where a domain
        belongs) is shown as given. Cached: an exchange writes it on every
        trace row, and quoting the path was ~14% of a transport-only run."""
        try:
            return f"{self.endpoint.method} {self.endpoint.path(self.target)}"
        except ValueError:
            return f"{self.endpoint.method} {self.endpoint.spec.prefix}{self.target!r}"


@dataclass(frozen=True)
class MimiResponse:
    """An HTTP status plus the encoded response body (empty for 201/4xx).

    ``code`` is the protocol response code's name when the body carries one
    (``wrongEpoch``), else the HTTP reason (``Created``, ``Bad Request``);
    the trace's ``status`` column shows it.
    """

    status: int
    body: bytes = b""
    code: str = ""
    retry_after_ms: int | None = None

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300


def reason_bytes(why: str) -> bytes:
    """An error body: ``why`` in UTF-8, at most 200 bytes. Never raises: a
    reason quoting bad input (a room id with a lone surrogate, which cannot
    be UTF-8) gets the offending code points as backslash escapes."""
    return why.encode("utf-8", "backslashreplace")[:200]


def bad_request(why: str) -> MimiResponse:
    return MimiResponse(400, reason_bytes(why), "Bad Request")


def forbidden(why: str) -> MimiResponse:
    return MimiResponse(403, reason_bytes(why), "Forbidden")


def not_found(why: str) -> MimiResponse:
    return MimiResponse(404, reason_bytes(why), "Not Found")


def created() -> MimiResponse:
    return MimiResponse(201, b"", "Created")


# ---------------------------------------------------------------- provider-internal protocol


class ClientOp(enum.Enum):
    """What a client asks of its own provider (outside MIMI)."""

    upload_key_packages = "upload_key_packages"  # body: list of KeyPackage bytes, last_resort flags
    create_room = "create_room"  # only at the hub: room id, GroupInfo (with tree), policy
    fetch_key_material = "fetch_key_material"  # body: KeyMaterialRequest bytes
    update = "update"  # body: UpdateRequest bytes (a commit or proposals)
    submit_message = "submit_message"  # body: SubmitMessageRequest bytes
    fetch_group_info = "fetch_group_info"  # body: GroupInfoRequest bytes
    report_abuse = "report_abuse"  # body: AbuseReport bytes
    request_consent = "request_consent"  # body: RequestConsentBody bytes
    update_consent = "update_consent"  # body: UpdateConsentBody bytes
    identifier_query = "identifier_query"  # body: IdentifierRequest bytes
    left_room = "left_room"  # the client is no longer in the room: stop delivering to it
    ds_request = "ds_request"  # ds profile: body a DSRequest for the DS named by ``target`` (C15)


@dataclass(frozen=True)
class ClientMessage:
    """A request from a client to its own provider.

    ``request_id`` is the client's correlation number; the provider's
    :class:`ClientReply` repeats it. ``room`` and ``target`` are the room URI
    or user URI the operation is about (empty when not applicable).
    """

    client: str
    op: ClientOp
    request_id: int
    body: bytes = b""
    room: str = ""
    target: str = ""
    extra: Any = None


class DeliveryKind(enum.Enum):
    fanout = "fanout"  # one FanoutMessage (commit, proposal, application, welcome)


@dataclass(frozen=True)
class Deliver:
    """Push one encoded FanoutMessage of ``room`` to a local client."""

    client: str
    room: str
    body: bytes
    msg_id: str = ""
    kind: DeliveryKind = DeliveryKind.fanout


@dataclass(frozen=True)
class ClientReply:
    """The provider's answer to a client's request."""

    client: str
    request_id: int
    status: int
    body: bytes = b""
    code: str = ""
    #: a refusal's Retry-After (429): the client waits at least this long
    retry_after_ms: int | None = None


@dataclass(frozen=True)
class SendRequest:
    """Send ``request`` to ``request.host``; feed the response back with ``token``.

    ``ordered_key`` groups requests that must be delivered in order (the
    hub's ``/notify`` stream of one room to one follower). Whether the host
    must retry the request until it succeeds is a property of the endpoint
    (:attr:`retry_until_done`, from the endpoint table), not of the request.
    """

    request: MimiRequest
    token: int
    ordered_key: str = ""
    msg_ids: tuple[str, ...] = ()
    #: the room the request is about when its path names something else (a ds
    #: fanout's path names the guest DS); empty: the path's target is the room
    room: str = ""

    @property
    def retry_until_done(self) -> bool:
        """The host retries this request until :meth:`done` (the hub's ``/notify``:
        until 201; see :attr:`~mimisim.mimi.endpoints.EndpointSpec.retried_until_success`)."""
        return self.request.endpoint.spec.retried_until_success

    def done(self, response: MimiResponse) -> bool:
        """Whether ``response`` completes this request (its endpoint's success status)."""
        return self.request.endpoint.completes(response.status)


@dataclass(frozen=True)
class HttpReply:
    """The deferred answer to an inbound request the core could not answer at
    once (it had to ask another provider first, e.g. a hub proxying
    ``/keyMaterial``). ``inbound`` is the token the host gave with the request."""

    inbound: int
    response: MimiResponse


Action = SendRequest | ClientReply | Deliver | HttpReply


@dataclass
class Event:
    """Something the core decided that a trace should record (``kind`` is a
    dotted name from the trace vocabulary, e.g. ``hub.accept``). The
    untyped form; typed events are the classes of :mod:`mimisim.events`."""

    kind: str
    room: str = ""
    epoch: int | None = None
    msg_id: str = ""
    status: str = ""
    detail: str = ""
    peer: str = ""


#: A trace event a core emits: typed (:mod:`mimisim.events`) or untyped.
AnyEvent = Event | TraceEvent


# ---------------------------------------------------------------- inputs


@dataclass(frozen=True)
class PeerRequest:
    """Input: an inbound request whose TLS peer is ``peer``; ``inbound`` is
    the host's token for a deferred answer (:class:`HttpReply`)."""

    request: MimiRequest
    peer: str
    now_ms: int
    inbound: int = 0


@dataclass(frozen=True)
class PeerResponse:
    """Input: the response to the request the core sent with ``token``."""

    token: int
    response: MimiResponse
    now_ms: int


@dataclass(frozen=True)
class FromClient:
    """Input: a request from one of the provider's own clients."""

    message: ClientMessage
    now_ms: int


#: Everything a provider core reacts to (:meth:`ProviderCore.handle`); a host
#: that replays a core (a lagging standby) logs these.
CoreInput = PeerRequest | PeerResponse | FromClient


# ---------------------------------------------------------------- output


@dataclass(frozen=True)
class Accepted:
    """One input the hub accepted (a commit, proposals, an application
    message, the hub's own proposals), by room, message id and epoch: what
    a standby that did not replicate the input has lost."""

    room: str
    msg_id: str
    epoch: int


@dataclass(frozen=True)
class CryptoOps:
    """Public-key operations a core call performed (signatures signed or
    verified, HPKE operations), for a host's processing-cost model."""

    signatures: int = 0
    hpke: int = 0


@dataclass(frozen=True)
class Outcome:
    """What one input produced, frozen: an immediate response for an HTTP
    request (None: answered later with an :class:`HttpReply`, or not an
    HTTP request), the actions to carry out in order, the trace events,
    the hub acceptances (``accepted``: replication reads these, not the
    trace) and the crypto operations the call cost.

    Build one with :class:`OutcomeBuilder` inside the core; a host gets
    tuples it cannot rewrite in place (to filter actions it builds its own
    sequence). Lists given to the constructor are frozen into tuples.
    """

    response: MimiResponse | None = None
    actions: tuple[Action, ...] = ()
    events: tuple[AnyEvent, ...] = ()
    accepted: tuple[Accepted, ...] = ()
    crypto: CryptoOps = CryptoOps()

    def __post_init__(self) -> None:
        for name in ("actions", "events", "accepted"):
            v = getattr(self, name)
            if not isinstance(v, tuple):
                object.__setattr__(self, name, tuple(v))


@dataclass
class OutcomeBuilder:
    """The mutable collector a core call appends to; :meth:`freeze` at its end."""

    response: MimiResponse | None = None
    actions: list[Action] = field(default_factory=list)
    events: list[AnyEvent] = field(default_factory=list)
    accepted: list[Accepted] = field(default_factory=list)

    @classmethod
    def of(cls, out: Outcome) -> OutcomeBuilder:
        """A builder holding a frozen outcome's contents (to add to them)."""
        return cls(out.response, list(out.actions), list(out.events), list(out.accepted))

    def extend(self, other: OutcomeBuilder | Outcome) -> None:
        """Append ``other``'s actions, events and acceptances (not its response)."""
        self.actions.extend(other.actions)
        self.events.extend(other.events)
        self.accepted.extend(other.accepted)

    def freeze(self, crypto: CryptoOps = CryptoOps()) -> Outcome:
        return Outcome(self.response, tuple(self.actions), tuple(self.events), tuple(self.accepted), crypto)
