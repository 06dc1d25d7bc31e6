"""A provider's store of its clients' KeyPackages, and the hub's Welcome routing table.

[P]/[P6] "Fetch Key Material": a provider publishes initial key material for
its users' clients and hands it out, one KeyPackage per client, to providers
that want to add the user to a room. The draft's rules, each enforced here:

* "Keying material provided from one response MUST NOT be provided in any
  other response" -- a claimed KeyPackage leaves the store, except a
  last-resort one ([EXT] ``last_resort_key_package``), which is handed out
  only when the client has no other compatible KeyPackage and may be handed
  out again (RFC 9420 s.16.8).
* "The target provider MUST NOT provide expired keying material" -- a
  KeyPackage is usable only while ``not_before <= now_s <= not_after``.
* Only KeyPackages of an acceptable cipher suite whose leaf capabilities
  cover the request's ``RequiredCapabilities`` are offered.
* "the target provider needs to associate its KeyPackageRef with the target
  client and the hub provider needs to associate its KeyPackageRef with the
  target provider" -- :meth:`KeyMaterialStore.client_for_ref` and
  :class:`WelcomeRouting`.

Every :class:`~mimisim.mimi.wire.KeyMaterialUserCode` and
:class:`~mimisim.mimi.wire.KeyMaterialClientCode` is reachable; which one a
request gets is decided in :meth:`KeyMaterialStore.claim`, whose docstring
gives the order of the checks.

Sans-IO and deterministic: time is an argument (``now_s``, seconds on the
same clock as the KeyPackages' lifetimes), consent is an injected callable,
nothing is random. Clients are visited in sorted URI order and each client's
KeyPackages in upload order, never in the order of a set or of a dict keyed
by random bytes. Validate-then-commit: a call that is refused (an upload with
one bad KeyPackage, a claim answered ``noConsent``) leaves :meth:`digest`
unchanged; errors are values (an error string, a response code), not
exceptions.

Choices where the drafts are silent are listed in ``docs/mimi-choices.md``
("Key material and franking").
"""

from __future__ import annotations

import enum
import hashlib
from collections.abc import Callable, Container, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, overload

from mimisim.codec import DecodeError, Reader
from mimisim.mimi.identity import UriError, parse, user_of_client
from mimisim.mimi.wire import (
    USER_CODES_WITH_CLIENTS,
    ClientKeyMaterial,
    ComponentId,
    IdentifierUri,
    KeyMaterialClientCode,
    KeyMaterialRequest,
    KeyMaterialResponse,
    KeyMaterialUserCode,
    Protocol,
)
from mimisim.mls.crypto import UnsupportedCipherSuite, get_suite
from mimisim.mls.errors import ValidationError
from mimisim.mls.structs import (
    DEFAULT_EXTENSION_TYPES,
    DEFAULT_PROPOSAL_TYPES,
    AppDataDictionary,
    Capabilities,
    ComponentData,
    CredentialType,
    Extension,
    ExtensionType,
    KeyPackage,
    MLSMessage,
    RequiredCapabilities,
    WireFormat,
    find_extension,
)
from mimisim.mls.validation import validate_key_package

__all__ = [
    "ClaimedRef",
    "ConsentCheck",
    "KeyMaterialStore",
    "KeyStoreSnapshot",
    "RouteEntry",
    "StoredKeyPackage",
    "UserStatus",
    "WelcomeRouting",
    "covers_required_capabilities",
    "encode_upload",
    "is_last_resort",
    "last_resort_extension",
    "parse_upload",
    "verify_key_material_request",
]

_UC = KeyMaterialUserCode
_CC = KeyMaterialClientCode
_MLS10 = Protocol.mls10

#: ``consent(requester_user, target_user, room_id) -> None | code``. ``None``
#: (or ``True``, or ``KeyMaterialUserCode.success``) allows the claim; a
#: failure user code (``noConsent``, ``noConsentForThisRoom``, ...) refuses
#: it with that code; ``False`` or anything else refuses with ``noConsent``.
#: ``room_id`` is ``""`` when the request names no room.
ConsentCheck = Callable[[str, str, str], Any]


# ==========================================================================
# last-resort marking


