"""One MIMI provider as a sans-IO core: hub of the rooms it hosts, follower
in the others, publication point for its users' key material.

The core reacts to three inputs (see :mod:`mimisim.mimi.transport`): an
authenticated request from another provider, the response to a request it
sent, and a request from one of its own clients. Each returns an
:class:`~mimisim.mimi.transport.Outcome`. The host (SimPy world, test
dispatcher) carries out the actions; the core never waits, sleeps or reads
a clock.

What lives here is routing: which endpoint, whose room, which peer, which
local clients. The room logic is in :mod:`mimisim.mimi.hub`, key material
in :mod:`mimisim.mimi.keystore`, notify deduplication in
:mod:`mimisim.mimi.dedup`, consent in :mod:`mimisim.mimi.consent`, the
identifier directory in :mod:`mimisim.mimi.identifiers`.
"""

from __future__ import annotations

import hashlib
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from mimisim import events as E
from mimisim.codec import DecodeError, EncodeError
from mimisim.mimi import wire as W
from mimisim.mimi.consent import ConsentStore
from mimisim.mimi.dedup import NotifyDeduplicator
from mimisim.mimi.endpoints import Endpoint, default_directory
from mimisim.mimi.hub import FanoutItem, HubRoom, msg_id_of
from mimisim.mimi.identifiers import IdentifierDirectory
from mimisim.mimi.identity import UriError, client_of_identity, domain_of, hub_of_room, parse, user_of_client
from mimisim.mimi.keystore import ConsentCheck, KeyMaterialStore, WelcomeRouting
from mimisim.mimi.transport import (
    ClientMessage,
    ClientOp,
    ClientReply,
    CoreInput,
    CryptoOps,
    Deliver,
    FromClient,
    HttpReply,
    MimiRequest,
    MimiResponse,
    Outcome,
    OutcomeBuilder,
    PeerRequest,
    PeerResponse,
    SendRequest,
    bad_request,
    created,
    forbidden,
    not_found,
    reason_bytes,
)
from mimisim.mls.crypto import OpCounts, RandomSource, get_suite, metered
from mimisim.mls.structs import CredentialType

if TYPE_CHECKING:
    from mimisim.mimi.ds.endpoints import DSEndpoint

#: How many departed clients per room a provider remembers (oldest forgotten first).
DEPARTED_PER_ROOM = 256


@dataclass
class ProviderConfig:
    """Per-provider protocol options a scenario can vary."""

    suite_id: int = 1
    epoch_base_ms: int = 1_700_000_000_000
    dedup: str = "body_hash"  # none | body_hash | transaction_id
    dedup_max_entries: int = 4096
    dedup_max_age_ms: int = 600_000
    # Consent for /keyMaterial claims (ConsentStore): "open" = every requester
    # has consent unless the target revoked it; "explicit" = only after a grant.
    consent_mode: str = "open"
    # Refuse (noConsent) KeyMaterialRequests whose -06 signature does not verify
    # or whose requester credential is not a client of the requesting user.
    require_signed_key_requests: bool = True
    # The hub forgets a Welcome route this long after recording it (the claim's
    # Welcome never came); routes also go when their Welcome was routed.
    routing_max_age_ms: int = 86_400_000
    # How many recent fanout messages per room a provider keeps to replay to a
    # local client that joins by Welcome (0: none). The hub's notifies are
    # pipelined, so a commit of the new member's first epoch can reach its
    # provider before the Welcome; without the replay the client would only
    # recover by resync (docs/mimi-choices.md, "Provider").
    replay_window: int = 64
    # False (default): the hub's /notify requests of one room to one follower
    # travel one at a time, each after the previous one's 201, so the follower
    # processes the room's events in hub order ([P] Fanout: the hub sends "an
    # ordered list of events"). True: they are pipelined (sent as soon as
    # accepted); the follower may see them out of order and its clients
    # buffer or resync (docs/mimi-choices.md, "Fanout order").
    notify_pipelining: bool = False
    # How the hub's Welcomes carry the ratchet tree: "inline" (the tree in
    # the Welcome's RatchetTreeOption) or "hub" (distribution_service: the
    # joiner fetches it with /groupInfo). docs/mimi-choices.md, "Ratchet tree
    # options".
    welcome_tree: str = "inline"
    # When a leaving user's clients stop receiving application messages:
    # "commit" (when the commit removing them is accepted, [P6] s.5.3) or
    # "proposal" (as soon as the hub accepted the user's leave proposals):
    # the hub leaves them out of its fanout, and their own provider, which
    # forwarded the leave, stops delivering to them (docs/mimi-choices.md,
    # "Leaving users").
    leave_delivery: str = "commit"
    # Past epochs whose application messages a hub still accepts (0: only its
    # current epoch; a message racing a commit is refused ``epochTooOld`` and
    # re-encrypted by its sender). [P6] s.5.4 leaves the window to the hub
    # (docs/mimi-choices.md, "Application-message epoch window").
    app_epoch_window: int = 0
    # False: a provider whose clients are represented only by their
    # KeyPackages (the mls-cost study's silent members): it answers the hub's
    # notifies as usual but delivers nothing to its clients, which never
    # process the room (docs/studies.md, "MLS costs").
    deliver_locally: bool = True
    # True: before its first request to a peer, the provider fetches the
    # peer's directory (GET /.well-known/mimi-protocol-directory, [P6] s.5.1)
    # and holds its requests to that peer until it answers; the directory is
    # cached (once per peer unless the fetch fails). False (default): requests
    # go straight to the peer's domain with the endpoint table's paths, as
    # before (the studies' request counts stay comparable).
    directory_discovery: bool = False


