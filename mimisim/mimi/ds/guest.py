"""The guest DS's side of the DS profile's server-to-server part.

[DS] Server to server requests: a guest DS receiving a DSFanoutRequest checks
that the protocol version is compatible with its configuration, that every
recipient is one of its clients, and that every FanoutAuthToken is valid for
its recipient; then it stores and forwards the MLS message to those clients and
answers a DSFanoutResponse. The hub is authenticated by the transport (C8).

All or nothing: a request with any bad recipient or token delivers to nobody,
and the error lists the offending recipients, so a hub that lost track of a
client (or an attacker that guessed an id) learns nothing more by retrying.

Sans-IO: the owner passes the DS secret ``token_key`` (C6) and the set of its
clients, and performs the deliveries the result lists.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from mimisim.codec import DecodeError
from mimisim.mimi.ds.ratelimit import Limiter
from mimisim.mimi.ds.tokens import make_token, token_generation
from mimisim.mimi.ds.wire import (
    DS10,
    SUPPORTED_VERSIONS,
    DSFanoutError,
    DSFanoutErrorCode,
    DSFanoutRequest,
    DSFanoutResponse,
    DSFanoutResponseBody,
    FanoutAuthToken,
)
from mimisim.mls.structs import MLSMessage, WireFormat


@dataclass(frozen=True)
class GuestResult:
    """The answer to the hub and the deliveries to make (client id, message)."""

    response: DSFanoutResponse
    deliveries: tuple[tuple[bytes, MLSMessage], ...] = ()

    @property
    def ok(self) -> bool:
        return self.response.ok


@dataclass
class DSGuest:
    """A guest DS: issues its clients' FanoutAuthTokens and checks fanouts."""

    domain: str
    token_key: bytes
    clients: set[bytes] = field(default_factory=set)
    versions: frozenset[int] = SUPPORTED_VERSIONS
    #: per client, the lowest token generation still accepted (rotation revokes)
    min_generation: dict[bytes, int] = field(default_factory=dict)
    #: fanout rate limits per sending "ds" and per "group"; None: unlimited
    limiter: Limiter | None = None

    def add_client(self, client_id: bytes) -> None:
        self.clients.add(client_id)

    def token(self, client_id: bytes) -> FanoutAuthToken:
        """The client's current token (what goes in its FanoutAuth extension)."""
        if client_id not in self.clients:
            raise KeyError(f"{client_id!r} is not a client of {self.domain}")
        return make_token(self.token_key, client_id, self.min_generation.get(client_id, 0))

    def rotate(self, client_id: bytes) -> FanoutAuthToken:
        """A new token for the client; every older one stops being accepted."""
        self.min_generation[client_id] = self.min_generation.get(client_id, 0) + 1
        return self.token(client_id)

    def _valid(self, client_id: bytes, token: FanoutAuthToken) -> bool:
        gen = token_generation(self.token_key, client_id, token)
        return gen is not None and gen >= self.min_generation.get(client_id, 0)

    def _error(self, code: DSFanoutErrorCode, ids: Iterable[bytes], reason: str) -> GuestResult:
        err = DSFanoutError(code, None, list(ids), reason)
        return GuestResult(DSFanoutResponse(DS10, DSFanoutResponseBody.fail(err)))

    def handle_fanout(
        self, request: DSFanoutRequest | bytes, *, now_ms: float | None = None, from_ds: str | None = None
    ) -> GuestResult:
        """Check a fanout from a hub (``from_ds``, authenticated by the transport, C8)
        and say whom to deliver to."""
        if isinstance(request, bytes):
            try:
                request = DSFanoutRequest.decode(request)
            except DecodeError as e:
                return self._error(DSFanoutErrorCode.malformed, (), str(e))
        if self.limiter is not None:
            if now_ms is None:
                raise ValueError("a rate-limited guest needs now_ms")
            keys: list[tuple[str, object]] = [] if from_ds is None else [("ds", from_ds)]
            gid = _group_id(request.mls_message)
            if gid is not None:
                keys.append(("group", gid))
            wait = self.limiter.admit(keys, now_ms)
            if wait:
                err = DSFanoutError(DSFanoutErrorCode.rate_limited, wait, [], "rate limited")
                return GuestResult(DSFanoutResponse(DS10, DSFanoutResponseBody.fail(err)))
        if request.protocol_version not in self.versions:
            return self._error(
                DSFanoutErrorCode.unsupported_version, (), f"version {request.protocol_version} not supported"
            )
        foreign = [r for r in request.recipient_ids if r not in self.clients]
        if foreign:
            return self._error(DSFanoutErrorCode.unknown_recipient, foreign, f"not clients of {self.domain}")
        bad = [r for r, t in zip(request.recipient_ids, request.fanout_auth_tokens, strict=True) if not self._valid(r, t)]
        if bad:
            return self._error(DSFanoutErrorCode.invalid_token, bad, "invalid or revoked FanoutAuthToken")
        msg = request.mls_message
        return GuestResult(
            DSFanoutResponse(DS10, DSFanoutResponseBody.ok()),
            tuple((r, msg) for r in request.recipient_ids),
        )


def _group_id(msg: MLSMessage) -> bytes | None:
    """The group of a fanned-out message (a Welcome names none in the clear)."""
    if msg.wire_format == WireFormat.public_message:
        gid: bytes = msg.body.content.group_id
        return gid
    if msg.wire_format == WireFormat.private_message:
        pgid: bytes = msg.body.group_id
        return pgid
    return None