def last_resort_extension() -> Extension:
    """The KeyPackage extension that marks it last-resort ([EXT] "Last-Resort
    KeyPackages"): an ``app_data_dictionary`` holding the
    ``last_resort_key_package`` component with empty data."""
    d = AppDataDictionary([ComponentData(ComponentId.last_resort_key_package, b"")])
    return Extension(ExtensionType.app_data_dictionary, d.encode())


def is_last_resort(kp: KeyPackage) -> bool:
    """Whether ``kp`` is marked last-resort: the [EXT]
    ``last_resort_key_package`` component (0x0004) is in the KeyPackage's
    ``app_data_dictionary`` extension. A malformed dictionary is not a mark
    (the KeyPackage is then ordinary: it is handed out at most once, the
    safe reading)."""
    raw = find_extension(kp.extensions, ExtensionType.app_data_dictionary)
    if raw is None:
        return False
    try:
        d = AppDataDictionary.decode(raw)
    except DecodeError:
        return False
    return d.get(ComponentId.last_resort_key_package) is not None


# ==========================================================================
# capabilities


def covers_required_capabilities(caps: Capabilities, required: RequiredCapabilities | None) -> bool:
    """Whether leaf capabilities ``caps`` cover ``required`` (RFC 9420 s.11.1).

    Default extension and proposal types (RFC 9420 s.7.2: every client
    supports them) need not be listed; credential types must be.
    """
    return _covers(caps.extensions, caps.proposals, caps.credentials, required)


def _covers(
    extensions: Container[int],
    proposals: Container[int],
    credentials: Container[int],
    required: RequiredCapabilities | None,
) -> bool:
    if required is None:
        return True
    return (
        all(t in DEFAULT_EXTENSION_TYPES or t in extensions for t in required.extension_types)
        and all(t in DEFAULT_PROPOSAL_TYPES or t in proposals for t in required.proposal_types)
        and all(t in credentials for t in required.credential_types)
    )


# ==========================================================================
# upload bodies


def encode_upload(key_packages: Iterable[KeyPackage]) -> bytes:
    """The body a client sends to publish KeyPackages: each one wrapped in an
    MLSMessage (RFC 9420 s.6: KeyPackages travel as MLSMessage), concatenated."""
    return b"".join(MLSMessage.wrap(kp).encode() for kp in key_packages)


def _decode_one(data: bytes) -> KeyPackage:
    """One KeyPackage given as an MLSMessage or as the bare struct."""
    try:
        msg = MLSMessage.decode(data)
    except DecodeError:
        return KeyPackage.decode(data)
    if msg.wire_format != WireFormat.key_package:
        raise DecodeError(f"expected a KeyPackage, got {WireFormat(msg.wire_format).name}")
    kp: KeyPackage = msg.body  # the key_package wire format carries a KeyPackage
    return kp


def _split(data: bytes) -> list[KeyPackage]:
    """Concatenated KeyPackages, each MLSMessage-wrapped or bare.

    Each item is tried as an MLSMessage first, then as a bare KeyPackage;
    a fresh Reader per attempt keeps a failed attempt from leaving state.
    """
    out: list[KeyPackage] = []
    pos = 0
    while pos < len(data):
        r = Reader(data, pos)
        try:
            msg = MLSMessage.decode_prefix(r)
            if msg.wire_format != WireFormat.key_package:
                raise DecodeError(f"item {len(out)}: expected a KeyPackage, got {WireFormat(msg.wire_format).name}")
            kp = msg.body
        except DecodeError:
            r = Reader(data, pos)
            try:
                kp = KeyPackage.decode_prefix(r)
            except DecodeError as e:
                raise DecodeError(f"item {len(out)} is neither an MLSMessage(KeyPackage) nor a KeyPackage: {e}") from None
        out.append(kp)
        pos = r.pos
    return out


