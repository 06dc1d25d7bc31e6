"""A provider's consent store: who may fetch whose key material, for which rooms.

[P] "Consent" and "Convey explicit consent": a provider asks a user of
another provider for consent (``requestConsent`` with ``request`` or
``cancel``), and the target's provider answers, or volunteers, a ``grant``
or a ``revoke`` (``updateConsent``). Each carries a :class:`ConsentScope` --
requester, target, and optionally one room. The target's provider consults
its decisions when a ``/keyMaterial`` request arrives and answers
``noConsent`` or ``noConsentForThisRoom`` ([P] Fetch Key Material) when the
requester may not add the target.

One :class:`ConsentStore` per provider holds both sides: the requests it
received for its users (so they can decide) or sent for its users (so they
can be cancelled), and the grants and revokes its users made or that it
received for its users (so a client knows whom it may add).

A state machine with validate-then-commit: every operation checks
everything first and then changes the tables in one step, returning a
:class:`ConsentResult` (errors are values with the HTTP status the draft
names: 201, 404, or 4xx for a misaddressed body). Pure: no clock (``now_ms``
is an argument and only recorded), no randomness, no I/O. Deterministic:
tables are insertion-ordered dicts; listings are sorted.

Decisions, most specific first (see docs/mimi-choices.md):

1. a decision for exactly (requester, target, room) -- granted: ``success``;
   revoked: ``noConsentForThisRoom``;
2. the any-room decision for (requester, target) -- granted: ``success``;
   revoked: ``noConsent``;
3. the provider's implicit consent (same workgroup, contact list ...), if
   configured: ``success``;
4. a grant for another room: ``noConsentForThisRoom``; otherwise ``noConsent``.

``distinguish_rooms=False`` folds ``noConsentForThisRoom`` into ``noConsent``
([P]: "If the provider does not wish to make this distinction, it can return
noConsent instead").
"""

from __future__ import annotations

import enum
import hashlib
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass

from mimisim.codec import DecodeError
from mimisim.mimi.endpoints import Endpoint
from mimisim.mimi.identity import UriError, domain_of
from mimisim.mimi.transport import (
    MimiRequest,
    MimiResponse,
    Outcome,
    bad_request,
    created,
    forbidden,
    not_found,
    reason_bytes,
)
from mimisim.mimi.wire import (
    ConsentEntry,
    ConsentOperation,
    ConsentScope,
    IdentifierUri,
    KeyMaterialUserCode,
    RequestConsentBody,
    UpdateConsentBody,
)
from mimisim.mls.structs import AppDataDictionary, KeyPackage

Op = ConsentOperation
Code = KeyMaterialUserCode

#: Implicit consent hook: (requester, target, room or None) -> consent without an explicit grant?
ImplicitConsent = Callable[[str, str, "str | None"], bool]


class ConsentState(enum.Enum):
    granted = "granted"
    revoked = "revoked"


@dataclass(frozen=True)
class Decision:
    """A grant or revoke in force for one scope, with when it was recorded
    and (for a grant) the KeyPackages it carried, as encoded bytes."""

    state: ConsentState
    at_ms: int
    key_packages: tuple[bytes, ...] = ()


@dataclass(frozen=True)
class ConsentResult:
    """The outcome of one consent operation.

    ``status`` is the HTTP status the endpoint answers (201 Accepted,
    404 Not Found, 400/403 for a misaddressed body); ``changed`` whether the
    store changed; ``entry`` the body to send to the peer provider for a
    local operation (None otherwise, or when refused).
    """

    status: int
    changed: bool = False
    reason: str = ""
    entry: ConsentEntry | None = None

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300


def scope(requester: str, target: str, room: str | None = None) -> ConsentScope:
    """A :class:`ConsentScope` from URI strings (empty or None room = any room)."""
    return ConsentScope(IdentifierUri(requester), IdentifierUri(target), IdentifierUri(room) if room else None)


def _room(s: ConsentScope) -> str | None:
    return s.room_id.uri if s.room_id is not None else None


def _sort_key(s: ConsentScope) -> tuple[str, str, str]:
    return (s.requester_uri.uri, s.target_uri.uri, _room(s) or "")


def _domain(uri: str) -> str | None:
    try:
        return domain_of(uri)
    except UriError:
        return None


