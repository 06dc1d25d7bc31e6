"""FanoutAuthTokens ([DS] Enqueue authorization; scheme: docs/ds-choices.md C6).

The recipient's own DS issues the token and is the only party that checks it,
so a MAC under a DS secret is enough: no public-key operation per recipient
and per fanout. ``token = generation (uint32) || HMAC-SHA256(K, label ||
client_id<V> || generation)``. Rotation raises a client's generation; tokens
below the client's minimum generation are revoked.
"""

from __future__ import annotations

import hashlib
import hmac

from mimisim.codec import encode_opaque
from mimisim.mimi.ds.wire import FanoutAuthToken

_LABEL = b"mimi-ds fanout token"
TOKEN_LEN = 4 + 32


def make_token(key: bytes, client_id: bytes, generation: int) -> FanoutAuthToken:
    """The token of ``client_id`` at ``generation`` under the DS secret ``key``."""
    gen = generation.to_bytes(4, "big")
    mac = hmac.new(key, _LABEL + encode_opaque(client_id) + gen, hashlib.sha256).digest()
    return FanoutAuthToken(gen + mac)


def token_generation(key: bytes, client_id: bytes, token: FanoutAuthToken) -> int | None:
    """The generation of a token valid for ``client_id`` under ``key``, else None."""
    t = token.token
    if len(t) != TOKEN_LEN:
        return None
    gen = int.from_bytes(t[:4], "big")
    if not hmac.compare_digest(make_token(key, client_id, gen).token, t):
        return None
    return gen