def parse_upload(key_packages: bytes | Iterable[bytes | KeyPackage | MLSMessage]) -> list[KeyPackage]:
    """Decode an upload: one body of concatenated KeyPackages (see
    :func:`encode_upload`; bare KeyPackages are accepted too), or a sequence
    whose items are KeyPackages, MLSMessages or the bytes of either.

    Raises :class:`~mimisim.codec.DecodeError`; :meth:`KeyMaterialStore.upload`
    turns it into an error value.
    """
    if isinstance(key_packages, bytes | bytearray | memoryview):
        return _split(bytes(key_packages))
    out: list[KeyPackage] = []
    for i, item in enumerate(key_packages):
        if isinstance(item, KeyPackage):
            out.append(KeyPackage.decode(item.encode()))  # a private copy
        elif isinstance(item, MLSMessage):
            if item.wire_format != WireFormat.key_package:
                raise DecodeError(f"item {i}: expected a KeyPackage")
            out.append(KeyPackage.decode(item.body.encode()))
        elif isinstance(item, bytes | bytearray | memoryview):
            out.append(_decode_one(bytes(item)))
        else:
            raise DecodeError(f"item {i}: not a KeyPackage ({type(item).__name__})")
    return out


# ==========================================================================
# request signature ([P6])


def verify_key_material_request(request: KeyMaterialRequest) -> bool:
    """[P6] Fetch Key Material: does ``key_material_request_signature`` verify?

    The draft does not say which signature scheme the requester's key uses;
    the request carries no cipher suite of its own. It is accepted if it
    verifies under the scheme of any of its acceptable cipher suites that
    this implementation supports (tried in the request's order).
    """
    tbs = request.tbs().encode()
    for suite_id in request.acceptable_ciphersuites:
        try:
            suite = get_suite(suite_id)
        except UnsupportedCipherSuite:
            continue
        if suite.verify_with_label(
            request.requester_signature_key, b"KeyMaterialRequestTBS", tbs, request.key_material_request_signature
        ):
            return True
    return False


# ==========================================================================
# state records (immutable, so a snapshot can share them)


class UserStatus(enum.Enum):
    """What the store knows about a user of its provider."""

    active = "active"
    deleted = "deleted"  # a tombstone: answered userDeleted


@dataclass(frozen=True)
class StoredKeyPackage:
    """One published KeyPackage and what claims need to know about it.

    ``seq`` is the upload order across the whole store (the stable key for
    "first come, first served"); ``data`` is the bare KeyPackage encoding
    (its ref is computed over exactly these bytes).
    """

    seq: int
    client_uri: str
    ref: bytes
    data: bytes
    cipher_suite: int
    last_resort: bool
    not_before: int
    not_after: int
    extensions: frozenset[int]
    proposals: frozenset[int]
    credentials: frozenset[int]

    def key_package(self) -> KeyPackage:
        """A fresh decoded copy (callers may mutate it; the store keeps bytes)."""
        return KeyPackage.decode(self.data)

    def capabilities(self) -> Capabilities:
        return self.key_package().leaf_node.capabilities

    def usable_at(self, now_s: int) -> bool:
        return self.not_before <= now_s <= self.not_after

    def covers(self, required: RequiredCapabilities | None) -> bool:
        return _covers(self.extensions, self.proposals, self.credentials, required)


@dataclass(frozen=True)
class ClaimedRef:
    """Where a handed-out KeyPackage's Welcome must go (its client), and until
    when the association is worth keeping ([P] "These associations can be
    deleted ... after the KeyPackage ``leaf_node.lifetime.not_after`` time")."""

    client_uri: str
    not_after: int
    last_resort: bool


@dataclass(frozen=True)
class KeyStoreSnapshot:
    """The whole state of a :class:`KeyMaterialStore`, immutable."""

    domain: str
    users: tuple[tuple[str, UserStatus], ...]
    clients: tuple[tuple[str, tuple[StoredKeyPackage, ...]], ...]
    claimed: tuple[tuple[bytes, ClaimedRef], ...]
    next_seq: int


def _lp(data: bytes) -> bytes:
    """Length-prefixed bytes for the digest (no two states hash the same input)."""
    return len(data).to_bytes(4, "big") + data


def _is_client_of(client_uri: str, domain: str) -> bool:
    try:
        u = parse(client_uri)
    except UriError:
        return False
    return u.kind == "d" and u.domain == domain


def _is_user_of(user_uri: str, domain: str) -> bool:
    try:
        u = parse(user_uri)
    except UriError:
        return False
    return u.kind == "u" and u.domain == domain


# ==========================================================================
# the store