class ConsentStore:
    """The consent state of the provider ``domain``.

    ``local_users``, when given, are the provider's known users: a request
    for an unknown target (or a grant for an unknown requester) is answered
    404 if ``reveal_unknown_users`` else 201 with no change ([P]: "A provider
    that does not wish to reveal if a user is not found can respond with a
    201"). ``implicit`` is the provider's implicit-consent rule (None: none).
    """

    def __init__(
        self,
        domain: str,
        *,
        distinguish_rooms: bool = True,
        local_users: Collection[str] | None = None,
        reveal_unknown_users: bool = False,
        implicit: ImplicitConsent | None = None,
    ) -> None:
        self.domain = domain
        self.distinguish_rooms = distinguish_rooms
        self.local_users = None if local_users is None else frozenset(local_users)
        self.reveal_unknown_users = reveal_unknown_users
        self.implicit = implicit
        self._requests: dict[ConsentScope, int] = {}
        self._decisions: dict[ConsentScope, Decision] = {}

    # ------------------------------------------------------------ the question

    def check(self, requester: str, target: str, room: str | None = None) -> KeyMaterialUserCode:
        """May ``requester`` fetch ``target``'s key material (to add it to
        ``room``; None or "" = no room)? ``success``, ``noConsent`` or
        ``noConsentForThisRoom`` (see the module docstring for the order).

        The signature is the key store's ``ConsentCheck``
        (:mod:`mimisim.mimi.keystore`), so a provider passes ``store.check``
        as its consent callable. Note ``success`` is 0: compare the code,
        never truth-test it."""
        room = room or None
        for_room = Code.noConsentForThisRoom if self.distinguish_rooms else Code.noConsent
        if room is not None:
            d = self._decisions.get(scope(requester, target, room))
            if d is not None:
                return Code.success if d.state is ConsentState.granted else for_room
        d = self._decisions.get(scope(requester, target))
        if d is not None:
            return Code.success if d.state is ConsentState.granted else Code.noConsent
        if self.implicit is not None and self.implicit(requester, target, room):
            return Code.success
        if room is not None:
            for s, dec in self._decisions.items():
                if (
                    dec.state is ConsentState.granted
                    and s.room_id is not None
                    and s.requester_uri.uri == requester
                    and s.target_uri.uri == target
                ):
                    return for_room
        return Code.noConsent

    def may_add(self, requester: str, target: str, room: str | None = None) -> bool:
        """Whether ``requester`` may add ``target`` (to ``room``)."""
        return self.check(requester, target, room) == Code.success

    # ------------------------------------------------------------ listings

    def pending_requests(self, target: str | None = None) -> list[ConsentScope]:
        """Open requests (for ``target`` only, if given), sorted."""
        return sorted((s for s in self._requests if target is None or s.target_uri.uri == target), key=_sort_key)

    def decisions(self) -> list[tuple[ConsentScope, Decision]]:
        """All decisions in force, sorted by scope."""
        return sorted(self._decisions.items(), key=lambda kv: _sort_key(kv[0]))

    def decision(self, requester: str, target: str, room: str | None = None) -> Decision | None:
        return self._decisions.get(scope(requester, target, room))

    def key_packages(self, requester: str, target: str, room: str | None = None) -> tuple[bytes, ...]:
        """The KeyPackages a grant for exactly this scope carried."""
        d = self.decision(requester, target, room)
        return d.key_packages if d is not None and d.state is ConsentState.granted else ()

    def digest(self) -> bytes:
        """SHA-256 of the whole state (tests compare it around refusals)."""
        h = hashlib.sha256()
        for s in self.pending_requests():
            h.update(repr(("request", _sort_key(s), self._requests[s])).encode())
        for s, d in self.decisions():
            h.update(repr(("decision", _sort_key(s), d.state.value, d.at_ms, d.key_packages)).encode())
        return h.digest()

    # ------------------------------------------------------------ local users' operations

    def request(self, requester: str, target: str, room: str | None = None, now_ms: int = 0) -> ConsentResult:
        """A local user asks ``target`` for consent; the result's ``entry`` is
        the body of ``POST /requestConsent/{target's domain}``."""
        return self._local(Op.request, requester, target, room, now_ms, ())

    def cancel(self, requester: str, target: str, room: str | None = None, now_ms: int = 0) -> ConsentResult:
        """A local user withdraws an earlier request ([P]: the same scope)."""
        return self._local(Op.cancel, requester, target, room, now_ms, ())

    def grant(
        self,
        requester: str,
        target: str,
        room: str | None = None,
        now_ms: int = 0,
        key_packages: Sequence[KeyPackage] = (),
    ) -> ConsentResult:
        """A local ``target`` consents to ``requester`` adding it (to ``room``);
        ``entry`` is the body of ``POST /updateConsent/{requester's domain}``."""
        return self._local(Op.grant, requester, target, room, now_ms, tuple(key_packages))

    def revoke(self, requester: str, target: str, room: str | None = None, now_ms: int = 0) -> ConsentResult:
        """A local ``target`` revokes or pre-emptively denies consent."""
        return self._local(Op.revoke, requester, target, room, now_ms, ())

    def _local(
        self, op: ConsentOperation, requester: str, target: str, room: str | None, now_ms: int, kps: tuple[KeyPackage, ...]
    ) -> ConsentResult:
        local = requester if op in (Op.request, Op.cancel) else target
        if _domain(requester) is None or _domain(target) is None or (room and _domain(room) is None):
            return ConsentResult(400, reason="requester, target and room must be MIMI URIs")
        if _domain(local) != self.domain:
            role = "requester" if local == requester else "target"
            return ConsentResult(403, reason=f"the {role} {local} is not a user of {self.domain}")
        s = scope(requester, target, room)
        if op == Op.cancel and s not in self._requests:
            return ConsentResult(404, reason="no request with this scope to cancel")
        body_cls = RequestConsentBody if op in (Op.request, Op.cancel) else UpdateConsentBody
        entry = body_cls(
            op, s.requester_uri, s.target_uri, s.room_id, list(kps) if op == Op.grant else None, AppDataDictionary([])
        )
        changed = self._commit(op, s, now_ms, tuple(k.encode() for k in kps))
        return ConsentResult(201, changed, "", entry)

    # ------------------------------------------------------------ bodies from other providers

    def receive(self, entry: ConsentEntry, from_domain: str, now_ms: int = 0) -> ConsentResult:
        """Apply a ``requestConsent`` or ``updateConsent`` body from ``from_domain``.

        [P]: for request/cancel the target is ours and the requester the
        sender's; for grant/revoke the requester is ours and the target the
        sender's. A cancel with no matching request is accepted and does
        nothing. Never raises.
        """
        op = ConsentOperation(entry.consent_operation)
        requester, target = entry.requester_uri.uri, entry.target_uri.uri
        ours, theirs = (target, requester) if op in (Op.request, Op.cancel) else (requester, target)
        if _domain(ours) != self.domain:
            return ConsentResult(400, reason=f"{ours} is not a user of {self.domain}")
        if _domain(theirs) != from_domain:
            return ConsentResult(403, reason=f"{from_domain} cannot speak for {theirs}")
        if entry.room_id is not None and _domain(entry.room_id.uri) is None:
            return ConsentResult(400, reason=f"room {entry.room_id.uri!r} is not a MIMI URI")
        if self.local_users is not None and ours not in self.local_users:
            if self.reveal_unknown_users:
                return ConsentResult(404, reason=f"{ours} is unknown")
            return ConsentResult(201, reason="unknown user (not revealed)")
        s = entry.scope
        kps = tuple(k.encode() for k in entry.client_key_packages or ()) if op == Op.grant else ()
        changed = self._commit(op, s, now_ms, kps)
        return ConsentResult(201, changed)

    def _commit(self, op: ConsentOperation, s: ConsentScope, now_ms: int, kps: tuple[bytes, ...]) -> bool:
        """The state change of a validated operation, in one step."""
        if op == Op.request:
            d = self._decisions.get(s)
            if s in self._requests or (d is not None and d.state is ConsentState.granted):
                return False  # already open, or already granted for this scope
            self._requests = {**self._requests, s: int(now_ms)}
            return True
        if op == Op.cancel:
            if s not in self._requests:
                return False
            self._requests = {k: v for k, v in self._requests.items() if k != s}
            return True
        state = ConsentState.granted if op == Op.grant else ConsentState.revoked
        new = Decision(state, int(now_ms), kps)
        changed = self._decisions.get(s) != new or s in self._requests
        self._decisions = {**{k: v for k, v in self._decisions.items() if k != s}, s: new}
        self._requests = {k: v for k, v in self._requests.items() if k != s}
        return changed

    # ------------------------------------------------------------ endpoint adapter

    def handle(self, req: MimiRequest, now_ms: int) -> Outcome:
        """``POST /requestConsent/{targetDomain}`` or ``/updateConsent/{requesterDomain}``:
        decode, check the path names us, apply; 201 or the refusal's status."""
        if req.endpoint not in (Endpoint.REQUEST_CONSENT, Endpoint.UPDATE_CONSENT):
            return Outcome(bad_request(f"not a consent endpoint: {req.endpoint.name}"))
        if req.target != self.domain:
            return Outcome(not_found(f"{req.target} is not served here"))
        body_cls = RequestConsentBody if req.endpoint == Endpoint.REQUEST_CONSENT else UpdateConsentBody
        try:
            entry = body_cls.decode(req.body)
        except DecodeError as e:
            return Outcome(bad_request(str(e)))
        r = self.receive(entry, req.from_domain, now_ms)
        if r.status == 201:
            return Outcome(created())
        if r.status == 403:
            return Outcome(forbidden(r.reason))
        if r.status == 404:
            return Outcome(not_found(r.reason))
        return Outcome(MimiResponse(r.status, reason_bytes(r.reason), "Bad Request"))
