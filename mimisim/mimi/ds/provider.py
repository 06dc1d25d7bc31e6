"""One provider of the ds profile: a DS that is hub of its own groups, guest DS
of its clients, and the store of their KeyPackages.

The same host interface as :class:`mimisim.mimi.provider.ProviderCore`
(:meth:`DSProviderCore.handle` takes a
:data:`~mimisim.mimi.transport.CoreInput` and returns an
:class:`~mimisim.mimi.transport.Outcome`; ``abandon_requests`` and
``lose_soft_state`` for crashes), so the simulator's nodes, crashes,
failover replay and outbox work unchanged. What it does
(docs/ds-choices.md C15-C19):

* from its own clients (provider-internal): KeyPackage uploads, group
  creation at the creator's own DS (C10), departures, and ``ds_request``:
  a DSRequest it serves itself when it is the DS addressed, or forwards to
  that DS over ``POST /dsRequest/{domain}`` and relays the DSResponse back
  (the draft's proxying through the client's own DS);
* ``POST /dsRequest``: DSRequests from other DSs for the groups it hosts
  (:class:`~mimisim.mimi.ds.hub.DSHub`) and for its clients' KeyPackages
  (C16);
* ``POST /dsFanout``: fanouts from hubs, checked by its
  :class:`~mimisim.mimi.ds.guest.DSGuest` and delivered to the recipients;
* the hub's own fanouts: one ``POST /dsFanout/{domain}`` per guest DS and
  message, retried until answered like MIMI's /notify (in order per group
  and guest unless pipelined), and its own clients served by the same guest
  check without a network hop.

Every accepted commit, proposal and application message is also a
``hub.accept`` row with the columns the MIMI hub writes (committer, epochs,
tree and participant-list fingerprints, role changes), so the same
invariants judge both profiles; ``ds.request`` and ``ds.fanout`` rows carry
what is particular to this one.

Sans-IO: time comes in ``now_ms``, randomness only at construction.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from mimisim import events as E
from mimisim.codec import DecodeError, EncodeError
from mimisim.mimi import policy as P
from mimisim.mimi.ds import wire as D
from mimisim.mimi.ds.endpoints import DSEndpoint
from mimisim.mimi.ds.guest import DSGuest
from mimisim.mimi.ds.hub import DSFailure, DSHub, HubResult, group_of
from mimisim.mimi.ds.member import room_of_group
from mimisim.mimi.ds.ratelimit import Limiter, Rate
from mimisim.mimi.hub_common import msg_id_of, participants_of, plist_fingerprint, role_changes
from mimisim.mimi.identity import UriError, domain_of, user_of_client
from mimisim.mimi.keystore import is_last_resort, parse_upload
from mimisim.mimi.transport import (
    Accepted,
    ClientMessage,
    ClientOp,
    ClientReply,
    CoreInput,
    CryptoOps,
    Deliver,
    FromClient,
    MimiRequest,
    MimiResponse,
    Outcome,
    OutcomeBuilder,
    PeerRequest,
    PeerResponse,
    SendRequest,
    reason_bytes,
)
from mimisim.mls.crypto import OpCounts, RandomSource, get_suite, metered
from mimisim.mls.observer import GroupObserver
from mimisim.mls.structs import KeyPackage, MLSMessage, ProposalType, SenderType, WireFormat


@dataclass(frozen=True)
class DSProviderConfig:
    """What a ds-profile provider is configured with (from the scenario)."""

    suite_id: int = 1
    #: rate limits of DSRequests at the hub: families "client", "ds", "group" (C14)
    hub_limits: dict[str, Rate] = field(default_factory=dict)
    #: rate limits of fanouts at the guest: families "ds", "group" (C14)
    guest_limits: dict[str, Rate] = field(default_factory=dict)
    #: False: one fanout at a time per group and guest DS, in hub order
    pipelining: bool = False


@dataclass
class _Pending:
    """A request this provider sent and waits for."""

    kind: str  # "client" (a relayed DSRequest) | "fanout"
    client: str = ""
    request_id: int = 0
    domain: str = ""


class _RoomView:
    """What :meth:`World.disagreements` reads of a hosted room."""

    def __init__(self, observer: GroupObserver) -> None:
        self.observer = observer

    @property
    def epoch(self) -> int:
        e: int = self.observer.epoch
        return e

    def participants(self) -> dict[str, int]:
        return dict(participants_of(self.observer.context.extensions))


def _client_of_leaf(obs: GroupObserver, leaf: int) -> str | None:
    node = obs.tree.leaf(leaf)
    if node is None or node.credential.identity is None:
        return None
    try:
        return bytes(node.credential.identity).decode()
    except UnicodeDecodeError:
        return None


def _user(client: str | None) -> str | None:
    if client is None:
        return None
    try:
        return user_of_client(client)
    except (UriError, ValueError):
        return None


class DSProviderCore:
    """A DS of the ds profile (see the module docstring)."""

    def __init__(self, domain: str, rng: RandomSource, config: DSProviderConfig, token_key: bytes) -> None:
        self.domain = domain
        self.config = config
        suite = get_suite(config.suite_id)
        self.suite = suite
        self.hub_signature_priv, self.hub_signature_pub = suite.generate_signature_key_pair(rng)
        #: the ds profile has no franking (the draft leaves it out of scope)
        self.franking_key: bytes | None = None
        self.hub = DSHub(
            domain, lambda cid: domain_of(cid.decode(errors="replace")), signature_priv=self.hub_signature_priv,
            limiter=Limiter(dict(config.hub_limits)) if config.hub_limits else None,
            app_components=P.hub_app_components(),
        )
        self.guest = DSGuest(domain, token_key,
                             limiter=Limiter(dict(config.guest_limits)) if config.guest_limits else None)
        #: client URI -> its unused KeyPackages (last-resort ones stay), oldest first
        self.key_packages: dict[str, list[KeyPackage]] = {}
        self._pending: dict[int, _Pending] = {}
        self._next_token = 1

    # ------------------------------------------------------------ registry

    def register_client(self, client_uri: str) -> D.FanoutAuthToken:
        """A client of this DS: from now on fanouts for it are accepted; its token (C6)."""
        cid = client_uri.encode()
        self.guest.add_client(cid)
        return self.guest.token(cid)

    def clients_with_key_packages(self, user_uri: str) -> list[str]:
        """The clients of ``user_uri`` that have KeyPackages here (C16's directory)."""
        return sorted(c for c, kps in self.key_packages.items() if kps and _user(c) == user_uri)

    @property
    def rooms(self) -> dict[str, _RoomView]:
        """Hosted rooms by URI (for the world's end-of-run agreement check)."""
        out = {}
        for gid, g in self.hub.groups.items():
            room = room_of_group(gid)
            if room is not None:
                out[room] = _RoomView(g.observer)
        return out

    # ------------------------------------------------------------ host interface

    def handle(self, inp: CoreInput) -> Outcome:
        """React to one input; the crypto operations it performed are counted."""
        counter = OpCounts()
        with metered(counter):
            if isinstance(inp, PeerRequest):
                out = self._request(inp.request, inp.peer, inp.now_ms)
            elif isinstance(inp, PeerResponse):
                out = self._response(inp.token, inp.response)
            elif isinstance(inp, FromClient):
                out = self._client(inp.message, inp.now_ms)
            else:
                raise TypeError(f"not a provider input: {inp!r}")
        return out.freeze(CryptoOps(counter.signatures, counter.hpke))

    def abandon_requests(self, *, keep_notify: bool) -> list[tuple[str, int]]:
        """A crash: forget what we wait for, except (``keep_notify``: a durable
        outbox) the fanouts; the clients whose relayed requests die."""
        lost: list[tuple[str, int]] = []
        for token in sorted(self._pending):
            p = self._pending[token]
            if p.kind == "fanout" and keep_notify:
                continue
            if p.kind == "client":
                lost.append((p.client, p.request_id))
            del self._pending[token]
        return sorted(lost)

    def lose_soft_state(self) -> None:
        """A volatile restart: the rate-limit buckets are memory only. Groups,
        kept past states, tokens, the replay window [C17] and KeyPackages are the
        DS's database and survive."""
        for lim in (self.hub.limiter, self.guest.limiter):
            if lim is not None:
                lim.buckets.clear()

    # ------------------------------------------------------------ own clients

    def _reply(self, msg: ClientMessage, status: int, body: bytes = b"", code: str = "") -> OutcomeBuilder:
        return OutcomeBuilder(actions=[ClientReply(msg.client, msg.request_id, status, body, code)])

    def _client(self, msg: ClientMessage, now_ms: int) -> OutcomeBuilder:
        try:
            if domain_of(msg.client) != self.domain:
                return self._reply(msg, 403, b"", "not our client")
        except (UriError, ValueError):
            return self._reply(msg, 400, b"not a client URI", "Bad Request")
        op = msg.op
        if op == ClientOp.upload_key_packages:
            try:
                kps = parse_upload(msg.body)
            except DecodeError as e:
                return self._reply(msg, 400, reason_bytes(f"malformed upload: {e}"), "Bad Request")
            if not kps or any(kp.leaf_node.credential.identity != msg.client.encode() for kp in kps):
                return self._reply(msg, 400, b"KeyPackages of another client", "Bad Request")
            self.key_packages.setdefault(msg.client, []).extend(kps)
            return self._reply(msg, 201, code="Created")
        if op == ClientOp.left_room:
            # The hub stops listing a client once the commit removing it is merged.
            return self._reply(msg, 201, code="Created")
        if op == ClientOp.create_room:
            try:
                gi = MLSMessage.decode(msg.body)
                if gi.wire_format != WireFormat.group_info:
                    raise DecodeError("not a GroupInfo")
                self.hub.create_group(gi.body, None, None)  # C10: the token of the creator's leaf
            except (DecodeError, EncodeError) as e:
                return self._reply(msg, 400, reason_bytes(str(e)), "Bad Request")
            except DSFailure as f:
                return self._reply(msg, 409 if f.reason == "group exists" else 400, reason_bytes(f.reason),
                                   D.DSErrorCode(f.code).name)
            return self._reply(msg, 201, code="Created")
        if op == ClientOp.ds_request:
            to = msg.target
            if to == self.domain:
                resp, out = self._serve(msg.body, self.domain, now_ms)
                out.actions.insert(0, ClientReply(msg.client, msg.request_id, resp.status, resp.body, resp.code))
                return out
            token = self._token(_Pending("client", msg.client, msg.request_id))
            req = MimiRequest(DSEndpoint.DS_REQUEST, to, self.domain, to, msg.body)
            return OutcomeBuilder(actions=[SendRequest(req, token)])
        return self._reply(msg, 400, b"not served by a ds-profile provider", "Bad Request")

    def _token(self, p: _Pending) -> int:
        t = self._next_token
        self._next_token += 1
        self._pending[t] = p
        return t

    # ------------------------------------------------------------ other DSs

    def _request(self, req: MimiRequest, peer: str, now_ms: int) -> OutcomeBuilder:
        if req.from_domain != peer:
            return OutcomeBuilder(MimiResponse(403, b"From does not match the TLS peer", "Forbidden"))
        if req.host != self.domain:
            return OutcomeBuilder(MimiResponse(421, b"misdirected", "Misdirected Request"))
        if req.endpoint == DSEndpoint.DS_REQUEST:
            resp, out = self._serve(req.body, peer, now_ms)
            out.response = resp
            return out
        if req.endpoint == DSEndpoint.DS_FANOUT:
            return self._fanout_in(req.body, peer, now_ms)
        return OutcomeBuilder(MimiResponse(404, b"not served by a ds-profile provider", "Not Found"))

    def _response(self, token: int, response: MimiResponse) -> OutcomeBuilder:
        p = self._pending.pop(token, None)
        if p is None:
            return OutcomeBuilder(events=[E.ProviderStaleResponse(token=token)])
        if p.kind == "fanout":
            if not DSEndpoint.DS_FANOUT.completes(response.status):
                self._pending[token] = p  # the host retries it
            return OutcomeBuilder()
        return OutcomeBuilder(actions=[ClientReply(p.client, p.request_id, response.status, response.body,
                                                   response.code)])

    # ------------------------------------------------------------ guest

    def _fanout_in(self, body: bytes, peer: str, now_ms: int) -> OutcomeBuilder:
        res = self.guest.handle_fanout(body, now_ms=now_ms, from_ds=peer)
        out = OutcomeBuilder()
        self._deliveries(res, peer, out, body)
        err = res.response.response_body.error
        status = 429 if err is not None and err.code == D.DSFanoutErrorCode.rate_limited else 200
        out.response = MimiResponse(status, res.response.encode(), "Ok" if res.ok else
                                    D.DSFanoutErrorCode(err.code).name if err is not None else "Error",
                                    retry_after_ms=err.retry_after_ms if err is not None else None)
        return out

    def _deliveries(self, res: Any, peer: str, out: OutcomeBuilder, body: bytes) -> None:
        err = res.response.response_body.error
        room, mid, n = "", "", 0
        try:
            fr = D.DSFanoutRequest.decode(body)
            mid = msg_id_of(fr.mls_message.encode())
            room = room_of_group(_group_id(fr.mls_message)) or ""
            n = len(fr.recipient_ids)
        except (DecodeError, EncodeError):
            pass
        out.events.append(E.DSFanoutChecked(
            room=room, msg_id=mid, peer=peer, status="Ok" if res.ok else D.DSFanoutErrorCode(err.code).name,
            recipients=n, refused_recipients=len(err.recipient_ids) if err is not None else None))
        for cid, msg in res.deliveries:
            raw = msg.encode()
            out.actions.append(Deliver(cid.decode(), room, raw, msg_id_of(raw)))

    # ------------------------------------------------------------ hub

    def _serve(self, body: bytes, from_ds: str, now_ms: int) -> tuple[MimiResponse, OutcomeBuilder]:
        """Answer one DSRequest (ours or another DS's); the response, the
        fanouts and the trace rows."""
        out = OutcomeBuilder()
        try:
            request = D.DSRequest.decode(body)
        except DecodeError as e:
            bad = D.DSResponse(D.DS10, D.DSResponseBody.of(D.DSError(D.DSErrorCode.malformed, None, str(e)[:200],
                                                                        None)))
            out.events.append(E.DSRequestServed(status="malformed", ds_response="Error", ds_error="malformed",
                                                from_ds=from_ds))
            return MimiResponse(200, bad.encode(), "malformed"), out
        rb = request.request_body
        kind = D.DSRequestType(rb.request_type).name
        gid = group_of(request)
        room = room_of_group(gid) if gid is not None else None
        before = self.hub.groups.get(gid) if gid is not None else None
        obs_before = before.observer if before is not None else None
        plist_before = dict(participants_of(obs_before.context.extensions)) if obs_before is not None else {}
        if isinstance(rb.body, D.KeyPackagesRequest):
            result = self._key_packages(rb.body)
        else:
            result = self.hub.handle(request, now_ms=now_ms, from_ds=from_ds)
        resp = result.response
        err = resp.error
        auth = request.authentication_data
        sender = auth.sender_index if auth.auth_type == D.DSAuthType.ClientSignature else None
        out.events.append(E.DSRequestServed(
            room=room or "", status=D.DSErrorCode(err.code).name if err is not None else
            D.DSResponseType(resp.response_body.response_type).name,
            ds_request=kind, ds_response=D.DSResponseType(resp.response_body.response_type).name,
            ds_error=D.DSErrorCode(err.code).name if err is not None else None, sender_index=sender,
            from_ds=from_ds, duplicate=result.duplicate or None, retained_bytes=self.hub.retained_bytes(),
            fanouts=len(result.fanout)))
        if room is not None:
            self._hub_rows(request, result, room, obs_before, plist_before, from_ds, out)
        self._send_fanouts(result, room or "", request, now_ms, out)
        status = 429 if err is not None and err.code == D.DSErrorCode.rate_limited else 200
        code = D.DSErrorCode(err.code).name if err is not None else D.DSResponseType(resp.response_body.response_type).name
        return MimiResponse(status, resp.encode(), code, retry_after_ms=err.retry_after_ms if err else None), out

    def _key_packages(self, body: D.KeyPackagesRequest) -> HubResult:
        """[C16] One KeyPackage for each listed client of ours that has one
        (a last-resort one is kept); ``no_key_package`` only if none has."""
        found: list[KeyPackage] = []
        for cid in body.client_identifiers:
            try:
                uri = cid.decode()
                mine = domain_of(uri) == self.domain
            except (UnicodeDecodeError, UriError, ValueError):
                mine = False
            if not mine:
                err = D.DSError(D.DSErrorCode.unknown_client, None, f"{cid!r} is not a client of {self.domain}", None)
                return HubResult(D.DSResponse(D.DS10, D.DSResponseBody.of(err)))
            kps = self.key_packages.get(uri, [])
            if kps:
                kp = kps[0]
                if not is_last_resort(kp) or len(kps) > 1:
                    kps.pop(0)
                found.append(kp)
        if not found:
            err = D.DSError(D.DSErrorCode.no_key_package, None, "no KeyPackage for these clients", None)
            return HubResult(D.DSResponse(D.DS10, D.DSResponseBody.of(err)))
        return HubResult(D.DSResponse(D.DS10, D.DSResponseBody.of(D.KeyPackages(found))))

    def _hub_rows(self, request: D.DSRequest, result: HubResult, room: str, before: GroupObserver | None,
                  plist_before: dict[str, int], from_ds: str, out: OutcomeBuilder) -> None:
        """``hub.accept`` / ``hub.reject`` rows with the MIMI hub's columns."""
        body = request.request_body.body
        err = result.response.error
        what = D.DSRequestType(request.request_body.request_type).name
        msgs: list[MLSMessage]
        if isinstance(body, D.SendMessageRequest):
            msgs, message = list(body.application_messages), "application"
        elif isinstance(body, D.ProposalRequest):
            msgs, message = list(body.proposals), "proposal"
        elif isinstance(body, D.CommitRequest):
            msgs, message = [u.commit for u in body.group_updates], "commit"
        elif isinstance(body, D.DeleteGroupRequest):
            msgs, message = [body.group_update.commit], "commit"
        else:
            return  # GroupInfo requests: no state change
        mid = msg_id_of(msgs[0].encode())
        epoch = int(msgs[0].body.epoch) if msgs[0].wire_format == WireFormat.private_message \
            else int(msgs[0].body.content.epoch)
        status = "accepted" if message == "application" else "success"
        if err is not None:
            out.events.append(E.HubReject(room=room, epoch=epoch, msg_id=mid, status=D.DSErrorCode(err.code).name,
                                          peer=from_ds, refused=what, reason=err.reason))
            return
        if result.duplicate:
            out.events.append(E.HubAccept(room=room, epoch=epoch, msg_id=mid, status=status, peer=from_ds,
                                          message=message, duplicate=True))
            return
        auth = request.authentication_data
        g = self.hub.groups.get(group_of(request) or b"")
        if message == "application":
            client = _client_of_leaf(before, auth.sender_index) if before is not None and auth.sender_index \
                is not None else None
            user = _user(client)
            for m in msgs:
                out.events.append(E.HubAccept(
                    room=room, epoch=epoch, msg_id=msg_id_of(m.encode()), status=status, peer=from_ds,
                    message=message, franked=False, sender=user, role=plist_before.get(user or "", 0)))
                out.accepted.append(Accepted(room, msg_id_of(m.encode()), epoch))
            return
        if message == "proposal":
            kinds = [_proposal_type(m) for m in msgs]
            out.events.append(E.HubAccept(room=room, epoch=epoch, msg_id=mid, status=status, peer=from_ds,
                                          message=message, proposal_types=tuple(kinds)))
            out.accepted.append(Accepted(room, mid, epoch))
            return
        assert before is not None
        commit = msgs[0]
        sender = commit.body.content.sender
        external = sender.sender_type == SenderType.new_member_commit
        obs_after = g.observer if g is not None else None
        if external and obs_after is not None:
            committer_leaf = self._external_leaf(before, obs_after)
            client = _client_of_leaf(obs_after, committer_leaf) if committer_leaf is not None else None
        else:
            client = _client_of_leaf(before, sender.leaf_index)
        old_keys = {i: leaf.signature_key for i, leaf in before.tree.members()}
        if obs_after is not None:
            new_keys = {i: leaf.signature_key for i, leaf in obs_after.tree.members()}
            plist_after = dict(participants_of(obs_after.context.extensions))
            tree_fp = obs_after.tree_hash.hex()[:8]
        else:  # delete group: nobody is left but the committer
            new_keys = {i: k for i, k in old_keys.items() if i == sender.leaf_index}
            plist_after = {}
            tree_fp = ""
        removed = sum(1 for i, k in old_keys.items() if new_keys.get(i) != k)
        added = sum(1 for i, k in new_keys.items() if old_keys.get(i) != k)
        user = _user(client)
        out.events.append(E.HubAccept(
            room=room, epoch=epoch, msg_id=mid, status=status, peer=from_ds, message="commit",
            committer=client, epoch_from=epoch, epoch_to=epoch + 1, added=added, removed=removed, external=external,
            tree_fp=tree_fp, plist_fp=plist_fingerprint(plist_after), role=plist_before.get(user or "", 0),
            role_changes=role_changes(plist_before, plist_after)))
        out.accepted.append(Accepted(room, mid, epoch))

    @staticmethod
    def _external_leaf(before: GroupObserver, after: GroupObserver) -> int | None:
        """The leaf an external commit's joiner took: one whose key is new."""
        old = {leaf.signature_key for _, leaf in before.tree.members()}
        new = [i for i, leaf in after.tree.members() if leaf.signature_key not in old]
        return new[0] if len(new) == 1 else None

    def _send_fanouts(self, result: HubResult, room: str, request: D.DSRequest, now_ms: int,
                      out: OutcomeBuilder) -> None:
        for f in result.fanout:
            raw = f.request.mls_message.encode()
            mid = msg_id_of(raw)
            body = f.request.encode()
            if f.domain == self.domain:
                res = self.guest.handle_fanout(body, now_ms=now_ms, from_ds=self.domain)
                self._deliveries(res, self.domain, out, body)
                continue
            token = self._token(_Pending("fanout", domain=f.domain))
            req = MimiRequest(DSEndpoint.DS_FANOUT, f.domain, self.domain, f.domain, body)
            key = "" if self.config.pipelining else f"{room}>{f.domain}"
            out.actions.append(SendRequest(req, token, ordered_key=key, msg_ids=(mid,), room=room))


def _proposal_type(m: MLSMessage) -> str:
    t = int(m.body.content.proposal.proposal_type)
    try:
        return ProposalType(t).name
    except ValueError:
        return str(t)


def _group_id(msg: MLSMessage) -> bytes:
    if msg.wire_format == WireFormat.public_message:
        return bytes(msg.body.content.group_id)
    if msg.wire_format == WireFormat.private_message:
        return bytes(msg.body.group_id)
    return b""


__all__ = ["DSProviderConfig", "DSProviderCore"]