class KeyMaterialStore:
    """One provider's published KeyPackages (see the module docstring).

    ``consent`` is the default consent check (a callable, so the consent
    store can live elsewhere); a claim may pass its own. With no check at
    all, every requester has consent. ``hide_unknown_users`` answers
    ``noConsent`` instead of ``userUnknown``/``userDeleted`` (the draft's
    privacy catch-all). ``reveal_capabilities`` includes a client's
    capabilities with ``nothingCompatible`` (the draft: "optionally
    included"). ``require_signed_requests`` refuses (``noConsent``) a
    :class:`KeyMaterialRequest` whose -06 signature does not verify.
    """

    def __init__(
        self,
        domain: str,
        consent: ConsentCheck | None = None,
        *,
        hide_unknown_users: bool = False,
        reveal_capabilities: bool = True,
        require_signed_requests: bool = False,
    ) -> None:
        self.domain = domain
        self.consent = consent
        self.hide_unknown_users = hide_unknown_users
        self.reveal_capabilities = reveal_capabilities
        self.require_signed_requests = require_signed_requests
        self._users: dict[str, UserStatus] = {}
        self._clients: dict[str, tuple[StoredKeyPackage, ...]] = {}
        self._claimed: dict[bytes, ClaimedRef] = {}
        self._next_seq = 0

    # ------------------------------------------------------------ users and clients

    def add_user(self, user_uri: str) -> str | None:
        """Register a user of this provider (no clients yet). Error string or None.

        A deleted user stays deleted: user URIs are not reused.
        """
        if not _is_user_of(user_uri, self.domain):
            return f"{user_uri!r} is not a user URI of {self.domain}"
        status = self._users.get(user_uri)
        if status == UserStatus.deleted:
            return f"{user_uri} was deleted"
        if status is None:
            self._users = {**self._users, user_uri: UserStatus.active}
        return None

    def add_client(self, client_uri: str) -> str | None:
        """Register a client (and its user) with no KeyPackages yet; a claim
        then reports it ``keyMaterialExhausted``. Error string or None."""
        if not _is_client_of(client_uri, self.domain):
            return f"{client_uri!r} is not a client URI of {self.domain}"
        user = user_of_client(client_uri)
        if self._users.get(user) == UserStatus.deleted:
            return f"{user} was deleted"
        users = self._users if user in self._users else {**self._users, user: UserStatus.active}
        clients = self._clients if client_uri in self._clients else {**self._clients, client_uri: ()}
        self._users, self._clients = users, clients
        return None

    def remove_client(self, client_uri: str) -> None:
        """Forget a client and its unclaimed KeyPackages (claimed refs stay
        until pruned, so a Welcome already on its way is still routed)."""
        if client_uri in self._clients:
            self._clients = {c: kps for c, kps in self._clients.items() if c != client_uri}

    def delete_user(self, user_uri: str) -> None:
        """Delete a user: its clients and KeyPackages go, claimed refs of its
        clients too (nothing is to be delivered to them), and a tombstone
        makes later claims answer ``userDeleted``."""
        if not _is_user_of(user_uri, self.domain):
            return
        gone = {c for c in self._clients if user_of_client(c) == user_uri}
        clients = {c: kps for c, kps in self._clients.items() if c not in gone}
        claimed = {r: e for r, e in self._claimed.items() if e.client_uri not in gone}
        users = {**self._users, user_uri: UserStatus.deleted}
        self._users, self._clients, self._claimed = users, clients, claimed

    def user_status(self, user_uri: str) -> UserStatus | None:
        return self._users.get(user_uri)

    def clients_of(self, user_uri: str) -> list[str]:
        """The user's registered clients, sorted by URI."""
        return sorted(c for c in self._clients if user_of_client(c) == user_uri)

    def key_packages_of(self, client_uri: str) -> tuple[StoredKeyPackage, ...]:
        """The client's unclaimed (and last-resort) KeyPackages, in upload order."""
        return self._clients.get(client_uri, ())

    # ------------------------------------------------------------ upload

    def upload(
        self,
        client_uri: str,
        key_packages: bytes | Iterable[bytes | KeyPackage | MLSMessage],
        now_s: int,
    ) -> str | None:
        """Publish KeyPackages of ``client_uri``; all or nothing. Returns an
        error string (nothing stored) or None.

        Each KeyPackage must decode, pass RFC 9420 validation
        (:func:`~mimisim.mls.validation.validate_key_package` under its own
        cipher suite), not be expired at ``now_s`` (one not yet valid is kept
        for later), carry a basic credential whose identity is
        ``client_uri`` (mimisim's identity convention, so a client cannot
        publish key material for another), and be new: its KeyPackageRef
        must not be stored, claimed before, or repeated in the upload.
        The client and its user are registered if they were not.
        """
        if not _is_client_of(client_uri, self.domain):
            return f"{client_uri!r} is not a client URI of {self.domain}"
        user = user_of_client(client_uri)
        if self._users.get(user) == UserStatus.deleted:
            return f"{user} was deleted"
        try:
            kps = parse_upload(key_packages)
        except DecodeError as e:
            return f"malformed upload: {e}"
        if not kps:
            return "no KeyPackage in the upload"
        known = {kp.ref for stored in self._clients.values() for kp in stored} | set(self._claimed)
        staged: list[StoredKeyPackage] = []
        seq = self._next_seq
        for i, kp in enumerate(kps):
            try:
                suite = get_suite(kp.cipher_suite)
            except UnsupportedCipherSuite:
                return f"KeyPackage {i}: unsupported cipher suite {kp.cipher_suite}"
            try:
                validate_key_package(suite, kp, now_s=None)
            except ValidationError as e:
                return f"KeyPackage {i}: {e}"
            leaf = kp.leaf_node
            lifetime = leaf.lifetime
            assert lifetime is not None  # validated: a key_package leaf has one
            if lifetime.not_after < now_s:
                return f"KeyPackage {i} expired at {lifetime.not_after} (now {now_s})"
            cred = leaf.credential
            if cred.credential_type != CredentialType.basic or cred.identity != client_uri.encode():
                return f"KeyPackage {i}: credential does not name {client_uri}"
            data = kp.encode()
            ref = suite.make_key_package_ref(data)
            if ref in known:
                return f"KeyPackage {i} was published before"
            known.add(ref)
            caps = leaf.capabilities
            staged.append(
                StoredKeyPackage(
                    seq=seq,
                    client_uri=client_uri,
                    ref=ref,
                    data=data,
                    cipher_suite=kp.cipher_suite,
                    last_resort=is_last_resort(kp),
                    not_before=lifetime.not_before,
                    not_after=lifetime.not_after,
                    extensions=frozenset(caps.extensions),
                    proposals=frozenset(caps.proposals),
                    credentials=frozenset(caps.credentials),
                )
            )
            seq += 1
        # commit
        users = self._users if user in self._users else {**self._users, user: UserStatus.active}
        clients = {**self._clients, client_uri: self._clients.get(client_uri, ()) + tuple(staged)}
        self._users, self._clients, self._next_seq = users, clients, seq
        return None

    # ------------------------------------------------------------ claim

    @overload
    def claim(
        self, request: KeyMaterialRequest, now_s: int, consent: ConsentCheck | None = None, /
    ) -> KeyMaterialResponse: ...

    @overload
    def claim(
        self,
        target_user: str,
        requester: str,
        acceptable_suites: Sequence[int],
        required_capabilities: RequiredCapabilities | None,
        room_id: str,
        now_s: int,
        consent: ConsentCheck | None = None,
        *,
        protocol: int = _MLS10,
    ) -> KeyMaterialResponse: ...

    def claim(self, *args: Any, **kwargs: Any) -> KeyMaterialResponse:
        """Claim one KeyPackage per client of a user; returns the wire
        :class:`~mimisim.mimi.wire.KeyMaterialResponse`.

        Two call forms: ``claim(request, now_s, consent=None)`` with a decoded
        :class:`KeyMaterialRequest` (what an endpoint has; same as
        :meth:`claim_request`), or ``claim(target_user, requester,
        acceptable_suites, required_capabilities, room_id, now_s,
        consent=None, *, protocol=mls10)`` with its fields.

        The checks, in order (the first that fails decides the user code):

        1. ``protocol`` is not MLS 1.0 -> ``incompatibleProtocol``;
        2. the target is not a user of this provider, or was never
           registered -> ``userUnknown``; deleted -> ``userDeleted``
           (both ``noConsent`` with ``hide_unknown_users``);
        3. the consent check refuses -> its code (``noConsent``,
           ``noConsentForThisRoom``, ...);
        4. per client, in URI order: no KeyPackage usable at ``now_s`` ->
           ``keyMaterialExhausted``; usable ones but none with an acceptable
           suite covering ``required_capabilities`` -> ``nothingCompatible``
           (with the capabilities of its first usable KeyPackage, unless
           ``reveal_capabilities`` is off); else ``success`` with the oldest
           compatible ordinary KeyPackage, or, if there is none, the oldest
           compatible last-resort one;
        5. every client served -> ``success``; some -> ``partialSuccess``;
           none (or the user has no client) -> ``noCompatibleMaterial`` with
           the per-client list.

        Only steps 4-5 change state, and only when at least one KeyPackage is
        handed out: ordinary ones leave the store, and every handed-out ref
        is recorded for :meth:`client_for_ref`.
        """
        if args and isinstance(args[0], KeyMaterialRequest):
            return self.claim_request(*args, **kwargs)
        return self._claim(*args, **kwargs)

    def claim_request(
        self, request: KeyMaterialRequest, now_s: int, consent: ConsentCheck | None = None
    ) -> KeyMaterialResponse:
        """:meth:`claim` from a decoded request. With
        ``require_signed_requests`` the -06 request signature must verify
        (else ``noConsent``: the draft has no code for it, and ``noConsent``
        is its catch-all)."""
        if self.require_signed_requests and not verify_key_material_request(request):
            return _failure(request.target_user.uri, _UC.noConsent)
        return self._claim(
            request.target_user.uri,
            request.requesting_user.uri,
            request.acceptable_ciphersuites,
            request.required_capabilities,
            request.room_id.uri,
            now_s,
            consent,
            protocol=request.protocol,
        )

    def _claim(
        self,
        target_user: str,
        requester: str,
        acceptable_suites: Sequence[int],
        required_capabilities: RequiredCapabilities | None,
        room_id: str,
        now_s: int,
        consent: ConsentCheck | None = None,
        *,
        protocol: int = _MLS10,
    ) -> KeyMaterialResponse:
        if protocol != _MLS10:
            return _failure(target_user, _UC.incompatibleProtocol)
        status = self._users.get(target_user) if _is_user_of(target_user, self.domain) else None
        if status is None:
            return _failure(target_user, _UC.noConsent if self.hide_unknown_users else _UC.userUnknown)
        if status == UserStatus.deleted:
            return _failure(target_user, _UC.noConsent if self.hide_unknown_users else _UC.userDeleted)
        check = consent if consent is not None else self.consent
        if check is not None:
            refusal = _consent_refusal(check(requester, target_user, room_id))
            if refusal is not None:
                return _failure(target_user, refusal)

        suites = set(acceptable_suites)
        entries: list[ClientKeyMaterial] = []
        picks: list[StoredKeyPackage] = []
        clients = self.clients_of(target_user)
        for client in clients:
            usable = [kp for kp in self._clients[client] if kp.usable_at(now_s)]
            if not usable:
                entries.append(ClientKeyMaterial(_CC.keyMaterialExhausted, IdentifierUri(client), None, None))
                continue
            compatible = [kp for kp in usable if kp.cipher_suite in suites and kp.covers(required_capabilities)]
            pick = next((kp for kp in compatible if not kp.last_resort), None)
            if pick is None:
                pick = next((kp for kp in compatible if kp.last_resort), None)
            if pick is None:
                caps = usable[0].capabilities() if self.reveal_capabilities else None
                entries.append(ClientKeyMaterial(_CC.nothingCompatible, IdentifierUri(client), None, caps))
                continue
            entries.append(ClientKeyMaterial(_CC.success, IdentifierUri(client), pick.key_package(), None))
            picks.append(pick)

        if not picks:
            return KeyMaterialResponse(_MLS10, _UC.noCompatibleMaterial, IdentifierUri(target_user), entries)
        code = _UC.success if len(picks) == len(clients) else _UC.partialSuccess
        # commit: ordinary KeyPackages leave the store; every ref is recorded.
        spent = {kp.ref for kp in picks if not kp.last_resort}
        touched = {kp.client_uri for kp in picks if not kp.last_resort}
        new_clients = dict(self._clients)
        for client in touched:
            new_clients[client] = tuple(kp for kp in self._clients[client] if kp.ref not in spent)
        new_claimed = dict(self._claimed)
        for kp in picks:
            new_claimed[kp.ref] = ClaimedRef(kp.client_uri, kp.not_after, kp.last_resort)
        self._clients, self._claimed = new_clients, new_claimed
        return KeyMaterialResponse(_MLS10, code, IdentifierUri(target_user), entries)

    # ------------------------------------------------------------ Welcome routing

    def client_for_ref(self, ref: bytes) -> str | None:
        """The client a handed-out KeyPackage (by KeyPackageRef) belongs to."""
        entry = self._claimed.get(bytes(ref))
        return entry.client_uri if entry is not None else None

    def forget_ref(self, ref: bytes) -> None:
        """Drop a ref's association once its Welcome was delivered ([P]: "can
        be deleted after a Welcome message is forwarded"). A last-resort
        KeyPackage's ref is kept: the same KeyPackage may be handed out again
        and its later Welcomes must still find the client (forgetting it lost
        the Welcome of a client added to more rooms than it had KeyPackages)."""
        entry = self._claimed.get(bytes(ref))
        if entry is not None and not entry.last_resort:
            self._claimed = {r: e for r, e in self._claimed.items() if r != bytes(ref)}

    def prune(self, now_s: int) -> int:
        """Drop KeyPackages and ref associations whose ``not_after`` has
        passed; returns how many entries went. Claims never prune (so a
        refused claim changes nothing); the host calls this when it likes."""
        clients = {c: tuple(kp for kp in kps if kp.not_after >= now_s) for c, kps in self._clients.items()}
        claimed = {r: e for r, e in self._claimed.items() if e.not_after >= now_s}
        dropped = (
            sum(len(kps) for kps in self._clients.values())
            - sum(len(kps) for kps in clients.values())
            + len(self._claimed)
            - len(claimed)
        )
        if dropped:
            self._clients, self._claimed = clients, claimed
        return dropped

    # ------------------------------------------------------------ state

    def snapshot(self) -> KeyStoreSnapshot:
        """The whole state, immutable (records are frozen and shared)."""
        return KeyStoreSnapshot(
            domain=self.domain,
            users=tuple(sorted(self._users.items())),
            clients=tuple((c, self._clients[c]) for c in sorted(self._clients)),
            claimed=tuple((r, self._claimed[r]) for r in sorted(self._claimed)),
            next_seq=self._next_seq,
        )

    def restore(self, snapshot: KeyStoreSnapshot) -> None:
        """Return to a snapshot (of this provider's store)."""
        if snapshot.domain != self.domain:
            raise ValueError(f"snapshot of {snapshot.domain}, not {self.domain}")
        self._users = dict(snapshot.users)
        self._clients = dict(snapshot.clients)
        self._claimed = dict(snapshot.claimed)
        self._next_seq = snapshot.next_seq

    def digest(self) -> bytes:
        """SHA-256 of the whole state in a canonical order (tests compare it
        before and after a refused request)."""
        h = hashlib.sha256(b"mimisim KeyMaterialStore v1")
        h.update(_lp(self.domain.encode()))
        h.update(self._next_seq.to_bytes(8, "big"))
        for user in sorted(self._users):
            h.update(b"U" + _lp(user.encode()) + _lp(self._users[user].value.encode()))
        for client in sorted(self._clients):
            h.update(b"C" + _lp(client.encode()))
            for kp in self._clients[client]:
                h.update(b"K" + kp.seq.to_bytes(8, "big") + bytes([kp.last_resort]) + _lp(kp.ref))
        for ref in sorted(self._claimed):
            e = self._claimed[ref]
            h.update(b"R" + _lp(ref) + _lp(e.client_uri.encode()) + e.not_after.to_bytes(8, "big"))
            h.update(bytes([e.last_resort]))
        return h.digest()