@dataclass
class _Pending:
    """Context of a request this provider sent and awaits the answer of."""

    kind: str  # "client" | "proxy_key_material" | "notify"
    client: str = ""
    request_id: int = 0
    op: ClientOp | None = None
    room: str = ""
    inbound: int = 0
    target_domain: str = ""
    # An /update that is the client's user leaving the room (the client says
    # so in ClientMessage.target): on success the provider may stop delivering.
    leaving_user: str = ""


@dataclass
class ProviderCore:
    """The state of one provider. Construct with :meth:`new`."""

    domain: str
    rng: RandomSource
    config: ProviderConfig
    hub_signature_priv: bytes
    hub_signature_pub: bytes
    franking_key: bytes
    keystore: KeyMaterialStore
    routing: WelcomeRouting
    dedup: NotifyDeduplicator
    rooms: dict[str, HubRoom] = field(default_factory=dict)
    # Local clients that take part in each room (hub or follower), for delivery.
    local_members: dict[str, set[str]] = field(default_factory=dict)
    # An explicit consent callable overrides the consent store's check.
    consent: Callable[[str, str, str], Any] | None = None
    # Services :meth:`new` sets up; when None the endpoints answer 404.
    consent_store: ConsentStore | None = None
    identifier_directory: IdentifierDirectory | None = None
    _pending: dict[int, _Pending] = field(default_factory=dict)
    _next_token: int = 1
    _notify_seq: dict[str, int] = field(default_factory=dict)
    # Per room: the latest non-Welcome fanout bodies (msg id, body), oldest first.
    _recent: dict[str, deque[tuple[str, bytes]]] = field(default_factory=dict)
    # Per room: local clients that left -> the last epoch they were members of.
    # Application messages of that epoch or earlier still reach them (the hub
    # accepted them before the removal; their notify may arrive after it).
    _departed: dict[str, dict[str, int]] = field(default_factory=dict)
    # Local clients whose user's leave the hub accepted, per room (in order,
    # bounded like _departed): with leave_delivery "proposal" they get no more
    # application messages of the room (handshakes still: they must see the
    # commit that removes them).
    _leaving: dict[str, dict[str, int]] = field(default_factory=dict)  # client -> the hub's acceptance time
    # Peers' directories ([P6] s.5.1), by domain, and the requests held until
    # a peer's directory answers (directory_discovery).
    directories: dict[str, W.Directory] = field(default_factory=dict)
    _held: dict[str, list[SendRequest]] = field(default_factory=dict)
    _released: set[int] = field(default_factory=set)  # tokens sent without a directory (its fetch failed)

    @classmethod
    def new(cls, domain: str, rng: RandomSource, config: ProviderConfig | None = None) -> ProviderCore:
        config = config or ProviderConfig()
        suite = get_suite(config.suite_id)
        sig_priv, sig_pub = suite.generate_signature_key_pair(rng.fork("hub-signature") if hasattr(rng, "fork") else rng)
        franking_key = rng.random_bytes(32)
        if config.consent_mode not in ("open", "explicit"):
            raise ValueError(f"consent_mode must be open or explicit, not {config.consent_mode!r}")
        if config.app_epoch_window < 0:
            raise ValueError(f"app_epoch_window must be >= 0, not {config.app_epoch_window}")
        if config.leave_delivery not in ("commit", "proposal"):
            raise ValueError(f"leave_delivery must be commit or proposal, not {config.leave_delivery!r}")
        return cls(
            domain=domain,
            rng=rng,
            config=config,
            hub_signature_priv=sig_priv,
            hub_signature_pub=sig_pub,
            franking_key=franking_key,
            keystore=KeyMaterialStore(domain, require_signed_requests=config.require_signed_key_requests),
            routing=WelcomeRouting(),
            dedup=NotifyDeduplicator(config.dedup, config.dedup_max_entries, config.dedup_max_age_ms),
            consent_store=ConsentStore(domain, implicit=_open_consent if config.consent_mode == "open" else None),
            identifier_directory=IdentifierDirectory(domain),
        )

    # ------------------------------------------------------------ helpers

    def _token(self) -> int:
        t = self._next_token
        self._next_token += 1
        return t

    def _send(self, endpoint: Endpoint, target: str, to: str, body: bytes, pending: _Pending, **kw: Any) -> SendRequest:
        token = self._token()
        self._pending[token] = pending
        req = MimiRequest(endpoint, target, self.domain, to, body, kw.pop("txn_id", ""))
        return SendRequest(req, token, **kw)

    def is_hub_of(self, room: str) -> bool:
        return room in self.rooms

    def digest(self) -> bytes:
        """A hash of all protocol state (tests compare it around rejected requests)."""
        h = hashlib.sha256()
        h.update(self.keystore.digest())
        h.update(self.routing.digest())
        for room in sorted(self.rooms):
            h.update(room.encode() + self.rooms[room].digest())
        for room in sorted(self.local_members):
            h.update(room.encode() + repr(sorted(self.local_members[room])).encode())
        h.update(repr(self.dedup.state_size()).encode())
        for room in sorted(self._departed):
            h.update(room.encode() + repr(sorted(self._departed[room].items())).encode())
        for room in sorted(self._leaving):
            h.update(room.encode() + repr(list(self._leaving[room].items())).encode())
        for room in sorted(self._recent):
            h.update(room.encode() + repr([m for m, _ in self._recent[room]]).encode())
        if self.consent_store is not None:
            h.update(self.consent_store.digest())
        return h.digest()

    def consent_check(self) -> ConsentCheck | None:
        """The consent rule for /keyMaterial claims: the explicit ``consent``
        callable if set, else the consent store's :meth:`ConsentStore.check`."""
        if self.consent is not None:
            return self.consent
        return self.consent_store.check if self.consent_store is not None else None

    def _claim_local(self, kmr: W.KeyMaterialRequest, now_ms: int) -> MimiResponse:
        """Claim key material of one of our users (validated request)."""
        now_s = (self.config.epoch_base_ms + now_ms) // 1000
        if self.keystore.require_signed_requests and not _credential_names_requester(kmr):
            resp = W.KeyMaterialResponse(W.MLS10, W.KeyMaterialUserCode.noConsent, kmr.target_user, [])
        else:
            resp = self.keystore.claim(kmr, now_s, self.consent_check())
        return MimiResponse(200, resp.encode(), W.KeyMaterialUserCode(resp.user_status).name)

    # ------------------------------------------------------------ provider-to-provider

    def handle(self, inp: CoreInput) -> Outcome:
        """The one entry point: react to one input and return the frozen
        outcome, with the public-key operations the call performed
        (counted into a fresh counter of this call, see
        :func:`mimisim.mls.crypto.metered`)."""
        counter = OpCounts()
        with metered(counter):
            if isinstance(inp, PeerRequest):
                out = self._request(inp.request, inp.peer, inp.now_ms, inp.inbound)
            elif isinstance(inp, PeerResponse):
                out = self._response(inp.token, inp.response, inp.now_ms)
            elif isinstance(inp, FromClient):
                out = self._client(inp.message, inp.now_ms)
            else:
                raise TypeError(f"not a provider input: {inp!r}")
            if self.config.directory_discovery:
                self._hold_until_discovered(out)
        return out.freeze(CryptoOps(counter.signatures, counter.hpke))

    # ------------------------------------------------------------ directory ([P6] s.5.1)

    def directory(self) -> W.Directory:
        """What this provider serves at ``/.well-known/mimi-protocol-directory``:
        every endpoint under ``https://<domain>/v1``."""
        return default_directory(f"https://{self.domain}/v1")

    def _in_directory(self, req: MimiRequest, now_ms: int, inbound: int) -> OutcomeBuilder:
        return OutcomeBuilder(MimiResponse(200, self.directory().to_json().encode(), "OK"))

    def _hold_until_discovered(self, out: OutcomeBuilder) -> None:
        """Hold each request to a peer whose directory is not cached, and ask
        for the directory once (the first held request triggers the fetch)."""
        kept: list[Any] = []
        for a in out.actions:
            if not isinstance(a, SendRequest) or a.request.endpoint == Endpoint.DIRECTORY:
                kept.append(a)
                continue
            if a.token in self._released:
                self._released.discard(a.token)
                kept.append(a)
                continue
            peer = a.request.host
            if peer in self.directories:
                kept.append(a)
                continue
            if peer not in self._held:
                self._held[peer] = []
                kept.append(self._send(Endpoint.DIRECTORY, "", peer, b"", _Pending("directory", target_domain=peer)))
            self._held[peer].append(a)
        out.actions = kept

    def _directory_answered(self, peer: str, response: MimiResponse) -> OutcomeBuilder:
        """Cache the peer's directory if it is one this simulation can follow
        (every URL on the peer's own host; [P6] s.5.1 lets a provider point
        elsewhere, which the simulated network has no name for), then release
        the held requests. A failed or unusable answer releases them anyway
        (to the peer's domain by convention) and is asked again next time."""
        held = self._held.pop(peer, [])
        why = ""
        if response.status != 200:
            why = f"HTTP {response.status}"
        else:
            try:
                d = W.Directory.from_json(response.body)
            except ValueError as e:
                why = f"not a directory: {e}"
            else:
                hosts = {urlsplit(d.url_template(ep.spec.directory_key)).hostname for ep in Endpoint
                         if ep not in (Endpoint.DIRECTORY, Endpoint.PROXY_DOWNLOAD)}
                if hosts != {peer}:
                    why = f"endpoints on {sorted(h or '' for h in hosts)}, not {peer}"
                else:
                    self.directories[peer] = d
        if why:
            self._released.update(a.token for a in held)
        ev = E.ProviderDirectory(peer=peer, status="failed" if why else "cached", directory_error=why or None,
                                 held=len(held))
        return OutcomeBuilder(actions=list(held), events=[ev])

    def handle_request(self, req: MimiRequest, peer: str, now_ms: int, inbound: int = 0) -> Outcome:
        """An inbound request whose TLS peer is ``peer``. Never raises on bad input."""
        return self.handle(PeerRequest(req, peer, now_ms, inbound))

    def handle_response(self, token: int, response: MimiResponse, now_ms: int) -> Outcome:
        """The response to the request this core sent with ``token``."""
        return self.handle(PeerResponse(token, response, now_ms))

    def handle_client(self, msg: ClientMessage, now_ms: int) -> Outcome:
        """A request from one of this provider's clients (provider-internal protocol)."""
        return self.handle(FromClient(msg, now_ms))

    def _request(self, req: MimiRequest, peer: str, now_ms: int, inbound: int = 0) -> OutcomeBuilder:
        if req.from_domain != peer:
            return OutcomeBuilder(forbidden(f"From {req.from_domain} does not match the TLS peer {peer}"),
                                  events=[_reject(req, "impersonation", req.from_domain, "Forbidden", peer)])
        if req.host != self.domain:
            return OutcomeBuilder(MimiResponse(421, b"misdirected", "Misdirected Request"))
        try:
            handlers: dict[Endpoint | DSEndpoint, Callable[[MimiRequest, int, int], OutcomeBuilder]] = {
                Endpoint.KEY_MATERIAL: self._in_key_material,
                Endpoint.UPDATE: self._in_hub,
                Endpoint.SUBMIT_MESSAGE: self._in_hub,
                Endpoint.GROUP_INFO: self._in_hub,
                Endpoint.REPORT_ABUSE: self._in_hub,
                Endpoint.NOTIFY: self._in_notify,
                Endpoint.REQUEST_CONSENT: self._in_consent,
                Endpoint.UPDATE_CONSENT: self._in_consent,
                Endpoint.IDENTIFIER_QUERY: self._in_identifier_query,
                Endpoint.DIRECTORY: self._in_directory,
            }
            handler = handlers.get(req.endpoint)
            if handler is None:
                return OutcomeBuilder(not_found(f"endpoint {req.endpoint.name} not served"))
            return handler(req, now_ms, inbound)
        except (DecodeError, UriError) as e:
            return OutcomeBuilder(bad_request(str(e)), events=[_reject(req, "malformed", str(e), "Bad Request", peer)])

    def _in_hub(self, req: MimiRequest, now_ms: int, inbound: int) -> OutcomeBuilder:
        endpoint = req.endpoint
        assert isinstance(endpoint, Endpoint)  # the dispatch table routes only MIMI endpoints here
        room = self.rooms.get(req.target)
        if room is None:
            return OutcomeBuilder(self._no_such_room(endpoint, req.target, req.body))
        return self._hub_call(room, endpoint, req.body, req.from_domain, now_ms)

    def _no_such_room(self, endpoint: Endpoint, room: str, body: bytes) -> MimiResponse:
        """The answer for a room this provider does not host. The body must
        decode (else 400, raised as DecodeError); /groupInfo then answers the
        draft's ``noSuchRoom`` GroupInfoResponse, the other endpoints 404
        (their response codes have no "no such room")."""
        if endpoint == Endpoint.GROUP_INFO:
            W.GroupInfoRequest.decode(body)
            try:
                resp = W.GroupInfoResponse.failure(room, W.GroupInfoCode.noSuchRoom).encode()
            except (EncodeError, ValueError):
                return not_found(f"no room {room!r} at {self.domain}")
            return MimiResponse(200, resp, W.GroupInfoCode.noSuchRoom.name)
        return not_found(f"no room {room} at {self.domain}")

    def _hub_call(self, room: HubRoom, endpoint: Endpoint, body: bytes, from_domain: str, now_ms: int) -> OutcomeBuilder:
        if endpoint == Endpoint.UPDATE:
            res = room.handle_update(body, from_domain, now_ms, self._route_welcome)
        elif endpoint == Endpoint.SUBMIT_MESSAGE:
            res = room.handle_submit(body, from_domain, now_ms)
        elif endpoint == Endpoint.GROUP_INFO:
            res = room.handle_group_info(body, from_domain, now_ms)
        else:
            res = room.handle_report_abuse(body, from_domain, now_ms)
        out = OutcomeBuilder(res.response, events=list(res.events), accepted=list(res.accepted))
        out.extend(self._fanout(room.room_uri, res.fanout))
        if endpoint == Endpoint.UPDATE and res.response.status == 200 and res.response.code == "success":
            self._forget_routed_welcomes(res.fanout)
        return out

    def _forget_routed_welcomes(self, items: Sequence[FanoutItem]) -> None:
        """A Welcome was routed: its KeyPackageRefs are spent ([P]: the
        association "can be deleted after a Welcome message is forwarded")."""
        for it in items:
            if it.kind != "welcome":
                continue
            fm = W.FanoutMessage.decode(it.body)
            for s in fm.message.body.secrets:
                self.routing.forget(s.new_member)

    def _route_welcome(self, ref: bytes) -> str | None:
        if self.keystore.client_for_ref(ref) is not None:
            return self.domain
        return self.routing.domain_for(ref)

    def _fanout(self, room: str, items: Sequence[FanoutItem]) -> OutcomeBuilder:
        """Turn the hub's fanout plan into local deliveries and ordered,
        retried /notify requests (consecutive items for one follower share a
        request)."""
        out = OutcomeBuilder()
        by_domain: dict[str, list] = {}
        order: list[str] = []
        for it in items:
            if it.domain not in by_domain:
                by_domain[it.domain] = []
                order.append(it.domain)
            by_domain[it.domain].append(it)
        for domain in order:
            group = by_domain[domain]
            if domain == self.domain:
                for it in group:
                    out.extend(self._deliver_local(room, it.body))
                    if it.kind == "commit":
                        self._drop_removed_local_members(room)
                continue
            seq_key = f"{room}>{domain}"
            seq = self._notify_seq.get(seq_key, 0)
            self._notify_seq[seq_key] = seq + 1
            body = b"".join(it.body for it in group)
            out.actions.append(
                self._send(
                    Endpoint.NOTIFY, room, domain, body, _Pending("notify", room=room, target_domain=domain),
                    ordered_key="" if self.config.notify_pipelining else seq_key, txn_id=f"{seq_key}#{seq}",
                    msg_ids=tuple(it.msg_id for it in group),
                )
            )
        return out

    def _drop_removed_local_members(self, room: str) -> None:
        """At the hub, after a commit reached the local clients: those it
        removed get nothing more of this room. (A follower cannot tell from a
        /notify without the group's tree; its clients say ``left_room``.)"""
        hub_room = self.rooms.get(room)
        local = self.local_members.get(room)
        if hub_room is None or not local:
            return
        members = set(hub_room.members())
        kept = {c for c in local if c in members}
        if kept != local:
            self.local_members[room] = kept

    def _deliver_local(self, room: str, body: bytes) -> OutcomeBuilder:
        """Deliver one FanoutMessage to the local clients it concerns."""
        out = OutcomeBuilder()
        if not self.config.deliver_locally:
            return out
        fm = W.FanoutMessage.decode(body)
        mid = msg_id_of(fm.message.encode())
        if fm.kind == W.MessageKind.welcome:
            welcome = fm.message.body
            targets = []
            for s in welcome.secrets:
                client = self.keystore.client_for_ref(s.new_member)
                if client is not None and client not in targets:
                    targets.append(client)
            members = self.local_members.setdefault(room, set())
            for client in targets:
                self._leaving.get(room, {}).pop(client, None)  # joined again
                new = client not in members
                members.add(client)
                out.actions.append(Deliver(client, room, body, mid))
                if new:
                    # What arrived before the Welcome may belong to the new
                    # member's epochs; older messages it drops as stale.
                    for rmid, rbody in self._recent.get(room, ()):
                        out.actions.append(Deliver(client, room, rbody, rmid))
            for s in welcome.secrets:  # delivered: the refs are spent
                if self.keystore.client_for_ref(s.new_member) in targets:
                    self.keystore.forget_ref(s.new_member)
            return out
        if self.config.replay_window > 0:
            recent = self._recent.setdefault(room, deque(maxlen=self.config.replay_window))
            recent.append((mid, body))
        # Application messages the hub accepted after a local client's leave
        # (leave_delivery "proposal"); earlier ones still go to it.
        skip: set[str] = set()
        if fm.kind == W.MessageKind.application:
            skip = {c for c, ts in self._leaving.get(room, {}).items() if fm.timestamp > ts}
        for client in sorted(self.local_members.get(room, ())):
            if client not in skip:
                out.actions.append(Deliver(client, room, body, mid))
        departed = self._departed.get(room)
        if departed and fm.kind == W.MessageKind.application and hasattr(fm.message.body, "epoch"):
            ep = fm.message.body.epoch
            for client in sorted(departed):
                if ep <= departed[client] and client not in self.local_members.get(room, ()) and client not in skip:
                    out.actions.append(Deliver(client, room, body, mid))
        return out

    def _in_notify(self, req: MimiRequest, now_ms: int, inbound: int) -> OutcomeBuilder:
        room = req.target
        if hub_of_room(room) != req.from_domain:
            return OutcomeBuilder(forbidden(f"{req.from_domain} is not the hub of {room}"),
                                  events=[_reject(req, "not_hub", "", "Forbidden", req.from_domain, room)])
        messages = W.decode_fanout_messages(req.body)  # DecodeError -> 400 before any state change
        key = req.txn_id.encode() if self.config.dedup == "transaction_id" else req.body
        dup = self.dedup.seen(key, now_ms, origin=req.from_domain)
        # The hub's logical notify id and the window's size after this request, for the
        # notify-dedup study.
        entries, held = self.dedup.state_size()
        method, path = _endpoint(req)
        cls = E.NotifyDedup if dup else E.NotifyAccept
        ev = cls(room=room, peer=req.from_domain, status="Created", method=method, path=path,
                 txn_id=req.txn_id or None, window_entries=entries, window_bytes=held)
        if dup:
            return OutcomeBuilder(created(), events=[ev])
        out = OutcomeBuilder(created(), events=[ev])
        for fm in messages:
            out.extend(self._deliver_local(room, fm.encode()))
        return out

    def _in_key_material(self, req: MimiRequest, now_ms: int, inbound: int) -> OutcomeBuilder:
        other = W.foreign_protocol_key_material_request(req.body)
        if other is not None:
            # [P6] s.5.2: a protocol this provider does not speak is the
            # user code incompatibleProtocol, not a malformed body (the
            # request's protocol-specific part is not read).
            protocol, target_user = other
            if target_user != req.target:
                return OutcomeBuilder(bad_request(f"the body targets {target_user!r}, the path {req.target!r}"))
            resp = W.KeyMaterialResponse(W.MLS10, W.KeyMaterialUserCode.incompatibleProtocol, W.IdentifierUri(target_user), [])
            return OutcomeBuilder(MimiResponse(200, resp.encode(), "incompatibleProtocol"))
        kmr = W.KeyMaterialRequest.decode(req.body)
        target = req.target
        if kmr.target_user.uri != target:
            return OutcomeBuilder(bad_request(f"the body targets {kmr.target_user.uri!r}, the path {target!r}"))
        # The requesting user must be one of the sender's users, unless the
        # sender is the hub of the room the request names (it proxies claims).
        requester, room = kmr.requesting_user.uri, kmr.room_id.uri
        if domain_of(requester) != req.from_domain and not (room and hub_of_room(room) == req.from_domain):
            return OutcomeBuilder(forbidden(f"{req.from_domain} cannot claim key material for {requester}"),
                                  events=[_reject(req, "foreign_user", requester, "Forbidden", req.from_domain)])
        if domain_of(target) == self.domain:
            return OutcomeBuilder(self._claim_local(kmr, now_ms))
        # A hub proxies claims for its rooms (draft figure "Bob Fetches
        # KeyPackages for Cathy's Clients") and records where the refs go.
        if not room or room not in self.rooms:
            return OutcomeBuilder(forbidden(f"{self.domain} does not proxy key material outside its rooms"))
        send = self._send(
            Endpoint.KEY_MATERIAL, target, domain_of(target), req.body,
            _Pending("proxy_key_material", inbound=inbound, room=room, target_domain=domain_of(target)),
        )
        return OutcomeBuilder(None, [send])

    def _in_consent(self, req: MimiRequest, now_ms: int, inbound: int) -> OutcomeBuilder:
        store = self.consent_store
        if store is None:
            return OutcomeBuilder(not_found("consent not served"))
        return OutcomeBuilder.of(store.handle(req, now_ms))

    def _in_identifier_query(self, req: MimiRequest, now_ms: int, inbound: int) -> OutcomeBuilder:
        directory = self.identifier_directory
        if directory is None:
            return OutcomeBuilder(not_found("identifier query not served"))
        return OutcomeBuilder.of(directory.handle(req, now_ms))

    # ------------------------------------------------------------ responses to our requests

    def _response(self, token: int, response: MimiResponse, now_ms: int) -> OutcomeBuilder:
        ctx = self._pending.pop(token, None)
        if ctx is None:
            return OutcomeBuilder(events=[E.ProviderStaleResponse(token=token)])
        if ctx.kind == "notify":
            if not Endpoint.NOTIFY.completes(response.status):
                # Not done: the host retries the same request; keep waiting.
                self._pending[token] = ctx
            return OutcomeBuilder()
        if ctx.kind == "directory":
            return self._directory_answered(ctx.target_domain, response)
        if ctx.kind == "proxy_key_material":
            self._record_claimed(response, ctx.target_domain, now_ms)
            return OutcomeBuilder(actions=[HttpReply(ctx.inbound, response)])
        # A client's request forwarded to another provider.
        if ctx.op == ClientOp.fetch_key_material:
            if ctx.room in self.rooms:
                self._record_claimed(response, ctx.target_domain, now_ms)
        if ctx.op == ClientOp.update and response.status == 200 and ctx.room:
            self._note_member_after_update(ctx.client, ctx.room, response.body, ctx.leaving_user)
        reply = ClientReply(ctx.client, ctx.request_id, response.status, response.body, response.code)
        return OutcomeBuilder(actions=[reply])

    def _record_claimed(self, response: MimiResponse, domain: str, now_ms: int) -> None:
        """The hub remembers which provider each claimed KeyPackage came from
        (until its Welcome was routed, the KeyPackage expired, or
        ``routing_max_age_ms`` passed)."""
        if response.status != 200:
            return
        try:
            kmr = W.KeyMaterialResponse.decode(response.body)
        except DecodeError:
            return
        suite = get_suite(self.config.suite_id)
        self.routing.prune((self.config.epoch_base_ms + now_ms) // 1000)
        self.routing.prune_recorded_before(now_ms - self.config.routing_max_age_ms)
        for c in kmr.clients:
            if c.key_package is not None:
                lifetime = c.key_package.leaf_node.lifetime
                not_after = lifetime.not_after if lifetime is not None else None
                self.routing.record(suite.make_key_package_ref(c.key_package.encode()), domain, not_after, now_ms)

    def _note_member_after_update(self, client: str, room: str, body: bytes, leaving_user: str = "") -> None:
        """An /update of ``client`` succeeded: it is a member. If the update
        was its user leaving (``leaving_user``) and ``leave_delivery`` is
        ``"proposal"``, the user's local clients in the room stop getting
        application messages; any other successful update (a rejoin) lifts that."""
        try:
            resp = W.UpdateRoomResponse.decode(body)
        except DecodeError:
            return
        if resp.response_code != W.UpdateResponseCode.success:
            return
        self.local_members.setdefault(room, set()).add(client)
        leaving = self._leaving.setdefault(room, {})
        if not leaving_user or leaving_user != self.user_of(client):
            leaving.pop(client, None)
            return
        if self.config.leave_delivery != "proposal":
            return
        ts = resp.accepted_timestamp if resp.accepted_timestamp is not None else 0
        for c in sorted(self.local_members.get(room, ())):
            if self.user_of(c) == leaving_user:
                leaving.setdefault(c, ts)  # a re-proposal keeps the first acceptance
        while len(leaving) > DEPARTED_PER_ROOM:
            del leaving[next(iter(leaving))]

    # ------------------------------------------------------------ own clients

    def _client(self, msg: ClientMessage, now_ms: int) -> OutcomeBuilder:
        try:
            if domain_of(msg.client) != self.domain:
                return OutcomeBuilder(actions=[ClientReply(msg.client, msg.request_id, 403, b"", "not our client")])
            return self._client_op(msg, now_ms)
        except (DecodeError, UriError, ValueError) as e:
            reply = ClientReply(msg.client, msg.request_id, 400, reason_bytes(str(e)), "Bad Request")
            return OutcomeBuilder(actions=[reply])

    def _reply(self, msg: ClientMessage, status: int, body: bytes = b"", code: str = "") -> OutcomeBuilder:
        return OutcomeBuilder(actions=[ClientReply(msg.client, msg.request_id, status, body, code)])

    def _client_op(self, msg: ClientMessage, now_ms: int) -> OutcomeBuilder:
        op = msg.op
        if op == ClientOp.upload_key_packages:
            err = self.keystore.upload(msg.client, msg.body, (self.config.epoch_base_ms + now_ms) // 1000)
            return self._reply(msg, 400 if err else 201, (err or "").encode(), err or "Created")
        if op == ClientOp.left_room:
            parse(msg.room)  # a room id that is not a MIMI URI: 400, nothing recorded
            self.local_members.get(msg.room, set()).discard(msg.client)
            if len(msg.body) == 8:
                dep = self._departed.setdefault(msg.room, {})
                dep[msg.client] = int.from_bytes(msg.body, "big")
                while len(dep) > DEPARTED_PER_ROOM:
                    del dep[next(iter(dep))]
            return self._reply(msg, 201, code="Created")
        if op == ClientOp.create_room:
            if hub_of_room(msg.room) != self.domain:
                return self._reply(msg, 403, b"rooms are created at their hub", "Forbidden")
            if msg.room in self.rooms:
                return self._reply(msg, 409, b"room exists", "Conflict")
            try:
                room = HubRoom.create(
                    msg.room, msg.body, None, msg.client, hub_domain=self.domain,
                    hub_signature_priv=self.hub_signature_priv, hub_franking_key=self.franking_key,
                    rng=self.rng, epoch_base_ms=self.config.epoch_base_ms, now_ms=now_ms,
                    welcome_tree=self.config.welcome_tree, max_past_epochs=self.config.app_epoch_window,
                )
                room.leave_delivery = self.config.leave_delivery
            except ValueError as e:
                return self._reply(msg, 400, reason_bytes(str(e)), "Bad Request")
            self.rooms[msg.room] = room
            self.local_members.setdefault(msg.room, set()).add(msg.client)
            return self._reply(msg, 201, code="Created")
        if op == ClientOp.fetch_key_material:
            target = msg.target
            if domain_of(target) == self.domain:
                kmr = W.KeyMaterialRequest.decode(msg.body)
                r = self._claim_local(kmr, now_ms)
                return self._reply(msg, r.status, r.body, r.code)
            # Non-hub requesters go through the room's hub; a hub (or a
            # request outside any room) asks the target's provider directly.
            to = domain_of(target)
            if msg.room and hub_of_room(msg.room) != self.domain:
                to = hub_of_room(msg.room)
            send = self._send(
                Endpoint.KEY_MATERIAL, target, to, msg.body,
                _Pending("client", msg.client, msg.request_id, op, msg.room, target_domain=domain_of(target)),
            )
            return OutcomeBuilder(actions=[send])
        endpoint = {
            ClientOp.update: Endpoint.UPDATE,
            ClientOp.submit_message: Endpoint.SUBMIT_MESSAGE,
            ClientOp.fetch_group_info: Endpoint.GROUP_INFO,
            ClientOp.report_abuse: Endpoint.REPORT_ABUSE,
        }.get(op)
        if endpoint is not None:
            parse(msg.room)
            hub_room = self.rooms.get(msg.room)
            if hub_room is not None:
                out = self._hub_call(hub_room, endpoint, msg.body, self.domain, now_ms)
                resp = out.response
                assert resp is not None
                if op == ClientOp.update and resp.status == 200:
                    self._note_member_after_update(msg.client, msg.room, resp.body, msg.target)
                out.response = None
                out.actions.insert(0, ClientReply(msg.client, msg.request_id, resp.status, resp.body, resp.code))
                return out
            hub = hub_of_room(msg.room)
            if hub == self.domain:  # our room id, but no such room: answer here
                r = self._no_such_room(endpoint, msg.room, msg.body)
                return self._reply(msg, r.status, r.body, r.code)
            leaving_user = msg.target if op == ClientOp.update else ""
            send = self._send(endpoint, msg.room, hub, msg.body,
                              _Pending("client", msg.client, msg.request_id, op, msg.room, leaving_user=leaving_user))
            return OutcomeBuilder(actions=[send])
        if op in (ClientOp.request_consent, ClientOp.update_consent):
            return self._client_consent(msg, now_ms)
        if op == ClientOp.identifier_query:
            W.IdentifierRequest.decode(msg.body)
            send = self._send(Endpoint.IDENTIFIER_QUERY, msg.target, msg.target, msg.body,
                              _Pending("client", msg.client, msg.request_id, op))
            return OutcomeBuilder(actions=[send])
        return self._reply(msg, 400, b"unknown operation", "Bad Request")

    # ------------------------------------------------------------ host lifecycle

    def abandon_requests(self, *, keep_notify: bool) -> list[tuple[str, int]]:
        """The host lost its connections (a crash): forget every request this
        provider was waiting on, except (with ``keep_notify``) its ``/notify``
        fanout, which a durable outbox resends after a restart. Returns the
        ``(client, request_id)`` of the clients' requests that will now never
        be answered, sorted, so the host can tell those clients."""
        lost: list[tuple[str, int]] = []
        for token in sorted(self._pending):
            ctx = self._pending[token]
            if ctx.kind == "notify" and keep_notify:
                continue
            if ctx.kind == "client":
                lost.append((ctx.client, ctx.request_id))
            del self._pending[token]
        return sorted(lost)

    def lose_soft_state(self) -> None:
        """A volatile restart: what lives only in memory is gone. That is the
        notify dedup window (a follower then processes a retried notify
        again). Rooms, key material and routing are the provider's database
        and survive (see docs/simulator.md, "Crashes")."""
        c = self.config
        self.dedup = NotifyDeduplicator(c.dedup, c.dedup_max_entries, c.dedup_max_age_ms)

    def _client_consent(self, msg: ClientMessage, now_ms: int) -> OutcomeBuilder:
        """A local user's consent operation: ``request_consent`` (request or
        cancel, by the requester) or ``update_consent`` (grant or revoke, by
        the target). Recorded in our consent store first (a grant is what
        lets the requester claim our user's key material), then sent to the
        other user's provider (``/requestConsent/{targetDomain}`` or
        ``/updateConsent/{requesterDomain}``); no request when both users are
        ours."""
        store = self.consent_store
        if store is None:
            return self._reply(msg, 404, b"consent not served", "Not Found")
        requesting = msg.op == ClientOp.request_consent
        entry = (W.RequestConsentBody if requesting else W.UpdateConsentBody).decode(msg.body)
        op = W.ConsentOperation(entry.consent_operation)
        if (op in (W.ConsentOperation.request, W.ConsentOperation.cancel)) != requesting:
            return self._reply(msg, 400, f"{op.name} does not belong in {msg.op.value}".encode(), "Bad Request")
        requester, target = entry.requester_uri.uri, entry.target_uri.uri
        room = entry.room_id.uri if entry.room_id is not None else None
        local = requester if requesting else target
        if local != user_of_client(msg.client):
            return self._reply(msg, 403, f"{msg.client} cannot act for {local}".encode(), "Forbidden")
        action = {
            W.ConsentOperation.request: store.request,
            W.ConsentOperation.cancel: store.cancel,
            W.ConsentOperation.revoke: store.revoke,
        }.get(op)
        if action is not None:
            res = action(requester, target, room, now_ms)
        else:
            res = store.grant(requester, target, room, now_ms, entry.client_key_packages or ())
        if not res.ok or res.entry is None:
            return self._reply(msg, res.status, reason_bytes(res.reason), "Refused")
        other = domain_of(target if requesting else requester)
        if other == self.domain:
            return self._reply(msg, 201, code="Created")
        endpoint = Endpoint.REQUEST_CONSENT if requesting else Endpoint.UPDATE_CONSENT
        send = self._send(endpoint, other, other, res.entry.encode(),
                          _Pending("client", msg.client, msg.request_id, msg.op))
        return OutcomeBuilder(actions=[send])

    # ------------------------------------------------------------ misc

    def user_of(self, client: str) -> str:
        return user_of_client(client)


def _endpoint(req: MimiRequest) -> tuple[str, str]:
    """``(method, path)`` of a request as its ``detail`` (``METHOD /path``) writes them."""
    method, _, path = req.detail.partition(" ")
    return method, path


def _reject(req: MimiRequest, reason: str, note: str, status: str, peer: str, room: str = "") -> E.ProviderReject:
    """A ``provider.reject`` row: ``reason`` is impersonation | malformed | not_hub | foreign_user."""
    method, path = _endpoint(req)
    return E.ProviderReject(room=room, status=status, peer=peer, method=method, path=path, reason=reason, note=note)


def _open_consent(requester: str, target: str, room: str | None) -> bool:
    """``consent_mode="open"``: consent unless the target revoked it."""
    return True


def _credential_names_requester(kmr: W.KeyMaterialRequest) -> bool:
    """The -06 ``requesterCredential`` must be a basic credential naming a
    client of ``requestingUser`` (else the signature proves nothing about
    who asks)."""
    cred = kmr.requester_credential
    if cred.credential_type != CredentialType.basic or cred.identity is None:
        return False
    client = client_of_identity(cred.identity)
    return client is not None and user_of_client(client) == kmr.requesting_user.uri