def _failure(target_user: str, code: KeyMaterialUserCode) -> KeyMaterialResponse:
    return KeyMaterialResponse(_MLS10, code, IdentifierUri(target_user), [])


def _consent_refusal(result: Any) -> KeyMaterialUserCode | None:
    """Map a consent callable's answer to None (allowed) or a refusal code.

    Fails closed: anything that is not a recognisable "yes" or a failure
    user code is ``noConsent``. Codes that would list clients
    (``partialSuccess``, ``noCompatibleMaterial``) make no sense as a
    consent answer and are ``noConsent`` too.
    """
    if result is None or result is True:
        return None
    if result is False or isinstance(result, bool):
        return _UC.noConsent
    try:
        code = KeyMaterialUserCode(result)
    except (ValueError, TypeError):
        return _UC.noConsent
    if code == _UC.success:
        return None
    if code in USER_CODES_WITH_CLIENTS:
        return _UC.noConsent
    return code


# ==========================================================================
# the hub's table


@dataclass(frozen=True)
class RouteEntry:
    """A claimed KeyPackage's provider, as the hub that proxied the claim saw
    it: until when the KeyPackage is valid (seconds, None if unknown) and
    when the hub recorded it (milliseconds of the host's clock, None if
    unknown)."""

    domain: str
    not_after: int | None = None
    recorded_ms: int | None = None


class WelcomeRouting:
    """The hub's KeyPackageRef -> target provider table ([P] Fetch Key
    Material: "the hub provider needs to associate its KeyPackageRef with the
    target provider"), so a Welcome's ``new_member`` refs say which follower
    gets it. Small on purpose: record, look up, forget, prune.

    Bounded: the provider forgets a ref once a Welcome for it was routed
    ([P]: the associations "can be deleted after a Welcome message is
    forwarded"), :meth:`prune` drops refs whose KeyPackage expired, and
    :meth:`prune_recorded_before` drops refs recorded too long ago (a claim
    whose Welcome never came: the adder gave up, or lost the race).
    """

    def __init__(self) -> None:
        self._routes: dict[bytes, RouteEntry] = {}

    def record(self, ref: bytes, domain: str, not_after: int | None = None, recorded_ms: int | None = None) -> None:
        """Remember that ``ref`` belongs to a client of ``domain`` (the last
        record wins: a last-resort KeyPackage may be claimed again)."""
        self._routes = {**self._routes, bytes(ref): RouteEntry(domain, not_after, recorded_ms)}

    def domain_for(self, ref: bytes) -> str | None:
        entry = self._routes.get(bytes(ref))
        return entry.domain if entry is not None else None

    def forget(self, ref: bytes) -> None:
        if bytes(ref) in self._routes:
            self._routes = {r: e for r, e in self._routes.items() if r != bytes(ref)}

    def prune(self, now_s: int) -> int:
        """Drop entries whose KeyPackage expired (entries without a known
        ``not_after`` stay until forgotten); returns how many went."""
        kept = {r: e for r, e in self._routes.items() if e.not_after is None or e.not_after >= now_s}
        dropped = len(self._routes) - len(kept)
        if dropped:
            self._routes = kept
        return dropped

    def prune_recorded_before(self, cutoff_ms: int) -> int:
        """Drop entries recorded before ``cutoff_ms`` (entries without a
        recording time stay); returns how many went."""
        kept = {r: e for r, e in self._routes.items() if e.recorded_ms is None or e.recorded_ms >= cutoff_ms}
        dropped = len(self._routes) - len(kept)
        if dropped:
            self._routes = kept
        return dropped

    def __len__(self) -> int:
        return len(self._routes)

    def snapshot(self) -> dict[bytes, RouteEntry]:
        """A copy of the table, keys in sorted order."""
        return {r: self._routes[r] for r in sorted(self._routes)}

    def restore(self, snapshot: Mapping[bytes, RouteEntry]) -> None:
        self._routes = dict(snapshot)

    def digest(self) -> bytes:
        h = hashlib.sha256(b"mimisim WelcomeRouting v1")
        for ref in sorted(self._routes):
            e = self._routes[ref]
            na = b"-" if e.not_after is None else e.not_after.to_bytes(8, "big")
            rec = b"-" if e.recorded_ms is None else e.recorded_ms.to_bytes(8, "big", signed=True)
            h.update(_lp(ref) + _lp(e.domain.encode()) + _lp(na) + _lp(rec))
        return h.digest()
